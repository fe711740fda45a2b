"""The pointing and plate scale of a frame without a WCS, in any header form, and the solve that follows:
hinted near that pointing, blind (astrometry.net) without one or when the hinted solve fails. The real
SkyCamZ frames are copied with their WCS removed and their pointing rewritten in each form
(skylake.synthetic.pointing_forms); every copy must solve within 1 px of the frame's own WCS."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from conftest import REPO, SHARED_DATA, require_shared, require_solve_field

from skylake.errors import FrameRejected
from skylake.frame.pointing import (
    fixed_pointing,
    header_pointing,
    optics_scale,
    parse_dec,
    parse_ra,
    radec_from_altaz,
    scale_hint,
)
from skylake.profile import PLATESOLVE_KEYS, ProfileError, load_profile

TYCHO = SHARED_DATA / "refcats" / "tycho2_vt.parquet"
SKYCAMZ_SCALE = 3.5666776736  # arcsec/px, the frames' CCDSCALE: 1 px
CFG = {**PLATESOLVE_KEYS}


# -- reading the pointing ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, unit, expected",
    [
        ("21 44 16", "auto", (21 + 44 / 60 + 16 / 3600) * 15),  # MaxIm DL / ACP / SGP / N.I.N.A. OBJCTRA
        ("21:44:16.2", "auto", (21 + 44 / 60 + 16.2 / 3600) * 15),
        ("21h44m16s", "auto", (21 + 44 / 60 + 16 / 3600) * 15),
        ("21h44m16s", "degrees", (21 + 44 / 60 + 16 / 3600) * 15),  # a unit written in the value wins
        ("256 10 03", "degrees", 256 + 10 / 60 + 3 / 3600),
        ("256d10m03s", "auto", 256 + 10 / 60 + 3 / 3600),
        (256.5, "auto", 256.5),
        ("256.5", "auto", 256.5),  # a numeric string is a number
        (" 0.0 ", "auto", 0.0),
        ("17.25", "hours", 258.75),
        (17, "hours", 255.0),
        (360.0, "auto", 0.0),
    ],
)
def test_ra_in_every_form(value, unit, expected):
    assert parse_ra(value, unit) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("+41 12 03", 41 + 12 / 60 + 3 / 3600),
        ("-05:23:10", -(5 + 23 / 60 + 10 / 3600)),
        ("-00 30 00", -0.5),  # the sign of a zero degrees field is kept
        ("+41d12m03s", 41 + 12 / 60 + 3 / 3600),
        ("-12.5", -12.5),
        (90, 90.0),
    ],
)
def test_dec_in_every_form(value, expected):
    assert parse_dec(value) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "value, unit, message",
    [
        ("150.5", "hours", '150.5 h is outside 0-24 h (ra_unit = "hours"; "degrees" reads it in degrees)'),
        (
            "25 00 00",
            "auto",
            "astropy cannot read it as an angle in hours (An invalid value for 'hours' was found ('25.0'))",
        ),
        ("-01:00:00", "auto", "-1 h is outside 0-24 h"),
        (-10, "auto", "-10 deg is outside 0-360 deg"),
        ("400", "auto", "400 deg is outside 0-360 deg"),
        ("N/A", "auto", "astropy cannot read it as an angle in hours (Invalid character at col 0 parsing angle 'N/A')"),
        (True, "auto", "it is a logical (T/F)"),
        (float("nan"), "auto", "it is not finite"),
    ],
)
def test_an_ra_that_cannot_be_one_is_refused(value, unit, message):
    with pytest.raises(ValueError) as info:
        parse_ra(value, unit)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "value, message",
    [
        ("+95 00 00", "95 deg is outside -90 to +90 deg"),
        ("12h30m00s", "it is in hours"),
        ("-90.5", "-90.5 deg is outside -90 to +90 deg"),
        ("north", "astropy cannot read it as an angle in degrees (Invalid character at col 0 parsing angle 'north')"),
    ],
)
def test_a_dec_that_cannot_be_one_is_refused(value, message):
    with pytest.raises(ValueError) as info:
        parse_dec(value)
    assert str(info.value) == message


def _header(**cards) -> fits.Header:
    h = fits.Header()
    for key, value in cards.items():
        h[key] = value
    return h


def test_header_pointing_pairs_keywords_and_names_a_bad_value():
    """The first (RA key, Dec key) pair the header has both of wins; a bad value is a rejection naming the
    keyword and the value, never a pointing somewhere else."""
    ra_keys, dec_keys, unit = CFG["ra_keys"], CFG["dec_keys"], CFG["ra_unit"]
    p = header_pointing(_header(OBJCTRA="21 44 16", OBJCTDEC="+41 12 03"), ra_keys, dec_keys, unit, 0.5)
    assert (p.ra, p.dec, p.radius_deg, p.source) == (
        pytest.approx(326.0666667),
        pytest.approx(41.2008333),
        0.5,
        "header OBJCTRA/OBJCTDEC",
    )
    # RA without its DEC (and a blank pair) is passed over for the next pair
    p = header_pointing(
        _header(RA="12:00:00", TELRA="", TELDEC="", RA_OBJ="10.0", DEC_OBJ="-5.0"), ra_keys, dec_keys, unit, 0.5
    )
    assert (p.ra, p.dec, p.source) == (10.0, -5.0, "header RA_OBJ/DEC_OBJ")
    # CRVAL of a partial WCS is degrees whatever ra_unit says; a Galactic one is not a pointing
    p = header_pointing(
        _header(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=256.2, CRVAL2=12.8), ra_keys, dec_keys, "hours", 0.5
    )
    assert (p.ra, p.dec, p.source) == (256.2, 12.8, "header CRVAL1/CRVAL2")
    assert (
        header_pointing(
            _header(CTYPE1="GLON-TAN", CTYPE2="GLAT-TAN", CRVAL1=256.2, CRVAL2=12.8), ra_keys, dec_keys, unit, 0.5
        )
        is None
    )
    assert header_pointing(_header(EXPTIME=10.0), ra_keys, dec_keys, unit, 0.5) is None
    with pytest.raises(FrameRejected) as info:
        header_pointing(_header(OBJCTRA="25 61 00", OBJCTDEC="+41 12 03"), ra_keys, dec_keys, unit, 0.5)
    assert info.value.reason == (
        "header OBJCTRA = '25 61 00' is not an RA: astropy cannot read it as an angle in "
        "hours (An invalid value for 'hours' was found ('25.0')) (platesolve.ra_keys, ra_unit)"
    )
    with pytest.raises(FrameRejected) as info:
        header_pointing(_header(RA="150.5", DEC="+41 12 03"), ra_keys, dec_keys, "hours", 0.5)
    assert info.value.reason == (
        "header RA = '150.5' is not an RA: 150.5 h is outside 0-24 h (ra_unit = \"hours\"; "
        '"degrees" reads it in degrees) (platesolve.ra_keys, ra_unit)'
    )
    with pytest.raises(FrameRejected) as info:
        header_pointing(_header(TELRA="21:44:16", TELDEC="-95:00:00"), ra_keys, dec_keys, unit, 0.5)
    assert info.value.reason == (
        "header TELDEC = '-95:00:00' is not a Dec: -95 deg is outside -90 to +90 deg (platesolve.dec_keys)"
    )


def test_fixed_altaz_pointing_is_placed_at_the_frame_time():
    """alt/az -> RA/Dec with the site and the frame's time inverts skylake.horizon.altaz (the frames'
    altitude/azimuth columns), and the RA moves with the time (15 deg per sidereal hour at the meridian)."""
    from skylake.horizon import altaz

    site = load_profile("skycamz").site
    mjd = 56453.99
    ra, dec = radec_from_altaz(66.59, 129.28, mjd, site)
    alt, az = altaz([ra], [dec], [mjd], site.lat_deg, site.lon_deg, site.height_m)
    assert (float(alt[0]), float(az[0])) == (pytest.approx(66.59, abs=1e-6), pytest.approx(129.28, abs=1e-6))
    ra1, _ = radec_from_altaz(90.0, 0.0, mjd, site)
    ra2, _ = radec_from_altaz(90.0, 0.0, mjd + 1 / 24, site)
    assert (ra2 - ra1) % 360 == pytest.approx(15.041, abs=0.01)
    cfg = {**CFG, "pointing_altaz": [66.59, 129.28], "pointing_radius_deg": 2.0}
    p = fixed_pointing(cfg, mjd, site)
    assert (p.ra, p.dec, p.radius_deg) == (pytest.approx(ra), pytest.approx(dec), 2.0)
    assert p.source == "profile pointing_altaz (66.59, 129.28) at MJD 56453.99000"
    with pytest.raises(FrameRejected, match="pointing_altaz needs the frame's time"):
        fixed_pointing(cfg, None, site)
    p = fixed_pointing({**CFG, "pointing_radec": [370.0 - 10.0, -30.0], "pointing_radius_deg": 1.0}, None, site)
    assert (p.ra, p.dec, p.source) == (0.0, -30.0, "profile pointing_radec")
    assert fixed_pointing(CFG, mjd, site) is None


def test_scale_from_the_header_or_the_optics():
    # 206.265 x 13.5 um / 780.7 mm = 3.5668"/px; XPIXSZ already binned (MaxIm DL, SBIG) or not
    assert optics_scale(780.7, 13.5, 2) == pytest.approx(3.566767, abs=1e-6)
    assert optics_scale(780.7, 6.75, 2, pixel_size_binned=False) == pytest.approx(3.566767, abs=1e-6)
    optics = _header(FOCALLEN=780.7, XPIXSZ=13.5, XBINNING=2)
    s = scale_hint(optics, CFG, None, 0.01, [3.2, 4.0])
    assert (s.value, s.low, s.high) == (
        pytest.approx(3.566767),
        pytest.approx(3.566767 * 0.99),
        pytest.approx(3.566767 * 1.01),
    )
    assert s.source == "header FOCALLEN = 780.7 mm, XPIXSZ = 13.5 um, XBINNING = 2 (pixel_size_binned = true)"
    # read as an unbinned size the same header gives 7.13"/px: outside the camera's range, set aside
    s = scale_hint(optics, {**CFG, "pixel_size_binned": False}, None, 0.01, [3.2, 4.0])
    assert (s.value, s.low, s.high) == (None, 3.2, 4.0)
    assert s.note == (
        "header FOCALLEN = 780.7 mm, XPIXSZ = 13.5 um, XBINNING = 2 (pixel_size_binned = false) gives "
        '7.134"/px, outside [astrometry] pixscale_range [3.2, 4]: set aside, the range searched'
    )
    # a scale keyword wins over the optics, the profile's scale over both; nothing: the range
    assert scale_hint(_header(PIXSCALE="3.5", FOCALLEN=780.7, XPIXSZ=13.5), CFG, None, 0.02, [3.2, 4.0]).value == 3.5
    assert scale_hint(_header(PIXSCALE=3.5), CFG, 3.6, 0.02, [3.2, 4.0]).source == "platesolve.scale_arcsec"
    assert scale_hint(_header(), CFG, None, 0.02, [3.2, 4.0]) == scale_hint(_header(), CFG, None, 0.5, [3.2, 4.0])
    for cards, message in (
        (dict(CCDSCALE="fast"), "header CCDSCALE = 'fast' (plate scale, arcsec/px) is not a number"),
        (dict(FOCALLEN=0.0, XPIXSZ=9.0), "header FOCALLEN = 0.0 (focal length, mm) must be > 0"),
        (dict(FOCALLEN=500.0, XPIXSZ=9.0, XBINNING=1.5), "header XBINNING = 1.5 (binning) is not a whole number"),
    ):
        with pytest.raises(FrameRejected) as info:
            scale_hint(_header(**cards), CFG, None, 0.02, [3.2, 4.0])
        assert info.value.reason == message


# -- the profile's settings ----------------------------------------------------------------------------
PLATESOLVE_HOSTILE = [
    ("ra_unit", '"radians"', "platesolve.ra_unit = 'radians' must be one of ['auto', 'hours', 'degrees']"),
    (
        "ra_keys",
        '["RA", "OBJCTRA"]',
        "platesolve.ra_keys = ['RA', 'OBJCTRA'] and platesolve.dec_keys = "
        "['DEC_CENT', 'DEC_DEG', 'DEC', 'OBJCTDEC', 'TELDEC', 'DEC_OBJ', 'CRVAL2'] must "
        "pair up (ra_keys[i] with dec_keys[i]): give as many of each",
    ),
    (
        "pointing_radec",
        "[400.0, 10.0]",
        "platesolve.pointing_radec = [400.0, 10.0] must be [] (none) or [ra, dec] in "
        "degrees (0 <= ra <= 360, -90 <= dec <= 90)",
    ),
    (
        "pointing_altaz",
        '"zenith"',
        "platesolve.pointing_altaz = 'zenith' must be [] (none) or [alt, az] in degrees "
        "(0 <= alt <= 90, azimuth 0-360 north through east)",
    ),
    ("pointing_radius_deg", "0", "platesolve.pointing_radius_deg = 0 must be a radius in deg > 0 and <= 90"),
    ("focal_length_keys", "[1]", "platesolve.focal_length_keys = [1] must be a list of header keywords"),
    ("pixel_size_binned", '"yes"', "platesolve.pixel_size_binned = 'yes' must be true or false"),
    ("blind", "1", "platesolve.blind = 1 must be true or false"),
    ("timeout_s", "-5", "platesolve.timeout_s = -5 must be a time limit in s > 0 and <= 3600"),
    ("radius", "2", "[platesolve] has unknown settings ['radius']; allowed: ["),
]


@pytest.mark.parametrize("key, value, message", PLATESOLVE_HOSTILE, ids=[k for k, _, _ in PLATESOLVE_HOSTILE])
def test_each_hostile_platesolve_value_is_named(tmp_path, key, value, message):
    path = tmp_path / "p.toml"
    path.write_text(f'extends = "skycamz"\n[platesolve]\nrefcat = "tycho2"\n{key} = {value}\n')
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith(message), info.value.problems


def test_fixed_pointing_settings_are_checked_together(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        'extends = "generic"\n[platesolve]\nrefcat = "tycho2"\npointing_radec = [10.0, 20.0]\n'
        "pointing_altaz = [60.0, 180.0]\n"
    )
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert info.value.problems == [
        "platesolve.pointing_radec = [10.0, 20.0] and platesolve.pointing_altaz = [60.0, 180.0]: give one fixed "
        "pointing, not both",
        "platesolve.pointing_altaz = [60.0, 180.0] needs the profile's [site] (name, lat_deg, lon_deg, height_m): "
        "alt/az is placed on the sky from where the camera is",
    ]
    path.write_text(
        'extends = "skycamz"\n[platesolve]\nrefcat = "tycho2"\nra_keys = "OBJCTRA"\n'
        'dec_keys = "OBJCTDEC"\npointing_altaz = [60, 180]\n'
    )
    ps = load_profile(path).platesolve
    assert (ps["ra_keys"], ps["dec_keys"], ps["pointing_altaz"], ps["blind"]) == (
        ["OBJCTRA"],
        ["OBJCTDEC"],
        [60, 180],
        True,
    )


def test_generic_profile_documents_every_platesolve_setting():
    from skylake.frame.platesolve import PlateSolveSettings

    text = (REPO / "pipelines" / "generic.toml").read_text()
    section = text[text.index("# [platesolve]") :]
    missing = [k for k in [*PLATESOLVE_KEYS, *PlateSolveSettings.__dataclass_fields__] if k not in section]
    assert missing == []


def test_the_readme_platesolve_profile_loads(tmp_path):
    """The README's [platesolve] example (a TOML block) is a valid profile."""
    text = "".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    blocks = re.findall(r"^```toml\n(.*?)^```", text, re.M | re.S)
    examples = [b for b in blocks if "[platesolve]" in b]
    assert examples
    for text in examples:
        path = tmp_path / "example.toml"
        path.write_text(text)
        profile = load_profile(path)
        assert profile.platesolve is not None


