"""Satellite and aircraft trails on a frame.

The MDM all-sky pipeline's ``--detect_streaks`` ran ASTRiDE (long, thin closed contours of the
thresholded image) with its defaults. This module does the same job with sep, so it needs no
extra package, and measures each trail rather than only outlining it:

1. background-subtract (sep mesh) and segment the image at ``thresh`` x the local pixel-to-pixel noise
   (:func:`noise_map`: a crowded fisheye frame's mesh rms is 2-5 times it) with no deblending, so a trail
   crossing stars stays one object (stars above 5 sigma masked first);
2. keep *elongated* segments: second-moment length ``sqrt(12) a >= min_segment_px`` and
   ``a / b >= min_elongation`` (stars, even trailed ones at the quality gate's limits, are round
   or short), and long segments (half ``min_length_px``) of ``a / b >= 2``: a trail merged with the stars
   it crosses;
3. merge collinear segments (a trail broken by noise or a gap) when their directions agree within
   ``merge_angle_deg`` and each centre lies within ``merge_dist_px`` of the other's line;
4. measure each trail on the background-subtracted image along a strip around the fitted line:
   the along-line profile (median across 1 px bins, robust to stars on the trail) gives the
   endpoints at half the plateau level (sub-pixel for a PSF-blurred end), the cross profile the
   width (FWHM) and the brightness per px of length;
5. keep trails at least ``min_length_px`` long, at most ``max_width_px`` wide and straight
   (the perpendicular centroids of 8 px chunks scatter less than ``max_wiggle_px`` about the line),
   and score each (:func:`streak_score`).

A trail that repeats at the same pixels on consecutive frames is no trail but an artefact of the optics (a
reflection, the rim): :func:`same_pixels` compares two, and :mod:`skylake.frame.static_artefacts` keeps a
camera's artefacts, which are left out.

Pixels are 0-based, x = column, y = row; lengths in px; brightness in ADU per px of length.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.table import Table

from skylake.robust import MAD_TO_SIGMA

__all__ = [
    "StreakSettings",
    "detect_streaks",
    "flag_on_streaks",
    "streak_mask",
    "STREAK_COLUMNS",
    "streak_score",
    "side_contrast",
    "noise_map",
    "same_pixels",
    "same_pivot",
    "union_find",
]

#: Columns of the streak table (the lake's streak table adds ``frame_id``).
STREAK_COLUMNS = (
    "x1",
    "y1",
    "x2",
    "y2",
    "length",
    "width",
    "brightness",
    "angle_deg",
    "snr",
    "n_segments",
    "wiggle",
    "score",
)


def streak_score(snr, length, width, wiggle, settings: StreakSettings) -> np.ndarray:
    """Score how much a trail looks like one, 0..1.

    The score is the product of its S/N (``1 - exp(-snr / (2 min_snr))``), its length
    (``1 - exp(-length / min_length_px)``), its straightness (``1 - wiggle / max_wiggle_px``) and its
    thinness (``sqrt(1 - width / max_width_px)``). A bright, long, straight, thin satellite trail scores near
    1; one just at the detection limits near 0.3.

    Parameters
    ----------
    snr : float or array_like
        The trail's total S/N along its length.
    length : float or array_like
        The trail's length, px.
    width : float or array_like
        The trail's width (FWHM), px.
    wiggle : float or array_like
        The robust scatter of the trail's perpendicular centroids about its line, px.
    settings : StreakSettings
        The settings (``min_snr``, ``min_length_px``, ``max_wiggle_px``, ``max_width_px``).

    Returns
    -------
    score : numpy.ndarray
        The score of each trail, 0..1.
    """
    snr, length, width, wiggle = (np.asarray(v, float) for v in (snr, length, width, wiggle))
    return (
        (1 - np.exp(-snr / (2 * max(settings.min_snr, 1.0))))
        * (1 - np.exp(-length / settings.min_length_px))
        * np.clip(1 - wiggle / settings.max_wiggle_px, 0, 1)
        * np.sqrt(np.clip(1 - width / settings.max_width_px, 0, 1))
    )


class StreakSettings:
    """Validated settings of :func:`detect_streaks` (a profile's ``[streaks]`` table).

    Parameters
    ----------
    thresh : float
        Segmentation threshold, x local background rms (after the 3x3 smoothing kernel).
    min_length_px : float
        Shortest trail reported, px.
    min_segment_px : float
        Shortest elongated segment considered, px (``sqrt(12) a``).
    min_elongation : float
        Smallest ``a / b`` of a segment.
    max_width_px : float
        Widest trail reported (FWHM), px.
    merge_angle_deg, merge_dist_px : float
        Collinearity tolerances for joining segments of one trail.
    max_wiggle_px : float
        Largest robust scatter about the line of the trail's perpendicular centroids in 8 px
        chunks, px (straightness).
    mesh_px : int
        Background mesh, px.
    min_snr : float
        Smallest total S/N of a trail along its length.
    min_score : float
        Smallest :func:`streak_score`: cloud edges and lit cloud banks that pass the other cuts score 0.05-0.15
        (the real cloudy IceAct frame), satellite trails at 10 sigma per pixel 0.4-0.8.
    axis_tolerance_deg : float
        A detection along a pixel row or column within this angle is the sensor's (a bleed column under a
        saturated star, a bad row, readout banding: the real cloudy IceAct frame has one), not a trail; a
        satellite lies there about once in 180 / (2 x this) trails. 0 keeps them.
    max_side_contrast : float
        A trail crosses the sky with the same sky on both sides; the lit edge of a telescope's tube or of a
        building has the structure on one side. A detection whose two sides (:func:`side_contrast`: the median
        sky above the pedestal in strips along its whole length) differ by more than this fraction is an edge,
        not a trail (a dark body at 15-50 % of the sky: 0.5-0.85; trails on the real IceAct sky: 0.17 at most).
        1 (the default here; all-sky cameras set ``allsky.streak_max_side_contrast``) keeps them: it needs the
        image as taken and its pedestal, and a strong sky gradient across a trail (the Moon's glare, about 1.5 %
        of the sky per px) reads as a contrast too.
    """

    def __init__(
        self,
        thresh: float = 1.5,
        min_length_px: float = 60.0,
        min_segment_px: float = 15.0,
        min_elongation: float = 5.0,
        max_width_px: float = 12.0,
        merge_angle_deg: float = 2.0,
        merge_dist_px: float = 4.0,
        max_wiggle_px: float = 1.5,
        mesh_px: int = 64,
        min_snr: float = 15.0,
        min_score: float = 0.3,
        axis_tolerance_deg: float = 0.3,
        max_side_contrast: float = 1.0,
    ):
        checks = {
            "thresh": (thresh, 0.3, 100),
            "min_length_px": (min_length_px, 3, 1e6),
            "min_segment_px": (min_segment_px, 3, 1e6),
            "min_elongation": (min_elongation, 1.5, 1e4),
            "max_width_px": (max_width_px, 0.5, 1e3),
            "merge_angle_deg": (merge_angle_deg, 0.01, 45),
            "merge_dist_px": (merge_dist_px, 0.1, 1e3),
            "max_wiggle_px": (max_wiggle_px, 0.1, 1e3),
            "mesh_px": (mesh_px, 8, 4096),
            "min_snr": (min_snr, 0, 1e9),
            "min_score": (min_score, 0, 1),
            "axis_tolerance_deg": (axis_tolerance_deg, 0, 10),
            "max_side_contrast": (max_side_contrast, 0, 1),
        }
        for name, (v, lo, hi) in checks.items():
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"streaks.{name} must be a number, got {v!r}") from None
            if not (lo <= fv <= hi) or not math.isfinite(fv):
                raise ValueError(f"streaks.{name} must be in [{lo}, {hi}], got {v!r}")
        self.thresh = float(thresh)
        self.min_length_px = float(min_length_px)
        self.min_segment_px = float(min_segment_px)
        self.min_elongation = float(min_elongation)
        self.max_width_px = float(max_width_px)
        self.merge_angle_deg = float(merge_angle_deg)
        self.merge_dist_px = float(merge_dist_px)
        self.max_wiggle_px = float(max_wiggle_px)
        self.mesh_px = int(mesh_px)
        self.min_snr = float(min_snr)
        self.min_score = float(min_score)
        self.axis_tolerance_deg = float(axis_tolerance_deg)
        self.max_side_contrast = float(max_side_contrast)

    @classmethod
    def from_dict(cls, d) -> StreakSettings:
        """Build the settings from a mapping; unknown keys are refused with the known ones listed.

        Parameters
        ----------
        d : mapping
            Setting names and values (a profile's ``[streaks]`` table); absent settings take their defaults.

        Returns
        -------
        settings : StreakSettings
            The validated settings.

        Raises
        ------
        ValueError
            A key is not a known setting, or a value is not a number within its range.
        """
        import inspect

        known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown streaks setting(s) {unknown}; known: {known}")
        return cls(**d)

    def to_dict(self) -> dict:
        """Give the settings as a mapping (the inverse of :meth:`from_dict`).

        Returns
        -------
        settings : dict
            Each setting's name and value.
        """
        return dict(self.__dict__)


def noise_map(data: np.ndarray, bad: np.ndarray, mesh_px: int) -> np.ndarray:
    """Measure the pixel-to-pixel noise per mesh cell (ADU rms).

    The noise is the robust spread (1.4826 MAD) of the differences of neighbouring pixels over sqrt(2): blind
    to the sky's gradients and to the stars (a few pixels of each cell), which make a background mesh's rms of
    a crowded fisheye frame 2-5 times the noise (the IceAct frame: 747 ADU for a pixel noise of 161), so that
    a trail at 10 sigma per pixel looked like 2 and was lost. Cells with too few good pixels take the median
    of the rest.

    Parameters
    ----------
    data : numpy.ndarray
        The image, ADU.
    bad : numpy.ndarray
        True for pixels to leave out.
    mesh_px : int
        The mesh cell's size, px.

    Returns
    -------
    noise : numpy.ndarray
        Each pixel's cell noise (ADU rms), the image's shape.
    """
    ny, nx = data.shape
    d = np.full(data.shape, np.nan)
    d[:, 1:] = (data[:, 1:] - data[:, :-1]) / math.sqrt(2.0)
    d[:, 1:][bad[:, 1:] | bad[:, :-1]] = np.nan
    my, mx = -(-ny // mesh_px), -(-nx // mesh_px)
    pad = np.full((my * mesh_px, mx * mesh_px), np.nan)
    pad[:ny, :nx] = d
    blocks = pad.reshape(my, mesh_px, mx, mesh_px).transpose(0, 2, 1, 3).reshape(my, mx, -1)
    with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(blocks, axis=2)
        mad = np.nanmedian(np.abs(blocks - med[:, :, None]), axis=2)
        count = np.sum(np.isfinite(blocks), axis=2)
    cells = MAD_TO_SIGMA * mad
    good = (count >= 0.25 * mesh_px * mesh_px) & np.isfinite(cells) & (cells > 0)
    fill = float(np.median(cells[good])) if good.any() else 1.0
    cells = np.where(good, cells, fill)
    return np.repeat(np.repeat(cells, mesh_px, axis=0), mesh_px, axis=1)[:ny, :nx]


class _axis_band:
    """``x in _axis_band(t)``: an angle (deg, folded to [-45, 45)) within ``t`` of a pixel axis."""

    def __init__(self, tol: float):
        self.tol = tol

    def __contains__(self, folded: float) -> bool:
        return self.tol > 0 and abs(folded) <= self.tol


def _empty() -> Table:
    t = Table({c: np.zeros(0, dtype=np.int64 if c == "n_segments" else float) for c in STREAK_COLUMNS})
    return t


def union_find(n, pairs) -> list[int]:
    """Group ``n`` items joined by ``pairs`` of indices (union-find).

    Parameters
    ----------
    n : int
        The number of items.
    pairs : iterable of (int, int)
        Indices of items that belong together.

    Returns
    -------
    groups : list of int
        The group (a root index) of each item.
    """
    parent = list(range(n))

    def find(i):
        """Find the root of item ``i``, halving the path on the way.

        Parameters
        ----------
        i : int
            An item's index.

        Returns
        -------
        root : int
            The index of the root of its group.
        """
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[rj] = ri
    return [find(i) for i in range(n)]


def _hough_seed(xs, ys, w, keep):
    """Keep the pixels within 4 px of the segment's dominant line (its Hough peak).

    A star halo merged into the segment would tilt a line fitted to all of its pixels.

    Parameters
    ----------
    xs, ys : numpy.ndarray
        The segment's pixels, px.
    w : numpy.ndarray
        Their capped weights.
    keep : numpy.ndarray
        The pixels of positive weight.

    Returns
    -------
    keep : numpy.ndarray
        The pixels that seed the line fit (``keep`` unchanged when fewer than 10 lie near the peak's line).
    """
    thetas = np.radians(np.arange(0.0, 180.0, 0.5))
    cth, sth = np.cos(thetas), np.sin(thetas)
    xm, ym = xs.mean(), ys.mean()
    rho = (xs - xm)[:, None] * cth[None, :] + (ys - ym)[:, None] * sth[None, :]
    rmax = float(np.abs(rho).max()) + 1.0
    ri = np.round(rho + rmax).astype(np.int64)
    nr = int(2 * rmax) + 2
    acc = np.bincount(
        (ri + nr * np.arange(len(thetas))[None, :]).ravel(),
        weights=np.repeat(w, len(thetas)),
        minlength=nr * len(thetas),
    ).reshape(len(thetas), nr)
    # smooth over 3 rho bins (a trail is a few px wide) before taking the peak
    acc3 = acc[:, :-2] + acc[:, 1:-1] + acc[:, 2:]
    ti, rj = np.unravel_index(np.argmax(acc3), acc3.shape)
    rho0 = rj + 1 - rmax
    dist = np.abs((xs - xm) * cth[ti] + (ys - ym) * sth[ti] - rho0)
    if (keep & (dist <= 4.0)).sum() >= 10:
        keep = keep & (dist <= 4.0)
    return keep


def _pca_line(xs, ys, w, keep):
    """Fit a weighted PCA line, clipping pixels far from it (a star blob merged in), up to three times.

    Parameters
    ----------
    xs, ys : numpy.ndarray
        The segment's pixels, px.
    w : numpy.ndarray
        Their capped weights.
    keep : numpy.ndarray
        The pixels that seed the fit.

    Returns
    -------
    cx, cy : float
        A point on the line, px.
    ux, uy : float
        The line's unit direction, ``ux >= 0``.
    keep : numpy.ndarray
        The pixels kept by the last clip.
    """
    for _ in range(3):
        ww = w[keep]
        cx, cy = np.average(xs[keep], weights=ww), np.average(ys[keep], weights=ww)
        cov = np.cov(np.vstack([xs[keep] - cx, ys[keep] - cy]), aweights=ww)
        evals, evecs = np.linalg.eigh(cov)
        ux, uy = evecs[:, 1]
        perp_all = -(xs - cx) * uy + (ys - cy) * ux
        spread = MAD_TO_SIGMA * np.median(np.abs(perp_all[keep])) + 0.5
        new_keep = (w > 0) & (np.abs(perp_all) <= min(3.0 * spread, 6.0))
        if new_keep.sum() < 10 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    if ux < 0 or (ux == 0 and uy < 0):
        ux, uy = -ux, -uy
    return cx, cy, ux, uy, keep


def _wiggle(along_pix, perp_pix, w):
    """Measure a trail's straightness: the robust scatter about the line of its 8 px chunks' centroids.

    The centroids are weighted perpendicular offsets, so the scatter is not the trail's width.

    Parameters
    ----------
    along_pix, perp_pix : numpy.ndarray
        The pixels' offsets along and across the line, px.
    w : numpy.ndarray
        Their weights.

    Returns
    -------
    wiggle : float
        The scatter, px (0 with fewer than 3 chunks).
    """
    chunk = np.floor((along_pix - along_pix.min()) / 8.0).astype(int)
    sw = np.bincount(chunk, weights=w)
    swp = np.bincount(chunk, weights=w * perp_pix)
    okc = sw > 0
    cent = swp[okc] / sw[okc]
    return float(MAD_TO_SIGMA * np.median(np.abs(cent - np.median(cent)))) if cent.size >= 3 else 0.0


def _refit_while_growing(m, sub, rms_map, bad, s_lo, s_hi, half):
    """Refit the line to the trail's strip pixels and measure again while the trail's extent keeps growing.

    A line fitted to a short segment drifts off a long trail.

    Parameters
    ----------
    m : dict or None
        The first :func:`_strip_measure`.
    sub, rms_map, bad : numpy.ndarray
        The background-subtracted image, its noise and the pixels to leave out.
    s_lo, s_hi : float
        The segment's extent along the first line, px.
    half : float
        The strip's half-width, px.

    Returns
    -------
    m : dict or None
        The last successful measurement (``m`` itself when no refit succeeds).
    """
    for _ in range(3):
        if m is None or (m["s_end"] - m["s_start"]) < 1.1 * (s_hi - s_lo) + 2:
            break
        sel = (m["sv"] >= m["s_start"]) & (m["sv"] <= m["s_end"]) & (np.abs(m["dv"] - m["mu"]) <= 2.5 * m["sigma"])
        if sel.sum() < 10:
            break
        wv = np.clip(m["vv"][sel], 0, 2.0 * max(m["level"] / (np.sqrt(2 * np.pi) * m["sigma"]), 1e-12))
        if wv.sum() <= 0:
            break
        px_ = m["cx"] + m["sv"][sel] * m["ux"] - m["dv"][sel] * m["uy"]
        py_ = m["cy"] + m["sv"][sel] * m["uy"] + m["dv"][sel] * m["ux"]
        ncx, ncy = np.average(px_, weights=wv), np.average(py_, weights=wv)
        cov = np.cov(np.vstack([px_ - ncx, py_ - ncy]), aweights=wv)
        nux, nuy = np.linalg.eigh(cov)[1][:, 1]
        if nux < 0 or (nux == 0 and nuy < 0):
            nux, nuy = -nux, -nuy
        along = (px_ - ncx) * nux + (py_ - ncy) * nuy
        s_lo, s_hi = float(along.min()), float(along.max())
        m2 = _strip_measure(sub, rms_map, bad, ncx, ncy, nux, nuy, s_lo, s_hi, half)
        if m2 is None:
            break
        m = m2
    return m


def _measure(sub, rms_map, bad, ys, xs, settings: StreakSettings):
    """Fit a line to a trail's segment pixels and measure it along a strip. Returns a dict or None."""
    v = sub[ys, xs]
    cap = 2.0 * float(np.median(v[v > 0])) if (v > 0).any() else 0.0
    w = np.clip(v, 0, cap)  # capped weights: a star left on the trail does not steer the line
    if w.sum() <= 0:
        return None
    keep = _hough_seed(xs, ys, w, w > 0)
    cx, cy, ux, uy, keep = _pca_line(xs, ys, w, keep)
    xs, ys, w = xs[keep], ys[keep], w[keep]
    dx, dy = xs - cx, ys - cy
    along_pix = dx * ux + dy * uy
    perp_pix = -dx * uy + dy * ux
    wiggle = _wiggle(along_pix, perp_pix, w)
    s_lo, s_hi = float(along_pix.min()), float(along_pix.max())
    half = max(4.0, 2.0 * float(MAD_TO_SIGMA * np.median(np.abs(perp_pix))) + 2.0)
    m = _strip_measure(sub, rms_map, bad, cx, cy, ux, uy, s_lo, s_hi, half)
    m = _refit_while_growing(m, sub, rms_map, bad, s_lo, s_hi, half)
    if m is None:
        return None
    cx, cy, ux, uy, mu = m["cx"], m["cy"], m["ux"], m["uy"], m["mu"]
    s_start, s_end = m["s_start"], m["s_end"]
    cx, cy = cx - mu * uy, cy + mu * ux  # the fitted centre of the cross profile
    return {
        "x1": cx + s_start * ux,
        "y1": cy + s_start * uy,
        "x2": cx + s_end * ux,
        "y2": cy + s_end * uy,
        "length": float(s_end - s_start),
        "width": 2.3548 * m["sigma"],
        "brightness": m["level"],
        "angle_deg": float(np.degrees(np.arctan2(uy, ux))),
        "snr": m["snr"],
        "wiggle": wiggle,
    }


def _strip_pixels(sub, rms_map, bad, cx, cy, ux, uy, s_lo, s_hi, half):
    """Gather the pixels of a strip of half-width ``half`` around a line, across the whole image.

    The whole image, so that the trail is followed beyond the segment (parts of it merged with bright stars
    into round blobs are not lost).

    Parameters
    ----------
    sub, rms_map, bad : numpy.ndarray
        The background-subtracted image, its noise and the pixels to leave out.
    cx, cy : float
        A point on the line, px.
    ux, uy : float
        The line's unit direction.
    s_lo, s_hi : float
        The segment's extent along the line, px (the strip reaches at least this far).
    half : float
        The strip's half-width, px.

    Returns
    -------
    pixels : tuple of numpy.ndarray or None
        Each good pixel's offset along (``sv``) and across (``dv``) the line, value (``vv``) and noise
        (``rv``); None with fewer than 10.
    """
    ny, nx = sub.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = []
        for c, u, n in ((cx, ux, nx), (cy, uy, ny)):
            if abs(u) > 1e-9:
                ts += [(-0.5 - c) / u, (n - 0.5 - c) / u]
    ts = np.sort(np.asarray(ts))
    smin, smax = (ts[1], ts[2]) if len(ts) == 4 else (ts[0], ts[1])
    smin, smax = min(smin, s_lo), max(smax, s_hi)
    # gathered in 64 px pieces along the line (a diagonal trail's bounding box would be the whole frame)
    parts = []
    for s0 in np.arange(smin, smax, 64.0):
        s1 = min(s0 + 64.0, smax)
        px = cx + np.array([s0, s1]) * ux
        py = cy + np.array([s0, s1]) * uy
        x0 = int(max(0, math.floor(px.min() - half - 1)))
        x1 = int(min(nx, math.ceil(px.max() + half + 2)))
        y0 = int(max(0, math.floor(py.min() - half - 1)))
        y1 = int(min(ny, math.ceil(py.max() + half + 2)))
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        ddx, ddy = xx - cx, yy - cy
        s_ = ddx * ux + ddy * uy
        d_ = -ddx * uy + ddy * ux
        sel = (np.abs(d_) <= half) & (s_ >= s0) & (s_ < s1 if s1 < smax else s_ <= s1) & ~bad[y0:y1, x0:x1]
        parts.append((s_[sel], d_[sel], sub[y0:y1, x0:x1][sel], rms_map[y0:y1, x0:x1][sel]))
    if not parts:
        return None
    sv = np.concatenate([p[0] for p in parts])
    if sv.size < 10:
        return None
    dv = np.concatenate([p[1] for p in parts])
    vv = np.concatenate([p[2] for p in parts])
    rv = np.concatenate([p[3] for p in parts])
    return sv, dv, vv, rv


def _gauss(x, amp, mu, sig, off):
    """Evaluate a Gaussian on an offset (the cross profile's model).

    Parameters
    ----------
    x : numpy.ndarray
        Perpendicular distances, px.
    amp : float
        The peak above the offset.
    mu : float
        The centre, px.
    sig : float
        The sigma, px.
    off : float
        The offset.

    Returns
    -------
    y : numpy.ndarray
        The model at ``x``.
    """
    return amp * np.exp(-0.5 * ((x - mu) / sig) ** 2) + off


def _cross_profile(sv, dv, vv, s_lo, s_hi, half):
    """Fit a Gaussian to the cross profile over the segment's extent.

    The profile is the median per 0.5 px of perpendicular distance (robust to stars on the trail).

    Parameters
    ----------
    sv, dv, vv : numpy.ndarray
        The strip pixels' offsets along and across the line (px) and their values.
    s_lo, s_hi : float
        The segment's extent along the line, px.
    half : float
        The strip's half-width, px.

    Returns
    -------
    profile : tuple of float or None
        The centre offset ``mu`` and ``sigma`` (px); None when the fit fails or is implausible.
    """
    inseg = (sv >= s_lo) & (sv <= s_hi)
    if inseg.sum() < 10:
        return None
    db = np.round(dv[inseg] * 2).astype(int)
    vb = vv[inseg]
    ub = np.unique(db)
    medp = np.array([np.median(vb[db == u]) for u in ub])
    dpos = ub / 2.0
    if len(dpos) < 5 or not medp.max() > 0:
        return None
    from scipy.optimize import curve_fit

    try:
        popt, _ = curve_fit(_gauss, dpos, medp, p0=[medp.max(), 0.0, 1.5, 0.0], maxfev=2000)
        mu, sigma = float(popt[1]), abs(float(popt[2]))
    except (RuntimeError, ValueError):
        return None
    if not (0.3 <= sigma <= half) or abs(mu) > half / 2:
        return None
    return mu, sigma


def _along_profile(sv, dv, vv, rv, mu, sigma):
    """Measure the flux per px of length in 1 px bins along the line.

    Per bin a three-parameter fit ``v = A g + c + b d``, with ``g`` the fitted unit-area cross profile over
    the bin's unmasked pixels: the local offset and cross-gradient absorb a background the mesh got wrong
    under the trail (crowded all-sky frames, the halo of a bright star the trail passes).

    Parameters
    ----------
    sv, dv, vv, rv : numpy.ndarray
        The strip pixels' offsets along and across the line (px), values and noise.
    mu, sigma : float
        The cross profile's centre offset and sigma, px.

    Returns
    -------
    prof : numpy.ndarray
        ``A`` per bin; NaN for a bin not measured (under 80 % of the profile's weight unmasked, ill
        conditioned, or a residual scatter of a star).
    centers : numpy.ndarray
        The bins' centres along the line, px.
    full : float
        The integral of ``g**2`` across the whole strip.
    """
    g = np.exp(-0.5 * ((dv - mu) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)
    b0 = math.floor(sv.min())
    bins = np.floor(sv - b0).astype(int)
    nb = int(bins.max()) + 1

    def bc(w):
        """Sum ``w`` per 1 px bin along the line.

        Parameters
        ----------
        w : numpy.ndarray
            A value per strip pixel.

        Returns
        -------
        sums : numpy.ndarray
            The sum of each bin.
        """
        return np.bincount(bins, weights=w, minlength=nb)

    dd_ = dv - mu
    cnt = np.bincount(bins, minlength=nb).astype(float)
    M = np.empty((nb, 3, 3))
    M[:, 0, 0] = bc(g * g)
    M[:, 0, 1] = M[:, 1, 0] = bc(g)
    M[:, 0, 2] = M[:, 2, 0] = bc(g * dd_)
    M[:, 1, 1] = cnt
    M[:, 1, 2] = M[:, 2, 1] = bc(dd_)
    M[:, 2, 2] = bc(dd_ * dd_)
    rhs = np.stack([bc(vv * g), bc(vv), bc(vv * dd_)], axis=1)
    gg = M[:, 0, 0]
    full = 1.0 / (2.0 * np.sqrt(np.pi) * sigma)  # integral of g^2 across the whole strip
    det = np.linalg.det(M)
    # a bin is measured when its unmasked pixels hold most of the profile's weight and the
    # system is well conditioned (pixels on the core and on both wings)
    ok = (gg >= 0.8 * full) & (cnt >= 7) & (np.abs(det) > 1e-9 * np.maximum(cnt, 1) ** 2 * np.maximum(gg, 1e-30))
    prof = np.full(nb, np.nan)
    if ok.any():
        sol = np.linalg.solve(M[ok], rhs[ok][:, :, None])[:, :, 0]
        # residual scatter of the fit against the expected noise: a bin on a star (a shape the
        # model cannot follow) is not measured
        ss = bc(vv * vv)[ok] - np.sum(sol * rhs[ok], axis=1)
        res_rms = np.sqrt(np.clip(ss, 0, None) / np.maximum(cnt[ok] - 3, 1))
        noise = np.sqrt(bc(rv * rv)[ok] / cnt[ok])
        good = res_rms <= 3.0 * noise
        prof[np.flatnonzero(ok)[good]] = sol[good, 0]
    centers = b0 + np.arange(nb) + 0.5
    return prof, centers, full


def _walk_to_end(ps, known, k0, step, half_level):
    """Walk from bin ``k0`` in the direction ``step`` to the trail's end.

    ``last`` is the outermost bin of the trail so far; after a dip, the trail only continues when at least
    5 measured bins in a row are above half again (a star beyond the end gives a shorter bump); 10 measured
    bins in a row below half end it. Bins without data are stepped over.

    Parameters
    ----------
    ps : numpy.ndarray
        The smoothed along-line profile.
    known : numpy.ndarray
        True for the measured bins.
    k0 : int
        The starting bin.
    step : int
        -1 or +1: the direction along the line.
    half_level : float
        Half the plateau level.

    Returns
    -------
    last : int
        The outermost bin of the trail.
    first_below : int or None
        The first measured bin below half the plateau level beyond ``last``; None when there is none.
    """
    nb = len(ps)
    last, k, below, first_below, run, run_start = k0, k0, 0, None, 0, None
    while 0 <= k + step < nb:
        k += step
        if not known[k]:
            continue
        if ps[k] >= half_level:
            if first_below is None:
                last = k
            else:
                run += 1
                run_start = k if run_start is None else run_start
                if run >= 5:
                    last, below, first_below, run, run_start = k, 0, None, 0, None
        else:
            if first_below is not None and run:
                run, run_start = 0, None  # the bump was too short: still in the dip
            below += 1
            first_below = k if first_below is None else first_below
            if below >= 10:  # a trail crossing a crowded patch can dip for a few bins
                break
    return last, first_below


def _trail_ends(prof, centers, core, level):
    """Find the trail's ends: where the along-line profile falls below half the plateau level.

    The walk starts at the core's centre; each end is the interpolated half-level crossing (unbiased for a
    PSF-blurred end).

    Parameters
    ----------
    prof : numpy.ndarray
        The along-line profile per bin (NaN where not measured).
    centers : numpy.ndarray
        The bins' centres along the line, px.
    core : numpy.ndarray
        True for the measured bins within the segment's extent.
    level : float
        The plateau level.

    Returns
    -------
    ends : tuple of float or None
        ``s_start``, ``s_end`` along the line (px); None when no core bin is above half the level.
    """
    from scipy.ndimage import median_filter

    nb = len(prof)
    known = np.isfinite(prof)
    ps = np.full(nb, np.nan)
    # a 7-bin running median over the measured bins: keeps the (blurred) ends where they are,
    # removes the bumps of faint unmasked stars and the dips of noise
    ps[known] = median_filter(prof[known], size=7, mode="nearest")
    half_level = 0.5 * level
    icore = np.flatnonzero(core & known)
    if icore.size == 0:
        return None
    mid = icore[len(icore) // 2]
    cand = icore[ps[icore] >= half_level]
    if cand.size == 0:
        return None
    k0 = cand[np.argmin(np.abs(cand - mid))]
    lo, lo_out = _walk_to_end(ps, known, k0, -1, half_level)
    hi, hi_out = _walk_to_end(ps, known, k0, +1, half_level)
    if lo_out is not None and lo_out == lo - 1:
        f = (half_level - ps[lo_out]) / max(ps[lo] - ps[lo_out], 1e-12)
        s_start = centers[lo_out] + min(max(f, 0.0), 1.0)
    else:
        s_start = centers[lo] - 0.5
    if hi_out is not None and hi_out == hi + 1:
        f = (ps[hi] - half_level) / max(ps[hi] - ps[hi_out], 1e-12)
        s_end = centers[hi] + min(max(f, 0.0), 1.0)
    else:
        s_end = centers[hi] + 0.5
    return s_start, s_end


def _strip_measure(sub, rms_map, bad, cx, cy, ux, uy, s_lo, s_hi, half):
    """Measure a trail along the line through (cx, cy) with direction (ux, uy) in a strip of
    half-width ``half`` across the whole image; the core is ``s_lo..s_hi`` along the line.
    Returns a dict (ends ``s_start``, ``s_end``, cross-profile ``mu``, ``sigma``, ``level``, S/N and
    the strip's pixel arrays) or None."""
    pixels = _strip_pixels(sub, rms_map, bad, cx, cy, ux, uy, s_lo, s_hi, half)
    if pixels is None:
        return None
    sv, dv, vv, rv = pixels
    cross = _cross_profile(sv, dv, vv, s_lo, s_hi, half)
    if cross is None:
        return None
    mu, sigma = cross
    prof, centers, full = _along_profile(sv, dv, vv, rv, mu, sigma)
    core = (centers >= s_lo) & (centers <= s_hi) & np.isfinite(prof)
    if core.sum() < 3:
        return None
    level = float(np.median(prof[core]))
    if level <= 0:
        return None
    ends = _trail_ends(prof, centers, core, level)
    if ends is None:
        return None
    s_start, s_end = ends
    plateau = (sv >= s_start) & (sv <= s_end)
    npx = max(float(s_end - s_start), 1.0)
    # S/N of the whole trail: the amplitude estimate's noise per bin is rms / sqrt(sum g^2)
    rms_med = float(np.median(rv[plateau])) if plateau.any() else np.inf
    snr = float(level * np.sqrt(npx * full) / rms_med) if rms_med > 0 else 0.0
    return {
        "s_start": float(s_start),
        "s_end": float(s_end),
        "mu": mu,
        "sigma": sigma,
        "level": level,
        "snr": snr,
        "cx": cx,
        "cy": cy,
        "ux": ux,
        "uy": uy,
        "sv": sv,
        "dv": dv,
        "vv": vv,
    }


def _star_mask(snr_img, bad, settings: StreakSettings):
    """Mask the compact sources above 5 sigma with an ellipse of 3x their size (at least 3 px).

    Not deblended, so a bright trail stays one elongated object (and is not masked); masking the stars keeps
    a faint trail from merging with the stars it crosses into one round blob.

    Parameters
    ----------
    snr_img : numpy.ndarray
        The S/N image (background-subtracted / local rms).
    bad : numpy.ndarray
        True for pixels to leave out.
    settings : StreakSettings
        The settings (``thresh``, ``min_elongation``, ``min_segment_px``).

    Returns
    -------
    star_mask : numpy.ndarray
        True on the stars.
    """
    import sep

    stars = sep.extract(snr_img, max(5.0, settings.thresh), err=1.0, mask=bad, minarea=5, deblend_cont=1.0)
    star_mask = np.zeros(bad.shape, dtype=bool)
    if len(stars):
        a1 = np.asarray(stars["a"], float)
        b1 = np.maximum(np.asarray(stars["b"], float), 0.3)
        c = (a1 / b1 < 0.5 * settings.min_elongation) | (np.sqrt(12.0) * a1 < settings.min_segment_px)
        if c.any():
            sep.mask_ellipse(
                star_mask,
                np.asarray(stars["x"][c], float),
                np.asarray(stars["y"][c], float),
                np.maximum(a1[c], 1.0),
                np.maximum(b1[c], 1.0),
                np.asarray(stars["theta"][c], float),
                r=3.0,
            )
    return star_mask


def _segments(snr_img, bad, settings: StreakSettings):
    """Segment the star-masked S/N image at the low threshold, with no deblending.

    Parameters
    ----------
    snr_img : numpy.ndarray
        The S/N image (background-subtracted / local rms).
    bad : numpy.ndarray
        True for pixels to leave out.
    settings : StreakSettings
        The settings.

    Returns
    -------
    segments : tuple or None
        sep's objects, its segmentation map and the star mask; None when sep fails.
    """
    import sep

    old = sep.get_extract_pixstack()
    sep.set_extract_pixstack(max(old, 3_000_000))
    try:
        star_mask = _star_mask(snr_img, bad, settings)
        objs, seg = sep.extract(
            snr_img,
            settings.thresh,
            err=1.0,
            mask=bad | star_mask,
            minarea=8,
            deblend_cont=1.0,
            segmentation_map=True,
            clean=False,
        )
    except Exception:  # sep overflows on pathological frames (a lit dome): no streak measurable
        return None
    finally:
        sep.set_extract_pixstack(old)
    return objs, seg, star_mask


def _candidates(objs, settings: StreakSettings) -> np.ndarray:
    """Pick the segments that may be (part of) a trail.

    Elongated segments; and long ones that are less so: a trail that merged with the stars it crosses (a
    crowded fisheye frame) is a long blob whose second moments say a/b of 2-4. :func:`_measure` finds the
    line in it, and the strip's width, straightness and S/N decide.

    Parameters
    ----------
    objs : numpy.ndarray
        sep's objects.
    settings : StreakSettings
        The settings.

    Returns
    -------
    cand : numpy.ndarray
        The candidates' indices into ``objs``.
    """
    a = np.asarray(objs["a"], float)
    b = np.maximum(np.asarray(objs["b"], float), 0.3)
    length = np.sqrt(12.0) * a
    return np.flatnonzero(
        ((length >= settings.min_segment_px) & (a / b >= settings.min_elongation))
        | ((length >= 0.5 * settings.min_length_px) & (a / b >= 2.0))
    )


def _collinear_pairs(th, cx, cy, settings: StreakSettings) -> list[tuple[int, int]]:
    """Pair the segments that lie on one line (a trail broken by noise or a gap).

    Parameters
    ----------
    th : numpy.ndarray
        The segments' angles, rad from +x towards +y.
    cx, cy : numpy.ndarray
        Their centres, px.
    settings : StreakSettings
        The settings (``merge_angle_deg``, ``merge_dist_px``).

    Returns
    -------
    pairs : list of (int, int)
        Indices of collinear segments.
    """
    pairs = []
    tol = math.radians(settings.merge_angle_deg)
    for i in range(len(th)):
        for j in range(i + 1, len(th)):
            dth = abs((th[i] - th[j] + math.pi / 2) % math.pi - math.pi / 2)
            if dth > tol:
                continue
            di = abs(-(cx[j] - cx[i]) * math.sin(th[i]) + (cy[j] - cy[i]) * math.cos(th[i]))
            dj = abs(-(cx[i] - cx[j]) * math.sin(th[j]) + (cy[i] - cy[j]) * math.cos(th[j]))
            if di <= settings.merge_dist_px and dj <= settings.merge_dist_px:
                pairs.append((i, j))
    return pairs


def side_contrast(data, bad, x1, y1, x2, y2, width, pedestal: float = 0.0, depth_px: float = 12.0) -> float:
    """How differently bright the two sides of a line are: ~0 for a trail on the sky, large for an edge.

    The sides are strips along the line's whole length (its ends' 10 % left out), from ``max(4, 2 width)`` px
    off the line to ``depth_px`` beyond; each side's level is the median of its pixels less ``pedestal``.

    Parameters
    ----------
    data : numpy.ndarray
        The image as taken (not background-subtracted: a fine background mesh follows a structure), ADU.
    bad : numpy.ndarray of bool
        Pixels left out.
    x1, y1, x2, y2 : float
        The line's ends, px.
    width : float
        Its width (FWHM), px.
    pedestal : float, default 0
        The image's level without light, ADU (an all-sky camera's dark corners).
    depth_px : float, default 12
        The strips' depth, px.

    Returns
    -------
    float
        ``|L - R| / max(L, R)`` clipped to 1 (a side below the pedestal: the edge of a black body); 1 when a
        side's pixels in the image are mostly ``bad`` (the edge of a masked structure); 0 when a side lies off
        the image or neither side is above the pedestal (nothing to compare).
    """
    ny, nx = data.shape
    length = math.hypot(x2 - x1, y2 - y1)
    if length <= 0:
        return 0.0
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    gap = max(4.0, 2.0 * float(width))
    reach = gap + depth_px
    x0, xa = int(max(0, math.floor(min(x1, x2) - reach))), int(min(nx, math.ceil(max(x1, x2) + reach + 1)))
    y0, ya = int(max(0, math.floor(min(y1, y2) - reach))), int(min(ny, math.ceil(max(y1, y2) + reach + 1)))
    yy, xx = np.mgrid[y0:ya, x0:xa]
    along = (xx - x1) * ux + (yy - y1) * uy
    across = -(xx - x1) * uy + (yy - y1) * ux
    span = (along >= 0.1 * length) & (along <= 0.9 * length)
    good = ~bad[y0:ya, x0:xa]
    box = data[y0:ya, x0:xa] - pedestal
    sides = [span & (across <= -gap) & (across >= -reach), span & (across >= gap) & (across <= reach)]
    if any(side.any() and (side & good).sum() < 0.25 * side.sum() for side in sides):
        return 1.0  # one side is mostly masked: the edge of a masked structure (the frame's own edge is not)
    left, right = box[sides[0] & good], box[sides[1] & good]
    if not left.size or not right.size:
        return 0.0
    a, b = float(np.median(left)), float(np.median(right))
    top = max(a, b)
    return min(abs(a - b) / top, 1.0) if top > 0 else 0.0  # a side below the pedestal: one edge of a black body


def _measure_groups(objs, seg, cand, groups, sub, rms, bad, settings: StreakSettings, data=None,
                    pedestal: float = 0.0) -> list[dict]:  # fmt: skip
    """Measure each group of joined segments as one trail, keeping those that pass the cuts.

    Parameters
    ----------
    objs : numpy.ndarray
        sep's objects.
    seg : numpy.ndarray
        sep's segmentation map.
    cand : numpy.ndarray
        The candidate segments' indices into ``objs``.
    groups : list of int
        The group of each candidate.
    sub, rms, bad : numpy.ndarray
        The background-subtracted image, its noise and the pixels to leave out (stars masked).
    settings : StreakSettings
        The settings.
    data : numpy.ndarray, optional
        The image as taken, for :func:`side_contrast` (not measured without it).
    pedestal : float, default 0
        Its level without light, ADU.

    Returns
    -------
    rows : list of dict
        The measured trails (:func:`_measure`'s, with ``n_segments``).
    """
    rows = []
    for g in sorted(set(groups)):
        members = cand[[k for k in range(len(cand)) if groups[k] == g]]
        ids = members + 1  # segmentation labels are 1-based object indices
        # only inside the members' bounding box (not the whole frame)
        bx0, bx1 = int(objs["xmin"][members].min()), int(objs["xmax"][members].max()) + 1
        by0, by1 = int(objs["ymin"][members].min()), int(objs["ymax"][members].max()) + 1
        ys, xs = np.nonzero(np.isin(seg[by0:by1, bx0:bx1], ids))
        ys, xs = ys + by0, xs + bx0
        if ys.size < 10:
            continue
        m = _measure(sub, rms, bad, ys, xs, settings)
        if m is None:
            continue
        if (
            m["length"] < settings.min_length_px
            or not (m["width"] <= settings.max_width_px)
            or m["wiggle"] > settings.max_wiggle_px
            or m["snr"] < settings.min_snr
        ):
            continue
        if data is not None and settings.max_side_contrast < 1:
            sc = side_contrast(data, bad, m["x1"], m["y1"], m["x2"], m["y2"], m["width"], pedestal)
            if sc > settings.max_side_contrast:  # the edge of a structure, not a trail across the sky
                continue
        m["n_segments"] = len(members)
        rows.append(m)
    return rows


def _drop_duplicates(rows: list[dict], settings: StreakSettings) -> list[dict]:
    """Keep the longer of one trail measured from two candidate groups (split by a bright star).

    Parameters
    ----------
    rows : list of dict
        The measured trails; sorted longest first in place.
    settings : StreakSettings
        The settings (``merge_angle_deg``, ``merge_dist_px``).

    Returns
    -------
    kept : list of dict
        The trails kept, each with the segments of the duplicates it absorbed.
    """
    rows.sort(key=lambda r: -r["length"])
    kept = []
    for r in rows:
        dup = False
        for k in kept:
            dth = abs((r["angle_deg"] - k["angle_deg"] + 90.0) % 180.0 - 90.0)
            mx, my = (r["x1"] + r["x2"]) / 2, (r["y1"] + r["y2"]) / 2
            dist = _segment_distance(
                [mx], [my], Table(rows=[[k["x1"], k["y1"], k["x2"], k["y2"]]], names=("x1", "y1", "x2", "y2"))
            )[0, 0]
            if dth <= 2 * settings.merge_angle_deg and dist <= settings.merge_dist_px + k["width"]:
                k["n_segments"] += r["n_segments"]
                dup = True
                break
        if not dup:
            kept.append(r)
    return kept


def _streak_table(rows: list[dict], settings: StreakSettings) -> Table:
    """Score the trails and tabulate those kept, longest first.

    A trail is dropped when it scores below ``min_score`` or lies along a pixel axis (the sensor's).

    Parameters
    ----------
    rows : list of dict
        The measured trails; each gets its ``score``.
    settings : StreakSettings
        The settings.

    Returns
    -------
    streaks : Table
        The :data:`STREAK_COLUMNS` of each trail kept.
    """
    for r in rows:
        r["score"] = float(streak_score(r["snr"], r["length"], r["width"], r["wiggle"], settings))
    rows = [
        r
        for r in rows
        if r["score"] >= settings.min_score
        and (r["angle_deg"] + 45.0) % 90.0 - 45.0 not in _axis_band(settings.axis_tolerance_deg)
    ]
    if not rows:
        return _empty()
    t = Table(rows=[[r[c] for c in STREAK_COLUMNS] for r in rows], names=STREAK_COLUMNS)
    t["n_segments"] = t["n_segments"].astype(np.int64)
    t.sort("length", reverse=True)
    return t


def detect_streaks(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    settings: StreakSettings | None = None,
    pedestal: float = 0.0,
    **overrides,
) -> Table:
    """Find straight trails (satellites, aircraft, meteors) on a frame.

    Parameters
    ----------
    image : 2-D array
        The frame (ADU; NaN where there is no data).
    mask : bool array, optional
        True for pixels to ignore (outside an all-sky lens circle, obstructions).
    settings : StreakSettings, optional
        Defaults when omitted; keyword ``overrides`` change single settings.
    pedestal : float, default 0
        The image's level without light, ADU: the sides of a detection are compared above it
        (``max_side_contrast``).
    **overrides
        Single settings of :class:`StreakSettings` that replace those of ``settings``.

    Returns
    -------
    Table
        One row per trail: endpoints ``x1``, ``y1``, ``x2``, ``y2`` (px, 0-based, ``x1 <= x2``
        side of the direction ``angle_deg``), ``length`` (px), ``width`` (FWHM, px),
        ``brightness`` (ADU per px of length, background-subtracted), ``angle_deg`` (of the
        direction from 1 to 2, from +x towards +y), ``snr`` (along the whole trail),
        ``n_segments`` (segments joined), ``wiggle`` (px) and ``score`` (:func:`streak_score`). Empty when
        there is none.

    Raises
    ------
    ValueError
        The image is not 2-D.
    """
    import sep

    if settings is None:
        settings = StreakSettings(**overrides)
    elif overrides:
        settings = StreakSettings(**{**settings.to_dict(), **overrides})
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    if bad.all():
        return _empty()
    if bad.any():
        data = np.ascontiguousarray(np.where(bad, float(np.median(data[~bad])), data))
    else:
        data = np.ascontiguousarray(data)
    bkg = sep.Background(data, mask=bad, bw=settings.mesh_px, bh=settings.mesh_px, fw=3, fh=3)
    sub = data - bkg.back()
    rms = noise_map(data, bad, settings.mesh_px)
    sub[bad] = 0.0
    # Detection runs on the S/N image (background-subtracted / local rms) with a scalar noise of 1:
    # a threshold in local sigmas (an all-sky frame's noise varies a lot) on sep's fast path.
    snr_img = np.ascontiguousarray(sub / np.where(rms > 0, rms, np.inf))
    segments = _segments(snr_img, bad, settings)
    if segments is None:
        return _empty()
    objs, seg, star_mask = segments
    if len(objs) == 0:
        return _empty()
    cand = _candidates(objs, settings)
    if cand.size == 0:
        return _empty()
    th = np.asarray(objs["theta"], float)[cand]  # rad, from +x towards +y
    cx = np.asarray(objs["x"], float)[cand]
    cy = np.asarray(objs["y"], float)[cand]
    groups = union_find(len(cand), _collinear_pairs(th, cx, cy, settings))
    rows = _measure_groups(objs, seg, cand, groups, sub, rms, bad | star_mask, settings, data, pedestal)
    if not rows:
        return _empty()
    return _streak_table(_drop_duplicates(rows, settings), settings)


def _segment_distance(x, y, streaks):
    x = np.asarray(x, float)[:, None]
    y = np.asarray(y, float)[:, None]
    x1 = np.asarray(streaks["x1"], float)[None, :]
    y1 = np.asarray(streaks["y1"], float)[None, :]
    x2 = np.asarray(streaks["x2"], float)[None, :]
    y2 = np.asarray(streaks["y2"], float)[None, :]
    vx, vy = x2 - x1, y2 - y1
    L2 = np.maximum(vx**2 + vy**2, 1e-12)
    t = np.clip(((x - x1) * vx + (y - y1) * vy) / L2, 0, 1)
    return np.hypot(x - (x1 + t * vx), y - (y1 + t * vy))


def same_pixels(a, b, tol_px: float) -> bool:
    """Tell whether two trails lie on the same pixels.

    They do when both ends of each lie within ``tol_px`` of the other's segment, in either direction.

    Parameters
    ----------
    a, b : mapping
        The trails (``x1``, ``y1``, ``x2``, ``y2``, px).
    tol_px : float
        The tolerance, px.

    Returns
    -------
    same : bool
        Whether they lie on the same pixels.
    """
    ta = Table(rows=[[a["x1"], a["y1"], a["x2"], a["y2"]]], names=("x1", "y1", "x2", "y2"))
    tb = Table(rows=[[b["x1"], b["y1"], b["x2"], b["y2"]]], names=("x1", "y1", "x2", "y2"))
    da = _segment_distance([a["x1"], a["x2"]], [a["y1"], a["y2"]], tb)[:, 0]
    db = _segment_distance([b["x1"], b["x2"]], [b["y1"], b["y2"]], ta)[:, 0]
    return bool(np.all(da <= tol_px) and np.all(db <= tol_px))


def same_pivot(a, b, tol_px: float, max_turn_deg: float = 20.0, max_length_ratio: float = 2.0) -> bool:
    """Tell whether two detections are one structure: turned about a fixed foot, or found again longer or shorter.

    A telescope's lit tube slews about its foot; a building's edge stays and is found a little longer or shorter
    from frame to frame. Two detections are one structure when their directions differ by at most
    ``max_turn_deg``, their lengths by at most ``max_length_ratio``, and

    * they share a foot: an end of each within ``tol_px`` of the other's, both running away from it on the same
      side (a satellite continuing into the next frame runs on, to the other side); or
    * one runs on past the other's foot (along a cable): an end of one within ``tol_px`` of the other's segment,
      on the same side, turned by at least 1 degree (a satellite of a train on the same track is not turned); or
    * the shorter lies on the longer: both its ends within ``tol_px`` of the longer's segment.

    Parameters
    ----------
    a, b : mapping
        The detections (``x1``, ``y1``, ``x2``, ``y2``, px).
    tol_px : float
        How near the shared foot (or the longer segment) must be, px.
    max_turn_deg : float, default 20
        The largest turn between them, deg (0: never).
    max_length_ratio : float, default 2
        The largest ratio of their lengths.

    Returns
    -------
    same : bool
        Whether they are one structure.
    """
    if max_turn_deg <= 0:
        return False
    pa_ = np.array([[a["x1"], a["y1"]], [a["x2"], a["y2"]]], float)
    pb_ = np.array([[b["x1"], b["y1"]], [b["x2"], b["y2"]]], float)
    la, lb = float(np.hypot(*(pa_[1] - pa_[0]))), float(np.hypot(*(pb_[1] - pb_[0])))
    if min(la, lb) <= 0 or max(la, lb) / min(la, lb) > max_length_ratio:
        return False
    ua, ub = (pa_[1] - pa_[0]) / la, (pb_[1] - pb_[0]) / lb
    turn = math.degrees(math.acos(min(1.0, abs(float(ua @ ub)))))
    if turn > max_turn_deg:
        return False
    ta = Table(rows=[[*pa_[0], *pa_[1]]], names=("x1", "y1", "x2", "y2"))
    tb = Table(rows=[[*pb_[0], *pb_[1]]], names=("x1", "y1", "x2", "y2"))
    on_b = _segment_distance(pa_[:, 0], pa_[:, 1], tb)[:, 0]  # a's ends to b's segment
    on_a = _segment_distance(pb_[:, 0], pb_[:, 1], ta)[:, 0]
    short_on_long = on_b if la <= lb else on_a
    if np.all(short_on_long <= tol_px):
        return True
    for i in range(2):  # a's end i as the foot
        for j in range(2):  # b's end j
            foot = pa_[i]
            away_a, away_b = pa_[1 - i] - foot, pb_[1 - j] - foot
            same_side = float(away_a @ away_b) > 0
            if not same_side:
                continue
            if np.hypot(*(pb_[j] - foot)) <= tol_px:
                return True
    for ends, seg_pts, dist, turned in ((pa_, pb_, on_b, turn >= 1.0), (pb_, pa_, on_a, turn >= 1.0)):
        for i in range(2):  # an end of one on the other's segment, the one running on
            if not turned or dist[i] > tol_px:
                continue
            foot = ends[i]
            far = seg_pts[int(np.argmax(np.hypot(*(seg_pts - foot).T)))]
            if float((ends[1 - i] - foot) @ (far - foot)) > 0:
                return True
    return False


def flag_on_streaks(x, y, streaks: Table, *, margin_px: float = 2.0) -> np.ndarray:
    """Flag the positions within ``width / 2 + margin_px`` (px) of any trail's segment.

    Parameters
    ----------
    x, y : float or array_like
        The positions, px.
    streaks : Table
        The trails (``x1``, ``y1``, ``x2``, ``y2``, ``width``; a NaN width counts as 3 px).
    margin_px : float
        The margin beyond half the width, px.

    Returns
    -------
    on : numpy.ndarray
        True for the positions on a trail.
    """
    x = np.atleast_1d(np.asarray(x, float))
    if len(streaks) == 0 or x.size == 0:
        return np.zeros(x.size, bool)
    d = _segment_distance(x, np.atleast_1d(y), streaks)
    reach = np.nan_to_num(np.asarray(streaks["width"], float), nan=3.0)[None, :] / 2.0 + margin_px
    return np.any(d <= reach, axis=1)


def streak_mask(shape, streaks: Table, *, margin_px: float = 2.0) -> np.ndarray:
    """Make a boolean image, True on the trails (``width / 2 + margin_px`` around each segment).

    Parameters
    ----------
    shape : tuple of int
        The image's shape, ``(ny, nx)``.
    streaks : Table
        The trails (``x1``, ``y1``, ``x2``, ``y2``, ``width``; a NaN width counts as 3 px).
    margin_px : float
        The margin beyond half the width, px.

    Returns
    -------
    mask : numpy.ndarray
        True on the trails.
    """
    ny, nx = int(shape[0]), int(shape[1])
    out = np.zeros((ny, nx), bool)
    for r in streaks:
        reach = float(np.nan_to_num(r["width"], nan=3.0)) / 2.0 + margin_px
        x0 = int(max(0, math.floor(min(r["x1"], r["x2"]) - reach)))
        x1 = int(min(nx, math.ceil(max(r["x1"], r["x2"]) + reach) + 1))
        y0 = int(max(0, math.floor(min(r["y1"], r["y2"]) - reach)))
        y1 = int(min(ny, math.ceil(max(r["y1"], r["y2"]) + reach) + 1))
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = _segment_distance(xx.ravel(), yy.ravel(), Table(rows=[r]))[:, 0].reshape(yy.shape)
        out[y0:y1, x0:x1] |= d <= reach
    return out
