"""LAKE/objects and LAKE/lightcurves stay consistent in the corners: an object that moved across a
partition edge, a rebuild's metadata, readers during a publish, statistics equal to those of the stored
(float32) points, an object observed far more often than its neighbours, a recalibration that reaches
only its own partitions, and snapshots of past versions. SYNTHETIC detections
(skylake.synthetic.detections), one star or a few hundred, each test a few seconds."""

from __future__ import annotations

import datetime as dt
import glob

import healpy as hp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hats.pixel_math import HealpixPixel

from skylake.lake import Lake, faults, hats_meta, open_lake
from skylake.lake.tables import LIGHTCURVES, OBJECTS, ZEROPOINTS
from skylake.objects.build import build_objects
from skylake.objects.files import lightcurves_dataset, objects_dataset
from skylake.objects.query import light_curve
from skylake.objects.summary import summarise
from skylake.schema import table_schema
from skylake.sphere import vector_to_radec
from skylake.synthetic.detections import commit_night, random_stars

ORDER, PIXEL = 5, 5000  # the lake's default partition order; a pixel of it


def _edge():
    """``at(x)``: the point x arcsec inside PIXEL (negative: outside, in its neighbour) from the middle of
    one of its edges; and that neighbour."""
    nside = 1 << ORDER
    mid = hp.boundaries(nside, PIXEL, step=2, nest=True).T[1]  # corners and mid-edges: [1] is a mid-edge
    mid = mid / np.linalg.norm(mid)
    centre = np.array(hp.pix2vec(nside, PIXEL, nest=True))
    inward = centre - mid * (centre @ mid)
    inward /= np.linalg.norm(inward)

    def at(arcsec: float) -> tuple[float, float]:
        v = mid + inward * np.radians(arcsec / 3600.0)
        ra, dec = vector_to_radec((v / np.linalg.norm(v))[None])
        return float(ra[0]), float(dec[0])

    other = int(hp.ang2pix(nside, *at(-1.0), lonlat=True, nest=True))
    assert other != PIXEL and hp.ang2pix(nside, *at(1.0), lonlat=True, nest=True) == PIXEL
    return at, other


def _star(at, *arcsec) -> pd.DataFrame:
    pos = [at(x) for x in arcsec]
    return pd.DataFrame({"ra": [p[0] for p in pos], "dec": [p[1] for p in pos], "mag": np.full(len(pos), 12.0)})


def _moved_star_lake(root):
    """One star whose first night puts its object in the neighbour (1" outside PIXEL) and whose second
    night (8 frames, 1" inside) moves it into PIXEL: the neighbour keeps its 4 earliest points and, with no
    object left there, is no longer an objects partition."""
    at, other = _edge()
    rng = np.random.default_rng(0)
    lake = Lake.init(root)
    commit_night(lake, _star(at, -1.0), "2026-05-01", 4, rng, pos_err_arcsec=0.01)
    build_objects(lake)
    commit_night(lake, _star(at, 1.0), "2026-05-02", 8, rng, pos_err_arcsec=0.01)
    build_objects(lake)
    assert hats_meta.read_partitions(lake.store, OBJECTS) == [HealpixPixel(ORDER, PIXEL)]
    assert HealpixPixel(ORDER, other) in hats_meta.read_partitions(lake.store, LIGHTCURVES)
    return lake, at, rng


def _calibrate(lake, frame_ids, zp: float, refcat: str = "cat"):
    """Commit an ok zeropoint ``zp`` against ``refcat`` for ``frame_ids`` (no matches: mag = inst_mag + zp)."""
    frames = lake.read_frames(columns=["frame_id", "night"]).to_pandas()
    frames = frames[frames["frame_id"].isin(frame_ids)]
    n = len(frames)
    with lake.transaction("calibrate") as tx:
        cols = {
            "frame_id": frames["frame_id"].to_numpy(np.int64),
            "refcat": [refcat] * n,
            "calib_key": ["k"] * n,
            "flux": ["flux_auto"] * n,
            "apcor": np.zeros(n, np.float32),
            "zp": np.full(n, zp),
            "zp_err": np.full(n, 0.0005, np.float32),
            "zp_status": ["ok"] * n,
            "batch_id": [tx.batch_id] * n,
            "calibrated_at": [dt.datetime.now(dt.UTC)] * n,
        }
        schema = table_schema(ZEROPOINTS)
        rows = pa.Table.from_arrays(
            [pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type) for f in schema], schema=schema
        )
        tx.stage_nights(ZEROPOINTS, rows, frames["night"].tolist())
        tx.commit()


