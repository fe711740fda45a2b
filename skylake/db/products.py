"""Night tables the summary database mirrors as they are: every table whose schema says ``mirror: true``
(:mod:`skylake.lake.tables`), e.g. ``streaks`` and ``psf_grid``.

Such a table's summary table has the lake table's own columns (types from its schema; list and nested
columns are left out) plus ``night``, and is made from the schema, not by ``sql/migrations`` (whose
tables are the hand-designed summaries): a refresh creates it when it is missing, or makes it again when
the schema's columns changed, and then mirrors all of the lake table's nights once; afterwards only the
nights a commit changed, as for ``frames``. ``skylake refresh --full`` recreates these tables too.
"""

from __future__ import annotations

import sqlalchemy as sa

from skylake.db.models import SQL_TYPES, sql_type_name
from skylake.lake.nights import UNKNOWN_NIGHT, night_of
from skylake.lake.tables import Table, mirrored_products

__all__ = ["sql_table", "ensure", "all_nights"]


def sql_table(t: Table, meta: sa.MetaData) -> sa.Table:
    """The summary table of lake table ``t``: its scalar columns plus ``night``, indexed by night.

    Parameters
    ----------
    t : skylake.lake.tables.Table
        A mirrored lake table.
    meta : sqlalchemy.MetaData
        The metadata the table is added to.

    Returns
    -------
    sqlalchemy.Table
        The table named as the lake table: its columns that have a summary-database type (list and nested
        columns left out), with their descriptions as comments, then ``night``.
    """
    cols = []
    for field in t.schema:
        try:
            typ = sql_type_name(field.type)
        except ValueError:  # a list or nested column: not for a flat summary table
            continue
        desc = (field.metadata or {}).get(b"description", b"").decode()
        cols.append(sa.Column(field.name, SQL_TYPES[typ](), comment=desc or None))
    cols.append(sa.Column("night", sa.Date(), comment="Observing night; null when unknown"))
    table = sa.Table(t.name, meta, *cols, comment=f"LAKE/{t.location} mirrored (mirror: true in its schema)")
    sa.Index(f"ix_{t.name}_night", table.c.night)
    return table


def ensure(conn, drop: bool = False) -> tuple[dict[str, sa.Table], set[str]]:
    """The summary tables of every mirrored product, created where missing and made again where needed.

    A table is made again where its columns are no longer the schema's (all of them, with ``drop``).

    Parameters
    ----------
    conn : sqlalchemy.Connection
        A connection to the summary database, inside a transaction.
    drop : bool
        Drop and create every table again (``skylake refresh --full``).

    Returns
    -------
    tables : dict of str to sqlalchemy.Table
        The summary tables, by name.
    created : set of str
        The names of those created now (to be mirrored whole).
    """
    meta = sa.MetaData()
    out = {t.name: sql_table(t, meta) for t in mirrored_products()}
    inspector = sa.inspect(conn)
    created = set()
    for name, table in out.items():
        exists = inspector.has_table(name)
        stale = exists and [c["name"] for c in inspector.get_columns(name)] != [c.name for c in table.columns]
        if exists and (drop or stale):
            table.drop(conn)
        if drop or stale or not exists:
            table.create(conn)
            created.add(name)
    return out, created


def all_nights(lake, t: Table) -> set[str | None]:
    """Every night directory of lake table ``t``.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    t : skylake.lake.tables.Table
        A night table.

    Returns
    -------
    set of str or None
        The nights of its directories (None for the unknown night); empty when the table has no directory.
    """
    if not lake.store.exists(t.location):
        return set()
    dirs = [n for n in map(night_of, lake.store.listdir(t.location)) if n is not None]
    return {None if d == UNKNOWN_NIGHT else d for d in dirs}
