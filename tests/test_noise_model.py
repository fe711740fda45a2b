"""The noise model of the light curves (skylake.ensemble.noise): its formula by hand, its fit on SYNTHETIC points
with known terms, and end to end on a SYNTHETIC series (skylake.synthetic.series) with scintillation and a
flat-field floor injected on top of the pixels' noise: the terms come back, the pulls are of unit width in every
magnitude bin, constant stars are flagged variable at the nominal false-alarm rate and the injected variables
are all flagged."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds
import pytest
from scipy.spatial import cKDTree

from skylake.ensemble.apertures import aperture_offsets, choose_apertures
from skylake.ensemble.noise import OSBORN_FACTOR, NoiseFit, fit_noise, pull_stats, young_scintillation
from skylake.lake import Lake
from skylake.lake.tables import NOISE
from skylake.objects.build import build_objects
from skylake.objects.summary import false_alarm
from skylake.pipeline import ingest
from skylake.refcat import import_refcat
from skylake.synthetic.series import write_series


def test_young_scintillation_by_hand():
    """Young (1967): 0.09 D^(-2/3) X^1.75 exp(-h/8000) (2t)^(-1/2), D in cm, in magnitudes (x 1.0857)."""
    d_cm, x, h, t = 20.0, 1.3, 2363.0, 10.0
    expected = 1.0857 * 0.09 * d_cm ** (-2 / 3) * x**1.75 * np.exp(-h / 8000.0) / np.sqrt(2 * t)
    assert young_scintillation(0.2, t, x, h) == pytest.approx(expected, rel=1e-12)
    assert young_scintillation(0.2, t, x, h) * 1000 == pytest.approx(3.49, abs=0.01)  # mmag
    assert young_scintillation(0.0, t, x, h) == 0.0  # diameter unknown: no term
    assert young_scintillation(0.2, t, 0.5, h) == young_scintillation(0.2, t, 1.0, h)  # below 1 counts as 1
    assert OSBORN_FACTOR == 1.5


def test_noise_fit_variance_by_hand():
    fit = NoiseFit(phot_scale=1.2, scint_factor=1.5, floor_mag=0.003)
    assert fit.variance(0.01, 0.002) == pytest.approx((1.2 * 0.01) ** 2 + (1.5 * 0.002) ** 2 + 0.003**2, rel=1e-12)
    assert fit.error([0.01], [0.002])[0] == pytest.approx(np.sqrt(0.000144 + 0.000009 + 0.000009), rel=1e-12)


def _points(a, c, f, *, n_stars=600, n_frames=40, airmass=(1.0, 2.0), seed=1):
    """Constant stars on frames of rising airmass, each point with photon error ``p`` and its noise drawn from
    ``(a p)^2 + (c young)^2 + f^2``."""
    rng = np.random.default_rng(seed)
    mags = rng.uniform(8, 16, n_stars)
    x = np.linspace(*airmass, n_frames)
    star = np.repeat(np.arange(n_stars), n_frames)
    frame = np.tile(np.arange(n_frames), n_stars)
    phot = 0.001 * (10 ** (0.4 * (mags[star] - 9.0))) ** 0.5  # ~1 mmag at 9, ~40 mmag at 17
    young = young_scintillation(0.1, 30.0, x[frame], 2363.0)
    sigma = np.sqrt((a * phot) ** 2 + (c * young) ** 2 + f**2)
    return star, mags[star] + rng.normal(0, sigma), phot, young, n_stars


def test_fit_gives_back_each_term():
    """SYNTHETIC points with a photon scale 1.1, 1.7x Young's scintillation and a 3 mmag floor, over airmasses
    1-2: each term within 10 %, pulls of unit width."""
    star, mag, phot, young, n = _points(1.1, 1.7, 0.003)
    fit = fit_noise(star, mag, phot, young, n_stars=n)
    assert fit.scint_fitted
    assert fit.phot_scale == pytest.approx(1.1, rel=0.1)
    assert fit.scint_factor == pytest.approx(1.7, rel=0.1)
    assert fit.floor_mag == pytest.approx(0.003, rel=0.1)
    assert 0.95 < fit.pull_width < 1.05 and 0.9 < fit.chi2_dof < 1.1
    assert fit.n_stars == n and fit.n_points == len(star)


def test_fit_at_one_airmass_keeps_the_profiles_scintillation():
    """All frames at one airmass: scintillation and floor cannot be told apart; the factor stays the one given
    and the floor takes the rest (the total comes back)."""
    star, mag, phot, young, n = _points(1.0, 2.0, 0.002, airmass=(1.1, 1.1))
    fit = fit_noise(star, mag, phot, young, n_stars=n, scint_factor=1.5)
    assert not fit.scint_fitted and fit.scint_factor == 1.5
    total = np.hypot(2.0 * young[0], 0.002)
    assert np.hypot(1.5 * young[0], fit.floor_mag) == pytest.approx(total, rel=0.1)
    assert 0.95 < fit.pull_width < 1.05


def test_outliers_and_variables_do_not_move_the_fit():
    star, mag, phot, young, n = _points(1.0, 1.5, 0.003)
    rng = np.random.default_rng(5)
    hit = rng.random(len(mag)) < 0.01  # 1 % of points off by 0.3 mag (cosmic rays, bad pixels)
    mag = mag + np.where(hit, 0.3, 0.0)
    fit = fit_noise(star, mag, phot, young, n_stars=n)
    assert fit.phot_scale == pytest.approx(1.0, rel=0.1) and fit.floor_mag == pytest.approx(0.003, rel=0.15)


def test_too_few_points_give_the_starting_model():
    fit = fit_noise(np.zeros(10, int), np.zeros(10), np.full(10, 0.01), np.zeros(10), n_stars=1, floor_mag=0.004)
    assert fit.n_points == 0 and fit.phot_scale == 1.0 and fit.floor_mag == 0.004


def test_pulls_and_chi2_by_hand():
    star = np.array([0, 0, 0, 1, 1])
    mag = np.array([1.0, 2.0, 3.0, 5.0, 5.0])
    err = np.ones(5)
    pull, chi2 = pull_stats(star, mag, err, 2, min_points=3)
    assert pull[:3].tolist() == [-1.0, 0.0, 1.0] and np.isnan(pull[3:]).all()
    assert chi2[0] == 1.0 and np.isnan(chi2[1])


def test_false_alarm_is_chi2s_tail():
    from scipy.stats import chi2

    assert false_alarm(2.0, 11) == pytest.approx(chi2.sf(20.0, 10))
    assert np.isnan(false_alarm(1.0, 1))


def test_aperture_offsets_follow_the_frames_and_stars():
    """An aperture losing 0.05 mag more on frame 1, and a plane across frame 2; stars at their own constant
    loss: what is left is each point's noise alone."""
    rng = np.random.default_rng(2)
    n_stars, n_frames = 200, 6
    star = np.repeat(np.arange(n_stars), n_frames)
    frame = np.tile(np.arange(n_frames), n_stars)
    u, v = rng.uniform(-1, 1, star.size), rng.uniform(-1, 1, star.size)
    own = rng.normal(0.2, 0.05, n_stars)
    delta = own[star] + np.where(frame == 1, 0.05, 0.0) + np.where(frame == 2, 0.03 * u, 0.0)
    noise = rng.normal(0, 0.002, star.size)
    out = aperture_offsets(
        frame, star, delta + noise, np.full(star.size, 0.002), u, v, np.ones(star.size, bool),
        n_frames=n_frames, n_stars=n_stars, order=1,
    )  # fmt: skip
    assert np.std(out - (noise - noise.reshape(n_stars, n_frames).mean(axis=1)[star])) < 0.0005


