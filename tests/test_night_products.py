"""A per-night product added through the registry alone: a schema, a module and this test.

The test writes both into a temporary skylake home (a copy of ``schemas/`` plus one file, the
``pipelines/`` of the checkout) and a temporary module directory, so no file of the package is edited:
everything that builds, stores, invalidates and rebuilds the product is the registry's
(:mod:`skylake.lake.tables`, :mod:`skylake.night_products`). Synthetic frames (exact answers).
"""

from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np
import pytest

from skylake import schema
from skylake.lake import Lake, tables
from skylake.night_products import build_night_products, night_products, stale_nights
from skylake.paths import project_dir
from skylake.pipeline import ingest
from skylake.synthetic import write_demo_night

NIGHTS = {"2026-03-01": "2026-03-01T22:00:00", "2026-03-02": "2026-03-02T22:00:00"}
FRAMES_PER_NIGHT = {"2026-03-01": 3, "2026-03-02": 2}

SCHEMA = """\
name: frame_tally
description: Frames tried and accepted per night (a test's night product).
partition_by: night
night_product: frame_tally_product
inputs: [frames]
columns:
  - {name: n_frames, type: int64, unit: "", description: "Frames of the night"}
  - {name: n_ok, type: int64, unit: "", description: "Frames with status ok"}
  - {name: first_frame_id, type: int64, unit: "", description: "Smallest frame id of the night"}
  - {name: built_version, type: int64, unit: "", description: "Lake version the inputs were read at"}
"""

MODULE = """\
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def run(night, inputs):
    frames = inputs["frames"]
    ok = pc.equal(frames.column("status"), "ok")
    return pa.table({"n_frames": [frames.num_rows], "n_ok": [int(pc.sum(ok).as_py() or 0)],
                     "first_frame_id": [int(pc.min(frames.column("frame_id")).as_py())]})
"""


def _clear_caches():
    tables.registry.cache_clear()
    tables.by_location.cache_clear()
    schema.table_spec.cache_clear()


@contextlib.contextmanager
def _home(tmp_path, monkeypatch, schemas: dict, modules: dict):
    """A skylake home whose schemas/ has these files more, and these modules on sys.path (no package file edited)."""
    home = tmp_path / "home"
    shutil.copytree(project_dir("schemas"), home / "schemas")
    for name, text in schemas.items():
        (home / "schemas" / f"{name}.yaml").write_text(text)
    os.symlink(project_dir("pipelines"), home / "pipelines")
    where = tmp_path / "modules"
    where.mkdir()
    for name, text in modules.items():
        (where / f"{name}.py").write_text(text)
    monkeypatch.setenv("SKYLAKE_HOME", str(home))
    monkeypatch.syspath_prepend(str(where))
    _clear_caches()
    try:
        yield
    finally:
        monkeypatch.delenv("SKYLAKE_HOME")
        _clear_caches()


@pytest.fixture
def registry_with_product(tmp_path, monkeypatch):
    """A skylake home whose schemas/ has one more file, and the product's module on sys.path."""
    with _home(tmp_path, monkeypatch, {"frame_tally": SCHEMA}, {"frame_tally_product": MODULE}):
        yield tables.get("frame_tally")


@pytest.fixture(scope="module")
def frame_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("night_products")
    dirs = {}
    for night, start in NIGHTS.items():
        dirs[night] = root / night
        write_demo_night(
            dirs[night],
            n_frames=FRAMES_PER_NIGHT[night],
            shape=(256, 256),
            start_utc=start,
            cadence_s=1200,
            n_stars=150,
            seed=5,
            cloud=False,
            n_variables=0,
        )
    return dirs


def _rows(lake, product):
    got = product.read(lake).to_pandas().sort_values("night")
    return {r.night: (r.n_frames, r.n_ok, r.built_version) for r in got.itertuples()}


def test_the_registry_declares_it(registry_with_product):
    product = registry_with_product
    assert product.night_product == "frame_tally_product" and product.inputs == ("frames",)
    names = [t.name for t in night_products()]
    assert "frame_tally" in names and "ensemble" in names  # beside the package's own


