"""Bright-star catalogues for all-sky cameras (Hipparcos, or any table with ra, dec and a magnitude).

A catalogue here is an :class:`astropy.table.Table` with at least ``ra``, ``dec`` (deg, ICRS) and a
magnitude column (``v_mag`` by default). Proper motions are ignored: at the few arcmin per pixel
of an all-sky camera they do not matter.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from skylake.allsky.camera import CameraModel, Site

__all__ = ["read_hipparcos", "as_catalog", "visible_stars", "isolation_deg"]


def read_hipparcos(path, vmax: float | None = None) -> Table:
    """Read a Hipparcos FITS table (``HIP``, ``ra``, ``dec`` deg, ``v_mag``, ``variability``).

    Parameters
    ----------
    path : str or pathlib.Path
        FITS (optionally gzipped) binary table.
    vmax : float, optional
        Keep stars with ``v_mag <= vmax`` only.

    Returns
    -------
    astropy.table.Table
        Every column as float (``HIP`` as int64), rows with finite ``ra``, ``dec`` and ``v_mag`` only.

    Raises
    ------
    ValueError
        If the table lacks ``ra``, ``dec`` or ``v_mag``.
    """
    t = Table.read(path, hdu=1)
    missing = [c for c in ("ra", "dec", "v_mag") if c not in t.colnames]
    if missing:
        raise ValueError(f"{path}: not a Hipparcos table, missing columns {missing} (has {t.colnames})")
    t = Table({c: np.asarray(t[c], dtype=float) for c in t.colnames})
    if "HIP" in t.colnames:
        t["HIP"] = t["HIP"].astype(np.int64)
    keep = np.isfinite(t["ra"]) & np.isfinite(t["dec"]) & np.isfinite(t["v_mag"])
    if vmax is not None:
        keep &= t["v_mag"] <= vmax
    return t[keep]


def as_catalog(catalog, mag_column: str = "v_mag") -> Table:
    """Check and normalise a catalogue (Table, DataFrame or dict of arrays) to a Table.

    Parameters
    ----------
    catalog : astropy.table.Table or pandas.DataFrame or dict of array_like
        The catalogue, with ``ra``, ``dec`` (deg) and a magnitude column.
    mag_column : str, default "v_mag"
        The magnitude column copied to ``mag`` when the catalogue has no ``mag`` column.

    Returns
    -------
    astropy.table.Table
        Float columns ``ra``, ``dec``, ``mag`` (deg, deg, mag) and the others kept.

    Raises
    ------
    ValueError
        If ``ra``, ``dec`` or the magnitude column is missing.
    """
    if isinstance(catalog, Table):
        t = catalog.copy(copy_data=False)
    elif hasattr(catalog, "to_dict") and hasattr(catalog, "columns"):  # pandas
        t = Table.from_pandas(catalog)
    else:
        t = Table(dict(catalog))
    for c in ("ra", "dec"):
        if c not in t.colnames:
            raise ValueError(f"catalogue has no {c!r} column (has {t.colnames})")
    if "mag" not in t.colnames:
        if mag_column not in t.colnames:
            raise ValueError(f"catalogue has no magnitude column {mag_column!r} (has {t.colnames})")
        t["mag"] = np.asarray(t[mag_column], dtype=float)
    t["ra"] = np.asarray(t["ra"], dtype=float)
    t["dec"] = np.asarray(t["dec"], dtype=float)
    return t


def isolation_deg(ra_deg, dec_deg, mag=None, *, dmag: float = 2.0, k: int = 32) -> np.ndarray:
    """Distance (deg) of each star to its nearest neighbour in the same list that is at most ``dmag`` fainter.

    Any neighbour counts when ``mag`` is None. When none of the ``k`` nearest qualifies, the
    distance to the k-th nearest (a lower bound) is returned.

    Parameters
    ----------
    ra_deg, dec_deg : array_like
        The stars' positions, deg.
    mag : array_like, optional
        The stars' magnitudes.
    dmag : float, default 2.0
        Neighbours counted are at most this much fainter, mag.
    k : int, default 32
        Number of nearest neighbours looked at (the star itself included).

    Returns
    -------
    numpy.ndarray
        The distance per star, deg; inf for every star of a list of fewer than two.
    """
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    n = ra.size
    if n < 2:
        return np.full(n, np.inf)
    from scipy.spatial import cKDTree

    xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    kk = min(k, n)
    d, j = cKDTree(xyz).query(xyz, k=kk)
    ang = np.degrees(2.0 * np.arcsin(np.clip(d / 2.0, 0, 1)))
    if mag is None:
        return ang[:, 1]
    m = np.asarray(mag, dtype=float)
    relevant = m[j] <= m[:, None] + dmag
    relevant[:, 0] = False  # the star itself
    first = np.where(relevant.any(axis=1), np.argmax(relevant, axis=1), kk - 1)
    return ang[np.arange(n), first]


def _isolation_against(t, pool, dmag, k: int = 32):
    """``isolation_deg`` of the stars ``t`` against the neighbour list ``pool`` (see isolation_deg)."""
    from scipy.spatial import cKDTree

    if len(t) == 0 or len(pool) < 2:
        return np.full(len(t), np.inf)

    def xyz(tab):
        """Unit vectors of a table's ``ra``, ``dec`` (deg).

        Parameters
        ----------
        tab : astropy.table.Table
            Stars with ``ra``, ``dec``.

        Returns
        -------
        numpy.ndarray
            Array of shape (n, 3).
        """
        ra, dec = np.radians(np.asarray(tab["ra"], float)), np.radians(np.asarray(tab["dec"], float))
        return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])

    kk = min(k, len(pool))
    d, j = cKDTree(xyz(pool)).query(xyz(t), k=kk)
    ang = np.degrees(2.0 * np.arcsin(np.clip(d / 2.0, 0, 1)))
    pm = np.asarray(pool["mag"], float)[j]
    relevant = (pm <= np.asarray(t["mag"], float)[:, None] + dmag) & (ang > 1e-9)
    first = np.where(relevant.any(axis=1), np.argmax(relevant, axis=1), kk - 1)
    return ang[np.arange(len(t)), first]


def _aperture_fraction_table(r_ap: float, sigma: float, dmax: float, n: int = 200):
    """Fraction of a circular Gaussian (``sigma`` px) inside a circle of radius ``r_ap`` px whose
    centre is ``d`` px from the Gaussian's, on a grid of ``d`` from 0 to ``dmax``."""
    d = np.linspace(0.0, dmax, n)
    # integrate over the aperture in polar coordinates (rho, phi) about the aperture centre
    rho = (np.arange(64) + 0.5) / 64 * r_ap
    phi = (np.arange(64) + 0.5) / 64 * 2 * np.pi
    R, P = np.meshgrid(rho, phi, indexing="ij")
    xs, ys = R * np.cos(P), R * np.sin(P)
    w = R * (r_ap / 64) * (2 * np.pi / 64)
    frac = np.array([np.sum(w * np.exp(-((xs - di) ** 2 + ys**2) / (2 * sigma**2))) for di in d])
    return d, frac / (2 * np.pi * sigma**2)