# -- solving the real frames in every form ---------------------------------------------------------------
def _profile(tmp_path, settings: dict, name="solve.toml"):
    from skylake.synthetic.pointing_forms import platesolve_toml

    path = tmp_path / name
    path.write_text(platesolve_toml(require_shared(TYCHO), settings))
    return path


@pytest.mark.realdata
def test_ingest_solves_copies_in_every_header_form(skycamz_files, tmp_path):
    """`skylake ingest` with one [platesolve] profile (defaults but the refcat): copies of the SkyCamZ frames,
    each with its WCS removed and the pointing in one form of the default keywords, all solve and record
    wcs_method; every source the lake stores lies within 1 px of where the frame's own WCS puts it. A copy
    with no pointing is solved blind; one whose RA is in hours (read as degrees: a wrong pointing) fails the
    hinted solve and is solved blind, which the frame's extract_note says; an RA that is no RA is rejected
    naming the keyword and value."""
    import pandas as pd

    from skylake.cli import main
    from skylake.synthetic.pointing_forms import FORMS, pointing_copy

    require_solve_field()
    frames = tmp_path / "frames"
    frames.mkdir()
    forms = [f for f in FORMS if not f.needs_settings]  # those a default profile reads
    assert len(forms) == 9
    expected, truth = {}, {}
    for k, form in enumerate(forms):
        f = skycamz_files[(3 * k) % 14]  # both pointings, several rotations
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.getheader(f)
            header_copy, _ = pointing_copy(header, form)
            name = f"{k:02d}_{f.stem}.fits"
            fits.PrimaryHDU(fits.getdata(f), header_copy).writeto(frames / name)
            expected[name], truth[name] = form.method, WCS(header)
    header = fits.getheader(skycamz_files[5])
    wrong, _ = pointing_copy(header, FORMS[6])  # RA = 17.0777 (hours) read as degrees
    fits.PrimaryHDU(fits.getdata(skycamz_files[5]), wrong).writeto(frames / "hours_as_degrees.fits")
    expected["hours_as_degrees.fits"], truth["hours_as_degrees.fits"] = "blind", WCS(header)
    bad, _ = pointing_copy(header, FORMS[2])
    bad["OBJCTRA"] = "25 00 00"
    fits.PrimaryHDU(fits.getdata(skycamz_files[5]), bad).writeto(frames / "bad_ra.fits")

    lake = str(tmp_path / "lake")
    assert main(["init", lake]) == 0
    assert (
        main(
            [
                "ingest",
                lake,
                str(frames),
                "--pipeline",
                str(_profile(tmp_path, {})),
                "--no-progress",
                "--scheduler",
                "synchronous",
            ]
        )
        == 3
    )
    rows = pd.read_parquet(f"{lake}/frames").set_index("path")
    row = rows.loc[str(frames / "bad_ra.fits")]
    assert (row["status"], row["reason"]) == (
        "rejected",
        "header OBJCTRA = '25 00 00' is not an RA: astropy cannot "
        "read it as an angle in hours (An invalid value for 'hours' was found "
        "('25.0')) (platesolve.ra_keys, ra_unit)",
    )
    sources = pd.read_parquet(f"{lake}/sources/dataset", columns=["frame_id", "x", "y", "ra", "dec"])
    for name, method in expected.items():
        row = rows.loc[str(frames / name)]
        assert (row["status"], row["wcs_method"]) == ("ok", method), (name, row["reason"])
        assert row["wcs_source"] == ("platesolve:astrometry.net" if method == "blind" else "platesolve:skylake")
        src = sources[sources["frame_id"] == row["frame_id"]]
        assert len(src) > 300
        ra, dec = truth[name].all_pix2world(src["x"], src["y"], 0)
        from skylake.frame.platesolve import _angsep

        off = _angsep(src["ra"].to_numpy(), src["dec"].to_numpy(), ra, dec) * 3600.0
        assert off.max() < SKYCAMZ_SCALE, (name, off.max())
    note = rows.loc[str(frames / "hours_as_degrees.fits"), "extract_note"]
    assert note.startswith(
        'hinted near header RA/DEC (17.0776, 12.7897) at 3.567"/px from header CCDSCALE failed (no consistent match'
    ), note
    assert note.endswith("; solved blind")


