"""Ensemble benchmark: the solve, the detrending and the noise model of one night of 1,000 frames x 10,000 stars
(time and peak memory of the process that runs them, as a worker does), against one pass over the same points;
and what solving one night costs on a lake of 1, 4 and 16 nights of the same field (it should not grow).

Run from the repo root (one command)::

    .venv/bin/python benchmarks/ensemble.py              # 1000 x 10000 (1e7 points), nights 1/4/16
    .venv/bin/python benchmarks/ensemble.py --quick      # 200 x 2000, nights 1/4
    .venv/bin/python benchmarks/ensemble.py --frames 500 --stars 5000 --runs 5 --nights 1 4 8

Part 1 (SYNTHETIC arrays, no lake): each repetition runs in a fresh process (``multiprocessing`` spawn) that
builds the points (every star on 90 % of the frames, a 0.03 mag jitter, a plane per frame, photon-like
errors) as a worker holds them (int32 indices, float64 magnitudes, float32 errors and chip positions), times
:func:`skylake.ensemble.solve.solve`, the detrending of :func:`skylake.ensemble.stage._detrend`'s EPD and TFA on
the star x frame matrix, and the noise model (three more apertures' offsets, the fits, each star's choice, a
flux at a time as the stage does), and reports its peak RSS: as it is before the noise model too, and less the
interpreter and the points (the stage's own). The peak is the noise model's, at the last aperture's fit (its
compact copy of the points fitted, with the other apertures' float32 offsets kept for the choice); the passes
go a block of points at a time (:mod:`skylake.ensemble.blocks`), so no step holds many arrays as long as the
points. The baseline, timed in the same process, is one weighted mean per star (one ``np.bincount`` pass over
the points): the least any ensemble can do. Medians over ``--runs``.

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
    """The night's points, as a worker holds them: int32 frame and star indices, the magnitudes in float64
    (float32 would be 1.5e-5 mag off at 15 mag), the errors and chip positions in float32 (their rounding moves
    the answer by 1e-9 mag). The same draws as ever; made by star where they depend on the star only, so that
    making them does not set the process's peak memory (the stage's is measured)."""
    rng = np.random.default_rng(seed)
    star_mag = rng.uniform(9, 16, n_stars)
    x, y = rng.uniform(0, 4095, n_stars), rng.uniform(0, 4095, n_stars)
    on = np.concatenate([rng.uniform(size=(1, n_stars)) < 0.9 for _ in range(n_frames)])  # one draw, by rows
    fr, st = (a.astype(np.int32) for a in np.nonzero(on))
    del on
    u_s, v_s = 2 * x / 4095 - 1, 2 * y / 4095 - 1
    d = rng.normal(0, 0.03, n_frames)
    g = rng.normal(0, 0.01, (n_frames, 2))
    err_s = np.minimum(0.001 + 0.01 * 10 ** (0.4 * (star_mag - 13)), 0.5)
    mag = star_mag[st]
    mag -= d[fr]
    for k, c in enumerate((u_s, v_s)):  # the magnitudes from the float64 positions and errors, as ever
        t = g[fr, k]
        t *= c[st]
        mag -= t
    del t
    noise = rng.normal(0, 1, fr.size)
    noise *= err_s[st]
    mag += noise
    del noise
    return fr, st, mag, err_s.astype(np.float32)[st], u_s.astype(np.float32)[st], v_s.astype(np.float32)[st]


def _part1(n_frames: int, n_stars: int, queue) -> None:
    # the stage's modules loaded first: their RSS (pandas's, scipy's) counts as the interpreter's, not the stage's
    import skylake.ensemble.apertures  # noqa: F401
    import skylake.ensemble.detrend  # noqa: F401
    import skylake.ensemble.noise  # noqa: F401
    from skylake.ensemble.solve import EnsembleSettings, solve

    fr, st, mag, err, u, v = _points(n_frames, n_stars)
    inputs_mb = _rss_mb()  # the interpreter, its modules and the points: what the stage is given
    t0 = time.perf_counter()
    w = 1 / err.astype(np.float64) ** 2
    np.bincount(st, w * mag, n_stars) / np.bincount(st, w, n_stars)
    del w
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = solve(fr, st, mag, err, u, v, n_frames=n_frames, n_stars=n_stars, settings=EnsembleSettings())
    t_solve = time.perf_counter() - t0
    mag += sol.correction  # the ensemble's magnitudes, in place, as the stage's solve_field makes them
    variable, iterations, rounds = sol.star_variable, sol.iterations, sol.rounds
    del sol  # its per-point arrays: the noise model and the detrending need the stars' flags alone
    t_detrend = _detrend(fr, st, mag, err, n_frames, n_stars)[0]  # what it found is not kept
    peak_core_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # points, solve and detrending
    t_noise = _noise_model(fr, st, mag, err, u, v, n_frames, n_stars, variable)[0]
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
            "inputs_mb": inputs_mb,
            "iterations": iterations,
            "rounds": rounds,
        }
    )


def _rss_mb() -> float:
    """The process's resident memory now, MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _detrend(fr, st, mag, err, n_frames, n_stars):
    """Time EPD and TFA (:mod:`skylake.ensemble.detrend`) on the star x frame matrices of the ensemble's
    magnitudes; return the seconds and what they found (the EPD-detrended magnitudes, TFA's trends, each star's
    terms)."""
    from skylake.ensemble.detrend import choose_templates, epd, tfa, trend_basis
    from skylake.robust import MAD_TO_SIGMA

    t0 = time.perf_counter()
    Y = np.full((n_stars, n_frames), np.nan)
    E = np.full((n_stars, n_frames), np.nan, np.float32)  # the errors' own type: weights, 1e-7 apart at most
    Y[st, fr], E[st, fr] = mag, err
    missing = ~np.isfinite(Y)
    params = np.empty((n_stars, n_frames, 2))  # filled in place: no per-parameter copies to stack
    for k, p in enumerate((np.linspace(-1, 1, n_frames), np.sin(np.linspace(0, 6, n_frames)))):
        params[:, :, k] = p
        params[missing, k] = np.nan
    del missing
    times = np.linspace(0, 0.3, n_frames)
    trend_e, terms_e = epd(Y, E, params, times, window=15)
    del params
    Y2 = np.subtract(Y, trend_e, out=Y, where=np.isfinite(trend_e))  # Y - nan_to_num(trend_e), in place
    del trend_e
    med = np.nanmedian(Y2, axis=1, keepdims=True)
    rms = MAD_TO_SIGMA * np.nanmedian(np.abs(Y2 - med), axis=1)
    basis = trend_basis(Y2, choose_templates(Y2, rms, max_templates=200))
    trend_t, terms_t = tfa(Y2, E, basis, times, window=15)
    return time.perf_counter() - t0, {"Y2": Y2, "tfa": trend_t, "epd_terms": terms_e, "tfa_terms": terms_t}


