"""Every example in skylake's docstrings runs and shows what it prints (doctest): an example is documentation a
reader copies, so it is checked like the README's snippets."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skylake"
#: The modules whose docstrings hold examples (found by their text: nothing is imported to collect them).
MODULES = sorted(
    ".".join(("skylake", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
    if ">>> " in p.read_text(encoding="utf-8")
)


def test_examples_are_found():
    assert len(MODULES) >= 15 and "skylake.calib.calibrate" in MODULES and "skylake.ingest" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_as_shown(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        runner.run(test, out=report.append)
    assert tests, f"{name}: no example found by doctest"
    assert runner.failures == 0, "".join(report)
