"""A lake on S3 or an S3-compatible store (``s3://bucket/prefix``, through s3fs).

The commit point is a conditional put (``If-None-Match: *``), which the store evaluates atomically; a refused
one is known by the store's answer (HTTP 412, ``PreconditionFailed``), not by words in a message. One PUT
replaces an object atomically; publishing copies, and a copy cut short is done again (publishing is rolled
forward from the log). The writer lock is a lease object its holder renews (:mod:`skylake.lake.storage.lease`).
There are no directories: nothing is created for them, and a directory is published file by file.

Credentials and the endpoint come only from the environment (``AWS_ENDPOINT_URL`` for a server that is not
AWS, ``AWS_ACCESS_KEY_ID``...) or the standard AWS files, as boto3 reads them.
"""

from __future__ import annotations

import contextlib
import uuid

from skylake.lake.storage.base import Storage, hold_lock
from skylake.lake.storage.lease import Lease, precondition_failed, store_error_code

__all__ = ["S3Storage"]


class S3Storage(Storage):
    """A lake under an S3 prefix.

    Made by :func:`skylake.lake.storage.open_storage` from ``s3://bucket/prefix``, with an s3fs filesystem that
    never caches listings and ``bucket/prefix`` as the root.
    """

    schemes = ("s3", "s3a")
    extra = "skylake[s3]"
    writable = True

    def root_problem(self) -> str | None:
        """Why there is no lake here: the bucket does not exist (or these credentials cannot see it).

        Returns
        -------
        str or None
            One line; None when the bucket is there.
        """
        bucket = self.root.split("/")[0]
        if self.fs.exists(bucket):
            return None
        return (
            f"{self.url}: bucket {bucket!r} does not exist (or these credentials cannot see it); create the "
            f"bucket, then `skylake init {self.url}`"
        )

    def put_if_absent(self, rel: str, data: bytes) -> bool:
        """Create an object only if none is there: one PUT with ``If-None-Match: *``.

        Parameters
        ----------
        rel : str
            Its lake-relative path.
        data : bytes
            Its content.

        Returns
        -------
        bool
            True if this call created it, False if the store refused because it existed (412).
        """
        try:
            self.fs.pipe_file(self.full(rel), data, mode="create")
            return True
        except FileExistsError:  # s3fs's translation of PreconditionFailed on If-None-Match
            return False
        except OSError as exc:
            if precondition_failed(exc):
                return False
            raise

    def link(self, src: str, dst: str):
        """Copy an object under a second key (server-side); an existing ``dst`` is kept.

        Parameters
        ----------
        src : str
            The object's lake-relative path.
        dst : str
            The new lake-relative path.
        """
        if not self.exists(dst):
            self.fs.copy(self.full(src), self.full(dst))

    def replace(self, src: str, dst: str):
        """Move an object by a server-side copy and a delete; a prefix object by object.

        Parameters
        ----------
        src : str
            The lake-relative path to move.
        dst : str
            Where to.
        """
        if not self._move_object(src, dst):
            super().replace(src, dst)

    def _move_object(self, src: str, dst: str) -> bool:
        """Move one object in two requests (s3fs's ``mv`` asks for the object's size first). False, having
        done nothing, when ``src`` is not an object (a prefix)."""
        from fsspec.asyn import sync

        sb, sk, _ = self.fs.split_path(self.full(src))
        db, dk, _ = self.fs.split_path(self.full(dst))
        try:
            sync(self.fs.loop, self.fs._call_s3, "copy_object", Bucket=db, Key=dk, CopySource={"Bucket": sb, "Key": sk})
        except FileNotFoundError:
            return False
        except OSError as exc:
            if store_error_code(exc) == "InvalidRequest":  # a copy source over 5 GB: s3fs copies it in parts
                self.fs.mv(self.full(src), self.full(dst))
                return True
            raise
        sync(self.fs.loop, self.fs._call_s3, "delete_object", Bucket=sb, Key=sk)
        self.fs.invalidate_cache(self.full(src))
        self.fs.invalidate_cache(self.full(dst))
        return True

    @contextlib.contextmanager
    def lock(self, rel: str, blocking: bool = True):
        """Exclusive writer lock: a lease object its holder renews; a dead holder's lease is taken over once
        it has gone unrenewed for a whole lease (:class:`skylake.lake.storage.lease.Lease`).

        Parameters
        ----------
        rel : str
            The lease object's lake-relative path.
        blocking : bool
            Wait for the lease (else give up at once if another process holds it).

        Yields
        ------
        bool
            True once held; with ``blocking=False``, False at once if another process holds it.
        """
        path = self.full(rel)
        lease = Lease(self.fs, path)
        if not lease.acquire(blocking):
            yield False
            return
        try:
            with hold_lock(path):
                yield True
        finally:
            lease.release()

    def probe_writable(self, rel: str):
        """Write and remove an object under a prefix, to learn whether these credentials can write there.

        Parameters
        ----------
        rel : str
            The prefix (lake-relative).

        Raises
        ------
        OSError
            These credentials cannot write there.
        """
        probe = f"{rel}/.probe-{uuid.uuid4().hex}"
        self.write_bytes(probe, b"")
        self.remove(probe)
