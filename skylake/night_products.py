"""Per-night products declared in the registry: a schema and a module, nothing else.

A schema (``schemas/NAME.yaml``) with ``partition_by: night`` declares a *night product* with

``night_product: MODULE``
    the module that makes the product's rows of a night (below);
``inputs: [frames, zeropoints, sources, ...]``
    the tables it reads (default ``[frames]``): night tables, or a HATS table with a ``frame_id`` column
    (``sources``), whose rows of a night are those of the night's frames;
``new_nights: chain | request``
    whether the ``skylake ingest`` chain builds the product for nights that have none yet (``chain``, the
    default), or only keeps current the nights someone asked for (``request``: maps);
``writes: [TABLE, ...]``
    the other night tables a stage product's module writes (its ``drop`` removes them with the product's; a
    product may not read what it or another product downstream of it writes: the registry refuses a circle).

The schema must have an int64 ``built_version`` column: the lake version whose inputs a night's rows
were built from. One rule says which nights to build (:func:`stale_nights`): a night with frames and no
rows is *new*; a night some later commit changed an input of (new frames, ``ingest --redo``, a
recalibration, a removal) is *stale*; a night with rows and no frame left is *gone*. So ``--redo`` makes a
night product stale without either knowing the other. A commit that wrote a HATS input (``sources``) changed
the nights of the frames it wrote or removed in the same commit.

The module is one of two kinds:

a row product
    ``run(night, inputs)`` returns the product's rows of one night (a pyarrow Table of the schema's columns,
    without ``built_version``); ``inputs`` maps each input table's name to its rows of that night. The hook
    reads the inputs on a worker, stages the rows and commits the product's nights in one commit. A night for
    which ``run`` returns no row stays new: it is tried again at every run over it.
a stage product (several tables, per-field tasks, pieces written by the workers: the ensemble, maps)
    ``build(lake, nights, *, runner, version)`` builds exactly those nights (their rows stamped
    ``built_version = version``), commits, and returns the nights it wrote rows for and its report;
    ``drop(tx, lake, nights)`` stages the
    removal of the nights' rows; optionally ``built(lake, nights)`` returns the ``night`` and
    ``built_version`` of the rows that are the product (when only some of the table's rows are: maps).

:func:`build_night_products` is run by the ``skylake ingest`` chain after calibration on the nights it ingested
(every product, in the order of their inputs; a product that fails is said and the others go on), and
``skylake ensemble`` skips the nights :func:`night_plan` finds current. Only nights looked at are dropped: a night
whose frames were all removed loses its rows when a run looks at it (``build_night_products(lake)``). Rows of a
lake written before ``built_version`` existed (null) are not the product's: those nights are new once.

>>> from skylake.night_products import build_night_products     # doctest: +SKIP
>>> build_night_products(lake).outcome()                        # doctest: +SKIP
'night products: 2 nights of night_quality built (1 stale, 1 new)'
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from skylake.lake import tables
from skylake.lake.nights import UNKNOWN_NIGHT
from skylake.lake.tables import FRAMES
from skylake.schema import conform

__all__ = [
    "NightPlan",
    "NightProductsReport",
    "night_plan",
    "build_night_products",
    "night_products",
    "stale_nights",
    "night_products_after",
    "product_module",
    "BUILT_VERSION",
]

log = logging.getLogger(__name__)

#: The column every night product carries: the lake version its inputs were read at.
BUILT_VERSION = "built_version"


@dataclass
class NightProductsReport:
    """What :func:`build_night_products` did, per product.

    Attributes
    ----------
    built : dict
        Product name -> the nights built (the stale ones first, then the new ones; for a stage product,
        those it wrote rows for).
    new : dict
        Product name -> how many of the nights built had no rows before.
    dropped : dict
        Product name -> the nights whose rows were removed (no frame of theirs left).
    current : dict
        Product name -> how many nights looked at were current (not built again).
    reports : dict
        Stage product name -> its own report (what its ``build`` returned).
    failed : dict
        Product name -> why it failed (in the ingest chain, which goes on with the other products).
    version : int or None
        The last commit, None when nothing changed.
    """

    built: dict[str, list[str | None]] = field(default_factory=dict)
    new: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, list[str | None]] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    reports: dict[str, object] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    version: int | None = None

    def __str__(self) -> str:
        stage = [str(r) for reports in self.reports.values() for r in _as_list(reports)]
        return "\n".join([*stage, self.outcome()])

    def outcome(self) -> str:
        """What was built, per product, in one line.

        Returns
        -------
        str
            E.g. ``night products: 2 nights of night_log built (1 stale, 1 new)``.
        """
        failed = "".join(f"; {name} failed ({why})" for name, why in sorted(self.failed.items()))
        if not self.built and not self.dropped:
            return "night products: " + (failed[2:] if failed else "all current")
        parts = []
        for name in sorted(set(self.built) | set(self.dropped)):
            n, new = len(self.built.get(name, [])), self.new.get(name, 0)
            part = f"{n} night{'s' * (n != 1)} of {name} built ({n - new} stale, {new} new)"
            if self.dropped.get(name):
                part += f", {len(self.dropped[name])} dropped (no frames left)"
            parts.append(part)
        return "night products: " + "; ".join(parts) + failed


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def night_products() -> list[tables.Table]:
    """The registry's night products, each after the products whose tables it reads.

    Returns
    -------
    list of skylake.lake.tables.Table
        The tables whose schema has ``night_product:``, by name within that order.
    """
    products = sorted((t for t in tables.registry().values() if t.night_product), key=lambda t: t.name)
    made_by = {w: p.name for p in products for w in (p.name, *p.writes)}
    order, placed = [], set()
    while len(order) < len(products):  # the registry refuses a circle, so one is always ready
        ready = next(
            p for p in products if p.name not in placed and {made_by.get(t) for t in p.inputs} - {None} <= placed
        )
        order.append(ready)
        placed.add(ready.name)
    return order


def product_module(product: tables.Table):
    """The module of a night product (``night_product:``), imported.

    Parameters
    ----------
    product : skylake.lake.tables.Table
        A night product of the registry.

    Returns
    -------
    module
        Its module: a row product's has ``run``, a stage product's ``build`` and ``drop``.
    """
    return importlib.import_module(product.night_product)


def _night_key(value) -> str | None:
    return None if value is None or value == UNKNOWN_NIGHT else value


def _nights_of(table: pa.Table) -> np.ndarray:
    return np.array([_night_key(n) for n in table.column("night").to_pylist()], dtype=object)


def _built(lake, product: tables.Table, nights) -> dict:
    """Night -> the oldest ``built_version`` of the product's rows of it (rows without one are not the product's)."""
    module = product_module(product)
    if hasattr(module, "built"):
        built = module.built(lake, nights)
    else:
        built = product.read(lake, columns=[BUILT_VERSION, "night"], nights=nights)
    version_of: dict = {}
    for night, version in zip(_nights_of(built), built.column(BUILT_VERSION).to_pylist()):
        if version is not None:
            version_of[night] = min(version, version_of.get(night, version))
    return version_of


def _touched(table: tables.Table, entry) -> set:
    """The nights a commit changed of an input table (of a HATS input: those of the frames it wrote)."""
    if table.by_night:
        return table.touched([entry])
    return tables.get(FRAMES).touched([entry]) if table.touched([entry]) else set()


def stale_nights(lake, product: tables.Table, nights=None) -> tuple[list, list, list]:
    """The nights of a product to build again, to build, and to drop.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    product : skylake.lake.tables.Table
        A night product of the registry.
    nights : iterable or None
        Look only at these nights (None: every night).

    Returns
    -------
    stale : list
        Nights built from inputs that a later commit changed.
    new : list
        Nights with frames but no rows of the product.
    gone : list
        Nights with rows of the product but no frame left.
    """
    return _stale(lake, product, nights, _built(lake, product, nights))


def _stale(lake, product: tables.Table, nights, version_of: dict) -> tuple[list, list, list]:
    """:func:`stale_nights` from the product's built versions."""
    # frames of no known night were rejected before their time was read: no night to build
    have_frames = set(_nights_of(tables.get(FRAMES).read(lake, columns=["night"], nights=nights)).tolist()) - {None}
    new = sorted((n for n in have_frames if n not in version_of), key=str)
    gone = sorted((n for n in version_of if n not in have_frames), key=str)
    stale = set()
    if version_of:
        inputs = [tables.get(name) for name in product.inputs]
        for v in range(min(version_of.values()) + 1, lake.log.latest_version() + 1):
            entry = lake.log.read(v)
            for table in inputs:
                for night in _touched(table, entry):
                    if night in version_of and night in have_frames and v > version_of[night]:
                        stale.add(night)
    return sorted(stale, key=str), new, gone


