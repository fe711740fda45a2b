"""Photometric calibration, the pure parts: clipped fits with injected zeropoint, colour term and
extinction (exact answers on noise-free data, 0.01 on noisy data with outliers), star selection,
the one-to-one reduction, frame statuses instead of wrong numbers, astrometric residuals, and the
[calibration] profile checks. No cluster, no lake."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from skylake.calib import astrometry, model, zeropoint
from skylake.calib.crossmatch import one_to_one
from skylake.profile import ProfileError, load_profile

CAL = load_profile("demo").calibration  # min_stars 20, max_scatter 0.08, max_zp_variation/drop 0.1


def _stars(rng, n, zp=21.3, ct=0.12, noise=0.01, nx=1000, ny=1000):
    """A frame's pairs with ref - inst = zp + ct * colour + noise; every cut passes."""
    colour = rng.uniform(-0.2, 1.6, n)
    ref = rng.uniform(9.0, 14.0, n)
    inst = ref - zp - ct * colour + rng.normal(0, noise, n)
    return pd.DataFrame(
        {
            "frame_id": 1,
            "source_id": np.arange(n),
            "ref_id": np.arange(n) + 100,
            "ref_mag": ref,
            "inst_mag": inst,
            "ref_color": colour,
            "inst_mag_err": 0.01,
            "flux_max": 1000.0,
            "bkg": 100.0,
            "flags": 0,
            "edge_dist": 100.0,
            "flags_ref": 0,
            "neighbour_mag": np.nan,
            "n_competing": 0,
            "x": rng.uniform(0, nx - 1, n),
            "y": rng.uniform(0, ny - 1, n),
        }
    )


FRAME = pd.DataFrame({"frame_id": [1], "nx": [1000], "ny": [1000], "saturation": [60000.0]})


def test_color_fit_is_exact_on_noise_free_data_and_robust_to_outliers():
    rng = np.random.default_rng(1)
    p = _stars(rng, 200, noise=0.0)
    fit = zeropoint.color_fit(p["ref_mag"] - p["inst_mag"], p["ref_color"], 3.0, 0.5)
    assert fit.zp == pytest.approx(21.3, abs=1e-9) and fit.color_term == pytest.approx(0.12, abs=1e-9)
    assert fit.keep.all()
    p = _stars(rng, 300, noise=0.03)
    dm = (p["ref_mag"] - p["inst_mag"]).to_numpy(copy=True)
    dm[:30] += rng.uniform(0.3, 2.0, 30)  # 10 % blends and variables, all fainter-looking
    fit = zeropoint.color_fit(dm, p["ref_color"], 3.0, 0.5)
    assert abs(fit.zp - 21.3) < 0.01 and abs(fit.color_term - 0.12) < 0.01
    assert not fit.keep[:30].any() and fit.zp_err < 0.005 and 0.02 < fit.scatter < 0.04
    plain = np.polyfit(p["ref_color"], dm, 1)  # what an unclipped fit (Skycam-SkyMine) would give
    assert abs(plain[1] - 21.3) > 0.05


def test_clipped_median_without_colour():
    dm = np.r_[np.full(50, 19.15), np.full(5, 21.0), [np.nan]]
    fit = zeropoint.clipped_median(dm + np.linspace(-0.01, 0.01, dm.size), 3.0)
    assert fit.zp == pytest.approx(19.15, abs=0.002) and fit.keep.sum() == 50 and np.isnan(fit.color_term)


def test_frame_zeropoints_colour_fit_and_median_fallback():
    rng = np.random.default_rng(2)
    p = _stars(rng, 120, noise=0.02)
    table, rejects = zeropoint.frame_zeropoints(p, FRAME, CAL, use_color=True)
    row = table.loc[1]
    assert row["zp_status"] == "ok" and row["zp_method"] == "color_fit" and row["color"] == "B-V"
    assert abs(row["zp_fit"] - 21.3) < 0.01 and abs(row["color_term"] - 0.12) < 0.01 and row["zp_n"] >= 110
    # no colour in the catalogue: the clipped median, no colour term
    table, _ = zeropoint.frame_zeropoints(p.assign(ref_color=np.nan), FRAME, CAL, use_color=True)
    assert table.loc[1, "zp_method"] == "median" and np.isnan(table.loc[1, "color_term"])