def _points(lake) -> pd.DataFrame:
    t = lightcurves_dataset(lake).to_table()
    return t.to_pandas().assign(
        ref_id=t.column("ref_id").to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get).array
    )


def test_an_exact_pass_reads_points_left_in_a_partition_that_lost_its_objects(tmp_path):
    """An object that moved into PIXEL left its earliest points in the neighbour, which then holds no
    object (so it is not in LAKE/objects' partition_info). The next exact pass of PIXEL (its points grew
    past 1.25 x) must still count them: n_det is every point of the object, as light_curve returns."""
    lake, at, rng = _moved_star_lake(tmp_path / "lake")
    commit_night(lake, _star(at, 1.0), "2026-05-03", 12, rng, pos_err_arcsec=0.01)
    report = build_objects(lake)
    assert report.objects_exact == 1  # its points grew past 1.25 x those its order statistics describe
    row = objects_dataset(lake).to_table().to_pandas()
    points = _points(lake)
    assert len(row) == 1 and len(points) == 4 + 8 + 12
    assert light_curve(lake, float(row["ra"][0]), float(row["dec"][0]), 5.0).shape[0] == 24
    assert int(row["n_det"][0]) == 24 and int(row["n"][0]) == 24  # got 20: the neighbour's 4 points were not read


def test_a_rebuild_writes_lightcurves_metadata_of_its_own_points(tmp_path):
    """After --rebuild, LAKE/lightcurves' properties total_rows and skymap count the points once (the
    rebuild removes every old file, so the old skymap must not be the starting point)."""
    import hats

    rng = np.random.default_rng(1)
    lake = Lake.init(tmp_path / "lake")
    commit_night(lake, random_stars(200, (150.0, 150.4), (20.0, 20.4), rng), "2026-05-01", 4, rng)
    assert build_objects(lake).points == 800
    report = build_objects(lake, rebuild=True)
    rows = lightcurves_dataset(lake).count_rows()
    assert rows == 800
    assert int(hats_meta.read_skymap(lake.store, LIGHTCURVES).sum()) == rows  # got 1600
    assert hats.read_hats(lake.path(LIGHTCURVES)).catalog_info.total_rows == rows
    assert report.points == rows


def _spy_publish(monkeypatch, lake, table: str, column: str) -> list:
    """Every fault point the commit passes: (name, rows, distinct ``column`` values) a reader listing
    ``table``'s directories would see then."""
    seen = []
    original = faults.point

    def spy(name):
        files = glob.glob(lake.path(f"{table}/dataset") + "/**/*.parquet", recursive=True)
        ids = np.concatenate(
            [pq.read_table(f, columns=[column]).column(column).to_numpy() for f in files] + [np.empty(0, np.int64)]
        )
        seen.append((name, len(ids), len(np.unique(ids))))
        original(name)

    monkeypatch.setattr(faults, "point", spy)
    return seen


def test_readers_never_see_a_light_curve_point_twice_while_a_rebuild_publishes(tmp_path, monkeypatch):
    """A rebuild files the moved object's 4 early points under its present partition: rows move between
    directories, so LAKE/lightcurves may not be published directory by directory (``tx.rows_stay``)."""
    lake, _, _ = _moved_star_lake(tmp_path / "lake")
    seen = _spy_publish(monkeypatch, lake, LIGHTCURVES, "source_id")
    build_objects(lake, rebuild=True)
    dupes = [(name, rows - distinct) for name, rows, distinct in seen if rows != distinct]
    assert dupes == []  # got [('swapped', 4), ('mid_publish', 4), ...]: 16 rows, 12 points


def test_readers_never_see_an_object_twice_while_it_moves_between_partitions(tmp_path, monkeypatch):
    """(Older than the change, same rule of Transaction._swaps.) An object moving from a partition that only
    loses files into one that is rewritten: the two directories are swapped one after the other."""
    at, _ = _edge()
    rng = np.random.default_rng(0)
    lake = Lake.init(tmp_path / "lake")
    commit_night(lake, _star(at, -1.0, 600.0), "2026-05-01", 4, rng, pos_err_arcsec=0.01)  # and a star deep in PIXEL
    build_objects(lake)
    commit_night(lake, _star(at, 1.0), "2026-05-02", 8, rng, pos_err_arcsec=0.01)
    seen = _spy_publish(monkeypatch, lake, OBJECTS, "object_id")
    build_objects(lake)
    assert [(name, rows - distinct) for name, rows, distinct in seen if rows != distinct] == []


