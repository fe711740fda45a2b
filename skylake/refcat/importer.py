"""Import a reference catalogue into ``LAKE/refcats/NAME/`` as a HATS collection with a margin cache.

::

    LAKE/refcats/NAME/
      collection.properties          default_margin = NAME_<threshold>
      NAME/                          the catalogue (HATS, rows sorted by _healpix_29 then ref_id)
      NAME_10arcs/                   its margin cache (rows within the threshold of each partition edge)
      skylake_refcat.json            the import record: format, source files and hashes, counts
    LAKE/refcats/.staging/NAME-ID/   work space of an import in progress (ID: 10 hex digits; removed at the end)
    LAKE/refcats/.NAME.lock          one import of NAME at a time

The work runs in three steps, and nothing heavy starts before every input file's header has been
checked against the format: (1) each file is streamed in chunks through its column map into
temporary shards sorted by ``_healpix_29`` (bad coordinates dropped and counted, rows counted per
pixel; :mod:`~skylake.refcat.normalise`); (2) hats aligns those counts into partitions and one task
per partition takes its rows and its margin's from the shards and writes them
(:mod:`~skylake.refcat.partition`: the input is read once and the shards once, where hats-import
would read them five times); (3) the finished collection is renamed into place. A failure leaves
the previous catalogue (if any) untouched; ``overwrite`` swaps the new one in by two renames, and an
import interrupted between them is restored by the next import of that NAME.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from skylake import __version__
from skylake.lake import Lake
from skylake.refcat import DEFAULT_HIGHEST_ORDER, DEFAULT_MARGIN_ARCSEC, DEFAULT_PIXEL_THRESHOLD
from skylake.refcat.errors import FormatMismatch, RefcatError
from skylake.refcat.formats import Format, Variant, get_format
from skylake.refcat.normalise import DROP_REASONS, ChunkCounts, FileResult, normalise_file
from skylake.refcat.partition import PixelResult, PixelSpec, finish, margin_name, margin_order, plan, write_pixel
from skylake.refcat.readers import Source, is_catalogue_file, open_source, split_compression

__all__ = [
    "REFCATS",
    "STAGING",
    "RECORD",
    "RECORD_VERSION",
    "WRITE_TABLE_KWARGS",
    "ImportReport",
    "default_margin_arcsec",
    "check_name",
    "expand_inputs",
    "match_source",
    "sha256",
    "refcats_dir",
    "import_refcat",
    "quiet_collection_notice",
    "read_record",
]


log = logging.getLogger(__name__)

REFCATS = "refcats"
STAGING = ".staging"
RECORD = "skylake_refcat.json"
RECORD_VERSION = 1
WRITE_TABLE_KWARGS = {"compression": "zstd", "compression_level": 3}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_STAGING_ID_HEX = 10  # hex digits after "NAME-" in a staging folder's name
_DIRECTORY_SKIPS = (".txt", ".dat")  # read by name only: in a directory they are as often read-me files


@dataclass
class ImportReport:
    """What an import did; ``str()`` gives the lines ``skylake refcat import`` prints.

    Attributes
    ----------
    name : str
        The catalogue's name.
    format : str
        Its format.
    path : str
        Where it is (``LAKE/refcats/NAME``, or its URI on an object store).
    rows : int
        Rows written.
    rows_read : int
        Native rows read.
    dropped : dict of str to int
        Rows dropped per reason (missing or impossible coordinates).
    partitions : int
        The catalogue's partitions.
    margin_threshold_arcsec : float
        The margin cache's width [arcsec].
    margin_rows : int
        Rows in the margin cache.
    seconds : float
        How long the import took.
    files : list of dict
        Per input file: path, bytes, sha256, variant, rows read, kept and dropped.
    id_collisions : int
        Rows whose ref_id equals another row's.
    ids_derived : bool
        ref_id is the HEALPix index of the position, not the catalogue's own id.
    timings : dict of str to float
        Seconds per step.
    """

    name: str
    format: str
    path: str
    rows: int
    rows_read: int
    dropped: dict[str, int]
    partitions: int
    margin_threshold_arcsec: float
    margin_rows: int
    seconds: float
    files: list[dict] = field(default_factory=list)
    id_collisions: int = 0  # rows whose ref_id equals another row's
    ids_derived: bool = False  # ref_id is the HEALPix index of the position, not the catalogue's own id
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step

    @property
    def rows_dropped(self) -> int:
        """Rows dropped, whatever the reason.

        Returns
        -------
        int
            The sum of :attr:`dropped`.
        """
        return sum(self.dropped.values())

    def __str__(self) -> str:
        drops = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.dropped.items() if v) or "none"
        lines = [
            f"refcat {self.name} ({self.format}): {self.rows} rows from {self.rows_read} read in "
            f"{len(self.files)} file(s); dropped {self.rows_dropped} ({drops})",
            f"  {self.partitions} partitions, margin {self.margin_threshold_arcsec:g} arcsec "
            f"({self.margin_rows} rows), {self.seconds:.1f} s -> {self.path}",
        ]
        if self.id_collisions:
            lines.append(f"  warning: {_collision_text(self.id_collisions, self.ids_derived)}")
        return "\n".join(lines)


def _collision_text(n: int, derived: bool) -> str:
    if derived:
        return f"{n} rows share a derived ref_id (identical positions)"
    return f"{n} rows repeat another row's ref_id (overlapping input files?)"


# -- helpers -------------------------------------------------------------------------------------------
def default_margin_arcsec() -> float:
    """The margin every import gets unless told otherwise: DEFAULT_MARGIN_ARCSEC (10").

    Not the widest ``match_radius_arcsec`` of the profiles: SkyCamT's 148" would add ~70 % rows to
    every catalogue partitioned at 14' pixels. A profile whose radius exceeds a catalogue's margin is
    refused by ``skylake calibrate`` with the ``--margin-arcsec`` to re-import it with.

    Returns
    -------
    float
        The margin [arcsec].
    """
    return DEFAULT_MARGIN_ARCSEC


def check_name(name: str) -> str:
    """Check a catalogue's name: a letter or digit, then letters, digits, '.', '_' and '-'.

    Parameters
    ----------
    name : str
        The name.

    Returns
    -------
    str
        ``name``.

    Raises
    ------
    RefcatError
        The name is not valid.
    """
    if not _NAME.match(name or ""):
        raise RefcatError(
            f"refcat name {name!r} must start with a letter or digit and hold only letters, digits, '.', '_' and '-'"
        )
    return name


def expand_inputs(paths) -> list[Path]:
    """Files, directories (their catalogue files, recursively) and globs -> sorted unique files.

    A directory contributes every file whose name the reader knows (readers.SUFFIXES, optionally
    .gz/.bz2) except plain-text names (.txt, .dat), which archives use for read-me files as often
    as for tables: those are skipped with a warning that names them (give them explicitly to import).

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Files, directories and globs.

    Returns
    -------
    list of pathlib.Path
        The files, as absolute paths (the workers that read them run in directories of their own), each
        once, in the order given (a directory's and a glob's sorted).

    Raises
    ------
    FileNotFoundError
        A file does not exist, or a glob matches no file.
    RefcatError
        No input file at all.
    """
    out: list[Path] = []
    for raw in paths:
        raw = str(raw)
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and is_catalogue_file(f))
            text = [f for f in found if split_compression(f)[0].endswith(_DIRECTORY_SKIPS)]
            if text:
                log.warning(
                    "%s: skipped %d plain-text file(s) (%s%s); name them to import them",
                    p,
                    len(text),
                    ", ".join(f.name for f in text[:5]),
                    ", ..." if len(text) > 5 else "",
                )
            out.extend(f for f in found if f not in text)
        elif any(ch in raw for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(raw, recursive=True) if Path(m).is_file())
            if not matches:
                raise FileNotFoundError(f"no input file matches {raw}")
            out.extend(matches)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"input file {raw} does not exist")
    seen, unique = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p.absolute())
    if not unique:
        raise RefcatError(f"no input files in {list(map(str, paths))}")
    return unique


def match_source(fmt: Format, source: Source) -> Variant:
    """The variant of ``fmt`` that reads ``source`` (a headerless CSV by its column count).

    Parameters
    ----------
    fmt : skylake.refcat.formats.Format
        The format.
    source : skylake.refcat.readers.Source
        The file's header.

    Returns
    -------
    skylake.refcat.formats.Variant
        The first variant whose required columns the file has.

    Raises
    ------
    FormatMismatch
        No variant fits, naming the expected columns (of a headerless CSV, the headerless layouts).
    """
    if source.headerless:
        for variant in fmt.variants:
            if variant.csv_names and len(variant.csv_names) == source.n_fields:
                return fmt.match(variant.csv_names, str(source.path))
        layouts = [f"{v.label} ({len(v.csv_names)} columns)" for v in fmt.variants if v.csv_names]
        raise FormatMismatch(
            f"{source.path}: has no header row and {source.n_fields} columns; headerless "
            f"layouts of format {fmt.name!r}: {layouts or 'none'}; expected a header with "
            f"{[v.required_columns() for v in fmt.variants]}"
        )
    return fmt.match(source.columns, str(source.path))


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 digest of a file, read in blocks of 8 MiB.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        The digest in hexadecimal.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def refcats_dir(lake: Lake) -> Path:
    """Where catalogues are built: ``LAKE/refcats`` on a local disk, else a local scratch directory.

    For a lake on S3 the finished catalogue is uploaded from the scratch directory (:func:`_upload`).

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.

    Returns
    -------
    pathlib.Path
        ``LAKE/refcats``, or ``skylake-refcats-<hash of the lake's URL>`` in the temporary directory.
    """
    home = lake.store.local_path(REFCATS)  # built in place, then swapped in; else built here and uploaded
    if home is not None:
        return Path(home)
    return Path(tempfile.gettempdir()) / f"skylake-refcats-{uuid.uuid5(uuid.NAMESPACE_URL, lake.url).hex[:12]}"


def _upload(lake: Lake, built: Path, name: str) -> None:
    """Put a catalogue built locally at ``LAKE/refcats/NAME`` on an object store: the files first, its
    ``collection.properties`` last (what readers look for), replacing what was there."""
    store, rel = lake.store, f"{REFCATS}/{name}"
    if store.exists(rel):
        store.remove(f"{rel}/collection.properties")  # no longer a catalogue for readers, then gone
        store.rmtree(rel)
    files = sorted(p for p in built.rglob("*") if p.is_file())
    last = [p for p in files if p.name == "collection.properties" and p.parent == built]
    for path in [p for p in files if p not in last] + last:
        store.fs.put_file(str(path), store.full(f"{rel}/{path.relative_to(built).as_posix()}"))


def _new_staging(root: Path, name: str) -> Path:
    return root / STAGING / f"{name}-{uuid.uuid4().hex[:_STAGING_ID_HEX]}"


def _own_staging(root: Path, name: str) -> list[Path]:
    """The staging folders of ``name`` only: names may hold '-', so a glob ``gaia-*`` would also
    take ``gaia-dr3-<id>`` (another import's work, or its swapped-out catalogue)."""
    own = re.compile(re.escape(name) + f"-[0-9a-f]{{{_STAGING_ID_HEX}}}")
    staging = root / STAGING
    return sorted(p for p in staging.iterdir() if own.fullmatch(p.name)) if staging.is_dir() else []


def _recover(root: Path, name: str) -> None:
    """Finish what an interrupted import of ``name`` left: restore a swapped-out catalogue, clear staging."""
    final = root / name
    for stale in _own_staging(root, name):
        old = stale / "old"
        if old.is_dir() and not final.exists():
            os.rename(old, final)
            log.warning("restored refcat %s from an import interrupted during its swap", name)
        shutil.rmtree(stale, ignore_errors=True)


def _swap(new: Path, final: Path, old: Path) -> None:
    """Put ``new`` at ``final``, moving a previous catalogue aside to ``old`` (removed with the staging
    directory). A crash between the two renames leaves ``old``, which :func:`_recover` puts back."""
    if final.exists():
        os.rename(final, old)
    try:
        os.rename(new, final)
    except BaseException:
        if old.exists() and not final.exists():
            os.rename(old, final)
        raise


# -- the import ----------------------------------------------------------------------------------------
def import_refcat(
    lake: Lake | str | os.PathLike,
    name: str,
    files,
    fmt: str,
    *,
    columns_map=None,
    overwrite: bool = False,
    margin_arcsec: float | None = None,
    pixel_threshold: int = DEFAULT_PIXEL_THRESHOLD,
    highest_order: int = DEFAULT_HIGHEST_ORDER,
    chunk_rows: int = 500_000,
    rows_per_shard: int = 1_000_000,
    client=None,
    workers: int | None = None,
    progress: bool | None = True,
    create: bool = False,
) -> ImportReport:
    """Import ``files`` (format ``fmt``) as ``LAKE/refcats/NAME``.

    Parameters
    ----------
    lake : skylake.lake.Lake or str or os.PathLike
        The lake, or its path or URL.
    name : str
        The catalogue's name (letters, digits, '.', '_', '-').
    files : str or os.PathLike or list or tuple
        Input files, directories and globs (:func:`expand_inputs`).
    fmt : str
        The files' format (``generic`` with ``columns_map``).
    columns_map : str or pathlib.Path or None
        The user's column map of the ``generic`` format.
    overwrite : bool
        Replace an existing catalogue NAME.
    margin_arcsec : float or None
        The margin cache's width [arcsec] (default: :func:`default_margin_arcsec`).
    pixel_threshold : int
        Rows per partition at most.
    highest_order : int
        The highest HEALPix order of a partition, in 0..10.
    chunk_rows : int
        Rows read at a time from an input file.
    rows_per_shard : int
        Rows per temporary shard at most.
    client : distributed.Client or None
        A dask distributed Client (a LocalCluster of ``workers`` processes is started when None).
    workers : int or None
        The processes of that LocalCluster (default: the cores).
    progress : bool or None
        Show progress bars and a line per file normalised; None: the lines always, the bars only on a terminal.
    create : bool
        Create the lake if it does not exist.

    Returns
    -------
    ImportReport
        What the import did.

    Raises
    ------
    FormatMismatch
        A file does not fit the format (naming the expected columns), raised before any heavy work.
    RefcatError
        NAME exists and not ``overwrite``, no row has valid coordinates, or the name, margin or highest
        order is not valid.
    """
    t0 = time.monotonic()
    check_name(name)
    if not isinstance(lake, Lake):
        lake = Lake.init(lake) if create else Lake.open(lake)
    lake.check_writable()
    fmt_obj = get_format(fmt, columns_map)
    paths = expand_inputs(files if isinstance(files, (list, tuple)) else [files])
    sources = [open_source(p) for p in paths]
    variants = [match_source(fmt_obj, s) for s in sources]  # fails here, before any heavy work
    margin = float(margin_arcsec) if margin_arcsec is not None else default_margin_arcsec()
    if not margin > 0:
        raise RefcatError(f"margin must be a positive number of arcsec, got {margin_arcsec}")
    if not 0 <= highest_order <= 10:
        raise RefcatError(f"highest_order must be in 0..10, got {highest_order}")
    root = refcats_dir(lake)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    with lake.store.lock(f"{REFCATS}/.{name}.lock"):
        _recover(root, name)
        if lake.store.local_path() is None:
            shutil.rmtree(final, ignore_errors=True)  # a scratch copy of an earlier upload
        if lake.store.exists(f"{REFCATS}/{name}/collection.properties") and not overwrite:
            raise RefcatError(
                f"refcat {name!r} already exists at {lake.store.uri(f'{REFCATS}/{name}')}; pass --overwrite "
                "(overwrite=True) to replace it"
            )
        staging = _new_staging(root, name)
        shard_dir = staging / "shards"
        shard_dir.mkdir(parents=True)
        try:
            with contextlib.ExitStack() as stack:
                if client is None:
                    from skylake.runtime import dask_client

                    client = stack.enter_context(dask_client(None, workers))
                t1 = time.monotonic()
                results = _normalise_all(
                    client, sources, variants, fmt_obj, shard_dir, chunk_rows, rows_per_shard, highest_order, progress
                )
                t2 = time.monotonic()
                rows = sum(r.counts.rows_kept for r, _, _ in results)
                if rows == 0:
                    raise RefcatError(f"no row of {[str(p) for p in paths]} has valid coordinates; nothing to import")
                out = staging / "out"
                pixels = _partition(
                    client,
                    fmt_obj,
                    name,
                    results,
                    rows,
                    out / name,
                    margin,
                    pixel_threshold,
                    highest_order,
                    progress,
                )
                t3 = time.monotonic()
            where = lake.store.uri(f"{REFCATS}/{name}")
            report = _finish(out / name, name, fmt_obj, sources, variants, results, pixels, margin, t0, lake, where)
            report.timings = {
                "setup": t1 - t0,
                "normalise": t2 - t1,
                "partition": t3 - t2,
                "finish": time.monotonic() - t3,
            }
            if lake.store.local_path() is not None:
                _swap(out / name, final, staging / "old")
            else:
                _upload(lake, out / name, name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.monotonic() - t0
    return report


def _import_partitioning() -> None:
    """Import what planning the partitions and writing the metadata use (hats, its catalog and io modules)."""
    import hats.catalog  # noqa: F401
    import hats.io.parquet_metadata  # noqa: F401
    import hats.io.skymap  # noqa: F401
    import hats.pixel_math  # noqa: F401


def _normalise_all(client, sources, variants, fmt, shard_dir, chunk_rows, rows_per_shard, histogram_order, progress):
    """Normalise every file into shards: one task per file, or per run of row groups for a Parquet
    file large enough to keep every worker busy. Returns (FileResult, sha256, bytes) per file, each
    FileResult with the rows per pixel of all its parts at ``histogram_order``."""
    n_workers = len(client.scheduler_info()["workers"])
    jobs, owner = [], []
    for i, (source, variant) in enumerate(zip(sources, variants)):
        parts = [None]
        if source.kind == "parquet" and n_workers > 1:
            meta = pq.ParquetFile(source.path).metadata
            k = min(meta.num_row_groups, 2 * n_workers) if meta.num_rows > 2 * chunk_rows else 1
            parts = (
                [tuple(int(g) for g in run) for run in np.array_split(np.arange(meta.num_row_groups), k)]
                if k > 1
                else [None]
            )
        for j, groups in enumerate(parts):
            jobs.append(
                (
                    source,
                    variant,
                    fmt,
                    str(shard_dir),
                    f"f{i:05d}p{j:03d}",
                    chunk_rows,
                    rows_per_shard,
                    groups,
                    histogram_order,
                )
            )
            owner.append(i)
    if len(jobs) > 1:
        futures = [client.submit(normalise_file, *job, pure=False) for job in jobs]
        hashes = [client.submit(sha256, s.path, pure=False) for s in sources]
        _import_partitioning()  # here, while the workers normalise: ~2 s of imports off the critical path
        try:
            parts_done, digests = client.gather(futures), client.gather(hashes)
        except BaseException:
            client.cancel(futures + hashes)  # none may write shards after the staging folder is removed
            raise
    else:
        parts_done = [normalise_file(*job) for job in jobs]
        digests = [sha256(s.path) for s in sources]
    results = []
    for i, source in enumerate(sources):
        mine = [r for r, o in zip(parts_done, owner) if o == i]
        counts = ChunkCounts()
        for r in mine:
            counts.add(r.counts)
        pixels = np.concatenate([r.histogram[0] for r in mine])
        merged_pixels, inverse = np.unique(pixels, return_inverse=True)
        per_pixel = np.concatenate([r.histogram[1] for r in mine])
        rows = np.bincount(inverse, weights=per_pixel, minlength=len(merged_pixels))
        merged = FileResult(
            path=str(source.path),
            variant=mine[0].variant,
            counts=counts,
            shards=[sh for r in mine for sh in r.shards],
            histogram=(merged_pixels, rows.astype(np.int64)),
        )
        results.append((merged, digests[i], os.path.getsize(source.path)))
        if progress is not False:
            print(
                f"normalised {source.path} as {merged.variant}: {counts.rows_kept} rows kept of {counts.rows_read}",
                flush=True,
            )
    return results


class _QuietCollectionNotice(logging.Filter):
    """hats logs "Looking for catalog - found collection." to the root logger on every collection it
    validates; that is what we built, so it is not worth a WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is logged.

        Parameters
        ----------
        record : logging.LogRecord
            A log record.

        Returns
        -------
        bool
            False for the "found collection" notice, True for every other record.
        """
        return "found collection" not in record.getMessage()


@contextlib.contextmanager
def quiet_collection_notice():
    """Hide hats's "Looking for catalog - found collection." log notice while the block runs.

    A context manager: a filter on the root logger drops the notice until the block ends (hats logs it
    on every collection it validates).
    """
    flt = _QuietCollectionNotice()
    logging.getLogger().addFilter(flt)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(flt)


def _partition(
    client,
    fmt: Format,
    name: str,
    results,
    rows: int,
    collection: Path,
    margin: float,
    pixel_threshold: int,
    highest_order: int,
    progress: bool,
) -> list[PixelResult]:
    """Partition the shards into the collection ``collection`` (catalog NAME, margin cache beside it):
    one task per partition and per pixel of the empty sky (:mod:`skylake.refcat.partition`)."""
    from hats.pixel_math.healpix_shim import order2npix
    from tqdm.auto import tqdm

    histogram = np.zeros(order2npix(highest_order), dtype=np.int64)
    for result, _, _ in results:
        np.add.at(histogram, result.histogram[0], result.histogram[1])
    if int(histogram.sum()) != rows:
        raise RefcatError(f"the shards' histogram counts {int(histogram.sum())} rows, normalising kept {rows}")
    try:
        partitions, empty = plan(histogram, highest_order, pixel_threshold)
    except ValueError as exc:  # hats' alignment: one pixel of the highest order holds too many rows
        raise RefcatError(
            f"refcat {name}: {exc}; import with a higher highest order (--highest-order, at most 10) or a larger "
            f"pixel threshold (--pixel-threshold)"
        ) from None
    try:
        order = margin_order(margin, max(p.order for p in partitions))
    except ValueError as exc:
        raise RefcatError(f"refcat {name}: {exc}") from None
    spec = PixelSpec(
        shards=tuple(s for r, _, _ in results for s in r.shards),
        schema=fmt.schema(with_healpix=True),
        catalog_dir=str(collection / name),
        margin_dir=str(collection / margin_name(name, margin)),
        margin_order=order,
        write_kwargs=tuple(WRITE_TABLE_KWARGS.items()),
    )
    from hats.pixel_math.healpix_pixel import get_lower_order_pixel

    # each partition's rows: the counts of the highest-order pixels inside it (partitions do not overlap)
    filled = np.flatnonzero(histogram)
    sizes = np.zeros(len(partitions), np.int64)
    for order in sorted({p.order for p in partitions}):
        mine = np.array([k for k, p in enumerate(partitions) if p.order == order])
        pix = np.array([partitions[k].pixel for k in mine], np.int64)
        by = np.argsort(pix)
        up = get_lower_order_pixel(highest_order, filled, highest_order - order)
        at = np.minimum(np.searchsorted(pix[by], up), len(by) - 1)
        inside = pix[by][at] == up
        np.add.at(sizes, mine[by][at[inside]], histogram[filled[inside]])
    sizes = sizes.tolist()
    expected = {(p.order, p.pixel): n for p, n in zip(partitions, sizes)}
    todo = [(p.order, p.pixel, True) for _, p in sorted(zip(sizes, partitions), key=lambda x: -x[0])]
    todo += [(p.order, p.pixel, False) for p in empty]  # margins only: last, they are small
    from distributed import as_completed

    spec_future = client.scatter(spec, broadcast=True)
    futures = [client.submit(write_pixel, o, p, d, spec_future, pure=False) for o, p, d in todo]
    out: list[PixelResult] = []
    try:
        bars = None if progress is None else not progress  # None: only on a terminal
        with tqdm(total=len(futures), unit="pixel", desc=f"partition {name}", disable=bars) as bar:
            for future in as_completed(futures):
                out.append(future.result())
                bar.update(1)
    except BaseException:
        client.cancel(futures)  # no task may write into the staging folder the caller is about to remove
        raise
    wrong = [(r.order, r.pixel, r.rows) for r in out if r.rows != expected.get((r.order, r.pixel), 0)]
    if wrong:  # the shards' rows and their counts disagree: never publish a catalogue that lost rows
        o, p, n = wrong[0]
        raise RefcatError(
            f"refcat {name}: the partition of order {o}, pixel {p} got {n} rows, the shards' counts say "
            f"{expected.get((o, p), 0)} ({len(wrong)} partition(s) differ); nothing was replaced"
        )
    props = {
        "hats_cols_survey_id": "ref_id",
        "obs_title": fmt.description.splitlines()[0][:200],
        "hats_frame": "equatorial",
    }
    with quiet_collection_notice():
        finish(
            collection,
            name,
            out,
            histogram,
            fmt.schema(with_healpix=True),
            margin_threshold=margin,
            pixel_threshold=pixel_threshold,
            builder=f"skylake v{__version__}",
            properties=props,
        )
    return out


def _finish(
    collection: Path,
    name: str,
    fmt: Format,
    sources,
    variants,
    results,
    pixels: list[PixelResult],
    margin: float,
    t0: float,
    lake: Lake,
    final: Path,
) -> ImportReport:
    """Count what was written and store the import record inside the new collection."""
    import hats

    with quiet_collection_notice():
        coll = hats.read_hats(collection)
    main = coll.main_catalog
    margin_cat = hats.read_hats(coll.default_margin_catalog_dir)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    rows_read = 0
    files = []
    epochs = []
    for (result, digest, size), variant in zip(results, variants):
        c = result.counts
        rows_read += c.rows_read
        for k, v in c.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
        epochs += [e for e in (c.epoch_min, c.epoch_max) if e is not None]
        files.append(
            {
                "path": str(Path(result.path).resolve()),
                "bytes": size,
                "sha256": digest,
                "variant": variant.label,
                "rows_read": c.rows_read,
                "rows_kept": c.rows_kept,
                "dropped": c.dropped,
            }
        )
    derived = all(v.columns["ref_id"].kind == "derive" for v in variants)
    collisions = sum(p.id_collisions for p in pixels)
    if collisions:
        log.warning("refcat %s: %s", name, _collision_text(collisions, derived))
    rows = int(main.catalog_info.total_rows)
    report = ImportReport(
        name=name,
        format=fmt.name,
        path=str(final),
        rows=rows,
        rows_read=rows_read,
        dropped=dropped,
        partitions=len(main.get_healpix_pixels()),
        margin_threshold_arcsec=margin,
        margin_rows=int(margin_cat.catalog_info.total_rows),
        seconds=time.monotonic() - t0,
        files=files,
        id_collisions=collisions,
        ids_derived=derived,
    )
    record = {
        "record_version": RECORD_VERSION,
        "name": name,
        "format": fmt.name,
        "format_description": fmt.description,
        "variants": sorted({v.label for v in variants}),
        "bands": list(fmt.bands),
        "band_systems": {b: fmt.systems.get(b, "") for b in fmt.bands},
        "columns": fmt.schema(with_healpix=True).names,
        "ref_id": "derived: HEALPix order-29 index of (ra, dec)" if derived else "the catalogue's own id",
        "rows": rows,
        "rows_read": rows_read,
        "dropped": dropped,
        "id_collisions": collisions,
        "partitions": report.partitions,
        "catalog": main.catalog_name,
        "margin": Path(coll.default_margin_catalog_dir).name,
        "margin_threshold_arcsec": margin,
        "margin_rows": report.margin_rows,
        "epoch_min": min(epochs) if epochs else None,
        "epoch_max": max(epochs) if epochs else None,
        "synthetic": any(s.synthetic for s in sources),
        "source_files": files,
        "lake": lake.url,
        "imported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(report.seconds, 2),
        "skylake_version": __version__,
        "builder": f"skylake v{__version__}, hats v{version('hats')}",
    }
    (collection / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return report


def read_record(path: str | os.PathLike) -> dict:
    """The import record of the catalogue directory ``path`` (``{}`` when it has none).

    Parameters
    ----------
    path : str or os.PathLike
        The catalogue's directory (a universal path for a lake on an object store).

    Returns
    -------
    dict
        The contents of its ``skylake_refcat.json``: format, source files and hashes, counts.
    """
    try:
        return json.loads(((path if hasattr(path, "protocol") else Path(path)) / RECORD).read_text())
    except FileNotFoundError:
        return {}
