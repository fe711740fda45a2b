"""Light curves from the real SkyCamZ frames of 2013-06-10, calibrated against Tycho-2 V_T (the shared
file cut to 12 deg around the two pointings, as tests/test_calib_real.py does): the stars seen in all
twelve frames of the shared pointing (210-221) have 12-point light curves, and the bright ones scatter
by less than 0.05 mag."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA, require_shared

from skylake.frame.extract import SATURATED
from skylake.lake import Lake
from skylake.objects.associate import ref_object_ids
from skylake.objects.build import build_objects
from skylake.objects.query import light_curve
from skylake.objects.truth import object_table
from skylake.pipeline import ingest
from skylake.refcat import import_refcat

pytestmark = pytest.mark.realdata

TYCHO = SHARED_DATA / "refcats" / "tycho2_vt.parquet"
POINTING = (256.2, 12.8)  # RA, Dec [deg] of frames 210-221


@pytest.fixture(scope="module")
def objects(tmp_path_factory, skycamz_files, dask_client):
    root = tmp_path_factory.mktemp("lcreal")
    table = pq.read_table(require_shared(TYCHO))
    ra, dec = table["ra"].to_numpy(), table["dec"].to_numpy()
    near = (np.abs(dec - POINTING[1]) < 12) | (np.abs(dec - 18.7) < 12)
    pq.write_table(
        table.filter(near & ((np.abs(ra - 256.2) < 15) | (np.abs(ra - 263.8) < 15))), root / "tycho2_vt.parquet"
    )
    lake = Lake.init(root / "lake")
    import_refcat(lake, "tycho2", [root / "tycho2_vt.parquet"], "tycho2", client=dask_client, progress=False)
    ingest(lake, skycamz_files, "skycamz", client=dask_client, progress=False)  # calibrates too
    report = build_objects(lake)
    return lake, report, object_table(lake)


def test_twelve_point_light_curves_of_the_shared_pointing(objects):
    lake, report, table = objects
    assert report.refcat == "tycho2" and report.frames_added == 14
    twelve = table[
        (table["n_det"] == 12)
        & (np.hypot((table["ra"] - POINTING[0]) * np.cos(np.radians(12.8)), table["dec"] - POINTING[1]) < 2)
    ]
    assert len(twelve) >= 100, len(twelve)
    assert table["n_det"].max() == 12  # never two detections of one frame in an object
    ref = twelve[twelve["refcat"] == "tycho2"]
    assert len(ref) >= 30 and (ref["object_id"] < 0).all() and (ref["n_cal"] == 12).all()
    np.testing.assert_array_equal(ref["object_id"], ref_object_ids("tycho2", ref["ref_id"].to_numpy(np.int64)))
    bright = ref[ref["median_mag"] < 10.5]
    assert len(bright) >= 10
    # robust scatter (1.4826 MAD) and clipped std of bright calibrated stars
    assert np.median(1.4826 * bright["mad_mag"]) < 0.05 and np.median(bright["std_mag_clip"]) < 0.05
    assert (1.4826 * bright["mad_mag"] < 0.05).mean() > 0.8
    star = bright.iloc[0]
    points = light_curve(lake, star["ra"], star["dec"], 3.0)
    mine = points[points["object_id"] == star["object_id"]]
    assert len(mine) == 12 and mine["mjd"].is_monotonic_increasing and mine["mag"].notna().all()
    print(
        f"\n{len(twelve)} objects with 12 points, {len(ref)} Tycho-2 stars; bright (V_T < 10.5): {len(bright)}, "
        f"median 1.4826 MAD {np.median(1.4826 * bright['mad_mag']):.4f} mag, median clipped std "
        f"{np.median(bright['std_mag_clip']):.4f} mag"
    )


def test_ensemble_light_curves_beat_per_frame_zeropoints_and_a_plain_median_ensemble(objects):
    """The 12 frames of one pointing: the median rms of the 20 brightest unsaturated stars on at least 11 of
    them, from per-frame zeropoints (mag_zp), the ensemble (mag) and a ten-line median ensemble computed here
    from mag_zp (every star on all 12 frames, no weights, no spatial term). Measured: 10.1, 5.6 and 7.6 mmag
    (benchmarks/precision.py prints them; 12 points are not detrended: EPD and TFA need 20)."""
    from skylake.ensemble.precision import brightest_scatter, frame_points

    lake, _, _ = objects
    frames = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    shared = frames[frames["path"].str.contains(r"_2(?:1\d|2[01])_1_1_1")]["frame_id"]
    assert len(shared) == 12
    points = frame_points(lake, shared)
    bright = brightest_scatter(points, 20, 11)
    zp, ens, med = (1000 * bright[c].median() for c in ("mag_zp", "mag", "plain"))
    print(
        f"\n20 brightest: per-frame zeropoints {zp:.2f} mmag, ensemble {ens:.2f} mmag, plain median ensemble "
        f"{med:.2f} mmag"
    )
    assert len(bright) == 20 and ens < med < zp
    assert points["mag_tfa"].isna().all()  # 12 points: not detrended


def _honesty(lake):
    """The noise diagram's table of the 12 frames of the shared pointing: stars on at least 11 of them, unflagged."""
    from skylake.ensemble.plots import noise_diagram

    return noise_diagram(lake, night="2013-06-10", profile="skycamz", min_points=11)


def test_the_errors_are_honest_on_real_frames(objects):
    """Real SkyCamZ frames: the pulls (mag - weighted mean) / mag_err of stars on at least 11 of the 12 frames
    have a robust width within 0.85-1.2 in every magnitude bin of 20 or more such stars, and their median
    chi2/dof is within 0.8-1.3 (before the noise model: 1.35-1.73 and 2.2). The model is the measured rms
    within 15 % in each of those bins."""
    lake, _, _ = objects
    d = _honesty(lake)
    print("\n" + d.summary())
    bins = d.bins[d.bins["n"] >= 20]
    assert len(bins) >= 5, d.summary()
    assert bins["pull_width"].between(0.85, 1.2).all(), d.summary()
    assert 0.8 <= d.objects["chi2_dof"].median() <= 1.3
    assert (np.abs(bins["rms_mag"] / bins["expected"] - 1) < 0.15).all(), d.summary()
    assert d.frames == 12 and d.frames_night == 14
    assert d.missing == {
        "ensemble + EPD + TFA": "12 points a star at most; EPD and TFA need [ensemble] detrend_min_points = 20"
    }
    # SkyCamZ's 0.2 m aperture: Young's scintillation at airmass ~1.08 and 2363 m, times Osborn's 1.5
    model = d.model.set_index("flux")
    assert (model["diameter_m"] == np.float32(0.2)).all() and not model["scint_fitted"].any()
    assert np.allclose(model["scint_mag"], 1.5 * 0.00252, rtol=0.02)


def test_the_clipped_star_is_saturated_and_no_clipped_pixel_is_unflagged(objects):
    """The V 4.9 star (RA 256.3448, Dec +12.7413) is clipped at what its 16-bit files hold: SATURATED on every
    frame of its pointing, out of the objects' statistics and of the noise diagram."""
    lake, _, table = objects
    star = table.iloc[np.argmin(np.hypot((table["ra"] - 256.3448) * np.cos(np.radians(12.74)), table["dec"] - 12.7413))]
    points = light_curve(lake, star["ra"], star["dec"], 3.0)
    mine = points[points["object_id"] == star["object_id"]]
    assert len(mine) == 12 and ((mine["flags"] & SATURATED) != 0).all()
    assert star["n"] == 0  # no point in the statistics
    assert star["object_id"] not in _honesty(lake).objects.index
