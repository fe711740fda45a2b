"""SYNTHETIC lake rows for the summary database's tests and benchmarks: a night of frame records,
their zeropoints and the night's extinction fit, committed through the lake's own transaction exactly
as ingest and calibrate commit them (no images: refresh reads nothing else), and a night's HEALPix map
stored as ``skylake maps`` stores one.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from skylake.schema import table_schema

MJD_OF_1858_11_17 = dt.date(1858, 11, 17)


def night_mjd(night: str) -> float:
    """MJD of 21:36 UTC at the start of ``night`` (YYYY-MM-DD)."""
    return (dt.date.fromisoformat(night) - MJD_OF_1858_11_17).days + 0.9


def _table(name: str, cols: dict) -> pa.Table:
    schema = table_schema(name)
    n = len(next(iter(cols.values())))
    return pa.table({f.name: pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type)
                     for f in schema}, schema=schema)


def commit_night(lake, night: str, n_frames: int, rng: np.random.Generator, *, zp_airmass1: float = 21.35,
                 k_ext: float = 0.15, ok_fraction: float = 0.9, cloudy_fraction: float = 0.0,
                 color_term: float = 0.05, instrument: str = "SkyCamZ", filt: str = "clear",
                 profile: str = "skycamz") -> int:
    """Commit one night: ``n_frames`` frame rows (``ok_fraction`` ok, the rest rejected), an ok
    zeropoint per ok frame, ``zp = zp_airmass1 - k_ext (airmass - 1)`` with 0.02 mag noise, of which
    ``cloudy_fraction`` lose 0.3-2 mag to cloud, and the night's extinction fit ``k_ext``. Returns
    the commit's lake version."""
    now = dt.datetime.now(dt.timezone.utc)
    with lake.transaction("ingest") as tx:
        ids = tx.allocate_frame_ids(n_frames)
        mjd = night_mjd(night) + np.arange(n_frames) * (0.4 / max(n_frames, 1))
        airmass = 1.0 + rng.uniform(0, 1.0, n_frames)
        status = np.where(rng.uniform(size=n_frames) < ok_fraction, "ok", "rejected")
        frames = _table("frames", {
            "frame_id": ids, "frame_key": [f"{night}-{i}" for i in range(n_frames)],
            "path": [f"/archive/{night}/f{i:04d}.fits" for i in range(n_frames)], "hdu": np.zeros(n_frames, int),
            "status": status, "reason": [""] * n_frames, "n_sources": rng.integers(500, 3000, n_frames),
            "instrument": [instrument] * n_frames, "filter": [filt] * n_frames, "profile": [profile] * n_frames,
            "mjd": mjd,
            "exptime": [10.0] * n_frames, "airmass": airmass, "bkg_median": rng.normal(800, 50, n_frames),
            "fwhm_median": rng.normal(3, 0.2, n_frames), "batch_id": [tx.batch_id] * n_frames,
            "ingested_at": [now] * n_frames})
        tx.stage_frames(frames, [night] * n_frames)
        ok = status == "ok"
        n_ok = int(ok.sum())
        zp = zp_airmass1 - k_ext * (airmass[ok] - 1.0) + rng.normal(0, 0.02, n_ok)
        cloudy = rng.uniform(size=n_ok) < cloudy_fraction
        zp[cloudy] -= rng.uniform(0.3, 2.0, int(cloudy.sum()))
        zeropoints = _table("zeropoints", {
            "frame_id": ids[ok], "refcat": ["tycho2"] * n_ok, "calib_key": ["k1"] * n_ok, "zp": zp, "zp_fit": zp,
            "zp_status": ["ok"] * n_ok, "zp_reason": [""] * n_ok, "airmass": airmass[ok], "mjd": mjd[ok],
            "color_term": np.full(n_ok, color_term), "zp_n": rng.integers(30, 300, n_ok),
            "batch_id": [tx.batch_id] * n_ok, "calibrated_at": [now] * n_ok})
        tx.stage_nights("zeropoints", zeropoints, [night] * n_ok)
        tx.stage_nights("extinction", _table("extinction", {
            "refcat": ["tycho2"], "calib_key": ["k1"], "k_ext": [k_ext], "ext_status": ["ok"],
            "calibrated_at": [now]}), [night])
        return tx.commit().version


