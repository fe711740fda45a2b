"""Ingest: FITS frames into the lake, one ``dask.delayed`` task per file, committed in batches.

The pipeline for one run::

    find files -> hash (workers) -> skip frames already in the lake -> process (workers, windowed)
               -> every `batch_size` frames: one transaction (ids, source/frame files, commit)

Exit codes of ``skylake ingest`` (see :class:`IngestReport`): 0 every frame tried was ingested (or
there was nothing new), 3 some frames were rejected, 4 nothing was ingested (every frame rejected or
no files found), 2 usage error, 1 unexpected failure.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import dask
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skylake.frame.process import SOURCES_PER_FRAME, FrameResult, process_file
from skylake.frame.reading import content_hash, read_bytes
from skylake.lake import faults
from skylake.lake.lake import FRAMES, SOURCES, Lake, Transaction, _now
from skylake.profile import Profile, load_profile
from skylake.schema import conform, table_schema

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz", ".fz")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_REJECTED, EXIT_NOTHING_INGESTED = 0, 1, 2, 3, 4


@dataclass
class IngestReport:
    """What an ingest did. ``exit_code`` follows the table in the module docstring."""

    files: int = 0
    skipped: int = 0  # frames already in the lake (same content, profile and pipeline version)
    ingested: int = 0  # frame rows written with status ok or a quality status
    rejected: list[tuple[str, str]] = field(default_factory=list)
    quality: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0  # frames another writer committed while we processed them
    sources: int = 0
    commits: list[int] = field(default_factory=list)
    calibration: list = field(default_factory=list)  # skylake.calib CalibrationReports of the new frames

    @property
    def exit_code(self) -> int:
        if self.rejected and not self.ingested:
            return EXIT_NOTHING_INGESTED
        if self.rejected:
            return EXIT_SOME_REJECTED
        if self.files == 0:
            return EXIT_NOTHING_INGESTED
        return EXIT_OK


def find_files(paths: list[str]) -> list[str]:
    """Expand files, directories (searched recursively for FITS suffixes) and glob patterns.

    Explicitly named files are taken whatever their suffix (a bad file must be reported, not ignored).
    Raises ``FileNotFoundError`` naming a path that matches nothing.
    """
    out = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                out += [os.path.join(root, n) for n in names if n.lower().endswith(FITS_SUFFIXES)]
        elif os.path.isfile(p):
            out.append(p)
        else:
            matches = glob.glob(p, recursive=True)
            if not matches:
                raise FileNotFoundError(f"no such file, directory or glob match: {p}")
            out += [m for m in matches if os.path.isfile(m)]
    return sorted({os.path.abspath(p) for p in out})


def _hash_file(path: str) -> tuple[str, str | None]:
    try:
        return path, content_hash(read_bytes(path))
    except OSError:
        return path, None


def _process(item: tuple[str, str | None], profile: Profile) -> list[FrameResult]:
    path, known_hash = item
    return process_file(path, profile, known_hash=known_hash)


# -- running tasks ---------------------------------------------------------------------------------
class Runner:
    """Runs delayed tasks on a dask.distributed client, or in this process (``scheduler="synchronous"``)."""

    def __init__(self, client=None):
        self.client = client

    def map(self, func, items: list, window: int, **kwargs) -> Iterator:
        """Yield ``func(item, **kwargs)`` results as they complete, with at most ``window`` in flight."""
        if self.client is None:
            for item in items:
                yield dask.delayed(func)(item, **kwargs).compute(scheduler="synchronous")
            return
        from distributed import as_completed

        items = list(items)
        pending = as_completed()
        for item in items[:window]:
            pending.add(self.client.compute(dask.delayed(func)(item, **kwargs)))
        nxt = window
        for future in pending:
            result = future.result()
            future.release()
            if nxt < len(items):
                pending.add(self.client.compute(dask.delayed(func)(items[nxt], **kwargs)))
                nxt += 1
            yield result


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    """A client for ``scheduler`` (an address), "synchronous" (no cluster), or a new LocalCluster."""
    if scheduler == "synchronous":
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    # distributed sets MALLOC_TRIM_THRESHOLD_ in new workers, which also freezes glibc's mmap threshold:
    # every frame-sized array is then mapped and page-faulted afresh (50-150 ms per 4k frame).
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
               if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
            LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


# -- building tables -------------------------------------------------------------------------------
def _frames_table(results: list[FrameResult], frame_ids: np.ndarray, batch_id: str) -> pa.Table:
    schema = table_schema(FRAMES)
    now = _now()
    rows = []
    for result, frame_id in zip(results, frame_ids):
        rec = {name: result.record.get(name) for name in schema.names}
        rec.update(frame_id=int(frame_id), batch_id=batch_id, ingested_at=now)
        rows.append(rec)
    return pa.Table.from_pylist(rows, schema=schema)


def _sources_table(results: list[FrameResult], frame_ids: np.ndarray) -> pa.Table:
    schema = table_schema(SOURCES)
    with_sources = [(r, fid) for r, fid in zip(results, frame_ids) if r.n_sources]
    if not with_sources:
        return schema.empty_table()
    cols = {}
    for name in schema.names:
        if name == "frame_id":
            cols[name] = np.concatenate([np.full(r.n_sources, fid, dtype=np.int64) for r, fid in with_sources])
        elif name == "source_id":
            cols[name] = np.concatenate([fid * SOURCES_PER_FRAME + np.arange(r.n_sources, dtype=np.int64)
                                         for r, fid in with_sources])
        else:
            cols[name] = np.concatenate([np.asarray(r.sources[name]) for r, _ in with_sources])
    return conform(cols, SOURCES)


# -- removing frames (--redo) ------------------------------------------------------------------------
def _stage_without_frames(tx: Transaction, table: str, frame_ids: set[int]):
    """Rewrite every live file of ``table`` that holds rows of ``frame_ids`` without them (files whose
    frame_id statistics exclude them all are not read)."""
    ids = pa.array(sorted(frame_ids), type=pa.int64())
    rels = []
    for rel in tx.lake.live_files(table):
        meta = pq.ParquetFile(tx.lake.path(f"{table}/{rel}")).metadata
        col = meta.schema.to_arrow_schema().get_field_index("frame_id")
        lo = min(meta.row_group(i).column(col).statistics.min for i in range(meta.num_row_groups))
        hi = max(meta.row_group(i).column(col).statistics.max for i in range(meta.num_row_groups))
        if any(lo <= f <= hi for f in frame_ids):
            rels.append(rel)
    tx.rewrite_without(table, rels, lambda data: pc.is_in(data.column("frame_id"), value_set=ids)
                       .to_numpy(zero_copy_only=False))


def commit_batch(lake: Lake, results: list[FrameResult], redo: bool = False, report: IngestReport | None = None):
    """Commit processed frames as one batch. Frames already in the lake are dropped (another writer
    got there first) unless ``redo``, which replaces them explicitly."""
    report = report if report is not None else IngestReport()
    with lake.transaction("ingest") as tx:
        frames = lake.read_frames(columns=["frame_key", "frame_id"])
        existing = dict(zip(frames.column("frame_key").to_pylist(), frames.column("frame_id").to_pylist()))
        seen, todo = set(), []
        for r in sorted(results, key=lambda r: (r.record["path"], r.record["hdu"])):
            if r.frame_key in seen or (r.frame_key in existing and not redo):
                report.duplicates += 1
                continue
            seen.add(r.frame_key)
            todo.append(r)
        if not todo:
            return None
        if redo:
            old = {existing[r.frame_key] for r in todo if r.frame_key in existing}
            if old:
                _stage_without_frames(tx, SOURCES, old)
                _stage_without_frames(tx, FRAMES, old)
        ids = tx.allocate_frame_ids(len(todo))
        tx.stage_sources(_sources_table(todo, ids))
        tx.stage_frames(_frames_table(todo, ids, tx.batch_id), [r.record.get("night") for r in todo])
        entry = tx.commit(summary={"frames": len(todo), "redo": redo})
    for r in todo:
        status = r.record["status"]
        if status == "rejected":
            report.rejected.append((r.record["path"], r.record["reason"]))
        else:
            report.ingested += 1
            report.sources += r.n_sources
            if status != "ok":
                report.quality[status] = report.quality.get(status, 0) + 1
    report.commits.append(entry.version)
    return entry


def ingest(lake: Lake | str, paths: list[str], profile: Profile | str = "generic", client=None,
           redo: bool = False, batch_size: int = 64, progress: bool | None = None) -> IngestReport:
    """Ingest ``paths`` (files, directories, globs) into ``lake`` with ``profile``.

    ``client`` is a ``distributed.Client`` or None to run in this process. Frames are committed every
    ``batch_size`` frames, so an interrupted run keeps what it committed and a re-run finishes the rest.
    """
    from tqdm.auto import tqdm

    lake = Lake.open(lake) if isinstance(lake, (str, os.PathLike)) else lake
    profile = load_profile(profile) if isinstance(profile, (str, os.PathLike)) else profile
    files = find_files(paths)
    report = IngestReport(files=len(files))
    runner = Runner(client)
    window = max(4, 4 * len(client.scheduler_info().get("workers", {}))) if client is not None else 1

    if not redo and files:
        frames = lake.read_frames(columns=["content_hash", "pipeline_version"])
        done = set(zip(frames.column("content_hash").to_pylist(), frames.column("pipeline_version").to_pylist()))
        # results arrive in completion order: each carries its path
        hashes = dict(runner.map(_hash_file, files, window=window * 4)) if done else {}
        todo = [f for f in files if (hashes.get(f), profile.pipeline_version) not in done]
    else:
        hashes, todo = {}, files
    report.skipped = len(files) - len(todo)
    if report.skipped:
        log.info("%d of %d files are already in the lake; skipping them", report.skipped, len(files))

    buffer: list[FrameResult] = []
    # progress: True always, False never, None only on a terminal
    with tqdm(total=len(todo), unit="frame", desc="ingest", disable=None if progress is None else not progress) as bar:
        for results in runner.map(_process, [(f, hashes.get(f)) for f in todo], window=window, profile=profile):
            buffer.extend(results)
            bar.update(1)
            faults.point("frame_processed")
            if len(buffer) >= batch_size:
                commit_batch(lake, buffer, redo=redo, report=report)
                buffer = []
        if buffer:
            commit_batch(lake, buffer, redo=redo, report=report)
    from skylake.calib.calibrate import calibrate_ingested  # a separate commit; `calibrate` redoes what a crash lost

    report.calibration = calibrate_ingested(lake, profile, report.commits, client)
    return report
