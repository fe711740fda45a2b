"""A lake on a local or network POSIX filesystem: ``link(2)``, ``rename(2)``, ``flock(2)`` and ``renameat2(2)``.

The commit point is a ``link(2)`` of a fully written, fsynced temporary file (put-if-absent); publishing is
``rename(2)``; a directory is published at once by swapping it with its staged copy
(``renameat2(RENAME_EXCHANGE)``, where the kernel and filesystem have it: else two renames, the directory
briefly absent, never doubled); the writer lock is ``flock(2)``, which the kernel releases when its holder
dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import posixpath
import shutil
import uuid

from skylake.lake.storage.base import Storage, hold_lock, is_disk_full

__all__ = ["LocalStorage"]

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_LOCK_OPEN_ATTEMPTS = 5  # a lock file's directory removed under it by another process's cleanup, again and again


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


class LocalStorage(Storage):
    """A lake in a directory of this machine (or a network filesystem mounted here).

    Made by :func:`skylake.lake.storage.open_storage` from a path or a ``file://`` URL, with fsspec's local
    filesystem and the lake's absolute path as the root.
    """

    schemes = ("file", "local")
    writable = True
    swaps_directories = True

    @classmethod
    def filesystem_options(cls) -> dict:
        """Options for ``fsspec.core.url_to_fs``: none.

        Returns
        -------
        dict
            Empty.
        """
        return {}

    @property
    def location(self) -> str:
        """The lake's absolute path: a worker in another working directory opens that.

        Returns
        -------
        str
            The path.
        """
        return self.root

    def local_path(self, rel: str = "") -> str:
        """A lake-relative path as a path on this machine's disk.

        Parameters
        ----------
        rel : str
            The lake-relative path ('' for the lake itself).

        Returns
        -------
        str
            The absolute path.
        """
        return self.full(rel)

    @property
    def arrow_fs(self):
        """None: pyarrow reads local paths with its own filesystem.

        Returns
        -------
        None
            Always.
        """
        return None

    def arrow_filesystem(self):
        """The local filesystem of pyarrow itself.

        Returns
        -------
        pyarrow.fs.LocalFileSystem
            The filesystem.
        """
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem()

    def uri(self, rel: str = "") -> str:
        """The absolute path (what hats and lsdb open on a local disk).

        Parameters
        ----------
        rel : str
            The lake-relative path ('' for the lake itself).

        Returns
        -------
        str
            The absolute path.
        """
        return self.full(rel)

    def upath(self, rel: str = ""):
        """A lake-relative path as a ``UPath`` for hats.

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

        return UPath(self.full(rel))

    def root_problem(self) -> str | None:
        """Why there is no lake here: the path is a file, or does not exist.

        Returns
        -------
        str or None
            One line; None when the root is a directory.
        """
        if os.path.isdir(self.root):
            return None
        what = "is a file" if os.path.exists(self.root) else "does not exist"
        return f"{self.url} {what}: not a skylake lake; create one with `skylake init {self.url}`"

    # -- reads: the kernel's own calls, no fsspec on the hot paths ----------------------------------------
    def exists(self, rel: str) -> bool:
        """Whether a file or directory exists (one ``stat``).

        Parameters
        ----------
        rel : str
            Its lake-relative path.

        Returns
        -------
        bool
            True if it exists.
        """
        return os.path.exists(self.full(rel))

    def mtime(self, rel: str) -> float:
        """When a file or directory was last written.

        Parameters
        ----------
        rel : str
            Its lake-relative path.

        Returns
        -------
        float
            The time [s since the epoch].
        """
        return os.path.getmtime(self.full(rel))

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
        out = []
        for dirpath, _, files in os.walk(self.full(rel)):
            out += [posixpath.relpath(posixpath.join(dirpath, f), self.root) for f in files]
        return sorted(out)

    # -- writes ------------------------------------------------------------------------------------------
    def makedirs(self, rel: str):
        """Create a directory and its parents.

        Parameters
        ----------
        rel : str
            The directory's lake-relative path.
        """
        os.makedirs(self.full(rel), exist_ok=True)

    def _flush(self, fh):
        fh.flush()
        os.fsync(fh.fileno())

    def fsync_file(self, rel: str):
        """Flush a file to the disk.

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        """
        fd = os.open(self.full(rel), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def fsync_dir(self, rel: str):
        """Flush a directory's entries to the disk (nothing if it does not exist).

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        """
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(self.full(rel), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def write_atomic(self, rel: str, data: bytes):
        """Replace a file so that readers see the old or the new content: a temporary file, then ``rename(2)``.

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        data : bytes
            The new content.
        """
        tmp = f"{rel}.{uuid.uuid4().hex}.tmp"
        self.write_bytes(tmp, data)
        self.replace(tmp, rel)

    def put_if_absent(self, rel: str, data: bytes) -> bool:
        """Create a file only if it does not exist: ``link(2)`` of a fully written, fsynced temporary file.

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
        LakeFullError
            The device is full.
        """
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
        """Hard-link a file under a second name; an existing ``dst`` is kept.

        Parameters
        ----------
        src : str
            The file's lake-relative path.
        dst : str
            The new lake-relative path; its directory is created.
        """
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
            Linux, glibc < 2.28, or a filesystem without RENAME_EXCHANGE).

        Raises
        ------
        OSError
            The swap failed for another reason (a directory missing, permissions).
        """
        if _renameat2 is None:
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

    def replace(self, src: str, dst: str):
        """Move a file or directory over another atomically (``rename(2)``).

        Parameters
        ----------
        src : str
            The lake-relative path to move.
        dst : str
            Where to; its directory is created.
        """
        self.makedirs(posixpath.dirname(dst))
        os.replace(self.full(src), self.full(dst))

    def rmtree(self, rel: str):
        """Remove a directory and everything below it; nothing if it does not exist.

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        """
        shutil.rmtree(self.full(rel), ignore_errors=True)

    def remove_empty_dirs(self, rel: str):
        """Remove a directory and its parents while they are empty (after files moved out).

        Parameters
        ----------
        rel : str
            The directory's lake-relative path; the lake's root is never removed.
        """
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
        path = self.full(rel)
        for attempt in range(_LOCK_OPEN_ATTEMPTS):
            self.makedirs(posixpath.dirname(rel))
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                break
            except FileNotFoundError:  # another process removed the emptied directory between the two calls
                if attempt == _LOCK_OPEN_ATTEMPTS - 1:
                    raise
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                with hold_lock(path):
                    yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def prepare_lock(self, rel: str):
        """Create the lock file with the lake's layout, so a failed first write leaves no trace.

        Parameters
        ----------
        rel : str
            The lock file's lake-relative path.
        """
        self.write_bytes(rel, b"")

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
        """
        probe = self.full(f"{rel}/.probe-{uuid.uuid4().hex}")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):  # a writer's recovery may have removed it meanwhile
            os.unlink(probe)

    def check_writable(self, dirs: tuple[str, ...]):
        """Probe each of the lake's own directories that exists with a real file, then every top directory.

        Parameters
        ----------
        dirs : tuple of str
            The lake's own directories to probe (lake-relative).

        Raises
        ------
        OSError
            This process cannot write one of them (its ``filename`` names it).
        """
        for rel in dirs:
            if not os.path.isdir(self.full(rel)):
                continue
            try:
                self.probe_writable(rel)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror or str(exc), self.full(rel)) from None
        for name in os.listdir(self.root):
            full = self.full(name)
            if not os.path.isdir(full) or os.access(full, os.W_OK | os.X_OK):
                continue
            if os.path.isdir(full):  # still there: not a directory another writer's commit removed meanwhile
                raise PermissionError(errno.EACCES, "permission denied", full)
