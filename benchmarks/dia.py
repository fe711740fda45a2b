"""Difference-imaging benchmark: one frame's DIA step (kernel fit and subtraction, the frame's PSF, DIA sources) on
1k and 4k frames, against sep's background and extraction of the same frame (the detection ingest runs anyway)
and against one FFT convolution of the frame with a kernel of the same size (the floor any PSF matching pays).

Run from the repo root (one command)::

    .venv/bin/python benchmarks/dia.py            # 1k and 4k frames, 3 runs each (~3 min)
    .venv/bin/python benchmarks/dia.py --quick    # 1k and 2k, 1 run

The frames are SYNTHETIC (``skylake.synthetic.frames.render_frame``: Gaussian stars, one per 250 pixels, Poisson
and read noise): a reference with 1.4 px seeing and a frame with 3.0 px, 10 % fainter. Printed: the median CPU
seconds (``time.process_time``: the machine is shared) of each step per frame, their ratios, and how the DIA step
grows from 1k to 4k (per pixel: flat means it scales with the frame's area). The issue's goal compares the DIA step
with a subtraction library's own call on the same frames: that is benchmarks/dia_libraries.py (sfft on real frames;
properimage and ois do not install here); the floor here is scipy's FFT convolution.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def cpu_seconds(func, runs: int) -> float:
    """Median CPU seconds of ``func()`` over ``runs`` calls."""
    out = []
    for _ in range(runs):
        t = time.process_time()
        func()
        out.append(time.process_time() - t)
    return statistics.median(out)


def frames(size: int, seed: int = 1):
    """A reference and a frame of ``size`` x ``size`` pixels, with their variances."""
    import pandas as pd

    from skylake.dia import frame_variance
    from skylake.synthetic.frames import render_frame

    rng = np.random.default_rng(seed)
    n = size * size // 250
    stars = pd.DataFrame(
        {"x": rng.uniform(15, size - 15, n), "y": rng.uniform(15, size - 15, n), "flux": 10 ** rng.uniform(3, 5, n)}
    )
    reference = render_frame(stars, (size, size), fwhm_px=1.4, gain=32.0, read_noise_adu=1.25, seed=seed)
    frame = render_frame(stars.assign(flux=0.9 * stars["flux"]), (size, size), fwhm_px=3.0, gain=2.0, seed=seed + 1)
    return frame, frame_variance(frame, 2.0, 5.0), reference, frame_variance(reference, 32.0, 1.25)


def dia_step(frame, variance, reference, reference_variance):
    """What `skylake dia` does to a frame once its pixels and reference are read."""
    from skylake.dia import DiaSettings, KernelSettings, detect_sources, subtract
    from skylake.dia.stage import SETTINGS, aperture_correction, core_fwhm, frame_psf

    settings = DiaSettings(kernel=KernelSettings(half_width=9), saturation=60000.0, **SETTINGS)
    diff = subtract(frame, variance, reference, reference_variance, settings)
    fwhm = core_fwhm(diff) or 3.0
    psf = frame_psf(diff, fwhm)
    found = detect_sources(diff.image, diff.variance, fwhm, psf=psf)
    aperture_correction(diff, fwhm, psf)
    return diff, found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per size (default 3); medians are printed")
    parser.add_argument("--quick", action="store_true", help="1k and 2k frames, one run")
    args = parser.parse_args(argv)
    import sep
    from scipy.signal import oaconvolve

    sizes, runs = ((1024, 2048), 1) if args.quick else ((1024, 4096), args.runs)
    kernel = np.ones((19, 19)) / 361.0
    print(f"{'frame':>6} {'DIA step':>9} {'sep bkg+extract':>16} {'one FFT conv':>13} {'DIA/sep':>8} {'DIA/conv':>9}")
    per_pixel = []
    for size in sizes:
        frame, variance, reference, ref_var = frames(size)
        diff, found = dia_step(frame, variance, reference, ref_var)
        assert 0.85 < diff.solution.scale < 0.95, diff.solution.scale  # the frame is 10 % fainter

        def extract(image=frame):
            data = np.ascontiguousarray(image, dtype=np.float64)
            bkg = sep.Background(data)
            sep.extract(data - bkg.back(), 5.0, err=bkg.globalrms)

        dia_s = cpu_seconds(lambda: dia_step(frame, variance, reference, ref_var), runs)  # noqa: B023 - run now
        sep_s = cpu_seconds(extract, runs)
        conv_s = cpu_seconds(lambda: oaconvolve(reference, kernel, mode="same"), runs)  # noqa: B023 - run now
        per_pixel.append(dia_s / size**2)
        print(
            f"{size:>5}² {dia_s:>8.2f}s {sep_s:>15.2f}s {conv_s:>12.3f}s {dia_s / sep_s:>7.1f}x {dia_s / conv_s:>8.0f}x"
            f"   ({len(found)} DIA sources, {diff.solution.stamps_used} stamps)"
        )
    growth = per_pixel[-1] / per_pixel[0]
    print(f"DIA step per pixel, {sizes[-1]}² over {sizes[0]}²: {growth:.2f} (1: grows with the area)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