def commit_map(lake, night: str, rng: np.random.Generator, *, profile: str = "skycamz", nside: int = 8,
               frame_of: str = "equatorial", cloud_centre=(180.0, 30.0), cloud_radius_deg: float = 20.0) -> str:
    """Store one night map (skylake.maps.store.store_maps) of every pixel north of Dec -30: transparency 1
    except 0.3 within ``cloud_radius_deg`` of ``cloud_centre``, a 21 mag/arcsec2 sky. Returns its map_id."""
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
    pixels = pd.DataFrame({
        "map_id": mid, "nside": nside, "frame_of": frame_of, "pixel": pixel, "lon": lon, "lat": lat,
        "n_stars": rng.integers(3, 50, n), "n_frames": rng.integers(1, 20, n),
        "zp_median": 21.3 + 2.5 * np.log10(transparency), "zp_clear_median": np.full(n, 21.3),
        "transparency": transparency, "dzp_scatter": np.full(n, 0.02), "n_sky": rng.integers(10, 500, n),
        "sky_mag": 21.0 + rng.normal(0, 0.05, n), "sky_mag_scatter": np.full(n, 0.05), "n_astro": np.full(n, 5),
        "dra_arcsec": np.zeros(n), "ddec_arcsec": np.zeros(n), "sep_arcsec": np.full(n, 1.0), "night": night})
    mjd = night_mjd(night)
    index = pd.DataFrame([{
        "map_id": mid, "scope": "night", "night_min": night, "night_max": night, "frame_id": None, "n_frames": 20,
        "mjd_min": mjd, "mjd_max": mjd + 0.4, "nside": nside, "frame_of": frame_of, "profile": profile,
        "refcat": "tycho2", "calib_keys": "k1", "zp_clear": "auto", "min_stars": 3, "n_pixels": n,
        "n_stars": int(pixels["n_stars"].sum()), "n_sky": int(pixels["n_sky"].sum())}])
    store_maps(lake, MapSet(pixels=pixels, index=index))
    return mid


def commit_archive(lake, n_frames: int, n_nights: int, rng: np.random.Generator, *, per_commit: int = 100_000,
                   first_night: str = "2016-01-01", profile: str = "skycamz") -> None:
    """Commit ``n_frames`` SYNTHETIC frame rows spread over ``n_nights`` consecutive nights, ``per_commit``
    rows per commit (frame rows and their frame-index rows only: an archive's metadata for scale
    benchmarks, made through the lake's own transactions). Paths and keys are unique per row."""
    start = dt.date.fromisoformat(first_night)
    night_of = np.sort(rng.integers(0, n_nights, n_frames))
    now = dt.datetime.now(dt.timezone.utc)
    for lo in range(0, n_frames, per_commit):
        hi = min(lo + per_commit, n_frames)
        n = hi - lo
        nights = [(start + dt.timedelta(days=int(d))).isoformat() for d in night_of[lo:hi]]
        with lake.transaction("ingest") as tx:
            ids = tx.allocate_frame_ids(n)
            keys = [f"{k:064x}" for k in rng.integers(0, 2**62, n)]
            frames = _table("frames", {
                "frame_id": ids, "frame_key": keys, "content_hash": keys, "hdu": np.zeros(n, int),
                "path": [f"/archive/{night}/f{i:07d}.fits" for night, i in zip(nights, range(lo, hi))],
                "status": np.where(rng.uniform(size=n) < 0.9, "ok", "rejected"), "reason": [""] * n,
                "n_sources": rng.integers(500, 3000, n), "instrument": ["SkyCamZ"] * n, "filter": ["clear"] * n,
                "profile": [profile] * n, "pipeline_version": [f"2+{profile}.0000"] * n,
                "mjd": [night_mjd(night) for night in nights], "exptime": [10.0] * n,
                "batch_id": [tx.batch_id] * n, "ingested_at": [now] * n})
            tx.stage_frames(frames, nights)
            tx.commit()
