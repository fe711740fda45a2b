"""Association of detections into objects: pure functions from arrays to object ids.

Rules, applied in this order to the detections of one update (``associate``):

1. A detection with a reference match (LAKE/matches) belongs to that reference star's object,
   ``object_id = ref_object_ids(refcat, ref_id)`` (a negative int64; schemas/objects.yaml). An
   unmatched detection whose ``source_id`` is the id of an object already in the lake (its founding
   detection, back again because its frame was recalibrated) belongs to that object, wherever the
   object's mean position has moved since: the id stays tied to one of its detections, and no new
   cluster can take an id that is already an object's.
2. Any other detection attaches to the nearest object within ``radius_arcsec``: an object already in
   the lake, or a reference object of step 1.
3. The rest are clustered by friends-of-friends with linking length ``radius_arcsec`` (every pair
   closer than that is linked), in HEALPix chunks (one per pixel at ``chunk_order``, the lake's
   partition order) each with a margin of neighbouring detections at least 4 radii wide, so a
   cluster at a chunk edge is seen whole from both sides and gets the same id. A cluster's id is its
   smallest ``source_id`` (positive, stable).
4. An object gets at most one detection per frame: the step-1 one, else the one nearest the object's
   position; the others become objects of their own (id = their source_id), and a new cluster's id
   is the smallest source_id it keeps. Two stars closer than the radius are blended: their
   detections split between objects nearest-first.

So a new night attaches to existing objects (step 2) and ids, once given, never change.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np
from hats.pixel_math import get_margin
from hats.pixel_math.healpix_shim import order2mindist
from hats.pixel_math.spatial_index import healpix_to_spatial_index, spatial_index_to_healpix
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from skylake.objects.arrays import concat_ranges, positions, row_norms, stable_argsort, unique
from skylake.sphere import chord, unit_vectors

__all__ = [
    "MARGIN_RADII",
    "ref_object_ids",
    "mean_positions",
    "margin_pixels",
    "margin_order",
    "cluster",
    "detached",
    "one_per_frame",
    "associate",
]


MARGIN_RADII = 4.0
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def ref_object_ids(refcat: str, ref_id) -> np.ndarray:
    """Object ids of reference stars.

    ``-1 - (splitmix64(uint64(ref_id) + 0x9E3779B97F4A7C15 * K) >> 1)`` with ``K`` the first 8 bytes
    (little-endian) of ``blake2b(refcat)``. Negative (cluster ids are positive source ids) and a 63-bit
    hash, so distinct stars collide with probability ~n^2 / 2^64.

    Parameters
    ----------
    refcat : str
        The reference catalogue's name.
    ref_id : array_like of int
        The stars' ids in that catalogue.

    Returns
    -------
    numpy.ndarray
        The object id of each star (int64, negative).

    Raises
    ------
    ValueError
        ``refcat`` is empty.
    """
    if not refcat:
        raise ValueError("ref_object_ids needs a reference catalogue name, got an empty one")
    key = np.uint64(int.from_bytes(hashlib.blake2b(refcat.encode(), digest_size=8).digest(), "little"))
    with np.errstate(over="ignore"):
        mixed = _splitmix64(np.asarray(ref_id, dtype=np.int64).astype(np.uint64) + _GOLDEN * key)
    return -1 - (mixed >> np.uint64(1)).astype(np.int64)


def mean_positions(labels: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique labels and the normalised mean unit vector of each label's points.

    Parameters
    ----------
    labels : numpy.ndarray
        Each point's label.
    xyz : numpy.ndarray
        Each point's unit vector, (n, 3).

    Returns
    -------
    uniq : numpy.ndarray
        The unique labels, sorted.
    centres : numpy.ndarray
        The normalised mean unit vector of each label's points, (len(uniq), 3).
    """
    uniq = unique(labels)
    inv = np.searchsorted(uniq, labels)  # (cheaper than unique's inverse)
    sums = np.column_stack([np.bincount(inv, xyz[:, k], len(uniq)) for k in range(3)])
    return uniq, sums / np.linalg.norm(sums, axis=1, keepdims=True)


