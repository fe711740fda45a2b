"""Camera model: conventions, round trips, solid angle, validation (synthetic, exact), frame headers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from skylake.allsky.camera import ARCSEC2_PER_SR, PROJECTIONS, CameraModel, Site
from skylake.allsky.io import exposure_time, frame_time

ALL = [
    dict(projection=p, poly=(0.02, -0.01) if p == "polynomial" else (), theta_max_deg=80.0 if p == "gnomonic" else 90.0)
    for p in PROJECTIONS
]


@pytest.mark.parametrize("kw", ALL, ids=PROJECTIONS)
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"k1": 0.01, "k2": -0.002, "parity": -1, "rotation_deg": 37.0},
        {"tilt_deg": 2.5, "tilt_az_deg": 123.0, "rotation_deg": -80.0},
    ],
    ids=["plain", "distorted-mirrored", "tilted"],
)
def test_round_trip_every_projection(kw, extra):
    m = CameraModel(
        focal_length_mm=1.5 if kw["projection"] != "gnomonic" else 0.4,
        pixel_size_mm=0.0075,
        x0=320.3,
        y0=241.7,
        **kw,
        **extra,
    )
    rng = np.random.default_rng(1)
    alt = rng.uniform(15, 90, 2000)
    az = rng.uniform(0, 360, 2000)
    x, y = m.altaz_to_pixel(alt, az)
    a2, z2 = m.pixel_to_altaz(x, y)
    assert np.nanmax(np.abs(a2 - alt)) < 1e-9
    daz = np.abs((z2 - az + 180) % 360 - 180) * np.cos(np.radians(alt))
    assert np.nanmax(daz) < 1e-9
    # the other way: pixels -> sky -> pixels
    xs, ys = rng.uniform(200, 440, 500), rng.uniform(120, 360, 500)
    a, z = m.pixel_to_altaz(xs, ys)
    x2, y2 = m.altaz_to_pixel(a, z)
    ok = np.isfinite(x2)
    assert ok.mean() > 0.9 and np.max(np.hypot(x2 - xs, y2 - ys)[ok]) < 1e-7


def test_orientation_conventions():
    """rotation 0, parity +1: North up (towards row 0), East left; rotation turns counter-clockwise."""
    m = CameraModel("equidistant", 1.45, 0.0075, 300.0, 200.0)
    x, y = m.altaz_to_pixel([45, 45, 45, 45], [0, 90, 180, 270])
    assert y[0] < 200 and abs(x[0] - 300) < 1e-9  # N up
    assert x[1] < 300 and abs(y[1] - 200) < 1e-9  # E left
    assert y[2] > 200 and x[3] > 300  # S down, W right
    assert m.altaz_to_pixel(90, 123) == pytest.approx((300.0, 200.0))
    r = m.r_of_theta(45.0)
    assert r == pytest.approx(1.45 / 0.0075 * math.pi / 4)
    m90 = m.replace(rotation_deg=90.0)  # N now points left (counter-clockwise)
    x, y = m90.altaz_to_pixel(45, 0)
    assert x == pytest.approx(300 - r) and y == pytest.approx(200)
    mirror = m.replace(parity=-1)  # E right
    x, y = mirror.altaz_to_pixel(45, 90)
    assert x == pytest.approx(300 + r)


@pytest.mark.parametrize("proj", ["equidistant", "equisolid", "orthographic"])
def test_solid_angle_integrates_to_a_hemisphere(proj):
    m = CameraModel(proj, 1.0, 0.01, 150.0, 150.0)  # horizon radius <= 157 px: fits in 320 px
    omega = m.solid_angle_map((320, 320))
    alt, _ = m.pixel_grid_altaz((320, 320))
    cap = alt >= 10.0  # (an orthographic lens squeezes the horizon into a ring of zero width)
    assert np.sum(omega[cap]) == pytest.approx(2 * math.pi * (1 - math.cos(math.radians(80))), rel=0.01)
    # at the zenith one pixel subtends 1 / f_px^2 sr
    assert m.solid_angle(150.0, 150.0) == pytest.approx(1.0 / m.f_px**2, rel=1e-9)
    assert m.solid_angle(150.0, 150.0, unit="arcsec2") == pytest.approx(ARCSEC2_PER_SR / m.f_px**2, rel=1e-9)
    if proj == "equisolid":  # equal-area: constant per pixel
        assert np.nanstd(omega) / np.nanmean(omega) < 1e-9


def test_validation_names_the_offending_value():
    with pytest.raises(ValueError, match="projection must be one of .*'fisheye'"):
        CameraModel("fisheye", 1.45, 0.0075, 0, 0)
    with pytest.raises(ValueError, match="focal_length_mm .* -1"):
        CameraModel("equidistant", -1, 0.0075, 0, 0)
    with pytest.raises(ValueError, match="pixel_size_mm .*7.5"):
        CameraModel("equidistant", 1.45, 7.5, 0, 0)
    with pytest.raises(ValueError, match="parity .* 0"):
        CameraModel("equidistant", 1.45, 0.0075, 0, 0, parity=0)
    with pytest.raises(ValueError, match="stops increasing .*k1=-0.5"):
        CameraModel("equidistant", 1.45, 0.0075, 0, 0, k1=-0.5)
    with pytest.raises(ValueError, match="x0 must be finite"):
        CameraModel("equidistant", 1.45, 0.0075, float("nan"), 0)
    with pytest.raises(ValueError, match=r"unknown CameraModel setting\(s\) \['zenith_row'\]"):
        CameraModel.from_dict(
            {
                "projection": "equidistant",
                "focal_length_mm": 1.45,
                "pixel_size_mm": 0.0075,
                "x0": 1,
                "y0": 2,
                "zenith_row": 250,
            }
        )
    with pytest.raises(ValueError, match="lat_deg .* 95"):
        Site(95, 0, 0)
    m = CameraModel.from_dict(
        {
            "projection": "equisolid_angle",
            "focal_length_mm": 4.44,
            "pixel_size_mm": 0.0074,
            "x0": 848.8,
            "y0": 847.8,
            "rotation_deg": -2.79,
        }
    )
    assert m.projection == "equisolid"
    assert CameraModel.from_dict(m.to_dict()) == m


def test_sky_round_trip_and_a_known_star():
    """pixel -> RA/Dec -> pixel through astropy (refraction included), and Polaris at the pole's altitude."""
    site = Site(28.76187, -17.890777, 2200)
    t = Time("2015-12-20T04:07:10", scale="utc")
    m = CameraModel("equisolid", 4.44, 0.0073975, 848.8, 847.8, rotation_deg=-2.79)
    x = np.array([848.8, 900.0, 300.0, 1400.0])
    y = np.array([847.8, 500.0, 900.0, 1200.0])
    ra, dec = m.pixel_to_radec(x, y, site, t)
    x2, y2 = m.radec_to_pixel(ra, dec, site, t)
    assert np.max(np.hypot(x2 - x, y2 - y)) < 1e-4
    alt, az = site.radec_to_altaz(37.95456067, 89.26410897, t)  # Polaris (ICRS)
    assert abs(alt[0] - 28.76) < 0.8 and (az[0] < 2 or az[0] > 358)
    # the zenith's declination is the site's latitude (precessed to the date: < 0.2 deg)
    _, dec_z = m.pixel_to_radec(*m.altaz_to_pixel(90.0, 0.0), site, t)
    assert abs(dec_z[0] - 28.76187) < 0.2


