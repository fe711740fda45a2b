"""Night partitions: how a night table (``partition_by: night``) names its directories.

A night table's rows live in ``LAKE/<table>/night=YYYY-MM-DD/``, or ``night=unknown`` for rows whose
observing night was never read (a frame rejected before its time was).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["UNKNOWN_NIGHT", "NIGHT_PREFIX", "night_partition", "night_partitions", "night_dir", "night_of",
           "night_filter"]

#: Partition of rows whose observing night is unknown (a frame rejected before any time was read). A
#: plain name, so every reader takes it (pandas/pyarrow cannot unify hive's null partition with
#: dictionaries); skylake's own readers turn it back into a null night.
UNKNOWN_NIGHT = "unknown"
#: The prefix of a night partition's directory.
NIGHT_PREFIX = "night="


def night_partition(night) -> str:
    """The partition value of ``night``: the night itself, or :data:`UNKNOWN_NIGHT` (None, NaN, '')."""
    return night if isinstance(night, str) and night else UNKNOWN_NIGHT


def night_partitions(nights) -> np.ndarray:
    """:func:`night_partition` of each of ``nights`` (a sequence, one per row), as an object array: one
    call per distinct night, not per row."""
    import pandas as pd

    codes, uniq = pd.factorize(pd.Series(np.asarray(nights, dtype=object)), use_na_sentinel=True)
    names = np.array([night_partition(n) for n in uniq] + [UNKNOWN_NIGHT], dtype=object)
    return names[codes]  # code -1 (None, NaN): the last name


def night_dir(night) -> str:
    """The directory of ``night`` in a night table: ``night=YYYY-MM-DD`` or ``night=unknown``."""
    return f"{NIGHT_PREFIX}{night_partition(night)}"


def night_of(rel: str) -> str | None:
    """The partition value (``YYYY-MM-DD`` or :data:`UNKNOWN_NIGHT`) of a night directory name, or of a
    path whose first component is one (``night=2026-01-01/batch.parquet``); None for any other path."""
    first = rel.split("/", 1)[0]
    return first[len(NIGHT_PREFIX):] if first.startswith(NIGHT_PREFIX) else None


def night_filter(nights) -> pc.Expression:
    """A filter on the ``night`` partition (read only those directories); None stands for unknown."""
    nights = list(nights)
    named = sorted({n for n in nights if isinstance(n, str)})  # NaN/None/NA: the unknown night
    known = pc.field("night").isin(pa.array(named, pa.string()))
    if any(not isinstance(n, str) for n in nights):
        return known | pc.field("night").is_null()
    return known
