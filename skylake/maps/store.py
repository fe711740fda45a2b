"""Where maps live in the lake, and writing and reading them.

::

    LAKE/maps/night=YYYY-MM-DD/<batch>.parquet          one row per pixel per map (schemas/maps.yaml)
    LAKE/maps/_index/night=YYYY-MM-DD/<batch>.parquet   one row per map (schemas/maps_index.yaml), filed
                                                        under the map's first night (night_min)

Both are written through :meth:`skylake.lake.Lake.transaction` as one commit per ``skylake maps`` run.
A map made again (same ``map_id``) replaces the old one in that commit: files holding its pixel or
index rows are rewritten without them (the log lists the removals). Only the directories of the maps'
nights are read for that, so a commit costs what it writes, not the archive's number of maps (a
``range`` map, whose first night can move, looks in every night). The ``_index`` directory's leading
underscore keeps it out of the pixel dataset (pyarrow and DuckDB's hive readers skip it). Lakes made
before the index was filed by night keep their flat ``_index/<batch>.parquet`` files, read as well.
"""

from __future__ import annotations

import posixpath

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from skylake.lake import Lake, tables
from skylake.lake.log import utc_now as _now
from skylake.lake.nights import UNKNOWN_NIGHT, night_dir, night_of, night_partition
from skylake.lake.storage import read_listed
from skylake.lake.tables import MAPS, MAPS_INDEX, get
from skylake.schema import conform, table_schema

__all__ = [
    "INDEX_SCHEMA",
    "INDEX_DIR",
    "read_maps",
    "index_rel",
    "index_files",
    "read_index",
    "stage_index",
    "stage_without_maps",
    "store_maps",
]


INDEX_SCHEMA = MAPS_INDEX
INDEX_DIR = posixpath.relpath(get(MAPS_INDEX).location, get(MAPS).location)  # "_index"


def read_maps(lake: Lake, map_ids=None, columns: list[str] | None = None) -> pd.DataFrame:
    """Pixel rows (``night`` from the partition), optionally of some maps.

    Parameters
    ----------
    lake : Lake
        The lake.
    map_ids : iterable of str, optional
        The maps to read (None: every map).
    columns : list of str, optional
        The columns to read (None: all).

    Returns
    -------
    pandas.DataFrame
        One row per pixel per map (schemas/maps.yaml).
    """
    flt = None
    if map_ids is not None:
        flt = pads.field("map_id").isin(pa.array([str(m) for m in map_ids], pa.string()))
    return lake.read_night_table(MAPS, columns=columns, filter=flt).to_pandas()


def index_rel(night, batch_id: str) -> str:
    """Where a commit files the index rows of its maps whose first night is ``night`` (relative to LAKE/maps).

    Parameters
    ----------
    night : str or None
        The maps' first night (None, NaN or '': unknown).
    batch_id : str
        The commit's batch.

    Returns
    -------
    str
        ``_index/night=YYYY-MM-DD/<batch_id>.parquet``.
    """
    return f"{INDEX_DIR}/{night_dir(night)}/{batch_id}.parquet"


def index_files(lake: Lake, nights=None) -> list[str]:
    """Live index files (relative to LAKE/maps) of the maps whose first night is one of ``nights``.

    Every night's when ``nights`` is None, plus the flat files of a lake made before the index was filed by
    night.

    Parameters
    ----------
    lake : Lake
        The lake.
    nights : iterable of str, optional
        The first nights of the maps (None: every night).

    Returns
    -------
    list of str
        The files, sorted.
    """
    base = f"{MAPS}/{INDEX_DIR}"
    if not lake.store.exists(base):
        return []
    names = lake.store.listdir(base)
    out = [f"{INDEX_DIR}/{n}" for n in names if n.endswith(".parquet") and not n.startswith(".")]
    dirs = [n for n in names if night_of(n) is not None] if nights is None else sorted({night_dir(n) for n in nights})
    for d in dirs:
        if lake.store.exists(f"{base}/{d}"):
            out += [
                f"{INDEX_DIR}/{d}/{f}"
                for f in lake.store.listdir(f"{base}/{d}")
                if f.endswith(".parquet") and not f.startswith(".")
            ]
    return sorted(out)


def read_index(lake: Lake, nights=None) -> pd.DataFrame:
    """One row per map in the lake (schemas/maps_index.yaml).

    With ``nights``, of the maps whose first night is one of them (only those directories are read).

    Parameters
    ----------
    lake : Lake
        The lake.
    nights : iterable of str, optional
        The first nights of the maps (None: every night).

    Returns
    -------
    pandas.DataFrame
        The index rows.
    """
    schema = table_schema(INDEX_SCHEMA)

    def read() -> pa.Table:
        """List the index files and read them (again, by :func:`read_listed`, when a map made again replaced one).

        Returns
        -------
        pyarrow.Table
            The index rows.
        """
        files = index_files(lake, nights)
        if not files:
            return schema.empty_table()
        paths = [lake.path(f"{MAPS}/{f}") for f in files]
        return pads.dataset(paths, format="parquet", schema=schema, filesystem=lake.store.arrow_fs).to_table()

    return read_listed(read).to_pandas()


