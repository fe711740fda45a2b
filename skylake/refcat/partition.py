"""Partition a catalogue's normalised shards into a HATS collection: the catalog and its margin cache.

The shards (:class:`~skylake.refcat.normalise.ShardWriter`) are uncompressed Arrow IPC files, each
sorted by ``_healpix_29``, and the normalising tasks counted their rows per pixel at the highest order
a partition may have. So the import needs one read of the shards after the one pass over the input:

1. :func:`plan` (driver): hats aligns that histogram into partitions of at most ``pixel_threshold``
   rows (``generate_alignment``, as hats-import does) and finds the empty sky around them (the
   negative tree, whose pixels get margins too).
2. :func:`write_pixel` (a worker, one task per pixel): memory-maps every shard, takes the pixel's
   rows as one slice of each (two binary searches), sorts them by ``_healpix_29`` then ``ref_id`` and
   writes the partition; its margin rows are the rows of the margin-order pixels bordering it
   (hats' ``get_margin``), taken from the shards the same way.
3. :func:`finish` (driver): the metadata of both catalogs and of the collection, through hats.

What hats-import builds from the same rows, this builds too: the same partitions, the same rows in
each, the same margin rows (tests/test_refcat_partition.py compares them), the same metadata files.
hats-import reads its input three times (mapping, splitting, reducing) and the catalog twice more
for the margin; this reads the shards once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skylake.refcat.schema import HEALPIX

__all__ = ["PixelSpec", "PixelResult", "plan", "margin_name", "margin_order", "write_pixel", "finish", "empty_sky"]


@dataclass(frozen=True)
class PixelSpec:
    """What every pixel task of one import shares.

    Attributes
    ----------
    shards : tuple of str
        The sorted Arrow IPC shards holding every row.
    schema : pyarrow.Schema
        The catalogue's schema, with ``_healpix_29`` (a shard leaves out the columns it has no value in).
    catalog_dir : str
        The catalog's directory (``<collection>/NAME``).
    margin_dir : str
        The margin cache's directory (``<collection>/NAME_<threshold>``).
    margin_order : int
        The HEALPix order of the margin pixels (:func:`margin_order`).
    write_kwargs : tuple of tuple
        Parquet writer settings as ``(key, value)`` pairs (compression and level).
    """

    shards: tuple[str, ...]
    schema: pa.Schema
    catalog_dir: str
    margin_dir: str
    margin_order: int
    write_kwargs: tuple[tuple[str, object], ...] = (("compression", "zstd"), ("compression_level", 3))

    def __post_init__(self):
        if not self.shards:
            raise ValueError("a PixelSpec needs at least one shard")
        from hats.pixel_math.spatial_index import SPATIAL_INDEX_ORDER

        if not 0 <= self.margin_order <= SPATIAL_INDEX_ORDER:
            raise ValueError(f"margin_order must be in 0..{SPATIAL_INDEX_ORDER}, got {self.margin_order}")


@dataclass(frozen=True)
class PixelResult:
    """What one pixel task wrote.

    Attributes
    ----------
    order, pixel : int
        The pixel.
    rows : int
        Rows in its partition (0 for a pixel of the empty sky).
    margin_rows : int
        Rows in its margin file (none written when 0).
    id_collisions : int
        Rows of the partition whose ``ref_id`` equals another row's.
    """

    order: int
    pixel: int
    rows: int
    margin_rows: int
    id_collisions: int


def margin_name(catalog: str, threshold_arcsec: float) -> str:
    """The margin cache's name, as hats-import names it: ``NAME_10arcs``, ``NAME_2arcmin``, ``NAME_1deg``.

    Parameters
    ----------
    catalog : str
        The catalog's name.
    threshold_arcsec : float
        The margin's width [arcsec].

    Returns
    -------
    str
        The name.
    """
    a = float(threshold_arcsec)
    if a >= 3600:
        suffix = f"{int(a / 3600)}deg"
    elif a >= 60:
        suffix = f"{int(a / 60)}arcmin"
    elif a >= 1:
        suffix = f"{int(a)}arcs"
    else:
        suffix = f"{int(a * 1000)}msec"
    return f"{catalog}_{suffix}"


def margin_order(threshold_arcsec: float, highest_order: int) -> int:
    """The order of the pixels that make up a margin of ``threshold_arcsec``.

    The coarsest order whose pixels are at least the threshold wide (hats' ``margin2order``), as
    hats-import chooses it: a partition's margin is every row in the pixels of that order bordering it.

    Parameters
    ----------
    threshold_arcsec : float
        The margin's width [arcsec].
    highest_order : int
        The highest order of a partition.

    Returns
    -------
    int
        The order.

    Raises
    ------
    ValueError
        The margin is too wide for partitions of ``highest_order`` (its pixels would be as large as a
        partition), naming both, or wider than a pixel of order 0.
    """
    import hats.pixel_math.healpix_shim as hp

    order = int(hp.margin2order(margin_thr_arcmin=threshold_arcsec / 60.0))
    if hp.order2mindist(order) * 60.0 < threshold_arcsec:
        raise ValueError(f"a margin of {threshold_arcsec:g} arcsec is wider than the largest HEALPix pixels")
    if order < highest_order + 1:
        raise ValueError(
            f"a margin of {threshold_arcsec:g} arcsec needs pixels of order {order}, not finer than partitions of "
            f"order up to {highest_order}: use a narrower margin or a lower highest order"
        )
    return order


def plan(histogram: np.ndarray, highest_order: int, pixel_threshold: int) -> tuple[list, list]:
    """The partitions of a catalogue from its rows per pixel, and the empty sky around them.

    Parameters
    ----------
    histogram : numpy.ndarray
        Rows per pixel at ``highest_order`` (dense, NESTED).
    highest_order : int
        The highest order of a partition.
    pixel_threshold : int
        Rows per partition at most.

    Returns
    -------
    partitions : list of hats.pixel_math.HealpixPixel
        The partitions, sorted (hats' alignment, empty siblings dropped, as hats-import does).
    empty : list of hats.pixel_math.HealpixPixel
        The negative tree: the pixels covering the rest of the sky, which get margin files too.

    Raises
    ------
    ValueError
        A pixel at ``highest_order`` holds more than ``pixel_threshold`` rows (hats' alignment refuses it).
    """
    from hats.pixel_math import HealpixPixel, generate_alignment

    alignment = generate_alignment(
        histogram,
        highest_order=highest_order,
        lowest_order=0,
        threshold=pixel_threshold,
        drop_empty_siblings=True,
        use_lower_order=True,
    )
    # one entry per pixel of the mapping order (coarser than the histogram's when no partition is finer)
    dest = {(int(a[0]), int(a[1])) for a in alignment if a is not None and a[2] > 0}
    partitions = sorted(HealpixPixel(o, p) for o, p in dest)
    return partitions, [HealpixPixel(o, p) for o, p in empty_sky(sorted(dest))]


def empty_sky(partitions) -> list[tuple[int, int]]:
    """The pixels covering the sky outside ``partitions``, each as coarse as it can be.

    hats' negative tree (``compute_negative_tree_pixels``), walked from the 12 base pixels down to the
    partitions: a pixel that is no partition and holds none is one of the answer, a pixel that holds
    one is split in four. hats aligns two pixel trees with numba for it, compiling for ~6 s in every
    new process; this walk costs microseconds per partition (tests/test_refcat_partition.py compares
    the two).

    Parameters
    ----------
    partitions : list of tuple of int
        ``(order, pixel)`` of the partitions (not overlapping).

    Returns
    -------
    list of tuple of int
        ``(order, pixel)`` of the empty sky, sorted by order then pixel (none for no partition).
    """
    from hats.pixel_math.healpix_pixel import get_lower_order_pixel

    if not partitions:
        return []
    leaves = set(partitions)
    above = {(o - d, int(get_lower_order_pixel(o, p, d))) for o, p in leaves for d in range(1, o + 1)}
    empty, todo = [], [(0, p) for p in range(12)]
    while todo:
        order, pixel = todo.pop()
        if (order, pixel) in leaves:
            continue
        if (order, pixel) in above:
            todo.extend((order + 1, 4 * pixel + k) for k in range(4))
        else:
            empty.append((order, pixel))
    return sorted(empty)


def _open_shard(path: str) -> tuple[pa.Table, np.ndarray]:
    """A shard as a table over its memory map, and its ``_healpix_29`` values (no copy).

    The file is closed at once (the mapping lives as long as the table): a task maps every shard, and a
    catalogue of 10^9 rows has a thousand of them, as many as a process may hold open.
    """
    source = pa.memory_map(path, "r")
    try:
        table = pa.ipc.open_file(source).read_all()
    finally:
        source.close()
    index = table[HEALPIX]
    return table, (index.chunk(0).to_numpy() if index.num_chunks == 1 else index.to_numpy())


def _ranges(table: pa.Table, index: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Table | None:
    """The rows of a sorted shard whose index lies in any ``[starts[i], ends[i])`` (sorted, disjoint)."""
    lo = np.searchsorted(index, starts, side="left")
    hi = np.searchsorted(index, ends, side="left")
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    if not lo.size:
        return None
    if lo.size == 1:
        return table.slice(int(lo[0]), int(hi[0] - lo[0]))
    lengths = hi - lo
    rows = np.repeat(lo - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(lengths.sum())
    return table.take(pa.array(rows))


def _merged_ranges(pixels: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """``_healpix_29`` ranges ``[start, end)`` covering ``pixels`` at ``order``, adjacent ones merged."""
    pixels = np.unique(np.asarray(pixels, dtype=np.int64))
    if not pixels.size:
        return pixels, pixels
    first = np.r_[True, pixels[1:] != pixels[:-1] + 1]
    last = np.r_[pixels[1:] != pixels[:-1] + 1, True]
    from hats.pixel_math.spatial_index import healpix_to_spatial_index

    return healpix_to_spatial_index(order, pixels[first]), healpix_to_spatial_index(order, pixels[last] + 1)


def _gather(tables, starts: np.ndarray, ends: np.ndarray, schema: pa.Schema) -> pa.Table | None:
    """The rows of every shard in the ranges, with the columns any of them holds (None: no row)."""
    parts = [part for t, idx in tables if (part := _ranges(t, idx, starts, ends)) is not None]
    if len(parts) <= 1:
        return parts[0] if parts else None
    names = set().union(*(p.column_names for p in parts))
    parts = [_with_columns(p, schema, names) for p in parts]
    return pa.concat_tables(parts).combine_chunks()


def _with_columns(table: pa.Table, schema: pa.Schema, names=None) -> pa.Table:
    """``table`` with the columns ``names`` of ``schema`` (default: all), those it lacks as nulls, in the
    schema's order."""
    names = set(schema.names if names is None else names)
    if set(table.column_names) == names and len(table.column_names) == len(names):
        return table.select([f.name for f in schema if f.name in names])
    have = dict(zip(table.column_names, table.columns))
    return pa.table(
        {
            f.name: have[f.name] if f.name in have else pa.nulls(table.num_rows, type=f.type)
            for f in schema
            if f.name in names
        }
    )


def _write(table: pa.Table, path: str, spec: PixelSpec) -> None:
    """Sort by ``_healpix_29`` then ``ref_id`` and write one Parquet file of the catalogue's schema with
    hats' column encodings."""
    from hats.io import file_io

    ordering = [(HEALPIX, "ascending"), ("ref_id", "ascending")]
    table = table.sort_by(ordering)  # the columns left out of the shards are added after the sort
    table = _with_columns(table, spec.schema).cast(spec.schema)
    kwargs = dict(spec.write_kwargs)
    kwargs["sorting_columns"] = pq.SortingColumn.from_ordering(table.schema, ordering)
    kwargs = file_io.get_parquet_write_table_kwargs(table.schema, write_table_kwargs=kwargs)
    kwargs.pop("row_group_size", None)  # one row group per partition, as hats-import writes them
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with pq.ParquetWriter(path, table.schema, **kwargs) as writer:
        writer.write_table(table)


def write_pixel(order: int, pixel: int, has_data: bool, spec: PixelSpec) -> PixelResult:
    """Write one partition and its margin file. Runs on a worker.

    Parameters
    ----------
    order, pixel : int
        The pixel (NESTED).
    has_data : bool
        A partition of the catalog (else a pixel of the empty sky: only its margin is written).
    spec : PixelSpec
        What the tasks share.

    Returns
    -------
    PixelResult
        The rows written.
    """
    from hats.io import paths
    from hats.pixel_math import HealpixPixel, get_margin

    tables = [_open_shard(s) for s in spec.shards]
    hp_pixel = HealpixPixel(order, pixel)
    rows = collisions = 0
    if has_data:
        starts, ends = _merged_ranges(np.array([pixel]), order)
        data = _gather(tables, starts, ends, spec.schema)
        if data is not None and data.num_rows:
            rows = data.num_rows
            ids = np.sort(pc.drop_null(data["ref_id"]).to_numpy().astype(np.int64, copy=False))
            collisions = int(np.count_nonzero(ids[1:] == ids[:-1]))  # null ids collide with nothing
            _write(data, str(paths.pixel_catalog_file(Path(spec.catalog_dir), hp_pixel)), spec)
        del data
    starts, ends = _merged_ranges(np.asarray(get_margin(order, pixel, spec.margin_order - order)), spec.margin_order)
    margin = _gather(tables, starts, ends, spec.schema)
    margin_rows = margin.num_rows if margin is not None else 0
    if margin_rows:
        _write(margin, str(paths.pixel_catalog_file(Path(spec.margin_dir), hp_pixel)), spec)
    return PixelResult(order, pixel, rows, margin_rows, collisions)


def finish(
    collection: Path,
    name: str,
    results: list[PixelResult],
    histogram: np.ndarray,
    schema: pa.Schema,
    *,
    margin_threshold: float,
    pixel_threshold: int,
    builder: str,
    properties: dict,
) -> None:
    """Write the catalog's, the margin cache's and the collection's metadata, through hats.

    Parameters
    ----------
    collection : pathlib.Path
        The collection's directory, holding ``NAME/`` and ``NAME_<threshold>/``.
    name : str
        The catalog's name.
    results : list of PixelResult
        What every pixel task wrote.
    histogram : numpy.ndarray
        Rows per pixel at the highest order (the skymap and point map).
    schema : pyarrow.Schema
        The rows' schema (for an empty margin's ``_common_metadata``).
    margin_threshold : float
        The margin's width [arcsec].
    pixel_threshold : int
        Rows per partition at most (``hats_max_rows``).
    builder : str
        Who built it (``hats_builder``, followed by hats' version).
    properties : dict
        More properties of the catalog (``obs_title``, ``hats_cols_survey_id``, ...).

    Raises
    ------
    ValueError
        The partitions' files do not hold the rows the tasks wrote.
    """
    import hats.pixel_math.healpix_shim as hp
    from hats.catalog import PartitionInfo, TableProperties
    from hats.catalog.dataset.collection_properties import CollectionProperties
    from hats.io import file_io, paths
    from hats.io.parquet_metadata import write_parquet_metadata
    from hats.io.skymap import write_skymap
    from hats.pixel_math import HealpixPixel
    from hats.pixel_math.spatial_index import SPATIAL_INDEX_ORDER

    catalog_dir = collection / name
    margin = margin_name(name, margin_threshold)
    margin_dir = collection / margin
    mapping_order = int(hp.npix2order(len(histogram)))

    parts = PartitionInfo.from_healpix(sorted(HealpixPixel(r.order, r.pixel) for r in results if r.rows))
    parts.write_to_file(paths.get_partition_info_pointer(catalog_dir))
    total = sum(r.rows for r in results)
    written = write_parquet_metadata(catalog_dir)
    if written != total:
        raise ValueError(f"the partitions of {name} hold {written} rows, the tasks wrote {total}")
    file_io.write_fits_image(histogram, paths.get_point_map_file_pointer(catalog_dir))
    write_skymap(histogram=histogram, catalog_dir=catalog_dir)
    info = {
        "catalog_name": name,
        "catalog_type": "object",
        "total_rows": total,
        "ra_column": "ra",
        "dec_column": "dec",
        "hats_cols_sort": "ref_id",
        "hats_max_rows": pixel_threshold,
        "hats_order": parts.get_highest_order(),
        "moc_sky_fraction": f"{parts.calculate_fractional_coverage():0.5f}",
        "hats_npix_suffix": ".parquet",
        "hats_skymap_order": mapping_order,
        "hats_col_healpix": HEALPIX,
        "hats_col_healpix_order": SPATIAL_INDEX_ORDER,
    }
    provenance = TableProperties.new_provenance_dict(catalog_dir, builder=builder, **properties)
    TableProperties(**(provenance | info)).to_properties_file(catalog_dir)

    margin_rows = sum(r.margin_rows for r in results)
    margin_parts = PartitionInfo.from_healpix(sorted(HealpixPixel(r.order, r.pixel) for r in results if r.margin_rows))
    file_io.make_directory(margin_dir / "dataset", exist_ok=True)
    if margin_rows:
        written = write_parquet_metadata(margin_dir)
        if written != margin_rows:
            raise ValueError(f"the margin files of {name} hold {written} rows, the tasks wrote {margin_rows}")
    else:
        pq.write_metadata(schema, paths.get_common_metadata_pointer(margin_dir).path)
        pq.write_metadata(schema, paths.get_parquet_metadata_pointer(margin_dir).path)
    margin_parts.write_to_file(paths.get_partition_info_pointer(margin_dir))
    margin_info = {
        "catalog_name": margin,
        "catalog_type": "margin",
        "total_rows": margin_rows,
        "ra_column": "ra",
        "dec_column": "dec",
        "primary_catalog": name,
        "margin_threshold": margin_threshold,
        "hats_order": margin_parts.get_highest_order() if margin_rows else parts.get_highest_order(),
        "moc_sky_fraction": f"{margin_parts.calculate_fractional_coverage():0.5f}",
        "hats_col_healpix": HEALPIX,
        "hats_col_healpix_order": SPATIAL_INDEX_ORDER,
        "npix_suffix": ".parquet",
    }
    provenance = TableProperties.new_provenance_dict(margin_dir, builder=builder)
    TableProperties(**(provenance | margin_info)).to_properties_file(margin_dir)
    coll = {"name": name, "hats_primary_table_url": name, "all_margins": [margin], "default_margin": margin}
    provenance = TableProperties.new_provenance_dict(collection, builder=builder)
    CollectionProperties(**(provenance | coll)).to_properties_file(collection)
