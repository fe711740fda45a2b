"""Reduce one raw science frame at ingest with the masters nearest in time (the frame task calls it).

Steps run in the order of :data:`skylake.reduce.settings.STEPS`::

    overscan, trim -> - bias -> - dark rate x exptime -> / flat -> - (sky - 1) x median -> bad pixels masked (NaN)
    -> cosmic rays

Bad pixels become NaN, so extraction masks them and every source whose apertures touch one gets
``APER_HASMASKED``; cosmic-ray pixels (astroscrappy's L.A.Cosmic) are replaced by astroscrappy's clean
values and the sources they touch get ``COSMIC_RAY``. Saturation is judged on the raw pixels, before any
of this. The frame's row records every master used, how far in time the farthest was and what was skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skylake.errors import FrameRejected
from skylake.reduce import masters as mst
from skylake.reduce import store
from skylake.reduce.frame_types import frame_type
from skylake.reduce.settings import DEFAULT_FRAME_TYPES, reduction_settings

__all__ = [
    "Reduced",
    "check_frame_type",
    "reduce_frame",
    "apply_masters",
    "cosmic_ray_flags",
    "ID_COLUMNS",
    "BEFORE_SKY",
]

#: Frame columns of the masters used, per step.
ID_COLUMNS = {"bias": ("bias",), "dark": ("dark",), "flat": ("flat",), "sky": ("sky",), "badpix": ("hotpix", "deadpix")}
#: The steps a science frame gets before it goes into a sky frame.
BEFORE_SKY = ("overscan", "bias", "dark", "flat", "badpix")


@dataclass
class Reduced:
    """What reduction did to a frame's pixels."""

    saturated: np.ndarray | None  # raw pixels at or above the saturation level, before reduction
    cosmics: np.ndarray | None  # pixels astroscrappy found hit (and cleaned)


def check_frame_type(header, profile) -> None:
    """Reject a calibration frame given to ingest, naming what its header says.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    profile : skylake.profile.Profile
        Its profile (``[reduction.frame_types]`` when it has one).

    Raises
    ------
    FrameRejected
        The header declares a bias, dark or flat frame.
    """
    types = reduction_settings(profile).frame_types if profile.reduction is not None else DEFAULT_FRAME_TYPES
    kind, said = frame_type(header, types)
    if kind in mst.IMAGE_KINDS:
        raise FrameRejected(
            f"a {kind} frame ({said}), not a science frame: combine calibration frames into masters with "
            f"`skylake masters build LAKE PATH... --pipeline {profile.name}`"
        )


def _masters_rows(lake_root: str | None, profile_name: str):
    if not lake_root:
        return None
    from skylake.lake import Lake

    return store.read_table(Lake.open(lake_root, catch_up=False), profile_name).to_pandas()


def reduce_frame(image, rec: dict, profile, lake_root: str | None) -> Reduced:
    """Reduce ``image.data`` in place (or replace it, when trimmed) and record the masters in ``rec``.

    Parameters
    ----------
    image : skylake.frame.reading.Image
        The raw image; its ``data`` becomes the reduced image.
    rec : dict
        The frame's record so far (``mjd``, ``night``, ``exptime``, ``gain``, ``saturation``, ``instrument``,
        ``filter``); the reduction's columns are added to it.
    profile : skylake.profile.Profile
        The camera's profile, with a ``[reduction]`` section.
    lake_root : str or None
        The lake whose masters are used.

    Returns
    -------
    Reduced
        The raw saturated pixels and the cosmic-ray pixels.

    Raises
    ------
    FrameRejected
        A step without a usable master when ``reduction.missing = "reject"``, or a master from another night
        when ``reduction.other_night = "reject"``, with the reason.
    """
    settings = reduction_settings(profile)
    saturated = image.data >= np.float32(rec["saturation"]) if rec.get("saturation") else None
    data = mst.prepare(image.data, settings)
    if saturated is not None and data.shape != saturated.shape:
        saturated = mst.trim(saturated, settings)
    rows = _masters_rows(lake_root, profile.name) if any(s in ID_COLUMNS for s in settings.steps) else None
    binning = mst.binning(image.header)
    data, chosen = apply_masters(data, rec, settings, rows, binning, lake_root, settings.steps, profile.name)
    cosmics = None
    if "cosmics" in settings.steps:
        read_noise = settings.read_noise
        if "bias" in chosen and chosen["bias"]["noise"] > 0:
            read_noise = float(chosen["bias"]["noise"])
        cosmics = _cosmics(data, rec, settings, read_noise)
        rec["n_cosmic_pixels"] = int(cosmics.sum())
    image.data = data
    return Reduced(saturated=saturated, cosmics=cosmics)


