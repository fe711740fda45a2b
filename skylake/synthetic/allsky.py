"""Synthetic all-sky frames with exactly known truth (camera model, stars, sky, cloud, streak).

:func:`make_allsky_frame` renders the catalogue's stars through a :class:`CameraModel` at a site
and time: Gaussian PSF integrated over each pixel, atmospheric extinction ``k * airmass``, an
optional cloud patch (a soft-edged disc on the sky that transmits ``1 - depth`` of the starlight),
a sky of known surface brightness (mag/arcsec^2, brighter towards the horizon and towards a light
dome) converted to counts with each pixel's solid angle from the model, an optional streak (a
line segment convolved with the PSF), and Gaussian noise (Poisson variance ``signal / gain`` plus
read noise). Deterministic from ``seed``.

Photometric convention: ``zeropoint`` is the magnitude giving 1 ADU/s above the atmosphere, so a
star of magnitude ``m`` at airmass ``X`` under transmission ``T`` gives
``exptime * 10**(-0.4 (m - zeropoint + k X)) * T`` ADU; a sky of ``SB`` mag/arcsec^2 gives
``exptime * 10**(-0.4 (SB - zeropoint)) * omega_arcsec2`` ADU per pixel (sky brightness is what
reaches the ground, not attenuated again).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from scipy.special import erf

from skylake.allsky.camera import CameraModel, Site, angular_separation_deg
from skylake.allsky.catalog import as_catalog

__all__ = ["CloudPatch", "Streak", "SyntheticAllSky", "make_allsky_frame", "airmass", "render_streak", "render_stars"]


def airmass(alt_deg) -> np.ndarray:
    """Kasten & Young (1989) relative air mass at apparent altitude ``alt_deg`` (deg); NaN below 0.

    Parameters
    ----------
    alt_deg : float or array_like
        Apparent altitude, deg.

    Returns
    -------
    ndarray
        The relative air mass (NaN below the horizon).
    """
    alt = np.asarray(alt_deg, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = 1.0 / (np.sin(np.radians(alt)) + 0.50572 * (alt + 6.07995) ** -1.6364)
    return np.where(alt >= 0, x, np.nan)


@dataclass(frozen=True)
class CloudPatch:
    """A cloud on the sky: a soft-edged disc that transmits ``1 - depth`` of the starlight at its core.

    The transmission is ``1 - depth * S(d)`` at angular distance ``d`` (deg) from ``(alt_deg, az_deg)``,
    ``S = 1 / (1 + exp((d - radius_deg) / edge_deg))``.

    Attributes
    ----------
    alt_deg, az_deg : float
        The cloud's centre, deg.
    radius_deg : float
        Its radius, deg (> 0).
    depth : float
        The fraction of the light it takes at its core, in [0, 1].
    edge_deg : float
        The width of its soft edge, deg (> 0).

    Raises
    ------
    ValueError
        When ``depth`` is not in [0, 1], or ``radius_deg`` or ``edge_deg`` is not > 0.
    """

    alt_deg: float
    az_deg: float
    radius_deg: float
    depth: float = 0.9
    edge_deg: float = 2.0

    def __post_init__(self):
        if not 0 <= self.depth <= 1:
            raise ValueError(f"cloud depth must be in [0, 1], got {self.depth!r}")
        if not self.radius_deg > 0 or not self.edge_deg > 0:
            raise ValueError(f"cloud radius_deg and edge_deg must be > 0, got {self.radius_deg!r}, {self.edge_deg!r}")

    def transmission(self, alt_deg, az_deg) -> np.ndarray:
        """The cloud's transmission (0..1) towards ``(alt_deg, az_deg)``.

        Parameters
        ----------
        alt_deg, az_deg : float or array_like
            Directions, deg.

        Returns
        -------
        ndarray
            ``1 - depth * S(d)`` of each direction.
        """
        d = angular_separation_deg(self.alt_deg, self.az_deg, alt_deg, az_deg)
        return 1.0 - self.depth / (1.0 + np.exp((d - self.radius_deg) / self.edge_deg))


@dataclass(frozen=True)
class Streak:
    """A trail from ``(x1, y1)`` to ``(x2, y2)`` (px) with a Gaussian cross-section.

    The cross-section's sigma is ``sigma_px``, and the trail has ``flux_per_px`` ADU per px of length.

    Attributes
    ----------
    x1, y1, x2, y2 : float
        The trail's ends, px.
    sigma_px : float
        The sigma of its Gaussian cross-section, px.
    flux_per_px : float
        ADU per px of length.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    sigma_px: float = 1.2
    flux_per_px: float = 500.0

    @property
    def length(self) -> float:
        """The trail's length, px.

        Returns
        -------
        float
            The distance between the trail's ends, px.
        """
        return float(np.hypot(self.x2 - self.x1, self.y2 - self.y1))


