"""Build the real SkyCamZ lake with two versions of skylake and compare them row for row.

    python benchmarks/compare_versions.py --before REF [--after REF_OR_DIR] [--keep DIR]

Each version is exported (``git archive REF | tar -x``; a directory is used as it is) and runs the
SkyCamZ chain of tests/test_real_cluster.py's local lake through its own CLI (``python -m skylake.cli``
in a subprocess whose PYTHONPATH is that version's tree, checked before the first step): ingest of the
14 real frames in ../shared/data/skycamz (``--pipeline skycamz``, in process), ``refcat import`` of the
real Tycho-2 cut to 12 deg around the two pointings (as tests/test_calib_real.py), ``calibrate``,
``objects build``, ``maps --no-export`` and ``refresh`` into a SQLite file of its own. Both versions
read the same input files at the same paths.

Then every table of the two lakes (frames, sources, zeropoints, matches, extinction, objects, maps, the maps index,
streaks where present, the imported catalogue and its margin, the frame index) and every table of the two summary
databases is sorted by its keys and compared column by column (NaN equal to NaN), leaving out what differs between
any two runs: batch ids, commit and refresh times, processing_s, the lake's id and path in the database; the
calibration key (a digest of the catalogue's import record, which holds its import time) and the batch id in
the maps' paths are replaced by placeholders (skylake/testing/compare.py, shared with tests/test_real_cluster.py).

Exit code: 0 when every table is identical, 1 when any differs, 2 when a version could not be exported
or a step of a chain failed (its log is printed)."""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # skylake.testing from this tree, not whatever skylake is installed

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.dataset as pads  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from skylake.testing.compare import EXCLUDED, KEYS, calib_key, compare, normalise, read_tables  # noqa: E402

SHARED_DATA = Path(os.environ.get("SKYLAKE_SHARED_DATA", REPO.parent / "shared" / "data"))
POINTINGS = ((256.2, 12.8), (263.8, 18.7))  # RA, Dec [deg] of frames 210-221 and 222-223
#: Summary-database columns that differ between any two runs (besides the lake's EXCLUDED ones): when a
#: row was refreshed or committed or a migration applied, and which lake (its id, its path) the database mirrors.
DB_EXCLUDED = EXCLUDED | {"refreshed_at", "committed_at", "applied_at", "lake_id", "lake_url"}
STEP_TIMEOUT_S = 1800


class Failed(Exception):
    pass


def _git(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, **kw)


def export(ref_or_dir: str, dest: Path) -> tuple[Path, str]:
    """(the source tree of ``ref_or_dir``, a label): a directory as it is, a git ref exported to ``dest``."""
    if Path(ref_or_dir).is_dir() and (Path(ref_or_dir) / "skylake").is_dir():
        tree = Path(ref_or_dir).resolve()
        return tree, f"{tree} (directory)"
    rev = _git("rev-parse", "--verify", f"{ref_or_dir}^{{commit}}")
    if rev.returncode:
        raise Failed(
            f"{ref_or_dir!r} is neither a skylake source directory nor a commit of {REPO}: {rev.stderr.strip()}"
        )
    sha = rev.stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", "--format=tar", sha], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True, text=True)
    archive.stdout.close()
    if archive.wait() or untar.returncode:
        raise Failed(f"git archive {sha} | tar -x failed: {untar.stderr.strip()}")
    subject = _git("log", "-1", "--format=%h %s", sha).stdout.strip()
    return dest, f"{ref_or_dir} = {subject[:70]}"


def _env(tree: Path) -> dict:
    """This interpreter's environment with only ``tree`` on PYTHONPATH (dask workers inherit it)."""
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}


