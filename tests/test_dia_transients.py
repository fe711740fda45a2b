"""Transients drawn into REAL frames, found by `skylake dia`: the 12 SkyCamZ frames of one pointing on 2013-06-10.

The first 6 frames (in time) are ingested as they are and make the reference; into copies of the last 6 a point
source is drawn, with each frame's own PSF (a bright isolated star of the same frame, sky subtracted, scaled
down: its noise vanishes), at four places fixed on the sky: two on empty sky and two 6 px (about 2 FWHM) from
a bright star, at 10 and 5 sigma. The 6 copies are ingested and every frame is difference-imaged:

- every 10-sigma point on empty sky is a DIA source, without a flag, in each of the 6 frames that have it, what
  it adds measured within 10 % of what was drawn (the original frame through the same subtraction taken away:
  the frame's noise and the stars' residuals cancel); nothing is found at any of the places in the 6 frames
  without them; next to a bright star all 6 are found, their flux measured where they were drawn within 2 % of
  it, but where they were found 0.8-1.4 of it: the issue's 10 % is not met at the detection's place. A
  detection beside a star is 0.7-2.8 px from where it was drawn (0.1-0.5 px on empty sky; 3-4x what its S/N of
  5-10 allows: the star's residual pulls it), and there the PSF-weighted flux moves about 20 % per pixel (the
  star's photons weigh the pixels toward it down); forced photometry at fixed places beside bright stars has
  pulls of width 1.05-1.11;
- the 5-sigma points' completeness and fluxes are printed (a goal: at least half, within 25 %);
- the real DIA sources (no flag, a PSF's residuals: real_bogus >= 0.01) make DIA objects: the 10-sigma transient
  on empty sky is one, of its 6 detections, linked to no object; the real DIA sources no drawing explains are
  0-5 per frame (the issue's goal: under 10; 1-13 DIA sources per frame before the cuts, most of them hot pixels
  the reference lacks, which no PSF fits);
- forced photometry at empty places of the differences has pulls of unit width (0.9-1.1): the errors are honest
  on real frames (the variance scaled by the difference's own noise at the PSF's scale, measured by `skylake dia`
  at other, random places: :func:`skylake.dia.stage.noise_scale`);
- after `skylake dia --redo` each transient (DIA object of 2 or more real sources, no object) has a forced point
  on every frame (LAKE/dia_forced), at the one place where the S/N^2 of the frames that detected it peaks together
  (:mod:`skylake.dia.places`): zero within the errors before it appeared, and of the drawn 10-sigma point
  0.998-1.037 on empty sky and 0.959-1.005 beside the star (0.16 px from where it was drawn; at its DIA object's
  place, the mean of its detections 0.74 px off, it was 1.112-1.160); `skylake lightcurve` lists it.

Each point's core is drawn exactly at its place on the sky (the template moved by the sub-pixel remainder), as a
real transient's is: at the nearest whole pixel the six cores lay 0.3-1.0 px apart.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from skylake.cli import main
from skylake.lake import Lake, tables
from skylake.pipeline import ingest

pytestmark = pytest.mark.timeout(1500)  # 12 real frames ingested, a reference, 12 differences and 6 more: 3-4 min

GAIN = 5.47  # SkyCamZ [e-/ADU] (pipelines/skycamz.toml)
HALF = 10  # half width of the drawn PSF [px]
NEXT_TO = 6.0  # the "next to a bright star" offset [px]


def _pointing(skycamz_files):
    from astropy.io import fits

    heads = [(p, fits.getheader(p)) for p in skycamz_files]
    centre = np.median([[h["CRVAL1"], h["CRVAL2"]] for _, h in heads], axis=0)
    same = [(p, h) for p, h in heads if np.hypot(h["CRVAL1"] - centre[0], h["CRVAL2"] - centre[1]) < 0.5]
    assert len(same) == 12
    return [p for p, _ in sorted(same, key=lambda ph: ph[1]["DATE-OBS"])]


def _open(path):
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    from skylake.dia.reference import sky_noise

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        with fits.open(path) as hdul:
            data = hdul[0].data.astype(np.float64)
            wcs = WCS(hdul[0].header).celestial
    sky, var = sky_noise(data, GAIN)
    return data, sky, var, wcs


def _places(data, sky):
    """Two empty places and two next to bright stars, and a template star, on the first copy (pixels)."""
    import sep

    work = np.ascontiguousarray(data - sky)
    objects = sep.extract(work, 3.0, err=float(np.std(work[work < np.percentile(work, 50)])) * 1.5, minarea=3)
    x, y, peak = objects["x"], objects["y"], objects["peak"]
    ny, nx = data.shape

    def far(px, py, r):
        return np.hypot(x - px, y - py).min() > r

    def alone(k):  # no neighbour within 25 px brighter than 2 % of it
        close = np.hypot(x - x[k], y - y[k]) < 25
        return (close & (peak > 0.02 * peak[k])).sum() == 1

    def inside(px, py):
        return 100 < px < nx - 100 and 100 < py < ny - 100

    empty = [(px, py) for py in range(150, ny - 150, 53) for px in range(150, nx - 150, 59) if far(px, py, 20)]
    bright = [k for k in np.argsort(-peak) if 3000 < peak[k] < 15000 and inside(x[k], y[k]) and alone(k)]
    assert len(empty) >= 4 and len(bright) >= 3
    template = bright[0]
    stars = [(x[k] + NEXT_TO, y[k]) for k in bright[1:3]]
    return [empty[0], empty[len(empty) // 2], *stars], (x[template], y[template])


def _difference(lake, like: dict, path, reference: dict):
    """A file's difference from the reference, as `skylake dia` makes it, for a file not in the lake (its row
    is ``like``'s, another frame of the camera, with its own path, exposure and no id)."""
    from astropy.io import fits

    from skylake.dia.stage import _subtract, aperture_correction, core_fwhm, frame_psf, noise_scale

    frame = {**like, "path": str(path), "frame_id": -1, "exptime": float(fits.getheader(path)["EXPTIME"])}
    diff, wcs, _, _ = _subtract(lake.store.location, frame, reference)
    fwhm = core_fwhm(diff)
    psf = frame_psf(diff, fwhm)
    diff.variance *= noise_scale(diff, fwhm, psf) ** 2  # as `skylake dia` does
    return diff, psf, fwhm, aperture_correction(diff, fwhm, psf)


