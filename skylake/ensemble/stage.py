"""``skylake ensemble``: relative calibration and detrending of each night, after the absolute zeropoints.

For the nights selected (one, those since a date, or those an ingest just calibrated), per profile:

1. **inputs**: the night's ok frames placed by a WCS (all-sky frames have their own model) and their latest
   ok zeropoints against the profile's catalogue. The ensemble is a night product (:mod:`skylake.night_products`,
   ``schemas/ensemble.yaml``): a night solved since its frames and zeropoints last changed (its rows'
   ``built_version``) is skipped; otherwise it is solved again, whole (O(that night)), and its earlier rows go in
   the same commit. The ingest chain solves its nights through that hook (:func:`build`);
2. **fields**: the night's frames grouped by overlap (frames whose centres are closer than half the smaller
   one's half-diagonal share a field; a chain of such pairs is one field: a drift scan too);
3. **run**, one task per night and field, on the workers (:func:`solve_field`): read the field's sources
   (only its sky), calibrate them with their frame's zeropoint, group them into stars
   (:func:`~skylake.ensemble.associate.associate_field`), solve the ensemble
   (:func:`~skylake.ensemble.solve.solve`), detrend each star (:mod:`~skylake.ensemble.detrend`: EPD, then TFA)
   and write the detrend rows as a piece of this run; return the frames' rows (small);
4. **commit**: under the writer lock, the nights' earlier ensemble and detrend rows removed, the new ones
   staged (the pieces moved into the batch's staging area), one commit of the lake's log.

Tables: LAKE/ensemble (schemas/ensemble.yaml), LAKE/detrend (schemas/detrend.yaml). Light curves use them
(skylake.objects): ``mag = mag_zp + correction``, ``mag_epd = mag - epd``, ``mag_tfa = mag_epd - tfa``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skylake.calib.model import (
    FLUXES,
    KRON,
    LatestPolicy,
    ZpStatus,
    calibrated_flux_mags,
    instrumental_mag,
    instrumental_mag_err,
    latest_calibration,
)
from skylake.ensemble.apertures import aperture_offsets, choose_from_sums, variance_sums
from skylake.ensemble.associate import associate_field
from skylake.ensemble.blocks import blocks
from skylake.ensemble.detrend import choose_templates, epd, tfa, trend_basis
from skylake.ensemble.local import local_offsets
from skylake.ensemble.noise import fit_noise, frame_excess, young_scintillation
from skylake.ensemble.options import EnsembleOptions
from skylake.ensemble.solve import EnsembleSettings, n_spatial_terms, solve
from skylake.frame.extract import OBJ_MERGED, SATURATED
from skylake.lake import Lake, tables
from skylake.lake import frames as lake_frames
from skylake.lake.frames import FrameSelection
from skylake.lake.log import utc_now as _now
from skylake.lake.nights import night_dir, night_filter, night_partition
from skylake.lake.tables import DETREND, ENSEMBLE, NOISE, ZEROPOINTS
from skylake.profile import Profile, ProfileError
from skylake.robust import MAD_TO_SIGMA
from skylake.schema import conform

log = logging.getLogger(__name__)

__all__ = [
    "EnsembleReport",
    "EnsembleOptions",
    "group_fields",
    "FieldResult",
    "solve_field",
    "point_corrections",
    "ens_key",
    "TERM_COLUMNS",
    "ensemble",
    "build",
    "built",
    "drop",
    "select_frames",
    "settings_of",
    "FRAME_COLUMNS",
    "SOURCE_COLUMNS",
    "CELL_STARS",
]

#: Frame columns the stage reads.
FRAME_COLUMNS = [
    "frame_id",
    "night",
    "profile",
    "pipeline_version",
    "status",
    "nx",
    "ny",
    "exptime",
    "airmass",
    "mjd",
    "footprint_ra",
    "footprint_dec",
    "ra_center",
    "dec_center",
    "pixscale",
    "saturation",
    "wcs_source",
    "filter",
]
#: The spatial coefficients of an ensemble row, in the order of :func:`skylake.ensemble.solve.design`.
TERM_COLUMNS = ["zp_offset", "c_u", "c_v", "c_uu", "c_uv", "c_vv"]


def settings_of(profile: Profile) -> tuple[EnsembleOptions, EnsembleSettings]:
    """The ``[ensemble]`` section of ``profile`` as (stage options, solve settings); defaults when absent.

    Parameters
    ----------
    profile : Profile
        The profile whose ``[ensemble]`` table is read.

    Returns
    -------
    options : EnsembleOptions
        The stage's own settings.
    settings : EnsembleSettings
        The solve's settings (the table's other keys).
    """
    doc = dict(getattr(profile, "ensemble", None) or {})  # not a table
    own = {k: doc.pop(k) for k in list(doc) if k in EnsembleOptions.__dataclass_fields__}
    return EnsembleOptions(**own), EnsembleSettings.from_dict(doc)


def ens_key(options: EnsembleOptions, settings: EnsembleSettings, flux: str) -> str:
    """Identity of a solve's settings (a row's ``ens_key``).

    The noise diagram's ``read_noise_adu`` is not part of it.

    Parameters
    ----------
    options : EnsembleOptions
        The stage's settings.
    settings : EnsembleSettings
        The solve's settings.
    flux : str
        The calibrated flux column.

    Returns
    -------
    str
        The first 16 hex digits of the SHA-256 of the settings as JSON.
    """
    own = {k: v for k, v in asdict(options).items() if k != "read_noise_adu"}
    ident = {"options": own, "settings": asdict(settings), "flux": flux}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=list).encode()).hexdigest()[:16]


@dataclass
class EnsembleReport:
    """What one ensemble run (one profile's frames) did."""

    profile: str
    nights: int = 0  # nights selected
    solved_nights: int = 0
    skipped_nights: int = 0  # solved since their frames and zeropoints last changed
    written_nights: list = field(default_factory=list)  # nights that got rows (partition names)
    fields: int = 0
    frames: int = 0  # frames in the nights solved
    by_status: dict = field(default_factory=dict)
    not_eligible: dict = field(default_factory=dict)  # frames left out, by why (no ok zeropoint, all-sky, ...)
    detrended_points: int = 0
    noise: list = field(default_factory=list)  # the LAKE/noise rows written (dicts), for the summary line
    commit: int | None = None
    seconds: float = 0.0

    def noise_summary(self) -> str:
        """The noise model of the flux most stars use, in words, and a warning where the photon errors of a
        circular aperture are off by more than 20 % (a wrong gain or read noise); "" without a model.

        Returns
        -------
        str
            E.g. ``"noise model (flux_ap1, 1830 stars): photons x0.96, scintillation 3.8 mmag, floor 6.6 mmag,
            pulls 0.95"``.
        """
        if not self.noise:
            return ""
        rows = pd.DataFrame(self.noise)
        top = rows.groupby("flux")["n_chosen"].sum().sort_values().index[-1]
        r = rows[rows["flux"] == top].median(numeric_only=True)
        text = (
            f"noise model ({top}, {int(rows.loc[rows['flux'] == top, 'n_chosen'].sum())} stars): photons "
            f"x{r['phot_scale']:.2f}, scintillation {1000 * r['scint_mag']:.1f} mmag, floor "
            f"{1000 * r['floor_mag']:.1f} mmag, pulls {r['pull_width']:.2f}"
        )
        circles = rows[(rows["flux"] != "flux_auto") & (rows["status"] == "ok")]
        off = circles[(circles["phot_scale"] - 1).abs() > 0.2]
        if len(off):
            scale = float(off["phot_scale"].median())
            text += (
                f"; the data scatter {scale:.2f}x the photon errors the apertures state: is the gain or the read "
                f"noise of the profile or header wrong?"
            )
        return text

    def __str__(self) -> str:
        if not self.solved_nights and not self.by_status:
            left = ", ".join(f"{n} {k}" for k, n in sorted(self.not_eligible.items()))
            return f"ensemble {self.profile}: nothing to solve: {self.skipped_nights} nights already solved" + (
                f"; left out: {left}" if left else ""
            )
        solved = self.by_status.get("ok", 0)
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.by_status.items()) if k != "ok")
        left = ", ".join(f"{n} {k}" for k, n in sorted(self.not_eligible.items()))
        return (
            f"ensemble {self.profile}: {solved} of {self.frames + sum(self.not_eligible.values())} frames solved"
            + (f" ({kinds})" if kinds else "")
            + (f"; left out: {left}" if left else "")
            + f"; {self.solved_nights} nights in {self.fields} fields, {self.skipped_nights} nights already "
            f"solved, {self.detrended_points} points detrended"
            + (f", commit v{self.commit}" if self.commit else "")
            + f", {self.seconds:.1f} s"
            + (f"\n  {self.noise_summary()}" if self.noise else "")
        )


