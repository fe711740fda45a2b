"""Compaction: merge each partition's per-batch files into one, and split partitions grown too big.

Compaction is a commit like any other (``operation="compact"``): the merged files are staged, and
one log entry adds them and removes the originals. Rows are unchanged, only regrouped, so every
query returns the same answer before and after. Each merged partition (and night) is published
whole, by one atomic directory exchange (a split: the whole table), so a reader listing the files
never sees its rows twice (:meth:`skylake.lake.Lake._publish_dir`).

A file in a partition that is not Parquet stops compaction before anything is written, with an
error naming it (skylake never merges or deletes what it cannot read); other files there (a README,
an editor's backup) are left in place and carried into the merged partition.
"""

from __future__ import annotations

import logging
import os
import posixpath

import numpy as np
import pyarrow as pa
from hats.pixel_math import HealpixPixel
from hats.pixel_math.spatial_index import spatial_index_to_healpix

from skylake.errors import LakeError
from skylake.lake import hats_meta
from skylake.lake.lake import Lake
from skylake.lake.tables import FRAMES, SOURCES
from skylake.schema import table_schema

__all__ = ["DEFAULT_MAX_ROWS", "compact", "format_compact"]


log = logging.getLogger(__name__)

#: Split a partition into its four children when it holds more rows than this.
DEFAULT_MAX_ROWS = 5_000_000


def _split(rows: pa.Table, pixel: HealpixPixel, max_rows: int) -> list[tuple[HealpixPixel, pa.Table]]:
    """Split ``rows`` of ``pixel`` into children until each piece is at most ``max_rows`` (or order 20)."""
    if rows.num_rows <= max_rows or pixel.order >= 20:
        return [(pixel, rows)]
    child = spatial_index_to_healpix(rows.column("_healpix_29").to_numpy(), target_order=pixel.order + 1)
    out = []
    for c in np.unique(child):
        out += _split(rows.filter(pa.array(child == c)), HealpixPixel(pixel.order + 1, int(c)), max_rows)
    return out


def _num_rows(lake: Lake, rel: str) -> int:
    """Rows of the lake file ``rel``; a LakeError naming it if it is not Parquet."""
    try:
        return lake.parquet_metadata(rel).num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise LakeError(
            f"compact: {lake.path(rel)} is not a readable Parquet file ({' '.join(str(exc).split())}); "
            "nothing was changed: move it out of the lake and re-run"
        ) from None


def _read(lake: Lake, rel: str, schema: pa.Schema) -> pa.Table:
    try:
        return lake.read_parquet(rel, schema=schema)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LakeError(
            f"compact: cannot read {lake.path(rel)} ({' '.join(str(exc).split())}); nothing was "
            "changed: move it out of the lake and re-run"
        ) from None


def _check_partitions(lake: Lake, table: str, dirs):
    """Every .parquet file in ``dirs`` must be readable; warn about other files (they are kept)."""
    for d in sorted(dirs):
        for name in lake.store.listdir(f"{table}/{d}"):
            rel = f"{table}/{d}/{name}"
            if name.endswith(".parquet") and not name.startswith((".", "_")):
                _num_rows(lake, rel)
            elif os.path.isfile(lake.path(rel)):
                log.warning("compact: %s is not a data file of the lake; it is left in place", lake.path(rel))


