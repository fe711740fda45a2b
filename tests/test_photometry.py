"""Aperture photometry with the local annulus background (synthetic images with exact answers)."""

from __future__ import annotations

import numpy as np
import sep

from skylake.frame.extract import _ones_like_edges, annulus_photometry, half_light_radius
from skylake.synthetic import render_frame

SHAPE = (300, 400)
RADII = (2.5, 4.0, 6.0)
ANNULUS = (8.0, 12.0)


def _positions(rng, n=300):
    """Random positions, a third of them within 12 px of an edge or corner (truncated apertures)."""
    x, y = rng.uniform(-0.4, SHAPE[1] - 0.6, n), rng.uniform(-0.4, SHAPE[0] - 0.6, n)
    k = n // 3
    x[:k:2] = rng.uniform(-0.4, 11.0, len(x[:k:2]))
    y[1:k:2] = SHAPE[0] - 0.6 - rng.uniform(0, 11.0, len(y[1:k:2]))
    x[1:k:4] = SHAPE[1] - 0.6 - rng.uniform(0, 11.0, len(x[1:k:4]))
    return x, y


def test_small_ones_image_gives_the_areas_of_the_full_one():
    x, y = _positions(np.random.default_rng(1))
    full = np.ones(SHAPE, dtype=np.float32)
    ones, xs, ys = _ones_like_edges(SHAPE, x, y, ANNULUS[1], None)
    assert ones.shape == (28, 28)
    np.testing.assert_array_equal(
        sep.sum_circann(ones, xs, ys, *ANNULUS, subpix=1)[0], sep.sum_circann(full, x, y, *ANNULUS, subpix=1)[0]
    )
    for r in RADII:
        np.testing.assert_allclose(
            sep.sum_circle(ones, xs, ys, r, subpix=0)[0], sep.sum_circle(full, x, y, r, subpix=0)[0], rtol=1e-12
        )


def test_a_flat_residual_background_is_removed_everywhere_even_at_edges():
    """An image that is a constant 7 ADU: every aperture's flux is ~0, truncated or not, and the
    local background is exactly 7."""
    x, y = _positions(np.random.default_rng(2))
    data = np.full(SHAPE, 7.0, dtype=np.float32)
    apertures, bkg_local, _ = annulus_photometry(data, x, y, RADII, ANNULUS, err=1.0, gain=1.0)
    np.testing.assert_allclose(bkg_local, 7.0, rtol=1e-5)
    for r, (flux, _) in zip(RADII, apertures):
        assert np.max(np.abs(flux)) < 0.02 * 7.0 * np.pi * r**2  # sub-pixel sampling of the circle only


def test_star_fluxes_and_errors_match_sep_bkgann():
    """Isolated stars on a sky with a residual offset: fluxes equal sep's own bkgann photometry within
    a small fraction of the error, the errors include the annulus term, and the local background is
    the offset. The half-light radius found within 2a equals the one found within 6a."""
    rng = np.random.default_rng(3)
    n = 60
    stars = {
        "x": rng.uniform(20, SHAPE[1] - 20, n),
        "y": rng.uniform(20, SHAPE[0] - 20, n),
        "flux": rng.uniform(2e4, 2e5, n),
    }
    keep = np.ones(n, bool)  # keep stars 20 px apart so no annulus holds a neighbour
    for i in range(n):
        d = np.hypot(stars["x"] - stars["x"][i], stars["y"] - stars["y"][i])
        keep[i] = keep[i] and not np.any((d < 20) & (np.arange(n) < i) & keep)
    stars = {k: v[keep] for k, v in stars.items()}
    import pandas as pd

    data = render_frame(pd.DataFrame(stars), shape=SHAPE, fwhm_px=3.0, sky_adu=0.0, noise=False)
    data = np.ascontiguousarray(data, dtype=np.float32) + 5.0  # residual background 5 ADU/pixel
    x, y = stars["x"], stars["y"]
    apertures, bkg_local, _ = annulus_photometry(data, x, y, RADII, ANNULUS, err=2.0, gain=1.5)
    np.testing.assert_allclose(bkg_local, 5.0, atol=0.05)
    for r, (flux, ferr) in zip(RADII, apertures):
        ref, ref_err, _ = sep.sum_circle(data, x, y, r, err=2.0, gain=1.5, bkgann=ANNULUS, subpix=0)
        np.testing.assert_allclose(flux, ref, rtol=1e-3)
        np.testing.assert_allclose(ferr, ref_err, rtol=0.02)
        plain = sep.sum_circle(data, x, y, r, err=2.0, gain=1.5, subpix=0)[1]
        assert np.all(ferr > plain)  # the annulus mean's uncertainty is included
    total = np.asarray(stars["flux"])
    a = np.full(len(x), 1.3)
    r50 = half_light_radius(data - 5.0, x, y, a, total)
    wide, _ = sep.flux_radius(data - 5.0, x, y, 6.0 * a, 0.5, normflux=total, subpix=5)
    np.testing.assert_allclose(r50, wide, atol=0.02)  # the small search radius changes nothing
    np.testing.assert_allclose(2 * r50, 3.0, atol=0.25)  # pixel integration widens the rendered PSF


def test_nan_pixels_are_masked_not_counted_as_sky():
    """A frame with a block of NaN pixels (a bad column region) beside a star: the star's aperture
    flux and local background are those of the same frame without the NaNs."""
    import pandas as pd

    from skylake.frame.extract import extract, measure
    from skylake.profile import load_profile

    profile = load_profile("demo")
    stars = pd.DataFrame({"x": [100.3, 250.7], "y": [150.2, 140.9], "flux": [5e4, 5e4]})
    clean = render_frame(stars, shape=SHAPE, fwhm_px=3.0, sky_adu=1000.0, noise=False).astype(np.float32)
    holed = clean.copy()
    holed[140:160, 108:112] = np.nan  # inside the first star's annulus (8-12 px)

    def star_photometry(img):
        ext = extract(img, profile.detection)
        cols = measure(img, ext, profile.photometry, gain=1.5)
        i = np.argmin(np.hypot(cols["x"] - 100.3, cols["y"] - 150.2))
        return cols["flux_ap2"][i], cols["bkg_local"][i], ext

    flux_clean, bkg_clean, _ = star_photometry(clean.copy())
    flux_holed, bkg_holed, ext = star_photometry(holed.copy())
    assert ext.mask is not None and ext.mask.sum() == 80
    assert abs(bkg_holed - bkg_clean) < 0.5  # ADU; unmasked it would be pulled ~-1000 * 80/250
    assert abs(flux_holed / flux_clean - 1) < 0.005
