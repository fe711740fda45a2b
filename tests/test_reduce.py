"""Raw frames reduced at ingest (skylake.reduce) on SYNTHETIC raw nights with known detector effects
(skylake.synthetic.raw): masters built from the night's calibration frames, science frames reduced with them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy.io import fits
from scipy.ndimage import binary_dilation
from scipy.spatial import cKDTree

from skylake.cli import main
from skylake.frame import header, reading
from skylake.frame.extract import COSMIC_RAY
from skylake.lake import Lake
from skylake.pipeline import ingest
from skylake.profile import ProfileError, load_profile
from skylake.reduce.apply import reduce_frame
from skylake.reduce.frame_types import frame_type
from skylake.reduce.settings import DEFAULT_FRAME_TYPES, ReductionSettings
from skylake.reduce.store import read_table
from skylake.runtime import dask_client
from skylake.synthetic.raw import GAIN, READ_NOISE, write_raw_night


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Night 1 (2026-03-01): calibration and light frames; masters built with the CLI; lights ingested."""
    root = tmp_path_factory.mktemp("raw")
    truth = write_raw_night(root / "night1", seed=1)
    lake_dir = root / "lake"
    assert main(["init", str(lake_dir)]) == 0
    calib = [str(p) for k in ("bias", "dark", "flat") for p in truth.paths[k]]
    assert main(["masters", "build", str(lake_dir), *calib, "--pipeline", "rawdemo"]) == 0
    lake = Lake.open(lake_dir)
    with dask_client("synchronous") as client:
        report = ingest(lake, [str(p) for p in truth.paths["light"]], "rawdemo", client=client, progress=False)
    assert not report.rejected
    return root, truth, lake


def _reduced(lake, truth, k: int, profile=None):
    profile = profile or load_profile("rawdemo")
    path = truth.paths["light"][k]
    image = reading.read_images(path.read_bytes(), profile.hdu, 10**9)[0]
    rec = header.frame_record(image.header, profile)
    done = reduce_frame(image, rec, profile, lake.store.location)
    return image.data, done, rec


def test_masters_table_holds_what_was_injected(raw):
    _, truth, lake = raw
    rows = read_table(lake).to_pandas().set_index("kind")
    assert sorted(rows.index) == ["bias", "dark", "deadpix", "flat", "hotpix"]
    assert rows.loc["bias", "n_frames"] == 9 and rows.loc["flat", "filter"] == "V"
    assert rows.loc["bias", "level"] == pytest.approx(1000.0, abs=1.0)  # the injected level (+ column structure)
    assert rows.loc["bias", "noise"] == pytest.approx(READ_NOISE, rel=0.03)  # read noise from two frames
    assert rows.loc["dark", "level"] == pytest.approx(0.05, abs=0.005)  # dark current [ADU/s]
    assert rows.loc["hotpix", "n_bad"] == len(truth.hot) and rows.loc["deadpix", "n_bad"] == len(truth.dead)
    assert (rows["night"] == "2026-03-01").all()
    assert rows.loc["hotpix", "built_from"] == rows.loc["dark", "master_id"]
    with fits.open(lake.path(rows.loc["flat", "path"])) as hdul:  # the image is plain FITS in the lake
        flat = hdul[0].data
        assert hdul[0].header["MASTERID"] == rows.loc["flat", "master_id"]
    good = (truth.flat > 0.5) & (truth.flat < 1.5)
    assert np.std(flat[good] - truth.flat[good]) < 0.004  # 7 flats of 20000-14000 ADU: ~0.3 % per pixel


def test_reduced_frame_is_the_injected_sky_and_stars_within_the_noise(raw):
    _, truth, lake = raw
    data, done, rec = _reduced(lake, truth, 1)
    expected = truth.expected_light()
    hit = binary_dilation(truth.cosmics[1] | done.cosmics, iterations=2)
    good = np.isfinite(data) & ~hit
    variance = (truth.flat * expected + truth.dark_rate * truth.light_exptime) / GAIN + READ_NOISE**2
    z = (data - expected)[good] / np.sqrt(variance[good] / truth.flat[good] ** 2)
    assert abs(float(np.mean(data[good] - expected[good]))) < 0.2  # ADU, against a 300 ADU sky
    assert abs(float(z.mean())) < 0.01 and 0.98 < float(z.std()) < 1.05  # the masters add ~1.5 % noise
    assert rec["bias_id"].startswith("bias-") and rec["flat_id"].startswith("flat-")
    assert rec["reduction"] == "bias dark flat badpix cosmics"  # every step, nothing skipped


