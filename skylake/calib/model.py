"""The photometric model shared by calibration, maps and objects: which flux is calibrated and how it
becomes an instrumental magnitude.

A profile's ``[calibration] flux`` names the source flux (``flux_auto``, SExtractor's MAG_AUTO, or one
of the apertures ``flux_ap1..3``). Its instrumental magnitude is::

    inst_mag = -2.5 log10(flux / exptime) - apcor

with ``apcor = 0`` for the Kron flux. An aperture misses the light outside it, so its magnitudes are
brought to the Kron total by ``apcor``, the median of ``-2.5 log10(flux_apN / flux_auto)`` over the
frame's clean calibration stars (unflagged, unblended, unsaturated, away from the edge, S/N of the
Kron flux at least :data:`APCOR_MIN_SNR`): a zeropoint from an aperture is then on the same scale as
one from the Kron flux, while each star's magnitude keeps the aperture's robustness to neighbours.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Source fluxes a calibration can use (columns of LAKE/sources, each with a ``_err``).
FLUXES = ("flux_auto", "flux_ap1", "flux_ap2", "flux_ap3")
KRON = "flux_auto"
#: 2.5 / ln(10): the magnitude error of a flux with relative error 1.
MAG_PER_RELATIVE_FLUX = 1.0857362
#: Clean stars needed for a frame's own aperture correction (else the run's median is used).
APCOR_MIN_STARS = 3
#: Signal-to-noise of the Kron flux a star needs to set the aperture correction.
APCOR_MIN_SNR = 20.0


def instrumental_mag(flux, exptime) -> np.ndarray:
    """``-2.5 log10(flux / exptime)`` [mag]; NaN where the flux is not positive."""
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, -2.5 * np.log10(flux / np.asarray(exptime, dtype=np.float64)), np.nan)


def instrumental_mag_err(flux, flux_err) -> np.ndarray:
    """Magnitude error of ``flux`` with error ``flux_err`` [mag]; NaN where the flux is not positive."""
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, MAG_PER_RELATIVE_FLUX * np.asarray(flux_err, dtype=np.float64) / flux, np.nan)


def aperture_corrections(pairs: pd.DataFrame, flux: str, clean: np.ndarray) -> pd.Series:
    """Each frame's ``apcor`` [mag] for aperture ``flux``: the median of ``-2.5 log10(flux / flux_auto)``
    over its ``clean`` pairs with a Kron S/N of at least :data:`APCOR_MIN_SNR`. A frame with fewer than
    :data:`APCOR_MIN_STARS` such stars gets the median of the frames that have enough (NaN when none
    has). Indexed by frame_id; 0 everywhere for the Kron flux."""
    frames = pd.Index(pd.unique(pairs["frame_id"]), name="frame_id")
    if flux == KRON:
        return pd.Series(0.0, index=frames)
    auto = pairs[KRON].to_numpy(np.float64)
    ap = pairs[flux].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = auto / pairs[f"{KRON}_err"].to_numpy(np.float64)
        delta = -2.5 * np.log10(ap / auto)
    use = np.asarray(clean, bool) & (auto > 0) & (ap > 0) & (snr >= APCOR_MIN_SNR) & np.isfinite(delta)
    by_frame = pd.Series(delta[use]).groupby(pairs["frame_id"].to_numpy()[use])
    own = by_frame.median()[by_frame.size() >= APCOR_MIN_STARS]
    fallback = float(own.median()) if len(own) else np.nan
    return own.reindex(frames).fillna(fallback)


def calibrated_flux_mags(pairs: pd.DataFrame, exptime: np.ndarray, flux: str, apcor: np.ndarray):
    """(inst_mag, inst_mag_err) of ``pairs`` in ``flux`` with each row's ``exptime`` [s] and ``apcor`` [mag]."""
    return (instrumental_mag(pairs[flux], exptime) - np.asarray(apcor, np.float64),
            instrumental_mag_err(pairs[flux], pairs[f"{flux}_err"]))
