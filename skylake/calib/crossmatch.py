"""Cross-matching a batch of frames' sources with a reference collection, and the one-to-one reduction.

The one-to-one reduction of the candidate pairs is made of pure dataframe functions.

Only the sky the batch covers is read: a MOC of the frames' footprints selects the source
partitions (with a ``frame_id`` filter pushed into the Parquet reads) and the reference partitions
with their margin cache, so the k-d tree match is complete at partition edges as long as
the match radius is at most the catalogue's margin (checked: :func:`check_margin`). The match runs
as one task per sources partition (:mod:`.pixel_match`) on whatever dask scheduler is current (the
``dask_client`` of a calibration), and :func:`one_to_one` then makes the pairs unique:

* each source keeps its nearest reference star within the radius, and the second nearest's magnitude
  and separation as ``neighbour_mag`` / ``neighbour_sep`` to spot blends: one k-d tree query per
  reference partition a sources partition meets, on the workers (:func:`.pixel_match.match_partition`);
* each reference star keeps, per frame, the nearest of the sources that chose it (nearest wins;
  the losers are counted in ``n_competing``); a frame's sources span partitions, so this runs on the
  rows of whole frames: a calibration's frame-group tasks (:mod:`.pairs`), or :func:`match_frames`.

This equals a brute-force nearest-neighbour match of every source against the whole catalogue
(astropy ``match_to_catalog_sky``) cut at the radius, then reduced per (frame, reference star).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from skylake.calib import pixel_match
from skylake.errors import LakeError
from skylake.lake.tables import SOURCES, get

__all__ = [
    "SOURCE_COLUMNS",
    "PAIR_COLUMNS",
    "MOC_DEPTH",
    "CalibrationError",
    "footprint_moc",
    "OpenRefcat",
    "open_refcat",
    "refcat_margin_arcsec",
    "open_sources",
    "check_margin",
    "nearest_per_source",
    "nearest_per_star",
    "one_to_one",
    "refcat_columns",
    "source_columns",
    "empty_pairs",
    "candidate_plan",
    "partition_plan",
    "candidate_pairs",
    "one_to_one_pairs",
    "match_frames",
]


log = logging.getLogger(__name__)

#: Source columns a calibration reads (LAKE/sources).
SOURCE_COLUMNS = [
    "source_id",
    "frame_id",
    "ra",
    "dec",
    "x",
    "y",
    "inst_mag",
    "inst_mag_err",
    "flux_max",
    "bkg",
    "edge_dist",
    "flags",
]
#: Columns of a pair after its source's: the reference star's and the match's (:func:`match_frames`).
PAIR_COLUMNS = [
    "ref_id",
    "ra_ref",
    "dec_ref",
    "flags_ref",
    "ref_mag",
    "ref_mag_err",
    "ref_color",
    "sep_arcsec",
    "neighbour_mag",
    "neighbour_sep",
    "n_competing",
]
#: MOC depth of the footprint search region (order 10 cells: 3.4'); the region is padded by one cell.
MOC_DEPTH = 10


class CalibrationError(LakeError):
    """A calibration cannot go ahead (no such refcat or band, margin narrower than the radius, ...)."""


def footprint_moc(frames: pd.DataFrame, pad_arcsec: float = 0.0, depth: int = MOC_DEPTH):
    """MOC (mocpy) covering every frame's footprint polygon (``footprint_ra``/``footprint_dec``, deg).

    It is grown by ``pad_arcsec`` plus one cell so sources at the very edge and their matches are inside. The
    polygons go to mocpy together (one call per vertex count, on one thread), the MOC of each as
    ``MOC.from_polygon`` makes it: the same cells.

    Parameters
    ----------
    frames : pandas.DataFrame
        Rows of LAKE/frames with ``footprint_ra`` and ``footprint_dec`` [deg].
    pad_arcsec : float, optional
        How far to grow the footprints beyond one cell [arcsec].
    depth : int, optional
        The MOC's depth (HEALPix order).

    Returns
    -------
    mocpy.MOC or None
        The region; None when no frame has a footprint.
    """
    from astropy.coordinates import Latitude, Longitude
    from hats.pixel_math.healpix_shim import order2pixarea
    from mocpy import MOC

    polygons = []
    for ras, decs in zip(frames["footprint_ra"], frames["footprint_dec"]):
        if ras is None or decs is None or len(ras) < 3:
            continue
        ras, decs = np.asarray(ras, float), np.asarray(decs, float)
        if ras.shape != decs.shape:
            raise ValueError(f"a footprint of {ras.shape} longitudes and {decs.shape} latitudes")
        if np.isfinite(ras).all() and np.isfinite(decs).all():
            polygons.append((ras, decs))
    if not polygons:
        return None
    # what MOC.from_polygon does to each polygon's vertices (validate_lonlat), for all of them at once
    lon = Longitude(np.concatenate([r for r, _ in polygons]), unit="deg").to_value("deg").astype(np.float64)
    lat = Latitude(np.concatenate([d for _, d in polygons]), unit="deg").to_value("deg").astype(np.float64)
    cuts = np.cumsum([len(r) for r, _ in polygons])[:-1]
    by_size: dict[int, list[int]] = {}
    for k, ras in enumerate(np.split(lon, cuts)):
        by_size.setdefault(len(ras), []).append(k)
    mocs: list = [None] * len(polygons)
    lons, lats = np.split(lon, cuts), np.split(lat, cuts)
    for ks in by_size.values():
        vertices = np.array([a for k in ks for a in (lons[k], lats[k])], dtype=np.float64)
        for k, moc in zip(ks, MOC.from_polygons(vertices, max_depth=depth, n_threads=1)):
            mocs[k] = moc
    moc = mocs[0].union(*mocs[1:]) if len(mocs) > 1 else mocs[0]
    cell_arcsec = np.degrees(np.sqrt(order2pixarea(depth))) * 3600.0
    for _ in range(1 + int(pad_arcsec // cell_arcsec)):
        moc = moc.add_neighbours()
    return moc


@dataclass(frozen=True, eq=False)
class OpenRefcat:
    """A reference collection read once, for every batch of a calibration (:func:`open_refcat`).

    Attributes
    ----------
    path : object
        The collection's directory (a ``Path`` or ``UPath``).
    collection : hats.catalog.CatalogCollection
        The collection, without its MOC.
    margin : hats.catalog.MarginCatalog or None
        Its default margin catalog, without its MOC (None without one).
    """

    path: object
    collection: object
    margin: object | None

    @property
    def name(self) -> str:
        """The catalogue's name (its directory's).

        Returns
        -------
        str
            The name.
        """
        return self.path.name

    @property
    def margin_arcsec(self) -> float:
        """The width of the default margin [arcsec] (0 without one).

        Returns
        -------
        float
            The width.
        """
        return 0.0 if self.margin is None else float(self.margin.catalog_info.margin_threshold)


def open_refcat(path) -> OpenRefcat:
    """Read the reference collection at ``path`` and its default margin (their partition lists and schemas).

    A calibration reads them once, not once per batch; neither MOC is read (the match's region is the
    batch's own, :func:`footprint_moc`).

    Parameters
    ----------
    path : pathlib.Path or upath.UPath or OpenRefcat
        A HATS collection (a reference catalogue in LAKE/refcats); one already open is given back.

    Returns
    -------
    OpenRefcat
        The collection and its margin.
    """
    if isinstance(path, OpenRefcat):
        return path
    import hats

    from skylake.refcat.importer import quiet_collection_notice

    with quiet_collection_notice():
        coll = hats.read_hats(path, read_moc=False)
    margin_dir = coll.default_margin_catalog_dir
    margin = None if margin_dir is None else hats.read_hats(margin_dir, single_catalog=True, read_moc=False)
    return OpenRefcat(path, coll, margin)


def refcat_margin_arcsec(path) -> float:
    """Width of the default margin cache of the collection at ``path`` [arcsec] (0 when it has none).

    Parameters
    ----------
    path : pathlib.Path or OpenRefcat
        A HATS collection (a reference catalogue in LAKE/refcats), or one open.

    Returns
    -------
    float
        The margin's width [arcsec].
    """
    return open_refcat(path).margin_arcsec


def open_sources(lake_path: str, frame_ids, moc, columns=SOURCE_COLUMNS):
    """The lake's source catalog (lsdb), only the partitions in ``moc`` and the rows of ``frame_ids``.

    Parameters
    ----------
    lake_path : str
        The lake's location (a local path or ``s3://`` URL).
    frame_ids : iterable of int
        The frames whose sources to read.
    moc : mocpy.MOC
        The region whose partitions to read (:func:`footprint_moc`).
    columns : list of str, optional
        The columns to read.

    Returns
    -------
    lsdb.Catalog
        The sources, not computed.
    """
    import lsdb

    from skylake.jit_cache import cache_hats_jit
    from skylake.lake.storage import open_storage

    cache_hats_jit()  # the MOC filter's numba code from disk
    return lsdb.open_catalog(
        open_storage(lake_path).upath(get(SOURCES).location),  # a local path, or s3:// with the environment's keys
        search_filter=lsdb.MOCSearch(moc, fine=False),
        columns=list(columns),
        filters=[("frame_id", "in", [int(f) for f in frame_ids])],
        error_empty_filter=False,
    )


def check_margin(path, radius_arcsec: float, fix_hint: str = "") -> None:
    """Refuse a match radius wider than the margin of the reference collection at ``path``.

    Parameters
    ----------
    path : pathlib.Path or OpenRefcat
        The collection (a reference catalogue in LAKE/refcats), or one open.
    radius_arcsec : float
        The match radius [arcsec]; the margin must be at least this wide.
    fix_hint : str, optional
        Appended to the error's message.

    Raises
    ------
    CalibrationError
        The margin is narrower than ``radius_arcsec`` (matches across partition edges would be lost); the
        message gives the re-import that fixes it.
    """
    refcat = open_refcat(path)
    margin = refcat.margin_arcsec
    if margin < radius_arcsec:
        raise CalibrationError(
            f"match radius {radius_arcsec:g} arcsec exceeds the {margin:g} arcsec margin of refcat {refcat.name!r}: "
            f"matches across partition edges would be lost; re-import it with a wider margin, e.g. `skylake refcat "
            f"import LAKE {refcat.name} --format FORMAT FILES --overwrite --margin-arcsec {radius_arcsec:g}`{fix_hint}"
        )


def _argmin_per_group(starts: np.ndarray, key: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Position of the smallest (``key``, ``tie``) row of each group of rows sorted by group, the groups
    starting at ``starts``: O(n) with ``reduceat`` instead of another sort."""
    sizes = np.diff(np.r_[starts, key.size])
    lowest = key == np.repeat(np.minimum.reduceat(key, starts), sizes)
    tie = np.where(lowest, tie, np.iinfo(np.int64).max)
    hit = np.flatnonzero(lowest & (tie == np.repeat(np.minimum.reduceat(tie, starts), sizes)))
    group = np.repeat(np.arange(starts.size), sizes)[hit]
    return hit[np.r_[True, group[1:] != group[:-1]]] if hit.size else hit


def _sorted_groups(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order grouping equal ``keys`` (stable integer sorts, last key outermost) and the group starts."""
    order = np.arange(keys[0].size)
    for k in keys:
        order = order[np.argsort(k[order], kind="stable")]
    change = np.zeros(order.size, bool)
    if order.size:
        change[0] = True
        for k in keys:
            change[1:] |= k[order][1:] != k[order][:-1]
    return order, np.flatnonzero(change)


def nearest_per_source(
    pairs: pd.DataFrame, mag: str = "ref_mag", source: str = "source_id", ref: str = "ref_id", sep: str = "sep_arcsec"
) -> pd.DataFrame:
    """Each source's nearest reference star (ties to the smaller ref_id), with the next nearest's magnitude.

    ``neighbour_mag`` and ``neighbour_sep`` are those of the next nearest (NaN if none). Pure numpy (integer
    sorts and ``reduceat``).

    Parameters
    ----------
    pairs : pandas.DataFrame
        Candidate pairs (several reference stars per source).
    mag : str, optional
        The reference magnitude column.
    source : str, optional
        The source id column.
    ref : str, optional
        The reference star id column.
    sep : str, optional
        The separation column [arcsec].

    Returns
    -------
    pandas.DataFrame
        One row per source, with ``neighbour_mag`` and ``neighbour_sep``.
    """
    src, refid = (pairs[c].to_numpy(dtype=np.int64) for c in (source, ref))
    dist, mags = pairs[sep].to_numpy(dtype=float), pairs[mag].to_numpy(dtype=float, na_value=np.nan)
    if not len(pairs):
        return pairs.assign(neighbour_mag=dist, neighbour_sep=dist)
    order, starts = _sorted_groups(src)
    d = dist[order]
    best = _argmin_per_group(starts, d, refid[order])
    d2 = d.copy()
    d2[best] = np.inf
    second = _argmin_per_group(starts, d2, refid[order])
    has_second = np.isfinite(d2[second])
    return pairs.iloc[order[best]].assign(
        neighbour_mag=np.where(has_second, mags[order[second]], np.nan),
        neighbour_sep=np.where(has_second, d2[second], np.nan),
    )


def nearest_per_star(
    pairs: pd.DataFrame,
    source: str = "source_id",
    ref: str = "ref_id",
    frame: str = "frame_id",
    sep: str = "sep_arcsec",
) -> pd.DataFrame:
    """Of pairs with one star per source, each (frame, star) its nearest source (ties to the smaller source_id).

    Parameters
    ----------
    pairs : pandas.DataFrame
        Pairs with one star per source (:func:`nearest_per_source`).
    source : str, optional
        The source id column.
    ref : str, optional
        The reference star id column.
    frame : str, optional
        The frame id column.
    sep : str, optional
        The separation column [arcsec].

    Returns
    -------
    pandas.DataFrame
        One row per (frame, star), with ``n_competing`` counting the other sources that chose the star.
    """
    src, refid, fr = (pairs[c].to_numpy(dtype=np.int64) for c in (source, ref, frame))
    if not len(pairs):
        return pairs.assign(n_competing=np.zeros(0, np.int32))
    order, starts = _sorted_groups(refid, fr)
    keep = order[_argmin_per_group(starts, pairs[sep].to_numpy(dtype=float)[order], src[order])]
    competing = np.diff(np.r_[starts, order.size]) - 1
    return pairs.iloc[keep].reset_index(drop=True).assign(n_competing=competing.astype(np.int32))


def one_to_one(
    pairs: pd.DataFrame,
    mag: str = "ref_mag",
    source: str = "source_id",
    ref: str = "ref_id",
    frame: str = "frame_id",
    sep: str = "sep_arcsec",
) -> pd.DataFrame:
    """Reduce candidate pairs (several reference stars per source, several sources per reference star) to one-to-one.

    Each source its nearest reference star (:func:`nearest_per_source`), then each (frame, reference star) its
    nearest source (:func:`nearest_per_star`). Ties in separation go to the smaller id, so the result does not
    depend on row order.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The candidate pairs.
    mag : str, optional
        The reference magnitude column.
    source : str, optional
        The source id column.
    ref : str, optional
        The reference star id column.
    frame : str, optional
        The frame id column.
    sep : str, optional
        The separation column [arcsec].

    Returns
    -------
    pandas.DataFrame
        The one-to-one pairs, with ``neighbour_mag``, ``neighbour_sep`` and ``n_competing``.
    """
    return nearest_per_star(nearest_per_source(pairs, mag, source, ref, sep), source, ref, frame, sep)


def refcat_columns(schema_names: list[str], band: str, color: list[str]) -> tuple[list[str], bool]:
    """Columns to read from a refcat for ``band`` and ``color``, and whether the colour is available.

    Parameters
    ----------
    schema_names : list of str
        The catalogue's columns.
    band : str
        The band calibrated.
    color : list of str
        The colour's two bands (empty for none).

    Returns
    -------
    columns : list of str
        The columns to read.
    has_color : bool
        Whether the catalogue has both bands of the colour.

    Raises
    ------
    CalibrationError
        The catalogue has no ``mag_<band>``.
    """
    need = f"mag_{band}"
    if need not in schema_names:
        bands = sorted(n[4:] for n in schema_names if n.startswith("mag_"))
        raise CalibrationError(f"the reference catalogue has no band {band!r} (column {need}); it has {bands}")
    cols = ["ref_id", "ra", "dec", "flags", need] + ([f"err_{band}"] if f"err_{band}" in schema_names else [])
    has_color = bool(color) and all(f"mag_{b}" in schema_names for b in color)
    if has_color:
        cols += [f"mag_{b}" for b in color if f"mag_{b}" not in cols]
    return cols, has_color


def source_columns(extra_columns: tuple[str, ...] = ()) -> list[str]:
    """The source columns a calibration reads: :data:`SOURCE_COLUMNS` and ``extra_columns`` (other fluxes).

    Parameters
    ----------
    extra_columns : tuple of str, optional
        Further columns of LAKE/sources.

    Returns
    -------
    list of str
        The columns, without repeats.
    """
    return SOURCE_COLUMNS + [c for c in extra_columns if c not in SOURCE_COLUMNS]


def empty_pairs(extra_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """No pairs, in the layout of :func:`match_frames`.

    Parameters
    ----------
    extra_columns : tuple of str, optional
        Further source columns.

    Returns
    -------
    pandas.DataFrame
        An empty DataFrame with the pairs' columns.
    """
    return pd.DataFrame({c: pd.Series(dtype=float) for c in source_columns(extra_columns) + PAIR_COLUMNS})


def candidate_plan(
    lake_path: str,
    frames: pd.DataFrame,
    refcat_path,
    band: str,
    color: list[str],
    radius_arcsec: float,
    extra_columns: tuple[str, ...] = (),
    runner=None,
) -> tuple[list, pixel_match.MatchSpec | None]:
    """The partition tasks of the cross-match of the sources of ``frames`` with a refcat, and their settings.

    One :class:`~skylake.calib.pixel_match.PartitionTask` per sources partition under the frames' footprints
    (:func:`skylake.calib.pixel_match.plan`), and the :class:`~skylake.calib.pixel_match.MatchSpec` they share.
    With a ``runner`` on a cluster, the footprints' MOC, the sources catalog's partitions and the alignment are
    made by a task there (~0.4 ms of CPU per 4k frame and ~20 ms per batch the driver does not spend); the
    catalogue's band and margin are checked here.

    Parameters
    ----------
    lake_path : str
        The lake's location (a local path or ``s3://`` URL).
    frames : pandas.DataFrame
        Rows of LAKE/frames with ``frame_id`` and the footprint.
    refcat_path : pathlib.Path or OpenRefcat
        The reference catalogue's collection, or that collection open (:func:`open_refcat`).
    band : str
        The band calibrated.
    color : list of str
        The colour's two bands (empty for none).
    radius_arcsec : float
        The match radius [arcsec].
    extra_columns : tuple of str, optional
        Further source columns (other fluxes).
    runner : skylake.runtime.Runner, optional
        Where the plan is made (None: this process).

    Returns
    -------
    tasks : list of skylake.calib.pixel_match.PartitionTask
        The partitions; empty when no partition of either catalog overlaps.
    spec : skylake.calib.pixel_match.MatchSpec or None
        The settings (None when no frame has a footprint).

    Raises
    ------
    CalibrationError
        A band the catalogue lacks or a margin narrower than the radius.
    """
    refcat = open_refcat(refcat_path)
    columns, has_color = refcat_columns(refcat.collection.main_catalog.schema.names, band, color)
    settings = (tuple(columns), tuple(color) if has_color else None, band, radius_arcsec, tuple(extra_columns))
    if runner is None or runner.client is None:
        made = partition_plan(lake_path, frames, refcat, *settings)
    else:  # the footprints, the plan: a task (the catalogue opened there; a refcat holds no lists of arrays)
        footprints = frames[["frame_id", "footprint_ra", "footprint_dec"]]
        [made] = runner.gather([runner.submit(partition_plan, lake_path, footprints, refcat.path, *settings)])
    if made is None:
        return [], None
    check_margin(refcat, radius_arcsec)
    return made


def partition_plan(
    lake_path: str,
    frames: pd.DataFrame,
    refcat,
    columns: tuple,
    color: tuple | None,
    band: str,
    radius_arcsec: float,
    extra_columns: tuple,
) -> tuple[list, pixel_match.MatchSpec] | None:
    """The partition tasks and settings of :func:`candidate_plan`, from the checked catalogue's ``columns``.

    Parameters
    ----------
    lake_path : str
        The lake's location.
    frames : pandas.DataFrame
        Rows of LAKE/frames with ``frame_id`` and the footprint.
    refcat : pathlib.Path or OpenRefcat
        The reference catalogue.
    columns : tuple of str
        Its columns to read (:func:`refcat_columns`).
    color : tuple of str or None
        The colour's two bands, when the catalogue has both.
    band : str
        The band calibrated.
    radius_arcsec : float
        The match radius [arcsec].
    extra_columns : tuple of str
        Further source columns.

    Returns
    -------
    tuple of (list, skylake.calib.pixel_match.MatchSpec) or None
        The tasks and their settings; None when no frame has a footprint.
    """
    import hats

    from skylake.lake.storage import open_storage

    moc = footprint_moc(frames, radius_arcsec)
    if moc is None:
        return None
    sources = hats.read_hats(open_storage(lake_path).upath(get(SOURCES).location), single_catalog=True, read_moc=False)
    spec = pixel_match.MatchSpec(
        frame_ids=np.unique(frames["frame_id"].to_numpy(np.int64)),
        source_columns=tuple(source_columns(extra_columns)),
        source_schema=sources.schema,
        ref_columns=columns,
        radius_arcsec=radius_arcsec,
        mag=f"mag_{band}",
        band=band,
        color=color,
    )
    return pixel_match.plan(sources, open_refcat(refcat), moc), spec


def candidate_pairs(
    lake_path: str,
    frames: pd.DataFrame,
    refcat_path: Path,
    band: str,
    color: list[str],
    radius_arcsec: float,
    extra_columns: tuple[str, ...] = (),
) -> list:
    """The cross-match of the sources of ``frames`` with refcat ``refcat_path`` within ``radius_arcsec``, not computed.

    One dask delayed per sources partition under the frames' footprints (:func:`candidate_plan`), each the
    DataFrame of its sources' nearest stars (:func:`skylake.calib.pixel_match.match_partition`) with the reference
    columns, i.e. the pairs of :func:`match_frames` before the per-frame step (no ``n_competing``).

    Parameters
    ----------
    lake_path : str
        The lake's location (a local path or ``s3://`` URL).
    frames : pandas.DataFrame
        Rows of LAKE/frames with ``frame_id`` and the footprint.
    refcat_path : pathlib.Path or OpenRefcat
        The reference catalogue's collection, or that collection open (:func:`open_refcat`).
    band : str
        The band calibrated.
    color : list of str
        The colour's two bands (empty for none).
    radius_arcsec : float
        The match radius [arcsec].
    extra_columns : tuple of str, optional
        Further source columns (other fluxes).

    Returns
    -------
    list of dask.delayed.Delayed
        One per sources partition; empty when no partition of either catalog overlaps.

    Raises
    ------
    CalibrationError
        A band the catalogue lacks or a margin narrower than the radius.
    """
    import dask

    tasks, spec = candidate_plan(lake_path, frames, refcat_path, band, color, radius_arcsec, extra_columns)
    shared = dask.delayed(spec)  # one copy in the graph, not one per task
    return [dask.delayed(pixel_match.match_partition)(task, shared) for task in tasks]


def one_to_one_pairs(parts: list[pd.DataFrame], extra_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """The pairs of whole frames from the partitions' :func:`candidate_pairs` holding them.

    Each (frame, star) its nearest source (:func:`nearest_per_star`).

    Parameters
    ----------
    parts : list of pandas.DataFrame
        The computed candidate pairs of every partition holding the frames' sources.
    extra_columns : tuple of str, optional
        Further source columns (for the layout of no pairs).

    Returns
    -------
    pandas.DataFrame
        The one-to-one pairs, rows in (frame_id, ref_id) order, whatever the partitions' order.
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_pairs(extra_columns)
    return nearest_per_star(pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0])


def match_frames(
    lake_path: str,
    frames: pd.DataFrame,
    refcat_path: Path,
    band: str,
    color: list[str],
    radius_arcsec: float,
    extra_columns: tuple[str, ...] = (),
) -> pd.DataFrame:
    """One-to-one pairs of the sources of ``frames`` with refcat ``refcat_path`` within ``radius_arcsec``.

    Computed on the current dask scheduler and gathered here (a calibration keeps them on the workers
    instead: :mod:`.pairs`).

    Parameters
    ----------
    lake_path : str
        The lake's location (a local path or ``s3://`` URL).
    frames : pandas.DataFrame
        Rows of LAKE/frames with ``frame_id`` and the footprint.
    refcat_path : pathlib.Path
        The reference catalogue's collection.
    band : str
        The band calibrated.
    color : list of str
        The colour's two bands (empty for none).
    radius_arcsec : float
        The match radius [arcsec].
    extra_columns : tuple of str, optional
        Further source columns (other fluxes).

    Returns
    -------
    pandas.DataFrame
        Columns: the :data:`SOURCE_COLUMNS` and ``extra_columns`` of the sources, ``ref_id``,
        ``ra_ref``, ``dec_ref``, ``flags_ref``, ``ref_mag``, ``ref_mag_err``, ``ref_color`` (NaN without a
        colour), ``sep_arcsec`` and those of :func:`one_to_one`.

    Raises
    ------
    CalibrationError
        A band the catalogue lacks or a margin narrower than the radius.
    """
    import dask

    parts = candidate_pairs(lake_path, frames, refcat_path, band, color, radius_arcsec, extra_columns)
    return one_to_one_pairs(list(dask.compute(*parts)) if parts else [], extra_columns)
