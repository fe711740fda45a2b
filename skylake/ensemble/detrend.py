"""Per-star detrending of a field's light curves: EPD and TFA, protecting the stars' own signals.

Both work on one night's light curves of one field, a matrix ``mag[s, e]`` (star ``s``, frame ``e``, NaN where
the star has no point), and return the trend removed from each point (``mag - trend`` is the detrended
magnitude).

* **EPD** (external parameter decorrelation; Bakos et al. 2010, pipe-trex, astrobase ``varbase/trends``): per
  star, least squares of its magnitudes on parameters of its points (chip position, FWHM, background,
  airmass, hour angle: the caller chooses), plus a constant.
* **TFA** (trend filtering algorithm; Kovacs, Bakos & Noyes 2005, MNRAS 356, 557): per star, least squares of
  its magnitudes on the light curves of template stars (bright, quiet, on nearly every frame, not the star
  itself and not its neighbours), plus a constant.

Plain EPD and TFA also remove a star's real signal where it resembles a parameter or a template. Both fits
here are **signal-protecting**: points where the running median of the residuals (``window`` points) departs
from zero by more than noise allows (a transit, an eclipse, a flare) are left out of the fit, and the trend
fitted to the rest is removed from every point, so a dip keeps its depth (a reconstructive TFA without a
period, in the spirit of vartools' ``-TFA_SR``). And a trend is removed only when it is significant (an
F-test against a constant), so a star without systematics is not made quieter than its noise: detrending
does no harm where there is nothing to detrend. ``window = 0`` gives the plain fits (F-tested).

Pure functions of arrays; :mod:`skylake.ensemble.stage` calls them per night and field.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter
from scipy.special import fdtrc

from skylake.robust import MAD_TO_SIGMA

__all__ = ["running_median", "epd", "choose_templates", "trend_basis", "tfa"]


def running_median(t: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Running median of ``y`` (finite values, ordered by ``t``) over ``window`` consecutive points.

    The window is odd (``2 * (window // 2) + 1`` points) and shrinks at the ends. NaN stays NaN.

    Parameters
    ----------
    t : array
        The times (or any coordinate) that order the points.
    y : array
        The values, NaN where missing.
    window : int
        Points in the window; with 1 or less the finite values of ``y`` are returned as they are.

    Returns
    -------
    ndarray
        The running median at each point of ``y`` (NaN where ``y`` is not finite).
    """
    y = np.asarray(y, dtype=np.float64)
    out = np.full(y.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(y))
    if ok.size == 0 or window <= 1:
        out[ok] = y[ok]
        return out
    order = ok[np.argsort(np.asarray(t)[ok], kind="stable")]
    v = y[order]
    half = window // 2
    if v.size > half:
        # scipy's "mirror" is numpy's "reflect" padding: the same medians, ~8x faster than a sliding-window view
        out[order] = median_filter(v, size=2 * half + 1, mode="mirror")
        return out
    pad = np.pad(v, half, mode="edge")
    out[order] = np.median(np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1), axis=1)
    return out


