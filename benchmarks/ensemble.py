"""Ensemble benchmark: the solve and the detrending of one night of 1,000 frames x 10,000 stars (time and peak
memory of the process that runs them, as a worker does), against one pass over the same points; and what
solving one night costs on a lake of 1, 4 and 16 nights of the same field (it should not grow).

Run from the repo root (one command)::

    .venv/bin/python benchmarks/ensemble.py              # 1000 x 10000 (1e7 points), nights 1/4/16
    .venv/bin/python benchmarks/ensemble.py --quick      # 200 x 2000, nights 1/4
    .venv/bin/python benchmarks/ensemble.py --frames 500 --stars 5000 --runs 5 --nights 1 4 8

Part 1 (SYNTHETIC arrays, no lake): each repetition runs in a fresh process (``multiprocessing`` spawn) that
builds the points (every star on 90 % of the frames, a 0.03 mag jitter, a plane per frame, photon-like
errors), times :func:`skylake.ensemble.solve.solve` and the detrending of
:func:`skylake.ensemble.stage._detrend`'s EPD and TFA on the star x frame matrix, and reports its peak RSS
(also as it is before the noise model, whose arrays of four apertures set the process's peak).
The baseline, timed in the same process, is one weighted mean per star (one ``np.bincount`` pass over the
points): the least any ensemble can do. Medians over ``--runs``.

Part 2 (SYNTHETIC frames through the lake): ``skylake.synthetic.series.write_series`` nights of 10 frames of
one field (512 x 512, ~800 stars), ingested (which calibrates and solves) one night after another; after
the 1st, 4th, 16th night the last night's ensemble is solved again (``--redo``) ``--runs`` times and the
median printed, with its ratio to the first.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _points(n_frames: int, n_stars: int, seed: int = 1):
    # the same numbers as ever, made in place and by star where they depend on the star only, so that making
    # them does not set the process's peak memory (the solve's and the detrending's are measured)
    rng = np.random.default_rng(seed)
    star_mag = rng.uniform(9, 16, n_stars)
    x, y = rng.uniform(0, 4095, n_stars), rng.uniform(0, 4095, n_stars)
    on = np.concatenate([rng.uniform(size=(1, n_stars)) < 0.9 for _ in range(n_frames)])  # one draw, by rows
    fr, st = np.nonzero(on)
    del on
    u, v = (2 * x / 4095 - 1)[st], (2 * y / 4095 - 1)[st]
    d = rng.normal(0, 0.03, n_frames)
    g = rng.normal(0, 0.01, (n_frames, 2))
    err = np.minimum(0.001 + 0.01 * 10 ** (0.4 * (star_mag - 13)), 0.5)[st]
    mag = star_mag[st]
    mag -= d[fr]
    for k, c in enumerate((u, v)):
        t = g[fr, k]
        t *= c
        mag -= t
    del t
    noise = rng.normal(0, 1, fr.size)
    noise *= err
    mag += noise
    return fr, st, mag, err, u, v


def _part1(n_frames: int, n_stars: int, queue) -> None:
    from skylake.ensemble.detrend import choose_templates, epd, tfa, trend_basis
    from skylake.ensemble.solve import EnsembleSettings, solve
    from skylake.robust import MAD_TO_SIGMA

    fr, st, mag, err, u, v = _points(n_frames, n_stars)
    t0 = time.perf_counter()
    w = 1 / err**2
    np.bincount(st, w * mag, n_stars) / np.bincount(st, w, n_stars)
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = solve(fr, st, mag, err, u, v, n_frames=n_frames, n_stars=n_stars, settings=EnsembleSettings())
    t_solve = time.perf_counter() - t0
    t0 = time.perf_counter()
    Y = np.full((n_stars, n_frames), np.nan)
    E = np.full((n_stars, n_frames), np.nan)
    Y[st, fr], E[st, fr] = mag + sol.correction, err
    missing = ~np.isfinite(Y)
    params = np.empty((n_stars, n_frames, 2))  # filled in place: no per-parameter copies to stack
    for k, p in enumerate((np.linspace(-1, 1, n_frames), np.sin(np.linspace(0, 6, n_frames)))):
        params[:, :, k] = p
        params[missing, k] = np.nan
    del missing
    times = np.linspace(0, 0.3, n_frames)
    trend_e, _ = epd(Y, E, params, times, window=15)
    del params
    Y2 = np.subtract(Y, trend_e, out=Y, where=np.isfinite(trend_e))  # Y - nan_to_num(trend_e), in place
    del trend_e
    med = np.nanmedian(Y2, axis=1, keepdims=True)
    rms = MAD_TO_SIGMA * np.nanmedian(np.abs(Y2 - med), axis=1)
    basis = trend_basis(Y2, choose_templates(Y2, rms, max_templates=200))
    tfa(Y2, E, basis, times, window=15)
    t_detrend = time.perf_counter() - t0
    del Y, E, Y2
    peak_core_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # points, solve and detrending
    t_noise = _noise_model(fr, st, mag + sol.correction, err, u, v, n_frames, n_stars, sol)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        {
            "points": int(fr.size),
            "baseline": base,
            "solve": t_solve,
            "detrend": t_detrend,
            "noise": t_noise,
            "peak_mb": peak_mb,
            "peak_core_mb": peak_core_mb,
            "iterations": sol.iterations,
            "rounds": sol.rounds,
        }
    )


def _noise_model(fr, st, mag, err, u, v, n_frames, n_stars, sol) -> float:
    """Time what the stage adds to the solve for honest errors (skylake.ensemble.stage._photometry): three more
    apertures brought onto the ensemble's scale, the noise model of each of the four (and of their blended
    points), each star's choice and the frame cells' own extra noise."""
    from skylake.ensemble.apertures import aperture_offsets, choose_apertures
    from skylake.ensemble.noise import fit_noise, frame_excess, young_scintillation

    rng = np.random.default_rng(3)
    t0 = time.perf_counter()
    young = young_scintillation(0.2, 30.0, 1.0 + 0.5 * (fr / max(n_frames - 1, 1)), 2363.0)
    constant = ~sol.star_variable[st]
    var = np.empty((4, fr.size))
    dmag = np.zeros((4, fr.size))
    for k in range(4):
        e_k = err * (0.8 + 0.1 * k)
        if k:  # another aperture: its own losses per star and frame, and its own noise
            delta = (
                rng.normal(0, 0.05, n_stars)[st] + rng.normal(0, 0.01, n_frames)[fr] + rng.normal(0, 1, fr.size) * e_k
            )
            dmag[k] = aperture_offsets(
                fr, st, delta, e_k, u, v, constant & (e_k < 0.05), n_frames=n_frames, n_stars=n_stars
            )
        m_k = mag + dmag[k]
        pts = constant & (e_k < 0.3)
        fit = fit_noise(st[pts], m_k[pts], e_k[pts], young[pts], n_stars=n_stars)
        few = pts & (rng.random(fr.size) < 0.1)  # the blended tenth: a floor of their own
        blend = fit_noise(st[few], m_k[few], e_k[few], young[few], n_stars=n_stars, fixed=fit)
        var[k] = np.where(few, blend.variance(e_k, young), fit.variance(e_k, young))
    choice = choose_apertures(st, var, n_stars)
    best = mag + dmag[choice[st], np.arange(fr.size)]
    cell = (
        fr * 9 + np.clip(((u + 1) * 1.5).astype(np.int64), 0, 2) * 3 + np.clip(((v + 1) * 1.5).astype(np.int64), 0, 2)
    )
    frame_excess(cell, st, best, var[choice[st], np.arange(fr.size)], n_frames=n_frames * 9, n_stars=n_stars)
    return time.perf_counter() - t0


def part1(n_frames: int, n_stars: int, runs: int) -> None:
    print(f"== part 1: one night of {n_frames} frames x {n_stars} stars (SYNTHETIC arrays), {runs} runs")
    ctx = mp.get_context("spawn")
    results = []
    for k in range(runs):
        queue = ctx.Queue()
        proc = ctx.Process(target=_part1, args=(n_frames, n_stars, queue))
        proc.start()
        results.append(queue.get())
        proc.join()
        r = results[-1]
        print(
            f"  run {k + 1}: {r['points']:,} points; baseline {r['baseline']:.2f} s, solve {r['solve']:.1f} s "
            f"({r['iterations']} iterations, {r['rounds']} rounds), detrend {r['detrend']:.1f} s, noise model "
            f"{r['noise']:.1f} s, peak {r['peak_mb']:.0f} MB "
            f"({r.get('peak_core_mb', float('nan')):.0f} MB before the noise model)"
        )

    def med(key):
        return statistics.median(r[key] for r in results)

    print(
        f"  median: solve {med('solve'):.1f} s = {med('solve') / med('baseline'):.0f}x one pass over the points "
        f"({med('baseline'):.2f} s); detrend {med('detrend'):.1f} s; noise model and apertures "
        f"{med('noise'):.1f} s = {med('noise') / med('solve'):.2f}x the solve; peak memory {med('peak_mb'):.0f} MB "
        f"({med('peak_mb') * 1e6 / results[0]['points']:.0f} bytes per point; "
        f"{med('peak_core_mb'):.0f} MB up to the end of the detrending)"
    )


def part2(nights: list[int], runs: int, keep: str | None) -> None:
    from skylake.ensemble.stage import ensemble
    from skylake.lake import Lake
    from skylake.pipeline import ingest
    from skylake.refcat import import_refcat
    from skylake.synthetic.series import write_series

    print(f"== part 2: solving one night on lakes of {nights} nights of one field (SYNTHETIC frames)")
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="skylake-ens-bench-"))
    try:
        lake = None
        timings = {}
        for night in range(1, max(nights) + 1):
            day = f"2026-04-{night:02d}" if night <= 30 else f"2026-05-{night - 30:02d}"
            truth = write_series(
                root / f"n{night:02d}", n_frames=10, n_stars=1200, night_seed=night, start_utc=f"{day}T22:00:00"
            )
            if lake is None:
                lake = Lake.init(root / "lake")
                import_refcat(
                    lake, "series", [truth.refcat_path], "generic", columns_map=truth.refcat_map, progress=False
                )
            ingest(lake, truth.paths, truth.profile_path, progress=False)
            if night in nights:
                seconds = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    reports = ensemble(lake, night=day, redo=True)
                    seconds.append(time.perf_counter() - t0)
                timings[night] = statistics.median(seconds)
                print(
                    f"  {night:3d} nights in the lake: solving night {day} again: median {timings[night]:.2f} s "
                    f"({reports[0].by_status})"
                )
        first = timings[min(timings)]
        print(
            "  cost per night against the 1-night lake: "
            + ", ".join(f"{n} nights {t / first:.2f}x" for n, t in sorted(timings.items()))
        )
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 frames x 2000 stars; nights 1 and 4")
    parser.add_argument("--frames", type=int, default=None, help="frames of part 1 (default 1000, 200 with --quick)")
    parser.add_argument("--stars", type=int, default=None, help="stars of part 1 (default 10000, 2000 with --quick)")
    parser.add_argument("--nights", type=int, nargs="+", default=None, help="lake sizes of part 2 (default 1 4 16)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each timing (default 3); medians")
    parser.add_argument("--keep", default=None, metavar="DIR", help="build part 2's lake in DIR and keep it")
    parser.add_argument("--skip", choices=("part1", "part2"), default=None, help="leave one part out")
    args = parser.parse_args(argv)
    frames = args.frames or (200 if args.quick else 1000)
    stars = args.stars or (2000 if args.quick else 10000)
    nights = args.nights or ([1, 4] if args.quick else [1, 4, 16])
    if args.skip != "part1":
        part1(frames, stars, args.runs)
    if args.skip != "part2":
        part2(sorted(nights), args.runs, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
