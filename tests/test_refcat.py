"""Reference catalogues on synthetic and hand-made inputs: column maps, bad input, the CLI, overwrite
and failure safety, cone searches against a brute-force astropy cut, proper-motion propagation."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from skylake.lake import Lake
from skylake.refcat import (
    FormatMismatch,
    RefcatError,
    cone_search,
    get_format,
    import_refcat,
    importer,
    list_refcats,
    propagate,
    read_record,
)
from skylake.refcat.cli import add_commands
from skylake.refcat.formats import ColumnMapError, format_names, load_column_map
from skylake.refcat.normalise import normalise_chunk, normalise_file
from skylake.refcat.readers import iter_chunks, open_source
from skylake.refcat.schema import flag_bits
from skylake.synthetic.refcat import write_synthetic


def run(*argv: str) -> int:
    """The refcat commands through argparse, as skylake.cli will wire them."""
    parser = argparse.ArgumentParser(prog="skylake")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def normalise(fmt: str, table: pa.Table, variant: str | None = None) -> pa.Table:
    f = get_format(fmt)
    v = f.match(table.column_names) if variant is None else next(x for x in f.variants if x.name == variant)
    out, _ = normalise_chunk(table, v, f.schema())
    return out


# -- column maps (no cluster) --------------------------------------------------------------------------
def test_every_builtin_format_parses_and_documents_its_bands():
    assert set(format_names()) == {"apass", "ps1", "refcat2", "gaia", "tycho2", "hipparcos", "bsc", "generic"}
    for name in format_names()[:-1]:
        fmt = get_format(name)
        assert fmt.variants and set(fmt.systems) == set(fmt.bands), name
        names = fmt.schema().names
        assert names[:3] == ["ref_id", "ra", "dec"] and all(f"mag_{b}" in names for b in fmt.bands)


def test_wrong_columns_fail_listing_expected_names(tmp_path):
    with pytest.raises(FormatMismatch) as exc:
        get_format("apass").match(["RA", "DEC", "V"], "x.csv")
    msg = str(exc.value)
    for name in ("RAJ2000", "DEJ2000", "Vmag", "e_Vmag", "g'mag", "radeg", "Johnson_V (V)"):
        assert repr(name) in msg
    # A file: fails before any work (no cluster needed, nothing written under the lake).
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"ra": [1.0], "dec": [2.0], "vmag": [10.0]}), bad)
    lake = Lake.init(tmp_path / "lake")
    with pytest.raises(FormatMismatch, match=r"missing \[.*'source_id'\]"):
        import_refcat(lake, "g", [bad], "gaia", client="never used")
    assert not (tmp_path / "lake" / "refcats").exists()


def test_bad_column_maps_are_named(tmp_path):
    m = tmp_path / "m.toml"
    m.write_text('[columns]\nra = "RA"\ndec = "DEC"\n')
    with pytest.raises(ColumnMapError, match="must map.*epoch"):
        load_column_map(m)
    m.write_text('[columns]\nra = "RA"\ndec = "DEC"\nepoch = {const = 2000.0}\nmag_Q = "Q"\n')
    with pytest.raises(ColumnMapError, match="unknown band"):
        load_column_map(m)
    m.write_text('[columns]\nra = {col = "RA", sclae = 2}\ndec = "DEC"\nepoch = {const = 2000.0}\n')
    with pytest.raises(ColumnMapError, match="sclae"):
        load_column_map(m)
    with pytest.raises(ColumnMapError, match="needs --columns-map"):
        get_format("generic")


def test_ps1_sentinels_epochs_and_flags():
    t = pa.table(
        {
            "objID": [1, 2],
            "raMean": [10.0, -999.0],
            "decMean": [20.0, -999.0],
            "epochMean": [51544.5 + 365.25 * 12, -999.0],
            "raMeanErr": [0.01, 0.02],
            "gMeanPSFMag": [15.0, 16.0],
            "gMeanPSFMagErr": [0.01, -999.0],
            **{f"{b}MeanPSFMag": [-999.0, 17.0] for b in "rizy"},
            **{f"{b}MeanPSFMagErr": [-999.0, 0.1] for b in "rizy"},
            "qualityFlag": pa.array([1 | 16, 4 | 16], pa.int16()),
        }
    )
    out = normalise("ps1", t).to_pydict()
    assert out["ref_id"] == [1] and out["epoch"] == [2012.0]  # the -999 position row is dropped
    assert out["mag_r"] == [None] and out["mag_g"] == [15.0] and out["ra_err"] == [pytest.approx(10.0)]
    assert out["flags"] == [flag_bits()["EXTENDED"] | flag_bits()["POOR_PHOTOMETRY"]]
    assert out["native_flags"] == [17]


def test_refcat2_csv_release_is_scaled_and_zero_mags_are_missing(tmp_path):
    names = get_format("refcat2").variants[1].csv_names
    row = dict.fromkeys(names, 0)
    row.update(
        RA=28000001672,
        Dec=-1967818581,
        pmra=114,
        pmdec=-1460,
        Gaia=15884,
        dGaia=1,
        g=16657,
        dg=10,
        dupvar=5,
        rp1=40,
        gcontrib="1f",
    )
    path = tmp_path / "280-20.rc2"
    path.write_text(",".join(str(row[n]) for n in names) + "\n")
    fmt = get_format("refcat2")
    source = open_source(path)
    variant = importer.match_source(fmt, source)
    assert variant.label == "refcat2.csv" and source.headerless
    chunk = next(iter_chunks(source, variant.read_types({f.name: f.type for f in fmt.schema()}, names), 100, names))
    out, _ = normalise_chunk(chunk, variant, fmt.schema())
    r = out.to_pylist()[0]
    assert r["ra"] == pytest.approx(280.00001672, abs=1e-12) and r["dec"] == pytest.approx(-19.67818581, abs=1e-12)
    assert r["pmra"] == pytest.approx(1.14) and r["pmdec"] == pytest.approx(-14.60)
    assert r["mag_G"] == pytest.approx(15.884) and r["err_G"] == pytest.approx(0.001)
    assert r["mag_J"] is None and r["err_J"] is None and r["epoch"] == 2015.5
    assert r["flags"] == flag_bits()["VARIABLE"] | flag_bits()["DUPLICATE"] | flag_bits()["NEIGHBOUR"]


def test_tycho2_vizier_mean_or_observed_positions_and_ids():
    t = pa.table(
        {
            "TYC1": [1, 9537],
            "TYC2": [8, 12121],
            "TYC3": [1, 3],
            "pflag": ["", "X"],
            "RAmdeg": [2.31750494, None],
            "DEmdeg": [2.23184345, None],
            "RAdeg": [2.3175, 10.0],
            "DEdeg": [2.2318, -5.0],
            "EpRA-1990": [1.67, 1.5],
            "pmRA": [-16.3, None],
            "pmDE": [-9.0, None],
            "BTmag": [12.146, 11.0],
            "e_BTmag": [0.158, 0.1],
            "VTmag": [12.146, 10.5],
            "e_VTmag": [0.223, 0.1],
            "prox": [999, 30],
        }
    )
    out = normalise("tycho2", t).to_pydict()
    assert out["ref_id"] == [1_000_081, 9537_121_213]
    assert out["ra"] == [2.31750494, 10.0] and out["epoch"] == [2000.0, pytest.approx(1991.5)]
    assert out["flags"] == [0, flag_bits()["POOR_ASTROMETRY"] | flag_bits()["NEIGHBOUR"]]


def test_gaia_errors_from_snr_and_bsc_sexagesimal():
    g = pa.table(
        {
            "source_id": [7],
            "ra": [1.0],
            "dec": [2.0],
            "phot_g_mean_mag": pa.array([10.5], pa.float32()),
            "phot_bp_mean_mag": [None],
            "phot_rp_mean_mag": [float("nan")],
            "phot_g_mean_flux_over_error": [1085.7],
            "ruwe": [2.0],
            "phot_variable_flag": ["VARIABLE"],
        }
    )
    out = normalise("gaia", g).to_pylist()[0]
    assert out["epoch"] == 2016.0 and out["err_G"] == pytest.approx(0.001, rel=1e-3)
    assert out["mag_BP"] is None and out["mag_RP"] is None  # NaN is null too
    assert out["flags"] == flag_bits()["VARIABLE"] | flag_bits()["POOR_ASTROMETRY"]
    b = pa.table(
        {
            "HR": [1, 92],
            "RAh": [0, None],
            "RAm": [5, None],
            "RAs": [9.9, None],
            "DE-": ["+", None],
            "DEd": [45, None],
            "DEm": [13, None],
            "DEs": [45, None],
            "Vmag": [6.70, 5.0],
            "B-V": [0.07, 0.1],
            "U-B": [0.08, 0.0],
            "pmRA": [-0.012, None],
            "pmDE": [-0.018, None],
        }
    )
    f = get_format("bsc")
    out, counts = normalise_chunk(b, f.match(b.column_names), f.schema())
    r = out.to_pylist()[0]
    assert counts.dropped["missing_coordinates"] == 1 and r["ref_id"] == 1
    assert r["ra"] == pytest.approx((9.9 / 3600 + 5 / 60) * 15) and r["dec"] == pytest.approx(45 + 13 / 60 + 45 / 3600)
    assert r["mag_B"] == pytest.approx(6.77) and r["mag_U"] == pytest.approx(6.85) and r["pmra"] == pytest.approx(-12)


def test_fits_tables_stream_in_slices_with_nulls_and_strings(tmp_path):
    from astropy.table import MaskedColumn, Table

    t = Table(
        {
            "HIP": np.array([1, 2, 3], np.int32),
            "RAdeg": [0.00091185, 0.00379737, 400.0],
            "DEdeg": [1.08901332, -19.49883745, 0.0],
            "Vmag": np.array([9.10, 9.27, 6.61], np.float32),
            "Hpmag": [9.2043, 9.4017, 6.6081],
            "B-V": [0.482, 0.999, -0.019],
            "VarFlag": MaskedColumn(np.array([0, 3, 2], np.int16), mask=[True, False, False]),
            "MultFlag": ["", "C", " "],
            "pmRA": [-5.20, 181.21, 5.24],
            "pmDE": [-1.88, -0.93, -2.91],
        }
    )
    path = tmp_path / "hip_main.fits"
    t.write(path)
    fmt = get_format("hipparcos")
    source = open_source(path)
    variant = importer.match_source(fmt, source)
    types = variant.read_types({f.name: f.type for f in fmt.schema()}, source.columns)
    chunks = list(iter_chunks(source, types, chunk_rows=2))
    assert [c.num_rows for c in chunks] == [2, 1] and chunks[0]["VarFlag"].null_count == 1
    out, counts = normalise_chunk(pa.concat_tables(chunks), variant, fmt.schema())
    rows = out.to_pylist()
    assert counts.dropped["ra_out_of_range"] == 1 and [r["ref_id"] for r in rows] == [1, 2]
    assert rows[1]["mag_B"] == pytest.approx(9.27 + 0.999) and rows[0]["epoch"] == 1991.25
    assert rows[1]["flags"] == flag_bits()["VARIABLE"] | flag_bits()["MULTIPLE"] and rows[0]["flags"] == 0


def test_propagation_is_linear_in_ra_cos_dec_and_dec():
    df = pd.DataFrame(
        {
            "ra": [10.0, 359.9999, 20.0],
            "dec": [60.0, 0.0, 5.0],
            "epoch": [2000.0, 2000.0, 2000.0],
            "pmra": [1000.0, 3600.0, None],
            "pmdec": [-500.0, 0.0, None],
        }
    )
    out = propagate(df, 2016.0)
    assert out["dec"][0] == pytest.approx(60.0 - 0.5 * 16 / 3600)
    assert out["ra"][0] == pytest.approx(10.0 + 16 / 3600 / math.cos(math.radians(60.0)))
    assert out["ra"][1] == pytest.approx((359.9999 + 16 * 3.6 / 3600) % 360)  # wraps through 0
    assert out["ra"][2] == 20.0 and out["epoch"].tolist() == [2016.0, 2016.0, 2000.0]  # no pm: unmoved


def test_ra_within_rounding_of_the_range_wraps_and_the_rest_is_dropped():
    ra = [360.0, -1e-12, -1e-17, 359.9999999999, 360.0 + 1e-10, -1e-6, 360.001, 12.5]
    g = pa.table(
        {
            "source_id": list(range(len(ra))),
            "ra": ra,
            "dec": [1.0] * len(ra),
            **{c: [10.0] * len(ra) for c in ("phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag")},
        }
    )
    f = get_format("gaia")
    out, counts = normalise_chunk(g, f.match(g.column_names), f.schema())
    assert counts.dropped["ra_out_of_range"] == 2 and out["ref_id"].to_pylist() == [0, 1, 2, 3, 4, 7]
    kept = out["ra"].to_numpy()
    assert kept.tolist()[:3] == [0.0, 360.0 - 1e-12, 0.0] and kept[4] == pytest.approx(1e-10, abs=1e-12)
    assert ((kept >= 0) & (kept < 360)).all() and kept[5] == 12.5


def test_vizier_sexagesimal_strings_parse_with_astropy_and_bad_ones_are_null():
    b = pa.table(
        {
            "HR": [1, 2, 3, 4],
            "RAJ2000": ["00 05 09.9", "12:30:00.0", "", "ab cd"],
            "DEJ2000": ["+45 13 45", "-00 30 00", "+01 00 00", "+01 00 00"],
            "Vmag": [6.7, 5.0, 4.0, 3.0],
            "B-V": [0.07, 0.1, 0.0, 0.0],
            "U-B": [0.08, 0.0, 0.0, 0.0],
        }
    )
    f = get_format("bsc")
    out, counts = normalise_chunk(b, f.match(b.column_names), f.schema())
    assert out.column_names and counts.dropped["missing_coordinates"] == 2  # empty and unparseable RA
    assert out["ra"].to_pylist() == pytest.approx([(5 / 60 + 9.9 / 3600) * 15, 187.5])
    assert out["dec"].to_pylist() == pytest.approx([45 + 13 / 60 + 45 / 3600, -0.5])  # the sign of "-00"


def test_staging_recovery_leaves_other_names_with_the_same_prefix_alone(tmp_path):
    root = tmp_path / "refcats"
    other = importer._new_staging(root, "gaia-dr3")  # gaia-dr3 interrupted during its swap
    (other / "old").mkdir(parents=True)
    (other / "old" / "who").write_text("gaia-dr3")
    importer._recover(root, "gaia")
    assert not (root / "gaia").exists() and (other / "old" / "who").read_text() == "gaia-dr3"
    own = importer._new_staging(root, "gaia")
    (own / "old").mkdir(parents=True)
    (own / "old" / "who").write_text("gaia")
    importer._recover(root, "gaia")
    assert (root / "gaia" / "who").read_text() == "gaia" and not own.exists() and other.is_dir()
    importer._recover(root, "gaia-dr3")
    assert (root / "gaia-dr3" / "who").read_text() == "gaia-dr3" and not other.exists()


def test_csv_header_names_with_spaces_are_read_as_checked(tmp_path):
    fmt = get_format("apass")
    names = [n for n in fmt.variants[1].required_columns()] + ["raerr"]
    path = tmp_path / "aavso.csv"
    path.write_text(", ".join(names) + "\n" + ", ".join("2.5" if n == "raerr" else "10.0" for n in names) + "\n")
    source = open_source(path)
    variant = importer.match_source(fmt, source)
    assert variant.name == "aavso_dr9" and "raerr" in source.columns
    result = normalise_file(source, variant, fmt, tmp_path, "t")
    row = pa.ipc.open_file(result.shards[0]).read_all().to_pylist()[0]
    assert row["ra"] == 10.0 and row["ra_err"] == 2500.0 and row["mag_V"] == 10.0


def test_csv_files_named_synthetic_are_synthetic(tmp_path):
    src = write_synthetic(tmp_path / "apass_synthetic.csv", "apass", rows=10)
    assert open_source(src).synthetic
    plain = tmp_path / "apass.csv"
    plain.write_bytes(src.read_bytes())
    assert not open_source(plain).synthetic


def _hip_fits(path):
    from astropy.table import Table

    Table(
        {
            "HIP": np.array([1, 2], np.int32),
            "RAdeg": [10.0, 20.0],
            "DEdeg": [1.0, -2.0],
            "Vmag": np.array([9.1, 9.3], np.float32),
            "Hpmag": [9.2, 9.4],
        }
    ).write(path)
    return path


def test_compressed_fits_is_decompressed_into_the_work_folder(tmp_path):
    import bz2
    import gzip

    from skylake.refcat import errors

    raw = _hip_fits(tmp_path / "hip.fits").read_bytes()
    fmt = get_format("hipparcos")
    for name, compress in (("hip.fits.gz", gzip.compress), ("hip.fits.bz2", bz2.compress)):
        path = tmp_path / name
        path.write_bytes(compress(raw))
        source = open_source(path)
        variant = importer.match_source(fmt, source)
        with pytest.raises(errors.RefcatError, match="cannot be memory-mapped"):  # astropy would read it whole
            next(iter_chunks(source, {"HIP": None}))
        work = tmp_path / f"work-{name}"
        work.mkdir()
        result = normalise_file(source, variant, fmt, work, "t")
        assert result.counts.rows_kept == 2 and result.path == str(path)
        assert sorted(p.name for p in work.iterdir()) == ["t-0000.arrow"]  # the copy is gone
        assert sorted(pa.ipc.open_file(result.shards[0]).read_all()["ref_id"].to_pylist()) == [1, 2]  # in HEALPix order


def test_directories_take_every_suffix_the_reader_reads_and_bz2_csv_is_decompressed(tmp_path, caplog, monkeypatch):
    import bz2

    names = ["a.pq", "b.fts", "e.csv.bz2", "f.tsv.gz", "g.fits.gz", "h.ECSV", "i.rc2"]
    for n in [*names, "notes.md", "j.json", "ReadMe.txt", "d.dat"]:
        (tmp_path / n).write_text("x")
    with caplog.at_level("WARNING", logger="skylake.refcat.importer"):
        assert [p.name for p in importer.expand_inputs([tmp_path])] == sorted(names)
    assert "skipped 2 plain-text file(s) (ReadMe.txt, d.dat)" in caplog.text
    assert [p.name for p in importer.expand_inputs([tmp_path / "d.dat"])] == ["d.dat"]  # named: taken
    monkeypatch.chdir(tmp_path)  # relative names come back absolute: dask workers run in directories of their own
    assert importer.expand_inputs(["d.dat", "."]) == [tmp_path / n for n in ["d.dat", *sorted(names)]]
    path = tmp_path / "e.csv.bz2"
    path.write_bytes(bz2.compress(b"ra,dec\n1.5,2.5\n"))
    source = open_source(path)
    assert source.kind == "csv" and source.columns == ["ra", "dec"]
    assert next(iter_chunks(source, {"ra": pa.float64(), "dec": None})).to_pydict() == {"ra": [1.5], "dec": ["2.5"]}


def test_fits_tnull_is_compared_to_the_stored_value_before_scaling(tmp_path):
    from astropy.io import fits

    scaled = fits.Column(name="x", format="I", array=np.array([2, -32768, 6], np.int16))
    unsigned = fits.Column(
        name="u", format="I", bzero=32768, null=32767, array=np.array([1, 65535, 7], np.uint16)
    )  # stored as 1-32768, 32767, ...
    hdu = fits.BinTableHDU.from_columns([scaled, unsigned])
    hdu.header.update(TSCAL1=0.5, TZERO1=10.0, TNULL1=-32768)
    hdu.writeto(tmp_path / "t.fits")
    chunk = next(iter_chunks(open_source(tmp_path / "t.fits"), {"x": None, "u": None}))
    assert chunk["x"].to_pylist() == [11.0, None, 13.0] and chunk["u"].to_pylist() == [1, None, 7]


# -- imports on the session cluster -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_lake(tmp_path_factory, dask_client):
    """A lake with a 20k-row synthetic PS1 catalogue imported through the CLI."""
    d = tmp_path_factory.mktemp("refcat")
    src = write_synthetic(d / "ps1.parquet", "ps1", rows=20_000, seed=3, chunk_rows=7_000)
    lake = d / "lake"
    address = dask_client.scheduler.address
    assert (
        run(
            "refcat",
            "import",
            str(lake),
            "ps1",
            str(src),
            "--format",
            "ps1",
            "--create",
            "--scheduler",
            address,
            "--no-progress",
            "--margin-arcsec",
            "12",
        )
        == 0
    )
    return lake, src, address


def test_cli_import_list_and_record(synthetic_lake, capsys):
    lake, src, _ = synthetic_lake
    rec = read_record(lake / "refcats" / "ps1")
    assert rec["rows"] == 20_000 and rec["format"] == "ps1" and rec["synthetic"] is True
    assert rec["margin_threshold_arcsec"] == 12.0 and rec["source_files"][0]["sha256"] == importer.sha256(src)
    assert rec["variants"] == ["ps1.mast"] and rec["columns"][:3] == ["_healpix_29", "ref_id", "ra"]
    assert run("refcat", "list", str(lake)) == 0
    out = capsys.readouterr().out
    assert "ps1" in out and "20,000" in out and '12"' in out and "(synthetic)" in out
    props = (lake / "refcats" / "ps1" / "collection.properties").read_text()
    assert "default_margin=ps1_12arcs" in props


def test_no_progress_bars_into_a_redirected_stderr(synthetic_lake, dask_client, tmp_path):
    """A command whose stderr is a file or a pipe draws no bar (no carriage returns in the log); the
    normalised-file lines stay on stdout. Its own lake: the module's shared one keeps one catalogue."""
    import subprocess
    import sys

    _, src, _ = synthetic_lake
    lake = tmp_path / "lake"
    args = ["refcat", "import", str(lake), "ps1_again", str(src), "--format", "ps1", "--create"]
    args += ["--scheduler", dask_client.scheduler.address, "--margin-arcsec", "12"]
    run_ = subprocess.run([sys.executable, "-m", "skylake.cli", *args], capture_output=True, text=True, timeout=300)
    assert run_.returncode == 0, run_.stderr
    assert "\r" not in run_.stderr and "partition ps1_again" not in run_.stderr
    assert "normalised" in run_.stdout


