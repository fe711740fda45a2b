"""The 14 real SkyCamZ frames among 50 kinds of hostile file, through the command line: every bad file
is exactly one rejected frame row with its own specific reason, the good frames come out exactly as in
a clean run, and nothing prints a traceback. Also: unreadable directories, duplicates within a batch,
files too large to read."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from conftest import run_cli

from skylake.ingest import EXIT_SOME_REJECTED
from skylake.lake import Lake
from skylake.pipeline import ingest
from skylake.profile import load_profile
from skylake.synthetic.hostile_files import NON_UTF8_NAME, write_hostile_files
from skylake.tasks.frame import process_file, stored_path

pytestmark = pytest.mark.realdata


def _sources(lake: Lake):
    """Every source row with its frame's content hash instead of the ids a run allocates."""
    frames = lake.read_frames(columns=["frame_id", "content_hash"]).to_pandas()
    sources = lake.read_sources().to_pandas().merge(frames, on="frame_id")
    return (
        sources.drop(columns=["frame_id", "source_id"]).sort_values(["content_hash", "x", "y"]).reset_index(drop=True)
    )


@pytest.fixture(scope="module")
def batch(tmp_path_factory, skycamz_files):
    d = tmp_path_factory.mktemp("hostile")
    for f in skycamz_files:
        shutil.copy(f, d / f.name)
    expected = write_hostile_files(d / "bad", skycamz_files[0])
    return d, expected


def test_hostile_files_are_each_one_rejected_row_and_the_batch_goes_on(tmp_path, batch, skycamz_files, dask_client):
    directory, expected = batch
    assert len(expected) >= 40 and len(set(expected.values())) == len(expected)
    lake = tmp_path / "lake"
    out = run_cli(
        "ingest", str(lake), str(directory), "--pipeline", "skycamz", "--create", "--workers", "2", "--no-progress"
    )
    assert out.returncode == EXIT_SOME_REJECTED, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr
    last = out.stdout.splitlines()[-1]  # the outcome by kind
    assert last.startswith(f"14 of {14 + len(expected)} files ingested") and f"{len(expected)} rejected (" in last, last

    frames = Lake.open(lake).read_frames().to_pandas()
    frames["name"] = frames["path"].str.rsplit("/", n=1).str[-1]
    good = frames[frames["name"].isin([f.name for f in skycamz_files])]
    assert len(good) == 14 and (good["status"] == "ok").all()
    bad = frames[~frames.index.isin(good.index)]
    assert sorted(bad["name"]) == sorted(stored_path(name) for name in expected)  # one row per file
    assert (bad["status"] == "rejected").all() and (bad["n_sources"] == 0).all()
    reasons = dict(zip(bad["name"], bad["reason"]))
    for name, fragment in expected.items():
        assert fragment in reasons[stored_path(name)], (name, reasons[stored_path(name)])
    assert not any("internal error" in r for r in reasons.values())
    assert reasons[stored_path(NON_UTF8_NAME)].endswith("rename the file to ingest it")

    # The good frames' sources are exactly a clean run's.
    clean = Lake.init(tmp_path / "clean")
    report = ingest(clean, [str(f) for f in skycamz_files], "skycamz", client=dask_client, progress=False)
    assert report.ingested == 14 and not report.rejected
    mixed, alone = _sources(Lake.open(lake)), _sources(clean)
    assert len(mixed) == len(alone) == good["n_sources"].sum()
    assert mixed.equals(alone)


def test_unreadable_directory_is_warned_about_and_counted(tmp_path, skycamz_files, monkeypatch, caplog):
    """A directory os.walk cannot list (simulated: the tests may run as root, who lists anything) is a
    warning and counts against the exit code, not a silent skip."""
    from skylake import ingest as ingest_module

    top = tmp_path / "frames"
    top.mkdir()
    shutil.copy(skycamz_files[0], top / skycamz_files[0].name)
    real_walk = os.walk

    def walk(path, onerror=None):
        onerror(PermissionError(13, "Permission denied", str(top / "locked")))
        yield from real_walk(path, onerror=onerror)

    monkeypatch.setattr(ingest_module.os, "walk", walk)
    report = ingest(Lake.init(tmp_path / "lake"), [str(top)], "skycamz", progress=False)
    assert report.ingested == 1 and report.unreadable == [str(top / "locked")]
    assert report.exit_code == EXIT_SOME_REJECTED
    assert f"cannot list directory {top / 'locked'} (Permission denied)" in caplog.text


def test_duplicates_within_a_batch_are_named_as_such(tmp_path, skycamz_files, caplog):
    d = tmp_path / "frames"
    d.mkdir()
    shutil.copy(skycamz_files[0], d / "a.fits")
    shutil.copy(skycamz_files[0], d / "b.fits")  # the same bytes under another name
    shutil.copy(skycamz_files[1], d / "c.fits")
    shutil.copy(skycamz_files[1], d / "d.fits")
    lake = Lake.init(tmp_path / "lake")
    report = ingest(lake, [str(d)], "skycamz", progress=False, batch_size=3)  # c and d in different batches
    assert report.ingested == 2 and report.duplicates == 0
    assert sorted((os.path.basename(a), os.path.basename(b)) for a, b in report.batch_duplicates) == [
        ("b.fits", "a.fits"),
        ("d.fits", "c.fits"),
    ]
    assert "is the same frame as" in caplog.text
    assert lake.read_frames(columns=["frame_id"]).num_rows == 2


def test_file_above_max_image_mb_is_rejected_unread(tmp_path, skycamz_files):
    prof = tmp_path / "small.toml"
    prof.write_text('extends = "skycamz"\n[profile]\nname = "small"\nmax_image_mb = 1.0\n')
    (result,) = process_file(str(skycamz_files[0]), load_profile(prof))
    assert result.record["status"] == "rejected"
    assert result.record["reason"] == "file is larger than 1 MB ([profile] max_image_mb)"
    assert result.record["content_hash"] and result.record["file_size"] == skycamz_files[0].stat().st_size


def test_every_hostile_file_in_process_matches_its_reason(batch):
    """The same table without the cluster (fast to debug): each file gives one rejected record."""
    directory, expected = batch
    profile = load_profile("skycamz")
    for name, fragment in expected.items():
        results = process_file(os.path.join(directory, "bad", name), profile)
        assert len(results) == 1, name
        assert results[0].record["status"] == "rejected" and fragment in results[0].record["reason"], (
            name,
            results[0].record["reason"],
        )
        assert np.isfinite(results[0].record["processing_s"])
