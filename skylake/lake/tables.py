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
    note on the frame, never costs it (skylake.tasks.frame). Adding such a product takes its schema (with
    this line) and its stage module, nothing else.
``night_product: MODULE``, ``inputs: [TABLE, ...]``, ``writes: [TABLE, ...]``, ``new_nights: chain|request``
    a *night product*: ``MODULE.run(night, inputs)`` returns the table's rows of one night from its input
    tables' rows of that night (or ``MODULE.build`` builds whole nights of several tables: the ensemble,
    maps); :mod:`skylake.night_products` rebuilds the nights whose inputs changed (``--redo`` included).
    Adding one takes its schema, its module and its test, nothing else.
``catalog_type: TYPE`` and ``id_column: COLUMN``
    of a HATS catalog: its ``dataproduct_type`` and the column identifying its rows (default ``source``
    and ``source_id``), written into its metadata by every commit that changes it
    (skylake.lake.hats_meta.CatalogChange).
``versioned_files: DIR``
    the product writes one side file per commit, ``LOCATION/DIR/<version>.parquet`` (the objects' changes,
    read by ``skylake refresh``); ``skylake vacuum`` removes those of vacuumed versions with them.

Code names tables by the constants below (``tables.FRAMES``), never by a string literal
(tests/test_tables.py checks), and reads a table's facts from :func:`get`.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

import pyarrow as pa
import yaml

from skylake.lake.log import LOG_ROWS
from skylake.lake.nights import UNKNOWN_NIGHT, night_of
from skylake.paths import project_dir
from skylake.schema import table_spec

__all__ = [
    "SOURCES",
    "OBJECTS",
    "LIGHTCURVES",
    "FRAMES",
    "ZEROPOINTS",
    "MATCHES",
    "EXTINCTION",
    "MAPS",
    "MAPS_INDEX",
    "STREAKS",
    "STATIC_ARTEFACTS",
    "ENSEMBLE",
    "DETREND",
    "NOISE",
    "FRAME_INDEX",
    "REFCAT",
    "MASTERS",
    "REFERENCES",
    "CAMERA_MASKS",
    "DIA_FRAMES",
    "DIA_SOURCES",
    "DIA_LIGHTCURVES",
    "DIA_FORCED",
    "DIA_OBJECTS",
    "PARTITIONINGS",
    "NOT_TABLES",
    "NEW_NIGHTS",
    "Table",
    "registry",
    "by_location",
    "get",
    "night_tables",
    "frame_products",
    "frame_tables",
    "of_stage",
    "mirrored_products",
]


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
NOISE = "noise"
FRAME_INDEX = "frame_index"
REFCAT = "refcat"
MASTERS = "masters"
REFERENCES = "references"
CAMERA_MASKS = "camera_masks"
DIA_FRAMES = "dia_frames"
DIA_SOURCES = "dia_sources"
DIA_LIGHTCURVES = "dia_lightcurves"
DIA_FORCED = "dia_forced"
DIA_OBJECTS = "dia_objects"

#: The ways a table is partitioned (``partition_by`` in its schema).
PARTITIONINGS = ("healpix", "night", "none", "bucket")
#: Schema files that describe no lake table.
NOT_TABLES = ("summary",)

#: Who builds a night product's new nights (``new_nights:``).
NEW_NIGHTS = ("chain", "request")


