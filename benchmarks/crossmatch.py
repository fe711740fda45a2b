"""Cross-match benchmark: source rows per second of skylake's calibration cross-match against astropy's
``match_to_catalog_sky`` and a scipy ``cKDTree``, on the same SYNTHETIC data in the same run.

Run from the repo root (one command)::

    .venv/bin/python benchmarks/crossmatch.py            # 10^7 sources x 10^6 reference stars, 3 runs each
    .venv/bin/python benchmarks/crossmatch.py --quick    # 10^6 x 10^5, a smoke run (~1-2 min)
    .venv/bin/python benchmarks/crossmatch.py --sources 3000000 --refs 300000 --runs 5 --workers 2

What happens (see benchmarks/README.md):

1. Reference stars: ``skylake.synthetic.refcat.write_synthetic`` (APASS columns, a Galactic disc plus
   an isotropic half) imported with ``import_refcat`` (HATS collection, 10" margin), untimed.
2. Sources: every reference star observed ``sources / refs`` times (passes), each time displaced by a
   Gaussian 1" per axis, a tenth of them replaced by field sources ~0.2 deg from another star; each pass's
   frames tile the sky (a frame is a HEALPix order-3 pixel, neighbouring frames with neighbouring ids);
   written as a HATS catalog with hats-import, untimed.
3. Timed, ``--runs`` times each, every method producing the same thing, the one-to-one pairs within
   9" (the SkyCamZ radius):

   - skylake: what a calibration does (``skylake.calib.pairs.BatchPairs.match``) on skylake's
     ``dask_client``: ``pixel_match.plan`` (hats aligns both catalogs' partitions) -> count tasks and the
     frame groups -> one ``match_split`` task per sources partition (pyarrow reads, a k-d tree per reference
     partition and its margin, each source its nearest star, rows in frame order; the partition's main group's
     rows kept, other groups' written to files) -> ``one_to_one_pairs`` per group where its home partition's
     rows are; only the pairs' ids come back. Includes reading the Parquet files.
   - skylake, pairs gathered: the same tasks, every pair gathered here, then ``nearest_per_star``.
   - lsdb: ``Catalog.crossmatch`` (k-d tree, nearest star within 9"), gathered, ``nearest_per_star``.
   - astropy: ``SkyCoord.match_to_catalog_sky`` of the in-memory arrays, cut at 9" -> ``one_to_one``.
   - cKDTree: unit vectors, ``cKDTree.query(k=1, distance_upper_bound=chord, workers=-1)`` -> ``one_to_one``.

   The baselines get their arrays in memory for free (loading them is not timed); skylake reads them.
   All five must give identical pairs (checked). The first cross-match of a process compiles hats'
   and lsdb's numba code (7-10 s): an untimed warm-up takes it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

RADIUS = 9.0  # arcsec
#: HEALPix order of a synthetic frame's field (order 3: 768 fields of ~54 deg^2).
FRAME_ORDER = 3


def make_sources(ref_file: Path, n_sources: int, out_dir: Path, seed: int = 1) -> Path:
    """Write ``n_sources`` synthetic detections of the stars in ``ref_file`` as Parquet shards, one per pass.

    Each pass sees every star (the last pass a random subset) in frames that tile the sky: a frame is a
    HEALPix pixel of order :data:`FRAME_ORDER` (~7 deg across, ~5000 stars at 10^6), numbered so that
    neighbouring frames have neighbouring ids, as a camera's night of fields does.
    """
    from hats.pixel_math.healpix_shim import radec2pix

    refs = pq.read_table(ref_file, columns=["RAJ2000", "DEJ2000", "Vmag"])
    ra0, dec0 = refs["RAJ2000"].to_numpy(), refs["DEJ2000"].to_numpy()
    vmag = refs["Vmag"].to_numpy(zero_copy_only=False)
    n_ref = ra0.size
    field = radec2pix(FRAME_ORDER, ra0, dec0).astype(np.int64)
    out_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written, visit = 0, 0
    while written < n_sources:
        n = min(n_ref, n_sources - written)
        visit += 1
        pick = np.sort(rng.permutation(n_ref)[:n])
        jitter = rng.normal(0.0, 1.0 / 3600.0, (2, n))
        dec = np.clip(dec0[pick] + jitter[1], -90.0, 90.0)
        ra = (ra0[pick] + jitter[0] / np.maximum(np.cos(np.radians(dec)), 1e-6)) % 360.0
        spurious = rng.random(n) < 0.1  # not every detection is a catalogue star: a random point of its frame
        near = rng.integers(0, n_ref, spurious.sum())
        near = near[np.argsort(field[near], kind="stable")]
        shift = rng.normal(0.0, 0.2, (2, spurious.sum()))  # ~0.2 deg from another star of the sky
        ra[spurious] = (ra0[near] + shift[0]) % 360.0
        dec[spurious] = np.clip(dec0[near] + shift[1], -90.0, 90.0)
        frame = visit * 100_000 + radec2pix(FRAME_ORDER, ra, dec).astype(np.int64)
        table = pa.table(
            {
                "source_id": np.arange(written, written + n, dtype=np.int64),
                "frame_id": frame,
                "ra": ra,
                "dec": dec,
                "inst_mag": (np.nan_to_num(vmag[pick], nan=15.0) - 20.0).astype(np.float32),
            }
        )
        pq.write_table(table, out_dir / f"pass{visit:03d}.parquet")
        written += n
    return out_dir


def import_sources(shards: Path, out: Path, client) -> Path:
    from hats_import import ImportArguments, pipeline_with_client

    args = ImportArguments(
        input_path=str(shards),
        file_reader="parquet",
        ra_column="ra",
        dec_column="dec",
        output_path=str(out),
        output_artifact_name="sources",
        pixel_threshold=300_000,
        highest_healpix_order=7,
        sort_columns="source_id",
        progress_bar=False,
        resume=False,
        tmp_dir=str(out / "tmp"),
        write_table_kwargs={"compression": "zstd", "compression_level": 3},
    )
    pipeline_with_client(args, client)
    return out / "sources"


def _spec(sources, frames: pd.DataFrame):
    from skylake.calib.pixel_match import MatchSpec

    return MatchSpec(
        frame_ids=np.unique(frames["frame_id"].to_numpy(np.int64)),
        source_columns=("source_id", "frame_id", "ra", "dec", "inst_mag"),
        source_schema=sources.schema,
        ref_columns=("ref_id", "ra", "dec", "mag_V"),
        radius_arcsec=RADIUS,
        mag="mag_V",
    )


def _partitions(sources_path: Path, refcat_path: Path, frames: pd.DataFrame, with_counts: bool = False):
    """The calibration's cross-match tasks (:func:`skylake.calib.pixel_match.match_delayed`), the whole sky."""
    import hats
    from mocpy import MOC

    from skylake.calib.pixel_match import match_delayed
    from skylake.refcat.importer import quiet_collection_notice

    sources = hats.read_hats(sources_path)
    with quiet_collection_notice():
        refcat = hats.read_hats(refcat_path)
    return match_delayed(sources, refcat, MOC.from_string("0/0-11"), _spec(sources, frames), with_counts=with_counts)


