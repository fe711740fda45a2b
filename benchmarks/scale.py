"""Scale benchmark: how the cost of a batch grows with the archive.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/scale.py                   # lakes of 1e4, 1e5, 1e6 frame rows, 5 runs each
    .venv/bin/python benchmarks/scale.py --sizes 1e4 1e5   # smaller
    .venv/bin/python benchmarks/scale.py --runs 9
    .venv/bin/python benchmarks/scale.py --lakes /tmp/scale-lakes   # keep the lakes made there for the next run

For each archive size it makes a lake whose frames table holds that many SYNTHETIC frame rows over
ten years of nights (``skylake.synthetic.summary_rows.commit_archive``: frame and frame-index rows committed
through the lake's own transactions, 2.5e5 rows per commit or a tenth of the lake above 2.5e6, no images;
``--make-only`` makes them in ``--lakes DIR`` and times nothing, for an idle run later), then times, in this process
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
  table made SYNTHETIC at the archive's size (``skylake.synthetic.summary_rows.commit_objects``: as many objects
  as frame rows, 3 points each, within 15 deg of the field; every archive frame held, each with a
  zeropoint against the field's catalogue, so the objects and zeropoints tables grow with the archive);
* ``maps of its night``: ``skylake.maps.make_maps`` of that batch's night (computed and committed);
* ``refresh``: ``skylake.db.mirror.refresh`` of the lake's SQLite summary database after all that
  (built once, untimed, when the lake is made).

Then (unless ``--no-cpu``) it runs ``benchmarks/driver_cpu.py``: the driver's CPU per frame against the
workers' for an ingest on a ``dask scheduler`` and two ``dask worker`` processes.

and prints, per operation, the time at each size and the ratio of the largest lake's time to the
smallest's (1.0 = cost independent of the archive). Nothing is asserted.

``--history`` instead measures how the objects update grows with the length of the light curves (an
archive of the same stars seen night after night)::

    .venv/bin/python benchmarks/scale.py --history                      # 10, 100, 1000 points per object
    .venv/bin/python benchmarks/scale.py --history --points 10 300 --runs 9

Each lake holds SYNTHETIC frame rows (``--history-frames``, 2e4) and one objects table made through the
lake's own transaction (``commit_objects``): an object at each star of the batch's field (so every new
detection attaches to one: the merge path) plus background objects filling the same partitions, each
with ``--points`` light-curve points in LAKE/lightcurves (so the lakes differ only by the light curves'
length, from 10 to 1000 nights of history). Then, per lake, ``--runs`` batches of 8 SYNTHETIC frames of
the field are ingested (with calibration) and each followed by a timed ``build_objects``; printed: the
median and the mean per update (the mean includes the exact passes that recompute a partition from its
whole light curves once its points grow by a quarter: amortised, they cost a bounded number of reads
per point), the light-curve points each update read, and the ratio of the longest history's time to the
shortest's.

``--memory`` instead measures memory on lakes larger than a worker can hold::

    .venv/bin/python benchmarks/scale.py --memory                         # sources of ~2 and ~6 GB, workers of 600 MB
    .venv/bin/python benchmarks/scale.py --memory --gb 1 2 --memory-limit 800MB

Each lake (made in a subprocess, so its generation leaves nothing in this process) holds SYNTHETIC
nights (``skylake.synthetic.summary_rows.commit_sources_nights``, ten nights a commit, the later nights of a
commit repeating the first one's measurements under their own ids and times) of one frame per tile
(``--tiles`` order-5 HEALPix pixels around the demo field) seeing the tile's ``--stars`` stars, every
sources column filled (rows weigh ~120 bytes on disk; real ones ~160), each frame with an ok zeropoint;
the number of nights is set for ``--gb`` of sources. On a LocalCluster of 2 single-threaded workers
with ``--memory-limit`` each (spilling and pausing off, so what a task holds is what the worker holds;
a worker past 95 % is killed, and the scheduler allows no retry), it adds one more night (subprocess;
with reference matches and an extinction row) and updates the objects, then maps that night
(``samples=False``: what a command does), sampling every 0.1 s the RSS of this process (the driver)
and of each worker (psutil). It prints the peaks, the workers' RSS at the start (their imports), the
lake's size against the limit, and whether every worker survived. ``--lakes DIR`` keeps the made
lakes there (``lake<gb>``) and uses one already made; the run changes it, so it is removed after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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


def per_commit(size: int) -> int:
    """Frame rows per commit when making a lake of ``size``: 2.5e5, or a tenth of the lake above 2.5e6. Each
    commit rewrites every frame-index bucket (the rows' keys are random), so the number of commits, not of
    rows, sets how long a large lake takes to make."""
    return max(250_000, size // 10)


def _make_lake(kept: Path, size: int, new_lake) -> None:
    """Make the lake of ``size`` frame rows in ``kept`` (and its summary database), unless made already."""
    from skylake.db.mirror import refresh
    from skylake.synthetic.summary_rows import commit_archive, commit_objects

    if (kept / f"lake{size}.made").exists():
        return
    t0 = time.perf_counter()
    shutil.rmtree(kept / f"lake{size}", ignore_errors=True)  # what a run that failed while making it left
    lake = new_lake(kept / f"lake{size}")
    commit_archive(lake, size, NIGHTS, np.random.default_rng(size), per_commit=per_commit(size), refcat="demo")
    t1 = time.perf_counter()
    commit_objects(lake, size, np.random.default_rng(size + 1), refcat="demo")
    t2 = time.perf_counter()
    print(f"lake of {size:.0e} frame rows made in {t2 - t0:.0f} s (frames {t1 - t0:.0f} s, objects {t2 - t1:.0f} s)")
    t0 = time.perf_counter()
    refresh(lake, url=f"sqlite:///{kept / f'summary{size}.sqlite'}")  # the database's first build: untimed
    print(f"  first refresh (whole archive) {time.perf_counter() - t0:.1f} s", flush=True)
    (kept / f"lake{size}.made").touch()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e4, 1e5, 1e6], help="frame rows per lake")
    parser.add_argument("--runs", type=int, default=5, help="runs per timing (median reported)")
    parser.add_argument("--memory", action="store_true", help="measure driver and worker memory instead")
    parser.add_argument(
        "--no-cpu",
        dest="cpu",
        action="store_false",
        help="skip the driver/worker CPU measurement (benchmarks/driver_cpu.py) at the end",
    )
    parser.add_argument("--gb", nargs="+", type=float, default=[2.0, 6.0], help="--memory: GB of sources per lake")
    parser.add_argument("--memory-limit", default="600MB", help="--memory: memory_limit of each worker")
    parser.add_argument("--stars", type=int, default=1000, help="--memory: stars per tile")
    parser.add_argument("--make-memory-lake", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tiles", type=int, default=500, help="--memory: tiles (frames per night)")
    parser.add_argument("--nights", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--first-night", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # one lake, in this process
    parser.add_argument(
        "--history", action="store_true", help="measure the objects update against the light curves' length instead"
    )
    parser.add_argument(
        "--points",
        nargs="+",
        type=int,
        default=[10, 100, 1000],
        help="--history: light-curve points per object, one lake each",
    )
    parser.add_argument(
        "--background",
        type=int,
        default=20_000,
        help="--history: background objects around the field (besides one per field star)",
    )
    parser.add_argument("--history-frames", type=int, default=20_000, help="--history: frame rows per lake")
    parser.add_argument(
        "--lakes",
        default=None,
        help="make (or reuse) the lakes in this directory (timed runs use a copy of each, with its summary database)",
    )
    parser.add_argument(
        "--make-only",
        action="store_true",
        help="with --lakes: make the lakes there and time nothing (an idle run later)",
    )
    args = parser.parse_args(argv)
    if args.make_only and not args.lakes:
        parser.error("--make-only needs --lakes DIR: the lakes are made there for a later run")
    if args.history:
        return history_main(args)
    if args.make_memory_lake:
        return make_memory_lake(args.make_memory_lake, args.tiles, args.nights, args.stars, args.first_night)
    if args.memory and args.one:
        return memory_main(args)
    if args.memory:  # each lake measured by a process of its own: its driver starts from nothing
        import json
        import subprocess

        rows = []
        for gb in args.gb:
            cmd = [
                sys.executable,
                __file__,
                "--memory",
                "--one",
                "--gb",
                str(gb),
                "--memory-limit",
                args.memory_limit,
                "--tiles",
                str(args.tiles),
                "--stars",
                str(args.stars),
            ] + (["--lakes", args.lakes] if args.lakes else [])
            out = subprocess.run(cmd, capture_output=True, text=True)
            lines = out.stdout.splitlines()
            print("\n".join(line for line in lines if not line.startswith("{")), flush=True)
            rows += [json.loads(line) for line in lines if line.startswith("{")]
            if out.returncode:
                print(out.stderr[-3000:])
        print("\nsources GB   x limit   driver peak MB (start)   worker peaks MB   workers survived")
        for r in rows:
            print(
                f"  {r['gb']:8.2f} {r['x_limit']:8.1f} {r['driver_mb']:12.0f} ({r['driver_start_mb']:.0f})   "
                f"{' '.join(str(round(w)) for w in r['workers_mb']):>15s}   {r['survived']}"
            )
        return 0
    import logging

    logging.getLogger("skylake").setLevel(logging.ERROR)  # the no-refcat calibration warning, every run
    from skylake.db.mirror import refresh
    from skylake.lake import Lake
    from skylake.maps import make_maps
    from skylake.objects.build import build_objects
    from skylake.pipeline import ingest
    from skylake.profile import load_profile
    from skylake.refcat import import_refcat
    from skylake.status import lake_status
    from skylake.synthetic import write_demo_night, write_reference_catalog
    from skylake.tasks.frame import process_file

    tmp = Path(tempfile.mkdtemp(prefix="skylake-scale-"))
    profile = load_profile("demo")
    results: dict[str, dict[int, float]] = {}
    try:
        batches = []  # one set of 8 new frames per run and size
        for k in range(args.runs * len(args.sizes)):
            d = tmp / f"batch{k}"
            # the same stars (seed) every time, new files (another night): one reference catalogue for all
            truth = write_demo_night(
                d,
                n_frames=N_BATCH,
                shape=(512, 512),
                n_stars=300,
                seed=100,
                cloud=False,
                n_variables=0,
                start_utc=f"2026-{3 + k // 28:02d}-{1 + k % 28:02d}T22:00:00",
            )
            batches.append(d)
        refcat = write_reference_catalog(truth.stars, tmp / "refcat")

        def new_lake(path):
            lake = Lake.init(path)
            import_refcat(lake, "demo", [refcat[0]], "generic", columns_map=refcat[1], progress=False)
            return lake

        def process_only(k):  # the frames' own work, no lake
            for f in sorted(batches[k].glob("*.fits")):
                process_file(str(f), profile)

        if args.make_only:
            for size in (int(x) for x in args.sizes):
                _make_lake(Path(args.lakes), size, new_lake)
            return 0
        process_only(0)  # warm-up (imports, first calls), untimed
        warm = new_lake(tmp / "warm")  # and lsdb's first cross-match (numba compilation)
        first = ingest(warm, [str(batches[0])], profile, progress=False)
        ingest(warm, [str(batches[0])], profile, progress=False)
        build_objects(warm)  # and the first objects build and maps (imports)
        make_maps(warm, night=sorted(first.nights)[0])
        base, _ = _median_time(process_only, args.runs)
        print(f"processing {N_BATCH} frames without a lake: {base:.2f} s (median of {args.runs})")
        for s, size in enumerate(int(x) for x in args.sizes):
            kept = Path(args.lakes) if args.lakes else tmp  # --lakes: made once there, copied for each run
            _make_lake(kept, size, new_lake)
            if kept != tmp:
                shutil.copytree(kept / f"lake{size}", tmp / f"lake{size}")
                shutil.copy(kept / f"summary{size}.sqlite", tmp / f"summary{size}.sqlite")
                t0 = time.perf_counter()
                os.sync()  # the copy written out first: its write-back must not share the timed commits' fsyncs
                print(
                    f"lake of {size:.0e} frame rows and its database copied from {kept} "
                    f"(written to disk in {time.perf_counter() - t0:.1f} s more)"
                )
            lake = Lake.open(tmp / f"lake{size}")
            mine = batches[s * args.runs : (s + 1) * args.runs]
            calib, ingest_times, objects_times, maps_times, refresh_times = [], [], [], [], []
            db = f"sqlite:///{tmp / f'summary{size}.sqlite'}"

            for k in range(args.runs):  # each batch: its ingest, then the objects update and its night's maps
                t0 = time.perf_counter()
                report = ingest(lake, [str(mine[k])], profile, progress=False)
                assert report.ingested == N_BATCH and report.downstream.calibrations, report
                calib.append(report.downstream.calibrations[0].seconds)
                ingest_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                update = build_objects(lake)
                objects_times.append(time.perf_counter() - t0)
                assert update.frames_added == N_BATCH and update.read["frames_rows"] == N_BATCH, update
                t0 = time.perf_counter()
                _, index, _, _ = make_maps(lake, night=sorted(report.nights)[0])
                maps_times.append(time.perf_counter() - t0)
                assert len(index), "no map made"
                t0 = time.perf_counter()
                refresh(lake, url=db)
                refresh_times.append(time.perf_counter() - t0)
            timings = {
                "ingest 8 frames": (statistics.median(ingest_times), ingest_times),
                "re-ingest (no-op)": _median_time(
                    lambda k, lake=lake, mine=mine: ingest(lake, [str(mine[k])], profile, progress=False), args.runs
                ),
                "status": _median_time(lambda _k, lake=lake: lake_status(Lake.open(lake.url)), args.runs),
            }
            timings["calibrate (in ingest)"] = (statistics.median(calib), calib)
            timings["objects update"] = (statistics.median(objects_times), objects_times)
            timings["maps of its night"] = (statistics.median(maps_times), maps_times)
            timings["refresh"] = (statistics.median(refresh_times), refresh_times)
            timings["ingest, lake part"] = (
                max(timings["ingest 8 frames"][0] - base - statistics.median(calib), 0.0),
                [],
            )
            for name, (median, times) in timings.items():
                results.setdefault(name, {})[size] = median
                print(f"  {name:22s} {median:7.3f} s   runs " + " ".join(f"{t:.3f}" for t in times))
            shutil.rmtree(tmp / f"lake{size}", ignore_errors=True)
        sizes = [int(x) for x in args.sizes]
        print(
            f"\nmedian times [s] by frame rows in the lake; ratio = largest lake / smallest "
            f"({sizes[-1]:.0e} / {sizes[0]:.0e} frame rows):"
        )
        print(f"  {'operation':22s} " + " ".join(f"{s:>9.0e}" for s in sizes) + "     ratio")
        for name, by_size in results.items():
            ratio = by_size[sizes[-1]] / by_size[sizes[0]] if by_size[sizes[0]] > 0 else float("nan")
            print(f"  {name:22s} " + " ".join(f"{by_size[s]:9.3f}" for s in sizes) + f"  {ratio:7.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.cpu:
        print(
            "\ndriver CPU / worker CPU of an ingest on a scheduler and 2 workers (benchmarks/driver_cpu.py):",
            flush=True,
        )
        sys.path.insert(0, str(Path(__file__).parent))
        import driver_cpu

        driver_cpu.main(["--runs", str(max(3, args.runs // 2))])
    return 0


def history_main(args) -> int:
    """``--history``: the objects update on lakes whose light curves are 10 to 1000 points long."""
    import logging

    logging.getLogger("skylake").setLevel(logging.ERROR)
    from skylake.lake import Lake
    from skylake.objects.build import build_objects
    from skylake.pipeline import ingest
    from skylake.profile import load_profile
    from skylake.refcat import import_refcat
    from skylake.synthetic import write_demo_night, write_reference_catalog
    from skylake.synthetic.summary_rows import commit_archive, commit_objects

    tmp = Path(tempfile.mkdtemp(prefix="skylake-history-"))
    profile = load_profile("demo")
    rows = {}
    try:
        batches = []
        for k in range(args.runs * len(args.points) + 1):
            truth = write_demo_night(
                tmp / f"batch{k}",
                n_frames=N_BATCH,
                shape=(512, 512),
                n_stars=300,
                seed=100,
                cloud=False,
                n_variables=0,
                start_utc=f"2026-{3 + k // 28:02d}-{1 + k % 28:02d}T22:00:00",
            )
            batches.append(tmp / f"batch{k}")
        refcat = write_reference_catalog(truth.stars, tmp / "refcat")
        stars = truth.stars
        warm = Lake.init(tmp / "warm")  # imports, lsdb's first cross-match, the first objects build: untimed
        import_refcat(warm, "demo", [refcat[0]], "generic", columns_map=refcat[1], progress=False)
        ingest(warm, [str(batches[-1])], profile, progress=False)
        build_objects(warm)
        rng = np.random.default_rng(7)
        # background objects in the field's partitions: uniform within 1.5 deg of it
        z = rng.uniform(np.cos(np.radians(1.5)), 1.0, args.background)
        phi = rng.uniform(0, 2 * np.pi, args.background)
        import healpy as hp

        c = hp.ang2vec(float(stars["ra"].mean()), float(stars["dec"].mean()), lonlat=True)
        e1 = np.cross([0.0, 0.0, 1.0], c)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(c, e1)
        r = np.sqrt(1 - z**2)
        vec = np.outer(r * np.cos(phi), e1) + np.outer(r * np.sin(phi), e2) + np.outer(z, c)
        bra, bdec = hp.vec2ang(vec, lonlat=True)
        ra = np.r_[stars["ra"].to_numpy(float), np.asarray(bra) % 360.0]
        dec = np.r_[stars["dec"].to_numpy(float), np.asarray(bdec)]
        for j, points in enumerate(args.points):
            lake = Lake.init(tmp / f"lake{points}")
            import_refcat(lake, "demo", [refcat[0]], "generic", columns_map=refcat[1], progress=False)
            t0 = time.perf_counter()
            commit_archive(lake, args.history_frames, NIGHTS, np.random.default_rng(points), refcat="demo")
            commit_objects(
                lake,
                len(ra),
                np.random.default_rng(points + 1),
                refcat="demo",
                positions=(ra, dec),
                points=points,
                chunk=max(1000, 2_000_000 // points),
            )
            print(f"lake with {len(ra)} objects x {points} points made in {time.perf_counter() - t0:.0f} s", flush=True)
            times, read, exact = [], [], []
            for k in range(args.runs):
                report = ingest(lake, [str(batches[j * args.runs + k])], profile, progress=False)
                assert report.ingested == N_BATCH, report
                t0 = time.perf_counter()
                update = build_objects(lake)
                times.append(time.perf_counter() - t0)
                read.append(update.read.get("points_rows", 0))
                exact.append(getattr(update, "partitions_exact", 0))  # (older skylake: no exact passes)
                assert update.frames_added == N_BATCH and update.detections > 0, update
            rows[points] = (statistics.median(times), statistics.mean(times))
            print(
                f"  objects update  median {rows[points][0]:.3f} s  mean {rows[points][1]:.3f} s   runs "
                + " ".join(f"{t:.3f}" for t in times)
                + "   points read "
                + " ".join(map(str, read))
                + "   exact partitions "
                + " ".join(map(str, exact)),
                flush=True,
            )
            shutil.rmtree(tmp / f"lake{points}", ignore_errors=True)
        first, last = args.points[0], args.points[-1]
        print(f"\nobjects update by light-curve length ({len(ra)} objects; ratio = {last} / {first} points):")
        print("  points per object    median [s]   mean [s]")
        for points, (med, mean) in rows.items():
            print(f"  {points:17d} {med:12.3f} {mean:10.3f}")
        print(f"  ratio {rows[last][0] / rows[first][0]:.2f}x (median), {rows[last][1] / rows[first][1]:.2f}x (mean)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


ROW_BYTES = 120  # sources bytes per row on disk of a made lake (all columns filled; positions repeat in a commit)
NIGHTS_PER_COMMIT = 10  # a made lake: nights share commits (and files), repeating the first one's measurements
MEMORY_REFCAT = "synth"


def _night(k: int) -> str:
    import datetime as dt

    return (dt.date(2025, 1, 1) + dt.timedelta(days=k)).isoformat()


def make_memory_lake(path: str, tiles: int, nights: int, stars: int, first: int = 0) -> int:
    """Commit ``nights`` SYNTHETIC nights (from night number ``first``) of ``tiles`` frames into the lake at
    ``path``; a new lake also gets its objects table (SYNTHETIC, one object at each star, its watermark
    after these nights); a later night (``first`` > 0) has reference matches. Run as a subprocess of
    ``--memory``."""
    import healpy as hp

    from skylake.lake import Lake
    from skylake.synthetic.summary_rows import commit_objects, commit_sources_nights, tile_stars

    new = not (Path(path) / "_skylake").exists()
    lake = Lake.init(path)
    centre = hp.ang2vec(150.0, 20.0, lonlat=True)
    pix = hp.query_disc(32, centre, np.radians(60), nest=True)
    near = np.argsort(-(np.array(hp.pix2vec(32, pix, nest=True)).T @ centre), kind="stable")
    chosen = np.sort(pix[near][:tiles])
    rng = np.random.default_rng(first)
    for k in range(first, first + nights, NIGHTS_PER_COMMIT):
        commit_sources_nights(
            lake,
            [_night(n) for n in range(k, min(k + NIGHTS_PER_COMMIT, first + nights))],
            chosen,
            stars,
            rng,
            refcat=MEMORY_REFCAT,
            matches=first > 0,
            zstd_level=1,
            repeat=True,
        )
    if new:
        ra, dec = np.concatenate([np.stack(tile_stars(5, int(t), stars)[:2]) for t in chosen], axis=1)
        points = min(nights, 12)  # what the update reads of each object (its generation dominates otherwise)
        commit_objects(
            lake,
            len(ra),
            rng,
            refcat=MEMORY_REFCAT,
            positions=(ra, dec),
            points=points,
            chunk=max(1000, 2_000_000 // points),
        )
        (Path(path) / "MADE").write_text(f"{tiles} {nights} {stars}\n")
    return 0


def _warm_worker() -> None:
    """Import what an objects or maps task runs (astropy's coordinates too: a horizon map's alt/az), so a
    worker's RSS at the start is the stack's, the same whatever the lake."""
    import importlib

    from skylake.horizon import altaz

    importlib.import_module("skylake.objects.build")

    altaz(np.array([150.0]), np.array([20.0]), np.array([60000.0]), 28.76, -17.88, 2300.0)


class _RSS:
    """Peak RSS of this process and of some others, sampled every ``every`` seconds in a thread."""

    def __init__(self, pids: dict, every: float = 0.1):
        import threading

        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.me = psutil.Process()
        self.peak = {name: 0 for name in ["driver", *self.procs]}
        self.every, self._stop = every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def sample(self):
        self.peak["driver"] = max(self.peak["driver"], self.me.memory_info().rss)
        for name, proc in self.procs.items():
            with contextlib.suppress(Exception):  # a worker gone: its peak stays
                self.peak[name] = max(self.peak[name], proc.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def memory_main(args) -> int:
    import logging
    import subprocess

    import dask
    import psutil
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    from skylake.lake import Lake
    from skylake.maps import make_maps
    from skylake.objects.build import build_objects

    logging.getLogger("skylake").setLevel(logging.ERROR)
    limit = parse_bytes(args.memory_limit)
    tmp = Path(tempfile.mkdtemp(prefix="skylake-memory-"))
    config = {
        "distributed.worker.memory.target": False,
        "distributed.worker.memory.spill": False,
        "distributed.worker.memory.pause": False,
        "distributed.worker.memory.terminate": 0.95,
        "distributed.scheduler.allowed-failures": 0,
    }
    try:
        for gb in args.gb:
            tiles = args.tiles  # the lake grows by nights: the night added, its update and maps are the same work
            nights = max(1, round(gb * 1e9 / (ROW_BYTES * args.stars * tiles)))
            path = (Path(args.lakes) if args.lakes else tmp) / f"lake{gb:g}"
            t0 = time.perf_counter()
            if not (path / "MADE").exists():
                shutil.rmtree(path, ignore_errors=True)
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--make-memory-lake",
                        str(path),
                        "--tiles",
                        str(tiles),
                        "--nights",
                        str(nights),
                        "--stars",
                        str(args.stars),
                    ],
                    check=True,
                )
            made = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in (path / "sources").rglob("*.parquet"))
            lake = Lake.open(path)
            print(
                f"lake of {tiles} tiles x {nights} nights x {args.stars} stars: "
                f"{tiles * nights * args.stars:.2e} sources, {size / 1e9:.2f} GB of sources "
                f"({size / limit:.1f}x a worker's {limit / 1e6:.0f} MB), made in {made:.0f} s",
                flush=True,
            )
            with (
                dask.config.set(config),
                LocalCluster(
                    n_workers=2,
                    threads_per_worker=1,
                    processes=True,
                    memory_limit=limit,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                ) as cluster,
                Client(cluster) as client,
            ):
                client.run(_warm_worker)
                pids = {f"worker {k}": pid for k, (_, pid) in enumerate(sorted(client.run(os.getpid).items()))}
                before = psutil.Process().memory_info().rss
                workers_before = [psutil.Process(pid).memory_info().rss for pid in pids.values()]
                times, killed = {}, None
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--make-memory-lake",
                        str(path),
                        "--tiles",
                        str(tiles),
                        "--nights",
                        "1",
                        "--stars",
                        str(args.stars),
                        "--first-night",
                        str(nights),
                    ],
                    check=True,
                )  # one more night, made outside this process
                try:
                    with _RSS(pids) as rss:
                        t0 = time.perf_counter()
                        update = build_objects(lake, client=client)
                        times["objects update (1 night)"] = time.perf_counter() - t0
                        t0 = time.perf_counter()
                        maps, index, _, _ = make_maps(
                            lake, night=_night(nights), refcat=MEMORY_REFCAT, client=client, samples=False
                        )
                        times["maps of that night"] = time.perf_counter() - t0
                except Exception as exc:  # a killed worker fails its task (no retries)
                    killed = f"{type(exc).__name__}: {exc}"
                after = {f"worker {k}": pid for k, (_, pid) in enumerate(sorted(client.run(os.getpid).items()))}
            survived = killed is None and after == pids
            print(
                f"  objects update: {update.frames_added} frames, {update.detections} detections, "
                f"{update.partitions_rewritten} of {update.partitions} partitions, {update.objects} objects; "
                f"maps: {len(index)} maps"
                if killed is None
                else f"  FAILED: {killed}"
            )
            print("  times: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
            print(
                f"  peak RSS: driver {rss.peak['driver'] / 1e6:.0f} MB (at start {before / 1e6:.0f} MB), "
                + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in rss.peak.items() if k != "driver")
                + f" (at start {', '.join(f'{v / 1e6:.0f}' for v in workers_before)} MB)"
                + f"; workers {'all survived' if survived else 'NOT all survived'}",
                flush=True,
            )
            import json

            print(
                json.dumps(
                    {
                        "gb": size / 1e9,
                        "x_limit": size / limit,
                        "driver_mb": rss.peak["driver"] / 1e6,
                        "driver_start_mb": before / 1e6,
                        "survived": survived,
                        "times": times,
                        "workers_mb": [v / 1e6 for k, v in rss.peak.items() if k != "driver"],
                        "workers_start_mb": [v / 1e6 for v in workers_before],
                    }
                ),
                flush=True,
            )
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