def _same_subtraction(lake, like: dict, copy, original, reference: dict):
    """A drawn copy's difference as `skylake dia` makes it, and the original frame through the very same
    subtraction (the copy's kernel; its own sky, as `skylake dia` takes it): their difference is what was drawn,
    with the frame's noise and the stars' residuals cancelled. (The original's own subtraction would not do beside
    a star: a point drawn beside a stamp's star takes that stamp out of the kernel's fit, and the star's residual
    under the point differs between the two subtractions by 1-18 % of a 10-sigma point.)"""
    from skylake.dia.difference import broaden

    diff, psf, fwhm, correction = _difference(lake, like, copy, reference)
    data, sky, var, _ = _open(original)
    frame = data - sky
    if diff.broadened > 0:
        frame, _ = broaden(frame, var, diff.broadened)
    return (diff, psf, fwhm, correction), frame - diff.model


def _flux(diff, psf, fwhm, correction, x, y, image=None):
    """The PSF-weighted flux and error at (x, y) of a difference (or of ``image`` with its variance and PSF)."""
    from skylake.dia.forced import forced_photometry

    image = diff.image if image is None else image
    flux, err = forced_photometry(image, diff.variance, [float(x)], [float(y)], fwhm, psf=psf)
    return flux[0] * correction, err[0] * correction


