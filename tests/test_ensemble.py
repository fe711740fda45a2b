"""The ensemble's pure parts on arrays with known answers (SYNTHETIC numbers, no pixels): the solve against a
direct least-squares solution, its clipping and gauge, the association of a field's detections, EPD and TFA,
and the corrections any point gets from a frame's row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skylake.ensemble.apertures import aperture_offsets, choose_apertures, choose_from_sums, variance_sums
from skylake.ensemble.associate import associate_field
from skylake.ensemble.detrend import choose_templates, epd, tfa, trend_basis
from skylake.ensemble.noise import NoiseFit, NoiseModel, fit_noise, frame_excess
from skylake.ensemble.solve import EnsembleSettings, design, solve
from skylake.ensemble.stage import TERM_COLUMNS, EnsembleOptions, point_corrections


def _field(n_frames=20, n_stars=150, order=1, seed=3, noise=True, missing=0.1):
    rng = np.random.default_rng(seed)
    star_mag = rng.uniform(9, 14, n_stars)
    x, y = rng.uniform(0, 1023, n_stars), rng.uniform(0, 1023, n_stars)
    P = design(np.zeros(1), np.zeros(1), order).shape[1]
    terms = rng.normal(0, 0.02, (n_frames, P))
    fr = np.repeat(np.arange(n_frames), n_stars)
    st = np.tile(np.arange(n_stars), n_frames)
    u, v = 2 * x[st] / 1023 - 1, 2 * y[st] / 1023 - 1
    corr = np.einsum("ij,ij->i", design(u, v, order), terms[fr])
    err = 0.002 + 0.01 * 10 ** (0.4 * (star_mag[st] - 13))
    mag = star_mag[st] - corr + (rng.normal(0, 1, fr.size) * err if noise else 0)
    keep = rng.uniform(size=fr.size) > missing
    return (
        dict(
            frame=fr[keep],
            star=st[keep],
            mag=mag[keep],
            err=err[keep],
            u=u[keep],
            v=v[keep],
            n_frames=n_frames,
            n_stars=n_stars,
        ),
        terms,
        star_mag,
    )


def _gauge(terms):
    """The injected terms with the solve's gauge: offsets and spatial terms averaging zero over frames."""
    return terms - terms.mean(axis=0)


def test_noise_free_terms_are_recovered_exactly_in_the_solve_s_gauge():
    data, terms, star_mag = _field(noise=False, order=2)
    sol = solve(**data, settings=EnsembleSettings(spatial_order=2, floor_mag=0.0, tol_mag=1e-10, max_iter=2000))
    np.testing.assert_allclose(sol.terms, _gauge(terms), atol=2e-6)
    # each star's mean carries what the gauge took from the frames: the frames' mean correction at its position
    x = np.zeros(len(star_mag))
    for s_ in range(len(star_mag)):
        on = data["star"] == s_
        x[s_] = (design(data["u"][on][:1], data["v"][on][:1], 2) @ terms.mean(axis=0))[0]
    np.testing.assert_allclose(sol.star_mag - star_mag, -x, atol=2e-6)
    assert sol.frame_ok.all() and sol.point_used.all()


def test_the_solve_is_the_weighted_least_squares_solution():
    """A direct dense solve of the same normal equations (with the gauge as constraints) gives the same
    corrections: the solve converges to the least-squares answer, not somewhere near it."""
    data, _, _ = _field(n_frames=8, n_stars=40, order=1, seed=5)
    s = EnsembleSettings(
        spatial_order=1, floor_mag=0.001, clip_sigma=1e3, variable_chi2=1e6, tol_mag=1e-12, max_iter=5000, min_stars=5
    )
    sol = solve(**data, settings=s)
    E, S, N = data["n_frames"], data["n_stars"], len(data["frame"])
    X = design(data["u"], data["v"], 1)
    A = np.zeros((N, 3 * E + S))
    for k in range(3):
        A[np.arange(N), 3 * data["frame"] + k] = X[:, k]
    A[np.arange(N), 3 * E + data["star"]] = -1.0
    w = 1 / np.sqrt(data["err"] ** 2 + 0.001**2)
    rhs = -data["mag"]
    # gauge rows: the sum over frames of each term is zero
    G = np.zeros((3, 3 * E + S))
    for k in range(3):
        G[k, k : 3 * E : 3] = 1e3
    full = np.vstack([A * w[:, None], G])
    sol_direct = np.linalg.lstsq(full, np.r_[rhs * w, np.zeros(3)], rcond=None)[0]
    direct_terms = sol_direct[: 3 * E].reshape(E, 3)
    np.testing.assert_allclose(sol.terms, direct_terms, atol=2e-6)
    np.testing.assert_allclose(sol.correction, np.einsum("ij,ij->i", X, direct_terms[data["frame"]]), atol=2e-6)