@dataclass(frozen=True)
class Table:
    """One lake table as its schema file declares it.

    Attributes
    ----------
    name : str
        The table's name (its schema file's).
    partition_by : str
        How it is stored: one of :data:`PARTITIONINGS`.
    location : str
        Its directory relative to the lake.
    mirror : bool
        ``skylake refresh`` copies it into the summary database.
    producer : str or None
        The module of a frame product (``stage:``).
    versioned_files : str or None
        The directory of its per-commit side files (``versioned_files:``).
    night_product : str or None
        The module of a night product (``night_product:``).
    inputs : tuple of str
        The tables a night product is built from (``inputs:``): night tables, or the sources.
    writes : tuple of str
        The other night tables a night product's module writes (``writes:``).
    new_nights : str
        Who builds a night product's new nights (``new_nights:``): ``chain`` (the ingest chain) or
        ``request`` (its own command; the chain keeps built nights current).
    catalog_type : str
        A HATS catalog's ``dataproduct_type`` (``catalog_type:``, default "source").
    id_column : str
        The column identifying a HATS catalog's rows (``id_column:``, default "source_id").
    log_rows : str or None
        The field of each log entry that counts the table's rows (``log_rows:``; sources, frames).
    index : str or None
        The table indexing its rows by identity, rewritten with them at each commit (``index:``; frames).
    """

    name: str
    partition_by: str
    location: str
    mirror: bool = False
    producer: str | None = None
    versioned_files: str | None = None
    night_product: str | None = None
    inputs: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    new_nights: str = "chain"
    catalog_type: str = "source"
    id_column: str = "source_id"
    log_rows: str | None = None
    index: str | None = None

    @property
    def schema(self) -> pa.Schema:
        """The table's pyarrow schema, from ``schemas/``.

        Returns
        -------
        pyarrow.Schema
            Its columns.
        """
        return table_spec(self.name).schema

    @property
    def hats(self) -> bool:
        """Whether the table is a HATS catalog (``partition_by: healpix``).

        Returns
        -------
        bool
            True for a HATS catalog.
        """
        return self.partition_by == "healpix"

    @property
    def by_night(self) -> bool:
        """Whether the table is a night table (``partition_by: night``).

        Returns
        -------
        bool
            True for a night table.
        """
        return self.partition_by == "night"

    def stage_module(self):
        """Import the frame-product module (``stage:``).

        Returns
        -------
        module or None
            The module, None for a table that is no frame product.
        """
        return importlib.import_module(self.producer) if self.producer else None

    # -- the operations every night or HATS table offers, on a lake or in a transaction ----------------
    def read(self, lake, columns: list[str] | None = None, filter=None, nights=None) -> pa.Table:
        """Read the table's rows.

        Parameters
        ----------
        lake : skylake.lake.Lake
            The lake.
        columns : list of str or None
            Columns to read (None: all).
        filter : pyarrow.compute.Expression or None
            Rows to keep.
        nights : iterable or None
            Of a night table, only these nights' directories (None or NaN: the unknown night).

        Returns
        -------
        pyarrow.Table
            The rows.
        """
        if self.by_night:
            return lake.read_night_table(self.name, columns=columns, filter=filter, nights=nights)
        if self.hats and self.name == SOURCES:
            return lake.read_sources(columns=columns, filter=filter)
        raise NotImplementedError(f"{self.name} ({self.partition_by}) is read by its own module")

    def stage(self, tx, data: pa.Table, nights: list | None = None) -> None:
        """Stage rows in a transaction, split by the table's partitioning.

        Parameters
        ----------
        tx : skylake.lake.Transaction
            The transaction.
        data : pyarrow.Table
            The rows.
        nights : list or None
            Each row's night (night tables).
        """
        if self.by_night:
            tx.stage_nights(self.name, data, nights)
        elif self.name == SOURCES:  # (objects and light curves are filed by their own module)
            tx.stage_healpix(self.name, data)
        else:
            raise NotImplementedError(f"{self.name} ({self.partition_by}) is staged by its own module")

    def remove_where(self, tx, drop, nights=None, files=None, schema: str | None = None, runner=None) -> int:
        """Stage the removal of rows: the one way rows leave a table.

        The files holding them are rewritten in sorted order, so that a re-run stages the same names.

        Parameters
        ----------
        tx : skylake.lake.Transaction
            The transaction.
        drop : callable
            ``drop(data)`` -> boolean array, true for the rows to remove.
        nights : iterable or None
            Only the files of these nights (None: every file).
        files : iterable of str or None
            Only these files, relative to the table (a caller that ruled others out from their statistics;
            instead of ``nights``).
        schema : str or None
            The files' schema when it is not the table's (LAKE/maps/_index's rows are ``maps_index``).
        runner : skylake.runtime.Runner or None
            Rewrite the files on its workers (a table no count, index or catalog follows; ``drop`` must
            pickle); None: in this process.

        Returns
        -------
        int
            The rows dropped.
        """
        rels = sorted(files) if files is not None else sorted(tx.lake.live_files(self.location, nights))
        return tx._rewrite_without(self.name, rels, drop, schema, runner)

    def touched(self, entries) -> set:
        """The partitions that commits added files to or removed files from.

        Parameters
        ----------
        entries : iterable of skylake.lake.log.Entry
            The commits.

        Returns
        -------
        set
            Nights (None for the unknown night) of a night table, ``(order, pixel)`` of a HATS table.
        """
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