@pytest.fixture(scope="module")
def run(skycamz_files, tmp_path_factory, dask_client):
    from astropy.io import fits
    from scipy.ndimage import shift

    from skylake.dia.references import read_references, usable_frames
    from skylake.dia.stage import run_dia
    from skylake.lake.frames import FrameSelection
    from skylake.runtime import Runner

    root = tmp_path_factory.mktemp("dia_transients")
    frames = _pointing(skycamz_files)
    lake = Lake.init(root / "lake")
    ingest(lake, [str(p) for p in frames[:6]], "skycamz", client=dask_client, progress=False, calibrate=False)
    assert main(["reference", "build", str(lake.url), "--min-frames", "5"]) == 0
    reference = read_references(lake).iloc[0].to_dict()
    like = usable_frames(lake, FrameSelection()).iloc[0].to_dict()
    data, sky, _, wcs = _open(frames[6])
    places, template = _places(data, sky)
    sky_places = [wcs.pixel_to_world_values(px, py) for px, py in places]
    sky_template = wcs.pixel_to_world_values(*template)
    levels = [10, 5, 10, 5]  # empty, empty, next to a star, next to a star
    drawn, clean, same = {}, {}, {}
    (root / "later").mkdir()
    for path in frames[6:]:
        data, sky, _, wcs = _open(path)
        clean[path.name] = plain = _difference(lake, like, path, reference)
        tx, ty = (int(round(float(v))) for v in wcs.world_to_pixel_values(*sky_template))
        star = (data - sky)[ty - HALF : ty + HALF + 1, tx - HALF : tx + HALF + 1]
        psf = star / star.sum()
        core = np.hypot(*np.mgrid[-HALF : HALF + 1, -HALF : HALF + 1]) < 4
        cy, cx = (
            np.sum(np.where(core, psf, 0) * g) / np.sum(np.where(core, psf, 0))
            for g in np.mgrid[-HALF : HALF + 1, -HALF : HALF + 1]
        )
        with fits.open(path, scale_back=True) as hdul:
            image = hdul[0].data.astype(np.float64)
            for (ra, dec), level in zip(sky_places, levels):
                # the core exactly at the place, as a real transient's: the template moved by what the nearest
                # whole pixel and its own centroid leave (else the six points lie 0.3-1.0 px apart on the sky)
                x, y = (float(v) for v in wcs.world_to_pixel_values(ra, dec))
                px, py = int(round(x)), int(round(y))
                moved = shift(psf, (y - py - cy, x - px - cx), order=3, mode="constant")
                sigma = _flux(*plain, x, y)[1]  # the difference's own noise there, in total flux
                image[py - HALF : py + HALF + 1, px - HALF : px + HALF + 1] += level * sigma * moved / moved.sum()
                drawn.setdefault(path.name, []).append((ra, dec, level, level * sigma, x, y))
            hdul[0].data = image
            hdul.writeto(root / "later" / path.name)
        same[path.name] = _same_subtraction(lake, like, root / "later" / path.name, path, reference)
    ingest(lake, [str(root / "later")], "skycamz", client=dask_client, progress=False, calibrate=False)
    report = run_dia(lake, runner=Runner(dask_client))
    assert report.done == 12 and not report.failed
    return lake, drawn, sky_places, clean, like, reference, root, same


def _found(lake):
    from skylake.objects.files import catalog_dataset

    rows = catalog_dataset(lake, tables.DIA_SOURCES).to_table().to_pandas()
    frames = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    return rows.merge(frames.assign(name=frames["path"].map(lambda p: p.rsplit("/", 1)[-1])), on="frame_id")


def _near(rows, ra, dec, arcsec=10.7):  # 3 px, one FWHM
    d = np.hypot((rows["ra"] - ra) * np.cos(np.radians(dec)), rows["dec"] - dec) * 3600
    return rows[d < arcsec]