def _ids(pairs: pd.DataFrame) -> pd.DataFrame:
    return pairs[["source_id", "ref_id"]]


def _one_to_one(pieces: list, root: str) -> pd.DataFrame:
    from skylake.calib.crossmatch import one_to_one_pairs
    from skylake.calib.pairs import load_piece

    return one_to_one_pairs([load_piece(p, root) for p in pieces])


def skylake_match(sources_path: Path, refcat_path: Path, frames: pd.DataFrame, client) -> pd.DataFrame:
    """What a calibration does (:class:`skylake.calib.pairs.BatchPairs`): the pairs stay on the workers.

    One task counting the sources per frame of several partitions (first: one column), frame groups by the
    partition holding most of a frame's sources (:func:`~skylake.calib.pairs.home_groups`), then one task per
    sources partition (each source its nearest star) keeping its home group's rows and writing the rows of other
    groups' frames to files (:func:`~skylake.calib.pairs.matched_groups`); each group reduced to one-to-one pairs
    where its home partition's rows are, as soon as its partitions are matched; only the pairs' ids come back
    here, for the comparison. ``frames`` (``frame_id``, ``night``, ``n_sources``) is what a calibration knows
    from LAKE/frames.
    """
    import hats
    from mocpy import MOC

    from skylake.calib.pairs import matched_groups
    from skylake.calib.pixel_match import plan
    from skylake.refcat.importer import quiet_collection_notice
    from skylake.runtime import Runner

    sources = hats.read_hats(sources_path)
    with quiet_collection_notice():
        refcat = hats.read_hats(refcat_path)
    tasks = plan(sources, refcat, MOC.from_string("0/0-11"))
    runner, held = Runner(client), []
    with tempfile.TemporaryDirectory(dir=Path(sources_path).parent) as root:

        def start(group_of, g, pieces):
            held.append(runner.submit(_ids, runner.submit(_one_to_one, pieces, root)))

        matched_groups(runner, tasks, _spec(sources, frames), frames, root, "pieces", start)
        return pd.concat(runner.gather(held), ignore_index=True)


