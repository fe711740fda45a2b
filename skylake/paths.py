"""Paths: where skylake finds its own data files, and how a frame's path is stored.

Its own data files are ``schemas/``, ``pipelines/`` and ``sql/``: the checkout's, or in an installed wheel the
copies under ``skylake/_data/`` (which in a checkout are links to the same directories).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_dir", "stored_path"]


_REPO_ROOT = Path(__file__).resolve().parent.parent
#: The data an installed wheel carries (in a checkout: links to the repository's directories).
_PACKAGE_DATA = Path(__file__).resolve().parent / "_data"


def project_dir(name: str) -> Path:
    """Return the top-level project directory ``name`` (``schemas``, ``pipelines`` or ``sql``).

    ``SKYLAKE_HOME`` overrides the location (a checkout whose files should be used instead); else the
    checkout's directory, or in an installed wheel the package's copy (``skylake/_data/NAME``).

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
    home = os.environ.get("SKYLAKE_HOME")
    candidates = [Path(home) / name] if home else [_REPO_ROOT / name, _PACKAGE_DATA / name]
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"skylake cannot find its {name}/ directory at {candidates[0]}"
        + ("" if home else f" nor in the package ({candidates[1]}): reinstall skylake")
        + (": SKYLAKE_HOME must name a skylake checkout" if home else "")
    )


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
