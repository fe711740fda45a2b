"""Profiles are validated completely when loaded: each hostile value is named with what is allowed, all
problems are listed at once, and the command line exits 2 without writing anything."""

from __future__ import annotations

import pytest
from conftest import run_cli

from skylake.profile import ProfileError, load_profile

# (section, key, TOML value, fragment of the message)
HOSTILE = [
    ("site", "night_starts", '"25:99"', "site.night_starts = '25:99' must be a local time \"HH:MM\""),
    ("site", "timezone", '"Mars/Olympus_Mons"', "site.timezone = 'Mars/Olympus_Mons' must be an IANA time zone name"),
    ("site", "lat_deg", "95.0", "site.lat_deg = 95.0 must be a number >= -90 and <= 90"),
    ("site", "name", '""', "site.name = '' must be a non-empty string"),
    ("header", "exptime", "5", "header.exptime = 5 must be a list of header keywords"),
    ("header", "filter", '["FILTER", 3]', "header.filter = ['FILTER', 3] must be a list of header keywords"),
    ("header", "time_format", '"%Y-%m-%d"', "it does not give the date and the hour and minute (a time of day)"),
    ("header", "time_keys", '["TIMEUTC"]', "header.time_format = '' must give the strptime format of header.time_keys"),
    ("header", "time_reference", '"begin"', "header.time_reference = 'begin' must be one of ['start', 'mid', 'end']"),
    ("header", "time_scale", '"martian"', "header.time_scale = 'martian' must be a time scale"),
    ("defaults", "gain", '"abc"', "defaults.gain = 'abc' must be a gain in e-/ADU > 0"),
    ("defaults", "saturation", "-1.0", "defaults.saturation = -1.0 must be a level in ADU > 0"),
    (
        "defaults",
        "saturation_source",
        '"both"',
        "defaults.saturation_source = 'both' must be one of ['header', 'profile']",
    ),
    ("defaults", "exptime", "-5.0", "defaults.exptime = -5.0 must be an exposure time in s (0 = none) >= 0"),
    ("detection", "back_size", "0", "detection.back_size = 0 must be an integer >= 1"),
    ("detection", "thresh", "nan", "detection.thresh = nan must be a number > 0"),
    ("detection", "minarea", "2.5", "detection.minarea = 2.5 must be an integer >= 1"),
    ("detection", "pixstack", "-1", "detection.pixstack = -1 must be an integer >= 1"),
    (
        "detection",
        "max_sub_object_limit",
        "10",
        "detection.max_sub_object_limit = 10 must be >= detection.sub_object_limit = 1024",
    ),
    ("detection", "clean", '"yes"', "detection.clean = 'yes' must be true or false"),
    ("detection", "filter_kernel", '"gauss"', "detection.filter_kernel = 'gauss' must be one of ['default', 'none']"),
    ("detection", "deblend_cont", "2.0", "detection.deblend_cont = 2.0 must be a number >= 0 and <= 1"),
    (
        "photometry",
        "aperture_radii",
        "[-1.0, 2.0, 3.0]",
        "photometry.aperture_radii = [-1.0, 2.0, 3.0] must be exactly 3 radii",
    ),
    (
        "photometry",
        "annulus",
        "[15.0, 10.0]",
        "photometry.annulus = [15.0, 10.0] must be [inner, outer] px with 0 < inner < outer",
    ),
    ("photometry", "kron_factor", "0", "photometry.kron_factor = 0 must be a number > 0"),
    (
        "astrometry",
        "pixscale_range",
        "[10.0, 1.0]",
        "astrometry.pixscale_range = [10.0, 1.0] must be [low, high] arcsec/px",
    ),
    ("quality", "min_sources", "-3", "quality.min_sources = -3 must be an integer >= 0"),
    ("quality", "max_flux", '"big"', "quality.max_flux = 'big' must be a number"),
    ("profile", "name", "123", "profile.name = 123 must be a profile name"),
    ("profile", "max_image_mb", "0", "profile.max_image_mb = 0 must be a size in MB > 0"),
    ("profile", "hdu", "-1", 'profile.hdu = -1 must be "auto", "all", an HDU index >= 0 or an EXTNAME'),
    ("profile", "colour", '"red"', "[profile] has unknown settings ['colour']"),
    ("calibration", "min_stars", "1", "calibration.min_stars = 1 must be an integer >= 2"),
    ("maps", "nside", "6", "maps.nside = 6 must be a power of two"),
    ("dia", "min_frames", "2", "[dia] dia.min_frames = 2: a reference needs at least 3 frames"),
]


