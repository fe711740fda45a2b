"""Scale benchmark: how the cost of a batch grows with the archive.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/scale.py                   # lakes of 1e4, 1e5, 1e6 frame rows, 5 runs each
    .venv/bin/python benchmarks/scale.py --sizes 1e4 1e5   # smaller
    .venv/bin/python benchmarks/scale.py --runs 9

For each archive size it makes a lake whose frames table holds that many SYNTHETIC frame rows over
ten years of nights (``skylake.db.synthetic.commit_archive``: frame and frame-index rows committed
through the lake's own transactions, 2.5e5 rows per commit, no images), then times, in this process
(median of ``--runs``):

* ``ingest 8 frames``: a new batch of 8 SYNTHETIC 512x512 frames (``skylake.synthetic``, a new set
  each run), processed in this process: header, detection, photometry, commit, then their calibration
  against the SYNTHETIC reference catalogue of their field (imported into every lake);
* ``calibrate (in ingest)``: the calibration part of that (its report's time);
* ``re-ingest (no-op)``: the same 8 files again (hashing them, finding them in the lake);
* ``ingest, lake part``: the ingest time minus its calibration and minus the time of processing the
  8 frames alone (measured in the same run without a lake): what the lake's size could add;
* ``status``: ``skylake.status.lake_status`` (a new ``Lake.open`` each time, as the command does);
* ``objects update``: ``build_objects`` after each new batch is ingested and calibrated, on an objects
  table made SYNTHETIC at the archive's size (``skylake.db.synthetic.commit_objects``: as many objects
  as frame rows, 3 points each, within 15 deg of the field; every archive frame held, each with a
  zeropoint against the field's catalogue, so the objects and zeropoints tables grow with the archive);
* ``maps of its night``: ``skylake.maps.make_maps`` of that batch's night (computed and committed).

and prints, per operation, the time at each size and the ratio of the largest lake's time to the
smallest's (1.0 = cost independent of the archive). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_BATCH = 8
NIGHTS = 3650  # ten years


def _median_time(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for k in range(runs):
        t0 = time.perf_counter()
        fn(k)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e4, 1e5, 1e6], help="frame rows per lake")
    parser.add_argument("--runs", type=int, default=5, help="runs per timing (median reported)")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("skylake").setLevel(logging.ERROR)  # the no-refcat calibration warning, every run
    from skylake.db.synthetic import commit_archive, commit_objects
    from skylake.maps import make_maps
    from skylake.objects.build import build_objects
    from skylake.frame.process import process_file
    from skylake.ingest import ingest
    from skylake.lake import Lake
    from skylake.profile import load_profile
    from skylake.status import lake_status
    from skylake.refcat import import_refcat
    from skylake.synthetic import write_demo_night, write_reference_catalog

    tmp = Path(tempfile.mkdtemp(prefix="skylake-scale-"))
    profile = load_profile("demo")
    results: dict[str, dict[int, float]] = {}
    try:
        batches = []  # one set of 8 new frames per run and size
        for k in range(args.runs * len(args.sizes)):
            d = tmp / f"batch{k}"
            # the same stars (seed) every time, new files (another night): one reference catalogue for all
            truth = write_demo_night(d, n_frames=N_BATCH, shape=(512, 512), n_stars=300, seed=100, cloud=False,
                                     n_variables=0, start_utc=f"2026-{3 + k // 28:02d}-{1 + k % 28:02d}T22:00:00")
            batches.append(d)
        refcat = write_reference_catalog(truth.stars, tmp / "refcat")

        def new_lake(path):
            lake = Lake.init(path)
            import_refcat(lake, "demo", [refcat[0]], "generic", columns_map=refcat[1], progress=False)
            return lake

        def process_only(k):  # the frames' own work, no lake
            for f in sorted(batches[k].glob("*.fits")):
                process_file(str(f), profile)

        process_only(0)  # warm-up (imports, first calls), untimed
        warm = new_lake(tmp / "warm")  # and lsdb's first cross-match (numba compilation)
        first = ingest(warm, [str(batches[0])], profile, progress=False)
        ingest(warm, [str(batches[0])], profile, progress=False)
        build_objects(warm)  # and the first objects build and maps (imports)
        make_maps(warm, night=sorted(first.nights)[0])
        base, _ = _median_time(process_only, args.runs)
        print(f"processing {N_BATCH} frames without a lake: {base:.2f} s (median of {args.runs})")
        for s, size in enumerate(int(x) for x in args.sizes):
            t0 = time.perf_counter()
            lake = new_lake(tmp / f"lake{size}")
            commit_archive(lake, size, NIGHTS, np.random.default_rng(size), per_commit=250_000, refcat="demo")
            commit_objects(lake, size, np.random.default_rng(size + 1), refcat="demo")
            print(f"lake of {size:.0e} frame rows made in {time.perf_counter() - t0:.0f} s")
            mine = batches[s * args.runs:(s + 1) * args.runs]
            calib, ingest_times, objects_times, maps_times = [], [], [], []

            def ingest_new(k):
                report = ingest(lake, [str(mine[k])], profile, progress=False)
                assert report.ingested == N_BATCH and report.calibration, report
                calib.append(report.calibration[0].seconds)
                return report

            def timed_ingest(k):  # each batch: its ingest, then the objects update and its night's maps
                t0 = time.perf_counter()
                report = ingest_new(k)
                ingest_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                update = build_objects(lake)
                objects_times.append(time.perf_counter() - t0)
                assert update.frames_added == N_BATCH and update.read["frames_rows"] == N_BATCH, update
                t0 = time.perf_counter()
                _, index, _, _ = make_maps(lake, night=sorted(report.nights)[0])
                maps_times.append(time.perf_counter() - t0)
                assert len(index), "no map made"

            for k in range(args.runs):
                timed_ingest(k)
            timings = {
                "ingest 8 frames": (statistics.median(ingest_times), ingest_times),
                "re-ingest (no-op)": _median_time(lambda k: ingest(lake, [str(mine[k])], profile, progress=False),
                                                  args.runs),
                "status": _median_time(lambda k: lake_status(Lake.open(lake.url)), args.runs),
            }
            timings["calibrate (in ingest)"] = (statistics.median(calib), calib)
            timings["objects update"] = (statistics.median(objects_times), objects_times)
            timings["maps of its night"] = (statistics.median(maps_times), maps_times)
            timings["ingest, lake part"] = (max(timings["ingest 8 frames"][0] - base - statistics.median(calib), 0.0), [])
            for name, (median, times) in timings.items():
                results.setdefault(name, {})[size] = median
                print(f"  {name:22s} {median:7.3f} s   runs " + " ".join(f"{t:.3f}" for t in times))
            shutil.rmtree(tmp / f"lake{size}", ignore_errors=True)
        sizes = [int(x) for x in args.sizes]
        print(f"\nmedian times [s] by frame rows in the lake; ratio = largest lake / smallest "
              f"({sizes[-1]:.0e} / {sizes[0]:.0e} frame rows):")
        print(f"  {'operation':22s} " + " ".join(f"{s:>9.0e}" for s in sizes) + "     ratio")
        for name, by_size in results.items():
            ratio = by_size[sizes[-1]] / by_size[sizes[0]] if by_size[sizes[0]] > 0 else float("nan")
            print(f"  {name:22s} " + " ".join(f"{by_size[s]:9.3f}" for s in sizes) + f"  {ratio:7.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
