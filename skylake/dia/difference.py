"""Subtracting a reference from a frame: stamps to fit on, the kernel, the difference and its noise.

The difference ``D = S - (K * R + B)`` (:mod:`skylake.dia.kernel`) carries the noise of both inputs: the frame's
variance plus the reference's convolved with the square of the kernel (the reference's noise, smoothed and
scaled as its pixels were). Constant stars subtract to the noise; what changed between the reference and the
frame (a variable, a transient, an asteroid) is left, with the frame's PSF.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.signal import oaconvolve

from skylake.dia.kernel import KernelSettings, KernelSolution, fit_kernel

__all__ = [
    "BLEND_SIGMA",
    "DiaSettings",
    "Difference",
    "broaden",
    "choose_stamps",
    "frame_variance",
    "kernel_width",
    "single_stars",
    "stamps_with_points",
    "subtract",
]


@dataclass(frozen=True)
class DiaSettings:
    """How a frame is subtracted.

    Attributes
    ----------
    kernel : KernelSettings
        The kernel's basis and fit.
    stamp_snr : float
        Stars the kernel is fitted on have at least this signal-to-noise on the reference.
    max_stamps : int
        At most this many stamps, the brightest of each cell of a 6 x 6 grid over the chip first.
    saturation : float or None
        Stars whose peak on the reference or the frame reaches 80 % of this [ADU] are not fitted on.
    neighbour_fraction : float
        A star with a neighbour inside its stamp brighter than this fraction of its flux is not fitted on.
    model_noise : float
        The kernel's own error, as a fraction of the PSF-matched reference added to each pixel's noise: no
        kernel matches a star's core exactly (a registration error of a tenth of a pixel, a PSF that varies
        faster than the kernel's polynomial), and a bright constant star must not look variable.
    stamp_point_sigma : float
        A stamp whose residual after the fit holds a point source of this signal-to-noise (a matched filter of
        the frame's PSF, away from the stamp's own star) is dropped and the kernel fitted again: a transient or
        a varying neighbour beside a stamp's star is partly fitted away by the kernel otherwise (a 10-sigma point
        drawn 2 FWHM from a SkyCamZ stamp star lost a fifth of its flux). 0: never.
    min_kernel_sigma : float
        The narrowest kernel fitted without help [pixels, a Gaussian's sigma, :func:`kernel_width`]: a kernel can
        broaden the reference, not sharpen it, and with no width of its own it cannot smooth away what the
        reference's resampling did to its stars either. A frame whose kernel would be narrower (about as sharp
        as its reference, or sharper) is first convolved with the Gaussian that makes it this wide
        (:func:`subtract`). 0: never.

    Raises
    ------
    ValueError
        A value that cannot work, named.
    """

    kernel: KernelSettings = field(default_factory=KernelSettings)
    stamp_snr: float = 30.0
    max_stamps: int = 150
    saturation: float | None = None
    neighbour_fraction: float = 0.0
    model_noise: float = 0.0
    stamp_point_sigma: float = 0.0
    min_kernel_sigma: float = 0.0

    def __post_init__(self):
        if self.stamp_snr <= 0 or self.max_stamps < 3:
            raise ValueError(f"stamp_snr must be > 0 and max_stamps >= 3: {self.stamp_snr}, {self.max_stamps}")
        if self.stamp_point_sigma < 0:
            raise ValueError(f"stamp_point_sigma must be >= 0 (0: never), got {self.stamp_point_sigma}")
        if not 0 <= self.min_kernel_sigma < self.kernel.half_width / 2:
            raise ValueError(
                f"min_kernel_sigma must be in [0, half_width / 2 = {self.kernel.half_width / 2}), "
                f"got {self.min_kernel_sigma}"
            )


def frame_variance(image: np.ndarray, gain: float, read_noise_adu: float) -> np.ndarray:
    """A frame's variance per pixel from its own counts: photons (sky and stars) and read noise.

    For a frame whose read noise is known (the synthetic ones); on real frames `skylake dia` measures the sky's
    variance instead (:func:`skylake.dia.reference.sky_noise`: sep's rms holds the read noise and whatever else
    the sky's pixels carry).

    Parameters
    ----------
    image : numpy.ndarray
        The frame [ADU], its background included (not subtracted).
    gain : float
        Electrons per ADU.
    read_noise_adu : float
        Read noise [ADU rms].

    Returns
    -------
    numpy.ndarray
        The variance [ADU^2] (NaN where the image is).

    Raises
    ------
    ValueError
        ``gain`` not positive or ``read_noise_adu`` negative.
    """
    if not gain > 0 or read_noise_adu < 0:
        raise ValueError(f"gain must be > 0 and read noise >= 0: {gain}, {read_noise_adu}")
    return np.clip(image, 0, None) / gain + read_noise_adu**2


def choose_stamps(
    reference: np.ndarray, frame: np.ndarray, settings: DiaSettings, mask: np.ndarray | None = None
) -> list[tuple[float, float]]:
    """Stars to fit the kernel on: bright on the reference, unsaturated on both, isolated, spread over the chip.

    Parameters
    ----------
    reference : numpy.ndarray
        The reference on the frame's grid.
    frame : numpy.ndarray
        The frame.
    settings : DiaSettings
        The thresholds.
    mask : numpy.ndarray or None
        Pixels no stamp may hold (the reference's missing or saturated ones).

    Returns
    -------
    list of tuple of float
        Stamp centres ``(x, y)``.
    """
    import sep

    ref = np.ascontiguousarray(np.nan_to_num(reference), dtype=np.float64)
    bkg = sep.Background(ref, mask=mask)
    objects = sep.extract(ref - bkg.back(), 5.0, err=bkg.globalrms, mask=mask, minarea=5)
    if len(objects) == 0:
        return []
    snr = objects["flux"] / (bkg.globalrms * np.sqrt(objects["npix"]))  # the sky's noise alone: a ranking
    x, y = objects["x"], objects["y"]
    half = 2 * settings.kernel.half_width
    flux = objects["flux"]
    # a neighbour inside the stamp makes a blend the kernel would fit to (a deep reference shows faint neighbours
    # of every star: neighbour_fraction lets the faint ones pass); a tree finds each box's neighbours (a 4k
    # frame has 10^5 detections: all pairs took a minute)
    isolated = _brighter_within(x, y, flux, half + 3, settings.neighbour_fraction) == 1  # itself alone
    ok = isolated & (snr >= settings.stamp_snr)
    ok[ok] = single_stars(ref - bkg.back(), objects[ok], settings.kernel.half_width, mask)
    if mask is not None and mask.any():
        from scipy.ndimage import maximum_filter

        near_mask = maximum_filter(mask.astype(np.uint8), size=2 * half + 1).astype(bool)
        iy = np.clip(np.round(y).astype(int), 0, mask.shape[0] - 1)
        ok &= ~near_mask[iy, np.clip(np.round(x).astype(int), 0, mask.shape[1] - 1)]
    if settings.saturation is not None:
        ix, iy = np.round(x).astype(int), np.round(y).astype(int)
        ok &= objects["peak"] + bkg.back()[iy, ix] < 0.8 * settings.saturation
        ok &= frame[iy, ix] < 0.8 * settings.saturation
    ny, nx = reference.shape
    cell = (np.minimum(y * 6 // ny, 5) * 6 + np.minimum(x * 6 // nx, 5)).astype(int)
    order = np.lexsort((-objects["flux"], cell))  # cell by cell, brightest first
    starts = np.flatnonzero(np.r_[True, np.diff(cell[order]) != 0])
    rank = np.empty(len(objects), int)  # each star's place among its cell's: the cells take turns
    rank[order] = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    ranked = np.lexsort((-objects["flux"], rank))
    ranked = ranked[ok[ranked]]
    return [(float(x[k]), float(y[k])) for k in ranked[: settings.max_stamps]]


def _brighter_within(x: np.ndarray, y: np.ndarray, flux: np.ndarray, reach: float, fraction: float) -> np.ndarray:
    """How many detections (itself among them) within ``reach`` pixels of each (a square: the stamp's box) are
    brighter than ``fraction`` of it; from each close pair once (a 4k frame: ~1e5 detections, ~1e6 pairs)."""
    from scipy.spatial import cKDTree

    i, j = cKDTree(np.c_[x, y]).query_pairs(reach, p=np.inf, output_type="ndarray").T.reshape(2, -1)
    counts = (flux > fraction * flux).astype(int)
    counts += np.bincount(i, weights=flux[j] > fraction * flux[i], minlength=len(x)).astype(int)
    counts += np.bincount(j, weights=flux[i] > fraction * flux[j], minlength=len(x)).astype(int)
    return counts


#: A stamp candidate this many robust sigmas broader or more elongated than the candidates' median is a blend.
BLEND_SIGMA = 3.0


def single_stars(image: np.ndarray, objects: np.ndarray, radius: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Which detections look like one star: not broader nor more elongated than the rest.

    Two stars closer than the PSF are one detection to sep; as a stamp such a blend is the brightest "star" of a
    crowded field, its flux ratio is not the frame's if either star varies, and with its many bright pixels it
    sets the kernel's scale (measured on a SYNTHETIC crowded field: one blend of two neighbours and a variable
    moved every kernel's scale by 1-2 %). A single star has the PSF's half-light radius (sep's ``flux_radius``
    within ``radius``) and ellipticity (``1 - b/a``); a blend is broader or more elongated than the median of the
    detections by more than :data:`BLEND_SIGMA` robust sigmas (each sigma at least 2 % of the median radius
    and 0.02 in ellipticity, so a field of identical stars does not reject its own noise). On SYNTHETIC stars
    of FWHM 1.8 px, pairs 1.2-1.8 px apart have ellipticities of 0.13-0.23 against 0.007 (tests/test_dia.py).

    Parameters
    ----------
    image : numpy.ndarray
        The image, sky subtracted.
    objects : numpy.ndarray
        The detections on it, as sep gives them (``x``, ``y``, ``a``, ``b``).
    radius : float
        The aperture of the half-light radius [pixels].
    mask : numpy.ndarray or None
        Pixels left out.

    Returns
    -------
    numpy.ndarray
        True for a detection that looks like one star (all True with fewer than 5 detections: no median).
    """
    import sep
    from astropy.stats import mad_std

    single = np.ones(len(objects), bool)
    if len(objects) < 5:
        return single
    r50, flag = sep.flux_radius(
        image, objects["x"], objects["y"], np.full(len(objects), float(radius)), 0.5, mask=mask, subpix=5
    )
    ellipticity = 1.0 - objects["b"] / np.maximum(objects["a"], 1e-9)
    for value, floor in ((r50, 0.02 * np.nanmedian(r50)), (ellipticity, 0.02)):
        good = np.isfinite(value) & (flag == 0)
        if good.sum() < 5:
            continue
        sigma = max(mad_std(value[good]), floor)
        single &= ~(np.isfinite(value) & (value > np.median(value[good]) + BLEND_SIGMA * sigma))
    return single


@dataclass
class Difference:
    """A frame less its PSF-matched reference.

    Attributes
    ----------
    image : numpy.ndarray
        The difference [ADU].
    variance : numpy.ndarray
        Its variance [ADU^2]: the frame's plus the reference's convolved with the kernel squared; infinite
        around saturated stars (within the kernel's reach), which no kernel can match.
    solution : KernelSolution
        The kernel.
    model : numpy.ndarray
        The convolved reference plus the differential background (what was subtracted).
    stamps : list of tuple of float
        The stamps offered to the fit.
    broadened : float
        The sigma [pixels] of the Gaussian the frame was convolved with before the fit (it was about as sharp as
        its reference or sharper: ``DiaSettings.min_kernel_sigma``); 0 when it was not. The difference, and
        ``image + model``, have the broadened frame's PSF.
    """

    image: np.ndarray
    variance: np.ndarray
    solution: KernelSolution
    model: np.ndarray = field(repr=False)
    stamps: list = field(default_factory=list, repr=False)
    broadened: float = 0.0

    def normalised_rms(self, stamps: list[tuple[float, float]] | None = None, half: int | None = None) -> float:
        """The rms of ``D / sqrt(var)`` over stamps (1: residuals at the noise).

        Parameters
        ----------
        stamps : list of tuple of float or None
            Centres ``(x, y)`` (None: those the kernel was fitted on).
        half : int or None
            Half width of each box (None: the kernel's half width).

        Returns
        -------
        float
            The rms; NaN without a stamp on the chip.
        """
        half = self.solution.settings.half_width if half is None else half
        ny, nx = self.image.shape
        values = []
        for x, y in self.stamps if stamps is None else stamps:
            ix, iy = int(round(x)), int(round(y))
            if half <= ix < nx - half and half <= iy < ny - half:
                box = np.s_[iy - half : iy + half + 1, ix - half : ix + half + 1]
                var = self.variance[box]
                seen = np.isfinite(var) & (var > 0)  # masked pixels (a saturated star's reach) are no residual
                values.append(self.image[box][seen] / np.sqrt(var[seen]))
        values = np.concatenate(values) if values else np.empty(0)
        return float(np.sqrt(np.nanmean(values**2))) if values.size else float("nan")


def subtract(
    frame: np.ndarray,
    variance: np.ndarray,
    reference: np.ndarray,
    reference_variance: np.ndarray,
    settings: DiaSettings | None = None,
    stamps: list[tuple[float, float]] | None = None,
    mask: np.ndarray | None = None,
    frame_share: float = 0.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> Difference:
    """Subtract the reference, PSF-matched to the frame, from the frame.

    Parameters
    ----------
    frame : numpy.ndarray
        The frame [ADU], background included.
    variance : numpy.ndarray
        Its variance [ADU^2] (:func:`frame_variance`).
    reference : numpy.ndarray
        The reference on the frame's grid (its seeing at most the frame's).
    reference_variance : numpy.ndarray
        The reference's variance on the same grid.
    settings : DiaSettings or None
        How (None: the defaults).
    stamps : list of tuple of float or None
        Stars to fit the kernel on (None: :func:`choose_stamps`).
    mask : numpy.ndarray or None
        Pixels the reference cannot match (not covered, saturated in a frame it stacks): they, and the
        kernel's reach around them, get an infinite variance and hold no stamp.
    frame_share : float
        The frame's share of the reference's weight when the reference stacks it: the two share that noise,
        so the difference's variance is smaller by twice the share of the frame's.
    offset : tuple of float
        ``(ox, oy)`` [pixels]: a star at ``(u, v)`` on ``reference`` is at ``(u + ox, v + oy)`` on the frame (a
        reference moved by whole pixels, :func:`skylake.dia.reference.on_frame`); the kernel takes up the shift.
        ``stamps`` are positions on the reference, the difference's on the frame.

    Returns
    -------
    Difference
        The difference, its variance and the kernel.

    Raises
    ------
    ValueError
        Too few stamps to fit the kernel (named with the number found).
    """
    settings = settings or DiaSettings()
    if offset != (0.0, 0.0):  # the basis centred where the reference's points go: the kernel holds the shift
        settings = replace(settings, kernel=replace(settings.kernel, centre=tuple(float(o) for o in offset)))
    if not 0 <= frame_share < 0.5:
        raise ValueError(f"frame_share = {frame_share} must be in [0, 0.5): a reference of at least 3 frames")
    stamps = choose_stamps(reference, frame, settings, mask) if stamps is None else stamps
    if len(stamps) < 3:
        raise ValueError(f"{len(stamps)} stars bright and isolated enough to fit a kernel on; at least 3 needed")
    original = frame  # (saturation is judged on the frame as it came)
    centres = [(round(x), round(y)) for x, y in stamps]
    broadened = 0.0
    if settings.min_kernel_sigma > 0:
        width = kernel_width(frame, reference, stamps, settings.kernel.half_width, mask, offset=offset)
        if width < settings.min_kernel_sigma:  # the frame is about as sharp as the reference or sharper
            broadened = float(np.sqrt(settings.min_kernel_sigma**2 - np.sign(width) * width**2))
            frame, variance = broaden(frame, variance, broadened)
            if mask is not None:
                mask = _grown(mask, int(np.ceil(3 * broadened)))
    solution = fit_kernel(frame, variance, reference, centres, settings.kernel)
    if settings.stamp_point_sigma > 0:
        crowded = stamps_with_points(frame, variance, reference, solution, centres, settings, mask)
        if crowded.any() and (~crowded).sum() >= 3:
            centres = [c for c, bad in zip(centres, crowded) if not bad]
            solution = fit_kernel(frame, variance, reference, centres, settings.kernel)
    model = solution.convolve(reference)
    ny, nx = frame.shape
    centre = solution.kernel_at((nx - 1) / 2, (ny - 1) / 2)
    ref_var = oaconvolve(np.nan_to_num(reference_variance.astype(np.float64)), centre**2, mode="same")
    total = (
        (1.0 - 2.0 * frame_share) * variance
        + ref_var
        + (settings.model_noise * (model - solution.background_image())) ** 2
    )
    if settings.saturation is not None:  # a clipped star cannot be matched: its pixels and the kernel's reach
        reach = settings.kernel.half_width + int(np.ceil(4 * broadened))
        total[_saturated(original, reference, settings.saturation, reach)] = np.inf
    if mask is not None and mask.any():
        total[_grown(mask, settings.kernel.half_width)] = np.inf
    on_frame = [(x + offset[0], y + offset[1]) for x, y in stamps]
    return Difference(
        image=frame - model, variance=total, solution=solution, model=model, stamps=on_frame, broadened=broadened
    )


def stamps_with_points(
    frame: np.ndarray,
    variance: np.ndarray,
    reference: np.ndarray,
    solution: KernelSolution,
    centres,
    settings: DiaSettings,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Which stamps' residuals hold a point source beside their star: something the reference does not have.

    Each stamp's residual (the frame less the reference convolved with the kernel at the stamp, and the
    background) is searched with a matched filter of the frame's PSF (a Gaussian of its stamps' median
    half-light radius) for a point of ``settings.stamp_point_sigma`` or more, either sign, outside 1.5 FWHM of
    the stamp's centre (the star's own residual is the kernel's to fit), the noise that of the difference (the
    frame's variance, the reference's through the kernel and ``settings.model_noise`` of the model).

    Parameters
    ----------
    frame, variance : numpy.ndarray
        The frame (as fitted: broadened if it was) and its variance.
    reference : numpy.ndarray
        The reference on the frame's grid.
    solution : KernelSolution
        The kernel fitted on the stamps.
    centres : list of tuple of int
        The stamps' centres ``(x, y)``.
    settings : DiaSettings
        The threshold and the model's noise.
    mask : numpy.ndarray or None
        Pixels left out.

    Returns
    -------
    numpy.ndarray
        True for a stamp to leave out.
    """
    from astropy.convolution import Gaussian2DKernel
    from astropy.stats import mad_std
    from scipy.signal import fftconvolve

    h = settings.kernel.half_width
    half = 2 * h
    ny, nx = frame.shape
    r50 = _half_light_radii(frame, centres, h, mask)
    crowded = np.zeros(len(centres), bool)
    if np.isfinite(r50).sum() < 3:
        return crowded
    sigma = float(np.nanmedian(r50)) / 1.1774  # a Gaussian's half-light radius is 1.1774 sigma
    size = 2 * 3 * int(np.ceil(sigma)) + 1
    psf = Gaussian2DKernel(sigma, x_size=size, y_size=size).array  # sampled, unit sum
    clean = np.nan_to_num(reference.astype(np.float64))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    e = psf.shape[0] // 2
    outside = np.hypot(xx, yy) > 1.5 * 2.3548 * sigma
    outside[:e], outside[-e:], outside[:, :e], outside[:, -e:] = False, False, False, False  # the filter fits
    peaks, pool = np.zeros(len(centres)), []
    for k, (cx, cy) in enumerate(centres):
        if cx - half < h or cy - half < h or cx + half >= nx - h or cy + half >= ny - h:
            continue
        box = np.s_[cy - half : cy + half + 1, cx - half : cx + half + 1]
        cut = clean[cy - half - h : cy + half + h + 1, cx - half - h : cx + half + h + 1]
        model = fftconvolve(cut, solution.kernel_at(cx, cy), mode="valid") + solution.background_image_at(cx, cy)
        noise = variance[box] + (settings.model_noise * model) ** 2
        use = np.isfinite(frame[box]) & np.isfinite(noise) & (noise > 0)
        if use.mean() < 0.9:
            continue
        weight = np.where(use, 1.0 / np.where(use, noise, 1.0), 0.0)
        flux = fftconvolve(np.where(use, frame[box] - model, 0.0) * weight, psf, mode="same")
        with np.errstate(invalid="ignore", divide="ignore"):
            snr = flux / np.sqrt(fftconvolve(weight, psf**2, mode="same"))
        snr = np.where(outside & np.isfinite(snr), snr, 0.0)
        peaks[k] = np.abs(snr).max()
        pool.append(snr[outside][::7])  # a sample of the filtered noise, to calibrate it
    if not pool:
        return crowded
    # the pixels' noise may be correlated (a broadened frame, a resampled reference): the filtered residual's own
    # robust width over the stamps, not the variance's promise, says what one sigma is
    return peaks >= settings.stamp_point_sigma * max(mad_std(np.concatenate(pool)), 1e-12)


def kernel_width(
    frame: np.ndarray,
    reference: np.ndarray,
    stamps,
    radius: float,
    mask: np.ndarray | None = None,
    offset: tuple[float, float] = (0.0, 0.0),
) -> float:
    """The sigma of the Gaussian kernel that would take the reference's PSF to the frame's, from the stamps' stars.

    Each star's half-light radius within ``radius`` (sep's ``flux_radius``, each image less its own sep sky) is
    measured on both images; for Gaussian PSFs ``sigma^2 = (r_frame^2 - r_reference^2) / (2 ln 2)`` of the
    medians. The same stars and aperture on both images: the depth and the detection threshold, which bias
    isophotal moments, do not enter. Measured on SYNTHETIC Gaussian stars within 0.03 px of the truth for
    kernels of 0.4-0.85 px, and within 0.2 px of 0 for a frame as sharp as its reference (tests/test_dia.py).

    Parameters
    ----------
    frame, reference : numpy.ndarray
        The frame and its reference on the same grid.
    stamps : list of tuple of float
        The stars ``(x, y)`` (:func:`choose_stamps`).
    radius : float
        The aperture's radius [pixels].
    mask : numpy.ndarray or None
        Pixels to leave out.
    offset : tuple of float
        Where the stars are on the frame relative to ``stamps`` (positions on the reference) [pixels].

    Returns
    -------
    float
        The sigma [pixels]; negative (``-sqrt(-sigma^2)``) for a frame sharper than its reference; NaN with
        fewer than 3 stars measured on both.
    """
    on_frame = [(x + offset[0], y + offset[1]) for x, y in stamps]
    radii = [_half_light_radii(image, at, radius, mask) for image, at in ((frame, on_frame), (reference, stamps))]
    good = np.isfinite(radii[0]) & np.isfinite(radii[1])
    if good.sum() < 3:
        return float("nan")
    variance = (np.median(radii[0][good]) ** 2 - np.median(radii[1][good]) ** 2) / (2 * np.log(2))
    return float(np.sign(variance) * np.sqrt(abs(variance)))


def _half_light_radii(image: np.ndarray, stars, radius: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Each star's half-light radius within ``radius`` [pixels] (sep's ``flux_radius``, the image less its sep
    sky), NaN where sep flags it."""
    import sep

    x = np.array([float(s[0]) for s in stars])
    y = np.array([float(s[1]) for s in stars])
    bad = ~np.isfinite(image) if mask is None else ~np.isfinite(image) | mask
    data = np.ascontiguousarray(np.where(bad, 0.0, image), dtype=np.float64)
    sky = sep.Background(data, mask=bad if bad.any() else None).back()
    r, flag = sep.flux_radius(data - sky, x, y, np.full(x.size, float(radius)), 0.5, mask=bad, subpix=5)
    return np.where((flag == 0) & (r > 0), r, np.nan)


def broaden(frame: np.ndarray, variance: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A frame convolved with a Gaussian, its variance with the Gaussian squared (the noise it correlates is
    :func:`skylake.dia.stage.noise_scale`'s to measure); NaN pixels, and what the Gaussian would spread them
    over, stay NaN (their variance infinite).

    Parameters
    ----------
    frame, variance : numpy.ndarray
        The frame [ADU] and its variance [ADU^2].
    sigma : float
        The Gaussian's sigma [pixels].

    Returns
    -------
    frame, variance : numpy.ndarray
        Both convolved.
    """
    from astropy.convolution import Gaussian2DKernel

    half = int(np.ceil(4 * sigma))
    g = Gaussian2DKernel(sigma, x_size=2 * half + 1, y_size=2 * half + 1).array  # sampled, unit sum
    bad = ~np.isfinite(frame) | ~np.isfinite(variance)
    out = oaconvolve(np.where(bad, 0.0, frame), g, mode="same")
    out_var = oaconvolve(np.where(bad, 0.0, variance), g**2, mode="same")
    if bad.any():
        spread = _grown(bad, half)
        out[spread], out_var[spread] = np.nan, np.inf
    return out, out_var


def _saturated(frame: np.ndarray, reference: np.ndarray, level: float, reach: int) -> np.ndarray:
    """Pixels at or above ``level`` in the frame or the reference, grown by ``reach`` pixels."""
    hot = (np.nan_to_num(frame) >= level) | (np.nan_to_num(reference) >= level)
    return _grown(hot, reach) if hot.any() else hot


def _grown(mask: np.ndarray, reach: int) -> np.ndarray:
    """A mask grown by ``reach`` pixels in a square: a separable maximum filter (a binary dilation by a
    (2 reach + 1)^2 square gives the same, 20x slower)."""
    from scipy.ndimage import maximum_filter

    return maximum_filter(mask.astype(np.uint8), size=2 * reach + 1, mode="constant", cval=0) > 0
