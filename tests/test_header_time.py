"""The observation time from every header convention the profiles map, as the exact mid-exposure MJD
(UTC), including the real headers of two all-sky cameras; and clear rejections, never a guessed time."""

from __future__ import annotations

import datetime as dt

import pytest
from astropy.io import fits
from conftest import SHARED_DATA, require_shared

from skylake.errors import FrameRejected
from skylake.frame.header import frame_record
from skylake.profile import load_profile

_EPOCH = dt.datetime(1858, 11, 17)


def mjd(*when) -> float:
    """MJD of a UTC date and time, by plain arithmetic (no astropy)."""
    return (dt.datetime(*when[:6]) - _EPOCH).total_seconds() / 86400.0 + (when[6] if len(when) > 6 else 0) / 86400.0


#: The IceAct camera (South Pole): DATE-OBS in UTC at the start of the exposure, EXPOSURE a string.
ICEACT = """extends = "generic"
[profile]
name = "iceact"
[site]
name = "IceAct, South Pole"
lat_deg = -89.99
lon_deg = -63.45
height_m = 2801.0
timezone = "Antarctica/McMurdo"
[header]
exptime = "EXPOSURE"   # a single keyword as a string
"""
#: The CTA all-sky camera at La Palma: TIMEUTC = 'YYYY-MM-DD hh:mm:ss', no DATE-OBS and no exposure keyword.
#: The header does not say which moment TIMEUTC marks; the profile takes it as mid-exposure and gives the
#: exposure itself.
CTA = """extends = "generic"
[profile]
name = "cta_lapalma"
[header]
time_keys = ["TIMEUTC"]
time_format = "%Y-%m-%d %H:%M:%S"
time_reference = "mid"
[defaults]
exptime = 30.0
"""


def _profile(tmp_path, text: str, name: str = "p"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text if text.startswith("extends") else f'extends = "generic"\n{text}')
    return load_profile(path)


# (what, profile text, header, expected mid-exposure MJD)
CONVENTIONS = [
    ("ISO DATE-OBS, start", "", {"DATE-OBS": "2026-01-01T00:00:00", "EXPTIME": 20.0}, mjd(2026, 1, 1, 0, 0, 10)),
    (
        "ISO DATE-OBS with Z and fraction",
        "",
        {"DATE-OBS": "2026-01-01T00:00:00.250Z", "EXPTIME": 1.5},
        mjd(2026, 1, 1, 0, 0, 1),
    ),
    (
        "date-only DATE-OBS + TIME-OBS",
        "",
        {"DATE-OBS": "2018-08-16", "TIME-OBS": "03:04:05.5", "EXPTIME": 60.0},
        mjd(2018, 8, 16, 3, 4, 35, 0.5),
    ),
    (
        "date-only DATE-OBS + UT",
        "",
        {"DATE-OBS": "2018-08-16", "UT": "21:00:00", "EXPTIME": 4.0},
        mjd(2018, 8, 16, 21, 0, 2),
    ),
    (
        "date-only DATE-OBS + UTC-OBS",
        "",
        {"DATE-OBS": "2018-08-16", "UTC-OBS": "23:59:50", "EXPTIME": 20.0},
        mjd(2018, 8, 17, 0, 0, 0),
    ),
    (
        "pre-2000 FITS date DD/MM/YY + TIME-OBS",
        "",
        {"DATE-OBS": "16/08/98", "TIME-OBS": "10:00:00", "EXPTIME": 30.0},
        mjd(1998, 8, 16, 10, 0, 15),
    ),
    ("MJD-OBS number, start", "", {"MJD-OBS": 60000.5, "EXPTIME": 86.4}, 60000.5005),
    ("MJD-OBS, time_reference mid", 'time_reference = "mid"', {"MJD-OBS": 60000.5, "EXPTIME": 86.4}, 60000.5),
    ("JD", "", {"JD": 2460000.25, "EXPTIME": 8.64}, 59999.75005),
    (
        "DATE-AVG: mid by definition",
        "",
        {"DATE-AVG": "2020-02-02T02:02:02", "DATE-OBS": "2020-02-02T02:01:12", "EXPTIME": 100.0},
        mjd(2020, 2, 2, 2, 2, 2),
    ),
    ("MJD-AVG: mid by definition", "", {"MJD-AVG": 59000.1, "MJD-OBS": 59000.0, "EXPTIME": 100.0}, 59000.1),
    (
        "time_reference end",
        '[header]\ntime_reference = "end"',
        {"DATE-OBS": "2020-01-01T01:00:00", "EXPTIME": 120.0},
        mjd(2020, 1, 1, 0, 59, 0),
    ),
    (
        "TIMESYS TAI (TAI-UTC = 37 s)",
        "",
        {"DATE-OBS": "2020-06-01T00:00:37", "TIMESYS": "TAI", "EXPTIME": 2.0},
        mjd(2020, 6, 1, 0, 0, 1),
    ),
    (
        "TIMESYS TT (TT-UTC = 69.184 s)",
        "",
        {"DATE-OBS": "2020-06-01T00:01:09.184", "TIMESYS": "TT", "EXPTIME": 2.0},
        mjd(2020, 6, 1, 0, 0, 1),
    ),
    (
        "profile time_scale gps (GPS-UTC = 18 s)",
        '[header]\ntime_scale = "gps"',
        {"DATE-OBS": "2020-06-01T00:00:18", "EXPTIME": 2.0},
        mjd(2020, 6, 1, 0, 0, 1),
    ),
    (
        "named keywords with a format",
        '[header]\ntime_keys = ["DATE", "TIME"]\ntime_format = "%Y/%m/%d %H:%M:%S"',
        {"DATE": "2015/12/20", "TIME": "04:07:10", "EXPTIME": "20"},
        mjd(2015, 12, 20, 4, 7, 20),
    ),
]


