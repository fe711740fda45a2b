"""Difference imaging (skylake.dia): the kernel, the subtraction's noise and forced photometry on the difference.

Frames are SYNTHETIC (skylake.synthetic.frames.render_frame: Gaussian PSFs integrated over pixels, photon and
read noise), so every answer is known: the flux scale between two frames, each variable's amplitude, the
neighbours' constancy, the pulls at empty positions.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from skylake.dia import (
    DiaSettings,
    KernelSettings,
    choose_stamps,
    forced_photometry,
    frame_variance,
    gaussian_psf,
    subtract,
)
from skylake.dia.kernel import basis_kernels
from skylake.synthetic.frames import render_frame

GAIN, READ_NOISE = 2.0, 5.0  # the frames' [e-/ADU], [ADU]
DEEP = 16  # the reference: 16 frames' worth of photons (its noise a quarter of a frame's)
SKY = 1000.0


def _reference(stars, shape, fwhm=1.4):
    ref = render_frame(stars, shape, fwhm_px=fwhm, sky_adu=SKY, read_noise_adu=READ_NOISE / 4, gain=GAIN * DEEP, seed=1)
    return ref, frame_variance(ref, GAIN * DEEP, READ_NOISE / 4)


def _field(rng, n, size):
    return pd.DataFrame(
        {
            "x": rng.uniform(15, size - 15, n),
            "y": rng.uniform(15, size - 15, n),
            "flux": 10 ** rng.uniform(3.5, 5.0, n),
            "amp": 0.0,
        }
    )


def test_the_basis_carries_the_flux_in_its_first_kernel_only():
    basis = basis_kernels(KernelSettings())
    assert basis.shape == (15 + 10 + 6, 17, 17)
    assert basis[0].sum() == pytest.approx(1.0)
    assert np.abs(basis[1:].sum(axis=(1, 2))).max() < 1e-12
    shifted = basis_kernels(KernelSettings(centre=(0.3, -0.4)))  # centred off a pixel: the same, its peak moved
    assert shifted[0].sum() == pytest.approx(1.0) and np.abs(shifted[1:].sum(axis=(1, 2))).max() < 1e-12
    v, u = np.mgrid[-8:9, -8:9]  # its sharpest Gaussian (0.4 px) sampled off centre: its centroid moves that way
    assert 0.15 < (shifted[0] * u).sum() < 0.3 and -0.4 < (shifted[0] * v).sum() < -0.2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"half_width": 0}, "half_width must be at least 1 pixel, got 0"),
        ({"sigmas": (1.0,), "degrees": (2, 2)}, "one polynomial degree per Gaussian"),
        ({"spatial_order": -1}, "spatial_order must be >= 0, got -1"),
        ({"clip": 1.0}, "clip must be > 1"),
        ({"centre": (1.5, 0.0)}, r"centre must be \(x, y\) within a pixel of 0: \(1.5, 0.0\)"),
    ],
)
def test_kernel_settings_name_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KernelSettings(**kwargs)


def test_a_frame_is_its_reference_convolved_scaled_and_on_another_sky():
    """Frame: the reference's stars at FWHM 3.0 instead of 1.4, 0.9 of their flux, the sky 100 ADU higher.
    The kernel's sum is the 0.9, the difference is at the noise in the stars' stamps, empty sky has unit pulls."""
    rng = np.random.default_rng(1)
    size = 384
    stars = _field(rng, 250, size)
    ref, ref_var = _reference(stars, (size, size))
    frame = render_frame(
        stars.assign(flux=0.9 * stars["flux"]),
        (size, size),
        fwhm_px=3.0,
        sky_adu=SKY + 100,
        read_noise_adu=READ_NOISE,
        gain=GAIN,
        seed=2,
    )
    diff = subtract(frame, frame_variance(frame, GAIN, READ_NOISE), ref, ref_var, DiaSettings(saturation=60000))
    assert diff.solution.scale == pytest.approx(0.9, abs=3 * diff.solution.scale_error + 1e-3)
    assert diff.solution.stamps_used >= 20
    assert 0.95 < diff.normalised_rms() < 1.15
    empty_x, empty_y = rng.uniform(20, size - 20, 600), rng.uniform(20, size - 20, 600)
    far = [np.hypot(stars["x"] - x, stars["y"] - y).min() > 10 for x, y in zip(empty_x, empty_y)]
    flux, err = forced_photometry(diff.image, diff.variance, empty_x[far], empty_y[far], 3.0)
    pulls = flux / err
    assert len(pulls) > 100 and 0.9 < np.std(pulls) < 1.1 and abs(np.mean(pulls)) < 0.15


@pytest.mark.parametrize("frame_fwhm", [1.4, 1.7, 2.0, 2.4])
def test_the_kernels_width_is_measured_from_the_stars_and_a_frame_as_sharp_as_its_reference_is_broadened(frame_fwhm):
    """SYNTHETIC Gaussian stars, the reference at FWHM 1.4 px (16 frames deep): the kernel that takes it to a frame
    of FWHM f has sigma sqrt(f^2 - 1.4^2) / 2.3548, measured from the stamps' half-light radii to 0.03 px (0.2
    px for f = 1.4, where it is 0). A frame whose kernel would be narrower than 0.5 px is broadened until it is
    0.5 px wide (sigmas squared add: the same measure of the broadened frame gives 0.5 px, to 0.1); a
    broader frame is subtracted as it came."""
    from skylake.dia.difference import broaden, choose_stamps, kernel_width

    rng = np.random.default_rng(3)
    size = 256
    stars = _field(rng, 160, size)
    ref, ref_var = _reference(stars, (size, size))
    frame = render_frame(stars, (size, size), fwhm_px=frame_fwhm, sky_adu=SKY, read_noise_adu=READ_NOISE, gain=GAIN,
                         seed=4)  # fmt: skip
    settings = DiaSettings(saturation=60000, min_kernel_sigma=0.5)
    stamps = choose_stamps(ref, frame, settings)
    width = kernel_width(frame, ref, stamps, settings.kernel.half_width)
    truth = np.sqrt(frame_fwhm**2 - 1.4**2) / 2.3548
    assert width == pytest.approx(truth, abs=0.2 if truth == 0 else 0.03)
    diff = subtract(frame, frame_variance(frame, GAIN, READ_NOISE), ref, ref_var, settings)
    plain = subtract(frame, frame_variance(frame, GAIN, READ_NOISE), ref, ref_var, DiaSettings(saturation=60000))
    print(
        f"\nframe FWHM {frame_fwhm}: kernel {width:+.3f} px (true {truth:.3f}); broadened by {diff.broadened:.3f} "
        f"px; normalised rms {plain.normalised_rms():.3f} as it came, {diff.normalised_rms():.3f} as subtracted"
    )
    if truth < 0.5:
        assert diff.broadened == pytest.approx(np.sqrt(0.5**2 - np.sign(width) * width**2))
        broad, _ = broaden(frame, np.ones_like(frame), diff.broadened)
        assert kernel_width(broad, ref, stamps, settings.kernel.half_width) == pytest.approx(0.5, abs=0.1)
    else:
        assert diff.broadened == 0.0 and diff.normalised_rms() == plain.normalised_rms()
    assert 0.95 < diff.normalised_rms() < 1.3
    with pytest.raises(ValueError, match="min_kernel_sigma must be in"):
        DiaSettings(min_kernel_sigma=-0.1)
    with pytest.raises(ValueError, match="stamp_point_sigma must be >= 0"):
        DiaSettings(stamp_point_sigma=-1.0)


def test_blended_variables_keep_their_amplitude_where_apertures_lose_it():
    """8 variables (3e4 ADU, amplitude 30 % or 20 %), each with two constant neighbours 3.3-10 times brighter at
    1.2 and 1.8 FWHM; 30 frames whose seeing worsens from 1.5 to 3 px as the variables go through one cycle.
    The DIA amplitudes are within 3 %, a 3-pixel aperture's are off by more than 10 % (the neighbours' light
    moves into it with the seeing), and the neighbours stay constant within their errors."""
    import sep

    rng = np.random.default_rng(7)
    size, n_frames = 384, 30
    field = _field(rng, 300, size)
    groups = []
    for k in range(8):
        cx, cy = 40 + (k % 4) * (size - 80) / 3, 60 + (k // 4) * (size - 120)
        groups.append((cx, cy, 3e4, (0.3, 0.2)[k % 2]))
        for distance in (1.2, 1.8):  # in FWHM of the worst seeing (3 px)
            angle = rng.uniform(0, 2 * np.pi)
            groups.append(
                (cx + 3 * distance * np.cos(angle), cy + 3 * distance * np.sin(angle), rng.uniform(1e5, 2e5), 0)
            )
    blends = pd.DataFrame(groups, columns=["x", "y", "flux", "amp"])
    apart = [np.hypot(blends["x"] - x, blends["y"] - y).min() > 14 for x, y in zip(field["x"], field["y"])]
    stars = pd.concat([field[apart], blends], ignore_index=True)
    ref, ref_var = _reference(stars, (size, size))
    t = np.sort(rng.uniform(0, 1, n_frames))
    phase, fwhm = 2 * np.pi * t, 1.5 + 1.5 * t
    # the synthetic sensor never clips (its brightest neighbours peak above 16 bits): no saturation level; one PSF
    settings = DiaSettings(kernel=KernelSettings(spatial_order=0))
    dia, dia_err, aperture = [], [], []
    for k in range(n_frames):
        now = stars.assign(flux=stars["flux"] * (1 + stars["amp"] * np.sin(phase[k])))
        frame = render_frame(
            now, (size, size), fwhm_px=fwhm[k], sky_adu=SKY, read_noise_adu=READ_NOISE, gain=GAIN, seed=100 + k
        )
        diff = subtract(frame, frame_variance(frame, GAIN, READ_NOISE), ref, ref_var, settings)
        flux, err = forced_photometry(diff.image, diff.variance, stars["x"], stars["y"], fwhm[k])
        err = np.hypot(err, stars["flux"].to_numpy() * diff.solution.scale_error)  # the kernel's sum, uncertain
        dia.append(flux / diff.solution.scale)
        dia_err.append(err / diff.solution.scale)
        image = np.ascontiguousarray(frame, dtype=np.float64)
        sky = sep.Background(image).back()
        aperture.append(sep.sum_circle(image - sky, stars["x"].to_numpy(), stars["y"].to_numpy(), 3.0)[0])
    dia, dia_err, aperture = np.array(dia), np.array(dia_err), np.array(aperture)
    design = np.vstack([np.ones(n_frames), np.sin(phase)]).T
    rows = range(len(stars) - len(blends), len(stars))
    variables = [j for j in rows if stars["amp"].iloc[j] > 0]
    true = stars["flux"].to_numpy() * stars["amp"].to_numpy()
    dia_amp = np.array([np.linalg.lstsq(design, dia[:, j], rcond=None)[0][1] / true[j] - 1 for j in variables])
    ap_amp = np.array([np.linalg.lstsq(design, aperture[:, j], rcond=None)[0][1] / true[j] - 1 for j in variables])
    print(f"\nDIA amplitude error {np.round(dia_amp, 3)}\naperture amplitude error {np.round(ap_amp, 2)}")
    assert np.abs(dia_amp).max() <= 0.03
    assert np.abs(ap_amp).min() > 0.10
    chi2 = []
    for j in (j for j in rows if stars["amp"].iloc[j] == 0):
        w = 1 / dia_err[:, j] ** 2
        chi2.append(np.sum((dia[:, j] - np.average(dia[:, j], weights=w)) ** 2 * w) / (n_frames - 1))
    print(f"neighbours' chi2/dof {np.round(sorted(chi2), 2)}")
    assert 0.7 < np.median(chi2) < 1.4 and max(chi2) < 3.0


def test_stamps_are_bright_isolated_and_unsaturated():
    rng = np.random.default_rng(3)
    stars = _field(rng, 120, 256)
    stars.loc[0, ["x", "y", "flux"]] = (128.0, 128.0, 3e6)  # saturated at 60000 ADU
    stars.loc[1, ["x", "y", "flux"]] = (60.0, 60.0, 1e5)
    stars.loc[2, ["x", "y", "flux"]] = (64.0, 60.0, 1e5)  # a blend with the one before
    ref = render_frame(stars, (256, 256), fwhm_px=1.4, sky_adu=SKY, noise=False)
    got = choose_stamps(ref, ref, DiaSettings(saturation=60000))
    assert got and all(np.hypot(x - 128, y - 128) > 3 and np.hypot(x - 62, y - 60) > 5 for x, y in got)


def test_a_stamps_brighter_neighbours_are_counted_from_each_close_pair_once():
    """The isolation count (itself and every detection within the stamp's square brighter than the fraction of
    it) from the close pairs equals the count over each detection's neighbours, negative fluxes and twins too."""
    from scipy.spatial import cKDTree

    from skylake.dia.difference import _brighter_within

    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 200, 3000), rng.uniform(0, 200, 3000)
    x[1], y[1] = x[0], y[0]  # a twin
    flux = 10 ** rng.uniform(1, 4, 3000)
    flux[:50] *= -1
    want = [
        (flux[near] > 0.1 * flux[k]).sum()
        for k, near in enumerate(cKDTree(np.c_[x, y]).query_ball_point(np.c_[x, y], 9.0, p=np.inf))
    ]
    np.testing.assert_array_equal(_brighter_within(x, y, flux, 9.0, 0.1), want)


