"""Checking objects against injected truth: whether variable stars of known amplitude stand out.

Used by ``skylake demo`` (its synthetic night's variables) and the tests. A variable "stands out"
when its object ranks in the top :data:`TOP_FRACTION` of all well-sampled objects (``n`` at least
half the frames) by ``chi2_dof`` and by ``stetson_j``. Not the very top on images: blends, saturated
stars, faint stars whose Kron aperture swallows a neighbour and stars at a cloud's edge in frames
still calibrated ok scatter too, and with the tiny errors of bright stars reach large chi2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from skylake.objects.files import objects_dataset
from skylake.objects.query import cone_objects, light_curve, plot_light_curve

__all__ = [
    "MATCH_ARCSEC",
    "RANKED",
    "TOP_FRACTION",
    "object_table",
    "nearest_objects",
    "variable_ranks",
    "check_variables",
]


MATCH_ARCSEC = 3.0
RANKED = ("chi2_dof", "stetson_j")
TOP_FRACTION = 0.05


def object_table(lake) -> pd.DataFrame:
    """Every object's row without its light curve (``ref_id`` as nullable Int64: ids beyond 2**53 stay exact).

    Parameters
    ----------
    lake : Lake or str
        The lake (opened if a path or URL).

    Returns
    -------
    pandas.DataFrame
        One row per object.
    """
    dataset = objects_dataset(lake)
    table = dataset.to_table(columns=[n for n in dataset.schema.names if n != "lc"])
    return table.to_pandas().assign(
        ref_id=table.column("ref_id").to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    )


def nearest_objects(lake, ra, dec, radius_arcsec: float = MATCH_ARCSEC) -> np.ndarray:
    """The ``object_id`` of the nearest object within ``radius_arcsec`` of each position (0 where none).

    Parameters
    ----------
    lake : Lake or str
        The lake (opened if a path or URL).
    ra, dec : array_like of float
        The positions [deg].
    radius_arcsec : float, optional
        The match radius [arcsec].

    Returns
    -------
    numpy.ndarray
        The object id for each position (int64; 0 where none is within the radius).
    """
    out = np.zeros(len(ra), dtype=np.int64)
    for k, (r, d) in enumerate(zip(ra, dec)):
        hit = cone_objects(lake, float(r), float(d), radius_arcsec, columns=["object_id"])
        if hit.num_rows:
            out[k] = hit.column("object_id")[0].as_py()
    return out


def variable_ranks(objects: pd.DataFrame, variable_ids, min_points: int) -> pd.DataFrame:
    """Rank (1 = most variable) of each object in ``variable_ids`` by each of :data:`RANKED`.

    Among the objects with at least ``min_points`` points (NaN rank when its object is not among them).

    Parameters
    ----------
    objects : pandas.DataFrame
        Every object's row (:func:`object_table`).
    variable_ids : array_like of int
        The objects to rank.
    min_points : int
        The fewest points an object needs to be ranked.

    Returns
    -------
    pandas.DataFrame
        One row per id of ``variable_ids``: ``object_id`` and ``rank_<stat>`` for each of :data:`RANKED`.
    """
    pool = objects[objects["n"] >= min_points]
    out = pd.DataFrame({"object_id": np.asarray(variable_ids, dtype=np.int64)})
    for stat in RANKED:
        rank = pool[stat].rank(ascending=False, method="min")
        out[f"rank_{stat}"] = pd.Series(rank.to_numpy(), index=pool["object_id"]).reindex(out["object_id"]).to_numpy()
    return out


def check_variables(lake, stars: pd.DataFrame, n_frames: int, out_dir=None) -> dict:
    """Find the objects of ``stars``, rank the variables, and write each variable's light curve.

    Parameters
    ----------
    lake : Lake or str
        The lake (opened if a path or URL).
    stars : pandas.DataFrame
        The injected stars: ra, dec [deg], is_variable, amplitude [mag].
    n_frames : int
        Frames with calibrated points; with fewer than 3 nothing can be ranked (``rankable``).
    out_dir : str or os.PathLike, optional
        Where to write each variable's light curve as CSV and PNG (default: nothing is written).

    Returns
    -------
    dict
        The numbers the demo prints (``variables``, ``found``, ``ranks_chi2``, ``ranks_stetson_j``,
        ``stand_out``, ...) and the PNG files written (``files``).
    """
    variables = stars[stars["is_variable"]].reset_index(drop=True)
    ids = nearest_objects(lake, variables["ra"], variables["dec"])
    objects = object_table(lake)
    ranks = variable_ranks(objects, ids, max(3, n_frames // 2))
    found = objects.set_index("object_id").reindex(ids)
    written = []
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for k, row in variables.iterrows():
            if ids[k] == 0:
                continue
            points = light_curve(lake, row["ra"], row["dec"], MATCH_ARCSEC)
            points = points[points["object_id"] == ids[k]]
            stem = out_dir / f"variable_{k + 1}_{ids[k]}"
            points.to_csv(f"{stem}.csv", index=False)
            written.append(plot_light_curve(points, f"{stem}.png"))
    min_points = max(3, n_frames // 2)
    top = max(len(variables), TOP_FRACTION * len(objects[objects["n"] >= min_points]))
    # the best-ranked object by Stetson J that is none of the variables: the variables rank first when
    # it comes after all of them
    pool = objects[(objects["n"] >= min_points) & ~objects["object_id"].isin(ids)]
    constant_j = pool["stetson_j"].dropna()
    first_constant = (
        int((objects.loc[objects["n"] >= min_points, "stetson_j"] > constant_j.max()).sum() + 1)
        if len(constant_j)
        else 0
    )
    return {
        "variables": len(variables),
        "found": int((ids != 0).sum()),
        "objects": len(objects),
        "ranked": int((objects["n"] >= max(3, n_frames // 2)).sum()),
        "ranks_chi2": ranks["rank_chi2_dof"].tolist(),
        "ranks_stetson_j": ranks["rank_stetson_j"].tolist(),
        "top": top,
        "rankable": n_frames >= 3,
        "first_constant_rank": first_constant,
        "variables_first": n_frames >= 3 and bool((ranks["rank_stetson_j"] <= len(variables)).all()),
        "stand_out": n_frames >= 3 and bool((ranks[["rank_chi2_dof", "rank_stetson_j"]] <= top).all().all()),
        "amplitude_ratio": (found["amplitude_clip"].to_numpy() / variables["amplitude"].to_numpy()).tolist(),
        "files": written,
        **_honesty(pool, objects, ids, min_points),
    }


def _honesty(pool: pd.DataFrame, objects: pd.DataFrame, ids, min_points: int) -> dict:
    """Whether the errors are honest: the median chi2/dof of the constant objects per magnitude bin (bins of 10
    or more), how many of them the noise model's false-alarm probability flags ``variable``, how many of the
    variables it flags, and whether the report's order (fap, then chi2/dof) puts the variables first."""
    ranked = objects[objects["n"] >= min_points].sort_values(["fap", "chi2_dof"], ascending=[True, False])
    first = set(ranked["object_id"].head(len(ids)))
    bins = pool.groupby(np.floor(pool["median_mag"]))["chi2_dof"].agg(["median", "size"])
    bins = bins[bins["size"] >= 10]
    return {
        "chi2_by_mag": {int(k): round(float(v), 3) for k, v in bins["median"].items()},
        "constant_flagged": int(pool["variable"].sum()),
        "constant_ranked": len(pool),
        "variables_flagged": int(objects.set_index("object_id").reindex(ids)["variable"].fillna(False).sum()),
        "report_starts_with_variables": first == set(int(i) for i in ids),
    }
