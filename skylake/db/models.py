"""SQLAlchemy tables of the summary database, built from ``schemas/summary.yaml``.

Columns copied from a lake table take their type from that table's schema (``schemas/TABLE.yaml``),
so a column is described once. ``sql/migrations/`` creates the same tables; a test checks that the
two agree on Postgres.
"""

from __future__ import annotations

import functools

import pyarrow as pa
import sqlalchemy as sa
import yaml

from skylake.paths import project_dir
from skylake.schema import table_schema

__all__ = ["SQL_TYPES", "sql_type_name", "spec", "metadata", "table", "column_types"]


#: The SQL types a column declared in schemas/summary.yaml may have.
SQL_TYPES = {
    "bigint": sa.BigInteger,
    "integer": sa.Integer,
    "double": sa.Double,
    "real": sa.REAL,
    "text": sa.Text,
    "date": sa.Date,
    "timestamptz": lambda: sa.DateTime(timezone=True),
    "boolean": sa.Boolean,
}


def sql_type_name(arrow_type: pa.DataType) -> str:
    """The summary-database type of a lake column's Arrow type.

    Parameters
    ----------
    arrow_type : pyarrow.DataType
        The lake column's type.

    Returns
    -------
    str
        A key of :data:`SQL_TYPES`: ``bigint``, ``integer``, ``double``, ``real``, ``text``, ``boolean`` or
        ``timestamptz``.

    Raises
    ------
    ValueError
        The type has no summary-database type (a list or nested type, for instance).
    """
    if pa.types.is_int64(arrow_type):
        return "bigint"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_float64(arrow_type):
        return "double"
    if pa.types.is_float32(arrow_type):
        return "real"
    if pa.types.is_string(arrow_type):
        return "text"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz"
    raise ValueError(f"lake type {arrow_type} has no summary-database type; list it in schemas/summary.yaml")


@functools.cache
def spec() -> dict:
    """The parsed ``schemas/summary.yaml`` (read once per process).

    Returns
    -------
    dict
        The document: its ``tables``, each with ``columns``, ``primary_key`` and optional ``description``
        and ``indexes``.
    """
    with open(project_dir("schemas") / "summary.yaml") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: start-up


def _columns(name: str, doc: dict) -> list[tuple[str, str, str]]:
    """(column, sql type, description) of table ``name`` in schema order."""
    out = []
    for item in doc["columns"]:
        if "from" in item:
            lake = table_schema(item["from"])
            for col in item["names"]:
                if col not in lake.names:
                    raise ValueError(
                        f"schemas/summary.yaml: {name}.{col} is not a column of schemas/{item['from']}.yaml"
                    )
                field = lake.field(col)
                desc = (field.metadata or {}).get(b"description", b"").decode()
                out.append((col, sql_type_name(field.type), desc))
        else:
            if item["type"] not in SQL_TYPES:
                raise ValueError(
                    f"schemas/summary.yaml: {name}.{item['name']} has unknown type {item['type']!r}; "
                    f"known: {sorted(SQL_TYPES)}"
                )
            out.append((item["name"], item["type"], item.get("description", "")))
    return out


@functools.cache
def metadata() -> sa.MetaData:
    """Every table of the summary database.

    Returns
    -------
    sqlalchemy.MetaData
        The tables of ``schemas/summary.yaml`` with their columns, primary keys, comments and indexes
        (built once per process).
    """
    meta = sa.MetaData()
    for name, doc in spec()["tables"].items():
        pk = doc["primary_key"]
        cols = [
            sa.Column(
                col,
                SQL_TYPES[typ](),
                primary_key=col in pk,
                nullable=col not in pk,
                autoincrement=False,
                comment=desc or None,
            )
            for col, typ, desc in _columns(name, doc)
        ]
        t = sa.Table(name, meta, *cols, comment=doc.get("description"))
        for index_cols in doc.get("indexes", []):
            sa.Index(f"ix_{name}_{'_'.join(index_cols)}", *[t.c[c] for c in index_cols])
    return meta


def table(name: str) -> sa.Table:
    """One table of the summary database.

    Parameters
    ----------
    name : str
        The table's name in ``schemas/summary.yaml``.

    Returns
    -------
    sqlalchemy.Table
        The table of :func:`metadata`.
    """
    return metadata().tables[name]


def column_types(name: str) -> dict[str, str]:
    """{column: summary type name} of table ``name`` (what the DDL must declare).

    Parameters
    ----------
    name : str
        The table's name in ``schemas/summary.yaml``.

    Returns
    -------
    dict of str to str
        Each column's summary type name, in schema order.
    """
    return {col: typ for col, typ, _ in _columns(name, spec()["tables"][name])}
