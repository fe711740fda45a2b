"""The per-partition cross-match (:mod:`skylake.calib.pixel_match`: one k-d tree query per reference partition a
sources partition meets) on SYNTHETIC positions written as HATS catalogs by lsdb, with exact answers: the nearest
star, ties to the smaller ref_id, the second nearest's magnitude and separation, sources with no star or one
star, the RA wrap at 0/360 and the pole, partitions of different orders both ways; and the same pairs as a
brute-force match of every source with every star reduced by ``nearest_per_source``."""

from __future__ import annotations

import warnings

import lsdb
import numpy as np
import pandas as pd
import pytest

from skylake.calib import pixel_match
from skylake.calib.crossmatch import nearest_per_source

ARCSEC = 1.0 / 3600.0
RADIUS = 9.0


def _crossmatch(tmp_path, src: pd.DataFrame, ref: pd.DataFrame, src_order: int = 2, ref_order: int = 4):
    """Write both as HATS catalogs (the stars a collection with a 2x radius margin) and match every source."""
    import hats
    from mocpy import MOC

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # from_dataframe on a few rows
        lsdb.from_dataframe(
            src.assign(frame_id=1),
            ra_column="ra",
            dec_column="dec",
            lowest_order=src_order,
            highest_order=src_order,
            margin_threshold=None,
        ).write_catalog(tmp_path / "sources", as_collection=False)
        lsdb.from_dataframe(
            ref,
            ra_column="ra",
            dec_column="dec",
            lowest_order=ref_order,
            highest_order=ref_order,
            margin_threshold=2 * RADIUS,
        ).write_catalog(tmp_path / "refs")
    sources, refcat = hats.read_hats(tmp_path / "sources"), hats.read_hats(tmp_path / "refs")
    spec = pixel_match.MatchSpec(
        frame_ids=np.array([1]),
        source_columns=("source_id", "frame_id", "ra", "dec"),
        source_schema=sources.schema,
        ref_columns=("ref_id", "ra", "dec", "mag"),
        radius_arcsec=RADIUS,
        mag="mag",
    )
    everywhere = MOC.from_string("0/0-11")
    tasks = pixel_match.plan(sources, refcat, everywhere)
    assert tasks, "no partition pair"
    # each partition's count of the frame's sources, known before its match, is the partition's rows
    counts = [pixel_match.count_partition(t, spec) for t in tasks]
    rows = [pd.read_parquet(t.path, columns=["frame_id"]) for t in tasks]
    assert [(c[0].tolist(), c[1].tolist()) for c in counts] == [([1], [len(r)]) if len(r) else ([], []) for r in rows]
    return pd.concat([pixel_match.match_partition(t, spec) for t in tasks], ignore_index=True)


