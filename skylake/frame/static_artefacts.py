"""Static artefacts: what the streak finder sees at the same pixels on frames of one camera taken close in time.

A satellite or an aircraft crosses a camera's field once; a reflection at the lens rim, a bright sensor row or a
fixed light stays where it is, frame after frame. So a detection is an artefact, not a trail, when another
frame of the same camera within :data:`WINDOW_D` of it has one on the same pixels
(:func:`skylake.frame.streaks.same_pixels`, both ends within ``allsky.static_tolerance_px``), or one within
:data:`PIVOT_WINDOW_D` turned about a shared point (:func:`skylake.frame.streaks.same_pivot`, ``allsky.pivot_turn_deg``:
the lit edge of a telescope's tube slewing on its mount). The lake keeps a
camera's artefacts (LAKE/static_artefacts, schemas/static_artefacts.yaml):

* a frame task reads them (:func:`known`) and leaves detections on their pixels out before anything is flagged;
* a commit compares the batch's new detections with each other and with the camera's last ones in the lake
  (:func:`find`): repeats become new artefacts, their rows never reach LAKE/streaks, the sources the batch's
  frames flagged ON_STREAK for them are flagged again from the real trails only (the writer tasks), and the
  lake's earlier rows of them are removed.

One thing is not undone: sources of frames committed by an earlier batch, flagged for a detection that only a
later batch proved static, keep ON_STREAK (their files are not rewritten for it; ``ingest --redo`` of those
frames clears it). Batches of a night's frames together see their artefacts at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from skylake.frame.streaks import same_pivot, same_pixels, union_find

__all__ = ["WINDOW_D", "PIVOT_WINDOW_D", "known", "find", "Found", "GEOMETRY"]

#: Two detections at the same pixels this close in time (days) are one artefact.
WINDOW_D = 1.0 / 24.0
#: Two detections turned about a shared end this close in time (days, a night) are one structure.
PIVOT_WINDOW_D = 0.5
GEOMETRY = ["x1", "y1", "x2", "y2"]


def known(lake_root: str | None, profile: str) -> list[dict]:
    """Read the artefacts the lake knows for ``profile`` (geometry and width); none without a lake.

    Parameters
    ----------
    lake_root : str or None
        The lake's location; None (or empty) when there is no lake.
    profile : str
        The profile's name, whose artefacts are read.

    Returns
    -------
    artefacts : list of dict
        One mapping per artefact: :data:`GEOMETRY` (``x1``, ``y1``, ``x2``, ``y2``), ``width``, ``profile`` and
        ``last_mjd`` (when it was last seen). Empty without a lake or when the lake has no LAKE/static_artefacts yet.
    """
    if not lake_root:
        return []
    from skylake.lake import Lake
    from skylake.lake.tables import STATIC_ARTEFACTS

    lake = Lake.open(lake_root, catch_up=False)
    import pyarrow.compute as pc

    rows = lake.read_night_table(
        STATIC_ARTEFACTS, columns=GEOMETRY + ["width", "profile", "last_mjd"], filter=pc.field("profile") == profile
    ).to_pandas()
    return rows.to_dict("records")


@dataclass
class Found:
    """What :func:`find` decided for a batch.

    Attributes
    ----------
    artefacts : DataFrame
        New artefacts, one row each (schemas/static_artefacts.yaml less ``batch_id``, plus ``night`` and, when
        any was found, ``first_result``: the batch index of its first frame, -1 when that frame is the lake's).
    batch : set of (int, int)
        (result index, streak number) of the batch's detections that are artefacts.
    earlier : set of (int, int)
        (frame_id, streak) of rows in LAKE/streaks that are.
    """

    artefacts: pd.DataFrame
    batch: set = field(default_factory=set)
    earlier: set = field(default_factory=set)


def find(
    batch: pd.DataFrame,
    earlier: pd.DataFrame,
    tolerance_px: float,
    window_d: float = WINDOW_D,
    pivot_turn_deg: float = 0.0,
    pivot_window_d: float = PIVOT_WINDOW_D,
) -> Found:
    """Detections on the same pixels on two or more frames within ``window_d`` of each other (or turned about a
    shared end within ``pivot_window_d``).

    Parameters
    ----------
    batch : DataFrame
        The batch's detections: ``result`` (index of the frame in the batch), ``streak``, ``mjd``, ``frame_id``
        (may be -1: ids are not allocated yet), ``night``, ``profile``, ``instrument`` and :data:`GEOMETRY`,
        ``length``, ``width``.
    earlier : DataFrame
        The lake's rows of LAKE/streaks of the same cameras near in time: ``frame_id``, ``streak``, ``mjd``,
        ``profile`` and the geometry.
    tolerance_px : float
        How near (px) both ends of each detection must lie to the other's segment to be on the same pixels
        (:func:`skylake.frame.streaks.same_pixels`).
    window_d : float
        Largest time between two detections of one artefact, days.
    pivot_turn_deg : float, default 0
        Two detections, an end of one on the other (within ``tolerance_px``), turned by at most this are one structure
        (:func:`skylake.frame.streaks.same_pivot`); 0: not looked for.
    pivot_window_d : float
        Largest time between two such detections, days.

    Returns
    -------
    found : Found
        The new artefacts and the batch's and the lake's detections that are artefacts; all empty when the
        batch has no detections. Two rows of the lake are never compared with each other.
    """
    cols = [
        "profile",
        "instrument",
        "frame_id",
        *GEOMETRY,
        "length",
        "width",
        "n_frames",
        "first_mjd",
        "last_mjd",
        "night",
    ]
    b = batch.assign(origin="batch", frame=batch["result"].map(lambda r: ("batch", int(r))))
    e = earlier.assign(origin="earlier", frame=earlier["frame_id"].map(lambda f: ("lake", int(f))))
    allrows = pd.concat([b, e], ignore_index=True) if len(e) else b.reset_index(drop=True)
    found = Found(artefacts=pd.DataFrame(columns=cols))
    if len(b) == 0:
        return found
    n = len(allrows)
    records = allrows.to_dict("records")
    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            a, c = records[i], records[j]
            if a["profile"] != c["profile"] or a["frame"] == c["frame"]:
                continue
            if a["origin"] == c["origin"] == "earlier":
                continue  # the lake's own rows were decided when they were committed
            dt = abs(a["mjd"] - c["mjd"])
            if (dt <= window_d and same_pixels(a, c, tolerance_px)) or (
                dt <= pivot_window_d and same_pivot(a, c, tolerance_px, pivot_turn_deg)
            ):
                pairs.append((i, j))
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(union_find(n, pairs)):
        groups.setdefault(g, []).append(i)
    rows = []
    for members in groups.values():
        frames = {records[k]["frame"] for k in members}
        if len(frames) < 2:
            continue
        for k in members:
            r = records[k]
            (found.batch if r["origin"] == "batch" else found.earlier).add(
                (int(r["result"]), int(r["streak"]))
                if r["origin"] == "batch"
                else (int(r["frame_id"]), int(r["streak"]))
            )
        g = allrows.iloc[members]
        # one orientation for the median of the ends: flip members whose first end is nearer the other's second
        ref = g.iloc[0]
        xy = g[GEOMETRY].to_numpy(float, copy=True)
        flip = np.hypot(xy[:, 0] - ref["x1"], xy[:, 1] - ref["y1"]) > np.hypot(
            xy[:, 2] - ref["x1"], xy[:, 3] - ref["y1"]
        )
        xy[flip] = xy[flip][:, [2, 3, 0, 1]]
        x1, y1, x2, y2 = np.median(xy, axis=0)
        first = g.sort_values("mjd").iloc[0]
        rows.append(
            {
                "profile": first["profile"],
                "instrument": first.get("instrument", ""),
                "frame_id": int(first["frame_id"]),
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "length": float(np.hypot(x2 - x1, y2 - y1)),
                "width": float(g["width"].max()),
                "n_frames": len(frames),
                "first_mjd": float(g["mjd"].min()),
                "last_mjd": float(g["mjd"].max()),
                "night": first.get("night"),
                "first_result": int(first["result"]) if first["origin"] == "batch" else -1,
            }
        )
    found.artefacts = pd.DataFrame(rows, columns=cols + ["first_result"])
    return found
