"""Synthetic survey frames with exactly known truth.

Everything in this module is deterministic from an integer ``seed`` so that
the same call always produces byte-identical pixel data.  It serves three
purposes:

* ``skylake demo``: :func:`write_demo_night` writes a realistic night of
  frames (one tracked field, changing airmass and sky, a passing cloud,
  a few variable stars) into a directory that is then ingested like real
  data.
* tests that need exact expectations: :func:`render_frame` puts stars of
  known total flux at known pixel positions, :func:`tan_wcs_header` gives a
  known astrometric solution, and :func:`write_bad_files` produces the usual
  kinds of broken input a pipeline must quarantine rather than crash on.
* benchmarks: :func:`render_frame` is vectorised (stamp rendering with
  ``np.add.at`` into a padded canvas, noise drawn in row blocks) so a
  4096 x 4096 frame with ~8000 stars renders in well under two seconds.

Conventions used throughout:

* pixel coordinates are 0-based, numpy convention: ``x`` is the column index,
  ``y`` the row index, and the *centre* of pixel ``(row j, column i)`` is at
  ``(x=i, y=j)``.  FITS ``CRPIX`` is 1-based, so FITS pixel ``p`` is numpy
  coordinate ``p - 1`` (astropy's ``*_values`` WCS methods use the 0-based
  convention, matching this module);
* ``shape`` is always ``(ny, nx)`` like a numpy array;
* fluxes and sky levels are in ADU integrated over the exposure, gains in
  e-/ADU, angles in degrees unless a name says otherwise (``_arcsec``,
  ``_px``, ``_s``, ``_d`` for days).
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

__all__ = [
    "DemoTruth",
    "tan_wcs_header",
    "make_sky_catalog",
    "render_frame",
    "write_frame",
    "write_demo_night",
    "write_reference_catalog",
    "write_bad_files",
    "BAD_FILE_NAMES",
    "ZP_TRUE_DEFAULT",
    "K_EXT_DEFAULT",
]

#: Instrumental zero point of the demo camera: magnitude giving 1 ADU/s above
#: the atmosphere.
ZP_TRUE_DEFAULT = 22.0
#: First-order extinction coefficient of the demo site in the V band
#: (mag per unit airmass).
K_EXT_DEFAULT = 0.15

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

# Maximum number of stars rendered in one vectorised batch; bounds the
# temporary (n, k, k) stamp arrays to a few hundred MB at most.
_STAR_BATCH = 50_000
# Rows of the image processed per noise block (keeps temporaries cache-sized).
_NOISE_ROWS = 256


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def _check_shape(shape) -> tuple[int, int]:
    """Validate a ``(ny, nx)`` image shape and return it as two Python ints."""
    try:
        ny, nx = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a (ny, nx) pair of integers, got {shape!r}") from None
    if ny <= 0 or nx <= 0 or (ny, nx) != tuple(shape):
        raise ValueError(f"shape must be two positive integers (ny, nx), got {shape!r}")
    return ny, nx


def _check_finite(name: str, value: float, *, positive: bool = False, nonneg: bool = False) -> float:
    """Return ``float(value)`` or raise ``ValueError`` naming the bad value."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def _erf(x: np.ndarray) -> np.ndarray:
    """Vectorised error function (numpy has none and scipy is not a dependency).

    Abramowitz & Stegun 7.1.26, absolute error < 1.5e-7.  Only used to
    integrate the Gaussian PSF over pixel boundaries; each 1-D profile is
    renormalised afterwards, so the error does not affect flux conservation
    and shifts centroids by < 1e-6 px.
    """
    x = np.asarray(x, dtype=np.float64)
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


def _angular_sep_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation in degrees (haversine; stable at small angles)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


# ---------------------------------------------------------------------------
# 1. WCS
# ---------------------------------------------------------------------------


def tan_wcs_header(ra0_deg, dec0_deg, shape, pixscale_arcsec, rotation_deg=0.0) -> fits.Header:
    """Gnomonic (TAN) WCS header centred on ``(ra0_deg, dec0_deg)``.

    Parameters
    ----------
    ra0_deg, dec0_deg : float
        Sky position (ICRS, degrees) of the image centre, written as CRVAL1/2.
    shape : (ny, nx)
        Image shape in numpy order.  CRPIX is put at the image centre in the
        1-based FITS convention: ``CRPIX1 = (nx + 1) / 2``,
        ``CRPIX2 = (ny + 1) / 2`` (numpy pixel ``((nx-1)/2, (ny-1)/2)``).
    pixscale_arcsec : float
        Pixel scale in arcsec/pixel (> 0).
    rotation_deg : float
        Rotation of the sky on the detector, same meaning as the legacy
        ``CROTA2`` keyword.  With 0, north is +y (up) and east is -x (left),
        the usual sky-on-the-display orientation.

    Returns
    -------
    astropy.io.fits.Header
        WCSAXES, CTYPE1/2 (``RA---TAN``/``DEC--TAN``), CUNIT1/2 (deg),
        CRVAL1/2, CRPIX1/2, CD1_1..CD2_2 (deg/pixel), RADESYS='ICRS',
        EQUINOX=2000.0.  No NAXIS keywords: those come from the data.
    """
    ra0 = _check_finite("ra0_deg", ra0_deg) % 360.0
    dec0 = _check_finite("dec0_deg", dec0_deg)
    if not -90.0 <= dec0 <= 90.0:
        raise ValueError(f"dec0_deg must be within [-90, 90], got {dec0_deg!r}")
    ny, nx = _check_shape(shape)
    scale = _check_finite("pixscale_arcsec", pixscale_arcsec, positive=True) / 3600.0
    rho = math.radians(_check_finite("rotation_deg", rotation_deg))
    c, s = math.cos(rho), math.sin(rho)

    h = fits.Header()
    h["WCSAXES"] = (2, "number of WCS axes")
    h["CTYPE1"] = ("RA---TAN", "gnomonic projection, right ascension")
    h["CTYPE2"] = ("DEC--TAN", "gnomonic projection, declination")
    h["CUNIT1"] = ("deg", "unit of CRVAL1 and CD1_*")
    h["CUNIT2"] = ("deg", "unit of CRVAL2 and CD2_*")
    h["CRVAL1"] = (ra0, "[deg] RA at reference pixel")
    h["CRVAL2"] = (dec0, "[deg] Dec at reference pixel")
    h["CRPIX1"] = ((nx + 1) / 2.0, "reference pixel (1-based), image centre")
    h["CRPIX2"] = ((ny + 1) / 2.0, "reference pixel (1-based), image centre")
    # CD = diag(-scale, +scale) @ [[cos, -sin], [sin, cos]]  (CROTA2 convention)
    h["CD1_1"] = (-scale * c, "[deg/pix] linear transformation matrix")
    h["CD1_2"] = (scale * s, "[deg/pix] linear transformation matrix")
    h["CD2_1"] = (scale * s, "[deg/pix] linear transformation matrix")
    h["CD2_2"] = (scale * c, "[deg/pix] linear transformation matrix")
    h["RADESYS"] = ("ICRS", "celestial reference frame")
    h["EQUINOX"] = (2000.0, "[yr] equinox of the celestial frame")
    return h


