"""Per-frame transparency and sky-brightness maps of an all-sky camera.

* **Transparency** of each measured catalogue star is its measured flux over the flux a clear sky
  would give, ``T = flux / (exptime 10**(-0.4 (mag - zp_clear + k X)))`` (linear, so stars lost
  in cloud give T ~ 0 rather than an undefined magnitude), equivalently
  ``10**(-0.4 (zp_clear - zp_star))`` with ``zp_star`` the star's zeropoint corrected to airmass 0.
  :func:`transparency_map` takes the median of T per HEALPix pixel (NESTED) in the horizon
  (az, alt) or equatorial (RA, Dec) frame, over the stars a clear sky shows (expected S/N >= 10 on the
  frame's noise); a star that is not *detected* (S/N and centroid, :func:`skylake.allsky.photometry.cloud_fraction`)
  counts as no light, T = 0: its aperture holds the cloud's texture or glare, not the star. A pixel where no
  star is seen thus reads 0 (flagged :data:`MAP_NONE_SEEN`: below the stars' detection limit) instead of
  being left blank, which would draw the cloud as missing data.
* **Sky brightness** over the whole image comes from the sep background mesh (not the pixels under
  sources): ``SB = zp - 2.5 log10(bkg / exptime / omega)`` mag/arcsec^2, with ``omega`` each
  pixel's solid angle (arcsec^2) from the camera model (:func:`sky_brightness_image`), and its
  median per HEALPix pixel (:func:`sky_brightness_map`).

Zeropoints are magnitudes giving 1 ADU/s above the atmosphere; ``k`` is the extinction in mag per
airmass; sky brightness is what reaches the ground (not corrected for extinction), as in the MDM
all-sky pipeline.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from skylake.allsky.camera import CameraModel, Site
from skylake.allsky.photometry import FLAG_BAD, FLAG_SHIFT
from skylake.horizon import airmass
from skylake.robust import MAD_TO_SIGMA

__all__ = [
    "MAP_NONE_SEEN",
    "MAP_CLIPPED_LOW",
    "MAP_CLIPPED_HIGH",
    "TRANSPARENCY_MAX",
    "star_transparency",
    "clear_zeropoint",
    "transparency_map",
    "sky_brightness_image",
    "sky_brightness_map",
    "healpix_array",
    "pixel_centres",
    "sky_background",
]

#: ``map_flags``: no predicted star of the pixel was seen (its transparency, 0, is below their detection limit).
MAP_NONE_SEEN = 1
#: ``map_flags``: the pixel's value was below 0 and is set to 0.
MAP_CLIPPED_LOW = 2
#: ``map_flags``: the pixel's value was above :data:`TRANSPARENCY_MAX` and is set to it.
MAP_CLIPPED_HIGH = 4
#: The highest transparency a map keeps: 1 is the clear sky of ``zp_clear``; half again above is stray light.
TRANSPARENCY_MAX = 1.5


def star_transparency(
    stars: Table,
    *,
    zp_clear: float,
    exptime_s: float,
    extinction: float = 0.0,
    min_expected_snr: float = 10.0,
    min_isolation_deg: float = 0.0,
    max_blend: float = 0.5,
) -> Table:
    """Per-star transparency against a clear sky.

    Parameters
    ----------
    stars : Table
        Forced photometry (:func:`skylake.allsky.photometry.photometer_catalog`): ``mag``, ``alt``,
        ``flux``, ``flux_err``, ``flag`` (and ``isolation_deg`` if ``min_isolation_deg`` > 0).
    zp_clear : float
        Clear-sky zeropoint above the atmosphere, mag for 1 ADU/s.
    exptime_s : float
        Exposure time, s (> 0).
    extinction : float, default 0.0
        Extinction, mag per airmass.
    min_expected_snr : float, default 10.0
        Stars that would not reach this S/N in a clear sky (``expected / flux_err``) carry too little
        information on the transparency and get ``use = False`` (twice the usual detection threshold: a
        star dimmed by half is still seen, so one that is not seen is clouded).
    min_isolation_deg : float, default 0.0
        Stars with a catalogue neighbour closer than this get ``use = False``.
    max_blend : float or None, default 0.5
        The expected flux includes the catalogue neighbours' light in the aperture (``blend``
        column of :func:`skylake.allsky.catalog.visible_stars`); stars whose neighbours add more
        than this fraction, or that add over 10 % and pulled the centroid to its limit, get
        ``use = False`` (None: no such cut).

    Returns
    -------
    astropy.table.Table
        The input with ``airmass``, ``flux_expected`` (ADU), ``transparency``, ``transparency_err``,
        ``zp_star`` (mag for 1 ADU/s above the atmosphere; NaN for non-positive flux) and ``use``.

    Raises
    ------
    ValueError
        If ``exptime_s`` is not positive.
    """
    if not exptime_s or exptime_s <= 0:
        raise ValueError(f"exptime_s must be > 0, got {exptime_s!r}")
    t = stars.copy()
    X = airmass(np.asarray(t["alt"], float))
    blend = np.asarray(t["blend"], float) if "blend" in t.colnames else np.zeros(len(t))
    expected = exptime_s * 10 ** (-0.4 * (np.asarray(t["mag"], float) - zp_clear + extinction * X)) * (1 + blend)
    flux = np.asarray(t["flux"], float)
    err = np.asarray(t["flux_err"], float)
    t["airmass"] = X
    t["flux_expected"] = expected
    t["transparency"] = flux / expected
    t["transparency_err"] = err / expected
    with np.errstate(invalid="ignore", divide="ignore"):
        t["zp_star"] = np.where(
            flux > 0,
            np.asarray(t["mag"], float) + 2.5 * np.log10(flux / exptime_s / (1 + blend)) + extinction * X,
            np.nan,
        )
    with np.errstate(divide="ignore", invalid="ignore"):  # a star whose aperture is all masked has no error
        use = np.isfinite(flux) & np.isfinite(err) & (err > 0) & (expected / err >= min_expected_snr)
    if "flag" in t.colnames:
        use &= (np.asarray(t["flag"]) & FLAG_BAD) == 0
    if min_isolation_deg > 0 and "isolation_deg" in t.colnames:
        use &= np.asarray(t["isolation_deg"], float) >= min_isolation_deg
    if max_blend is not None:
        use &= blend <= max_blend
        if "flag" in t.colnames:
            use &= ~((blend > 0.1) & ((np.asarray(t["flag"]) & FLAG_SHIFT) != 0))
    t["use"] = use
    return t


def clear_zeropoint(
    stars: Table,
    *,
    exptime_s: float,
    extinction: float = 0.0,
    snr_min: float = 10.0,
    percentile: float = 50.0,
    min_isolation_deg: float = 0.0,
    max_blend: float = 0.5,
) -> tuple[float, int]:
    """Zeropoint (mag for 1 ADU/s above the atmosphere) from the measured stars of a frame.

    Stars are selected by their *expected* S/N (from a first zeropoint of the stars measured at
    S/N >= 3 ``snr_min``), not their measured S/N, so that faint stars caught on a positive noise
    excursion do not bias the zeropoint bright (a 0.15 mag effect at S/N ~ 7). The zeropoint is
    ``zp0 + 2.5 log10(percentile of flux / flux expected at zp0)``: ``percentile`` 50 gives the
    median (a clear frame), a high one (e.g. 90) the upper envelope, the clear-sky value of a
    partly cloudy frame.

    Parameters
    ----------
    stars : astropy.table.Table
        Forced photometry (:func:`skylake.allsky.photometry.photometer_catalog`): ``mag``, ``alt``,
        ``flux``, ``flux_err`` (and ``flag``, ``isolation_deg``, ``blend`` when present).
    exptime_s : float
        Exposure time, s (> 0).
    extinction : float, default 0.0
        Extinction, mag per airmass.
    snr_min : float, default 10.0
        Stars are used when their expected S/N reaches this.
    percentile : float, default 50.0
        Percentile of measured over expected flux taken (50: the median; higher: the upper envelope).
    min_isolation_deg : float, default 0.0
        Stars with a catalogue neighbour closer than this are not used.
    max_blend : float or None, default 0.5
        Stars whose neighbours add more than this fraction to the aperture, or over 10 % with the
        centroid pulled to its limit, are not used (None: no such cut).

    Returns
    -------
    zp : float
        The zeropoint, mag for 1 ADU/s above the atmosphere.
    n_stars : int
        The number of stars used.

    Raises
    ------
    ValueError
        If ``exptime_s`` is not positive, fewer than 3 stars reach S/N ``3 snr_min``, or the percentile
        of the flux ratio is not positive (no starlight).
    """
    if not exptime_s or exptime_s <= 0:
        raise ValueError(f"exptime_s must be > 0, got {exptime_s!r}")
    flux = np.asarray(stars["flux"], float)
    err = np.asarray(stars["flux_err"], float)
    mag = np.asarray(stars["mag"], float)
    ok = np.isfinite(flux) & np.isfinite(err) & (err > 0)
    if "flag" in stars.colnames:
        ok &= (np.asarray(stars["flag"]) & FLAG_BAD) == 0
    if min_isolation_deg > 0 and "isolation_deg" in stars.colnames:
        ok &= np.asarray(stars["isolation_deg"], float) >= min_isolation_deg
    blend = np.asarray(stars["blend"], float) if "blend" in stars.colnames else np.zeros(len(stars))
    if max_blend is not None:
        ok &= blend <= max_blend
        if "flag" in stars.colnames:
            ok &= ~((blend > 0.1) & ((np.asarray(stars["flag"]) & FLAG_SHIFT) != 0))
    X = airmass(np.asarray(stars["alt"], float))
    bright = ok & (flux / np.where(err > 0, err, np.inf) >= 3 * snr_min)
    if bright.sum() < 3:
        raise ValueError(f"only {int(bright.sum())} stars with S/N >= {3 * snr_min:g}: cannot measure a zeropoint")
    zp0 = float(
        np.median(mag[bright] + 2.5 * np.log10(flux[bright] / exptime_s / (1 + blend[bright])) + extinction * X[bright])
    )
    expected = exptime_s * 10 ** (-0.4 * (mag - zp0 + extinction * X)) * (1 + blend)
    sel = ok & (expected / np.where(err > 0, err, np.inf) >= snr_min)
    ratio = flux[sel] / expected[sel]
    q = float(np.percentile(ratio, percentile))
    if not q > 0:
        raise ValueError(f"the {percentile}th percentile of measured/expected flux is {q:.3g}: no starlight")
    return zp0 + 2.5 * float(np.log10(q)), int(sel.sum())


def _pixels(nside, lon, lat):
    import healpy as hp

    if nside < 1 or nside & (nside - 1):
        raise ValueError(f"nside must be a power of 2, got {nside!r}")
    return hp.ang2pix(nside, np.asarray(lon, float), np.asarray(lat, float), lonlat=True, nest=True)


def pixel_centres(nside: int, pixels) -> tuple[np.ndarray, np.ndarray]:
    """Longitude, latitude (deg) of NESTED HEALPix pixel centres (az, alt or RA, Dec).

    Parameters
    ----------
    nside : int
        HEALPix resolution.
    pixels : array_like of int
        NESTED pixel numbers.

    Returns
    -------
    lon : numpy.ndarray
        Longitude of the centres, deg in [0, 360).
    lat : numpy.ndarray
        Latitude of the centres, deg.
    """
    import healpy as hp

    lon, lat = hp.pix2ang(nside, np.asarray(pixels, np.int64), nest=True, lonlat=True)
    return np.mod(lon, 360.0), lat


def _group_median(pix, values, err=None):
    order = np.argsort(pix, kind="stable")
    p = pix[order]
    v = values[order]
    uniq, start, counts = np.unique(p, return_index=True, return_counts=True)
    med = np.array([np.median(v[s : s + c]) for s, c in zip(start, counts)])
    mad = np.array([np.median(np.abs(v[s : s + c] - m)) for s, c, m in zip(start, counts, med)])
    if err is not None:
        e = err[order]
        # error of the median: the larger of the scatter-based and the measurement-based estimate
        e_meas = np.array([np.sqrt(np.sum(e[s : s + c] ** 2)) / c for s, c in zip(start, counts)]) * 1.2533
        e_scat = MAD_TO_SIGMA * mad / np.sqrt(np.maximum(counts - 1, 1)) * 1.2533
        return uniq, counts, med, np.maximum(e_meas, e_scat)
    return uniq, counts, med, MAD_TO_SIGMA * mad


def transparency_map(
    stars: Table, *, nside: int = 8, frame: str = "horizon", min_stars: int = 1, value: str = "transparency"
) -> Table:
    """Median transparency per HEALPix pixel, a star not seen counting as no light.

    Parameters
    ----------
    stars : astropy.table.Table
        Output of :func:`star_transparency` (rows with ``use`` False are ignored); needs ``alt``,
        ``az`` for ``frame="horizon"`` and ``ra``, ``dec`` for ``"equatorial"``. With a boolean
        ``detected`` column, a star not detected has ``value`` 0 in the median.
    nside : int, default 8
        HEALPix resolution (NESTED); 8 gives 7.3 deg pixels as in the MDM pipeline.
    frame : {"horizon", "equatorial"}
        Horizon pixels are indexed by (lon = azimuth, lat = altitude).
    min_stars : int, default 1
        Pixels with fewer stars are left out.
    value : str, default "transparency"
        The column whose median is taken (its error from ``<value>_err`` when present); the output
        columns are named after it.

    Returns
    -------
    astropy.table.Table
        ``pixel`` (NESTED), ``lon``, ``lat`` (pixel centre: az/alt or RA/Dec, deg), ``n_stars``, ``n_seen``
        (those detected), ``transparency`` (median, within [0, :data:`TRANSPARENCY_MAX`]),
        ``transparency_err``, ``zp_median`` (median ``zp_star`` of the detected stars, NaN if none) and
        ``map_flags`` (:data:`MAP_NONE_SEEN`, :data:`MAP_CLIPPED_LOW`, :data:`MAP_CLIPPED_HIGH`). Sorted by pixel.

    Raises
    ------
    ValueError
        If ``frame`` is neither "horizon" nor "equatorial", or ``nside`` is not a power of 2.
    """
    if frame not in ("horizon", "equatorial"):
        raise ValueError(f"frame must be 'horizon' or 'equatorial', got {frame!r}")
    use = np.asarray(stars["use"], bool) if "use" in stars.colnames else np.ones(len(stars), bool)
    s = stars[use]
    columns = ("pixel", "lon", "lat", "n_stars", "n_seen", value, f"{value}_err", "zp_median", "map_flags")
    if len(s) == 0:
        counts = ("pixel", "n_stars", "n_seen", "map_flags")
        return Table({c: np.zeros(0, np.int64 if c in counts else float) for c in columns})
    lon, lat = (s["az"], s["alt"]) if frame == "horizon" else (s["ra"], s["dec"])
    pix = _pixels(nside, lon, lat)
    seen = np.asarray(s["detected"], bool) if "detected" in s.colnames else np.ones(len(s), bool)
    transparency = value == "transparency"  # a star not seen let no light through; other values are as measured
    values = np.where(seen, np.asarray(s[value], float), 0.0) if transparency else np.asarray(s[value], float)
    errors = np.asarray(s[f"{value}_err"], float) if f"{value}_err" in s.colnames else None
    uniq, counts, med, err = _group_median(pix, values, errors)
    n_seen = np.bincount(np.searchsorted(uniq, pix[seen]), minlength=len(uniq))
    zp = np.full(len(uniq), np.nan)
    if "zp_star" in s.colnames:
        zs = np.asarray(s["zp_star"], float)
        fin = np.isfinite(zs) & seen
        if fin.any():
            u2, _, m2, _ = _group_median(pix[fin], zs[fin])
            zp[np.searchsorted(uniq, u2)] = m2
    flags = np.where(n_seen == 0, MAP_NONE_SEEN, 0)
    if transparency:  # kept within its physical range, flagged where it was not
        flags |= np.where(med < 0, MAP_CLIPPED_LOW, 0) | np.where(med > TRANSPARENCY_MAX, MAP_CLIPPED_HIGH, 0)
        med = np.clip(med, 0.0, TRANSPARENCY_MAX)
    keep = counts >= min_stars
    clon, clat = pixel_centres(nside, uniq[keep])
    cols = (uniq.astype(np.int64), None, None, counts, n_seen, med, err, zp, flags.astype(np.int64))
    out = {c: v[keep] for c, v in zip(columns, cols, strict=True) if v is not None}
    out["lon"], out["lat"] = clon, clat
    return Table({c: out[c] for c in columns})


def sky_background(image: np.ndarray, mask: np.ndarray | None = None, *, mesh_px: int = 16, filter_size: int = 3):
    """The sep background (and its rms) of the whole image, estimated from unmasked pixels.

    Masked pixels are filled with their nearest unmasked neighbour first.

    Parameters
    ----------
    image : numpy.ndarray
        The image, 2-D (NaN pixels are masked).
    mask : numpy.ndarray of bool, optional
        True for pixels not to use.
    mesh_px : int, default 16
        Background mesh size, px.
    filter_size : int, default 3
        Median filter of the mesh, meshes.

    Returns
    -------
    back, rms : numpy.ndarray
        Background and its rms, arrays of the image's shape (ADU per px).

    Raises
    ------
    ValueError
        If every pixel is masked.
    """
    import sep

    data = np.ascontiguousarray(image, dtype=np.float64)
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    if bad.all():
        raise ValueError("no unmasked pixels to estimate the sky background from")
    if bad.any():
        # Fill masked pixels with their nearest unmasked neighbour rather than masking them: mesh
        # cells cut by the horizon circle then stay centred on their cell, and the spline follows
        # the sky gradient right up to the rim (measured on synthetic frames: 0.025 instead of
        # 0.075 mag/arcsec^2 worst error at the horizon with a 16 px mesh).
        from scipy import ndimage

        idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
        data = data[idx[0], idx[1]]
    bkg = sep.Background(np.ascontiguousarray(data), bw=mesh_px, bh=mesh_px, fw=filter_size, fh=filter_size)
    return bkg.back(), bkg.rms()


def sky_brightness_image(
    image: np.ndarray,
    model: CameraModel,
    *,
    zeropoint: float,
    exptime_s: float,
    mask: np.ndarray | None = None,
    bias: float = 0.0,
    mesh_px: int = 16,
    alt_min_deg: float = 0.0,
    filter_size: int = 3,
) -> np.ndarray:
    """Sky surface brightness of every pixel, mag/arcsec^2, from the sep background.

    Parameters
    ----------
    image : numpy.ndarray
        The frame, 2-D, ADU (NaN where no data).
    model : CameraModel
        Gives each pixel's solid angle and the sky region (``alt >= alt_min_deg``).
    zeropoint : float
        Magnitude for 1 ADU/s (the frame's measured or the camera's clear-sky value).
    exptime_s : float
        Exposure time, s (> 0).
    mask : numpy.ndarray of bool, optional
        Pixels not to use for the background (obstructions); they still get a value.
    bias : float, default 0.0
        Constant (ADU) subtracted first (a pedestal not removed upstream).
    mesh_px : int, default 16
        The sep background mesh size, px.
    alt_min_deg : float, default 0.0
        Pixels below this altitude (and outside the lens field) are masked and returned as NaN.
    filter_size : int, default 3
        The sep background median filter, meshes.

    Returns
    -------
    numpy.ndarray
        Sky brightness per pixel, mag/arcsec^2 (NaN outside the sky, or where the background is not
        positive).

    Raises
    ------
    ValueError
        If ``exptime_s`` is not positive.
    """
    if not exptime_s or exptime_s <= 0:
        raise ValueError(f"exptime_s must be > 0, got {exptime_s!r}")
    sky = model.sky_mask(np.shape(image), alt_min_deg=alt_min_deg)
    bad = ~sky if mask is None else (~sky | np.asarray(mask, bool))
    back, _ = sky_background(np.asarray(image, float) - bias, bad, mesh_px=mesh_px, filter_size=filter_size)
    omega = model.solid_angle_map(np.shape(image), unit="arcsec2")
    with np.errstate(invalid="ignore", divide="ignore"):
        sb = zeropoint - 2.5 * np.log10(back / exptime_s / omega)
    return np.where(sky & np.isfinite(sb), sb, np.nan)


def sky_brightness_map(
    sb_image: np.ndarray,
    model: CameraModel,
    *,
    nside: int = 8,
    frame: str = "horizon",
    site: Site | None = None,
    time=None,
    max_points: int = 50_000,
) -> Table:
    """Median sky brightness (mag/arcsec^2) per HEALPix pixel (NESTED) of a per-pixel map.

    The image is sampled on a regular grid of at most ``max_points`` pixels (the background is
    smooth on the mesh scale); the equatorial frame needs ``site`` and ``time``.

    Parameters
    ----------
    sb_image : numpy.ndarray
        Sky brightness per pixel, mag/arcsec^2 (:func:`sky_brightness_image`; NaN pixels are skipped).
    model : CameraModel
        Gives each sampled pixel's altitude and azimuth.
    nside : int, default 8
        HEALPix resolution (NESTED).
    frame : {"horizon", "equatorial"}
        Horizon pixels are indexed by (lon = azimuth, lat = altitude), equatorial ones by (RA, Dec).
    site : Site, optional
        Where the camera stands; needed for the equatorial frame.
    time : astropy.time.Time or str, optional
        Mid-exposure time; needed for the equatorial frame.
    max_points : int, default 50000
        Largest number of pixels sampled.

    Returns
    -------
    astropy.table.Table
        ``pixel``, ``lon``, ``lat`` (deg), ``n_pix`` (samples), ``sky_mag`` (median),
        ``sky_mag_rms`` (1.4826 MAD).

    Raises
    ------
    ValueError
        If ``frame`` is invalid, or the equatorial frame lacks ``site`` or ``time``.
    """
    if frame not in ("horizon", "equatorial"):
        raise ValueError(f"frame must be 'horizon' or 'equatorial', got {frame!r}")
    ny, nx = np.shape(sb_image)
    step = max(1, int(np.ceil(np.sqrt(ny * nx / max_points))))
    y, x = np.mgrid[0:ny:step, 0:nx:step]
    v = np.asarray(sb_image)[y, x]
    ok = np.isfinite(v)
    x, y, v = x[ok], y[ok], v[ok]
    alt, az = model.pixel_to_altaz(x, y)
    if frame == "horizon":
        lon, lat = az, alt
    else:
        if site is None or time is None:
            raise ValueError("an equatorial sky-brightness map needs site and time")
        lon, lat = site.altaz_to_radec(alt, az, time)
    pix = _pixels(nside, lon, lat)
    uniq, counts, med, rms = _group_median(pix, v)
    clon, clat = pixel_centres(nside, uniq)
    return Table(
        {"pixel": uniq.astype(np.int64), "lon": clon, "lat": clat, "n_pix": counts, "sky_mag": med, "sky_mag_rms": rms}
    )


def healpix_array(table: Table, column: str, nside: int, fill=np.nan) -> np.ndarray:
    """A full-sky NESTED HEALPix array (``12 nside^2``) of ``table[column]`` at ``table["pixel"]``.

    Parameters
    ----------
    table : astropy.table.Table
        A map with a ``pixel`` column (NESTED).
    column : str
        The column whose values are placed.
    nside : int
        HEALPix resolution.
    fill : float, default nan
        Value of the pixels not in the table.

    Returns
    -------
    numpy.ndarray
        Float array of ``12 nside^2`` values.
    """
    out = np.full(12 * nside * nside, fill, dtype=float)
    out[np.asarray(table["pixel"], np.int64)] = np.asarray(table[column], float)
    return out
