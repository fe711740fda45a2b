"""A transaction: one batch of staged files, committed atomically (:meth:`skylake.lake.Lake.transaction`).

Writers stage data files in the batch's staging area (:class:`~skylake.lake.staging.StagingArea`, ``tx.area``)
and record them as file actions; the commit point is the put-if-absent of the next log entry
(:mod:`skylake.lake.log`), after which the lake publishes the files (:meth:`skylake.lake.Lake._publish`).

What products may use: ``batch_id``, ``area``, ``version``, the ``stage*``, ``add_staged``, ``adopt``,
``remove``, ``rewrite_without`` and ``catalog`` calls, and :meth:`~Transaction.rows_may_move` /
:meth:`~Transaction.rows_stay`; the sets of file actions are the transaction's own (tests/test_imports.py).
"""

from __future__ import annotations

import os
import posixpath
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from skylake.errors import LakeError, LakeFullError
from skylake.lake import counts, faults, frame_index, hats_meta, pieces
from skylake.lake.log import Entry, FileAction, new_batch_id, rewritten_rel, staging_path, utc_now
from skylake.lake.nights import night_dir, night_of, night_partitions
from skylake.lake.parquet import BATCH_ZSTD_LEVEL, parquet_bytes
from skylake.lake.staging import StagingArea
from skylake.lake.tables import get, registry
from skylake.schema import table_schema

if TYPE_CHECKING:
    from skylake.lake.lake import Lake

__all__ = ["Transaction"]


