"""The ensemble solve: every frame's relative zeropoint and spatial term, and every star's mean magnitude.

They are solved from all the stars the frames share (Honeycutt 1992, PASP 104, 435: inhomogeneous ensemble
photometry).

Model, for point ``i`` (star ``s``, frame ``e``, chip position ``u, v``)::

    m_i + d_e + sum_k c_ek T_k(u_i, v_i) = M_s + noise

``m_i`` is the point's magnitude calibrated with its frame's absolute zeropoint (``inst_mag + zp``), ``d_e``
and ``c_ek`` the frame's relative offset and spatial terms (``T_k``: the monomials ``u, v, u^2, u v, v^2`` up
to ``spatial_order``, with ``u, v`` the chip position scaled to [-1, 1]), ``M_s`` the star's mean magnitude.
Weights ``1 / (err_i^2 + floor^2)``. The solve is a sparse least-squares problem of ``E (1 + K) + S``
unknowns; it is solved by alternating exact block solves (each star's mean given the frames; each frame's
``1 + K`` terms given the stars; Honeycutt's own iteration), which needs only O(points) memory and a
``bincount`` per block, and is checked against a direct solve in the tests.

Two degeneracies are fixed after the solve: a constant moves between every ``d_e`` and every ``M_s`` (the
weighted mean of ``d_e`` over the anchor frames is set to 0, so the catalogue's absolute scale is kept: the
mean correction of the frames with an ok catalogue zeropoint is zero), and, for a field that does not move
on the chip, a spatial pattern common to all frames moves into the stars' means (the mean of each ``c_ek``
over the frames is set to 0: the spatial terms describe how a frame differs from the night's mean frame).

Robustness: points further than ``clip_sigma`` from their star's mean (in units of their error, scaled by
the solve's overall reduced chi2 when above 1) are left out; so are stars whose own reduced chi2 is above
``variable_chi2`` times the median of the stars of similar magnitude (variables, blends); then the solve is
repeated, until nothing changes. Every star, used or not, gets its mean from the final frame terms.

Everything here is a pure function of arrays: the stage that reads the lake is :mod:`skylake.ensemble.stage`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from skylake.profile import register_section

__all__ = ["EnsembleSettings", "EnsembleSolution", "solve", "design", "n_spatial_terms"]


@dataclass(frozen=True)
class EnsembleSettings:
    """Settings of :func:`solve` (a profile's ``[ensemble]`` table).

    Attributes
    ----------
    spatial_order : int
        0: an offset per frame; 1: plus a plane in chip position; 2: plus the quadratic terms.
    min_frames : int
        A field (frames sharing stars) with fewer frames is not solved.
    min_stars : int
        A frame with fewer used stars gets no relative terms (status ``too_few_stars``).
    min_points : int
        A star measured on fewer frames takes no part in the solve (its mean would fit its points exactly).
    max_err : float
        Largest error of a point in the solve, mag: points with a larger error take no part in the solve.
    floor_mag : float
        Error floor, mag: added in quadrature to each point's error in the weights (flat-field and aperture
        errors that photon noise does not describe; keeps the brightest stars from dominating).
    clip_sigma : float
        Points further than this many (scaled) errors from their star's mean are left out.
    variable_chi2 : float
        Stars whose reduced chi2 exceeds this factor times the median of stars of similar magnitude are
        left out (variables, blends).
    max_iter : int
        Alternating iterations per solve.
    tol_mag : float
        The alternation stops when no point's correction changes by more than this, mag.
    max_rounds : int
        Clip-and-resolve rounds.

    Raises
    ------
    ValueError
        When ``spatial_order`` is not 0, 1 or 2, or another setting is not a number in its allowed range.
    """

    spatial_order: int = 1
    min_frames: int = 3
    min_stars: int = 10
    min_points: int = 3
    max_err: float = 0.05
    floor_mag: float = 0.002
    clip_sigma: float = 4.0
    variable_chi2: float = 4.0
    max_iter: int = 200
    tol_mag: float = 1e-6
    max_rounds: int = 6

    def __post_init__(self):
        if self.spatial_order not in (0, 1, 2):
            raise ValueError(f"ensemble.spatial_order must be 0, 1 or 2, got {self.spatial_order!r}")
        for name, lo, hi in (
            ("min_frames", 2, 10**9),
            ("min_stars", 1, 10**9),
            ("min_points", 2, 10**9),
            ("max_iter", 1, 10**6),
            ("max_rounds", 1, 100),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ValueError(f"ensemble.{name} must be an integer in [{lo}, {hi}], got {v!r}")
        for name, lo, hi in (
            ("max_err", 1e-6, 10.0),
            ("floor_mag", 0.0, 1.0),
            ("clip_sigma", 1.0, 1e3),
            ("variable_chi2", 1.0, 1e6),
            ("tol_mag", 1e-12, 0.1),
        ):
            v = getattr(self, name)
            try:
                ok = lo <= float(v) <= hi
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"ensemble.{name} must be a number in [{lo}, {hi}], got {v!r}")

    @classmethod
    def from_dict(cls, d) -> EnsembleSettings:
        """From a mapping; unknown keys are refused with the known ones listed.

        Parameters
        ----------
        d : mapping
            Settings by name (a profile's ``[ensemble]`` table without the stage's own options).

        Returns
        -------
        EnsembleSettings
            The settings, defaults where ``d`` has none.

        Raises
        ------
        ValueError
            When ``d`` has an unknown key, or a setting is invalid.
        """
        known = list(cls.__dataclass_fields__)
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown ensemble setting(s) {unknown}; known: {known}")
        return cls(**d)


def n_spatial_terms(order: int) -> int:
    """Number of spatial monomials ``T_k`` of :func:`design` for a polynomial order (0, 2 or 5).

    Parameters
    ----------
    order : int
        The polynomial order: 0, 1 or 2.

    Returns
    -------
    int
        0 for order 0, 2 for order 1 and 5 for order 2.
    """
    return {0: 0, 1: 2, 2: 5}[order]


def design(u: np.ndarray, v: np.ndarray, order: int) -> np.ndarray:
    """The frame-term design rows ``[1, u, v, u^2, u v, v^2][: 1 + K]`` of points at scaled chip positions.

    Parameters
    ----------
    u, v : float arrays (N,)
        Chip position scaled to [-1, 1].
    order : int
        The polynomial order: 0, 1 or 2.

    Returns
    -------
    ndarray (N, 1 + K)
        The constant and the ``K`` monomials of each point (``K`` from :func:`n_spatial_terms`).
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    cols = [np.ones_like(u)]
    if order >= 1:
        cols += [u, v]
    if order >= 2:
        cols += [u * u, u * v, v * v]
    return np.column_stack(cols)


