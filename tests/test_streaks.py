"""Satellite/aircraft trails: injected ones found to 3 px (synthetic trails in real and synthetic
frames), none reported on the real SkyCamZ and IceAct frames, fast on a 1k x 1k frame."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from conftest import SHARED_DATA, require_shared

from skylake.allsky.camera import CameraModel, Site
from skylake.frame.streaks import STREAK_COLUMNS, StreakSettings, detect_streaks, flag_on_streaks, streak_mask
from skylake.synthetic.allsky import Streak, make_allsky_frame, render_streak


def _endpoint_errors(row, s: Streak):
    a = np.hypot(row["x1"] - s.x1, row["y1"] - s.y1), np.hypot(row["x2"] - s.x2, row["y2"] - s.y2)
    b = np.hypot(row["x1"] - s.x2, row["y1"] - s.y2), np.hypot(row["x2"] - s.x1, row["y2"] - s.y1)
    return max(a) if max(a) < max(b) else max(b)


@pytest.fixture(scope="module")
def skycamz_210(skycamz_files):
    return fits.getdata(skycamz_files[0]).astype(np.float64)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "x1, y1, x2, y2, peak_sigma",
    [
        (623.3, 292.8, 730.6, 306.7, 5.0),  # short, shallow, crosses stars
        (75.5, 161.9, 10.0, 526.0, 8.0),  # steep, ends 10 px from the edge
        (603.8, 395.3, 13.5, 400.5, 8.0),  # 590 px across the frame, through a bright star
        (100.0, 1000.0, 900.0, 30.0, 20.0),  # bright, corner to corner
    ],
)
def test_injected_trail_found_in_a_real_frame(skycamz_210, x1, y1, x2, y2, peak_sigma):
    d = skycamz_210
    rms = 1.4826 * np.median(np.abs(d - np.median(d)))
    sigma = 1.3
    s = Streak(x1, y1, x2, y2, sigma_px=sigma, flux_per_px=peak_sigma * rms * np.sqrt(2 * np.pi) * sigma)
    img = render_streak(d.shape, s, out=d.copy())
    found = detect_streaks(img)
    assert len(found) == 1, found
    r = found[0]
    assert _endpoint_errors(r, s) <= 3.0
    assert r["width"] == pytest.approx(2.3548 * sigma, rel=0.25)
    assert r["brightness"] == pytest.approx(s.flux_per_px, rel=0.2)
    assert r["length"] == pytest.approx(s.length, abs=4.0)
    on = flag_on_streaks([(x1 + x2) / 2, 5.0], [(y1 + y2) / 2, 5.0], found)
    assert on.tolist() == [True, False]


@pytest.mark.parametrize(
    "x1, y1, x2, y2, flux", [(150.0, 300.0, 500.0, 150.0, 1000.0), (100.0, 250.0, 550.0, 260.0, 700.0)]
)
def test_trail_on_a_synthetic_allsky_frame(x1, y1, x2, y2, flux):
    """A trail across a synthetic fisheye frame (stars to V = 6 at 0.3 deg/px, sky gradient,
    noise; peak 4.6-6.6 sigma), the region beyond the horizon masked by the camera model."""
    from skylake.allsky.catalog import read_hipparcos

    hip = read_hipparcos(require_shared(SHARED_DATA / "allsky" / "hipparcos.fits.gz"), vmax=6.0)
    m = CameraModel("equidistant", 1.45, 0.0075, 326.2, 250.7, rotation_deg=-86.8)
    s = Streak(x1, y1, x2, y2, sigma_px=1.0, flux_per_px=flux)
    site, t = Site(28.76, -17.89, 2200), Time("2016-03-01T23:00:00")
    syn = make_allsky_frame(m, site, t, hip, (480, 640), streak=s, seed=7)
    found = detect_streaks(syn.image, ~m.sky_mask((480, 640)))
    assert len(found) == 1 and _endpoint_errors(found[0], s) <= 3.0
    xm, ym = int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2))
    assert streak_mask((480, 640), found)[ym, xm]  # on the trail
    none = make_allsky_frame(m, site, t, hip, (480, 640), seed=7)
    assert len(detect_streaks(none.image, ~m.sky_mask((480, 640)))) == 0


@pytest.mark.realdata
def test_no_trails_on_the_real_frames(skycamz_files):
    for f in skycamz_files:
        found = detect_streaks(fits.getdata(f).astype(np.float64))
        assert len(found) == 0, (f.name, found)
        assert found.colnames == list(STREAK_COLUMNS)
    from skylake.allsky.io import read_allsky_frame

    fr = read_allsky_frame(require_shared(SHARED_DATA / "allsky" / "iceact_20170503_starry.fits"))
    m = CameraModel("equidistant", 1.44629, 0.0075, 325.518, 251.668, rotation_deg=-86.792)
    assert len(detect_streaks(fr.data, ~m.sky_mask(fr.data.shape))) == 0


def test_settings_are_validated():
    with pytest.raises(ValueError, match="streaks.min_length_px must be in .* got -3"):
        StreakSettings(min_length_px=-3)
    with pytest.raises(ValueError, match=r"unknown streaks setting\(s\) \['minlength'\]"):
        StreakSettings.from_dict({"minlength": 3})
    assert len(detect_streaks(np.zeros((64, 64)))) == 0
    assert flag_on_streaks([1.0], [1.0], Table({c: [] for c in STREAK_COLUMNS})).tolist() == [False]


def test_same_pivot_is_one_structure_turned_about_a_point():
    from skylake.frame.streaks import same_pivot

    def seg(x, y, angle_deg, length):
        t = np.radians(angle_deg)
        return {"x1": x, "y1": y, "x2": x + length * np.cos(t), "y2": y + length * np.sin(t)}

    foot = (150.0, 390.0)
    assert same_pivot(seg(*foot, -40, 170), seg(*foot, -30, 170), 3.0)  # the tube turned 10 deg about its foot
    assert not same_pivot(seg(*foot, -40, 170), seg(*foot, -15, 170), 3.0)  # 25 deg: beyond max_turn_deg 20
    assert not same_pivot(seg(*foot, -40, 170), seg(*foot, -30, 170), 3.0, max_turn_deg=0)
    # found running on beyond the foot (along a cable): the other's foot lies on it
    assert same_pivot(
        seg(*foot, -33, 170),
        seg(foot[0] - 30 * np.cos(np.radians(-33)), 390 + 30 * np.sin(np.radians(33)), -33, 200),
        3.0,
    )
    assert not same_pivot(seg(*foot, -40, 170), seg(150.0, 440.0, -40, 170), 3.0)  # parallel, 50 px apart
    assert not same_pivot(seg(*foot, -40, 60), seg(*foot, -40, 170), 3.0)  # lengths differ by more than 2x
    # satellites: one continuing into the next frame (end to end, running on to the other side), one of a train on
    # the same track shifted along it, one ending on another at 15 deg on the far side
    a = {"x1": 100.0, "y1": 100.0, "x2": 250.0, "y2": 150.0}
    assert not same_pivot(a, {"x1": 252.0, "y1": 151.0, "x2": 395.0, "y2": 210.0}, 3.0)
    assert not same_pivot(a, {"x1": 160.0, "y1": 120.0, "x2": 310.0, "y2": 170.0}, 3.0)
    assert not same_pivot(a, seg(250.0, 150.0, 33.4, 150), 3.0)
