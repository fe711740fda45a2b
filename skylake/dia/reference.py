"""A reference image: the best frames of a pointing stacked on the sharpest one's grid, with its noise and mask.

Each frame's sky (sep) is subtracted, its counts scaled to ADU per second on the photometric scale of the first
(sharpest) frame, and resampled onto that frame's grid as reproject does (:mod:`skylake.dia.resample`). The
stack is a mean with one weight per frame (its sky's inverse variance), pixels that stand out of the frames'
median (a cosmic ray, a satellite, an asteroid) left out; its variance is propagated from each frame's own
(photons and sky), so a difference knows the reference's share of its noise. Pixels saturated in any frame,
or covered by fewer than half of them, are masked: no kernel can match them.

The image, variance and mask travel as one FITS file (:func:`to_fits` / :func:`from_fits`); a frame gets the
reference on its own grid, in its own ADU, from :func:`on_frame`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "CLIP_SIGMA",
    "CLIP_FRACTION",
    "ReferenceImage",
    "stack_reference",
    "relative_scales",
    "on_frame",
    "to_fits",
    "from_fits",
    "sky_noise",
]

#: A pixel further than this many sigma from the frames' median is left out of the mean.
CLIP_SIGMA = 5.0
#: ... where sigma also allows this fraction of the median (a star's core moves with the seeing).
CLIP_FRACTION = 0.15


@dataclass
class ReferenceImage:
    """A stacked reference.

    Attributes
    ----------
    image : numpy.ndarray
        The stack [ADU/s], sky subtracted, on the grid of ``wcs`` (0 where masked).
    variance : numpy.ndarray
        Its variance [(ADU/s)^2].
    mask : numpy.ndarray
        Pixels no kernel can match (saturated in a frame, or covered by fewer than half of them).
    wcs : astropy.wcs.WCS
        Its celestial WCS (the first frame's).
    frame_ids : list of int
        The frames stacked.
    fwhm : float
        The stack's median star FWHM [pixels] (NaN when no star was measured).
    shares : list of float
        Each frame's share of the stack's weight (a difference of one of them shares its noise).
    """

    image: np.ndarray = field(repr=False)
    variance: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    wcs: object = field(repr=False)
    frame_ids: list = field(default_factory=list)
    fwhm: float = float("nan")
    shares: list = field(default_factory=list)

    def share_of(self, frame_id: int) -> float:
        """A frame's share of the stack's weight (0 for a frame it does not stack).

        Parameters
        ----------
        frame_id : int
            The frame.

        Returns
        -------
        float
            Its weight over the total.
        """
        ids = [int(f) for f in self.frame_ids]
        return float(self.shares[ids.index(int(frame_id))]) if int(frame_id) in ids and self.shares else 0.0

    @property
    def depth(self) -> float:
        """The median noise of a pixel [ADU/s] over the unmasked ones: what 'deep' means for this reference.

        Returns
        -------
        float
            The median of ``sqrt(variance)``.
        """
        return float(np.median(np.sqrt(self.variance[~self.mask])))


def sky_noise(image: np.ndarray, gain: float) -> tuple[np.ndarray, np.ndarray]:
    """A frame's sky (sep) and its variance per pixel from its own counts.

    The sky's variance is measured (sep's global rms, read noise included); the stars' photons are added
    from the sky-subtracted counts and the gain.

    Parameters
    ----------
    image : numpy.ndarray
        The frame [ADU] (NaN where masked).
    gain : float
        Electrons per ADU.

    Returns
    -------
    sky : numpy.ndarray
        The sky [ADU].
    variance : numpy.ndarray
        The variance [ADU^2].

    Raises
    ------
    ValueError
        ``gain`` not positive.
    """
    import sep

    if not gain > 0:
        raise ValueError(f"gain must be > 0: {gain}")
    bad = ~np.isfinite(image)
    work = np.ascontiguousarray(np.where(bad, 0.0, image), dtype=np.float32)
    bkg = sep.Background(work, mask=bad if bad.any() else None)
    sky = bkg.back().astype(np.float64)
    variance = np.clip(work - sky, 0, None) / gain + bkg.globalrms**2
    return sky, variance


def _median_fwhm(image: np.ndarray, variance: np.ndarray, mask: np.ndarray) -> float:
    import sep

    data = np.ascontiguousarray(np.where(mask, 0.0, image), dtype=np.float64)
    err = np.ascontiguousarray(np.sqrt(np.where(mask, np.inf, variance)), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        objects = sep.extract(data, 20.0, err=err, mask=mask, minarea=5)
    objects = objects[objects["flag"] == 0]
    if len(objects) < 5:
        return float("nan")
    return float(np.median(2.3548 * np.sqrt((objects["a"] ** 2 + objects["b"] ** 2) / 2)))


def stack_reference(images, wcs_list, saturated, exptimes, gains, scales=None, frame_ids=None) -> ReferenceImage:
    """Stack frames of one pointing on the first one's grid.

    Parameters
    ----------
    images : list of numpy.ndarray
        The frames [ADU], sky included (NaN where masked); the first (the sharpest) sets the grid.
    wcs_list : list of astropy.wcs.WCS
        Their celestial WCS.
    saturated : list of numpy.ndarray
        Their saturated pixels.
    exptimes : list of float
        Their exposure times [s].
    gains : list of float
        Their gains [e-/ADU].
    scales : list of float or None
        Factors that bring each frame's counts to the first's photometric scale (None: measured, from the
        fluxes of the first frame's bright unsaturated stars in boxes of every frame).
    frame_ids : list of int or None
        Their ids, recorded.

    Returns
    -------
    ReferenceImage
        The stack.

    Raises
    ------
    ValueError
        Inputs of different lengths, or fewer than two frames.
    """
    from skylake.dia.resample import pixel_mapping, resample

    n = len(images)
    measure = scales is None
    scales = [1.0] * n if measure else list(scales)
    if not n == len(wcs_list) == len(saturated) == len(exptimes) == len(gains) == len(scales):
        raise ValueError("images, wcs_list, saturated, exptimes, gains and scales must have one entry per frame")
    if n < 2:
        raise ValueError(f"a reference stacks at least 2 frames, not {n}")
    grid, shape = wcs_list[0], images[0].shape
    values = np.full((n, *shape), np.nan, np.float64)
    variances = np.full((n, *shape), np.inf, np.float64)
    weights = np.zeros(n)
    any_saturated = np.zeros(shape, bool)
    for k, (image, wcs, sat, t, gain, scale) in enumerate(zip(images, wcs_list, saturated, exptimes, gains, scales)):
        sky, var = sky_noise(image, gain)
        factor = scale / t
        x, y = pixel_mapping(wcs, grid, shape)
        rate = resample((image - sky) * factor, x, y, "bicubic")
        rate_var = resample(var * factor**2, x, y, "bilinear")
        use = np.isfinite(rate) & np.isfinite(rate_var)
        values[k][use], variances[k][use] = rate[use], rate_var[use]
        weights[k] = 1.0 / float(np.median(rate_var[use]))  # the sky's: a weight per frame keeps stars unbiased
        if sat.any():
            any_saturated |= np.nan_to_num(resample(sat.astype(np.float32), x, y, "nearest-neighbor")) > 0.5
    if measure:
        found = relative_scales(values, variances, any_saturated)
        values *= found[:, None, None]
        variances *= found[:, None, None] ** 2
        weights /= found**2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": pixels no frame covers
        median = np.nanmedian(values, axis=0)
    # each pixel's own noise sets its clip, and a fraction of the median widens it on stars (their cores change
    # with the seeing): a scalar scatter per pixel stack, as astropy's sigma_clip estimates, cannot say either
    allowed = CLIP_SIGMA * np.sqrt(variances + (CLIP_FRACTION * median) ** 2)
    keep = np.isfinite(values) & (np.abs(values - median) <= allowed)
    w = np.where(keep, weights[:, None, None], 0.0)
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        image = (w * np.where(keep, values, 0.0)).sum(axis=0) / total
        variance = (w**2 * np.where(keep, variances, 0.0)).sum(axis=0) / total**2
    mask = any_saturated | (np.isfinite(values).sum(axis=0) < max(2, (n + 1) // 2)) | ~(total > 0)
    image, variance = np.where(mask, 0.0, image), np.where(mask, np.inf, variance)
    ids = [int(f) for f in frame_ids] if frame_ids is not None else []
    shares = (weights / weights.sum()).tolist()
    return ReferenceImage(image, variance, mask, grid, ids, _median_fwhm(image, variance, mask), shares)


def relative_scales(values: np.ndarray, variances: np.ndarray, saturated: np.ndarray, half: int = 6) -> np.ndarray:
    """Each frame's flux scale to the first's, from box sums around the first's bright unsaturated stars.

    Parameters
    ----------
    values : numpy.ndarray
        The frames on one grid, ``(n, ny, nx)``, sky subtracted (NaN where a frame has no pixel).
    variances : numpy.ndarray
        Their variances.
    saturated : numpy.ndarray
        Pixels saturated in any frame.
    half : int
        Half width of the boxes [pixels]: wide enough for the broadest seeing.

    Returns
    -------
    numpy.ndarray
        ``n`` factors (the first 1) that multiply each frame onto the first's scale; 1 where fewer than 5
        stars could be compared.
    """
    import sep

    first = np.ascontiguousarray(np.nan_to_num(values[0]), dtype=np.float64)
    err = np.ascontiguousarray(np.sqrt(np.nan_to_num(variances[0], posinf=1e30)), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stars = sep.extract(first, 50.0, err=err, mask=saturated, minarea=5)
    stars = stars[np.argsort(-stars["flux"])][:200]
    ny, nx = first.shape
    sums = []
    for x, y in zip(np.round(stars["x"]).astype(int), np.round(stars["y"]).astype(int)):
        if half <= x < nx - half and half <= y < ny - half:
            box = values[:, y - half : y + half + 1, x - half : x + half + 1]
            if np.isfinite(box).all() and not saturated[y - half : y + half + 1, x - half : x + half + 1].any():
                sums.append(box.sum(axis=(1, 2)))
    if len(sums) < 5:
        return np.ones(len(values))
    sums = np.array(sums)
    return np.median(sums[:, :1] / sums, axis=0)


def on_frame(
    reference: ReferenceImage, wcs, shape, exptime: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """The reference on a frame's grid, in the frame's ADU (sky subtracted).

    A frame whose grid is the reference's moved by one translation (:func:`skylake.dia.resample.whole_pixel_shift`:
    a tracked field's pointing jitter) gets the reference moved by whole pixels, not interpolated; the fraction of
    a pixel left is returned, for the PSF-matching kernel to take up. Otherwise the reference is interpolated
    (bicubic, as reproject does) and the fraction is 0.

    Parameters
    ----------
    reference : ReferenceImage
        The reference.
    wcs : astropy.wcs.WCS
        The frame's celestial WCS.
    shape : tuple of int
        The frame's (ny, nx).
    exptime : float
        The frame's exposure time [s].

    Returns
    -------
    image : numpy.ndarray
        The reference [ADU of an ``exptime`` exposure] (0 where masked).
    variance : numpy.ndarray
        Its variance [ADU^2] (0 where masked).
    mask : numpy.ndarray
        Pixels the reference does not cover or cannot be matched on.
    offset : tuple of float
        ``(ox, oy)`` [pixels]: a star at ``(u, v)`` on ``image`` is at ``(u + ox, v + oy)`` on the frame (within
        half a pixel; ``(0, 0)`` when the reference was interpolated).
    """
    from skylake.dia.resample import pixel_mapping, resample, whole_pixel_shift

    x, y = pixel_mapping(reference.wcs, wcs, shape)
    shift = whole_pixel_shift(x, y)
    offset = (0.0, 0.0)
    if shift is not None:
        x, y, offset = shift
        image = resample(reference.image, x, y, "nearest-neighbor")  # whole pixels: the values themselves
        variance = resample(np.where(reference.mask, 0.0, reference.variance), x, y, "nearest-neighbor")
    else:
        image = resample(reference.image, x, y, "bicubic")
        variance = resample(np.where(reference.mask, 0.0, reference.variance), x, y, "bilinear")
    masked = resample(reference.mask.astype(np.float32), x, y, "nearest-neighbor")
    mask = ~np.isfinite(image) | ~(np.nan_to_num(masked, nan=1.0) < 0.5)
    image = np.where(mask, 0.0, image) * exptime
    variance = np.where(mask, 0.0, np.nan_to_num(variance)) * exptime**2
    return image, variance, mask, offset


def to_fits(reference: ReferenceImage, header: dict | None = None) -> bytes:
    """The reference as one FITS file: the image (primary), its VARIANCE and its MASK.

    Parameters
    ----------
    reference : ReferenceImage
        The reference.
    header : dict or None
        More cards for the primary header (its provenance).

    Returns
    -------
    bytes
        The file.
    """
    from astropy.io import fits

    h = fits.Header()
    h.update(reference.wcs.to_header())
    h["BUNIT"] = ("adu/s", "sky subtracted")
    h["FWHM"] = (float(np.nan_to_num(reference.fwhm, nan=-1.0)), "px: the stack's median star FWHM (-1: none)")
    h["NCOMBINE"] = len(reference.frame_ids)
    h["FRAMES"] = ",".join(str(f) for f in reference.frame_ids)
    h["SHARES"] = ",".join(f"{s:.5f}" for s in reference.shares)
    for key, value in (header or {}).items():
        h[key] = value
    var = np.where(reference.mask, 0.0, reference.variance).astype(np.float32)
    out = io.BytesIO()
    fits.HDUList(
        [
            fits.PrimaryHDU(reference.image.astype(np.float32), header=h),
            fits.ImageHDU(var, name="VARIANCE"),
            fits.ImageHDU(reference.mask.astype(np.uint8), name="MASK"),
        ]
    ).writeto(out)
    return out.getvalue()


def from_fits(data: bytes) -> ReferenceImage:
    """Read a reference written by :func:`to_fits`.

    Parameters
    ----------
    data : bytes
        The file.

    Returns
    -------
    ReferenceImage
        The reference.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(io.BytesIO(data)) as hdul:
        h = hdul[0].header
        mask = hdul["MASK"].data.astype(bool)
        variance = np.where(mask, np.inf, hdul["VARIANCE"].data.astype(np.float64))
        ids = [int(f) for f in str(h.get("FRAMES", "")).split(",") if f]
        shares = [float(s) for s in str(h.get("SHARES", "")).split(",") if s]
        fwhm = float(h.get("FWHM", -1.0))
        image = hdul[0].data.astype(np.float64)
        return ReferenceImage(image, variance, mask, WCS(h).celestial, ids, fwhm if fwhm > 0 else np.nan, shares)