def skylake_gathered(sources_path: Path, refcat_path: Path, frames: pd.DataFrame) -> pd.DataFrame:
    """Every partition's pairs gathered into this process, then the one-to-one step here."""
    import dask

    from skylake.calib.crossmatch import nearest_per_star

    parts = dask.compute(*_partitions(sources_path, refcat_path, frames))
    return nearest_per_star(pd.concat(parts, ignore_index=True))


def lsdb_gathered(sources_path: Path, refcat_path: Path) -> pd.DataFrame:
    """lsdb's own k-d tree cross-match (``Catalog.crossmatch``, nearest star within the radius), gathered here."""
    import lsdb

    from skylake.calib.crossmatch import nearest_per_star
    from skylake.refcat.importer import quiet_collection_notice

    left = lsdb.open_catalog(sources_path, columns=["source_id", "frame_id", "ra", "dec", "inst_mag"])
    with quiet_collection_notice():
        right = lsdb.open_catalog(refcat_path, columns=["ref_id", "ra", "dec", "mag_V"])
    xm = left.crossmatch(
        right,
        radius_arcsec=RADIUS,
        n_neighbors=1,
        suffixes=("", "_ref"),
        suffix_method="overlapping_columns",
        log_changes=False,
    )
    pairs = xm.compute(progress_bar=False)
    pairs = pd.DataFrame(
        {
            "source_id": pairs["source_id"].to_numpy(np.int64),
            "frame_id": pairs["frame_id"].to_numpy(np.int64),
            "ref_id": pairs["ref_id"].to_numpy(np.int64),
            "sep_arcsec": pairs["_dist_arcsec"].to_numpy(np.float64),
        }
    )
    return nearest_per_star(pairs)