def test_hot_and_dead_pixels_are_masked(raw):
    _, truth, lake = raw
    data, _, _ = _reduced(lake, truth, 0)
    bad = ~np.isfinite(data)
    assert np.mean(bad[truth.hot[:, 0], truth.hot[:, 1]]) >= 0.99
    assert np.mean(bad[truth.dead[:, 0], truth.dead[:, 1]]) >= 0.99
    assert bad.sum() <= 1.01 * (len(truth.hot) + len(truth.dead))  # and (almost) nothing else


def test_cosmic_rays_are_found_cleaned_and_flag_the_star_they_hit(raw):
    _, truth, lake = raw
    data, done, rec = _reduced(lake, truth, 0)
    found, injected = done.cosmics, truth.cosmics[0]
    assert (found & injected).sum() >= 0.95 * injected.sum()
    assert (found & ~binary_dilation(injected)).sum() <= 0.5 * injected.sum()  # few noise or star pixels
    assert rec["n_cosmic_pixels"] == int(found.sum())
    frames = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    fid = int(frames[frames["path"].str.endswith("light_00.fits")]["frame_id"].iloc[0])
    src = lake.read_sources(columns=["frame_id", "x", "y", "flags"]).to_pandas()
    src = src[src["frame_id"] == fid]
    frame_no, star = truth.star_hit
    dist, nearest = cKDTree(src[["x", "y"]].to_numpy()).query(truth.stars.loc[star, ["x", "y"]].to_numpy(float))
    assert dist < 0.5
    assert int(src["flags"].iloc[nearest]) & COSMIC_RAY


def test_recovered_fluxes_are_unbiased(raw):
    _, truth, lake = raw
    src = lake.read_sources(columns=["frame_id", "x", "y", "flux_ap3", "flags"]).to_pandas()
    dist, star = cKDTree(truth.stars[["x", "y"]].to_numpy()).query(src[["x", "y"]].to_numpy())
    true_flux = truth.stars["flux"].to_numpy()[star]
    use = (dist < 0.5) & (true_flux > 2e4) & (src["flags"].to_numpy() == 0)  # S/N > 100, clean
    assert use.sum() >= 200  # ~85 stars on each of 4 frames
    ratio = src["flux_ap3"].to_numpy()[use] / true_flux[use]
    assert abs(float(np.median(ratio)) - 1.0) < 0.005


def test_masters_of_another_night_are_used_and_flagged(raw, tmp_path):
    root, _, _ = raw
    lake = Lake.open(root / "lake")
    later = write_raw_night(tmp_path / "night4", night="2026-03-04", seed=4, n_light=1)
    with dask_client("synchronous") as client:
        report = ingest(lake, [str(later.paths["light"][0])], "rawdemo", client=client, progress=False)
    assert not report.rejected
    row = lake.read_frames().to_pandas().set_index("path").loc[str(later.paths["light"][0])]
    assert row["status"] == "ok" and row["night"] == "2026-03-04"
    assert "bias master bias-" in row["reduction"] and "is from night 2026-03-01, not 2026-03-04" in row["reduction"]
    assert row["master_offset_days"] == pytest.approx(3.2, abs=0.1)


def test_a_frame_without_a_usable_master_is_rejected_with_the_reason(raw, tmp_path):
    root, _, lake = raw
    red = write_raw_night(tmp_path / "red", seed=5, n_light=1, filter="R", n_bias=2, n_dark=2, n_flat=2)
    old = write_raw_night(tmp_path / "old", night="2026-02-01", seed=6, n_light=1, n_bias=2, n_dark=2, n_flat=2)
    paths = [str(red.paths["light"][0]), str(old.paths["light"][0]), str(red.paths["bias"][0])]
    with dask_client("synchronous") as client:
        report = ingest(Lake.open(root / "lake"), paths, "rawdemo", client=client, progress=False)
    reasons = dict(report.rejected)
    assert reasons[paths[0]] == "no usable flat master: no flat master for filter 'R'"
    assert reasons[paths[1]].startswith("no usable bias master: the nearest bias master (bias-")
    assert "more than reduction.max_age_days = 10" in reasons[paths[1]]
    assert reasons[paths[2]].startswith("a bias frame (IMAGETYP = 'Bias Frame'), not a science frame")


