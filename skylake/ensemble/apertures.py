"""The best aperture per star: every measured flux brought onto the ensemble's scale, and a choice by noise.

Extraction measures each source in several apertures (``flux_auto``, Kron's, and the profile's three circles).
The calibration and the ensemble solve use one of them (``[calibration] flux``). For a faint star a small circle
holds less sky and is less noisy; for a bright one a larger aperture loses less light as the seeing changes.
HATNet's pipeline measures several apertures and keeps, per star, the one with the lowest scatter; here the
choice is made by the *modelled* noise of each aperture (:mod:`skylake.ensemble.noise`), which a light curve of
a few points cannot bias the way its own scatter would.

Aperture ``A`` of a point on frame ``e`` of star ``s`` is brought onto the calibrated flux's scale by
:func:`aperture_offsets`: the difference ``delta = m_A - m_cal`` of the two instrumental magnitudes is the
aperture's light lost or gained, which depends on the star's place on the chip (the PSF there: a constant per
star, ``S_A(s)``) and on the frame's seeing (``P_A(e, u, v)``, a polynomial in chip position per frame, as the
ensemble's terms). Alternating weighted means fit both; the point's magnitude in ``A`` is then
``mag + (delta - P_A(e, u, v) - S_A(s))``: the ensemble-calibrated magnitude's level, ``A``'s noise.
"""

from __future__ import annotations

import math

import numpy as np

from skylake.ensemble.blocks import blocks
from skylake.ensemble.solve import monomial_rows, n_spatial_terms

__all__ = ["SWITCH_GAIN", "aperture_offsets", "choose_apertures", "variance_sums", "choose_from_sums"]


def aperture_offsets(
    frame: np.ndarray,
    star: np.ndarray,
    delta: np.ndarray,
    err: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    fit: np.ndarray,
    *,
    n_frames: int,
    n_stars: int,
    order: int = 1,
    iterations: int = 4,
    clip: float = 4.0,
) -> np.ndarray:
    """Each point's ``delta`` less its frame's aperture term and its star's: what aperture ``A`` adds to ``mag``.

    Parameters
    ----------
    frame, star : int arrays (N,)
        Each point's frame (``0 .. n_frames - 1``) and star (``0 .. n_stars - 1``).
    delta : float array (N,)
        ``m_A - m_cal`` of each point, mag (NaN where either flux is not positive).
    err : float array (N,)
        The error of ``delta``, mag (weights).
    u, v : float arrays (N,)
        Chip position scaled to [-1, 1].
    fit : bool array (N,)
        Points the terms are fitted to (constant, unflagged, unsaturated stars of solved frames).
    n_frames, n_stars : int
        Number of frames and of stars.
    order : int
        Order of the per-frame polynomial in chip position (0: an offset, 1: a plane, 2: quadratic).
    iterations : int
        Alternations of the star and frame terms.
    clip : float
        Points further than this many errors (scaled by the rms of the normalised residuals) are left out
        after the first round.

    Returns
    -------
    numpy.ndarray (N,)
        ``delta - P_A(frame, u, v) - S_A(star)``, mag; NaN where ``delta`` is NaN or the frame has no term.

    Notes
    -----
    Memory: every pass goes a block of points at a time (:mod:`skylake.ensemble.blocks`), so besides the result
    and two masks no array is as long as the points; int32 indices and float32 errors and positions are used as
    they are (each block is computed in float64).

    Examples
    --------
    A frame whose aperture loses 0.1 mag more light, and stars that lose their own constant amounts: each
    point's offset is 0.

    >>> frame = np.array([0, 0, 1, 1]); star = np.array([0, 1, 0, 1])
    >>> delta = np.array([0.2, 0.3, 0.3, 0.4])
    >>> out = aperture_offsets(frame, star, delta, np.full(4, 0.01), np.zeros(4), np.zeros(4), np.ones(4, bool),
    ...                        n_frames=2, n_stars=2, order=0)
    >>> bool(np.allclose(out, 0.0))
    True
    """
    frame, star, err = np.asarray(frame), np.asarray(star), np.asarray(err)
    delta = np.asarray(delta, float)
    fit = np.asarray(fit, bool)
    P = 1 + n_spatial_terms(order)
    good = np.empty(delta.size, bool)
    for b in blocks(delta.size):
        good[b] = fit[b] & np.isfinite(delta[b]) & np.isfinite(err[b]) & (err[b] > 0)
    use = good.copy()
    star_term = np.zeros(n_stars)
    terms = np.zeros((n_frames, P))
    solved = np.zeros(n_frames, bool)
    # each point's frame term, then its residual in the clipping; at the end, the offsets (no other (N,) arrays)
    out = np.empty(delta.size)
    for it in range(iterations):
        terms, solved = _frame_terms(frame, star, delta, err, u, v, use, star_term, order, n_frames)
        # per star: the weighted mean of what is left
        sw, swl = np.zeros(n_stars), np.zeros(n_stars)
        for b in blocks(delta.size):
            out[b] = _frame_values(monomial_rows(u[b], v[b], order), terms, frame[b])
            w = _weights(err[b], use[b])
            sw += np.bincount(star[b], w, n_stars)
            swl += np.bincount(star[b], w * np.where(use[b], delta[b] - out[b], 0.0), n_stars)
        with np.errstate(divide="ignore", invalid="ignore"):
            star_term = np.where(sw > 0, swl / sw, np.nan)
        if it > 0 and clip > 0:
            use = _clipped(good, use, out, star, delta, err, star_term, clip)
    # a star none of whose points was fitted (flagged, saturated, a variable): its own points' mean
    missing = ~np.isfinite(star_term)
    sw, swl = np.zeros(n_stars), np.zeros(n_stars)
    for b in blocks(delta.size):
        frame_term = _frame_values(monomial_rows(u[b], v[b], order), terms, frame[b])
        out[b] = delta[b] - np.where(solved[frame[b]], frame_term, np.nan)
        if missing.any():
            left = out[b]
            ok = np.isfinite(left)
            w = _weights(err[b][ok])
            sw += np.bincount(star[b][ok], w, n_stars)
            swl += np.bincount(star[b][ok], w * left[ok], n_stars)
    if missing.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            star_term = np.where(missing, swl / sw, star_term)
    for b in blocks(delta.size):
        out[b] -= star_term[star[b]]
    return out