def test_ten_sigma_transients_are_found_in_every_frame_that_has_them_and_nowhere_else(run):
    lake, drawn, places, clean, like, reference, root, same = run
    rows = _found(lake)
    lines, ratios = [], {(5, "empty"): [], (10, "empty"): [], (5, "by a star"): [], (10, "by a star"): []}
    placed = {"empty": [], "by a star": []}  # the 10-sigma points measured where they were drawn

    for name in sorted(set(rows["name"])):
        mine = rows[rows["name"] == name]
        for k, (ra, dec) in enumerate(places):
            near = _near(mine, ra, dec)
            if name not in drawn:
                assert near.empty, f"{name}: a DIA source where nothing was drawn: {near.to_dict('records')}"
                continue
            at_ra, at_dec, level, flux, x, y = drawn[name][k]
            near = _near(mine, at_ra, at_dec)
            hit = near[(near["sign"] == 1) & (near["flags"] == 0)].sort_values("snr").tail(1)
            # what the drawing added: the flux found less the same measure, at the same place, of the original
            # frame through the same subtraction (the frame's noise and the stars' residuals cancel)
            subtraction, original = same[name]
            ratio = np.nan
            if len(hit):
                at = hit.iloc[0]
                ratio = (at["flux"] - _flux(*subtraction, at["x"], at["y"], image=original)[0]) / flux
            where = "empty" if k < 2 else "by a star"
            if level == 10:  # the same measure at the drawn place: the photometry's own part, the position's apart
                placed[where].append(
                    (_flux(*subtraction, x, y)[0] - _flux(*subtraction, x, y, image=original)[0]) / flux
                )
            ratios[level, where].append(ratio)
            lines.append(f"{name} {where:9} {level:2d} sigma: drawn {flux:6.0f} ADU, found {ratio:.3f} of it"
                         + (f" at S/N {hit['snr'].iloc[0]:.1f}, {np.hypot(at['x'] - x, at['y'] - y):.2f} px "
                            f"from where it was drawn, psf_chi2 {hit['psf_chi2'].iloc[0]:.2f}, real_bogus "
                            f"{hit['real_bogus'].iloc[0]:.3f}" if len(hit) else ""))  # fmt: skip
    print("\n" + "\n".join(lines))
    for (level, where), got in sorted(ratios.items()):
        got = np.array(got)
        fluxes = f"fluxes {np.nanmin(got):.2f}-{np.nanmax(got):.2f} of the drawn" if np.isfinite(got).any() else ""
        print(f"{level:2d} sigma, {where:9}: {np.isfinite(got).sum()}/{len(got)} found {fluxes}")
    for where, got in placed.items():
        print(f"10 sigma, {where:9}: measured where drawn {np.min(got):.3f}-{np.max(got):.3f} of the drawn")
    empty = np.array(ratios[10, "empty"])
    assert len(empty) == 6 and np.isfinite(empty).all() and np.abs(empty - 1).max() < 0.10
    assert np.isfinite(ratios[5, "empty"]).sum() >= 3  # the goal: half the 5-sigma points
    # Next to a bright star (2 FWHM) every 10-sigma point is found. Measured where it was drawn, its flux is
    # 0.984-1.017 of the drawn (empty sky 1.00-1.02); measured where it was found, 0.80-1.35: the detection's
    # position there is 0.7-2.8 px off (0.1-0.5 on empty sky; 3-4x what its S/N of 5-10 allows, the star's
    # residual pulling it), and beside the star the PSF-weighted flux moves 10-20 % per pixel (the star's photons
    # weigh the pixels toward it down). The 10 % holds at the place, not at the detection's.
    star = np.array(ratios[10, "by a star"])
    assert np.isfinite(star).all() and len(star) == 6 and (np.abs(star - 1) < 0.5).all()
    assert np.abs(np.array(placed["by a star"]) - 1).max() < 0.05
    assert np.abs(np.array(placed["empty"]) - 1).max() < 0.05


