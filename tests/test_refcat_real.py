"""Reference catalogues on the real shared data: Tycho-2 (decoded subset) and Gaia DR3 G<10 import with
exact row counts and open in lsdb with their margins; cones equal a brute-force astropy cut; the
real APASS and ATLAS-refcat2 rows (VizieR column names) keep their values exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from conftest import SHARED_DATA, require_shared

from skylake.lake import Lake
from skylake.refcat import cone_search, import_refcat, list_refcats, read_record
from skylake.refcat.schema import flag_bits

pytestmark = pytest.mark.realdata

DATA = SHARED_DATA
TYCHO = DATA / "refcats" / "tycho2_vt.parquet"
GAIA = DATA / "refcats" / "gaia_dr3_g10.parquet"
APASS = DATA / "stellarphot" / "all_apass_ey_uma.ecsv"
REFCAT2 = DATA / "stellarphot" / "all_refcat2_ey_uma.ecsv"
SKYCAMZ_FIELD = (256.17, 12.79)  # RA, Dec of the SkyCamZ frames [deg]


@pytest.fixture(scope="module")
def lake(tmp_path_factory, dask_client):
    """One lake with Tycho-2 and Gaia imported once for the module."""
    require_shared(TYCHO), require_shared(GAIA)
    lake = Lake.init(tmp_path_factory.mktemp("real") / "lake")
    reports = {
        name: import_refcat(lake, name, [path], fmt, client=dask_client, progress=False)
        for name, path, fmt in (("tycho2", TYCHO, "tycho2"), ("gaia", GAIA, "gaia"))
    }
    return lake, reports


def test_tycho_and_gaia_import_with_exact_counts_and_open_in_lsdb(lake):
    import lsdb

    lake, reports = lake
    assert reports["tycho2"].rows == 1_875_170 and reports["tycho2"].rows_dropped == 0
    assert reports["gaia"].rows == 482_176 and reports["gaia"].rows_dropped == 0
    assert reports["tycho2"].id_collisions == 0  # derived ids are unique on this file
    for name, n in (("tycho2", 1_875_170), ("gaia", 482_176)):
        cat = lsdb.open_catalog(Path(lake.url) / "refcats" / name, columns=["ref_id"])
        assert cat.margin is not None and cat.margin.hc_structure.catalog_info.margin_threshold >= 10.0
        assert cat.hc_structure.catalog_info.total_rows == n
        ids = cat.compute()["ref_id"]
        assert len(ids) == n and ids.is_unique
        assert len(cat.margin.compute()) == reports[name].margin_rows > 0
    listed = {r["name"]: r for r in list_refcats(lake)}
    assert listed["tycho2"]["rows"] == 1_875_170 and listed["gaia"]["format"] == "gaia"
    rec = read_record(Path(lake.url) / "refcats" / "tycho2")
    assert rec["variants"] == ["tycho2.decoded"] and rec["epoch_min"] == rec["epoch_max"] == 1991.25
    assert rec["source_files"][0]["bytes"] == TYCHO.stat().st_size and not rec["synthetic"]


@pytest.mark.parametrize(
    "name, path, id_col, mag_col, mag",
    [
        ("tycho2", TYCHO, None, "mag_vt", "mag_VT"),
        ("gaia", GAIA, "source_id", "phot_g_mean_mag", "mag_G"),
    ],
)
def test_cone_of_one_degree_equals_brute_force_astropy(lake, name, path, id_col, mag_col, mag):
    lake, _ = lake
    native = pq.read_table(path).to_pandas()
    centre = SkyCoord(SKYCAMZ_FIELD[0] * u.deg, SKYCAMZ_FIELD[1] * u.deg)
    sep = SkyCoord(native["ra"].to_numpy() * u.deg, native["dec"].to_numpy() * u.deg).separation(centre)
    truth = native[sep <= 3600.0 * u.arcsec]
    got = cone_search(lake, name, *SKYCAMZ_FIELD, 3600.0)
    assert len(got) == len(truth) > 30
    if id_col is None:  # Tycho: ids are derived from the positions, so compare the positions themselves
        key = ["ra", "dec"]
        assert sorted(map(tuple, got[key].to_numpy())) == sorted(map(tuple, truth[key].to_numpy()))
    else:
        assert set(got["ref_id"]) == set(truth[id_col])
    merged = got.merge(truth, on=["ra", "dec"])
    assert len(merged) == len(truth)
    assert np.array_equal(merged[mag].to_numpy(dtype=np.float32), merged[mag_col].to_numpy(dtype=np.float32))


@pytest.fixture(scope="module")
def stellarphot(tmp_path_factory, dask_client):
    require_shared(APASS), require_shared(REFCAT2)
    lake = Lake.init(tmp_path_factory.mktemp("stellarphot") / "lake")
    for name, path in (("apass", APASS), ("refcat2", REFCAT2)):
        import_refcat(lake, name, [path], name, client=dask_client, progress=False)
    return lake


def _rows(lake, name):
    """The whole catalogue through lsdb, as plain numpy columns (nulls as NaN)."""
    import lsdb

    df = lsdb.open_catalog(Path(lake.url) / "refcats" / name).compute().reset_index(drop=True)
    return pd.DataFrame(
        {
            c: df[c].to_numpy(dtype=np.float64, na_value=np.nan)
            if df[c].isna().any() or df[c].dtype.kind == "f"
            else df[c].to_numpy()
            for c in df.columns
        }
    )


def test_real_apass_rows_keep_their_values(stellarphot):
    out = _rows(stellarphot, "apass")
    native = Table.read(APASS)
    assert len(out) == len(native) == 54 and read_record(Path(stellarphot.url) / "refcats" / "apass")["variants"] == [
        "apass.vizier"
    ]
    # Two rows exactly as printed in the file (RAJ2000 DEJ2000 ... Vmag e_Vmag u_e_Vmag Bmag ...).
    for ra, dec, v, ev, b, eb, g, r, i, nobs in (
        (135.68157, 49.745309, "15.837", "0.069", "16.796", "0.309", "16.302", "15.557", "15.437", 5),
        (135.744601, 49.740189, "11.404", "0.022", "12.125", "0.079", "11.783", "11.255", "11.107", 6),
    ):
        rows = out[(out["ra"] == ra) & (out["dec"] == dec)].to_dict("records")
        assert len(rows) == 1, (ra, dec)
        row = rows[0]
        assert row["epoch"] == 2012.0 and row["n_obs"] == nobs
        for col, text in (
            ("mag_V", v),
            ("err_V", ev),
            ("mag_B", b),
            ("err_B", eb),
            ("mag_g", g),
            ("mag_r", r),
            ("mag_i", i),
        ):
            assert row[col] == np.float32(text) and f"{row[col]:.3f}" == text, col
    # Every row: coordinates bit for bit, magnitudes as stored float32 of the file's value.
    merged = out.merge(native.to_pandas(), left_on=["ra", "dec"], right_on=["RAJ2000", "DEJ2000"])
    assert len(merged) == 54
    for ours, theirs in (
        ("mag_V", "Vmag"),
        ("mag_B", "Bmag"),
        ("mag_g", "g'mag"),
        ("mag_r", "r'mag"),
        ("mag_i", "i'mag"),
        ("err_V", "e_Vmag"),
        ("err_i", "e_i'mag"),
    ):
        a, b = merged[ours].to_numpy(dtype=np.float32), merged[theirs].to_numpy(dtype=np.float32)
        assert np.array_equal(a, b, equal_nan=True), ours
    single_night = (merged[[c for c in merged.columns if c.startswith("u_e_")]] == 1).any(axis=1)
    assert np.array_equal(merged["flags"] & flag_bits()["POOR_PHOTOMETRY"] > 0, single_night)


def test_real_refcat2_rows_keep_their_values(stellarphot):
    out = _rows(stellarphot, "refcat2").set_index("ref_id")
    native = Table.read(REFCAT2).to_pandas().set_index("id")
    assert len(out) == len(native) == 187 and set(out.index) == set(native.index)
    first = out.loc[[1015783782961610496]].to_dict("records")[0]  # the file's first row
    assert (first["ra"], first["dec"]) == (135.62886541, 49.68559505) and first["epoch"] == 2015.5
    assert (first["pmra"], first["pmdec"], first["parallax"]) == (-10.61, -12.27, np.float32(0.09))
    assert [f"{first[c]:.3f}" for c in ("mag_g", "err_g", "mag_r", "mag_i", "mag_z", "mag_G", "mag_RP")] == [
        "19.989",
        "0.014",
        "18.963",
        "18.515",
        "18.299",
        "19.013",
        "18.167",
    ]
    assert np.isnan(first["mag_J"]) and first["native_flags"] == 2 and first["flags"] == 0  # dupvar 2: n/a
    second = out.loc[[1015783787257474432]].to_dict("records")[0]
    assert [f"{second[c]:.3f}" for c in ("mag_J", "err_J", "mag_H", "mag_K")] == ["16.558", "0.133", "16.006", "15.588"]
    both = out.join(native, how="inner")
    assert np.array_equal(both["ra"], both["RA_ICRS"]) and np.array_equal(both["dec"], both["DE_ICRS"])
    for ours, theirs in (("mag_g", "gmag"), ("err_g", "e_gmag"), ("mag_K", "Kmag"), ("mag_BP", "BPmag")):
        assert np.array_equal(both[ours].to_numpy(np.float32), both[theirs].to_numpy(np.float32), equal_nan=True)
    assert np.array_equal(both["pmra"], both["pmRA"], equal_nan=True)


def test_the_common_hipparcos_table_imports(tmp_path, dask_client):
    """The all-sky cameras' Hipparcos table (HIP, ra, dec, v_mag, variability) reads as format hipparcos:
    every row with coordinates, V as mag_V, VarFlag >= 2 as VARIABLE."""
    path = require_shared(DATA / "allsky" / "hipparcos.fits.gz")
    table = Table.read(path)
    lake = Lake.init(tmp_path / "lake")
    report = import_refcat(lake, "hipparcos", [path], "hipparcos", client=dask_client, progress=False)
    has_coords = np.isfinite(np.asarray(table["ra"], float)) & np.isfinite(np.asarray(table["dec"], float))
    assert report.rows == int(has_coords.sum()) == 117955
    import lsdb

    cat = lsdb.open_catalog(lake.path("refcats/hipparcos")).compute().set_index("ref_id")
    vega = cat.loc[91262]  # alpha Lyr
    assert abs(vega["mag_V"] - 0.03) < 0.01 and abs(vega["ra"] - 279.2347) < 0.001
    variability = np.ma.filled(np.asarray(table["variability"], float), np.nan)
    variable = (cat["flags"].to_numpy() & flag_bits()["VARIABLE"]) != 0
    assert variable.sum() == int(np.sum(variability[has_coords] >= 2))
