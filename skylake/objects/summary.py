"""Object rows from light-curve points: exact (:func:`summarise`) and incremental (:func:`merge`).

An objects update must not cost the archive, so it cannot read every point of every object it touches.
The statistics of schemas/objects.yaml fall in two kinds:

* **moments** (:data:`MOMENT_COLUMNS`, plus position, counts and first/last MJD): mergeable. A row holds
  enough to add new points exactly: ``std_mag`` and ``chi2_dof`` give the sums of squared deviations,
  ``wmean_mag_err`` the sum of weights, ``min_mag``/``max_mag`` the extremes, ``pos_rms_arcsec`` the
  spread of the unit vectors (so the mean vector's length). :func:`merge` combines them with the new
  points' by the pairwise formulas of Chan, Golub & LeVeque (1979): always current, to rounding.
* **order statistics** (:data:`ORDER_COLUMNS`: median, MAD, Stetson J, everything after the 4-sigma clip
  about the median): need every point. :func:`merge` keeps them as they are and ``n_exact`` says how
  many points they describe; :func:`summarise` computes them from a whole light curve (the objects
  update does that for an object once its points have grown by :data:`REFRESH_GROWTH`).

The statistics' series: ``mag`` when the object has any calibrated point (``stats_mag = 'mag'``), else
``inst_mag``; points with a flag but OBJ_MERGED (saturated, truncated, masked, cosmic ray, trail: :func:`left_out`)
and points without a finite magnitude or a positive error are left out.

Variability: ``fap`` is the chance that a constant star with these errors gives a chi2 as large as the object's
(chi2's survival function with ``n - 1`` degrees of freedom: exact, a moment), and ``variable`` flags the objects
whose ``fap`` is below the table's threshold (``[ensemble] variable_fap`` of the profile of most frames, fixed at
the first build; :data:`DEFAULT_VARIABLE_FAP`). Both mean something only with honest errors: the noise model of
skylake.ensemble.noise gives them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hats.pixel_math.spatial_index import compute_spatial_index

from skylake.frame.extract import OBJ_MERGED
from skylake.lake.tables import OBJECTS
from skylake.objects.arrays import stable_argsort
from skylake.objects.stats import group_extremes, light_curve_stats
from skylake.schema import table_schema
from skylake.sphere import chord_to_arcsec, unit_vectors, vector_to_radec

__all__ = [
    "MOMENT_COLUMNS",
    "ORDER_COLUMNS",
    "VERSIONS",
    "VERSION_COLUMNS",
    "REFRESH_GROWTH",
    "DEFAULT_VARIABLE_FAP",
    "false_alarm",
    "moments",
    "merge_moments",
    "moment_columns",
    "moments_of_rows",
    "POINT_COLUMNS",
    "point_columns",
    "left_out",
    "series",
    "version_stats",
    "light_curve_order",
    "summarise",
    "merge",
    "needs_refresh",
]


#: Statistics an update merges exactly (from the moments of the points).
MOMENT_COLUMNS = [
    "n",
    "mean_mag",
    "wmean_mag",
    "wmean_mag_err",
    "std_mag",
    "chi2_dof",
    "min_mag",
    "max_mag",
    "amplitude",
]
#: Statistics that need every point: computed by :func:`summarise`, carried by :func:`merge`.
ORDER_COLUMNS = [
    "median_mag",
    "mad_mag",
    "stetson_j",
    "n_clip",
    "mean_mag_clip",
    "median_mag_clip",
    "wmean_mag_clip",
    "std_mag_clip",
    "mad_mag_clip",
    "chi2_dof_clip",
    "stetson_j_clip",
    "amplitude_clip",
]
#: The light-curve versions beside the statistics' series (LAKE/lightcurves columns) and their suffixes: the
#: per-frame-zeropoint magnitudes and the detrended ones (skylake.ensemble).
VERSIONS = {"mag_zp": "zp", "mag_epd": "epd", "mag_tfa": "tfa"}
#: Scatter and Stetson J of each version, order statistics like :data:`ORDER_COLUMNS` (``n_exact`` says how
#: many points they describe): e.g. ``std_mag_tfa`` against ``std_mag`` tells what detrending did.
VERSION_COLUMNS = [f"{stat}_{suffix}" for suffix in VERSIONS.values() for stat in ("std_mag", "mad_mag", "stetson_j")]
#: An object's order statistics are recomputed when its points (in its statistics) exceed this factor
#: times the points those statistics describe: each point is then read again a bounded number of times
#: over the archive's life (a geometric series: 1 / (1 - 1/1.25) = 5), and the order statistics always
#: describe at least 1/1.25 = 80 % of the points.
REFRESH_GROWTH = 1.25
_ARCSEC = np.degrees(1.0) * 3600.0
#: An object whose chi2 a constant star would exceed with less than this chance is ``variable``.
DEFAULT_VARIABLE_FAP = 1e-3


def false_alarm(chi2_dof, n) -> np.ndarray:
    """The chance that a constant star's light curve of ``n`` points has a reduced chi2 this large or larger.

    Parameters
    ----------
    chi2_dof : array_like
        Each light curve's reduced chi2 about its weighted mean (``n - 1`` degrees of freedom).
    n : array_like
        Its points.

    Returns
    -------
    numpy.ndarray
        ``chi2.sf(chi2_dof * (n - 1), n - 1)``; NaN with fewer than 2 points or no chi2.

    Examples
    --------
    >>> np.round(false_alarm([1.0, 3.0, np.nan], [11, 11, 11]), 4).tolist()
    [0.4405, 0.0009, nan]
    """
    from scipy.stats import chi2

    chi2_dof, n = np.asarray(chi2_dof, float), np.asarray(n, float)
    dof = np.where(n > 1, n - 1, np.nan)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(chi2_dof) & (n > 1), chi2.sf(chi2_dof * dof, dof), np.nan)


# -- moments --------------------------------------------------------------------------------------------
def moments(group: np.ndarray, mag: np.ndarray, err: np.ndarray, n_groups: int) -> dict:
    """The mergeable moments of each group's usable points (finite ``mag``, finite ``err`` > 0).

    Count ``n``, ``mean`` and ``m2`` (sum of squared deviations from it), weight ``w`` (sum of 1/err^2),
    ``wmean`` and ``wm2`` (weighted sum of squared deviations from it), ``lo``/``hi`` (extremes).
    Empty groups: n = w = m2 = wm2 = 0, the rest NaN.

    Parameters
    ----------
    group : numpy.ndarray
        The group (object) of each point (0 .. n_groups-1).
    mag, err : numpy.ndarray
        Each point's magnitude and its error [mag].
    n_groups : int
        The number of groups.

    Returns
    -------
    dict
        The moments ``n``, ``mean``, ``m2``, ``w``, ``wmean``, ``wm2``, ``lo`` and ``hi``, arrays of length
        ``n_groups``.
    """
    group = np.asarray(group, dtype=np.int64)
    mag, err = np.asarray(mag, dtype=np.float64), np.asarray(err, dtype=np.float64)
    ok = np.isfinite(mag) & np.isfinite(err) & (err > 0)
    g, m, w = group[ok], mag[ok], 1.0 / err[ok] ** 2
    n = np.bincount(g, minlength=n_groups).astype(np.int64)
    wsum = np.bincount(g, w, n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(g, m, n_groups) / n
        wmean = np.bincount(g, w * m, n_groups) / wsum
    lo, hi = group_extremes(g, m, n_groups)
    empty = n == 0
    lo[empty] = hi[empty] = np.nan
    return {
        "n": n,
        "mean": mean,
        "m2": np.bincount(g, (m - mean[g]) ** 2, n_groups),
        "w": wsum,
        "wmean": wmean,
        "wm2": np.bincount(g, w * (m - wmean[g]) ** 2, n_groups),
        "lo": lo,
        "hi": hi,
    }


def merge_moments(a: dict, b: dict) -> dict:
    """Moments of the union of two sets of points from the moments of each (Chan et al. 1979).

    Parameters
    ----------
    a, b : dict
        The moments of each set (as :func:`moments` gives them), group by group.

    Returns
    -------
    dict
        The moments of the union, group by group.
    """
    n = a["n"] + b["n"]
    w = a["w"] + b["w"]
    with np.errstate(divide="ignore", invalid="ignore"):
        fb = np.where(n > 0, b["n"] / np.maximum(n, 1), 0.0)
        d = np.where((a["n"] > 0) & (b["n"] > 0), b["mean"] - a["mean"], 0.0)
        mean = np.where(a["n"] > 0, a["mean"] + d * fb, b["mean"])
        m2 = a["m2"] + b["m2"] + d**2 * a["n"] * fb
        fw = np.where(w > 0, b["w"] / np.where(w > 0, w, 1.0), 0.0)
        dw = np.where((a["w"] > 0) & (b["w"] > 0), b["wmean"] - a["wmean"], 0.0)
        wmean = np.where(a["w"] > 0, a["wmean"] + dw * fw, b["wmean"])
        wm2 = a["wm2"] + b["wm2"] + dw**2 * a["w"] * fw
    return {
        "n": n,
        "mean": mean,
        "m2": m2,
        "w": w,
        "wmean": wmean,
        "wm2": wm2,
        "lo": np.fmin(a["lo"], b["lo"]),
        "hi": np.fmax(a["hi"], b["hi"]),
    }


def moment_columns(mom: dict) -> dict:
    """:data:`MOMENT_COLUMNS` from moments.

    Parameters
    ----------
    mom : dict
        Moments (as :func:`moments` gives them).

    Returns
    -------
    dict
        Each of :data:`MOMENT_COLUMNS`: an array per group (NaN where too few points).
    """
    n = mom["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = np.where(n > 1, n - 1, np.nan)
        return {
            "n": n.astype(np.int32),
            "mean_mag": np.where(n > 0, mom["mean"], np.nan),
            "wmean_mag": np.where(mom["w"] > 0, mom["wmean"], np.nan),
            "wmean_mag_err": np.where(mom["w"] > 0, 1.0 / np.sqrt(mom["w"]), np.nan),
            "std_mag": np.sqrt(mom["m2"] / dof),
            "chi2_dof": mom["wm2"] / dof,
            "fap": false_alarm(mom["wm2"] / dof, n),
            "min_mag": mom["lo"],
            "max_mag": mom["hi"],
            "amplitude": 0.5 * (mom["hi"] - mom["lo"]),
        }


def moments_of_rows(rows: pd.DataFrame) -> dict:
    """The moments an objects row holds (the inverse of :func:`moment_columns`).

    Parameters
    ----------
    rows : pandas.DataFrame
        Objects rows (their :data:`MOMENT_COLUMNS`).

    Returns
    -------
    dict
        The moments of each row, as :func:`moments` gives them.
    """
    n = rows["n"].to_numpy(np.int64)
    werr = rows["wmean_mag_err"].to_numpy(np.float64)
    many = n > 1
    return {
        "n": n,
        "mean": rows["mean_mag"].to_numpy(np.float64),
        "m2": np.where(many, rows["std_mag"].to_numpy(np.float64) ** 2 * (n - 1), 0.0),
        "w": np.where(n > 0, 1.0 / werr**2, 0.0),
        "wmean": rows["wmean_mag"].to_numpy(np.float64),
        "wm2": np.where(many, rows["chi2_dof"].to_numpy(np.float64) * (n - 1), 0.0),
        "lo": rows["min_mag"].to_numpy(np.float64),
        "hi": rows["max_mag"].to_numpy(np.float64),
    }


# -- the statistics' series -----------------------------------------------------------------------------
#: The light-curve columns the statistics read (:func:`point_columns`).
POINT_COLUMNS = ["object_id", "source_id", "mjd", "ra", "dec", "mag", "mag_err", "inst_mag", "inst_mag_err", "flags"]


def point_columns(points) -> dict:
    """The columns of light-curve points the statistics read, as NumPy arrays.

    Floats as float64 with NaN for a missing value, ids and flags as int64; ``ref_id`` as its int64 values
    (0 where missing; never through float: ids past 2**53 stay exact) and ``ref_ok``, where it is present.
    A version of :data:`VERSIONS` the points lack is all NaN.

    Parameters
    ----------
    points : pyarrow.Table or pandas.DataFrame
        Light-curve points (LAKE/lightcurves columns, ``_healpix_29`` not needed).

    Returns
    -------
    dict
        ``name: numpy.ndarray`` for :data:`POINT_COLUMNS`, the :data:`VERSIONS`, ``ref_id`` and ``ref_ok``.
    """
    n = len(points)
    if isinstance(points, pa.Table):
        names = set(points.column_names)

        def col(name: str, dtype) -> np.ndarray:
            """Column ``name`` as ``dtype`` (a float's nulls NaN)."""
            values = points.column(name)
            if dtype is np.float64:
                return np.asarray(values.to_numpy(zero_copy_only=False), np.float64)
            return np.asarray(values.fill_null(0).to_numpy(), dtype)

        ref = points.column("ref_id").cast(pa.int64())
        ref_ok = np.asarray(ref.is_valid().to_numpy(zero_copy_only=False), bool)
        ref_id = np.asarray(ref.fill_null(0).to_numpy(), np.int64)
    else:
        names = set(points.columns)

        def col(name: str, dtype) -> np.ndarray:
            """Column ``name`` as ``dtype`` (a float's missing values NaN)."""
            if dtype is np.float64:
                return points[name].to_numpy(np.float64, na_value=np.nan)
            return points[name].to_numpy(dtype)

        ref = points["ref_id"].astype("Int64").array
        ref_ok = ~np.asarray(ref.isna(), bool)
        ref_id = ref.to_numpy(np.int64, na_value=0)
    ints = {"object_id", "source_id", "flags"}
    out = {c: col(c, np.int64 if c in ints else np.float64) for c in POINT_COLUMNS}
    for c in VERSIONS:
        out[c] = col(c, np.float64) if c in names else np.full(n, np.nan)
    out["ref_id"], out["ref_ok"] = ref_id, ref_ok
    return out


def _take(points: dict, rows) -> dict:
    """The ``rows`` (indices or a mask) of point columns (:func:`point_columns`)."""
    return {k: v[rows] for k, v in points.items()}


def left_out(flags: np.ndarray) -> np.ndarray:
    """Which points the statistics leave out: those with any flag but OBJ_MERGED (saturated, truncated at the
    chip's edge, masked pixels, a cosmic ray, a satellite trail, a forced measurement that failed: a flux that
    is not the star's). Blended points count, with the noise model's blend floor in their errors.

    Parameters
    ----------
    flags : numpy.ndarray
        The points' flags (schemas/sources.yaml).

    Returns
    -------
    numpy.ndarray
        Mask (bool) of the points left out.

    Examples
    --------
    >>> left_out(np.array([0, 1, 16, 256, 257])).tolist()
    [False, False, True, True, True]
    """
    return (np.asarray(flags) & ~OBJ_MERGED) != 0


def series(points: dict, use_cal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's magnitude and error in its object's statistics.

    ``mag`` where ``use_cal`` (per point), else ``inst_mag``; NaN for a point :func:`left_out` (a saturated
    star's flux is a lower limit, a truncated one's a part).

    Parameters
    ----------
    points : dict
        Light-curve points' columns (:func:`point_columns`).
    use_cal : numpy.ndarray
        Mask (bool) of the points whose calibrated ``mag`` is used.

    Returns
    -------
    mag : numpy.ndarray
        Each point's magnitude [mag] (NaN for a saturated point).
    err : numpy.ndarray
        Its error [mag].
    """
    m = np.where(use_cal, points["mag"], points["inst_mag"])
    e = np.where(use_cal, points["mag_err"], points["inst_mag_err"])
    return np.where(left_out(points["flags"]), np.nan, m), e


def version_stats(inv: np.ndarray, points: dict, n_obj: int) -> dict:
    """:data:`VERSION_COLUMNS` of each object from its points' versions.

    The error of every version is ``mag_err``, the points :func:`left_out` left out (as :func:`series`).

    Parameters
    ----------
    inv : numpy.ndarray
        Each point's object index (0 .. n_obj-1).
    points : dict
        Light-curve points' columns (:func:`point_columns`; a missing version is NaN).
    n_obj : int
        The number of objects.

    Returns
    -------
    dict
        Each of :data:`VERSION_COLUMNS`: an array of length ``n_obj``.
    """
    from skylake.objects.stats import basic_stats

    out_ = left_out(points["flags"])
    err, mjd = points["mag_err"], points["mjd"]
    out = {}
    for column, suffix in VERSIONS.items():
        m = points[column]
        ok = ~out_ & np.isfinite(m) & np.isfinite(err) & (err > 0)
        stats = basic_stats(inv[ok], mjd[ok], m[ok], err[ok], n_obj)
        for stat in ("std_mag", "mad_mag", "stetson_j"):
            out[f"{stat}_{suffix}"] = stats[stat]
    return out


def _calibrated(points: dict) -> np.ndarray:
    return np.isfinite(points["mag"])


def _first_ref(points: dict, inv: np.ndarray, n_obj: int) -> tuple[np.ndarray, np.ndarray]:
    """Per object the ``ref_id`` of its first point (in the points' order) that has one: its values (0 for
    none) and which objects have one."""
    has = np.flatnonzero(points["ref_ok"])
    with_ref, at = np.unique(inv[has], return_index=True)
    values, ok = np.zeros(n_obj, np.int64), np.zeros(n_obj, bool)
    values[with_ref], ok[with_ref] = points["ref_id"][has[at]], True
    return values, ok


def _table(cols: dict) -> pa.Table:
    """An objects table from column arrays (in schemas/objects.yaml's order and types). A statistic that cannot
    be computed (NaN here: too few points) is stored null: readers sort and filter nulls as missing, while
    DuckDB and Postgres sort NaN above every number (the "most variable" object would be one without a J)."""
    schema = table_schema(OBJECTS)
    return pa.table(
        {
            f.name: cols[f.name]
            if isinstance(cols[f.name], pa.Array)
            else pa.array(cols[f.name], f.type, from_pandas=pa.types.is_floating(f.type))
            for f in schema
        },
        schema=schema,
    )


def _flag_variables(cols: dict, variable_fap: float) -> dict:
    """``cols`` with ``variable``: ``fap`` below ``variable_fap``."""
    fap = np.asarray(cols["fap"], float)
    with np.errstate(invalid="ignore"):
        return {**cols, "variable": np.isfinite(fap) & (fap < variable_fap)}


def _finish(cols: dict, variable_fap: float) -> pa.Table:
    """An objects table from column arrays, sorted by ``_healpix_29`` then ``object_id``."""
    table = _table(_flag_variables(cols, variable_fap))
    return table.take(np.lexsort((table.column("object_id").to_numpy(), table.column("_healpix_29").to_numpy())))


# -- exact ----------------------------------------------------------------------------------------------
def light_curve_order(object_id: np.ndarray, mjd: np.ndarray, source_id: np.ndarray) -> np.ndarray:
    """Indices ordering points by object, then time, then source id (ties in the points' order).

    Exactly ``np.lexsort((source_id, mjd, object_id))``: each light curve in time order, as
    :func:`summarise` adds up its statistics. When no object has two points of one time (the source ids
    then order nothing), by one sort of the object's and the time's ranks packed in one key
    (:func:`~skylake.objects.arrays.stable_argsort`): ~2x the three passes of ``np.lexsort``.

    Parameters
    ----------
    object_id, mjd, source_id : numpy.ndarray
        Each point's object, time [d] and source id.

    Returns
    -------
    numpy.ndarray
        The indices (int64).
    """
    object_id, mjd = np.asarray(object_id), np.asarray(mjd)
    if len(object_id) > 1 and not (mjd == 0).any():  # (a signed zero: two values numpy's sorts see as one)
        obj, _ = pd.factorize(object_id, sort=True)
        time, times = pd.factorize(mjd, sort=True)
        if not (time < 0).any():  # (NaN: the lexsort's place for it)
            key = obj.astype(np.int64) * len(times) + time
            order = stable_argsort(key)
            ranked = key[order]
            if not (ranked[1:] == ranked[:-1]).any():
                return order
    return np.lexsort((source_id, mjd, object_id))


def summarise(
    points,
    refcat: str,
    xyz: np.ndarray | None = None,
    order: np.ndarray | None = None,
    variable_fap: float = DEFAULT_VARIABLE_FAP,
) -> pa.Table:
    """One objects row per ``object_id`` of ``points``, every statistic computed from these points.

    The points are the object's whole light curve. Every reference object (object_id < 0) comes from
    ``refcat``, and its ``ref_id`` is the first one among its points (in time), wherever that is.

    Parameters
    ----------
    points : pyarrow.Table or pandas.DataFrame
        Light-curve points (LAKE/lightcurves columns, ``_healpix_29`` not needed).
    refcat : str
        The build's reference catalogue.
    xyz : numpy.ndarray, optional
        The points' unit vectors (:func:`~skylake.sphere.unit_vectors` of ``ra``, ``dec``, in the points'
        order), when known.
    order : numpy.ndarray, optional
        The points' :func:`light_curve_order`, when known.
    variable_fap : float
        Objects whose ``fap`` is below this are ``variable``.

    Returns
    -------
    pyarrow.Table
        The objects rows (schemas/objects.yaml), sorted by ``_healpix_29``; an empty ``points`` gives an
        empty table.
    """
    if not len(points):
        return table_schema(OBJECTS).empty_table()
    points = point_columns(points)
    # by object, then time (a stable sort, as pandas' sort_values): each light curve in time order; only
    # what the statistics add up is taken in that order (the sums' order is their bits)
    by = light_curve_order(points["object_id"], points["mjd"], points["source_id"]) if order is None else order
    oid = points["object_id"][by]
    first = np.flatnonzero(np.r_[True, oid[1:] != oid[:-1]])
    uniq, inv = oid[first], np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(oid)]))
    n_obj = len(uniq)
    at = np.empty_like(inv)
    at[by] = inv  # each point's object, in the points' order
    counts = np.bincount(inv, minlength=n_obj)
    # (elementwise: the vectors of the points taken in order are those of the points, taken)
    xyz = unit_vectors(points["ra"][by], points["dec"][by]) if xyz is None else np.take(xyz, by, axis=0)
    comps = [np.ascontiguousarray(xyz[:, k]) for k in range(3)]  # (column by column: contiguous sums)
    total = np.column_stack([np.bincount(inv, c, n_obj) for c in comps])
    centre = total / np.linalg.norm(total, axis=1, keepdims=True)
    ra, dec = vector_to_radec(centre)
    d = [c - np.ascontiguousarray(centre[:, k])[inv] for k, c in enumerate(comps)]
    dist2 = chord_to_arcsec(np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])) ** 2  # (arrays.row_norms' sum)
    n_cal = np.bincount(at, _calibrated(points), n_obj).astype(np.int32)
    m, e = (v[by] for v in series(points, (n_cal > 0)[at]))
    mjd = points["mjd"][by]
    order = light_curve_stats(inv, mjd, m, e, n_obj)
    last = np.r_[first[1:], len(oid)] - 1
    if points["ref_ok"].any():
        ref_id, ref_ok = _first_ref(_take(points, by), inv, n_obj)
    else:
        ref_id, ref_ok = np.zeros(n_obj, np.int64), np.zeros(n_obj, bool)
    if any(np.isfinite(points[c]).any() for c in VERSIONS):
        versions = version_stats(inv, _take(points, by), n_obj)
    else:  # no point has a version: nothing to add up in order
        versions = version_stats(at, points, n_obj)
    cols = {
        "_healpix_29": np.asarray(compute_spatial_index(ra, dec), dtype=np.int64),
        "object_id": uniq,
        "refcat": np.where(uniq < 0, refcat, "").astype(object),
        "ref_id": pa.array(ref_id, pa.int64(), mask=~ref_ok),
        "ra": ra,
        "dec": dec,
        "pos_rms_arcsec": np.sqrt(np.bincount(inv, dist2, n_obj) / counts).astype(np.float32),
        "n_det": counts.astype(np.int32),
        "n_cal": n_cal,
        "stats_mag": np.where(n_cal > 0, "mag", "inst_mag").astype(object),
        **{k: order[k] for k in ORDER_COLUMNS},
        **moment_columns(moments(inv, m, e, n_obj)),
        **versions,
        "n_exact": order["n"].astype(np.int32),
        "first_mjd": mjd[first],
        "last_mjd": mjd[last],
    }
    return _finish(cols, variable_fap)


# -- incremental ----------------------------------------------------------------------------------------
def merge(rows: pa.Table, points, variable_fap: float = DEFAULT_VARIABLE_FAP) -> pa.Table:
    """``rows`` (objects rows) with ``points`` (new points of those objects) added.

    Position, counts, moments and first/last MJD exact; the order statistics kept (``n_exact``
    unchanged), except where the statistics' series starts with these points (no usable point before,
    or the first calibrated points of an object whose statistics used ``inst_mag``): those are exact,
    computed from the new points.

    Parameters
    ----------
    rows : pyarrow.Table
        Objects rows.
    points : pyarrow.Table or pandas.DataFrame
        New light-curve points of those objects: every ``object_id`` of ``points`` must be one of ``rows``.
    variable_fap : float
        Objects whose ``fap`` is below this are ``variable``.

    Returns
    -------
    pyarrow.Table
        The rows updated; rows without new points are returned unchanged, and the order of ``rows`` is
        kept.

    Raises
    ------
    ValueError
        A point's object is not among ``rows``.
    """
    points = point_columns(points)
    old = rows.to_pandas()
    ids = old["object_id"].to_numpy(np.int64)
    at = pd.Index(ids).get_indexer(points["object_id"])
    if (at < 0).any():
        missing = np.unique(points["object_id"][at < 0])[:5]
        raise ValueError(f"merge: points of objects not in the rows given (e.g. {missing.tolist()})")
    n_obj = len(ids)
    k = np.bincount(at, minlength=n_obj)
    old_n_det = old["n_det"].to_numpy(np.int64)
    # position: mean unit vector and sum of squared chords, from (ra, dec, pos_rms) and the new points
    rms = 2.0 * np.sin(old["pos_rms_arcsec"].to_numpy(np.float64) / _ARCSEC / 2.0)  # arcsec -> chord
    length = np.sqrt(np.clip(1.0 - rms**2, 0.0, 1.0))
    s_old = unit_vectors(old["ra"].to_numpy(), old["dec"].to_numpy()) * (length * old_n_det)[:, None]
    xyz = unit_vectors(points["ra"], points["dec"])
    s_new = np.column_stack([np.bincount(at, xyz[:, j], n_obj) for j in range(3)])
    n_det = old_n_det + k
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_new = s_new / np.maximum(k, 1)[:, None]
        m2_new = np.bincount(at, np.sum((xyz - mean_new[at]) ** 2, axis=1), n_obj)
        mean_old = s_old / np.maximum(old_n_det, 1)[:, None]
        m2 = (
            old_n_det * rms**2
            + m2_new
            + np.sum((mean_new - mean_old) ** 2, axis=1) * old_n_det * k / np.maximum(n_det, 1)
        )
        total = s_old + s_new
        centre = total / np.linalg.norm(total, axis=1, keepdims=True)
        resultant = np.linalg.norm(total, axis=1) / np.maximum(n_det, 1)
        spread = np.sqrt(np.maximum(m2 / np.maximum(n_det, 1) + (1.0 - resultant) ** 2, 0.0))
    ra, dec = vector_to_radec(centre)
    # the statistics' series
    old_cal = old["n_cal"].to_numpy(np.int64)
    new_cal = np.bincount(at, _calibrated(points), n_obj).astype(np.int64)
    use_cal = (old_cal + new_cal) > 0
    m, e = series(points, use_cal[at])
    fresh = moments(at, m, e, n_obj)
    restart = ((old_cal == 0) & (new_cal > 0)) | (old["n"].to_numpy(np.int64) == 0)
    before = moments_of_rows(old)
    before = {key: np.where(restart, 0 if key in ("n", "m2", "w", "wm2") else np.nan, v) for key, v in before.items()}
    merged = moment_columns(merge_moments(before, fresh))
    cols = {c: old[c].to_numpy() for c in old.columns if c not in ("ref_id", "refcat", "stats_mag")}
    touched = k > 0
    if restart.any():  # the series is only the new points: their order statistics are exact
        pick = np.flatnonzero(restart[at])
        order = light_curve_stats(at[pick], points["mjd"][pick], m[pick], e[pick], n_obj)
        order.update(version_stats(at[pick], _take(points, pick), n_obj))
        for c in [*ORDER_COLUMNS, *VERSION_COLUMNS, "n_exact"]:
            cols[c] = np.where(restart & touched, order["n" if c == "n_exact" else c], cols[c]).astype(cols[c].dtype)
    for c, v in merged.items():
        cols[c] = np.where(touched, v, cols[c]).astype(cols[c].dtype)
    cols["ra"] = np.where(touched, ra, cols["ra"])
    cols["dec"] = np.where(touched, dec, cols["dec"])
    cols["pos_rms_arcsec"] = np.where(touched, chord_to_arcsec(spread), cols["pos_rms_arcsec"]).astype(np.float32)
    cols["_healpix_29"] = np.asarray(compute_spatial_index(cols["ra"], cols["dec"]), dtype=np.int64)
    cols["n_det"] = n_det.astype(np.int32)
    cols["n_cal"] = (old_cal + new_cal).astype(np.int32)
    cols["stats_mag"] = np.where(use_cal, "mag", "inst_mag").astype(object)
    cols["refcat"] = old["refcat"].to_numpy(object)
    mjd = points["mjd"]
    lo, hi = np.full(n_obj, np.inf), np.full(n_obj, -np.inf)
    np.minimum.at(lo, at, mjd)
    np.maximum.at(hi, at, mjd)
    cols["first_mjd"] = np.fmin(cols["first_mjd"], np.where(touched, lo, np.nan))
    cols["last_mjd"] = np.fmax(cols["last_mjd"], np.where(touched, hi, np.nan))
    by_time = np.argsort(mjd, kind="stable")  # a missing ref_id: the earliest new point's that has one
    old_ref = rows.column("ref_id").cast(pa.int64())
    ref_ok = np.asarray(old_ref.is_valid().to_numpy(zero_copy_only=False), bool)
    ref_id = np.asarray(old_ref.fill_null(0).to_numpy(), np.int64)
    new_id, new_ok = _first_ref(_take(points, by_time), at[by_time], n_obj)
    ref_id, ref_ok = np.where(ref_ok, ref_id, new_id), ref_ok | new_ok
    cols["ref_id"] = pa.array(ref_id, pa.int64(), mask=~ref_ok)
    return _table(_flag_variables(cols, variable_fap))


def needs_refresh(n: np.ndarray, n_exact: np.ndarray) -> np.ndarray:
    """Which objects need their order statistics computed again from their whole light curves.

    Those whose points have grown past :data:`REFRESH_GROWTH` times those the statistics describe.

    Parameters
    ----------
    n : numpy.ndarray
        Each object's points in its statistics, after an update.
    n_exact : numpy.ndarray
        The points its order statistics describe.

    Returns
    -------
    numpy.ndarray
        Mask (bool) of the objects to recompute.
    """
    return np.asarray(n, np.int64) > REFRESH_GROWTH * np.asarray(n_exact, np.int64)