@dataclass
class SyntheticAllSky:
    """A synthetic frame and its truth.

    Attributes
    ----------
    image : ndarray (ny, nx), float64, ADU
        The frame: sky, stars, streak, noise and bias.
    model, site, time, exptime_s, zeropoint, extinction : object
        What made it (zeropoint: mag for 1 ADU/s above the atmosphere; extinction: mag/airmass).
    stars : Table
        Rendered stars: catalogue columns, ``alt``, ``az``, ``x``, ``y``, ``airmass``,
        ``transmission`` (cloud only), ``flux`` (ADU, true total).
    sky_sb : ndarray
        True sky surface brightness per pixel, mag/arcsec^2 (NaN beyond the horizon).
    sky_counts : ndarray
        True sky counts per pixel, ADU (0 beyond the horizon).
    cloud : CloudPatch or None
        The cloud, if any.
    streak : Streak or None
        The trail, if any.
    meta : dict
        The other arguments of :func:`make_allsky_frame`: ``psf_sigma_px``, ``gain``, ``read_noise``, ``bias``,
        ``vmax``, ``seed``.
    """

    image: np.ndarray
    model: CameraModel
    site: Site
    time: object
    exptime_s: float
    zeropoint: float
    extinction: float
    stars: Table
    sky_sb: np.ndarray
    sky_counts: np.ndarray
    cloud: CloudPatch | None = None
    streak: Streak | None = None
    meta: dict = field(default_factory=dict)

    def transmission(self, alt_deg, az_deg) -> np.ndarray:
        """True cloud transmission (0..1, extinction excluded) towards ``(alt, az)`` (deg).

        Parameters
        ----------
        alt_deg, az_deg : float or array_like
            Directions, deg.

        Returns
        -------
        ndarray
            The transmission of each direction (1 without a cloud).
        """
        alt = np.asarray(alt_deg, float)
        if self.cloud is None:
            return np.ones_like(alt)
        return self.cloud.transmission(alt, az_deg)


def render_stars(shape, x, y, flux, sigma_px: float, out: np.ndarray | None = None) -> np.ndarray:
    """Add Gaussian stars (pixel-integrated, ``sigma_px``) of total ``flux`` at ``(x, y)`` to an image.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx) of the image.
    x, y : array_like
        The stars' positions, px (0-based).
    flux : array_like
        Their total fluxes, ADU.
    sigma_px : float
        The PSF's Gaussian sigma, px.
    out : ndarray, optional
        The image to add to (in place); default a new image of zeros.

    Returns
    -------
    ndarray
        The image with the stars (``out`` when given).
    """
    ny, nx = shape
    img = np.zeros(shape) if out is None else out
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    flux = np.asarray(flux, float)
    h = int(np.ceil(5 * sigma_px)) + 1
    k = np.arange(-h, h + 1)
    x0 = np.round(x).astype(int)
    y0 = np.round(y).astype(int)
    s2 = np.sqrt(2.0) * sigma_px
    gx = 0.5 * (
        erf((x0[:, None] + k[None, :] + 0.5 - x[:, None]) / s2)
        - erf((x0[:, None] + k[None, :] - 0.5 - x[:, None]) / s2)
    )
    gy = 0.5 * (
        erf((y0[:, None] + k[None, :] + 0.5 - y[:, None]) / s2)
        - erf((y0[:, None] + k[None, :] - 0.5 - y[:, None]) / s2)
    )
    stamps = flux[:, None, None] * gy[:, :, None] * gx[:, None, :]
    yy = (y0[:, None] + k[None, :])[:, :, None] + 0 * k[None, None, :]
    xx = (x0[:, None] + k[None, :])[:, None, :] + 0 * k[None, :, None]
    ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
    np.add.at(img, (yy[ok], xx[ok]), stamps[ok])
    return img


def render_streak(shape, streak: Streak, out: np.ndarray | None = None) -> np.ndarray:
    """Add a streak (a segment convolved with a Gaussian of ``sigma_px``) to an image.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx) of the image.
    streak : Streak
        The trail.
    out : ndarray, optional
        The image to add to (in place); default a new image of zeros.

    Returns
    -------
    ndarray
        The image with the streak (``out`` when given).

    Raises
    ------
    ValueError
        When the streak's ends coincide.
    """
    ny, nx = shape
    img = np.zeros(shape) if out is None else out
    L = streak.length
    if L <= 0:
        raise ValueError("streak endpoints coincide")
    ux, uy = (streak.x2 - streak.x1) / L, (streak.y2 - streak.y1) / L
    s = streak.sigma_px
    pad = 6 * s + 2
    xlo = int(max(0, np.floor(min(streak.x1, streak.x2) - pad)))
    xhi = int(min(nx, np.ceil(max(streak.x1, streak.x2) + pad) + 1))
    ylo = int(max(0, np.floor(min(streak.y1, streak.y2) - pad)))
    yhi = int(min(ny, np.ceil(max(streak.y1, streak.y2) + pad) + 1))
    if xlo >= xhi or ylo >= yhi:
        return img
    yy, xx = np.mgrid[ylo:yhi, xlo:xhi]
    px, py = xx - streak.x1, yy - streak.y1
    along = px * ux + py * uy
    perp = -px * uy + py * ux
    prof = np.exp(-0.5 * (perp / s) ** 2) / (np.sqrt(2 * np.pi) * s)
    cover = 0.5 * (erf(along / (np.sqrt(2) * s)) - erf((along - L) / (np.sqrt(2) * s)))
    img[ylo:yhi, xlo:xhi] += streak.flux_per_px * prof * cover
    return img


