"""A real dask cluster (issue 14 item 5): a `dask scheduler` and two `dask worker` processes, each its own
process tree in a working directory that is not the driver's, run the SkyCamZ chain through the CLI with
`--scheduler` (ingest, refcat import, calibrate, objects build, maps; refresh mirrors into the database
from the driver and takes no scheduler) into lake A. The same chain in this process's way (`--scheduler
synchronous` for ingest and calibration, objects and maps in the driver process, and a LocalCluster for the
refcat import, which needs one) goes into lake B. The two lakes
must hold the same rows, table by table, and their summary databases the same row counts.

The driver runs from its own scratch directory with relative paths (`lake-a`, `frames/`, `tycho2/`),
so a path resolved on a worker against the worker's own directory would fail here."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from conftest import REPO, SHARED_DATA, SKYCAMZ, require_shared

pytestmark = pytest.mark.realdata

DASK = Path(sys.executable).parent / "dask"
TYCHO = SHARED_DATA / "refcats" / "tycho2_vt.parquet"
POINTINGS = ((256.2, 12.8), (263.8, 18.7))  # RA, Dec [deg] of frames 210-221 and 222-223
STARTUP_S = 120


def _env() -> dict:
    """The driver's environment with this checkout first on PYTHONPATH: the scheduler, the workers and
    every CLI process import the same skylake code as the test."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _stop(procs: list[subprocess.Popen]) -> None:
    """End each process group this module started (the nanny and its worker go together)."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The scheduler's address. Scheduler and workers run in ``cluster-cwd/`` (not the driver's
    directory), each in a new session, and are killed with their process groups at teardown."""
    require_shared(SKYCAMZ)  # skip before starting anything where the data is absent
    from distributed import Client

    home = tmp_path_factory.mktemp("cluster-cwd")
    procs: list[subprocess.Popen] = []
    logs = []

    def start(args: list[str], name: str) -> None:
        log = open(home / f"{name}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([str(DASK), *args], cwd=home, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True))

    def tail() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(home.glob("*.log")))

    try:
        scheduler_file = home / "scheduler.json"
        start(["scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)], "scheduler")
        deadline, address = time.monotonic() + STARTUP_S, None
        while address is None:  # the scheduler writes its address (a free port) into the file when up
            assert procs[0].poll() is None and time.monotonic() < deadline, f"no scheduler:\n{tail()}"
            try:
                address = json.loads(scheduler_file.read_text())["address"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                time.sleep(0.2)
        for i in range(2):
            start(["worker", address, "--nworkers", "1", "--nthreads", "1", "--memory-limit", "2GB",
                   "--no-dashboard", "--local-directory", str(home / f"worker-{i}"), "--name", f"worker-{i}"],
                  f"worker-{i}")
        with Client(address, timeout=30) as client:
            try:
                client.wait_for_workers(2, timeout=STARTUP_S)
            except TimeoutError:
                pytest.fail(f"the two workers did not join the scheduler in {STARTUP_S} s:\n{tail()}")
        yield address
    finally:
        _stop(procs)
        for log in logs:
            log.close()


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "skylake.cli", *args], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=600)
    assert proc.returncode == 0, f"skylake {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _chain(cwd: Path, lake: str, ingest: list[str], refcat: list[str], calibrate: list[str],
           products: list[str], tasks=None) -> dict:
    """The SkyCamZ chain through the CLI, from ``cwd``, with relative paths; ``products`` are the options
    of ``objects build`` and ``maps``. ``refresh`` has no ``--scheduler`` (the driver mirrors). Returns
    per step the tasks ``tasks()`` counted on the workers meanwhile (when given)."""
    steps = {
        "ingest": ["ingest", lake, "frames", "--pipeline", "skycamz", "--create", "--no-progress", *ingest],
        "refcat": ["refcat", "import", lake, "tycho2", "--format", "tycho2", "tycho2", "--no-progress", *refcat],
        "calibrate": ["calibrate", lake, *calibrate],
        "objects": ["objects", "build", lake, *products],
        "maps": ["maps", lake, "--no-export", *products],
        "refresh": ["refresh", lake],
    }
    executed = {}
    for name, args in steps.items():
        before = tasks() if tasks else {}
        _cli(cwd, *args)
        executed[name] = {w: n - before.get(w, 0) for w, n in tasks().items()} if tasks else {}
    return executed


