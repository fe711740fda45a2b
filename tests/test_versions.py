"""One file, one live version; the profile a frame was processed with is kept in the lake; --redo
takes the replaced frames' calibrations and matches with it; a re-run after a killed ingest
calibrates what the killed run committed. SYNTHETIC frames (skylake.synthetic) with their own
reference catalogue, so the calibrations are exact and quick."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from skylake.calib.calibrate import calibrate
from skylake.calib.store import MATCHES, ZEROPOINTS, read_table
from skylake.ingest import VersionConflict
from skylake.lake import Lake
from skylake.objects.build import build_objects
from skylake.objects.truth import object_table
from skylake.pipeline import ingest
from skylake.profile_store import stored_profile
from skylake.refcat import import_refcat
from skylake.synthetic import write_demo_night, write_reference_catalog

NIGHT = dict(
    n_frames=3,
    shape=(384, 384),
    start_utc="2026-03-01T22:00:00",
    cadence_s=1200,
    n_stars=500,
    seed=5,
    cloud=False,
    n_variables=0,
)
MYCAM = """extends = "demo"
[profile]
name = "mycam"
[detection]
thresh = 2.0
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory, dask_client):
    """The frames and a reference catalogue made once; each test gets a fresh lake with it imported."""
    root = tmp_path_factory.mktemp("versions")
    truth = write_demo_night(root / "frames", **NIGHT)
    data, columns_map = write_reference_catalog(truth.stars, root / "refcat")
    lake = Lake.init(root / "template")
    import_refcat(lake, "demo", [data], "generic", columns_map=columns_map, client=dask_client, progress=False)
    return root


@pytest.fixture
def lake(source, tmp_path):
    shutil.copytree(source / "template", tmp_path / "lake")
    return Lake.open(tmp_path / "lake")


def test_another_profile_is_refused_then_replaced_or_kept(lake, source):
    frames = str(source / "frames")
    first = ingest(lake, [frames], "demo")
    assert first.ingested == 3 and first.downstream.calibrations[0].calibrated == 3
    version = lake.log.latest_version()
    with pytest.raises(
        VersionConflict,
        match=r"frames/.*\.fits is already in the lake as frame \d \(\d+\+demo\.\w+\), "
        r"not as \d+\+generic\.\w+ \(and 2 more files\); re-run with --redo",
    ):
        ingest(lake, [frames], "generic")
    assert lake.log.latest_version() == version  # nothing written
    cli = run_cli("ingest", lake.url, frames, "--pipeline", "generic", "--scheduler", "synchronous", "--no-progress")
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and "--keep-versions" in cli.stderr, cli.stderr
    # without --pipeline: the lake's own profile (demo), so the same frames are already there
    cli = run_cli("ingest", lake.url, frames, "--scheduler", "synchronous", "--no-progress")
    assert cli.returncode == 0 and cli.stdout.startswith(
        "profile demo: the one this lake's frames were ingested with (--pipeline NAME for another)\n"
    ), cli.stdout + cli.stderr
    assert lake.log.latest_version() == version  # nothing new

    kept = ingest(lake, [frames], "generic", keep_versions=True)
    assert kept.ingested == 3 and kept.replaced == 0
    cli = run_cli("ingest", lake.url, frames, "--scheduler", "synchronous", "--no-progress")  # which one? the user's
    assert cli.returncode == 2 and cli.stderr.strip().endswith(
        "holds frames of the profiles demo, generic: say which with --pipeline NAME"
    ), cli.stderr
    rows = lake.read_frames(columns=["frame_id", "profile"]).to_pandas()
    assert sorted(rows["profile"]) == ["demo"] * 3 + ["generic"] * 3
    build_objects(lake, refcat="demo")
    objects = object_table(lake)
    assert objects["n_det"].max() == 3  # one version per file: the latest (generic) frames only

    redo = ingest(lake, [frames], "demo", redo=True)
    assert redo.ingested == 3 and redo.replaced == 6
    rows = lake.read_frames(columns=["frame_id", "profile"]).to_pandas()
    assert sorted(rows["profile"]) == ["demo"] * 3
    live = set(rows["frame_id"])
    assert set(lake.read_sources(columns=["frame_id"]).to_pandas()["frame_id"]) == live
    zps = read_table(lake, ZEROPOINTS)
    assert set(zps["frame_id"]) == live and len(zps) == 3  # the replaced frames' calibrations went with them
    assert set(read_table(lake, MATCHES)["frame_id"]) == live


