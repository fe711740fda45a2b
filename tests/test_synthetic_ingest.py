"""Exact answers from synthetic frames (known star positions and fluxes; SYNTHETIC data), in every
file format the ingest reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from skylake.lake import Lake
from skylake.pipeline import ingest
from skylake.synthetic import render_frame, tan_wcs_header, write_frame

SHAPE = (512, 640)
HEADER = {
    "INSTRUME": "DEMOCAM",
    "FILTER": "V",
    "DATE-OBS": "2026-03-01T22:00:00.000",
    "MJD-OBS": 61100.9166667,
    "EXPTIME": 30.0,
    "AIRMASS": 1.2,
    "GAIN": 1.5,
    "SATURATE": 60000.0,
}


@pytest.fixture(scope="module")
def field():
    """A grid of isolated stars with known positions (sub-pixel offsets) and fluxes, and the frame."""
    rng = np.random.default_rng(7)
    gx, gy = np.meshgrid(np.arange(30, SHAPE[1] - 30, 40.0), np.arange(30, SHAPE[0] - 30, 40.0))
    stars = pd.DataFrame(
        {
            "x": gx.ravel() + rng.uniform(-0.5, 0.5, gx.size),
            "y": gy.ravel() + rng.uniform(-0.5, 0.5, gx.size),
            "flux": 10 ** rng.uniform(4.0, 5.3, gx.size),
        }
    )
    data = render_frame(stars, shape=SHAPE, fwhm_px=3.0, sky_adu=800.0, read_noise_adu=4.0, gain=1.5, seed=3)
    header = tan_wcs_header(150.0, 20.0, SHAPE, pixscale_arcsec=4.0, rotation_deg=12.0)
    header.update(HEADER)
    return stars, data, header


def _match(stars: pd.DataFrame, found: pd.DataFrame, radius: float = 1.0) -> pd.DataFrame:
    dist, idx = cKDTree(found[["x", "y"]].to_numpy()).query(stars[["x", "y"]].to_numpy(), distance_upper_bound=radius)
    ok = np.isfinite(dist)
    return stars[ok].assign(**{f"m_{c}": found[c].to_numpy()[idx[ok]] for c in found.columns})


def test_known_stars_are_found_where_and_as_bright_as_they_are(tmp_path, field):
    stars, data, header = field
    write_frame(tmp_path / "f.fits", data, header)
    lake = Lake.init(tmp_path / "lake")
    report = ingest(lake, [str(tmp_path / "f.fits")], "demo", progress=False)
    assert report.ingested == 1
    found = lake.read_sources().to_pandas()
    m = _match(stars, found)
    assert len(m) == len(stars)  # every star detected
    assert np.median(np.hypot(m["m_x"] - m["x"], m["m_y"] - m["y"])) < 0.05
    assert np.max(np.hypot(m["m_x"] - m["x"], m["m_y"] - m["y"])) < 0.25
    ratio = m["m_flux_auto"] / m["flux"]
    assert abs(np.median(ratio) - 1) < 0.02  # Kron flux holds ~all the light
    assert abs(np.median(m["m_flux_ap3"] / m["flux"]) - 1) < 0.03  # 8 px aperture, annulus background
    pull = (m["m_flux_auto"] - m["flux"]) / m["m_flux_auto_err"]
    assert 0.5 < np.std(pull) < 2.0  # errors are honest
    assert np.allclose(m["m_fwhm"], 3.0, atol=0.3)
    expected_mag = -2.5 * np.log10(m["m_flux_auto"] / 30.0)
    assert np.allclose(m["m_inst_mag"], expected_mag, atol=1e-5)
    ra, dec = WCS(header).all_pix2world(m["m_x"], m["m_y"], 0)
    assert np.allclose(m["m_ra"], ra, atol=1e-9) and np.allclose(m["m_dec"], dec, atol=1e-9)
    frame = lake.read_frames().to_pylist()[0]
    assert frame["status"] == "ok" and frame["bkg_median"] == pytest.approx(800.0, rel=0.01)
    assert frame["pixscale"] == pytest.approx(4.0, rel=1e-3) and frame["airmass"] == pytest.approx(1.2)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("f.fits.gz", {}),
        ("f.fits.fz", {"bitpix16": True}),  # BITPIX 16 + BZERO, tile-compressed vs plain: lossless
    ],
)
def test_every_format_gives_the_same_detections(tmp_path, field, name, kwargs):
    stars, data, header = field
    write_frame(tmp_path / "plain.fits", data, header, **kwargs)
    write_frame(tmp_path / name, data, header, **kwargs)
    lake = Lake.init(tmp_path / "lake")
    ingest(lake, [str(tmp_path / "plain.fits"), str(tmp_path / name)], "demo", progress=False)
    frames = lake.read_frames().to_pandas()
    assert (frames["status"] == "ok").all() and frames["n_sources"].nunique() == 1, frames[["path", "n_sources"]]
    src = lake.read_sources(columns=["frame_id", "x", "y", "flux_auto"]).to_pandas()
    a, b = (src[src.frame_id == f].sort_values(["x", "y"]).reset_index(drop=True) for f in frames["frame_id"])
    pd.testing.assert_frame_equal(a.drop(columns="frame_id"), b.drop(columns="frame_id"))


def test_multi_extension_file_gives_one_frame_per_image(tmp_path, field):
    stars, data, header = field
    hdus = [fits.PrimaryHDU()]
    for k in range(2):
        hdus.append(fits.ImageHDU(data=data.astype(">f4"), header=header, name=f"CCD{k + 1}"))
    fits.HDUList(hdus).writeto(tmp_path / "mef.fits")
    profile = tmp_path / "mef.toml"
    profile.write_text('extends = "demo"\n[profile]\nname = "mef"\nhdu = "all"\n')
    lake = Lake.init(tmp_path / "lake")
    ingest(lake, [str(tmp_path / "mef.fits")], str(profile), progress=False)
    frames = lake.read_frames().to_pandas().sort_values("hdu")
    assert frames["hdu"].tolist() == [1, 2] and frames["frame_key"].is_unique
    assert frames["n_sources"].tolist()[0] == frames["n_sources"].tolist()[1] >= len(stars)
    profile.write_text('extends = "demo"\n[profile]\nname = "mef2"\nhdu = "CCD2"\n')
    lake2 = Lake.init(tmp_path / "lake2")
    ingest(lake2, [str(tmp_path / "mef.fits")], str(profile), progress=False)
    assert lake2.read_frames(columns=["hdu"]).column("hdu").to_pylist() == [2]