def test_cli_unreachable_scheduler_is_a_usage_error_and_nothing_is_written(tmp_path, capsys):
    src = tmp_path / "tycho2.parquet"
    pq.write_table(pa.table({"ra": [1.0], "dec": [2.0], "mag_vt": [9.0]}), src)
    code = run(
        "refcat",
        "import",
        str(tmp_path / "lake"),
        "tycho2",
        str(src),
        "--format",
        "tycho2",
        "--create",
        "--scheduler",
        "tcp://127.0.0.1:9",
        "--no-progress",
    )
    assert code == 2 and "cannot reach the dask scheduler 'tcp://127.0.0.1:9'" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()


def test_cli_existing_name_needs_overwrite_which_swaps(synthetic_lake, capsys):
    lake, src, address = synthetic_lake
    before = read_record(lake / "refcats" / "ps1")
    capsys.readouterr()
    code = run(
        "refcat",
        "import",
        str(lake),
        "ps1",
        str(src),
        "--format",
        "ps1",
        "--scheduler",
        address,
        "--no-progress",
        "--margin-arcsec",
        "12",
    )
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert read_record(lake / "refcats" / "ps1") == before
    assert (
        run(
            "refcat",
            "import",
            str(lake),
            "ps1",
            str(src),
            "--format",
            "ps1",
            "--scheduler",
            address,
            "--no-progress",
            "--margin-arcsec",
            "12",
            "--overwrite",
        )
        == 0
    )
    after = read_record(lake / "refcats" / "ps1")
    assert after["rows"] == 20_000 and after["imported_at"] >= before["imported_at"] and after != before
    assert sorted(p.name for p in (lake / "refcats").iterdir()) == [".ps1.lock", ".staging", "ps1"]
    assert not any((lake / "refcats" / ".staging").iterdir())
    # An import that fails (here: the files do not fit the format) leaves the catalogue whole.
    code = run(
        "refcat",
        "import",
        str(lake),
        "ps1",
        str(src),
        "--format",
        "gaia",
        "--scheduler",
        address,
        "--no-progress",
        "--overwrite",
    )
    assert code == 2 and "expects ['dec', 'phot_bp_mean_mag'" in capsys.readouterr().err
    assert read_record(lake / "refcats" / "ps1") == after
    # Killed between the swap's two renames: the next import of the name puts the old one back.
    dead = importer._new_staging(lake / "refcats", "ps1")
    dead.mkdir()
    (lake / "refcats" / "ps1").rename(dead / "old")
    with pytest.raises(RefcatError, match="already exists"):
        import_refcat(lake, "ps1", [src], "ps1", client=address, progress=False)
    assert read_record(lake / "refcats" / "ps1") == after and not dead.exists()


