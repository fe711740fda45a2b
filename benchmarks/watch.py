"""Watch-mode benchmark: per-frame latency while a camera writes, and sustained frames per second in a burst,
against the batch command (``skylake ingest`` of the same frames, in the same run) as the baseline.

Run from the repo root (one command; ``--quick`` for fewer, smaller frames)::

    .venv/bin/python benchmarks/watch.py [--quick] [--frames N] [--cadence S]

SYNTHETIC frames (``skylake.synthetic.write_demo_night``) and the demo's reference catalogue; each scenario on
a fresh lake, the watcher in this process (``Watcher.run`` in a thread; no cluster), stable time 1 s, poll 0.5 s:

(a) baseline: one ``ingest`` of all N frames with calibration (the batch command), then objects, maps and the
    summary database once: seconds per frame;
(b) steady: one frame copied into the watched directory every ``--cadence`` seconds; latency (first sighting
    to the batch's last commit, products included) p50 / p95, and how it and each step grow from the first to
    the second half of the night (the lake growing under it); night maps at the default interval (300 s);
(c) burst: all N frames at once: frames per second from the first copy to the last commit, against (a).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _lake_with_refcat(root: Path, stars):
    from skylake.lake import Lake
    from skylake.profile import load_profile
    from skylake.refcat import import_refcat
    from skylake.synthetic import write_reference_catalog

    lake = Lake.init(root / "lake")
    data, cmap = write_reference_catalog(stars, root / "refcat")
    import_refcat(lake, load_profile("demo").calibration.refcat, [data], "generic", columns_map=cmap, progress=False)
    return lake


def _watch(root: Path, frames: list[Path], cadence: float | None) -> tuple[list, float]:
    """Copy ``frames`` into a watched directory (every ``cadence`` s, or all at once); the batches and the
    seconds from the first copy to the last commit."""
    from skylake.watch import Watcher, WatchSettings

    incoming = root / "incoming"
    incoming.mkdir()
    settings = WatchSettings(stable_seconds=1.0, poll_seconds=0.5, latency_seconds=120.0)
    watcher = Watcher(root / "lake", [str(incoming)], "demo", settings)
    batches: list = []
    thread = threading.Thread(target=watcher.run, kwargs=dict(say=lambda line: None, on_batch=batches.append))
    thread.start()
    t0 = time.monotonic()
    for f in frames:
        shutil.copy(f, incoming / (f.name + ".part"))  # copied under a name the watcher ignores, then renamed
        (incoming / (f.name + ".part")).rename(incoming / f.name)
        if cadence:
            time.sleep(cadence)
    while sum(len(b.paths) for b in batches) < len(frames):
        time.sleep(0.2)
    elapsed = time.monotonic() - t0
    watcher.stop()
    thread.join()
    return batches, elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 frames of 512x512 instead of 24 of 1024x1024")
    parser.add_argument("--frames", type=int, default=None, help="frames per scenario")
    parser.add_argument("--cadence", type=float, default=None, help="seconds between frames in (b) (default 3)")
    args = parser.parse_args(argv)

    from skylake.db import refresh
    from skylake.maps import make_maps
    from skylake.objects.build import build_objects
    from skylake.pipeline import ingest
    from skylake.synthetic import write_demo_night

    n = args.frames or (12 if args.quick else 24)
    shape = (512, 512) if args.quick else (1024, 1024)
    cadence = args.cadence if args.cadence is not None else 3.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        truth = write_demo_night(tmp / "night", n_frames=n, shape=shape, n_stars=400 if args.quick else 1500)
        frames = sorted((tmp / "night").glob("*.fits"))
        print(f"{n} SYNTHETIC frames of {shape[0]}x{shape[1]}; stable 1 s, poll 0.5 s; this process, no cluster")

        base = tmp / "batch"
        lake = _lake_with_refcat(base, truth.stars)
        ingest(lake, [str(f) for f in frames[:1]], "demo", progress=False)  # numba compiles once per process
        t0 = time.monotonic()
        ingest(lake, [str(f) for f in frames[1:]], "demo", progress=False)
        build_objects(lake)
        make_maps(lake)
        refresh(lake)
        t_batch = (time.monotonic() - t0) / (n - 1)
        print(f"\n(a) batch ingest + products         {t_batch:8.2f} s per frame   1.00x")

        steady = tmp / "steady"
        _lake_with_refcat(steady, truth.stars)
        batches, _ = _watch(steady, frames, cadence)
        lat = np.concatenate([b.latencies for b in batches])  # numba compiled in (a): same process
        half = len(lat) // 2
        per_frame = np.median([b.seconds / len(b.paths) for b in batches])
        print(
            f"(b) steady, 1 frame / {cadence:g} s:      latency p50 {np.median(lat):.1f} s, p95 "
            f"{np.percentile(lat, 95):.1f} s ({len(batches)} batches); {per_frame:.2f} s per frame, "
            f"{per_frame / t_batch:.2f}x (a)"
        )
        print(
            f"    growth: latency p50 first half {np.median(lat[:half]):.1f} s, second half "
            f"{np.median(lat[half:]):.1f} s ({np.median(lat[half:]) / np.median(lat[:half]):.2f}x)"
        )

        h = len(batches) // 2
        for step in [name for name, _, _ in batches[0].steps]:
            halves = [
                [sec for b in part for name, sec, _ in b.steps if name == step] for part in (batches[:h], batches[h:])
            ]
            text = " -> ".join(f"{np.median(x):.2f} s ({len(x)} batches)" if x else "not run" for x in halves)
            print(f"    {step:10s} {text}")

        burst = tmp / "burst"
        _lake_with_refcat(burst, truth.stars)
        batches, elapsed = _watch(burst, frames, None)
        print(
            f"(c) burst of {n}:                     {n / elapsed:.2f} frames/s sustained ({elapsed:.1f} s, "
            f"{len(batches)} batches), {elapsed / n / t_batch:.2f}x (a) per frame"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
