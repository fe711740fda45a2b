"""Ingest on object storage: the same frames ingested into a lake on ``s3://`` (moto's S3 server on this machine,
started here) and into a lake on the local disk, per frame, in the same run.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/s3.py [--runs N] [--batch-size B]

The 14 real SkyCamZ frames (``../shared/data/skycamz``) are ingested ``--runs`` times into a fresh lake of each
kind, in this process (dask's synchronous scheduler: what the store costs is not hidden behind parallel workers),
``--batch-size`` frames per commit. Printed: medians of the seconds per frame, their ratio (S3 / local disk), and
the commits' count. The S3 server keeps its objects in memory and answers over HTTP on 127.0.0.1: the ratio is
the cost of the protocol (requests, copies at publish, the lease), not of a network.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

FRAMES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skycamz"


def _ingest(url: str, paths: list[str], batch_size: int) -> tuple[float, int]:
    from skylake.lake import Lake
    from skylake.pipeline import ingest
    from skylake.runtime import dask_client

    lake = Lake.init(url)
    t0 = time.perf_counter()
    with dask_client("synchronous") as client:
        report = ingest(lake, paths, "skycamz", client=client, progress=False, batch_size=batch_size, calibrate=False)
    seconds = time.perf_counter() - t0
    assert report.ingested == len(paths), report.rejected
    return seconds / len(paths), Lake.open(url).log.latest_version()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians)")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per commit (default 4)")
    args = parser.parse_args(argv)
    paths = sorted(str(p) for p in FRAMES.glob("*.fits"))
    if not paths:
        print(f"no frames in {FRAMES} (the shared data is not beside the repo)", file=sys.stderr)
        return 2

    from skylake.testing.s3 import s3_server

    local, remote = [], []
    with s3_server(bucket="bench"), tempfile.TemporaryDirectory() as tmp:
        _ingest(f"{tmp}/warm", paths[:1], 1)  # imports and first-call costs, outside the timings
        for run in range(args.runs):
            t_local, commits = _ingest(f"{tmp}/lake{run}", paths, args.batch_size)
            t_s3, commits_s3 = _ingest(f"s3://bench/{uuid.uuid4().hex}", paths, args.batch_size)
            local.append(t_local)
            remote.append(t_s3)
            print(f"run {run + 1}: local {t_local:.3f} s/frame, s3 {t_s3:.3f} s/frame ({commits}/{commits_s3} commits)")
    m_local, m_s3 = statistics.median(local), statistics.median(remote)
    print(f"\n{len(paths)} SkyCamZ frames, {args.batch_size} per commit, medians of {args.runs}:")
    print(f"  local disk        {m_local:7.3f} s/frame   1.00x")
    print(f"  s3:// (moto)      {m_s3:7.3f} s/frame   {m_s3 / m_local:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
