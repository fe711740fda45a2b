"""HEALPix maps of what calibration measured: per pixel the median zeropoint, star count,
transparency against a clear-sky reference, sky brightness and astrometric residuals, in equatorial
and horizon coordinates (``skylake maps``).

* :mod:`.aggregate`: pure per-pixel aggregation functions on dataframes;
* :mod:`.build`: samples from LAKE/zeropoints, matches, extinction and sources, aggregated per map;
* :mod:`.store`: LAKE/maps (pixel rows) and LAKE/maps/_index (one row per map) through the commit log;
* :mod:`.export`: HEALPix FITS (``healpy.read_map``) and Mollweide PNGs.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

__all__ = ["MapsError", "make_maps"]


def __getattr__(name):  # lazy, so `skylake --help` does not import numpy and pandas
    if name == "MapsError":
        from skylake.maps.aggregate import MapsError

        return MapsError
    raise AttributeError(name)


def make_maps(lake, *, out_dir=None, pngs=("transparency", "sky"), **select):
    """Compute the selected maps (:func:`skylake.maps.build.compute_maps` arguments), commit them to
    LAKE/maps and, with ``out_dir``, export FITS and PNGs there. Returns (MapSet, stored index rows,
    commit version, exported paths)."""
    import os

    from skylake.lake import Lake
    from skylake.maps.build import compute_maps
    from skylake.maps.export import export_maps
    from skylake.maps.store import store_maps

    lake = Lake.open(lake) if isinstance(lake, (str, os.PathLike)) else lake
    lake.check_writable()
    maps = compute_maps(lake, **select)
    index, version = store_maps(lake, maps)
    paths = export_maps(maps.pixels, index, out_dir, pngs) if out_dir is not None and len(index) else []
    if len(index):
        log.info("maps: %d maps (%d pixel rows) committed as v%s", len(index), len(maps.pixels), version)
    return maps, index, version, paths
