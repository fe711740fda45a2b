"""Reduction and coadd benchmark: skylake's per-frame reduction against the bare numpy arithmetic, and the coadd's
cost per input frame against reproject alone.

Run from the repo root (one command; ``--quick`` for 2k frames)::

    .venv/bin/python benchmarks/reduction.py [--quick] [--runs N]

SYNTHETIC raw frames (``skylake.synthetic.raw.write_raw_night``, 4096x4096 or 2048x2048) are written to a temporary
directory, their masters built into a fresh lake, then per light frame, medians of ``--runs``:

(a) bare numpy (the baseline): ``(raw - bias - dark * t) / flat`` and the bad pixels set to NaN, on arrays in memory;
(b) skylake ``reduce_frame`` with bias, dark, flat and bad pixels (masters chosen from the lake, images cached);
(c) the same with cosmic rays (astroscrappy);
(d) (b) with the sky frame (PRIME's method) subtracted; the sky frame's build, per input frame, is printed too.

Coadd: ``skylake.reduce.coadd.stack`` of the light frames (background, reprojection, weighted mean, weights and
saturation maps) per input frame, against one ``reproject_interp`` per frame.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2048x2048 frames instead of 4096x4096")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians)")
    args = parser.parse_args(argv)

    from skylake.cli import main as cli
    from skylake.frame import astrometry, header, reading
    from skylake.lake import Lake
    from skylake.profile import load_profile
    from skylake.reduce.apply import reduce_frame
    from skylake.reduce.build import build_masters
    from skylake.reduce.coadd import stack
    from skylake.reduce.store import load_image, read_table
    from skylake.synthetic.raw import write_raw_night

    size = 2048 if args.quick else 4096
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        truth = write_raw_night(
            tmp / "raw", shape=(size, size), n_bias=5, n_dark=3, n_flat=3, n_light=5, seed=1, dither_px=30, fringe=0.05
        )
        print(f"{size}x{size} SYNTHETIC raw frames written in {time.perf_counter() - t0:.1f} s", flush=True)
        cli(["init", str(tmp / "lake")])
        calib = [str(p) for k in ("bias", "dark", "flat") for p in truth.paths[k]]
        t0 = time.perf_counter()
        cli(["masters", "build", str(tmp / "lake"), *calib, "--pipeline", "rawdemo"])
        built = time.perf_counter() - t0
        print(f"masters from {len(calib)} frames: {built:.1f} s ({built / len(calib):.2f} s per raw frame)")
        lake = Lake.open(tmp / "lake")
        root = lake.store.location
        base = load_profile("rawdemo")
        no_cr = dataclasses.replace(base, reduction={**base.reduction, "steps": ["bias", "dark", "flat", "badpix"]})
        with_sky = dataclasses.replace(no_cr, reduction={**no_cr.reduction, "steps": ["bias", "dark", "flat", "sky"]})
        lights = [str(p) for p in truth.paths["light"]]
        t0 = time.perf_counter()
        build_masters(lake, lights, with_sky, kind="sky")
        t_build_sky = (time.perf_counter() - t0) / len(lights)
        print(f"sky frame from {len(lights)} light frames: {t_build_sky:.2f} s per frame")
        lake = Lake.open(tmp / "lake")
        rows = read_table(lake).to_pandas().set_index("kind")
        img = {k: np.asarray(load_image(root, rows.loc[k, "path"])) for k in rows.index}
        raw = [reading.read_images(p.read_bytes(), base.hdu, 10**10)[0] for p in truth.paths["light"]]
        recs = [header.frame_record(im.header, base) for im in raw]
        bad = (img["hotpix"] > 0) | (img["deadpix"] > 0)

        def bare():
            for im in raw:
                d = (im.data - img["bias"] - img["dark"] * np.float32(60.0)) / img["flat"]
                d[bad] = np.nan

        def skylake(profile):
            def run():
                for im, rec in zip(raw, recs):
                    reduce_frame(dataclasses.replace(im, data=im.data.copy()), dict(rec), profile, root)

            return run

        n = len(raw)
        t_bare = _median_time(bare, args.runs) / n
        t_sky = _median_time(skylake(no_cr), args.runs) / n
        t_cr = _median_time(skylake(base), args.runs) / n
        t_with_sky = _median_time(skylake(with_sky), args.runs) / n
        print(f"\nper {size}x{size} light frame (medians of {args.runs}):")
        print(f"  (a) bare numpy arithmetic            {t_bare:8.3f} s   1.00x")
        print(f"  (b) skylake reduce_frame             {t_sky:8.3f} s   {t_sky / t_bare:.2f}x")
        print(f"  (c) skylake + cosmic rays            {t_cr:8.3f} s   {t_cr / t_bare:.2f}x")
        print(f"  (d) skylake + sky frame              {t_with_sky:8.3f} s   {t_with_sky / t_bare:.2f}x")

        reduced, wcs_list, sats = [], [], []
        for im, rec in zip(raw, recs):
            frame = dataclasses.replace(im, data=im.data.copy())
            reduce_frame(frame, dict(rec), no_cr, root)
            reduced.append(frame.data)
            wcs_list.append(astrometry.celestial_wcs(im.header))
            sats.append(np.zeros(frame.data.shape, bool))
        from reproject import reproject_interp

        def reproject_only():
            for d, w in zip(reduced, wcs_list):
                reproject_interp((d, w), wcs_list[0], shape_out=d.shape)

        t_rep = _median_time(reproject_only, args.runs) / n
        t_stack = _median_time(lambda: stack(reduced, wcs_list, sats, [60.0] * n), args.runs) / n
        print(f"\ncoadd of {n} frames, per input frame:")
        print(f"  reproject_interp alone               {t_rep:8.3f} s   1.00x")
        print(f"  skylake stack                        {t_stack:8.3f} s   {t_stack / t_rep:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
