"""Map a frame's FITS header to the standard frame record, following its instrument profile.

Times are UTC; ``mjd`` in the record is mid-exposure; ``night`` is the local date on which the
observing night began (the profile's ``site.night_starts``). The observation time comes from the
first of the profile's time keywords the header has (``pipelines/generic.toml`` lists them in order):
DATE-AVG/MJD-AVG (mid-exposure by definition), an MJD, an ISO DATE-OBS (or a date-only DATE-OBS with
a time-of-day keyword), a JD, or named keywords parsed with a strptime format; in the header's time
scale (TIMESYS, else the profile's), converted to UTC with astropy. A date without a time of day is
never taken as midnight: the frame is rejected, naming the keyword to map.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
from zoneinfo import ZoneInfo

from astropy.io import fits
from astropy.time import Time, TimeDelta

from skylake.errors import FrameRejected
from skylake.profile import TIME_SCALE_ALIASES, HeaderMap, Profile

__all__ = [
    "YEAR_RANGE",
    "MJD_RANGE",
    "UNSET_CLOCK_MJD",
    "MAX_EXPTIME_S",
    "mjd_to_datetime",
    "observing_night",
    "airmass_from_altitude",
    "airmass_from_pointing",
    "observation_time",
    "exposure_time",
    "FILE_MAX_MARGIN",
    "saturation_level",
    "frame_record",
]


_MJD_EPOCH = dt.datetime(1858, 11, 17, tzinfo=dt.UTC)

#: Observation times outside these years are rejected (a wrong header, not an observation). 1900 is out: an
#: unset camera or computer clock writes 1900-01-01 (as it writes 1970-01-01, :data:`UNSET_CLOCK_MJD`).
YEAR_RANGE = (1901, 2100)
MJD_RANGE = (15385.0, 88069.0)  # 1901-01-01 and 2100-01-01, 0h UTC
#: The start of exposure an unset clock gives (the Unix epoch, 1970-01-01T00:00:00 UTC): rejected, never taken
#: for an observation made at that very second.
UNSET_CLOCK_MJD = 40587.0
#: Longest exposure taken as real (s); anything longer is a header error.
MAX_EXPTIME_S = 86400.0
#: GPS time runs 19 s behind TAI (a constant offset).
_GPS_TO_TAI_S = 19.0

_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?)?Z?")
_OLD_FITS_DATE = re.compile(r"(\d{2})/(\d{2})/(\d{2})")  # DD/MM/YY, years 1900-1999 (FITS before 2000)
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?")


def _first(header: fits.Header, keys: list[str]) -> tuple[str | None, object]:
    """The first of ``keys`` the header has a non-blank value for, and the value (``(None, None)``)."""
    for key in keys:
        try:
            value = header.get(key)
        except (KeyError, ValueError, IndexError):  # a keyword astropy cannot look up
            value = None
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return key, value
    return None, None


def _as_number(key: str, value, what: str) -> float:
    if isinstance(value, bool):  # FITS logical T/F is not a number
        raise FrameRejected(f"header {key} = {value!r} ({what}) is not a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)  # SkyCamZ writes MJD as a string
    except (TypeError, ValueError, OverflowError):
        raise FrameRejected(f"header {key} = {value!r} ({what}) is not a number") from None
    if not math.isfinite(number):
        raise FrameRejected(f"header {key} = {value!r} ({what}) is not finite")
    return number


def _number(header: fits.Header, keys: list[str], what: str) -> float | None:
    key, value = _first(header, keys)
    return None if key is None else _as_number(key, value, what)


def mjd_to_datetime(mjd: float) -> dt.datetime:
    """Convert an MJD to a UTC datetime.

    Parameters
    ----------
    mjd : float
        A modified Julian date (UTC).

    Returns
    -------
    when : datetime.datetime
        The timezone-aware UTC datetime of ``mjd``.
    """
    return _MJD_EPOCH + dt.timedelta(days=mjd)


def observing_night(mjd: float, timezone: str, night_starts: str) -> str:
    """Find the observing night (``YYYY-MM-DD``, local date of its evening) that contains ``mjd``.

    Parameters
    ----------
    mjd : float
        The time, MJD (UTC).
    timezone : str
        The site's IANA time zone (e.g. ``"Atlantic/Canary"``).
    night_starts : str
        The local time ``"HH:MM"`` at which a night starts; earlier times belong to the night before.

    Returns
    -------
    night : str
        The night's date, ``YYYY-MM-DD``.

    Examples
    --------
    >>> observing_night(56453.98977, "Atlantic/Canary", "17:30")  # 2013-06-10 23:45 UT = 00:45 local on the 11th
    '2013-06-10'
    """
    hours, minutes = (int(p) for p in night_starts.split(":"))  # checked when the profile was loaded
    local = mjd_to_datetime(mjd).astimezone(ZoneInfo(timezone))
    return (local - dt.timedelta(hours=hours, minutes=minutes)).date().isoformat()


def airmass_from_altitude(alt_deg: float) -> float:
    """Compute the Pickering (2002) airmass, good to the horizon.

    Parameters
    ----------
    alt_deg : float
        The altitude, deg.

    Returns
    -------
    airmass : float
        The airmass; NaN at or below the horizon.
    """
    if alt_deg <= 0:
        return float("nan")
    return 1.0 / math.sin(math.radians(alt_deg + 244.0 / (165.0 + 47.0 * alt_deg**1.1)))


def airmass_from_pointing(ra_deg: float, dec_deg: float, mjd: float, site) -> tuple[float, float, float]:
    """Compute the airmass, altitude and azimuth of a pointing seen from ``site`` at ``mjd``.

    Positions are placed by :func:`skylake.horizon.altaz`, as the horizon maps place sources. Used only when
    the header gives neither airmass nor altitude. IERS tables are never downloaded (the bundled ones are
    good to far better than an arcsecond for this).

    Parameters
    ----------
    ra_deg, dec_deg : float
        The pointing, deg.
    mjd : float
        The time, MJD (UTC).
    site : skylake.profile.Site
        The observatory (``lat_deg``, ``lon_deg``, ``height_m``).

    Returns
    -------
    airmass : float
        Pickering (2002) airmass (:func:`airmass_from_altitude`); NaN below the horizon.
    altitude : float
        The altitude, deg.
    azimuth : float
        The azimuth, deg.
    """
    from skylake.horizon import altaz

    alt, az = altaz([ra_deg], [dec_deg], [mjd], site.lat_deg, site.lon_deg, site.height_m)
    alt, az = float(alt[0]), float(az[0])
    return airmass_from_altitude(alt), alt, az


def _check_year(key: str, value, year: int) -> None:
    if not YEAR_RANGE[0] <= year <= YEAR_RANGE[1]:
        raise FrameRejected(f"header {key} = {value!r} is outside the years {YEAR_RANGE[0]}-{YEAR_RANGE[1]}")


def _iso(key: str, value, time_of_day: tuple[str, object] | None = None) -> str | None:
    """A normalised ISO date and time from a DATE-like value; None when it is a date alone (and no
    ``time_of_day`` keyword completes it). Raises for anything that is not a date."""
    text = str(value).strip()
    m = _ISO.fullmatch(text)
    if m:
        year, month, day, hh, mm, ss = m.groups()
    else:
        old = _OLD_FITS_DATE.fullmatch(text)
        if not old:
            raise FrameRejected(f"header {key} = {value!r} is not a date (YYYY-MM-DD[Thh:mm:ss[.s]] or DD/MM/YY)")
        day, month, year = old.group(1), old.group(2), f"19{old.group(3)}"
        hh = mm = ss = None
    _check_year(key, value, int(year))
    if hh is None and time_of_day is not None:
        tkey, tvalue = time_of_day
        t = _TIME_OF_DAY.fullmatch(str(tvalue).strip())
        if not t:
            raise FrameRejected(f"header {tkey} = {tvalue!r} is not a time of day (hh:mm[:ss[.s]])")
        hh, mm, ss = t.groups()
        hh = f"{int(hh):02d}"
    if hh is None:
        return None
    if not (int(hh) < 24 and int(mm) < 60 and float(ss or 0) < 61):  # 60 s: a leap second
        raise FrameRejected(f"header {key} = {value!r} has no valid time of day ({hh}:{mm}:{ss or '00'})")
    iso = f"{year}-{month}-{day}T{hh}:{mm}:{ss or '00'}"
    try:
        dt.date(int(year), int(month), int(day))
    except ValueError as exc:
        raise FrameRejected(f"header {key} = {value!r} is not a date: {exc}") from None
    return iso


def _scale(header: fits.Header, hm: HeaderMap) -> str:
    key, value = _first(header, hm.timesys)
    if key is None:
        return hm.time_scale
    scale = TIME_SCALE_ALIASES.get(str(value).strip().lower())
    if scale is None:
        raise FrameRejected(
            f"header {key} = {value!r} is not a time scale skylake converts "
            f"({sorted(set(TIME_SCALE_ALIASES.values()))}); set [header] timesys = [] and "
            f"time_scale to read the times in another scale"
        )
    return scale


def _to_utc_mjd(value, fmt: str, scale: str, key: str, raw) -> float:
    """MJD (UTC) of ``value`` (an MJD number or an ISO string, per ``fmt``) in ``scale``."""
    if fmt == "mjd" and not MJD_RANGE[0] - 2 <= value <= MJD_RANGE[1] + 2:  # before astropy: no overflow
        raise FrameRejected(f"header {key} = {raw!r} is outside the years {YEAR_RANGE[0]}-{YEAR_RANGE[1]}")
    if fmt == "mjd" and scale == "utc":
        return float(value)  # as given: no round trip through two-part JDs
    from skylake import iers

    try:  # UT1 - UTC from the bundled IERS tables; past their predictions the time is rejected
        with warnings.catch_warnings(), iers.strict():
            warnings.simplefilter("ignore")  # ERFA's "dubious year" warnings: the years are checked apart
            t = Time(value, format=fmt, scale="tai" if scale == "gps" else scale)
            if scale == "gps":
                t = t + TimeDelta(_GPS_TO_TAI_S, format="sec")
            return float(t.utc.mjd)
    except (ValueError, TypeError, OverflowError, IndexError) as exc:
        why = " ".join(str(exc).split("\n\n")[0].split())  # astropy's first paragraph, on one line
        raise FrameRejected(f"header {key} = {raw!r} cannot be converted from {scale.upper()} to UTC: {why}") from None


def observation_time(header: fits.Header, hm: HeaderMap) -> tuple[float, str, str]:
    """Read the observation time the header gives, following the profile's ``[header]`` mapping.

    The mapped keywords are tried in this order: ``date_avg``, ``mjd_avg``, ``mjd``, ``date_obs`` (completed
    by ``time_obs`` when it is a date alone), ``jd`` and ``time_keys``; the time is converted to UTC from the
    header's time scale (``timesys``) or the profile's ``time_scale``.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    hm : skylake.profile.HeaderMap
        The profile's ``[header]`` mapping.

    Returns
    -------
    mjd : float
        MJD (UTC) of the moment the header's time marks.
    reference : str
        ``"mid"`` for DATE-AVG/MJD-AVG, else the profile's ``time_reference`` (start, mid or end).
    key : str
        The keyword(s) it came from, for messages.

    Raises
    ------
    FrameRejected
        No time keyword; a value that is not a time; a date without a time of day; a time outside
        1901-2100; a time scale that cannot be converted.
    """
    scale = _scale(header, hm)
    date_only = None
    for kind in ("date_avg", "mjd_avg", "mjd", "date_obs", "jd", "time_keys"):
        reference = "mid" if kind in ("date_avg", "mjd_avg") else hm.time_reference
        if kind in ("mjd_avg", "mjd", "jd"):
            key, value = _first(header, getattr(hm, kind))
            if key is None:
                continue
            number = _as_number(key, value, "observation time")
            mjd = number - 2400000.5 if kind == "jd" else number
            return _to_utc_mjd(mjd, "mjd", scale, key, value), reference, key
        if kind in ("date_avg", "date_obs"):
            key, value = _first(header, getattr(hm, kind))
            if key is None:
                continue
            tkey, tvalue = _first(header, hm.time_obs) if kind == "date_obs" else (None, None)
            iso = _iso(key, value, (tkey, tvalue) if tkey else None)
            if iso is None:  # a date alone: never midnight; another keyword may still give the time
                date_only = (key, value)
                continue
            return _to_utc_mjd(iso, "isot", scale, key, value), reference, key
        if kind == "time_keys" and hm.time_keys:
            found = [_first(header, [k]) for k in hm.time_keys]
            present = [k for (k, _) in found if k is not None]
            if not present:
                continue
            if len(present) < len(hm.time_keys):
                missing = [k for k in hm.time_keys if k not in present]
                raise FrameRejected(f"header lacks {missing} of [header] time_keys = {hm.time_keys}")
            text = " ".join(str(v).strip() for _, v in found)
            try:
                when = dt.datetime.strptime(text, hm.time_format)
            except ValueError as exc:
                raise FrameRejected(
                    f"header {'+'.join(hm.time_keys)} = {text!r} does not match [header] "
                    f"time_format {hm.time_format!r}: {exc}"
                ) from None
            if when.tzinfo is not None:
                when = when.astimezone(dt.UTC).replace(tzinfo=None)
            _check_year("+".join(hm.time_keys), text, when.year)
            return (
                _to_utc_mjd(when.strftime("%Y-%m-%dT%H:%M:%S.%f"), "isot", scale, "+".join(hm.time_keys), text),
                reference,
                "+".join(hm.time_keys),
            )
    if date_only is not None:
        key, value = date_only
        raise FrameRejected(
            f"header {key} {str(value).strip()!r} has no time of day; map the time keyword with "
            f"[header] time_obs = [...] (looked for {hm.time_obs})"
        )
    raise FrameRejected(
        f"no observation time in the header (looked for {hm.date_avg + hm.mjd_avg + hm.mjd}, "
        f"{hm.date_obs}, {hm.jd}" + (f", {hm.time_keys}" if hm.time_keys else "") + ")"
    )


def exposure_time(header: fits.Header, profile: Profile) -> float:
    """Read the exposure time [s]: the header's (numbers or numeric strings), else the profile's default.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    profile : skylake.profile.Profile
        The profile (its ``[header] exptime`` keywords and ``[defaults] exptime``).

    Returns
    -------
    exptime : float
        The exposure time, s.

    Raises
    ------
    FrameRejected
        A missing, non-numeric, non-positive or implausibly long (> 1 day) exposure.
    """
    hm = profile.header
    key, value = _first(header, hm.exptime)
    if key is None:
        if profile.defaults.exptime > 0:
            return float(profile.defaults.exptime)
        raise FrameRejected(
            f"no exposure time in the header (looked for {hm.exptime}); map it with [header] "
            f"exptime or set [defaults] exptime"
        )
    exptime = _as_number(key, value, "exposure time")
    if not 0 < exptime <= MAX_EXPTIME_S:
        raise FrameRejected(
            f"header {key} = {value!r}: the exposure time must be > 0 and at most {MAX_EXPTIME_S:.0f} s"
        )
    return exptime


def _positive(header: fits.Header, keys: list[str], what: str, default: float, setting: str) -> tuple[float, str]:
    key, value = _first(header, keys)
    if key is None:
        return float(default), f"profile [defaults] {setting}"
    number = _as_number(key, value, what)
    if not number > 0:
        raise FrameRejected(f"header {key} = {value!r}: the {what} must be > 0")
    return number, f"header {key}"


#: A file's largest storable value less this fraction of it is the highest level a pixel can be trusted to:
#: a frame reduced and then written as scaled integers is clipped there, and flat-fielding after the clip
#: spreads the clipped pixels a little below it.
FILE_MAX_MARGIN = 0.01


def saturation_level(header: fits.Header, profile: Profile, file_max: float = math.inf) -> tuple[float, str, str]:
    """The saturation level of a frame's raw pixels, where it came from, and a note when the file lowered it.

    The level is the header's (the lowest of the ``[header] saturation`` keywords it has: SATURATE, DATAMAX,
    ...), else the profile's ``[defaults] saturation`` (always the profile's with ``saturation_source =
    "profile"``); a level above what the file can hold is replaced by ``file_max`` less :data:`FILE_MAX_MARGIN`
    of it (a level at or below ``file_max`` stands: a clip at the file's top is at or above it).

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    profile : skylake.profile.Profile
        The profile (``[header] saturation`` keywords, ``[defaults] saturation`` and ``saturation_source``).
    file_max : float
        The largest value the file can store (:func:`skylake.frame.reading.representable_max`).

    Returns
    -------
    level : float
        The level, ADU.
    source : str
        Where it came from ("header SATURATE", "profile [defaults] saturation", "file (BITPIX 16, BZERO,
        BSCALE)"), for messages.
    note : str
        Empty, or a note that the header's or profile's level was above what the file can hold.

    Raises
    ------
    FrameRejected
        When a header level is not a positive number.
    """
    defaults = profile.defaults
    level, source = float(defaults.saturation), "profile [defaults] saturation"
    if defaults.saturation_source != "profile":
        found = []
        for key in profile.header.saturation:
            k, value = _first(header, [key])
            if k is not None:
                number = _as_number(k, value, "saturation level")
                if not number > 0:
                    raise FrameRejected(f"header {k} = {value!r}: the saturation level must be > 0")
                found.append((number, f"header {k}"))
        if found:
            level, source = min(found)
    if not (math.isfinite(file_max) and file_max > 0) or level <= file_max:
        return level, source, ""
    cap = file_max * (1.0 - FILE_MAX_MARGIN)
    note = f"saturation {level:g} ADU ({source}) is above the {file_max:.6g} ADU the file can hold: {cap:.6g} ADU used"
    return cap, "the file's largest value less 1 %", note


def frame_record(header: fits.Header, profile: Profile, file_max: float = math.inf) -> dict:
    """Read the standard frame fields from ``header``.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    profile : skylake.profile.Profile
        The profile: its ``[header]`` mapping, ``[defaults]`` and site.
    file_max : float
        The largest pixel value the file can store (the saturation level is never above it less a margin:
        :func:`saturation_level`).

    Returns
    -------
    record : dict
        Instrument, filter, object, date_obs (start of exposure), mjd (mid-exposure), exptime, airmass,
        altitude, azimuth, site, gain, saturation, night; and ``saturation_from`` (where the saturation
        level came from, for messages) and ``saturation_note`` (empty, or why the file lowered it); neither
        is a frames column.

    Raises
    ------
    FrameRejected
        The observation time or exposure time cannot be found or is not plausible (including an unset
        clock's Unix epoch), or the gain or saturation level is not a positive number.
    """
    hm, defaults = profile.header, profile.defaults
    exptime = exposure_time(header, profile)
    mjd, reference, _ = observation_time(header, hm)
    half = exptime / 2.0 / 86400.0
    if reference == "start":
        mjd += half
    elif reference == "end":
        mjd -= half
    if not (MJD_RANGE[0] <= mjd - half and mjd + half <= MJD_RANGE[1]):
        raise FrameRejected(f"observation time MJD {mjd:.5f} is outside the years {YEAR_RANGE[0]}-{YEAR_RANGE[1]}")
    if abs((mjd - half) - UNSET_CLOCK_MJD) < 0.5 / 86400.0:
        raise FrameRejected(
            f"observation time {mjd_to_datetime(mjd - half):%Y-%m-%dT%H:%M:%S} is the Unix epoch: the "
            f"camera's clock was not set"
        )
    start = mjd_to_datetime(mjd - half)
    altitude = _number(header, hm.altitude, "altitude")
    airmass = _number(header, hm.airmass, "airmass")
    if airmass is None and altitude is not None:
        airmass = airmass_from_altitude(altitude)
    gain, _ = _positive(header, hm.gain, "gain", defaults.gain, "gain")
    saturation, saturation_from, saturation_note = saturation_level(header, profile, file_max)
    return {
        "instrument": str(_first(header, hm.instrument)[1] or defaults.instrument).strip(),
        "filter": str(_first(header, hm.filter)[1] or defaults.filter).strip(),
        "object": str(_first(header, hm.object)[1] or defaults.object),
        "date_obs": start.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        "mjd": mjd,
        "exptime": exptime,
        "airmass": airmass,
        "altitude": altitude,
        "azimuth": _number(header, hm.azimuth, "azimuth"),
        "site": profile.site.name,
        "gain": gain,
        "saturation": saturation,
        "saturation_from": saturation_from,
        "saturation_note": saturation_note,
        "night": observing_night(mjd, profile.site.timezone, profile.site.night_starts),
    }
