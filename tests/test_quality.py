"""Frame quality gates on SYNTHETIC frames built to fail them: the frame keeps its row with a status
and a reason, and its sources stay queryable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skylake.profile import load_profile
from skylake.synthetic import render_frame, tan_wcs_header, write_frame
from skylake.tasks.frame import process_file

SHAPE = (600, 600)


def _stars(n=250, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.uniform(20, SHAPE[1] - 20, n),
            "y": rng.uniform(20, SHAPE[0] - 20, n),
            "flux": 10 ** rng.uniform(3.8, 5.0, n),
        }
    )


def _write(path, data):
    header = tan_wcs_header(150.0, 20.0, SHAPE, pixscale_arcsec=4.0)
    header.update({"DATE-OBS": "2026-03-01T22:00:00", "EXPTIME": 30.0, "AIRMASS": 1.1, "FILTER": "V"})
    write_frame(path, data, header)
    return str(path)


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """The demo camera with Skycam's shape gates (and a source minimum this field passes)."""
    path = tmp_path_factory.mktemp("q") / "gated.toml"
    path.write_text(
        'extends = "demo"\n[profile]\nname = "gated"\n[quality]\nmin_sources = 100\n'
        "max_elongation = 12.0\nmax_theta_kurtosis = -0.5\nmax_flux = 1.0e7\n"
    )
    return load_profile(path)


def test_round_stars_pass(tmp_path, profile):
    (r,) = process_file(_write(tmp_path / "ok.fits", render_frame(_stars(), shape=SHAPE, fwhm_px=3.0, seed=2)), profile)
    assert r.record["status"] == "ok", r.record["reason"]
    assert r.record["theta_kurtosis"] < -0.8  # uniform position angles: excess kurtosis near -1.2


def test_trailed_frame_is_flagged(tmp_path, profile):
    """Telescope drift during the exposure: each star smeared 12 px along one direction."""
    stars = _stars()
    steps = 9
    trail = sum(
        render_frame(
            stars.assign(x=stars.x + 1.5 * k, flux=stars.flux / steps),
            shape=SHAPE,
            fwhm_px=3.0,
            sky_adu=1000.0 / steps,
            noise=False,
        )
        for k in range(steps)
    )
    noisy = trail + np.random.default_rng(4).normal(0, 25, SHAPE).astype(np.float32)
    (r,) = process_file(_write(tmp_path / "trail.fits", noisy), profile)
    assert r.record["status"] == "trailed", r.record
    assert "theta kurtosis" in r.record["reason"] and r.record["theta_kurtosis"] > -0.5
    assert r.n_sources > 100  # the sources are kept with the frame's status


def test_thin_and_bright_frames(tmp_path, profile):
    sparse = _write(tmp_path / "sparse.fits", render_frame(_stars(40), shape=SHAPE, fwhm_px=3.0, seed=5))
    (r,) = process_file(sparse, profile)
    assert r.record["status"] == "few_sources" and "< min_sources 100" in r.record["reason"]
    bright_profile = tmp_path / "bright.toml"
    bright_profile.write_text('extends = "demo"\n[profile]\nname = "b"\n[quality]\nmax_flux = 1000.0\n')
    (r,) = process_file(sparse, load_profile(bright_profile))
    assert r.record["status"] == "too_bright" and "max flux_max" in r.record["reason"]


def test_theta_kurtosis_is_scipy_s_to_the_bit():
    """The frames' theta_kurtosis without importing scipy.stats (~0.6 s a process): scipy's biased Fisher kurtosis,
    the same bits for float32 (sep's theta), float64 and integer values, NaN where the values are all equal."""
    from scipy.stats import kurtosis

    from skylake.frame.quality import _kurtosis

    rng = np.random.default_rng(5)
    for k in range(300):
        dtype = (np.float32, np.float64, np.int64)[k % 3]
        x = (rng.normal(0.0, rng.uniform(0.01, 2.0), rng.integers(4, 2000)) * 50).astype(dtype)
        for fisher in (True, False):
            assert float(_kurtosis(x, fisher=fisher)) == float(kurtosis(x, fisher=fisher)), (k, dtype, fisher)
    assert np.isnan(_kurtosis(np.full(7, 0.25, np.float32)))
