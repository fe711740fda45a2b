"""Hostile lakes: every fault of the lake's files, of the place a lake is created, of write access and
of disk space ends in one clear line on stderr, the documented exit code (2; 1 for a full disk), and
nothing written (the directory tree is byte-identical before and after).

Lakes here hold SYNTHETIC rows (skylake.synthetic.detections, skylake.synthetic frames); commands run
through the real CLI in subprocesses. Read-only lakes are read-only bind mounts when running as root
(root ignores permission bits), permission bits otherwise; the full disk is a 1 MiB tmpfs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import _run, _unmount, make_synthetic_lake, read_only, run_cli

from skylake.errors import LakeError, LakeFullError
from skylake.lake import Lake
from skylake.lake.log import CommitLog
from skylake.synthetic import write_demo_night
from skylake.synthetic.detections import commit_night, random_stars

INGEST = ["--pipeline", "demo", "--scheduler", "synchronous", "--no-progress"]


# -- helpers ------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, str]:
    """Every directory and file below ``root`` with a hash of its content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "1m"):
    """A tmpfs of ``size`` mounted at ``path`` (root only)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {exc}")
    try:
        yield path
    finally:
        _unmount(path)


def fill(path: Path, leave_bytes: int) -> Path:
    """Write a ballast file so that only about ``leave_bytes`` stay free on ``path``'s device."""
    st = os.statvfs(path)
    ballast = path / "ballast"
    size = max(0, st.f_bavail * st.f_frsize - leave_bytes)
    with open(ballast, "wb") as fh:
        fh.write(b"\0" * size)
    return ballast


