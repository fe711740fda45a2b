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
      _skylake/pieces/<run>/   sources of processed frames, written by workers, until their batch commits
      _skylake/removed/N/      files commit N removed, kept for older versions until `skylake vacuum`
      _skylake/checkpoints/    N.parquet: the files live at every 100th version
      _skylake/writer.lock     one writer commits at a time

Writers process frames concurrently and serialise only the commit: under the writer lock a
transaction first rolls any interrupted commit forward (or an uncommitted one back), then stages its
files, commits with one put-if-absent and publishes. A SIGKILL at any point leaves a lake that
readers see consistently and that the next command of any kind completes: :meth:`Lake.open` and the
``read_*`` methods roll a committed-but-unpublished version forward first (:meth:`Lake.catch_up`).

A partition or night that loses files in a commit (compaction, ``--redo``, a recalibration) is
published whole, by swapping its directory with the staged one in one atomic step; a table whose
rows move between partitions (a split) is swapped whole. So a reader listing the directories (lsdb,
DuckDB) never sees a row twice; only a plain ingest's new files appear one by one.

Removed files are not deleted but moved out of the tables into ``_skylake/removed/<version>/``, so
``open_lake(url, version=N)`` reads exactly the rows of commit N (a read-only
:class:`~skylake.lake.snapshot.Snapshot`; :mod:`skylake.lake.history` has the layout) until
``skylake vacuum`` deletes what no kept version needs (:func:`skylake.lake.snapshot.vacuum`).

Opening validates ``lake.json`` and the log, and creating refuses a path that is a file, inside a
HATS catalogue or another lake, or a non-empty directory: each with a one-line
:class:`~skylake.errors.LakeError` and nothing written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import time
import uuid
from dataclasses import dataclass, fields

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from skylake.errors import LakeError, LakeFullError, PublishBlocked
from skylake.lake import counts, faults, frame_index, history, pieces, pinned
from skylake.lake.log import (
    LAKE_FILE,
    LOCK,
    LOG_DIR,
    META,
    PUBLISHED,
    STAGING_DIR,
    CommitLog,
    Entry,
    FileAction,
    staged_batches,
    staging_path,
)
from skylake.lake.nights import UNKNOWN_NIGHT, night_dir
from skylake.lake.storage import is_disk_full, lock_held_here, open_storage, read_listed
from skylake.lake.tables import FRAMES, SOURCES
from skylake.lake.transaction import Transaction
from skylake.schema import table_schema

__all__ = ["FORMAT_VERSION", "CATCH_UP_WAIT_S", "LEGACY_ID_NAMESPACE", "LakeConfig", "LakeView", "Lake"]


log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: How long a reader waits for another writer (holding the lock) to finish publishing a commit [s].
CATCH_UP_WAIT_S = 10.0
#: Namespace of the lake ids derived for lakes created before ``lake.json`` held one.
LEGACY_ID_NAMESPACE = uuid.UUID("6f1c2a4e-8d7b-4f35-9a51-3c0e5b7d2a90")


@dataclass(frozen=True)
class LakeConfig:
    """A lake's settings, as ``lake.json`` holds them.

    Attributes
    ----------
    partition_order : int
        HEALPix order of new source partitions, 0..12 (order 5: ~1.8 deg pixels).
    compact_zstd_level : int
        The zstd level compaction writes its merged files with, 1..22.
    format_version : int
        The lake format (:data:`FORMAT_VERSION`).
    lake_id : str or None
        The lake's uuid, written at init; None in lakes made before (see :attr:`Lake.lake_id`).
    """

    partition_order: int = 5  # HEALPix order of new partitions (order 5: ~1.8 deg pixels)
    compact_zstd_level: int = 9
    format_version: int = FORMAT_VERSION
    lake_id: str | None = None  # uuid written at init; None in lakes made before (see Lake.lake_id)


def _config_from_json(url: str, data: bytes) -> LakeConfig:
    """Validate ``lake.json``; every problem is a one-line LakeError naming the file."""
    where = f"{url}/{LAKE_FILE}"
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise LakeError(
            f"{where} is corrupt, not JSON ({' '.join(str(exc).split())}); restore it from a backup"
        ) from None
    if not isinstance(doc, dict):
        raise LakeError(f"{where} is corrupt: expected a JSON object, found {type(doc).__name__}")
    version = doc.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise LakeError(
            f"{where} declares lake format {version!r}; this skylake reads format {FORMAT_VERSION} "
            "(a lake of another tool, or of another skylake version)"
        )
    known = {f.name for f in fields(LakeConfig)}
    if set(doc) - known:
        raise LakeError(f"{where} has unknown settings {sorted(set(doc) - known)} (written by a newer skylake?)")
    checks = {"partition_order": (0, 12), "compact_zstd_level": (1, 22)}
    for name, (lo, hi) in checks.items():
        value = doc.get(name, getattr(LakeConfig, name))
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise LakeError(f"{where} is corrupt: {name} is {value!r}, expected an integer in {lo}..{hi}")
    lake_id = doc.get("lake_id")
    if lake_id is not None:
        try:
            uuid.UUID(str(lake_id))
        except ValueError:
            raise LakeError(f"{where} is corrupt: lake_id is {lake_id!r}, not a uuid") from None
    return LakeConfig(**doc)


