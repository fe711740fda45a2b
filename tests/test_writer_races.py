"""Two commands on one lake at the worst instant: each race is played exactly, in one process.

Process B's real code runs at the moment process A is between naming a file and using it (two ``Lake``
objects, whose ``flock`` locks exclude each other as two processes' do): two writers' clean-ups, and readers
(a refresh, the maps index, a cone query) whose listed files another command's commit replaces. The lakes are
empty or hold SYNTHETIC summary rows (skylake.synthetic.summary_rows);
tests/test_reliability.py runs two real ingests at once on the SkyCamZ frames, where the first race was seen
(one ingest in ~15 exited 2 on ``[Errno 2] No such file or directory``).
"""

from __future__ import annotations

import os

import numpy as np

from skylake.lake import Lake, pieces
from skylake.lake.log import LOG_DIR, STAGING_DIR, staged_batches
from skylake.lake.storage.local import LocalStorage


def two_writers(tmp_path) -> tuple[Lake, Lake]:
    Lake.init(tmp_path / "lake")
    return Lake.open(tmp_path / "lake"), Lake.open(tmp_path / "lake")


def test_a_run_that_ends_while_a_commit_recovers_the_pieces_directory_is_not_an_error(tmp_path, monkeypatch):
    a, b = two_writers(tmp_path)
    b_run = pieces.piece_run(b.store)
    run = b_run.__enter__()  # B's ingest run, live
    b.store.write_bytes(f"{run}/frame-1.arrow", b"x", fsync=False)
    listdir = LocalStorage.listdir

    def listdir_then_b_ends(self, rel):
        names = listdir(self, rel)
        if rel == pieces.PIECES_DIR and self is a.store:
            b_run.__exit__(None, None, None)  # B's own clean-up, between A's listing and A's look at each name
        return names

    monkeypatch.setattr(LocalStorage, "listdir", listdir_then_b_ends)
    with a.transaction("ingest"):  # A's commit recovers first: it looks for the pieces of dead runs
        pass
    assert not os.path.exists(a.path(pieces.PIECES_DIR))


def test_a_live_runs_pieces_are_kept_and_a_dead_runs_removed(tmp_path):
    a, b = two_writers(tmp_path)
    with pieces.piece_run(b.store) as run:
        b.store.write_bytes(f"{run}/frame-1.arrow", b"x", fsync=False)
        dead = f"{pieces.PIECES_DIR}/{'0' * 32}"  # a killed run's: its directory, no lock file, old
        a.store.makedirs(dead)
        os.utime(a.path(dead), (0, 0))
        assert pieces.remove_orphans(a.store) == ["0" * 32]
        assert os.path.exists(a.path(f"{run}/frame-1.arrow"))


def test_a_writability_probe_removed_by_a_writers_recovery_is_not_an_error(tmp_path, monkeypatch):
    a, b = two_writers(tmp_path)
    unlink = os.unlink

    def b_recovers_first(path, *args, **kwargs):
        if "/.probe-" in str(path):
            monkeypatch.setattr(os, "unlink", unlink)
            b.repair()  # B's recovery under the writer lock, while A's probe exists
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", b_recovers_first)
    with a.transaction("ingest"):  # A checks it can write (a probe file) before it takes the lock
        pass


def test_recovery_keeps_probes_and_removes_cut_short_temp_files(tmp_path):
    a, _ = two_writers(tmp_path)
    for rel in (f"{LOG_DIR}/.probe-1", f"{LOG_DIR}/.abc.tmp", f"{STAGING_DIR}/.probe-2", f"{STAGING_DIR}/batch1/x"):
        a.store.write_bytes(rel, b"", fsync=False)
    assert staged_batches(a.store) == ["batch1"]
    assert a.repair()["rolled_back"] == ["batch1"]
    assert sorted(os.listdir(a.path(LOG_DIR))) == [".probe-1"]  # another process's probe is its own to remove
    assert os.listdir(a.path(STAGING_DIR)) == [".probe-2"]


def test_a_lock_whose_directory_another_process_removes_is_still_taken(tmp_path, monkeypatch):
    a, b = two_writers(tmp_path)
    b_run = pieces.piece_run(b.store)
    b_run.__enter__()
    makedirs = LocalStorage.makedirs

    def makedirs_then_b_ends(self, rel):
        makedirs(self, rel)
        if rel == pieces.PIECES_DIR and self is a.store:
            monkeypatch.setattr(LocalStorage, "makedirs", makedirs)
            b_run.__exit__(None, None, None)  # B's clean-up removes the emptied pieces directory
            assert not os.path.exists(a.path(pieces.PIECES_DIR))

    monkeypatch.setattr(LocalStorage, "makedirs", makedirs_then_b_ends)
    with pieces.piece_run(a.store) as run:
        assert os.path.isdir(a.path(run))


