"""HEALPix maps (skylake.maps) on SYNTHETIC frames with exact truth: a night whose middle frame has a
small cloud over part of the field (transparency pixel by pixel against the injected cloud), a known
sky level per frame (sky brightness within 0.05 mag/arcsec^2), FITS round trips through
healpy.read_map, storage in LAKE/maps with replacement, the CLI, and exact aggregation on a
hand-made dataframe."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import run_cli

from skylake.cli import main
from skylake.horizon import altaz
from skylake.lake import Lake
from skylake.maps import make_maps
from skylake.maps.aggregate import MapsError, aggregate_pixels, equatorial_pixels, nside_order, sky_brightness
from skylake.maps.build import compute_maps
from skylake.maps.export import export_maps, full_maps
from skylake.maps.store import read_index, read_maps, store_maps
from skylake.maps.truth import sky_vs_truth, transparency_vs_truth
from skylake.pipeline import ingest
from skylake.profile import ProfileError, load_profile
from skylake.refcat import import_refcat
from skylake.synthetic import write_demo_night, write_reference_catalog
from skylake.synthetic.night import _altitude_deg

NSIDE = 256  # 0.23 deg pixels on a 1.1 deg field
# 4 frames 40 min apart; the cloud (sigma 1/6 of the chip) crosses the field centre on frame 3 only
NIGHT = dict(
    n_frames=4,
    shape=(512, 512),
    start_utc="2026-03-01T20:30:00",
    cadence_s=2400,
    n_stars=1500,
    seed=11,
    pixscale_arcsec=8.0,
    color_term=0.1,
    cloud_track=(-3.0, 1.5),
    cloud_radius_chips=1 / 6,
)


@pytest.fixture(scope="module")
def night(tmp_path_factory, dask_client):
    root = tmp_path_factory.mktemp("mapsnight")
    truth = write_demo_night(root / "frames", **NIGHT)
    data, columns_map = write_reference_catalog(truth.stars, root / "refcat")
    lake = Lake.init(root / "lake")
    import_refcat(lake, "demo", [data], "generic", columns_map=columns_map, client=dask_client, progress=False)
    ingest(lake, [str(root / "frames")], "demo", client=dask_client, progress=False)
    maps = compute_maps(lake, per_frame=True, nside=NSIDE)
    return lake, truth, maps, root


def test_aggregation_is_exact_on_a_hand_made_frame():
    """Medians, counts, transparency, the min_stars cut and the robust scatter on 7 stars in 2 pixels."""
    stars = pd.DataFrame(
        {
            "map_key": ["a"] * 5 + ["b"] * 2,
            "pixel": [3, 3, 3, 3, 9, 3, 3],
            "frame_id": [1, 1, 2, 2, 1, 7, 7],
            "zp": [20.0, 20.2, 20.4, 21.0, 19.0, 18.0, 18.5],
            "zp_clear": [20.5] * 7,
        }
    )
    sky = pd.DataFrame(
        {
            "map_key": ["a", "a", "a", "b"],
            "pixel": [3, 3, 11, 3],
            "frame_id": [1, 3, 2, 7],
            "sky_mag": [21.0, 21.4, 20.0, 19.5],
        }
    )
    astro = pd.DataFrame(
        {
            "map_key": ["a", "a"],
            "pixel": [3, 3],
            "dra_arcsec": [1.0, 3.0],
            "ddec_arcsec": [-1.0, 0.0],
            "sep_arcsec": [1.5, 3.0],
        }
    )
    out = aggregate_pixels(stars, sky, astro, min_stars=2).set_index(["map_key", "pixel"])
    assert list(out.index) == [("a", 3), ("a", 9), ("a", 11), ("b", 3)]
    a3 = out.loc[("a", 3)]
    assert a3["n_stars"] == 4 and a3["zp_median"] == pytest.approx(20.3)  # median of 20.0 20.2 20.4 21.0
    assert a3["transparency"] == pytest.approx(10 ** (-0.4 * 0.2))
    assert a3["dzp_scatter"] == pytest.approx(1.4826 * 0.2)  # |dev| from -0.2: 0.3 .1 .1 .7 -> median 0.2
    assert a3["n_frames"] == 3 and a3["n_sky"] == 2 and a3["sky_mag"] == pytest.approx(21.2)  # frames 1, 2, 3
    assert a3["n_astro"] == 2 and a3["dra_arcsec"] == pytest.approx(2.0) and a3["sep_arcsec"] == pytest.approx(2.25)
    assert out.loc[("a", 9), "n_stars"] == 1 and np.isnan(out.loc[("a", 9), "transparency"])  # < min_stars
    assert out.loc[("a", 9), "zp_clear_median"] == 20.5
    assert out.loc[("a", 11), "n_stars"] == 0 and out.loc[("a", 11), "sky_mag"] == 20.0  # sky only
    assert out.loc[("b", 3), "transparency"] == pytest.approx(10 ** (-0.4 * 2.25))
    # sky brightness: 100 ADU/s on a 2"x2" pixel = 25 ADU/s/arcsec^2 -> zp - 2.5 log10(25)
    assert sky_brightness(np.array([22.0]), np.array([3000.0]), np.array([30.0]), np.array([2.0]))[0] == pytest.approx(
        22.0 - 2.5 * np.log10(25.0)
    )
    assert np.isnan(sky_brightness(np.array([22.0]), np.array([-1.0]), np.array([30.0]), np.array([2.0]))[0])


def test_aggregation_with_no_star_or_no_sky_sample():
    """A map with sky samples but no star (a cloudy frame with no match), or stars but no sky sample."""
    stars = pd.DataFrame(
        {"map_key": ["a", "a"], "pixel": [3, 4], "frame_id": [1, 1], "zp": [20.0, 19.0], "zp_clear": [20.5, 20.5]}
    )
    sky = pd.DataFrame(
        {"map_key": ["a", "a", "a"], "pixel": [3, 3, 5], "frame_id": [1, 1, 1], "sky_mag": [21.0, 21.4, 20.0]}
    )
    astro = pd.DataFrame({c: pd.Series([], dtype=float) for c in ("dra_arcsec", "ddec_arcsec", "sep_arcsec")})
    astro = astro.assign(map_key=pd.Series([], dtype=object), pixel=pd.Series([], dtype=np.int64))
    only_sky = aggregate_pixels(stars.iloc[0:0], sky, astro, min_stars=1)
    assert list(only_sky["pixel"]) == [3, 5] and (only_sky["n_stars"] == 0).all() and (only_sky["n_frames"] == 1).all()
    assert list(only_sky["sky_mag"]) == pytest.approx([21.2, 20.0]) and only_sky["transparency"].isna().all()
    assert list(only_sky["sky_mag_scatter"]) == pytest.approx([1.4826 * 0.2, 0.0])
    only_stars = aggregate_pixels(stars, sky.iloc[0:0], astro, min_stars=1)
    assert list(only_stars["pixel"]) == [3, 4] and (only_stars["n_sky"] == 0).all()
    assert only_stars["sky_mag"].isna().all()
    assert list(only_stars["transparency"]) == pytest.approx([10 ** (-0.4 * 0.5), 10 ** (-0.4 * 1.5)])
    assert list(only_stars["dzp_scatter"]) == [0.0, 0.0]
    assert aggregate_pixels(stars.iloc[0:0], sky.iloc[0:0], astro, min_stars=1).empty


def test_altaz_in_one_transform_equals_one_transform_per_frame():
    """Sources of three frames (one with no time) in one call, against astropy frame by frame."""
    from astropy import units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time

    rng = np.random.default_rng(5)
    mjd = np.repeat([61100.13, 61100.41, 61101.05, np.nan], 20)
    ra, dec = rng.uniform(0, 360, mjd.size), rng.uniform(-40, 85, mjd.size)
    alt, az = altaz(ra, dec, mjd, 28.76, -17.88, 2332.0)
    site = EarthLocation(lon=-17.88 * u.deg, lat=28.76 * u.deg, height=2332.0 * u.m)
    for t in np.unique(mjd[np.isfinite(mjd)]):
        at = mjd == t
        hor = SkyCoord(ra=ra[at] * u.deg, dec=dec[at] * u.deg).transform_to(
            AltAz(obstime=Time(t, format="mjd", scale="utc"), location=site)
        )
        assert np.abs(alt[at] - hor.alt.deg).max() < 1e-6
        assert np.abs(((az[at] - hor.az.deg + 180) % 360 - 180) * np.cos(np.radians(alt[at]))).max() < 1e-6
    assert np.isnan(alt[np.isnan(mjd)]).all() and np.isnan(az[np.isnan(mjd)]).all()
    assert np.ptp(alt[np.isfinite(mjd)]) > 90  # above and below the horizon: a real test of the sky


def test_pixels_from_healpix_29_match_healpy():
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, 2000), np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))
    h29 = hp.ang2pix(2**29, ra, dec, nest=True, lonlat=True)
    for nside in (1, 8, 256, 4096):
        assert np.array_equal(equatorial_pixels(h29, nside), hp.ang2pix(nside, ra, dec, nest=True, lonlat=True))
    assert nside_order(8) == 3
    for bad in (0, 3, 12, 2**30, True, 8.0):
        with pytest.raises(MapsError, match="power of two"):
            nside_order(bad)


def test_transparency_map_shows_the_injected_cloud_pixel_by_pixel(night):
    lake, truth, maps, _ = night
    tv = transparency_vs_truth(lake, maps, truth)
    eq = tv[tv["frame_of"] == "equatorial"]
    assert len(eq) > 80  # 4 frames x ~25 pixels with >= min_stars stars
    err = eq["transparency"] - eq["truth"]  # the same stars' true cloud transmission
    assert np.sqrt(np.mean(err**2)) < 0.02 and np.abs(err).max() < 0.08, eq.assign(err=err).sort_values("err")
    cloudy = eq[eq["model"] < 0.8]  # the cloud model at the pixel centre
    clear = eq[eq["model"] > 0.99]
    assert len(cloudy) >= 3 and (cloudy["transparency"] < 0.9).all(), cloudy
    assert len(clear) > 60 and (np.abs(clear["transparency"] - 1) < 0.03).all(), clear.sort_values("transparency")
    # the cloudy pixels are all on the frame the cloud crossed
    cloud_frame = int(truth.frames["cloud_ra"].sub(truth.frames["crval1"]).abs().idxmin()) + 1
    frame_of_map = maps.index.set_index("map_id")["frame_id"]
    assert set(frame_of_map[cloudy["map_id"]]) == {cloud_frame}
    hor = tv[tv["frame_of"] == "horizon"]
    assert np.sqrt(np.mean((hor["transparency"] - hor["truth"]) ** 2)) < 0.03 and (hor["transparency"] < 0.8).any()


def test_index_counts_are_the_maps_samples(night):
    _, _, maps, _ = night
    idx = maps.index.set_index("map_id")
    for col, df in (("n_pixels", maps.pixels), ("n_stars", maps.stars), ("n_sky", maps.sky)):
        counts = df.groupby("map_id").size().reindex(idx.index, fill_value=0)
        assert (idx[col] == counts).all() and counts.min() > 0, col
    assert (idx["calib_keys"] != "").all()


def test_sky_brightness_map_is_within_0_05_mag_of_the_injected_sky(night):
    lake, truth, maps, _ = night
    sv = sky_vs_truth(lake, maps, truth)
    assert len(sv) > 120 and sv["truth"].max() - sv["truth"].min() > 0.5  # twilight on frame 1
    err = sv["sky_mag"] - sv["truth"]
    assert np.abs(err).max() < 0.05, sv.assign(err=err).sort_values("err")


def test_horizon_maps_sit_at_the_fields_altitude(night):
    lake, truth, maps, _ = night
    hor = maps.pixels[maps.pixels["frame_of"] == "horizon"].merge(maps.index[["map_id", "frame_id"]], on="map_id")
    alt = hor.groupby("frame_id").apply(lambda g: np.average(g["lat"], weights=g["n_sky"]), include_groups=False)
    ft = truth.frames.reset_index(drop=True)
    expected = _altitude_deg(ft["ha_deg"], truth.meta["dec0_deg"], truth.meta["site_lat_deg"])
    # the synthetic hour angle ignores precession (~0.35 deg over 26 years): a loose match, a wrong site fails
    assert np.abs(alt.to_numpy() - np.asarray(expected)).max() < 0.6, (alt, expected)


def test_map_fits_round_trips_through_healpy_read_map(night, tmp_path):
    lake, truth, _, _ = night
    for nside in (8, NSIDE):  # a full-sky file and a partial (cut-sky) one
        maps = compute_maps(lake, nside=nside, frames_of=("equatorial",))
        assert len(maps.index) == 1 and maps.index["scope"].iloc[0] == "night"
        paths = export_maps(maps.pixels, maps.index, tmp_path / f"n{nside}")
        fits_path = [p for p in paths if p.suffix == ".fits"][0]
        assert all(p.stat().st_size > 0 for p in paths) and len(paths) == 3
        expect = full_maps(maps.pixels, nside)
        for k, name in enumerate(expect):
            got = hp.read_map(fits_path, field=k, nest=True)
            assert np.array_equal(got, expect[name]), name
        t = hp.read_map(fits_path, field=2, nest=True)
        seen = t != hp.UNSEEN
        px = maps.pixels.dropna(subset=["transparency"])
        assert seen.sum() == len(px) and np.allclose(t[px["pixel"]], px["transparency"], rtol=0, atol=0)
        ring = hp.read_map(fits_path, field=2)  # healpy's default RING ordering
        assert np.array_equal(ring[hp.nest2ring(nside, px["pixel"].to_numpy())], px["transparency"].to_numpy())


def test_maps_are_stored_in_the_lake_and_replaced_when_made_again(night):
    lake, truth, maps, _ = night
    index, version = store_maps(lake, maps)
    assert version is not None and len(index) == 8  # 4 frames x 2 frames-of
    stored = read_maps(lake)
    assert len(stored) == len(maps.pixels) and set(stored["night"]) == {"2026-03-01"}
    idx = read_index(lake)
    assert len(idx) == 8 and (idx["n_pixels"].to_numpy() == index["n_pixels"].to_numpy()).all()
    one = stored[stored["map_id"] == idx["map_id"].iloc[0]]
    assert len(one) == idx["n_pixels"].iloc[0] and lake.store.exists(idx["path"].iloc[0])
    _, again = store_maps(lake, maps)  # the same maps again: replaced, not duplicated
    assert again == version + 1 and len(read_maps(lake)) == len(maps.pixels) and len(read_index(lake)) == 8
    frame = int(idx["frame_id"].iloc[0])
    _, _, v3, _ = make_maps(lake, frame_id=frame, nside=NSIDE, frames_of=("equatorial",))
    assert len(read_index(lake)) == 8 and len(read_maps(lake)) == len(maps.pixels)
    pd.testing.assert_frame_equal(
        read_maps(lake).drop(columns="night").sort_values(["map_id", "pixel"]).reset_index(drop=True),
        maps.pixels.drop(columns="night")[read_maps(lake).columns.drop("night")]
        .sort_values(["map_id", "pixel"])
        .reset_index(drop=True),
        check_dtype=False,
        atol=1e-6,
    )


def test_a_maps_commit_reads_only_its_nights_index_and_pixel_files(night, tmp_path):
    """Maps made again replace their rows reading only their night's index and pixel directories: junk
    (not Parquet) in another night's directories, which any read of them would trip on, is never read."""
    import shutil

    lake0, _, maps, _ = night
    shutil.copytree(lake0.path(), tmp_path / "lake")
    lake = Lake.open(tmp_path / "lake")
    store_maps(lake, maps)
    for junk in ("maps/_index/night=2026-02-11/junk.parquet", "maps/night=2026-02-11/junk.parquet"):
        (tmp_path / "lake" / junk).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lake" / junk).write_bytes(b"not parquet")
    _, again = store_maps(lake, maps)
    assert again is not None
    index = read_index(lake, nights=["2026-03-01"])
    assert len(index) == 8 and index["path"].str.startswith("maps/night=2026-03-01/").all()
    assert sorted(p.parent.name for p in (tmp_path / "lake" / "maps" / "_index").rglob("*.parquet")) == [
        "night=2026-02-11",
        "night=2026-03-01",
    ]


