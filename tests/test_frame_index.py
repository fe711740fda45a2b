"""The frame index (skylake.lake.frame_index) answers "which frames does the lake hold for these files?"
exactly as the frames table does, after every kind of change, while reading only the batch's buckets.
SYNTHETIC frames (skylake.synthetic), in-process (no cluster)."""

from __future__ import annotations

import shutil

import pytest

from skylake.lake import Lake, counts, frame_index
from skylake.lake.nights import night_partition
from skylake.lake.tables import FRAMES, SOURCES
from skylake.pipeline import ingest
from skylake.status import format_status, lake_status
from skylake.synthetic import write_bad_files, write_demo_night

NIGHT = dict(
    n_frames=4,
    shape=(256, 256),
    start_utc="2026-03-01T22:00:00",
    cadence_s=1200,
    n_stars=200,
    seed=11,
    cloud=False,
    n_variables=0,
)


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
    status = format_status(lake_status(lake))
    (tmp_path / "lake" / counts.COUNTS).unlink()  # ... and before the status totals
    lake = Lake.open(tmp_path / "lake")
    assert not frame_index.ready(lake) and counts.read(lake) is None
    assert format_status(lake_status(lake)) == status  # from the tables meanwhile
    one = expected[0]  # look-ups read the frames table meanwhile
    assert frame_index.lookup(lake, hashes=[one["content_hash"]]).to_pylist() == [one]
    version = lake.log.latest_version()
    report = ingest(lake, [str(frames)], "demo", progress=False)  # a no-op re-ingest: builds the index
    assert report.skipped == 4 and report.ingested == 0
    assert frame_index.ready(lake) and counts.read(lake) is not None and lake.log.latest_version() == version + 2
    assert [lake.log.read(version + k).operation for k in (1, 2)] == ["frame-index", "counts"]
    assert indexed(lake) == expected
    assert format_status(lake_status(lake)).split("  last commit")[0] == status.split("  last commit")[0]


def test_bucket_of_is_stable_and_spread():
    assert frame_index.bucket_of("ab" * 32, "ignored") == frame_index.bucket_of("ab" * 32, "other")
    assert frame_index.bucket_of("", "k1") == frame_index.bucket_of(None, "k1") != frame_index.bucket_of("", "k2")
    buckets = {frame_index.bucket_of(f"{i:064x}", "") for i in range(20000)}
    assert len(buckets) > 0.99 * frame_index.N_BUCKETS  # 20000 hashes fill (nearly) all 4096 buckets


# -- the running totals of `skylake status` (skylake.lake.counts) ------------------------------------------
def test_status_totals_equal_the_tables_after_every_kind_of_commit(tmp_path, frames, dask_client):
    """Ingest with rejected files, calibrate, --redo (dropping the frames' zeropoints), a second version,
    recalibration and compaction: after each, the checkpoint equals the totals recomputed from the tables."""
    from skylake.calib.calibrate import calibrate
    from skylake.lake.compact import compact
    from skylake.refcat import import_refcat
    from skylake.synthetic import write_reference_catalog

    truth = write_demo_night(tmp_path / "again", **NIGHT)  # the same night again, for its stars
    data, columns_map = write_reference_catalog(truth.stars, tmp_path / "refcat")
    lake = Lake.init(tmp_path / "lake")
    import_refcat(lake, "demo", [data], "generic", columns_map=columns_map, client=dask_client, progress=False)

    def check():
        mine, tables = counts.read(lake), counts.from_tables(lake, 0)
        mine.pop("version"), tables.pop("version")
        assert mine == tables

    write_bad_files(tmp_path / "bad", sorted(frames.glob("*.fits"))[0])
    ingest(lake, [str(frames), str(tmp_path / "bad")], "demo", client=dask_client, progress=False)
    check()
    totals, n_bad = counts.read(lake), len(list((tmp_path / "bad").iterdir()))
    assert totals["frames"] == 4 + n_bad and totals["by_status"] == {"ok": 4, "rejected": n_bad}
    # calibration writes a row for every frame it was given, rejected ones included
    assert totals["calibrations"]["demo"] == {"frames": 4 + n_bad, "rows_by_status": {"frame_rejected": n_bad, "ok": 4}}
    ingest(lake, [str(frames)], "demo", redo=True, client=dask_client, progress=False)  # recalibrated in the run
    check()
    ingest(lake, [str(frames)], "generic", keep_versions=True, progress=False)
    check()
    calibrate(lake, refcat="demo", redo=True, client=dask_client)
    check()
    compact(lake)
    check()
    text = format_status(lake_status(lake))
    assert f"calibrated   {counts.read(lake)['calibrations']['demo']['frames']} frames against demo" in text


