"""The README's first command, `skylake demo --out skylake-demo` (the main job end to end, again from elsewhere,
its closing hints), and every Python and SQL block of README.md and of the documentation (docs/*.md) run as
written against its lake (conftest ``demo_run``: once per test process, so in one file, ~30 s). Each block gives
rows: each SQL statement returns at least one, each table or frame a block makes is non-empty."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys

import duckdb
import pytest
from conftest import REPO

from skylake.lake import Lake

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


def test_demo_runs_the_main_job_end_to_end(demo_run):
    cwd, out = demo_run
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().splitlines()[-1] == "demo: PASS", out.stdout
    assert "12 frames ingested" in out.stdout and "truth check" in out.stdout and "Traceback" not in out.stderr
    root = cwd / "skylake-demo"
    lake = Lake.open(root / "lake")
    frames = lake.read_frames().to_pandas()
    assert len(frames) == 12 and (frames["status"] == "ok").all() and frames["instrument"].eq("DEMOCAM").all()
    assert lake.read_sources(columns=["source_id"]).num_rows == frames["n_sources"].sum() > 1000
    # it ends with the summary database in the lake and the report
    with sqlite3.connect(root / "lake" / "_skylake" / "summary.sqlite") as db:
        counts = {
            t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("frames", "zeropoints", "nights", "objects", "maps")
        }
    assert counts["frames"] == counts["zeropoints"] == 12 and counts["nights"] == 1
    assert counts["objects"] > 100 and counts["maps"] > 12  # a map per frame and the night's
    assert "DEMOCAM / V" in (root / "report" / "index.html").read_text()
    page = next((root / "report").glob("DEMOCAM_V_*.html")).read_text()
    assert "Maps of 2026-03-01" in page and "Latest calibration" in page


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
    """The docs' query of the variables gives answers, not only rows: its first object has a false-alarm
    probability and a J (statistics that cannot be computed are null, and NaN no longer sorts above every
    number) and is one of the demo's injected variables (flagged VARIABLE in its reference catalogue); every
    injected variable is flagged ``variable``."""
    from skylake.refcat.schema import flag_bits

    cwd, _ = demo_run
    monkeypatch.chdir(cwd)
    statement = next(
        s
        for block in readme_blocks("sql")
        for s in block.split(";")
        if "WHERE variable ORDER BY fap, chi2_dof DESC" in s and "LIMIT 20" in s
    )
    con = duckdb.connect()
    rows = con.sql(statement).fetchall()
    top = rows[0]
    assert top[-1] is not None and top[-1] == top[-1] and top[-2] is not None  # stetson_j and fap: numbers
    refs = con.sql(
        "SELECT count(*) FROM read_parquet('skylake-demo/lake/refcats/demo/demo/dataset/**/*.parquet') r "
        "JOIN read_parquet('skylake-demo/lake/objects/dataset/*/*/*/*.parquet') o USING (ref_id) "
        f"WHERE (r.flags & {flag_bits()['VARIABLE']}) != 0 AND o.variable"
    ).fetchall()[0][0]
    assert refs == 5
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


# after the blocks, which read the demo's lake as its first run left it
def test_demo_again_from_elsewhere_with_a_relative_out(demo_run):
    """A second run over the same directory, named relative to another working directory: nothing is
    ingested twice, every check passes again."""
    cwd, _ = demo_run
    elsewhere = cwd / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "skylake.cli", "demo", "--out", "../skylake-demo", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=elsewhere,
    )
    assert proc.returncode == 0 and "12 already in the lake" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1] == "demo: PASS"


def test_the_demo_s_closing_hints_run_as_printed(demo_run, tmp_path):
    """Issue 22: the demo's last hint ran a `duckdb` program that is not installed. Every command it prints
    after "light curves:" and "query it" runs, from anywhere, with exit 0."""
    _, out = demo_run
    lines = out.stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("light curves:"))
    hints = [line.strip() for line in lines[start:] if line.startswith("  ")]
    assert len(hints) == 4 and not any(h.startswith("duckdb ") for h in hints), hints
    for hint in hints:
        run = subprocess.run(hint, shell=True, capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert run.returncode == 0, f"{hint}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
