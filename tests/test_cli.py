"""The command line as users and cron run it: the demo (the main job) and existing clusters."""

from __future__ import annotations

import sqlite3

import pytest

from conftest import run_cli
from skylake.lake import Lake


def test_demo_runs_the_main_job_end_to_end(tmp_path):
    out = run_cli("demo", "--out", str(tmp_path / "demo"), "--frames", "4", "--workers", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 frames ingested" in out.stdout and "truth check" in out.stdout
    lake = Lake.open(tmp_path / "demo" / "lake")
    frames = lake.read_frames().to_pandas()
    assert len(frames) == 4 and (frames["status"] == "ok").all() and frames["instrument"].eq("DEMOCAM").all()
    assert lake.read_sources(columns=["source_id"]).num_rows == frames["n_sources"].sum() > 1000
    # it ends with the summary database in the lake and the report
    with sqlite3.connect(tmp_path / "demo" / "lake" / "_skylake" / "summary.sqlite") as db:
        counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("frames", "zeropoints", "nights", "objects", "maps")}
    assert counts["frames"] == counts["zeropoints"] == 4 and counts["nights"] == 1
    assert counts["objects"] > 100 and counts["maps"] > 4  # a map per frame and the night's
    assert "DEMOCAM / V" in (tmp_path / "demo" / "report" / "index.html").read_text()
    page = next((tmp_path / "demo" / "report").glob("DEMOCAM_V_*.html")).read_text()
    assert "Maps of 2026-03-01" in page and "Latest calibration" in page
    again = run_cli("demo", "--out", str(tmp_path / "demo"), "--frames", "4", "--workers", "1")
    assert again.returncode == 0 and "4 already in the lake" in again.stdout


@pytest.mark.realdata
def test_ingest_on_an_existing_cluster(tmp_path, skycamz_files, dask_client):
    address = dask_client.scheduler.address
    out = run_cli("--log-level", "INFO", "ingest", str(tmp_path / "lake"), *map(str, skycamz_files[:3]), "--create",
                  "--pipeline", "skycamz", "--scheduler", address, "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "3 frames ingested" in out.stdout
    assert Lake.open(tmp_path / "lake").read_frames(columns=["frame_id"]).num_rows == 3
