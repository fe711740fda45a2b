"""Calibration end to end on SYNTHETIC frames with known truth: a night with an injected zeropoint,
colour term and extinction coefficient (clear frames), the same night under a cloud, and a frame
with too few stars. Ingest calibrates them (the demo profile names the night's reference
catalogue); the answers must come back within 0.01 mag and 0.01 mag per unit colour or airmass,
and the cloudy and sparse frames must get a status and reason instead of a wrong number."""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from skylake.calib.calibrate import calibrate, plot_zeropoint
from skylake.calib.store import EXTINCTION, MATCHES, ZEROPOINTS, read_table
from skylake.lake import Lake
from skylake.lake.tables import Table
from skylake.pipeline import ingest
from skylake.refcat import import_refcat
from skylake.status import format_status, lake_status
from skylake.synthetic import write_demo_night, write_reference_catalog

K_EXT, COLOR_TERM, ZP = 0.15, 0.15, 22.0
NIGHT = dict(
    n_frames=6,
    shape=(512, 512),
    start_utc="2026-03-01T20:30:00",
    cadence_s=1800,
    n_stars=1200,
    seed=11,
    k_ext=K_EXT,
    color_term=COLOR_TERM,
    zp_true=ZP,
)


@pytest.fixture(scope="module")
def night(tmp_path_factory, dask_client):
    root = tmp_path_factory.mktemp("calnight")
    clear = write_demo_night(root / "clear", cloud=False, **NIGHT)
    cloudy = write_demo_night(root / "cloudy", cloud=True, cloud_track=(-0.2, 0.2), **NIGHT)  # cloud over the chip
    sparse = write_demo_night(
        root / "sparse",
        n_frames=1,
        shape=(512, 512),
        start_utc="2026-03-01T21:00:00",
        n_stars=12,
        n_variables=0,
        cloud=False,
        seed=12,
        color_term=COLOR_TERM,
    )
    stars = pd.concat([clear.stars, sparse.stars.assign(star_id=sparse.stars["star_id"] + 1_000_000)])
    data, columns_map = write_reference_catalog(stars, root / "refcat")
    lake = Lake.init(root / "lake")
    import_refcat(lake, "demo", [data], "generic", columns_map=columns_map, client=dask_client, progress=False)
    report = ingest(
        lake,
        [str(root / "clear"), str(root / "cloudy"), str(root / "sparse")],
        "demo",
        client=dask_client,
        progress=False,
    )
    frames = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    truth = pd.concat(
        [clear.frames.assign(kind="clear"), cloudy.frames.assign(kind="cloudy"), sparse.frames.assign(kind="sparse")]
    )
    truth = truth.rename(columns={"color_term": "color_term_true", "airmass": "airmass_true"})
    return lake, report, frames.merge(truth, on="path"), stars, root


def test_injected_zeropoint_colour_term_and_extinction_are_recovered(night):
    lake, report, frames, _, _ = night
    cals = report.downstream.calibrations
    assert report.ingested == 13 and len(cals) == 1 and cals[0].calibrated == 13
    zps = read_table(lake, ZEROPOINTS).merge(frames, on="frame_id")
    clear = zps[zps["kind"] == "clear"]
    assert (clear["zp_status"] == "ok").all() and (clear["zp_method"] == "color_fit").all()
    assert np.abs(clear["zp"] - clear["zp_eff"]).max() < 0.01  # zp_eff = zp_true - k_ext * airmass
    assert np.abs(clear["color_term"] - COLOR_TERM).max() < 0.01
    assert (clear["zp_n"] > 200).all() and (clear["astro_median_sep_arcsec"] < 0.5).all()
    ext = read_table(lake, EXTINCTION)
    assert len(ext) == 1 and ext["ext_status"].iloc[0] == "ok" and ext["n_frames"].iloc[0] == 6
    assert abs(ext["k_ext"].iloc[0] - K_EXT) < 0.01 and abs(ext["zp_airmass0"].iloc[0] - ZP) < 0.01
    assert ext["airmass_max"].iloc[0] - ext["airmass_min"].iloc[0] > 0.4