@pytest.mark.parametrize("what, text, cards, expected", CONVENTIONS, ids=[c[0] for c in CONVENTIONS])
def test_mid_exposure_mjd_from_each_convention(tmp_path, what, text, cards, expected):
    text = text if text.startswith("[") or not text else f"[header]\n{text}"
    rec = frame_record(fits.Header(cards), _profile(tmp_path, text))
    assert rec["mjd"] == pytest.approx(expected, abs=2e-9), what  # 0.2 ms


def test_skycamz_mjd_string_is_unchanged():
    """SkyCamZ writes MJD as a string, start of the exposure; the result is exactly the old one."""
    rec = frame_record(
        fits.Header({"DATE-OBS": "2013-06-10T23:45:16", "MJD": "56453.9897685", "EXPTIME": 10.0}),
        load_profile("skycamz"),
    )
    assert rec["mjd"] == 56453.9897685 + 10.0 / 2.0 / 86400.0
    assert rec["date_obs"] == "2013-06-10T23:45:15.998" and rec["night"] == "2013-06-10"


@pytest.mark.realdata
def test_real_iceact_header(tmp_path):
    """IceAct: DATE-OBS = '2017-05-03T03:12:04.032518' (UTC, start), EXPOSURE = '120.0' (a string)."""
    header = fits.getheader(require_shared(SHARED_DATA / "allsky" / "iceact_20170503_starry.fits"))
    assert header["EXPOSURE"] == "120.0" and header["DATE-OBS"] == "2017-05-03T03:12:04.032518"
    rec = frame_record(header, _profile(tmp_path, ICEACT))
    assert rec["exptime"] == 120.0
    assert rec["mjd"] == pytest.approx(mjd(2017, 5, 3, 3, 13, 4, 0.032518), abs=2e-9)
    assert rec["night"] == "2017-05-03"  # South Pole time is NZST (UTC+12) in May: 15:13 on the 3rd, after noon


@pytest.mark.realdata
def test_real_cta_header_timeutc(tmp_path):
    """CTA La Palma: TIMEUTC = '2015-12-20 04:07:10', no DATE-OBS, no exposure keyword."""
    header = fits.getheader(require_shared(SHARED_DATA / "allsky" / "cta_lapalma_20151220_cloudy.fits.gz"))
    assert "DATE-OBS" not in header and header["TIMEUTC"] == "2015-12-20 04:07:10"
    with pytest.raises(FrameRejected, match="no observation time in the header"):  # generic does not know TIMEUTC
        frame_record(header, _profile(tmp_path, "[defaults]\nexptime = 30.0", "exposure_only"))
    rec = frame_record(header, _profile(tmp_path, CTA))
    assert rec["mjd"] == pytest.approx(mjd(2015, 12, 20, 4, 7, 10), abs=2e-9) and rec["exptime"] == 30.0
    without_exposure = CTA.replace("exptime = 30.0", "exptime = 0.0")
    with pytest.raises(FrameRejected, match=r"no exposure time in the header .*set \[defaults\] exptime"):
        frame_record(header, _profile(tmp_path, without_exposure, "cta0"))


