"""The commit log: ``LAKE/_skylake/log/NNNNNNNNNNNNNNNNNNNN.json``, one entry per committed batch.

Modelled on Delta Lake's ``_delta_log`` (../shared/research/anchors.md §4):

* Data files are first written to ``_skylake/staging/<batch_id>/`` under unique names.
* **The commit point** is the creation of log entry N+1 with put-if-absent. A batch whose entry
  exists is committed; one without an entry never happened (its staging directory is an orphan).
* **Publishing** moves the committed files into ``sources/`` and ``frames/`` and replaces the HATS
  metadata, each step an atomic rename, then advances ``_skylake/published``. It is a pure function
  of the log entry, so an interrupted publish is rolled forward by running it again.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

from skylake.lake.storage import Storage

META = "_skylake"
LOG_DIR = f"{META}/log"
STAGING_DIR = f"{META}/staging"
PUBLISHED = f"{META}/published"
LOCK = f"{META}/writer.lock"
LAKE_FILE = f"{META}/lake.json"


def entry_path(version: int) -> str:
    return f"{LOG_DIR}/{version:020d}.json"


def staging_path(batch_id: str, rel: str = "") -> str:
    return posixpath.join(STAGING_DIR, batch_id, rel) if rel else f"{STAGING_DIR}/{batch_id}"


@dataclass
class FileAction:
    """A data file added to or removed from a table (``path`` relative to the table directory)."""

    table: str  # "sources" or "frames"
    path: str
    rows: int = 0

    @property
    def lake_path(self) -> str:
        return f"{self.table}/{self.path}"


@dataclass
class Entry:
    """One commit. ``metadata`` lists files (relative to the lake) replaced wholesale at publish."""

    version: int
    batch_id: str
    operation: str  # ingest | compact | redo
    committed_at: str
    adds: list[FileAction] = field(default_factory=list)
    removes: list[FileAction] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    next_frame_id: int = 1
    sources_rows: int = 0  # rows in the source table after this commit
    frames_rows: int = 0  # rows in the frames table after this commit
    summary: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc = dict(self.__dict__)
        doc["adds"] = [a.__dict__ for a in self.adds]
        doc["removes"] = [r.__dict__ for r in self.removes]
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Entry":
        doc = json.loads(data)
        doc["adds"] = [FileAction(**a) for a in doc["adds"]]
        doc["removes"] = [FileAction(**r) for r in doc["removes"]]
        return cls(**doc)


class CommitLog:
    """Reads and appends log entries and tracks how far they are published."""

    def __init__(self, store: Storage):
        self.store = store

    def versions(self) -> list[int]:
        return sorted(int(n[:-5]) for n in self.store.listdir(LOG_DIR) if n.endswith(".json") and n[0] != ".")

    def latest_version(self) -> int:
        versions = self.versions()
        return versions[-1] if versions else 0

    def read(self, version: int) -> Entry:
        return Entry.from_json(self.store.read_bytes(entry_path(version)))

    def latest(self) -> Entry | None:
        version = self.latest_version()
        return self.read(version) if version else None

    def append(self, entry: Entry) -> bool:
        """Commit ``entry`` at ``entry.version``; False if that version is taken (a concurrent commit)."""
        return self.store.put_if_absent(entry_path(entry.version), entry.to_json())

    def published_version(self) -> int:
        if not self.store.exists(PUBLISHED):
            return 0
        return int(self.store.read_text(PUBLISHED).strip() or 0)

    def set_published(self, version: int):
        self.store.write_atomic(PUBLISHED, f"{version}\n".encode())
