"""The lake's storage primitives, over fsspec.

Everything skylake writes goes through :class:`Storage`. The commit protocol needs three primitives
beyond plain reads and writes: an atomic *put-if-absent* (the commit point), an atomic *replace*
(publishing files and metadata), and a writer *lock*. On a local filesystem these are ``link(2)``,
``rename(2)`` and ``flock(2)``; an object store needs conditional writes (S3 ``If-None-Match``) for
the first and a lock service for the last, and is refused with a clear error until those exist.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import posixpath
import shutil
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

from skylake.errors import LakeError


class Storage:
    """A directory tree addressed by lake-relative POSIX paths (``"sources/hats.properties"``)."""

    def __init__(self, url: str):
        self.fs, root = fsspec.core.url_to_fs(str(url))
        self.root = root.rstrip("/") or "/"
        self.url = str(url)
        self.is_local = isinstance(self.fs, LocalFileSystem)

    # -- paths -------------------------------------------------------------------------------------
    def full(self, rel: str) -> str:
        """Absolute path (or object-store key) of a lake-relative path."""
        return posixpath.join(self.root, rel) if rel else self.root

    def _require_local(self, what: str):
        if not self.is_local:
            raise LakeError(f"{what} needs a local filesystem for now; {self.url} is "
                            f"{type(self.fs).__name__} (object stores need conditional writes)")

    # -- reads -------------------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.full(rel))

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self.full(rel), "rb") as fh:
            return fh.read()

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) in a directory; empty if it does not exist."""
        try:
            return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.full(rel), detail=False))
        except FileNotFoundError:
            return []

    def walk_files(self, rel: str, suffix: str = "") -> list[str]:
        """Lake-relative paths of all files below ``rel`` ending in ``suffix``, hidden files excluded."""
        base = self.full(rel)
        if not self.fs.exists(base):
            return []
        out = []
        for path in self.fs.find(base):
            name = posixpath.basename(path)
            if name.startswith((".", "_")) or not name.endswith(suffix):
                continue
            out.append(posixpath.relpath(path, self.root))
        return sorted(out)

    # -- writes ------------------------------------------------------------------------------------
    def makedirs(self, rel: str):
        self.fs.makedirs(self.full(rel), exist_ok=True)

    def write_bytes(self, rel: str, data: bytes, fsync: bool = True):
        """Write a file (not atomically: used for staged files nobody reads before the commit)."""
        self.makedirs(posixpath.dirname(rel))
        with self.fs.open(self.full(rel), "wb") as fh:
            fh.write(data)
            if fsync and self.is_local:
                fh.flush()
                os.fsync(fh.fileno())

    def fsync_file(self, rel: str):
        if self.is_local:
            fd = os.open(self.full(rel), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def fsync_dir(self, rel: str):
        if self.is_local:
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(self.full(rel), os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def write_atomic(self, rel: str, data: bytes):
        """Replace ``rel`` with ``data`` so that readers see the old or the new content, never a mix."""
        tmp = f"{rel}.{uuid.uuid4().hex}.tmp"
        self.write_bytes(tmp, data)
        self.replace(tmp, rel)

    def put_if_absent(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` with ``data`` only if it does not exist, atomically. Returns False if it existed.

        The file appears complete or not at all (``link(2)`` of a fully written, fsynced temp file).
        """
        self._require_local("the commit point (put-if-absent)")
        tmp = f"{posixpath.dirname(rel)}/.{uuid.uuid4().hex}.tmp"
        self.write_bytes(tmp, data)
        try:
            os.link(self.full(tmp), self.full(rel))
            self.fsync_dir(posixpath.dirname(rel))
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(self.full(tmp))

    def replace(self, src: str, dst: str):
        """Move ``src`` over ``dst`` atomically (``rename(2)``); creates ``dst``'s directory."""
        self.makedirs(posixpath.dirname(dst))
        if self.is_local:
            os.replace(self.full(src), self.full(dst))
        else:
            self.fs.mv(self.full(src), self.full(dst))

    def remove(self, rel: str, missing_ok: bool = True):
        try:
            self.fs.rm_file(self.full(rel))
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self, rel: str):
        if self.is_local:
            shutil.rmtree(self.full(rel), ignore_errors=True)
        elif self.fs.exists(self.full(rel)):
            self.fs.rm(self.full(rel), recursive=True)

    def remove_empty_dirs(self, rel: str):
        """Remove ``rel`` and its parents while they are empty (after files moved out)."""
        if not self.is_local:
            return
        path = self.full(rel)
        while path.startswith(self.root) and path != self.root:
            try:
                os.rmdir(path)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    return
                raise
            path = os.path.dirname(path)

    @contextlib.contextmanager
    def lock(self, rel: str):
        """Exclusive writer lock, released by the kernel if the process dies (``flock(2)``)."""
        self._require_local("the writer lock")
        self.makedirs(posixpath.dirname(rel))
        fd = os.open(self.full(rel), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