def test_a_blend_the_extraction_cannot_split_is_no_stamp():
    """Pairs 1.2-1.8 px apart at FWHM 1.8 (one detection each, 0.5-1 of each other's flux) among single stars: a
    pair is broader or more elongated than the single stars, so none is a stamp, and the single stars are."""
    from skylake.dia.difference import single_stars

    rng = np.random.default_rng(5)
    size = 320
    grid = np.array([(x, y) for x in range(24, size - 20, 34) for y in range(24, size - 20, 34)], float)
    stars = pd.DataFrame({"x": grid[:, 0], "y": grid[:, 1], "flux": 10 ** rng.uniform(4.0, 5.0, len(grid)), "amp": 0.0})
    pairs = rng.choice(len(stars), 12, replace=False)
    angle, separation = rng.uniform(0, np.pi, 12), rng.uniform(1.2, 1.8, 12)
    companions = stars.iloc[pairs].assign(
        x=lambda d: d["x"] + separation * np.cos(angle),
        y=lambda d: d["y"] + separation * np.sin(angle),
        flux=lambda d: d["flux"] * rng.uniform(0.5, 1.0, 12),
    )
    both = pd.concat([stars, companions])
    ref = render_frame(both, (size, size), fwhm_px=1.8, sky_adu=SKY, read_noise_adu=READ_NOISE, gain=GAIN, seed=6)
    got = np.array(choose_stamps(ref, ref, DiaSettings(saturation=1e9)))
    nearest = np.argmin(np.hypot(got[:, :1] - stars["x"].to_numpy(), got[:, 1:] - stars["y"].to_numpy()), axis=1)
    assert not set(nearest) & set(pairs)
    assert len(set(nearest)) >= 0.9 * (len(stars) - len(pairs))
    few = np.zeros(4, [("x", float), ("y", float), ("a", float), ("b", float)])
    assert single_stars(ref, few, 5.0).all()  # too few to say what a single star looks like