# ---------------------------------------------------------------------------
# 2. Catalogue
# ---------------------------------------------------------------------------


def make_sky_catalog(ra0_deg, dec0_deg, radius_deg, n_stars, seed, mag_range=(8.0, 15.0)) -> pd.DataFrame:
    """Random star catalogue filling a spherical cap, deterministic from ``seed``.

    Positions are uniform on the sphere inside the cap of angular radius
    ``radius_deg`` around ``(ra0_deg, dec0_deg)`` (uniform in cos(theta),
    then rotated to the cap centre, so there is no crowding towards the
    poles).  Magnitudes follow differential number counts
    ``dN/dm ~ 10**(0.3 m)`` between ``mag_range`` (about twice as many stars
    per magnitude for each magnitude fainter, as at high Galactic latitude),
    drawn by inverting the cumulative distribution.  ``color`` is a B-V-like
    colour from a Beta(2.5, 3.5) distribution scaled to 0..1.5 (peak ~0.6).

    Returns
    -------
    pandas.DataFrame
        ``star_id`` (int64, 1..n_stars), ``ra`` (deg, in [0, 360)),
        ``dec`` (deg), ``mag``, ``color`` (all float64).
    """
    ra0 = _check_finite("ra0_deg", ra0_deg)
    dec0 = _check_finite("dec0_deg", dec0_deg)
    if not -90.0 <= dec0 <= 90.0:
        raise ValueError(f"dec0_deg must be within [-90, 90], got {dec0_deg!r}")
    radius = _check_finite("radius_deg", radius_deg, positive=True)
    if radius > 180.0:
        raise ValueError(f"radius_deg must be <= 180, got {radius_deg!r}")
    if isinstance(n_stars, bool) or int(n_stars) != n_stars or n_stars < 0:
        raise ValueError(f"n_stars must be a non-negative integer, got {n_stars!r}")
    n = int(n_stars)
    try:
        m_lo, m_hi = (float(v) for v in mag_range)
    except (TypeError, ValueError):
        raise ValueError(f"mag_range must be a (bright, faint) pair of numbers, got {mag_range!r}") from None
    if not (math.isfinite(m_lo) and math.isfinite(m_hi) and m_lo < m_hi):
        raise ValueError(f"mag_range must be finite with bright < faint, got {mag_range!r}")

    rng = np.random.default_rng(seed)
    # Cap around the north pole, uniform in solid angle.
    cos_r = math.cos(math.radians(radius))
    cos_t = rng.uniform(cos_r, 1.0, n)
    sin_t = np.sqrt(np.clip(1.0 - cos_t**2, 0.0, None))
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    v = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t])
    # Rotate the pole onto (ra0, dec0): R = Rz(ra0) @ Ry(90 deg - dec0).
    a = math.radians(90.0 - dec0)
    b = math.radians(ra0)
    ry = np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    rz = np.array([[math.cos(b), -math.sin(b), 0.0], [math.sin(b), math.cos(b), 0.0], [0.0, 0.0, 1.0]])
    x, y, z = rz @ ry @ v
    ra = np.degrees(np.arctan2(y, x)) % 360.0
    ra = np.where(ra >= 360.0, 0.0, ra)  # -tiny % 360 can round to 360.0
    dec = np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))

    # Inverse CDF of p(m) ~ 10**(0.3 m) on [m_lo, m_hi].
    u = rng.uniform(0.0, 1.0, n)
    lo, hi = 10.0 ** (0.3 * m_lo), 10.0 ** (0.3 * m_hi)
    mag = np.log10(lo + u * (hi - lo)) / 0.3
    color = 1.5 * rng.beta(2.5, 3.5, n)

    return pd.DataFrame(
        {
            "star_id": np.arange(1, n + 1, dtype=np.int64),
            "ra": ra.astype(np.float64),
            "dec": dec.astype(np.float64),
            "mag": mag.astype(np.float64),
            "color": color.astype(np.float64),
        }
    )


# ---------------------------------------------------------------------------
# 3. Rendering
# ---------------------------------------------------------------------------


def _stamp_half_width(fwhm_px: float) -> int:
    """Half width (px) of the square PSF stamp: 3 FWHM = 7.1 sigma, at least 3."""
    return max(3, int(math.ceil(3.0 * fwhm_px)))


def _psf_profiles_1d(centre: np.ndarray, first_pix: np.ndarray, k: int, sigma: float) -> np.ndarray:
    """Pixel-integrated, unit-sum 1-D Gaussian profiles.

    ``centre`` (n,) are star positions, ``first_pix`` (n,) the integer index of
    the first stamp pixel; returns (n, k) weights = integral of the Gaussian
    over ``[p - 0.5, p + 0.5]`` for the k pixels, renormalised to sum 1.
    """
    edges = first_pix[:, None] - 0.5 + np.arange(k + 1)[None, :]
    cdf = _erf((edges - centre[:, None]) / (sigma * math.sqrt(2.0)))
    w = np.diff(cdf, axis=1)
    w /= w.sum(axis=1, keepdims=True)
    return w


