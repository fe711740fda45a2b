"""The commit log: ``LAKE/_skylake/log/NNNNNNNNNNNNNNNNNNNN.json``, one entry per committed batch.

Modelled on Delta Lake's ``_delta_log`` (../shared/research/anchors.md §4):

* Data files are first written to ``_skylake/staging/<batch_id>/`` under unique names.
* **The commit point** is the creation of log entry N+1 with put-if-absent. A batch whose entry
  exists is committed; one without an entry never happened (its staging directory is an orphan).
* **Publishing** moves the committed files into ``sources/`` and ``frames/`` and replaces the HATS
  metadata, each step an atomic rename, then advances ``_skylake/published``. Directories listed in
  the entry's ``swaps`` (a compacted or rewritten partition; a whole table whose rows move between
  partitions) are published whole, in one atomic exchange (:meth:`skylake.lake.Lake._publish_dir`).
  Files the entry removes are moved into ``_skylake/removed/<version>/`` for older versions to read
  (:mod:`skylake.lake.history`). Publishing is a pure function of the log entry, so an interrupted
  publish is rolled forward by running it again.

Everything read here is validated: a corrupt entry or ``published`` file raises a one-line
:class:`skylake.errors.LakeError` naming the file, never a parser's traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import re
import uuid
from dataclasses import dataclass, field, fields

from skylake.errors import LakeError
from skylake.lake.storage import Storage

__all__ = [
    "LOG_ROWS",
    "META",
    "LOG_DIR",
    "STAGING_DIR",
    "PUBLISHED",
    "LOCK",
    "LAKE_FILE",
    "entry_path",
    "staging_path",
    "staged_batches",
    "FileAction",
    "Entry",
    "CommitLog",
    "utc_now",
    "new_batch_id",
    "rewritten_rel",
]


META = "_skylake"
LOG_DIR = f"{META}/log"
STAGING_DIR = f"{META}/staging"
PUBLISHED = f"{META}/published"
LOCK = f"{META}/writer.lock"
LAKE_FILE = f"{META}/lake.json"
_ENTRY_NAME = re.compile(r"^(\d{20})\.json$")


def entry_path(version: int) -> str:
    """Where the log entry of a version lives.

    Parameters
    ----------
    version : int
        The commit's version.

    Returns
    -------
    str
        ``_skylake/log/<20-digit version>.json``, relative to the lake.
    """
    return f"{LOG_DIR}/{version:020d}.json"


def staging_path(batch_id: str, rel: str = "") -> str:
    """Where a batch stages its files before its commit.

    Parameters
    ----------
    batch_id : str
        The batch.
    rel : str
        A lake-relative path inside the batch's staging area ('' for the area itself).

    Returns
    -------
    str
        ``_skylake/staging/<batch_id>/<rel>``, relative to the lake.
    """
    return posixpath.join(STAGING_DIR, batch_id, rel) if rel else f"{STAGING_DIR}/{batch_id}"


def staged_batches(store: Storage) -> list[str]:
    """The batches staged and not committed: the staging area's entries less dot-names, which are not batches
    (another process's probe of whether it can write there, :meth:`Storage.check_writable`).

    Parameters
    ----------
    store : Storage
        The lake's storage.

    Returns
    -------
    list of str
        Their batch ids.
    """
    return [name for name in store.listdir(STAGING_DIR) if not name.startswith(".")]


@dataclass
class FileAction:
    """A data file added to or removed from a table.

    Attributes
    ----------
    table : str
        The table's directory in the lake.
    path : str
        The file's path relative to the table's directory.
    rows : int
        Its rows.
    """

    table: str
    path: str
    rows: int = 0

    @property
    def lake_path(self) -> str:
        """The file's path relative to the lake.

        Returns
        -------
        str
            ``<table>/<path>``.
        """
        return f"{self.table}/{self.path}"


#: The entry's row counts, each a table's (``log_rows:`` in the table's schema names one).
LOG_ROWS = ("sources_rows", "frames_rows")


@dataclass
class Entry:
    """One commit of the log.

    Attributes
    ----------
    version : int
        The commit's version (1, 2, ...).
    batch_id : str
        The batch that made it (its staging area's name).
    operation : str
        What it did: ``ingest``, ``calibrate``, ``compact``, ``redo``, ...
    committed_at : str
        When (ISO 8601, UTC).
    adds, removes : list of FileAction
        The data files it added and removed.
    metadata : list of str
        Lake-relative files replaced wholesale at publish (HATS metadata, running totals, ...).
    next_frame_id : int
        The first frame id the next commit may give.
    sources_rows, frames_rows : int
        Rows in the source and frames tables after this commit.
    summary : dict
        What the batch reported (host, process id, counts).
    swaps : list of str
        Lake-relative directories published whole by one atomic exchange (a partition or night that
        loses and gains files; a whole table when rows may move between its partitions).
    """

    version: int
    batch_id: str
    operation: str
    committed_at: str
    adds: list[FileAction] = field(default_factory=list)
    removes: list[FileAction] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    next_frame_id: int = 1
    sources_rows: int = 0
    frames_rows: int = 0
    summary: dict = field(default_factory=dict)
    swaps: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        """The entry as the JSON of its log file.

        Returns
        -------
        bytes
            UTF-8 JSON, indented.
        """
        doc = dict(self.__dict__)
        doc["adds"] = [a.__dict__ for a in self.adds]
        doc["removes"] = [r.__dict__ for r in self.removes]
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Entry:
        """Parse an entry.

        Parameters
        ----------
        data : bytes
            The JSON of a log file.

        Returns
        -------
        Entry
            The entry.

        Raises
        ------
        ValueError
            Anything but a well-formed entry (the message gives the reason).
        """
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, found {type(doc).__name__}")
        known = {f.name for f in fields(cls)}
        if set(doc) - known:
            raise ValueError(f"unknown fields {sorted(set(doc) - known)}")
        if missing := {"version", "batch_id", "operation", "committed_at"} - set(doc):
            raise ValueError(f"missing fields {sorted(missing)}")
        for name, typ in (
            ("version", int),
            ("next_frame_id", int),
            ("sources_rows", int),
            ("frames_rows", int),
            ("batch_id", str),
            ("operation", str),
            ("committed_at", str),
            ("summary", dict),
            ("adds", list),
            ("removes", list),
            ("metadata", list),
            ("swaps", list),
        ):
            if name in doc and (not isinstance(doc[name], typ) or isinstance(doc[name], bool)):
                raise ValueError(f"{name} is {doc[name]!r}, not {typ.__name__}")
        for name in ("adds", "removes"):
            actions = []
            for a in doc.get(name, []):
                if not (
                    isinstance(a, dict)
                    and set(a) <= {"table", "path", "rows"}
                    and isinstance(a.get("table"), str)
                    and isinstance(a.get("path"), str)
                    and isinstance(a.get("rows", 0), int)
                ):
                    raise ValueError(f"{name} holds {a!r}, not a file action {{table, path, rows}}")
                actions.append(FileAction(**a))
            doc[name] = actions
        for name in ("metadata", "swaps"):
            if not all(isinstance(p, str) for p in doc.get(name, [])):
                raise ValueError(f"{name} must list paths")
        return cls(**doc)


class CommitLog:
    """Reads and appends log entries and tracks how far they are published.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    """

    def __init__(self, store: Storage):
        self.store = store
        self._entries: dict[int, Entry] = {}  # an entry never changes once committed: read each once

    def versions(self) -> list[int]:
        """The committed versions.

        Names that are not entries (temp files of a put-if-absent cut short, an editor's backup) are ignored.

        Returns
        -------
        list of int
            In order.
        """
        return sorted(int(m.group(1)) for m in map(_ENTRY_NAME.match, self.store.listdir(LOG_DIR)) if m)

    def latest_version(self) -> int:
        """The newest committed version.

        Returns
        -------
        int
            0 before the first commit.
        """
        versions = self.versions()
        return versions[-1] if versions else 0

    def has(self, version: int) -> bool:
        """Whether a version is committed.

        Parameters
        ----------
        version : int
            The version.

        Returns
        -------
        bool
            True when its entry exists.
        """
        return self.store.exists(entry_path(version))

    def read(self, version: int) -> Entry:
        """One entry of the log, validated.

        Parameters
        ----------
        version : int
            The version.

        Returns
        -------
        Entry
            The entry.

        Raises
        ------
        LakeError
            The entry is missing, corrupt or names another version (one line naming the file).
        """
        if version in self._entries:
            return self._entries[version]
        path = entry_path(version)
        try:
            data = self.store.read_bytes(path)
        except FileNotFoundError:
            raise LakeError(
                f"commit log entry {self.store.full(path)} is missing (the log holds versions up to "
                f"{self.latest_version()}); the lake's history is damaged: restore it from a backup"
            ) from None
        try:
            entry = Entry.from_json(data)
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            reason = " ".join(str(exc).split())
            raise LakeError(
                f"commit log entry {self.store.full(path)} is corrupt ({reason}); restore it from a backup"
            ) from None
        if entry.version != version:
            raise LakeError(
                f"commit log entry {self.store.full(path)} says it is version {entry.version}; restore it from a backup"
            )
        self._entries[version] = entry
        return entry

    def latest(self) -> Entry | None:
        """The newest entry.

        Returns
        -------
        Entry or None
            None before the first commit.
        """
        version = self.latest_version()
        return self.read(version) if version else None

    def append(self, entry: Entry) -> bool:
        """Commit an entry at its version: the commit point (a put-if-absent).

        Parameters
        ----------
        entry : Entry
            The entry.

        Returns
        -------
        bool
            False when that version is taken (a concurrent commit).
        """
        return self.store.put_if_absent(entry_path(entry.version), entry.to_json())

    def published_version(self) -> int:
        """The last version published into the tables.

        Returns
        -------
        int
            0 before the first commit.

        Raises
        ------
        LakeError
            The ``published`` file is corrupt.
        """
        try:
            text = self.store.read_bytes(PUBLISHED)
        except FileNotFoundError:
            return 0
        try:
            value = text.decode("ascii").strip()
            version = int(value or 0)
            if version < 0 or (value and not value.isdigit()):
                raise ValueError
        except (UnicodeDecodeError, ValueError):
            raise LakeError(
                f"{self.store.full(PUBLISHED)} is corrupt: it holds {text[:40]!r}, not the number of the "
                "last published commit; restore it from a backup"
            ) from None
        return version

    def set_published(self, version: int):
        """Record a version as published (atomically).

        Parameters
        ----------
        version : int
            The version.
        """
        self.store.write_atomic(PUBLISHED, f"{version}\n".encode())


def utc_now() -> dt.datetime:
    """Now, in UTC (commit and batch times).

    Returns
    -------
    datetime.datetime
        Timezone-aware.
    """
    return dt.datetime.now(dt.UTC)


def new_batch_id(operation: str = "ingest") -> str:
    """A unique, time-sortable name for a batch's files.

    Parameters
    ----------
    operation : str
        What the batch does (part of the name).

    Returns
    -------
    str
        ``YYYYmmddTHHMMSS-<operation>-<10 hex digits>``.
    """
    return f"{utc_now():%Y%m%dT%H%M%S}-{operation}-{uuid.uuid4().hex[:10]}"


def rewritten_rel(rel: str, batch_id: str, k: int) -> str:
    """Where a batch stages what it keeps of a file it rewrites: beside it.

    Parameters
    ----------
    rel : str
        The rewritten file, relative to its table.
    batch_id : str
        The batch.
    k : int
        The file's number among those the batch rewrites.

    Returns
    -------
    str
        ``<rel's directory>/<batch_id>-rewrite<k>.parquet``.
    """
    return f"{posixpath.dirname(rel)}/{batch_id}-rewrite{k}.parquet"
