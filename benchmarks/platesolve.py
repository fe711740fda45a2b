"""Plate-solving benchmark: seconds per frame of hinted and blind solves of the 14 real SkyCamZ frames with
their WCS removed and their pointing written in every header form, against sep detection alone on the same
frames, measured in the same run.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/platesolve.py            # 14 frames x 14 forms, 3 runs each (~5 min on 2 cores)
    .venv/bin/python benchmarks/platesolve.py --quick    # 4 frames, 1 run, no any-scale row (~30 s)
    .venv/bin/python benchmarks/platesolve.py --runs 5

What happens (needs ../shared/data and astrometry.net's solve-field with the Debian Tycho-2 index files):

1. Every frame is read once (untimed) and copied in memory in each form of
   ``skylake.synthetic.pointing_forms.FORMS`` (the copies of ``tests/test_pointing.py``'s slow test; this
   benchmark covers it): WCS removed, the pointing as numbers, numeric strings, sexagesimal strings in
   several keywords, a partial WCS, the scale from the optics, a fixed RA/Dec or alt/az pointing in the
   profile, or none at all.
2. The baseline, ``sep detect``: ``sep.Background`` (64 px mesh) and ``sep.extract`` at 5 x the global rms
   on the frame, the detection every solve starts from (what a solve costs at least).
3. ``skylake.frame.platesolve.solve_for_ingest`` on each copy, ``--runs`` times (median), with a profile
   extending ``skycamz`` against the Tycho-2 Parquet file: hinted solves by skylake's solver (a header
   pointing), hinted by astrometry.net (a fixed alt/az pointing known to 2 deg), blind by astrometry.net
   (no pointing; the header's scale or the profile's pixscale_range) and, unless ``--quick``, blind with
   no scale at all (generic ``pixscale_range``, one run).

Each solved WCS is checked against the frame's own over an 11 x 11 pixel grid (``compare_wcs``): the
largest difference must be under 1 px (3.567") and the method recorded the form's. It prints a row per
form (median s/frame, largest difference) and the summary: median s/frame of each kind of solve, of sep
detection, and their ratios. Exit 0 when every copy solved within 1 px by its method, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SKYLAKE_SHARED_DATA", REPO.parent / "shared" / "data"))
PIXEL_ARCSEC = 3.5666776736  # SkyCamZ CCDSCALE: 1 px


def sep_detect(data: np.ndarray) -> int:
    """The baseline: sep background and extraction at 5 sigma (the detection a solve starts from)."""
    import sep

    bkg = sep.Background(data, bw=64, bh=64)
    return len(sep.extract(data - bkg.back(), 5.0, err=bkg.globalrms, minarea=5))


def _median_time(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 frames, 1 run, no any-scale row")
    parser.add_argument("--runs", type=int, default=None, help="runs per copy (median; default 3, 1 with --quick)")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    from astropy.io import fits
    from astropy.wcs import WCS

    from skylake.frame.platesolve import compare_wcs, solve_for_ingest
    from skylake.profile import load_profile
    from skylake.synthetic.pointing_forms import FORMS, platesolve_toml, pointing_copy

    files = sorted((SHARED / "skycamz").glob("z_e_*.fits"))
    tycho = SHARED / "refcats" / "tycho2_vt.parquet"
    if len(files) != 14 or not tycho.is_file():
        print(f"needs the 14 SkyCamZ frames and Tycho-2 under {SHARED} (../shared/data)")
        return 2
    if shutil.which("solve-field") is None:
        print("needs astrometry.net's solve-field (Debian astrometry.net, astrometry-data-tycho2-*)")
        return 2
    if args.quick:
        files = files[::4]  # 210, 214, 218, 222: both pointings
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the start (timings assume an idle "
        f"machine); {len(files)} frames x {len(FORMS)} forms, {runs} run(s) each"
    )
    tmp = Path(tempfile.mkdtemp(prefix="skylake-platesolve-bench-"))
    profiles: dict[str, object] = {}

    def profile(settings: dict, astrometry: str = ""):
        key = repr(sorted(settings.items())) + astrometry
        if key not in profiles:
            path = tmp / f"p{len(profiles)}.toml"
            path.write_text(platesolve_toml(tycho, settings) + astrometry)
            profiles[key] = load_profile(path)
        return profiles[key]

    rows: dict[str, list] = {}  # form -> [(seconds, max diff px, method ok, solver)]
    base = []
    failures = []
    forms = [(form, "") for form in FORMS]
    if not args.quick:  # blind with no scale at all: the generic range (one run: ~4 s a frame)
        forms.append((FORMS[-1], "[astrometry]\npixscale_range = [0.01, 3600.0]\n"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = [(f, fits.getheader(f), fits.getdata(f).astype(np.float32)) for f in files]
            sep_detect(frames[0][2])  # warm-up: imports, the page cache of Tycho-2
            solve_for_ingest(frames[0][2], pointing_copy(frames[0][1], FORMS[0])[0], profile({}), None)
            for f, header, data in frames:
                t, _ = _median_time(lambda data=data: sep_detect(data), max(runs, 3))
                base.append(t)
                mjd = float(header["MJD"]) + float(header["EXPTIME"]) / 2.0 / 86400.0
                truth = WCS(header)
                for form, astrometry in forms:
                    name = form.name + (" (any scale: generic pixscale_range)" if astrometry else "")
                    copy, settings = pointing_copy(header, form, mjd)
                    p = profile(settings, astrometry)
                    try:
                        t, (solved, rec, _) = _median_time(
                            lambda data=data, copy=copy, p=p, mjd=mjd: solve_for_ingest(data, copy, p, None, mjd),
                            1 if astrometry else runs,
                        )
                    except Exception as exc:  # noqa: BLE001 - a failure is reported, not raised
                        failures.append(f"{f.name} {name}: {exc}")
                        rows.setdefault(name, []).append((float("nan"), float("nan"), False, "failed"))
                        continue
                    diff = compare_wcs(WCS(solved), truth, data.shape)["max"] / PIXEL_ARCSEC
                    ok = rec["wcs_method"] == form.method and diff < 1.0
                    if not ok:
                        failures.append(
                            f"{f.name} {name}: method {rec['wcs_method']} (expected {form.method}), "
                            f"largest difference {diff:.2f} px"
                        )
                    rows.setdefault(name, []).append((t, diff, ok, f"{rec['wcs_method']}/{rec['wcs_source'][11:]}"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{'form':58s} {'method/solver':24s} {'s/frame':>8s} {'max px':>7s} {'ok':>6s}")
    kinds: dict[str, list[float]] = {}
    for name, values in rows.items():
        times = [v[0] for v in values if np.isfinite(v[0])]
        kind = max(set(v[3] for v in values), key=[v[3] for v in values].count)
        med = statistics.median(times) if times else float("nan")
        print(
            f"{name:58s} {kind:24s} {med:8.3f} {np.nanmax([v[1] for v in values]):7.2f} "
            f"{sum(v[2] for v in values):3d}/{len(values)}"
        )
        if "any scale" in name:
            kind = "blind/astrometry.net, any scale"
        kinds.setdefault(kind, []).extend(times)
    b = statistics.median(base)
    print(f"\nbaseline sep detect: median {b:.3f} s/frame over {len(base)} frames")
    for kind, times in kinds.items():
        m = statistics.median(times)
        print(f"{kind:32s} median {m:.3f} s/frame over {len(times)} solves = {m / b:.1f}x sep detect")
    for line in failures:
        print("FAILED", line)
    n = sum(len(v) for v in rows.values())
    print(f"{n - len(failures)} of {n} copies solved within 1 px by their method")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
