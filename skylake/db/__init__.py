"""The summary database: small tables mirrored from the lake (SQLite inside the lake by default,
Postgres through ``--db URL`` or ``SKYLAKE_DB_URL``) and refreshed incrementally.

>>> from skylake.db import refresh
>>> refresh("LAKE")                                   # doctest: +SKIP
"""

from skylake.errors import DbError

_EXPORTS = {
    "refresh": "mirror",
    "RefreshReport": "mirror",
    "connect": "connect",
    "db_url": "connect",
    "mask_url": "connect",
    "metadata": "models",
    "table": "models",
}
__all__ = [*_EXPORTS, "DbError"]


def __getattr__(name: str):
    """Import lazily: ``skylake --help`` should not pay for SQLAlchemy, pandas and the lake."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"skylake.db.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'skylake.db' has no attribute {name!r}")