def test_select_stars_names_the_first_reason():
    rng = np.random.default_rng(3)
    p = _stars(rng, 9)
    p.loc[0, "flux_max"] = 59000.0  # + bkg 100 > 0.9 x 60000
    p.loc[1, "flags"] = 2  # truncated
    p.loc[2, "edge_dist"] = 3.0
    p.loc[3, "flags"] = 1  # deblended (demo profile: blend_flags 1)
    p.loc[4, ["neighbour_mag", "ref_mag"]] = [12.0, 11.0]  # a 2nd star within the radius, 1 mag fainter
    p.loc[5, "ref_mag"] = -6.0
    p.loc[6, "inst_mag_err"] = 0.5
    p.loc[7, "flags_ref"] = 1  # VARIABLE
    reasons = zeropoint.select_stars(p, CAL, np.full(9, 60000.0))
    assert list(reasons) == [
        "saturated",
        "flagged",
        "edge",
        "blended",
        "blended",
        "too_bright",
        "too_faint",
        "ref_flagged",
        "",
    ]


def test_too_few_stars_and_clouds_get_a_status_and_reason():
    rng = np.random.default_rng(4)
    few = _stars(rng, 8)
    table, _ = zeropoint.frame_zeropoints(few, FRAME, CAL, use_color=True)
    assert table.loc[1, "zp_status"] == "too_few_stars" and "8 usable stars < min_stars 20" in table.loc[1, "zp_reason"]
    # patchy cloud: 0.6 mag more extinction on one side of the chip
    p = _stars(rng, 200)
    p["inst_mag"] += 0.6 * (p["x"] / 1000.0)
    table, _ = zeropoint.frame_zeropoints(p, FRAME, CAL, use_color=True)
    assert table.loc[1, "zp_status"] in ("high_scatter", "cloudy") and "cloud" in table.loc[1, "zp_reason"]
    # no pair at all
    table, _ = zeropoint.frame_zeropoints(p.iloc[:0], FRAME, CAL, use_color=True)
    assert table.loc[1, "zp_status"] == "no_reference_overlap" and np.isnan(table.loc[1, "zp_fit"])


def test_extinction_fit_recovers_k_and_flags_a_cloudy_frame():
    airmass = np.array([1.05, 1.2, 1.4, 1.7, 2.0, 1.3])
    zp = 22.0 - 0.15 * airmass
    ext = zeropoint.fit_extinction(zp, airmass, CAL)
    assert ext.status == "ok" and ext.k_ext == pytest.approx(0.15, abs=1e-9) and ext.zp_airmass0 == pytest.approx(22.0)
    rng = np.random.default_rng(5)
    noisy = zp + rng.normal(0, 0.003, zp.size)
    noisy[5] -= 0.8  # a cloud-covered frame: uniformly 0.8 mag fainter
    ext = zeropoint.fit_extinction(noisy, airmass, CAL)
    assert abs(ext.k_ext - 0.15) < 0.01 and abs(ext.zp_airmass0 - 22.0) < 0.02 and not ext.keep[5]
    assert list(zeropoint.mark_cloudy(noisy, airmass, ext, CAL)) == [False] * 5 + [True]
    short = zeropoint.fit_extinction(zp[:2], airmass[:2], CAL)
    assert short.status == "too_few_frames" and np.isnan(short.k_ext)
    flat = zeropoint.fit_extinction(zp[:3] * 0 + 21.8, np.array([1.1, 1.12, 1.15]), CAL)
    assert flat.status == "small_airmass_range" and flat.zp_airmass0 == pytest.approx(21.8)