def test_failure_while_partitioning_keeps_the_old_catalogue(synthetic_lake, tmp_path, dask_client, monkeypatch):
    lake, src, _ = synthetic_lake
    before = sorted(p.relative_to(lake) for p in (lake / "refcats" / "ps1").rglob("*"))

    def boom(*args, **kwargs):
        raise RuntimeError("worker died")

    monkeypatch.setattr(importer, "_partition", boom)
    with pytest.raises(RuntimeError, match="worker died"):
        import_refcat(lake, "ps1", [src], "ps1", overwrite=True, client=dask_client, progress=False)
    assert sorted(p.relative_to(lake) for p in (lake / "refcats" / "ps1").rglob("*")) == before
    assert not any((lake / "refcats" / ".staging").iterdir())


def test_cone_equals_brute_force_and_writes_files(synthetic_lake, tmp_path, capsys):
    lake, src, _ = synthetic_lake
    native = pq.read_table(src).to_pandas()
    centre = SkyCoord(native["raMean"][0] * u.deg, native["decMean"][0] * u.deg)
    radius = 4 * 3600.0
    sep = SkyCoord(native["raMean"].to_numpy() * u.deg, native["decMean"].to_numpy() * u.deg).separation(centre)
    truth = set(native["objID"][sep <= radius * u.arcsec])
    got = cone_search(lake, "ps1", centre.ra.deg, centre.dec.deg, radius)
    assert set(got["ref_id"]) == truth and len(got) == len(truth) > 3
    assert got["sep_arcsec"].is_monotonic_increasing
    out = tmp_path / "cone.csv"
    assert (
        run(
            "refcat",
            "cone",
            str(lake),
            "ps1",
            str(centre.ra.deg),
            str(centre.dec.deg),
            str(radius),
            "--columns",
            "mag_g,mag_r",
            "--out",
            str(out),
        )
        == 0
    )
    csv = pd.read_csv(out)
    assert list(csv.columns) == ["ref_id", "ra", "dec", "epoch", "mag_g", "mag_r", "sep_arcsec"]
    assert len(csv) == len(truth)
    assert (
        run(
            "refcat",
            "cone",
            str(lake),
            "ps1",
            str(centre.ra.deg),
            str(centre.dec.deg),
            str(radius),
            "--out",
            str(tmp_path / "cone.parquet"),
            "--epoch",
            "2030",
        )
        == 0
    )
    assert len(pd.read_parquet(tmp_path / "cone.parquet")) > 0
    assert run("refcat", "cone", str(lake), "nope", "1", "2", "3") == 2
    assert "no refcat 'nope'" in capsys.readouterr().err


