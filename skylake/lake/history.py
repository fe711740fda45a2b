"""The lake's history on disk: files removed by a commit are retained, and checkpoints list live files.

::

    LAKE/_skylake/removed/<version>/<lake-relative path>   files commit <version> removed, kept for time travel
    LAKE/_skylake/checkpoints/<version>.parquet            the data files live at <version> (every 100th)
    LAKE/_skylake/vacuumed.json                            the oldest version `skylake vacuum` kept

A commit that removes a data file (compaction, ``--redo``, a recalibration) does not delete it: the
publish moves it (one rename, so the same filesystem and no copy) out of the table directories into
``removed/<version>/``, where readers listing directories (lsdb, DuckDB) never see it. The files of
version N are the replay of the log's adds and removes up to N (Delta Lake's model,
../shared/research/anchors.md §4), started from the nearest checkpoint at or below N, so a snapshot
reads at most :data:`CHECKPOINT_EVERY` - 1 log entries. A file of version N is live, or retained under
the commit after N that removed it, until ``skylake vacuum`` deletes what no retained version needs.

The frame index (``_skylake/frame_index``) is derived from the frames table and never read as a
table: its removed files are deleted at publish as before, and snapshots leave it out.
"""

from __future__ import annotations

import json
import posixpath
import re

import pyarrow as pa
import pyarrow.parquet as pq

from skylake.errors import LakeError
from skylake.lake.log import META, CommitLog, FileAction
from skylake.lake.storage import Storage

__all__ = [
    "REMOVED_DIR",
    "CHECKPOINT_DIR",
    "VACUUMED",
    "CHECKPOINT_EVERY",
    "NOT_RETAINED",
    "retained",
    "removed_path",
    "retained_versions",
    "checkpoint_path",
    "checkpoints",
    "oldest_kept",
    "files_at",
    "write_checkpoint",
    "removed_by",
    "tree_size",
    "version_dir",
]


REMOVED_DIR = f"{META}/removed"
CHECKPOINT_DIR = f"{META}/checkpoints"
VACUUMED = f"{META}/vacuumed.json"
#: A checkpoint is written by every commit whose version is a multiple of this.
CHECKPOINT_EVERY = 100
#: Tables whose removed files are not retained (derived data nobody reads as a table).
NOT_RETAINED = (f"{META}/frame_index",)
_VERSION_NAME = re.compile(r"^(\d{20})$")
_CHECKPOINT_NAME = re.compile(r"^(\d{20})\.parquet$")
_CHECKPOINT_SCHEMA = pa.schema([("table", pa.string()), ("path", pa.string()), ("rows", pa.int64())])


def retained(action: FileAction) -> bool:
    """Whether a removed file is kept for time travel.

    Parameters
    ----------
    action : FileAction
        The file's action (its table decides).

    Returns
    -------
    bool
        True unless its table is derived data nobody reads as a table (:data:`NOT_RETAINED`).
    """
    return action.table not in NOT_RETAINED


def removed_path(version: int, lake_path: str) -> str:
    """Where a file removed by a commit is kept.

    Parameters
    ----------
    version : int
        The commit that removed it.
    lake_path : str
        The file's lake-relative path when it was live.

    Returns
    -------
    str
        ``_skylake/removed/<20-digit version>/<lake_path>``, relative to the lake.
    """
    return f"{REMOVED_DIR}/{version:020d}/{lake_path}"


def retained_versions(store: Storage) -> list[int]:
    """Versions whose removed files are (still) retained.

    Parameters
    ----------
    store : Storage
        The lake's storage.

    Returns
    -------
    list of int
        The versions, ascending.
    """
    return sorted(int(m.group(1)) for m in map(_VERSION_NAME.match, store.listdir(REMOVED_DIR)) if m)


def checkpoint_path(version: int) -> str:
    """Where the checkpoint of a version lives.

    Parameters
    ----------
    version : int
        The version.

    Returns
    -------
    str
        ``_skylake/checkpoints/<20-digit version>.parquet``, relative to the lake.
    """
    return f"{CHECKPOINT_DIR}/{version:020d}.parquet"


def checkpoints(store: Storage) -> list[int]:
    """Versions with a checkpoint.

    Parameters
    ----------
    store : Storage
        The lake's storage.

    Returns
    -------
    list of int
        The versions, ascending (temp files of a write cut short are not checkpoints).
    """
    return sorted(int(m.group(1)) for m in map(_CHECKPOINT_NAME.match, store.listdir(CHECKPOINT_DIR)) if m)