def _star_columns(stars) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extract and validate x, y, flux arrays from a DataFrame or mapping."""
    if stars is None:
        empty = np.zeros(0)
        return empty, empty, empty
    cols = []
    for name in ("x", "y", "flux"):
        try:
            col = stars[name]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"stars_xy_flux must have columns 'x', 'y', 'flux'; missing {name!r}") from None
        cols.append(np.asarray(col, dtype=np.float64).ravel())
    x, y, flux = cols
    if not (x.size == y.size == flux.size):
        raise ValueError(f"x, y, flux lengths differ: {x.size}, {y.size}, {flux.size}")
    for name, arr in (("x", x), ("y", y), ("flux", flux)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"stars_xy_flux[{name!r}] has a non-finite value {arr[i]!r} at row {i}")
    if (flux < 0).any():
        i = int(np.flatnonzero(flux < 0)[0])
        raise ValueError(f"stars_xy_flux['flux'] must be >= 0 ADU, got {flux[i]!r} at row {i}")
    return x, y, flux


def _apply_extinction_map(extinction_map, x, y, flux, ny, nx) -> np.ndarray:
    """Dim ``flux`` by an extinction map (mag) sampled at the star positions."""
    if callable(extinction_map):
        ext = np.asarray(extinction_map(x, y), dtype=np.float64)
        if ext.shape not in ((), x.shape):
            raise ValueError(f"extinction_map(x, y) must return shape {x.shape}, got {ext.shape}")
    else:
        emap = np.asarray(extinction_map, dtype=np.float64)
        if emap.shape != (ny, nx):
            raise ValueError(f"extinction_map must have the frame shape {(ny, nx)}, got {emap.shape}")
        ix = np.clip(np.floor(x + 0.5).astype(np.int64), 0, nx - 1)
        iy = np.clip(np.floor(y + 0.5).astype(np.int64), 0, ny - 1)
        ext = emap[iy, ix]
    if not np.all(np.isfinite(ext)):
        raise ValueError("extinction_map contains non-finite values at star positions")
    return flux * 10.0 ** (-0.4 * ext)


def render_frame(
    stars_xy_flux,
    shape=(1024, 1024),
    fwhm_px=2.5,
    sky_adu=1000.0,
    read_noise_adu=5.0,
    gain=1.5,
    seed=0,
    saturation=None,
    extinction_map=None,
    *,
    noise=True,
    exact_poisson_below_e=1000.0,
) -> np.ndarray:
    """Render a star field with sky, photon and read noise; float32 ADU.

    PSF
        A circular **Gaussian** with the given FWHM (pixels), integrated
        exactly over each pixel (error functions on pixel edges) rather than
        sampled at pixel centres, so even sharp PSFs keep the right flux and
        centroid.  Each star is rendered into a square stamp of half width
        ``ceil(3 * fwhm_px)`` (17 x 17 for FWHM 2.5, i.e. +-7 sigma) and the
        stamp is renormalised to sum exactly to the star's ``flux``: for a
        star whose stamp lies on the chip, the sum of its pixels equals its
        flux to float32 precision, and the flux-weighted centroid equals
        ``(x, y)`` to < 1e-4 px.  Stars partly off the chip lose the part of
        the stamp that falls outside (as a real detector would); stars whose
        stamp misses the chip entirely are ignored.  A Gaussian was chosen
        over a Moffat because it is separable (cheap to render and to
        integrate exactly), its truth is easy to state in tests, and a
        Moffat's extended wings would need much larger stamps.

    Noise (``noise=True``)
        The noiseless model ``sky_adu + stars`` (ADU) is converted to
        electrons with ``gain`` (e-/ADU), photon noise is drawn, the result is
        converted back to ADU, and Gaussian read noise of ``read_noise_adu``
        (ADU rms) is added.  Pixels expecting fewer than
        ``exact_poisson_below_e`` electrons get exact Poisson draws; brighter
        pixels use the normal approximation N(lambda, lambda), whose only
        difference from Poisson is a skewness of 1/sqrt(lambda) (< 3 % at
        the default threshold) and which is ~3x faster - this is what keeps
        a 4k x 4k frame under a second.  Pass ``exact_poisson_below_e=np.inf``
        for exact Poisson everywhere.  With ``noise=False`` the noiseless
        model is returned (``seed`` then has no effect).

    Parameters
    ----------
    stars_xy_flux : DataFrame or mapping with ``x``, ``y``, ``flux``
        0-based pixel positions (``x`` column, ``y`` row, numpy convention:
        pixel centres at integers) and total flux in ADU (>= 0) of each star.
        May be ``None`` or empty for a sky-only frame.
    shape : (ny, nx)
        Output image shape.
    fwhm_px : float
        PSF full width at half maximum in pixels (> 0).
    sky_adu : float
        Uniform sky background in ADU per pixel (>= 0).
    read_noise_adu : float
        Read noise in ADU rms (>= 0).
    gain : float
        Detector gain in e-/ADU (> 0), used for the photon noise.
    seed : int
        Seed for ``numpy.random.default_rng``; equal seeds give identical
        frames.
    saturation : float or None
        If given, pixels are clipped to at most this value (ADU) after the
        noise is added, like a full well / ADC limit.
    extinction_map : None, (ny, nx) array of magnitudes, or callable
        Extra extinction (mag) applied to each star's flux, sampled at the
        star's nearest pixel (array; stars off the chip use the nearest edge
        pixel) or evaluated as ``extinction_map(x, y) -> mag`` (callable).
        The sky level is not affected.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(ny, nx)`` in ADU.
    """
    ny, nx = _check_shape(shape)
    fwhm = _check_finite("fwhm_px", fwhm_px, positive=True)
    sky = _check_finite("sky_adu", sky_adu, nonneg=True)
    rn = _check_finite("read_noise_adu", read_noise_adu, nonneg=True)
    g = _check_finite("gain", gain, positive=True)
    if saturation is not None:
        saturation = _check_finite("saturation", saturation)
    thresh = float(exact_poisson_below_e)
    if math.isnan(thresh):
        raise ValueError(f"exact_poisson_below_e must not be NaN, got {exact_poisson_below_e!r}")

    x, y, flux = _star_columns(stars_xy_flux)
    if extinction_map is not None and x.size:
        flux = _apply_extinction_map(extinction_map, x, y, flux, ny, nx)

    sigma = fwhm * _FWHM_TO_SIGMA
    h = _stamp_half_width(fwhm)
    k = 2 * h + 1
    # Padded canvas: every stamp that overlaps the chip (centre pixel in
    # [-h, n-1+h], so stamp pixels in [-2h, n-1+2h]) fits inside it.
    pad = 2 * h
    pw = nx + 2 * pad
    canvas = np.zeros((ny + 2 * pad, pw), dtype=np.float32)
    flat = canvas.reshape(-1)

    ix = np.floor(x + 0.5).astype(np.int64)  # nearest pixel centre
    iy = np.floor(y + 0.5).astype(np.int64)
    keep = (ix >= -h) & (ix <= nx - 1 + h) & (iy >= -h) & (iy <= ny - 1 + h) & (flux > 0)
    sel = np.flatnonzero(keep)
    offsets = (np.arange(k)[:, None] * pw + np.arange(k)[None, :]).ravel()  # (k*k,)
    for start in range(0, sel.size, _STAR_BATCH):
        b = sel[start : start + _STAR_BATCH]
        x0 = ix[b] - h  # first stamp column / row in image coordinates
        y0 = iy[b] - h
        wx = _psf_profiles_1d(x[b], x0, k, sigma)
        wy = _psf_profiles_1d(y[b], y0, k, sigma)
        w = (flux[b][:, None, None] * wy[:, :, None] * wx[:, None, :]).astype(np.float32)
        base = (y0 + pad) * pw + (x0 + pad)  # canvas index of each stamp's first pixel
        np.add.at(flat, (base[:, None] + offsets[None, :]).ravel(), w.ravel())

    model = canvas[pad : pad + ny, pad : pad + nx]
    if sky:
        model += np.float32(sky)

    if not noise:
        out = np.ascontiguousarray(model)
    else:
        rng = np.random.default_rng(seed)
        out = np.empty((ny, nx), dtype=np.float32)
        var_scale = np.float32(1.0 / g)  # var(ADU) of photon noise = model / gain
        rn2 = np.float32(rn * rn)
        for r0 in range(0, ny, _NOISE_ROWS):
            m = model[r0 : r0 + _NOISE_ROWS]
            o = out[r0 : r0 + _NOISE_ROWS]
            z = rng.standard_normal(m.shape, dtype=np.float32)
            # Normal approximation of photon noise + read noise, in one draw.
            s = m * var_scale
            s += rn2
            np.sqrt(s, out=s)
            s *= z
            np.add(m, s, out=o)
            low = m * np.float32(g) < thresh
            if low.any():
                lam_e = m[low].astype(np.float64) * g
                rnz = rng.standard_normal(lam_e.size)
                o[low] = (rng.poisson(lam_e) / g + rn * rnz).astype(np.float32)
    if saturation is not None:
        np.minimum(out, np.float32(saturation), out=out)
    return out


# ---------------------------------------------------------------------------
# 4. Writing FITS
# ---------------------------------------------------------------------------

_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|BZERO|BSCALE|BLANK|"
    r"CHECKSUM|DATASUM|TFIELDS|TTYPE\d+|TFORM\d+|"
    # tile-compression bookkeeping (only these Z* keywords; ZD etc. are real data)
    r"ZIMAGE|ZSIMPLE|ZEXTEND|ZBLOCKED|ZTENSION|ZPCOUNT|ZGCOUNT|ZCMPTYPE|ZBITPIX|ZNAXIS\d*|"
    r"ZTILE\d+|ZNAME\d+|ZVAL\d+|ZQUANTIZ|ZDITHER0|ZHECKSUM|ZDATASUM|ZBLANK|ZSCALE|ZZERO)$"
)


def _clean_header(header) -> fits.Header:
    """Copy of ``header`` without structural keywords (they follow the data)."""
    if header is None:
        return fits.Header()
    out = header.copy() if isinstance(header, fits.Header) else fits.Header(header)
    for key in {k for k in out.keys() if _STRUCTURAL.match(k)}:
        del out[key]  # removes every occurrence
    return out


def _to_uint16(data: np.ndarray) -> np.ndarray:
    """Round and clip to 0..65535 like a 16-bit ADC; refuse non-finite pixels."""
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"bitpix16=True needs finite pixels; found {arr[idx]!r} at index {idx} "
                "(a 16-bit camera cannot store NaN/inf)"
            )
        arr = np.rint(arr)
    return np.clip(arr, 0, 65535).astype(np.uint16)


def write_frame(path, data, header=None, *, bitpix16=False, overwrite=True, quantize_level=16.0) -> Path:
    """Write an image to FITS; the format follows the file name.

    * ``*.fits`` (also ``.fit``/``.fts``): plain FITS, image in the primary HDU.
    * ``*.fits.gz``: the same, gzip-compressed as a whole file (astropy reads
      it transparently).
    * ``*.fits.fz``: tile-compressed (fpack style) with RICE_1: an empty
      primary HDU plus a ``CompImageHDU`` in HDU 1, which astropy exposes as
      a compressed image with the header and decompressed data.  Float data
      are quantised by RICE to ``noise_rms / quantize_level`` (lossy, like
      fpack's default ``-q 16``); 16-bit data are lossless.

    ``bitpix16=True`` stores the pixels as unsigned 16-bit integers the way
    most CCD/CMOS cameras do: BITPIX=16 with BZERO=32768, BSCALE=1, values
    rounded to the nearest integer and clipped to 0..65535 ADU.  astropy
    undoes the scaling on read (dtype uint16).  Non-finite pixels raise
    ``ValueError`` in this mode.  Otherwise the data keep their dtype
    (float32 from :func:`render_frame`, BITPIX=-32).

    Structural keywords in ``header`` (SIMPLE, BITPIX, NAXISn, BZERO, ...)
    are dropped and regenerated from the data.  Returns the path written.
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".fits.fz") or name.endswith(".fz"):
        kind = "fz"
    elif name.endswith((".fits.gz", ".fit.gz", ".fts.gz")):
        kind = "gz"
    elif name.endswith((".fits", ".fit", ".fts")):
        kind = "plain"
    else:
        raise ValueError(f"path must end in .fits, .fits.gz or .fits.fz, got {str(path)!r}")
    arr = np.asarray(data)
    if arr.ndim < 1 or arr.dtype.kind not in "uif":
        raise ValueError(f"data must be a numeric image array, got dtype {arr.dtype} with ndim {arr.ndim}")
    hdr = _clean_header(header)
    if bitpix16:
        arr = _to_uint16(arr)
    elif arr.dtype == np.float16:  # no FITS BITPIX for half floats
        arr = arr.astype(np.float32)

    if kind == "fz":
        if arr.ndim != 2:
            raise ValueError(f".fits.fz output supports 2-D images only, got shape {arr.shape}")
        comp = fits.CompImageHDU(
            data=arr,
            header=hdr,
            compression_type="RICE_1",
            quantize_level=float(quantize_level),
        )
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(p, overwrite=overwrite)
    else:
        # astropy gzips automatically when the name ends in .gz
        fits.PrimaryHDU(data=arr, header=hdr).writeto(p, overwrite=overwrite)
    return p