def test_empty_places_of_real_differences_have_pulls_of_unit_width(run):
    """On a grid of places far from stars (not the random ones `skylake dia` scales the variance by)."""
    from skylake.dia.forced import forced_photometry

    lake, drawn, places, clean, like, reference, root, same = run
    pulls = []
    for name in sorted(clean)[:3]:
        diff, psf, fwhm, _ = clean[name]
        wcs = _open(root / "later" / name)[3]
        model = diff.model - diff.solution.background_image()
        taken = np.array([wcs.world_to_pixel_values(ra, dec) for ra, dec in places])
        ny, nx = model.shape
        xs, ys = np.meshgrid(np.arange(40, nx - 40, 23.0), np.arange(40, ny - 40, 23.0))
        xs, ys = xs.ravel() + 0.3, ys.ravel() - 0.2
        level = 5 * np.sqrt(np.nanmedian(diff.variance))
        keep = [
            np.abs(model[int(y) - 8 : int(y) + 9, int(x) - 8 : int(x) + 9]).max() < level
            and np.isfinite(diff.variance[int(y) - 8 : int(y) + 9, int(x) - 8 : int(x) + 9]).all()
            and np.hypot(taken[:, 0] - x, taken[:, 1] - y).min() > 20
            for x, y in zip(xs, ys)
        ]  # fmt: skip
        flux, err = forced_photometry(diff.image, diff.variance, xs[keep], ys[keep], fwhm, psf=psf)
        pulls.append(flux / err)
    pulls = np.concatenate(pulls)
    pulls = pulls[np.isfinite(pulls)]
    robust = 1.4826 * np.median(np.abs(pulls - np.median(pulls)))
    print(f"\n{len(pulls)} empty places on 3 real differences: pull width {np.std(pulls):.3f} (robust {robust:.3f}), "
          f"mean {np.mean(pulls):+.3f}")  # fmt: skip
    assert len(pulls) > 500
    assert 0.9 <= robust <= 1.1 and 0.9 <= np.std(pulls) <= 1.15


def test_places_beside_bright_stars_of_real_differences_have_honest_pulls(run):
    """Forced photometry 1.5, 2 and 3 FWHM from bright unsaturated stars (8 places round each, none within 2
    FWHM of another detection; each fitted together with its star, as `skylake dia` fits an object with its
    neighbours) on the 6 differences: the stars' imperfect subtraction is in the errors (width
    1.05-1.11 measured, 1.5 to 3 FWHM; on empty sky 0.97-0.98). What scatters more beside a star is a
    detection's flux: its position wanders 0.7-2.8 px there (0.1-0.5 px on empty sky), see the transients' test."""
    import sep

    from skylake.dia.forced import joint_forced_photometry

    lake, drawn, places, clean, like, reference, root, same = run
    pulls = {1.5: [], 2.0: [], 3.0: []}
    for name in sorted(clean):
        diff, psf, fwhm, _ = clean[name]
        matched = np.ascontiguousarray(np.nan_to_num(diff.model - diff.solution.background_image()))
        noise = float(np.sqrt(np.nanmedian(diff.variance[np.isfinite(diff.variance)])))
        found = sep.extract(matched, 5.0, err=noise, minarea=3)
        x, y, peak = found["x"], found["y"], found["peak"]
        ny, nx = matched.shape
        inside = (x > 40) & (x < nx - 40) & (y > 40) & (y < ny - 40)
        for k in np.flatnonzero((peak > 1500) & (peak < 15000) & inside):
            for r in pulls:
                for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False):
                    px, py = x[k] + r * fwhm * np.cos(angle), y[k] + r * fwhm * np.sin(angle)
                    others = np.hypot(x - px, y - py)
                    others[k] = np.inf
                    if others.min() > 2 * fwhm:
                        flux, err = joint_forced_photometry(
                            diff.image, diff.variance, [x[k], px], [y[k], py], fwhm, psf=psf
                        )
                        pulls[r].append([flux[1] / err[1]])
    lines = []
    for r, got in pulls.items():
        got = np.concatenate(got)
        got = got[np.isfinite(got)]
        robust = 1.4826 * np.median(np.abs(got - np.median(got)))
        lines.append(f"{r} FWHM from a bright star: {len(got)} places, pull width {np.std(got):.3f} (robust "
                     f"{robust:.3f}), mean {np.mean(got):+.3f}")  # fmt: skip
        assert len(got) > 300
        assert 0.9 <= np.std(got) <= 1.25 and 0.9 <= robust <= 1.25 and abs(np.mean(got)) < 0.25
    print("\n" + "\n".join(lines))


