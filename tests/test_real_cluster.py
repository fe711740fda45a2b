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

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO, SHARED_DATA, SKYCAMZ, require_shared

from skylake.testing.compare import KEYS, OPTIONAL, calib_key, compare, keys_unique, normalise, read_tables

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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
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
        log = open(home / f"{name}.log", "w")  # noqa: SIM115 - the process writes to it while it runs; closed at teardown
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [str(DASK), *args],
                cwd=home,
                env=_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

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
            start(
                [
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--memory-limit",
                    "2GB",
                    "--no-dashboard",
                    "--local-directory",
                    str(home / f"worker-{i}"),
                    "--name",
                    f"worker-{i}",
                ],
                f"worker-{i}",
            )
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
    """``skylake *args`` from ``cwd``; a step that has not ended in 10 minutes fails naming itself (a hang, or a
    machine far slower than any seen: each step takes 5-40 s), with what it had printed."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "skylake.cli", *args],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=cwd,
            timeout=600,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"skylake {' '.join(args)} had not ended after {e.timeout} s:\n{e.stdout}\n{e.stderr}")
    print(f"skylake {' '.join(args)}: {time.perf_counter() - start:.1f} s")
    assert proc.returncode == 0, f"skylake {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _chain(
    cwd: Path, lake: str, ingest: list[str], refcat: list[str], calibrate: list[str], products: list[str], tasks=None
) -> dict:
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
        executed = _chain(
            cwd,
            "lake-a",
            remote,
            remote,
            remote,
            remote,
            tasks=lambda: client.run(lambda dask_worker: dask_worker.state.executed_count),
        )
    # B: ingest and calibrate in the CLI's own process; the refcat import (hats-import needs a cluster) on
    # the default LocalCluster, whose workers share the driver's directory.
    _chain(cwd, "lake-b", ["--scheduler", "synchronous"], ["--workers", "1"], ["--scheduler", "synchronous"], [])
    return cwd / "lake-a", cwd / "lake-b", executed


# -- comparing the lakes: skylake.testing.compare (shared with benchmarks/compare_versions.py) -----------------


def test_cluster_and_local_lakes_hold_the_same_rows(lakes):
    lake_a, lake_b, _ = lakes
    a, b = read_tables(lake_a), read_tables(lake_b)
    key_a, key_b = calib_key(a), calib_key(b)  # one catalogue, one set of settings
    assert key_a and key_b
    assert a["frames"].num_rows == 14 and set(a["frames"]["status"].to_pylist()) == {"ok"}
    assert set(a["zeropoints"]["zp_status"].to_pylist()) == {"ok"}
    for name in KEYS:
        if name in OPTIONAL and name not in a and name not in b:
            continue
        for table in (a[name], b[name]):
            assert table.num_rows, f"{name} is empty"
            assert keys_unique(table, KEYS[name]), f"{name}: {KEYS[name]} not unique"
        ta, tb = normalise(name, a[name], key_a), normalise(name, b[name], key_b)
        for column in ("calib_key", "calib_keys"):  # every row of the lake carries its one key
            for table in (ta, tb):
                if column in table.column_names:
                    assert set(table[column].to_pylist()) == {"KEY"}, (name, column, table[column].unique())
        result = compare(ta, tb)
        assert result.rows_a == result.rows_b, (name, result.rows_a, result.rows_b)
        assert ta.column_names == tb.column_names, name
        assert not result.differ, f"{name}: columns {result.differ} differ between the cluster's lake and the local one"


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
