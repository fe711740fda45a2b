"""Where skylake finds its own data files (schemas/, pipelines/) in a checkout or an install."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def project_dir(name: str) -> Path:
    """Return the top-level project directory ``name`` (``schemas`` or ``pipelines``).

    ``SKYLAKE_HOME`` overrides the location (for installs that are not editable).
    """
    root = Path(os.environ.get("SKYLAKE_HOME", _REPO_ROOT))
    path = root / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"skylake cannot find its {name}/ directory at {path}; install with `pip install -e .` "
            "from a checkout or set SKYLAKE_HOME to the checkout"
        )
    return path
