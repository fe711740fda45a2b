"""Stars of one night's field: the detections of its frames grouped by position (pure functions).

The ensemble needs to know which detections on different frames are the same star, within one night and
field only; the lake's objects (skylake.objects) are built later and across nights. Frames are taken deepest
first: each detection joins the nearest star already known within ``radius_arcsec`` or founds a new one
(at most one detection per star per frame: the nearest; the others found stars of their own). The cost is
one KD-tree query per frame against the stars so far, O(points log stars).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from skylake.sphere import chord, unit_vectors

__all__ = ["associate_field"]


def associate_field(frame: np.ndarray, ra: np.ndarray, dec: np.ndarray, radius_arcsec: float) -> np.ndarray:
    """Star index (0, 1, ...) of each detection.

    Parameters
    ----------
    frame : int array (N,)
        Frame of each detection (any integers).
    ra, dec : float arrays (N,)
        Positions, deg.
    radius_arcsec : float
        Largest distance of a detection from its star's first position.

    Returns
    -------
    int array (N,)
        Stars numbered in order of foundation.
    """
    frame = np.asarray(frame)
    n = frame.size
    star = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return star
    xyz = unit_vectors(ra, dec)
    link = chord(radius_arcsec)
    frames, counts = np.unique(frame, return_counts=True)
    order = frames[np.argsort(-counts, kind="stable")]
    pos = np.zeros((0, 3))
    for f in order:
        idx = np.flatnonzero(frame == f)
        new = np.ones(idx.size, bool)
        if len(pos):
            d, j = cKDTree(pos).query(xyz[idx], distance_upper_bound=link)
            hit = np.isfinite(d)
            # one detection per star on this frame: the nearest
            cand = np.flatnonzero(hit)
            if cand.size:
                by = np.lexsort((d[cand], j[cand]))
                cand = cand[by]
                first = np.r_[True, j[cand][1:] != j[cand][:-1]]
                keep = cand[first]
                star[idx[keep]] = j[keep]
                new[keep] = False
        k = np.flatnonzero(new)
        star[idx[k]] = len(pos) + np.arange(k.size)
        pos = np.vstack([pos, xyz[idx[k]]])
    return star