@pytest.mark.realdata
def test_profile_forms_solve(skycamz_files, tmp_path):
    """The forms that need a profile setting (RA unit, an unbinned pixel size, a fixed RA/Dec or alt/az
    pointing) each solve a frame of each pointing within 1 px of its own WCS, by the method they must."""
    from skylake.frame.platesolve import compare_wcs, solve_for_ingest
    from skylake.synthetic.pointing_forms import FORMS, pointing_copy

    require_solve_field()
    forms = [f for f in FORMS if f.needs_settings]
    assert [f.name for f in forms] == [
        "RA in hours as a number",
        "RA in sexagesimal degrees",
        "scale from FOCALLEN, XPIXSZ (unbinned), XBINNING",
        "fixed RA/Dec in the profile",
        "fixed alt/az in the profile",
    ]
    for f in (skycamz_files[4], skycamz_files[13]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.getheader(f)
            data = fits.getdata(f).astype(np.float32)
            for form in forms:
                copy, settings = pointing_copy(header, form)
                mjd = float(header["MJD"]) + 5.0 / 86400.0
                solved, rec, note = solve_for_ingest(data, copy, load_profile(_profile(tmp_path, settings)), None, mjd)
                assert (rec["wcs_method"], note) == (form.method, ""), form.name
                assert compare_wcs(WCS(solved), WCS(header), data.shape)["max"] < SKYCAMZ_SCALE, form.name


@pytest.mark.realdata
def test_unsolvable_frames_name_the_methods_tried(skycamz_files, tmp_path):
    """A frame nothing can solve is rejected naming each method tried and why; blind = false and no pointing
    says what is missing; astrometry.net's time limit is a wall-time limit."""
    from skylake.frame.platesolve import PlateSolveError, solve_astrometry_net, solve_for_ingest
    from skylake.synthetic.pointing_forms import FORMS, pointing_copy

    require_solve_field()
    header = fits.getheader(skycamz_files[0])
    rng = np.random.default_rng(1)
    fake = rng.normal(1000.0, 10.0, (1024, 1024)).astype(np.float32)  # 60 hot-pixel "stars": not a sky
    for x, y in rng.uniform(10, 1010, (60, 2)):
        fake[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] += 3000.0
    copy, _ = pointing_copy(header, FORMS[2])
    profile = load_profile(_profile(tmp_path, {}))
    with pytest.raises(FrameRejected) as info:
        solve_for_ingest(fake, copy, profile, None, 56454.0)
    reason = info.value.reason
    assert reason.startswith(
        "plate solving failed (hinted, blind): hinted near header OBJCTRA/OBJCTDEC "
        '(256.1667, 12.7883) at 3.567"/px from header CCDSCALE: '
    ), reason
    assert re.search(
        r"; blind: astrometry.net found no solution in [0-9.]+ s \(\d+ sources, scales "
        r"3.531-3.602\"/px\)$",
        reason,
    ), reason
    none, _ = pointing_copy(header, FORMS[-1])
    with pytest.raises(FrameRejected) as info:
        solve_for_ingest(fake, none, load_profile(_profile(tmp_path, {"blind": False})), None, 56454.0)
    assert info.value.reason.startswith("plate solving needs the pointing: none of [('RA_CENT', 'DEC_CENT'), ")
    assert info.value.reason.endswith("no platesolve.pointing_radec or pointing_altaz, and platesolve.blind = false")
    data = fits.getdata(skycamz_files[0]).astype(np.float32)
    import time

    t0 = time.perf_counter()
    with pytest.raises(PlateSolveError) as info:  # any scale: ~4 s of search, cut at 1 s
        solve_astrometry_net(data, scale_range_arcsec=(0.01, 3600.0), timeout_s=1.0)
    assert time.perf_counter() - t0 < 3.0
    assert info.value.reason.startswith("astrometry.net found no solution within the time limit of 1 s (")


@pytest.mark.slow
@pytest.mark.realdata
def test_all_frames_in_all_forms(skycamz_files, tmp_path):
    """All 14 SkyCamZ frames x every form (benchmarks/platesolve.py times the same copies)."""
    from skylake.frame.platesolve import compare_wcs, solve_for_ingest
    from skylake.synthetic.pointing_forms import FORMS, pointing_copy

    require_solve_field()
    profiles = {}
    for f in skycamz_files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.getheader(f)
            data = fits.getdata(f).astype(np.float32)
            for form in FORMS:
                copy, settings = pointing_copy(header, form)
                key = repr(sorted(settings.items()))
                if key not in profiles:
                    profiles[key] = load_profile(_profile(tmp_path, settings, f"p{len(profiles)}.toml"))
                solved, rec, note = solve_for_ingest(
                    data, copy, profiles[key], None, float(header["MJD"]) + 5.0 / 86400.0
                )
                assert (rec["wcs_method"], note) == (form.method, ""), (f.name, form.name)
                assert compare_wcs(WCS(solved), WCS(header), data.shape)["max"] < SKYCAMZ_SCALE, (f.name, form.name)
