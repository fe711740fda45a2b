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
        "extinction": "night",
        "frame_index": "bucket",
        "frames": "night",
        "maps": "night",
        "maps_index": "none",
        "masters": "night",
        "matches": "night",
        "objects": "healpix",
        "lightcurves": "healpix",
        "refcat": "healpix",
        "sources": "healpix",
        "references": "night",
        "camera_masks": "night",
        "dia_frames": "night",
        "dia_sources": "healpix",
        "dia_lightcurves": "healpix",
        "dia_forced": "healpix",
        "dia_objects": "healpix",
        "streaks": "night",
        "zeropoints": "night",
        "ensemble": "night",
        "detrend": "night",
        "noise": "night",
        "static_artefacts": "night",
    }
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
    and subscripts (keys of reports and settings), a module's ``__all__`` (names of its functions) and lines
    marked ``# not a table``."""
    text = path.read_text()
    tree = ast.parse(text)
    lines = text.splitlines()
    parents = {id(c): node for node in ast.walk(tree) for c in ast.iter_child_nodes(node)}
    exported = {
        id(element)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        for element in ast.walk(node.value)
    }
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names):
            continue
        parent = parents.get(id(node))
        if (
            id(node) in docs
            or id(node) in exported
            or isinstance(parent, ast.Subscript)
            or (isinstance(parent, ast.Dict) and any(k is node for k in parent.keys))
        ):
            continue
        if "# not a table" in lines[node.lineno - 1] or "# not a table" in lines[node.end_lineno - 1]:
            continue
        out.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.value!r}")
    return out


def test_no_table_name_literal_outside_the_registry():
    # 'refcat' is also a column of most tables: it is left out
    columns = {c for n in tables.registry() for c in table_schema(n).names}
    names = set(tables.registry()) - columns
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "tables.py" or path.parent.name != "lake"
        for hit in _table_literals(path, names)
    ]
    assert found == [], "name tables by skylake.lake.tables constants:\n" + "\n".join(found)


def test_a_night_table_is_staged_read_touched_and_removed_through_the_registry(tmp_path):
    import pyarrow as pa
    import pyarrow.compute as pc

    from skylake.lake import Lake
    from skylake.schema import conform

    lake = Lake.init(tmp_path / "lake")
    streaks = tables.get(tables.STREAKS)
    rows = conform(
        {
            n: pa.array([1, 2, 3], f.type) if pa.types.is_integer(f.type) else pa.array([0.5] * 3, f.type)
            for n, f in zip(streaks.schema.names, streaks.schema)
        },
        tables.STREAKS,
    )
    with lake.transaction("test") as tx:
        streaks.stage(tx, rows, ["2026-01-01", "2026-01-02", None])
        entry = tx.commit()
    assert streaks.touched([entry]) == {"2026-01-01", "2026-01-02", None}
    got = streaks.read(lake, columns=["frame_id", "night"]).to_pydict()
    assert sorted(zip(got["frame_id"], got["night"]), key=str) == [(1, "2026-01-01"), (2, "2026-01-02"), (3, None)]
    assert streaks.read(lake, columns=["frame_id"], nights=["2026-01-02"]).column("frame_id").to_pylist() == [2]
    with lake.transaction("test") as tx:
        assert streaks.remove_where(tx, lambda d: pc.equal(d["frame_id"], 2).to_numpy(zero_copy_only=False)) == 1
        entry = tx.commit()
    assert streaks.touched([entry]) == {"2026-01-02"}
    assert sorted(streaks.read(lake, columns=["frame_id"]).column("frame_id").to_pylist()) == [1, 3]
    assert tables.get(tables.OBJECTS).touched([entry]) == set()


def test_the_night_partition_encoding_lives_only_in_the_registry():
    from skylake.lake import nights

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("tables.py", "nights.py") and path.parent.name == "lake":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and "night=" in node.value
                and not node.value.lstrip().startswith(('"', "'"))
                and "\n" not in node.value
            ):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.value!r}")
    assert found == [], "build and parse night directories with nights.night_dir / night_of:\n" + "\n".join(found)
    assert nights.night_dir(None) == "night=unknown" and nights.night_dir("2026-01-02") == "night=2026-01-02"
    assert nights.night_of("night=2026-01-02/x.parquet") == "2026-01-02" and nights.night_of("_index/x") is None


def test_night_partitions_maps_each_row_as_night_partition_does():
    """One call per distinct night; None, NaN and '' are the unknown night, as for a single value."""
    from skylake.lake.nights import UNKNOWN_NIGHT, night_partition, night_partitions

    nights = ["2026-01-01", None, float("nan"), "", "2026-01-02", "2026-01-01"]
    got = night_partitions(nights)
    assert got.tolist() == ["2026-01-01", UNKNOWN_NIGHT, UNKNOWN_NIGHT, UNKNOWN_NIGHT, "2026-01-02", "2026-01-01"]
    assert got.tolist() == [night_partition(n) for n in nights]
    assert night_partitions([]).tolist() == []


def test_frame_rows_of_a_batch_are_staged_as_the_schema_whatever_their_pandas_types(tmp_path):
    """Rows a frame task made from pandas (streaks) can differ in type from frame to frame (int64 where the
    schema has int32, a column all None): ingest joins a batch's rows of each table and conforms them once,
    each row with its frame's id and night."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from skylake.ingest import _stage_frame_rows
    from skylake.lake import Lake
    from skylake.schema import table_schema
    from skylake.tasks.frame import FrameResult

    schema = table_schema("streaks")

    def rows(n: int, **columns) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                f.name: np.arange(n) if pa.types.is_integer(f.type) else np.arange(n) + 0.25
                for f in schema
                if f.name != "frame_id"
            }
        )
        return out.assign(**columns)

    results = [
        FrameResult({}, extras={"streaks": rows(2)}),
        FrameResult({}, extras={"streaks": rows(1, n_segments=[None])}),  # a null column: another type
        FrameResult({}, extras={"streaks": rows(0)}),  # no trail: no row
        FrameResult({}, extras={"streaks": rows(1, x1=[3.5])}),
    ]
    lake = Lake.init(tmp_path / "lake")
    with lake.transaction("test") as tx:
        _stage_frame_rows(
            tx, results, np.array([7, 8, 9, 10]), ["2026-03-01", "2026-03-02", "2026-03-02", "2026-03-02"]
        )
        tx.commit(summary={})
    got = lake.read_night_table("streaks").to_pandas().sort_values(["frame_id", "streak"])
    assert got["frame_id"].tolist() == [7, 7, 8, 10]
    assert got["streak"].tolist() == [0, 1, 0, 0]
    assert got["x1"].tolist() == [0.25, 1.25, 0.25, 3.5]
    assert got["n_segments"].isna().tolist() == [False, False, True, False]
    assert {str(n) for n in got["night"]} == {"2026-03-01", "2026-03-02"}
    assert got.loc[got["frame_id"] == 7, "night"].astype(str).unique().tolist() == ["2026-03-01"]
