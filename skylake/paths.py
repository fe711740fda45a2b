"""Paths: where skylake finds its own data files, and how a frame's path is stored.

Its own data files are ``schemas/`` and ``pipelines/``, in a checkout or an install.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_dir", "stored_path"]


_REPO_ROOT = Path(__file__).resolve().parent.parent


def project_dir(name: str) -> Path:
    """Return the top-level project directory ``name`` (``schemas`` or ``pipelines``).

    ``SKYLAKE_HOME`` overrides the location (for installs that are not editable).

    Parameters
    ----------
    name : str
        The directory's name: ``schemas`` or ``pipelines``.

    Returns
    -------
    pathlib.Path
        The directory.

    Raises
    ------
    FileNotFoundError
        There is no such directory (skylake is not installed from a checkout, nor is SKYLAKE_HOME set to one).
    """
    root = Path(os.environ.get("SKYLAKE_HOME", _REPO_ROOT))
    path = root / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"skylake cannot find its {name}/ directory at {path}; install with `pip install -e .` "
            "from a checkout or set SKYLAKE_HOME to the checkout"
        )
    return path


def stored_path(path: str) -> str:
    r"""``path`` as it can be stored (Parquet strings are UTF-8).

    Parameters
    ----------
    path : str
        A file's path, as Python decoded it.

    Returns
    -------
    str
        ``path`` itself, or with the bytes that are not UTF-8 (a name Python decoded with surrogateescape)
        written as backslash escapes; lone surrogates that did not come from bytes are escaped too.

    Examples
    --------
    >>> stored_path("/data/caf\udce9.fits")
    '/data/caf\\xe9.fits'
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        try:
            return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # lone surrogates that did not come from bytes
            return path.encode("utf-8", "backslashreplace").decode("utf-8")
