"""SYNTHETIC lake rows for the summary database's tests and benchmarks.

A night of frame records, their zeropoints and the night's extinction fit, committed through the lake's own
transaction exactly as ingest and calibrate commit them (no images: refresh reads nothing else), and a night's
HEALPix map stored as ``skylake maps`` stores one.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from skylake.lake.tables import EXTINCTION, FRAMES, MATCHES, OBJECTS, SOURCES, ZEROPOINTS
from skylake.schema import table_schema

__all__ = [
    "MJD_OF_1858_11_17",
    "night_mjd",
    "commit_night",
    "commit_map",
    "commit_archive",
    "ARCHIVE_OBJECT_IDS",
    "commit_objects",
    "MEASUREMENTS",
    "tile_stars",
    "commit_sources_night",
    "commit_sources_nights",
]


MJD_OF_1858_11_17 = dt.date(1858, 11, 17)


def night_mjd(night: str) -> float:
    """MJD of 21:36 UTC at the start of ``night`` (YYYY-MM-DD).

    Parameters
    ----------
    night : str
        The night, YYYY-MM-DD.

    Returns
    -------
    float
        The MJD (UTC).
    """
    return (dt.date.fromisoformat(night) - MJD_OF_1858_11_17).days + 0.9


def _table(name: str, cols: dict) -> pa.Table:
    schema = table_schema(name)
    n = len(next(iter(cols.values())))
    return pa.table(
        {f.name: pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type) for f in schema},
        schema=schema,
    )


def commit_night(
    lake,
    night: str,
    n_frames: int,
    rng: np.random.Generator,
    *,
    zp_airmass1: float = 21.35,
    k_ext: float = 0.15,
    ok_fraction: float = 0.9,
    cloudy_fraction: float = 0.0,
    color_term: float = 0.05,
    instrument: str = "SkyCamZ",
    filt: str = "clear",
    profile: str = "skycamz",
) -> int:
    """Commit one night: frame rows, an ok zeropoint per ok frame and the night's extinction fit.

    There are ``n_frames`` frame rows (``ok_fraction`` ok, the rest rejected), an ok zeropoint per ok frame,
    ``zp = zp_airmass1 - k_ext (airmass - 1)`` with 0.02 mag noise, of which ``cloudy_fraction`` lose 0.3-2 mag
    to cloud, and the night's extinction fit ``k_ext``.

    Parameters
    ----------
    lake : Lake
        The lake to commit to.
    night : str
        The night, YYYY-MM-DD.
    n_frames : int
        Frame rows.
    rng : numpy.random.Generator
        The random numbers.
    zp_airmass1 : float
        The zeropoint at airmass 1, mag.
    k_ext : float
        The extinction coefficient, mag per airmass.
    ok_fraction : float
        Probability of a frame being ok.
    cloudy_fraction : float
        Probability of an ok frame losing 0.3-2 mag to cloud.
    color_term : float
        The zeropoints' colour term.
    instrument : str
        The frames' instrument.
    filt : str
        The frames' filter.
    profile : str
        The frames' profile.

    Returns
    -------
    int
        The commit's lake version.
    """
    now = dt.datetime.now(dt.UTC)
    with lake.transaction("ingest") as tx:
        ids = tx.allocate_frame_ids(n_frames)
        mjd = night_mjd(night) + np.arange(n_frames) * (0.4 / max(n_frames, 1))
        airmass = 1.0 + rng.uniform(0, 1.0, n_frames)
        status = np.where(rng.uniform(size=n_frames) < ok_fraction, "ok", "rejected")
        frames = _table(
            FRAMES,
            {
                "frame_id": ids,
                "frame_key": [f"{night}-{i}" for i in range(n_frames)],
                "path": [f"/archive/{night}/f{i:04d}.fits" for i in range(n_frames)],
                "hdu": np.zeros(n_frames, int),
                "status": status,
                "reason": [""] * n_frames,
                "n_sources": rng.integers(500, 3000, n_frames),
                "instrument": [instrument] * n_frames,
                "filter": [filt] * n_frames,
                "profile": [profile] * n_frames,
                "mjd": mjd,
                "exptime": [10.0] * n_frames,
                "airmass": airmass,
                "bkg_median": rng.normal(800, 50, n_frames),
                "fwhm_median": rng.normal(3, 0.2, n_frames),
                "batch_id": [tx.batch_id] * n_frames,
                "ingested_at": [now] * n_frames,
            },
        )
        tx.stage_nights(FRAMES, frames, [night] * n_frames)
        ok = status == "ok"
        n_ok = int(ok.sum())
        zp = zp_airmass1 - k_ext * (airmass[ok] - 1.0) + rng.normal(0, 0.02, n_ok)
        cloudy = rng.uniform(size=n_ok) < cloudy_fraction
        zp[cloudy] -= rng.uniform(0.3, 2.0, int(cloudy.sum()))
        zeropoints = _table(
            ZEROPOINTS,
            {
                "frame_id": ids[ok],
                "refcat": ["tycho2"] * n_ok,
                "calib_key": ["k1"] * n_ok,
                "zp": zp,
                "zp_fit": zp,
                "zp_status": ["ok"] * n_ok,
                "zp_reason": [""] * n_ok,
                "airmass": airmass[ok],
                "mjd": mjd[ok],
                "color_term": np.full(n_ok, color_term),
                "zp_n": rng.integers(30, 300, n_ok),
                "batch_id": [tx.batch_id] * n_ok,
                "calibrated_at": [now] * n_ok,
            },
        )
        tx.stage_nights(ZEROPOINTS, zeropoints, [night] * n_ok)
        tx.stage_nights(
            EXTINCTION,
            _table(
                EXTINCTION,
                {
                    "refcat": ["tycho2"],
                    "calib_key": ["k1"],
                    "k_ext": [k_ext],
                    "ext_status": ["ok"],
                    "calibrated_at": [now],
                },
            ),
            [night],
        )
        return tx.commit().version


def commit_map(
    lake,
    night: str,
    rng: np.random.Generator,
    *,
    profile: str = "skycamz",
    nside: int = 8,
    frame_of: str = "equatorial",
    cloud_centre=(180.0, 30.0),
    cloud_radius_deg: float = 20.0,
) -> str:
    """Store one night map (skylake.maps.store.store_maps) of every pixel north of Dec -30.

    The map has transparency 1 except 0.3 within ``cloud_radius_deg`` of ``cloud_centre``, and a
    21 mag/arcsec2 sky.

    Parameters
    ----------
    lake : Lake
        The lake to store the map in.
    night : str
        The night, YYYY-MM-DD.
    rng : numpy.random.Generator
        The random numbers.
    profile : str
        The map's profile.
    nside : int
        The HEALPix nside (NESTED pixels).
    frame_of : str
        The map's coordinate frame.
    cloud_centre : (float, float)
        The cloud's centre (lon, lat), deg.
    cloud_radius_deg : float
        The cloud's radius, deg.

    Returns
    -------
    str
        The map's map_id.
    """
    import healpy as hp
    import pandas as pd

    from skylake.maps.build import MapSet, map_id
    from skylake.maps.store import store_maps

    lon, lat = hp.pix2ang(nside, np.arange(hp.nside2npix(nside)), nest=True, lonlat=True)
    pixel = np.flatnonzero(lat > -30)
    lon, lat = lon[pixel], lat[pixel]
    centre = hp.ang2vec(*cloud_centre, lonlat=True)
    cloudy = hp.ang2vec(lon, lat, lonlat=True) @ centre > np.cos(np.radians(cloud_radius_deg))
    transparency = np.where(cloudy, 0.3, 1.0)
    n = len(pixel)
    mid = map_id("night", {"night": night}, nside, frame_of, profile, "tycho2", "auto", 3)
    pixels = pd.DataFrame(
        {
            "map_id": mid,
            "nside": nside,
            "frame_of": frame_of,
            "pixel": pixel,
            "lon": lon,
            "lat": lat,
            "n_stars": rng.integers(3, 50, n),
            "n_seen": np.full(n, None),
            "map_flags": np.zeros(n, np.int32),
            "n_frames": rng.integers(1, 20, n),
            "zp_median": 21.3 + 2.5 * np.log10(transparency),
            "zp_clear_median": np.full(n, 21.3),
            "transparency": transparency,
            "dzp_scatter": np.full(n, 0.02),
            "n_sky": rng.integers(10, 500, n),
            "sky_mag": 21.0 + rng.normal(0, 0.05, n),
            "sky_mag_scatter": np.full(n, 0.05),
            "n_astro": np.full(n, 5),
            "dra_arcsec": np.zeros(n),
            "ddec_arcsec": np.zeros(n),
            "sep_arcsec": np.full(n, 1.0),
            "night": night,
        }
    )
    mjd = night_mjd(night)
    index = pd.DataFrame(
        [
            {
                "map_id": mid,
                "scope": "night",
                "night_min": night,
                "night_max": night,
                "frame_id": None,
                "n_frames": 20,
                "mjd_min": mjd,
                "mjd_max": mjd + 0.4,
                "nside": nside,
                "frame_of": frame_of,
                "profile": profile,
                "refcat": "tycho2",
                "calib_keys": "k1",
                "zp_clear": "auto",
                "min_stars": 3,
                "n_pixels": n,
                "n_stars": int(pixels["n_stars"].sum()),
                "n_sky": int(pixels["n_sky"].sum()),
            }
        ]
    )
    store_maps(lake, MapSet(pixels=pixels, index=index))
    return mid


def commit_archive(
    lake,
    n_frames: int,
    n_nights: int,
    rng: np.random.Generator,
    *,
    per_commit: int = 100_000,
    first_night: str = "2016-01-01",
    profile: str = "skycamz",
    refcat: str | None = None,
) -> None:
    """Commit ``n_frames`` SYNTHETIC frame rows spread over ``n_nights`` consecutive nights.

    There are ``per_commit`` rows per commit (frame rows and their frame-index rows only: an archive's
    metadata for scale benchmarks, made through the lake's own transactions). Paths and keys are unique per
    row. With ``refcat``, each ok frame also gets an ok zeropoint row against that catalogue, in the same
    commit.

    Parameters
    ----------
    lake : Lake
        The lake to commit to.
    n_frames : int
        Frame rows.
    n_nights : int
        Nights they are spread over (each frame's night drawn at random).
    rng : numpy.random.Generator
        The random numbers.
    per_commit : int
        Frame rows per commit.
    first_night : str
        The first night, YYYY-MM-DD.
    profile : str
        The frames' profile.
    refcat : str, optional
        The catalogue of the ok frames' zeropoint rows; default none.
    """
    start = dt.date.fromisoformat(first_night)
    night_of = np.sort(rng.integers(0, n_nights, n_frames))
    now = dt.datetime.now(dt.UTC)
    for lo in range(0, n_frames, per_commit):
        hi = min(lo + per_commit, n_frames)
        n = hi - lo
        nights = [(start + dt.timedelta(days=int(d))).isoformat() for d in night_of[lo:hi]]
        with lake.transaction("ingest") as tx:
            ids = tx.allocate_frame_ids(n)
            keys = [f"{k:064x}" for k in rng.integers(0, 2**62, n)]
            frames = _table(
                FRAMES,
                {
                    "frame_id": ids,
                    "frame_key": keys,
                    "content_hash": keys,
                    "hdu": np.zeros(n, int),
                    "path": [f"/archive/{night}/f{i:07d}.fits" for night, i in zip(nights, range(lo, hi))],
                    "status": np.where(rng.uniform(size=n) < 0.9, "ok", "rejected"),
                    "reason": [""] * n,
                    "n_sources": rng.integers(500, 3000, n),
                    "instrument": ["SkyCamZ"] * n,
                    "filter": ["clear"] * n,
                    "profile": [profile] * n,
                    "pipeline_version": [f"2+{profile}.0000"] * n,
                    "mjd": [night_mjd(night) for night in nights],
                    "exptime": [10.0] * n,
                    "batch_id": [tx.batch_id] * n,
                    "ingested_at": [now] * n,
                },
            )
            tx.stage_nights(FRAMES, frames, nights)
            if refcat:
                ok = np.flatnonzero(frames.column("status").to_numpy(zero_copy_only=False) == "ok")
                m = len(ok)
                zp = 21.3 + rng.normal(0, 0.05, m)
                tx.stage_nights(
                    ZEROPOINTS,
                    _table(
                        ZEROPOINTS,
                        {
                            "frame_id": ids[ok],
                            "refcat": [refcat] * m,
                            "calib_key": ["k1"] * m,
                            "zp": zp,
                            "zp_fit": zp,
                            "zp_err": np.full(m, 0.01),
                            "zp_status": ["ok"] * m,
                            "zp_reason": [""] * m,
                            "mjd": [night_mjd(nights[i]) for i in ok],
                            "zp_n": rng.integers(30, 300, m),
                            "batch_id": [tx.batch_id] * m,
                            "calibrated_at": [now] * m,
                        },
                    ),
                    [nights[i] for i in ok],
                )
            tx.commit()


#: Ids of SYNTHETIC archive objects start here: far above any source_id (frame_id * 2**20 + n) of a lake
#: with fewer than 2**30 frames, so no new detection is taken for one's founder.
ARCHIVE_OBJECT_IDS = 1 << 50


def commit_objects(
    lake,
    n_objects: int,
    rng: np.random.Generator,
    *,
    points: int = 3,
    refcat: str = "",
    centre=(150.0, 20.0),
    radius_deg: float = 15.0,
    positions=None,
    chunk: int = 200_000,
) -> int:
    """Commit a SYNTHETIC LAKE/objects of ``n_objects`` objects, with their light-curve points.

    The objects are uniform within ``radius_deg`` of ``centre`` (RA, Dec in degrees; the default holds the
    SYNTHETIC demo field), or at ``positions`` (ra, dec arrays [deg]; ``n_objects`` is then their number) with
    ``points`` light-curve points each in LAKE/lightcurves (frames drawn from the lake's frames), built as
    ``skylake objects build`` writes them: one file per partition at the lake's order, both catalogs' HATS
    metadata, the settings with the watermark at this commit, and every frame of the lake (with n_sources > 0)
    held, with its latest calibration against ``refcat``, so that the next ``build_objects`` is an update.

    Parameters
    ----------
    lake : Lake
        The lake to commit to.
    n_objects : int
        Objects (with ``positions``, their number is used instead).
    rng : numpy.random.Generator
        The random numbers.
    points : int
        Light-curve points per object.
    refcat : str
        The catalogue of the frames' calibrations (empty: none).
    centre : (float, float)
        RA, Dec of the objects' cap, deg.
    radius_deg : float
        Radius of the cap, deg.
    positions : (array_like, array_like), optional
        RA and Dec of the objects, deg, instead of the cap.
    chunk : int
        Objects made at a time (whole partitions).

    Returns
    -------
    int
        The commit's version.
    """
    import json

    import pandas as pd
    from hats.pixel_math import HealpixPixel
    from hats.pixel_math.spatial_index import compute_spatial_index, spatial_index_to_healpix

    from skylake.lake import hats_meta
    from skylake.lake.parquet import parquet_bytes
    from skylake.lake.tables import LIGHTCURVES
    from skylake.lake.versions import latest_versions
    from skylake.objects import build as ob
    from skylake.objects.files import POINTS_ROW_GROUP, ROW_GROUP, sort_points
    from skylake.objects.summary import summarise

    order = lake.config.partition_order
    frames = latest_versions(
        lake.read_frames(columns=["frame_id", "n_sources", "content_hash", "hdu", "mjd", "night"]).to_pandas()
    )
    frames = frames[frames["n_sources"] > 0].reset_index(drop=True)
    calibs = (
        ob.latest_calibrations(lake, refcat)
        if refcat
        else pd.DataFrame({"frame_id": pd.Series([], dtype=np.int64), "calib": pd.Series([], dtype=object)})
    )
    import healpy as hp

    z = rng.uniform(np.cos(np.radians(radius_deg)), 1.0, n_objects)  # uniform in the cap around the pole...
    phi = rng.uniform(0, 2 * np.pi, n_objects)
    c = hp.ang2vec(*centre, lonlat=True)
    e1 = np.cross([0.0, 0.0, 1.0], c) if abs(c[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(c, e1)
    r = np.sqrt(1 - z**2)
    vec = np.outer(r * np.cos(phi), e1) + np.outer(r * np.sin(phi), e2) + np.outer(z, c)  # ...turned to centre
    ra, dec = hp.vec2ang(vec, lonlat=True)
    ra, dec = np.asarray(ra, float) % 360.0, np.asarray(dec, float)
    if positions is not None:
        ra, dec = (np.asarray(p, float) for p in positions)
        n_objects = len(ra)
    h29 = np.asarray(compute_spatial_index(ra, dec), np.int64)
    by = np.argsort(h29, kind="stable")
    ra, dec, h29 = ra[by], dec[by], h29[by]
    part = spatial_index_to_healpix(h29, target_order=order)
    with lake.transaction(OBJECTS) as tx:
        # the commit writes both catalogs' HATS metadata from these (as skylake.objects.build's does)
        objects_meta, points_meta = tx.catalog(ob.OBJECTS, fresh=True), tx.catalog(LIGHTCURVES, fresh=True)
        starts = np.flatnonzero(np.r_[True, part[1:] != part[:-1]])
        bounds = np.r_[starts, n_objects]
        lo = 0
        while lo < len(starts):  # whole partitions, about ``chunk`` objects at a time
            hi = min(int(np.searchsorted(starts, starts[lo] + chunk, side="left")), len(starts))
            hi = max(hi, lo + 1)
            a, b = starts[lo], bounds[hi]
            n = b - a
            k = np.repeat(np.arange(a, b), points)
            pick = rng.integers(0, max(len(frames), 1), len(k))
            fid = frames["frame_id"].to_numpy(np.int64)[pick] if len(frames) else np.zeros(len(k), np.int64)
            mjd = frames["mjd"].to_numpy(float)[pick] if len(frames) else np.zeros(len(k))
            inst = rng.uniform(-10, -4, n)[k - a] + rng.normal(0, 0.01, len(k))
            flat = pd.DataFrame(
                {
                    "mjd": mjd,
                    "mag": np.full(len(k), np.nan, np.float32),
                    "mag_err": np.full(len(k), np.nan, np.float32),
                    # uncalibrated points: no zeropoint magnitude, nothing detrended
                    **{v: np.full(len(k), np.nan, np.float32) for v in ("mag_zp", "mag_epd", "mag_tfa")},
                    "inst_mag": inst.astype(np.float32),
                    "inst_mag_err": np.full(len(k), 0.01, np.float32),
                    "aperture": pd.array([None] * len(k), dtype="string"),
                    "mag_err_phot": np.full(len(k), 0.01, np.float32),
                    "ra": ra[k] + rng.normal(0, 1e-4, len(k)),
                    "dec": dec[k] + rng.normal(0, 1e-4, len(k)),
                    "frame_id": fid,
                    "source_id": ARCHIVE_OBJECT_IDS + np.arange(len(k)) + a * points,
                    "flags": np.zeros(len(k), np.int32),
                    "object_id": ARCHIVE_OBJECT_IDS + k,
                    "ref_id": pd.array([pd.NA] * len(k), dtype="Int64"),
                    "refcat": "",
                }
            )
            table = summarise(flat, refcat)
            keys = spatial_index_to_healpix(table.column("_healpix_29").to_numpy(), target_order=order)
            cut = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
            for s, e in zip(cut[:-1], cut[1:]):
                pixel = HealpixPixel(order, int(keys[s]))
                objects_meta.add_partition(pixel)
                tx.stage(
                    ob.OBJECTS,
                    f"{hats_meta.pixel_dir(order, pixel.pixel)}/{tx.batch_id}.parquet",
                    table.slice(s, e - s),
                    row_group_size=ROW_GROUP,
                )
            home = pd.Series(table.column("_healpix_29").to_numpy(), index=table.column("object_id").to_numpy())
            flat["_healpix_29"] = home.reindex(flat["object_id"]).to_numpy(np.int64)  # filed under its object
            pts = pa.Table.from_pandas(
                flat[table_schema(LIGHTCURVES).names], schema=table_schema(LIGHTCURVES), preserve_index=False
            )
            pkeys = spatial_index_to_healpix(pts.column("_healpix_29").to_numpy(), target_order=order)
            for p in np.unique(pkeys):
                piece = sort_points(pts.filter(pa.array(pkeys == p)))
                points_meta.add_partition(HealpixPixel(order, int(p)))
                points_meta.add_rows(piece.column("_healpix_29").to_numpy())
                tx.stage(
                    LIGHTCURVES,
                    f"{hats_meta.pixel_dir(order, int(p))}/{tx.batch_id}.parquet",
                    piece,
                    row_group_size=POINTS_ROW_GROUP,
                )
            lo = hi
        objects_meta.add_rows(h29)
        held = frames[["frame_id", "night"]].merge(calibs[["frame_id", "calib"]], on="frame_id", how="left")
        held = held.fillna({"calib": ""}).assign(n_det=0, pixels=[[] for _ in range(len(held))])
        held["night"] = held["night"].fillna("unknown")
        for night, rows in held.groupby("night"):
            tx.stage_file(
                ob._held_rel(night),
                parquet_bytes(
                    pa.Table.from_pandas(
                        rows[ob.HELD_SCHEMA.names].sort_values("frame_id"), schema=ob.HELD_SCHEMA, preserve_index=False
                    )
                ),
            )
        version = tx.version
        tx.stage_file(
            f"{ob.OBJECTS}/{ob.STATE_FILE}",
            json.dumps(
                {
                    "refcat": refcat,
                    "radius_arcsec": ob.DEFAULT_RADIUS_ARCSEC,
                    "layout": ob.LAYOUT,
                    "version": version,
                    "objects": n_objects,
                }
            ).encode(),
        )
        return tx.commit(summary={"synthetic": True}).version


#: sources columns :func:`commit_sources_night` fills with random numbers (so rows weigh what real ones do)
MEASUREMENTS = (
    "flux_auto",
    "flux_auto_err",
    "kron_radius",
    "flux_ap1",
    "flux_ap1_err",
    "flux_ap2",
    "flux_ap2_err",
    "flux_ap3",
    "flux_ap3_err",
    "flux_max",
    "bkg_local",
    "fwhm",
    "a",
    "b",
    "theta",
    "elongation",
    "ellipticity",
    "edge_dist",
)


def tile_stars(order: int, pixel: int, n: int, seed: int = 0):
    """``n`` SYNTHETIC stars of one HEALPix tile (NESTED ``pixel`` at ``order``), the same every call.

    They are uniform within the pixel (positions drawn at order 20, 0.2" cells) and in magnitude.

    Parameters
    ----------
    order : int
        The tile's HEALPix order.
    pixel : int
        The tile's NESTED pixel.
    n : int
        Stars.
    seed : int
        Seeds the draws, with ``order`` and ``pixel``.

    Returns
    -------
    ra, dec : ndarray
        The stars' positions, deg.
    mag : ndarray
        Their magnitudes, 10-16.
    """
    import healpy as hp
    from hats.pixel_math.healpix_shim import order2nside
    from hats.pixel_math.spatial_index import healpix_to_spatial_index

    rng = np.random.default_rng([seed, order, pixel])
    # the tile's first cell at order 20, and the next tile's
    first, end = healpix_to_spatial_index(order, [pixel, pixel + 1], spatial_index_order=20)
    fine = first + rng.integers(0, int(end - first), n)
    ra, dec = hp.pix2ang(order2nside(20), fine, nest=True, lonlat=True)
    return np.asarray(ra, float), np.asarray(dec, float), rng.uniform(10.0, 16.0, n)


def commit_sources_night(
    lake,
    night: str,
    tiles,
    stars_per_tile: int,
    rng: np.random.Generator,
    *,
    order: int = 5,
    refcat: str = "synth",
    matches: bool = False,
    profile: str = "demo",
    pos_err_arcsec: float = 0.3,
) -> int:
    """Commit one SYNTHETIC night of detections for memory and scale tests.

    There is one frame per tile (a HEALPix pixel at ``order``) seeing its ``stars_per_tile`` stars
    (:func:`tile_stars`), with their sources (the light-curve columns, ``bkg`` and random measurement columns,
    so rows weigh what real ones do), frame rows (centre and footprint: the tile's corners), an ok zeropoint
    each against ``refcat`` and, with ``matches``, reference matches of every fifth star and the night's
    extinction row. One commit, as an ingest and its calibration.

    Parameters
    ----------
    lake : Lake
        The lake to commit to.
    night : str
        The night, YYYY-MM-DD.
    tiles : array_like of int
        The tiles' NESTED pixels at ``order``, one frame each.
    stars_per_tile : int
        Stars per tile.
    rng : numpy.random.Generator
        The random numbers.
    order : int
        The tiles' HEALPix order.
    refcat : str
        The catalogue of the zeropoints and matches.
    matches : bool
        Also commit reference matches and the extinction row.
    profile : str
        The frames' profile.
    pos_err_arcsec : float
        Gaussian scatter of the positions per axis, arcsec.

    Returns
    -------
    int
        The commit's version.
    """
    return commit_sources_nights(
        lake,
        [night],
        tiles,
        stars_per_tile,
        rng,
        order=order,
        refcat=refcat,
        matches=matches,
        profile=profile,
        pos_err_arcsec=pos_err_arcsec,
    )


def commit_sources_nights(
    lake,
    nights: list[str],
    tiles,
    stars_per_tile: int,
    rng: np.random.Generator,
    *,
    order: int = 5,
    refcat: str = "synth",
    matches: bool = False,
    profile: str = "demo",
    pos_err_arcsec: float = 0.3,
    zstd_level: int | None = None,
    repeat: bool = False,
) -> int:
    """:func:`commit_sources_night` of several ``nights`` in one commit.

    There is one sources file per partition for them all: a lake made faster, as after a compaction.

    Parameters
    ----------
    lake : Lake
        The lake to commit to.
    nights : list of str
        The nights, YYYY-MM-DD.
    tiles : array_like of int
        The tiles' NESTED pixels at ``order``, one frame each per night.
    stars_per_tile : int
        Stars per tile.
    rng : numpy.random.Generator
        The random numbers.
    order : int
        The tiles' HEALPix order.
    refcat : str
        The catalogue of the zeropoints and matches.
    matches : bool
        Also commit reference matches and the extinction rows.
    profile : str
        The frames' profile.
    pos_err_arcsec : float
        Gaussian scatter of the positions per axis, arcsec.
    zstd_level : int, optional
        The zstd level of the sources files (default the lake's).
    repeat : bool
        Without ``matches``: the later nights repeat the first one's positions, magnitudes and spatial index
        (the costly part) under their own ids, times and measurement columns (a lake made several times
        faster).

    Returns
    -------
    int
        The version.
    """
    with lake.transaction("ingest") as tx:
        first = _stage_night(
            tx,
            nights[0],
            tiles,
            stars_per_tile,
            rng,
            order=order,
            refcat=refcat,
            matches=matches,
            profile=profile,
            pos_err_arcsec=pos_err_arcsec,
        )
        sources = pa.concat_tables(
            [first]
            + [
                _stage_night(
                    tx,
                    night,
                    tiles,
                    stars_per_tile,
                    rng,
                    order=order,
                    refcat=refcat,
                    matches=matches,
                    profile=profile,
                    pos_err_arcsec=pos_err_arcsec,
                    like=first if repeat and not matches else None,
                )
                for night in nights[1:]
            ]
        )
        tx.stage_healpix(SOURCES, sources, **({} if zstd_level is None else {"zstd_level": zstd_level}))
        del sources
        return tx.commit(summary={"synthetic": True}).version


def _stage_night(
    tx,
    night: str,
    tiles,
    stars_per_tile: int,
    rng: np.random.Generator,
    *,
    order: int,
    refcat: str,
    matches: bool,
    profile: str,
    pos_err_arcsec: float,
    like: pa.Table | None = None,
) -> pa.Table:
    """Stage one night of :func:`commit_sources_night` in ``tx`` but its sources, which it returns (with
    ``like``: those sources under this night's frame ids, source ids and times)."""
    import healpy as hp
    from hats.pixel_math.healpix_shim import order2nside
    from hats.pixel_math.spatial_index import compute_spatial_index

    tiles = np.asarray(tiles, np.int64)
    n_t, n_s = len(tiles), int(stars_per_tile)
    now = dt.datetime.now(dt.UTC)
    zp0 = 20.0
    ids = tx.allocate_frame_ids(n_t)
    mjd = night_mjd(night) + 0.1 + np.arange(n_t) * (0.3 / max(n_t, 1))
    pieces, match_pieces = [], []
    if like is not None:
        fids = np.repeat(np.asarray(ids, np.int64), n_s)
        n = len(fids)
        new = {
            "frame_id": fids,
            "source_id": fids * (1 << 20) + np.tile(np.arange(n_s), n_t),
            "mjd": np.repeat(mjd, n_s),
            "bkg": rng.normal(800, 20, n).astype(np.float32),
            "x": rng.uniform(0, 2048, n),
            "y": rng.uniform(0, 2048, n),
        }
        for name in MEASUREMENTS:  # new values: repeated ones would compress away (not what a night weighs)
            new[name] = rng.random(n, np.float32)
        for name, values in new.items():
            like = like.set_column(
                like.schema.get_field_index(name), name, pa.array(values, like.schema.field(name).type)
            )
        pieces, tiles_todo = [like], []
    else:
        tiles_todo = list(zip(ids, tiles))
    for k, (fid, tile) in enumerate(tiles_todo):
        ra0, dec0, mag0 = tile_stars(order, int(tile), n_s)
        scatter = pos_err_arcsec / 3600.0
        dec = dec0 + rng.normal(0, scatter, n_s)
        ra = (ra0 + rng.normal(0, scatter, n_s) / np.cos(np.radians(dec0))) % 360.0
        inst = (mag0 - zp0 + rng.normal(0, 0.01, n_s)).astype(np.float32)
        sid = int(fid) * (1 << 20) + np.arange(n_s)
        cols = {
            "_healpix_29": np.asarray(compute_spatial_index(ra, dec), np.int64),
            "source_id": sid,
            "frame_id": np.full(n_s, fid),
            "ra": ra,
            "dec": dec,
            "mjd": np.full(n_s, mjd[k]),
            "inst_mag": inst,
            "inst_mag_err": np.full(n_s, 0.01, np.float32),
            "bkg": rng.normal(800, 20, n_s).astype(np.float32),
            "flags": np.zeros(n_s, np.int32),
            "x": rng.uniform(0, 2048, n_s),
            "y": rng.uniform(0, 2048, n_s),
        }
        for name in MEASUREMENTS:
            cols[name] = rng.random(n_s, np.float32)
        cols["npix"] = rng.integers(5, 500, n_s, dtype=np.int32)
        pieces.append(_table(SOURCES, cols))
        if matches:
            m = np.arange(0, n_s, 5)
            match_pieces.append(
                _table(
                    MATCHES,
                    {
                        "source_id": sid[m],
                        "frame_id": np.full(len(m), fid),
                        "refcat": [refcat] * len(m),
                        "calib_key": ["k1"] * len(m),
                        "ref_id": int(tile) * (1 << 24) + m,
                        "ref_mag": mag0[m],
                        "ref_mag_err": np.full(len(m), 0.01),
                        "ref_color": np.full(len(m), 0.5),
                        "inst_mag": inst[m],
                        "inst_mag_err": np.full(len(m), 0.01),
                        "used": np.ones(len(m), bool),
                        "reject": [""] * len(m),
                        "mag": inst[m] + zp0,
                        "mag_err": np.full(len(m), 0.015),
                        "sep_arcsec": np.full(len(m), 0.3),
                        "dra_arcsec": rng.normal(0, 0.2, len(m)),
                        "ddec_arcsec": rng.normal(0, 0.2, len(m)),
                        "x": cols["x"][m],
                        "y": cols["y"][m],
                    },
                )
            )
    centre = hp.pix2ang(order2nside(order), tiles, nest=True, lonlat=True)
    corners = [hp.vec2ang(hp.boundaries(order2nside(order), int(t), step=1, nest=True).T, lonlat=True) for t in tiles]
    frames = _table(
        FRAMES,
        {
            "frame_id": ids,
            "frame_key": [f"synth-{night}-{t}-{rng.integers(1 << 62)}" for t in tiles],
            "content_hash": [f"{rng.integers(1 << 62):064x}" for _ in tiles],
            "hdu": np.zeros(n_t, int),
            "path": [f"synthetic://{night}/{t}" for t in tiles],
            "profile": [profile] * n_t,
            "status": ["ok"] * n_t,
            "pipeline_version": [f"synthetic+{profile}"] * n_t,
            "reason": [""] * n_t,
            "n_sources": np.full(n_t, n_s),
            "instrument": ["SYNTHETIC"] * n_t,
            "object": ["SYNTHETIC"] * n_t,
            "mjd": mjd,
            "exptime": np.full(n_t, 10.0),
            "airmass": np.full(n_t, 1.2),
            "pixscale": np.full(n_t, 10.0),
            "ra_center": centre[0],
            "dec_center": centre[1],
            "footprint_ra": [list(c[0]) for c in corners],
            "footprint_dec": [list(c[1]) for c in corners],
            "batch_id": [tx.batch_id] * n_t,
            "ingested_at": [now] * n_t,
        },
    )
    tx.stage_nights(FRAMES, frames, [night] * n_t)
    tx.stage_nights(
        ZEROPOINTS,
        _table(
            ZEROPOINTS,
            {
                "frame_id": ids,
                "refcat": [refcat] * n_t,
                "calib_key": ["k1"] * n_t,
                "zp": np.full(n_t, zp0),
                "zp_fit": np.full(n_t, zp0),
                "zp_err": np.full(n_t, 0.01),
                "zp_status": ["ok"] * n_t,
                "zp_reason": [""] * n_t,
                "airmass": np.full(n_t, 1.2),
                "mjd": mjd,
                "color_term": np.zeros(n_t),
                "zp_n": np.full(n_t, 100),
                "batch_id": [tx.batch_id] * n_t,
                "calibrated_at": [now] * n_t,
            },
        ),
        [night] * n_t,
    )
    if matches:
        tx.stage_nights(MATCHES, pa.concat_tables(match_pieces), [night] * sum(len(p) for p in match_pieces))
        tx.stage_nights(
            EXTINCTION,
            _table(
                EXTINCTION,
                {
                    "refcat": [refcat],
                    "calib_key": ["k1"],
                    "k_ext": [0.15],
                    "zp_airmass0": [zp0 + 0.15],
                    "ext_status": ["ok"],
                    "calibrated_at": [now],
                },
            ),
            [night],
        )
    return pa.concat_tables(pieces)
