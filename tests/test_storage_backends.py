"""Storage backends are classes chosen by the URL's scheme: a new one is one class (here a toy in-memory store,
over fsspec's ``memory://``), and the lake's commits, snapshots, compaction and the roll-forward of a publish cut
short work on it as on a local disk, row for row. Nothing outside the backends asks which one it is; a scheme
with no writer is read only and refused for writing in one line.

The rows are SYNTHETIC (skylake.synthetic.detections): every expected row is known."""

from __future__ import annotations

import ast
import contextlib
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from skylake.errors import LakeError
from skylake.lake import Lake, open_lake
from skylake.lake.compact import compact
from skylake.lake.storage import BACKENDS, LocalStorage, S3Storage, Storage, open_storage, register_backend
from skylake.lake.storage.base import hold_lock
from skylake.status import lake_status
from skylake.synthetic.detections import commit_night, random_stars


class MemoryStorage(Storage):
    """A toy backend: fsspec's in-memory filesystem, made writable by one process-wide lock."""

    schemes = ("memory",)
    writable = True
    _guard = threading.Lock()
    _locks: dict[str, threading.Lock] = {}

    def put_if_absent(self, rel, data):
        with self._guard:
            if self.exists(rel):
                return False
            self.write_bytes(rel, data)
            return True

    def link(self, src, dst):
        if not self.exists(dst):
            self.fs.copy(self.full(src), self.full(dst))

    @contextlib.contextmanager
    def lock(self, rel, blocking=True):
        with self._guard:
            held = self._locks.setdefault(self.full(rel), threading.Lock())
        if not held.acquire(blocking):
            yield False
            return
        try:
            with hold_lock(self.full(rel)):
                yield True
        finally:
            held.release()

    def probe_writable(self, rel):
        pass


@pytest.fixture
def memory_backend():
    before = BACKENDS.get("memory")
    register_backend(MemoryStorage)
    try:
        yield f"memory://lake-{uuid.uuid4().hex[:8]}"
    finally:
        if before is None:
            BACKENDS.pop("memory", None)
        else:
            BACKENDS["memory"] = before


def _history(url: str) -> list[dict]:
    """Three nights, a fourth that adds to them, and a compaction; each version's sources and frames."""
    rng = np.random.default_rng(11)
    lake = Lake.init(url)
    stars = random_stars(300, (10.0, 14.0), (0.0, 3.0), rng)
    for night in ("2026-01-01", "2026-01-02", "2026-01-03"):
        commit_night(lake, stars, night, 3, rng)
    commit_night(lake, random_stars(200, (10.0, 14.0), (0.0, 3.0), rng), "2026-01-01", 2, rng)
    compact(lake)
    return [_rows(open_lake(url, version=v)) for v in range(1, lake.log.latest_version() + 1)]


def _rows(lake) -> dict:
    src = lake.read_sources(columns=["source_id", "frame_id", "ra", "inst_mag"]).sort_by("source_id")
    frames = lake.read_frames(columns=["frame_id", "night"]).sort_by("frame_id")
    return {"sources": src.to_pydict(), "frames": frames.to_pydict()}


def test_the_scheme_chooses_the_backend():
    assert type(open_storage("/tmp/x")) is LocalStorage and type(open_storage("file:///tmp/x")) is LocalStorage
    assert type(open_storage("s3://bucket/x")) is S3Storage
    assert type(open_storage("memory://x")) is Storage  # no writer registered: read only
    with pytest.raises(TypeError, match="subclass of Storage naming its schemes"):
        register_backend(type("NoScheme", (Storage,), {}))


def test_a_toy_backend_of_one_class_commits_compacts_and_time_travels_as_a_local_disk(memory_backend, tmp_path):
    on_disk = _history(str(tmp_path / "lake"))
    in_memory = _history(memory_backend)
    assert len(in_memory) == len(on_disk) == 5
    for v, (a, b) in enumerate(zip(in_memory, on_disk), start=1):
        assert a == b, f"version {v} differs"
    status = lake_status(Lake.open(memory_backend))
    assert status["consistent"] and status["frames"] == 11