def test_statistics_are_those_of_the_stored_points_when_calibrated(tmp_path):
    """The objects rows must be reproducible from LAKE/lightcurves: the update computes them from the
    float64 ``inst_mag + zp`` and its error, but stores float32 (the exact pass then gives other values)."""
    rng = np.random.default_rng(5)
    lake = Lake.init(tmp_path / "lake")
    commit_night(lake, random_stars(50, (150.0, 150.1), (20.0, 20.1), rng), "2026-02-01", 4, rng, mag_err=0.001)
    _calibrate(lake, lake.read_frames(columns=["frame_id"]).column("frame_id").to_pylist(), 20.1234567)
    build_objects(lake)
    rows = objects_dataset(lake).to_table().to_pandas().set_index("object_id").sort_index()
    assert (rows["stats_mag"] == "mag").all()
    whole = summarise(_points(lake), "cat").to_pandas().set_index("object_id").sort_index()
    # not rounding: the spread statistics of bright stars differ by 0.1-0.5 % (std_mag 7e-4, chi2_dof 1.4e-3,
    # mad_mag 2e-3, stetson_j 4.5e-3 relative), as the mean does by 2.5e-7 mag
    for c in ["std_mag", "chi2_dof", "mad_mag", "stetson_j"]:
        np.testing.assert_allclose(rows[c].to_numpy(float), whole[c].to_numpy(float), rtol=1e-4, atol=0, err_msg=c)


def test_a_heavily_observed_object_keeps_current_order_statistics(tmp_path):
    """schemas/objects.yaml: "the order statistics are never staler than 1/5 of the points". The refresh
    rule sums a whole partition, so one object followed up night after night (its partition's other
    objects not) keeps median/MAD/Stetson J of its first 4 points out of 16."""
    rng = np.random.default_rng(3)
    lake = Lake.init(tmp_path / "lake")
    stars = random_stars(200, (150.0, 150.2), (20.0, 20.2), rng)
    commit_night(lake, stars, "2026-05-01", 4, rng)
    build_objects(lake)
    for k in range(2, 5):
        commit_night(lake, stars.iloc[:1], f"2026-05-0{k}", 4, rng)
        build_objects(lake)
    table = objects_dataset(lake).to_table().to_pandas()
    followed = table.loc[table["n"].idxmax()]
    assert followed["n"] == 16
    assert followed["n"] <= 1.25 * followed["n_exact"]  # n_exact is 4


def test_a_recalibration_elsewhere_does_not_make_every_partition_read_its_history(tmp_path):
    """Two fields in partitions far apart; a new night over field A and a recalibration of field B's frames
    in one update. Only B holds stale points: A's task should merge (reading none of its history), not be
    recomputed from whole light curves because the update has a ``stale`` frame somewhere."""
    rng = np.random.default_rng(7)
    lake = Lake.init(tmp_path / "lake")
    field_a = random_stars(100, (150.0, 150.2), (20.0, 20.2), rng)
    field_b = random_stars(100, (30.0, 30.2), (-40.2, -40.0), rng)
    commit_night(lake, field_a, "2026-05-01", 4, rng)
    frames_a = lake.read_frames(columns=["frame_id"]).column("frame_id").to_pylist()
    commit_night(lake, field_b, "2026-05-01", 4, rng)
    frames_b = sorted(set(lake.read_frames(columns=["frame_id"]).column("frame_id").to_pylist()) - set(frames_a))
    _calibrate(lake, frames_a + frames_b, 20.0)
    first = build_objects(lake)
    assert first.partitions == 2
    commit_night(lake, field_a, "2026-05-02", 1, rng)  # a quarter more points in A: merged, not refreshed
    _calibrate(lake, frames_b, 20.1)
    report = build_objects(lake)
    assert report.frames_added == 1 and report.frames_updated == 4
    assert report.partitions_exact == 1  # got 2: A's whole history read too
    assert report.read["points_rows"] == 400  # B's points only


def test_a_snapshot_reads_the_light_curves_of_its_version(tmp_path):
    """(Older than the change for LAKE/objects; now LAKE/lightcurves too.) ``open_lake(url, version=N)``
    reads the rows of commit N, but the objects readers list the live directories: a light curve asked of
    a snapshot silently holds the points added since."""
    rng = np.random.default_rng(1)
    lake = Lake.init(tmp_path / "lake")
    stars = random_stars(5, (150.0, 150.01), (20.0, 20.01), rng)
    commit_night(lake, stars, "2026-05-01", 4, rng)
    version = build_objects(lake).commit
    commit_night(lake, stars, "2026-05-02", 4, rng)
    build_objects(lake)
    then = open_lake(lake.url, version=version)
    assert lightcurves_dataset(then).count_rows() == 20  # got 40
    assert len(light_curve(then, float(stars["ra"][0]), float(stars["dec"][0]), 3.0)) == 4  # got 8
