"""The lake's storage primitives, over fsspec.

Everything skylake writes goes through :class:`Storage`. The commit protocol needs three primitives
beyond plain reads and writes: an atomic *put-if-absent* (the commit point), an atomic *replace*
(publishing files and metadata), and a writer *lock*. On a local filesystem these are ``link(2)``,
``rename(2)`` and ``flock(2)``. On S3 (``s3://bucket/prefix``, through s3fs) they are a conditional put
(``If-None-Match: *``), a copy (a PUT replaces an object atomically; publishing is rolled forward from the
log, so a copy cut short is simply done again) and a lease object (:mod:`skylake.lake.lease`). Other object
stores are refused with a clear error.

Publishing a directory as a whole (compaction, a rewrite) uses a fourth: :meth:`Storage.exchange`, an
atomic swap of two directories (Linux ``renameat2(2)`` with ``RENAME_EXCHANGE``). Where the kernel or
filesystem lacks it, the caller falls back to two renames (the directory is briefly absent, never
doubled). An object store has no directories to swap: a reader *listing* a directory there while a commit
is published may see part of it; skylake's readers open the files of a published version.

Credentials and the endpoint of an S3 store come only from the environment (``AWS_ENDPOINT_URL`` for a
server that is not AWS, ``AWS_ACCESS_KEY_ID``...) or the standard AWS files, as boto3 reads them.

A full device (``ENOSPC``/``EDQUOT``) while writing raises :class:`skylake.errors.LakeFullError`
naming the file and the bytes being written.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import posixpath
import shutil
import threading
import time
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

from skylake.errors import LakeError, LakeFullError

__all__ = ["is_disk_full", "RELIST_ATTEMPTS", "read_listed", "lock_held_here", "EXTRAS", "Storage"]


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error is a full device.

    Parameters
    ----------
    exc : BaseException
        The error.

    Returns
    -------
    bool
        True for an OSError with ENOSPC/EDQUOT, also as pyarrow words it (pyarrow's OSError carries the errno
        only in its message).
    """
    if not isinstance(exc, OSError):
        return False
    if exc.errno in _FULL_ERRNOS:
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text or "[errno 28]" in text


#: Tries of :func:`read_listed` before a listed file that stays missing is an error.
RELIST_ATTEMPTS = 5


def read_listed(read, attempts: int = RELIST_ATTEMPTS):
    """``read()``, again with a fresh listing when a file it listed vanished before it was read.

    Readers take no lock: between a reader's listing of a directory and its reading of the files listed,
    a writer's commit may replace one of them (its rows are then in the file that replaced it, which a
    new listing finds). ``read`` must list and read, so that each try lists afresh.

    Parameters
    ----------
    read : callable
        Lists the files and reads them; takes no argument.
    attempts : int, optional
        Tries in all (a short, growing pause between them).

    Returns
    -------
    object
        What ``read`` returns.

    Raises
    ------
    FileNotFoundError
        A listed file was still missing on the last try.
    """
    for attempt in range(attempts):
        try:
            return read()
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise ValueError(f"read_listed needs at least one attempt, got {attempts}")


def _load_renameat2():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


#: SKYLAKE_NO_RENAME_EXCHANGE=1 forces the two-rename fallback (for the crash tests of that path).
_renameat2 = None if os.environ.get("SKYLAKE_NO_RENAME_EXCHANGE") else _load_renameat2()
#: Lock files (absolute paths) this process holds, so a reader in the same process never waits on itself.
_HELD_LOCKS: set[str] = set()
_HELD_GUARD = threading.Lock()


def _protocols(fs) -> tuple:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def lock_held_here(path: str) -> bool:
    """Whether this process holds a writer lock.

    Parameters
    ----------
    path : str
        The lock file's absolute path.

    Returns
    -------
    bool
        True if this process holds the lock (a reader in the same process must not wait on it).
    """
    with _HELD_GUARD:
        return path in _HELD_LOCKS


#: The extra to install for a scheme whose filesystem package is optional.
EXTRAS = {"s3": "skylake[s3]"}


