"""Objects and light curves (``LAKE/objects/``): detections associated across frames into objects with
stable ids, their variability statistics and nested light curves, as a HATS catalog.

- :mod:`~skylake.objects.associate`: detections (+ reference matches) -> object ids (pure functions);
- :mod:`~skylake.objects.stats`: variability statistics as vectorised group-by aggregations;
- :mod:`~skylake.objects.build`: the incremental build, one commit of the lake's log;
- :mod:`~skylake.objects.query`: light curves by coordinate (pixel-pruned cone search);
- :mod:`~skylake.objects.cli`: ``skylake objects build`` and ``skylake lightcurve``.

>>> from skylake.objects import build_objects, light_curve      # doctest: +SKIP
>>> build_objects("LAKE")                                       # doctest: +SKIP
>>> light_curve("LAKE", ra=256.17, dec=12.79, radius_arcsec=5)  # doctest: +SKIP
"""

_EXPORTS = {"build_objects": "build", "BuildReport": "build", "ObjectsError": "build",
            "light_curve": "query", "cone_objects": "query"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Import lazily: ``skylake --help`` should not pay for pandas, scipy and hats."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"skylake.objects.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'skylake.objects' has no attribute {name!r}")