def test_missing_flag_ingests_without_the_step(raw, tmp_path):
    root, truth, lake = raw
    base = load_profile("rawdemo")
    profile = dataclasses.replace(base, reduction={**base.reduction, "missing": "flag"})
    red = write_raw_night(tmp_path / "red", seed=7, n_light=1, filter="R", n_bias=2, n_dark=2, n_flat=2)
    _, _, rec = _reduced(lake, red, 0, profile)
    assert rec["flat_id"] is None and rec["bias_id"].startswith("bias-")
    assert "flat skipped: no usable flat master: no flat master for filter 'R'" in rec["reduction"]
    assert "badpix in part: no deadpix master for filter 'R'" in rec["reduction"]  # the hot pixels still masked
    assert rec["bpm_ids"].startswith("hotpix-") and "deadpix" not in rec["bpm_ids"]


def test_frame_types_and_settings_are_checked():
    assert frame_type({"IMAGETYP": "FLAT FIELD"}, DEFAULT_FRAME_TYPES)[0] == "flat"
    assert frame_type({"OBSTYPE": "EXPOSE"}, DEFAULT_FRAME_TYPES) == (None, "OBSTYPE = 'EXPOSE'")
    with pytest.raises(ValueError, match=r"'dark' needs 'bias'"):
        ReductionSettings(steps=["dark"])
    with pytest.raises(ValueError, match=r"reduction.steps = \['bias', 'fringe'\]: unknown \['fringe'\]"):
        ReductionSettings(steps=["bias", "fringe"])
    with pytest.raises(ValueError, match=r"reduction.missing = 'skip' must be one of \['flag', 'reject'\]"):
        ReductionSettings(missing="skip")
    with pytest.raises(ValueError, match=r"unknown reduction setting\(s\) \['bias_level'\]"):
        ReductionSettings.from_dict({"bias_level": 1000})


def test_an_allsky_profile_with_reduction_is_refused(tmp_path):
    profile = tmp_path / "sky.toml"
    profile.write_text('extends = "iceact"\n[profile]\nname = "skyraw"\n[reduction]\nsteps = ["bias"]\n')
    with pytest.raises(ProfileError, match=r"\[reduction\] is for cameras placed by a WCS"):
        load_profile(str(profile))


def test_masters_build_refuses_a_light_frame(raw, capsys):
    root, truth, _ = raw
    code = main(["masters", "build", str(root / "lake"), str(truth.paths["light"][0]), "--pipeline", "rawdemo"])
    assert code == 2
    err = capsys.readouterr().err
    assert "IMAGETYP = 'Light Frame' is not a calibration frame" in err
    assert main(["masters", "build", str(root / "lake"), *map(str, truth.paths["bias"]), "--pipeline", "rawdemo"]) == 4


def test_overscan_is_subtracted_per_row_and_trimmed():
    """A chip of 40 x 30 pixels with 8 overscan columns whose level changes by row (ccdproc, median per row)."""
    rng = np.random.default_rng(2)
    rows = 1000.0 + 5.0 * np.arange(30)[:, None]  # the bias drifts along the readout
    data = np.empty((30, 48), np.float32)
    data[:, :40] = rows + 200.0 + rng.normal(0, 1, (30, 40))
    data[:, 40:] = rows + rng.normal(0, 1, (30, 8))
    settings = ReductionSettings(steps=["overscan"], overscan="[41:48, 1:30]", trim="[1:40, 1:30]")
    from skylake.reduce.masters import prepare, trim

    out = prepare(data, settings)
    assert out.shape == (30, 40) and out.dtype == np.float32
    assert np.median(out) == pytest.approx(200.0, abs=0.5)
    assert np.ptp(np.median(out, axis=1)) < 2.0  # the row drift is gone

    assert trim(np.ones((30, 48), bool), settings).shape == (30, 40)
    with pytest.raises(ValueError, match="'overscan' but reduction.overscan gives no region"):
        ReductionSettings(steps=["overscan"])
