"""The summary database against the real Postgres server (127.0.0.1:5432, user postgres, database
test) and SQLite: the DDL in sql/ matches the models, refreshes mirror the lake exactly and
incrementally, never duplicate, survive a killed connection, and store hostile strings verbatim.

Lakes here hold SYNTHETIC frames (skylake.synthetic), three nights of three small frames each.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from astropy.io import fits
from conftest import db_rows as _rows

from skylake.db import DbError, refresh
from skylake.db.migrate import migrate
from skylake.db.models import column_types, metadata
from skylake.lake import Lake
from skylake.maps import make_maps
from skylake.maps.store import read_index
from skylake.objects.build import build_objects
from skylake.pipeline import ingest
from skylake.refcat import import_refcat
from skylake.synthetic import write_demo_night, write_reference_catalog

NIGHTS = ("2026-03-01", "2026-03-02", "2026-03-03")
HOSTILE_OBJECT = "M31'); DROP TABLE frames; --"
HOSTILE_FILTER = 'r" OR 1=1; DELETE FROM nights'


def _write_night(out: Path, night: str, hostile: bool = False) -> list[str]:
    truth = write_demo_night(
        out / night,
        n_frames=3,
        shape=(256, 256),
        n_stars=150,
        seed=int(night[-2:]),
        start_utc=f"{night}T22:00:00",
        cloud=False,
        n_variables=0,
    )
    paths = [str(p) for p in truth.paths]
    if hostile:
        with fits.open(paths[0], mode="update") as hdul:
            hdul[0].header["OBJECT"] = HOSTILE_OBJECT
            hdul[0].header["FILTER"] = HOSTILE_FILTER
    return paths


@pytest.fixture(scope="module")
def frames_dirs(tmp_path_factory):
    """Three nights of synthetic frames, written once (the first frame of night 1 has hostile strings)."""
    out = tmp_path_factory.mktemp("summary_frames")
    return {night: _write_night(out, night, hostile=(night == NIGHTS[0])) for night in NIGHTS}


def _lake(tmp_path, frames_dirs, nights) -> Lake:
    lake = Lake.init(tmp_path / "lake")
    for night in nights:  # one ingest per night, as a nightly job would
        ingest(lake, frames_dirs[night], "demo", client=None, progress=False)
    return lake


def _lake_aggregates(lake: Lake) -> list[tuple]:
    """Per-night counts computed independently of skylake.db, by DuckDB on the lake's Parquet files."""
    return duckdb.sql(f"""
        SELECT CAST(night AS VARCHAR) AS night, count(*) AS n_frames, count(*) FILTER (WHERE status = 'ok') AS n_ok,
               sum(n_sources) AS n_sources, min(mjd) AS mjd_first
        FROM read_parquet('{lake.path("frames")}/*/*.parquet', hive_partitioning = true, hive_types_autocast = false)
        GROUP BY night ORDER BY night""").fetchall()


def _db_aggregates(url: str) -> list[tuple]:
    return _rows(
        url,
        """SELECT CAST(night AS TEXT), CAST(sum(n_frames) AS BIGINT), CAST(sum(n_ok) AS BIGINT),
                                CAST(sum(n_sources) AS BIGINT), min(mjd_first)
                         FROM nights GROUP BY night ORDER BY night""",
    )


# -- the DDL and the models --------------------------------------------------------------------------
def test_postgres_ddl_in_sql_matches_the_models(pg_url):
    """sql/migrations creates exactly the tables, columns, types, nullability and keys of the models
    (which come from schemas/summary.yaml)."""
    from sqlalchemy.dialects import postgresql

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        assert migrate(conn) == [1, 2, 3, 4, 5, 6, 7]
        assert migrate(conn) == []  # applied once
    inspector = sa.inspect(engine)
    dialect = postgresql.dialect()
    for name, model in metadata().tables.items():
        reflected = {c["name"]: c for c in inspector.get_columns(name)}
        assert list(reflected) == [c.name for c in model.columns], name
        for col in model.columns:
            got = reflected[col.name]
            assert got["type"].compile(dialect) == col.type.compile(dialect), (name, col.name)
            assert got["nullable"] == col.nullable, (name, col.name)
        assert inspector.get_pk_constraint(name)["constrained_columns"] == [c.name for c in model.primary_key]
    assert column_types("frames")["frame_id"] == "bigint" and column_types("nights")["night"] == "date"
    engine.dispose()


