"""LAKE/objects and LAKE/lightcurves built partition by partition: on a dask cluster exactly as in this
process, objects on partition edges whole and owned once, an update that reads only what changed (the
report's read counters, not times), incremental statistics equal to a rebuild's, and a table of the
older layout refused with what to do. SYNTHETIC detections."""

from __future__ import annotations

import posixpath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hats.pixel_math.spatial_index import compute_spatial_index
from test_objects import N_FRAMES, _corner_field, _edge_distance_arcsec

from skylake.lake import Lake, hats_meta
from skylake.lake.tables import LIGHTCURVES
from skylake.objects.build import OBJECTS, ObjectsError, build_objects
from skylake.objects.files import lightcurves_dataset, objects_dataset
from skylake.objects.summary import MOMENT_COLUMNS, ORDER_COLUMNS
from skylake.synthetic.detections import commit_night, random_stars


def _table(lake) -> pd.DataFrame:
    t = objects_dataset(lake).to_table().to_pandas()
    return t.sort_values("object_id").reset_index(drop=True)


def _points(lake) -> pd.DataFrame:
    t = lightcurves_dataset(lake).to_table().to_pandas().drop(columns=["Dir"])
    return t.sort_values("source_id").reset_index(drop=True)


def _grow(root, client=None):
    """Three nights around a corner of four partitions, objects built after each (night 2 moves half the
    stars by 1" and adds new ones everywhere, so objects cross edges)."""
    rng = np.random.default_rng(5)
    lake = Lake.init(root)
    stars = _corner_field(rng, 800)
    reports = []
    commit_night(lake, stars, "2026-02-01", N_FRAMES, rng, pos_err_arcsec=0.7)
    reports.append(build_objects(lake, client=client))
    moved = stars.sample(frac=0.5, random_state=1).assign(ra=lambda s: s["ra"] + 1 / 3600)
    extra = random_stars(150, (stars["ra"].min(), stars["ra"].max()), (stars["dec"].min(), stars["dec"].max()), rng)
    commit_night(lake, pd.concat([moved, extra], ignore_index=True), "2026-02-02", N_FRAMES, rng, pos_err_arcsec=1.0)
    reports.append(build_objects(lake, client=client))
    commit_night(lake, stars.sample(frac=0.3, random_state=2), "2026-02-03", 4, rng, pos_err_arcsec=1.5)
    reports.append(build_objects(lake, client=client))
    return lake, stars, reports


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return _grow(tmp_path_factory.mktemp("local") / "lake")


def test_cluster_build_equals_in_process(local, tmp_path, dask_client):
    lake, _, reports = local
    other, _, cluster_reports = _grow(tmp_path / "lake", client=dask_client)
    pd.testing.assert_frame_equal(_table(lake), _table(other))
    pd.testing.assert_frame_equal(_points(lake), _points(other))
    for a, b in zip(reports, cluster_reports):
        assert (a.objects, a.objects_new, a.detections, a.partitions, a.partitions_rewritten) == (
            b.objects,
            b.objects_new,
            b.detections,
            b.partitions,
            b.partitions_rewritten,
        )
    files = sorted(f.split("/", 2)[2] for f in lake.store.walk_files(f"{OBJECTS}/skylake_frames"))
    assert files == sorted(f.split("/", 2)[2] for f in other.store.walk_files(f"{OBJECTS}/skylake_frames"))
    for f in lake.store.walk_files(f"{OBJECTS}/skylake_frames"):
        assert pq.read_table(lake.path(f)).equals(pq.read_table(other.path(f)))


def test_edge_objects_are_whole_and_owned_once(local):
    lake, stars, _ = local
    table = objects_dataset(lake).to_table(columns=["object_id", "_healpix_29", "n_det", "Norder", "Npix"]).to_pandas()
    assert table["object_id"].is_unique and table["Npix"].nunique() == 4
    # each object sits in the partition of its mean position
    assert ((table["_healpix_29"].to_numpy() >> (2 * (29 - table["Norder"].to_numpy()))) == table["Npix"]).all()
    # stars on the boundary (the field's first rows): one object each, every night's detections in it
    from test_objects import _star_ids

    edge = stars.iloc[:20]
    ids = _star_ids(lake, edge)
    assert len(np.unique(ids)) == len(edge)
    assert (table.set_index("object_id").loc[ids, "n_det"] >= N_FRAMES).all()