def test_the_kernels_spatial_degree_is_the_lowest_the_stamps_support():
    """The fit may vary the kernel up to degree 2 over the chip. A frame whose PSF is the same everywhere gets a
    constant kernel; a frame whose FWHM grows from 2.2 px on the left to 3.8 px on the right gets a varying one,
    which subtracts it to the noise where a constant kernel cannot."""
    rng = np.random.default_rng(7)
    size = 384
    stars = _field(rng, 300, size)
    ref, ref_var = _reference(stars, (size, size))
    settings = DiaSettings(saturation=60000, kernel=KernelSettings(spatial_order=2))
    flat = render_frame(stars, (size, size), fwhm_px=3.0, sky_adu=SKY, read_noise_adu=READ_NOISE, gain=GAIN, seed=8)
    same = subtract(flat, frame_variance(flat, GAIN, READ_NOISE), ref, ref_var, settings)
    varying = np.zeros((size, size), np.float32)
    edges = np.linspace(0, size, 9)
    for lo, hi in zip(edges[:-1], edges[1:]):  # the PSF in eight strips, broader to the right
        strip = stars[(stars["x"] >= lo) & (stars["x"] < hi)]
        varying += render_frame(strip, (size, size), fwhm_px=2.2 + 1.6 * (lo + hi) / 2 / size, sky_adu=0.0, noise=False)
    varying = np.random.default_rng(9).poisson((varying + SKY) * GAIN) / GAIN
    varying += np.random.default_rng(10).normal(0, READ_NOISE, varying.shape)
    var = frame_variance(varying, GAIN, READ_NOISE)
    changing = subtract(varying, var, ref, ref_var, settings)
    one_kernel = DiaSettings(saturation=60000, kernel=KernelSettings(spatial_order=0))
    constant = subtract(varying, var, ref, ref_var, one_kernel)
    print(
        f"\nspatial degree chosen: {same.solution.settings.spatial_order} for one PSF, "
        f"{changing.solution.settings.spatial_order} for a PSF broadening across the chip; normalised rms there "
        f"{changing.normalised_rms():.3f} (a constant kernel: {constant.normalised_rms():.3f})"
    )
    assert same.solution.settings.spatial_order == 0 and 0.95 < same.normalised_rms() < 1.15
    assert changing.solution.settings.spatial_order >= 1 and 0.95 < changing.normalised_rms() < 1.15
    assert constant.normalised_rms() > changing.normalised_rms() + 0.1


