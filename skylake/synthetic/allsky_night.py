"""A synthetic all-sky night on disk: FITS frames, the catalogue they were drawn from and their profile.

The frames are of a fisheye camera with a known model, the catalogue is a bright-star catalogue and the
profile is the one that ingests them (``skylake demo --allsky``, the tests).

:func:`write_allsky_night` writes, under ``out``::

    frames/allsky_<n>.fits    DATE-OBS (UTC start), EXPTIME; no WCS (the camera model places them)
    stars.parquet             the catalogue (HIP, ra, dec, v_mag): SYNTHETIC stars, not the real sky
    allsky-demo.toml          the profile: [site], [camera] = the true model, [allsky] (catalog = stars.parquet)

Frame 0 is clear; frame 1 has a cloud and a streak. The truth (model, cloud, streak, zeropoint, sky) is
returned, nothing else is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skylake.allsky.camera import CameraModel, Site
from skylake.synthetic.allsky import CloudPatch, Streak, SyntheticAllSky, make_allsky_frame

__all__ = [
    "MODEL",
    "SITE",
    "SHAPE",
    "START",
    "EXPTIME_S",
    "ZEROPOINT",
    "EXTINCTION",
    "SKY_ZENITH",
    "CLOUD",
    "STREAK",
    "PROFILE",
    "AllSkyNight",
    "synthetic_bright_stars",
    "write_allsky_night",
]


#: The synthetic camera: IceAct's lens geometry on La Palma (the demo site).
MODEL = CameraModel("equidistant", 1.45, 0.0075, x0=326.2, y0=250.7, rotation_deg=-86.8)
SITE = Site(28.76, -17.88, 2363.0)
SHAPE = (480, 640)
START = "2024-01-15T23:00:00"
EXPTIME_S, ZEROPOINT, EXTINCTION, SKY_ZENITH = 60.0, 10.0, 0.15, 21.0
CLOUD = CloudPatch(alt_deg=45.0, az_deg=120.0, radius_deg=18.0, depth=0.9, edge_deg=2.0)
STREAK = Streak(150.0, 300.0, 500.0, 150.0, sigma_px=1.0, flux_per_px=1000.0)

PROFILE = f"""# SYNTHETIC all-sky camera of `skylake demo --allsky` (skylake.synthetic.allsky_night):
# the true model of its frames.
extends = "generic"

[profile]
name = "allsky-demo"
description = "skylake's synthetic all-sky camera (frames made by skylake.synthetic.allsky_night)"

[site]
name = "demo site (ORM La Palma)"
lat_deg = {SITE.lat_deg}
lon_deg = {SITE.lon_deg}
height_m = {SITE.height_m}
timezone = "Atlantic/Canary"
night_starts = "12:00"

[defaults]
instrument = "ALLSKY-DEMO"
filter = "V"

[camera]
projection = "{MODEL.projection}"
focal_length_mm = {MODEL.focal_length_mm}
pixel_size_mm = {MODEL.pixel_size_mm}
x0 = {MODEL.x0}
y0 = {MODEL.y0}
rotation_deg = {MODEL.rotation_deg}

[allsky]
catalog = "stars.parquet"
sources = "forced"
extinction = {EXTINCTION}
vmax = 6.0
"""


@dataclass
class AllSkyNight:
    """What :func:`write_allsky_night` wrote and the truth of each frame."""

    root: Path
    profile: Path
    catalog: Path
    frames: list[Path] = field(default_factory=list)
    truth: list[SyntheticAllSky] = field(default_factory=list)


def synthetic_bright_stars(n: int = 9000, seed: int = 0, vmax: float = 6.5):
    """A SYNTHETIC bright-star catalogue.

    It has ``n`` stars uniform on the sphere, V from -1 to ``vmax`` with counts rising as 10**(0.45 V) (about
    the real sky's), ids from 1.

    Parameters
    ----------
    n : int
        Stars.
    seed : int
        Seed of the draws.
    vmax : float
        The faintest magnitude.

    Returns
    -------
    pandas.DataFrame
        ``HIP`` (int64 ids from 1), ``ra``, ``dec`` (deg) and ``v_mag``.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    a, lo = 0.45 * np.log(10.0), -1.0
    u = rng.uniform(0.0, 1.0, n)
    v = np.log(np.exp(a * lo) + u * (np.exp(a * vmax) - np.exp(a * lo))) / a  # inverse CDF of exp(a V)
    return pd.DataFrame({"HIP": np.arange(1, n + 1, dtype=np.int64), "ra": ra, "dec": dec, "v_mag": v})


def write_allsky_night(out, seed: int = 0) -> AllSkyNight:
    """Write the synthetic all-sky night under ``out`` (see the module docstring).

    Parameters
    ----------
    out : str or Path
        The directory (created).
    seed : int
        Seeds the catalogue and the frames' noise.

    Returns
    -------
    AllSkyNight
        The paths written and the truth of each frame.
    """
    from astropy.io import fits
    from astropy.table import Table
    from astropy.time import Time, TimeDelta

    root = Path(out)
    (root / "frames").mkdir(parents=True, exist_ok=True)  # not a table
    stars = synthetic_bright_stars(seed=seed)
    catalog = root / "stars.parquet"
    stars.to_parquet(catalog, index=False)
    profile = root / "allsky-demo.toml"
    profile.write_text(PROFILE)
    night = AllSkyNight(root=root, profile=profile, catalog=catalog)
    cat = Table.from_pandas(stars)
    for i, (cloud, streak) in enumerate(((None, None), (CLOUD, STREAK))):
        start = Time(START, scale="utc") + TimeDelta(1800.0 * i, format="sec")
        mid = start + TimeDelta(EXPTIME_S / 2, format="sec")
        syn = make_allsky_frame(
            MODEL,
            SITE,
            mid,
            cat,
            SHAPE,
            zeropoint=ZEROPOINT,
            exptime_s=EXPTIME_S,
            extinction=EXTINCTION,
            sky_zenith_mag=SKY_ZENITH,
            cloud=cloud,
            streak=streak,
            seed=seed + 10 + i,
        )
        header = fits.Header()
        header["DATE-OBS"] = (start.isot, "UTC start of exposure")
        header["EXPTIME"] = (EXPTIME_S, "[s]")
        header["OBJECT"] = "ALLSKY-SYNTHETIC"
        path = root / "frames" / f"allsky_{i}.fits"  # not a table
        fits.PrimaryHDU(syn.image.astype(np.float32), header).writeto(path, overwrite=True)
        night.frames.append(path)
        night.truth.append(syn)
    return night
