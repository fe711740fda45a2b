"""Running counts of what the lake holds, so ``skylake status`` costs the same on any archive.

``LAKE/_skylake/counts.json`` is a checkpoint (as Delta Lake's): the totals ``status`` prints (frames by
status and reason, nights holding frames, source rows, sources partitions, data files per table,
calibrated frames and zeropoint rows per reference catalogue by status), written by every commit that
changes them from the previous totals and the commit's own rows: the frame rows and zeropoint rows it
adds (``stage_nights``) and drops (``Table.remove_where``), the files it adds and removes, and its sources
partitions. Its size does not grow with the archive (a count per status, reason and catalogue, none per
night or partition), so neither does ``status``. Nothing else is read, except the frames files of the
nights whose frame rows a commit changes (does the night hold frames before and after it?) and, for a
commit that adds or drops zeropoints, the published zeropoints of its frames in its nights (is this frame
already calibrated against that catalogue?).

A lake made before the checkpoint has none; :func:`ensure` builds it once from the tables (one commit),
and until then ``status`` reads the tables as before.
"""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from skylake.lake import tables
from skylake.lake.log import META
from skylake.lake.tables import FRAMES, SOURCES, ZEROPOINTS

__all__ = [
    "PARTITIONS_OF",
    "COUNTS",
    "FILE_TABLES",
    "KEEP",
    "empty",
    "rows_table",
    "rows_from_files",
    "dumps",
    "read",
    "Changes",
    "apply",
    "from_tables",
    "ensure",
]


COUNTS = f"{META}/counts.json"
#: Tables whose data files are counted.
FILE_TABLES = (SOURCES, FRAMES)
#: Tables whose partitions the totals count (status prints the sources').
PARTITIONS_OF = frozenset({SOURCES})
#: Columns kept of the rows a commit adds or drops (all the counts need).
KEEP = {FRAMES: ["status", "reason", "n_sources"], ZEROPOINTS: ["frame_id", "refcat", "zp_status"]}


def empty() -> dict:
    """The totals of a lake with nothing committed.

    Returns
    -------
    dict
        Every count zero (version 0).
    """
    return {
        "version": 0,
        "frames": 0,
        "by_status": {},
        "reasons": [],
        "nights": 0,
        "source_rows": 0,
        "partitions": 0,
        "files": {},
        "calibrations": {},
        "rows": {},
    }


def rows_table(table: str, path: str) -> str | None:
    """The registered table whose rows a data file holds (the maps index lives in LAKE/maps/_index).

    Parameters
    ----------
    table : str
        The directory in the lake of the table the file belongs to.
    path : str
        The file's path relative to it.

    Returns
    -------
    str or None
        The table's name, or None: frames and sources have their own totals, the frame index is internal,
        and a HATS catalogue's rows are those under ``dataset/``.
    """
    if table in (FRAMES, SOURCES):
        return None
    where = tables.by_location()
    found = where.get(f"{table}/{path.split('/', 1)[0]}") or where.get(table)
    if found is None or found.partition_by == "bucket" or (found.hats and not path.startswith("dataset/")):
        return None
    return found.name


def rows_from_files(lake) -> dict:
    """Rows per table from the footers of every live data file (once per lake made before row counts).

    Parameters
    ----------
    lake : Lake
        The lake.

    Returns
    -------
    dict of str to int
        Each table's name to its rows, tables without rows left out.
    """

    rows = Counter()
    for t in tables.registry().values():
        if "/" in t.location or not lake.store.exists(t.location):  # nested tables: with their parent's files
            continue
        for rel in lake.live_files(t.location):
            name = rows_table(t.location, rel)
            if name is not None:
                rows[name] += lake.parquet_metadata(f"{t.location}/{rel}").num_rows
    return {n: k for n, k in sorted(rows.items()) if k}


def dumps(counts: dict) -> bytes:
    """The checkpoint's file content.

    Parameters
    ----------
    counts : dict
        The totals.

    Returns
    -------
    bytes
        Their JSON, keys sorted.
    """
    return json.dumps(counts, indent=0, sort_keys=True).encode()