def test_bad_coordinates_are_dropped_and_counted(tmp_path, dask_client):
    table = pq.read_table(write_synthetic(tmp_path / "a.parquet", "apass", rows=2_000, seed=5))
    ra, dec = table["RAJ2000"].to_numpy().copy(), table["DEJ2000"].to_numpy().copy()
    ra[:3] = np.nan  # missing
    dec[3:5] = [95.0, -90.5]  # impossible dec
    ra[5:7] = [-0.1, 360.1]  # ra outside [0, 360) (360.0 itself wraps to 0)
    dec[7] = np.inf  # not finite
    ra[8], dec[8] = 0.0, 90.0  # legal edge values stay
    ra[20:25], dec[20:25] = ra[30], dec[30]  # five copies of one star: their derived ref_ids collide
    table = table.set_column(0, "RAJ2000", pa.array(ra)).set_column(1, "DEJ2000", pa.array(dec))
    table = table.set_column(
        table.schema.get_field_index("Vmag"), "Vmag", pa.array([None] * 9 + table["Vmag"].to_pylist()[9:], pa.float64())
    )
    bad = tmp_path / "apass_bad_synthetic.csv"
    pacsv.write_csv(table, bad)
    report = import_refcat(tmp_path / "lake", "apass", [bad], "apass", client=dask_client, progress=False, create=True)
    assert report.dropped == {"missing_coordinates": 4, "dec_out_of_range": 2, "ra_out_of_range": 2}
    assert report.rows == 2_000 - 8 and report.rows_read == 2_000 and report.rows_dropped == 8
    assert "dropped 8 (4 missing coordinates, 2 dec out of range, 2 ra out of range)" in str(report)
    assert report.id_collisions == 5 and "5 rows share a derived ref_id" in str(report)
    rec = read_record(tmp_path / "lake" / "refcats" / "apass")
    assert rec["dropped"] == report.dropped and rec["source_files"][0]["rows_kept"] == 1_992
    assert rec["synthetic"] is True  # a CSV is marked by "synthetic" in its name
    import lsdb

    cat = lsdb.open_catalog(tmp_path / "lake" / "refcats" / "apass", columns=["ref_id", "mag_V", "flags"])
    df = cat.compute()
    assert len(df) == 1_992 and cat.margin is not None
    assert df["mag_V"].isna().sum() == 1 + (table["Vmag"].null_count - 9)  # the kept edge row lost its V
    assert ((df["flags"] & flag_bits()["POOR_PHOTOMETRY"]) > 0).mean() == pytest.approx(1 - 0.92**5, abs=0.05)


