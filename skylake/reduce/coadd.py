"""Coadds: a night's frames of one pointing stacked onto a common WCS, stored and ingested as one more frame.

Each input is read again from its file (reduced with the same steps when its profile has a ``[reduction]``),
its background (sep) subtracted, scaled to ADU/s, and reprojected with reproject onto the first frame's grid
grown to cover them all (:func:`common_grid`); ``reproject_and_coadd`` combines them (weighted mean, weights
``1 / rms^2``), or they are stacked into a cube and its median taken. The coadd is written in ADU over the total
exposure time, so its instrumental magnitudes are on the single frames' scale and its photon noise follows the
camera's gain. Pixels covered by less than half the total weight are blank (NaN: masked at detection); pixels
saturated in any input are set to the coadd's saturation level so the stars on them are flagged. The file (and
its weight map) lives at ``LAKE/coadds/night=N/<coadd_id>.fits``; its frame row's ``coadd_of`` lists the frames
it stacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np

from skylake.lake import tables
from skylake.lake.frames import SAME_POINTING, FrameSelection, pointing_groups, select_frames
from skylake.lake.nights import night_dir
from skylake.reduce.frame_types import COADD_KEY, FRAMES_KEY
from skylake.reduce.pixels import PIXEL_COLUMNS, frame_pixels

__all__ = [
    "COADD_DIR",
    "CoaddResult",
    "pointing_groups",
    "common_grid",
    "stack",
    "coadd_night",
    "SAME_POINTING",
    "FRAME_COLUMNS",
]

log = logging.getLogger(__name__)

#: Where coadd files live, relative to the lake.
COADD_DIR = "coadds"
#: The frame columns a coadd reads: the pixels', and what picks, groups and scales the frames.
FRAME_COLUMNS = [
    *PIXEL_COLUMNS, "object", "instrument", "filter", "mjd", "exptime", "airmass", "gain", "ra_center",
    "dec_center", "nx", "pixscale", "coadd_of", "status",
]  # fmt: skip


@dataclass
class CoaddResult:
    """One coadd: its file (relative to the lake), the frames it stacks and its frame row once ingested."""

    rel: str
    frame_ids: list
    field: str
    reason: str = ""


def common_grid(wcs_list, shapes):
    """The first frame's pixel grid, grown to cover every frame: frames on it are not resampled, and frames
    dithered by whole pixels are shifted, not interpolated.

    Parameters
    ----------
    wcs_list : list of astropy.wcs.WCS
        The frames' celestial WCS.
    shapes : list of tuple of int
        Their (ny, nx).

    Returns
    -------
    wcs : astropy.wcs.WCS
        The grid's WCS.
    shape : tuple of int
        Its (ny, nx).
    """
    ref = wcs_list[0].deepcopy()
    xs, ys = [], []
    for wcs, (ny, nx) in zip(wcs_list, shapes):
        cx, cy = np.array([0.0, nx - 1, nx - 1, 0.0]), np.array([0.0, 0.0, ny - 1, ny - 1])
        px, py = ref.world_to_pixel_values(*wcs.pixel_to_world_values(cx, cy))
        xs.extend(px)
        ys.extend(py)
    x0, y0 = np.floor(min(xs) + 1e-3), np.floor(min(ys) + 1e-3)
    x1, y1 = np.ceil(max(xs) - 1e-3), np.ceil(max(ys) - 1e-3)
    ref.wcs.crpix = ref.wcs.crpix - np.array([x0, y0])
    ref.pixel_shape = None
    return ref, (int(y1 - y0) + 1, int(x1 - x0) + 1)


def stack(images, wcs_list, saturated, exptimes, method: str = "mean"):
    """Stack background-subtracted images onto the WCS that covers them all.

    Parameters
    ----------
    images : list of numpy.ndarray
        The frames (float32; NaN for masked pixels).
    wcs_list : list of astropy.wcs.WCS
        Their celestial WCS.
    saturated : list of numpy.ndarray
        Their raw saturated pixels.
    exptimes : list of float
        Their exposure times [s].
    method : str
        ``"mean"`` (weighted by 1 / rms^2) or ``"median"``.

    Returns
    -------
    data : numpy.ndarray
        The coadd in ADU per second (NaN where less than half the total weight).
    weight : numpy.ndarray
        The summed weights.
    any_saturated : numpy.ndarray
        Pixels saturated in any input.
    wcs : astropy.wcs.WCS
        The coadd's WCS.
    """
    import sep
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    if method not in ("mean", "median"):
        raise ValueError(f"method = {method!r} must be 'mean' or 'median'")
    inputs, weights = [], []
    for data, wcs, t in zip(images, wcs_list, exptimes):
        bad = ~np.isfinite(data)
        work = np.where(bad, 0.0, data).astype(np.float32)
        bkg = sep.Background(work, mask=bad if bad.any() else None)
        work = (work - bkg.back()) / np.float32(t)
        inputs.append((work, wcs))
        weights.append(np.where(bad, 0.0, (t / bkg.globalrms) ** 2).astype(np.float32))
    wcs_out, shape_out = common_grid(wcs_list, [im.shape for im in images])
    if method == "mean":  # reproject's footprint of a weighted mean is the summed weight map
        data, weight = reproject_and_coadd(
            inputs,
            wcs_out,
            shape_out=shape_out,
            input_weights=weights,
            reproject_function=reproject_interp,
            combine_function="mean",
        )
    else:  # reproject_and_coadd has no median: a cube of the reprojected frames, NaN where a frame has no data
        layers, weight = [], np.zeros(shape_out, np.float64)
        for (work, wcs), w in zip(inputs, weights):
            arr, footprint = reproject_interp((work, wcs), wcs_out, shape_out=shape_out)
            w_out = np.nan_to_num(reproject_interp((w, wcs), wcs_out, shape_out=shape_out, return_footprint=False))
            use = (footprint > 0) & (w_out > 0)
            layers.append(np.where(use, arr, np.nan).astype(np.float32))
            weight += np.where(use, w_out * footprint, 0.0)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": pixels no frame covers
            data = np.nanmedian(np.stack(layers), axis=0)
    any_saturated = np.zeros(shape_out, bool)
    for (_, wcs), sat in zip(inputs, saturated):
        if sat.any():
            s, fp = reproject_interp(
                (sat.astype(np.float32), wcs), wcs_out, shape_out=shape_out, order="nearest-neighbor"
            )
            any_saturated |= (np.nan_to_num(s) * fp) > 0.5
    weight = np.nan_to_num(np.asarray(weight, dtype=np.float64))
    data = np.asarray(data, dtype=np.float32)
    data[weight < 0.5 * weight.max()] = np.nan
    return data, weight.astype(np.float32), any_saturated, wcs_out


def _coadd_fits(data, weight, wcs, group, total_exptime: float, saturation: float):
    from astropy.io import fits
    from astropy.time import Time

    first = group.iloc[0]
    mjd = float(np.average(group["mjd"], weights=group["exptime"]))
    h = fits.Header()
    h.update(wcs.to_header())
    h["IMAGETYP"] = ("Coadd", "skylake coadd")
    h["OBJECT"] = str(first["object"] or "")
    h["INSTRUME"] = str(first["instrument"])
    h["FILTER"] = str(first["filter"])
    h["EXPTIME"] = (total_exptime, "s: the stacked frames' sum")
    h["DATE-AVG"] = Time(mjd, format="mjd", scale="utc").isot
    h["MJD-AVG"] = mjd
    h["DATE-OBS"] = Time(float(group["mjd"].min()) - first["exptime"] / 2 / 86400, format="mjd", scale="utc").isot
    h["GAIN"] = float(first["gain"])
    h["SATURATE"] = (saturation, "ADU: pixels saturated in a stacked frame")
    if group["airmass"].notna().all():
        h["AIRMASS"] = float(group["airmass"].mean())
    h[COADD_KEY] = (True, "a skylake coadd")
    h["NCOMBINE"] = len(group)
    h[FRAMES_KEY] = ",".join(str(int(f)) for f in group["frame_id"])
    image = data * np.float32(total_exptime)
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(image, header=h)]).writeto(buffer)
    weights = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(weight, header=wcs.to_header())]).writeto(weights)
    return buffer.getvalue(), weights.getvalue()


def coadd_night(lake, night: str, *, field: str | None = None, method: str = "mean", client=None) -> list:
    """Coadd each pointing of a night (of one field when given) and ingest the coadds as frames.

    Parameters
    ----------
    lake : skylake.lake.Lake
        A writable lake.
    night : str
        The night (YYYY-MM-DD).
    field : str, optional
        Only frames whose ``object`` is this.
    method : str
        ``"mean"`` (weighted) or ``"median"``.
    client : dask client, optional
        Where the coadds' ingest runs (default: this process).

    Returns
    -------
    list of CoaddResult
        One per pointing with at least two frames.

    Raises
    ------
    ValueError
        No ok frame of that night (and field), named.
    NightError
        ``night`` is not a date YYYY-MM-DD.
    """

    from skylake.pipeline import ingest
    from skylake.profile_store import frames_profile
    from skylake.runtime import dask_client

    frames = select_frames(lake, FrameSelection(night=night, single=True), FRAME_COLUMNS)
    frames = frames[(frames["status"] == "ok") & (frames["wcs_source"] != "camera")]
    if field is not None:
        frames = frames[frames["object"] == field]
    if not len(frames):
        which = f" of field {field!r}" if field else ""
        raise ValueError(f"no ok frame with a WCS on night {night}{which} to coadd")
    out = []
    for group in pointing_groups(frames):
        name = str(group["object"].iloc[0] or "field")
        if len(group) < 2:
            out.append(CoaddResult("", [int(group["frame_id"].iloc[0])], name, "one frame: nothing to stack"))
            continue
        profile = frames_profile(lake, group["profile"].iloc[0], group["pipeline_version"].iloc[0])
        images, wcs_list, saturated = [], [], []
        for row in group.itertuples():
            data, wcs, sat = frame_pixels(lake.store.location, row, profile)
            images.append(data)
            wcs_list.append(wcs)
            saturated.append(sat)
        data, weight, any_sat, wcs = stack(images, wcs_list, saturated, list(group["exptime"]), method)
        total = float(group["exptime"].sum())
        level = float(group["saturation"].min()) * len(group)
        data[any_sat & np.isfinite(data)] = np.float32(level / total)
        image_bytes, weight_bytes = _coadd_fits(data, weight, wcs, group, total, level)
        ids = [int(f) for f in group["frame_id"]]
        coadd_id = hashlib.sha256(f"{night}|{method}|{ids}".encode()).hexdigest()[:16]
        rel = f"{COADD_DIR}/{night_dir(night)}/{coadd_id}.fits"
        with lake.transaction(tables.FRAMES) as tx:
            tx.stage_file(rel, image_bytes)
            tx.stage_file(rel.replace(".fits", ".weight.fits"), weight_bytes)
            tx.commit({"coadd": rel, "frames": ids})
        log.info("coadd of %d frames of %s: %s", len(ids), name, rel)
        with dask_client("synchronous") if client is None else contextlib.nullcontext(client) as c:
            ingest(lake, [lake.path(rel)], profile, client=c, progress=False)
        out.append(CoaddResult(rel, ids, name))
    return out