def _foreign_owner(path: str) -> str | None:
    """Why a lake must not be created at local ``path``: it lies in a HATS catalogue or another lake
    (checked at ``path`` and every directory above it), or is a non-empty directory. None if free."""
    target = here = os.path.abspath(path)
    while True:
        if os.path.isfile(os.path.join(here, "hats.properties")):
            return f"{here} is a HATS catalogue (it has hats.properties)"
        if _is_hats_properties(os.path.join(here, "properties")):
            return f"{here} is a HATS catalogue (it has properties)"
        if here != target and os.path.isfile(os.path.join(here, LAKE_FILE)):
            return f"{here} is a skylake lake"
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    if os.path.isdir(path):
        for dirpath, _, files in os.walk(path):
            if files:  # empty directories are fine (e.g. an init cut short before lake.json)
                return f"{path} is not empty (it holds {os.path.relpath(os.path.join(dirpath, files[0]), path)})"
    return None


def _is_hats_properties(path: str) -> bool:
    """A HATS/HiPS ``properties`` file (key = value lines naming a data product)."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536).decode("utf-8", "replace")
    except OSError:
        return False
    return any(
        line.split("=", 1)[0].strip() in ("dataproduct_type", "hats_nrows", "obs_collection", "hats_order")
        for line in head.splitlines()
    )


class LakeView:
    """A lake as its readers see it: tables, files and the commit log, never written through.

    The base of :class:`Lake` (the live lake, which writers open) and of
    :class:`~skylake.lake.snapshot.Snapshot` (the lake as it was at a commit): what only reads takes either.

    Parameters
    ----------
    url : str or os.PathLike
        The lake: a local path, ``file://...``, ``s3://bucket/prefix`` or another fsspec URL.
    config : LakeConfig
        Its settings (from ``lake.json``).

    Attributes
    ----------
    url : str
        The lake, as given.
    store : Storage
        The lake's storage.
    log : CommitLog
        The commit log.
    config : LakeConfig
        The settings.
    auto_catch_up : bool
        ``read_*`` first finish publishing a commit an interrupted writer left (the live lake's
        :meth:`Lake.catch_up`).
    caught_up : list of int
        The versions this object rolled forward when reading.
    """

    def __init__(self, url: str | os.PathLike, config: LakeConfig):
        self.url = str(url)
        self.store = open_storage(self.url)
        self.log = CommitLog(self.store)
        self.config = config
        self._warned: set[str] = set()
        self.auto_catch_up = True  # read_* finish an interrupted publish first (Lake.open(catch_up=False): not)
        self.caught_up: list[int] = []  # versions this object rolled forward when reading (catch_up)

    @property
    def lake_id(self) -> str | None:
        """The lake's identity (a uuid), recorded by the summary database it is mirrored into.

        Written into ``lake.json`` at init. A lake made before that derives a stable one from its
        first commit's batch id (the log is never rewritten), or, with no commit yet, records a new one
        in ``lake.json`` once, under the writer lock. None only for such a lake that is read-only.

        Returns
        -------
        str or None
            The uuid; None for a lake made before ``lake_id`` with no commit, that this process cannot write.
        """
        if self.config.lake_id:
            return self.config.lake_id
        if self.log.has(1):
            return str(uuid.uuid5(LEGACY_ID_NAMESPACE, self.log.read(1).batch_id))
        if not self.writable():
            return None
        held = lock_held_here(self.store.full(LOCK))
        with contextlib.nullcontext() if held else self._lock():
            doc = json.loads(self.store.read_bytes(LAKE_FILE))
            if not doc.get("lake_id"):
                doc["lake_id"] = str(uuid.uuid4())
                self.store.write_atomic(LAKE_FILE, json.dumps(doc, indent=1).encode())
        self.config = _config_from_json(self.url, self.store.read_bytes(LAKE_FILE))
        return self.config.lake_id

    # -- write access and catching up ---------------------------------------------------------------
    def writable(self) -> bool:
        """Whether this process can write the lake (see :meth:`check_writable`).

        Returns
        -------
        bool
            True if it can.
        """
        try:
            self.check_writable()
        except LakeError:
            return False
        return True

    def check_writable(self):
        """Refuse to write: a view only reads (the live lake, :class:`Lake`, can write).

        Raises
        ------
        LakeError
            Always.
        """
        raise LakeError(f"lake {self.url} is opened read-only ({type(self).__name__}): open it with Lake.open to write")

    def transaction(self, operation: str):
        """Refuse a transaction: a view only reads.

        Parameters
        ----------
        operation : str
            What the batch would have done (named in the error).

        Raises
        ------
        LakeError
            Always.
        """
        self.check_writable()
        raise LakeError(f"lake {self.url}: a {type(self).__name__} takes no {operation} transaction")

    def catch_up(self, wait: float = 0) -> int:
        """Nothing to publish: a view reads what is published (the live lake finishes an interrupted publish).

        Parameters
        ----------
        wait : float
            Ignored (as :meth:`Lake.catch_up` takes it) [s].

        Returns
        -------
        int
            The published version.
        """
        return self.log.published_version()

    def _warn_once(self, message: str):
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)

    # -- reading -----------------------------------------------------------------------------------
    def path(self, rel: str = "") -> str:
        """Absolute path (or object-store key) of a lake-relative path.

        Parameters
        ----------
        rel : str
            The lake-relative path ('' for the lake itself).

        Returns
        -------
        str
            The absolute path, or ``bucket/key`` on an object store.
        """
        return self.store.full(rel)

    def read_parquet(self, rel: str, **kwargs) -> pa.Table:
        """``pyarrow.parquet.read_table`` of a lake file, on the lake's store.

        The file is read where :meth:`path` says it is: a snapshot reads a removed file from its retained copy.

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        **kwargs
            Passed on to ``pyarrow.parquet.read_table``.

        Returns
        -------
        pyarrow.Table
            Its rows.
        """
        return pq.read_table(self.path(rel), filesystem=self.store.arrow_fs, **kwargs)

    def parquet_file(self, rel: str) -> pq.ParquetFile:
        """A ``pyarrow.parquet.ParquetFile`` of a lake file (found as by :meth:`read_parquet`).

        Parameters
        ----------
        rel : str
            Its lake-relative path.

        Returns
        -------
        pyarrow.parquet.ParquetFile
            The open file.
        """
        return pq.ParquetFile(self.path(rel), filesystem=self.store.arrow_fs)

    def parquet_metadata(self, rel: str):
        """The Parquet footer of a lake file (found as by :meth:`read_parquet`).

        Parameters
        ----------
        rel : str
            Its lake-relative path.

        Returns
        -------
        pyarrow.parquet.FileMetaData
            The footer.
        """
        return pq.read_metadata(self.path(rel), filesystem=self.store.arrow_fs)

    def night_dataset(self, table: str, nights=None) -> pads.Dataset:
        """A table partitioned by night as a dataset, with ``night`` from the partition directory.

        The night tables are frames and calibration's zeropoints, matches and extinction. Before any commit
        the dataset is empty, with the schema.

        Parameters
        ----------
        table : str
            The table (its directory in the lake).
        nights : iterable or None
            Only these nights' directories are listed and read (an element None or NaN: the unknown night);
            None for all.

        Returns
        -------
        pyarrow.dataset.Dataset
            The rows.

        Raises
        ------
        LakeError
            A file of the table is not Parquet or not readable (one line naming the table).
        """
        if self.auto_catch_up:
            self.catch_up()
        with self._reading(table):
            return self._night_dataset(table, nights)

    def _night_dataset(self, table: str, nights=None) -> pads.Dataset:
        """:meth:`night_dataset` without its catch-up and error translation (a file that vanished after
        the listing raises FileNotFoundError, which :func:`~skylake.lake.storage.read_listed` retries)."""
        partitioning = pads.HivePartitioning(pa.schema([("night", pa.string())]), null_fallback=UNKNOWN_NIGHT)
        schema = table_schema(table).append(pa.field("night", pa.string()))
        if not self.store.swaps_directories:  # no atomic directory swap: the log names the files, not a listing
            return self._published_dataset(table, schema, pinned.NIGHT_PARTS, nights)
        if not self.store.exists(table):  # a table nothing has been committed to yet
            return pads.dataset(schema.empty_table())
        fs = self.store.arrow_fs
        if nights is not None:
            files = [self.store.full(f"{table}/{f}") for f in self.live_files(table, nights)]
            if not files:
                return pads.dataset(schema.empty_table())
            return pads.dataset(
                files,
                format="parquet",
                partitioning=partitioning,
                schema=schema,
                filesystem=fs,
                partition_base_dir=self.store.full(table),
            )
        return pads.dataset(
            self.store.full(table), format="parquet", partitioning=partitioning, schema=schema, filesystem=fs
        )

    def read_night_table(self, table: str, columns: list[str] | None = None, filter=None, nights=None) -> pa.Table:
        """Read a table partitioned by night (as :meth:`night_dataset`) into memory.

        Parameters
        ----------
        table : str
            The table (its directory in the lake).
        columns : list of str or None
            Columns to read (None: all).
        filter : pyarrow.compute.Expression or None
            Rows to keep.
        nights : iterable or None
            Only these nights (an element None or NaN: the unknown night); None for all.

        Returns
        -------
        pyarrow.Table
            The rows, with ``night`` from the partition directory.

        Raises
        ------
        LakeError
            A file of the table is not Parquet or not readable (one line naming the table).
        """
        if self.auto_catch_up:
            self.catch_up()
        with self._reading(table):  # read without the lock: listed again if a commit replaced a file listed
            return read_listed(lambda: self._night_dataset(table, nights).to_table(columns=columns, filter=filter))

    def frames_dataset(self) -> pads.Dataset:
        """The frames table as a dataset (as :meth:`night_dataset`).

        Returns
        -------
        pyarrow.dataset.Dataset
            One row per frame tried, with ``night`` from the partition directory.
        """
        return self.night_dataset(FRAMES)

    def read_frames(self, columns: list[str] | None = None, filter=None) -> pa.Table:
        """The frames table (``night`` comes from the partition directory).

        Parameters
        ----------
        columns : list of str or None
            Columns to read (None: all).
        filter : pyarrow.compute.Expression or None
            Rows to keep.

        Returns
        -------
        pyarrow.Table
            One row per frame tried.
        """
        return self.read_night_table(FRAMES, columns=columns, filter=filter)

    def sources_dataset(self) -> pads.Dataset:
        """The source table as a dataset with ``Norder``, ``Dir``, ``Npix`` from the partition directories.

        Before any commit the dataset is empty, with the schema.

        Returns
        -------
        pyarrow.dataset.Dataset
            The rows.

        Raises
        ------
        LakeError
            A file of the table is not Parquet or not readable (one line naming the table).
        """
        if self.auto_catch_up:
            self.catch_up()
        with self._reading(SOURCES):
            return self._sources_dataset()

    def _sources_dataset(self) -> pads.Dataset:
        """:meth:`sources_dataset` without its catch-up and error translation (a file that vanished after the
        listing, or after the log named it, raises FileNotFoundError, which
        :func:`~skylake.lake.storage.read_listed` retries)."""
        schema = table_schema(SOURCES)
        for name, typ in pinned.HATS_PARTS:
            schema = schema.append(pa.field(name, typ))
        if not self.store.swaps_directories:  # no atomic directory swap: the log names the files, not a listing
            return self._published_dataset(SOURCES, schema, pinned.HATS_PARTS)
        if not self.store.exists(f"{SOURCES}/dataset"):
            return pads.dataset(schema.empty_table())
        return pads.dataset(
            self.store.full(f"{SOURCES}/dataset"),
            format="parquet",
            partitioning=pads.partitioning(pa.schema(list(pinned.HATS_PARTS)), flavor="hive"),
            schema=schema,
            filesystem=self.store.arrow_fs,
        )

    def read_sources(self, columns: list[str] | None = None, filter=None) -> pa.Table:
        """The source table as one Arrow table (for tests and small lakes; analysts use lsdb/DuckDB).

        Parameters
        ----------
        columns : list of str or None
            Columns to read (None: all).
        filter : pyarrow.compute.Expression or None
            Rows to keep.

        Returns
        -------
        pyarrow.Table
            The rows, with ``Norder``, ``Dir``, ``Npix`` from the partition directories.

        Raises
        ------
        LakeError
            A file of the table is not Parquet or not readable (one line naming the table).
        """
        if self.auto_catch_up:
            self.catch_up()
        with self._reading(SOURCES):  # listed (or resolved from the log) again if a commit moved a file meanwhile
            return read_listed(lambda: self._sources_dataset().to_table(columns=columns, filter=filter))

    def _published_dataset(self, table: str, schema: pa.Schema, fields, nights=None) -> pads.Dataset:
        """A table's rows at the published version, from the files the commit log names
        (:func:`skylake.lake.pinned.locate_published`): what a store without directory swaps reads, so that a
        publish in progress is never seen. Only ``nights``' files when given (a night table)."""
        where = pinned.locate_published(self.store, self.log, table)
        rels = sorted(where)
        if table == SOURCES:
            rels = [r for r in rels if r.startswith("dataset/")]
        rels = pinned.of_nights(rels, nights)
        return pinned.dataset_of(self.store, rels, [where[r] for r in rels], schema, fields)

    @contextlib.contextmanager
    def _reading(self, table: str):
        """Turn a file that is not Parquet (or not readable) into a LakeError naming it."""
        try:
            yield
        except (pa.ArrowInvalid, OSError) as exc:
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise
            reason = " ".join(str(exc).split())
            raise LakeError(f"cannot read the {table} table of lake {self.url}: {reason}") from None

    def live_files(self, table: str, nights=None) -> list[str]:
        """Published data files of a table.

        Of a night-partitioned table with ``nights``, only those nights' directories are listed.

        Parameters
        ----------
        table : str
            The table (its directory in the lake).
        nights : iterable or None
            Only the files of these nights (an element None or NaN: the unknown night); None for all.

        Returns
        -------
        list of str
            The files, relative to the table's directory.
        """
        if nights is not None:
            parts = sorted({night_dir(n) for n in nights})
            return [
                f"{d}/{f}"
                for d in parts
                if self.store.exists(f"{table}/{d}")
                for f in sorted(self.store.listdir(f"{table}/{d}"))
                if f.endswith(".parquet") and not f.startswith(".")
            ]
        base = f"{SOURCES}/dataset" if table == SOURCES else table
        prefix = "dataset/" if table == SOURCES else ""
        return [prefix + posixpath.relpath(p, base) for p in self.store.walk_files(base, ".parquet")]


