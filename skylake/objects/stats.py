"""Variability statistics of many light curves at once, as vectorised group-by aggregations.

Every function takes flat arrays (one element per point) and an integer ``group`` (the light curve
each point belongs to, ``0 .. n_groups-1``) and returns one value per group, computed with
``np.bincount`` and one sort: no Python loop over light curves, so 10^6 light curves cost seconds.

Definitions (magnitudes ``m_i`` with errors ``s_i``, ``n`` points, all in mag):

- ``mean_mag``, ``median_mag``; ``wmean_mag = sum(m/s^2) / sum(1/s^2)``;
- ``std_mag``: sample standard deviation (ddof 1); ``mad_mag = median(|m - median|)`` (unscaled);
- ``chi2_dof = sum(((m - wmean) / s)^2) / (n - 1)``: ~1 for a constant star with correct errors;
- ``stetson_j``: Stetson (1996, PASP 108, 851) J with the residuals
  ``d_i = sqrt(n / (n - 1)) (m_i - wmean) / s_i`` paired by time: the points sorted by MJD form the
  ``n - 1`` consecutive pairs ``(i, i+1)``, ``P_k = d_i d_{i+1}`` and ``J = sum(sign(P_k) sqrt|P_k|) / (n - 1)``
  (all weights 1; the formulation of Kim et al. 2011 / FATS, but about the weighted mean as
  Stetson). Correlated brightening in successive points (a real variable sampled faster than it
  varies) drives J up; uncorrelated noise averages to ~0;
- ``amplitude = (max - min) / 2``: the semi-amplitude, comparable with a sinusoid's ``A``;
- the ``_clip`` variants: the same after one clip of points further than 4 sigma from the median,
  sigma = 1.4826 MAD (no clip when the MAD is 0).

Groups with fewer than 2 points get NaN for std, chi2 and J; empty groups NaN everywhere.
"""

from __future__ import annotations

import numpy as np

from skylake.robust import MAD_TO_SIGMA

CLIP_SIGMA = 4.0


def _by_group_then(group: np.ndarray, key: np.ndarray, n_groups: int, stable: bool = False) -> np.ndarray:
    """Indices ordering the points by ``group``, then by ``key`` within a group.

    ``stable``: ties in ``key`` keep the points' order (exactly ``np.lexsort((key, group))``); else they
    come in any order (for values, equal in a tie). With fewer than 2**16 groups (a partition's objects)
    the group pass is numpy's radix sort on uint16: ~2.4x faster than ``np.lexsort`` at 2e5 points.
    Points already in that order (the light curves of ``summarise``, by object then time) are checked,
    not sorted.
    """
    if len(group) < 2:
        return np.arange(len(group))
    same = group[1:] == group[:-1]
    if (group[1:] >= group[:-1]).all() and (key[1:][same] >= key[:-1][same]).all():
        return np.arange(len(group))
    if n_groups > np.iinfo(np.uint16).max:
        return np.lexsort((key, group))
    by_key = np.argsort(key, kind="stable" if stable else None)
    return by_key[np.argsort(group[by_key].astype(np.uint16), kind="stable")]


