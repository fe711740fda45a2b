"""Bad input gets a clear reason and the rest of the batch goes on (real frames + broken files)."""

from __future__ import annotations

import shutil

import pytest
from conftest import run_cli

from skylake.ingest import EXIT_NOTHING_INGESTED, EXIT_SOME_REJECTED
from skylake.lake import Lake
from skylake.pipeline import ingest
from skylake.synthetic import write_bad_files

pytestmark = pytest.mark.realdata

#: What each kind of broken file must be rejected for (a fragment of the reason).
EXPECTED_REASON = {
    "bad_truncated.fits": "truncated",
    "bad_not_fits.fits": "not a FITS file",
    "bad_empty.fits": "empty file (0 bytes)",
    "bad_no_wcs.fits": "no celestial WCS",
    "bad_all_nan.fits": "every pixel is NaN",
    "bad_cube.fits": "not a 2-D image: NAXIS=3",
    "bad_header_only.fits": "no image data",
    "bad_corrupt_header.fits": "corrupt FITS header",
}


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory, skycamz_files):
    d = tmp_path_factory.mktemp("batch")
    for f in skycamz_files:
        shutil.copy(f, d / f.name)
    made = write_bad_files(d / "bad", skycamz_files[0])
    assert set(made) == set(EXPECTED_REASON)
    return d


def test_good_frames_ingest_and_each_bad_file_gets_its_reason(tmp_path, batch_dir, dask_client):
    lake = Lake.init(tmp_path / "lake")
    report = ingest(lake, [str(batch_dir)], "skycamz", client=dask_client, progress=False)
    assert report.ingested == 14 and len(report.rejected) == len(EXPECTED_REASON)
    assert report.exit_code == EXIT_SOME_REJECTED
    frames = lake.read_frames().to_pandas()
    assert len(frames) == 14 + len(EXPECTED_REASON)
    frames["name"] = frames["path"].str.rsplit("/", n=1).str[-1]
    rejected = frames[frames["status"] == "rejected"].set_index("name")
    for name, fragment in EXPECTED_REASON.items():
        assert fragment in rejected.loc[name, "reason"], (name, rejected.loc[name, "reason"])
    assert rejected["reason"].nunique() == len(EXPECTED_REASON)  # each its own reason
    assert (rejected["n_sources"] == 0).all()
    ok = frames[frames["status"] == "ok"]
    assert len(ok) == 14 and lake.read_sources(columns=["source_id"]).num_rows == ok["n_sources"].sum()
    # Rejected frames are remembered: the same batch again is a no-op.
    again = ingest(lake, [str(batch_dir)], "skycamz", client=dask_client, progress=False)
    assert again.skipped == 14 + len(EXPECTED_REASON) and again.commits == []


def test_cli_exit_codes(tmp_path, batch_dir):
    lake = tmp_path / "lake"
    only_bad = run_cli(
        "ingest",
        str(lake),
        str(batch_dir / "bad"),
        "--create",
        "--scheduler",
        "synchronous",
        "--pipeline",
        "skycamz",
        "--no-progress",
    )
    assert only_bad.returncode == EXIT_NOTHING_INGESTED, only_bad.stderr
    assert "rejected" in only_bad.stdout and "bad_cube.fits" in only_bad.stdout
    missing = run_cli("ingest", str(lake), str(tmp_path / "nowhere"), "--scheduler", "synchronous")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    not_a_lake = run_cli("status", str(tmp_path))
    assert not_a_lake.returncode == 2 and "not a skylake lake" in not_a_lake.stderr
    status = run_cli("status", str(lake), "--json", check=True)
    assert '"rejected": 8' in status.stdout
    for cmd in ("init", "ingest", "status", "compact", "repair", "demo"):
        assert run_cli(cmd, "--help").returncode == 0


@pytest.mark.parametrize("size", [0, -3])
def test_a_batch_size_below_one_is_refused_naming_it_and_nothing_is_ingested(tmp_path, capsys, skycamz_files, size):
    """``--batch-size 0`` is not "automatic" (that is leaving it out): one line naming the value, exit 2."""
    from skylake.cli import main

    lake = tmp_path / "lake"
    assert (
        main(["ingest", str(lake), str(skycamz_files[0]), "--create", "--no-progress", "--batch-size", str(size)]) == 2
    )
    assert capsys.readouterr().err.strip().splitlines() == [
        f"skylake: error: --batch-size {size}: a commit takes at least 1 frame; nothing was ingested"
    ]
    assert Lake.open(lake).log.latest() is None


def test_a_directory_named_like_a_fits_file_is_searched_or_named_in_an_error(tmp_path, capsys):
    """Issue 22: `skylake ingest LAKE x.fits` with x.fits a directory exited 4 without an error line."""
    from skylake.cli import main

    lake = str(tmp_path / "lake")
    (tmp_path / "x.fits").mkdir()
    (tmp_path / "x.fits" / "notes.txt").write_text("not a frame")
    assert main(["ingest", lake, str(tmp_path / "x.fits"), "--create", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"skylake: error: {tmp_path / 'x.fits'} is a directory with no FITS files in it or below it "
        f"(looked for .fits, .fit, .fts, .fits.gz, .fit.gz, .fits.fz, .fz)"
    ]