def _read_inputs(lake, inputs: list[str], night: str | None) -> dict:
    """Each input table's rows of one night (a HATS input's: the rows of the night's frames)."""
    data = {t: tables.get(t).read(lake, nights=[night]) for t in inputs if tables.get(t).by_night}
    hats = [t for t in inputs if not tables.get(t).by_night]
    if hats:
        from skylake.calib.crossmatch import footprint_moc, open_sources

        frames = data.get(FRAMES)
        if frames is None:
            frames = tables.get(FRAMES).read(lake, nights=[night])
        frames = frames.to_pandas()
        moc = footprint_moc(frames, 10.0) if len(frames) else None
        for t in hats:
            schema = tables.get(t).schema
            if moc is None:
                data[t] = schema.empty_table()
                continue
            cat = open_sources(lake.store.location, frames["frame_id"], moc, columns=list(schema.names))
            data[t] = pa.Table.from_pandas(cat.compute(progress_bar=False), preserve_index=False)
    return data


def _build_night(
    night: str | None, lake_root: str, module: str, name: str, inputs: list[str], version: int
) -> tuple[str | None, pa.Table]:
    """Build one night of one row product (a task on a worker: it reads its inputs itself).

    Parameters
    ----------
    night : str or None
        The night.
    lake_root : str
        Where the lake is (a path or URL the worker can open).
    module : str
        The product's module (``night_product:``), whose ``run(night, inputs)`` makes the rows.
    name : str
        The product's table.
    inputs : list of str
        The input tables read for the night.
    version : int
        The lake version the inputs are read at (stored as ``built_version``).

    Returns
    -------
    night : str or None
        The night, as given.
    rows : pyarrow.Table
        The product's rows of the night, with ``built_version``, in schema order.
    """
    import dask

    from skylake.lake import Lake

    lake = Lake.open(lake_root, catch_up=False)
    with dask.config.set(scheduler="synchronous"):  # inside a task: read here, not on the cluster
        data = _read_inputs(lake, inputs, night)
    rows = importlib.import_module(module).run(night, data)
    rows = rows.append_column(BUILT_VERSION, pa.array(np.full(rows.num_rows, version, np.int64)))
    return night, conform(rows, name)


