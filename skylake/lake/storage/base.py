"""The storage interface every backend implements, and what all of them share.

:class:`Storage` is a directory tree addressed by lake-relative POSIX paths (``"sources/hats.properties"``)
over an fsspec filesystem. Its read methods work on any fsspec filesystem; the primitives the commit
protocol needs (put-if-absent, replace, the writer lock) are refused here and given by the backends that
can do them atomically (:class:`~skylake.lake.storage.local.LocalStorage`,
:class:`~skylake.lake.storage.s3.S3Storage`). The lake asks a backend what it *can* do (:attr:`writable`,
:attr:`swaps_directories`, :meth:`local_path`), never which one it is.
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import threading
import time

from skylake.errors import LakeError, LakeFullError

__all__ = ["is_disk_full", "RELIST_ATTEMPTS", "read_listed", "lock_held_here", "hold_lock", "Storage"]


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


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


#: Lock files (absolute paths) this process holds, so a reader in the same process never waits on itself.
_HELD_LOCKS: set[str] = set()
_HELD_GUARD = threading.Lock()


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


@contextlib.contextmanager
def hold_lock(path: str):
    """Mark a writer lock as held by this process while the block runs (what :func:`lock_held_here` sees).

    Parameters
    ----------
    path : str
        The lock's absolute path.

    Yields
    ------
    None
        While the lock is held.
    """
    with _HELD_GUARD:
        _HELD_LOCKS.add(path)
    try:
        yield
    finally:
        with _HELD_GUARD:
            _HELD_LOCKS.discard(path)


class Storage:
    """A directory tree addressed by lake-relative POSIX paths, read through fsspec; writes refused.

    This class is the interface and the read-only backend for any fsspec scheme the lake has no writer for
    (``gs://``, ``https://``...): the lake can be read there, never committed to. A backend that can write
    subclasses it and gives the commit protocol's primitives. :func:`skylake.lake.storage.open_storage`
    chooses the backend by the URL's scheme.

    Parameters
    ----------
    url : str
        The lake's URL as given.
    fs : fsspec.AbstractFileSystem
        The filesystem.
    root : str
        The lake's path in ``fs`` (no protocol).
    """

    #: URL schemes this backend serves (what :func:`~skylake.lake.storage.register_backend` files it under).
    schemes: tuple[str, ...] = ()
    #: The pip extra that installs this backend's filesystem package (None: always installed).
    extra: str | None = None
    #: Whether the commit protocol's primitives are atomic here: put-if-absent, replace, a writer lock.
    writable = False
    #: Whether directories exist and one can be swapped for another in one step (publishing a tree at once);
    #: without, a publish moves the new files in, then the removed ones out.
    swaps_directories = False

    def __init__(self, url: str, fs, root: str):
        self.url = str(url)
        self.fs = fs
        self.root = root.rstrip("/") or "/"

    @classmethod
    def filesystem_options(cls) -> dict:
        """Options for ``fsspec.core.url_to_fs`` when opening this backend.

        Returns
        -------
        dict
            Object stores never cache listings here: other writers add log entries and files.
        """
        return {"use_listings_cache": False}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- what a task opens ----------------------------------------------------------------------------
    @property
    def location(self) -> str:
        """What a task on another machine opens the lake by (:func:`~skylake.lake.storage.open_storage`).

        Returns
        -------
        str
            The URL (a local backend: the absolute path, for a worker in another working directory).
        """
        return self.url

    def local_path(self, rel: str = "") -> str | None:
        """A lake-relative path as a path on this machine's disk.

        Parameters
        ----------
        rel : str
            The lake-relative path ('' for the lake itself).

        Returns
        -------
        str or None
            The absolute path; None where the store has no local path (an object store).
        """
        return None

    @property
    def arrow_fs(self):
        """The ``filesystem`` to hand ``pyarrow.parquet`` for paths of :meth:`full`.

        Returns
        -------
        fsspec.AbstractFileSystem or None
            This store's fsspec filesystem (None: pyarrow's own local one).
        """
        return self.fs

    def arrow_filesystem(self):
        """A ``pyarrow.fs.FileSystem`` for datasets of paths of :meth:`full`.

        Returns
        -------
        pyarrow.fs.FileSystem
            This store's filesystem as pyarrow sees it.
        """
        import pyarrow.fs as pafs

        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    # -- paths ----------------------------------------------------------------------------------------
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
            ``scheme://key`` (a local backend: the absolute path).
        """
        proto = self.fs.protocol
        return f"{proto if isinstance(proto, str) else proto[0]}://{self.full(rel)}"

    def upath(self, rel: str = ""):
        """A lake-relative path as a ``UPath`` for hats.

        On an object store the path carries the store's options (credentials): hats would otherwise read a bare
        ``s3://`` URL anonymously, with blocks too small to write.

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

        return UPath(self.uri(rel), **self.fs.storage_options)

    def root_problem(self) -> str | None:
        """Why there can be no lake at the root, when ``lake.json`` is not found there.

        Returns
        -------
        str or None
            One line for the user (what to do), or None when the root itself is fine (it simply holds no
            lake).
        """
        return None

    # -- reads ----------------------------------------------------------------------------------------
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
        full = self.full(rel)
        if self.fs.isfile(full):
            return self.fs.modified(full).timestamp()
        # one listing with its details (a request per object would be one per file on an object store)
        times = []
        for name, info in self.fs.find(full, detail=True).items():
            when = info.get("LastModified", info.get("mtime"))  # S3's, or a local-like filesystem's
            when = self.fs.modified(name) if when is None else when
            times.append(when if isinstance(when, (int, float)) else when.timestamp())
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
        return self.fs.cat_file(self.full(rel))  # one GET: an open file pins the ETag, which a replace changes

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
            if not name.startswith((".", "_")) and name.endswith(suffix):
                out.append(posixpath.relpath(path, self.root))
        return sorted(out)

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
        if not self.fs.exists(base):
            return []
        return sorted(posixpath.relpath(p, self.root) for p in self.fs.find(base))

    # -- plain writes (staged files nobody reads before the commit) -------------------------------------
    def makedirs(self, rel: str):
        """Create a directory and its parents (nothing where there are no directories, as on an object store).

        Parameters
        ----------
        rel : str
            The directory's lake-relative path.
        """

    def write_bytes(self, rel: str, data: bytes, fsync: bool = True):
        """Write a file (not atomically: used for staged files nobody reads before the commit).

        Parameters
        ----------
        rel : str
            Its lake-relative path; its directory is created.
        data : bytes
            Its content.
        fsync : bool
            Flush it to the disk before returning (where there is a disk to flush).

        Raises
        ------
        LakeFullError
            The device is full (naming the file and its size); the partial file is removed.
        """
        try:
            self.makedirs(posixpath.dirname(rel))
            with self.fs.open(self.full(rel), "wb") as fh:
                fh.write(data)
                if fsync:
                    self._flush(fh)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            with contextlib.suppress(OSError):
                self.remove(rel)
            raise self.full_error(rel, len(data)) from None

    def _flush(self, fh):
        """Flush an open file to its device (nothing where the store has no device of its own)."""

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
        """Flush a file to the disk (nothing where there is no disk of the store's own).

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        """

    def fsync_dir(self, rel: str):
        """Flush a directory's entries to the disk (nothing where there are no directories).

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        """

    def write_atomic(self, rel: str, data: bytes):
        """Replace a file so that readers see the old or the new content, never a mix.

        Here one PUT, which an object store applies atomically.

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        data : bytes
            The new content.
        """
        self.write_bytes(rel, data)

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
        if self.fs.exists(self.full(rel)):
            self.fs.rm(self.full(rel), recursive=True)

    def remove_empty_dirs(self, rel: str):
        """Remove a directory and its parents while they are empty (nothing where there are no directories).

        Parameters
        ----------
        rel : str
            The directory's lake-relative path; the lake's root is never removed.
        """

    def replace(self, src: str, dst: str):
        """Move a file or directory over another.

        Here a copy and a delete per object: a re-run after a kill moves what is left (publishing is rolled
        forward from the log).

        Parameters
        ----------
        src : str
            The lake-relative path to move.
        dst : str
            Where to; its directory is created.
        """
        self.makedirs(posixpath.dirname(dst))
        if self.fs.isfile(self.full(src)):
            self.fs.mv(self.full(src), self.full(dst))
            return
        for rel in self.walk_all(src):
            self.fs.mv(self.full(rel), self.full(posixpath.join(dst, posixpath.relpath(rel, src))))

    def exchange(self, a: str, b: str) -> bool:
        """Swap two directories in one atomic step, where the store can.

        Parameters
        ----------
        a, b : str
            The directories' lake-relative paths.

        Returns
        -------
        bool
            True once swapped; False, having changed nothing, when this store cannot (the caller then falls
            back to two renames).
        """
        return False

    # -- the commit protocol's primitives: refused unless a backend can do them atomically ---------------
    def refuse_writes(self, what: str) -> LakeError:
        """The error for a write this store cannot make atomically.

        Parameters
        ----------
        what : str
            What was asked (e.g. "the writer lock").

        Returns
        -------
        LakeError
            One line naming the store and what it lacks.
        """
        return LakeError(
            f"{what} needs a local filesystem or s3://; {self.url} is {type(self.fs).__name__}, "
            "which skylake cannot write atomically (no conditional writes)"
        )

    def put_if_absent(self, rel: str, data: bytes) -> bool:
        """Create a file only if it does not exist, atomically: it appears complete or not at all.

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
            The store cannot do it atomically (this class; the writable backends can).
        LakeFullError
            The device is full.
        """
        raise self.refuse_writes("the commit point (put-if-absent)")

    def link(self, src: str, dst: str):
        """Give a file a second name (a hard link, or a copy); an existing ``dst`` is kept.

        Parameters
        ----------
        src : str
            The file's lake-relative path.
        dst : str
            The new lake-relative path; its directory is created.

        Raises
        ------
        LakeError
            The store cannot write atomically (this class).
        """
        raise self.refuse_writes("publishing a directory")

    @contextlib.contextmanager
    def lock(self, rel: str, blocking: bool = True):
        """Exclusive writer lock, released if its holder dies.

        Parameters
        ----------
        rel : str
            The lock's lake-relative path.
        blocking : bool
            Wait for the lock (else give up at once if another process holds it).

        Yields
        ------
        bool
            True once held; with ``blocking=False``, False at once if another process holds it.

        Raises
        ------
        LakeError
            The store cannot write atomically (this class).
        """
        raise self.refuse_writes("the writer lock")
        yield False  # pragma: no cover  (a generator, as the backends' locks are)

    def prepare_lock(self, rel: str):
        """Create what the writer lock needs before a lake's first write (nothing here).

        Parameters
        ----------
        rel : str
            The lock's lake-relative path.
        """

    def probe_writable(self, rel: str):
        """Create and remove a file in a directory, to learn whether this process can write there.

        Parameters
        ----------
        rel : str
            The directory's lake-relative path.

        Raises
        ------
        OSError
            This process cannot write there.
        LakeError
            The store cannot write atomically (this class).
        """
        raise self.refuse_writes("writing")

    def check_writable(self, dirs: tuple[str, ...]):
        """Learn, with real files, whether this process can write the lake (before any work is done).

        Parameters
        ----------
        dirs : tuple of str
            The lake's own directories to probe (lake-relative).

        Raises
        ------
        OSError
            This process cannot write one of them (the error names it).
        LakeError
            The store cannot write atomically.
        """
        self.probe_writable(dirs[0])
