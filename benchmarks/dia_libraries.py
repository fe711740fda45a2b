"""PSF-matching subtraction, skylake's against a maintained library's: skylake.dia (Alard-Lupton kernel on numpy)
and sfft 1.7.3 (Hu et al. 2022: a free pixel kernel fitted in Fourier space, its numpy backend) on the same REAL
SkyCamZ frames, the same reference on the same grid, the same stamps and masks.

Run from the repo root (one command; ``pip install -e ".[dia-compare]"`` first: sfft 1.7.3)::

    .venv/bin/python benchmarks/dia_libraries.py              # 6 frames, 3 runs each (~5 min)
    .venv/bin/python benchmarks/dia_libraries.py --repeat 1

The 12 frames of 2013-06-10 that share a pointing (../shared/data/skycamz): the first 6 (in time) are stacked as
`skylake reference build` stacks them (:func:`skylake.dia.reference.stack_reference`, on the sharpest one's grid)
and the reference is put on each of the other 6 frames' grids (:func:`skylake.dia.reference.on_frame`), the frame's
sky subtracted. Both fit on skylake's stamps (:func:`skylake.dia.difference.choose_stamps`: bright, unsaturated,
isolated stars, 150 at most): skylake on their boxes, sfft on a masked image pair that keeps the same boxes (its
``Customized_Packet`` convention) and zero elsewhere. Both: kernel half width skylake's (2.7 FWHM, at least 7:
9 px here), kernel spatial order 1, background order 1, kernel sum constant over the chip (sfft's
``ConstPhotRatio``); difference = frame - kernel * reference - background for both. sfft is called as
``Customized_Packet.CP`` calls it (``SingleSFFTConfigure.SSC`` once per kernel size, a numba compile printed apart,
then ``GeneralSFFTSubtract.GSS`` per frame) without CP's FITS files; its arrays are transposed as CP reads them.

Printed per frame and as medians over the frames:

- normalised rms of the difference (skylake's ``Difference.normalised_rms``: rms of D / sigma in a box of the kernel's
  size) around the fit stars, each star's then the median ("nrms fit"), and pooled over them as `skylake dia`
  records it ("pooled": the brightest stars weigh most); and the median over held-out stars (the same cuts, ranked
  past the 150 offered to the fit: fainter). The stars are found on the images (sep), no catalogue. Sigma comes
  from one noise model for both: the frame's variance, the reference's convolved with the method's own kernel
  squared, 1 % of the matched reference (skylake's ``model_noise``), infinite within a kernel's reach of a masked
  or saturated pixel or of the chip's edge (zero-padded by skylake, wrapped by sfft's FFT);
- the residual flux fraction: |PSF-weighted flux in the difference| / the star's flux in the frame, median over
  the same bright stars (the frame's PSF from skylake's ``frame_psf``);
- wall seconds of the subtraction alone (kernel fit, convolution, difference; not the I/O, the resampling or the
  stamp choice, which both share), the median of ``--repeat`` runs, and the ratio skylake/sfft. The machine has 2
  noisy cores: medians; sfft's numba and pyFFTW use both, skylake's BLAS and FFTs what numpy gives them.

properimage (ZOGY) and ois do not install on this machine, so sfft is the one library compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
import types
import warnings
from functools import partial
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "skycamz"
GAIN = 5.47  # SkyCamZ [e-/ADU] (pipelines/skycamz.toml)
THREADS = len(os.sched_getaffinity(0))


def pointing(directory: Path) -> list[Path]:
    """The 12 frames that share a pointing, in time (as tests/test_dia_transients.py picks them)."""
    from astropy.io import fits

    heads = [(p, fits.getheader(p)) for p in sorted(directory.glob("*.fits"))]
    centre = np.median([[h["CRVAL1"], h["CRVAL2"]] for _, h in heads], axis=0)
    same = [(p, h) for p, h in heads if np.hypot(h["CRVAL1"] - centre[0], h["CRVAL2"] - centre[1]) < 0.5]
    return [p for p, _ in sorted(same, key=lambda ph: ph[1]["DATE-OBS"])]


def load(path: Path, profile) -> types.SimpleNamespace:
    """A frame as skylake reads it: pixels, WCS, saturated pixels, sky, variance and half-light FWHM."""
    import sep

    from skylake.dia.reference import sky_noise
    from skylake.frame import header, reading
    from skylake.frame.extract import half_light_radius
    from skylake.reduce.pixels import frame_pixels

    image = reading.read_images(reading.read_bytes(str(path)), profile.hdu, int(profile.max_image_mb * 1e6))[0]
    level = header.saturation_level(image.header, profile, image.file_max)[0]  # the file's top less 1 % here
    row = types.SimpleNamespace(path=str(path), hdu=image.hdu, wcs_source=None, solved_wcs=None, saturation=level)
    data, wcs, saturated = frame_pixels("", row, profile)  # (SkyCamZ frames arrive reduced: no masters read)
    data = np.asarray(data, np.float64)
    sky, variance = sky_noise(data, GAIN)
    stars = np.ascontiguousarray(data - sky)
    found = sep.extract(stars, 5.0, err=float(np.sqrt(np.median(variance))), minarea=5)
    found = found[found["flag"] == 0]
    fwhm = 2 * float(np.median(half_light_radius(stars, found["x"], found["y"], found["a"], found["flux"])))
    return types.SimpleNamespace(
        name=path.name, data=data, wcs=wcs, saturated=saturated, level=level, sky=sky, variance=variance,
        fwhm=fwhm, exptime=float(image.header["EXPTIME"]),
    )  # fmt: skip


def skylake_step(frame, variance, reference, stamps, kernel):
    """skylake's subtraction as :func:`skylake.dia.difference.subtract` does it, without the variance."""
    from skylake.dia.kernel import fit_kernel

    solution = fit_kernel(frame, variance, reference, [(round(x), round(y)) for x, y in stamps], kernel)
    return frame - solution.convolve(reference), solution


