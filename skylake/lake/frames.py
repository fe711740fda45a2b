"""Choosing frames: the one selector of LAKE/frames that calibrate, the ensemble and maps share.

A :class:`FrameSelection` says which frames (a night, a range of nights, one frame, ingest batches, files, a
pipeline version; single frames only; rejected ones left out) and checks its dates once, when it is made: a
night that is not ``YYYY-MM-DD`` is the caller's mistake (:class:`~skylake.errors.NightError`, exit 2), in
every command alike. :func:`select_frames` reads only the night directories the selection can touch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from skylake.errors import NightError, UsageError
from skylake.lake.nights import night_filter, night_of
from skylake.lake.tables import FRAMES

__all__ = ["FrameSelection", "check_night", "select_frames", "pointing_groups", "SAME_POINTING"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: Frames whose centres are closer than this fraction of the field's width are one pointing.
SAME_POINTING = 0.1


def check_night(option: str, value) -> None:
    """Refuse a night or date that is not ``YYYY-MM-DD``.

    Parameters
    ----------
    option : str
        The option's name, as the message shows it (``night`` for ``--night``).
    value : str or None
        The value given (None: not given, nothing to check).

    Raises
    ------
    NightError
        ``value`` is not a date ``YYYY-MM-DD``.
    """
    if value is not None and not _DATE.fullmatch(str(value)):
        raise NightError(f"--{option} must be a date YYYY-MM-DD, got {value!r}")


@dataclass(frozen=True)
class FrameSelection:
    """Which frames of LAKE/frames a command works on; every field narrows the selection (None: no limit).

    Attributes
    ----------
    night : str or None
        One observing night (``YYYY-MM-DD``).
    since, until : str or None
        The first and last night of a range (``YYYY-MM-DD``), each open-ended without it.
    frame_id : int or None
        One frame.
    nights : tuple or None
        Night partitions to read (an element None, NaN or ``unknown``: the unknown night).
    batch_ids, paths : tuple of str or None
        Only the frames of these ingest batches, or of these files.
    pipeline_version : str or None
        Only the frames processed as this pipeline version.
    single : bool
        Leave coadds out (a coadd's photons are its frames' again: no epoch of a light curve).
    usable : bool
        Leave the frames rejected at ingest out.

    Raises
    ------
    NightError
        ``night``, ``since`` or ``until`` is not a date ``YYYY-MM-DD``.
    UsageError
        ``since`` is after ``until``.
    """

    night: str | None = None
    since: str | None = None
    until: str | None = None
    frame_id: int | None = None
    nights: tuple | None = None
    batch_ids: tuple | None = None
    paths: tuple | None = None
    pipeline_version: str | None = None
    single: bool = False
    usable: bool = False

    def __post_init__(self):
        for option in ("night", "since", "until"):
            check_night(option, getattr(self, option))
        if self.since is not None and self.until is not None and self.since > self.until:
            raise UsageError(f"--since {self.since} is after --until {self.until}: no night is in the range")
        for name in ("nights", "batch_ids", "paths"):  # any iterable in, a tuple kept (hashable, read twice)
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def expression(self) -> pc.Expression | None:
        """The rows' filter on LAKE/frames.

        Returns
        -------
        pyarrow.compute.Expression or None
            The filter (None: every row).
        """
        parts = []
        if self.night is not None:
            parts.append(pc.field("night") == self.night)
        if self.since is not None:
            parts.append(pc.field("night") >= self.since)
        if self.until is not None:
            parts.append(pc.field("night") <= self.until)
        if self.nights is not None:
            parts.append(night_filter(self.nights))
        if self.frame_id is not None:
            parts.append(pc.field("frame_id") == int(self.frame_id))
        for column, values in (("batch_id", self.batch_ids), ("path", self.paths)):
            if values is not None:
                parts.append(pc.field(column).isin(pa.array(list(values), pa.string())))
        if self.pipeline_version is not None:
            parts.append(pc.field("pipeline_version") == self.pipeline_version)
        if self.single:
            parts.append(pc.field("coadd_of").is_null())
        if self.usable:
            parts.append(pc.field("status") != "rejected")
        flt = None
        for part in parts:
            flt = part if flt is None else flt & part
        return flt

    def night_dirs(self, lake) -> list | None:
        """The night directories the selection can touch (None: every one; a range lists the table once).

        Parameters
        ----------
        lake : skylake.lake.Lake
            The lake.

        Returns
        -------
        list or None
            Night partitions to read.
        """
        if self.night is not None:
            return [self.night]
        if self.since is None and self.until is None:
            return None if self.nights is None else list(self.nights)
        names = [night_of(d) or "" for d in lake.store.listdir(FRAMES)] if lake.store.exists(FRAMES) else []
        since, until = self.since or "0000-00-00", self.until or "9999-99-99"
        return [n for n in names if _DATE.fullmatch(n) and since <= n <= until]


def select_frames(lake, selection: FrameSelection, columns: list[str]):
    """The rows of LAKE/frames a selection chooses.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    selection : FrameSelection
        Which frames.
    columns : list of str
        The columns to read.

    Returns
    -------
    pandas.DataFrame
        The frames' rows (every version of a frame ingested again; products keep the latest as they need).
    """
    return lake.read_night_table(
        FRAMES, columns=columns, filter=selection.expression(), nights=selection.night_dirs(lake)
    ).to_pandas()


def pointing_groups(frames) -> list:
    """Frames of one instrument, filter and pointing, in time order.

    Parameters
    ----------
    frames : pandas.DataFrame
        Frame rows (``instrument``, ``filter``, ``ra_center``, ``dec_center``, ``nx``, ``pixscale``, ``mjd``).

    Returns
    -------
    list of pandas.DataFrame
        One per pointing: frames whose centres lie within :data:`SAME_POINTING` of a field width of the
        group's first frame.
    """
    from astropy.coordinates import SkyCoord

    groups = []
    for _, same in frames.sort_values("mjd").groupby(["profile", "instrument", "filter"], sort=True):
        members: list[list[int]] = []
        centres: list = []
        for i, row in enumerate(same.itertuples()):
            here = SkyCoord(row.ra_center, row.dec_center, unit="deg")
            width = row.nx * row.pixscale / 3600.0
            for k, c in enumerate(centres):
                if here.separation(c).deg < SAME_POINTING * width:
                    members[k].append(i)
                    break
            else:
                centres.append(here)
                members.append([i])
        groups += [same.iloc[m] for m in members]
    return groups
