"""Light-curve precision, printed by one command: the 20 brightest stars of the 12 real SkyCamZ frames of one
pointing (median rms from per-frame zeropoints, the ensemble, the ensemble + EPD + TFA, and a plain median
ensemble of the same points), and the SYNTHETIC series' constant stars against the white noise put in them.

Run from the repo root::

    .venv/bin/python benchmarks/precision.py                 # both (about a minute)
    .venv/bin/python benchmarks/precision.py --skip series   # SkyCamZ only (needs ../shared/data)
    .venv/bin/python benchmarks/precision.py --keep /tmp/precision   # keep the lakes (for skylake plot noise)

Each part builds its lake from scratch in a temporary directory (the real frames are read from
../shared/data, never copied): refcat import, ingest (which calibrates and solves the ensemble), objects.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def skycamz(root: Path) -> None:
    import pyarrow.parquet as pq

    from skylake.ensemble.precision import brightest_scatter, frame_points
    from skylake.lake import Lake
    from skylake.objects.build import build_objects
    from skylake.pipeline import ingest
    from skylake.refcat import import_refcat

    frames = sorted((SHARED / "skycamz").glob("z_e_*.fits"))
    if len(frames) != 14:
        print(f"== SkyCamZ: skipped, the 14 frames are not in {SHARED / 'skycamz'}")
        return
    t = pq.read_table(SHARED / "refcats" / "tycho2_vt.parquet")
    ra, dec = t["ra"].to_numpy(), t["dec"].to_numpy()
    near = (np.abs(dec - 15) < 12) & (np.abs(ra - 260) < 15)
    pq.write_table(t.filter(near), root / "tycho2_vt.parquet")
    lake = Lake.init(root / "skycamz-lake")
    import_refcat(lake, "tycho2", [root / "tycho2_vt.parquet"], "tycho2", progress=False)
    ingest(lake, [str(f) for f in frames], "skycamz", progress=False)
    build_objects(lake)
    rows = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    shared = rows[rows["path"].str.contains(r"_2(?:1\d|2[01])_1_1_1")]["frame_id"]
    points = frame_points(lake, shared)
    bright = brightest_scatter(points, 20, 11)
    print(
        f"== SkyCamZ, the 12 frames of one pointing: the 20 brightest unsaturated stars on >= 11 of them "
        f"(V_T {bright['mean'].min():.1f}-{bright['mean'].max():.1f}), median rms [mmag]"
    )
    for label, col in (
        ("per-frame zeropoints", "mag_zp"),
        ("plain median ensemble", "plain"),
        ("ensemble", "mag"),
        ("ensemble + EPD + TFA", "mag_tfa"),
    ):
        value = 1000 * bright[col].median()
        print(
            f"  {label:24s} {value:6.2f}"
            if np.isfinite(value)
            else f"  {label:24s}    -   (12 points: EPD and TFA need [ensemble] detrend_min_points = 20)"
        )
    # what the photons leave: each star's rms less its photon error (in quadrature), the noise no aperture removes
    phot = points.groupby("object_id")["mag_err_phot"].median().reindex(bright.index)
    rest = np.sqrt(np.clip(bright["mag"] ** 2 - phot**2, 0, None))
    print("  per star (V_T: ensemble rms, photon error, what is left after the photons) [mmag]")
    for v, rms, ph, left in zip(bright["mean"], bright["mag"], phot, rest):
        print(f"    {v:5.2f}: {1000 * rms:5.2f} {1000 * ph:5.2f} {1000 * left:5.2f}")
    print(
        f"  what the photons leave, median: {1000 * rest.median():.2f} mmag; of the 6 brightest "
        f"{1000 * rest.iloc[:6].median():.2f} (scintillation by Young's formula for 0.2 m, 10 s at 2363 m: ~2.5)"
    )
    print(f"  lake: {lake.store.location}")


def series(root: Path) -> None:
    import pyarrow.dataset as ds
    from scipy.spatial import cKDTree

    from skylake.lake import Lake
    from skylake.objects.build import build_objects
    from skylake.pipeline import ingest
    from skylake.refcat import import_refcat
    from skylake.synthetic.series import write_series

    truth = write_series(root / "series", n_frames=60)
    lake = Lake.init(root / "series-lake")
    import_refcat(lake, "series", [truth.refcat_path], "generic", columns_map=truth.refcat_map, progress=False)
    ingest(lake, truth.paths, truth.profile_path, progress=False)
    build_objects(lake)
    lc = ds.dataset(lake.path("lightcurves/dataset"), format="parquet", partitioning="hive").to_table().to_pandas()
    ob = ds.dataset(lake.path("objects/dataset"), format="parquet", partitioning="hive").to_table().to_pandas()
    st = truth.stars
    d, j = cKDTree(np.column_stack([st["ra"], st["dec"]])).query(np.column_stack([ob["ra"], ob["dec"]]))
    ob = ob.assign(star_id=np.where(d * 3600 < 2, st["star_id"].to_numpy()[j], -1))
    lc = lc.merge(ob.loc[ob["star_id"] > 0, ["object_id", "star_id"]], on="object_id")
    lc = lc.merge(st[["star_id", "kind", "mag"]].rename(columns={"mag": "true_mag"}), on="star_id")
    clean = lc[(lc["kind"] == "constant") & (lc["flags"] == 0)]
    g = clean.groupby("star_id")
    cols = ["mag_zp", "mag", "mag_tfa"]
    rms = pd.DataFrame({c: g[c].std() for c in cols}).assign(n=g["mag"].count(), true_mag=g["true_mag"].first())
    rms = rms[rms["n"] >= 40].assign(white=truth.white_noise())
    table = rms.groupby(pd.cut(rms["true_mag"], np.arange(10, 17)), observed=True)[cols + ["white"]].median()
    print(
        "== SYNTHETIC series (60 frames, one field): constant stars' median rms per magnitude bin [mmag] and its "
        "ratio to the white noise in the pixels"
    )
    print(f"  {'mag':>8} {'per-frame zp':>13} {'ensemble':>9} {'+EPD+TFA':>9} {'white':>7}   ratios")
    for idx, r in table.iterrows():
        print(
            f"  {str(idx):>8} {1000 * r['mag_zp']:13.2f} {1000 * r['mag']:9.2f} {1000 * r['mag_tfa']:9.2f} "
            f"{1000 * r['white']:7.2f}   {r['mag_zp'] / r['white']:.2f} {r['mag'] / r['white']:.2f} "
            f"{r['mag_tfa'] / r['white']:.2f}"
        )
    print(f"  lake: {lake.store.location}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip", choices=("skycamz", "series"), default=None, help="leave one part out")
    parser.add_argument("--keep", default=None, metavar="DIR", help="build the lakes in DIR and keep them")
    args = parser.parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="skylake-precision-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        if args.skip != "skycamz":
            skycamz(root)
        if args.skip != "series":
            series(root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
