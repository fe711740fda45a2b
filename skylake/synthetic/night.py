"""SYNTHETIC nights: the demo night and its reference catalogue, as ``skylake demo`` and the tests use them.

The demo night is frames with weather, twilight, variables and a known truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from skylake.synthetic.frames import (
    _FWHM_TO_SIGMA,
    K_EXT_DEFAULT,
    ZP_TRUE_DEFAULT,
    _angular_sep_deg,
    _check_finite,
    _check_shape,
    _erf,
    make_sky_catalog,
    render_frame,
    tan_wcs_header,
    write_frame,
)

__all__ = ["DemoTruth", "write_demo_night", "write_reference_catalog", "REFERENCE_COLUMNS_MAP"]


# Demo night
# ---------------------------------------------------------------------------


@dataclass
class DemoTruth:
    """Exact truth behind a :func:`write_demo_night` run.

    Relations that hold exactly (up to float rounding):

    ``detections.flux_adu ==
    10**(-0.4 * (mag_true_this_frame - color_term * color + extinction_mag - zp_true)) * exptime``

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
    frames : DataFrame
        One row per frame in time order:
        path, frame_index, date_obs, mjd_start, mjd_mid, exptime (s),
        airmass (as in the header), sky_adu (per pixel, whole exposure),
        zp_true (mag for 1 ADU/s above the atmosphere), k_ext (mag/airmass),
        zp_eff (= zp_true - k_ext*airmass, cloud excluded), color_term
        (mag per unit colour),
        cloud_ra, cloud_dec, cloud_radius_deg (Gaussian sigma),
        cloud_depth_mag (extinction at the core), crval1, crval2 (pointing),
        ha_deg (hour angle of the field centre), sun_alt_deg.
    detections : DataFrame
        One row per star per frame whose centre fell on
        the chip (-0.5 <= x < nx-0.5, same for y):
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
        """Frame paths in time order.

        Returns
        -------
        list of str
            The ``path`` column of :attr:`frames`.
        """
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

    Parameters
    ----------
    out_dir : str or Path
        Where the frames go (created).
    n_frames : int
        Exposures (a positive integer).
    shape : (ny, nx)
        The frames' shape.
    seed : int
        Seeds everything (the catalogue, the variables, the cloud, the pointing jitter and each frame's noise).
    ra0_deg, dec0_deg : float
        The field's centre, deg.
    pixscale_arcsec : float
        Pixel scale, arcsec/px.
    n_stars : int
        Stars in the catalogue cap.
    start_utc : str
        Start of the first exposure, ISO UTC (``'2026-03-01T21:00:00'``).
    cadence_s : float
        Time between the starts of consecutive exposures, s.
    exptime_s : float
        Exposure time, s (at most ``cadence_s``).
    cloud : bool
        Let a cloud drift across the field.
    n_variables : int
        Variable stars.
    mag_range : (float, float)
        The (bright, faint) limits of the catalogue's magnitudes.
    zp_true : float
        Magnitude giving 1 ADU/s above the atmosphere.
    k_ext : float
        Extinction coefficient, mag per airmass.
    color_term : float
        Colour term, mag per unit colour.
    cloud_track : (float, float)
        Where the cloud starts and ends, chip widths from the field centre.
    cloud_radius_chips : float
        The cloud's Gaussian sigma, chip widths.
    fwhm_px : float
        PSF FWHM, px.
    gain : float
        Gain, e-/ADU.
    read_noise_adu : float
        Read noise, ADU rms.
    saturation_adu : float
        Pixels are clipped at this level, ADU (SATURATE).
    sky_mag_arcsec2 : float
        Dark-sky surface brightness, V mag per arcsec^2.
    jitter_px : float
        Pointing error, px rms per axis.
    rotation_deg : float
        Rotation of the sky on the detector (:func:`tan_wcs_header`).
    site_lat_deg, site_lon_deg : float
        The site's latitude and longitude (east-positive), deg.
    bitpix16 : bool
        Write 16-bit unsigned pixels.

    Returns
    -------
    DemoTruth
        The stars, frames and detections with their exact truth, and the generation parameters.

    Raises
    ------
    ValueError
        When an argument is invalid, the field is at or below 5 deg altitude, the Sun is above -8 deg, or the
        central chip area has too few stars for ``n_variables``.
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
    cloud_radius_deg = (
        width_px * scale_arcsec / 3600.0 * _check_finite("cloud_radius_chips", cloud_radius_chips, positive=True)
    )
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


def write_reference_catalog(
    stars: pd.DataFrame, out_dir, name: str = "demo_refcat_synthetic", mag_err: float = 0.01
) -> tuple[Path, Path]:
    """Write the truth stars of a :class:`DemoTruth` as a reference catalogue to calibrate against.

    ``vmag`` is the star's (mean) ``mag``, ``bmag = vmag + color`` (so B-V is the truth colour),
    both exact, with a nominal error ``mag_err``; variables are flagged. Writes ``NAME.parquet``
    (marked synthetic in its key-value metadata) and ``NAME.toml``, the column map for
    ``skylake refcat import LAKE NAME --format generic --columns-map NAME.toml NAME.parquet``.

    Parameters
    ----------
    stars : pandas.DataFrame
        ``star_id``, ``ra``, ``dec``, ``mag``, ``color`` and optionally ``is_variable`` (:attr:`DemoTruth.stars`).
    out_dir : str or Path
        Where the files go (created).
    name : str
        The files' name (``NAME``).
    mag_err : float
        The nominal error of every magnitude.

    Returns
    -------
    data : Path
        The Parquet file.
    columns_map : Path
        The column map.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skylake.synthetic.refcat import SYNTHETIC_META

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(stars)
    table = pa.table(
        {
            "star_id": stars["star_id"].to_numpy(np.int64),
            "ra": stars["ra"].to_numpy(np.float64),
            "dec": stars["dec"].to_numpy(np.float64),
            "vmag": stars["mag"].to_numpy(np.float64),
            "e_vmag": np.full(n, mag_err),
            "bmag": (stars["mag"] + stars["color"]).to_numpy(np.float64),
            "e_bmag": np.full(n, mag_err),
            "variable": stars["is_variable"].to_numpy(bool) if "is_variable" in stars else np.zeros(n, bool),
        }
    )
    data = out / f"{name}.parquet"
    pq.write_table(table.replace_schema_metadata(SYNTHETIC_META), data)
    columns_map = out / f"{name}.toml"
    columns_map.write_text(REFERENCE_COLUMNS_MAP)
    return data, columns_map


# ---------------------------------------------------------------------------
