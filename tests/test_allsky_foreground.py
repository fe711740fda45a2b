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


def test_the_learned_mask_covers_the_dome_and_leaves_the_sky(night, capsys):
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
    # built again from the same frames: found, not built twice
    assert main(["camera", "mask", lake, "--profile", "iceact"]) == 0
    assert "(exists)" in capsys.readouterr().out
    assert len(tables.get(tables.CAMERA_MASKS).read(Lake.open(lake))) == 1


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
