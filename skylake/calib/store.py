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

import posixpath
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skylake.lake import Lake
from skylake.lake.lake import Transaction
from skylake.schema import table_schema

ZEROPOINTS, MATCHES, EXTINCTION = "zeropoints", "matches", "extinction"


def read_table(lake: Lake, table: str, columns: list[str] | None = None, refcat: str | None = None,
               frame_ids=None) -> pd.DataFrame:
    """Rows of a calibration table (``night`` from the partition), optionally of one refcat and some frames."""
    flt = None
    if refcat is not None:
        flt = pc.field("refcat") == refcat
    if frame_ids is not None:
        ids = pc.field("frame_id").isin(pa.array([int(f) for f in frame_ids], pa.int64()))
        flt = ids if flt is None else flt & ids
    return lake.read_night_table(table, columns=columns, filter=flt).to_pandas()


def stage_without(tx: Transaction, table: str, drop: Callable[[pa.Table], np.ndarray],
                  nights: set[str] | None = None) -> int:
    """Rewrite every live file of ``table`` (in ``nights``, if given) holding rows for which ``drop``
    is true without them: the old file is removed and the kept rows are staged, in ``tx``.
    Returns the number of rows dropped."""
    dropped = 0
    for k, rel in enumerate(sorted(tx.lake.live_files(table))):
        night_dir = posixpath.dirname(rel)
        if nights is not None and night_dir.removeprefix("night=") not in nights:
            continue
        data = pq.read_table(tx.lake.path(f"{table}/{rel}"), schema=table_schema(table))
        gone = np.asarray(drop(data), dtype=bool)
        if not gone.any():
            continue
        dropped += int(gone.sum())
        tx.remove(table, rel, data.num_rows)
        if not gone.all():
            tx.stage(table, f"{night_dir}/{tx.batch_id}-rewrite{k}.parquet", data.filter(pa.array(~gone)))
    return dropped
