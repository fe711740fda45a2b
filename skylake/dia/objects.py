"""DIA objects: the real DIA sources (:func:`skylake.dia.detect.is_real`) of every frame, associated on the sky.

A real DIA source joins the nearest DIA object within its frame's match radius (:func:`match_radius`: one
FWHM, at least 1.5 pixels); the sources no object takes are linked among themselves (friends of friends within
the radius) into new DIA objects, each named by its first source's id, so that a name never changes once given.
A DIA object's row (schemas/dia_objects.yaml) is an aggregate of its sources (:func:`aggregate`): position,
detections brighter and fainter than the reference, first and last MJD, the peak S/N; and the object of
LAKE/objects, or the catalogue star, it lies on (:func:`link`): a variable, or with none a transient.

The functions are pure (tables in, tables out); :mod:`skylake.dia.stage` reads and writes them in the lake.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from skylake.lake.tables import DIA_OBJECTS
from skylake.schema import conform
from skylake.sphere import chord, chord_to_arcsec, unit_vectors, vector_to_radec

__all__ = ["ASSOCIATE_FWHM", "MIN_RADIUS_PX", "match_radius", "associate", "aggregate", "link", "object_rows"]

#: A DIA source joins a DIA object within this many of its frame's FWHM ...
ASSOCIATE_FWHM = 1.0
#: ... and never less than this many pixels (a sharp frame's centroids still scatter by a pixel at 5 sigma).
MIN_RADIUS_PX = 1.5


def match_radius(fwhm_px, pixscale_arcsec) -> np.ndarray:
    """The association radius of DIA sources on frames of a FWHM and a plate scale.

    Parameters
    ----------
    fwhm_px : array_like
        The frames' PSF widths [pixels].
    pixscale_arcsec : array_like
        Their plate scales [arcsec/pixel].

    Returns
    -------
    numpy.ndarray
        The radius [arcsec].
    """
    fwhm = np.nan_to_num(np.asarray(fwhm_px, float), nan=2.0)
    return np.maximum(ASSOCIATE_FWHM * fwhm, MIN_RADIUS_PX) * np.asarray(pixscale_arcsec, float)


def associate(sources: pd.DataFrame, objects: pd.DataFrame) -> np.ndarray:
    """The DIA object of each new real DIA source: an existing one's, or a new one's.

    Parameters
    ----------
    sources : pandas.DataFrame
        The new sources: ``dia_source_id``, ``ra``, ``dec`` [deg] and ``radius`` [arcsec] (:func:`match_radius`).
    objects : pandas.DataFrame
        The DIA objects the sources may join: ``dia_object_id``, ``ra``, ``dec``.

    Returns
    -------
    numpy.ndarray
        Each source's ``dia_object_id`` (int64): the nearest object's within the source's radius, else the
        smallest ``dia_source_id`` of its friends-of-friends group among the sources no object took.
    """
    n = len(sources)
    ids = np.full(n, -1, np.int64)
    if not n:
        return ids
    xyz = unit_vectors(sources["ra"], sources["dec"])
    reach = chord(np.asarray(sources["radius"], float))
    if len(objects):
        tree = cKDTree(unit_vectors(objects["ra"], objects["dec"]))
        dist, k = tree.query(xyz, distance_upper_bound=float(reach.max()))
        taken = np.isfinite(dist) & (dist <= reach)
        ids[taken] = objects["dia_object_id"].to_numpy(np.int64)[k[taken]]
    rest = np.flatnonzero(ids < 0)
    if len(rest):
        pairs = cKDTree(xyz[rest]).query_pairs(float(reach[rest].max()), output_type="ndarray")
        if len(pairs):
            d = np.linalg.norm(xyz[rest][pairs[:, 0]] - xyz[rest][pairs[:, 1]], axis=1)
            pairs = pairs[d <= np.maximum(reach[rest][pairs[:, 0]], reach[rest][pairs[:, 1]])]
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(rest), len(rest)))
        _, labels = connected_components(graph, directed=False)
        first = pd.Series(sources["dia_source_id"].to_numpy(np.int64)[rest]).groupby(labels).transform("min")
        ids[rest] = first.to_numpy(np.int64)
    return ids


def aggregate(sources: pd.DataFrame) -> pd.DataFrame:
    """Each DIA object's row from its sources.

    Parameters
    ----------
    sources : pandas.DataFrame
        Real DIA sources with their ``dia_object_id``: ``ra``, ``dec``, ``mjd``, ``sign``, ``snr``, ``radius``.

    Returns
    -------
    pandas.DataFrame
        One row per DIA object: ``dia_object_id``, ``ra``, ``dec`` (the sources' mean, S/N-weighted), ``radius``
        [arcsec] (the largest of its sources'), ``n_sources``, ``n_positive``, ``n_negative``, ``first_mjd``,
        ``last_mjd``, ``peak_snr``.
    """
    if not len(sources):
        return pd.DataFrame(
            {c: pd.Series(dtype="int64" if c.startswith("n_") or c == "dia_object_id" else "float64")
             for c in ("dia_object_id", "ra", "dec", "radius", "n_sources", "n_positive", "n_negative", "first_mjd",
                       "last_mjd", "peak_snr")}
        )  # fmt: skip
    w = sources["snr"].to_numpy(float)
    xyz = unit_vectors(sources["ra"], sources["dec"]) * w[:, None]
    frame = pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}).assign(
        dia_object_id=sources["dia_object_id"].to_numpy(np.int64),
        positive=(sources["sign"].to_numpy() > 0).astype(np.int64),
        negative=(sources["sign"].to_numpy() < 0).astype(np.int64),
        mjd=sources["mjd"].to_numpy(float),
        snr=w,
        radius=sources["radius"].to_numpy(float),
    )
    g = frame.groupby("dia_object_id", sort=True)
    out = g.agg(
        x=("x", "sum"), y=("y", "sum"), z=("z", "sum"), radius=("radius", "max"), n_sources=("snr", "size"),
        n_positive=("positive", "sum"), n_negative=("negative", "sum"), first_mjd=("mjd", "min"),
        last_mjd=("mjd", "max"), peak_snr=("snr", "max"),
    ).reset_index()  # fmt: skip
    out["ra"], out["dec"] = vector_to_radec(out[["x", "y", "z"]].to_numpy())
    columns = ["dia_object_id", "ra", "dec", "radius", "n_sources", "n_positive", "n_negative", "first_mjd",
               "last_mjd", "peak_snr"]  # fmt: skip
    return out[columns]


def link(dia_objects: pd.DataFrame, objects: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The object of LAKE/objects (or catalogue star) each DIA object lies on, within its radius.

    Parameters
    ----------
    dia_objects : pandas.DataFrame
        DIA objects: ``ra``, ``dec``, ``radius`` [arcsec].
    objects : pandas.DataFrame
        Objects and catalogue stars: ``object_id``, ``ra``, ``dec``.

    Returns
    -------
    object_id : pandas.array
        The nearest one's id (Int64; missing where none is within the radius: a transient).
    separation : numpy.ndarray
        Its distance [arcsec] (NaN where none).
    """
    n = len(dia_objects)
    object_id, separation = pd.array([pd.NA] * n, dtype="Int64"), np.full(n, np.nan)
    if not n or not len(objects):
        return object_id, separation
    reach = chord(np.asarray(dia_objects["radius"], float))
    dist, k = cKDTree(unit_vectors(objects["ra"], objects["dec"])).query(
        unit_vectors(dia_objects["ra"], dia_objects["dec"]), distance_upper_bound=float(reach.max())
    )
    near = np.isfinite(dist) & (dist <= reach)
    object_id[near] = objects["object_id"].to_numpy(np.int64)[k[near]]
    separation[near] = chord_to_arcsec(dist[near])
    return object_id, separation


def object_rows(dia_objects: pd.DataFrame, objects: pd.DataFrame) -> pa.Table:
    """DIA object rows (schemas/dia_objects.yaml), linked to the objects they lie on.

    Parameters
    ----------
    dia_objects : pandas.DataFrame
        :func:`aggregate`'s rows.
    objects : pandas.DataFrame
        Objects and catalogue stars near them: ``object_id``, ``ra``, ``dec``.

    Returns
    -------
    pyarrow.Table
        The rows, with ``_healpix_29``, ``object_id`` (null for a transient) and ``object_separation``.
    """
    from skylake.frame import astrometry

    object_id, separation = link(dia_objects, objects)
    ra, dec = dia_objects["ra"].to_numpy(float), dia_objects["dec"].to_numpy(float)
    cols = {
        "_healpix_29": astrometry.healpix29(ra, dec) if len(ra) else np.empty(0, np.int64),
        **{c: dia_objects[c].to_numpy() for c in dia_objects.columns},
        "object_id": pa.array(object_id, pa.int64()),
        "object_separation": pa.array(separation, mask=np.isnan(separation)),
    }
    return conform(pa.table(cols), DIA_OBJECTS)
