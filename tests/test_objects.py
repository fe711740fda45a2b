"""Objects and light curves (skylake.objects) on hand-made light curves and on SYNTHETIC detections
committed straight into lakes (skylake.synthetic.detections): exact statistics, association across
partition edges, incremental updates that leave untouched partitions alone, variables ranking on top,
the command line, and reading LAKE/objects with lsdb and DuckDB."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from scipy.spatial import cKDTree

from skylake.lake import Lake, hats_meta
from skylake.lake.tables import LIGHTCURVES
from skylake.objects.associate import associate, cluster, ref_object_ids
from skylake.objects.build import OBJECTS, ObjectsError, build_objects
from skylake.objects.query import light_curve
from skylake.objects.stats import CLIP_SIGMA, light_curve_stats
from skylake.objects.summary import summarise
from skylake.objects.truth import object_table, variable_ranks
from skylake.robust import MAD_TO_SIGMA
from skylake.schema import table_schema
from skylake.sphere import unit_vectors
from skylake.synthetic.detections import ZP, commit_night, random_stars

N_FRAMES = 8


# -- statistics ----------------------------------------------------------------------------------
def test_stats_match_hand_computed_values():
    # group 0: four points given out of time order (time order: 10.2, 9.9, 10.0, 10.1);
    # group 1: one point; group 2: a NaN magnitude and a zero error only (no usable point)
    group = np.array([0, 0, 0, 0, 1, 2, 2])
    mjd = np.array([3.0, 1.0, 2.0, 4.0, 1.0, 1.0, 2.0])
    mag = np.array([10.0, 10.2, 9.9, 10.1, 12.0, np.nan, 11.0])
    err = np.array([0.1, 0.1, 0.2, 0.1, 0.05, 0.1, 0.0])
    s = light_curve_stats(group, mjd, mag, err, 3)
    # by hand: mean 40.2/4; wmean (100*10 + 100*10.2 + 25*9.9 + 100*10.1) / 325 = 3277.5/325;
    # std sqrt(0.05/3); MAD median(.05,.15,.15,.05) = 0.1; chi2 = (0.846154^2 + 1.153846^2 + 0.923077^2
    # + 0.153846^2) / 3; J: d = sqrt(4/3) * (1.153846, -0.923077, -0.846154, 0.153846) in time order,
    # pairs -1.420118, 1.041420, -0.173570 -> (-1.191687 + 1.020500 - 0.416617) / 3
    expected = {
        "n": 4,
        "mean_mag": 10.05,
        "median_mag": 10.05,
        "wmean_mag": 10.0846154,
        "std_mag": 0.1290994,
        "mad_mag": 0.1,
        "chi2_dof": 0.9743590,
        "stetson_j": -0.1959347,
        "amplitude": 0.15,
    }
    for name, value in expected.items():
        assert s[name][0] == pytest.approx(value, rel=1e-5, abs=1e-9), name
        assert s[f"{name}_clip" if name != "n" else "n_clip"][0] == pytest.approx(value, rel=1e-5, abs=1e-9), name
    assert s["n"][1] == 1 and s["mean_mag"][1] == 12.0 and s["amplitude"][1] == 0.0
    assert np.isnan([s["std_mag"][1], s["chi2_dof"][1], s["stetson_j"][1]]).all()
    assert s["n"][2] == 0 and np.isnan(s["mean_mag"][2])


def test_four_sigma_clip_drops_only_the_outlier():
    mag = np.array([10.0, 10.01, 9.99, 10.0, 10.02, 9.98, 15.0])
    s = light_curve_stats(np.zeros(7, int), np.arange(7.0), mag, np.full(7, 0.01), 1)
    # median 10.0, MAD 0.01 -> sigma 0.014826: 15.0 is 337 sigma out, 10.02 is 1.35 sigma
    assert s["n"][0] == 7 and s["n_clip"][0] == 6
    assert s["amplitude"][0] == pytest.approx(2.51) and s["amplitude_clip"][0] == pytest.approx(0.02)
    assert s["mean_mag_clip"][0] == pytest.approx(10.0) and s["median_mag_clip"][0] == pytest.approx(10.0)
    with pytest.raises(ValueError, match=r"group values must lie in 0..0, got 0..1"):
        light_curve_stats(np.array([0, 1]), np.zeros(2), np.zeros(2), np.ones(2), 1)


def test_clipped_stats_of_many_light_curves_are_those_of_their_kept_points():
    """Light curves the clip leaves whole keep their plain statistics and those it cuts are computed again
    (light_curve_stats does only these): each light curve's clipped statistics equal the plain statistics of
    its kept points alone, computed on their own, bit for bit."""
    rng = np.random.default_rng(3)
    n_groups = 60
    group = np.repeat(np.arange(n_groups), rng.integers(5, 30, n_groups))
    mjd = rng.permutation(len(group)).astype(float)  # out of time order
    mag = rng.normal(12.0, 0.01, len(group))
    outlier = rng.choice(len(group), 25, replace=False)  # some light curves cut, most not
    mag[outlier] += rng.choice([-1.0, 1.0], 25)
    err = np.full(len(group), 0.01)
    s = light_curve_stats(group, mjd, mag, err, n_groups)
    assert 0 < (s["n_clip"] < s["n"]).sum() < n_groups
    for g in range(n_groups):
        mine = group == g
        one = light_curve_stats(np.zeros(mine.sum(), int), mjd[mine], mag[mine], err[mine], 1)
        kept = mine.copy()
        kept[mine] = np.abs(mag[mine] - one["median_mag"][0]) <= CLIP_SIGMA * (MAD_TO_SIGMA * one["mad_mag"][0])
        alone = light_curve_stats(np.zeros(kept.sum(), int), mjd[kept], mag[kept], err[kept], 1)
        for name in ("n", "mean_mag", "median_mag", "wmean_mag", "std_mag", "mad_mag", "chi2_dof", "stetson_j"):
            clip = s[f"{name}_clip" if name != "n" else "n_clip"][g]
            assert clip == alone[name][0] or (np.isnan(clip) and np.isnan(alone[name][0])), (g, name)


def test_reference_ids_are_negative_stable_and_distinct():
    ids = ref_object_ids("tycho2", np.arange(200_000))
    assert (ids < 0).all() and len(np.unique(ids)) == 200_000
    assert ids[7] == ref_object_ids("tycho2", [7])[0] != ref_object_ids("gaia", [7])[0]
    # the documented encoding, in plain Python integers
    import hashlib

    mask = (1 << 64) - 1
    z = (123 + 0x9E3779B97F4A7C15 * int.from_bytes(hashlib.blake2b(b"tycho2", digest_size=8).digest(), "little")) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    assert ref_object_ids("tycho2", [123])[0] == -1 - ((z ^ (z >> 31)) >> 1) == -3227342648753361435


def test_chunked_clustering_equals_one_chunk():
    """Friends-of-friends in order-12 chunks (~52" pixels) with margins gives exactly the labels of one
    global pass, on clusters straddling many chunk edges."""
    rng = np.random.default_rng(3)
    centres = random_stars(3000, (40.0, 40.5), (10.0, 10.5), rng)
    centres = centres.iloc[_isolated(centres, 8.0)]
    ra = np.repeat(centres["ra"].to_numpy(), 4) + rng.normal(0, 0.5 / 3600, 4 * len(centres))
    dec = np.repeat(centres["dec"].to_numpy(), 4) + rng.normal(0, 0.5 / 3600, 4 * len(centres))
    from hats.pixel_math.spatial_index import compute_spatial_index

    h29 = np.asarray(compute_spatial_index(ra, dec), dtype=np.int64)
    source_id = rng.permutation(len(ra)).astype(np.int64) + 1
    chunked = cluster(h29, unit_vectors(ra, dec), source_id, 3.0, 12)
    whole = cluster(h29, unit_vectors(ra, dec), source_id, 3.0, 0)
    assert len(np.unique(h29 >> 34)) > 100  # many chunks
    np.testing.assert_array_equal(chunked, whole)
    assert len(np.unique(whole)) == len(centres)


def _associate(frame_id, dec_arcsec, known=(), known_dec_arcsec=(), source_id=None):
    """``associate`` on detections along one meridian (dec offsets in arcsec from (10, 20) deg), no
    reference matches, radius 3"; source ids frame_id * 2**20 + running number unless given."""
    from hats.pixel_math.spatial_index import compute_spatial_index

    frame_id = np.asarray(frame_id, np.int64)
    if source_id is None:
        source_id = frame_id * (1 << 20) + np.arange(len(frame_id))
    ra, dec = np.full(len(frame_id), 10.0), 20.0 + np.asarray(dec_arcsec, float) / 3600
    h29 = np.asarray(compute_spatial_index(ra, dec), dtype=np.int64)
    return associate(
        np.asarray(source_id, np.int64),
        frame_id,
        ra,
        dec,
        h29,
        np.zeros(len(ra), np.int64),
        np.asarray(known, np.int64),
        np.full(len(known), 10.0),
        20.0 + np.asarray(known_dec_arcsec, float) / 3600,
        3.0,
        5,
    )


def test_friends_of_friends_links_every_pair_within_the_radius():
    """80 detections, one per frame: 40 within 0.39" and 40 more 1.5" away. Every pair across is
    closer than the 3" link, so it is one object (each point's 16 nearest neighbours are all on its
    own side: a k-nearest-neighbour graph made two)."""
    offsets = np.r_[0.01 * np.arange(40), 1.5 + 0.01 * np.arange(40)]
    frames = np.arange(1, 81)
    ids = _associate(frames, offsets)
    np.testing.assert_array_equal(ids, np.full(80, 1 << 20))  # the smallest source_id: frame 1's
    xyz = unit_vectors(np.full(80, 10.0), 20.0 + offsets / 3600)
    labels = cluster(np.zeros(80, np.int64), xyz, frames * (1 << 20), 3.0, 0)
    assert (labels == 1 << 20).all()


def _brute_force_fof(xyz, source_id, link):
    """Friends-of-friends from every pair within ``link`` (quadratic memory: the reference answer)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(xyz)
    pairs = cKDTree(xyz).query_pairs(link, output_type="ndarray")
    _, comp = connected_components(
        coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)), directed=False
    )
    smallest = np.full(comp.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(smallest, comp, source_id)
    return smallest[comp]


def test_grid_friends_of_friends_equals_all_pairs_at_every_density():
    """Clumps of 1" to 300" scatter and lone points: the cell-grid friends-of-friends gives exactly the
    labels of the graph of all pairs; a star with 20 000 repeat detections within 1" (2e8 pairs) is
    one group without building its pairs."""
    from skylake.objects.associate import _fof_labels, chord

    rng = np.random.default_rng(3)
    link = chord(3.0)
    for _ in range(12):
        n = int(rng.integers(2, 2500))
        centres = rng.uniform([10.0, -5.0], [10.05, -4.95], (int(rng.integers(1, 15)), 2))
        which = rng.integers(0, len(centres), n)
        spread = rng.choice([1.0, 5.0, 30.0, 300.0]) / 3600
        xyz = unit_vectors(centres[which, 0] + rng.normal(0, spread, n), centres[which, 1] + rng.normal(0, spread, n))
        source_id = rng.permutation(n).astype(np.int64) * 7 + 3
        np.testing.assert_array_equal(_fof_labels(xyz, source_id, link), _brute_force_fof(xyz, source_id, link))
    dense = unit_vectors(100 + rng.normal(0, 0.3 / 3600, 20_000), 20 + rng.normal(0, 0.3 / 3600, 20_000))
    assert (_fof_labels(dense, np.arange(20_000, dtype=np.int64) + 5, link) == 5).all()


def test_a_detached_detection_never_keeps_the_clusters_id():
    """Frame 1 has two detections 1" apart and frame 2 one at 1.2": the cluster keeps frame 1's
    nearer one (1"), so the other (frame 1's smallest source_id, the cluster's label) becomes its own
    object and the cluster's id is the smallest source_id it keeps: no object has two points of a frame."""
    a, w, b = (1 << 20), (1 << 20) + 1, 2 << 20
    np.testing.assert_array_equal(_associate([1, 1, 2], [0.0, 1.0, 1.2], source_id=[a, w, b]), [a, w, w])


def test_a_recalibrated_founder_stays_with_its_object():
    """Object X = its founding detection's source_id, whose mean has moved 4.4" away (a slow mover).
    X's frame is recalibrated: X comes back with a new detection Y 1" from it. X stays in its object;
    Y, beyond 3" of every object, starts a new one with its own id, never X's (which would merge it
    into object X)."""
    x, y = (1 << 20) + 5, (9 << 20) + 2
    ids = _associate([1, 9], [0.0, -1.0], known=[x], known_dec_arcsec=[4.4], source_id=[x, y])
    np.testing.assert_array_equal(ids, [x, y])


def _flat(object_id, mjd, ref_id, refcat) -> pd.DataFrame:
    n = len(object_id)
    flat = pd.DataFrame({f: np.zeros(n) for f in table_schema(LIGHTCURVES).names})
    flat[["ra", "dec"]] = [10.0, 20.0]
    flat["mjd"], flat["inst_mag"], flat["inst_mag_err"], flat["mag"] = mjd, 12.0, 0.01, np.nan
    flat["frame_id"], flat["source_id"], flat["flags"] = np.arange(n), np.arange(n) + 1, 0
    return flat.assign(object_id=np.asarray(object_id, np.int64), refcat=refcat, ref_id=pd.array(ref_id, dtype="Int64"))


def test_summarise_takes_the_reference_identity_from_any_point():
    """A reference object whose earliest point is an unmatched detection (refcat "", ref_id null)
    keeps its star's identity (the first ref_id it has; ids past 2**53 exact); a cluster has none;
    no points give an empty objects table."""
    big = 2**60 + 1
    flat = _flat([-5, -5, -5, 7], [1.0, 2.0, 3.0, 1.5], [None, big, big, None], ["", "cat", "cat", ""])
    table = summarise(flat, "cat").to_pandas().set_index("object_id")
    assert table.loc[-5, "refcat"] == "cat" and table.loc[-5, "ref_id"] == big and table.loc[-5, "n_det"] == 3
    assert table.loc[7, "refcat"] == "" and pd.isna(table.loc[7, "ref_id"])
    # an object stored without its identity (every point "" / null) gets it back from a new matched point
    flat = _flat([-5, -5], [1.0, 2.0], [None, big], ["", ""])
    assert summarise(flat, "cat").column("ref_id").to_pylist() == [big]
    empty = summarise(flat.iloc[0:0], "cat")
    assert empty.num_rows == 0 and empty.schema.equals(table_schema(OBJECTS))


def _isolated(stars: pd.DataFrame, min_sep_arcsec: float) -> np.ndarray:
    """Rows of stars with no other star within ``min_sep_arcsec``."""
    xyz = unit_vectors(stars["ra"], stars["dec"])
    d, _ = cKDTree(xyz).query(xyz, k=2)
    return np.flatnonzero(d[:, 1] > np.radians(min_sep_arcsec / 3600))


# -- a lake of synthetic detections ----------------------------------------------------------------
def _corner_field(rng, n: int, half_deg: float = 0.3) -> pd.DataFrame:
    """Isolated stars around a corner of order-5 HEALPix pixels (four partitions meet there)."""
    corner = hp.boundaries(32, 5000, step=1, nest=True)[:, 0]
    ra0, dec0 = hp.vec2ang(corner, lonlat=True)
    stars = random_stars(n, (ra0[0] - half_deg, ra0[0] + half_deg), (dec0[0] - half_deg, dec0[0] + half_deg), rng)
    # and stars right on the pixel's boundary, whose detections scatter into two partitions
    edge_ra, edge_dec = hp.vec2ang(hp.boundaries(32, 5000, step=400, nest=True).T, lonlat=True)
    box = (np.abs(edge_ra - ra0[0]) < half_deg) & (np.abs(edge_dec - dec0[0]) < half_deg)
    on_edge = random_stars(int(box.sum()), (0, 1), (0, 1), rng).assign(ra=edge_ra[box], dec=edge_dec[box])
    stars = pd.concat([on_edge, stars], ignore_index=True)
    return stars.iloc[_isolated(stars, 10.0)].reset_index(drop=True)


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """Night 1: isolated stars around a partition corner, 5 of them variable; objects built. Night 2:
    only the stars of one partition, plus 3 new stars; objects updated. Returns what each step saw."""
    rng = np.random.default_rng(11)
    lake = Lake.init(tmp_path_factory.mktemp("objects") / "lake")
    stars = _corner_field(rng, 1500)
    stars.loc[:4, "amplitude"] = [0.05, 0.1, 0.2, 0.3, 0.5]
    stars.loc[:4, "period_d"] = [0.3, 0.25, 0.4, 0.35, 0.2]
    commit_night(lake, stars, "2026-02-01", N_FRAMES, rng, pos_err_arcsec=0.7)
    first = build_objects(lake)
    ids1 = _star_ids(lake, stars)
    files1 = {f: lake.store.fs.info(lake.path(f))["mtime"] for f in lake.store.walk_files(f"{OBJECTS}/dataset")}
    pixel = hats_meta.read_partitions(lake.store, OBJECTS)[0]
    h29 = np.asarray(__import__("hats").pixel_math.spatial_index.compute_spatial_index(stars["ra"], stars["dec"]))
    inside = (h29 >> (2 * (29 - pixel.order))) == pixel.pixel
    far = inside & (_edge_distance_arcsec(stars, pixel) > 60)  # night 2 stays clear of the other partitions
    extra = random_stars(3, (0, 1), (0, 1), rng)
    extra[["ra", "dec"]] = stars.loc[far, ["ra", "dec"]].to_numpy()[:3] + 30.0 / 3600  # 30" from known stars
    night2 = pd.concat([stars[far], extra], ignore_index=True)
    commit_night(lake, night2, "2026-02-02", N_FRAMES, rng)
    second = build_objects(lake)
    third = build_objects(lake)
    return {
        "lake": lake,
        "stars": stars,
        "far": far,
        "extra": extra,
        "pixel": pixel,
        "first": first,
        "second": second,
        "third": third,
        "ids1": ids1,
        "files1": files1,
    }


def _edge_distance_arcsec(stars, pixel) -> np.ndarray:
    """Distance of each star from the boundary of ``pixel`` (approximated by 400 boundary points)."""
    edge = hp.boundaries(1 << pixel.order, pixel.pixel, step=100, nest=True).T
    d, _ = cKDTree(edge).query(unit_vectors(stars["ra"], stars["dec"]))
    return np.degrees(d) * 3600


def _star_ids(lake, stars) -> np.ndarray:
    """object_id at each star (nearest object within 2")."""
    objects = object_table(lake)
    d, k = cKDTree(unit_vectors(objects["ra"], objects["dec"])).query(unit_vectors(stars["ra"], stars["dec"]))
    assert (np.degrees(d) * 3600 < 2).all()
    return objects["object_id"].to_numpy()[k]


def test_association_across_partition_edges(grown):
    lake, stars, first = grown["lake"], grown["stars"], grown["first"]
    assert first.partitions == 4 and first.objects == len(stars) and first.detections == len(stars) * N_FRAMES
    ids = grown["ids1"]
    assert len(np.unique(ids)) == len(stars)  # one object per star, none split at an edge...
    # ...including stars whose detections fell into two partitions
    flat = light_curve(lake, float(stars["ra"].mean()), float(stars["dec"].mean()), 3600)
    flat = flat[flat["mjd"] < flat["mjd"].min() + 1]  # night 1
    from hats.pixel_math.spatial_index import compute_spatial_index

    part = np.asarray(compute_spatial_index(flat["det_ra"], flat["det_dec"])) >> (2 * (29 - 5))
    spread = pd.Series(part).groupby(flat["object_id"].to_numpy()).nunique()
    assert (spread > 1).sum() >= 10 and (flat.groupby("object_id").size() == N_FRAMES).all()
    # positive ids are the first detection's source_id: frame 1's detection number = the star's row
    assert (ids > 0).all() and (ids == (1 << 20) + np.arange(len(stars))).all()


def test_second_night_attaches_without_touching_other_partitions(grown):
    lake, stars, far, second = grown["lake"], grown["stars"], grown["far"], grown["second"]
    assert second.frames_added == N_FRAMES and second.objects_new == 3
    assert second.partitions_rewritten == 1 and second.partitions == 4
    ids2 = _star_ids(lake, stars)
    np.testing.assert_array_equal(ids2, grown["ids1"])  # ids stable
    objects = object_table(lake).set_index("object_id")
    assert (objects.loc[ids2[far], "n"] == 2 * N_FRAMES).all() and (objects.loc[ids2[~far], "n"] == N_FRAMES).all()
    assert len(objects) == len(stars) + 3
    files2 = {f: lake.store.fs.info(lake.path(f))["mtime"] for f in lake.store.walk_files(f"{OBJECTS}/dataset")}
    pixel_dir = hats_meta.pixel_dir(grown["pixel"].order, grown["pixel"].pixel)
    untouched = {f: m for f, m in grown["files1"].items() if pixel_dir not in f}
    assert len(untouched) == 3 and all(files2.get(f) == m for f, m in untouched.items())
    assert not any(f in files2 for f in grown["files1"] if pixel_dir in f and f.endswith(".parquet"))
    assert grown["third"].commit is None and "up to date" in str(grown["third"])
    lc = light_curve(lake, float(stars.loc[far].iloc[0]["ra"]), float(stars.loc[far].iloc[0]["dec"]), 2.0)
    assert lc["object_id"].nunique() == 1 and len(lc) == 2 * N_FRAMES and lc["mjd"].is_monotonic_increasing
    assert (lc["inst_mag"] + ZP - stars.loc[far].iloc[0]["mag"]).abs().max() < 0.06
    assert lc["mag"].isna().all() and (lc["stats_mag"] == "inst_mag").all()  # nothing calibrated


def test_variables_rank_top_and_constants_do_not(grown):
    lake, stars = grown["lake"], grown["stars"]
    objects = object_table(lake)
    ids = grown["ids1"]
    ranks = variable_ranks(objects, ids[:5], N_FRAMES)
    assert (ranks[["rank_chi2_dof", "rank_stetson_j"]] <= 5).all().all(), ranks
    constants = objects[~objects["object_id"].isin(ids[:5])]
    assert 0.8 < constants["chi2_dof"].median() < 1.2  # errors of 0.01 mag, scatter 0.01 mag
    assert abs(constants["stetson_j"].median()) < 0.1 and constants["stetson_j"].max() < 1.0
    found = objects.set_index("object_id").loc[ids[:5]]
    # clipped semi-amplitude of a sparsely sampled sinusoid: at most A (+noise), most of A here
    assert (found["amplitude_clip"].to_numpy() < stars["amplitude"][:5].to_numpy() + 0.05).all()


def test_rebuild_and_settings(grown):
    lake = grown["lake"]
    with pytest.raises(ObjectsError, match=r"built with radius_arcsec=3.0, not 2.0"):
        build_objects(lake, radius_arcsec=2.0)
    ids = _star_ids(lake, grown["stars"])
    report = build_objects(lake, rebuild=True)
    assert report.frames_added == 2 * N_FRAMES and report.objects == len(grown["stars"]) + 3
    np.testing.assert_array_equal(_star_ids(lake, grown["stars"]), ids)  # a rebuild gives the same ids


def test_a_table_built_before_calibration_warns_once_calibrations_exist(grown, monkeypatch, caplog):
    """Built with no catalogue (nothing calibrated then): once frames are calibrated, an update says
    so and how to fix it, instead of silently staying uncalibrated."""
    import skylake.objects.build as build

    lake = grown["lake"]
    with caplog.at_level("WARNING", logger="skylake.objects.build"):
        build_objects(lake)
    assert not caplog.records  # nothing calibrated: nothing to say
    monkeypatch.setattr(build, "default_refcat", lambda lake: "tycho2")
    with caplog.at_level("WARNING", logger="skylake.objects.build"):
        report = build_objects(lake)
    assert report.commit is None and report.refcat == ""
    assert any(
        "without a reference catalogue" in r.message and "'tycho2'" in r.message and "--rebuild" in r.message
        for r in caplog.records
    ), caplog.text


def test_an_update_takes_the_variable_threshold_from_its_build_state(grown, monkeypatch):
    """The variable threshold is looked up in the lake (every frame row's profile: seconds on an archive of
    10^7 frames) only for a table whose build state has none, not at every update."""
    import skylake.objects.build as build

    def looked_up(lake):
        raise AssertionError("default_variable_fap was called")

    monkeypatch.setattr(build, "default_variable_fap", looked_up)
    assert "variable_fap" in build.read_state(grown["lake"])
    assert build_objects(grown["lake"]).commit is None  # nothing new: a no-op update


def test_readers_and_command_line(grown, tmp_path):
    import duckdb
    import lsdb

    lake, stars = grown["lake"], grown["stars"]
    ra, dec = float(stars["ra"][4]), float(stars["dec"][4])
    cat = lsdb.open_catalog(lake.path(OBJECTS))
    points = lsdb.open_catalog(lake.path(LIGHTCURVES))
    for star in (stars.iloc[0], stars[grown["far"]].iloc[0]):  # on a partition edge; inside, with 2 nights
        near = (
            cat.cone_search(ra=star["ra"], dec=star["dec"], radius_arcsec=3)
            .join_nested(points, left_on="object_id", right_on="object_id", nested_column_name="lc")
            .compute()
        )
        # an object's points are filed under its position: the join finds them all, even on an edge
        assert len(near) == 1 and len(near["lc"].iloc[0]) == near["n_det"].iloc[0] >= N_FRAMES
    con = duckdb.connect()
    n = con.execute(
        f"SELECT sum(n_det), count(*) FROM read_parquet('{lake.path(OBJECTS)}/dataset/*/*/*/*.parquet', "
        "hive_partitioning = true)"
    ).fetchone()
    assert n == (len(stars) * N_FRAMES + grown["far"].sum() * N_FRAMES + 3 * N_FRAMES, len(stars) + 3)
    csv, png = tmp_path / "lc.csv", tmp_path / "lc.png"
    out = run_cli(
        "lightcurve",
        lake.url,
        "--ra",
        str(ra),
        "--dec",
        str(dec),
        "--radius",
        "3",
        "--out",
        str(csv),
        "--plot",
        str(png),
    )
    assert out.returncode == 0, out.stderr
    assert "1 objects within 3 arcsec" in out.stdout and png.read_bytes()[:4] == b"\x89PNG"
    points = pd.read_csv(csv)
    assert len(points) >= N_FRAMES and points["object_id"].nunique() == 1
    out = run_cli("lightcurve", lake.url, "--ra", "0", "--dec", "-80")
    assert out.returncode == 4 and "no object within 5 arcsec" in out.stdout


@pytest.mark.parametrize("n_groups", [1, 300, 70_000], ids=["one", "radix", "lexsort"])
def test_group_order_and_medians_equal_lexsort(n_groups):
    """The statistics' grouped sort (radix on uint16 groups, lexsort past 2**16 groups, nothing when already in
    order) gives lexsort's order exactly where ties must keep the points' order (Stetson's time order), and the
    same per-group medians as sorting each group; exact answers from numpy's own sorts."""
    from skylake.objects.stats import _group_median, by_group_then

    rng = np.random.default_rng(n_groups)
    n = 200_000
    group = rng.integers(0, n_groups, n)
    key = np.round(rng.uniform(0, 5, n), 1)  # many ties
    assert np.array_equal(by_group_then(group, key, n_groups, stable=True), np.lexsort((key, group)))
    loose = by_group_then(group, key, n_groups)
    ref = np.lexsort((key, group))
    assert np.array_equal(group[loose], group[ref]) and np.array_equal(key[loose], key[ref])
    ordered = np.lexsort((key, group))
    assert np.array_equal(by_group_then(group[ordered], key[ordered], n_groups, stable=True), np.arange(n))
    values = rng.normal(12.0, 1.0, n)
    expected = np.full(n_groups, np.nan)
    for g, v in pd.Series(values).groupby(group):
        expected[g] = np.median(v.to_numpy())
    assert np.array_equal(_group_median(group, values, n_groups), expected, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32-keys", "float64-argsort"])
def test_group_medians_and_mads_equal_sorting_each_group(dtype):
    """Each group's median and MAD from one sort of the values (as uint64 keys when they are float32 numbers,
    as light-curve magnitudes are; else by argsort) and, for the MAD, a binary search between the two sorted
    halves of the deviations: the same values as numpy's median of each group, ties, negative and single
    values, groups of one point, empty groups and a group of 5,000 included."""
    from skylake.objects.stats import _sorted_in_groups, _sorted_mad, _sorted_median

    rng = np.random.default_rng(7)
    n_groups = 400
    group = np.r_[rng.integers(0, n_groups - 10, 60_000), np.full(5_000, 3), np.arange(390, 395)]  # one point
    values = np.r_[np.round(rng.normal(0.0, 3.0, 30_000), 1), rng.normal(12.0, 1.0, 35_005)].astype(dtype)
    values = values.astype(np.float64)
    order = np.argsort(group, kind="stable")  # light curves come grouped
    group, values = group[order], values[order]
    counts = np.bincount(group, minlength=n_groups)
    median = _sorted_median(_sorted_in_groups(group, values, n_groups), counts)
    mad = _sorted_mad(_sorted_in_groups(group, values, n_groups), counts, median)
    expected = np.full((2, n_groups), np.nan)
    for g, v in pd.Series(values).groupby(group):
        expected[0, g] = np.median(v.to_numpy())
        expected[1, g] = np.median(np.abs(v.to_numpy() - expected[0, g]))
    assert np.array_equal(median, expected[0], equal_nan=True) and np.array_equal(mad, expected[1], equal_nan=True)
    assert np.isnan(median[-5:]).all() and (counts[390:395] == 1).all() and counts[3] > 5_000