def read(lake) -> dict | None:
    """Read the checkpoint.

    Parameters
    ----------
    lake : Lake
        The lake.

    Returns
    -------
    dict or None
        The totals, or None for a lake made before the checkpoint (``status`` then reads the tables).
    """
    try:
        totals = json.loads(lake.store.read_bytes(COUNTS))
    except FileNotFoundError:
        return None
    if isinstance(totals["nights"], dict):  # a checkpoint from before the night count: frames per night
        totals["nights"] = len(totals["nights"])
    return totals  # without "partitions" when written before the partition count (status counts them)


class Changes:
    """The rows and files one transaction changes, as far as the counts go."""

    def __init__(self):
        self.rows: list[tuple[str, int, pa.Table, list[str]]] = []  # (table, +1/-1, rows, each row's night)

    def add(self, table: str, data: pa.Table, nights: list[str], sign: int = 1):
        """Record rows added to or dropped from a table (kept only of the tables the counts need).

        Parameters
        ----------
        table : str
            The table.
        data : pyarrow.Table
            The rows.
        nights : list of str
            Each row's night partition name.
        sign : int
            +1 for rows added, -1 for rows dropped.
        """
        if table in KEEP and data.num_rows:
            self.rows.append((table, sign, data.select(KEEP[table]), list(nights)))

    def __bool__(self) -> bool:
        return bool(self.rows)


def apply(lake, base: dict, changes: Changes, adds, removes, version: int, partitions: dict | None = None) -> dict:
    """The totals after a commit.

    Parameters
    ----------
    lake : Lake
        The lake (its published files and zeropoints are read where the counts need them).
    base : dict
        The totals before the commit.
    changes : Changes
        The rows the commit adds and drops.
    adds, removes : iterable of FileAction
        The data files it adds and removes.
    version : int
        The commit's version.
    partitions : dict or None
        The partitions after it of each table of :data:`PARTITIONS_OF` whose files it changes.

    Returns
    -------
    dict
        The new totals (``base`` is not changed).
    """
    new = json.loads(json.dumps(base))  # a deep copy
    new["version"] = version
    files = Counter(new["files"])
    for a in adds:
        files[a.table] += a.table in FILE_TABLES
    for r in removes:
        files[r.table] -= r.table in FILE_TABLES
    new["files"] = {t: n for t, n in sorted(files.items()) if n}
    rows = Counter(new["rows"] if "rows" in new else rows_from_files(lake))  # older checkpoints: counted once
    for actions, sign in ((adds, 1), (removes, -1)):
        for a in actions:
            name = rows_table(a.table, a.path)
            if name is not None:
                rows[name] += sign * a.rows
    new["rows"] = {n: k for n, k in sorted(rows.items()) if k}
    if partitions and SOURCES in partitions:
        new["partitions"] = partitions[SOURCES]
    by_status = Counter(new["by_status"])
    reasons = Counter({(s, r): n for s, r, n in new["reasons"]})
    zp_changes = []
    for table, sign, data, row_nights in changes.rows:
        if table == FRAMES:
            new["frames"] += sign * data.num_rows
            new["source_rows"] += sign * int(pc.sum(data.column("n_sources")).as_py() or 0)
            status, reason = data.column("status").to_pylist(), data.column("reason").to_pylist()
            for counter, items in (
                (by_status, status),
                (reasons, ((s, r or "") for s, r in zip(status, reason) if s != "ok")),
            ):
                for key, n in Counter(items).items():
                    counter[key] += sign * n
        else:
            zp_changes.append((sign, data, row_nights))
    new["by_status"] = {k: n for k, n in sorted(by_status.items()) if n}
    new["reasons"] = [[s, r, n] for (s, r), n in sorted(reasons.items()) if n]
    new["nights"] += _nights_gained(lake, adds, removes)
    if zp_changes:
        _apply_zeropoints(lake, new, zp_changes)
    return new


def _nights_gained(lake, adds, removes) -> int:
    """Nights holding frames after a commit with these file ``adds``/``removes`` and not before, less those
    no longer holding any: a night holds frames while its partition holds a frames file (no file is written
    without rows), so only the published files of the nights whose files the commit changes are listed."""
    changed = Counter()
    for actions, sign in ((adds, 1), (removes, -1)):
        for a in actions:
            if a.table == FRAMES:
                changed[tables.night_of(a.path)] += sign
    gained = 0
    for night, delta in sorted(changed.items()):
        if not delta:  # files replaced (a compaction, a rewrite): the night holds frames before and after
            continue
        before = len(lake.live_files(FRAMES, [night]))
        gained += int(before + delta > 0) - int(before > 0)
    return gained