def sfft_step(config, frame, reference, active):
    """sfft's subtraction (reference convolved: D = frame - K * reference - B), on numpy (row, column) arrays."""
    from sfft.sfftcore.SFFTSubtract import GeneralSFFTSubtract

    def fits_order(a):  # sfft's axis 0 is the FITS x (Customized_Packet reads ``getdata(...).T``)
        return np.ascontiguousarray(a.T, np.float64)

    solution, diff, _ = GeneralSFFTSubtract.GSS(
        PixA_I=fits_order(reference), PixA_J=fits_order(frame), PixA_mI=fits_order(np.where(active, reference, 0.0)),
        PixA_mJ=fits_order(np.where(active, frame, 0.0)), SFFTConfig=config, BACKEND_4SUBTRACT="Numpy",
        NUM_CPU_THREADS_4SUBTRACT=THREADS, VERBOSE_LEVEL=0,
    )  # fmt: skip
    return diff.T, solution


def sfft_kernel(solution, shape, half: int) -> np.ndarray:
    """sfft's kernel at the chip's centre, in numpy (row, column) order (the same direction as skylake's)."""
    from sfft.utils.SFFTSolutionReader import Realize_MatchingKernel

    ny, nx = shape
    centre = np.array([[(nx + 1) / 2, (ny + 1) / 2]])  # sfft's 1-based (x, y)
    return Realize_MatchingKernel(centre).FromArray(solution, nx, ny, 2 * half + 1, 2 * half + 1, 1, 3)[0].T


def quality(diff, frame, f, ref_var, kernel, bad, stars, half, fwhm, psf) -> tuple[float, ...]:
    """Normalised rms (median over the fit stars, pooled over them, median over the held-out ones) and the median
    |residual flux fraction| of the fit and held-out stars."""
    from scipy.signal import oaconvolve

    from skylake.dia.difference import Difference
    from skylake.dia.forced import forced_photometry
    from skylake.dia.stage import SETTINGS

    var = f.variance + oaconvolve(ref_var, kernel**2, mode="same") + (SETTINGS["model_noise"] * (frame - diff)) ** 2
    var[bad] = np.inf
    view = types.SimpleNamespace(image=diff, variance=var)  # all that Difference.normalised_rms reads
    fit, held = stars
    x, y = np.array(fit + held).T
    star, _ = forced_photometry(frame, f.variance, x, y, fwhm, psf=psf)
    left, _ = forced_photometry(diff, var, x, y, fwhm, psf=psf)
    fraction = np.abs(left / star)
    return (
        float(np.nanmedian([Difference.normalised_rms(view, [s], half) for s in fit])),
        Difference.normalised_rms(view, fit, half),  # skylake's own figure (dia_frames.normalised_rms)
        float(np.nanmedian([Difference.normalised_rms(view, [s], half) for s in held])),
        float(np.nanmedian(fraction[np.isfinite(fraction)])),
    )