def _brute_force(src: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    s = SkyCoord(src["ra"].to_numpy() * u.deg, src["dec"].to_numpy() * u.deg)
    r = SkyCoord(ref["ra"].to_numpy() * u.deg, ref["dec"].to_numpy() * u.deg)
    rows = []
    for i in range(len(src)):
        sep = s[i].separation(r).to_value(u.arcsec)
        for j in np.flatnonzero(sep <= RADIUS):
            rows.append((src["source_id"].iloc[i], ref["ref_id"].iloc[j], ref["mag"].iloc[j], sep[j]))
    pairs = pd.DataFrame(rows, columns=["source_id", "ref_id", "mag", "sep_arcsec"])
    return nearest_per_source(pairs, mag="mag")


def test_nearest_star_ties_and_neighbours_exactly(tmp_path):
    # source 1 at (0, 0): stars 10 and 11 at dec +-3" (an exact tie in floating point: the vectors are
    # mirror images), star 12 at RA 5"
    ref = pd.DataFrame(
        {
            "ref_id": [11, 10, 12, 20, 30, 31],
            "ra": [0.0, 0.0, 5 * ARCSEC, 200.0, 300.0, 300.0],
            "dec": [-3 * ARCSEC, 3 * ARCSEC, 0.0, -30.0, 45.0 + 2 * ARCSEC, 45.0 + 20 * ARCSEC],
            "mag": [12.0, 11.0, 13.0, 14.0, 15.0, 16.0],
        }
    )
    src = pd.DataFrame(
        {
            "source_id": [1, 2, 3, 4],
            "ra": [0.0, 200.0 + 4 * ARCSEC / np.cos(np.radians(30.0)), 300.0, 50.0],
            "dec": [0.0, -30.0, 45.0, 0.0],
        }
    )
    got = _crossmatch(tmp_path, src, ref).sort_values("source_id").reset_index(drop=True)
    # source 1: stars 10 and 11 both 3" away (a tie: the smaller id), star 12 at 5" is not the second
    # of the 2-nearest query because 11 is; source 2: one star at 4"; source 3: 2" (31 is 20" away: none
    # second); source 4: nothing within 9"
    assert got["source_id"].tolist() == [1, 2, 3]
    assert got["ref_id"].tolist() == [10, 20, 30]
    assert got["sep_arcsec"].to_numpy() == pytest.approx([3.0, 4.0, 2.0], abs=1e-6)
    assert got["neighbour_mag"].iloc[0] == 12.0 and got["neighbour_sep"].iloc[0] == pytest.approx(3.0, abs=1e-6)
    assert np.isnan(got["neighbour_mag"].iloc[1]) and np.isnan(got["neighbour_sep"].iloc[2])


@pytest.mark.parametrize(
    "where, src_order, ref_order",
    [("ra_wrap", 2, 4), ("pole", 2, 4), ("ra_wrap", 4, 2), ("pole", 5, 5)],
)
def test_same_pairs_as_brute_force_at_the_wrap_and_the_pole(tmp_path, where, src_order, ref_order):
    rng = np.random.default_rng(3)
    n_ref, n_src = 400, 600
    if where == "ra_wrap":
        ra_ref, dec_ref = rng.uniform(-0.05, 0.05, n_ref) % 360.0, rng.uniform(-0.05, 0.05, n_ref)
    else:
        ra_ref, dec_ref = rng.uniform(0, 360, n_ref), rng.uniform(89.95, 90.0, n_ref)
    ref = pd.DataFrame(
        {"ref_id": np.arange(n_ref) + 1000, "ra": ra_ref, "dec": dec_ref, "mag": rng.uniform(8, 15, n_ref)}
    )
    pick = rng.integers(0, n_ref, n_src)
    dec = np.clip(dec_ref[pick] + rng.normal(0, 3 * ARCSEC, n_src), -90, 90)
    ra = (ra_ref[pick] + rng.normal(0, 3 * ARCSEC, n_src) / np.maximum(np.cos(np.radians(dec)), 1e-3)) % 360.0
    src = pd.DataFrame({"source_id": np.arange(n_src), "ra": ra, "dec": dec})
    got = _crossmatch(tmp_path, src, ref, src_order, ref_order).sort_values("source_id").reset_index(drop=True)
    want = _brute_force(src, ref).sort_values("source_id").reset_index(drop=True)
    assert len(got) > 0.9 * n_src
    assert got["source_id"].tolist() == want["source_id"].tolist()
    assert got["ref_id"].tolist() == want["ref_id"].tolist()
    assert got["sep_arcsec"].to_numpy() == pytest.approx(want["sep_arcsec"].to_numpy(), abs=1e-6)
    assert np.allclose(got["neighbour_sep"], want["neighbour_sep"], atol=1e-6, equal_nan=True)
    assert np.allclose(got["neighbour_mag"], want["neighbour_mag"], equal_nan=True)


@pytest.mark.parametrize(
    "frames",
    [[2, 3, 4], [2, 5, 9], [2, 5, 2**40]],  # a run of ids, a short span (a table), a long span (binary search)
)
def test_a_partitions_rows_and_counts_of_the_batch_frames(tmp_path, frames):
    import pyarrow as pa
    import pyarrow.parquet as pq

    fid = np.array([1, 2, 2, 3, 5, 5, 5, 8, 9, 2**40, 2**40 + 1], np.int64)
    table = pa.table({"frame_id": fid, "ra": np.arange(fid.size, dtype=float), "dec": np.zeros(fid.size)})
    pq.write_table(table, tmp_path / "part.parquet", row_group_size=4)
    spec = pixel_match.MatchSpec(
        frame_ids=np.array(frames[::-1] + frames[:1]),  # any order, repeats: the spec sorts them
        source_columns=("frame_id", "ra", "dec"),
        source_schema=table.schema,
        ref_columns=("ref_id", "ra", "dec", "mag"),
        radius_arcsec=RADIUS,
        mag="mag",
    )
    rows = pixel_match._batch_rows(tmp_path / "part.parquet", ["ra", "frame_id"], spec)
    want = np.isin(fid, frames)
    assert rows.column_names == ["ra", "frame_id"] and rows["ra"].to_pylist() == np.flatnonzero(want).tolist()
    task = pixel_match.PartitionTask(0, 0, tmp_path / "part.parquet", ())
    ids, counts = pixel_match.count_partition(task, spec)
    expected = pd.Series(fid[want]).value_counts().sort_index()
    assert ids.tolist() == expected.index.tolist() and counts.tolist() == expected.tolist()


def test_a_workers_indexed_stars_are_reused_until_their_files_change(tmp_path, monkeypatch):
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(path, n, seed):
        rng = np.random.default_rng(seed)
        stars = {"ref_id": np.arange(n), "ra": rng.uniform(0, 1, n), "dec": rng.uniform(0, 1, n), "mag": np.ones(n)}
        pq.write_table(pa.table(stars), path)

    columns = ("ref_id", "ra", "dec", "mag")
    write(tmp_path / "a.parquet", 100, 1)
    write(tmp_path / "m.parquet", 10, 2)
    monkeypatch.setattr(pixel_match, "_star_cache", pixel_match.OrderedDict())
    first = pixel_match._stars(tmp_path / "a.parquet", tmp_path / "m.parquet", columns)
    assert first[1].n == 110 and first[0]["ref_id"].tolist()[-10:] == list(range(10))  # the margin's after
    assert pixel_match._stars(tmp_path / "a.parquet", tmp_path / "m.parquet", columns) is first  # read once
    write(tmp_path / "a.parquet", 120, 3)  # imported again: another file at the same path
    os.utime(tmp_path / "a.parquet", ns=(1, 1))
    again = pixel_match._stars(tmp_path / "a.parquet", tmp_path / "m.parquet", columns)
    assert again is not first and again[1].n == 130
    # the least recently used go once the cache holds more stars than its bound (the newest always stays)
    monkeypatch.setattr(pixel_match, "STAR_CACHE_ROWS", 150)
    write(tmp_path / "b.parquet", 40, 4)
    pixel_match._stars(tmp_path / "b.parquet", None, columns)
    assert [k[0][0][0] for k in pixel_match._star_cache] == [str(tmp_path / "b.parquet")]
