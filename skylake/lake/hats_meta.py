"""The HATS side of the source table: pixel assignment and the catalog metadata.

``LAKE/sources`` is a HATS catalog (``dataproduct_type=source``, ``hats_npix_suffix=/``): every
partition is a directory ``dataset/Norder=k/Dir=d/Npix=n/`` holding one Parquet file per ingest batch.
Partitions never overlap; new rows go to the existing partition that contains them, or to a new
partition at the lake's ``partition_order`` (deeper where a split partition's children already exist).
The metadata (``partition_info.csv``, ``hats.properties``/``properties`` with the true ``hats_nrows``,
``skymap.fits``/``point_map.fits``, ``dataset/_common_metadata``) is rebuilt at every commit; the
optional ``_metadata`` is never written (it would go stale with every append).

The lake's other HATS catalogs (``LAKE/objects``, ``LAKE/lightcurves``) are kept the same way: a
transaction collects what a batch does to each catalog (:class:`CatalogChange`) and its commit writes
each one's metadata once; the catalog's type and id column come from its schema.
"""

from __future__ import annotations

import datetime as dt
import functools
import posixpath
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import skylake
from skylake.lake.storage import Storage

if TYPE_CHECKING:  # hats itself is imported where used: its package import costs ~1 s of start-up
    from hats.pixel_math import HealpixPixel

__all__ = [
    "SKYMAP_ORDER",
    "METADATA_FILES",
    "pixel_dir",
    "pixel_of",
    "empty_skymap",
    "assign_pixels",
    "MAX_PARTITIONS_PER_FRAME",
    "order_for_frames",
    "order_for_pixel_sets",
    "skymap_histogram",
    "count_partitions",
    "read_partitions",
    "read_skymap",
    "write_metadata",
    "CatalogChange",
]


SKYMAP_ORDER = 8
METADATA_FILES = [
    "partition_info.csv",
    "hats.properties",
    "properties",
    "skymap.fits",
    "point_map.fits",
    "dataset/_common_metadata",
]


@functools.lru_cache(maxsize=1 << 16)  # hats builds a UPath (~80 us); a batch asks for each partition often
def pixel_dir(order: int, pixel: int) -> str:
    """The directory of a partition, relative to the catalog.

    The one place skylake turns a partition into its directory (hats' layout; skylake's storage takes
    catalog-relative strings).

    Parameters
    ----------
    order : int
        The partition's HEALPix order.
    pixel : int
        Its pixel at that order (NESTED).

    Returns
    -------
    str
        ``dataset/Norder=k/Dir=d/Npix=n``.
    """
    from hats.io import paths
    from hats.pixel_math import HealpixPixel

    return str(paths.pixel_catalog_file(PurePosixPath("."), HealpixPixel(order, pixel), npix_suffix="/"))


def pixel_of(rel: str) -> HealpixPixel | None:
    """The partition holding a data file of the catalog.

    The one place skylake parses partition paths.

    Parameters
    ----------
    rel : str
        A catalog-relative data file ``dataset/Norder=k/Dir=d/Npix=n/<name>`` (as :func:`pixel_dir` writes
        it).

    Returns
    -------
    hats.pixel_math.HealpixPixel or None
        The partition; None for any other path.
    """
    from hats.io import paths
    from hats.pixel_math.healpix_pixel import INVALID_PIXEL

    parent, name = posixpath.split(rel)
    try:
        pixel = paths.get_healpix_from_path(parent)
    except ValueError:  # hats' pattern takes "Norder=" without digits, and orders past 29
        return None
    # hats finds the numbers anywhere in the path: only the exact directory pixel_dir writes is a partition
    if not name or pixel == INVALID_PIXEL or pixel_dir(pixel.order, pixel.pixel) != parent:
        return None
    return pixel


def empty_skymap() -> np.ndarray:
    """Zero row counts at :data:`SKYMAP_ORDER`.

    Returns
    -------
    numpy.ndarray
        The counts (int64), one per pixel (dense, NESTED).
    """
    from hats.pixel_math.healpix_shim import order2npix

    return np.zeros(order2npix(SKYMAP_ORDER), dtype=np.int64)


