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

#: Modules whose public docstrings are numpydoc and validated; a module joins once converted (skylake/lake/,
#: calib/, objects/, maps/, reduce/, watch/; frame/, refcat/, allsky/, ensemble/, db/ next).
NUMPYDOC_MODULES = [
    ROOT / "skylake" / f
    for f in (
        "calib/__init__.py",
        "calib/astrometry.py",
        "calib/calibrate.py",
        "calib/cli.py",
        "calib/crossmatch.py",
        "calib/model.py",
        "calib/pairs.py",
        "calib/plots.py",
        "calib/store.py",
        "calib/zeropoint.py",
        "objects/__init__.py",
        "objects/associate.py",
        "objects/build.py",
        "objects/cli.py",
        "objects/files.py",
        "objects/partition.py",
        "objects/query.py",
        "objects/stats.py",
        "objects/summary.py",
        "objects/truth.py",
        "maps/__init__.py",
        "maps/aggregate.py",
        "maps/build.py",
        "maps/cli.py",
        "maps/export.py",
        "maps/store.py",
        "maps/truth.py",
        "lake/compact.py",
        "lake/counts.py",
        "lake/faults.py",
        "lake/frame_index.py",
        "lake/hats_meta.py",
        "lake/history.py",
        "lake/lake.py",
        "lake/lease.py",
        "lake/log.py",
        "lake/nights.py",
        "lake/parquet.py",
        "lake/pieces.py",
        "lake/snapshot.py",
        "lake/storage.py",
        "lake/tables.py",
        "lake/transaction.py",
        "lake/versions.py",
        "night_products.py",
        "watch/arrivals.py",
        "watch/watcher.py",
        "watch/cli.py",
        "testing/s3.py",
        "reduce/__init__.py",
        "reduce/apply.py",
        "reduce/build.py",
        "reduce/cli.py",
        "reduce/coadd.py",
        "reduce/frame_types.py",
        "reduce/masters.py",
        "reduce/settings.py",
        "reduce/store.py",
    )
]


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