def compact(lake: Lake, *, max_rows: int = DEFAULT_MAX_ROWS, zstd_level: int | None = None) -> dict:
    """Merge every partition (and every night of the frames table) held in more than one file.

    Parameters
    ----------
    lake : Lake
        The lake, writable.
    max_rows : int
        Largest partition file written; a partition with more rows is split into finer pixels.
    zstd_level : int or None
        The zstd level of the merged files (None: the lake's ``compact_zstd_level``).

    Returns
    -------
    dict
        Counts of what was merged and split. Nothing is committed when there is nothing to do.
    """
    level = zstd_level or lake.config.compact_zstd_level
    stats = {"partitions_merged": 0, "partitions_split": 0, "files_removed": 0, "nights_merged": 0}
    with lake.transaction("compact") as tx:
        name = f"compacted-{tx.batch_id}"
        groups: dict[str, list[str]] = {}
        for rel in lake.live_files(SOURCES):
            groups.setdefault(posixpath.dirname(rel), []).append(rel)
        schema = table_schema(SOURCES)
        for pdir, files in sorted(groups.items()):
            pixel = hats_meta.pixel_of(files[0])
            rows = sum(_num_rows(lake, f"{SOURCES}/{f}") for f in files)
            if len(files) < 2 and rows <= max_rows:
                continue
            _check_partitions(lake, SOURCES, [pdir])
            data = pa.concat_tables([_read(lake, f"{SOURCES}/{f}", schema) for f in files])
            data = data.take(np.lexsort((data.column("source_id").to_numpy(), data.column("_healpix_29").to_numpy())))
            pieces = _split(data, pixel, max_rows)
            if len(pieces) > 1:
                tx.catalog(SOURCES).drop_partition(pixel)
                stats["partitions_split"] += 1
            for piece_pixel, piece in pieces:
                if piece_pixel != pixel:
                    tx.catalog(SOURCES).add_partition(piece_pixel)
                tx.stage(
                    SOURCES,
                    f"{hats_meta.pixel_dir(piece_pixel.order, piece_pixel.pixel)}/{name}.parquet",
                    piece,
                    zstd_level=level,
                )
            for f in files:
                tx.remove(SOURCES, f, _num_rows(lake, f"{SOURCES}/{f}"))
            stats["partitions_merged"] += len(files) > 1  # a partition in one file over max_rows is only split
            stats["files_removed"] += len(files)
        nights: dict[str, list[str]] = {}
        for rel in lake.live_files(FRAMES):
            nights.setdefault(posixpath.dirname(rel), []).append(rel)
        for ndir, files in sorted(nights.items()):
            if len(files) < 2:
                continue
            _check_partitions(lake, FRAMES, [ndir])
            data = pa.concat_tables([_read(lake, f"{FRAMES}/{f}", table_schema(FRAMES)) for f in files])
            data = data.take(np.argsort(data.column("frame_id").to_numpy(), kind="stable"))
            tx.stage(FRAMES, f"{ndir}/{name}.parquet", data, zstd_level=level)
            for f in files:
                tx.remove(FRAMES, f, _num_rows(lake, f"{FRAMES}/{f}"))
            stats["nights_merged"] += 1
            stats["files_removed"] += len(files)
        entry = tx.commit(summary=stats)
    stats["version"] = entry.version if entry else None
    log.info("compaction: %s", stats)
    return stats


def format_compact(lake_url: str, stats: dict) -> str:
    """What ``skylake compact`` prints.

    Parameters
    ----------
    lake_url : str
        The lake compacted.
    stats : dict
        What :func:`compact` returned.

    Returns
    -------
    str
        One line: what was merged and split, and the version committed (or that there was nothing to do).
    """
    if stats.get("version") is None:
        return (
            f"compact {lake_url}: nothing to do (every partition and night is held in one file, no partition "
            "is over --max-rows)"
        )

    def count(n: int, what: str) -> str:
        """``n`` and ``what``, plural unless one.

        Parameters
        ----------
        n : int
            How many.
        what : str
            The thing counted (singular).

        Returns
        -------
        str
            E.g. ``"2 nights"``.
        """
        return f"{n} {what}{'' if n == 1 else 's'}"

    done = []
    if stats["partitions_merged"]:
        done.append(f"merged {count(stats['partitions_merged'], 'sources partition')}")
    if stats["partitions_split"]:
        done.append(f"split {count(stats['partitions_split'], 'sources partition')} into finer pixels")
    if stats["nights_merged"]:
        done.append(f"merged {count(stats['nights_merged'], 'night')} of the frames table")
    return (
        f"compact {lake_url}: {', '.join(done)} ({count(stats['files_removed'], 'file')} replaced); "
        f"committed version {stats['version']}"
    )
