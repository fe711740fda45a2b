"""Background, detection and photometry with sep, SExtractor-equivalent.

sep's working limits (the active-pixel stack and the deblending sub-object limit) are process-wide
settings. When a frame overflows them, extraction is retried with raised limits; what still cannot be
saved (e.g. deblending switched off for a crowded frame) is reported in ``note``.

Saturation follows SExtractor: a source is saturated when one of its pixels (sep's segmentation map)
reaches the saturation level in the raw image, i.e. before the background is subtracted. A star whose top is
flat (:data:`FLAT_TOP_PIXELS` pixels within :data:`FLAT_TOP_FRACTION` of its peak, the peak above half the
level) is saturated too: clipped by the camera, then flat-fielded, its plateau lies a little below any level.
It gets the :data:`SATURATED` bit in its flags, beside sep's own bits (``schemas/sources.yaml`` lists them all).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import sep

from skylake.errors import FrameRejected
from skylake.profile import Detection, Photometry

__all__ = [
    "SATURATED",
    "OBJ_MERGED",
    "COSMIC_RAY",
    "FLAT_TOP_PIXELS",
    "FLAT_TOP_FRACTION",
    "flat_topped",
    "DEFAULT_KERNEL",
    "Extraction",
    "background",
    "detect",
    "extract",
    "half_light_radius",
    "annulus_photometry",
    "masked_pixel_flags",
    "kron_scale",
    "measure",
]


#: Source flag bit of a source deblended from a neighbour (sep.OBJ_MERGED; SExtractor's 2: blended).
OBJ_MERGED = 0x0001

#: Source flag bit of a saturated source (sep uses bits 1-128; SExtractor's 4 is sep's OBJ_DOVERFLOW).
SATURATED = 0x0100

#: Source flag bit of a source with a cosmic-ray pixel in its largest aperture (raw frames, skylake.reduce).
COSMIC_RAY = 0x2000

#: A source with at least this many raw pixels within :data:`FLAT_TOP_FRACTION` of its own peak has a flat top
#: (an unclipped star has at most 4 equal pixels: its centre on a pixel corner).
FLAT_TOP_PIXELS = 6
#: How close to its peak a pixel of a flat top is (the flat field spreads a clipped plateau by a few per cent).
FLAT_TOP_FRACTION = 0.03

#: SExtractor default.conv: 3x3 "all-ground", FWHM 2 px.
DEFAULT_KERNEL = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32)

# sep's limits are global to the process; threads of one worker must not change them under each other.
_SEP_LIMITS_LOCK = threading.Lock()


@dataclass
class Extraction:
    """What :func:`extract` found on a frame.

    Attributes
    ----------
    objects : numpy.ndarray
        sep's structured array of the detected objects.
    back : numpy.ndarray
        Background map (float32), same shape as the image.
    globalback : float
        sep's global background level, ADU.
    globalrms : float
        sep's global background rms, ADU.
    note : str
        What extraction needed (raised sep limits, deblending switched off); "" when nothing.
    mask : numpy.ndarray or None
        True where a pixel was NaN/inf (zero in the subtracted image); None when every pixel is finite.
    saturated : numpy.ndarray or None
        Per object: one of its pixels reached the saturation level.
    n_saturated_pixels : int
        Raw pixels at or above the saturation level.
    segmap : numpy.ndarray or None
        sep's segmentation map: object index + 1 per pixel, 0 for sky.
    """

    objects: np.ndarray  # sep's structured array
    back: np.ndarray  # background map (float32), same shape as the image
    globalback: float
    globalrms: float
    note: str
    mask: np.ndarray | None = None  # True where a pixel was NaN/inf (zero in the subtracted image)
    saturated: np.ndarray | None = None  # per object: one of its pixels reached the saturation level
    n_saturated_pixels: int = 0
    segmap: np.ndarray | None = None  # sep's segmentation map: object index + 1 per pixel, 0 for sky


def _kernel(name: str):
    if name == "default":
        return DEFAULT_KERNEL
    if name == "none":
        return None
    raise FrameRejected(f"unknown filter_kernel {name!r} in profile (use 'default' or 'none')")


def background(data: np.ndarray, mask: np.ndarray | None, cfg: Detection) -> sep.Background:
    """Compute the sep background mesh (BACK_SIZE, BACK_FILTERSIZE) of ``data``.

    Parameters
    ----------
    data : numpy.ndarray
        The image.
    mask : numpy.ndarray or None
        True for pixels to leave out.
    cfg : Detection
        The profile's detection settings (``back_size``, ``back_filtersize``).

    Returns
    -------
    background : sep.Background
        The background mesh.
    """
    return sep.Background(
        data, mask=mask, bw=cfg.back_size, bh=cfg.back_size, fw=cfg.back_filtersize, fh=cfg.back_filtersize
    )


def _extract_once(data_sub, rms, mask, cfg: Detection, deblend: bool = True, segmentation_map: bool = False):
    return sep.extract(
        data_sub,
        cfg.thresh,
        err=rms,
        mask=mask,
        minarea=cfg.minarea,
        filter_kernel=_kernel(cfg.filter_kernel),
        deblend_nthresh=cfg.deblend_nthresh if deblend else 1,
        deblend_cont=cfg.deblend_cont,
        clean=cfg.clean,
        clean_param=cfg.clean_param,
        segmentation_map=segmentation_map,
    )


def detect(
    data_sub: np.ndarray, rms: float, mask: np.ndarray | None, cfg: Detection, segmentation_map: bool = False
) -> tuple:
    """Run ``sep.extract`` with the profile's settings, raising sep's limits on overflow.

    On overflow the pixel stack and the sub-object limit are raised (x4, up to the profile's maxima) and,
    at the maximum sub-object limit, deblending is switched off. sep's limits are restored afterwards.

    Parameters
    ----------
    data_sub : numpy.ndarray
        The background-subtracted image.
    rms : float
        The background rms (sep's ``err``).
    mask : numpy.ndarray or None
        True for pixels to leave out.
    cfg : Detection
        The profile's detection settings.
    segmentation_map : bool
        Whether sep's segmentation map is returned too.

    Returns
    -------
    result : tuple
        The objects and a note of what was needed (and, with ``segmentation_map``, sep's segmentation
        map between them): ``(objects, note)`` or ``(objects, segmap, note)``.

    Raises
    ------
    FrameRejected
        Only when even the maximum limits with deblending switched off cannot extract the frame, or sep
        fails for a reason other than an overflow.
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
                found = _extract_once(data_sub, rms, mask, cfg, deblend, segmentation_map)
                if segmentation_map:
                    return found[0], found[1], "; ".join(notes)
                return found, "; ".join(notes)
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


def extract(
    data: np.ndarray,
    cfg: Detection,
    saturation: float | None = None,
    saturation_from: str = "",
    saturated: np.ndarray | None = None,
) -> Extraction:
    """Background-subtract ``data`` in place and detect sources on it.

    Parameters
    ----------
    data : numpy.ndarray
        The raw image (float32); overwritten with the background-subtracted image.
    cfg : Detection
        The profile's detection settings.
    saturation : float, optional
        Saturation level [ADU] of the raw pixels. Objects owning a pixel at or above it are marked
        in ``Extraction.saturated``.
    saturation_from : str
        Where the level came from (e.g. "header SATURATE"), for the rejection message.
    saturated : numpy.ndarray, optional
        The raw pixels at the saturation level, when ``data`` is no longer raw (a reduced frame).

    Returns
    -------
    extraction : Extraction
        The objects, background, mask, saturated objects and segmentation map of the frame.

    Raises
    ------
    FrameRejected
        Pixels all NaN/inf or constant, or a saturation level at or below the frame's own background
        (a wrong header or profile value would flag every source).
    """
    mask = None
    with np.errstate(over="ignore", invalid="ignore"):  # a NaN, an infinity (or an overflow) makes it non-finite
        total = np.sum(data)  # one cheap pass; the mask only when needed
    if not np.isfinite(total):
        finite = np.isfinite(data)
        if not finite.any():
            raise FrameRejected("every pixel is NaN or infinite")
        if not finite.all():
            mask = ~finite
            data[mask] = 0.0
    valid = (data if mask is None else data[~mask]).ravel()
    # sep reports an rms of 1 for a flat image; a frame's first pixels already differ, so this is no pass
    if (valid[:4096] == valid[0]).all() and (valid == valid[0]).all():
        raise FrameRejected(f"image has no noise: every pixel is {float(valid[0]):g} (constant image)")
    bkg = background(data, mask, cfg)
    if not bkg.globalrms > 0:
        raise FrameRejected(f"image has no noise: background rms is {bkg.globalrms} (constant image?)")
    if saturation is not None and not saturation > bkg.globalback:
        raise FrameRejected(
            f"saturation level {saturation:g} ADU ({saturation_from or 'profile'}) is at or below the frame's "
            f"background {bkg.globalback:.6g} ADU: a wrong value would flag every source; set [defaults] "
            f'saturation and saturation_source = "profile" to override the header'
        )
    # The raw values of the bright pixels (flat indices), for the flat-top test once the segmentation map says
    # whose they are; the raw pixels at the saturation level (SExtractor SATUR_LEVEL) are among them. Indices,
    # not boolean images: one pass over the frame instead of three.
    bright = np.flatnonzero(data >= np.float32(0.5 * saturation)) if saturation is not None else np.zeros(0, np.intp)
    if mask is not None and bright.size:
        bright = bright[~mask.ravel()[bright]]
    bright_values = data.ravel()[bright]
    if saturated is not None:  # a reduced frame: its raw pixels' level was tested before the reduction
        saturated_pixels = np.flatnonzero(saturated & ~mask if mask is not None else saturated)
    elif saturation is not None and saturation > 0:  # then the level is above half of it: among the bright
        saturated_pixels = bright[bright_values >= np.float32(saturation)]
    elif saturation is not None:
        saturated_pixels = np.flatnonzero((data >= np.float32(saturation)) & (True if mask is None else ~mask))
    else:
        saturated_pixels = np.zeros(0, np.intp)
    n_saturated = len(saturated_pixels)
    back = bkg.back()
    np.subtract(data, back, out=data)
    if mask is not None:
        data[mask] = 0.0  # bad pixels stay neutral in the subtracted image
    # the segmentation map (object index + 1 per pixel) says which objects own saturated pixels, and
    # keeps neighbours out of each object's photometry (measure)
    objects, segmap, note = detect(data, bkg.globalrms, mask, cfg, segmentation_map=True)
    saturated = np.zeros(len(objects), dtype=bool)
    if n_saturated:
        owners = np.unique(segmap.ravel()[saturated_pixels])
        saturated[owners[owners > 0] - 1] = True
    saturated |= flat_topped(segmap.ravel()[bright], bright_values, len(objects))
    return Extraction(
        objects=objects,
        back=back,
        globalback=float(bkg.globalback),
        globalrms=float(bkg.globalrms),
        note=note,
        mask=mask,
        saturated=saturated,
        n_saturated_pixels=n_saturated,
        segmap=segmap,
    )


def flat_topped(owner: np.ndarray, value: np.ndarray, n_objects: int) -> np.ndarray:
    """Which objects have a flat top: :data:`FLAT_TOP_PIXELS` of their pixels within :data:`FLAT_TOP_FRACTION`
    of their brightest.

    Parameters
    ----------
    owner : numpy.ndarray
        The object (index + 1; 0 for sky) owning each of the bright pixels.
    value : numpy.ndarray
        The raw value of each of those pixels.
    n_objects : int
        The number of objects.

    Returns
    -------
    numpy.ndarray
        A bool per object.

    Examples
    --------
    >>> flat_topped(np.array([1, 1, 1, 1, 1, 1, 2, 2]), np.array([100, 99, 99, 98, 98, 98, 100, 50.0]), 2).tolist()
    [True, False]
    """
    out = np.zeros(n_objects, bool)
    keep = owner > 0
    if not keep.any():
        return out
    owner, value = owner[keep] - 1, np.asarray(value, np.float64)[keep]
    peak = np.full(n_objects, -np.inf)
    np.maximum.at(peak, owner, value)
    near = value >= (1.0 - FLAT_TOP_FRACTION) * peak[owner]
    return np.bincount(owner[near], minlength=n_objects) >= FLAT_TOP_PIXELS


def half_light_radius(data_sub: np.ndarray, x, y, a, flux, mask=None) -> np.ndarray:
    """Measure the radius [pix] enclosing half of ``flux`` (sep.flux_radius, subpix 5).

    The search radius sets the cost (it grows with its square): 2a covers the half-light radius of
    a star (1.18 sigma, and a >= ~0.6 sigma even for faint ones); the few objects whose radius comes
    out near that limit are measured again out to 6a. sep's 64 radial bins span the search radius, so
    a shorter one resolves the radius no worse: on real SkyCamZ and synthetic 4k frames 2a and 3a agree
    to 0.003-0.004 px (median; 0.02 px at the 99th percentile, no mean offset) at 0.6-0.7x the cost.

    Parameters
    ----------
    data_sub : numpy.ndarray
        The background-subtracted image.
    x, y : numpy.ndarray
        The objects' positions, px.
    a : numpy.ndarray
        The objects' semi-major axes, px.
    flux : numpy.ndarray
        The objects' total fluxes (the half of which is enclosed).
    mask : numpy.ndarray, optional
        True for pixels to leave out.

    Returns
    -------
    r50 : numpy.ndarray
        The half-light radius of each object, px.
    """
    rmax = np.maximum(2.0 * a, 3.0)
    r50, _ = sep.flux_radius(data_sub, x, y, rmax, 0.5, normflux=flux, mask=mask, subpix=5)
    again = ~np.isfinite(r50) | (r50 >= 0.9 * rmax)
    if again.any():
        r50[again], _ = sep.flux_radius(
            data_sub,
            x[again],
            y[again],
            np.maximum(6.0 * a[again], 3.0),
            0.5,
            normflux=flux[again],
            mask=mask,
            subpix=5,
        )
    return r50


def annulus_photometry(data_sub: np.ndarray, x, y, radii, annulus, err: float, gain: float, mask=None, segmap=None):
    """Measure circular-aperture fluxes with the local background from an annulus.

    The local background is SExtractor's: the same numbers as ``sep.sum_circle(..., bkgann=annulus)`` but
    with the annulus summed once for all radii (and on whole pixels) instead of once per radius.

    With ``segmap`` (sep's segmentation map, object index + 1), the annulus mean is of sky pixels only
    (every detected object's pixels masked; the plain annulus where that leaves none) and each aperture
    leaves out the pixels of other objects (sep corrects the sum for the masked area).

    Parameters
    ----------
    data_sub : numpy.ndarray
        The background-subtracted image.
    x, y : numpy.ndarray
        The objects' positions, px.
    radii : sequence of float
        The aperture radii, px.
    annulus : sequence of float
        Inner and outer radius of the background annulus, px.
    err : float
        The background rms per pixel, ADU.
    gain : float
        The gain (e-/ADU), for the Poisson part of the errors.
    mask : numpy.ndarray, optional
        True for the image's bad (NaN/inf) pixels.
    segmap : numpy.ndarray, optional
        The segmentation map of sep (object index + 1 per pixel, 0 for sky) of the objects at ``x``, ``y``.

    Returns
    -------
    apertures : list of tuple
        ``[(flux, flux_err) per radius]``; ``flux_err`` adds the uncertainty of the subtracted annulus mean.
    bkg_local : numpy.ndarray
        The residual local background per pixel [ADU].
    flags : numpy.ndarray
        The OR of sep's aperture flags (without its masked-pixel bits).
    """
    from skylake.frame.apertures import circle_sums

    ny, nx = data_sub.shape
    rin, rout = annulus
    # The annulus mean is over whole pixels (their centres in the annulus) that are sky: not an object's
    # (segmap) and not bad (mask). The apertures use the exact overlap of circle and pixels (sep subpix=0):
    # 5x5 sub-pixels made a bright star's flux depend on where it fell on its pixel by ~1.4 mmag rms
    # (r = 3 px), above the photon noise of the brightest stars. One visit per object gives sep's sums.
    sums = circle_sums(data_sub, x, y, radii, annulus, err, gain, mask, segmap)
    with np.errstate(divide="ignore", invalid="ignore"):
        sky = sums.sky_pixels > 0
        bkg_local = np.where(sky, sums.sky_sum / np.where(sky, sums.sky_pixels, 1.0), np.nan)
        bkg_var = np.where(sky, err**2 / np.where(sky, sums.sky_pixels, 1.0), np.nan)
    flags = sums.flags.copy()
    if segmap is not None:  # an annulus all of objects (a crowded field): its plain mean instead
        lost = ~np.isfinite(bkg_local)
        if lost.any():
            bad = None if mask is None else mask.view(np.uint8)
            bkg_local[lost], bkg_var[lost], _ = _annulus_mean(data_sub, x[lost], y[lost], rin, rout, err, bad)
    # an aperture's area on the image: a whole circle unless an edge or a masked pixel is near
    near_edge = (x < rout - 0.5) | (y < rout - 0.5) | (x > nx - 0.5 - rout) | (y > ny - 0.5 - rout)
    if mask is not None:
        near_edge[:] = True
    apertures = []
    for k, radius in enumerate(radii):
        area = np.where(near_edge, sums.area[k], np.pi * radius**2)
        flux, ferr = sums.flux[k], sums.flux_err[k]
        apertures.append((flux - area * bkg_local, np.sqrt(ferr**2 + area**2 * bkg_var)))
    return apertures, bkg_local, flags


#: sep's aperture flags for masked pixels (APER_HASMASKED, APER_ALLMASKED)
_MASKED_BITS = np.int32(0x0020 | 0x0040)


def _image_mask_flags(flags: np.ndarray, mask, segmap) -> np.ndarray:
    """``flags`` without sep's masked-pixel bits: sep sets them for any masked pixel in any of its sums, the
    neighbours' and the annulus' object pixels the segmentation map masks included, so with one NaN pixel on a
    frame they landed on more than half its sources. :func:`masked_pixel_flags` sets them from the image's
    own bad pixels alone."""
    return flags & ~_MASKED_BITS


def masked_pixel_flags(mask, x, y, a, b, theta, kron, radius: float, first_radius: float) -> np.ndarray:
    """Flag the sources whose apertures hold masked (NaN/inf) pixels of the image.

    APER_HASMASKED (32) is set for sources whose largest circular aperture (``radius``) or Kron ellipse
    (``kron`` in units of a, b) holds a masked pixel of the image; APER_ALLMASKED (64) also when their first
    aperture (``first_radius``) holds nothing else. The local annulus is not looked at: its masked pixels
    are left out of its mean.

    Parameters
    ----------
    mask : numpy.ndarray or None
        True for the image's masked (NaN/inf) pixels.
    x, y : numpy.ndarray
        The sources' positions, px.
    a, b, theta : numpy.ndarray
        The sources' ellipse axes (px) and position angle (rad).
    kron : numpy.ndarray
        The Kron ellipse's scale, in units of a, b.
    radius : float
        The largest circular aperture's radius, px.
    first_radius : float
        The first circular aperture's radius, px.

    Returns
    -------
    flags : numpy.ndarray
        The int32 flags of each source; zeros without a mask.
    """
    flags = np.zeros(len(x), np.int32)
    if mask is None or not len(x):
        return flags
    bad = mask.astype(np.float64)
    in_circle = sep.sum_circle(bad, x, y, radius, subpix=0)[0]
    in_kron = sep.sum_ellipse(bad, x, y, a, b, theta, kron, subpix=1)[0]
    flags[(in_circle > 1e-6) | (in_kron > 0)] |= 0x0020
    first = sep.sum_circle(bad, x, y, first_radius, subpix=0)[0]
    on_image = sep.sum_circle(np.ones_like(bad), x, y, first_radius, subpix=0)[0]
    flags[first >= on_image - 1e-6] |= 0x0040 | 0x0020
    return flags


def _annulus_mean(data_sub, x, y, rin, rout, err: float, excluded):
    """Mean residual background per pixel in each annulus, over the pixels whose centres lie in it and where
    ``excluded`` (any map, > 0 for pixels left out; None for none) is 0; NaN where none is left. Also the
    variance of that mean, err^2 / pixels averaged, and sep's flags.

    One pass of ``sep.sum_circann``: ``excluded`` goes in as its segmentation map with an id no pixel has,
    so sep sums the other pixels without rescaling the sum (it rescales for a ``mask``), and its variance,
    err^2 per pixel summed, counts them.
    """
    if not len(x):
        return np.zeros(0), np.zeros(0), np.zeros(0, np.int32)
    others = {} if excluded is None else dict(segmap=excluded, seg_id=np.full(len(x), _NO_OBJECT, np.int32))
    ann_sum, ann_err, flags = sep.sum_circann(data_sub, x, y, rin, rout, err=err, subpix=1, **others)
    # sep summed err^2 (a float32) once per pixel: the count is the integer nearest the ratio
    n_sky = np.rint(ann_err**2 / np.float64(np.float32(err**2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        good = (n_sky > 0) & np.isfinite(ann_sum)
        mean = np.where(good, ann_sum / np.where(good, n_sky, 1.0), np.nan)
        var = np.where(good, err**2 / np.where(good, n_sky, 1.0), np.nan)
    return mean, var, flags.astype(np.int32)


#: An object id no pixel of a segmentation map has (sep numbers objects from 1): with it, sep leaves out every
#: object's pixels.
_NO_OBJECT = np.iinfo(np.int32).max


def kron_scale(r_kron: np.ndarray, cfg: Photometry) -> np.ndarray:
    """Compute the Kron ellipse's scale in units of a, b, as SExtractor (``photom.c``, PHOT_AUTOPARAMS k, rmin).

    SExtractor sets ``kronfactor = k * r1/v1`` and raises it to ``rmin`` when smaller, and uses ``rmin``
    when the first moment ``r1/v1`` cannot be computed (``r1 <= 0`` or ``v1 <= 0``: sep returns 0 or
    NaN there). That scale is SExtractor's KRON_RADIUS output.

    Parameters
    ----------
    r_kron : numpy.ndarray
        The first moment ``r1/v1`` of each object (sep's ``kron_radius``), in units of a, b.
    cfg : Photometry
        The profile's photometry settings (``kron_factor`` k, ``kron_min_radius`` rmin).

    Returns
    -------
    scale : numpy.ndarray
        The Kron ellipse's scale of each object, in units of a, b.

    Examples
    --------
    >>> from skylake.profile import load_profile
    >>> kron_scale(np.array([2.0, 1.0, 0.0, np.nan]), load_profile("generic").photometry).tolist()
    [5.0, 3.5, 3.5, 3.5]
    """
    r_kron = np.asarray(r_kron, dtype=np.float64)
    valid = np.isfinite(r_kron) & (r_kron > 0)
    with np.errstate(invalid="ignore"):
        return np.where(valid, np.maximum(cfg.kron_factor * r_kron, cfg.kron_min_radius), cfg.kron_min_radius)


def measure(data_sub: np.ndarray, ext: Extraction, cfg: Photometry, gain: float) -> dict[str, np.ndarray]:
    """Measure the photometry and shape of every detected object.

    Measured are fixed apertures with a local annulus background, Kron flux (MAG_AUTO equivalent), peak,
    FWHM, elongation, ellipticity, theta, flags, edge distance.

    Parameters
    ----------
    data_sub : numpy.ndarray
        The background-subtracted image.
    ext : Extraction
        The frame's extraction (:func:`extract`).
    cfg : Photometry
        The profile's photometry settings (aperture radii, annulus, Kron parameters).
    gain : float
        The gain (e-/ADU), for the Poisson part of the errors.

    Returns
    -------
    cols : dict of numpy arrays
        Columns named as in ``schemas/sources.yaml`` (less ids, sky position, mjd).
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

    # Kron flux as SExtractor's MAG_AUTO (PHOT_AUTOPARAMS k, rmin): the ellipse's scale in units of a, b
    # is max(k * r_kron, rmin), and rmin itself when r_kron cannot be measured (sep gives 0 or NaN).
    # Neighbours' pixels (sep's segmentation map) are left out of the first moment and of the sum, as
    # SExtractor masks them (MASK_TYPE): a bright neighbour would otherwise swell both.
    objects = dict(seg_id=np.arange(1, len(x) + 1, dtype=np.int32), segmap=ext.segmap) if ext.segmap is not None else {}
    r_kron, kflag = sep.kron_radius(data_sub, x, y, a, b, theta, 6.0, mask=mask, **objects)
    scale = kron_scale(r_kron, cfg)
    flux_auto, flux_auto_err, aflag = sep.sum_ellipse(
        data_sub, x, y, a, b, theta, scale, err=err, gain=gain, mask=mask, subpix=1, **objects
    )
    flags |= _image_mask_flags(kflag.astype(np.int32) | aflag.astype(np.int32), mask, ext.segmap)
    flags |= masked_pixel_flags(mask, x, y, a, b, theta, scale, max(cfg.aperture_radii), cfg.aperture_radii[0])
    if ext.saturated is not None:
        flags |= np.where(ext.saturated, SATURATED, 0).astype(np.int32)

    # FWHM from the half-light radius: exactly FWHM / 2 for a Gaussian, robust for any profile.
    r50 = half_light_radius(data_sub, x, y, a, flux_auto, mask)

    apertures, bkg_local, aflag = annulus_photometry(
        data_sub, x, y, cfg.aperture_radii, cfg.annulus, err, gain, mask, ext.segmap
    )
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
        "kron_radius": scale,
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
