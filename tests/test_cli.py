"""The command line as users and cron run it: the demo (the main job) and existing clusters."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from conftest import run_cli

from skylake.lake import Lake


def test_demo_runs_the_main_job_end_to_end(demo_run):
    cwd, out = demo_run
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().splitlines()[-1] == "demo: PASS", out.stdout
    assert "12 frames ingested" in out.stdout and "truth check" in out.stdout and "Traceback" not in out.stderr
    root = cwd / "skylake-demo"
    lake = Lake.open(root / "lake")
    frames = lake.read_frames().to_pandas()
    assert len(frames) == 12 and (frames["status"] == "ok").all() and frames["instrument"].eq("DEMOCAM").all()
    assert lake.read_sources(columns=["source_id"]).num_rows == frames["n_sources"].sum() > 1000
    # it ends with the summary database in the lake and the report
    with sqlite3.connect(root / "lake" / "_skylake" / "summary.sqlite") as db:
        counts = {
            t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("frames", "zeropoints", "nights", "objects", "maps")
        }
    assert counts["frames"] == counts["zeropoints"] == 12 and counts["nights"] == 1
    assert counts["objects"] > 100 and counts["maps"] > 12  # a map per frame and the night's
    assert "DEMOCAM / V" in (root / "report" / "index.html").read_text()
    page = next((root / "report").glob("DEMOCAM_V_*.html")).read_text()
    assert "Maps of 2026-03-01" in page and "Latest calibration" in page


def test_demo_again_from_elsewhere_with_a_relative_out(demo_run):
    """A second run over the same directory, named relative to another working directory: nothing is
    ingested twice, every check passes again."""
    cwd, _ = demo_run
    elsewhere = cwd / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "skylake.cli", "demo", "--out", "../skylake-demo", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=elsewhere,
    )
    assert proc.returncode == 0 and "12 already in the lake" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1] == "demo: PASS"


def test_demo_verdict_names_the_first_failed_check():
    from skylake.demo import Check, verdict

    assert verdict([Check("a", 1, "1", True)]) == (0, "demo: PASS")
    code, line = verdict(
        [Check("a", 1, "1", True), Check("zeropoints off", 0.0312, "< 0.02", False), Check("b", 2, "> 3", False)]
    )
    assert code == 1 and line == "demo: FAIL: zeropoints off 0.0312 vs < 0.02"


@pytest.mark.realdata
def test_ingest_on_an_existing_cluster(tmp_path, skycamz_files, dask_client):
    address = dask_client.scheduler.address
    out = run_cli(
        "--log-level",
        "INFO",
        "ingest",
        str(tmp_path / "lake"),
        *map(str, skycamz_files[:3]),
        "--create",
        "--pipeline",
        "skycamz",
        "--scheduler",
        address,
        "--no-progress",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].startswith("3 of 3 files ingested")
    assert Lake.open(tmp_path / "lake").read_frames(columns=["frame_id"]).num_rows == 3


def test_the_demo_s_closing_hints_run_as_printed(demo_run, tmp_path):
    """Issue 22: the demo's last hint ran a `duckdb` program that is not installed. Every command it prints
    after "light curves:" and "query it" runs, from anywhere, with exit 0."""
    _, out = demo_run
    lines = out.stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("light curves:"))
    hints = [line.strip() for line in lines[start:] if line.startswith("  ")]
    assert len(hints) == 4 and not any(h.startswith("duckdb ") for h in hints), hints
    for hint in hints:
        run = subprocess.run(hint, shell=True, capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert run.returncode == 0, f"{hint}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