def assign_pixels(h29: np.ndarray, partitions: list[HealpixPixel], default_order: int) -> tuple[np.ndarray, np.ndarray]:
    """The partition ``(order, pixel)`` of each ``_healpix_29`` value.

    Existing partitions win; other rows get new partitions at ``default_order``, or deeper where an
    existing partition is a descendant of that pixel (so partitions never overlap).

    Parameters
    ----------
    h29 : numpy.ndarray
        The rows' ``_healpix_29`` values.
    partitions : list of hats.pixel_math.HealpixPixel
        The catalog's existing partitions.
    default_order : int
        The order of new partitions.

    Returns
    -------
    orders : numpy.ndarray
        Each row's partition's order (int64).
    pixels : numpy.ndarray
        Each row's partition's pixel at that order (int64).

    Raises
    ------
    AssertionError
        No order down to the spatial index's fits (overlapping partitions in the lake).
    """
    from hats.pixel_math.spatial_index import SPATIAL_INDEX_ORDER, spatial_index_to_healpix

    n = len(h29)
    orders = np.full(n, -1, dtype=np.int64)
    pixels = np.full(n, -1, dtype=np.int64)
    by_order: dict[int, np.ndarray] = {}
    for p in partitions:
        by_order.setdefault(p.order, []).append(p.pixel)
    for order, pix in by_order.items():
        cand = spatial_index_to_healpix(h29, target_order=order)
        hit = np.isin(cand, np.asarray(pix, dtype=np.int64))
        orders[hit], pixels[hit] = order, cand[hit]
    todo = orders < 0
    order = default_order
    while todo.any():
        # ancestors at this order of existing partitions that are deeper than it
        blocked = np.asarray(
            sorted({p.convert_to_lower_order(p.order - order).pixel for p in partitions if p.order > order}),
            dtype=np.int64,
        )
        cand = spatial_index_to_healpix(h29, target_order=order)
        free = todo & ~np.isin(cand, blocked)
        orders[free], pixels[free] = order, cand[free]
        todo &= ~free
        order += 1
        if order > SPATIAL_INDEX_ORDER:
            raise AssertionError("pixel assignment did not converge; overlapping partitions in the lake?")
    return orders, pixels


#: A frame spanning more new partitions than this at the lake's partition order gets coarser ones: an
#: all-sky camera (a 100-degree field) at order 5 wrote ~300 files per frame, each a few sources.
MAX_PARTITIONS_PER_FRAME = 16


def order_for_frames(h29: np.ndarray, frame_ids: np.ndarray, order: int) -> int:
    """The order of new partitions for a batch (see :func:`order_for_pixel_sets`).

    Parameters
    ----------
    h29 : numpy.ndarray
        The batch's rows' ``_healpix_29`` values.
    frame_ids : numpy.ndarray
        Their frames' ids.
    order : int
        The lake's partition order.

    Returns
    -------
    int
        ``order``, or coarser where a frame spans too many pixels.
    """
    from hats.pixel_math.spatial_index import spatial_index_to_healpix

    frame_ids = np.asarray(frame_ids, dtype=np.int64)
    by_frame = np.argsort(frame_ids, kind="stable")
    pix = spatial_index_to_healpix(np.asarray(h29, dtype=np.int64), target_order=order)[by_frame]
    cuts = np.flatnonzero(np.diff(frame_ids[by_frame])) + 1
    return order_for_pixel_sets(np.split(pix, cuts) if len(pix) else [], order)


def order_for_pixel_sets(pixel_sets: list[np.ndarray], order: int) -> int:
    """The order of new partitions for a batch.

    It is ``order`` (the lake's), or coarser until no frame of the batch spans more than
    :data:`MAX_PARTITIONS_PER_FRAME` pixels, so a wide-field camera writes a few files per batch, not
    hundreds (compaction splits partitions that grow past its row threshold).

    Parameters
    ----------
    pixel_sets : list of numpy.ndarray
        Each frame's pixels at ``order``.
    order : int
        The lake's partition order.

    Returns
    -------
    int
        The order.
    """
    from hats.pixel_math.healpix_pixel import get_lower_order_pixel

    sets = [np.unique(np.asarray(p, dtype=np.int64)) for p in pixel_sets]
    start = order
    while order > 0 and sets and max(len(s) for s in sets) > MAX_PARTITIONS_PER_FRAME:
        sets = [np.unique(get_lower_order_pixel(order, s, 1)) for s in sets]
        order -= 1
    return order if sets else start


def skymap_histogram(h29: np.ndarray) -> np.ndarray:
    """Row counts at :data:`SKYMAP_ORDER`.

    Parameters
    ----------
    h29 : numpy.ndarray
        The rows' ``_healpix_29`` values.

    Returns
    -------
    numpy.ndarray
        The counts (int64), one per pixel (dense, NESTED).
    """
    from hats.pixel_math.healpix_shim import order2npix
    from hats.pixel_math.spatial_index import spatial_index_to_healpix

    return np.bincount(
        spatial_index_to_healpix(h29, target_order=SKYMAP_ORDER), minlength=order2npix(SKYMAP_ORDER)
    ).astype(np.int64)


