"""How precise a lake's light curves are.

The scatter of the brightest stars over a set of frames, for each light-curve version, beside a plain median
ensemble made from the same points (the yardstick any relative calibration must beat). Used by
tests/test_lightcurve_real.py and benchmarks/precision.py.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["frame_points", "brightest_scatter", "plain_median_ensemble"]


def frame_points(lake, frame_ids) -> pd.DataFrame:
    """The unsaturated light-curve points of ``frame_ids``.

    Every partition of LAKE/lightcurves is read: for a test or a benchmark, not for an archive.

    Parameters
    ----------
    lake : Lake
        The lake whose LAKE/lightcurves is read.
    frame_ids : iterable of int
        The frames whose points are kept.

    Returns
    -------
    DataFrame
        The light-curve points of those frames without the ``SATURATED`` flag.
    """
    import pyarrow.dataset as ds

    from skylake.frame.extract import SATURATED
    from skylake.lake.tables import LIGHTCURVES, get

    lc = (
        ds.dataset(
            lake.path(f"{get(LIGHTCURVES).location}/dataset"),
            format="parquet",
            partitioning="hive",
            filesystem=lake.store.arrow_fs,
        )
        .to_table()
        .to_pandas()
    )
    return lc[lc["frame_id"].isin(list(frame_ids)) & ((lc["flags"] & SATURATED) == 0)]


def plain_median_ensemble(points: pd.DataFrame) -> pd.Series:
    """The scatter of each object in a plain median ensemble of ``mag_zp``.

    Per object on every frame, the std of ``mag_zp`` after each frame's offset, the median over those
    objects of their deviations from their own medians (no weights, no spatial term, no clipping).

    Parameters
    ----------
    points : DataFrame
        Light-curve points with ``object_id``, ``frame_id`` and ``mag_zp``.

    Returns
    -------
    Series
        Indexed by ``object_id``: the std of the object's corrected ``mag_zp``, for the objects on every frame.
    """
    frames = points["frame_id"].nunique()
    n = points.groupby("object_id")["mag_zp"].count()
    full = points[points["object_id"].isin(n.index[n == frames])]
    m = full.pivot_table(index="object_id", columns="frame_id", values="mag_zp")
    offsets = (m - m.median(axis=1).to_numpy()[:, None]).median(axis=0)
    return (m - offsets.to_numpy()[None, :]).std(axis=1)


def brightest_scatter(points: pd.DataFrame, n_stars: int = 20, min_points: int | None = None) -> pd.DataFrame:
    """The brightest objects' scatter in each light-curve version and in the plain median ensemble.

    The ``n_stars`` brightest objects (by mean ``mag_zp``) on at least ``min_points`` of the frames (default
    all but one), with their std in each version and in the plain median ensemble (``plain``, NaN for an
    object not on every frame).

    Parameters
    ----------
    points : DataFrame
        Light-curve points with ``object_id``, ``frame_id``, ``mag``, ``mag_zp``, ``mag_epd`` and ``mag_tfa``.
    n_stars : int
        How many objects at most.
    min_points : int, optional
        Objects with fewer points are left out; default the number of frames less one.

    Returns
    -------
    DataFrame
        Indexed by ``object_id``, brightest first: ``n`` (points), ``mean`` (mean ``mag_zp``), the std of
        ``mag_zp``, ``mag``, ``mag_epd`` and ``mag_tfa``, and ``plain``.
    """
    frames = points["frame_id"].nunique()
    min_points = frames - 1 if min_points is None else min_points
    g = points.groupby("object_id")
    table = pd.DataFrame({"n": g["mag"].count(), "mean": g["mag_zp"].mean()})
    for c in ("mag_zp", "mag", "mag_epd", "mag_tfa"):
        table[c] = g[c].std()
    table = table[table["n"] >= min_points].sort_values("mean").head(n_stars)
    table["plain"] = plain_median_ensemble(points).reindex(table.index)
    return table
