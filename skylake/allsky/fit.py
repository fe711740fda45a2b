"""Fit an all-sky camera model to the stars on a frame.

:func:`fit_camera` detects stars with sep, predicts the catalogue's bright stars with a starting
model, matches them (mutual nearest neighbours, isolated stars only) and refines the zenith pixel,
rotation, focal length and distortion by robust least squares (``scipy.optimize.least_squares``
with a soft-L1 loss), re-matching with a shrinking tolerance. When the starting orientation is
unknown or poor it first scans rotation and parity (and the zenith offset, by voting on the
offsets between predicted and detected stars).

Units: pixels (0-based, x = column), degrees, mm; see :mod:`skylake.allsky`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from skylake.allsky.camera import CameraModel, Site, angular_separation_deg
from skylake.allsky.catalog import as_catalog
from skylake.errors import EXIT_NOTHING, SkylakeError
from skylake.robust import MAD_TO_SIGMA

__all__ = [
    "FitResult",
    "CameraFitError",
    "detect_stars",
    "match_nearest",
    "scan_orientation",
    "fit_camera",
    "FITTABLE",
    "fit_from_site",
    "plot_fit_residuals",
]

#: Model parameters :func:`fit_camera` can refine ("tilt" = the optical axis' tilt, two parameters).
FITTABLE = ("x0", "y0", "rotation_deg", "focal_length_mm", "k1", "k2", "tilt")


class CameraFitError(SkylakeError, RuntimeError):
    """The model could not be fitted; ``reason`` says why (too few stars, no orientation found, ...).

    Its exit code is ``EXIT_NOTHING`` (4).

    Parameters
    ----------
    reason : str
        Why the fit failed (also the exception's message).
    """

    exit_code = EXIT_NOTHING

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class FitResult:
    """Outcome of :func:`fit_camera`.

    Attributes
    ----------
    model : CameraModel
        The fitted model.
    rms_px : float
        Root-mean-square 2-D residual (detected - predicted) of the final matched stars, px.
    rms_deg : float
        Root-mean-square angular residual of the same stars on the sky, deg.
    n_matched : int
        Stars in the final fit.
    matched : Table
        One row per final pair: catalogue columns, ``alt``, ``az`` (deg), ``x_pred``, ``y_pred``,
        ``x_det``, ``y_det``, ``dx``, ``dy``, ``dr_px`` (px), ``dr_deg`` (deg), ``flux`` (ADU).
    n_detected, n_predicted : int
        Detections used and catalogue stars predicted in the frame.
    n_clipped : int
        Pairs inside the last tolerance dropped as outliers (> ``clip`` x the robust sigma).
    tolerance_px : float
        Final matching tolerance.
    history : list of dict
        Per matching step: tolerance, number of pairs, rms.
    scanned : bool
        Whether the orientation scan ran.
    sigma : dict
        1-sigma spread of each fitted parameter (``tilt`` as ``tilt_east``/``tilt_north``, deg): from the
        final least-squares Jacobian, ``(J^T J)^-1`` times the residuals' variance.
    """

    model: CameraModel
    rms_px: float
    rms_deg: float
    n_matched: int
    matched: Table
    n_detected: int
    n_predicted: int
    n_clipped: int
    tolerance_px: float
    history: list = field(default_factory=list)
    scanned: bool = False
    sigma: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Scalars for a frame row or a report.

        Returns
        -------
        dict
            The rms residuals, the star counts, the model's ``x0``, ``y0``, ``rotation_deg``, ``parity``,
            ``focal_length_mm``, ``k1``, ``k2`` and each parameter's spread as ``sigma_<name>``.
        """
        m = self.model
        return {
            "rms_px": self.rms_px,
            "rms_deg": self.rms_deg,
            "n_matched": self.n_matched,
            "n_detected": self.n_detected,
            "n_predicted": self.n_predicted,
            "n_clipped": self.n_clipped,
            "x0": m.x0,
            "y0": m.y0,
            "rotation_deg": m.rotation_deg,
            "parity": m.parity,
            "focal_length_mm": m.focal_length_mm,
            "k1": m.k1,
            "k2": m.k2,
            **{f"sigma_{k}": v for k, v in self.sigma.items()},
        }

    def fitted_model(self) -> CameraModel:
        """The model with how it was fitted recorded in it (stars, rms, the parameters' spread).

        Returns
        -------
        CameraModel
            A copy of :attr:`model` with ``fit_n_stars``, ``fit_rms_px`` (4 decimals) and ``fit_sigma``
            (3 significant digits) set.
        """
        return self.model.replace(
            fit_n_stars=int(self.n_matched),
            fit_rms_px=round(float(self.rms_px), 4),
            fit_sigma={k: float(f"{v:.3g}") for k, v in self.sigma.items()},
        )


# ---------------------------------------------------------------------------------------------
def detect_stars(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    thresh: float = 5.0,
    mesh_px: int = 16,
    minarea: int = 3,
    max_npix: int = 200,
) -> Table:
    """Detect point sources with sep on a background-subtracted copy of ``image``.

    Parameters
    ----------
    image : numpy.ndarray
        The frame, 2-D (NaN pixels are not used).
    mask : numpy.ndarray of bool, optional
        True where pixels are not sky (outside the lens circle, obstructions, NaN).
    thresh : float, default 5.0
        Detection threshold in units of the global background rms.
    mesh_px : int, default 16
        Background mesh size, px.
    minarea : int, default 3
        Minimum connected pixels.
    max_npix : int, default 200
        Larger objects (the Moon, lights, clouds lit from below) are dropped.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` (px, windowed centroid), ``flux`` (ADU), ``peak``, ``npix``, ``a``, ``b``,
        brightest first.
    """
    import sep

    data = np.ascontiguousarray(image, dtype=np.float64)
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    fill = np.nanmedian(data[~bad]) if (~bad).any() else 0.0
    data = np.where(bad, fill, data)
    bkg = sep.Background(data, mask=bad, bw=mesh_px, bh=mesh_px, fw=3, fh=3)
    sub = data - bkg.back()
    rms = bkg.rms()
    old = sep.get_extract_pixstack()
    sep.set_extract_pixstack(max(old, 1_000_000))
    try:
        objs = sep.extract(sub, thresh, err=rms, mask=bad, minarea=minarea, deblend_cont=0.005)
    finally:
        sep.set_extract_pixstack(old)
    objs = objs[(objs["npix"] <= max_npix) & (objs["flux"] > 0)]
    x, y = objs["x"], objs["y"]
    if len(objs):
        sig = np.clip(np.sqrt(np.maximum(objs["a"] * objs["b"], 0.25)), 0.7, 3.0)  # Gaussian sigma, px
        xw, yw, flag = sep.winpos(sub, objs["x"], objs["y"], sig, mask=bad)
        good = (flag == 0) & (np.hypot(xw - x, yw - y) < 2.0)
        x = np.where(good, xw, x)
        y = np.where(good, yw, y)
    t = Table(
        {
            "x": np.asarray(x, float),
            "y": np.asarray(y, float),
            "flux": np.asarray(objs["flux"], float),
            "peak": np.asarray(objs["peak"], float),
            "npix": np.asarray(objs["npix"], int),
            "a": np.asarray(objs["a"], float),
            "b": np.asarray(objs["b"], float),
        }
    )
    t.sort("flux", reverse=True)
    return t


def match_nearest(xp, yp, xd, yd, tol_px: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs of predicted and detected positions: mutual nearest neighbours within ``tol_px`` (px).

    Parameters
    ----------
    xp, yp : array_like
        Predicted positions, px (non-finite ones are not matched).
    xd, yd : array_like
        Detected positions, px.
    tol_px : float
        Largest distance of a pair, px.

    Returns
    -------
    i_pred, i_det : numpy.ndarray
        Index arrays of the pairs into the predicted and the detected positions.
    """
    from scipy.spatial import cKDTree

    xp, yp, xd, yd = (np.asarray(a, float) for a in (xp, yp, xd, yd))
    okp = np.isfinite(xp) & np.isfinite(yp)
    if not okp.any() or len(xd) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    ip = np.flatnonzero(okp)
    P = np.column_stack([xp[ip], yp[ip]])
    D = np.column_stack([xd, yd])
    d1, j = cKDTree(D).query(P, distance_upper_bound=tol_px)
    d2, k = cKDTree(P).query(D, distance_upper_bound=tol_px)
    hit = np.isfinite(d1)
    pi = np.flatnonzero(hit)
    dj = j[hit]
    mutual = k[dj] == pi
    return ip[pi[mutual]], dj[mutual]


def _confused(xp, yp, xn, yn, radius_px):
    """True for predicted stars with another (neighbour-list) star within ``radius_px``."""
    from scipy.spatial import cKDTree

    ok = np.isfinite(xn) & np.isfinite(yn)
    if ok.sum() < 2:
        return np.zeros(len(xp), bool)
    tree = cKDTree(np.column_stack([xn[ok], yn[ok]]))
    P = np.column_stack([np.nan_to_num(xp, nan=-1e9), np.nan_to_num(yp, nan=-1e9)])
    counts = np.array([len(c) for c in tree.query_ball_point(P, radius_px)])
    return counts >= 2  # the star itself is in the neighbour list


def scan_orientation(
    model0: CameraModel,
    alt,
    az,
    xd,
    yd,
    shape,
    *,
    rotation_step_deg: float = 0.5,
    parities=(1, -1),
    max_shift_px: float = 20.0,
    bin_px: float = 2.0,
) -> tuple[CameraModel, int]:
    """Find rotation, parity and a zenith shift by voting.

    For each rotation (0..360 deg in ``rotation_step_deg``) and parity, the offsets between every
    predicted star and every detection within ``max_shift_px`` are histogrammed (``bin_px`` bins);
    the fullest 2x2-bin cell gives the score and the zenith shift.

    Parameters
    ----------
    model0 : CameraModel
        Starting model (its projection, scale and distortion are kept).
    alt, az : numpy.ndarray
        The catalogue stars' apparent altitude and azimuth, deg.
    xd, yd : numpy.ndarray
        Detected positions, px.
    shape : tuple of int
        Image shape ``(ny, nx)``.
    rotation_step_deg : float, default 0.5
        Rotation step of the fine scan, deg (the coarse scan takes twice it, at least 1 deg).
    parities : sequence of int, default (1, -1)
        Parities tried.
    max_shift_px : float, default 20.0
        Largest zenith shift (offset between a predicted star and a detection) considered, px.
    bin_px : float, default 2.0
        Histogram bin of the offsets, px.

    Returns
    -------
    model : CameraModel
        The best model (rotation, parity, x0, y0 updated); ``model0`` when nothing votes.
    votes : int
        Its vote count (0 when nothing votes).
    """
    from scipy.spatial import cKDTree

    ny, nx = shape
    tree = cKDTree(np.column_stack([xd, yd]))
    nb = int(np.ceil(2 * max_shift_px / bin_px))
    edges = np.linspace(-max_shift_px, max_shift_px, nb + 1)

    def score_of(rot, parity):
        """Votes for one rotation and parity.

        Parameters
        ----------
        rot : float
            Rotation, deg.
        parity : int
            Parity, +1 or -1.

        Returns
        -------
        tuple
            ``(votes, model, shift_x, shift_y)``: the fullest cell's count (-1 when no pair votes), the
            model with that rotation and parity, and the median offset of the cell's pairs, px.
        """
        m = model0.replace(rotation_deg=float(rot), parity=int(parity))
        x, y = m.altaz_to_pixel(alt, az)
        ok = (
            np.isfinite(x)
            & (x > -max_shift_px)
            & (x < nx + max_shift_px)
            & (y > -max_shift_px)
            & (y < ny + max_shift_px)
        )
        if not ok.any():
            return -1, m, 0.0, 0.0
        P = np.column_stack([x[ok], y[ok]])
        lists = tree.query_ball_point(P, max_shift_px)
        ii = np.repeat(np.arange(len(P)), [len(li) for li in lists])
        if ii.size == 0:
            return -1, m, 0.0, 0.0
        jj = np.concatenate([np.asarray(li, int) for li in lists])
        ddx = xd[jj] - P[ii, 0]
        ddy = yd[jj] - P[ii, 1]
        h, _, _ = np.histogram2d(ddx, ddy, bins=[edges, edges])
        h2 = h[:-1, :-1] + h[1:, :-1] + h[:-1, 1:] + h[1:, 1:]
        k = np.unravel_index(np.argmax(h2), h2.shape)
        sx, sy = edges[k[0] + 1], edges[k[1] + 1]
        sel = (np.abs(ddx - sx) <= bin_px) & (np.abs(ddy - sy) <= bin_px)
        return int(h2[k]), m, float(np.median(ddx[sel])), float(np.median(ddy[sel]))

    # coarse: 2 x the step (the 2 x 2-bin cell tolerates the half-step's displacement at the rim
    # of a 300 px fisheye), then the step around the best coarse rotation of each parity
    best = (-1, model0, 0.0, 0.0)
    coarse = max(rotation_step_deg * 2, 1.0)
    for parity in parities:
        top = max((score_of(r, parity) + (r,) for r in np.arange(0.0, 360.0, coarse)), key=lambda t: t[0])
        for rot in top[4] + np.arange(-coarse, coarse + 1e-9, rotation_step_deg):
            cand = score_of(rot, parity)
            if cand[0] > best[0]:
                best = cand
    score, m, sx, sy = best
    if score < 0:
        return model0, 0
    return m.replace(x0=m.x0 + sx, y0=m.y0 + sy), score


def _params(model: CameraModel, names) -> np.ndarray:
    out = []
    for n in names:
        if n == "tilt":  # Cartesian components, regular at zero tilt
            t, a = model.tilt_deg, np.radians(model.tilt_az_deg)
            out += [t * np.sin(a), t * np.cos(a)]
        else:
            out.append(getattr(model, n))
    return np.asarray(out, float)


def _model_from(model0: CameraModel, names, p) -> CameraModel:
    changes = {}
    i = 0
    for n in names:
        if n == "tilt":
            te, tn = float(p[i]), float(p[i + 1])
            changes["tilt_deg"] = float(np.hypot(te, tn))
            changes["tilt_az_deg"] = float(np.degrees(np.arctan2(te, tn)) % 360.0)
            i += 2
        else:
            changes[n] = float(p[i])
            i += 1
    return model0.replace(**changes)


def _spread(model: CameraModel, names, alt, az, xd, yd) -> dict:
    """1-sigma spread of the fitted parameters at ``model``: a numerical Jacobian of the residuals of the final
    pairs, ``(J^T J)^-1`` scaled by their variance (2 residuals per star, one per parameter less)."""
    p0 = _params(model, names)
    labels = [x for n in names for x in (("tilt_east", "tilt_north") if n == "tilt" else (n,))]

    def resid(p):
        """Residuals (predicted - detected), x then y, of the model with parameters ``p``.

        Parameters
        ----------
        p : numpy.ndarray
            Values of the fitted parameters.

        Returns
        -------
        numpy.ndarray
            The x residuals followed by the y residuals, px.
        """
        x, y = _model_from(model, names, p).altaz_to_pixel(alt, az)
        return np.concatenate([x - xd, y - yd])

    r0 = resid(p0)
    J = np.empty((r0.size, p0.size))
    for k in range(p0.size):
        h = 1e-6 * max(abs(p0[k]), 1e-3)
        step = p0.copy()
        step[k] += h
        J[:, k] = (resid(step) - r0) / h
    dof = max(r0.size - p0.size, 1)
    try:
        cov = np.linalg.inv(J.T @ J) * float(np.sum(r0**2)) / dof
    except np.linalg.LinAlgError:
        return {}
    return {name: float(np.sqrt(max(cov[k, k], 0.0))) for k, name in enumerate(labels)}


@dataclass
class _FitFrame:
    """What the fit of one frame works on: the detections, the catalogue stars up and the matching settings."""

    stars: Table  # catalogue stars fitted (mag <= vmax, alt >= alt_min_deg)
    alt: np.ndarray
    az: np.ndarray
    alt_all: np.ndarray  # the wider pool (1 mag fainter, 5 deg lower): neighbours that confuse a match
    az_all: np.ndarray
    detections: Table
    xd: np.ndarray
    yd: np.ndarray
    shape: tuple
    mask: np.ndarray | None
    edge_px: float
    names: list
    tolerances_px: list
    clip: float
    loss: str
    min_stars: int
    density: float = 0.0  # detections per px^2 of sky
    n_pred: int = 0  # stars the starting model predicts in the frame


def _check_fit_args(fit, search, tolerances_px, image) -> tuple[list, np.ndarray]:
    """Check :func:`fit_camera`'s arguments; the tolerances as floats and the image as a float array."""
    bad = [n for n in fit if n not in FITTABLE]
    if bad:
        raise ValueError(f"cannot fit {bad}; fittable parameters are {FITTABLE}")
    if search not in ("auto", True, False):
        raise ValueError(f"search must be 'auto', True or False, got {search!r}")
    tolerances_px = [float(t) for t in tolerances_px]
    if not tolerances_px or min(tolerances_px) <= 0:
        raise ValueError(f"tolerances_px must be positive, got {tolerances_px!r}")
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    return tolerances_px, image


def _frame_detections(image, model0, mask, detections, detect_thresh, min_stars) -> tuple:
    """The detections (found on the model's sky unless given) and their ``x``, ``y``; too few raise.

    Returns ``(detections, xd, yd)``.
    """
    if detections is None:
        sky = model0.sky_mask(image.shape, alt_min_deg=-5.0)
        m = ~sky if mask is None else (~sky | np.asarray(mask, bool))
        detections = detect_stars(image, m, thresh=detect_thresh)
    xd = np.asarray(detections["x"], float)
    yd = np.asarray(detections["y"], float)
    if len(xd) < min_stars:
        raise CameraFitError(f"only {len(xd)} sources detected (need >= {min_stars}): cloudy or empty frame")
    return detections, xd, yd


def _stars_up(catalog, mag_column, site, time, vmax, alt_min_deg, min_stars) -> tuple:
    """The catalogue stars fitted and the wider pool of their possible neighbours, with their alt, az.

    Returns ``(stars, alt, az, alt_all, az_all)``; too few stars raise :class:`CameraFitError`.
    """
    cat = as_catalog(catalog, mag_column)
    pool = cat[np.isfinite(cat["mag"]) & (cat["mag"] <= vmax + 1.0)]
    alt_all, az_all = site.radec_to_altaz(pool["ra"], pool["dec"], time)
    above = alt_all >= alt_min_deg - 5.0
    pool, alt_all, az_all = pool[above], alt_all[above], az_all[above]
    use = (pool["mag"] <= vmax) & (alt_all >= alt_min_deg)
    stars = pool[use]
    alt, az = alt_all[use], az_all[use]
    if len(stars) < min_stars:
        raise CameraFitError(f"only {len(stars)} catalogue stars with mag <= {vmax} above {alt_min_deg} deg")
    return stars, alt, az, alt_all, az_all


def _predict(ff: _FitFrame, m: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """Predicted pixels of the stars fitted, NaN near the edge and on masked pixels."""
    shape, edge_px, mask = ff.shape, ff.edge_px, ff.mask
    x, y = m.altaz_to_pixel(ff.alt, ff.az)
    inside = (x >= edge_px) & (x <= shape[1] - 1 - edge_px) & (y >= edge_px) & (y <= shape[0] - 1 - edge_px)
    if mask is not None:
        xi = np.clip(np.round(np.nan_to_num(x)).astype(int), 0, shape[1] - 1)
        yi = np.clip(np.round(np.nan_to_num(y)).astype(int), 0, shape[0] - 1)
        inside &= ~np.asarray(mask, bool)[yi, xi]
    return np.where(inside, x, np.nan), np.where(inside, y, np.nan)


def _chance(ff: _FitFrame, tol: float) -> float:
    """Pairs expected by chance alone within ``tol`` px: the stars predicted times P(a detection that near)."""
    return ff.n_pred * min(1.0, ff.density * np.pi * tol**2)


def _least_squares_step(ff: _FitFrame, model: CameraModel, ip, idet, tol: float) -> CameraModel:
    """The model refitted by robust least squares on the pairs ``ip`` (stars), ``idet`` (detections)."""
    from scipy.optimize import least_squares

    names = ff.names

    def resid(p):
        """Residuals (predicted - detected), x then y, of the pairs for the parameters ``p``.

        Parameters
        ----------
        p : numpy.ndarray
            Values of the fitted parameters.

        Returns
        -------
        numpy.ndarray
            The x residuals followed by the y residuals, px.
        """
        m = _model_from(model, names, p)
        x, y = m.altaz_to_pixel(ff.alt[ip], ff.az[ip])
        return np.concatenate([x - ff.xd[idet], y - ff.yd[idet]])

    p0 = _params(model, names)
    fscale = max(0.5, tol / 4.0)
    try:
        sol = least_squares(resid, p0, loss=ff.loss, f_scale=fscale, x_scale="jac", method="trf")
    except ValueError as exc:  # a parameter step made the model invalid (e.g. non-monotonic r)
        raise CameraFitError(f"least squares failed: {exc}") from exc
    return _model_from(model, names, sol.x)


def _match_and_fit(ff: _FitFrame, model: CameraModel, tol: float, adaptive: bool, history: list) -> tuple:
    """Match the isolated stars within ``tol``, refit, and re-match with the new model.

    Appends the step to ``history``; returns ``(model, ip, idet, tol, same)``: the refitted model, the
    pairs fitted, the tolerance (from the residual scatter on an ``adaptive`` step) and whether
    the re-match gives the same stars.
    """
    xd, yd = ff.xd, ff.yd
    xp, yp = _predict(ff, model)
    xn, yn = model.altaz_to_pixel(ff.alt_all, ff.az_all)
    confused = _confused(xp, yp, xn, yn, max(2.5, min(tol, 4.0)))
    xp_ok = np.where(confused, np.nan, xp)
    ip, idet = match_nearest(xp_ok, yp, xd, yd, tol)
    need = max(ff.min_stars, len(ff.names) + 3)
    if len(ip) < need:
        raise CameraFitError(f"only {len(ip)} stars matched within {tol:.1f} px (need >= {need})")
    model = _least_squares_step(ff, model, ip, idet, tol)
    xq, yq = model.altaz_to_pixel(ff.alt[ip], ff.az[ip])
    dr = np.hypot(xq - xd[idet], yq - yd[idet])
    sigma = MAD_TO_SIGMA * np.median(dr) / 0.8326  # 2-D: median of a Rayleigh = 1.1774 sigma_1d
    if adaptive:  # tolerance from the residual scatter
        tol = max(ff.tolerances_px[-1], ff.clip * sigma * 1.5)
    xp2, yp2 = _predict(ff, model)
    ip2, _ = match_nearest(np.where(confused, np.nan, xp2), yp2, xd, yd, tol)
    same = len(ip2) == len(ip) and np.array_equal(np.sort(ip2), np.sort(ip))
    history.append(
        {
            "tolerance_px": tol,
            "n_pairs": int(len(ip)),
            "rms_px": float(np.sqrt(np.mean(dr**2))),
            "sigma_px": float(sigma),
        }
    )
    return model, ip, idet, tol, same


def _clipped_result(ff: _FitFrame, model, ip, idet, tol, history, scanned) -> FitResult:
    """Drop the outliers among the final pairs, check what is left and tabulate it as a :class:`FitResult`."""
    alt, az, xd, yd, clip, min_stars = ff.alt, ff.az, ff.xd, ff.yd, ff.clip, ff.min_stars
    x, y = model.altaz_to_pixel(alt[ip], az[ip])
    dx = xd[idet] - x
    dy = yd[idet] - y
    dr = np.hypot(dx, dy)
    sigma = MAD_TO_SIGMA * np.median(dr) / 0.8326
    keep = dr <= max(clip * sigma * 1.5, 0.5)
    n_clipped = int((~keep).sum())
    ip, idet, x, y, dx, dy, dr = ip[keep], idet[keep], x[keep], y[keep], dx[keep], dy[keep], dr[keep]
    if len(ip) < min_stars:
        raise CameraFitError(f"only {len(ip)} stars left after clipping (need >= {min_stars})")
    if len(ip) < 3 * _chance(ff, tol) + 3:
        raise CameraFitError(
            f"{len(ip)} pairs within {tol:.1f} px is no better than chance "
            f"({_chance(ff, tol):.1f} expected): wrong starting model (search from the site "
            f"alone: skylake camera fit FRAME --pipeline P --search)"
        )
    sigma = _spread(model, ff.names, alt[ip], az[ip], xd[idet], yd[idet])
    alt_d, az_d = model.pixel_to_altaz(xd[idet], yd[idet])
    dsky = angular_separation_deg(alt[ip], az[ip], alt_d, az_d)
    matched = ff.stars[ip]
    matched["alt"] = alt[ip]
    matched["az"] = az[ip]
    matched["x_pred"] = x
    matched["y_pred"] = y
    matched["x_det"] = xd[idet]
    matched["y_det"] = yd[idet]
    matched["dx"] = dx
    matched["dy"] = dy
    matched["dr_px"] = dr
    matched["dr_deg"] = dsky
    if "flux" in ff.detections.colnames:
        matched["flux"] = np.asarray(ff.detections["flux"], float)[idet]
    return FitResult(
        model=model,
        rms_px=float(np.sqrt(np.mean(dr**2))),
        rms_deg=float(np.sqrt(np.mean(dsky**2))),
        n_matched=int(len(ip)),
        matched=matched,
        n_detected=int(len(xd)),
        n_predicted=ff.n_pred,
        n_clipped=n_clipped,
        tolerance_px=float(tol),
        history=history,
        scanned=scanned,
        sigma=sigma,
    )


def _refine(ff: _FitFrame, model: CameraModel, scanned: bool) -> FitResult:
    """Match and fit with the shrinking tolerances (each step up to 3 times, until the pairs settle), then clip.

    Raises :class:`CameraFitError` if too few stars match or are left after clipping, the pairs are no better
    than chance, or the least squares fail.
    """
    history = []
    tol = ff.tolerances_px[0]
    ip = idet = np.zeros(0, int)
    steps = list(ff.tolerances_px) + [None, None]  # two adaptive steps at the end
    for step in steps:
        if step is not None:
            tol = step
        for _inner in range(3):
            model, ip, idet, tol, same = _match_and_fit(ff, model, tol, step is None, history)
            if same:
                break
    return _clipped_result(ff, model, ip, idet, tol, history, scanned)


def _scan(ff: _FitFrame, model0: CameraModel) -> CameraModel:
    """The best model of the orientation scan (:func:`scan_orientation`) from ``model0``; raises when it is poor."""
    m, score = scan_orientation(model0, ff.alt, ff.az, ff.xd, ff.yd, ff.shape)
    if score < ff.min_stars:
        raise CameraFitError(f"no orientation matches more than {score} stars (need >= {ff.min_stars})")
    return m


def fit_camera(
    image: np.ndarray,
    model0: CameraModel,
    site: Site,
    time,
    catalog,
    *,
    vmax: float = 4.5,
    alt_min_deg: float = 20.0,
    mag_column: str = "v_mag",
    fit=("x0", "y0", "rotation_deg", "focal_length_mm", "k1"),
    tolerances_px=(10.0, 6.0, 4.0, 3.0, 2.0),
    clip: float = 3.0,
    search: str | bool = "auto",
    mask: np.ndarray | None = None,
    detections: Table | None = None,
    detect_thresh: float = 5.0,
    loss: str = "soft_l1",
    min_stars: int = 8,
    edge_px: float = 3.0,
) -> FitResult:
    """Fit a camera model to the stars on one frame.

    Parameters
    ----------
    image : numpy.ndarray
        The frame, 2-D (any units; NaN where there is no data).
    model0 : CameraModel
        Starting model (published values); its projection, pixel size and parity are kept
        unless the orientation scan runs.
    site : Site
        Where the camera stands.
    time : astropy.time.Time or str
        Mid-exposure time, UTC (a Time or an ISO string).
    catalog : astropy.table.Table or pandas.DataFrame
        ``ra``, ``dec`` (deg) and ``mag_column`` (e.g. Hipparcos from
        :func:`skylake.allsky.catalog.read_hipparcos`).
    vmax : float, default 4.5
        Faintest catalogue magnitude used.
    alt_min_deg : float, default 20.0
        Lowest altitude used, deg.
    mag_column : str, default "v_mag"
        The catalogue's magnitude column (when it has no ``mag`` column).
    fit : sequence of str
        Parameters refined, from :data:`FITTABLE` (``"tilt"`` refines the optical axis' tilt
        and its azimuth; then ``x0``, ``y0`` are the axis pixel, and the zenith pixel is
        ``model.altaz_to_pixel(90, 0)``).
    tolerances_px : sequence of float
        Matching tolerances of the successive steps, px (shrinking). After the last one the
        tolerance adapts to ``max(last, clip * robust sigma)``.
    clip : float, default 3.0
        Pairs beyond ``clip`` robust sigmas (1.4826 MAD of the 2-D residual) are dropped.
    search : {"auto", True, False}
        Scan rotation, parity and zenith shift (:func:`scan_orientation`): first (True), never
        (False), or only when the fit from the starting model fails (matches no better than
        chance) or ends above 2 px rms ("auto").
    mask : numpy.ndarray of bool, optional
        True where the image is not sky (excluded from detection).
    detections : astropy.table.Table, optional
        Use these ``x``, ``y`` instead of detecting.
    detect_thresh : float, default 5.0
        The sep threshold (x global rms) when detecting.
    loss : str, default "soft_l1"
        The ``least_squares`` robust loss (``soft_l1``, ``huber``, ``cauchy``, ``linear``).
    min_stars : int, default 8
        Fewer final pairs raise :class:`CameraFitError`.
    edge_px : float, default 3.0
        Catalogue stars predicted closer than this to the image edge are not used.

    Returns
    -------
    FitResult
        The fitted model, its residuals and the matched stars.

    Raises
    ------
    CameraFitError
        If too few sources are detected, too few catalogue stars are up, too few stars match or are
        left after clipping (fewer than ``min_stars``), the pairs are no better than chance, no
        orientation is found, or the least squares fail.
    ValueError
        If ``fit`` names a parameter not in :data:`FITTABLE`, ``search`` or ``tolerances_px`` is
        invalid, or the image is not 2-D.
    """
    tolerances_px, image = _check_fit_args(fit, search, tolerances_px, image)
    shape = image.shape
    detections, xd, yd = _frame_detections(image, model0, mask, detections, detect_thresh, min_stars)
    stars, alt, az, alt_all, az_all = _stars_up(catalog, mag_column, site, time, vmax, alt_min_deg, min_stars)
    ff = _FitFrame(
        stars=stars,
        alt=alt,
        az=az,
        alt_all=alt_all,
        az_all=az_all,
        detections=detections,
        xd=xd,
        yd=yd,
        shape=shape,
        mask=mask,
        edge_px=edge_px,
        names=list(fit),
        tolerances_px=tolerances_px,
        clip=clip,
        loss=loss,
        min_stars=min_stars,
    )
    # chance coincidences: detections per px^2 of sky times the matching area
    sky_px = float(model0.sky_mask(shape, alt_min_deg=alt_min_deg).sum()) or float(shape[0] * shape[1])
    ff.density = len(xd) / sky_px
    xp, _ = _predict(ff, model0)
    ff.n_pred = int(np.isfinite(xp).sum())

    if search is True:
        return _refine(ff, _scan(ff, model0), True)
    try:
        result = _refine(ff, model0, False)
    except CameraFitError:
        if search is False:
            raise
        return _refine(ff, _scan(ff, model0), True)
    if search == "auto" and result.rms_px > 2.0:  # converged on a wrong orientation: scan
        try:
            other = _refine(ff, _scan(ff, model0), True)
        except CameraFitError:
            return result
        return other if other.rms_px < result.rms_px else result
    return result


def plot_fit_residuals(
    result: FitResult,
    path,
    *,
    image: np.ndarray | None = None,
    title: str | None = None,
    arrow_gain: float | None = None,
):
    """Residual plot of a camera fit (PNG): arrows over the image, residual vs zenith angle and vs azimuth.

    Readable at 800 px width (:func:`skylake.allsky.plots.plot_fit_residuals`).

    Parameters
    ----------
    result : FitResult
        The fit.
    path : str or pathlib.Path
        The PNG written (its directory is created).
    image : numpy.ndarray, optional
        The frame, drawn under the arrows.
    title : str, optional
        The figure's title (default: the stars, rms and model).
    arrow_gain : float, optional
        Magnification of the residual arrows (default: chosen from the residuals and the width).

    Returns
    -------
    pathlib.Path
        The PNG's path.
    """
    from skylake.allsky.plots import plot_fit_residuals as _plot

    return _plot(result, path, image=image, title=title, arrow_gain=arrow_gain)


def fit_from_site(
    image: np.ndarray,
    camera: dict,
    site: Site,
    time,
    catalog,
    *,
    vmax: float = 4.5,
    alt_min_deg: float = 20.0,
    mag_column: str = "v_mag",
    fit=("x0", "y0", "rotation_deg", "focal_length_mm", "k1"),
    detect_thresh: float = 5.0,
    min_significance: float = 2.5,
    min_stars: int = 8,
) -> FitResult:
    """Fit a camera known only by its lens projection (and its site).

    The zenith pixel, parity, rotation and focal length in pixels are searched
    (:func:`skylake.allsky.search.search_model`: every zenith pixel of the image, any scale), then
    everything in ``fit`` is refined (:func:`fit_camera`).

    Parameters
    ----------
    image : numpy.ndarray
        The frame, 2-D (any units).
    camera : dict
        The profile's ``[camera]`` table: ``projection`` at least; a given ``pixel_size_mm`` (or
        ``focal_length_mm``) is kept and the other one fitted (only their ratio is seen); other settings
        (``k1``, ``theta_max_deg``, ...) start the fit. Given ``x0``, ``y0``, ``rotation_deg`` and ``parity``
        are ignored: the search finds them.
    site : Site
        Where the camera stands.
    time : astropy.time.Time or str
        Mid-exposure time, UTC.
    catalog : astropy.table.Table or pandas.DataFrame
        ``ra``, ``dec`` (deg) and ``mag_column``.
    vmax : float, default 4.5
        Faintest catalogue magnitude used.
    alt_min_deg : float, default 20.0
        Lowest altitude used, deg.
    mag_column : str, default "v_mag"
        The catalogue's magnitude column (when it has no ``mag`` column).
    fit : sequence of str
        Parameters refined, from :data:`FITTABLE`.
    detect_thresh : float, default 5.0
        The sep detection threshold (x global rms).
    min_significance : float, default 2.5
        The winning vote must be this many times what chance gives a trial (the median of the trials' best
        counts), else :class:`CameraFitError` (a cloudy frame, the wrong projection). Measured: the real
        IceAct frame 4.8, a SYNTHETIC mirrored equisolid frame 3.5; the overcast CTA frame 1.6, a frame of
        noise spots 1.2.
    min_stars : int, default 8
        Fewest detections, catalogue stars, winning votes and final pairs.

    Returns
    -------
    FitResult
        The fit, with ``scanned`` True.

    Raises
    ------
    CameraFitError
        If too few sources are detected or catalogue stars are up, the search's vote is not significant,
        or the refinement fails (:func:`fit_camera`).
    """
    from skylake.allsky.search import search_model

    image = np.asarray(image, dtype=float)
    detections = detect_stars(image, None, thresh=detect_thresh)
    if len(detections) < min_stars:
        raise CameraFitError(f"only {len(detections)} sources detected (need >= {min_stars}): cloudy or empty frame")
    cat = as_catalog(catalog, mag_column)
    cat = cat[np.isfinite(cat["mag"]) & (cat["mag"] <= vmax)]
    alt, az = site.radec_to_altaz(cat["ra"], cat["dec"], time)
    order = np.argsort(np.asarray(cat["mag"]), kind="stable")
    alt, az = alt[order], az[order]
    up = alt >= alt_min_deg
    if up.sum() < min_stars:
        raise CameraFitError(f"only {int(up.sum())} catalogue stars with mag <= {vmax} above {alt_min_deg} deg")
    found = search_model(detections["x"], detections["y"], alt[up], az[up], image.shape, camera["projection"])
    if found.significance < min_significance or found.votes < min_stars:
        raise CameraFitError(
            f"no zenith, rotation and scale found: the best of {found.trials} trials has "
            f"{found.votes} star pairs where chance gives a trial {found.chance:.0f} "
            f"({found.significance:.1f}x < {min_significance:g}x): a cloudy frame, or not a "
            f"{camera['projection']} lens"
        )
    start = {
        k: v
        for k, v in camera.items()
        if k not in ("x0", "y0", "rotation_deg", "parity", "focal_length_mm", "pixel_size_mm")
        and not k.startswith("fit_")
    }
    if "pixel_size_mm" in camera:
        pixel = float(camera["pixel_size_mm"])
    elif "focal_length_mm" in camera:
        pixel = float(camera["focal_length_mm"]) / found.f_px
    else:
        pixel = 0.001  # nominal 1 um: only focal length / pixel size is seen
    model0 = CameraModel.from_dict(
        {
            **start,
            "focal_length_mm": found.f_px * pixel,
            "pixel_size_mm": pixel,
            "x0": found.x0,
            "y0": found.y0,
            "rotation_deg": found.rotation_deg,
            "parity": found.parity,
        }
    )
    result = fit_camera(
        image,
        model0,
        site,
        time,
        catalog,
        vmax=vmax,
        alt_min_deg=alt_min_deg,
        mag_column=mag_column,
        fit=fit,
        search=False,
        detections=detections,
        min_stars=min_stars,
    )
    result.scanned = True
    return result