def _weights(err: np.ndarray, use: np.ndarray | None = None) -> np.ndarray:
    """``1 / err^2`` in float64 (1 where the error is not a positive number), 0 off ``use``.

    Parameters
    ----------
    err : float array
        Errors, mag.
    use : bool array, optional
        The points weighted (default all).

    Returns
    -------
    numpy.ndarray
        The weights.
    """
    w = np.asarray(np.where(np.isfinite(err) & (err > 0), err, 1.0), np.float64)
    w *= w
    np.divide(1.0, w, out=w)
    if use is not None:
        w[~use] = 0.0
    return w


def _clipped(good, use, resid, star, delta, err, star_term, clip):
    """The points of the next round: ``good`` ones within ``clip`` errors of their frame's and star's terms,
    the errors scaled by the rms of the normalised residuals of this round's points when above 1.

    Parameters
    ----------
    good : bool array (N,)
        The points that may be fitted.
    use : bool array (N,)
        This round's points; overwritten with the next round's.
    resid : float array (N,)
        Each point's frame term; overwritten with its normalised residual.
    star : int array (N,)
        Each point's star.
    delta, err : float arrays (N,)
        What is fitted and its error, mag.
    star_term : float array (S,)
        The stars' terms.
    clip : float
        Errors from the terms a point may be.

    Returns
    -------
    bool array (N,)
        ``use``, updated.
    """
    ss, n = 0.0, 0
    for b in blocks(delta.size):
        r = delta[b] - resid[b]
        r -= star_term[star[b]]
        r *= np.sqrt(_weights(err[b]))
        resid[b] = r
        r2 = r[use[b]] ** 2
        r2 = r2[~np.isnan(r2)]
        ss, n = ss + float(r2.sum()), n + r2.size
    # np.nanmean's: NaN when every residual is NaN, and then no point is within the limit
    scale = math.sqrt(ss / n) if n else (float("nan") if use.any() else 1.0)
    limit = clip * max(scale, 1.0)
    for b in blocks(delta.size):
        use[b] = good[b] & (np.abs(resid[b]) <= limit)
    return use


def _frame_terms(frame, star, delta, err, u, v, use, star_term, order, n_frames):
    """Each frame's weighted least-squares polynomial in chip position, fitted to ``delta`` less the stars' terms
    (normal equations by ``np.bincount``, a block of points at a time).

    Parameters
    ----------
    frame, star : int arrays (N,)
        Each point's frame and star.
    delta, err : float arrays (N,)
        What is fitted and its error, mag.
    u, v : float arrays (N,)
        Chip position scaled to [-1, 1].
    use : bool array (N,)
        The points fitted.
    star_term : float array (S,)
        The stars' terms, taken off ``delta``.
    order : int
        The polynomial's order.
    n_frames : int
        Number of frames.

    Returns
    -------
    terms : numpy.ndarray (n_frames, P)
        The coefficients (0 where not solved).
    solved : numpy.ndarray (n_frames,)
        Frames with more than ``P`` points and a well-conditioned system.
    """
    P = 1 + n_spatial_terms(order)
    A = np.zeros((n_frames, P, P))
    rhs = np.zeros((n_frames, P))
    n_per = np.zeros(n_frames, np.intp)
    for b in blocks(delta.size):
        X, f, ub = monomial_rows(u[b], v[b], order), frame[b], use[b]
        w = _weights(err[b], ub)
        target = np.where(ub, delta[b] - star_term[star[b]], 0.0)
        for a in range(P):
            wx = X[a - 1] * w if a else w  # one column at a time, no (N, P) temporary; column 0 is 1
            for c in range(a, P):
                A[:, a, c] += np.bincount(f, wx * X[c - 1] if c else wx, n_frames)
            rhs[:, a] += np.bincount(f, wx * target, n_frames)
        n_per += np.bincount(f[ub], minlength=n_frames)
    for a in range(P):
        for c in range(a + 1, P):
            A[:, c, a] = A[:, a, c]
    solved = n_per >= P + 1
    if P > 1:
        solved &= np.linalg.cond(np.where(solved[:, None, None], A, np.eye(P))) < 1e10
    terms = np.zeros((n_frames, P))
    if solved.any():
        terms[solved] = np.linalg.solve(A[solved], rhs[solved][..., None])[..., 0]
    return terms, solved


