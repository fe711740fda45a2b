"""House rules a tool keeps: ruff (lint and format) over the repository, numpydoc validation over the
converted modules.

Both read their settings from ``pyproject.toml`` (``[tool.ruff]``, ``[tool.numpydoc_validation]``), as
photutils configures them, so ``ruff check`` and ``python -m numpydoc lint`` by hand give the same answer.
Under ``CI=true`` a missing tool is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Every module of the package: public docstrings are numpydoc, validated (the config is in pyproject.toml).
NUMPYDOC_MODULES = sorted((ROOT / "skylake").rglob("*.py"))


def _tool(module: str):
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is not installed: pip install -e '.[test]'")
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_finds_nothing(command):
    _tool("ruff")
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    out = subprocess.run([ruff, *command, "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_numpydoc_validation_passes_on_converted_modules():
    _tool("numpydoc")
    out = subprocess.run(
        [sys.executable, "-m", "numpydoc", "lint", "--config", str(ROOT), *map(str, NUMPYDOC_MODULES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
