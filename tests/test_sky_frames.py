"""Sky frames (PRIME's method) on a SYNTHETIC raw night whose dithered light frames carry a fringe pattern fixed on
the detector (skylake.synthetic.raw): the sky frame is built from the night's science frames with their sources
masked, and subtracting it at ingest leaves the injected flat sky and stars."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy.io import fits
from scipy.ndimage import binary_dilation
from scipy.spatial import cKDTree

from skylake.cli import main
from skylake.frame import header, reading
from skylake.lake import Lake
from skylake.pipeline import ingest
from skylake.profile import load_profile
from skylake.reduce.apply import reduce_frame
from skylake.reduce.settings import ReductionSettings
from skylake.reduce.store import read_table
from skylake.runtime import dask_client
from skylake.synthetic.raw import GAIN, READ_NOISE, write_raw_night

FRINGE = 0.06  # rms of the pattern relative to the sky: 18 ADU on a 300 ADU sky, above the 15 ADU pixel noise
PROFILE = """extends = "rawdemo"

[profile]
name = "rawsky"
description = "the synthetic raw camera with fringes: a sky frame per night"

[reduction]
steps = ["bias", "dark", "flat", "sky", "badpix", "cosmics"]
max_age_days = 10.0
"""


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """Masters from the calibration frames, a sky frame from the 7 dithered lights (both with the CLI), the
    lights ingested with it."""
    root = tmp_path_factory.mktemp("sky")
    truth = write_raw_night(root / "night", night="2026-03-06", seed=6, n_light=7, dither_px=25, fringe=FRINGE)
    profile = root / "rawsky.toml"
    profile.write_text(PROFILE)
    lake_dir = root / "lake"
    assert main(["init", str(lake_dir)]) == 0
    calib = [str(p) for k in ("bias", "dark", "flat") for p in truth.paths[k]]
    assert main(["masters", "build", str(lake_dir), *calib, "--pipeline", str(profile)]) == 0
    lights = [str(p) for p in truth.paths["light"]]
    assert main(["masters", "build", str(lake_dir), *lights, "--kind", "sky", "--pipeline", str(profile)]) == 0
    lake = Lake.open(lake_dir)
    with dask_client("synchronous") as client:
        report = ingest(lake, lights, str(profile), client=client, progress=False)
    assert not report.rejected
    return root, truth, lake, load_profile(str(profile))


def _reduced(lake, truth, k: int, profile):
    path = truth.paths["light"][k]
    image = reading.read_images(path.read_bytes(), profile.hdu, 10**9)[0]
    rec = header.frame_record(image.header, profile)
    done = reduce_frame(image, rec, profile, lake.store.location)
    return image.data, done, rec


def _sky_pixels(truth, k: int, data, done) -> np.ndarray:
    """Pixels of frame ``k`` away from stars, cosmic rays and bad pixels."""
    star = truth.expected_light(k) - truth.sky > 1.0  # more than 1 ADU of starlight
    hit = binary_dilation(truth.cosmics[k] | done.cosmics, iterations=2)
    return np.isfinite(data) & ~binary_dilation(star, iterations=2) & ~hit


def test_the_sky_frame_is_the_injected_pattern_without_the_stars(night):
    _, truth, lake, _ = night
    rows = read_table(lake).to_pandas().set_index("kind")
    sky = rows.loc["sky"]
    assert sky["n_frames"] == 7 and sky["filter"] == "V" and sky["night"] == "2026-03-06"
    assert sky["level"] == pytest.approx(truth.sky, rel=0.01)  # the frames' sky level [ADU], for the record
    assert set(sky["built_from"].split(",")) == {rows.loc[k, "master_id"] for k in ("bias", "dark", "flat")} | {
        rows.loc[k, "master_id"] for k in ("hotpix", "deadpix")
    }
    image = fits.getdata(lake.path(sky["path"]))  # plain FITS in the lake
    pattern = truth.sky_pattern / np.median(truth.sky_pattern)
    # 7 frames of ~15 ADU noise on 300 ADU: ~2.3 % per pixel after the median (x1.25 of a mean)
    per_pixel = READ_NOISE / truth.sky + np.sqrt(1.0 / (truth.sky * GAIN))
    residual = image - pattern
    assert float(np.std(residual)) < 1.4 * per_pixel * np.sqrt(np.pi / 2 / 7)
    assert np.corrcoef(image.ravel(), pattern.ravel())[0, 1] > 0.9  # the pattern (6 %) is in it, over the noise
    bright = truth.stars[truth.stars["flux"] > 5e4]
    for k in range(7):  # no star of any frame left a trace
        on = truth.stars_on(k).loc[bright.index]
        yx = np.round(on[["y", "x"]].to_numpy()).astype(int)
        assert np.abs(residual[yx[:, 0], yx[:, 1]]).max() < 6 * per_pixel


def test_subtracting_it_leaves_the_flat_sky_at_its_level(night):
    _, truth, lake, profile = night
    steps = [s for s in profile.reduction["steps"] if s != "sky"]
    plain = dataclasses.replace(profile, reduction={**profile.reduction, "steps": steps})  # no sky step
    for k in (0, 3):
        data, done, rec = _reduced(lake, truth, k, profile)
        expected = truth.expected_light(k)
        good = _sky_pixels(truth, k, data, done)
        noise = np.sqrt((truth.flat * expected + truth.dark_rate * truth.light_exptime) / GAIN + READ_NOISE**2)
        noise /= truth.flat
        z = ((data - expected) / noise)[good]
        assert abs(float(np.median(data[good])) - truth.sky) < 1.0  # the level is kept (sky brightness)
        assert float(z.std()) < 1.02  # the pattern is gone: pixel noise and the masters' only (0.96 measured)
        assert rec["sky_id"].startswith("sky-") and rec["reduction"] == "bias dark flat sky badpix cosmics"
        without, done_plain, _ = _reduced(lake, truth, k, plain)
        z_plain = ((without - expected) / noise)[good]
        assert float(z_plain.std()) > 1.4  # the 18 ADU pattern on 15 ADU of noise (1.56 measured)


def test_fluxes_after_sky_subtraction_are_unbiased(night):
    _, truth, lake, _ = night
    frames = lake.read_frames(columns=["frame_id", "path", "sky_id"]).to_pandas()
    assert frames["sky_id"].str.startswith("sky-").all() and len(frames) == 7
    src = lake.read_sources(columns=["frame_id", "x", "y", "flux_ap3", "flags"]).to_pandas()
    ratios = []
    for k, path in enumerate(truth.paths["light"]):
        fid = int(frames[frames["path"].str.endswith(path.name)]["frame_id"].iloc[0])
        mine = src[src["frame_id"] == fid]
        stars = truth.stars_on(k)
        dist, star = cKDTree(stars[["x", "y"]].to_numpy()).query(mine[["x", "y"]].to_numpy())
        true_flux = stars["flux"].to_numpy()[star]
        use = (dist < 0.5) & (true_flux > 2e4) & (mine["flags"].to_numpy() == 0)
        ratios.append(mine["flux_ap3"].to_numpy()[use] / true_flux[use])
    ratio = np.concatenate(ratios)
    assert len(ratio) >= 300
    assert abs(float(np.median(ratio)) - 1.0) < 0.005


def test_a_sky_frame_needs_enough_science_frames(night, tmp_path, capsys):
    root, truth, _, _ = night
    lake_dir = root / "lake"
    few = [str(p) for p in truth.paths["light"][:3]]
    sky_profile = str(root / "rawsky.toml")
    assert main(["masters", "build", str(lake_dir), *few, "--kind", "sky", "--pipeline", sky_profile]) == 2
    assert "a sky frame needs at least reduction.sky_min_frames = 5 dithered frames, got 3" in capsys.readouterr().err
    calib = [str(truth.paths["bias"][0])]
    assert main(["masters", "build", str(lake_dir), *calib, "--kind", "sky", "--pipeline", sky_profile]) == 2
    assert "a calibration frame; a sky frame is made of science frames" in capsys.readouterr().err
    assert main(["masters", "build", str(lake_dir), *few, "--kind", "sky", "--pipeline", "rawdemo"]) == 2
    assert "profile rawdemo does not subtract a sky frame" in capsys.readouterr().err  # it would never be used
    with pytest.raises(ValueError, match=r"reduction.sky_box = 2 must be a whole number in \[4, 4096\]"):
        ReductionSettings(steps=["sky"], sky_box=2)


def test_frames_ingested_before_their_sky_frame_are_re_reduced_by_redo(night, tmp_path):
    root, truth, _, profile = night
    flagging = tmp_path / "rawsky-flag.toml"  # frames without a sky frame yet: ingested, the step skipped
    flagging.write_text(PROFILE.replace('name = "rawsky"', 'name = "rawskyflag"') + 'missing = "flag"\n')
    lake_dir = tmp_path / "lake"
    assert main(["init", str(lake_dir)]) == 0
    calib = [str(p) for k in ("bias", "dark", "flat") for p in truth.paths[k]]
    assert main(["masters", "build", str(lake_dir), *calib, "--pipeline", str(flagging)]) == 0
    lights = [str(p) for p in truth.paths["light"]]
    lake = Lake.open(lake_dir)
    with dask_client("synchronous") as client:
        assert not ingest(lake, lights, str(flagging), client=client, progress=False).rejected
    before = lake.read_frames(columns=["frame_id", "sky_id", "reduction"]).to_pandas()
    assert before["sky_id"].isna().all()
    said = (
        "; sky skipped: no usable sky master: no sky master of profile rawskyflag for instrument 'RAWCAM' in the "
        "lake (build it from the night's science frames: skylake masters build LAKE FRAMES --kind sky, then ingest "
        "them again with --redo)"
    )
    assert (before["reduction"] == "bias dark flat sky badpix cosmics" + said).all()
    n_sources = lake.read_sources(columns=["frame_id"]).num_rows
    assert main(["masters", "build", str(lake_dir), *lights, "--kind", "sky", "--pipeline", str(flagging)]) == 0
    with dask_client("synchronous") as client:
        report = ingest(Lake.open(lake_dir), lights, str(flagging), client=client, progress=False, redo=True)
    assert report.ingested == 7 and not report.rejected
    lake = Lake.open(lake_dir)
    after = lake.read_frames(columns=["frame_id", "path", "sky_id", "reduction"]).to_pandas()
    assert len(after) == 7 and sorted(after["path"]) == sorted(lights)  # replaced, not doubled
    assert after["sky_id"].str.startswith("sky-").all()
    assert (after["reduction"] == "bias dark flat sky badpix cosmics").all()
    sources = lake.read_sources(columns=["frame_id"]).to_pandas()
    assert set(sources["frame_id"]) == set(after["frame_id"])  # no source of the first reduction is left
    # the fringes made spurious detections (3817 sources measured); with the sky frame, at most the 7 x 300 stars
    assert len(sources) <= 7 * 300 < n_sources