@pytest.mark.parametrize(
    "cards, message",
    [
        (
            {"DATE-OBS": "2018-08-16", "EXPTIME": 1.0},
            "header DATE-OBS '2018-08-16' has no time of day; map the time keyword with [header] time_obs = [...]",
        ),
        ({"DATE-OBS": "16/08/98", "EXPTIME": 1.0}, "header DATE-OBS '16/08/98' has no time of day"),
        ({"DATE-OBS": "1899-12-31T23:59:59", "EXPTIME": 1.0}, "is outside the years 1901-2100"),
        (
            {"DATE-OBS": "1900-01-01T00:00:00", "EXPTIME": 1.0},  # an unset clock
            "header DATE-OBS = '1900-01-01T00:00:00' is outside the years 1901-2100",
        ),
        ({"DATE-OBS": "1900-07-14T22:10:00", "EXPTIME": 1.0}, "is outside the years 1901-2100"),
        ({"DATE-OBS": "01/01/00", "TIME-OBS": "00:00:00", "EXPTIME": 1.0}, "is outside the years 1901-2100"),
        (
            {"DATE-OBS": "1970-01-01T00:00:00", "EXPTIME": 10.0},
            "observation time 1970-01-01T00:00:00 is the Unix epoch: the camera's clock was not set",
        ),
        ({"DATE-OBS": "2101-01-01T00:00:00", "EXPTIME": 1.0}, "is outside the years 1901-2100"),
        ({"MJD-OBS": 1e308, "EXPTIME": 1.0}, "header MJD-OBS = 1e+308 is outside the years 1901-2100"),
        ({"MJD-OBS": -1e308, "EXPTIME": 1.0}, "is outside the years 1901-2100"),
        ({"JD": 10.0, "EXPTIME": 1.0}, "header JD = 10.0 is outside the years 1901-2100"),
        ({"MJD-OBS": 88068.9999, "EXPTIME": 86400.0}, "observation time MJD 88069.49990 is outside the years"),
        ({"DATE-OBS": "2020-01-01T12:00:00", "EXPTIME": "inf"}, "EXPTIME = 'inf' (exposure time) is not finite"),
        ({"DATE-OBS": "2020-01-01T12:00:00", "EXPTIME": "1e400"}, "EXPTIME = '1e400' (exposure time) is not finite"),
        ({"DATE-OBS": "2020-01-01T12:00:00", "EXPTIME": "-0"}, "EXPTIME = '-0': the exposure time must be > 0"),
        (
            {"DATE-OBS": "2020-01-01T12:00:00", "TIMESYS": "LOCAL", "EXPTIME": 1.0},
            "TIMESYS = 'LOCAL' is not a time scale",
        ),
        ({"MJD-OBS": True, "EXPTIME": 1.0}, "MJD-OBS = True (observation time) is not a number"),
        (
            {"DATE-OBS": "2099-06-01T00:00:00", "TIMESYS": "UT1", "EXPTIME": 1.0},  # no IERS table so far ahead
            "header DATE-OBS = '2099-06-01T00:00:00' cannot be converted from UT1 to UTC: interpolating from IERS_Auto",
        ),
    ],
)
def test_times_that_cannot_be_trusted_are_rejected(cards, message):
    with pytest.raises(FrameRejected) as exc:
        frame_record(fits.Header(cards), load_profile("generic"))
    assert message in exc.value.reason


def test_named_keywords_that_do_not_match_are_rejected(tmp_path):
    p = _profile(tmp_path, '[header]\ntime_keys = ["DATE", "TIME"]\ntime_format = "%Y/%m/%d %H:%M:%S"')
    with pytest.raises(FrameRejected, match=r"header lacks \['TIME'\] of \[header\] time_keys"):
        frame_record(fits.Header({"DATE": "2015/12/20", "EXPTIME": 1.0}), p)
    with pytest.raises(FrameRejected, match="does not match"):
        frame_record(fits.Header({"DATE": "2015-12-20", "TIME": "04:07:10", "EXPTIME": 1.0}), p)


@pytest.mark.parametrize("date", ["1901-01-01T00:00:10", "1970-01-01T00:00:01", "1969-12-31T23:59:00"])
def test_times_near_the_unset_clock_values_are_kept(date):
    rec = frame_record(fits.Header({"DATE-OBS": date, "EXPTIME": 1.0}), load_profile("generic"))
    assert rec["date_obs"].startswith(date[:16])
