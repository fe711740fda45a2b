"""Difference imaging in the ingest chain: a profile's ``[dia]`` section on a SYNTHETIC series of one field.

8 frames of one night (skylake.synthetic.series), the profile asking for a reference once 6 frames exist. The
first ingest of 4 frames builds none (too few: said, no failure); the second of the other 4 builds the
reference from the 6 sharpest and subtracts all 8, the first 4 included (their rows said "no reference");
ingesting a ninth frame later subtracts it against the same reference (never rebuilt by ingest). Without
``[dia]`` nothing is subtracted.
"""

from __future__ import annotations

import pytest

from skylake.cli import main
from skylake.dia.stage import NO_REFERENCE
from skylake.errors import PublishBlocked
from skylake.lake import Lake, tables
from skylake.pipeline import ingest
from skylake.synthetic.series import write_series

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("dia_chain")
    truth = write_series(root, n_frames=9, n_stars=150, shape=(256, 256), n_variables=2, transit_depth=0.0)
    profile = truth.profile_path.with_name("series_dia.toml")
    profile.write_text(truth.profile_path.read_text() + "[dia]\nmin_frames = 6\nmax_frames = 6\n")
    return truth, profile


def _dia_frames(lake):
    return tables.get(tables.DIA_FRAMES).read(lake).to_pandas().set_index("frame_id")


def test_ingest_builds_the_reference_once_enough_frames_exist_and_subtracts_every_frame(series, tmp_path, capsys):
    truth, profile = series
    paths = [str(p) for p in truth.paths]
    lake = Lake.init(tmp_path / "lake")
    first = ingest(lake, paths[:4], profile, progress=False)
    (report,) = first.downstream.dia
    assert report.references == [] and report.no_reference == 4 and report.done == 0
    assert len(tables.get(tables.REFERENCES).read(lake)) == 0
    assert set(_dia_frames(lake)["reason"]) == {NO_REFERENCE}

    # the command line prints the chain's DIA line
    args = ["ingest", str(lake.url), *paths[4:8], "--pipeline", str(profile), "--no-progress"]
    assert main([*args, "--scheduler", "synchronous"]) == 0
    printed = capsys.readouterr().out
    refs = tables.get(tables.REFERENCES).read(lake).to_pandas()
    assert len(refs) == 1 and refs["n_frames"].iloc[0] == 6
    assert "dia: 8 frames subtracted, 0 failed, 0 with no reference" in printed
    assert f"references built first: {refs['reference_id'].iloc[0]}" in printed
    rows = _dia_frames(lake)
    assert len(rows) == 8 and set(rows["status"]) == {"ok"} and set(rows["reference_id"]) == set(refs["reference_id"])

    later = ingest(lake, paths[8:], profile, progress=False)
    (report,) = later.downstream.dia
    assert report.references == [] and report.done == 1 and report.skipped == 8
    assert len(tables.get(tables.REFERENCES).read(lake)) == 1 and len(_dia_frames(lake)) == 9


def test_without_a_dia_section_ingest_subtracts_nothing(series, tmp_path):
    truth, _ = series
    lake = Lake.init(tmp_path / "lake")
    report = ingest(lake, [str(p) for p in truth.paths], truth.profile_path, progress=False)
    assert report.downstream.dia == [] and len(_dia_frames(lake)) == 0


def test_a_dia_step_that_fails_loses_nothing_and_the_next_ingest_finishes_it(series, tmp_path, caplog):
    """The chain's DIA step fails for real: a file stands where the lake's reference images go. The ingest
    still exits 0 with its frames in and says which command finishes the job; the reference's commit is
    durable, and once the obstruction is gone the next open publishes it and the next ingest subtracts every
    frame, those of the failed run included."""
    truth, profile = series
    paths = [str(p) for p in truth.paths]
    lake = Lake.init(tmp_path / "lake")
    blocker = tmp_path / "lake" / "reference_images"
    blocker.write_text("not a folder")
    with caplog.at_level("ERROR", logger="skylake.dia.stage"):
        first = ingest(lake, paths[:6], profile, progress=False)
    assert first.exit_code == 0 and first.ingested == 6 and first.downstream.dia == []
    assert f"dia after ingest failed (run `skylake dia {lake.url}`): FileExistsError" in caplog.text
    # while it stands, a reader reads the lake as published and says why; a writer is refused, naming it
    with caplog.at_level("WARNING", logger="skylake.lake.lake"):
        assert Lake.open(lake.url).read_frames(columns=["frame_id"]).num_rows == 6
    assert "is committed but cannot be published: FileExistsError" in caplog.text
    with pytest.raises(PublishBlocked, match="reference_images"), Lake.open(lake.url).transaction("test"):
        pass
    blocker.unlink()
    assert lake.read_frames(columns=["frame_id"]).num_rows == 6
    assert len(tables.get(tables.REFERENCES).read(lake)) == 1  # committed before the publish failed
    later = ingest(lake, paths[6:7], profile, progress=False)
    (report,) = later.downstream.dia
    assert report.done == 7 and not report.failed and report.references == []
    rows = _dia_frames(lake)
    assert len(rows) == 7 and set(rows["status"]) == {"ok"}
