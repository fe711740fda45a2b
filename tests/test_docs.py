"""The documentation: the README stays a five-minute read, and docs/ builds with Sphinx with no warning.

The snippets of both run in tests/test_readme.py. Under ``CI=true`` a missing Sphinx is a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO


def test_the_readme_is_short_and_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    pages = {p.name for p in (REPO / "docs").glob("*.md")} - {"index.md"}
    linked = set(re.findall(r"\(docs/([a-z-]+\.md)\)", readme))
    assert pages <= linked, f"docs pages the README does not point to: {sorted(pages - linked)}"


def test_the_readme_two_commands_are_those_ci_runs():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    for command in (
        'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest',
        "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/skylake demo --out skylake-demo",
    ):
        assert command in ci and command in readme


def test_the_docs_build_without_a_warning(tmp_path):
    try:
        import myst_parser  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("sphinx and myst-parser are not installed: pip install -e '.[test]'")
        pytest.skip("sphinx and myst-parser are not installed (pip install -e '.[test]')")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(REPO / "docs"),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    index = (tmp_path / "html" / "index.html").read_text()
    assert "Ingest your frames" in index and "API: the lake core" in index
    api = (tmp_path / "html" / "api.html").read_text()
    assert "open_lake" in api and "build_night_products" in api
