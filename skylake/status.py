"""``skylake status``: what a lake holds, from its commit log and tables.

Opening the lake finishes a publish an interrupted writer left (:meth:`skylake.lake.Lake.catch_up`),
so the counts are those of the last commit; ``--version N`` gives those of commit N, read from its
files (time travel). A corrupt log entry, ``published`` file or table file, or a version that is not
kept, is a one-line :class:`~skylake.errors.LakeError` naming it (exit code 2).
"""

from __future__ import annotations

from skylake.errors import LakeError
from skylake.lake import Lake, counts
from skylake.lake.hats_meta import count_partitions
from skylake.lake.snapshot import Snapshot
from skylake.lake.tables import FRAMES, SOURCES

__all__ = ["lake_status", "format_status"]


def _partitions(lake: Lake) -> int:
    try:
        return count_partitions(lake.store, SOURCES)
    except Exception as exc:  # hats/pandas raise many types for a damaged CSV
        raise LakeError(
            f"cannot read {lake.path(SOURCES + '/partition_info.csv')}: "
            f"{' '.join(str(exc).split()) or type(exc).__name__}"
        ) from None


def lake_status(lake: Lake) -> dict:
    """Frames by status and reason, source rows, partitions, files and the last commit of a lake.

    They come from the running totals (:mod:`skylake.lake.counts`) and the last log entry, the same files
    whatever the archive's size, or, for a lake made before the totals, from the tables. Of a
    :class:`~skylake.lake.snapshot.Snapshot` (``open_lake(url, version=N)``): the lake as it was at commit
    N, counted from that version's tables (``last_commit`` is N).

    Parameters
    ----------
    lake : skylake.lake.Lake or skylake.lake.snapshot.Snapshot
        The lake, or a version of it.

    Returns
    -------
    dict
        ``lake`` (its URL), ``frames``, ``frames_by_status``, ``reasons`` (status, reason and frames of each),
        ``nights``, ``source_rows``, ``source_rows_committed``, ``partitions``, ``source_files``,
        ``frame_files``, ``calibrations`` (frames and rows by zp_status per reference catalogue), ``tables``
        (rows of every other registered table), ``last_commit`` (version, operation, batch_id and
        committed_at, or None), ``published_version``, ``consistent`` (the last commit is published) and
        ``version`` (the snapshot's, None for the live lake).

    Raises
    ------
    skylake.errors.LakeError
        The sources' partition list cannot be read (a lake whose totals do not count the partitions).
    """
    if isinstance(lake, Snapshot):
        latest, published, partitions = lake.entry, lake.version, lake.partitions()
        totals = counts.from_tables(lake, lake.version)
    else:
        published, last = lake.pending()  # not a listing of the log: a stat past the published version
        latest = lake.log.read(last) if last else None
        totals = counts.read(lake)
        if totals is None:
            totals = counts.from_tables(lake, last)
        partitions = totals["partitions"] if "partitions" in totals else _partitions(lake)  # older checkpoints
    return {
        "lake": lake.url,
        "frames": totals["frames"],
        "frames_by_status": totals["by_status"],
        "reasons": [{"status": s, "reason": r, "frames": n} for s, r, n in totals["reasons"]],
        "nights": totals["nights"],
        "source_rows": totals["source_rows"],
        "source_rows_committed": latest.sources_rows if latest else 0,
        "partitions": partitions,
        "source_files": totals["files"].get(SOURCES, 0),
        "frame_files": totals["files"].get(FRAMES, 0),
        # calibrated frames per reference catalogue and zp_status (skylake calibrate; LAKE/zeropoints)
        "calibrations": [
            {"refcat": name, "frames": c["frames"], "rows_by_status": c["rows_by_status"]}
            for name, c in totals["calibrations"].items()
        ],
        # rows of every other registered table (skylake.lake.tables): calibrations, maps, objects, products;
        # a checkpoint written before these counts has none until the next commit counts them (once)
        "tables": totals.get("rows", {}),
        "last_commit": None
        if latest is None
        else {
            "version": latest.version,
            "operation": latest.operation,
            "batch_id": latest.batch_id,
            "committed_at": latest.committed_at,
        },
        "published_version": published,
        "consistent": (latest.version if latest else 0) == published,
        "version": lake.version if isinstance(lake, Snapshot) else None,  # None: the live lake
    }


def format_status(status: dict) -> str:
    """The text ``skylake status`` prints.

    Parameters
    ----------
    status : dict
        What :func:`lake_status` returns.

    Returns
    -------
    str
        The lake, its frames by status and reason, sources, calibrations, other tables' rows and last
        commit, one per line, and a note to run ``skylake repair`` when commits are not published.
    """
    at = status.get("version")
    lines = [f"lake {status['lake']}" + (f" at version {at}" if at else "")]
    lines.append(
        f"  frames       {status['frames']} in {status['nights']} nights: "
        + ", ".join(f"{k} {v}" for k, v in status["frames_by_status"].items())
    )
    for r in status["reasons"]:
        lines.append(f"    {r['frames']:6d} {r['status']}: {r['reason']}")
    lines.append(
        f"  sources      {status['source_rows']} rows in {status['partitions']} partitions, "
        f"{status['source_files']} files"
    )
    for cal in status.get("calibrations", []):
        lines.append(
            f"  calibrated   {cal['frames']} frames against {cal['refcat']}: "
            + ", ".join(f"{k} {v}" for k, v in cal["rows_by_status"].items())
        )
    if status.get("tables"):
        lines.append("  tables       " + ", ".join(f"{name} {n}" for name, n in status["tables"].items()) + " rows")
    last = status["last_commit"]
    if last:
        lines.append(
            f"  last commit  v{last['version']} {last['operation']} {last['batch_id']} at {last['committed_at']}"
        )
    if not status["consistent"]:
        lines.append(f"  NOTE: commits after v{status['published_version']} are not published; run `skylake repair`")
    return "\n".join(lines)
