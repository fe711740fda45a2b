"""SYNTHETIC raw frames of one night with known detector effects.

The effects: a bias level with column structure and read noise, dark current with hot pixels, a flat field
(vignetting, pixel response, a dust ring) with dead pixels, cosmic-ray hits (one placed on a star), and the sky
and stars a reduction must give back. Optionally the light frames are dithered (the field moves on the detector
from frame to frame) and their sky carries a fringe pattern fixed on the detector, which only a sky frame
(PRIME's method, ``reduction.steps`` "sky") removes.

Every raw pixel is ``bias + dark_rate * t + flat * (sky + stars)`` with photon noise (Poisson in electrons through
``gain``) and Gaussian read noise, plus cosmic rays, rounded to 16-bit integers as a camera writes them.
Headers carry ``IMAGETYP`` as MaxIm DL and N.I.N.A. write it ("Bias Frame", "Dark Frame", "Flat Field",
"Light Frame"); light frames have a TAN WCS. The profile ``rawdemo`` (``pipelines/rawdemo.toml``) reduces them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from skylake.synthetic.frames import render_frame, tan_wcs_header, write_frame

__all__ = [
    "RawTruth",
    "write_raw_night",
    "FWHM_PX",
    "FIELD",
    "PIXSCALE",
    "GAIN",
    "READ_NOISE",
    "BIAS_LEVEL",
    "DARK_RATE",
    "SKY_RATE",
]

#: The camera: gain [e-/ADU], read noise [ADU], bias level [ADU], dark current [ADU/s], sky [ADU/s].
GAIN, READ_NOISE, BIAS_LEVEL, DARK_RATE, SKY_RATE = 1.5, 5.0, 1000.0, 0.05, 5.0
FWHM_PX = 2.5
FIELD = (150.0, 20.0)  # RA, Dec of the light frames' centre [deg]
PIXSCALE = 4.0  # arcsec/px


@dataclass
class RawTruth:
    """What :func:`write_raw_night` put into the frames (0-based numpy pixel coordinates)."""

    night: str
    paths: dict  # kind ("bias", "dark", "flat", "light") -> list of Paths
    bias: np.ndarray  # the noiseless bias image [ADU]
    dark_rate: np.ndarray  # dark current per pixel [ADU/s], hot pixels included
    flat: np.ndarray  # the pixel response (median 1), dead pixels included
    hot: np.ndarray  # (n, 2) rows, columns of the hot pixels
    dead: np.ndarray  # (n, 2) of the dead pixels
    stars: pd.DataFrame  # x, y, flux [ADU in one light exposure above the atmosphere, before the flat]
    sky: float  # sky per light frame [ADU]
    light_exptime: float
    cosmics: list = field(default_factory=list)  # per light frame: bool image of the pixels hit
    star_hit: tuple = ()  # (light frame index, star index) of the cosmic ray placed on a star
    offsets: list = field(default_factory=list)  # per light frame: (dx, dy) [pix] the field moved on the detector
    sky_pattern: np.ndarray | None = None  # the sky's shape on the detector (median 1; fringes), before the flat

    def stars_on(self, k: int = 0) -> pd.DataFrame:
        """The stars where light frame ``k`` has them (its dither offset applied).

        Parameters
        ----------
        k : int
            The light frame's index.

        Returns
        -------
        pandas.DataFrame
            :attr:`stars` with ``x`` and ``y`` moved by the frame's offset.
        """
        dx, dy = self.offsets[k] if self.offsets else (0.0, 0.0)
        return self.stars.assign(x=self.stars["x"] + dx, y=self.stars["y"] + dy)

    def expected_light(self, k: int = 0) -> np.ndarray:
        """Light frame ``k`` as a perfect reduction gives it: a flat sky + stars, noiseless [ADU].

        A fringe pattern is removed by the sky frame, at the sky's level.

        Parameters
        ----------
        k : int
            The light frame's index.

        Returns
        -------
        ndarray
            The float32 image, ADU.
        """
        model = render_frame(self.stars_on(k), self.bias.shape, fwhm_px=FWHM_PX, sky_adu=0.0, noise=False)
        return model + np.float32(self.sky)


def _mjd(when: dt.datetime) -> float:
    return (when - dt.datetime(1858, 11, 17)).total_seconds() / 86400.0


def _header(kind: str, when: dt.datetime, exptime: float, filt: str) -> fits.Header:
    h = fits.Header()
    h["IMAGETYP"] = {"bias": "Bias Frame", "dark": "Dark Frame", "flat": "Flat Field", "light": "Light Frame"}[kind]
    h["DATE-OBS"] = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    h["EXPTIME"] = float(exptime)
    h["INSTRUME"] = "RAWCAM"
    h["FILTER"] = filt
    h["GAIN"] = GAIN
    h["XBINNING"], h["YBINNING"] = 1, 1
    h["CCD-TEMP"] = -20.0
    return h


def _detector(shape, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ny, nx = shape
    bias = (BIAS_LEVEL + rng.normal(0.0, 3.0, nx)[None, :] + np.zeros((ny, 1))).astype(np.float32)
    dark = np.full(shape, DARK_RATE, np.float32)
    n_hot = max(ny * nx // 2000, 10)
    hot_flat = rng.choice(ny * nx, n_hot, replace=False)
    dark.flat[hot_flat] = rng.uniform(5.0, 100.0, n_hot)
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((xx - nx / 2) ** 2 + (yy - ny / 2) ** 2) / (max(nx, ny) / 2) ** 2
    flat = (1.0 - 0.15 * r2) * (1.0 + rng.normal(0.0, 0.01, shape))
    ring = np.hypot(xx - 0.3 * nx, yy - 0.6 * ny)
    flat *= 1.0 - 0.08 * ((ring > 6) & (ring < 10))  # a dust ring
    n_dead = max(ny * nx // 5000, 5)
    dead_flat = rng.choice(np.setdiff1d(np.arange(ny * nx), hot_flat), n_dead, replace=False)
    flat.flat[dead_flat] = rng.uniform(0.05, 0.3, n_dead)
    flat = (flat / np.median(flat)).astype(np.float32)
    hot = np.column_stack(np.unravel_index(hot_flat, shape))
    dead = np.column_stack(np.unravel_index(dead_flat, shape))
    return bias, dark, flat, hot, dead


def _fringes(shape, amplitude: float, rng) -> np.ndarray:
    """A fringe-like sky pattern fixed on the detector: waves of 8-20 px, ``amplitude`` rms around 1."""
    ny, nx = shape
    if not amplitude:
        return np.ones(shape, np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx]
    wave = np.zeros(shape)
    for _ in range(6):
        k = 2 * np.pi / rng.uniform(8.0, 20.0)
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        wave += np.sin(k * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    return (1.0 + amplitude * wave / wave.std()).astype(np.float32)


def _expose(signal_adu, bias, rng) -> np.ndarray:
    """Photon noise on ``signal_adu`` (electrons through the gain) and read noise, on the bias."""
    electrons = rng.poisson(np.clip(signal_adu, 0, None) * GAIN)
    return (bias + electrons / GAIN + rng.normal(0.0, READ_NOISE, bias.shape)).astype(np.float32)


def _cosmic_rays(shape, n, rng) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``n`` short tracks (1-4 pixels, 1500-8000 ADU each): (rows, cols, ADU)."""
    ny, nx = shape
    out = []
    for _ in range(n):
        length = rng.integers(1, 5)
        y0, x0 = rng.integers(5, ny - 5), rng.integers(5, nx - 5)
        dy, dx = rng.choice([-1, 0, 1]), rng.choice([0, 1])
        rows = np.clip(y0 + dy * np.arange(length), 0, ny - 1)
        cols = np.clip(x0 + dx * np.arange(length), 0, nx - 1)
        out.append((rows, cols, rng.uniform(1500.0, 8000.0, length)))
    return out