def test_one_to_one_nearest_wins_both_ways():
    pairs = pd.DataFrame(
        {
            "frame_id": [1, 1, 1, 1, 2, 2],
            "source_id": [10, 10, 11, 12, 20, 21],
            "ref_id": [100, 101, 100, 101, 100, 100],
            "sep_arcsec": [1.0, 2.0, 0.5, 3.0, 4.0, 4.0],
            "ref_mag": [10.0, 11.0, 10.0, 11.0, 10.0, 10.0],
        }
    )
    out = one_to_one(pairs.sample(frac=1.0, random_state=0))
    got = sorted(zip(out["frame_id"], out["source_id"], out["ref_id"]))
    # frame 1: 11 takes 100 (0.5 < 1.0); 10 keeps only its nearest (100) and loses it; 12 takes 101
    # frame 2: a tie goes to the smaller source id
    assert got == [(1, 11, 100), (1, 12, 101), (2, 20, 100)]
    row = out.set_index("source_id")
    assert row.loc[11, "n_competing"] == 1 and row.loc[12, "n_competing"] == 0 and row.loc[20, "n_competing"] == 1
    assert np.isnan(row.loc[11, "neighbour_mag"])
    both = one_to_one(pairs[pairs["source_id"] == 10])
    assert both["ref_id"].tolist() == [100] and both["neighbour_mag"].tolist() == [11.0]


def test_astrometric_offset_and_scale_error_are_measured():
    rng = np.random.default_rng(6)
    n, nx, ny, scale = 400, 1024, 1024, 3.6  # arcsec/px
    x, y = rng.uniform(0, nx - 1, n), rng.uniform(0, ny - 1, n)
    cx, cy = (nx - 1) / 2, (ny - 1) / 2
    dec0 = 12.8
    ra_ref = 256.2 + (x - cx) * scale / 3600 / np.cos(np.radians(dec0))
    dec_ref = dec0 + (y - cy) * scale / 3600
    # sources: 0.8" east, 0.5" north, plus a 1e-3 scale error (3.6" per 1000 px of radius)
    dra = 0.8 + 1e-3 * (x - cx) * scale
    ddec = 0.5 + 1e-3 * (y - cy) * scale
    stats = astrometry.residual_stats(dra, ddec, x, y, ra_ref, dec_ref, nx, ny)
    assert stats["astro_dra_arcsec"] == pytest.approx(np.median(dra)) and abs(stats["astro_dra_arcsec"] - 0.8) < 0.2
    assert stats["astro_rms_arcsec"] == pytest.approx(np.sqrt(np.mean(dra**2 + ddec**2)))
    assert stats["astro_dra_dx"] == pytest.approx(3.6, abs=1e-6) and stats["astro_ddec_dy"] == pytest.approx(
        3.6, abs=1e-6
    )
    assert abs(stats["astro_dra_dy"]) < 1e-6 and stats["astro_radial_dr"] == pytest.approx(3.6, rel=0.02)
    ra_src = ra_ref + dra / 3600 / np.cos(np.radians(dec_ref))
    got = astrometry.offsets_arcsec(ra_src, dec_ref + ddec / 3600, ra_ref, dec_ref)
    assert np.allclose(got[0], dra, atol=1e-6) and np.allclose(got[1], ddec, atol=1e-9)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("color", ["B"], "color = ['B'] must be [] (no colour term) or two band names"),
        ("match_radius_arcsec", -1.0, "match_radius_arcsec = -1.0 must be a positive number"),
        ("mag_limits", [14.0, 8.0], "mag_limits = [14.0, 8.0] must be [low, high]"),
        ("min_stars", 1, "min_stars = 1 must be an integer >= 2"),
        ("saturation_fraction", 1.5, "saturation_fraction = 1.5 must be in (0, 1]"),
        ("bogus", 1, "[calibration] has unknown settings ['bogus']"),
    ],
)
def test_bad_calibration_settings_are_named(tmp_path, key, value, message):
    import json

    prof = tmp_path / "bad.toml"
    prof.write_text(f'extends = "demo"\n[calibration]\n{key} = {json.dumps(value)}\n')
    with pytest.raises(ProfileError) as exc:
        load_profile(prof)
    assert message in str(exc.value) and str(prof) in str(exc.value)


