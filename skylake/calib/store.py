"""Where calibrations live in the lake, and reading and replacing their rows.

::

    LAKE/zeropoints/night=YYYY-MM-DD/<batch>.parquet   one row per frame per calibration (schemas/zeropoints.yaml)
    LAKE/matches/night=YYYY-MM-DD/<batch>.parquet      one row per source-reference pair (schemas/matches.yaml)
    LAKE/extinction/night=YYYY-MM-DD/<batch>.parquet   one row per night per calibration (schemas/extinction.yaml)

All three are written through :meth:`skylake.lake.Lake.transaction`, so one calibration run is one
commit of the lake's log, and rows are only ever removed by a commit that lists the removal
(``--redo``, or a night's extinction refitted with more frames). Matches rows, the bulk, are written and
rewritten by tasks on the workers (:mod:`skylake.calib.pairs`, :func:`rewrite_on_workers`); the commit
only records their files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skylake.lake import Lake, counts
from skylake.lake.nights import night_filter
from skylake.lake.staging import StagingArea
from skylake.lake.tables import EXTINCTION, MATCHES, ZEROPOINTS
from skylake.lake.transaction import Transaction

__all__ = [
    "ZEROPOINTS",
    "MATCHES",
    "EXTINCTION",
    "night_filter",
    "read_table",
    "rows_of",
    "rewrite_on_workers",
    "rewrite_files",
]


def read_table(
    lake: Lake, table: str, columns: list[str] | None = None, refcat: str | None = None, frame_ids=None, nights=None
) -> pd.DataFrame:
    """Rows of a calibration table (``night`` from the partition), optionally of one refcat, frames and nights.

    Only the partitions of ``nights`` are read: the cost of a batch, not of the archive.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    table : str
        The table: :data:`ZEROPOINTS`, :data:`MATCHES` or :data:`EXTINCTION`.
    columns : list of str, optional
        The columns to read (None: all).
    refcat : str, optional
        Only the rows of this reference catalogue (None: of every catalogue).
    frame_ids : iterable of int, optional
        Only the rows of these frames (None: of every frame).
    nights : iterable of str, optional
        Only the partitions of these nights (None: every night).

    Returns
    -------
    pandas.DataFrame
        The rows, with ``night``.
    """
    flt = None
    if refcat is not None:
        flt = pc.field("refcat") == refcat
    if frame_ids is not None:
        ids = pc.field("frame_id").isin(pa.array([int(f) for f in frame_ids], pa.int64()))
        flt = ids if flt is None else flt & ids
    return lake.read_night_table(table, columns=columns, filter=flt, nights=nights).to_pandas()


def rows_of(table: pa.Table, refcat: str, frame_ids=None, keys=None) -> np.ndarray:
    """Rows of ``table`` of ``refcat`` and (if given) ``frame_ids`` / one of the calib ``keys``.

    Parameters
    ----------
    table : pyarrow.Table
        Rows of a calibration table.
    refcat : str
        The reference catalogue.
    frame_ids : iterable of int, optional
        Only the rows of these frames (None: of every frame).
    keys : iterable of str, optional
        Only the rows of these calibrations (``calib_key``; None: of every calibration).

    Returns
    -------
    numpy.ndarray
        A boolean mask over the rows of ``table``.
    """
    mask = table.column("refcat").to_numpy(zero_copy_only=False) == refcat
    if frame_ids is not None:
        mask &= np.isin(table.column("frame_id").to_numpy(), np.fromiter(frame_ids, np.int64))
    if keys is not None:
        mask &= np.isin(table.column("calib_key").to_numpy(zero_copy_only=False), list(keys))
    return mask


def rewrite_on_workers(
    tx: Transaction, runner, table: str, refcat: str, frame_ids: set, nights: set[str] | None = None
) -> int:
    """Remove the rows of ``refcat`` and ``frame_ids`` from a table, the files rewritten on the workers.

    ``Table.remove_where`` (:mod:`skylake.lake.tables`) for the rows of ``refcat`` and ``frame_ids``
    (:func:`rows_of`), the files read and rewritten by tasks on ``runner``'s workers (:func:`rewrite_files`).

    What ``--redo`` does to the matches of its nights, so their rows never pass through the driver. The files
    staged and removed are those :meth:`Transaction.rewrite_without` would stage and remove. Only for a table
    whose rows the running counts do not keep (they would need the rows dropped).

    Parameters
    ----------
    tx : skylake.lake.transaction.Transaction
        The open transaction that stages the rewritten files and records the removals.
    runner : skylake.runtime.Runner
        Where the tasks run.
    table : str
        The table (not one of :data:`skylake.lake.counts.KEEP`).
    refcat : str
        The reference catalogue whose rows go.
    frame_ids : set of int
        The frames whose rows go.
    nights : set of str, optional
        Only the files of these nights (None: every night).

    Returns
    -------
    int
        The rows dropped.

    Raises
    ------
    ValueError
        ``table`` is one whose dropped rows the running counts keep.
    """
    if table in counts.KEEP:
        raise ValueError(f"{table}: its dropped rows are counted; rewrite it with tables.get(table).remove_where")
    rels = list(enumerate(sorted(tx.lake.live_files(table, nights))))
    if not rels:
        return 0
    n = max(1, min(runner.workers(), len(rels)))
    items = [rels[k::n] for k in range(n)]
    actions = []
    for done in runner.map(
        rewrite_files,
        items,
        window=n,
        priority=10,
        area=tx.area,
        table=table,
        refcat=refcat,
        frame_ids=sorted(frame_ids),
    ):
        actions += done
    dropped = 0
    for _, kind, rel, rows, nbytes in sorted(actions):  # in file order, as rewrite_without records them
        if kind == "remove":
            tx.remove(table, rel, rows)
            dropped += rows
        else:
            tx.add_staged(table, rel, rows, nbytes)
            dropped -= rows
    return dropped


def rewrite_files(
    item: list[tuple[int, str]], area: StagingArea, table: str, refcat: str, frame_ids: list[int]
) -> list[tuple[int, str, str, int, int]]:
    """A task: rewrite the files of ``item`` without the rows of ``refcat`` and ``frame_ids``.

    Each file ``(k, rel)`` of ``table`` holding rows of ``refcat`` and ``frame_ids`` is read, and
    its other rows (if any) are staged beside it in the batch of ``area`` as ``<batch>-rewrite<k>.parquet``.
    Re-running it (a worker died) rewrites the same files.

    Parameters
    ----------
    item : list of tuple of (int, str)
        The files ``(k, rel)``: a number unique in the batch and the path in the table.
    area : skylake.lake.staging.StagingArea
        The batch's staging area, which receives the rewritten files.
    table : str
        The table.
    refcat : str
        The reference catalogue whose rows go.
    frame_ids : list of int
        The frames whose rows go.

    Returns
    -------
    list of tuple of (int, str, str, int, int)
        The file actions ``(k, "remove", rel, rows, 0)`` and ``(k, "stage", rel, rows, bytes)``.
    """
    import pyarrow.parquet as pq

    from skylake.lake.parquet import parquet_bytes
    from skylake.lake.storage import open_storage
    from skylake.schema import table_schema

    store = open_storage(area.lake_root)
    actions = []
    for k, rel in item:
        data = pq.read_table(store.full(f"{table}/{rel}"), schema=table_schema(table))
        gone = rows_of(data, refcat, frame_ids)
        if not gone.any():
            continue
        actions.append((k, "remove", rel, data.num_rows, 0))
        if not gone.all():
            kept = data.filter(pa.array(~gone))
            new = area.rewritten(rel, k)
            actions.append((k, "stage", new, kept.num_rows, area.write_bytes(table, new, parquet_bytes(kept), store)))
    return actions
