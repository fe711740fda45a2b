"""LAKE/objects built partition by partition: on a dask cluster exactly as in this process, objects on
partition edges whole and owned once, and an update that reads only what changed (the report's read
counters, not times)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from skylake.lake import Lake, hats_meta
from skylake.objects.build import OBJECTS, build_objects, objects_dataset
from skylake.testing.detections import commit_night, random_stars
from hats.pixel_math.spatial_index import compute_spatial_index
from test_objects import N_FRAMES, _corner_field, _edge_distance_arcsec


def _table(lake) -> pd.DataFrame:
    t = objects_dataset(lake).to_table().to_pandas()
    t["lc"] = t["lc"].map(str)  # nested light curves compared exactly, as text
    return t.sort_values("object_id").reset_index(drop=True)


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
    for a, b in zip(reports, cluster_reports):
        assert (a.objects, a.objects_new, a.detections, a.partitions, a.partitions_rewritten) == \
               (b.objects, b.objects_new, b.detections, b.partitions, b.partitions_rewritten)
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


def test_a_table_built_before_the_watermark_is_updated_then_kept_per_night(tmp_path):
    """A table whose state has no watermark (skylake_frames.parquet, as builds before it wrote) is
    compared with every frame once, then kept per night: the update equals a rebuild."""
    import json
    import shutil

    import pyarrow as pa

    from skylake.objects.build import FRAMES_FILE, FRAMES_SCHEMA, STATE_FILE, read_held

    rng = np.random.default_rng(9)
    lake = Lake.init(tmp_path / "lake")
    stars = _corner_field(rng, 300)
    commit_night(lake, stars, "2026-04-01", N_FRAMES, rng)
    build_objects(lake)
    # the old layout: one held file without nights or pixels, settings without a watermark
    held = read_held(lake)
    pq.write_table(pa.Table.from_pandas(held[FRAMES_SCHEMA.names], schema=FRAMES_SCHEMA, preserve_index=False),
                   lake.path(f"{OBJECTS}/{FRAMES_FILE}"))
    shutil.rmtree(lake.path(f"{OBJECTS}/skylake_frames"))
    state = json.loads(lake.store.read_bytes(f"{OBJECTS}/{STATE_FILE}"))
    lake.store.write_bytes(f"{OBJECTS}/{STATE_FILE}", json.dumps({k: state[k] for k in ("refcat", "radius_arcsec")}).encode())
    commit_night(lake, stars.iloc[::2], "2026-04-02", N_FRAMES, rng)
    update = build_objects(lake)
    assert update.frames_added == N_FRAMES and update.read["nights"] == 0  # no watermark: every night read once
    assert len(read_held(lake)) == 2 * N_FRAMES and build_objects(lake).commit is None
    updated = _table(lake)
    build_objects(lake, rebuild=True)
    pd.testing.assert_frame_equal(updated, _table(lake))
