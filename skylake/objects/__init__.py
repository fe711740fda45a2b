"""Objects and light curves: detections associated across frames into objects with stable ids.

One row of variability statistics per object (``LAKE/objects/``) and their light-curve points
(``LAKE/lightcurves/``), two HATS catalogs joined on ``object_id``.

- :mod:`~skylake.objects.associate`: detections (+ reference matches) -> object ids (pure functions);
- :mod:`~skylake.objects.stats`: variability statistics as vectorised group-by aggregations;
- :mod:`~skylake.objects.summary`: objects rows from whole light curves, and new points merged into them;
- :mod:`~skylake.objects.partition`: one partition's update, a task on a worker that stages its files;
- :mod:`~skylake.objects.files`: where the two tables' files are, and reading only their row groups needed;
- :mod:`~skylake.objects.build`: the incremental build (plan, tasks, one commit of the lake's log);
- :mod:`~skylake.objects.query`: light curves by coordinate (pixel-pruned cone search);
- :mod:`~skylake.objects.cli`: ``skylake objects build`` and ``skylake lightcurve``.

>>> from skylake.objects import build_objects, light_curve      # doctest: +SKIP
>>> build_objects("LAKE")                                       # doctest: +SKIP
>>> light_curve("LAKE", ra=256.17, dec=12.79, radius_arcsec=5)  # doctest: +SKIP
"""

_EXPORTS = {
    "build_objects": "build",
    "BuildReport": "build",
    "ObjectsError": "build",
    "light_curve": "query",
    "cone_objects": "query",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Import lazily: ``skylake --help`` should not pay for pandas, scipy and hats."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"skylake.objects.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'skylake.objects' has no attribute {name!r}")
