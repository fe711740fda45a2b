"""Committing an all-sky frame's maps with its frame row (ingest's commit, driver side).

::

    LAKE/streaks/night=YYYY-MM-DD/<batch>.parquet   one row per trail (schemas/streaks.yaml)
    LAKE/maps/night=YYYY-MM-DD/<batch>.parquet      the frame's transparency / sky-brightness pixels
    LAKE/maps/_index/<batch>.parquet                one index row per frame map (scope "frame")

The frame task (:mod:`skylake.tasks.allsky`) returns these rows in ``FrameResult.extras``; ingest stages
the streaks as it stages every per-frame table, and the maps here with their index rows, so a frame, its
streaks and its maps appear in the same commit. A frame replaced (``--redo``) loses its streaks and maps
in the replacing commit.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from skylake.allsky.pipeline import allsky_settings
from skylake.lake.log import utc_now as _now
from skylake.lake.nights import night_dir
from skylake.lake.tables import MAPS, STREAKS
from skylake.maps.store import INDEX_SCHEMA, read_index, stage_index, stage_without_maps
from skylake.schema import conform, table_schema

__all__ = [
    "frame_map_id",
    "stage_allsky",
    "stage_without_allsky",
    "read_streaks",
    "static_artefacts",
    "stage_static_artefacts",
]


def frame_map_id(frame_key: str, frame_of: str) -> str:
    """The id of a frame's all-sky map: its frame (bytes, HDU, processing) and coordinate frame.

    Parameters
    ----------
    frame_key : str
        The frame's key (its bytes, HDU and processing); its first 24 characters are used.
    frame_of : str
        The map's coordinate frame ("horizon" or "equatorial").

    Returns
    -------
    str
        ``allsky-<key[:24]>-<frame_of>``.
    """
    return f"allsky-{frame_key[:24]}-{frame_of}"


def stage_allsky(tx, results, frame_ids, nights: list, profile_name: str | None = None) -> int:
    """Stage the frame maps of ``results`` (ingested frames with ``extras[MAPS]``) in ``tx``.

    Stages the pixel rows and one index row per map. (Streaks are staged by ingest with every other
    per-frame table.)

    Parameters
    ----------
    tx : skylake.lake.transaction.Transaction
        The ingest's transaction.
    results : sequence of skylake.tasks.frame.FrameResult
        The ingested frames.
    frame_ids : sequence of int
        The frames' ids, one per result.
    nights : list
        The frames' nights, one per result.
    profile_name : str, optional
        The profile named in the index rows (default: each frame record's ``profile``).

    Returns
    -------
    int
        The number of maps staged.
    """
    pixel_parts, pixel_nights, index_rows = [], [], []
    for r, fid, night in zip(results, frame_ids, nights):
        m = (r.extras or {}).get(MAPS)
        if m is not None and len(m):
            for frame_of, g in m.groupby("frame_of", sort=True):
                map_id = frame_map_id(r.frame_key, frame_of)
                pixel_parts.append(g.assign(map_id=map_id))
                pixel_nights += [night] * len(g)
                index_rows.append(
                    {
                        "map_id": map_id,
                        "scope": "frame",
                        "night_min": night,
                        "night_max": night,
                        "frame_id": int(fid),
                        "n_frames": 1,
                        "mjd_min": r.record["mjd"],
                        "mjd_max": r.record["mjd"],
                        "nside": int(g["nside"].iloc[0]),
                        "frame_of": frame_of,
                        "profile": profile_name or r.record["profile"],
                        "refcat": "allsky",
                        "calib_keys": "",
                        "zp_clear": f"{r.record.get('allsky_zeropoint', float('nan')):.4f}",
                        "min_stars": 0,
                        "n_pixels": len(g),
                        "n_stars": int(g["n_stars"].sum()),
                        "n_sky": int(g["n_sky"].sum()),
                        "path": f"{MAPS}/{night_dir(night)}/{tx.batch_id}.parquet",
                        "batch_id": tx.batch_id,
                        "created_at": _now(),
                    }
                )
    if pixel_parts:
        pixels = pd.concat(pixel_parts, ignore_index=True)
        tx.stage_nights(
            MAPS,
            conform(pa.Table.from_pandas(pixels[table_schema(MAPS).names], preserve_index=False), MAPS),
            pixel_nights,
        )
        stage_index(tx, pa.Table.from_pylist(index_rows, schema=table_schema(INDEX_SCHEMA)).to_pandas())
    return len(index_rows)


def stage_without_allsky(tx, frame_ids: set[int], nights: set) -> None:
    """Stage the removal of the frame maps of ``frame_ids`` (frames being replaced, of ``nights``).

    Parameters
    ----------
    tx : skylake.lake.transaction.Transaction
        The ingest's transaction.
    frame_ids : set of int
        The frames being replaced.
    nights : set
        Their nights (the index partitions read).
    """
    old = read_index(tx.lake, nights)
    old = old[old["frame_id"].isin(list(frame_ids)) & (old["scope"] == "frame")]
    if len(old):
        stage_without_maps(tx, tx.lake, old)


def read_streaks(lake, nights=None) -> pd.DataFrame:
    """The streak rows (schemas/streaks.yaml, ``night`` from the partition).

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    nights : iterable, optional
        Only these nights (default: all).

    Returns
    -------
    pandas.DataFrame
        One row per streak; empty with the columns when the lake has none.
    """
    return lake.read_night_table(STREAKS, nights=nights).to_pandas()


def static_artefacts(lake, results, profile, replaced=()) -> tuple:
    """The batch's detections that are artefacts, taken out of the results' streak rows and frame records.

    Artefacts (:func:`skylake.frame.static_artefacts.find`) are on the same pixels as another of the
    batch's frames, or as one of the camera's last rows in LAKE/streaks within the window (or turned about a
    shared end within a night: ``allsky.pivot_turn_deg``); rows of the
    ``replaced`` frames (their earlier versions, going in this commit) are not compared.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake (its LAKE/streaks and frames).
    results : sequence of skylake.tasks.frame.FrameResult
        The batch's frames; their ``extras`` streak rows and records are updated in place.
    profile : skylake.profile.Profile or None
        The batch's profile (its ``static_tolerance_px``; 3 px without an all-sky profile).
    replaced : iterable of int, default ()
        Ids of the frames this commit replaces.

    Returns
    -------
    found : skylake.frame.static_artefacts.Found
        What was found.
    trails : dict
        Per result index whose streaks changed: its real trails (a Table of ``x1``, ``y1``, ``x2``,
        ``y2``, ``width``), for the writer tasks to flag its sources again.
    """
    import numpy as np
    import pyarrow.compute as pc
    from astropy.table import Table

    from skylake.frame.static_artefacts import PIVOT_WINDOW_D, WINDOW_D, Found, find
    from skylake.lake.tables import FRAMES
    from skylake.tasks.frame import frame_night

    rows = []
    for k, r in enumerate(results):
        s = (r.extras or {}).get(STREAKS)
        if s is not None and len(s):
            rows.append(
                s.assign(
                    result=k,
                    frame_id=-1,
                    night=frame_night(r.record),
                    profile=r.record["profile"],
                    instrument=r.record.get("instrument") or "",
                )
            )
    if not rows:
        return Found(artefacts=pd.DataFrame()), {}
    batch = pd.concat(rows, ignore_index=True)
    settings = allsky_settings(profile) if profile is not None and profile.is_allsky else None
    tol = settings.static_tolerance_px if settings is not None else 3.0
    turn = settings.pivot_turn_deg if settings is not None else 0.0
    window = max(WINDOW_D, PIVOT_WINDOW_D if turn > 0 else 0.0)
    lo, hi = batch["mjd"].min() - window, batch["mjd"].max() + window
    nights = sorted({n for n in batch["night"] if n}) + [None]
    earlier = lake.read_night_table(
        STREAKS, filter=(pc.field("mjd") >= lo) & (pc.field("mjd") <= hi), nights=nights
    ).to_pandas()
    if len(earlier):
        frames = lake.read_night_table(FRAMES, columns=["frame_id", "profile"], nights=nights).to_pandas()
        earlier = earlier.merge(frames, on="frame_id", how="inner")
        earlier = earlier[~earlier["frame_id"].isin(list(replaced))]  # a frame's older version is no other frame
    found = find(batch, earlier, tol, pivot_turn_deg=turn)
    trails = {}
    for k, r in enumerate(results):
        s = (r.extras or {}).get(STREAKS)
        if s is None or not len(s):
            continue
        static = np.array([(k, int(n)) in found.batch for n in s["streak"]], bool)
        if not static.any():
            continue
        kept = s[~static].reset_index(drop=True)
        kept = kept.assign(streak=np.arange(len(kept)))
        r.extras[STREAKS] = kept
        r.record["n_streaks"] = len(kept)
        trails[k] = (
            Table.from_pandas(kept[["x1", "y1", "x2", "y2", "width"]])
            if len(kept)
            else Table({c: np.zeros(0) for c in ("x1", "y1", "x2", "y2", "width")})
        )
    return found, trails


def stage_static_artefacts(tx, found, frame_ids) -> None:
    """Stage the new artefacts and the removal of the lake's streak rows that were artefacts.

    A new artefact's first frame gets its id from ``frame_ids`` when it is one of the batch's.

    Parameters
    ----------
    tx : skylake.lake.transaction.Transaction
        The ingest's transaction.
    found : skylake.frame.static_artefacts.Found
        What :func:`static_artefacts` found.
    frame_ids : sequence of int
        The batch's frame ids, one per result.
    """
    import numpy as np

    from skylake.lake import tables
    from skylake.lake.tables import STATIC_ARTEFACTS

    if found.artefacts is not None and len(found.artefacts):
        a = found.artefacts.copy()
        batch_first = a["first_result"] >= 0
        a.loc[batch_first, "frame_id"] = [int(frame_ids[k]) for k in a.loc[batch_first, "first_result"]]
        a = a.assign(batch_id=tx.batch_id)
        tables.get(STATIC_ARTEFACTS).stage(
            tx,
            conform(
                pa.Table.from_pandas(a[table_schema(STATIC_ARTEFACTS).names], preserve_index=False), STATIC_ARTEFACTS
            ),
            a["night"].tolist(),
        )
    if found.earlier:
        pairs = found.earlier

        def drop(t):
            f = t.column("frame_id").to_numpy()
            s = t.column("streak").to_numpy()
            return np.array([(int(a), int(b)) in pairs for a, b in zip(f, s)], bool)

        tables.get(STREAKS).remove_where(tx, drop)
