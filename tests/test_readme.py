"""Every Python and SQL block of README.md and of the documentation (docs/*.md) runs as written against the
lake of the README's first command (`skylake demo --out skylake-demo`, run once for the session: conftest
``demo_run``) and gives rows: each SQL statement returns at least one, each table or frame a block makes is
non-empty."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import duckdb
import pytest
from conftest import REPO

BLOCK = re.compile(r"^```(python|sql)\n(.*?)^```", re.M | re.S)

#: Run in the demo's directory after a block: the sizes of what it made (DataFrames, Tables, arrays).
SIZES = """
import json as _json, sys as _sys
_sizes = {}
for _name, _value in list(globals().items()):
    _kind = type(_value).__module__.split(".")[0] + "." + type(_value).__name__
    if _kind in ("pandas.DataFrame", "pandas.Series", "numpy.ndarray", "nested_pandas.NestedFrame"):
        _sizes[_name] = int(len(_value))
    elif _kind == "pyarrow.Table":
        _sizes[_name] = int(_value.num_rows)
print("SIZES " + _json.dumps(_sizes))
"""


#: The pages whose snippets run: the README, then the documentation.
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_blocks(kind: str, pages=PAGES) -> list[str]:
    return [code for page in pages for lang, code in BLOCK.findall(page.read_text()) if lang == kind]


def test_the_readme_has_a_query_tour():
    assert (
        len(readme_blocks("python", [REPO / "README.md"])) >= 2 and len(readme_blocks("sql", [REPO / "README.md"])) >= 1
    )
    assert len(readme_blocks("python")) >= 6 and len(readme_blocks("sql")) >= 3


@pytest.mark.parametrize("k", range(len(readme_blocks("python"))))
def test_python_block_runs_and_gives_rows(demo_run, k):
    cwd, proc = demo_run
    assert (cwd / "skylake-demo" / "lake").is_dir(), proc.stdout[-2000:] + proc.stderr[-2000:]
    code = readme_blocks("python")[k]
    run = subprocess.run([sys.executable, "-c", code + SIZES], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert run.returncode == 0, f"README/docs python block {k} failed:\n{code}\n{run.stderr[-3000:]}"
    sizes = json.loads(run.stdout.rsplit("SIZES ", 1)[1])
    assert sizes and all(n > 0 for n in sizes.values()), (code, sizes)


@pytest.mark.parametrize("k", range(len(readme_blocks("sql"))))
def test_sql_block_runs_and_gives_rows(demo_run, k, monkeypatch):
    cwd, proc = demo_run
    assert (cwd / "skylake-demo" / "lake").is_dir(), proc.stdout[-2000:] + proc.stderr[-2000:]
    monkeypatch.chdir(cwd)
    con = duckdb.connect()
    for statement in filter(str.strip, readme_blocks("sql")[k].split(";")):
        rows = con.sql(statement).fetchall()
        assert rows, f"no rows from README/docs SQL:\n{statement}"


def test_the_most_variable_object_of_the_readme_is_a_variable(demo_run, monkeypatch):
    """The README's ranking by Stetson J gives answers, not only rows: its first object has a J (statistics that
    cannot be computed are null, and NaN no longer sorts above every number) and is one of the demo's injected
    variables (flagged VARIABLE in its reference catalogue)."""
    from skylake.refcat.schema import flag_bits

    cwd, _ = demo_run
    monkeypatch.chdir(cwd)
    statement = next(
        s
        for block in readme_blocks("sql")
        for s in block.split(";")
        if "ORDER BY stetson_j DESC" in s and "LIMIT 20" in s
    )
    con = duckdb.connect()
    top = con.sql(statement).fetchall()[0]
    assert top[-1] is not None and top[-1] == top[-1]  # stetson_j: a number, not null or NaN
    nan_j = con.sql(
        "SELECT count(*) FROM read_parquet('skylake-demo/lake/objects/dataset/*/*/*/*.parquet') WHERE isnan(stetson_j)"
    ).fetchall()[0][0]
    assert nan_j == 0
    ref = con.sql(
        f"SELECT ref_id FROM read_parquet('skylake-demo/lake/objects/dataset/*/*/*/*.parquet') "
        f"WHERE object_id = {top[0]}"
    ).fetchall()[0][0]
    flags = con.sql(
        f"SELECT flags FROM read_parquet('skylake-demo/lake/refcats/demo/demo/dataset/**/*.parquet') "
        f"WHERE ref_id = {ref}"
    ).fetchall()[0][0]
    assert flags & flag_bits()["VARIABLE"]
