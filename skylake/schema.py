"""Table schemas, read from ``schemas/*.yaml`` (the single source of truth).

>>> sources = table_schema("sources")
>>> sources.field("ra").type
DataType(double)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa
import yaml

from skylake.paths import project_dir

__all__ = ["TableSpec", "table_spec", "table_schema", "conform"]


_SIMPLE_TYPES = {
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "list<double>": pa.list_(pa.float64()),
    "list<float>": pa.list_(pa.float32()),
    "list<string>": pa.list_(pa.string()),
    "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class TableSpec:
    """A table's schema plus its documentation as written in ``schemas/NAME.yaml``.

    Attributes
    ----------
    name : str
        The table's name.
    description : str
        What the table holds ("" when the file says nothing).
    schema : pyarrow.Schema
        The columns, each with its ``unit`` and ``description`` as field metadata.
    partition_by : str or None
        The column the table is partitioned by (e.g. ``night``), or None.
    """

    name: str
    description: str
    schema: pa.Schema
    partition_by: str | None

    @property
    def names(self) -> list[str]:
        """The column names, in schema order.

        Returns
        -------
        list of str
            The names.
        """
        return list(self.schema.names)


def _arrow_type(type_name: str, table: str, column: str, fields: list | None = None) -> pa.DataType:
    if type_name == "nested":  # a nested-pandas column (e.g. a light curve): a struct of equal-length lists
        if not fields:
            raise ValueError(f"schemas/{table}.yaml: column {column!r} of type nested needs `fields`")
        subs = [_field(f, table, f"{column}.{f['name']}") for f in fields]
        return pa.struct([pa.field(f.name, pa.list_(f.type), metadata=f.metadata) for f in subs])
    try:
        return _SIMPLE_TYPES[type_name]
    except KeyError:
        raise ValueError(
            f"schemas/{table}.yaml: column {column!r} has unknown type {type_name!r}; "
            f"known types: {sorted(_SIMPLE_TYPES)}"
        ) from None


def _field(col: dict, table: str, column: str) -> pa.Field:
    meta = {"unit": col.get("unit", ""), "description": col.get("description", "")}
    return pa.field(col["name"], _arrow_type(col["type"], table, column, col.get("fields")), metadata=meta)


@functools.cache
def table_spec(name: str) -> TableSpec:
    """Load ``schemas/<name>.yaml`` as a :class:`TableSpec` (cached).

    Parameters
    ----------
    name : str
        The table's name.

    Returns
    -------
    TableSpec
        The table's schema and documentation.

    Raises
    ------
    FileNotFoundError
        There is no ``schemas/<name>.yaml`` (or no ``schemas/`` directory).
    ValueError
        A column has an unknown type, or a nested column has no ``fields``.
    """
    with open(project_dir("schemas") / f"{name}.yaml") as fh:
        doc = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: start-up
    fields = [_field(col, name, col["name"]) for col in doc["columns"]]
    return TableSpec(
        name=doc["name"],
        description=doc.get("description", ""),
        schema=pa.schema(fields),
        partition_by=doc.get("partition_by"),
    )


def table_schema(name: str) -> pa.Schema:
    """The pyarrow schema of table ``name``.

    Parameters
    ----------
    name : str
        The table's name.

    Returns
    -------
    pyarrow.Schema
        The schema, from ``schemas/<name>.yaml``.
    """
    return table_spec(name).schema


def conform(table: pa.Table | dict, name: str) -> pa.Table:
    """Cast ``table`` (or a dict of columns) to the schema of ``name``, in schema order.

    Parameters
    ----------
    table : pyarrow.Table or dict
        The rows, as a table or as a dict of columns.
    name : str
        The table whose schema they must fit.

    Returns
    -------
    pyarrow.Table
        The rows, their columns in schema order and of the schema's types.

    Raises
    ------
    ValueError
        Naming the missing and unexpected columns when they do not fit.
    """
    schema = table_schema(name)
    if isinstance(table, dict):
        missing = [n for n in schema.names if n not in table]
        extra = [k for k in table if k not in schema.names]
        if missing or extra:
            raise ValueError(f"{name}: columns do not fit the schema; missing {missing}, unexpected {extra}")
        return pa.Table.from_pydict({n: table[n] for n in schema.names}, schema=schema)
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        raise ValueError(f"{name}: columns do not fit the schema; missing {missing}, unexpected {extra}")
    return table.select(schema.names).cast(schema)