def _noise_model(fr, st, mag, err, u, v, n_frames, n_stars, variable):
    """Time what the stage adds to the solve for honest errors (skylake.ensemble.stage._photometry): three more
    apertures brought onto the ensemble's scale, the noise model of each of the four (and of their blended
    points), each star's choice and the frame cells' own extra noise.

    As the stage does, one aperture at a time: its offsets (kept, float32), its fits and its per-star sums of
    modelled variance (all the choice needs), its other arrays freed before the next; the chosen aperture's
    variance of each point is made again from its fits. ``mag`` (the ensemble's magnitudes) becomes each point's
    magnitude in its star's aperture, in place. Returns the seconds and what was found (the fits, the choice,
    each point's modelled variance, the frame cells' excess)."""
    from skylake.ensemble.apertures import aperture_offsets, choose_from_sums, variance_sums
    from skylake.ensemble.blocks import blocks
    from skylake.ensemble.noise import fit_noise, frame_excess, young_scintillation

    rng = np.random.default_rng(3)
    t0 = time.perf_counter()
    # Young's term of each frame (the airmass grows through the night) on its points, in float32 (a few mmag)
    young = young_scintillation(0.2, 30.0, 1.0 + 0.5 * (np.arange(n_frames) / max(n_frames - 1, 1)), 2363.0)
    young = young.astype(np.float32)[fr]
    constant = ~variable[st]
    apertures, dmag, counts, sums = [], [], [], []
    for k in range(4):
        e_k = err * np.float32(0.8 + 0.1 * k)
        offset = None  # the aperture's magnitudes are mag + offset, never made as an array of them all
        if k:  # another aperture: its own losses per star and frame, and its own noise
            delta = rng.normal(0, 0.05, n_stars)[st]
            delta += rng.normal(0, 0.01, n_frames)[fr]
            noise = rng.normal(0, 1, fr.size)
            noise *= e_k
            delta += noise
            del noise
            offset = aperture_offsets(
                fr, st, delta, e_k, u, v, constant & (e_k < 0.05), n_frames=n_frames, n_stars=n_stars
            ).astype(np.float32)  # a few mmag: float32 keeps them to 1e-9 mag
            del delta
            dmag.append(offset)
        pts = constant & (e_k < 0.3)
        fit = fit_noise(st, mag, e_k, young, n_stars=n_stars, points=pts, offset=offset)
        few = pts & (rng.random(fr.size) < 0.1)  # the blended tenth: a floor of their own
        blend = fit_noise(st, mag, e_k, young, n_stars=n_stars, fixed=fit, points=few, offset=offset)
        del pts, offset
        apertures.append((np.float32(0.8 + 0.1 * k), fit, blend, few))
        c_k, s_k = np.zeros(n_stars, np.intp), np.zeros(n_stars)
        for b in blocks(fr.size):
            c, s = variance_sums(st[b], _variance(apertures[k], err[b], young[b], few[b]), n_stars)
            c_k += c
            s_k += s
        counts.append(c_k)
        sums.append(s_k)
    choice = choose_from_sums(np.stack(counts), np.stack(sums))
    var = np.empty(fr.size)  # each point's modelled variance in its star's aperture
    for b in blocks(fr.size):
        kb = choice[st[b]]
        for k, ap in enumerate(apertures):
            on = kb == k
            if on.any():
                var[b][on] = _variance(ap, err[b][on], young[b][on], ap[3][b][on])
                if k:
                    mag[b][on] += dmag[k - 1][b][on]
    fits = [(fit, blend) for _, fit, blend, _ in apertures]
    del dmag, apertures, young
    cell = np.empty(fr.size, np.int32)  # a 3 x 3 grid on each frame
    for b in blocks(fr.size):
        cu = np.clip(((u[b].astype(np.float64) + 1) * 1.5).astype(np.int32), 0, 2)
        cv = np.clip(((v[b].astype(np.float64) + 1) * 1.5).astype(np.int32), 0, 2)
        cell[b] = fr[b] * 9 + cu * 3 + cv
    excess = frame_excess(cell, st, mag, var, n_frames=n_frames * 9, n_stars=n_stars)
    return time.perf_counter() - t0, {"fits": fits, "choice": choice, "var": var, "excess": excess}