def test_frame_headers_of_the_real_cameras():
    h = fits.Header({"EXPOSURE": "120.0   ", "DATE-OBS": "2017-05-03T03:12:04.032518"})
    assert exposure_time(h) == 120.0
    t, note = frame_time(h, 120.0)
    assert t.isot == "2017-05-03T03:13:04.033" and "DATE-OBS" in note and "60" in note
    h2 = fits.Header({"TIMEUTC": "2015-12-20 04:07:10"})
    assert exposure_time(h2) is None
    assert frame_time(h2, None)[0].isot == "2015-12-20T04:07:10.000"
    with pytest.raises(ValueError, match="EXPOSURE = 'abc'"):
        exposure_time(fits.Header({"EXPOSURE": "abc"}))
    with pytest.raises(ValueError, match="no time keyword"):
        frame_time(fits.Header({"FOO": 1}))


def test_importing_and_using_the_camera_model_leaves_astropys_iers_settings_alone():
    """Alt/az use the bundled IERS tables inside skylake.iers.offline(); the process-wide settings stay
    astropy's, so a UT1 header time past the tables is still rejected (skylake.iers.strict)."""
    import subprocess
    import sys

    code = (
        "from astropy.utils import iers; before = (iers.conf.auto_max_age, iers.conf.iers_degraded_accuracy); "
        "import skylake.allsky.camera as c, skylake.allsky.pipeline; "
        "from skylake import iers as si\n"
        "with si.offline(): assert iers.conf.auto_max_age is None\n"
        "assert (iers.conf.auto_max_age, iers.conf.iers_degraded_accuracy) == before, before"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
