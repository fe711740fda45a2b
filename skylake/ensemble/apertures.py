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

import numpy as np

from skylake.ensemble.solve import monomial_rows

__all__ = ["SWITCH_GAIN", "aperture_offsets", "choose_apertures"]


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
    frame = np.asarray(frame, np.int64)
    star = np.asarray(star, np.int64)
    delta = np.asarray(delta, float)
    good = np.asarray(fit, bool) & np.isfinite(delta) & np.isfinite(err) & (np.asarray(err) > 0)
    X = monomial_rows(u, v, order)
    P = X.shape[0] + 1
    w_all = 1.0 / np.where(np.isfinite(err) & (np.asarray(err) > 0), err, 1.0) ** 2
    use = good.copy()
    star_term = np.zeros(n_stars)
    terms = np.zeros((n_frames, P))
    solved = np.zeros(n_frames, bool)
    for it in range(iterations):
        w = np.where(use, w_all, 0.0)
        terms, solved = _frame_terms(frame, X, w, np.where(use, delta - star_term[star], 0.0), use, n_frames)
        frame_term = _frame_values(X, terms, frame)
        # per star: the weighted mean of what is left
        sw = np.bincount(star, w, n_stars)
        with np.errstate(divide="ignore", invalid="ignore"):
            star_term = np.bincount(star, w * np.where(use, delta - frame_term, 0.0), n_stars) / sw
        star_term = np.where(sw > 0, star_term, np.nan)
        del w
        if it > 0 and clip > 0:
            resid = (delta - frame_term - star_term[star]) * np.sqrt(w_all)
            scale = float(np.sqrt(np.nanmean(resid[use] ** 2))) if use.any() else 1.0
            use = good & (np.abs(resid) <= clip * max(scale, 1.0))
            del resid
        del frame_term  # not alive while the next round makes its own
    frame_term = np.where(solved[frame], _frame_values(X, terms, frame), np.nan)
    del X
    # a star none of whose points was fitted (flagged, saturated, a variable): its own points' mean
    left = delta - frame_term
    missing = ~np.isfinite(star_term)
    if missing.any():
        ok = np.isfinite(left)
        sw = np.bincount(star[ok], w_all[ok], n_stars)
        with np.errstate(divide="ignore", invalid="ignore"):
            own = np.bincount(star[ok], w_all[ok] * left[ok], n_stars) / sw
        star_term = np.where(missing, own, star_term)
    return left - star_term[star]


def _frame_terms(frame, X, w, target, use, n_frames):
    """Each frame's weighted least-squares polynomial in chip position (normal equations by ``np.bincount``).

    Parameters
    ----------
    frame : int array (N,)
        Each point's frame.
    X : float array (P - 1, N)
        The design's columns but the constant (:func:`skylake.ensemble.solve.monomial_rows`).
    w : float array (N,)
        Weights (0 for points left out).
    target : float array (N,)
        What the polynomial is fitted to.
    use : bool array (N,)
        The points fitted.
    n_frames : int
        Number of frames.

    Returns
    -------
    terms : numpy.ndarray (n_frames, P)
        The coefficients (0 where not solved).
    solved : numpy.ndarray (n_frames,)
        Frames with more than ``P`` points and a well-conditioned system.
    """
    P = X.shape[0] + 1
    A = np.empty((n_frames, P, P))
    rhs = np.empty((n_frames, P))
    for a in range(P):
        wx = X[a - 1] * w if a else w  # one column at a time, no (N, P) temporary; column 0 is 1
        for b in range(a, P):
            A[:, a, b] = A[:, b, a] = np.bincount(frame, wx * X[b - 1] if b else wx, n_frames)
        rhs[:, a] = np.bincount(frame, wx * target, n_frames)
    n_per = np.bincount(frame[use], minlength=n_frames)
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

    Examples
    --------
    >>> choose_apertures(np.array([0, 0, 1, 2]), np.array([[1.0, 1.0, 4.0, 1.0], [2.0, np.nan, 1.0, 0.9]]), 3).tolist()
    [0, 1, 0]
    """
    star = np.asarray(star, np.int64)
    variance = np.atleast_2d(np.asarray(variance, float))
    finite = np.isfinite(variance)
    counts = np.stack([np.bincount(star[f], minlength=n_stars) for f in finite])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.stack([np.bincount(star[f], v[f], n_stars) for f, v in zip(finite, variance)]) / np.maximum(counts, 1)
    most = counts == counts.max(axis=0, keepdims=True)
    mean = np.where(most & (counts > 0), mean, np.inf)
    mean[1:] /= SWITCH_GAIN  # the others must do better by the margin
    return np.argmin(mean, axis=0)
