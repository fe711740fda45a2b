"""Per-frame photometric zeropoints and per-night extinction: pure numpy/pandas functions.

Conventions (all magnitudes in mag): a source's instrumental magnitude is ``inst_mag =
-2.5 log10(flux / exptime)`` (LAKE/sources), its reference magnitude ``ref_mag`` and colour
``ref_color`` come from the catalogue, and the calibration model of one frame is::

    ref_mag - inst_mag = zp + color_term * ref_color      (+ noise)

so ``zp`` is the reference magnitude of a colour-0 source giving 1 ADU/s. Over a night the
zeropoints of clear frames follow ``zp = zp_airmass0 - k_ext * airmass``.

* :func:`select_stars` gives each pair the first reason it cannot be used (saturated, flagged,
  edge, blended, too_bright, too_faint, ref_flagged), or "".
* :func:`color_fit` is the robust line fit of LCO's photcalibration (three passes: a wide cut about
  the median, then two refits keeping residuals under both ``clip_sigma`` robust sigmas and
  ``clip_max_residual``); :func:`clipped_median` is the fit without a colour.
* :func:`frame_zeropoints` runs them per frame as a groupby aggregation and sets ``zp_status``;
  :func:`colour_correct_medians` brings the medians of frames short of coloured stars to colour 0.
* :func:`fit_extinction` (a robust Theil-Sen start, then least squares on the clear frames) and
  :func:`mark_cloudy` work on one night's zeropoints.

A robust sigma is astropy's ``mad_std`` (1.4826 x the median absolute deviation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy.stats import mad_std

from skylake.calib.model import ExtStatus, ZpStatus, colour_offset
from skylake.frame.extract import SATURATED
from skylake.profile import Calibration
from skylake.refcat.schema import flag_bits

__all__ = [
    "SIGMA_FLOOR",
    "FIRST_PASS_SIGMA",
    "PASSES",
    "K_EXT_PLAUSIBLE",
    "select_stars",
    "Fit",
    "clipped_median",
    "color_fit",
    "plane_variation",
    "frame_zeropoint",
    "frame_zeropoints",
    "fit_frames",
    "colour_correct",
    "colour_correct_medians",
    "Extinction",
    "theil_sen",
    "below_clear_sky",
    "fit_extinction",
    "mark_cloudy",
]


SIGMA_FLOOR = 1e-4  # mag: clipping never goes below this, so noise-free data keep every star
FIRST_PASS_SIGMA = 5.0  # LCO photcalibration: pass 1 keeps |zp - median| < 5 sigma
PASSES = 3
#: Extinction coefficients [mag/airmass] a night can have; a fit outside is not reported as ok.
K_EXT_PLAUSIBLE = (-0.05, 1.5)


def select_stars(pairs: pd.DataFrame, cal: Calibration, saturation: np.ndarray) -> np.ndarray:
    """The reason each pair is unusable ("" if usable), testing in :data:`skylake.calib.model.REJECTS` order.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pairs, with flux_max, bkg (ADU), flags, edge_dist (px), inst_mag_err, ref_mag, flags_ref,
        neighbour_mag, n_competing.
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.
    saturation : numpy.ndarray
        Each pair's frame saturation level [ADU].

    Returns
    -------
    numpy.ndarray
        Per pair, the first star cut that applies, or "" (object dtype).
    """
    n = len(pairs)
    reason = np.full(n, "", dtype=object)
    col = {
        c: pairs[c].to_numpy(dtype=float)
        for c in (
            "flux_max",
            "bkg",
            "flags",
            "edge_dist",
            "inst_mag_err",
            "ref_mag",
            "flags_ref",
            "neighbour_mag",
            "n_competing",
        )
    }
    flags = np.nan_to_num(col["flags"]).astype(np.int64)
    ref_flags = np.nan_to_num(col["flags_ref"]).astype(np.int64)
    bright, faint = cal.mag_limits
    with np.errstate(invalid="ignore"):
        tests = (
            # flagged at extraction (a raw pixel at the saturation level), or near it: non-linear
            (
                "saturated",
                ((flags & SATURATED) != 0)
                | (col["flux_max"] + col["bkg"] >= cal.saturation_fraction * np.asarray(saturation, float)),
            ),
            ("flagged", (flags & cal.flags_mask) != 0),
            ("edge", ~(col["edge_dist"] >= cal.edge_distance_px)),
            # a deblended detection, a 2nd catalogue star bright enough to bias it, or 2+ sources
            # of the frame closest to the same star
            (
                "blended",
                ((flags & cal.blend_flags) != 0)
                | (col["neighbour_mag"] < col["ref_mag"] + cal.blend_delta_mag)
                | (col["n_competing"] > 0)
                | ((ref_flags & flag_bits()["NEIGHBOUR"]) != 0),
            ),
            ("too_bright", col["ref_mag"] < bright),
            ("too_faint", ~(col["ref_mag"] <= faint) | ~(col["inst_mag_err"] <= cal.max_inst_mag_err)),
            ("ref_flagged", (ref_flags & cal.ref_flags_mask) != 0),
        )
    for name, bad in tests:
        reason[(reason == "") & bad] = name
    return reason


@dataclass
class Fit:
    """Result of one frame's fit.

    Attributes
    ----------
    zp : float
        The zeropoint [mag] (NaN when no star could be used).
    color_term : float
        The colour term (NaN without a colour fit).
    zp_err : float
        The zeropoint's standard error [mag].
    scatter : float
        The robust sigma of the residuals of the stars kept [mag].
    keep : numpy.ndarray
        Marks the stars in the final fit (boolean).
    """

    zp: float
    color_term: float
    zp_err: float
    scatter: float
    keep: np.ndarray


def _line(c: np.ndarray, y: np.ndarray, sigma: float | None = None) -> tuple[float, float, float]:
    """Least-squares y = a + b c; returns a, b and the standard error of a (from ``sigma``, the points'
    scatter, when given; else from the residuals)."""
    n = c.size
    cbar = c.mean()
    sxx = float(np.sum((c - cbar) ** 2))
    b = float(np.sum((c - cbar) * (y - y.mean())) / sxx) if sxx > 0 else 0.0
    a = float(y.mean() - b * cbar)
    resid = y - a - b * c
    s2 = float(np.sum(resid**2) / (n - 2)) if n > 2 else float("nan")
    if sigma is not None:
        s2 = sigma**2
    err = float(np.sqrt(s2 * (1.0 / n + cbar**2 / sxx))) if sxx > 0 else float("nan")
    return a, b, err


def _scatter(resid: np.ndarray) -> float:
    """The points' scatter for a zeropoint's error: the robust sigma (1.4826 MAD) of *every* usable residual,
    not only of those the clipping kept. The kept ones' scatter is narrowed by the clipping, and more so when
    the clip level itself came out low by chance: on 20-60 stars the errors were then 8-40 % too small."""
    resid = resid[np.isfinite(resid)]
    return float(mad_std(resid)) if resid.size else float("nan")


def clipped_median(dm: np.ndarray, clip_sigma: float, max_iter: int = 10) -> Fit:
    """Sigma-clipped median of ``dm`` (ref - inst), clipping at ``clip_sigma`` robust sigmas until stable.

    The error is that of a median, 1.2533 sigma / sqrt(n).

    Parameters
    ----------
    dm : numpy.ndarray
        Each star's ``ref_mag - inst_mag`` [mag]; NaN for a star not to use.
    clip_sigma : float
        The clip level [robust sigmas].
    max_iter : int, optional
        The most clipping passes.

    Returns
    -------
    Fit
        The median as ``zp`` (``color_term`` NaN) and the stars kept.
    """
    dm = np.asarray(dm, float)
    keep = np.isfinite(dm)
    for _ in range(max_iter):
        if not keep.any():
            break
        med, sig = np.median(dm[keep]), max(mad_std(dm[keep]), SIGMA_FLOOR)
        new = np.isfinite(dm) & (np.abs(dm - med) <= clip_sigma * sig)
        if np.array_equal(new, keep):
            break
        keep = new
    if not keep.any():
        return Fit(np.nan, np.nan, np.nan, np.nan, keep)
    zp = float(np.median(dm[keep]))
    scatter = float(mad_std(dm[keep]))
    return Fit(zp, np.nan, float(1.2533 * _scatter(dm - zp) / np.sqrt(keep.sum())), scatter, keep)


def color_fit(dm: np.ndarray, color: np.ndarray, clip_sigma: float, max_residual: float) -> Fit:
    """Robust fit of ``dm = zp + color_term * color`` in :data:`PASSES` passes (after LCO photcalibration).

    Pass 1 fits the stars within 5 robust sigmas of the median; each later pass refits the stars whose
    residual from the previous line is below both ``clip_sigma`` robust sigmas and ``max_residual``.

    Parameters
    ----------
    dm : numpy.ndarray
        Each star's ``ref_mag - inst_mag`` [mag]; NaN for a star not to use.
    color : numpy.ndarray
        Each star's colour [mag]; NaN when unknown.
    clip_sigma : float
        The clip level of the later passes [robust sigmas].
    max_residual : float
        The largest residual the later passes keep [mag].

    Returns
    -------
    Fit
        The line (all NaN with fewer than 3 usable stars) and the stars kept.
    """
    dm, color = np.asarray(dm, float), np.asarray(color, float)
    base = np.isfinite(dm) & np.isfinite(color)
    if base.sum() < 3:
        return Fit(np.nan, np.nan, np.nan, np.nan, np.zeros_like(base))
    med, sig = np.median(dm[base]), max(mad_std(dm[base]), SIGMA_FLOOR)
    keep = base & (np.abs(dm - med) < FIRST_PASS_SIGMA * sig)
    a, b, err = _line(color[keep], dm[keep])
    for _ in range(PASSES - 1):
        resid = dm - a - b * color
        sig = max(mad_std(resid[keep]), SIGMA_FLOOR)
        new = base & (np.abs(resid) < min(clip_sigma * sig, max_residual))
        if new.sum() < 3:
            break
        keep = new
        a, b, err = _line(color[keep], dm[keep])
    _, _, err = _line(color[keep], dm[keep], _scatter(np.where(base, dm - a - b * color, np.nan)))
    return Fit(a, b, err, float(mad_std(dm[keep] - a - b * color[keep])), keep)


def plane_variation(resid: np.ndarray, x: np.ndarray, y: np.ndarray, nx: float, ny: float) -> tuple[float, float]:
    """Change of the zeropoint across an ``nx`` x ``ny`` frame from a plane fitted to the residuals.

    Parameters
    ----------
    resid : numpy.ndarray
        The stars' residuals from the frame's zeropoint [mag].
    x, y : numpy.ndarray
        The stars' pixel positions [px].
    nx, ny : float
        The frame's size [px].

    Returns
    -------
    variation : float
        ``|slope_x| (nx - 1) + |slope_y| (ny - 1)`` [mag] (NaN with < 4 stars).
    error : float
        Its standard error [mag] (NaN with < 4 stars).
    """
    if resid.size < 4 or not (nx > 1 and ny > 1):
        return float("nan"), float("nan")
    design = np.column_stack([np.ones_like(x), x / nx, y / ny])
    coef, _, rank, _ = np.linalg.lstsq(design, resid, rcond=None)
    if rank < 3:
        return float("nan"), float("nan")
    dof = resid.size - 3
    s2 = float(np.sum((resid - design @ coef) ** 2) / dof) if dof > 0 else float("nan")
    cov = s2 * np.linalg.inv(design.T @ design)
    scale = np.array([(nx - 1) / nx, (ny - 1) / ny])
    variation = float(np.sum(np.abs(coef[1:]) * scale))
    error = float(np.sqrt(np.sum(np.diag(cov)[1:] * scale**2)))
    return variation, error


def frame_zeropoint(pairs: pd.DataFrame, frame: dict, cal: Calibration, use_color: bool) -> tuple[dict, np.ndarray]:
    """Zeropoint of one frame from its one-to-one pairs (after :func:`select_stars`: column ``reject``).

    ``use_color`` asks for the colour fit; it falls back to the clipped median when
    fewer than ``min_stars`` usable stars have a colour in ``color_range`` (that median is the
    zeropoint at the stars' median colour: :func:`colour_correct_medians` takes it to colour 0).
    zp_method is "none" when no star could be used.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The frame's pairs, with ``reject``, ``ref_mag``, ``inst_mag``, ``ref_color``, ``x`` and ``y``.
    frame : dict
        The frame's row of LAKE/frames, with ``nx`` and ``ny``.
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.
    use_color : bool
        Fit a colour term.

    Returns
    -------
    fields : dict
        The zeropoint fields (zp_fit, zp_err, zp_scatter, zp_n, zp_n_matched, color_term,
        zp_variation, zp_method, color, zp_status, zp_reason).
    reject : numpy.ndarray
        Each pair's final reject reason ("" = used).
    """
    reject = pairs["reject"].to_numpy(dtype=object).copy()
    dm = (pairs["ref_mag"] - pairs["inst_mag"]).to_numpy(dtype=float)
    color = pairs["ref_color"].to_numpy(dtype=float)
    usable = (reject == "") & np.isfinite(dm)
    lo, hi = cal.color_range
    in_range = np.isfinite(color) & (color >= lo) & (color <= hi)
    out = {
        "zp_n_matched": len(pairs),
        "color": "",
        "zp_method": "none",
        "zp_fit": np.nan,
        "zp_err": np.nan,
        "zp_scatter": np.nan,
        "zp_n": 0,
        "color_term": np.nan,
        "zp_variation": np.nan,
        "zp_reason": "",
    }
    if use_color and np.count_nonzero(usable & in_range) >= cal.min_stars:
        reject[usable & ~np.isfinite(color)] = "no_color"
        reject[usable & np.isfinite(color) & ~in_range] = "color_range"
        usable &= in_range
        fit = color_fit(np.where(usable, dm, np.nan), color, cal.clip_sigma, cal.clip_max_residual)
        out.update(color=cal.color_name, zp_method="color_fit", color_term=fit.color_term)
    else:
        fit = clipped_median(np.where(usable, dm, np.nan), cal.clip_sigma)
    reject[usable & ~fit.keep] = "clipped"
    n = int(np.count_nonzero(fit.keep))
    if n and out["zp_method"] == "none":  # "median" only when stars were used; no stars: "none"
        out["zp_method"] = "median"
    out.update(zp_fit=fit.zp, zp_err=fit.zp_err, zp_scatter=fit.scatter, zp_n=n)
    if n >= 4:
        resid = dm[fit.keep] - fit.zp - colour_offset(color[fit.keep], fit.color_term)
        var, var_err = plane_variation(
            resid, pairs["x"].to_numpy(float)[fit.keep], pairs["y"].to_numpy(float)[fit.keep], frame["nx"], frame["ny"]
        )
        out["zp_variation"] = var
    else:
        var, var_err = np.nan, np.nan
    if len(pairs) == 0:
        status, why = (
            ZpStatus.NO_REFERENCE_OVERLAP,
            (
                f"no source within {cal.match_radius_arcsec:g} arcsec of a reference star "
                "(no catalogue coverage, a wrong WCS, or nothing detected)"
            ),
        )
    elif n < cal.min_stars:
        counts = pd.Series(reject[reject != ""]).value_counts()
        cut = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
        status, why = (
            ZpStatus.TOO_FEW_STARS,
            (f"{n} usable stars < min_stars {cal.min_stars} ({len(pairs)} matched; cut: {cut})"),
        )
    elif not fit.scatter <= cal.max_scatter:
        status, why = (
            ZpStatus.HIGH_SCATTER,
            (
                f"scatter {fit.scatter:.3f} mag > max_scatter {cal.max_scatter:g} "
                f"(patchy cloud or bad photometry; fit gave zp {fit.zp:.3f})"
            ),
        )
    elif var > cal.max_zp_variation and var > 3 * var_err:
        status, why = (
            ZpStatus.CLOUDY,
            (
                f"zeropoint changes by {var:.3f} mag across the frame > max_zp_variation "
                f"{cal.max_zp_variation:g} (cloud; fit gave zp {fit.zp:.3f})"
            ),
        )
    else:
        status, why = ZpStatus.OK, ""
    out.update(zp_status=status, zp_reason=why)
    return out, reject


def frame_zeropoints(
    pairs: pd.DataFrame, frames: pd.DataFrame, cal: Calibration, use_color: bool
) -> tuple[pd.DataFrame, pd.Series]:
    """Per-frame zeropoints of ``frames`` (frame_id, nx, ny, saturation) from their one-to-one pairs.

    :func:`fit_frames`, then the frames that fell back to the median brought to colour 0 by the
    batch's fitted colour terms (:func:`colour_correct_medians`).

    Parameters
    ----------
    pairs : pandas.DataFrame
        The frames' one-to-one pairs.
    frames : pandas.DataFrame
        The frames' rows of LAKE/frames, with frame_id, nx, ny and saturation.
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.
    use_color : bool
        Fit colour terms.

    Returns
    -------
    zeropoints : pandas.DataFrame
        One row per frame, indexed by frame_id.
    rejects : pandas.Series
        Each pair's final reject reason ("" = used).
    """
    table, rejects = fit_frames(pairs, frames, cal, use_color)
    return colour_correct(table, pairs, rejects, cal, use_color), rejects


def fit_frames(
    pairs: pd.DataFrame, frames: pd.DataFrame, cal: Calibration, use_color: bool
) -> tuple[pd.DataFrame, pd.Series]:
    """The part of :func:`frame_zeropoints` that needs nothing but each frame's own pairs.

    So frames can be fitted in separate tasks: a groupby over frame_id. Frames without pairs get
    ``no_reference_overlap``.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The frames' one-to-one pairs.
    frames : pandas.DataFrame
        The frames' rows of LAKE/frames, with frame_id, nx, ny and saturation.
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.
    use_color : bool
        Fit colour terms.

    Returns
    -------
    zeropoints : pandas.DataFrame
        One row per frame, indexed by frame_id.
    rejects : pandas.Series
        Each pair's reject reason ("" = used).
    """
    frames = frames.set_index("frame_id", drop=False)
    sat = pairs["frame_id"].map(frames["saturation"]).to_numpy(dtype=float)
    pairs = pairs.assign(reject=select_stars(pairs, cal, sat))
    rows, rejects = {}, pd.Series("", index=pairs.index, dtype=object)
    for frame_id, group in pairs.groupby("frame_id", sort=True):
        rows[frame_id], reject = frame_zeropoint(group, frames.loc[frame_id].to_dict(), cal, use_color)
        rejects.loc[group.index] = reject
    empty = pairs.iloc[:0]
    for frame_id in frames.index.difference(list(rows)):
        rows[frame_id], _ = frame_zeropoint(empty, frames.loc[frame_id].to_dict(), cal, use_color)
    columns = list(frame_zeropoint(empty, {"nx": 1, "ny": 1}, cal, use_color)[0])
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns) if rows else pd.DataFrame(columns=columns)
    table.index.name = "frame_id"
    return table.sort_index(), rejects


def colour_correct(
    table: pd.DataFrame, pairs: pd.DataFrame, rejects: pd.Series, cal: Calibration, use_color: bool
) -> pd.DataFrame:
    """Bring median zeropoints to colour 0 (:func:`colour_correct_medians`) with their frames' used pairs.

    Each frame's median colour is that of its used pairs (``rejects`` empty); ``table`` is unchanged without a
    colour fit.

    Parameters
    ----------
    table : pandas.DataFrame
        The zeropoints, one row per frame indexed by frame_id (:func:`fit_frames`).
    pairs : pandas.DataFrame
        The frames' pairs, with ``frame_id`` and ``ref_color``.
    rejects : pandas.Series
        Each pair's reject reason ("" = used).
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.
    use_color : bool
        Whether the zeropoints were fitted with a colour term.

    Returns
    -------
    pandas.DataFrame
        The zeropoints, corrected.
    """
    if not use_color:
        return table
    used = rejects == ""
    colour = pairs.loc[used, "ref_color"].groupby(pairs.loc[used, "frame_id"]).median()
    return colour_correct_medians(table, colour, cal)


def colour_correct_medians(table: pd.DataFrame, median_colour: pd.Series, cal: Calibration) -> pd.DataFrame:
    """Bring the zeropoints of frames that fell back to the median under a colour fit to colour 0.

    Such a median is the zeropoint at the median colour ``c`` of the frame's stars (``median_colour``,
    by frame_id; NaN or missing when none has a colour, taken as colour 0 as for unknown colours), so
    ``zp = median - color_term * c`` with the median colour term of the ``ok`` colour-fit frames of
    ``table``; those frames get that colour term and zp_method "median_ct". Without such a frame the
    zeropoint cannot be brought to colour 0 and an ``ok`` frame becomes ``too_few_stars``, saying why.

    Parameters
    ----------
    table : pandas.DataFrame
        The zeropoints, one row per frame indexed by frame_id (:func:`fit_frames`).
    median_colour : pandas.Series
        The median colour of each frame's stars [mag], by frame_id.
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.

    Returns
    -------
    pandas.DataFrame
        A corrected copy of ``table``.
    """
    table = table.copy()
    fitted = (
        (table["zp_method"] == "color_fit")
        & (table["zp_status"] == ZpStatus.OK)
        & np.isfinite(table["color_term"].astype(float))
    )
    fallback = table["zp_method"] == "median"
    if not fallback.any():
        return table
    c = np.nan_to_num(median_colour.reindex(table.index[fallback]).to_numpy(float))
    if fitted.any():
        ct = float(np.median(table.loc[fitted, "color_term"].astype(float)))
        table.loc[fallback, "zp_fit"] = table.loc[fallback, "zp_fit"].astype(float) - colour_offset(c, ct)
        table.loc[fallback, ["color_term", "color", "zp_method"]] = [ct, cal.color_name, "median_ct"]
        return table
    lo, hi = cal.color_range
    bad = fallback & (table["zp_status"] == ZpStatus.OK)
    table.loc[bad, "zp_status"] = ZpStatus.TOO_FEW_STARS
    table.loc[bad, "zp_reason"] = [
        f"fewer than min_stars {cal.min_stars} stars with a colour in color_range [{lo:g}, {hi:g}], and no "
        f"colour-fit frame in this run to take a colour term from: the median {z:.3f} is the zeropoint at "
        f"colour {cc:.2f}, not at colour 0"
        for z, cc in zip(table.loc[bad, "zp_fit"], c[bad[fallback].to_numpy()])
    ]
    return table


# -- one night -----------------------------------------------------------------------------------------
@dataclass
class Extinction:
    """``zp = zp_airmass0 - k_ext * airmass`` over one night's frames (``keep``: frames in the fit).

    Attributes
    ----------
    k_ext : float
        The extinction coefficient [mag/airmass] (NaN without an extinction term).
    k_ext_err : float
        Its standard error [mag/airmass].
    zp_airmass0 : float
        The zeropoint at airmass 0 [mag]; without an extinction term, the frames' clipped median zeropoint.
    scatter : float
        The robust sigma of the frames' residuals [mag].
    n_frames : int
        The frames in the fit.
    airmass_min, airmass_max : float
        The airmass range of the frames in the fit.
    status : str
        The ext_status (:class:`skylake.calib.model.ExtStatus`).
    reason : str
        Why the status is not ok ("" when it is).
    keep : numpy.ndarray
        Marks the frames in the fit (boolean).
    """

    k_ext: float
    k_ext_err: float
    zp_airmass0: float
    scatter: float
    n_frames: int
    airmass_min: float
    airmass_max: float
    status: str
    reason: str
    keep: np.ndarray

    def model(self, airmass: np.ndarray) -> np.ndarray:
        """The clear-sky zeropoint at ``airmass`` (a constant when no extinction term was fitted).

        Parameters
        ----------
        airmass : numpy.ndarray
            The airmasses.

        Returns
        -------
        numpy.ndarray
            The zeropoints [mag].
        """
        k = self.k_ext if self.status == ExtStatus.OK else 0.0
        return self.zp_airmass0 - k * np.asarray(airmass, float)


def _support(airmass: np.ndarray, keep: np.ndarray, cal: Calibration) -> tuple[str, str]:
    """("", "") when the frames ``keep`` can carry an extinction fit (``min_extinction_frames`` frames
    spanning ``min_airmass_range``), else the ext_status and reason why not."""
    n = int(keep.sum())
    if n < cal.min_extinction_frames:
        return ExtStatus.TOO_FEW_FRAMES, f"{n} frames < min_extinction_frames {cal.min_extinction_frames}"
    span = float(np.ptp(airmass[keep]))
    if span < cal.min_airmass_range:
        return (
            ExtStatus.SMALL_AIRMASS_RANGE,
            f"airmass range {span:.3f} < min_airmass_range {cal.min_airmass_range:g}",
        )
    return "", ""


def _level(
    zp: np.ndarray, airmass: np.ndarray, keep: np.ndarray, cal: Calibration, status: str, reason: str
) -> Extinction:
    """No extinction term: zp_airmass0 is the clipped median zeropoint of the frames ``keep``, without
    those more than ``max_zp_drop`` below it (cloud)."""
    level = np.where(keep, zp, np.nan)
    fit = clipped_median(level, cal.clip_sigma)
    drop = keep & (zp < fit.zp - cal.max_zp_drop)
    if drop.any():
        fit = clipped_median(np.where(drop, np.nan, level), cal.clip_sigma)
    used = keep & fit.keep
    return Extinction(
        np.nan,
        np.nan,
        fit.zp,
        fit.scatter,
        int(used.sum()),
        float(np.min(airmass[used])) if used.any() else np.nan,
        float(np.max(airmass[used])) if used.any() else np.nan,
        status,
        reason,
        used,
    )


def theil_sen(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """The Theil-Sen line of ``y`` against ``x``: ``scipy.stats.theilslopes(y, x)``'s slope and intercept
    (its default, ``method='separate'``), the same operations, so the same bits, without importing
    scipy.stats (~0.6 s, paid by every process that fits a night).

    Parameters
    ----------
    y, x : numpy.ndarray
        The points (at least 2).

    Returns
    -------
    slope : float
        The median of the slopes of all pairs with different ``x`` (NaN when every ``x`` is the same).
    intercept : float
        ``median(y) - slope * median(x)``.

    Raises
    ------
    ValueError
        Fewer than 2 points, or ``x`` and ``y`` of different lengths.
    """
    y = np.array(y, dtype=float, copy=True).ravel()
    x = np.array(x, dtype=float, copy=True).ravel()
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"a Theil-Sen line needs x and y of one length >= 2, got {len(x)} and {len(y)}")
    deltax = x[:, np.newaxis] - x
    deltay = y[:, np.newaxis] - y
    slopes = deltay[deltax > 0] / deltax[deltax > 0]
    slopes.sort()
    slope = np.median(slopes) if slopes.size else np.nan
    return slope, np.median(y) - slope * np.median(x)


def below_clear_sky(zp: np.ndarray, airmass: np.ndarray, keep: np.ndarray, cal: Calibration) -> np.ndarray:
    """Frames of ``keep`` more than ``max_zp_drop`` below the night's robust line.

    The line is Theil-Sen's (the median of the pairwise slopes), which a minority of cloudy frames
    cannot pull onto themselves as a least-squares line would. A frame without which the others span
    less than ``min_airmass_range`` sets the slope alone (any line passes through it), so it is judged
    against the others' median zeropoint instead.

    Parameters
    ----------
    zp : numpy.ndarray
        The frames' zeropoints [mag].
    airmass : numpy.ndarray
        Their airmasses.
    keep : numpy.ndarray
        The frames to judge (boolean).
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.

    Returns
    -------
    numpy.ndarray
        Per frame, whether it is below the line (boolean).
    """
    slope, intercept = theil_sen(zp[keep], airmass[keep])
    with np.errstate(invalid="ignore"):
        below = keep & (zp < intercept + slope * airmass - cal.max_zp_drop)
    idx = np.flatnonzero(keep)
    for i in {int(idx[np.argmin(airmass[idx])]), int(idx[np.argmax(airmass[idx])])}:  # only an end can be alone
        others = keep.copy()
        others[i] = False
        if np.ptp(airmass[others]) < cal.min_airmass_range:
            below[i] = zp[i] < np.median(zp[others]) - cal.max_zp_drop
    return below


def fit_extinction(zp: np.ndarray, airmass: np.ndarray, cal: Calibration) -> Extinction:
    """Fit one night's extinction to the zeropoints of its ok frames.

    Frames more than ``max_zp_drop`` below the night's robust line (:func:`below_clear_sky`; cloud
    only ever makes a frame fainter) are dropped and a least-squares line is fitted to the rest. When
    the frames, before or after that cut, are fewer than ``min_extinction_frames`` or span less than
    ``min_airmass_range``, or the fitted k_ext is outside :data:`K_EXT_PLAUSIBLE`, k_ext is null, the
    status says why, and zp_airmass0 is the frames' clipped median zeropoint.

    Parameters
    ----------
    zp : numpy.ndarray
        The frames' zeropoints [mag]; NaN for a frame not to use.
    airmass : numpy.ndarray
        Their airmasses.
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.

    Returns
    -------
    Extinction
        The fit.
    """
    zp, airmass = np.asarray(zp, float), np.asarray(airmass, float)
    keep = np.isfinite(zp) & np.isfinite(airmass)
    status, why = _support(airmass, keep, cal)
    if status:
        return _level(zp, airmass, keep, cal, status, why)
    below = below_clear_sky(zp, airmass, keep, cal)
    keep &= ~below
    status, why = _support(airmass, keep, cal)
    if status:  # the cut can leave too few frames, or collapse the airmass range
        why += f" after dropping {int(below.sum())} frames more than max_zp_drop {cal.max_zp_drop:g} below the line"
        return _level(zp, airmass, keep, cal, status, why)
    a, b, _ = _line(airmass[keep], zp[keep])
    resid = zp[keep] - a - b * airmass[keep]
    n = int(keep.sum())
    lo, hi = K_EXT_PLAUSIBLE
    if not lo <= -b <= hi:
        return _level(
            zp,
            airmass,
            keep,
            cal,
            ExtStatus.IMPLAUSIBLE_K,
            f"fitted k_ext {-b:.3f} mag/airmass is outside the plausible [{lo:g}, {hi:g}] "
            "(cloud changing with airmass, or wrong airmasses)",
        )
    sxx = float(np.sum((airmass[keep] - airmass[keep].mean()) ** 2))
    k_err = float(np.sqrt(np.sum(resid**2) / (n - 2) / sxx)) if n > 2 and sxx > 0 else float("nan")
    return Extinction(
        -b,
        k_err,
        a,
        float(mad_std(resid)),
        n,
        float(airmass[keep].min()),
        float(airmass[keep].max()),
        ExtStatus.OK,
        "",
        keep,
    )


def mark_cloudy(zp: np.ndarray, airmass: np.ndarray, ext: Extinction, cal: Calibration) -> np.ndarray:
    """Frames whose zeropoint lies more than ``max_zp_drop`` below the night's clear-sky model.

    Parameters
    ----------
    zp : numpy.ndarray
        The frames' zeropoints [mag].
    airmass : numpy.ndarray
        Their airmasses.
    ext : Extinction
        The night's extinction (:func:`fit_extinction`).
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.

    Returns
    -------
    numpy.ndarray
        Per frame, whether it is cloudy (boolean).
    """
    with np.errstate(invalid="ignore"):
        return np.asarray(zp, float) < ext.model(airmass) - cal.max_zp_drop
