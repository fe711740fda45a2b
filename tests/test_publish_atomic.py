"""Interrupted publishes: compaction publishes each partition (a split: the whole table) in one atomic
step, so lsdb and DuckDB listing the files never count a row twice even right after a SIGKILL; and
the next command of any kind (status, refresh, report, a Python reader) finishes the publish, with no
`skylake repair` and no "UNIQUE constraint failed" from refresh.

Crashes are SIGKILLs at named points (skylake.lake.faults) of real CLI subprocesses. The compaction
lakes hold SYNTHETIC rows (skylake.synthetic.detections); the ingest test uses the 14 real SkyCamZ frames.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import REPO, duckdb_counts, lsdb_count, make_synthetic_lake, read_only, run_cli

from skylake.db import refresh
from skylake.lake import Lake
from skylake.status import lake_status
from skylake.synthetic.detections import commit_night, random_stars


@pytest.fixture(scope="module")
def compact_base(tmp_path_factory):
    """A lake of 3 commits (two in the same night, so a night is merged too), mirrored into its SQLite
    summary database, and its clean counts."""
    path = tmp_path_factory.mktemp("atomic") / "lake"
    lake = make_synthetic_lake(path, nights=2)
    rng = np.random.default_rng(11)
    commit_night(lake, random_stars(300, (10.0, 14.0), (0.0, 3.0), rng), "2026-01-02", 2, rng)
    refresh(lake)
    frames = lake.read_frames(columns=["frame_id"]).num_rows
    rows = lake.read_sources(columns=["source_id"]).num_rows
    assert len({f.rsplit("/", 1)[0] for f in lake.live_files("sources")}) < len(lake.live_files("sources"))
    return path, {"sources": (rows, rows), "frames": (frames, frames)}


MERGE = ["after_commit", "swap_ready@1", "swapped@1", "swapped@3", "before_metadata", "before_cleanup"]
SPLIT = ["swap_ready@2", "swapped@2"]  # swaps: the night, then the whole sources table
NEXT = ["status", "refresh", "report", "python"]
CASES = [(f, [], NEXT[i % 4]) for i, f in enumerate(MERGE)] + [
    (f, ["--max-rows", "150"], NEXT[(i + 1) % 4]) for i, f in enumerate(SPLIT)
]


def _next_command(kind: str, lake: Path, tmp_path: Path, pending: bool):
    if kind == "python":
        reader = Lake.open(lake)  # readers finish the publish too
        assert reader.log.published_version() == reader.log.latest_version()
        return
    args = {
        "status": ["status", str(lake)],
        "refresh": ["refresh", str(lake)],
        "report": ["report", str(lake), str(tmp_path / "site")],
    }[kind]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert ("finished publishing commit" in result.stderr) == pending  # said, as a warning


@pytest.mark.parametrize(
    "fault,args,next_command", CASES, ids=[f"{f}-{'split' if a else 'merge'}-then-{n}" for f, a, n in CASES]
)
def test_compaction_killed_mid_publish_never_doubles_and_the_next_command_finishes(
    tmp_path, compact_base, fault, args, next_command
):
    base, clean = compact_base
    lake = tmp_path / "lake"
    shutil.copytree(base, lake)
    killed = run_cli("compact", str(lake), *args, env={"SKYLAKE_FAULT": fault})
    assert killed.returncode == -9, f"fault {fault} did not fire: {killed.returncode}\n{killed.stderr}"
    # Right after the kill, before any skylake command: external readers count exactly the clean rows.
    assert duckdb_counts(lake) == clean
    assert lsdb_count(lake) == clean["sources"]

    _next_command(next_command, lake, tmp_path, pending=fault != "before_cleanup")
    status = lake_status(Lake.open(lake))
    assert status["consistent"] and status["published_version"] == status["last_commit"]["version"]
    assert status["last_commit"]["operation"] == "compact"
    assert (status["source_rows"], status["frames"]) == (clean["sources"][0], clean["frames"][0])
    assert duckdb_counts(lake) == clean and lsdb_count(lake) == clean["sources"]
    # a reader publishes, it does not clean up: a kill after publishing leaves the staging for the next writer
    assert fault == "before_cleanup" or not list((lake / "_skylake" / "staging").iterdir())
    # refresh succeeded without repair (when it was the next command) and mirrors each frame once
    if next_command not in ("refresh", "report"):
        refresh(lake)
    db = sa.create_engine(f"sqlite:///{lake / '_skylake' / 'summary.sqlite'}")
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT frame_id) FROM frames")).one() == clean["frames"]
    db.dispose()


@pytest.mark.parametrize("fault", ["swap_fallback_half@3"])
def test_without_rename_exchange_a_partition_is_briefly_missing_never_doubled(tmp_path, compact_base, fault):
    """The documented fallback (no RENAME_EXCHANGE): two renames, so a kill between them leaves one
    directory missing (rows absent, never twice) until the next command puts it back."""
    base, clean = compact_base
    lake = tmp_path / "lake"
    shutil.copytree(base, lake)
    env = {"SKYLAKE_FAULT": fault, "SKYLAKE_NO_RENAME_EXCHANGE": "1"}
    assert run_cli("compact", str(lake), env=env).returncode == -9
    counts = duckdb_counts(lake)
    for table in ("sources", "frames"):
        rows, distinct = counts[table]
        assert rows == distinct <= clean[table][0]
    assert run_cli("refresh", str(lake), env={"SKYLAKE_NO_RENAME_EXCHANGE": "1"}).returncode == 0
    assert duckdb_counts(lake) == clean and lsdb_count(lake) == clean["sources"]
    assert lake_status(Lake.open(lake))["consistent"]


@pytest.mark.realdata
# a 4-frame batch publishes 8 files (2 source partitions, the night's frames and psf_grid files, 4 frame-index
# buckets): @9 is the second batch's first file
@pytest.mark.parametrize("fault", ["mid_publish@9", "before_metadata@2"])
def test_ingest_killed_mid_publish_shows_at_most_that_batch_then_the_next_command_finishes(
    tmp_path, skycamz_files, fault
):
    lake = tmp_path / "lake"
    run_cli("init", str(lake), check=True)
    ingest = [
        "ingest",
        str(lake),
        str(skycamz_files[0].parent),
        "--pipeline",
        "skycamz",
        "--scheduler",
        "synchronous",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    assert run_cli(*ingest, env={"SKYLAKE_FAULT": fault}).returncode == -9
    on_disk = Lake.open(lake, catch_up=False)
    published, latest = on_disk.log.published_version(), on_disk.log.latest_version()
    assert latest == 2 and published in (1, 2)
    low, high = on_disk.log.read(1).sources_rows, on_disk.log.read(2).sources_rows
    rows, distinct = duckdb_counts(lake)["sources"]
    assert low <= rows <= high and rows == distinct  # part of batch 2 at most, never a row twice
    assert lsdb_count(lake)[0] == lsdb_count(lake)[1]

    assert run_cli("refresh", str(lake)).returncode == 0  # no repair needed
    status = lake_status(Lake.open(lake))
    assert status["consistent"] and status["source_rows"] == status["source_rows_committed"] == high
    assert duckdb_counts(lake)["sources"] == (high, high) and lsdb_count(lake) == (high, high)


# -- who finishes the publish ---------------------------------------------------------------------------
def _commit_killed_after_the_commit_point(lake: Path):
    code = (
        "import numpy as np; from skylake.lake import Lake; "
        "from skylake.synthetic.detections import commit_night, random_stars; "
        "rng = np.random.default_rng(5); "
        f"commit_night(Lake.open({str(lake)!r}), random_stars(60, (10.0, 14.0), (0.0, 3.0), rng), "
        "'2026-02-01', 2, rng)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "SKYLAKE_FAULT": "after_commit"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr


def test_a_reader_leaves_the_publish_to_the_writer_holding_the_lock(tmp_path, caplog):
    lake = tmp_path / "lake"
    make_synthetic_lake(lake, nights=1)
    _commit_killed_after_the_commit_point(lake)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; fh = open(sys.argv[1], 'a'); fcntl.flock(fh, fcntl.LOCK_EX); "
            "print('locked', flush=True); sys.stdin.read()",
            str(lake / "_skylake" / "writer.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        reader = Lake.open(lake, catch_up=False)
        assert reader.catch_up(wait=0.2) == 1  # not published by us: another writer holds the lock
        assert "another writer holds the lock" in caplog.text
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()
    assert Lake.open(lake).log.published_version() == 2  # lock free: the next reader publishes it


def test_a_read_only_lake_with_an_unpublished_commit_is_read_with_a_warning(tmp_path, caplog):
    lake = tmp_path / "lake"
    make_synthetic_lake(lake, nights=1)
    _commit_killed_after_the_commit_point(lake)
    with read_only(lake):
        reader = Lake.open(lake)
        assert reader.log.published_version() == 1
        assert "is read-only for this process and commits 2..2 are committed but not yet published" in caplog.text
        assert reader.read_frames(columns=["frame_id"]).num_rows == 3  # as on disk: commit 1
        status = run_cli("status", str(lake))
        assert status.returncode == 0 and "not published; run `skylake repair`" in status.stdout
    assert Lake.open(lake).log.published_version() == 2