@pytest.fixture(scope="module")
def base_lake(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "lake"
    make_synthetic_lake(path)
    return path


@pytest.fixture(scope="module")
def demo_frames(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile_frames") / "night"
    write_demo_night(
        out,
        n_frames=3,
        shape=(256, 256),
        n_stars=150,
        seed=3,
        start_utc="2026-03-01T22:00:00",
        cloud=False,
        n_variables=0,
    )
    return out


# -- the table ----------------------------------------------------------------------------------------
@dataclass
class Case:
    args: list[str]
    code: int
    message: str  # regex the one line on stderr must match
    root: Path  # compared before and after
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


def _lake_copy(case_dir: Path, base_lake: Path) -> Path:
    lake = case_dir / "lake"
    shutil.copytree(base_lake, lake)
    return lake


def _edit(path: Path, content: bytes) -> None:
    path.write_bytes(content)


def case_init_on_a_file(d, base, frames):
    (d / "lake").write_text("not a directory\n")
    return Case(["init", str(d / "lake")], 2, rf"{re.escape(str(d / 'lake'))} is a file, not a directory", d)


def case_ingest_create_on_a_file(d, base, frames):
    (d / "lake").write_text("not a directory\n")
    return Case(["ingest", str(d / "lake"), str(frames), "--create", *INGEST], 2, r"is a file, not a directory", d)


def case_lake_json_not_json(d, base, frames):
    lake = _lake_copy(d, base)
    _edit(lake / "_skylake" / "lake.json", b'{"format_version": 1, "partition_')
    return Case(["status", str(lake)], 2, r"_skylake/lake\.json is corrupt, not JSON", d)


def case_lake_json_wrong_types(d, base, frames):
    lake = _lake_copy(d, base)
    _edit(lake / "_skylake" / "lake.json", json.dumps({"format_version": 1, "partition_order": "five"}).encode())
    return Case(["status", str(lake)], 2, r"lake\.json is corrupt: partition_order is 'five', expected an integer", d)


def case_lake_json_of_another_format(d, base, frames):
    lake = _lake_copy(d, base)
    _edit(lake / "_skylake" / "lake.json", json.dumps({"format_version": 7, "engine": "other"}).encode())
    return Case(["status", str(lake)], 2, r"lake\.json declares lake format 7; this skylake reads format 1", d)


def case_lake_json_not_an_object(d, base, frames):
    lake = _lake_copy(d, base)
    _edit(lake / "_skylake" / "lake.json", b"[1, 2, 3]")
    return Case(["compact", str(lake)], 2, r"lake\.json is corrupt: expected a JSON object, found list", d)


def case_log_entry_truncated(d, base, frames):
    lake = _lake_copy(d, base)
    entry = lake / "_skylake" / "log" / f"{2:020d}.json"
    _edit(entry, entry.read_bytes()[:100])
    return Case(["status", str(lake)], 2, rf"commit log entry {re.escape(str(entry))} is corrupt", d)


def case_log_entry_wrong_shape(d, base, frames):
    lake = _lake_copy(d, base)
    entry = lake / "_skylake" / "log" / f"{1:020d}.json"
    _edit(
        entry,
        json.dumps(
            {
                "version": 1,
                "batch_id": "x",
                "operation": "ingest",
                "committed_at": "now",
                "adds": [{"table": "sources"}],
            }
        ).encode(),
    )
    db = d.parent / f"{d.name}-summary.sqlite"  # outside the snapshot: SQLite creates its file on connect
    return Case(
        ["refresh", str(lake), "--db", f"sqlite:///{db}"],
        2,
        rf"commit log entry {re.escape(str(entry))} is corrupt \(adds holds",
        d,
    )


def case_published_corrupt(d, base, frames):
    lake = _lake_copy(d, base)
    _edit(lake / "_skylake" / "published", b"two\n")
    return Case(["status", str(lake)], 2, r"_skylake/published is corrupt: it holds b'two\\n'", d)


def case_published_ahead_of_the_log(d, base, frames):
    lake = _lake_copy(d, base)
    _edit(lake / "_skylake" / "published", b"9\n")
    return Case(
        ["status", "--json", str(lake)], 2, r"says version 9 is published, but the commit log has no entry 9", d
    )


def case_ingest_create_inside_a_hats_catalogue(d, base, frames):
    catalogue = d / "survey_hats"
    (catalogue / "dataset").mkdir(parents=True)
    (catalogue / "hats.properties").write_text("obs_collection=survey\ndataproduct_type=object\nhats_nrows=10\n")
    target = catalogue / "dataset" / "mylake"
    return Case(
        ["ingest", str(target), str(frames), "--create", *INGEST],
        2,
        rf"refusing to create a lake at {re.escape(str(target))}: {re.escape(str(catalogue))} is a HATS "
        r"catalogue \(it has hats\.properties\)",
        d,
    )


def case_init_at_a_hats_catalogue_root(d, base, frames):
    catalogue = d / "other_catalogue"
    catalogue.mkdir()
    (catalogue / "properties").write_text("#HATS catalog\ndataproduct_type=source\nhats_order=5\n")
    return Case(["init", str(catalogue)], 2, r"is a HATS catalogue \(it has properties\)", d)


def case_init_in_a_non_empty_directory(d, base, frames):
    target = d / "photos"
    target.mkdir()
    (target / "holiday.jpg").write_bytes(b"\xff\xd8\xff")
    return Case(["init", str(target)], 2, r"photos is not empty \(it holds holiday\.jpg\); give a new or empty", d)


def case_init_inside_another_lake(d, base, frames):
    lake = _lake_copy(d, base)
    return Case(["init", str(lake / "frames" / "nested")], 2, rf"{re.escape(str(lake))} is a skylake lake", d)


def case_init_bad_partition_order(d, base, frames):
    return Case(
        ["init", str(d / "lake"), "--partition-order", "20"],
        2,
        r"partition_order must be an integer in "
        r"0\.\.12, got 20",
        d,
    )


def case_compact_junk_parquet(d, base, frames):
    lake = _lake_copy(d, base)
    pixel = sorted((lake / "sources" / "dataset").glob("Norder=*/Dir=*/Npix=*"))[0]
    junk = pixel / "notes.parquet"
    junk.write_text("these are my notes, not Parquet\n")
    return Case(["compact", str(lake)], 2, rf"compact: {re.escape(str(junk))} is not a readable Parquet file", d)


def case_repair_read_only(d, base, frames):
    lake = _lake_copy(d, base)
    case = Case(["repair", str(lake)], 2, rf"lake {re.escape(str(lake))} is read-only for this process", d)
    case.stack.enter_context(read_only(lake))
    return case


def case_compact_read_only(d, base, frames):
    lake = _lake_copy(d, base)
    case = Case(["compact", str(lake)], 2, r"is read-only for this process .*nothing was done", d)
    case.stack.enter_context(read_only(lake))
    return case


def case_ingest_create_read_only(d, base, frames):
    lake = _lake_copy(d, base)
    case = Case(["ingest", str(lake), str(frames), "--create", *INGEST], 2, r"is read-only for this process", d)
    case.stack.enter_context(read_only(lake))
    return case


def case_ingest_disk_full(d, base, frames):
    case = Case([], 1, "", d)
    mnt = case.stack.enter_context(small_tmpfs(d / "mnt"))
    lake = mnt / "lake"
    Lake.init(lake)
    fill(mnt, leave_bytes=8192)
    case.args = ["ingest", str(lake), str(frames), *INGEST]
    # a frame task's piece (its sources) or the commit's staged files, whichever fills the device
    case.message = (
        rf"no space left on the device of lake {re.escape(str(lake))} writing \d+ bytes to "
        r"_skylake/(staging/\S+ \(ingest batch \S+\)|pieces/\S+ \(ingest, a processed frame's sources\)): "
        r"nothing was committed and the staged (batch|pieces) (was|were) removed "
        r"\(\d+ bytes already staged\); free at least \d+ bytes and re-run"
    )
    return case


CASES: list[Callable] = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("make", CASES, ids=[c.__name__[5:] for c in CASES])
def test_hostile_lake_gives_one_line_exit_code_and_writes_nothing(tmp_path, base_lake, demo_frames, make):
    d = tmp_path / "case"
    d.mkdir()
    case = make(d, base_lake, demo_frames)
    with case.stack:
        before = snapshot(case.root)
        result = run_cli(*case.args)
        after = snapshot(case.root)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == case.code, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("skylake: error: "), result.stderr
    assert re.search(case.message, lines[0]), lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert after == before, {
        k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)
    }


def test_disk_full_then_space_freed_the_rerun_ingests_everything(tmp_path, demo_frames):
    with small_tmpfs(tmp_path / "mnt", "4m") as mnt:
        lake = mnt / "lake"
        Lake.init(lake)
        ballast = fill(mnt, leave_bytes=8192)
        full = run_cli("ingest", str(lake), str(demo_frames), *INGEST)
        assert full.returncode == 1 and "no space left on the device of lake" in full.stderr
        status = Lake.open(lake)
        assert status.log.latest_version() == status.log.published_version() == 0
        assert not list((lake / "_skylake" / "staging").iterdir())
        ballast.unlink()
        again = run_cli("ingest", str(lake), str(demo_frames), *INGEST)
        assert again.returncode == 0, again.stderr
        lake_after = Lake.open(lake)
        frames = lake_after.read_frames(columns=["n_sources"]).column("n_sources").to_numpy()
        assert len(frames) == 3 and lake_after.read_sources(columns=["source_id"]).num_rows == frames.sum()


# -- a full disk at the commit point and at publishing (in-process: the write is made to fail) ---------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_at_the_commit_point_commits_nothing(tmp_path, monkeypatch):
    lake = make_synthetic_lake(tmp_path / "lake", nights=1)
    before_rows = lake.read_sources(columns=["source_id"]).num_rows
    real_fsync = os.fsync

    def fsync(fd):  # delayed allocation: a full disk surfaces at fsync, here of the log entry's temp file
        if "/_skylake/log/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(
        LakeFullError,
        match=r"no space left on the device of lake .* writing \d+ bytes to "
        r"_skylake/log/.*nothing was committed and the staged batch was removed",
    ):
        commit_night(
            lake,
            random_stars(50, (10.0, 14.0), (0.0, 3.0), np.random.default_rng(1)),
            "2026-02-01",
            2,
            np.random.default_rng(2),
        )
    monkeypatch.undo()
    again = Lake.open(lake.url)
    assert again.log.latest_version() == again.log.published_version() == 1
    assert again.read_sources(columns=["source_id"]).num_rows == before_rows
    assert not os.listdir(again.path("_skylake/staging"))


