"""Sky coordinates of detections through the header WCS (astropy: TAN, SIP, TPV, ZEA and the rest)."""

from __future__ import annotations

import warnings

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning
from hats.pixel_math.spatial_index import compute_spatial_index

from skylake.errors import FrameRejected


def celestial_wcs(header: fits.Header) -> WCS:
    """The celestial WCS of ``header``; rejects frames without one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FITSFixedWarning, AstropyWarning))
        try:
            wcs = WCS(header, relax=True)
        except Exception as exc:  # astropy raises many kinds on malformed WCS keywords
            raise FrameRejected(f"invalid WCS in header: {type(exc).__name__}: {exc}") from exc
    if not wcs.has_celestial:
        raise FrameRejected("no celestial WCS in the header (no RA/Dec CTYPE1/CTYPE2)")
    if wcs.naxis == 2 and (wcs.wcs.lng, wcs.wcs.lat) == (0, 1):
        return wcs  # already the celestial WCS: .celestial would build a copy
    return wcs.celestial


def pixel_to_sky(wcs: WCS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of 0-based pixel positions, including SIP/TPV distortions (``all_pix2world``)."""
    if len(x) == 0:
        return np.zeros(0), np.zeros(0)
    ra, dec = wcs.all_pix2world(x, y, 0)
    return np.mod(ra, 360.0), dec


def footprint(wcs: WCS, nx: int, ny: int) -> dict:
    """Centre, corners and mean pixel scale of an ``nx`` x ``ny`` image."""
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
    """The HATS spatial index (HEALPix NESTED, order 29) of each position."""
    if len(ra) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(compute_spatial_index(ra, dec), dtype=np.int64)
