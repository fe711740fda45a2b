"""Where a lake's files live: one backend class per kind of store, chosen by the URL's scheme.

Everything skylake writes goes through a :class:`Storage`. The commit protocol needs three primitives beyond
plain reads and writes: an atomic *put-if-absent* (the commit point), an atomic *replace* (publishing files
and metadata) and a writer *lock*; publishing a directory as a whole uses a fourth where the store has it, an
atomic swap of two directories (:meth:`Storage.exchange`).

==========================  ===================  ==========================================================
backend                     schemes              the primitives
==========================  ===================  ==========================================================
:class:`LocalStorage`       a path, ``file://``  ``link(2)``, ``rename(2)``, ``flock(2)``, ``renameat2(2)``
:class:`S3Storage`          ``s3://``            ``If-None-Match: *`` puts, copies, a lease object
:class:`Storage`            any other fsspec     read only: writing is refused in one line
==========================  ===================  ==========================================================

A new backend is one class: subclass :class:`Storage`, give its ``schemes``, set ``writable`` and implement
the primitives, then :func:`register_backend`. Nothing outside the backends asks which one it is: the lake
asks what a store can do (:attr:`Storage.writable`, :attr:`Storage.swaps_directories`,
:meth:`Storage.local_path`).

A full device (``ENOSPC``/``EDQUOT``) while writing raises :class:`skylake.errors.LakeFullError` naming the
file and the bytes being written. A scheme whose filesystem package is an optional extra that is not
installed is refused in one line naming the extra.
"""

from __future__ import annotations

import fsspec

from skylake.errors import LakeError
from skylake.lake.storage.base import RELIST_ATTEMPTS, Storage, is_disk_full, lock_held_here, read_listed
from skylake.lake.storage.local import LocalStorage
from skylake.lake.storage.s3 import S3Storage

__all__ = [
    "BACKENDS",
    "LocalStorage",
    "RELIST_ATTEMPTS",
    "S3Storage",
    "Storage",
    "is_disk_full",
    "lock_held_here",
    "open_storage",
    "read_listed",
    "register_backend",
    "scheme_of",
]

#: Backend class by URL scheme; a scheme not here is read through fsspec by :class:`Storage` itself.
BACKENDS: dict[str, type[Storage]] = {}


def register_backend(cls: type[Storage]) -> type[Storage]:
    """File a backend class under each of its ``schemes`` (usable as a class decorator).

    Parameters
    ----------
    cls : type
        A subclass of :class:`Storage` with its ``schemes``.

    Returns
    -------
    type
        ``cls``.

    Raises
    ------
    TypeError
        ``cls`` is not a :class:`Storage` or names no scheme.
    """
    if not (isinstance(cls, type) and issubclass(cls, Storage)) or not cls.schemes:
        raise TypeError(f"a storage backend is a subclass of Storage naming its schemes, got {cls!r}")
    for scheme in cls.schemes:
        BACKENDS[scheme] = cls
    return cls


register_backend(LocalStorage)
register_backend(S3Storage)


def scheme_of(url: str) -> str:
    """The scheme of a lake's URL.

    Parameters
    ----------
    url : str
        A path or a URL.

    Returns
    -------
    str
        ``"file"`` for a plain path, else what comes before ``://``.

    Examples
    --------
    >>> scheme_of("/data/lake"), scheme_of("s3://bucket/lake")
    ('file', 's3')
    """
    return url.split("://", 1)[0] if "://" in url else "file"


def open_storage(url) -> Storage:
    """The store of a lake's URL, by its scheme.

    Parameters
    ----------
    url : str or os.PathLike
        A local path, ``file://...``, ``s3://bucket/prefix``, or another fsspec URL (read only).

    Returns
    -------
    Storage
        The backend registered for the scheme; for another scheme, a read-only :class:`Storage`.

    Raises
    ------
    LakeError
        The scheme's filesystem package is not installed (the line names the extra that installs it).
    """
    url = str(url)
    scheme = scheme_of(url)
    cls = BACKENDS.get(scheme, Storage)
    try:
        fs, root = fsspec.core.url_to_fs(url, **cls.filesystem_options())
    except ImportError as exc:
        raise LakeError(
            f"{url}: a lake on {scheme}:// needs "
            + (
                f'the {cls.extra} extra: pip install "{cls.extra}"'
                if cls.extra
                else f"fsspec's {scheme} filesystem ({exc})"
            )
        ) from None
    return cls(url, fs, root)
