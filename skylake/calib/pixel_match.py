"""The cross-match of a batch's sources with a reference catalogue as one pure task per sources partition.

::

    driver   plan(): hats aligns the two catalogs' partition trees (inner alignment, only the sky of the
             batch's footprint MOC); each sources partition becomes a PartitionTask naming its file (or
             directory) and the reference partitions it meets, each with its margin's file
    worker   count_partitions(): each partition's sources per frame, COUNT_TASK partitions a task (one
             column; the calibration groups the frames by it while the matches run)
    worker   match_partition(): pyarrow reads the partition's rows of the batch's frames and the reference
             partitions with their margins; per reference partition one k-d tree of its stars (kept by the
             worker for the next partition meeting it) and one 2-nearest query of the sources inside it;
             numpy arrays in, one DataFrame out

A source lives in one sources partition and, inside it, in one aligned pixel (the finer of its partition and
the reference partition covering it), so each source is queried once, against the stars of its reference
partition and that partition's margin: complete as long as the radius is at most the margin
(:func:`skylake.calib.crossmatch.check_margin` checks). Each source keeps its nearest star within the radius
(ties to the smaller ``ref_id``) and the magnitude and separation of the second nearest. The pairs are those
of lsdb's k-d tree cross-match (``Catalog.crossmatch``) reduced the same way, without its per-pixel-pair
DataFrame assembly, which cost ~30x the k-d tree query (benchmarks/crossmatch.py).
"""

from __future__ import annotations

import os
import pickle
import threading
from collections import OrderedDict
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import pyarrow as pa

from skylake.sphere import chord, chord_to_arcsec, unit_vectors

__all__ = [
    "MatchSpec",
    "PartitionTask",
    "count_partition",
    "count_partitions",
    "match_delayed",
    "match_partition",
    "plan",
    "reference_columns",
    "COUNT_TASK",
    "STAR_CACHE_ROWS",
]


@dataclass(frozen=True)
class PartitionTask:
    """One sources partition and the reference partitions it meets.

    Attributes
    ----------
    order : int
        The sources partition's HEALPix order.
    pixel : int
        Its pixel (NESTED).
    path : object
        Its file, or directory of files (a local path as a string, else a ``UPath``).
    refs : tuple of tuple
        Per reference partition met: its ``(order, pixel)`` and the paths of its file and of its margin's
        file (None without margin rows).
    """

    order: int
    pixel: int
    path: object
    refs: tuple


@dataclass(frozen=True, eq=False)
class MatchSpec:
    """What every partition task of one cross-match shares.

    Attributes
    ----------
    frame_ids : numpy.ndarray
        The frames whose sources are matched (int64).
    source_columns : tuple of str
        The sources' columns, in the pairs' order.
    source_schema : pyarrow.Schema
        The sources catalog's schema (its files are read with it).
    ref_columns : tuple of str
        The reference columns (``ref_id``, ``ra``, ``dec``, ...); those also among the sources' get ``_ref``.
    radius_arcsec : float
        The match radius [arcsec].
    mag : str
        The reference column giving ``neighbour_mag``.
    band : str or None
        With a band, the pairs get the reference columns of
        :func:`reference_columns`.
    color : tuple of str or None
        The colour's two bands, or None.
    """

    frame_ids: np.ndarray
    source_columns: tuple
    source_schema: pa.Schema
    ref_columns: tuple
    radius_arcsec: float
    mag: str
    band: str | None = None
    color: tuple | None = None

    def __post_init__(self):
        # sorted and unique: a partition's rows of these frames are found by binary search (_batch_rows)
        object.__setattr__(self, "frame_ids", np.unique(np.asarray(self.frame_ids, dtype=np.int64)))
        if not self.radius_arcsec > 0:
            raise ValueError(f"the match radius must be positive, got {self.radius_arcsec!r} arcsec")
        for need in ("ra", "dec", "frame_id"):
            if need not in self.source_columns:
                raise ValueError(f"the source columns {list(self.source_columns)} lack {need!r}")
        for need in ("ref_id", "ra", "dec", self.mag):
            if need not in self.ref_columns:
                raise ValueError(f"the reference columns {list(self.ref_columns)} lack {need!r}")

    def __reduce__(self):
        # pickled once (its schema costs ~0.3 ms), however many tasks it goes to
        blob = self.__dict__.get("_pickled")
        if blob is None:
            blob = pickle.dumps({f.name: getattr(self, f.name) for f in fields(self)}, pickle.HIGHEST_PROTOCOL)
            object.__setattr__(self, "_pickled", blob)
        return (_spec_from_pickle, (blob,))


