"""Difference imaging as the archive grows: one new night's `skylake dia` on a lake of 1, 4 and 16 nights of a field.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/dia_lake.py            # 1, 4 and 16 nights of 4 frames (~1 min)
    .venv/bin/python benchmarks/dia_lake.py --quick    # 1 and 4 nights

The frames are SYNTHETIC (``skylake.synthetic.series.write_series``: one field, 256x256 px, 300 stars, other
noise each night). One lake grows: its first night makes the reference, each night is subtracted as it comes
(`skylake dia` measures the objects, finds the DIA sources and updates the DIA objects), and at 1, 4 and 16 nights
the next night's frames are ingested and their DIA step is timed (wall seconds, one commit for the night, per
frame), with its ratio to the 1-night lake. Flat means the cost of a frame
does not grow with the archive: the step reads the reference, the objects and the DIA tables of only the
partitions its frames touch (the same ones every night: a fixed pointing), whose DIA rows grow with the nights.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
import time
import warnings
from pathlib import Path

FRAMES_PER_NIGHT = 4


def write_night(root: Path, k: int):
    """Night ``k`` of the field: 4 frames, its own noise, one day after night ``k - 1``."""
    from skylake.synthetic.series import write_series

    start = dt.datetime(2026, 4, 10, 22) + dt.timedelta(days=k)
    return write_series(
        root / f"night{k:03d}", n_frames=FRAMES_PER_NIGHT, n_stars=300, shape=(256, 256), n_variables=3,
        transit_depth=0.0, start_utc=start.isoformat(), night_seed=k,
    )  # fmt: skip


def timed_night(lake, root: Path, k: int) -> float:
    """Ingest night ``k`` and time its DIA step; seconds per frame."""
    from skylake.dia.stage import run_dia
    from skylake.lake.frames import FrameSelection
    from skylake.pipeline import ingest

    truth = write_night(root, k)
    ingest(lake, [str(p) for p in truth.paths], truth.profile_path, progress=False)
    frames = lake.read_frames(columns=["frame_id", "night", "mjd"]).to_pandas()
    night = frames.loc[frames["mjd"].sub(truth.frames["mjd"].iloc[0]).abs().idxmin(), "night"]
    t = time.perf_counter()
    report = run_dia(lake, FrameSelection(night=night))
    seconds = time.perf_counter() - t
    assert report.done == FRAMES_PER_NIGHT, report.outcome()
    return seconds / FRAMES_PER_NIGHT


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 4 nights only")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")  # the synthetic nights' dates and airmasses: not what is measured
    from skylake.dia.references import build_references
    from skylake.dia.stage import run_dia
    from skylake.lake import Lake
    from skylake.objects.build import build_objects
    from skylake.pipeline import ingest

    sizes = (1, 4) if args.quick else (1, 4, 16)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lake = Lake.init(root / "lake")
        first = write_night(root, 0)
        ingest(lake, [str(p) for p in first.paths], first.profile_path, progress=False)
        build_objects(lake)
        build_references(lake, min_frames=3, max_frames=4)
        run_dia(lake)
        nights, results = 1, {}
        for size in sizes:
            while nights < size:  # the archive grows night by night, each subtracted as it comes
                truth = write_night(root, nights)
                ingest(lake, [str(p) for p in truth.paths], truth.profile_path, progress=False)
                run_dia(lake)
                nights += 1
            results[size] = timed_night(lake, root, nights)
            nights += 1
            print(f"{size:3d} nights in the lake: the next night's DIA step {results[size]:.2f} s a frame "
                  f"({results[size] / results[sizes[0]]:.2f}x the 1-night lake)", flush=True)  # fmt: skip
    growth = results[sizes[-1]] / results[sizes[0]]
    print(f"cost of a frame from {sizes[0]} to {sizes[-1]} nights: {growth:.2f}x (flat = 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