def test_the_ingest_profile_is_kept_and_used_by_later_stages(lake, source, tmp_path):
    mycam = tmp_path / "mycam.toml"
    mycam.write_text(MYCAM.replace("[detection]", '[calibration]\nrefcat = ""\n[detection]'))
    report = ingest(lake, [str(source / "frames")], str(mycam))
    assert report.ingested == 3 and list(report.downstream) == []  # the file names no catalogue
    version = lake.read_frames(columns=["pipeline_version"]).column(0)[0].as_py()
    stored = stored_profile(lake, version)
    assert stored.name == "mycam" and stored.detection.thresh == 2.0 and stored.pipeline_version == version
    mycam.unlink()  # the file is gone; the lake remembers it (with its calibration settings: no catalogue)
    assert calibrate(lake) == []
    cli = run_cli("calibrate", lake.url, "--refcat", "demo", "--scheduler", "synchronous")
    assert cli.returncode == 0 and "3 of 3 frames of mycam calibrated ok against demo" in cli.stdout, (
        cli.stdout + cli.stderr
    )
    maps = run_cli("maps", lake.url, "--refcat", "demo", "--no-export")
    assert maps.returncode == 0 and "maps" in maps.stdout, maps.stderr


def test_a_rerun_calibrates_what_a_killed_ingest_committed(lake, source, monkeypatch):
    """The ingest commits its frames, then dies before calibrating them: the re-run calibrates them."""
    import skylake.calib.calibrate as cal

    monkeypatch.setattr(cal, "calibrate_ingested", lambda *a, **k: [])  # as if killed after the frames' commit
    first = ingest(lake, [str(source / "frames")], "demo")
    assert first.ingested == 3 and read_table(lake, ZEROPOINTS).empty
    monkeypatch.undo()
    again = ingest(lake, [str(source / "frames")], "demo")
    assert again.skipped == 3 and again.ingested == 0
    assert again.downstream.calibrations[0].calibrated == 3
    zps = read_table(lake, ZEROPOINTS)
    assert len(zps) == 3 and (zps["zp_status"] == "ok").all()
    third = ingest(lake, [str(source / "frames")], "demo")
    assert not third.downstream.calibrations and len(read_table(lake, ZEROPOINTS)) == 3  # nothing left to do


def test_rejected_attempts_are_replaced_without_redo(lake, source, tmp_path):
    """A file first rejected (here: a profile reading the wrong HDU) is not a version worth keeping: the
    next attempt with another profile replaces its row without --redo."""
    bad = tmp_path / "hdu.toml"
    bad.write_text('extends = "demo"\n[profile]\nname = "wronghdu"\nhdu = 3\n')
    first = ingest(lake, [str(source / "frames")], str(bad))
    assert len(first.rejected) == 3
    second = ingest(lake, [str(source / "frames")], "demo")
    assert second.ingested == 3 and second.replaced == 3
    rows = lake.read_frames(columns=["status"]).to_pandas()
    assert (rows["status"] == "ok").all() and len(rows) == 3
    assert np.all(pd.notna(read_table(lake, ZEROPOINTS)["zp"]))


def test_objects_after_redo_equal_a_rebuild(lake, source):
    """--redo gives the frames new ids; the objects update after it equals a build from scratch (it split
    light curves: the new detections were associated before the replaced frames' points had gone)."""
    frames = str(source / "frames")
    ingest(lake, [frames], "demo")
    build_objects(lake)
    replaced = set(lake.read_frames(columns=["frame_id"]).column("frame_id").to_pylist())
    ingest(lake, [frames], "demo", redo=True)
    update = build_objects(lake)
    assert update.frames_removed == 3 and update.frames_added == 3
    assert update.partitions_exact == update.partitions_rewritten  # old points gone: recomputed whole
    incremental = object_table(lake).sort_values(["ra", "dec"]).reset_index(drop=True)
    # the light curves hold each new detection once and none of the replaced frames'
    from skylake.objects.files import lightcurves_dataset

    points = lightcurves_dataset(lake).to_table(columns=["source_id", "frame_id"]).to_pandas()
    assert points["source_id"].is_unique and len(points) == incremental["n_det"].sum()
    assert len(points) and not set(points["frame_id"]) & replaced
    build_objects(lake, rebuild=True)
    scratch = object_table(lake).sort_values(["ra", "dec"]).reset_index(drop=True)
    assert len(incremental) == len(scratch)
    cols = ["object_id", "n_det", "n", "ref_id"]
    pd.testing.assert_frame_equal(incremental[cols], scratch[cols])
    assert np.allclose(incremental["mean_mag"], scratch["mean_mag"], equal_nan=True)