def _variance(aperture, err, young, few):
    """The modelled variance of points in one of :func:`_noise_model`'s apertures: ``(factor, fit, blend fit,
    blended)``, of their errors in the calibrated flux, their Young terms and which are blended."""
    factor, fit, blend, _ = aperture
    e_k = err * factor
    return np.where(few, blend.variance(e_k, young), fit.variance(e_k, young))


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
            f"{r['noise']:.1f} s, peak {r['peak_mb']:.0f} MB ({r['peak_core_mb']:.0f} MB before the noise model; "
            f"{r['inputs_mb']:.0f} MB the interpreter and the points, so the stage's own "
            f"{r['peak_mb'] - r['inputs_mb']:.0f} MB and {r['peak_core_mb'] - r['inputs_mb']:.0f} MB)"
        )

    def med(key):
        return statistics.median(r[key] for r in results)

    print(
        f"  median: solve {med('solve'):.1f} s = {med('solve') / med('baseline'):.0f}x one pass over the points "
        f"({med('baseline'):.2f} s); detrend {med('detrend'):.1f} s; noise model and apertures "
        f"{med('noise'):.1f} s = {med('noise') / med('solve'):.2f}x the solve; peak memory {med('peak_mb'):.0f} MB "
        f"({med('peak_mb') * 1e6 / results[0]['points']:.0f} bytes per point; "
        f"{med('peak_core_mb'):.0f} MB up to the end of the detrending; the stage's own, less the interpreter and "
        f"the points ({med('inputs_mb'):.0f} MB): {med('peak_mb') - med('inputs_mb'):.0f} MB)"
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
