"""Time travel and vacuum: read the lake as it was at a commit, and delete what no kept version needs.

``open_lake(url, version=N)`` returns a :class:`Snapshot`: a read-only lake whose ``read_*`` and
``*_dataset`` methods read exactly the data files of commit N (:func:`skylake.lake.history.files_at`),
wherever they are now: still live, or retained under ``_skylake/removed/<v>/`` by the later commit v
that removed them. ``skylake vacuum LAKE --retain DAYS`` (:func:`vacuum`) deletes the retained files
no kept version needs; a version it no longer keeps is refused with one line naming what is kept.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import operator
import posixpath

import pyarrow as pa
import pyarrow.dataset as pads

from skylake.errors import LakeError
from skylake.lake import history, pinned
from skylake.lake.lake import Lake, LakeView
from skylake.lake.log import STAGING_DIR, staged_batches
from skylake.lake.log import utc_now as _now
from skylake.lake.tables import SOURCES, registry
from skylake.schema import table_schema

__all__ = ["DEFAULT_RETAIN_DAYS", "open_lake", "Snapshot", "vacuum", "format_vacuum"]


log = logging.getLogger(__name__)

#: ``skylake vacuum``'s default retention [days].
DEFAULT_RETAIN_DAYS = 7.0


def open_lake(url, version: int | None = None, catch_up: bool = True) -> LakeView:
    """Open a lake, now or as it was at a commit (time travel).

    Parameters
    ----------
    url : str or os.PathLike
        The lake.
    version : int or None
        A commit number N (None: the lake as it is now).
    catch_up : bool
        Finish publishing commits a killed writer left unpublished (:meth:`Lake.catch_up`), now and before
        every ``read_*``; False reads the tables exactly as they are on disk.

    Returns
    -------
    Lake
        The lake (:meth:`Lake.open`), or with ``version=N`` a read-only :class:`Snapshot` whose readers see
        exactly the rows of commit N.

    Raises
    ------
    LakeError
        The version is not committed, not yet published or vacuumed (one line naming it and the versions
        kept).
    """
    lake = Lake.open(url, catch_up=catch_up)
    return lake if version is None else Snapshot.at(lake, version)


class Snapshot(LakeView):
    """The lake as it was at a commit: a read-only view (made by :meth:`at` and :func:`open_lake`).

    Parameters
    ----------
    lake : Lake
        The lake as it is now.
    version : int
        The commit.
    files : dict of str to str
        Each data file of the version (lake-relative, as the log names it) to where it is stored now (the
        same path, or its retained copy).
    """

    def __init__(self, lake: Lake, version: int, files: dict[str, str]):
        super().__init__(lake.url, lake.config)
        self.version = version
        self.entry = lake.log.read(version)
        self.files = files
        self.auto_catch_up = False

    @classmethod
    def at(cls, lake: Lake, version) -> Snapshot:
        """The snapshot of a lake at a version.

        Parameters
        ----------
        lake : Lake
            The lake as it is now.
        version : int
            The commit number.

        Returns
        -------
        Snapshot
            The lake at that commit.

        Raises
        ------
        LakeError
            The version is not a committed version, is not yet published, was vacuumed, or has files that
            are gone (one line naming it).
        """
        latest, published = lake.log.latest_version(), lake.log.published_version()
        try:
            number = None if isinstance(version, bool) else operator.index(version)
        except TypeError:
            number = None
        if number is None:
            raise LakeError(f"lake {lake.url}: version must be a commit number, got {version!r}")
        version = number
        oldest = history.oldest_kept(lake.store)
        if not 1 <= version <= latest:
            raise LakeError(
                f"lake {lake.url} has no version {version}: its versions are "
                + (f"{oldest}..{latest}" if latest else "none yet (nothing committed)")
            )
        if version < oldest:
            raise LakeError(
                f"version {version} of lake {lake.url} was vacuumed: `skylake vacuum` kept versions {oldest}..{latest}"
            )
        if version > published:
            raise LakeError(
                f"version {version} of lake {lake.url} is committed but not published (published: "
                f"{published}); run `skylake repair {lake.url}` (a writer's job)"
            )
        return cls(lake, version, cls._locate(lake, version, oldest))

    @staticmethod
    def _locate(lake: Lake, version: int, oldest: int) -> dict[str, str]:
        store = lake.store
        files = history.files_at(store, lake.log, version)
        moved = history.removed_by(store, lake.log, version, lake.log.published_version())
        where: dict[str, str] = {}
        missing = []
        for rel in files:
            kept = history.removed_path(moved[rel], rel) if rel in moved else None
            if kept is not None and store.exists(kept):
                where[rel] = kept
            elif store.exists(rel):  # live (or a later commit is moving it right now)
                where[rel] = rel
            else:
                missing.append(rel)
        if missing:
            raise LakeError(
                f"version {version} of lake {lake.url} cannot be read: {len(missing)} of its "
                f"{len(files)} files are gone (e.g. {missing[0]}), removed before the lake kept removed "
                f"files or deleted by hand; try a later version (the latest is {lake.log.latest_version()})"
            )
        return where

    def __repr__(self) -> str:
        return f"Snapshot({self.url!r}, version={self.version})"

    # -- read-only ---------------------------------------------------------------------------------
    def _read_only(self, what: str) -> LakeError:
        return LakeError(
            f"lake {self.url} is opened at version {self.version}, read-only: cannot {what}; "
            "open it without version= to write"
        )

    def check_writable(self):
        """Refuse to write: a snapshot is read-only.

        Raises
        ------
        LakeError
            Always.
        """
        raise self._read_only("write")

    def catch_up(self, wait: float = 0) -> int:
        """Nothing to publish: a snapshot reads a published version.

        Parameters
        ----------
        wait : float
            Ignored (as :meth:`Lake.catch_up` takes it) [s].

        Returns
        -------
        int
            This snapshot's version.
        """
        return self.version  # a published version never changes

    # -- reading -----------------------------------------------------------------------------------
    def path(self, rel: str = "") -> str:
        """Absolute path of a lake-relative path.

        Parameters
        ----------
        rel : str
            The lake-relative path ('' for the lake itself).

        Returns
        -------
        str
            The absolute path; of a data file of this version, where it is stored now.
        """
        return self._current([rel])[0] if rel in self.files else self.store.full(rel)

    def table_files(self, table: str) -> list[str]:
        """This version's data files of a table.

        Parameters
        ----------
        table : str
            The table (its directory in the lake).

        Returns
        -------
        list of str
            The files, relative to the table (as :meth:`live_files`), sorted.
        """
        prefix = f"{table}/"
        return sorted(rel[len(prefix) :] for rel in self.files if rel.startswith(prefix))

    def live_files(self, table: str, nights=None) -> list[str]:
        """This version's data files of a table.

        Parameters
        ----------
        table : str
            The table (its directory in the lake).
        nights : iterable of str or None
            Only the files of these nights (an element None or NaN: the unknown night); None for all.

        Returns
        -------
        list of str
            The files, relative to the table.
        """
        return pinned.of_nights(self.table_files(table), nights)

    def _current(self, rels: list[str]) -> list[str]:
        """Absolute paths of lake-relative data files of this version, looked up again if a commit since
        the last look-up moved one into the retained area (a snapshot object outlives later commits)."""
        if not all(self.store.exists(self.files[r]) for r in rels):
            oldest = history.oldest_kept(self.store)
            if self.version < oldest:
                raise LakeError(
                    f"version {self.version} of lake {self.url} was vacuumed while open: `skylake "
                    f"vacuum` kept versions {oldest}..{self.log.latest_version()}"
                )
            self.files = self._locate(self, self.version, oldest)
        return [self.store.full(self.files[r]) for r in rels]

    def _dataset(self, table: str, rels: list[str], schema: pa.Schema, parts) -> pads.Dataset:
        if not rels:
            return pads.dataset(schema.empty_table())
        with self._reading(table):
            full = [f"{table}/{r}" for r in rels]
            self._current(full)  # looked up again if a later commit moved one of them since
            return pinned.dataset_of(self.store, rels, [self.files[f] for f in full], schema, parts)

    def _night_dataset(self, table: str, nights=None) -> pads.Dataset:
        """A night-partitioned table at this version (only ``nights``' rows when given; an element None or
        NaN: the unknown night), with ``night`` from the file's partition directory; what
        :meth:`~skylake.lake.lake.Lake.night_dataset` and ``read_night_table`` read."""
        schema = table_schema(table).append(pa.field("night", pa.string()))
        return self._dataset(table, self.live_files(table, nights), schema, pinned.NIGHT_PARTS)

    def _sources_dataset(self) -> pads.Dataset:
        """The source table at this version, with ``Norder``, ``Dir``, ``Npix`` from the partition paths; what
        :meth:`~skylake.lake.lake.Lake.sources_dataset` and ``read_sources`` read."""
        schema = table_schema(SOURCES)
        for name, typ in pinned.HATS_PARTS:
            schema = schema.append(pa.field(name, typ))
        rels = [r for r in self.table_files(SOURCES) if r.startswith("dataset/")]
        return self._dataset(SOURCES, rels, schema, pinned.HATS_PARTS)

    def partitions(self) -> int:
        """Source partitions holding rows at this version.

        Returns
        -------
        int
            How many.
        """
        return len({posixpath.dirname(r) for r in self.table_files(SOURCES) if r.startswith("dataset/")})


# -- vacuum ----------------------------------------------------------------------------------------
def _committed_at(lake: Lake, version: int) -> dt.datetime:
    text = lake.log.read(version).committed_at
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise LakeError(f"commit {version} of lake {lake.url} has committed_at {text!r}, not an ISO time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def vacuum(lake: Lake, *, retain_days: float = DEFAULT_RETAIN_DAYS, dry_run: bool = False, now=None) -> dict:
    """Delete the retained files no kept version needs, and staging leftovers; under the writer lock.

    Kept: every version committed within ``retain_days`` of ``now``, and the newest one committed
    before that (it was the lake for part of the window); ``retain_days=0`` keeps only the latest. A
    file removed by commit v is needed only by versions before v, so ``removed/<v>/`` goes once v is
    at or below the oldest kept version. That version is recorded (``_skylake/vacuumed.json``) before
    anything is deleted, so a kill mid-vacuum never leaves a version that reads partly.

    Parameters
    ----------
    lake : Lake
        The lake.
    retain_days : float
        How long versions are kept [days].
    dry_run : bool
        List the same without deleting.
    now : datetime.datetime or None
        The time the retention counts back from (None: now, UTC).

    Returns
    -------
    dict
        What was (or would be) removed: the versions kept and vacuumed, the retained files and their bytes,
        the staging leftovers (:func:`format_vacuum` prints it).

    Raises
    ------
    LakeError
        ``retain_days`` is not a number of days >= 0, the lake is read-only (unless ``dry_run``), or a
        commit's time is not an ISO time.
    """
    if isinstance(retain_days, bool) or not isinstance(retain_days, (int, float)) or not 0 <= retain_days < 1e6:
        raise LakeError(f"--retain must be a number of days >= 0, got {retain_days!r}")
    if not dry_run:
        lake.check_writable()
    lock = lake._lock() if lake.writable() else contextlib.nullcontext()
    with lock:
        if not dry_run:
            lake.roll_forward()  # a committed batch's staging is not a leftover
        staging = [f"{STAGING_DIR}/{name}" for name in staged_batches(lake.store)]
        staging_files, staging_bytes = [], 0
        for rel in staging:
            files, size = history.tree_size(lake.store, rel)
            staging_files += files
            staging_bytes += size
        latest = lake.log.latest_version()
        before = history.oldest_kept(lake.store)
        cutoff = (now or _now()) - dt.timedelta(days=retain_days)
        older = [v for v in range(before, latest + 1) if _committed_at(lake, v) < cutoff]
        oldest = max([before, *older[-1:]]) if latest else before
        if retain_days == 0:
            oldest = max(oldest, latest)
        doomed = [v for v in history.retained_versions(lake.store) if v <= oldest]
        files, size = [], 0
        for v in doomed:
            f, s = history.tree_size(lake.store, history.version_dir(v))
            files += f
            size += s
        retained_files, retained_bytes = len(files), size
        changes = _versioned_files(lake, oldest)  # refresh reads whole partitions where one is missing
        for rel in changes:
            files.append(rel)
            size += lake.store.fs.size(lake.store.full(rel))
        if not dry_run:
            if latest and oldest > before:
                lake.store.write_atomic(
                    history.VACUUMED,
                    json.dumps(
                        {"oldest_version": oldest, "retain_days": retain_days, "vacuumed_at": _now().isoformat()}
                    ).encode(),
                )
            for v in doomed:
                lake.store.rmtree(history.version_dir(v))
            for rel in changes:
                lake.store.remove(rel)
            lake.recover()  # the staging leftovers
    result = {
        "lake": lake.url,
        "dry_run": dry_run,
        "retain_days": retain_days,
        "cutoff": cutoff.isoformat(),
        "kept_versions": [oldest, latest] if latest else [],
        "versions_vacuumed": doomed,
        "files": len(files),
        "bytes": size,
        "paths": files,
        "retained_files": retained_files,
        "retained_bytes": retained_bytes,
        "side_files": len(files) - retained_files,
        "side_bytes": size - retained_bytes,
        "staging_batches": [posixpath.basename(s) for s in staging],
        "staging_files": len(staging_files),
        "staging_bytes": staging_bytes,
    }
    log.info("vacuum of %s: %s", lake.url, {k: v for k, v in result.items() if k != "paths"})
    return result


def _versioned_files(lake: Lake, oldest: int) -> list[str]:
    """The per-version side files of versions up to ``oldest`` (``versioned_files`` in a table's schema:
    ``<dir>/<version>.parquet``, e.g. what each objects update changed, for refresh): a summary database
    refreshed past them never reads them again, and one that is not yet reads the partitions those
    updates touched whole instead."""
    out = []
    for table in registry().values():
        if not table.versioned_files:
            continue
        rel = f"{table.location}/{table.versioned_files}"
        if not lake.store.exists(rel):
            continue
        names = [n for n in lake.store.listdir(rel) if n.endswith(".parquet") and n.removesuffix(".parquet").isdigit()]
        out += sorted(
            (f"{rel}/{n}" for n in names if int(n.removesuffix(".parquet")) <= oldest),
            key=lambda p: int(posixpath.basename(p).removesuffix(".parquet")),
        )
    return out


def format_vacuum(result: dict) -> str:
    """What ``skylake vacuum`` prints.

    Parameters
    ----------
    result : dict
        What :func:`vacuum` returned.

    Returns
    -------
    str
        The versions kept, then what it removed (or would remove); with ``dry_run``, the paths too.
    """
    verb = "would remove" if result["dry_run"] else "removed"
    kept = result["kept_versions"]
    lines = [
        f"vacuum {result['lake']}: keeping versions "
        + (f"{kept[0]}..{kept[1]}" if kept else "none (no commits)")
        + f" (committed after {result['cutoff']}, and the one live then)"
    ]
    lines.append(
        f"  {verb} {result['retained_files']} retained files ({result['retained_bytes']} bytes)"
        + (
            f" that the commits of versions {_ranges(result['versions_vacuumed'])} replaced (only older versions "
            "read them)"
            if result["versions_vacuumed"]
            else ""
        )
    )
    if result["side_files"]:
        lines.append(
            f"  {verb} {result['side_files']} per-version side files ({result['side_bytes']} bytes) of versions up "
            f"to {kept[0]} (objects change lists: a summary database not refreshed past them reads whole "
            "partitions instead)"
        )
    lines.append(
        f"  {verb} {result['staging_files']} staging files ({result['staging_bytes']} bytes) of "
        f"{len(result['staging_batches'])} uncommitted batches"
    )
    if result["dry_run"]:
        lines += [f"    {p}" for p in result["paths"]]
    return "\n".join(lines)


def _ranges(versions: list[int]) -> str:
    out, run = [], []
    for v in versions:
        if run and v != run[-1] + 1:
            out.append(f"{run[0]}" if len(run) == 1 else f"{run[0]}..{run[-1]}")
            run = []
        run.append(v)
    if run:
        out.append(f"{run[0]}" if len(run) == 1 else f"{run[0]}..{run[-1]}")
    return ", ".join(out)
