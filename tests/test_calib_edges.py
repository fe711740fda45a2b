"""The calibration cross-match at HEALPix partition edges: SYNTHETIC reference stars placed along
the edges of order-8 pixels (so along every partition edge of both the refcat and the source
table), sources scattered up to 12" around them in three frames (some pairs competing for one
star), matched through lsdb with the refcat's margin cache. The one-to-one pairs must be exactly
those of a brute-force astropy ``match_to_catalog_sky`` over the whole catalogue."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from hats.pixel_math.spatial_index import compute_spatial_index

from skylake.calib.calibrate import dask_scheduler
from skylake.calib.crossmatch import match_frames
from skylake.lake import Lake
from skylake.lake.tables import FRAMES, SOURCES
from skylake.refcat import import_refcat, refcat_path
from skylake.schema import conform, table_schema

RADIUS = 9.0  # arcsec, SkyCamZ's
PIXEL_THRESHOLD, HIGHEST_ORDER = 3000, 7  # refcat partitions of orders 5-7
BOX = (40.0, 43.0, 8.0, 11.0)  # ra, dec [deg] of the reference stars
INNER = (40.5, 42.5, 8.5, 10.5)  # where the sources are: 0.5 deg inside, so their stars all exist


def _offset(ra, dec, sep_arcsec, angle):
    c = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(angle * u.rad, sep_arcsec * u.arcsec)
    return c.ra.deg, c.dec.deg


def _write_sources(lake: Lake, src: pd.DataFrame):
    """Commit ``src`` (frame_id, ra, dec) as source and frame rows, as an ingest would."""
    n = len(src)
    schema = table_schema(SOURCES)  # every column filled: zeros, "" for text (all-sky provenance)
    cols = {
        f.name: np.full(n, "", dtype=object)
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        else np.zeros(n, dtype=f.type.to_pandas_dtype())
        for f in schema
    }
    cols.update(
        _healpix_29=compute_spatial_index(src["ra"].to_numpy(), src["dec"].to_numpy()),
        source_id=src["source_id"].to_numpy(),
        frame_id=src["frame_id"].to_numpy(),
        ra=src["ra"].to_numpy(),
        dec=src["dec"].to_numpy(),
    )
    ra0, ra1, d0, d1 = BOX  # the frames' footprint holds every source
    frames = [
        {
            "frame_id": f,
            "frame_key": f"edge-{f}",
            "status": "ok",
            "night": "2026-01-01",
            "nx": 1000,
            "ny": 1000,
            "saturation": 60000.0,
            "footprint_ra": [ra0, ra1, ra1, ra0],
            "footprint_dec": [d0, d0, d1, d1],
            "n_sources": int((src["frame_id"] == f).sum()),
        }
        for f in sorted(src["frame_id"].unique())
    ]
    with lake.transaction("ingest") as tx:
        tx.allocate_frame_ids(len(frames))
        tx.stage_healpix(SOURCES, conform(cols, SOURCES))
        table = pa.Table.from_pylist(
            [{k: v for k, v in f.items() if k != "night"} for f in frames], schema=table_schema(FRAMES)
        )
        tx.stage_nights(FRAMES, table, [f["night"] for f in frames])
        tx.commit()
    return pd.DataFrame(frames)


@pytest.fixture(scope="module")
def edge_lake(tmp_path_factory, dask_client):
    rng = np.random.default_rng(29)
    root = tmp_path_factory.mktemp("edges")
    ra0, ra1, d0, d1 = BOX
    n_bg = 15_000  # ~1700 per deg^2: no pixel of the box is empty, so the refcat tiles it
    bg_ra, bg_dec = rng.uniform(ra0, ra1, n_bg), np.degrees(np.arcsin(rng.uniform(*np.sin(np.radians([d0, d1])), n_bg)))
    # stars on the edges of every order-8 pixel of the inner box (edges of any coarser pixel too)
    vec = hp.ang2vec(
        np.r_[INNER[0], INNER[1], INNER[1], INNER[0]], np.r_[INNER[2], INNER[2], INNER[3], INNER[3]], lonlat=True
    )
    pix = hp.query_polygon(256, vec, inclusive=False, nest=True)
    edge = np.concatenate([hp.boundaries(256, int(p), step=3, nest=True).T for p in pix])
    e_ra, e_dec = hp.vec2ang(edge, lonlat=True)
    e_ra, e_dec = _offset(e_ra, e_dec, rng.uniform(0, 3.0, e_ra.size), rng.uniform(0, 2 * np.pi, e_ra.size))
    refs = pd.DataFrame(
        {
            "id": np.arange(n_bg + e_ra.size) + 1,
            "ra": np.r_[bg_ra, e_ra],
            "dec": np.r_[bg_dec, e_dec],
            "vmag": rng.uniform(8, 14, n_bg + e_ra.size),
        }
    )
    pq.write_table(pa.Table.from_pandas(refs, preserve_index=False), root / "edge_refs.parquet")
    (root / "map.toml").write_text(
        '[columns]\nref_id = "id"\nra = "ra"\ndec = "dec"\nepoch = {const = 2000.0}\nmag_V = "vmag"\n'
    )
    lake = Lake.init(root / "lake", partition_order=7)
    report = import_refcat(
        lake,
        "edges",
        [root / "edge_refs.parquet"],
        "generic",
        columns_map=root / "map.toml",
        pixel_threshold=PIXEL_THRESHOLD,
        highest_order=HIGHEST_ORDER,
        client=dask_client,
        progress=False,
    )
    assert report.partitions > 5 and report.margin_threshold_arcsec == 10.0
    # sources: three frames, one per edge star each, 0-12" away (a quarter beyond the radius),
    # plus 400 second sources within the radius of an edge star in frame 1 (they compete for it)
    rows = []
    for frame in (1, 2, 3):
        r, d = _offset(e_ra, e_dec, rng.uniform(0, 12.0, e_ra.size), rng.uniform(0, 2 * np.pi, e_ra.size))
        rows.append(pd.DataFrame({"frame_id": frame, "ra": r, "dec": d}))
    pick = rng.choice(e_ra.size, 400, replace=False)
    r, d = _offset(e_ra[pick], e_dec[pick], rng.uniform(0, RADIUS, 400), rng.uniform(0, 2 * np.pi, 400))
    rows.append(pd.DataFrame({"frame_id": 1, "ra": r, "dec": d}))
    src = pd.concat(rows, ignore_index=True)
    src["source_id"] = src["frame_id"] * 2**20 + src.groupby("frame_id").cumcount()
    frames = _write_sources(lake, src)
    return lake, refs, src, frames


def _brute_force(src: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """Every source's nearest star over the whole catalogue, within the radius, then per (frame,
    star) the nearest source (ties to the smaller id)."""
    idx, sep, _ = SkyCoord(src["ra"].to_numpy() * u.deg, src["dec"].to_numpy() * u.deg).match_to_catalog_sky(
        SkyCoord(refs["ra"].to_numpy() * u.deg, refs["dec"].to_numpy() * u.deg)
    )
    pairs = src.assign(ref_id=refs["id"].to_numpy()[idx], sep=sep.to_value(u.arcsec))
    pairs = pairs[pairs["sep"] <= RADIUS].sort_values(["frame_id", "ref_id", "sep", "source_id"])
    return pairs.drop_duplicates(["frame_id", "ref_id"])


def test_pairs_across_partition_edges_equal_brute_force_astropy(edge_lake, dask_client):
    lake, refs, src, frames = edge_lake
    with dask_scheduler(dask_client):
        got = match_frames(lake.url, frames, refcat_path(lake, "edges"), "V", [], RADIUS)
    want = _brute_force(src, refs)
    assert len(want) > 1_500
    assert sorted(zip(got["source_id"], got["ref_id"])) == sorted(zip(want["source_id"], want["ref_id"]))
    sep = got.set_index("source_id")["sep_arcsec"]
    assert np.allclose(sep.loc[want["source_id"]].to_numpy(), want["sep"].to_numpy(), atol=1e-6)
    # the test means something: many pairs straddle a partition edge of the refcat and of the sources
    import hats

    parts = hats.read_hats(refcat_path(lake, "edges")).main_catalog.get_healpix_pixels()
    orders = {p.order for p in parts}
    assert len(orders) > 1  # partitions of different sizes meet

    def partition(ra, dec):
        h29 = compute_spatial_index(np.asarray(ra), np.asarray(dec))
        out = np.full(h29.size, -1)
        for k, p in enumerate(parts):
            shift = 2 * (29 - p.order)
            out[(h29 >> shift) == p.pixel] = k
        return out

    ref_pos = refs.set_index("id").loc[got["ref_id"]]
    crossing = partition(got["ra"], got["dec"]) != partition(ref_pos["ra"], ref_pos["dec"])
    assert crossing.sum() > 100
    lake_pix = compute_spatial_index(got["ra"].to_numpy(), got["dec"].to_numpy()) >> 2 * (29 - 7)
    assert (
        lake_pix != compute_spatial_index(ref_pos["ra"].to_numpy(), ref_pos["dec"].to_numpy()) >> 2 * (29 - 7)
    ).sum() > 100
    # one-to-one: competing sources of frame 1 lost to the nearer one
    assert got.groupby(["frame_id", "ref_id"]).size().max() == 1 and (got["n_competing"] > 0).sum() > 100
