"""The noise diagram's numbers: each object's scatter in one night, and the noise it should have.

The noise an object should have is the noise its photons, the sky, the read-out and the atmosphere should give.

Expected noise of a point of magnitude ``m`` (Merline & Howell 1995's CCD equation, in electrons, with the
local-background estimate from ``n_ann`` annulus pixels; Young 1967's scintillation with the coefficient of
Osborn et al. 2015 left as Young's 0.09)::

    N = 10**(-0.4 (m - zp)) t g                        star electrons in the aperture (zp: mag of 1 ADU/s)
    sigma_phot = 1.0857 sqrt(N + n_pix (1 + n_pix / n_ann) (S g + R^2)) / N
    sigma_scint = 1.0857 * 0.09 D^(-2/3) X^1.75 exp(-h / 8000 m) (2 t)^(-1/2)      (D in cm, t in s)
    sigma = sqrt(sigma_phot^2 + sigma_scint^2)

``S`` is the sky per pixel (ADU), ``g`` the gain (e-/ADU), ``R`` the read noise (e-), ``X`` the airmass, ``h``
the site's height, ``D`` the telescope's diameter (no scintillation term when it is not known).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["NoiseModel", "object_scatter", "VERSIONS"]

#: The light-curve magnitudes a noise diagram compares: (column, label).
VERSIONS = (("mag_zp", "per-frame zeropoints"), ("mag", "ensemble"), ("mag_tfa", "ensemble + EPD + TFA"))  # not a table


@dataclass(frozen=True)
class NoiseModel:
    """The expected noise of one night's typical frame.

    Attributes
    ----------
    zp : float
        Magnitude of a source giving 1 ADU/s (the frames' median zeropoint).
    exptime : float
        Exposure time, s.
    sky_adu : float
        Sky per pixel over the exposure, ADU.
    gain : float
        Gain, e-/ADU.
    read_noise_e : float
        Read noise, e- per pixel.
    n_pix : float
        Pixels in the aperture.
    n_ann : float
        Pixels of the background annulus (inf: the background is known exactly).
    airmass : float
        Airmass of the frame (values below 1 count as 1 in the scintillation).
    diameter_m : float
        Telescope aperture, m (0: unknown, no scintillation).
    height_m : float
        Site's height above sea level, m.

    Raises
    ------
    ValueError
        When ``exptime``, ``gain`` or ``n_pix`` is not a positive finite number.
    """

    zp: float
    exptime: float
    sky_adu: float
    gain: float
    read_noise_e: float
    n_pix: float
    n_ann: float
    airmass: float
    diameter_m: float
    height_m: float

    def __post_init__(self):
        for name in ("exptime", "gain", "n_pix"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"NoiseModel.{name} must be a positive number, got {v!r}")

    def electrons(self, mag) -> np.ndarray:
        """The star's electrons in the aperture over the exposure.

        Parameters
        ----------
        mag : float or array_like
            Magnitudes of the stars.

        Returns
        -------
        ndarray
            ``10**(-0.4 (mag - zp)) * exptime * gain``, e-.
        """
        return 10 ** (-0.4 * (np.asarray(mag, float) - self.zp)) * self.exptime * self.gain

    def photon(self, mag) -> np.ndarray:
        """The star's own shot noise, mag.

        Parameters
        ----------
        mag : float or array_like
            Magnitudes of the stars.

        Returns
        -------
        ndarray
            ``1.0857 / sqrt(N)`` with ``N`` the star's electrons, mag.
        """
        return 1.0857 / np.sqrt(self.electrons(mag))

    def background(self, mag) -> np.ndarray:
        """Sky and read noise in the aperture (with the annulus estimate's), mag.

        Parameters
        ----------
        mag : float or array_like
            Magnitudes of the stars.

        Returns
        -------
        ndarray
            The background's noise relative to the star's electrons, mag (a negative sky counts as 0).
        """
        n = self.electrons(mag)
        extra = 1.0 + (self.n_pix / self.n_ann if math.isfinite(self.n_ann) and self.n_ann > 0 else 0.0)
        return 1.0857 * np.sqrt(self.n_pix * extra * (max(self.sky_adu, 0.0) * self.gain + self.read_noise_e**2)) / n

    def scintillation(self) -> float:
        """Young's scintillation, mag (0 when the diameter is unknown).

        Returns
        -------
        float
            The scintillation noise of one exposure, mag, the same for every star.
        """
        if not self.diameter_m > 0:
            return 0.0
        d_cm = 100.0 * self.diameter_m
        frac = (
            0.09
            * d_cm ** (-2 / 3)
            * max(self.airmass, 1.0) ** 1.75
            * math.exp(-self.height_m / 8000.0)
            / math.sqrt(2.0 * self.exptime)
        )
        return 1.0857 * frac

    def total(self, mag) -> np.ndarray:
        """All of it, mag.

        Parameters
        ----------
        mag : float or array_like
            Magnitudes of the stars.

        Returns
        -------
        ndarray
            The photon, background and scintillation noise added in quadrature, mag.
        """
        mag = np.asarray(mag, float)
        return np.sqrt(self.photon(mag) ** 2 + self.background(mag) ** 2 + self.scintillation() ** 2)


def object_scatter(points: pd.DataFrame, min_points: int, columns=None) -> pd.DataFrame:
    """Per object, the mean magnitude and the scatter (sample standard deviation) of each light-curve version.

    Parameters
    ----------
    points : DataFrame
        Light-curve points of one night: ``object_id``, the ``columns`` (default those of :data:`VERSIONS`)
        and ``flags``; saturated points are left out.
    min_points : int
        Objects with fewer points of ``mag`` are left out, and a version's scatter is NaN for an object with
        fewer points of it.
    columns : list of str, optional
        The light-curve versions to measure; default the columns of :data:`VERSIONS`.

    Returns
    -------
    DataFrame
        Indexed by object_id: ``n``, ``mean_mag`` and ``rms_<column>`` per version.
    """
    from skylake.frame.extract import SATURATED

    columns = list(columns or [c for c, _ in VERSIONS])
    p = points[(points["flags"].to_numpy() & SATURATED) == 0]
    g = p.groupby("object_id")
    out = pd.DataFrame({"n": g["mag"].count(), "mean_mag": g["mag"].mean().astype(np.float64)})
    for c in columns:  # plain floats (NaN, not pd.NA, where a version is missing)
        out[f"rms_{c}"] = g[c].std(ddof=1).where(g[c].count() >= min_points).astype(np.float64)
    return out[out["n"] >= min_points]
