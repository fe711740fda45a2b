"""Workers write the source table: frame pieces, regrouped by partition before the commit.

::

    frame task (worker)    process a file -> write its sources as one piece
                           (_skylake/pieces/<run>/<frame_key>-<uid>.arrow) -> return the frame record and
                           a :class:`PixelCounts` (rows per pixel at the lake's partition order)
    commit (driver)        which frames are new, their ids -> plan_writers: which partitions each writer owns
    writer task (worker)   read the pieces of its frames -> ids -> one file per partition it owns, staged in
                           the batch's staging area -> return :class:`StagedSources` (paths, rows, skymap)
    commit (driver)        frames rows, frame index, HATS metadata, the log entry

So source rows never travel to the driver, and a batch still writes one file per partition it touches
(never one per frame per partition). A piece lives in its run's directory, which the run holds a lock
on: a run that dies leaves it behind, and the next transaction's recovery removes it (its lock is free).
"""

from __future__ import annotations

import contextlib
import posixpath
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skylake.lake import hats_meta
from skylake.lake.log import META, staging_path
from skylake.lake.storage import Storage, open_storage
from skylake.lake.tables import SOURCES
from skylake.schema import conform, table_schema

__all__ = [
    "PIECES_DIR",
    "ORPHAN_AGE_S",
    "PIECE_ZSTD_LEVEL",
    "PIECE_COMPRESSION",
    "PixelCounts",
    "StagedSources",
    "piece_run",
    "remove_orphans",
    "write_piece",
    "WriterPlan",
    "plan_writers",
    "split_by_partition",
    "write_sources",
    "rewrite_files",
]


PIECES_DIR = f"{META}/pieces"
#: Piece directories of runs whose lock is free and older than this are removed by recovery [s].
ORPHAN_AGE_S = 60.0
#: zstd level of a maps piece (Parquet): read back once, within minutes, so speed over size.
PIECE_ZSTD_LEVEL = 1
#: A sources piece is an Arrow IPC file with LZ4 buffers: read back once, within minutes, by a writer task.
#: Against Parquet (zstd 1) a SkyCamZ frame's piece is written and read in 0.75 instead of 3.7 ms, 1.2x larger.
PIECE_COMPRESSION = "lz4"


@dataclass
class PixelCounts:
    """Rows of one frame per pixel at ``order`` (the lake's partition order), from its ``_healpix_29``.

    Attributes
    ----------
    order : int
        The HEALPix order of the pixels.
    pixels : numpy.ndarray
        The pixels holding rows (int64, sorted, unique; NESTED).
    rows : numpy.ndarray
        The rows in each (int64).
    """

    order: int
    pixels: np.ndarray  # int64, sorted, unique
    rows: np.ndarray  # int64, rows in each

    @classmethod
    def of(cls, h29: np.ndarray, order: int) -> PixelCounts:
        """Count a frame's rows per pixel.

        Parameters
        ----------
        h29 : numpy.ndarray
            The rows' ``_healpix_29`` values.
        order : int
            The order to count at.

        Returns
        -------
        PixelCounts
            The counts.
        """
        from hats.pixel_math.spatial_index import spatial_index_to_healpix

        pixels, rows = np.unique(
            spatial_index_to_healpix(np.asarray(h29, dtype=np.int64), target_order=order), return_counts=True
        )
        return cls(order, pixels, rows.astype(np.int64))

    def at(self, order: int) -> PixelCounts:
        """The same rows counted at a coarser order.

        Parameters
        ----------
        order : int
            The order, at most :attr:`order`.

        Returns
        -------
        PixelCounts
            The counts at ``order``.
        """
        from hats.pixel_math.healpix_pixel import get_lower_order_pixel

        parent, first = np.unique(get_lower_order_pixel(self.order, self.pixels, self.order - order), return_index=True)
        return PixelCounts(order, parent, np.add.reduceat(self.rows, first) if len(first) else self.rows[:0])


@dataclass
class StagedSources:
    """What a writer task staged.

    Attributes
    ----------
    files : list of tuple of (str, int, int)
        The files: (table-relative path, rows, bytes).
    new_partitions : list of tuple of (int, int)
        The partitions it created: (order, pixel).
    skymap_pixels : numpy.ndarray
        Its rows' sky map, sparse: the pixels at :data:`hats_meta.SKYMAP_ORDER` holding rows (int64).
    skymap_rows : numpy.ndarray
        The rows in each (int64).
    """

    files: list[tuple[str, int, int]] = field(default_factory=list)
    new_partitions: list[tuple[int, int]] = field(default_factory=list)
    skymap_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    skymap_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


