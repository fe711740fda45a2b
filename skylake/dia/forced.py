"""Forced photometry on a difference image: the flux that changed, at known positions, with its error.

A PSF-weighted (optimal) flux: ``f = sum(P D / V) / sum(P^2 / V)``, ``sigma_f = 1 / sqrt(sum(P^2 / V))``, with
``P`` the frame's PSF at the position (normalised to unit sum), ``D`` the difference and ``V`` its variance.
Constant neighbours subtract away, so the flux is the star's own change, whatever the seeing.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

__all__ = [
    "gaussian_psf",
    "EmpiricalPSF",
    "empirical_psf",
    "point_template",
    "forced_photometry",
    "joint_forced_photometry",
    "LINK_FWHM",
    "MAX_INFLATION",
    "MAX_GROUP",
    "psf_residuals",
    "STAR_CONTRAST",
    "beside_star_snr",
]

#: A star this many times brighter (at its peak, on the PSF-matched reference) than a detection, within two
#: FWHM of it, may leave residuals that look like the detection (:func:`beside_star_snr`).
STAR_CONTRAST = 5.0

_SQRT2 = np.sqrt(2.0)

#: Positions closer than this many FWHM share their pixels' light: :func:`joint_forced_photometry` fits them
#: together (two Gaussian PSFs 2 FWHM apart overlap by 0.5 % of their weights).
LINK_FWHM = 2.0

#: A position whose variance the joint fit inflates more than this many times (``diag`` of the inverse of the
#: group's PSF correlations) cannot be told from a neighbour: it is measured on its own and the rest refitted.
#: A pair of Gaussian PSFs correlated by 0.9 (0.28 FWHM apart) inflates both by 5.3.
MAX_INFLATION = 5.3

#: A group of more positions than this (a chain across a crowded field; none on a 4096x4096 frame of 60,000
#: objects at 3 px FWHM, whose largest group is 7) is measured one position at a time.
MAX_GROUP = 500

#: Positions measured at once by :func:`forced_photometry` (their boxes in memory together: ~60 MB at 21x21).
_CHUNK = 2048


def gaussian_psf(fwhm: float, dx: float, dy: float, half: int) -> np.ndarray:
    """A circular Gaussian PSF integrated over pixels, centred ``(dx, dy)`` from a box's central pixel.

    Parameters
    ----------
    fwhm : float
        Its full width at half maximum [pixels].
    dx, dy : float
        The centre's offset from the box's central pixel [pixels].
    half : int
        The box is ``2 * half + 1`` pixels square.

    Returns
    -------
    numpy.ndarray
        The PSF, summing to one over the box.

    Raises
    ------
    ValueError
        ``fwhm`` not positive.
    """
    return _gaussian_psfs(fwhm, np.atleast_1d(dx), np.atleast_1d(dy), half)[0]


def _gaussian_psfs(fwhm: float, dx: np.ndarray, dy: np.ndarray, half: int) -> np.ndarray:
    """:func:`gaussian_psf` at many offsets at once: ``(len(dx), 2 * half + 1, 2 * half + 1)``.

    The integral over a pixel is the product of the profile's integrals along each axis (the erf of the edges).
    """
    if not fwhm > 0:
        raise ValueError(f"PSF fwhm must be > 0 pixels, got {fwhm}")
    sigma = fwhm / 2.3548200450309493
    edges = np.arange(-half - 0.5, half + 1.5)
    along_y = np.diff(erf((edges[None, :] - np.asarray(dy, float)[:, None]) / (_SQRT2 * sigma)), axis=1)
    along_x = np.diff(erf((edges[None, :] - np.asarray(dx, float)[:, None]) / (_SQRT2 * sigma)), axis=1)
    psf = along_y[:, :, None] * along_x[:, None, :]
    return psf / psf.sum(axis=(1, 2), keepdims=True)


class EmpiricalPSF:
    """A frame's PSF from its own stars (:func:`empirical_psf`), as a template at any sub-pixel position.

    Parameters
    ----------
    image : numpy.ndarray
        The PSF, centred on the box's central pixel, summing to one over it.

    Attributes
    ----------
    image : numpy.ndarray
        The PSF.
    half : int
        Its box's half width [pixels].
    """

    def __init__(self, image: np.ndarray):
        from scipy.ndimage import spline_filter

        self.image = image
        self.half = image.shape[0] // 2
        # the cubic spline's coefficients once: each shift would compute them again (a quarter of its time);
        # shifting them unfiltered gives the same template to the bit
        self._coefficients = spline_filter(image, 3, output=np.float64, mode="constant")

    def __call__(self, dx: float, dy: float, half: int) -> np.ndarray:
        """The PSF centred ``(dx, dy)`` from a box's central pixel (cubic-spline shifted), in a box of ``half``.

        Parameters
        ----------
        dx, dy : float
            The centre's offset [pixels].
        half : int
            The box's half width (at most the PSF's own; the PSF is cut to it).

        Returns
        -------
        numpy.ndarray
            The template (its sum is the PSF's fraction in the box).
        """
        return self.templates(np.atleast_1d(dx), np.atleast_1d(dy), half)[0]

    def templates(self, dx: np.ndarray, dy: np.ndarray, half: int) -> np.ndarray:
        """The PSF at many offsets at once: what ``scipy.ndimage.shift`` of it by each gives, to the bit.

        Parameters
        ----------
        dx, dy : numpy.ndarray
            The centres' offsets from a box's central pixel [pixels].
        half : int
            The boxes' half width (at most the PSF's own).

        Returns
        -------
        numpy.ndarray
            ``(len(dx), 2 * h + 1, 2 * h + 1)`` templates, ``h = min(half, self.half)``.
        """
        from scipy.ndimage import map_coordinates

        h = min(half, self.half)
        steps = np.arange(-h, h + 1)
        # a shift by (dy, dx) samples the spline at each pixel less the offset
        rows = self.half + steps[None, :] - np.asarray(dy, float)[:, None]
        cols = self.half + steps[None, :] - np.asarray(dx, float)[:, None]
        where = np.broadcast_arrays(rows[:, :, None], cols[:, None, :])
        return map_coordinates(
            self._coefficients, where, order=3, mode="constant", prefilter=False, output=self.image.dtype
        )


def empirical_psf(stars: np.ndarray, centres, half: int) -> EmpiricalPSF | None:
    """The median of bright isolated stars, each centred by its core's centroid and normalised to unit sum.

    Parameters
    ----------
    stars : numpy.ndarray
        The frame, sky subtracted.
    centres : list of tuple of float
        The stars ``(x, y)`` (the kernel's stamps: bright, isolated, unsaturated).
    half : int
        The PSF's box half width [pixels]: it holds the flux a point source is measured with.

    Returns
    -------
    EmpiricalPSF or None
        The PSF; None with fewer than 5 stars on the chip.
    """
    from scipy.ndimage import shift

    ny, nx = stars.shape
    pad = half + 2
    yy, xx = np.mgrid[-pad : pad + 1, -pad : pad + 1]
    core = np.hypot(xx, yy) <= 3
    cuts = []
    for x, y in centres:
        ix, iy = int(round(x)), int(round(y))
        if not (pad <= ix < nx - pad and pad <= iy < ny - pad):
            continue
        box = stars[iy - pad : iy + pad + 1, ix - pad : ix + pad + 1]
        inner = np.where(core, np.clip(box, 0, None), 0.0)
        if not inner.sum() > 0 or not np.isfinite(box).all():
            continue
        cy, cx = float((inner * yy).sum() / inner.sum()), float((inner * xx).sum() / inner.sum())
        centred = shift(box, (-cy, -cx), order=3, mode="nearest")[2:-2, 2:-2]
        cuts.append(centred / centred.sum())
    if len(cuts) < 5:
        return None
    psf = np.median(cuts, axis=0)
    return EmpiricalPSF(psf / psf.sum())


def point_template(psf: EmpiricalPSF | None, fwhm: float, dx: float, dy: float, half: int) -> np.ndarray:
    """A point source's unit-flux model on a box: the frame's PSF, or a Gaussian of ``fwhm`` without one.

    Every measurement here (forced fluxes, the joint fits, the residuals, the places tried for a transient)
    takes its model from this one function, so they agree on what a point looks like.

    Parameters
    ----------
    psf : EmpiricalPSF or None
        The frame's PSF (None: a Gaussian of ``fwhm``).
    fwhm : float
        The frame's PSF width [pixels].
    dx, dy : float
        The point's offset from the box's central pixel [pixels].
    half : int
        Half width of the box [pixels]: the box is ``2 * half + 1`` pixels a side.

    Returns
    -------
    numpy.ndarray
        The model, ``(2 * half + 1, 2 * half + 1)``.
    """
    return _point_templates(psf, fwhm, np.atleast_1d(dx), np.atleast_1d(dy), half)[0]


def _point_templates(psf: EmpiricalPSF | None, fwhm: float, dx: np.ndarray, dy: np.ndarray, half: int) -> np.ndarray:
    """:func:`point_template` at many offsets at once: ``(len(dx), 2 * half + 1, 2 * half + 1)``."""
    return psf.templates(dx, dy, half) if psf is not None else _gaussian_psfs(fwhm, dx, dy, half)


def forced_photometry(
    image: np.ndarray,
    variance: np.ndarray,
    x,
    y,
    fwhm: float,
    half: int | None = None,
    psf: EmpiricalPSF | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """PSF-weighted fluxes and errors at positions on a difference image.

    The template is the frame's own PSF when given (:func:`empirical_psf`: a real PSF's wings and tail), else a
    Gaussian of ``fwhm``, whose flux falls short of a real point source's by a factor an aperture correction
    gives back; but next to a bright star the weights lean away from it and that factor no longer holds (a
    10-sigma point 2 FWHM from a star was measured 25-30 % low on SkyCamZ with the Gaussian).

    Parameters
    ----------
    image : numpy.ndarray
        The difference [ADU].
    variance : numpy.ndarray
        Its variance [ADU^2].
    x, y : array_like
        Positions (0-based column and row) [pixels].
    fwhm : float
        The frame's PSF width [pixels].
    half : int or None
        Half width of the box summed (None: 2 FWHM, at least 3 pixels; the PSF's box with ``psf``).
    psf : EmpiricalPSF or None
        The frame's PSF (None: a Gaussian of ``fwhm``).

    Returns
    -------
    flux : numpy.ndarray
        The flux at each position [ADU] (NaN where the box leaves the chip or has no valid pixel).
    error : numpy.ndarray
        Its 1-sigma error [ADU].
    """
    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    if half is None:
        half = psf.half if psf is not None else max(3, int(np.ceil(2 * fwhm)))
    elif psf is not None:
        half = min(half, psf.half)
    ny, nx = image.shape
    flux, error = np.full(len(x), np.nan), np.full(len(x), np.nan)
    finite = np.isfinite(x) & np.isfinite(y)  # no position: off the chip
    # clipped first: a far position (a WCS's 1e30) stays off the chip instead of overflowing the integers
    ix = np.round(np.clip(np.where(finite, x, -1.0), -1.0, nx)).astype(int)
    iy = np.round(np.clip(np.where(finite, y, -1.0), -1.0, ny)).astype(int)
    inside = np.flatnonzero(finite & (half <= ix) & (ix < nx - half) & (half <= iy) & (iy < ny - half))
    steps = np.arange(-half, half + 1)
    for start in range(0, len(inside), _CHUNK):  # many positions' boxes at once
        chunk = inside[start : start + _CHUNK]
        template = _point_templates(psf, fwhm, x[chunk] - ix[chunk], y[chunk] - iy[chunk], half)
        rows = iy[chunk, None, None] + steps[None, :, None]
        cols = ix[chunk, None, None] + steps[None, None, :]
        data, var = image[rows, cols], variance[rows, cols]
        good = np.isfinite(data) & np.isfinite(var) & (var > 0)
        weight = np.where(good, template / np.where(good, var, 1.0), 0.0)
        norm = np.sum(weight * template, axis=(1, 2))
        total = np.sum(weight * np.where(good, data, 0.0), axis=(1, 2))
        lit = norm > 0  # no good pixel, or the good pixels are where the PSF has no light: NaN
        flux[chunk[lit]] = total[lit] / norm[lit]
        error[chunk[lit]] = 1.0 / np.sqrt(norm[lit])
    return flux, error


def joint_forced_photometry(
    image: np.ndarray,
    variance: np.ndarray,
    x,
    y,
    fwhm: float,
    psf: EmpiricalPSF | None = None,
    link: float = LINK_FWHM,
) -> tuple[np.ndarray, np.ndarray]:
    """PSF fluxes and errors at positions on a difference image, neighbours fitted together.

    :func:`forced_photometry` weighs each position's pixels by its PSF alone: where two positions are closer
    than about 2 FWHM, a change of one lands partly in the other's flux (a constant star takes 15 % of a
    variable's change 1.2 FWHM away, 1.4 % at 1.8 FWHM). Here positions within ``link`` FWHM of one
    another (and so on, transitively) form a group whose fluxes are the weighted least-squares fit of their
    PSFs together, ``f = (A V^-1 A^T)^-1 A V^-1 D``, with errors from the diagonal of ``(A V^-1 A^T)^-1``: a
    blended position's error grows with what it shares. A position alone gets exactly
    :func:`forced_photometry`'s flux and error. A position the fit cannot tell from a neighbour (two positions
    on one star: :data:`MAX_INFLATION`) is measured on its own and the rest of its group fitted without it; a
    group too large (:data:`MAX_GROUP`) is measured position by position.

    Parameters
    ----------
    image : numpy.ndarray
        The difference [ADU].
    variance : numpy.ndarray
        Its variance [ADU^2].
    x, y : array_like
        Positions (0-based column and row) [pixels].
    fwhm : float
        The frame's PSF width [pixels].
    psf : EmpiricalPSF or None
        The frame's PSF (None: a Gaussian of ``fwhm``).
    link : float
        Positions closer than this many FWHM are fitted together.

    Returns
    -------
    flux : numpy.ndarray
        The flux at each position [ADU] (NaN where the box leaves the chip or has no valid pixel).
    error : numpy.ndarray
        Its 1-sigma error [ADU].
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    flux, error = forced_photometry(image, variance, x, y, fwhm, psf=psf)
    on = np.flatnonzero(np.isfinite(flux))
    if len(on) < 2:
        return flux, error
    pairs = cKDTree(np.c_[x[on], y[on]]).query_pairs(link * fwhm, output_type="ndarray")
    if not len(pairs):
        return flux, error
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(on), len(on)))
    _, label = connected_components(graph, directed=False)
    half = psf.half if psf is not None else max(3, int(np.ceil(2 * fwhm)))
    grouped = np.bincount(label)[label] > 1  # most positions are alone: only the groups are fitted
    order = np.argsort(label[grouped], kind="stable")
    members_of = on[grouped][order]
    starts = np.flatnonzero(np.r_[True, np.diff(label[grouped][order]) != 0])
    for members in np.split(members_of, starts[1:]):
        _fit_group(image, variance, x, y, members, fwhm, psf, half, flux, error)
    return flux, error


