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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from skylake.calib.model import ExtStatus, ZpStatus
from skylake.lake import Lake
from skylake.lake.tables import MAPS, SOURCES
from skylake.pipeline import ingest
from skylake.profile import load_profile
from skylake.runtime import dask_client
from skylake.status import format_status, lake_status
from skylake.synthetic import write_demo_night, write_reference_catalog

__all__ = [
    "PROFILE",
    "COLOR_TERM",
    "CLOUD_TRACK",
    "ZP_TOLERANCE",
    "CLOUD_TRUTH",
    "check_against_truth",
    "check_calibration",
    "MAP_RMS_TOLERANCE",
    "CHI2_RANGE",
    "make_demo_maps",
    "Check",
    "verdict",
    "finish",
    "run_demo",
]


log = logging.getLogger(__name__)

PROFILE = "demo"
COLOR_TERM = 0.1  # mag per unit B-V injected into the synthetic camera
CLOUD_TRACK = (-2.5, 2.5)  # chip widths: the cloud crosses mid-night, the first and last frames are clear
ZP_TOLERANCE = 0.02  # mag: an ok zeropoint further than this from the injected one is a wrong number
CLOUD_TRUTH = 0.02  # mag: frames whose stars lose more than this (median) to cloud must not be ok


def _clearly_unsaturated(stars, saturated, meta) -> np.ndarray:
    """Stars whose noiseless peak is under 95 % of the level with no saturated star within 4 FWHM."""
    clear = stars["peak_adu"].to_numpy() < 0.95 * meta["saturation_adu"]
    if len(saturated):
        dist, _ = cKDTree(saturated[["x", "y"]].to_numpy()).query(stars[["x", "y"]].to_numpy())
        clear &= dist > 4 * meta["fwhm_px"]
    return clear


def check_against_truth(lake: Lake, truth) -> dict:
    """Match each frame's detections to the injected stars; report completeness and offsets.

    Bright stars are the injected unsaturated star images above 2e4 ADU, matched within 1.5 px; the
    saturated ones, matched within 3 px, must carry the SATURATED flag, and clearly unsaturated bright ones
    must not.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The demo's lake, its frames ingested.
    truth : skylake.synthetic.night.DemoTruth
        What the synthetic night injected.

    Returns
    -------
    dict
        ``bright_stars``, ``recovered`` (bright star images detected), ``saturated_stars``,
        ``saturated_flagged``, ``saturated_bright_flagged`` (clearly unsaturated star images flagged),
        ``median_offset_px`` and ``median_flux_ratio`` (detected ``flux_auto`` / injected flux; NaN when
        nothing matched).
    """
    from skylake.frame.extract import SATURATED

    frames = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    sources = lake.read_sources(columns=["frame_id", "x", "y", "flux_auto", "flags"]).to_pandas()
    det = truth.detections
    bright = det[(det["flux_adu"] > 2e4) & ~det["saturated"]]
    found, offsets, ratios = 0, [], []
    saturated = {"stars": 0, "flagged": 0, "bright_flagged": 0}
    for frame_id, path in zip(frames["frame_id"], frames["path"]):
        mine = sources[sources["frame_id"] == frame_id]
        stars = bright[bright["path"] == path]
        if mine.empty or stars.empty:
            continue
        tree = cKDTree(mine[["x", "y"]].to_numpy())
        flagged = (mine["flags"].to_numpy() & SATURATED) != 0
        dist, idx = tree.query(stars[["x", "y"]].to_numpy(), distance_upper_bound=1.5)
        ok = np.isfinite(dist)
        found += int(ok.sum())
        offsets += list(dist[ok])
        ratios += list(mine["flux_auto"].to_numpy()[idx[ok]] / stars["flux_adu"].to_numpy()[ok])
        # A false flag is one on a star clearly below the level: photon noise takes a peak within 5% of it
        # over, and a blend's segment may own its saturated neighbour's pixels.
        clear = _clearly_unsaturated(stars, det[(det["path"] == path) & det["saturated"]], truth.meta)
        saturated["bright_flagged"] += int(flagged[idx[ok & clear]].sum())
        sat = det[(det["path"] == path) & det["saturated"]]
        if len(sat):  # every injected star whose peak reached SATURATE must carry the flag
            dist, idx = tree.query(sat[["x", "y"]].to_numpy(), distance_upper_bound=3.0)
            hit = np.isfinite(dist)
            saturated["stars"] += len(sat)
            saturated["flagged"] += int(flagged[idx[hit]].sum())
    return {
        "bright_stars": len(bright),
        "recovered": found,
        **{f"saturated_{k}": v for k, v in saturated.items()},
        "median_offset_px": float(np.median(offsets)) if offsets else float("nan"),
        "median_flux_ratio": float(np.median(ratios)) if ratios else float("nan"),
    }