def _apply_zeropoints(lake, new: dict, zp_changes) -> None:
    """Zeropoint rows by (refcat, status), and frames with at least one row per refcat: a frame's rows
    all live in its night, so the published rows of the changed frames are read from those nights only."""
    from skylake.lake.nights import UNKNOWN_NIGHT, night_filter

    nights = sorted({n for _, _, ns in zp_changes for n in ns})
    ids = sorted({int(f) for _, d, _ in zp_changes for f in d.column("frame_id").to_pylist()})
    flt = night_filter([None if n == UNKNOWN_NIGHT else n for n in nights]) & pc.field("frame_id").isin(
        pa.array(ids, pa.int64())
    )
    published = lake.read_night_table(ZEROPOINTS, columns=["frame_id", "refcat"], filter=flt)
    before = Counter(zip(published.column("refcat").to_pylist(), published.column("frame_id").to_pylist()))
    after = Counter(before)
    cals = new["calibrations"]
    for sign, data, _ in zp_changes:
        for refcat, frame_id, status in zip(
            data.column("refcat").to_pylist(), data.column("frame_id").to_pylist(), data.column("zp_status").to_pylist()
        ):
            after[(refcat, frame_id)] += sign
            cal = cals.setdefault(refcat, {"frames": 0, "rows_by_status": {}})
            cal["rows_by_status"][status] = cal["rows_by_status"].get(status, 0) + sign
    for refcat, frame_id in set(after) | set(before):
        cals.setdefault(refcat, {"frames": 0, "rows_by_status": {}})["frames"] += int(
            after[(refcat, frame_id)] > 0
        ) - int(before[(refcat, frame_id)] > 0)
    new["calibrations"] = {
        name: {"frames": c["frames"], "rows_by_status": {k: n for k, n in sorted(c["rows_by_status"].items()) if n}}
        for name, c in sorted(cals.items())
        if c["frames"] or any(c["rows_by_status"].values())
    }


def from_tables(lake, version: int) -> dict:
    """The checkpoint computed from the tables (reads them whole: once per lake, or in tests).

    Parameters
    ----------
    lake : Lake
        The lake.
    version : int
        The version the checkpoint is of.

    Returns
    -------
    dict
        The totals.
    """
    from skylake.lake.hats_meta import count_partitions
    from skylake.lake.nights import night_partition

    new = empty()
    new["version"] = version
    frames = lake.read_frames(columns=["status", "reason", "n_sources", "night"])
    nights = [night_partition(n) for n in frames.column("night").to_pylist()]
    changes = Changes()
    changes.add(FRAMES, frames, nights)
    new = apply(lake, new, changes, [], [], version)
    new["nights"] = len(set(nights))
    new["partitions"] = lake.partitions() if hasattr(lake, "partitions") else count_partitions(lake.store, SOURCES)
    new["files"] = {t: len(lake.live_files(t)) for t in FILE_TABLES if lake.live_files(t)}
    new["rows"] = rows_from_files(lake)
    zps = lake.read_night_table(ZEROPOINTS, columns=["frame_id", "refcat", "zp_status"])
    cals: dict = {}
    pairs = set()
    for refcat, frame_id, status in zip(
        zps.column("refcat").to_pylist(), zps.column("frame_id").to_pylist(), zps.column("zp_status").to_pylist()
    ):
        cal = cals.setdefault(refcat, {"frames": 0, "rows_by_status": Counter()})
        cal["rows_by_status"][status] += 1
        pairs.add((refcat, frame_id))
    for refcat, _ in pairs:
        cals[refcat]["frames"] += 1
    new["calibrations"] = {
        name: {"frames": c["frames"], "rows_by_status": dict(sorted(c["rows_by_status"].items()))}
        for name, c in sorted(cals.items())
    }
    return new


def ensure(lake) -> bool:
    """Write the checkpoint of a lake that has none (one commit reading its tables once).

    Parameters
    ----------
    lake : Lake
        The lake.

    Returns
    -------
    bool
        True when it wrote one.
    """
    if read(lake) is not None:
        return False
    with lake.transaction("counts") as tx:
        if read(lake) is not None:
            return False
        base = lake.log.latest()
        tx.stage_file(COUNTS, dumps(from_tables(lake, (base.version if base else 0) + 1)))
        tx.commit(summary={"counts": "built from the tables"})
    return True