@functools.lru_cache(maxsize=4096)
def margin_pixels(order: int, pixel: int, delta: int) -> np.ndarray:
    """The pixels at ``order + delta`` bordering ``pixel`` (hats' ``get_margin``), kept for the process.

    A partition's margin is asked for by its own task and by each of its neighbours' (their chunks).

    Parameters
    ----------
    order : int
        The pixel's order.
    pixel : int
        The pixel (NESTED).
    delta : int
        How much deeper the margin's pixels are.

    Returns
    -------
    numpy.ndarray
        The pixels (NESTED, int64; read-only).
    """
    out = np.asarray(get_margin(order, pixel, delta), np.int64)
    out.flags.writeable = False
    return out


def margin_order(chunk_order: int, radius_arcsec: float) -> int:
    """Deepest order whose pixels are still at least ``MARGIN_RADII`` radii across (the margin's pixels).

    Parameters
    ----------
    chunk_order : int
        The order of the chunks (the lake's partition order).
    radius_arcsec : float
        The association radius [arcsec].

    Returns
    -------
    int
        The margin order: at least ``chunk_order + 1``, deeper while its pixels stay wide enough, at most 29.
    """
    order = chunk_order + 1
    while order < 29 and order2mindist(order + 1) * 60.0 >= MARGIN_RADII * radius_arcsec:
        order += 1
    return order


#: The columns of cells (x, y offsets with components in -2..2) after a cell's own that can hold its friends
#: (cells are link / sqrt(3) wide, so a friend lies at most two cells away along each axis): with the two
#: cells above it in its own column, the 62 offsets of 124 that list each neighbouring pair once.
_COLUMNS = [(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3) if (dx, dy) > (0, 0)]
#: Cell pairs with at most this many point pairs are compared all at once; larger ones with a k-d tree.
_SMALL_PAIR = 256
#: Points of the cell pairs tried at once by their points nearest each other's centre (bounds memory).
_CENTRE_ROWS = 1 << 20


def _fof_labels(xyz: np.ndarray, source_id: np.ndarray, link: float) -> np.ndarray:
    """Friends-of-friends label (smallest source_id of the group): the connected components of the
    graph of every pair closer than ``link`` (chord length), exactly, in memory linear in the points
    whatever their density (thousands of repeat detections of one star within an arcsecond included).

    Points are binned into cubic cells ``link / sqrt(3)`` wide: a cell's diagonal is ``link``, so a cell's
    points are all friends. Two cells (at most two apart along each axis) are joined when any pair of
    their points is within ``link``: first the point of each nearest the other's centroid is tried (which
    settles most pairs, a star's repeat detections, exactly when they are that close); then the other
    small cell pairs are compared all at once, large ones (the dense cores of stars) by a k-d tree query
    of one against the other. Groups are the connected components
    of the cell graph.
    """
    n = len(xyz)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    idx = np.floor(xyz / (link / np.sqrt(3.0))).astype(np.int64)
    # (column by column: numpy's reductions along the long axis of an (n, 3) array are ~30x slower)
    idx -= np.array([idx[:, k].min() for k in range(3)]) - 2  # two empty cells of room below and above, so
    dims = np.array([idx[:, k].max() for k in range(3)]) + 3  # offsets never carry
    if float(np.prod(dims.astype(np.float64))) >= 2.0**62:
        raise ValueError(
            f"friends-of-friends over a region {dims.tolist()} cells wide does not fit a 64-bit cell "
            f"key: cluster smaller chunks"
        )
    key = (idx[:, 0] * dims[1] + idx[:, 1]) * dims[2] + idx[:, 2]
    order = stable_argsort(key)
    pts = np.take(xyz, order, axis=0)  # (rows of an (n, 3) array: ~4x faster than fancy indexing)
    key = key[order]  # sorted: its runs are the cells (np.unique would sort it again)
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    cells, count = key[start], np.diff(np.r_[start, n])
    a, b = _neighbour_pairs(cells, dims)
    # most pairs are one star's repeat detections: the first points of the two cells settle them; a pair
    # whose cells that leaves joined already (through others) needs no test; then the points near the
    # centres, then every pair of points (the graph's components are the same, all pairs tested or not)
    d = np.take(pts, start[a], axis=0) - np.take(pts, start[b], axis=0)
    linked = np.einsum("ij,ij->i", d, d) <= link * link
    comp = _components(len(cells), a[linked], b[linked])
    todo = np.flatnonzero(comp[a] != comp[b])
    linked[todo] = _centres_linked(pts, start, count, a[todo], b[todo], link)
    size = count[a] * count[b]
    small = np.flatnonzero(~linked & (size <= _SMALL_PAIR) & (comp[a] != comp[b]))
    if len(small):  # every point pair of the small cell pairs, as flat index arrays
        pair = np.repeat(np.arange(len(small)), size[small])
        k = concat_ranges(np.zeros(len(small), np.int64), size[small])
        nb = count[b[small]][pair]
        p = start[a[small]][pair] + k // nb
        q = start[b[small]][pair] + k % nb
        diff = np.take(pts, p, axis=0) - np.take(pts, q, axis=0)
        close = np.einsum("ij,ij->i", diff, diff) <= link * link
        linked[small] = np.bincount(pair, weights=close, minlength=len(small)) > 0
    for i in np.flatnonzero(~linked & (size > _SMALL_PAIR) & (comp[a] != comp[b])):
        cell_a = pts[start[a[i]] : start[a[i]] + count[a[i]]]
        cell_b = pts[start[b[i]] : start[b[i]] + count[b[i]]]
        if len(cell_a) > len(cell_b):
            cell_a, cell_b = cell_b, cell_a
        linked[i] = np.isfinite(cKDTree(cell_b).query(cell_a, distance_upper_bound=link * (1 + 1e-12))[0]).any()
    comp = np.repeat(_components(len(cells), a[linked], b[linked]), count)  # per point, in sorted order
    smallest = np.full(comp.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, comp, source_id[order])
    out = np.empty(n, dtype=np.int64)
    out[order] = smallest[comp]
    return out