def test_each_star_takes_its_least_noisy_measured_aperture():
    star = np.array([0, 0, 1, 1, 2, 3])
    var = np.array([[1.0, 1.0, 9.0, 9.0, np.nan, 1.0], [4.0, 4.0, 1.0, np.nan, 1.0, 0.85]])
    # star 1: aperture 1 is less noisy but measures one of its two points; star 2: only aperture 1 measures it;
    # star 3: aperture 1 is less noisy, but by less than the margin over the first (the calibrated flux)
    assert choose_apertures(star, var, 4).tolist() == [0, 0, 1, 0]


# -- end to end on a SYNTHETIC series ---------------------------------------------------------------------
SCINT, FLOOR, D = 1.7, 0.003, 0.1  # injected: 1.7 x Young's scintillation for a 10 cm aperture, a 3 mmag floor


@pytest.fixture(scope="module")
def series(tmp_path_factory, dask_client):
    root = tmp_path_factory.mktemp("noise")
    truth = write_series(
        root,
        n_frames=50,
        n_stars=1500,
        transit_depth=0.0,
        telescope_diameter_m=D,
        scint_factor=SCINT,
        floor_mag=FLOOR,
        variable_fap=0.01,
        mag_range=(10.0, 16.0),
        start_utc="2026-04-10T20:30:00",  # the field rises from airmass 2.8 to 1.05: scintillation x6 in rms
    )
    lake = Lake.init(root / "lake")
    import_refcat(
        lake, "series", [truth.refcat_path], "generic", columns_map=truth.refcat_map, client=dask_client, progress=False
    )
    ingest(lake, truth.paths, truth.profile_path, client=dask_client, progress=False)
    build_objects(lake, client=dask_client)
    points = ds.dataset(lake.path("lightcurves/dataset"), format="parquet", partitioning="hive").to_table().to_pandas()
    objects = ds.dataset(lake.path("objects/dataset"), format="parquet", partitioning="hive").to_table().to_pandas()
    stars = truth.stars
    d, j = cKDTree(np.column_stack([stars["ra"] * np.cos(np.radians(30)), stars["dec"]])).query(
        np.column_stack([objects["ra"] * np.cos(np.radians(30)), objects["dec"]])
    )
    objects = objects.assign(star_id=np.where(d * 3600 < 2, stars["star_id"].to_numpy()[j], -1))
    objects = objects.merge(stars[["star_id", "kind", "mag", "amp"]].rename(columns={"mag": "true_mag"}), on="star_id")
    points = points.merge(objects[["object_id", "kind", "true_mag"]], on="object_id")
    return lake, truth, points, objects