def make_allsky_frame(
    model: CameraModel,
    site: Site,
    time,
    catalog,
    shape,
    *,
    vmax: float = 6.0,
    mag_column: str = "v_mag",
    zeropoint: float = 10.0,
    exptime_s: float = 60.0,
    extinction: float = 0.15,
    sky_zenith_mag: float = 21.0,
    sky_gradient_mag: float = 1.0,
    dome_mag: float = 0.5,
    dome_az_deg: float = 200.0,
    psf_sigma_px: float = 1.0,
    gain: float = 1.0,
    read_noise: float = 5.0,
    bias: float = 0.0,
    cloud: CloudPatch | None = None,
    streak: Streak | None = None,
    seed: int = 0,
) -> SyntheticAllSky:
    """Render a synthetic all-sky frame.

    Parameters
    ----------
    model : CameraModel
        Camera model.
    site : Site
        The site.
    time : astropy.time.Time
        Mid-exposure time.
    catalog : Table
        ``ra``, ``dec`` (deg) and ``mag_column``.
    shape : (ny, nx)
        The image's shape.
    vmax : float
        Faintest star rendered.
    mag_column : str
        The catalogue's magnitude column.
    zeropoint : float
        Magnitude for 1 ADU/s above the atmosphere.
    exptime_s : float
        Exposure time, s.
    extinction : float
        Extinction, mag per airmass.
    sky_zenith_mag : float
        Sky surface brightness at the zenith, mag/arcsec^2.
    sky_gradient_mag : float
        Brightening from zenith to horizon, mag (``SB = sky_zenith_mag - g (1 - sin alt) - ...``).
    dome_mag, dome_az_deg : float
        Extra brightening at the horizon towards azimuth ``dome_az_deg`` (a town's light dome).
    psf_sigma_px : float
        The Gaussian PSF's sigma, px.
    gain : float
        Gain, e-/ADU (Poisson variance = signal / gain).
    read_noise : float
        Read noise, ADU rms.
    bias : float
        Constant added (ADU), not part of the sky truth.
    cloud : CloudPatch, optional
        A cloud that dims the stars (not the sky).
    streak : Streak, optional
        A trail added to the image.
    seed : int
        Seed of the noise.

    Returns
    -------
    SyntheticAllSky
        The image and its truth.
    """
    ny, nx = int(shape[0]), int(shape[1])
    alt_pix, az_pix = model.pixel_grid_altaz((ny, nx))
    above = np.isfinite(alt_pix) & (alt_pix >= 0)
    sin_alt = np.sin(np.radians(np.where(above, alt_pix, 0.0)))
    dome = np.clip(np.cos(np.radians(np.where(above, az_pix, 0.0) - dome_az_deg)), 0, None)
    sb = sky_zenith_mag - sky_gradient_mag * (1 - sin_alt) - dome_mag * dome * (1 - sin_alt) ** 2
    sb = np.where(above, sb, np.nan)
    omega = model.solid_angle_map((ny, nx), unit="arcsec2")
    sky = np.where(
        above, exptime_s * 10 ** (-0.4 * (np.nan_to_num(sb, nan=99.0) - zeropoint)) * np.nan_to_num(omega), 0.0
    )

    cat = as_catalog(catalog, mag_column)
    cat = cat[np.isfinite(cat["mag"]) & (cat["mag"] <= vmax)]
    alt, az = site.radec_to_altaz(cat["ra"], cat["dec"], time)
    cat["alt"] = alt
    cat["az"] = az
    cat = cat[alt > 0]
    x, y = model.altaz_to_pixel(cat["alt"], cat["az"])
    cat["x"] = x
    cat["y"] = y
    inside = np.isfinite(x) & (x > -5) & (x < nx + 4) & (y > -5) & (y < ny + 4)
    cat = cat[inside]
    X = airmass(cat["alt"])
    T = np.ones(len(cat)) if cloud is None else cloud.transmission(cat["alt"], cat["az"])
    cat["airmass"] = X
    cat["transmission"] = T
    cat["flux"] = exptime_s * 10 ** (-0.4 * (cat["mag"] - zeropoint + extinction * X)) * T

    signal = sky.copy()
    render_stars((ny, nx), cat["x"], cat["y"], cat["flux"], psf_sigma_px, out=signal)
    if streak is not None:
        render_streak((ny, nx), streak, out=signal)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((ny, nx)) * np.sqrt(np.maximum(signal, 0) / gain + read_noise**2)
    image = signal + noise + bias
    return SyntheticAllSky(
        image=image,
        model=model,
        site=site,
        time=time,
        exptime_s=exptime_s,
        zeropoint=zeropoint,
        extinction=extinction,
        stars=cat,
        sky_sb=sb,
        sky_counts=sky,
        cloud=cloud,
        streak=streak,
        meta={
            "psf_sigma_px": psf_sigma_px,
            "gain": gain,
            "read_noise": read_noise,
            "bias": bias,
            "vmax": vmax,
            "seed": seed,
        },
    )
