"""Refresh benchmark: an incremental ``skylake refresh`` after one new night against a full rebuild of
the summary database, on a lake of --nights nights (default 100), timed in the same run.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/refresh.py                # 100 nights x 200 frames, SQLite and Postgres
    .venv/bin/python benchmarks/refresh.py --quick        # 20 nights, a smoke run
    .venv/bin/python benchmarks/refresh.py --db sqlite    # one database only (sqlite | postgres)

The lake holds SYNTHETIC rows: per night, --frames-per-night frame records (90 % ok), a zeropoint
per ok frame and the night's extinction fit, committed through the lake's own transactions exactly
as ingest and calibrate commit them (refresh reads nothing else; no images are processed, which would
only make the benchmark slow). 200 frames a night is a small all-sky or wide-field camera taking a
frame every two to three minutes. Then, per database:

* full rebuild: ``refresh(full=True)`` timed --runs times (every row of every night recomputed);
* incremental: --runs more nights are committed one at a time, each followed by a timed ``refresh()``
  (only that night recomputed).

Prints the medians and their ratio. Goal: incremental <= 5 % of the full rebuild. Postgres is the
server at 127.0.0.1:5432 (user postgres, database test; a scratch database is created and dropped);
it is skipped with a note when unreachable.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

GOAL = 0.05
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _night(i: int) -> str:
    import datetime as dt

    return (dt.date(2025, 1, 1) + dt.timedelta(days=i)).isoformat()


def _pg_url():
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = f"skylake_bench_{uuid.uuid4().hex[:8]}"
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        print(f"  postgres: not reachable at {PG_ADMIN_URL} ({str(exc).splitlines()[0]}); skipped")
        return None, None

    def drop():
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), drop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nights", type=int, default=100, help="nights in the lake (default 100)")
    ap.add_argument("--frames-per-night", type=int, default=200, help="frames per night (default 200)")
    ap.add_argument("--runs", type=int, default=5, help="timings of each kind (default 5)")
    ap.add_argument("--quick", action="store_true", help="20 nights, 3 runs")
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    if args.quick:
        args.nights, args.runs = 20, 3
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    import numpy as np

    from skylake.db import refresh
    from skylake.lake import Lake
    from skylake.synthetic.summary_rows import commit_night

    work = Path(tempfile.mkdtemp(prefix="skylake-refresh-bench-"))
    try:
        print(
            f"skylake refresh benchmark: {args.nights} nights x {args.frames_per_night} SYNTHETIC frames, "
            f"{args.runs} runs, python {sys.version.split()[0]}",
            flush=True,
        )
        rng = np.random.default_rng(1)
        lake = Lake.init(work / "lake")
        t = time.monotonic()
        base = [_night(i) for i in range(args.nights)]
        for night in base:
            commit_night(lake, night, args.frames_per_night, rng)
        print(
            f"  committed {len(base)} nights in {time.monotonic() - t:.0f} s "
            f"(lake version {lake.log.published_version()})",
            flush=True,
        )
        next_night = args.nights
        dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
        results = {}
        for kind in dbs:
            drop = None
            if kind == "sqlite":
                url = f"sqlite:///{work / 'summary.sqlite'}"
            else:
                url, drop = _pg_url()
                if url is None:
                    continue
            try:
                refresh(lake, url)  # first mirror (and migrations), untimed
                full = []
                for _ in range(args.runs):
                    t = time.monotonic()
                    report = refresh(lake, url, full=True)
                    full.append(time.monotonic() - t)
                    n_full = len(report.nights_recomputed)
                    assert n_full >= len(base)
                incremental = []
                for _ in range(args.runs):
                    night = _night(next_night)
                    commit_night(lake, night, args.frames_per_night, rng)
                    next_night += 1
                    t = time.monotonic()
                    report = refresh(lake, url)
                    incremental.append(time.monotonic() - t)
                    assert report.nights_recomputed == [night], report.nights_recomputed
            finally:
                if drop:
                    drop()
            results[kind] = (statistics.median(full), statistics.median(incremental), full, incremental)
            f, i = results[kind][:2]
            print(
                f"  [{kind}] full rebuild of {n_full} nights: median {f:.3f} s  "
                f"(runs: {', '.join(f'{x:.3f}' for x in full)})"
            )
            print(f"  [{kind}] one new night: median {i:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in incremental)})")

        print("\nSummary (median seconds; goal: incremental / full <= 5 %)")
        print("database  |  full rebuild | one new night | ratio")
        ok = True
        for kind, (f, i, _, _) in results.items():
            ratio = i / f
            ok &= ratio <= GOAL
            print(f"{kind:9} | {f:13.3f} | {i:13.3f} | {100 * ratio:5.1f} % {'ok' if ratio <= GOAL else 'NO'}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
