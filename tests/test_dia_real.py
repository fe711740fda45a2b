"""Difference imaging on REAL frames: SkyCamZ (Liverpool Telescope), 12 frames of one pointing on 2013-06-10.

The sharpest frame is the reference, resampled onto each frame's grid through their WCS (reproject); the kernel
is fitted on the frame's own stars. Checks: the residuals in the stamps of the stars fitted are at the noise
(normalised rms 1.0-1.3), the flux scale between frames of one clear night is near one, and a point source drawn
into a frame with its own PSF at 10 sigma is found by forced photometry, what it adds measured at its flux, and
nothing is there where it was not drawn.
"""

from __future__ import annotations

import numpy as np
import pytest

from skylake.dia import DiaSettings, KernelSettings, forced_photometry, frame_variance, gaussian_psf, subtract

GAIN = 5.47  # SkyCamZ [e-/ADU] (pipelines/skycamz.toml)
READ_NOISE_ADU = 2.0  # below the sky's noise (2.8 ADU rms): its exact value hardly matters here
SATURATION = 35000.0  # what BITPIX 16 with BZERO 17878.9, BSCALE 0.5452 can hold, less a margin
SETTINGS = DiaSettings(saturation=SATURATION, kernel=KernelSettings(half_width=10))


def _load(path):
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(path) as hdul:
        return hdul[0].data.astype(np.float64), WCS(hdul[0].header)


def _fwhm(image) -> float:
    import sep

    image = np.ascontiguousarray(image)
    bkg = sep.Background(image)
    objects = sep.extract(image - bkg.back(), 10, err=bkg.globalrms)
    objects = objects[(objects["flag"] == 0) & (objects["peak"] < 0.8 * SATURATION)]
    return float(np.median(2.3548 * np.sqrt((objects["a"] ** 2 + objects["b"] ** 2) / 2)))


@pytest.fixture(scope="module")
def pointing(skycamz_files):
    """The 12 frames of the night's one pointing (data, WCS, FWHM), the sharpest first."""
    import warnings

    from astropy.wcs import FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        frames = [(*_load(p), p.name) for p in skycamz_files]
    centre = np.median([w.wcs.crval for _, w, _ in frames], axis=0)
    frames = [f for f in frames if np.hypot(*(f[1].wcs.crval - centre)) < 0.5]
    assert len(frames) == 12
    return sorted(((d, w, _fwhm(d), name) for d, w, name in frames), key=lambda f: f[2])


def _difference(pointing, k, frame=None):
    from reproject import reproject_interp

    ref, ref_wcs = pointing[0][0], pointing[0][1]
    data, wcs = pointing[k][0] if frame is None else frame, pointing[k][1]
    resampled, footprint = reproject_interp((ref, ref_wcs), wcs, shape_out=data.shape, order="bicubic")
    off = footprint < 1
    resampled[off] = np.nanmedian(resampled)
    ref_var = frame_variance(resampled, GAIN, READ_NOISE_ADU)
    ref_var[off] = 1e12  # no reference there: such pixels are never fitted on, and their difference is noise
    return subtract(data, frame_variance(data, GAIN, READ_NOISE_ADU), resampled, ref_var, SETTINGS)


@pytest.mark.parametrize("k", [1, 6, 11])
def test_constant_stars_subtract_to_the_noise(pointing, k):
    diff = _difference(pointing, k)
    solution = diff.solution
    print(
        f"\n{pointing[k][3]}: scale {solution.scale:.4f} +- {solution.scale_error:.4f}, stamps "
        f"{solution.stamps_used}/{solution.stamps_total}, normalised rms {diff.normalised_rms():.3f}"
    )
    assert solution.stamps_used >= 50 and solution.scale_error < 0.003
    assert 0.93 < solution.scale < 1.07  # one clear night, 10 s frames minutes apart
    assert 1.0 <= diff.normalised_rms() <= 1.3