def _neighbour_pairs(cells: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Occupied cell pairs (a, b) at most two cells apart along each axis, each pair once (indices into
    ``cells``, the sorted keys of the occupied cells): a column's five cells within two of a cell's height
    are consecutive keys, so one binary search a column finds them (not one an offset)."""
    n = len(cells)
    i = np.arange(n)
    above = i[:-1][np.diff(cells) <= 2]  # in its own column: the next cell is one or two above
    two_above = i[:-2][cells[2:] - cells[:-2] == 2]  # or the one after next is two above
    a, b = [above, two_above], [above + 1, two_above + 2]
    padded = np.r_[cells, np.iinfo(np.int64).max]  # a search past the last cell reads no cell
    for dx, dy in _COLUMNS:
        base = cells + (dx * dims[1] + dy) * dims[2] - 2  # the column's cell two below
        first = np.searchsorted(cells, base)
        for k in range(5):
            hit = np.flatnonzero(padded[np.minimum(first + k, n)] <= base + 4)
            a.append(hit)
            b.append(first[hit] + k)
    return np.concatenate(a), np.concatenate(b)


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The connected component of each of ``n`` nodes joined by the edges (a, b)."""
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _nearest_in_cells(pts: np.ndarray, start: np.ndarray, count: np.ndarray, cells: np.ndarray, to: np.ndarray):
    """Row (of ``pts``, sorted by cell) of each listed cell's point nearest the position ``to`` given for it."""
    seg = np.repeat(np.arange(len(cells)), count[cells])
    rows = concat_ranges(start[cells], start[cells] + count[cells])
    diff = np.take(pts, rows, axis=0) - np.take(to, seg, axis=0)
    d = np.nan_to_num(np.einsum("ij,ij->i", diff, diff), nan=np.inf)
    low = np.minimum.reduceat(d, np.cumsum(count[cells]) - count[cells])  # each cell's points are contiguous
    hit = np.flatnonzero(d == low[seg])  # at least one per cell
    return rows[hit[np.r_[True, seg[hit][1:] != seg[hit][:-1]]]]  # the first nearest of each cell


def _centres_linked(pts, start, count, a, b, link) -> np.ndarray:
    """Cell pairs (a, b) shown linked by one pair of points: a's point nearest b's centroid and b's point
    nearest a's. True is exact (that pair is within ``link``); False leaves the pair undecided."""
    out = np.zeros(len(a), dtype=bool)
    if not len(a):
        return out
    centre = np.add.reduceat(pts, start, axis=0) / count[:, None]
    # in slices of about _CENTRE_ROWS points: a crowded field's pairs list each point up to 62 times
    rows = np.cumsum(count[a] + count[b])
    cuts = np.searchsorted(rows, np.arange(_CENTRE_ROWS, rows[-1], _CENTRE_ROWS), side="right")
    bounds = np.unique(np.r_[0, cuts, len(a)])
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        sa, sb = a[lo:hi], b[lo:hi]
        pa = _nearest_in_cells(pts, start, count, sa, np.take(centre, sb, axis=0))
        pb = _nearest_in_cells(pts, start, count, sb, np.take(centre, sa, axis=0))
        diff = np.take(pts, pa, axis=0) - np.take(pts, pb, axis=0)
        out[lo:hi] = np.einsum("ij,ij->i", diff, diff) <= link * link
    return out


def cluster(
    h29: np.ndarray, xyz: np.ndarray, source_id: np.ndarray, radius_arcsec: float, chunk_order: int
) -> np.ndarray:
    """Friends-of-friends cluster id (smallest source_id) of each detection, chunk by chunk with margins.

    Parameters
    ----------
    h29 : numpy.ndarray
        Each detection's ``_healpix_29`` (int64).
    xyz : numpy.ndarray
        Each detection's unit vector, (n, 3).
    source_id : numpy.ndarray
        Each detection's source id (int64).
    radius_arcsec : float
        The linking length [arcsec].
    chunk_order : int
        The order of the chunks (the lake's partition order).

    Returns
    -------
    numpy.ndarray
        Each detection's cluster id (int64): the smallest ``source_id`` of its cluster.
    """
    n = len(h29)
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        return out
    order = np.argsort(h29, kind="stable")
    h_sorted = h29[order]
    chunk = spatial_index_to_healpix(h_sorted, target_order=chunk_order)
    m_order = margin_order(chunk_order, radius_arcsec)
    link = chord(radius_arcsec)
    starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
    ends = np.r_[starts[1:], n]
    for s, e in zip(starts, ends):
        margin = margin_pixels(chunk_order, int(chunk[s]), m_order - chunk_order)
        lo = np.searchsorted(h_sorted, healpix_to_spatial_index(m_order, margin))
        hi = np.searchsorted(h_sorted, healpix_to_spatial_index(m_order, margin + 1))
        rows = np.concatenate((np.arange(s, e, dtype=np.int64), concat_ranges(lo, hi)))
        labels = _fof_labels(np.take(xyz, order[rows], axis=0), source_id[order[rows]], link)
        out[order[s:e]] = labels[: e - s]  # a detection's id comes from its own chunk
    return out


def detached(object_id: np.ndarray, frame_id: np.ndarray, dist: np.ndarray, matched: np.ndarray) -> np.ndarray:
    """Rule 4's losers: the detections an object cannot keep.

    Where an object has several detections of one frame, all but the ``matched`` one, else all but the
    nearest (``dist`` from the object's position).

    Parameters
    ----------
    object_id : numpy.ndarray
        Each detection's object id.
    frame_id : numpy.ndarray
        Each detection's frame.
    dist : numpy.ndarray
        Each detection's distance from its object's position (a chord length, or any monotonic measure).
    matched : numpy.ndarray
        Mask (bool) of the detections that come first (rule 1).

    Returns
    -------
    numpy.ndarray
        Mask (bool) of the detached detections.
    """
    return _detached(np.unique(object_id, return_inverse=True)[1], frame_id, dist, matched)


def _detached(obj: np.ndarray, frame_id: np.ndarray, dist: np.ndarray, matched: np.ndarray) -> np.ndarray:
    """:func:`detached` with each detection's object as a dense index (0 .. objects-1). Only the detections
    sharing their (object, frame) with another are ordered: one star's are nearly all alone in their frame."""
    rows = np.flatnonzero(_repeated(obj, frame_id))
    return _detached_rows(obj, frame_id, rows, dist[rows], matched)


def _detached_rows(obj: np.ndarray, frame_id: np.ndarray, rows: np.ndarray, dist: np.ndarray, matched: np.ndarray):
    """:func:`_detached` given the detections sharing their (object, frame) with another (``rows``, ascending)
    and their distances ``dist`` (those rows' only: the others' are never compared)."""
    out = np.zeros(len(obj), dtype=bool)
    if not len(rows):
        return out
    order = rows[np.lexsort((dist, ~matched[rows], frame_id[rows], obj[rows]))]
    o, f = obj[order], frame_id[order]
    out[order[1:]] = (o[1:] == o[:-1]) & (f[1:] == f[:-1])
    return out


def _repeated(obj: np.ndarray, frame_id: np.ndarray) -> np.ndarray:
    """Mask of the detections whose (object, frame) pair has another detection (``obj``: dense object
    indices): counted in a table of the pairs when it is small (a partition's objects times its frames'
    span), else all of them (the caller orders them all)."""
    if len(obj) < 2:
        return np.zeros(len(obj), dtype=bool)
    frame = frame_id - frame_id.min()
    span, n_obj = int(frame.max()) + 1, int(obj.max()) + 1
    if n_obj * span > 8 * len(obj) + (1 << 20):
        return np.ones(len(obj), dtype=bool)
    pair = obj.astype(np.int64) * span + frame
    return np.bincount(pair, minlength=n_obj * span)[pair] > 1


def one_per_frame(
    object_id: np.ndarray, frame_id: np.ndarray, dist: np.ndarray, matched: np.ndarray, source_id: np.ndarray
) -> np.ndarray:
    """Rule 4: the :func:`detached` detections get their own source_id.

    Parameters
    ----------
    object_id : numpy.ndarray
        Each detection's object id.
    frame_id : numpy.ndarray
        Each detection's frame.
    dist : numpy.ndarray
        Each detection's distance from its object's position (a chord length, or any monotonic measure).
    matched : numpy.ndarray
        Mask (bool) of the detections that come first (rule 1).
    source_id : numpy.ndarray
        Each detection's source id.

    Returns
    -------
    numpy.ndarray
        Each detection's object id after rule 4.
    """
    return np.where(detached(object_id, frame_id, dist, matched), source_id, object_id)


def _detached_at(ids, xyz, frame_id, matched, target_id, target_xyz, todo) -> tuple[np.ndarray, np.ndarray]:
    """Rule 4 with each detection's distance from its object: a target's position, else its cluster's mean.
    Also each detection's object as an index (of the objects' sorted ids).

    As :func:`mean_positions` of the targets and the ``todo`` detections, but the centres (and distances) only
    of the objects holding two detections of one frame, all that rule 4 compares: each such centre sums the
    same points in the same order, so it has the same bits."""
    centre_id = unique(np.concatenate((target_id, ids[todo])))
    obj = positions(centre_id, ids)
    rows = np.flatnonzero(_repeated(obj, frame_id))
    if not len(rows):
        return np.zeros(len(ids), dtype=bool), obj
    need = np.zeros(len(centre_id), dtype=bool)
    need[obj[rows]] = True
    t_obj = np.searchsorted(centre_id, target_id)
    t_sel, o_sel = np.flatnonzero(need[t_obj]), todo[need[obj[todo]]]  # (each in its order: the sums' order)
    inv = np.concatenate((t_obj[t_sel], obj[o_sel]))
    sums = np.column_stack(
        [np.bincount(inv, np.concatenate((target_xyz[t_sel, k], xyz[o_sel, k])), len(centre_id)) for k in range(3)]
    )
    centre = sums[obj[rows]] / np.linalg.norm(sums[obj[rows]], axis=1, keepdims=True)
    return _detached_rows(obj, frame_id, rows, row_norms(xyz[rows] - centre), matched), obj


def associate(
    source_id: np.ndarray,
    frame_id: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    h29: np.ndarray,
    ref_object: np.ndarray,
    known_id: np.ndarray,
    known_ra: np.ndarray,
    known_dec: np.ndarray,
    radius_arcsec: float,
    chunk_order: int,
    xyz: np.ndarray | None = None,
) -> np.ndarray:
    """Object id of each detection (rules 1-4 of the module docstring).

    Parameters
    ----------
    source_id : numpy.ndarray
        Each detection's source id (int64, positive).
    frame_id : numpy.ndarray
        Each detection's frame.
    ra, dec : numpy.ndarray
        Each detection's position [deg].
    h29 : numpy.ndarray
        Each detection's ``_healpix_29`` (int64).
    ref_object : numpy.ndarray
        The reference object id of each detection (``ref_object_ids``), 0 when unmatched.
    known_id : numpy.ndarray
        The ids of the objects already in the lake.
    known_ra, known_dec : numpy.ndarray
        Their positions [deg].
    radius_arcsec : float
        The association radius [arcsec], also the friends-of-friends linking length.
    chunk_order : int
        The order of the clustering chunks (the lake's partition order).
    xyz : numpy.ndarray, optional
        The detections' unit vectors (:func:`~skylake.sphere.unit_vectors` of ``ra``, ``dec``), when known.

    Returns
    -------
    numpy.ndarray
        Each detection's object id (int64).

    Raises
    ------
    ValueError
        ``radius_arcsec`` is not a positive, finite number.
    """
    if radius_arcsec <= 0 or not np.isfinite(radius_arcsec):
        raise ValueError(f"the association radius must be a positive number of arcsec, got {radius_arcsec!r}")
    xyz = unit_vectors(ra, dec) if xyz is None else xyz
    known_id = np.asarray(known_id, dtype=np.int64)
    # rule 1: reference matches, and known objects' founding detections (source_id = object id)
    founder = (ref_object == 0) & np.isin(source_id, known_id[known_id > 0])
    ids = np.where(founder, source_id, ref_object).astype(np.int64)
    matched = (ref_object != 0) | founder  # these come first in rule 4
    # targets: known objects plus new reference objects (at their matched detections' mean position)
    ref_ids, ref_xyz = mean_positions(ref_object[ref_object != 0], xyz[ref_object != 0])
    fresh = ~np.isin(ref_ids, known_id)
    target_id = np.concatenate((known_id, ref_ids[fresh]))
    target_xyz = np.concatenate((unit_vectors(known_ra, known_dec), ref_xyz[fresh]))
    todo = np.flatnonzero(~matched)
    if len(target_id) and len(todo):
        d, k = cKDTree(target_xyz).query(xyz[todo], distance_upper_bound=chord(radius_arcsec))
        hit = np.isfinite(d)
        ids[todo[hit]] = target_id[k[hit]]
        todo = todo[~hit]
    ids[todo] = cluster(h29[todo], np.take(xyz, todo, axis=0), source_id[todo], radius_arcsec, chunk_order)
    # a mask, not ``out != ids``: a detached detection that was its cluster's smallest source_id gets
    # the cluster's label as its own id, and would otherwise stay in the cluster (two in one frame)
    lost, obj = _detached_at(ids, xyz, frame_id, matched, target_id, target_xyz, todo)
    out = np.where(lost, source_id, ids)
    # detections a blend's cluster let go cluster again among themselves (the blend's other star)
    rounds = np.zeros(len(ids), dtype=np.int64)
    pending = todo[lost[todo]]
    for k in range(1, 4):
        if not len(pending):
            break
        ids[pending] = cluster(h29[pending], xyz[pending], source_id[pending], radius_arcsec, chunk_order)
        rounds[pending] = k  # labels of different rounds may coincide: keep them apart
        lost[pending] = _detached_at(
            ids[pending],
            xyz[pending],
            frame_id[pending],
            matched[pending],
            target_id[:0],
            target_xyz[:0],
            np.arange(len(pending)),
        )[0]
        out[pending] = np.where(lost[pending], source_id[pending], ids[pending])
        pending = pending[lost[pending]]
    # a new cluster's id is the smallest source_id it keeps (a detached detection may have been the smallest)
    keep = np.zeros(len(ids), dtype=bool)
    keep[todo] = ~lost[todo]
    first_pass = np.flatnonzero(keep & (rounds == 0))  # their clusters are the first pass's objects, ``obj``
    if len(first_pass):
        smallest = np.full(obj.max() + 1, np.iinfo(np.int64).max)
        np.minimum.at(smallest, obj[first_pass], source_id[first_pass])
        out[first_pass] = smallest[obj[first_pass]]
    if (keep & (rounds > 0)).any():
        kept = np.flatnonzero(keep & (rounds > 0))
        kept = kept[np.lexsort((ids[kept], rounds[kept]))]  # the clusters, each round's apart, contiguous
        first = np.r_[True, (ids[kept][1:] != ids[kept][:-1]) | (rounds[kept][1:] != rounds[kept][:-1])]
        smallest = np.minimum.reduceat(source_id[kept], np.flatnonzero(first))
        out[kept] = smallest[np.cumsum(first) - 1]
    return out