def test_an_update_reads_only_the_new_frames(tmp_path):
    rng = np.random.default_rng(8)
    lake = Lake.init(tmp_path / "lake")
    stars = _corner_field(rng, 400)
    for k in range(3):  # an archive of three nights
        commit_night(lake, stars, f"2026-03-0{k + 1}", N_FRAMES, rng)
    first = build_objects(lake)
    assert first.read["frames_rows"] == 3 * N_FRAMES
    pixel = hats_meta.read_partitions(lake.store, OBJECTS)[0]
    h29 = np.asarray(compute_spatial_index(stars["ra"], stars["dec"]))
    inside = ((h29 >> (2 * (29 - pixel.order))) == pixel.pixel) & (_edge_distance_arcsec(stars, pixel) > 60)
    version = commit_night(lake, stars[inside].iloc[:50], "2026-03-09", 2, rng)
    added = [a for a in lake.log.read(version).adds if a.table == "sources"]
    update = build_objects(lake)
    # the frames of the new night only, the sources files its commit added, no other night's frames
    assert update.read["frames_rows"] == 2 and update.read["nights"] == 1
    assert update.read["sources_files"] == len(added) and update.frames_added == 2
    assert update.detections == 2 * 50 and update.objects == first.objects
    # one partition's file (the new night is inside it, far from its edges) and its margin's rows, not the table
    own = int(((h29 >> (2 * (29 - pixel.order))) == pixel.pixel).sum())
    assert own < update.read["objects_rows"] < first.objects
    assert update.partitions_rewritten == 1
    assert build_objects(lake).read["frames_rows"] == 0  # nothing changed: nothing read
    # and the held frames of the untouched nights were not rewritten
    held = lake.store.walk_files(f"{OBJECTS}/skylake_frames")
    assert len(held) == 4 and len(hats_meta.read_partitions(lake.store, OBJECTS)) == first.partitions


def test_updated_statistics_equal_those_of_the_whole_light_curves(local):
    """After three nights merged one update at a time, each object's row equals what its whole light
    curve (its LAKE/lightcurves points) gives: ids, positions, counts and moments to rounding; the order
    statistics where they are current (n_exact == n), and never staler than the refresh rule allows."""
    import pyarrow as pa

    from skylake.objects.summary import summarise

    lake, _, reports = local
    assert sum(r.partitions_exact for r in reports[1:]) < sum(r.partitions_rewritten for r in reports[1:])
    table = lightcurves_dataset(lake).to_table()
    points = table.to_pandas().assign(
        ref_id=table.column("ref_id").to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get).array
    )
    updated, whole = _table(lake), summarise(points, "").to_pandas().sort_values("object_id").reset_index(drop=True)
    assert updated["object_id"].tolist() == whole["object_id"].tolist()
    for c in ["ra", "dec", "pos_rms_arcsec", "n_det", "n_cal", "first_mjd", "last_mjd", *MOMENT_COLUMNS]:
        rtol = 1e-6 if updated[c].dtype == np.float32 else 1e-9  # pos_rms_arcsec is float32
        np.testing.assert_allclose(
            updated[c].to_numpy(float), whole[c].to_numpy(float), rtol=rtol, atol=1e-9, err_msg=c
        )
    current = (updated["n_exact"] == updated["n"]).to_numpy()
    assert current.any() and not current.all() and (updated["n_exact"] <= updated["n"]).all()
    for c in ORDER_COLUMNS:
        np.testing.assert_allclose(
            updated.loc[current, c].to_numpy(float),
            whole.loc[current, c].to_numpy(float),
            rtol=1e-9,
            atol=1e-12,
            err_msg=c,
        )
    by_part = updated.groupby("Npix")[["n", "n_exact"]].sum()
    assert (by_part["n"] <= 1.25 * by_part["n_exact"]).all()