# -- the run's piece directory ----------------------------------------------------------------------
@contextlib.contextmanager
def piece_run(store: Storage):
    """A new directory for one run's pieces, locked while the run lasts and removed after it.

    The lock is ``<run>.lock`` beside the directory, taken before the directory exists: an unlocked
    directory is an orphan (:func:`remove_orphans`).

    Parameters
    ----------
    store : Storage
        The lake's storage.

    Yields
    ------
    str
        The directory's lake-relative path.
    """
    run = f"{PIECES_DIR}/{uuid.uuid4().hex}"
    try:
        with store.lock(f"{run}.lock"):  # before the directory exists: an unlocked directory is an orphan
            try:
                store.makedirs(run)
                yield run
            finally:
                store.rmtree(run)
    finally:
        store.remove(f"{run}.lock")
        store.remove_empty_dirs(PIECES_DIR)


def remove_orphans(store: Storage, min_age_s: float = ORPHAN_AGE_S) -> list[str]:
    """Remove the pieces of runs that ended without cleaning up (killed): their lock is free.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    min_age_s : float
        Runs younger than this are left alone (a lock file is created an instant before it is locked) [s].

    Returns
    -------
    list of str
        The runs removed.
    """
    if not store.exists(PIECES_DIR):
        return []
    gone = []
    now = time.time()
    for name in sorted(store.listdir(PIECES_DIR)):
        try:
            if _remove_if_orphan(store, name, now, min_age_s):
                gone.append(name.removesuffix(".lock"))
        except FileNotFoundError:  # listed, then cleaned up by its own run as it ended (no lock covers that)
            continue
    return gone


def _remove_if_orphan(store: Storage, name: str, now: float, min_age_s: float) -> bool:
    """Remove one entry of the pieces directory (a run's directory or its lock file) when its run is over;
    whether it was removed."""
    run = f"{PIECES_DIR}/{name.removesuffix('.lock')}"
    if not name.endswith(".lock"):
        if not store.exists(f"{run}.lock") and now - store.mtime(run) > min_age_s:
            store.rmtree(run)  # its lock file went first
            return True
        return False
    if now - store.mtime(f"{run}.lock") < min_age_s:
        return False
    with store.lock(f"{run}.lock", blocking=False) as free:
        if free:
            store.rmtree(run)
    if free:
        store.remove(f"{run}.lock")
    return free


# -- frame side -------------------------------------------------------------------------------------
def write_piece(
    store: Storage, run: str, frame_key: str, sources: dict[str, np.ndarray], order: int
) -> tuple[str, PixelCounts, int]:
    """Write one frame's source columns (all but the ids, allocated at commit) as a piece of a run.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    run : str
        The run's piece directory (:func:`piece_run`).
    frame_key : str
        The frame's key (in the piece's name).
    sources : dict of str to numpy.ndarray
        The frame's source columns, ``_healpix_29`` among them.
    order : int
        The lake's partition order.

    Returns
    -------
    rel : str
        The piece's lake-relative path.
    counts : PixelCounts
        Its rows per pixel at ``order``.
    nbytes : int
        Its size [bytes].
    """
    import pyarrow.ipc as ipc

    n = len(sources["_healpix_29"])
    table = conform({**sources, "frame_id": np.zeros(n, np.int64), "source_id": np.arange(n, dtype=np.int64)}, SOURCES)
    rel = f"{run}/{frame_key}-{uuid.uuid4().hex[:8]}.arrow"
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression=PIECE_COMPRESSION)) as out:
        out.write_table(table)
    blob = sink.getvalue().to_pybytes()
    store.write_bytes(rel, blob, fsync=False)  # read back within minutes; the writer fsyncs what it stages
    return rel, PixelCounts.of(sources["_healpix_29"], order), len(blob)


def _read_piece(store: Storage, rel: str, schema: pa.Schema) -> pa.Table:
    """A sources piece (:func:`write_piece`), in the lake's sources schema."""
    import pyarrow.ipc as ipc

    return ipc.open_file(pa.py_buffer(store.read_bytes(rel))).read_all().cast(schema)


# -- planning (driver) ------------------------------------------------------------------------------
@dataclass
class WriterPlan:
    """One writer task: the pieces it reads, with their frame ids, and the pixels at ``order`` it owns.

    Attributes
    ----------
    pieces : list of tuple of (str, int)
        The pieces it reads: (lake-relative path, frame id).
    order : int
        The batch's partition order.
    pixels : numpy.ndarray
        The pixels at ``order`` it owns (int64, sorted).
    rows : int
        The rows of those pixels in the batch (its load).
    """

    pieces: list[tuple[str, int]]
    order: int
    pixels: np.ndarray
    rows: int


