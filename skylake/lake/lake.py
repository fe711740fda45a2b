"""The lake: a directory holding the source table (HATS), the frames table and the commit log.

::

    LAKE/
      sources/                 HATS catalog, dataproduct_type=source, hats_npix_suffix=/
        hats.properties  properties  partition_info.csv  skymap.fits  point_map.fits
        dataset/_common_metadata
        dataset/Norder=k/Dir=d/Npix=n/<batch_id>.parquet     one file per pixel per batch
      frames/night=YYYY-MM-DD/<batch_id>.parquet             one row per frame tried
      _skylake/lake.json       format and settings
      _skylake/log/*.json      the commit log (skylake.lake.log)
      _skylake/published       last published version
      _skylake/staging/        files of batches not yet committed or published
      _skylake/writer.lock     one writer commits at a time

Writers process frames concurrently and serialise only the commit: under the writer lock a
transaction first rolls any interrupted commit forward (or an uncommitted one back), then stages its
files, commits with one put-if-absent and publishes. A SIGKILL at any point leaves a lake that
readers see consistently and that the next writer (or ``skylake repair``) completes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import posixpath
import socket
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from hats.pixel_math import HealpixPixel

from skylake.errors import LakeError
from skylake.lake import faults, hats_meta
from skylake.lake.log import LAKE_FILE, LOCK, STAGING_DIR, CommitLog, Entry, FileAction, staging_path
from skylake.lake.storage import Storage
from skylake.schema import table_schema

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FRAMES = "frames"
SOURCES = hats_meta.SOURCES
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
#: zstd level for batch files: level 3 writes ~7x faster than hats' default 15 for ~3 % more disk.
BATCH_ZSTD_LEVEL = 3


@dataclass(frozen=True)
class LakeConfig:
    partition_order: int = 5  # HEALPix order of new partitions (order 5: ~1.8 deg pixels)
    compact_zstd_level: int = 9
    format_version: int = FORMAT_VERSION


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_batch_id(operation: str = "ingest") -> str:
    """Unique, time-sortable name for a batch's files."""
    return f"{_now():%Y%m%dT%H%M%S}-{operation}-{uuid.uuid4().hex[:10]}"


def parquet_bytes(table: pa.Table, zstd_level: int = BATCH_ZSTD_LEVEL, row_group_size: int | None = None) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", compression_level=zstd_level, write_statistics=True,
                   row_group_size=row_group_size)
    return sink.getvalue()


