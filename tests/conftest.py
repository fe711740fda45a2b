"""Shared fixtures. Real data comes from ../shared/data (never copied into the repo); tests that
need it skip with a reason where it is absent (a user's fresh clone) and run in CI."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

import skylake.sections  # noqa: F401 - every stage's profile section registered, as the command line has them

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SKYLAKE_SHARED_DATA", REPO.parent / "shared" / "data"))
SKYCAMZ = SHARED_DATA / "skycamz"
#: The real Postgres server of the standards (fails, never skips, under CI=true).
PG_ADMIN_URL = os.environ.get("SKYLAKE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _admin_engine():
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs Postgres at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"Postgres not reachable at {PG_ADMIN_URL}")
    return engine


@pytest.fixture
def pg_url():
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    admin = _admin_engine()
    name = f"skylake_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def require_shared(path: Path) -> Path:
    """Skip (or, under CI=true, fail) when ../shared/data is not beside the checkout."""
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have the real data at {path}")
        pytest.skip(f"real data not available at {path} (../shared/data is absent in a fresh clone)")
    return path


def require_solve_field() -> str:
    """astrometry.net's ``solve-field`` (Debian astrometry.net and astrometry-data-tycho2-*; .ci/run installs
    them): skip where it is not installed, fail under CI=true."""
    import shutil

    exe = shutil.which("solve-field")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs astrometry.net's solve-field and its Tycho-2 index files (.ci/run installs them)")
        pytest.skip(
            "astrometry.net's solve-field is not installed (Debian packages astrometry.net, astrometry-data-tycho2-*)"
        )
    return exe


@pytest.fixture(scope="session")
def skycamz_files() -> list[Path]:
    files = sorted(require_shared(SKYCAMZ).glob("z_e_*.fits"))
    assert len(files) == 14, f"expected the 14 SkyCamZ frames, found {len(files)}"
    return files


@pytest.fixture(scope="session")
def dask_client():
    """One real LocalCluster (2 worker processes) for the whole session."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client


def run_cli(
    *args: str, env: dict | None = None, check: bool = False, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m skylake.cli ARGS`` in a fresh process (how users and cron run it)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "skylake.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"skylake {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`skylake demo` (the README's first command) run once, from a scratch directory with an absolute
    --out (CI runs the README's relative one): (the directory, the finished process). The README's query
    tour runs in that directory against skylake-demo/lake."""
    cwd = tmp_path_factory.mktemp("demo-cwd")
    full_env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, "-m", "skylake.cli", "demo", "--out", str(cwd / "skylake-demo"), "--workers", "2"],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
        cwd=cwd,
    )
    return cwd, proc


#: Test files that take 20 s or more, longest first (measured with --durations=0, 2026-11-26): started first, so
#: that with one file per process (pytest-xdist --dist loadfile) the suite does not end waiting on one of them.
LONG_FILES = (
    "test_s3_lake.py",
    "test_readme.py",
    "test_reliability.py",
    "test_publish_atomic.py",
    "test_real_cluster.py",
    "test_worker_death.py",
    "test_db_hardening.py",
    "test_rejected_downstream.py",
    "test_calib_real.py",
    "test_snapshots.py",
    "test_watch.py",
    "test_lake_hostile.py",
    "test_versions.py",
    "test_maps.py",
    "test_hostile_files.py",
    "test_objects_partitions.py",
    "test_summary_db.py",
    "test_calib_synthetic.py",
    "test_streak_artefacts.py",
    "test_sky_frames.py",
    "test_objects.py",
    "test_frame_index.py",
    "test_allsky_site_fit.py",
    "test_refcat_partition.py",
    "test_imports.py",
    "test_allsky_ingest.py",
    "test_pointing.py",
    "test_crossmatch_nearest.py",
    "test_refcat.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: a file stays together
    # @pytest.mark.slow tests run only when asked for (-m slow); the benchmarks cover them
    if "slow" not in (config.getoption("markexpr") or ""):
        skip = pytest.mark.skip(reason="slow: run with -m slow (the benchmarks cover it)")
        for item in items:
            if item.get_closest_marker("slow"):
                item.add_marker(skip)


# -- shared lakes and readers ---------------------------------------------------------------------------
def make_synthetic_lake(path: Path, nights: int = 2):
    """A lake with ``nights`` commits of SYNTHETIC sources over a few partitions and their frames."""
    import numpy as np

    from skylake.lake import Lake
    from skylake.synthetic.detections import commit_night, random_stars

    rng = np.random.default_rng(7)
    lake = Lake.init(path)
    stars = random_stars(400, (10.0, 14.0), (0.0, 3.0), rng)
    for k in range(nights):
        commit_night(lake, stars, f"2026-01-0{k + 1}", 3, rng)
    return lake


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def _unmount(path: Path) -> None:
    """Unmount ``path``; a local cluster's worker that is still exiting may hold a file there for a moment
    (busy, exit 32) on a loaded machine: retry, then detach it lazily."""
    import time

    for _ in range(20):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    _run(["umount", "-l", str(path)])


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` read-only for this process: a read-only bind mount as root, permission bits otherwise."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    try:
        _run(["mount", "--bind", str(path), str(path)])
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a read-only bind mount here (running as root, permission bits do not apply): {exc}")
    try:
        _run(["mount", "-o", "remount,ro,bind", str(path)])
        yield
    finally:
        _unmount(path)


def duckdb_counts(lake: Path) -> dict:
    """(rows, distinct ids) of the source and frame tables, by DuckDB globbing the files as analysts do."""
    import duckdb

    con = duckdb.connect()
    sources = con.execute(
        f"SELECT count(*), count(DISTINCT source_id) FROM read_parquet('{lake}/sources/dataset/*/*/*/*.parquet')"
    ).fetchone()
    frames = con.execute(
        f"SELECT count(*), count(DISTINCT frame_id) FROM read_parquet('{lake}/frames/*/*.parquet')"
    ).fetchone()
    return {"sources": sources, "frames": frames}


def lsdb_count(lake: Path) -> tuple[int, int]:
    """(rows, distinct ids) of the source table as lsdb reads it."""
    import lsdb

    df = lsdb.open_catalog(str(lake / "sources")).compute()
    return len(df), df["source_id"].nunique()


def db_rows(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()