def test_a_publish_cut_short_on_the_toy_backend_is_finished_by_the_next_open(memory_backend, tmp_path, monkeypatch):
    """A writer that stops after its commit point, before publishing (what a SIGKILL leaves), has committed:
    the next open rolls the publish forward, and the lake equals a clean run's."""
    from skylake.lake import faults

    class Killed(BaseException):
        pass

    def point(name):
        if name == "after_commit":
            raise Killed

    rng = np.random.default_rng(3)
    stars = random_stars(200, (10.0, 14.0), (0.0, 3.0), rng)
    clean = Lake.init(str(tmp_path / "clean"))
    commit_night(clean, stars, "2026-01-01", 3, np.random.default_rng(4))
    lake = Lake.init(memory_backend)
    monkeypatch.setattr(faults, "point", point)
    with pytest.raises(Killed):
        commit_night(lake, stars, "2026-01-01", 3, np.random.default_rng(4))
    monkeypatch.undo()
    published, latest = Lake.open(memory_backend, catch_up=False).pending()
    assert (published, latest) == (0, 1)  # committed, not published
    assert _rows(Lake.open(memory_backend)) == _rows(clean)
    assert Lake.open(memory_backend).pending() == (1, 1)


def test_a_scheme_without_a_writer_reads_and_refuses_writes_in_one_line(memory_backend, tmp_path):
    url = memory_backend
    lake = Lake.init(url)
    commit_night(
        lake,
        random_stars(50, (10.0, 11.0), (0.0, 1.0), np.random.default_rng(1)),
        "2026-01-01",
        2,
        (np.random.default_rng(2)),
    )
    BACKENDS.pop("memory")  # the same store, now with no writer: the generic read-only backend
    reader = Lake.open(url)
    assert type(reader.store) is Storage and reader.read_sources(columns=["source_id"]).num_rows == 100
    with pytest.raises(
        LakeError, match=r"^writing needs a local filesystem or s3://; memory://.* cannot write atomically"
    ):
        reader.check_writable()


def test_nothing_outside_the_backends_asks_which_one_it_is():
    """No module outside skylake/lake/storage/ names a backend class or an is_local / is_s3 flag; the lake asks
    what a store can do (writable, swaps_directories, local_path)."""
    storage_dir = REPO / "skylake" / "lake" / "storage"
    offenders = []
    for path in sorted((REPO / "skylake").rglob("*.py")):
        if storage_dir in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name in ("is_local", "is_s3", "LocalStorage", "S3Storage"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert offenders == []
    assert Path(storage_dir / "__init__.py").exists()


def test_files_under_an_underscore_folder_are_another_tables(tmp_path):
    """A table's folder may hold another table (``maps/_index/``): reading the files the log names leaves them
    out, as pyarrow's listing does (a snapshot of the maps read the index's rows as map pixels)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skylake.lake import pinned

    store = open_storage(str(tmp_path))
    for rel in ("t/night=2026-01-01/a.parquet", "t/_index/night=2026-01-01/b.parquet"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"x": [1, 2]}), tmp_path / rel)
    schema = pa.schema([("x", pa.int64()), ("night", pa.string())])
    rels = ["night=2026-01-01/a.parquet", "_index/night=2026-01-01/b.parquet"]
    table = pinned.dataset_of(store, rels, [f"t/{r}" for r in rels], schema, pinned.NIGHT_PARTS).to_table()
    assert table.num_rows == 2 and table.column("night").to_pylist() == ["2026-01-01"] * 2


def test_a_file_the_log_names_vanishing_mid_read_is_looked_up_again(memory_backend, monkeypatch):
    """On a store without directory swaps the readers resolve the log's files; when one has moved on before it is
    read (a publish finished meanwhile), read_sources and read_frames look again instead of failing."""
    from skylake.lake import pinned

    lake = Lake.init(memory_backend)
    commit_night(
        lake,
        random_stars(50, (10.0, 11.0), (0.0, 1.0), np.random.default_rng(1)),
        "2026-01-01",
        2,
        np.random.default_rng(2),
    )
    real, calls = pinned.locate_published, []

    def flaky(store, log, table):
        calls.append(table)
        if len(calls) % 2:  # the first look of each read finds a file gone
            raise FileNotFoundError(store.full(f"{table}/gone.parquet"))
        return real(store, log, table)

    monkeypatch.setattr(pinned, "locate_published", flaky)
    reader = Lake.open(memory_backend)
    assert reader.read_sources(columns=["source_id"]).num_rows == 100
    assert reader.read_frames(columns=["frame_id"]).num_rows == 2
    assert calls == ["sources", "sources", "frames", "frames"]