def test_objects_are_recomputed_from_their_light_curves_once_their_points_grow_by_a_quarter(tmp_path):
    """Night after night on the same stars: an update merges the new points (reading none of the
    history) until an object's points pass 1.25 x those its order statistics describe; then that
    object's whole light curve is read (its own points only) and its statistics are current again. A
    star seen on every frame beside stars seen once a night is recomputed on its own schedule."""
    rng = np.random.default_rng(3)
    lake = Lake.init(tmp_path / "lake")
    stars = random_stars(300, (150.0, 150.4), (20.0, 20.4), rng)  # over two order-5 partitions
    commit_night(lake, stars, "2026-05-01", N_FRAMES, rng)
    assert build_objects(lake).partitions == 2
    seen = []
    for k in range(2, 9):  # each night adds 1/k of the points so far
        before = _table(lake).set_index("object_id")
        commit_night(lake, stars, f"2026-05-{k:02d}", N_FRAMES, rng)
        r = build_objects(lake)
        after = _table(lake).set_index("object_id")
        redone = after["n_exact"] != before["n_exact"]
        assert (after["n"] <= 1.25 * after["n_exact"]).all()
        # exactly the recomputed objects' stored points were read (their own, no other's), nothing else
        assert r.objects_exact == redone.sum() and r.read["points_rows"] == before.loc[redone, "n_det"].sum()
        assert (after.loc[redone, "n_exact"] == after.loc[redone, "n"]).all()
        seen.append(r.objects_exact)
    # the points after nights 2, 3, 4 are 2x, 1.5x, 1.33x those described: exact; after night 5 1.25x (not
    # past it): merged; night 6 1.5x of night 4's: exact; 7 merged, 8 exact
    # (two blended stars' objects, with other counts, run on their own schedule)
    assert [n > 250 for n in seen] == [True, True, True, False, True, False, True]
    # the size-tiered merge keeps each partition's light-curve files few
    assert len(lake.store.walk_files(f"{LIGHTCURVES}/dataset", ".parquet")) == 2 * 8

    # one star observed 8 times a night more: recomputed whenever it grows by a quarter, the others not
    from test_objects import _isolated

    one = stars.iloc[_isolated(stars, 20.0)[:1]]  # a star alone (its object has 64 points, all described)
    done = []
    for k in range(9, 12):  # 96 > 1.25 x 64: exact; 128 > 1.25 x 96: exact; 160 = 1.25 x 128: merged
        commit_night(lake, one, f"2026-05-{k:02d}", 4 * N_FRAMES, rng)
        r = build_objects(lake)
        done.append((r.objects_exact, r.read["points_rows"]))
    assert done == [(1, 64), (1, 96), (0, 0)]
    t = _table(lake).set_index("n_det")
    assert (t["n"] <= 1.25 * t["n_exact"]).all()


def test_a_table_of_the_older_layout_is_refused_with_what_to_do(tmp_path):
    """A table built before LAKE/lightcurves (its light curves nested in the rows) is not updated:
    the error says to rebuild it, and nothing changes until then."""
    import json

    from skylake.objects.build import STATE_FILE
    from skylake.objects.query import light_curve

    rng = np.random.default_rng(9)
    lake = Lake.init(tmp_path / "lake")
    stars = _corner_field(rng, 300)
    commit_night(lake, stars, "2026-04-01", N_FRAMES, rng)
    build_objects(lake)
    state = json.loads(lake.store.read_bytes(f"{OBJECTS}/{STATE_FILE}"))
    lake.store.write_bytes(
        f"{OBJECTS}/{STATE_FILE}", json.dumps({k: v for k, v in state.items() if k != "layout"}).encode()
    )
    commit_night(lake, stars.iloc[::2], "2026-04-02", N_FRAMES, rng)
    version = lake.log.latest().version
    for attempt in (lambda: build_objects(lake), lambda: light_curve(lake, stars["ra"][0], stars["dec"][0])):
        with pytest.raises(ObjectsError, match="older skylake.*--rebuild"):
            attempt()
    assert lake.log.latest().version == version
    report = build_objects(lake, rebuild=True)
    assert report.objects == len(stars)
    assert _table(lake)["n_det"].sum() == (len(stars) + len(stars.iloc[::2])) * N_FRAMES


def _wide_field(root, monkeypatch, grouped: bool) -> tuple[Lake, list]:
    """Frames 6 deg wide (sources at order 4) and objects at the lake's order 5: an objects build from
    scratch, then a night of a third of the stars merged in; the tasks' partition groups recorded."""
    from skylake.objects import build

    tasks, group = [], build.task_groups

    def record(keys, task_files, slots=1):
        groups = group(keys, task_files, slots) if grouped else [[k] for k in keys]
        tasks.append([len(g) for g in groups])
        return groups

    monkeypatch.setattr(build, "task_groups", record)
    rng = np.random.default_rng(5)
    lake = Lake.init(root)
    stars = random_stars(400, (30.0, 36.0), (-3.0, 3.0), rng)
    commit_night(lake, stars, "2026-02-01", 4, rng)
    build_objects(lake)
    commit_night(lake, stars.sample(frac=0.3, random_state=3), "2026-02-02", 2, rng)
    build_objects(lake)
    return lake, tasks