def count_partitions(store: Storage, catalog: str) -> int:
    """Partitions of a catalog, read without importing hats (for ``status``).

    Parameters
    ----------
    store : Storage
        The lake's storage.
    catalog : str
        The catalog's lake-relative directory.

    Returns
    -------
    int
        Rows of its ``partition_info.csv`` (one per partition); 0 without one.
    """
    if not store.exists(f"{catalog}/partition_info.csv"):
        return 0
    return sum(1 for line in store.read_text(f"{catalog}/partition_info.csv").splitlines()[1:] if line.strip())


def read_partitions(store: Storage, catalog: str) -> list[HealpixPixel]:
    """The partitions of a catalog.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    catalog : str
        The catalog's lake-relative directory.

    Returns
    -------
    list of hats.pixel_math.HealpixPixel
        The partitions its ``partition_info.csv`` lists; empty without one.
    """
    from hats.catalog import PartitionInfo

    if not store.exists(f"{catalog}/partition_info.csv"):
        return []
    return PartitionInfo.read_from_csv(store.upath(f"{catalog}/partition_info.csv")).get_healpix_pixels()


def read_skymap(store: Storage, catalog: str) -> np.ndarray:
    """The row counts of a catalog at :data:`SKYMAP_ORDER`.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    catalog : str
        The catalog's lake-relative directory.

    Returns
    -------
    numpy.ndarray
        The counts of its ``skymap.fits`` (int64, dense, NESTED); zeros without one.
    """
    from hats.io import file_io

    if not store.exists(f"{catalog}/skymap.fits"):
        return empty_skymap()
    return np.asarray(file_io.read_fits_image(store.upath(f"{catalog}/skymap.fits")), dtype=np.int64)


def write_metadata(
    store: Storage,
    out_rel: str,
    partitions: list[HealpixPixel],
    total_rows: int,
    skymap: np.ndarray,
    schema: pa.Schema,
    catalog: str,
    catalog_type: str = "source",
    id_column: str = "source_id",
) -> list[str]:
    """Write the catalog metadata files into a directory.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    out_rel : str
        The lake-relative directory: a staging copy of ``sources/``, or of another catalog of the lake
        (``objects/``, whose rows are identified by ``id_column``).
    partitions : list of hats.pixel_math.HealpixPixel
        The catalog's partitions.
    total_rows : int
        Its rows (``hats_nrows``).
    skymap : numpy.ndarray
        Its row counts at :data:`SKYMAP_ORDER` (dense, NESTED).
    schema : pyarrow.Schema
        Its rows' schema (``dataset/_common_metadata``).
    catalog : str
        Its name.
    catalog_type : str
        Its HATS ``dataproduct_type``.
    id_column : str
        The column identifying its rows.

    Returns
    -------
    list of str
        The catalog-relative names written (:data:`METADATA_FILES`).
    """
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io import file_io, paths
    from hats.pixel_math.spatial_index import SPATIAL_INDEX_ORDER

    out = store.upath(out_rel)
    store.makedirs(f"{out_rel}/dataset")
    info = PartitionInfo.from_healpix(partitions)
    info.write_to_file(partition_info_file=out / "partition_info.csv")
    props = TableProperties(
        catalog_name=catalog,
        catalog_type=catalog_type,
        total_rows=int(total_rows),
        ra_column="ra",
        dec_column="dec",
        healpix_column="_healpix_29",
        healpix_order=SPATIAL_INDEX_ORDER,
        npix_suffix="/",
        skymap_order=SKYMAP_ORDER,
        moc_sky_fraction=float(f"{info.calculate_fractional_coverage():0.5f}") if partitions else 0.0,
        hats_builder=f"skylake v{skylake.__version__}",
        hats_creation_date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M%Z"),
        hats_version="v1.0",
        hats_cols_sort=f"_healpix_29,{id_column}",
        hats_cols_survey_id=id_column,
    )
    props.to_properties_file(out)
    file_io.write_fits_image(skymap, paths.get_skymap_file_pointer(out))
    file_io.write_fits_image(skymap, paths.get_point_map_file_pointer(out))
    pq.write_metadata(schema, store.full(f"{out_rel}/dataset/_common_metadata"), filesystem=store.arrow_fs)
    return list(METADATA_FILES)


