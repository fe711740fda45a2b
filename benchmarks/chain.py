"""Chain benchmark: CPU seconds per frame of each stage of skylake's chain, against SExtractor alone.

Run from the repo root (one command; see benchmarks/README.md)::

    .venv/bin/python benchmarks/chain.py [--runs N] [--quick] [--no-sextractor] [--synth-frames N]

Frame sets: the 14 REAL SkyCamZ frames (``../shared/data/skycamz``, profile "skycamz") against the real Tycho-2
cut to 12 deg around their two pointings (as tests/test_calib_real.py); and a SYNTHETIC clear night of 1024x1024
frames (``skylake.synthetic.write_demo_night``, 16; 6 with ``--quick``; no cloud, so that every frame calibrates ok
and the ensemble has a night to solve) against its own synthetic catalogue (profile "demo"). Without the real data
the SkyCamZ set is skipped with a note.

Per set and run (``--runs``, default 3; 1 with ``--quick``), in a fresh lake, each stage is run on its own, in
order: refcat import, ingest (``pipeline.ingest(..., calibrate=False)``: no downstream chain), ``calibrate``,
``ensemble`` (enabled by default in every profile, skycamz's and demo's included: neither turns it off),
``build_objects`` and ``make_maps`` (one map per night, no export). Everything but the refcat import runs IN THIS
PROCESS with ``client=None`` (no dask cluster): a stage's CPU is ``time.process_time()`` (every thread of this
process) plus the CPU of waited-for children (``RUSAGE_CHILDREN``), its wall time ``perf_counter``. The refcat
import needs a distributed client: it gets an in-process one (threads, 1 worker; its start and close are not
timed); it is reported but not a per-frame stage (once a lake). Before the runs one untimed warm-up chain on
the set's first 4 frames pays imports and compilation.

SExtractor: ``source-extractor`` with benchmarks/ingest.py's timed configuration (the profile's detection and
skylake's columns; that file's ``ensure_sextractor`` installs it), one subprocess per frame, its CPU the
``RUSAGE_CHILDREN`` delta. Per set the table gives each stage's median CPU s/frame, its share of the chain's (the
sum of the stage medians), the median wall s/frame, the chain's total (median of the runs' totals) and chain /
SExtractor. Goal (SkyCamZ): the chain <= 2.0x SExtractor per frame. Exit 0 once a set ran, 2 if none did.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("SKYLAKE_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
POINTINGS = ((256.2, 12.8), (263.8, 18.7))  # RA, Dec [deg] of SkyCamZ frames 210-221 and 222-223
STAGES = ("ingest", "calibrate", "ensemble", "objects", "maps")
GOAL = 2.0  # chain / SExtractor, CPU per frame, SkyCamZ


def load_ingest_bench():
    """benchmarks/ingest.py as a module: its SExtractor set-up and other-load meter, not copies of them."""
    spec = importlib.util.spec_from_file_location("bench_ingest", HERE / "ingest.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def cpu() -> float:
    """CPU seconds so far of this process (all threads) and of its waited-for children."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


def measured(fn):
    """``fn()``'s result, CPU seconds and wall seconds."""
    c0, w0 = cpu(), time.perf_counter()
    out = fn()
    return out, cpu() - c0, time.perf_counter() - w0


def tycho_cut(out: Path) -> Path:
    """Tycho-2 cut to 12 deg around the SkyCamZ pointings (tests/test_calib_real.py), written to ``out``."""
    import pyarrow.parquet as pq

    table = pq.read_table(SHARED / "refcats" / "tycho2_vt.parquet")
    ra, dec = np.radians(table["ra"].to_numpy()), np.radians(table["dec"].to_numpy())
    keep = np.zeros(len(table), bool)
    for ra0, dec0 in np.radians(POINTINGS):
        keep |= np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(ra - ra0) >= np.cos(np.radians(12))
    pq.write_table(table.filter(keep), out)
    return out


