"""Calibration of a long selection in batches of whole nights, with the pairs held by the workers: the
one-to-one step, the per-frame fits and the matches files are cluster tasks (issue 14: the driver keeps only
the batch-wide steps, from per-frame results). SYNTHETIC frames: three nights of three frames, one field,
the demo profile."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest
from distributed import get_task_stream

from skylake.calib import calibrate as calib
from skylake.calib import pairs
from skylake.calib.store import EXTINCTION, MATCHES, ZEROPOINTS, read_table
from skylake.lake import Lake
from skylake.pipeline import ingest
from skylake.profile import load_profile
from skylake.refcat import import_refcat
from skylake.synthetic import write_demo_night, write_reference_catalog

NIGHTS = ("2026-04-01", "2026-04-02", "2026-04-03")
#: Columns that name the commit, not the calibration.
COMMIT_COLUMNS = ["batch_id", "calibrated_at"]


def test_night_batches_keep_nights_whole():
    # sources: night a 2 x 100, night b 5 x 100, the unknown night 1 (rejected: no sources), night c 100
    frames = pd.DataFrame(
        {"frame_id": range(9), "night": ["a"] * 2 + ["b"] * 5 + [None] + ["c"], "n_sources": [100] * 7 + [None, 100]}
    )
    batches = calib.night_batches(frames, max_sources=201)
    # nights in order (the unknown night "" first), never split; a night above the limit is alone
    assert [sorted(b["frame_id"]) for b in batches] == [[0, 1, 7], [2, 3, 4, 5, 6], [8]]
    assert [sorted(b["frame_id"]) for b in calib.night_batches(frames, max_sources=200)] == [
        [7],
        [0, 1],
        [2, 3, 4, 5, 6],
        [8],
    ]
    assert [len(b) for b in calib.night_batches(frames, max_sources=10_000)] == [9]
    assert calib.night_batches(frames.iloc[:0], max_sources=3) == []


def test_frames_split_gives_each_group_its_rows_in_one_pass():
    part = pd.DataFrame({"frame_id": [5, 3, 9, 5, 7, 3, 8], "row": range(7)})
    pieces = pairs.frames_split(part, [[3, 8], [5], [9, 4]])  # frame 7 in no group; 4 not in the partition
    assert [p["row"].tolist() for p in pieces] == [[1, 5, 6], [0, 3], [2]]
    assert pairs.frames_split(part, []) == ()
    assert [len(p) for p in pairs.frames_split(part, [[], [4]])] == [0, 0]  # no frame of the partition: no rows
    # rows in frame order (as the cross-match returns them), frame 7 in no group: each group's rows a slice
    ordered = part.sort_values("frame_id", kind="stable")
    pieces = pairs.frames_split(ordered, [[3], [5, 7], [8, 9]])  # groups in frame order: slices
    assert [p["row"].tolist() for p in pieces] == [[1, 5], [0, 3, 4], [6, 2]]
    pieces = pairs.frames_split(ordered, [[3, 5], [8, 9]])  # frame 7 (in none) between them: the sort
    assert [p["row"].tolist() for p in pieces] == [[1, 5, 0, 3], [6, 2]]
    assert [p["row"].tolist() for p in pairs.frames_split(ordered, [[3, 8], [5], [9, 4]])] == [[1, 5, 6], [0, 3], [2]]


def test_each_partition_keeps_its_main_group_and_writes_the_others_rows(tmp_path, monkeypatch):
    counts = [
        (np.array([1, 2, 3]), np.array([10, 5, 40])),  # groups 0 (frames 1, 2: 15 sources) and 1 (frame 3: 40)
        (np.array([3]), np.array([7])),  # group 1 only
        (np.array([4]), np.array([9])),  # frame 4 is not in the batch: nothing to match
        (np.array([1, 3]), np.array([5, 5])),  # a tie: the first group
    ]
    group_of = pd.Series([0, 0, 1], index=pd.Index([1, 2, 3], name="frame_id"))
    plan = pairs.split_plan(counts, group_of)
    assert [(ids.tolist(), g.tolist(), keep) for ids, g, keep in plan] == [
        ([1, 2, 3], [0, 0, 1], 1),
        ([3], [1], 1),
        ([], [], -1),
        ([1, 3], [0, 1], 0),
    ]
    part = pd.DataFrame({"frame_id": [1, 2, 1, 3], "row": range(4)})
    monkeypatch.setattr(pairs.pixel_match, "match_partition", lambda task, spec: part)
    # the first two partitions keep group 1: one task (55 + 7 sources); the tie keeps group 0: another
    tasks = pairs.match_tasks(["p0", "p1", "p2", "p3"], counts, plan, max_sources=62)
    assert [(keep, [t for t, _, _ in parts]) for keep, parts in tasks] == [(1, ["p0", "p1"]), (0, ["p3"])]
    assert len(pairs.match_tasks(["p0", "p1", "p2", "p3"], counts, plan, max_sources=61)) == 3
    kept = pairs.match_split(tasks[0][1], None, 1, str(tmp_path), "run/m0")  # keeps group 1's rows of both
    assert kept["row"].tolist() == [3, 3] and list(kept.index) == [0, 1]
    written = pairs.load_piece(pairs.piece_path("run/m0", 0), str(tmp_path))  # group 0's, through a file
    assert written["row"].tolist() == [0, 1, 2] and sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "m0-g0.pkl"
    ]
    assert pairs.load_piece(kept, None) is kept
    empty = pairs.match_split([(None, np.array([1, 9]), np.array([1, 0]))], None, 1, str(tmp_path), "run/m1")
    assert empty["row"].tolist() == [0, 2] and len(pairs.load_piece("run/m1-g0.pkl", str(tmp_path))) == 0


@pytest.fixture(scope="module")
def lake(tmp_path_factory, dask_client):
    """Three nights ingested without calibration (no refcat yet), then the catalogue imported."""
    root = tmp_path_factory.mktemp("calbatches")
    truths = [
        write_demo_night(
            root / night,
            n_frames=3,
            shape=(256, 256),
            n_stars=200,
            seed=30,
            start_utc=f"{night}T22:00:00",
            cloud=False,
            n_variables=0,
        )
        for night in NIGHTS
    ]
    lake = Lake.init(root / "lake")
    for night in NIGHTS:
        ingest(lake, [str(root / night)], "demo", client=None, progress=False)
    data, columns_map = write_reference_catalog(truths[0].stars, root / "refcat")  # the same stars every night
    import_refcat(lake, "demo", [data], "generic", columns_map=columns_map, client=dask_client, progress=False)
    return lake


def _zeropoints(lake: Lake) -> pd.DataFrame:
    return read_table(lake, ZEROPOINTS).drop(columns=COMMIT_COLUMNS).sort_values("frame_id").reset_index(drop=True)


def _matches(lake: Lake) -> pd.DataFrame:
    return read_table(lake, MATCHES).sort_values(["frame_id", "ref_id"]).reset_index(drop=True)


def _files(lake: Lake, table: str) -> list[str]:
    return sorted(lake.live_files(table))


def test_batches_commit_night_by_night_and_equal_one_batch_with_fits_on_the_cluster(lake, dask_client):
    frames = calib.select_frames(lake)
    assert len(frames) == 9 and frames["night"].nunique() == 3
    prof = load_profile("demo")
    before = lake.log.published_version()
    limit = int(frames.groupby("night")["n_sources"].sum().max()) + 1  # one night fits, two do not
    with get_task_stream(dask_client) as stream:
        report = calib.calibrate_frames(
            lake, frames, prof, "demo", batch_sources=limit, scheduler=lambda: contextlib.nullcontext(dask_client)
        )
    # one commit per night
    assert lake.log.published_version() == before + 3 and report.commit == before + 3
    assert report.calibrated == 9 and sum(report.by_status.values()) == 9 and set(report.extinction) == set(NIGHTS)
    names = [str(t["key"]) for t in stream.data]
    for task in ("count_partitions", "group_pairs", "fit_group", "write_matches"):  # the pairs' steps, on the workers
        assert any(n.startswith(task) for n in names), (task, sorted(set(n.split("-")[0] for n in names)))
    # a group task, a fit task and a writer per batch (3 frames of one field, one home partition; one night)
    assert sum(n.startswith("fit_group") for n in names) == 3 and sum(n.startswith("write_matches") for n in names) == 3
    batched, ext_batched = _zeropoints(lake), read_table(lake, EXTINCTION).drop(columns=COMMIT_COLUMNS)
    matches_batched = _matches(lake)
    assert len(matches_batched) == report.matches > 9 * 50
    assert len(_files(lake, MATCHES)) == 3  # one file per night

    # the same frames again as one batch, fitted in this process: the same rows
    again = calib.calibrate_frames(lake, frames, prof, "demo", redo=True)
    assert again.commit == before + 4 and again.calibrated == 9
    pd.testing.assert_frame_equal(_zeropoints(lake), batched)
    pd.testing.assert_frame_equal(_matches(lake), matches_batched)  # every pair, row for row
    assert len(_files(lake, MATCHES)) == 3  # the redo's one file per night replaced the three
    ext = read_table(lake, EXTINCTION).drop(columns=COMMIT_COLUMNS)
    pd.testing.assert_frame_equal(
        ext.sort_values("night").reset_index(drop=True), ext_batched.sort_values("night").reset_index(drop=True)
    )
    assert (batched["zp_status"] == "ok").sum() >= 6, batched["zp_status"].tolist()


def test_groups_of_one_frame_take_the_rows_of_other_groups_partitions_through_files(lake, dask_client, monkeypatch):
    """A field's frames in several groups (here one frame each): each partition's task keeps one group's rows and
    writes the others' to files; on the cluster (match tasks of several partitions, or one each) and in this
    process the rows are those of whole-night groups."""
    frames = calib.select_frames(lake)
    prof = load_profile("demo")
    calib.calibrate_frames(lake, frames, prof, "demo", redo=True)  # one group per night: the reference rows
    reference, matches = _zeropoints(lake), _matches(lake)
    monkeypatch.setattr(pairs, "GROUP_SOURCES", 1)  # (the driver plans the groups and the match tasks)
    for task_sources, client in ((10**9, dask_client), (1, dask_client), (10**9, None)):
        monkeypatch.setattr(pairs, "MATCH_TASK_SOURCES", task_sources)
        with get_task_stream(dask_client) as stream:
            report = calib.calibrate_frames(
                lake, frames, prof, "demo", redo=True, scheduler=lambda c=client: contextlib.nullcontext(c)
            )
        assert report.calibrated == 9
        pd.testing.assert_frame_equal(_zeropoints(lake), reference)
        pd.testing.assert_frame_equal(_matches(lake), matches)
        if client is not None:
            names = [str(t["key"]) for t in stream.data]
            assert sum(n.startswith("group_pairs") for n in names) == 9  # a group per frame
            assert sum(n.startswith("match_split") for n in names) >= 1


def test_batches_without_a_size_are_sized_to_the_cluster(lake, dask_client, monkeypatch):
    """Without ``batch_sources`` a batch holds :data:`BATCH_SOURCES_PER_WORKER` sources a worker (or
    :data:`BATCH_SOURCES`, the floor): here a night a worker, so the 2-worker cluster commits two nights
    together and this process (one worker) a night at a time."""
    frames = calib.select_frames(lake)
    prof = load_profile("demo")
    night_max = int(frames.groupby("night")["n_sources"].sum().max())
    monkeypatch.setattr(calib, "BATCH_SOURCES", 1)
    monkeypatch.setattr(calib, "BATCH_SOURCES_PER_WORKER", night_max)
    for client, commits in ((dask_client, 2), (None, 3)):
        before = lake.log.published_version()
        report = calib.calibrate_frames(
            lake, frames, prof, "demo", redo=True, scheduler=lambda c=client: contextlib.nullcontext(c)
        )
        assert report.calibrated == 9 and lake.log.published_version() == before + commits
    monkeypatch.setattr(calib, "BATCH_SOURCES", 10**9)  # the floor: one batch on any cluster
    before = lake.log.published_version()
    calib.calibrate_frames(lake, frames, prof, "demo", redo=True, scheduler=lambda: contextlib.nullcontext(dask_client))
    assert lake.log.published_version() == before + 1


@pytest.mark.parametrize("size", [0, -5])
def test_a_batch_size_below_one_is_refused_naming_it(lake, size):
    before = lake.log.published_version()
    with pytest.raises(ValueError, match=f"batch_sources={size}: a batch holds at least 1 source"):
        calib.calibrate_frames(lake, calib.select_frames(lake), load_profile("demo"), "demo", batch_sources=size)
    assert lake.log.published_version() == before


def test_a_cluster_is_entered_only_for_work_and_its_workers_size_the_batches(lake, dask_client, monkeypatch):
    """``calibrate(cluster=...)`` (the CLI's way) enters the cluster once when there is something to calibrate,
    sizes the batches by its workers (a night a worker here: two commits for three nights), and not at all
    for a run with nothing to do."""
    entered = []

    @contextlib.contextmanager
    def cluster():
        entered.append(True)
        yield dask_client

    frames = calib.select_frames(lake)
    monkeypatch.setattr(calib, "BATCH_SOURCES", 1)
    monkeypatch.setattr(calib, "BATCH_SOURCES_PER_WORKER", int(frames.groupby("night")["n_sources"].sum().max()))
    before = lake.log.published_version()
    [report] = calib.calibrate(lake, refcat="demo", redo=True, cluster=cluster)
    assert entered == [True] and report.calibrated == 9 and lake.log.published_version() == before + 2
    [again] = calib.calibrate(lake, refcat="demo", cluster=cluster)  # every frame calibrated: nothing to do
    assert entered == [True] and again.calibrated == 0 and again.skipped == 9
    assert lake.log.published_version() == before + 2