def _spec_from_pickle(blob: bytes) -> MatchSpec:
    """A :class:`MatchSpec` from its pickled fields (:meth:`MatchSpec.__reduce__`)."""
    return MatchSpec(**pickle.loads(blob))


def plan(sources, refcat, moc) -> list[PartitionTask]:
    """The partition tasks of a cross-match of the catalog ``sources`` with the collection ``refcat`` in ``moc``.

    Parameters
    ----------
    sources : hats.catalog.Catalog
        The sources catalog (LAKE/sources).
    refcat : hats.catalog.CatalogCollection or skylake.calib.crossmatch.OpenRefcat
        The reference collection, with its default margin (read here), or the two of them read once
        (:func:`~skylake.calib.crossmatch.open_refcat`).
    moc : mocpy.MOC
        The sky to match (the batch's footprints, padded by the radius).

    Returns
    -------
    list of PartitionTask
        One per sources partition meeting a reference partition inside ``moc``, in pixel order.
    """
    import hats
    from hats.io import paths
    from hats.pixel_math import HealpixPixel
    from hats.pixel_tree.pixel_alignment import align_with_mocs

    from skylake.jit_cache import cache_hats_jit

    cache_hats_jit()  # the alignment's numba code from disk, not compiled again in every process
    if hasattr(refcat, "collection"):  # an OpenRefcat: its margin already read
        refcat, margin = refcat.collection, refcat.margin
    else:
        margin_dir = refcat.default_margin_catalog_dir
        margin = hats.read_hats(margin_dir) if margin_dir is not None else None
    main = refcat.main_catalog
    in_margin = {(p.order, p.pixel) for p in margin.get_healpix_pixels()} if margin is not None else set()
    if not len(sources.pixel_tree) or not len(main.pixel_tree):
        return []
    alignment = align_with_mocs(sources.pixel_tree, main.pixel_tree, moc, moc)
    mapping = alignment.pixel_mapping
    cols = ["primary_Norder", "primary_Npix", "join_Norder", "join_Npix"]
    pairs = mapping[cols].drop_duplicates().sort_values(cols).to_numpy(np.int64)
    tasks: dict[tuple[int, int], list] = {}
    for s_order, s_pixel, r_order, r_pixel in pairs:
        ref = HealpixPixel(int(r_order), int(r_pixel))
        files = (
            _plain(paths.pixel_catalog_file(main.catalog_base_dir, ref, npix_suffix=main.catalog_info.npix_suffix)),
            _plain(paths.pixel_catalog_file(margin.catalog_base_dir, ref, npix_suffix=margin.catalog_info.npix_suffix))
            if (ref.order, ref.pixel) in in_margin
            else None,
        )
        tasks.setdefault((int(s_order), int(s_pixel)), []).append(((ref.order, ref.pixel), *files))
    suffix = sources.catalog_info.npix_suffix
    return [
        PartitionTask(
            order,
            pixel,
            _plain(paths.pixel_catalog_file(sources.catalog_base_dir, HealpixPixel(order, pixel), npix_suffix=suffix)),
            tuple(refs),
        )
        for (order, pixel), refs in tasks.items()
    ]


def _plain(path):
    """A local ``UPath`` as its path (a string: unpickling a ``UPath`` costs ~0.1 ms, and a batch's tasks carry
    hundreds); any other as it is (an object store's keeps its filesystem)."""
    fs = getattr(path, "fs", None)
    if fs is None:
        return path
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return str(path.path) if {"file", "local"} & set(protocols) else path