def test_calibration_settings_do_not_change_frame_identity(tmp_path):
    prof = tmp_path / "z.toml"
    prof.write_text('extends = "skycamz"\n[profile]\nname = "skycamz"\n[calibration]\nmin_stars = 50\n')
    mine, builtin = load_profile(prof), load_profile("skycamz")
    assert mine.digest == builtin.digest and mine.calibration.digest != builtin.calibration.digest
    assert dataclasses.replace(builtin.calibration, min_stars=50) == mine.calibration


def test_extinction_starts_from_a_robust_line_and_rechecks_its_support():
    airmass = np.array([1.0, 1.0, 1.0, 2.0])
    # a cloudy frame alone at its airmass: a least-squares line passes through it (k = 1.0, "ok")
    ext = zeropoint.fit_extinction([20.00, 20.01, 19.99, 19.0], airmass, CAL)
    assert ext.status == "small_airmass_range" and np.isnan(ext.k_ext) and "after dropping 1 frames" in ext.reason
    assert ext.zp_airmass0 == pytest.approx(20.0) and ext.n_frames == 3 and list(ext.keep) == [True] * 3 + [False]
    assert list(zeropoint.mark_cloudy([20.00, 20.01, 19.99, 19.0], airmass, ext, CAL)) == [False] * 3 + [True]
    # the same frame clear (within max_zp_drop of the others) gives the slope
    ext = zeropoint.fit_extinction([20.0, 20.0, 20.0, 19.85], airmass, dataclasses.replace(CAL, max_zp_drop=0.3))
    assert ext.status == "ok" and ext.k_ext == pytest.approx(0.15) and ext.n_frames == 4
    # two cloudy frames at the high end: clipped, and the 0.1 airmass left is no range for a fit
    x = np.r_[[1.0] * 5, [1.1] * 5, 1.6, 1.6]
    zp = 20.0 - 0.15 * x - np.r_[[0.0] * 10, 1.0, 1.0]
    ext = zeropoint.fit_extinction(zp, x, CAL)
    assert ext.status == "small_airmass_range" and "airmass range 0.100 < min_airmass_range 0.2" in ext.reason
    assert ext.n_frames == 10 and ext.zp_airmass0 == pytest.approx(19.8425) and np.isnan(ext.k_ext)
    # 2 mag/airmass is no sky's extinction
    x = np.linspace(1.0, 2.0, 6)
    ext = zeropoint.fit_extinction(22.0 - 2.0 * x, x, CAL)
    assert ext.status == "implausible_k" and np.isnan(ext.k_ext) and "fitted k_ext 2.000" in ext.reason


def test_median_fallback_under_a_colour_fit_is_brought_to_colour_0():
    rng = np.random.default_rng(7)
    fitted = _stars(rng, 120, noise=0.0)  # frame 1: a colour fit gives color_term 0.12
    red = _stars(rng, 31, zp=21.0, noise=0.0).assign(frame_id=2)
    red["ref_color"] = np.r_[np.linspace(2.6, 3.6, 26), np.linspace(2.3, 2.5, 5)]  # 5 in color_range [-0.5, 2.5]
    red["inst_mag"] = red["ref_mag"] - 21.0 - 0.12 * red["ref_color"]
    frames = pd.DataFrame({"frame_id": [1, 2], "nx": 1000, "ny": 1000, "saturation": 60000.0})
    table, _ = zeropoint.frame_zeropoints(pd.concat([fitted, red], ignore_index=True), frames, CAL, use_color=True)
    row = table.loc[2]
    # the plain median would be 21.0 + 0.12 x 3.0 (the median colour) = 21.36
    assert row["zp_method"] == "median_ct" and row["zp_fit"] == pytest.approx(21.0, abs=1e-9)
    assert row["color_term"] == pytest.approx(0.12, abs=1e-9) and row["color"] == "B-V" and row["zp_status"] == "ok"
    # alone, no colour term to take: not an ok zeropoint
    table, _ = zeropoint.frame_zeropoints(red, frames.iloc[1:], CAL, use_color=True)
    row = table.loc[2]
    assert row["zp_status"] == "too_few_stars" and row["zp_method"] == "median" and "at colour 3.00" in row["zp_reason"]
    assert row["zp_fit"] == pytest.approx(21.36, abs=1e-9)


