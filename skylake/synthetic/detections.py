"""SYNTHETIC detections written straight into a lake (no images), for the objects tests and benchmark.

A night of ``n_frames`` frames observes a set of stars (``stars``: ra, dec [deg], mag, and optionally
amplitude [mag] and period_d [d] of a sinusoidal variation): every frame detects every star, at its
position plus Gaussian scatter ``pos_err_arcsec`` per axis, with ``inst_mag = mag + A sin(2 pi mjd / P)
+ N(0, mag_err) - ZP`` and error ``mag_err``. Source and frame rows are committed through
:meth:`skylake.lake.Lake.transaction` like an ingest (one commit per night, one file per partition),
frames marked ``instrument = object = 'SYNTHETIC'``, ``profile = 'synthetic'``. No calibration is
written: the objects built from them use ``inst_mag``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
from hats.pixel_math.spatial_index import compute_spatial_index

from skylake.lake import Lake
from skylake.lake.tables import FRAMES, SOURCES
from skylake.schema import table_schema

__all__ = ["ZP", "SYNTHETIC", "MAX_PER_FRAME", "random_stars", "commit_night"]


ZP = 20.0  # mag of 1 ADU/s
SYNTHETIC = "SYNTHETIC"
MAX_PER_FRAME = (1 << 20) - 1  # detection numbers per frame that fit the source_id encoding


def _table(name: str, n: int, cols: dict) -> pa.Table:
    """Rows of table ``name`` with ``cols`` given and every other column null."""
    schema = table_schema(name)
    return pa.Table.from_arrays(
        [pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type) for f in schema], schema=schema
    )


def random_stars(n: int, ra_range, dec_range, rng: np.random.Generator, mag_range=(10.0, 16.0)) -> pd.DataFrame:
    """``n`` constant stars uniform on the sky within the RA/Dec box [deg] and uniform in magnitude.

    Parameters
    ----------
    n : int
        Stars.
    ra_range, dec_range : tuple of float
        The box's RA and Dec limits, deg.
    rng : numpy.random.Generator
        The random numbers.
    mag_range : tuple of float
        The magnitudes' limits.

    Returns
    -------
    pandas.DataFrame
        ``ra``, ``dec``, ``mag``, ``amplitude`` (0) and ``period_d`` (1) of each star.
    """
    sin_dec = rng.uniform(*np.sin(np.radians(dec_range)), n)
    return pd.DataFrame(
        {
            "ra": rng.uniform(*ra_range, n),
            "dec": np.degrees(np.arcsin(sin_dec)),
            "mag": rng.uniform(*mag_range, n),
            "amplitude": np.zeros(n),
            "period_d": np.ones(n),
        }
    )


def commit_night(
    lake: Lake,
    stars: pd.DataFrame,
    night: str,
    n_frames: int,
    rng: np.random.Generator,
    *,
    cadence_d: float = 0.02,
    pos_err_arcsec: float = 0.3,
    mag_err: float = 0.01,
) -> int:
    """Commit one SYNTHETIC night (module docstring) and return its lake version.

    The night starts at 21:36 UTC of ``night`` (YYYY-MM-DD); frames follow every ``cadence_d`` days.

    Parameters
    ----------
    lake : Lake
        The lake to commit to.
    stars : pandas.DataFrame
        ``ra``, ``dec`` [deg], ``mag`` and optionally ``amplitude`` [mag] and ``period_d`` [d].
    night : str
        The night, YYYY-MM-DD.
    n_frames : int
        Frames in the night.
    rng : numpy.random.Generator
        The random numbers.
    cadence_d : float
        Time between frames, d.
    pos_err_arcsec : float
        Gaussian scatter of the positions per axis, arcsec.
    mag_err : float
        Gaussian scatter of the magnitudes, and their stated error, mag.

    Returns
    -------
    int
        The lake version of the commit.

    Raises
    ------
    ValueError
        When there are more stars than a frame's source ids can number.
    """
    n = len(stars)
    if n > MAX_PER_FRAME:
        raise ValueError(f"{n} stars do not fit one frame's source ids (at most {MAX_PER_FRAME})")
    mjd0 = (dt.date.fromisoformat(night) - dt.date(1858, 11, 17)).days + 0.9
    amp = stars["amplitude"].to_numpy(float) if "amplitude" in stars else np.zeros(n)
    period = stars["period_d"].to_numpy(float) if "period_d" in stars else np.ones(n)
    ra0, dec0, mag0 = (stars[c].to_numpy(float) for c in ("ra", "dec", "mag"))
    scatter = pos_err_arcsec / 3600.0
    with lake.transaction("ingest") as tx:
        frame_ids = tx.allocate_frame_ids(n_frames)
        mjds = mjd0 + np.arange(n_frames) * cadence_d
        pieces = []
        for fid, mjd in zip(frame_ids, mjds):
            dec = dec0 + rng.normal(0, scatter, n)
            ra = (ra0 + rng.normal(0, scatter, n) / np.cos(np.radians(dec0))) % 360.0
            mag = mag0 + amp * np.sin(2 * np.pi * mjd / period) + rng.normal(0, mag_err, n)
            pieces.append(
                _table(
                    SOURCES,
                    n,
                    {
                        "_healpix_29": np.asarray(compute_spatial_index(ra, dec), dtype=np.int64),
                        "source_id": fid * (1 << 20) + np.arange(n),
                        "frame_id": np.full(n, fid),
                        "ra": ra,
                        "dec": dec,
                        "mjd": np.full(n, mjd),
                        "inst_mag": mag - ZP,
                        "inst_mag_err": np.full(n, mag_err),
                        "flags": np.zeros(n, np.int32),
                    },
                )
            )
        tx.stage_healpix(SOURCES, pa.concat_tables(pieces))
        frames = _table(
            FRAMES,
            n_frames,
            {
                "frame_id": frame_ids,
                "frame_key": [f"synthetic-{night}-{k}-{rng.integers(1 << 62)}" for k in range(n_frames)],
                "path": [f"synthetic://{night}/{k}" for k in range(n_frames)],
                "profile": ["synthetic"] * n_frames,
                "status": ["ok"] * n_frames,
                "reason": [""] * n_frames,
                "n_sources": np.full(n_frames, n, np.int32),
                "instrument": [SYNTHETIC] * n_frames,
                "object": [SYNTHETIC] * n_frames,
                "mjd": mjds,
                "exptime": np.full(n_frames, 1.0, np.float32),
            },
        )
        tx.stage_nights(FRAMES, frames, [night] * n_frames)
        return tx.commit(summary={"synthetic": True}).version
