"""Positions as unit vectors on the sphere, and angles as chords: what k-d trees of sky positions measure.

The one home of these conversions: the calibration's cross-match, the objects' association and queries
and the ensemble's star and frame matching all use them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["unit_vectors", "chord", "chord_to_arcsec", "vector_to_radec"]


def unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    """Unit vectors of positions in degrees.

    Parameters
    ----------
    ra_deg, dec_deg : array_like
        Right ascension and declination of each position [deg].

    Returns
    -------
    numpy.ndarray
        The (n, 3) unit vectors (float64).
    """
    ra, dec = np.radians(np.asarray(ra_deg, dtype=np.float64)), np.radians(np.asarray(dec_deg, dtype=np.float64))
    cos_dec = np.cos(dec)
    return np.column_stack((cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)))


def chord(radius_arcsec: float) -> float:
    """Chord length on the unit sphere of an angle in arcsec (what cKDTree distances measure).

    Parameters
    ----------
    radius_arcsec : float
        The angle [arcsec].

    Returns
    -------
    float
        The chord length on the unit sphere.
    """
    return 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)


def chord_to_arcsec(d: np.ndarray) -> np.ndarray:
    """Angle in arcsec of chord lengths on the unit sphere (the inverse of :func:`chord`).

    Parameters
    ----------
    d : numpy.ndarray
        Chord lengths on the unit sphere (clipped to 0..2).

    Returns
    -------
    numpy.ndarray
        The angles [arcsec].
    """
    return np.degrees(2.0 * np.arcsin(np.clip(np.asarray(d) / 2.0, 0.0, 1.0))) * 3600.0


def vector_to_radec(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec [deg] of (not necessarily unit) vectors.

    Parameters
    ----------
    xyz : numpy.ndarray
        The (n, 3) vectors.

    Returns
    -------
    ra : numpy.ndarray
        Right ascension of each vector [deg], in [0, 360).
    dec : numpy.ndarray
        Declination of each vector [deg].
    """
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    return np.degrees(np.arctan2(y, x)) % 360.0, np.degrees(np.arctan2(z, np.hypot(x, y)))
