"""Reading all-sky frames: the image as native float, the exposure time and the mid-exposure time.

Headers of all-sky cameras are not standard: IceAct writes ``EXPOSURE`` as a *string* and
``DATE-OBS`` (UTC, start of the exposure); the CTA camera writes ``TIMEUTC`` ("YYYY-MM-DD hh:mm:ss")
and no exposure time. :func:`frame_time` reads them explicitly and says which keyword it used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.time import Time, TimeDelta

__all__ = ["AllSkyFrame", "read_allsky_frame", "frame_time", "exposure_time"]

_TIME_KEYS = ("DATE-OBS", "TIMEUTC", "DATE_OBS", "UTC1")
_EXPOSURE_KEYS = ("EXPTIME", "EXPOSURE", "EXP_TIME")


@dataclass
class AllSkyFrame:
    """An all-sky frame: ``data`` (float64, native, NaN where the file has no data), its header,
    mid-exposure ``time`` (UTC), ``exptime_s`` (None if the header has none) and ``time_note``
    (which keyword and assumption gave the time)."""

    data: np.ndarray
    header: fits.Header
    time: Time
    exptime_s: float | None
    time_note: str


def exposure_time(header: fits.Header) -> float | None:
    """Exposure time in s from ``EXPTIME``/``EXPOSURE``/``EXP_TIME`` (numbers or numeric strings)."""
    for key in _EXPOSURE_KEYS:
        if key in header:
            value = header[key]
            try:
                v = float(str(value).strip())
            except ValueError:
                raise ValueError(f"header {key} = {value!r} is not a number of seconds") from None
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"header {key} = {value!r} is not a valid exposure time")
            return v
    return None


def frame_time(header: fits.Header, exptime_s: float | None = None, *, time_is: str = "start") -> tuple[Time, str]:
    """Mid-exposure UTC time of a frame.

    Parameters
    ----------
    header : Header
    exptime_s : float, optional
        Exposure time, s; with ``time_is="start"`` half of it is added.
    time_is : {"start", "mid"}
        What the header's time stamp marks.

    Returns
    -------
    (Time, str)
        The time and a note naming the keyword and the assumption.
    """
    if time_is not in ("start", "mid"):
        raise ValueError(f"time_is must be 'start' or 'mid', got {time_is!r}")
    for key in _TIME_KEYS:
        if key in header:
            raw = str(header[key]).strip()
            try:
                t = Time(raw.replace(" ", "T"), format="isot", scale="utc")
            except ValueError:
                raise ValueError(f"header {key} = {raw!r} is not an ISO date-time") from None
            note = f"{key} (UTC)"
            if time_is == "start" and exptime_s:
                t = t + TimeDelta(exptime_s / 2.0, format="sec")
                note += f" + exptime/2 = {exptime_s / 2.0:g} s"
            return t, note
    raise ValueError(f"no time keyword in the header (looked for {list(_TIME_KEYS)})")


def read_allsky_frame(path, *, hdu: int = 0, time_is: str = "start") -> AllSkyFrame:
    """Read an all-sky frame (``.fits`` or ``.fits.gz``): image, exposure and mid-exposure time."""
    with fits.open(path, memmap=False) as hdul:
        h = hdul[hdu].header.copy()
        data = hdul[hdu].data
        if data is None or data.ndim != 2:
            raise ValueError(f"{path}: HDU {hdu} is not a 2-D image")
        data = np.asarray(data, dtype=np.float64)  # BZERO/BSCALE applied by astropy, native order
    exptime = exposure_time(h)
    t, note = frame_time(h, exptime, time_is=time_is)
    return AllSkyFrame(data=np.ascontiguousarray(data), header=h, time=t, exptime_s=exptime, time_note=note)