# ---------------------------------------------------------------------------
# 5. Demo night
# ---------------------------------------------------------------------------


@dataclass
class DemoTruth:
    """Exact truth behind a :func:`write_demo_night` run.

    Relations that hold exactly (up to float rounding):

    ``detections.flux_adu == 10**(-0.4 * (mag_true_this_frame - color_term * color + extinction_mag - zp_true)) * exptime``

    i.e. ``ref - inst = zp_true + color_term * color - extinction_mag`` with ``inst = -2.5 log10(flux / exptime)``

    ``extinction_mag == k_ext * airmass + cloud_mag``  (frame airmass from
    the FITS header, ``cloud_mag`` the cloud's extinction at the star)

    ``mag_true_this_frame == mag + amplitude * sin(2*pi*mjd_mid/period_d + phase)``
    for variables, ``== mag`` otherwise.

    Attributes
    ----------
    stars : DataFrame
        star_id, ra, dec (deg), mag (mean V), color (B-V-like),
        is_variable, amplitude (mag, semi-amplitude; 0 if constant),
        period_d (days; NaN if constant), phase (rad; NaN if constant).
    frames : DataFrame, one row per frame in time order
        path, frame_index, date_obs, mjd_start, mjd_mid, exptime (s),
        airmass (as in the header), sky_adu (per pixel, whole exposure),
        zp_true (mag for 1 ADU/s above the atmosphere), k_ext (mag/airmass),
        zp_eff (= zp_true - k_ext*airmass, cloud excluded), color_term
        (mag per unit colour),
        cloud_ra, cloud_dec, cloud_radius_deg (Gaussian sigma),
        cloud_depth_mag (extinction at the core), crval1, crval2 (pointing),
        ha_deg (hour angle of the field centre), sun_alt_deg.
    detections : DataFrame, one row per star per frame whose centre fell on
        the chip (-0.5 <= x < nx-0.5, same for y)
        path, star_id, x, y (0-based pixel), flux_adu (total, before noise
        and saturation), mag_true_this_frame, extinction_mag (airmass +
        cloud), cloud_mag, peak_adu (noiseless peak pixel incl. sky),
        saturated (peak_adu >= SATURATE).
    meta : dict
        Generation parameters (shape, seed, gain, read noise, saturation,
        fwhm, pixscale, site, ...).
    """

    stars: pd.DataFrame
    frames: pd.DataFrame
    detections: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def paths(self) -> list[str]:
        """Frame paths in time order."""
        return list(self.frames["path"])


def _gmst_deg(jd: np.ndarray) -> np.ndarray:
    """Greenwich mean sidereal time (deg), IAU 1982 linear approximation (~0.1 s)."""
    return (280.46061837 + 360.98564736629 * (jd - 2451545.0)) % 360.0


