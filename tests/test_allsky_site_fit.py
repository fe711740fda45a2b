"""An all-sky camera from a profile that gives only its lens projection and its site (issue 22): `skylake camera
fit` searches the zenith over the whole image, both parities, any rotation and scale, then refines. The real
IceAct frame (published zenith row 250, column 326.5) and a SYNTHETIC mirrored equisolid camera; a profile whose
pixel size is 40 % wrong, or a header whose is, gets one line naming it; an overcast frame fails with a reason."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from conftest import SHARED_DATA, require_shared

from skylake.allsky.camera import CameraModel, Site, camera_of
from skylake.allsky.catalog import read_hipparcos
from skylake.allsky.fit import CameraFitError, fit_from_site
from skylake.cli import main as cli
from skylake.profile import ProfileError, load_profile
from skylake.synthetic.allsky import make_allsky_frame

ALLSKY = SHARED_DATA / "allsky"
ICEACT_ZENITH = (326.5, 250.0)  # column, row (0-based), published

SITE_ONLY = """extends = "generic"
[profile]
name = "{name}"
[site]
name = "South Pole (IceCube Lab)"
lat_deg = -89.99
lon_deg = -63.45
height_m = 2801.0
timezone = "Antarctica/South_Pole"
[camera]
projection = "equidistant"
{extra}
[allsky]
catalog = "{catalog}"
"""


def _profile(tmp_path, name, extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(SITE_ONLY.format(name=name, extra=extra, catalog=require_shared(ALLSKY / "hipparcos.fits.gz")))
    return path


def _fit(tmp_path, capsys, frame, profile, *more):
    out = tmp_path / f"{profile.stem}-fitted.toml"
    code = cli(
        [
            "camera",
            "fit",
            str(frame),
            "--pipeline",
            str(profile),
            "--out",
            str(out),
            "--plot",
            str(tmp_path / f"{profile.stem}.png"),
            *more,
        ]
    )
    text = capsys.readouterr()
    return code, text.out, text.err, out


@pytest.mark.realdata
def test_iceact_from_its_projection_and_site_alone(tmp_path, capsys):
    frame = require_shared(ALLSKY / "iceact_20170503_starry.fits")
    code, out, err, written = _fit(tmp_path, capsys, frame, _profile(tmp_path, "site-only"))
    assert code == 0, out + err
    assert "zenith, rotation and scale searched (the profile gives no focal_length_mm, pixel_size_mm, x0, y0)" in out
    camera = tomllib.loads(written.read_text())["camera"]
    model = CameraModel.from_dict(camera)
    assert np.hypot(model.x0 - ICEACT_ZENITH[0], model.y0 - ICEACT_ZENITH[1]) < 5.0
    assert model.fit_rms_px < 1.5 and model.fit_n_stars >= 100 and model.parity == 1
    assert abs(model.rotation_deg - -86.8) < 0.5  # pipelines/iceact.toml's fitted rotation
    assert set(model.fit_sigma) == {"x0", "y0", "rotation_deg", "focal_length_mm", "k1"}
    assert 0 < model.fit_sigma["x0"] < 0.5
    assert abs(model.f_px - 1.45 / 0.0075) / (1.45 / 0.0075) < 0.01  # the published optics, 193 px per radian
    assert not any(line.startswith("warning") for line in out.splitlines())
    # no focal length or pixel size anywhere: the millimetres printed are those of an assumed pixel, and said so
    assert "mm only if the pixels are 1.00 um: the stars give the ratio" in out, out
    # the profile it wrote places frames: it loads and gives the model
    fitted, _ = camera_of(load_profile(written))
    assert fitted.x0 == pytest.approx(model.x0)


@pytest.mark.realdata
def test_a_wrong_pixel_size_gets_one_line_and_the_same_fit(tmp_path, capsys):
    frame = require_shared(ALLSKY / "iceact_20170503_starry.fits")
    _, right, _, written = _fit(tmp_path, capsys, frame, _profile(tmp_path, "right"))
    wrong = _profile(tmp_path, "wrong", "focal_length_mm = 1.45\npixel_size_mm = 0.0105")  # 7.5 um: 40 % off
    code, out, err, written_wrong = _fit(tmp_path, capsys, frame, wrong)
    assert code == 0, out + err
    warnings = [line for line in out.splitlines() if line.startswith("warning")]
    assert warnings == [
        "warning: [camera] focal_length_mm = 1.45 and pixel_size_mm = 0.0105 give 138.1 px per "
        "radian, the stars 192.9 (0.72x): with that focal length the pixel size is 0.00752 mm"
    ]
    a = CameraModel.from_dict(tomllib.loads(written.read_text())["camera"])
    b = CameraModel.from_dict(tomllib.loads(written_wrong.read_text())["camera"])
    assert abs(a.x0 - b.x0) < 0.05 and abs(a.y0 - b.y0) < 0.05 and abs(a.f_px / b.f_px - 1) < 1e-3
    assert b.pixel_size_mm == 0.0105  # kept: only the focal length in pixels is seen


@pytest.mark.realdata
def test_a_header_pixel_size_that_contradicts_the_stars_is_named(tmp_path, capsys):
    frame = tmp_path / "iceact_keywords.fits"
    with fits.open(require_shared(ALLSKY / "iceact_20170503_starry.fits")) as hdul:
        hdul[0].header["PIXWIDTH"] = 10.5  # um; the camera's are 7.5
        hdul[0].header["FOCALLEN"] = 1.45
        hdul.writeto(frame)
    code, out, _, _ = _fit(tmp_path, capsys, frame, _profile(tmp_path, "keywords"))
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("warning")] == [
        "warning: header PIXWIDTH = 10.5 um and FOCALLEN = 1.45 mm give 138.1 px per radian, the stars 192.9 "
        "(0.72x): PIXWIDTH would be 7.52 um for that FOCALLEN"
    ]


@pytest.mark.realdata
def test_an_overcast_frame_fails_with_a_reason_and_writes_nothing(tmp_path, capsys):
    frame = require_shared(ALLSKY / "cta_lapalma_20151220_cloudy.fits.gz")
    profile = tmp_path / "cta.toml"
    profile.write_text(
        SITE_ONLY.format(name="cta", extra="", catalog=ALLSKY / "hipparcos.fits.gz")
        .replace('projection = "equidistant"', 'projection = "equisolid"')
        .replace("lat_deg = -89.99", "lat_deg = 28.76187")
        .replace("lon_deg = -63.45", "lon_deg = -17.890777")
        .replace('timezone = "Antarctica/South_Pole"', 'timezone = "Atlantic/Canary"')
        + '[header]\ntime_keys = ["TIMEUTC"]\ntime_format = "%Y-%m-%d %H:%M:%S"\n'
        "[defaults]\nexptime = 30.0\n"
    )
    code, out, err, written = _fit(tmp_path, capsys, frame, profile)
    assert code == 4 and not written.exists()
    assert err.startswith(f"camera fit failed on {frame}: ")


def test_a_mirrored_synthetic_camera_is_found_from_nothing():
    """SYNTHETIC: an equisolid, mirrored camera with its zenith off-centre, rotated by 131 deg: found to 0.5 px,
    0.1 deg and 0.5 % in scale from its projection alone."""
    catalog = read_hipparcos(require_shared(ALLSKY / "hipparcos.fits.gz"))
    catalog = catalog[catalog["v_mag"] < 5.0]
    truth = CameraModel("equisolid", 2.2, 0.0074, 371.3, 418.6, rotation_deg=131.0, parity=-1, k1=0.003)
    site, t = Site(28.76, -17.89, 2200), Time("2016-03-01T23:00:00", scale="utc")
    syn = make_allsky_frame(truth, site, t, catalog, (800, 800), seed=5)
    res = fit_from_site(syn.image, {"projection": "equisolid"}, site, t, catalog)
    m = res.model
    assert res.scanned and m.parity == -1
    assert np.hypot(m.x0 - truth.x0, m.y0 - truth.y0) < 0.5
    assert abs((m.rotation_deg - truth.rotation_deg + 180) % 360 - 180) < 0.1
    assert abs(m.f_px / truth.f_px - 1) < 0.005 and res.rms_px < 0.5


def test_noise_is_not_taken_for_a_camera():
    """A SYNTHETIC frame of noise only: the search finds nothing above chance and says so."""
    catalog = read_hipparcos(require_shared(ALLSKY / "hipparcos.fits.gz"))
    rng = np.random.default_rng(2)
    image = rng.normal(100.0, 5.0, (480, 640))
    for x, y in rng.uniform([0, 0], [640, 480], (150, 2)):  # spots that are no stars of this sky
        image[int(y), int(x)] += 400.0
        image[int(y), min(int(x) + 1, 639)] += 200.0
    with pytest.raises(CameraFitError, match="no zenith, rotation and scale found"):
        fit_from_site(
            image,
            {"projection": "equidistant"},
            Site(-89.99, -63.45, 2801.0),
            Time("2017-05-03T03:13:04", scale="utc"),
            catalog,
        )


def test_a_profile_with_only_the_projection_loads_but_cannot_ingest(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text(SITE_ONLY.format(name="p", extra="", catalog="hipparcos"))
    prof = load_profile(profile)
    with pytest.raises(
        ProfileError,
        match="gives no focal_length_mm, pixel_size_mm, x0, y0: fit the model on a "
        "clear frame first: skylake camera fit FRAME",
    ):
        camera_of(prof)
    bad = tmp_path / "bad.toml"
    bad.write_text(SITE_ONLY.format(name="b", extra="x0 = -5000.5\nk1 = 'big'", catalog="hipparcos"))
    with pytest.raises(ProfileError, match="k1 must be a number"):
        load_profile(bad)


@pytest.mark.realdata
def test_a_night_folder_is_fitted_from_its_clearest_frame_and_the_cloudy_one_says_so(tmp_path, capsys):
    """The two shared IceAct frames in one folder, from the projection and site alone: the clear frame gives the
    model (the same as fitted alone), the 75 %-cloud one cannot vote and says so with its cloud fraction."""
    night = tmp_path / "night"
    night.mkdir()
    for name in ("iceact_20170503_starry.fits", "iceact_20170611_cloudy.fits"):
        (night / name).symlink_to(require_shared(ALLSKY / name))
    profile = _profile(tmp_path, "site-only")
    code, out, err, written = _fit(tmp_path, capsys, night, profile)
    assert code == 0, out + err
    lines = out.splitlines()
    assert any(line.startswith(f"{night / 'iceact_20170503_starry.fits'}: the clearest (") for line in lines), out
    cloudy = [line for line in lines if line.startswith(str(night / "iceact_20170611_cloudy.fits"))]
    assert len(cloudy) == 1 and "too cloudy to vote (cloud fraction 0." in cloudy[0], out
    assert 0.5 < float(cloudy[0].split("cloud fraction ")[1].split()[0]) < 1.0
    both = CameraModel.from_dict(tomllib.loads(written.read_text())["camera"])
    _, _, _, alone_path = _fit(tmp_path / "alone", capsys, night / "iceact_20170503_starry.fits", profile)
    alone = CameraModel.from_dict(tomllib.loads(alone_path.read_text())["camera"])
    za, zb = alone.altaz_to_pixel(90.0, 0.0), both.altaz_to_pixel(90.0, 0.0)
    assert np.hypot(float(za[0]) - float(zb[0]), float(za[1]) - float(zb[1])) < 1.0


@pytest.mark.realdata
def test_a_saturated_moon_and_its_glare_do_not_move_the_searched_zenith():
    """A copy of the clear IceAct frame with a saturated disc of 30 px and its glare at 45 degrees altitude: the
    search from the projection and site alone still finds the zenith within 2 px of the frame's own."""
    path = require_shared(ALLSKY / "iceact_20170503_starry.fits")
    hip = read_hipparcos(require_shared(ALLSKY / "hipparcos.fits.gz"))
    site = Site(-89.99, -63.45, 2801.0)
    with fits.open(path) as hdul:
        data, header = np.asarray(hdul[0].data, float), hdul[0].header
    time = Time(header["DATE-OBS"], scale="utc")
    camera = {"projection": "equidistant"}
    clear = fit_from_site(data, camera, site, time, hip)
    mx, my = clear.model.altaz_to_pixel(45.0, 100.0)
    yy, xx = np.mgrid[: data.shape[0], : data.shape[1]]
    r = np.hypot(xx - float(mx), yy - float(my))
    moon = data + 20000.0 * np.exp(-np.clip(r - 15.0, 0, None) / 25.0)  # glare falling off over 25 px
    moon[r <= 15.0] = 65535.0  # the saturated disc
    found = fit_from_site(moon, camera, site, time, hip)
    z0, z1 = clear.model.altaz_to_pixel(90.0, 0.0), found.model.altaz_to_pixel(90.0, 0.0)
    assert np.hypot(float(z0[0]) - float(z1[0]), float(z0[1]) - float(z1[1])) < 2.0
