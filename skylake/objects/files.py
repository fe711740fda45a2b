"""Where the objects and light-curve files are, and how a task reads only part of one.

Both are HATS catalogs of the lake (``LAKE/objects/``, ``LAKE/lightcurves/``) with directory leaves: a
partition is a directory of Parquet files whose rows are sorted by ``_healpix_29``, so a task reading a
margin or a cone reads only the row groups whose statistics reach it (:func:`read_ranges`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hats.pixel_math import HealpixPixel
from hats.pixel_math.spatial_index import healpix_to_spatial_index

from skylake.lake import Lake, LakeView, hats_meta
from skylake.lake.tables import LIGHTCURVES, OBJECTS
from skylake.schema import table_schema

__all__ = [
    "ROW_GROUP",
    "POINTS_ROW_GROUP",
    "POINTS_ENCODING",
    "data_files",
    "partitions_of",
    "catalog_dataset",
    "objects_dataset",
    "lightcurves_dataset",
    "partition_files",
    "ranges",
    "ranges_since",
    "within",
    "rows_within",
    "read_ranges",
    "read_files",
    "row_counts",
    "sort_points",
    "MAX_POINT_FILES",
    "files_to_merge",
]


#: Objects per Parquet row group: small enough that a cone search decodes little beyond its rows.
ROW_GROUP = 2000
#: Light-curve points per row group (a point is ~60 bytes: ~0.6 MB uncompressed).
POINTS_ROW_GROUP = 10_000
#: How the objects' tasks encode the light-curve points they write (:func:`~skylake.lake.parquet.parquet_bytes`):
#: lz4, and the positions and instrumental magnitudes (random mantissas, which zstd barely packs) split into
#: byte streams. On a 341,330-point partition of the 10^7 benchmark lake: 38 ms and 6.7 MB against zstd's
#: 66 ms and 7.3 MB (the points are ~85 % of the bytes an objects build writes, each written once).
POINTS_ENCODING = {"codec": "lz4", "byte_stream_split": ["ra", "dec", "inst_mag"]}


def _lake(lake) -> LakeView:
    return lake if isinstance(lake, LakeView) else Lake.open(lake)


def data_files(lake, table: str, pixels=None) -> list[str]:
    """Lake-relative data files of ``table`` (of the partitions ``pixels`` only, when given) at the lake's version.

    A snapshot's (:class:`skylake.lake.snapshot.Snapshot`) own, else those live now.

    Parameters
    ----------
    lake : Lake
        The lake, or a snapshot of it.
    table : str
        The table (objects or lightcurves).
    pixels : list of hats.pixel_math.HealpixPixel, optional
        Only the files of these partitions (default: every partition).

    Returns
    -------
    list of str
        The files' lake-relative paths.
    """
    if hasattr(lake, "table_files"):  # a snapshot: the files of its commit, wherever they are kept
        rels = [f"{table}/{r}" for r in lake.table_files(table) if r.startswith("dataset/")]
        if pixels is None:
            return rels
        wanted = {(p.order, p.pixel) for p in pixels}
        return [
            r
            for r in rels
            if (px := hats_meta.pixel_of(r.split("/", 1)[1])) is not None and (px.order, px.pixel) in wanted
        ]
    if pixels is None:
        return lake.store.walk_files(f"{table}/dataset", ".parquet")
    return [f for p in pixels for f in partition_files(lake, table, p)]


def partitions_of(lake, table: str) -> list[HealpixPixel]:
    """The partitions of ``table`` at the lake's version (a snapshot's: those of its files).

    Parameters
    ----------
    lake : Lake
        The lake, or a snapshot of it.
    table : str
        The table (objects or lightcurves).

    Returns
    -------
    list of hats.pixel_math.HealpixPixel
        The partitions, sorted.
    """
    if hasattr(lake, "table_files"):
        found = {hats_meta.pixel_of(r.split("/", 1)[1]) for r in data_files(lake, table)}
        return sorted(p for p in found if p is not None)
    return hats_meta.read_partitions(lake.store, table)


def catalog_dataset(lake, table: str = OBJECTS, files: list[str] | None = None):
    """``table`` (objects or lightcurves) as a pyarrow dataset with ``Norder``/``Dir``/``Npix`` from the paths.

    ``files`` (lake-relative) restricts it. Of a snapshot, its version's files.

    Parameters
    ----------
    lake : Lake or str
        The lake or a snapshot of it (opened if a path or URL).
    table : str, optional
        The table (objects or lightcurves).
    files : list of str, optional
        Lake-relative data files of the table to include (default: all of them).

    Returns
    -------
    pyarrow.dataset.Dataset
        The dataset, with the table's schema plus ``Norder``, ``Dir`` and ``Npix``.
    """
    import pyarrow.dataset as pads

    lake = _lake(lake)
    if files is None and hasattr(lake, "table_files"):
        files = data_files(lake, table)
    partitioning = pads.partitioning(
        pa.schema([("Norder", pa.int8()), ("Dir", pa.int64()), ("Npix", pa.int64())]), flavor="hive"
    )
    schema = table_schema(table)
    for name, typ in (("Norder", pa.int8()), ("Dir", pa.int64()), ("Npix", pa.int64())):
        schema = schema.append(pa.field(name, typ))
    source = [lake.path(f) for f in files] if files is not None else lake.path(f"{table}/dataset")
    return pads.dataset(
        source,
        format="parquet",
        partitioning=partitioning,
        schema=schema,
        partition_base_dir=lake.path(f"{table}/dataset"),
        filesystem=lake.store.arrow_fs,
    )


def objects_dataset(lake, files: list[str] | None = None):
    """The objects table as a pyarrow dataset (:func:`catalog_dataset`).

    Parameters
    ----------
    lake : Lake or str
        The lake or a snapshot of it (opened if a path or URL).
    files : list of str, optional
        Lake-relative data files to include (default: all of them).

    Returns
    -------
    pyarrow.dataset.Dataset
        The dataset.
    """
    return catalog_dataset(lake, OBJECTS, files)


def lightcurves_dataset(lake, files: list[str] | None = None):
    """The light-curve points as a pyarrow dataset (:func:`catalog_dataset`).

    Parameters
    ----------
    lake : Lake or str
        The lake or a snapshot of it (opened if a path or URL).
    files : list of str, optional
        Lake-relative data files to include (default: all of them).

    Returns
    -------
    pyarrow.dataset.Dataset
        The dataset.
    """
    return catalog_dataset(lake, LIGHTCURVES, files)


def partition_files(lake: Lake, table: str, pixel: HealpixPixel) -> list[str]:
    """Lake-relative data files of partition ``pixel`` of ``table``.

    Parameters
    ----------
    lake : Lake
        The lake.
    table : str
        The table (objects or lightcurves).
    pixel : hats.pixel_math.HealpixPixel
        The partition.

    Returns
    -------
    list of str
        The files' lake-relative paths, sorted (empty if the partition has none).
    """
    return lake.store.walk_files(f"{table}/{hats_meta.pixel_dir(pixel.order, pixel.pixel)}", ".parquet")


def _runs(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of consecutive values in the sorted, unique ``uniq``: each run's first index, first value and
    last value + 1."""
    brk = np.flatnonzero(np.diff(uniq) != 1) + 1
    starts = np.r_[0, brk]
    return starts, uniq[starts], uniq[np.r_[brk - 1, len(uniq) - 1]] + 1


