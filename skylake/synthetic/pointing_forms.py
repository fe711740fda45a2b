"""Copies of a frame with its WCS removed and its pointing written in each form a camera may use.

The forms: numbers, numeric strings, sexagesimal strings in several keywords, a partial WCS, the optics
instead of a plate scale, a fixed pointing in the profile, none at all. Each copy comes with the
``[platesolve]`` settings it needs and the method (``wcs_method``) its solve must record. Used by
``tests/test_pointing.py`` and ``benchmarks/platesolve.py``::

    from skylake.synthetic.pointing_forms import FORMS, pointing_copy
    header, settings = pointing_copy(fits.getheader("frame.fits"), FORMS[2])   # OBJCTRA = '17 04 40', ...

The pointing written is the field centre of the frame's own WCS; RA_CENT/DEC_CENT and every other
keyword a default ``[platesolve]`` reads as a pointing are removed first, so each copy has only its form.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from astropy.io import fits

__all__ = [
    "Form",
    "FORMS",
    "POINTING_KEYS",
    "SCALE_KEYS",
    "field_centre",
    "pointing_copy",
    "platesolve_toml",
    "PIXEL_UM",
]

#: Keywords removed from every copy: each pointing keyword a default [platesolve] reads, and SkyCamZ's
#: other position cards.
POINTING_KEYS = (
    "RA_CENT",
    "DEC_CENT",
    "RA_DEG",
    "DEC_DEG",
    "RA",
    "DEC",
    "OBJCTRA",
    "OBJCTDEC",
    "TELRA",
    "TELDEC",
    "RA_OBJ",
    "DEC_OBJ",
    "RA_MIN",
    "RA_MAX",
    "DEC_MIN",
    "DEC_MAX",
)
#: Plate-scale keywords, removed from the copies whose scale comes from the optics or from nowhere.
SCALE_KEYS = ("CCDSCALE", "PIXSCALE", "SECPIX")
#: SkyCamZ's pixels: 13.5 um (the optics forms derive the focal length from the header's CCDSCALE).
PIXEL_UM = 13.5


def _no_settings(ra, dec, header, mjd) -> dict:
    return {}


@dataclass(frozen=True)
class Form:
    """One way of writing (or not) a frame's pointing.

    ``cards(ra, dec, header, mjd)`` gives the header cards (None: remove), ``settings(ra, dec, header, mjd)``
    the ``[platesolve]`` settings it needs; ``method`` is the ``wcs_method`` its solve records.

    Attributes
    ----------
    name : str
        What the form is.
    method : str
        The ``wcs_method`` its solve records (``hinted`` or ``blind``).
    cards : callable
        ``cards(ra, dec, header, mjd)``: the header cards of the pointing.
    settings : callable
        ``settings(ra, dec, header, mjd)``: the ``[platesolve]`` settings the form needs (default none).
    keeps_scale : bool
        Whether the copy keeps the header's plate scale (CCDSCALE ...).
    """

    name: str
    method: str
    cards: object
    settings: object = _no_settings
    #: Whether the copy keeps the header's plate scale (CCDSCALE ...).
    keeps_scale: bool = True

    @property
    def needs_settings(self) -> bool:
        """Whether the form needs [platesolve] settings beyond the defaults.

        Returns
        -------
        bool
            True unless the form has the default ``settings`` (none).
        """
        return self.settings is not _no_settings


def _hms(ra: float, sep: str, precision: int) -> str:
    import astropy.units as u
    from astropy.coordinates import Angle

    return Angle(ra, u.deg).to_string(unit=u.hourangle, sep=sep, precision=precision, pad=True)


def _dms(dec: float, sep: str, precision: int) -> str:
    import astropy.units as u
    from astropy.coordinates import Angle

    return Angle(dec, u.deg).to_string(unit=u.deg, sep=sep, precision=precision, pad=True, alwayssign=True)


def _optics(header: fits.Header, pixel_um: float, binning: int) -> dict:
    """FOCALLEN that gives the header's CCDSCALE with ``pixel_um`` (binned) pixels, and the binning."""
    from skylake.frame.pointing import ARCSEC_PER_UM_PER_MM

    return {
        "FOCALLEN": round(ARCSEC_PER_UM_PER_MM * PIXEL_UM / float(header["CCDSCALE"]), 3),
        "XPIXSZ": pixel_um,
        "XBINNING": binning,
    }


def _altaz(ra: float, dec: float, mjd: float) -> list[float]:
    """The alt/az (deg, rounded to 0.1 deg as an observer would give it) of (ra, dec) at ``mjd`` from the
    SkyCamZ site (pipelines/skycamz.toml)."""
    from skylake.horizon import altaz
    from skylake.profile import load_profile

    site = load_profile("skycamz").site
    alt, az = altaz([ra], [dec], [mjd], site.lat_deg, site.lon_deg, site.height_m)
    return [round(float(alt[0]), 1), round(float(az[0]), 1)]


