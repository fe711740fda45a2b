"""Where the summary database is and how to reach it, without ever showing a password.

The URL comes from ``--db``, else ``SKYLAKE_DB_URL``, else a SQLite file inside the lake
(``LAKE/_skylake/summary.sqlite``). Put Postgres passwords in ``~/.pgpass`` (libpq reads it) or in
the environment, never in the repository; every message shows the URL with the password masked.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy import event

from skylake.errors import DbError

ENV_URL = "SKYLAKE_DB_URL"
SQLITE_FILE = "_skylake/summary.sqlite"


def db_url(lake, url: str | None = None) -> str:
    """The database URL for ``lake``: ``url``, else $SKYLAKE_DB_URL, else SQLite inside the lake."""
    url = url or os.environ.get(ENV_URL)
    if url:
        return url
    if not lake.store.is_local:
        raise DbError(f"the lake {lake.url} is not on a local disk: give --db URL or set {ENV_URL}")
    return f"sqlite:///{lake.path(SQLITE_FILE)}"


def mask_url(url: str | sa.URL) -> str:
    """``url`` with its password replaced by ***."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even parseable: show nothing that might be a secret
        return "<unparseable database URL>"


def mask(text: str, url: str | sa.URL) -> str:
    """``text`` with the password of ``url`` (if any) replaced by ***: driver errors may quote it."""
    try:
        password = sa.make_url(url).password
    except Exception:
        return text
    return text.replace(password, "***") if password else text


_ENGINES: dict[str, sa.Engine] = {}


def connect(url: str) -> sa.Engine:
    """An engine for ``url``, one per URL and process (a scheduler refreshing every few minutes keeps
    its connection pool and compiled statements). SQLite transactions begin with BEGIN IMMEDIATE, so
    two refreshes of one file take turns instead of both reading the same watermark."""
    if url in _ENGINES:
        return _ENGINES[url]
    try:
        engine = sa.create_engine(url, future=True, pool_pre_ping=True)
    except Exception as exc:
        raise DbError(f"bad database URL {mask_url(url)}: {mask(str(exc), url)}") from None
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection, record):
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    _ENGINES[url] = engine
    return engine