@dataclass
class NightPlan:
    """Which nights of a product to build, to drop, and which are current (:func:`night_plan`).

    Attributes
    ----------
    stale : list
        Nights to build again (built from inputs a later commit changed; with ``redo``, every built night).
    new : list
        Nights with frames and no rows to build.
    gone : list
        Nights with rows and no frame left.
    current : list
        Nights built since their inputs last changed (not built again).
    """

    stale: list
    new: list
    gone: list
    current: list


def night_plan(lake, product: tables.Table, nights=None, *, redo: bool = False, chain: bool = False) -> NightPlan:
    """The one rule of which nights of a night product to build (:func:`stale_nights`), with ``redo``.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    product : skylake.lake.tables.Table
        A night product of the registry.
    nights : iterable or None
        Look only at these nights (None: every night).
    redo : bool
        Build again every night looked at that has frames.
    chain : bool
        For the ingest chain: a product with ``new_nights: request`` gets no new nights.

    Returns
    -------
    NightPlan
        The nights to build, to drop, and the current ones.
    """
    version_of = _built(lake, product, nights)
    stale, new, gone = _stale(lake, product, nights, version_of)
    if redo:
        stale = sorted(set(version_of) - set(gone), key=str)
    current = sorted(set(version_of) - set(stale) - set(gone), key=str)
    if chain and product.new_nights == "request":  # built when asked for; kept current once built
        new = []
    return NightPlan(stale=stale, new=new, gone=gone, current=current)


