"""The noise of a light-curve point: the model fitted to each night, and the noise diagram's numbers.

A point's variance is modelled as (:class:`NoiseFit`)::

    sigma^2 = (a (sigma_phot / p_ref)^b sigma_phot)^2 + (c sigma_Young)^2 + f^2

``sigma_phot`` the point's photon error (the star's photons, the sky and the read-out in its aperture, and the
local background estimate's error: the flux error extraction states), ``a`` a fitted scale of it (1 when the
gain and read noise are right) and ``b`` its change with the error (0 but for Kron's flux, whose stated error
misses the noise of its own ellipse's size); ``sigma_Young`` Young's (1967) scintillation for the telescope's
diameter, the exposure, the frame's airmass and the site's height (:func:`young_scintillation`) and ``c`` its
factor (Osborn et al. 2015: Young's formula underestimates the median scintillation at good sites, by about 1.5);
``f`` the night's floor (flat field, pixel phase, what is left). :func:`fit_noise` fits ``a``, ``f`` and, when the
night's airmasses and exposures make Young's term vary enough to tell it from the floor, ``c`` (else ``c`` is the
profile's ``scintillation_factor``), robustly, from the residuals of constant stars about their weighted means.

The expected noise of a star from the camera's facts alone (Merline & Howell 1995's CCD equation in
electrons, with the local-background estimate from ``n_ann`` annulus pixels)::

    N = 10**(-0.4 (m - zp)) t g                        star electrons in the aperture (zp: mag of 1 ADU/s)
    sigma_phot = 1.0857 sqrt(N + n_pix (1 + n_pix / n_ann) (S g + R^2)) / N

is :class:`NoiseModel` (``S`` the sky per pixel in ADU, ``g`` the gain, ``R`` the read noise in e-).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from skylake.ensemble.blocks import add_counts, blocks, bucket_positions, floats

__all__ = [
    "NoiseModel",
    "NoiseFit",
    "young_scintillation",
    "fit_noise",
    "frame_excess",
    "pull_stats",
    "object_scatter",
    "VERSIONS",
    "OSBORN_FACTOR",
]

#: Osborn et al. (2015, MNRAS 452, 1707): the median scintillation at major sites is about this times Young's.
OSBORN_FACTOR = 1.5

#: The median of chi2 with one degree of freedom: a robust variance is median(r^2) / this.
_MEDIAN_CHI2_1 = 0.4549364231195724


def young_scintillation(diameter_m, exptime, airmass, height_m) -> np.ndarray:
    """Young's (1967) scintillation noise of one exposure, mag (0 where the diameter is not known).

    ``sigma = 1.0857 * 0.09 D^(-2/3) X^1.75 exp(-h / 8000 m) (2 t)^(-1/2)``, ``D`` in cm, ``t`` in s; an
    airmass below 1 (or unknown) counts as 1.

    Parameters
    ----------
    diameter_m : float or array_like
        The telescope's aperture, m (0: unknown).
    exptime : float or array_like
        Exposure time, s.
    airmass : float or array_like
        Airmass.
    height_m : float or array_like
        The site's height above sea level, m.

    Returns
    -------
    numpy.ndarray
        The scintillation, mag.

    Examples
    --------
    >>> round(float(young_scintillation(0.2, 10.0, 1.08, 2363.0)) * 1000, 2)  # SkyCamZ, mmag
    2.53
    """
    d = np.asarray(diameter_m, float)
    x = np.asarray(airmass, float)
    x = np.where(np.isfinite(x) & (x > 1.0), x, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (
            0.09
            * np.where(d > 0, (100.0 * d), np.nan) ** (-2.0 / 3.0)
            * x**1.75
            * np.exp(-np.asarray(height_m, float) / 8000.0)
            / np.sqrt(2.0 * np.asarray(exptime, float))
        )
    return np.where(d > 0, 1.0857 * frac, 0.0)


@dataclass(frozen=True)
class NoiseFit:
    """A noise model fitted to one night's points (see the module docstring).

    Attributes
    ----------
    phot_scale : float
        ``a``: the photon error's scale.
    scint_factor : float
        ``c``: the factor on Young's scintillation.
    scint_fitted : bool
        Whether ``c`` was fitted (else it is the profile's).
    floor_mag : float
        ``f``: the floor, mag.
    phot_slope : float
        ``b``: how the photon error's scale changes with the photon error itself, ``a (p / p_ref)^b`` (0 for an
        aperture whose stated errors are complete; Kron's, whose ellipse follows each detection's noisy moments,
        needs one).
    phot_ref : float
        ``p_ref``: the photon error (mag) at which the scale is ``a`` (the fitted points' median).
    n_stars : int
        Constant stars the fit used.
    n_points : int
        Their points.
    pull_width : float
        Robust width (interquartile range / 1.349) of those points' pulls with this model.
    chi2_dof : float
        The median over those stars of their reduced chi2 with this model.
    """

    phot_scale: float = 1.0
    scint_factor: float = OSBORN_FACTOR
    scint_fitted: bool = False
    floor_mag: float = 0.0
    phot_slope: float = 0.0
    phot_ref: float = 0.01
    n_stars: int = 0
    n_points: int = 0
    pull_width: float = float("nan")
    chi2_dof: float = float("nan")

    def variance(self, phot_err, young) -> np.ndarray:
        """The modelled variance of points, mag^2.

        Parameters
        ----------
        phot_err : array_like
            Each point's photon error, mag.
        young : array_like
            Each point's Young scintillation (:func:`young_scintillation`), mag.

        Returns
        -------
        numpy.ndarray
            ``(a (phot_err / p_ref)^b phot_err)^2 + (c young)^2 + f^2``.
        """
        p = np.asarray(phot_err, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = self.phot_scale * (p / self.phot_ref) ** self.phot_slope if self.phot_slope else self.phot_scale
        return (scale * p) ** 2 + (self.scint_factor * np.asarray(young, float)) ** 2 + self.floor_mag**2

    def error(self, phot_err, young) -> np.ndarray:
        """The modelled error of points, mag: the square root of :meth:`variance`.

        Parameters
        ----------
        phot_err : array_like
            Each point's photon error, mag.
        young : array_like
            Each point's Young scintillation, mag.

        Returns
        -------
        numpy.ndarray
            The errors, mag.
        """
        return np.sqrt(self.variance(phot_err, young))


def pull_stats(star: np.ndarray, mag: np.ndarray, err: np.ndarray, n_stars: int, min_points: int = 3):
    """Pulls of points about their star's weighted mean, and each star's reduced chi2.

    Parameters
    ----------
    star : int array (N,)
        Each point's star, ``0 .. n_stars - 1``.
    mag, err : float arrays (N,)
        Magnitudes and errors (finite, errors > 0).
    n_stars : int
        Number of stars.
    min_points : int
        Stars with fewer points get NaN pulls and chi2.

    Returns
    -------
    pulls : numpy.ndarray (N,)
        ``(mag - weighted mean) / err``.
    chi2_dof : numpy.ndarray (n_stars,)
        ``sum(pull^2) / (n - 1)`` per star.
    """
    w = 1.0 / err**2
    sw = np.bincount(star, w, n_stars)
    n = np.bincount(star, minlength=n_stars)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(star, w * mag, n_stars) / sw
        pull = np.where(n[star] >= min_points, (mag - mean[star]) / err, np.nan)
        chi2 = np.where(n >= min_points, np.bincount(star, np.nan_to_num(pull) ** 2, n_stars) / (n - 1), np.nan)
    return pull, chi2


def _robust_width(x: np.ndarray, overwrite: bool = False) -> float:
    """The interquartile range of the finite values of ``x`` over 1.349 (NaN for fewer than 4).

    ``overwrite``: ``x`` may be reordered (no copy of the night's pulls when they are all finite).
    """
    finite = np.isfinite(x)
    if not finite.all():
        x = x[finite]
    if x.size < 4:
        return float("nan")
    q75, q25 = np.percentile(x, [75, 25], overwrite_input=overwrite)
    return float((q75 - q25) / 1.349)


class _CellPoints:
    """The points of a noise fit, compact and in the order of their cells (photon-error bin * 3 + Young bin).

    The fit's rounds need each cell's points together (the medians) and each star's sums (the means). The points
    are gathered once, cell after cell (in their own order within a cell), into arrays of their own: each cell
    is then a slice, and a round's per-point work is done a block or a cell at a time, its temporaries that
    long. The star index is kept as int32 and the photon error and Young's term in the caller's float type (the
    same numbers, half the memory for float32): each block is computed in float64.

    Parameters
    ----------
    star : int array (N,)
        Each point's star.
    mag, phot_err, young : float arrays (N,)
        Magnitudes, photon errors and Young's scintillation, mag.
    ok : bool array (N,)
        The points of the fit.
    cell_of : callable
        ``cell_of(phot_err, young)``: the cells of points (int array), of float64 arrays.
    n_cells, n_stars : int
        Numbers of cells and of stars.
    offset : float array (N,) or None
        Added to ``mag`` as the points are gathered.
    """

    def __init__(self, star, mag, phot_err, young, ok, cell_of, n_cells, n_stars, offset=None):
        self.n_stars = n_stars
        n = int(np.count_nonzero(ok))
        cell = np.empty(n, np.int16 if n_cells <= np.iinfo(np.int16).max else np.int32)
        at = 0
        for b in blocks(len(ok)):
            i = np.flatnonzero(ok[b])
            cell[at : at + i.size] = cell_of(np.asarray(phot_err[b][i], float), np.asarray(young[b][i], float))
            at += i.size
        sizes = np.bincount(cell, minlength=n_cells)
        self.bounds = np.concatenate([[0], np.cumsum(sizes)])
        index = np.int32 if n_stars <= np.iinfo(np.int32).max else np.intp
        self.star, self.mag = np.empty(n, index), np.empty(n, mag.dtype if offset is None else np.float64)
        self.phot_err, self.young = np.empty(n, phot_err.dtype), np.empty(n, young.dtype)
        nxt, at = self.bounds[:-1].copy(), 0
        for b in blocks(len(ok)):
            i = np.flatnonzero(ok[b]) + b.start
            dest = bucket_positions(cell[at : at + i.size], nxt)
            at += i.size
            for mine, theirs in ((self.star, star), (self.mag, mag), (self.phot_err, phot_err), (self.young, young)):
                mine[dest] = theirs[i]
            if offset is not None:
                self.mag[dest] += offset[i]

    def __len__(self) -> int:
        return self.star.size

    def _weights(self, sl, model, keep):
        """The block's star indices and weights ``1 / var`` (0 where not kept)."""
        var = model.variance(self.phot_err[sl], self.young[sl])
        return self.star[sl], np.divide(1.0, var, out=np.zeros_like(var), where=keep[sl])

    def star_means(self, model: NoiseFit, keep: np.ndarray):
        """Each star's sum of weights and weighted mean over the kept points, weighted by ``model``.

        Parameters
        ----------
        model : NoiseFit
            The model whose variances weight.
        keep : bool array (N,)
            The points of this round.

        Returns
        -------
        tuple of numpy.ndarray
            ``(sum of weights, mean)`` per star.
        """
        sw, swm = np.zeros(self.n_stars), np.zeros(self.n_stars)
        for b in blocks(len(self)):
            s, w = self._weights(b, model, keep)
            sw += np.bincount(s, w, self.n_stars)
            w *= self.mag[b]  # w * mag; 0 where not kept (w is 0 there)
            swm += np.bincount(s, w, self.n_stars)
        with np.errstate(divide="ignore", invalid="ignore"):
            return sw, swm / sw

    def u2(self, sl, model, keep, means) -> np.ndarray:
        """``r^2 / (1 - h)`` of the points of ``sl`` (``r`` the residual about the star's mean, ``h`` the point's
        weight in it), NaN for points not kept or of all the weight.

        Parameters
        ----------
        sl : slice
            The points.
        model : NoiseFit
            The model of the round's weights.
        keep : bool array (N,)
            The points of this round.
        means : tuple
            :meth:`star_means` of the round.

        Returns
        -------
        numpy.ndarray
            The values, float64.
        """
        sw, mean = means
        s, w = self._weights(sl, model, keep)
        k = keep[sl]
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.divide(w, sw[s], out=w, where=k)
            h[~k] = 1.0
            bad = ~(k & (h < 1))
            u2 = np.subtract(self.mag[sl], mean[s])
            u2 *= u2
            u2 /= np.subtract(1.0, h, out=h)
        u2[bad] = np.nan
        return u2

    def cell_rows(self, model: NoiseFit, keep: np.ndarray, means) -> list:
        """Per cell of at least 10 kept points: the median of ``u2`` over chi2's median, the mean ``p2``, the mean
        ``y2`` and the number of points.

        Parameters
        ----------
        model : NoiseFit
            The model of the round's weights.
        keep : bool array (N,)
            The points of this round.
        means : tuple
            :meth:`star_means` of the round.

        Returns
        -------
        list of tuple
            One row per cell, in the cells' order.
        """
        rows = []
        for c in range(len(self.bounds) - 1):
            sl = slice(self.bounds[c], self.bounds[c + 1])
            k = keep[sl]
            n = int(np.count_nonzero(k))
            if n < 10:
                continue
            seg = self.u2(sl, model, keep, means)[k]
            seg = seg[~np.isnan(seg)]
            med = float(np.median(seg, overwrite_input=True)) if seg.size else float("nan")
            p2 = np.square(self.phot_err[sl][k], dtype=np.float64)
            y2 = np.square(self.young[sl][k], dtype=np.float64)
            rows.append((med / _MEDIAN_CHI2_1, float(p2.sum() / n), float(y2.sum() / n), n))
        return rows

    def clip(self, model: NoiseFit, keep: np.ndarray, means, new: NoiseFit) -> None:
        """The next round's points, in ``keep``: those whose ``u2`` (of this round) is within 25 of ``new``'s
        variances (a point not kept this round comes back).

        Parameters
        ----------
        model : NoiseFit
            This round's model.
        keep : bool array (N,)
            This round's points; overwritten with the next round's.
        means : tuple
            :meth:`star_means` of this round.
        new : NoiseFit
            The model this round fitted.
        """
        for b in blocks(len(self)):
            u2 = self.u2(b, model, keep, means)
            var = new.variance(self.phot_err[b], self.young[b])
            var *= 25.0
            keep[b] = ~(u2 > var)

    def pulls(self, model: NoiseFit, min_points: int):
        """Each point's pull about its star's weighted mean with ``model``'s errors (:func:`pull_stats`), written
        over the magnitudes (the last use of them), and each star's reduced chi2.

        Parameters
        ----------
        model : NoiseFit
            The fitted model.
        min_points : int
            Stars with fewer points get NaN.

        Returns
        -------
        pulls : numpy.ndarray (N,)
            The pulls (the magnitudes' array).
        chi2 : numpy.ndarray (S,)
            ``sum(pull^2) / (n - 1)`` per star.
        """
        S = self.n_stars
        sw, swm, n = np.zeros(S), np.zeros(S), np.zeros(S, np.intp)
        for b in blocks(len(self)):
            s, err = self.star[b], np.sqrt(model.variance(self.phot_err[b], self.young[b]))
            w = 1.0 / err**2
            sw += np.bincount(s, w, S)
            swm += np.bincount(s, w * self.mag[b], S)
            n += np.bincount(s, minlength=S)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = swm / sw
        ss = np.zeros(S)
        pull = self.mag  # overwritten block by block: each point's magnitude is read before its pull is written
        for b in blocks(len(self)):
            s, err = self.star[b], np.sqrt(model.variance(self.phot_err[b], self.young[b]))
            with np.errstate(divide="ignore", invalid="ignore"):
                p = np.where(n[s] >= min_points, (self.mag[b] - mean[s]) / err, np.nan)
            ss += np.bincount(s, np.nan_to_num(p) ** 2, S)
            pull[b] = p
        with np.errstate(divide="ignore", invalid="ignore"):
            chi2 = np.where(n >= min_points, ss / (n - 1), np.nan)
        return pull, chi2


def _cell_edges(phot_err, young, ok, n_bins: int, fit_c_from):
    """The quantile edges of the cells, from the fit's points: of the log squared photon error (``n_bins`` bins)
    and, when ``c`` is fitted, of the squared Young term (thirds).

    Parameters
    ----------
    phot_err, young : float arrays (N,)
        Each point's photon error and Young scintillation, mag.
    ok : bool array (N,)
        The points of the fit.
    n_bins : int
        Bins of photon error.
    fit_c_from : callable
        ``fit_c_from(lo, hi)``: whether ``c`` is fitted, from the 10th and 90th percentiles of the squared Young
        term.

    Returns
    -------
    fit_c : bool
        Whether ``c`` is fitted.
    p_median : float
        The median photon error of the points, mag.
    edges : numpy.ndarray
        The photon bins' edges (in log squared error).
    yedges : numpy.ndarray or None
        Young's thirds' edges (squared), None when ``c`` is not fitted.
    """
    # one float64 copy of the points' values at a time, sorted in place by the quantiles (no further copies)
    y2 = np.square(young[ok], dtype=np.float64)
    lo, hi = np.percentile(y2, [10, 90], overwrite_input=True)
    fit_c = fit_c_from(lo, hi)
    yedges = np.quantile(y2, [0, 1 / 3, 2 / 3, 1], overwrite_input=True) if fit_c else None
    del y2
    p = np.asarray(phot_err[ok], np.float64)
    p_median = float(np.median(p, overwrite_input=True))
    lp = np.log(np.square(p, out=p), out=p)
    edges = np.unique(np.quantile(lp, np.linspace(0, 1, n_bins + 1), overwrite_input=True))
    return fit_c, p_median, edges, yedges


def _fit_bins(rows, model, fixed, fit_c, fit_b, p_ref):
    """Fit the model to the cells' variances by least squares in log variance, each weighted by its points.

    Parameters
    ----------
    rows : list of tuple
        The cells (:func:`_binned_variance`).
    model : NoiseFit
        The current model (the start, and the terms not fitted).
    fixed : NoiseFit or None
        When given, the floor alone is fitted (at least ``fixed``'s).
    fit_c, fit_b : bool
        Whether ``c`` and ``b`` are fitted.
    p_ref : float
        The reference photon error, mag.

    Returns
    -------
    NoiseFit
        The fitted model (without diagnostics).
    """
    from scipy.optimize import least_squares

    v, pb, yb, nb = (np.array(c, float) for c in zip(*rows))
    wb = np.sqrt(nb)

    rel = np.sqrt(pb) / p_ref  # each bin's photon error over the reference

    def resid(theta):
        """The cells' weighted log-variance residuals for the fitted parameters.

        Parameters
        ----------
        theta : numpy.ndarray
            ``a`` (unless ``fixed``), ``c`` (when fitted), ``b`` (when fitted) and ``f``.

        Returns
        -------
        numpy.ndarray
            Per cell, its weight times (log of its variance - log of the model's).
        """
        a = model.phot_scale if fixed is not None else theta[0]
        c = theta[1] if fit_c else model.scint_factor
        b = theta[1 + fit_c] if fit_b else model.phot_slope
        f = theta[-1]
        return wb * (np.log(v) - np.log(a * a * rel ** (2 * b) * pb + c * c * yb + f * f + 1e-30))

    x0 = (
        ([] if fixed else [model.phot_scale])
        + ([model.scint_factor] if fit_c else [])
        + ([model.phot_slope] if fit_b else [])
        + [model.floor_mag]
    )
    lower = ([] if fixed else [0.05]) + ([0.0] if fit_c else []) + ([-0.5] if fit_b else [])
    lower += [fixed.floor_mag if fixed else 0.0]
    upper = ([] if fixed else [20.0]) + ([20.0] if fit_c else []) + ([0.5] if fit_b else []) + [1.0]
    x0 = np.clip(np.where(np.abs(x0) < 1e-4, 1e-4, x0), lower, np.nextafter(upper, 0))
    sol = least_squares(resid, x0, bounds=(lower, upper))
    return NoiseFit(
        phot_scale=model.phot_scale if fixed is not None else float(sol.x[0]),
        scint_factor=float(sol.x[1]) if fit_c else model.scint_factor,
        scint_fitted=fit_c or (fixed is not None and fixed.scint_fitted),
        floor_mag=float(abs(sol.x[-1])),
        phot_slope=float(sol.x[1 + fit_c]) if fit_b else model.phot_slope,
        phot_ref=p_ref,
    )


def fit_noise(
    star: np.ndarray,
    mag: np.ndarray,
    phot_err: np.ndarray,
    young: np.ndarray,
    *,
    n_stars: int,
    scint_factor: float = OSBORN_FACTOR,
    floor_mag: float = 0.002,
    min_young_ratio: float = 1.5,
    min_points: int = 3,
    n_bins: int = 24,
    iterations: int = 4,
    fixed: NoiseFit | None = None,
    fit_slope: bool = False,
    points: np.ndarray | None = None,
    offset: np.ndarray | None = None,
) -> NoiseFit:
    """Fit the noise model to the points of constant stars.

    Each round weights the points by the current model, takes each star's weighted mean, and estimates the
    variance robustly in bins of photon error (and of Young's scintillation when ``c`` is fitted): the median
    of ``r^2 / (1 - h)`` (``r`` the residual, ``h`` the point's weight in its star's mean) over the median of
    chi2 with one degree of freedom, so variables, outliers and blends count for little. The model is then
    fitted to the bins by least squares in log variance, each bin weighted by its points; points further than
    5 sigma are left out of the next round.

    Parameters
    ----------
    star : int array (N,)
        Each point's star, ``0 .. n_stars - 1`` (constant stars only: the caller leaves out variables).
    mag, phot_err : float arrays (N,)
        Magnitudes and photon errors, mag.
    young : float array (N,)
        Young's scintillation of each point's frame (:func:`young_scintillation`), mag.
    n_stars : int
        Number of stars.
    scint_factor : float
        ``c`` where it is not fitted (the profile's; Osborn et al.'s median by default).
    floor_mag : float
        The floor the first round weights with, mag.
    min_young_ratio : float
        ``c`` is fitted only when Young's variance of the 90th-percentile point is at least this times the
        10th's (airmasses and exposures that differ enough to tell scintillation from the floor).
    min_points : int
        Stars with fewer points take no part.
    n_bins : int
        Bins of photon error (quantiles).
    iterations : int
        Rounds.
    fixed : NoiseFit, optional
        Fit the floor alone, ``a``, ``b`` and ``c`` those of this model (the extra noise of points of another
        kind, e.g. blended stars, with the photon and scintillation terms of the clean ones).
    fit_slope : bool
        Fit ``b``, the photon scale's change with the photon error (Kron's flux, whose stated error leaves out
        the noise of its own aperture's size); else ``b`` is 0.
    points : bool array (N,), optional
        The points to fit (default all): a night's arrays are passed whole, not copied to a subset.
    offset : float array (N,), optional
        Added to ``mag`` (another aperture's offsets, :func:`~skylake.ensemble.apertures.aperture_offsets`):
        the points' magnitudes in that aperture without an array of them all.

    Returns
    -------
    NoiseFit
        The fitted model with its diagnostics; the starting model (``a`` 1, ``c`` as given, the floor
        given; ``fixed`` when given) with ``n_points`` 0 when fewer than 50 points of 10 stars are usable.

    Notes
    -----
    Memory: the points fitted are gathered once, in the order of their cells, into arrays of their own (the
    star as int32, the errors in the caller's float type), and every round goes over them a block or a cell
    at a time: about 22 bytes a point for float32 errors, 30 for float64, besides the caller's arrays.
    """
    star = np.asarray(star)
    mag, phot_err, young = floats(mag), floats(phot_err), floats(young)
    offset = None if offset is None else floats(offset)
    ok = np.ones(star.size, bool) if points is None else np.array(points, bool)
    for b in blocks(star.size):  # finite values, a positive error
        ok[b] &= np.isfinite(mag[b]) & np.isfinite(phot_err[b]) & (phot_err[b] > 0) & np.isfinite(young[b])
        if offset is not None:
            ok[b] &= np.isfinite(offset[b])
    counts = add_counts(star, ok, n_stars)
    for b in blocks(star.size):
        ok[b] &= counts[star[b]] >= min_points
    start = fixed or NoiseFit(phot_scale=1.0, scint_factor=float(scint_factor), floor_mag=float(floor_mag))
    # the stars left are those counted min_points (and at least once): no np.unique of the points needed
    n_ok = int(np.count_nonzero(ok))
    if n_ok < 50 or np.count_nonzero(counts >= max(min_points, 1)) < 10:
        return NoiseFit(
            start.phot_scale, start.scint_factor, start.scint_fitted, start.floor_mag, start.phot_slope, start.phot_ref
        )
    fit_c, p_median, edges, yedges = _cell_edges(
        phot_err, young, ok, n_bins, lambda lo, hi: bool(lo > 0 and hi >= min_young_ratio * lo) and fixed is None
    )
    fit_b = fit_slope and fixed is None
    p_ref = fixed.phot_ref if fixed is not None else p_median
    model = NoiseFit(start.phot_scale, start.scint_factor, start.scint_fitted, start.floor_mag, start.phot_slope, p_ref)

    def _cell_of(p, y):
        # each point's photon bin (quantiles of log p^2) * 3 + its third of Young's (0 when c is not fitted)
        pbin = np.clip(np.searchsorted(edges, np.log(np.square(p)), side="right") - 1, 0, max(len(edges) - 2, 0))
        if yedges is None:
            return pbin * 3
        return pbin * 3 + np.clip(np.searchsorted(yedges, np.square(y), side="right") - 1, 0, 2)

    pts = _CellPoints(star, mag, phot_err, young, ok, _cell_of, 3 * max(len(edges) - 1, 1), n_stars, offset)
    del ok  # the caller's arrays are not read again
    keep = np.ones(n_ok, bool)
    for _ in range(iterations):
        means = pts.star_means(model, keep)
        rows = pts.cell_rows(model, keep, means)
        if len(rows) < 3:
            break
        new = _fit_bins(rows, model, fixed, fit_c, fit_b, p_ref)
        pts.clip(model, keep, means, new)
        model = new
    del keep
    pull, chi2 = pts.pulls(model, min_points)
    return NoiseFit(
        phot_scale=model.phot_scale,
        scint_factor=model.scint_factor,
        scint_fitted=model.scint_fitted,
        floor_mag=model.floor_mag,
        phot_slope=model.phot_slope,
        phot_ref=model.phot_ref,
        n_stars=int(np.isfinite(chi2).sum()),
        n_points=n_ok,
        pull_width=_robust_width(pull, overwrite=True),
        chi2_dof=float(np.nanmedian(chi2)) if np.isfinite(chi2).any() else float("nan"),
    )


def frame_excess(
    frame: np.ndarray,
    star: np.ndarray,
    mag: np.ndarray,
    var: np.ndarray,
    *,
    n_frames: int,
    n_stars: int,
    min_points: int = 20,
    sigmas: float = 4.5,
) -> np.ndarray:
    """Each frame's own extra noise: what its constant stars scatter beyond the night's model, as a floor.

    Thin cloud crossing a field, or a frame whose ensemble terms cannot follow its transparency's structure,
    scatters every star of that frame alike in magnitude: an additive term ``g_e`` for the frame, found as the
    ``g >= 0`` for which the median of ``r^2 / (1 - h) / (var + g^2)`` over the frame's points is that of chi2
    with one degree of freedom (bisection). A frame whose median ratio at ``g = 0`` is within ``sigmas`` standard
    errors of chi2's median (the model holds: the median of ``n`` values of chi2 with one degree of freedom has a
    relative error of about ``2.34 / sqrt(n)``) and a frame with fewer than ``min_points`` points get 0.

    Parameters
    ----------
    frame, star : int arrays (N,)
        Each point's frame and star (constant stars' clean points).
    mag : float array (N,)
        Magnitudes, mag.
    var : float array (N,)
        The night's modelled variance of each point, mag^2.
    n_frames, n_stars : int
        Number of frames and of stars.
    min_points : int
        Frames with fewer points get 0.
    sigmas : float
        How far above chi2's median (in its standard errors) a frame's median ``r^2 / var`` must be.

    Returns
    -------
    numpy.ndarray (n_frames,)
        ``g_e``, mag.
    """
    frame, star = np.asarray(frame), np.asarray(star)
    mag, var = np.asarray(mag, float), np.asarray(var, float)
    out = np.zeros(n_frames)
    if not len(frame):
        return out
    sw, swm, n = np.zeros(n_stars), np.zeros(n_stars), np.zeros(n_stars, np.intp)
    for b in blocks(len(frame)):
        w = 1.0 / var[b]
        sw += np.bincount(star[b], w, n_stars)
        swm += np.bincount(star[b], w * mag[b], n_stars)
        n += np.bincount(star[b], minlength=n_stars)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = swm / sw

    def _u2_of(b):
        # r^2 / (1 - h) of the block's points, and which count (their star's points at least 3, a finite value)
        s = star[b]
        with np.errstate(divide="ignore", invalid="ignore"):
            h = 1.0 / var[b] / sw[s]
            u2 = (mag[b] - mean[s]) ** 2 / (1.0 - h)
        return u2, (n[s] >= 3) & np.isfinite(u2)

    # each frame's points together (u2 and var), the blocks' points sorted by frame into place
    sizes = np.zeros(n_frames, np.intp)
    for b in blocks(len(frame)):
        sizes += np.bincount(frame[b][_u2_of(b)[1]], minlength=n_frames)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    u2s, vs, nxt = np.empty(bounds[-1]), np.empty(bounds[-1]), bounds[:-1].copy()
    for b in blocks(len(frame)):
        u2, good = _u2_of(b)
        dest = bucket_positions(frame[b][good], nxt)
        u2s[dest], vs[dest] = u2[good], var[b][good]
    for e in np.flatnonzero(sizes >= min_points):
        uu, vv = u2s[bounds[e] : bounds[e + 1]], vs[bounds[e] : bounds[e + 1]]
        if np.median(uu / vv) <= (1.0 + sigmas * 2.34 / np.sqrt(uu.size)) * _MEDIAN_CHI2_1:
            continue
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if np.median(uu / (vv + mid * mid)) > _MEDIAN_CHI2_1 else (lo, mid)
        out[e] = 0.5 * (lo + hi)
    return out


#: The light-curve magnitudes a noise diagram compares: (column, label).
VERSIONS = (("mag_zp", "per-frame zeropoints"), ("mag", "ensemble"), ("mag_tfa", "ensemble + EPD + TFA"))  # not a table


@dataclass(frozen=True)
class NoiseModel:
    """The expected noise of one night's typical frame.

    Attributes
    ----------
    zp : float
        Magnitude of a source giving 1 ADU/s (the frames' median zeropoint).
    exptime : float
        Exposure time, s.
    sky_adu : float
        Sky per pixel over the exposure, ADU.
    gain : float
        Gain, e-/ADU.
    read_noise_e : float
        Read noise, e- per pixel.
    n_pix : float
        Pixels in the aperture.
    n_ann : float
        Pixels of the background annulus (inf: the background is known exactly).
    airmass : float
        Airmass of the frame (values below 1 count as 1 in the scintillation).
    diameter_m : float
        Telescope aperture, m (0: unknown, no scintillation).
    height_m : float
        Site's height above sea level, m.

    Raises
    ------
    ValueError
        When ``exptime``, ``gain`` or ``n_pix`` is not a positive finite number.
    """

    zp: float
    exptime: float
    sky_adu: float
    gain: float
    read_noise_e: float
    n_pix: float
    n_ann: float
    airmass: float
    diameter_m: float
    height_m: float

    def __post_init__(self):
        for name in ("exptime", "gain", "n_pix"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"NoiseModel.{name} must be a positive number, got {v!r}")

    def electrons(self, mag) -> np.ndarray:
        """The star's electrons in the aperture over the exposure.

        Parameters
        ----------
        mag : float or array_like
            Magnitudes of the stars.

        Returns
        -------
        ndarray
            ``10**(-0.4 (mag - zp)) * exptime * gain``, e-.
        """
        return 10 ** (-0.4 * (np.asarray(mag, float) - self.zp)) * self.exptime * self.gain

    def photon(self, mag) -> np.ndarray:
        """The star's own shot noise, mag.

        Parameters
        ----------
        mag : float or array_like
            Magnitudes of the stars.

        Returns
        -------
        ndarray
            ``1.0857 / sqrt(N)`` with ``N`` the star's electrons, mag.
        """
        return 1.0857 / np.sqrt(self.electrons(mag))

    def background(self, mag) -> np.ndarray:
        """Sky and read noise in the aperture (with the annulus estimate's), mag.

        Parameters
        ----------
        mag : float or array_like
            Magnitudes of the stars.

        Returns
        -------
        ndarray
            The background's noise relative to the star's electrons, mag (a negative sky counts as 0).
        """
        n = self.electrons(mag)
        extra = 1.0 + (self.n_pix / self.n_ann if math.isfinite(self.n_ann) and self.n_ann > 0 else 0.0)
        return 1.0857 * np.sqrt(self.n_pix * extra * (max(self.sky_adu, 0.0) * self.gain + self.read_noise_e**2)) / n

    def scintillation(self) -> float:
        """Young's scintillation, mag (0 when the diameter is unknown).

        Returns
        -------
        float
            The scintillation noise of one exposure, mag, the same for every star.
        """
        return float(young_scintillation(self.diameter_m, self.exptime, self.airmass, self.height_m))

    def total(self, mag) -> np.ndarray:
        """All of it, mag.

        Parameters
        ----------
        mag : float or array_like
            Magnitudes of the stars.

        Returns
        -------
        ndarray
            The photon, background and scintillation noise added in quadrature, mag.
        """
        mag = np.asarray(mag, float)
        return np.sqrt(self.photon(mag) ** 2 + self.background(mag) ** 2 + self.scintillation() ** 2)


def object_scatter(points: pd.DataFrame, min_points: int, columns=None) -> pd.DataFrame:
    """Per object, the mean magnitude and the scatter (sample standard deviation) of each light-curve version.

    Parameters
    ----------
    points : DataFrame
        Light-curve points of one night: ``object_id``, the ``columns`` (default those of :data:`VERSIONS`)
        and ``flags``; saturated points are left out.
    min_points : int
        Objects with fewer points of ``mag`` are left out, and a version's scatter is NaN for an object with
        fewer points of it.
    columns : list of str, optional
        The light-curve versions to measure; default the columns of :data:`VERSIONS`.

    Returns
    -------
    DataFrame
        Indexed by object_id: ``n``, ``mean_mag`` and ``rms_<column>`` per version.
    """
    from skylake.frame.extract import SATURATED

    columns = list(columns or [c for c, _ in VERSIONS])
    p = points[(points["flags"].to_numpy() & SATURATED) == 0]
    g = p.groupby("object_id")
    out = pd.DataFrame({"n": g["mag"].count(), "mean_mag": g["mag"].mean().astype(np.float64)})
    for c in columns:  # plain floats (NaN, not pd.NA, where a version is missing)
        out[f"rms_{c}"] = g[c].std(ddof=1).where(g[c].count() >= min_points).astype(np.float64)
    return out[out["n"] >= min_points]