def match_delayed(sources, refcat, moc, spec: MatchSpec, with_counts: bool = False) -> list | tuple[list, list]:
    """The cross-match as dask delayed objects, one per sources partition (:func:`plan`, :func:`match_partition`).

    Parameters
    ----------
    sources : hats.catalog.Catalog
        The sources catalog.
    refcat : hats.catalog.CatalogCollection or skylake.calib.crossmatch.OpenRefcat
        The reference collection, with its default margin (:func:`plan`).
    moc : mocpy.MOC
        The sky to match.
    spec : MatchSpec
        The cross-match's settings.
    with_counts : bool
        Also each partition's sources per frame (:func:`count_partition`).

    Returns
    -------
    list of dask.delayed.Delayed
        Each a partition's pairs; empty when no partition of either catalog meets ``moc``. With
        ``with_counts``, that list and a list of tasks each giving the counts of :data:`COUNT_TASK` partitions
        (concatenated, they follow the partitions' order).
    """
    import dask

    tasks = plan(sources, refcat, moc)
    shared = dask.delayed(spec)  # one copy in the graph, not one per task
    matches = [dask.delayed(match_partition)(task, shared) for task in tasks]
    if not with_counts:
        return matches
    chunks = [tasks[k : k + COUNT_TASK] for k in range(0, len(tasks), COUNT_TASK)]
    return matches, [dask.delayed(count_partitions)(chunk, shared) for chunk in chunks]


#: Partitions one counting task reads (a task costs the scheduler and a worker ~1-2 ms; a count, ~4 ms).
COUNT_TASK = 16


