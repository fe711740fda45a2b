"""Combining raw calibration frames into masters (pure functions; :mod:`skylake.reduce.store` keeps them).

ccdproc does the arithmetic (sigma-clipped combination, overscan, trimming); this module decides what is
combined with what, as LSST's ISR and PRIME's pipeline do:

============  ==================================================================================
bias          the clipped median (or mean) of the bias frames; its ``noise`` is the read noise [ADU]
dark          the clipped combination of ``(dark - bias) / exptime``: a dark-current *rate* [ADU/s],
              scaled to each science frame's exposure time
flat          each ``flat - bias - dark * t`` normalised by its median, combined, normalised again
              (one per filter)
sky           PRIME's sky frame: the night's dithered science frames, reduced, sources masked (sigma clipped and
              grown), each normalised by its median, median-combined, holes filled with box medians; median 1
              (one per night and filter)
hotpix        pixels whose dark rate is ``hot_sigma`` robust sigma above the median (a mask, from darks)
deadpix       pixels whose flat response is outside ``[dead_low, dead_high]`` (a mask, from flats)
============  ==================================================================================
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from dataclasses import dataclass, field

import numpy as np

from skylake.errors import FrameRejected
from skylake.reduce.settings import ReductionSettings

__all__ = [
    "IMAGE_KINDS",
    "MASK_KINDS",
    "SKY",
    "KINDS",
    "BY_FILTER",
    "RawFrame",
    "Master",
    "read_raw",
    "trim",
    "build",
    "prepare",
    "binning",
    "COMBINE_MEMORY",
]

#: Masters that are images subtracted or divided, and masters that are pixel masks.
IMAGE_KINDS = ("bias", "dark", "flat")
MASK_KINDS = ("hotpix", "deadpix")
#: A master made of science frames, not calibration frames.
SKY = "sky"
KINDS = IMAGE_KINDS + (SKY,) + MASK_KINDS
#: Masters matched to a frame by filter too.
BY_FILTER = ("flat", "deadpix", SKY)

#: ccdproc's combination works in tiles of at most this many bytes.
COMBINE_MEMORY = 2e9


@dataclass
class RawFrame:
    """One raw calibration (or science) image with what its header says."""

    path: str
    data: np.ndarray  # float32, overscan subtracted and trimmed when the profile says so
    mjd: float
    night: str
    exptime: float
    filter: str
    instrument: str
    binning: str


@dataclass
class Master:
    """A combined calibration image and its ``masters`` row (less ``batch_id`` and ``night``)."""

    image: np.ndarray
    row: dict = field(default_factory=dict)

    @property
    def master_id(self) -> str:
        """The master's identity.

        Returns
        -------
        str
            Its row's ``master_id`` (kind and content hash).
        """
        return self.row["master_id"]


def binning(header) -> str:
    """The binning of a frame, as masters and frames are matched on it.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.

    Returns
    -------
    str
        ``XBINNING x YBINNING`` (``1x1`` when absent).
    """
    x, y = header.get("XBINNING", 1), header.get("YBINNING", header.get("XBINNING", 1))
    try:
        return f"{int(x)}x{int(y)}"
    except (TypeError, ValueError):
        return f"{x}x{y}"


def prepare(data: np.ndarray, settings: ReductionSettings) -> np.ndarray:
    """Subtract the overscan (median per row, ccdproc.subtract_overscan) and trim, as the profile says.

    Parameters
    ----------
    data : numpy.ndarray
        A raw image.
    settings : ReductionSettings
        The profile's reduction settings.

    Returns
    -------
    numpy.ndarray
        The image as float32, C-contiguous (the input itself when there is nothing to do).
    """
    if "overscan" not in settings.steps and not settings.trim:
        return data
    import ccdproc
    from astropy.nddata import CCDData

    ccd = CCDData(data, unit="adu")
    if "overscan" in settings.steps:
        ccd = ccdproc.subtract_overscan(ccd, fits_section=settings.overscan, median=True, overscan_axis=None)
    if settings.trim:
        ccd = ccdproc.trim_image(ccd, fits_section=settings.trim)
    return np.ascontiguousarray(ccd.data, dtype=np.float32)


def trim(mask: np.ndarray, settings: ReductionSettings) -> np.ndarray:
    """The part of a per-pixel array (e.g. a mask of the raw pixels) that :func:`prepare` keeps.

    Parameters
    ----------
    mask : numpy.ndarray
        An array of the raw image's shape.
    settings : ReductionSettings
        The profile's reduction settings.

    Returns
    -------
    numpy.ndarray
        Its trimmed part (itself without ``trim``).
    """
    if not settings.trim:
        return mask
    from ccdproc.utils.slices import slice_from_string

    return np.ascontiguousarray(mask[slice_from_string(settings.trim, fits_convention=True)])


def read_raw(path: str, profile, settings: ReductionSettings) -> tuple[RawFrame, str | None, str]:
    """Read a raw frame and its header's facts, with the frame type its header declares.

    Parameters
    ----------
    path : str
        The file.
    profile : skylake.profile.Profile
        The camera's profile (its header mapping and site).
    settings : ReductionSettings
        Its reduction settings.

    Returns
    -------
    frame : RawFrame
        The image (overscan subtracted and trimmed) and its facts.
    kind : str or None
        The frame type its header declares (:func:`skylake.reduce.frame_types.frame_type`).
    said : str
        What the header said about it.

    Raises
    ------
    FrameRejected
        An unreadable file or a header without a usable time, named.
    """
    from skylake.frame import header as hdr
    from skylake.frame import reading
    from skylake.reduce.frame_types import frame_type

    raw = reading.read_bytes(path, int(profile.max_image_mb * 1e6))
    images = reading.read_images(raw, profile.hdu, int(profile.max_image_mb * 1e6))
    if len(images) != 1:
        raise FrameRejected(f"{path}: {len(images)} images; a calibration frame must hold one")
    image = images[0]
    h = image.header
    kind, said = frame_type(h, settings.frame_types)
    key, value = hdr._first(h, profile.header.exptime)
    exptime = hdr._as_number(key, value, "exposure time") if key else 0.0
    if kind != "bias" and not exptime > 0:
        raise FrameRejected(f"{path}: no positive exposure time in the header (looked for {profile.header.exptime})")
    mjd, reference, _ = hdr.observation_time(h, profile.header)
    mjd += {"start": 0.5, "end": -0.5}.get(reference, 0.0) * exptime / 86400.0
    return (
        RawFrame(
            path=path,
            data=prepare(image.data, settings),
            mjd=mjd,
            night=hdr.observing_night(mjd, profile.site.timezone, profile.site.night_starts),
            exptime=float(exptime),
            filter=str(hdr._first(h, profile.header.filter)[1] or profile.defaults.filter).strip(),
            instrument=str(hdr._first(h, profile.header.instrument)[1] or profile.defaults.instrument).strip(),
            binning=binning(h),
        ),
        kind,
        said,
    )


def _combine(images: list[np.ndarray], settings: ReductionSettings, scale=None) -> np.ndarray:
    import ccdproc
    from astropy.nddata import CCDData
    from astropy.stats import mad_std

    if len(images) == 1:
        return np.asarray(images[0], dtype=np.float32)
    ccds = [CCDData(np.asarray(im, dtype=np.float32), unit="adu") for im in images]
    combined = ccdproc.combine(
        ccds,
        method="median" if settings.combine == "median" else "average",
        sigma_clip=len(images) >= 3,
        sigma_clip_low_thresh=settings.clip_sigma,
        sigma_clip_high_thresh=settings.clip_sigma,
        sigma_clip_func=np.ma.median,
        sigma_clip_dev_func=mad_std,
        scale=scale,
        mem_limit=COMBINE_MEMORY,
        dtype=np.float32,
    )
    return np.ascontiguousarray(combined.data, dtype=np.float32)


def _robust_std(values: np.ndarray) -> float:
    from astropy.stats import mad_std

    return float(mad_std(values[np.isfinite(values)]))


def _check_alike(frames: list[RawFrame], kind: str) -> None:
    if not frames:
        raise ValueError(f"no {kind} frames to combine")
    shapes = {f.data.shape for f in frames}
    if len(shapes) > 1:
        raise ValueError(f"{kind} frames of different shapes {sorted(shapes)}: give one camera mode at a time")
    binnings = {f.binning for f in frames}
    if len(binnings) > 1:
        raise ValueError(f"{kind} frames with different binnings {sorted(binnings)}: give one binning at a time")
    if kind in BY_FILTER:
        filters = {f.filter for f in frames}
        if len(filters) > 1:
            raise ValueError(f"{kind} frames of several filters {sorted(filters)}: a {kind} is built per filter")


def _row(kind: str, image: np.ndarray, frames: list[RawFrame], profile, settings, **extra) -> dict:
    mjds = np.array([f.mjd for f in frames])
    digest = hashlib.sha256(kind.encode() + np.ascontiguousarray(image).tobytes()).hexdigest()
    ny, nx = image.shape
    return {
        "master_id": f"{kind}-{digest[:16]}",
        "kind": kind,
        "profile": profile.name,
        "instrument": frames[0].instrument,
        "filter": frames[0].filter if kind in BY_FILTER else "",
        "binning": frames[0].binning,
        "nx": nx,
        "ny": ny,
        "n_frames": len(frames),
        "exptime": float(np.median([f.exptime for f in frames])),
        "mjd": float(np.median(mjds)),
        "mjd_first": float(mjds.min()),
        "mjd_last": float(mjds.max()),
        "combine": settings.combine if len(frames) > 1 else "single",
        "content_hash": digest,
        "sources": [f.path for f in frames],
        "level": float(np.nanmedian(image)) if kind in IMAGE_KINDS + (SKY,) else 0.0,
        "noise": 0.0,
        "n_bad": 0,
        "built_from": "",
        **extra,
    }


def build(kind: str, frames: list[RawFrame], profile, settings: ReductionSettings, *, bias=None, dark=None):
    """Combine raw frames of one kind into its master(s).

    Parameters
    ----------
    kind : str
        ``bias``, ``dark``, ``flat`` or ``sky``.
    frames : list of RawFrame
        The raw frames (one shape, binning and, for flats and skies, filter); for a sky, science frames already
        reduced with the bias, dark, flat and bad-pixel masks (bad pixels NaN).
    profile : skylake.profile.Profile
        The camera's profile.
    settings : ReductionSettings
        Its reduction settings (combination, clipping, bad-pixel limits).
    bias, dark : Master, optional
        The masters subtracted first (darks need a bias; flats use both when given).

    Returns
    -------
    list of Master
        The master, and for darks and flats the mask of bad pixels they show (``hotpix``, ``deadpix``).

    Raises
    ------
    ValueError
        No frames, frames that do not belong together, or a missing bias for darks, named.
    """
    _check_alike(frames, kind)
    if kind == SKY:
        return [_sky(frames, profile, settings)]
    shape = frames[0].data.shape
    for m in (bias, dark):
        if m is not None and m.image.shape != shape:
            raise ValueError(f"master {m.master_id} is {m.image.shape}, the {kind} frames {shape}")
    used = ",".join(m.master_id for m in (bias, dark) if m is not None)
    if kind == "bias":
        image = _combine([f.data for f in frames], settings)
        # the read noise: the scatter of the difference of two frames (whatever the combination), / sqrt 2
        # (clipped standard deviation: a MAD of integer ADU is biased by the rounding)
        noise = 0.0
        if len(frames) > 1:
            from astropy.stats import sigma_clipped_stats

            noise = float(sigma_clipped_stats(frames[1].data - frames[0].data, sigma=5.0)[2] / np.sqrt(2.0))
        return [Master(image, _row("bias", image, frames, profile, settings, noise=noise))]
    if kind == "dark":
        if bias is None:
            raise ValueError("darks need a bias master (build the bias first): a dark is scaled by exposure time")
        rates = [(f.data - bias.image) / np.float32(f.exptime) for f in frames]
        image = _combine(rates, settings)
        noise = _robust_std(image)
        hot = image > np.float32(np.nanmedian(image) + settings.hot_sigma * noise)
        dark_row = _row("dark", image, frames, profile, settings, noise=noise, built_from=used)
        mask_row = _row("hotpix", hot.astype(np.uint8), frames, profile, settings, n_bad=int(hot.sum()))
        mask_row["built_from"] = dark_row["master_id"]
        return [Master(image, dark_row), Master(hot.astype(np.uint8), mask_row)]
    if kind == "flat":
        corrected = []
        for f in frames:
            d = f.data.astype(np.float32, copy=True)
            if bias is not None:
                d -= bias.image
            if dark is not None:
                d -= dark.image * np.float32(f.exptime)
            corrected.append(d)
        medians = np.array([np.nanmedian(d) for d in corrected])
        if not (medians > 0).all():
            bad = [f.path for f, m in zip(frames, medians) if not m > 0]
            raise ValueError(f"flat frames with no positive level after bias/dark subtraction: {bad}")
        image = _combine(corrected, settings, scale=[1.0 / m for m in medians])
        image /= np.float32(np.nanmedian(image))
        dead = ~((image >= settings.dead_low) & (image <= settings.dead_high))
        flat_row = _row("flat", image, frames, profile, settings, noise=_robust_std(image), built_from=used)
        flat_row["level"] = float(np.median(medians))  # the raw flats' level [ADU], for the record
        mask_row = _row("deadpix", dead.astype(np.uint8), frames, profile, settings, n_bad=int(dead.sum()))
        mask_row["built_from"] = flat_row["master_id"]
        return [Master(image, flat_row), Master(dead.astype(np.uint8), mask_row)]
    raise ValueError(f"kind {kind!r} must be one of {list(IMAGE_KINDS)}")


def _sky(frames: list[RawFrame], profile, settings: ReductionSettings) -> Master:
    """PRIME's sky frame (module docstring) from reduced science frames."""
    from astropy.stats import sigma_clip
    from scipy.ndimage import binary_dilation

    if len(frames) < settings.sky_min_frames:
        raise ValueError(
            f"a sky frame needs at least reduction.sky_min_frames = {settings.sky_min_frames} dithered frames, "
            f"got {len(frames)}"
        )
    stack = np.empty((len(frames),) + frames[0].data.shape, np.float32)
    levels = []
    for plane, f in zip(stack, frames):
        clipped = sigma_clip(np.ma.masked_invalid(f.data), sigma=settings.sky_sigma, maxiters=5, masked=True, copy=True)
        masked = np.ma.getmaskarray(clipped) | ~np.isfinite(f.data)
        if settings.sky_grow:
            masked = binary_dilation(masked, iterations=settings.sky_grow)
        level = float(np.ma.median(clipped))
        if not level > 0:
            raise ValueError(f"{f.path}: sky level {level:g} after reduction; a sky frame needs a positive sky")
        levels.append(level)
        plane[:] = f.data / np.float32(level)
        plane[masked] = np.nan
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        image = np.nanmedian(stack, axis=0).astype(np.float32)
    del stack
    holes = ~np.isfinite(image)
    if holes.any():
        image[holes] = _box_median(image, settings.sky_box)[holes]
    image /= np.float32(np.median(image))
    row = _row(SKY, image, frames, profile, settings, noise=_robust_std(image), n_bad=int(holes.sum()))
    row["level"] = float(np.median(levels))  # the frames' sky level [ADU], for the record
    return Master(image, row)


def _box_median(image: np.ndarray, box: int) -> np.ndarray:
    """The NaN-ignoring median of ``image`` in ``box`` x ``box`` boxes, back at full size (empty boxes: the
    image's median)."""
    ny, nx = image.shape
    py, px = -ny % box, -nx % box
    padded = np.pad(image, ((0, py), (0, px)), constant_values=np.nan)
    blocks = padded.reshape(padded.shape[0] // box, box, padded.shape[1] // box, box).swapaxes(1, 2)
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        medians = np.nanmedian(blocks.reshape(blocks.shape[0], blocks.shape[1], -1), axis=2)
    medians[~np.isfinite(medians)] = np.nanmedian(image)
    return np.repeat(np.repeat(medians, box, axis=0), box, axis=1)[:ny, :nx]


@contextlib.contextmanager
def _quiet_nan_warnings():
    """All-NaN slices are expected here (pixels every frame masks): they are filled afterwards."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        yield
