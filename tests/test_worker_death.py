"""A dask worker that dies on a file (out of memory, a crash in C code) is retried once, then the file is
rejected with "worker died processing this file" and the rest of the batch is ingested (real LocalCluster)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from skylake import ingest as ingest_module
from skylake.frame.process import process_file
from skylake.ingest import EXIT_SOME_REJECTED, WORKER_DIED, dask_client, ingest
from skylake.lake import Lake
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

    def process_or_die(item, profile):  # a closure: pickled by value to the worker
        path, known_hash = item
        if path.endswith("deadly.fits"):
            with open(attempts, "a") as fh:
                fh.write("attempt\n")
            os._exit(1)  # as the kernel's OOM killer or a segfault would end it
        return process_file(path, profile, known_hash=known_hash)

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
