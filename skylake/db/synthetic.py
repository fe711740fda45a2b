"""SYNTHETIC lake rows for the summary database's tests and benchmarks: a night of frame records,
their zeropoints and the night's extinction fit, committed through the lake's own transaction exactly
as ingest and calibrate commit them (no images: refresh reads nothing else).
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
                 color_term: float = 0.05, instrument: str = "SkyCamZ", filt: str = "clear") -> int:
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
            "instrument": [instrument] * n_frames, "filter": [filt] * n_frames, "mjd": mjd,
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
