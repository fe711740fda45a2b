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
from pathlib import Path

import numpy as np
import pandas as pd

from skylake.calib import pixel_match
from skylake.errors import LakeError
from skylake.lake.tables import SOURCES, get

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

    It is grown by ``pad_arcsec`` plus one cell so sources at the very edge and their matches are inside.

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
    import astropy.units as u
    from hats.pixel_math.healpix_shim import order2pixarea
    from mocpy import MOC

    mocs = []
    for ras, decs in zip(frames["footprint_ra"], frames["footprint_dec"]):
        if ras is None or decs is None or len(ras) < 3 or not np.all(np.isfinite(list(ras) + list(decs))):
            continue
        mocs.append(
            MOC.from_polygon(lon=np.asarray(ras, float) * u.deg, lat=np.asarray(decs, float) * u.deg, max_depth=depth)
        )
    if not mocs:
        return None
    moc = mocs[0].union(*mocs[1:]) if len(mocs) > 1 else mocs[0]
    cell_arcsec = np.degrees(np.sqrt(order2pixarea(depth))) * 3600.0
    for _ in range(1 + int(pad_arcsec // cell_arcsec)):
        moc = moc.add_neighbours()
    return moc


def refcat_margin_arcsec(path: Path) -> float:
    """Width of the default margin cache of the collection at ``path`` [arcsec] (0 when it has none).

    Parameters
    ----------
    path : pathlib.Path
        A HATS collection (a reference catalogue in LAKE/refcats).

    Returns
    -------
    float
        The margin's width [arcsec].
    """
    import hats

    from skylake.refcat.importer import quiet_collection_notice

    with quiet_collection_notice():
        coll = hats.read_hats(path)
    margin_dir = coll.default_margin_catalog_dir
    if margin_dir is None:
        return 0.0
    return float(hats.read_hats(margin_dir).catalog_info.margin_threshold)


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

    from skylake.lake.storage import Storage

    return lsdb.open_catalog(
        Storage(lake_path).upath(get(SOURCES).location),  # a local path, or s3:// with the environment's keys
        search_filter=lsdb.MOCSearch(moc, fine=False),
        columns=list(columns),
        filters=[("frame_id", "in", [int(f) for f in frame_ids])],
        error_empty_filter=False,
    )


def check_margin(path: Path, radius_arcsec: float, fix_hint: str = "") -> None:
    """Refuse a match radius wider than the margin of the reference collection at ``path``.

    Parameters
    ----------
    path : pathlib.Path
        The collection (a reference catalogue in LAKE/refcats).
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
    margin = refcat_margin_arcsec(path)
    if margin < radius_arcsec:
        raise CalibrationError(
            f"match radius {radius_arcsec:g} arcsec exceeds the {margin:g} arcsec margin of refcat {path.name!r}: "
            f"matches across partition edges would be lost; re-import it with a wider margin, e.g. `skylake refcat "
            f"import LAKE {path.name} --format FORMAT FILES --overwrite --margin-arcsec {radius_arcsec:g}`{fix_hint}"
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


def candidate_pairs(
    lake_path: str,
    frames: pd.DataFrame,
    refcat_path: Path,
    band: str,
    color: list[str],
    radius_arcsec: float,
    extra_columns: tuple[str, ...] = (),
    with_counts: bool = False,
) -> list | tuple[list, list]:
    """The cross-match of the sources of ``frames`` with refcat ``refcat_path`` within ``radius_arcsec``, not computed.

    One dask delayed per sources partition under the frames' footprints, each the DataFrame of its sources'
    nearest stars (:func:`skylake.calib.pixel_match.match_partition`) with the reference columns, i.e. the pairs of
    :func:`match_frames` before the per-frame step (no ``n_competing``).

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
    with_counts : bool, optional
        Also each partition's sources per frame (:func:`skylake.calib.pixel_match.count_partition`, several
        partitions a task).

    Returns
    -------
    list of dask.delayed.Delayed
        One per sources partition; empty when no partition of either catalog overlaps. With ``with_counts``,
        that list and the count tasks' (each counting several partitions,
        :func:`skylake.calib.pixel_match.count_partitions`).

    Raises
    ------
    CalibrationError
        A band the catalogue lacks or a margin narrower than the radius.
    """
    import hats

    from skylake.lake.storage import Storage
    from skylake.refcat.importer import quiet_collection_notice

    moc = footprint_moc(frames, radius_arcsec)
    with quiet_collection_notice():
        refcat = hats.read_hats(refcat_path)
    columns, has_color = refcat_columns(refcat.main_catalog.schema.names, band, color)
    if moc is None:
        return ([], []) if with_counts else []
    check_margin(refcat_path, radius_arcsec)
    sources = hats.read_hats(Storage(lake_path).upath(get(SOURCES).location))
    spec = pixel_match.MatchSpec(
        frame_ids=np.unique(frames["frame_id"].to_numpy(np.int64)),
        source_columns=tuple(source_columns(extra_columns)),
        source_schema=sources.schema,
        ref_columns=tuple(columns),
        radius_arcsec=radius_arcsec,
        mag=f"mag_{band}",
        band=band,
        color=tuple(color) if has_color else None,
    )
    return pixel_match.match_delayed(sources, refcat, moc, spec, with_counts=with_counts)


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
