"""Light curves at the noise floor, end to end on a SYNTHETIC series with exactly known systematics
(skylake.synthetic.series: 60 frames of one field, 0.03 mag transparency jitter, a 0.02 mag gradient that turns
from frame to frame, extinction, seeing that changes a fixed aperture's loss, five sinusoidal variables and a
1 % transit): ingest (which calibrates and solves the ensemble), objects, then every light-curve version
against the white noise the generator put in the pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from scipy.spatial import cKDTree

from skylake.cli import main as cli
from skylake.ensemble.plots import noise_diagram
from skylake.frame.extract import SATURATED
from skylake.lake import Lake
from skylake.lake.tables import DETREND, ENSEMBLE, ZEROPOINTS
from skylake.objects.build import build_objects
from skylake.pipeline import ingest
from skylake.refcat import import_refcat
from skylake.synthetic.series import write_series

VERSIONS = ["mag_zp", "mag", "mag_epd", "mag_tfa"]


@pytest.fixture(scope="module")
def series(tmp_path_factory, dask_client):
    root = tmp_path_factory.mktemp("series")
    truth = write_series(root, n_frames=60)
    lake = Lake.init(root / "lake")
    import_refcat(
        lake, "series", [truth.refcat_path], "generic", columns_map=truth.refcat_map, client=dask_client, progress=False
    )
    report = ingest(lake, truth.paths, truth.profile_path, client=dask_client, progress=False)
    build_objects(lake, client=dask_client)
    points = ds.dataset(lake.path("lightcurves/dataset"), format="parquet", partitioning="hive").to_table().to_pandas()
    objects = ds.dataset(lake.path("objects/dataset"), format="parquet", partitioning="hive").to_table().to_pandas()
    stars = truth.stars
    d, j = cKDTree(np.column_stack([stars["ra"] * np.cos(np.radians(30)), stars["dec"]])).query(
        np.column_stack([objects["ra"] * np.cos(np.radians(30)), objects["dec"]])
    )
    objects = objects.assign(star_id=np.where(d * 3600 < 2, stars["star_id"].to_numpy()[j], -1))
    points = points.merge(objects.loc[objects["star_id"] > 0, ["object_id", "star_id"]], on="object_id")
    points = points.merge(stars[["star_id", "kind", "mag"]].rename(columns={"mag": "true_mag"}), on="star_id")
    return root, lake, truth, report, points


def _clean(points):
    """Points of constant stars with no flag at all (unsaturated, not blended, inside the chip)."""
    return points[(points["kind"] == "constant") & (points["flags"] == 0)]


def test_the_chain_solved_the_night(series):
    _, lake, truth, report, _ = series
    kinds = [type(r).__name__ for r in report.downstream]
    assert kinds == ["CalibrationReport", "NightProductsReport"]  # the ensemble is a night product
    (products,) = report.downstream.night_products
    assert [type(r).__name__ for r in products.reports["ensemble"]] == ["EnsembleReport"]
    assert products.built == {"ensemble": [lake.read_night_table(ENSEMBLE).column("night")[0].as_py()]}
    ens = lake.read_night_table(ENSEMBLE).to_pandas()
    zps = lake.read_night_table(ZEROPOINTS).to_pandas()
    ok = set(zps.loc[zps["zp_status"] == "ok", "frame_id"])
    assert len(ens) == len(ok) >= 50 and set(ens["frame_id"]) == ok and (ens["status"] == "ok").all()
    assert (ens["n_stars"] > 200).all() and ens["field"].nunique() == 1
    assert lake.read_night_table(DETREND).num_rows > 0


def test_constant_stars_reach_the_white_noise(series):
    """Per magnitude bin, the median rms of the constant stars' ensemble light curves is within 10 % of the
    white noise the generator injected; the per-frame zeropoints are printed beside (2x worse at the bright
    end: their 0.03 mag jitter is fitted to ~100 stars a frame)."""
    _, _, truth, _, points = series
    clean = _clean(points)
    g = clean.groupby("star_id")
    rms = pd.DataFrame({c: g[c].std() for c in VERSIONS}).assign(n=g["mag"].count(), true_mag=g["true_mag"].first())
    rms = rms[rms["n"] >= 40]
    rms["white"] = truth.white_noise().loc[rms.index]
    rms["bin"] = pd.cut(rms["true_mag"], np.arange(10, 17))
    table = rms.groupby("bin", observed=True)[VERSIONS + ["white"]].median()
    table["stars"] = rms.groupby("bin", observed=True).size()
    table = table[table["stars"] >= 10]
    print("\nmedian rms per bin [mmag]\n", (1000 * table[VERSIONS + ["white"]]).round(2).assign(stars=table["stars"]))
    assert len(table) >= 5
    for c in ("mag", "mag_tfa"):
        ratio = (table[c] / table["white"]).to_numpy()
        assert np.all(np.abs(ratio - 1) < 0.10), (c, ratio)
    # the per-frame zeropoints: the floor of 20-40 catalogue stars' zeropoint noise at the bright end
    assert table["mag_zp"].iloc[0] > 1.5 * table["mag"].iloc[0]


def test_error_bars_are_right(series):
    """Pulls (point - star's mean) / mag_err of constant stars have a robust width of 0.9-1.1 in every bin."""
    clean = _clean(series[4]).copy()
    clean["n"] = clean.groupby("star_id")["mag"].transform("count")
    clean = clean[clean["n"] >= 40]
    mean = clean.groupby("star_id")["mag"].transform("mean")
    n = clean["n"]
    pull = (clean["mag"] - mean) / clean["mag_err"] * np.sqrt(n / (n - 1))
    widths = pull.groupby(pd.cut(clean["true_mag"], [10, 12, 14, 16]), observed=True).apply(
        lambda x: 1.4826 * np.median(np.abs(x - np.median(x)))
    )
    print("\npull widths", widths.round(3).to_dict())
    assert ((widths > 0.9) & (widths < 1.1)).all(), widths


def test_zeropoint_errors_are_right(series):
    """zp_err is what a frame's zeropoint error is: the ensemble measures each frame's zeropoint error (its offset,
    ten times more precise than zp_err, the aperture correction cancelling), and offset / zp_err over the frames
    has a width of 0.9-1.1 (its standard deviation: 60 frames give the width to +-9 %)."""
    _, lake, _, _, _ = series
    zps = lake.read_night_table(ZEROPOINTS).to_pandas()
    ens = lake.read_night_table(ENSEMBLE).to_pandas()
    both = zps.merge(ens[["frame_id", "zp_offset", "zp_offset_err"]], on="frame_id")
    assert (both["zp_offset_err"] < 0.25 * both["zp_err"]).all()
    pull = both["zp_offset"] / np.hypot(both["zp_err"], both["zp_offset_err"])
    print(
        f"\nzeropoint pulls: width {np.std(pull):.3f} over {len(pull)} frames; median zp_err "
        f"{1000 * both['zp_err'].median():.2f} mmag, offsets' rms {1000 * both['zp_offset'].std():.2f} mmag"
    )
    assert 0.9 < np.std(pull) < 1.1


def _fit_sine(t, y, period):
    A = np.column_stack([np.ones(t.size), np.sin(2 * np.pi * t / period), np.cos(2 * np.pi * t / period)])
    c = np.linalg.lstsq(A, y, rcond=None)[0]
    return float(np.hypot(c[1], c[2]))


def test_variables_keep_their_amplitudes_and_the_transit_its_depth(series):
    _, _, truth, _, points = series
    stars = truth.stars.set_index("star_id")
    var = stars[stars["kind"] == "variable"]
    for sid, star in var.iterrows():
        p = points[(points["star_id"] == sid) & ((points["flags"] & SATURATED) == 0)]
        for col in ("mag", "mag_tfa"):
            ok = p[col].notna()
            amp = _fit_sine(p.loc[ok, "mjd"].to_numpy(), p.loc[ok, col].to_numpy(), star["period_d"])
            assert abs(amp / star["amp"] - 1) < 0.05, (sid, col, amp, star["amp"])
    host = stars[stars["kind"] == "transit"].iloc[0]
    p = points[points["star_id"] == host.name]
    inside = np.abs(p["mjd"] - host["t0"]) < 0.4 * host["duration_d"]
    outside = np.abs(p["mjd"] - host["t0"]) > 0.5 * host["duration_d"]
    assert inside.sum() >= 15
    for col in ("mag", "mag_tfa"):
        dm = p.loc[inside, col].mean() - p.loc[outside, col].mean()
        depth = 1 - 10 ** (-0.4 * dm)
        print(f"\ntransit depth from {col}: {depth:.4f} (injected {host['depth']})")
        assert abs(depth / host["depth"] - 1) < 0.10


def test_solving_again_changes_nothing_and_redo_replaces(series):
    root, lake, _, _, _ = series
    before = lake.read_night_table(ENSEMBLE).to_pandas()
    assert cli(["ensemble", str(lake.store.location)]) == 0  # nothing to do: the night is solved
    after = lake.read_night_table(ENSEMBLE).to_pandas()
    assert len(after) == len(before) and set(after["batch_id"]) == set(before["batch_id"])
    assert cli(["ensemble", str(lake.store.location), "--redo"]) == 0
    redone = lake.read_night_table(ENSEMBLE).to_pandas()
    assert len(redone) == len(before) and set(redone["batch_id"]).isdisjoint(before["batch_id"])
    np.testing.assert_allclose(
        redone.sort_values("frame_id")["zp_offset"], before.sort_values("frame_id")["zp_offset"], atol=1e-9
    )
    assert lake.read_night_table(DETREND).num_rows == lake.read_night_table(DETREND).num_rows
    # the objects see the frames recalibrated: their points are made again with the new rows, same numbers
    report = build_objects(lake)
    assert report.frames_updated == len(before)


def test_noise_diagram(series, tmp_path, capsys):
    root, lake, truth, _, _ = series
    out = tmp_path / "noise.png"
    assert cli(["plot", "noise", str(lake.store.location), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.stat().st_size > 20_000 and "noise diagram of night 2026-04-10 (series, 60 frames solved" in text
    d = noise_diagram(lake)
    # the fitted model (the light curves' own errors) is the measured scatter of the ensemble light curves, bin
    # by bin, within 15 % (unflagged points)
    ratio = (d.bins["rms_mag"] / d.bins["expected"]).to_numpy()
    assert np.all(np.abs(ratio - 1) < 0.15), d.summary()
    assert d.legend_terms() and all("photons x" in t and "floor" in t for t in d.legend_terms())


def test_a_night_solved_with_other_settings_is_stale_until_solved_with_its_own(series, tmp_path):
    """The night products' rule counts rows whose ens_key is not what their frames' profile gives as stale
    (skylake.ensemble.stage.built): solved with other [ensemble] settings (--pipeline), the night is solved again
    by the next plain run, with the frames' own settings."""
    from skylake.ensemble.stage import ensemble
    from skylake.lake import tables
    from skylake.night_products import night_plan

    _, lake, truth, _, _ = series
    product = tables.get(ENSEMBLE)
    own = set(lake.read_night_table(ENSEMBLE).column("ens_key").to_pylist())
    night = lake.read_night_table(ENSEMBLE).column("night")[0].as_py()
    assert night_plan(lake, product).current == [night]
    other = tmp_path / "series.toml"
    other.write_text(truth.profile_path.read_text().replace("[ensemble]\n", "[ensemble]\nclip_sigma = 5.0\n", 1))
    ensemble(lake, redo=True, profile=str(other))
    assert set(lake.read_night_table(ENSEMBLE).column("ens_key").to_pylist()).isdisjoint(own)
    assert night_plan(lake, product).stale == [night]
    (report,) = ensemble(lake)  # no --redo: the rule finds the night stale
    assert report.solved_nights == 1 and set(lake.read_night_table(ENSEMBLE).column("ens_key").to_pylist()) == own
    assert night_plan(lake, product).current == [night]
