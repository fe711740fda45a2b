"""Where the summary database is and how to reach it, without ever showing a password.

The URL comes from ``--db``, else ``SKYLAKE_DB_URL``, else a SQLite file inside the lake
(``LAKE/_skylake/summary.sqlite``). Put Postgres passwords in ``~/.pgpass`` (libpq reads it) or in
the environment, never in the repository; every message and log line shows the URL with the password
masked, in whatever form it was given (:mod:`skylake.secrets`). A URL that does not parse, or names
a driver that is not installed, is a usage error (:class:`DbUrlError`, exit code 2).
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy import event

from skylake.errors import DbError, DbUrlError  # noqa: F401 (DbError: imported from here by the db package)
from skylake.secrets import SECRET_KEY, redact, register

__all__ = ["ENV_URL", "SQLITE_FILE", "db_url", "mask_url", "mask", "parse_url", "connect"]


ENV_URL = "SKYLAKE_DB_URL"
SQLITE_FILE = "_skylake/summary.sqlite"


def db_url(lake, url: str | None = None) -> str:
    """The database URL for ``lake``: ``url``, else $SKYLAKE_DB_URL, else SQLite inside the lake.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake whose summary database is meant.
    url : str or None
        The URL given (``--db``); None or empty: $SKYLAKE_DB_URL, else SQLite inside the lake.

    Returns
    -------
    str
        The URL (its secrets registered for redaction); the default is
        ``sqlite:///LAKE/_skylake/summary.sqlite``.

    Raises
    ------
    DbUrlError
        No URL is given and the lake is not on a local disk, so the summary database cannot live inside it.
    """
    url = url or os.environ.get(ENV_URL)
    if url:
        register(url)
        return url
    if lake.store.local_path() is None:  # a usage error: the default SQLite file needs a local disk
        raise DbUrlError(
            f"the lake {lake.url} is not on a local disk, so its summary database cannot live inside it: give "
            f"--db URL (e.g. sqlite:////var/lib/skylake/summary.sqlite) or set {ENV_URL}"
        )
    return f"sqlite:///{lake.path(SQLITE_FILE)}"


def mask_url(url: str | sa.URL) -> str:
    """``url`` with its password (userinfo or a query parameter such as ``password=``) replaced by ***.

    Parameters
    ----------
    url : str or sqlalchemy.URL
        The database URL.

    Returns
    -------
    str
        The URL with every secret masked, or ``<unparseable database URL>`` when it does not parse (so
        nothing that might be a secret is shown).
    """
    raw = url.render_as_string(hide_password=False) if isinstance(url, sa.URL) else str(url)
    register(raw)
    try:
        parsed = sa.make_url(url)
        parsed = parsed.set(query={k: ("***" if SECRET_KEY.search(k) else v) for k, v in parsed.query.items()})
        return redact(parsed.render_as_string(hide_password=True))
    except Exception:  # not even parseable: show nothing that might be a secret
        return "<unparseable database URL>"


def mask(text: str, url: str | sa.URL | None = None) -> str:
    """``text`` with every secret of ``url`` (and every password field) replaced by ***.

    Driver errors may quote the URL or the conninfo.

    Parameters
    ----------
    text : str
        The text to show, e.g. a driver's error message.
    url : str or sqlalchemy.URL or None
        The database URL whose secrets are registered first; None: only the secrets already known.

    Returns
    -------
    str
        ``text`` with the secrets masked.
    """
    if url is not None:
        register(url.render_as_string(hide_password=False) if isinstance(url, sa.URL) else str(url))
    return redact(text)


def parse_url(url: str) -> sa.URL:
    """``url`` parsed; a one-line :class:`DbUrlError` (exit 2) if it is not a database URL.

    Parameters
    ----------
    url : str
        The database URL.

    Returns
    -------
    sqlalchemy.URL
        The parsed URL.

    Raises
    ------
    DbUrlError
        ``url`` is not a database URL (the message shows it with its secrets masked).
    """
    register(url)
    try:
        return sa.make_url(url)
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DbUrlError(
            f"{redact(url)!r} is not a database URL ({redact(reason)}); expected e.g. "
            "postgresql+psycopg://user@host/db or sqlite:///path/summary.sqlite"
        ) from None


_ENGINES: dict[str, sa.Engine] = {}


def connect(url: str) -> sa.Engine:
    """An engine for ``url``, one per URL and process.

    A scheduler refreshing every few minutes keeps its connection pool and compiled statements. SQLite
    transactions begin with BEGIN IMMEDIATE, so two refreshes of one file take turns instead of both
    reading the same watermark.

    Parameters
    ----------
    url : str
        The database URL.

    Returns
    -------
    sqlalchemy.Engine
        The engine (the same one for every call with this URL in this process).

    Raises
    ------
    DbUrlError
        ``url`` is not a database URL, or names an unknown dialect, a driver that is not installed or a
        bad option.
    """
    if url in _ENGINES:
        return _ENGINES[url]
    parse_url(url)
    try:
        engine = sa.create_engine(url, future=True, pool_pre_ping=True)
    except Exception as exc:  # an unknown dialect, a driver not installed, a bad option
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DbUrlError(f"cannot use database URL {mask_url(url)}: {mask(reason, url)}") from None
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection, record):
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    _ENGINES[url] = engine
    return engine