@dataclass
class EnsembleSolution:
    """What :func:`solve` found.

    Attributes
    ----------
    terms : ndarray (E, 1 + K)
        Per frame ``d_e`` and ``c_ek`` (NaN for a frame that was not solved).
    terms_cov : ndarray (E, 1 + K, 1 + K)
        Their covariance (scaled by the frame's reduced chi2 when above 1).
    frame_n : ndarray (E,)
        Points (stars) used per frame.
    frame_rms : ndarray (E,)
        rms of the used points' residuals, mag.
    frame_chi2 : ndarray (E,)
        Reduced chi2 of the used points.
    frame_ok : ndarray (E,) of bool
        Frames with at least ``min_stars`` used stars.
    star_mag : ndarray (S,)
        Mean magnitude ``M_s`` (weighted, over the star's unclipped points; NaN without any).
    star_err : ndarray (S,)
        Its error.
    star_n : ndarray (S,)
        Points of the star in the final solve.
    star_chi2 : ndarray (S,)
        Reduced chi2 of the star's points about its mean (NaN with fewer than 2).
    star_used : ndarray (S,) of bool
        Stars that took part in the final solve.
    star_variable : ndarray (S,) of bool
        Stars left out as variable (their reduced chi2 far above that of stars of their magnitude).
    correction : ndarray (N,)
        Each point's correction ``d_e + sum c_ek T_k`` (0 for points of unsolved frames), mag.
    correction_err : ndarray (N,)
        Its error from ``terms_cov``, mag.
    point_used : ndarray (N,) of bool
        Points in the final solve.
    iterations : int
        Alternating iterations of the last solve.
    rounds : int
        Clip-and-resolve rounds.
    notes : dict
        Diagnostics: ``chi2_scale``, the factor the errors were scaled by in the clipping (the square root of
        the solve's overall reduced chi2, at least 1).
    """

    terms: np.ndarray
    terms_cov: np.ndarray
    frame_n: np.ndarray
    frame_rms: np.ndarray
    frame_chi2: np.ndarray
    frame_ok: np.ndarray
    star_mag: np.ndarray
    star_err: np.ndarray
    star_n: np.ndarray
    star_chi2: np.ndarray
    star_used: np.ndarray
    star_variable: np.ndarray
    correction: np.ndarray
    correction_err: np.ndarray
    point_used: np.ndarray
    iterations: int = 0
    rounds: int = 0
    notes: dict = field(default_factory=dict)


