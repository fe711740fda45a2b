"""References and differences in the lake (`skylake reference build`, `skylake dia`) on the REAL SkyCamZ frames of
2013-06-10: 12 frames of one pointing and 2 of another.

The 12 get one reference (their 10 sharpest stacked); the 2 are too few and are told so. Every frame of the
12 is subtracted to the noise (normalised rms 1.0-1.3 over its kernel's stamps, the flux scale of one clear
night near one); the 2 get a failed row naming the command that builds a reference, and nothing else is lost.
Every object (`objects build` ran first) gets a DIA light-curve point in each frame, whose errors its scatter
keeps at every brightness. The DIA sources open in pandas, DuckDB and lsdb; a second run finds everything done,
``--redo`` replaces the rows, and a newer reference (other frames) makes the frames stale by itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skylake.cli import main
from skylake.dia.stage import NO_REFERENCE
from skylake.lake import Lake, tables
from skylake.pipeline import ingest

pytestmark = pytest.mark.timeout(1500)  # a lake of 14 real frames, objects, a reference and 12 differences: 2-4 min


@pytest.fixture(scope="module")
def lake(skycamz_files, tmp_path_factory, dask_client):
    root = tmp_path_factory.mktemp("dia_lake") / "lake"
    lake = Lake.init(root)
    ingest(lake, [str(p) for p in skycamz_files], "skycamz", client=dask_client, progress=False, calibrate=False)
    return lake


@pytest.fixture(scope="module")
def subtracted(lake, dask_client):
    address = dask_client.scheduler.address
    assert main(["objects", "build", str(lake.url)]) == 0  # the objects the DIA light curves measure
    assert main(["reference", "build", str(lake.url), "--scheduler", address]) == 0
    assert main(["dia", str(lake.url), "--scheduler", address]) == 0  # (two frames have no reference: said, no failure)
    return tables.get(tables.DIA_FRAMES).read(lake).to_pandas().set_index("frame_id")


def test_one_reference_of_the_ten_sharpest_frames(lake, subtracted):
    refs = tables.get(tables.REFERENCES).read(lake).to_pandas()
    assert len(refs) == 1
    ref = refs.iloc[0]
    frames = lake.read_frames(columns=["frame_id", "fwhm_median", "ra_center"]).to_pandas()
    pointing = frames[np.abs(frames["ra_center"] - ref["ra_center"]) < 0.5]
    assert len(pointing) == 12 and ref["n_frames"] == 10
    sharpest = pointing.sort_values(["fwhm_median", "frame_id"])["frame_id"].head(10).tolist()
    assert [int(f) for f in ref["frame_ids"].split(",")] == sharpest
    assert lake.store.exists(ref["path"])
    print(f"\nreference: {ref['n_frames']} frames, FWHM {ref['fwhm']:.2f} px, depth {ref['depth']:.3f} ADU/s/px")
    # the same frames again: found, not built twice
    assert main(["reference", "build", str(lake.url)]) == 4
    assert len(tables.get(tables.REFERENCES).read(lake)) == 1


def test_every_frame_of_the_pointing_subtracts_to_the_noise(subtracted):
    ok = subtracted[subtracted["status"] == "ok"]
    columns = ["in_reference", "broadened", "kernel_order", "fwhm", "scale", "n_stamps", "normalised_rms"]
    columns += ["n_dia_sources", "n_unflagged"]
    print("\n" + ok[columns].round(3).to_string())
    assert len(ok) == 12 and ok["in_reference"].sum() == 10
    assert ok["kernel_order"].isin([0, 1]).all()  # skylake dia's highest is 1; the stamps choose
    assert (ok["n_stamps"] >= 30).all()
    assert ok.loc[~ok["in_reference"], "normalised_rms"].between(1.0, 1.3).all()
    # a frame the reference stacks shares its noise, taken out by its weight's share: the grid frame, not
    # resampled, shares a little more than that (0.99 today)
    assert ok.loc[ok["in_reference"], "normalised_rms"].between(0.95, 1.3).all()
    assert ok["scale"].between(0.97, 1.03).all()  # one clear night, 10-s frames minutes apart
    print(f"unflagged DIA sources per frame: {sorted(ok['n_unflagged'].astype(int).tolist())}")


def test_every_object_gets_a_dia_point_in_each_frame_with_errors_its_scatter_keeps(lake, subtracted):
    """Every object the 12 frames all detected has a DIA point in each of them (but saturated stars, which no
    kernel matches, and a few whose PSF box leaves the chip in a frame); the constant ones scatter as their
    errors say, at every brightness: the median chi2/dof of dflux about its mean near 1 (that of a chi2 of 11
    degrees of freedom is 0.94)."""
    from skylake.objects.files import catalog_dataset

    points = catalog_dataset(lake, tables.DIA_LIGHTCURVES).to_table().to_pandas()
    objects = catalog_dataset(lake, tables.OBJECTS).to_table(columns=["object_id", "n_det"]).to_pandas()
    assert points.groupby(["object_id", "frame_id"]).size().max() == 1
    assert len(points) == int(subtracted["n_points"].sum()) and set(points["frame_id"]) == set(
        subtracted.index[subtracted["status"] == "ok"]
    )
    seen_in_all = objects.loc[objects["n_det"] == 12, "object_id"]
    per_object = points.groupby("object_id").size().reindex(seen_in_all).fillna(0)
    print(f"\n{len(seen_in_all)} objects seen in all 12 frames: {per_object.value_counts().to_dict()} DIA points")
    assert (per_object == 12).mean() > 0.95
    ok = subtracted[subtracted["status"] == "ok"]
    print(ok[["noise_scale", "flux_floor", "scale_residual", "normalised_rms"]].describe().loc[["min", "50%", "max"]]
          .round(4))  # fmt: skip
    # a frame broadened before its kernel fit (as sharp as its reference: all 12 here) has its variance convolved
    # with the Gaussian squared, true pixel by pixel; the noise it correlates comes back in noise_scale, by the
    # root of 1 / sum(g^2) of the Gaussian where the PSF is much wider than it
    sigma = ok["broadened"].to_numpy() / 2.3548
    correlated = np.array([1.0 / np.sqrt(np.sum(_gaussian(s) ** 2)) if s > 0 else 1.0 for s in sigma])
    print(
        f"broadened (FWHM, px): {np.round(ok['broadened'].to_numpy(), 2)}; noise_scale / the correlation's "
        f"factor: {np.round(ok['noise_scale'].to_numpy() / correlated, 3)}"
    )
    assert (ok["noise_scale"] / correlated).between(0.9, 1.25).all() and ok["flux_floor"].between(0.0, 0.02).all()

    clean = points[points["flags"] == 0]
    mean = clean.groupby("object_id").apply(lambda d: np.average(d["dflux"], weights=d["dflux_err"] ** -2))
    clean = clean.assign(
        pull2=((clean["dflux"] - mean.reindex(clean["object_id"]).to_numpy()) / clean["dflux_err"]) ** 2
    )
    stats = clean.groupby("object_id").agg(n=("pull2", "size"), chi2=("pull2", "sum"), ref=("ref_flux", "median"))
    stats = stats[stats["n"] == 12].assign(chi2_dof=lambda t: t["chi2"] / 11)
    bins = pd.cut(stats["ref"], [5, 20, 50, 200, 1000, 30000])
    table = stats.groupby(bins, observed=True)["chi2_dof"].agg(["size", "median"])
    print("DIA light curves of the objects with 12 points, by reference flux [ADU/s]:\n" + table.round(2).to_string())
    assert table["median"].iloc[:3].between(0.8, 1.25).all()  # faint to middling: the difference's own noise
    assert table["median"].between(0.5, 1.5).all()  # bright: the frames' flux floor

    # beside brighter stars as well, the neighbours' PSFs fitted with the object's on the reference and on each
    # difference (medians 1.06, 0.95, 0.98 and 1.05 measured with neighbours within 30" holding < 0.1, 0.1-1, 1-10
    # and > 10 times the object's flux; weighed one by one, with other reference fluxes, 1.06, 1.08, 1.10 and 8.0)
    from scipy.spatial import cKDTree

    where = catalog_dataset(lake, tables.OBJECTS).to_table(columns=["object_id", "ra", "dec"]).to_pandas()
    where = where.set_index("object_id").reindex(stats.index)
    ra, dec = np.radians(where["ra"].to_numpy()), np.radians(where["dec"].to_numpy())
    unit = np.c_[np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]
    ref = stats["ref"].to_numpy()
    near = cKDTree(unit).query_ball_point(unit, np.radians(30 / 3600))
    # an object fitted to no flux of its own beside its neighbours (38 of 1,800) counts as one beside brighter ones
    share = np.array([(ref[js].sum() - ref[k]) / ref[k] if ref[k] > 0 else np.inf for k, js in enumerate(near)])
    print(f"{np.isinf(share).sum()} of {len(share)} objects with no flux of their own on the reference")
    by_share = stats.groupby(pd.cut(share, [-0.01, 0.1, 1, 10, np.inf]), observed=True)["chi2_dof"]
    table = by_share.agg(["size", "median"])
    print("the same by the neighbours' flux within 30 arcsec over the object's own:\n" + table.round(2).to_string())
    assert len(table) == 4 and table["median"].between(0.8, 1.25).all()


def test_a_frame_with_no_reference_is_told_which_command_builds_one(subtracted):
    failed = subtracted[subtracted["status"] != "ok"]
    assert len(failed) == 2 and (failed["reason"] == NO_REFERENCE).all()
    assert failed["reference_id"].isna().all() and (failed["n_dia_sources"] == 0).all()


def test_dia_sources_open_in_pandas_duckdb_and_lsdb(lake, subtracted):
    import duckdb
    import lsdb

    from skylake.objects.files import catalog_dataset

    rows = catalog_dataset(lake, tables.DIA_SOURCES).to_table().to_pandas()
    assert len(rows) == subtracted["n_dia_sources"].sum() > 0
    assert rows["dia_source_id"].is_unique and set(rows["sign"]) <= {-1, 1}
    assert set(rows["frame_id"]) <= set(subtracted.index[subtracted["status"] == "ok"])
    glob = lake.path(f"{tables.DIA_SOURCES}/dataset/**/*.parquet")
    assert duckdb.sql(f"select count(*) from read_parquet('{glob}')").fetchall()[0][0] == len(rows)
    assert len(lsdb.open_catalog(lake.path(tables.DIA_SOURCES)).compute()) == len(rows)
    # the real ones (no flag, a PSF's residuals) make the DIA objects, which open the same ways
    objects = catalog_dataset(lake, tables.DIA_OBJECTS).to_table().to_pandas()
    real = rows[rows["dia_object_id"].notna()]
    assert len(real) == subtracted["n_real"].sum() > 0 and set(real["dia_object_id"]) == set(objects["dia_object_id"])
    assert objects["n_sources"].sum() == len(real) and ((rows["flags"] == 0) | rows["dia_object_id"].isna()).all()
    glob = lake.path(f"{tables.DIA_OBJECTS}/dataset/**/*.parquet")
    assert duckdb.sql(f"select sum(n_sources) from read_parquet('{glob}')").fetchall()[0][0] == len(real)
    catalog = lsdb.open_catalog(lake.path(tables.DIA_OBJECTS))
    assert catalog.hc_structure.catalog_info.catalog_type == "object" and len(catalog.compute()) == len(objects)
    print(
        f"\nreal DIA sources per frame: {sorted(subtracted['n_real'].dropna().astype(int).tolist())}; "
        f"{len(objects)} DIA objects, {objects['object_id'].notna().sum()} on an object"
    )


def test_a_second_run_finds_everything_done_and_redo_replaces_it(lake, subtracted, dask_client):
    from skylake.dia.stage import run_dia
    from skylake.objects.files import catalog_dataset
    from skylake.runtime import Runner

    again = run_dia(lake)
    assert (again.done, again.skipped, again.version) == (0, 14, None)
    redo = run_dia(lake, redo=True, runner=Runner(dask_client))
    assert redo.done == 12 and redo.no_reference == 2 and not redo.failed
    after = tables.get(tables.DIA_FRAMES).read(lake).to_pandas()
    assert len(after) == 14 and after["frame_id"].is_unique
    rows = catalog_dataset(lake, tables.DIA_SOURCES).to_table(columns=["dia_source_id"]).to_pandas()
    assert len(rows) == redo.dia_sources and rows["dia_source_id"].is_unique
    # the same detections again: the same DIA objects, rebuilt from their sources, not counted twice
    objects = catalog_dataset(lake, tables.DIA_OBJECTS).to_table().to_pandas()
    assert objects["dia_object_id"].is_unique and objects["n_sources"].sum() == redo.real


def test_a_newer_reference_makes_the_frames_stale_by_itself(lake, subtracted, dask_client):
    from skylake.dia.stage import run_dia
    from skylake.runtime import Runner

    address = dask_client.scheduler.address
    assert main(["reference", "build", str(lake.url), "--max-frames", "8", "--scheduler", address]) == 0
    refs = tables.get(tables.REFERENCES).read(lake).to_pandas()
    assert len(refs) == 2 and sorted(refs["n_frames"]) == [8, 10]  # the old one stays beside the new
    newest = refs.sort_values("built_version")["reference_id"].iloc[-1]
    again = run_dia(lake, runner=Runner(dask_client))
    assert (again.done, again.skipped) == (12, 2)  # the pointing's frames again; the other two still have none
    rows = tables.get(tables.DIA_FRAMES).read(lake).to_pandas()
    assert len(rows) == 14 and rows["frame_id"].is_unique
    assert (rows.loc[rows["status"] == "ok", "reference_id"] == newest).all()


def test_a_frame_whose_file_is_gone_gets_a_failed_row_with_its_reason(lake, subtracted):
    from skylake.dia.references import read_references, usable_frames
    from skylake.dia.stage import difference_frame
    from skylake.lake.frames import FrameSelection

    frame = usable_frames(lake, FrameSelection()).iloc[0].to_dict() | {"path": "/nonexistent/z_e_gone.fits"}
    row, sources, points, forced, grids = difference_frame(
        lake.store.location, frame, read_references(lake).iloc[0].to_dict(), 0
    )
    assert row["status"] == "failed" and "z_e_gone.fits" in row["reason"]
    assert sources.num_rows == 0 and points.num_rows == 0 and forced.num_rows == 0 and grids == {}


def test_the_reports_dia_section_shows_the_nights_dia_objects_and_their_cutouts(lake, subtracted, tmp_path):
    """skylake report's page of the camera: the latest subtracted night, its frames, the real DIA sources' DIA
    objects in a table, and a picture of the brightest ones' cutouts (reference, frame, difference)."""
    from PIL import Image

    from skylake.dia.report import STAMP_ROWS, dia_section, night_dia_sources

    now = tables.get(tables.DIA_FRAMES).read(lake).to_pandas()  # (the tests before may have done them again)
    night, frames, sources = night_dia_sources(lake, "SkyCamZ", "clear")
    assert night == "2013-06-10" and len(frames) == 14 and len(sources) == now["n_real"].sum() > 0
    section, images = dia_section(lake, "SkyCamZ", "clear", tmp_path, "skycamz")
    assert "<h2>Difference imaging of 2013-06-10</h2>" in section
    assert f"12 of 14 frames subtracted, {len(sources)} real DIA sources" in section
    assert "2 not subtracted: no reference covers this frame" in section
    n_objects = sources["dia_object_id"].nunique()
    assert f"({n_objects})</h3>" in section and section.count("<tr>") == n_objects + 1
    (png,) = images
    with Image.open(png) as picture:
        width, height = picture.size
    assert width == 800 and height > 240 * min(n_objects, STAMP_ROWS)  # a row of three cutouts per DIA object
    assert dia_section(lake, "SkyCamZ", "V", tmp_path, "none") == ("", [])  # a camera with no difference: nothing


def _gaussian(sigma: float) -> np.ndarray:
    """The unit-sum Gaussian :func:`skylake.dia.difference.broaden` convolves with (a delta broadened)."""
    from skylake.dia.difference import broaden

    half = int(np.ceil(4 * sigma))
    delta = np.zeros((2 * half + 1, 2 * half + 1))
    delta[half, half] = 1.0
    return broaden(delta, np.ones_like(delta), sigma)[0]