def _build_rows(lake, product: tables.Table, stale, new, gone, runner, report: NightProductsReport) -> None:
    """Build a row product's nights and drop its gone ones, in one commit."""
    version = lake.log.latest_version()
    build = stale + new
    with lake.transaction("night_products") as tx:
        tx.runner = runner
        if stale or gone:
            product.remove_where(tx, lambda data: np.ones(data.num_rows, bool), nights=stale + gone)
        for night, rows in runner.map(
            _build_night,
            build,
            window=max(1, len(build)),
            lake_root=lake.store.location,
            module=product.night_product,
            name=product.name,
            inputs=list(product.inputs),
            version=version,
        ):
            if rows.num_rows:
                product.stage(tx, rows, nights=[night] * rows.num_rows)
        entry = tx.commit({"night_products": {product.name: len(build)}})
    report.version = entry.version if entry else report.version


def _build_stage(lake, product: tables.Table, stale, new, gone, runner, report: NightProductsReport) -> None:
    """Drop a stage product's gone nights (one commit), then have its module build the others."""
    module = product_module(product)
    if gone:
        with lake.transaction(product.name) as tx:
            tx.runner = runner
            module.drop(tx, lake, gone)
            entry = tx.commit({"night_products": {product.name: 0}, "dropped": len(gone)})
        report.version = entry.version if entry else report.version
    if not stale and not new:
        return
    before = lake.log.latest_version()
    written, own = module.build(lake, stale + new, runner=runner, version=before)
    if own:
        report.reports[product.name] = own
    written = set(written)
    built = [n for n in stale + new if n in written]
    if built:
        report.built[product.name] = built
        report.new[product.name] = sum(n in written for n in new)
    if lake.log.latest_version() > before:
        report.version = lake.log.latest_version()


def build_night_products(
    lake, nights=None, products: list[str] | None = None, runner=None, *, redo: bool = False, chain: bool = False
) -> NightProductsReport:
    """Build every night product's stale and new nights and drop those with no frame left.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake, writable.
    nights : iterable or None
        Only these nights (None: every night).
    products : list of str or None
        Only these products (None: every night product of the registry).
    runner : skylake.runtime.Runner or None
        Where the nights' tasks run (None: in this process).
    redo : bool
        Build again every night looked at, current or not.
    chain : bool
        Run by the ingest chain: products with ``new_nights: request`` are not built for new nights.

    Returns
    -------
    NightProductsReport
        What was built and dropped, and the last commit.
    """
    from skylake.runtime import Runner

    runner = runner or Runner(None)
    report = NightProductsReport()
    for product in night_products():
        if products is not None and product.name not in products:
            continue
        try:
            _build_product(lake, product, nights, runner, report, redo=redo, chain=chain)
        except Exception as exc:
            if not chain:
                raise
            # the chain goes on with the other products; the next run over these nights builds this one again
            report.failed[product.name] = f"{type(exc).__name__}: {exc}"
            log.error("night product %s failed (built again at the next run over its nights): %s", product.name, exc)
    log.info(report.outcome())
    return report


def _build_product(lake, product: tables.Table, nights, runner, report: NightProductsReport, *, redo, chain) -> None:
    """Plan one product's nights, then build and drop them."""
    plan = night_plan(lake, product, nights, redo=redo, chain=chain)
    stale, new, gone = plan.stale, plan.new, plan.gone
    report.current[product.name] = len(plan.current)
    if gone:
        report.dropped[product.name] = gone
    if not (stale or new or gone):
        return
    if hasattr(product_module(product), "build"):
        _build_stage(lake, product, stale, new, gone, runner, report)
        return
    _build_rows(lake, product, stale, new, gone, runner, report)
    if stale or new:
        report.built[product.name] = stale + new
        report.new[product.name] = len(new)


def night_products_after(lake, client=None, nights=None) -> list[NightProductsReport]:
    """Build the night products of an ingest's nights, after its calibration (the ingest chain's stage).

    A failure is logged, never raised: the frames are in, and the next run rebuilds what is stale.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    client : distributed.Client or None
        The ingest's cluster (None: in this process).
    nights : iterable or None
        The nights the ingest touched (None: every night).

    Returns
    -------
    list of NightProductsReport
        One report when something was built or dropped, else none.
    """
    if not night_products():
        return []
    from skylake.runtime import Runner

    try:
        report = build_night_products(lake, nights=nights, runner=Runner(client), chain=True)
    except Exception as exc:  # noqa: BLE001 - the ingest and calibration succeeded
        log.error("night products after calibration failed: %s: %s", type(exc).__name__, exc)
        return []
    return [report] if report.built or report.dropped or report.reports or report.failed else []
