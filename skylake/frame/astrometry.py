"""Sky coordinates of detections through the header WCS (astropy: TAN, SIP, TPV, ZEA and the rest).

A WCS is checked before any source is placed with it (:func:`check_wcs`): finite CRVAL, a finite and
non-singular CD/PC matrix, a pixel scale inside the profile's ``[astrometry] pixscale_range`` and a
footprint smaller than the sky. astropy accepts all of these silently (an all-zero CD matrix becomes
1 deg/px, a NaN CRVAL lands at RA 0), which would put a frame's sources anywhere.

Positions are stored in ICRS whatever the frame of the WCS (:func:`native_frame`): equatorial ICRS or FK5
J2000 as they are (FK5 J2000 is ICRS to 0.02"), anything else converted with astropy: FK4/FK5 of another
equinox, Galactic (``GLON``/``GLAT``), supergalactic (``SLON``/``SLAT``) and ecliptic (``ELON``/``ELAT``,
the mean ecliptic and equinox of ``EQUINOX``, J2000 when absent). A WCS in any other frame is rejected, naming
its CTYPE: stored as RA/Dec it would put every source in the wrong place.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning

from skylake.errors import FrameRejected
from skylake.profile import Astrometry

__all__ = ["SKY_DEG2", "celestial_wcs", "native_frame", "check_wcs", "pixel_to_sky", "footprint", "healpix29"]


#: Square degrees of the whole sky: no frame's footprint can be larger.
SKY_DEG2 = 4 * np.pi * (180 / np.pi) ** 2


def celestial_wcs(header: fits.Header) -> WCS:
    """Read the celestial WCS of ``header``; rejects frames without one.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.

    Returns
    -------
    wcs : astropy.wcs.WCS
        The celestial (2-D) part of the header's WCS.

    Raises
    ------
    FrameRejected
        The header's WCS keywords are invalid, it has no celestial WCS, or the WCS is in a frame skylake does
        not convert (:func:`native_frame`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FITSFixedWarning, AstropyWarning))
        try:
            wcs = WCS(header, relax=True)
        except Exception as exc:  # astropy raises many kinds on malformed WCS keywords
            message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise FrameRejected(f"invalid WCS in header: {type(exc).__name__}: {message}") from exc
    if not wcs.has_celestial:
        raise FrameRejected("no celestial WCS in the header (no RA/Dec CTYPE1/CTYPE2)")
    if not (wcs.naxis == 2 and (wcs.wcs.lng, wcs.wcs.lat) == (0, 1)):  # else already celestial: no copy
        wcs = wcs.celestial
    native_frame(wcs)  # a frame skylake cannot convert is a rejection, before anything is placed
    return wcs


def native_frame(wcs: WCS):
    """Find the astropy frame of the WCS's world coordinates when it is not ICRS.

    FK5 J2000 counts as ICRS (the same to 0.02"). Galactic, supergalactic and ecliptic (the mean ecliptic and
    equinox of ``EQUINOX``, J2000 when absent) WCS are converted.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        A celestial WCS.

    Returns
    -------
    frame : astropy.coordinates.BaseCoordinateFrame or None
        The frame of the WCS's coordinates; None when positions need no conversion.

    Raises
    ------
    FrameRejected
        For a frame skylake does not convert (naming CTYPE).
    """
    from astropy.coordinates import FK5, ICRS, BarycentricMeanEcliptic, Galactic, Supergalactic
    from astropy.time import Time
    from astropy.wcs.utils import wcs_to_celestial_frame

    ctype = [str(wcs.wcs.ctype[0]), str(wcs.wcs.ctype[1])]
    lon = ctype[0][:4].rstrip("-").upper()
    equinox = wcs.wcs.equinox if np.isfinite(wcs.wcs.equinox) else 2000.0
    if lon == "RA":
        frame = wcs_to_celestial_frame(wcs)
        if isinstance(frame, ICRS) or (isinstance(frame, FK5) and abs(frame.equinox.jyear - 2000.0) < 1e-6):
            return None
        return frame
    if lon == "GLON":
        return Galactic()
    if lon == "SLON":
        return Supergalactic()
    if lon == "ELON":
        return BarycentricMeanEcliptic(equinox=Time(equinox, format="jyear"))
    raise FrameRejected(
        f"WCS CTYPE1/2 = {ctype[0]!r}/{ctype[1]!r}: skylake stores ICRS positions and converts "
        f"equatorial (RA/DEC), Galactic (GLON/GLAT), supergalactic (SLON/SLAT) and ecliptic (ELON/ELAT) "
        f"WCS only"
    )


