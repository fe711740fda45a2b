"""All-sky cameras' foreground masks in the lake: learned from a period's clear frames, one per camera and period.

``skylake camera mask LAKE --profile P [--night N | --since A --until B]`` reads the profile's frames of the
selection (ok, placed by the camera model), learns the mask from the clear ones
(:func:`skylake.allsky.foreground.learn_mask`) and commits one row of LAKE/camera_masks (schemas/camera_masks.yaml)
with its FITS image under LAKE/:data:`MASK_DIR`/. The mask is named by its frames and settings, so building
again from the same frames finds it. Frames ingested afterwards use the newest mask whose period began at or
before them (:func:`skylake.allsky.foreground.lake_mask`): cloud fraction, forced photometry, maps and trails
leave its pixels out. Frames ingested before keep their products until ``ingest --redo``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from skylake.allsky.foreground import MASK_DIR, STRUCTURE, UNSEEN, learn_mask, mask_to_fits
from skylake.lake import tables
from skylake.lake.frames import FrameSelection, select_frames
from skylake.lake.log import utc_now
from skylake.lake.tables import CAMERA_MASKS
from skylake.reduce.pixels import PIXEL_COLUMNS
from skylake.schema import conform

__all__ = ["MaskResult", "build_mask", "read_masks"]

log = logging.getLogger(__name__)

_FRAME_COLUMNS = [*PIXEL_COLUMNS, "instrument", "mjd", "status", "ingested_at", "night", "nx", "ny"]


@dataclass
class MaskResult:
    """What building a camera's mask did.

    Attributes
    ----------
    mask_id : str
        The mask (empty when none was built).
    outcome : str
        ``built`` or ``exists``.
    row : dict
        Its LAKE/camera_masks row.
    """

    mask_id: str
    outcome: str
    row: dict


def _mask_id(profile: str, frame_ids, versions, settings, model) -> str:
    """The mask's name: its frames (and their processing), every [allsky] setting and the camera model."""
    keys = json.dumps({"settings": vars(settings), "model": model.to_dict()}, sort_keys=True, default=str)
    text = f"mask|{profile}|{sorted(int(f) for f in frame_ids)}|{sorted(set(map(str, versions)))}|{keys}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_masks(lake, profile: str | None = None) -> pd.DataFrame:
    """The lake's camera masks (schemas/camera_masks.yaml) with their ``night``, oldest period first.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    profile : str, optional
        Only this profile's.

    Returns
    -------
    pandas.DataFrame
        One row per mask; empty with the columns when there is none.
    """
    import pyarrow.compute as pc

    flt = pc.field("profile") == profile if profile else None
    rows = tables.get(CAMERA_MASKS).read(lake, filter=flt).to_pandas()
    return rows.sort_values(["valid_from", "created_at"]).reset_index(drop=True) if len(rows) else rows


def build_mask(lake, profile_name: str, selection: FrameSelection | None = None) -> MaskResult:
    """Learn the foreground mask of a profile's camera from a selection of its frames, and commit it.

    Parameters
    ----------
    lake : skylake.lake.Lake
        A writable lake.
    profile_name : str
        The all-sky camera's profile (its frames in the lake; their stored profile gives the model).
    selection : skylake.lake.frames.FrameSelection, optional
        Which frames (default: all of the profile's).

    Returns
    -------
    MaskResult
        The mask built or found.

    Raises
    ------
    ValueError
        The profile has no frames in the selection, is no all-sky camera, or too few of its frames are clear.

    Notes
    -----
    At most ``allsky.mask_max_frames`` frames are read, spread evenly in time over the selection; each one's
    ratio to its sky is kept (float32) until the median is taken.
    """
    from astropy.time import Time

    from skylake.allsky.camera import camera_of
    from skylake.allsky.pipeline import allsky_settings
    from skylake.profile_store import frames_profile
    from skylake.reduce.pixels import frame_pixels
    from skylake.tasks.allsky import bright_stars, catalog_source

    frames = select_frames(lake, selection or FrameSelection(), _FRAME_COLUMNS)
    frames = frames[frames["profile"] == profile_name]
    frames = frames.sort_values("ingested_at").drop_duplicates("frame_id", keep="last")
    frames = frames[(frames["status"] == "ok") & (frames["wcs_source"] == "camera")].sort_values("mjd")
    if not len(frames):
        raise ValueError(f"no frame of profile {profile_name!r} placed by its camera model (status ok) selected")
    profile = frames_profile(lake, profile_name, frames["pipeline_version"].iloc[-1])
    if not profile.is_allsky:
        raise ValueError(f"profile {profile_name!r} has no [camera] model: a foreground mask is for all-sky cameras")
    settings = allsky_settings(profile)
    model, site = camera_of(profile)
    catalog = bright_stars(catalog_source(profile, lake.store.location))
    if len(frames) > settings.mask_max_frames:  # spread evenly in time: one pass, a bounded memory
        pick = np.unique(np.linspace(0, len(frames) - 1, int(settings.mask_max_frames)).round().astype(int))
        frames = frames.iloc[pick]
    ids = [int(f) for f in frames["frame_id"]]
    mask_id = _mask_id(profile_name, ids, frames["pipeline_version"], settings, model)
    existing = read_masks(lake, profile_name)
    if len(existing) and mask_id in set(existing["mask_id"]):
        row = existing[existing["mask_id"] == mask_id].iloc[-1].to_dict()
        return MaskResult(mask_id, "exists", row)
    version = lake.log.latest_version()

    def images():
        """Each frame's pixels and time, read one at a time.

        Yields
        ------
        tuple
            The image (ADU) and its mid-exposure time.
        """
        for row in frames.itertuples():
            data, _, _ = frame_pixels(lake.store.location, row, profile, wcs=False)
            yield np.asarray(data, float), Time(row.mjd, format="mjd", scale="utc")

    fm = learn_mask(images(), model, site, catalog, settings)
    sky = ~((fm.bits & 1) > 0)
    row = {
        "mask_id": mask_id,
        "profile": profile_name,
        "instrument": str(frames["instrument"].iloc[0] or ""),
        "valid_from": float(frames["mjd"].min()),
        "mjd_min": float(frames["mjd"].min()),
        "mjd_max": float(frames["mjd"].max()),
        "frame_ids": ",".join(str(f) for f in ids),
        "n_frames": fm.n_frames,
        "n_cloudy": int(fm.notes["frames_cloudy"]),
        "nx": int(fm.bits.shape[1]),
        "ny": int(fm.bits.shape[0]),
        "masked_fraction": fm.fraction(STRUCTURE | UNSEEN, within=sky),
        "structure_fraction": fm.fraction(STRUCTURE, within=sky),
        "unseen_fraction": fm.fraction(UNSEEN, within=sky),
        "path": f"{MASK_DIR}/{mask_id}.fits",
        "built_version": version,
        "created_at": utc_now().isoformat(),
    }
    night = frames["night"].iloc[0]
    with lake.transaction(CAMERA_MASKS) as tx:
        tx.stage_file(row["path"], mask_to_fits(fm, {"MASKID": mask_id, "PROFILE": profile_name}))
        tables.get(CAMERA_MASKS).stage(
            tx, conform(pa.Table.from_pylist([row]), CAMERA_MASKS), [None if pd.isna(night) else night]
        )
        tx.commit({"camera_masks": [mask_id]})
    log.info("camera mask %s of %s: %d clear frames, %.1f %% of the sky masked", mask_id, profile_name,
             fm.n_frames, 100 * row["masked_fraction"])  # fmt: skip
    return MaskResult(mask_id, "built", row)