def test_a_point_beside_a_stamps_star_is_not_fitted_away_with_it():
    """A 10-sigma point drawn 2 FWHM from a bright isolated star that the kernel is fitted on: fitted as part of
    the star's stamp, the kernel takes some of the point with it; the stamp is left out once its residual shows
    the point (stamp_point_sigma), and the point's flux is what was drawn."""
    from skylake.dia.difference import stamps_with_points

    rng = np.random.default_rng(11)
    size = 320
    stars = _field(rng, 150, size)
    ref, ref_var = _reference(stars, (size, size))
    settings = DiaSettings(saturation=60000, stamp_point_sigma=4.0)
    stamps = choose_stamps(ref, ref, settings)
    bright = max(stamps, key=lambda s: ref[int(round(s[1])), int(round(s[0]))])
    point = (bright[0] + 2 * 2.5, bright[1])  # 2 FWHM from the star
    frame = render_frame(stars, (size, size), fwhm_px=2.5, sky_adu=SKY, read_noise_adu=READ_NOISE, gain=GAIN, seed=12)
    var = frame_variance(frame, GAIN, READ_NOISE)
    plain = subtract(frame, var, ref, ref_var, settings, stamps=stamps)
    sigma = forced_photometry(plain.image, plain.variance, [point[0]], [point[1]], 2.5)[1][0]
    drawn = render_frame(pd.DataFrame({"x": [point[0]], "y": [point[1]], "flux": [10 * sigma], "amp": [0.0]}),
                         (size, size), fwhm_px=2.5, sky_adu=0.0, noise=False)  # fmt: skip
    fluxes = {}
    for name, threshold in (("kept", 0.0), ("left out", 4.0)):
        diff = subtract(frame + drawn, var, ref, ref_var, replace(settings, stamp_point_sigma=threshold), stamps=stamps)
        found = forced_photometry(diff.image, diff.variance, [point[0]], [point[1]], 2.5)[0][0]
        fluxes[name] = found - forced_photometry(plain.image, plain.variance, [point[0]], [point[1]], 2.5)[0][0]
        fluxes[name] /= 10 * sigma
    crowded = stamps_with_points(frame + drawn, var, ref, plain.solution, [(round(x), round(y)) for x, y in stamps],
                                 settings)  # fmt: skip
    print(f"\nthe point's flux with its star's stamp kept: {fluxes['kept']:.3f}, left out: {fluxes['left out']:.3f}")
    assert [s for s, c in zip(stamps, crowded) if c] == [bright]  # that stamp alone
    assert abs(fluxes["left out"] - 1) < 0.05 < abs(fluxes["kept"] - 1)


def test_too_few_stars_is_a_clear_error():
    ref = np.full((64, 64), SKY, np.float32)
    var = frame_variance(ref, GAIN, READ_NOISE)
    with pytest.raises(ValueError, match="0 stars bright and isolated enough to fit a kernel on; at least 3 needed"):
        subtract(ref, var, ref, var)


def test_the_kernel_fit_from_each_stamps_normal_equations_is_the_dense_least_squares_fit():
    """``_solve`` sums each kept stamp's normal equations (formed once, again only where a stamp's good pixels
    change) instead of fitting one design of every stamp's pixels: its coefficients, each stamp's chi2 per good
    pixel and the kernel sum's variance are those of the dense weighted least-squares fit, a stamp left out and a
    few pixels clipped; and the lower-degree refit's cut to columns is the fit of the cut design."""
    from skylake.dia.kernel import _solve, _StampBlocks

    rng = np.random.default_rng(21)
    frame = rng.normal(100.0, 10.0, (60, 60))
    variance = rng.uniform(50.0, 150.0, (60, 60))
    pixels, designs, good = [], [], []
    for k in range(6):  # six 8x8 stamps, a design of 5 columns each
        rows, cols = np.divmod(np.arange(64), 8)
        pixels.append((rows + 9 * k, cols + 9 * k, None))
        designs.append(rng.normal(size=(64, 5)))
        good.append(rng.random(64) > 0.1)
    keep = np.array([True, True, False, True, True, True])
    blocks = _StampBlocks(frame, variance, pixels, designs)
    blocks.at([np.ones(64, bool)] * 6)  # every pixel first: the clipped ones are formed again below

    def dense(columns):
        rows = np.concatenate([pixels[k][0][good[k]] for k in np.flatnonzero(keep)])
        cols = np.concatenate([pixels[k][1][good[k]] for k in np.flatnonzero(keep)])
        w = 1 / np.sqrt(variance[rows, cols])
        a = np.concatenate([designs[k][good[k]][:, columns] for k in np.flatnonzero(keep)]) * w[:, None]
        coef = np.linalg.lstsq(a, frame[rows, cols] * w, rcond=None)[0]
        chi2 = [
            np.mean((frame[r[g], c[g]] - d[g][:, columns] @ coef) ** 2 / variance[r[g], c[g]])
            for (r, c, _), d, g in zip(pixels, designs, good)
        ]
        return coef, np.array(chi2), np.linalg.inv(a.T @ a)[0, 0]

    for columns in (np.arange(5), np.array([0, 2, 4])):
        coef, chi2, scale_var = _solve(blocks.at(good).columns(columns), keep)
        want = dense(columns)
        np.testing.assert_allclose(coef, want[0], rtol=1e-9)
        np.testing.assert_allclose(chi2, want[1], rtol=1e-9)
        assert scale_var == pytest.approx(want[2], rel=1e-9)


def test_the_psf_is_centred_and_normalised():
    psf = gaussian_psf(3.0, 0.25, -0.5, 8)
    yy, xx = np.mgrid[-8:9, -8:9]
    assert psf.sum() == pytest.approx(1.0)
    assert (psf * xx).sum() == pytest.approx(0.25, abs=1e-3) and (psf * yy).sum() == pytest.approx(-0.5, abs=1e-3)


def test_an_empirical_psf_is_its_image_cubic_spline_shifted_to_the_bit():
    """The template at any offset is scipy's cubic-spline shift of the PSF image (its spline coefficients are
    kept from construction, not computed per template), cut to the box asked for; a Gaussian without one."""
    from scipy.ndimage import shift

    from skylake.dia.forced import EmpiricalPSF, point_template

    yy, xx = np.mgrid[-7:8, -7:8]
    image = np.exp(-(xx**2 + (yy / 1.3) ** 2) / 4.0) + 0.01 * np.cos(xx)  # not symmetric: a real PSF's wings
    psf = EmpiricalPSF(image / image.sum())
    for dx, dy in [(0.0, 0.0), (0.37, -0.81), (-1.4, 1.05)]:
        want = shift(psf.image, (dy, dx), order=3, mode="constant")
        np.testing.assert_array_equal(point_template(psf, 3.0, dx, dy, 7), want)
        np.testing.assert_array_equal(point_template(psf, 3.0, dx, dy, 4), want[3:12, 3:12])
    np.testing.assert_array_equal(point_template(None, 3.0, 0.2, 0.1, 5), gaussian_psf(3.0, 0.2, 0.1, 5))
    offsets = np.array([(0.37, -0.81), (-1.4, 1.05), (0.5, -0.5)])  # many templates at once, each the same
    for one, many in zip(offsets, psf.templates(offsets[:, 0], offsets[:, 1], 4)):
        np.testing.assert_array_equal(many, shift(psf.image, one[::-1], order=3, mode="constant")[3:12, 3:12])


