"""Driver CPU against worker CPU for an ingest and a calibration on a real dask cluster: the Amdahl ceiling
of adding workers.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/driver_cpu.py                 # SkyCamZ copies, synthetic 4k frames, calibration
    .venv/bin/python benchmarks/driver_cpu.py --runs 5 --skycamz-copies 8 --synth4k 8 --calib-frames 12
    .venv/bin/python benchmarks/driver_cpu.py --skycamz-copies 0 --synth4k 0 --calib-frames 120  # an archive batch

It starts a ``dask scheduler`` and two ``dask worker`` processes (1 thread each) as separate process
trees, as on a real cluster, and ingests through ``Client(address)`` into a lake that already holds
frames (a warm-up batch, which also pays the workers' imports). The calibration set ingests a SYNTHETIC
night of 4096x4096 frames (``--calib-shape``) per run (not measured) into a lake holding its reference catalogue (the
synthetic demo catalogue of the same stars, ``write_reference_catalog`` + ``import_refcat``, as
benchmarks/scale.py) and measures ``calibrate`` of that night alone: the cross-match, the fits, the
matches files and the commit (~8000 pairs per frame). By default two sets: 8 frames a batch (the fixed costs of a
small batch, as ``skylake watch`` pays them) and 120 (~1.2 M sources, an archive job's batch: whole nights up to
``BATCH_SOURCES``, 2 M). Per run it measures:

* driver CPU: this process (all threads: the client, the commit), ``getrusage(RUSAGE_SELF)``;
* worker CPU: the two worker process trees (nanny + worker), from psutil;
* scheduler CPU: the scheduler process (on a cluster, its own machine or core).

Frame sets: the 14 REAL SkyCamZ frames of ``../shared/data/skycamz`` copied with one header card
changed per copy (new bytes: new frames to the lake), and SYNTHETIC 4096x4096 frames
(``skylake.synthetic.write_demo_night``, ~8000 stars each). It prints milliseconds per frame and the
ratio driver / workers, for the calibration the driver's share of all the CPU, driver / (driver + workers),
and for both the central cost, (driver + scheduler) / workers (the goal: at most 2 %, a ceiling of 50
workers or more, ``GOAL_CENTRAL``; a calibration's 2.5 %, ``GOAL_CENTRAL_CALIBRATION``), then the same without
the scheduler's timers: its CPU with nothing to do
(measured first: 5-9 ms/s with two workers and the 1 s event-loop tick docs/cluster.md starts a scheduler with, the
default here; ~15 ms/s with dask's 20 ms, ``--tick dask``: the tick, the system monitor, heartbeats), times
each run's wall time, which 2 workers pay as much as 50 would; and, last, without dask's own cost of a busy
worker as well (measured second, on tasks that only spin: mostly the heartbeats, which dask sends every 0.5 s
from up to 10 workers and every 2 s from 50-199), which leaves skylake's tasks and the driver. Nothing is asserted.
With two or more calibration sets it fits their central CPU a batch as a fixed cost plus a cost a frame and
prints the share that gives the batch 2 and 50 workers commit (``sources_per_batch``): a PROJECTION.
It runs whatever skylake is first on ``PYTHONPATH`` (driver and workers alike): ``PYTHONPATH=/tmp/before``
measures a checkout of another version (copy this file there).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKYCAMZ = Path(os.environ.get("SKYLAKE_SHARED_DATA", REPO.parent / "shared" / "data")) / "skycamz"
DASK = Path(sys.executable).parent / "dask"
GOAL_CENTRAL = 2.0  # % : the driver's plus the scheduler's CPU per unit of the workers' (a ceiling of >= 50 workers)
GOAL_CENTRAL_CALIBRATION = 2.5  # % : the same for a calibration (issue 44), whose workers do less per frame


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _tree_cpu(pids: list[int]) -> float:
    """CPU seconds of the processes ``pids`` and all their descendants (live ones)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


