"""All-sky frames through the product: `skylake ingest` with the IceAct/CTA profiles (real frames) and a
synthetic all-sky night end to end (known model, cloud, streak)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, require_shared

from skylake.allsky.camera import camera_of
from skylake.cli import main
from skylake.lake import Lake

ALLSKY = SHARED_DATA / "allsky"


def _profile(tmp_path, base: str) -> str:
    """``base`` with the catalogue read from the shared Hipparcos file (importing it as a refcat takes minutes)."""
    path = tmp_path / f"{base}-file.toml"
    path.write_text(f'extends = "{base}"\n[allsky]\ncatalog = "{ALLSKY / "hipparcos.fits.gz"}"\n')
    return str(path)


@pytest.fixture(scope="module")
def real_lake(tmp_path_factory):
    require_shared(ALLSKY / "hipparcos.fits.gz")
    tmp = tmp_path_factory.mktemp("allsky-real")
    lake = str(tmp / "lake")
    assert main(["init", lake]) == 0
    ice = [str(ALLSKY / "iceact_20170503_starry.fits"), str(ALLSKY / "iceact_20170611_cloudy.fits")]
    assert main(["ingest", lake, *ice, "--pipeline", _profile(tmp, "iceact"), "--no-progress"]) == 0
    cta = str(ALLSKY / "cta_lapalma_20151220_cloudy.fits.gz")
    assert main(["ingest", lake, cta, "--pipeline", _profile(tmp, "cta"), "--no-progress"]) == 0
    return lake


@pytest.mark.realdata
def test_real_frames_cloud_fractions(real_lake):
    """The ranges of the cameras' own project: IceAct clear 0-0.5, cloudy 0.5-1; CTA overcast >= 0.9."""
    frames = pd.read_parquet(f"{real_lake}/frames").set_index(
        pd.read_parquet(f"{real_lake}/frames")["path"].str.rsplit("/", n=1).str[-1]
    )
    assert set(frames["status"]) == {"ok"} and set(frames["wcs_source"]) == {"camera"}
    cf = frames["cloud_fraction"]
    assert 0.0 <= cf["iceact_20170503_starry.fits"] <= 0.5
    assert 0.5 <= cf["iceact_20170611_cloudy.fits"] <= 1.0
    assert 0.9 <= cf["cta_lapalma_20151220_cloudy.fits.gz"] <= 1.0
    assert (frames["n_stars_expected"] >= 100).all()
    # the camera model checked on every frame, the overcast CTA one too (12 bright stars seen: 0.76 px)
    assert frames["astrometry_rms_px"].notna().all() and (frames["astrometry_rms_px"] < 1.0).all()
    assert (frames["camera_shift_px"] < 0.5).all() and frames["extract_note"].str.contains("camera model checked").all()
    assert frames.loc["iceact_20170503_starry.fits", "profile"] == "iceact"
    assert frames.loc["cta_lapalma_20151220_cloudy.fits.gz", "night"] == "2015-12-19"  # 04:07 UTC, Canary time


@pytest.mark.realdata
def test_real_frames_sources_streaks_and_maps(real_lake):
    from skylake.allsky.store import read_streaks
    from skylake.lake import Lake
    from skylake.maps.store import read_index, read_maps

    lake = Lake.open(real_lake)
    src = lake.read_sources(
        columns=["frame_id", "alt", "az", "ra", "dec", "measure", "position_from", "ref_id", "flux_ap1", "flags"]
    ).to_pandas()
    assert set(src["measure"]) == {"forced"} and set(src["position_from"]) == {"camera"}
    assert src["ref_id"].notna().all() and (src["alt"] >= 10.0 - 1e-3).all()
    streaks = read_streaks(lake)  # the table exists (empty: no trails on these three frames)
    assert list(streaks.columns[:2]) == ["frame_id", "streak"] and len(streaks) == 0
    frames = pd.read_parquet(f"{real_lake}/frames")
    assert (frames["n_streaks"] == 0).all()
    # the overcast CTA frame has too few clear stars for a zeropoint: no maps, and the frame says why
    cta = frames[frames["path"].str.contains("cta")].iloc[0]
    assert cta["frame_id"] not in set(read_index(lake)["frame_id"]) and "no maps: zeropoint none" in cta["extract_note"]
    index = read_index(lake)
    assert len(index) == 4 and set(index["scope"]) == {"frame"} and set(index["frame_of"]) == {"horizon", "equatorial"}
    # IceAct: its transparency is relative to the clear frame's zeropoint: near 1 there, low under the cloud
    ice = frames[frames["path"].str.contains("iceact")].set_index("frame_id")["path"]
    pix = read_maps(lake).merge(index[["map_id", "frame_id", "frame_of"]], on=["map_id", "frame_of"])
    hor = pix[pix["frame_of"] == "horizon"]
    clear = hor[hor["frame_id"] == ice[ice.str.contains("starry")].index[0]]
    cloudy = hor[hor["frame_id"] == ice[ice.str.contains("cloudy")].index[0]]
    assert 0.8 <= clear["transparency"].median() <= 1.2
    assert cloudy["transparency"].median() < 0.5
    assert clear["sky_mag"].notna().sum() > 100  # the sky over the whole image, not only under stars