def _group_median(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of ``values`` per group (NaN for an empty group)."""
    v = values[_by_group_then(group, values, n_groups)]
    counts = np.bincount(group, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.full(n_groups, np.nan)
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    out[has] = 0.5 * (v[lo] + v[hi])
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def basic_stats(group: np.ndarray, mjd: np.ndarray, mag: np.ndarray, err: np.ndarray, n_groups: int) -> dict:
    """The statistics of the module docstring (without clipping) for points that are all usable.

    Usable: finite ``mag``, ``err`` > 0.

    Parameters
    ----------
    group : numpy.ndarray
        The light curve of each point (0 .. n_groups-1).
    mjd : numpy.ndarray
        Each point's time (MJD) [d].
    mag, err : numpy.ndarray
        Each point's magnitude and its error [mag].
    n_groups : int
        The number of light curves.

    Returns
    -------
    dict
        Arrays of length ``n_groups``: ``n``, ``mean_mag``, ``median_mag``, ``wmean_mag``, ``std_mag``,
        ``mad_mag``, ``chi2_dof``, ``stetson_j`` and ``amplitude`` (magnitudes in [mag]).
    """
    group = np.asarray(group, dtype=np.int64)
    mjd, mag, err = (np.asarray(a, dtype=np.float64) for a in (mjd, mag, err))
    n = np.bincount(group, minlength=n_groups)
    mean = _ratio(np.bincount(group, mag, n_groups), n)
    w = 1.0 / err**2
    wmean = _ratio(np.bincount(group, w * mag, n_groups), np.bincount(group, w, n_groups))
    std = np.sqrt(_ratio(np.bincount(group, (mag - mean[group]) ** 2, n_groups), n - 1))
    median = _group_median(group, mag, n_groups)
    mad = _group_median(group, np.abs(mag - median[group]), n_groups)
    resid = (mag - wmean[group]) / err
    chi2 = _ratio(np.bincount(group, resid**2, n_groups), n - 1)
    # Stetson J over consecutive pairs in time (points sorted by group, then MJD)
    order = _by_group_then(group, mjd, n_groups, stable=True)
    g, d = group[order], resid[order] * np.sqrt(_ratio(n, n - 1))[group[order]]
    same = g[1:] == g[:-1]
    p = d[1:][same] * d[:-1][same]
    j = _ratio(np.bincount(g[1:][same], np.sign(p) * np.sqrt(np.abs(p)), n_groups), n - 1)
    mag_max = np.full(n_groups, -np.inf)
    mag_min = np.full(n_groups, np.inf)
    np.maximum.at(mag_max, group, mag)
    np.minimum.at(mag_min, group, mag)
    amplitude = np.where(n > 0, 0.5 * (mag_max - mag_min), np.nan)
    return {
        "n": n.astype(np.int32),
        "mean_mag": mean,
        "median_mag": median,
        "wmean_mag": wmean,
        "std_mag": std,
        "mad_mag": mad,
        "chi2_dof": chi2,
        "stetson_j": j,
        "amplitude": amplitude,
    }


def light_curve_stats(
    group: np.ndarray, mjd: np.ndarray, mag: np.ndarray, err: np.ndarray, n_groups: int, clip_sigma: float = CLIP_SIGMA
) -> dict:
    """All statistics of ``n_groups`` light curves, plain and ``_clip``.

    Points with a non-finite magnitude or a non-positive/non-finite error are left out.

    Parameters
    ----------
    group : numpy.ndarray
        The light curve of each point (0 .. n_groups-1).
    mjd : numpy.ndarray
        Each point's time (MJD) [d].
    mag, err : numpy.ndarray
        Each point's magnitude and its error [mag].
    n_groups : int
        The number of light curves.
    clip_sigma : float, optional
        The ``_clip`` statistics leave out points further than this many sigma (1.4826 MAD) from the
        median.

    Returns
    -------
    dict
        Arrays of length ``n_groups``: the statistics of :func:`basic_stats`, and the same after the clip
        (``<name>_clip``, ``n_clip``).

    Raises
    ------
    ValueError
        A ``group`` value is outside 0 .. n_groups-1.
    """
    group = np.asarray(group, dtype=np.int64)
    if group.size and (group.min() < 0 or group.max() >= n_groups):
        raise ValueError(f"group values must lie in 0..{n_groups - 1}, got {group.min()}..{group.max()}")
    mag, err = np.asarray(mag, dtype=np.float64), np.asarray(err, dtype=np.float64)
    ok = np.isfinite(mag) & np.isfinite(err) & (err > 0)
    g, t, m, e = group[ok], np.asarray(mjd, dtype=np.float64)[ok], mag[ok], err[ok]
    plain = basic_stats(g, t, m, e, n_groups)
    sigma = MAD_TO_SIGMA * plain["mad_mag"][g]
    keep = (sigma == 0) | (np.abs(m - plain["median_mag"][g]) <= clip_sigma * sigma)
    clipped = basic_stats(g[keep], t[keep], m[keep], e[keep], n_groups)
    return {**plain, **{f"{k}_clip" if k != "n" else "n_clip": v for k, v in clipped.items()}}