def test_built_kept_current_and_rebuilt_after_a_redo(tmp_path, registry_with_product, frame_dirs):
    product = registry_with_product
    lake = Lake.init(str(tmp_path / "lake"))
    for night in NIGHTS:
        ingest(lake, [str(frame_dirs[night])], "demo", calibrate=False, progress=False)
    ingested = lake.log.latest_version()

    assert stale_nights(lake, product) == ([], list(NIGHTS), [])
    report = build_night_products(lake)
    assert report.built == {"frame_tally": list(NIGHTS)} and report.new == {"frame_tally": 2}
    assert report.outcome() == "night products: 2 nights of frame_tally built (0 stale, 2 new)"
    assert _rows(lake, product) == {n: (FRAMES_PER_NIGHT[n], FRAMES_PER_NIGHT[n], ingested) for n in NIGHTS}

    again = build_night_products(lake)  # nothing changed since
    assert again.built == {} and again.version is None and again.outcome() == "night products: all current"

    # --redo of the second night's frames: that night, and only that one, is stale ...
    ingest(lake, [str(frame_dirs["2026-03-02"])], "demo", calibrate=False, redo=True, progress=False)
    redone = lake.log.latest_version()
    assert stale_nights(lake, product) == (["2026-03-02"], [], [])
    # ... and the ingest chain (with its downstream stages) rebuilds it, the first night untouched
    report = ingest(lake, [str(frame_dirs["2026-03-02"])], "demo", redo=True, progress=False)
    chain = report.downstream.night_products
    assert [r.built for r in chain] == [{"frame_tally": ["2026-03-02"]}]
    rows = _rows(lake, product)
    assert rows["2026-03-01"] == (3, 3, ingested)
    assert rows["2026-03-02"][:2] == (2, 2) and rows["2026-03-02"][2] > redone
    first_ids = product.read(lake, columns=["first_frame_id", "night"]).to_pandas()
    frames = lake.read_frames(columns=["frame_id", "night"]).to_pandas()
    assert np.array_equal(
        first_ids.sort_values("night")["first_frame_id"].to_numpy(),
        frames.groupby("night")["frame_id"].min().sort_index().to_numpy(),
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text.split("  - {name: built_version")[0], "a night product needs an int64 built_version"),
        (
            lambda text: text.replace("inputs: [frames]", "inputs: [frames, objects]"),
            r"input 'objects' is not a night table of schemas/ nor the sources "
            r"\(inputs: \['frames', 'objects'\]\)",
        ),
        (lambda text: text.replace("inputs: [frames]", "inputs: [framez]"), "input 'framez' is not a night table"),
        (lambda text: text.replace("inputs: [frames]", "inputs: [frames]\nwrites: [objects]"), "writes 'objects'"),
        (
            lambda text: text.replace("inputs: [frames]", "inputs: [frames]\nnew_nights: never"),
            r"new_nights is 'never'; expected one of \['chain', 'request'\]",
        ),
        (
            lambda text: text.replace("inputs: [frames]", "inputs: [frames, bad_product]"),
            r"a night product cannot read what it writes \(\['bad_product'\] among its inputs\)",
        ),
        (
            lambda text: text.replace("night_product: bad_product_product\ninputs: [frames]\n", "writes: [frames]\n"),
            "writes and new_nights are for a night product",
        ),
    ],
    ids=[
        "no built_version",
        "a HATS input other than the sources",
        "an unknown input",
        "writes no night table",
        "new_nights",
        "reads itself",
        "writes without a product",
    ],
)
def test_a_bad_night_product_schema_is_refused_naming_the_value(tmp_path, monkeypatch, edit, message):
    home = tmp_path / "home"
    shutil.copytree(project_dir("schemas"), home / "schemas")
    (home / "schemas" / "bad_product.yaml").write_text(edit(SCHEMA.replace("frame_tally", "bad_product")))
    monkeypatch.setenv("SKYLAKE_HOME", str(home))
    _clear_caches()
    try:
        with pytest.raises(ValueError, match="schemas/bad_product.yaml: " + message):
            tables.registry()
    finally:
        monkeypatch.delenv("SKYLAKE_HOME")
        _clear_caches()


