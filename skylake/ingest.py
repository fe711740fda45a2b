"""Ingest: FITS frames into the lake, one dask task per file, committed in batches.

The pipeline for one run::

    find files -> hash (workers) -> skip frames already in the lake -> process (workers, windowed; each
               writes its sources as a piece) -> every `batch_size` frames: one transaction (ids; writer
               tasks regroup the pieces into one source file per partition; frame rows; commit)

Exit codes of ``skylake ingest`` (see :class:`IngestReport`): 0 every frame tried was ingested (or
there was nothing new), 3 some frames were rejected (or a directory could not be listed), 4 nothing
was ingested (every frame rejected or no files found), 2 usage error, 1 unexpected failure.

Every file that cannot be processed becomes one rejected frame row with its reason, including a file
whose worker died twice (out of memory, a crash in C code; :class:`Runner` retries it once, alone).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import skylake.sections  # noqa: F401 - every stage's profile section registered: profiles are checked whole
from skylake.allsky.camera import camera_of
from skylake.errors import FrameRejected, LakeError, UsageError
from skylake.frame.reading import file_hash
from skylake.lake import counts, faults, frame_index, pieces, tables
from skylake.lake.lake import Lake
from skylake.lake.log import utc_now as _now
from skylake.lake.nights import UNKNOWN_NIGHT
from skylake.lake.storage import open_storage
from skylake.lake.tables import FRAMES, MAPS, SOURCES, STREAKS
from skylake.lake.transaction import Transaction
from skylake.paths import stored_path
from skylake.profile import Profile, load_profile
from skylake.runtime import Runner, window
from skylake.schema import conform, table_schema
from skylake.tasks.allsky import reflag_streaks
from skylake.tasks.frame import SOURCES_PER_FRAME, FrameResult, frame_night, process_file, rejected_result

__all__ = [
    "FITS_SUFFIXES",
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_SOME_REJECTED",
    "EXIT_NOTHING_INGESTED",
    "IngestReport",
    "DownstreamReports",
    "find_files",
    "CHUNK_BYTES",
    "HASH_CHUNK_BYTES",
    "chunks",
    "WORKER_DIED",
    "VersionConflict",
    "VERSION_POLICIES",
    "commit_batch",
    "BATCH_FRAMES",
    "BATCH_FRAMES_PER_WORKER",
    "batch_frames",
    "LOCAL_FRAMES",
    "LOCAL_HASH_BYTES",
    "ingest_frames",
]


log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz", ".fz")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_REJECTED, EXIT_NOTHING_INGESTED = 0, 1, 2, 3, 4


@dataclass
class DownstreamReports:
    """What the stages after an ingest did (:func:`skylake.pipeline.downstream`), in the order they ran.

    Iterating gives every report, the calibrations' first (what ``skylake ingest`` prints).

    Attributes
    ----------
    calibrations : list of skylake.calib.calibrate.CalibrationReport
        One per profile calibrated.
    night_products : list of skylake.night_products.NightProductsReport
        The night products built (the ensembles and maps among them: its ``reports``).
    dia : list of skylake.dia.stage.DiaReport
        The differences (with a profile's ``[dia]``).
    """

    calibrations: list = field(default_factory=list)
    night_products: list = field(default_factory=list)
    dia: list = field(default_factory=list)

    def __iter__(self):
        yield from self.calibrations
        yield from self.night_products
        yield from self.dia


@dataclass
class IngestReport:
    """What an ingest did.

    ``exit_code`` follows the table in the module docstring.

    Attributes
    ----------
    files : int
        The files found.
    skipped : int
        Frames already in the lake (same content, profile and pipeline version).
    ingested : int
        Frame rows written with status ok or a quality status.
    rejected : list of tuple of (str, str)
        (path, reason) of each rejected frame.
    quality : dict
        Quality status -> how many frames were ingested with it.
    duplicates : int
        Frames another writer committed while we processed them.
    replaced : int
        Earlier frame rows replaced (--redo, or earlier rejected attempts at the same files).
    batch_duplicates : list of tuple of (str, str)
        (path, path of the same frame) in this run.
    unreadable : list of str
        Directories that could not be listed (not searched).
    committed_keys : set of str
        Frame keys this run committed.
    nights : set
        Nights of the files' frames (None: unknown).
    first_new_id : int
        Frames with smaller ids were in the lake when the run began.
    sources : int
        Sources of the frames ingested.
    commits : list of int
        The lake versions this run committed.
    downstream : DownstreamReports
        What the stages after the ingest did (:func:`skylake.pipeline.downstream`), each stage's reports apart.
    saturation_notes : dict
        Note -> frames: a profile's or header's saturation level above what the files can hold (reported
        once, at the end of the run).
    """

    files: int = 0
    skipped: int = 0  # frames already in the lake (same content, profile and pipeline version)
    ingested: int = 0  # frame rows written with status ok or a quality status
    rejected: list[tuple[str, str]] = field(default_factory=list)
    quality: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0  # frames another writer committed while we processed them
    replaced: int = 0  # earlier frame rows replaced (--redo, or earlier rejected attempts at the same files)
    batch_duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, path of the same frame) in this run
    unreadable: list[str] = field(default_factory=list)  # directories that could not be listed (not searched)
    committed_keys: set[str] = field(default_factory=set, repr=False)  # frame keys this run committed
    nights: set = field(default_factory=set, repr=False)  # nights of the files' frames (None: unknown)
    first_new_id: int = field(default=0, repr=False)  # frames with smaller ids were in the lake when the run began
    sources: int = 0
    commits: list[int] = field(default_factory=list)
    downstream: DownstreamReports = field(default_factory=lambda: DownstreamReports())
    saturation_notes: dict[str, int] = field(default_factory=dict, repr=False)  # note -> frames

    def outcome(self) -> str:
        """One line counting the files by outcome, the rejections by kind (``skylake ingest``'s last line).

        Returns
        -------
        str
            The files ingested (and their sources), rejected (by kind) and already in the lake, then the
            frames replaced, committed by another writer or given twice, the directories unreadable and the
            quality statuses, each when there are any.
        """
        from skylake.errors import count_kinds

        rejected = f"{len(self.rejected)} rejected" + (
            f" ({count_kinds(r for _, r in self.rejected)})" if self.rejected else ""
        )
        return (
            f"{self.ingested} of {self.files} files ingested ({self.sources} sources), {rejected}, "
            f"{self.skipped} already in the lake"
            + (f", {self.replaced} earlier frames replaced" if self.replaced else "")
            + (f", {self.duplicates} committed meanwhile by another writer" if self.duplicates else "")
            + (f", {len(self.batch_duplicates)} given twice" if self.batch_duplicates else "")
            + (f", {len(self.unreadable)} directories unreadable" if self.unreadable else "")
            + (f"; quality: {self.quality}" if self.quality else "")
        )

    def saturation_lines(self) -> list[str]:
        """One line per saturation level the run's files could not hold (:attr:`saturation_notes`).

        Returns
        -------
        list of str
            E.g. "saturation 50000 ADU (profile [defaults] saturation) is above what 14 frames' files can hold
            (BITPIX, BZERO, BSCALE): each used its file's largest value less 1 % (frames.saturation)".
        """
        return [
            f"{note} is above what {n} frames' files can hold (BITPIX, BZERO, BSCALE): each used its file's largest "
            f"value less 1 % (frames.saturation; the frame's extract_note says so)"
            for note, n in self.saturation_notes.items()
        ]

    @property
    def exit_code(self) -> int:
        """The exit code of ``skylake ingest`` (the table in the module docstring).

        Returns
        -------
        int
            4 when frames were rejected or directories unreadable and nothing was ingested, or when no
            files were found; 3 when some frames were rejected or directories unreadable; else 0.
        """
        if (self.rejected or self.unreadable) and not self.ingested:
            return EXIT_NOTHING_INGESTED
        if self.rejected or self.unreadable:
            return EXIT_SOME_REJECTED
        if self.files == 0:
            return EXIT_NOTHING_INGESTED
        return EXIT_OK


def find_files(paths: list[str], unreadable: list[str] | None = None) -> list[str]:
    """Expand files, directories (searched recursively for FITS suffixes) and glob patterns.

    Explicitly named files are taken whatever their suffix (a bad file must be reported, not ignored).
    A directory that cannot be listed is logged as a warning and appended to ``unreadable``.

    Parameters
    ----------
    paths : list of str
        Files, directories and glob patterns (recursive ``**`` allowed).
    unreadable : list of str or None
        Where the directories that cannot be listed are appended (None: they are only logged).

    Returns
    -------
    list of str
        The files found, as absolute paths, sorted and without repeats.

    Raises
    ------
    FileNotFoundError
        Naming a path that matches nothing, or a directory with no FITS file in it or below it.
    """
    out = []

    def cannot_list(exc: OSError):  # os.walk would skip it silently
        """Log a directory ``os.walk`` cannot list, and note it in ``unreadable``.

        Parameters
        ----------
        exc : OSError
            The error listing the directory (its ``filename`` names it).
        """
        log.warning(
            "cannot list directory %s (%s); its files are not ingested",
            stored_path(exc.filename or "?"),
            exc.strerror or exc,
        )
        if unreadable is not None:
            unreadable.append(stored_path(exc.filename or "?"))

    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = [
                os.path.join(root, n)
                for root, _, names in os.walk(p, onerror=cannot_list)
                for n in names
                if n.lower().endswith(FITS_SUFFIXES)
            ]
            if not found and p not in (unreadable or []):
                raise FileNotFoundError(
                    f"{p} is a directory with no FITS files in it or below it (looked for {', '.join(FITS_SUFFIXES)})"
                )
            out += found
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
        return path, file_hash(path)[0]  # streamed: any size in bounded memory
    except OSError:
        return path, None


def _hash_files(paths: list[str]) -> list[tuple[str, str | None]]:
    """A task: hash a chunk of files."""
    return [_hash_file(p) for p in paths]


#: A task processes files up to this many bytes together (at least one): dask costs the driver ~2 ms per
#: task, 1 % of a 1k x 1k frame's processing, so small frames go several to a task.
CHUNK_BYTES = 64 * 2**20
#: A hashing task reads up to this many bytes.
HASH_CHUNK_BYTES = 512 * 2**20


def chunks(paths: list[str], max_bytes: int, workers: int, guided: bool = True) -> list[list[str]]:
    """Split ``paths`` in order into chunks for ``workers``, large first and single files last.

    Guided scheduling: each chunk takes at most ``1 / (2 workers)`` of the files still to place (and at
    most ``max_bytes`` of them, a larger file alone), so a run needs O(workers log files) tasks and its
    last tasks are single files: no worker idles at the end while another finishes a long chunk (equal
    chunks of two SkyCamZ frames left one of two workers idle for a chunk at the end of a 14-frame run).
    Without ``guided`` the chunks are equal, two a worker (within ``max_bytes``): for tasks as short as
    hashing, where each task's cost to the scheduler and the driver (~1-2 ms) outweighs an uneven end.

    Parameters
    ----------
    paths : list of str
        The files.
    max_bytes : int
        The most bytes of files in a chunk of more than one file.
    workers : int
        The workers the chunks are for.
    guided : bool
        Chunks shrinking towards single files (True), or equal ones, two a worker (False).

    Returns
    -------
    list of list of str
        The chunks (empty when there are no files).

    Examples
    --------
    >>> [len(c) for c in chunks([f"/no/such/file{i}" for i in range(14)], 2**26, 2)]
    [4, 3, 2, 2, 1, 1, 1]
    >>> [len(c) for c in chunks([f"/no/such/file{i}" for i in range(14)], 2**26, 2, guided=False)]
    [4, 4, 4, 2]
    """
    out, start = [], 0
    sizes = [_size(p) for p in paths]
    while start < len(paths):
        left = len(paths) - start if guided else len(paths)
        most = max(1, -(-left // (2 * max(1, workers))))
        end, size = start + 1, sizes[start]
        while end < len(paths) and end - start < most and size + sizes[end] <= max_bytes:
            size += sizes[end]
            end += 1
        out.append(paths[start:end])
        start = end
    return out


def _process(
    chunk: list[tuple[str, str | None]], profile: Profile, lake_root: str, run: str, order: int
) -> list[FrameResult]:
    """A frame task: process a chunk of (path, known content hash) files, writing each frame's sources as a
    piece (:mod:`skylake.lake.pieces`); the results carry the pieces' paths and pixel counts instead of the
    source rows."""
    store = open_storage(lake_root)
    out = []
    for path, known_hash in chunk:
        for r in process_file(path, profile, known_hash=known_hash, lake_root=store.location):
            if r.n_sources:
                r.piece, r.pixels, r.piece_bytes = pieces.write_piece(store, run, r.frame_key, r.sources, order)
            r.sources = {}
            out.append(r)
    return out


WORKER_DIED = "worker died processing this file (twice: out of memory, or a crash in a library)"


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


def _start_sources(
    tx: Transaction, results: list[FrameResult], frame_ids: np.ndarray, runner: Runner, trails: dict | None = None
) -> Iterator:
    """Start the writer tasks that read the frames' pieces and stage the batch's source files, one per partition
    (:mod:`skylake.lake.pieces`); what they staged is for ``tx.add_staged_partitions``. ``trails``: frame id -> its
    real trails, for frames whose ON_STREAK flags are made again (static artefacts found at this commit).

    Returns
    -------
    iterator
        Each writer's staged files, as the writers finish (on a cluster they run from now on; here each is
        written as it is asked for).
    """
    frames = [(r.piece, int(fid), r.pixels) for r, fid in zip(results, frame_ids) if r.n_sources]
    partitions = tx.partitions_of(SOURCES)
    _, plans = pieces.plan_writers(frames, partitions, tx.lake.config.partition_order, runner.workers())
    return runner.map(
        pieces.write_sources,
        plans,
        window=len(plans),
        priority=10,
        lake_root=tx.lake.store.location,
        batch_id=tx.batch_id,
        partitions=partitions,
        sources_per_frame=SOURCES_PER_FRAME,
        amend=functools.partial(reflag_streaks, trails) if trails else None,
    )


# -- removing frames (--redo) ------------------------------------------------------------------------
def _stage_without_frames(tx: Transaction, table: str, frame_ids: set[int], nights: set | None = None):
    """Rewrite every live file of ``table`` (of a night-partitioned table, only in ``nights``) that holds
    rows of ``frame_ids`` without them (files whose frame_id statistics exclude them all are not read)."""
    ids = pa.array(sorted(frame_ids), type=pa.int64())
    rels = []
    for rel in tx.lake.live_files(table, nights):
        meta = tx.lake.parquet_metadata(f"{table}/{rel}")
        col = meta.schema.to_arrow_schema().get_field_index("frame_id")
        stats = [meta.row_group(i).column(col).statistics for i in range(meta.num_row_groups)]
        if not stats or any(st is None or not st.has_min_max for st in stats):
            rels.append(rel)  # no statistics to rule it out: read it
            continue
        lo, hi = min(st.min for st in stats), max(st.max for st in stats)
        if any(lo <= f <= hi for f in frame_ids):
            rels.append(rel)
    tables.get(table).remove_where(
        tx, lambda data: pc.is_in(data.column("frame_id"), value_set=ids).to_numpy(zero_copy_only=False), files=rels
    )


def _stage_frame_rows(tx: Transaction, results: list[FrameResult], frame_ids, nights: list) -> None:
    """Stage the rows of night tables that frame tasks made beside the frame (``FrameResult.extras``:
    streaks, every frame product of :func:`skylake.lake.tables.frame_products`) with their frame ids.

    Each table's rows are joined first and conformed once: per frame, the Arrow calls cost the driver
    ~0.2 ms a frame."""
    parts: dict[str, tuple[list, list, list]] = {}
    for r, fid, night in zip(results, frame_ids, nights):
        for name, rows in r.extras.items():
            if name == MAPS or rows is None or len(rows) == 0:  # frame maps: skylake.allsky.store
                continue
            rows = rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows, preserve_index=False)
            tabs, ids, where = parts.setdefault(name, ([], [], []))
            tabs.append(rows)
            ids.append(np.full(rows.num_rows, fid, np.int64))
            where += [night] * rows.num_rows
    for name, (tabs, ids, where) in sorted(parts.items()):
        schema = table_schema(name)
        names = [n for n in schema.names if n != "frame_id"]
        try:  # a frame product's rows all have its schema (cast by the frame task)
            rows = pa.concat_tables(tabs)
        except pa.ArrowInvalid:  # rows made from pandas may differ in types: to the schema first
            less_id = pa.schema([schema.field(n) for n in names])
            rows = pa.concat_tables([t.select(names).cast(less_id) for t in tabs])
        rows = rows.select(names).append_column("frame_id", pa.array(np.concatenate(ids)))
        tables.get(name).stage(tx, conform(rows, name), where)


class VersionConflict(LakeError):
    """Files the lake already holds under another profile or pipeline version (a usage error, exit 2)."""


#: What happens to a file's rows under another profile or pipeline version when it is ingested again:
#: "refuse" (the default: the command stops before processing; only rejected attempts are replaced),
#: "replace" (``--redo``: every earlier version goes, in the same commit) or "keep" (``--keep-versions``).
VERSION_POLICIES = ("refuse", "replace", "keep")


def _frame_versions(lake: Lake, hashes=(), records=()) -> pd.DataFrame:
    """frame_id, frame_key, content_hash, hdu, pipeline_version, status, path and night of every frame row
    of the files with these content ``hashes`` and of these frame ``records`` (from the frame index: the
    cost is that of the batch, not of the lake)."""
    if records:
        rows = frame_index.lookup_results(lake, [r.record for r in records])
    else:
        rows = frame_index.lookup(lake, hashes)
    versions = rows.to_pandas()
    versions["night"] = versions["night"].where(versions["night"] != UNKNOWN_NIGHT, None)
    return versions


def _replaced(versions: pd.DataFrame, results: list[FrameResult], redo: bool) -> set[int]:
    """Frame ids the ``results`` replace: with ``redo`` every row of the same file and HDU, otherwise the
    rejected ones only (a failed attempt is not a version worth keeping)."""
    if versions.empty:
        return set()
    keys = {(r.record["content_hash"], int(r.record["hdu"])) for r in results if r.record["content_hash"]}
    mine = versions[[(h, int(d)) in keys for h, d in zip(versions["content_hash"], versions["hdu"])]]
    if not redo:
        mine = mine[mine["status"] == "rejected"]
    return set(mine["frame_id"].astype(int))


def commit_batch(
    lake: Lake,
    results: list[FrameResult],
    redo: bool = False,
    report: IngestReport | None = None,
    profile: Profile | None = None,
    runner: Runner | None = None,
):
    """Commit processed frames as one batch.

    Frames already in the lake (same file, HDU and processing) are dropped (another writer got there
    first) unless ``redo``, which replaces every earlier version of the same files explicitly; earlier
    rejected attempts at the same files are replaced in any case. Replaced frames lose their sources,
    calibrations and matches in the same commit. ``profile`` is stored in the lake beside the frames it
    processed (:mod:`skylake.profile_store`).

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake, writable.
    results : list of skylake.tasks.frame.FrameResult
        The processed frames, their sources written as pieces.
    redo : bool
        Replace every earlier version of the same files.
    report : IngestReport or None
        The run's report, updated with what the batch did (None: a new one, not returned).
    profile : skylake.profile.Profile or None
        The profile that processed the frames, stored in the lake (None: not stored).
    runner : skylake.runtime.Runner or None
        Where the writer tasks run (None: in this process).

    Returns
    -------
    skylake.lake.log.Entry or None
        The commit's log entry, or None when every frame was already in the lake (nothing committed).
    """
    from skylake.allsky.store import stage_allsky, stage_without_allsky
    from skylake.profile_store import stage_profile

    report = report if report is not None else IngestReport()
    with lake.transaction("ingest") as tx:
        tx.runner = runner
        # under the lock: another writer may have committed meanwhile
        versions = _frame_versions(lake, records=results)
        existing = dict(zip(versions["frame_key"], versions["frame_id"]))
        paths = dict(zip(versions["frame_key"], versions["path"]))
        seen, todo = {}, []
        for r in sorted(results, key=lambda r: (r.record["path"], r.record["hdu"])):
            if r.frame_key in seen:  # the same bytes twice in this batch (a copy under another name)
                _batch_duplicate(report, r, seen[r.frame_key])
                continue
            if r.frame_key in existing and not redo:
                if r.frame_key in report.committed_keys:  # an earlier batch of this run has it
                    _batch_duplicate(report, r, paths[r.frame_key])
                elif existing[r.frame_key] < report.first_new_id:  # there before this run: e.g. a file
                    report.skipped += 1  # rejected by its path, tried again
                else:
                    report.duplicates += 1
                continue
            seen[r.frame_key] = r.record["path"]
            todo.append(r)
        if not todo:
            return None
        old = _replaced(versions, todo, redo)
        if old:
            nights = set(versions.loc[versions["frame_id"].isin(old), "night"])
            _stage_without_frames(tx, SOURCES, old)
            for table in tables.frame_tables():  # frames, calibrations, streaks, frame products
                _stage_without_frames(tx, table.name, old, nights)
            stage_without_allsky(tx, old, nights)  # frame maps
            report.replaced += len(old)
        trails = {}
        if any(STREAKS in r.extras for r in todo):  # artefacts of the optics are no trails (before any row is made)
            from skylake.allsky.store import stage_static_artefacts, static_artefacts

            found, trails = static_artefacts(lake, todo, profile, replaced=old)
        ids = tx.allocate_frame_ids(len(todo))
        # the writers run on the workers while this process stages the rest, the index's tasks behind them
        writing = _start_sources(tx, todo, ids, runner or Runner(None), {int(ids[k]): t for k, t in trails.items()})
        if any(STREAKS in r.extras for r in todo):
            stage_static_artefacts(tx, found, ids)
        nights = [frame_night(r.record) for r in todo]
        tx.stage_nights(FRAMES, _frames_table(todo, ids, tx.batch_id), nights)
        _stage_frame_rows(tx, todo, ids, nights)
        if any(MAPS in r.extras for r in todo):
            stage_allsky(tx, todo, ids, nights)
        if profile is not None:
            stage_profile(tx, profile)
        tx.stage_frame_index()
        for staged in writing:
            tx.add_staged_partitions(SOURCES, staged)
        entry = tx.commit(summary={"frames": len(todo), "redo": redo, "replaced": sorted(old)})
    report.committed_keys.update(r.frame_key for r in todo)
    report.nights.update(frame_night(r.record) for r in todo)
    for r in todo:
        status = r.record["status"]
        for note in (r.record.get("extract_note") or "").split("; "):
            if note.startswith("saturation ") and "the file can hold" in note:
                key = note.split(" is above")[0]
                report.saturation_notes[key] = report.saturation_notes.get(key, 0) + 1
        if status == "rejected":
            report.rejected.append((r.record["path"], r.record["reason"]))
        else:
            report.ingested += 1
            report.sources += r.n_sources
            if status != "ok":
                report.quality[status] = report.quality.get(status, 0) + 1
    report.commits.append(entry.version)
    return entry


def _batch_duplicate(report: IngestReport, result: FrameResult, first: str) -> None:
    report.batch_duplicates.append((result.record["path"], first))
    log.warning(
        "%s HDU %d is the same frame as %s (same bytes, HDU and profile); ingested once",
        result.record["path"],
        result.record["hdu"],
        first,
    )


def _plan(
    files: list[str], hashes: dict, versions: pd.DataFrame, profile: Profile, redo: bool, keep_versions: bool
) -> tuple[list[str], list[tuple[str, pd.Series]]]:
    """Which ``files`` to process, and the conflicts: (file, the frame row of another version it has)."""
    if versions.empty:
        return list(files), []
    live = versions[versions["status"] != "rejected"]
    by_hash = {h: g for h, g in live.groupby("content_hash", sort=False)}
    done = set(versions.loc[versions["pipeline_version"] == profile.pipeline_version, "content_hash"])
    todo, conflicts = [], []
    for f in files:
        h = hashes.get(f)
        if redo:
            todo.append(f)
        elif h in done:
            continue  # the same file with the same processing: nothing to do
        elif h in by_hash and not keep_versions:
            conflicts.append((f, by_hash[h].iloc[0]))
        else:
            todo.append(f)
    return todo, conflicts


def _conflict_message(conflicts, profile: Profile) -> str:
    f, row = conflicts[0]
    more = f" (and {len(conflicts) - 1} more files)" if len(conflicts) > 1 else ""
    return (
        f"{f} is already in the lake as frame {int(row['frame_id'])} ({row['pipeline_version']}), not as "
        f"{profile.pipeline_version}{more}; re-run with --redo to replace it or --keep-versions to keep both"
    )


#: Frames a commit takes at least, and per worker of a larger cluster (:func:`batch_frames`).
BATCH_FRAMES = 64
BATCH_FRAMES_PER_WORKER = 32


def batch_frames(workers: int) -> int:
    """Frames per commit when none is asked for: :data:`BATCH_FRAMES`, or :data:`BATCH_FRAMES_PER_WORKER` a
    worker on a larger cluster.

    A commit costs the driver a fixed ~25 ms (the HATS metadata, the log, the renames) and writes a file in
    every partition its frames touch, so a fixed batch would commit more often, in smaller files, the more
    workers there are (64 SkyCamZ frames are ~0.15 s of 50 workers' time); this keeps a commit to a few
    seconds of the cluster's work, which is also what an interrupted run can lose.

    Parameters
    ----------
    workers : int
        The workers processing frames (0 or 1: this process).

    Returns
    -------
    int
        Frames per commit.

    Examples
    --------
    >>> [batch_frames(n) for n in (0, 2, 4, 50)]
    [64, 64, 128, 1600]
    """
    return max(BATCH_FRAMES, BATCH_FRAMES_PER_WORKER * workers)


#: Below this many frames to process (and with no cluster given), ingest works in this process: starting
#: a local cluster costs seconds, more than a few frames do.
LOCAL_FRAMES = 8
#: Below this many bytes to hash, files are hashed in this process.
LOCAL_HASH_BYTES = 512 * 2**20


def ingest_frames(
    lake: Lake | str,
    paths: list[str],
    profile: Profile | str = "generic",
    *,
    client=None,
    redo: bool = False,
    batch_size: int | None = None,
    progress: bool | None = None,
    cluster=None,
    keep_versions: bool = False,
    downstream=None,
) -> IngestReport:
    """Ingest ``paths`` (files, directories, globs) into ``lake`` with ``profile``: frames, sources, frame products.

    Nothing downstream (:func:`skylake.pipeline.ingest` chains calibration after it).
    ``client`` is a ``distributed.Client`` or None to run in this process; ``cluster`` instead, a
    callable returning a context manager that yields one, entered only when the work warrants it (more
    than :data:`LOCAL_FRAMES` frames to process), so that a no-op re-ingest starts no cluster. Frames
    are committed every ``batch_size`` frames, so an interrupted run keeps what it committed and a re-run
    finishes the rest. A file the lake holds under another profile or pipeline version raises
    :class:`VersionConflict` before anything is processed, unless ``redo`` (replace it) or
    ``keep_versions`` (add this version beside it; light curves and maps use the latest version).
    ``downstream(lake, profile, files, client, nights)``, when given, runs after the last commit on the
    same cluster; what it returns is the report's ``calibration``.

    Parameters
    ----------
    lake : skylake.lake.Lake or str
        The lake, or its location.
    paths : list of str
        Files, directories (searched recursively for FITS suffixes) and glob patterns.
    profile : skylake.profile.Profile or str
        The instrument profile, or its name or file.
    client : distributed.Client or None
        Where the tasks run (None: this process, unless ``cluster``).
    redo : bool
        Replace the files' earlier versions.
    batch_size : int or None
        Frames per commit (None: :func:`batch_frames` of the cluster's workers).
    progress : bool or None
        Show a progress bar: True always, False never, None only on a terminal.
    cluster : callable or None
        Returns a context manager yielding a ``distributed.Client``, entered only when the work warrants it.
    keep_versions : bool
        Add this version beside the files' other versions.
    downstream : callable or None
        ``downstream(lake, profile, files, client, nights)``, run after the last commit.

    Returns
    -------
    IngestReport
        What the ingest did.

    Raises
    ------
    VersionConflict
        A file the lake holds under another profile or pipeline version, without ``redo`` or
        ``keep_versions``.
    skylake.errors.UsageError
        The lake lacks an input the profile needs (an all-sky camera's model or bright-star catalogue), or
        ``batch_size`` is below 1.
    FileNotFoundError
        A path matches nothing.
    """

    if batch_size is not None and batch_size < 1:  # (0 is not "automatic": that is None)
        raise UsageError(f"--batch-size {batch_size}: a commit takes at least 1 frame; nothing was ingested")

    lake = Lake.open(lake) if isinstance(lake, (str, os.PathLike)) else lake
    profile = load_profile(profile) if isinstance(profile, (str, os.PathLike)) else profile
    lake.check_writable()  # a read-only lake is refused before any frame is processed
    _check_inputs(lake, profile)
    unreadable: list[str] = []
    files = find_files(paths, unreadable)
    report = IngestReport(files=len(files), unreadable=unreadable)
    with contextlib.ExitStack() as stack:

        def runner(n_tasks: int) -> Runner:
            """A runner for ``n_tasks`` tasks, entering ``cluster`` the first time they are many enough.

            Parameters
            ----------
            n_tasks : int
                The tasks to run.

            Returns
            -------
            skylake.runtime.Runner
                On the client (given, or the cluster's once entered), else in this process.
            """
            nonlocal client, cluster
            if client is None and cluster is not None and n_tasks > LOCAL_FRAMES:
                client, cluster = stack.enter_context(cluster()), None
            return Runner(client)

        frame_index.ensure(lake)  # once each, for a lake made before the index and the status totals
        counts.ensure(lake)
        latest = lake.log.latest()
        report.first_new_id = latest.next_frame_id if latest else 1
        hashes, versions = {}, pd.DataFrame()
        if files and latest is not None and latest.frames_rows > 0:
            small = sum(_size(f) for f in files) < LOCAL_HASH_BYTES
            hashes, versions = _known_frames(
                lake, files, runner(len(files)) if client is not None or not small else Runner(None)
            )
            report.nights.update(versions["night"])  # a killed run's frames may still want calibrating
        todo, conflicts = _plan(files, hashes, versions, profile, redo, keep_versions)
        if conflicts:
            raise VersionConflict(_conflict_message(conflicts, profile))
        report.skipped += len(files) - len(todo)
        if report.skipped:
            log.info("%d of %d files are already in the lake; skipping them", report.skipped, len(files))
        work = runner(len(todo)) if todo else Runner(None)
        _process_and_commit(lake, work, todo, hashes, profile, report, redo, batch_size, progress)
        for version in report.commits:
            log.info("ingest committed v%d", version)
        for line in report.saturation_lines():  # once a run, not once a frame (the command line prints it)
            log.info("%s", line)
        if downstream is not None:
            # the files' frames are in these nights: this run's, or found by hash when the lake had frames
            report.downstream = downstream(lake, profile, files, work.client, report.nights)
    return report


def _known_frames(lake: Lake, files: list[str], hasher: Runner) -> tuple[dict, pd.DataFrame]:
    """Hash the files (on ``hasher``'s workers) and find the lake's frames of the same content.

    Parameters
    ----------
    lake : Lake
        The lake.
    files : list of str
        The files found.
    hasher : skylake.runtime.Runner
        Where the hashing runs.

    Returns
    -------
    tuple of (dict, pandas.DataFrame)
        Path -> content hash, and the lake's frame rows with those hashes (:func:`_frame_versions`).
    """
    hashes = dict(  # results arrive in completion order: each carries its path
        pair
        for part in hasher.map(
            _hash_files,
            chunks(files, HASH_CHUNK_BYTES, hasher.workers(), guided=False),
            window=window(hasher) * 2,
        )
        for pair in part
    )
    return hashes, _frame_versions(lake, hashes=set(hashes.values()))


def _died(profile: Profile, chunk: list) -> list[FrameResult]:
    """The rejected results of a chunk whose worker died twice.

    Parameters
    ----------
    profile : Profile
        The ingest's profile.
    chunk : list of tuple of (str, str or None)
        The chunk's (path, content hash) files.

    Returns
    -------
    list of skylake.tasks.frame.FrameResult
        One rejected result per file, its reason :data:`WORKER_DIED`.
    """
    return [rejected_result(path, profile, "died", WORKER_DIED) for path, _ in chunk]


def _one_per_file(chunk: list) -> list[list]:
    """A chunk split into one chunk per file (to retry each file alone).

    Parameters
    ----------
    chunk : list of tuple of (str, str or None)
        The chunk's (path, content hash) files.

    Returns
    -------
    list of list of tuple of (str, str or None)
        One chunk per file.
    """
    return [[one] for one in chunk]


def _process_and_commit(
    lake: Lake,
    work: Runner,
    todo: list[str],
    hashes: dict,
    profile: Profile,
    report: IngestReport,
    redo: bool,
    batch_size: int | None,
    progress: bool | None,
) -> None:
    """Process the frames of ``todo`` on ``work``'s workers, committing a batch each time enough are back.

    Parameters
    ----------
    lake : Lake
        The lake.
    work : skylake.runtime.Runner
        Where the frames are processed.
    todo : list of str
        The files to process.
    hashes : dict
        Path -> content hash, where known.
    profile : Profile
        The profile.
    report : IngestReport
        Filled as the batches commit.
    redo : bool
        Replace the frames' earlier rows.
    batch_size : int or None
        Frames per commit (None: :func:`batch_frames` of the workers).
    progress : bool or None
        Draw a progress bar: always, never, or only on a terminal (None).
    """
    from tqdm.auto import tqdm

    items = [
        [(f, hashes.get(f)) for f in part]
        for part in (chunks(todo, CHUNK_BYTES, work.workers()) if work.client is not None else [[f] for f in todo])
    ]
    buffer: list[FrameResult] = []
    with (
        _full_while_processing(lake, report, buffer),
        tqdm(total=len(todo), unit="frame", desc="ingest", disable=None if progress is None else not progress) as bar,
        pieces.piece_run(lake.store) if todo else contextlib.nullcontext() as run,
    ):
        for results in work.map(
            _process,
            items,
            window=window(work),
            on_died=functools.partial(_died, profile),
            split=_one_per_file,
            profile=profile,
            lake_root=lake.store.location,
            run=run,
            order=lake.config.partition_order,
        ):
            buffer.extend(results)
            bar.update(len({r.record["path"] for r in results}) or 1)
            faults.point("frame_processed")
            if len(buffer) >= (batch_size or batch_frames(work.workers())):
                commit_batch(lake, buffer, redo=redo, report=report, profile=profile, runner=work)
                buffer.clear()
        if buffer:
            commit_batch(lake, buffer, redo=redo, report=report, profile=profile, runner=work)


def _check_inputs(lake: Lake, profile: Profile) -> None:
    """Refuse, before any frame is processed, a profile whose inputs the lake lacks: an all-sky camera's
    bright-star catalogue. Every frame would be rejected for it, and a rejected frame is not tried again
    by a plain re-ingest."""
    if not profile.is_allsky:
        return
    from skylake.profile import ProfileError
    from skylake.tasks.allsky import catalog_source

    try:
        camera_of(profile)
    except ProfileError as exc:  # a camera known only by its projection: fitted first, or every frame is lost
        raise UsageError(f"ingest with profile {profile.name}: {exc}; nothing was ingested") from None

    try:
        catalog_source(profile, lake.store.location)
    except FrameRejected as exc:
        raise UsageError(f"ingest with profile {profile.name}: {exc.reason}; nothing was ingested") from None


@contextlib.contextmanager
def _full_while_processing(lake: Lake, report: IngestReport, buffer: list[FrameResult]):
    """A full device while a frame task writes its piece: one error saying what was committed and what
    to free (a full device inside a commit already says so: :meth:`Transaction.full_error`)."""
    from skylake.errors import LakeFullError

    try:
        yield
    except LakeFullError as exc:
        if not str(getattr(exc, "rel", "") or "").startswith(pieces.PIECES_DIR):
            raise  # a commit's own full-device error already says what state the lake is in
        staged, nbytes = sum(r.piece_bytes for r in buffer), getattr(exc, "nbytes", 0) or 0
        done = (
            f"commits {', '.join(map(str, report.commits))} of this run stay, the rest"
            if report.commits
            else "nothing was committed and the staged pieces"
        )
        err = LakeFullError(
            f"no space left on the device of lake {lake.url} writing {nbytes} bytes to {exc.rel} "
            f"(ingest, a processed frame's sources): {done} were removed ({staged} bytes already "
            f"staged); free at least {staged + nbytes} bytes and re-run"
        )
        err.rel, err.nbytes = exc.rel, nbytes
        raise err from None


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
