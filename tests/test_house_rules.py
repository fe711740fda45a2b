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


#: Functions longer than this many lines of code (no docstring, blank or comment lines) are split where a
#: reader gains from it; the few kept long say why in one docstring line starting "Kept long:".
LONG_FUNCTION_LINES = 80
MAX_LONG_FUNCTIONS = 10
#: The synthetic generators write scenes step by step: left out of the count.
LONG_FUNCTIONS_EXEMPT = ("synthetic",)


def long_functions(source: str) -> list[tuple[str, int, bool]]:
    """(name, lines of code, says why) of each function in ``source`` longer than :data:`LONG_FUNCTION_LINES`."""
    import ast

    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node) or ""
        first = node.body[1] if doc and len(node.body) > 1 else node.body[0]
        code = [
            line
            for line in lines[first.lineno - 1 : node.end_lineno]
            if line.strip() and not line.strip().startswith("#")
        ]
        if len(code) > LONG_FUNCTION_LINES:
            found.append((node.name, len(code), any(ln.strip().startswith("Kept long:") for ln in doc.splitlines())))
    return found


def test_few_functions_are_long_and_each_says_why():
    found = [
        (f"{path.relative_to(ROOT)}:{name}", n, why)
        for path in sorted((ROOT / "skylake").rglob("*.py"))
        if not set(LONG_FUNCTIONS_EXEMPT) & set(path.relative_to(ROOT / "skylake").parts)
        for name, n, why in long_functions(path.read_text())
    ]
    assert len(found) <= MAX_LONG_FUNCTIONS, f"{len(found)} functions over {LONG_FUNCTION_LINES} lines: {found}"
    silent = [where for where, _, why in found if not why]
    assert not silent, f"long functions whose docstring has no 'Kept long:' line: {silent}"


def test_the_long_function_check_counts_code_only():
    body = "\n".join(f"    x{k} = {k}" for k in range(81))
    code = f'def f():\n    """Doc.\n\n    Kept long: a flat list.\n    """\n    # a comment\n\n{body}\n'
    assert long_functions(code) == [("f", 81, True)]
    assert long_functions(code.replace("Kept long: a flat list.", "")) == [("f", 81, False)]
    assert long_functions(code.replace("    x80 = 80\n", "")) == []
