"""The summary database side of the hardening: the database records which lake it mirrors and refuses
another; no password is ever printed, whatever form the URL takes; and the small faults (--events on
an up-to-date database, a malformed URL, report --no-refresh with the database down) end cleanly.

Lakes hold SYNTHETIC frame rows (skylake.synthetic.summary_rows); Postgres is the real server of
tests/test_summary_db.py (a fresh database per test).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import _admin_engine, run_cli
from conftest import db_rows as _rows

from skylake.db import migrate as migrate_mod
from skylake.db import refresh
from skylake.db.migrate import migrate
from skylake.errors import ForeignLakeError
from skylake.lake import Lake
from skylake.lake.lake import LEGACY_ID_NAMESPACE
from skylake.synthetic.summary_rows import commit_night

SECRET = "Xq7-s3cr3t-pw"


def _lake(path: Path, nights=("2026-05-01",), seed: int = 1) -> Lake:
    lake = Lake.init(path)
    rng = np.random.default_rng(seed)
    for night in nights:
        commit_night(lake, night, 4, rng)
    return lake


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """An empty summary database: a SQLite file outside any lake, or a fresh Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'summary.sqlite'}"
    return request.getfixturevalue("pg_url")


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skylake: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


# -- lake ids -----------------------------------------------------------------------------------------
def test_a_lake_id_is_written_at_init_and_derived_stably_for_older_lakes(tmp_path):
    lake = _lake(tmp_path / "new")
    doc = json.loads(Path(lake.path("_skylake/lake.json")).read_text())
    assert str(uuid.UUID(doc["lake_id"])) == lake.lake_id == Lake.open(lake.url).lake_id

    old = _lake(tmp_path / "old")  # a lake from before lake ids, with commits: derived from commit 1
    doc = json.loads(Path(old.path("_skylake/lake.json")).read_text())
    del doc["lake_id"]
    Path(old.path("_skylake/lake.json")).write_text(json.dumps(doc))
    derived = Lake.open(old.url).lake_id
    assert derived == str(uuid.uuid5(LEGACY_ID_NAMESPACE, old.log.read(1).batch_id)) == Lake.open(old.url).lake_id
    assert "lake_id" not in json.loads(Path(old.path("_skylake/lake.json")).read_text())  # nothing written

    empty = Lake.init(tmp_path / "empty")  # ... without commits: recorded once, under the writer lock
    doc = json.loads(Path(empty.path("_skylake/lake.json")).read_text())
    del doc["lake_id"]
    Path(empty.path("_skylake/lake.json")).write_text(json.dumps(doc))
    recorded = Lake.open(empty.url).lake_id
    assert json.loads(Path(empty.path("_skylake/lake.json")).read_text())["lake_id"] == recorded
    assert Lake.open(empty.url).lake_id == recorded


def test_a_database_refuses_another_lake_until_rebuilt_for_it(tmp_path, db_url):
    a = _lake(tmp_path / "a", ("2026-05-01", "2026-05-02"), seed=1)
    b = _lake(tmp_path / "b", ("2026-06-01",), seed=2)
    refresh(a, db_url)
    before = _rows(db_url, "SELECT frame_id, frame_key FROM frames ORDER BY frame_id")
    state = _rows(db_url, "SELECT lake_version, lake_id, lake_url FROM refresh_state")
    assert state == [(2, a.lake_id, a.url)]

    other = run_cli("refresh", b.url, "--db", db_url)
    assert other.returncode == 2
    line = one_line_error(other)
    assert f"mirrors another lake ({a.url}, lake id {a.lake_id}), not {b.url} (lake id {b.lake_id})" in line
    assert "skylake refresh --full" in line
    assert _rows(db_url, "SELECT frame_id, frame_key FROM frames ORDER BY frame_id") == before  # nothing mixed in
    assert _rows(db_url, "SELECT lake_version, lake_id, lake_url FROM refresh_state") == state
    site = run_cli("report", b.url, str(tmp_path / "site"), "--db", db_url, "--no-refresh")
    assert site.returncode == 2 and "mirrors another lake" in one_line_error(site)

    rebuilt = run_cli("refresh", b.url, "--db", db_url, "--full")  # an explicit rebuild adopts the new lake
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert _rows(db_url, "SELECT lake_version, lake_id FROM refresh_state") == [(1, b.lake_id)]
    assert _rows(db_url, "SELECT count(*) FROM frames WHERE frame_key LIKE '2026-06-01-%'") == [(4,)]
    assert _rows(db_url, "SELECT count(*) FROM frames") == [(4,)]
    with pytest.raises(ForeignLakeError):
        refresh(a, db_url)


