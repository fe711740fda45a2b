"""The PSF-matching kernel: Alard & Lupton (1998) on numpy, spatially varying, with a differential background.

A frame ``S`` is modelled as its reference ``R`` convolved with a kernel that may change across the chip, plus a
smooth background difference::

    S(x, y) ~ sum_i a_i(x, y) (R * K_i)(x, y) + B(x, y)

The basis kernels ``K_i`` are Gaussians of a few widths times polynomials in the kernel's coordinates (Alard &
Lupton 1998, ApJ 503, 325). Every basis kernel but the first sums to zero, so the kernel's sum (the photometric
scale between the two images) is ``a_0`` alone, kept the same over the chip: a star's flux scales by one number
everywhere, while the kernel's shape (seeing, small shifts) follows a polynomial in ``(x, y)``. The coefficients
are a linear least-squares fit over stamps around bright isolated stars, weighted by the frame's noise, with
stamps that fit badly (a variable, a cosmic ray, a blend) clipped and the fit repeated.

Why this and not a library: of the packages on the index, ``properimage`` (ZOGY) and ``ois`` do not install here;
``sfft`` (numpy backend) on the same real frames and stamps is about as clean on a typical star, worse on bright
ones and 5.6x slower (benchmarks/dia_libraries.py, docs/dia.md); and the basis, the fit and the noise of the
difference are a page of linear algebra a reader can follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.fft import next_fast_len
from scipy.signal import oaconvolve

__all__ = ["FOLDS", "KernelSettings", "KernelSolution", "basis_kernels", "fit_kernel"]

#: Folds of the stamps' cross-validation of the kernel's spatial degree (each fold's stamps predicted by a fit to
#: the others'); with fewer than two stamps a fold the kernel is constant over the chip.
FOLDS = 4


@dataclass(frozen=True)
class KernelSettings:
    """How the kernel is built and fitted.

    Attributes
    ----------
    half_width : int
        The kernel is ``2 * half_width + 1`` pixels square.
    sigmas : tuple of float
        Widths of the basis Gaussians [pixels].
    degrees : tuple of int
        The polynomial degree that multiplies each Gaussian (one per sigma).
    spatial_order : int
        The highest degree of the polynomial in ``(x, y)`` by which the kernel's shape changes over the chip (0:
        constant). The fit takes the lowest degree up to it that predicts stamps left out of the fit as well as
        any (:data:`FOLDS`-fold cross-validation): a polynomial the stamps cannot pin down is noise, and a kernel
        whose shape wanders by noise leaves every bright star a residual its faint neighbours inherit.
    background_order : int
        Degree of the differential background's polynomial in ``(x, y)``.
    clip : float
        Stamps whose reduced chi2 is above ``clip`` times the median stamp's are dropped and the fit repeated.
    pixel_clip : float
        Within a stamp, pixels further than this many sigma from the fit are left out of the next fit, sigma
        counting a tenth of the model too (a star's core is matched to a few per cent; a transient or a cosmic
        ray beside the star is not the star, and fitted it would be subtracted with it).
    iterations : int
        Fits at most (the first included).
    centre : tuple of float
        Where the basis Gaussians are centred ``(x, y)`` [pixels]: where a point of the reference goes on the frame
        relative to its pixel. Not 0 when the reference was moved by whole pixels and a fraction of a pixel is
        left (:func:`skylake.dia.reference.on_frame`): centred there, the basis starts from the shift the fit finds.

    Raises
    ------
    ValueError
        A value that cannot work, named.
    """

    half_width: int = 8
    sigmas: tuple = (0.4, 1.0, 2.0)
    degrees: tuple = (4, 3, 2)
    spatial_order: int = 1
    background_order: int = 1
    clip: float = 4.0
    pixel_clip: float = 5.0
    iterations: int = 3
    centre: tuple = (0.0, 0.0)

    def __post_init__(self):
        if self.half_width < 1:
            raise ValueError(f"kernel half_width must be at least 1 pixel, got {self.half_width}")
        if len(self.sigmas) != len(self.degrees) or not self.sigmas:
            raise ValueError(f"one polynomial degree per Gaussian: sigmas {self.sigmas}, degrees {self.degrees}")
        if min(self.sigmas) <= 0 or min(self.degrees) < 0:
            raise ValueError(f"sigmas must be > 0 and degrees >= 0: {self.sigmas}, {self.degrees}")
        for name in ("spatial_order", "background_order"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if len(self.centre) != 2 or not all(abs(c) <= 1 for c in self.centre):
            raise ValueError(f"the kernel's centre must be (x, y) within a pixel of 0: {self.centre}")
        if self.clip <= 1 or self.pixel_clip <= 1 or self.iterations < 1:
            raise ValueError(
                f"clip and pixel_clip must be > 1 and iterations >= 1: "
                f"{self.clip}, {self.pixel_clip}, {self.iterations}"
            )


def basis_kernels(settings: KernelSettings) -> np.ndarray:
    """The basis kernels: the first sums to one, every other to zero.

    Parameters
    ----------
    settings : KernelSettings
        The Gaussians and degrees.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, 2h + 1, 2h + 1)``.
    """
    h = settings.half_width
    v, u = np.mgrid[-h : h + 1, -h : h + 1].astype(float)
    u, v = u - settings.centre[0], v - settings.centre[1]
    out = []
    for sigma, degree in zip(settings.sigmas, settings.degrees):
        g = np.exp(-(u**2 + v**2) / (2 * sigma**2))
        for m in range(degree + 1):
            for n in range(degree + 1 - m):
                out.append(g * u**m * v**n)
    first = out[0] / out[0].sum()
    basis = [first]
    for k in out[1:]:
        total, size = k.sum(), np.abs(k).sum()
        # only the first carries flux: an even moment is rescaled and the first taken away; an odd one has no sum
        # on a centred grid, and off centre its small one is taken away the same way
        basis.append(k / total - first if abs(total) > 0.1 * size else (k - total * first) / size)
    return np.array(basis)


def _poly_terms(x: np.ndarray, y: np.ndarray, order: int) -> np.ndarray:
    """The monomials ``x^i y^j`` (i + j <= order) of coordinates scaled to [-1, 1]; shape ``(n_terms, *x.shape)``."""
    return np.array([x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)])


def _term_images(shape, order: int) -> list[np.ndarray]:
    """The monomials of :func:`_poly_terms` over a whole image, each an outer product of a row and a column (a
    power of a 4k frame's 16 M coordinates costs a second; of its 4k rows, nothing)."""
    ny, nx = shape
    xs, ys = _scaled(np.arange(nx, dtype=float), nx), _scaled(np.arange(ny, dtype=float), ny)
    return [np.outer(ys**j, xs**i) for i in range(order + 1) for j in range(order + 1 - i)]


def _scaled(coord: np.ndarray, size: int) -> np.ndarray:
    """A pixel coordinate scaled to [-1, 1] over an axis of ``size`` pixels (keeps the normal equations sane)."""
    return (2.0 * coord - (size - 1)) / max(size - 1, 1)


@dataclass
class KernelSolution:
    """A fitted kernel: what convolving the reference with it gives, and how well it fitted.

    Attributes
    ----------
    settings : KernelSettings
        How it was built, with the spatial degree the fit chose (:func:`fit_kernel`).
    shape : tuple of int
        The frame's shape (rows, columns).
    scale : float
        The kernel's sum: the frame's flux over the reference's (after the background).
    scale_error : float
        Its 1-sigma error, from the fit's covariance scaled by the stamps' reduced chi2: common to every star of
        the frame, so a star of reference flux ``F`` carries ``F * scale_error`` more error in its difference.
    coefficients : numpy.ndarray
        Shape-term coefficients, ``(n_basis - 1, n_spatial)`` (the first basis kernel's is ``scale``).
    background : numpy.ndarray
        The differential background's polynomial coefficients.
    stamps_used : int
        Stamps left after clipping.
    stamps_total : int
        Stamps offered.
    chi2 : float
        Reduced chi2 of the stamps used.
    basis : numpy.ndarray
        The basis kernels (:func:`basis_kernels`).
    """

    settings: KernelSettings
    shape: tuple
    scale: float
    scale_error: float
    coefficients: np.ndarray
    background: np.ndarray
    stamps_used: int
    stamps_total: int
    chi2: float
    basis: np.ndarray = field(repr=False)
    _background_image: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def kernel_at(self, x: float, y: float) -> np.ndarray:
        """The kernel at a pixel of the frame.

        Parameters
        ----------
        x, y : float
            Column and row (0-based).

        Returns
        -------
        numpy.ndarray
            The ``(2h + 1, 2h + 1)`` kernel; it sums to :attr:`scale`.
        """
        ny, nx = self.shape
        terms = _poly_terms(_scaled(np.array(x), nx), _scaled(np.array(y), ny), self.settings.spatial_order)
        weights = self.coefficients @ terms
        return self.scale * self.basis[0] + np.tensordot(weights, self.basis[1:], axes=1)

    def background_image(self) -> np.ndarray:
        """The differential background over the frame.

        Returns
        -------
        numpy.ndarray
            The background, the frame's shape.
        """
        if self._background_image is None:  # (asked for several times a frame)
            terms = _term_images(self.shape, self.settings.background_order)
            self._background_image = sum(c * t for c, t in zip(self.background, terms))
        return self._background_image.copy()

    def background_image_at(self, x: float, y: float) -> float:
        """The differential background at one pixel of the frame.

        Parameters
        ----------
        x, y : float
            Column and row (0-based).

        Returns
        -------
        float
            The background [ADU].
        """
        ny, nx = self.shape
        terms = _poly_terms(
            _scaled(np.array(float(x)), nx), _scaled(np.array(float(y)), ny), self.settings.background_order
        )
        return float(np.tensordot(self.background, terms, axes=1))

    def convolve(self, reference: np.ndarray) -> np.ndarray:
        """The reference convolved with the kernel, the background added: the model of the frame.

        The kernel is a sum over the spatial polynomial's terms, ``K(x, y) = sum_j P_j(x, y) K_j``, so the
        reference is convolved once per term (not once per basis kernel).

        Parameters
        ----------
        reference : numpy.ndarray
            The reference on the frame's grid (NaN taken as 0).

        Returns
        -------
        numpy.ndarray
            The model, the frame's shape.
        """
        terms = _term_images(self.shape, self.settings.spatial_order)
        clean = np.nan_to_num(reference.astype(np.float64))
        model = self.background_image()
        for j, term in enumerate(terms):
            kernel = np.tensordot(self.coefficients[:, j], self.basis[1:], axes=1)
            if j == 0:
                kernel = kernel + self.scale * self.basis[0]
            model += term * oaconvolve(clean, kernel, mode="same")
        return model


def fit_kernel(
    frame: np.ndarray,
    variance: np.ndarray,
    reference: np.ndarray,
    stamps: list[tuple[int, int]],
    settings: KernelSettings | None = None,
) -> KernelSolution:
    """Fit the kernel that turns the reference into the frame, over stamps around stars.

    Parameters
    ----------
    frame : numpy.ndarray
        The frame (ADU), background included.
    variance : numpy.ndarray
        The frame's variance per pixel (ADU^2); non-finite or non-positive pixels are left out of the fit.
    reference : numpy.ndarray
        The reference on the frame's grid, sharper than the frame.
    stamps : list of tuple of int
        Centres ``(x, y)`` of the stars to fit on (bright, unsaturated, isolated).
    settings : KernelSettings or None
        The kernel (None: the defaults).

    Returns
    -------
    KernelSolution
        The kernel.

    Raises
    ------
    ValueError
        No usable stamp (every one off the chip's usable part or masked), or shapes that differ.
    """
    settings = settings or KernelSettings()
    if frame.shape != reference.shape or frame.shape != variance.shape:
        raise ValueError(f"frame {frame.shape}, variance {variance.shape} and reference {reference.shape} differ")
    basis = basis_kernels(settings)
    pixels = _stamp_pixels(reference, stamps, basis, variance)
    if not pixels:
        raise ValueError(f"no usable stamp among {len(stamps)}: stars too near the edge or their pixels masked")
    designs = [_design(r, c, conv, frame.shape, settings) for r, c, conv in pixels]  # once: clipping keeps them
    keep = np.ones(len(pixels), bool)
    good = [np.ones(len(r), bool) for r, _, _ in pixels]
    blocks = _StampBlocks(frame, variance, pixels, designs)
    for _ in range(settings.iterations):
        coef, chi2, scale_var = _solve(blocks.at(good), keep)
        median = np.median(chi2[keep])
        clipped = keep & (chi2 <= settings.clip * median)
        fitted = [d @ coef for d in designs]
        still = [
            np.abs(frame[r, c] - m) <= settings.pixel_clip * np.sqrt(variance[r, c] + (0.1 * m) ** 2)
            for (r, c, _), m in zip(pixels, fitted)
        ]
        same = all((a == b).all() for a, b in zip(still, good))
        if (clipped.sum() == keep.sum() and same) or clipped.sum() < 3:
            break
        keep, good = clipped, still
    order = _spatial_order(blocks.at(good), keep, settings, len(basis))
    if order < settings.spatial_order:
        columns = _columns(settings, order, len(basis))
        settings = replace(settings, spatial_order=order)
        coef, chi2, scale_var = _solve(blocks.at(good).columns(columns), keep)
    n_spatial = len(_poly_terms(np.zeros(1), np.zeros(1), settings.spatial_order))
    n_shape = (len(basis) - 1) * n_spatial
    solution = KernelSolution(
        settings=settings,
        shape=frame.shape,
        scale=float(coef[0]),
        scale_error=float(np.sqrt(scale_var * max(1.0, np.mean(chi2[keep])))),
        coefficients=coef[1 : 1 + n_shape].reshape(len(basis) - 1, n_spatial),
        background=coef[1 + n_shape :],
        stamps_used=int(keep.sum()),
        stamps_total=len(pixels),
        chi2=float(np.mean(chi2[keep])),
        basis=basis,
    )
    return solution


def _columns(settings: KernelSettings, order: int, n_basis: int) -> np.ndarray:
    """The design's columns (:func:`_design` at ``settings.spatial_order``) that a lower spatial degree keeps."""
    top = settings.spatial_order
    kept = np.array([i + j <= order for i in range(top + 1) for j in range(top + 1 - i)])
    n_background = len(_poly_terms(np.zeros(1), np.zeros(1), settings.background_order))
    return np.flatnonzero(np.r_[True, np.tile(kept, n_basis - 1), np.ones(n_background, bool)])


def _spatial_order(blocks: _Blocks, keep, settings: KernelSettings, n_basis: int) -> int:
    """The lowest spatial degree whose fit best predicts the stamps it was not fitted on.

    The kept stamps are dealt into :data:`FOLDS` folds; each degree is fitted to all folds but one and scored by
    the chi2 of the one left out, summed over folds. Each stamp's normal equations are those at the highest
    degree (``blocks``): a fit to any folds and any lower degree is a sum of blocks of them.
    """
    used = np.flatnonzero(keep)
    if settings.spatial_order == 0:
        return 0
    if len(used) < 2 * FOLDS:
        return 0  # too few stamps to map the kernel across the chip
    fold = np.full(len(keep), -1)
    fold[used] = np.arange(len(used)) % FOLDS
    scores = []
    for order in range(settings.spatial_order + 1):
        cut = blocks.columns(_columns(settings, order, n_basis))
        score = 0.0
        for f in range(FOLDS):
            coef, _ = cut.fit(keep & (fold != f))
            score += float(np.sum(cut.residuals(coef, fold == f)))
        scores.append(score)
    return int(np.argmin(scores))


def _stamp_pixels(reference: np.ndarray, stamps, basis: np.ndarray, variance: np.ndarray) -> list[tuple]:
    """Each usable stamp's pixels: rows, columns and the reference convolved with each basis kernel there.

    A stamp is a box of half width ``2h`` around the star (``h`` the kernel's half width), on the chip far enough
    from the edge for the convolution, with a finite positive variance in 90 % of its pixels. Only the box
    (and its ``h``-wide rim) is convolved: the fit never needs the whole frame convolved with each basis kernel.
    """
    ny, nx = reference.shape
    h = basis.shape[1] // 2
    half = 2 * h
    clean = np.nan_to_num(reference.astype(np.float64))
    size = next_fast_len(2 * half + 4 * h + 1)  # a box and its rim, convolved with a kernel: no wrap-around
    basis_ft = np.fft.rfft2(basis, s=(size, size))  # once: each stamp is one FFT and one batched inverse
    out = []
    for x, y in stamps:
        x, y = int(round(x)), int(round(y))
        if x - half < h or y - half < h or x + half >= nx - h or y + half >= ny - h:
            continue
        rows, cols = np.mgrid[y - half : y + half + 1, x - half : x + half + 1]
        ok = np.isfinite(variance[rows, cols]) & (variance[rows, cols] > 0)
        if ok.sum() <= 0.9 * ok.size:
            continue
        cut = clean[y - half - h : y + half + h + 1, x - half - h : x + half + h + 1]
        full = np.fft.irfft2(np.fft.rfft2(cut, s=(size, size))[None] * basis_ft, s=(size, size))
        valid = full[:, 2 * h : 2 * h + 2 * half + 1, 2 * h : 2 * h + 2 * half + 1]  # (as oaconvolve's "valid")
        out.append((rows[ok], cols[ok], valid[:, ok]))
    return out


@dataclass
class _Blocks:
    """Each stamp's weighted normal equations over its good pixels: ``normals[k] = A'WA``, ``rights[k] = A'Wb``,
    ``constants[k] = b'Wb`` and ``counts[k]`` good pixels (``A`` its design, ``b`` the frame, ``W`` 1/variance)."""

    normals: np.ndarray
    rights: np.ndarray
    constants: np.ndarray
    counts: np.ndarray

    def columns(self, columns: np.ndarray) -> _Blocks:
        """The same stamps' blocks of a design cut to ``columns``.

        Parameters
        ----------
        columns : numpy.ndarray
            The design's columns kept (indices).

        Returns
        -------
        _Blocks
            The blocks of those columns.
        """
        return _Blocks(self.normals[:, columns][:, :, columns], self.rights[:, columns], self.constants, self.counts)

    def fit(self, use: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The weighted least-squares fit to the stamps ``use`` together: the sum of their normal equations solved.

        Parameters
        ----------
        use : numpy.ndarray
            Which stamps (booleans).

        Returns
        -------
        coef, covariance : numpy.ndarray
            The coefficients and their covariance (the pseudo-inverse of the summed normal matrix).
        """
        covariance = np.linalg.pinv(self.normals[use].sum(axis=0))
        return covariance @ self.rights[use].sum(axis=0), covariance

    def residuals(self, coef: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        """Each stamp's weighted sum of squared residuals about ``coef``: ``b'Wb - 2 c'A'Wb + c'A'WAc``.

        Parameters
        ----------
        coef : numpy.ndarray
            The coefficients.
        which : numpy.ndarray or None
            Which stamps (booleans; None: all).

        Returns
        -------
        numpy.ndarray
            One sum per stamp asked for (no design of their pixels is formed).
        """
        every = slice(None) if which is None else which
        normals, rights = self.normals[every], self.rights[every]
        return self.constants[every] - 2 * rights @ coef + np.einsum("i,sij,j->s", coef, normals, coef)


class _StampBlocks:
    """The stamps' :class:`_Blocks` for any choice of good pixels, each stamp's formed again only when its good
    pixels change (a clipping iteration changes a few stamps' pixels, not the rest)."""

    def __init__(self, frame, variance, pixels, designs):
        self.frame, self.variance, self.pixels, self.designs = frame, variance, pixels, designs
        n = designs[0].shape[1]
        self.blocks = _Blocks(
            np.zeros((len(pixels), n, n)), np.zeros((len(pixels), n)), np.zeros(len(pixels)), np.zeros(len(pixels))
        )
        self.good: list = [None] * len(pixels)

    def at(self, good: list) -> _Blocks:
        """The blocks with ``good[k]`` the good pixels of stamp ``k``.

        Parameters
        ----------
        good : list of numpy.ndarray
            Each stamp's good pixels (booleans over its pixels).

        Returns
        -------
        _Blocks
            Every stamp's blocks over its good pixels (the same object each call, updated).
        """
        for k, g in enumerate(good):
            if self.good[k] is not None and np.array_equal(self.good[k], g):
                continue
            rows, cols, _ = self.pixels[k]
            w = 1.0 / np.sqrt(self.variance[rows[g], cols[g]])
            a = self.designs[k][g] * w[:, None]
            b = self.frame[rows[g], cols[g]] * w
            self.blocks.normals[k] = a.T @ a
            self.blocks.rights[k] = a.T @ b
            self.blocks.constants[k] = b @ b
            self.blocks.counts[k] = len(b)
            self.good[k] = g.copy()
        return self.blocks


def _solve(blocks: _Blocks, keep) -> tuple[np.ndarray, np.ndarray, float]:
    """One weighted least-squares fit over the kept stamps' good pixels: the coefficients, each stamp's chi2 per
    good pixel and the variance of the first coefficient (the kernel's sum) from the normal equations.

    The normal equations are the sum of the kept stamps' blocks, and a stamp's chi2 is ``b'Wb - 2 c'A'Wb +
    c'A'WAc`` over its pixels: no design of all the stamps' pixels is formed."""
    coef, covariance = blocks.fit(keep)  # a few hundred unknowns, 1e5 pixels
    chi2 = np.maximum(blocks.residuals(coef), 0.0) / np.maximum(blocks.counts, 1)
    return coef, chi2, float(covariance[0, 0])


def _design(rows: np.ndarray, cols: np.ndarray, conv: np.ndarray, shape, settings: KernelSettings) -> np.ndarray:
    """The fit's design matrix over a stamp's pixels: the first basis kernel's column (the kernel's sum), each
    other's times each spatial term, then the background's terms."""
    ny, nx = shape
    xs, ys = _scaled(cols.astype(float), nx), _scaled(rows.astype(float), ny)
    terms = _poly_terms(xs, ys, settings.spatial_order)
    shapes = (conv[1:, None, :] * terms[None, :, :]).reshape(-1, len(xs))  # kernel by kernel, each term's column
    columns = np.concatenate([conv[:1], shapes, _poly_terms(xs, ys, settings.background_order)])
    return np.ascontiguousarray(columns.T)  # pixel by pixel: the normal equations' product runs ~1.7x faster