class Cluster:
    """A ``dask scheduler`` and ``n`` ``dask worker`` processes in their own process groups."""

    def __init__(self, work: Path, n: int = 2, memory_limit: str = "3GB", tick: str | None = "1s"):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
        if tick:  # the scheduler as docs/cluster.md starts it
            env["DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL"] = tick
        work.mkdir(parents=True, exist_ok=True)
        self.address_file = work / "scheduler.json"
        self.procs = [
            subprocess.Popen(
                [
                    str(DASK),
                    "scheduler",
                    "--scheduler-file",
                    str(self.address_file),
                    "--dashboard-address",
                    ":0",
                    "--port",
                    "0",
                ],
                cwd=work,
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        ]
        deadline = time.monotonic() + 60
        while not self.address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        for k in range(n):
            d = work / f"worker{k}"
            d.mkdir(exist_ok=True)
            self.procs.append(
                subprocess.Popen(
                    [
                        str(DASK),
                        "worker",
                        "--scheduler-file",
                        str(self.address_file),
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--memory-limit",
                        memory_limit,
                        "--dashboard-address",
                        ":0",
                    ],
                    cwd=d,
                    env=env,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        from distributed import Client

        self.client = Client(scheduler_file=str(self.address_file), timeout=60)
        self.client.wait_for_workers(n, timeout=120)
        self.idle = 0.0  # the scheduler's CPU seconds per second with nothing to do (idle_rate)
        self.busy = 0.0  # its CPU seconds per second of the workers' CPU on tasks that only spin (busy_rate)

    def idle_rate(self, seconds: float = 10.0) -> float:
        """The scheduler's CPU seconds per second while the cluster has nothing to do: its timers (the event
        loop's health tick, every 20 ms by default; the system monitor, every 0.5 s) and the workers'
        heartbeats. Sets :attr:`idle`.

        Parameters
        ----------
        seconds : float
            How long to watch.

        Returns
        -------
        float
            The rate [s/s].
        """
        s0, t0 = _tree_cpu([self.scheduler_pid]), time.perf_counter()
        time.sleep(seconds)
        self.idle = (_tree_cpu([self.scheduler_pid]) - s0) / (time.perf_counter() - t0)
        return self.idle

    def busy_rate(self, seconds_each: float = 0.25, per_worker: int = 8) -> float:
        """The scheduler's CPU seconds per second of a worker's work beyond :attr:`idle`, for tasks that only
        spin (no skylake): dask's own cost of a busy worker (its heartbeats, every 0.5 s at up to 10
        workers, carry the metrics of its tasks) and of a few long tasks. Sets :attr:`busy`.

        Parameters
        ----------
        seconds_each : float
            Each task's CPU time [s].
        per_worker : int
            Tasks a worker.

        Returns
        -------
        float
            The rate [s of the scheduler's CPU per s of the workers'].
        """

        def _spin(seconds: float) -> float:  # nested: pickled by value when this file is imported (scale.py)
            t0 = time.process_time()
            while time.process_time() - t0 < seconds:
                pass
            return seconds

        n = per_worker * len(self.worker_pids)
        self.client.gather(self.client.map(_spin, [0.01] * n, pure=False))  # the function reaches the workers
        s0, w0, t0 = _tree_cpu([self.scheduler_pid]), _tree_cpu(self.worker_pids), time.perf_counter()
        self.client.gather(self.client.map(_spin, [seconds_each] * n, pure=False))
        wall = time.perf_counter() - t0
        s1, w1 = _tree_cpu([self.scheduler_pid]), _tree_cpu(self.worker_pids)
        self.busy = max(0.0, (s1 - s0) - self.idle * wall) / (w1 - w0)
        return self.busy

    @property
    def scheduler_pid(self) -> int:
        return self.procs[0].pid

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs[1:]]

    def close(self):
        self.client.close()
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def measure(cluster: Cluster, lake, paths: list[str], profile: str) -> dict:
    from skylake.pipeline import ingest

    s0, w0, c0, t0 = (
        _tree_cpu([cluster.scheduler_pid]),
        _tree_cpu(cluster.worker_pids),
        _self_cpu(),
        time.perf_counter(),
    )
    report = ingest(lake, paths, profile, client=cluster.client, progress=False)
    wall = time.perf_counter() - t0
    c1, w1, s1 = _self_cpu(), _tree_cpu(cluster.worker_pids), _tree_cpu([cluster.scheduler_pid])
    n = report.ingested + len(report.rejected)
    assert n == len(paths), (n, len(paths), report)
    return {"driver": (c1 - c0) / n, "workers": (w1 - w0) / n, "scheduler": (s1 - s0) / n, "wall": wall / n}


def measure_calibration(cluster: Cluster, lake, paths: list[str], profile: str) -> dict:
    """Ingest ``paths`` without calibrating them (not measured), then measure their calibration."""
    from skylake.calib.calibrate import calibrate
    from skylake.pipeline import ingest

    ingested = ingest(lake, paths, profile, calibrate=False, client=cluster.client, progress=False)
    s0, w0 = _tree_cpu([cluster.scheduler_pid]), _tree_cpu(cluster.worker_pids)
    c0, t0 = _self_cpu(), time.perf_counter()
    [report] = calibrate(lake, client=cluster.client, nights=sorted(ingested.nights))
    wall = time.perf_counter() - t0
    c1, w1, s1 = _self_cpu(), _tree_cpu(cluster.worker_pids), _tree_cpu([cluster.scheduler_pid])
    n = report.calibrated
    assert n == len(paths), (n, len(paths), report)
    frames = lake.read_frames(columns=["night", "n_sources"]).to_pandas()
    sources = frames.loc[frames["night"].isin(ingested.nights), "n_sources"].sum()
    return {
        "driver": (c1 - c0) / n,
        "workers": (w1 - w0) / n,
        "scheduler": (s1 - s0) / n,
        "wall": wall / n,
        "pairs": report.matches / n,
        "sources": sources / n,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per frame set (median reported)")
    parser.add_argument("--skycamz-copies", type=int, default=4, help="copies of the 14 SkyCamZ frames per run")
    parser.add_argument("--synth4k", type=int, default=6, help="synthetic 4k frames per run (0: skip)")
    parser.add_argument(
        "--calib-frames",
        type=int,
        nargs="+",
        default=[8, 120],
        help="synthetic frames per calibration run, one batch each (several: one set each; 0: skip). 8 measures a "
        "small batch's fixed costs; 120 4k frames are an archive job's batch (~1.2 M sources; BATCH_SOURCES is 2 M)",
    )
    parser.add_argument(
        "--calib-shape",
        type=int,
        default=4096,
        help="their size in pixels (stars in proportion: ~8000 pairs per frame at 4096)",
    )
    parser.add_argument(
        "--tick",
        default="1s",
        help="the scheduler's and workers' event-loop health tick (distributed.admin.tick.interval): 1s as "
        "docs/cluster.md starts a scheduler (default), 'dask' for dask's own 20 ms",
    )
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("skylake").setLevel(logging.ERROR)
    from skylake.lake import Lake
    from skylake.synthetic import write_demo_night
    from skylake.synthetic.frames import distinct_copies

    tmp = Path(tempfile.mkdtemp(prefix="skylake-cpu-"))
    cluster = Cluster(tmp / "cluster", tick=None if args.tick == "dask" else args.tick)
    try:
        time.sleep(2)
        print(
            f"scheduler idle: {1e3 * cluster.idle_rate():.1f} ms of CPU per second (10 s, nothing submitted; "
            f"tick {'20ms (dask)' if args.tick == 'dask' else args.tick})"
        )
        print(
            f"scheduler busy: {1e3 * cluster.busy_rate():.1f} ms of CPU per second of a worker's CPU beyond idle "
            f"(16 tasks that only spin, 0.25 s each: dask's own cost of a busy worker)"
        )
        sets = []
        if SKYCAMZ.is_dir() and args.skycamz_copies:
            sets.append(
                (
                    "skycamz",
                    "skycamz",
                    "REAL SkyCamZ 1024x1024",
                    lambda k: distinct_copies(
                        sorted(SKYCAMZ.glob("z_e_*.fits")), tmp / f"z{k}", args.skycamz_copies, f"r{k + 1}"
                    ),
                )
            )
        elif args.skycamz_copies:
            print(f"NOTE: no SkyCamZ frames at {SKYCAMZ}: that set is skipped")
        if args.synth4k:

            def synth(k):
                write_demo_night(
                    tmp / f"s{k}",
                    n_frames=args.synth4k,
                    shape=(4096, 4096),
                    n_stars=13300,
                    seed=7,
                    start_utc=f"2026-03-{2 + k:02d}T22:00:00",
                )
                return sorted(str(p) for p in (tmp / f"s{k}").glob("*.fits"))

            sets.append(("synth-4k", "demo", "SYNTHETIC 4096x4096", synth))
        for name, profile, what, make in sets:
            lake = Lake.init(tmp / f"lake-{name}")
            measure(cluster, lake, make(-1), profile)  # imports on the workers; a lake that has frames
            runs = [measure(cluster, lake, make(k), profile) for k in range(args.runs)]
            med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            ratio = med["driver"] / med["workers"]
            print(
                f"{name} ({what}), median of {args.runs} runs, ms per frame: driver {1e3 * med['driver']:.1f}, "
                f"workers {1e3 * med['workers']:.1f}, scheduler {1e3 * med['scheduler']:.1f}, wall "
                f"{1e3 * med['wall']:.0f}; driver / workers = {100 * ratio:.1f} % (ceiling {1 / ratio:.0f} workers)"
            )
            print("   runs driver/workers: " + " ".join(f"{100 * r['driver'] / r['workers']:.1f}%" for r in runs))
            _central(runs, med, cluster)
        sizes = sorted({n for n in args.calib_frames if n > 0})
        calibrations = {n: _calibration_set(cluster, tmp, args, n, k) for k, n in enumerate(sizes)}
        if len(calibrations) >= 2:
            _batch_model(calibrations, cluster)
    finally:
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _calibration_set(cluster: Cluster, tmp: Path, args, frames: int, k: int) -> dict:
    """The calibration measurement: a lake with the synthetic night's reference catalogue, a warm-up
    calibration, then ``args.runs`` nights of ``frames`` frames each (``k``: this set's number, for its dates)."""
    from skylake.lake import Lake
    from skylake.refcat import import_refcat
    from skylake.synthetic import write_demo_night, write_reference_catalog

    size = args.calib_shape

    def night(run, n=frames):  # the same stars (seed) every night: one catalogue calibrates them all
        out = tmp / f"c{k}-{run}"
        truth = write_demo_night(
            out,
            n_frames=n,
            shape=(size, size),
            seed=7,
            n_stars=max(50, round(13300 * (size / 4096) ** 2)),
            cloud=False,
            n_variables=0,
            start_utc=f"2026-04-{2 + run + 10 * k:02d}T22:00:00",
            cadence_s=min(600, 10800 // n),
        )  # a night is 3 hours at most (the field is up)
        return truth, sorted(str(p) for p in out.glob("*.fits"))

    truth, warm = night(-1, min(frames, 8))  # a small warm-up night
    data, columns_map = write_reference_catalog(truth.stars, tmp / f"refcat{k}")
    lake = Lake.init(tmp / f"lake-calib{k}")
    import_refcat(lake, "demo", [data], "generic", columns_map=columns_map, client=cluster.client, progress=False)
    measure_calibration(cluster, lake, warm, "demo")  # imports and numba compilation on the workers and here
    runs = [measure_calibration(cluster, lake, night(run)[1], "demo") for run in range(args.runs)]
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(
        f"calibrate (SYNTHETIC {size}x{size}, {med['pairs']:.0f} pairs per frame, {frames} frames a "
        f"batch), median of {args.runs} runs, ms per "
        f"frame: driver {1e3 * med['driver']:.1f}, workers {1e3 * med['workers']:.1f}, scheduler "
        f"{1e3 * med['scheduler']:.1f}, wall {1e3 * med['wall']:.0f}; driver / workers = "
        f"{100 * med['driver'] / med['workers']:.1f} %, driver share of the CPU = "
        f"{100 * med['driver'] / (med['driver'] + med['workers']):.1f} %"
    )
    print("   runs driver share: " + " ".join(f"{100 * r['driver'] / (r['driver'] + r['workers']):.1f}%" for r in runs))
    _central(runs, med, cluster, GOAL_CENTRAL_CALIBRATION)
    return med


def _batch_model(calibrations: dict[int, dict], cluster: Cluster) -> None:
    """Fit the calibration's central CPU per batch as a fixed cost a batch plus a cost a frame, the driver's
    and the scheduler's apart (the medians of each set; the scheduler's less its timers and dask's cost of
    busy workers, which change with the cluster), and print the central share of the batch a cluster of 2
    and of 50 workers commits (``skylake.calib.calibrate.sources_per_batch``) of frames like these: a
    PROJECTION from the sets measured on 2 workers, not a measurement, of skylake's own central cost (dask's
    timers and heartbeats, which a larger cluster spaces out, left out as in :func:`_central`'s last line).
    Each run is one night, which a calibration commits as one batch whatever its size."""
    import numpy as np

    from skylake.calib.calibrate import sources_per_batch

    n = np.array(sorted(calibrations), dtype=float)
    meds = [calibrations[int(k)] for k in n]
    parts = {
        "driver": np.array([m["driver"] for m in meds]) * n,  # s a batch
        "scheduler": np.array(
            [max(0.0, m["scheduler"] - cluster.idle * m["wall"] - cluster.busy * m["workers"]) for m in meds]
        )
        * n,
    }
    line = {}
    for name, per_batch in parts.items():
        slope, fixed = np.polyfit(n, per_batch, 1)
        line[name] = (0.0, float(np.mean(per_batch))) if slope < 0 else (slope, fixed)  # < 0: within the noise
    work, sources = meds[-1]["workers"], meds[-1]["sources"]  # the workers' s a frame: the largest set's
    print(
        "calibrate, a line through the "
        + f"{len(n)} sets' medians, CPU a batch: "
        + ", ".join(f"{name} {1e3 * f:.0f} ms + {1e3 * b:.2f} ms a frame" for name, (b, f) in line.items())
        + f" (the scheduler's less dask's own costs); workers {1e3 * work:.1f} ms a frame of {sources:.0f} sources"
    )
    slope, fixed = (sum(v[k] for v in line.values()) for k in (0, 1))
    for workers in (2, 50):
        frames = sources_per_batch(workers) / sources
        share = 100 * (fixed + slope * frames) / (work * frames)
        print(
            f"   PROJECTED: the batch {workers} workers commit ({sources_per_batch(workers) / 1e6:g} M sources, "
            f"{frames:.0f} such frames): (driver + scheduler less dask's own costs) / workers = {share:.1f} %"
        )


def _central(runs: list[dict], med: dict, cluster: Cluster, goal: float = GOAL_CENTRAL) -> None:
    """Print the driver's plus the scheduler's CPU against the workers' (the central cost of a unit of work,
    the goal: at most ``goal`` %), its median and each run's; then the same without the scheduler's
    timers (:attr:`Cluster.idle` CPU seconds per second times each run's wall time), and without dask's own
    cost of busy workers as well (:attr:`Cluster.busy` per second of the workers' CPU): what is left is
    skylake's tasks and the driver."""
    share = 100 * (med["driver"] + med["scheduler"]) / med["workers"]
    each = " ".join(f"{100 * (r['driver'] + r['scheduler']) / r['workers']:.1f}%" for r in runs)
    verdict = "met" if share <= goal else "not met"
    print(f"   (driver + scheduler) / workers = {share:.1f} % (goal <= {goal:g} %: {verdict}); runs: {each}")
    idle, busy = cluster.idle, cluster.busy
    net = [100 * (r["driver"] + max(0.0, r["scheduler"] - idle * r["wall"])) / r["workers"] for r in runs]
    print(
        f"   without the scheduler's timers ({1e3 * idle:.1f} ms/s idle, the same at any number of workers): "
        f"{statistics.median(net):.1f} %; runs: " + " ".join(f"{x:.1f}%" for x in net)
    )
    own = [
        100 * (r["driver"] + max(0.0, r["scheduler"] - idle * r["wall"] - busy * r["workers"])) / r["workers"]
        for r in runs
    ]
    print(
        f"   and without dask's cost of busy workers ({1e3 * busy:.1f} ms per worker-second here, heartbeats every "
        f"0.5 s; dask spaces them 2 s apart at 50-199 workers): {statistics.median(own):.1f} %; runs: "
        + " ".join(f"{x:.1f}%" for x in own)
    )


if __name__ == "__main__":
    sys.exit(main())