def ranges(pixels, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, merged ``_healpix_29`` ranges [lo, hi) of ``pixels`` at ``order``.

    Parameters
    ----------
    pixels : array_like of int
        HEALPix pixels (NESTED), in any order, repeats allowed.
    order : int
        Their order.

    Returns
    -------
    lo : numpy.ndarray
        Each range's first ``_healpix_29`` value (int64).
    hi : numpy.ndarray
        Each range's end, excluded (int64).
    """
    pixels = np.unique(np.asarray(pixels, np.int64))
    if not len(pixels):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    _, lo, hi = _runs(pixels)
    return healpix_to_spatial_index(order, lo), healpix_to_spatial_index(order, hi)


def ranges_since(pixels, since, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`ranges` of ``pixels`` with, per merged range, the smallest ``since`` of the pixels it merges.

    That is the earliest point the range must be read from.

    Parameters
    ----------
    pixels : array_like of int
        HEALPix pixels (NESTED), in any order, repeats allowed.
    since : array_like of float
        A time per pixel (an MJD [d]).
    order : int
        The pixels' order.

    Returns
    -------
    lo : numpy.ndarray
        Each range's first ``_healpix_29`` value (int64).
    hi : numpy.ndarray
        Each range's end, excluded (int64).
    since : numpy.ndarray
        Each range's smallest ``since``.
    """
    pixels, since = np.asarray(pixels, np.int64), np.asarray(since, np.float64)
    if not len(pixels):
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    uniq, inv = np.unique(pixels, return_inverse=True)
    first = np.full(len(uniq), np.inf)
    np.minimum.at(first, inv, since)
    starts, lo, hi = _runs(uniq)
    return (
        healpix_to_spatial_index(order, lo),
        healpix_to_spatial_index(order, hi),
        np.minimum.reduceat(first, starts),
    )


def within(h29: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mask of the ``h29`` values inside the sorted, disjoint ranges [lo, hi).

    Parameters
    ----------
    h29 : numpy.ndarray
        ``_healpix_29`` values.
    lo, hi : numpy.ndarray
        The ranges' starts and ends (excluded), as :func:`ranges` gives them.

    Returns
    -------
    numpy.ndarray
        Mask (bool) of the values inside a range.
    """
    if not len(lo):
        return np.zeros(len(h29), dtype=bool)
    rows = _rows_in_runs(h29, lo, hi)
    if rows is not None:
        out = np.zeros(len(h29), dtype=bool)
        out[rows] = True
        return out
    k = np.searchsorted(hi, h29, side="right")
    return (k < len(lo)) & (lo[np.minimum(k, len(lo) - 1)] <= h29)


def rows_within(h29: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Indices of the ``h29`` values inside the sorted, disjoint ranges [lo, hi), ascending (where
    :func:`within` is true).

    Parameters
    ----------
    h29 : numpy.ndarray
        ``_healpix_29`` values.
    lo, hi : numpy.ndarray
        The ranges' starts and ends (excluded), as :func:`ranges` gives them.

    Returns
    -------
    numpy.ndarray
        The indices (int64).
    """
    if not len(lo) or not len(h29):
        return np.empty(0, np.int64)
    rows = _rows_in_runs(h29, lo, hi)
    return rows if rows is not None else np.flatnonzero(within(h29, lo, hi))


#: Values sorted in at most this many runs are looked up run by run, else one by one.
_MAX_RUNS = 64


def _rows_in_runs(h29: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """:func:`rows_within` for values sorted in a few runs (the rows of files sorted by ``_healpix_29``, one
    after another): in each run the rows inside a range are a slice, found by two binary searches, where
    looking up each value costs a binary search among the ranges. None for values in more runs."""
    h29 = np.asarray(h29, np.int64)
    breaks = np.flatnonzero(h29[1:] < h29[:-1]) + 1
    if len(breaks) >= _MAX_RUNS:
        return None
    first, last = [], []
    for start, end in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(h29)].tolist()):
        first.append(np.searchsorted(h29[start:end], lo) + start)
        last.append(np.searchsorted(h29[start:end], hi) + start)
    first, last = np.concatenate(first), np.concatenate(last)
    n = last - first
    return np.arange(n.sum(), dtype=np.int64) + np.repeat(first - (np.cumsum(n) - n), n)


def read_ranges(
    path: str,
    lo: np.ndarray,
    hi: np.ndarray,
    columns: list[str] | None = None,
    filesystem=None,
    table: str = OBJECTS,
    since: np.ndarray | None = None,
) -> pa.Table:
    """Rows of a file of ``table`` (sorted by ``_healpix_29``) within the sorted, disjoint ranges [lo, hi).

    Only the row groups whose statistics overlap them are read (only ``columns``, which must include
    ``_healpix_29``, when given). ``since`` (light-curve points: an MJD per range): a row group is read
    only if one of the ranges it overlaps wants points as old as its latest ``mjd``, so the light curve
    of a recent object costs the recent files, not the history around it.

    Parameters
    ----------
    path : str
        The file (a path or key of ``filesystem``).
    lo, hi : numpy.ndarray
        The ranges' starts and ends (excluded), as :func:`ranges` gives them.
    columns : list of str, optional
        The columns to read, ``_healpix_29`` among them (default: all).
    filesystem : pyarrow.fs.FileSystem or fsspec.AbstractFileSystem, optional
        The filesystem of ``path`` (default: the local one).
    table : str, optional
        The table the file belongs to (its schema is applied).
    since : numpy.ndarray, optional
        Light-curve points: an MJD [d] per range, the earliest point it wants.

    Returns
    -------
    pyarrow.Table
        The rows within the ranges, in the table's schema (of ``columns`` when given).
    """
    pf = pq.ParquetFile(path, filesystem=filesystem)
    col = pf.schema_arrow.get_field_index("_healpix_29")
    t_col = pf.schema_arrow.get_field_index("mjd") if since is not None else -1
    groups = []
    for g in range(pf.metadata.num_row_groups):
        rg = pf.metadata.row_group(g)
        st = rg.column(col).statistics
        k = np.searchsorted(hi, st.min, side="right")
        if not (k < len(lo) and lo[k] <= st.max):
            continue
        if t_col >= 0 and (ts := rg.column(t_col).statistics) is not None and ts.has_min_max:
            last = np.searchsorted(lo, st.max, side="right")  # ranges k..last-1 overlap the group
            if since[k:last].min() > ts.max:
                continue
        groups.append(g)
    schema = table_schema(table)
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    if not groups:
        return schema.empty_table()
    data = pf.read_row_groups(groups, columns=columns).cast(schema)
    return data.filter(pa.array(within(data.column("_healpix_29").to_numpy(), lo, hi)))


def read_files(lake: Lake, table: str, files: list[str], columns: list[str] | None = None) -> list[pa.Table]:
    """Each of ``files`` (lake-relative) of ``table`` whole, or its ``columns``.

    Parameters
    ----------
    lake : Lake
        The lake.
    table : str
        The table (its schema is applied).
    files : list of str
        Lake-relative data files of the table.
    columns : list of str or None
        Only these columns (None: all).

    Returns
    -------
    list of pyarrow.Table
        Each file's rows.
    """
    schema = table_schema(table)
    return [pq.read_table(lake.path(f), schema=schema, columns=columns, filesystem=lake.store.arrow_fs) for f in files]


def row_counts(lake: Lake, files: list[str]) -> list[int]:
    """The rows of each of ``files`` (lake-relative), from their footers.

    Parameters
    ----------
    lake : Lake
        The lake.
    files : list of str
        Lake-relative Parquet files.

    Returns
    -------
    list of int
        Each file's row count.
    """
    return [pq.ParquetFile(lake.path(f), filesystem=lake.store.arrow_fs).metadata.num_rows for f in files]


def sort_points(points: pa.Table) -> pa.Table:
    """Light-curve points in file order: by ``_healpix_29``, then object, then time.

    Parameters
    ----------
    points : pyarrow.Table
        Light-curve points (LAKE/lightcurves columns).

    Returns
    -------
    pyarrow.Table
        The points, sorted.
    """
    return points.take(
        np.lexsort(
            (
                points.column("mjd").to_numpy(),
                points.column("object_id").to_numpy(),
                points.column("_healpix_29").to_numpy(),
            )
        )
    )


#: A partition's light-curve files are merged when it has more than this many (see :func:`files_to_merge`).
MAX_POINT_FILES = 16


def files_to_merge(rows: list[int], max_files: int = MAX_POINT_FILES) -> list[int]:
    """Which of a partition's light-curve files to merge into one.

    None while there are at most ``max_files``, else the ``max_files // 2`` smallest (ties: the newest).

    Merging the smallest files is a size-tiered log-structured merge: a point is rewritten about once per
    doubling of its partition's history, so merges cost O(log) per point, the files stay few, and a
    reader opens at most ``max_files`` per partition.

    Parameters
    ----------
    rows : list of int
        The row counts of the partition's files, the newest last.
    max_files : int, optional
        The most files a partition keeps unmerged.

    Returns
    -------
    list of int
        Indices (into ``rows``) of the files to merge, sorted; empty when none.
    """
    if len(rows) <= max_files:
        return []
    order = sorted(range(len(rows)), key=lambda k: (rows[k], -k))
    return sorted(order[: max_files // 2])