# -- refresh against Postgres -------------------------------------------------------------------------
def test_refresh_mirrors_the_lake_and_is_incremental(tmp_path, frames_dirs, pg_url):
    lake = _lake(tmp_path, frames_dirs, NIGHTS[:2])
    first = refresh(lake, pg_url)
    assert first.from_version == 0 and first.to_version == lake.log.published_version() == 2
    assert first.nights_recomputed == list(NIGHTS[:2])
    assert _db_aggregates(pg_url) == _lake_aggregates(lake)

    # frames are mirrored row for row
    lake_frames = lake.read_frames(columns=["frame_id", "frame_key", "status", "n_sources", "mjd"]).to_pylist()
    db_frames = _rows(pg_url, "SELECT frame_id, frame_key, status, n_sources, mjd FROM frames ORDER BY frame_id")
    assert db_frames == sorted(tuple(r.values()) for r in lake_frames)

    # a second refresh finds nothing to do and changes nothing
    before = _rows(pg_url, "SELECT * FROM nights ORDER BY night")
    again = refresh(lake, pg_url)
    assert again.nights_recomputed == [] and again.from_version == again.to_version == 2
    assert _rows(pg_url, "SELECT * FROM nights ORDER BY night") == before
    assert _rows(pg_url, "SELECT count(*), count(DISTINCT frame_id) FROM frames") == [(6, 6)]

    # a new night: only that night is recomputed; the others' rows are untouched (same refreshed_at)
    ingest(lake, frames_dirs[NIGHTS[2]], "demo", client=None, progress=False)
    third = refresh(lake, pg_url)
    assert third.nights_recomputed == [NIGHTS[2]]
    assert third.rows["frames"] == 3 and third.rows["nights"] == 1 and third.rows["ingest_batches"] == 1
    after = _rows(pg_url, "SELECT * FROM nights ORDER BY night")
    assert after[: len(before)] == before and len(after) == len(before) + 1
    assert _db_aggregates(pg_url) == _lake_aggregates(lake)
    assert _rows(pg_url, "SELECT version, operation FROM ingest_batches ORDER BY version") == [
        (1, "ingest"),
        (2, "ingest"),
        (3, "ingest"),
    ]
    assert _rows(pg_url, "SELECT lake_version, nights_recomputed FROM refresh_state") == [(3, 1)]


def test_hostile_header_strings_are_stored_verbatim(tmp_path, frames_dirs, pg_url):
    lake = _lake(tmp_path, frames_dirs, NIGHTS[:1])
    refresh(lake, pg_url)
    got = _rows(pg_url, "SELECT object, filter FROM frames WHERE object LIKE 'M31%'")
    assert got == [(HOSTILE_OBJECT, HOSTILE_FILTER)]
    # nothing was dropped or deleted, and the strange filter got its own nightly row
    assert _rows(pg_url, "SELECT count(*) FROM frames") == [(3,)]
    assert sorted(r[0] for r in _rows(pg_url, "SELECT filter FROM nights")) == sorted([HOSTILE_FILTER, "V"])


