"""Long-term throughput trends: exact answers from SYNTHETIC zeropoint histories (skylake.trends) and the
trend model the summary database derives from a synthetic lake (skylake.synthetic.summary_rows)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import sqlalchemy as sa

from skylake import trends
from skylake.db import refresh
from skylake.lake import Lake
from skylake.synthetic.summary_rows import commit_night, night_mjd


def test_airmass_correction_and_envelope_are_exact():
    zp = np.array([21.0, 20.85, 20.7])
    airmass = np.array([1.0, 2.0, np.nan])
    np.testing.assert_allclose(trends.airmass_corrected(zp, airmass, 0.15), [21.0, 21.0, 20.7])
    assert trends.night_envelope([20.0, 21.0, 21.0, 21.0, 21.0, 21.0, 21.0, 21.0, 21.0, 21.0]) == 21.0
    assert trends.night_envelope([np.nan]) is None
    # 8 of 10 frames within 0.1 mag of the envelope, 2 under cloud
    assert trends.photometric_fraction([21.0] * 8 + [20.5, 19.0], 10) == pytest.approx(0.8)
    assert trends.is_photometric(0.8, 3) and not trends.is_photometric(0.79, 10) and not trends.is_photometric(1.0, 2)
    # an all-sky camera's nights by their cloud fractions: 4 of 6 ok frames at most 0.1, one cloudy, one unmeasured
    assert trends.clear_fraction([0.02, 0.1, 0.0, 0.05, 0.6, np.nan], 6) == pytest.approx(4 / 6)
    assert trends.clear_fraction([np.nan], 1) is None
    assert trends.is_photometric(1.0, 1, min_frames=1) and not trends.is_photometric(0.5, 4, min_frames=1)


def test_segments_recover_an_injected_decline_and_a_cleaning():
    """Two years of nights: throughput falls 0.10 mag/yr, a mirror cleaning restores 0.25 mag, cloudy
    (non-photometric) nights sit far below and must not pull the fit."""
    rng = np.random.default_rng(4)
    mjd = 60000.0 + np.arange(730, dtype=float)
    cleaning = trends.Event("SkyCamZ", dt.date(2023, 9, 11), "mirror_cleaning")  # MJD 60198
    years = (mjd - 60000.0) / 365.25
    truth = 21.0 - 0.10 * years + np.where(mjd >= cleaning.mjd, 0.25, 0.0)
    env = truth + rng.normal(0, 0.003, len(mjd))
    photometric = rng.uniform(size=len(mjd)) < 0.6
    env[~photometric] -= rng.uniform(0.3, 1.5, int((~photometric).sum()))
    color = 0.05 + 0.02 * years
    segments = trends.fit_segments(mjd, env, color, photometric, [cleaning])
    assert [s["segment"] for s in segments] == [0, 1]
    first, second = segments
    t0 = mjd[photometric][0]  # the first segment starts at its first photometric night
    assert first["start_mjd"] == t0 and first["end_mjd"] == pytest.approx(cleaning.mjd)
    assert second["start_mjd"] == pytest.approx(cleaning.mjd)
    assert second["start_event"] == "2023-09-11 mirror_cleaning"
    for seg in segments:
        assert seg["slope_mag_per_year"] == pytest.approx(-0.10, abs=0.005)
        assert seg["rms"] < 0.02
        assert seg["color_term_slope_per_year"] == pytest.approx(0.02, abs=1e-6)
    assert first["zp_start"] == pytest.approx(21.0 - 0.10 * (t0 - 60000.0) / 365.25, abs=0.005)
    jump = second["zp_start"] - (first["zp_start"] + first["slope_mag_per_year"] * (cleaning.mjd - t0) / 365.25)
    assert jump == pytest.approx(0.25, abs=0.01)
    assert first["n_nights"] + second["n_nights"] == int(photometric.sum())


def test_robust_line_ignores_outliers():
    t = np.linspace(0, 1, 50)
    y = 2.0 + 0.5 * t
    y[::10] -= 3.0
    a, b, rms, keep = trends.robust_line(t, y)
    assert (a, b) == pytest.approx((2.0, 0.5)) and rms < 1e-9 and keep.sum() == 45


def test_events_file_errors_name_the_line(tmp_path):
    good = tmp_path / "events.csv"
    good.write_text(
        'date,instrument,kind,note\n2024-05-01,SkyCamZ,mirror_cleaning,"CO2 snow; both mirrors"\n'
        "2025-01-10,,camera_change,\n"
    )
    events = trends.read_events(good)
    assert events == [
        trends.Event("SkyCamZ", dt.date(2024, 5, 1), "mirror_cleaning", "CO2 snow; both mirrors"),
        trends.Event("", dt.date(2025, 1, 10), "camera_change", ""),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("date,instrument,kind,note\n2024-05-01,SkyCamZ,mirror_cleaning,\n2024-13-01,SkyCamZ,x,\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: date '2024-13-01'"):
        trends.read_events(bad)


def test_refresh_fits_the_trend_model_from_the_lake(tmp_path):
    """A synthetic lake of 40 nights whose airmass-1 zeropoint declines 0.2 mag/yr, with a cleaning
    after night 20 (+0.3 mag) and some cloudy nights: the mirrored nights carry the airmass-corrected
    envelope and the photometric flag, and trend_model has both segments with the injected slope."""
    lake = Lake.init(tmp_path / "lake")
    rng = np.random.default_rng(5)
    start = dt.date(2025, 1, 1)
    cloudy_nights = {5, 17, 30}
    for i in range(40):
        night = (start + dt.timedelta(days=7 * i)).isoformat()
        zp1 = 21.35 - 0.2 * (7 * i) / 365.25 + (0.3 if i >= 20 else 0.0)
        commit_night(
            lake,
            night,
            30,
            rng,
            zp_airmass1=zp1,
            k_ext=0.12 + 0.01 * (i % 3),
            cloudy_fraction=0.7 if i in cloudy_nights else 0.0,
        )
    events = tmp_path / "events.csv"
    cleaning_day = start + dt.timedelta(days=7 * 20 - 1)
    events.write_text(f"date,instrument,kind,note\n{cleaning_day},SkyCamZ,mirror_cleaning,\n")
    report = refresh(lake, events=events)
    assert report.rows["maintenance_events"] == 1 and report.rows["trend_model"] == 2
    url = f"sqlite:///{lake.path('_skylake/summary.sqlite')}"
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        nights = conn.execute(
            sa.text("SELECT night, photometric, zp_airmass1_max, k_ext FROM nights ORDER BY night")
        ).all()
        model = conn.execute(
            sa.text(
                "SELECT segment, n_nights, slope_mag_per_year, zp_start, start_event FROM trend_model ORDER BY segment"
            )
        ).all()
    engine.dispose()
    assert len(nights) == 40
    assert [i for i, n in enumerate(nights) if not n.photometric] == sorted(cloudy_nights)
    for i, n in enumerate(nights):
        assert n.k_ext == pytest.approx(0.12 + 0.01 * (i % 3))  # the night's own extinction fit
    assert [m.n_nights for m in model] == [18, 19]
    for m in model:
        assert m.slope_mag_per_year == pytest.approx(-0.2, abs=0.03)
    assert model[1].start_event == f"{cleaning_day} mirror_cleaning"
    assert model[1].zp_start - model[0].zp_start == pytest.approx(0.3 - 0.2 * (7 * 20 - 1) / 365.25, abs=0.02)
    assert night_mjd(start.isoformat()) < night_mjd(cleaning_day.isoformat())
