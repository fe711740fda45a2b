"""Per-pixel aggregation for HEALPix maps: pure numpy/pandas functions on dataframes.

Every map quantity is a groupby over ``(map_key, pixel)`` of per-source samples, never a loop over
sources. Pixels are NESTED: for equatorial maps a source's pixel at ``nside = 2**order`` is its
``_healpix_29`` taken to that order (hats' ``spatial_index_to_healpix``: the lake's spatial index already
holds it); horizon maps put the source's (azimuth, altitude) through ``healpy.ang2pix``.

Conventions (magnitudes in mag): a star's zeropoint is ``zp = ref_mag - inst_mag - color_term *
ref_color`` (:func:`skylake.calib.model.pair_zeropoint`: the calibration model solved for one star), its
clear-sky reference ``zp_clear``, and the pixel's transparency ``10**(-0.4 * median(zp_clear - zp))``
(1 = clear). The sky brightness under a source is ``zp_frame - 2.5 log10(bkg / exptime / pixscale**2)``
in mag/arcsec^2 with ``bkg`` the background mesh value under it (ADU per pixel over the exposure).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skylake.errors import SkylakeError
from skylake.horizon import airmass
from skylake.robust import MAD_TO_SIGMA

__all__ = [
    "HEALPIX_ORDER_MAX",
    "KEYS",
    "MapsError",
    "nside_order",
    "equatorial_pixels",
    "horizon_pixels",
    "pixel_centres",
    "airmass",
    "sky_brightness",
    "aggregate_pixels",
]


HEALPIX_ORDER_MAX = 29
KEYS = ["map_key", "pixel"]


class MapsError(SkylakeError, ValueError):
    """A map request that cannot work (bad nside, selection, or missing site)."""


def nside_order(nside: int) -> int:
    """HEALPix order of ``nside`` (a power of two up to 2**29); MapsError otherwise.

    Parameters
    ----------
    nside : int
        The HEALPix nside.

    Returns
    -------
    int
        The order: ``nside == 2**order``.

    Raises
    ------
    MapsError
        ``nside`` is not an integer power of two from 1 to 2**29.
    """
    n = int(nside) if isinstance(nside, (int, np.integer)) and not isinstance(nside, bool) else -1
    if n < 1 or n > 2**HEALPIX_ORDER_MAX or n & (n - 1):
        raise MapsError(f"nside must be a power of two from 1 to 2**29, got {nside!r}")
    return n.bit_length() - 1


def equatorial_pixels(h29: np.ndarray, nside: int) -> np.ndarray:
    """NESTED pixel at ``nside`` of each ``_healpix_29`` index (a bit shift: no trigonometry).

    Parameters
    ----------
    h29 : numpy.ndarray
        The ``_healpix_29`` spatial indices.
    nside : int
        The HEALPix nside of the pixels.

    Returns
    -------
    numpy.ndarray
        The NESTED pixel of each index.

    Raises
    ------
    MapsError
        ``nside`` is not a power of two from 1 to 2**29.
    """
    from hats.pixel_math.spatial_index import spatial_index_to_healpix

    return spatial_index_to_healpix(np.asarray(h29, np.int64), target_order=nside_order(nside))


def horizon_pixels(az_deg: np.ndarray, alt_deg: np.ndarray, nside: int) -> np.ndarray:
    """NESTED pixel at ``nside`` of each (azimuth, altitude) in degrees (lon = azimuth, lat = altitude).

    Parameters
    ----------
    az_deg : numpy.ndarray
        Azimuths [deg].
    alt_deg : numpy.ndarray
        Altitudes [deg].
    nside : int
        The HEALPix nside of the pixels.

    Returns
    -------
    numpy.ndarray
        The NESTED pixel of each position (int64).

    Raises
    ------
    MapsError
        ``nside`` is not a power of two from 1 to 2**29.
    """
    import healpy as hp

    nside_order(nside)
    return np.asarray(
        hp.ang2pix(int(nside), np.asarray(az_deg, float), np.asarray(alt_deg, float), nest=True, lonlat=True), np.int64
    )


def pixel_centres(pixel: np.ndarray, nside: int) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) in degrees of NESTED pixel centres.

    Parameters
    ----------
    pixel : numpy.ndarray
        NESTED pixels.
    nside : int
        Their HEALPix nside.

    Returns
    -------
    lon : numpy.ndarray
        Longitude of each centre [deg] (RA, or azimuth for a horizon map).
    lat : numpy.ndarray
        Latitude of each centre [deg] (Dec, or altitude for a horizon map).
    """
    import healpy as hp

    lon, lat = hp.pix2ang(int(nside), np.asarray(pixel, np.int64), nest=True, lonlat=True)
    return np.asarray(lon, float), np.asarray(lat, float)