def make_sets(tmp: Path, n_synth: int) -> list[dict]:
    """The frame sets: name, profile, frames, and the refcat import's arguments."""
    from skylake.synthetic import write_demo_night, write_reference_catalog

    sets = []
    real = sorted(str(p) for p in (SHARED / "skycamz").glob("z_e_*.fits"))
    if real and (SHARED / "refcats" / "tycho2_vt.parquet").exists():
        refcat = dict(name="tycho2", files=[tycho_cut(tmp / "tycho2_vt.parquet")], fmt="tycho2")
        sets.append(dict(name="skycamz", profile="skycamz", paths=real, refcat=refcat, what="REAL SkyCamZ 1024x1024"))
    else:
        print(f"NOTE: no SkyCamZ frames or Tycho-2 under {SHARED}: the SkyCamZ set is skipped", flush=True)
    truth = write_demo_night(tmp / "synth", n_frames=n_synth, shape=(1024, 1024), seed=7, cloud=False)
    data, columns_map = write_reference_catalog(truth.stars, tmp / "synth-refcat")
    refcat = dict(name="demo", files=[data], fmt="generic", columns_map=columns_map)
    paths = sorted(str(p) for p in (tmp / "synth").glob("*.fits"))
    sets.append(dict(name="synth-1k", profile="demo", paths=paths, refcat=refcat, what="SYNTHETIC 1024x1024"))
    return sets


def import_refcat_in_process(lake, refcat: dict) -> tuple[float, float]:
    """Import the set's catalogue on an in-process client (threads; started and closed untimed, so that its
    event loop does not tick during the stages). Returns CPU and wall seconds."""
    from distributed import Client

    from skylake.refcat import import_refcat

    args = dict(refcat)
    name, files, fmt = args.pop("name"), args.pop("files"), args.pop("fmt")
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        _, c, w = measured(lambda: import_refcat(lake, name, files, fmt, client=client, progress=False, **args))
    return c, w


def run_chain(fs: dict, paths: list[str], lake_dir: Path) -> dict:
    """One run of the chain on ``paths`` in a fresh lake: {stage: (CPU s, wall s)} and a note on what it did."""
    from skylake.calib.calibrate import calibrate
    from skylake.ensemble.stage import ensemble
    from skylake.lake import Lake
    from skylake.maps import make_maps
    from skylake.objects.build import build_objects
    from skylake.pipeline import ingest

    shutil.rmtree(lake_dir, ignore_errors=True)
    lake = Lake.init(lake_dir)
    out = {"refcat": import_refcat_in_process(lake, fs["refcat"])}
    steps = {
        "ingest": lambda: ingest(lake, paths, fs["profile"], calibrate=False, client=None, progress=False),
        "calibrate": lambda: calibrate(lake, client=None),
        "ensemble": lambda: ensemble(lake, client=None),
        "objects": lambda: build_objects(lake, client=None),
        "maps": lambda: make_maps(lake),
    }
    reports = {}
    for stage, fn in steps.items():
        reports[stage], c, w = measured(fn)
        out[stage] = (c, w)
    ing, cal, ens, obj, (_, index, _, _) = reports.values()

    def statuses(reps) -> str:
        return ", ".join(f"{k} {v}" for r in reps for k, v in r.by_status.items()) or "none"

    out["note"] = (
        f"ingested {ing.ingested} (rejected {len(ing.rejected)}); calibrated {statuses(cal)}; ensemble "
        f"{sum(r.fields for r in ens)} fields (frames {statuses(ens)}); {obj.objects} objects; {len(index)} maps"
    )
    shutil.rmtree(lake_dir, ignore_errors=True)
    return out


def time_sextractor(bench, exe: str, fs: dict, runs: int, work: Path) -> list[float]:
    """CPU seconds per frame of SExtractor alone on the set (one subprocess per frame), one value per run."""
    from skylake.profile import load_profile

    work.mkdir(parents=True, exist_ok=True)
    config = str(bench.sextractor_config(work, load_profile(fs["profile"])))

    def once() -> float:
        c0 = cpu()
        for i, path in enumerate(fs["paths"]):
            cat = str(work / f"{i:04d}.cat")
            subprocess.run([exe, path, "-c", config, "-CATALOG_NAME", cat], check=True, capture_output=True)
        return (cpu() - c0) / len(fs["paths"])

    once()  # warm-up: the binary and the frames in the page cache
    return [once() for _ in range(runs)]


