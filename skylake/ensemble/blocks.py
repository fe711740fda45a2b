"""Blocks of a night's points: the ensemble's passes over millions of points, a block at a time.

A pass such as ``np.bincount(star, w * mag)`` over a night's points makes temporaries as long as the points
(72 MB each for 9 M points in float64), and a few of them at once set the stage's peak memory. Taken a block of
:data:`BLOCK` points at a time, the same pass makes temporaries of a few MB, and its sums (per star, per frame)
add up the blocks' (the same numbers to the rounding of the last bit). Arrays are taken in their own types
(:func:`floats`): a night held as int32 indices and float32 errors is not copied to 64 bits whole.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BLOCK", "blocks", "add_counts", "bucket_positions", "floats"]

#: Points per block: temporaries of 2 MB in float64 (the heap they leave is small), few enough blocks (35 for 9 M
#: points) that the loop over them costs nothing.
BLOCK = 1 << 18


def blocks(n: int, size: int | None = None) -> list[slice]:
    """Consecutive slices of at most ``size`` of ``n`` points, covering them in order.

    Parameters
    ----------
    n : int
        Number of points.
    size : int, optional
        Points per slice at most (default :data:`BLOCK`).

    Returns
    -------
    list of slice
        The slices (none for no points).

    Examples
    --------
    >>> blocks(5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    size = size or BLOCK
    return [slice(lo, min(lo + size, n)) for lo in range(0, n, size)]


def add_counts(index: np.ndarray, mask: np.ndarray | None, length: int) -> np.ndarray:
    """``np.bincount(index[mask], minlength=length)`` block by block, without the copy of ``index[mask]``.

    Parameters
    ----------
    index : int array (N,)
        Each point's bin (star, frame, cell), ``0 .. length - 1``.
    mask : bool array (N,) or None
        The points counted (None: all).
    length : int
        Number of bins.

    Returns
    -------
    numpy.ndarray (length,)
        Points per bin.

    Examples
    --------
    >>> add_counts(np.array([0, 2, 2, 1]), np.array([True, True, False, True]), 4).tolist()
    [1, 1, 1, 0]
    """
    out = np.zeros(length, np.intp)
    for b in blocks(len(index)):
        out += np.bincount(index[b] if mask is None else index[b][mask[b]], minlength=length)
    return out


def bucket_positions(keys: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Where each point of a block goes in arrays sorted by key (a counting sort, a block at a time).

    Taking the blocks in order, every key's points end up together in their first order: the order of one stable
    sort of all the points by key, without an (N,) array of indices.

    Parameters
    ----------
    keys : int array (n,)
        The block's points' keys, ``0 .. len(nxt) - 1``.
    nxt : int array (K,)
        Each key's next free position in the sorted arrays (at the start: where each key's run begins, from the
        counts of all the points); moved on past this block's points.

    Returns
    -------
    numpy.ndarray (n,)
        Each point's position in the sorted arrays.

    Examples
    --------
    >>> nxt = np.array([0, 2])  # key 0 has two points in all, key 1 the rest
    >>> bucket_positions(np.array([1, 0]), nxt).tolist(), bucket_positions(np.array([0, 1]), nxt).tolist()
    ([2, 0], [1, 3])
    """
    counts = np.bincount(keys, minlength=nxt.size)
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    dest = np.empty(keys.size, np.intp)
    dest[order] = nxt[ks] + np.arange(keys.size) - (np.cumsum(counts) - counts)[ks]
    nxt += counts
    return dest


def floats(a) -> np.ndarray:
    """``a`` as an array of floats: float32 and float64 as they are (no copy), anything else as float64.

    Parameters
    ----------
    a : array_like
        Values.

    Returns
    -------
    numpy.ndarray
        The values, float32 or float64.

    Examples
    --------
    >>> floats(np.ones(2, np.float32)).dtype, floats([1, 2]).dtype
    (dtype('float32'), dtype('float64'))
    """
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)