def _star_means(star, y, w, n_stars):
    sw = np.bincount(star, w, n_stars)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.bincount(star, w * y, n_stars) / sw, sw


def _frame_terms(frame, X, target, w, n_frames):
    """Weighted least squares per frame of ``target ~ X @ c``; returns (E, P) terms, the normal matrices
    and which frames could be solved (a full-rank normal matrix)."""
    P = X.shape[1]
    wx = X * w[:, None]
    A = np.empty((n_frames, P, P))
    for a in range(P):
        for b in range(a, P):
            A[:, a, b] = A[:, b, a] = np.bincount(frame, wx[:, a] * X[:, b], n_frames)
    rhs = np.stack([np.bincount(frame, wx[:, a] * target, n_frames) for a in range(P)], axis=1)
    # a frame whose stars cannot fix its terms (too few, or all on a line) is left unsolved
    ok = A[:, 0, 0] > 0
    if P > 1:
        ok &= np.linalg.cond(np.where(ok[:, None, None], A, np.eye(P))) < 1e10
    terms = np.full((n_frames, P), np.nan)
    if ok.any():
        terms[ok] = np.linalg.solve(A[ok], rhs[ok][..., None])[..., 0]
    return terms, A, ok


def _prune(mask, star, frame, star_out, n_stars, n_frames, s, P):
    """Leave out of ``mask`` the variables, the stars on too few frames and the frames with too few stars.

    Parameters
    ----------
    mask : bool array (N,)
        The points that may take part.
    star, frame : int arrays (N,)
        Each point's star and frame.
    star_out : bool array (S,)
        Stars left out as variable.
    n_stars, n_frames : int
        Number of stars and of frames.
    s : EnsembleSettings
        The solve's settings (``min_points``, ``min_stars``).
    P : int
        Frame terms per frame (``1 + K``).

    Returns
    -------
    bool array (N,)
        The points that take part: three rounds of removing stars with fewer than ``min_points`` points
        and frames with fewer than ``max(min_stars, P + 1)`` points.
    """
    mask = mask & ~star_out[star]
    for _ in range(3):
        mask &= np.bincount(star[mask], minlength=n_stars)[star] >= s.min_points
        mask &= np.bincount(frame[mask], minlength=n_frames)[frame] >= max(s.min_stars, P + 1)
    return mask