def report(fs: dict, runs: list[dict], sex: list[float] | None, loads: list[float]) -> float | None:
    """Print the set's table; return chain / SExtractor (None without SExtractor)."""
    n = len(fs["paths"])
    med = {s: statistics.median(r[s][0] for r in runs) / n for s in STAGES}
    wall = {s: statistics.median(r[s][1] for r in runs) / n for s in STAGES}
    totals = [sum(r[s][0] for s in STAGES) / n for r in runs]
    total, share_of = statistics.median(totals), sum(med.values())
    ref_c = statistics.median(r["refcat"][0] for r in runs)
    ref_w = statistics.median(r["refcat"][1] for r in runs)
    print(f"\n[{fs['name']}] {n} {fs['what']} frames, profile {fs['profile']!r}, {len(runs)} run(s), each a fresh lake")
    print(f"  did (last run): {runs[-1]['note']}")
    print(f"  other load (CPU used by other processes) per run: {', '.join(f'{x:.2f}' for x in loads)} CPU")
    print(f"  refcat import {fs['refcat']['name']} (once a lake, not counted): CPU {ref_c:.2f} s, wall {ref_w:.2f} s")
    print(f"  {'stage':10s} {'CPU s/frame':>11s} {'share':>7s} {'wall s/frame':>12s}   runs (CPU s/frame)")
    for s in STAGES:
        each = ", ".join(f"{r[s][0] / n:.4f}" for r in runs)
        print(f"  {s:10s} {med[s]:11.4f} {100 * med[s] / share_of:6.1f}% {wall[s]:12.4f}   {each}")
    each = ", ".join(f"{t:.4f}" for t in totals)
    print(f"  {'chain':10s} {total:11.4f} {'100%':>7s} {sum(wall.values()):12.4f}   {each}")
    if not sex:
        print("  SExtractor: not measured")
        return None
    s = statistics.median(sex)
    print(f"  {'SExtractor':10s} {s:11.4f} {'':7s} {'':12s}   {', '.join(f'{x:.4f}' for x in sex)}")
    print(f"  chain / SExtractor = {total / s:.2f}x per frame")
    return total / s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=None, help="runs per set, each a fresh lake (default 3; 1 --quick)")
    ap.add_argument("--quick", action="store_true", help="one run, a small synthetic night")
    ap.add_argument("--no-sextractor", action="store_true", help="skip SExtractor (and its installation)")
    ap.add_argument("--synth-frames", type=int, default=None, help="frames of the synthetic night (16; 6 --quick)")
    args = ap.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    n_synth = args.synth_frames or (6 if args.quick else 16)
    if runs < 1 or n_synth < 3:
        ap.error("--runs must be >= 1 and --synth-frames >= 3 (the ensemble's minimum)")

    warnings.filterwarnings("ignore")
    logging.getLogger("skylake").setLevel(logging.ERROR)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    bench = load_ingest_bench()
    meter = bench.CpuMeter()
    print(f"skylake chain benchmark: {runs} run(s) per set; {os.cpu_count()} CPUs", flush=True)
    print(f"  CPU used by other processes at the start: {meter.sample(2.0):.2f} CPU", flush=True)
    exe, note = (None, "skipped (--no-sextractor)") if args.no_sextractor else bench.ensure_sextractor()
    print(f"  SExtractor: {exe} ({bench.sextractor_version(exe)})" if exe else f"  NOTE: SExtractor {note}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="skylake-chain-"))
    ratios = {}
    try:
        sets = make_sets(tmp, n_synth)
        for fs in sets:
            bench.warm_page_cache(fs["paths"])
            run_chain(fs, fs["paths"][:4], tmp / "lake")  # warm-up, untimed: imports, numba, first calls
            results, loads = [], []
            for _ in range(runs):
                meter.start()
                results.append(run_chain(fs, fs["paths"], tmp / "lake"))
                loads.append(meter.stop())
            sex = time_sextractor(bench, exe, fs, runs, tmp / "sex" / fs["name"]) if exe else None
            ratios[fs["name"]] = report(fs, results, sex, loads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "skycamz" not in ratios:
        print(f"\ngoal: chain <= {GOAL}x SExtractor (SkyCamZ): not measured (no SkyCamZ set)")
    elif ratios["skycamz"] is None:
        print(f"\ngoal: chain <= {GOAL}x SExtractor (SkyCamZ): not measured (no SExtractor)")
    else:
        verdict = "PASS" if ratios["skycamz"] <= GOAL else "MISS"
        print(f"\ngoal: chain <= {GOAL}x SExtractor (SkyCamZ): {ratios['skycamz']:.2f}x {verdict}")
    return 0 if ratios else 2


if __name__ == "__main__":
    sys.exit(main())
