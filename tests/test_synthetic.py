"""Tests for skylake.synthetic: synthetic frames with exactly known truth."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from skylake import synthetic as syn

# --------------------------------------------------------------------------
# tan_wcs_header
# --------------------------------------------------------------------------


def test_tan_wcs_header_keywords():
    h = syn.tan_wcs_header(150.0, 20.0, (200, 300), 4.0)
    assert h["CTYPE1"] == "RA---TAN" and h["CTYPE2"] == "DEC--TAN"
    assert h["CUNIT1"] == "deg" and h["CUNIT2"] == "deg"
    assert h["RADESYS"] == "ICRS" and h["EQUINOX"] == 2000.0
    assert h["CRVAL1"] == 150.0 and h["CRVAL2"] == 20.0
    assert h["CRPIX1"] == 150.5 and h["CRPIX2"] == 100.5  # (n + 1) / 2, 1-based
    s = 4.0 / 3600.0
    assert h["CD1_1"] == pytest.approx(-s) and h["CD2_2"] == pytest.approx(s)
    assert h["CD1_2"] == 0.0 and h["CD2_1"] == 0.0
    assert "NAXIS" not in h


def test_tan_wcs_roundtrip_known_pixels():
    ra0, dec0, scale = 150.0, 20.0, 4.0
    ny, nx = 200, 300
    w = WCS(syn.tan_wcs_header(ra0, dec0, (ny, nx), scale))
    xc, yc = (nx - 1) / 2.0, (ny - 1) / 2.0
    ra, dec = w.pixel_to_world_values(xc, yc)
    assert ra == pytest.approx(ra0, abs=1e-10) and dec == pytest.approx(dec0, abs=1e-10)

    # 10 px north (+y) along the central meridian: dec = dec0 + atan(eta).
    eta = math.radians(10 * scale / 3600.0)
    ra, dec = w.pixel_to_world_values(xc, yc + 10)
    assert ra == pytest.approx(ra0, abs=1e-10)
    assert dec == pytest.approx(dec0 + math.degrees(math.atan(eta)), abs=1e-10)

    # 10 px in +x is west (east is left): xi = -10 s,
    # ra = ra0 + atan(xi / cos dec0), dec = atan(tan dec0 * cos(ra - ra0)).
    xi = -eta
    d0 = math.radians(dec0)
    dra = math.atan2(xi, math.cos(d0))
    ra, dec = w.pixel_to_world_values(xc + 10, yc)
    assert ra == pytest.approx(ra0 + math.degrees(dra), abs=1e-10)
    assert dec == pytest.approx(math.degrees(math.atan(math.tan(d0) * math.cos(dra))), abs=1e-10)

    # and back again
    x, y = w.world_to_pixel_values(ra, dec)
    assert x == pytest.approx(xc + 10, abs=1e-8) and y == pytest.approx(yc, abs=1e-8)


def test_tan_wcs_rotation():
    # rotation 90 deg (CROTA2 convention): +x points north
    w = WCS(syn.tan_wcs_header(10.0, -30.0, (101, 101), 2.0, rotation_deg=90.0))
    ra, dec = w.pixel_to_world_values(60.0, 50.0)
    assert ra == pytest.approx(10.0, abs=1e-9)
    assert dec > -30.0 and dec == pytest.approx(-30.0 + 10 * 2.0 / 3600.0, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"dec0_deg": 95.0}, "95.0"),
        ({"pixscale_arcsec": 0.0}, "pixscale_arcsec"),
        ({"shape": (0, 10)}, "(0, 10)"),
    ],
)
def test_tan_wcs_header_rejects_bad_input(kwargs, fragment):
    args = {"ra0_deg": 1.0, "dec0_deg": 2.0, "shape": (10, 10), "pixscale_arcsec": 1.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(fragment)):
        syn.tan_wcs_header(**args)


# --------------------------------------------------------------------------
# make_sky_catalog
# --------------------------------------------------------------------------


def test_make_sky_catalog_basic_and_deterministic():
    cat = syn.make_sky_catalog(150.0, 20.0, 1.0, 5000, seed=7)
    assert list(cat.columns) == ["star_id", "ra", "dec", "mag", "color"]
    assert cat["star_id"].dtype == np.int64
    assert cat["star_id"].tolist() == list(range(1, 5001))
    sep = syn.frames._angular_sep_deg(cat["ra"], cat["dec"], 150.0, 20.0)
    assert sep.max() <= 1.0 + 1e-9
    assert cat["mag"].between(8.0, 15.0).all()
    assert cat["color"].between(0.0, 1.5).all()
    pd.testing.assert_frame_equal(cat, syn.make_sky_catalog(150.0, 20.0, 1.0, 5000, seed=7))
    assert not cat.equals(syn.make_sky_catalog(150.0, 20.0, 1.0, 5000, seed=8))


def test_make_sky_catalog_distributions():
    n = 40000
    cat = syn.make_sky_catalog(0.5, 89.5, 2.0, n, seed=1)  # straddles RA 0 and the pole
    sep = syn.frames._angular_sep_deg(cat["ra"], cat["dec"], 0.5, 89.5)
    assert sep.max() <= 2.0 + 1e-9
    assert ((cat["ra"] >= 0) & (cat["ra"] < 360)).all()
    # uniform on the sphere: fraction inside half the radius = area ratio
    expect = (1 - math.cos(math.radians(1.0))) / (1 - math.cos(math.radians(2.0)))
    assert (sep < 1.0).mean() == pytest.approx(expect, abs=0.01)
    # dN/dm ~ 10**(0.3 m): 1-mag bins grow by 10**0.3 ~ 2x; 14-15 vs 8-9 is 10**1.8
    counts = np.histogram(cat["mag"], bins=np.arange(8.0, 15.01, 1.0))[0]
    assert np.all(np.diff(counts) > 0)
    assert counts[-1] / counts[0] == pytest.approx(10**1.8, rel=0.25)


def test_make_sky_catalog_rejects_bad_input():
    with pytest.raises(ValueError, match="-3"):
        syn.make_sky_catalog(0, 0, 1.0, -3, seed=0)
    with pytest.raises(ValueError, match="mag_range"):
        syn.make_sky_catalog(0, 0, 1.0, 10, seed=0, mag_range=(15, 8))


# --------------------------------------------------------------------------
# render_frame
# --------------------------------------------------------------------------


def test_render_conserves_flux_noiseless():
    rng = np.random.default_rng(3)
    stars = pd.DataFrame(
        {"x": rng.uniform(20, 280, 50), "y": rng.uniform(20, 180, 50), "flux": 10 ** rng.uniform(2, 6, 50)}
    )
    img = syn.render_frame(stars, shape=(200, 300), sky_adu=0.0, read_noise_adu=0.0, noise=False)
    assert img.dtype == np.float32 and img.shape == (200, 300)
    assert img.sum(dtype=np.float64) == pytest.approx(stars["flux"].sum(), rel=1e-5)
    # one star on its own, for several FWHMs
    for fwhm in (1.0, 2.5, 6.0):
        one = syn.render_frame(
            {"x": [50.37], "y": [40.81], "flux": [12345.6]}, shape=(100, 100), fwhm_px=fwhm, sky_adu=0, noise=False
        )
        assert one.sum(dtype=np.float64) == pytest.approx(12345.6, rel=1e-5)


def test_render_centroid_exact():
    img = syn.render_frame(
        pd.DataFrame({"x": [100.3], "y": [200.7], "flux": [1e5]}),
        shape=(300, 256),
        sky_adu=0.0,
        read_noise_adu=0.0,
        noise=False,
    ).astype(np.float64)
    yy, xx = np.indices(img.shape)
    tot = img.sum()
    assert abs((img * xx).sum() / tot - 100.3) < 0.01
    assert abs((img * yy).sum() / tot - 200.7) < 0.01
    assert np.unravel_index(np.argmax(img), img.shape) == (201, 100)  # (row, column)
    # FWHM 2.5 px: second moment = sigma**2 (+1/12 from pixel integration)
    sigma2 = (2.5 / (2 * math.sqrt(2 * math.log(2)))) ** 2 + 1 / 12
    assert (img * (xx - 100.3) ** 2).sum() / tot == pytest.approx(sigma2, rel=1e-3)


def test_render_edges_and_empty():
    # centred off the chip by 2 px: roughly (but less than) half the flux lands
    img = syn.render_frame({"x": [-0.5], "y": [50.0], "flux": [1000.0]}, shape=(100, 100), sky_adu=0, noise=False)
    assert img.sum() == pytest.approx(500.0, rel=1e-3)
    img = syn.render_frame({"x": [-50.0], "y": [50.0], "flux": [1000.0]}, shape=(100, 100), sky_adu=0, noise=False)
    assert img.sum() == 0.0
    sky = syn.render_frame(None, shape=(10, 20), sky_adu=7.5, noise=False)
    assert sky.shape == (10, 20) and np.all(sky == 7.5)
    empty = pd.DataFrame({"x": [], "y": [], "flux": []})
    assert np.all(syn.render_frame(empty, shape=(5, 5), sky_adu=1.0, noise=False) == 1.0)


def test_render_noise_statistics_and_determinism():
    kw = dict(shape=(512, 512), sky_adu=1000.0, read_noise_adu=5.0, gain=1.5)
    a = syn.render_frame(None, seed=11, **kw)
    b = syn.render_frame(None, seed=11, **kw)
    c = syn.render_frame(None, seed=12, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    expected_sd = math.sqrt(1000.0 / 1.5 + 25.0)
    assert a.mean() == pytest.approx(1000.0, abs=0.2)
    assert a.std() == pytest.approx(expected_sd, rel=0.01)
    # low counts use exact Poisson: integer electrons, variance = mean
    low = syn.render_frame(None, shape=(512, 512), sky_adu=2.0, read_noise_adu=0.0, gain=1.0, seed=1)
    assert np.all(low == np.round(low)) and low.min() >= 0
    assert low.mean() == pytest.approx(2.0, abs=0.02) and low.var() == pytest.approx(2.0, abs=0.05)


def test_render_saturation_and_extinction_map():
    stars = {"x": [30.0, 70.0], "y": [30.0, 70.0], "flux": [1e7, 1e3]}
    img = syn.render_frame(stars, shape=(100, 100), saturation=50000.0, seed=0)
    assert img.max() == 50000.0
    emap = np.ones((100, 100))
    dimmed = syn.render_frame(stars, shape=(100, 100), sky_adu=0, noise=False, extinction_map=emap)
    assert dimmed.sum() == pytest.approx((1e7 + 1e3) * 10**-0.4, rel=1e-5)
    dimmed2 = syn.render_frame(
        stars, shape=(100, 100), sky_adu=0, noise=False, extinction_map=lambda x, y: np.where(x < 50, 2.5, 0.0)
    )
    assert dimmed2.sum() == pytest.approx(1e7 * 0.1 + 1e3, rel=1e-5)


def test_render_rejects_bad_input():
    with pytest.raises(ValueError, match="-5"):
        syn.render_frame({"x": [1.0], "y": [1.0], "flux": [-5.0]}, shape=(10, 10))
    with pytest.raises(ValueError, match="'flux'"):
        syn.render_frame(pd.DataFrame({"x": [1.0], "y": [1.0]}), shape=(10, 10))
    with pytest.raises(ValueError, match="nan"):
        syn.render_frame({"x": [np.nan], "y": [1.0], "flux": [1.0]}, shape=(10, 10))
    with pytest.raises(ValueError, match="gain"):
        syn.render_frame(None, shape=(10, 10), gain=0)
    with pytest.raises(ValueError, match=r"\(5, 5\)"):
        syn.render_frame({"x": [1.0], "y": [1.0], "flux": [1.0]}, shape=(10, 10), extinction_map=np.zeros((5, 5)))


# --------------------------------------------------------------------------
# write_frame
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_frame():
    rng = np.random.default_rng(5)
    stars = pd.DataFrame(
        {"x": rng.uniform(0, 200, 40), "y": rng.uniform(0, 150, 40), "flux": 10 ** rng.uniform(3, 5, 40)}
    )
    data = syn.render_frame(stars, shape=(150, 200), seed=5)
    header = syn.tan_wcs_header(150.0, 20.0, data.shape, 4.0)
    header["OBJECT"] = "TEST"
    header["EXPTIME"] = 30.0
    return data, header


@pytest.mark.parametrize("suffix", [".fits", ".fits.gz", ".fits.fz"])
@pytest.mark.parametrize("bitpix16", [False, True])
def test_write_frame_roundtrip(tmp_path, noisy_frame, suffix, bitpix16):
    data, header = noisy_frame
    path = tmp_path / f"frame{suffix}"
    assert syn.write_frame(path, data, header, bitpix16=bitpix16) == path
    raw = path.read_bytes()
    if suffix == ".fits.gz":
        assert raw[:2] == b"\x1f\x8b"  # really gzip
    else:
        assert raw[:9] == b"SIMPLE  ="
    ext = 1 if suffix == ".fits.fz" else 0
    with fits.open(path) as hdul:
        if suffix == ".fits.fz":
            assert len(hdul) == 2 and isinstance(hdul[1], fits.CompImageHDU)
            assert hdul[1].compression_type == "RICE_1"
        hdr = hdul[ext].header
        got = hdul[ext].data
        assert hdr["OBJECT"] == "TEST" and hdr["CTYPE1"] == "RA---TAN" and hdr["EXPTIME"] == 30.0
        assert got.shape == data.shape
    raw_hdr = fits.getheader(path, ext)
    if bitpix16:
        assert raw_hdr["BITPIX"] == 16 and raw_hdr["BZERO"] == 32768 and raw_hdr["BSCALE"] == 1
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, np.clip(np.rint(data), 0, 65535).astype(np.uint16))
    else:
        assert raw_hdr["BITPIX"] == -32
        if suffix == ".fits.fz":
            # RICE quantises floats to ~noise/16 per tile: errors below one step
            noise = math.sqrt(1000.0 / 1.5 + 25.0)
            err = got.astype(np.float64) - data
            assert np.abs(err).max() < noise / 16
            assert abs(err.mean()) < 0.05 * noise
        else:
            np.testing.assert_array_equal(got, data)
    assert WCS(raw_hdr).has_celestial


def test_write_frame_rejects_bad_input(tmp_path, noisy_frame):
    data, header = noisy_frame
    with pytest.raises(ValueError, match="frame.png"):
        syn.write_frame(tmp_path / "frame.png", data, header)
    bad = data.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        syn.write_frame(tmp_path / "x.fits", bad, header, bitpix16=True)


# --------------------------------------------------------------------------
# write_demo_night
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, syn.write_demo_night(out)


def test_demo_files_and_headers(demo):
    out, truth = demo
    files = sorted(p.name for p in out.glob("*.fits"))
    assert files == [f"demo_20260301_{i:04d}.fits" for i in range(1, 13)]
    assert truth.paths == [str(out / f) for f in files]
    for i, row in truth.frames.iterrows():
        h = fits.getheader(row["path"])
        assert h["INSTRUME"] == "DEMOCAM" and h["FILTER"] == "V" and h["OBJECT"] == "DEMO-FIELD"
        assert h["TELESCOP"] == "skylake-demo"
        assert h["BITPIX"] == 16 and h["BZERO"] == 32768
        assert (h["NAXIS1"], h["NAXIS2"]) == (1024, 1024)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", h["DATE-OBS"])
        t = Time(h["DATE-OBS"], format="isot", scale="utc")
        assert abs((t - Time("2026-03-01T21:00:00", scale="utc")).sec - 600 * i) < 1e-3
        assert h["MJD-OBS"] == row["mjd_start"] and abs(t.mjd - h["MJD-OBS"]) * 86400 < 1e-3
        assert h["EXPTIME"] == 30.0 == row["exptime"]
        assert h["AIRMASS"] == row["airmass"]
        assert h["GAIN"] == 1.5 and h["SATURATE"] == 60000.0
        assert h["CTYPE1"] == "RA---TAN" and h["CTYPE2"] == "DEC--TAN" and h["RADESYS"] == "ICRS"
        assert h["CRVAL1"] == row["crval1"] and h["CRVAL2"] == row["crval2"]
        assert row["mjd_mid"] == pytest.approx(row["mjd_start"] + 15.0 / 86400, abs=1e-9)


def test_demo_truth_self_consistent(demo):
    out, truth = demo
    st, fr, det = truth.stars, truth.frames, truth.detections
    assert list(st.columns)[:9] == [
        "star_id",
        "ra",
        "dec",
        "mag",
        "color",
        "is_variable",
        "amplitude",
        "period_d",
        "phase",
    ]
    for col in [
        "path",
        "mjd_start",
        "mjd_mid",
        "exptime",
        "airmass",
        "sky_adu",
        "zp_true",
        "cloud_ra",
        "cloud_dec",
        "cloud_radius_deg",
        "cloud_depth_mag",
    ]:
        assert col in fr.columns
    for col in ["path", "star_id", "x", "y", "flux_adu", "mag_true_this_frame", "extinction_mag"]:
        assert col in det.columns
    assert len(st) == 1500 and len(fr) == 12
    assert set(det["path"]) == set(fr["path"])
    assert not det.duplicated(["path", "star_id"]).any()
    assert det["star_id"].isin(st["star_id"]).all()
    assert det["x"].between(-0.5, 1023.5).all() and det["y"].between(-0.5, 1023.5).all()
    assert det.groupby("path").size().min() > 500

    d = det.merge(fr, on="path").merge(st, on="star_id")
    # flux relation and extinction budget
    m_obs = d["mag_true_this_frame"] + d["extinction_mag"]
    np.testing.assert_allclose(d["flux_adu"], 10 ** (-0.4 * (m_obs - d["zp_true"])) * d["exptime"], rtol=1e-12)
    np.testing.assert_allclose(d["extinction_mag"], 0.15 * d["airmass"] + d["cloud_mag"], atol=1e-12)
    # cloud profile: Gaussian in angular distance from the cloud centre
    sep = syn.frames._angular_sep_deg(d["ra"], d["dec"], d["cloud_ra"], d["cloud_dec"])
    np.testing.assert_allclose(
        d["cloud_mag"], d["cloud_depth_mag"] * np.exp(-0.5 * (sep / d["cloud_radius_deg"]) ** 2), atol=1e-12
    )
    # variability model
    var = d["is_variable"].to_numpy()
    model = d["mag"] + d["amplitude"] * np.sin(2 * np.pi * d["mjd_mid"] / d["period_d"] + d["phase"])
    np.testing.assert_allclose(d.loc[var, "mag_true_this_frame"], model[var], atol=1e-9)
    np.testing.assert_array_equal(d.loc[~var, "mag_true_this_frame"], d.loc[~var, "mag"])
    v = st[st["is_variable"]]
    assert len(v) == 5
    assert v["amplitude"].between(0.3, 1.0).all() and (v["period_d"] * 24).between(2, 8).all()
    assert (st.loc[~st["is_variable"], "amplitude"] == 0).all()
    # every variable is on the chip and unsaturated in every frame
    assert (d[var].groupby("star_id").size() == 12).all()
    assert not d.loc[var, "saturated"].any() and (d.loc[var, "peak_adu"] < 0.8 * 60000).all()

    # night geometry: airmass falls as the field rises, sky fades after twilight, cloud moves across
    assert fr["airmass"].between(1.0, 2.0).all() and (np.diff(fr["airmass"]) < 0).all()
    assert (np.diff(fr["sky_adu"]) < 0).all() and fr["sky_adu"].between(500, 2000).all()
    assert fr["cloud_depth_mag"].nunique() == 1 and 0.5 <= fr["cloud_depth_mag"].iloc[0] <= 0.8
    assert fr["cloud_radius_deg"].iloc[0] == pytest.approx(1024 * 4.0 / 3600 / 3)
    steps = syn.frames._angular_sep_deg(
        fr["cloud_ra"][:-1], fr["cloud_dec"][:-1], fr["cloud_ra"][1:], fr["cloud_dec"][1:]
    )
    assert np.all(steps > 0.05) and np.ptp(steps) < 1e-3  # constant speed
    assert 0.5 < d["cloud_mag"].max() <= 0.8 and d["cloud_mag"].min() < 0.01

    # WCS in the header reproduces the truth pixel positions
    for path, g in d.groupby("path"):
        w = WCS(fits.getheader(path))
        x, y = w.world_to_pixel_values(g["ra"].to_numpy(), g["dec"].to_numpy())
        np.testing.assert_allclose(x, g["x"], atol=1e-6)
        np.testing.assert_allclose(y, g["y"], atol=1e-6)


def test_demo_pixels_match_truth(demo):
    out, truth = demo
    fr, det = truth.frames, truth.detections
    row = fr.iloc[3]
    img = fits.getdata(row["path"]).astype(np.float64)
    assert np.median(img) == pytest.approx(row["sky_adu"], rel=0.01)
    assert img.max() <= 60000.0
    g = det[det["path"] == row["path"]]
    # aperture photometry of isolated, unsaturated, reasonably bright stars
    xy = g[["x", "y"]].to_numpy()
    dist = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    iso = (dist.min(1) > 15) & ~g["saturated"].to_numpy() & (g["flux_adu"].to_numpy() > 2e4)
    iso &= (g["x"].between(12, 1011) & g["y"].between(12, 1011)).to_numpy()
    sel = g[iso]
    assert len(sel) >= 20
    yy, xx = np.mgrid[-10:11, -10:11]
    ratios = []
    for _, s in sel.iterrows():
        ix, iy = int(round(s["x"])), int(round(s["y"]))
        cut = img[iy - 10 : iy + 11, ix - 10 : ix + 11]
        r = np.hypot(xx + ix - s["x"], yy + iy - s["y"])
        ratios.append((cut[r < 8] - row["sky_adu"]).sum() / s["flux_adu"])
    assert np.median(ratios) == pytest.approx(1.0, abs=0.01)
    # saturated stars really are clipped
    sat = g[g["saturated"]]
    if len(sat):
        s = sat.iloc[0]
        assert img[int(round(s["y"])), int(round(s["x"]))] == 60000.0


def test_demo_deterministic_and_no_cloud(tmp_path):
    kw = dict(n_frames=2, shape=(128, 160), n_stars=300, n_variables=1, seed=3)
    t1 = syn.write_demo_night(tmp_path / "a", **kw)
    t2 = syn.write_demo_night(tmp_path / "b", **kw)
    for p1, p2 in zip(t1.paths, t2.paths):
        assert Path(p1).read_bytes() == Path(p2).read_bytes()
    pd.testing.assert_frame_equal(t1.detections.drop(columns="path"), t2.detections.drop(columns="path"))
    t3 = syn.write_demo_night(tmp_path / "c", cloud=False, **kw)
    assert (t3.detections["cloud_mag"] == 0).all() and (t3.frames["cloud_depth_mag"] == 0).all()
    with pytest.raises(ValueError, match="n_variables=99999"):
        syn.write_demo_night(tmp_path / "d", n_frames=1, shape=(64, 64), n_stars=50, n_variables=99999)
    with pytest.raises(ValueError, match="Sun is at altitude"):
        syn.write_demo_night(
            tmp_path / "e", n_frames=1, shape=(64, 64), n_stars=50, ra0_deg=0.0, start_utc="2026-03-01T17:00:00"
        )
    with pytest.raises(ValueError, match="yesterday"):
        syn.write_demo_night(tmp_path / "f", n_frames=1, shape=(64, 64), n_stars=50, start_utc="yesterday")


# --------------------------------------------------------------------------
# write_bad_files
# --------------------------------------------------------------------------


def _open_and_read(path):
    with fits.open(path) as hdul:
        return [h.data for h in hdul]


@pytest.fixture(scope="module")
def good_frame(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    data = syn.render_frame({"x": [20.0], "y": [30.0], "flux": [1e4]}, shape=(64, 96), seed=1)
    h = syn.tan_wcs_header(150.0, 20.0, data.shape, 4.0)
    h["DATE-OBS"] = "2026-03-01T21:00:00.000"
    return syn.write_frame(d / "good.fits", data, h, bitpix16=True)


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
@pytest.mark.parametrize("source", ["small", "small_fz", "demo"])
def test_write_bad_files(tmp_path, request, source):
    if source == "demo":  # a real demo frame: multi-block header, 1024 x 1024
        src = request.getfixturevalue("demo")[1].paths[0]
    else:
        src = request.getfixturevalue("good_frame")
        if source == "small_fz":
            with fits.open(src) as h:
                src = syn.write_frame(tmp_path / "good.fits.fz", h[0].data, h[0].header, bitpix16=True)
    with fits.open(src) as h:
        ref = next(x for x in h if x.data is not None)
        shape, date_obs = ref.data.shape, ref.header["DATE-OBS"]
    out = tmp_path / "bad"
    desc = syn.write_bad_files(out, src)
    assert set(desc) == set(syn.BAD_FILE_NAMES)
    assert sorted(p.name for p in out.iterdir()) == sorted(desc)
    assert all(isinstance(v, str) and v for v in desc.values())
    good_size = 2 * shape[0] * shape[1]

    # truncated: header parses, the data do not
    p = out / "bad_truncated.fits"
    assert p.stat().st_size > 2880 and p.stat().st_size % 2880 != 0
    with pytest.raises(TypeError):  # memory-mapped: numpy's "buffer is too small for requested array"
        _open_and_read(p)
    with pytest.raises(ValueError), fits.open(p, memmap=False) as h:  # read: "cannot reshape array of size ..."
        _ = h[0].data
    assert fits.getheader(p)["CTYPE1"] == "RA---TAN"

    with pytest.raises(OSError):
        _open_and_read(out / "bad_not_fits.fits")
    assert (out / "bad_empty.fits").stat().st_size == 0
    with pytest.raises(OSError):
        _open_and_read(out / "bad_empty.fits")

    h = fits.getheader(out / "bad_no_wcs.fits")
    assert not any(k.startswith(("CTYPE", "CRVAL", "CRPIX", "CD1_", "CD2_")) for k in h)
    assert h["DATE-OBS"] == date_obs
    assert fits.getdata(out / "bad_no_wcs.fits").shape == shape

    with fits.open(out / "bad_all_nan.fits") as hdul:
        assert hdul[0].header["BITPIX"] == -32
        assert hdul[0].data.shape == shape and np.isnan(hdul[0].data).all()
        assert WCS(hdul[0].header).has_celestial

    with fits.open(out / "bad_cube.fits") as hdul:
        assert hdul[0].header["NAXIS"] == 3 and hdul[0].data.shape == (3, *shape)
        assert hdul[0].header["CTYPE1"] == "RA---TAN" and hdul[0].header["WCSAXES"] == 2

    with fits.open(out / "bad_header_only.fits") as hdul:
        assert len(hdul) == 1 and hdul[0].header["NAXIS"] == 0 and hdul[0].data is None
        assert hdul[0].header["CTYPE1"] == "RA---TAN"

    p = out / "bad_corrupt_header.fits"
    raw = p.read_bytes()
    assert raw.startswith(b"SIMPLE  =") and len(raw) >= 2880 + good_size
    assert any(b > 127 for b in raw[:2880])
    with pytest.raises(OSError):
        fits.getheader(p)


def test_write_bad_files_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fits"):
        syn.write_bad_files(tmp_path, tmp_path / "nope.fits")


# --------------------------------------------------------------------------
# summary_rows.commit_objects (the scale benchmark's archives)
# --------------------------------------------------------------------------


def test_commit_objects_writes_objects_and_their_points_as_hats_catalogs(tmp_path):
    """A made objects table of 300 objects x 3 points: both catalogs' rows, partitions and skymaps agree
    with their files (benchmarks/scale.py builds its archives this way)."""
    import hats
    import pyarrow.parquet as pq

    from skylake.lake import Lake
    from skylake.lake.tables import LIGHTCURVES, OBJECTS
    from skylake.synthetic.summary_rows import commit_archive, commit_objects

    lake = Lake.init(tmp_path / "lake")
    commit_archive(lake, 40, 4, np.random.default_rng(3))
    commit_objects(lake, 300, np.random.default_rng(4), points=3, refcat="", chunk=100)
    for table, rows in ((OBJECTS, 300), (LIGHTCURVES, 900)):
        cat = hats.read_hats(tmp_path / "lake" / table)
        files = sorted((tmp_path / "lake" / table / "dataset").rglob("*.parquet"))
        assert cat.catalog_info.total_rows == rows == sum(pq.read_metadata(f).num_rows for f in files)
        assert len(cat.get_healpix_pixels()) == len({f.parent for f in files}) > 1
    points = pq.read_table(tmp_path / "lake" / LIGHTCURVES / "dataset").to_pandas()
    assert points.groupby("object_id").size().eq(3).all() and points["object_id"].nunique() == 300