def test_cloudy_and_sparse_frames_get_a_status_not_a_number(night):
    lake, _, frames, _, _ = night
    zps = read_table(lake, ZEROPOINTS).merge(frames, on="frame_id")
    cloudy = zps[zps["kind"] == "cloudy"]
    assert cloudy["zp_status"].isin(["cloudy", "high_scatter"]).all(), cloudy[["zp_status", "zp_reason"]]
    assert cloudy["zp"].isna().all() and cloudy["zp_reason"].str.contains("cloud").all()
    assert (cloudy["zp_eff"] - cloudy["zp_fit"] > 0.1).all()  # what a wrong number would have been
    sparse = zps[zps["kind"] == "sparse"].iloc[0]
    assert sparse["zp_status"] == "too_few_stars" and np.isnan(sparse["zp"])
    assert "< min_stars 20" in sparse["zp_reason"]
    matches = read_table(lake, MATCHES)
    bad = matches["frame_id"].isin(zps.loc[zps["zp_status"] != "ok", "frame_id"])
    assert matches.loc[bad, "mag"].isna().all() and matches.loc[~bad, "mag"].notna().all()


def test_calibrated_magnitudes_by_matches_and_by_the_documented_join(night):
    lake, _, frames, stars, _ = night
    matches = read_table(lake, MATCHES)
    used = matches[matches["used"] & matches["mag"].notna()]
    # matches: mag is in the reference system, with the colour term
    assert abs(np.median(used["mag"] - used["ref_mag"])) < 0.005 and (used["sep_arcsec"] < 5.0).all()
    truth = stars.set_index("star_id")
    assert np.allclose(used["ref_mag"], truth.loc[used["ref_id"], "mag"], atol=1e-5)
    assert matches.groupby(["frame_id", "ref_id"]).size().max() == 1 and matches["source_id"].is_unique
    # README's one-line join: every source of an ok frame, mag at colour 0
    sql = (
        f"SELECT s.source_id, s.inst_mag + z.zp AS mag "
        f"FROM read_parquet('{lake.url}/sources/dataset/*/*/*/*.parquet') s "
        f"JOIN read_parquet('{lake.url}/zeropoints/*/*.parquet') z USING (frame_id) "
        f"WHERE z.zp_status = 'ok' AND z.refcat = 'demo'"
    )
    joined = duckdb.connect().execute(sql).df().set_index("source_id")
    n_ok_sources = (
        lake.read_frames(columns=["frame_id", "n_sources"])
        .to_pandas()
        .merge(read_table(lake, ZEROPOINTS).query("zp_status == 'ok'"), on="frame_id")["n_sources"]
        .sum()
    )
    assert len(joined) == n_ok_sources
    m = used.set_index("source_id")
    zp_ct = read_table(lake, ZEROPOINTS).set_index("frame_id")["color_term"]
    expected = m["mag"] - m["frame_id"].map(zp_ct) * m["ref_color"]
    assert np.allclose(joined.loc[m.index, "mag"], expected, atol=2e-4)  # float32 inst_mag


def test_rerun_is_a_no_op_redo_replaces_in_one_commit_and_plots(night, dask_client, tmp_path):
    lake, _, _, _, _ = night
    before = lake.log.latest_version()
    again = calibrate(lake, client=dask_client, plots=tmp_path / "again")
    assert again[0].skipped == 13 and again[0].calibrated == 0 and lake.log.latest_version() == before
    assert len(again[0].plots) == 13  # --plots draws frames calibrated before too
    n_matches = len(read_table(lake, MATCHES))
    redo = calibrate(lake, client=dask_client, redo=True, plots=tmp_path / "plots")
    print(redo[0].timings)
    assert redo[0].calibrated == 13 and lake.log.latest_version() == before + 1
    entry = lake.log.latest()
    assert entry.operation == "calibrate" and {r.table for r in entry.removes} == {ZEROPOINTS, MATCHES, EXTINCTION}
    assert len(read_table(lake, ZEROPOINTS)) == 13 and len(read_table(lake, MATCHES)) == n_matches
    assert len(read_table(lake, EXTINCTION)) == 1
    assert len(redo[0].plots) == 13 and all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in redo[0].plots)
    frame_id = int(read_table(lake, ZEROPOINTS).query("zp_status == 'ok'")["frame_id"].iloc[0])
    png = plot_zeropoint(lake, frame_id, out=tmp_path / "one.png")
    assert png.stat().st_size > 20_000
    text = format_status(lake_status(lake))
    assert "calibrated   13 frames against demo:" in text and "ok 6" in text and "too_few_stars 1" in text


