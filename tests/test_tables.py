"""The table registry (skylake.lake.tables): built from schemas/, the only place naming tables."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from skylake.lake import tables
from skylake.schema import table_schema

PACKAGE = Path(tables.__file__).resolve().parents[1]


def test_registry_reads_every_schema_with_its_partitioning():
    reg = tables.registry()
    assert {n: t.partition_by for n, t in reg.items() if n != "psf_grid"} == {
        "extinction": "night", "frame_index": "bucket", "frames": "night", "maps": "night", "maps_index": "none",
        "matches": "night", "objects": "healpix", "refcat": "healpix", "sources": "healpix", "streaks": "night",
        "zeropoints": "night"}
    assert reg["maps_index"].location == "maps/_index"
    assert reg["frame_index"].location == "_skylake/frame_index"
    assert reg["sources"].hats and not reg["frames"].hats
    assert reg["zeropoints"].schema == table_schema("zeropoints")
    assert {t.name for t in tables.mirrored_products()} >= {"streaks"}


def test_unknown_table_names_what_exists():
    with pytest.raises(KeyError, match="no lake table 'nope'; schemas/ declares"):
        tables.get("nope")


def test_bad_partition_by_is_named(tmp_path, monkeypatch):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "odd.yaml").write_text("name: odd\npartition_by: week\ncolumns: []\n")
    monkeypatch.setenv("SKYLAKE_HOME", str(tmp_path))
    with pytest.raises(ValueError, match=r"schemas/odd.yaml: partition_by is 'week'; expected one of"):
        tables._load("odd")


def _table_literals(path: Path, names: set[str]) -> list[str]:
    """``file:line name`` of every string literal equal to a table name used as a value (a call argument, an
    assignment, an element of a tuple or list, a comparison, a path join), skipping docstrings, dict keys
    and subscripts (keys of reports and settings) and lines marked ``# not a table``."""
    text = path.read_text()
    tree = ast.parse(text)
    lines = text.splitlines()
    parents = {id(c): node for node in ast.walk(tree) for c in ast.iter_child_nodes(node)}
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names):
            continue
        parent = parents.get(id(node))
        if id(node) in docs or isinstance(parent, ast.Subscript) or (isinstance(parent, ast.Dict)
                                                                     and any(k is node for k in parent.keys)):
            continue
        if "# not a table" in lines[node.lineno - 1] or "# not a table" in lines[node.end_lineno - 1]:
            continue
        out.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.value!r}")
    return out


def test_no_table_name_literal_outside_the_registry():
    # 'refcat' is also a column of most tables: it is left out
    columns = {c for n in tables.registry() for c in table_schema(n).names}
    names = set(tables.registry()) - columns
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path.name != "tables.py" or path.parent.name != "lake"
             for hit in _table_literals(path, names)]
    assert found == [], "name tables by skylake.lake.tables constants:\n" + "\n".join(found)