def test_an_index_file_of_an_older_lake_is_read_and_replaced(night, tmp_path):
    """Lakes made before the index was filed by night keep flat maps/_index/<batch>.parquet files: they are
    read, and a map made again drops its row from them."""
    import shutil

    lake0, _, maps, _ = night
    shutil.copytree(lake0.path(), tmp_path / "lake")
    lake = Lake.open(tmp_path / "lake")
    store_maps(lake, maps)
    (nested,) = (tmp_path / "lake" / "maps" / "_index").rglob("*.parquet")
    nested.rename(nested.parent.parent / nested.name)  # as an older skylake filed it
    nested.parent.rmdir()
    assert len(read_index(lake)) == 8 and len(read_index(lake, nights=["2026-03-01"])) == 8
    store_maps(lake, maps)
    files = sorted(
        p.relative_to(tmp_path / "lake" / "maps" / "_index").parent.name
        for p in (tmp_path / "lake" / "maps" / "_index").rglob("*.parquet")
    )
    assert files == ["night=2026-03-01"] and len(read_index(lake)) == 8


def test_cli_maps(night, tmp_path, capsys):
    lake, _, _, _ = night
    out = tmp_path / "exports"
    proc = run_cli("maps", lake.url, "--night", "2026-03-01", "--nside", "8", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "2 maps" in proc.stdout and len(list(out.glob("*.fits"))) == 2 and len(list(out.glob("*.png"))) == 4
    m = hp.read_map(next(out.glob("*equatorial*.fits")), field=0, nest=True)
    assert (m != hp.UNSEEN).sum() == 1 and m.max() > 1000  # the whole field in one nside-8 pixel
    # the rest in-process (same entry point, no interpreter start-up)
    assert main(["maps", lake.url, "--nside", "12"]) == 2 and "power of two" in capsys.readouterr().err
    assert main(["maps", lake.url, "--night", "2026-03-02", "--no-export"]) == 4
    assert main(["maps", lake.url, "--list"]) == 0 and "equatorial" in capsys.readouterr().out


def test_profile_maps_section_is_validated(tmp_path):
    assert load_profile("generic").maps.nside == 8 and load_profile("generic").maps.zp_clear == "auto"
    for bad, match in (
        ("nside = 6", "maps.nside = 6"),
        ('zp_clear = "clear"', "maps.zp_clear = 'clear'"),
        ("min_stars = 0", "maps.min_stars = 0"),
        ("colour = 1", r"\[maps\] has unknown settings"),
    ):
        f = tmp_path / "bad.toml"
        f.write_text(f'extends = "generic"\n[maps]\n{bad}\n')
        with pytest.raises(ProfileError, match=match):
            load_profile(f)
    f = tmp_path / "fixed.toml"
    f.write_text('extends = "generic"\n[profile]\nname = "generic"\n[maps]\nzp_clear = 5.66\nnside = 16\n')
    fixed = load_profile(f)
    assert fixed.maps.zp_clear == 5.66 and fixed.digest == load_profile("generic").digest  # frame identity unchanged


# -- maps per group of frames, of one night's directories -----------------------------------------
def _canon(maps) -> list[pd.DataFrame]:
    """The map set's tables in a fixed row order (samples come in task order)."""
    return [
        maps.pixels.sort_values(["map_id", "pixel"], ignore_index=True),
        maps.index.sort_values("map_id", ignore_index=True),
        maps.stars.sort_values(["map_id", "frame_id", "pixel", "ref_id"], ignore_index=True),
        maps.sky.sort_values(["map_id", "frame_id", "pixel", "sky_mag"], ignore_index=True),
    ]


def test_night_maps_per_frame_group_on_a_cluster_equal_in_process(night, dask_client, monkeypatch):
    """Samples per group of frames (tasks on a cluster, or here), reduced per pixel: the same maps."""
    import skylake.maps.build as maps_build

    lake, date = night[0], NIGHT["start_utc"][:10]
    alone = compute_maps(lake, night=date)
    monkeypatch.setattr(maps_build, "FRAMES_PER_TASK", 1)  # one task per frame: the reduce sees every split
    for got in (compute_maps(lake, night=date, client=dask_client), compute_maps(lake, night=date)):
        for a, b in zip(_canon(alone), _canon(got)):
            pd.testing.assert_frame_equal(a, b)
    assert len(alone.index) == 2 and alone.index["n_frames"].eq(NIGHT["n_frames"]).all()


def test_night_maps_do_not_change_when_other_nights_join(night):
    """A night's maps read that night's directories only: other nights (a SYNTHETIC archive of frame,
    zeropoint and extinction rows) joining the lake change nothing. Runs last: it adds to the lake."""
    from skylake.synthetic.summary_rows import commit_night

    lake, date = night[0], NIGHT["start_utc"][:10]
    before = compute_maps(lake, night=date)
    rng = np.random.default_rng(4)
    for k in range(3):  # an archive around it: other nights' frames, zeropoints, extinction
        commit_night(lake, f"2026-02-{10 + k}", 50, rng, profile="demo")
    after = compute_maps(lake, night=date)
    for a, b in zip(_canon(before), _canon(after)):
        pd.testing.assert_frame_equal(a, b)


def test_a_maps_task_holds_its_frames_or_its_pixel_group_never_the_night(tmp_path, monkeypatch):
    """A night of 8 tiles in two order-3 pixels, 3 frames per sample task: each reduce task aggregates
    exactly the samples of its pixel group (counted against the night's sources and matches), the pixel
    rows equal one reduce over the whole night, and without ``samples`` none reach the caller."""
    import skylake.maps.build as maps_build
    from skylake.calib.store import MATCHES, read_table
    from skylake.synthetic.summary_rows import commit_sources_night

    lake = Lake.init(tmp_path / "lake")
    date = "2025-01-01"
    commit_sources_night(lake, date, [0, 1, 2, 3, 16, 17, 18, 19], 60, np.random.default_rng(1), matches=True)
    monkeypatch.setattr(maps_build, "FRAMES_PER_TASK", 3)
    held = []

    def counted(stars, sky, astro, min_stars):
        held.append((stars["pixel"].to_numpy() >> 10, sky["pixel"].to_numpy() >> 10))  # nside 256 -> order 3
        return aggregate_pixels(stars, sky, astro, min_stars)

    monkeypatch.setattr(maps_build, "aggregate_pixels", counted)
    maps = compute_maps(lake, night=date, refcat="synth", frames_of=("equatorial",), samples=False)
    h29 = lake.read_sources(columns=["source_id", "_healpix_29"]).to_pandas()
    group = pd.Series(h29["_healpix_29"].to_numpy() >> (2 * (29 - maps_build.REDUCE_ORDER)), index=h29["source_id"])
    matched = group.loc[read_table(lake, MATCHES, ["source_id"], nights=[date])["source_id"]]
    assert len(held) == group.nunique() == 2
    for stars, sky in held:
        assert len(set(sky)) == 1 and len(set(stars)) == 1
        g = sky[0]
        assert len(sky) == (group == g).sum() < len(group) and len(stars) == (matched == g).sum() > 0
    assert maps.stars.empty and maps.sky.empty and maps.index["n_sky"].sum() == len(group)
    monkeypatch.setattr(maps_build, "REDUCE_ORDER", 0)  # one group: the whole night in one reduce
    whole = compute_maps(lake, night=date, refcat="synth", frames_of=("equatorial",))
    assert len(held) == 3 and len(whole.sky) == len(group)
    pd.testing.assert_frame_equal(
        maps.pixels.sort_values(["map_id", "pixel"], ignore_index=True),
        whole.pixels.sort_values(["map_id", "pixel"], ignore_index=True),
    )
    pd.testing.assert_frame_equal(maps.index, whole.index)


def test_a_maps_task_reads_only_the_row_groups_of_its_frames(tmp_path, monkeypatch):
    """Three nights of two tiles, a commit each (a file per partition per night): the frames of the second
    night are read from their partitions' six files by opening them one at a time and decoding only
    that night's two (frame_id statistics), with exactly their rows."""
    import pyarrow.parquet as pq

    from skylake.maps.build import read_frames_rows
    from skylake.synthetic.summary_rows import commit_sources_night

    lake = Lake.init(tmp_path / "lake")
    for k in range(3):
        commit_sources_night(lake, f"2025-01-0{k + 1}", [0, 1], 20, np.random.default_rng(k))
    frames = lake.read_frames(columns=["frame_id", "night"]).to_pandas()
    ids = np.sort(frames.loc[frames["night"] == "2025-01-02", "frame_id"].to_numpy(np.int64))
    files = sorted(lake.live_files("sources"))
    assert len(files) == 6
    decoded = []
    read_row_groups = pq.ParquetFile.read_row_groups

    def counted(self, groups, *args, **kwargs):
        decoded.append(len(groups))
        return read_row_groups(self, groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", counted)
    cols = ["source_id", "frame_id", "bkg"]
    got = read_frames_rows(lake, [f"sources/{f}" for f in files], cols, pa.array(ids)).to_pandas()
    assert decoded == [1, 1]
    expected = lake.read_sources(columns=cols).to_pandas()
    expected = expected[expected["frame_id"].isin(ids)]
    assert len(got) == 40
    pd.testing.assert_frame_equal(
        got.sort_values("source_id", ignore_index=True), expected.sort_values("source_id", ignore_index=True)
    )


def test_night_maps_are_a_night_product_the_chain_keeps_current(tmp_path, dask_client):
    """Night maps made on request are kept current by the ingest chain (skylake.maps.nightly through
    skylake.night_products): an ingest --redo of one night makes that night's maps again, with the settings
    they were made with, the other night's untouched; a new night gets none (maps are made on request)."""
    from skylake.night_products import build_night_products

    frames = {}
    for night in ["2026-03-01", "2026-03-02", "2026-03-03"]:
        frames[night] = tmp_path / night
        settings = {k: v for k, v in NIGHT.items() if not k.startswith("cloud")}
        truth = write_demo_night(
            frames[night], **{**settings, "n_frames": 2, "n_stars": 600, "start_utc": f"{night}T21:00:00"}, cloud=False
        )
    data, columns_map = write_reference_catalog(truth.stars, tmp_path / "refcat")
    lake = Lake.init(tmp_path / "lake")
    import_refcat(lake, "demo", [data], "generic", columns_map=columns_map, client=dask_client, progress=False)
    for night in ["2026-03-01", "2026-03-02"]:
        ingest(lake, [str(frames[night])], "demo", client=dask_client, progress=False)
    make_maps(lake, night="2026-03-01", nside=64, frames_of=("equatorial",), client=dask_client)
    make_maps(lake, night="2026-03-02", nside=64, client=dask_client)
    before = read_index(lake).set_index("map_id")
    assert len(before) == 3 and before["built_version"].notna().all()
    assert build_night_products(lake, products=["maps"]).built == {}  # all current

    report = ingest(lake, [str(frames["2026-03-02"])], "demo", client=dask_client, redo=True, progress=False)
    (products,) = report.downstream.night_products
    assert products.built["maps"] == ["2026-03-02"] and products.built["ensemble"] == ["2026-03-02"]
    after = read_index(lake).set_index("map_id")
    assert sorted(after.index) == sorted(before.index)  # the same maps: same nside, coordinates, catalogue
    first = before["night_min"] == "2026-03-01"
    assert (after.loc[before.index[first], "batch_id"] == before.loc[first, "batch_id"]).all()  # untouched
    second = before.index[~first]
    assert (after.loc[second, "built_version"] > before.loc[second, "built_version"]).all()
    assert set(after.loc[second, "frame_of"]) == {"equatorial", "horizon"} and (after["nside"] == 64).all()
    assert len(read_maps(lake)) == after["n_pixels"].sum()

    report = ingest(lake, [str(frames["2026-03-03"])], "demo", client=dask_client, progress=False)
    (products,) = report.downstream.night_products
    assert "maps" not in products.built and products.built["ensemble"] == ["2026-03-03"]
    assert set(read_index(lake)["night_min"]) == {"2026-03-01", "2026-03-02"}

    # a second camera's frames in the same night: its ensemble is solved beside the first's, which stays
    from skylake.lake.tables import ENSEMBLE
    from skylake.paths import project_dir

    other = tmp_path / "demo2.toml"
    other.write_text((project_dir("pipelines") / "demo.toml").read_text().replace('name = "demo"', 'name = "demo2"', 1))
    before = set(lake.read_night_table(ENSEMBLE).column("frame_id").to_pylist())
    later = {k: v for k, v in NIGHT.items() if not k.startswith("cloud")}
    later.update(n_frames=2, n_stars=600, start_utc="2026-03-03T23:30:00")
    write_demo_night(tmp_path / "second", **later, cloud=False)  # the same sky, later: other files
    report = ingest(lake, [str(tmp_path / "second")], str(other), client=dask_client, progress=False)
    frames_of = lake.read_frames(columns=["frame_id", "profile", "night"]).to_pandas()
    solved = set(lake.read_night_table(ENSEMBLE).column("frame_id").to_pylist())
    second = set(frames_of.loc[frames_of["profile"] == "demo2", "frame_id"])
    assert len(second) == 2 and before | second == solved  # both cameras' rows, none lost