def test_redo_replaces_only_its_own_calibrations_extinction_and_rewrites_only_its_nights(
    night, dask_client, monkeypatch
):
    """Two calibrations against one catalogue in one night (as skycamt and skycamz against tycho2):
    a --redo of one keeps the other's extinction row, and rewrites zeropoints and matches only in the
    nights of the frames it redoes."""
    import dataclasses

    from skylake.calib import calibrate as calib
    from skylake.profile import load_profile

    lake, _, frames, _, _ = night
    demo = load_profile("demo")
    other = dataclasses.replace(demo, name="demo-b", calibration=dataclasses.replace(demo.calibration, min_stars=19))
    selected = calib.select_frames(lake).merge(frames[["frame_id", "kind"]], on="frame_id")
    clear, rest = selected[selected["kind"] == "clear"], selected[selected["kind"] != "clear"]
    on_client = lambda: contextlib.nullcontext(dask_client)  # noqa: E731  (as calibrate() runs a batch)
    b = calib.calibrate_frames(lake, clear, other, "demo", redo=True, scheduler=on_client)
    row_b = read_table(lake, EXTINCTION).query("calib_key == @b.calib_key")
    assert row_b["ext_status"].tolist() == ["ok"] and abs(row_b["k_ext"].iloc[0] - K_EXT) < 0.01
    staged = []
    remove_where = Table.remove_where
    monkeypatch.setattr(
        Table,
        "remove_where",
        lambda self, tx, drop, nights=None, **kw: (
            staged.append((self.name, nights)) or remove_where(self, tx, drop, nights, **kw)
        ),
    )
    a = calib.calibrate_frames(lake, rest, demo, "demo", redo=True, scheduler=on_client)
    assert a.calibrated == len(rest) and a.calib_key != b.calib_key
    ext = read_table(lake, EXTINCTION).set_index("calib_key")
    assert sorted(ext.index) == sorted([a.calib_key, b.calib_key])
    assert ext.loc[b.calib_key, "batch_id"] == row_b["batch_id"].iloc[0]  # untouched
    assert ext.loc[a.calib_key, "ext_status"] == "too_few_frames"  # its clear frames are b's now
    assert staged == [(ZEROPOINTS, set(rest["night"])), (MATCHES, set(rest["night"])), (EXTINCTION, set(rest["night"]))]


def test_a_batch_of_bad_files_gets_frame_rejected_rows(night, dask_client):
    """Runs last: it adds frames. Unreadable frames are calibrated as frame_rejected, with the reason."""
    from skylake.synthetic import BAD_FILE_NAMES, write_bad_files

    lake, _, frames, _, root = night
    write_bad_files(root / "bad", frames["path"].iloc[0])
    report = ingest(lake, [str(root / "bad")], "demo", client=dask_client, progress=False)
    assert len(report.rejected) == len(BAD_FILE_NAMES)
    assert report.downstream.calibrations[0].calibrated == len(BAD_FILE_NAMES)
    zps = read_table(lake, ZEROPOINTS)
    bad = zps[~zps["frame_id"].isin(frames["frame_id"])]
    assert len(bad) == len(BAD_FILE_NAMES) and (bad["zp_status"] == "frame_rejected").all()
    assert bad["zp_reason"].str.startswith("frame rejected at ingest: ").all() and bad["zp"].isna().all()
