"""One objects partition of an update: a pure task that reads its view, associates, and stages its files.

:func:`build_partition` runs on a dask worker (or in the driver's process) for each partition an update
touches (:func:`build_partitions` runs those sharing sources files as one task, reading them once). Its
**view** is the partition plus a band one pixel of the margin order wide around it (at least
``MARGIN_RADII`` association radii): objects on its edges are associated whole, from both sides alike,
and each object is written by the one partition holding its position.

Two ways to bring a partition up to date (:mod:`skylake.objects.summary`):

* **merge** (the usual): the partition's objects rows and its neighbours' band rows are read (no light
  curve), the new detections are associated with them, each touched object's row gets its new points
  merged in, the rows are written again, and the new points are *appended* to LAKE/lightcurves as one
  file, filed under their object's position. It reads and writes the partition's objects rows, its
  margin and the new points: not the light curves, so not the archive's history. An object whose
  points have grown past :data:`~skylake.objects.summary.REFRESH_GROWTH` times those its order
  statistics describe gets them from its whole light curve (its points only: a few row groups around
  it), so each point is read again a bounded number of times over the archive's life (a geometric
  series) and no object's order statistics describe fewer than 80 % of its points.
* **exact**: every statistic is computed from whole light curves, read from the partition's
  LAKE/lightcurves files and its neighbours' in a band twice as wide, and its light-curve files are
  merged into one without the old points. It runs for the partitions around recalibrated or removed
  frames (the update's ``stale`` frames, whose old points go) and for a build from scratch.

The task returns a small manifest (:class:`PartitionManifest`); the driver (:mod:`skylake.objects.build`)
commits every task's files in one log entry.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from hats.pixel_math import HealpixPixel
from hats.pixel_math.healpix_shim import order2nside
from hats.pixel_math.spatial_index import healpix_to_spatial_index, spatial_index_to_healpix

from skylake.calib.model import KRON, calibrated_flux_mags, calibrated_mag
from skylake.lake import Lake, hats_meta
from skylake.lake.parquet import parquet_bytes, value_set
from skylake.lake.staging import StagingArea
from skylake.lake.tables import DETREND, LIGHTCURVES, MATCHES, OBJECTS, SOURCES
from skylake.objects.arrays import concat_ranges, positions, unique
from skylake.objects.associate import associate, margin_pixels, mean_positions, ref_object_ids
from skylake.objects.files import (
    POINTS_ENCODING,
    POINTS_ROW_GROUP,
    ROW_GROUP,
    files_to_merge,
    partition_files,
    ranges,
    ranges_since,
    read_files,
    read_ranges,
    row_counts,
    rows_within,
    sort_points,
    within,
)
from skylake.objects.stats import by_group_then
from skylake.objects.summary import light_curve_order, merge, needs_refresh, summarise
from skylake.runtime import release_memory
from skylake.schema import table_schema
from skylake.sphere import unit_vectors, vector_to_radec

__all__ = [
    "DETECTION_COLUMNS",
    "UpdateSpec",
    "PointsManifest",
    "PartitionManifest",
    "scan_pixels",
    "detection_columns",
    "read_detections",
    "View",
    "partitions_holding",
    "build_partitions",
    "Stager",
    "build_partition",
]


DETECTION_COLUMNS = [
    "source_id",
    "frame_id",
    "ra",
    "dec",
    "x",
    "y",
    "_healpix_29",
    "mjd",
    "inst_mag",
    "inst_mag_err",
    "flags",
]


@dataclass(frozen=True, eq=False)
class UpdateSpec:
    """The settings every partition task of one objects update shares (sent to the workers once).

    Attributes
    ----------
    url : str
        The lake (its path or URL).
    area : skylake.lake.staging.StagingArea
        The update's batch's staging area, where tasks stage their files.
    refcat : str
        The reference catalogue whose matches give reference ids and calibrated magnitudes ("" for none).
    radius : float
        The association radius [arcsec].
    order : int
        The lake's partition order (of new partitions).
    m_order : int
        The margin order (:func:`~skylake.objects.associate.margin_order`).
    partitions : list of tuple of int
        The objects' partitions, (order, pixel) each.
    point_partitions : list of tuple of int
        The light curves' partitions, (order, pixel) each.
    rebuild : bool
        A build from scratch (no published objects or points are read).
    frames : pandas.DataFrame
        The changed frames with their calibration (:func:`read_detections`).
    stale : numpy.ndarray
        Frames whose old points go (recalibrated or removed; int64).
    exact : set or None
        The partitions, (order, pixel), near the stale frames' points, which recompute exactly (None: all).
    variable_fap : float
        Objects whose false-alarm probability is below this are ``variable`` (the table's setting).
    """

    url: str
    area: StagingArea
    refcat: str
    radius: float
    order: int
    m_order: int
    partitions: list
    point_partitions: list
    rebuild: bool
    frames: pd.DataFrame
    stale: np.ndarray
    exact: set | None
    variable_fap: float = 1e-3


@dataclass(frozen=True, eq=False)
class PointsManifest:
    """The light-curve file a partition task staged, and what it does to the partition's files.

    Attributes
    ----------
    path : str or None
        The staged file, relative to the LAKE/lightcurves catalog
        (``dataset/Norder=k/Dir=d/Npix=n/<batch>.parquet``); None when the partition has no point left.
    rows : int
        The staged file's rows (points).
    removed : list of tuple of (str, int)
        The partition's light-curve files the staged file replaces: (path relative to the catalog, rows) each.
    hist_old : tuple of numpy.ndarray
        The skymap histogram of the points removed (``removed``'s): pixels at the skymap's order (NESTED,
        int64) and their counts.
    hist_new : tuple of numpy.ndarray
        The skymap histogram of the points staged, likewise.
    files : int
        The partition's light-curve files after the commit (0: the partition goes).
    """

    path: str | None
    rows: int
    removed: list[tuple[str, int]]
    hist_old: tuple[np.ndarray, np.ndarray]
    hist_new: tuple[np.ndarray, np.ndarray]
    files: int


@dataclass(frozen=True, eq=False)
class PartitionManifest:
    """What one partition task staged and found (:func:`build_partition`), for the driver's commit.

    Small, sent from the worker to the driver: ids and counts, not rows.

    Attributes
    ----------
    key : tuple of int
        The objects partition: (order, pixel).
    dirty : bool
        Its objects rows changed (some written or gone): the commit replaces its objects files.
    exact : bool
        Its statistics were computed from whole light curves (an exact pass), not merged.
    refreshed : int
        Objects of a merge whose statistics were recomputed from their whole light curves.
    path : str or None
        The staged objects file, relative to the LAKE/objects catalog
        (``dataset/Norder=k/Dir=d/Npix=n/<batch>.parquet``); None when nothing is written (a dirty
        partition without one goes).
    rows : int
        The partition's objects rows after the update (the staged file's).
    removed : list of tuple of (str, int)
        The partition's objects files the staged file replaces: (path relative to the catalog, rows) each.
    hist_old : tuple of numpy.ndarray
        The skymap histogram of the objects rows removed (``removed``'s): pixels at the skymap's order
        (NESTED, int64) and their counts.
    hist_new : tuple of numpy.ndarray
        The skymap histogram of the partition's objects rows after the update, likewise.
    dropped : int
        Old points of the update's stale frames found in the partition's light curves (an exact pass's).
    objects_new : int
        Objects written that were not stored before.
    detections : int
        The update's detections inside the partition (its band's are other partitions').
    objects_read : int
        Objects rows read: the partition's and its neighbours' band's.
    points_read : int
        Light-curve points read: an exact pass's, or a merge's refreshed objects'.
    point_files_read : int
        Light-curve files read for them.
    homes : list of tuple of int
        The partitions, (order, pixel) each, owning objects the task computed from its band but does not own:
        each must be a task of the update too.
    written : tuple of numpy.ndarray
        The objects written: their ``object_id`` and ``_healpix_29`` (int64 each).
    leaving : numpy.ndarray
        Ids of the partition's stored objects whose position moved into another partition (int64, sorted).
    gone : numpy.ndarray
        Ids of the partition's stored objects it no longer holds: moved, merged or left without a point
        (int64, sorted).
    frame_pixels : pandas.DataFrame
        The update's detections in the partition per changed frame and pixel at the lake's order (where
        its points are filed): frame_id, pixel and n.
    points : PointsManifest
        The partition's staged light-curve file.
    """

    key: tuple[int, int]
    dirty: bool
    exact: bool
    refreshed: int
    path: str | None
    rows: int
    removed: list[tuple[str, int]]
    hist_old: tuple[np.ndarray, np.ndarray]
    hist_new: tuple[np.ndarray, np.ndarray]
    dropped: int
    objects_new: int
    detections: int
    objects_read: int
    points_read: int
    point_files_read: int
    homes: list[tuple[int, int]]
    written: tuple[np.ndarray, np.ndarray]
    leaving: np.ndarray
    gone: np.ndarray
    frame_pixels: pd.DataFrame
    points: PointsManifest


def _open(url: str) -> Lake:
    lake = Lake.open(url, catch_up=False)  # the driver holds the writer lock: read exactly what is on disk
    lake.auto_catch_up = False
    return lake


# -- the update's detections ----------------------------------------------------------------------------
def _sources_dataset(lake: Lake, files: list[str]):
    import pyarrow.dataset as pads

    return pads.dataset(
        [lake.path(f) for f in files], format="parquet", schema=table_schema(SOURCES), filesystem=lake.store.arrow_fs
    )


def scan_pixels(
    url: str, files: list[str], frame_ids: np.ndarray, m_order: int, columns: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[pa.Table]]:
    """Pixels at ``m_order`` holding detections of ``frame_ids`` in ``files`` (where the update's work lies).

    Parameters
    ----------
    url : str
        The lake (its path or URL).
    files : list of str
        Lake-relative sources files to scan.
    frame_ids : numpy.ndarray
        The frames whose detections are looked for.
    m_order : int
        The order of the pixels (the margin order).
    columns : list of str, optional
        The columns of the detections to return (:func:`detection_columns`); default: none.

    Returns
    -------
    pixels : numpy.ndarray
        The pixels (NESTED, int64), sorted and unique.
    counts : numpy.ndarray
        The detections in each.
    detections : list of pyarrow.Table
        Each file's detections of ``frame_ids`` (``columns``, with ``_healpix_29``; empty without ``columns``).
    """
    read = list(dict.fromkeys([*(columns or []), "_healpix_29", "frame_id"]))
    per_file = _read_sources(_open(url), files, frame_ids, read, None)
    h29 = np.concatenate([t.column("_healpix_29").to_numpy() for t in per_file] + [np.empty(0, np.int64)])
    pixels, counts = unique(spatial_index_to_healpix(h29, target_order=m_order), return_counts=True)
    return pixels, counts, per_file if columns is not None else []


def detection_columns(frames: pd.DataFrame) -> list[str]:
    """The sources columns :func:`read_detections` reads for ``frames``.

    :data:`DETECTION_COLUMNS` (less the chip positions when no frame has an ensemble correction, which
    alone needs them), and the fluxes of the apertures frames are calibrated in.

    Parameters
    ----------
    frames : pandas.DataFrame
        The frames and their calibration (as :func:`read_detections` takes them).

    Returns
    -------
    list of str
        The columns.
    """
    cal = frames[frames["calib_key"].notna()] if "calib_key" in frames else frames.iloc[0:0]
    apertures = sorted(set(cal["flux"].dropna()) - {KRON}) if "flux" in cal else []
    ensemble = "zp_offset" in frames and frames["zp_offset"].notna().any()
    columns = DETECTION_COLUMNS if ensemble else [c for c in DETECTION_COLUMNS if c not in ("x", "y")]
    return columns + [c for f in apertures for c in (f, f"{f}_err")]


def read_detections(
    lake: Lake, files: list[str], frames: pd.DataFrame, refcat: str, keep=None, given: dict | None = None
) -> pa.Table:
    """Sources of ``frames`` in the sources ``files``, with their light-curve magnitudes and reference match.

    ``mag``: the match's calibrated mag in the frame's calibration, else ``inst_mag + zp`` (colour 0)
    where the frame has an ok zeropoint, else NaN. ``ref_object``: the reference star's object id (0
    when unmatched).

    Parameters
    ----------
    lake : Lake
        The lake.
    files : list of str
        Lake-relative sources files holding the detections.
    frames : pandas.DataFrame
        The frames: frame_id, exptime, night and their calibration (calib_key, zp, zp_err, flux, apcor;
        NaN when uncalibrated).
    refcat : str
        The reference catalogue whose matches give reference ids and calibrated magnitudes ("" for none).
    keep : callable, optional
        ``keep(h29)``: a mask (bool) of the ``_healpix_29`` values to keep, limiting the sources to a region.
    given : dict, optional
        ``file: table``: detections of some of ``files`` already read (their rows in a region, as the scan
        finds them: :func:`detection_columns`), used instead of reading those files.

    Returns
    -------
    pyarrow.Table
        One row per detection, in the files' order: source_id, frame_id, ra, dec [deg], _healpix_29, mjd,
        inst_mag, inst_mag_err, flags, ref_id (null when unmatched), ref_object, mag_zp, mag_epd, mag_tfa,
        mag and mag_err [mag] (magnitudes float64), aperture (the flux of mag) and mag_err_phot.
    """
    cal = frames[frames["calib_key"].notna()] if "calib_key" in frames else frames.iloc[0:0]
    apertures = sorted(set(cal["flux"].dropna()) - {KRON}) if "flux" in cal else []
    columns = detection_columns(frames)
    det = _read_sources(lake, files, frames["frame_id"].to_numpy(np.int64), columns, keep, given)
    det = pa.concat_tables(det) if det else pa.schema([table_schema(SOURCES).field(c) for c in columns]).empty_table()

    def col(name: str) -> np.ndarray:
        """A column of the detections.

        Parameters
        ----------
        name : str
            The column.

        Returns
        -------
        numpy.ndarray
            Its values.
        """
        return det.column(name).to_numpy()

    def of_frame(table: pd.DataFrame, name: str, at: np.ndarray | None = None) -> np.ndarray:
        """Each detection's frame's ``name`` in ``table`` (one row per frame; NaN for a frame not in it).

        Parameters
        ----------
        table : pandas.DataFrame
            Rows of frames, with ``frame_id``.
        name : str
            The column.
        at : numpy.ndarray, optional
            Each detection's frame's row in ``table`` (-1 for none), when known.

        Returns
        -------
        numpy.ndarray
            A value per detection (float64).
        """
        if not len(table):  # (an uncalibrated lake's: no lookup of every detection)
            return np.full(len(fid), np.nan)
        at = _frame_rows(table["frame_id"].to_numpy(np.int64), fid) if at is None else at
        return np.r_[table[name].to_numpy(np.float64, na_value=np.nan), np.nan][at]  # -1: the NaN appended

    fid = col("frame_id")
    at_cal = _frame_rows(cal["frame_id"].to_numpy(np.int64), fid)
    inst_mag = np.asarray(det.column("inst_mag").to_numpy(zero_copy_only=False), np.float64)
    inst_err = np.asarray(det.column("inst_mag_err").to_numpy(zero_copy_only=False), np.float64)
    if apertures:  # frames calibrated in an aperture: their instrumental magnitudes in it (calib.model)
        at = at_cal
        flux = np.where(at >= 0, cal["flux"].to_numpy(object)[np.maximum(at, 0)], None)
        exptime, apcor = of_frame(frames, "exptime"), of_frame(cal, "apcor", at_cal)
        for f in apertures:
            rows = flux == f
            fluxes = {c: det.column(c).to_numpy(zero_copy_only=False)[rows] for c in (f, f"{f}_err")}
            inst_mag[rows], inst_err[rows] = calibrated_flux_mags(fluxes, exptime[rows], f, apcor[rows])
    ref_id, ref_ok = np.zeros(det.num_rows, np.int64), np.zeros(det.num_rows, bool)
    ref_object = np.zeros(det.num_rows, dtype=np.int64)
    mag = calibrated_mag(inst_mag, of_frame(cal, "zp", at_cal))  # colour unknown here: 0
    err = np.hypot(inst_err, of_frame(cal, "zp_err", at_cal))
    mag0 = mag.copy()
    present = cal[np.bincount(at_cal[at_cal >= 0], minlength=len(cal)) > 0]  # calibrated frames with detections
    if refcat and len(present):  # matches of the frames here, from their nights only
        here = value_set(present["frame_id"])
        flt = (pc.field("refcat") == refcat) & pc.field("frame_id").isin(here)
        cols = ["source_id", "frame_id", "calib_key", "ref_id", "mag", "mag_err"]
        matches = lake.read_night_table(
            MATCHES, columns=cols, filter=flt, nights=sorted(set(present["night"]))
        ).to_pandas()
        matches = matches.merge(present[["frame_id", "calib_key"]], on=["frame_id", "calib_key"])
        at = pd.Index(col("source_id")).get_indexer(matches["source_id"])
        matches = matches[at >= 0]
        at = at[at >= 0]
        ref_id[at], ref_ok[at] = matches["ref_id"].to_numpy(np.int64), True
        ref_object[at] = ref_object_ids(refcat, matches["ref_id"].to_numpy(np.int64))
        m = matches["mag"].to_numpy(np.float64, na_value=np.nan)
        mag[at] = np.where(np.isfinite(m), m, mag[at])
        err[at] = np.where(np.isfinite(m), matches["mag_err"].to_numpy(np.float64, na_value=np.nan), err[at])
    mag_zp = mag.copy()
    mag, err, mag_epd, mag_tfa, aperture, err_phot = _ensemble(lake, det, frames, mag, mag0, err, inst_err)
    err = np.where(np.isfinite(mag), err, np.nan)  # no magnitude, no error
    # the columns as read, in chunks (a partition's rows are taken chunk by chunk, :func:`_rows_of`): joining
    # a group's columns whole cost ~0.7 s of fresh memory at 10^7 rows, its partitions' pieces are joined
    out = {c: det.column(c) for c in ["source_id", "frame_id", "ra", "dec", "_healpix_29", "mjd"]}
    out.update(inst_mag=inst_mag, inst_mag_err=inst_err, flags=det.column("flags"))
    out.update(ref_id=pa.array(ref_id, pa.int64(), mask=~ref_ok), ref_object=ref_object, mag_zp=mag_zp)
    out.update(mag_epd=mag_epd, mag_tfa=mag_tfa, mag=mag, mag_err=err, aperture=aperture, mag_err_phot=err_phot)
    return pa.table(out)


#: Frame ids spanning less than this are looked up in a table of the span (one lookup a row; ~1 ms to make at
#: this size); a wider span is searched.
_ID_TABLE = 1 << 20


def _frame_rows(ids: np.ndarray, fid: np.ndarray) -> np.ndarray:
    """Each row's frame ``fid`` as an index into ``ids`` (unique frame ids), -1 where it is not one of them:
    ``pd.Index(ids).get_indexer(fid)``, by a lookup table of the ids' span when it is narrow (a hash lookup
    of each detection cost ~25 ms per 10^6)."""
    if not ids.size:
        return np.full(len(fid), -1, np.int64)
    first, last = int(ids.min()), int(ids.max())
    if last - first >= _ID_TABLE or len(unique(ids)) != ids.size:
        return pd.Index(ids).get_indexer(fid)  # (pandas refuses repeated ids)
    table = np.full(last - first + 1, -1, np.int64)
    table[ids - first] = np.arange(ids.size)
    inside = (fid >= first) & (fid <= last)
    return np.where(inside, table[np.where(inside, fid - first, 0)], -1)


def _of_frames(fid: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mask of the rows whose frame id ``fid`` is one of ``ids`` (sorted, unique)."""
    if not ids.size:
        return np.zeros(len(fid), bool)
    if ids[-1] - ids[0] < _ID_TABLE:
        member = np.zeros(int(ids[-1] - ids[0]) + 1, bool)
        member[ids - ids[0]] = True
        inside = (fid >= ids[0]) & (fid <= ids[-1])
        return inside & member[np.where(inside, fid - ids[0], 0)]
    return ids[np.minimum(np.searchsorted(ids, fid), ids.size - 1)] == fid


def _read_sources(
    lake: Lake, files: list[str], frame_ids: np.ndarray, columns: list[str], keep, given: dict | None = None
) -> list[pa.Table]:
    """``columns`` of the sources of ``frame_ids`` in each of ``files`` (``keep``: a mask of the
    ``_healpix_29`` values to keep; ``given``: rows of some files already read, kept from instead), batch
    by batch: what is held is the rows kept, not the files' (a neighbour's file is read whole unless
    given). Rows kept in runs (a region of files sorted by ``_healpix_29``) are slices, not copies."""
    schema = table_schema(SOURCES)
    schema = pa.schema([schema.field(c) for c in columns])
    ids = np.unique(np.asarray(frame_ids, np.int64))
    given = given or {}
    read = [f for f in files if f not in given]
    dataset = _sources_dataset(lake, read) if read and ids.size else None
    fragments = dict(zip(read, dataset.get_fragments())) if dataset is not None else {}
    out = []
    for f in files if ids.size else []:
        batches = []
        if f in given:
            source = given[f].select(columns).to_batches()
        else:
            source = fragments[f].to_batches(schema=dataset.schema, columns=columns)
        for batch in source:
            rows = _of_frames(batch.column("frame_id").to_numpy(), ids)
            if keep is not None:
                rows &= keep(batch.column("_healpix_29").to_numpy())
            edges = np.flatnonzero(np.diff(np.r_[0, rows.view(np.int8), 0]))  # starts and ends of the runs kept
            if len(edges) <= 2 * _MAX_SLICES:
                batches += [batch.slice(a, b - a) for a, b in zip(edges[::2].tolist(), edges[1::2].tolist())]
            else:
                batches.append(batch.filter(pa.array(rows)))
        out.append(pa.Table.from_batches(batches, schema=schema))
    return out


#: A batch's rows kept in at most this many runs are sliced out of it (no copy), else filtered.
_MAX_SLICES = 64


def _ensemble(
    lake: Lake,
    det: pa.Table,
    frames: pd.DataFrame,
    mag: np.ndarray,
    mag0: np.ndarray,
    err: np.ndarray,
    inst_err: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pa.Array, np.ndarray]:
    """The magnitudes and errors with the frames' ensemble corrections (LAKE/ensemble; ``frames`` carries each
    frame's terms, skylake.objects.build.latest_calibrations) and the ensemble stage's per-point rows
    (LAKE/detrend: each star's flux of least modelled noise, ``dmag_ap``, the noise model's ``mag_err``,
    ``mag_epd``/``mag_tfa``; NaN for points that were not detrended); also each point's flux (``aperture``,
    null where the ensemble has no row) and photon error in it.

    With an ensemble the colour term is the field's night (``ens_color_term``, the median of its frames'),
    not each frame's: a frame's own fitted colour term is noisy, and would scatter a coloured star's points
    by more than an ensemble's precision. A reference star's colour comes from its match (``mag`` of the
    match minus the colour-0 ``mag0``, over the frame's colour term); other points have colour 0."""
    from skylake.ensemble.stage import point_corrections

    none = np.full(det.num_rows, np.nan)
    no_aperture = pa.nulls(det.num_rows, pa.string())
    if "zp_offset" not in frames or not frames["zp_offset"].notna().any() or not det.num_rows:
        return mag, err, none, none, no_aperture, inst_err
    rows = frames[frames["zp_offset"].notna()].assign(status="ok")
    fid = det.column("frame_id").to_numpy()
    at = pd.Index(frames["frame_id"]).get_indexer(fid)

    def geo(name: str) -> np.ndarray:
        """Each detection's frame's ``name`` (NaN for a frame not in ``frames``).

        Parameters
        ----------
        name : str
            A column of ``frames``.

        Returns
        -------
        numpy.ndarray
            A value per detection (float64).
        """
        return np.r_[frames[name].to_numpy(np.float64, na_value=np.nan), np.nan][at]  # -1: the NaN appended

    corr, corr_err = point_corrections(
        rows, fid, det.column("x").to_numpy(), det.column("y").to_numpy(), geo("nx"), geo("ny")
    )
    has = np.isfinite(corr) & np.isfinite(mag)
    ct = geo("color_term")
    ct_night = np.nan_to_num(geo("ens_color_term"))
    with np.errstate(all="ignore"):
        colour = np.where(np.isfinite(ct) & (ct != 0), (mag - mag0) / ct, 0.0)
    colour = np.where(np.isfinite(colour), colour, 0.0)
    mag = np.where(has, mag0 + ct_night * colour + np.nan_to_num(corr), mag)
    err = np.where(has, np.hypot(inst_err, np.nan_to_num(corr_err)), err)
    ids = value_set(rows["frame_id"])
    cols = ["source_id", "flux", "dmag_ap", "dmag_local", "mag_err", "mag_err_phot", "epd", "tfa", "detrended"]
    points = lake.read_night_table(
        DETREND, columns=cols, filter=pc.field("frame_id").isin(ids), nights=sorted(set(rows["night"]))
    ).to_pandas()
    if not len(points):
        return mag, err, none, none, no_aperture, inst_err
    at = pd.Index(points["source_id"]).get_indexer(det.column("source_id").to_numpy())
    got = (at >= 0) & has

    def of_point(name: str) -> np.ndarray:
        """Each detection's ``name`` in its ensemble row (NaN where it has none).

        Parameters
        ----------
        name : str
            A column of the rows.

        Returns
        -------
        numpy.ndarray
            A value per detection (float64).
        """
        return np.where(got, points[name].to_numpy(float)[np.maximum(at, 0)], np.nan)

    mag = np.where(got, mag + of_point("dmag_ap") + of_point("dmag_local"), mag)
    err = np.where(got, np.hypot(of_point("mag_err"), np.nan_to_num(corr_err)), err)
    err_phot = np.where(got, of_point("mag_err_phot"), inst_err)
    aperture = pa.array(np.where(got, points["flux"].to_numpy(object)[np.maximum(at, 0)], None), pa.string())
    detrended = got & points["detrended"].to_numpy(bool)[np.maximum(at, 0)]
    epd = np.where(detrended, of_point("epd"), np.nan)
    tfa = np.where(detrended, of_point("tfa"), np.nan)
    return mag, err, mag - epd, mag - epd - tfa, aperture, err_phot


# -- the view -------------------------------------------------------------------------------------------
class View:
    """A partition (``order``, ``pixel``) and the bands around it at the margin order ``m_order``.

    ``band`` (one margin pixel wide: the objects an association needs) and ``wide`` (twice as wide: every
    point of an object in the band, for an exact recomputation).

    Parameters
    ----------
    order : int
        The partition's order.
    pixel : int
        The partition's pixel at that order (NESTED).
    m_order : int
        The margin order.
    """

    def __init__(self, order: int, pixel: int, m_order: int):
        self.order, self.pixel = order, pixel
        band = margin_pixels(order, pixel, m_order - order)
        self.band_pixels, self.m_order = band, m_order
        self.band = ranges(band, m_order)
        self.core = ranges([pixel], order)
        w_order = max(m_order - 1, order + 1)
        self.wide_pixels, self.w_order = margin_pixels(order, pixel, w_order - order), w_order
        self.wide = ranges(self.wide_pixels, w_order)
        lo, hi = np.concatenate((self.core[0], self.band[0])), np.concatenate((self.core[1], self.band[1]))
        by = np.argsort(lo)
        self.view = lo[by], hi[by]

    def in_core(self, h29: np.ndarray) -> np.ndarray:
        """Which positions lie in the partition itself.

        Parameters
        ----------
        h29 : numpy.ndarray
            ``_healpix_29`` values.

        Returns
        -------
        numpy.ndarray
            Mask (bool) of the values inside the partition.
        """
        return spatial_index_to_healpix(np.asarray(h29, np.int64), target_order=self.order) == self.pixel

    def in_view(self, h29: np.ndarray) -> np.ndarray:
        """Which positions lie in the view: the partition or its band.

        Parameters
        ----------
        h29 : numpy.ndarray
            ``_healpix_29`` values.

        Returns
        -------
        numpy.ndarray
            Mask (bool) of the values inside the view.
        """
        return within(np.asarray(h29, np.int64), *self.view)

    def neighbours(self, pixels: np.ndarray, at_order: int, partitions: list[HealpixPixel], lake_order: int) -> list:
        """The existing partitions other than this one holding any of ``pixels`` (at ``at_order``).

        Parameters
        ----------
        pixels : numpy.ndarray
            HEALPix pixels (NESTED).
        at_order : int
            Their order.
        partitions : list of hats.pixel_math.HealpixPixel
            The table's partitions.
        lake_order : int
            The lake's partition order (of new partitions).

        Returns
        -------
        list of hats.pixel_math.HealpixPixel
            The partitions, sorted.
        """
        return partitions_holding(pixels, at_order, partitions, lake_order, skip=HealpixPixel(self.order, self.pixel))


def partitions_holding(
    pixels: np.ndarray, at_order: int, partitions: list[HealpixPixel], lake_order: int, skip: HealpixPixel | None = None
) -> list[HealpixPixel]:
    """The existing ``partitions`` (but ``skip``) holding any of ``pixels`` (at ``at_order``), sorted.

    Parameters
    ----------
    pixels : numpy.ndarray
        HEALPix pixels (NESTED).
    at_order : int
        Their order.
    partitions : list of hats.pixel_math.HealpixPixel
        The table's partitions.
    lake_order : int
        The lake's partition order (of new partitions).
    skip : hats.pixel_math.HealpixPixel, optional
        A partition to leave out.

    Returns
    -------
    list of hats.pixel_math.HealpixPixel
        The partitions, sorted; empty when ``pixels`` or ``partitions`` is.
    """
    if not len(pixels) or not partitions:
        return []
    orders, pix = hats_meta.assign_pixels(healpix_to_spatial_index(at_order, np.unique(pixels)), partitions, lake_order)
    known = set(partitions)
    return [
        HealpixPixel(o, p)
        for o, p in sorted(set(zip(orders.tolist(), pix.tolist())))
        if HealpixPixel(o, p) != skip and HealpixPixel(o, p) in known
    ]


def _sparse_hist(h29: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The skymap's pixels holding ``h29`` values and their counts (sorted values: counted by runs)."""
    pixels = spatial_index_to_healpix(np.asarray(h29, np.int64), target_order=hats_meta.SKYMAP_ORDER)
    if len(pixels) and (pixels[1:] >= pixels[:-1]).all():
        first = np.flatnonzero(np.r_[True, pixels[1:] != pixels[:-1]])
        return pixels[first], np.diff(np.r_[first, len(pixels)])
    return np.unique(pixels, return_counts=True)


def _concat(tables: list[pa.Table], table: str) -> pa.Table:
    return pa.concat_tables(tables) if tables else table_schema(table).empty_table()


def _points_of(det: pa.Table, ids: np.ndarray) -> pa.Table:
    """The detections ``det`` as light-curve points of the objects ``ids``, as LAKE/lightcurves stores them
    (float32 magnitudes, NaN null); each keeps its match's ``ref_id`` where that star is its object."""
    ref = det.column("ref_id")
    ref_ok = ref.is_valid().to_numpy(zero_copy_only=False) & (det.column("ref_object").to_numpy() == ids)
    given = {"object_id": ids, "ref_id": pa.array(ref.fill_null(0).to_numpy(), pa.int64(), mask=~ref_ok)}
    schema = table_schema(LIGHTCURVES)
    arrays = []
    for f in schema:
        values = given[f.name] if f.name in given else det.column(f.name)
        if pa.types.is_floating(f.type):  # as from pandas: NaN or null, stored null
            with np.errstate(over="ignore"):
                values = np.asarray(values.to_numpy(zero_copy_only=False)).astype(f.type.to_pandas_dtype(), copy=False)
            values = pa.array(values, f.type, from_pandas=True)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()  # (a take from a chunked column concatenates it first)
        arrays.append(values if isinstance(values, pa.Array) else pa.array(values, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _isin(table: pa.Table, column: str, values: np.ndarray) -> pa.Table:
    """The rows of ``table`` whose ``column`` is one of ``values``."""
    return table.filter(pa.array(np.isin(table.column(column).to_numpy(), values)))


def _points_around(
    lake: Lake,
    pixels: np.ndarray,
    at_order: int,
    point_partitions,
    lake_order: int,
    skip: HealpixPixel | None = None,
    since: np.ndarray | None = None,
) -> tuple[list[pa.Table], int]:
    """The LAKE/lightcurves points filed in ``pixels`` (at ``at_order``): from every light-curve partition
    holding any of them (but ``skip``), only the row groups that reach them (and, with ``since``, an MJD
    per pixel, only those holding points that recent). Returns the tables and how many files were read."""
    if since is None:
        (lo, hi), first = ranges(pixels, at_order), None
    else:
        lo, hi, first = ranges_since(pixels, since, at_order)
    if not len(lo):
        return [], 0
    files = [
        f
        for part in partitions_holding(pixels, at_order, point_partitions, lake_order, skip=skip)
        for f in partition_files(lake, LIGHTCURVES, part)
    ]
    return [
        read_ranges(lake.path(f), lo, hi, filesystem=lake.store.arrow_fs, table=LIGHTCURVES, since=first) for f in files
    ], len(files)


def _history(
    lake: Lake, view: View, own_points: list[str], point_partitions, lake_order: int
) -> tuple[pa.Table, pa.Table, int]:
    """The light-curve points of the partition (its files whole) and of the wide band around it (the
    light-curve partitions there, only the row groups that reach it), and how many files were read."""
    own = _concat(read_files(lake, LIGHTCURVES, own_points), LIGHTCURVES)
    band, n = _points_around(
        lake, view.wide_pixels, view.w_order, point_partitions, lake_order, skip=HealpixPixel(view.order, view.pixel)
    )
    return own, _concat(band, LIGHTCURVES), n + len(own_points)


def _whole_light_curves(
    lake: Lake, rows: pa.Table, m_order: int, point_partitions, lake_order: int
) -> tuple[pa.Table, int]:
    """Every stored point of the objects ``rows``: their points are filed under their positions when
    added, which moved by less than the association radius since, so the margin-order pixels around
    each object (its own and the eight neighbours, each at least 4 radii wide) hold them all."""
    import healpy as hp

    pix = spatial_index_to_healpix(rows.column("_healpix_29").to_numpy(), target_order=m_order)
    nb = hp.get_all_neighbours(order2nside(m_order), pix, nest=True).T  # (objects, 8)
    block = np.column_stack((pix, nb))
    first = np.repeat(rows.column("first_mjd").to_numpy(), block.shape[1])  # no point of it is older
    keep = block.ravel() >= 0
    tables, n = _points_around(lake, block.ravel()[keep], m_order, point_partitions, lake_order, since=first[keep])
    return _isin(_concat(tables, LIGHTCURVES), "object_id", rows.column("object_id").to_numpy()), n


def _positions(rows: pa.Table) -> pd.DataFrame:
    return pd.DataFrame({c: rows.column(c).to_numpy() for c in ("object_id", "ra", "dec")})


def _recentre(pos: pd.DataFrame, hist: pa.Table, ids: np.ndarray) -> pd.DataFrame:
    """``pos`` with the objects ``ids`` moved to the mean of their points in ``hist`` (dropped when none
    is left): the positions after a recalibrated or removed frame's points went."""
    if not len(ids):
        return pos
    keep = _isin(hist, "object_id", ids)
    uniq, centre = mean_positions(
        keep.column("object_id").to_numpy(), unit_vectors(keep.column("ra").to_numpy(), keep.column("dec").to_numpy())
    )
    ra, dec = vector_to_radec(centre) if len(uniq) else (np.empty(0), np.empty(0))
    moved = pd.DataFrame({"object_id": uniq, "ra": ra, "dec": dec})
    return pd.concat([pos[~pos["object_id"].isin(ids)], moved], ignore_index=True)


def _union(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of ranges [lo, hi) as sorted, disjoint ranges (what :func:`within` takes)."""
    by = np.argsort(lo, kind="stable")
    lo, hi = np.asarray(lo, np.int64)[by], np.asarray(hi, np.int64)[by]
    reach = np.maximum.accumulate(hi)
    start = np.r_[True, lo[1:] > reach[:-1]]  # a range that does not touch those before it opens a run
    ends = np.r_[np.flatnonzero(start)[1:] - 1, len(lo) - 1]
    return lo[start], reach[ends]


def build_partitions(
    spec: UpdateSpec, keys: list[tuple[int, int]], files: list[str], strips: list[dict] = ()
) -> list[PartitionManifest]:
    """Bring several objects partitions up to date in one task, reading their detections once.

    The objects' partitions are often finer than the sources' (order 5 in a lake whose sources are at order
    3): every objects partition inside one sources partition reads the same files, and each alone would
    read them whole to keep its view (a sixteenth of them, and its band). Here the detections of all the
    views are read once, then each partition is built (:func:`build_partition`) from its view's rows: the
    same rows it would have read itself, so the same result.

    Parameters
    ----------
    spec : UpdateSpec
        The update's settings shared by every task.
    keys : list of tuple of int
        The partitions: (order, pixel) each.
    files : list of str
        The sources files holding the update's detections in their views (the union of theirs).
    strips : list of dict, optional
        ``file: table``: the detections of some of ``files`` in their sources partitions' borders (found by
        the scan: all these partitions need of them), read instead of those files.

    Returns
    -------
    list of PartitionManifest
        Each partition's manifest (:func:`build_partition`), in the order of ``keys``.
    """
    given = {f: t for strip in strips for f, t in strip.items() if f in set(files)}
    if len(keys) == 1:
        return [build_partition(spec, keys[0], files, given=given)]
    views = [View(order, pixel, spec.m_order) for order, pixel in keys]
    union = _union(np.concatenate([v.view[0] for v in views]), np.concatenate([v.view[1] for v in views]))
    lake = _open(spec.url)
    det = read_detections(lake, files, spec.frames, spec.refcat, lambda h29: within(h29, *union), given)
    h29 = det.column("_healpix_29").to_numpy()
    with Stager(lake.store) as stager:  # one writer for the task: its partitions' files flushed while it goes on
        out = [
            build_partition(spec, key, files, det=_rows_of(det, rows_within(h29, *view.view)), view=view, stager=stager)
            for key, view in zip(keys, views)
        ]
    release_memory()  # once a task (~4 ms a call): a worker's RSS is what its task holds, not what earlier ones freed
    return out


class Stager:
    """Writes a task's staged Parquet files from a thread, in the order given, while the task goes on.

    Encoding a file (pyarrow releases the GIL) and flushing it to the disk (``fsync``: waiting on the
    device, ~0.3-0.7 s over the 10^6 benchmark lake's files) overlap the task's next partitions instead
    of stalling them. Leaving the ``with`` block waits for every file: a task returns (and the driver
    commits) only files that are on the disk; a write's error is raised there.

    Parameters
    ----------
    store : skylake.lake.storage.Store
        The lake's store (its ``write_bytes``).
    """

    def __init__(self, store):
        from concurrent.futures import ThreadPoolExecutor

        self.store = store
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="skylake-stage")
        self._pending = []

    def write(self, rel: str, table: pa.Table, row_group_size: int, **encoding) -> None:
        """Stage ``table`` as the Parquet file ``rel`` (lake-relative), in the background.

        Parameters
        ----------
        rel : str
            The file's lake-relative path (in the staging area).
        table : pyarrow.Table
            Its rows.
        row_group_size : int
            Rows per row group.
        **encoding
            ``codec`` and ``byte_stream_split`` of :func:`~skylake.lake.parquet.parquet_bytes` (default: the
            lake's zstd).
        """
        self._pending.append(self._pool.submit(self._write, rel, table, row_group_size, encoding))

    def _write(self, rel: str, table: pa.Table, row_group_size: int, encoding: dict) -> None:
        self.store.write_bytes(rel, parquet_bytes(table, row_group_size=row_group_size, **encoding))

    def __enter__(self) -> Stager:
        return self

    def __exit__(self, *exc) -> None:
        try:
            for future in self._pending:
                future.result()  # (after an error in the task too: no write is left running)
        finally:
            self._pool.shutdown()


#: Consecutive rows taken from a table as a slice (no copy) when at least this many.
_SLICE_ROWS = 4096


def _rows_of(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table.take(rows)`` for ascending ``rows``: long runs of consecutive rows (a partition's in each
    sorted file) as slices, the rows between them taken chunk by chunk (:func:`_take`)."""
    starts = np.flatnonzero(np.r_[True, np.diff(rows) != 1])
    ends = np.r_[starts[1:], len(rows)]
    pieces, done = [], 0
    for start, end in zip(starts.tolist(), ends.tolist()):
        if end - start >= _SLICE_ROWS:
            if start > done:
                pieces.append(_take(table, rows[done:start]))
            pieces.append(table.slice(int(rows[start]), end - start))
            done = end
    if done < len(rows) or not pieces:
        pieces.append(_take(table, rows[done:]))
    return pa.concat_tables(pieces)


def _take(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table.take(rows)`` for ascending ``rows``, from each chunk its own rows: pyarrow's take from a
    chunked column concatenates all of it first (a group's whole column, for a few rows)."""
    batches = table.to_batches()
    if len(batches) < 2:
        return table.take(rows)
    ends = np.cumsum([b.num_rows for b in batches])
    cuts = np.searchsorted(rows, ends).tolist()  # each batch's rows end there
    pieces, lo = [], 0
    for batch, end, hi in zip(batches, ends.tolist(), cuts):
        if hi > lo:
            pieces.append(batch.take(pa.array(rows[lo:hi] - (end - batch.num_rows))))
        lo = hi
    return pa.Table.from_batches(pieces, schema=table.schema) if pieces else table.slice(0, 0)


def build_partition(
    spec: UpdateSpec,
    key: tuple[int, int],
    files: list[str],
    det: pa.Table | None = None,
    view: View | None = None,
    given: dict | None = None,
    stager: Stager | None = None,
) -> PartitionManifest:
    """Bring objects partition ``key`` (order, pixel) up to date and stage its files.

    See the module docstring for the two ways.

    Parameters
    ----------
    spec : UpdateSpec
        The update's settings shared by every task.
    key : tuple of int
        The partition: (order, pixel).
    files : list of str
        The sources files holding the update's detections in this view.
    det : pyarrow.Table, optional
        The update's detections in this view, already read (:func:`read_detections`); default: read from
        ``files``.
    view : View, optional
        The partition's view at the update's margin order, already made (its margins cost ~3 ms).
    given : dict, optional
        ``file: table``: detections of some of ``files`` already read (:func:`build_partitions`' strips).
    stager : Stager, optional
        The task's writer of staged files (default: one of its own, waited for before returning).

    Returns
    -------
    PartitionManifest
        A small manifest for the driver's commit: the staged objects and light-curve files, the files they
        replace, the objects written, handed to neighbours or gone, skymap histograms and counts of what
        was read.
    """
    lake = _open(spec.url)
    if stager is None:
        with Stager(lake.store) as stager:
            out = build_partition(spec, key, files, det, view, given, stager)
        release_memory()  # a worker's RSS is what its task holds, not what earlier tasks freed
        return out
    task = _Task.of(lake, spec, key, view, stager)
    if det is None:
        det = read_detections(lake, files, spec.frames, spec.refcat, task.view.in_view, given)
    det = det.combine_chunks()  # one chunk a column: each is read as NumPy (without a copy) several times
    stored = _read_stored(task)
    ids, xyz = _associate_view(det, stored, spec)
    # as stored (float32 magnitudes): the statistics are then exactly those of LAKE/lightcurves' points
    new = _points_of(det, ids)
    touched = unique(np.concatenate((ids, stored.stale_ids)))
    rows = _exact_rows(task, stored, touched, new, xyz) if task.exact else _merged_rows(task, stored, ids, touched, new)
    return _stage_partition(task, det, stored, new, rows)


@dataclass(frozen=True, eq=False)
class _Task:
    """One partition's update: what each of :func:`build_partition`'s steps reads of it.

    Attributes
    ----------
    lake : Lake
        The lake, as on disk.
    spec : UpdateSpec
        The update's settings.
    key : tuple of int
        The partition: (order, pixel).
    here : hats.pixel_math.HealpixPixel
        The partition.
    view : View
        Its view at the margin order.
    partitions : list of hats.pixel_math.HealpixPixel
        The objects' partitions.
    point_partitions : list of hats.pixel_math.HealpixPixel
        The light curves' partitions.
    stale : numpy.ndarray
        Frames whose old points go (int64).
    exact : bool
        Whether the partition is recomputed exactly (from whole light curves), else merged.
    stager : Stager
        The task's writer of staged files.
    """

    lake: Lake
    spec: UpdateSpec
    key: tuple[int, int]
    here: HealpixPixel
    view: View
    partitions: list[HealpixPixel]
    point_partitions: list[HealpixPixel]
    stale: np.ndarray
    exact: bool
    stager: Stager

    @classmethod
    def of(cls, lake: Lake, spec: UpdateSpec, key: tuple[int, int], view: View | None, stager: Stager) -> _Task:
        """The update of partition ``key``.

        Parameters
        ----------
        lake : Lake
            The lake.
        spec : UpdateSpec
            The update's settings.
        key : tuple of int
            The partition: (order, pixel).
        view : View or None
            Its view, when already made.
        stager : Stager
            The task's writer of staged files.

        Returns
        -------
        _Task
            The partition's update.
        """
        order, pixel = key
        stale = np.asarray(spec.stale, np.int64)
        return cls(
            lake=lake,
            spec=spec,
            key=key,
            here=HealpixPixel(order, pixel),
            view=View(order, pixel, spec.m_order) if view is None else view,
            partitions=[HealpixPixel(o, p) for o, p in spec.partitions],
            point_partitions=[HealpixPixel(o, p) for o, p in spec.point_partitions],
            stale=stale,
            exact=bool(spec.rebuild or (len(stale) and (spec.exact is None or key in spec.exact))),
            stager=stager,
        )

    def owns(self, rows: pa.Table) -> np.ndarray:
        """Which objects rows this partition owns (their position's partition is this one).

        Parameters
        ----------
        rows : pyarrow.Table
            Objects rows.

        Returns
        -------
        numpy.ndarray
            Mask (bool) of the rows this partition writes.
        """
        o, p = hats_meta.assign_pixels(rows.column("_healpix_29").to_numpy(), self.partitions, self.spec.order)
        return (o == self.here.order) & (p == self.here.pixel)


@dataclass(frozen=True, eq=False)
class _Stored:
    """What a partition's update reads of the published tables before associating.

    Attributes
    ----------
    own_files : list of str
        The partition's objects files (lake-relative; none for a rebuild).
    own : pyarrow.Table
        Their rows.
    old : pyarrow.Table
        ``own`` and the band's rows of its neighbours (the objects the association sees).
    point_files : list of str
        The partition's light-curve files (lake-relative; none for a rebuild).
    history : tuple or None
        For an exact pass of a stored partition: its points, the wide band's and the files read
        (:func:`_history`); else None.
    hist : pyarrow.Table or None
        ``history``'s points less those of the stale frames (None without ``history``).
    stale_ids : numpy.ndarray
        The objects that had points of stale frames (int64, sorted).
    """

    own_files: list[str]
    own: pa.Table
    old: pa.Table
    point_files: list[str]
    history: tuple[pa.Table, pa.Table, int] | None
    hist: pa.Table | None
    stale_ids: np.ndarray


def _read_stored(task: _Task) -> _Stored:
    """Read the objects the partition's view needs and, for an exact pass, its light curves' history.

    The partition's objects rows are read whole, its neighbours' only in the band (no light curves).

    Parameters
    ----------
    task : _Task
        The partition's update.

    Returns
    -------
    _Stored
        What was read.
    """
    lake, spec, view = task.lake, task.spec, task.view
    own_files = [] if spec.rebuild else partition_files(lake, OBJECTS, task.here)
    own = _concat(read_files(lake, OBJECTS, own_files), OBJECTS)
    band = [
        read_ranges(lake.path(f), *view.band, filesystem=lake.store.arrow_fs)
        for nb in view.neighbours(view.band_pixels, view.m_order, task.partitions, spec.order)
        for f in partition_files(lake, OBJECTS, nb)
    ]
    point_files = [] if spec.rebuild else partition_files(lake, LIGHTCURVES, task.here)
    history, hist, stale_ids = None, None, np.empty(0, np.int64)
    if task.exact and not spec.rebuild:  # recalibrated or removed frames: their old points go first
        history = _history(lake, view, point_files, task.point_partitions, spec.order)
        hist = pa.concat_tables(history[:2])
        gone = np.isin(hist.column("frame_id").to_numpy(), task.stale)
        stale_ids = np.unique(hist.column("object_id").to_numpy()[gone])
        hist = hist.filter(pa.array(~gone))
    return _Stored(own_files, own, _concat([own, *band], OBJECTS), point_files, history, hist, stale_ids)


def _associate_view(det: pa.Table, stored: _Stored, spec: UpdateSpec) -> tuple[np.ndarray, np.ndarray]:
    """Associate the view's detections with the stored objects (those of stale frames' points re-centred).

    Parameters
    ----------
    det : pyarrow.Table
        The update's detections in the view (:func:`read_detections`).
    stored : _Stored
        The stored objects and history (:func:`_read_stored`).
    spec : UpdateSpec
        The update's settings (association radius, lake order).

    Returns
    -------
    ids : numpy.ndarray
        Each detection's object id (int64).
    xyz : numpy.ndarray
        The detections' unit vectors, (n, 3), reused by the statistics.
    """
    pos = _recentre(_positions(stored.old), stored.hist, stored.stale_ids)
    ra, dec = det.column("ra").to_numpy(), det.column("dec").to_numpy()
    xyz = unit_vectors(ra, dec)
    ids = associate(
        det.column("source_id").to_numpy(),
        det.column("frame_id").to_numpy(),
        ra,
        dec,
        det.column("_healpix_29").to_numpy(),
        det.column("ref_object").to_numpy(),
        pos["object_id"].to_numpy(),
        pos["ra"].to_numpy(),
        pos["dec"].to_numpy(),
        spec.radius,
        spec.order,
        xyz,
    )
    return ids, xyz


@dataclass(frozen=True, eq=False)
class _Rows:
    """The objects rows a partition's update computed, and what it read for them.

    Attributes
    ----------
    cand : pyarrow.Table
        The objects computed: the partition's and, from its band, its neighbours'.
    mine : numpy.ndarray
        Mask (bool) of the rows of ``cand`` the partition owns.
    kept : pyarrow.Table
        The partition's stored rows kept as they are (objects the update did not touch).
    by : numpy.ndarray or None
        The new points' :func:`~skylake.objects.summary.light_curve_order`, when sorted.
    refreshed : int
        Objects whose statistics were recomputed from their whole light curves in a merge.
    points_read : int
        Light-curve points read.
    files_read : int
        Light-curve files read.
    """

    cand: pa.Table
    mine: np.ndarray
    kept: pa.Table
    by: np.ndarray | None
    refreshed: int
    points_read: int
    files_read: int


def _exact_rows(task: _Task, stored: _Stored, touched: np.ndarray, new: pa.Table, xyz: np.ndarray) -> _Rows:
    """Every statistic from whole light curves: the partition's objects' and those the update touched.

    Parameters
    ----------
    task : _Task
        The partition's update.
    stored : _Stored
        What was read (:func:`_read_stored`).
    touched : numpy.ndarray
        Ids of the objects the update touches (associated or with stale points).
    new : pyarrow.Table
        The new points (:func:`_points_of`).
    xyz : numpy.ndarray
        The new points' unit vectors.

    Returns
    -------
    _Rows
        The objects computed.
    """
    spec, history = task.spec, stored.history
    hist = table_schema(LIGHTCURVES).empty_table() if stored.hist is None else stored.hist
    own_ids = stored.own.column("object_id").to_numpy()
    before = _isin(hist, "object_id", np.union1d(own_ids, touched))
    # with no stored point, the points are the detections' (their vectors made once, for the association;
    # their light-curve order sorted once, for the statistics and for filing them)
    by = None
    if not before.num_rows:
        by = light_curve_order(*(new.column(c).to_numpy() for c in ("object_id", "mjd", "source_id")))
    cand = summarise(
        pa.concat_tables([before, new]),
        spec.refcat,
        *((None, None) if before.num_rows else (xyz, by)),
        variable_fap=spec.variable_fap,
    )
    return _Rows(
        cand=cand,
        mine=task.owns(cand),
        kept=stored.own.schema.empty_table(),
        by=by,
        refreshed=0,
        points_read=0 if history is None else history[0].num_rows + history[1].num_rows,
        files_read=0 if history is None else history[2],
    )


def _merged_rows(task: _Task, stored: _Stored, ids: np.ndarray, touched: np.ndarray, new: pa.Table) -> _Rows:
    """Merge the new points into the touched objects' rows (:func:`~skylake.objects.summary.merge`).

    Objects of the partition due a refresh get theirs from their whole light curves (:func:`_refresh`).

    Parameters
    ----------
    task : _Task
        The partition's update.
    stored : _Stored
        What was read (:func:`_read_stored`).
    ids : numpy.ndarray
        Each detection's object id.
    touched : numpy.ndarray
        Ids of the objects the update touches.
    new : pyarrow.Table
        The new points (:func:`_points_of`).

    Returns
    -------
    _Rows
        The objects computed.
    """
    spec, old, own = task.spec, stored.old, stored.own
    old_ids = old.column("object_id").to_numpy()
    known = np.isin(new.column("object_id").to_numpy(), old_ids)
    cand = pa.concat_tables(
        [
            merge(old.filter(pa.array(np.isin(old_ids, ids))), new.filter(pa.array(known)), spec.variable_fap),
            summarise(new.filter(pa.array(~known)), spec.refcat, variable_fap=spec.variable_fap),
        ]
    )
    mine = task.owns(cand)
    kept = own.filter(pa.array(~np.isin(own.column("object_id").to_numpy(), touched)))
    rows = _Rows(cand=cand, mine=mine, kept=kept, by=None, refreshed=0, points_read=0, files_read=0)
    # objects of this partition whose points grew by a quarter since their order statistics were
    # computed: those from their whole light curves (each object's, so none is ever staler than that)
    due = mine & needs_refresh(cand.column("n").to_numpy(), cand.column("n_exact").to_numpy())
    return _refresh(task, rows, due, new) if due.any() else rows


def _refresh(task: _Task, rows: _Rows, due: np.ndarray, new: pa.Table) -> _Rows:
    """``rows`` with the objects ``due`` recomputed from their whole light curves and the new points.

    Parameters
    ----------
    task : _Task
        The partition's update.
    rows : _Rows
        The merged rows.
    due : numpy.ndarray
        Mask (bool) of the rows of ``rows.cand`` to recompute.
    new : pyarrow.Table
        The new points.

    Returns
    -------
    _Rows
        The rows, those recomputed replacing their merged ones.
    """
    spec, cand = task.spec, rows.cand
    points, files_read = _whole_light_curves(
        task.lake, cand.filter(pa.array(due)), spec.m_order, task.point_partitions, spec.order
    )
    redo_ids = cand.column("object_id").to_numpy()[due]
    fresh = summarise(
        pa.concat_tables([points, _isin(new, "object_id", redo_ids)]), spec.refcat, variable_fap=spec.variable_fap
    )
    fresh = fresh.filter(pa.array(task.owns(fresh)))  # (a position rounded across the edge: merged)
    keep = ~np.isin(cand.column("object_id").to_numpy(), fresh.column("object_id").to_numpy())
    return _Rows(
        cand=pa.concat_tables([cand.filter(pa.array(keep)), fresh]),
        mine=np.r_[rows.mine[keep], np.ones(fresh.num_rows, bool)],
        kept=rows.kept,
        by=None,
        refreshed=fresh.num_rows,
        points_read=len(points),
        files_read=files_read,
    )


def _stage_partition(task: _Task, det: pa.Table, stored: _Stored, new: pa.Table, rows: _Rows) -> PartitionManifest:
    """Stage the partition's objects file and light-curve file, and say what they do.

    Parameters
    ----------
    task : _Task
        The partition's update.
    det : pyarrow.Table
        The update's detections in the view.
    stored : _Stored
        What was read (:func:`_read_stored`).
    new : pyarrow.Table
        The new points.
    rows : _Rows
        The objects computed.

    Returns
    -------
    PartitionManifest
        The partition's manifest.
    """
    lake, spec, own, old = task.lake, task.spec, stored.own, stored.old
    written = rows.cand.filter(pa.array(rows.mine))
    owned = pa.concat_tables([rows.kept, written])
    owned = owned.take(np.lexsort((owned.column("object_id").to_numpy(), owned.column("_healpix_29").to_numpy())))
    own_ids, owned_ids = own.column("object_id").to_numpy(), owned.column("object_id").to_numpy()
    foreign = rows.cand.filter(pa.array(~rows.mine))
    f_orders, f_pixels = hats_meta.assign_pixels(foreign.column("_healpix_29").to_numpy(), task.partitions, spec.order)
    own_points = stored.history[0] if stored.history is not None else None
    dirty = bool(written.num_rows or not np.isin(own_ids, owned_ids).all())
    path = None
    if dirty and owned.num_rows:
        path = f"{hats_meta.pixel_dir(*task.key)}/{spec.area.batch_id}.parquet"
        task.stager.write(spec.area.path(OBJECTS, path), owned, ROW_GROUP)
    # the new points of the objects written here, filed under their object's position (so an object's
    # points are in its partition, sorted together): written exactly once, by their object's owner
    points = _stage_points(
        lake,
        task.stager,
        spec.area,
        task.here,
        stored.point_files,
        _filed(new, written, rows.by),
        own_points if task.exact else None,
        task.stale,
    )
    h29 = det.column("_healpix_29").to_numpy()
    core = task.view.in_core(h29)
    return PartitionManifest(
        key=task.key,
        dirty=dirty,
        exact=task.exact,
        refreshed=rows.refreshed,
        path=path,
        rows=owned.num_rows,
        removed=[
            (posixpath.relpath(f, OBJECTS), n) for f, n in zip(stored.own_files, row_counts(lake, stored.own_files))
        ],
        hist_old=_sparse_hist(own.column("_healpix_29").to_numpy()),
        hist_new=_sparse_hist(owned.column("_healpix_29").to_numpy()),
        dropped=0 if own_points is None else int(np.isin(own_points.column("frame_id").to_numpy(), task.stale).sum()),
        objects_new=int((~np.isin(written.column("object_id").to_numpy(), old.column("object_id").to_numpy())).sum()),
        detections=int(core.sum()),
        objects_read=old.num_rows,
        points_read=rows.points_read,
        point_files_read=rows.files_read,
        homes=sorted(set(zip(f_orders.tolist(), f_pixels.tolist()))),
        written=(written.column("object_id").to_numpy(), written.column("_healpix_29").to_numpy()),
        leaving=np.intersect1d(foreign.column("object_id").to_numpy(), own_ids),
        gone=np.setdiff1d(own_ids, owned_ids),
        # per changed frame: its detections here and their pixels at the lake's order (where its points are)
        frame_pixels=_frame_pixels(
            det.column("frame_id").to_numpy()[core], spatial_index_to_healpix(h29[core], target_order=spec.order)
        ),
        points=points,
    )


def _frame_pixels(frame_id: np.ndarray, pixel: np.ndarray) -> pd.DataFrame:
    """Detections per (frame_id, pixel): frame_id, pixel and n, sorted by frame then pixel (counted in a
    table of the pairs: a partition's frames span few ids and its detections few pixels)."""
    pixels = unique(pixel)
    first = frame_id.min() if len(frame_id) else 0
    pair = (frame_id - first) * len(pixels) + positions(pixels, pixel)
    if len(pair) and pair.max() < 4 * len(pair) + (1 << 20):
        n = np.bincount(pair)
        keys = np.flatnonzero(n)
        n = n[keys]
    else:
        keys, n = unique(pair, return_counts=True)
    return pd.DataFrame(
        {"frame_id": keys // len(pixels) + first, "pixel": pixels[keys % len(pixels)], "n": n.astype(np.int64)}
    )


def _filed(new: pa.Table, written: pa.Table, by: np.ndarray | None = None) -> pa.Table:
    """The points ``new`` of the objects ``written``, each filed under its object's position (its
    ``_healpix_29``): an object's points are in its partition, together. In file order
    (:func:`~skylake.objects.files.sort_points`: by ``_healpix_29``, object and time), which is here the
    order of the objects as sorted (by ``_healpix_29`` then id, ``written``'s rank) and time: one sort
    of two keys, and one take. ``by``: the points' :func:`~skylake.objects.summary.light_curve_order`, when
    known: each object's points are then a run of it, already in time order (:func:`_filed_runs`)."""
    if not written.num_rows:
        return new.slice(0, 0)
    rank = np.lexsort((written.column("object_id").to_numpy(), written.column("_healpix_29").to_numpy()))
    w_ids, w_h29 = written.column("object_id").to_numpy()[rank], written.column("_healpix_29").to_numpy()[rank]
    ids = new.column("object_id").to_numpy()
    filed = None if by is None else _filed_runs(ids, new.column("mjd").to_numpy(), by, w_ids)
    if filed is None:
        by_id = np.argsort(w_ids)
        at = by_id[np.minimum(np.searchsorted(w_ids[by_id], ids), len(w_ids) - 1)]  # each point's object's rank
        mine = np.flatnonzero(w_ids[at] == ids)
        mine = mine[by_group_then(at[mine], new.column("mjd").to_numpy()[mine], len(w_ids), stable=True)]
        h29 = w_h29[at[mine]]
    else:
        mine, counts = filed
        h29 = np.repeat(w_h29, counts)
    column = new.schema.get_field_index("_healpix_29")
    return new.take(mine).set_column(column, "_healpix_29", pa.array(h29, pa.int64()))


def _filed_runs(ids: np.ndarray, mjd: np.ndarray, by: np.ndarray, w_ids: np.ndarray):
    """:func:`_filed`'s order from the points' light-curve order ``by`` (by object, time, source id): the runs
    of the objects ``w_ids`` (in their order) one after the other, and each one's points; no sort of the
    points. The same order as sorting by object rank then time (ties in the points' order) when no object
    has two points of one time (else None: the caller sorts)."""
    oid, t = ids[by], mjd[by]
    first = np.flatnonzero(np.r_[True, oid[1:] != oid[:-1]])
    same = oid[1:] == oid[:-1]
    if (t[1:][same] == t[:-1][same]).any() or np.isnan(t).any():  # a tie in time: ordered by source id here
        return None
    uniq, ends = oid[first], np.r_[first[1:], len(oid)]
    at = np.minimum(np.searchsorted(uniq, w_ids), len(uniq) - 1)
    found = uniq[at] == w_ids  # (an object written here without a new point has none to file)
    at = at[found]
    counts = np.zeros(len(w_ids), np.int64)
    counts[found] = ends[at] - first[at]
    return by[concat_ranges(first[at], ends[at])], counts


def _stage_points(
    lake: Lake,
    stager: Stager,
    area: StagingArea,
    here: HealpixPixel,
    point_files: list[str],
    new_core: pa.Table,
    own_points: pa.Table | None,
    stale: np.ndarray,
) -> PointsManifest:
    """Stage the partition's light-curve file.

    After an exact pass (``own_points``: every row of its files, read), one file of all its points (less
    those of ``stale`` frames, plus the new ones of its objects, ``new_core``) replacing all of its files;
    else the new points, merged with the smallest files when there are too many
    (:func:`~skylake.objects.files.files_to_merge`).

    Parameters
    ----------
    lake : Lake
        The lake.
    stager : Stager
        The task's writer of staged files.
    area : skylake.lake.staging.StagingArea
        The update's staging area.
    here : hats.pixel_math.HealpixPixel
        The partition.
    point_files : list of str
        Its light-curve files (lake-relative).
    new_core : pyarrow.Table
        The new points of its objects, in file order (:func:`_filed`).
    own_points : pyarrow.Table or None
        Every row of ``point_files`` (an exact pass), else None.
    stale : numpy.ndarray
        Frames whose old points go.

    Returns
    -------
    PointsManifest
        The staged file and the files it replaces.
    """
    rows_before = row_counts(lake, point_files)
    if own_points is not None:
        away = list(range(len(point_files)))
        removed = [own_points]
        parts = [new_core, own_points.filter(pa.array(~np.isin(own_points.column("frame_id").to_numpy(), stale)))]
    else:
        away = [k for k in files_to_merge(rows_before + [new_core.num_rows]) if k < len(point_files)]
        removed = read_files(lake, LIGHTCURVES, [point_files[k] for k in away])
        parts = [new_core, *removed]
    data = sort_points(pa.concat_tables(parts)) if len(parts) > 1 else new_core  # (new_core: in file order)
    path = None
    if data.num_rows:
        path = f"{hats_meta.pixel_dir(here.order, here.pixel)}/{area.batch_id}.parquet"
        stager.write(area.path(LIGHTCURVES, path), data, POINTS_ROW_GROUP, **POINTS_ENCODING)
    return PointsManifest(
        path=path,
        rows=data.num_rows,
        removed=[(posixpath.relpath(point_files[k], LIGHTCURVES), rows_before[k]) for k in away],
        hist_old=_sparse_hist(
            np.concatenate([t.column("_healpix_29").to_numpy() for t in removed] + [np.empty(0, np.int64)])
        ),
        hist_new=_sparse_hist(data.column("_healpix_29").to_numpy()),
        files=len(point_files) - len(away) + (data.num_rows > 0),
    )
