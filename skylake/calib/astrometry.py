"""Astrometric residuals of a frame against its reference stars: pure numpy functions.

A residual is source minus reference position, ``dra = (ra - ra_ref) cos(dec_ref)`` and
``ddec = dec - dec_ref``, in arcsec. Per frame :func:`residual_stats` gives the median offset, the
median and rms separation, the linear trends of dra and ddec with x and y, and the trend of the
radial residual (outward from the chip centre) with radius, all per 1000 px: a wrong pixel scale
or an unmodelled radial distortion shows there.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ARCSEC_PER_DEG", "KPIX", "COLUMNS", "offsets_arcsec", "gnomonic", "residual_stats"]


ARCSEC_PER_DEG = 3600.0
KPIX = 1000.0  # trends are per 1000 px
#: Keys of :func:`residual_stats`, the ``astro_*`` columns of schemas/zeropoints.yaml in order.
COLUMNS = (
    "astro_n",
    "astro_dra_arcsec",
    "astro_ddec_arcsec",
    "astro_median_sep_arcsec",
    "astro_rms_arcsec",
    "astro_dra_dx",
    "astro_dra_dy",
    "astro_ddec_dx",
    "astro_ddec_dy",
    "astro_radial_dr",
)


def offsets_arcsec(ra, dec, ra_ref, dec_ref) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (dra cos dec, ddec) of source minus reference [arcsec]; RA differences wrap at 0/360.

    Parameters
    ----------
    ra, dec : array-like
        The sources' positions [deg].
    ra_ref, dec_ref : array-like
        The reference stars' positions [deg].

    Returns
    -------
    dra : numpy.ndarray
        ``(ra - ra_ref) cos(dec_ref)`` [arcsec].
    ddec : numpy.ndarray
        ``dec - dec_ref`` [arcsec].
    """
    dra = (np.asarray(ra, float) - np.asarray(ra_ref, float) + 180.0) % 360.0 - 180.0
    return (
        dra * np.cos(np.radians(np.asarray(dec_ref, float))) * ARCSEC_PER_DEG,
        (np.asarray(dec, float) - np.asarray(dec_ref, float)) * ARCSEC_PER_DEG,
    )


def gnomonic(ra, dec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane coordinates (xi, eta) [arcsec] of (ra, dec) about (ra0, dec0) [deg].

    Parameters
    ----------
    ra, dec : array-like
        The positions to project [deg].
    ra0 : float
        Right ascension of the tangent point [deg].
    dec0 : float
        Declination of the tangent point [deg].

    Returns
    -------
    xi : numpy.ndarray
        The gnomonic coordinate along RA [arcsec].
    eta : numpy.ndarray
        The gnomonic coordinate along Dec [arcsec].
    """
    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cos_c = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(ra - a0)
    xi = np.cos(dec) * np.sin(ra - a0) / cos_c
    eta = (np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(ra - a0)) / cos_c
    return np.degrees(xi) * ARCSEC_PER_DEG, np.degrees(eta) * ARCSEC_PER_DEG


def residual_stats(
    dra: np.ndarray,
    ddec: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    ra_ref: np.ndarray,
    dec_ref: np.ndarray,
    nx: float,
    ny: float,
) -> dict:
    """Residual statistics of one frame's pairs (keys are the ``astro_*`` columns of schemas/zeropoints.yaml).

    Trends are least-squares slopes [arcsec per 1000 px] and need at least 4 pairs (NaN otherwise).
    The radial trend maps each residual into pixel axes with the frame's local linear astrometry,
    fitted from the reference positions' tangent-plane coordinates against x, y.

    Parameters
    ----------
    dra, ddec : numpy.ndarray
        Each pair's residual, source minus reference (:func:`offsets_arcsec`) [arcsec].
    x, y : numpy.ndarray
        Each source's pixel position [px].
    ra_ref, dec_ref : numpy.ndarray
        Each reference star's position [deg].
    nx, ny : float
        The frame's size [px]; the chip centre is ``((nx - 1) / 2, (ny - 1) / 2)``.

    Returns
    -------
    dict
        :data:`COLUMNS` to their values: ``astro_n`` the pairs, then the median offsets, the median and rms
        separation [arcsec] and the trends [arcsec per 1000 px]; NaN where there are too few pairs.
    """
    dra, ddec, x, y = (np.asarray(v, float) for v in (dra, ddec, x, y))
    n = dra.size
    out = {**dict.fromkeys(COLUMNS, np.nan), "astro_n": n}
    if n == 0:
        return out
    sep2 = dra**2 + ddec**2
    out.update(
        astro_dra_arcsec=float(np.median(dra)),
        astro_ddec_arcsec=float(np.median(ddec)),
        astro_median_sep_arcsec=float(np.median(np.sqrt(sep2))),
        astro_rms_arcsec=float(np.sqrt(sep2.mean())),
    )
    if n < 4:
        return out
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    design = np.column_stack([np.ones(n), (x - cx) / KPIX, (y - cy) / KPIX])
    coef, _, rank, _ = np.linalg.lstsq(design, np.column_stack([dra, ddec]), rcond=None)
    if rank < 3:
        return out
    out.update(
        astro_dra_dx=float(coef[1, 0]),
        astro_dra_dy=float(coef[2, 0]),
        astro_ddec_dx=float(coef[1, 1]),
        astro_ddec_dy=float(coef[2, 1]),
    )
    # local astrometry: (xi, eta) ~ offset + A (x - cx, y - cy); residual in pixels = A^-1 (dra, ddec)
    xi, eta = gnomonic(ra_ref, dec_ref, float(np.median(ra_ref)), float(np.median(dec_ref)))
    lin, _, _, _ = np.linalg.lstsq(
        np.column_stack([np.ones(n), x - cx, y - cy]), np.column_stack([xi, eta]), rcond=None
    )
    jac = lin[1:].T  # arcsec per px
    det = np.linalg.det(jac)
    if not np.isfinite(det) or abs(det) < 1e-12:
        return out
    # the frame's mean offset is not a radial trend: take it out first
    res_px = np.linalg.solve(jac, np.vstack([dra - coef[0, 0], ddec - coef[0, 1]]))
    r = np.hypot(x - cx, y - cy)
    radial_arcsec = np.sqrt(abs(det)) * np.where(
        r > 0, ((x - cx) * res_px[0] + (y - cy) * res_px[1]) / np.where(r > 0, r, 1.0), 0.0
    )
    rr = r / KPIX
    if np.ptp(rr) > 0:
        out["astro_radial_dr"] = float(np.polyfit(rr, radial_arcsec, 1)[0])
    return out