def test_generic_format_takes_a_user_map(tmp_path, dask_client):
    src = tmp_path / "mine.ecsv"
    write_synthetic(src, "apass", rows=500, seed=1)
    cmap = tmp_path / "map.yaml"
    cmap.write_text(
        "description: my survey\ncolumns:\n  ra: RAJ2000\n  dec: DEJ2000\n  epoch: {const: 2015.0}\n"
        "  mag_V: Vmag\n  err_V: {col: e_Vmag}\n  n_obs: nobs\n"
        "flags:\n  POOR_PHOTOMETRY: {col: u_e_Vmag, op: eq, value: 1}\n"
    )
    lake = Lake.init(tmp_path / "lake")
    report = import_refcat(lake, "mine", [src], "generic", columns_map=cmap, client=dask_client, progress=False)
    assert report.rows == 500 and report.format == "generic"
    rows = list_refcats(lake)
    assert [(r["name"], r["format"], r["rows"]) for r in rows] == [("mine", "generic", 500)]
    schema = pq.read_schema(next((tmp_path / "lake" / "refcats" / "mine" / "mine" / "dataset").rglob("*.parquet")))
    assert schema.names == ["_healpix_29", *get_format("generic", cmap).schema().names]
    assert schema.field("mag_V").metadata[b"unit"] == b"mag"
    with pytest.raises(RefcatError, match="must start with a letter"):
        import_refcat(lake, "../x", [src], "generic", columns_map=cmap, client=dask_client)