def _alternate(frame, star, mag, X, terms, w, used, n_frames, n_stars, s):
    """Alternate the exact block solves (stars' means, then frames' terms) until the corrections settle.

    Parameters
    ----------
    frame, star : int arrays (N,)
        Each point's frame and star.
    mag : float array (N,)
        The points' magnitudes.
    X : ndarray (N, P)
        The points' design rows (:func:`design`).
    terms : ndarray (E, P)
        The frames' terms to start from.
    w : float array (N,)
        The points' weights (0 for points not used).
    used : bool array (N,)
        The points in the solve.
    n_frames, n_stars : int
        Number of frames and of stars.
    s : EnsembleSettings
        The solve's settings (``max_iter``, ``tol_mag``).

    Returns
    -------
    terms : ndarray (E, P)
        The frames' terms (0 for frames that could not be solved).
    corr : ndarray (N,)
        Each point's correction from them.
    ok : bool array (E,)
        Frames solved in the last iteration.
    iterations : int
        Iterations done.
    """
    P = X.shape[1]
    corr = np.einsum("ij,ij->i", X, terms[frame])
    corr = np.where(np.isfinite(corr), corr, 0.0)
    iterations = 0
    for _ in range(s.max_iter):
        M, _sw = _star_means(star, mag + corr, w, n_stars)
        target = np.where(used, M[star] - mag, 0.0)
        new_terms, _A, ok = _frame_terms(frame, X, target, w, n_frames)
        new_terms[~ok] = 0.0
        if P > 1 and ok.any():  # gauge, as in solve: keeps the alternation out of a near-degenerate valley
            new_terms[ok, 1:] -= new_terms[ok, 1:].mean(axis=0)
        new_corr = np.einsum("ij,ij->i", X, new_terms[frame])
        change = float(np.max(np.abs(new_corr - corr)[used])) if used.any() else 0.0
        terms, corr = new_terms, new_corr
        iterations += 1
        if change < s.tol_mag:
            break
    return terms, corr, ok, iterations


def _chi2_scale(star, y, w, w_all, used, ok, P, n_stars):
    """The factor the errors are scaled by in the clipping: the root of the solve's reduced chi2, at least 1.

    Parameters
    ----------
    star : int array (N,)
        Each point's star.
    y : float array (N,)
        The points' corrected magnitudes (``mag + corr``).
    w : float array (N,)
        The points' weights in the solve (0 for points not used).
    w_all : float array (N,)
        Every point's weight.
    used : bool array (N,)
        The points in the solve.
    ok : bool array (E,)
        The frames solved.
    P : int
        Frame terms per frame.
    n_stars : int
        Number of stars.

    Returns
    -------
    scale : float
        The factor.
    M : ndarray (S,)
        The stars' means.
    resid : ndarray (N,)
        Each point's residual about its star's mean.
    """
    M, sw = _star_means(star, y, w, n_stars)
    resid = y - M[star]
    r2 = np.where(used, resid**2 * w_all, 0.0)
    dof = max(int(used.sum()) - int(ok.sum()) * P - int((sw > 0).sum()), 1)
    return max(1.0, math.sqrt(float(r2.sum()) / dof)), M, resid


def _kept_chi2(star, y, w_all, kept, n_stars):
    """Each star's reduced chi2 over its kept points, and their number.

    Parameters
    ----------
    star : int array (N,)
        Each point's star.
    y : float array (N,)
        The points' corrected magnitudes (``mag + corr``).
    w_all : float array (N,)
        Every point's weight.
    kept : bool array (N,)
        The points used and not clipped.
    n_stars : int
        Number of stars.

    Returns
    -------
    chi2 : ndarray (S,)
        Reduced chi2 about the mean of the kept points.
    npts : ndarray (S,)
        Kept points per star.
    """
    Mk, _sw = _star_means(star, y, np.where(kept, w_all, 0.0), n_stars)
    rk2 = np.where(kept, (y - Mk[star]) ** 2 * w_all, 0.0)
    npts = np.bincount(star[kept], minlength=n_stars)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.bincount(star, rk2, n_stars) / np.maximum(npts - 1, 1)
    return chi2, npts


