"""Where tasks run: a dask.distributed client, or this process.

The client is of a cluster given by address, or of a new LocalCluster. Every command that can use a
cluster takes its client from :func:`dask_client` and runs its tasks through :class:`Runner`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterator

from skylake.errors import LakeError

__all__ = [
    "WORKERS_TTL_S",
    "Runner",
    "SCHEDULER_TIMEOUT_S",
    "SchedulerError",
    "SCHEDULER_TICK",
    "dask_client",
    "window",
    "release_memory",
]


log = logging.getLogger(__name__)


def _label(item) -> str:
    """A task's item for a message: a tuple's first path (``(path, ...)``, ``(k, path)``), a chunk's
    first item and count, or the item."""
    from skylake.paths import stored_path

    if isinstance(item, list) and item:
        return _label(item[0]) + (f" (and {len(item) - 1} more)" if len(item) > 1 else "")
    if isinstance(item, tuple):
        item = next((x for x in item if isinstance(x, (str, os.PathLike))), item)
    return stored_path(str(item))


class _Held:
    """Where the value of the ``k``-th held result goes among a packed task's arguments (:func:`_pack`)."""

    __slots__ = ("k",)

    def __init__(self, k: int):
        self.k = k

    def __reduce__(self):
        return (_Held, (self.k,))