def test_synthetic_files_are_marked_and_reproducible(tmp_path):
    a = write_synthetic(tmp_path / "a.parquet", "apass", rows=2_500, seed=7, chunk_rows=1_000)
    b = write_synthetic(tmp_path / "b.parquet", "apass", rows=2_500, seed=7, chunk_rows=1_000)
    assert pq.read_table(a).equals(pq.read_table(b))
    meta = pq.read_schema(a).metadata
    assert meta[b"skylake_synthetic"] == b"true" and b"SYNTHETIC" in meta[b"skylake_description"]
    assert pq.ParquetFile(a).metadata.num_row_groups == 3
    p = pq.read_table(write_synthetic(tmp_path / "p.parquet", "ps1", rows=1_000)).to_pandas()
    assert (p["decMean"] > -30).all() and (p["gMeanPSFMag"] == -999).any()
    assert p["gMeanPSFMag"][p["gMeanPSFMag"] > 0].median() > p["rMeanPSFMag"][p["rMeanPSFMag"] > 0].median()
    with pytest.raises(ValueError, match="synthetic"):
        write_synthetic(tmp_path / "plain.csv", "apass", rows=10)
    json.dumps(read_record(tmp_path))  # no record: {}


def test_overlapping_files_with_real_ids_report_their_duplicates(tmp_path, dask_client, caplog):
    rng = np.random.default_rng(1)
    n = 40
    full = pa.table(
        {
            "source_id": np.arange(n, dtype=np.int64) * 1000 + 7,
            "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-60, 60, n),
            **{c: rng.uniform(8, 12, n) for c in ("phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag")},
        }
    )
    pq.write_table(full.slice(0, 30), tmp_path / "a.parquet")
    pq.write_table(full.slice(20), tmp_path / "b.parquet")  # rows 20-29 are in both files
    with caplog.at_level("WARNING", logger="skylake.refcat.importer"):
        report = import_refcat(
            tmp_path / "lake",
            "gaia",
            [tmp_path / "a.parquet", tmp_path / "b.parquet"],
            "gaia",
            client=dask_client,
            progress=False,
            create=True,
        )
    assert report.rows == 50 and report.id_collisions == 10 and not report.ids_derived
    assert "10 rows repeat another row's ref_id" in str(report) and "10 rows repeat" in caplog.text
    assert read_record(tmp_path / "lake" / "refcats" / "gaia")["id_collisions"] == 10