def test_disk_full_while_publishing_is_finished_by_the_next_reader(tmp_path, monkeypatch):
    lake = make_synthetic_lake(tmp_path / "lake", nights=1)
    monkeypatch.setattr(CommitLog, "set_published", _enospc)
    with pytest.raises(
        LakeFullError,
        match=r"commit 2 is in the log but not fully published; the next skylake "
        r"command publishes it once space is freed",
    ):
        commit_night(
            lake,
            random_stars(50, (10.0, 14.0), (0.0, 3.0), np.random.default_rng(1)),
            "2026-02-01",
            2,
            np.random.default_rng(2),
        )
    monkeypatch.undo()
    again = Lake.open(lake.url)  # rolls commit 2 forward
    assert again.log.published_version() == 2
    frames = again.read_frames(columns=["n_sources"]).column("n_sources").to_numpy()
    assert again.read_sources(columns=["source_id"]).num_rows == frames.sum() == again.log.latest().sources_rows


# -- reading a lake nothing was committed to ----------------------------------------------------------
def test_an_empty_lake_reads_as_empty_tables_with_the_schema(tmp_path):
    lake = Lake.init(tmp_path / "lake")
    sources, frames = lake.read_sources(), lake.read_frames()
    assert sources.num_rows == 0 and {"source_id", "ra", "Norder", "Npix"} <= set(sources.column_names)
    assert frames.num_rows == 0 and {"frame_id", "night"} <= set(frames.column_names)
    status = run_cli("status", str(lake.url), "--json", check=True)
    assert json.loads(status.stdout)["frames"] == 0


def test_check_writable_refuses_a_read_only_lake_and_a_reader_still_reads_it(tmp_path):
    lake = make_synthetic_lake(tmp_path / "lake", nights=1)
    rows = lake.read_sources(columns=["source_id"]).num_rows
    with read_only(tmp_path / "lake"):
        ro = Lake.open(tmp_path / "lake")
        with pytest.raises(LakeError, match="is read-only for this process"):
            ro.check_writable()
        assert not ro.writable()
        assert ro.read_sources(columns=["source_id"]).num_rows == rows