def sky_brightness(
    zp: np.ndarray, bkg_adu: np.ndarray, exptime_s: np.ndarray, pixscale_arcsec: np.ndarray
) -> np.ndarray:
    """Sky surface brightness in mag/arcsec^2: ``zp - 2.5 log10(bkg / exptime / pixscale**2)``.

    Parameters
    ----------
    zp : numpy.ndarray
        The frame's zeropoint [mag] (the magnitude of 1 ADU/s).
    bkg_adu : numpy.ndarray
        The background per pixel over the exposure [ADU].
    exptime_s : numpy.ndarray
        The exposure time [s].
    pixscale_arcsec : numpy.ndarray
        The pixel scale [arcsec/pixel] (so ``pixscale**2`` is the pixel's solid angle in arcsec^2).

    Returns
    -------
    numpy.ndarray
        The sky brightness [mag/arcsec2]; NaN where the background (or the exposure time or pixel scale) is
        not positive.
    """
    bkg, t, s = (np.asarray(v, float) for v in (bkg_adu, exptime_s, pixscale_arcsec))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where((bkg > 0) & (t > 0) & (s > 0), bkg / t / (s * s), np.nan)
        return np.asarray(zp, float) - 2.5 * np.log10(rate)


def _robust_scatter(df: pd.DataFrame, column: str) -> pd.Series:
    """1.4826 x the median absolute deviation of ``column`` per (map_key, pixel). No early return on
    an empty frame: the groupby gives an empty result indexed like the other per-pixel columns, which
    a plain empty Series is not (joining the two fails)."""
    med = df.groupby(KEYS, sort=False)[column].transform("median")
    return (df[column] - med).abs().groupby([df[k] for k in KEYS], sort=False).median() * MAD_TO_SIGMA


def aggregate_pixels(stars: pd.DataFrame, sky: pd.DataFrame, astro: pd.DataFrame, min_stars: int) -> pd.DataFrame:
    """One row per (map_key, pixel) that has any sample.

    A pixel with astrometric samples only has no row (a pixel with astrometry has stars too).

    Parameters
    ----------
    stars : pandas.DataFrame
        Star samples, one row per star measurement: map_key, pixel, frame_id, zp, zp_clear [mag].
    sky : pandas.DataFrame
        Sky samples: map_key, pixel, frame_id, sky_mag [mag/arcsec2].
    astro : pandas.DataFrame
        Astrometric residual samples: map_key, pixel, dra_arcsec, ddec_arcsec, sep_arcsec [arcsec].
    min_stars : int
        The fewest star samples that give a pixel a zeropoint and a transparency.

    Returns
    -------
    pandas.DataFrame
        Sorted by (map_key, pixel): map_key, pixel, n_stars, n_seen (null), map_flags (0), n_frames, zp_median,
        zp_clear_median [mag], transparency, dzp_scatter [mag], n_sky, sky_mag, sky_mag_scatter [mag/arcsec2],
        n_astro, dra_arcsec, ddec_arcsec, sep_arcsec [arcsec]; zeropoint and transparency are NaN where
        n_stars < ``min_stars``.
    """
    stars = stars.assign(dzp=stars["zp"] - stars["zp_clear"])
    g = stars.groupby(KEYS, sort=False)
    out = pd.DataFrame(
        {
            "n_stars": g.size(),
            "zp_median": g["zp"].median(),
            "zp_clear_median": g["zp_clear"].median(),
            "dzp_median": g["dzp"].median(),
            "dzp_scatter": _robust_scatter(stars, "dzp"),
        }
    )
    out["transparency"] = 10.0 ** (0.4 * out.pop("dzp_median"))
    few = out["n_stars"] < int(min_stars)
    out.loc[few, ["zp_median", "transparency"]] = np.nan
    gs = sky.groupby(KEYS, sort=False)
    sky_out = pd.DataFrame(
        {"n_sky": gs.size(), "sky_mag": gs["sky_mag"].median(), "sky_mag_scatter": _robust_scatter(sky, "sky_mag")}
    )
    ga = astro.groupby(KEYS, sort=False)
    astro_out = pd.DataFrame(
        {
            "n_astro": ga.size(),
            "dra_arcsec": ga["dra_arcsec"].median(),
            "ddec_arcsec": ga["ddec_arcsec"].median(),
            "sep_arcsec": ga["sep_arcsec"].median(),
        }
    )
    frames = pd.concat([stars[KEYS + ["frame_id"]], sky[KEYS + ["frame_id"]]]).drop_duplicates()
    n_frames = frames.groupby(KEYS, sort=False).size().rename("n_frames")
    out = out.join(sky_out, how="outer").join(astro_out, how="outer").join(n_frames, how="left")
    for col in ("n_stars", "n_sky", "n_astro", "n_frames"):
        out[col] = out[col].fillna(0).astype(np.int32)
    out["n_seen"] = np.nan  # null: every star counted here was detected
    out["map_flags"] = np.int32(0)
    out = out[(out["n_stars"] > 0) | (out["n_sky"] > 0)]  # a pixel with astrometry only has stars too
    return out.reset_index().sort_values(KEYS, kind="stable").reset_index(drop=True)
