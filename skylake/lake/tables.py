"""Every lake table, from ``schemas/*.yaml``: the one place that names them and knows their layout.

A schema file declares how its table is stored with ``partition_by``:

==========  ==========================================================================================
healpix     a HATS catalogue: ``LAKE/NAME/dataset/Norder=k/Dir=d/Npix=n/<batch>.parquet`` (sources,
            objects, lightcurves; reference catalogues under ``LAKE/refcats/NAME/``)
night       ``LAKE/NAME/night=YYYY-MM-DD/<batch>.parquet`` (``night=unknown`` when no time was read)
none        files in ``location``, laid out by the table's module (the maps index: ``LAKE/maps/_index/``)
bucket      ``LAKE/_skylake/frame_index/bucket=XYZ/`` (skylake.lake.frame_index)
==========  ==========================================================================================

and optionally

``location``
    the directory relative to the lake when it is not the table's name;
``mirror: true``
    ``skylake refresh`` copies the table's rows of the nights a commit changed into a summary-database
    table of the same name, with the table's own columns plus ``night`` (skylake.db.products);
``stage: MODULE``
    a *frame product*: ``MODULE.run(record, sources)`` runs in every accepted frame's task and returns the
    table's rows of that frame (without ``frame_id``, which the schema must have); ingest commits them with
    the frame, ``--redo`` replaces them with it, and ``status`` counts them. A product that fails leaves a
    note on the frame, never costs it (skylake.frame.process). Adding such a product takes its schema (with
    this line) and its stage module, nothing else.

Code names tables by the constants below (``tables.FRAMES``), never by a string literal
(tests/test_tables.py checks), and reads a table's facts from :func:`get`.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import yaml

from skylake.paths import project_dir
from skylake.schema import table_spec

# The tables every version of skylake has; product tables declared only in their schema need no constant.
SOURCES = "sources"
OBJECTS = "objects"
LIGHTCURVES = "lightcurves"
FRAMES = "frames"
ZEROPOINTS = "zeropoints"
MATCHES = "matches"
EXTINCTION = "extinction"
MAPS = "maps"
MAPS_INDEX = "maps_index"
STREAKS = "streaks"
STATIC_ARTEFACTS = "static_artefacts"
ENSEMBLE = "ensemble"
DETREND = "detrend"
FRAME_INDEX = "frame_index"
REFCAT = "refcat"

#: The ways a table is partitioned (``partition_by`` in its schema).
PARTITIONINGS = ("healpix", "night", "none", "bucket")
#: Partition of rows whose observing night is unknown (a frame rejected before any time was read). A
#: plain name, so every reader takes it (pandas/pyarrow cannot unify hive's null partition with
#: dictionaries); skylake's own readers turn it back into a null night.
UNKNOWN_NIGHT = "unknown"
#: The prefix of a night partition's directory.
NIGHT_PREFIX = "night="


def night_partition(night) -> str:
    """The partition value of ``night``: the night itself, or :data:`UNKNOWN_NIGHT` (None, NaN, '')."""
    return night if isinstance(night, str) and night else UNKNOWN_NIGHT


def night_partitions(nights) -> np.ndarray:
    """:func:`night_partition` of each of ``nights`` (a sequence, one per row), as an object array: one
    call per distinct night, not per row."""
    import pandas as pd

    codes, uniq = pd.factorize(pd.Series(np.asarray(nights, dtype=object)), use_na_sentinel=True)
    names = np.array([night_partition(n) for n in uniq] + [UNKNOWN_NIGHT], dtype=object)
    return names[codes]  # code -1 (None, NaN): the last name


def night_dir(night) -> str:
    """The directory of ``night`` in a night table: ``night=YYYY-MM-DD`` or ``night=unknown``."""
    return f"{NIGHT_PREFIX}{night_partition(night)}"


def night_of(rel: str) -> str | None:
    """The partition value (``YYYY-MM-DD`` or :data:`UNKNOWN_NIGHT`) of a night directory name, or of a
    path whose first component is one (``night=2026-01-01/batch.parquet``); None for any other path."""
    first = rel.split("/", 1)[0]
    return first[len(NIGHT_PREFIX):] if first.startswith(NIGHT_PREFIX) else None


#: Schema files that describe no lake table.
NOT_TABLES = ("summary",)


@dataclass(frozen=True)
class Table:
    """One lake table as its schema file declares it."""

    name: str
    partition_by: str
    location: str  # directory relative to the lake
    mirror: bool = False
    producer: str | None = None  # module of a frame product (``stage:`` in the schema)

    @property
    def schema(self) -> pa.Schema:
        return table_spec(self.name).schema

    @property
    def hats(self) -> bool:
        return self.partition_by == "healpix"

    @property
    def by_night(self) -> bool:
        return self.partition_by == "night"

    def stage_module(self):
        """The frame-product module (``stage:``), imported."""
        return importlib.import_module(self.producer) if self.producer else None

    # -- the operations every night or HATS table offers, on a lake or in a transaction ----------------
    def read(self, lake, columns: list[str] | None = None, filter=None, nights=None) -> pa.Table:
        """The table's rows (``columns``, ``filter``: a pyarrow expression) as one Arrow table; of a night
        table only the directories of ``nights`` when given (None or NaN: the unknown night)."""
        if self.by_night:
            return lake.read_night_table(self.name, columns=columns, filter=filter, nights=nights)
        if self.hats and self.name == SOURCES:
            return lake.read_sources(columns=columns, filter=filter)
        raise NotImplementedError(f"{self.name} ({self.partition_by}) is read by its own module")

    def stage(self, tx, data: pa.Table, nights: list | None = None) -> None:
        """Stage ``data`` in transaction ``tx``, split by the table's partitioning (``nights``: each row's)."""
        if self.by_night:
            tx.stage_nights(self.name, data, nights)
        elif self.name == SOURCES:
            tx.stage_sources(data)
        else:
            raise NotImplementedError(f"{self.name} ({self.partition_by}) is staged by its own module")

    def remove_where(self, tx, drop, nights=None) -> int:
        """Stage the removal of the rows for which ``drop(data)`` (a boolean array) is true, rewriting the
        files holding them (of ``nights`` only, when given). Returns the rows dropped."""
        return tx.rewrite_without(self.name, tx.lake.live_files(self.location, nights), drop)

    def touched(self, entries) -> set:
        """The partitions the commits ``entries`` added files to or removed files from: nights (None for
        the unknown night) of a night table, (order, pixel) of a HATS table."""
        from skylake.lake.hats_meta import pixel_of

        out = set()
        for entry in entries:
            for action in [*entry.adds, *entry.removes]:
                if action.table != self.location:
                    continue
                if self.by_night and (night := night_of(action.path)) is not None:
                    out.add(None if night == UNKNOWN_NIGHT else night)
                elif self.hats and (pixel := pixel_of(action.path)) is not None:
                    out.add((pixel.order, pixel.pixel))
        return out


def _load(name: str) -> Table:
    with open(project_dir("schemas") / f"{name}.yaml") as fh:
        doc = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    where = f"schemas/{name}.yaml"
    if doc.get("name") != name:
        raise ValueError(f"{where}: name is {doc.get('name')!r}, expected {name!r} (the file's name)")
    part = doc.get("partition_by", "healpix" if doc.get("hats") else None)
    if part not in PARTITIONINGS:
        raise ValueError(f"{where}: partition_by is {part!r}; expected one of {list(PARTITIONINGS)}")
    stage = doc.get("stage")
    if stage is not None and part != "night":
        raise ValueError(f"{where}: a frame product (stage: {stage}) must be partition_by: night")
    if stage is not None and "frame_id" not in table_spec(name).names:
        raise ValueError(f"{where}: a frame product (stage: {stage}) needs a frame_id column (ingest fills it)")
    if part == "night" and doc.get("location", name) != name:
        raise ValueError(f"{where}: a night table lives in LAKE/{name}; location {doc['location']!r} is not allowed")
    return Table(name=name, partition_by=part, location=doc.get("location", name), mirror=bool(doc.get("mirror")),
                 producer=stage)


@functools.cache
def registry() -> dict[str, Table]:
    """Every table, by name, from the schema files."""
    names = sorted(p.stem for p in project_dir("schemas").glob("*.yaml") if p.stem not in NOT_TABLES)
    return {n: _load(n) for n in names}


@functools.cache
def by_location() -> dict[str, Table]:
    """Every table by its directory relative to the lake (as file actions in the log name them)."""
    return {t.location: t for t in registry().values()}


def get(name: str) -> Table:
    try:
        return registry()[name]
    except KeyError:
        raise KeyError(f"no lake table {name!r}; schemas/ declares {sorted(registry())}") from None


def night_tables() -> list[Table]:
    """Tables partitioned by night, in name order."""
    return [t for t in registry().values() if t.by_night]


def frame_products() -> list[Table]:
    """Tables whose rows a frame task makes (``stage:``), in name order."""
    return [t for t in registry().values() if t.producer]


def frame_tables() -> list[Table]:
    """Night tables whose rows belong to one frame (they have ``frame_id``): frames, its calibrations,
    streaks, frame products. A frame replaced by ``--redo`` loses its rows in every one."""
    return [t for t in night_tables() if "frame_id" in t.schema.names]


def of_stage(module: str) -> Table:
    """The table a frame-product module makes (its schema's ``stage:``), so the module names no table."""
    for t in frame_products():
        if t.producer == module:
            return t
    raise KeyError(f"no schema in schemas/ declares stage: {module}")


def mirrored_products() -> list[Table]:
    """Night tables ``skylake refresh`` mirrors generically (``mirror: true``)."""
    return [t for t in registry().values() if t.mirror]