def test_zp_method_is_none_when_no_star_was_used():
    rng = np.random.default_rng(8)
    table, _ = zeropoint.frame_zeropoints(_stars(rng, 30).iloc[:0], FRAME, CAL, use_color=False)
    assert table.loc[1, "zp_method"] == "none" and table.loc[1, "zp_status"] == "no_reference_overlap"
    table, rejects = zeropoint.frame_zeropoints(_stars(rng, 30).assign(flux_max=70000.0), FRAME, CAL, use_color=False)
    assert table.loc[1, "zp_method"] == "none" and table.loc[1, "zp_n"] == 0 and (rejects == "saturated").all()


def test_astrometric_residuals_never_use_excluded_pairs():
    from skylake.calib.pairs import residuals

    n = 8
    pairs = pd.DataFrame(
        {
            "ra": 10.0 + np.r_[[1.0] * 3, [9.0] * 5] / 3600,
            "dec": 0.0,
            "ra_ref": 10.0,
            "dec_ref": 0.0,
            "x": np.arange(n) * 100.0,
            "y": np.arange(n) * 50.0,
            "reject": ["", "clipped", "too_faint"] + ["saturated", "edge", "blended", "flagged", "edge"],
        }
    )
    stats = residuals(pairs, pd.Series({"nx": 1000, "ny": 1000}))
    assert stats["astro_n"] == 3 and stats["astro_dra_arcsec"] == pytest.approx(1.0) and np.isnan(stats["astro_dra_dx"])
    assert tuple(stats) == astrometry.COLUMNS


def test_night_fit_leaves_out_rows_of_frames_that_no_longer_exist():
    from skylake.calib.calibrate import _nights

    night, key = "2026-03-01", "k1"
    x = np.array([1.0, 1.5, 2.0])
    rows = pd.DataFrame(
        {
            "frame_id": [1, 2, 3],
            "night": night,
            "airmass": x,
            "zp_fit": 22.0 - 0.15 * x,
            "zp_status": "ok",
            "zp_reason": "",
        }
    )
    # earlier rows: frame 4 is alive; frame 99 was re-ingested under a new id (its row is stale)
    earlier = pd.DataFrame(
        {
            "frame_id": [4, 99],
            "night": night,
            "calib_key": key,
            "zp": [22.0 - 0.18, 22.0 - 0.375],
            "airmass": [1.2, 2.5],
            "zp_status": "ok",
        }
    )
    rows, ext = _nights(rows, earlier, key, "demo", CAL, redo=False, alive={1, 2, 3, 4})
    assert ext["n_frames"].tolist() == [4] and ext["airmass_max"].tolist() == [2.0]
    assert ext["k_ext"].iloc[0] == pytest.approx(0.15) and (rows["zp"] == rows["zp_fit"]).all()


def test_aperture_corrections_from_frame_groups_equal_the_batch_wide_ones():
    """The workers' groups each give their frames' own corrections; the driver's fallback from them equals
    the batch-wide computation (frames 3 and 6 have too few clean stars and get the others' median)."""
    rng = np.random.default_rng(3)
    n = {1: 12, 2: 9, 3: 2, 4: 7, 5: 15, 6: 1}
    frame = np.repeat(list(n), list(n.values()))
    auto = 10 ** rng.uniform(4, 5, frame.size)
    pairs = pd.DataFrame(
        {
            "frame_id": frame,
            "flux_auto": auto,
            "flux_auto_err": auto / 100,
            "flux_ap2": auto * 10 ** (-0.4 * rng.normal(0.05 * frame, 0.01)),
        }
    )
    clean = rng.uniform(size=frame.size) > 0.1
    whole = model.aperture_corrections(pairs, "flux_ap2", clean)
    own = pd.concat(
        [
            model.own_aperture_corrections(pairs[g], "flux_ap2", clean[g.to_numpy()])
            for g in (pairs["frame_id"] <= 2, pairs["frame_id"] > 2)
        ]
    )
    groups = own.reindex(pd.unique(frame)).fillna(model.apcor_fallback(own))
    pd.testing.assert_series_equal(groups, whole, check_names=False)
    assert whole.loc[3] == whole.loc[6] == np.median(whole.loc[[1, 2, 4, 5]])


