"""The objects' array kernels made cheaper in the fourth round equal what they replace, bit for bit: the
packed stable argsort, row lengths by columns, rule 4 with centres of the repeated objects only, a rebuild's
light-curve order shared by the statistics and the filing of the points, and a partition's rows taken chunk
by chunk. Each against the former code (kept here as the reference) on random inputs with ties."""

from __future__ import annotations

import types

import numpy as np
import pyarrow as pa
import pytest

from skylake.objects.arrays import concat_ranges, row_norms, stable_argsort
from skylake.objects.associate import _detached, _detached_at, mean_positions
from skylake.objects.partition import _filed, _rows_of, _take
from skylake.objects.stats import by_group_then
from skylake.objects.summary import light_curve_order, summarise
from skylake.sphere import unit_vectors


def test_stable_argsort_is_numpys_stable_argsort():
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 17, 5000):
        for high in (3, 1000, 1 << 40):
            key = rng.integers(0, high, n)
            assert np.array_equal(stable_argsort(key), np.argsort(key, kind="stable"))
    # keys leaving no room for the positions, and negative keys: numpy's stable argsort itself
    big = rng.integers(0, 1 << 62, 1000) | (1 << 61)
    assert np.array_equal(stable_argsort(big), np.argsort(big, kind="stable"))
    negative = rng.integers(-50, 50, 1000)
    assert np.array_equal(stable_argsort(negative), np.argsort(negative, kind="stable"))
    small = rng.integers(0, 7, 1000).astype(np.int16)
    assert np.array_equal(stable_argsort(small), np.argsort(small, kind="stable"))


def test_row_norms_are_numpys_norms_bit_for_bit():
    rng = np.random.default_rng(4)
    xyz = unit_vectors(rng.uniform(0, 360, 10_000), rng.uniform(-90, 90, 10_000))
    diff = xyz - xyz[rng.permutation(len(xyz))] * (1 - 1e-9)
    for v in (xyz, diff, diff * 1e-7, np.zeros((3, 3)), np.empty((0, 3))):
        assert np.array_equal(row_norms(v), np.linalg.norm(v, axis=1))


def test_concat_ranges():
    assert concat_ranges(np.array([3, 10, 5, 0]), np.array([5, 12, 5, 1])).tolist() == [3, 4, 10, 11, 0]
    assert concat_ranges(np.empty(0, np.int64), np.empty(0, np.int64)).tolist() == []


def _detached_at_before(ids, xyz, frame_id, matched, target_id, target_xyz, todo):
    """The former rule 4 (every object's centre and every detection's distance)."""
    centre_id, centre_xyz = mean_positions(
        np.concatenate((target_id, ids[todo])), np.concatenate((target_xyz, xyz[todo]))
    )
    obj = np.searchsorted(centre_id, ids)
    return _detached(obj, frame_id, np.linalg.norm(xyz - centre_xyz[obj], axis=1), matched), obj


