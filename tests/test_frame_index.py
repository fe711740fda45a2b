"""The frame index (skylake.lake.frame_index) answers "which frames does the lake hold for these files?"
exactly as the frames table does, after every kind of change, while reading only the batch's buckets.
SYNTHETIC frames (skylake.synthetic), in-process (no cluster)."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from skylake.ingest import ingest
from skylake.lake import Lake, frame_index
from skylake.lake.lake import night_partition
from skylake.synthetic import write_bad_files, write_demo_night

NIGHT = dict(n_frames=4, shape=(256, 256), start_utc="2026-03-01T22:00:00", cadence_s=1200, n_stars=200,
             seed=11, cloud=False, n_variables=0)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("frame_index")
    write_demo_night(root / "frames", **NIGHT)
    return root / "frames"


def from_frames(lake: Lake) -> list[dict]:
    """The index rows the frames table implies, sorted by frame id."""
    cols = [c for c in frame_index.COLUMNS if c != "night"]
    table = lake.read_frames(columns=cols + ["night"])
    rows = table.select(cols).to_pylist()
    for row, night in zip(rows, table.column("night").to_pylist()):
        row["night"] = night_partition(night)
    return sorted(rows, key=lambda r: r["frame_id"])


def indexed(lake: Lake) -> list[dict]:
    rows = frame_index.read_buckets(lake, [f"{b:03x}" for b in range(frame_index.N_BUCKETS)]).to_pylist()
    return sorted(rows, key=lambda r: r["frame_id"])


def test_index_equals_the_frames_table_after_ingest_redo_versions_and_rejections(tmp_path, frames):
    lake = Lake.init(tmp_path / "lake")
    assert frame_index.ready(lake) and indexed(lake) == []
    ingest(lake, [str(frames)], "demo", progress=False)
    assert len(indexed(lake)) == 4 and indexed(lake) == from_frames(lake)
    ingest(lake, [str(frames)], "demo", redo=True, progress=False)  # 4 rows replaced by 4
    assert [r["frame_id"] for r in indexed(lake)] == [5, 6, 7, 8] and indexed(lake) == from_frames(lake)
    ingest(lake, [str(frames)], "generic", keep_versions=True, progress=False)  # a second version each
    assert len(indexed(lake)) == 8 and indexed(lake) == from_frames(lake)
    bad = write_bad_files(tmp_path / "bad", sorted(frames.glob("*.fits"))[0])
    ingest(lake, [str(tmp_path / "bad")], "demo", progress=False)
    rejected = [r for r in indexed(lake) if r["status"] == "rejected"]
    assert len(rejected) == len(bad) and indexed(lake) == from_frames(lake)
    # every bucket directory holds exactly one live file
    for b in {frame_index.bucket_of(r["content_hash"], r["frame_key"]) for r in indexed(lake)}:
        assert len(lake.store.listdir(f"{frame_index.INDEX}/{frame_index.bucket_dir(b)}")) == 1


def test_lookup_reads_the_asked_files_rows_only(tmp_path, frames):
    lake = Lake.init(tmp_path / "lake")
    ingest(lake, [str(frames)], "demo", progress=False)
    ingest(lake, [str(frames)], "generic", keep_versions=True, progress=False)
    one = from_frames(lake)[0]
    found = frame_index.lookup(lake, hashes=[one["content_hash"]]).to_pylist()
    assert sorted(r["pipeline_version"].split("+")[1].split(".")[0] for r in found) == ["demo", "generic"]
    assert all(r["content_hash"] == one["content_hash"] for r in found)
    assert frame_index.lookup(lake, hashes=["0" * 64]).num_rows == 0
    assert frame_index.lookup(lake).num_rows == 0


def test_a_lake_made_before_the_index_gets_one_at_its_next_ingest(tmp_path, frames):
    lake = Lake.init(tmp_path / "lake")
    ingest(lake, [str(frames)], "demo", progress=False)
    expected = from_frames(lake)
    shutil.rmtree(lake.path(frame_index.INDEX))  # as a lake written by skylake before the index
    lake = Lake.open(tmp_path / "lake")
    assert not frame_index.ready(lake)
    one = expected[0]  # look-ups read the frames table meanwhile
    assert frame_index.lookup(lake, hashes=[one["content_hash"]]).to_pylist() == [one]
    version = lake.log.latest_version()
    report = ingest(lake, [str(frames)], "demo", progress=False)  # a no-op re-ingest: builds the index
    assert report.skipped == 4 and report.ingested == 0
    assert frame_index.ready(lake) and lake.log.latest_version() == version + 1
    assert lake.log.latest().operation == "frame-index" and indexed(lake) == expected


def test_bucket_of_is_stable_and_spread():
    assert frame_index.bucket_of("ab" * 32, "ignored") == frame_index.bucket_of("ab" * 32, "other")
    assert frame_index.bucket_of("", "k1") == frame_index.bucket_of(None, "k1") != frame_index.bucket_of("", "k2")
    buckets = {frame_index.bucket_of(f"{i:064x}", "") for i in range(20000)}
    assert len(buckets) > 0.99 * frame_index.N_BUCKETS  # 20000 hashes fill (nearly) all 4096 buckets
    assert pa.array(sorted(buckets)).type == pa.string()
