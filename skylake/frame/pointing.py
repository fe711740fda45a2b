"""The approximate pointing and plate scale of a frame without a WCS: the hints a plate solve starts from.

Cameras write the pointing in many forms: degrees as numbers or numeric strings (``RA_CENT = 256.17``),
sexagesimal strings in hours and degrees (MaxIm DL, ACP, SGP and N.I.N.A. write ``OBJCTRA = '21 44 16'``,
``OBJCTDEC = '+41 12 03'``; others ``'21:44:16.2'`` or ``'21h44m16s'``), or only a partial WCS
(``CRVAL1``/``CRVAL2`` without a CD matrix). A camera on a fixed mount, or a drift scan, writes none: its
profile gives a fixed pointing instead, in RA/Dec or in alt/az (placed on the sky at each frame's time).
Strings are parsed by :class:`astropy.coordinates.Angle`.

RA units (``platesolve.ra_unit``): ``"auto"`` reads numbers as degrees and sexagesimal strings as hours
(the conventions of the keywords above); ``"hours"`` and ``"degrees"`` read both kinds in that unit. A
unit written in the value (``21h44m16s``, ``256d10m``) always wins, and ``CRVAL1`` is degrees by the FITS
standard. A value outside its unit's range (RA ``'150.5'`` read as hours) is a rejection naming the
keyword and the value, never a pointing somewhere else.

The plate scale comes from the profile (``scale_arcsec``), a header keyword (``CCDSCALE``, ...), or the
optics: 206.265 x pixel size (um) / focal length (mm), the pixel size times the binning unless the header's
pixel size already includes it (MaxIm DL and the SBIG convention write ``XPIXSZ`` binned:
``platesolve.pixel_size_binned``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from astropy.io import fits

from skylake.errors import FrameRejected
from skylake.frame.header import _as_number, _first

__all__ = [
    "RA_UNITS",
    "Pointing",
    "ScaleHint",
    "parse_ra",
    "parse_dec",
    "header_pointing",
    "fixed_pointing",
    "radec_from_altaz",
    "scale_hint",
    "optics_scale",
    "ARCSEC_PER_UM_PER_MM",
]

#: ``platesolve.ra_unit`` values.
RA_UNITS = ("auto", "hours", "degrees")
#: A unit written in a sexagesimal value: hours (``21h44m``) or degrees (``256d10m``, ``256°10'``).
_HOURS = re.compile(r"\d\s*h", re.I)
_DEGREES = re.compile(r"\d\s*(d|°)", re.I)
#: arcsec per radian / 1000: the plate scale in arcsec/px of 1 um pixels at 1 mm focal length.
ARCSEC_PER_UM_PER_MM = 206.264806


@dataclass(frozen=True)
class Pointing:
    """An approximate field centre: ``ra``, ``dec`` (deg, ICRS) within ``radius_deg``.

    Attributes
    ----------
    ra, dec : float
        The field centre, deg (ICRS).
    radius_deg : float
        How far the true centre may be from it, deg.
    source : str
        Where it came from (for messages).
    """

    ra: float
    dec: float
    radius_deg: float
    source: str


@dataclass(frozen=True)
class ScaleHint:
    """What is known of the pixel scale (arcsec/px).

    Attributes
    ----------
    value : float or None
        The pixel scale, arcsec/px; None when unknown.
    low, high : float
        The range a solver searches, arcsec/px.
    source : str
        Where it came from.
    note : str
        What was set aside ("" when nothing).
    """

    value: float | None
    low: float
    high: float
    source: str
    note: str = ""


def _is_blank(value) -> bool:
    return value is None or isinstance(value, fits.card.Undefined) or (isinstance(value, str) and not value.strip())


def _number_or_none(value):
    """``value`` as a float when it is a number or a numeric string, else None (a sexagesimal string)."""
    if isinstance(value, bool):
        raise ValueError("it is a logical (T/F)")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _angle(text: str, unit, what: str):
    from astropy.coordinates import Angle

    try:
        return Angle(text, unit=unit)
    except Exception as exc:  # noqa: BLE001 - astropy raises several kinds for a bad angle string
        detail = str(exc).split(";")[0].strip().rstrip(".")
        raise ValueError(f"astropy cannot read it as an angle in {what} ({detail})") from None


def parse_ra(value, unit: str = "auto") -> float:
    """Read a right ascension in degrees (0 <= ra < 360) from a header value.

    Parameters
    ----------
    value : float, int or str
        A number, a numeric string or a sexagesimal string (``'21 44 16'``, ``'21:44:16.2'``,
        ``'21h44m16s'``, ``'256d10m03s'``).
    unit : {"auto", "hours", "degrees"}
        The unit of values that do not write one: ``"auto"`` reads numbers as degrees and sexagesimal
        strings as hours.

    Returns
    -------
    ra : float
        The right ascension, deg.

    Raises
    ------
    ValueError
        Why it is not an RA (not an angle, or outside 0-24 h / 0-360 deg), for a message; or ``unit`` is not
        one of :data:`RA_UNITS`.

    Examples
    --------
    >>> round(parse_ra("21 44 16"), 6), parse_ra(256.5), parse_ra("17.25", unit="hours")
    (326.066667, 256.5, 258.75)
    """
    import astropy.units as u

    if unit not in RA_UNITS:
        raise ValueError(f"RA unit {unit!r} must be one of {list(RA_UNITS)}")
    number = _number_or_none(value)
    if number is not None:
        if not math.isfinite(number):
            raise ValueError("it is not finite")
        hours = unit == "hours"
    else:
        text = str(value).strip()
        if _HOURS.search(text):
            hours = True
        elif _DEGREES.search(text):
            hours = False
        else:
            hours = unit != "degrees"
        kind = u.hourangle if hours else u.deg
        number = float(_angle(text, kind, "hours" if hours else "degrees").to_value(kind))
    if hours:
        if not 0.0 <= number < 24.0:
            raise ValueError(
                f"{number:g} h is outside 0-24 h"
                + (' (ra_unit = "hours"; "degrees" reads it in degrees)' if unit == "hours" else "")
            )
        return number * 15.0
    if not 0.0 <= number <= 360.0:
        raise ValueError(f"{number:g} deg is outside 0-360 deg")
    return number % 360.0


def parse_dec(value) -> float:
    """Read a declination in degrees (-90 to 90) from a header value.

    Parameters
    ----------
    value : float, int or str
        A number, a numeric string or a sexagesimal string in degrees (``'+41 12 03'``, ``'-05:23:10'``,
        ``'-00 30 00'`` is -0.5).

    Returns
    -------
    dec : float
        The declination, deg.

    Raises
    ------
    ValueError
        Why it is not a Dec (not an angle, in hours, or beyond +-90 deg), for a message.

    Examples
    --------
    >>> round(parse_dec("+41 12 03"), 6), round(parse_dec("-05:23:10"), 6), parse_dec("-00 30 00")
    (41.200833, -5.386111, -0.5)
    """
    import astropy.units as u

    number = _number_or_none(value)
    if number is None:
        text = str(value).strip()
        if _HOURS.search(text):
            raise ValueError("it is in hours")
        number = float(_angle(text, u.deg, "degrees").to_value(u.deg))
    if not math.isfinite(number):
        raise ValueError("it is not finite")
    if not -90.0 <= number <= 90.0:
        raise ValueError(f"{number:g} deg is outside -90 to +90 deg")
    return number


def _celestial_axis(header: fits.Header, axis: int, prefix: str) -> bool:
    """Whether ``CRVAL<axis>`` may be read as RA/Dec: no CTYPE, or an equatorial one."""
    ctype = header.get(f"CTYPE{axis}")
    return _is_blank(ctype) or str(ctype).strip().upper().startswith(prefix)


def header_pointing(
    header: fits.Header, ra_keys: list[str], dec_keys: list[str], ra_unit: str, radius_deg: float
) -> Pointing | None:
    """Read the pointing from the first pair (``ra_keys[i]``, ``dec_keys[i]``) the header has both values of.

    ``CRVAL1``/``CRVAL2`` count only when their ``CTYPE`` is absent or equatorial, and are degrees whatever
    ``ra_unit`` says.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    ra_keys, dec_keys : list of str
        The RA and Dec keywords, tried in pairs.
    ra_unit : {"auto", "hours", "degrees"}
        The unit of RA values that do not write one (:func:`parse_ra`).
    radius_deg : float
        How far the true centre may be from the pointing, deg.

    Returns
    -------
    pointing : Pointing or None
        The pair's pointing within ``radius_deg``; None when the header has no pair.

    Raises
    ------
    FrameRejected
        A value of the pair found is not an RA or a Dec; the reason names the keyword and the value.
    """
    for ra_key, dec_key in zip(ra_keys, dec_keys):
        ra_value, dec_value = _first(header, [ra_key])[1], _first(header, [dec_key])[1]
        if _is_blank(ra_value) or _is_blank(dec_value):
            continue
        wcs_pair = ra_key.upper() == "CRVAL1" and dec_key.upper() == "CRVAL2"
        if wcs_pair and not (_celestial_axis(header, 1, "RA") and _celestial_axis(header, 2, "DEC")):
            continue  # a Galactic or non-celestial partial WCS: not a pointing in RA/Dec
        try:
            ra = parse_ra(ra_value, "degrees" if wcs_pair else ra_unit)
        except ValueError as exc:
            raise FrameRejected(
                f"header {ra_key} = {ra_value!r} is not an RA: {exc} (platesolve.ra_keys, ra_unit)"
            ) from None
        try:
            dec = parse_dec(dec_value)
        except ValueError as exc:
            raise FrameRejected(f"header {dec_key} = {dec_value!r} is not a Dec: {exc} (platesolve.dec_keys)") from None
        return Pointing(ra, dec, radius_deg, f"header {ra_key}/{dec_key}")
    return None


def radec_from_altaz(alt_deg: float, az_deg: float, mjd: float, site) -> tuple[float, float]:
    """Compute RA, Dec (deg, ICRS) of a direction at altitude ``alt_deg`` and azimuth ``az_deg``.

    With astropy and no refraction; IERS tables are never downloaded (:func:`skylake.iers.offline`).

    Parameters
    ----------
    alt_deg : float
        The altitude, deg.
    az_deg : float
        The azimuth, deg (north through east).
    mjd : float
        The time, MJD (UTC).
    site : skylake.profile.Site
        Where it is seen from (``lat_deg``, ``lon_deg``, ``height_m``).

    Returns
    -------
    ra, dec : float
        The direction's ICRS position, deg.
    """
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time

    from skylake import iers

    location = EarthLocation(lon=site.lon_deg * u.deg, lat=site.lat_deg * u.deg, height=site.height_m * u.m)
    with iers.offline():
        frame = AltAz(obstime=Time(mjd, format="mjd", scale="utc"), location=location)
        icrs = SkyCoord(alt=alt_deg * u.deg, az=az_deg * u.deg, frame=frame).icrs
    return float(icrs.ra.deg), float(icrs.dec.deg)


def fixed_pointing(cfg: dict, mjd: float | None, site) -> Pointing | None:
    """Give the profile's fixed pointing (``pointing_radec`` or ``pointing_altaz``, within ``pointing_radius_deg``).

    Alt/az is placed on the sky at ``mjd`` from ``site``.

    Parameters
    ----------
    cfg : dict
        The profile's ``[platesolve]`` table.
    mjd : float or None
        The frame's time, MJD (UTC).
    site : skylake.profile.Site
        The observatory, for alt/az.

    Returns
    -------
    pointing : Pointing or None
        The fixed pointing; None when the profile gives none.

    Raises
    ------
    FrameRejected
        Alt/az is given but the frame has no time.
    """
    radius = float(cfg["pointing_radius_deg"])
    if cfg["pointing_radec"]:
        ra, dec = cfg["pointing_radec"]
        return Pointing(float(ra) % 360.0, float(dec), radius, "profile pointing_radec")
    if cfg["pointing_altaz"]:
        alt, az = cfg["pointing_altaz"]
        if mjd is None or not math.isfinite(mjd):
            raise FrameRejected(
                "plate solving: platesolve.pointing_altaz needs the frame's time to place alt/az on "
                "the sky, and the header gives none"
            )
        ra, dec = radec_from_altaz(float(alt), float(az), float(mjd), site)
        return Pointing(ra, dec, radius, f"profile pointing_altaz ({alt:g}, {az:g}) at MJD {mjd:.5f}")
    return None


def optics_scale(
    focal_length_mm: float, pixel_size_um: float, binning: int = 1, pixel_size_binned: bool = True
) -> float:
    """Compute the pixel scale (arcsec/px) of pixels of ``pixel_size_um`` behind ``focal_length_mm``.

    Parameters
    ----------
    focal_length_mm : float
        The focal length, mm.
    pixel_size_um : float
        The pixel size, um.
    binning : int
        The binning, applied unless the size already includes it.
    pixel_size_binned : bool
        Whether ``pixel_size_um`` already includes the binning.

    Returns
    -------
    scale : float
        The pixel scale, arcsec/px.

    Examples
    --------
    >>> round(optics_scale(780.7, 13.5), 4), round(optics_scale(780.7, 6.75, 2, pixel_size_binned=False), 4)
    (3.5668, 3.5668)
    """
    size = pixel_size_um if pixel_size_binned else pixel_size_um * binning
    return ARCSEC_PER_UM_PER_MM * size / focal_length_mm


def _positive(header: fits.Header, keys: list[str], what: str):
    """(key, value) of the first of ``keys`` with a value, which must be a positive number; (None, None)."""
    key, value = _first(header, keys)
    if key is None or _is_blank(value):
        return None, None
    number = _as_number(key, value, what)
    if number <= 0:
        raise FrameRejected(f"header {key} = {value!r} ({what}) must be > 0")
    return key, number


def scale_hint(
    header: fits.Header, cfg: dict, scale_arcsec: float | None, tolerance: float, pixscale_range
) -> ScaleHint:
    """Find what is known of a frame's pixel scale.

    The scale is the profile's ``scale_arcsec``, else the first of ``cfg["scale_keys"]`` in the header, else
    the optics (``focal_length_keys``, ``pixel_size_keys``, ``binning_keys``, ``pixel_size_binned``), each
    searched within ``tolerance`` (a fraction) inside the profile's ``[astrometry] pixscale_range``; else that
    range alone. A header scale outside the range is set aside (the range is searched) and said so in ``note``.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    cfg : dict
        The profile's ``[platesolve]`` table.
    scale_arcsec : float or None
        The profile's pixel scale, arcsec/px.
    tolerance : float
        The fraction searched around a known scale.
    pixscale_range : sequence of float
        The profile's ``[astrometry] pixscale_range``, arcsec/px.

    Returns
    -------
    hint : ScaleHint
        The scale (or None), the range to search and where it came from.

    Raises
    ------
    FrameRejected
        A scale, focal length, pixel size or binning keyword holds something other than a positive number
        (a whole number for the binning).
    """
    lo_range, hi_range = (float(v) for v in pixscale_range)
    value, source = None, "[astrometry] pixscale_range"
    if scale_arcsec is not None:
        value, source = float(scale_arcsec), "platesolve.scale_arcsec"
    else:
        key, number = _positive(header, cfg["scale_keys"], "plate scale, arcsec/px")
        if key is not None:
            value, source = number, f"header {key}"
        else:
            fkey, focal = _positive(header, cfg["focal_length_keys"], "focal length, mm")
            pkey, pixel = _positive(header, cfg["pixel_size_keys"], "pixel size, um")
            if fkey is not None and pkey is not None:
                bkey, binning = _positive(header, cfg["binning_keys"], "binning")
                binning = 1 if bkey is None else binning
                if binning != int(binning):
                    raise FrameRejected(f"header {bkey} = {header[bkey]!r} (binning) is not a whole number")
                value = optics_scale(focal, pixel, int(binning), cfg["pixel_size_binned"])
                source = (
                    f"header {fkey} = {focal:g} mm, {pkey} = {pixel:g} um"
                    + (f", {bkey} = {int(binning)}" if bkey is not None else "")
                    + f" (pixel_size_binned = {str(cfg['pixel_size_binned']).lower()})"
                )
    if value is None:
        return ScaleHint(None, lo_range, hi_range, source)
    if not lo_range <= value <= hi_range:
        note = (
            f'{source} gives {value:.4g}"/px, outside [astrometry] pixscale_range [{lo_range:g}, {hi_range:g}]: '
            f"set aside, the range searched"
        )
        return ScaleHint(None, lo_range, hi_range, "[astrometry] pixscale_range", note)
    return ScaleHint(value, max(lo_range, value * (1 - tolerance)), min(hi_range, value * (1 + tolerance)), source)