def test_partitions_reading_one_sources_partition_are_one_task_with_the_same_result(tmp_path, monkeypatch):
    """Objects partitions finer than the sources partition they lie in read the same files: they are one
    task (reading them once), and the tables are exactly those of one task per partition."""
    lake, tasks = _wide_field(tmp_path / "grouped", monkeypatch, grouped=True)
    alone, singles = _wide_field(tmp_path / "alone", monkeypatch, grouped=False)
    assert {p.order for p in hats_meta.read_partitions(lake.store, "sources")} == {4}
    assert {p.order for p in hats_meta.read_partitions(lake.store, OBJECTS)} == {5}
    # 19 objects partitions in 8 sources partitions: 8 tasks, not 19 (each group the order-5 pixels of one)
    assert tasks[0] == [1, 4, 3, 1, 4, 1, 4, 1] and singles[0] == [1] * 19
    assert sum(tasks[1]) == sum(singles[1]) and len(tasks[1]) < len(singles[1])
    pd.testing.assert_frame_equal(_table(lake), _table(alone))
    pd.testing.assert_frame_equal(_points(lake), _points(alone))


def test_task_groups_follow_the_coarsest_sources_partition_read():
    from skylake.objects.build import task_groups

    def key(order, pixel):
        return (order << 40) | pixel

    coarse = {"sources/dataset/Norder=3/Dir=0/Npix=277/a.parquet"}
    fine = {"sources/dataset/Norder=6/Dir=10000/Npix=17730/a.parquet"}
    keys = [key(5, 277 * 16 + 1), key(5, 277 * 16 + 2), key(5, 278 * 16), key(5, 9), key(5, 10)]
    files = {keys[0]: coarse, keys[1]: coarse | fine, keys[2]: set(), keys[3]: fine, keys[4]: fine}
    # the first two read one order-3 partition (the second a finer one too: the coarsest counts)
    assert task_groups(keys, files) == [[keys[0], keys[1]], [keys[2]], [keys[3]], [keys[4]]]
    # one in another order-3 pixel reading the same file is its own task (its ancestor differs)
    files[keys[2]] = coarse
    assert task_groups(keys, files) == [[keys[0], keys[1]], [keys[2]], [keys[3]], [keys[4]]]
    # the 64 order-6 pixels of one order-3 partition: at most MAX_GROUP (16) a task, fewer when the
    # cluster has more slots than that leaves busy (two tasks per slot)
    inside = [key(6, 277 * 64 + i) for i in range(64)]
    files = dict.fromkeys(inside, coarse)
    assert [len(g) for g in task_groups(inside, files)] == [16] * 4
    assert [len(g) for g in task_groups(inside, files, slots=8)] == [4] * 16
    assert sum(task_groups(inside, files, slots=100), []) == inside


def test_union_of_ranges():
    from skylake.objects.partition import _union

    lo, hi = _union(np.array([10, 0, 5, 30, 20]), np.array([12, 6, 8, 40, 30]))
    assert lo.tolist() == [0, 10, 20] and hi.tolist() == [8, 12, 40]
    lo, hi = _union(np.array([0, 1]), np.array([10, 2]))  # one inside another
    assert lo.tolist() == [0] and hi.tolist() == [10]