def visible_stars(
    catalog,
    model: CameraModel,
    site: Site,
    time,
    shape,
    *,
    vmax: float = 6.0,
    alt_min_deg: float = 0.0,
    edge_px: float = 0.0,
    mag_column: str = "v_mag",
    neighbour_dmag: float = 1.0,
    aperture_px: float = 2.5,
    psf_sigma_px: float = 1.0,
    blend_dmag: float = 3.0,
) -> Table:
    """The catalogue stars a camera sees: alt/az and predicted pixel at ``time``.

    Parameters
    ----------
    catalog : Table or DataFrame
        ``ra``, ``dec`` (deg) and ``mag_column`` (pass the whole catalogue: neighbours fainter
        than ``vmax`` matter for blending).
    model : CameraModel
        Camera model.
    site : Site
        Where the camera stands.
    time : astropy.time.Time or str
        The exposure's mid time.
    shape : tuple of int
        Image shape ``(ny, nx)``; stars predicted outside it (closer than ``edge_px``) are dropped.
    vmax : float, default 6.0
        Faintest magnitude kept.
    alt_min_deg : float, default 0.0
        Lowest altitude kept, deg.
    edge_px : float, default 0.0
        Stars predicted closer than this to the image edge are dropped, px.
    mag_column : str, default "v_mag"
        The catalogue's magnitude column (when it has no ``mag`` column).
    neighbour_dmag : float, default 1.0
        Neighbours counted in the ``isolation_deg`` column are at most this much fainter than the
        star (1 mag = 40 % of its flux).
    aperture_px, psf_sigma_px, blend_dmag : float
        The ``blend`` column is the light of catalogue neighbours (down to ``blend_dmag`` fainter)
        that falls into the star's aperture of radius ``aperture_px`` (Gaussian PSF of
        ``psf_sigma_px``, at their predicted distance), relative to the star's own light in it:
        0.1 means the aperture sum is 10 % above the star's.

    Returns
    -------
    astropy.table.Table
        Input columns plus ``mag``, ``alt``, ``az`` (deg), ``x``, ``y`` (px), ``isolation_deg``
        (distance to the nearest other star at most ``neighbour_dmag`` fainter, deg) and ``blend``,
        brightest first.
    """
    from scipy.spatial import cKDTree

    t = as_catalog(catalog, mag_column)
    pool = t[np.isfinite(t["mag"]) & (t["mag"] <= vmax + max(neighbour_dmag, blend_dmag))]
    alt, az = site.radec_to_altaz(pool["ra"], pool["dec"], time)
    keep = alt >= alt_min_deg - 2.0
    pool = pool[keep]
    pool["alt"] = alt[keep]
    pool["az"] = az[keep]
    x, y = model.altaz_to_pixel(pool["alt"], pool["az"])
    pool["x"] = x
    pool["y"] = y
    t = pool[(pool["mag"] <= vmax) & (pool["alt"] >= alt_min_deg)]
    ny, nx = int(shape[0]), int(shape[1])
    xt, yt = np.asarray(t["x"], float), np.asarray(t["y"], float)
    inside = (
        np.isfinite(xt)
        & np.isfinite(yt)
        & (xt >= edge_px - 0.5)
        & (xt <= nx - 0.5 - edge_px)
        & (yt >= edge_px - 0.5)
        & (yt <= ny - 0.5 - edge_px)
    )
    t = t[inside]
    t["isolation_deg"] = _isolation_against(t, pool, neighbour_dmag)
    blend = np.zeros(len(t))
    fin = np.isfinite(x) & np.isfinite(y)
    if len(t) and fin.sum() > 1:
        radius = aperture_px + 4.0 * psf_sigma_px
        dgrid, frac = _aperture_fraction_table(aperture_px, psf_sigma_px, radius)
        xf, yf = x[fin], y[fin]
        tree = cKDTree(np.column_stack([xf, yf]))
        pm = np.asarray(pool["mag"], float)[fin]
        for i, nb in enumerate(tree.query_ball_point(np.column_stack([t["x"], t["y"]]), radius)):
            nb = np.asarray(nb, int)
            d = np.hypot(xf[nb] - t["x"][i], yf[nb] - t["y"][i])
            other = (d > 1e-6) & (pm[nb] <= t["mag"][i] + blend_dmag)
            f = 10 ** (-0.4 * (pm[nb][other] - t["mag"][i]))
            blend[i] = np.sum(f * np.interp(d[other], dgrid, frac)) / frac[0]
    t["blend"] = blend
    t.sort("mag")
    return t