def test_errors_of_the_corrections_are_right():
    """Over many noise draws, (correction - truth) / correction_err has unit width."""
    pulls = []
    for seed in range(6):
        data, terms, _ = _field(n_frames=15, n_stars=120, seed=seed)
        sol = solve(**data, settings=EnsembleSettings(floor_mag=0.0))
        truth = np.einsum("ij,ij->i", design(data["u"], data["v"], 1), _gauge(terms)[data["frame"]])
        pulls.append((sol.correction - truth) / sol.correction_err)
    width = np.std(np.concatenate(pulls))
    assert 0.9 < width < 1.1, width


def test_outliers_and_variables_are_left_out_and_frames_without_stars_get_nothing():
    data, terms, _ = _field(seed=11)
    mag = data["mag"].copy()
    bad = np.flatnonzero(data["star"] == 7)[3]
    mag[bad] += 0.5  # a cosmic ray on one point
    var = data["star"] == 12  # a variable: 0.2 mag sinusoid over the frames
    mag[var] += 0.2 * np.sin(data["frame"][var])
    sol = solve(**{**data, "mag": mag})
    assert not sol.point_used[bad] and sol.point_used[np.flatnonzero(data["star"] == 7)[:3]].all()
    assert not sol.star_used[12] and np.isfinite(sol.star_mag[12])
    truth = np.einsum("ij,ij->i", design(data["u"], data["v"], 1), _gauge(terms)[data["frame"]])
    assert np.max(np.abs(sol.correction - truth)) < 0.003
    # a frame whose stars are all unusable has no terms and corrects nothing
    usable = data["frame"] != 4
    sol = solve(**data, usable=usable)
    assert not sol.frame_ok[4] and np.isnan(sol.terms[4]).all()
    assert (sol.correction[data["frame"] == 4] == 0).all()


def test_the_anchor_frames_keep_the_absolute_scale():
    data, terms, _ = _field(seed=2, order=0)
    anchor = np.zeros(data["n_frames"], bool)
    anchor[:5] = True
    sol = solve(**data, settings=EnsembleSettings(spatial_order=0), anchor=anchor)
    assert abs(sol.terms[:5, 0].mean()) < 1e-9
    assert abs(sol.terms[:, 0].mean()) > 1e-4


def test_settings_name_the_bad_value():
    with pytest.raises(ValueError, match="spatial_order must be 0, 1 or 2, got 3"):
        EnsembleSettings(spatial_order=3)
    with pytest.raises(ValueError, match="unknown ensemble setting"):
        EnsembleSettings.from_dict({"order": 1})
    with pytest.raises(ValueError, match=r"epd_params: unknown \['seeing'\]"):
        EnsembleOptions(epd_params=["x", "seeing"])


def test_associate_field_one_detection_per_star_per_frame():
    # three stars 10" apart, on three frames, with 0.5" jitter; frame 2 has a second detection of star 0
    ra0, dec0 = np.array([10.0, 10.0 + 10 / 3600, 10.0]), np.array([20.0, 20.0, 20.0 + 10 / 3600])
    frame = np.repeat([0, 1, 2], 3)
    jitter = np.tile([0.5, -0.4, 0.3], 3) / 3600
    ra, dec = np.tile(ra0, 3) + jitter, np.tile(dec0, 3) - jitter
    frame = np.r_[frame, 2]
    ra, dec = np.r_[ra, ra0[0] + 1.5 / 3600], np.r_[dec, dec0[0]]
    star = associate_field(frame, ra, dec, 2.0)
    np.testing.assert_array_equal(star[:9], np.tile([0, 1, 2], 3))
    assert star[9] == 3  # the farther second detection founds its own star


