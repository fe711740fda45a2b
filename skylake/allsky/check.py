"""The camera model checked on every all-sky frame: has the camera moved.

A camera that is bumped, re-mounted or slowly turns puts every catalogue star a few pixels from where its model
predicts. Forced photometry then re-centroids each star only up to its limit (``recentroid_px``) and finds
nothing at the predicted places: on a copy of the clear IceAct frame shifted by 3 px the cloud fraction reads
0.995 instead of 0.02, without a word. So each frame's bright stars (``mag <= fit_vmax``, ``alt >=
fit_alt_min_deg``, S/N >= ``cloud_snr``, unflagged) give the model's offsets on that frame
(:func:`check_model`): their centroid minus prediction, its rms (the frame's ``astrometry_rms_px``), and a rigid
move (shift and rotation about the optical axis) fitted to them by least squares. The camera has moved when
the move reaches ``moved_px`` anywhere among the stars, or when more than :data:`MOVED_AT_LIMIT` of them hit the
re-centroid limit (a move larger than the limit). The frame is then refitted from the stored model
(:func:`skylake.allsky.pipeline.process_frame`).

Measured on the shared clear IceAct frame (2017-05-03): 354 bright stars, rms 0.35 px, 1 % at the limit; the
same frame shifted by 3 px: 94 % at the limit; turned by 1 degree about the axis: 68 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from astropy.table import Table

from skylake.allsky.camera import CameraModel
from skylake.allsky.photometry import FLAG_BAD, FLAG_SHIFT

__all__ = ["ModelCheck", "check_model", "refitted_move", "MOVED_AT_LIMIT", "CHECK_MIN_STARS"]

#: More than this fraction of the bright stars at the re-centroid limit: the camera moved further than the limit.
MOVED_AT_LIMIT = 0.3
#: Fewer bright stars seen than this: the model is not judged (a cloudy frame), its offsets are still given.
CHECK_MIN_STARS = 10


@dataclass(frozen=True)
class ModelCheck:
    """How the camera model fits one frame, from its bright stars' centroids.

    Attributes
    ----------
    n_stars : int
        Bright stars seen (the offsets' sample).
    rms_px : float
        Root-mean-square 2-D offset (centroid - prediction), px (NaN without stars).
    shift_x_px, shift_y_px : float
        The rigid move's shift, px (NaN with fewer than 3 stars).
    rotation_deg : float
        The rigid move's turn about the optical axis ``(x0, y0)``, deg, positive from +x towards +y.
    move_px : float
        The largest displacement the rigid move gives among the stars, px.
    at_limit : float
        Fraction of the stars whose re-centroid hit its limit.
    moved : bool
        The camera moved (``move_px`` >= the tolerance or ``at_limit`` > :data:`MOVED_AT_LIMIT`, with at least
        :data:`CHECK_MIN_STARS` stars).
    """

    n_stars: int
    rms_px: float
    shift_x_px: float
    shift_y_px: float
    rotation_deg: float
    move_px: float
    at_limit: float
    moved: bool

    def describe(self) -> str:
        """One line for the frame's note.

        Returns
        -------
        str
            E.g. ``camera moved: shift (3.0, 0.0) px, turn 1.00 deg, 94 % of 344 stars at the re-centroid limit``.
        """
        what = "camera moved" if self.moved else "camera model checked"
        return (
            f"{what}: shift ({self.shift_x_px:.1f}, {self.shift_y_px:.1f}) px, turn {self.rotation_deg:.2f} deg, "
            f"rms {self.rms_px:.2f} px, {100 * self.at_limit:.0f} % of {self.n_stars} stars at the re-centroid limit"
        )


def _bright(stars: Table, vmax: float, alt_min_deg: float, snr_min: float) -> np.ndarray:
    """The rows of the bright stars seen (the check's sample)."""
    x = np.asarray(stars["x"], float)
    ok = (np.asarray(stars["mag"], float) <= vmax) & (np.asarray(stars["alt"], float) >= alt_min_deg)
    ok &= (np.asarray(stars["flag"]) & FLAG_BAD) == 0
    ok &= np.nan_to_num(np.asarray(stars["snr"], float), nan=-1.0) >= snr_min
    return ok & np.isfinite(x) & np.isfinite(np.asarray(stars["x_pred"], float))


def check_model(
    stars: Table,
    model: CameraModel,
    *,
    vmax: float,
    alt_min_deg: float,
    snr_min: float,
    moved_px: float,
) -> ModelCheck:
    """The model's offsets on a frame from its forced photometry, and whether the camera moved.

    Parameters
    ----------
    stars : astropy.table.Table
        Forced photometry (:func:`skylake.allsky.photometry.photometer_catalog`): ``x``, ``y``, ``x_pred``,
        ``y_pred``, ``mag``, ``alt``, ``snr``, ``flag``.
    model : CameraModel
        The model the predictions came from (its optical axis is the turn's centre).
    vmax, alt_min_deg : float
        The bright stars: ``mag <= vmax`` above ``alt_min_deg``.
    snr_min : float
        ... seen at this S/N at least.
    moved_px : float
        The largest rigid displacement among the stars that is still no move, px.

    Returns
    -------
    ModelCheck
        The offsets and the verdict.
    """
    b = stars[_bright(stars, vmax, alt_min_deg, snr_min)]
    n = len(b)
    nan = float("nan")
    if n == 0:
        return ModelCheck(0, nan, nan, nan, nan, nan, 0.0, False)
    xp, yp = np.asarray(b["x_pred"], float), np.asarray(b["y_pred"], float)
    dx, dy = np.asarray(b["x"], float) - xp, np.asarray(b["y"], float) - yp
    rms = float(np.sqrt(np.mean(dx**2 + dy**2)))
    at_limit = float(np.mean((np.asarray(b["flag"]) & FLAG_SHIFT) != 0))
    if n < 3:
        return ModelCheck(n, rms, nan, nan, nan, nan, at_limit, False)
    tx, ty, turn, move = _rigid(xp - model.x0, yp - model.y0, dx, dy)
    moved = n >= CHECK_MIN_STARS and (move >= moved_px or at_limit > MOVED_AT_LIMIT)
    return ModelCheck(n, rms, tx, ty, turn, move, at_limit, moved)


def _rigid(u: np.ndarray, v: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> tuple[float, float, float, float]:
    """A small rigid move fitted to offsets at ``(u, v)`` from the axis: ``dx = tx - t v``, ``dy = ty + t u``.

    Returns ``(tx, ty, turn_deg, move)``, ``move`` the largest displacement it gives at the points, px.
    """
    n = len(u)
    zero, one = np.zeros(n), np.ones(n)
    design = np.vstack([np.c_[one, zero, -v], np.c_[zero, one, u]])
    (tx, ty, turn), *_ = np.linalg.lstsq(design, np.r_[dx, dy], rcond=None)
    move = float(np.max(np.hypot(tx - turn * v, ty + turn * u)))
    return float(tx), float(ty), math.degrees(turn), move


def refitted_move(check: ModelCheck, old: CameraModel, new: CameraModel, stars: Table) -> ModelCheck:
    """``check`` with the move between the stored model and its refit (the centroids saw at most the limit).

    Parameters
    ----------
    check : ModelCheck
        The check that found the move.
    old, new : CameraModel
        The stored model and the frame's refit.
    stars : astropy.table.Table
        The stars (``alt``, ``az``) at which the two are compared: the bright ones above the check's altitude.

    Returns
    -------
    ModelCheck
        The same verdict and offsets, the shift, turn and move those of ``new`` against ``old``.
    """
    alt, az = np.asarray(stars["alt"], float), np.asarray(stars["az"], float)
    x0, y0 = old.altaz_to_pixel(alt, az)
    x1, y1 = new.altaz_to_pixel(alt, az)
    ok = np.isfinite(x0) & np.isfinite(x1)
    if ok.sum() < 3:
        return check
    tx, ty, turn, move = _rigid(x0[ok] - old.x0, y0[ok] - old.y0, (x1 - x0)[ok], (y1 - y0)[ok])
    return replace(check, shift_x_px=tx, shift_y_px=ty, rotation_deg=turn, move_px=move)