def count_partitions(tasks: list[PartitionTask], spec: MatchSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`count_partition` of several partitions, in their order.

    Parameters
    ----------
    tasks : list of PartitionTask
        The partitions (:func:`plan`).
    spec : MatchSpec
        The cross-match's settings (its frames).

    Returns
    -------
    list of tuple of numpy.ndarray
        Each partition's frames and their sources there.
    """
    return [count_partition(task, spec) for task in tasks]


def count_partition(task: PartitionTask, spec: MatchSpec) -> tuple[np.ndarray, np.ndarray]:
    """The spec's frames with sources in one sources partition, and their sources there.

    It reads one column, so it is known long before the partition's match: the calibration groups the frames by
    it while the matches run (:func:`skylake.calib.pairs.home_groups`).

    Parameters
    ----------
    task : PartitionTask
        The partition (:func:`plan`).
    spec : MatchSpec
        The cross-match's settings (its frames).

    Returns
    -------
    frame_ids : numpy.ndarray
        The frames, sorted and unique.
    sources : numpy.ndarray
        The sources of each in the partition.
    """
    fid = _batch_rows(task.path, ["frame_id"], spec).column("frame_id").to_numpy().astype(np.int64, copy=False)
    ids = spec.frame_ids
    if not fid.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if ids[-1] - ids[0] < _ID_TABLE:  # the batch's ids span little: count by offset, no sort
        n = np.bincount(fid - ids[0], minlength=int(ids[-1] - ids[0]) + 1)
        at = np.flatnonzero(n)
        return at + ids[0], n[at]
    return np.unique(fid, return_counts=True)


#: A batch's frame ids spanning less than this are tested and counted with a table of the span (a task builds
#: and scans it: ~1 ms at this size; a wider span is searched).
_ID_TABLE = 1 << 20


def _batch_rows(path, columns: list[str], spec: MatchSpec) -> pa.Table:
    """``columns`` of the rows of the spec's frames in a sources partition.

    The frames' id range prunes row groups by their statistics; a binary search in the sorted ids keeps the
    frames' rows (a dataset filter ``isin`` over every row costed a second of CPU per 10^7 rows). A writer's
    commit may replace a file of the partition between the listing and the read: listed and read again.
    """
    import pyarrow.compute as pc

    from skylake.lake.storage import read_listed

    ids = spec.frame_ids
    if not ids.size:
        return spec.source_schema.empty_table().select(columns)
    span = (pc.field("frame_id") >= int(ids[0])) & (pc.field("frame_id") <= int(ids[-1]))
    read = list(dict.fromkeys([*columns, "frame_id"]))
    table = read_listed(lambda: _read(path, read, spec.source_schema, span))
    if ids.size == ids[-1] - ids[0] + 1:  # a run of ids: the range is the set
        return table.select(columns)
    fid = table.column("frame_id").to_numpy().astype(np.int64, copy=False)
    if ids[-1] - ids[0] < _ID_TABLE:  # a table of the span: one lookup a row
        member = np.zeros(int(ids[-1] - ids[0]) + 1, bool)
        member[ids - ids[0]] = True
        mine = member[fid - ids[0]]
    else:
        mine = ids[np.minimum(np.searchsorted(ids, fid), ids.size - 1)] == fid
    if not mine.all():
        table = table.filter(pa.array(mine))
    return table.select(columns)


def _read(path, columns, schema=None, filter=None) -> pa.Table:
    """Columns of a Parquet file or directory of files (hidden files left out), local or on an object store."""
    import pyarrow.dataset as pads

    fs = getattr(path, "fs", None)
    local = fs is None or "file" in np.atleast_1d(getattr(fs, "protocol", "file"))
    where = str(path) if local else path.path
    dataset = pads.dataset(where, schema=schema, format="parquet", filesystem=None if local else fs)
    return dataset.to_table(columns=list(columns), filter=filter)


def _as_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """An Arrow column as the pairs hold it: floats as float64 with NaN for nulls, integers as int64 (float64
    when null), anything else as objects."""
    kind = column.type
    if pa.types.is_floating(kind):
        return column.cast(pa.float64()).to_numpy().astype(np.float64, copy=False)
    if pa.types.is_integer(kind):
        if column.null_count:
            return column.cast(pa.float64()).fill_null(np.nan).to_numpy()
        return column.cast(pa.int64()).to_numpy()
    return column.to_numpy(zero_copy_only=False)


#: Stars a worker keeps indexed (columns and k-d tree, ~100 bytes a star) for the next sources partition meeting
#: the same reference partition: neighbouring sources partitions inside a coarser reference partition read and
#: index it once (at 10^7 x 10^6, 84 tasks read the 12 reference partitions 84 times before, 24 after).
STAR_CACHE_ROWS = 1_000_000
_star_cache: OrderedDict = OrderedDict()
_star_lock = threading.Lock()  # a worker may run several tasks in threads


def _stamp(path) -> tuple | None:
    """A local file's identity for the star cache (size and modification time); None elsewhere (not cached)."""
    if path is None:
        return ()
    fs = getattr(path, "fs", None)  # a UPath: only a local file has a size and time worth trusting
    protocols = getattr(fs, "protocol", "file")
    if fs is not None and "file" not in ((protocols,) if isinstance(protocols, str) else protocols):
        return None
    try:
        st = os.stat(str(getattr(path, "path", path)))
    except OSError:
        return None
    return (str(path), st.st_size, st.st_mtime_ns)


def _stars(main_path, margin_path, columns: tuple) -> tuple[dict, object] | None:
    """A reference partition's stars with its margin's, as numpy columns, and a ``cKDTree`` of their unit vectors.

    Kept per worker process for the next task (:data:`STAR_CACHE_ROWS` stars at most, the least recently used
    go first), keyed by the files' identity: a catalogue imported again is read again. None without stars.
    """
    from scipy.spatial import cKDTree

    stamps = (_stamp(main_path), _stamp(margin_path))
    key = (stamps, tuple(columns)) if None not in stamps else None
    with _star_lock:
        if key is not None and key in _star_cache:
            _star_cache.move_to_end(key)
            return _star_cache[key]
    stars = _read(main_path, columns)
    if margin_path is not None:
        stars = pa.concat_tables([stars, _read(margin_path, columns).cast(stars.schema)])
    indexed = None
    if stars.num_rows:
        star = {c: _as_numpy(stars.column(c)) for c in columns}
        indexed = (star, cKDTree(unit_vectors(star["ra"], star["dec"]), balanced_tree=False, compact_nodes=False))
    if key is not None:
        with _star_lock:
            _star_cache[key] = indexed
            while len(_star_cache) > 1 and sum(v[1].n for v in _star_cache.values() if v) > STAR_CACHE_ROWS:
                _star_cache.popitem(last=False)
    return indexed


def _nearest_two(src_xyz: np.ndarray, tree, ids: np.ndarray, radius_arcsec: float):
    """Each source's nearest star within the radius and the next nearest: (hit, first, second, sep1, sep2).

    ``tree`` is a ``cKDTree`` of the stars' unit vectors. ``hit`` the sources with a star; ``first``/``second``
    star positions (``second`` = ``first`` without a second star); separations [arcsec], ``sep2`` inf without a
    second star. Equal separations: the smaller id is the nearest.
    """
    k = min(2, tree.n)
    dist, idx = tree.query(src_xyz, k=k, distance_upper_bound=chord(radius_arcsec))
    if k == 1:
        dist, idx = dist[:, None], idx[:, None]
    hit = np.flatnonzero(np.isfinite(dist[:, 0]))
    dist, idx = dist[hit], idx[hit]
    sep = np.full(dist.shape, np.inf)
    finite = np.isfinite(dist)
    sep[finite] = chord_to_arcsec(dist[finite])
    first = idx[:, 0]
    second = np.where(finite[:, -1], idx[:, -1], first)
    if k == 2:
        swap = (sep[:, 0] == sep[:, 1]) & (ids[second] < ids[first])
        first, second = np.where(swap, second, first), np.where(swap, first, second)
        sep1, sep2 = sep[:, 0], sep[:, 1]
    else:
        sep1, sep2 = sep[:, 0], np.full(len(hit), np.inf)
    return hit, first, second, sep1, sep2


def match_partition(task: PartitionTask, spec: MatchSpec) -> pd.DataFrame:
    """Each source of one sources partition (of the spec's frames) with its nearest reference star.

    Parameters
    ----------
    task : PartitionTask
        The partition and the reference partitions it meets (:func:`plan`).
    spec : MatchSpec
        The cross-match's settings.

    Returns
    -------
    pandas.DataFrame
        One row per matched source (by reference partition, then in the partition's order; a frame group
        takes its rows by :func:`skylake.calib.pairs.frames_split`), numpy-backed: the source columns, the
        reference columns (``_ref`` where their names clash), ``sep_arcsec`` [arcsec], ``neighbour_mag`` and
        ``neighbour_sep`` (NaN without a second star within the radius); with a band, :func:`reference_columns`.
    """
    from hats.pixel_math.spatial_index import SPATIAL_INDEX_COLUMN, spatial_index_to_healpix

    read_cols = list(dict.fromkeys([*spec.source_columns, SPATIAL_INDEX_COLUMN]))
    table = _batch_rows(task.path, read_cols, spec)
    src = {c: _as_numpy(table.column(c)) for c in read_cols}
    h29 = (
        src.pop(SPATIAL_INDEX_COLUMN) if SPATIAL_INDEX_COLUMN not in spec.source_columns else src[SPATIAL_INDEX_COLUMN]
    )
    rows, pieces = [], []
    for (order, pixel), main_path, margin_path in task.refs:
        inside = (
            np.arange(len(h29))
            if order <= task.order
            else np.flatnonzero(spatial_index_to_healpix(h29, target_order=order) == pixel)
        )
        if not inside.size:
            continue
        indexed = _stars(main_path, margin_path, spec.ref_columns)
        if indexed is None:
            continue
        star, tree = indexed
        hit, first, second, sep1, sep2 = _nearest_two(
            unit_vectors(src["ra"][inside], src["dec"][inside]), tree, star["ref_id"], spec.radius_arcsec
        )
        has_second = np.isfinite(sep2)
        rows.append(inside[hit])
        pieces.append(
            {
                **{c: v[first] for c, v in star.items()},
                "sep_arcsec": sep1,
                "neighbour_mag": np.where(has_second, star[spec.mag][second], np.nan),
                "neighbour_sep": np.where(has_second, sep2, np.nan),
            }
        )
    out = {}
    keep = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    for c in spec.source_columns:
        out[c] = src[c][keep]
    for c in (*spec.ref_columns, "sep_arcsec", "neighbour_mag", "neighbour_sep"):
        name = f"{c}_ref" if c in spec.source_columns else c
        parts = [p[c] for p in pieces]
        out[name] = np.concatenate(parts) if parts else np.zeros(0, np.float64)
    pairs = pd.DataFrame(out)
    return pairs if spec.band is None else reference_columns(pairs, spec.band, list(spec.color) if spec.color else None)


def reference_columns(pairs: pd.DataFrame, band: str, color: list[str] | None) -> pd.DataFrame:
    """``ref_mag``, ``ref_mag_err`` and ``ref_color`` of pairs holding the catalogue's ``mag_*``/``err_*`` columns.

    ``ref_mag_err`` is NaN without ``err_<band>`` and ``ref_color`` NaN without a ``color``; the ``mag_*`` and
    ``err_*`` columns go.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pairs, with the catalogue's ``mag_*`` and ``err_*`` columns.
    band : str
        The band calibrated.
    color : list of str or None
        The colour's two bands (``mag_<first> - mag_<second>``), or None.

    Returns
    -------
    pandas.DataFrame
        The pairs with the reference columns.
    """
    pairs = pairs.assign(
        ref_color=(pairs[f"mag_{color[0]}"] - pairs[f"mag_{color[1]}"]) if color else np.nan,
        ref_mag=pairs[f"mag_{band}"],
        ref_mag_err=pairs.get(f"err_{band}", np.nan),
    )
    return pairs.drop(columns=[c for c in pairs.columns if c.startswith(("mag_", "err_"))])
