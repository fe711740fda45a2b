"""A dask worker that dies on a file (out of memory, a crash in C code) is retried once, then the file is
rejected with "worker died processing this file" and the rest of the batch is ingested (real LocalCluster)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from skylake import ingest as ingest_module
from skylake.ingest import EXIT_SOME_REJECTED, WORKER_DIED
from skylake.runtime import dask_client
from skylake.pipeline import ingest
from skylake.lake import Lake, pieces
from skylake.synthetic import render_frame, tan_wcs_header, write_frame


def _frame(path, seed):
    rng = np.random.default_rng(seed)
    stars = pd.DataFrame({"x": rng.uniform(10, 190, 40), "y": rng.uniform(10, 190, 40), "flux": 10 ** rng.uniform(4, 5, 40)})
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
