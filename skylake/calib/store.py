"""Where calibrations live in the lake, and reading and replacing their rows.

::

    LAKE/zeropoints/night=YYYY-MM-DD/<batch>.parquet   one row per frame per calibration (schemas/zeropoints.yaml)
    LAKE/matches/night=YYYY-MM-DD/<batch>.parquet      one row per source-reference pair (schemas/matches.yaml)
    LAKE/extinction/night=YYYY-MM-DD/<batch>.parquet   one row per night per calibration (schemas/extinction.yaml)

All three are written through :meth:`skylake.lake.Lake.transaction`, so one calibration run is one
commit of the lake's log, and rows are only ever removed by a commit that lists the removal
(``--redo``, or a night's extinction refitted with more frames).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skylake.lake import Lake
from skylake.lake.lake import Transaction, night_filter
from skylake.lake.tables import EXTINCTION, MATCHES, ZEROPOINTS

__all__ = ["ZEROPOINTS", "MATCHES", "EXTINCTION", "night_filter", "read_table", "stage_without"]


def read_table(lake: Lake, table: str, columns: list[str] | None = None, refcat: str | None = None,
               frame_ids=None, nights=None) -> pd.DataFrame:
    """Rows of a calibration table (``night`` from the partition), optionally of one refcat, some frames
    and some ``nights`` (only their partitions are read: the cost of a batch, not of the archive)."""
    flt = None
    if refcat is not None:
        flt = pc.field("refcat") == refcat
    if frame_ids is not None:
        ids = pc.field("frame_id").isin(pa.array([int(f) for f in frame_ids], pa.int64()))
        flt = ids if flt is None else flt & ids
    return lake.read_night_table(table, columns=columns, filter=flt, nights=nights).to_pandas()


def stage_without(tx: Transaction, table: str, drop: Callable[[pa.Table], np.ndarray],
                  nights: set[str] | None = None) -> int:
    """Rewrite every live file of ``table`` (in ``nights``, if given) holding rows for which ``drop``
    is true without them, in ``tx`` (:meth:`Transaction.rewrite_without`). Returns the rows dropped."""
    return tx.rewrite_without(table, sorted(tx.lake.live_files(table, nights)), drop)
