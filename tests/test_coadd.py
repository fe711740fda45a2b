"""Coadds (skylake coadd) of 12 SYNTHETIC frames dithered by whole pixels (skylake.synthetic.dither): the depth gain
and the photometric scale are known exactly. The real SkyCamZ coadd is in tests/test_calib_real.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from skylake.cli import main
from skylake.lake import Lake
from skylake.pipeline import ingest
from skylake.runtime import dask_client
from skylake.synthetic.dither import write_dithered_field

NIGHT = "2026-03-01"


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("coadd")
    truth = write_dithered_field(root / "frames", n_frames=12, seed=3)
    lake = Lake.init(root / "lake")
    with dask_client("synchronous") as client:
        ingest(lake, [str(p) for p in truth.paths], "demo", client=client, progress=False)
    assert main(["coadd", str(root / "lake"), "--night", NIGHT]) == 0
    frames = lake.read_frames().to_pandas()
    sources = lake.read_sources(columns=["frame_id", "ra", "dec", "inst_mag", "flags"]).to_pandas()
    return truth, lake, frames, sources


def _unit(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _matched(truth, src):
    dist, k = cKDTree(_unit(src["ra"], src["dec"])).query(_unit(truth.stars["ra"], truth.stars["dec"]))
    return dist < np.radians(1.5 * 4.0 / 3600.0), k


def _half_completeness_flux(truth, src) -> float:
    """The flux at which half the injected stars are detected (interpolated in log flux)."""
    found, _ = _matched(truth, src)
    logf = np.log10(truth.stars["flux"].to_numpy())
    edges = np.linspace(logf.min(), logf.max(), 25)
    mids = 0.5 * (edges[1:] + edges[:-1])
    comp = np.array([found[(logf >= a) & (logf < b)].mean() for a, b in zip(edges[:-1], edges[1:])])
    k = int(np.flatnonzero(comp < 0.5)[-1]) + 1  # the curve's last crossing of one half
    assert 0 < k < len(comp), comp
    return float(10 ** np.interp(0.5, [comp[k - 1], comp[k]], [mids[k - 1], mids[k]]))


def test_coadd_is_a_frame_with_its_provenance(stacked):
    truth, lake, frames, _ = stacked
    coadd = frames[frames["coadd_of"].notna()]
    assert len(coadd) == 1
    row = coadd.iloc[0]
    singles = frames[frames["coadd_of"].isna()]
    assert row["coadd_of"] == ",".join(str(i) for i in sorted(singles["frame_id"]))
    assert row["status"] == "ok" and row["exptime"] == pytest.approx(12 * truth.exptime)
    assert row["mjd"] == pytest.approx(singles["mjd"].mean(), abs=1e-6)
    assert row["path"].startswith(lake.path("coadds/night=2026-03-01/"))
    assert main(["coadd", str(lake.store.location), "--night", NIGHT]) == 0  # again: the same frame, not a second
    assert len(lake.read_frames().to_pandas()) == len(frames)


def test_coadd_reaches_sqrt_n_deeper(stacked):
    truth, _, frames, sources = stacked
    coadd_id = int(frames.loc[frames["coadd_of"].notna(), "frame_id"].iloc[0])
    singles = [
        _half_completeness_flux(truth, sources[sources["frame_id"] == f])
        for f in frames.loc[frames["coadd_of"].isna(), "frame_id"]
    ]
    gain = np.median(singles) / _half_completeness_flux(truth, sources[sources["frame_id"] == coadd_id])
    assert gain == pytest.approx(np.sqrt(12), rel=0.10)


def test_coadd_photometry_is_on_the_single_frames_scale(stacked):
    """Same instrumental magnitudes for bright stars (so the same zeropoint against any catalogue)."""
    truth, _, frames, sources = stacked
    bright = truth.stars["flux"].to_numpy() > 3000
    mags = {}
    for fid in frames["frame_id"]:
        src = sources[sources["frame_id"] == fid]
        found, k = _matched(truth, src)
        use = found & bright & (src["flags"].to_numpy()[k] == 0)
        mags[fid] = (np.flatnonzero(use), src["inst_mag"].to_numpy()[k[use]])
    coadd_id = int(frames.loc[frames["coadd_of"].notna(), "frame_id"].iloc[0])
    offsets = []
    for fid, (stars, mag) in mags.items():
        if fid == coadd_id:
            continue
        both, a, b = np.intersect1d(mags[coadd_id][0], stars, return_indices=True)
        assert len(both) > 50
        offsets.append(np.median(mags[coadd_id][1][a] - mag[b]))
    assert abs(float(np.median(offsets))) < 0.01


def test_median_coadd_reaches_the_depth_of_a_median(stacked):
    """``--method median``: reproject has no median combination, so skylake stacks a cube (runs last: it adds a
    second coadd to the module's lake)."""
    truth, lake, _, _ = stacked
    assert main(["coadd", str(lake.store.location), "--night", NIGHT, "--method", "median"]) == 0
    frames = lake.read_frames().to_pandas()
    sources = lake.read_sources(columns=["frame_id", "ra", "dec", "inst_mag", "flags"]).to_pandas()
    coadds = frames[frames["coadd_of"].notna()].sort_values("frame_id")
    assert len(coadds) == 2
    median_id = int(coadds["frame_id"].iloc[1])
    singles = [
        _half_completeness_flux(truth, sources[sources["frame_id"] == f])
        for f in frames.loc[frames["coadd_of"].isna(), "frame_id"]
    ]
    gain = np.median(singles) / _half_completeness_flux(truth, sources[sources["frame_id"] == median_id])
    # a median's noise is sqrt(pi / 2) times a mean's (Gaussian noise): measured 2.83
    assert gain == pytest.approx(np.sqrt(12) * np.sqrt(2 / np.pi), rel=0.10)