def oldest_kept(store: Storage) -> int:
    """The oldest version ``skylake vacuum`` kept.

    Parameters
    ----------
    store : Storage
        The lake's storage.

    Returns
    -------
    int
        The version (1 before any vacuum).

    Raises
    ------
    LakeError
        ``_skylake/vacuumed.json`` is corrupt (one line naming it).
    """
    try:
        doc = json.loads(store.read_bytes(VACUUMED))
        version = doc["oldest_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"oldest_version is {version!r}")
    except FileNotFoundError:
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        raise LakeError(
            f"{store.full(VACUUMED)} is corrupt ({' '.join(str(exc).split())}); it should hold "
            '{"oldest_version": N}, the oldest version vacuum kept'
        ) from None
    return version


def _read_checkpoint(store: Storage, version: int) -> dict[str, FileAction]:
    try:
        table = store.read_parquet(checkpoint_path(version), schema=_CHECKPOINT_SCHEMA)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LakeError(
            f"checkpoint {store.full(checkpoint_path(version))} is unreadable "
            f"({' '.join(str(exc).split())}); delete it (the log rebuilds it)"
        ) from None
    return {
        f"{t}/{p}": FileAction(t, p, r)
        for t, p, r in zip(
            table.column("table").to_pylist(), table.column("path").to_pylist(), table.column("rows").to_pylist()
        )
    }


def files_at(store: Storage, log: CommitLog, version: int) -> dict[str, FileAction]:
    """The data files live at a version.

    They are the nearest checkpoint at or below ``version`` plus the log entries after it. The frame index
    is left out.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    log : CommitLog
        The lake's commit log.
    version : int
        The version.

    Returns
    -------
    dict of str to FileAction
        Each file's lake-relative path to its add action.

    Raises
    ------
    LakeError
        A checkpoint or log entry on the way is unreadable.
    """
    base = max((v for v in checkpoints(store) if v <= version), default=0)
    files = _read_checkpoint(store, base) if base else {}
    for v in range(base + 1, version + 1):
        entry = log.read(v)
        for r in entry.removes:  # a commit never adds a path it removes: batch names are unique
            files.pop(r.lake_path, None)
        files.update((a.lake_path, a) for a in entry.adds if retained(a))
    return files


def write_checkpoint(store: Storage, log: CommitLog, version: int) -> bool:
    """Write the checkpoint of a version unless it exists (publishing runs this again after a kill).

    Parameters
    ----------
    store : Storage
        The lake's storage.
    log : CommitLog
        The lake's commit log.
    version : int
        The version.

    Returns
    -------
    bool
        True if this call wrote it, False if it existed.
    """
    if store.exists(checkpoint_path(version)):
        return False
    files = sorted(files_at(store, log, version).values(), key=lambda a: a.lake_path)
    table = pa.table(
        {"table": [a.table for a in files], "path": [a.path for a in files], "rows": [a.rows for a in files]},
        schema=_CHECKPOINT_SCHEMA,
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    store.write_atomic(checkpoint_path(version), sink.getvalue().to_pybytes())
    return True


def removed_by(store: Storage, log: CommitLog, after: int, upto: int) -> dict[str, int]:
    """Retained files removed by the commits ``after`` < v <= ``upto``.

    Only the versions that still have a ``removed/`` directory are read.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    log : CommitLog
        The lake's commit log.
    after : int
        The version before the first commit looked at.
    upto : int
        The last commit looked at.

    Returns
    -------
    dict of str to int
        Each removed file's lake-relative path to the commit v that removed it.
    """
    out: dict[str, int] = {}
    for v in retained_versions(store):
        if after < v <= upto:
            for r in log.read(v).removes:
                out.setdefault(r.lake_path, v)
    return out


def tree_size(store: Storage, rel: str) -> tuple[list[str], int]:
    """Every file below a directory and their total size.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    rel : str
        The directory's lake-relative path.

    Returns
    -------
    files : list of str
        The files' lake-relative paths.
    size : int
        Their total size [bytes].
    """
    files = store.walk_all(rel)
    return files, sum(store.fs.size(store.full(f)) for f in files)


def version_dir(version: int) -> str:
    """Where the files a commit removed are kept.

    Parameters
    ----------
    version : int
        The commit.

    Returns
    -------
    str
        ``_skylake/removed/<20-digit version>``, relative to the lake.
    """
    return posixpath.join(REMOVED_DIR, f"{version:020d}")
