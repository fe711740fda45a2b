"""Map a frame's FITS header to the standard frame record, following its instrument profile.

Times are UTC; ``mjd`` in the record is mid-exposure; ``night`` is the local date on which the
observing night began (the profile's ``site.night_starts``).
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

from astropy.io import fits
from astropy.time import Time

from skylake.errors import FrameRejected
from skylake.profile import Profile

_MJD_EPOCH = dt.datetime(1858, 11, 17, tzinfo=dt.timezone.utc)


def _first(header: fits.Header, keys: list[str]):
    for key in keys:
        value = header.get(key)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return value
    return None


def _number(header: fits.Header, keys: list[str], what: str) -> float | None:
    value = _first(header, keys)
    if value is None:
        return None
    try:
        number = float(value)  # SkyCamZ writes MJD as a string
    except (TypeError, ValueError):
        raise FrameRejected(f"header {what} ({'/'.join(keys)}) is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise FrameRejected(f"header {what} ({'/'.join(keys)}) is not finite: {value!r}")
    return number


def mjd_to_datetime(mjd: float) -> dt.datetime:
    """UTC datetime of an MJD."""
    return _MJD_EPOCH + dt.timedelta(days=mjd)


def observing_night(mjd: float, timezone: str, night_starts: str) -> str:
    """The observing night (``YYYY-MM-DD``, local date of its evening) that contains ``mjd``.

    >>> observing_night(56453.98977, "Atlantic/Canary", "17:30")  # 2013-06-10 23:45 UT = 00:45 local on the 11th
    '2013-06-10'
    """
    hours, minutes = (int(p) for p in night_starts.split(":"))
    local = mjd_to_datetime(mjd).astimezone(ZoneInfo(timezone))
    return (local - dt.timedelta(hours=hours, minutes=minutes)).date().isoformat()


def airmass_from_altitude(alt_deg: float) -> float:
    """Pickering (2002) airmass, good to the horizon."""
    if alt_deg <= 0:
        return float("nan")
    return 1.0 / math.sin(math.radians(alt_deg + 244.0 / (165.0 + 47.0 * alt_deg**1.1)))


def airmass_from_pointing(ra_deg: float, dec_deg: float, mjd: float, site) -> tuple[float, float, float]:
    """(airmass, altitude, azimuth) of a pointing seen from ``site`` at ``mjd``, via astropy.

    Used only when the header gives neither airmass nor altitude. IERS tables are never downloaded
    (the bundled ones are good to far better than an arcsecond for this)."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.utils import iers

    iers.conf.auto_download = False
    location = EarthLocation.from_geodetic(site.lon_deg * u.deg, site.lat_deg * u.deg, site.height_m * u.m)
    altaz = SkyCoord(ra_deg * u.deg, dec_deg * u.deg).transform_to(
        AltAz(obstime=Time(mjd, format="mjd", scale="utc"), location=location))
    alt, az = float(altaz.alt.deg), float(altaz.az.deg)
    return airmass_from_altitude(alt), alt, az


def frame_record(header: fits.Header, profile: Profile) -> dict:
    """Standard frame fields from ``header``: instrument, filter, object, date_obs, mjd (mid-exposure),
    exptime, airmass, altitude, azimuth, site, gain, saturation, night.

    Raises :class:`FrameRejected` when the observation time or exposure time cannot be found.
    """
    hm, defaults = profile.header, profile.defaults
    exptime = _number(header, hm.exptime, "exposure time")
    if exptime is None:
        raise FrameRejected(f"no exposure time in the header (looked for {hm.exptime})")
    mjd = _number(header, hm.mjd, "MJD")
    date_obs = _first(header, hm.date_obs)
    if mjd is None:
        if date_obs is None:
            raise FrameRejected(f"no observation time in the header (looked for {hm.mjd} and {hm.date_obs})")
        try:
            mjd = float(Time(str(date_obs).strip(), scale="utc").mjd)
        except ValueError:
            raise FrameRejected(f"header DATE-OBS is not a date: {date_obs!r}") from None
    if hm.time_reference == "start":
        mjd += exptime / 2.0 / 86400.0
    start = mjd_to_datetime(mjd - exptime / 2.0 / 86400.0)
    altitude = _number(header, hm.altitude, "altitude")
    airmass = _number(header, hm.airmass, "airmass")
    if airmass is None and altitude is not None:
        airmass = airmass_from_altitude(altitude)
    return {
        "instrument": str(_first(header, hm.instrument) or defaults.instrument).strip(),
        "filter": str(_first(header, hm.filter) or defaults.filter).strip(),
        "object": str(_first(header, hm.object) or defaults.object),
        "date_obs": start.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        "mjd": mjd,
        "exptime": exptime,
        "airmass": airmass,
        "altitude": altitude,
        "azimuth": _number(header, hm.azimuth, "azimuth"),
        "site": profile.site.name,
        "gain": _number(header, hm.gain, "gain") or defaults.gain,
        "saturation": _number(header, hm.saturation, "saturation") or defaults.saturation,
        "night": observing_night(mjd, profile.site.timezone, profile.site.night_starts),
    }
