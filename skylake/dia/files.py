"""Where the DIA tables' rows of frames lie: the HATS partitions their footprints touch, and those rows read.

A DIA source lies on its frame, a DIA object on its sources, a DIA point's object or transient on its reference's
footprint, whose centre is within :data:`~skylake.lake.frames.SAME_POINTING` of a width from the frame's: the
partitions within that reach of a frame hold all of its rows (:func:`files_under`), and nothing else is read.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa

from skylake.lake import tables

__all__ = ["ID_BITS", "frame_row_ids", "frame_rows", "files_under"]

#: Bits of a DIA row's id (a DIA source's, a DIA point's, a transient's forced point's) left for its number on its
#: frame: the ids of frame ``f``'s rows are ``f * 2**ID_BITS + n``.
ID_BITS = 20


def frame_row_ids(frame_id: int, n: int) -> np.ndarray:
    """The ids of a frame's ``n`` rows of a DIA table: ``frame_id * 2**ID_BITS`` onwards.

    Parameters
    ----------
    frame_id : int
        The frame.
    n : int
        Its rows.

    Returns
    -------
    numpy.ndarray
        ``n`` int64 ids.

    Raises
    ------
    ValueError
        More rows than :data:`ID_BITS` leaves room for: their ids would be the next frame's.

    Examples
    --------
    >>> frame_row_ids(3, 2).tolist()
    [3145728, 3145729]
    """
    if n > 2**ID_BITS:
        raise ValueError(f"frame {frame_id}: {n} DIA rows, more than the {2**ID_BITS} its ids have room for")
    return (np.int64(frame_id) << ID_BITS) + np.arange(n, dtype=np.int64)


def frame_rows(lake, table: str, frames: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of a DIA HATS table in the partitions the frames' footprints touch (none of the others read).

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    table : str
        ``dia_sources``, ``dia_objects``, ``dia_lightcurves`` or ``dia_forced``.
    frames : pandas.DataFrame
        The frames (``ra_center``, ``dec_center``, ``nx``, ``ny``, ``pixscale``).
    columns : list of str or None
        Only these columns (None: all).

    Returns
    -------
    pandas.DataFrame
        The rows (of the frames and of the others whose rows share those partitions: filter them).
    """
    from skylake.objects.files import read_files

    data = read_files(lake, table, [f"{table}/{r}" for r in files_under(lake, table, frames)], columns)
    if not data:
        empty = tables.get(table).schema.empty_table()
        return (empty.select(columns) if columns else empty).to_pandas()
    return pa.concat_tables(data).to_pandas()


def files_under(lake, table: str, frames: pd.DataFrame) -> list[str]:
    """A HATS table's files (relative to it) in the partitions the frames' footprints touch (the module's
    docstring says why that holds all the frames' rows).

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    table : str
        A DIA HATS table.
    frames : pandas.DataFrame
        The frames (``ra_center``, ``dec_center``, ``nx``, ``ny``, ``pixscale``).

    Returns
    -------
    list of str
        The files' paths relative to the table.
    """
    from skylake.lake.frames import SAME_POINTING
    from skylake.objects.files import data_files
    from skylake.objects.query import cone_partitions

    hit = {}
    for f in frames.itertuples():
        radius = (1.1 * 0.5 * math.hypot(f.nx, f.ny) + SAME_POINTING * f.nx) * f.pixscale  # [arcsec]
        hit.update((p, None) for p in cone_partitions(lake, table, f.ra_center, f.dec_center, radius))
    return [rel.split("/", 1)[1] for rel in data_files(lake, table, list(hit))]