def test_epd_removes_a_parameter_trend_and_leaves_noise_alone():
    rng = np.random.default_rng(0)
    S, E = 30, 120
    t = np.linspace(0, 0.3, E)
    p = rng.normal(0, 1, (S, E, 1))
    noise = rng.normal(0, 0.005, (S, E))
    mag = 12 + noise
    mag[:10] += 0.02 * p[:10, :, 0]  # the first ten stars depend on the parameter
    err = np.full((S, E), 0.005)
    trend, terms = epd(mag, err, p, t)
    assert (terms[:10] == 1).all()
    slopes = np.array([np.polyfit(p[s, :, 0], trend[s], 1)[0] for s in range(10)])
    # each slope within 4 sigma of its statistical error, 0.005 / sqrt(120)
    assert np.all(np.abs(slopes - 0.02) < 4 * 0.005 / np.sqrt(E)), slopes
    # stars without the dependence are (nearly all) left alone: the F-test at 1e-3
    assert (terms[10:] == 0).sum() >= 19 and (trend[10:][terms[10:] == 0] == 0).all()


def test_tfa_finds_the_shared_trend_and_keeps_a_transit():
    rng = np.random.default_rng(1)
    S, E = 60, 150
    t = np.linspace(0, 0.25, E)
    common = 0.01 * np.sin(2 * np.pi * t / 0.2)  # a trend all stars share
    mag = 12 + common[None, :] + rng.normal(0, 0.003, (S, E))
    dip = (t > 0.1) & (t < 0.14)
    mag[0, dip] += -2.5 * np.log10(1 - 0.01)  # a 1 % transit on star 0
    err = np.full((S, E), 0.003)
    rms = np.std(mag, axis=1)
    templates = choose_templates(mag, rms, max_templates=40)
    assert 0 not in templates[:5] or len(templates) > 5
    basis = trend_basis(mag, templates[templates != 0])
    assert basis.shape[1] == 1
    trend, terms = tfa(mag, err, basis, t, window=21)
    out = mag - trend
    assert np.std(out[1:], axis=1).mean() < 0.0034  # the shared trend is gone
    depth = 1 - 10 ** (-0.4 * (np.median(out[0, dip]) - np.median(out[0, ~dip])))
    assert abs(depth - 0.01) < 0.001, depth
    # templates of pure noise share nothing: no basis vector
    assert trend_basis(rng.normal(12, 0.003, (S, E)), np.arange(S)).shape[1] == 0


def test_point_corrections_are_the_solve_s():
    data, _, _ = _field(seed=4, order=2)
    sol = solve(**data, settings=EnsembleSettings(spatial_order=2))
    rows = pd.DataFrame(
        {
            "frame_id": np.arange(data["n_frames"]) + 100,
            "status": "ok",
            "spatial_order": 2,
            "terms_cov": [list(c[np.triu_indices(6)]) for c in sol.terms_cov],
        }
    )
    for k, c in enumerate(TERM_COLUMNS):
        rows[c] = sol.terms[:, k]
    x, y = (data["u"] + 1) * 1023 / 2, (data["v"] + 1) * 1023 / 2
    corr, err = point_corrections(rows, data["frame"] + 100, x, y, np.full(x.size, 1024), np.full(x.size, 1024))
    np.testing.assert_allclose(corr, sol.correction, atol=1e-9)
    np.testing.assert_allclose(err, sol.correction_err, rtol=1e-9)
    corr, _ = point_corrections(rows, np.full(3, 999), x[:3], y[:3], np.full(3, 1024), np.full(3, 1024))
    assert np.isnan(corr).all()  # a frame without a row: no correction


def test_noise_model_by_hand():
    m = NoiseModel(
        zp=20.0,
        exptime=10.0,
        sky_adu=100.0,
        gain=2.0,
        read_noise_e=10.0,
        n_pix=50.0,
        n_ann=500.0,
        airmass=1.5,
        diameter_m=0.5,
        height_m=2000.0,
    )
    n = 10 ** (-0.4 * (15.0 - 20.0)) * 10 * 2  # 2000 e-
    assert m.photon(15.0) == pytest.approx(1.0857 / np.sqrt(n))
    assert m.background(15.0) == pytest.approx(1.0857 * np.sqrt(50 * 1.1 * (200 + 100)) / n)
    scint = 1.0857 * 0.09 * 50 ** (-2 / 3) * 1.5**1.75 * np.exp(-0.25) / np.sqrt(20)
    assert m.scintillation() == pytest.approx(scint)
    assert m.total(15.0) == pytest.approx(np.sqrt(m.photon(15.0) ** 2 + m.background(15.0) ** 2 + scint**2))