def test_a_database_from_before_lake_ids_is_migrated_and_claimed_by_its_lake(tmp_path, db_url, monkeypatch):
    """Schema 3 (no lake_id column) with a watermark: the refresh applies 0004, records this lake, and
    refuses another lake from then on."""
    a = _lake(tmp_path / "a", ("2026-05-01",))
    files = migrate_mod.migration_files()
    monkeypatch.setattr(migrate_mod, "migration_files", lambda: files[:3])
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        assert migrate(conn) == [1, 2, 3]
        conn.execute(sa.text("INSERT INTO refresh_state (id, lake_version) VALUES (1, 0)"))
    engine.dispose()
    monkeypatch.undo()
    report = refresh(a, db_url)
    assert report.migrations == [4, 5, 6, 7] and report.to_version == 1
    assert _rows(db_url, "SELECT lake_version, lake_id FROM refresh_state") == [(1, a.lake_id)]
    with pytest.raises(ForeignLakeError, match="mirrors another lake"):
        refresh(_lake(tmp_path / "b", ("2026-06-01",)), db_url)


# -- passwords ----------------------------------------------------------------------------------------
URL_FORMS = {
    "userinfo": f"postgresql+psycopg://skylake:{SECRET}@127.0.0.1:1/nowhere",
    "userinfo_encoded": f"postgresql+psycopg://skylake:{SECRET.replace('-', '%2D')}@127.0.0.1:1/nowhere",
    "query_password": f"postgresql+psycopg://skylake@127.0.0.1:1/nowhere?password={SECRET}",
    "query_only": f"postgresql+psycopg:///nowhere?host=127.0.0.1&port=1&user=skylake&password={SECRET}",
    "query_sslpassword": f"postgresql+psycopg://skylake@127.0.0.1:1/nowhere?sslmode=require&sslpassword={SECRET}",
    "query_pass_typo": f"postgresql+psycopg://skylake@127.0.0.1:1/nowhere?pass={SECRET}",
    "socket": f"postgresql+psycopg://skylake@/nowhere?host=/nonexistent/socket&password={SECRET}",
    "no_such_database": f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/skylake_no_such_db",
    "malformed_port": f"postgresql+psycopg://skylake:{SECRET}@127.0.0.1:notaport/nowhere",
}


@pytest.fixture(scope="module")
def masking_lake(tmp_path_factory) -> Lake:
    return _lake(tmp_path_factory.mktemp("masking") / "lake")


@pytest.fixture
def secret_env(tmp_path) -> dict:
    """$PGPASSWORD and a password file holding other secrets: they must never be printed either."""
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:*:*:skylake:{SECRET}-pgpass\n")
    passfile.chmod(0o600)
    return {"PGPASSWORD": f"{SECRET}-env", "PGPASSFILE": str(passfile)}


def _assert_no_secret(*texts: str):
    for text in texts:
        assert SECRET not in text and SECRET.replace("-", "%2D") not in text, text


REPORT_FORMS = ("userinfo", "query_password", "malformed_port")  # report reaches the database the same way