def _commands() -> tuple[str, str]:
    """How to call this environment's Python and skylake from where the demo was run: the README's first
    command installs into .venv without activating it, so a bare ``python``/``skylake`` may be another one."""
    import os
    import shutil
    import sys

    python = sys.executable
    skylake = os.path.join(os.path.dirname(python), "skylake")
    if not os.path.exists(skylake):
        skylake = shutil.which("skylake") or f"{python} -m skylake.cli"
    rel = [os.path.relpath(p) if not os.path.relpath(p).startswith("..") else p for p in (python, skylake)]
    return tuple(p if "/" not in p or p.startswith(("/", ".")) else f"./{p}" for p in rel)


def check_calibration(lake: Lake, truth) -> dict:
    """Compare the lake's zeropoints with the injected ones (zp_true - k_ext * airmass, the colour term, k_ext).

    Frames not ok must be the cloudy ones (median cloud extinction of their stars).

    Parameters
    ----------
    lake : skylake.lake.Lake
        The demo's lake, its frames calibrated against the demo profile's reference catalogue.
    truth : skylake.synthetic.night.DemoTruth
        What the synthetic night injected.

    Returns
    -------
    dict
        ``frames``, ``ok`` (frames with an ok zeropoint), ``max_zp_error``, ``wrong`` (ok zeropoints off by
        more than :data:`ZP_TOLERANCE`), ``missed_cloud`` (ok frames losing more than :data:`CLOUD_TRUTH`
        to the cloud), ``flagged`` (frames not ok, by status), ``flagged_cloud`` (their least and most
        cloud, or None), ``color_term``, ``k_ext`` and ``k_ext_err`` (the last ok extinction fit, or None),
        ``k_true`` and ``color_term_true``.
    """
    from skylake.calib.store import EXTINCTION, ZEROPOINTS, read_table

    refcat = load_profile(PROFILE).calibration.refcat
    zps = read_table(lake, ZEROPOINTS, refcat=refcat)
    frames = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    cloud = truth.detections.groupby("path")["cloud_mag"].median()
    z = zps.merge(frames, on="frame_id").merge(truth.frames[["path", "zp_eff"]], on="path")
    z["cloud"] = z["path"].map(cloud).to_numpy()
    ok = z[z["zp_status"] == ZpStatus.OK]
    bad = z[z["zp_status"] != ZpStatus.OK]
    ext = read_table(lake, EXTINCTION, refcat=refcat)
    ext = ext[ext["ext_status"] == ExtStatus.OK]
    err = (ok["zp"] - ok["zp_eff"]).abs()
    return {
        "frames": len(z),
        "ok": len(ok),
        "max_zp_error": float(err.max()) if len(ok) else float("nan"),
        "wrong": int((err > ZP_TOLERANCE).sum()),
        "missed_cloud": int((ok["cloud"] > CLOUD_TRUTH).sum()),
        "flagged": {k: int(v) for k, v in bad["zp_status"].value_counts().items()},
        "flagged_cloud": (float(bad["cloud"].min()), float(bad["cloud"].max())) if len(bad) else None,
        "color_term": float(ok["color_term"].median()) if len(ok) else float("nan"),
        "k_ext": float(ext["k_ext"].iloc[-1]) if len(ext) else None,
        "k_ext_err": float(ext["k_ext_err"].iloc[-1]) if len(ext) else None,
        "k_true": float(truth.meta["k_ext"]),
        "color_term_true": float(truth.meta["color_term"]),
    }


MAP_RMS_TOLERANCE = 0.03  # transparency: rms of (map - injected cloud transmission) over the frame maps' pixels
#: The constant stars' median chi2/dof in every magnitude bin must lie here: errors that are honest (the noise model).
CHI2_RANGE = (0.8, 1.25)


