"""References in the lake: per profile, filter and pointing, the sharpest frames stacked (``skylake reference build``).

The frames of a selection are grouped by pointing (:func:`skylake.lake.frames.pointing_groups`); a group with at
least ``min_frames`` usable frames (ok, a WCS, a measured FWHM, no coadd) gets a reference of its
``max_frames`` sharpest, stacked by :func:`skylake.dia.reference.stack_reference` on the sharpest one's grid.
Each reference is one FITS file under ``LAKE/reference_images/`` and one row of ``LAKE/references``
(schemas/references.yaml), committed together. A reference is named by a digest of its frames, so building
again from the same frames finds it; other frames make a new reference beside the old, and ``skylake dia``
subtracts the newest of a pointing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from skylake.lake import tables
from skylake.lake.frames import SAME_POINTING, FrameSelection, pointing_groups, select_frames
from skylake.lake.tables import REFERENCES
from skylake.reduce.pixels import PIXEL_COLUMNS
from skylake.schema import conform

__all__ = [
    "REFERENCE_DIR",
    "ReferenceResult",
    "build_references",
    "usable_frames",
    "read_references",
    "reference_for",
    "FRAME_COLUMNS",
]

log = logging.getLogger(__name__)

#: Where reference images live, relative to the lake.
REFERENCE_DIR = "reference_images"
#: The frame columns a reference (and a difference) reads: the pixels', and what picks and groups the frames.
FRAME_COLUMNS = [
    *PIXEL_COLUMNS, "object", "instrument", "filter", "mjd", "exptime", "gain", "ra_center", "dec_center", "nx",
    "ny", "pixscale", "coadd_of", "status", "fwhm_median", "ingested_at", "night",
]  # fmt: skip


@dataclass
class ReferenceResult:
    """What building one pointing's reference did.

    Attributes
    ----------
    field : str
        The pointing's name (its sharpest frame's OBJECT).
    frame_ids : list of int
        The frames considered (stacked when built).
    reference_id : str
        The reference (empty when none was built).
    outcome : str
        ``built``, ``exists`` or ``skipped``.
    reason : str
        Why it was skipped.
    """

    field: str
    frame_ids: list
    reference_id: str = ""
    outcome: str = "skipped"
    reason: str = ""


def usable_frames(lake, selection: FrameSelection) -> pd.DataFrame:
    """The latest row of each frame a reference or a difference can use: ok, with a WCS, not a coadd.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    selection : skylake.lake.frames.FrameSelection
        Which frames.

    Returns
    -------
    pandas.DataFrame
        Their rows (:data:`FRAME_COLUMNS`).
    """
    frames = select_frames(lake, selection, FRAME_COLUMNS)
    frames = frames.sort_values("ingested_at").drop_duplicates("frame_id", keep="last")
    keep = (frames["status"] == "ok") & (frames["wcs_source"] != "camera") & frames["coadd_of"].isna()
    return frames[keep].reset_index(drop=True)


def _stack_group(group: pd.DataFrame, lake_root: str, version: int) -> tuple[dict, bytes]:
    """Stack one pointing's frames (a task): the reference's row and its FITS file."""
    from skylake.dia.reference import stack_reference, to_fits
    from skylake.lake import Lake
    from skylake.profile_store import frames_profile
    from skylake.reduce.pixels import frame_pixels

    lake = Lake.open(lake_root, catch_up=False)
    profile = frames_profile(lake, group["profile"].iloc[0], group["pipeline_version"].iloc[0])
    images, wcs_list, saturated = [], [], []
    for row in group.itertuples():
        data, wcs, sat = frame_pixels(lake_root, row, profile)
        images.append(np.asarray(data, np.float64))
        wcs_list.append(wcs)
        saturated.append(sat)
    ids = [int(f) for f in group["frame_id"]]
    ref = stack_reference(images, wcs_list, saturated, list(group["exptime"]), list(group["gain"]), frame_ids=ids)
    grid = group.iloc[0]
    row = {
        "reference_id": _reference_id(ids),
        "profile": grid["profile"],
        "instrument": grid["instrument"],
        "filter": grid["filter"],
        "object": grid["object"],
        "ra_center": float(grid["ra_center"]),
        "dec_center": float(grid["dec_center"]),
        "nx": int(images[0].shape[1]),
        "ny": int(images[0].shape[0]),
        "pixscale": float(grid["pixscale"]),
        "grid_frame_id": ids[0],
        "frame_ids": ",".join(str(f) for f in ids),
        "n_frames": len(ids),
        "fwhm": None if np.isnan(ref.fwhm) else float(ref.fwhm),
        "frames_fwhm_max": float(group["fwhm_median"].max()),
        "depth": ref.depth,
        "masked_fraction": float(ref.mask.mean()),
        "mjd_min": float(group["mjd"].min()),
        "mjd_max": float(group["mjd"].max()),
        "built_version": version,
        "night": grid["night"],
    }
    return row, to_fits(ref, {"REFID": row["reference_id"], "GRIDID": ids[0]})


def _reference_id(frame_ids: list) -> str:
    return hashlib.sha256(f"reference|{sorted(frame_ids)}".encode()).hexdigest()[:16]


def build_references(
    lake,
    selection: FrameSelection | None = None,
    *,
    min_frames: int = 5,
    max_frames: int = 10,
    runner=None,
    missing_only: bool = False,
) -> list[ReferenceResult]:
    """Build a reference for every pointing of a selection with enough usable frames, in one commit.

    Parameters
    ----------
    lake : skylake.lake.Lake
        A writable lake.
    selection : skylake.lake.frames.FrameSelection or None
        Which frames (None: every frame).
    min_frames : int
        A pointing with fewer usable frames gets no reference.
    max_frames : int
        At most this many frames are stacked, the sharpest.
    runner : skylake.runtime.Runner or None
        Where the stacks run (None: in this process).
    missing_only : bool
        Leave alone the pointings that have a reference already (the ingest chain: a reference is built once,
        not again with each sharper frame).

    Returns
    -------
    list of ReferenceResult
        One per pointing (with ``missing_only``, none for the pointings left alone).

    Raises
    ------
    ValueError
        ``min_frames`` below 3 or above ``max_frames``.
    """
    from skylake.runtime import Runner

    if not 3 <= min_frames <= max_frames:
        raise ValueError(f"need 3 <= min_frames <= max_frames, got {min_frames} and {max_frames}")
    runner = runner or Runner(None)
    frames = usable_frames(lake, selection or FrameSelection())
    frames = frames[frames["fwhm_median"].notna()]
    references = read_references(lake)
    existing = set(references["reference_id"])
    results, todo = [], []
    for group in pointing_groups(frames) if len(frames) else []:
        if missing_only and len(references) and reference_for(references, group.iloc[0]) is not None:
            continue
        best = group.sort_values(["fwhm_median", "frame_id"]).head(max_frames)
        name = str(best["object"].iloc[0] or "field")
        ids = [int(f) for f in best["frame_id"]]
        if len(best) < min_frames:
            results.append(ReferenceResult(name, ids, reason=f"{len(best)} usable frames, {min_frames} needed"))
        elif _reference_id(ids) in existing:
            results.append(ReferenceResult(name, ids, _reference_id(ids), "exists"))
        else:
            todo.append(best)
            results.append(ReferenceResult(name, ids, _reference_id(ids), "built"))
    if not todo:
        return results
    version = lake.log.latest_version()
    rows = []
    with lake.transaction(REFERENCES) as tx:
        tx.runner = runner
        for row, data in runner.map(_stack_group, todo, window=max(1, len(todo)), lake_root=lake.store.location,
                                    version=version):  # fmt: skip
            row["path"] = f"{REFERENCE_DIR}/{row['reference_id']}.fits"
            tx.stage_file(row["path"], data)
            rows.append(row)
        table = pd.DataFrame(rows)
        nights = table.pop("night").tolist()
        tables.get(REFERENCES).stage(tx, conform(pa.Table.from_pandas(table, preserve_index=False), REFERENCES),
                                     nights)  # fmt: skip
        tx.commit({"references": [r["reference_id"] for r in rows]})
    for row in rows:
        log.info("reference %s: %d frames of %s", row["reference_id"], row["n_frames"], row["object"])
    return results


def read_references(lake) -> pd.DataFrame:
    """Every reference of the lake (schemas/references.yaml), with its ``night``.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.

    Returns
    -------
    pandas.DataFrame
        One row per reference.
    """
    return tables.get(REFERENCES).read(lake).to_pandas()


def reference_for(references: pd.DataFrame, frame) -> pd.Series | None:
    """The newest reference of a frame's profile, instrument, filter and pointing.

    Parameters
    ----------
    references : pandas.DataFrame
        The lake's references (:func:`read_references`).
    frame : pandas.Series or dict
        The frame's row (``profile``, ``instrument``, ``filter``, ``ra_center``, ``dec_center``, ``nx``,
        ``pixscale``).

    Returns
    -------
    pandas.Series or None
        The reference's row, None when none covers the frame.
    """
    if not len(references):
        return None
    same = references[
        (references["profile"] == frame["profile"])
        & (references["instrument"] == frame["instrument"])
        & (references["filter"] == frame["filter"])
    ]
    if not len(same):
        return None
    from astropy.coordinates import angular_separation

    distance = np.degrees(
        angular_separation(
            *np.radians([frame["ra_center"], frame["dec_center"]]),
            np.radians(same["ra_center"].to_numpy(float)),
            np.radians(same["dec_center"].to_numpy(float)),
        )
    )
    near = same[distance < SAME_POINTING * frame["nx"] * frame["pixscale"] / 3600.0]
    if not len(near):
        return None
    return near.sort_values(["built_version", "mjd_max"]).iloc[-1]
