"""``skylake demo``: the main job end to end on a fresh machine, on embedded defaults.

It generates a realistic SYNTHETIC night (skylake.synthetic: stars at known positions and fluxes,
Gaussian PSF, sky, noise, a TAN WCS, a passing cloud, a few variable stars), ingests it into a local
lake with a local dask cluster, and checks what came out against the truth it generated.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from skylake.ingest import dask_client, ingest
from skylake.lake import Lake
from skylake.status import format_status, lake_status
from skylake.synthetic import write_demo_night

log = logging.getLogger(__name__)


def check_against_truth(lake: Lake, truth) -> dict:
    """Match each frame's detections to the injected stars; report completeness and offsets."""
    frames = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    sources = lake.read_sources(columns=["frame_id", "x", "y", "flux_auto"]).to_pandas()
    det = truth.detections
    bright = det[(det["flux_adu"] > 2e4) & ~det["saturated"]]
    found, offsets, ratios = 0, [], []
    for frame_id, path in zip(frames["frame_id"], frames["path"]):
        mine = sources[sources["frame_id"] == frame_id]
        stars = bright[bright["path"] == path]
        if mine.empty or stars.empty:
            continue
        dist, idx = cKDTree(mine[["x", "y"]].to_numpy()).query(stars[["x", "y"]].to_numpy(), distance_upper_bound=1.5)
        ok = np.isfinite(dist)
        found += int(ok.sum())
        offsets += list(dist[ok])
        ratios += list(mine["flux_auto"].to_numpy()[idx[ok]] / stars["flux_adu"].to_numpy()[ok])
    return {"bright_stars": len(bright), "recovered": found,
            "median_offset_px": float(np.median(offsets)) if offsets else float("nan"),
            "median_flux_ratio": float(np.median(ratios)) if ratios else float("nan")}


def run_demo(out: str | Path = "skylake-demo", n_frames: int = 12, workers: int | None = None) -> int:
    """Generate a night into ``OUT/frames``, ingest it into ``OUT/lake``, print what the lake holds."""
    out = Path(out)
    frames_dir = out / "frames"
    print(f"1/3 generating {n_frames} synthetic frames (1024x1024, a passing cloud, 5 variable stars) in {frames_dir}")
    truth = write_demo_night(frames_dir, n_frames=n_frames)
    lake = Lake.init(out / "lake")
    print(f"2/3 ingesting into {lake.url} on a local dask cluster")
    with dask_client(workers=workers) as client:
        report = ingest(lake, [str(frames_dir)], "demo", client=client)
    print(f"    {report.ingested} frames ingested, {report.sources} sources, {len(report.rejected)} rejected, "
          f"{report.skipped} already in the lake")
    print("3/3 what the lake holds")
    status = lake_status(lake)
    print(format_status(status))
    check = check_against_truth(lake, truth)
    print(f"    truth check: {check['recovered']} of {check['bright_stars']} bright unsaturated star images "
          f"recovered, median offset {check['median_offset_px']:.3f} px, median flux ratio "
          f"{check['median_flux_ratio']:.3f}")
    print(f"\nquery it:\n  python -c \"import lsdb; print(lsdb.open_catalog('{lake.path('sources')}').compute())\"\n"
          f"  duckdb -c \"SELECT count(*) FROM read_parquet('{lake.path('sources')}/dataset/*/*/*/*.parquet', "
          "hive_partitioning=true)\"")
    ok = status["frames_by_status"].get("ok", 0) >= n_frames and check["recovered"] >= 0.95 * check["bright_stars"]
    return 0 if ok else 1