def _fit_group(image, variance, x, y, members, fwhm, psf, half, flux, error) -> None:
    """Fit one group's PSFs together (:func:`joint_forced_photometry`), writing into ``flux`` and ``error``;
    left as measured one by one when the group is too large or its fit cannot separate them.

    The normal matrix is summed over each pair's shared pixels (boxes of ``half`` that overlap), never over an
    image of the whole group: a chain across a crowded field costs what its pairs cost."""
    from scipy.spatial import cKDTree

    if len(members) > MAX_GROUP:
        return
    ix, iy = np.round(x[members]).astype(int), np.round(y[members]).astype(int)
    side = 2 * half + 1
    templates, weights = [], []
    rhs = np.zeros(len(members))
    for j, k in enumerate(members):
        box = np.s_[iy[j] - half : iy[j] + half + 1, ix[j] - half : ix[j] + half + 1]
        var, data = variance[box], image[box]
        good = np.isfinite(data) & np.isfinite(var) & (var > 0)
        weight = np.where(good, 1.0 / np.where(good, var, 1.0), 0.0)
        templates.append(point_template(psf, fwhm, x[k] - ix[j], y[k] - iy[j], half))
        weights.append(weight)
        rhs[j] = float(np.sum(templates[j] * weight * np.where(good, data, 0.0)))
    normal = np.diag([float(np.sum(t * t * w)) for t, w in zip(templates, weights)])
    for i, j in cKDTree(np.c_[ix, iy]).query_pairs(side - 1, p=np.inf, output_type="ndarray"):
        dx, dy = ix[j] - ix[i], iy[j] - iy[i]  # j's box starts (dx, dy) into i's
        mine = np.s_[max(dy, 0) : side + min(dy, 0), max(dx, 0) : side + min(dx, 0)]
        theirs = np.s_[max(-dy, 0) : side + min(-dy, 0), max(-dx, 0) : side + min(-dx, 0)]
        normal[i, j] = normal[j, i] = float(np.sum(templates[i][mine] * templates[j][theirs] * weights[i][mine]))
    scale = np.sqrt(np.diag(normal))  # every member's box holds light: its one-by-one flux was finite
    unit = normal / np.outer(scale, scale)  # the PSFs' correlations: near-singular when two share one star
    keep = np.arange(len(members))
    while len(keep) > 1:
        try:
            inverse = np.linalg.inv(unit[np.ix_(keep, keep)])
        except np.linalg.LinAlgError:
            return
        inflation = np.diag(inverse)
        worst = int(np.argmax(inflation))
        if inflation[worst] <= MAX_INFLATION:  # (False for NaN: dropped, then the group is left as it was)
            cov = inverse / np.outer(scale[keep], scale[keep])
            flux[members[keep]] = cov @ rhs[keep]
            error[members[keep]] = np.sqrt(np.diag(cov))
            return
        keep = np.delete(keep, worst)  # measured on its own (it and its twin share their light)


