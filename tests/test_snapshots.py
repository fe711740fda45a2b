"""Snapshots, time travel and vacuum: ``open_lake(url, version=N)`` and ``skylake status --version N``
read exactly commit N's rows after later ingests, a recalibrating ``--redo`` and compaction; the files
those commits removed stay out of the table directories (lsdb and DuckDB count only live rows) until
``skylake vacuum``, which deletes only what no kept version needs; a publish killed while it moves
removed files, then finished by the next command, leaves the same lake as a clean run.

The lake holds SYNTHETIC frames (skylake.synthetic, calibrated against their own reference catalogue)
and SYNTHETIC detections (skylake.synthetic.detections), so every expected row is known.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from conftest import duckdb_counts, lsdb_count, make_synthetic_lake, run_cli

from skylake.calib.store import MATCHES, ZEROPOINTS
from skylake.errors import LakeError
from skylake.lake import Lake, LakeView, history, open_lake
from skylake.lake.compact import compact
from skylake.lake.snapshot import Snapshot, format_vacuum, vacuum
from skylake.pipeline import ingest
from skylake.refcat import import_refcat
from skylake.status import lake_status
from skylake.synthetic import write_demo_night, write_reference_catalog
from skylake.synthetic.detections import commit_night, random_stars

NIGHT = dict(
    n_frames=2,
    shape=(256, 256),
    start_utc="2026-03-01T22:00:00",
    cadence_s=1200,
    n_stars=300,
    seed=5,
    cloud=False,
    n_variables=0,
)
TABLES = {
    "sources": ["source_id", "frame_id", "ra", "dec", "inst_mag"],
    "frames": ["frame_id", "status", "night"],
    ZEROPOINTS: ["frame_id", "refcat", "zp", "night"],
    MATCHES: ["frame_id", "source_id", "night"],
}
#: Status fields that say how the lake was read, not what it held.
HOW_READ = {"lake", "consistent", "published_version", "version"}


def rows(lake: Lake) -> dict[str, pa.Table]:
    """Every table the history touches, sorted, so equal contents compare equal."""
    out = {}
    for table, columns in TABLES.items():
        data = lake.read_sources(columns=columns) if table == "sources" else lake.read_night_table(table, columns)
        keys = [(c, "ascending") for c in columns if c in ("frame_id", "source_id", "refcat")]
        out[table] = data.sort_by(keys)
    return out


def what_it_held(status: dict) -> dict:
    return {k: v for k, v in status.items() if k not in HOW_READ}


@pytest.fixture(scope="module")
def history_lake(tmp_path_factory, dask_client):
    """A lake with a history: a calibrated ingest, a SYNTHETIC night, an ingest --redo (removes the
    frames' sources, frames, zeropoints and matches), a compaction (swaps partitions and nights), one
    more night. Returns (path, {version: (rows, live status right after it)}, {version: a Snapshot
    opened right after it})."""
    root = tmp_path_factory.mktemp("snapshots")
    truth = write_demo_night(root / "frames", **NIGHT)
    data, columns_map = write_reference_catalog(truth.stars, root / "refcat")
    lake = Lake.init(root / "lake")
    import_refcat(lake, "demo", [data], "generic", columns_map=columns_map, client=dask_client, progress=False)
    rng = np.random.default_rng(3)
    stars = random_stars(300, (10.0, 14.0), (0.0, 3.0), rng)
    seen, opened = {}, {}

    def record():
        version = lake.log.latest_version()
        seen[version] = (rows(lake), lake_status(lake))
        opened[version] = open_lake(lake.url, version=version)

    assert ingest(lake, [str(root / "frames")], "demo", progress=False).downstream.calibrations[0].calibrated == 2
    record()
    commit_night(lake, stars, "2026-01-01", 2, rng)
    record()
    commit_night(lake, stars, "2026-01-01", 2, rng)  # a second file in the same night and partitions
    record()
    redo = ingest(lake, [str(root / "frames")], "demo", redo=True, progress=False)
    assert redo.replaced == 2
    record()
    assert compact(lake)["nights_merged"] >= 1
    record()
    commit_night(lake, stars, "2026-01-02", 1, rng)
    record()
    operations = [lake.log.read(v).operation for v in range(1, lake.log.latest_version() + 1)]
    assert operations[:2] == ["ingest", "calibrate"] and "compact" in operations and len(seen) == 6
    return root / "lake", seen, opened


def test_each_version_reads_its_own_rows_after_later_redo_and_compaction(history_lake):
    path, seen, opened = history_lake
    assert {t for v in seen for t in seen[v][0] if seen[v][0][t].num_rows} == set(TABLES)
    for version, (expected, status) in seen.items():
        snapshot = open_lake(path, version=version)
        assert isinstance(snapshot, Snapshot) and snapshot.version == version
        got = rows(snapshot)
        for table in TABLES:
            assert got[table].equals(expected[table]), (version, table)
        # a snapshot opened back then reads the same, though later commits moved its files since
        for table, data in rows(opened[version]).items():
            assert data.equals(expected[table]), (version, table)
        # status at version N is what the live status said right after commit N
        assert what_it_held(lake_status(snapshot)) == what_it_held(status), version
    # the redo and the compaction removed files, which are retained, each under its commit
    kept = history.retained_versions(Lake.open(path).store)
    log = Lake.open(path).log
    removing = [v for v in range(1, log.latest_version() + 1) if any(history.retained(r) for r in log.read(v).removes)]
    assert kept == removing and len(kept) >= 2


def test_lsdb_and_duckdb_see_only_the_live_rows(history_lake):
    path, seen, _ = history_lake
    lake = Lake.open(path)
    live = {
        "sources": lake.read_sources(columns=["source_id"]).num_rows,
        "frames": lake.read_frames(columns=["frame_id"]).num_rows,
    }
    assert live["sources"] == seen[max(seen)][0]["sources"].num_rows
    assert duckdb_counts(path) == {t: (n, n) for t, n in live.items()}
    assert lsdb_count(path) == (live["sources"], live["sources"])
    con = duckdb.connect()  # recursive globs over each table directory: nothing retained below them
    for table, n in [
        ("sources", live["sources"]),
        ("frames", live["frames"]),
        (ZEROPOINTS, lake.read_night_table(ZEROPOINTS, ["frame_id"]).num_rows),
    ]:
        glob = f"{path}/{table}/dataset/**/*.parquet" if table == "sources" else f"{path}/{table}/**/*.parquet"
        assert con.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchone() == (n,)
    retained = list((path / "_skylake" / "removed").rglob("*.parquet"))
    assert len(retained) == len(_retained_removes(lake, range(1, lake.log.latest_version() + 1)))


def test_writing_through_a_snapshot_and_versions_not_kept_are_refused(history_lake):
    path, seen, _ = history_lake
    latest = max(seen)
    snapshot = open_lake(path, version=1)
    for write in (lambda: snapshot.transaction("ingest"), snapshot.check_writable, lambda: compact(snapshot)):
        with pytest.raises(LakeError, match=rf"^lake {path} is opened at version 1, read-only: cannot \w+; "):
            write()
    assert not snapshot.writable()
    # a view, not a lake with its writing turned off: it has no publishing or recovery to refuse
    assert isinstance(snapshot, LakeView) and not isinstance(snapshot, Lake)
    assert not any(hasattr(snapshot, name) for name in ("repair", "recover", "roll_forward", "_publish", "_lock"))
    for bad in (0, latest + 1, -3):
        with pytest.raises(LakeError, match=rf"^lake {path} has no version {bad}: its versions are 1\.\.{latest}$"):
            open_lake(path, version=bad)
    with pytest.raises(LakeError, match=r"version must be a commit number, got '2'"):
        open_lake(path, version="2")
    bad = run_cli("status", str(path), "--version", str(latest + 5))
    assert bad.returncode == 2 and bad.stderr == (
        f"skylake: error: lake {path} has no version {latest + 5}: its versions are 1..{latest}\n"
    )


def test_status_version_on_the_command_line(history_lake):
    path, seen, _ = history_lake
    for version in sorted(seen)[::3]:
        cli = run_cli("status", str(path), "--version", str(version), "--json", check=True)
        status = json.loads(cli.stdout)
        assert status["version"] == version and status["last_commit"]["version"] == version
        assert what_it_held(status) == what_it_held(seen[version][1])
        text = run_cli("status", str(path), "--version", str(version), check=True).stdout
        assert text.splitlines()[0] == f"lake {path} at version {version}"
        assert f"frames       {seen[version][1]['frames']} in" in text
    live = json.loads(run_cli("status", str(path), "--json", check=True).stdout)
    assert live["version"] is None and what_it_held(live) == what_it_held(seen[max(seen)][1])


def _retained_removes(lake: Lake, versions) -> set[str]:
    """The retained paths of the files the commits ``versions`` removed, from the log alone."""
    return {
        history.removed_path(v, r.lake_path) for v in versions for r in lake.log.read(v).removes if history.retained(r)
    }


def test_vacuum_deletes_only_what_no_kept_version_needs(history_lake, tmp_path):
    base, seen, _ = history_lake
    path = tmp_path / "lake"
    shutil.copytree(base, path)
    lake = Lake.open(path)
    latest = max(seen)
    removing = history.retained_versions(lake.store)
    # the redo's ingest, then two later commits that replace files (its calibration, the ensemble's replacing
    # the night's noise model: consecutive versions)
    first, later = removing[0], removing[1:]
    assert len(later) == 2 and later[0] == first + 1
    # keep the versions from `first` on: the cut-off falls after it was committed, before the next
    committed = lambda v: dt.datetime.fromisoformat(lake.log.read(v).committed_at)  # noqa: E731
    now = committed(first + 1) + dt.timedelta(days=2)
    doomed = _retained_removes(lake, [first])
    assert doomed and not _retained_removes(lake, range(1, first))
    tree = sorted(p.relative_to(path) for p in path.rglob("*"))

    dry = vacuum(lake, retain_days=2, dry_run=True, now=now)
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == tree  # nothing deleted
    assert set(dry["paths"]) == doomed and dry["files"] == len(doomed)
    assert dry["kept_versions"] == [first, latest] and dry["versions_vacuumed"] == [first]

    done = vacuum(lake, retain_days=2, now=now)
    assert {k: v for k, v in done.items() if k != "dry_run"} == {k: v for k, v in dry.items() if k != "dry_run"}
    assert done["bytes"] > 0
    assert not any((path / p).exists() for p in doomed)
    assert all((path / p).exists() for p in _retained_removes(lake, later))
    for version in sorted(v for v in seen if v >= first):  # kept versions read their rows as before
        got = rows(open_lake(path, version=version))
        assert all(got[t].equals(seen[version][0][t]) for t in TABLES), version
    for version in range(1, first):
        with pytest.raises(
            LakeError,
            match=rf"^version {version} of lake {path} was vacuumed: `skylake vacuum` "
            rf"kept versions {first}\.\.{latest}$",
        ):
            open_lake(path, version=version)
    # the live lake and its status are untouched; vacuuming again removes nothing
    assert what_it_held(lake_status(Lake.open(path))) == what_it_held(seen[latest][1])
    again = vacuum(lake, retain_days=2, now=now)
    assert again["files"] == 0 and again["kept_versions"] == [first, latest]

    # --retain 0 on the command line: only the latest version is kept, and staging leftovers go too
    leftover = path / "_skylake" / "staging" / "20200101T000000-ingest-deadbeef00" / "frames" / "x.parquet"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"12345")
    last = _retained_removes(lake, later)
    size = sum((path / p).stat().st_size for p in last)
    cli = run_cli("vacuum", str(path), "--retain", "0", check=True)
    assert cli.stdout.splitlines()[0].startswith(
        f"vacuum {path}: keeping versions {latest}..{latest} (committed after "
    )
    assert cli.stdout.splitlines()[1:] == [
        f"  removed {len(last)} retained files ({size} bytes) that the commits of versions "
        f"{f'{later[0]}..{later[1]}' if later[1] == later[0] + 1 else f'{later[0]}, {later[1]}'} "
        "replaced (only older versions read them)",
        "  removed 1 staging files (5 bytes) of 1 uncommitted batches",
    ]
    assert not list((path / "_skylake" / "removed").iterdir()) and not leftover.exists()
    assert rows(open_lake(path, version=latest))["sources"].equals(seen[latest][0]["sources"])
    with pytest.raises(LakeError, match=rf"^version {latest - 1} of lake {path} was vacuumed"):
        open_lake(path, version=latest - 1)


def test_checkpoints_bound_the_log_a_snapshot_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "CHECKPOINT_EVERY", 2)
    lake = make_synthetic_lake(tmp_path / "lake", nights=3)
    rng = np.random.default_rng(1)
    commit_night(lake, random_stars(200, (10.0, 14.0), (0.0, 3.0), rng), "2026-01-01", 2, rng)
    compact(lake)  # version 5: removes
    latest = lake.log.latest_version()
    assert latest == 5 and history.checkpoints(lake.store) == [2, 4]
    expected = {}
    for version in range(1, latest + 1):
        expected[version] = rows(open_lake(lake.url, version=version))["sources"]
        files: dict[str, int] = {}  # the replay of the whole log, by hand
        for v in range(1, version + 1):
            entry = lake.log.read(v)
            for r in entry.removes:
                files.pop(r.lake_path, None)
            files.update((a.lake_path, a.rows) for a in entry.adds if not a.table.startswith("_skylake"))
        assert {p: a.rows for p, a in history.files_at(lake.store, lake.log, version).items()} == files
    # versions 4 and 5 need only the checkpoint of 4 and entries from 4 on: hide the older entries
    log_dir = tmp_path / "lake" / "_skylake" / "log"
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for v in range(1, 4):
        (log_dir / f"{v:020d}.json").rename(hidden / f"{v:020d}.json")
    for version in (4, 5):
        assert rows(open_lake(lake.url, version=version))["sources"].equals(expected[version])
    with pytest.raises(LakeError, match=r"commit log entry .*00000000000000000003\.json is missing"):
        open_lake(lake.url, version=3)


def _normalised_tree(path: Path, compact_batch: str) -> list[str]:
    """Every file of the lake but the log and staging, with the compaction's batch id (random) masked."""
    out = []
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if p.is_file() and not rel.startswith(("_skylake/log", "_skylake/staging")) and not rel.endswith(".lock"):
            out.append(rel.replace(compact_batch, "BATCH"))
    return out


@pytest.fixture(scope="module")
def compact_base(tmp_path_factory):
    """A lake whose compaction merges partitions and a night, and the same lake compacted cleanly."""
    root = tmp_path_factory.mktemp("killed")
    lake = make_synthetic_lake(root / "base", nights=2)
    rng = np.random.default_rng(11)
    commit_night(lake, random_stars(300, (10.0, 14.0), (0.0, 3.0), rng), "2026-01-02", 2, rng)
    shutil.copytree(root / "base", root / "clean")
    out = run_cli("compact", str(root / "clean"), check=True).stdout.strip()
    assert re.fullmatch(
        rf"compact {re.escape(str(root / 'clean'))}: merged [1-9]\d* sources partitions?, merged 1 night of the "
        r"frames table \(\d+ files replaced\); committed version \d+",
        out,
    ), out
    again = json.loads(run_cli("compact", str(root / "clean"), "--json", check=True).stdout)
    assert again["version"] is None and again["partitions_merged"] == again["nights_merged"] == 0
    assert (
        run_cli("compact", str(root / "clean"), check=True)
        .stdout.strip()
        .endswith(": nothing to do (every partition and night is held in one file, no partition is over --max-rows)")
    )
    return root / "base", root / "clean"


@pytest.mark.parametrize(
    "fault,env",
    [("retained@1", {}), ("retained@9", {}), ("retained@2", {"SKYLAKE_NO_RENAME_EXCHANGE": "1"})],
    ids=["first-move", "a-later-move", "first-move-two-renames"],
)
def test_kill_while_moving_removed_files_then_next_command_leaves_the_clean_state(tmp_path, compact_base, fault, env):
    base, clean = compact_base
    path = tmp_path / "lake"
    shutil.copytree(base, path)
    killed = run_cli("compact", str(path), env={"SKYLAKE_FAULT": fault, **env})
    assert killed.returncode == -9, f"fault {fault} did not fire: {killed.returncode}\n{killed.stderr}"
    clean_counts = duckdb_counts(clean)
    assert duckdb_counts(path) == clean_counts  # right after the kill: the swaps are done, no row twice
    assert lsdb_count(path) == clean_counts["sources"]

    assert run_cli("status", str(path), env=env).returncode == 0  # the next command finishes the publish
    batch = lambda p: Lake.open(p).log.latest().batch_id  # noqa: E731
    assert _normalised_tree(path, batch(path)) == _normalised_tree(clean, batch(clean))
    assert not list((path / "_skylake" / "staging").iterdir())
    for version in range(1, Lake.open(path).log.latest_version() + 1):
        assert rows(open_lake(path, version=version))["sources"].equals(
            rows(open_lake(clean, version=version))["sources"]
        )
    assert re.search(r"removed/0+4/sources/dataset/", "\n".join(_normalised_tree(path, batch(path))))


def test_vacuum_removes_old_objects_changes_and_refresh_still_mirrors_every_object(tmp_path):
    """The objects changes files (what each objects update changed, read by refresh) of versions vacuum no
    longer keeps go with them; a database refreshed before them reads those updates' partitions whole."""
    from skylake.db import refresh
    from skylake.objects.build import build_objects, changes_rel

    lake = Lake.init(tmp_path / "lake")
    rng = np.random.default_rng(11)
    stars = random_stars(200, (10.0, 12.0), (0.0, 2.0), rng)
    commit_night(lake, stars, "2026-02-01", 3, rng)
    first = build_objects(lake).commit
    db = f"sqlite:///{tmp_path / 'summary.sqlite'}"
    refresh(lake, db)  # its watermark: the first objects update
    commit_night(lake, random_stars(50, (10.0, 12.0), (0.0, 2.0), rng), "2026-02-02", 3, rng)
    second = build_objects(lake).commit
    assert all(lake.store.exists(changes_rel(v)) for v in (first, second))

    done = vacuum(lake, retain_days=0)
    assert {changes_rel(first), changes_rel(second)} <= set(done["paths"])
    assert done["side_files"] == 2 and done["retained_files"] == done["files"] - 2
    assert (
        f"  removed 2 per-version side files ({done['side_bytes']} bytes) of versions up to {done['kept_versions'][0]} "
        "(objects change lists: a summary database not refreshed past them reads whole partitions instead)"
    ) in format_vacuum(done).splitlines()
    assert not any(lake.store.exists(changes_rel(v)) for v in (first, second))
    n_objects = lake_status(Lake.open(lake.url))["tables"]["objects"]  # the running count
    refresh(lake, db)  # from the first update's watermark: the second's partitions whole
    import sqlalchemy as sa

    engine = sa.create_engine(db)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM objects")).scalar() == n_objects > 200
    engine.dispose()
