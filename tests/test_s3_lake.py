"""A lake on object storage: the 14 real SkyCamZ frames in ``s3://`` on a real S3-compatible server (moto's
standalone server, started and stopped here) against the same run on a local disk, row for row; the commit,
crash and concurrency tests of tests/test_reliability.py run against it the same way."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO, run_cli
from test_reliability import INGEST, lake_content

from skylake.lake import Lake
from skylake.status import lake_status
from skylake.testing.s3 import s3_server

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def s3():
    """The server's endpoint; its environment is in os.environ (and so in every subprocess) meanwhile."""
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, skycamz_files):
    lake = tmp_path_factory.mktemp("local") / "lake"
    run_cli("ingest", str(lake), str(skycamz_files[0].parent), "--create", *INGEST, check=True)
    return lake


def _url(request) -> str:
    return f"s3://skylake/{request.node.name.replace('[', '-').replace(']', '')}"


# committed and not published (rolled forward by copies), and published in part (the copies finished); the other
# fault points of tests/test_reliability.py exercise nothing that differs on S3
@pytest.mark.parametrize("fault", ["after_commit@2", "mid_publish@3"])
def test_sigkill_on_s3_then_rerun_equals_a_clean_run(s3, request, skycamz_files, local_run, fault):
    url = _url(request)
    run_cli("init", url, check=True)
    fast = {"SKYLAKE_LEASE_S": "2"}  # the killed writer's lease is taken over after ~3 s, not ~45 s
    killed = run_cli("ingest", url, str(skycamz_files[0].parent), *INGEST, env={"SKYLAKE_FAULT": fault, **fast})
    assert killed.returncode == -9, f"fault {fault} did not fire: {killed.returncode}\n{killed.stderr}"
    rerun = run_cli("ingest", url, str(skycamz_files[0].parent), *INGEST, env=fast)
    assert rerun.returncode == 0, rerun.stderr
    status = lake_status(Lake.open(url))
    assert status["consistent"] and status["frames"] == 14
    pd.testing.assert_frame_equal(lake_content(url), lake_content(local_run))


