"""Instrument profiles and header mapping (exact, from known headers)."""

from __future__ import annotations

import pytest
from astropy.io import fits

from skylake.errors import FrameRejected
from skylake.frame.header import airmass_from_altitude, frame_record, observing_night
from skylake.profile import ProfileError, load_profile


def test_builtin_profiles_load_and_inherit():
    z, t = load_profile("skycamz"), load_profile("skycamt")
    assert (z.detection.thresh, z.detection.minarea, z.detection.back_size, z.detection.back_filtersize) == (
        1.5,
        5,
        64,
        3,
    )
    assert t.detection == z.detection and t.site == z.site  # skycamt extends skycamz
    assert (z.quality.min_sources, t.quality.min_sources) == (200, 600)
    assert z.pipeline_version != t.pipeline_version


@pytest.mark.parametrize(
    "utc_mjd, night",
    [
        (56453.98977, "2013-06-10"),  # 23:45 UT = 00:45 local (WEST) on the 11th: still the night of the 10th
        (56454.30, "2013-06-10"),  # 07:12 UT = 08:12 local on the 11th: before 17:30, same night
        (56454.70, "2013-06-11"),  # 16:48 UT = 17:48 local on the 11th: the next night has begun
    ],
)
def test_skycam_observing_night_runs_from_1730_local(utc_mjd, night):
    assert observing_night(utc_mjd, "Atlantic/Canary", "17:30") == night


def test_user_profile_without_code(tmp_path):
    path = tmp_path / "mycam.toml"
    path.write_text(
        'extends = "generic"\n[profile]\nname = "mycam"\n[detection]\nthresh = 3.0\n[header]\nfilter = ["FILT"]\n'
    )
    p = load_profile(path)
    assert p.name == "mycam" and p.detection.thresh == 3.0 and p.detection.minarea == 5
    h = fits.Header({"FILT": "r'", "DATE-OBS": "2026-01-01T00:00:00", "EXPTIME": 20.0, "ALTITUDE": 90.0})
    rec = frame_record(h, p)
    assert rec["filter"] == "r'" and rec["mjd"] == pytest.approx(61041.0 + 10 / 86400)
    assert rec["airmass"] == pytest.approx(1.0, abs=1e-3)
    yaml_path = tmp_path / "mycam.yaml"
    yaml_path.write_text("extends: generic\nprofile: {name: ycam}\nquality: {min_sources: 3}\n")
    assert load_profile(yaml_path).quality.min_sources == 3


def test_bad_profiles_name_the_problem(tmp_path):
    with pytest.raises(ProfileError, match="unknown profile 'nope'.*skycamz"):
        load_profile("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "generic"\n[detection]\nthreshold = 2\n')
    with pytest.raises(ProfileError, match=r"unknown settings \['threshold'\]"):
        load_profile(bad)
    bad.write_text('extends = "generic"\n[photometry]\naperture_radii = [1, 2]\n')
    with pytest.raises(ProfileError, match="exactly 3 radii"):
        load_profile(bad)


def test_skycamz_header_mapping():
    h = fits.Header(
        {
            "INSTRUME": "SkyCamZ",
            "DATE-OBS": "2013-06-10T23:45:16",
            "MJD": "56453.9897685",
            "EXPTIME": 10.0,
            "ALTITUDE": 66.3945,
            "AZIMUTH": 131.3999,
        }
    )
    rec = frame_record(h, load_profile("skycamz"))
    assert rec["mjd"] == pytest.approx(56453.9897685 + 5 / 86400, abs=1e-9)  # MJD is a string, start of exposure
    assert rec["filter"] == "clear" and rec["gain"] == 5.47 and rec["saturation"] == 50000.0
    assert rec["airmass"] == pytest.approx(airmass_from_altitude(66.3945)) and 1.08 < rec["airmass"] < 1.1
    assert rec["night"] == "2013-06-10"
    with pytest.raises(FrameRejected, match="no exposure time"):
        frame_record(fits.Header({"DATE-OBS": "2013-06-10T23:45:16"}), load_profile("skycamz"))
    with pytest.raises(FrameRejected, match="no observation time"):
        frame_record(fits.Header({"EXPTIME": 1.0}), load_profile("skycamz"))


def test_airmass_from_site_time_and_pointing():
    """Without AIRMASS or ALTITUDE in the header, the airmass comes from the site, time and WCS centre."""
    from skylake.frame.header import airmass_from_pointing

    site = load_profile("skycamz").site
    # SkyCamZ frame 210: the telescope's header says ALT 66.3945, AZ 131.3999 at 2013-06-10 23:45:16 UT; the
    # co-mounted camera's field centre (RA 256.167, Dec 12.788) sits a fraction of a degree off that axis.
    airmass, alt, az = airmass_from_pointing(256.1675, 12.7884, 56453.98977 + 5 / 86400, site)
    assert alt == pytest.approx(66.39, abs=0.5) and az == pytest.approx(131.4, abs=2.5)
    assert airmass == pytest.approx(airmass_from_altitude(alt), rel=1e-12)
    assert airmass == pytest.approx(airmass_from_altitude(66.39), abs=0.01)