class Lake:
    """A skylake lake at ``url`` (a local directory; other fsspec URLs for reading)."""

    def __init__(self, url: str | os.PathLike, config: LakeConfig):
        self.url = str(url)
        self.store = Storage(self.url)
        self.log = CommitLog(self.store)
        self.config = config

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def init(cls, url: str | os.PathLike, partition_order: int = 5) -> "Lake":
        """Create a lake (or open the one already there, if its settings agree)."""
        store = Storage(str(url))
        if store.exists(LAKE_FILE):
            lake = cls.open(url)
            if lake.config.partition_order != partition_order:
                log.warning("lake %s exists with partition_order %d; keeping it", url, lake.config.partition_order)
            return lake
        if not 0 <= partition_order <= 12:
            raise ValueError(f"partition_order must be in 0..12, got {partition_order}")
        config = LakeConfig(partition_order=partition_order)
        for rel in ("_skylake/log", STAGING_DIR, SOURCES, FRAMES):
            store.makedirs(rel)
        store.put_if_absent(LAKE_FILE, json.dumps(config.__dict__, indent=1).encode())
        return cls.open(url)

    @classmethod
    def open(cls, url: str | os.PathLike) -> "Lake":
        store = Storage(str(url))
        if not store.exists(LAKE_FILE):
            raise LakeError(f"{url} is not a skylake lake (no {LAKE_FILE}); create one with `skylake init {url}`")
        doc = json.loads(store.read_bytes(LAKE_FILE))
        if doc.get("format_version") != FORMAT_VERSION:
            raise LakeError(f"{url} has lake format {doc.get('format_version')}, this skylake reads {FORMAT_VERSION}")
        return cls(url, LakeConfig(**doc))

    # -- reading -----------------------------------------------------------------------------------
    def path(self, rel: str = "") -> str:
        return self.store.full(rel)

    def night_dataset(self, table: str) -> pads.Dataset:
        """A table partitioned by night (frames, and calibration's zeropoints, matches, extinction) as a
        dataset with ``night`` from the partition directory."""
        partitioning = pads.HivePartitioning(pa.schema([("night", pa.string())]), null_fallback=NULL_PARTITION)
        schema = table_schema(table).append(pa.field("night", pa.string()))
        if not self.store.exists(table):  # a table nothing has been committed to yet
            return pads.dataset(schema.empty_table())
        return pads.dataset(self.store.full(table), format="parquet", partitioning=partitioning,
                            schema=schema, filesystem=self.store.fs if not self.store.is_local else None)

    def read_night_table(self, table: str, columns: list[str] | None = None, filter=None) -> pa.Table:
        return self.night_dataset(table).to_table(columns=columns, filter=filter)

    def frames_dataset(self) -> pads.Dataset:
        return self.night_dataset(FRAMES)

    def read_frames(self, columns: list[str] | None = None, filter=None) -> pa.Table:
        """The frames table (``night`` comes from the partition directory)."""
        return self.read_night_table(FRAMES, columns=columns, filter=filter)

    def sources_dataset(self) -> pads.Dataset:
        partitioning = pads.partitioning(pa.schema([("Norder", pa.int8()), ("Dir", pa.int64()), ("Npix", pa.int64())]),
                                         flavor="hive")
        schema = table_schema(SOURCES)
        return pads.dataset(self.store.full(f"{SOURCES}/dataset"), format="parquet", partitioning=partitioning,
                            schema=schema.append(pa.field("Norder", pa.int8())).append(pa.field("Dir", pa.int64()))
                            .append(pa.field("Npix", pa.int64())),
                            filesystem=self.store.fs if not self.store.is_local else None)

    def read_sources(self, columns: list[str] | None = None, filter=None) -> pa.Table:
        """The source table as one Arrow table (for tests and small lakes; analysts use lsdb/DuckDB)."""
        return self.sources_dataset().to_table(columns=columns, filter=filter)

    def frame_keys(self) -> set[str]:
        """Identities of every frame in the (published) frames table."""
        return set(self.read_frames(columns=["frame_key"]).column("frame_key").to_pylist())

    def live_files(self, table: str) -> list[str]:
        """Published data files of ``table``, relative to its directory."""
        base = f"{SOURCES}/dataset" if table == SOURCES else table
        prefix = "dataset/" if table == SOURCES else ""
        return [prefix + posixpath.relpath(p, base) for p in self.store.walk_files(base, ".parquet")]

    # -- writing -----------------------------------------------------------------------------------
    def recover(self) -> dict:
        """Roll every committed-but-unpublished batch forward and every uncommitted one back.

        Must run under the writer lock (:meth:`transaction` and :meth:`repair` take it).
        """
        published, latest = self.log.published_version(), self.log.latest_version()
        rolled_forward = []
        for version in range(published + 1, latest + 1):
            self._publish(self.log.read(version))
            rolled_forward.append(version)
        rolled_back = self.store.listdir(STAGING_DIR)
        for name in rolled_back:
            self.store.rmtree(f"{STAGING_DIR}/{name}")
        for name in self.store.listdir("_skylake/log"):
            if name.startswith("."):  # temp file of a put-if-absent cut short
                self.store.remove(f"_skylake/log/{name}")
        if rolled_forward or rolled_back:
            log.warning("recovered lake %s: rolled forward commits %s, rolled back staged batches %s",
                        self.url, rolled_forward, rolled_back)
        return {"rolled_forward": rolled_forward, "rolled_back": rolled_back}

    def repair(self) -> dict:
        with self.store.lock(LOCK):
            return self.recover()

    @contextlib.contextmanager
    def transaction(self, operation: str):
        """Hold the writer lock, recover, and yield a :class:`Transaction` to stage and commit."""
        with self.store.lock(LOCK):
            self.recover()
            yield Transaction(self, operation)

    def _publish(self, entry: Entry):
        store = self.store
        for add in entry.adds:
            staged = staging_path(entry.batch_id, add.lake_path)
            if store.exists(staged):
                store.replace(staged, add.lake_path)
                faults.point("mid_publish")
            elif not store.exists(add.lake_path):
                raise LakeError(f"commit {entry.version} lists {add.lake_path}, but neither its staged nor its "
                                "published copy exists; the lake has lost data (restore from backup)")
        for rem in entry.removes:
            store.remove(rem.lake_path)
            store.remove_empty_dirs(posixpath.dirname(rem.lake_path))
        for rel in entry.metadata:
            staged = staging_path(entry.batch_id, rel)
            if store.exists(staged):
                store.replace(staged, rel)
        self.log.set_published(entry.version)
        faults.point("before_cleanup")
        store.rmtree(staging_path(entry.batch_id))