def _sun_radec_deg(jd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low-precision solar RA/Dec (deg), Astronomical Almanac formula (~0.01 deg)."""
    n = jd - 2451545.0
    L = np.radians((280.460 + 0.9856474 * n) % 360.0)
    gm = np.radians((357.528 + 0.9856003 * n) % 360.0)
    lam = L + np.radians(1.915) * np.sin(gm) + np.radians(0.020) * np.sin(2 * gm)
    eps = np.radians(23.439 - 4e-7 * n)
    ra = np.degrees(np.arctan2(np.cos(eps) * np.sin(lam), np.cos(lam))) % 360.0
    dec = np.degrees(np.arcsin(np.sin(eps) * np.sin(lam)))
    return ra, dec


def _altitude_deg(ha_deg, dec_deg, lat_deg) -> np.ndarray:
    ha, dec, lat = np.radians(ha_deg), np.radians(dec_deg), math.radians(lat_deg)
    s = np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(ha)
    return np.degrees(np.arcsin(np.clip(s, -1.0, 1.0)))


def _airmass(alt_deg: np.ndarray) -> np.ndarray:
    """Kasten & Young (1989) airmass; finite down to the horizon."""
    alt = np.asarray(alt_deg, dtype=np.float64)
    return 1.0 / (np.sin(np.radians(alt)) + 0.50572 * (alt + 6.07995) ** -1.6364)


def _twilight_factor(sun_alt_deg: np.ndarray) -> np.ndarray:
    """Multiplicative sky brightening from twilight (1 = dark sky).

    The V-band twilight sky fades by roughly 0.4 mag per degree of solar
    depression and reaches the dark-sky level near -18 deg; modelled
    smoothly as ``1 + 10**(0.16 * (sun_alt + 18))`` (x2 at -18 deg,
    x10 at -12 deg, ~x100 at -6 deg).
    """
    return 1.0 + 10.0 ** (0.16 * (np.asarray(sun_alt_deg) + 18.0))


def write_demo_night(
    out_dir,
    n_frames=12,
    shape=(1024, 1024),
    seed=42,
    ra0_deg=150.0,
    dec0_deg=20.0,
    pixscale_arcsec=4.0,
    n_stars=1500,
    start_utc="2026-03-01T21:00:00",
    cadence_s=600,
    exptime_s=30.0,
    cloud=True,
    n_variables=5,
    *,
    mag_range=(8.0, 15.0),
    zp_true=ZP_TRUE_DEFAULT,
    k_ext=K_EXT_DEFAULT,
    color_term=0.0,
    cloud_track=(-0.75, 0.75),
    cloud_radius_chips=1.0 / 3.0,
    fwhm_px=2.5,
    gain=1.5,
    read_noise_adu=5.0,
    saturation_adu=60000.0,
    sky_mag_arcsec2=21.5,
    jitter_px=2.0,
    rotation_deg=0.0,
    site_lat_deg=28.76,
    site_lon_deg=-17.88,
    bitpix16=True,
) -> DemoTruth:
    """Write one synthetic night of a tracked field and return its exact truth.

    The telescope (at ``site_lat_deg``, ``site_lon_deg`` - La Palma by
    default, longitude east-positive) points at ``(ra0_deg, dec0_deg)``
    every ``cadence_s`` seconds from ``start_utc`` and takes ``n_frames``
    exposures of ``exptime_s`` seconds.  Per frame:

    * pointing: the nominal TAN WCS (:func:`tan_wcs_header`) shifted by a
      random pointing error of ``jitter_px`` pixels rms per axis; the header
      WCS is the true one for that frame;
    * stars: a :func:`make_sky_catalog` cap (radius = half the chip diagonal
      plus 2 %, so ~2/3 of ``n_stars`` land on the chip) projected with
      ``astropy.wcs.WCS(header).world_to_pixel_values``;
    * flux (ADU) = ``10**(-0.4 * (m - zp_true)) * exptime`` with
      ``m = mag_true_this_frame - color_term * color + k_ext * airmass + cloud_mag``; airmass
      (Kasten & Young) of the field centre at mid-exposure, from the hour
      angle (GMST linear formula), the same for all stars of a frame;
    * cloud (``cloud=True``): a Gaussian blob on the sky,
      ``cloud_mag = depth * exp(-0.5 * (sep / radius)**2)`` with ``depth``
      drawn in 0.5..0.8 mag and ``radius`` (the Gaussian sigma)
      ``cloud_radius_chips`` (default a third) of the chip width; it drifts in a straight line at constant speed from
      ``cloud_track[0]`` (default -0.75) chip widths on one side of the field
      centre to ``cloud_track[1]`` (0.75) on the other, in a random
      direction, over the night's frames (a wider track leaves the first and
      last frames clear).  It dims stars only (sky level unchanged);
    * variables: ``n_variables`` stars at least 10 % of the chip away from
      its edges, in the 2 magnitudes just fainter than the brightest mean
      magnitude that never saturates at maximum light (about 12.8..14.8 with
      the defaults), get ``mag(t) = mag + A sin(2 pi t / P + phase)`` with
      ``t = mjd_mid``, semi-amplitude ``A`` in 0.3..1.0 mag and period
      ``P`` in 2..8 hours;
    * sky: ``sky_mag_arcsec2`` (V, dark, per arcsec^2) converted to ADU per
      pixel, times a smooth twilight factor from the Sun's altitude (so the
      first frames of an evening are brighter);
    * pixels: :func:`render_frame` (Gaussian PSF ``fwhm_px``, photon + read
      noise, clipped at ``saturation_adu``), written with
      :func:`write_frame` as 16-bit unsigned (BZERO=32768) unless
      ``bitpix16=False``.

    Files are named ``demo_YYYYMMDD_NNNN.fits`` where YYYYMMDD is the UT date
    of ``start_utc`` (the night's date, the same for all frames even after
    midnight) and NNNN the 1-based frame number.  Existing files of the same
    name are overwritten.

    Header keywords: INSTRUME='DEMOCAM', TELESCOP='skylake-demo',
    FILTER='V', OBJECT='DEMO-FIELD', IMAGETYP='LIGHT', DATE-OBS (ISO UTC,
    start of exposure, ms precision), MJD-OBS (start), EXPTIME (s),
    AIRMASS (mid-exposure), GAIN (e-/ADU), RDNOISE (e-), SATURATE (ADU),
    BUNIT='adu', SITELAT, SITELONG (deg) plus the TAN WCS keywords.

    Returns
    -------
    DemoTruth
    """
    from astropy.time import Time, TimeDelta
    from astropy.wcs import WCS

    if isinstance(n_frames, bool) or int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    n_frames = int(n_frames)
    ny, nx = _check_shape(shape)
    cadence = _check_finite("cadence_s", cadence_s, positive=True)
    exptime = _check_finite("exptime_s", exptime_s, positive=True)
    if exptime > cadence:
        raise ValueError(f"exptime_s ({exptime_s!r}) must not exceed cadence_s ({cadence_s!r})")
    scale_arcsec = _check_finite("pixscale_arcsec", pixscale_arcsec, positive=True)
    if isinstance(n_variables, bool) or int(n_variables) != n_variables or n_variables < 0:
        raise ValueError(f"n_variables must be a non-negative integer, got {n_variables!r}")
    n_variables = int(n_variables)
    try:
        t0 = Time(start_utc, scale="utc")
        t0.mjd  # noqa: B018 - force parsing errors here
    except (ValueError, TypeError):
        raise ValueError(f"start_utc must be an ISO UTC time like '2026-03-01T21:00:00', got {start_utc!r}") from None

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # Independent, reproducible sub-seeds for each random ingredient.
    (cat_seed, var_seed, cloud_seed, jit_seed), frame_seeds = (
        rng.integers(0, 2**63 - 1, 4),
        rng.integers(0, 2**63 - 1, n_frames),
    )

    # --- base pointing and catalogue --------------------------------------
    base_hdr = tan_wcs_header(ra0_deg, dec0_deg, (ny, nx), scale_arcsec, rotation_deg)
    base_wcs = WCS(base_hdr)
    half_diag_deg = 0.5 * math.hypot(nx, ny) * scale_arcsec / 3600.0
    stars = make_sky_catalog(ra0_deg, dec0_deg, 1.02 * half_diag_deg, n_stars, int(cat_seed), mag_range)
    n = len(stars)
    ra_s = stars["ra"].to_numpy()
    dec_s = stars["dec"].to_numpy()
    mag_s = stars["mag"].to_numpy()
    color_s = stars["color"].to_numpy()

    # --- times, geometry, sky ---------------------------------------------
    t_start = t0 + TimeDelta(np.arange(n_frames) * cadence, format="sec")
    t_start.precision = 3  # DATE-OBS to the millisecond
    date_obs = [str(s) for s in t_start.isot]
    # Use the header-rounded times as the truth so header and truth agree.
    t_start = Time(date_obs, format="isot", scale="utc")
    mjd_start = np.asarray(t_start.mjd, dtype=np.float64)
    mjd_mid = mjd_start + 0.5 * exptime / 86400.0
    jd_mid = mjd_mid + 2400000.5
    lst = (_gmst_deg(jd_mid) + site_lon_deg) % 360.0
    ha = ((lst - float(ra0_deg)) + 180.0) % 360.0 - 180.0
    alt = _altitude_deg(ha, float(dec0_deg), site_lat_deg)
    if np.any(alt <= 5.0):
        i = int(np.argmin(alt))
        raise ValueError(
            f"field at RA {ra0_deg!r}, Dec {dec0_deg!r} is at altitude {alt[i]:.1f} deg (<= 5) at "
            f"{date_obs[i]}; choose another start_utc or field"
        )
    airmass = np.round(_airmass(alt), 5)
    sun_ra, sun_dec = _sun_radec_deg(jd_mid)
    sun_alt = _altitude_deg(lst - sun_ra, sun_dec, site_lat_deg)
    if np.any(sun_alt > -8.0):
        i = int(np.argmax(sun_alt))
        raise ValueError(
            f"the Sun is at altitude {sun_alt[i]:.1f} deg (> -8) at {date_obs[i]} for a site at "
            f"lat {site_lat_deg!r}, lon {site_lon_deg!r}; the night is over - use fewer frames, "
            "a shorter cadence_s or a later start_utc"
        )
    dark_sky_rate = 10.0 ** (-0.4 * (sky_mag_arcsec2 - 2.5 * math.log10(scale_arcsec**2) - zp_true))  # ADU/s/px
    sky_adu = np.round(dark_sky_rate * exptime * _twilight_factor(sun_alt), 3)

    # --- variables ---------------------------------------------------------
    vrng = np.random.default_rng(var_seed)
    x_b, y_b = base_wcs.world_to_pixel_values(ra_s, dec_s)
    margin = 0.1 * min(nx, ny)
    central = (x_b > margin) & (x_b < nx - 1 - margin) & (y_b > margin) & (y_b < ny - 1 - margin)
    # Variables must stay unsaturated even at maximum light: the brightest
    # allowed mean magnitude puts a centred star's peak pixel at 80 % of
    # saturation at mag - 1.0 (the largest amplitude), ignoring extinction.
    peak_frac_max = _erf(0.5 / (fwhm_px * _FWHM_TO_SIGMA * math.sqrt(2.0))) ** 2
    headroom = max(0.8 * saturation_adu - float(sky_adu.max()), 1.0)
    m_unsat = zp_true - 2.5 * math.log10(headroom / (peak_frac_max * exptime)) + 1.0
    good = np.flatnonzero(central & (mag_s >= m_unsat) & (mag_s <= m_unsat + 2.0))
    if good.size < n_variables:  # fall back to any unsaturated star, then to any star
        good = np.flatnonzero(central & (mag_s >= m_unsat))
    if good.size < n_variables:
        good = np.flatnonzero(central)
    if good.size < n_variables:
        raise ValueError(
            f"n_variables={n_variables} exceeds the {good.size} catalogue stars available "
            f"in the central chip area; increase n_stars (now {n_stars})"
        )
    var_idx = np.sort(vrng.choice(good, size=n_variables, replace=False))
    is_var = np.zeros(n, dtype=bool)
    is_var[var_idx] = True
    amplitude = np.zeros(n)
    period_d = np.full(n, np.nan)
    phase = np.full(n, np.nan)
    amplitude[var_idx] = vrng.uniform(0.3, 1.0, n_variables)
    period_d[var_idx] = vrng.uniform(2.0, 8.0, n_variables) / 24.0
    phase[var_idx] = vrng.uniform(0.0, 2.0 * math.pi, n_variables)
    stars = stars.assign(is_variable=is_var, amplitude=amplitude, period_d=period_d, phase=phase)

    # --- cloud track ---------------------------------------------------------
    crng = np.random.default_rng(cloud_seed)
    width_px = float(max(nx, ny))
    cloud_radius_deg = width_px * scale_arcsec / 3600.0 * _check_finite("cloud_radius_chips", cloud_radius_chips,
                                                                          positive=True)
    angle = crng.uniform(0.0, 2.0 * math.pi)
    depth = crng.uniform(0.5, 0.8)
    cross = crng.uniform(-0.2, 0.2) * width_px  # offset of the track from the centre
    u = np.array([math.cos(angle), math.sin(angle)])
    perp = np.array([-u[1], u[0]])
    frac = np.linspace(*cloud_track, n_frames) if n_frames > 1 else np.zeros(1)
    cx = (nx - 1) / 2.0 + frac * width_px * u[0] + cross * perp[0]
    cy = (ny - 1) / 2.0 + frac * width_px * u[1] + cross * perp[1]
    cloud_ra, cloud_dec = base_wcs.pixel_to_world_values(cx, cy)
    cloud_ra, cloud_dec = np.asarray(cloud_ra, dtype=float), np.asarray(cloud_dec, dtype=float)
    if not cloud:
        depth = 0.0
        cloud_ra = np.full(n_frames, np.nan)
        cloud_dec = np.full(n_frames, np.nan)

    # --- pointing jitter ---------------------------------------------------
    jrng = np.random.default_rng(jit_seed)
    jit = jrng.normal(0.0, float(jitter_px), (n_frames, 2)) if jitter_px else np.zeros((n_frames, 2))
    point_ra, point_dec = base_wcs.pixel_to_world_values((nx - 1) / 2.0 + jit[:, 0], (ny - 1) / 2.0 + jit[:, 1])
    point_ra = np.atleast_1d(np.asarray(point_ra, dtype=float))
    point_dec = np.atleast_1d(np.asarray(point_dec, dtype=float))

    sig_sqrt2 = fwhm_px * _FWHM_TO_SIGMA * math.sqrt(2.0)

    def _centre_pixel_frac(c: np.ndarray) -> np.ndarray:
        # 1-D fraction of a star's flux in its nearest pixel (the brightest one)
        p = np.floor(c + 0.5)
        return 0.5 * (_erf((p + 0.5 - c) / sig_sqrt2) - _erf((p - 0.5 - c) / sig_sqrt2))

    night = t0.strftime("%Y%m%d")
    frame_rows, det_tables = [], []
    star_ids = stars["star_id"].to_numpy()
    for i in range(n_frames):
        path = out / f"demo_{night}_{i + 1:04d}.fits"
        hdr = tan_wcs_header(point_ra[i], point_dec[i], (ny, nx), scale_arcsec, rotation_deg)
        wcs = WCS(hdr)
        x, y = wcs.world_to_pixel_values(ra_s, dec_s)
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

        mag_now = mag_s.copy()
        mag_now[var_idx] += amplitude[var_idx] * np.sin(2 * math.pi * mjd_mid[i] / period_d[var_idx] + phase[var_idx])
        if depth > 0:
            sep = _angular_sep_deg(ra_s, dec_s, cloud_ra[i], cloud_dec[i])
            cloud_mag = depth * np.exp(-0.5 * (sep / cloud_radius_deg) ** 2)
        else:
            cloud_mag = np.zeros(n)
        ext = k_ext * airmass[i] + cloud_mag
        flux = 10.0 ** (-0.4 * (mag_now - color_term * color_s + ext - zp_true)) * exptime

        img = render_frame(
            {"x": x, "y": y, "flux": flux},
            shape=(ny, nx),
            fwhm_px=fwhm_px,
            sky_adu=sky_adu[i],
            read_noise_adu=read_noise_adu,
            gain=gain,
            seed=int(frame_seeds[i]),
            saturation=saturation_adu,
        )
        hdr_out = fits.Header()
        hdr_out["TELESCOP"] = ("skylake-demo", "synthetic telescope")
        hdr_out["INSTRUME"] = ("DEMOCAM", "synthetic camera")
        hdr_out["OBJECT"] = ("DEMO-FIELD", "target field")
        hdr_out["IMAGETYP"] = ("LIGHT", "frame type")
        hdr_out["FILTER"] = ("V", "filter")
        hdr_out["DATE-OBS"] = (date_obs[i], "UTC start of exposure")
        hdr_out["MJD-OBS"] = (float(mjd_start[i]), "[d] MJD (UTC) start of exposure")
        hdr_out["EXPTIME"] = (exptime, "[s] exposure time")
        hdr_out["AIRMASS"] = (float(airmass[i]), "airmass at mid-exposure")
        hdr_out["GAIN"] = (float(gain), "[e-/ADU] detector gain")
        hdr_out["RDNOISE"] = (float(read_noise_adu * gain), "[e-] read noise")
        hdr_out["SATURATE"] = (float(saturation_adu), "[ADU] saturation level")
        hdr_out["BUNIT"] = ("adu", "pixel unit")
        hdr_out["SITELAT"] = (float(site_lat_deg), "[deg] site latitude")
        hdr_out["SITELONG"] = (float(site_lon_deg), "[deg] site longitude, east positive")
        hdr_out.extend(hdr)
        write_frame(path, img, hdr_out, bitpix16=bitpix16)

        frame_rows.append(
            {
                "path": str(path),
                "frame_index": i + 1,
                "date_obs": date_obs[i],
                "mjd_start": float(mjd_start[i]),
                "mjd_mid": float(mjd_mid[i]),
                "exptime": exptime,
                "airmass": float(airmass[i]),
                "sky_adu": float(sky_adu[i]),
                "zp_true": float(zp_true),
                "k_ext": float(k_ext),
                "zp_eff": float(zp_true - k_ext * airmass[i]),
                "color_term": float(color_term),
                "cloud_ra": float(cloud_ra[i]),
                "cloud_dec": float(cloud_dec[i]),
                "cloud_radius_deg": float(cloud_radius_deg),
                "cloud_depth_mag": float(depth),
                "crval1": float(hdr["CRVAL1"]),
                "crval2": float(hdr["CRVAL2"]),
                "ha_deg": float(ha[i]),
                "sun_alt_deg": float(sun_alt[i]),
            }
        )
        on = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
        # noiseless value of the star's brightest pixel, sky included (neighbours ignored)
        peak = flux[on] * _centre_pixel_frac(x[on]) * _centre_pixel_frac(y[on]) + sky_adu[i]
        det_tables.append(
            pd.DataFrame(
                {
                    "path": str(path),
                    "star_id": star_ids[on],
                    "x": x[on],
                    "y": y[on],
                    "flux_adu": flux[on],
                    "mag_true_this_frame": mag_now[on],
                    "extinction_mag": ext[on],
                    "cloud_mag": cloud_mag[on],
                    "peak_adu": peak,
                    "saturated": peak >= saturation_adu,
                }
            )
        )

    frames = pd.DataFrame(frame_rows)
    detections = pd.concat(det_tables, ignore_index=True)
    detections["star_id"] = detections["star_id"].astype(np.int64)
    meta = {
        "shape": (ny, nx),
        "seed": seed,
        "n_frames": n_frames,
        "ra0_deg": float(ra0_deg),
        "dec0_deg": float(dec0_deg),
        "pixscale_arcsec": scale_arcsec,
        "rotation_deg": float(rotation_deg),
        "fwhm_px": float(fwhm_px),
        "gain": float(gain),
        "read_noise_adu": float(read_noise_adu),
        "saturation_adu": float(saturation_adu),
        "zp_true": float(zp_true),
        "k_ext": float(k_ext),
        "color_term": float(color_term),
        "sky_mag_arcsec2": float(sky_mag_arcsec2),
        "site_lat_deg": float(site_lat_deg),
        "site_lon_deg": float(site_lon_deg),
        "bitpix16": bool(bitpix16),
        "catalog_radius_deg": 1.02 * half_diag_deg,
    }
    return DemoTruth(stars=stars, frames=frames, detections=detections, meta=meta)


#: Column map of :func:`write_reference_catalog` files (``skylake refcat import --format generic``).
REFERENCE_COLUMNS_MAP = """# SYNTHETIC reference catalogue of skylake.synthetic.write_reference_catalog
description = "skylake demo truth catalogue (SYNTHETIC)"
[columns]
ref_id = "star_id"
ra = "ra"
dec = "dec"
epoch = {const = 2000.0}
mag_V = "vmag"
err_V = "e_vmag"
mag_B = "bmag"
err_B = "e_bmag"
[flags]
VARIABLE = {col = "variable", op = "eq", value = true}
"""


def write_reference_catalog(stars: pd.DataFrame, out_dir, name: str = "demo_refcat_synthetic",
                            mag_err: float = 0.01) -> tuple[Path, Path]:
    """Write the truth stars of a :class:`DemoTruth` as a reference catalogue to calibrate against.

    ``vmag`` is the star's (mean) ``mag``, ``bmag = vmag + color`` (so B-V is the truth colour),
    both exact, with a nominal error ``mag_err``; variables are flagged. Writes ``NAME.parquet``
    (marked synthetic in its key-value metadata) and ``NAME.toml``, the column map for
    ``skylake refcat import LAKE NAME --format generic --columns-map NAME.toml NAME.parquet``.
    Returns (parquet path, map path).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skylake.refcat.synthetic import SYNTHETIC_META

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(stars)
    table = pa.table({
        "star_id": stars["star_id"].to_numpy(np.int64),
        "ra": stars["ra"].to_numpy(np.float64),
        "dec": stars["dec"].to_numpy(np.float64),
        "vmag": stars["mag"].to_numpy(np.float64),
        "e_vmag": np.full(n, mag_err),
        "bmag": (stars["mag"] + stars["color"]).to_numpy(np.float64),
        "e_bmag": np.full(n, mag_err),
        "variable": stars["is_variable"].to_numpy(bool) if "is_variable" in stars else np.zeros(n, bool),
    })
    data = out / f"{name}.parquet"
    pq.write_table(table.replace_schema_metadata(SYNTHETIC_META), data)
    columns_map = out / f"{name}.toml"
    columns_map.write_text(REFERENCE_COLUMNS_MAP)
    return data, columns_map


