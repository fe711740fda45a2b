"""Reference-catalogue import benchmark: throughput and peak memory of ``skylake refcat import`` on a
large SYNTHETIC APASS-format (VizieR II/336 columns) catalogue.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/refcat.py                 # 10^7 rows, 3 runs (~2 min on 2 cores)
    .venv/bin/python benchmarks/refcat.py --quick         # 200 000 rows, a smoke run
    .venv/bin/python benchmarks/refcat.py --rows 3000000 --workers 2 --keep /tmp/refcat-bench

What happens:

1. ``skylake.synthetic.refcat.write_synthetic`` writes ``--rows`` rows in 10^6-row chunks to one
   Parquet file in a temporary directory (timed separately; not part of the import).
2. skylake's own local cluster (``skylake.runtime.dask_client``, what ``skylake refcat import`` starts:
   ``--workers`` single-threaded processes) starts, untimed.
3. ``import_refcat`` runs on that file: check the header, stream-normalise it into shards sorted by
   ``_healpix_29``, partition them (one task per partition writes it and its margin), import record,
   swap into place. Its wall time gives the rows per second; its steps are timed too.
4. The baseline, after each import: one pyarrow pass over the same file in this process (read every
   row group, compute ``_healpix_29``, write one zstd-3 file), the least work any import must do. The
   medians of ``--runs`` imports and baselines give the ratio, whose goal is ``GOAL_RATIO`` (2x).

Memory: a thread samples, every 0.1 s, the resident set size (RSS) of this process and of all its
child processes (the dask worker processes) with psutil; the peak of that **sum** is the figure
that must stay under 4 GB (``GOAL_PEAK_GB``). Peaks per process are printed as well. The synthetic
file and the lake are removed at the end unless ``--keep DIR`` is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import psutil

GOAL_PEAK_GB = 4.0
GOAL_RATIO = 2.0  # the import's wall time against one pyarrow pass over the file


class MemorySampler:
    """Peak RSS of this process plus its children (the dask workers), sampled in a thread."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak_total = 0
        self.peak_self = 0
        self.peak_children = 0
        self.peak_per_pid: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = children_total = 0
            try:
                own = me.memory_info().rss
                total += own
                self.peak_self = max(self.peak_self, own)
                for child in me.children(recursive=True):
                    try:
                        rss = child.memory_info().rss
                    except psutil.Error:
                        continue
                    total += rss
                    children_total += rss
                    self.peak_per_pid[child.pid] = max(self.peak_per_pid.get(child.pid, 0), rss)
            except psutil.Error:
                pass
            self.peak_total = max(self.peak_total, total)
            self.peak_children = max(self.peak_children, children_total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bare_pass(src: Path, out: Path) -> float:
    """The baseline: one streaming pass in this process that reads every row group with pyarrow,
    computes the HATS spatial index of (RAJ2000, DEJ2000) and writes the rows plus the index to one
    zstd-3 Parquet file. No normalising, partitioning, sorting or margin: the least work any import
    of this file must do. Returns its wall time in seconds."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from hats.pixel_math.spatial_index import compute_spatial_index

    t = time.monotonic()
    reader = pq.ParquetFile(src)
    writer = None
    for i in range(reader.num_row_groups):
        table = reader.read_row_group(i)
        ra = table.column("RAJ2000").to_numpy(zero_copy_only=False)
        dec = table.column("DEJ2000").to_numpy(zero_copy_only=False)
        good = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
        table = table.filter(pa.array(good))
        index = compute_spatial_index(ra[good], dec[good])
        table = table.append_column("_healpix_29", pa.array(np.asarray(index, dtype=np.int64)))
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema, compression="zstd", compression_level=3)
        writer.write_table(table)
    writer.close()
    return time.monotonic() - t


def gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of the synthetic catalogue (default 10^7)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 000 rows")
    ap.add_argument("--workers", type=int, default=2, help="dask worker processes (default 2)")
    ap.add_argument("--keep", default=None, metavar="DIR", help="work in DIR and keep the file and the lake")
    ap.add_argument("--progress", action="store_true", help="show the import's progress bars")
    ap.add_argument("--runs", type=int, default=3, help="imports (each with its baseline pass) to take medians of")
    args = ap.parse_args()
    rows = 200_000 if args.quick else args.rows
    warnings.simplefilter("ignore")

    from skylake.lake import Lake
    from skylake.refcat import import_refcat
    from skylake.runtime import dask_client
    from skylake.synthetic.refcat import write_synthetic

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="skylake-refcat-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(
            f"skylake refcat import benchmark: {rows:,} SYNTHETIC APASS (VizieR II/336) rows, "
            f"{args.workers} workers, {os.cpu_count()} cores, python {sys.version.split()[0]}",
            flush=True,
        )
        src = work / f"apass_synthetic_{rows}.parquet"
        t = time.monotonic()
        if not src.exists():
            write_synthetic(src, "apass", rows=rows, seed=0, chunk_rows=1_000_000)
        print(f"  wrote {src.name}: {src.stat().st_size / 1e6:.0f} MB in {time.monotonic() - t:.1f} s", flush=True)

        lake_dir = work / "lake"
        imports, bases, peaks = [], [], []
        for run in range(args.runs):
            shutil.rmtree(lake_dir, ignore_errors=True)
            lake = Lake.init(lake_dir)
            # a new cluster: the workers' imports count
            with MemorySampler() as mem, dask_client(None, args.workers) as client:
                idle = mem.peak_total
                t = time.monotonic()
                report = import_refcat(lake, "apass", [src], "apass", client=client, progress=args.progress)
                seconds = time.monotonic() - t
            base = bare_pass(src, work / "bare.parquet")
            imports.append(seconds)
            bases.append(base)
            peaks.append(mem.peak_total)
            if run == 0:
                print(report)
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
            workers = sorted(mem.peak_per_pid.values(), reverse=True)
            print(
                f"  run {run + 1}: import {seconds:.1f} s ({steps}); baseline {base:.1f} s; "
                f"ratio {seconds / base:.2f}; peak RSS {gb(mem.peak_total)} (this process {gb(mem.peak_self)}, "
                f"largest child {gb(workers[0]) if workers else 'n/a'}; {gb(idle)} before the import)",
                flush=True,
            )
        seconds, base = statistics.median(imports), statistics.median(bases)
        print(
            f"  import (median of {args.runs}): {seconds:.1f} s wall = {rows / seconds:,.0f} rows/s; "
            f"peak RSS {gb(max(peaks))} at most (process and workers together)"
        )
        print(
            f"  baseline (one pyarrow pass: read, HEALPix index, write one file; 1 process; median): {base:.1f} s = "
            f"{rows / base:,.0f} rows/s; skylake import / baseline = {seconds / base:.2f} (goal <= {GOAL_RATIO:g})"
        )
        ok = max(peaks) < GOAL_PEAK_GB * 1e9 and report.rows == rows
        print(
            f"  goal: peak < {GOAL_PEAK_GB:g} GB and every row imported -> {'PASS' if ok else 'FAIL'}; "
            f"import <= {GOAL_RATIO:g}x the baseline -> {'PASS' if seconds <= GOAL_RATIO * base else 'not met'}"
        )
        size = sum(f.stat().st_size for f in (lake_dir / "refcats" / "apass").rglob("*") if f.is_file())
        print(
            f"  catalogue on disk: {size / 1e6:.0f} MB, {report.partitions} partitions, "
            f"margin {report.margin_rows:,} rows",
            flush=True,
        )
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # dask's worker processes need the guard
    sys.exit(main())