def test_two_writers_on_s3_land_every_row_once(s3, request, skycamz_files, local_run):
    url = _url(request)
    run_cli("init", url, check=True)
    first, second = [str(p) for p in skycamz_files[:10]], [str(p) for p in skycamz_files[4:]]  # 6 in common
    cmd = [sys.executable, "-m", "skylake.cli", "ingest", url]
    opts = ["--pipeline", "skycamz", "--scheduler", "synchronous", "--batch-size", "2", "--no-progress"]
    procs = [
        subprocess.Popen(cmd + files + opts, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for files in (first, second)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    pd.testing.assert_frame_equal(lake_content(url), lake_content(local_run))
    log = Lake.open(url).log
    assert log.latest_version() == log.published_version() >= 5  # both wrote, batch by batch


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Source rows without the ids a run allocates (and HATS partition columns), in a fixed order."""
    ids = ["source_id", "frame_id", "Norder", "Dir", "Npix", "_healpix_29"]
    df = df.drop(columns=[c for c in ids if c in df.columns])
    return df[sorted(df.columns)].sort_values(["ra", "dec", "x", "y"]).reset_index(drop=True)


def test_pyarrow_duckdb_and_lsdb_read_the_s3_lake_as_the_local_one(s3, request, skycamz_files, local_run):
    import dask
    import duckdb
    import lsdb
    import pyarrow.dataset as pads
    import s3fs
    from upath import UPath

    url = _url(request)
    run_cli("ingest", url, str(skycamz_files[0].parent), "--create", *INGEST, check=True)
    pd.testing.assert_frame_equal(lake_content(url), lake_content(local_run))  # skylake's own readers
    status = lake_status(Lake.open(url))
    assert status["consistent"] and status["frames"] == 14
    key = url.removeprefix("s3://")
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    local = _canonical(pads.dataset(local_run / "sources" / "dataset", partitioning="hive").to_table().to_pandas())
    remote = pads.dataset(f"{key}/sources/dataset", filesystem=fs, partitioning="hive").to_table().to_pandas()
    pd.testing.assert_frame_equal(_canonical(remote), local, check_dtype=False)
    con = duckdb.connect()
    con.register_filesystem(fs)  # s3:// through s3fs, with the environment's endpoint and credentials
    query = "select count(*), round(sum(flux_ap3), 3) from read_parquet('{}/sources/dataset/**/*.parquet')"
    assert con.sql(query.format(url)).fetchall() == con.sql(query.format(local_run)).fetchall()
    catalog = lsdb.open_catalog(UPath(f"{url}/sources", anon=False))  # hats reads s3:// anonymously by default
    assert catalog.hc_structure.catalog_info.total_rows == len(local)
    with dask.config.set(scheduler="synchronous"):  # not a cluster another test started without the S3 keys
        pd.testing.assert_frame_equal(_canonical(catalog.compute()), local, check_dtype=False)


def test_redo_compact_time_travel_and_vacuum_on_s3(s3, request, skycamz_files, local_run):
    from skylake.lake import open_lake
    from skylake.lake.compact import compact
    from skylake.lake.snapshot import vacuum

    url = _url(request)
    run_cli("ingest", url, str(skycamz_files[0].parent), "--create", *INGEST, check=True)  # 4 batches
    first = _canonical(open_lake(url).read_sources().to_pandas())
    v_ingest = Lake.open(url).log.latest_version()
    run_cli("ingest", url, *map(str, skycamz_files[:4]), *INGEST, "--redo", check=True)  # 4 frames replaced
    done = compact(Lake.open(url))
    assert done["version"] is not None and done["files_removed"] > 0
    lake = Lake.open(url)
    assert lake_status(lake)["consistent"] and lake_status(lake)["frames"] == 14
    pd.testing.assert_frame_equal(lake_content(url), lake_content(local_run))  # redo and compaction: same rows
    then = open_lake(url, version=v_ingest)  # time travel: the files the redo and compaction removed, retained
    pd.testing.assert_frame_equal(_canonical(then.read_sources().to_pandas()), first)
    assert then.read_frames(columns=["frame_id"]).num_rows == 14
    gone = vacuum(Lake.open(url), retain_days=0)
    assert gone["files"] > 0
    with pytest.raises(Exception, match=f"version {v_ingest}"):
        open_lake(url, version=v_ingest)
    pd.testing.assert_frame_equal(lake_content(url), lake_content(local_run))


@pytest.fixture(scope="module")
def tycho_cut(tmp_path_factory) -> str:
    """Tycho-2 within 12 deg of the SkyCamZ pointings (the skycamz profile's catalogue)."""
    import pyarrow.parquet as pq
    from conftest import require_shared
    from test_calib_real import TYCHO, _near

    table = pq.read_table(require_shared(TYCHO))
    path = tmp_path_factory.mktemp("tycho") / "tycho2_vt.parquet"
    pq.write_table(table.filter(_near(table["ra"].to_numpy(), table["dec"].to_numpy(), 12.0)), path)
    return str(path)


def products(url: str, tycho: str, paths: list[str], out: str) -> None:
    """Refcat import, ingest (which calibrates), objects and maps in this process, with dask's synchronous
    scheduler; what they committed is written to ``out`` (JSON). Run in a fresh process by the test below: a
    pytest worker may hold a cluster another test file started before the S3 keys were in the environment."""
    import json

    import dask

    from skylake.calib.store import ZEROPOINTS, read_table
    from skylake.maps import make_maps
    from skylake.maps.store import read_index, read_maps
    from skylake.objects import build_objects
    from skylake.objects.files import lightcurves_dataset, objects_dataset
    from skylake.pipeline import ingest
    from skylake.refcat import import_refcat
    from skylake.runtime import dask_client

    lake = Lake.init(url)
    with dask.config.set(scheduler="synchronous"), dask_client("synchronous") as client:
        import_refcat(lake, "tycho2", [tycho], "tycho2", client=client, progress=False)
        assert ingest(lake, paths, "skycamz", client=client, progress=False).ingested == 14
        build_objects(lake)
        make_maps(lake)
    lake = Lake.open(url)
    frames = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    zps = read_table(lake, ZEROPOINTS).merge(frames, on="frame_id")[["path", "zp", "zp_err", "zp_n", "zp_status"]]
    rows = {
        "objects": objects_dataset(lake).count_rows(),
        "light-curve points": lightcurves_dataset(lake).count_rows(),
        "maps": len(read_index(lake)),
        "map pixels": len(read_maps(lake)),
    }
    zps = zps.sort_values("path").astype({"zp": float, "zp_err": float, "zp_n": int})
    with open(out, "w") as fh:
        json.dump({"zeropoints": zps.to_dict(orient="list"), "rows": rows}, fh)


def _products(url: str, tycho: str, skycamz_files, out) -> dict:
    import json

    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); import test_s3_lake; "
        f"test_s3_lake.products({url!r}, {tycho!r}, {[str(p) for p in skycamz_files]!r}, {str(out)!r})"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=600)
    with open(out) as fh:
        got = json.load(fh)
    return {"zeropoints": pd.DataFrame(got["zeropoints"]), "rows": got["rows"]}


def test_calibrate_objects_and_maps_on_s3_equal_the_local_disk(s3, request, skycamz_files, tycho_cut, tmp_path):
    local = _products(str(tmp_path / "lake"), tycho_cut, skycamz_files, tmp_path / "local.json")
    remote = _products(_url(request), tycho_cut, skycamz_files, tmp_path / "remote.json")
    assert len(local["zeropoints"]) == 14 and (local["zeropoints"]["zp_status"] == "ok").all()
    pd.testing.assert_frame_equal(remote["zeropoints"], local["zeropoints"])
    assert remote["rows"] == local["rows"] and min(local["rows"].values()) > 0


def test_s3_mistakes_get_one_line_and_exit_2(s3, request):
    url = _url(request)
    run_cli("init", url, check=True)
    missing = run_cli("status", "s3://no-such-bucket/lake")
    assert missing.returncode == 2
    assert "bucket 'no-such-bucket' does not exist (or these credentials cannot see it)" in missing.stderr
    no_db = run_cli("refresh", url)  # the summary database cannot live inside an s3:// lake
    assert no_db.returncode == 2 and "give --db URL" in no_db.stderr and "Traceback" not in no_db.stderr
    watch = run_cli("watch", url, str(REPO), "--pipeline", "demo", "--once")  # refused at start, not per batch
    assert watch.returncode == 2 and "give --db URL" in watch.stderr
    away = run_cli("status", url, env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"})
    assert away.returncode == 2 and "Traceback" not in away.stderr
    assert away.stderr.startswith("skylake: error: the object store refused or did not answer: EndpointConnectionError")
