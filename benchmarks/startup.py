"""Start-up benchmark: what commands that need no cluster cost, against the bare Python start-up
measured in the same run.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/startup.py            # 5 runs per command
    .venv/bin/python benchmarks/startup.py --runs 9

It writes 12 SYNTHETIC demo frames (skylake.synthetic.write_demo_night, 1024x1024) into a temporary
directory, ingests them once into a small lake, then times, as a user types them (each a new
process, wall time, median of --runs):

* ``python -c pass``: the interpreter alone (the baseline);
* ``skylake --help``;
* ``skylake status LAKE`` on the 12-frame lake;
* ``skylake ingest LAKE FRAMES --pipeline demo``: a no-op re-ingest of the 12 frames already in the
  lake (hashing them; no cluster is started);
* ``skylake refresh LAKE`` (the summary database, up to date: a no-op after the first).

and prints each median, its ratio to the baseline, and the one-line summary the issue asks for.
Nothing is asserted: the numbers are for people (and the benchmarks README).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time(cmd: list[str], runs: int, cwd: Path) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
        times.append(time.perf_counter() - t0)
        if proc.returncode not in (0,):
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return statistics.median(times), times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (median reported)")
    args = parser.parse_args(argv)
    from skylake.synthetic import write_demo_night

    tmp = Path(tempfile.mkdtemp(prefix="skylake-startup-"))
    try:
        frames = tmp / "frames"
        write_demo_night(frames, n_frames=12)
        lake = tmp / "lake"
        skylake = [sys.executable, "-m", "skylake.cli"]
        subprocess.run(
            [*skylake, "ingest", str(lake), str(frames), "--pipeline", "demo", "--create", "--no-progress"],
            check=True,
            capture_output=True,
            cwd=tmp,
        )
        subprocess.run([*skylake, "refresh", str(lake)], check=True, capture_output=True, cwd=tmp)
        rows = [
            ("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
            ("skylake --help", [*skylake, "--help"]),
            ("skylake status LAKE (12 frames)", [*skylake, "status", str(lake)]),
            (
                "skylake ingest LAKE FRAMES (12 frames, no-op)",
                [*skylake, "ingest", str(lake), str(frames), "--pipeline", "demo", "--no-progress"],
            ),
            ("skylake refresh LAKE (up to date)", [*skylake, "refresh", str(lake)]),
        ]
        results = {}
        print(f"start-up times, median of {args.runs} runs (wall, each a new process):")
        for name, cmd in rows:
            median, times = _time(cmd, args.runs, tmp)
            results[name] = median
            base = results[rows[0][0]]
            print(
                f"  {name:48s} {median:6.2f} s  ({median / base:5.1f}x python)  runs "
                + " ".join(f"{t:.2f}" for t in times)
            )
        print(
            f"start-up: status {results[rows[2][0]]:.2f} s on a 12-frame lake; no-op re-ingest of the 12 demo "
            f"frames {results[rows[3][0]]:.2f} s"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
