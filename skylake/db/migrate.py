"""Schema migrations of the summary database: ``sql/migrations/NNNN_name.sql``, applied in order,
each inside the caller's transaction, and recorded in ``schema_migrations``.

A schema change is a new numbered file (and the matching edit of ``schemas/summary.yaml``); files
already applied are never edited.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import sqlalchemy as sa

from skylake.paths import project_dir

__all__ = ["MIGRATIONS_TABLE", "migration_files", "statements", "migrate"]


MIGRATIONS_TABLE = "schema_migrations"
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files() -> list[tuple[int, Path]]:
    """(version, path) of every migration, in order.

    Returns
    -------
    list of tuple of (int, pathlib.Path)
        The version and path of each file of ``sql/migrations``, by version.

    Raises
    ------
    ValueError
        A file name is not ``NNNN_name.sql``, or the versions are not 1..n without gaps.
    """
    out = []
    for path in sorted((project_dir("sql") / "migrations").glob("*.sql")):
        m = _FILE.match(path.name)
        if not m:
            raise ValueError(f"migration file name {path.name!r} is not NNNN_name.sql")
        out.append((int(m.group(1)), path))
    versions = [v for v, _ in out]
    if versions != list(range(1, len(out) + 1)):
        raise ValueError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return out


def statements(sql: str) -> list[str]:
    """The statements of a migration file (no semicolons inside statements, no procedural code).

    Parameters
    ----------
    sql : str
        The file's text; lines starting with ``--`` are comments and are left out.

    Returns
    -------
    list of str
        The statements, split at semicolons and stripped, empty ones left out.
    """
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def migrate(conn: sa.Connection) -> list[int]:
    """Apply the migrations ``conn``'s database lacks, inside its open transaction.

    Creates ``schema_migrations`` when it is missing, and records each migration applied in it.

    Parameters
    ----------
    conn : sqlalchemy.Connection
        A connection with an open transaction.

    Returns
    -------
    list of int
        The versions applied now, in order (empty when the database was up to date).
    """
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in conn.exec_driver_sql(f"SELECT version FROM {MIGRATIONS_TABLE}")}
    applied = []
    for version, path in migration_files():
        if version in done:
            continue
        for statement in statements(path.read_text()):
            conn.exec_driver_sql(statement)
        conn.execute(
            sa.text(f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES (:v, :n, :t)"),
            {"v": version, "n": path.name, "t": dt.datetime.now(dt.UTC).isoformat()},
        )
        applied.append(version)
    return applied