def test_a_connection_killed_mid_refresh_leaves_the_database_consistent(tmp_path, frames_dirs, pg_url):
    """pg_terminate_backend on the refresh's own connection after it wrote the frames: nothing of that
    refresh is visible, the watermark is unchanged, and the next refresh converges to a clean one."""
    lake = _lake(tmp_path, frames_dirs, NIGHTS[:2])
    refresh(lake, pg_url)
    ingest(lake, frames_dirs[NIGHTS[2]], "demo", client=None, progress=False)
    before = _rows(pg_url, "SELECT frame_id, status FROM frames ORDER BY frame_id")
    killer = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")

    def kill_own_backend(step, conn):
        if step == "frames_written":
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            with killer.connect() as k:
                assert k.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()

    with pytest.raises(DbError, match="nothing was written"):
        refresh(lake, pg_url, hook=kill_own_backend)
    killer.dispose()
    assert _rows(pg_url, "SELECT frame_id, status FROM frames ORDER BY frame_id") == before
    assert _rows(pg_url, "SELECT lake_version FROM refresh_state") == [(2,)]

    report = refresh(lake, pg_url)
    assert report.nights_recomputed == [NIGHTS[2]]
    assert _db_aggregates(pg_url) == _lake_aggregates(lake)
    assert _rows(pg_url, "SELECT count(*), count(DISTINCT frame_id) FROM frames") == [(9, 9)]


def test_overlapping_refreshes_take_turns(tmp_path, frames_dirs, pg_url):
    """Two refreshes at once (threads, separate connections): one mirrors, the other finds the
    watermark advanced; no row twice."""
    lake = _lake(tmp_path, frames_dirs, NIGHTS)
    reports, errors = [], []

    def run():
        try:
            reports.append(refresh(Lake.open(lake.url), pg_url))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(len(r.nights_recomputed) for r in reports) == [0, 3]
    assert _rows(pg_url, "SELECT count(*), count(DISTINCT version) FROM ingest_batches") == [(3, 3)]
    assert _db_aggregates(pg_url) == _lake_aggregates(lake)


