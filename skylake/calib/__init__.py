"""Photometric calibration of ingested frames against a reference catalogue (``skylake calibrate``).

- :mod:`~skylake.calib.pixel_match`: the cross-match of a batch's sources with a refcat, a k-d tree per
  HATS partition (margins make it complete at partition edges);
- :mod:`~skylake.calib.crossmatch`: the catalogue's checks, the footprints' MOC and the one-to-one reduction;
- :mod:`~skylake.calib.pairs`: a batch's pairs held by the workers per group of frames: the one-to-one
  step, the fits and the matches files run where they are;
- :mod:`~skylake.calib.zeropoint`: star selection, clipped zeropoint / colour-term fits, per-night extinction;
- :mod:`~skylake.calib.astrometry`: astrometric residual statistics and trends;
- :mod:`~skylake.calib.plots`: checkplots (matplotlib, Agg);
- :mod:`~skylake.calib.store`: the zeropoints, matches and extinction tables in the lake;
- :mod:`~skylake.calib.calibrate`: orchestration and the atomic commit;
- :mod:`~skylake.calib.cli`: ``skylake calibrate`` and ``skylake plot zeropoint``.

>>> from skylake.calib.calibrate import calibrate            # doctest: +SKIP
>>> calibrate("LAKE", refcat="tycho2", night="2013-06-10")  # doctest: +SKIP
"""

_EXPORTS = {
    "calibrate_frames": "calibrate",
    "calibrate_ingested": "calibrate",
    "plot_zeropoint": "calibrate",
    "CalibrationReport": "calibrate",
    "CalibrationError": "crossmatch",
    "match_frames": "crossmatch",
    "one_to_one": "crossmatch",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Import lazily: ``skylake --help`` should not pay for lsdb, pandas and matplotlib. (The function
    ``calibrate`` is imported from :mod:`skylake.calib.calibrate`: the module's name shadows it here.)"""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"skylake.calib.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'skylake.calib' has no attribute {name!r}")