def _write(tmp_path, entries, name="hostile.toml"):
    sections: dict[str, list[str]] = {}
    for section, key, value, _ in entries:
        sections.setdefault(section, []).append(f"{key} = {value}")
    text = 'extends = "generic"\n' + "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("section, key, value, message", HOSTILE, ids=[f"{s}.{k}" for s, k, _, _ in HOSTILE])
def test_each_hostile_value_is_named(tmp_path, section, key, value, message):
    path = _write(tmp_path, [(section, key, value, message)])
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert message in str(exc.value) and str(path) in str(exc.value)
    assert len(exc.value.problems) == 1, exc.value.problems


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("enabled", "1", "dia.enabled = 1 must be true or false"),
        ("max_frames", "4", "dia.max_frames = 4 is below dia.min_frames = 5"),
        ("min_frames", "5.5", "dia.min_frames = 5.5 must be a whole number of frames"),
        ("threshold", '"high"', "dia.threshold = 'high' must be a number of sigma"),
        ("threshold", "1.0", "dia.threshold = 1.0: must be within 3-100 sigma"),
        ("kernel", "3", "unknown dia setting(s) ['kernel']; known: ['enabled', 'min_frames', 'max_frames', 'thr"),
    ],
)
def test_each_hostile_dia_setting_is_named(tmp_path, key, value, message):
    path = _write(tmp_path, [("dia", key, value, message)])
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert message in str(exc.value) and len(exc.value.problems) == 1


def test_every_problem_is_listed_at_once(tmp_path):
    path = _write(tmp_path, HOSTILE)
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert len(exc.value.problems) == len(HOSTILE)
    assert f"{len(HOSTILE)} problems:" in str(exc.value)
    for *_, message in HOSTILE:
        assert message in str(exc.value)


@pytest.mark.parametrize(
    "extends, message",
    [
        ('"../../etc/passwd"', "is neither a built-in profile name"),
        ('"../pipelines/generic"', "is neither a built-in profile name"),
        ('"nope"', "unknown profile 'nope'"),
        ("3", "extends = 3 must name a profile"),
        ('"missing.toml"', "does not exist"),
    ],
)
def test_extends_is_confined_to_profile_names_and_given_files(tmp_path, extends, message):
    path = tmp_path / "p.toml"
    path.write_text(f"extends = {extends}\n")
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_extends_a_users_file_relative_to_the_extending_file(tmp_path, monkeypatch):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "base.toml").write_text('extends = "skycamz"\n[detection]\nthresh = 4.0\n')
    (tmp_path / "site" / "cam.toml").write_text('extends = "base.toml"\n[profile]\nname = "cam"\n')
    monkeypatch.chdir(tmp_path)  # not the directory of the files
    p = load_profile(tmp_path / "site" / "cam.toml")
    assert p.name == "cam" and p.detection.thresh == 4.0 and p.quality.min_sources == 200


def test_a_single_keyword_string_is_a_one_keyword_list(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        'extends = "generic"\n[header]\nexptime = "EXPOSURE"\ntime_keys = "TIMEUTC"\n'
        'time_format = "%Y-%m-%d %H:%M:%S"\n'
    )
    p = load_profile(path)
    assert p.header.exptime == ["EXPOSURE"] and p.header.time_keys == ["TIMEUTC"]


def test_builtin_names_cannot_leave_pipelines(tmp_path):
    for name in ("../pipelines/generic", "/etc/passwd", "generic/../generic", ""):
        with pytest.raises(ProfileError, match="unknown profile"):
            load_profile(name)


def test_cli_exits_2_and_writes_nothing(tmp_path):
    bad = _write(tmp_path, HOSTILE)
    frames = tmp_path / "frames"
    frames.mkdir()
    lake = tmp_path / "lake"
    out = run_cli("ingest", str(lake), str(frames), "--pipeline", str(bad), "--create", "--scheduler", "synchronous")
    assert out.returncode == 2, out.stderr
    assert f"{len(HOSTILE)} problems:" in out.stderr and "Traceback" not in out.stderr
    for *_, message in HOSTILE:
        assert message in out.stderr
    assert not lake.exists()
    escape = tmp_path / "escape.toml"
    escape.write_text('extends = "../../../etc/hosts"\n')
    out = run_cli("ingest", str(lake), str(frames), "--pipeline", str(escape), "--create", "--scheduler", "synchronous")
    assert out.returncode == 2 and "is neither a built-in profile name" in out.stderr and not lake.exists()