def plan_writers(
    frames: list[tuple[str, int, PixelCounts]], partitions, lake_order: int, n_writers: int
) -> tuple[int, list[WriterPlan]]:
    """Share a batch's partitions among at most ``n_writers`` writer tasks.

    Units of work are pixels at the batch's order, merged where an existing coarser partition holds
    several: no partition is split between writers, so each gets one file per batch.

    Parameters
    ----------
    frames : list of tuple of (str, int, PixelCounts)
        (piece, frame id, rows per pixel at ``lake_order``) of each frame with sources.
    partitions : list of hats.pixel_math.HealpixPixel
        The lake's partitions.
    lake_order : int
        The lake's partition order.
    n_writers : int
        The most writer tasks to plan.

    Returns
    -------
    order : int
        The batch's partition order (:func:`hats_meta.order_for_pixel_sets`).
    plans : list of WriterPlan
        The writer tasks (at most ``n_writers``; none when no frame has sources).
    """
    from hats.pixel_math.healpix_pixel import get_lower_order_pixel

    if not frames:
        return lake_order, []
    order = hats_meta.order_for_pixel_sets([c.pixels for _, _, c in frames], lake_order)
    coarse = {(p.order, p.pixel) for p in partitions if p.order < order}
    counts = [c.at(order) for _, _, c in frames]
    all_pix = np.concatenate([c.pixels for c in counts])
    all_rows = np.concatenate([c.rows for c in counts])
    pix, inverse = np.unique(all_pix, return_inverse=True)
    rows = np.bincount(inverse, weights=all_rows).astype(np.int64)
    unit = {}
    for q in pix.tolist():
        ancestors = [(o, get_lower_order_pixel(order, q, order - o)) for o in range(order)]
        unit[q] = next((a for a in ancestors if a in coarse), (order, q))
    units: dict[tuple[int, int], list[int]] = {}
    unit_rows: dict[tuple[int, int], int] = {}
    for q, r in zip(pix.tolist(), rows.tolist()):
        units.setdefault(unit[q], []).append(q)
        unit_rows[unit[q]] = unit_rows.get(unit[q], 0) + r
    n = max(1, min(n_writers, len(units)))
    owned: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for u in sorted(units, key=lambda u: (-unit_rows[u], u)):  # largest first, to the least loaded writer
        k = load.index(min(load))
        owned[k] += units[u]
        load[k] += unit_rows[u]
    plans = []
    for k in range(n):
        mine = np.asarray(sorted(owned[k]), dtype=np.int64)
        pieces = [(piece, fid) for (piece, fid, _), c in zip(frames, counts) if np.isin(c.pixels, mine).any()]
        plans.append(WriterPlan(pieces, order, mine, load[k]))
    return order, plans


# -- writer side ------------------------------------------------------------------------------------
def split_by_partition(sources: pa.Table, partitions, order: int, id_column: str = "source_id"):
    """Sort rows by ``_healpix_29`` (then their id) and split them by partition.

    Partitions come from :func:`hats_meta.assign_pixels` with the existing ``partitions``, new ones at
    ``order``.

    Parameters
    ----------
    sources : pyarrow.Table
        The rows, with ``_healpix_29`` and their id.
    partitions : list of hats.pixel_math.HealpixPixel
        The lake's existing partitions.
    order : int
        The order of new partitions.
    id_column : str
        The rows' id (the table's ``id_column``).

    Yields
    ------
    pixel : hats.pixel_math.HealpixPixel
        A partition.
    rows : pyarrow.Table
        Its rows, sorted.
    """
    from hats.pixel_math import HealpixPixel

    h29 = sources.column("_healpix_29").to_numpy()
    order_idx = np.lexsort((sources.column(id_column).to_numpy(), h29))
    sources, h29 = sources.take(order_idx), h29[order_idx]
    orders, pixels = hats_meta.assign_pixels(h29, partitions, order)
    keys = orders * (1 << 40) + pixels  # rows of one partition are contiguous after the h29 sort
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    for s, e in zip(starts, ends):
        yield HealpixPixel(int(orders[s]), int(pixels[s])), sources.slice(s, e - s)