class Lake(LakeView):
    """The live lake at ``url``: what a :class:`LakeView` reads, and writing (transactions, publishing, recovery).

    Made by :meth:`init` and :meth:`open` (or :func:`skylake.lake.open_lake`), which validate it; constructed
    as a :class:`LakeView` is (``url``, ``config``), with the same attributes.
    """

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def init(cls, url: str | os.PathLike, partition_order: int = 5) -> Lake:
        """Create a lake (or open the one already there, if its settings agree), ready for writing.

        Refuses, with a :class:`LakeError` and nothing written: a path that is a file, a directory
        inside a HATS catalogue or another lake, a non-empty directory that is not a lake, and a lake
        this process cannot write.

        Parameters
        ----------
        url : str or os.PathLike
            Where: a new or empty local directory, or ``s3://bucket/prefix``.
        partition_order : int
            HEALPix order of new source partitions, 0..12 (order 5: ~1.8 deg pixels). A lake already
            there keeps its own, with a warning.

        Returns
        -------
        Lake
            The lake, opened (:meth:`open`).

        Raises
        ------
        LakeError
            The path is refused (above), ``partition_order`` is not an integer in 0..12, or the lake cannot
            be created (one line; nothing written).
        LakeFullError
            The device filled up while creating it.
        """
        store = open_storage(str(url))
        home = store.local_path()  # a directory of this machine's: checked before anything is written there
        if home is not None and os.path.exists(home) and not os.path.isdir(home):
            raise LakeError(f"{url} is a file, not a directory: cannot create a lake there")
        if store.exists(LAKE_FILE):
            lake = cls.open(url)
            lake.check_writable()
            if lake.config.partition_order != partition_order:
                log.warning("lake %s exists with partition_order %d; keeping it", url, lake.config.partition_order)
            return lake
        if isinstance(partition_order, bool) or not isinstance(partition_order, int) or not 0 <= partition_order <= 12:
            raise LakeError(f"partition_order must be an integer in 0..12, got {partition_order!r}")
        if home is not None:
            why = _foreign_owner(home)
            if why:
                raise LakeError(f"refusing to create a lake at {url}: {why}; give a new or empty directory")
        config = LakeConfig(partition_order=partition_order, lake_id=str(uuid.uuid4()))
        try:
            for rel in (LOG_DIR, STAGING_DIR, SOURCES, FRAMES):
                store.makedirs(rel)
            store.prepare_lock(LOCK)  # part of the layout from the start where the lock is a file
            store.write_bytes(frame_index.READY, b"frame index complete\n")  # no frames: the index is whole
            store.write_bytes(counts.COUNTS, counts.dumps(counts.empty()))  # status's running totals
            store.put_if_absent(LAKE_FILE, json.dumps(config.__dict__, indent=1).encode())
        except LakeFullError:
            raise
        except OSError as exc:
            if is_disk_full(exc):
                raise store.full_error(LAKE_FILE) from None
            raise LakeError(f"cannot create a lake at {url}: {exc.strerror or exc}") from None
        return cls.open(url)

    @classmethod
    def open(cls, url: str | os.PathLike, catch_up: bool = True) -> Lake:
        """Open the lake at ``url``, validating ``lake.json`` and the log's published version.

        With ``catch_up``, first finish publishing a commit an interrupted writer left (:meth:`catch_up`),
        now and before every ``read_*``. An older version (time travel) is opened by
        :func:`skylake.lake.open_lake` (``version=N``).

        Parameters
        ----------
        url : str or os.PathLike
            The lake.
        catch_up : bool
            Finish publishing commits a killed writer left unpublished; False reads the tables exactly as
            they are on disk.

        Returns
        -------
        Lake
            The lake.

        Raises
        ------
        LakeError
            ``url`` is not a skylake lake, its ``lake.json`` is unreadable, corrupt or of another format, or
            its commit log disagrees with the published version (one line naming the file).
        """
        store = open_storage(str(url))
        try:
            data = store.read_bytes(LAKE_FILE)
        except (FileNotFoundError, NotADirectoryError):
            problem = store.root_problem()  # a missing directory or bucket says so, and what to do
            raise LakeError(
                problem or f"{url} is not a skylake lake (no {LAKE_FILE}); create one with `skylake init {url}`"
            ) from None
        except IsADirectoryError:
            raise LakeError(f"{url}/{LAKE_FILE} is a directory, not the lake's settings file") from None
        except PermissionError:
            raise LakeError(f"cannot read {url}/{LAKE_FILE}: permission denied") from None
        lake = cls(url, _config_from_json(str(url), data))
        lake.auto_catch_up = catch_up
        if catch_up:
            lake.catch_up()
        return lake

    def check_writable(self):
        """Raise a one-line :class:`LakeError` now if this process cannot write the lake.

        Call it at the start of an operation that will take a transaction (ingest, calibrate, maps,
        objects), so a read-only lake is refused before any frame is processed. Probes ``_skylake/``
        and ``_skylake/staging/`` with a real file (a read-only mount or root-squashed NFS defeats
        ``access(2)``) and checks the tables' directories.

        Raises
        ------
        LakeError
            This process cannot write the lake, or its store cannot be written atomically (neither local nor
            ``s3://``); one line naming what is read-only.
        """
        if not self.store.writable:
            raise self.store.refuse_writes("writing")
        try:
            self.store.check_writable((META, LOG_DIR, STAGING_DIR))
        except OSError as exc:
            where = f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc)
            raise LakeError(f"lake {self.url} is read-only for this process ({where}); nothing was done") from None

    @contextlib.contextmanager
    def _lock(self, blocking: bool = True):
        try:
            with self.store.lock(LOCK, blocking=blocking) as held:
                yield held
        except PermissionError:
            raise LakeError(f"cannot take the writer lock {self.store.full(LOCK)}: permission denied") from None

    def pending(self) -> tuple[int, int]:
        """The published and the latest committed version.

        ``latest > published`` when a commit awaits publishing.

        Returns
        -------
        published : int
            The published version (0 before any commit).
        latest : int
            The newest committed version.

        Raises
        ------
        LakeError
            The published version has no log entry (restore the lake's ``_skylake/`` from a backup).
        """
        published = self.log.published_version()
        if published and not self.log.has(published):
            raise LakeError(
                f"{self.store.full(PUBLISHED)} says version {published} is published, but the commit "
                f"log has no entry {published} (latest {self.log.latest_version()}); restore the "
                "lake's _skylake/ from a backup"
            )
        if not self.log.has(published + 1):  # versions are contiguous: one stat answers the common case
            return published, published
        return published, self.log.latest_version()

    def catch_up(self, wait: float = CATCH_UP_WAIT_S) -> int:
        """Finish publishing commits that a killed writer left committed but unpublished.

        Takes the writer lock without blocking and rolls them forward. If another process holds the
        lock, it is a writer that rolls them forward itself: wait up to ``wait`` seconds for it. A
        read-only lake is read as it is on disk, with a warning.

        Parameters
        ----------
        wait : float
            How long to wait for another writer holding the lock to publish them [s].

        Returns
        -------
        int
            The published version.

        Raises
        ------
        LakeError
            The commit log disagrees with the published version, or a commit's files are lost (restore from
            a backup).
        """
        published, latest = self.pending()
        if latest == published or not self.store.writable:
            return published
        if lock_held_here(self.store.full(LOCK)):
            return published
        if not self.writable():
            self._warn_once(
                f"lake {self.url} is read-only for this process and commits {published + 1}..{latest} "
                f"are committed but not yet published: readers listing its files may see part of "
                f"them (someone with write access: `skylake repair {self.url}`)"
            )
            return published
        deadline = time.monotonic() + wait
        while True:
            with self._lock(blocking=False) as held:
                if held:
                    try:
                        self.caught_up += self.roll_forward()
                    except (LakeFullError, PublishBlocked) as exc:
                        self._warn_once(
                            f"could not finish publishing commits of lake {self.url}: {exc}; "
                            "reading it as it is on disk"
                        )
                    return self.log.published_version()
            published, latest = self.pending()
            if latest == published:  # the lock holder published them
                return published
            if time.monotonic() > deadline:
                self._warn_once(
                    f"another writer holds the lock of lake {self.url} and has not published commit "
                    f"{latest} within {wait:.0f} s; reading the lake as it is on disk"
                )
                return published
            time.sleep(0.05)

    # -- writing -----------------------------------------------------------------------------------
    def roll_forward(self) -> list[int]:
        """Publish every committed-but-unpublished version (under the writer lock).

        Returns
        -------
        list of int
            The versions published, in order.

        Raises
        ------
        LakeError
            The published version is beyond the commit log's end, or a commit's files are lost (restore the
            lake's ``_skylake/`` from a backup).
        PublishBlocked
            Something in the lake is in a commit's way (a file where its directory goes); it names the error.
        """
        published, latest = self.log.published_version(), self.log.latest_version()
        if published > latest:
            raise LakeError(
                f"{self.store.full(PUBLISHED)} says version {published} is published, but the commit "
                f"log ends at version {latest}; restore the lake's _skylake/ from a backup"
            )
        done = []
        for version in range(published + 1, latest + 1):
            entry = self.log.read(version)
            try:
                self._publish(entry)
            except OSError as exc:
                if is_disk_full(exc):
                    raise
                raise PublishBlocked(
                    f"commit {version} of lake {self.url} ({entry.operation}) is committed but cannot be published: "
                    f"{type(exc).__name__}: {' '.join(str(exc).split())}; move what is in the way, then any write "
                    f"(or `skylake repair {self.url}`) publishes it"
                ) from None
            done.append(version)
            log.warning(
                "lake %s: finished publishing commit %d (%s %s), which an interrupted writer left",
                self.url,
                version,
                entry.operation,
                entry.batch_id,
            )
        return done

    def recover(self) -> dict:
        """Roll every committed-but-unpublished batch forward and every uncommitted one back.

        Must run under the writer lock (:meth:`transaction` and :meth:`repair` take it). Also removes
        the frame pieces of ingest runs that died.

        Returns
        -------
        dict
            ``rolled_forward``: the versions published (list of int); ``rolled_back``: the staged batches
            removed (list of str).
        """
        rolled_forward = self.roll_forward()
        rolled_back = staged_batches(self.store)
        for name in rolled_back:
            self.store.rmtree(f"{STAGING_DIR}/{name}")
        for name in self.store.listdir(LOG_DIR):
            if name.startswith(".") and name.endswith(".tmp"):  # a put-if-absent cut short (not a live probe)
                self.store.remove(f"{LOG_DIR}/{name}")
        orphans = pieces.remove_orphans(self.store)  # frame pieces of ingest runs that died
        if orphans:
            log.warning("recovered lake %s: removed the frame pieces of ended ingest runs %s", self.url, orphans)
        if rolled_back:
            log.warning("recovered lake %s: rolled back staged batches %s", self.url, rolled_back)
        return {"rolled_forward": rolled_forward, "rolled_back": rolled_back}

    def repair(self) -> dict:
        """Recover (:meth:`recover`) under the writer lock.

        Returns
        -------
        dict
            As :meth:`recover`; ``rolled_forward`` also lists the versions this object already rolled
            forward when it was opened (:meth:`catch_up`): the repair's doing all the same.

        Raises
        ------
        LakeError
            This process cannot write the lake (:meth:`check_writable`).
        """
        self.check_writable()
        with self._lock():
            result = self.recover()
        result["rolled_forward"] = sorted(set(self.caught_up) | set(result["rolled_forward"]))
        return result

    @contextlib.contextmanager
    def transaction(self, operation: str):
        """Hold the writer lock, recover, and yield a :class:`Transaction` to stage and commit.

        Refuses a read-only lake before anything else. If the body fails before the commit point,
        the batch's staged files are removed at once (they would be rolled back anyway, and a full
        disk needs the space back); a full device becomes one :class:`LakeFullError` saying what was
        being written and what state the lake is in.

        Parameters
        ----------
        operation : str
            What the batch does (``ingest``, ``calibrate``, ``compact``, ...), recorded in its log entry.

        Yields
        ------
        Transaction
            The transaction.

        Raises
        ------
        LakeError
            This process cannot write the lake (:meth:`check_writable`).
        LakeFullError
            The device filled up before the commit point.
        """
        self.check_writable()
        with self._lock():
            self.recover()
            tx = Transaction(self, operation, self._publish)
            try:
                yield tx
            except BaseException as exc:
                if tx.entry is None:
                    self.store.rmtree(staging_path(tx.batch_id))
                if isinstance(exc, LakeFullError) or is_disk_full(exc):
                    raise tx.full_error(exc) from None
                raise

    def _publish(self, entry: Entry):
        """Make ``entry``'s files live: a pure function of the entry, safe to re-run after a kill
        at any point (each step checks whether it already happened).

        Order: whole directories (``entry.swaps``, one atomic exchange each); files added to other
        directories (one rename each: a new file is new rows, never a copy of live ones); the
        metadata (so ``partition_info.csv`` lists a pixel only once its files are there); the removed
        files, each moved out of the tables into ``_skylake/removed/<version>/`` (from the live
        directory, or from the swapped-out one in staging) for time travel until ``skylake vacuum``;
        every 100th version's checkpoint; the published version; last, the staging area, which by then
        also holds the directories swapped out (deleting them is the slow part, and no reader sees it).
        """
        store = self.store
        t0 = time.perf_counter()
        swaps = set(entry.swaps)

        def owner(rel: str) -> str | None:
            """The swapped directory a path lies in, if any.

            Parameters
            ----------
            rel : str
                A lake-relative path.

            Returns
            -------
            str or None
                The directory of ``entry.swaps`` it lies in; None if in none.
            """
            while rel:
                rel = posixpath.dirname(rel)
                if rel in swaps:
                    return rel
            return None

        grouped: dict[str, tuple[list[str], set[str]]] = {d: ([], set()) for d in entry.swaps}
        for add in entry.adds:
            if (d := owner(add.lake_path)) is not None:
                grouped[d][0].append(add.lake_path)
        for rem in entry.removes:
            if (d := owner(rem.lake_path)) is not None:
                grouped[d][1].add(rem.lake_path)
        for directory in entry.swaps:
            self._publish_dir(entry, directory, *grouped[directory])
            faults.point("mid_publish")
        first_add = last_add = None  # how long a reader listing files may see part of the batch
        for add in entry.adds:
            if owner(add.lake_path) is not None:
                continue
            staged = staging_path(entry.batch_id, add.lake_path)
            if store.exists(staged):
                store.replace(staged, add.lake_path)
                last_add = time.perf_counter()
                first_add = first_add or last_add
                faults.point("mid_publish")
            elif not store.exists(add.lake_path):
                raise self._lost(entry, add.lake_path)
        faults.point("before_metadata")
        for rel in entry.metadata:
            staged = staging_path(entry.batch_id, rel)
            if owner(rel) is None and store.exists(staged):
                store.replace(staged, rel)
        for rem in entry.removes:
            if owner(rem.lake_path) is None:
                self._retain(entry, rem, rem.lake_path)
                store.remove_empty_dirs(posixpath.dirname(rem.lake_path))
            else:  # the swap left the old directory in staging (the fallback: in staging's .old/)
                for old in (
                    staging_path(entry.batch_id, rem.lake_path),
                    staging_path(entry.batch_id, f".old/{rem.lake_path}"),
                ):
                    self._retain(entry, rem, old)
        if entry.version % history.CHECKPOINT_EVERY == 0:
            history.write_checkpoint(store, self.log, entry.version)
        self.log.set_published(entry.version)
        log.debug(
            "lake %s: published commit %d (%s, %d files added, %d removed, %d directories swapped) in "
            "%.1f ms; its added files appeared one by one over %.2f ms",
            self.url,
            entry.version,
            entry.operation,
            len(entry.adds),
            len(entry.removes),
            len(swaps),
            1e3 * (time.perf_counter() - t0),
            1e3 * ((last_add or 0) - (first_add or 0)),
        )
        faults.point("before_cleanup")
        store.rmtree(staging_path(entry.batch_id))

    def _retain(self, entry: Entry, action: FileAction, rel: str):
        """Move the file ``rel`` that ``entry`` removes (``action``) out of the tables into the retained
        area (:mod:`skylake.lake.history`), or delete it if its table is not retained. Nothing to do if
        it is gone already: a re-run after a kill."""
        store = self.store
        if not store.exists(rel):
            return
        if history.retained(action):
            store.replace(rel, history.removed_path(entry.version, action.lake_path))
        else:
            store.remove(rel)
        faults.point("retained")

    def _publish_dir(self, entry: Entry, directory: str, adds: list[str], removes: set[str]):
        """Publish ``directory`` (lake-relative) of ``entry`` whole, in one atomic step; ``adds`` and
        ``removes`` are the entry's files in it.

        The staged copy ``staging/<batch>/<directory>`` holds the entry's new files there; every live
        file the entry does not remove (other batches' files, anything foreign) is hard-linked into
        it, then the two directories are exchanged (``renameat2(RENAME_EXCHANGE)``), so a reader
        sees the old directory or the new one, never both. The staged path then holds the old
        directory, from which :meth:`_publish` moves the removed files into the retained area before
        deleting the staging area. Without RENAME_EXCHANGE: the live directory is
        renamed to ``staging/<batch>/.old/<directory>`` and the new one into place (absent for that
        moment, never doubled). Re-running after a kill at any point finishes the job: done means
        every added file is live and no removed one is.
        """
        store = self.store
        new, old = staging_path(entry.batch_id, directory), staging_path(entry.batch_id, f".old/{directory}")
        if all(store.exists(a) for a in adds) and not any(store.exists(r) for r in removes):
            return  # done already (the staged path holds the old directory, if anything)
        if not store.swaps_directories:  # the new files in, then the removed ones out
            for rel in adds:
                staged = staging_path(entry.batch_id, rel)
                if store.exists(staged):
                    store.replace(staged, rel)
                elif not store.exists(rel):
                    raise self._lost(entry, rel)
            actions = {r.lake_path: r for r in entry.removes}
            for rel in removes:  # straight to the retained area, where a reader of an earlier version looks
                self._retain(entry, actions[rel], rel)
            return
        if store.exists(directory):
            for rel in store.walk_all(directory):
                target = f"{new}/{posixpath.relpath(rel, directory)}"
                if rel not in removes and not store.exists(target):
                    store.link(rel, target)
            faults.point("swap_ready")
            if not store.exists(new):
                raise self._lost(entry, directory)
            if store.exchange(new, directory):
                faults.point("swapped")
            else:
                store.makedirs(posixpath.dirname(old))
                store.replace(directory, old)
                faults.point("swap_fallback_half")
                store.replace(new, directory)
        elif store.exists(new):  # new, or the fallback was cut between its two renames
            store.replace(new, directory)
        else:
            raise self._lost(entry, directory)

    def _lost(self, entry: Entry, rel: str) -> LakeError:
        return LakeError(
            f"commit {entry.version} of lake {self.url} lists {rel}, but neither its staged nor its "
            "published copy exists; the lake has lost data (restore from backup)"
        )