def test_real_dia_sources_make_one_dia_object_per_transient_and_few_others(run):
    """The 10-sigma transient on empty sky is one DIA object of its 6 detections, a transient (no object there);
    the real DIA sources (no flag, real_bogus >= 0.01) that no drawing explains are printed per frame (the issue's
    goal: under 10 per 1024x1024 frame)."""
    from skylake.objects.files import catalog_dataset

    lake, drawn, places, *_ = run
    rows = _found(lake)
    dia_objects = catalog_dataset(lake, tables.DIA_OBJECTS).to_table().to_pandas().set_index("dia_object_id")
    real = rows[rows["dia_object_id"].notna()]
    assert set(real["dia_object_id"].astype("int64")) == set(dia_objects.index)
    ra, dec = np.mean([drawn[name][0][:2] for name in drawn], axis=0)  # the 10-sigma place on empty sky
    (transient,) = set(_near(real, ra, dec)["dia_object_id"].astype("int64"))
    row = dia_objects.loc[transient]
    frames = rows[rows["name"].isin(drawn)]
    print(f"\nthe 10-sigma transient: DIA object {transient}, {row['n_sources']} sources, peak S/N "
          f"{row['peak_snr']:.1f}, {3600 * np.hypot((row['ra'] - ra) * np.cos(np.radians(dec)), row['dec'] - dec):.1f}"
          f" arcsec from where it was drawn")  # fmt: skip
    assert row["n_sources"] == row["n_positive"] == 6 and pd.isna(row["object_id"])
    assert row["first_mjd"] == frames["mjd"].min() and row["last_mjd"] == frames["mjd"].max()
    explained = np.zeros(len(real), bool)
    for ra, dec in [p[:2] for name in drawn for p in drawn[name]]:
        explained |= real.index.isin(_near(real, ra, dec).index)
    per_frame = real[~explained].groupby("name").size().reindex(sorted(set(rows["name"])), fill_value=0)
    print(f"real DIA sources no drawing explains, per frame: {per_frame.tolist()} (all DIA sources: "
          f"{rows.groupby('name').size().tolist()})")  # fmt: skip
    assert per_frame.max() < 10


@pytest.fixture(scope="module")
def redone(run, dask_client):
    """`skylake dia --redo` once the transients are DIA objects: each frame measured again at every transient
    (twice: the second replaces the first's forced points, the test finds each once)."""
    lake = run[0]
    for _ in range(2):
        assert main(["dia", str(lake.url), "--redo", "--scheduler", dask_client.scheduler.address]) == 0
    return run


