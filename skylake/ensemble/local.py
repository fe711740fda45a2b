"""Local zeropoints: what a frame's transparency does at each star that the ensemble's smooth terms cannot follow.

The ensemble gives each frame an offset and a low-order polynomial in chip position. Thin cloud drifting across a
field dims a patch of the chip, not a plane: the stars under its edge all stay too faint by the same amount. Where
a frame's constant stars scatter significantly beyond the night's noise model
(:func:`skylake.ensemble.noise.frame_excess`), each of its points is corrected by the weighted, clipped mean
residual (about their stars' mean magnitudes) of its ``k`` nearest constant neighbours on that frame (itself
left out): a local zeropoint, as a differential photometrist takes the comparison stars around a target. The
correction's error (that mean's) joins the point's. Frames without excess are left as they are, so their
points gain no noise.
"""

from __future__ import annotations

import numpy as np

from skylake.robust import MAD_TO_SIGMA

__all__ = ["LOCAL_NEIGHBOURS", "local_offsets"]

#: Neighbours a local zeropoint is the median of.
LOCAL_NEIGHBOURS = 20


def local_offsets(
    frame: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    resid: np.ndarray,
    var: np.ndarray,
    reference: np.ndarray,
    frames,
    k: int = LOCAL_NEIGHBOURS,
) -> tuple[np.ndarray, np.ndarray]:
    """The local zeropoint of each point of ``frames``: the weighted mean residual of its ``k`` nearest reference
    points, those further than 3 sigma (1.4826 MAD) from their median left out.

    Parameters
    ----------
    frame : int array (N,)
        Each point's frame.
    x, y : float arrays (N,)
        Chip positions, px.
    resid : float array (N,)
        Each point's residual about its star's mean magnitude, mag (the reference points' are used).
    var : float array (N,)
        Each point's modelled variance, mag^2 (the neighbours' weights).
    reference : bool array (N,)
        Points that may serve as neighbours (constant stars' clean points with a finite residual).
    frames : iterable of int
        The frames to correct.
    k : int
        Neighbours.

    Returns
    -------
    offset : numpy.ndarray (N,)
        The local zeropoint to subtract from each point's magnitude, mag (0 off ``frames`` or with fewer than
        ``k`` neighbours on the frame).
    error : numpy.ndarray (N,)
        Its error, mag: ``1 / sqrt(sum of the kept neighbours' weights)`` (0 where no offset).

    Examples
    --------
    Stars on the right half of a frame are 0.1 mag too faint: each point gets its half's offset.

    >>> x = np.tile(np.arange(10.0), 10); y = np.repeat(np.arange(10.0), 10)
    >>> resid = np.where(x >= 5, 0.1, 0.0)
    >>> off, err = local_offsets(np.zeros(100, int), x, y, resid, np.full(100, 1e-4), np.ones(100, bool), [0], k=8)
    >>> bool(np.allclose(off[(x <= 2)], 0.0) and np.allclose(off[(x >= 7)], 0.1))
    True
    """
    from scipy.spatial import cKDTree

    frame = np.asarray(frame, np.int64)
    offset, error = np.zeros(len(frame)), np.zeros(len(frame))
    resid = np.asarray(resid, float)
    reference = np.asarray(reference, bool) & np.isfinite(resid)
    for e in frames:
        on = np.flatnonzero(frame == e)
        ref = on[reference[on]]
        if ref.size <= k:
            continue
        tree = cKDTree(np.column_stack([x[ref], y[ref]]))
        _, near = tree.query(np.column_stack([x[on], y[on]]), k=k + 1)
        ids = ref[near]  # (points, k + 1) global indices of the neighbours
        self_ = ids == on[:, None]  # a point is not its own neighbour; without itself, its farthest goes
        self_[:, -1] |= ~self_.any(axis=1)
        vals = np.where(self_, np.nan, resid[ids])
        with np.errstate(all="ignore"):
            med = np.nanmedian(vals, axis=1, keepdims=True)
            mad = np.nanmedian(np.abs(vals - med), axis=1, keepdims=True)
            keep = np.isfinite(vals) & (np.abs(vals - med) <= 3.0 * MAD_TO_SIGMA * np.maximum(mad, 1e-6))
            w = np.where(keep, 1.0 / np.asarray(var, float)[ids], 0.0)
            sw = w.sum(axis=1)
            offset[on] = np.where(sw > 0, (w * np.nan_to_num(vals)).sum(axis=1) / sw, 0.0)
            error[on] = np.where(sw > 0, 1.0 / np.sqrt(sw), 0.0)
    return offset, error
