"""A dask worker that dies on a file (out of memory, a crash in C code) is retried once, then the file is
rejected with "worker died processing this file" and the rest of the batch is ingested; a worker that dies
under a writer or a calibration task costs nothing but the retry (real LocalCluster)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from skylake import ingest as ingest_module
from skylake.calib import pairs as calib_pairs
from skylake.calib.calibrate import calibrate
from skylake.calib.store import MATCHES, ZEROPOINTS, read_table
from skylake.ingest import EXIT_SOME_REJECTED, WORKER_DIED
from skylake.lake import Lake, pieces
from skylake.pipeline import ingest
from skylake.refcat import import_refcat
from skylake.runtime import dask_client
from skylake.synthetic import render_frame, tan_wcs_header, write_demo_night, write_frame, write_reference_catalog


def _frame(path, seed):
    rng = np.random.default_rng(seed)
    stars = pd.DataFrame(
        {"x": rng.uniform(10, 190, 40), "y": rng.uniform(10, 190, 40), "flux": 10 ** rng.uniform(4, 5, 40)}
    )
    header = tan_wcs_header(150.0, 20.0, (200, 200), pixscale_arcsec=4.0)
    header.update({"DATE-OBS": "2026-03-01T22:00:00", "EXPTIME": 30.0, "AIRMASS": 1.1, "FILTER": "V"})
    return str(write_frame(path, render_frame(stars, shape=(200, 200), seed=seed), header))


def test_a_file_that_kills_its_worker_is_retried_once_then_rejected(tmp_path, monkeypatch):
    good, deadly = _frame(tmp_path / "good.fits", 1), _frame(tmp_path / "deadly.fits", 2)
    attempts = tmp_path / "attempts.txt"

    real = ingest_module._process

    def process_or_die(item, **kwargs):  # a closure: pickled by value to the worker
        for path, _ in item:  # a chunk of (path, hash)
            if path.endswith("deadly.fits"):
                with open(attempts, "a") as fh:
                    fh.write("attempt\n")
                os._exit(1)  # as the kernel's OOM killer or a segfault would end it
        return real(item, **kwargs)

    monkeypatch.setattr(ingest_module, "_process", process_or_die)
    lake = Lake.init(tmp_path / "lake")
    with dask_client(workers=1) as client:
        report = ingest(lake, [good, deadly], "demo", client=client, progress=False)
    assert attempts.read_text().count("attempt") == 2  # tried, retried once, then given up
    assert report.ingested == 1 and report.rejected == [(deadly, WORKER_DIED)]
    assert report.exit_code == EXIT_SOME_REJECTED
    frames = lake.read_frames().to_pandas().set_index("path")
    assert frames.loc[deadly, "status"] == "rejected" and frames.loc[deadly, "reason"] == WORKER_DIED
    assert frames.loc[good, "status"] == "ok" and frames.loc[good, "n_sources"] > 20
    assert WORKER_DIED.startswith("worker died processing this file")


def test_a_writer_whose_worker_dies_mid_write_is_run_again_and_the_lake_equals_a_clean_run(tmp_path, monkeypatch):
    """Worker-side writes: the task staging a batch's source files dies (its worker killed) after writing
    part of them; it is run again, alone, and the lake holds exactly the rows of an undisturbed run."""
    frames = [_frame(tmp_path / f"f{k}.fits", 10 + k) for k in range(3)]
    clean = Lake.init(tmp_path / "clean")
    ingest(clean, frames, "demo", progress=False)
    attempts = tmp_path / "writer-attempts.txt"
    real = pieces.write_sources

    def write_then_die(plan, **kwargs):
        first = not attempts.exists()
        with open(attempts, "a") as fh:
            fh.write("attempt\n")
        staged = real(plan, **kwargs)  # the files are on disk...
        if first:
            os._exit(1)  # ...and the worker dies before reporting them
        return staged

    monkeypatch.setattr(pieces, "write_sources", write_then_die)
    lake = Lake.init(tmp_path / "lake")
    with dask_client(workers=1) as client:
        report = ingest(lake, frames, "demo", client=client, progress=False)
    assert attempts.read_text().count("attempt") == 2
    assert report.ingested == 3 and not report.rejected
    cols = ["source_id", "frame_id", "ra", "dec", "flux_auto", "_healpix_29"]
    got, want = (x.read_sources(columns=cols).sort_by("source_id") for x in (lake, clean))
    assert got.num_rows == want.num_rows > 60 and got.equals(want)
    assert not os.path.exists(lake.path(pieces.PIECES_DIR))  # the run removed its pieces


# -- calibration: the pairs live on the workers ------------------------------------------------------
@pytest.fixture(scope="module")
def calib_lake(tmp_path_factory):
    """A SYNTHETIC night of three frames ingested uncalibrated, and its reference catalogue imported."""
    root = tmp_path_factory.mktemp("calib-death")
    truth = write_demo_night(
        root / "night",
        n_frames=3,
        shape=(256, 256),
        n_stars=200,
        seed=30,
        start_utc="2026-04-01T22:00:00",
        cloud=False,
        n_variables=0,
    )
    lake = Lake.init(root / "lake")
    ingest(lake, [str(root / "night")], "demo", calibrate=False, progress=False)
    data, columns_map = write_reference_catalog(truth.stars, root / "refcat")
    with dask_client(workers=1) as client:
        import_refcat(lake, "demo", [data], "generic", columns_map=columns_map, client=client, progress=False)
    return root / "lake"


def _calibrated(lake: Lake) -> tuple[pd.DataFrame, pd.DataFrame]:
    zps = read_table(lake, ZEROPOINTS).drop(columns=["batch_id", "calibrated_at"]).sort_values("frame_id")
    matches = read_table(lake, MATCHES).sort_values(["frame_id", "ref_id"])
    return zps.reset_index(drop=True), matches.reset_index(drop=True)


@pytest.mark.parametrize("task", ["fit_group", "write_matches"])
def test_a_calibration_task_whose_worker_dies_is_run_again_and_the_lake_equals_a_clean_run(
    calib_lake, tmp_path, monkeypatch, task
):
    """A fit task (the group's pairs held on the dying worker are lost too: the scheduler recomputes them
    from the cross-match) or a matches writer (after staging its file) dies with its worker the first time;
    it is run again, and the lake holds exactly the rows of an undisturbed run (in process), one matches
    file per night."""
    clean, lake = (Lake.open(shutil.copytree(calib_lake, tmp_path / name)) for name in ("clean", "lake"))
    calibrate(clean)
    attempts = tmp_path / "attempts.txt"
    real = getattr(calib_pairs, task)

    def run_then_die(*args, **kwargs):  # a closure: pickled by value to the worker
        first = not attempts.exists()
        with open(attempts, "a") as fh:
            fh.write("attempt\n")
        out = real(*args, **kwargs)
        if first:
            os._exit(1)  # the worker dies after the work, before reporting it
        return out

    monkeypatch.setattr(calib_pairs, task, run_then_die)
    with dask_client(workers=1) as client:
        [report] = calibrate(lake, client=client)
    assert attempts.read_text().count("attempt") == 2
    assert report.calibrated == 3 and report.by_status == {"ok": 3}
    for got, want in zip(_calibrated(lake), _calibrated(clean)):
        pd.testing.assert_frame_equal(got, want)
    assert len(lake.live_files(MATCHES)) == 1 and not os.listdir(lake.path("_skylake/staging"))


def test_a_redo_matches_rewrite_whose_worker_dies_is_run_again_and_the_lake_equals_a_clean_run(
    calib_lake, tmp_path, monkeypatch
):
    """--redo rewrites the night's matches files on the workers (items ``(k, rel)``); a worker dying under
    that task is reported by the file's path and the task run again: the lake equals an undisturbed redo."""
    from skylake.lake import pieces
    from skylake.runtime import _label

    assert _label([(0, "night=2026-03-01/a.parquet"), (1, "b")]).startswith("night=2026-03-01/a.parquet")
    clean, lake = (Lake.open(shutil.copytree(calib_lake, tmp_path / name)) for name in ("clean", "lake"))
    for one in (clean, lake):
        calibrate(one)
    calibrate(clean, redo=True)
    attempts = tmp_path / "attempts.txt"
    real = pieces.rewrite_files

    def run_then_die(*args, **kwargs):  # a closure: pickled by value to the worker
        first = not attempts.exists()
        with open(attempts, "a") as fh:
            fh.write("attempt\n")
        out = real(*args, **kwargs)
        if first:
            os._exit(1)
        return out

    monkeypatch.setattr(pieces, "rewrite_files", run_then_die)
    with dask_client(workers=1) as client:
        [report] = calibrate(lake, redo=True, client=client)
    assert attempts.read_text().count("attempt") == 2
    assert report.calibrated == 3 and report.by_status == {"ok": 3}
    for got, want in zip(_calibrated(lake), _calibrated(clean)):
        pd.testing.assert_frame_equal(got, want)
    assert len(lake.live_files(MATCHES)) == 1 and not os.listdir(lake.path("_skylake/staging"))
