"""SYNTHETIC dithered frames of one field, for coadd tests with exact expectations.

The same stars are on every frame, shifted by whole pixels between frames (no resampling: the coadd's grid is the
first frame's).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.wcs import WCS

from skylake.synthetic.frames import render_frame, tan_wcs_header, write_frame

__all__ = ["DitherTruth", "write_dithered_field"]


@dataclass
class DitherTruth:
    """What :func:`write_dithered_field` wrote: the paths, the stars (sky position, flux per frame) and the noise."""

    paths: list
    stars: pd.DataFrame  # ra, dec, flux [ADU per frame]
    sky: float  # ADU per frame
    gain: float
    read_noise: float
    exptime: float


def write_dithered_field(
    directory,
    *,
    n_frames: int = 12,
    shape=(300, 300),
    n_stars: int = 600,
    flux_range=(30.0, 3e4),
    sky: float = 200.0,
    gain: float = 1.5,
    read_noise: float = 5.0,
    exptime: float = 30.0,
    dither_px: int = 6,
    night: str = "2026-03-01",
    seed: int = 0,
) -> DitherTruth:
    """Write ``n_frames`` SYNTHETIC frames of one field, dithered by whole pixels (module docstring).

    Parameters
    ----------
    directory : str or Path
        Where ``dither_NN.fits`` go.
    n_frames : int
        Frames.
    shape : tuple of int
        (ny, nx).
    n_stars : int
        Stars, fluxes log-uniform in ``flux_range`` [ADU per frame]: from below a single frame's detection
        limit to bright.
    flux_range : tuple of float
        Faintest and brightest star.
    sky, gain, read_noise, exptime : float
        Sky [ADU per frame], gain [e-/ADU], read noise [ADU], exposure time [s].
    dither_px : int
        Largest shift between frames [pix].
    night : str
        Frames start at 22:00 UTC of this date, one a minute.
    seed : int
        Everything follows from it.

    Returns
    -------
    DitherTruth
        The paths and the injected stars.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ny, nx = shape
    base = tan_wcs_header(150.0, 20.0, shape, 4.0)
    wcs = WCS(base)
    m = dither_px + 10
    x, y = rng.uniform(m, nx - 1 - m, n_stars), rng.uniform(m, ny - 1 - m, n_stars)
    ra, dec = wcs.pixel_to_world_values(x, y)
    stars = pd.DataFrame(
        {"ra": ra, "dec": dec, "flux": np.exp(rng.uniform(np.log(flux_range[0]), np.log(flux_range[1]), n_stars))}
    )
    start = dt.datetime.fromisoformat(night) + dt.timedelta(hours=22)
    paths = []
    for i in range(n_frames):
        dx, dy = rng.integers(-dither_px, dither_px + 1, 2) if i else (0, 0)
        header = base.copy()
        header["CRPIX1"] += dx  # the sky moves by (dx, dy) pixels on the chip
        header["CRPIX2"] += dy
        field = pd.DataFrame({"x": x + dx, "y": y + dy, "flux": stars["flux"]})
        data = render_frame(
            field, shape, fwhm_px=2.5, sky_adu=sky, read_noise_adu=read_noise, gain=gain, seed=seed * 1000 + i
        )
        header["DATE-OBS"] = (start + dt.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S")
        header["EXPTIME"] = exptime
        header["GAIN"] = gain
        header["FILTER"] = "V"
        header["INSTRUME"] = "DEMOCAM"
        header["OBJECT"] = "DITHER-FIELD"
        header["AIRMASS"] = 1.2
        path = out / f"dither_{i:02d}.fits"
        write_frame(path, data, header)
        paths.append(path)
    return DitherTruth(paths=paths, stars=stars, sky=sky, gain=gain, read_noise=read_noise, exptime=exptime)