@pytest.mark.parametrize("order", [0, 1, 2])
def test_the_solve_is_the_constrained_least_squares_solution_of_a_moving_field(order):
    """A sparse direct solve of the normal equations with the gauge as exact constraints (Lagrange multipliers:
    the offsets sum to zero, each spatial term sums to zero over the frames) gives the same terms, corrections
    and star means to 1e-6 mag, for each spatial order, on a field that moves on the chip (so the spatial gauge
    is a constraint, not a free direction) and with the points in no particular order."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    data, _, _ = _field(n_frames=12, n_stars=60, order=order, seed=7)
    rng = np.random.default_rng(8)
    data["u"] = np.clip(data["u"] + rng.normal(0, 0.05, data["u"].size), -1, 1)  # dithered pointings
    data["v"] = np.clip(data["v"] + rng.normal(0, 0.05, data["v"].size), -1, 1)
    shuffle = rng.permutation(data["frame"].size)
    data = {k: (val[shuffle] if isinstance(val, np.ndarray) else val) for k, val in data.items()}
    s = EnsembleSettings(spatial_order=order, clip_sigma=1e3, variable_chi2=1e6, tol_mag=1e-10, min_stars=5)
    sol = solve(**data, settings=s)
    assert sol.point_used.all() and sol.frame_ok.all()

    E, S, N = data["n_frames"], data["n_stars"], data["frame"].size
    X = design(data["u"], data["v"], order)
    P = X.shape[1]
    rows = np.repeat(np.arange(N), P + 1)
    cols = np.column_stack([P * data["frame"][:, None] + np.arange(P), P * E + data["star"]]).ravel()
    vals = np.column_stack([X, -np.ones(N)]).ravel()
    A = sp.csr_matrix((vals, (rows, cols)), shape=(N, P * E + S))
    W = sp.diags(1.0 / (data["err"] ** 2 + s.floor_mag**2))
    G = sp.csr_matrix((np.ones(P * E), (np.tile(np.arange(P), E), np.arange(P * E))), shape=(P, P * E + S))
    kkt = sp.bmat([[A.T @ W @ A, G.T], [G, None]], format="csc")
    x = spsolve(kkt, np.r_[A.T @ W @ -data["mag"], np.zeros(P)])
    direct = x[: P * E].reshape(E, P)
    np.testing.assert_allclose(sol.terms, direct, atol=1e-6)
    np.testing.assert_allclose(sol.correction, np.einsum("ij,ij->i", X, direct[data["frame"]]), atol=1e-6)
    np.testing.assert_allclose(sol.star_mag, x[P * E : P * E + S], atol=1e-6)


def _pieces(frame, star, mag, err, u, v, n_frames, n_stars):
    """The solve, an aperture's offsets, two noise fits, the apertures' choice and the frames' excess of a field."""
    sol = solve(frame, star, mag, err, u, v, n_frames=n_frames, n_stars=n_stars)
    rng = np.random.default_rng(1)
    e = np.asarray(err, float)
    delta = rng.normal(0, 0.05, n_stars)[star] + rng.normal(0, 0.01, n_frames)[frame] + rng.normal(0, 1, e.size) * e
    dmag = aperture_offsets(frame, star, delta, err, u, v, e < 0.05, n_frames=n_frames, n_stars=n_stars, order=1)
    young = 0.002 * (1 + np.asarray(frame) / n_frames)
    ens = mag + sol.correction
    fits = [
        fit_noise(star, ens, err, young, n_stars=n_stars),
        fit_noise(star, ens, e * 1.1, young, n_stars=n_stars, points=e < 0.3, offset=dmag, fit_slope=True),
    ]
    var = np.stack([f.variance(x, young) for f, x in zip(fits, (e, e * 1.1))])
    return {
        "terms": sol.terms,
        "correction": sol.correction,
        "star_mag": sol.star_mag,
        "used": sol.point_used,
        "variable": sol.star_variable,
        "dmag": dmag,
        # the scintillation factor as the scintillation it adds (mag): fitted near zero, c itself is ill-defined
        # (1e-5 or 1e-11 by the order of the sums, 4e-8 mag or nothing)
        "fits": np.array([[getattr(f, k) for k in f.__dataclass_fields__] for f in fits], float)
        * np.where(np.array(list(NoiseFit.__dataclass_fields__)) == "scint_factor", young.max(), 1.0),
        "choice": choose_apertures(star, var, n_stars),
        "excess": frame_excess(frame, star, ens, var[0], n_frames=n_frames, n_stars=n_stars),
    }