FORMS = (
    Form("RA/DEC numbers", "hinted", lambda ra, dec, h, m: {"RA": round(ra, 5), "DEC": round(dec, 5)}),
    Form(
        "RA_OBJ/DEC_OBJ numeric strings",
        "hinted",
        lambda ra, dec, h, m: {"RA_OBJ": f"{ra:.5f}", "DEC_OBJ": f"{dec:.5f}"},
    ),
    Form(
        "OBJCTRA/OBJCTDEC 'hh mm ss'",
        "hinted",
        lambda ra, dec, h, m: {"OBJCTRA": _hms(ra, " ", 0), "OBJCTDEC": _dms(dec, " ", 0)},
    ),
    Form(
        "TELRA/TELDEC 'hh:mm:ss.s'",
        "hinted",
        lambda ra, dec, h, m: {"TELRA": _hms(ra, ":", 1), "TELDEC": _dms(dec, ":", 0)},
    ),
    Form("RA/DEC 'XXhXXmXXs'", "hinted", lambda ra, dec, h, m: {"RA": _hms(ra, "hms", 1), "DEC": _dms(dec, "dms", 0)}),
    Form(
        "CRVAL1/CRVAL2 of a partial WCS",
        "hinted",
        lambda ra, dec, h, m: {
            "CTYPE1": "RA---TAN",
            "CTYPE2": "DEC--TAN",
            "CRVAL1": round(ra, 4),
            "CRVAL2": round(dec, 4),
        },
    ),
    Form(
        "RA in hours as a number",
        "hinted",
        lambda ra, dec, h, m: {"RA": round(ra / 15.0, 6), "DEC": round(dec, 5)},
        lambda ra, dec, h, m: {"ra_unit": "hours"},
    ),
    Form(
        "RA in sexagesimal degrees",
        "hinted",
        lambda ra, dec, h, m: {"RA": _dms(ra, " ", 1).lstrip("+"), "DEC": _dms(dec, " ", 0)},
        lambda ra, dec, h, m: {"ra_unit": "degrees"},
    ),
    Form(
        "scale from FOCALLEN, XPIXSZ (binned), XBINNING",
        "hinted",
        lambda ra, dec, h, m: {"OBJCTRA": _hms(ra, " ", 0), "OBJCTDEC": _dms(dec, " ", 0), **_optics(h, PIXEL_UM, 2)},
        keeps_scale=False,
    ),
    Form(
        "scale from FOCALLEN, XPIXSZ (unbinned), XBINNING",
        "hinted",
        lambda ra, dec, h, m: {
            "OBJCTRA": _hms(ra, " ", 0),
            "OBJCTDEC": _dms(dec, " ", 0),
            **_optics(h, PIXEL_UM / 2, 2),
        },
        lambda ra, dec, h, m: {"pixel_size_binned": False},
        keeps_scale=False,
    ),
    Form(
        "fixed RA/Dec in the profile",
        "hinted",
        lambda ra, dec, h, m: {},
        lambda ra, dec, h, m: {"pointing_radec": [round(ra, 1), round(dec, 1)], "pointing_radius_deg": 1.0},
    ),
    Form(
        "fixed alt/az in the profile",
        "hinted",
        lambda ra, dec, h, m: {},
        lambda ra, dec, h, m: {"pointing_altaz": _altaz(ra, dec, m), "pointing_radius_deg": 2.0},
    ),
    Form("no pointing", "blind", lambda ra, dec, h, m: {}),
    Form("no pointing, no scale", "blind", lambda ra, dec, h, m: {}, keeps_scale=False),
)


def field_centre(header: fits.Header) -> tuple[float, float]:
    """RA, Dec (deg) of the image centre by the header's WCS.

    Parameters
    ----------
    header : astropy.io.fits.Header
        A header with a celestial WCS and NAXIS1, NAXIS2.

    Returns
    -------
    ra, dec : float
        The image centre, deg.
    """
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = WCS(header).celestial
    ra, dec = w.all_pix2world((header["NAXIS1"] - 1) / 2.0, (header["NAXIS2"] - 1) / 2.0, 0)
    return float(ra), float(dec)


def pointing_copy(header: fits.Header, form: Form, mjd: float | None = None) -> tuple[fits.Header, dict]:
    """A copy of ``header`` with its pointing in ``form``'s form, and the ``[platesolve]`` settings it needs.

    The copy is ``header`` without its WCS (:func:`skylake.frame.platesolve.strip_wcs`) nor any pointing
    keyword, with ``form``'s cards.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header, with a celestial WCS.
    form : Form
        The form of the pointing.
    mjd : float, optional
        The frame's mid-exposure MJD, UTC (default the header's ``MJD`` + half of ``EXPTIME``); it places a
        fixed alt/az pointing.

    Returns
    -------
    header : astropy.io.fits.Header
        The copy.
    settings : dict
        The ``[platesolve]`` settings the form needs.
    """
    from skylake.frame.platesolve import strip_wcs

    ra, dec = field_centre(header)
    if mjd is None:
        mjd = float(header["MJD"]) + float(header.get("EXPTIME", 0.0)) / 2.0 / 86400.0
    out = strip_wcs(header)
    for key in POINTING_KEYS + (() if form.keeps_scale else SCALE_KEYS):
        out.remove(key, ignore_missing=True, remove_all=True)
    for key, value in form.cards(ra, dec, header, mjd).items():
        out[key] = value
    assert math.isfinite(ra) and math.isfinite(dec)
    return out, form.settings(ra, dec, header, mjd)


def platesolve_toml(refcat: str, settings: dict, extends: str = "skycamz") -> str:
    """A profile extending ``extends`` with a ``[platesolve]`` against ``refcat`` and ``settings``.

    Parameters
    ----------
    refcat : str
        A Parquet file with ``mag_vt``, e.g. Tycho-2.
    settings : dict
        More ``[platesolve]`` settings (:func:`pointing_copy`'s).
    extends : str
        The profile extended.

    Returns
    -------
    str
        The profile, TOML.
    """
    import json

    lines = [
        f'extends = "{extends}"',
        "[platesolve]",
        f"refcat = {json.dumps(str(refcat))}",
        'mag_column = "mag_vt"',
        "scale_tolerance = 0.01",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"