def write_raw_night(
    directory,
    night: str = "2026-03-01",
    *,
    shape=(512, 512),
    n_bias: int = 9,
    n_dark: int = 7,
    n_flat: int = 7,
    n_light: int = 4,
    n_stars: int = 300,
    n_cosmics: int = 25,
    dark_exptime: float = 60.0,
    light_exptime: float = 60.0,
    filter: str = "V",
    dither_px: float = 0.0,
    fringe: float = 0.0,
    seed: int = 0,
) -> RawTruth:
    """Write one night of SYNTHETIC raw frames (module docstring) into ``directory``.

    Parameters
    ----------
    directory : str or Path
        Where the frames go (``bias_NN.fits``, ``dark_NN.fits``, ``flat_V_NN.fits``, ``light_NN.fits``).
    night : str
        The observing night (YYYY-MM-DD): calibrations at 18:00-19:30 UTC, lights from 22:00 UTC.
    shape : tuple of int
        (ny, nx) of every frame.
    n_bias, n_dark, n_flat, n_light : int
        Frames of each kind.
    n_stars : int
        Stars in the light frames (fluxes log-uniform, 2e3-2e5 ADU).
    n_cosmics : int
        Cosmic-ray tracks per light frame (one more falls on a star of the first frame).
    dark_exptime, light_exptime : float
        Exposure times [s] (flats: 5 s).
    filter : str
        The flats' and lights' filter.
    dither_px : float
        Light frames after the first are offset by up to this many pixels in x and y (uniform, the WCS follows).
    fringe : float
        Relative amplitude (rms) of a fringe pattern in the lights' sky, fixed on the detector (0: none).
    seed : int
        Everything follows from it.

    Returns
    -------
    RawTruth
        What was injected.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    detector_rng = np.random.default_rng(1000 + seed % 7)  # one camera: the same detector every night
    bias, dark, flat, hot, dead = _detector(tuple(shape), detector_rng)
    ny, nx = shape
    day = dt.datetime.fromisoformat(night)
    paths: dict = {"bias": [], "dark": [], "flat": [], "light": []}
    for i in range(n_bias):
        when = day + dt.timedelta(hours=18, minutes=i)
        path = out / f"bias_{i:02d}.fits"
        write_frame(path, _expose(np.zeros(shape), bias, rng), _header("bias", when, 0.0, filter), bitpix16=True)
        paths["bias"].append(path)
    for i in range(n_dark):
        when = day + dt.timedelta(hours=18, minutes=30 + 2 * i)
        path = out / f"dark_{i:02d}.fits"
        data = _expose(dark * dark_exptime, bias, rng)
        write_frame(path, data, _header("dark", when, dark_exptime, filter), bitpix16=True)
        paths["dark"].append(path)
    for i in range(n_flat):
        when = day + dt.timedelta(hours=19, minutes=i)
        level = 20000.0 * (1.0 - 0.05 * i)  # twilight fades
        path = out / f"flat_{filter}_{i:02d}.fits"
        data = _expose(dark * 5.0 + flat * level, bias, rng)
        write_frame(path, data, _header("flat", when, 5.0, filter), bitpix16=True)
        paths["flat"].append(path)
    margin = 12 + dither_px
    stars = pd.DataFrame(
        {
            "x": rng.uniform(margin, nx - 1 - margin, n_stars),
            "y": rng.uniform(margin, ny - 1 - margin, n_stars),
            "flux": np.exp(rng.uniform(np.log(2e3), np.log(2e5), n_stars)),
        }
    )
    sky = SKY_RATE * light_exptime
    pattern = _fringes(shape, fringe, detector_rng)
    offsets = [(0.0, 0.0)] * n_light
    if dither_px:
        offsets = [(0.0, 0.0)] + [tuple(rng.uniform(-dither_px, dither_px, 2)) for _ in range(n_light - 1)]
    cosmics, star_hit = [], ()
    for i in range(n_light):
        when = day + dt.timedelta(hours=22, minutes=5 * i)
        dx, dy = offsets[i]
        moved = stars.assign(x=stars["x"] + dx, y=stars["y"] + dy)
        scene = render_frame(moved, shape, fwhm_px=FWHM_PX, sky_adu=0.0, noise=False) + np.float32(sky) * pattern
        wcs = tan_wcs_header(FIELD[0], FIELD[1], shape, PIXSCALE)
        wcs["CRPIX1"] += dx  # the field's centre moved with the stars
        wcs["CRPIX2"] += dy
        data = _expose(dark * light_exptime + flat * scene, bias, rng)
        hits = np.zeros(shape, bool)
        tracks = _cosmic_rays(shape, n_cosmics, rng)
        if i == 0:  # one hit on the wing of a moderately bright star, 2 px from its centre
            mid = stars[(stars["flux"] > 1e4) & (stars["flux"] < 3e4)].index[0]
            sy, sx = int(round(stars.at[mid, "y"])), int(round(stars.at[mid, "x"]))
            tracks.append((np.array([sy + 2]), np.array([sx + 1]), np.array([6000.0])))
            star_hit = (0, int(mid))
        for rows, cols, adu in tracks:
            data[rows, cols] += adu.astype(np.float32)
            hits[rows, cols] = True
        header = _header("light", when, light_exptime, filter)
        header["OBJECT"] = "RAW-FIELD"
        header.update(wcs)
        path = out / f"light_{i:02d}.fits"
        write_frame(path, data, header, bitpix16=True)
        paths["light"].append(path)
        cosmics.append(hits)
    return RawTruth(
        night=night,
        paths=paths,
        bias=bias,
        dark_rate=dark,
        flat=flat,
        hot=hot,
        dead=dead,
        stars=stars,
        sky=sky,
        light_exptime=light_exptime,
        cosmics=cosmics,
        star_hit=star_hit,
        offsets=offsets,
        sky_pattern=pattern,
    )