def write_sources(
    plan: WriterPlan,
    lake_root: str,
    batch_id: str,
    partitions,
    sources_per_frame: int,
    name: str | None = None,
    zstd_level: int | None = None,
    amend=None,
) -> StagedSources:
    """A writer task: read a plan's pieces and stage one file per partition in a batch's staging area.

    It keeps the rows of the pixels the plan owns and gives them their ids (``frame_id *
    sources_per_frame + detection number``). Re-running it (a worker died) rewrites the same files.

    Parameters
    ----------
    plan : WriterPlan
        The pieces to read and the pixels owned.
    lake_root : str
        The lake's location (:attr:`Storage.location`).
    batch_id : str
        The batch staging the files.
    partitions : list of hats.pixel_math.HealpixPixel
        The lake's existing partitions.
    sources_per_frame : int
        How many source ids each frame has room for.
    name : str or None
        The files' name in each partition, without ``.parquet`` (None: ``batch_id``).
    zstd_level : int or None
        The files' zstd level (None: the batch default).
    amend : callable or None
        ``amend(frame_id, rows) -> rows``, applied to each frame's rows before they get their ids: a
        product's last change to rows the frame task wrote (the storage layer does not know what it
        changes; ingest re-flags streaks with it, :func:`skylake.tasks.allsky.reflag_streaks`).

    Returns
    -------
    StagedSources
        The files staged, the partitions created and the rows' sky map.
    """
    from hats.pixel_math.spatial_index import spatial_index_to_healpix

    from skylake.lake.parquet import BATCH_ZSTD_LEVEL, parquet_bytes

    store = open_storage(lake_root)
    schema = table_schema(SOURCES)
    parts = []
    for piece, frame_id in plan.pieces:
        data = _read_piece(store, piece, schema)
        mine = np.isin(
            spatial_index_to_healpix(data.column("_healpix_29").to_numpy(), target_order=plan.order), plan.pixels
        )
        if not mine.all():
            data = data.filter(pa.array(mine))
        fid = np.int64(frame_id)
        if amend is not None:
            data = amend(int(frame_id), data)
        data = data.set_column(
            schema.get_field_index("frame_id"), "frame_id", pa.array(np.full(data.num_rows, fid, np.int64))
        )
        data = data.set_column(
            schema.get_field_index("source_id"), "source_id", pc.add(data.column("source_id"), fid * sources_per_frame)
        )
        parts.append(data)
    out = StagedSources()
    if not parts:
        return out
    sources = pa.concat_tables(parts)
    known = {(p.order, p.pixel) for p in partitions}
    for pixel, rows in split_by_partition(sources, partitions, plan.order):
        if (pixel.order, pixel.pixel) not in known:
            out.new_partitions.append((pixel.order, pixel.pixel))
        rel = f"{hats_meta.pixel_dir(pixel.order, pixel.pixel)}/{name or batch_id}.parquet"
        blob = parquet_bytes(rows, BATCH_ZSTD_LEVEL if zstd_level is None else zstd_level)
        store.write_bytes(staging_path(batch_id, posixpath.join(SOURCES, rel)), blob)
        out.files.append((rel, rows.num_rows, len(blob)))
    sky = spatial_index_to_healpix(sources.column("_healpix_29").to_numpy(), target_order=hats_meta.SKYMAP_ORDER)
    out.skymap_pixels, out.skymap_rows = np.unique(sky, return_counts=True)
    return out


def rewrite_files(
    item: list[tuple[int, str]], area, table: str, drop, schema: str
) -> list[tuple[int, str, str, int, int]]:
    """A task: rewrite the files of ``item`` without the rows ``drop`` selects, staging what is kept.

    Each file ``(k, rel)`` of ``table`` holding rows to drop is read, and its other rows (if any) are staged
    beside it as ``area.rewritten(rel, k)``. Re-running it (a worker died) rewrites the same files.

    Parameters
    ----------
    item : list of tuple of (int, str)
        The files ``(k, rel)``: a number unique in the batch and the path in the table.
    area : skylake.lake.staging.StagingArea
        The batch's staging area.
    table : str
        The table.
    drop : callable
        ``drop(data)`` -> boolean array, true for the rows to drop.
    schema : str
        The files' schema (a table name of ``schemas/``).

    Returns
    -------
    list of tuple of (int, str, str, int, int)
        The file actions ``(k, "remove", rel, rows, 0)`` and ``(k, "stage", rel, rows, bytes)``.
    """
    import pyarrow.parquet as pq

    from skylake.lake.parquet import parquet_bytes

    store = open_storage(area.lake_root)
    actions = []
    for k, rel in item:
        data = pq.read_table(store.full(f"{table}/{rel}"), schema=table_schema(schema))
        gone = np.asarray(drop(data), dtype=bool)
        if not gone.any():
            continue
        actions.append((k, "remove", rel, data.num_rows, 0))
        if not gone.all():
            kept = data.filter(pa.array(~gone))
            new = area.rewritten(rel, k)
            actions.append((k, "stage", new, kept.num_rows, area.write_bytes(table, new, parquet_bytes(kept), store)))
    return actions
