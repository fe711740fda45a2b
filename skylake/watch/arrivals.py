"""Which files in the watched directories are complete and not yet handed on.

A camera writes a frame over seconds (or a network copy does); a file is taken only once complete:

* **stable**: its size and modification time have not changed for ``stable_seconds`` (and it is not
  empty), or
* **marker**: a sidecar ``NAME<marker>`` exists beside ``NAME`` (for writers that can say when they
  are done, e.g. ``--marker .done`` for ``frame.fits.done``).

:class:`Arrivals` is pure bookkeeping over ``os.stat`` results and a clock the caller passes in, so
its rules are tested with exact times. It remembers what it handed on by (size, mtime): a file that
changes afterwards (re-written in place) is taken again, and ingest decides by content whether it is
new.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from skylake.ingest import FITS_SUFFIXES

__all__ = ["Arrival", "Arrivals"]


@dataclass
class Arrival:
    """A file seen in a watched directory.

    Attributes
    ----------
    path : str
        Its absolute path.
    size, mtime_ns : int
        Its size [bytes] and modification time [ns] when last looked at.
    since : float
        The caller's clock when this (size, mtime) was first seen.
    seen_at : float
        Wall-clock time (``time.time()``) the file was first seen: its arrival, for latencies.
    """

    path: str
    size: int
    mtime_ns: int
    since: float
    seen_at: float


class Arrivals:
    """The files under ``dirs`` that are complete and new.

    Parameters
    ----------
    dirs : list of str
        Directories searched recursively for FITS files (:data:`skylake.ingest.FITS_SUFFIXES`).
    stable_seconds : float
        How long a file's size and modification time must stay unchanged (ignored with ``marker``).
    marker : str or None
        A sidecar suffix: ``NAME<marker>`` beside ``NAME`` says ``NAME`` is complete.
    known : set of str
        Paths already handed on (say, in the lake before a restart): skipped.
    """

    def __init__(self, dirs: list[str], stable_seconds: float = 5.0, marker: str | None = None, known=()):
        if stable_seconds < 0:
            raise ValueError(f"stable_seconds must be >= 0, got {stable_seconds!r}")
        if marker is not None and (not marker or "/" in marker):
            raise ValueError(f"marker must be a file-name suffix such as '.done', got {marker!r}")
        self.dirs = [os.path.abspath(d) for d in dirs]
        self.stable_seconds = float(stable_seconds)
        self.marker = marker
        self.pending: dict[str, Arrival] = {}
        self.done: dict[str, tuple[int, int] | None] = {p: None for p in known}  # None: known, stat unknown
        self.unreadable: set[str] = set()

    def _files(self):
        """(path, stat) of every FITS file under the directories; hidden files (a copy in progress, often) skipped."""
        for top in self.dirs:
            for root, subdirs, names in os.walk(
                top, onerror=lambda exc, top=top: self.unreadable.add(exc.filename or top)
            ):
                subdirs[:] = [d for d in subdirs if not d.startswith(".")]
                for name in names:
                    if name.startswith(".") or not name.lower().endswith(FITS_SUFFIXES):
                        continue
                    path = os.path.join(root, name)
                    try:
                        yield path, os.stat(path)
                    except OSError:  # removed between listing and stat
                        continue

    def scan(self, now: float, wall: float) -> list[Arrival]:
        """Look at the directories; return the files complete at ``now``, oldest first.

        Parameters
        ----------
        now : float
            The caller's monotonic clock.
        wall : float
            Wall-clock time (``time.time()``), recorded as a new file's arrival.

        Returns
        -------
        list of Arrival
            Complete files not yet handed on, by arrival then path.
        """
        present = set()
        for path, st in self._files():
            present.add(path)
            key = (st.st_size, st.st_mtime_ns)
            if path in self.done and self.done[path] in (None, key):
                continue
            seen = self.pending.get(path)
            if seen is None or (seen.size, seen.mtime_ns) != key:  # new, or still being written
                self.pending[path] = Arrival(path, st.st_size, st.st_mtime_ns, now, seen.seen_at if seen else wall)
        for gone in set(self.pending) - present:
            del self.pending[gone]
        ready = [a for a in self.pending.values() if self._complete(a, now)]
        return sorted(ready, key=lambda a: (a.seen_at, a.path))

    def _complete(self, a: Arrival, now: float) -> bool:
        if self.marker is not None:
            return os.path.exists(a.path + self.marker)
        return a.size > 0 and now - a.since >= self.stable_seconds

    def next_due(self, now: float) -> float | None:
        """Seconds until the next pending file may be complete.

        Parameters
        ----------
        now : float
            The caller's monotonic clock.

        Returns
        -------
        float or None
            Seconds (0 or more); None when nothing is pending or markers decide.
        """
        if self.marker is not None or not self.pending:
            return None
        return max(0.0, min(a.since + self.stable_seconds for a in self.pending.values()) - now)

    def handed_on(self, arrivals: list[Arrival]) -> None:
        """Remember files as taken, by their size and mtime (a later change makes a file new again).

        Parameters
        ----------
        arrivals : list of Arrival
            The files taken.
        """
        for a in arrivals:
            self.pending.pop(a.path, None)
            self.done[a.path] = (a.size, a.mtime_ns)