def test_writers_own_consecutive_nights_and_only_their_groups():
    from skylake.calib.pairs import writer_plans

    zps = pd.DataFrame(
        {
            "frame_id": range(10),
            "night": ["a"] * 4 + ["b"] * 2 + [None] + ["c"] * 3,
            "zp": 1.0,
            "color_term": 0.0,
            "zp_err": 0.01,
            "zp_n_matched": [10] * 6 + [0] + [10] * 3,
        }
    )
    group_of = pd.Series(np.arange(10) // 3, index=pd.Index(range(10), name="frame_id"))
    plans = writer_plans(zps, group_of, n_writers=2)
    assert [sorted(set(rows["night"])) for _, _, rows in plans] == [["a"], ["b", "c"]]  # 40 and 50 pairs
    assert [groups for _, groups, _ in plans] == [[0, 1], [1, 2, 3]]  # frame 6 has no pairs: no night=unknown
    assert len(writer_plans(zps, group_of, n_writers=8)) == 3  # one night each, at most
    assert writer_plans(zps.iloc[:0], group_of, n_writers=2) == []


def test_home_groups_keep_each_frame_with_the_partition_holding_most_of_its_sources():
    from skylake.calib.pairs import home_groups

    frames = pd.DataFrame({"frame_id": [5, 1, 2, 3, 4, 6, 7], "night": ["b", "a", "a", "a", None, "b", "a"]})
    counts = [
        (np.array([1, 2, 9]), np.array([40, 10, 5])),  # partition 0; frame 9 is not in the batch
        (np.array([2, 3, 4, 5]), np.array([30, 20, 20, 60])),  # partition 1
        (np.array([4, 6]), np.array([20, 70])),  # partition 2: frame 4 ties with partition 1 (the first wins)
    ]
    groups = home_groups(frames, counts, max_sources=100)
    # frame 7 has no sources: a group of its own, first; then homes 0, 1, 2 in (night, frame_id) order
    assert groups.index.tolist() == [7, 1, 4, 2, 3, 5, 6] and groups.tolist() == [0, 1, 2, 2, 2, 3, 4]
    # home 1 holds frames 4 (20 + 20 sources, unknown night first), 2 (10 + 30), 3 (20): 100, then 5 (60)
    small = home_groups(frames, counts, max_sources=50)
    assert small.reindex([7, 1, 4, 2, 3, 5, 6]).tolist() == [0, 1, 2, 3, 4, 5, 6]  # at most 50 sources a group
    assert home_groups(frames, []).tolist() == [0] * 7  # no sources at all: one group


def test_theil_sen_is_scipy_s_to_the_bit():
    """The night's robust line without importing scipy.stats: scipy's theilslopes slope and intercept, the same
    bits, for nights of 2-60 frames with repeated airmasses; NaN slope where every airmass is the same."""
    from scipy.stats import theilslopes

    from skylake.calib.zeropoint import theil_sen

    rng = np.random.default_rng(11)
    for k in range(400):
        n = int(rng.integers(2, 60))
        airmass = np.round(rng.uniform(1.0, 2.5, n), int(rng.integers(1, 4)))  # rounded: ties in x
        zp = 22.0 - 0.2 * airmass + rng.normal(0.0, 0.03, n) - (rng.uniform(size=n) < 0.2) * rng.uniform(0, 1, n)
        assert theil_sen(zp, airmass) == tuple(theilslopes(zp, airmass)[:2]), k
    assert np.isnan(theil_sen(np.array([21.0, 21.5]), np.array([1.2, 1.2]))[0])  # (scipy warns here too)
    with pytest.raises(ValueError, match="got 1 and 1"):
        theil_sen(np.array([21.0]), np.array([1.2]))