def _schema_doc(name: str) -> dict:
    with open(project_dir("schemas") / f"{name}.yaml") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _is_night_table(name: str) -> bool:
    path = project_dir("schemas") / f"{name}.yaml"
    return name not in NOT_TABLES and path.is_file() and _schema_doc(name).get("partition_by") == "night"


def _input_ok(name: str) -> bool:
    """A night product's input: a night table, or the sources (a night's rows are those of its frames)."""
    return _is_night_table(name) or name == SOURCES


def _load(name: str) -> Table:
    doc = _schema_doc(name)
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
    night_product = doc.get("night_product")
    inputs = tuple(doc.get("inputs", ["frames"] if night_product else []))
    writes, new_nights = tuple(doc.get("writes", [])), doc.get("new_nights", "chain")
    if night_product is not None:
        if part != "night" or stage is not None:
            raise ValueError(
                f"{where}: a night product (night_product: {night_product}) must be partition_by: night "
                "and no frame product"
            )
        for table in inputs:
            if not _input_ok(table):
                raise ValueError(
                    f"{where}: input {table!r} is not a night table of schemas/ nor the sources "
                    f"(inputs: {list(inputs)})"
                )
        for table in writes:
            if not _is_night_table(table):
                raise ValueError(f"{where}: writes {table!r}, which is not a night table of schemas/")
        if new_nights not in NEW_NIGHTS:
            raise ValueError(f"{where}: new_nights is {new_nights!r}; expected one of {list(NEW_NIGHTS)}")
        if own := {name, *writes} & set(inputs):
            raise ValueError(f"{where}: a night product cannot read what it writes ({sorted(own)} among its inputs)")
        schema = table_spec(name).schema
        if "built_version" not in schema.names or schema.field("built_version").type != pa.int64():
            raise ValueError(
                f"{where}: a night product needs an int64 built_version column (the lake version "
                "its inputs were read at)"
            )
    elif "writes" in doc or "new_nights" in doc:
        raise ValueError(f"{where}: writes and new_nights are for a night product (night_product: MODULE)")
    if part == "night" and doc.get("location", name) != name:
        raise ValueError(f"{where}: a night table lives in LAKE/{name}; location {doc['location']!r} is not allowed")
    catalog_type, id_column = doc.get("catalog_type", "source"), doc.get("id_column", "source_id")
    if (catalog_type, id_column) != ("source", "source_id") and part != "healpix":
        raise ValueError(f"{where}: catalog_type and id_column are for HATS catalogs (partition_by: healpix)")
    if "id_column" in doc and id_column not in table_spec(name).names:
        raise ValueError(f"{where}: id_column {id_column!r} is not a column of the table")
    log_rows, index = doc.get("log_rows"), doc.get("index")
    if log_rows is not None and log_rows not in LOG_ROWS:
        raise ValueError(f"{where}: log_rows is {log_rows!r}; the log counts rows in {list(LOG_ROWS)}")
    if index is not None and (index != FRAME_INDEX or "frame_id" not in table_spec(name).names):
        raise ValueError(f"{where}: index is {index!r}; only {FRAME_INDEX!r} exists, for tables with a frame_id")
    return Table(
        name=name,
        partition_by=part,
        location=doc.get("location", name),
        mirror=bool(doc.get("mirror")),
        producer=stage,
        versioned_files=doc.get("versioned_files"),
        night_product=night_product,
        inputs=inputs,
        writes=writes,
        new_nights=new_nights,
        catalog_type=catalog_type,
        id_column=id_column,
        log_rows=log_rows,
        index=index,
    )


