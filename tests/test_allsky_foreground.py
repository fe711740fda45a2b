"""An all-sky camera's foreground mask learned from its frames (issue 43), on copies of the REAL clear IceAct frame.

The night: the shared clear IceAct frame turned with the sky (:func:`skylake.synthetic.foreground.later_sky`: at
the South Pole the sky turns in azimuth alone) to 8 times 1.5 h apart, with a SYNTHETIC dark dome painted at the
same pixels on each (a camera's foreground does not turn with the sky; the frame's own mast and rim do, in such
copies). Ingested, then ``skylake camera mask`` learns the mask from them: it must cover the dome (>= 95 % of its
pixels) and leave open sky alone (<= 5 % of the pixels above 10 degrees outside the dome masked), and a frame
ingested afterwards with the dome in view has the cloud fraction of the same sky without the dome."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.time import Time
from conftest import SHARED_DATA, require_shared

from skylake.allsky.camera import camera_of
from skylake.allsky.foreground import HORIZON, STRUCTURE, mask_from_fits
from skylake.allsky.pipeline import allsky_settings, dark_level, measure_stars
from skylake.cli import main
from skylake.lake import Lake, tables
from skylake.profile import load_profile
from skylake.synthetic.foreground import frame_noise, later_sky, paint_dark_body, polygon_mask
from skylake.tasks.allsky import bright_stars

ALLSKY = SHARED_DATA / "allsky"
#: A dark dome at the lower right, from the rim inwards (px).
DOME = [(420, 330), (500, 300), (560, 380), (520, 440), (430, 420)]
STEP_H = 1.5


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    clear = require_shared(ALLSKY / "iceact_20170503_starry.fits")
    hip = require_shared(ALLSKY / "hipparcos.fits.gz")
    tmp = tmp_path_factory.mktemp("allsky-foreground")
    profile = tmp / "iceact-file.toml"
    profile.write_text(f'extends = "iceact"\n[allsky]\ncatalog = "{hip}"\n')
    prof = load_profile(str(profile))
    model, site = camera_of(prof)
    with fits.open(clear) as hdul:
        header, data = hdul[0].header, np.asarray(hdul[0].data, float)
    start = Time(header["DATE-OBS"])
    mid = start + float(header["EXPOSURE"]) / 2 * u.s
    dome = polygon_mask(data.shape, DOME) & model.sky_mask(data.shape, 0.0)
    bias, noise = dark_level(data, model), frame_noise(data, model.sky_mask(data.shape, 10.0))

    def copy(k: int, with_dome: bool = True):
        sky = later_sky(data, model, site, mid, STEP_H * k)
        image = paint_dark_body(sky, dome, bias, 0.15, noise, seed=k) if with_dome else sky
        h = header.copy()
        h["DATE-OBS"] = (start + STEP_H * k * u.hour).isot
        path = tmp / f"copy{k}.fits"
        fits.PrimaryHDU(image.astype(np.float32), h).writeto(path)
        return str(path), sky, mid + STEP_H * k * u.hour

    paths = [copy(k)[0] for k in range(8)]
    lake = str(tmp / "lake")
    assert main(["init", lake]) == 0
    assert main(["ingest", lake, *paths, "--pipeline", str(profile), "--no-progress"]) == 0
    return {
        "lake": lake, "profile": profile, "prof": prof, "model": model, "site": site, "dome": dome, "copy": copy,
        "catalog": bright_stars(str(hip)),
    }  # fmt: skip


@pytest.mark.realdata
def test_the_learned_mask_covers_the_dome_and_leaves_the_sky(night, capsys, tmp_path):
    lake = night["lake"]
    assert main(["camera", "mask", lake, "--profile", "iceact"]) == 0
    said = capsys.readouterr().out
    assert "8 clear frames (0 left out as cloudy)" in said and "built" in said
    rows = tables.get(tables.CAMERA_MASKS).read(Lake.open(lake)).to_pandas()
    assert len(rows) == 1 and rows["n_frames"].iloc[0] == 8
    bits = mask_from_fits(Lake.open(lake).store.read_bytes(rows["path"].iloc[0])).bits
    model, dome = night["model"], night["dome"]
    mask = bits > 0
    open_sky = model.sky_mask(mask.shape, 10.0) & ~dome
    assert mask[dome].mean() >= 0.95  # the dome's pixels (measured: 1.00)
    assert mask[open_sky].mean() <= 0.05  # open sky wrongly masked (measured: 0.005)
    assert ((bits & STRUCTURE) > 0)[dome].mean() >= 0.95  # found as a structure, not only by its hidden stars
    assert (((bits & HORIZON) > 0) == ~model.sky_mask(mask.shape, 0.0)).all()
    # the report's camera page shows it over the latest frame
    from skylake.allsky.report import allsky_frames, allsky_section

    page, pngs = allsky_section(Lake.open(lake), allsky_frames(Lake.open(lake)), tmp_path, "iceact")
    assert f"Mask {rows['mask_id'].iloc[0]}, learned from 8 clear frames" in page
    assert (tmp_path / "img" / "iceact_allsky_mask.png") in pngs and (
        tmp_path / "img" / "iceact_allsky_mask.png"
    ).is_file()
    # built again from the same frames: found, not built twice
    assert main(["camera", "mask", lake, "--profile", "iceact"]) == 0
    assert "(exists)" in capsys.readouterr().out
    assert len(tables.get(tables.CAMERA_MASKS).read(Lake.open(lake))) == 1


@pytest.mark.realdata
def test_a_frame_ingested_after_the_mask_does_not_see_the_dome_as_cloud(night):
    lake = night["lake"]
    if not len(tables.get(tables.CAMERA_MASKS).read(Lake.open(lake))):
        assert main(["camera", "mask", lake, "--profile", "iceact"]) == 0
    path, sky, mid = night["copy"](8)
    s = allsky_settings(night["prof"])
    _, clear = measure_stars(sky, night["model"], night["site"], mid, night["catalog"], s)
    assert main(["ingest", lake, path, "--pipeline", str(night["profile"]), "--no-progress"]) == 0
    _, unmasked = measure_stars(
        fits.getdata(path).astype(float), night["model"], night["site"], mid, night["catalog"], s
    )
    frames = pd.read_parquet(f"{lake}/frames")
    after = frames[frames["path"].str.endswith("copy8.fits")].iloc[-1]
    assert "foreground mask" in after["extract_note"]
    # without the mask the dome's hidden stars count as cloud (measured: 0.066 for a clear 0.033); with it the frame
    # reads its sky's cloud fraction
    assert unmasked["cloud_fraction"] > clear["cloud_fraction"] + 0.02
    assert after["cloud_fraction"] <= clear["cloud_fraction"] + 0.01


# -- trails that are trails: a telescope's lit tube turning, a building's edge, three satellites --------------------
#: The tube's foot (px), its direction on the first copy and its turn per copy (deg), its size (px).
TUBE = ((150.0, 390.0), -40.0, 3.0, 170.0, 22.0)
#: A building at the right, from the rim inwards, its lit edge from (545, 135) to (560, 335).
BUILDING = [(640, 100), (545, 135), (560, 335), (640, 335)]
BUILDING_EDGE = (545.0, 135.0, 560.0, 335.0)
#: Satellite trails on three of the eight copies, at 12 sigma per pixel.
TRAILS = {1: (200.0, 120.0, 420.0, 200.0), 4: (300.0, 260.0, 450.0, 110.0), 6: (360.0, 280.0, 480.0, 400.0)}


def _foreground(image, sky, bias: float, noise: float, k: int, level: float = 0.3):
    """Copy k with the tube (turned k x 3 deg), the building (both ``level`` of the sky behind them) and, on
    copies 1, 4 and 6, a satellite trail."""
    from skylake.synthetic.foreground import paint_line, tube

    (foot, angle, turn, length, width) = TUBE
    corners, edge = tube(foot, angle + turn * k, length, width)
    body = (polygon_mask(image.shape, corners) | polygon_mask(image.shape, BUILDING)) & sky
    out = paint_dark_body(image, body, bias, level, noise, seed=k)
    out = paint_line(out, *edge, peak=12 * noise, sigma_px=2.0)  # near the lens: a little defocused
    out = paint_line(out, *BUILDING_EDGE, peak=12 * noise, sigma_px=2.0)
    return paint_line(out, *TRAILS[k], peak=12 * noise) if k in TRAILS else out


def _found_trails(streaks) -> list:
    return [tuple(round(float(r[c])) for c in ("x1", "y1", "x2", "y2")) for r in streaks]


def _on(truth, found, tol: float = 5.0) -> bool:
    """Both of a found trail's ends within ``tol`` px of the truth's (either way round)."""
    x1, y1, x2, y2 = truth
    a, b, c, d = found
    return (
        max(np.hypot(a - x1, b - y1), np.hypot(c - x2, d - y2)) <= tol
        or max(np.hypot(a - x2, b - y2), np.hypot(c - x1, d - y1)) <= tol
    )


@pytest.mark.realdata
@pytest.mark.parametrize("level", [0.3, 0.9])
def test_only_the_satellites_are_trails_on_the_real_sky_with_a_foreground(tmp_path, level):
    """8 copies of the real clear IceAct frame 1.5 h apart, ingested: exactly the 3 trails, on their truth.

    Structures at 30 % of the sky behind them are edges by their sides; at 90 % (their sides alike) the tube is
    one structure turned about its foot and the building one seen on every frame (the batch's artefacts)."""
    from skylake.frame.streaks import detect_streaks

    clear = require_shared(ALLSKY / "iceact_20170503_starry.fits")
    hip = require_shared(ALLSKY / "hipparcos.fits.gz")
    profile = tmp_path / "iceact-file.toml"
    profile.write_text(f'extends = "iceact"\n[allsky]\ncatalog = "{hip}"\n')
    model, site = camera_of(load_profile(str(profile)))
    with fits.open(clear) as hdul:
        header, data = hdul[0].header, np.asarray(hdul[0].data, float)
    start = Time(header["DATE-OBS"])
    mid = start + float(header["EXPOSURE"]) / 2 * u.s
    sky = model.sky_mask(data.shape, 0.0)
    bias, noise = dark_level(data, model), frame_noise(data, model.sky_mask(data.shape, 10.0))
    paths, without_rule = [], 0
    for k in range(8):
        image = _foreground(later_sky(data, model, site, mid, STEP_H * k), sky, bias, noise, k, level)
        away = ~model.sky_mask(data.shape, 10.0)
        without_rule += len(detect_streaks(image, away, mesh_px=16, pedestal=bias, max_side_contrast=1.0))
        h = header.copy()
        h["DATE-OBS"] = (start + STEP_H * k * u.hour).isot
        paths.append(tmp_path / f"copy{k}.fits")
        fits.PrimaryHDU(image.astype(np.float32), h).writeto(paths[-1])
    print("detections without the side rule:", without_rule)
    assert without_rule > 3  # the lit edges pass every other test of a trail (measured: 6 and 16)
    lake = str(tmp_path / "lake")
    assert main(["init", lake]) == 0
    assert main(["ingest", lake, *map(str, paths), "--pipeline", str(profile), "--no-progress"]) == 0
    frames = pd.read_parquet(f"{lake}/frames")
    frames["copy"] = frames["path"].str.extract(r"copy(\d)\.fits")[0].astype(int)
    frames = frames.sort_values("copy")
    assert frames["n_streaks"].tolist() == [int(k in TRAILS) for k in range(8)]
    streaks = pd.read_parquet(f"{lake}/streaks").merge(frames[["frame_id", "copy"]], on="frame_id")
    for row in streaks.itertuples():
        assert _on(TRAILS[row.copy], (row.x1, row.y1, row.x2, row.y2))
    if level != 0.3:
        return
    # with the camera's mask learned from the same night (the building, the tube's foot), ingested again: the same
    assert main(["camera", "mask", lake, "--profile", "iceact"]) == 0
    assert main(["ingest", lake, *map(str, paths), "--pipeline", str(profile), "--no-progress", "--redo"]) == 0
    frames = pd.read_parquet(f"{lake}/frames").sort_values("ingested_at").drop_duplicates("frame_id", keep="last")
    frames["copy"] = frames["path"].str.extract(r"copy(\d)\.fits")[0].astype(int)
    frames = frames.sort_values("copy")
    assert frames["extract_note"].str.contains("foreground mask").all()
    assert frames["n_streaks"].tolist() == [int(k in TRAILS) for k in range(8)]


def test_only_the_satellites_are_trails_on_a_synthetic_night_with_the_same_foreground():
    """The same foreground on a SYNTHETIC all-sky night (its own stars, sky and camera): the 3 trails alone."""
    from astropy.table import Table

    from skylake.allsky.pipeline import AllSkySettings, process_frame
    from skylake.synthetic.allsky import make_allsky_frame
    from skylake.synthetic.allsky_night import MODEL, SHAPE, SITE, START, synthetic_bright_stars

    catalog = Table.from_pandas(synthetic_bright_stars())
    settings = AllSkySettings(bias_adu="corners")
    sky = MODEL.sky_mask(SHAPE, 0.0)
    found = []
    for k in range(8):
        time = Time(START) + STEP_H * k * u.hour
        frame = make_allsky_frame(MODEL, SITE, time, catalog, SHAPE, bias=1000.0, read_noise=20.0, seed=k)
        noise = frame_noise(frame.image, MODEL.sky_mask(SHAPE, 10.0))
        image = _foreground(frame.image, sky, 1000.0, noise, k)
        res = process_frame(image, time, 60.0, MODEL, SITE, catalog, settings)
        found.append(_found_trails(res.streaks))
    assert [len(f) for f in found] == [int(k in TRAILS) for k in range(8)]
    for k, trails in enumerate(found):
        for t in trails:
            assert _on(TRAILS[k], t)


def test_the_mask_of_a_synthetic_night_covers_its_dome():
    """A SYNTHETIC night (its own stars, sky gradient and camera) with the same dark dome: the same coverage."""
    from astropy.table import Table

    from skylake.allsky.foreground import learn_mask
    from skylake.allsky.pipeline import AllSkySettings
    from skylake.synthetic.allsky import make_allsky_frame
    from skylake.synthetic.allsky_night import MODEL, SHAPE, SITE, START, synthetic_bright_stars

    catalog = Table.from_pandas(synthetic_bright_stars())
    settings = AllSkySettings(bias_adu="corners")
    dome = polygon_mask(SHAPE, DOME) & MODEL.sky_mask(SHAPE, 0.0)
    frames = []
    for k in range(8):
        time = Time(START) + STEP_H * k * u.hour
        frame = make_allsky_frame(MODEL, SITE, time, catalog, SHAPE, bias=1000.0, read_noise=20.0, seed=k)
        noise = frame_noise(frame.image, MODEL.sky_mask(SHAPE, 10.0))
        frames.append((paint_dark_body(frame.image, dome, 1000.0, 0.15, noise, seed=k), time))
    fm = learn_mask(frames, MODEL, SITE, catalog, settings)
    open_sky = MODEL.sky_mask(SHAPE, 10.0) & ~dome
    assert fm.n_frames == 8
    assert fm.mask[dome].mean() >= 0.95
    assert fm.mask[open_sky].mean() <= 0.05


@pytest.mark.realdata
def test_camera_mask_says_why_it_cannot_learn(tmp_path, capsys):
    """The two REAL IceAct frames (one clear, one 75 % cloud): too few clear frames, said; an unknown profile too."""
    clear = require_shared(ALLSKY / "iceact_20170503_starry.fits")
    cloudy = require_shared(ALLSKY / "iceact_20170611_cloudy.fits")
    hip = require_shared(ALLSKY / "hipparcos.fits.gz")
    profile = tmp_path / "iceact-file.toml"
    profile.write_text(f'extends = "iceact"\n[allsky]\ncatalog = "{hip}"\n')
    lake = str(tmp_path / "lake")
    assert main(["init", lake]) == 0
    assert main(["ingest", lake, str(clear), str(cloudy), "--pipeline", str(profile), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["camera", "mask", lake, "--profile", "iceact"]) == 2
    err = capsys.readouterr().err
    assert "1 clear frames (cloud fraction <= allsky.mask_max_cloud = 0.5) of 2; allsky.mask_min_frames = 3" in err
    assert main(["camera", "mask", lake, "--profile", "nosuch"]) == 2
    assert "no frame of profile 'nosuch'" in capsys.readouterr().err
    assert not len(tables.get(tables.CAMERA_MASKS).read(Lake.open(lake)))


@pytest.mark.parametrize("shape", [(480, 640), (488, 640), (480, 648), (1080, 1440)])
def test_sky_ratio_of_any_frame_size_is_one_on_a_smooth_sky(shape):
    """A SYNTHETIC sky that is the model's vignetting times a gradient: the ratio is 1 on every frame size."""
    from skylake.allsky.camera import CameraModel
    from skylake.allsky.foreground import sky_ratio

    ny, nx = shape
    model = CameraModel("equidistant", 1.45, 0.0075 * 640 / nx, x0=nx / 2, y0=ny / 2, rotation_deg=0.0)
    y, x = np.mgrid[0:ny, 0:nx]
    r = np.hypot(x - nx / 2, y - ny / 2) / model.horizon_radius_px
    sky = 1000.0 * (1 + 0.5 * r**2) * (1 + 0.1 * (x - nx / 2) / nx) + 100.0
    ratio = sky_ratio(sky, model, bias=100.0, alt_min_deg=5.0)
    inside = np.isfinite(ratio)
    assert inside.sum() > 0.4 * ny * nx
    assert np.abs(ratio[inside] - 1).max() < 0.02
