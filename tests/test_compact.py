"""Compaction merges per-batch files and splits big partitions without changing any answer."""

from __future__ import annotations

import duckdb
import lsdb
import pandas as pd
import pytest

from skylake.lake import Lake
from skylake.lake.compact import compact
from skylake.pipeline import ingest

pytestmark = pytest.mark.realdata


def answers(lake: Lake) -> dict:
    """A handful of analyst queries: full table, a cone, per-frame aggregates, a DuckDB count by pixel."""
    cat = lsdb.open_catalog(lake.path("sources"))
    full = cat.compute().reset_index().sort_values("source_id").reset_index(drop=True)
    cone = cat.cone_search(256.17, 12.79, 1200).compute()
    per_frame = full.groupby("frame_id")["inst_mag"].agg(["count", "median"])
    duck = (
        duckdb.connect()
        .execute(
            f"SELECT count(*), sum(flux_auto), count(DISTINCT source_id) FROM "
            f"read_parquet('{lake.path('sources')}/dataset/*/*/*/*.parquet', hive_partitioning=true)"
        )
        .fetchone()
    )
    frames = lake.read_frames().to_pandas().sort_values("frame_id").reset_index(drop=True)
    return {
        "full": full,
        "cone": sorted(cone["source_id"]),
        "per_frame": per_frame,
        "duck": duck,
        "frames": frames.drop(columns=["night"]),
    }


def test_compaction_keeps_every_answer(tmp_path, skycamz_files):
    lake = Lake.init(tmp_path / "lake")
    ingest(lake, [str(p) for p in skycamz_files], "skycamz", batch_size=3, progress=False)
    n_files = len(lake.live_files("sources"))
    before = answers(lake)
    stats = compact(lake)
    assert stats["partitions_merged"] >= 1 and stats["nights_merged"] == 1
    assert (
        len(lake.live_files("sources"))
        == len(lake.read_frames().to_pandas()) * 0 + len({f.rsplit("/", 1)[0] for f in lake.live_files("sources")})
        < n_files
    )  # one file per partition now
    after = answers(lake)
    pd.testing.assert_frame_equal(before["full"], after["full"])
    assert before["cone"] == after["cone"] and len(after["cone"]) > 1000
    pd.testing.assert_frame_equal(before["per_frame"], after["per_frame"])
    assert before["duck"] == after["duck"]
    pd.testing.assert_frame_equal(before["frames"], after["frames"])
    assert compact(lake)["version"] is None  # nothing left to do

    # Splitting a partition that grew too big keeps the answers too, and new rows still find a home.
    stats = compact(lake, max_rows=5000)
    assert stats["partitions_split"] >= 1
    assert max(p.order for p in lsdb.open_catalog(lake.path("sources")).get_healpix_pixels()) > 5
    pd.testing.assert_frame_equal(
        before["full"].drop(columns=["Norder", "Dir", "Npix"], errors="ignore"),
        answers(lake)["full"].drop(columns=["Norder", "Dir", "Npix"], errors="ignore"),
    )