@pytest.mark.parametrize("seed", range(6))
def test_rule_4_with_the_repeated_objects_centres_only_equals_all_centres(seed):
    """Blended objects (two detections of one frame) among single ones, targets known or not, some
    detections matched; the same detached detections and object indices."""
    rng = np.random.default_rng(seed)
    n_obj, n = 300, 4000
    obj_ids = np.sort(rng.choice(1 << 40, n_obj, replace=False)).astype(np.int64) + 1
    ids = obj_ids[rng.integers(0, n_obj, n)]
    frame_id = rng.integers(0, 40, n) if seed % 2 else rng.permutation(n)  # many repeats, or none
    centres = unit_vectors(rng.uniform(10, 11, n_obj), rng.uniform(-1, 1, n_obj))
    xyz = centres[np.searchsorted(obj_ids, ids)] + rng.normal(0, 1e-6, (n, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    matched = rng.random(n) < 0.05
    known = rng.random(n_obj) < (0.5 if seed < 3 else 0.0)
    target_id, target_xyz = obj_ids[known], centres[known]
    todo = np.flatnonzero(~np.isin(ids, target_id) | (rng.random(n) < 0.3))
    lost, obj = _detached_at(ids, xyz, frame_id, matched, target_id, target_xyz, todo)
    lost_before, obj_before = _detached_at_before(ids, xyz, frame_id, matched, target_id, target_xyz, todo)
    assert np.array_equal(obj, obj_before)
    assert np.array_equal(lost, lost_before)
    assert lost.any() == (seed % 2 == 1)


def test_light_curve_order_is_the_lexsort_and_summarise_takes_it():
    rng = np.random.default_rng(7)
    n = 3000
    points = pa.table(
        {
            "object_id": rng.integers(0, 200, n).astype(np.int64) - 100,
            "source_id": rng.permutation(n).astype(np.int64) + 1,
            "mjd": rng.integers(0, 30, n).astype(np.float64) + 60000.0,  # ties in time within objects
            "ra": rng.uniform(10, 10.01, n),
            "dec": rng.uniform(0, 0.01, n),
            "mag": np.where(rng.random(n) < 0.5, rng.normal(15, 1, n), np.nan).astype(np.float32),
            "mag_err": rng.uniform(0.01, 0.1, n).astype(np.float32),
            "inst_mag": rng.normal(-8, 1, n).astype(np.float32),
            "inst_mag_err": rng.uniform(0.01, 0.1, n).astype(np.float32),
            "flags": rng.integers(0, 4, n).astype(np.int32),
            "ref_id": pa.array(rng.integers(1, 50, n), pa.int64(), mask=rng.random(n) < 0.8),
        }
    )
    cols = [points.column(c).to_numpy() for c in ("object_id", "mjd", "source_id")]
    order = light_curve_order(*cols)
    assert np.array_equal(order, np.lexsort(cols[::-1]))
    # without ties in time (one sort of packed ranks), with NaN and signed zeros (the lexsort)
    oid, sid = cols[0], cols[2]
    distinct = rng.permutation(n) + 0.5
    for mjd in (
        distinct,
        np.where(rng.random(n) < 0.1, np.nan, distinct),
        np.where(rng.random(n) < 0.1, -0.0, distinct),
    ):
        mjd = np.where(mjd == 0.5, 0.0, mjd)
        assert np.array_equal(light_curve_order(oid, mjd, sid), np.lexsort((sid, mjd, oid)))
    assert light_curve_order(oid[:1], cols[1][:1], sid[:1]).tolist() == [0]
    assert summarise(points, "cat", order=order).equals(summarise(points, "cat"))


def _filed_before(new: pa.Table, written: pa.Table) -> pa.Table:
    """The former filing of a partition's points (a sort of them by object rank, then time)."""
    rank = np.lexsort((written.column("object_id").to_numpy(), written.column("_healpix_29").to_numpy()))
    w_ids, w_h29 = written.column("object_id").to_numpy()[rank], written.column("_healpix_29").to_numpy()[rank]
    by_id = np.argsort(w_ids)
    ids = new.column("object_id").to_numpy()
    at = by_id[np.minimum(np.searchsorted(w_ids[by_id], ids), len(w_ids) - 1)]
    mine = np.flatnonzero(w_ids[at] == ids)
    mine = mine[by_group_then(at[mine], new.column("mjd").to_numpy()[mine], len(w_ids), stable=True)]
    column = new.schema.get_field_index("_healpix_29")
    return new.take(mine).set_column(column, "_healpix_29", pa.array(w_h29[at[mine]], pa.int64()))


@pytest.mark.parametrize("ties", [False, True])
def test_points_filed_from_their_light_curve_order_equal_those_sorted(ties):
    """Each object's run of the light-curve order, objects in their file order; an object written without a
    new point and points of objects not written (the margin's); with ties in time, the points are sorted."""
    rng = np.random.default_rng(11)
    n_obj, n = 120, 2500
    ids = rng.choice(10_000, n_obj, replace=False).astype(np.int64)
    point_obj = ids[rng.integers(0, n_obj, n)]
    # distinct times within an object unless ties are asked for
    mjd = rng.integers(0, 40, n) + 60000.0 if ties else rng.permutation(n) + 60000.0
    new = pa.table(
        {
            "_healpix_29": rng.integers(0, 1 << 40, n),
            "object_id": point_obj,
            "mjd": mjd,
            "source_id": rng.permutation(n).astype(np.int64),
        }
    )
    written_ids = np.r_[rng.choice(ids, 80, replace=False), 20_000]  # one without a point
    written = pa.table(
        {"object_id": written_ids, "_healpix_29": rng.integers(0, 50, len(written_ids)).astype(np.int64)}
    )
    by = light_curve_order(point_obj, mjd, new.column("source_id").to_numpy())
    assert _filed(new, written, by).equals(_filed_before(new, written))
    assert _filed(new, written).equals(_filed_before(new, written))


def test_rows_taken_chunk_by_chunk_equal_a_take():
    rng = np.random.default_rng(2)
    n = 20_000
    whole = pa.table({"i": np.arange(n), "x": rng.normal(size=n)})
    cuts = np.r_[0, np.sort(rng.choice(n, 6, replace=False)), n]
    chunked = pa.concat_tables([whole.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:])])
    for rows in (
        np.sort(rng.choice(n, 3000, replace=False)),
        np.r_[np.arange(100, 9000), np.sort(rng.choice(np.arange(9000, n), 50, replace=False))],
        np.empty(0, np.int64),
        np.array([n - 1]),
    ):
        assert _take(chunked, rows).equals(whole.take(rows))
        assert _rows_of(chunked, rows).equals(whole.take(rows))