@pytest.fixture(scope="module")
def lakes(tmp_path_factory, cluster, skycamz_files):
    """(lake A, lake B, tasks each worker ran per step of A), both made from one driver directory."""
    from distributed import Client

    cwd = tmp_path_factory.mktemp("driver-cwd")
    (cwd / "frames").symlink_to(skycamz_files[0].parent, target_is_directory=True)  # the same paths for A and B
    table = pq.read_table(require_shared(TYCHO))  # cut to 12 deg around the two pointings, as test_calib_real
    ra, dec = np.radians(table["ra"].to_numpy()), np.radians(table["dec"].to_numpy())
    keep = np.zeros(len(table), bool)
    for ra0, dec0 in np.radians(POINTINGS):
        keep |= np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(ra - ra0) >= np.cos(np.radians(12))
    cut = table.filter(keep)
    (cwd / "tycho2").mkdir()  # two files: the import normalises them on the workers (one file runs in the driver)
    pq.write_table(cut.slice(0, len(cut) // 2), cwd / "tycho2" / "part-1.parquet")
    pq.write_table(cut.slice(len(cut) // 2), cwd / "tycho2" / "part-2.parquet")
    remote = ["--scheduler", cluster]
    with Client(cluster, timeout=30) as client:
        executed = _chain(cwd, "lake-a", remote, remote, remote, remote,
                          tasks=lambda: client.run(lambda dask_worker: dask_worker.state.executed_count))
    # B: ingest and calibrate in the CLI's own process; the refcat import (hats-import needs a cluster) on
    # the default LocalCluster, whose workers share the driver's directory.
    _chain(cwd, "lake-b", ["--scheduler", "synchronous"], ["--workers", "1"], ["--scheduler", "synchronous"], [])
    return cwd / "lake-a", cwd / "lake-b", executed


# -- reading and comparing the lakes ---------------------------------------------------------------
#: Each table's sort key (unique in it).
KEYS = {"frames": ["frame_id"], "sources": ["source_id"], "zeropoints": ["frame_id", "refcat", "flux"],
        "matches": ["source_id", "refcat"], "extinction": ["night", "refcat"], "objects": ["object_id"],
        "maps": ["map_id", "pixel"], "maps_index": ["map_id"]}
#: Columns that legitimately differ between two runs, left out of the comparison. Commit identity and times: batch_id is "<UTC time>-<kind>-<random>", new for every commit, and
#: ingested_at/calibrated_at/created_at are the commit's clock time. processing_s is the wall-clock time
#: a worker spent on the frame. calib_key (and the maps index's calib_keys) hash the catalogue's import
#: record including its `imported_at` (each import is its own catalogue version, by design), so the
#: two lakes' keys differ: they are compared after mapping each lake's single key to one placeholder
#: (_normalise), as is the maps index's path, which names the file by its batch id.
EXCLUDED = {"batch_id", "ingested_at", "calibrated_at", "created_at", "processing_s"}


def _dataset(root: Path, partitioning=None) -> pa.Table:
    files = sorted(str(p) for p in root.rglob("*.parquet")
                   if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts))
    return pads.dataset(files, format="parquet", partitioning=partitioning).to_table()


def _night_table(lake: Path, table: str) -> pa.Table:
    return _dataset(lake / table, pads.HivePartitioning(pa.schema([("night", pa.string())]), null_fallback="unknown"))


def _tables(lake: Path) -> dict[str, pa.Table]:
    return {"frames": _night_table(lake, "frames"), "sources": _dataset(lake / "sources" / "dataset"),
            "zeropoints": _night_table(lake, "zeropoints"), "matches": _night_table(lake, "matches"),
            "extinction": _night_table(lake, "extinction"), "objects": _dataset(lake / "objects" / "dataset"),
            "maps": _night_table(lake, "maps"), "maps_index": _dataset(lake / "maps" / "_index")}


def _normalise(name: str, table: pa.Table, key: str) -> pa.Table:
    """Sorted by the table's keys; the lake's calibration key and the batch id in paths as placeholders;
    the excluded columns dropped."""
    assert table.num_rows, f"{name} is empty"
    for column, placeholder in (("calib_key", "KEY"), ("calib_keys", "KEY")):
        if column in table.column_names:
            values = pc.replace_substring(table[column], key, placeholder)
            assert set(values.to_pylist()) == {placeholder}, (name, column, table[column].unique())
            table = table.set_column(table.column_names.index(column), column, values)
    if name == "maps_index":
        paths = [p.replace(b, "BATCH") for p, b in zip(table["path"].to_pylist(), table["batch_id"].to_pylist())]
        table = table.set_column(table.column_names.index("path"), "path", pa.array(paths, pa.string()))
    keys = KEYS[name]
    assert table.group_by(keys).aggregate([]).num_rows == table.num_rows, f"{name}: {keys} not unique"
    return table.sort_by([(k, "ascending") for k in keys]).drop_columns(
        [c for c in table.column_names if c in EXCLUDED])


def _same(x, y) -> bool:
    """Arrays equal value for value, NaN equal to NaN (at any depth of structs and lists)."""
    x = x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x
    y = y.combine_chunks() if isinstance(y, pa.ChunkedArray) else y
    if x.type != y.type or len(x) != len(y) or not x.is_null().equals(y.is_null()):
        return False
    if pa.types.is_struct(x.type):
        return all(_same(a, b) for a, b in zip(x.flatten(), y.flatten()))
    if pa.types.is_list(x.type) or pa.types.is_large_list(x.type):
        return _same(pc.list_value_length(x), pc.list_value_length(y)) and _same(pc.list_flatten(x),
                                                                                 pc.list_flatten(y))
    if pa.types.is_floating(x.type):
        nan_x, nan_y = pc.is_nan(x), pc.is_nan(y)
        if not nan_x.equals(nan_y):
            return False
        none = pa.scalar(None, x.type)
        return pc.if_else(nan_x, none, x).equals(pc.if_else(nan_y, none, y))
    return x.equals(y)


def _calib_key(tables: dict[str, pa.Table]) -> str:
    keys = tables["zeropoints"]["calib_key"].unique().to_pylist()
    assert len(keys) == 1, keys  # one catalogue, one set of settings
    return keys[0]


def test_cluster_and_local_lakes_hold_the_same_rows(lakes):
    lake_a, lake_b, _ = lakes
    a, b = _tables(lake_a), _tables(lake_b)
    key_a, key_b = _calib_key(a), _calib_key(b)
    assert a["frames"].num_rows == 14 and set(a["frames"]["status"].to_pylist()) == {"ok"}
    assert set(a["zeropoints"]["zp_status"].to_pylist()) == {"ok"}
    for name in KEYS:
        ta, tb = _normalise(name, a[name], key_a), _normalise(name, b[name], key_b)
        assert ta.num_rows == tb.num_rows, (name, ta.num_rows, tb.num_rows)
        assert ta.column_names == tb.column_names, name
        differ = [c for c in ta.column_names if not _same(ta[c], tb[c])]
        assert not differ, f"{name}: columns {differ} differ between the cluster's lake and the local one"


def test_summary_databases_have_the_same_row_counts(lakes):
    lake_a, lake_b, _ = lakes
    counts = []
    for lake in (lake_a, lake_b):
        with sqlite3.connect(lake / "_skylake" / "summary.sqlite") as con:
            names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            counts.append({n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names})
    assert counts[0] == counts[1]
    assert counts[0]["frames"] == 14 and counts[0]["zeropoints"] == 14 and counts[0]["objects"] > 1000
    assert counts[0]["maps"] == 2 and counts[0]["nights"] == 1


def test_the_cluster_did_the_distributed_steps(lakes):
    """ingest, refcat import, calibrate, objects build and maps ran tasks on the external workers (both of
    them over the chain); refresh, which takes no --scheduler, ran none there."""
    _, _, executed = lakes
    for step in ("ingest", "refcat", "calibrate", "objects", "maps"):
        assert sum(executed[step].values()) > 0, (step, executed)
    # hashing, processing (chunks of frames), writing sources and the frame index: on both workers
    assert len(executed["ingest"]) == 2 and all(n > 0 for n in executed["ingest"].values()), executed
    assert all(sum(executed[s][w] for s in executed) > 0 for w in executed["ingest"]), executed
    assert sum(executed["refresh"].values()) == 0, executed
