"""Blended variables through the lake: a SYNTHETIC crowded field's DIA light curves against its aperture ones.

30 frames of one field (skylake.synthetic.series: Gaussian PSFs, photon and read noise, transparency jitter),
the seeing drifting between 1.5 and 3 px; 8 variables of 12-13 mag (amplitudes 0.2-0.3 mag), each with two
constant neighbours 1.5 and 2 mag brighter at 3.6 and 5.4 px (1.2 and 1.8 FWHM of the worst seeing). The chain
as a user runs it: the catalogue imported, the frames ingested and calibrated, `skylake objects build`,
`skylake reference build`, `skylake dia`.

The extraction never splits a variable from its neighbours: its light lands in the neighbour's object, whose
aperture light curve shows 4-19 % of the variable's amplitude. The variable has no object, but the catalogue
knows it: `skylake dia` measures it at the catalogue's position under the id its object will have. Its DIA
light curve (``dflux``) recovers the amplitude (fitted with the known shape of the variation, in flux on the
reference's scale) at 0.980-1.010 of the truth, all 8 within 2 % and each within 1.7 sigma of its own statistical
error (0.9-1.3 %: the periods, 0.02-0.05 d, give the night of 0.1 d 2-5 cycles). The constant neighbours' DIA
light curves stay within their errors (chi2/dof median 0.93); weighed one by one instead of fitted together with
the variable (skylake.dia.forced.joint_forced_photometry, on the reference and on each difference), they took part
of its change (up to 3.1, median 1.16).
Measured 2026-11-28. Before, 116 and 199 were at -6.3 % and -4.5 % (5 sigma each): the reference was interpolated
onto each frame's grid, and interpolating stars 1.5-2 px wide changes each by its place on the pixel grid (each
frame differently); their bright neighbours' part of that, left on the differences, followed the seeing and moved
the two amplitudes. These frames differ from the reference by their pointing jitter alone, so the reference is now
moved by whole pixels and the kernel, centred on the fraction left, takes the rest (skylake.dia.resample.
whole_pixel_shift). Earlier still 0.83-1.10 (3 of 8) and the neighbours' chi2/dof 1.6-1.9: the kernel was fitted on
an unresolved pair of neighbours beside a variable (a stamp must now look like one star,
skylake.dia.difference.single_stars) and varied over the chip by a polynomial its 10-45 stamps could not pin down
(the degree is now cross-validated, skylake.dia.kernel; 0 on this field, whose PSF is the same everywhere).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skylake.cli import main
from skylake.lake import Lake, tables
from skylake.objects.build import build_objects
from skylake.pipeline import ingest
from skylake.refcat.importer import import_refcat
from skylake.synthetic.series import _signal, write_series

pytestmark = pytest.mark.timeout(1500)  # 30 frames ingested and subtracted: 1-2 min


@pytest.fixture(scope="module")
def field(tmp_path_factory, dask_client):
    from scipy.spatial import cKDTree

    from skylake.objects.associate import ref_object_ids
    from skylake.objects.files import catalog_dataset

    root = tmp_path_factory.mktemp("dia_blends")
    truth = write_series(
        root, n_frames=30, n_stars=300, shape=(360, 360), fwhm_px=(1.5, 3.0), n_variables=8,
        variable_amp=(0.2, 0.3), variable_period=(0.02, 0.05), transit_depth=0.0, gradient_mag=0.0,
        mag_range=(12.0, 16.5),
        blend_neighbours=((3.6, -1.5), (5.4, -2.0)), pointing_jitter_px=1.0, saturation_adu=1e7,
    )  # fmt: skip
    lake = Lake.init(root / "lake")
    import_refcat(lake, "series", [truth.refcat_path], "generic", columns_map=truth.refcat_map, client=dask_client)
    ingest(lake, truth.paths, truth.profile_path, client=dask_client, progress=False)
    build_objects(lake, client=dask_client)
    address = dask_client.scheduler.address
    assert main(["reference", "build", str(lake.url), "--scheduler", address]) == 0
    assert main(["dia", str(lake.url), "--scheduler", address]) == 0
    stars = truth.stars.assign(object_id=ref_object_ids("series", truth.stars["star_id"].to_numpy()))
    objects = catalog_dataset(lake, tables.OBJECTS).to_table(columns=["object_id", "ra", "dec"]).to_pandas()
    c = np.cos(np.radians(stars["dec"].median()))
    _, nearest = cKDTree(np.c_[objects["ra"] * c, objects["dec"]]).query(np.c_[stars["ra"] * c, stars["dec"]])
    stars["blend_object"] = objects["object_id"].to_numpy()[nearest]  # the object its light lands in
    dia = catalog_dataset(lake, tables.DIA_LIGHTCURVES).to_table().to_pandas()
    points = catalog_dataset(lake, tables.LIGHTCURVES).to_table().to_pandas()
    return lake, truth, stars, dia, points


def _scale(lake, truth) -> float:
    """The true zeropoint of the reference's grid frame: its scale, on which DIA fluxes are (ADU/s)."""
    refs = tables.get(tables.REFERENCES).read(lake).to_pandas()
    frames = lake.read_frames(columns=["frame_id", "mjd"]).to_pandas().set_index("frame_id")
    mjd = frames.loc[int(refs["grid_frame_id"].iloc[0]), "mjd"]
    return float(truth.frames["zp"].iloc[int(np.argmin(np.abs(truth.frames["mjd"] - mjd)))])


