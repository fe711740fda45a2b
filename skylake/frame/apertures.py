"""Circular apertures and their sky annulus in one visit per object: sep's sums, computed once.

:func:`skylake.frame.extract.annulus_photometry` measures every object in three circular apertures and takes a
local sky from an annulus around it. Done with sep, that is four walks over each object's pixels (one
``sum_circle`` per radius, one ``sum_circann``), the largest box walked twice. :func:`circle_sums` walks each
object's pixels once (compiled with numba) and returns what those four calls return, to the bit: the same
sums in the same order, with sep's rules (``src/aperture.i`` of sep 1.4):

- a pixel whose centre lies within r - 0.7072 of the object is wholly in the circle, one beyond r + 0.7072 wholly
  out, and in between its exact overlap with the circle is taken (sep's ``circoverlap``, written out here
  without its recursion, the terms added in the same order);
- a pixel is left out where the mask is set or where the segmentation map holds another object; with a mask
  the sum is then scaled by total area / unmasked area (sep scales only when a mask is given);
- the annulus is whole pixels whose centres lie strictly between its radii (sep's ``subpix=1``), sky only
  (no object's pixel, none masked);
- a box clipped by the image's edge sets sep's ``APER_TRUNC`` flag.

On a 4096x4096 frame of ~8,000 objects (radii 3, 5, 8 px, annulus 10-15 px) the one visit takes about half the
four calls' time (``benchmarks/ingest.py`` measures the whole kernel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from skylake.jit_cache import on_disk

__all__ = ["APER_TRUNC", "CircleSums", "circle_sums"]

#: sep's flag of an aperture whose box the image's edge clips (SEP_APER_TRUNC).
APER_TRUNC = 0x0010
#: sep's margin around a radius inside which a pixel may straddle the circle: half a pixel's diagonal.
_STRADDLE = 0.7072


@dataclass
class CircleSums:
    """What sep's ``sum_circle`` (each radius) and ``sum_circann`` return for a frame's objects.

    Attributes
    ----------
    flux, flux_err : numpy.ndarray
        ``(radii, objects)``: each aperture's sum and its error (the per-pixel variance summed, plus the
        Poisson term of a positive sum), as ``sep.sum_circle(..., subpix=0)``.
    area : numpy.ndarray
        ``(radii, objects)``: each aperture's area on the image [pixels], as ``sep.sum_circle`` of an image of
        ones with the same mask gives it (the edge's clip; with a mask, the total scaled as sep scales it).
    sky_sum, sky_pixels : numpy.ndarray
        The annulus' sum of sky pixels and their number.
    flags : numpy.ndarray
        :data:`APER_TRUNC` where an aperture's or the annulus' box is clipped by the edge.
    """

    flux: np.ndarray
    flux_err: np.ndarray
    area: np.ndarray
    sky_sum: np.ndarray
    sky_pixels: np.ndarray
    flags: np.ndarray


def circle_sums(data, x, y, radii, annulus, err: float, gain: float, mask=None, segmap=None) -> CircleSums:
    """Sum circular apertures and a sky annulus around each object, in one visit of its pixels.

    Parameters
    ----------
    data : numpy.ndarray
        The image (read as float32, as sep reads it).
    x, y : numpy.ndarray
        The objects' positions, px (0-based, pixel centres at integers).
    radii : sequence of float
        The apertures' radii, px.
    annulus : tuple of float
        The sky annulus' inner and outer radius, px.
    err : float
        The background rms per pixel [ADU].
    gain : float
        The gain [e-/ADU], for the Poisson term of a positive sum (none when <= 0).
    mask : numpy.ndarray, optional
        True for pixels to leave out (the sums scaled for them, as sep does).
    segmap : numpy.ndarray, optional
        The segmentation map of sep: object ``k`` (0-based) owns the pixels holding ``k + 1``; the others' pixels are
        left out of its apertures, every object's out of the annulus.

    Returns
    -------
    CircleSums
        The sums, as sep's four calls give them.

    Raises
    ------
    ValueError
        A radius not positive, or an annulus whose outer radius is below its inner one.

    Examples
    --------
    >>> sums = circle_sums(np.ones((40, 40), np.float32), np.array([20.0]), np.array([20.0]), [3.0], (8.0, 12.0),
    ...                    err=1.0, gain=0.0)
    >>> round(float(sums.flux[0, 0]), 6), float(sums.sky_pixels[0]), int(sums.flags[0])
    (28.274334, 240.0, 0)
    """
    radii = np.asarray(radii, np.float64)
    rin, rout = (float(r) for r in annulus)
    if not (radii > 0).all() or not 0 <= rin <= rout:
        raise ValueError(f"radii must be > 0 and the annulus 0 <= inner <= outer: {radii.tolist()}, {annulus}")
    data = np.ascontiguousarray(data, np.float32)
    x, y = np.ascontiguousarray(x, np.float64), np.ascontiguousarray(y, np.float64)
    seg = np.ascontiguousarray(segmap, np.int32) if segmap is not None else np.zeros((1, 1), np.int32)
    bad = np.ascontiguousarray(mask, bool) if mask is not None else np.zeros((1, 1), bool)
    varpix = float(np.float32(err * err))  # sep holds the variance per pixel as a float
    tv, sig, total, masked, ones, bad_area, sky_sum, sky_n, flags = _walk(
        data, seg, segmap is not None, bad, mask is not None, x, y, radii, rin, rout, varpix
    )
    area = total
    if mask is not None:  # sep rescales a masked sum to the whole area
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = total / (total - masked)
            tv, sig = tv * scale, sig * scale
            area = ones * (total / (total - bad_area))
    if gain > 0:
        sig = np.where(tv > 0, sig + tv / gain, sig)
    return CircleSums(tv, np.sqrt(sig), area, sky_sum, sky_n, flags)


@numba.njit(inline="always")
def _arc(x1, y1, x2, y2, r):
    """Area of the circular segment between two points of the circle (sep's ``area_arc``)."""
    a = math.sqrt((x2 - x1) * (x2 - x1) + (y2 - y1) * (y2 - y1))
    theta = 2.0 * math.asin(0.5 * a / r)
    return 0.5 * r * r * (theta - math.sin(theta))


@numba.njit(inline="always")
def _triangle(x1, y1, x2, y2, x3, y3):
    return 0.5 * abs(x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))


@on_disk
@numba.njit
def _quadrant(xmin, ymin, xmax, ymax, r):
    """Overlap of a circle at the origin and a rectangle in its first quadrant (sep's ``circoverlap_core``)."""
    xmin2, ymin2, r2 = xmin * xmin, ymin * ymin, r * r
    if xmin2 + ymin2 > r2:
        return 0.0
    xmax2, ymax2 = xmax * xmax, ymax * ymax
    if xmax2 + ymax2 < r2:
        return (xmax - xmin) * (ymax - ymin)
    a, b = xmax2 + ymin2, xmin2 + ymax2  # two corners' distances, squared
    if a < r2 and b < r2:
        x1, y1, x2, y2 = math.sqrt(r2 - ymax2), ymax, xmax, math.sqrt(r2 - xmax2)
        return (xmax - xmin) * (ymax - ymin) - _triangle(x1, y1, x2, y2, xmax, ymax) + _arc(x1, y1, x2, y2, r)
    if a < r2:
        x1, y1, x2, y2 = xmin, math.sqrt(r2 - xmin2), xmax, math.sqrt(r2 - xmax2)
        return _arc(x1, y1, x2, y2, r) + _triangle(x1, y1, x1, ymin, xmax, ymin) + _triangle(x1, y1, x2, ymin, x2, y2)
    if b < r2:
        x1, y1, x2, y2 = math.sqrt(r2 - ymin2), ymin, math.sqrt(r2 - ymax2), ymax
        return _arc(x1, y1, x2, y2, r) + _triangle(x1, y1, xmin, y1, xmin, ymax) + _triangle(x1, y1, xmin, y2, x2, y2)
    x1, y1, x2, y2 = math.sqrt(r2 - ymin2), ymin, xmin, math.sqrt(r2 - xmin2)
    return _arc(x1, y1, x2, y2, r) + _triangle(x1, y1, x2, y2, xmin, ymin)


@on_disk
@numba.njit
def _overlap(xmin, ymin, xmax, ymax, r):
    """Exact overlap of a circle at the origin and a rectangle (sep's ``circoverlap``): its recursion over the
    quadrants the axes cut the rectangle into, written out, the parts added in sep's order."""
    if r <= 0.0:
        return 0.0
    if xmin >= 0.0:
        if ymin >= 0.0:
            return _quadrant(xmin, ymin, xmax, ymax, r)
        if ymax <= 0.0:
            return _quadrant(-ymax, xmin, -ymin, xmax, r)
        return _quadrant(-0.0, xmin, -ymin, xmax, r) + _quadrant(xmin, 0.0, xmax, ymax, r)
    if xmax <= 0.0:
        if ymin >= 0.0:
            return _quadrant(-xmax, ymin, -xmin, ymax, r)
        if ymax <= 0.0:
            return _quadrant(-xmax, -ymax, -xmin, -ymin, r)
        return _quadrant(-xmax, -0.0, -xmin, -ymin, r) + _quadrant(-xmax, 0.0, -xmin, ymax, r)
    if ymin >= 0.0:
        return _quadrant(-0.0, ymin, -xmin, ymax, r) + _quadrant(0.0, ymin, xmax, ymax, r)
    if ymax <= 0.0:
        return _quadrant(-0.0, -ymax, -xmin, -ymin, r) + _quadrant(-ymax, 0.0, -ymin, xmax, r)
    return (
        _quadrant(-0.0, -0.0, -xmin, -ymin, r)
        + _quadrant(-0.0, 0.0, -ymin, xmax, r)
        + _quadrant(-0.0, 0.0, -xmin, ymax, r)
        + _quadrant(0.0, 0.0, xmax, ymax, r)
    )


@on_disk
@numba.njit(nogil=True)
def _walk(data, segmap, use_seg, mask, use_mask, x, y, radii, rin, rout, varpix):
    """Every object's pixels once, row by row: the annulus' sky pixels, and in each aperture the data, the
    variance, the area, the masked area (mask or another object) and the mask's own."""
    ny, nx = data.shape
    n, k = x.size, radii.size
    tv, sig, total = np.zeros((k, n)), np.zeros((k, n)), np.zeros((k, n))
    masked, ones, bad_area = np.zeros((k, n)), np.zeros((k, n)), np.zeros((k, n))
    sky_sum, sky_n = np.zeros(n), np.zeros(n)
    flags = np.zeros(n, np.int32)
    r_in2, r_out2 = np.empty(k), np.empty(k)
    reach = rout
    for j in range(k):
        inner = radii[j] - _STRADDLE
        r_in2[j] = inner * inner if inner > 0.0 else 0.0
        r_out2[j] = (radii[j] + _STRADDLE) * (radii[j] + _STRADDLE)
        reach = max(reach, radii[j])
    aper_out2 = r_out2.max()
    rin2, rout2 = rin * rin, rout * rout
    for i in range(n):
        xc, yc, own = x[i], y[i], i + 1
        # sep's box of the largest circle (the others' lie inside it): its first pixel and one past its last
        xmin, xmax = np.int64(xc - reach + 0.5), np.int64(xc + reach + 1.4999999)
        ymin, ymax = np.int64(yc - reach + 0.5), np.int64(yc + reach + 1.4999999)
        if xmin < 0 or ymin < 0 or xmax > nx or ymax > ny:
            flags[i] = APER_TRUNC
        xmin, ymin, xmax, ymax = max(xmin, 0), max(ymin, 0), min(xmax, nx), min(ymax, ny)
        for iy in range(ymin, ymax):
            dy = iy - yc
            dy2 = dy * dy
            if dy2 < rout2:  # the annulus: the row's pixels within rout, less the hole's (one kept each side)
                h = math.sqrt(rout2 - dy2)
                a0, a1 = max(xmin, np.int64(math.floor(xc - h))), min(xmax, np.int64(math.floor(xc + h)) + 2)
                h0, h1 = a1, a1
                if dy2 < rin2:
                    h = math.sqrt(rin2 - dy2)
                    h0, h1 = max(a0, np.int64(math.ceil(xc - h)) + 1), min(a1, np.int64(math.floor(xc + h)))
                    if h1 < h0:
                        h0, h1 = a1, a1
                for part in range(2):
                    lo, hi = (a0, h0) if part == 0 else (h1, a1)
                    for ix in range(lo, hi):
                        dx = ix - xc
                        rpix2 = dx * dx + dy2
                        if rpix2 > rin2 and rpix2 < rout2:
                            if (use_seg and segmap[iy, ix] > 0) or (use_mask and mask[iy, ix]):
                                continue
                            sky_sum[i] += np.float64(data[iy, ix])
                            sky_n[i] += 1.0
            if dy2 >= aper_out2:
                continue
            h = math.sqrt(aper_out2 - dy2)
            x0, x1 = max(xmin, np.int64(math.floor(xc - h))), min(xmax, np.int64(math.floor(xc + h)) + 2)
            for ix in range(x0, x1):
                dx = ix - xc
                rpix2 = dx * dx + dy2
                if rpix2 >= aper_out2:
                    continue
                pix = np.float64(data[iy, ix])
                bad = use_mask and mask[iy, ix]
                other = use_seg and segmap[iy, ix] > 0 and segmap[iy, ix] != own
                for j in range(k):
                    if rpix2 >= r_out2[j]:
                        continue
                    ov = _overlap(dx - 0.5, dy - 0.5, dx + 0.5, dy + 0.5, radii[j]) if rpix2 > r_in2[j] else 1.0
                    if bad or other:
                        masked[j, i] += ov
                    else:
                        tv[j, i] += pix * ov
                        sig[j, i] += varpix * ov
                    if bad:
                        bad_area[j, i] += ov
                    else:
                        ones[j, i] += ov
                    total[j, i] += ov
    return tv, sig, total, masked, ones, bad_area, sky_sum, sky_n, flags