def _frame_values(X, terms, frame):
    """Each point's frame polynomial, ``terms[frame, 0] + sum_j X[j - 1] terms[frame, j]``.

    Parameters
    ----------
    X : float array (P - 1, N)
        The design's columns but the constant (:func:`skylake.ensemble.solve.monomial_rows`).
    terms : float array (n_frames, P)
        Each frame's coefficients.
    frame : int array (N,)
        Each point's frame.

    Returns
    -------
    numpy.ndarray (N,)
        The values.
    """
    out = terms[frame, 0]  # the constant column's
    for j in range(1, terms.shape[1]):
        out += X[j - 1] * terms[frame, j]
    return out


#: Another aperture replaces the first (the calibrated flux) only where its modelled variance is below this
#: fraction of the first's: near a crossing of two apertures' curves the one chosen would be the one whose model
#: errs low (their pulls then exceed 1), for a gain of a few per cent.
SWITCH_GAIN = 0.8


def variance_sums(star: np.ndarray, variance: np.ndarray, n_stars: int) -> tuple[np.ndarray, np.ndarray]:
    """Per star, its points with a modelled variance in one aperture and the sum of those variances.

    What :func:`choose_apertures` needs of an aperture: sums over blocks of points add up, so a caller can model
    the apertures one at a time and keep none of their variances (:func:`choose_from_sums`).

    Parameters
    ----------
    star : int array (N,)
        Each point's star, ``0 .. n_stars - 1``.
    variance : float array (N,)
        The modelled variance of each point in the aperture (NaN where not measured).
    n_stars : int
        Number of stars.

    Returns
    -------
    counts : numpy.ndarray (n_stars,)
        Points with a finite variance per star.
    sums : numpy.ndarray (n_stars,)
        Their variances' sum per star.
    """
    star, variance = np.asarray(star), np.asarray(variance, float)
    counts, sums = np.zeros(n_stars, np.intp), np.zeros(n_stars)
    for b in blocks(star.size):
        f = np.isfinite(variance[b])
        counts += np.bincount(star[b][f], minlength=n_stars)
        sums += np.bincount(star[b][f], variance[b][f], n_stars)
    return counts, sums


def choose_from_sums(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Each star's aperture from :func:`variance_sums` of every aperture (see :func:`choose_apertures`).

    Parameters
    ----------
    counts, sums : arrays (K, n_stars)
        Per aperture, :func:`variance_sums`' counts and sums.

    Returns
    -------
    numpy.ndarray (n_stars,)
        The index (``0 .. K - 1``) of each star's aperture (0 for a star without points).

    Examples
    --------
    >>> choose_from_sums(np.array([[2, 1, 1], [1, 1, 1]]), np.array([[2.0, 4.0, 1.0], [2.0, 1.0, 0.9]])).tolist()
    [0, 1, 0]
    """
    counts, sums = np.atleast_2d(counts), np.atleast_2d(np.asarray(sums, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sums / np.maximum(counts, 1)
    most = counts == counts.max(axis=0, keepdims=True)
    mean = np.where(most & (counts > 0), mean, np.inf)
    mean[1:] /= SWITCH_GAIN  # the others must do better by the margin
    return np.argmin(mean, axis=0)


def choose_apertures(star: np.ndarray, variance: np.ndarray, n_stars: int) -> np.ndarray:
    """Each star's aperture: of those measuring most of its points, the one of least mean modelled variance (the
    first, the calibrated flux, unless another's is below :data:`SWITCH_GAIN` times its own).

    Parameters
    ----------
    star : int array (N,)
        Each point's star, ``0 .. n_stars - 1``.
    variance : float array (K, N)
        The modelled variance of each point in each of ``K`` apertures (NaN where not measured).
    n_stars : int
        Number of stars.

    Returns
    -------
    numpy.ndarray (n_stars,)
        The index (``0 .. K - 1``) of each star's aperture (0 for a star without points).

    See Also
    --------
    variance_sums, choose_from_sums : The same choice, the apertures' variances taken one at a time.

    Examples
    --------
    >>> choose_apertures(np.array([0, 0, 1, 2]), np.array([[1.0, 1.0, 4.0, 1.0], [2.0, np.nan, 1.0, 0.9]]), 3).tolist()
    [0, 1, 0]
    """
    sums = [variance_sums(star, v, n_stars) for v in np.atleast_2d(np.asarray(variance, float))]
    return choose_from_sums(np.stack([c for c, _ in sums]), np.stack([t for _, t in sums]))