def _gauge(terms, ok_frames, anchor):
    """Fix the degeneracies: the anchor frames' mean correction is zero, the spatial terms average to zero.

    Parameters
    ----------
    terms : ndarray (E, P)
        The frames' terms.
    ok_frames : bool array (E,)
        Frames solved with used points.
    anchor : bool array (E,)
        Frames whose corrections average to zero (all solved frames when none of them is solved).

    Returns
    -------
    ndarray (E, P)
        The shifted terms, NaN for frames not in ``ok_frames``.
    """
    P = terms.shape[1]
    if not ok_frames.any():
        return np.full(terms.shape, np.nan)
    shift = np.zeros(P)
    wa = np.where(anchor & ok_frames, 1.0, 0.0)
    if wa.sum() == 0:
        wa = ok_frames.astype(float)
    shift[0] = float(np.sum(wa * terms[:, 0]) / wa.sum())
    if P > 1:
        shift[1:] = terms[ok_frames, 1:].mean(axis=0)
    return np.where(ok_frames[:, None], terms - shift, np.nan)


def _final_stars(star, y, w_all, used, base, any_pts, n_stars):
    """Every star's mean, error and reduced chi2 from the fixed frame terms.

    Parameters
    ----------
    star : int array (N,)
        Each point's star.
    y : float array (N,)
        The points' corrected magnitudes (``mag + corr``).
    w_all : float array (N,)
        Every point's weight.
    used : bool array (N,)
        The points in the final solve.
    base : bool array (N,)
        The points allowed in the solve.
    any_pts : bool array (N,)
        The allowed points of solved frames: a star left out of the solve gets its mean from these.
    n_stars : int
        Number of stars.

    Returns
    -------
    star_mag, star_err, star_chi2 : ndarray (S,)
        Mean magnitude, its error and the reduced chi2 about it (NaN with fewer than 2 points).
    npts : ndarray (S,)
        Used points per star.
    resid, r2 : ndarray (N,)
        Each point's residual about its star's mean, and its square times the point's weight.
    """
    M, sw = _star_means(star, y, np.where(used, w_all, 0.0), n_stars)
    M_any, sw_any = _star_means(star, y, np.where(any_pts, w_all, 0.0), n_stars)
    star_mag = np.where(sw > 0, M, M_any)
    star_w = np.where(sw > 0, sw, sw_any)
    resid = y - star_mag[star]
    r2 = resid**2 * w_all
    npts = np.bincount(star[used], minlength=n_stars)
    n_any = np.bincount(star[any_pts], minlength=n_stars)
    with np.errstate(divide="ignore", invalid="ignore"):
        star_chi2 = np.where(
            npts > 1,
            np.bincount(star, np.where(used, r2, 0.0), n_stars) / np.maximum(npts - 1, 1),
            np.where(n_any > 1, np.bincount(star, np.where(base, r2, 0.0), n_stars) / np.maximum(n_any - 1, 1), np.nan),
        )
        star_err = np.where(star_w > 0, 1.0 / np.sqrt(star_w), np.nan)
    return star_mag, star_err, star_chi2, npts, resid, r2


