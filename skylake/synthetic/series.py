"""A SYNTHETIC time series of one field with exactly known systematics, for the precision tests.

:func:`write_series` writes ``n_frames`` FITS frames of one tracked field (TAN WCS, a few px of pointing
jitter) and a reference catalogue of its stars, and returns the truth: per frame the transparency jitter,
the extinction, a spatial gradient that changes from frame to frame, the seeing and a focus tilt across
the chip (so a fixed aperture loses a position- and seeing-dependent fraction of each star's light);
per star its magnitude, colour, variability (sinusoids of known amplitude and period; one transit) and
the white noise the pixels carry in a circular aperture of ``aperture_px`` (photon, sky and read noise,
and the noise of the annulus background estimate): :meth:`SeriesTruth.white_noise`.

Magnitudes: a star of catalogue magnitude ``m`` gives ``10**(-0.4 (m - zp)) * exptime`` ADU with
``zp = zp_true - k_ext * airmass + jitter_e + gradient_e(u, v)`` (``u, v`` the chip position scaled to
[-1, 1]); a variable adds its signal to ``m``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.time import Time
from astropy.wcs import WCS

from skylake.ensemble.noise import young_scintillation
from skylake.synthetic.frames import make_sky_catalog, render_frame, tan_wcs_header, write_frame
from skylake.synthetic.night import _airmass, _altitude_deg, _gmst_deg, write_reference_catalog

__all__ = ["SeriesTruth", "write_series", "expected_error", "SERIES_PROFILE"]

#: The series camera's profile (written beside the frames as ``series.toml``): aperture photometry in the
#: generator's aperture, calibrated against the series' own catalogue (imported as ``series``).
SERIES_PROFILE = """# SYNTHETIC: the camera of skylake.synthetic.series.write_series
extends = "generic"
[profile]
name = "series"
description = "skylake's SYNTHETIC one-field series (skylake.synthetic.series)"
[site]
name = "series site (ORM La Palma)"
lat_deg = {lat}
lon_deg = {lon}
height_m = {height}
timezone = "Atlantic/Canary"
night_starts = "12:00"
[defaults]
instrument = "SERIESCAM"
filter = "V"
[detection]
thresh = 3.0
[photometry]
aperture_radii = [{aperture}, 5.0, 8.0]
annulus = [{ann_in}, {ann_out}]
[calibration]
refcat = "{refcat}"
band = "V"
color = ["B", "V"]
flux = "flux_ap1"
min_stars = 20
max_inst_mag_err = 0.05
max_scatter = 0.08
max_zp_variation = 0.2
max_zp_drop = 0.5
[ensemble]
read_noise_adu = {read_noise}
telescope_diameter_m = {diameter}
variable_fap = {variable_fap}
"""

#: FWHM (px) to Gaussian sigma.
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def expected_error(flux_adu, sky_adu, gain, read_noise_adu, aperture_px, annulus_px, fwhm_px) -> np.ndarray:
    """White noise (mag) of a circular-aperture magnitude with a local annulus background.

    Parameters
    ----------
    flux_adu : array
        The star's total flux, ADU.
    sky_adu : float
        Sky per pixel, ADU.
    gain : float
        Gain, e-/ADU.
    read_noise_adu : float
        Read noise, ADU rms per pixel.
    aperture_px : float
        Aperture radius, px.
    annulus_px : (float, float)
        Inner and outer radius of the background annulus, px.
    fwhm_px : array
        Gaussian PSF FWHM, px (the aperture holds ``1 - exp(-r^2 / 2 sigma^2)`` of the flux).

    Returns
    -------
    ndarray
        ``1.0857 sigma_F / F_ap`` with ``sigma_F^2 = F_ap / g + A (s / g + rn^2) (1 + A / A_ann)``.
    """
    flux = np.asarray(flux_adu, dtype=np.float64)
    sigma = np.asarray(fwhm_px, dtype=np.float64) * _FWHM_TO_SIGMA
    frac = 1.0 - np.exp(-(aperture_px**2) / (2.0 * sigma**2))
    f_ap = flux * frac
    area = math.pi * aperture_px**2
    area_ann = math.pi * (annulus_px[1] ** 2 - annulus_px[0] ** 2)
    var = f_ap / gain + area * (sky_adu / gain + read_noise_adu**2) * (1.0 + area / area_ann)
    return 1.0857 * np.sqrt(var) / f_ap


@dataclass
class SeriesTruth:
    """The exact truth behind a :func:`write_series` run.

    Attributes
    ----------
    paths : list of str
        The frames, in time order.
    frames : DataFrame
        One row per frame: ``frame`` (0..), ``path``, ``mjd`` (mid-exposure, UTC), ``airmass``, ``jitter``
        (mag, the transparency jitter), ``zp`` (mag of 1 ADU/s at the chip centre: zp_true - k_ext X + jitter),
        ``grad_u``, ``grad_v`` (mag per unit of u, v: the frame's gradient), ``fwhm`` (px at the chip centre),
        ``focus_tilt`` (fractional FWHM change per unit u), ``sky`` (ADU per px).
    stars : DataFrame
        ``star_id``, ``ra``, ``dec``, ``mag``, ``color`` and ``kind`` (constant, variable, transit), ``amp``
        (semi-amplitude, mag), ``period_d``, ``phase``, ``depth`` (transit depth, fraction of flux),
        ``t0`` (mid-transit MJD), ``duration_d``.
    points : DataFrame
        One row per star per frame it falls on: ``frame``, ``star_id``, ``x``, ``y`` (px), ``signal`` (mag
        added by its variability), ``flux`` (ADU), ``fwhm`` (px at its position), ``err`` (white noise of
        an ``aperture_px`` aperture, mag).
    refcat_path, refcat_map : Path
        The reference catalogue (``skylake refcat import LAKE NAME --format generic --columns-map MAP DATA``).
    profile_path : Path
        The camera's profile (:data:`SERIES_PROFILE`).
    settings : dict
        The arguments of the run.
    """

    paths: list
    frames: pd.DataFrame
    stars: pd.DataFrame
    points: pd.DataFrame
    refcat_path: Path
    refcat_map: Path
    profile_path: Path
    settings: dict = field(default_factory=dict)

    def white_noise(self) -> pd.Series:
        """Per star: the median over its frames of the white noise its points carry (mag): the pixels' (``err``)
        and the scintillation and floor injected (``noise``, the three in quadrature).

        Returns
        -------
        pandas.Series
            Indexed by ``star_id``: the median ``noise`` of the star's points, mag.
        """
        return self.points.groupby("star_id")["noise"].median()


def _signal(stars: pd.DataFrame, mjd: float) -> np.ndarray:
    """Magnitude change of each star at ``mjd`` (0 for constant stars)."""
    out = np.zeros(len(stars))
    var = (stars["kind"] == "variable").to_numpy()
    out[var] = stars["amp"].to_numpy()[var] * np.sin(
        2 * np.pi * (mjd / stars["period_d"].to_numpy()[var] + stars["phase"].to_numpy()[var])
    )
    tr = (stars["kind"] == "transit").to_numpy()
    if tr.any():
        t0 = stars["t0"].to_numpy()[tr]
        half = stars["duration_d"].to_numpy()[tr] / 2
        ingress = half / 5
        # a trapezoid: full depth inside, linear over the ingress and egress
        dt = np.abs(mjd - t0)
        frac = np.clip((half - dt) / ingress, 0.0, 1.0)
        depth = stars["depth"].to_numpy()[tr] * frac
        out[tr] = -2.5 * np.log10(1.0 - depth)
    return out


def _with_neighbours(stars: pd.DataFrame, variables, neighbours, wcs, xy, rng) -> pd.DataFrame:
    """The stars with constant neighbours around each variable (``(separation [px], delta mag)`` each)."""
    x0, y0 = xy
    rows = []
    for i in variables:
        for separation, delta in neighbours:
            angle = rng.uniform(0, 2 * np.pi)
            ra, dec = wcs.pixel_to_world_values(x0[i] + separation * np.cos(angle), y0[i] + separation * np.sin(angle))
            row = stars.iloc[i].copy()
            row[["ra", "dec", "mag", "kind", "amp", "period_d", "phase"]] = [
                float(ra) % 360.0, float(dec), float(row["mag"] + delta), "neighbour", np.nan, np.nan, np.nan
            ]  # fmt: skip
            row["neighbour_of"] = int(stars["star_id"].iloc[i])
            rows.append(row)
    added = pd.DataFrame(rows).assign(star_id=np.arange(len(rows)) + int(stars["star_id"].max()) + 1)
    return pd.concat([stars, added.astype(stars.dtypes.to_dict())], ignore_index=True)


def write_series(
    out_dir,
    *,
    n_frames: int = 60,
    n_stars: int = 1200,
    shape=(512, 512),
    seed: int = 7,
    ra0_deg: float = 210.0,
    dec0_deg: float = 30.0,
    pixscale_arcsec: float = 4.0,
    start_utc: str = "2026-04-10T22:00:00",
    cadence_s: float = 300.0,
    exptime_s: float = 30.0,
    zp_true: float = 20.0,
    k_ext: float = 0.15,
    jitter_mag: float = 0.03,
    gradient_mag: float = 0.02,
    fwhm_px=(2.4, 3.4),
    focus_tilt: float = 0.0,
    sky_adu: float = 300.0,
    gain: float = 1.5,
    read_noise_adu: float = 5.0,
    saturation_adu: float = 60000.0,
    mag_range=(10.0, 17.5),
    n_variables: int = 5,
    variable_amp=(0.05, 0.3),
    variable_period=(0.05, 0.3),
    transit_depth: float = 0.01,
    aperture_px: float = 3.0,
    annulus_px=(10.0, 15.0),
    pointing_jitter_px: float = 1.5,
    site_lat_deg: float = 28.76,
    site_lon_deg: float = -17.88,
    refcat_name: str = "series",
    night_seed: int = 0,
    telescope_diameter_m: float = 0.0,
    scint_factor: float = 0.0,
    floor_mag: float = 0.0,
    site_height_m: float = 2363.0,
    variable_fap: float = 1e-3,
    blend_neighbours=(),
) -> SeriesTruth:
    """Write a SYNTHETIC series of one field and its reference catalogue; return the truth.

    Parameters
    ----------
    out_dir : path
        Frames go to ``out_dir/frames/series_NNN.fits``, the catalogue to ``out_dir/refcat/``.
    n_frames, n_stars : int
        Frames, and stars in a cap a little larger than the chip (about 2/3 land on it).
    shape : (int, int)
        (ny, nx) of the frames.
    seed : int
        Seeds the stars (positions, magnitudes, variables) and, with ``night_seed``, the frames.
    ra0_deg, dec0_deg : float
        The field's centre, deg.
    pixscale_arcsec : float
        Pixel scale, arcsec/px.
    start_utc : str
        Start of the first exposure, ISO UTC.
    cadence_s : float
        Time between the starts of consecutive exposures, s.
    exptime_s : float
        Exposure time, s.
    zp_true : float
        Magnitude giving 1 ADU/s above the atmosphere.
    k_ext : float
        Extinction coefficient, mag per airmass.
    jitter_mag : float
        The rms of the per-frame transparency jitter (mag).
    gradient_mag : float
        Zeropoint change across the chip (mag, end to end), in a direction drawn per frame.
    fwhm_px : (float, float)
        Range of the seeing FWHM at the chip centre (a smooth drift plus noise), px.
    focus_tilt : float
        Largest fractional FWHM change from the chip centre to its left/right edge, drawn per frame.
    sky_adu : float
        Sky per pixel, ADU.
    gain : float
        Gain, e-/ADU.
    read_noise_adu : float
        Read noise, ADU rms.
    saturation_adu : float
        Pixels are clipped at this level, ADU (SATURATE).
    mag_range : (float, float)
        Range of the stars' magnitudes (uniform in it).
    n_variables : int
        Sinusoidal variables (semi-amplitudes log-uniform in ``variable_amp``, periods uniform in
        ``variable_period``),
        among stars of magnitude 10.5-13; a star of magnitude 10-10.5 gets a transit of ``transit_depth``
        (lasting 40 % of the series, mid-series; 0 for none).
    variable_amp : (float, float)
        Range of the variables' semi-amplitudes, mag.
    variable_period : (float, float)
        Range of the variables' periods, d (a series of ``n_frames * cadence_s`` covers a few cycles of the
        shortest, a fraction of the longest's: its amplitude is then poorly constrained).
    transit_depth : float
        The transit's depth, fraction of the flux (0: no transit).
    aperture_px, annulus_px : float, (float, float)
        The aperture the stated white noise is for (the profile's photometry must use the same).
    pointing_jitter_px : float
        Pointing error, px rms per axis.
    site_lat_deg, site_lon_deg : float
        The site's latitude and longitude (east-positive), deg.
    refcat_name : str
        The reference catalogue's name (its files and the profile's ``refcat``).
    night_seed : int
        Seeds the frames' systematics and noise: another night of the same field (same ``seed``, same stars)
        with its own weather.
    telescope_diameter_m : float
        The telescope's aperture (m), for the scintillation injected and the profile's ``[ensemble]``.
    scint_factor : float
        Scintillation injected: each star on each frame is scaled by a Gaussian magnitude error of this times
        Young's scintillation for the frame's airmass (skylake.ensemble.noise.young_scintillation); 0: none.
    floor_mag : float
        A flat-field floor injected: an independent Gaussian magnitude error of this rms on each star of each
        frame; 0: none.
    site_height_m : float
        The site's height (m): the scintillation's and the profile's.
    variable_fap : float
        The profile's ``[ensemble] variable_fap``.
    blend_neighbours : sequence of (float, float)
        Constant neighbours of each variable, as ``(separation [px], magnitude less the variable's)``, each in a
        random direction (kind ``neighbour``, ``neighbour_of`` the variable's ``star_id``): a crowded field's
        blends, whose light moves in and out of an aperture with the seeing.

    Returns
    -------
    SeriesTruth
        The frames, stars and points with their exact truth, and the paths of the catalogue and profile.
    """
    rng = np.random.default_rng([seed, 1])  # not make_sky_catalog's stream (its positions)
    out = Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)  # not a table
    ny, nx = shape
    half_diag = 0.5 * math.hypot(nx, ny) * pixscale_arcsec / 3600.0
    stars = make_sky_catalog(ra0_deg, dec0_deg, half_diag * 1.02, n_stars, seed, mag_range=mag_range)
    # magnitudes uniform in the range (not the sky's number counts): every bin of the noise diagram filled
    stars["mag"] = rng.uniform(mag_range[0], mag_range[1], len(stars))
    stars["kind"] = "constant"
    for col in ("amp", "period_d", "phase", "depth", "t0", "duration_d"):
        stars[col] = np.nan
    # variables and the transit: isolated mid-bright stars on the chip's inner part
    w0 = WCS(tan_wcs_header(ra0_deg, dec0_deg, shape, pixscale_arcsec))
    x0, y0 = w0.world_to_pixel_values(stars["ra"].to_numpy(), stars["dec"].to_numpy())
    inner = (x0 > 40) & (x0 < nx - 40) & (y0 > 40) & (y0 < ny - 40)
    mid = (stars["mag"] > 10.5) & (stars["mag"] < 13.0) & inner
    candidates = np.flatnonzero(mid.to_numpy())
    rng.shuffle(candidates)
    bright = np.flatnonzero(((stars["mag"] > 10.0) & (stars["mag"] < 10.5) & inner).to_numpy())
    mjd0 = Time(start_utc, scale="utc").mjd
    span_d = n_frames * cadence_s / 86400.0
    chosen = candidates[:n_variables]
    for i in chosen:
        stars.loc[i, ["kind", "amp", "period_d", "phase"]] = [
            "variable",
            float(np.exp(rng.uniform(*np.log(variable_amp)))),
            float(rng.uniform(*variable_period)),
            float(rng.uniform()),
        ]
    stars["neighbour_of"] = -1
    if len(blend_neighbours):
        stars = _with_neighbours(stars, chosen, blend_neighbours, w0, (x0, y0), rng)
    if transit_depth > 0 and len(bright):  # a bright host: the depth is measured to a few per cent
        stars.loc[bright[0], ["kind", "depth", "t0", "duration_d"]] = [
            "transit",
            transit_depth,
            mjd0 + span_d / 2,
            span_d / 2.5,
        ]

    # per-frame systematics and the noise: their own stream, so that nights of one field (same seed, another
    # night_seed) see the same stars
    rng = np.random.default_rng([seed, 2, night_seed])
    t = np.arange(n_frames)
    mjd = mjd0 + (t * cadence_s + exptime_s / 2) / 86400.0
    jd = mjd + 2400000.5
    ha = (_gmst_deg(jd) + site_lon_deg - ra0_deg + 180.0) % 360.0 - 180.0
    airmass = _airmass(_altitude_deg(ha, dec0_deg, site_lat_deg))
    jitter = rng.normal(0.0, jitter_mag, n_frames)
    ang = rng.uniform(0, 2 * np.pi, n_frames)
    grad_u, grad_v = gradient_mag / 2 * np.cos(ang), gradient_mag / 2 * np.sin(ang)
    lo, hi = fwhm_px
    drift = lo + (hi - lo) * (0.5 + 0.5 * np.sin(2 * np.pi * t / max(n_frames, 1) * 1.3 + rng.uniform(0, 6)))
    fwhm = np.clip(drift + rng.normal(0, 0.05 * (hi - lo), n_frames), 0.8 * lo, 1.2 * hi)
    tilt = rng.uniform(-focus_tilt, focus_tilt, n_frames)
    zp = zp_true - k_ext * airmass + jitter
    scint_mag = scint_factor * young_scintillation(telescope_diameter_m, exptime_s, airmass, site_height_m)
    extra_rng = np.random.default_rng([seed, 3, night_seed])  # its own stream: without extra noise, no change

    rows, paths = [], []
    for e in range(n_frames):
        dx, dy = rng.normal(0, pointing_jitter_px, 2)
        header = tan_wcs_header(ra0_deg, dec0_deg, shape, pixscale_arcsec)
        header["CRPIX1"] += dx
        header["CRPIX2"] += dy
        w = WCS(header)
        x, y = w.world_to_pixel_values(stars["ra"].to_numpy(), stars["dec"].to_numpy())
        on = (x > -5) & (x < nx + 4) & (y > -5) & (y < ny + 4)
        u = 2 * x / (nx - 1) - 1
        v = 2 * y / (ny - 1) - 1
        signal = _signal(stars, float(mjd[e]))
        extra = np.zeros(len(stars))
        if scint_mag[e] > 0 or floor_mag > 0:
            extra = np.hypot(scint_mag[e], floor_mag) * extra_rng.standard_normal(len(stars))
        m = stars["mag"].to_numpy() + signal + extra - grad_u[e] * u - grad_v[e] * v
        flux = 10 ** (-0.4 * (m - zp[e])) * exptime_s
        star_fwhm = fwhm[e] * (1 + tilt[e] * np.clip(u, -1, 1))
        # render in FWHM bins (a PSF per bin), then one noise draw over the sum
        model = np.full((ny, nx), sky_adu, dtype=np.float32)
        bins = np.linspace(star_fwhm[on].min() - 1e-6, star_fwhm[on].max() + 1e-6, 9) if on.any() else [0, 1]
        for b in range(len(bins) - 1):
            sel = on & (star_fwhm >= bins[b]) & (star_fwhm < bins[b + 1])
            if sel.any():
                model += render_frame(
                    {"x": x[sel], "y": y[sel], "flux": flux[sel]},
                    shape=shape,
                    fwhm_px=float(np.mean(star_fwhm[sel])),
                    sky_adu=0.0,
                    noise=False,
                )
        noise = rng.standard_normal(model.shape) * np.sqrt(model / gain + read_noise_adu**2)
        data = np.minimum(model + noise, saturation_adu).astype(np.float32)
        start = Time(mjd[e] - exptime_s / 2 / 86400.0, format="mjd", scale="utc")
        header["DATE-OBS"] = start.isot
        header["EXPTIME"] = exptime_s
        header["AIRMASS"] = float(airmass[e])
        header["GAIN"] = gain
        header["SATURATE"] = saturation_adu
        header["FILTER"] = "V"
        header["INSTRUME"] = "SERIESCAM"
        header["OBJECT"] = "series field"
        path = out / "frames" / f"series_{e:03d}.fits"  # not a table
        write_frame(path, data, header)
        paths.append(str(path))
        err = expected_error(flux[on], sky_adu, gain, read_noise_adu, aperture_px, annulus_px, star_fwhm[on])
        rows.append(
            pd.DataFrame(
                {
                    "frame": e,
                    "star_id": stars["star_id"].to_numpy()[on],
                    "x": x[on],
                    "y": y[on],
                    "signal": signal[on],
                    "flux": flux[on],
                    "fwhm": star_fwhm[on],
                    "err": err,
                    "extra": extra[on],
                    "noise": np.sqrt(err**2 + scint_mag[e] ** 2 + floor_mag**2),
                }
            )
        )
    frames = pd.DataFrame(
        {
            "frame": t,
            "path": paths,
            "mjd": mjd,
            "airmass": airmass,
            "jitter": jitter,
            "zp": zp,
            "grad_u": grad_u,
            "grad_v": grad_v,
            "fwhm": fwhm,
            "focus_tilt": tilt,
            "sky": sky_adu,
            "scint_mag": scint_mag,
        }
    )
    ref = stars.assign(is_variable=~stars["kind"].isin(["constant", "neighbour"]))
    refcat_path, refcat_map = write_reference_catalog(ref, out / "refcat", name=refcat_name, mag_err=0.001)
    settings = {
        k: v
        for k, v in locals().items()
        if k
        in (
            "n_frames",
            "n_stars",
            "shape",
            "seed",
            "pixscale_arcsec",
            "exptime_s",
            "zp_true",
            "k_ext",
            "jitter_mag",
            "gradient_mag",
            "fwhm_px",
            "focus_tilt",
            "sky_adu",
            "gain",
            "read_noise_adu",
            "aperture_px",
            "annulus_px",
            "telescope_diameter_m",
            "scint_factor",
            "floor_mag",
            "site_height_m",
        )
    }
    profile_path = out / "series.toml"
    profile_path.write_text(
        SERIES_PROFILE.format(
            lat=site_lat_deg,
            lon=site_lon_deg,
            height=site_height_m,
            aperture=aperture_px,
            ann_in=annulus_px[0],
            ann_out=annulus_px[1],
            refcat=refcat_name,
            read_noise=read_noise_adu,
            diameter=telescope_diameter_m,
            variable_fap=variable_fap,
        )
    )
    return SeriesTruth(
        paths=paths,
        frames=frames,
        stars=stars,
        points=pd.concat(rows, ignore_index=True),
        refcat_path=refcat_path,
        refcat_map=refcat_map,
        profile_path=profile_path,
        settings=settings,
    )
