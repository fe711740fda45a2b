"""The package's layers, lowest first: a module imports modules of its own layer and of lower ones, never of a
higher one (tests/test_imports.py checks every import, deferred ones included).

A module belongs to the layer of the longest name below that it starts with (``skylake.frame.extract`` is in
``skylake.frame``'s). Within a layer the modules may import each other, but never in a circle.

=========  ==================================================================================================
base       what everything uses: paths, errors, robust statistics, the sky's geometry, schemas, IERS
lake       the lake core (storage, log, transactions, the table registry) and the task runner
settings   the profile: what a camera is, section by section
frame      the narrow-field kernels: reading, headers, detection and measurement, WCS, plate solving, quality
cameras    the kernels of raw frames (reduction) and of all-sky cameras (lens model, forced photometry, fits)
tasks      the per-frame tasks on the workers, which call every kernel
products   what the lake derives from frames: catalogues, calibration, ensemble, objects, maps
chain      the chain that runs them (ingest, pipeline, watch, coadds), the summary database and its report
tools      synthetic data, demos, test helpers, and the command line (each package's ``cli``)
=========  ==================================================================================================
"""

from __future__ import annotations

__all__ = ["CLI_MODULES", "LAYERS", "layer_of"]

#: Each package's command line (its sub-commands for :mod:`skylake.cli`): the top layer, wherever it lives.
CLI_MODULES = (
    "skylake.allsky.cli",
    "skylake.allsky.demo",
    "skylake.allsky.__main__",
    "skylake.calib.cli",
    "skylake.dia.cli",
    "skylake.ensemble.cli",
    "skylake.maps.cli",
    "skylake.objects.cli",
    "skylake.reduce.cli",
    "skylake.refcat.cli",
    "skylake.watch.cli",
)

#: (layer, the module names in it), lowest first.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        (
            "skylake",
            "skylake.layers",
            "skylake.robust",
            "skylake.paths",
            "skylake.iers",
            "skylake.sphere",
            "skylake.horizon",
            "skylake.trends",
            "skylake.jit_cache",
            "skylake.secrets",
            "skylake.errors",
            "skylake.schema",
        ),
    ),
    ("lake", ("skylake.runtime", "skylake.lake")),
    ("settings", ("skylake.profile", "skylake.profile_store")),
    ("frame", ("skylake.frame",)),
    ("cameras", ("skylake.reduce", "skylake.allsky", "skylake.dia")),
    ("tasks", ("skylake.tasks",)),
    (
        "products",
        (
            "skylake.refcat",
            "skylake.calib",
            "skylake.ensemble",
            "skylake.objects",
            "skylake.maps",
            "skylake.night_products",
            "skylake.allsky.store",
            "skylake.allsky.masks",
            "skylake.dia.references",
            "skylake.dia.stage",
            "skylake.dia.points",
            "skylake.dia.objects",
            "skylake.dia.files",
            "skylake.sections",
        ),
    ),
    (
        "chain",
        (
            "skylake.ingest",
            "skylake.pipeline",
            "skylake.watch",
            "skylake.db",
            "skylake.status",
            "skylake.report",
            "skylake.allsky.report",
            "skylake.dia.report",
            "skylake.reduce.coadd",
        ),
    ),
    ("tools", ("skylake.synthetic", "skylake.demo", "skylake.testing", "skylake.cli", *CLI_MODULES)),
)


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of ``module``'s layer.

    Parameters
    ----------
    module : str
        A dotted module name of the package.

    Returns
    -------
    int
        Its layer's index (0 the lowest).

    Raises
    ------
    KeyError
        When no layer holds the module (a new top-level module must be given a layer here).

    Examples
    --------
    >>> [LAYERS[layer_of(m)][0] for m in ("skylake.frame.extract", "skylake.lake", "skylake.calib.cli")]
    ['frame', 'lake', 'tools']
    """
    best, found = -1, None
    for k, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), k
    if found is None:
        raise KeyError(f"no layer holds {module}: give it one in skylake/layers.py")
    return found