SOURCES_SCHEMA = """\
name: source_tally
description: Sources per night (a test's night product that reads the sources).
partition_by: night
night_product: source_tally_product
inputs: [frames, sources]
columns:
  - {name: n_sources, type: int64, unit: "", description: "Sources of the night's frames"}
  - {name: n_frames_with_sources, type: int64, unit: "", description: "Frames with a source"}
  - {name: built_version, type: int64, unit: "", description: "Lake version the inputs were read at"}
"""

SOURCES_MODULE = """\
import pyarrow as pa
import pyarrow.compute as pc


def run(night, inputs):
    sources = inputs["sources"]
    assert pc.all(pc.is_in(sources.column("frame_id"), value_set=inputs["frames"].column("frame_id"))).as_py()
    return pa.table({"n_sources": [sources.num_rows],
                     "n_frames_with_sources": [len(pc.unique(sources.column("frame_id")))]})
"""


def test_a_product_reads_the_night_s_sources(tmp_path, monkeypatch, frame_dirs):
    """inputs may name the sources (a HATS table): a night's rows are those of its frames, and a commit that
    rewrites them (ingest --redo) makes that night stale."""
    with _home(tmp_path, monkeypatch, {"source_tally": SOURCES_SCHEMA}, {"source_tally_product": SOURCES_MODULE}):
        product = tables.get("source_tally")
        assert product.inputs == ("frames", "sources")
        lake = Lake.init(str(tmp_path / "lake"))
        for night in NIGHTS:
            ingest(lake, [str(frame_dirs[night])], "demo", calibrate=False, progress=False)
        report = build_night_products(lake, products=["source_tally"])
        assert report.built == {"source_tally": list(NIGHTS)}
        frames = lake.read_frames(columns=["frame_id", "night"]).to_pandas()
        sources = lake.read_sources(columns=["frame_id"]).to_pandas().merge(frames, on="frame_id")
        got = product.read(lake).to_pandas().set_index("night")
        for night in NIGHTS:
            of_night = sources[sources["night"] == night]
            assert got.loc[night, "n_sources"] == len(of_night) > 0
            assert got.loc[night, "n_frames_with_sources"] == FRAMES_PER_NIGHT[night]
        ingest(lake, [str(frame_dirs["2026-03-02"])], "demo", calibrate=False, redo=True, progress=False)
        assert stale_nights(lake, product) == (["2026-03-02"], [], [])


def test_a_failing_product_leaves_the_others_built_in_the_chain(tmp_path, monkeypatch, frame_dirs):
    """In the ingest chain a product that fails is said (report.failed, its line) and the others are built."""
    broken = SCHEMA.replace("frame_tally", "broken_tally").replace("broken_tally_product", "broken_product")
    schemas = {"frame_tally": SCHEMA, "broken_tally": broken}
    modules = {
        "frame_tally_product": MODULE,
        "broken_product": "def run(night, inputs):\n    raise RuntimeError('no such thing')\n",
    }
    with _home(tmp_path, monkeypatch, schemas, modules):
        lake = Lake.init(str(tmp_path / "lake"))
        report = ingest(lake, [str(frame_dirs["2026-03-01"])], "demo", progress=False)
        (products,) = report.downstream.night_products
        assert products.built["frame_tally"] == ["2026-03-01"] and "broken_tally" not in products.built
        assert products.failed == {"broken_tally": "RuntimeError: no such thing"}
        assert "broken_tally failed (RuntimeError: no such thing)" in products.outcome()
        with pytest.raises(RuntimeError, match="no such thing"):  # asked for directly: raised
            build_night_products(lake, products=["broken_tally"])
