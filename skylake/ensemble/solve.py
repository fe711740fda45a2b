"""The ensemble solve: every frame's relative zeropoint and spatial term, and every star's mean magnitude.

They are solved from all the stars the frames share (Honeycutt 1992, PASP 104, 435: inhomogeneous ensemble
photometry).

Model, for point ``i`` (star ``s``, frame ``e``, chip position ``u, v``)::

    m_i + d_e + sum_k c_ek T_k(u_i, v_i) = M_s + noise

``m_i`` is the point's magnitude calibrated with its frame's absolute zeropoint (``inst_mag + zp``), ``d_e``
and ``c_ek`` the frame's relative offset and spatial terms (``T_k``: the monomials ``u, v, u^2, u v, v^2`` up
to ``spatial_order``, with ``u, v`` the chip position scaled to [-1, 1]), ``M_s`` the star's mean magnitude.
Weights ``1 / (err_i^2 + floor^2)``. The solve is a sparse least-squares problem of ``E (1 + K) + S``
unknowns. The stars' means are eliminated (each is the weighted mean of its corrected points: the Schur
complement onto the frames' ``E (1 + K)`` terms), and the frames' normal equations are solved by conjugate
gradients preconditioned with each frame's own ``(1 + K) x (1 + K)`` normal matrix (block Jacobi; Saad 2003,
*Iterative Methods for Sparse Linear Systems*, 2nd ed., Alg. 9.1), the spatial gauge below kept as a constraint
(projected CG; Gould, Hribar & Nocedal 2001, SIAM J. Sci. Comput. 23, 1376), warm-started from the previous
clipping round's terms. Each step is one ``bincount`` over the stars and ``1 + K`` contiguous sums over the
frames (the points are taken in frame order); a few to a few tens of steps reach the least-squares solution
where Honeycutt's alternation of exact block solves needs hundreds along near-degenerate directions. Memory
is O(points) with no (points x terms) matrix; the tests check the answer against a direct sparse solve.

Two degeneracies are fixed after the solve: a constant moves between every ``d_e`` and every ``M_s`` (the
weighted mean of ``d_e`` over the anchor frames is set to 0, so the catalogue's absolute scale is kept: the
mean correction of the frames with an ok catalogue zeropoint is zero), and, for a field that does not move
on the chip, a spatial pattern common to all frames moves into the stars' means (the mean of each ``c_ek``
over the frames is set to 0: the spatial terms describe how a frame differs from the night's mean frame).
The second is a constraint of the solve itself, so on a field that does move the answer is the least-squares
solution under it.

Robustness: points further than ``clip_sigma`` from their star's mean (in units of their error, scaled by
the solve's overall reduced chi2 when above 1) are left out; so are stars whose own reduced chi2 is above
``variable_chi2`` times the median of the stars of similar magnitude (variables, blends); then the solve is
repeated, until nothing changes. Every star, used or not, gets its mean from the final frame terms.

Everything here is a pure function of arrays: the stage that reads the lake is :mod:`skylake.ensemble.stage`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from skylake.ensemble.blocks import BLOCK, add_counts, floats
from skylake.profile import register_section

__all__ = ["EnsembleSettings", "EnsembleSolution", "solve", "design", "monomial_rows", "n_spatial_terms"]


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
        Conjugate-gradient steps per solve, at most.
    tol_mag : float
        The steps stop when the next block update of any frame would change no point's correction by more than
        a hundredth of this, mag.
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


#: The factors (``u``, ``v``) of each design column ``[1, u, v, u^2, u v, v^2]``, in its order: the one home of
#: the spatial monomials (:func:`design`, :func:`monomial_rows`, the solve's passes).
_FACTORS = ((), ("u",), ("v",), ("u", "u"), ("u", "v"), ("v", "v"))


def monomial_rows(u: np.ndarray, v: np.ndarray, order: int) -> np.ndarray:
    """The spatial monomials ``[u, v, u^2, u v, v^2][:K]`` of points as contiguous rows (no column of ones).

    Products of two rows then stream instead of striding over an (N, P) matrix.

    Parameters
    ----------
    u, v : float arrays (N,)
        Chip position scaled to [-1, 1].
    order : int
        The polynomial order: 0, 1 or 2.

    Returns
    -------
    ndarray (K, N)
        The monomials (``K`` from :func:`n_spatial_terms`); the same values as ``design(u, v, order)[:, 1:].T``.
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    named = {"u": u, "v": v}
    out = np.empty((n_spatial_terms(order), u.size))
    for k, row in enumerate(out, start=1):
        first, *rest = _FACTORS[k]
        np.copyto(row, named[first])
        for f in rest:
            row *= named[f]
    return out


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
    rows = monomial_rows(u, v, order)
    return np.column_stack([np.ones(rows.shape[1]), *rows])


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
        Conjugate-gradient steps, summed over the clipping rounds.
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