def _final_frames(frame, X, w, used, resid, r2, ok_frames, n_frames, s):
    """Every frame's point count, rms, reduced chi2 and status, and its terms' covariance.

    Parameters
    ----------
    frame : int array (N,)
        Each point's frame.
    X : ndarray (N, P)
        The points' design rows.
    w : float array (N,)
        The points' weights in the final solve (0 for points not used).
    used : bool array (N,)
        The points in the final solve.
    resid, r2 : float arrays (N,)
        Each point's residual, and its square times the point's weight.
    ok_frames : bool array (E,)
        Frames solved with used points.
    n_frames : int
        Number of frames.
    s : EnsembleSettings
        The solve's settings (``min_stars``).

    Returns
    -------
    frame_n : ndarray (E,)
        Used points per frame.
    frame_rms, frame_chi2 : ndarray (E,)
        rms and reduced chi2 of the used points.
    frame_ok : bool array (E,)
        Solved frames with at least ``min_stars`` used stars.
    cov : ndarray (E, P, P)
        Covariance of each frame's terms (NaN for frames not ok).
    """
    P = X.shape[1]
    frame_n = np.bincount(frame[used], minlength=n_frames)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame_rms = np.sqrt(np.bincount(frame, np.where(used, resid**2, 0.0), n_frames) / frame_n)
        frame_chi2 = np.bincount(frame, np.where(used, r2, 0.0), n_frames) / np.maximum(frame_n - P, 1)
    frame_ok = ok_frames & (frame_n >= s.min_stars)
    # (X^T W X)^-1, scaled up by the frame's reduced chi2 when above 1
    _terms, A, _ok = _frame_terms(frame, X, np.zeros(frame.size), w, n_frames)
    cov = np.full((n_frames, P, P), np.nan)
    if frame_ok.any():
        inv = np.linalg.inv(A[frame_ok])
        cov[frame_ok] = inv * np.maximum(1.0, np.nan_to_num(frame_chi2[frame_ok], nan=1.0))[:, None, None]
    return frame_n, frame_rms, frame_chi2, frame_ok, cov


