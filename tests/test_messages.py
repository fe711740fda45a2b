"""Each command's last line counts what happened by kind: never "N of N" when none was done (issue 22: a batch
whose frames were all rejected at ingest was reported as "10 of 10 frames calibrated (frame_rejected 10)").
Real SkyCamZ frames with their observation time removed, against a cut of the real Tycho-2."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from conftest import SHARED_DATA, require_shared

from skylake.cli import main as cli
from skylake.errors import count_kinds, reason_kind

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def rejected_batch(tmp_path_factory, skycamz_files, dask_client):
    from skylake.lake import Lake
    from skylake.refcat import import_refcat

    root = tmp_path_factory.mktemp("messages")
    (root / "frames").mkdir()
    for k, path in enumerate(skycamz_files[:3]):
        with fits.open(path) as hdul:
            for key in ("DATE-OBS", "MJD", "DATE"):
                hdul[0].header.remove(key, ignore_missing=True)
            hdul.writeto(root / "frames" / f"notime{k}.fits")
    table = pq.read_table(require_shared(SHARED_DATA / "refcats" / "tycho2_vt.parquet"))
    near = (np.abs(table["dec"].to_numpy() - 12.8) < 2) & (np.abs(table["ra"].to_numpy() - 256.2) < 2)
    pq.write_table(table.filter(near), root / "tycho2_cut.parquet")
    lake = Lake.init(root / "lake")
    import_refcat(lake, "tycho2", [root / "tycho2_cut.parquet"], "tycho2", client=dask_client, progress=False)
    return root


def test_reason_kinds_count_reasons_of_one_kind_together():
    assert reason_kind("header OBJCTRA = '21 44 16' is not a number") == "header OBJCTRA = ... is not a number"
    assert reason_kind("plate solving failed: no consistent match: best rotation has 3 stars") == "plate solving failed"
    assert (
        count_kinds(
            [
                "header DATE-OBS = '1900-01-01T00:00:00' is outside the years 1901-2100",
                "header DATE-OBS = '2150-01-01T00:00:00' is outside the years 1901-2100",
                "no observation time in the header (looked for ['DATE-OBS'])",
            ]
        )
        == "2 header DATE-OBS = ... is outside the years ..., 1 no observation time in the header"
    )


def test_ingest_of_a_batch_rejected_whole_says_so_last(rejected_batch, capsys):
    code = cli(
        [
            "ingest",
            str(rejected_batch / "lake"),
            str(rejected_batch / "frames"),
            "--pipeline",
            "skycamz",
            "--scheduler",
            "synchronous",
            "--no-progress",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 4
    assert lines[-1] == (
        "0 of 3 files ingested (0 sources), 3 rejected (3 no observation time in the header), 0 already in the lake"
    )
    assert (
        "0 of 3 frames of skycamz calibrated ok against tycho2: 3 were rejected at ingest "
        "(3 no observation time in the header)"
    ) in lines
    assert not any(" 3 of 3 " in line for line in lines)


def test_calibrate_of_a_batch_rejected_whole_says_so_last(rejected_batch, capsys):
    cli(
        [
            "ingest",
            str(rejected_batch / "lake"),
            str(rejected_batch / "frames"),
            "--pipeline",
            "skycamz",
            "--scheduler",
            "synchronous",
            "--no-progress",
        ]
    )
    capsys.readouterr()
    assert cli(["calibrate", str(rejected_batch / "lake"), "--scheduler", "synchronous"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (
        "0 of 3 frames of skycamz calibrated ok against tycho2: 3 were rejected at ingest "
        "(3 no observation time in the header)"
    )


def test_ensemble_of_a_batch_rejected_whole_says_so_last(rejected_batch, capsys):
    cli(
        [
            "ingest",
            str(rejected_batch / "lake"),
            str(rejected_batch / "frames"),
            "--pipeline",
            "skycamz",
            "--scheduler",
            "synchronous",
            "--no-progress",
        ]
    )
    capsys.readouterr()
    assert cli(["ensemble", str(rejected_batch / "lake")]) == 4
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "0 of 3 frames solved: 3 not ok at ingest (rejected or a quality status)"
