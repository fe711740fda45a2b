"""DIA sources: what stands out of the noise on a difference image, brighter or fainter than the reference.

The difference is divided by its noise and searched (sep) for groups of pixels above a threshold, both signs:
a transient or a brightening is positive, a fading variable negative. Each detection gets its PSF-weighted flux
and signal-to-noise, its shape, and flags for what usually makes a bogus one: a dipole (a positive and a
negative lobe within a FWHM: a misregistration or a moving star), the chip's edge, the reference's missing
pixels or a saturated star's surroundings (infinite variance), and a detection too sharp or too broad for the
frame's PSF (a cosmic ray, a bad column, a residual of a bright star).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import chi2 as chi2_distribution

from skylake.dia.forced import beside_star_snr, forced_photometry, gaussian_psf, psf_residuals

__all__ = ["DIA_FLAGS", "STAR_SNR", "detect_sources", "REAL", "CHI2_TOLERANCE", "is_real"]

#: Bits of a DIA source's ``flags``: why it may be bogus.
DIA_FLAGS = {"dipole": 1, "edge": 2, "shape": 4, "star_residual": 8}
#: A detection beside a bright star whose point flux falls below this S/N once the star's shift and width
#: residuals are fitted beside it is flagged ``star_residual`` (:func:`~skylake.dia.forced.beside_star_snr`).
STAR_SNR = 3.0
#: The least ``real_bogus`` of a DIA source taken as real (with no flag).
REAL = 0.01
#: How much larger than the noise a real point source's residuals may be: next to a bright star its imperfect
#: subtraction adds to them (SkyCamZ: psf_chi2 0.5-0.9 on empty sky, 1.4-2.9 two FWHM from a bright star, where
#: a hot pixel or a column the reference lacks gives 5-70).
CHI2_TOLERANCE = 2.0


def is_real(sources: pd.DataFrame) -> np.ndarray:
    """Which DIA sources are taken as real: no flag, and residuals a point source can leave.

    Parameters
    ----------
    sources : pandas.DataFrame
        DIA sources (``flags``, ``real_bogus``).

    Returns
    -------
    numpy.ndarray
        True for each real one.
    """
    return ((sources["flags"] == 0) & (sources["real_bogus"] >= REAL)).to_numpy()


def detect_sources(
    image: np.ndarray,
    variance: np.ndarray,
    fwhm: float,
    threshold: float = 5.0,
    edge: int | None = None,
    psf=None,
    reference: np.ndarray | None = None,
) -> pd.DataFrame:
    """Detections on a difference image, positive and negative, with their flux and flags.

    Parameters
    ----------
    image : numpy.ndarray
        The difference [ADU].
    variance : numpy.ndarray
        Its variance [ADU^2] (a huge value where the reference had no pixel).
    fwhm : float
        The frame's PSF width [pixels].
    threshold : float
        Detection threshold on the PSF-weighted signal-to-noise (the search, a matched filter of the PSF, goes
        down to 0.8 of it).
    edge : int or None
        Detections this near the chip's edge are flagged (None: 2 FWHM).
    psf : skylake.dia.forced.EmpiricalPSF or None
        The frame's PSF for the fluxes (None: a Gaussian of ``fwhm``).
    reference : numpy.ndarray or None
        The PSF-matched reference without its background [ADU]: detections that are a bright star's residual
        are flagged ``star_residual`` (None: not looked for).

    Returns
    -------
    pandas.DataFrame
        One row per detection: ``x``, ``y`` (0-based), ``sign`` (+1 brighter, -1 fainter), ``flux`` and
        ``flux_err`` [ADU] (PSF-weighted; negative when fainter), ``snr``, ``a``, ``b`` (the shape's axes
        [pixels]), ``flags`` (:data:`DIA_FLAGS`), ``psf_chi2`` (the PSF's fit to its pixels, per degree of
        freedom: :func:`~skylake.dia.forced.psf_residuals`) and ``real_bogus`` (the chance that a point source
        leaves residuals as large, allowing them :data:`CHI2_TOLERANCE` times the noise: near 0 for a hot pixel,
        a cosmic ray or a bright star's residual; :func:`is_real`).

    Raises
    ------
    ValueError
        ``fwhm`` or ``threshold`` not positive.
    """
    import sep

    if not fwhm > 0 or not threshold > 0:
        raise ValueError(f"fwhm and threshold must be > 0: {fwhm}, {threshold}")
    edge = int(np.ceil(2 * fwhm)) if edge is None else edge
    valid = np.isfinite(variance) & (variance > 0) & np.isfinite(image)
    err = np.ascontiguousarray(np.sqrt(np.where(valid, variance, 1.0)), dtype=np.float64)
    data = np.ascontiguousarray(np.where(valid, image, 0.0), dtype=np.float64)
    matched = gaussian_psf(fwhm, 0.0, 0.0, max(2, int(np.ceil(1.5 * fwhm))))
    found = []
    for sign in (1, -1):  # a matched filter: a point source's S/N, not its brightest pixel's (half of it)
        objects = sep.extract(
            sign * data,
            0.8 * threshold,
            err=err,
            mask=~valid,
            minarea=3,
            filter_kernel=matched,
            filter_type="matched",
        )
        if len(objects):
            found.append(pd.DataFrame({"x": objects["x"], "y": objects["y"], "a": objects["a"], "b": objects["b"]}))
            found[-1]["sign"] = sign
    columns = ["x", "y", "sign", "flux", "flux_err", "snr", "a", "b", "flags", "psf_chi2", "real_bogus"]
    if not found:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns}).astype({"sign": int, "flags": int})
    rows = pd.concat(found, ignore_index=True)
    flux, err = forced_photometry(image, variance, rows["x"], rows["y"], fwhm, psf=psf)
    rows["flux"], rows["flux_err"] = flux, err
    rows["snr"] = np.abs(flux) / err
    # the PSF-weighted flux has the detection's sign: else it sat on a wing of something else
    good = np.isfinite(rows["snr"]) & (rows["snr"] >= threshold) & (np.sign(flux) == rows["sign"])
    rows = rows[good].reset_index(drop=True)
    rows["flags"] = _flags(rows, image.shape, fwhm, edge, variance)
    if reference is not None and len(rows):
        beside = beside_star_snr(image, variance, reference, rows["x"], rows["y"], rows["flux"], fwhm, psf=psf)
        rows["flags"] |= DIA_FLAGS["star_residual"] * (np.abs(np.nan_to_num(beside, nan=np.inf)) < STAR_SNR)
    rows["psf_chi2"], dof = psf_residuals(image, variance, rows["x"], rows["y"], rows["flux"], fwhm, psf=psf)
    chi2 = rows["psf_chi2"].to_numpy() * dof / CHI2_TOLERANCE
    rows["real_bogus"] = np.where(dof > 0, chi2_distribution.sf(chi2, np.maximum(dof, 1)), 0.0)
    return rows[columns]


def _flags(rows: pd.DataFrame, shape, fwhm: float, edge: int, variance: np.ndarray) -> np.ndarray:
    """The :data:`DIA_FLAGS` of each detection."""
    ny, nx = shape
    flags = np.zeros(len(rows), int)
    x, y, sign = rows["x"].to_numpy(), rows["y"].to_numpy(), rows["sign"].to_numpy()
    for k in range(len(rows)):
        opposite = (sign != sign[k]) & (np.hypot(x - x[k], y - y[k]) < 1.5 * fwhm)
        flags[k] |= DIA_FLAGS["dipole"] * bool(opposite.any())
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    near_edge = (ix < edge) | (iy < edge) | (ix >= nx - edge) | (iy >= ny - edge)
    inside = ~near_edge
    no_reference = np.zeros(len(rows), bool)
    at = variance[iy[inside], ix[inside]]
    no_reference[inside] = ~np.isfinite(at) | (at > 1e10)
    flags |= DIA_FLAGS["edge"] * (near_edge | no_reference)
    sigma = fwhm / 2.3548200450309493  # a point source's a and b are near the PSF's sigma
    width = np.sqrt(rows["a"].to_numpy() * rows["b"].to_numpy())
    flags |= DIA_FLAGS["shape"] * ((width < 0.5 * sigma) | (width > 2.5 * sigma))
    return flags