@pytest.fixture(scope="module")
def synthetic_lake(tmp_path_factory):
    from skylake.synthetic.allsky_night import write_allsky_night

    tmp = tmp_path_factory.mktemp("allsky-synthetic")
    night = write_allsky_night(tmp / "night")
    lake = str(tmp / "lake")
    assert main(["init", lake]) == 0
    assert main(["ingest", lake, str(night.root / "frames"), "--pipeline", str(night.profile), "--no-progress"]) == 0
    return lake, night


def test_synthetic_night_streak(synthetic_lake):
    """The injected streak is found within 3 px on its frame; the clear frame reports none."""
    from skylake.allsky.store import read_streaks
    from skylake.lake import Lake

    lake, night = synthetic_lake
    frames = pd.read_parquet(f"{lake}/frames").sort_values("path").reset_index(drop=True)
    assert frames["n_streaks"].tolist() == [0, 1]
    streaks = read_streaks(Lake.open(lake))
    assert streaks["frame_id"].tolist() == [frames["frame_id"][1]]
    s, row = night.truth[1].streak, streaks.iloc[0]
    ends = np.array([[row.x1, row.y1], [row.x2, row.y2]])
    truth = np.array([[s.x1, s.y1], [s.x2, s.y2]])
    err = min(np.hypot(*(ends - truth).T).max(), np.hypot(*(ends[::-1] - truth).T).max())
    assert err <= 3.0
    src = Lake.open(lake).read_sources(columns=["frame_id", "flags"]).to_pandas()
    on = (src["flags"] & 512) > 0
    assert on.sum() == row.n_sources > 0 and set(src.loc[on, "frame_id"]) == {frames["frame_id"][1]}


def test_synthetic_night_transparency_and_sky(synthetic_lake):
    """Transparency (horizon map) is low under the injected cloud and near 1 elsewhere, pixel by pixel
    against the true transmission at the pixel centres. The zeropoint is measured on each frame (the 75th
    percentile of its stars' aperture zeropoints: 0.05-0.25 mag below the true total-flux one, see
    tests/test_allsky_maps.py), so the zenith sky is the injected 21.0 mag/arcsec^2 less that offset."""
    from skylake.lake import Lake
    from skylake.maps.store import read_index, read_maps

    lake, night = synthetic_lake
    frames = pd.read_parquet(f"{lake}/frames").sort_values("path").reset_index(drop=True)
    index = read_index(Lake.open(lake))
    cloudy_map = index[(index["frame_id"] == frames["frame_id"][1]) & (index["frame_of"] == "horizon")]["map_id"]
    pix = read_maps(Lake.open(lake), map_ids=cloudy_map.tolist())
    pix = pix[pix["transparency"].notna()]
    truth = night.truth[1].transmission(pix["lat"].to_numpy(), pix["lon"].to_numpy())
    under, clear = truth < 0.3, truth > 0.97
    assert under.sum() >= 3 and clear.sum() >= 50
    assert (pix["transparency"][under] < 0.5).all()
    assert np.median(np.abs(pix["transparency"][clear] - 1.0)) < 0.05
    offset = 10.0 - frames["allsky_zeropoint"]
    assert ((offset > 0.05) & (offset < 0.25)).all()
    assert np.allclose(frames["sky_mag_zenith"] + offset, 21.0, atol=0.05)
    assert frames["cloud_fraction"][0] < 0.05


