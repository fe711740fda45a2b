"""The HATS side of the source table: pixel assignment and the catalog metadata.

``LAKE/sources`` is a HATS catalog (``dataproduct_type=source``, ``hats_npix_suffix=/``): every
partition is a directory ``dataset/Norder=k/Dir=d/Npix=n/`` holding one Parquet file per ingest batch.
Partitions never overlap; new rows go to the existing partition that contains them, or to a new
partition at the lake's ``partition_order`` (deeper where a split partition's children already exist).
The metadata (``partition_info.csv``, ``hats.properties``/``properties`` with the true ``hats_nrows``,
``skymap.fits``/``point_map.fits``, ``dataset/_common_metadata``) is rebuilt at every commit; the
optional ``_metadata`` is never written (it would go stale with every append).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typing import TYPE_CHECKING

import skylake
from skylake.lake.storage import Storage
from skylake.lake.tables import SOURCES

if TYPE_CHECKING:  # hats itself is imported where used: its package import costs ~1 s of start-up
    from hats.pixel_math import HealpixPixel

SKYMAP_ORDER = 8
METADATA_FILES = ["partition_info.csv", "hats.properties", "properties", "skymap.fits", "point_map.fits",
                  "dataset/_common_metadata"]


def pixel_dir(order: int, pixel: int) -> str:
    """``dataset/Norder=k/Dir=d/Npix=n`` of a partition, relative to the catalog."""
    return f"dataset/Norder={order}/Dir={(pixel // 10_000) * 10_000}/Npix={pixel}"


def _shift(order: int) -> int:
    return 2 * (29 - order)


def assign_pixels(h29: np.ndarray, partitions: list[HealpixPixel], default_order: int) -> tuple[np.ndarray, np.ndarray]:
    """The partition ``(order, pixel)`` of each ``_healpix_29`` value.

    Existing partitions win; other rows get new partitions at ``default_order``, or deeper where an
    existing partition is a descendant of that pixel (so partitions never overlap).
    """
    n = len(h29)
    orders = np.full(n, -1, dtype=np.int64)
    pixels = np.full(n, -1, dtype=np.int64)
    by_order: dict[int, np.ndarray] = {}
    for p in partitions:
        by_order.setdefault(p.order, []).append(p.pixel)
    for order, pix in by_order.items():
        cand = h29 >> _shift(order)
        hit = np.isin(cand, np.asarray(pix, dtype=np.int64))
        orders[hit], pixels[hit] = order, cand[hit]
    todo = orders < 0
    order = default_order
    while todo.any():
        # ancestors at this order of existing partitions that are deeper than it
        blocked = np.asarray(sorted({p.pixel >> (2 * (p.order - order)) for p in partitions if p.order > order}),
                             dtype=np.int64)
        cand = h29 >> _shift(order)
        free = todo & ~np.isin(cand, blocked)
        orders[free], pixels[free] = order, cand[free]
        todo &= ~free
        order += 1
        if order > 29:
            raise AssertionError("pixel assignment did not converge; overlapping partitions in the lake?")
    return orders, pixels


#: A frame spanning more new partitions than this at the lake's partition order gets coarser ones: an
#: all-sky camera (a 100-degree field) at order 5 wrote ~300 files per frame, each a few sources.
MAX_PARTITIONS_PER_FRAME = 16


def order_for_frames(h29: np.ndarray, frame_ids: np.ndarray, order: int) -> int:
    """The order of new partitions for a batch whose rows have these ``_healpix_29`` and ``frame_ids``
    (see :func:`order_for_pixel_sets`)."""
    frame_ids = np.asarray(frame_ids, dtype=np.int64)
    by_frame = np.argsort(frame_ids, kind="stable")
    pix = (np.asarray(h29, dtype=np.int64) >> _shift(order))[by_frame]
    cuts = np.flatnonzero(np.diff(frame_ids[by_frame])) + 1
    return order_for_pixel_sets(np.split(pix, cuts) if len(pix) else [], order)


def order_for_pixel_sets(pixel_sets: list[np.ndarray], order: int) -> int:
    """The order of new partitions for a batch: ``order`` (the lake's), or coarser until no frame of the
    batch spans more than :data:`MAX_PARTITIONS_PER_FRAME` pixels, so a wide-field camera writes a few
    files per batch, not hundreds (compaction splits partitions that grow past its row threshold).
    ``pixel_sets`` holds each frame's pixels at ``order``."""
    sets = [np.unique(np.asarray(p, dtype=np.int64)) for p in pixel_sets]
    start = order
    while order > 0 and sets and max(len(s) for s in sets) > MAX_PARTITIONS_PER_FRAME:
        order -= 1
        sets = [np.unique(s >> 2) for s in sets]
    return order if sets else start


def skymap_histogram(h29: np.ndarray) -> np.ndarray:
    """Row counts at :data:`SKYMAP_ORDER` (dense, NESTED)."""
    return np.bincount(h29 >> _shift(SKYMAP_ORDER), minlength=12 * 4**SKYMAP_ORDER).astype(np.int64)


def count_partitions(store: Storage, catalog: str = SOURCES) -> int:
    """Rows of ``partition_info.csv`` (one per partition), read without importing hats (for ``status``)."""
    if not store.exists(f"{catalog}/partition_info.csv"):
        return 0
    return sum(1 for line in store.read_text(f"{catalog}/partition_info.csv").splitlines()[1:] if line.strip())


def read_partitions(store: Storage, catalog: str = SOURCES) -> list[HealpixPixel]:
    from hats.catalog import PartitionInfo

    if not store.exists(f"{catalog}/partition_info.csv"):
        return []
    return PartitionInfo.read_from_csv(store.full(f"{catalog}/partition_info.csv")).get_healpix_pixels()


def read_skymap(store: Storage, catalog: str = SOURCES) -> np.ndarray:
    from hats.io import file_io

    if not store.exists(f"{catalog}/skymap.fits"):
        return np.zeros(12 * 4**SKYMAP_ORDER, dtype=np.int64)
    return np.asarray(file_io.read_fits_image(store.full(f"{catalog}/skymap.fits")), dtype=np.int64)


def write_metadata(store: Storage, out_rel: str, partitions: list[HealpixPixel], total_rows: int,
                   skymap: np.ndarray, schema: pa.Schema, catalog: str = SOURCES, catalog_type: str = "source",
                   id_column: str = "source_id") -> list[str]:
    """Write the catalog metadata files into ``out_rel`` (a staging copy of ``sources/``, or of another
    catalog of the lake: ``objects/``, whose rows are identified by ``id_column``).

    Returns the catalog-relative names written (:data:`METADATA_FILES`).
    """
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io import file_io, paths

    out = store.full(out_rel)
    store.makedirs(f"{out_rel}/dataset")
    info = PartitionInfo.from_healpix(partitions)
    info.write_to_file(partition_info_file=f"{out}/partition_info.csv")
    props = TableProperties(
        catalog_name=catalog,
        catalog_type=catalog_type,
        total_rows=int(total_rows),
        ra_column="ra",
        dec_column="dec",
        healpix_column="_healpix_29",
        healpix_order=29,
        npix_suffix="/",
        skymap_order=SKYMAP_ORDER,
        moc_sky_fraction=float(f"{info.calculate_fractional_coverage():0.5f}") if partitions else 0.0,
        hats_builder=f"skylake v{skylake.__version__}",
        hats_creation_date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M%Z"),
        hats_version="v1.0",
        hats_cols_sort=f"_healpix_29,{id_column}",
        hats_cols_survey_id=id_column,
    )
    props.to_properties_file(out)
    file_io.write_fits_image(skymap, paths.get_skymap_file_pointer(out))
    file_io.write_fits_image(skymap, paths.get_point_map_file_pointer(out))
    pq.write_metadata(schema, f"{out}/dataset/_common_metadata")
    return list(METADATA_FILES)