def _median(x: np.ndarray) -> float:
    """``np.median`` of a 1-d array of finite values, by partition alone (its per-call cost dominated here)."""
    n = x.size
    if n % 2:
        return float(np.partition(x, n // 2)[n // 2])
    lo, hi = np.partition(x, [n // 2 - 1, n // 2])[n // 2 - 1 : n // 2 + 1]
    return float((lo + hi) / 2)


def _wlstsq(A: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted least squares: coefficients and the weighted residual sum of squares."""
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)
    return coef, float(np.sum(w * (y - A @ coef) ** 2))


def _fit_protected(
    A: np.ndarray,
    y: np.ndarray,
    err: np.ndarray,
    t: np.ndarray,
    window: int,
    clip: float,
    alpha: float,
    n_iter: int = 4,
    protect_sigma: float = 4.0,
) -> tuple[np.ndarray, int]:
    """The trend ``A[:, 1:] @ coef[1:]`` of one light curve (column 0 of ``A`` is the constant) and the number of
    terms it used: 0 (no trend) unless an F-test finds the terms significant at level ``alpha`` against the
    constant alone.

    Signal protection (``window`` > 1): after each fit, the running median of the residuals over ``window``
    points is compared with what noise gives (``protect_sigma`` times the residuals' robust sigma over
    sqrt(window / 1.57), the efficiency of a median); points where it deviates (a dip, a flare, an eclipse,
    a slow variation) are left out of the next fit, but the trend is still removed from them. A star whose
    deviating points would be more than half of them is fitted whole. Single outliers beyond ``clip`` robust
    sigmas are left out too."""
    w = 1.0 / np.maximum(err, 1e-4) ** 2
    use = np.ones(y.size, bool)
    p = A.shape[1] - 1
    if p == 0:
        return np.zeros(y.size), 0
    for _ in range(n_iter):
        coef, _ = _wlstsq(A[use], y[use], w[use])
        resid = y - A @ coef
        r = resid - _median(resid[use])
        sigma = max(MAD_TO_SIGMA * _median(np.abs(r[use])), 1e-6)
        new = np.abs(r) <= clip * sigma
        if window > 1:
            smooth = running_median(t, r, window)
            signal = np.abs(smooth) > protect_sigma * sigma / np.sqrt(window / 1.57)
            if signal.sum() <= 0.5 * y.size:
                new &= ~signal
        if new.sum() < p + 3 or np.array_equal(new, use):
            break
        use = new
    n = int(use.sum())
    coef, rss1 = _wlstsq(A[use], y[use], w[use])
    wu = w[use]
    rss0 = float(np.sum(wu * (y[use] - np.sum(wu * y[use]) / np.sum(wu)) ** 2))
    dof = n - p - 1
    if dof <= 0 or rss1 <= 0:
        return np.zeros(y.size), 0
    stat = ((rss0 - rss1) / p) / (rss1 / dof)
    if not fdtrc(p, dof, stat) < alpha:  # the F distribution's survival function (scipy.stats.f.sf's own)
        return np.zeros(y.size), 0
    return A[:, 1:] @ coef[1:], p


def epd(
    mag: np.ndarray,
    err: np.ndarray,
    params: np.ndarray,
    t: np.ndarray,
    *,
    min_points: int = 20,
    window: int = 0,
    clip: float = 4.0,
    alpha: float = 1e-3,
    stars: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """EPD trends of each star.

    Parameters
    ----------
    mag, err : (S, E) arrays
        Magnitudes and errors, NaN where a star has no point.
    params : (S, E, P) array
        The parameters of each point (a constant is added here).
    t : (E,) array
        Frame times (for the signal reconstruction).
    min_points : int
        Stars with fewer points (or fewer than 3 per parameter) get no trend (NaN).
    window : int
        Running-median window of the signal reconstruction (points); 0 for plain EPD.
    clip : float
        Points further than this many robust sigmas from the fit are left out of it.
    alpha : float
        The trend is removed only when an F-test against a constant finds it significant at this level, so
        that a star with no systematics is not made to look quieter than its noise.
    stars : (S,) bool array, optional
        Only these stars are fitted (the others as with too few points), without copies of their rows.

    Returns
    -------
    trend : (S, E) array
        The trend of each point (0 when not significant; NaN where the star has no point or too few).
    n_terms : (S,) int array
        Terms the trend used (0 or P; -1 when the star had too few points).
    """
    S, E = mag.shape
    P = params.shape[2]
    out = np.full((S, E), np.nan)
    n_terms = np.full(S, -1, dtype=np.int64)
    for s in range(S) if stars is None else np.flatnonzero(stars):
        ok = np.isfinite(mag[s]) & np.isfinite(err[s]) & np.isfinite(params[s]).all(axis=1)
        n = int(ok.sum())
        if n < max(min_points, 3 * (P + 1)):
            continue
        A = np.column_stack([np.ones(n), params[s][ok]])
        out[s, ok], n_terms[s] = _fit_protected(A, mag[s, ok], err[s, ok], t[ok], window, clip, alpha)
    return out, n_terms


def choose_templates(
    mag: np.ndarray,
    rms: np.ndarray,
    *,
    max_templates: int,
    min_coverage: float = 0.9,
    quiet_factor: float = 1.5,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Template stars for TFA.

    Templates are on at least ``min_coverage`` of the frames, quiet (rms at most ``quiet_factor`` times the
    running median rms of the 15 stars nearest in magnitude), brightest first, at most ``max_templates``.

    Parameters
    ----------
    mag : (S, E) array
        Light curves (NaN where missing).
    rms : (S,) array
        Each star's robust scatter.
    max_templates : int
        Templates at most.
    min_coverage : float
        Fraction of the frames a template must have a point on.
    quiet_factor : float
        A template's rms is at most this factor times the running median rms of the stars nearest in
        magnitude.
    exclude : (S,) bool array, optional
        Stars never used (saturated, known variables).

    Returns
    -------
    int array
        Indices of the templates.
    """
    S, E = mag.shape
    if S == 0 or E == 0:
        return np.zeros(0, dtype=np.int64)
    cover = np.isfinite(mag).sum(axis=1) / E
    with np.errstate(all="ignore"):
        mean = np.array([np.median(row[np.isfinite(row)]) if np.isfinite(row).any() else np.nan for row in mag])
    ok = (cover >= min_coverage) & np.isfinite(rms) & np.isfinite(mean)
    if exclude is not None:
        ok &= ~np.asarray(exclude, bool)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return idx
    order = idx[np.argsort(mean[idx])]
    half = 7
    r = rms[order]
    pad = np.pad(r, half, mode="edge")
    trend = np.median(np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1), axis=1)
    quiet = order[r <= quiet_factor * trend]
    return quiet[:max_templates]


def trend_basis(mag: np.ndarray, templates: np.ndarray, *, margin: float = 1.5, max_vectors: int = 5) -> np.ndarray:
    """The trends the templates share.

    They are the principal components of the templates' whitened light curves whose variance exceeds
    ``margin`` times the largest that pure noise gives (the Marchenko-Pastur edge ``(1 + sqrt(K / E))^2`` for
    K templates over E frames), at most ``max_vectors``.

    Parameters
    ----------
    mag : (S, E) array
        Light curves (NaN where missing).
    templates : int array
        Indices of the template stars (:func:`choose_templates`); fewer than 3 (or fewer than 3 frames) give
        no basis.
    margin : float
        Factor over the Marchenko-Pastur edge a component's variance must exceed.
    max_vectors : int
        Basis vectors at most.

    Returns
    -------
    (E, k) array
        Unit-variance basis vectors (k may be 0: the templates share nothing but noise).
    """
    K = len(templates)
    E = mag.shape[1]
    if K < 3 or E < 3:
        return np.zeros((E, 0))
    T = mag[templates]
    with np.errstate(all="ignore"):
        med = np.array([np.median(r[np.isfinite(r)]) for r in T])[:, None]
        T = T - med
        sd = MAD_TO_SIGMA * np.array([np.median(np.abs(r[np.isfinite(r)])) for r in T])[:, None]
    T = np.where(np.isfinite(T), T / np.maximum(sd, 1e-6), 0.0)  # a missing point counts as the mean
    u, sv, _ = np.linalg.svd(T.T, full_matrices=False)  # (E, K)
    eig = sv**2 / E  # eigenvalues of the templates' sample covariance, in units of their noise
    keep = eig > margin * (1.0 + np.sqrt(K / E)) ** 2
    k = int(min(keep.sum(), max_vectors))
    return u[:, :k] * np.sqrt(E)


def tfa(
    mag: np.ndarray,
    err: np.ndarray,
    basis: np.ndarray,
    t: np.ndarray,
    *,
    min_points: int = 20,
    window: int = 0,
    clip: float = 4.0,
    alpha: float = 1e-3,
    stars: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """TFA trends of each star.

    The trend is the least-squares combination of the templates' shared trends (``basis``, from
    :func:`trend_basis`) in the star's light curve, removed only when significant.

    Parameters
    ----------
    mag, err : (S, E) arrays
        Light curves (EPD-detrended, usually), NaN where a star has no point.
    basis : (E, k) array
        The shared trends.
    t : (E,) array
        Frame times.
    min_points : int
        Stars with fewer points (or fewer than 2 per basis vector and constant) get no trend (NaN); see
        :func:`epd`.
    window : int
        Running-median window of the signal reconstruction (points); 0 for plain TFA; see :func:`epd`.
    clip : float
        Points further than this many robust sigmas from the fit are left out of it; see :func:`epd`.
    alpha : float
        Significance level of the F-test the trend must pass to be removed; see :func:`epd`.
    stars : (S,) bool array, optional
        Only these stars are fitted; see :func:`epd`.

    Returns
    -------
    trend : (S, E) array
        The trend of each point (0 when not significant or when the basis is empty; NaN where the star has no
        point or too few).
    n_terms : (S,) int array
        Terms the trend used (0 or k; -1 when the star had too few points).
    """
    S, E = mag.shape
    k = basis.shape[1]
    out = np.full((S, E), np.nan)
    n_terms = np.full(S, -1, dtype=np.int64)
    for s in range(S) if stars is None else np.flatnonzero(stars):
        ok = np.isfinite(mag[s]) & np.isfinite(err[s])
        n = int(ok.sum())
        if n < max(min_points, 2 * (k + 1)):
            continue
        if k == 0:
            out[s, ok], n_terms[s] = 0.0, 0
            continue
        A = np.column_stack([np.ones(n), basis[ok]])
        out[s, ok], n_terms[s] = _fit_protected(A, mag[s, ok], err[s, ok], t[ok], window, clip, alpha)
    return out, n_terms
