"""SYNTHETIC frames: a star field's catalogue, its TAN WCS, the rendered image and the FITS file.

Used by the demo night (:mod:`skylake.synthetic.night`), the tests and the benchmarks.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

__all__ = [
    "ZP_TRUE_DEFAULT",
    "K_EXT_DEFAULT",
    "tan_wcs_header",
    "make_sky_catalog",
    "render_frame",
    "write_frame",
    "distinct_copies",
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

    Parameters
    ----------
    ra0_deg, dec0_deg : float
        The cap's centre, deg.
    radius_deg : float
        The cap's angular radius, deg (> 0, at most 180).
    n_stars : int
        Stars (>= 0).
    seed : int
        Seed for ``numpy.random.default_rng``.
    mag_range : (float, float)
        The (bright, faint) limits of the magnitudes.

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
    noise : bool
        Draw photon and read noise; with False the noiseless model is returned.
    exact_poisson_below_e : float
        Pixels expecting fewer electrons than this get exact Poisson draws, the others the normal
        approximation (``np.inf``: exact Poisson everywhere; must not be NaN).

    Returns
    -------
    numpy.ndarray
        A float32 array of shape ``(ny, nx)`` in ADU.
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
    for key in {k for k in out if _STRUCTURAL.match(k)}:
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
    are dropped and regenerated from the data.

    Parameters
    ----------
    path : str or Path
        The file; its name ends in ``.fits``, ``.fit``, ``.fts`` (optionally ``.gz``) or ``.fits.fz``.
    data : array_like
        The numeric image (2-D for ``.fits.fz``; float16 is written as float32).
    header : astropy.io.fits.Header or mapping, optional
        The keywords to write.
    bitpix16 : bool
        Store the pixels as unsigned 16-bit integers (see above).
    overwrite : bool
        Replace an existing file.
    quantize_level : float
        RICE quantisation of float data in ``.fits.fz`` files.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        When the name has none of those endings, the data are not a numeric image, a ``.fits.fz`` image is not
        2-D, or (with ``bitpix16=True``) a pixel is not finite.
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


def distinct_copies(paths, out, copies: int, tag: str = "copy") -> list[str]:
    """Copy real frames so that each copy is a new frame to a lake: the same pixels, one header card changed.

    A lake knows a frame by its bytes, so a plain copy is the same frame; the card ``SKYLCOPY`` makes each copy
    distinct. Benchmarks grow a set of real frames into a night's batch this way.

    Parameters
    ----------
    paths : sequence of str or pathlib.Path
        The frames to copy.
    out : str or pathlib.Path
        The directory to write the copies into (made when missing).
    copies : int
        Copies of each frame.
    tag : str
        In each copy's name (``STEM_{tag}{k}.fits``) and its ``SKYLCOPY`` card (``{tag}-{k}``).

    Returns
    -------
    list of str
        The copies' paths: each frame's copies in turn, in the order of ``paths``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in paths:
        with fits.open(src) as hdul:
            for k in range(copies):
                hdul[0].header["SKYLCOPY"] = (f"{tag}-{k}", "a benchmark's copy of this frame")
                dst = out / f"{Path(src).stem}_{tag}{k}.fits"
                hdul.writeto(dst, overwrite=True)
                written.append(str(dst))
    return written
