"""``skylake demo``: the main job end to end on a fresh machine, on embedded defaults.

It generates a realistic SYNTHETIC night (skylake.synthetic: stars at known positions and fluxes,
Gaussian PSF, sky, noise, a TAN WCS, a colour term, extinction, a cloud passing mid-night, a few
variable stars), imports the stars as the night's reference catalogue, ingests the frames into a
local lake with a local dask cluster (which calibrates them against that catalogue), checks
detections, zeropoints, colour term and extinction against the truth it generated, makes the
transparency maps and light curves and checks them too, and ends with the summary database
(SQLite in the lake) and the static HTML report.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from skylake.ingest import dask_client, ingest
from skylake.lake import Lake
from skylake.profile import load_profile
from skylake.status import format_status, lake_status
from skylake.synthetic import write_demo_night, write_reference_catalog

log = logging.getLogger(__name__)

PROFILE = "demo"
COLOR_TERM = 0.1  # mag per unit B-V injected into the synthetic camera
CLOUD_TRACK = (-2.5, 2.5)  # chip widths: the cloud crosses mid-night, the first and last frames are clear
ZP_TOLERANCE = 0.02  # mag: an ok zeropoint further than this from the injected one is a wrong number
CLOUD_TRUTH = 0.02  # mag: frames whose stars lose more than this (median) to cloud must not be ok


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


def check_calibration(lake: Lake, truth) -> dict:
    """Compare the lake's zeropoints with the injected ones (zp_true - k_ext * airmass, the colour term,
    k_ext); frames not ok must be the cloudy ones (median cloud extinction of their stars)."""
    from skylake.calib.store import ZEROPOINTS, EXTINCTION, read_table

    refcat = load_profile(PROFILE).calibration.refcat
    zps = read_table(lake, ZEROPOINTS, refcat=refcat)
    frames = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    cloud = truth.detections.groupby("path")["cloud_mag"].median()
    z = zps.merge(frames, on="frame_id").merge(truth.frames[["path", "zp_eff"]], on="path")
    z["cloud"] = z["path"].map(cloud).to_numpy()
    ok = z[z["zp_status"] == "ok"]
    bad = z[z["zp_status"] != "ok"]
    ext = read_table(lake, EXTINCTION, refcat=refcat)
    ext = ext[ext["ext_status"] == "ok"]
    err = (ok["zp"] - ok["zp_eff"]).abs()
    return {"frames": len(z), "ok": len(ok), "max_zp_error": float(err.max()) if len(ok) else float("nan"),
            "wrong": int((err > ZP_TOLERANCE).sum()),
            "missed_cloud": int((ok["cloud"] > CLOUD_TRUTH).sum()),
            "flagged": {k: int(v) for k, v in bad["zp_status"].value_counts().items()},
            "flagged_cloud": (float(bad["cloud"].min()), float(bad["cloud"].max())) if len(bad) else None,
            "color_term": float(ok["color_term"].median()) if len(ok) else float("nan"),
            "k_ext": float(ext["k_ext"].iloc[-1]) if len(ext) else None,
            "k_ext_err": float(ext["k_ext_err"].iloc[-1]) if len(ext) else None,
            "k_true": float(truth.meta["k_ext"]), "color_term_true": float(truth.meta["color_term"])}


MAP_RMS_TOLERANCE = 0.03  # transparency: rms of (map - injected cloud transmission) over the frame maps' pixels


def make_demo_maps(lake: Lake, truth, out: Path) -> dict:
    """Transparency maps: one per frame and one for the night (nside from the demo profile), committed
    to LAKE/maps; the night's map and the cloudiest frame's are exported (FITS + PNG) to OUT/maps. The
    frame maps are checked pixel by pixel against the injected cloud (skylake.maps.truth)."""
    import pandas as pd

    from skylake.maps import make_maps
    from skylake.maps.export import export_maps
    from skylake.maps.store import read_index
    from skylake.maps.truth import sky_vs_truth, transparency_vs_truth

    frames, _, _, _ = make_maps(lake, per_frame=True, frames_of=("equatorial",))
    night, night_index, _, _ = make_maps(lake, frames_of=("equatorial",))
    tv = transparency_vs_truth(lake, frames, truth)
    sv = sky_vs_truth(lake, frames, truth)
    if tv.empty:
        return {"maps": 0}
    worst = frames.index.set_index("map_id").loc[tv.loc[tv["transparency"].idxmin(), "map_id"]]
    pick = read_index(lake).set_index("map_id").loc[[worst.name, *night_index["map_id"]]].reset_index()
    pixels = pd.concat([frames.pixels[frames.pixels["map_id"] == worst.name], night.pixels])
    paths = export_maps(pixels, pick, out / "maps", pngs=("transparency",))
    err = tv["transparency"] - tv["truth"]
    cloudy = tv[tv["model"] < 0.8]
    return {"maps": len(frames.index) + len(night_index), "pixels": len(tv), "rms": float(np.sqrt(np.mean(err**2))),
            "max": float(np.abs(err).max()), "cloudy_pixels": len(cloudy),
            "min_transparency": float(tv["transparency"].min()), "worst_frame": int(worst["frame_id"]),
            "sky_max_error": float((sv["sky_mag"] - sv["truth"]).abs().max()), "paths": [str(p) for p in paths]}


def _import_reference(lake: Lake, truth, out: Path, client) -> None:
    """Import the truth stars as the demo profile's reference catalogue (once: the night is deterministic)."""
    from skylake.refcat import import_refcat, list_refcats

    name = load_profile(PROFILE).calibration.refcat
    if any(r["name"] == name for r in list_refcats(lake)):
        print(f"    refcat {name} is already in the lake")
        return
    data, columns_map = write_reference_catalog(truth.stars, out / "refcat")
    report = import_refcat(lake, name, [data], "generic", columns_map=columns_map, client=client, progress=False)
    print(f"    {report.rows} stars (V, B-V, variables flagged) -> {report.path}")