def make_demo_maps(lake: Lake, truth, out: Path) -> dict:
    """Make the transparency maps: one per frame and one for the night (nside from the demo profile).

    They are committed to LAKE/maps; the night's map and the cloudiest frame's are exported (FITS + PNG)
    to OUT/maps. The frame maps are checked pixel by pixel against the injected cloud
    (skylake.maps.truth).

    Parameters
    ----------
    lake : skylake.lake.Lake
        The demo's lake, its frames calibrated.
    truth : skylake.synthetic.night.DemoTruth
        What the synthetic night injected.
    out : pathlib.Path
        The demo's directory (OUT).

    Returns
    -------
    dict
        ``maps`` (the number of maps made; 0 and nothing else when no frame map could be compared),
        ``pixels`` (frame-map pixels compared), ``rms`` and ``max`` (of the transparency's error),
        ``cloudy_pixels`` (modelled transmission under 0.8), ``min_transparency``, ``worst_frame`` (its frame
        id), ``sky_max_error`` (mag/arcsec2) and ``paths`` (the exported files).
    """
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
    paths = export_maps(pixels, pick, out / MAPS, pngs=("transparency",))
    err = tv["transparency"] - tv["truth"]
    cloudy = tv[tv["model"] < 0.8]
    return {
        "maps": len(frames.index) + len(night_index),
        "pixels": len(tv),
        "rms": float(np.sqrt(np.mean(err**2))),
        "max": float(np.abs(err).max()),
        "cloudy_pixels": len(cloudy),
        "min_transparency": float(tv["transparency"].min()),
        "worst_frame": int(worst["frame_id"]),
        "sky_max_error": float((sv["sky_mag"] - sv["truth"]).abs().max()),
        "paths": [str(p) for p in paths],
    }


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


@dataclass
class Check:
    """One comparison of the demo's result with the truth it injected.

    Its string is ``<name> <measured> vs <expected>``.

    Attributes
    ----------
    name : str
        What is compared.
    measured : object
        The demo's value (a float is shown with 4 significant digits).
    expected : str
        What was expected, as shown.
    ok : bool
        Whether the check passed.
    """

    name: str
    measured: object
    expected: str
    ok: bool

    def __str__(self) -> str:
        value = f"{self.measured:.4g}" if isinstance(self.measured, float) else str(self.measured)
        return f"{self.name} {value} vs {self.expected}"


def verdict(checks: list[Check]) -> tuple[int, str]:
    """The exit code and the last line of the demo.

    Parameters
    ----------
    checks : list of Check
        The demo's checks.

    Returns
    -------
    code : int
        0 when every check passed, else 1.
    line : str
        ``demo: PASS``, or ``demo: FAIL: <check> <measured> vs <expected>`` naming the first failed check.
    """
    failed = [c for c in checks if not c.ok]
    return (0, "demo: PASS") if not failed else (1, f"demo: FAIL: {failed[0]}")


def finish(checks: list[Check]) -> int:
    """Print each failed check, then the :func:`verdict` line; return its exit code.

    Parameters
    ----------
    checks : list of Check
        The demo's checks.

    Returns
    -------
    int
        0 when every check passed, else 1.
    """
    code, line = verdict(checks)
    for c in checks:
        if not c.ok:
            print(f"    check failed: {c}")
    print(line)
    return code