def apply_masters(data, rec: dict, settings, rows, binning: str, lake_root: str | None, steps, profile="") -> tuple:
    """Subtract, divide and mask with the masters nearest in time, for the master steps among ``steps``.

    Parameters
    ----------
    data : numpy.ndarray
        The image after overscan and trimming (float32; changed in place).
    rec : dict
        The frame's ``mjd``, ``night``, ``exptime``, ``instrument`` and ``filter``; the masters used
        (``bias_id``, ``dark_id``, ``flat_id``, ``sky_id``, ``bpm_ids``), ``master_offset_days`` and the
        ``reduction`` note are added to it.
    settings : skylake.reduce.settings.ReductionSettings
        The profile's reduction settings.
    rows : pandas.DataFrame or None
        The lake's masters (:func:`skylake.reduce.store.read_table`).
    binning : str
        The frame's binning (:func:`skylake.reduce.masters.binning`).
    lake_root : str or None
        The lake whose master images are read.
    steps : list of str
        The steps to apply (a subset of ``settings.steps``, in its order).
    profile : str, optional
        The profile whose masters ``rows`` are (named when a master is missing).

    Returns
    -------
    data : numpy.ndarray
        The reduced image (bad pixels NaN).
    chosen : dict
        The row of the master used, by kind.

    Raises
    ------
    FrameRejected
        As :func:`reduce_frame`.
    """
    notes, offsets, chosen = [], [], {}
    for step in (s for s in steps if s in ID_COLUMNS):
        found, why = {}, []
        for kind in ID_COLUMNS[step]:
            row, reason = store.choose(
                rows,
                kind,
                mjd=rec["mjd"],
                instrument=rec["instrument"],
                binning=binning,
                shape=data.shape,
                filter=rec["filter"],
                max_age_days=settings.max_age_days,
                profile=profile,
            )
            if row is None:
                why.append(reason)
                continue
            if row["night"] != rec["night"]:
                message = f"{kind} master {row['master_id']} is from night {row['night']}, not {rec['night']}"
                if settings.other_night == "reject":
                    raise FrameRejected(f"{message} (reduction.other_night = 'reject')")
                notes.append(message)
            found[kind] = row
            offsets.append(abs(row["mjd"] - rec["mjd"]))
        if not found:
            message = f"no usable {step} master: {'; '.join(why)}"
            if settings.missing == "reject":
                raise FrameRejected(message)
            notes.append(f"{step} skipped: {message}")
        elif why:  # a bad-pixel step with one of its two masks: used, and the other's absence said
            notes.append(f"{step} in part: {'; '.join(why)}")
        chosen.update(found)
    img = {k: store.load_image(lake_root, row["path"]) for k, row in chosen.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        if "bias" in img:
            data -= img["bias"]
        if "dark" in img:
            data -= img["dark"] * np.float32(rec["exptime"])
        if "flat" in img:
            data /= img["flat"]
            data[~(img["flat"] > 0)] = np.nan
        if "sky" in img:
            # PRIME subtracts sky x median(image); the sky's level is kept (sky brightness is a product), so
            # only the pattern goes: (sky - 1) x median (of every 4th pixel: 1/16 of the cost, ~0.1 ADU off)
            level = np.float32(np.nanmedian(data[::4, ::4]))
            data -= (img["sky"] - np.float32(1.0)) * level
    bad = None
    for kind in ("hotpix", "deadpix"):
        if kind in img:
            bad = img[kind] > 0 if bad is None else bad | (img[kind] > 0)
    if bad is not None:
        data[bad] = np.nan
    rec.update(
        bias_id=chosen.get("bias", {}).get("master_id"),
        dark_id=chosen.get("dark", {}).get("master_id"),
        flat_id=chosen.get("flat", {}).get("master_id"),
        sky_id=chosen.get("sky", {}).get("master_id"),
        bpm_ids=",".join(chosen[k]["master_id"] for k in ("hotpix", "deadpix") if k in chosen) or None,
        master_offset_days=max(offsets) if offsets else None,
        reduction="; ".join([" ".join(steps)] + notes),
    )
    return data, chosen


def _cosmics(data: np.ndarray, rec: dict, settings, read_noise: float) -> np.ndarray:
    """Find cosmic-ray hits with astroscrappy (L.A.Cosmic) and replace them in ``data`` by its clean values."""
    import astroscrappy

    bad = ~np.isfinite(data)
    work = np.where(bad, np.float32(np.nanmedian(data)), data).astype(np.float32)
    crmask, clean = astroscrappy.detect_cosmics(
        work,
        inmask=bad,
        gain=float(rec["gain"]),
        readnoise=read_noise * float(rec["gain"]),
        sigclip=settings.cosmics_sigclip,
        objlim=settings.cosmics_objlim,
        satlevel=np.inf,
        sepmed=True,
        cleantype="meanmask",
    )
    crmask &= ~bad
    data[crmask] = clean[crmask]
    return crmask


def cosmic_ray_flags(cosmics: np.ndarray | None, x, y, radius: float) -> np.ndarray:
    """Sources with a cosmic-ray pixel within ``radius`` of their centre.

    Parameters
    ----------
    cosmics : numpy.ndarray or None
        The frame's cosmic-ray pixels.
    x, y : numpy.ndarray
        Source positions [pix].
    radius : float
        The largest aperture radius [pix].

    Returns
    -------
    numpy.ndarray
        True for each source with a cosmic-ray pixel (bool per source).
    """
    if cosmics is None or not cosmics.any() or not len(x):
        return np.zeros(len(x), bool)
    import sep

    hits = sep.sum_circle(cosmics.astype(np.float64), np.asarray(x, float), np.asarray(y, float), radius, subpix=0)[0]
    return hits > 1e-6
