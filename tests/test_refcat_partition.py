"""skylake's own partitioner of reference catalogues (skylake/refcat/partition.py) against hats-import.

The import normalises the input into shards sorted by ``_healpix_29`` and partitions them itself; the
catalogue must be the one hats-import builds from the same rows: the same partitions, the same rows in
each, the same margin rows (those of the empty sky included) and the same metadata but provenance.
SYNTHETIC catalogues (``skylake.synthetic.refcat``) and hand-made tables, so every answer is exact.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from skylake.refcat import RefcatError, get_format, import_refcat
from skylake.refcat.normalise import ShardWriter
from skylake.refcat.partition import empty_sky, margin_name, margin_order
from skylake.refcat.schema import HEALPIX
from skylake.synthetic.refcat import write_synthetic

PROVENANCE = {"hats_builder", "hats_creation_date", "hats_estsize", "hats_primary_table_url"}


def _properties(path) -> dict:
    lines = [line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#")]
    return {k: v for k, v in lines if k not in PROVENANCE}


def _data_files(catalog) -> dict:
    return {p.relative_to(catalog).as_posix(): p for p in (catalog / "dataset").rglob("*.parquet")}


def _hats_import(rows_file, schema_file, out, tmp, name, margin, threshold, highest, client):
    """The catalogue hats-import builds from the same normalised rows (what skylake ran until 2026-11-26)."""
    from hats_import import CollectionArguments, pipeline_with_client
    from hats_import.catalog.file_readers.parquet import ParquetPyarrowReader

    args = (
        CollectionArguments(output_artifact_name=name, output_path=out, tmp_dir=tmp, progress_bar=False, resume=False)
        .catalog(
            input_file_list=[str(rows_file)],
            file_reader=ParquetPyarrowReader(chunksize=500_000),
            ra_column="ra",
            dec_column="dec",
            sort_columns="ref_id",
            catalog_type="object",
            pixel_threshold=threshold,
            highest_healpix_order=highest,
            use_schema_file=str(schema_file),
            write_table_kwargs={"compression": "zstd", "compression_level": 3},
            addl_hats_properties={
                "hats_cols_survey_id": "ref_id",
                "obs_title": get_format(name).description.splitlines()[0][:200],
                "hats_frame": "equatorial",
            },
        )
        .add_margin(margin_threshold=margin, is_default=True)
    )
    pipeline_with_client(args, client)
    return out / name


def test_same_catalogue_as_hats_import(tmp_path, dask_client):
    # PS1-like rows north of -30 deg: partitions at several orders, and an empty sky whose pixels next
    # to the data get margin rows too. Shards of 3000 rows: every partition gathers from several.
    src = write_synthetic(tmp_path / "ps1.parquet", "ps1", rows=40_000, seed=3, chunk_rows=10_000)
    threshold, highest, margin = 4_000, 6, 600.0
    report = import_refcat(
        tmp_path / "lake",
        "ps1",
        [src],
        "ps1",
        client=dask_client,
        progress=False,
        create=True,
        margin_arcsec=margin,
        pixel_threshold=threshold,
        highest_order=highest,
        chunk_rows=2_000,
        rows_per_shard=3_000,
    )
    ours = tmp_path / "lake" / "refcats" / "ps1"
    mine, mine_margin = ours / "ps1", ours / margin_name("ps1", margin)
    assert report.rows == 40_000 and mine_margin.name == "ps1_10arcmin"
    assert report.timings.keys() == {"setup", "normalise", "partition", "finish"}

    # hats-import from the rows skylake wrote (its own spatial index added back)
    rows = pa.concat_tables(pq.read_table(f) for f in _data_files(mine).values()).drop_columns([HEALPIX])
    pq.write_table(rows, tmp_path / "rows.parquet")
    pq.write_table(rows.schema.empty_table(), tmp_path / "schema.parquet")
    theirs = _hats_import(
        tmp_path / "rows.parquet",
        tmp_path / "schema.parquet",
        tmp_path / "hats",
        tmp_path / "tmp",
        "ps1",
        margin,
        threshold,
        highest,
        dask_client,
    )
    their_cat, their_margin = theirs / "ps1", theirs / margin_name("ps1", margin)

    for a, b, sort in ((mine, their_cat, False), (mine_margin, their_margin, True)):
        fa, fb = _data_files(a), _data_files(b)
        assert sorted(fa) == sorted(fb) and len(fa) > 1
        for rel in fa:
            ta, tb = pq.read_table(fa[rel]), pq.read_table(fb[rel])
            if sort:  # hats-import concatenates a margin's shards in listing order
                ta, tb = (t.sort_by([(HEALPIX, "ascending"), ("ref_id", "ascending")]) for t in (ta, tb))
            assert ta.equals(tb), rel
        assert (a / "partition_info.csv").read_text() == (b / "partition_info.csv").read_text()
        assert _properties(a / "hats.properties") == _properties(b / "hats.properties")
        assert (
            pq.read_metadata(a / "dataset" / "_metadata").num_rows
            == pq.read_metadata(b / "dataset" / "_metadata").num_rows
        )
    assert (mine / "skymap.fits").read_bytes() == (their_cat / "skymap.fits").read_bytes()
    assert _properties(ours / "collection.properties") == _properties(theirs / "collection.properties")
    orders = {int(p.split("Norder=")[1].split("/")[0]) for p in _data_files(mine)}
    assert len(orders) > 1  # the alignment merged and split: more than one order
    import lsdb

    cat = lsdb.open_catalog(ours)
    assert cat.margin is not None and len(cat.margin.compute()) == report.margin_rows > 0


def test_empty_sky_is_hats_negative_tree():
    from hats.pixel_math import HealpixPixel
    from hats.pixel_tree.negative_tree import compute_negative_tree_pixels
    from hats.pixel_tree.pixel_tree import PixelTree

    rng = np.random.default_rng(0)
    cases = [[(0, 3)], [(0, p) for p in range(12)], [(3, 5), (3, 6), (2, 40), (5, 4000)], [(8, 123456)]]
    for _ in range(5):  # random non-overlapping trees: split random pixels down to order 6
        leaves = {(0, p) for p in range(12)}
        for _ in range(40):
            o, p = sorted(leaves)[rng.integers(len(leaves))]
            if o < 6:
                leaves.remove((o, p))
                leaves |= {(o + 1, 4 * p + k) for k in range(4)}
        cases.append(sorted(x for x in leaves if rng.random() < 0.3))
    for parts in cases:
        expected = compute_negative_tree_pixels(PixelTree.from_healpix([HealpixPixel(o, p) for o, p in parts]))
        assert empty_sky(parts) == sorted((p.order, p.pixel) for p in expected), parts
    assert empty_sky([]) == []


def test_shards_are_sorted_counted_and_leave_out_empty_columns(tmp_path):
    schema = pa.schema([(HEALPIX, pa.int64()), ("ref_id", pa.int64()), ("x", pa.float64())])
    h29 = np.array([9, 3, 7, 1, 5, 2 << 42, 3 << 42, 1 << 42, 2 << 42, 8], dtype=np.int64)
    x = [None, None, None, None, 1.5, 2.5, None, None, None, None]
    writer = ShardWriter(tmp_path, "t", schema, rows_per_shard=4, histogram_order=8)
    table = pa.table({HEALPIX: h29, "ref_id": np.arange(10), "x": pa.array(x, pa.float64())}, schema=schema)
    writer.write(table.slice(0, 3))
    writer.write(table.slice(3))
    writer.close()
    shards = [ipc.open_file(pa.memory_map(str(p))).read_all() for p in writer.paths]
    assert [s.num_rows for s in shards] == [4, 4, 2]
    assert [s.column_names for s in shards] == [[HEALPIX, "ref_id"], [HEALPIX, "ref_id", "x"], [HEALPIX, "ref_id"]]
    assert shards[0][HEALPIX].to_pylist() == [1, 3, 7, 9]
    assert shards[1][HEALPIX].to_pylist() == [5, 1 << 42, 2 << 42, 3 << 42] and shards[1]["x"].to_pylist() == [
        1.5,
        None,
        2.5,
        None,
    ]
    assert all(s[HEALPIX].num_chunks == 1 for s in shards)  # one batch: a partition's rows are a slice
    pixels, counts = writer.histogram
    assert pixels.tolist() == [0, 1, 2, 3] and counts.tolist() == [6, 1, 2, 1]


def test_columns_missing_from_some_shards_come_back_as_nulls(tmp_path, dask_client):
    # Two files of a generic catalogue: only the first has proper motions, and shards of 50 rows
    # hold one file's rows each, so every partition mixes shards with and without the column.
    rng = np.random.default_rng(2)
    n = 400
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-80, 80, n)
    pm = np.round(rng.normal(0, 10, n), 3)
    first = pa.table({"id": np.arange(200), "ra": ra[:200], "dec": dec[:200], "pm": pm[:200]})
    pq.write_table(first, tmp_path / "a.parquet")
    no_pm = pa.array([None] * 200, pa.float64())
    pq.write_table(
        pa.table({"id": np.arange(200, 400), "ra": ra[200:], "dec": dec[200:], "pm": no_pm}), tmp_path / "b.parquet"
    )
    cmap = tmp_path / "map.yaml"
    cmap.write_text(
        "description: two halves\ncolumns:\n  ref_id: id\n  ra: ra\n  dec: dec\n  epoch: {const: 2016.0}\n"
        "  pmra: {col: pm, optional: true}\n  mag_G: {col: pm}\n"
    )
    report = import_refcat(
        tmp_path / "lake",
        "mine",
        [tmp_path / "a.parquet", tmp_path / "b.parquet"],
        "generic",
        columns_map=cmap,
        client=dask_client,
        progress=False,
        create=True,
        pixel_threshold=60,
        highest_order=4,
        rows_per_shard=50,
        chunk_rows=50,
    )
    assert report.rows == n and report.partitions > 4
    cat = tmp_path / "lake" / "refcats" / "mine" / "mine"
    files = list(_data_files(cat).values())
    full = pq.read_schema(files[0])
    assert all(pq.read_schema(f) == full for f in files) and full.names[:3] == [HEALPIX, "ref_id", "ra"]
    got = pa.concat_tables(pq.read_table(f, columns=["ref_id", "pmra", "parallax"]) for f in files).to_pandas()
    got = got.set_index("ref_id").sort_index()
    assert got.index.tolist() == list(range(n))
    assert got.loc[np.arange(200), "pmra"].tolist() == pm[:200].tolist()
    assert got.loc[np.arange(200, 400), "pmra"].isna().all() and got["parallax"].isna().all()


def test_a_margin_wider_than_the_partitions_is_refused_and_nothing_is_left(tmp_path, dask_client):
    src = write_synthetic(tmp_path / "a.parquet", "apass", rows=3_000, seed=4)
    with pytest.raises(RefcatError, match=r"margin of 36000 arcsec needs pixels of order \d, not finer than"):
        import_refcat(
            tmp_path / "lake",
            "apass",
            [src],
            "apass",
            client=dask_client,
            progress=False,
            create=True,
            margin_arcsec=36_000,
            pixel_threshold=100,
        )
    assert not (tmp_path / "lake" / "refcats" / "apass").exists()
    assert not any((tmp_path / "lake" / "refcats" / ".staging").iterdir())
    with pytest.raises(ValueError, match="wider than the largest HEALPix pixels"):
        margin_order(200_000, 0)
    assert margin_order(10.0, 8) == 13 and margin_name("x", 0.5) == "x_500msec" and margin_name("x", 7200) == "x_2deg"


def test_mapped_shards_hold_no_open_file(tmp_path):
    """A task maps every shard (a thousand for 10^9 rows): the files are closed once mapped, so the open
    files of a process do not grow with the shards, and the rows stay readable."""
    import os

    from skylake.refcat.partition import _open_shard

    schema = pa.schema([(HEALPIX, pa.int64()), ("ref_id", pa.int64())])
    paths = []
    for k in range(50):
        writer = ShardWriter(tmp_path, f"s{k}", schema, rows_per_shard=10, histogram_order=0)
        writer.write(pa.table({HEALPIX: np.arange(10) + 100 * k, "ref_id": np.arange(10)}, schema=schema))
        writer.close()
        paths += writer.paths
    before = len(os.listdir("/proc/self/fd"))
    held = [_open_shard(str(p)) for p in paths]
    assert len(os.listdir("/proc/self/fd")) <= before + 1
    assert [int(index[3]) for _, index in held] == [100 * k + 3 for k in range(50)]
    assert held[-1][0].slice(9, 1)["ref_id"].to_pylist() == [9]


def _generic(tmp_path, table: pa.Table, name: str = "cat.parquet"):
    """A generic catalogue file and its column map (ref_id from ``id``)."""
    pq.write_table(table, tmp_path / name)
    cmap = tmp_path / "map.yaml"
    cmap.write_text("description: hand-made\ncolumns:\n  ref_id: id\n  ra: ra\n  dec: dec\n  epoch: {const: 2016.0}\n")
    return tmp_path / name, cmap


def test_null_ids_are_kept_and_collide_with_nothing(tmp_path, dask_client):
    # ids on the northern rows only: the southern partitions' shards hold no id at all
    rng = np.random.default_rng(5)
    n = 300
    dec = np.r_[rng.uniform(10, 80, 150), rng.uniform(-80, -10, 150)]
    ids = pa.array(
        np.r_[np.arange(150, dtype=np.int64) + 2**60, np.zeros(150, np.int64)], mask=np.r_[[False] * 150, [True] * 150]
    )
    src, cmap = _generic(tmp_path, pa.table({"id": ids, "ra": rng.uniform(0, 360, n), "dec": dec}))
    report = import_refcat(
        tmp_path / "lake",
        "mine",
        [src],
        "generic",
        columns_map=cmap,
        client=dask_client,
        progress=False,
        create=True,
        pixel_threshold=40,
        highest_order=4,
        rows_per_shard=150,
        chunk_rows=150,
    )
    assert report.rows == n and report.id_collisions == 0
    files = _data_files(tmp_path / "lake" / "refcats" / "mine" / "mine").values()
    got = pa.concat_tables(pq.read_table(f, columns=["ref_id", "dec"]) for f in files)
    null = got["ref_id"].is_null().to_numpy(zero_copy_only=False)
    assert null.sum() == 150 and (got["dec"].to_numpy()[null] < 0).all()
    assert sorted(got["ref_id"].drop_null().to_pylist()) == [2**60 + k for k in range(150)]  # exact past 2^53


def test_a_pixel_over_the_threshold_is_refused_with_what_to_change(tmp_path, dask_client):
    rng = np.random.default_rng(6)
    ra, dec = 10 + rng.normal(0, 1e-4, 500), 20 + rng.normal(0, 1e-4, 500)  # one order-2 pixel holds them all
    src, cmap = _generic(tmp_path, pa.table({"id": np.arange(500), "ra": ra, "dec": dec}))
    with pytest.raises(RefcatError, match=r"exceeds threshold.*--highest-order.*--pixel-threshold"):
        import_refcat(
            tmp_path / "lake",
            "dense",
            [src],
            "generic",
            columns_map=cmap,
            client=dask_client,
            progress=False,
            create=True,
            pixel_threshold=100,
            highest_order=2,
        )
    assert not (tmp_path / "lake" / "refcats" / "dense").exists()


def test_rows_lost_between_the_shards_and_a_partition_stop_the_import(tmp_path, dask_client, monkeypatch):
    """Each partition must get the rows the shards' counts promise (as hats-import checks): a task that
    came back short leaves the previous catalogue in place."""
    from skylake.refcat import importer, partition

    src = write_synthetic(tmp_path / "a.parquet", "apass", rows=2_000, seed=8)
    import_refcat(tmp_path / "lake", "apass", [src], "apass", client=dask_client, progress=False, create=True)
    before = (tmp_path / "lake" / "refcats" / "apass" / "skylake_refcat.json").read_text()

    def short(order, pixel, has_data, spec):
        result = partition.write_pixel(order, pixel, has_data, spec)
        return partition.PixelResult(order, pixel, max(result.rows - 1, 0), result.margin_rows, 0)

    monkeypatch.setattr(importer, "write_pixel", short)
    with pytest.raises(
        RefcatError, match=r"the partition of order \d+, pixel \d+ got \d+ rows, the shards' counts say"
    ):
        import_refcat(tmp_path / "lake", "apass", [src], "apass", client=dask_client, progress=False, overwrite=True)
    assert (tmp_path / "lake" / "refcats" / "apass" / "skylake_refcat.json").read_text() == before