class Transaction:
    """One batch: stage data files, then :meth:`commit` them atomically. Only valid inside
    :meth:`Lake.transaction` (which holds the lock and has recovered the lake)."""

    def __init__(self, lake: Lake, operation: str):
        self.lake = lake
        self.operation = operation
        self.batch_id = new_batch_id(operation)
        self.base = lake.log.latest()
        self.next_frame_id = self.base.next_frame_id if self.base else 1
        self.adds: list[FileAction] = []
        self.removes: list[FileAction] = []
        self.skymap_delta = np.zeros(12 * 4**hats_meta.SKYMAP_ORDER, dtype=np.int64)
        self.new_partitions: set = set()
        self.dropped_partitions: set = set()
        self.partitions = hats_meta.read_partitions(lake.store)
        self.metadata: list[str] = []  # other lake-relative files staged here, replaced wholesale at publish

    def allocate_frame_ids(self, n: int) -> np.ndarray:
        ids = np.arange(self.next_frame_id, self.next_frame_id + n, dtype=np.int64)
        self.next_frame_id += n
        return ids

    def stage(self, table: str, path: str, data: pa.Table, zstd_level: int = BATCH_ZSTD_LEVEL,
              row_group_size: int | None = None):
        """Write ``data`` as ``table/path`` into this batch's staging area."""
        action = FileAction(table=table, path=path, rows=data.num_rows)
        self.lake.store.write_bytes(staging_path(self.batch_id, action.lake_path),
                                    parquet_bytes(data, zstd_level, row_group_size))
        self.adds.append(action)

    def remove(self, table: str, path: str, rows: int):
        self.removes.append(FileAction(table=table, path=path, rows=rows))

    def rewrite_without(self, table: str, rels, drop, schema: str | None = None) -> int:
        """Remove rows from published files, the only way rows ever leave the lake (``--redo``, a
        recalibration, a map made again): each file ``rels`` of ``table`` (relative to the table)
        holding rows for which ``drop(data)`` (a boolean array) is true is removed in this batch, and
        its other rows are staged beside it. ``schema`` names the file's schema when it is not the
        table's. Returns the number of rows dropped."""
        dropped = 0
        for k, rel in enumerate(rels):
            data = pq.read_table(self.lake.path(f"{table}/{rel}"), schema=table_schema(schema or table))
            gone = np.asarray(drop(data), dtype=bool)
            if not gone.any():
                continue
            dropped += int(gone.sum())
            self.remove(table, rel, data.num_rows)
            if table == SOURCES:
                self.skymap_delta -= hats_meta.skymap_histogram(data.column("_healpix_29").to_numpy()[gone])
            if not gone.all():
                self.stage(table, f"{posixpath.dirname(rel)}/{self.batch_id}-rewrite{k}.parquet",
                           data.filter(pa.array(~gone)))
        return dropped

    def stage_sources(self, sources: pa.Table, zstd_level: int = BATCH_ZSTD_LEVEL, name: str | None = None):
        """Split ``sources`` by partition, sort each piece by ``_healpix_29``, and stage one file per pixel."""
        if sources.num_rows == 0:
            return
        h29 = sources.column("_healpix_29").to_numpy()
        order = np.lexsort((sources.column("source_id").to_numpy(), h29))
        sources, h29 = sources.take(order), h29[order]
        orders, pixels = hats_meta.assign_pixels(h29, self.partitions + sorted(self.new_partitions),
                                                 self.lake.config.partition_order)
        keys = orders * (1 << 40) + pixels  # rows of one partition are contiguous after the h29 sort
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        ends = np.r_[starts[1:], len(keys)]
        for s, e in zip(starts, ends):
            pixel = HealpixPixel(int(orders[s]), int(pixels[s]))
            if pixel not in self.partitions:
                self.new_partitions.add(pixel)
            rel = f"{hats_meta.pixel_dir(pixel.order, pixel.pixel)}/{name or self.batch_id}.parquet"
            self.stage(SOURCES, rel, sources.slice(s, e - s), zstd_level)
        self.skymap_delta += hats_meta.skymap_histogram(h29)

    def stage_frames(self, frames: pa.Table, nights: list[str | None], name: str | None = None):
        """Stage frame rows, one file per night (``nights`` gives each row's night)."""
        self.stage_nights(FRAMES, frames, nights, name)

    def stage_nights(self, table: str, data: pa.Table, nights: list[str | None], name: str | None = None):
        """Stage rows of a night-partitioned table, one file per night (``nights`` gives each row's night)."""
        nights_arr = np.array([n if isinstance(n, str) and n else NULL_PARTITION for n in nights], dtype=object)
        for night in sorted(set(nights_arr)):
            rows = np.flatnonzero(nights_arr == night)
            self.stage(table, f"night={night}/{name or self.batch_id}.parquet", data.take(rows))

    def commit(self, summary: dict | None = None) -> Entry | None:
        """Commit everything staged as one atomic step, then publish it. Returns the log entry, or
        None when there was nothing to commit."""
        if not self.adds and not self.removes:
            return None
        store, lake = self.lake.store, self.lake
        base_sources = self.base.sources_rows if self.base else 0
        base_frames = self.base.frames_rows if self.base else 0
        d_sources = sum(a.rows for a in self.adds if a.table == SOURCES) - sum(
            r.rows for r in self.removes if r.table == SOURCES)
        d_frames = sum(a.rows for a in self.adds if a.table == FRAMES) - sum(
            r.rows for r in self.removes if r.table == FRAMES)
        metadata = []
        if any(a.table == SOURCES for a in self.adds + self.removes):
            partitions = sorted((set(self.partitions) | self.new_partitions) - self.dropped_partitions)
            skymap = hats_meta.read_skymap(store) + self.skymap_delta
            names = hats_meta.write_metadata(store, staging_path(self.batch_id, SOURCES), partitions,
                                             base_sources + d_sources, skymap, table_schema(SOURCES))
            metadata = [f"{SOURCES}/{n}" for n in names]
        metadata += self.metadata
        for action in self.adds:
            store.fsync_dir(posixpath.dirname(staging_path(self.batch_id, action.lake_path)))
        faults.point("before_commit")
        entry = Entry(
            version=(self.base.version if self.base else 0) + 1,
            batch_id=self.batch_id,
            operation=self.operation,
            committed_at=_now().isoformat(),
            adds=self.adds,
            removes=self.removes,
            metadata=metadata,
            next_frame_id=self.next_frame_id,
            sources_rows=base_sources + d_sources,
            frames_rows=base_frames + d_frames,
            summary={"host": socket.gethostname(), "pid": os.getpid(), **(summary or {})},
        )
        if not lake.log.append(entry):
            # The writer lock makes this unreachable unless a writer ignored the lock: refuse loudly.
            raise LakeError(f"commit version {entry.version} was taken by another writer; batch "
                            f"{self.batch_id} is left staged and will be rolled back by `skylake repair`")
        faults.point("after_commit")
        lake._publish(entry)
        return entry
