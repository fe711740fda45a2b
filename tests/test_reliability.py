"""Crash safety, idempotency and concurrent writers, on the 14 real SkyCamZ frames.

Each test runs the real CLI in subprocesses. Crashes are SIGKILLs injected with SKYLAKE_FAULT at
named points of the ingest and commit path (skylake.lake.faults); the lake after the re-run must
equal a clean run's, row for row.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO, run_cli

from skylake.lake import Lake
from skylake.status import lake_status

pytestmark = pytest.mark.realdata

INGEST = ["--pipeline", "skycamz", "--scheduler", "synchronous", "--batch-size", "4", "--no-progress"]


def lake_content(path) -> pd.DataFrame:
    """Every source row with its frame's content hash, in a canonical order (ids may differ by run)."""
    lake = Lake.open(path)
    frames = lake.read_frames(columns=["frame_id", "content_hash", "status"]).to_pandas()
    sources = lake.read_sources().to_pandas().drop(columns=["Norder", "Dir", "Npix"])
    assert frames["content_hash"].is_unique, "a frame landed twice"
    assert sources["source_id"].is_unique, "a source row landed twice"
    merged = sources.merge(frames, on="frame_id", how="left", validate="many_to_one")
    assert merged["content_hash"].notna().all(), "source rows without a frame row"
    return merged.drop(columns=["frame_id", "source_id"]).sort_values(["content_hash", "x", "y"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, skycamz_files):
    lake = tmp_path_factory.mktemp("clean") / "lake"
    run_cli("ingest", str(lake), str(skycamz_files[0].parent), "--create", *INGEST, check=True)
    return lake_content(lake)


@pytest.mark.parametrize(
    "fault",
    [
        "frame_processed@6",  # mid-frames: one batch committed, the second half-processed
        "before_commit@2",  # data files staged, no log entry yet (rolled back)
        "after_commit@2",  # log entry written, nothing published (rolled forward)
        "mid_publish@3",  # some files published, some still staged (rolled forward)
        "before_cleanup@1",  # published, staging not yet removed
    ],
)
def test_sigkill_then_rerun_equals_clean_run(tmp_path, skycamz_files, clean_run, fault):
    lake = tmp_path / "lake"
    run_cli("init", str(lake), check=True)
    killed = run_cli("ingest", str(lake), str(skycamz_files[0].parent), *INGEST, env={"SKYLAKE_FAULT": fault})
    assert killed.returncode == -9, f"fault {fault} did not fire: {killed.returncode}\n{killed.stderr}"
    # Readable and consistent right after the crash: every published frame's sources are all there.
    after_crash = Lake.open(lake)
    frames = after_crash.read_frames(columns=["n_sources"]).column("n_sources").to_numpy()
    assert after_crash.read_sources(columns=["source_id"]).num_rows == frames.sum()
    rerun = run_cli("ingest", str(lake), str(skycamz_files[0].parent), *INGEST)
    assert rerun.returncode == 0, rerun.stderr
    status = lake_status(Lake.open(lake))
    assert status["consistent"] and status["frames"] == 14
    assert not list((lake / "_skylake" / "staging").iterdir()), "staging left behind"
    pd.testing.assert_frame_equal(lake_content(lake), clean_run)


def test_repair_rolls_a_committed_batch_forward(tmp_path, skycamz_files, clean_run):
    lake = tmp_path / "lake"
    run_cli("init", str(lake), check=True)
    files = [str(p) for p in skycamz_files]
    killed = run_cli(
        "ingest",
        str(lake),
        *files,
        *INGEST[:-3],
        "--batch-size",
        "14",
        "--no-progress",
        env={"SKYLAKE_FAULT": "after_commit"},
    )
    assert killed.returncode == -9
    # committed, not yet published (catch_up=False: any other reader would finish the publish itself)
    assert Lake.open(lake, catch_up=False).read_frames(columns=["frame_id"]).num_rows == 0
    out = run_cli("repair", str(lake), check=True)
    assert "rolled forward commits [1]" in out.stdout
    pd.testing.assert_frame_equal(lake_content(lake), clean_run)


def test_two_processes_at_once_land_every_row_once(tmp_path, skycamz_files, clean_run):
    lake = tmp_path / "lake"
    run_cli("init", str(lake), check=True)
    first, second = [str(p) for p in skycamz_files[:10]], [str(p) for p in skycamz_files[4:]]  # 6 in common
    cmd = [sys.executable, "-m", "skylake.cli", "ingest", str(lake)]
    opts = ["--pipeline", "skycamz", "--scheduler", "synchronous", "--batch-size", "2", "--no-progress"]
    procs = [
        subprocess.Popen(cmd + files + opts, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for files in (first, second)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    said = "\n".join(
        f"process {k} exited {p.returncode}; stderr:\n{err}" for k, (p, (_, err)) in enumerate(zip(procs, outs))
    )
    assert [p.returncode for p in procs] == [0, 0], said  # in full: a race names the file it lost
    pd.testing.assert_frame_equal(lake_content(lake), clean_run)
    log = Lake.open(lake).log
    assert log.latest_version() == log.published_version() >= 5  # both wrote, batch by batch


def test_reingest_is_a_noop_and_redo_replaces(tmp_path, skycamz_files, clean_run):
    lake = tmp_path / "lake"
    files = [str(p) for p in skycamz_files[:3]]
    run_cli("ingest", str(lake), *files, "--create", *INGEST, check=True)
    version = Lake.open(lake).log.latest_version()
    again = run_cli("ingest", str(lake), *files, *INGEST, check=True)
    assert "3 already in the lake" in again.stdout
    assert Lake.open(lake).log.latest_version() == version
    before = lake_content(lake)
    old_ids = set(Lake.open(lake).read_frames(columns=["frame_id"]).column("frame_id").to_pylist())
    run_cli("ingest", str(lake), *files, *INGEST, "--redo", check=True)
    redone = Lake.open(lake)
    new_ids = set(redone.read_frames(columns=["frame_id"]).column("frame_id").to_pylist())
    assert len(new_ids) == 3 and not (new_ids & old_ids)  # explicit reprocessing: new frame rows
    pd.testing.assert_frame_equal(lake_content(lake), before)  # same data, nothing doubled