def test_forced_fluxes_measured_together_are_each_ones_weighted_sum():
    """Many positions are measured at once (their boxes stacked); each is still ``sum(P D / V) / sum(P^2 / V)``
    over its box's valid pixels, NaN off the chip, without a position or without a valid pixel."""
    rng = np.random.default_rng(5)
    image, variance = rng.normal(0, 5, (60, 60)), rng.uniform(20, 30, (60, 60))
    image[30, 30] = np.nan  # one bad pixel in a box
    variance[4:20, 38:55] = np.nan  # a whole box without a valid pixel
    x = np.array([30.2, 12.7, 46.0, 2.0, np.nan, 44.4, 57.9, 1e30, -1e30])
    y = np.array([29.6, 40.1, 11.5, 30.0, 20.0, 44.4, 30.0, 30.0, 30.0])
    flux, error = forced_photometry(image, variance, x, y, 3.0)  # (warnings are errors: no overflow on 1e30)
    half = 6  # 2 FWHM
    for k in range(len(x)):
        if k in (2, 3, 4, 6, 7, 8):  # no valid pixel, off the edge, no position, off the edge, far off
            assert np.isnan(flux[k]) and np.isnan(error[k])
            continue
        ix, iy = round(x[k]), round(y[k])
        p = gaussian_psf(3.0, x[k] - ix, y[k] - iy, half)
        d = image[iy - half : iy + half + 1, ix - half : ix + half + 1]
        v = variance[iy - half : iy + half + 1, ix - half : ix + half + 1]
        ok = np.isfinite(d)
        assert flux[k] == pytest.approx(np.sum(p[ok] * d[ok] / v[ok]) / np.sum(p[ok] ** 2 / v[ok]), rel=1e-12)
        assert error[k] == pytest.approx(np.sum(p[ok] ** 2 / v[ok]) ** -0.5, rel=1e-12)


def _drawn(truth, shape=(80, 80), fwhm=3.0, half=6):
    image = np.zeros(shape)
    for x, y, f in truth:
        ix, iy = round(x), round(y)
        image[iy - half : iy + half + 1, ix - half : ix + half + 1] += f * gaussian_psf(fwhm, x - ix, y - iy, half)
    return image


def test_neighbours_fitted_together_keep_each_ones_change_and_a_lone_position_is_unchanged():
    """Two changes 1.2 FWHM apart (+1000 and -300 ADU), one alone, one empty place: weighed one by one, each of
    the pair takes part of the other's change (955.6 and -152.1); fitted together, exactly their own, with
    larger errors (what they share), pulls of unit width over noise; the lone ones exactly as forced_photometry."""
    from skylake.dia.forced import joint_forced_photometry

    fwhm = 3.0
    truth = [(30.3, 40.2, 1000.0), (33.9, 40.5, -300.0), (60.0, 20.0, 500.0), (12.0, 12.0, 0.0)]
    image, variance = _drawn(truth), np.full((80, 80), 4.0)
    x, y, f = (np.array(v) for v in zip(*truth))
    alone, alone_err = forced_photometry(image, variance, x, y, fwhm)
    assert alone[:2] == pytest.approx([955.64, -152.13], abs=0.01)
    joint, err = joint_forced_photometry(image, variance, x, y, fwhm)
    assert joint == pytest.approx(f, abs=1e-6)
    assert (err[:2] > alone_err[:2] * 1.005).all()
    np.testing.assert_array_equal(np.c_[joint, err][2:], np.c_[alone, alone_err][2:])
    rng = np.random.default_rng(1)
    pulls = [(joint_forced_photometry(image + rng.normal(0, 2, image.shape), variance, x, y, fwhm)[0] - f) / err
             for _ in range(400)]  # fmt: skip
    assert np.std(pulls, axis=0) == pytest.approx(1.0, abs=0.1)
    # a position on the first's star cannot be told from it: it is measured on its own (the star's flux, as one
    # by one) and the pair still fitted together, exactly; a position with no coordinates is NaN
    twin, _ = joint_forced_photometry(image, variance, [30.3, 33.9, 30.4, np.nan], [40.2, 40.5, 40.2, 3.0], fwhm)
    assert twin[:2] == pytest.approx([1000.0, -300.0], abs=1e-6) and np.isnan(twin[3])
    assert twin[2] == forced_photometry(image, variance, [30.4], [40.2], fwhm)[0][0]


def test_a_group_fitted_pair_by_pair_is_the_least_squares_fit_of_all_its_psfs():
    """Four positions in one group, offset both ways in rows and columns, masked pixels where their boxes
    overlap: the fluxes and errors are those of one weighted least-squares fit of the four PSFs over the image."""
    from skylake.dia.forced import joint_forced_photometry

    fwhm = 3.0
    truth = [(30.3, 40.2, 1000.0), (33.9, 41.6, -300.0), (28.1, 43.7, 400.0), (35.2, 37.4, 250.0)]
    image, variance = _drawn(truth), np.full((80, 80), 4.0)
    variance[39:42, 31:34] = np.inf  # shared by all four boxes
    x, y, f = (np.array(v) for v in zip(*truth))
    joint, err = joint_forced_photometry(image, variance, x, y, fwhm)
    design = np.stack([_drawn([(xk, yk, 1.0)]).ravel() for xk, yk in zip(x, y)])
    weight = (1.0 / variance).ravel()  # 0 where masked
    cov = np.linalg.inv((design * weight) @ design.T)
    np.testing.assert_allclose(joint, cov @ ((design * weight) @ image.ravel()), rtol=1e-10)
    np.testing.assert_allclose(err, np.sqrt(np.diag(cov)), rtol=1e-10)
    assert joint == pytest.approx(f, abs=1e-6)