def test_a_transient_drawn_at_10_sigma_is_measured_at_its_flux(pointing):
    k = 6
    data, fwhm = pointing[k][0], pointing[k][2]
    plain = _difference(pointing, k)
    x, y = _empty_position(plain)
    half = 12
    unit = gaussian_psf(fwhm, 0.3, -0.2, half)
    _, noise = forced_photometry(plain.image, plain.variance, [x + 0.3], [y - 0.2], fwhm)
    flux = 10 * noise[0]
    drawn = data.copy()
    drawn[y - half : y + half + 1, x - half : x + half + 1] += flux * unit
    found = _difference(pointing, k, drawn)
    got, err = forced_photometry(found.image, found.variance, [x + 0.3], [y - 0.2], fwhm)
    before, before_err = forced_photometry(plain.image, plain.variance, [x + 0.3], [y - 0.2], fwhm)
    print(f"\ndrawn {flux:.0f} ADU, measured {got[0]:.0f} +- {err[0]:.0f}; without it {before[0]:.0f}")
    assert got[0] / err[0] > 5  # found
    # the same frame's noise is under both: what the drawing added is measured to within 10 %
    assert got[0] - before[0] == pytest.approx(flux, rel=0.10)
    assert abs(before[0]) < 3 * before_err[0]


def _empty_position(diff) -> tuple[int, int]:
    """A pixel far from every stamp star and the edges, where the reference has no source (the model is flat)."""
    model = diff.model
    ny, nx = model.shape
    for y in range(200, ny - 200, 37):
        for x in range(200, nx - 200, 41):
            box = model[y - 15 : y + 16, x - 15 : x + 16]
            if np.ptp(box) < 30:  # no star in the convolved reference within 15 px
                return x, y
    raise AssertionError("no empty position found")


def test_injected_point_sources_are_found_by_their_signal_to_noise(pointing):
    """Point sources drawn with the frame's PSF at 3-20 sigma into one frame, four of each, at empty positions:
    every one from 10 sigma up is a DIA source at its flux (within 25 %); the completeness per level is printed."""
    from skylake.dia import detect_sources

    k = 6
    data, fwhm = pointing[k][0], pointing[k][2]
    plain = _difference(pointing, k)
    positions = _empty_positions(plain, 24)
    levels = np.repeat([3, 5, 7, 10, 15, 20], 4)
    half = 12
    drawn, fluxes = data.copy(), []
    for (x, y), level in zip(positions, levels):
        _, noise = forced_photometry(plain.image, plain.variance, [x + 0.3], [y - 0.2], fwhm)
        fluxes.append(level * noise[0])
        drawn[y - half : y + half + 1, x - half : x + half + 1] += fluxes[-1] * gaussian_psf(fwhm, 0.3, -0.2, half)
    found = detect_sources(*_difference_arrays(pointing, k, drawn), fwhm)
    found = found[(found["flags"] == 0) & (found["sign"] == 1)]
    hit, ratio = [], []
    for (x, y), flux in zip(positions, fluxes):
        near = found[np.hypot(found["x"] - x - 0.3, found["y"] - y + 0.2) < 1.5]
        hit.append(len(near) > 0)
        ratio.append(near["flux"].iloc[0] / flux if len(near) else np.nan)
    hit, ratio = np.array(hit), np.array(ratio)
    for level in np.unique(levels):
        at = levels == level
        print(f"\n{level:3d} sigma: {hit[at].sum()} of {at.sum()} found, flux ratios {np.round(ratio[at], 2)}", end="")
    assert hit[levels >= 10].all()
    assert np.all(np.abs(ratio[levels >= 10] - 1) < 0.25)


def _difference_arrays(pointing, k, frame):
    diff = _difference(pointing, k, frame)
    return diff.image, diff.variance


def _empty_positions(diff, n: int) -> list[tuple[int, int]]:
    """``n`` pixels at least 40 px apart, far from the edges, where the convolved reference is flat (no star)."""
    model = diff.model
    ny, nx = model.shape
    out = []
    for y in range(60, ny - 60, 23):
        for x in range(60, nx - 60, 29):
            box = model[y - 15 : y + 16, x - 15 : x + 16]
            if np.ptp(box) < 30 and all(np.hypot(x - a, y - b) > 40 for a, b in out):
                out.append((x, y))
                if len(out) == n:
                    return out
    raise AssertionError(f"only {len(out)} empty positions found")
