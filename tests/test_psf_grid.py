"""A frame product added with two files (schemas/psf_grid.yaml with its `stage:` line, and
skylake/frame/psf_grid.py): committed with its frames, counted by status, mirrored by refresh, replaced
by --redo, with no other code. Real SkyCamZ frames (../shared/data) and exact synthetic inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from skylake.db import refresh
from skylake.frame import psf_grid
from skylake.lake import Lake, tables
from skylake.pipeline import ingest
from skylake.profile import load_profile
from skylake.status import format_status, lake_status
from skylake.tasks.frame import process_file

NAME = tables.of_stage(psf_grid.__name__).name


def _cols(x, y, fwhm, flags=None, edge=None):
    n = len(x)
    return {
        "x": np.asarray(x, float),
        "y": np.asarray(y, float),
        "fwhm": np.asarray(fwhm, float),
        "elongation": np.full(n, 1.2),
        "flags": np.zeros(n, int) if flags is None else np.asarray(flags),
        "edge_dist": np.full(n, 50.0) if edge is None else np.asarray(edge, float),
        "bkg": np.full(n, 100.0),
        "bkg_local": np.arange(n, dtype=float),
    }


def test_run_is_exact_on_known_sources():
    # three stars in the bottom-left cell, one in the centre, one flagged and one at the edge (not clean)
    cols = _cols(
        x=[10, 20, 30, 450, 890, 899],
        y=[15, 25, 35, 450, 890, 1],
        fwhm=[2, 3, 4, 5, 9, 9],
        flags=[0, 0, 0, 0, 1, 0],
        edge=[50, 50, 50, 50, 50, 1],
    )
    rows = psf_grid.run({"nx": 900, "ny": 900, "fwhm_median": 4.0}, cols).to_pandas()
    assert len(rows) == 9 and list(rows["n_stars"]) == [3, 0, 0, 0, 1, 0, 0, 0, 0]
    first, centre = rows.iloc[0], rows.iloc[4]
    assert (first["ix"], first["iy"], first["x_center"], first["y_center"]) == (0, 0, 149.5, 149.5)
    assert first["fwhm_median"] == 3.0 and first["fwhm_ratio"] == 0.75 and first["bkg_median"] == 101.0
    assert (centre["ix"], centre["iy"], centre["fwhm_median"], centre["fwhm_ratio"]) == (1, 1, 5.0, 1.25)
    assert rows.drop([0, 4])["fwhm_median"].isna().all()
    assert psf_grid.run({"nx": None, "ny": None}, cols).num_rows == 0  # no image size: no cells


@pytest.mark.parametrize(
    "broken,error",
    [
        (lambda record, sources: 1 / 0, "ZeroDivisionError: division by zero"),
        (lambda record, sources: "rows", "TypeError: run returned str, not a pyarrow Table"),
        (lambda record, sources: pa.table({"ix": [0]}), "ValueError: columns ['ix'] do not fit schemas/psf_grid.yaml"),
    ],
)
def test_a_failing_product_leaves_the_frame_with_a_note_naming_it(monkeypatch, skycamz_files, broken, error):
    monkeypatch.setattr(psf_grid, "run", broken)
    (result,) = process_file(str(skycamz_files[0]), load_profile("skycamz"))
    assert result.record["status"] == "ok" and result.n_sources > 1000  # the frame and its sources stay
    assert NAME not in result.extras
    assert f"frame product {NAME} (skylake.frame.psf_grid) failed: {error}" in result.record["extract_note"]


def test_a_product_schema_is_checked_when_the_registry_loads(tmp_path, monkeypatch):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(tables.project_dir("schemas"), home / "schemas")
    monkeypatch.setenv("SKYLAKE_HOME", str(home))
    (home / "schemas" / "toy.yaml").write_text(
        "name: toy\npartition_by: night\nstage: some.module\ncolumns:\n  - {name: n, type: int32}\n"
    )
    with pytest.raises(
        ValueError,
        match=r"schemas/toy.yaml: a frame product \(stage: some.module\) needs a "
        r"frame_id column",
    ):
        tables._load("toy")
    (home / "schemas" / "toy.yaml").write_text(
        "name: toy\npartition_by: night\nlocation: elsewhere\ncolumns:\n  - {name: frame_id, type: int64}\n"
    )
    with pytest.raises(ValueError, match="a night table lives in LAKE/toy; location 'elsewhere' is not allowed"):
        tables._load("toy")


def test_committed_counted_mirrored_and_replaced_with_its_frames(tmp_path, pg_url, skycamz_files):
    files = [str(p) for p in skycamz_files[:2]]
    lake = Lake.init(tmp_path / "lake")
    ingest(lake, files, "skycamz")
    frames = lake.read_frames(columns=["frame_id", "nx", "ny", "fwhm_median"]).to_pandas()
    grid = lake.read_night_table(NAME).to_pandas()
    assert len(grid) == 18 and sorted(set(grid["frame_id"])) == sorted(frames["frame_id"])
    assert set(grid["night"]) == {"2013-06-10"} and (grid["n_stars"] > 50).all()
    # each frame's cells hold its clean stars' medians; their ratio to the frame's median is near 1
    for _fid, g in grid.groupby("frame_id"):
        assert g["fwhm_ratio"].between(0.7, 1.4).all(), g
    assert f"{NAME} 18 rows" in format_status(lake_status(Lake.open(lake.url)))

    report = refresh(lake, pg_url)
    assert report.rows[NAME] == 18
    engine = sa.create_engine(pg_url)
    mirrored = pd.read_sql(f"SELECT * FROM {NAME} ORDER BY frame_id, iy, ix", engine)
    expected = grid.sort_values(["frame_id", "iy", "ix"]).reset_index(drop=True)
    assert list(mirrored["frame_id"]) == list(expected["frame_id"])
    assert np.allclose(mirrored["fwhm_median"], expected["fwhm_median"])
    assert mirrored["night"].astype(str).eq("2013-06-10").all()

    ingest(lake, files[:1], "skycamz", redo=True)  # the frame's cells are replaced, not added
    grid2 = lake.read_night_table(NAME).to_pandas()
    new_ids = set(lake.read_frames(columns=["frame_id"]).column("frame_id").to_pylist())
    assert len(grid2) == 18 and set(grid2["frame_id"]) == new_ids
    assert f"{NAME} 18 rows" in format_status(lake_status(Lake.open(lake.url)))
    refresh(lake, pg_url)
    ids = pd.read_sql(f"SELECT frame_id FROM {NAME}", engine)["frame_id"]
    assert len(ids) == 18 and set(ids) == new_ids
    engine.dispose()


@pytest.mark.parametrize(
    "change",
    [f"DROP TABLE {NAME}", f"ALTER TABLE {NAME} ADD COLUMN retired REAL"],
    ids=["made-before-the-product", "made-when-it-had-another-column"],
)
def test_a_product_table_missing_or_with_other_columns_is_made_again_and_mirrored_whole(
    tmp_path, skycamz_files, change
):
    """A database refreshed before its product table existed, or when the product had other columns, gets
    the table made from the schema and every night of it at the next refresh (nothing new in the lake)."""
    lake = Lake.init(tmp_path / "lake")
    ingest(lake, [str(skycamz_files[0])], "skycamz")
    db = f"sqlite:///{tmp_path / 'summary.sqlite'}"
    refresh(lake, db)
    engine = sa.create_engine(db)
    with engine.begin() as conn:
        conn.execute(sa.text(change))
    report = refresh(lake, db)
    assert report.rows[NAME] == 9 and str(report).endswith(f"up to date at lake version 1 (mirrored 9 {NAME})")
    assert pd.read_sql(f"SELECT count(*) AS n FROM {NAME}", engine)["n"].iloc[0] == 9
    columns = [c["name"] for c in sa.inspect(engine).get_columns(NAME)]
    assert "retired" not in columns and columns == [*tables.get(NAME).schema.names, "night"]
    engine.dispose()


@pytest.mark.parametrize("name", ["frames", "zeropoints", "matches", "streaks", NAME])
def test_a_replaced_frame_loses_its_rows_in_every_frame_table(name):
    assert name in {t.name for t in tables.frame_tables()}
