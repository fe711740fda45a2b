"""Comparing two lakes row for row (moved out of tests/test_real_cluster.py).

The lake's tables are read whole, sorted by their keys, with the columns that legitimately differ between
two runs left out, and compared column by column with NaN equal to NaN. Used by
tests/test_real_cluster.py (a cluster's lake against a local one) and benchmarks/compare_versions.py (a
lake built by two versions of skylake).

Reads everything into memory: meant for test-sized lakes (the 14 SkyCamZ frames), not an archive."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from skylake.lake import tables
from skylake.lake.tables import EXTINCTION, FRAMES, MAPS, MAPS_INDEX, MATCHES, OBJECTS, SOURCES, STREAKS, ZEROPOINTS

__all__ = [
    "KEYS",
    "OPTIONAL",
    "EXCLUDED",
    "read_tables",
    "calib_key",
    "keys_unique",
    "normalise",
    "same",
    "Comparison",
    "compare",
]


#: Each table's sort key (unique in it). Tables not listed (frame products) are sorted by every column.
KEYS = {
    FRAMES: ["frame_id"],
    SOURCES: ["source_id"],
    ZEROPOINTS: ["frame_id", "refcat", "flux"],
    MATCHES: ["source_id", "refcat"],
    EXTINCTION: ["night", "refcat"],
    OBJECTS: ["object_id"],
    MAPS: ["map_id", "pixel"],
    MAPS_INDEX: ["map_id"],
    STREAKS: ["frame_id", "streak"],
}
#: Tables a lake has only when something wrote them (all-sky frames' trails, frame products).
OPTIONAL = {STREAKS} | {t.name for t in tables.frame_products()}
#: Columns that legitimately differ between two runs, left out of the comparison. Commit identity and
#: times: batch_id is "<UTC time>-<kind>-<random>", new for every commit, and
#: ingested_at/calibrated_at/created_at are the commit's clock time. processing_s is the wall-clock time
#: a worker spent on the frame. calib_key (and the maps index's calib_keys) hash the catalogue's import
#: record including its `imported_at` (each import is its own catalogue version, by design), so the
#: two lakes' keys differ: they are compared after mapping each lake's single key to one placeholder
#: (normalise), as is the maps index's path, which names the file by its batch id.
EXCLUDED = {"batch_id", "ingested_at", "calibrated_at", "created_at", "processing_s"}


def _dataset(root: Path, partitioning=None) -> pa.Table:
    files = sorted(
        str(p)
        for p in root.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )
    return pads.dataset(files, format="parquet", partitioning=partitioning).to_table()


def _night_table(lake: Path, table: str) -> pa.Table:
    return _dataset(lake / table, pads.HivePartitioning(pa.schema([("night", pa.string())]), null_fallback="unknown"))


def read_tables(lake: Path) -> dict[str, pa.Table]:
    """Every registered table of the lake, whole.

    The tables are those of :mod:`skylake.lake.tables`, not the reference catalogues or the frame index; an
    optional table only where its directory exists.

    Parameters
    ----------
    lake : pathlib.Path or str
        The lake's directory (on a local disk).

    Returns
    -------
    dict of str to pyarrow.Table
        Each table's rows by its name; a night-partitioned table has its ``night`` column (``unknown`` as
        null).
    """
    lake = Path(lake)
    out = {}
    for t in tables.registry().values():
        root = lake / t.location
        if t.partition_by == "bucket" or t.name == tables.REFCAT or (t.name in OPTIONAL and not root.is_dir()):
            continue
        if t.hats:
            out[t.name] = _dataset(root / "dataset")
        elif t.by_night:
            out[t.name] = _night_table(lake, t.location)
        else:
            out[t.name] = _dataset(root)
    return out


def calib_key(lake_tables: dict[str, pa.Table]) -> str | None:
    """The lake's calibration key (one catalogue, one set of settings); None without zeropoints.

    Parameters
    ----------
    lake_tables : dict of str to pyarrow.Table
        The lake's tables (:func:`read_tables`).

    Returns
    -------
    str or None
        The zeropoints' single ``calib_key``, or None when there are none.

    Raises
    ------
    ValueError
        The zeropoints hold more than one calibration key.
    """
    keys = lake_tables[ZEROPOINTS]["calib_key"].unique().to_pylist() if ZEROPOINTS in lake_tables else []
    if len(keys) > 1:
        raise ValueError(f"more than one calibration key in the lake: {keys}")
    return keys[0] if keys else None


def keys_unique(table: pa.Table, keys: list[str]) -> bool:
    """Whether ``keys`` identify every row of ``table``.

    Parameters
    ----------
    table : pyarrow.Table
        The rows.
    keys : list of str
        The key columns.

    Returns
    -------
    bool
        No two rows share the same keys.
    """
    return table.group_by(keys).aggregate([]).num_rows == table.num_rows


def normalise(name: str, table: pa.Table, key: str | None, excluded=EXCLUDED, keys=None) -> pa.Table:
    """A table made comparable: sorted, placeholders for run-specific values, the ``excluded`` columns dropped.

    It is sorted by the table's keys (``KEYS[name]`` unless given; then by the other plain columns, so that
    duplicate keys still sort the same way); the lake's calibration key ``key`` and the batch id in the maps
    index's paths become placeholders (``KEY``, ``BATCH``).

    Parameters
    ----------
    name : str
        The table's name.
    table : pyarrow.Table
        Its rows.
    key : str or None
        The lake's calibration key (:func:`calib_key`; None: none to replace).
    excluded : set of str
        Columns to drop.
    keys : list of str or None
        The sort key (None: ``KEYS[name]``, or none for a table not listed).

    Returns
    -------
    pyarrow.Table
        The normalised table.
    """
    if key is not None:
        for column in ("calib_key", "calib_keys"):
            if column in table.column_names:
                values = pc.replace_substring(table[column], key, "KEY")
                table = table.set_column(table.column_names.index(column), column, values)
    if "path" in table.column_names and "batch_id" in table.column_names and name in (MAPS_INDEX, MAPS):
        paths = [
            p if p is None or b is None else p.replace(b, "BATCH")
            for p, b in zip(table["path"].to_pylist(), table["batch_id"].to_pylist())
        ]
        table = table.set_column(table.column_names.index("path"), "path", pa.array(paths, pa.string()))
    table = table.drop_columns([c for c in table.column_names if c in excluded])
    keys = [k for k in (KEYS.get(name, []) if keys is None else keys) if k in table.column_names]
    plain = [c for c in table.column_names if c not in keys and _sortable(table.schema.field(c).type)]
    order = keys + plain
    return table.sort_by([(c, "ascending") for c in order]) if order else table


def _sortable(t: pa.DataType) -> bool:
    return not (pa.types.is_nested(t) or pa.types.is_dictionary(t) or pa.types.is_null(t))


def same(x, y) -> bool:
    """Arrays equal value for value, NaN equal to NaN (at any depth of structs and lists).

    Parameters
    ----------
    x : pyarrow.Array or pyarrow.ChunkedArray
        One array.
    y : pyarrow.Array or pyarrow.ChunkedArray
        The other.

    Returns
    -------
    bool
        Same type, length, nulls and values.
    """
    x = x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x
    y = y.combine_chunks() if isinstance(y, pa.ChunkedArray) else y
    if x.type != y.type or len(x) != len(y) or not x.is_null().equals(y.is_null()):
        return False
    if pa.types.is_struct(x.type):
        return all(same(a, b) for a, b in zip(x.flatten(), y.flatten()))
    if pa.types.is_list(x.type) or pa.types.is_large_list(x.type):
        return same(pc.list_value_length(x), pc.list_value_length(y)) and same(pc.list_flatten(x), pc.list_flatten(y))
    if pa.types.is_floating(x.type):
        nan_x, nan_y = pc.is_nan(x), pc.is_nan(y)
        if not nan_x.equals(nan_y):
            return False
        none = pa.scalar(None, x.type)
        return pc.if_else(nan_x, none, x).equals(pc.if_else(nan_y, none, y))
    return x.equals(y)


@dataclass
class Comparison:
    """Two normalised tables compared: their rows and the columns that differ.

    A column only one has counts as differing; with different row counts no column is compared.

    Attributes
    ----------
    rows_a : int
        Rows of the first table.
    rows_b : int
        Rows of the second table.
    only_a : list of str
        Columns only the first table has.
    only_b : list of str
        Columns only the second table has.
    differ : list of str
        Columns both have whose values differ (in the first table's column order).
    """

    rows_a: int
    rows_b: int
    only_a: list[str]
    only_b: list[str]
    differ: list[str]

    @property
    def identical(self) -> bool:
        """Whether the tables are the same.

        Returns
        -------
        bool
            Same row count, the same columns and no column differing.
        """
        return self.rows_a == self.rows_b and not (self.only_a or self.only_b or self.differ)

    def first_difference(self) -> str:
        """The first differing column (in the first table's column order), or what else differs.

        Returns
        -------
        str
            ``row count``, the first differing column, the columns only one table has (``(only before)``,
            ``(only after)``), or "" when the tables are identical.
        """
        if self.rows_a != self.rows_b:
            return "row count"
        if self.differ:
            return self.differ[0]
        if self.only_a or self.only_b:
            return ", ".join([f"{c} (only before)" for c in self.only_a] + [f"{c} (only after)" for c in self.only_b])
        return ""


def compare(a: pa.Table, b: pa.Table) -> Comparison:
    """Compare two tables row for row, column by column, after ``normalise``.

    Parameters
    ----------
    a : pyarrow.Table
        The first table, normalised.
    b : pyarrow.Table
        The second table, normalised.

    Returns
    -------
    Comparison
        Their row counts and the columns that differ.
    """
    only_a = [c for c in a.column_names if c not in b.column_names]
    only_b = [c for c in b.column_names if c not in a.column_names]
    differ = (
        [] if a.num_rows != b.num_rows else [c for c in a.column_names if c in b.column_names and not same(a[c], b[c])]
    )
    return Comparison(a.num_rows, b.num_rows, only_a, only_b, differ)