# ---------------------------------------------------------------------------
# 6. Bad inputs
# ---------------------------------------------------------------------------

#: File names written by :func:`write_bad_files`, in a stable order.
BAD_FILE_NAMES = (
    "bad_truncated.fits",
    "bad_not_fits.fits",
    "bad_empty.fits",
    "bad_no_wcs.fits",
    "bad_all_nan.fits",
    "bad_cube.fits",
    "bad_header_only.fits",
    "bad_corrupt_header.fits",
)

_WCS_KEY = re.compile(
    r"^(WCSAXES[A-Z]?|CTYPE\d[A-Z]?|CRVAL\d[A-Z]?|CRPIX\d[A-Z]?|CDELT\d[A-Z]?|CUNIT\d[A-Z]?|"
    r"CROTA\d|CD\d_\d[A-Z]?|PC\d_\d[A-Z]?|PV\d_\d+[A-Z]?|PS\d_\d+[A-Z]?|RADESYS[A-Z]?|RADECSYS|"
    r"EQUINOX[A-Z]?|EPOCH|LONPOLE[A-Z]?|LATPOLE[A-Z]?|WCSNAME[A-Z]?|"
    r"A_ORDER|B_ORDER|AP_ORDER|BP_ORDER|A_\d+_\d+|B_\d+_\d+|AP_\d+_\d+|BP_\d+_\d+|A_DMAX|B_DMAX)$"
)