@pytest.mark.parametrize("form", list(URL_FORMS))
def test_no_password_is_printed_whatever_the_url_form(tmp_path, masking_lake, secret_env, form):
    url = URL_FORMS[form]
    _admin_engine().dispose()  # the reachable forms need the server (CI fails without it)
    results = [run_cli("--log-level", "DEBUG", "refresh", masking_lake.url, "--db", url, env=secret_env)]
    if form in REPORT_FORMS:
        results.append(run_cli("report", masking_lake.url, str(tmp_path / "site"), "--db", url, env=secret_env))
    for result in results:
        assert result.returncode == (2 if form == "malformed_port" else 5), result.stderr
        assert "***" in result.stderr.strip().splitlines()[-1]  # the error line, after the DEBUG log lines
        _assert_no_secret(result.stdout, result.stderr)
    for path in (tmp_path / "site").rglob("*") if (tmp_path / "site").exists() else []:
        if path.is_file():
            _assert_no_secret(path.read_bytes().decode("utf-8", "replace"))
    if len(results) > 1:
        one_line_error(results[1])


def test_no_password_is_printed_by_a_working_refresh_and_report_at_debug(tmp_path, masking_lake, secret_env, pg_url):
    url = sa.make_url(pg_url).set(password=SECRET).render_as_string(hide_password=False)  # trust auth ignores it
    url += f"?sslpassword={SECRET}"
    refreshed = run_cli("--log-level", "DEBUG", "refresh", masking_lake.url, "--db", url, env=secret_env)
    reported = run_cli(
        "--log-level", "DEBUG", "report", masking_lake.url, str(tmp_path / "site"), "--db", url, env=secret_env
    )
    for result in (refreshed, reported):
        assert result.returncode == 0, result.stderr
        _assert_no_secret(result.stdout, result.stderr)
    assert "postgresql+psycopg://postgres:***@" in refreshed.stdout
    files = [p for p in (tmp_path / "site").rglob("*") if p.is_file()]
    assert files
    for path in files:
        _assert_no_secret(path.read_bytes().decode("utf-8", "replace"))


# -- small faults -------------------------------------------------------------------------------------
def test_refresh_with_events_on_an_up_to_date_database_succeeds(tmp_path):
    lake = _lake(tmp_path / "lake")
    assert run_cli("refresh", lake.url).returncode == 0
    events = tmp_path / "events.csv"
    events.write_text("date,instrument,kind,note\n2026-04-01,SkyCamZ,clean,mirror washed\n")
    again = run_cli("refresh", lake.url, "--events", str(events))
    assert again.returncode == 0, again.stderr
    assert _rows(
        f"sqlite:///{lake.path('_skylake/summary.sqlite')}", "SELECT instrument, kind, note FROM maintenance_events"
    ) == [("SkyCamZ", "clean", "mirror washed")]


@pytest.mark.parametrize(
    "url,reason",
    [
        ("notaurl", r"'notaurl' is not a database URL"),
        ("nosuchdialect://u@h/db", r"cannot use database URL nosuchdialect://u@h/db: Can't load plugin"),
    ],
)
def test_a_malformed_database_url_is_a_usage_error(tmp_path, url, reason):
    lake = _lake(tmp_path / "lake")
    for args in (["refresh", lake.url], ["report", lake.url, str(tmp_path / "site")]):
        result = run_cli(*args, "--db", url)
        assert result.returncode == 2
        assert re.search(reason, one_line_error(result))


def test_report_without_refresh_with_the_database_down_is_one_line_exit_5(tmp_path):
    lake = _lake(tmp_path / "lake")
    result = run_cli(
        "report",
        lake.url,
        str(tmp_path / "site"),
        "--no-refresh",
        "--db",
        "postgresql+psycopg://skylake@127.0.0.1:1/nowhere",
    )
    assert result.returncode == 5
    assert re.search(
        r"report: cannot read the summary database postgresql\+psycopg://skylake@127\.0\.0\.1:1/nowhere: "
        r"connection failed",
        one_line_error(result),
    )
