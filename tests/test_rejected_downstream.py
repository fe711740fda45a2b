"""Rejected frames harm nothing downstream: the 14 real SkyCamZ frames plus broken files of 8 kinds,
with Tycho-2 imported. Ingest exits 3; calibrate, maps, objects, refresh and report run; every
night-partitioned table reads with pandas, pyarrow and DuckDB, and the HATS tables with lsdb,
while rejected rows are present."""

from __future__ import annotations

import shutil

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA, require_shared, run_cli
from test_calib_real import _near

from skylake.calib.calibrate import calibrate
from skylake.ingest import EXIT_SOME_REJECTED
from skylake.lake import Lake
from skylake.lake.nights import UNKNOWN_NIGHT
from skylake.pipeline import ingest
from skylake.refcat import import_refcat
from skylake.synthetic import write_bad_files
from skylake.tasks.frame import night_from_path

pytestmark = pytest.mark.realdata

TYCHO = SHARED_DATA / "refcats" / "tycho2_vt.parquet"
NIGHT_TABLES = ("frames", "zeropoints", "matches", "extinction", "maps")


@pytest.fixture(scope="module")
def lake(tmp_path_factory, skycamz_files, dask_client):
    root = tmp_path_factory.mktemp("rejected")
    table = pq.read_table(require_shared(TYCHO))
    pq.write_table(
        table.filter(_near(table["ra"].to_numpy(), table["dec"].to_numpy(), 12.0)), root / "tycho2_vt.parquet"
    )
    batch = root / "batch"
    batch.mkdir()
    for f in skycamz_files:
        shutil.copy(f, batch / f.name)
    bad = write_bad_files(batch / "bad", skycamz_files[0])
    # one broken file whose name carries its night, as archives name them
    (batch / "z_e_20130610_999_1_1_1.fits").write_bytes(b"not a fits file at all")
    lake = Lake.init(root / "lake")
    import_refcat(lake, "tycho2", [root / "tycho2_vt.parquet"], "tycho2", client=dask_client, progress=False)
    report = ingest(lake, [str(batch)], "skycamz", client=dask_client, progress=False)
    return lake, report, len(bad) + 1


def test_night_from_path():
    assert night_from_path("/a/z_e_20130610_210_1_1_1.fits") == "2013-06-10"
    assert night_from_path("/archive/2013-06-11/frame.fits") == "2013-06-11"
    assert night_from_path("/archive/20139999/frame.fits") is None  # not a date
    assert night_from_path("/archive/frame_123456789012.fits") is None


def test_ingest_exits_3_and_calibrates_the_good_frames(lake):
    lake, report, n_bad = lake
    assert report.exit_code == EXIT_SOME_REJECTED
    assert report.ingested == 14 and len(report.rejected) == n_bad
    cal = report.downstream.calibrations[0]
    assert cal.by_status.get("ok") == 14 and cal.by_status.get("frame_rejected") == n_bad
    str(cal)  # the report prints (it sorted nights of rejected frames with real ones and crashed)
    frames = lake.read_frames(columns=["path", "status", "night"]).to_pandas()
    rejected = frames[frames["status"] == "rejected"]
    # a real night wherever one is known (the name, or a header read before the rejection), else unknown
    named = rejected[rejected["path"].str.endswith("z_e_20130610_999_1_1_1.fits")]
    assert named["night"].tolist() == ["2013-06-10"]
    assert rejected["night"].isna().any()  # skylake reads the unknown partition as a null night
    assert lake.path("frames") and (pd.read_parquet(lake.path("frames"))["night"] == UNKNOWN_NIGHT).any()


def test_every_stage_runs_with_rejected_rows_present(lake, tmp_path):
    lake, _, n_bad = lake
    again = calibrate(lake)  # a second run: nothing new, no crash
    assert sum(r.calibrated for r in again) == 0
    redo = run_cli("calibrate", lake.url, "--redo", "--scheduler", "synchronous")
    assert redo.returncode == 3, redo.stderr  # 3: the rejected frames are not ok
    assert "Traceback" not in redo.stderr and "were rejected at ingest (" in redo.stdout
    maps = run_cli("maps", lake.url, "--out", str(tmp_path / "maps"), check=True)
    assert "maps" in maps.stdout
    run_cli("objects", "build", lake.url, check=True)
    run_cli("refresh", lake.url, check=True)
    site = run_cli("report", lake.url, str(tmp_path / "site"), check=True)
    assert (tmp_path / "site" / "index.html").is_file(), site.stdout
    status = run_cli("status", lake.url, check=True)
    assert f"rejected {n_bad}" in status.stdout


def test_every_reader_opens_the_tables(lake):
    lake, _, n_bad = lake
    calibrate(lake)
    for name in NIGHT_TABLES:
        path = lake.path(name)
        if name == "maps":
            from skylake.maps import make_maps

            make_maps(lake, out_dir=None)
        frame = pd.read_parquet(path)  # the hive partition "unknown" beside real nights
        assert len(frame) > 0, name
        assert pads.dataset(path, format="parquet", partitioning="hive").to_table().num_rows == len(frame)
        n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}/night=*/*.parquet', hive_partitioning = true)")
        assert n.fetchall()[0][0] == len(frame), name
    frames = pd.read_parquet(lake.path("frames"))
    assert (frames["status"] == "rejected").sum() == n_bad
    zps = pd.read_parquet(lake.path("zeropoints"))
    assert (zps["zp_status"] == "frame_rejected").sum() >= n_bad
    import lsdb

    assert len(lsdb.open_catalog(lake.path("sources")).compute()) == frames["n_sources"].sum()
    assert len(lsdb.open_catalog(lake.path("objects")).compute()) > 0
