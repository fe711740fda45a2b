"""The writer lock on an object store: a lease object that its holder keeps renewing.

Object stores have no ``flock(2)`` and no kernel that releases a dead process's lock. The lock is an object,
created with put-if-absent (S3 ``If-None-Match: *``), naming who holds it. The holder renews it from a
background thread every third of the lease, each renewal a conditional put on the ETag it last wrote
(``If-Match``), so the object's ETag changes while its holder lives. A process that wants the lock watches the
ETag with its *own* monotonic clock: one unchanged for a whole lease (and a grace period) belongs to a dead
holder, and is taken over with a conditional put on that ETag, which only one of several waiters can win. A
lease whose last write (the store's ``LastModified``) is older than the lease plus :data:`MAX_SKEW_S` is taken
over at first sight: the only place clocks of two machines are compared, with that much slack. Release is a
conditional delete.

The commit point does not rely on the lease: a log entry is created with put-if-absent, so two writers can never
both commit version N. The lease serialises writers so that they do not stage work that cannot commit, and keeps
publishing (copies on an object store) to one writer at a time.

``SKYLAKE_LEASE_S`` sets the lease [s] (default 30; the tests use a few seconds).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

__all__ = ["Lease", "LEASE_S", "store_error_code", "precondition_failed", "GRACE", "MAX_SKEW_S"]

log = logging.getLogger(__name__)

#: How long a lease lasts without renewal [s].
LEASE_S = float(os.environ.get("SKYLAKE_LEASE_S", "30"))
#: Extra time a waiter gives an unchanged lease beyond its duration (a slow renewal is not a dead holder).
GRACE = 0.5
#: How far this machine's clock may be from the store's before a lease looks older than it is [s].
MAX_SKEW_S = 30.0


def store_error_code(exc: BaseException) -> str | None:
    """The error code an object store answered with, as s3fs hands it on (the boto error it translated).

    Parameters
    ----------
    exc : BaseException
        The error s3fs raised.

    Returns
    -------
    str or None
        The store's code ("PreconditionFailed", "NoSuchKey", ...; the HTTP status, e.g. "412", when the answer
        names no code), or None when the error carries no answer from the store.
    """
    for err in (exc, exc.__cause__, exc.__context__):
        response = getattr(err, "response", None)
        if not isinstance(response, dict):
            continue
        code = response.get("Error", {}).get("Code")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(code) if code else (str(status) if status else None)
    return None


def precondition_failed(exc: BaseException) -> bool:
    """Whether an error is an object store refusing a conditional write (HTTP 412), by the store's own code.

    Parameters
    ----------
    exc : BaseException
        The error.

    Returns
    -------
    bool
        True for a failed precondition (``If-Match``, ``If-None-Match``).
    """
    return isinstance(exc, OSError) and store_error_code(exc) in ("PreconditionFailed", "412")


class Lease:
    """An exclusive lease on one object of an s3fs filesystem.

    Parameters
    ----------
    fs : s3fs.S3FileSystem
        The store.
    path : str
        The lease object (``bucket/key``).
    seconds : float, optional
        The lease's duration; the holder renews every third of it.
    """

    def __init__(self, fs, path: str, seconds: float | None = None):
        self.fs = fs
        self.path = path
        self.seconds = float(seconds or LEASE_S)
        if not self.seconds > 0:
            raise ValueError(f"a lease of {self.seconds!r} s: it must be positive")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.etag: str | None = None
        self.lost = False  # a renewal found the lease taken over (this process paused for longer than a lease)
        self._seen: tuple[str, float] | None = None  # (ETag, when this process first saw it) of another's lease
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- the object ---------------------------------------------------------------------------------
    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "lease_s": self.seconds, "renewed": time.time()}).encode()

    def _put(self, **condition) -> str:
        out = self.fs.pipe_file(self.path, self._body(), **condition)
        self.fs.invalidate_cache(self.path)
        return out["ETag"]

    def _current(self) -> tuple[str | None, float]:
        """The lease object's ETag (None: there is none) and its age by this machine's clock [s]."""
        self.fs.invalidate_cache(self.path)
        try:
            info = self.fs.info(self.path)
        except FileNotFoundError:
            return None, 0.0
        return info["ETag"], time.time() - info["LastModified"].timestamp()

    def _holders_lease(self) -> float:
        try:
            return float(json.loads(self.fs.cat_file(self.path)).get("lease_s", 0.0))
        except (FileNotFoundError, ValueError, TypeError, AttributeError):
            return 0.0

    def holder(self) -> str:
        """Who holds the lease now.

        Returns
        -------
        str
            ``host:pid:id`` of the holder, "" when nobody does, "?" when the object says nothing readable.
        """
        try:
            return json.loads(self.fs.cat_file(self.path)).get("owner", "?")
        except FileNotFoundError:
            return ""
        except ValueError:
            return "?"

    # -- taking and giving back ---------------------------------------------------------------------
    def try_acquire(self) -> bool:
        """Take the lease if it is free or its holder has stopped renewing it.

        Returns
        -------
        bool
            True when this process holds it now (and renews it until :meth:`release`).
        """
        try:
            self.etag = self._put(mode="create")
        except FileExistsError:
            etag, age = self._current()
            if etag is None:
                return self.try_acquire()  # released in between
            now = time.monotonic()
            seconds = max(self.seconds, self._holders_lease())  # the holder renews at its own pace
            stale = age > seconds * (1.0 + GRACE) + MAX_SKEW_S
            if not stale and (self._seen is None or self._seen[0] != etag):
                self._seen = (etag, now)  # alive (or first seen): watch it for a lease
                return False
            if not stale and now - self._seen[1] < seconds * (1.0 + GRACE):
                return False
            try:  # unchanged for a whole lease: its holder is dead; of several waiters one wins
                self.etag = self._put(IfMatch=etag)
            except OSError as exc:
                if precondition_failed(exc) or isinstance(exc, FileNotFoundError):
                    self._seen = None
                    return False
                raise
            unrenewed = age if stale else now - self._seen[1]
            log.warning("took over the lease %s, unrenewed for %.0f s (its holder died)", self.path, unrenewed)
        self._seen = None
        self.lost = False
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="skylake-lease", daemon=True)
        self._renewer.start()
        return True

    def acquire(self, blocking: bool = True, poll: float | None = None) -> bool:
        """Take the lease, waiting for it when ``blocking``.

        Parameters
        ----------
        blocking : bool, optional
            Wait until it is free (or its holder dead); else try once.
        poll : float, optional
            Seconds between tries (default a tenth of the lease, at most 1 s).

        Returns
        -------
        bool
            True when this process holds it.
        """
        poll = poll if poll is not None else min(1.0, self.seconds / 10.0)
        while True:
            if self.try_acquire():
                return True
            if not blocking:
                return False
            time.sleep(poll)

    def _renew(self):
        while not self._stop.wait(self.seconds / 3.0):
            try:
                self.etag = self._put(IfMatch=self.etag)
            except OSError as exc:
                if precondition_failed(exc) or isinstance(exc, FileNotFoundError):
                    self.lost = True
                    log.error("lost the lease %s: another process took it over", self.path)
                    return
                log.warning("could not renew the lease %s (%s); retrying", self.path, exc)

    def release(self):
        """Stop renewing and delete the lease (only if it is still this process's)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        if self.lost or self.etag is None:
            return
        from fsspec.asyn import sync

        bucket, key, _ = self.fs.split_path(self.path)
        try:
            sync(self.fs.loop, self.fs._call_s3, "delete_object", Bucket=bucket, Key=key, IfMatch=self.etag)
        except OSError as exc:
            if not (precondition_failed(exc) or isinstance(exc, FileNotFoundError)):
                raise
        finally:
            self.fs.invalidate_cache(self.path)
            self.etag = None