def _header_matrix(header: fits.Header) -> tuple[np.ndarray | None, str]:
    """The linear matrix the header itself writes (CDi_j when any is present, else PCi_j x CDELTi), to
    check before astropy substitutes defaults for a degenerate one; None when the header has neither."""
    cd = [[header.get(f"CD{i}_{j}") for j in (1, 2)] for i in (1, 2)]  # frames are 2-D images
    if any(v is not None for row in cd for v in row):
        return np.array([[0.0 if v is None else v for v in row] for row in cd], dtype=object), "CD"
    return None, ""


#: Linear WCS keywords of a 2-D image whose values must be finite numbers when present.
_LINEAR_KEYS = (
    "CRVAL1",
    "CRVAL2",
    "CRPIX1",
    "CRPIX2",
    "CDELT1",
    "CDELT2",
    "CD1_1",
    "CD1_2",
    "CD2_1",
    "CD2_2",
    "PC1_1",
    "PC1_2",
    "PC2_1",
    "PC2_2",
)


def _check_numbers(header: fits.Header) -> None:
    """Reject linear WCS keywords that are not finite numbers (wcslib skips an unparsable card, e.g.
    ``CRVAL1 = NaN``, and puts the reference point at 0)."""
    for key in _LINEAR_KEYS:
        if key not in header:
            continue
        try:
            value = header[key]
        except Exception:  # noqa: BLE001 - astropy's VerifyError on an unparsable card
            text = header.cards[key].image[10:].split("/")[0].strip()
            raise FrameRejected(f"WCS {key} = {text} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise FrameRejected(f"WCS {key} = {value!r} is not a finite number")


def check_wcs(wcs: WCS, header: fits.Header, nx: int, ny: int, cfg: Astrometry) -> None:
    """Reject a celestial WCS that cannot place sources.

    A WCS is rejected for linear keywords that are not finite numbers, a non-finite CRVAL (or a CRVAL2 that
    is not a declination), a CD/PC matrix that is not finite or is singular, a pixel scale outside
    ``cfg.pixscale_range`` or a footprint larger than the sky.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        The celestial WCS read from ``header``.
    header : astropy.io.fits.Header
        The frame's header, whose own keywords are checked before astropy substitutes defaults.
    nx, ny : int
        The image's size, px.
    cfg : skylake.profile.Astrometry
        The profile's ``[astrometry]`` settings (``pixscale_range``, arcsec/px).

    Raises
    ------
    FrameRejected
        With the offending keywords and values.
    """
    _check_numbers(header)
    crval = np.asarray(wcs.wcs.crval, dtype=float)
    if not np.isfinite(crval).all():
        raise FrameRejected(f"WCS reference point CRVAL = {crval.tolist()} is not finite")
    if not (-90.0 <= crval[1] <= 90.0):
        raise FrameRejected(f"WCS reference point CRVAL2 = {crval[1]} is not a declination (-90..90)")
    raw, kind = _header_matrix(header)
    if raw is not None:
        try:
            matrix = raw.astype(float)
        except (TypeError, ValueError):
            raise FrameRejected(f"WCS {kind} matrix {raw.tolist()} holds values that are not numbers") from None
    else:
        matrix = np.asarray(wcs.pixel_scale_matrix, dtype=float)
        kind = "PC x CDELT"
    if not np.isfinite(matrix).all():
        raise FrameRejected(f"WCS {kind} matrix {matrix.tolist()} is not finite")
    singular = np.linalg.svd(matrix, compute_uv=False)  # deg/px along the two principal directions
    if not singular[0] > 0 or singular[1] <= 1e-6 * singular[0]:
        raise FrameRejected(
            f"WCS {kind} matrix {matrix.tolist()} is singular (rank {int(np.sum(singular > 1e-6 * singular[0]))}"
            f"): it maps the image onto a line or a point"
        )
    lo, hi = cfg.pixscale_range
    scales = singular * 3600.0
    if scales.min() < lo or scales.max() > hi:
        raise FrameRejected(
            f"WCS pixel scale {scales.min():.4g}-{scales.max():.4g} arcsec/px is outside the "
            f"profile's [astrometry] pixscale_range {[lo, hi]}"
        )
    area = nx * ny * singular[0] * singular[1]
    if area > SKY_DEG2:
        raise FrameRejected(f"WCS footprint of {area:.0f} deg2 is larger than the sky ({SKY_DEG2:.0f} deg2)")


def pixel_to_sky(wcs: WCS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compute ICRS RA, Dec (deg) of 0-based pixel positions.

    SIP/TPV distortions are included (``all_pix2world``), and the WCS's own frame is converted
    (:func:`native_frame`).

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        The celestial WCS.
    x, y : numpy.ndarray
        0-based pixel positions.

    Returns
    -------
    ra : numpy.ndarray
        Right ascension, deg in [0, 360); NaN where the WCS gives no position.
    dec : numpy.ndarray
        Declination, deg.
    """
    if len(x) == 0:
        return np.zeros(0), np.zeros(0)
    lon, lat = wcs.all_pix2world(x, y, 0)
    frame = native_frame(wcs)
    if frame is not None:
        from astropy.coordinates import SkyCoord

        ok = np.isfinite(lon) & np.isfinite(lat)
        icrs = SkyCoord(np.where(ok, lon, 0.0), np.where(ok, lat, 0.0), unit="deg", frame=frame).icrs
        lon = np.where(ok, icrs.ra.deg, np.nan)
        lat = np.where(ok, icrs.dec.deg, np.nan)
    return np.mod(lon, 360.0), lat


def footprint(wcs: WCS, nx: int, ny: int) -> dict:
    """Compute the centre, corners and mean pixel scale of an ``nx`` x ``ny`` image.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        The celestial WCS.
    nx, ny : int
        The image's size, px.

    Returns
    -------
    footprint : dict
        ``ra_center``, ``dec_center`` (deg), ``footprint_ra``, ``footprint_dec`` (the four outer pixel
        corners, deg) and ``pixscale`` (arcsec/px).

    Raises
    ------
    FrameRejected
        The WCS does not map the image centre to the sky.
    """
    cx = np.array([(nx - 1) / 2.0, -0.5, nx - 0.5, nx - 0.5, -0.5])
    cy = np.array([(ny - 1) / 2.0, -0.5, -0.5, ny - 0.5, ny - 0.5])
    ra, dec = pixel_to_sky(wcs, cx, cy)
    if not (np.isfinite(ra[0]) and np.isfinite(dec[0])):
        raise FrameRejected("the WCS does not map the image centre to the sky")
    from astropy.wcs.utils import proj_plane_pixel_scales

    scales_deg = np.abs(proj_plane_pixel_scales(wcs))  # deg/pix along each axis
    return {
        "ra_center": float(ra[0]),
        "dec_center": float(dec[0]),
        "footprint_ra": [float(v) for v in ra[1:]],
        "footprint_dec": [float(v) for v in dec[1:]],
        "pixscale": float(np.mean(scales_deg) * 3600.0),
    }


def healpix29(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Compute the HATS spatial index (HEALPix NESTED, order 29) of each position.

    Parameters
    ----------
    ra, dec : numpy.ndarray
        Positions, deg.

    Returns
    -------
    index : numpy.ndarray
        The int64 spatial index of each position.
    """
    if len(ra) == 0:
        return np.zeros(0, dtype=np.int64)
    from hats.pixel_math.spatial_index import compute_spatial_index  # hats: ~1 s to import, on workers only

    return np.asarray(compute_spatial_index(ra, dec), dtype=np.int64)
