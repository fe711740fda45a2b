"""Find an all-sky camera's model from nothing but its lens projection and its site: zenith pixel, rotation,
parity and the focal length in pixels, by voting (pure functions).

Around the right zenith pixel ``(x0, y0)`` a detection at distance ``r`` and position angle ``psi`` and the
catalogue star at zenith angle ``theta``, azimuth ``az`` it shows obey ``ln r = ln s + ln g(theta)`` and
``psi = parity * az + rotation`` (:mod:`skylake.allsky.camera`: ``g`` is the projection for a unit focal length,
``s`` the focal length in pixels). So for a trial zenith every (detection, star) pair votes for one
``(ln s, rotation)`` cell; the true pairs pile up in one cell, the rest spread over all of them. The zenith is
searched over the whole image (a coarse grid, then finer around the best), both parities, and any scale whose
horizon circle is between ``scale_range`` times the image's half-diagonal; the scale and rotation come out of the
vote. :func:`skylake.allsky.fit.fit_camera` then refines everything by least squares.

A vote is significant against what chance gives: every trial zenith has a best cell, almost all of them by
chance alone (thousands of trials, tens of thousands of cells each), so the winner is compared with the
median best count of trials away from it (:attr:`SearchResult.significance`: their ratio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SearchResult", "search_model", "unit_radius", "LN_STEP", "ROT_STEP_DEG"]

#: Vote cells: ln(s) step (2 %) and rotation step (deg).
LN_STEP = 0.02
ROT_STEP_DEG = 1.5


def unit_radius(projection: str, theta_rad: np.ndarray) -> np.ndarray:
    """``g(theta)``: the projection's distance from the axis for a unit focal length.

    Parameters
    ----------
    projection : str
        The lens projection (:data:`skylake.allsky.camera.PROJECTIONS` or an alias).
    theta_rad : numpy.ndarray
        Angles from the axis, rad.

    Returns
    -------
    numpy.ndarray
        ``g(theta)``, without distortion.
    """
    from skylake.allsky.camera import CameraModel

    model = CameraModel(
        projection=projection,
        focal_length_mm=1.0,
        pixel_size_mm=1.0,
        x0=0.0,
        y0=0.0,
        theta_max_deg=89.0 if projection in ("gnomonic", "orthographic") else 90.0,
    )
    g, _ = model._ideal(np.asarray(theta_rad, float))
    return g


@dataclass
class SearchResult:
    """The best vote: the model's geometry and how strongly the sky voted for it.

    Attributes
    ----------
    x0, y0 : float
        Zenith pixel.
    f_px : float
        Focal length in pixels (``s``).
    rotation_deg : float
        Rotation, deg in [-180, 180) (see :mod:`skylake.allsky.camera`).
    parity : int
        Parity, +1 or -1.
    votes : int
        Pairs in the winning 2 x 2 cells (every detection against every star).
    chance : float
        What chance gives a trial: the median best count of 64 trial zenith pixels away from the winner's
        (every detection against every star, the winner's parity).
    trials : int
        Zenith pixels and parities tried.
    """

    x0: float
    y0: float
    f_px: float
    rotation_deg: float
    parity: int
    votes: int
    chance: float
    trials: int

    @property
    def significance(self) -> float:
        """The winning count over what chance gives a trial.

        Returns
        -------
        float
            ``votes / max(chance, 1)``.
        """
        return self.votes / max(self.chance, 1.0)


def _vote(xd, yd, ln_g, az, x0, y0, parity, ln_lo, ln_hi, r_min):
    """The best (ln s, rotation) cell of one trial zenith: (votes, chance, ln s, rotation deg)."""
    dx, dy = x0 - xd, y0 - yd
    r = np.hypot(dx, dy)
    use = r > r_min
    if use.sum() < 3:
        return 0, 0.0, 0.0, 0.0
    ln_r = np.log(r[use])
    psi = np.degrees(np.arctan2(dx[use], dy[use]))
    u = (ln_r[:, None] - ln_g[None, :]).ravel()
    v = np.mod(psi[:, None] - parity * az[None, :], 360.0).ravel()
    keep = (u >= ln_lo) & (u < ln_hi)
    nu = int(math.ceil((ln_hi - ln_lo) / LN_STEP))
    nv = int(round(360.0 / ROT_STEP_DEG))
    iu = ((u[keep] - ln_lo) / LN_STEP).astype(np.int64)
    iv = (v[keep] / ROT_STEP_DEG).astype(np.int64) % nv
    h = np.bincount(iu * nv + iv, minlength=nu * nv).reshape(nu, nv).astype(np.int32)
    block = h + np.roll(h, -1, axis=1)  # rotation wraps
    block = block[:-1] + block[1:]
    k = int(np.argmax(block))
    i, j = divmod(k, nv)
    chance = 4.0 * keep.sum() / (nu * nv)
    # the cell's own pairs give the centre of the peak
    sel = (iu >= i) & (iu <= i + 1) & (((iv - j) % nv) <= 1)
    uu, vv = u[keep][sel], v[keep][sel]
    ln_s = float(np.median(uu)) if uu.size else ln_lo + (i + 1) * LN_STEP
    rot = float(np.degrees(np.angle(np.mean(np.exp(1j * np.radians(vv)))))) if vv.size else (j + 1) * ROT_STEP_DEG
    return int(block.flat[k]), float(chance), ln_s, rot


def search_model(
    xd,
    yd,
    alt,
    az,
    shape,
    projection: str,
    *,
    parities=(1, -1),
    scale_range=(0.25, 2.0),
    n_detections: int = 60,
    n_stars: int = 60,
    step_px: float | None = None,
) -> SearchResult:
    """Search zenith pixel, parity, rotation and focal length (px) of a camera of the given projection.

    Parameters
    ----------
    xd, yd : array_like
        Detected stars' pixels, brightest first (only the first ``n_detections`` are used in the coarse pass).
    alt, az : array_like
        The catalogue stars' apparent altitude and azimuth (deg), brightest first (``n_stars`` in the coarse
        pass).
    shape : tuple of int
        Image shape ``(ny, nx)``.
    projection : str
        The lens projection (:data:`skylake.allsky.camera.PROJECTIONS` or an alias).
    parities : sequence of int, default (1, -1)
        Parities tried.
    scale_range : tuple of float, default (0.25, 2.0)
        The horizon circle's radius searched, in units of the image's half-diagonal.
    n_detections : int, default 60
        Detections used in the coarse pass.
    n_stars : int, default 60
        Catalogue stars used in the coarse pass.
    step_px : float, optional
        Coarse zenith grid step (default: 1/40 of the image's smaller side, at least 6 px).

    Returns
    -------
    SearchResult
        The best zenith pixel, parity, rotation and focal length, its votes and what chance gives.
    """
    ny, nx = shape
    xd, yd = np.asarray(xd, float), np.asarray(yd, float)
    theta = np.radians(90.0 - np.asarray(alt, float))
    ok = (theta > math.radians(2.0)) & (theta < math.radians(89.0))
    ln_g_all = np.log(unit_radius(projection, theta[ok]))
    az_all = np.asarray(az, float)[ok]
    half_diag = 0.5 * math.hypot(nx, ny)
    g90 = float(unit_radius(projection, np.array([math.radians(89.0)]))[0])
    ln_lo = math.log(scale_range[0] * half_diag / g90)
    ln_hi = math.log(scale_range[1] * half_diag / g90)
    r_min = 0.05 * min(nx, ny)
    step = step_px or max(6.0, min(nx, ny) / 40.0)

    def best_on(grid_x, grid_y, n_det, n_cat):
        """The best vote over a grid of trial zenith pixels and the parities.

        Parameters
        ----------
        grid_x, grid_y : numpy.ndarray
            Trial zenith columns and rows, px.
        n_det : int
            Detections used (the brightest).
        n_cat : int
            Catalogue stars used (the brightest).

        Returns
        -------
        best : tuple
            ``(votes, 0.0, x0, y0, parity, ln_s, rotation_deg)`` of the best trial.
        maxima : list of int
            Every trial's best count.
        """
        best = None
        maxima = []
        for parity in parities:
            for x0 in grid_x:
                for y0 in grid_y:
                    votes, _, ln_s, rot = _vote(
                        xd[:n_det], yd[:n_det], ln_g_all[:n_cat], az_all[:n_cat], x0, y0, parity, ln_lo, ln_hi, r_min
                    )
                    maxima.append(votes)
                    if best is None or votes > best[0]:
                        best = (votes, 0.0, x0, y0, parity, ln_s, rot)
        return best, maxima

    coarse, maxima = best_on(np.arange(step / 2, nx, step), np.arange(step / 2, ny, step), n_detections, n_stars)
    trials = len(maxima)
    typical = float(np.median(maxima))
    # finer and finer around the winner, with every star
    best = coarse
    for fine in (step / 3, step / 9):
        _, _, x0, y0, parity, _, _ = best
        grid = np.arange(-3, 4) * fine
        cand, tried = best_on(x0 + grid, y0 + grid, len(xd), len(ln_g_all))
        trials += len(tried)
        if cand[0] >= best[0]:
            best = cand
    votes, _, x0, y0, parity, ln_s, rot = best
    # what chance gives a trial with every star: the best counts of zenith pixels far from the winner
    rng = np.random.default_rng(0)
    px, py = rng.uniform(0, nx, 256), rng.uniform(0, ny, 256)
    far = np.hypot(px - x0, py - y0) > 0.1 * min(nx, ny)
    counts = [
        _vote(xd, yd, ln_g_all, az_all, a, b, parity, ln_lo, ln_hi, r_min)[0]
        for a, b in list(zip(px[far], py[far]))[:64]
    ]
    chance = float(np.median(counts)) if counts else typical
    return SearchResult(
        x0=float(x0),
        y0=float(y0),
        f_px=float(math.exp(ln_s)),
        rotation_deg=float((rot + 180.0) % 360.0 - 180.0),
        parity=int(parity),
        votes=int(votes),
        chance=chance,
        trials=trials + len(counts),
    )