def test_frame_without_a_camera_or_wcs_is_rejected(tmp_path, capsys):
    """A WCS-less frame under a profile without [camera] is rejected with its reason, never guessed; an
    all-sky ingest into a lake without the profile's bright-star refcat is refused before any frame is
    processed, naming it (exit 2, nothing written)."""
    from skylake.synthetic.allsky_night import write_allsky_night

    night = write_allsky_night(tmp_path / "night")
    lake = str(tmp_path / "lake")
    assert main(["init", lake]) == 0
    assert main(["ingest", lake, str(night.frames[0]), "--pipeline", "demo", "--no-progress"]) == 4
    (reason,) = pd.read_parquet(f"{lake}/frames")["reason"]
    assert reason.startswith("no celestial WCS")
    versions = Lake.open(lake).log.latest_version()
    assert main(["ingest", lake, str(night.frames[0]), "--pipeline", "iceact", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "ingest with profile iceact: no bright-star catalogue: the lake has no refcat 'hipparcos'" in err
    assert "nothing was ingested" in err and Lake.open(lake).log.latest_version() == versions


@pytest.mark.realdata
def test_camera_fit_on_the_iceact_clear_frame(tmp_path, capsys):
    """From the published IceAct model: <= 1 px rms over >= 50 Hipparcos stars of V < 4.5 above 20 deg; the
    profile written loads and holds the fitted model; the residual plot is drawn."""
    import re

    from skylake.profile import load_profile

    start = tmp_path / "published.toml"
    start.write_text(
        f'extends = "iceact"\n[camera]\nfocal_length_mm = 1.45\nx0 = 326.5\ny0 = 250.0\n'
        f"rotation_deg = -87.0\nk1 = 0.0\ntilt_deg = 0.0\n[allsky]\n"
        f'catalog = "{ALLSKY / "hipparcos.fits.gz"}"\n'
    )
    frame = str(require_shared(ALLSKY / "iceact_20170503_starry.fits"))
    out, plot = tmp_path / "fitted.toml", tmp_path / "residuals.png"
    assert main(["camera", "fit", frame, "--pipeline", str(start), "--out", str(out), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    n = int(re.search(r"(\d+) stars of V < 4.5 above 20 deg used", text).group(1))
    rms_px, rms_deg = map(float, re.search(r"rms residual ([\d.]+) px = ([\d.]+) deg", text).groups())
    assert n >= 50 and rms_px <= 1.0 and 0 < rms_deg < 0.3
    fitted = camera_of(load_profile(out))[0]
    assert abs(fitted.rotation_deg + 86.8) < 0.2 and abs(fitted.x0 - 326.5) < 1.5 and fitted.k1 != 0.0
    assert plot.stat().st_size > 10_000
    # a profile without [camera], a missing file: usage errors (exit 2), nothing written
    assert main(["camera", "fit", frame, "--pipeline", "skycamz"]) == 2
    assert main(["camera", "fit", str(tmp_path / "none.fits"), "--pipeline", str(start)]) == 2


def test_profile_sections_are_validated(tmp_path):
    """[camera], [allsky] and [platesolve] are checked at load; each message names the offending value."""
    from skylake.profile import ProfileError, load_profile

    def problems(text: str) -> list[str]:
        path = tmp_path / "p.toml"
        path.write_text(text)
        with pytest.raises(ProfileError) as info:
            load_profile(path)
        return info.value.problems

    assert problems('extends = "iceact"\n[camera]\nfocal_length_mm = -1.0\n[allsky]\nsources = "all"\nnside = 7\n') == [
        "[camera] focal_length_mm must be in (0, 1000] mm, got -1.0",
        "allsky.sources = 'all' must be one of ['forced', 'detected', 'both']",
        "[allsky] allsky.nside must be a power of 2 up to 1024, got 7",
    ]
    assert problems('extends = "generic"\n[allsky]\nvmax = 5.0\n') == [
        "[allsky] needs a [camera] section (the lens model that maps pixels to the sky)"
    ]
    assert any(
        "the profile's [site]" in p
        for p in problems(
            'extends = "generic"\n[camera]\nprojection = "equidistant"\nfocal_length_mm = 1.4\npixel_size_mm = 0.0075\n'
            "x0 = 300.0\ny0 = 200.0\n"
        )
    )
    assert any(p.startswith("camera.site:") for p in problems('extends = "iceact"\n[camera.site]\nlat_deg = 1.0\n'))
    assert problems('extends = "iceact"\n[allsky]\ncatalog = "nowhere.fits.gz"\n') == [
        f"allsky.catalog = '{tmp_path / 'nowhere.fits.gz'}': no such file"
    ]
    assert problems('extends = "skycamz"\n[platesolve]\nmag_column = "mag_VT"\nsip_degree = 1\n') == [
        "platesolve.refcat = '' must name the refcat in the lake the solver matches against (e.g. \"tycho2\") or a "
        "Parquet file (ra, dec and mag_column)",
        "[platesolve] platesolve.sip_degree must be 0 (TAN) or 2-4 (TAN-SIP), got 1",
    ]
    # absent sections leave a profile's identity as it was
    from skylake.profile import profile_from_dict, profile_to_dict

    for name in ("skycamz", "iceact", "cta"):
        p = load_profile(name)
        assert profile_from_dict(profile_to_dict(p), "x.json").digest == p.digest
    assert load_profile("skycamz").camera is None and "camera" not in profile_to_dict(load_profile("skycamz"))


def test_redo_replaces_streaks_and_frame_maps(tmp_path):
    """`--redo` replaces an all-sky frame's streaks and maps with the new ones in the same commit."""
    from skylake.allsky.store import read_streaks
    from skylake.lake import Lake
    from skylake.maps.store import read_index, read_maps
    from skylake.synthetic.allsky_night import write_allsky_night

    night = write_allsky_night(tmp_path / "night")
    lake = str(tmp_path / "lake")
    assert main(["init", lake]) == 0
    args = ["ingest", lake, str(night.frames[1]), "--pipeline", str(night.profile), "--no-progress"]
    assert main(args) == 0
    before = (len(read_streaks(Lake.open(lake))), len(read_index(Lake.open(lake))), len(read_maps(Lake.open(lake))))
    assert before[0] == 1 and before[1] == 2 and before[2] > 100
    assert main(args + ["--redo"]) == 0
    lake_ = Lake.open(lake)
    (frame_id,) = lake_.read_frames(columns=["frame_id"]).column("frame_id").to_pylist()
    assert (len(read_streaks(lake_)), len(read_index(lake_)), len(read_maps(lake_))) == before
    assert read_streaks(lake_)["frame_id"].tolist() == [frame_id] and set(read_index(lake_)["frame_id"]) == {frame_id}


def test_nightly_summary_counts_streak_frames_and_the_cloud_fraction(synthetic_lake, tmp_path):
    """The summary database's nights row of the synthetic night: one of its two frames has a trail, and
    the median cloud fraction is that of the frames table."""
    import sqlalchemy as sa

    from skylake.db.mirror import refresh

    lake, _ = synthetic_lake
    url = f"sqlite:///{tmp_path / 'summary.sqlite'}"
    refresh(lake, url)
    frames = pd.read_parquet(f"{lake}/frames")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT n_frames, n_streak_frames, cloud_fraction_median, photometric_fraction, photometric FROM nights"
            )
        ).all()
    engine.dispose()
    assert len(rows) == 1 and rows[0][:2] == (2, 1)
    assert rows[0][2] == pytest.approx(float(np.median(frames["cloud_fraction"])), abs=1e-6)
    # no catalogue calibration: the night's photometric status comes from its frames' cloud fractions
    clear = float(np.mean(frames["cloud_fraction"] <= 0.1))
    assert rows[0][3] == pytest.approx(clear) and bool(rows[0][4]) == (clear >= 0.8)


def test_allsky_demo_passes_from_another_folder(tmp_path, monkeypatch, capsys):
    """`skylake demo --allsky` as the README gives it, from a folder of its own with a relative --out:
    camera fit from a wrong start, ingest, the checks against the truth, and the report."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--allsky", "--out", "sky"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == "demo: PASS", out
    assert (tmp_path / "sky" / "report" / "index.html").is_file() and (tmp_path / "sky" / "camera-fit.png").is_file()


@pytest.mark.realdata
def test_real_nights_are_photometric_by_their_cloud_fractions(real_lake, tmp_path):
    """The clear IceAct night (2 % cloud) counts as photometric, the cloudy ones (75 %, CTA overcast) do not:
    all-sky frames are not calibrated against a catalogue, their cloud fractions say it (before: 0 nights)."""
    import sqlalchemy as sa

    from skylake.db.mirror import refresh

    url = f"sqlite:///{tmp_path / 'summary.sqlite'}"
    refresh(real_lake, url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT instrument, photometric_fraction, photometric FROM nights")).all()
    engine.dispose()
    assert sorted((r[0], r[1], bool(r[2])) for r in rows) == [
        ("CTA-ASC-LP1", 0.0, False),
        ("IceAct", 0.0, False),
        ("IceAct", 1.0, True),
    ]