def _unit(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _pairs(src: pd.DataFrame, ref: pd.DataFrame, keep: np.ndarray, idx: np.ndarray, sep: np.ndarray) -> pd.DataFrame:
    from skylake.calib.crossmatch import one_to_one

    out = src.loc[keep, ["source_id", "frame_id"]].assign(
        ref_id=ref["ref_id"].to_numpy()[idx[keep]], ref_mag=ref["mag_V"].to_numpy()[idx[keep]], sep_arcsec=sep[keep]
    )
    return one_to_one(out)


def astropy_match(src: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    idx, sep, _ = SkyCoord(src["ra"].to_numpy() * u.deg, src["dec"].to_numpy() * u.deg).match_to_catalog_sky(
        SkyCoord(ref["ra"].to_numpy() * u.deg, ref["dec"].to_numpy() * u.deg)
    )
    sep = sep.to_value(u.arcsec)
    return _pairs(src, ref, sep <= RADIUS, idx, sep)


def ckdtree_match(src: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    from scipy.spatial import cKDTree

    chord = 2.0 * np.sin(np.radians(RADIUS / 3600.0) / 2.0)
    tree = cKDTree(_unit(ref["ra"].to_numpy(), ref["dec"].to_numpy()))
    dist, idx = tree.query(
        _unit(src["ra"].to_numpy(), src["dec"].to_numpy()), k=1, distance_upper_bound=chord, workers=-1
    )
    keep = np.isfinite(dist)
    idx = np.where(keep, idx, 0)
    sep = np.degrees(2.0 * np.arcsin(np.minimum(dist, 2.0) / 2.0)) * 3600.0
    return _pairs(src, ref, keep, idx, sep)


def timed(func, runs: int) -> tuple[list[float], pd.DataFrame]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - t0)
    return times, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10^6 sources x 10^5 stars")
    parser.add_argument("--sources", type=int, default=None, help="source rows (default 10^7; --quick 10^6)")
    parser.add_argument("--refs", type=int, default=None, help="reference stars (default 10^6; --quick 10^5)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per method (median reported)")
    parser.add_argument(
        "--workers", type=int, default=2, help="dask workers for skylake (skylake.runtime.dask_client: 1 thread each)"
    )
    parser.add_argument("--keep", default=None, metavar="DIR", help="work in DIR and keep it (reused)")
    args = parser.parse_args(argv)
    n_src = args.sources or (1_000_000 if args.quick else 10_000_000)
    n_ref = args.refs or (100_000 if args.quick else 1_000_000)
    warnings.filterwarnings("ignore")

    from skylake.lake import Lake
    from skylake.refcat import import_refcat
    from skylake.runtime import dask_client
    from skylake.synthetic.refcat import write_synthetic

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="skylake-xmatch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        # skylake's own local cluster, as a calibration makes it (its workers' malloc settings included)
        with dask_client(workers=args.workers) as client:
            t0 = time.perf_counter()
            # --keep DIR: a later run of the same data reuses it
            data = work / f"data-{n_src}x{n_ref}-order{FRAME_ORDER}-seed7"
            refcat, sources = data / "lake" / "refcats" / "bench", data / "hats" / "sources"
            if not (data / "ready").exists():
                shutil.rmtree(data, ignore_errors=True)
                data.mkdir()
                ref_file = write_synthetic(data / "refs_synthetic.parquet", "apass", rows=n_ref, seed=7)
                import_refcat(Lake.init(data / "lake"), "bench", [ref_file], "apass", client=client, progress=False)
                import_sources(make_sources(ref_file, n_src, data / "shards"), data / "hats", client)
                (data / "ready").touch()
            print(
                f"data: {n_src:,} sources, {n_ref:,} reference stars (SYNTHETIC), prepared in "
                f"{time.perf_counter() - t0:.0f} s (untimed) under {data}",
                flush=True,
            )

            src = pq.read_table(sources / "dataset", columns=["source_id", "frame_id", "ra", "dec"]).to_pandas()
            src = src.sort_values("source_id", ignore_index=True)
            ref = pq.read_table(refcat / "bench" / "dataset", columns=["ref_id", "ra", "dec", "mag_V"]).to_pandas()
            assert len(src) == n_src and len(ref) == n_ref, (len(src), len(ref))
            counts = src["frame_id"].value_counts()  # a calibration has them from LAKE/frames
            frames = pd.DataFrame({"frame_id": counts.index, "night": "", "n_sources": counts.to_numpy()})

            t0 = time.perf_counter()
            skylake_match(sources, refcat, frames, client)  # warm-up: numba compilation of hats' pixel alignment
            lsdb_gathered(sources, refcat)  # and of lsdb's join
            print(
                f"warm-up (first cross-matches of the process, untimed): {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            results = {}
            for name, func in (
                ("skylake (HATS on disk)", lambda: skylake_match(sources, refcat, frames, client)),
                ("skylake, pairs gathered", lambda: skylake_gathered(sources, refcat, frames)),
                ("lsdb crossmatch, gathered", lambda: lsdb_gathered(sources, refcat)),
                ("astropy match_to_catalog_sky", lambda: astropy_match(src, ref)),
                ("scipy cKDTree (workers=-1)", lambda: ckdtree_match(src, ref)),
            ):
                times, pairs = timed(func, args.runs)
                results[name] = (times, pairs)
                print(f"  {name:30s} runs " + " ".join(f"{t:.2f}" for t in times) + " s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    keys = {name: set(zip(p["source_id"].to_numpy(), p["ref_id"].to_numpy())) for name, (_, p) in results.items()}
    names = list(results)
    same = all(keys[n] == keys[names[0]] for n in names[1:])
    print(
        f'\ncross-match of {n_src:,} sources x {n_ref:,} reference stars, radius {RADIUS:g}", one-to-one pairs; '
        f"{args.workers} dask workers; median of {args.runs} runs"
    )
    print(f"{'method':32s} {'median s':>9s} {'rows/s':>12s} {'per worker':>12s} {'pairs':>11s}")
    medians = {}
    for name, (times, pairs) in results.items():
        medians[name] = statistics.median(times)
        per = f"{n_src / medians[name] / args.workers:12,.0f}" if name.startswith("skylake") else f"{'-':>12s}"
        print(f"{name:32s} {medians[name]:9.2f} {n_src / medians[name]:12,.0f} {per} {len(pairs):11,d}")
    sky, lsdb_, astropy, ckdtree = (medians[names[k]] for k in (0, 2, 3, 4))
    print(
        f"ratios (throughput): skylake/astropy = {astropy / sky:.2f}x, skylake/cKDTree = {ckdtree / sky:.2f}x, "
        f"skylake/lsdb = {lsdb_ / sky:.2f}x, skylake/pairs gathered = {medians[names[1]] / sky:.2f}x; "
        f"goals: faster than astropy, >= 1,000,000 rows/s per worker"
    )
    print(f"pairs identical across the {len(names)} methods: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