# -- fields ---------------------------------------------------------------------------------------------
def group_fields(frames: pd.DataFrame) -> np.ndarray:
    """Field number (0, 1, ...) of each frame.

    Frames whose centres are closer than half the smaller one's half-diagonal are linked, and a field is a
    connected group of links.

    Parameters
    ----------
    frames : DataFrame
        Frame rows with ``ra_center``, ``dec_center``, ``nx``, ``ny``, ``pixscale`` and ``mjd``.

    Returns
    -------
    int array
        The field of each frame, fields numbered by the time of their first frame.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    from skylake.sphere import chord, unit_vectors

    n = len(frames)
    if n == 0:
        return np.zeros(0, np.int64)
    xyz = unit_vectors(frames["ra_center"].to_numpy(float), frames["dec_center"].to_numpy(float))
    half = (
        0.5
        * np.hypot(frames["nx"].to_numpy(float), frames["ny"].to_numpy(float))
        * frames["pixscale"].to_numpy(float)
        / 3600.0
    )
    tree = cKDTree(xyz)
    pairs = np.array(sorted(tree.query_pairs(chord(float(np.nanmax(half)) * 1800.0))), dtype=np.int64).reshape(-1, 2)
    if len(pairs):
        from skylake.sphere import chord_to_arcsec

        d = chord_to_arcsec(np.linalg.norm(xyz[pairs[:, 0]] - xyz[pairs[:, 1]], axis=1)) / 3600.0
        pairs = pairs[d < 0.5 * np.minimum(half[pairs[:, 0]], half[pairs[:, 1]])]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # number fields by their first frame's time
    first = pd.Series(frames["mjd"].to_numpy(float)).groupby(labels).min().sort_values()
    renumber = {lab: i for i, lab in enumerate(first.index)}
    return np.array([renumber[lab] for lab in labels], dtype=np.int64)


# -- the task ----------------------------------------------------------------------------------------------
SOURCE_COLUMNS = ["source_id", "frame_id", "ra", "dec", "x", "y", "flags", "fwhm", "bkg", "flux_max"]


def _read_sources(lake_root: str, frames: pd.DataFrame) -> pd.DataFrame:
    """The sources of ``frames`` (only their sky is read), with every flux (Kron's as ``inst_mag``)."""
    import dask

    from skylake.calib.crossmatch import footprint_moc, open_sources

    fluxes = [f for f in FLUXES if f != KRON]  # and Kron's as inst_mag
    cols = list(
        dict.fromkeys(SOURCE_COLUMNS + ["inst_mag", "inst_mag_err"] + [c for f in fluxes for c in (f, f"{f}_err")])
    )
    moc = footprint_moc(frames, 10.0)
    if moc is None:
        return pd.DataFrame({c: [] for c in cols})
    with dask.config.set(scheduler="synchronous"):  # inside a task: read here, not on the cluster
        cat = open_sources(lake_root, frames["frame_id"], moc, columns=cols)
        data = cat.compute(progress_bar=False)
    return pd.DataFrame(data).reset_index(drop=True)


def _hour_angle(frames: pd.DataFrame, lon_deg: float) -> np.ndarray:
    """Hour angle of each frame's centre, deg (GMST from the mjd, as a linear formula: 0.1 s)."""
    jd = frames["mjd"].to_numpy(float) + 2400000.5
    gmst = (280.46061837 + 360.98564736629 * (jd - 2451545.0)) % 360.0
    return (gmst + lon_deg - frames["ra_center"].to_numpy(float) + 180.0) % 360.0 - 180.0


@dataclass
class FieldResult:
    """What :func:`solve_field` returns for one night's field: small, it travels from a worker to the driver.

    Attributes
    ----------
    rows : DataFrame
        The field's frames' rows of schemas/ensemble.yaml, less the batch columns, plus ``night``.
    noise : DataFrame or None
        The field's rows of schemas/noise.yaml likewise, one per flux; None when no frame was solved.
    piece : tuple of (str, int) or None
        The detrend rows written as a piece of the run: its lake-relative path and its number of rows; None
        when none was written.
    detrend : DataFrame or None
        The detrend rows themselves, when the task had no run to write them to; None otherwise.
    points : int
        The field's points (sources) read; 0 when it had too few frames to be solved.
    detrended : int
        The points of ``piece`` that were detrended; 0 without a piece.
    """

    rows: pd.DataFrame
    noise: pd.DataFrame | None = None
    piece: tuple[str, int] | None = None
    detrend: pd.DataFrame | None = None
    points: int = 0
    detrended: int = 0


def solve_field(
    item: dict,
    lake_root: str,
    run: str | None,
    flux: str,
    flags_mask: int,
    options: EnsembleOptions,
    settings: EnsembleSettings,
    identity: str,
    refcat: str,
    site: dict,
) -> FieldResult:
    """One night's field: the ensemble solve, the noise model, each star's flux and the detrending (a pure task
    but for its reads and its piece).

    Parameters
    ----------
    item : dict
        ``night``, ``field``, ``profile`` and ``frames`` (rows of :data:`FRAME_COLUMNS` with their zeropoint:
        ``zp``, ``apcor``, ``calib_batch``).
    lake_root : str
        The lake's location.
    run : str or None
        The run's piece directory (lake-relative) for the detrend rows; None: they are returned.
    flux : str
        The calibrated flux column (``[calibration] flux``).
    flags_mask : int
        Source flags that keep a point out of the solve.
    options : EnsembleOptions
        The stage's settings.
    settings : EnsembleSettings
        The solve's settings.
    identity : str
        Their identity (``ens_key``). Not named ``key``: dask's ``Client.submit`` takes that keyword itself.
    refcat : str
        The catalogue of the zeropoints.
    site : dict
        The site's ``lon_deg`` (the hour angle of EPD) and ``height_m`` (the scintillation), deg and m.

    Returns
    -------
    FieldResult
        The frames' ensemble rows, the noise rows, and the detrend rows' piece (their rows when ``run`` is None).
    """
    frames = item["frames"].reset_index(drop=True)
    night, fid_field = item["night"], int(item["field"])
    base = _base_rows(frames, night, fid_field, refcat, identity, settings)
    if len(frames) < settings.min_frames:
        return FieldResult(rows=_too_few_frames_rows(base, len(frames), settings))
    src, inst, err, mag, flags, usable = _field_points(lake_root, frames, flux, flags_mask, options)
    scale = float(np.nanmedian(frames["pixscale"].to_numpy(float)))
    codes, frame_ids = pd.factorize(src["frame_id"], sort=True)
    star = associate_field(
        codes, src["ra"].to_numpy(float), src["dec"].to_numpy(float), options.match_radius_px * scale
    )
    n_frames, n_stars = len(frame_ids), int(star.max()) + 1 if len(star) else 0
    u = 2 * src["x"].to_numpy(float) / (src["nx"].to_numpy(float) - 1) - 1
    v = 2 * src["y"].to_numpy(float) / (src["ny"].to_numpy(float) - 1) - 1
    sol = solve(codes, star, mag, err, u, v, n_frames=n_frames, n_stars=n_stars, settings=settings, usable=usable)
    at = pd.Index(frame_ids).get_indexer(base["frame_id"])
    seen = at >= 0
    ok = np.zeros(len(base), bool)
    ok[seen] = sol.frame_ok[at[seen]]
    rows = _solved_rows(base, sol, at, ok, settings, len(frames))
    out = FieldResult(rows=rows, points=len(src))
    if not ok.any():
        return out
    solved = sol.frame_ok[codes] & np.isfinite(mag)
    mag += sol.correction  # the ensemble's magnitudes, in place: the zeropoints' alone are not needed again
    phot = _photometry(src, codes, star, u, v, inst, err, mag, usable & solved, flags, sol, flux, options, site)
    out.noise = phot.noise_rows(base.iloc[:1], item.get("profile", ""), _common(frames["filter"]), int(ok.sum()))
    rows["frame_noise_mag"] = np.where(seen, phot.frame_noise[np.maximum(at, 0)], np.nan).astype(np.float32)
    best, best_err = phot.best_mag, np.hypot(phot.best_err, sol.correction_err)
    trend = None
    if options.detrend:
        trend = _detrend(
            src, codes, star, best, best_err, usable & solved, sol, frames, n_frames, n_stars, options, site
        )
    points = phot.point_rows(src, solved, trend)
    if run is None:
        out.detrend = points
        return out
    out.piece = _write_piece(lake_root, run, night, fid_field, points)
    out.detrended = int(points["detrended"].sum())
    return out


def _base_rows(
    frames: pd.DataFrame, night, fid_field: int, refcat: str, identity: str, settings: EnsembleSettings
) -> pd.DataFrame:
    """The columns of the field's ensemble rows that do not depend on the solve, one row per frame.

    Parameters
    ----------
    frames : DataFrame
        The field's frames (``frame_id``, ``calib_batch``, ``mjd``, ``color_term``).
    night : str or None
        The night (partition name; None for unknown).
    fid_field : int
        The field's number.
    refcat : str
        The catalogue of the zeropoints.
    identity : str
        The settings' identity (``ens_key``).
    settings : EnsembleSettings
        The solve's settings.

    Returns
    -------
    DataFrame
        ``frame_id``, ``refcat``, ``calib_batch``, ``ens_key``, ``field``, ``spatial_order``, ``mjd``,
        ``night`` and ``color_term`` (the frames' median).
    """
    return pd.DataFrame(
        {
            "frame_id": frames["frame_id"].to_numpy(np.int64),
            "refcat": refcat,
            "calib_batch": frames["calib_batch"].astype(str).to_numpy(),
            "ens_key": identity,
            "field": np.int32(fid_field),
            "spatial_order": np.int16(settings.spatial_order),
            "mjd": frames["mjd"].to_numpy(float),
            "night": night,
            "color_term": np.float32(np.nanmedian(frames["color_term"].to_numpy(float)))
            if frames["color_term"].notna().any()
            else np.float32(np.nan),
            "frame_noise_mag": np.float32(np.nan),  # measured once a frame is solved
        }
    )


def _too_few_frames_rows(base: pd.DataFrame, n_frames: int, settings: EnsembleSettings) -> pd.DataFrame:
    """The ensemble rows of a field with fewer than ``ensemble.min_frames`` frames: no terms.

    Parameters
    ----------
    base : DataFrame
        The rows of :func:`_base_rows`.
    n_frames : int
        The field's frames.
    settings : EnsembleSettings
        The solve's settings.

    Returns
    -------
    DataFrame
        ``base`` with status ``too_few_frames``, its reason and NaN terms.
    """
    return base.assign(
        status="too_few_frames",
        reason=f"its field has {n_frames} frames this night (ensemble.min_frames = {settings.min_frames})",
        field_frames=np.int32(n_frames),
        field_stars=np.int32(0),
        n_stars=np.int32(0),
        zp_offset=np.nan,
        zp_offset_err=np.nan,
        **{c: np.float32(np.nan) for c in TERM_COLUMNS[1:]},
        terms_cov=[None] * len(base),
        rms=np.float32(np.nan),
        chi2_dof=np.float32(np.nan),
    )


def _field_points(lake_root: str, frames: pd.DataFrame, flux: str, flags_mask: int, options: EnsembleOptions):
    """The field's sources with their frame's columns, magnitudes in ``flux`` and which may enter the solve.

    Parameters
    ----------
    lake_root : str
        The lake's location.
    frames : DataFrame
        The field's frames with their zeropoint (``zp``, ``apcor``).
    flux : str
        The calibrated flux column.
    flags_mask : int
        Source flags that keep a point out of the solve.
    options : EnsembleOptions
        The stage's settings (``saturation_fraction``).

    Returns
    -------
    src : DataFrame
        The sources (:func:`_read_sources`) with their frame's ``zp``, ``apcor``, ``exptime``, ``nx``, ``ny``,
        ``saturation``, ``airmass`` and ``mjd``.
    inst, err : numpy.ndarray
        Each point's instrumental magnitude in ``flux`` and its error, mag.
    mag : numpy.ndarray
        Each point's magnitude calibrated with its frame's zeropoint, mag.
    flags : numpy.ndarray
        Each point's source flags.
    usable : numpy.ndarray
        Points of no flag of ``flags_mask``, not saturated, with a finite magnitude and error.
    """
    src = _read_sources(lake_root, frames)
    src = src.merge(
        frames[["frame_id", "zp", "apcor", "exptime", "nx", "ny", "saturation", "airmass", "mjd"]],
        on="frame_id",
        how="inner",
    )
    if flux == KRON:
        inst, err = src["inst_mag"].to_numpy(float), src["inst_mag_err"].to_numpy(float)
    else:
        inst, err = calibrated_flux_mags(
            src, src["exptime"].to_numpy(float), flux, np.nan_to_num(src["apcor"].to_numpy(float))
        )
        inst, err = np.asarray(inst, float), np.asarray(err, float)
    mag = inst + src["zp"].to_numpy(float)
    flags = src["flags"].to_numpy(np.int64)
    peak = src["flux_max"].to_numpy(float) + src["bkg"].to_numpy(float)
    saturated = ((flags & SATURATED) != 0) | (peak >= options.saturation_fraction * src["saturation"].to_numpy(float))
    usable = ((flags & flags_mask) == 0) & ~saturated & np.isfinite(mag) & np.isfinite(err)
    return src, inst, err, mag, flags, usable


def _solved_rows(
    base: pd.DataFrame, sol, at: np.ndarray, ok: np.ndarray, settings: EnsembleSettings, n_frames: int
) -> pd.DataFrame:
    """The field's ensemble rows from the solve.

    Parameters
    ----------
    base : DataFrame
        The rows of :func:`_base_rows`.
    sol : EnsembleSolution
        The solve's result (:func:`~skylake.ensemble.solve.solve`).
    at : numpy.ndarray
        Each row's frame index in the solve, -1 for a frame without sources.
    ok : numpy.ndarray
        Rows whose frame was solved.
    settings : EnsembleSettings
        The solve's settings.
    n_frames : int
        The field's frames.

    Returns
    -------
    DataFrame
        ``base`` with the status, reason, terms, their covariance and the fit's statistics.
    """
    P = 1 + n_spatial_terms(settings.spatial_order)
    seen = at >= 0
    terms = np.full((len(base), 6), np.nan)
    terms[seen, :P] = sol.terms[at[seen]]
    terms[ok, P:] = 0.0
    cov = [list(sol.terms_cov[a][np.triu_indices(P)]) if good else None for a, good in zip(at, ok)]
    n_used = np.where(seen, sol.frame_n[np.maximum(at, 0)], 0)
    return base.assign(
        status=np.where(ok, "ok", "too_few_stars"),
        reason=[
            (
                ""
                if good
                else f"{n} good stars shared with the field's other frames (ensemble.min_stars = {settings.min_stars})"
            )
            for good, n in zip(ok, n_used)
        ],
        zp_offset=terms[:, 0],
        zp_offset_err=[math.sqrt(c[0]) if c else np.nan for c in cov],
        **{c: terms[:, k].astype(np.float32) for k, c in enumerate(TERM_COLUMNS) if k > 0},
        terms_cov=cov,
        n_stars=n_used.astype(np.int32),
        rms=np.where(seen, sol.frame_rms[np.maximum(at, 0)], np.nan).astype(np.float32),
        chi2_dof=np.where(seen, sol.frame_chi2[np.maximum(at, 0)], np.nan).astype(np.float32),
        field_frames=np.int32(n_frames),
        field_stars=np.int32(int(sol.star_used.sum())),
    )


def _write_piece(lake_root: str, run: str, night, fid_field: int, points: pd.DataFrame) -> tuple[str, int]:
    """Write the field's detrend rows as a piece of the run.

    Parameters
    ----------
    lake_root : str
        The lake's location.
    run : str
        The run's piece directory (lake-relative).
    night : str or None
        The night (partition name).
    fid_field : int
        The field's number.
    points : DataFrame
        The detrend rows (:meth:`_Photometry.point_rows`).

    Returns
    -------
    tuple of (str, int)
        The piece's lake-relative path and its number of rows.
    """
    from skylake.lake.parquet import parquet_bytes
    from skylake.lake.storage import open_storage

    store = open_storage(lake_root)
    rel = f"{run}/detrend-{night}-{fid_field}-{uuid.uuid4().hex[:8]}.parquet"
    store.write_bytes(
        rel, parquet_bytes(conform(pa.Table.from_pandas(points, preserve_index=False), DETREND)), fsync=False
    )
    return rel, len(points)


def _common(values: pd.Series) -> str:
    """The most common of ``values`` as a string ("" for none)."""
    counts = values.dropna().astype(str).value_counts()
    return str(counts.index[0]) if len(counts) else ""


#: The frames' extra noise is found per cell of a grid of about this many constant stars a cell (1 x 1 to 8 x 8).
CELL_STARS = 40


@dataclass
class _Photometry:
    """A field's points in every flux, the noise model of each and each star's choice (see :func:`_photometry`).

    ``fluxes`` the flux names; ``dmag`` (N,) what each point's star's flux adds to its ensemble-calibrated
    magnitude; ``phot_err`` (N,) each point's photon error in that flux (both float32, as they are written);
    ``fits`` the noise models of each flux (of unflagged points, of blended ones); ``choice`` (S,) each star's
    flux index; ``best_mag``, ``best_err`` (N,) the points in their star's flux and its modelled error (with their
    local zeropoint and their frame cell's own extra noise); ``young`` (N,) Young's scintillation of each point;
    ``diameter_m`` the telescope's; ``frame_noise`` (E,) each frame's extra noise; ``local`` (N,) each point's
    local zeropoint correction.
    """

    fluxes: list
    dmag: np.ndarray  # (N,) float32, in the star's flux
    phot_err: np.ndarray  # (N,) float32, in the star's flux
    fits: list  # per flux: the NoiseFit of unflagged points and that of blended ones
    choice: np.ndarray
    star: np.ndarray
    best_mag: np.ndarray
    best_err: np.ndarray
    young: np.ndarray
    diameter_m: float
    frame_noise: np.ndarray  # (E,) each frame's largest extra noise of a cell (noise.frame_excess), mag
    local: np.ndarray  # (N,) each point's local zeropoint correction (skylake.ensemble.local), mag

    def noise_rows(self, base: pd.DataFrame, profile: str, filter_name: str, n_frames: int) -> pd.DataFrame:
        """The field's rows of schemas/noise.yaml (less the batch columns, plus ``night``), one per flux.

        Parameters
        ----------
        base : DataFrame
            A row of the field's ensemble rows (``refcat``, ``ens_key``, ``field``, ``night``).
        profile, filter_name : str
            The camera's profile and the field's filter.
        n_frames : int
            The field's solved frames.

        Returns
        -------
        DataFrame
            One row per flux.
        """
        chosen = np.bincount(self.choice[np.unique(self.star)], minlength=len(self.fluxes))
        young = float(np.nanmedian(self.young)) if self.young.size else 0.0
        return pd.DataFrame(
            {
                "refcat": base["refcat"].iloc[0],
                "ens_key": base["ens_key"].iloc[0],
                "profile": profile,
                "filter": filter_name,
                "field": np.int32(base["field"].iloc[0]),
                "night": base["night"].iloc[0],
                "flux": self.fluxes,
                "status": ["ok" if f.n_points else "too_few_stars" for f, _ in self.fits],
                "phot_scale": [f.phot_scale for f, _ in self.fits],
                "phot_slope": [f.phot_slope for f, _ in self.fits],
                "phot_ref": [f.phot_ref for f, _ in self.fits],
                "scint_factor": [f.scint_factor for f, _ in self.fits],
                "scint_fitted": [f.scint_fitted for f, _ in self.fits],
                "scint_mag": [f.scint_factor * young for f, _ in self.fits],
                "floor_mag": [f.floor_mag for f, _ in self.fits],
                "blend_floor_mag": [b.floor_mag for _, b in self.fits],
                "diameter_m": self.diameter_m,
                "n_stars": [f.n_stars for f, _ in self.fits],
                "n_points": [f.n_points for f, _ in self.fits],
                "n_blended": [b.n_points for _, b in self.fits],
                "pull_width": [f.pull_width for f, _ in self.fits],
                "chi2_dof": [f.chi2_dof for f, _ in self.fits],
                "n_chosen": chosen.astype(np.int32),
                "frames": np.int32(n_frames),
            }
        )

    def point_rows(self, src: pd.DataFrame, solved: np.ndarray, trend: pd.DataFrame | None) -> pd.DataFrame:
        """The rows of schemas/detrend.yaml of the points of solved frames.

        Parameters
        ----------
        src : DataFrame
            The field's points (``source_id``, ``frame_id``).
        solved : bool array (N,)
            Points of solved frames with a magnitude.
        trend : DataFrame or None
            :func:`_detrend`'s rows (``source_id``, ``epd``, ``tfa``, their terms).

        Returns
        -------
        DataFrame
            One row per point of ``solved``.
        """
        rows = pd.DataFrame(
            {
                "source_id": src["source_id"].to_numpy(np.int64),
                "frame_id": src["frame_id"].to_numpy(np.int64),
                "flux": np.asarray(self.fluxes, dtype=object)[self.choice[self.star]],
                "dmag_ap": self.dmag,
                "dmag_local": self.local.astype(np.float32),
                "mag_err": self.best_err.astype(np.float32),
                "mag_err_phot": self.phot_err,
            }
        )[solved & np.isfinite(self.best_mag)]
        zeros = {"epd": np.float32(0), "tfa": np.float32(0), "epd_terms": np.int16(0), "tfa_terms": np.int16(0)}
        if trend is None or not len(trend):
            return rows.assign(**zeros, detrended=False).reset_index(drop=True)
        rows = rows.merge(trend.drop(columns="frame_id"), on="source_id", how="left")
        rows["detrended"] = rows["epd"].notna()
        return rows.fillna(zeros).reset_index(drop=True)


def _photometry(src, codes, star, u, v, inst, err, mag_ens, usable, flags, sol, flux, options, site) -> _Photometry:
    """Every flux of the field's points on the ensemble's scale (:func:`~.apertures.aperture_offsets`), local
    zeropoints on frames with structure the ensemble's terms cannot follow (:mod:`~.local`), the noise model of each
    flux (:func:`~.noise.fit_noise`, from the constant stars' unflagged points with S/N above ~3.6; blended points,
    sep's OBJ_MERGED, get a floor of their own) and each star's flux of least modelled noise
    (:func:`~.apertures.choose_apertures`), with what a frame cell's stars still scatter beyond the model."""
    n_frames, n_stars = int(codes.max()) + 1, int(star.max()) + 1
    fluxes = [flux] + ([f for f in FLUXES if f != flux] if options.best_aperture else [])
    exptime = src["exptime"].to_numpy(float)
    young = young_scintillation(
        options.telescope_diameter_m, exptime, src["airmass"].to_numpy(float), float(site["height_m"])
    )
    constant = ~sol.star_variable[star]
    steady = usable & constant
    dmag = _flux_offsets(src, codes, star, u, v, inst, err, exptime, steady, fluxes, flux, n_frames, n_stars)
    clean = steady & (flags == 0)
    cells = _Cells(codes, u, v, n_frames, int((clean & np.isfinite(mag_ens)).sum()))
    noise = _FluxNoise(
        fluxes, dmag, _FluxErrors(src, fluxes, err), young, star, flags, steady, n_stars, options.scintillation_factor
    )
    fits, choice, best_mag, best_var = noise.choose(mag_ens, 0.0)
    excess = cells.excess(clean, star, best_mag, best_var, n_stars)
    # frames whose stars scatter beyond the model in a cell: local zeropoints there, then the models again
    fix = cells.frames_with(excess)
    local = np.zeros(len(src))
    if fix.size:
        offset, offset_err = _local_zeropoints(src, codes, star, best_mag, best_var, clean, fix, n_stars)
        del best_mag, best_var  # made again: not kept while the next are made
        local = np.negative(offset, out=offset)
        fits, choice, best_mag, best_var = noise.choose(mag_ens + local, np.square(offset_err, out=offset_err))
        excess = cells.excess(clean, star, best_mag, best_var, n_stars)  # what is still left: extra noise
    dmag_ap, phot_err = noise.chosen(choice)
    return _Photometry(
        fluxes=fluxes,
        dmag=dmag_ap,
        phot_err=phot_err,
        fits=fits,
        choice=choice,
        star=star,
        best_mag=best_mag,
        best_err=np.sqrt(best_var + excess[cells.of_point] ** 2),
        young=young,
        diameter_m=float(options.telescope_diameter_m),
        frame_noise=cells.per_frame(excess),
        local=local,
    )


def _flux_offsets(src, codes, star, u, v, inst, err, exptime, steady, fluxes, flux, n_frames, n_stars):
    """Each flux's offset from ``flux`` on the ensemble's scale (:func:`~.apertures.aperture_offsets`), a flux at
    a time.

    Parameters
    ----------
    src : DataFrame
        The field's points (every flux and its error, ``inst_mag``, ``inst_mag_err``).
    codes, star : numpy.ndarray
        Each point's frame and star.
    u, v : numpy.ndarray
        Each point's chip position scaled to [-1, 1].
    inst, err : numpy.ndarray
        Each point's instrumental magnitude in ``flux`` and its error, mag.
    exptime : numpy.ndarray
        Each point's exposure time, s.
    steady : numpy.ndarray
        Usable points of constant stars.
    fluxes : list of str
        The fluxes, ``flux`` first.
    flux : str
        The calibrated flux column.
    n_frames, n_stars : int
        Numbers of frames and stars.

    Returns
    -------
    list of numpy.ndarray or None
        Per flux, what it adds to a point's magnitude in ``flux``, mag, as float32 (a few hundredths of a mag:
        1e-9 mag off, and written as float32); None for ``flux`` itself (0).
    """
    dmag = []
    for f in fluxes:
        if f == flux:
            dmag.append(None)
            continue
        m_f = (
            src["inst_mag"].to_numpy(float, copy=True)  # a copy: the column's own memory is not written
            if f == KRON
            else np.asarray(instrumental_mag(src[f].to_numpy(float), exptime), float)
        )
        m_f -= inst  # the flux's difference from the calibrated one, in place
        e = np.hypot(_FluxErrors.of(src, f), err)
        offsets = aperture_offsets(codes, star, m_f, e, u, v, steady & (e < 0.05), n_frames=n_frames, n_stars=n_stars)
        dmag.append(offsets.astype(np.float32))
    return dmag


class _FluxErrors:
    """Each point's photon error in each flux, made from the sources' columns when asked (a flux at a time: the
    fluxes' errors are not all kept).

    Parameters
    ----------
    src : DataFrame
        The field's points (every flux and its error, ``inst_mag_err``).
    fluxes : list of str
        The fluxes, the calibrated one first.
    err : numpy.ndarray
        Each point's error in the calibrated flux, mag.
    """

    def __init__(self, src: pd.DataFrame, fluxes: list, err: np.ndarray):
        self.src, self.fluxes, self.err = src, fluxes, err

    @staticmethod
    def of(src: pd.DataFrame, f: str) -> np.ndarray:
        """The points' photon error in flux ``f``, mag.

        Parameters
        ----------
        src : DataFrame
            The points.
        f : str
            The flux (Kron's is ``inst_mag_err``).

        Returns
        -------
        numpy.ndarray
            The errors (NaN where the flux is not positive).
        """
        if f == KRON:
            return src["inst_mag_err"].to_numpy(float)
        return np.asarray(instrumental_mag_err(src[f].to_numpy(float), src[f"{f}_err"].to_numpy(float)), float)

    def __getitem__(self, k: int) -> np.ndarray:
        """The photon error of flux ``k`` (the calibrated flux's own ``err``).

        Parameters
        ----------
        k : int
            The flux's index.

        Returns
        -------
        numpy.ndarray
            The errors, mag.
        """
        return self.err if k == 0 else self.of(self.src, self.fluxes[k])


@dataclass
class _FluxNoise:
    """The noise model of each flux of a field's points and each star's choice among them (see
    :func:`_photometry`): ``dmag`` each flux's offsets (:func:`_flux_offsets`), ``phot_err`` their photon errors
    (:class:`_FluxErrors`), ``young`` (N,) Young's scintillation, ``steady`` (N,) the usable points of constant
    stars the models are fitted to. A flux at a time: no (K, N) arrays."""

    fluxes: list
    dmag: list
    phot_err: _FluxErrors
    young: np.ndarray
    star: np.ndarray
    flags: np.ndarray
    steady: np.ndarray
    n_stars: int
    scint_factor: float

    def model(self, k: int, mag: np.ndarray, pe: np.ndarray):
        """The noise fits of flux ``k``.

        Parameters
        ----------
        k : int
            The flux's index in ``fluxes``.
        mag : numpy.ndarray
            The points' ensemble-calibrated magnitudes (before the flux's ``dmag``), mag.
        pe : numpy.ndarray
            The points' photon errors in the flux, mag.

        Returns
        -------
        tuple of NoiseFit
            The fits of the unflagged and of the blended points.
        """
        star, flags, young, off = self.star, self.flags, self.young, self.dmag[k]
        pts = self.steady & self._measured(mag, off, pe, slice(None)) & (pe < 0.3)
        ok, blended = pts & (flags == 0), pts & (flags == OBJ_MERGED)
        del pts
        fit = fit_noise(
            star,
            mag,
            pe,
            young,
            n_stars=self.n_stars,
            scint_factor=self.scint_factor,
            fit_slope=self.fluxes[k] == KRON,
            points=ok,
            offset=off,
        )
        blend = fit_noise(star, mag, pe, young, n_stars=self.n_stars, fixed=fit, points=blended, offset=off)
        return fit, blend

    @staticmethod
    def _measured(mag, off, pe, b):
        """Points of ``b`` with a magnitude in the flux (``mag + off`` finite) and a positive photon error."""
        m = np.isfinite(mag[b]) & (pe[b] > 0)
        return m if off is None else m & np.isfinite(off[b])

    def variance(self, k: int, fits, mag: np.ndarray, pe: np.ndarray, extra, b: slice) -> np.ndarray:
        """The modelled variance of the points of ``b`` in flux ``k``.

        Parameters
        ----------
        k : int
            The flux's index.
        fits : tuple of NoiseFit
            Its fits (:meth:`model`).
        mag, pe : numpy.ndarray
            The points' magnitudes (before the flux's ``dmag``) and photon errors in the flux, mag.
        extra : numpy.ndarray or float
            A variance each point carries beyond the model (its local zeropoint's), mag^2.
        b : slice
            The points.

        Returns
        -------
        numpy.ndarray
            Their variances, mag^2 (NaN where a point has no magnitude in the flux).
        """
        fit, blend = fits
        y, p = self.young[b], pe[b]
        v = np.where((self.flags[b] & OBJ_MERGED) != 0, blend.variance(p, y), fit.variance(p, y))
        v += extra[b] if np.ndim(extra) else extra
        return np.where(self._measured(mag, self.dmag[k], pe, b), v, np.nan)

    def choose(self, mag: np.ndarray, extra):
        """Each flux's model, each star's choice, and the points in their star's flux.

        Parameters
        ----------
        mag : numpy.ndarray
            The points' ensemble-calibrated magnitudes, mag.
        extra : numpy.ndarray or float
            A variance each point carries beyond the model, mag^2.

        Returns
        -------
        fits : list of tuple
            The fits of every flux (:meth:`model`).
        choice : numpy.ndarray
            Each star's flux index.
        best_mag : numpy.ndarray
            The points' magnitudes in their star's flux, mag.
        best_var : numpy.ndarray
            Their modelled variance, mag^2.
        """
        star, n = self.star, len(self.star)
        fits, counts, sums = [], [], []
        for k in range(len(self.fluxes)):  # a flux's fits, then its stars' sums of variance (all the choice needs)
            pe = self.phot_err[k]
            fits.append(self.model(k, mag, pe))
            c_k, s_k = np.zeros(self.n_stars, np.intp), np.zeros(self.n_stars)
            for b in blocks(n):
                c, t = variance_sums(star[b], self.variance(k, fits[k], mag, pe, extra, b), self.n_stars)
                c_k += c
                s_k += t
            counts.append(c_k)
            sums.append(s_k)
        choice = choose_from_sums(np.stack(counts), np.stack(sums))
        best_mag, best_var = np.array(mag, float), np.empty(n)
        for k in range(len(self.fluxes)):  # the chosen flux's variance made again, its offset added
            pe = self.phot_err[k]
            for b in blocks(n):
                on = choice[star[b]] == k
                best_var[b][on] = self.variance(k, fits[k], mag, pe, extra, b)[on]
                if self.dmag[k] is not None:
                    best_mag[b][on] += self.dmag[k][b][on]
        return fits, choice, best_mag, best_var

    def chosen(self, choice: np.ndarray):
        """Each point's offset and photon error in its star's flux, float32 (as the detrend rows hold them).

        Parameters
        ----------
        choice : numpy.ndarray
            Each star's flux index.

        Returns
        -------
        dmag, phot_err : numpy.ndarray
            Per point, mag.
        """
        n = len(self.star)
        dmag, phot_err = np.zeros(n, np.float32), np.empty(n, np.float32)
        for k in range(len(self.fluxes)):
            pe = self.phot_err[k]
            for b in blocks(n):
                on = choice[self.star[b]] == k
                phot_err[b][on] = pe[b][on]
                if self.dmag[k] is not None:
                    dmag[b][on] = self.dmag[k][b][on]
        return dmag, phot_err


class _Cells:
    """A grid on each frame of about :data:`CELL_STARS` constant stars a cell (1 x 1 to 8 x 8): where a frame's
    extra noise (:func:`~.noise.frame_excess`) is looked for, a cloud's edge crossing part of a chip."""

    def __init__(self, codes, u, v, n_frames: int, n_clean: int):
        self.n_frames = n_frames
        self.side = side = int(np.clip(np.sqrt(n_clean / max(n_frames, 1) / CELL_STARS), 1, 8))
        self.codes = codes
        self.of_point = (
            codes * side * side
            + np.clip(((u + 1) * side / 2).astype(np.int64), 0, side - 1) * side
            + np.clip(((v + 1) * side / 2).astype(np.int64), 0, side - 1)
        )

    def excess(self, pts, star, mag, var, n_stars) -> np.ndarray:
        """Each cell's extra noise from the points ``pts`` (:func:`~.noise.frame_excess`).

        Parameters
        ----------
        pts : numpy.ndarray
            Mask of the points to use (constant stars' clean points).
        star : numpy.ndarray
            Each point's star.
        mag, var : numpy.ndarray
            The points' magnitudes and modelled variances.
        n_stars : int
            Number of stars.

        Returns
        -------
        numpy.ndarray
            Each cell's extra noise, mag (frame-major).
        """
        ok = pts & np.isfinite(mag) & np.isfinite(var)
        n_cells = self.n_frames * self.side**2
        return frame_excess(self.of_point[ok], star[ok], mag[ok], var[ok], n_frames=n_cells, n_stars=n_stars)

    def per_frame(self, excess) -> np.ndarray:
        """Each frame's largest cell value.

        Parameters
        ----------
        excess : numpy.ndarray
            A value per cell (frame-major).

        Returns
        -------
        numpy.ndarray
            A value per frame.
        """
        return excess.reshape(self.n_frames, self.side**2).max(axis=1)

    def frames_with(self, excess) -> np.ndarray:
        """The frames with a cell of positive ``excess``.

        Parameters
        ----------
        excess : numpy.ndarray
            A value per cell (frame-major).

        Returns
        -------
        numpy.ndarray
            The frames' indices.
        """
        return np.flatnonzero(self.per_frame(excess) > 0)


def _local_zeropoints(src, codes, star, mag, var, clean, fix, n_stars):
    """The local zeropoint of each point of the frames ``fix`` (:func:`~.local.local_offsets`), its neighbours'
    residuals taken about their stars' weighted means over the other frames."""
    elsewhere = clean & ~np.isin(codes, fix) & np.isfinite(mag) & np.isfinite(var)
    w = np.where(elsewhere, 1.0 / np.where(elsewhere, var, 1.0), 0.0)
    sw = np.bincount(star, w, n_stars)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(star, w * np.where(elsewhere, mag, 0.0), n_stars) / sw
    x, y = src["x"].to_numpy(float), src["y"].to_numpy(float)
    return local_offsets(codes, x, y, mag - mean[star], var, clean & (sw[star] > 0), fix)


def _detrend(src, codes, star, mag, err, usable, sol, frames, n_frames, n_stars, options, site):
    """EPD then TFA of the field's stars with enough usable points: a DataFrame of ``source_id``, ``frame_id``,
    ``epd``, ``tfa`` and their terms, or None.

    The star x frame matrices are made once: the magnitudes and EPD's parameters in float64 (nearly collinear
    parameters, airmass and hour angle over a short night, tell apart only at that precision), the parameters in
    one (S, E, P) array, the errors in float32 (weights to 1e-7); the variables (no trend of their own) are left
    out of the fits, not copied out.
    """
    n_pts = np.bincount(star[usable], minlength=n_stars)
    keep = n_pts >= options.detrend_min_points
    if not keep.any():
        return None
    sidx = np.flatnonzero(keep)
    row_of = np.full(n_stars, -1)
    row_of[sidx] = np.arange(sidx.size)
    pts = np.flatnonzero(usable & keep[star])
    r, c = row_of[star[pts]], codes[pts]
    S, E = sidx.size, n_frames
    Y = np.full((S, E), np.nan)
    ERR = np.full((S, E), np.nan, np.float32)
    Y[r, c], ERR[r, c] = mag[pts], err[pts]
    # a variable's own signal would become its trend: variables get none (their detrended = ensemble mags)
    fit = ~sol.star_variable[sidx]
    fr = frames.set_index("frame_id")
    frame_ids = np.asarray(pd.Index(src["frame_id"]).unique().sort_values())
    t = fr.loc[frame_ids, "mjd"].to_numpy(float)
    fit_args = {"min_points": options.detrend_min_points, "window": options.detrend_window}
    fit_args["alpha"] = options.detrend_alpha
    trend_e, terms_e = np.where(np.isfinite(Y), 0.0, np.nan), np.zeros(S, np.int64)
    if options.epd_params:
        params = _epd_params(src, fr, pts, r, c, (S, E), options.epd_params, float(site["lon_deg"]))
        trend_e, terms_e = epd(Y, ERR, params, t, stars=fit, **fit_args)
        del params
        trend_e[~fit] = np.where(np.isfinite(Y[~fit]), 0.0, np.nan)
        terms_e[~fit] = 0
    Y2 = np.subtract(Y, trend_e, out=Y, where=np.isfinite(trend_e))  # Y less the EPD trend, in place
    with np.errstate(all="ignore"):
        med = np.nanmedian(Y2, axis=1, keepdims=True)
        rms = MAD_TO_SIGMA * np.nanmedian(np.abs(Y2 - med), axis=1)
    quiet = choose_templates(Y2, rms, max_templates=options.max_templates, exclude=~sol.star_used[sidx])
    basis = trend_basis(Y2, quiet)
    trend_t, terms_t = tfa(Y2, ERR, basis, t, stars=fit, **fit_args)
    trend_t[~fit] = np.where(np.isfinite(Y2[~fit]), 0.0, np.nan)
    terms_t[~fit] = 0
    e, tt = trend_e[r, c], trend_t[r, c]
    del Y, Y2, ERR, trend_e, trend_t  # the matrices: not kept while the rows are made
    good = np.isfinite(e) | np.isfinite(tt)
    return pd.DataFrame(
        {
            "source_id": src["source_id"].to_numpy(np.int64)[pts][good],
            "frame_id": src["frame_id"].to_numpy(np.int64)[pts][good],
            "epd": np.nan_to_num(e[good]).astype(np.float32),
            "tfa": np.nan_to_num(tt[good]).astype(np.float32),
            "epd_terms": np.maximum(terms_e[r[good]], 0).astype(np.int16),
            "tfa_terms": np.maximum(terms_t[r[good]], 0).astype(np.int16),
        }
    )


def _epd_params(src, fr, pts, r, c, shape, names, lon_deg):
    """EPD's parameters of the detrended points on the star x frame grid, each standardised (its mean 0 and its
    standard deviation 1 over the points), as one (S, E, P) array (NaN where a star has no point)."""
    out = np.full((*shape, len(names)), np.nan)
    for k, name in enumerate(names):
        if name == "hour_angle":  # of each point's frame
            ra = fr.loc[src["frame_id"].to_numpy()[pts], "ra_center"].to_numpy(float)
            vals = _hour_angle(pd.DataFrame({"mjd": src["mjd"].to_numpy(float)[pts], "ra_center": ra}), lon_deg)
        else:
            vals = src[name].to_numpy(float)[pts]
        ok = vals[np.isfinite(vals)]
        mu, sd = (float(np.mean(ok)), float(np.std(ok))) if ok.size else (np.nan, np.nan)
        out[r, c, k] = (vals - mu) / (sd if sd > 0 else 1.0)
    return out


# -- corrections of any point (objects, readers) -------------------------------------------------------------
def point_corrections(
    rows: pd.DataFrame, frame_id: np.ndarray, x: np.ndarray, y: np.ndarray, nx: np.ndarray, ny: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble correction of each point and its error, mag, from its frame's ensemble row.

    Parameters
    ----------
    rows : DataFrame
        LAKE/ensemble rows, one per frame (of several, the last ok one counts).
    frame_id : int array (N,)
        Each point's frame.
    x, y : float arrays (N,)
        Each point's chip position, px.
    nx, ny : arrays (N,)
        The size of each point's frame, px.

    Returns
    -------
    correction : ndarray (N,)
        The correction, mag; NaN for a point whose frame has no ok row.
    correction_err : ndarray (N,)
        Its error from the row's ``terms_cov``, mag; NaN likewise.
    """
    from skylake.ensemble.solve import design

    rows = rows[rows["status"] == "ok"].drop_duplicates("frame_id", keep="last").set_index("frame_id")
    at = pd.Index(rows.index).get_indexer(np.asarray(frame_id, np.int64))
    has = at >= 0
    corr = np.full(len(at), np.nan)
    corr_err = np.full(len(at), np.nan)
    if not has.any():
        return corr, corr_err
    u = 2 * np.asarray(x, float) / (np.asarray(nx, float) - 1) - 1
    v = 2 * np.asarray(y, float) / (np.asarray(ny, float) - 1) - 1
    X = design(u[has], v[has], 2)  # all six terms; the ones beyond a row's order are 0
    T = rows[TERM_COLUMNS].to_numpy(float)[at[has]]
    corr[has] = np.einsum("ij,ij->i", X, np.nan_to_num(T))
    order = rows["spatial_order"].to_numpy(int)[at[has]]
    covs = rows["terms_cov"].to_numpy()[at[has]]
    var = np.zeros(has.sum())
    for o in np.unique(order):
        P = 1 + n_spatial_terms(int(o))
        sel = np.flatnonzero(order == o)
        C = np.zeros((sel.size, P, P))
        iu = np.triu_indices(P)
        for k, s in enumerate(sel):
            C[k][iu] = covs[s]
            C[k] = C[k] + np.triu(C[k], 1).T
        var[sel] = np.einsum("ij,ijk,ik->i", X[sel, :P], C, X[sel, :P])
    corr_err[has] = np.sqrt(np.maximum(var, 0.0))
    return corr, corr_err


# -- the stage ------------------------------------------------------------------------------------------------
def select_frames(
    lake: Lake, night: str | None = None, since: str | None = None, nights=None, pipeline_version: str | None = None
) -> pd.DataFrame:
    """Frame rows of one night, the nights since a date, ``nights`` (partition names), or every night.

    Parameters
    ----------
    lake : Lake
        The lake.
    night : str, optional
        Only this night (YYYY-MM-DD).
    since : str, optional
        Only the nights from this one on (YYYY-MM-DD); ignored with ``night``.
    nights : iterable of str, optional
        Only these nights (partition names).
    pipeline_version : str, optional
        Only the frames of this pipeline version.

    Returns
    -------
    DataFrame
        The :data:`FRAME_COLUMNS` of the frames selected: single frames only (a coadd's photons are its frames'
        again, so it is never an epoch of a light curve).

    Raises
    ------
    NightError
        ``night`` or ``since`` is not a date YYYY-MM-DD.
    """
    selection = FrameSelection(
        night=night,
        since=None if night is not None else since,
        nights=nights,
        pipeline_version=pipeline_version,
        single=True,
    )
    return lake_frames.select_frames(lake, selection, FRAME_COLUMNS)


def ensemble(
    lake: Lake | str | os.PathLike,
    *,
    night: str | None = None,
    since: str | None = None,
    redo: bool = False,
    client=None,
    nights=None,
    profile: Profile | str | None = None,
    pipeline_version: str | None = None,
) -> list[EnsembleReport]:
    """Solve the ensemble of the selected nights (see the module docstring); one report per profile.

    Which of the nights need solving is the night products' rule (:mod:`skylake.night_products`): a night
    solved since its frames and zeropoints last changed is skipped unless ``redo``.

    Parameters
    ----------
    lake : Lake or str or os.PathLike
        The lake, or its location (it must be writable).
    night : str, optional
        Only this night (YYYY-MM-DD).
    since : str, optional
        Only the nights from this one on (YYYY-MM-DD).
    redo : bool
        Solve again nights already solved with the same inputs (and other settings: ``profile``).
    client : distributed.Client, optional
        A dask distributed Client for the tasks (None: this process).
    nights : iterable of str, optional
        Only these nights (partition names).
    profile : Profile or str, optional
        Overrides the profile frames were ingested with.
    pipeline_version : str, optional
        Only the frames of this pipeline version.

    Returns
    -------
    list of EnsembleReport
        One report per profile and pipeline version of the frames selected (frames whose profile cannot be
        loaded are logged and left out).
    """
    from skylake.night_products import night_plan

    lake = Lake.open(lake) if isinstance(lake, (str, os.PathLike)) else lake
    lake.check_writable()
    version = lake.log.latest_version()
    frames = select_frames(lake, night, since, nights, pipeline_version)
    partition = frames["night"].map(night_partition)
    current = set()
    if not redo and len(frames):
        plan = night_plan(lake, tables.get(ENSEMBLE), sorted(set(partition)))
        current = {night_partition(n) for n in plan.current}
    return _solve_profiles(lake, frames, partition, current, version, profile, client)


def _solve_profiles(lake, frames, partition, current, version, profile, client) -> list[EnsembleReport]:
    """Solve each profile's frames of the nights not ``current`` (partition names)."""
    from skylake.profile_store import frames_profile

    reports = []
    for (name, pv), group in frames.groupby(["profile", "pipeline_version"], sort=True, dropna=False):
        try:
            prof = frames_profile(lake, name, pv, profile)
        except ProfileError as exc:
            log.warning("frames of profile %r not solved: %s (pass the profile with --pipeline)", name, exc)
            continue
        report = _ensemble_profile(lake, group, prof, version, client, skip=current)
        reports.append(report)
    return reports


def build(lake: Lake, nights: list, *, runner, version: int) -> tuple[set, list[EnsembleReport]]:
    """Solve ``nights`` again, whole (the night products' hook: :mod:`skylake.night_products`).

    Parameters
    ----------
    lake : Lake
        The lake, writable.
    nights : list
        The nights (None: the unknown night).
    runner : skylake.runtime.Runner
        Where the fields' tasks run.
    version : int
        The lake version the inputs are read at (stored as ``built_version``).

    Returns
    -------
    written : set
        The nights that got ensemble rows.
    reports : list of EnsembleReport
        One per profile and pipeline version.
    """
    frames = select_frames(lake, nights=[night_partition(n) for n in nights])
    reports = _solve_profiles(lake, frames, frames["night"].map(night_partition), set(), version, None, runner.client)
    written = {None if n == "unknown" else n for r in reports for n in r.written_nights}
    return written, [r for r in reports if r.solved_nights or r.by_status]


def drop(tx, lake: Lake, nights: list) -> None:
    """Stage the removal of the nights' ensemble, detrend and noise rows (their frames are gone).

    Parameters
    ----------
    tx : skylake.lake.transaction.Transaction
        The hook's transaction.
    lake : Lake
        The lake.
    nights : list
        The nights (None: the unknown night).
    """
    for name in (ENSEMBLE, DETREND, NOISE):
        tables.get(name).remove_where(tx, lambda data: np.ones(data.num_rows, bool), nights=nights)


def built(lake: Lake, nights) -> pa.Table:
    """The night and ``built_version`` of the nights' ensemble rows (for the night products' hook); a row solved
    with other settings than its frames' profile now gives (``ens_key``) counts as built before any commit (0).

    Parameters
    ----------
    lake : Lake
        The lake.
    nights : iterable or None
        Only these nights (None: every night).

    Returns
    -------
    pyarrow.Table
        ``night`` and ``built_version`` per row.
    """
    from skylake.profile_store import frames_profile

    rows = tables.get(ENSEMBLE).read(lake, columns=["built_version", "night", "ens_key", "frame_id"], nights=nights)
    if not rows.num_rows:
        return rows.select(["night", "built_version"])
    frames = lake_frames.select_frames(
        lake, FrameSelection(nights=sorted({night_partition(n) for n in rows.column("night").to_pylist()})),
        ["frame_id", "night", "profile", "pipeline_version"],
    )  # fmt: skip
    current = {}
    for (name, pv), group in frames.groupby(["profile", "pipeline_version"], dropna=False):
        with contextlib.suppress(ProfileError):
            prof = frames_profile(lake, name, pv, None)
            key = ens_key(*settings_of(prof), prof.calibration.flux)
            current.update(dict.fromkeys(group["frame_id"].tolist(), key))
    now = np.array([current.get(f) for f in rows.column("frame_id").to_pylist()], dtype=object)
    same = np.array([n is None or n == k for n, k in zip(now, rows.column("ens_key").to_pylist())])
    version = rows.column("built_version").to_pandas().astype("Int64").mask(~same, 0)  # null: an older lake's
    return pa.table({"night": rows.column("night"), "built_version": pa.array(version, pa.int64(), from_pandas=True)})


def _eligible(lake: Lake, frames: pd.DataFrame, refcat: str) -> tuple[pd.DataFrame, Counter]:
    """The frames that can enter a solve (ok, placed by a WCS, with an ok latest zeropoint), with ``zp``,
    ``apcor`` and ``calib_batch``; and the others counted by why not."""
    why = Counter()
    is_allsky = frames["wcs_source"].fillna("").eq("camera")
    why["all-sky (camera model)"] += int(is_allsky.sum())
    live = frames[~is_allsky]
    not_ok = live["status"] != "ok"
    why["not ok at ingest (rejected or a quality status)"] += int(not_ok.sum())
    live = live[~not_ok]
    nights = sorted(set(live["night"].map(night_partition)))
    cols = ["frame_id", "refcat", "zp", "zp_status", "apcor", "color_term", "batch_id", "calibrated_at", "flux"]
    zps = (
        lake.read_night_table(ZEROPOINTS, columns=cols, filter=pc.field("refcat") == refcat, nights=nights).to_pandas()
        if nights
        else pd.DataFrame(columns=cols)
    )
    zps = latest_calibration(zps, LatestPolicy(refcat=refcat)) if len(zps) else zps
    zps = zps[zps["zp_status"] == ZpStatus.OK]
    zps = zps[["frame_id", "zp", "apcor", "color_term", "batch_id"]].rename(columns={"batch_id": "calib_batch"})
    out = live.merge(zps, on="frame_id", how="inner")
    why["no ok zeropoint"] += len(live) - len(out)
    return out, Counter({k: v for k, v in why.items() if v})


def _ensemble_profile(
    lake: Lake, frames: pd.DataFrame, prof: Profile, version: int, client, skip: set
) -> EnsembleReport:
    """Solve the nights of one profile's ``frames`` but those in ``skip`` (partition names), each whole, and
    commit them (the rows stamped ``version``)."""
    from skylake.calib.store import read_table
    from skylake.lake.pieces import piece_run
    from skylake.runtime import Runner

    t0 = time.monotonic()
    report = EnsembleReport(profile=prof.name, nights=frames["night"].nunique(dropna=False))
    options, settings = settings_of(prof)
    refcat = prof.calibration.refcat
    if not options.enabled or not refcat:
        report.not_eligible["ensemble disabled" if not options.enabled else "no [calibration] refcat"] = len(frames)
        return report
    key = ens_key(options, settings, prof.calibration.flux)
    todo, why = _eligible(lake, frames, refcat)
    report.not_eligible = dict(why)
    skipped = todo["night"].map(night_partition).isin(skip).to_numpy()
    report.skipped_nights = int(todo["night"][skipped].map(night_partition).nunique())
    todo = todo[~skipped]
    looked_at = sorted(set(frames["night"].map(night_partition)) - set(skip))
    done = (
        read_table(lake, ENSEMBLE, ["frame_id", "night"], nights=looked_at)
        if looked_at
        else pd.DataFrame(columns=["frame_id", "night"])
    )
    done = done[done["frame_id"].isin(frames["frame_id"])]  # this profile's: another's in the night stay
    items, solved_nights = [], []
    for n, group in todo.groupby(todo["night"].map(night_partition), sort=True):
        solved_nights.append(n)
        fields = group_fields(group.reset_index(drop=True))
        for f in np.unique(fields):
            items.append(
                {
                    "night": None if n == "unknown" else n,
                    "field": int(f),
                    "profile": prof.name,
                    "frames": group.reset_index(drop=True)[fields == f],
                }
            )
    report.solved_nights = len(solved_nights)
    report.fields = len(items)
    gone = done[~done["night"].map(night_partition).isin(solved_nights)]
    if len(gone):  # solved before, nothing of it eligible now (zeropoints gone, frames rejected): its rows go
        _drop_rows(lake, set(gone["night"].map(night_partition)), set(gone["frame_id"]), report)
    if not items:
        report.seconds = time.monotonic() - t0
        return report
    runner = Runner(client)
    with contextlib.ExitStack() as stack:
        run = stack.enter_context(piece_run(lake.store))
        results = list(
            runner.map(
                solve_field,
                items,
                window=max(1, runner.workers()) * 2,
                lake_root=lake.store.location,
                run=run,
                flux=prof.calibration.flux,
                flags_mask=int(prof.calibration.flags_mask),
                options=options,
                settings=settings,
                identity=key,
                refcat=refcat,
                site={"lon_deg": float(prof.site.lon_deg), "height_m": float(prof.site.height_m)},
            )
        )
        _commit(lake, results, solved_nights, set(todo["frame_id"]) | set(done["frame_id"]), report, version)
    report.frames = sum(len(r.rows) for r in results)
    report.seconds = time.monotonic() - t0
    log.info("%s", report)
    return report


def _drop_rows(lake: Lake, nights: set, frame_ids: set, report: EnsembleReport) -> None:
    """Remove the ensemble and detrend rows of ``frame_ids`` in ``nights`` (partition names), in one commit."""
    ids = np.fromiter(frame_ids, np.int64)
    night_names = {None if n == "unknown" else n for n in nights}
    with lake.transaction(ENSEMBLE) as tx:
        for name in (ENSEMBLE, DETREND):
            tables.get(name).remove_where(
                tx, lambda t: np.isin(t.column("frame_id").to_numpy(), ids), nights=night_names
            )
        entry = tx.commit(summary={"ensemble": report.profile, "nights": len(nights), "dropped": len(ids)})
    report.commit = entry.version if entry else report.commit


def _commit(
    lake: Lake, results: list[FieldResult], nights: list[str], frame_ids: set, report: EnsembleReport, version: int
) -> None:
    """Replace the nights' ensemble and detrend rows (of ``frame_ids``) with the results, in one commit (the rows
    stamped ``built_version = version``, the lake version the inputs were read at)."""

    rows = pd.concat([r.rows for r in results], ignore_index=True)
    ids = np.fromiter(frame_ids, np.int64)
    night_names = {None if n == "unknown" else n for n in nights}
    with lake.transaction(ENSEMBLE) as tx:
        alive = set(
            lake.read_frames(columns=["frame_id"], filter=night_filter(night_names)).column("frame_id").to_pylist()
        )
        rows = rows[rows["frame_id"].isin(alive)].reset_index(drop=True)

        def of_frames(table: pa.Table) -> np.ndarray:
            return np.isin(table.column("frame_id").to_numpy(), ids)

        def of_profile(table: pa.Table) -> np.ndarray:
            return np.asarray(pc.equal(table.column("profile"), report.profile).to_numpy(zero_copy_only=False), bool)

        tables.get(ENSEMBLE).remove_where(tx, of_frames, nights=night_names)
        tables.get(DETREND).remove_where(tx, of_frames, nights=night_names)
        tables.get(NOISE).remove_where(tx, of_profile, nights=night_names)
        now = _now()
        staged = rows.assign(batch_id=tx.batch_id, computed_at=now, built_version=version)
        tx.stage_nights(
            ENSEMBLE,
            conform(pa.Table.from_pandas(staged.drop(columns="night"), preserve_index=False), ENSEMBLE),
            staged["night"].tolist(),
        )
        noise = [r.noise for r in results if r.noise is not None]
        if noise:
            noise = pd.concat(noise, ignore_index=True).assign(batch_id=tx.batch_id, computed_at=now)
            report.noise = noise.drop(columns=["computed_at"]).to_dict("records")
            tx.stage_nights(
                NOISE,
                conform(pa.Table.from_pandas(noise.drop(columns="night"), preserve_index=False), NOISE),
                noise["night"].tolist(),
            )
        for k, r in enumerate(results):
            if r.piece is None:
                continue
            rel, n = r.piece
            night = r.rows["night"].iloc[0]
            tx.adopt(DETREND, f"{night_dir(night)}/{tx.batch_id}-{k}.parquet", n, rel)
            report.detrended_points += r.detrended
        entry = tx.commit(summary={"ensemble": report.profile, "nights": len(nights), "frames": len(rows)})
    report.commit = entry.version if entry else None
    report.by_status = dict(Counter(rows["status"]))
    report.written_nights = sorted(set(rows["night"].map(night_partition))) if entry else []