def test_status_reads_the_same_few_files_whatever_the_archive(tmp_path, frames, monkeypatch):
    """``status`` reads lake.json, the published version, the last log entry and the running totals, and
    nothing else (no night's file, no partition list, no listing of the log), on a lake of one night and
    on the same lake with 2000 more frame rows over 200 more nights; the totals name no night."""
    import numpy as np

    from skylake.lake.hats_meta import count_partitions
    from skylake.lake.log import LAKE_FILE, PUBLISHED, entry_path
    from skylake.lake.storage import LocalStorage
    from skylake.synthetic.summary_rows import commit_archive

    lake = Lake.init(tmp_path / "lake")
    ingest(lake, [str(frames)], "demo", progress=False)
    reads = []
    for name in ("exists", "read_bytes", "read_text", "listdir", "walk_files", "walk_all"):
        orig = getattr(LocalStorage, name)

        def traced(self, rel, *args, _name=name, _orig=orig, **kw):
            reads.append((_name, rel))
            return _orig(self, rel, *args, **kw)

        monkeypatch.setattr(LocalStorage, name, traced)

    def status():
        reads.clear()
        out = lake_status(Lake.open(lake.url))
        version = lake.log.published_version()
        expected = [
            ("exists", entry_path(version)),
            ("exists", entry_path(version + 1)),
            ("read_bytes", LAKE_FILE),
            ("read_bytes", PUBLISHED),
            ("read_bytes", entry_path(version)),
            ("read_bytes", counts.COUNTS),
        ]
        return out, sorted(set(reads)), sorted(expected)

    small, read, expected = status()
    assert (
        read == expected and small["nights"] == 1 and small["partitions"] == count_partitions(lake.store, SOURCES) > 0
    )
    commit_archive(lake, 2000, 200, np.random.default_rng(1))
    big, read, expected = status()
    nights = {night_partition(n) for n in lake.read_frames(columns=["night"]).column("night").to_pylist()}
    assert read == expected and big["nights"] == len(nights) > 100 and big["frames"] == small["frames"] + 2000
    assert big["partitions"] == small["partitions"]
    assert not any(n in lake.store.read_text(counts.COUNTS) for n in nights)

    # a checkpoint written before the night and partition counts (frames per night, no partitions) is read
    # as it was, and the next commit rewrites it in the new form
    old = counts.read(lake)
    old["nights"] = {n: 1 for n in sorted(nights)}
    del old["partitions"]
    lake.store.write_bytes(counts.COUNTS, counts.dumps(old))
    assert lake_status(Lake.open(lake.url))["nights"] == len(nights)
    assert lake_status(Lake.open(lake.url))["partitions"] == big["partitions"]
    commit_archive(lake, 10, 1, np.random.default_rng(2), first_night="2030-01-01")
    assert counts.read(lake)["nights"] == len(nights) + 1 and "2030-01-01" not in lake.store.read_text(counts.COUNTS)


def test_a_bucket_file_replaced_between_listing_and_reading_is_listed_again(tmp_path, frames, monkeypatch):
    """An ingest looks frames up without the lock: another writer's commit may replace the bucket file it
    just listed (seen as a FileNotFoundError in a two-process ingest); the bucket is listed and read again."""
    lake = Lake.init(tmp_path / "lake")
    ingest(lake, [str(frames)], "demo", progress=False)
    expected = indexed(lake)
    read, vanished = lake.store.read_parquet, []

    def replaced_once(rel, **kwargs):
        if not vanished:
            vanished.append(rel)
            raise FileNotFoundError(lake.store.full(rel))
        return read(rel, **kwargs)

    monkeypatch.setattr(lake.store, "read_parquet", replaced_once)
    assert indexed(lake) == expected and len(vanished) == 1
    monkeypatch.setattr(lake.store, "read_parquet", lambda rel, **kwargs: (_ for _ in ()).throw(FileNotFoundError(rel)))
    with pytest.raises(FileNotFoundError):  # a file that stays missing is still an error
        indexed(lake)


def test_a_night_file_replaced_between_listing_and_reading_is_listed_again(tmp_path, frames, monkeypatch):
    """Readers of the night tables take no lock: a commit may replace a night's file (a re-ingest, a
    compaction) after the reader listed it. The read lists again and finds the rows in the new file; a
    file that stays missing is still an error naming the table."""
    import os

    from skylake.errors import LakeError
    from skylake.lake.tables import FRAMES

    lake = Lake.init(tmp_path / "lake")
    ingest(lake, [str(frames)], "demo", progress=False)
    expected = lake.read_frames().sort_by("frame_id")
    listing, moved = lake._night_dataset, []

    def replaced_after_listing(table, nights=None):
        dataset = listing(table, nights)
        if not moved:  # the writer's commit lands between this listing and the read
            old = dataset.files[0]
            os.rename(old, os.path.join(os.path.dirname(old), "replaced.parquet"))
            moved.append(old)
        return dataset

    monkeypatch.setattr(lake, "_night_dataset", replaced_after_listing)
    assert lake.read_frames().sort_by("frame_id").equals(expected) and len(moved) == 1
    night = lake.read_frames(columns=["night"]).column("night")[0].as_py()
    assert lake.read_night_table(FRAMES, nights=[night]).num_rows == expected.num_rows

    def gone(table, nights=None):
        raise FileNotFoundError(lake.store.full(f"{table}/missing.parquet"))

    monkeypatch.setattr(lake, "_night_dataset", gone)
    with pytest.raises(LakeError, match="cannot read the frames table"):
        lake.read_frames()


def test_no_frame_changes_once_the_index_is_rewritten(tmp_path, frames):
    """ingest rewrites the index's buckets before its writers finish (Transaction.stage_frame_index); a frame
    staged after that would miss its bucket, so the transaction refuses it and commits nothing."""
    lake = Lake.init(tmp_path / "lake")
    ingest(lake, [str(frames)], "demo", progress=False)
    rows = lake.read_frames()
    before = lake.log.latest().version
    with pytest.raises(RuntimeError, match="after the frame index was rewritten"), lake.transaction("test") as tx:
        tx.stage_nights(FRAMES, rows.slice(0, 1), ["2026-03-01"])
        tx.stage_frame_index()
        tx.stage_nights(FRAMES, rows.slice(1, 1), ["2026-03-01"])
    assert lake.log.latest().version == before and indexed(lake) == from_frames(lake)