def test_an_unreachable_database_fails_cleanly_and_masks_the_password(tmp_path, frames_dirs):
    lake = _lake(tmp_path, frames_dirs, NIGHTS[:1])
    published = lake.log.published_version()
    url = "postgresql+psycopg://skylake:s3cr3t-pw@127.0.0.1:1/nowhere"
    with pytest.raises(DbError) as info:
        refresh(lake, url)
    assert "s3cr3t-pw" not in str(info.value) and "***" in str(info.value)
    assert lake.log.published_version() == published  # the lake is untouched
    result = subprocess.run(
        [sys.executable, "-m", "skylake.cli", "refresh", str(lake.url), "--db", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 5
    assert "s3cr3t-pw" not in result.stdout + result.stderr


# -- SQLite, the embedded default -------------------------------------------------------------------------
def test_sqlite_default_lives_in_the_lake_and_matches_postgres_semantics(tmp_path, frames_dirs):
    lake = _lake(tmp_path, frames_dirs, NIGHTS[:2])
    result = subprocess.run(
        [sys.executable, "-m", "skylake.cli", "refresh", str(lake.url)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    db = Path(lake.path("_skylake/summary.sqlite"))
    assert db.exists()
    url = f"sqlite:///{db}"
    assert _db_aggregates(url) == _lake_aggregates(lake)
    ingest(lake, frames_dirs[NIGHTS[2]], "demo", client=None, progress=False)
    assert refresh(lake).nights_recomputed == [NIGHTS[2]]
    assert refresh(lake).nights_recomputed == []
    assert _db_aggregates(url) == _lake_aggregates(lake)
    full = refresh(lake, full=True)
    assert full.nights_recomputed == list(NIGHTS)
    assert _rows(url, "SELECT count(*), count(DISTINCT frame_id) FROM frames") == [(9, 9)]
    assert np.isclose(_rows(url, "SELECT sum(n_sources) FROM nights")[0][0], sum(r[3] for r in _lake_aggregates(lake)))


# -- calibrated nights: zeropoints, objects and maps --------------------------------------------------------
CAL_NIGHTS = {"2026-04-01": 150.0, "2026-04-02": 210.0}  # night: field RA [deg]; fields far apart on the sky


@pytest.fixture(scope="module")
def calibrated_frames(tmp_path_factory):
    """Two SYNTHETIC nights, one field each, and the reference catalogue of both fields' stars."""
    out = tmp_path_factory.mktemp("calibrated_frames")
    truths = {
        night: write_demo_night(
            out / night,
            n_frames=3,
            shape=(384, 384),
            n_stars=500,
            seed=20 + i,
            ra0_deg=ra,
            start_utc=f"{night}T22:00:00",
            cloud=False,
            n_variables=0,
            color_term=0.1,
        )
        for i, (night, ra) in enumerate(CAL_NIGHTS.items())
    }
    stars = pd.concat(
        [t.stars.assign(star_id=t.stars["star_id"] + 1_000_000 * i) for i, t in enumerate(truths.values())]
    )
    return out, write_reference_catalog(stars, out / "refcat")


def _lake_zeropoints(lake: Lake) -> list[tuple]:
    """Per night: ok frames and the median ok zeropoint, by DuckDB on the lake's Parquet files."""
    return duckdb.sql(f"""
        SELECT CAST(night AS VARCHAR), count(*), median(zp)
        FROM read_parquet('{lake.path("zeropoints")}/*/*.parquet', hive_partitioning = true,
                          hive_types_autocast = false)
        WHERE zp_status = 'ok' GROUP BY night ORDER BY night""").fetchall()


def _lake_objects(lake: Lake) -> list[tuple]:
    return duckdb.sql(f"""
        SELECT object_id, CAST(Norder AS INTEGER), CAST(Npix AS BIGINT), n, median_mag, stetson_j
        FROM read_parquet('{lake.path("objects")}/dataset/*/*/*/*.parquet', hive_partitioning = true)
        ORDER BY object_id""").fetchall()


def _add_night(lake: Lake, frames_root: Path, night: str, client) -> None:
    """What a nightly job does: ingest (which calibrates), map the night, attach it to the objects."""
    report = ingest(lake, [str(frames_root / night)], "demo", client=client, progress=False)
    assert report.ingested == 3 and report.downstream.calibrations[0].calibrated == 3
    make_maps(lake, night=night, frames_of=("equatorial",))
    build_objects(lake)


def test_calibrated_lake_mirrors_zeropoints_objects_and_maps(tmp_path, calibrated_frames, pg_url, dask_client):
    """After ingest and calibration the database equals the lake's aggregates (computed here by DuckDB);
    a second night recomputes only that night, only the objects its update wrote (in the far field's
    partitions) and only its map; a second refresh changes nothing."""
    frames_root, (refcat_data, refcat_map) = calibrated_frames
    first, second = CAL_NIGHTS
    lake = Lake.init(tmp_path / "lake")
    import_refcat(lake, "demo", [refcat_data], "generic", columns_map=refcat_map, client=dask_client, progress=False)
    _add_night(lake, frames_root, first, dask_client)
    refresh(lake, pg_url)

    zp_db = _rows(pg_url, "SELECT CAST(night AS TEXT), n_calibrated, zp_median FROM nights ORDER BY night")
    zp_lake = _lake_zeropoints(lake)
    assert [r[:2] for r in zp_db] == [r[:2] for r in zp_lake] == [(first, 3)]
    assert np.allclose([r[2] for r in zp_db], [r[2] for r in zp_lake], rtol=0, atol=1e-9)
    assert _rows(pg_url, "SELECT count(*) FROM zeropoints WHERE zp_status = 'ok'") == [(3,)]
    objects_db = "SELECT object_id, norder, npix, n, median_mag, stetson_j FROM objects ORDER BY object_id"
    before = _rows(pg_url, objects_db)
    assert len(before) > 100 and _approx_rows(before, _lake_objects(lake))
    assert sum(r[0] < 0 for r in before) > 100  # reference stars, identified by their catalogue ids
    maps_db = "SELECT map_id, night_min, n_pixels, n_stars, path FROM maps ORDER BY map_id"
    index = read_index(lake)
    assert _rows(pg_url, maps_db) == sorted(
        index[["map_id", "night_min", "n_pixels", "n_stars", "path"]].itertuples(index=False, name=None)
    )

    _add_night(lake, frames_root, second, dask_client)
    report = refresh(lake, pg_url)
    assert report.nights_recomputed == [second]
    touched = {(o, p) for _, o, p, *_ in _lake_objects(lake) if (o, p) not in {(r[1], r[2]) for r in before}}
    assert touched and report.partitions_recomputed == []  # object by object, no partition whole
    assert report.objects_mirrored == report.rows["objects"] == len(_lake_objects(lake)) - len(before)
    assert report.rows["maps"] == 1
    after = _rows(pg_url, objects_db)
    assert [r for r in after if (r[1], r[2]) not in touched] == before  # the first field's rows untouched
    assert _approx_rows(after, _lake_objects(lake))
    assert (
        [r[:2] for r in _rows(pg_url, "SELECT CAST(night AS TEXT), n_calibrated FROM nights ORDER BY night")]
        == [r[:2] for r in _lake_zeropoints(lake)]
        == [(first, 3), (second, 3)]
    )
    assert len(_rows(pg_url, maps_db)) == 2
    assert _rows(pg_url, "SELECT lake_version, partitions_recomputed, maps_mirrored FROM refresh_state") == [
        (lake.log.published_version(), 0, 1)
    ]

    again = refresh(lake, pg_url)
    assert again.nights_recomputed == [] and again.partitions_recomputed == []
    assert _rows(pg_url, objects_db) == after and len(_rows(pg_url, maps_db)) == 2


def _approx_rows(db: list[tuple], lake: list[tuple], n_int: int = 4) -> bool:
    """Rows equal: the first ``n_int`` columns exactly, the rest as floats to 1e-9 (NULL and NaN alike)."""
    if len(db) != len(lake) or [r[:n_int] for r in db] != [r[:n_int] for r in lake]:
        return False
    a = np.array([[np.nan if v is None else v for v in r[n_int:]] for r in db], dtype=float)
    b = np.array([[np.nan if v is None else v for v in r[n_int:]] for r in lake], dtype=float)
    return np.allclose(a, b, rtol=0, atol=1e-9, equal_nan=True)


# -- objects: a refresh mirrors the objects an update changed, not their partitions -------------------------------
NEAR_NIGHTS = {"2026-05-01": (150.0, 40), "2026-05-02": (150.3, 41)}  # night: (field RA [deg], seed); overlapping


@pytest.fixture(scope="module")
def near_frames(tmp_path_factory):
    """Two SYNTHETIC nights of overlapping fields (different stars), and the reference catalogue of both."""
    out = tmp_path_factory.mktemp("near_frames")
    truths = {
        night: write_demo_night(
            out / night,
            n_frames=2,
            shape=(256, 256),
            n_stars=150,
            seed=seed,
            ra0_deg=ra,
            start_utc=f"{night}T22:00:00",
            cloud=False,
            n_variables=0,
        )
        for night, (ra, seed) in NEAR_NIGHTS.items()
    }
    stars = pd.concat(
        [t.stars.assign(star_id=t.stars["star_id"] + 1_000_000 * i) for i, t in enumerate(truths.values())]
    )
    return out, write_reference_catalog(stars, out / "refcat")


def _lake_object_rows(lake: Lake) -> dict[int, tuple]:
    return {r[0]: r for r in _lake_objects(lake)}


def test_refresh_mirrors_only_the_objects_an_update_changed(tmp_path, near_frames):
    """A night beside one already in the objects table rewrites partitions holding objects it leaves alone:
    the refresh writes exactly the objects the update created or changed (and deletes those a redo
    removed), and the database still equals the lake; a second refresh changes nothing."""
    frames_root, (refcat_data, refcat_map) = near_frames
    first, second = NEAR_NIGHTS
    lake = Lake.init(tmp_path / "lake")
    import_refcat(lake, "demo", [refcat_data], "generic", columns_map=refcat_map, progress=False)
    objects_db = "SELECT object_id, norder, npix, n, median_mag, stetson_j FROM objects ORDER BY object_id"
    url = f"sqlite:///{tmp_path / 'summary.sqlite'}"

    ingest(lake, [str(frames_root / first)], "demo", progress=False)
    build_objects(lake)
    refresh(lake, url)
    before = _lake_object_rows(lake)
    assert _approx_rows(_rows(url, objects_db), list(before.values()))

    ingest(lake, [str(frames_root / second)], "demo", progress=False)
    build_objects(lake)
    after = _lake_object_rows(lake)
    changed = {i for i, r in after.items() if i not in before or not _approx_rows([r], [before[i]])}
    touched = {(r[1], r[2]) for i, r in after.items() if i in changed}
    untouched_there = {i for i, r in after.items() if (r[1], r[2]) in touched and i not in changed}
    assert changed and untouched_there  # the update rewrote partitions holding objects it did not change
    report = refresh(lake, url)
    assert report.rows["objects"] == len(changed) and report.partitions_recomputed == []
    assert report.objects_mirrored == len(changed)
    assert _approx_rows(_rows(url, objects_db), list(after.values()))

    # a redo of the second night: its objects lose their points and are made again (deleted, new ids)
    ingest(lake, [str(frames_root / second)], "demo", redo=True, progress=False)
    build_objects(lake)
    redone = _lake_object_rows(lake)
    gone = set(after) - set(redone)
    assert gone
    report = refresh(lake, url)
    assert report.objects_mirrored >= len(gone) and report.partitions_recomputed == []
    assert _approx_rows(_rows(url, objects_db), list(redone.values()))
    again = refresh(lake, url)
    assert again.rows == {} and _approx_rows(_rows(url, objects_db), list(redone.values()))


def test_a_refresh_in_small_steps_writes_what_one_step_writes(tmp_path, calibrated_frames, dask_client, monkeypatch):
    """A first refresh reads and inserts a few nights and rows at a time (a decade's archive does not fit in
    memory at once): with steps of one night and 7 rows it writes every table's rows as one step does."""
    from skylake.db import mirror

    frames_root, (refcat_data, refcat_map) = calibrated_frames
    lake = Lake.init(tmp_path / "lake")
    import_refcat(lake, "demo", [refcat_data], "generic", columns_map=refcat_map, client=dask_client, progress=False)
    for night in CAL_NIGHTS:
        _add_night(lake, frames_root, night, dask_client)
    one = refresh(lake, f"sqlite:///{tmp_path / 'one.sqlite'}")
    monkeypatch.setattr(mirror, "NIGHTS_PER_STEP", 1)
    monkeypatch.setattr(mirror, "ROWS_PER_INSERT", 7)
    small = refresh(lake, f"sqlite:///{tmp_path / 'small.sqlite'}")
    assert small.rows == one.rows and one.rows["frames"] == 6 and one.rows["objects"] > 7

    def contents(db: str) -> dict[str, list]:
        engine = sa.create_engine(f"sqlite:///{tmp_path / db}")
        with engine.connect() as conn:
            inspector, out = sa.inspect(conn), {}
            for name in inspector.get_table_names():
                if name in ("refresh_state", "schema_migrations"):  # when each was done
                    continue
                kept = [c["name"] for c in inspector.get_columns(name) if c["name"] != "refreshed_at"]
                rows = conn.execute(sa.text(f'SELECT {", ".join(kept)} FROM "{name}"')).fetchall()
                out[name] = sorted(map(repr, rows))
        engine.dispose()
        return out

    assert contents("small.sqlite") == contents("one.sqlite")