def test_the_injected_terms_come_back(series):
    """The model of the largest aperture (8 px: it loses no light as the seeing and the star's place on its
    pixel change, so the floor it measures is the one injected; smaller apertures add their own): photon
    scale 1 (the pixels' noise is what the generator drew), the scintillation factor and the floor within
    15 % of those injected."""
    lake, truth, _, _ = series
    noise = lake.read_night_table(NOISE).to_pandas()
    row = noise.set_index("flux").loc["flux_ap3"]
    print(noise[["flux", "phot_scale", "scint_factor", "scint_fitted", "floor_mag", "pull_width", "n_chosen"]])
    assert row["status"] == "ok" and row["scint_fitted"] and row["diameter_m"] == pytest.approx(D)
    assert row["phot_scale"] == pytest.approx(1.0, rel=0.15)
    assert row["scint_factor"] == pytest.approx(SCINT, rel=0.15)
    assert row["floor_mag"] == pytest.approx(FLOOR, rel=0.15)


def test_pulls_are_of_unit_width_in_every_bin(series):
    _, _, points, _ = series
    clean = points[(points["kind"] == "constant") & (points["flags"] == 0) & points["mag"].notna()]
    clean = clean[clean.groupby("object_id")["mag"].transform("count") >= 30]
    w = 1 / clean["mag_err"].astype(float) ** 2
    mean = (clean["mag"] * w).groupby(clean["object_id"]).sum() / w.groupby(clean["object_id"]).sum()
    pull = (clean["mag"] - clean["object_id"].map(mean)) / clean["mag_err"]
    bins = np.floor(clean["true_mag"])
    widths = {}
    for b, p in pull.groupby(bins):
        if clean.loc[p.index, "object_id"].nunique() >= 20:
            q75, q25 = np.percentile(p, [75, 25])
            widths[int(b)] = (q75 - q25) / 1.349
    print(widths)
    assert len(widths) >= 5 and all(0.95 <= v <= 1.05 for v in widths.values()), widths


def test_constant_stars_are_flagged_at_the_nominal_rate_and_variables_always(series):
    """At the profile's variable_fap of 1 %: the constant stars flagged within 2x of 1 %; every injected
    variable (semi-amplitudes 0.05-0.3 mag: far above 5 sigma) flagged."""
    _, _, points, objects = series
    many = objects[objects["n"] >= 30]
    # stars blended with a neighbour (sep's OBJ_MERGED) carry the neighbour's light, which changes with the
    # seeing: a systematic error of its own star by star that no noise model describes; they are left out here
    blended = points.loc[(points["flags"] & 1) != 0, "object_id"].unique()
    constant = many[(many["kind"] == "constant") & ~many["object_id"].isin(blended)]
    rate = constant["variable"].mean()
    print(f"{len(constant)} constant stars, {constant['variable'].sum()} flagged ({100 * rate:.2f} %)")
    assert len(constant) > 250 and 0.005 <= rate <= 0.02
    variables = many[many["kind"] == "variable"]
    assert len(variables) == 5 and variables["variable"].all() and (variables["fap"] < 1e-10).all()
