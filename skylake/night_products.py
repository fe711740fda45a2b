"""Per-night products declared in the registry: a schema and a module, nothing else.

A schema (``schemas/NAME.yaml``) with ``partition_by: night`` declares a *night product* with

``night_product: MODULE``
    ``MODULE.run(night, inputs)`` returns the product's rows of one night (a pyarrow Table of the
    schema's columns, without ``built_version``); ``inputs`` maps each input table's name to its rows of
    that night (with their ``night`` column);
``inputs: [frames, zeropoints, ...]``
    the night tables it reads (default ``[frames]``).

The schema must have an int64 ``built_version`` column: the lake version whose inputs a night's rows
were built from. :func:`build_night_products` (run by the ``skylake ingest`` chain after calibration and
the ensemble) rebuilds exactly the nights whose inputs a later commit
changed: new frames, ``ingest --redo``, a recalibration, a removal. So ``--redo`` makes a night product
stale without either knowing the other, and a night whose frames are all gone loses its rows.

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
    "NightProductsReport",
    "build_night_products",
    "night_products",
    "stale_nights",
    "night_products_after",
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
        Product name -> the nights built (the stale ones first, then the new ones).
    new : dict
        Product name -> how many of the nights built had no rows before.
    dropped : dict
        Product name -> the nights whose rows were removed (no frame of theirs left).
    version : int or None
        The commit, None when nothing changed.
    """

    built: dict[str, list[str | None]] = field(default_factory=dict)
    new: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, list[str | None]] = field(default_factory=dict)
    version: int | None = None

    def __str__(self) -> str:
        return self.outcome()

    def outcome(self) -> str:
        """What was built, per product, in one line.

        Returns
        -------
        str
            E.g. ``night products: 2 nights of night_log built (1 stale, 1 new)``.
        """
        if not self.built and not self.dropped:
            return "night products: all current"
        parts = []
        for name in sorted(set(self.built) | set(self.dropped)):
            n, new = len(self.built.get(name, [])), self.new.get(name, 0)
            part = f"{n} night{'s' * (n != 1)} of {name} built ({n - new} stale, {new} new)"
            if self.dropped.get(name):
                part += f", {len(self.dropped[name])} dropped (no frames left)"
            parts.append(part)
        return "night products: " + "; ".join(parts)


def night_products() -> list[tables.Table]:
    """The registry's night products.

    Returns
    -------
    list of skylake.lake.tables.Table
        The tables whose schema has ``night_product:``.
    """
    return [t for t in tables.registry().values() if t.night_product]


def _night_key(value) -> str | None:
    return None if value is None or value == UNKNOWN_NIGHT else value


def _nights_of(table: pa.Table) -> np.ndarray:
    return np.array([_night_key(n) for n in table.column("night").to_pylist()], dtype=object)


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
    built = product.read(lake, columns=[BUILT_VERSION, "night"], nights=nights)
    version_of: dict = {}
    for night, version in zip(_nights_of(built), built.column(BUILT_VERSION).to_pylist()):
        version_of[night] = min(version, version_of.get(night, version))
    # frames of no known night were rejected before their time was read: no night to build
    have_frames = set(_nights_of(tables.get(FRAMES).read(lake, columns=["night"], nights=nights)).tolist()) - {None}
    new = sorted((n for n in have_frames if n not in version_of), key=str)
    gone = sorted((n for n in version_of if n not in have_frames), key=str)
    stale = set()
    if version_of:
        inputs = [tables.get(name) for name in product.inputs]
        latest = lake.log.latest_version()
        for v in range(min(version_of.values()) + 1, latest + 1):
            entry = lake.log.read(v)
            for table in inputs:
                for night in table.touched([entry]):
                    if night in version_of and night in have_frames and v > version_of[night]:
                        stale.add(night)
    return sorted(stale, key=str), new, gone


def _build_night(
    night: str | None, lake_root: str, module: str, name: str, inputs: list[str], version: int
) -> tuple[str | None, pa.Table]:
    """Build one night of one product (a task on a worker: it reads its inputs itself).

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
    from skylake.lake import Lake

    lake = Lake.open(lake_root, catch_up=False)
    data = {t: tables.get(t).read(lake, nights=[night]) for t in inputs}
    rows = importlib.import_module(module).run(night, data)
    rows = rows.append_column(BUILT_VERSION, pa.array(np.full(rows.num_rows, version, np.int64)))
    return night, conform(rows, name)


def build_night_products(lake, nights=None, products: list[str] | None = None, runner=None) -> NightProductsReport:
    """Build every night product's stale and new nights and drop those with no frame left, in one commit.

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

    Returns
    -------
    NightProductsReport
        What was built and dropped, and the commit.
    """
    from skylake.runtime import Runner

    runner = runner or Runner(None)
    report = NightProductsReport()
    todo = []
    for product in night_products():
        if products is not None and product.name not in products:
            continue
        stale, new, gone = stale_nights(lake, product, nights)
        if stale or new:
            report.built[product.name] = stale + new
            report.new[product.name] = len(new)
        if gone:
            report.dropped[product.name] = gone
        if stale or new or gone:
            todo.append((product, stale, new, gone))
    if not todo:
        return report
    version = lake.log.latest_version()
    with lake.transaction("night_products") as tx:
        tx.runner = runner
        for product, stale, new, gone in todo:
            if stale or gone:
                product.remove_where(tx, lambda data: np.ones(data.num_rows, bool), nights=stale + gone)
            build = stale + new
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
        entry = tx.commit({"night_products": {k: len(v) for k, v in report.built.items()}})
    report.version = entry.version if entry else None
    log.info(report.outcome())
    return report


def night_products_after(lake, client=None, nights=None) -> list[NightProductsReport]:
    """Build the night products of an ingest's nights, after its calibration (the ingest chain's last stage).

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
        report = build_night_products(lake, nights=nights, runner=Runner(client))
    except Exception as exc:  # noqa: BLE001 - the ingest and calibration succeeded
        log.error("night products after calibration failed: %s: %s", type(exc).__name__, exc)
        return []
    return [report] if report.built or report.dropped else []
