"""Saturated sources are flagged (SExtractor's rule: a pixel of the source reaches the saturation level in
the raw image, before the background is subtracted), on SYNTHETIC stars clipped at a plateau and on the
real SkyCamZ frames; a saturation level below the frame's background is not taken silently. And the
Kron ellipse follows SExtractor's PHOT_AUTOPARAMS rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sep
import yaml
from astropy.io import fits
from conftest import SKYCAMZ, require_shared
from scipy import ndimage
from scipy.spatial import cKDTree

from skylake.frame.extract import SATURATED, kron_scale
from skylake.paths import project_dir
from skylake.profile import load_profile
from skylake.synthetic import render_frame, tan_wcs_header, write_frame
from skylake.tasks.frame import process_file

SHAPE = (400, 400)
SKY = 2000.0
LEVEL = 30000.0


@pytest.fixture(scope="module")
def plateau(tmp_path_factory):
    """36 isolated stars on a grid: every other one so bright that its core is clipped at LEVEL (a flat
    plateau; its peak above the background, flux_max, stays below LEVEL), the rest far below it."""
    gx, gy = np.meshgrid(np.arange(40.0, 400, 64), np.arange(40.0, 400, 64))
    rng = np.random.default_rng(5)
    n = gx.size
    bright = np.arange(n) % 2 == 0
    stars = pd.DataFrame(
        {
            "x": gx.ravel() + rng.uniform(-0.4, 0.4, n),
            "y": gy.ravel() + rng.uniform(-0.4, 0.4, n),
            "flux": np.where(bright, 2.0e6, 1.0e5),
            "bright": bright,
        }
    )
    # FWHM 3 px: the peak pixel holds ~9 % of the flux: 180000 ADU (bright, clipped) or 9000 ADU (faint, 11000 raw)
    data = render_frame(
        stars, shape=SHAPE, fwhm_px=3.0, sky_adu=SKY, read_noise_adu=5.0, gain=2.0, seed=9, saturation=LEVEL
    )
    header = tan_wcs_header(150.0, 20.0, SHAPE, pixscale_arcsec=4.0)
    header.update({"DATE-OBS": "2026-03-01T22:00:00", "EXPTIME": 30.0, "FILTER": "V", "SATURATE": LEVEL})
    path = tmp_path_factory.mktemp("sat") / "plateau.fits"
    write_frame(path, data, header)
    return stars, data, path


def _match(stars, cols):
    dist, idx = cKDTree(np.c_[cols["x"], cols["y"]]).query(stars[["x", "y"]].to_numpy())
    assert (dist < 0.5).all()
    return idx


def test_stars_at_the_plateau_are_flagged_saturated(plateau):
    stars, data, path = plateau
    assert (data == np.float32(LEVEL)).sum() > 18 * 4  # a plateau of several pixels per bright star
    (result,) = process_file(str(path), load_profile("demo"))
    assert result.record["status"] == "ok" and result.record["saturation"] == LEVEL
    cols = result.sources
    idx = _match(stars, cols)
    flagged = (cols["flags"] & SATURATED) != 0
    assert flagged.sum() == stars["bright"].sum() == 18  # exactly the clipped stars, nothing else
    assert np.array_equal(flagged[idx], stars["bright"].to_numpy())
    # the old test (background-subtracted peak against the level) misses every one of them
    assert (cols["flux_max"][idx][stars["bright"]] < LEVEL).all()
    assert cols["flux_max"][idx][stars["bright"]] + cols["bkg"][idx][stars["bright"]] == pytest.approx(LEVEL, rel=0.01)


def test_a_wrong_header_level_is_rejected_and_the_profile_can_override_it(plateau, tmp_path):
    stars, data, _ = plateau
    header = tan_wcs_header(150.0, 20.0, SHAPE, pixscale_arcsec=4.0)
    header.update({"DATE-OBS": "2026-03-01T22:00:00", "EXPTIME": 30.0, "FILTER": "V", "SATURATE": 255.0})
    path = write_frame(tmp_path / "wrong.fits", data, header)
    (result,) = process_file(str(path), load_profile("demo"))
    assert result.record["status"] == "rejected"
    assert result.record["reason"].startswith(
        "saturation level 255 ADU (header SATURATE) is at or below the frame's background 1999.9"
    )
    assert 'saturation_source = "profile"' in result.record["reason"]
    prof = tmp_path / "override.toml"
    prof.write_text(
        f'extends = "demo"\n[profile]\nname = "override"\n[defaults]\nsaturation = {LEVEL}\n'
        'saturation_source = "profile"\n'
    )
    (result,) = process_file(str(path), load_profile(prof))
    assert result.record["status"] == "ok" and result.record["saturation"] == LEVEL
    flagged = (result.sources["flags"] & SATURATED) != 0
    assert np.array_equal(flagged[_match(stars, result.sources)], stars["bright"].to_numpy())


def test_flag_bit_is_documented_and_free_of_sep_bits():
    doc = yaml.safe_load((project_dir("schemas") / "sources.yaml").read_text())
    bits = {b["name"]: b["bit"] for b in doc["flag_bits"]}
    assert bits["SATURATED"] == SATURATED == 256
    sep_bits = (
        sep.OBJ_MERGED
        | sep.OBJ_TRUNC
        | sep.OBJ_DOVERFLOW
        | sep.OBJ_SINGU
        | sep.APER_TRUNC
        | sep.APER_HASMASKED
        | sep.APER_ALLMASKED
        | sep.APER_NONPOSITIVE
    )
    assert SATURATED & sep_bits == 0 and sep_bits == sum(v for v in bits.values() if v < SATURATED)
    assert all(v & sep_bits == 0 for v in bits.values() if v >= SATURATED)  # skylake's own bits (streaks, forced)
    # calibration's default flags_mask (254) does not include it: calibration cuts saturation its own way
    assert load_profile("generic").calibration.flags_mask & SATURATED == 0


@pytest.mark.realdata
def test_real_skycamz_frames(tmp_path):
    """SkyCamZ's files are reduced frames stored as scaled 16-bit integers: frame 210 can hold no pixel above
    BZERO + 32767 BSCALE = 35743.4 ADU, so the profile's 50000 ADU is never reached and the level used is
    that less 1 % (the frame's note says so); at a test level of 5000 ADU exactly the sources holding the
    pixels above it are flagged."""
    frame = require_shared(SKYCAMZ) / "z_e_20130610_210_1_1_1.fits"
    (result,) = process_file(str(frame), load_profile("skycamz"))
    header = fits.getheader(frame)
    file_max = header["BZERO"] + 32767 * header["BSCALE"]
    assert result.record["saturation"] == pytest.approx(0.99 * file_max) and file_max == pytest.approx(35743.376)
    assert result.record["extract_note"].startswith(
        "saturation 50000 ADU (profile [defaults] saturation) is above the 35743.4 ADU the file can hold: "
        "35385.9 ADU used"
    )
    prof = tmp_path / "low.toml"
    prof.write_text('extends = "skycamz"\n[profile]\nname = "low"\n[defaults]\nsaturation = 5000.0\n')
    (low,) = process_file(str(frame), load_profile(prof))
    assert low.record["saturation"] == 5000.0 and low.record["extract_note"] == ""
    cols = low.sources
    flagged = (cols["flags"] & SATURATED) != 0
    raw = fits.getdata(frame).astype(np.float32)
    regions, n = ndimage.label(raw >= 5000.0)
    centres = np.array(ndimage.center_of_mass(raw >= 5000.0, regions, range(1, n + 1)))[:, ::-1]  # (x, y)
    assert n > 5 and 0 < flagged.sum() <= n
    tree = cKDTree(np.c_[cols["x"], cols["y"]])
    dist, idx = tree.query(centres)
    assert (dist < 3).all() and flagged[idx].all()  # each saturated core belongs to a flagged source ...
    dist, _ = cKDTree(centres).query(np.c_[cols["x"], cols["y"]][flagged])
    assert (dist < 3).all()  # ... and each flagged source sits on one
    # everything else about the frame is as at the file's level
    assert np.array_equal(cols["flags"] & ~SATURATED, result.sources["flags"] & ~SATURATED)
    assert np.array_equal(cols["flux_auto"], result.sources["flux_auto"])


@pytest.mark.realdata
def test_the_clipped_skycamz_star_is_saturated_on_every_frame():
    """The V 4.9 star (RA 256.3448, Dec +12.7413) is clipped flat at 35000-35700 ADU on the 12 frames of its
    pointing (FWHM 9.3 px against 3.6-4 for its neighbours): SATURATED on each; and on all 14 frames no
    unflagged source owns a pixel at the file's largest value (or within 1 % of it)."""
    from astropy.wcs import WCS

    frames = sorted(require_shared(SKYCAMZ).glob("z_e_*.fits"))
    assert len(frames) == 14
    prof = load_profile("skycamz")
    seen = 0
    for path in frames:
        (result,) = process_file(str(path), prof)
        cols, header = result.sources, fits.getheader(path)
        x, y = WCS(header).all_world2pix([[256.3448, 12.7413]], 0)[0]
        dist, at = cKDTree(np.c_[cols["x"], cols["y"]]).query([x, y])
        if dist < 3:
            seen += 1
            assert cols["flags"][at] & SATURATED, path.name
        raw = fits.getdata(path).astype(np.float64)
        top = raw >= 0.99 * (header["BZERO"] + 32767 * header["BSCALE"])
        near = cKDTree(np.c_[cols["x"], cols["y"]]).query(np.argwhere(top)[:, ::-1])[1]
        assert (cols["flags"][near] & SATURATED).all(), path.name
    assert seen == 12


def test_a_star_clipped_then_flat_fielded_is_saturated_by_its_flat_top(tmp_path):
    """SYNTHETIC: a star clipped at 20000 ADU and then divided by a flat of +-2 % has a plateau below any
    level (the header's SATURATE is 30000): its flat top flags it; a bright unclipped star does not."""
    stars = pd.DataFrame({"x": [100.3, 300.5], "y": [200.2, 200.5], "flux": [4.0e6, 1.5e5]})
    data = render_frame(stars, shape=(400, 400), fwhm_px=3.0, sky_adu=SKY, read_noise_adu=5.0, gain=2.0, seed=2)
    data = np.minimum(data, 20000.0) * np.random.default_rng(3).uniform(0.98, 1.02, data.shape)
    header = tan_wcs_header(150.0, 20.0, (400, 400), pixscale_arcsec=4.0)
    header.update({"DATE-OBS": "2026-03-01T22:00:00", "EXPTIME": 30.0, "FILTER": "V", "SATURATE": 30000.0})
    path = write_frame(tmp_path / "flat.fits", data.astype(np.float32), header)
    (result,) = process_file(str(path), load_profile("demo"))
    cols = result.sources
    idx = _match(stars, cols)
    assert result.record["saturation"] == 30000.0 and (cols["flux_max"][idx] + cols["bkg"][idx]).max() < 20500
    assert ((cols["flags"][idx] & SATURATED) != 0).tolist() == [True, False]
    assert ((cols["flags"] & SATURATED) != 0).sum() == 1


def test_kron_ellipse_follows_sextractor():
    """PHOT_AUTOPARAMS 2.5, 3.5: scale = max(2.5 r_kron, 3.5); 3.5 (not 2.5 x 3.5) when r_kron is invalid."""
    phot = load_profile("generic").photometry
    r = np.array([0.5, 1.4, 1.6, 3.0, 0.0, -1.0, np.nan, np.inf])
    assert kron_scale(r, phot).tolist() == [3.5, 3.5, 4.0, 7.5, 3.5, 3.5, 3.5, 3.5]


def test_kron_radius_column_is_the_scale_used(plateau):
    """The stored kron_radius is SExtractor's KRON_RADIUS, and flux_auto is the sum in that ellipse."""
    stars, data, path = plateau
    (result,) = process_file(str(path), load_profile("demo"))
    cols = result.sources
    assert (cols["kron_radius"] >= 3.5).all()
    img = data.astype(np.float32).copy()
    bkg = sep.Background(img, bw=64, bh=64, fw=3, fh=3)
    sub = img - bkg.back()
    a, b = cols["a"].astype(float), cols["b"].astype(float)
    theta = np.radians(cols["theta"].astype(float))
    r_kron, _ = sep.kron_radius(sub, cols["x"], cols["y"], a, b, theta, 6.0)
    assert np.allclose(cols["kron_radius"], np.maximum(2.5 * r_kron, 3.5), rtol=1e-4)
    flux, _, _ = sep.sum_ellipse(sub, cols["x"], cols["y"], a, b, theta, cols["kron_radius"], subpix=1)
    assert np.allclose(cols["flux_auto"], flux, rtol=1e-4)


@pytest.mark.realdata
def test_an_ingest_of_the_skycamz_frames_says_the_file_level_once_and_warns_of_nothing(tmp_path):
    """`skylake ingest` of the 14 SkyCamZ frames on a local cluster: stderr is empty (no warning, no dask
    nanny's complaint); stdout says once that the profile's 50000 ADU is above what the files hold."""
    import subprocess
    import sys

    import pyarrow.parquet as pq
    from conftest import SHARED_DATA

    frames = require_shared(SKYCAMZ)
    table = pq.read_table(require_shared(SHARED_DATA / "refcats" / "tycho2_vt.parquet"))
    ra, dec = table["ra"].to_numpy(), table["dec"].to_numpy()
    pq.write_table(table.filter((np.abs(dec - 15) < 12) & (np.abs(ra - 260) < 15)), tmp_path / "tycho2.parquet")
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "skylake.cli", *a], capture_output=True, text=True, timeout=600
    )
    assert run("init", str(tmp_path / "lake")).returncode == 0
    refcat = run(
        "refcat", "import", str(tmp_path / "lake"), "tycho2", "--format", "tycho2", str(tmp_path / "tycho2.parquet")
    )
    assert refcat.returncode == 0 and refcat.stderr == "", refcat.stderr
    ingest = run("ingest", str(tmp_path / "lake"), str(frames), "--pipeline", "skycamz", "--workers", "2")
    assert ingest.returncode == 0 and ingest.stderr == "", ingest.stderr
    lines = [line for line in ingest.stdout.splitlines() if "the file" in line or "files can hold" in line]
    assert lines == [
        "  saturation 50000 ADU (profile [defaults] saturation) is above what 14 frames' files can hold (BITPIX, "
        "BZERO, BSCALE): each used its file's largest value less 1 % (frames.saturation; the frame's extract_note "
        "says so)"
    ]