def test_a_dia_object_on_an_object_is_measured_as_the_object_not_again_as_a_transient():
    """A DIA object made before its star had an object has no object_id: where an object (or catalogue star) lies
    within its radius it is left out of the transients measured; one with nothing there is kept."""
    from skylake.dia.stage import _targets

    objects = pd.DataFrame({"object_id": [-123456789012345678], "_healpix_29": [7], "ra": [200.0], "dec": [10.0],
                            "from_catalogue": [True]})  # fmt: skip
    near, far = (200.0 + 1.0 / 3600, 10.0), (200.01, 10.0)  # 0.98" and 35" away
    transients = pd.DataFrame({"object_id": pd.array([pd.NA, pd.NA], dtype="Int64"), "dia_object_id": [11, 12],
                               "_healpix_29": [8, 9], "ra": [near[0], far[0]], "dec": [near[1], far[1]],
                               "radius": [5.0, 5.0], "from_catalogue": [False, False]})  # fmt: skip
    got = _targets(objects, transients)
    assert got["object_id"].tolist() == [-123456789012345678, pd.NA] and got["dia_object_id"].tolist() == [pd.NA, 12]
    assert len(_targets(objects.iloc[:0], transients)) == 2  # objects never built: both are transients


def test_dia_sources_a_new_star_a_fading_one_and_nothing_else():
    """A point source absent from the reference (a transient, 30 sigma) is a positive DIA source at its flux, a star
    at half its reference flux a negative one; the rest of the difference (constant stars, sky) gives none."""
    from skylake.dia import detect_sources

    rng = np.random.default_rng(11)
    size = 384
    stars = _field(rng, 250, size)
    ref, ref_var = _reference(stars, (size, size))
    fading = int(np.argmax(np.where(stars["x"].between(60, 320) & stars["y"].between(60, 320), stars["flux"], 0)))
    now = stars.copy()
    now.loc[fading, "flux"] *= 0.5
    x0, y0 = next(
        (x + 0.3, y + 0.6)
        for y in range(60, 320, 7)
        for x in range(60, 320, 7)
        if np.hypot(stars["x"] - x, stars["y"] - y).min() > 10
    )
    new = pd.DataFrame({"x": [x0], "y": [y0], "flux": [4000.0], "amp": [0.0]})
    frame = render_frame(pd.concat([now, new]), (size, size), fwhm_px=2.5, sky_adu=SKY, gain=GAIN, seed=5)
    diff = subtract(frame, frame_variance(frame, GAIN, READ_NOISE), ref, ref_var, DiaSettings(saturation=60000))
    found = detect_sources(diff.image, diff.variance, 2.5)
    clean = found[found["flags"] == 0]
    print(f"\n{clean.round(2).to_string()}")
    assert len(clean) == 2
    up, down = clean[clean["sign"] == 1].iloc[0], clean[clean["sign"] == -1].iloc[0]
    assert np.hypot(up["x"] - x0, up["y"] - y0) < 0.5 and up["flux"] == pytest.approx(4000, rel=0.1)
    assert np.hypot(down["x"] - stars["x"][fading], down["y"] - stars["y"][fading]) < 0.5
    assert down["flux"] == pytest.approx(-0.5 * stars["flux"][fading], rel=0.05)


def test_masked_pixels_are_no_residual():
    """Pixels of infinite variance (a saturated star's reach) leave the normalised rms alone, not pull it to 0."""
    from skylake.dia import Difference

    image, variance = np.ones((20, 20)), np.ones((20, 20))
    variance[8:12, 8:12] = np.inf
    diff = Difference(image=image, variance=variance, solution=None, model=image)
    assert diff.normalised_rms([(10, 10)], half=4) == pytest.approx(1.0)


def test_resampling_gives_what_reproject_gives_with_one_mapping():
    """A field resampled between two SIP-distorted WCS, rotated and shifted: the mapping splined on a 16-pixel grid
    gives reproject_interp's values (bicubic, bilinear, nearest) and NaN footprint to 1e-9 of the peak."""
    from astropy.wcs import WCS
    from reproject import reproject_interp

    from skylake.dia.resample import pixel_mapping, resample

    def wcs(ra, rot):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        w.wcs.crval, w.wcs.crpix = [ra, 30.0], [100.0, 90.0]
        c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
        w.wcs.cd = 1e-3 * np.array([[-c, s], [s, c]])
        a, b = np.zeros((3, 3)), np.zeros((3, 3))
        a[2, 0], b[0, 2], a[1, 1] = 2e-6, -3e-6, 1e-6
        from astropy.wcs import Sip

        w.sip = Sip(a, b, None, None, w.wcs.crpix)
        return w

    rng = np.random.default_rng(4)
    stars = _field(rng, 60, 200)
    image = render_frame(stars, (180, 200), fwhm_px=2.0, sky_adu=0.0, read_noise_adu=1.0, gain=GAIN, seed=2)
    image = image.astype(np.float64)  # (reproject keeps float32 in float32)
    source, target = wcs(150.0, 0.0), wcs(150.02, 7.0)
    x, y = pixel_mapping(source, target, (190, 210))
    for order in ("bicubic", "bilinear", "nearest-neighbor"):
        want, _ = reproject_interp((image, source), target, shape_out=(190, 210), order=order)
        got = resample(image, x, y, order)
        assert (np.isnan(want) == np.isnan(got)).all() and 0 < np.isnan(got).sum() < got.size
        assert np.nanmax(np.abs(want - got)) < 1e-9 * np.nanmax(want)
    with pytest.raises(ValueError, match="order must be one of .* not 'cubic'"):
        resample(image, x, y, "cubic")