def _same(a, b, rtol):
    for k in a:
        if a[k].dtype == bool or k == "choice":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:  # the noise fits (and the excess, of their variances) to the least-squares fitter's own tolerance
            r = max(rtol, 1e-5) if rtol and k in ("fits", "excess") else rtol
            atol = 1e-6 if rtol and k == "fits" else 1e-12  # 1e-6 mag of scintillation or floor
            np.testing.assert_allclose(a[k], b[k], rtol=r, atol=atol, err_msg=k)


@pytest.mark.parametrize("block", [97, 401])  # the solve's blocks: one frame (180 points) each, or two
def test_block_by_block_and_lean_types_give_the_same_answer(monkeypatch, block):
    """The passes over a night's points go a block at a time (skylake.ensemble.blocks): small blocks give
    the answer of one block (the solve, an aperture's offsets, the choice to 1e-9; the per-star sums add up in
    another order, which the noise fits' least squares, converged to 1e-8, carry to 1e-6), and int32 indices
    with float32 errors and positions give exactly the answer of the same numbers in 64 bits."""
    import skylake.ensemble.blocks
    import skylake.ensemble.solve

    data, _, _ = _field(n_frames=30, n_stars=200, order=1, seed=11)
    rng = np.random.default_rng(12)
    cloudy = data["frame"] == 3  # a frame with extra noise of its own
    data["mag"] = data["mag"] + np.where(cloudy, rng.normal(0, 0.03, cloudy.size), 0.0)
    lean = dict(data)
    lean.update(frame=data["frame"].astype(np.int32), star=data["star"].astype(np.int32))
    lean.update({k: data[k].astype(np.float32) for k in ("err", "u", "v")})
    wide = dict(lean)
    wide.update(frame=data["frame"], star=data["star"], **{k: lean[k].astype(float) for k in ("err", "u", "v")})
    one = _pieces(**wide)
    assert one["used"].sum() > 0.9 * one["used"].size and (one["excess"] > 0).any()
    _same(one, _pieces(**lean), rtol=0)
    for module in (skylake.ensemble.blocks, skylake.ensemble.solve):
        monkeypatch.setattr(module, "BLOCK", block)
    _same(one, _pieces(**lean), rtol=1e-9)


def test_the_noise_fit_of_a_mask_and_an_offset_is_that_of_the_subset():
    """fit_noise on a night's arrays with ``points`` and ``offset`` (no copies of a subset, no array of the
    magnitudes in the aperture) is fit_noise on the subset's own magnitudes; variance_sums and choose_from_sums,
    an aperture at a time, choose as choose_apertures does with every aperture's variances at once."""
    data, _, _ = _field(n_frames=30, n_stars=200, order=1, seed=13)
    rng = np.random.default_rng(14)
    star, mag, err = data["star"], data["mag"], data["err"]
    young = rng.uniform(0.001, 0.003, star.size)
    offset = rng.normal(0, 0.01, star.size).astype(np.float32)
    pts = (err < 0.02) & (rng.random(star.size) < 0.8)
    whole = fit_noise(star, mag, err, young, n_stars=200, points=pts, offset=offset)
    subset = fit_noise(star[pts], (mag + offset)[pts], err[pts], young[pts], n_stars=200)
    assert whole.n_points == pts.sum() and whole == subset
    var = np.stack([err**2, np.where(pts, 0.7 * err**2, np.nan), 0.7 * err**2 + 1e-6])
    sums = [variance_sums(star, v, 200) for v in var]
    choice = choose_from_sums(np.stack([c for c, _ in sums]), np.stack([s for _, s in sums]))
    np.testing.assert_array_equal(choice, choose_apertures(star, var, 200))
    assert set(np.unique(choice)) == {0, 2}