def test_a_transient_is_measured_on_every_frame_at_its_dia_objects_place(redone, capsys):
    """After `skylake dia --redo`, LAKE/dia_forced holds each transient's forced points on all 12 frames: zero
    within the errors where nothing was drawn, and where it was, what the drawing adds (the original frame through
    the same subtraction taken away) is within 10 % of it, on empty sky and 2 FWHM from a bright star: the points
    are taken where the frames that detected it say together (skylake.dia.places), not at the mean of its
    detections (0.74 px off beside the star: 1.11-1.16 of the drawn there)."""
    import duckdb
    import lsdb

    from skylake.objects.files import catalog_dataset

    lake, drawn, places, clean, like, reference, root, same = redone
    forced = catalog_dataset(lake, tables.DIA_FORCED).to_table().to_pandas()
    dia_objects = catalog_dataset(lake, tables.DIA_OBJECTS).to_table().to_pandas()
    frames = lake.read_frames(columns=["frame_id", "path", "exptime"]).to_pandas()
    frames["name"] = frames["path"].map(lambda p: p.rsplit("/", 1)[-1])
    scale = tables.get(tables.DIA_FRAMES).read(lake, columns=["frame_id", "scale"]).to_pandas()
    forced = forced.merge(frames, on="frame_id").merge(scale, on="frame_id")
    transients = dia_objects[dia_objects["object_id"].isna() & (dia_objects["n_sources"] >= 2)]
    assert set(forced["dia_object_id"]) == set(transients["dia_object_id"])
    # a HATS catalog like the others: lsdb and DuckDB read the same rows
    assert len(lsdb.open_catalog(lake.path(tables.DIA_FORCED)).compute()) == len(forced)
    glob = lake.path(f"{tables.DIA_FORCED}/dataset/**/*.parquet")
    assert duckdb.sql(f"select count(*) from read_parquet('{glob}')").fetchall()[0][0] == len(forced)
    # no frame is calibrated here: no magnitude, null (not NaN: SQL's IS NULL finds them); and with no objects
    # measured, no flux floor or scale residual either
    nulls = f"select count(*) from read_parquet('{glob}') where mag_dia is null and mag_dia_err is null"
    assert duckdb.sql(nulls).fetchall()[0][0] == len(forced)
    rows = tables.get(tables.DIA_FRAMES).read(lake, columns=["n_forced", "scale_residual", "flux_floor"]).to_pandas()
    assert rows["n_forced"].sum() == len(forced) and rows[["scale_residual", "flux_floor"]].isna().all().all()
    lines, added = [], {}
    for k, (ra, dec) in enumerate(places):
        if k % 2:  # the 5-sigma places
            continue
        (oid,) = _near(transients, ra, dec)["dia_object_id"]
        mine = forced[forced["dia_object_id"] == oid].sort_values("mjd")
        assert len(mine) == 12 and mine["name"].is_unique
        empty = mine[~mine["name"].isin(drawn)]
        pulls = (empty["dflux"] / empty["dflux_err"]).to_numpy()
        assert (np.abs(pulls) < 3).all(), pulls
        where = "empty" if k < 2 else "by a star"
        for p in mine[mine["name"].isin(drawn)].itertuples():
            subtraction, original = same[p.name]
            flux = drawn[p.name][k][3]
            found = p.dflux * p.scale * p.exptime  # back in the frame's ADU
            added.setdefault(where, []).append((found - _flux(*subtraction, p.x, p.y, image=original)[0]) / flux)
            pull = (found - flux) / (p.dflux_err * p.scale * p.exptime)
            off = np.hypot(p.x - drawn[p.name][k][4], p.y - drawn[p.name][k][5])
            lines.append(f"{p.name} {where:9}: forced {found:6.1f} ADU {off:.2f} px from the drawn place, drawn "
                         f"{flux:6.1f}, what it adds {added[where][-1]:.3f} of it, (found - drawn) / error "
                         f"{pull:+.2f}")  # fmt: skip
        lines.append(f"{where}: DIA object {oid}, 6 frames without it: dflux / error {np.round(pulls, 2)}")
    for where, got in added.items():
        lines.append(f"10 sigma {where:9}: forced at the DIA object, {np.min(got):.3f}-{np.max(got):.3f} of the drawn")

    # `skylake lightcurve` there says it is a transient and writes its points
    out = root / "transient.csv"
    (ra, dec), oid = places[0], int(_near(transients, *places[0])["dia_object_id"].iloc[0])
    capsys.readouterr()
    assert main(["lightcurve", str(lake.url), "--ra", str(ra), "--dec", str(dec), "--transients-out", str(out)]) == 0
    assert f"{oid} transient (DIA object)" in capsys.readouterr().out
    print("\n" + "\n".join(lines))  # after the command's output is read (capsys takes everything before)
    written = pd.read_csv(out)
    assert len(written) == 12 and set(written["dia_object_id"]) == {oid} and written["mjd"].is_monotonic_increasing
    assert np.abs(np.array(added["empty"]) - 1).max() < 0.10
    assert np.abs(np.array(added["by a star"]) - 1).max() < 0.10  # the 10 %: 0.959-1.005 measured
