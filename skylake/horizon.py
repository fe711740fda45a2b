"""Horizon coordinates of sky positions, for the frames' airmass and the horizon maps alike.

One alt/az transform for the frames' airmass (a pointing) and the horizon maps (every source), so both
see the sky the same way.

Geometric positions (no refraction), with astropy and its bundled IERS tables never downloaded
(:func:`skylake.iers.offline`). The all-sky camera model's refracted transforms are another thing:
:class:`skylake.allsky.camera.Site`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ALTAZ_TIME_RESOLUTION_S", "altaz", "airmass"]


#: support-point spacing of the astrometry interpolation in :func:`altaz` (s)
ALTAZ_TIME_RESOLUTION_S = 1.0


def altaz(
    ra_deg: np.ndarray, dec_deg: np.ndarray, mjd: np.ndarray, lat_deg: float, lon_deg: float, height_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Altitude and azimuth of each source at its frame's mid-exposure from a site, with astropy (no refraction).

    One transform with an obstime per source. Astropy's default would run the full ERFA astrometry
    set-up for every source; :class:`~astropy.coordinates.erfa_astrom.ErfaAstromInterpolator` runs
    it on a sparse grid around the distinct times only (two points per frame at a 1 s resolution),
    so the cost stays that of the frames, and the result matches one transform per frame to ~1e-12 deg.
    The bundled IERS tables are used, never downloaded (:func:`skylake.iers.offline`).

    Parameters
    ----------
    ra_deg : numpy.ndarray
        Right ascension of each source (ICRS, deg).
    dec_deg : numpy.ndarray
        Declination of each source (ICRS, deg).
    mjd : numpy.ndarray
        Mid-exposure time of each source's frame (MJD, UTC).
    lat_deg : float
        The site's latitude (deg).
    lon_deg : float
        The site's longitude (deg, east-positive).
    height_m : float
        The site's height (m).

    Returns
    -------
    alt : numpy.ndarray
        Altitude of each source (deg); NaN where ``mjd`` is not finite.
    az : numpy.ndarray
        Azimuth of each source (deg, north through east); NaN where ``mjd`` is not finite.
    """
    from astropy import units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.coordinates.erfa_astrom import ErfaAstromInterpolator, erfa_astrom
    from astropy.time import Time

    from skylake import iers

    ra, dec, mjd = (np.asarray(v, float) for v in (ra_deg, dec_deg, mjd))
    alt, az = np.full(ra.size, np.nan), np.full(ra.size, np.nan)
    ok = np.isfinite(mjd)
    if not ok.any():
        return alt, az
    site = EarthLocation(lon=lon_deg * u.deg, lat=lat_deg * u.deg, height=height_m * u.m)
    frame = AltAz(obstime=Time(mjd[ok], format="mjd", scale="utc"), location=site)
    # never reach for the network (IERS tables): the bundled ones are good to ~0.1 arcsec here
    with iers.offline(), erfa_astrom.set(ErfaAstromInterpolator(ALTAZ_TIME_RESOLUTION_S * u.s)):
        hor = SkyCoord(ra=ra[ok] * u.deg, dec=dec[ok] * u.deg, frame="icrs").transform_to(frame)
    alt[ok], az[ok] = hor.alt.deg, hor.az.deg
    return alt, az


def airmass(alt_deg: np.ndarray) -> np.ndarray:
    """Kasten & Young (1989) relative airmass of an altitude in degrees (finite to the horizon; NaN below).

    Parameters
    ----------
    alt_deg : numpy.ndarray
        Altitudes [deg].

    Returns
    -------
    numpy.ndarray
        The airmass of each altitude (NaN below the horizon).
    """
    alt = np.asarray(alt_deg, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = 1.0 / (np.sin(np.radians(alt)) + 0.50572 * (alt + 6.07995) ** -1.6364)
    return np.where(alt >= 0, x, np.nan)