def test_dia_light_curves_keep_a_blended_variables_amplitude_where_apertures_lose_it(field):
    lake, truth, stars, dia, points = field
    zp = _scale(lake, truth)
    lines, dia_ratio, aperture_slope, sigma = [], [], [], []
    for _, star in stars[stars["kind"] == "variable"].iterrows():
        lc = dia[(dia["object_id"] == star["object_id"]) & (dia["flags"] == 0)]
        shape = np.array([10 ** (-0.4 * _signal(pd.DataFrame([star]), m)[0]) for m in lc["mjd"]])
        design = np.c_[np.ones(len(lc)), shape]
        amplitude = np.linalg.lstsq(design, lc["dflux"].to_numpy(), rcond=None)[0][1]
        scale = 10 ** (-0.4 * (star["mag"] - zp))  # the flux it varies by, exactly
        dia_ratio.append(amplitude / scale)
        weighted = design / lc["dflux_err"].to_numpy()[:, None]
        sigma.append(np.sqrt(np.linalg.inv(weighted.T @ weighted)[1, 1]) / scale)  # its statistical error
        ap = points[points["object_id"] == star["blend_object"]].dropna(subset=["mag"])
        signal = np.array([_signal(pd.DataFrame([star]), m)[0] for m in ap["mjd"]])
        aperture_slope.append(np.linalg.lstsq(np.c_[np.ones(len(ap)), signal], ap["mag"], rcond=None)[0][1])
        lines.append(
            f"star {star['star_id']:3d} {star['mag']:.2f} mag, amplitude {star['amp']:.3f} mag: DIA {len(lc)} points, "
            f"amplitude {dia_ratio[-1]:.3f} +- {sigma[-1]:.3f} of the true; aperture ({len(ap)} points of the blend) "
            f"{aperture_slope[-1]:.3f} of it"
        )
    print("\n" + "\n".join(lines))
    dia_ratio, aperture_slope, sigma = np.array(dia_ratio), np.array(aperture_slope), np.array(sigma)
    assert len(dia_ratio) == 8 and (np.abs(dia_ratio - 1) < 0.03).all()  # 0.980-1.010
    assert (np.abs(dia_ratio - 1) / sigma < 2.5).all()  # each as its own error says (at most 1.7 sigma)
    assert np.abs(aperture_slope - 1).min() > 0.5  # every aperture light curve off by more than 10 %, far


def test_the_constant_neighbours_dia_light_curves_stay_near_their_errors(field):
    _, _, stars, dia, _ = field
    chi2 = []
    for object_id in stars.loc[stars["kind"] == "neighbour", "object_id"]:
        lc = dia[(dia["object_id"] == object_id) & (dia["flags"] == 0)]
        weights = lc["dflux_err"] ** -2.0
        mean = np.average(lc["dflux"], weights=weights)
        chi2.append(float(np.sum((lc["dflux"] - mean) ** 2 * weights) / (len(lc) - 1)))
    print(f"\nneighbours' DIA chi2/dof: {np.round(sorted(chi2), 2)}")
    assert len(chi2) == 16 and 0.7 < np.median(chi2) < 1.3  # (29 degrees of freedom: a median of 0.98)
    assert max(chi2) < 2.0  # none takes a variable's change (up to 3.1 when each was weighed on its own)


def test_skylake_lightcurve_prints_writes_and_draws_an_objects_dia_light_curve(field, tmp_path, capsys):
    """A neighbour (an object of the lake): `skylake lightcurve` names its DIA light curve, --dia-out writes its 30
    points as the table holds them, --plot draws it beside the aperture one."""
    lake, _, stars, dia, _ = field
    star = stars[(stars["kind"] == "neighbour") & stars["object_id"].isin(dia["object_id"])].iloc[0]
    out, png = tmp_path / "dia.csv", tmp_path / "lc.png"
    args = ["lightcurve", str(lake.url), "--ra", str(star["ra"]), "--dec", str(star["dec"]), "--radius", "2"]
    assert main([*args, "--dia-out", str(out), "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    assert f"{star['object_id']:>20d} DIA: 30 points" in printed and png.stat().st_size > 10_000
    written = pd.read_csv(out)
    mine = dia[dia["object_id"] == star["object_id"]].sort_values("mjd")
    assert set(written["object_id"]) == {star["object_id"]} and len(written) == 30
    assert np.allclose(written["dflux"], mine["dflux"]) and (np.diff(written["mjd"]) > 0).all()


def test_skylake_lightcurve_finds_a_blended_variables_dia_light_curve_with_no_object(field, tmp_path, capsys):
    """A variable the extraction never split has no object, but its DIA light curve is filed under its catalogue
    position: `skylake lightcurve` there says so (no aperture light curve), and --dia-out writes its 30 points."""
    lake, _, stars, dia, _ = field
    star = stars[stars["kind"] == "variable"].iloc[0]
    out = tmp_path / "variable.csv"
    args = ["lightcurve", str(lake.url), "--ra", str(star["ra"]), "--dec", str(star["dec"]), "--radius", "2"]
    assert main([*args, "--dia-out", str(out), "--plot", str(tmp_path / "lc.png")]) == 0
    printed = capsys.readouterr().out
    assert "0 objects within 2 arcsec" in printed and "no plot: no aperture light curve here" in printed
    assert f"{star['object_id']:>20d} DIA: 30 points" in printed and "a catalogue star with no object" in printed
    written = pd.read_csv(out)
    assert set(written["object_id"]) == {star["object_id"]} and len(written) == 30
    assert np.allclose(written["dflux"], dia[dia["object_id"] == star["object_id"]].sort_values("mjd")["dflux"])
