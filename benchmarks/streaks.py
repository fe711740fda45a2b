"""Streak-finder benchmark: ``detect_streaks`` on the real SkyCamZ frames with a trail injected, against
sep's source extraction on the same frames (the detection ingest runs anyway), CPU seconds per frame.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/streaks.py              # the 14 frames, 5 runs each (~1 min)
    .venv/bin/python benchmarks/streaks.py --runs 9

Each frame (``../shared/data/skycamz``, REAL, 1024x1024) gets one SYNTHETIC trail from (100, 100) to (700, 500)
(``skylake.synthetic.allsky.render_streak``, 1.3 px sigma, 60 ADU/px); every run must find it. Printed: the
median CPU seconds (``time.process_time``: the machine is shared) of ``detect_streaks`` and of
``sep.Background`` + ``sep.extract`` (5 sigma) per frame, and their ratio. The goal, as a fraction of a
frame's ingest, is below 0.5 CPU seconds per 1k frame (the tests do not time it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

FRAMES = Path(__file__).resolve().parents[2] / "shared/data/skycamz"
GOAL_S = 0.5


def cpu_seconds(func, runs: int) -> float:
    """Median CPU seconds of ``func()`` over ``runs`` calls."""
    out = []
    for _ in range(runs):
        t = time.process_time()
        func()
        out.append(time.process_time() - t)
    return statistics.median(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per frame (default 5); medians are printed")
    args = parser.parse_args(argv)
    import sep
    from astropy.io import fits

    from skylake.frame.streaks import detect_streaks
    from skylake.synthetic.allsky import Streak, render_streak

    files = sorted(FRAMES.glob("z_e_*.fits"))
    if not files:
        print(f"skipped: no SkyCamZ frames in {FRAMES} (the shared data is not beside this checkout)")
        return 0
    trail = Streak(100, 100, 700, 500, 1.3, 60.0)
    streak_s, sep_s = [], []
    for f in files:
        data = fits.getdata(f).astype(np.float64)
        img = render_streak(data.shape, trail, out=data.copy())
        found = detect_streaks(img)
        if len(found) != 1:
            print(f"FAILED: {f.name}: {len(found)} trails found, expected 1")
            return 1

        def extract(img=img):
            bkg = sep.Background(img)
            sep.extract(img - bkg, 5.0, err=bkg.globalrms)

        streak_s.append(cpu_seconds(lambda img=img: detect_streaks(img), args.runs))
        sep_s.append(cpu_seconds(extract, args.runs))
    s, b = statistics.median(streak_s), statistics.median(sep_s)
    print(
        f"{len(files)} real SkyCamZ frames, {args.runs} runs each, medians of CPU seconds per frame:\n"
        f"  detect_streaks     {s:.3f} s (goal < {GOAL_S} s: {'met' if s < GOAL_S else 'MISSED'})\n"
        f"  sep bkg + extract  {b:.3f} s\n"
        f"  streaks / sep      {s / b:.2f}x"
    )
    return 0 if s < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