def test_a_frame_shifted_from_its_reference_gets_it_by_whole_pixels_and_the_kernel_takes_the_fraction():
    """A tracked field's frame: its grid is the reference's moved by (2.3, -1.6) px. The reference comes onto it
    moved by whole pixels (its own values, not interpolated) with the fraction (0.3, 0.4) said; the kernel takes the
    fraction up: the difference is at the noise, its stamps sit on the frame's stars, and a star 20 % brighter in
    the frame has its change measured at the frame's position. A frame turned by 0.5 deg is interpolated."""
    from astropy.wcs import WCS

    from skylake.dia.reference import ReferenceImage, on_frame
    from skylake.synthetic.frames import tan_wcs_header

    rng = np.random.default_rng(8)
    size, shift = 384, (2.3, -1.6)
    stars = _field(rng, 250, size)
    ref, ref_var = _reference(stars, (size, size), fwhm=1.6)
    header = tan_wcs_header(150.0, 30.0, (size, size), 2.0)
    reference = ReferenceImage(
        image=ref - SKY, variance=ref_var, mask=np.zeros(ref.shape, bool), wcs=WCS(header), fwhm=1.6
    )
    header["CRPIX1"] += shift[0]
    header["CRPIX2"] += shift[1]
    inner = stars["x"].between(40, size - 40) & stars["y"].between(40, size - 40)
    bright = int((stars["flux"].where(inner) - 8e4).abs().idxmin())  # S/N 80 in its change; no stamp's star
    on_sky = stars.assign(x=stars["x"] + shift[0], y=stars["y"] + shift[1], flux=0.9 * stars["flux"])
    on_sky.loc[bright, "flux"] *= 1.2
    frame = render_frame(on_sky, (size, size), fwhm_px=2.5, sky_adu=SKY, read_noise_adu=READ_NOISE, gain=GAIN, seed=3)
    image, variance, mask, offset = on_frame(reference, WCS(header), frame.shape, 1.0)
    assert offset == pytest.approx((0.3, 0.4), abs=1e-6)
    assert np.array_equal(image[5:-5, 5:-5], reference.image[7:-3, 3:-7])  # its (x - 2, y + 2): the values themselves
    settings = DiaSettings(saturation=60000)
    diff = subtract(frame - SKY, frame_variance(frame, GAIN, READ_NOISE), image, variance, settings, mask=mask,
                    offset=offset)  # fmt: skip
    assert 0.95 < diff.normalised_rms() < 1.15 and diff.solution.scale == pytest.approx(0.9, abs=0.01)
    kernel = diff.solution.kernel_at(size / 2, size / 2)
    v, u = np.mgrid[: kernel.shape[0], : kernel.shape[1]] - kernel.shape[0] // 2
    centroid = ((kernel * u).sum() / kernel.sum(), (kernel * v).sum() / kernel.sum())
    assert centroid == pytest.approx(offset, abs=0.02)  # the kernel moves the reference by the fraction
    near = [np.hypot(on_sky["x"] - x, on_sky["y"] - y).min() for x, y in diff.stamps]
    assert len(near) >= 10 and max(near) < 0.05  # on the frame's stars (on the reference's grid they are 0.5 px off)
    position = on_sky.loc[bright, ["x", "y"]].to_numpy(float)
    assert np.hypot(*(np.array(diff.stamps) - position).T).min() > 10  # the changed star is no stamp
    flux, err = forced_photometry(diff.image, diff.variance, [position[0]], [position[1]], 2.5)
    truth = 0.9 * 0.2 * stars.loc[bright, "flux"]
    print(f"\nnrms {diff.normalised_rms():.3f}, change {flux[0] / truth:.4f} +- {err[0] / truth:.4f} of the truth")
    assert abs(flux[0] - truth) < 3 * err[0] and abs(flux[0] / truth - 1) < 0.03, (flux[0], truth, err[0])
    turned = WCS(tan_wcs_header(150.0, 30.0, (size, size), 2.0, rotation_deg=0.5))
    assert on_frame(reference, turned, frame.shape, 1.0)[3] == (0.0, 0.0)


def test_dia_sources_join_the_nearest_dia_object_within_their_radius_or_make_new_ones():
    """Exact: positions on a line of declination, 1 arcsec apart where it matters."""
    from skylake.dia.objects import aggregate, associate, link, match_radius

    assert np.allclose(match_radius([3.0, 0.5, np.nan], [2.0, 2.0, 1.0]), [6.0, 3.0, 2.0])  # 1 FWHM, >= 1.5 px
    existing = pd.DataFrame({"dia_object_id": [100, 200], "ra": [10.0, 10.0], "dec": [0.0, 0.01]})
    arcsec = 1 / 3600
    sources = pd.DataFrame({
        "dia_source_id": [7, 5, 6, 9, 8],
        "ra": [10.0, 10.0, 10.0, 10.0, 10.0],
        "dec": [4 * arcsec, 0.01 + 2 * arcsec, 0.02, 0.02 + 3 * arcsec, 0.03],
        "radius": [5.0, 5.0, 5.0, 5.0, 5.0],
    })  # fmt: skip
    ids = associate(sources, existing)
    # 4" from 100: joins it; 2" from 200: joins it; two new ones 3" apart: one new object named by the first
    # id (6); one alone: its own id
    assert ids.tolist() == [100, 200, 6, 6, 8]
    sources["radius"] = 3.5  # the pair 3" apart still links; the first source 4" from 100 no longer joins it
    assert associate(sources, existing).tolist() == [7, 200, 6, 6, 8]
    assert associate(sources.iloc[:0], existing).tolist() == []

    members = sources.assign(dia_object_id=ids, mjd=[1.0, 2.0, 3.0, 4.0, 5.0], sign=[1, -1, 1, 1, 1],
                             snr=[5.0, 6.0, 10.0, 30.0, 7.0])  # fmt: skip
    rows = aggregate(members).set_index("dia_object_id")
    assert rows["n_sources"].to_dict() == {6: 2, 8: 1, 100: 1, 200: 1}
    assert rows.loc[200, "n_negative"] == 1 and rows.loc[6, "n_positive"] == 2
    assert (rows.loc[6, "first_mjd"], rows.loc[6, "last_mjd"], rows.loc[6, "peak_snr"]) == (3.0, 4.0, 30.0)
    assert rows.loc[6, "dec"] == pytest.approx(0.02 + 3 * arcsec * 30 / 40, abs=1e-9)  # S/N-weighted
    objects = pd.DataFrame({"object_id": [2**60 + 1, 2**60 + 2], "ra": [10.0, 10.0], "dec": [0.02 + arcsec, 0.5]})
    object_id, separation = link(rows.reset_index(), objects)
    assert object_id[list(rows.index).index(6)] == 2**60 + 1  # int64 ids kept exactly
    assert separation[list(rows.index).index(6)] == pytest.approx(3600 * (rows.loc[6, "dec"] - 0.02) - 1, abs=1e-6)
    assert pd.isna(object_id[list(rows.index).index(8)])  # nothing there: a transient