def _science(lake: Lake) -> dict:
    """What a user gets from a lake, independent of frame ids and commit times: zeropoints and matches by
    file, objects by position, and the summary database's frames, zeropoints, nights and objects."""
    import sqlalchemy as sa

    from skylake.db.mirror import refresh

    path = lake.read_frames(columns=["frame_id", "path"]).to_pandas()

    def by_file(t, cols):
        return t.merge(path, on="frame_id")[["path", *cols]].sort_values(["path", *cols[:1]]).reset_index(drop=True)

    zps = by_file(read_table(lake, ZEROPOINTS), ["refcat", "zp", "zp_err", "zp_status", "zp_n"])
    matches = by_file(read_table(lake, MATCHES), ["ref_id", "ref_mag", "inst_mag", "mag"])
    objects = (
        object_table(lake)[["ra", "dec", "ref_id", "n", "mean_mag", "stetson_j"]]
        .round({"ra": 7, "dec": 7})
        .sort_values(["ra", "dec"])
        .reset_index(drop=True)
    )
    report = refresh(lake)
    assert report.db.startswith("sqlite")
    engine = sa.create_engine(f"sqlite:///{lake.path('_skylake/summary.sqlite')}")
    with engine.connect() as conn:
        db = {
            "frames": pd.read_sql("SELECT path, status, n_sources, night FROM frames ORDER BY path", conn),
            "zeropoints": pd.read_sql(
                "SELECT f.path, z.zp, z.zp_status FROM zeropoints z JOIN frames f "
                "ON f.frame_id = z.frame_id ORDER BY f.path",
                conn,
            ),
            "nights": pd.read_sql("SELECT night, n_frames, n_ok, n_sources FROM nights ORDER BY night", conn),
            "objects": pd.read_sql("SELECT count(*) AS n, sum(n) AS points FROM objects", conn),
        }
    engine.dispose()
    return {"zeropoints": zps, "matches": matches, "objects": objects, **{f"db {k}": v for k, v in db.items()}}


def test_redo_and_a_killed_then_rerun_ingest_equal_a_clean_run(source, tmp_path, monkeypatch):
    """With a reference catalogue imported: a clean run; the same then --redo; an ingest killed after its
    frames' commit (before calibrating) then run again. Zeropoints, matches, objects and the summary
    database are the same in all three (frame ids differ: compared by file and by position)."""
    import skylake.calib.calibrate as cal

    frames = str(source / "frames")
    lakes = {}
    for name in ("clean", "redo", "killed"):
        shutil.copytree(source / "template", tmp_path / name)
        lakes[name] = Lake.open(tmp_path / name)
    ingest(lakes["clean"], [frames], "demo")
    build_objects(lakes["clean"])
    ingest(lakes["redo"], [frames], "demo")
    build_objects(lakes["redo"])
    refresh_first = _science(lakes["redo"])  # the database held the replaced frames' rows before the redo
    assert len(refresh_first["db frames"]) == 3
    ingest(lakes["redo"], [frames], "demo", redo=True)
    build_objects(lakes["redo"])
    with monkeypatch.context() as m:
        m.setattr(cal, "calibrate_ingested", lambda *a, **k: [])  # as if killed after the frames' commit
        ingest(lakes["killed"], [frames], "demo")
    assert read_table(lakes["killed"], ZEROPOINTS).empty
    ingest(lakes["killed"], [frames], "demo")
    build_objects(lakes["killed"])
    clean = _science(lakes["clean"])
    assert len(clean["zeropoints"]) == 3 and len(clean["matches"]) > 100 and len(clean["objects"]) > 100
    for name in ("redo", "killed"):
        other = _science(lakes[name])
        for key, table in clean.items():
            pd.testing.assert_frame_equal(other[key], table, check_exact=False, rtol=1e-9, obj=f"{name}: {key}")