def _hdu_bytes(hdu: fits.PrimaryHDU) -> bytes:
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def write_bad_files(out_dir, good_frame_path) -> dict[str, str]:
    """Write typical broken inputs next to each other and describe them.

    All files are derived from the valid frame ``good_frame_path`` (any
    format :func:`write_frame` writes; its first image HDU is used), so
    apart from the one defect they look like real frames.  Files written
    (see :data:`BAD_FILE_NAMES`):

    ``bad_truncated.fits``
        the good frame as plain FITS, cut off in the middle of the data
        unit (not on a 2880-byte boundary): the header parses, reading the
        data fails.
    ``bad_not_fits.fits``
        a text file with a .fits name.
    ``bad_empty.fits``
        0 bytes.
    ``bad_no_wcs.fits``
        valid image with every WCS keyword (CTYPE, CRVAL, CRPIX, CD, ...,
        RADESYS, EQUINOX) removed.
    ``bad_all_nan.fits``
        float32 image (BITPIX=-32) of the frame's shape, every pixel NaN,
        with the valid header and WCS.
    ``bad_cube.fits``
        3-D data (3, ny, nx) (NAXIS=3) carrying the frame's 2-D WCS
        keywords (WCSAXES=2).
    ``bad_header_only.fits``
        primary header with all of the frame's keywords but NAXIS=0, no data.
    ``bad_corrupt_header.fits``
        the good frame with the header from byte 400 (after SIMPLE, BITPIX,
        NAXIS, NAXIS1, NAXIS2) to the end of the header unit overwritten by
        non-ASCII garbage (END card destroyed): astropy cannot parse it.

    Returns ``{file name: short description}``; the files are in ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    good = Path(good_frame_path)
    if not good.is_file():
        raise FileNotFoundError(f"good_frame_path does not exist or is not a file: {str(good_frame_path)!r}")
    with fits.open(good) as hdul:
        img_hdu = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim == 2), None)
        if img_hdu is None:
            raise ValueError(f"good_frame_path {str(good_frame_path)!r} has no 2-D image HDU")
        data = np.array(img_hdu.data)
        header = _clean_header(img_hdu.header)
    ny, nx = data.shape
    rng = np.random.default_rng(12345)
    desc: dict[str, str] = {}

    def _put(name: str, payload: bytes, what: str) -> None:
        (out / name).write_bytes(payload)
        desc[name] = what

    # A plain-FITS rendition of the good frame (16-bit when the source was).
    if data.dtype.kind in "ui" and data.min() >= 0 and data.max() <= 65535:
        plain = _hdu_bytes(fits.PrimaryHDU(data.astype(np.uint16), header))
    else:
        plain = _hdu_bytes(fits.PrimaryHDU(data.astype(np.float32), header))
    # Locate the end of the header: the first 2880-byte block boundary after 'END'.
    end_card = next(i for i in range(0, len(plain), 80) if plain[i : i + 80].rstrip() == b"END")
    hdr_len = ((end_card // 2880) + 1) * 2880
    data_len = len(plain) - hdr_len
    cut = hdr_len + data_len // 2 + 123  # mid-data, deliberately unaligned
    _put(
        "bad_truncated.fits",
        plain[:cut],
        f"truncated: {cut} of {len(plain)} bytes, cut in the middle of the data unit",
    )

    _put(
        "bad_not_fits.fits",
        b"This is not a FITS file.\nIt is plain text that happens to have a .fits name.\n" * 20,
        "not FITS: plain text with a .fits name",
    )
    _put("bad_empty.fits", b"", "empty: 0-byte file")

    no_wcs = header.copy()
    for key in [k for k in no_wcs.keys() if _WCS_KEY.match(k)]:
        del no_wcs[key]
    _put(
        "bad_no_wcs.fits",
        _hdu_bytes(fits.PrimaryHDU(data, no_wcs)),
        "no WCS: image without CTYPE/CRVAL/CRPIX/CD keywords",
    )

    nan_img = np.full((ny, nx), np.nan, dtype=np.float32)
    _put(
        "bad_all_nan.fits",
        _hdu_bytes(fits.PrimaryHDU(nan_img, header)),
        "all NaN: float32 image with valid WCS, every pixel NaN",
    )

    cube = np.stack([data, data, data])
    _put(
        "bad_cube.fits",
        _hdu_bytes(fits.PrimaryHDU(cube, header)),
        f"3-D cube: NAXIS=3 data of shape {cube.shape} with a 2-D WCS",
    )

    _put("bad_header_only.fits", _hdu_bytes(fits.PrimaryHDU(None, header)), "no data: primary header only, NAXIS=0")

    corrupt = bytearray(plain)
    # Garbage from card 6 (SIMPLE..NAXIS2 stay readable) to the end of the
    # header, so the END card is gone whatever the header's length.
    corrupt[400:hdr_len] = rng.integers(128, 256, hdr_len - 400, dtype=np.uint8).tobytes()
    _put(
        "bad_corrupt_header.fits",
        bytes(corrupt),
        "corrupt header: non-ASCII garbage in the header block, END card missing",
    )
    return desc
