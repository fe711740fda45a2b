"""Light-curve benchmark: a light curve by coordinate on a lake of 10^7 SYNTHETIC sources (goal < 1 s),
and building the objects table, against a brute-force scan of the sources for the same cone.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/lightcurve.py            # 200 000 stars x 50 frames = 10^7 sources
    .venv/bin/python benchmarks/lightcurve.py --quick    # 20 000 stars x 50 frames = 10^6 sources
    .venv/bin/python benchmarks/lightcurve.py --stars 100000 --frames 40 --runs 9 --keep /tmp/lc-bench
    .venv/bin/python benchmarks/lightcurve.py --workers 0    # objects built in this process, no cluster

What happens:

1. ``skylake.synthetic.detections.commit_night`` commits ``--frames`` frames (5 nights) of detections of
   ``--stars`` stars spread over 100 deg^2 (~30 partitions) straight through the lake's transaction
   (no images; frames marked SYNTHETIC). Untimed.
2. ``build_objects`` builds LAKE/objects from scratch on ``--workers`` dask workers (skylake's own
   ``dask_client``, one thread each; timed once: it is the expensive step), then a sixth night of one
   frame is added and the incremental update is timed. With ``--keep DIR`` holding a lake from an
   earlier run, the lake is reused: the objects are rebuilt from scratch (``rebuild=True``) and the
   incremental step is left out (its night is already there).
3. ``--runs`` cones of 3" radius at random stars (page cache warm after one untimed query each way):
   ``light_curve`` (pixel-pruned cone on LAKE/objects) against the baseline, DuckDB scanning every
   sources file for the same cone (``ra``/``dec`` box then the exact distance), which is what one
   would write without the objects table. Medians and the ratio are printed; both must find the same
   number of points.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOAL_S = 1.0
GOAL_BUILD = 1e6  # sources/s, objects from scratch on 2 workers (issue 24)


def baseline_cone(con, sources_glob: str, ra: float, dec: float, radius_arcsec: float) -> int:
    """Points of one star by a brute-force DuckDB scan of the sources (box, then exact distance)."""
    r = radius_arcsec / 3600.0
    dra = r / np.cos(np.radians(dec))
    sql = (
        f"SELECT count(*) FROM read_parquet('{sources_glob}', hive_partitioning = true) "
        f"WHERE dec BETWEEN {dec - r} AND {dec + r} AND ra BETWEEN {ra - dra} AND {ra + dra} "
        f"AND degrees(acos(least(1, sin(radians(dec)) * {np.sin(np.radians(dec))} + cos(radians(dec)) * "
        f"{np.cos(np.radians(dec))} * cos(radians(ra - {ra}))))) * 3600 <= {radius_arcsec}"
    )
    return con.execute(sql).fetchone()[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^6 sources instead of 10^7")
    parser.add_argument("--stars", type=int, default=None, help="stars (default 200000, 20000 with --quick)")
    parser.add_argument("--frames", type=int, default=50, help="frames, every star in each (default 50)")
    parser.add_argument("--runs", type=int, default=7, help="cones timed (default 7); medians are printed")
    parser.add_argument("--keep", default=None, metavar="DIR", help="build the lake in DIR and keep it (reused)")
    parser.add_argument(
        "--workers", type=int, default=2, help="dask workers building the objects (default 2; 0: in this process)"
    )
    args = parser.parse_args(argv)
    import duckdb
    import pandas as pd

    from skylake.lake import Lake
    from skylake.objects.build import build_objects
    from skylake.objects.query import light_curve
    from skylake.runtime import dask_client
    from skylake.synthetic.detections import commit_night, random_stars

    n_stars = args.stars or (20_000 if args.quick else 200_000)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lc-bench-"))
    rng = np.random.default_rng(5)
    stars = random_stars(n_stars, (30.0, 40.0), (-5.0, 5.0), rng)
    try:
        reuse = (work / "lake").exists()
        if reuse:
            lake = Lake.open(work / "lake")
            print(f"lake: reusing {lake.url} (objects rebuilt from scratch, no incremental step)")
        else:
            lake = Lake.init(work / "lake")
            t0 = time.perf_counter()
            per_night = int(np.ceil(args.frames / 5))
            nights = [f"2026-04-{d:02d}" for d in range(1, 6)]
            for k, night in enumerate(nights):
                n = min(per_night, args.frames - k * per_night)
                if n > 0:
                    commit_night(lake, stars, night, n, rng)
            print(
                f"lake: {lake.log.latest().sources_rows:,} SYNTHETIC sources ({n_stars:,} stars x {args.frames} "
                f"frames) written in {time.perf_counter() - t0:.1f} s to {lake.url}"
            )
        n_sources = lake.log.latest().sources_rows

        with dask_client(scheduler="synchronous" if args.workers == 0 else None, workers=args.workers) as client:
            if client:  # the workers' first imports are the cluster's start, not the build's
                client.run(importlib.import_module, "skylake.objects.partition")
            report = build_objects(lake, rebuild=reuse, client=client)
            where = f"{args.workers} workers" if client else "in this process"
            per = f", {n_sources / report.seconds / args.workers:,.0f} per worker" if client else ""
            print(
                f"build objects from scratch ({where}): {report.seconds:.1f} s ({n_sources / report.seconds:,.0f} "
                f"sources/s{per}; goal {GOAL_BUILD:,.0f} on 2 workers; "
                + ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
                + f")\n  {report}"
            )
            if not reuse:
                commit_night(lake, stars.sample(n_stars // 10, random_state=1), "2026-04-06", 1, rng)
                inc = build_objects(lake, client=client)
                print(
                    f"incremental update (1 frame, {n_stars // 10:,} detections): {inc.seconds:.1f} s, "
                    f"{inc.partitions_rewritten} of {inc.partitions} partitions rewritten"
                )

        con = duckdb.connect()
        glob = f"{lake.path('sources')}/dataset/*/*/*/*.parquet"
        pick = stars.sample(args.runs, random_state=2)
        light_curve(lake, float(pick["ra"].iloc[0]), float(pick["dec"].iloc[0]), 3.0)  # warm
        baseline_cone(con, glob, float(pick["ra"].iloc[0]), float(pick["dec"].iloc[0]), 3.0)
        mine, base = [], []
        for ra, dec in zip(pick["ra"], pick["dec"]):
            t = time.perf_counter()
            points = light_curve(lake, float(ra), float(dec), 3.0)
            mine.append(time.perf_counter() - t)
            t = time.perf_counter()
            n_base = baseline_cone(con, glob, float(ra), float(dec), 3.0)
            base.append(time.perf_counter() - t)
            if len(points) != n_base:
                print(f"MISMATCH at ({ra:.5f}, {dec:.5f}): light_curve {len(points)} points, scan {n_base}")
                return 1
        m, b = statistics.median(mine), statistics.median(base)
        print(
            pd.DataFrame({"light_curve_s": mine, "duckdb_scan_s": base})
            .describe()
            .loc[["min", "50%", "max"]]
            .to_string(float_format="%.4f")
        )
        print(
            f"light curve by coordinate: median {m:.4f} s over {args.runs} cones (goal < {GOAL_S} s: "
            f"{'met' if m < GOAL_S else 'MISSED'}); DuckDB scan of the sources {b:.3f} s; scan / light_curve = "
            f"{b / m:.0f}x"
        )
        return 0 if m < GOAL_S else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
