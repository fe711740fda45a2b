"""HEALPix maps of what calibration measured: per pixel the median zeropoint, star count,
transparency against a clear-sky reference, sky brightness and astrometric residuals, in equatorial
and horizon coordinates (``skylake maps``).

* :mod:`.aggregate`: pure per-pixel aggregation functions on dataframes;
* :mod:`.build`: samples from LAKE/zeropoints, matches, extinction and sources, aggregated per map;
* :mod:`.store`: LAKE/maps (pixel rows) and LAKE/maps/_index (one row per map) through the commit log;
* :mod:`.nightly`: a night's maps as a night product, kept current by the ingest chain once made;
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


def make_maps(lake, *, out_dir=None, pngs=("transparency", "sky"), keep_current=True, **select):
    """Compute the selected maps, commit them to LAKE/maps and, with ``out_dir``, export FITS and PNGs there.

    The selection and settings are :func:`skylake.maps.build.compute_maps` arguments.

    Parameters
    ----------
    lake : skylake.lake.Lake or str or os.PathLike
        The lake, or where it is (then opened here).
    out_dir : str or os.PathLike, optional
        Where to export FITS and PNGs (:func:`skylake.maps.export.export_maps`); None: no export.
    pngs : tuple of str, optional
        The quantities drawn as PNGs (``transparency``, ``sky``).
    keep_current : bool, optional
        The night maps made are night products the ingest chain keeps current (:mod:`skylake.maps.nightly`);
        not with a ``profile`` override (the chain makes maps with the frames' own profiles) nor when False
        (the watcher, which makes them again on its own schedule).
    **select
        :func:`skylake.maps.build.compute_maps` keyword arguments (night, frame_id, since, until, per_frame,
        nside, frames_of, refcat, profile, client, samples).

    Returns
    -------
    maps : skylake.maps.build.MapSet
        The maps computed.
    index : pandas.DataFrame
        The stored index rows, one per map (empty when there was nothing to map).
    version : int or None
        The commit version (None when nothing was stored).
    paths : list of pathlib.Path
        The exported files (empty without ``out_dir``).

    Raises
    ------
    skylake.errors.LakeError
        The lake cannot be written.
    MapsError
        A selection or setting that cannot work (bad nside, date or selection, a frame not in the lake,
        horizon maps asked for of a profile without a site).
    """
    import os

    from skylake.lake import Lake
    from skylake.maps.build import compute_maps
    from skylake.maps.export import export_maps
    from skylake.maps.store import store_maps

    lake = Lake.open(lake) if isinstance(lake, (str, os.PathLike)) else lake
    lake.check_writable()
    read_at = lake.log.latest_version()
    maps = compute_maps(lake, **select)
    stamp = keep_current and select.get("profile") is None
    index, version = store_maps(lake, maps, version=read_at if stamp else None)
    paths = export_maps(maps.pixels, index, out_dir, pngs) if out_dir is not None and len(index) else []
    if len(index):
        log.info("maps: %d maps (%d pixel rows) committed as v%s", len(index), len(maps.pixels), version)
    return maps, index, version, paths