# -- readers (no lock) against another command's commit: each lists, then reads what it listed --------------
def replace_files(lake: Lake, table: str, rel_dir: str) -> None:
    """A commit that rewrites every data file of ``table`` in ``rel_dir`` under a new name (what an update or a
    compaction of those rows does): the same rows, the listed names gone."""
    import pyarrow.parquet as pq

    with lake.transaction("rewrite") as tx:
        for name in sorted(os.listdir(lake.path(f"{table}/{rel_dir}"))):
            data = pq.read_table(lake.path(f"{table}/{rel_dir}/{name}"))
            tx.remove(table, f"{rel_dir}/{name}", data.num_rows)
            tx.stage(table, f"{rel_dir}/{tx.batch_id}-{name}", data)
        tx.commit()


def b_commits_after_a_lists(monkeypatch, a: Lake, prefix: str, commit) -> list[str]:
    """Run ``commit()`` (process B) right after A's store first lists a directory under ``prefix``."""
    listdir, fired = LocalStorage.listdir, []

    def listdir_then_b_commits(self, rel):
        names = listdir(self, rel)
        if self is a.store and rel.startswith(prefix) and not fired:
            fired.append(rel)
            commit()
        return names

    monkeypatch.setattr(LocalStorage, "listdir", listdir_then_b_commits)
    return fired


def test_a_refresh_reads_the_nights_a_compaction_rewrites_meanwhile(tmp_path, monkeypatch):
    from skylake.db import refresh
    from skylake.lake.compact import compact
    from skylake.synthetic.summary_rows import commit_night

    a, b = two_writers(tmp_path)
    rng = np.random.default_rng(1)
    commit_night(b, "2024-01-01", 5, rng)
    commit_night(b, "2024-01-01", 5, rng)  # two files in the night: compaction merges them
    fired = b_commits_after_a_lists(monkeypatch, a, "frames/night=", lambda: compact(b))
    report = refresh(a, url=f"sqlite:///{tmp_path / 'mirror.sqlite'}")
    assert fired and report.rows["frames"] == 10


def test_the_maps_index_is_read_while_its_night_map_is_made_again(tmp_path, monkeypatch):
    from skylake.maps.store import read_index
    from skylake.synthetic.summary_rows import commit_map

    a, b = two_writers(tmp_path)
    commit_map(b, "2024-01-01", np.random.default_rng(1))
    fired = b_commits_after_a_lists(
        monkeypatch, a, "maps/_index/night=", lambda: commit_map(b, "2024-01-01", np.random.default_rng(2))
    )
    index = read_index(a)
    assert fired and len(index) == 1  # the map made again: its one row, from the file that replaced the listed


def test_a_cone_query_reads_objects_files_an_update_replaces_meanwhile(tmp_path, monkeypatch):
    from skylake.objects.query import cone_objects
    from skylake.synthetic.summary_rows import commit_night, commit_objects

    a, b = two_writers(tmp_path)
    commit_night(b, "2024-01-01", 5, np.random.default_rng(1))
    commit_objects(b, 300, np.random.default_rng(4), points=3, chunk=100)
    expected = cone_objects(a, 150.0, 20.0, 5 * 3600.0)
    walk_files, fired = LocalStorage.walk_files, []

    def walk_then_b_rewrites(self, rel, suffix=""):
        files = walk_files(self, rel, suffix)
        if self is a.store and rel.startswith("objects/dataset/Norder=") and files and not fired:
            fired.append(rel)
            replace_files(b, "objects", rel.removeprefix("objects/"))  # B rewrites the partition A just listed
        return files

    monkeypatch.setattr(LocalStorage, "walk_files", walk_then_b_rewrites)
    got = cone_objects(a, 150.0, 20.0, 5 * 3600.0)
    assert fired and got.num_rows == expected.num_rows == 50
    assert sorted(got.column("object_id").to_pylist()) == sorted(expected.column("object_id").to_pylist())


def test_a_top_directory_another_writer_removes_during_the_write_check_is_not_permission_denied(tmp_path, monkeypatch):
    import skylake.lake.storage.local as local

    a, _ = two_writers(tmp_path)
    gone = a.path("maps")
    os.makedirs(gone)
    access = os.access

    def access_while_b_removes(path, mode):
        if str(path) == str(gone) and os.path.isdir(gone):
            os.rmdir(gone)  # B's commit removed the emptied directory between A's listing and A's check
            return False
        return access(path, mode)

    monkeypatch.setattr(local.os, "access", access_while_b_removes)
    a.check_writable()  # no PermissionError: the directory is gone, not read-only
    assert not os.path.exists(gone)