def stage_index(tx, index: pd.DataFrame) -> None:
    """Stage index rows (with ``path``, ``batch_id``, ``created_at``), one file per first night.

    Parameters
    ----------
    tx : skylake.lake.transaction.Transaction
        The commit's transaction.
    index : pandas.DataFrame
        The index rows (schemas/maps_index.yaml).
    """
    first = index["night_min"].map(night_partition)
    for night, rows in index.groupby(first, sort=True):
        tx.stage(
            MAPS, index_rel(night, tx.batch_id), conform(pa.Table.from_pandas(rows, preserve_index=False), INDEX_SCHEMA)
        )


def stage_without_maps(tx, lake: Lake, old: pd.DataFrame) -> None:
    """Stage the removal of the maps of index rows ``old`` (their pixel rows and index rows).

    Only the files of their nights are read.

    Parameters
    ----------
    tx : skylake.lake.transaction.Transaction
        The commit's transaction.
    lake : Lake
        The lake.
    old : pandas.DataFrame
        The stored index rows of the maps to remove (with ``map_id``, ``night_min`` and ``path``).
    """
    ids = pa.array(sorted(set(old["map_id"])), pa.string())

    def drop(data):
        """Which rows of a file belong to the maps removed.

        Parameters
        ----------
        data : pyarrow.Table
            The rows of a file (with ``map_id``).

        Returns
        -------
        numpy.ndarray
            True for each row of a map removed.
        """
        return pc.is_in(data.column("map_id"), value_set=ids).to_numpy(zero_copy_only=False)

    maps = tables.get(MAPS)
    maps.remove_where(tx, drop, files=index_files(lake, set(old["night_min"])), schema=INDEX_SCHEMA)
    maps.remove_where(tx, drop, nights={night_of(posixpath.relpath(p, MAPS)) for p in old["path"]})


def store_maps(
    lake: Lake, maps, version: int | None = None, replacing: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, int | None]:
    """Commit a :class:`skylake.maps.build.MapSet` (replacing maps with the same ids).

    Parameters
    ----------
    lake : Lake
        The lake.
    maps : skylake.maps.build.MapSet
        The maps.
    version : int or None
        The lake version the maps' inputs were read at: stored as ``built_version`` of the night maps
        (``scope`` night), which makes them a night product the ingest chain keeps current
        (:mod:`skylake.maps.nightly`); None: not stamped.
    replacing : pandas.DataFrame or None
        Stored index rows of maps to remove in the same commit as well (a stale night's maps).

    Returns
    -------
    index : pandas.DataFrame
        The index rows as stored (with path, batch_id, created_at).
    version : int or None
        The commit version (None if nothing to store).
    """
    if maps.index.empty and (replacing is None or replacing.empty):
        return maps.index, None
    with lake.transaction(MAPS) as tx:
        old = replacing.iloc[:0] if replacing is not None else None
        if len(maps.index):
            # a range map's first night can move as frames arrive: then every night's index is looked at
            nights = None if (maps.index["scope"] == "range").any() else set(maps.index["night_min"])
            old = read_index(lake, nights)
            old = old[old["map_id"].isin(set(maps.index["map_id"]))]
        if replacing is not None:
            old = pd.concat([old, replacing[~replacing["map_id"].isin(set(old["map_id"]))]], ignore_index=True)
        if len(old):  # maps made again: their rows go, in this commit; only their nights' files are read
            stage_without_maps(tx, lake, old)
        index, pixels = _stamped(maps.index, maps.pixels, version) if len(maps.index) else (maps.index, maps.pixels)
        if len(index):
            nights = pixels["night"].fillna(UNKNOWN_NIGHT)
            tx.stage_nights(
                MAPS,
                conform(pa.Table.from_pandas(pixels.drop(columns="night"), preserve_index=False), MAPS),
                nights.tolist(),
            )
            index = index.assign(
                path=[f"{MAPS}/{night_dir(n)}/{tx.batch_id}.parquet" for n in index["night_min"]],
                batch_id=tx.batch_id,
                created_at=_now(),
            )
            stage_index(tx, index)
        entry = tx.commit(summary={"maps": len(index), "pixels": len(pixels)})
    return index, entry.version if entry else None


def _stamped(index: pd.DataFrame, pixels: pd.DataFrame, version: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The index and pixel rows with ``built_version``: ``version`` for night maps, null for the others."""
    nightly = index["scope"].eq("night") if len(index) else pd.Series([], dtype=bool)
    stamp = pd.array([version if n and version is not None else pd.NA for n in nightly], dtype="Int64")
    index = index.assign(built_version=stamp)
    of_map = dict(zip(index["map_id"], stamp))
    return index, pixels.assign(built_version=pd.array(pixels["map_id"].map(of_map), dtype="Int64"))