def test_positions_are_numpys_searchsorted():
    from skylake.objects.arrays import positions

    rng = np.random.default_rng(8)
    uniq = np.unique(rng.integers(-(1 << 62), 1 << 62, 5000))
    values = uniq[rng.integers(0, len(uniq), 20_000)]
    assert np.array_equal(positions(uniq, values), np.searchsorted(uniq, values))
    strangers = np.r_[values, uniq[:3] + 1, uniq[-1] + 5]  # values not among them: where they would go
    assert np.array_equal(positions(uniq, strangers), np.searchsorted(uniq, strangers))
    assert positions(uniq, values[:0]).tolist() == []


def test_groups_are_split_where_that_evens_out_the_workers_ends():
    """Three large groups on two threads: one thread would run two of them; the second largest is split so
    that its smaller piece fills the other thread's end. Groups already even, or one thread, stay whole."""
    from skylake.objects.build import balanced_groups

    groups = [list(range(0, 13)), list(range(13, 26)), list(range(26, 39)), list(range(39, 45)), [45], [46]]
    sizes = {k: 250 for k in range(0, 13)} | {k: 210 for k in range(13, 45)} | {45: 20, 46: 5}
    out = balanced_groups(groups, sizes, 2)
    assert sorted(sum(out, [])) == list(range(47))  # every partition once, each piece in its group's order
    assert all(p == sorted(p) for p in out)
    assert len(out) == len(groups) + 1
    split = [p for p in out if p not in groups]
    assert len(split) == 2 and len(split[0]) + len(split[1]) == 13
    assert balanced_groups(groups, sizes, 1) == groups
    even = [list(range(0, 10)), list(range(10, 20))]
    assert balanced_groups(even, dict.fromkeys(range(20), 100), 2) == even
    assert balanced_groups([], {}, 2) == []


def test_points_are_staged_in_lz4_with_split_float_streams_and_read_back_equal():
    import io

    import pyarrow.parquet as pq

    from skylake.objects.files import POINTS_ENCODING
    from skylake.objects.partition import Stager

    written = {}

    class Store:
        def write_bytes(self, rel, data, fsync=True):
            written[rel] = data

    rng = np.random.default_rng(9)
    n = 25_000
    points = pa.table(
        {
            "ra": rng.uniform(0, 360, n),
            "dec": pa.array(rng.uniform(-90, 90, n), mask=rng.random(n) < 0.01),
            "inst_mag": rng.normal(-8, 1, n).astype(np.float32),
            "object_id": np.sort(rng.integers(0, 1000, n)),
        }
    )
    with Stager(Store()) as stager:
        stager.write("p.parquet", points, 10_000, **POINTS_ENCODING)
        stager.write("o.parquet", points, 10_000)
    meta = pq.ParquetFile(io.BytesIO(written["p.parquet"])).metadata
    assert meta.num_row_groups == 3
    chunks = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i) for i in range(4)}
    assert {c.compression for c in chunks.values()} == {"LZ4"}
    assert all("BYTE_STREAM_SPLIT" in chunks[c].encodings for c in ("ra", "dec", "inst_mag"))
    assert "BYTE_STREAM_SPLIT" not in chunks["object_id"].encodings
    assert chunks["ra"].statistics.has_min_max
    assert pq.ParquetFile(io.BytesIO(written["o.parquet"])).metadata.row_group(0).column(0).compression == "ZSTD"
    for name in ("p.parquet", "o.parquet"):
        assert pq.read_table(io.BytesIO(written[name])).equals(points)


def test_dir_rows_are_the_skymap_counts_inside_each_partition(monkeypatch):
    """The scans' order comes from the rows of each sources directory's partition in the sources' skymap."""
    from skylake.lake import hats_meta
    from skylake.objects import build

    skymap = np.zeros(12 * 4**hats_meta.SKYMAP_ORDER, np.int64)
    inner = 4 ** (hats_meta.SKYMAP_ORDER - 2)  # order-SKYMAP_ORDER pixels in an order-2 one
    skymap[5 * inner] = 7  # in order-2 pixel 5 (its first pixel)
    skymap[6 * inner - 1] = 3  # in order-2 pixel 5 (its last pixel)
    skymap[6 * inner] = 100  # in pixel 6, not 5
    monkeypatch.setattr(hats_meta, "read_skymap", lambda store, catalog: skymap)
    dirs = [
        f"sources/{hats_meta.pixel_dir(2, 5)}",
        f"sources/{hats_meta.pixel_dir(1, 1)}",  # order-1 pixel 1 holds order-2 pixels 4-7: 5 and 6
        f"sources/{hats_meta.pixel_dir(hats_meta.SKYMAP_ORDER + 1, 0)}",  # finer than the skymap
        "sources/dataset/not-a-partition",
    ]
    assert build._dir_rows(types.SimpleNamespace(store=None), dirs) == [10, 110, 0, 0]