class _Block(NamedTuple):
    """A block of consecutive frames (never one split) and their points, frame order (:class:`_Points`)."""

    points: slice  # the block's points
    frames: slice  # its frames
    count: np.ndarray  # points per frame
    filled: np.ndarray  # frames with points
    starts: np.ndarray  # where each filled frame's points start in the block


def _frame_blocks(count: np.ndarray) -> list[_Block]:
    """Blocks of whole frames of about :data:`~skylake.ensemble.blocks.BLOCK` points (a larger frame alone).

    Parameters
    ----------
    count : int array (E,)
        Points per frame.

    Returns
    -------
    list of _Block
        The blocks, covering every frame and point in order.
    """
    ends = np.cumsum(count)
    out, f0, p0 = [], 0, 0
    while f0 < len(count):
        f1 = max(int(np.searchsorted(ends, p0 + BLOCK, side="right")), f0 + 1)
        c = count[f0:f1]
        filled = c > 0
        out.append(_Block(slice(p0, int(ends[f1 - 1])), slice(f0, f1), c, filled, (np.cumsum(c) - c)[filled]))
        f0, p0 = f1, int(ends[f1 - 1])
    return out


class _Points:
    """The points in frame order, with what the solve needs of each, and the per-frame passes over them.

    In frame order a per-frame sum is a contiguous ``np.add.reduceat`` and a per-frame value goes onto the
    points with ``np.repeat``, both several times faster than ``np.bincount`` and fancy indexing by frame. The
    monomials ``T_k`` are made from ``u, v`` when needed, never kept as an (N, P) matrix. The passes go a block
    of whole frames at a time (:func:`_frame_blocks`): their temporaries are a block long, not a night's points
    long; the per-frame sums are the same numbers, the per-star sums add the blocks' up (to the last bit's
    rounding). The star index and the positions are kept as given (int32 and float32 are fine: no copies).

    Parameters
    ----------
    frame, star : int arrays (N,)
        Each point's frame and star (the caller's order).
    u, v : float arrays (N,)
        Scaled chip positions (the caller's order).
    P : int
        Frame terms per frame (``1 + K``).
    n_frames, n_stars : int
        Number of frames and of stars.
    """

    def __init__(self, frame, star, u, v, P, n_frames, n_stars):
        self.P, self.n_frames, self.n_stars = P, n_frames, n_stars
        # points already in frame order (the stage's) are used as they are: no copies
        in_order = frame.size < 2 or bool(np.all(frame[1:] >= frame[:-1]))
        self.order = None if in_order else np.argsort(frame, kind="stable")
        self.star = self.take(star)
        self.u, self.v = self.take(u), self.take(v)
        self.count = add_counts(frame, None, n_frames)
        self.filled = self.count > 0
        self.starts = (np.cumsum(self.count) - self.count)[self.filled]
        self.blocks = _frame_blocks(self.count)

    def take(self, a: np.ndarray) -> np.ndarray:
        """``a`` in frame order (a view when the points came in frame order).

        Parameters
        ----------
        a : ndarray (N,)
            Per-point values in the caller's order.

        Returns
        -------
        ndarray (N,)
            The same in frame order.
        """
        return a if self.order is None else a[self.order]

    def put(self, a: np.ndarray) -> np.ndarray:
        """``a`` in frame order back in the caller's order.

        Parameters
        ----------
        a : ndarray (N,)
            Per-point values in frame order.

        Returns
        -------
        ndarray (N,)
            The same in the caller's order.
        """
        if self.order is None:
            return a
        out = np.empty_like(a)
        out[self.order] = a
        return out

    def times_monomial(self, a: np.ndarray, k: int, blk: _Block) -> np.ndarray:
        """``a * T_k`` of a block's points, in place.

        Parameters
        ----------
        a : float ndarray (n,)
            Per-point values of the block; overwritten.
        k : int
            The monomial (column of :func:`design`).
        blk : _Block
            The block.

        Returns
        -------
        ndarray (n,)
            ``a``.
        """
        for f in _FACTORS[k]:
            a *= (self.u if f == "u" else self.v)[blk.points]
        return a

    def expand_block(self, t: np.ndarray, blk: _Block) -> np.ndarray:
        """Each of a block's points' ``sum_k t[e, k] T_k``.

        Parameters
        ----------
        t : ndarray (E, P)
            Per-frame coefficients.
        blk : _Block
            The block.

        Returns
        -------
        ndarray (n,)
            Per point of the block.
        """
        out = np.repeat(np.ascontiguousarray(t[blk.frames, 0], np.float64), blk.count)
        for k in range(1, t.shape[1]):
            out += self.times_monomial(np.repeat(np.ascontiguousarray(t[blk.frames, k]), blk.count), k, blk)
        return out

    def expand(self, t: np.ndarray) -> np.ndarray:
        """Each point's ``sum_k t[e, k] T_k``.

        Parameters
        ----------
        t : ndarray (E, P)
            Per-frame coefficients.

        Returns
        -------
        ndarray (N,)
            Per point, frame order.
        """
        out = np.empty(self.star.size)
        for blk in self.blocks:
            out[blk.points] = self.expand_block(t, blk)
        return out

    def frame_sum(self, a: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Per-frame sum of ``a``; 0 for a frame without points.

        Parameters
        ----------
        a : ndarray (N,)
            Per-point values (frame order).
        dtype : numpy dtype
            Of the sums.

        Returns
        -------
        ndarray (E,)
            The sums.
        """
        out = np.zeros(self.n_frames, dtype)
        if self.starts.size:  # reduceat gives an empty segment its first element: only filled frames
            out[self.filled] = np.add.reduceat(a, self.starts, dtype=dtype)
        return out

    def _block_sums(self, out: np.ndarray, k: int, a: np.ndarray, blk: _Block) -> None:
        """Add a block's per-frame sums of ``a`` (its points' values) into column ``k`` of ``out`` (E, P)."""
        if blk.starts.size:
            out[blk.frames, k][blk.filled] += np.add.reduceat(a, blk.starts)

    def frame_counts(self, mask: np.ndarray) -> np.ndarray:
        """Points of ``mask`` per frame.

        Parameters
        ----------
        mask : bool ndarray (N,)
            Frame order.

        Returns
        -------
        int ndarray (E,)
            The counts.
        """
        out = np.zeros(self.n_frames, np.intp)
        for blk in self.blocks:  # a block's booleans counted as intp at a time, not the night's
            if blk.starts.size:
                out[blk.frames][blk.filled] = np.add.reduceat(mask[blk.points], blk.starts, dtype=np.intp)
        return out

    def on_points(self, per_frame: np.ndarray) -> np.ndarray:
        """A per-frame value on each point.

        Parameters
        ----------
        per_frame : ndarray (E,)
            One value per frame.

        Returns
        -------
        ndarray (N,)
            Each point's frame's value (frame order).
        """
        return np.repeat(per_frame, self.count)

    def on_stars(self, per_star: np.ndarray) -> np.ndarray:
        """A per-star value on each point (block by block: no copy of an int32 star index).

        Parameters
        ----------
        per_star : ndarray (S,)
            One value per star.

        Returns
        -------
        ndarray (N,)
            Each point's star's value (frame order).
        """
        out = np.empty(self.star.size, per_star.dtype)
        for blk in self.blocks:
            out[blk.points] = per_star[self.star[blk.points]]
        return out

    def star_counts(self, mask: np.ndarray) -> np.ndarray:
        """Points of ``mask`` per star.

        Parameters
        ----------
        mask : bool ndarray (N,)
            Frame order.

        Returns
        -------
        int ndarray (S,)
            The counts.
        """
        return add_counts(self.star, mask, self.n_stars)

    def star_sum(self, a: np.ndarray) -> np.ndarray:
        """Per-star sum of ``a``.

        Parameters
        ----------
        a : float ndarray (N,)
            Per-point values (frame order).

        Returns
        -------
        ndarray (S,)
            The sums.
        """
        out = np.zeros(self.n_stars)
        for blk in self.blocks:
            out += np.bincount(self.star[blk.points], a[blk.points], self.n_stars)
        return out

    def star_means(self, y: np.ndarray, w: np.ndarray, mask: np.ndarray | None = None):
        """Each star's weighted mean of ``y`` and sum of weights.

        Parameters
        ----------
        y, w : float ndarrays (N,)
            Values and weights (frame order).
        mask : bool ndarray (N,), optional
            Only these points (the others weigh 0).

        Returns
        -------
        mean, sw : ndarray (S,)
            The means (NaN without weight) and the sums of weights.
        """
        S = self.n_stars
        sw, swy = np.zeros(S), np.zeros(S)
        for blk in self.blocks:
            b = blk.points
            wb = w[b] if mask is None else np.where(mask[b], w[b], 0.0)
            sw += np.bincount(self.star[b], wb, S)
            wb *= y[b]
            swy += np.bincount(self.star[b], wb, S)
        with np.errstate(divide="ignore", invalid="ignore"):
            return swy / sw, sw

    def about_star_means(self, c: np.ndarray, w: np.ndarray, inv_sw: np.ndarray) -> np.ndarray:
        """``w (c - the weighted mean of c over each star's points)``, in place.

        Parameters
        ----------
        c : float ndarray (N,)
            Per-point values (frame order); overwritten.
        w : float ndarray (N,)
            The weights.
        inv_sw : ndarray (S,)
            ``1 / sum(w)`` per star (0 without weight).

        Returns
        -------
        ndarray (N,)
            ``c``.
        """
        swc = np.zeros(self.n_stars)
        for blk in self.blocks:
            b = blk.points
            swc += np.bincount(self.star[b], w[b] * c[b], self.n_stars)
        swc *= inv_sw
        for blk in self.blocks:
            b = blk.points
            c[b] -= swc[self.star[b]]
            c[b] *= w[b]
        return c

    def reduce(self, a: np.ndarray) -> np.ndarray:
        """Per-frame ``sum_i a_i T_k(u_i, v_i)``.

        Parameters
        ----------
        a : float ndarray (N,)
            Per-point values (frame order).

        Returns
        -------
        ndarray (E, P)
            The sums, one column per monomial.
        """
        out = np.zeros((self.n_frames, self.P))
        out[:, 0] = self.frame_sum(a)
        for blk in self.blocks:
            for k in range(1, self.P):
                self._block_sums(out, k, self.times_monomial(a[blk.points].copy(), k, blk), blk)
        return out

    def normal(self, w: np.ndarray) -> np.ndarray:
        """Per-frame normal matrices ``sum_i w_i T_a T_b``.

        Parameters
        ----------
        w : float ndarray (N,)
            The points' weights (frame order).

        Returns
        -------
        ndarray (E, P, P)
            The matrices.
        """
        P = self.P
        A = np.zeros((self.n_frames, P, P))
        for blk in self.blocks:
            for a in range(P):
                for b in range(a, P):
                    wab = self.times_monomial(self.times_monomial(w[blk.points].copy(), a, blk), b, blk)
                    self._block_sums(A[:, a, :], b, wab, blk)
        for a in range(P):
            for b in range(a + 1, P):
                A[:, b, a] = A[:, a, b]
        return A

    def quadratic(self, C: np.ndarray) -> np.ndarray:
        """Each point's ``x^T C_e x``, ``x = (T_k)``.

        Parameters
        ----------
        C : ndarray (E, P, P)
            Per-frame symmetric matrices.

        Returns
        -------
        ndarray (N,)
            Per point, frame order.
        """
        out = np.zeros(self.star.size)
        for blk in self.blocks:
            o = out[blk.points]
            for a in range(self.P):
                for b in range(a, self.P):
                    term = np.repeat(C[blk.frames, a, b] * (1.0 if a == b else 2.0), blk.count)
                    o += self.times_monomial(self.times_monomial(term, a, blk), b, blk)
        return out


def _solvable(A):
    """Frames whose normal matrix (E, P, P) fixes their terms: some weight and not all stars on a line."""
    P = A.shape[1]
    ok = A[:, 0, 0] > 0
    if P > 1:
        ok &= np.linalg.cond(np.where(ok[:, None, None], A, np.eye(P))) < 1e10
    return ok


def _prune(mask, pts, star_out, s):
    """Leave out of ``mask`` the variables, the stars on too few frames and the frames with too few stars.

    Parameters
    ----------
    mask : bool array (N,)
        The points (frame order) that may take part.
    pts : _Points
        The points.
    star_out : bool array (S,)
        Stars left out as variable.
    s : EnsembleSettings
        The solve's settings (``min_points``, ``min_stars``).

    Returns
    -------
    bool array (N,)
        The points that take part: up to three rounds of removing stars with fewer than ``min_points`` points
        and frames with fewer than ``max(min_stars, P + 1)`` points (fewer when a round removes nothing).
    """
    mask = mask & ~pts.on_stars(star_out)
    for _ in range(3):
        before = mask.copy()
        mask &= pts.on_stars(pts.star_counts(mask) >= s.min_points)
        mask &= pts.on_points(pts.frame_counts(mask) >= max(s.min_stars, pts.P + 1))
        if np.array_equal(mask, before):  # another round would remove nothing either
            break
    return mask


def _solve_terms(pts, _corrected, w, terms, limit, s):
    """The frames' terms of the least-squares solution for the points of weight ``w``, the stars eliminated,
    by preconditioned conjugate gradients.

    Parameters
    ----------
    pts : _Points
        The points.
    corrected : callable
        ``_corrected(t)``: the points' magnitudes corrected with frame terms ``t`` (frame order; finite).
    w : float array (N,)
        The points' weights (frame order; 0 for points not used).
    terms : ndarray (E, P)
        The frames' terms to start from (the previous round's).
    limit : float
        The largest ``|u|, |v|`` of the points: bounds ``|T_k|``.
    s : EnsembleSettings
        The solve's settings (``max_iter``, ``tol_mag``).

    Returns
    -------
    terms : ndarray (E, P)
        The frames' terms (0 for frames that could not be solved), with the spatial gauge: each spatial term
        sums to zero over the solved frames.
    ok : bool array (E,)
        Frames that could be solved.
    A : ndarray (E, P, P)
        The frames' normal matrices.
    iterations : int
        Conjugate-gradient steps.

    Notes
    -----
    With the stars' means eliminated (``M_s`` is the weighted mean of ``m_i + x_i . t_e`` over the star's
    points), the frames' terms minimise ``sum_i w_i (m_i + x_i . t_e - M_s(t))^2``: normal equations
    ``H t = b`` on the ``E P`` unknowns (the Schur complement of the stars' diagonal block), each product
    ``H p`` one ``bincount`` over the stars and ``P`` sums over the frames. Conjugate gradients on them
    (Hestenes & Stiefel 1952; Saad 2003, *Iterative Methods for Sparse Linear Systems*, 2nd ed., Alg. 9.1),
    preconditioned by each frame's own ``P x P`` normal matrix (block Jacobi), converge in a few to a few tens
    of steps where alternating the blocks needs hundreds along near-degenerate directions. The spatial
    gauge is a constraint: the unknowns stay in the subspace where each spatial term sums to zero over the
    solved frames (the orthogonal projection ``Q`` applied to every residual and preconditioned residual:
    projected CG, Gould, Hribar & Nocedal 2001, SIAM J. Sci. Comput. 23, 1376), so the answer is the
    least-squares solution under the gauge, not an iteration's fixed point. Frames that cannot be solved
    keep terms 0, their points still in their stars' means, as before. The steps stop when the next
    block-Jacobi update of any frame would change no point's correction by more than ``tol_mag / 100``.
    """
    P, S = pts.P, pts.n_stars
    A = pts.normal(w)
    ok = _solvable(A)
    t = np.where(ok[:, None] & np.isfinite(terms), terms, 0.0)

    def _project(g):
        # Q g in place: unsolved frames fixed, each spatial term summing to zero over the solved ones
        g[~ok] = 0.0
        if P > 1:
            g[ok, 1:] -= g[ok, 1:].mean(axis=0)
        return g

    if not ok.any():
        return t, ok, A, 0
    t = _project(t)
    sw = pts.star_sum(w)
    inv_sw = np.divide(1.0, sw, out=np.zeros(S), where=sw > 0)
    B = np.zeros_like(A)
    B[ok] = np.linalg.inv(A[ok])
    bound = limit ** np.array([len(f) for f in _FACTORS[:P]], float)  # of |T_k|

    r = _project(-pts.reduce(pts.about_star_means(_corrected(t), w, inv_sw)))  # minus the gradient
    z = _project(np.einsum("eab,eb->ea", B, r))
    p = z.copy()
    rz = float(np.vdot(r, z))
    iterations = 0
    while iterations < s.max_iter and float(np.max(np.abs(z) @ bound)) >= 0.01 * s.tol_mag:
        Hp = _project(pts.reduce(pts.about_star_means(pts.expand(p), w, inv_sw)))
        pHp = float(np.vdot(p, Hp))
        if not pHp > 0:  # nothing left along p (rounding)
            break
        alpha = rz / pHp
        t += alpha * p
        r -= alpha * Hp
        z = _project(np.einsum("eab,eb->ea", B, r))
        rz, rz_old = float(np.vdot(r, z)), rz
        p = z + (rz / rz_old) * p
        iterations += 1
    return t, ok, A, iterations


def _chi2_scale(pts, y, w, w_all, used, ok):
    """The factor the errors are scaled by in the clipping: the root of the solve's reduced chi2, at least 1.

    Parameters
    ----------
    pts : _Points
        The points.
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

    Returns
    -------
    scale : float
        The factor.
    M : ndarray (S,)
        The stars' means.
    """
    M, sw = pts.star_means(y, w)
    r2sum = 0.0
    for blk in pts.blocks:
        b = blk.points
        r2 = y[b] - M[pts.star[b]]
        r2 *= r2
        r2 *= w_all[b]
        r2[~used[b]] = 0.0
        r2sum += float(r2.sum())
    dof = max(int(np.count_nonzero(used)) - int(ok.sum()) * pts.P - int((sw > 0).sum()), 1)
    return max(1.0, math.sqrt(r2sum / dof)), M


def _within(pts, y, M, w_all, limit):
    """The points within ``limit`` errors of their star's mean.

    Parameters
    ----------
    pts : _Points
        The points.
    y : float array (N,)
        The points' corrected magnitudes.
    M : float array (S,)
        The stars' means.
    w_all : float array (N,)
        Every point's weight (``1 / err^2``).
    limit : float
        Errors from the mean, at most.

    Returns
    -------
    bool array (N,)
        ``|y - M[star]| <= limit * err``.
    """
    out = np.empty(y.size, bool)
    for blk in pts.blocks:
        b = blk.points
        lim = np.sqrt(w_all[b])
        np.divide(1.0, lim, out=lim)
        lim *= limit
        out[b] = np.abs(y[b] - M[pts.star[b]]) <= lim
    return out


def _kept_chi2(pts, y, w_all, kept):
    """Each star's reduced chi2 over its kept points, and their number.

    Parameters
    ----------
    pts : _Points
        The points.
    y : float array (N,)
        The points' corrected magnitudes (``mag + corr``).
    w_all : float array (N,)
        Every point's weight.
    kept : bool array (N,)
        The points used and not clipped.

    Returns
    -------
    chi2 : ndarray (S,)
        Reduced chi2 about the mean of the kept points.
    npts : ndarray (S,)
        Kept points per star.
    """
    Mk, _sw = pts.star_means(y, w_all, kept)
    rk2sum = np.zeros(pts.n_stars)
    for blk in pts.blocks:
        b = blk.points
        rk2 = y[b] - Mk[pts.star[b]]
        rk2 *= rk2
        rk2 *= w_all[b]
        rk2[~kept[b]] = 0.0
        rk2sum += np.bincount(pts.star[b], rk2, pts.n_stars)
    npts = pts.star_counts(kept)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = rk2sum / np.maximum(npts - 1, 1)
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


def _final_stars(pts, y, w_all, used, base, any_pts):
    """Every star's mean, error and reduced chi2 from the fixed frame terms, and each frame's sums of its used
    points' residuals.

    Parameters
    ----------
    pts : _Points
        The points.
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

    Returns
    -------
    star_mag, star_err, star_chi2 : ndarray (S,)
        Mean magnitude, its error and the reduced chi2 about it (NaN with fewer than 2 points).
    npts : ndarray (S,)
        Used points per star.
    frame_sums : ndarray (E, 2)
        Per frame, over its used points, the sum of the squared residuals about their stars' means and that of
        the squares times the points' weights.
    """
    S = pts.n_stars
    M, sw = pts.star_means(y, w_all, used)
    M_any, sw_any = pts.star_means(y, w_all, any_pts)
    star_mag = np.where(sw > 0, M, M_any)
    star_w = np.where(sw > 0, sw, sw_any)
    npts, n_any = pts.star_counts(used), pts.star_counts(any_pts)
    ss_used, ss_base = np.zeros(S), np.zeros(S)
    frame_sums = np.zeros((pts.n_frames, 2))
    for blk in pts.blocks:
        b, s = blk.points, pts.star[blk.points]
        resid = y[b] - star_mag[s]
        r2 = resid**2 * w_all[b]
        ss_used += np.bincount(s, np.where(used[b], r2, 0.0), S)
        ss_base += np.bincount(s, np.where(base[b], r2, 0.0), S)
        pts._block_sums(frame_sums, 0, np.where(used[b], resid**2, 0.0), blk)
        pts._block_sums(frame_sums, 1, np.where(used[b], r2, 0.0), blk)
    with np.errstate(divide="ignore", invalid="ignore"):
        star_chi2 = np.where(
            npts > 1,
            ss_used / np.maximum(npts - 1, 1),
            np.where(n_any > 1, ss_base / np.maximum(n_any - 1, 1), np.nan),
        )
        star_err = np.where(star_w > 0, 1.0 / np.sqrt(star_w), np.nan)
    return star_mag, star_err, star_chi2, npts, frame_sums


def _final_frames(pts, A, used, frame_sums, ok_frames, s):
    """Every frame's point count, rms, reduced chi2 and status, and its terms' covariance.

    Parameters
    ----------
    pts : _Points
        The points.
    A : ndarray (E, P, P)
        The frames' normal matrices over the points of the final solve.
    used : bool array (N,)
        The points in the final solve.
    frame_sums : ndarray (E, 2)
        Per frame, the sums of its used points' squared residuals and of those times the weights
        (:func:`_final_stars`).
    ok_frames : bool array (E,)
        Frames solved with used points.
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
    P, n_frames = pts.P, pts.n_frames
    frame_n = pts.frame_counts(used)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame_rms = np.sqrt(frame_sums[:, 0] / frame_n)
        frame_chi2 = frame_sums[:, 1] / np.maximum(frame_n - P, 1)
    frame_ok = ok_frames & (frame_n >= s.min_stars)
    # (X^T W X)^-1, scaled up by the frame's reduced chi2 when above 1
    cov = np.full((n_frames, P, P), np.nan)
    if frame_ok.any():
        inv = np.linalg.inv(A[frame_ok])
        cov[frame_ok] = inv * np.maximum(1.0, np.nan_to_num(frame_chi2[frame_ok], nan=1.0))[:, None, None]
    return frame_n, frame_rms, frame_chi2, frame_ok, cov


def _rounds(pts, _corrected, w_all, base, limit, s):
    """The clip-and-resolve rounds: solve, clip the points, leave out the variables, until nothing changes.

    Parameters
    ----------
    pts : _Points
        The points.
    _corrected : callable
        ``_corrected(t)``: the points' magnitudes corrected with frame terms ``t`` (frame order).
    w_all : float array (N,)
        Every point's weight (frame order).
    base : bool array (N,)
        The points allowed in the solve (frame order).
    limit : float
        The largest ``|u|, |v|`` of the points.
    s : EnsembleSettings
        The solve's settings.

    Returns
    -------
    terms : ndarray (E, P)
        The last solve's frame terms.
    ok : bool array (E,)
        Frames the last solve could solve.
    A : ndarray (E, P, P)
        Their normal matrices over ``solved_with``.
    used, solved_with : bool arrays (N,)
        The points in the final solve, and those the last solve used (the same unless the rounds ran out).
    star_out : bool array (S,)
        Stars left out as variable.
    total_iter, rounds : int
        Conjugate-gradient steps and rounds.
    scale : float
        The last clipping's error scale (:func:`_chi2_scale`).
    """
    star_out = np.zeros(pts.n_stars, bool)  # left out as variable
    terms = np.zeros((pts.n_frames, pts.P))
    total_iter = 0
    rounds = 0
    scale = 1.0

    used = _prune(base, pts, star_out, s)
    for _ in range(s.max_rounds):
        rounds += 1
        w = np.where(used, w_all, 0.0)
        terms, ok, A, iterations = _solve_terms(pts, _corrected, w, terms, limit, s)
        solved_with = used
        total_iter += iterations
        y = _corrected(terms)
        scale, M = _chi2_scale(pts, y, w, w_all, used, ok)
        del w
        # clip points; leave out stars far above the chi2 of stars of their magnitude
        keep = _within(pts, y, M, w_all, s.clip_sigma * scale)
        keep &= base
        keep &= ~pts.on_stars(star_out)
        # a star's chi2 without its clipped points: one cosmic ray does not make it a variable
        chi2, npts = _kept_chi2(pts, y, w_all, used & keep)
        del y
        star_out = star_out | _variables(chi2, M, npts, s)
        new_used = _prune(keep, pts, star_out, s)
        del keep
        if np.array_equal(new_used, used):
            break
        used = new_used

    return terms, ok, A, used, solved_with, star_out, total_iter, rounds, scale


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
        most one point per frame). Points in frame order are used without copies.
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
    frame, star = _index(frame), _index(star)
    n = frame.size
    if not (star.size == np.size(mag) == np.size(err) == n == np.size(u) == np.size(v)):
        raise ValueError("frame, star, mag, err, u and v must have the same length")
    anchor = np.ones(n_frames, bool) if anchor is None else np.asarray(anchor, bool)
    P = 1 + n_spatial_terms(s.spatial_order)
    # everything below is in frame order (pts.take), back in the caller's order at the end (pts.put)
    pts = _Points(frame, star, floats(u), floats(v), P, n_frames, n_stars)
    mag = pts.take(np.asarray(mag, dtype=np.float64))
    err = pts.take(floats(err))
    usable = None if usable is None else pts.take(np.asarray(usable, bool))
    base, w_all = np.empty(n, bool), np.empty(n)
    for blk in pts.blocks:  # the points allowed and the weights 1 / (err^2 + floor^2), in float64
        b = blk.points
        e = np.asarray(err[b], np.float64)
        base[b] = np.isfinite(mag[b]) & np.isfinite(e) & (e > 0) & (e <= s.max_err)
        if P > 1:  # the position enters only the spatial terms
            base[b] &= np.isfinite(pts.u[b]) & np.isfinite(pts.v[b])
        if usable is not None:
            base[b] &= usable[b]
        e = np.where(np.isfinite(e), e, 1.0)
        e *= e
        e += s.floor_mag**2
        w_all[b] = np.divide(1.0, e, out=e)
    del err, usable
    not_base = ~base

    def _corrected(t):
        # mag plus the corrections of frame terms t; 0 where not allowed (0 * NaN is NaN in sums)
        y = pts.expand(t)
        y += mag
        y[not_base] = 0.0
        return y

    limit = 1.0
    if P > 1:
        for blk in pts.blocks:
            b = blk.points
            ok = base[b]
            limit = max(
                limit, float(np.max(np.abs(pts.u[b][ok]), initial=0)), float(np.max(np.abs(pts.v[b][ok]), initial=0))
            )

    terms, ok, A, used, solved_with, star_out, total_iter, rounds, scale = _rounds(
        pts, _corrected, w_all, base, limit, s
    )

    ok_frames = ok & (pts.frame_counts(used) > 0)
    terms = _gauge(terms, ok_frames, anchor)
    y = _corrected(np.where(ok_frames[:, None], terms, 0.0))
    # stars left out (variables, too few points) get their mean from the fixed frame terms
    star_mag, star_err, star_chi2, npts, frame_sums = _final_stars(
        pts, y, w_all, used, base, base & pts.on_points(ok_frames)
    )
    del y
    if used is not solved_with:  # the rounds ran out with new points: their normal matrices
        A = pts.normal(np.where(used, w_all, 0.0))
    del w_all
    frame_n, frame_rms, frame_chi2, frame_ok, cov = _final_frames(pts, A, used, frame_sums, ok_frames, s)
    corr = pts.expand(np.where(frame_ok[:, None], terms, 0.0))
    corr_err = pts.quadratic(np.where(frame_ok[:, None, None], cov, 0.0))
    np.maximum(corr_err, 0.0, out=corr_err)
    np.sqrt(corr_err, out=corr_err)
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
        correction=pts.put(corr),
        correction_err=pts.put(corr_err),
        point_used=pts.put(used),
        iterations=total_iter,
        rounds=rounds,
        notes={"chi2_scale": scale},
    )


def _index(a) -> np.ndarray:
    """``a`` as an array of integers: any integer type as it is (no copy), anything else as intp."""
    a = np.asarray(a)
    return a if a.dtype.kind in "iu" else a.astype(np.intp)


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