class Storage:
    """A directory tree addressed by lake-relative POSIX paths (``"sources/hats.properties"``).

    Parameters
    ----------
    url : str
        The lake: a local path, ``file://...`` or ``s3://bucket/prefix``.
    """

    def __init__(self, url: str):
        url = str(url)
        # an object store's listings are never cached: other writers add log entries and files
        options = {} if "://" not in url or url.startswith("file://") else {"use_listings_cache": False}
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **options)
        except ImportError as exc:  # the scheme's filesystem package is not installed: say which to install
            scheme = url.split("://", 1)[0]
            hint = EXTRAS.get(scheme)
            raise LakeError(
                f"{url}: a lake on {scheme}:// needs "
                + (f'the {hint} extra: pip install "{hint}"' if hint else f"fsspec's {scheme} filesystem ({exc})")
            ) from None
        self.root = root.rstrip("/") or "/"
        self.url = url
        self.is_local = isinstance(self.fs, LocalFileSystem)
        #: an S3 store (s3fs): conditional writes and leases stand in for link(2) and flock(2)
        self.is_s3 = not self.is_local and "s3" in _protocols(self.fs)
        # What a task opens: a worker in another working directory needs the absolute path.
        self.location = self.root if self.is_local else self.url

    @property
    def arrow_fs(self):
        """The ``filesystem`` to hand pyarrow for paths of :meth:`full`.

        Returns
        -------
        fsspec.AbstractFileSystem or None
            None on a local disk (pyarrow's own), else this store's fsspec filesystem.
        """
        return None if self.is_local else self.fs

    # -- paths -------------------------------------------------------------------------------------
    def full(self, rel: str) -> str:
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
        return posixpath.join(self.root, rel) if rel else self.root

    def uri(self, rel: str = "") -> str:
        """A lake-relative path as a URL other libraries open (hats, lsdb).

        Parameters
        ----------
        rel : str
            The lake-relative path ('' for the lake itself).

        Returns
        -------
        str
            The absolute path on a local disk, ``s3://bucket/key`` on S3.
        """
        full = self.full(rel)
        return full if self.is_local else f"{_protocols(self.fs)[0]}://{full}"

    def upath(self, rel: str = ""):
        """A lake-relative path as a ``UPath`` for hats.

        On S3 the path carries the environment's credentials: hats would otherwise read a bare ``s3://`` URL
        anonymously, with blocks too small to write.

        Parameters
        ----------
        rel : str
            The lake-relative path ('' for the lake itself).

        Returns
        -------
        upath.UPath
            The path.
        """
        from upath import UPath

        if self.is_local:
            return UPath(self.full(rel))
        return UPath(self.uri(rel), **self.fs.storage_options)

    def _require_writable_store(self, what: str):
        if not (self.is_local or self.is_s3):
            raise LakeError(
                f"{what} needs a local filesystem or s3://; {self.url} is {type(self.fs).__name__}, "
                "which skylake cannot write atomically (no conditional writes)"
            )

    # -- reads -------------------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        """Whether a file or directory exists.

        Parameters
        ----------
        rel : str
            Its lake-relative path.

        Returns
        -------
        bool
            True if it exists.
        """
        return self.fs.exists(self.full(rel))

    def mtime(self, rel: str) -> float:
        """When a file or directory was last written.

        Parameters
        ----------
        rel : str
            Its lake-relative path.

        Returns
        -------
        float
            The time [s since the epoch]; for a directory on an object store, its newest object's time.

        Raises
        ------
        FileNotFoundError
            Nothing is there.
        """
        if self.is_local:
            return os.path.getmtime(self.full(rel))
        full = self.full(rel)
        if self.fs.isfile(full):
            return self.fs.modified(full).timestamp()
        times = [info["LastModified"].timestamp() for info in self.fs.find(full, detail=True).values()]
        if not times:
            raise FileNotFoundError(full)
        return max(times)

    def read_bytes(self, rel: str) -> bytes:
        """Read a whole file.

        Parameters
        ----------
        rel : str
            Its lake-relative path.

        Returns
        -------
        bytes
            Its content.
        """
        with self.fs.open(self.full(rel), "rb") as fh:
            return fh.read()

    def read_text(self, rel: str) -> str:
        """Read a whole file as UTF-8 text.

        Parameters
        ----------
        rel : str
            Its lake-relative path.

        Returns
        -------
        str
            Its content.
        """
        return self.read_bytes(rel).decode()

    def read_parquet(self, rel: str, **kwargs):
        """``pyarrow.parquet.read_table`` of a lake file, on this store.

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
        import pyarrow.parquet as pq

        return pq.read_table(self.full(rel), filesystem=self.arrow_fs, **kwargs)

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) in a directory.

        Parameters
        ----------
        rel : str
            The directory's lake-relative path.

        Returns
        -------
        list of str
            The names, sorted; empty if the directory does not exist.
        """
        try:
            return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.full(rel), detail=False))
        except FileNotFoundError:
            return []

    def walk_files(self, rel: str, suffix: str = "") -> list[str]:
        """Lake-relative paths of all files below a directory, hidden files excluded.

        Parameters
        ----------
        rel : str
            The directory's lake-relative path.
        suffix : str
            Only files whose names end in it ('' for all).

        Returns
        -------
        list of str
            The paths, sorted; empty if the directory does not exist.
        """
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
        """Create a directory and its parents (nothing on an object store, which has no directories).

        Parameters
        ----------
        rel : str
            The directory's lake-relative path.
        """
        if self.is_local:  # an object store has no directories (and s3fs would ask for the bucket each time)
            self.fs.makedirs(self.full(rel), exist_ok=True)

    def write_bytes(self, rel: str, data: bytes, fsync: bool = True):
        """Write a file (not atomically: used for staged files nobody reads before the commit).

        Parameters
        ----------
        rel : str
            Its lake-relative path; its directory is created.
        data : bytes
            Its content.
        fsync : bool
            Flush it to the disk before returning (local disks only).

        Raises
        ------
        LakeFullError
            The device is full (naming the file and its size); the partial file is removed.
        """
        try:
            self.makedirs(posixpath.dirname(rel))
            with self.fs.open(self.full(rel), "wb") as fh:
                fh.write(data)
                if fsync and self.is_local:
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            with contextlib.suppress(OSError):
                self.remove(rel)
            raise self.full_error(rel, len(data)) from None

    def full_error(self, rel: str, nbytes: int | None = None) -> LakeFullError:
        """The error for a full device while writing a file.

        Parameters
        ----------
        rel : str
            The file's lake-relative path.
        nbytes : int or None
            The bytes being written (None: not known).

        Returns
        -------
        LakeFullError
            The error, with ``rel`` and ``nbytes`` as attributes.
        """
        what = f"{nbytes} bytes to {rel}" if nbytes is not None else rel
        err = LakeFullError(f"no space left on the device of lake {self.url} writing {what}")
        err.rel, err.nbytes = rel, nbytes
        return err

    def fsync_file(self, rel: str):
        """Flush a file to the disk (nothing on an object store).

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        """
        if self.is_local:
            fd = os.open(self.full(rel), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def fsync_dir(self, rel: str):
        """Flush a directory's entries to the disk (nothing on an object store, or if it does not exist).

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        """
        if self.is_local:
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(self.full(rel), os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def write_atomic(self, rel: str, data: bytes):
        """Replace a file so that readers see the old or the new content, never a mix.

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        data : bytes
            The new content.
        """
        if not self.is_local:  # one PUT replaces an object atomically
            self.write_bytes(rel, data)
            return
        tmp = f"{rel}.{uuid.uuid4().hex}.tmp"
        self.write_bytes(tmp, data)
        self.replace(tmp, rel)

    def put_if_absent(self, rel: str, data: bytes) -> bool:
        """Create a file only if it does not exist, atomically.

        The file appears complete or not at all (``link(2)`` of a fully written, fsynced temp file).

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        data : bytes
            Its content.

        Returns
        -------
        bool
            True if this call created it, False if it existed.

        Raises
        ------
        LakeError
            The store cannot do it atomically (neither a local filesystem nor S3).
        LakeFullError
            The device is full.
        """
        self._require_writable_store("the commit point (put-if-absent)")
        if self.is_s3:  # If-None-Match: *, which S3 evaluates atomically
            try:
                self.fs.pipe_file(self.full(rel), data, mode="create")
                return True
            except FileExistsError:
                return False
        tmp = f"{posixpath.dirname(rel)}/.{uuid.uuid4().hex}.tmp"
        self.write_bytes(tmp, data)
        try:
            os.link(self.full(tmp), self.full(rel))
            self.fsync_dir(posixpath.dirname(rel))
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if is_disk_full(exc):  # the directory entry needed a block
                raise self.full_error(rel, len(data)) from None
            raise
        finally:
            os.unlink(self.full(tmp))

    def link(self, src: str, dst: str):
        """Hard-link a file under a second name (a copy on S3); an existing ``dst`` is kept.

        Parameters
        ----------
        src : str
            The file's lake-relative path.
        dst : str
            The new lake-relative path; its directory is created.

        Raises
        ------
        LakeError
            The store is neither a local filesystem nor S3.
        """
        self._require_writable_store("publishing a directory")
        if self.is_s3:
            if not self.exists(dst):
                self.fs.copy(self.full(src), self.full(dst))
            return
        self.makedirs(posixpath.dirname(dst))
        with contextlib.suppress(FileExistsError):
            os.link(self.full(src), self.full(dst))

    def exchange(self, a: str, b: str) -> bool:
        """Swap two directories in one atomic step (``renameat2(RENAME_EXCHANGE)``).

        Parameters
        ----------
        a, b : str
            The directories' lake-relative paths.

        Returns
        -------
        bool
            True once swapped; False, having changed nothing, when the kernel or filesystem cannot (not
            Linux, glibc < 2.28, or a filesystem without RENAME_EXCHANGE): the caller then falls back to
            two renames.

        Raises
        ------
        OSError
            The swap failed for another reason (a directory missing, permissions).
        """
        if not self.is_local or _renameat2 is None:
            return False
        if (
            _renameat2(_AT_FDCWD, os.fsencode(self.full(a)), _AT_FDCWD, os.fsencode(self.full(b)), _RENAME_EXCHANGE)
            == 0
        ):
            return True
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
            return False
        raise OSError(err, os.strerror(err), self.full(a), None, self.full(b))

    def walk_all(self, rel: str) -> list[str]:
        """Lake-relative paths of every file below a directory, hidden ones too.

        Parameters
        ----------
        rel : str
            The directory's lake-relative path.

        Returns
        -------
        list of str
            The paths, sorted; empty if the directory does not exist.
        """
        base = self.full(rel)
        if not self.is_local:
            if not self.fs.exists(base):
                return []
            return sorted(posixpath.relpath(p, self.root) for p in self.fs.find(base))
        out = []
        for dirpath, _, files in os.walk(base):
            out += [posixpath.relpath(posixpath.join(dirpath, f), self.root) for f in files]
        return sorted(out)

    def replace(self, src: str, dst: str):
        """Move a file or directory over another atomically (``rename(2)``).

        On an object store a file is copied and deleted, and a directory moved object by object: a re-run
        after a kill moves what is left.

        Parameters
        ----------
        src : str
            The lake-relative path to move.
        dst : str
            Where to; its directory is created.
        """
        self.makedirs(posixpath.dirname(dst))
        if self.is_local:
            os.replace(self.full(src), self.full(dst))
        elif self.is_s3 and self._s3_move(src, dst):
            pass
        elif self.fs.isfile(self.full(src)):  # a copy and a delete
            self.fs.mv(self.full(src), self.full(dst))
        else:  # a directory (a prefix), object by object: a re-run after a kill moves what is left
            for rel in self.walk_all(src):
                self.fs.mv(self.full(rel), self.full(posixpath.join(dst, posixpath.relpath(rel, src))))

    def _s3_move(self, src: str, dst: str) -> bool:
        """Move one object by a server-side copy and a delete (two requests; s3fs's ``mv`` asks for the
        object's size first). False, having done nothing, when ``src`` is not an object (a prefix)."""
        from fsspec.asyn import sync

        sb, sk, _ = self.fs.split_path(self.full(src))
        db, dk, _ = self.fs.split_path(self.full(dst))
        try:
            sync(self.fs.loop, self.fs._call_s3, "copy_object", Bucket=db, Key=dk, CopySource={"Bucket": sb, "Key": sk})
        except FileNotFoundError:
            return False
        except OSError as exc:
            if "copy source is larger" in str(exc).lower():  # over 5 GB: s3fs copies it in parts
                self.fs.mv(self.full(src), self.full(dst))
                return True
            raise
        sync(self.fs.loop, self.fs._call_s3, "delete_object", Bucket=sb, Key=sk)
        self.fs.invalidate_cache(self.full(src))
        self.fs.invalidate_cache(self.full(dst))
        return True

    def remove(self, rel: str, missing_ok: bool = True):
        """Remove a file.

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        missing_ok : bool
            Whether a missing file is fine.

        Raises
        ------
        FileNotFoundError
            The file is missing and ``missing_ok`` is False.
        """
        try:
            self.fs.rm_file(self.full(rel))
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self, rel: str):
        """Remove a directory and everything below it; nothing if it does not exist.

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        """
        if self.is_local:
            shutil.rmtree(self.full(rel), ignore_errors=True)
        elif self.fs.exists(self.full(rel)):
            self.fs.rm(self.full(rel), recursive=True)

    def remove_empty_dirs(self, rel: str):
        """Remove a directory and its parents while they are empty (after files moved out).

        Parameters
        ----------
        rel : str
            The directory's lake-relative path; the lake's root is never removed.
        """
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
    def lock(self, rel: str, blocking: bool = True):
        """Exclusive writer lock, released by the kernel if the process dies (``flock(2)``).

        On S3 the lock is a lease object its holder renews (:class:`skylake.lake.lease.Lease`); a dead
        holder's lease is taken over once it has gone unrenewed for a whole lease.

        Parameters
        ----------
        rel : str
            The lock file's lake-relative path.
        blocking : bool
            Wait for the lock (else give up at once if another process holds it).

        Yields
        ------
        bool
            True once held; with ``blocking=False``, False at once if another process holds it.
        """
        self._require_writable_store("the writer lock")
        if self.is_s3:
            with self._lease(rel, blocking) as held:
                yield held
            return
        self.makedirs(posixpath.dirname(rel))
        path = self.full(rel)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                got = True
            except BlockingIOError:
                got = False
            if not got:
                yield False
                return
            with _HELD_GUARD:
                _HELD_LOCKS.add(path)
            try:
                yield True
            finally:
                with _HELD_GUARD:
                    _HELD_LOCKS.discard(path)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _lease(self, rel: str, blocking: bool):
        from skylake.lake.lease import Lease

        path = self.full(rel)
        lease = Lease(self.fs, path)
        if not lease.acquire(blocking):
            yield False
            return
        with _HELD_GUARD:
            _HELD_LOCKS.add(path)
        try:
            yield True
        finally:
            with _HELD_GUARD:
                _HELD_LOCKS.discard(path)
            lease.release()

    def probe_writable(self, rel: str):
        """Create and remove a file in a directory, to learn whether this process can write there.

        Parameters
        ----------
        rel : str
            The directory's lake-relative path.

        Raises
        ------
        OSError
            This process cannot write there (permissions, a read-only mount, root-squashed NFS: what
            ``access(2)`` can miss).
        LakeError
            The store is neither a local filesystem nor S3.
        """
        self._require_writable_store("writing")
        if not self.is_local:
            probe = f"{rel}/.probe-{uuid.uuid4().hex}"
            self.write_bytes(probe, b"")
            self.remove(probe)
            return
        probe = self.full(f"{rel}/.probe-{uuid.uuid4().hex}")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
