"""Background, detection and photometry with sep, SExtractor-equivalent.

sep's working limits (the active-pixel stack and the deblending sub-object limit) are process-wide
settings. When a frame overflows them, extraction is retried with raised limits; what still cannot be
saved (e.g. deblending switched off for a crowded frame) is reported in ``note``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import sep

from skylake.errors import FrameRejected
from skylake.profile import Detection, Photometry

#: SExtractor default.conv: 3x3 "all-ground", FWHM 2 px.
DEFAULT_KERNEL = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32)

# sep's limits are global to the process; threads of one worker must not change them under each other.
_SEP_LIMITS_LOCK = threading.Lock()


@dataclass
class Extraction:
    objects: np.ndarray  # sep's structured array
    back: np.ndarray  # background map (float32), same shape as the image
    globalback: float
    globalrms: float
    note: str
    mask: np.ndarray | None = None  # True where a pixel was NaN/inf (zero in the subtracted image)


def _kernel(name: str):
    if name == "default":
        return DEFAULT_KERNEL
    if name == "none":
        return None
    raise FrameRejected(f"unknown filter_kernel {name!r} in profile (use 'default' or 'none')")


def background(data: np.ndarray, mask: np.ndarray | None, cfg: Detection) -> sep.Background:
    """sep background mesh (BACK_SIZE, BACK_FILTERSIZE) of ``data``."""
    return sep.Background(data, mask=mask, bw=cfg.back_size, bh=cfg.back_size,
                          fw=cfg.back_filtersize, fh=cfg.back_filtersize)


def _extract_once(data_sub, rms, mask, cfg: Detection, deblend: bool = True):
    return sep.extract(data_sub, cfg.thresh, err=rms, mask=mask, minarea=cfg.minarea,
                       filter_kernel=_kernel(cfg.filter_kernel), deblend_nthresh=cfg.deblend_nthresh if deblend else 1,
                       deblend_cont=cfg.deblend_cont, clean=cfg.clean, clean_param=cfg.clean_param)


def detect(data_sub: np.ndarray, rms: float, mask: np.ndarray | None, cfg: Detection) -> tuple[np.ndarray, str]:
    """Run ``sep.extract`` with the profile's settings, raising sep's limits on overflow.

    Returns the objects and a note of what was needed. Raises :class:`FrameRejected` only when even
    the maximum limits with deblending switched off cannot extract the frame.
    """
    pixstack, sub_limit = cfg.pixstack, cfg.sub_object_limit
    deblend = True
    notes = []
    while True:
        with _SEP_LIMITS_LOCK:
            saved = sep.get_extract_pixstack(), sep.get_sub_object_limit()
            sep.set_extract_pixstack(pixstack)
            sep.set_sub_object_limit(sub_limit)
            try:
                objects = _extract_once(data_sub, rms, mask, cfg, deblend)
                return objects, "; ".join(notes)
            except Exception as exc:  # sep raises a bare Exception with its C error message
                message = str(exc)
            finally:  # leave the process as we found it: other code in it may use sep too
                sep.set_extract_pixstack(saved[0])
                sep.set_sub_object_limit(saved[1])
        if "pixel buffer full" in message and pixstack < cfg.max_pixstack:
            pixstack = min(pixstack * 4, cfg.max_pixstack)
            notes.append(f"pixel stack raised to {pixstack}")
        elif "deblending overflow" in message and sub_limit < cfg.max_sub_object_limit:
            sub_limit = min(sub_limit * 4, cfg.max_sub_object_limit)
            notes.append(f"sub-object limit raised to {sub_limit}")
        elif "deblending overflow" in message and deblend:
            deblend = False
            notes.append("deblending switched off: overflow at the maximum sub-object limit")
        else:
            raise FrameRejected(f"sep extraction failed: {message}")


def extract(data: np.ndarray, cfg: Detection) -> Extraction:
    """Background-subtract ``data`` in place and detect sources on it.

    Rejects frames whose pixels are all NaN/inf or constant.
    """
    mask = None
    if not np.isfinite(np.sum(data, dtype=np.float64)):  # one cheap pass; the mask only when needed
        finite = np.isfinite(data)
        if not finite.any():
            raise FrameRejected("every pixel is NaN or infinite")
        mask = ~finite
        data[mask] = 0.0
    bkg = background(data, mask, cfg)
    if not bkg.globalrms > 0:
        raise FrameRejected(f"image has no noise: background rms is {bkg.globalrms} (constant image?)")
    back = bkg.back()
    np.subtract(data, back, out=data)
    if mask is not None:
        data[mask] = 0.0  # bad pixels stay neutral in the subtracted image
    objects, note = detect(data, bkg.globalrms, mask, cfg)
    return Extraction(objects=objects, back=back, globalback=float(bkg.globalback),
                      globalrms=float(bkg.globalrms), note=note, mask=mask)


def half_light_radius(data_sub: np.ndarray, x, y, a, flux, mask=None) -> np.ndarray:
    """Radius [pix] enclosing half of ``flux`` (sep.flux_radius, subpix 5).

    The search radius sets the cost (it grows with its square): 3a covers the half-light radius of
    a star (1.18 sigma, and a >= ~0.6 sigma even for faint ones); the few objects whose radius comes
    out near that limit are measured again out to 6a.
    """
    rmax = np.maximum(3.0 * a, 3.0)
    r50, _ = sep.flux_radius(data_sub, x, y, rmax, 0.5, normflux=flux, mask=mask, subpix=5)
    again = ~np.isfinite(r50) | (r50 >= 0.9 * rmax)
    if again.any():
        r50[again], _ = sep.flux_radius(data_sub, x[again], y[again], np.maximum(6.0 * a[again], 3.0), 0.5,
                                        normflux=flux[again], mask=mask, subpix=5)
    return r50




def _ones_like_edges(shape, x, y, radius: float, mask):
    """An image of ones on which circles of up to ``radius`` around (x, y) meet the same image edges
    (and masked pixels) as on an image of ``shape``; returns it and the positions to use on it.

    Without a mask a small image does: each coordinate keeps its distance to a nearby edge (shifted by
    whole pixels, so sub-pixel sampling is unchanged), and any other moves to the middle.
    """
    if mask is not None:
        return np.ones(shape, dtype=np.float32), x, y
    half = int(np.ceil(radius)) + 2
    out = []
    small = []
    for c, n in ((y, shape[0]), (x, shape[1])):
        w = min(n, 2 * half)
        if w == n:
            out.append(c)
        else:
            c = np.where(c < half, c, np.where(c > n - half, c - (n - w), half + (c - np.floor(c))))
            out.append(c)
        small.append(w)
    return np.ones(small, dtype=np.float32), out[1], out[0]


def annulus_photometry(data_sub: np.ndarray, x, y, radii, annulus, err: float, gain: float, mask=None):
    """Circular-aperture fluxes with the local background from an annulus, as SExtractor's local
    background: the same numbers as ``sep.sum_circle(..., bkgann=annulus)`` but with the annulus summed
    once for all radii (and on whole pixels) instead of once per radius at 5x5 sub-pixels.

    Returns ``[(flux, flux_err) per radius]``, the residual local background per pixel [ADU] and the
    OR of sep's aperture flags. ``flux_err`` adds the uncertainty of the subtracted annulus mean.
    """
    ny, nx = data_sub.shape
    rin, rout = annulus
    ann_sum, _, flags = sep.sum_circann(data_sub, x, y, rin, rout, mask=mask, subpix=1)
    flags = flags.astype(np.int32)
    # The annulus mean divides by its pixel count (whole pixels: within a few % of the geometric area,
    # fewer at edges and masked pixels), counted on a small image of ones. The apertures (5x5
    # sub-pixels) have their geometric area except where they leave the image.
    ones, xo, yo = _ones_like_edges(data_sub.shape, x, y, rout, mask)
    ann_area = sep.sum_circann(ones, xo, yo, rin, rout, mask=mask, subpix=1)[0] if len(x) else np.zeros(0)
    near_edge = (x < rout - 0.5) | (y < rout - 0.5) | (x > nx - 0.5 - rout) | (y > ny - 0.5 - rout)
    if mask is not None:
        near_edge[:] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        bkg_local = np.where(ann_area > 0, ann_sum / ann_area, np.nan)
        bkg_var = np.where(ann_area > 0, err**2 / ann_area, np.nan)  # variance of the annulus mean
    apertures = []
    for radius in radii:
        flux, ferr, aflag = sep.sum_circle(data_sub, x, y, radius, err=err, gain=gain, mask=mask, subpix=5)
        flags |= aflag.astype(np.int32)
        area = np.full(len(x), np.pi * radius**2)
        if near_edge.any():
            area[near_edge] = sep.sum_circle(ones, xo[near_edge], yo[near_edge], radius, mask=mask, subpix=5)[0]
        apertures.append((flux - area * bkg_local, np.sqrt(ferr**2 + area**2 * bkg_var)))
    return apertures, bkg_local, flags


def measure(data_sub: np.ndarray, ext: Extraction, cfg: Photometry, gain: float) -> dict[str, np.ndarray]:
    """Photometry and shape of every detected object: fixed apertures with a local annulus background,
    Kron flux (MAG_AUTO equivalent), peak, FWHM, elongation, ellipticity, theta, flags, edge distance.

    Returns a dict of numpy columns named as in ``schemas/sources.yaml`` (less ids, sky position, mjd).
    """
    obj, mask = ext.objects, ext.mask
    x, y = obj["x"].astype(np.float64), obj["y"].astype(np.float64)
    # float32 theta can round to just past pi/2, which sep's aperture functions refuse.
    a, b = obj["a"].astype(np.float64), obj["b"].astype(np.float64)
    theta = np.clip(obj["theta"].astype(np.float64), -np.pi / 2, np.pi / 2)
    ny, nx = data_sub.shape
    err = ext.globalrms
    flags = obj["flag"].astype(np.int32)

    # Degenerate shapes (b = 0 from one-pixel-wide objects) make sep refuse the ellipse: use a circle.
    odd = ~(np.isfinite(a) & np.isfinite(b) & np.isfinite(theta) & (b > 0) & (a >= b))
    if odd.any():
        a, b, theta = np.where(odd, 1.0, a), np.where(odd, 1.0, b), np.where(odd, 0.0, theta)

    # Kron flux: ellipse of kron_factor * kron_radius (in units of a, b), at least kron_min_radius.
    kron_radius, kflag = sep.kron_radius(data_sub, x, y, a, b, theta, 6.0, mask=mask)
    kron_radius = np.where(np.isfinite(kron_radius) & (kron_radius > 0), kron_radius, cfg.kron_min_radius)
    scale = np.maximum(cfg.kron_factor * kron_radius, cfg.kron_min_radius)
    flux_auto, flux_auto_err, aflag = sep.sum_ellipse(data_sub, x, y, a, b, theta, scale, err=err,
                                                      gain=gain, mask=mask, subpix=1)
    flags |= kflag.astype(np.int32) | aflag.astype(np.int32)

    # FWHM from the half-light radius: exactly FWHM / 2 for a Gaussian, robust for any profile.
    r50 = half_light_radius(data_sub, x, y, a, flux_auto, mask)

    apertures, bkg_local, aflag = annulus_photometry(data_sub, x, y, cfg.aperture_radii, cfg.annulus, err, gain,
                                                     mask)
    flags |= aflag

    xi = np.clip(np.rint(x).astype(np.intp), 0, nx - 1)
    yi = np.clip(np.rint(y).astype(np.intp), 0, ny - 1)
    a, b = obj["a"], obj["b"]  # the measured shapes, degenerate or not
    with np.errstate(divide="ignore", invalid="ignore"):
        elongation = a / b
        ellipticity = 1.0 - b / a
    cols = {
        "x": x,
        "y": y,
        "flux_auto": flux_auto,
        "flux_auto_err": flux_auto_err,
        "kron_radius": kron_radius,
        "flux_max": obj["peak"],
        "bkg": ext.back[yi, xi],
        "bkg_local": bkg_local,
        "fwhm": 2.0 * r50,
        "a": a,
        "b": b,
        "theta": np.degrees(theta),
        "elongation": elongation,
        "ellipticity": ellipticity,
        "npix": obj["npix"].astype(np.int32),
        "edge_dist": np.minimum(np.minimum(x, nx - 1 - x), np.minimum(y, ny - 1 - y)),
        "flags": flags,
    }
    for k, (flux, ferr) in enumerate(apertures, start=1):
        cols[f"flux_ap{k}"], cols[f"flux_ap{k}_err"] = flux, ferr
    return cols
