"""Night partitions: how a night table (``partition_by: night``) names its directories.

A night table's rows live in ``LAKE/<table>/night=YYYY-MM-DD/``, or ``night=unknown`` for rows whose
observing night was never read (a frame rejected before its time was).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "UNKNOWN_NIGHT",
    "NIGHT_PREFIX",
    "night_partition",
    "night_partitions",
    "night_dir",
    "night_of",
    "night_filter",
]

#: Partition of rows whose observing night is unknown (a frame rejected before any time was read). A
#: plain name, so every reader takes it (pandas/pyarrow cannot unify hive's null partition with
#: dictionaries); skylake's own readers turn it back into a null night.
UNKNOWN_NIGHT = "unknown"
#: The prefix of a night partition's directory.
NIGHT_PREFIX = "night="


def night_partition(night) -> str:
    """The partition value of one night.

    Parameters
    ----------
    night : str or None
        A night (``YYYY-MM-DD``), or None, NaN or '' for an unknown one.

    Returns
    -------
    str
        The night itself, or :data:`UNKNOWN_NIGHT`.
    """
    return night if isinstance(night, str) and night else UNKNOWN_NIGHT


def night_partitions(nights) -> np.ndarray:
    """:func:`night_partition` of each row's night, one call per distinct night.

    Parameters
    ----------
    nights : sequence
        One night per row (str, None or NaN).

    Returns
    -------
    numpy.ndarray
        Object array of partition values, one per row.
    """
    import pandas as pd

    codes, uniq = pd.factorize(pd.Series(np.asarray(nights, dtype=object)), use_na_sentinel=True)
    names = np.array([night_partition(n) for n in uniq] + [UNKNOWN_NIGHT], dtype=object)
    return names[codes]  # code -1 (None, NaN): the last name


def night_dir(night) -> str:
    """The directory of a night in a night table.

    Parameters
    ----------
    night : str or None
        The night (None, NaN or '': unknown).

    Returns
    -------
    str
        ``night=YYYY-MM-DD`` or ``night=unknown``.
    """
    return f"{NIGHT_PREFIX}{night_partition(night)}"


def night_of(rel: str) -> str | None:
    """The night of a night directory, or of a path whose first component is one.

    Parameters
    ----------
    rel : str
        A directory name or table-relative path, e.g. ``night=2026-01-01/batch.parquet``.

    Returns
    -------
    str or None
        ``YYYY-MM-DD`` or :data:`UNKNOWN_NIGHT`; None for any other path.
    """
    first = rel.split("/", 1)[0]
    return first[len(NIGHT_PREFIX) :] if first.startswith(NIGHT_PREFIX) else None


def night_filter(nights) -> pc.Expression:
    """A filter on the ``night`` partition, so that a dataset reads only those directories.

    Parameters
    ----------
    nights : iterable
        Nights to keep; None (or NaN) stands for the unknown night.

    Returns
    -------
    pyarrow.compute.Expression
        ``night`` in the named nights (or null, when an unknown one is asked for).
    """
    nights = list(nights)
    named = sorted({n for n in nights if isinstance(n, str)})  # NaN/None/NA: the unknown night
    known = pc.field("night").isin(pa.array(named, pa.string()))
    if any(not isinstance(n, str) for n in nights):
        return known | pc.field("night").is_null()
    return known