def timed(func, repeat: int):
    """Median wall seconds of ``func()`` over ``repeat`` calls, and its last result."""
    seconds = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = func()
        seconds.append(time.perf_counter() - t)
    return statistics.median(seconds), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each subtraction (default 3); medians")
    parser.add_argument("--reference", type=int, default=6, help="the first N frames make the reference (6)")
    parser.add_argument("--data", type=Path, default=DATA, help=f"the SkyCamZ frames (default {DATA})")
    args = parser.parse_args(argv)
    try:
        from sfft.sfftcore.SFFTConfigure import SingleSFFTConfigure
    except ImportError:
        print('sfft is not importable: .venv/bin/pip install -e ".[dia-compare]" (sfft 1.7.3)')
        return 2
    warnings.simplefilter("ignore")  # FITS header fixes, sep and numba chatter: not what is measured
    from skylake.dia.difference import DiaSettings, Difference, _grown, _saturated, choose_stamps
    from skylake.dia.kernel import KernelSettings
    from skylake.dia.reference import on_frame, stack_reference
    from skylake.dia.stage import SETTINGS, _kernel_half_width, core_fwhm, frame_psf
    from skylake.profile import load_profile

    paths = pointing(args.data)
    if len(paths) <= args.reference:
        parser.error(f"{len(paths)} frames of one pointing in {args.data}; more than --reference needed")
    profile = load_profile("skycamz")
    frames = [load(p, profile) for p in paths]
    first = sorted(frames[: args.reference], key=lambda f: f.fwhm)  # the sharpest sets the grid
    ref = stack_reference(
        [f.data for f in first],
        [f.wcs for f in first],
        [f.saturated for f in first],
        [f.exptime for f in first],
        [GAIN] * len(first),
    )
    print(f"reference: {len(first)} frames stacked on {first[0].name}'s grid, FWHM {ref.fwhm:.2f} px")
    configs, rows = {}, []
    head = f"{'frame':28} {'hw':>2} {'stamps':>7} {'kernel sum':>13} {'nrms fit':>11} {'pooled':>11} {'nrms held':>11}"
    print(f"{head} {'|flux resid|':>13} {'seconds':>12}   (skylake / sfft)")
    for f in frames[args.reference :]:
        # shared: not timed; SkyCamZ's field turns between frames, so the reference is interpolated (offset 0)
        image, ref_var, mask, _ = on_frame(ref, f.wcs, f.data.shape, f.exptime)
        mask |= f.saturated
        half = _kernel_half_width(f.fwhm)
        settings = DiaSettings(kernel=KernelSettings(half_width=half), saturation=f.level, **SETTINGS)
        frame = f.data - f.sky
        ranked = choose_stamps(image, frame, dataclasses.replace(settings, max_stamps=10**6), mask)
        fit, held = ranked[: settings.max_stamps], ranked[settings.max_stamps :]  # the first are subtract()'s
        active = np.zeros(frame.shape, bool)  # sfft fits where skylake does: each fit star's box (2 half wide)
        for x, y in fit:
            ix, iy = round(x), round(y)
            active[max(iy - 2 * half, 0) : iy + 2 * half + 1, max(ix - 2 * half, 0) : ix + 2 * half + 1] = True
        active &= ~mask
        if half not in configs:  # a numba compile per kernel size: once, apart from the timings
            t = time.perf_counter()
            configs[half] = SingleSFFTConfigure.SSC(
                NX=frame.shape[1], NY=frame.shape[0], KerHW=half, KerPolyOrder=1, BGPolyOrder=1, ConstPhotRatio=True,
                BACKEND_4SUBTRACT="Numpy", NUM_CPU_THREADS_4SUBTRACT=THREADS, NUMBA_CACHE=False, VERBOSE_LEVEL=0,
            )  # fmt: skip
            print(f"(sfft configure for half width {half}, numba compile, once: {time.perf_counter() - t:.1f} s)")
        sky_s, (sky_d, solution) = timed(
            partial(skylake_step, frame, f.variance, image, fit, settings.kernel), args.repeat
        )
        sfft_s, (sfft_d, sfft_solution) = timed(partial(sfft_step, configs[half], frame, image, active), args.repeat)
        kernels = (solution.kernel_at((frame.shape[1] - 1) / 2, (frame.shape[0] - 1) / 2),
                   sfft_kernel(sfft_solution, frame.shape, half))  # fmt: skip
        # the same pixels left out for both: a kernel's reach of the masks, the saturated stars and the chip's edge
        bad = _saturated(frame, image, f.level, half) | _grown(mask, half)
        bad[:half], bad[-half:], bad[:, :half], bad[:, -half:] = True, True, True, True
        ours = Difference(image=sky_d, variance=f.variance, solution=solution, model=frame - sky_d, stamps=fit)
        fwhm = core_fwhm(ours) or f.fwhm  # the frame's PSF, measured once for both
        psf = frame_psf(ours, fwhm)
        q = [
            quality(d, frame, f, ref_var, k, bad, (fit, held), half, fwhm, psf)
            for d, k in zip((sky_d, sfft_d), kernels)
        ]
        rows.append((*q[0], *q[1], sky_s, sfft_s))
        sums = f"{kernels[0].sum():6.4f}/{kernels[1].sum():6.4f}"
        cols = " ".join(f"{q[0][k]:{w}}/{q[1][k]:{w}}" for k, w in enumerate(("5.3f", "5.3f", "5.3f", "6.4f")))
        print(f"{f.name:28} {half:>2} {solution.stamps_used:>3}/{len(fit):<3} {sums} {cols} {sky_s:5.2f}/{sfft_s:5.2f}")
    m = np.median(np.array(rows), axis=0)
    print(f"median over {len(rows)} frames, skylake / sfft:")
    print(f"  normalised rms, fit stars (median) {m[0]:.3f} / {m[4]:.3f}")
    print(f"  normalised rms, fit stars (pooled) {m[1]:.3f} / {m[5]:.3f}")
    print(f"  normalised rms, held-out (median)  {m[2]:.3f} / {m[6]:.3f}")
    print(f"  |residual flux fraction|           {m[3]:.4f} / {m[7]:.4f}")
    print(f"  subtraction wall seconds           {m[8]:.2f} / {m[9]:.2f}  (skylake/sfft {m[8] / m[9]:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