def run_demo(out: str | Path = "skylake-demo", n_frames: int = 12, workers: int | None = None) -> int:
    """Generate a night into ``OUT/frames``, ingest it into ``OUT/lake``, print what the lake holds."""
    out = Path(out)
    frames_dir = out / "frames"
    print(f"1/6 generating {n_frames} synthetic frames (1024x1024, a cloud passing mid-night, 5 variable stars, "
          f"colour term {COLOR_TERM}) in {frames_dir}")
    truth = write_demo_night(frames_dir, n_frames=n_frames, color_term=COLOR_TERM, cloud_track=CLOUD_TRACK)
    lake = Lake.init(out / "lake")
    with dask_client(workers=workers) as client:
        print("2/6 importing the night's SYNTHETIC reference catalogue")
        _import_reference(lake, truth, out, client)
        print(f"3/6 ingesting into {lake.url} on a local dask cluster, then calibrating")
        report = ingest(lake, [str(frames_dir)], PROFILE, client=client)
    print(f"    {report.ingested} frames ingested, {report.sources} sources, {len(report.rejected)} rejected, "
          f"{report.skipped} already in the lake")
    for calibration in report.calibration:
        print("    " + str(calibration).replace("\n", "\n    "))
    print("4/6 what the lake holds")
    status = lake_status(lake)
    print(format_status(status))
    check = check_against_truth(lake, truth)
    print(f"    truth check: {check['recovered']} of {check['bright_stars']} bright unsaturated star images "
          f"recovered, median offset {check['median_offset_px']:.3f} px, median flux ratio "
          f"{check['median_flux_ratio']:.3f}")
    cal = check_calibration(lake, truth)
    k = f"{cal['k_ext']:.3f} +- {cal['k_ext_err']:.3f}" if cal["k_ext"] is not None else "not fitted"
    print(f"    calibration check: {cal['ok']} of {cal['frames']} frames ok, their zeropoints within "
          f"{cal['max_zp_error']:.4f} mag of the injected ones ({cal['wrong']} off by > {ZP_TOLERANCE}); colour term "
          f"{cal['color_term']:.3f} (injected {cal['color_term_true']}); extinction {k} mag/airmass (injected "
          f"{cal['k_true']})")
    if cal["flagged"]:
        lo, hi = cal["flagged_cloud"]
        print(f"    frames flagged {cal['flagged']}: the cloud took {lo:.2f}-{hi:.2f} mag (median) from their stars; "
              f"{cal['missed_cloud']} cloudy frames passed as ok")
    maps = make_demo_maps(lake, truth, out)
    if maps["maps"]:
        print(f"    maps check: {maps['maps']} transparency maps in {lake.path('maps')}; over {maps['pixels']} frame-map "
              f"pixels the transparency is within {maps['rms']:.3f} rms (max {maps['max']:.3f}) of the injected cloud "
              f"({maps['cloudy_pixels']} pixels under it), lowest {maps['min_transparency']:.2f} on frame "
              f"{maps['worst_frame']}; sky brightness within {maps['sky_max_error']:.3f} mag/arcsec2 of the injected "
              f"sky; FITS + PNG in {Path(maps['paths'][0]).parent}")
    print("5/6 light curves: detections associated into objects (LAKE/objects)")
    from skylake.objects.build import build_objects
    from skylake.objects.truth import check_variables

    print("    " + str(build_objects(lake)))
    lcs = check_variables(lake, truth.stars, cal["ok"], out / "lightcurves")
    print(f"    light-curve check: {lcs['found']} of {lcs['variables']} variables found; their ranks among the "
          f"{lcs['ranked']} objects with >= {max(3, cal['ok'] // 2)} points by chi2/dof {lcs['ranks_chi2']} and by "
          f"Stetson J {lcs['ranks_stetson_j']} (top {lcs['top']:.0f}: {'ok' if lcs['stand_out'] else 'NOT' if lcs['rankable'] else 'too few calibrated frames to rank'}); clipped amplitude / injected "
          f"{', '.join(f'{r:.2f}' for r in lcs['amplitude_ratio'])}; CSV + PNG in {out / 'lightcurves'}")
    print("6/6 the summary database (SQLite inside the lake) and the HTML report")
    from skylake.db import refresh
    from skylake.report import build_report

    summary = refresh(lake)
    print(f"    {summary}")
    site = build_report(lake, out / "report", refresh_first=False)
    print(f"    {site}; open {site.index.resolve().as_uri()}")
    v = truth.stars[truth.stars["is_variable"]].iloc[0]
    print(f"\nlight curves:\n  skylake lightcurve {lake.url} --ra {v['ra']:.5f} --dec {v['dec']:.5f} --plot lc.png")
    print(f"\nquery it:\n  python -c \"import lsdb; print(lsdb.open_catalog('{lake.path('sources')}').compute())\"\n"
          f"  duckdb -c \"SELECT count(*) FROM read_parquet('{lake.path('sources')}/dataset/*/*/*/*.parquet', "
          "hive_partitioning=true)\"")
    ok = (status["frames_by_status"].get("ok", 0) >= n_frames and check["recovered"] >= 0.95 * check["bright_stars"]
          and cal["ok"] > 0 and cal["wrong"] == 0 and cal["missed_cloud"] == 0 and (lcs["stand_out"] or not lcs["rankable"])
          and maps["maps"] > 0 and maps["rms"] < MAP_RMS_TOLERANCE and maps["cloudy_pixels"] > 0
          and summary.to_version == lake.log.published_version() and len(site.pages) > 0)
    return 0 if ok else 1