def check_import(tree: Path, cwd: Path) -> Path:
    """A subprocess with ``_env(tree)`` imports skylake from ``tree`` (not the editable install)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import skylake; print(skylake.__file__)"],
        capture_output=True,
        text=True,
        env=_env(tree),
        cwd=cwd,
    )
    where = Path(proc.stdout.strip() or "?").resolve()
    if proc.returncode or not where.is_relative_to(tree.resolve()):
        raise Failed(f"python with PYTHONPATH={tree} imports skylake from {where}, not that tree:\n{proc.stderr}")
    return where


def inputs(work: Path) -> tuple[Path, Path]:
    """(the SkyCamZ frames' directory, the Tycho-2 file cut to 12 deg around the two pointings), the same
    paths for both versions."""
    frames = SHARED_DATA / "skycamz"
    tycho = SHARED_DATA / "refcats" / "tycho2_vt.parquet"
    if len(sorted(frames.glob("z_e_*.fits"))) != 14 or not tycho.exists():
        raise Failed(
            f"the real data is not at {SHARED_DATA} (14 SkyCamZ frames, refcats/tycho2_vt.parquet); "
            "set SKYLAKE_SHARED_DATA"
        )
    cut_file = work / "inputs" / "tycho2_vt.parquet"
    if not cut_file.exists():  # --keep: made once
        table = pq.read_table(tycho)
        ra, dec = np.radians(table["ra"].to_numpy()), np.radians(table["dec"].to_numpy())
        keep = np.zeros(len(table), bool)
        for ra0, dec0 in np.radians(POINTINGS):
            keep |= np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(ra - ra0) >= np.cos(np.radians(12))
        cut_file.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(keep), cut_file)
    return frames, cut_file


def build(tree: Path, home: Path, frames: Path, tycho: Path) -> dict[str, float]:
    """The SkyCamZ chain with ``tree``'s CLI into ``home/lake`` and ``home/summary.sqlite`` (run from
    ``home``, whose log.txt gets every step's output); the seconds of each step."""
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    print(f"  building with {check_import(tree, home)}", flush=True)
    lake, db = home / "lake", home / "summary.sqlite"
    steps = {
        "ingest": [
            "ingest",
            lake,
            frames,
            "--pipeline",
            "skycamz",
            "--create",
            "--no-progress",
            "--scheduler",
            "synchronous",
        ],
        "refcat": ["refcat", "import", lake, "tycho2", "--format", "tycho2", tycho, "--no-progress", "--workers", "1"],
        "calibrate": ["calibrate", lake, "--scheduler", "synchronous"],
        "objects": ["objects", "build", lake],
        "maps": ["maps", lake, "--no-export"],
        "refresh": ["refresh", lake, "--db", f"sqlite:///{db}"],
    }
    seconds = {}
    with open(home / "log.txt", "w") as log:
        for name, args in steps.items():
            cmd = [sys.executable, "-m", "skylake.cli", *map(str, args)]
            log.write(f"$ {' '.join(cmd[1:])}\n")
            log.flush()
            t0 = time.monotonic()
            proc = subprocess.run(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(tree),
                cwd=home,
                stdin=subprocess.DEVNULL,
                timeout=STEP_TIMEOUT_S,
            )
            seconds[name] = time.monotonic() - t0
            log.write(f"[exit {proc.returncode}, {seconds[name]:.1f} s]\n\n")
            log.flush()
            if proc.returncode:
                raise Failed(
                    f"`skylake {name}` exited {proc.returncode} with {tree}; the end of {home / 'log.txt'}:\n"
                    + (home / "log.txt").read_text()[-4000:]
                )
    return seconds


def read_summary(db: Path) -> dict[str, tuple[pa.Table, list[str]]]:
    """Every table of the SQLite summary database: (its rows, its primary-key columns)."""
    out = {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for name in names:
            info = con.execute(f'PRAGMA table_info("{name}")').fetchall()  # cid, name, type, notnull, default, pk
            columns = [r[1] for r in info]
            pk = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
            rows = con.execute(f'SELECT * FROM "{name}"').fetchall()
            arrays = {}
            for i, column in enumerate(columns):
                values = [r[i] for r in rows]
                try:
                    arrays[column] = pa.array(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed storage classes: compare their text
                    arrays[column] = pa.array([None if v is None else repr(v) for v in values], pa.string())
            out[name] = (pa.table(arrays) if columns else pa.table({}), pk)
    finally:
        con.close()
    return out


def read_extras(lake: Path) -> dict[str, tuple[pa.Table, list[str]]]:
    """The lake's tables beyond skylake.testing.compare.read_tables: each imported reference catalogue and its
    margin (with their HATS partition columns) and the frame index: (rows, sort key)."""
    out = {}
    for dataset in sorted(lake.glob("refcats/*/*/dataset")):
        out[f"refcat {dataset.parent.parent.name}/{dataset.parent.name}"] = (_hive(dataset), ["_healpix_29", "ref_id"])
    if (lake / "_skylake" / "frame_index").is_dir():
        out["frame_index"] = (_hive(lake / "_skylake" / "frame_index"), ["frame_id"])
    return out


def _hive(root: Path) -> pa.Table:
    """The Parquet files under ``root`` (none under a name starting with _ or .), with their hive
    partition columns."""
    files = sorted(
        str(p)
        for p in root.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )
    return pads.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(root)).to_table()


def compare_all(before: Path, after: Path) -> list[tuple[str, object]]:
    """[(table label, skylake.testing.Comparison)] for the lakes' tables, then the databases'."""
    results = []
    a, b = read_tables(before / "lake"), read_tables(after / "lake")
    key_a, key_b = calib_key(a), calib_key(b)
    for name in sorted(set(a) | set(b), key=lambda n: (n not in KEYS, list(KEYS).index(n) if n in KEYS else 0, n)):
        ta = normalise(name, a[name], key_a) if name in a else pa.table({})
        tb = normalise(name, b[name], key_b) if name in b else pa.table({})
        results.append((f"lake {name}", compare(ta, tb)))
    ea, eb = read_extras(before / "lake"), read_extras(after / "lake")
    for name in sorted(set(ea) | set(eb)):
        ta, keys = ea.get(name, (pa.table({}), []))
        tb, keys_b = eb.get(name, (pa.table({}), []))
        ta = normalise(name, ta, key_a, keys=keys or keys_b)
        tb = normalise(name, tb, key_b, keys=keys or keys_b)
        results.append((f"lake {name}", compare(ta, tb)))
    da, db = read_summary(before / "summary.sqlite"), read_summary(after / "summary.sqlite")
    for name in sorted(set(da) | set(db)):
        ta, pk = da.get(name, (pa.table({}), []))
        tb, pk_b = db.get(name, (pa.table({}), []))
        keys = [k for k in pk or pk_b if k not in DB_EXCLUDED]
        ta = normalise(name, ta, key_a, excluded=DB_EXCLUDED, keys=keys)
        tb = normalise(name, tb, key_b, excluded=DB_EXCLUDED, keys=keys)
        results.append((f"db {name}", compare(ta, tb)))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the real SkyCamZ lake (ingest, refcat import, calibrate, objects build, maps, "
        "refresh into SQLite) with two versions of skylake, each in subprocesses importing only "
        "its own tree, and compare every lake table and every summary-database table row for "
        "row, leaving out batch ids, commit and refresh times, processing_s and the lake's id and "
        "path, with the calibration key and the batch ids in map paths as placeholders. Prints "
        "per table the rows before and after, whether identical and the first differing column.",
        epilog="A table only the version after has (a new product) is listed as new, not as a difference. "
        "Exit code: 0 every table identical; 1 some table differs; 2 a version could not be exported, "
        "did not import from its own tree, or a step failed (its log is printed). Needs the real data "
        "in ../shared/data (or $SKYLAKE_SHARED_DATA). About 3-6 minutes on 2 cores.",
    )
    parser.add_argument(
        "--before",
        required=True,
        metavar="REF",
        help="the version before: a git ref of this repository (exported with git archive) or "
        "a skylake source directory",
    )
    parser.add_argument(
        "--after",
        default=str(REPO),
        metavar="REF_OR_DIR",
        help="the version after: a git ref or a source directory (default: the working tree "
        "this script lives in, uncommitted changes included)",
    )
    parser.add_argument(
        "--keep",
        default=None,
        metavar="DIR",
        help="build in DIR and keep it (DIR/before, DIR/after: source, lake, summary.sqlite, "
        "log.txt); default: a temporary directory removed at the end",
    )
    args = parser.parse_args(argv)

    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="skylake-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    try:
        trees, timings = {}, {}
        for label, ref in (("before", args.before), ("after", args.after)):
            src = work / label / "src"
            if src.exists():
                shutil.rmtree(src)
            trees[label], description = export(ref, src)
            print(f"{label:6}: {description}", flush=True)
        frames, tycho = inputs(work)
        for label, tree in trees.items():
            t0 = time.monotonic()
            timings[label] = build(tree, work / label / "build", frames, tycho)
            steps = ", ".join(f"{k} {v:.0f}" for k, v in timings[label].items())
            print(f"built {label} in {time.monotonic() - t0:.0f} s ({steps} s)", flush=True)
        results = compare_all(work / "before" / "build", work / "after" / "build")
        new = {name for name, r in results if r.rows_a == 0 and not r.identical and _absent_before(name, work)}
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    width = max(len(name) for name, _ in results)
    print(f"\n{'table':{width}}  {'rows before':>11}  {'rows after':>10}  identical  first differing column")
    for name, result in results:
        verdict = "new" if name in new else ("yes" if result.identical else "NO")
        print(
            f"{name:{width}}  {result.rows_a:>11}  {result.rows_b:>10}  {verdict:9}"
            f"  {'a table only the version after has' if name in new else result.first_difference()}"
        )
    compared = [r for name, r in results if name not in new]
    n_differ = sum(not r.identical for r in compared)
    print(
        f"\n{len(compared) - n_differ} of {len(compared)} tables identical"
        + (f" ({len(new)} new: {', '.join(sorted(new))})" if new else "")
        + f"; {time.monotonic() - t_start:.0f} s"
        + (f"; kept in {work}" if args.keep else "")
    )
    return 1 if n_differ else 0


def _absent_before(label: str, work: Path) -> bool:
    """Whether the version before has no such table at all (a new product), not an empty one."""
    kind, name = label.split(" ", 1)
    if kind == "lake":
        return not (work / "before" / "build" / "lake" / name).exists()
    import sqlite3

    with sqlite3.connect(work / "before" / "build" / "summary.sqlite") as con:
        return (
            con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()[0]
            == 0
        )


if __name__ == "__main__":
    sys.exit(main())