def test_a_bright_stars_residual_loses_its_flux_beside_the_stars_terms_and_a_real_point_keeps_it():
    """SYNTHETIC, Gaussian PSF of 3 px, unit noise: a star of 20,000 ADU misregistered by 0.03 px (a dipole)
    or broadened (a ring) leaves lobes that a PSF-weighted flux calls 5-sigma-or-more detections; fitted beside
    the star's shift and width they fall below 3 sigma. A real point 2 FWHM from the star keeps its S/N (within 15 %);
    the star itself brightening keeps more than half of it (its width's term shares some of the PSF's shape)."""
    from scipy.ndimage import gaussian_filter

    from skylake.dia.forced import beside_star_snr, forced_photometry, gaussian_psf

    fwhm, half, n = 3.0, 20, 61
    c = n // 2

    def star(dx=0.0, dy=0.0, width=fwhm):
        image = np.zeros((n, n))
        image[c - half : c + half + 1, c - half : c + half + 1] = 2e4 * gaussian_psf(width, dx, dy, half)
        return image

    reference, variance = star(), np.ones((n, n))
    noise = np.random.default_rng(3).normal(0.0, 1.0, (n, n))
    cases = {
        "dipole": star(0.03, 0.0) - reference,
        "ring": gaussian_filter(reference, 0.6) - reference,
    }
    for name, residual in cases.items():
        image = residual + noise
        ys, xs = np.unravel_index(np.argmax(image), image.shape)  # the brightest lobe, as the search finds it
        flux, err = forced_photometry(image, variance, [xs], [ys], fwhm)
        beside = beside_star_snr(image, variance, reference, [xs], [ys], flux, fwhm)
        assert flux[0] / err[0] > 5 and abs(beside[0]) < 3, (name, flux / err, beside)
    point = np.zeros((n, n))
    point[c - half : c + half + 1, c + 6 - half : c + 6 + half + 1] = 300 * gaussian_psf(fwhm, 0.0, 0.0, half)
    for name, image in {"a point beside it": point + noise, "the star brightening": 0.02 * reference + noise}.items():
        x = c + 6 if name == "a point beside it" else c
        flux, err = forced_photometry(image, variance, [x], [c], fwhm)
        beside = beside_star_snr(image, variance, reference, [x], [c], flux, fwhm)
        kept = beside[0] / (flux[0] / err[0])
        assert flux[0] / err[0] > 5 and (0.85 if name == "a point beside it" else 0.5) < kept < 1.15, (name, kept)
    far = beside_star_snr(noise, variance, np.zeros((n, n)), [c], [c], [30.0], fwhm)
    assert np.isnan(far).all()  # no star near: not looked at


def test_dia_row_ids_are_the_frames_and_a_frame_with_more_rows_than_they_hold_is_refused():
    """A DIA row's id is its frame's id shifted by ID_BITS plus its number; a frame with more rows than that
    leaves room for would reuse the next frame's ids: refused with the numbers, not written."""
    from skylake.dia.files import ID_BITS, frame_row_ids

    assert frame_row_ids(7, 3).tolist() == [7 * 2**ID_BITS, 7 * 2**ID_BITS + 1, 7 * 2**ID_BITS + 2]
    assert frame_row_ids(7, 2**ID_BITS)[-1] == 8 * 2**ID_BITS - 1  # the last id of frame 7's room
    with pytest.raises(ValueError, match=f"frame 7: {2**ID_BITS + 1} DIA rows, more than the {2**ID_BITS}"):
        frame_row_ids(7, 2**ID_BITS + 1)


def test_a_transients_points_move_to_where_its_detections_frames_peak_together():
    """skylake.dia.places.joint_places: the S/N^2 of the frames that detected a transient summed place by place;
    every frame's forced point (detected there or not) takes its values at the best place; a transient detected on
    fewer frames than asked keeps its points. Exact, on hand-made grids of four places."""
    import pyarrow as pa

    from skylake.dia.places import joint_places

    def forced(frame_id, ids):
        n = len(ids)
        return pa.table({
            "frame_id": pa.array([frame_id] * n, pa.int64()), "dia_object_id": pa.array(ids, pa.int64()),
            "x": [10.0] * n, "y": [20.0] * n, "dflux": [1.0] * n, "dflux_err": [0.5] * n,
            "mag_dia": pa.array([None] * n, pa.float32()), "mag_dia_err": pa.array([None] * n, pa.float32()),
        })  # fmt: skip

    def grid(snr2, frame_id):
        return {
            "snr2": np.array(snr2, float), "x": np.arange(4.0) + frame_id, "y": np.arange(4.0) * 2,
            "dflux": np.arange(4.0) * 10 + frame_id, "dflux_err": np.ones(4),
            "mag_dia": np.array([np.nan, 15.0, 16.0, 17.0]), "mag_dia_err": np.array([np.nan, 0.1, 0.2, 0.3]),
        }  # fmt: skip

    tables = [forced(1, [7, 8]), forced(2, [7, 8]), forced(3, [7])]
    grids = [
        {7: grid([0, 5, 9, 6], 1), 8: grid([0, 0, 0, 9], 1)},  # alone, frame 1 would put 7 at place 2
        {7: grid([0, 2, 8, 10], 2), 8: grid([9, 0, 0, 0], 2)},  # and frame 2 at place 3: together 2 (17 > 16)
        {7: grid([9, 9, 0, 0], 3)},  # not a detection of 7: its S/N does not count, its point moves
    ]
    out = joint_places(tables, grids, {7: {1, 2}, 8: {1}}, least=2)
    for table, frame_id in zip(out, (1, 2, 3)):
        seven = table.filter(pa.compute.equal(table.column("dia_object_id"), 7)).to_pylist()[0]
        assert (seven["x"], seven["y"], seven["dflux"]) == (2.0 + frame_id, 4.0, 20.0 + frame_id)
        assert seven["mag_dia"] == 16.0 and seven["mag_dia_err"] == pytest.approx(0.2)
    eight = out[0].filter(pa.compute.equal(out[0].column("dia_object_id"), 8)).to_pylist()[0]
    assert (eight["x"], eight["dflux"], eight["mag_dia"]) == (10.0, 1.0, None)  # one detection: kept
    assert joint_places(tables, grids, {7: {1}}, least=2) == tables