@functools.cache
def registry() -> dict[str, Table]:
    """Every table, from the schema files (cached).

    Returns
    -------
    dict
        Table name -> :class:`Table`.
    """
    names = sorted(p.stem for p in project_dir("schemas").glob("*.yaml") if p.stem not in NOT_TABLES)
    loaded = {n: _load(n) for n in names}
    _check_night_products(loaded)
    return loaded


def _check_night_products(loaded: dict) -> None:
    """Refuse night products that read each other's tables in a circle (each would make the other stale)."""
    products = {t.name: t for t in loaded.values() if t.night_product}
    made_by = {w: p.name for p in products.values() for w in (p.name, *p.writes)}
    after = {p: {made_by[i] for i in t.inputs if i in made_by} for p, t in products.items()}
    placed: set = set()
    while len(placed) < len(after):
        ready = [p for p, needs in after.items() if p not in placed and needs <= placed]
        if not ready:
            circle = sorted(set(after) - placed)
            raise ValueError(f"schemas/: night products {circle} read each other's tables in a circle (inputs:)")
        placed.update(ready)


@functools.cache
def by_location() -> dict[str, Table]:
    """Every table by its directory relative to the lake, as the log's file actions name them (cached).

    Returns
    -------
    dict
        Directory -> :class:`Table`.
    """
    return {t.location: t for t in registry().values()}


def get(name: str) -> Table:
    """One table of the registry.

    Parameters
    ----------
    name : str
        Its name.

    Returns
    -------
    Table
        The table.

    Raises
    ------
    KeyError
        No schema declares it (the message lists those that do).
    """
    try:
        return registry()[name]
    except KeyError:
        raise KeyError(f"no lake table {name!r}; schemas/ declares {sorted(registry())}") from None


def night_tables() -> list[Table]:
    """Tables partitioned by night.

    Returns
    -------
    list of Table
        In name order.
    """
    return [t for t in registry().values() if t.by_night]


def frame_products() -> list[Table]:
    """Tables whose rows a frame task makes (``stage:``).

    Returns
    -------
    list of Table
        In name order.
    """
    return [t for t in registry().values() if t.producer]


def frame_tables() -> list[Table]:
    """Night tables whose rows belong to one frame: a frame replaced by ``--redo`` loses its rows in each.

    Returns
    -------
    list of Table
        Frames, its calibrations, streaks, frame products: the night tables with ``frame_id``.
    """
    return [t for t in night_tables() if "frame_id" in t.schema.names]


def of_stage(module: str) -> Table:
    """The table a frame-product module makes (its schema's ``stage:``), so that the module names no table.

    Parameters
    ----------
    module : str
        The module's import path.

    Returns
    -------
    Table
        The product's table.

    Raises
    ------
    KeyError
        No schema declares ``stage: module``.
    """
    for t in frame_products():
        if t.producer == module:
            return t
    raise KeyError(f"no schema in schemas/ declares stage: {module}")


def mirrored_products() -> list[Table]:
    """Night tables that ``skylake refresh`` mirrors generically (``mirror: true``).

    Returns
    -------
    list of Table
        In name order.
    """
    return [t for t in registry().values() if t.mirror]
