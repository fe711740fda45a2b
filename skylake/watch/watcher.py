"""``skylake watch``: keep a lake up to date with a camera's output directory.

One loop, one batch at a time::

    wait (filesystem events wake it; a poll every poll_seconds catches what events miss)
      -> the complete new files (:class:`~skylake.watch.arrivals.Arrivals`), at most batch_frames
      -> ingest, calibrate, ensemble, night products (:func:`skylake.pipeline.ingest`)
      -> objects, the batch's night maps, the summary database (each optional)
      -> one line: files, outcome, per-frame latency against the target

Restart-safe because the lake is the state: at start the watcher reads which files of its directories
the lake already holds (never ingested twice; ingest also skips a frame by content), and finishes what a
killed run committed but did not carry downstream (calibration, ensemble and night products of those
frames are computed only where missing; objects follow the lake's log). A stop request (SIGTERM,
SIGINT, :meth:`Watcher.stop`) ends the loop after the batch in hand is committed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

import skylake.sections  # noqa: F401 - every stage's profile section registered: profiles are checked whole
from skylake.lake import tables
from skylake.watch.arrivals import Arrival, Arrivals

__all__ = ["BatchResult", "WatchSettings", "Watcher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchSettings:
    """How ``skylake watch`` decides a file is complete, batches, and what it keeps up to date.

    Attributes
    ----------
    stable_seconds : float
        A file is complete once its size and mtime are unchanged this long [s].
    marker : str or None
        Instead, a file is complete once ``NAME<marker>`` exists (e.g. ``".done"``).
    poll_seconds : float
        Longest wait between looks at the directories [s] (events wake the loop sooner).
    batch_frames : int
        Most frames per batch (a burst is split; each batch commits on its own).
    latency_seconds : float
        Target from a file's arrival to its frame's products committed [s]; a batch over it says so.
    events : bool
        Use filesystem events (watchdog) besides polling; off for network filesystems.
    objects, maps, refresh : bool
        After each batch: update the objects and light curves, the batch's night maps, the summary database.
    maps_seconds : float
        Rebuild a night's maps at most this often [s] (a night map reads the whole night, so rebuilding it
        per batch would cost O(frames of the night) each time); the maps left due are built when the watcher
        stops. 0: after every batch.
    db_url : str or None
        The summary database (default: as ``skylake refresh``).
    """

    stable_seconds: float = 5.0
    marker: str | None = None
    poll_seconds: float = 5.0
    batch_frames: int = 64
    latency_seconds: float = 120.0
    events: bool = True
    objects: bool = True
    maps: bool = True
    refresh: bool = True
    maps_seconds: float = 300.0
    db_url: str | None = None

    def __post_init__(self):
        for name in ("stable_seconds", "poll_seconds", "latency_seconds", "maps_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0 (seconds), got {value!r}")
        if self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be > 0, got {self.poll_seconds!r}")
        if not (isinstance(self.batch_frames, int) and self.batch_frames >= 1):
            raise ValueError(f"batch_frames must be an integer >= 1, got {self.batch_frames!r}")


@dataclass
class BatchResult:
    """What one batch did.

    Attributes
    ----------
    number : int
        The batch's number since the watcher started (1, 2, ...).
    paths : list of str
        Its files.
    report : skylake.ingest.IngestReport
        The ingest's report (the downstream stages' in its ``downstream``).
    steps : list of (str, float, bool)
        (step, seconds, ok) of ingest and each product step.
    latencies : numpy.ndarray
        Per file [s]: from its first sighting to the batch's last commit.
    seconds : float
        The batch's duration [s].
    """

    number: int
    paths: list[str]
    report: object
    steps: list[tuple[str, float, bool]]
    latencies: np.ndarray
    seconds: float

    def line(self, target: float) -> str:
        """The batch's log line.

        Parameters
        ----------
        target : float
            The latency target [s]: a batch over it ends with ``LATE``.

        Returns
        -------
        str
            Files by outcome, duration, latency p50 and max, each step's seconds.
        """
        r = self.report
        lat = self.latencies
        late = " LATE" if len(lat) and lat.max() > target else ""
        return (
            f"batch {self.number}: {len(self.paths)} files: {r.ingested} ingested, {len(r.rejected)} rejected, "
            f"{r.skipped} already in the lake; {self.seconds:.1f} s; latency p50 {np.median(lat):.1f} s, "
            f"max {lat.max():.1f} s (target {target:g} s){late}; {_steps_text(self.steps)}"
        )


def _steps_text(steps) -> str:
    """``ingest 6.0 s, objects 0.2 s, maps FAILED`` (the details are logged at INFO)."""
    return ", ".join(f"{name} {sec:.1f} s" if ok else f"{name} FAILED (see the log)" for name, sec, ok in steps)


class Watcher:
    """Follow ``dirs`` and ingest what arrives into ``lake`` with ``profile``.

    Parameters
    ----------
    lake : Lake or str
        The lake (opened if a path or URL).
    dirs : list of str
        Directories to follow (recursively).
    profile : Profile or str
        The camera's profile.
    settings : WatchSettings
        Completeness, batching and downstream settings.
    client : distributed.Client or None
        A cluster for the batches' tasks (None: this process, or a local cluster for a large batch).
    cluster : callable or None
        As :func:`skylake.ingest.ingest_frames` takes it: a local cluster entered only for a large batch.
    """

    def __init__(self, lake, dirs, profile, settings: WatchSettings | None = None, client=None, cluster=None):
        from skylake.lake import Lake
        from skylake.profile import load_profile

        missing = [d for d in dirs if not os.path.isdir(d)]
        if missing:
            raise FileNotFoundError(f"not a directory: {', '.join(missing)}")
        self.lake = Lake.open(lake) if isinstance(lake, str | os.PathLike) else lake
        self.lake.check_writable()
        self.profile = load_profile(profile) if isinstance(profile, str | os.PathLike) else profile
        self.settings = settings or WatchSettings()
        if self.settings.refresh:  # refused now, not as a failed step after every batch of a long night
            from skylake.db.connect import db_url

            db_url(self.lake, self.settings.db_url)
        self.client, self.cluster = client, cluster
        self.dirs = [os.path.abspath(d) for d in dirs]
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.batches = 0
        self._maps_due: set[str] = set()  # nights with frames newer than their maps
        self._maps_built: dict[str, float] = {}  # night -> monotonic time its maps were last built
        known = self._known_paths()
        self.arrivals = Arrivals(self.dirs, self.settings.stable_seconds, self.settings.marker, known)
        self._known_at_start = sorted(known)

    def _known_paths(self) -> set[str]:
        """Paths under the watched directories the lake holds frames of (any status); the latest night among
        them is marked for maps (a killed run may have left its maps behind its frames)."""
        if self.lake.log.latest() is None:
            return set()
        rows = self.lake.read_frames(columns=["path", "night"]).to_pylist()
        prefixes = tuple(d.rstrip("/") + "/" for d in self.dirs)
        mine = [r for r in rows if r["path"] and r["path"].startswith(prefixes)]
        nights = [r["night"] for r in mine if r["night"]]
        if nights:
            self._maps_due.add(max(nights))
        return {r["path"] for r in mine}

    def stop(self) -> None:
        """Ask the loop to end after the batch in hand (safe from a signal handler)."""
        self._stop.set()
        self._wake.set()

    def catch_up(self) -> str | None:
        """Carry the frames a killed run committed downstream (each stage does only what is missing).

        Returns
        -------
        str or None
            The catch-up's line (None: the lake held none of the directories' files).
        """
        if not self._known_at_start:
            return None
        from skylake.pipeline import downstream

        t0 = time.monotonic()
        for report in downstream(self.lake, self.profile, self._known_at_start, self.client, None):
            log.info("%s", report)
        steps = [("calibration", time.monotonic() - t0, True), *self._products(nights=set())]
        return f"{len(self._known_at_start)} files already in the lake; " + _steps_text(steps)

    def run_batch(self, batch: list[Arrival]) -> BatchResult:
        """Ingest ``batch`` and bring the products it touches up to date; the files are then handed on.

        Parameters
        ----------
        batch : list of Arrival
            Complete files, from :meth:`Arrivals.scan`.

        Returns
        -------
        BatchResult
            What the batch did.
        """
        from skylake.pipeline import ingest

        t0 = time.monotonic()
        self.batches += 1
        paths = [a.path for a in batch]
        report = ingest(self.lake, paths, self.profile, client=self.client, cluster=self.cluster, progress=False)
        for downstream in report.downstream:
            log.info("%s", downstream)
        steps = [("ingest", time.monotonic() - t0, True)]
        if report.ingested:
            steps += self._products({n for n in report.nights if n})
        self.arrivals.handed_on(batch)
        done = time.time()
        latencies = np.array([done - a.seen_at for a in batch])
        return BatchResult(self.batches, paths, report, steps, latencies, time.monotonic() - t0)

    def _products(self, nights: set, final: bool = False) -> list[tuple[str, float, bool]]:
        """Objects, the nights' maps, the summary database: (step, seconds, ok) each; a failure is logged
        and the step runs again after the next batch (each brings everything up to date, not one batch)."""
        s, done = self.settings, []
        steps = []
        if s.objects:
            steps.append((tables.OBJECTS, self._objects))
        self._maps_due |= nights
        now = time.monotonic()
        due = {n for n in self._maps_due if final or now - self._maps_built.get(n, -np.inf) >= s.maps_seconds}
        if s.maps and due:
            steps.append((tables.MAPS, lambda: self._maps(due)))
        if s.refresh:
            steps.append(("database", self._refresh))
        for name, step in steps:
            t0 = time.monotonic()
            try:
                log.info("%s", step())
                done.append((name, time.monotonic() - t0, True))
            except Exception as exc:  # noqa: BLE001 - the frames are committed; the step reruns next batch
                log.error("%s after the batch failed (retried with the next): %s: %s", name, type(exc).__name__, exc)
                done.append((name, time.monotonic() - t0, False))
        return done

    def _objects(self) -> str:
        from skylake.objects.build import build_objects

        return str(build_objects(self.lake, client=self.client))

    def _maps(self, nights: set) -> str:
        from skylake.maps import make_maps

        n = 0
        for night in sorted(nights):
            # made again on the watcher's own schedule, not by the chain's night products at every batch
            _, index, _, _ = make_maps(self.lake, night=night, keep_current=False)
            n += len(index)
            self._maps_due.discard(night)
            self._maps_built[night] = time.monotonic()
        return f"maps: {n} of nights {', '.join(sorted(nights))}"

    def _refresh(self) -> str:
        from skylake.db import refresh

        return str(refresh(self.lake, url=self.settings.db_url))

    def run(self, once: bool = False, say=print, on_batch=None) -> int:
        """Follow the directories until :meth:`stop` (or, with ``once``, until nothing complete is left).

        Parameters
        ----------
        once : bool
            Ingest what is complete now (waiting out files still being written), then return.
        say : callable
            Where the batch lines go (default: standard output).
        on_batch : callable or None
            Called with each :class:`BatchResult` (benchmarks, monitoring).

        Returns
        -------
        int
            0 (stopped on request, or ``once`` finished).
        """
        observer = self._observe() if self.settings.events and not once else None
        try:
            say(f"watching {', '.join(self.dirs)} for {self.profile.name} frames into {self.lake.url}")
            caught_up = self.catch_up()
            if caught_up:
                say(f"catch-up: {caught_up}")
            while not self._stop.is_set():
                ready = self.arrivals.scan(time.monotonic(), time.time())
                if ready:
                    result = self.run_batch(ready[: self.settings.batch_frames])
                    say(result.line(self.settings.latency_seconds))
                    if on_batch is not None:
                        on_batch(result)
                    continue  # look again at once: more may have arrived meanwhile
                due = self.arrivals.next_due(time.monotonic())
                if once and due is None:
                    break
                poll = self.settings.poll_seconds
                self._wake.wait(min(poll, due + 0.05) if due is not None else poll)
                self._wake.clear()
            if self.settings.maps and self._maps_due:  # the maps left due, before exit
                say("on stop: " + _steps_text(self._products(set(), final=True)))
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)
        say(f"stopped after {self.batches} batches")
        return 0

    def _observe(self):
        """A watchdog observer waking the loop on any change under the directories (None: polling only)."""
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # polling alone is correct, only slower to notice
            log.warning("watchdog is not installed: polling every %g s", self.settings.poll_seconds)
            return None
        wake = self._wake

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, event):
                """Any change under the directories: look now.

                Parameters
                ----------
                event : watchdog.events.FileSystemEvent
                    The change (which one does not matter: the loop looks at everything).
                """
                wake.set()

        observer = Observer()
        try:
            for d in self.dirs:
                observer.schedule(_Wake(), d, recursive=True)
            observer.start()
        except OSError as exc:  # e.g. the inotify watch limit: polling still finds every file
            log.warning("filesystem events unavailable (%s): polling every %g s", exc, self.settings.poll_seconds)
            return None
        return observer