def test_rows_within_ranges_by_sorted_runs_and_one_by_one():
    """A view's rows: by binary searches in each sorted run (a partition's files one after another), by one
    search a value past 64 runs; both as within's mask, and _rows_of takes them (slices and a take) in order."""
    import pyarrow as pa

    from skylake.objects.files import rows_within, within
    from skylake.objects.partition import _rows_of

    rng = np.random.default_rng(5)
    lo, hi = np.array([10, 50, 70, 1000]), np.array([20, 60, 900, 1001])
    for runs in (1, 6, 200):
        h29 = np.concatenate([np.sort(rng.integers(0, 1100, 10_000 // runs)) for _ in range(runs)])
        inside = ((h29[:, None] >= lo) & (h29[:, None] < hi)).any(axis=1)
        assert rows_within(h29, lo, hi).tolist() == np.flatnonzero(inside).tolist()
        assert within(h29, lo, hi).tolist() == inside.tolist()
        table = pa.table({"h": h29, "i": np.arange(len(h29))})
        assert _rows_of(table, rows_within(h29, lo, hi)).column("i").to_pylist() == np.flatnonzero(inside).tolist()
    assert rows_within(np.empty(0, np.int64), lo, hi).tolist() == [] and not within(h29, lo[:0], hi[:0]).any()


def test_a_task_reads_the_sources_partitions_around_its_own_by_their_borders():
    """Sources directories that hold none of a task's partitions (nor lie in one) are read from the scan's
    border strips; one holding a partition, inside one, or not a partition directory is read whole."""
    from skylake.objects.build import _outside

    def f(order, pixel):
        return f"sources/{hats_meta.pixel_dir(order, pixel)}/batch.parquet"

    keys = [(5, 277 * 16 + 3), (5, 277 * 16 + 4)]
    files = [f(3, 276), f(3, 277), f(6, (277 * 16 + 3) * 4), f(6, 276 * 64), f(2, 69), "sources/other/x.parquet"]
    assert _outside(files, keys) == {posixpath.dirname(f(3, 276)), posixpath.dirname(f(6, 276 * 64))}


def test_unique_by_sorting_is_numpys():
    from skylake.objects.arrays import unique

    rng = np.random.default_rng(6)
    for values in (rng.integers(-50, 50, 1000), np.repeat(rng.integers(0, 1 << 40, 300), 7), np.array([3]), []):
        assert unique(values).tolist() == np.unique(values).tolist()


def test_one_collector_writes_every_hats_catalogs_metadata(tmp_path):
    """Sources, objects and light curves get their HATS metadata from the transaction's one collector
    (hats_meta.CatalogChange): each catalog's type and id column from its schema, its rows and partitions
    those on disk, read back by hats itself."""
    import hats
    import pyarrow.dataset as pads

    from skylake.lake.tables import FRAMES, SOURCES

    rng = np.random.default_rng(4)
    lake = Lake.init(tmp_path / "lake")
    stars = random_stars(300, (30.0, 33.0), (-1.5, 1.5), rng)
    commit_night(lake, stars, "2026-02-01", 3, rng)
    build_objects(lake)
    commit_night(lake, stars.sample(frac=0.5, random_state=1), "2026-02-02", 2, rng)
    build_objects(lake)
    expected = {
        SOURCES: ("source", "source_id"),
        OBJECTS: ("object", "object_id"),
        LIGHTCURVES: ("source", "source_id"),
    }
    for table, (kind, id_column) in expected.items():
        catalog = hats.read_hats(lake.path(table))
        files = lake.store.walk_files(f"{table}/dataset", ".parquet")
        rows = pads.dataset([lake.path(f) for f in files], format="parquet").count_rows()
        assert (catalog.catalog_info.catalog_type, catalog.catalog_info.hats_cols_survey_id) == (kind, id_column)
        assert catalog.catalog_info.total_rows == rows > 0, table
        assert {hats_meta.pixel_of(posixpath.relpath(f, table)) for f in files} == set(catalog.get_healpix_pixels())
        assert int(hats_meta.read_skymap(lake.store, table).sum()) == rows, table
    assert int(hats_meta.read_skymap(lake.store, OBJECTS).sum()) == _table(lake)["object_id"].nunique()
    with lake.transaction("check") as tx:
        with pytest.raises(ValueError, match="'frames' is not one HATS catalog"):
            tx.catalog(FRAMES)
        tx.catalog(OBJECTS)
        with pytest.raises(ValueError, match="started with fresh=False"):
            tx.catalog(OBJECTS, fresh=True)


def test_frame_rows_equal_pandas_get_indexer():
    """A detection's frame row by a lookup table of the frames' id span (narrow spans), by pandas otherwise:
    the same answer as ``pd.Index.get_indexer``, -1 for frames not in the table."""
    from skylake.objects.partition import _ID_TABLE, _frame_rows

    rng = np.random.default_rng(5)
    fid = rng.integers(0, 400, 5000)
    for ids in (
        rng.permutation(300)[:120] + 50,  # narrow span: the lookup table; ids below, inside and above
        np.array([7, 7 + 2 * _ID_TABLE, 100]),  # a span too wide for a table
        np.array([], np.int64),
    ):
        ids = ids.astype(np.int64)
        expected = pd.Index(ids).get_indexer(fid) if ids.size else np.full(len(fid), -1)
        assert np.array_equal(_frame_rows(ids, fid), expected)


def test_a_stagers_failed_write_is_raised_when_the_task_ends():
    """A partition task's files are written by a thread (Stager); a failed write must fail the task, not
    leave it returning files that are not on the disk."""
    from skylake.objects.partition import Stager

    class Full:
        written = []

        def write_bytes(self, rel, data, fsync=True):
            if rel == "b":
                raise OSError("No space left on device")
            self.written.append(rel)

    table = pa.table({"x": [1, 2]})
    with pytest.raises(OSError, match="No space left"), Stager(Full()) as stager:
        for rel in ("a", "b", "c"):
            stager.write(rel, table, 10)
    assert Full.written == ["a", "c"]  # every write was waited for, the failed one's error raised after