def solve(
    frame: np.ndarray,
    star: np.ndarray,
    mag: np.ndarray,
    err: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    *,
    n_frames: int,
    n_stars: int,
    anchor: np.ndarray | None = None,
    settings: EnsembleSettings | None = None,
    usable: np.ndarray | None = None,
) -> EnsembleSolution:
    """Solve the ensemble of one field (frames that share stars).

    Parameters
    ----------
    frame, star : int arrays (N,)
        Frame index ``0 .. n_frames - 1`` and star index ``0 .. n_stars - 1`` of each point (a star has at
        most one point per frame).
    mag, err : float arrays (N,)
        Magnitude calibrated with the frame's absolute zeropoint, and its measurement error, mag.
    u, v : float arrays (N,)
        Chip position scaled to [-1, 1] (``2 x / (nx - 1) - 1``).
    n_frames, n_stars : int
        Number of frames (``E``) and of stars (``S``).
    anchor : bool array (E,), optional
        Frames whose corrections average to zero (those with an ok catalogue zeropoint); default all.
    settings : EnsembleSettings, optional
        The solve's settings; default ``EnsembleSettings()``.
    usable : bool array (N,), optional
        Points allowed in the solve (unsaturated, unflagged; default all). Points with a non-finite
        magnitude or error, or an error above ``max_err``, are never used.

    Returns
    -------
    EnsembleSolution
        The frames' terms, the stars' means, each point's correction and what took part in the solve.

    Raises
    ------
    ValueError
        When ``frame``, ``star``, ``mag``, ``err``, ``u`` and ``v`` differ in length.
    """
    s = settings or EnsembleSettings()
    frame = np.asarray(frame, dtype=np.int64)
    star = np.asarray(star, dtype=np.int64)
    mag = np.asarray(mag, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    n = frame.size
    if not (star.size == mag.size == err.size == n == np.size(u) == np.size(v)):
        raise ValueError("frame, star, mag, err, u and v must have the same length")
    anchor = np.ones(n_frames, bool) if anchor is None else np.asarray(anchor, bool)
    X = design(u, v, s.spatial_order)
    P = X.shape[1]
    base = np.isfinite(mag) & np.isfinite(err) & (err > 0) & (err <= s.max_err) & np.isfinite(X).all(axis=1)
    if usable is not None:
        base &= np.asarray(usable, bool)
    w_all = 1.0 / (np.where(np.isfinite(err), err, 1.0) ** 2 + s.floor_mag**2)
    sig_all = 1.0 / np.sqrt(w_all)

    star_out = np.zeros(n_stars, bool)  # left out as variable
    terms = np.zeros((n_frames, P))
    total_iter = 0
    rounds = 0
    scale = 1.0

    used = _prune(base, star, frame, star_out, n_stars, n_frames, s, P)
    for _ in range(s.max_rounds):
        rounds += 1
        w = np.where(used, w_all, 0.0)
        terms, corr, ok, iterations = _alternate(frame, star, mag, X, terms, w, used, n_frames, n_stars, s)
        total_iter += iterations
        y = mag + corr
        scale, M, resid = _chi2_scale(star, y, w, w_all, used, ok, P, n_stars)
        # clip points; leave out stars far above the chi2 of stars of their magnitude
        pts = base & ~star_out[star] & (np.abs(resid) <= s.clip_sigma * scale * sig_all)
        # a star's chi2 without its clipped points: one cosmic ray does not make it a variable
        chi2, npts = _kept_chi2(star, y, w_all, used & pts, n_stars)
        star_out = star_out | _variables(chi2, M, npts, s)
        new_used = _prune(pts, star, frame, star_out, n_stars, n_frames, s, P)
        if np.array_equal(new_used, used):
            break
        used = new_used

    ok_frames = ok & (np.bincount(frame[used], minlength=n_frames) > 0)
    terms = _gauge(terms, ok_frames, anchor)
    corr = np.einsum("ij,ij->i", X, np.nan_to_num(terms[frame], nan=0.0))
    corr = np.where(ok_frames[frame], corr, 0.0)
    # stars left out (variables, too few points) get their mean from the fixed frame terms
    star_mag, star_err, star_chi2, npts, resid, r2 = _final_stars(
        star, mag + corr, w_all, used, base, base & ok_frames[frame], n_stars
    )
    w = np.where(used, w_all, 0.0)
    frame_n, frame_rms, frame_chi2, frame_ok, cov = _final_frames(frame, X, w, used, resid, r2, ok_frames, n_frames, s)
    cov_pt = np.nan_to_num(cov[frame], nan=0.0)
    corr_err = np.sqrt(np.maximum(np.einsum("ij,ijk,ik->i", X, cov_pt, X), 0.0))
    corr = np.where(frame_ok[frame], corr, 0.0)
    terms = np.where(frame_ok[:, None], terms, np.nan)
    return EnsembleSolution(
        terms=terms,
        terms_cov=cov,
        frame_n=frame_n,
        frame_rms=frame_rms,
        frame_chi2=frame_chi2,
        frame_ok=frame_ok,
        star_mag=star_mag,
        star_err=star_err,
        star_n=npts,
        star_chi2=star_chi2,
        star_used=npts > 0,
        star_variable=star_out,
        correction=corr,
        correction_err=np.where(frame_ok[frame], corr_err, 0.0),
        point_used=used,
        iterations=total_iter,
        rounds=rounds,
        notes={"chi2_scale": scale},
    )


def _variables(chi2: np.ndarray, mag: np.ndarray, n: np.ndarray, s: EnsembleSettings) -> np.ndarray:
    """Stars whose reduced chi2 is above ``variable_chi2`` times the median of the stars nearest in
    magnitude (a running median over 25 neighbours, so a magnitude-dependent error floor is allowed for)."""
    ok = np.isfinite(chi2) & np.isfinite(mag) & (n >= s.min_points)
    idx = np.flatnonzero(ok)
    out = np.zeros(chi2.size, bool)
    if idx.size < 5:
        return out
    order = idx[np.argsort(mag[idx])]
    c = chi2[order]
    half = 12
    pad = np.pad(c, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1)
    ref = np.median(windows, axis=1)
    out[order] = c > s.variable_chi2 * np.maximum(ref, 1.0)
    return out


def _check_section(table: dict) -> None:
    """The check of a profile's ``[ensemble]`` (:func:`skylake.profile.register_section`): the stage's options
    (:class:`~skylake.ensemble.options.EnsembleOptions`) and the solve's settings."""
    from skylake.ensemble.options import EnsembleOptions

    doc = dict(table)
    own = {k: doc.pop(k) for k in list(doc) if k in EnsembleOptions.__dataclass_fields__}
    EnsembleOptions(**own)
    EnsembleSettings.from_dict(doc)


register_section("ensemble", _check_section)  # not a table: the profile section