def psf_residuals(
    image: np.ndarray,
    variance: np.ndarray,
    x,
    y,
    flux,
    fwhm: float,
    psf: EmpiricalPSF | None = None,
    model_error: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """How well a point source of the frame's PSF explains the difference's pixels around each position.

    The chi-square of the pixels within 1.5 FWHM (at least 2 pixels) of the position less ``flux`` times the
    PSF, each pixel's noise its variance plus ``model_error`` of the PSF's value there (no PSF model is exact:
    a bright real source must not fail for it). A real point source leaves noise (chi2/dof near one); a
    misregistered star's dipole, a cosmic ray or a bad column leaves structure the PSF cannot take.

    Parameters
    ----------
    image, variance : numpy.ndarray
        The difference and its variance [ADU, ADU^2].
    x, y : array_like
        Positions (0-based column and row) [pixels].
    flux : array_like
        The PSF-weighted fluxes there [ADU] (:func:`forced_photometry`).
    fwhm : float
        The frame's PSF width [pixels].
    psf : EmpiricalPSF or None
        The frame's PSF (None: a Gaussian of ``fwhm``).
    model_error : float
        The PSF model's fractional error per pixel.

    Returns
    -------
    chi2 : numpy.ndarray
        The chi-square per degree of freedom (NaN where the box leaves the chip or has too few valid pixels).
    dof : numpy.ndarray
        Its degrees of freedom (valid pixels less one).
    """
    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    flux = np.atleast_1d(np.asarray(flux, float))
    radius = max(2.0, 1.5 * fwhm)
    half = int(np.ceil(radius)) if psf is None else min(int(np.ceil(radius)), psf.half)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    ny, nx = image.shape
    chi2, dof = np.full(len(x), np.nan), np.zeros(len(x), int)
    for k in range(len(x)):
        ix, iy = int(round(x[k])), int(round(y[k]))
        if not (half <= ix < nx - half and half <= iy < ny - half) or not np.isfinite(flux[k]):
            continue
        box = np.s_[iy - half : iy + half + 1, ix - half : ix + half + 1]
        dx, dy = x[k] - ix, y[k] - iy
        template = point_template(psf, fwhm, dx, dy, half)
        model = flux[k] * template
        noise = variance[box] + (model_error * model) ** 2
        good = (np.hypot(xx - dx, yy - dy) <= radius) & np.isfinite(image[box]) & np.isfinite(noise) & (noise > 0)
        if good.sum() < 5:
            continue
        dof[k] = int(good.sum()) - 1
        chi2[k] = float(np.sum((image[box] - model)[good] ** 2 / noise[good])) / dof[k]
    return chi2, dof


def beside_star_snr(
    image: np.ndarray,
    variance: np.ndarray,
    reference: np.ndarray,
    x,
    y,
    flux,
    fwhm: float,
    psf: EmpiricalPSF | None = None,
) -> np.ndarray:
    """The S/N of each detection's point flux once a bright star beside it may have left a residual too.

    No kernel matches a bright star exactly: what is left is the PSF's shift (a dipole) and its change of width
    (a ring), centred on the star. Where the PSF-matched reference has a star :data:`STAR_CONTRAST` times
    brighter than the detection within two FWHM of it, the difference around them is fitted at once with the
    detection's PSF and the star's shifted and widened PSF (its derivatives in x and y, and its Laplacian); the
    detection's flux is then measured beside what the star's mismatch explains. A star's residual loses its flux
    to the star's terms; a real point beside a star keeps it; a star that varies keeps it too (the change of its
    flux is not among the star's terms).

    Parameters
    ----------
    image, variance : numpy.ndarray
        The difference and its variance [ADU, ADU^2].
    reference : numpy.ndarray
        The PSF-matched reference without its background [ADU] (what was subtracted).
    x, y : array_like
        The detections (0-based column and row) [pixels].
    flux : array_like
        Their PSF-weighted fluxes [ADU].
    fwhm : float
        The frame's PSF width [pixels].
    psf : EmpiricalPSF or None
        The frame's PSF (None: a Gaussian of ``fwhm``).

    Returns
    -------
    numpy.ndarray
        The S/N of the point flux with the star's terms fitted beside it (signed as the flux); NaN where no
        bright star is near.
    """
    from scipy.ndimage import gaussian_filter

    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    flux = np.atleast_1d(np.asarray(flux, float))
    half = max(3, int(np.ceil(3.0 * fwhm)))
    if psf is not None:
        half = min(half, psf.half)
    near = 2.0 * fwhm
    ny, nx = image.shape
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    out = np.full(len(x), np.nan)
    for k in range(len(x)):
        ix, iy = int(round(x[k])), int(round(y[k]))
        if not (half <= ix < nx - half and half <= iy < ny - half) or not np.isfinite(flux[k]):
            continue
        box = np.s_[iy - half : iy + half + 1, ix - half : ix + half + 1]
        ref = np.nan_to_num(reference[box])
        point = point_template(psf, fwhm, x[k] - ix, y[k] - iy, half)
        within = np.hypot(xx - (x[k] - ix), yy - (y[k] - iy)) <= near
        sy, sx = np.unravel_index(np.argmax(np.where(within, ref, -np.inf)), ref.shape)
        if not ref[sy, sx] > STAR_CONTRAST * abs(flux[k]) * point.max():
            continue
        # the star's centre: its core's centroid on the reference
        core = (np.hypot(xx - (sx - half), yy - (sy - half)) <= 1.5) & (ref > 0)
        cx = float((ref * (xx + half))[core].sum() / ref[core].sum()) - half
        cy = float((ref * (yy + half))[core].sum() / ref[core].sum()) - half
        star = point_template(psf, fwhm, cx, cy, half)
        step = 0.25
        modes = [
            (point_template(psf, fwhm, cx + step, cy, half) - point_template(psf, fwhm, cx - step, cy, half))
            / (2 * step),
            (point_template(psf, fwhm, cx, cy + step, half) - point_template(psf, fwhm, cx, cy - step, half))
            / (2 * step),
        ]
        modes.append(gaussian_filter(star, 0.6) - star)  # a wider PSF less the PSF: its Laplacian's shape
        good = np.isfinite(image[box]) & np.isfinite(variance[box]) & (variance[box] > 0)
        if good.sum() < 10:
            continue
        w = 1.0 / np.sqrt(variance[box][good])
        design = np.column_stack([point[good], *(m[good] for m in modes)]) * w[:, None]
        data = image[box][good] * w
        try:
            coef, *_ = np.linalg.lstsq(design, data, rcond=None)
            cov = np.linalg.inv(design.T @ design)
        except np.linalg.LinAlgError:
            continue
        out[k] = coef[0] / np.sqrt(cov[0, 0])
    return out