class CatalogChange:
    """What one commit does to a HATS catalog's metadata: the partitions that appear and go, the rows added
    and removed (as skymap counts).

    A transaction keeps one per catalog it changes (:meth:`skylake.lake.transaction.Transaction.catalog`):
    writers tell it what they did, and the commit writes the catalog's metadata once (:meth:`write`), from
    the published partitions and skymap plus these changes. Sources, objects and light curves alike.

    Parameters
    ----------
    catalog : str
        The catalog's directory in the lake.
    fresh : bool, optional
        Start from no partition and no row (a rebuild that removes every published file), not from the
        published metadata.
    base : list of hats.pixel_math.HealpixPixel, optional
        The published partitions when the caller has read them already (default: read when needed).

    Attributes
    ----------
    catalog : str
        The catalog's directory in the lake.
    fresh : bool
        Whether it starts from nothing.
    added : set of hats.pixel_math.HealpixPixel
        Partitions this commit makes (or keeps, when ``fresh``).
    dropped : set of hats.pixel_math.HealpixPixel
        Partitions this commit empties.
    delta : numpy.ndarray
        The change of the skymap's row counts (dense, NESTED, :data:`SKYMAP_ORDER`).
    """

    def __init__(self, catalog: str, fresh: bool = False, base: list | None = None):
        self.catalog, self.fresh = catalog, fresh
        self.added: set = set()
        self.dropped: set = set()
        self.delta = empty_skymap()
        self._base = [] if fresh else base

    def add_rows(self, h29: np.ndarray) -> None:
        """Count rows added.

        Parameters
        ----------
        h29 : numpy.ndarray
            Their ``_healpix_29``.
        """
        self.delta += skymap_histogram(h29)

    def remove_rows(self, h29: np.ndarray) -> None:
        """Count rows removed.

        Parameters
        ----------
        h29 : numpy.ndarray
            Their ``_healpix_29``.
        """
        self.delta -= skymap_histogram(h29)

    def add_counts(self, pixels: np.ndarray, rows: np.ndarray, sign: int = 1) -> None:
        """Count rows added (``sign`` -1: removed) already binned at :data:`SKYMAP_ORDER`.

        Parameters
        ----------
        pixels : numpy.ndarray
            Skymap pixels (may repeat).
        rows : numpy.ndarray
            The rows in each.
        sign : int, optional
            1 for rows added, -1 for rows removed.
        """
        np.add.at(self.delta, np.asarray(pixels, np.int64), sign * np.asarray(rows, np.int64))

    def add_partition(self, pixel: HealpixPixel) -> None:
        """A partition holds files after this commit.

        Parameters
        ----------
        pixel : hats.pixel_math.HealpixPixel
            The partition.
        """
        self.added.add(pixel)
        self.dropped.discard(pixel)

    def drop_partition(self, pixel: HealpixPixel) -> None:
        """A partition holds no file after this commit.

        Parameters
        ----------
        pixel : hats.pixel_math.HealpixPixel
            The partition.
        """
        self.dropped.add(pixel)
        self.added.discard(pixel)

    def base(self, store: Storage) -> list:
        """The partitions it starts from: the published ones (none when ``fresh``).

        Parameters
        ----------
        store : Storage
            The lake's storage.

        Returns
        -------
        list of hats.pixel_math.HealpixPixel
            The partitions.
        """
        if self._base is None:
            self._base = read_partitions(store, self.catalog)
        return self._base

    def partitions(self, store: Storage) -> list:
        """The catalog's partitions after this commit.

        Parameters
        ----------
        store : Storage
            The lake's storage.

        Returns
        -------
        list of hats.pixel_math.HealpixPixel
            The partitions, sorted.
        """
        return sorted((set(self.base(store)) | self.added) - self.dropped)

    def skymap(self, store: Storage) -> np.ndarray:
        """The catalog's skymap after this commit.

        Parameters
        ----------
        store : Storage
            The lake's storage.

        Returns
        -------
        numpy.ndarray
            Row counts at :data:`SKYMAP_ORDER` (dense, NESTED).
        """
        return (empty_skymap() if self.fresh else read_skymap(store, self.catalog)) + self.delta

    def write(
        self,
        store: Storage,
        out_rel: str,
        schema: pa.Schema,
        catalog_type: str,
        id_column: str,
        rows: int | None = None,
    ) -> list[str]:
        """Write the catalog's metadata after this commit (:func:`write_metadata`).

        Parameters
        ----------
        store : Storage
            The lake's storage.
        out_rel : str
            The lake-relative directory (the catalog's staging copy).
        schema : pyarrow.Schema
            Its rows' schema.
        catalog_type : str
            Its HATS ``dataproduct_type``.
        id_column : str
            The column identifying its rows.
        rows : int, optional
            Its rows when known otherwise (the log's count); default: the skymap's total.

        Returns
        -------
        list of str
            The catalog-relative names written.
        """
        skymap = self.skymap(store)
        total = int(skymap.sum()) if rows is None else int(rows)
        return write_metadata(
            store,
            out_rel,
            self.partitions(store),
            total,
            skymap,
            schema,
            catalog=self.catalog,
            catalog_type=catalog_type,
            id_column=id_column,
        )
