"""Where calibrations live in the lake, and reading and replacing their rows.

::

    LAKE/zeropoints/night=YYYY-MM-DD/<batch>.parquet   one row per frame per calibration (schemas/zeropoints.yaml)
    LAKE/matches/night=YYYY-MM-DD/<batch>.parquet      one row per source-reference pair (schemas/matches.yaml)
    LAKE/extinction/night=YYYY-MM-DD/<batch>.parquet   one row per night per calibration (schemas/extinction.yaml)

All three are written through :meth:`skylake.lake.Lake.transaction`, so one calibration run is one
commit of the lake's log, and rows are only ever removed by a commit that lists the removal
(``--redo``, or a night's extinction refitted with more frames). Matches rows, the bulk, are written and
rewritten by tasks on the workers (:mod:`skylake.calib.pairs`; ``remove_where(..., runner=)``); the commit
only records their files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skylake.lake import Lake
from skylake.lake.nights import night_filter
from skylake.lake.tables import EXTINCTION, MATCHES, ZEROPOINTS

__all__ = [
    "ZEROPOINTS",
    "MATCHES",
    "EXTINCTION",
    "night_filter",
    "read_table",
    "rows_of",
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