def run_demo(out: str | Path = "skylake-demo", n_frames: int = 12, workers: int | None = None) -> int:
    """Run the demo: generate a night, ingest it, check every product against the injected truth.

    The night goes into ``OUT/frames``, the lake into ``OUT/lake``; the last line printed is
    ``demo: PASS`` (exit code 0) or ``demo: FAIL: ...`` (1).

    Kept long: the demo's six steps in the order it prints them, a script a newcomer reads beside its output.

    Parameters
    ----------
    out : str or pathlib.Path
        The demo's directory (OUT), for the frames, the lake, the maps, the light curves and the report.
    n_frames : int
        Frames in the synthetic night.
    workers : int or None
        Workers of the local dask cluster (None: one per core).

    Returns
    -------
    int
        The exit code: 0 when every check passed, else 1.
    """
    # absolute from here on: the truth tables and the lake's frames must name files the same way
    out = Path(out).expanduser().resolve()
    frames_dir = out / "frames"  # not a table
    print(
        f"1/6 generating {n_frames} synthetic frames (1024x1024, a cloud passing mid-night, 5 variable stars, "
        f"colour term {COLOR_TERM}) in {frames_dir}"
    )
    truth = write_demo_night(frames_dir, n_frames=n_frames, color_term=COLOR_TERM, cloud_track=CLOUD_TRACK)
    lake = Lake.init(out / "lake")
    with dask_client(workers=workers) as client:
        print("2/6 importing the night's SYNTHETIC reference catalogue")
        _import_reference(lake, truth, out, client)
        print(f"3/6 ingesting into {lake.url} on a local dask cluster, then calibrating")
        report = ingest(lake, [str(frames_dir)], PROFILE, client=client)
    print(
        f"    {report.ingested} frames ingested, {report.sources} sources, {len(report.rejected)} rejected, "
        f"{report.skipped} already in the lake"
    )
    for stage in report.downstream:
        print("    " + str(stage).replace("\n", "\n    "))
    print("4/6 what the lake holds")
    status = lake_status(lake)
    print(format_status(status))
    check = check_against_truth(lake, truth)
    print(
        f"    truth check: {check['recovered']} of {check['bright_stars']} bright unsaturated star images "
        f"recovered, median offset {check['median_offset_px']:.3f} px, median flux ratio "
        f"{check['median_flux_ratio']:.3f}; {check['saturated_flagged']} of {check['saturated_stars']} saturated star "
        f"images flagged SATURATED ({check['saturated_bright_flagged']} of the clearly unsaturated ones)"
    )
    cal = check_calibration(lake, truth)
    k = f"{cal['k_ext']:.3f} +- {cal['k_ext_err']:.3f}" if cal["k_ext"] is not None else "not fitted"
    print(
        f"    calibration check: {cal['ok']} of {cal['frames']} frames ok, their zeropoints within "
        f"{cal['max_zp_error']:.4f} mag of the injected ones ({cal['wrong']} off by > {ZP_TOLERANCE}); colour term "
        f"{cal['color_term']:.3f} (injected {cal['color_term_true']}); extinction {k} mag/airmass (injected "
        f"{cal['k_true']})"
    )
    if cal["flagged"]:
        lo, hi = cal["flagged_cloud"]
        print(
            f"    frames flagged {cal['flagged']}: the cloud took {lo:.2f}-{hi:.2f} mag (median) from their stars; "
            f"{cal['missed_cloud']} cloudy frames passed as ok"
        )
    maps = make_demo_maps(lake, truth, out)
    if maps["maps"]:
        print(
            f"    maps check: {maps['maps']} transparency maps in {lake.path(MAPS)}; over {maps['pixels']} frame-map "
            f"pixels the transparency is within {maps['rms']:.3f} rms (max {maps['max']:.3f}) of the injected cloud "
            f"({maps['cloudy_pixels']} pixels under it), lowest {maps['min_transparency']:.2f} on frame "
            f"{maps['worst_frame']}; sky brightness within {maps['sky_max_error']:.3f} mag/arcsec2 of the injected "
            f"sky; FITS + PNG in {Path(maps['paths'][0]).parent}"
        )
    print("5/6 light curves: detections associated into objects (LAKE/objects, LAKE/lightcurves)")
    from skylake.objects.build import build_objects
    from skylake.objects.truth import check_variables

    print("    " + str(build_objects(lake)))
    lcs = check_variables(lake, truth.stars, cal["ok"], out / "lightcurves")  # not a table
    print(
        f"    light-curve check: {lcs['found']} of {lcs['variables']} variables found; their ranks among the "
        f"{lcs['ranked']} objects with >= {max(3, cal['ok'] // 2)} points by chi2/dof {lcs['ranks_chi2']} and by "
        f"Stetson J {lcs['ranks_stetson_j']} (the best constant star ranks {lcs['first_constant_rank']}); "
        "clipped amplitude / injected "
        f"{', '.join(f'{r:.2f}' for r in lcs['amplitude_ratio'])}; CSV + PNG in {out / 'lightcurves'}"  # not a table
    )
    chi2 = ", ".join(f"{m}: {v:.2f}" for m, v in lcs["chi2_by_mag"].items())
    print(
        f"    noise check: the constant stars' median chi2/dof by magnitude {{{chi2}}} (the night's noise model, "
        f"LAKE/noise); {lcs['variables_flagged']} of {lcs['variables']} variables and {lcs['constant_flagged']} of "
        f"{lcs['constant_ranked']} constant stars flagged variable; the report's most variable objects start with "
        f"the variables: {lcs['report_starts_with_variables']}"
    )
    print("6/6 the summary database (SQLite inside the lake) and the HTML report")
    from skylake.db import refresh
    from skylake.report import build_report

    summary = refresh(lake)
    print(f"    {summary}")
    site = build_report(lake, out / "report", refresh_first=False)
    print(f"    {site}; open {site.index.resolve().as_uri()}")
    v = truth.stars[truth.stars["is_variable"]].iloc[0]
    python, skylake = _commands()
    print(
        f"\nlight curves:\n  {skylake} lightcurve {lake.url} --ra {v['ra']:.5f} --dec {v['dec']:.5f} --plot lc.png\n"
        f"  {skylake} plot noise {lake.url} --out noise.png"
    )
    print(
        f"\nquery it (the Python of this environment has lsdb and DuckDB):\n"
        f"  {python} -c \"import lsdb; print(lsdb.open_catalog('{lake.path(SOURCES)}').compute())\"\n"
        f'  {python} -c "import duckdb; print(duckdb.sql(\\"SELECT count(*) FROM read_parquet('
        f"'{lake.path(SOURCES)}/dataset/*/*/*/*.parquet')\\\"))\""
    )
    bright = check["bright_stars"]
    checks = [
        Check(
            "frames ok",
            status["frames_by_status"].get("ok", 0),
            f">= {n_frames}",
            status["frames_by_status"].get("ok", 0) >= n_frames,
        ),
        Check(
            "bright stars recovered",
            check["recovered"],
            f">= {int(np.ceil(0.95 * bright))} (95 % of {bright})",
            bright > 0 and check["recovered"] >= 0.95 * bright,
        ),
        Check(
            "saturated star images flagged",
            check["saturated_flagged"],
            f"{check['saturated_stars']} (all)",
            check["saturated_stars"] > 0 and check["saturated_flagged"] == check["saturated_stars"],
        ),
        Check(
            "unsaturated bright star images flagged saturated",
            check["saturated_bright_flagged"],
            "0",
            check["saturated_bright_flagged"] == 0,
        ),
        Check("calibrated frames ok", cal["ok"], "> 0", cal["ok"] > 0),
        Check("zeropoints off by more than 0.02 mag", cal["wrong"], "0", cal["ok"] > 0 and cal["wrong"] == 0),
        Check("cloudy frames passed as ok", cal["missed_cloud"], "0", cal["missed_cloud"] == 0),
        Check("transparency maps", maps["maps"], "> 0", maps["maps"] > 0),
        Check(
            "transparency rms vs injected cloud",
            maps.get("rms", float("nan")),
            f"< {MAP_RMS_TOLERANCE}",
            bool(maps.get("rms", np.inf) < MAP_RMS_TOLERANCE),
        ),
        Check("map pixels under the cloud", maps.get("cloudy_pixels", 0), "> 0", maps.get("cloudy_pixels", 0) > 0),
        Check("variables found", lcs["found"], f"{lcs['variables']}", lcs["found"] == lcs["variables"]),
        Check(
            "best Stetson J rank of a constant star",
            lcs["first_constant_rank"],
            f"> {lcs['variables']} (the variables rank first)",
            lcs["variables_first"],
        ),
        Check(
            "constant stars' median chi2/dof per magnitude bin",
            ", ".join(f"{v:.2f}" for v in lcs["chi2_by_mag"].values()),
            f"each in [{CHI2_RANGE[0]}, {CHI2_RANGE[1]}] (honest errors)",
            bool(lcs["chi2_by_mag"]) and all(CHI2_RANGE[0] <= v <= CHI2_RANGE[1] for v in lcs["chi2_by_mag"].values()),
        ),
        Check(
            "variables flagged variable",
            lcs["variables_flagged"],
            f"{lcs['variables']}",
            lcs["variables_flagged"] == lcs["variables"],
        ),
        Check(
            "the report's most variable objects start with the variables",
            lcs["report_starts_with_variables"],
            "True",
            lcs["report_starts_with_variables"],
        ),
        Check(
            "summary database version",
            summary.to_version,
            f"{lake.log.published_version()}",
            summary.to_version == lake.log.published_version(),
        ),
        Check("report pages", len(site.pages), "> 0", len(site.pages) > 0),
    ]
    return finish(checks)
