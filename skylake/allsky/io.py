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
    """An all-sky frame: the image, its header, mid-exposure time and exposure time.

    Attributes
    ----------
    data : numpy.ndarray
        The image, float64 in native byte order, NaN where the file has no data.
    header : astropy.io.fits.Header
        The frame's header.
    time : astropy.time.Time
        Mid-exposure time, UTC.
    exptime_s : float or None
        Exposure time, s; None if the header has none.
    time_note : str
        Which keyword and assumption gave the time.
    """

    data: np.ndarray
    header: fits.Header
    time: Time
    exptime_s: float | None
    time_note: str


def exposure_time(header: fits.Header) -> float | None:
    """Exposure time in s from ``EXPTIME``/``EXPOSURE``/``EXP_TIME`` (numbers or numeric strings).

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header; the first of the keywords it has is read.

    Returns
    -------
    float or None
        The exposure time, s; None when the header has none of the keywords.

    Raises
    ------
    ValueError
        If the keyword's value is not a number, or is negative or not finite.
    """
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
    header : astropy.io.fits.Header
        The frame's header; the first of ``DATE-OBS``, ``TIMEUTC``, ``DATE_OBS``, ``UTC1`` it has is read
        as an ISO date-time in UTC (a space between date and time is accepted).
    exptime_s : float, optional
        Exposure time, s; with ``time_is="start"`` half of it is added.
    time_is : {"start", "mid"}
        What the header's time stamp marks.

    Returns
    -------
    time : astropy.time.Time
        The mid-exposure time, UTC.
    note : str
        A note naming the keyword and the assumption.

    Raises
    ------
    ValueError
        If ``time_is`` is neither "start" nor "mid", the header has no time keyword, or its value is not
        an ISO date-time.
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
    """Read an all-sky frame (``.fits`` or ``.fits.gz``): image, exposure and mid-exposure time.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file.
    hdu : int, default 0
        The HDU holding the image.
    time_is : {"start", "mid"}, default "start"
        What the header's time stamp marks (see :func:`frame_time`).

    Returns
    -------
    AllSkyFrame
        The image as float64 (FITS scaling applied), its header, the mid-exposure time and the
        exposure time.

    Raises
    ------
    ValueError
        If the HDU is not a 2-D image, or the header's exposure time or time stamp cannot be read.
    """
    with fits.open(path, memmap=False) as hdul:
        h = hdul[hdu].header.copy()
        data = hdul[hdu].data
        if data is None or data.ndim != 2:
            raise ValueError(f"{path}: HDU {hdu} is not a 2-D image")
        data = np.asarray(data, dtype=np.float64)  # BZERO/BSCALE applied by astropy, native order
    exptime = exposure_time(h)
    t, note = frame_time(h, exptime, time_is=time_is)
    return AllSkyFrame(data=np.ascontiguousarray(data), header=h, time=t, exptime_s=exptime, time_note=note)
