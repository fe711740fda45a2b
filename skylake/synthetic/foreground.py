"""An all-sky camera's foreground, painted on frames: obstructions, lit structures, trails, and a later sky.

For tests and benchmarks with a known truth: a dark body (a dome, a building) hides the sky behind it; a lit
structure (a telescope's tube or mast) is a dark body with a bright thin edge; a satellite trail is a thin line
of a given S/N per pixel. :func:`later_sky` turns a real frame taken at a celestial pole with the sky (in
azimuth, through the camera model), so that one real frame gives a night of frames (the camera's own rim and
foreground turn with it: they are not static in such copies). Every function returns a new image; the painted
pixels are the truth.

Pixels are 0-based, x = column, y = row.
"""

from __future__ import annotations

import numpy as np
from matplotlib.path import Path as _Path
from scipy import ndimage

from skylake.robust import MAD_TO_SIGMA

__all__ = ["tube", "polygon_mask", "later_sky", "paint_dark_body", "paint_line", "frame_noise"]


def polygon_mask(shape, vertices) -> np.ndarray:
    """The pixels whose centres lie inside a polygon.

    Parameters
    ----------
    shape : tuple of int
        The image's (ny, nx).
    vertices : sequence of (float, float)
        The polygon's (x, y) corners, px.

    Returns
    -------
    numpy.ndarray of bool
        True inside.
    """
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    inside = _Path(np.asarray(vertices, float)).contains_points(np.column_stack([x.ravel(), y.ravel()]))
    return inside.reshape(ny, nx)


def later_sky(image: np.ndarray, model, site, time, hours: float) -> np.ndarray:
    """The frame as the sky would be ``hours`` later, for a camera at a celestial pole (bilinear).

    At a pole the sky turns in azimuth alone, so each pixel of the later frame takes the pixel that saw its
    altitude at the azimuth the sky had then (through the camera model: its tilt and distortion are kept).
    The frame's own foreground turns with it.

    Parameters
    ----------
    image : numpy.ndarray
        The frame.
    model : skylake.allsky.camera.CameraModel
        The camera model.
    site : skylake.allsky.camera.Site
        The site, within a degree of a pole (the South Pole's IceAct).
    time : astropy.time.Time
        The frame's mid-exposure.
    hours : float
        How much later, h.

    Returns
    -------
    numpy.ndarray
        The turned frame (edge pixels repeated where the turn brings in what was off the image).

    Raises
    ------
    ValueError
        The site is more than a degree from a pole.
    """
    import astropy.units as u

    if abs(site.lat_deg) < 89.0:
        raise ValueError(f"later_sky needs a site at a pole, got latitude {site.lat_deg!r}")
    later = time + hours * u.hour
    ra, dec = 0.0, -45.0 if site.lat_deg < 0 else 45.0
    _, az0 = site.radec_to_altaz(np.array([ra]), np.array([dec]), time)
    _, az1 = site.radec_to_altaz(np.array([ra]), np.array([dec]), later)
    turn = float((az1[0] - az0[0] + 180.0) % 360.0 - 180.0)
    ny, nx = np.shape(image)
    y, x = np.mgrid[0:ny, 0:nx]
    alt, az = model.pixel_to_altaz(x.ravel().astype(float), y.ravel().astype(float))
    xs, ys = model.altaz_to_pixel(alt, (np.asarray(az) - turn) % 360.0)
    xs = np.where(np.isfinite(xs), xs, x.ravel()).reshape(ny, nx)
    ys = np.where(np.isfinite(ys), ys, y.ravel()).reshape(ny, nx)
    return ndimage.map_coordinates(np.asarray(image, float), [ys, xs], order=1, mode="nearest")


def frame_noise(image: np.ndarray, where: np.ndarray) -> float:
    """The pixel-to-pixel noise of a frame over some pixels (robust, from neighbour differences).

    Parameters
    ----------
    image : numpy.ndarray
        The frame.
    where : numpy.ndarray of bool
        The pixels to judge it on.

    Returns
    -------
    float
        The noise of one pixel, ADU.
    """
    d = np.diff(np.asarray(image, float), axis=1)
    ok = where[:, 1:] & where[:, :-1]
    return float(np.median(np.abs(d[ok] - np.median(d[ok]))) * MAD_TO_SIGMA / np.sqrt(2))


def paint_dark_body(image: np.ndarray, body: np.ndarray, bias: float, level: float, noise: float, seed: int = 0):
    """Hide the sky behind a dark body: its pixels keep ``level`` of the smooth sky above ``bias``, plus noise.

    Parameters
    ----------
    image : numpy.ndarray
        The frame, ADU.
    body : numpy.ndarray of bool
        The body's pixels.
    bias : float
        The pedestal, ADU.
    level : float
        The body's brightness as a fraction of the sky behind it (0: black, 1: as bright as the sky).
    noise : float
        The body's pixel noise, ADU.
    seed : int, default 0
        The noise's seed.

    Returns
    -------
    numpy.ndarray
        The new frame.
    """
    out = np.array(image, float)
    smooth = ndimage.median_filter(out, size=15)
    rng = np.random.default_rng(seed)
    out[body] = bias + level * (smooth[body] - bias) + rng.normal(0, noise, int(body.sum()))
    return out


def _line_profile(shape, x1, y1, x2, y2, sigma_px):
    """A line's Gaussian cross-section (peak 1) between its ends (the ends cut sharply)."""
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    dx, dy = x2 - x1, y2 - y1
    length = np.hypot(dx, dy)
    ux, uy = dx / length, dy / length
    along = (x - x1) * ux + (y - y1) * uy
    across = -(x - x1) * uy + (y - y1) * ux
    return np.exp(-0.5 * (across / sigma_px) ** 2) * ((along >= 0) & (along <= length))


def paint_line(image: np.ndarray, x1, y1, x2, y2, peak: float, sigma_px: float = 1.2) -> np.ndarray:
    """Add a straight line of ``peak`` ADU at its centre between its ends: a satellite trail, or the lit edge of
    a structure painted with :func:`paint_dark_body`.

    Parameters
    ----------
    image : numpy.ndarray
        The frame.
    x1, y1, x2, y2 : float
        The line's ends, px (cut sharply).
    peak : float
        Its brightness at the centre line, ADU (10-15 x the pixel noise for the issue's trails).
    sigma_px : float, default 1.2
        Its Gaussian cross-section, px.

    Returns
    -------
    numpy.ndarray
        The new frame.
    """
    return np.asarray(image, float) + peak * _line_profile(np.shape(image), x1, y1, x2, y2, sigma_px)


def tube(pivot, angle_deg: float, length: float, width: float):
    """The corners of a telescope's tube (a rectangle) from its pivot along ``angle_deg``, and its lit edge.

    Parameters
    ----------
    pivot : (float, float)
        The tube's foot, px.
    angle_deg : float
        Its direction, deg from +x towards +y.
    length, width : float
        Its size, px.

    Returns
    -------
    corners : list of (float, float)
        The rectangle's corners.
    edge : tuple of float
        ``(x1, y1, x2, y2)``: the long side lit (the one towards -y).
    """
    t = np.radians(angle_deg)
    u, n = np.array([np.cos(t), np.sin(t)]), np.array([np.sin(t), -np.cos(t)])
    p = np.asarray(pivot, float)
    a, b = p + n * width / 2, p + n * width / 2 + u * length
    c, d = p - n * width / 2 + u * length, p - n * width / 2
    return [tuple(a), tuple(b), tuple(c), tuple(d)], (a[0], a[1], b[0], b[1])