def _swap(obj, held: list, future_type):
    """``obj`` with each future in it (inside lists, tuples and dicts) replaced by a :class:`_Held` appended to
    ``held``; the containers without futures are the same objects."""
    if isinstance(obj, future_type):
        held.append(obj)
        return _Held(len(held) - 1)
    kind = type(obj)
    if kind in (list, tuple):
        items = [_swap(x, held, future_type) for x in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else kind(items)
    if kind is dict:
        items = {k: _swap(v, held, future_type) for k, v in obj.items()}
        return obj if all(items[k] is v for k, v in obj.items()) else items
    return obj


def _unswap(obj, values: tuple):
    """The inverse of :func:`_swap`, with the held results' ``values``."""
    if isinstance(obj, _Held):
        return values[obj.k]
    kind = type(obj)
    if kind in (list, tuple):
        return kind(_unswap(x, values) for x in obj)
    if kind is dict:
        return {k: _unswap(v, values) for k, v in obj.items()}
    return obj


def _pack(func, args: tuple, kwargs: dict, future_type) -> tuple[bytes, list]:
    """A task's function and arguments pickled into one bytes object, and the futures among them (left out, in
    order: dask gives their values to :func:`_call`)."""
    from distributed.protocol.pickle import dumps

    held: list = []
    args, kwargs = _swap(args, held, future_type), _swap(kwargs, held, future_type)
    return dumps((func, args, kwargs)), held


def _call(blob: bytes, *values):
    """Run a packed task (:func:`_pack`) with the values of the held results it was given.

    Parameters
    ----------
    blob : bytes
        The pickled function and arguments.
    *values : object
        The values of the held results, in order.

    Returns
    -------
    object
        What the function returns.
    """
    from distributed.protocol.pickle import loads

    func, args, kwargs = loads(blob)
    if values:
        args, kwargs = _unswap(args, values), _unswap(kwargs, values)
    return func(*args, **kwargs)


#: Seconds a :meth:`Runner.workers` count is used before the scheduler is asked again.
WORKERS_TTL_S = 10.0


class Runner:
    """Runs tasks on a dask.distributed client (one future per item), or in this process (no client).

    Parameters
    ----------
    client : distributed.Client or None
        The client (None: this process).

    Attributes
    ----------
    client : distributed.Client or None
        The client (None: this process).
    """

    def __init__(self, client=None):
        self.client = client
        self._workers = None  # (count, when asked)

    def workers(self) -> int:
        """Workers the tasks can spread over (1 in this process).

        Returns
        -------
        int
            The cluster's workers (at least 1), or 1 without a client.
        """
        if self.client is None:
            return 1
        now = time.monotonic()
        if self._workers is None or now - self._workers[1] > WORKERS_TTL_S:  # asked again at most every few seconds
            self._workers = (max(1, len(self.client.nthreads())), now)  # (scheduler_info: every worker's metrics)
        return self._workers[0]

    def submit(self, func, *args, priority: int = 0, **kwargs):
        """``func(*args, **kwargs)``, its result kept where it is made.

        On a cluster it is a future whose data stays on the worker that ran it (futures among the
        arguments, also inside lists, tuples and dicts, reach a task worker to worker, never through this
        process, and the task runs where most of them are); here, the value itself. Chains of such results
        are what :meth:`gather` fetches.

        Parameters
        ----------
        func : callable
            The task.
        *args : object
            Its positional arguments (results of :meth:`submit` among them).
        priority : int
            The scheduler runs tasks of higher priority first (ignored in this process).
        **kwargs : object
            Its keyword arguments.

        Returns
        -------
        distributed.Future or object
            A future on a cluster (not pure: submitted anew each time), the value itself here.
        """
        if self.client is None:
            return func(*args, **kwargs)
        return self._submit(func, args, kwargs, priority)

    def _submit(self, func, args: tuple, kwargs: dict, priority: int):
        """``func(*args, **kwargs)`` on the cluster, its arguments packed: the scheduler receives one bytes object
        and the futures among them (it unpickles every task's arguments, ~1 ms for a DataFrame, ~3 ms for a list
        of 500 HEALPix pixels, and walks every list in them), and the task keeps ``func``'s name."""
        from uuid import uuid4

        from dask.utils import funcname
        from distributed import Future

        blob, held = _pack(func, args, kwargs, Future)
        key = f"{funcname(func)}-{uuid4().hex}"
        return self.client.submit(_call, blob, *held, key=key, pure=False, priority=priority)

    def compute(self, delayed: list, priority: int = 0) -> list:
        """Dask delayed objects computed and kept where they are made, as :meth:`submit` keeps a result.

        Here (no client), dask's own scheduler computes them.

        Parameters
        ----------
        delayed : list
            Dask delayed objects (say an lsdb catalog's partitions, ``to_delayed()``).
        priority : int
            The scheduler runs tasks of higher priority first (ignored in this process).

        Returns
        -------
        list
            Futures on a cluster, the values here.
        """
        if self.client is None:
            import dask

            return list(dask.compute(*delayed)) if delayed else []
        return self.client.compute(delayed, priority=priority)

    def gather(self, held: list) -> list:
        """The values of results :meth:`submit` or :meth:`compute` keep, fetched here (small ones only).

        Parameters
        ----------
        held : list
            Results of :meth:`submit` or :meth:`compute`.

        Returns
        -------
        list
            Their values.
        """
        if self.client is None:
            return list(held)
        return self.client.gather(held)

    def as_completed(self, held: list, labels: list) -> Iterator:
        """Yield the label of each result :meth:`submit` keeps as soon as it is ready (in this process, in order).

        Parameters
        ----------
        held : list
            Results of :meth:`submit`.
        labels : list
            A label for each.

        Yields
        ------
        object
            The labels, in the order their results are ready.

        Raises
        ------
        Exception
            A task's error (``distributed.KilledWorker`` when its worker died), as soon as it is known.
        """
        if self.client is None or not held:
            yield from labels
            return
        from distributed import as_completed

        label = {future.key: lab for future, lab in zip(held, labels)}
        for future in as_completed(held):
            if future.status != "finished":
                future.result()  # raises its error
            yield label[future.key]

    def again_if_died(self, func, what: str):
        """``func()``, run once more from the start when a worker dies under one of its tasks.

        A worker's death is ``distributed.KilledWorker``, from a cluster that gives up a task at its
        worker's first death, as :func:`dask_client`'s local one does; a second death raises.

        Parameters
        ----------
        func : callable
            Steps of :meth:`submit` and :meth:`gather`, called without arguments.
        what : str
            Names the steps in the warning.

        Returns
        -------
        object
            What ``func()`` returns.

        Raises
        ------
        distributed.KilledWorker
            A worker died again on the second run.
        """
        if self.client is None:
            return func()
        from distributed import KilledWorker

        try:
            return func()
        except KilledWorker as exc:
            log.warning("a worker died %s (%s); it is done again", what, exc)
            return func()

    def map(self, func, items: list, window: int, on_died=None, split=None, priority: int = 0, **kwargs) -> Iterator:
        """The results of ``func(item, **kwargs)`` as they complete, with at most ``window`` tasks in flight.

        A task whose worker dies (``distributed.KilledWorker``: out of memory, a crash in C code) is
        tried once more at the end, alone on the cluster (a dying worker takes the tasks beside it down
        too); when it dies again, ``on_died(item)`` is yielded in its place (without ``on_died`` the
        error is raised). ``split(item)``, when given, breaks a died item (a chunk of files) into items
        tried alone instead, so that only the one that kills its worker is given up. ``priority``: the
        scheduler runs tasks of higher priority first (a commit's writers before further frames).

        Parameters
        ----------
        func : callable
            The task, ``func(item, **kwargs)``.
        items : list
            The tasks' items.
        window : int
            The most tasks in flight at once.
        on_died : callable or None
            ``on_died(item)`` is yielded for an item whose worker died twice (None: the error is raised).
        split : callable or None
            ``split(item)`` breaks a died item into items tried alone (None: it is tried again whole).
        priority : int
            The tasks' priority on the scheduler.
        **kwargs : object
            Keyword arguments of ``func``.

        Returns
        -------
        iterator
            Each task's result, in order of completion on a cluster (in order of ``items`` here, each
            computed as it is asked for); the results of items tried again come last. On a cluster the
            first ``window`` tasks are submitted before this returns, so the caller can do other work
            while they run.

        Raises
        ------
        distributed.KilledWorker
            An item's worker died again and there is no ``on_died`` (when the iterator reaches it).
        """
        if self.client is None:
            return (func(item, **kwargs) for item in items)
        from distributed import as_completed

        def compute(item):  # not dask.delayed: it would tokenise the profile for every task (13 ms)
            """Submit the task of one item.

            Parameters
            ----------
            item : object
                The item.

            Returns
            -------
            distributed.Future
                The task's future.
            """
            return self._submit(func, (item,), kwargs, priority)  # (not scattered: a dead worker would lose it)

        items = list(items)
        pending = as_completed()
        submitted = {}  # future key -> item

        def submit(item):
            """Submit the task of one item, adding its future to those pending.

            Parameters
            ----------
            item : object
                The item.
            """
            future = compute(item)
            submitted[future.key] = item
            pending.add(future)

        for item in items[:window]:
            submit(item)
        return self._results(items, window, pending, submitted, submit, compute, on_died, split)

    @staticmethod
    def _results(items, window: int, pending, submitted: dict, submit, compute, on_died, split) -> Iterator:
        """The results of :meth:`map`'s tasks as they complete, submitting the rest as a window's slot frees
        and trying the tasks of died workers again; see :meth:`map`."""
        from distributed import KilledWorker

        suspects = []  # items whose worker died under them
        nxt = window
        for future in pending:
            item = submitted.pop(future.key)
            try:
                result, died = future.result(), False
            except KilledWorker:
                result, died = None, True
                parts = split(item) if split is not None else [item]
                log.warning(
                    "a worker died while processing %s; %s tried again alone",
                    _label(item),
                    "it is" if len(parts) == 1 else f"each of its {len(parts)} items is",
                )
                suspects += parts
            finally:
                future.release()
            if nxt < len(items):
                submit(items[nxt])
                nxt += 1
            if not died:
                yield result
        for item in suspects:
            future = compute(item)
            try:
                result = future.result()
            except KilledWorker:
                if on_died is None:
                    raise
                log.warning("a worker died again processing %s alone; it is rejected", _label(item))
                result = on_died(item)
            finally:
                future.release()
            yield result


#: Seconds to wait for a dask scheduler given by address before giving up with a usage error.
SCHEDULER_TIMEOUT_S = 5


class SchedulerError(LakeError):
    """The dask scheduler given by address cannot be reached (a usage error, exit 2)."""


#: The interval of dask's event-loop health check (``distributed.admin.tick.interval``, 20 ms by default) on
#: skylake's own clusters; docs/cluster.md starts a cluster's scheduler with it
#: (``DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL``). A stalled loop is still reported after
#: ``distributed.admin.tick.limit`` (3 s).
SCHEDULER_TICK = "1s"


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    """A client for ``scheduler`` (an address), "synchronous" (no cluster), or a new LocalCluster.

    The local cluster has one single-threaded worker process per worker; a task that kills its worker is
    not retried by the scheduler (:meth:`Runner.map` retries it once).

    Parameters
    ----------
    scheduler : str or None
        A dask scheduler's address, "synchronous" to run in this process, or None for a new LocalCluster.
    workers : int or None
        Workers of the new LocalCluster (None: one per core).

    Yields
    ------
    distributed.Client or None
        The client (closed, with a local cluster, on leaving the context), None for "synchronous".

    Raises
    ------
    SchedulerError
        The scheduler given by address cannot be reached within :data:`SCHEDULER_TIMEOUT_S` seconds.
    """
    if scheduler == "synchronous":
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(
                f"cannot reach the dask scheduler {scheduler!r} within {SCHEDULER_TIMEOUT_S} s "
                f"({type(exc).__name__}: {exc}); check the address, or leave out --scheduler for a "
                "local cluster"
            ) from None
        with client:
            yield client
        return
    import dask

    n = workers or os.cpu_count() or 1
    # distributed sets MALLOC_TRIM_THRESHOLD_ in new workers, which also freezes glibc's mmap threshold:
    # every frame-sized array is then mapped and page-faulted afresh (50-150 ms per 4k frame).
    environ = {
        k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items() if k != "MALLOC_TRIM_THRESHOLD_"
    }
    # Worker processes print only CRITICAL (all at --log-level DEBUG): what matters reaches the client (a task's
    # error, a dead worker: Runner.map reports them per frame), while a heartbeat racing the scheduler's
    # shutdown would print a traceback after the work is done.
    quiet = logging.CRITICAL if logging.getLogger().getEffectiveLevel() > logging.DEBUG else logging.DEBUG
    # A task that kills its worker is retried once by Runner.map (then rejected), not 3 times by the scheduler.
    # The event-loop health tick every 1 s, not 20 ms: the scheduler here is the driver's, and at 20 ms it
    # costs ~15 ms of CPU a second with nothing to do (docs/cluster.md starts a cluster's scheduler so too).
    settings = {
        "distributed.nanny.pre-spawn-environ": environ,
        "distributed.scheduler.allowed-failures": 0,
        "distributed.admin.tick.interval": SCHEDULER_TICK,
    }
    nanny = logging.getLogger("distributed.nanny")
    with dask.config.set(settings), contextlib.ExitStack() as stack:
        stack.callback(nanny.setLevel, nanny.level)  # (last: after the cluster has closed)
        cluster = stack.enter_context(
            LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=quiet)
        )
        # On closing, after the work is done, a nanny kills a worker slow to exit on a loaded machine and says so
        # ("still alive after 4.0 seconds, killing"): nothing a user can act on, so only errors are told then.
        stack.callback(nanny.setLevel, max(nanny.getEffectiveLevel(), logging.ERROR))
        yield stack.enter_context(Client(cluster))


def window(runner: Runner) -> int:
    """Tasks to keep in flight: a few per worker, so workers never wait for the driver.

    Parameters
    ----------
    runner : Runner
        Where the tasks run.

    Returns
    -------
    int
        1 in this process, else 4 per worker (at least 4).
    """
    if runner.client is None:
        return 1
    return max(4, 4 * runner.workers())


def release_memory() -> None:
    """Hand the memory a finished task freed back to the system.

    Arrow's pool keeps freed buffers, and glibc keeps freed heap pages (Python objects, parquet footers)
    in its arenas, so without this a worker's RSS after hundreds of tasks is the sum of their peaks'
    leftovers, not what it holds. Without glibc (macOS, musl) only arrow's pool is released.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (macOS, musl). Looked up once a process: finding libc runs
    ``ldconfig`` (~6 ms, which an objects task paid for each of its partitions)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except AttributeError:  # not glibc: nothing to trim
        return None
