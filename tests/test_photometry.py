"""Aperture photometry with the local annulus background (synthetic images with exact answers)."""

from __future__ import annotations

import numpy as np
import sep

from skylake.frame.extract import annulus_photometry, half_light_radius
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


def _sep_sums(data, x, y, radii, annulus, err, gain, mask, segmap):
    """What skylake measured before the one visit per object: sep's own calls, one per aperture and the annulus
    (the areas from an image of ones with the same mask, the annulus' sky pixels counted from its variance)."""
    ids = dict(seg_id=np.arange(1, len(x) + 1, dtype=np.int32), segmap=segmap) if segmap is not None else {}
    out = {"flux": [], "err": [], "area": [], "flags": np.zeros(len(x), np.int32)}
    for r in radii:
        flux, ferr, flag = sep.sum_circle(data, x, y, r, err=err, gain=gain, mask=mask, subpix=0, **ids)
        area = sep.sum_circle(np.ones_like(data), x, y, r, mask=mask, subpix=0)[0]
        out["flux"].append(flux), out["err"].append(ferr), out["area"].append(area)
        out["flags"] |= flag & 0x10
    excluded = segmap if mask is None else np.where(mask, np.int32(1), 0 if segmap is None else segmap)
    others = {} if excluded is None else dict(segmap=excluded, seg_id=np.full(len(x), 2**31 - 1, np.int32))
    total, total_err, flag = sep.sum_circann(data, x, y, *annulus, err=err, subpix=1, **others)
    out["flags"] |= flag & 0x10
    out["sky_pixels"] = np.rint(total_err**2 / np.float64(np.float32(err**2)))
    out["sky_sum"] = total
    return out


def _same_as_sep(data, x, y, radii, annulus, err, gain, mask=None, segmap=None, near=None):
    from skylake.frame.apertures import circle_sums

    got = circle_sums(data, x, y, radii, annulus, err, gain, mask, segmap)
    want = _sep_sums(data, x, y, radii, annulus, err, gain, mask, segmap)
    np.testing.assert_array_equal(got.flux, want["flux"])
    np.testing.assert_array_equal(got.flux_err, want["err"])
    np.testing.assert_array_equal(got.sky_pixels, want["sky_pixels"])
    np.testing.assert_array_equal(got.sky_sum, want["sky_sum"])
    np.testing.assert_array_equal(got.flags, want["flags"])
    # areas: sep sums an image of ones in its own box; ours, the same overlaps in a wider one
    np.testing.assert_allclose(got.area, want["area"], rtol=1e-13)
    return got


def test_one_visit_per_object_gives_seps_sums_to_the_bit():
    """Circle sums and the sky annulus from one visit per object (skylake.frame.apertures) against sep's
    own sum_circle per radius and sum_circann: equal to the bit on a noisy synthetic frame, with positions
    at and beyond the edges (truncated boxes), a segmentation map (the neighbours' pixels left out), a mask
    (the sums rescaled as sep rescales them) and objects whose annulus holds no sky."""
    import pandas as pd

    rng = np.random.default_rng(11)
    data = rng.normal(0.0, 3.0, SHAPE).astype(np.float32)
    x, y = _positions(rng, 400)
    stars = pd.DataFrame({"x": x[::3], "y": y[::3], "flux": rng.uniform(1e3, 1e5, len(x[::3]))})
    data += render_frame(stars, shape=SHAPE, fwhm_px=3.0, sky_adu=0.0, noise=False).astype(np.float32)
    _same_as_sep(data, x, y, RADII, ANNULUS, err=3.0, gain=1.5)
    _same_as_sep(data, x, y, (1.0, 12.5), (0.0, 3.0), err=2.0, gain=0.0)  # apertures outside the annulus
    objects, segmap = sep.extract(data, 5.0, err=3.0, segmentation_map=True)
    ox, oy = objects["x"].astype(np.float64), objects["y"].astype(np.float64)
    _same_as_sep(data, ox, oy, RADII, ANNULUS, err=3.0, gain=1.5, segmap=segmap)
    mask = np.zeros(SHAPE, bool)
    mask[100:140, 50:53] = True
    mask[rng.integers(0, SHAPE[0], 300), rng.integers(0, SHAPE[1], 300)] = True
    holed = np.where(mask, np.float32(np.nan), data)
    got = _same_as_sep(holed, ox, oy, RADII, ANNULUS, err=3.0, gain=1.5, mask=mask, segmap=segmap)
    assert (got.area < np.pi * np.array(RADII)[:, None] ** 2 - 1e-9).any()  # some apertures clipped
    _same_as_sep(holed, x, y, RADII, ANNULUS, err=3.0, gain=1.5, mask=mask)


def test_one_visit_per_object_gives_seps_sums_on_real_frames(skycamz_files):
    """The same, to the bit, on REAL SkyCamZ frames with the demo's and SkyCamZ's own radii and annulus and
    sep's segmentation map, as ingest measures them."""
    from astropy.io import fits

    from skylake.frame.extract import extract
    from skylake.profile import load_profile

    profile = load_profile("skycamz")
    cfg = profile.photometry
    for path in skycamz_files[:2]:
        data = np.ascontiguousarray(fits.getdata(path), dtype="=f4")
        ext = extract(data, profile.detection)
        x, y = ext.objects["x"].astype(np.float64), ext.objects["y"].astype(np.float64)
        assert len(x) > 500
        _same_as_sep(data, x, y, cfg.aperture_radii, cfg.annulus, ext.globalrms, 5.47, ext.mask, ext.segmap)
        _same_as_sep(data, x, y, RADII, ANNULUS, ext.globalrms, 5.47, ext.mask, ext.segmap)


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