class Transaction:
    """One batch: stage data files, then :meth:`commit` them atomically.

    Only valid inside :meth:`Lake.transaction`, which holds the lock and has recovered the lake.

    Parameters
    ----------
    lake : Lake
        The lake being written.
    operation : str
        What the batch does (``ingest``, ``calibrate``, ``compact``, ...): in its id and its log entry.
    publish : callable
        ``publish(entry)`` makes a committed entry's files the live ones (the lake's own publish).
    """

    def __init__(self, lake: Lake, operation: str, publish: Callable[[Entry], None]):
        self.lake = lake
        self._publish = publish  # the lake's: makes a committed entry's files the live ones
        self.operation = operation
        self.batch_id = new_batch_id(operation)
        #: where this batch's files wait for the commit (hand it to worker tasks that write them)
        self.area = StagingArea(lake.store.location, self.batch_id)
        self.base = lake.log.latest()
        self.next_frame_id = self.base.next_frame_id if self.base else 1
        self.adds: list[FileAction] = []
        self.removes: list[FileAction] = []
        self._published: dict[str, list] = {}  # each HATS table's published partitions, read once
        #: what this batch does to each HATS catalog's metadata, written once at the commit (:meth:`catalog`)
        self.catalogs: dict[str, hats_meta.CatalogChange] = {}
        self.metadata: list[str] = []  # other lake-relative files staged here, replaced wholesale at publish
        #: tables whose rows this batch never moves between directories (each rewritten directory keeps its
        #: own rows): their directories are swapped one by one, never the whole table (see :meth:`_swaps`)
        self._in_place: set[str] = set()
        #: tables whose rows this batch may move from one directory to another: a directory that only loses
        #: files while others gain them makes the whole table swap (else a moved row is briefly seen twice)
        self._moving: set[str] = set()
        self.entry: Entry | None = None  # set at the commit point
        self.bytes_staged = 0
        # frame rows added and dropped in this batch: the frame index is rewritten to match at commit
        self.index_added: list[pa.Table] = []
        self.index_dropped: tuple[set[int], set[str]] = (set(), set())
        self.index_staged = False  # stage_frame_index ran: no indexed row may be staged or removed after it
        self.count_changes = counts.Changes()  # rows of frames and zeropoints added and dropped, for status
        self.runner = None  # a skylake.runtime.Runner: where writer tasks run (None: in this process)

    @property
    def version(self) -> int:
        """The version this batch's commit will have (the published one plus one).

        Returns
        -------
        int
            The version.
        """
        return (self.base.version if self.base else 0) + 1

    def rows_may_move(self, table: str) -> None:
        """Say that this batch may move rows of ``table`` from one directory to another.

        A directory that then only loses files while others gain them makes the whole table publish at
        once (else a moved row is briefly seen twice; :meth:`_swaps`).

        Parameters
        ----------
        table : str
            The table.
        """
        self._moving.add(table)

    def rows_stay(self, table: str) -> None:
        """Say that each directory of ``table`` this batch rewrites keeps its own rows (none move elsewhere).

        Its directories are then published one by one, never the whole table (:meth:`_swaps`).

        Parameters
        ----------
        table : str
            The table.
        """
        self._in_place.add(table)

    def catalog(self, table: str, fresh: bool = False) -> hats_meta.CatalogChange:
        """The metadata collector of a HATS table in this batch (made on first use).

        Writers record in it the rows and partitions they add and remove; the commit writes the table's
        HATS metadata from it (:class:`~skylake.lake.hats_meta.CatalogChange`).

        Parameters
        ----------
        table : str
            A HATS catalog of the lake (sources, objects, lightcurves; not the reference catalogues,
            a collection of catalogs of their own).
        fresh : bool, optional
            The batch removes every published file of the table: its metadata starts from nothing.

        Returns
        -------
        skylake.lake.hats_meta.CatalogChange
            The table's collector.

        Raises
        ------
        ValueError
            ``table`` is not a HATS table, or was asked for before with another ``fresh``.
        """
        spec = get(table)
        if not spec.hats or spec.location != table:  # refcats/ holds a collection of catalogs, not one
            raise ValueError(
                f"{table!r} is not one HATS catalog of the lake ({spec.partition_by}, LAKE/{spec.location})"
            )
        change = self.catalogs.get(table)
        if change is None:
            base = None if fresh else self.published_partitions(table)
            change = self.catalogs[table] = hats_meta.CatalogChange(spec.location, fresh=fresh, base=base)
        elif change.fresh != fresh:
            raise ValueError(f"the {table} catalog of this batch was started with fresh={change.fresh}, not {fresh}")
        return change

    def published_partitions(self, table: str) -> list:
        """The partitions of a HATS table as published before this batch (read once per batch).

        Parameters
        ----------
        table : str
            A HATS table of the lake.

        Returns
        -------
        list of hats.pixel_math.HealpixPixel
            The partitions.
        """
        if table not in self._published:
            self._published[table] = hats_meta.read_partitions(self.lake.store, get(table).location)
        return self._published[table]

    def partitions_of(self, table: str) -> list:
        """The partitions new rows of a HATS table may go to: the published ones, then those this batch made.

        Parameters
        ----------
        table : str
            A HATS table of the lake.

        Returns
        -------
        list of hats.pixel_math.HealpixPixel
            The partitions.
        """
        change = self.catalogs.get(table)
        return self.published_partitions(table) + sorted(change.added if change else ())

    def full_error(self, exc: BaseException) -> LakeFullError:
        """The one-line error for a full device during this transaction, saying what state the lake is in.

        Parameters
        ----------
        exc : BaseException
            The error the full device raised (with ``rel`` and ``nbytes`` when storage knew them).

        Returns
        -------
        LakeFullError
            The error to raise instead.
        """
        lake = self.lake
        rel, nbytes = getattr(exc, "rel", None), getattr(exc, "nbytes", None)
        what = (
            f"writing {nbytes} bytes to {rel}"
            if nbytes is not None
            else f"writing {rel}"
            if rel
            else "writing the batch"
            if self.entry is None
            else "publishing it"
        )
        staged = f"{self.bytes_staged} bytes already staged"
        if self.entry is None:
            state = (
                f"nothing was committed and the staged batch was removed ({staged}); free at least "
                f"{self.bytes_staged + (nbytes or 0)} bytes and re-run"
            )
        else:
            state = (
                f"commit {self.entry.version} is in the log but not fully published; the next skylake command "
                "publishes it once space is freed"
            )
        err = LakeFullError(
            f"no space left on the device of lake {lake.url} {what} ({self.operation} batch {self.batch_id}): {state}"
        )
        err.rel, err.nbytes = rel, nbytes
        return err

    def allocate_frame_ids(self, n: int) -> np.ndarray:
        """Reserve the next ``n`` frame ids of the lake for this batch.

        Parameters
        ----------
        n : int
            How many ids.

        Returns
        -------
        numpy.ndarray
            The ids (int64), consecutive.
        """
        ids = np.arange(self.next_frame_id, self.next_frame_id + n, dtype=np.int64)
        self.next_frame_id += n
        return ids

    def stage(
        self,
        table: str,
        path: str,
        data: pa.Table,
        zstd_level: int = BATCH_ZSTD_LEVEL,
        row_group_size: int | None = None,
    ):
        """Write rows as one data file of a table into this batch's staging area.

        Parameters
        ----------
        table : str
            The table (its directory in the lake).
        path : str
            The file's path relative to the table.
        data : pyarrow.Table
            The rows.
        zstd_level : int
            The zstd level of the file.
        row_group_size : int or None
            Rows per row group (None: pyarrow's default).
        """
        action = FileAction(table=table, path=path, rows=data.num_rows)
        blob = parquet_bytes(data, zstd_level, row_group_size)
        self.lake.store.write_bytes(self.area.path(table, path), blob)
        self.bytes_staged += len(blob)
        self.adds.append(action)

    def add_staged(self, table: str, path: str, rows: int, nbytes: int = 0):
        """Count a data file that a task already wrote into this batch's staging area.

        Parameters
        ----------
        table : str
            The table.
        path : str
            The file's path relative to the table (the task wrote it at ``area.path(table, path)``).
        rows : int
            Its rows.
        nbytes : int
            Its size, when the task said (told in a full device's message).
        """
        self.adds.append(FileAction(table=table, path=path, rows=rows))
        self.bytes_staged += nbytes

    def adopt(self, table: str, path: str, rows: int, src: str):
        """Move a data file written elsewhere in the lake (a task's piece) into this batch as ``path``.

        Parameters
        ----------
        table : str
            The table.
        path : str
            The file's path relative to the table.
        rows : int
            Its rows.
        src : str
            Where it is now, relative to the lake (the same store: a rename, no copy on a local disk).
        """
        dest = self.area.path(table, path)
        self.lake.store.makedirs(posixpath.dirname(dest))
        self.lake.store.replace(src, dest)
        self.add_staged(table, path, rows)

    def stage_file(self, rel: str, data: bytes):
        """Stage a small file that is not a table's data; it replaces its published copy at publish.

        Parameters
        ----------
        rel : str
            Its path relative to the lake.
        data : bytes
            Its content.
        """
        self.lake.store.write_bytes(staging_path(self.batch_id, rel), data)
        if rel not in self.metadata:
            self.metadata.append(rel)

    def remove(self, table: str, path: str, rows: int):
        """Remove a published data file in this batch (kept for older versions until vacuum).

        Parameters
        ----------
        table : str
            The table.
        path : str
            The file's path relative to the table.
        rows : int
            Its rows.
        """
        self.removes.append(FileAction(table=table, path=path, rows=rows))

    def _rewrite_without(self, table: str, rels, drop, schema: str | None = None, runner=None) -> int:
        """Remove rows from published files: the engine of :meth:`skylake.lake.tables.Table.remove_where`.

        Each file holding rows to drop is removed in this batch and its other rows are staged beside it
        (``--redo``, a recalibration, a map made again).

        Parameters
        ----------
        table : str
            The table.
        rels : iterable of str
            The files to look at, relative to the table.
        drop : callable
            ``drop(data)`` -> boolean array, true for the rows to drop.
        schema : str or None
            The files' schema when it is not the table's.
        runner : skylake.runtime.Runner or None
            Rewrite the files on its workers (:meth:`_rewrite_on_workers`; None: in this process).

        Returns
        -------
        int
            The rows dropped.
        """
        if runner is not None:
            return self._rewrite_on_workers(table, list(rels), drop, schema, runner)
        dropped = 0
        for k, rel in enumerate(rels):
            data = self.lake.read_parquet(f"{table}/{rel}", schema=table_schema(schema or table))
            gone = np.asarray(drop(data), dtype=bool)
            if not gone.any():
                continue
            dropped += int(gone.sum())
            self.remove(table, rel, data.num_rows)
            if table in counts.KEEP:
                night = night_of(rel)
                self.count_changes.add(table, data.filter(pa.array(gone)), [night] * int(gone.sum()), sign=-1)
            if get(table).index:  # (frames: their frame index loses the rows' entries)
                self._indexed_may_change()
                rows = data.filter(pa.array(gone))
                self.index_dropped[0].update(rows.column("frame_id").to_pylist())
                self.index_dropped[1].update(
                    frame_index.bucket_of(h, k)
                    for h, k in zip(rows.column("content_hash").to_pylist(), rows.column("frame_key").to_pylist())
                )
            if get(table).hats:  # (the lake's catalogs: catalog() refuses others)
                self.catalog(table).remove_rows(data.column("_healpix_29").to_numpy()[gone])
            if not gone.all():
                self.stage(table, rewritten_rel(rel, self.batch_id, k), data.filter(pa.array(~gone)))
        return dropped

    def _rewrite_on_workers(self, table: str, rels: list[str], drop, schema: str | None, runner) -> int:
        """:meth:`_rewrite_without` with the files read and rewritten by tasks on ``runner``'s workers.

        So a large table's rows never pass through the driver (the matches a ``--redo`` drops). The files staged
        and removed are those :meth:`_rewrite_without` would stage and remove, in the same order. Only for a
        table whose dropped rows nothing else follows (no running counts, index or HATS metadata).

        Parameters
        ----------
        table : str
            The table.
        rels : list of str
            The files to look at, relative to the table.
        drop : callable
            ``drop(data)`` -> boolean array (sent to the workers: a module-level function or a partial of one).
        schema : str or None
            The files' schema when it is not the table's.
        runner : skylake.runtime.Runner
            Where the tasks run.

        Returns
        -------
        int
            The rows dropped.

        Raises
        ------
        ValueError
            ``table``'s dropped rows are counted, indexed or in a HATS catalog's metadata.
        """
        spec = get(table)
        if table in counts.KEEP or spec.index or spec.hats:
            raise ValueError(f"{table}: its dropped rows are followed at commit; remove them in this process")
        items = list(enumerate(rels))
        if not items:
            return 0
        n = max(1, min(runner.workers(), len(items)))
        actions = []
        for done in runner.map(
            pieces.rewrite_files,
            [items[k::n] for k in range(n)],
            window=n,
            priority=10,
            area=self.area,
            table=table,
            drop=drop,
            schema=schema or table,
        ):
            actions += done
        dropped = 0
        for _, kind, rel, rows, nbytes in sorted(actions):  # in file order, as _rewrite_without records them
            if kind == "remove":
                self.remove(table, rel, rows)
                dropped += rows
            else:
                self.add_staged(table, rel, rows, nbytes)
                dropped -= rows
        return dropped

    def stage_healpix(
        self, table: str, data: pa.Table, zstd_level: int = BATCH_ZSTD_LEVEL, name: str | None = None
    ) -> None:
        """Stage rows of a HATS table, one file per partition, each sorted by ``_healpix_29``.

        New partitions are cut at the order that keeps each frame's rows together
        (:func:`~skylake.lake.hats_meta.order_for_frames`, by the rows' ``frame_id``; rows without one at the
        lake's partition order). In this process;
        ingest's writer tasks do the same on workers (:mod:`skylake.lake.pieces`).

        Parameters
        ----------
        table : str
            The HATS table (sources).
        data : pyarrow.Table
            The rows, with their ids.
        zstd_level : int
            The zstd level of the files.
        name : str or None
            The files' name (None: the batch id).
        """
        if data.num_rows == 0:
            return
        h29 = data.column("_healpix_29").to_numpy()
        # a table of rows of no one frame (DIA objects): each row is its own set, at the lake's order
        frames = data.column("frame_id").to_numpy() if "frame_id" in data.column_names else np.arange(len(h29))
        order = hats_meta.order_for_frames(h29, frames, self.lake.config.partition_order)
        change = self.catalog(table)
        published = self.published_partitions(table)
        id_column = get(table).id_column
        for pixel, rows in pieces.split_by_partition(data, self.partitions_of(table), order, id_column):
            if pixel not in published:
                change.add_partition(pixel)
            self.stage(
                table,
                f"{hats_meta.pixel_dir(pixel.order, pixel.pixel)}/{name or self.batch_id}.parquet",
                rows,
                zstd_level,
            )
        change.add_rows(h29)

    def add_staged_partitions(self, table: str, staged: pieces.StagedSources):
        """Record the files of a HATS table that a writer task staged in this batch's staging area.

        Parameters
        ----------
        table : str
            The HATS table.
        staged : skylake.lake.pieces.StagedSources
            What the task wrote (:func:`skylake.lake.pieces.write_sources`).
        """
        from hats.pixel_math import HealpixPixel

        for rel, rows, nbytes in staged.files:
            self.add_staged(table, rel, rows, nbytes)
        change = self.catalog(table)
        for order, pixel in staged.new_partitions:
            change.add_partition(HealpixPixel(order, pixel))
        change.add_counts(staged.skymap_pixels, staged.skymap_rows)

    def stage_frame_index(self) -> None:
        """Rewrite the frame-index buckets of the frames staged and removed so far now, not at the commit.

        A bucket is rewritten once, from its committed files, so no frame may be staged or removed in this
        transaction after this. On a cluster the rewrite tasks queue behind the tasks already submitted
        (ingest's writers), which the caller collects afterwards.
        """
        if self.index_added or self.index_dropped[0]:
            frame_index.stage_changes(self, self.index_added, *self.index_dropped)
        self.index_added, self.index_dropped = [], (set(), set())
        self.index_staged = True

    def _indexed_may_change(self) -> None:
        """Refuse a change of an indexed table once :meth:`stage_frame_index` has run (a programming error)."""
        if self.index_staged:
            raise RuntimeError("frames staged or removed after the frame index was rewritten (stage_frame_index)")

    def stage_nights(self, table: str, data: pa.Table, nights: list[str | None], name: str | None = None):
        """Stage rows of a night table, one file per night (and their rows of its index, if it has one).

        Parameters
        ----------
        table : str
            The table.
        data : pyarrow.Table
            The rows.
        nights : list
            Each row's night.
        name : str or None
            The files' name (None: the batch id).
        """
        nights_arr = night_partitions(nights)
        if get(table).index:  # (frames: the frame index)
            self._indexed_may_change()
            self.index_added.append(frame_index.rows_for(data, nights_arr.tolist()))
        self.count_changes.add(table, data, nights_arr.tolist())
        for night in sorted(set(nights_arr)):
            rows = np.flatnonzero(nights_arr == night)
            self.stage(table, f"{night_dir(night)}/{name or self.batch_id}.parquet", data.take(rows))

    def commit(self, summary: dict | None = None) -> Entry | None:
        """Commit everything staged as one atomic step, then publish it.

        Parameters
        ----------
        summary : dict or None
            What the batch did, recorded in its log entry (with the host and process id).

        Returns
        -------
        Entry or None
            The log entry, or None when there was nothing to commit.
        """
        if not self.adds and not self.removes and not self.metadata:
            return None
        if self.index_added or self.index_dropped[0]:
            self.stage_frame_index()
        self._stage_counts()
        store, lake = self.lake.store, self.lake
        totals = self._log_rows()
        for table in sorted({a.table for a in self.adds + self.removes} - set(self.catalogs)):
            spec = registry().get(table)
            if spec is not None and spec.hats and spec.location == table:
                self.catalog(table)  # a batch that changes a catalog's files rewrites its metadata
        metadata = []
        for table, change in sorted(self.catalogs.items()):  # each HATS catalog's metadata, once
            spec = get(table)
            names = change.write(
                store,
                staging_path(self.batch_id, spec.location),
                spec.schema,
                spec.catalog_type,
                spec.id_column,
                rows=totals.get(spec.log_rows),  # the catalog's total rows when the log counts them
            )
            metadata += [f"{spec.location}/{n}" for n in names]
        metadata += self.metadata
        for directory in sorted({posixpath.dirname(staging_path(self.batch_id, a.lake_path)) for a in self.adds}):
            store.fsync_dir(directory)
        faults.point("before_commit")
        entry = Entry(
            swaps=self._swaps(),
            version=(self.base.version if self.base else 0) + 1,
            batch_id=self.batch_id,
            operation=self.operation,
            committed_at=utc_now().isoformat(),
            adds=self.adds,
            removes=self.removes,
            metadata=metadata,
            next_frame_id=self.next_frame_id,
            **totals,
            summary={"host": socket.gethostname(), "pid": os.getpid(), **(summary or {})},
        )
        if not lake.log.append(entry):
            # The writer lock makes this unreachable unless a writer ignored the lock: refuse loudly.
            raise LakeError(
                f"commit version {entry.version} was taken by another writer; batch "
                f"{self.batch_id} is left staged and will be rolled back by `skylake repair`"
            )
        self.entry = entry
        faults.point("after_commit")
        self._publish(entry)
        return entry

    def _log_rows(self) -> dict[str, int]:
        """The rows of each table the log counts (``log_rows:`` in its schema) after this batch.

        Returns
        -------
        dict
            The log entry's field (``sources_rows``, ...) to its total.
        """
        totals = {}
        for spec in registry().values():
            if spec.log_rows:
                added = sum(a.rows for a in self.adds if a.table == spec.name)
                removed = sum(r.rows for r in self.removes if r.table == spec.name)
                totals[spec.log_rows] = (getattr(self.base, spec.log_rows) if self.base else 0) + added - removed
        return totals

    def _stage_counts(self):
        """The running totals after this batch (:mod:`skylake.lake.counts`), when it changes them."""
        files = any(
            a.table in counts.FILE_TABLES or counts.rows_table(a.table, a.path) for a in self.adds + self.removes
        )
        if not (self.count_changes or files) or counts.COUNTS in self.metadata:
            return
        base = counts.read(self.lake)
        if base is None:  # a lake made before the checkpoint: status reads the tables until it is built
            return
        version = (self.base.version if self.base else 0) + 1
        touched = {a.table for a in self.adds + self.removes}
        partitions = {t: len(self.catalog(t).partitions(self.lake.store)) for t in counts.PARTITIONS_OF & touched}
        self.stage_file(
            counts.COUNTS,
            counts.dumps(
                counts.apply(self.lake, base, self.count_changes, self.adds, self.removes, version, partitions)
            ),
        )
        self.count_changes = counts.Changes()

    def _swaps(self) -> list[str]:
        """Directories to publish whole (see :meth:`Lake._publish_dir`), decided from this batch alone.

        A table that loses files and gains files in a directory that loses none (a split partition's
        children; a rewrite whose rows land elsewhere) is swapped whole: its rows may move between
        directories, and only one exchange of the table keeps a reader from seeing them twice (and
        keeps lsdb's partition_info.csv in step with the directories), unless the batch says its rows stay
        where they are (:meth:`rows_stay`: the frame index, appended LAKE/lightcurves); so is a table whose rows
        the batch may move (:meth:`rows_may_move`: LAKE/objects) when a directory only loses files while others gain
        them. Otherwise each directory that
        both loses and gains files (a compacted partition, a rewritten night) is swapped alone; files
        added elsewhere are plain renames.
        """
        swaps = []
        for table in sorted({r.table for r in self.removes}):
            add_dirs = {posixpath.dirname(a.lake_path) for a in self.adds if a.table == table}
            rem_dirs = {posixpath.dirname(r.lake_path) for r in self.removes if r.table == table}
            whole = (
                add_dirs - rem_dirs or (table in self._moving and add_dirs and rem_dirs - add_dirs)
            ) and table not in self._in_place
            swaps += [table] if whole else sorted(add_dirs & rem_dirs)
        return swaps
