"""A batch's staging area as products see it: where a file of a table waits for its commit.

The one public way for a product (or a worker task it starts) to put a file into a batch: the transaction
hands out its :class:`StagingArea` (``tx.area``, picklable, so tasks on other machines get it), a task writes
``area.write_bytes(table, rel, blob)`` and returns ``(rel, rows, bytes)``, and the driver records the file
with :meth:`skylake.lake.Transaction.add_staged`. Where the area lies on the store is the log's business
(:func:`skylake.lake.log.staging_path`), known to no product.
"""

from __future__ import annotations

from dataclasses import dataclass

from skylake.lake.log import rewritten_rel, staging_path

__all__ = ["StagingArea"]


@dataclass(frozen=True)
class StagingArea:
    """The staging area of one batch of one lake.

    Attributes
    ----------
    lake_root : str
        The lake's location (a local path or a URL such as ``s3://bucket/lake``).
    batch_id : str
        The batch.
    """

    lake_root: str
    batch_id: str

    def path(self, table: str, rel: str = "") -> str:
        """Where a file of ``table`` is staged, relative to the lake.

        Parameters
        ----------
        table : str
            The table (its directory in the lake).
        rel : str
            The file's path relative to the table ('' for the table's folder in the area).

        Returns
        -------
        str
            The lake-relative path.
        """
        return staging_path(self.batch_id, f"{table}/{rel}" if rel else table)

    def rewritten(self, rel: str, k: int) -> str:
        """The name, beside ``rel``, under which this batch stages what it keeps of a file it rewrites.

        Parameters
        ----------
        rel : str
            The rewritten file, relative to its table.
        k : int
            The file's number among those the batch rewrites.

        Returns
        -------
        str
            The new file's path relative to the table.
        """
        return rewritten_rel(rel, self.batch_id, k)

    def write_bytes(self, table: str, rel: str, data: bytes, store=None) -> int:
        """Write one file of ``table`` into the area (a worker's write; the driver then calls ``add_staged``).

        Parameters
        ----------
        table : str
            The table.
        rel : str
            The file's path relative to the table.
        data : bytes
            Its content.
        store : skylake.lake.storage.Storage or None
            The lake's store when the caller holds it open (None: opened from ``lake_root``).

        Returns
        -------
        int
            The bytes written.
        """
        if store is None:
            from skylake.lake.storage import open_storage

            store = open_storage(self.lake_root)
        store.write_bytes(self.path(table, rel), data)
        return len(data)
