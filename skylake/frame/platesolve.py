"""Plate solving for narrow-field frames without a WCS (an optional per-frame step).

Two solvers, chosen by what was measured on the 14 real SkyCamZ frames (see the tests):

* :func:`solve_frame` (``solver = "skylake"``, the default): sep detections are matched against the
  lake's own reference catalogue (e.g. Tycho-2) near the header's approximate pointing. A grid over
  rotation (both parities) and a narrow range of plate scale around the hint votes on the offset
  between every detection and every catalogue star projected on the tangent plane at the hint;
  the fullest offset cell identifies the pairs, and :func:`astropy.wcs.utils.fit_wcs_from_points`
  fits a TAN (optionally TAN-SIP) WCS, re-matched with a shrinking tolerance. Needs no extra
  package and no index files.
* :func:`solve_astrometry_net`: Debian's ``solve-field`` with the ``astrometry-data-tycho2-*`` index
  packages; blind (no hint needed), or near a pointing known only roughly, within a wall-time limit.

At ingest (:func:`solve_for_ingest`) a frame's WCS is its header's (method ``header``), else solved near
the pointing its header or profile gives (:mod:`skylake.frame.pointing`; method ``hinted``), else, or when
that fails, solved blind by astrometry.net (method ``blind``); the method is the frame's ``wcs_method``.

Both return a :class:`PlateSolution` with the WCS and its provenance (solver, rms in arcsec over
the stars used, star counts, time); an unsolvable frame raises :class:`PlateSolveError` whose
``reason`` says why (too few sources, no catalogue stars, no consistent match, poor fit).

Pixels are 0-based, x = column; angles in degrees unless named ``_arcsec``.
"""

from __future__ import annotations

import contextlib
import math
import time as _time
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skylake.frame.solve_settings import PlateSolveSettings, platesolve_settings
from skylake.robust import MAD_TO_SIGMA

__all__ = [
    "PlateSolution",
    "PlateSolveError",
    "PlateSolveSettings",
    "solve_frame",
    "solve_astrometry_net",
    "detect_sources",
    "strip_wcs",
    "read_reference_cone",
    "compare_wcs",
    "WCS_KEYS",
    "solve_for_ingest",
    "SKYLAKE_MAX_RADIUS_DEG",
    "METHODS",
]

#: Header keywords removed by :func:`strip_wcs` (and replaced by a solution).
WCS_KEYS = (
    "CTYPE1",
    "CTYPE2",
    "CUNIT1",
    "CUNIT2",
    "CRVAL1",
    "CRVAL2",
    "CRPIX1",
    "CRPIX2",
    "CD1_1",
    "CD1_2",
    "CD2_1",
    "CD2_2",
    "CDELT1",
    "CDELT2",
    "CROTA1",
    "CROTA2",
    "PC1_1",
    "PC1_2",
    "PC2_1",
    "PC2_2",
    "WCSAXES",
    "LONPOLE",
    "LATPOLE",
    "EQUINOX",
    "RADESYS",
    "RADECSYS",
    "A_ORDER",
    "B_ORDER",
    "AP_ORDER",
    "BP_ORDER",
    "IMAGEW",
    "IMAGEH",
)


class PlateSolveError(RuntimeError):
    """A frame could not be solved.

    The arguments are kept as the ``reason`` and ``blank`` attributes.

    Parameters
    ----------
    reason : str
        Why, meant for the frames table (the exception's message).
    blank : bool
        Whether the frame itself has too few sources for any solver (no other method is worth trying).
    """

    def __init__(self, reason: str, blank: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.blank = blank


@dataclass
class PlateSolution:
    """A solved WCS and where it came from.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        TAN or TAN-SIP, pixel convention of astropy (``*_pix2world(..., 0)`` is 0-based).
    solver : str
        ``"skylake"`` or ``"astrometry.net"``.
    rms_arcsec : float
        rms distance between the matched stars' catalogue and fitted positions, arcsec.
    n_stars : int
        Stars in the final fit.
    n_detected : int
        Sources detected on the frame.
    scale_arcsec : float
        Mean pixel scale of the solution, arcsec/px.
    rotation_deg : float
        Position angle of the image +y axis, deg E of N.
    parity : int
        +1 for the usual sky orientation (det(CD) < 0), -1 mirrored.
    elapsed_s : float
        Wall time of the solve, s.
    matched : Table
        ``x``, ``y`` (px), ``ra``, ``dec`` (deg), ``mag``, ``sep_arcsec`` of the final pairs.
    notes : dict
        Solver-specific details (votes, search parameters, command line).
    """

    wcs: WCS
    solver: str
    rms_arcsec: float
    n_stars: int
    n_detected: int
    scale_arcsec: float
    rotation_deg: float
    parity: int
    elapsed_s: float
    matched: Table = None
    notes: dict = field(default_factory=dict)

    def header(self) -> fits.Header:
        """Write the WCS as header cards, with provenance cards ``PSSOLVER``, ``PSRMS``, ``PSNSTARS``.

        Returns
        -------
        header : astropy.io.fits.Header
            The WCS cards (SIP included) and the provenance cards.
        """
        h = self.wcs.to_header(relax=True)
        h["PSSOLVER"] = (self.solver, "plate solver")
        h["PSRMS"] = (round(self.rms_arcsec, 4), "[arcsec] plate solution rms")
        h["PSNSTARS"] = (self.n_stars, "stars in the plate solution")
        return h

    def provenance(self) -> dict:
        """Give the solution's scalars for a frame row.

        Returns
        -------
        provenance : dict
            ``wcs_solver``, ``wcs_rms_arcsec``, ``wcs_n_stars``, ``wcs_scale_arcsec``, ``wcs_rotation_deg``,
            ``wcs_parity`` and ``wcs_solve_s``.
        """
        return {
            "wcs_solver": self.solver,
            "wcs_rms_arcsec": float(self.rms_arcsec),
            "wcs_n_stars": int(self.n_stars),
            "wcs_scale_arcsec": float(self.scale_arcsec),
            "wcs_rotation_deg": float(self.rotation_deg),
            "wcs_parity": int(self.parity),
            "wcs_solve_s": float(self.elapsed_s),
        }


def strip_wcs(header: fits.Header) -> fits.Header:
    """Copy ``header`` without WCS keywords (including SIP ``A_i_j``/``B_i_j``/``AP``/``BP``).

    Parameters
    ----------
    header : astropy.io.fits.Header
        The header, left as it is.

    Returns
    -------
    stripped : astropy.io.fits.Header
        A copy without :data:`WCS_KEYS`, SIP (``A_``, ``B_``, ``AP_``, ``BP_``) and ``PV`` cards.
    """
    h = header.copy()
    for k in list(h.keys()):
        if k in WCS_KEYS or any(k.startswith(p) for p in ("A_", "B_", "AP_", "BP_")) or k.startswith("PV"):
            del h[k]
    return h


def read_reference_cone(
    path, ra_deg: float, dec_deg: float, radius_deg: float, *, columns=("ra", "dec", "mag_vt")
) -> Table:
    """Read the stars of a Parquet reference catalogue within ``radius_deg`` of a position.

    Parameters
    ----------
    path : str
        The Parquet file (``ra``, ``dec`` deg and a magnitude).
    ra_deg, dec_deg : float
        The position, deg.
    radius_deg : float
        The cone's radius, deg.
    columns : tuple of str
        The RA, Dec and magnitude columns to read.

    Returns
    -------
    stars : astropy.table.Table
        ``ra``, ``dec`` (deg) and ``mag`` (the magnitude column, as float) of the stars in the cone.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dmin, dmax = dec_deg - radius_deg, dec_deg + radius_deg
    t = pq.read_table(path, columns=list(columns), filters=[("dec", ">=", dmin), ("dec", "<=", dmax)])
    ra = t.column(columns[0]).to_numpy()
    dec = t.column(columns[1]).to_numpy()
    sep = _angsep(ra, dec, ra_deg, dec_deg)
    keep = sep <= radius_deg
    mag = pc.cast(t.column(columns[2]), "float64").to_numpy(zero_copy_only=False)
    return Table({"ra": ra[keep], "dec": dec[keep], "mag": mag[keep]})


def _angsep(ra1, dec1, ra2, dec2):
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    s = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(s, 0, 1))))


def _tangent(ra, dec, ra0, dec0):
    """Gnomonic projection (xi, eta) in arcsec about (ra0, dec0)."""
    ra, dec = np.radians(ra), np.radians(dec)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    cosc = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(ra - a0)
    xi = np.cos(dec) * np.sin(ra - a0) / cosc
    eta = (np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(ra - a0)) / cosc
    k = 180.0 / math.pi * 3600.0
    return xi * k, eta * k


def _untangent(xi, eta, ra0, dec0):
    k = 180.0 / math.pi * 3600.0
    x, y = np.asarray(xi) / k, np.asarray(eta) / k
    d0 = math.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(d0) + np.where(rho > 0, y * np.sin(c) * np.cos(d0) / rho, 0))
        ra = math.radians(ra0) + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.mod(np.degrees(ra), 360.0), np.degrees(dec)


def detect_sources(image: np.ndarray, *, thresh: float = 5.0, mesh_px: int = 64, minarea: int = 5) -> Table:
    """Detect point sources for matching.

    sep detects at ``thresh`` x global rms; the sources kept are unflagged and not elongated, with windowed
    centroids, brightest first.

    Parameters
    ----------
    image : numpy.ndarray
        The frame; non-finite pixels are masked.
    thresh : float
        Detection threshold, x global background rms.
    mesh_px : int
        Background mesh size, px.
    minarea : int
        Fewest pixels of a detection.

    Returns
    -------
    sources : astropy.table.Table
        ``x``, ``y`` (px) and ``flux`` of each source, brightest first.

    Raises
    ------
    PlateSolveError
        The image has no finite pixel.
    """
    import sep

    data = np.ascontiguousarray(image, dtype=np.float64)
    bad = ~np.isfinite(data)
    if bad.all():
        raise PlateSolveError("no finite pixels")
    if bad.any():
        data = np.where(bad, np.nanmedian(data), data)
    bkg = sep.Background(data, mask=bad, bw=mesh_px, bh=mesh_px)
    sub = data - bkg.back()
    objs = sep.extract(sub, thresh, err=bkg.globalrms, mask=bad, minarea=minarea)
    if len(objs) == 0:
        return Table({"x": np.zeros(0), "y": np.zeros(0), "flux": np.zeros(0)})
    ok = (objs["flag"] == 0) & (objs["b"] / np.maximum(objs["a"], 1e-6) > 0.5) & (objs["flux"] > 0)
    objs = objs[ok]
    sig = np.clip(np.sqrt(objs["a"] * objs["b"]), 0.5, 5.0)
    xw, yw, f = sep.winpos(sub, objs["x"], objs["y"], sig)
    good = (f == 0) & (np.hypot(xw - objs["x"], yw - objs["y"]) < 2)
    t = Table(
        {
            "x": np.where(good, xw, objs["x"]),
            "y": np.where(good, yw, objs["y"]),
            "flux": np.asarray(objs["flux"], float),
        }
    )
    t.sort("flux", reverse=True)
    return t


def _vote(dx, dy, cxi, ceta, scale, rotations, parity, bin_arcsec, max_off):
    """Best (votes, rotation index, offset xi, offset eta) of detections (centred px) against catalogue
    (xi, eta arcsec) for each rotation: histogram of all pairwise offsets."""
    th = np.radians(np.asarray(rotations, float))[:, None]
    c, s_ = np.cos(th), np.sin(th)
    px = (scale * (c * dx[None, :] * parity - s_ * dy[None, :])).astype(np.float32)
    py = (scale * (s_ * dx[None, :] * parity + c * dy[None, :])).astype(np.float32)
    nb = int(math.ceil(2 * max_off / bin_arcsec)) + 1
    ix = np.floor((cxi.astype(np.float32)[None, None, :] - px[:, :, None] + max_off) / bin_arcsec).astype(np.int32)
    iy = np.floor((ceta.astype(np.float32)[None, None, :] - py[:, :, None] + max_off) / bin_arcsec).astype(np.int32)
    inside = (ix >= 0) & (ix < nb) & (iy >= 0) & (iy < nb)
    nrot = len(rotations)
    rot_i = np.broadcast_to(np.arange(nrot, dtype=np.int64)[:, None, None], ix.shape)
    key = (rot_i[inside] * nb + ix[inside]) * nb + iy[inside]
    if key.size == 0:
        return 0, 0, 0.0, 0.0, np.zeros(nrot, int)
    if nrot * nb * nb <= 20_000_000:  # dense counting (fast) when the cells fit in memory
        counts = np.bincount(key, minlength=nrot * nb * nb).reshape(nrot, nb * nb)
        best_per_rot = counts.max(axis=1)
        ri = int(np.argmax(best_per_rot))
        cell = int(np.argmax(counts[ri]))
        votes = int(best_per_rot[ri])
    else:
        u, cnt = np.unique(key, return_counts=True)
        r_of = u // (nb * nb)
        best_per_rot = np.zeros(nrot, int)
        np.maximum.at(best_per_rot, r_of, cnt)
        k = int(np.argmax(cnt))
        ri, cell, votes = int(r_of[k]), int(u[k] % (nb * nb)), int(cnt[k])
    bx, by = cell // nb, cell % nb
    return votes, ri, (bx + 0.5) * bin_arcsec - max_off, (by + 0.5) * bin_arcsec - max_off, best_per_rot


def _fit_wcs(x, y, ra, dec, ra0, dec0, sip_degree):
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import fit_wcs_from_points

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sky = SkyCoord(ra, dec, unit="deg")
        if sip_degree:
            w = fit_wcs_from_points(
                (np.asarray(x), np.asarray(y)), sky, proj_point="center", projection="TAN", sip_degree=sip_degree
            )
        else:
            w = fit_wcs_from_points((np.asarray(x), np.asarray(y)), sky, proj_point="center", projection="TAN")
    return w


def _wcs_geometry(w: WCS):
    cd = w.pixel_scale_matrix
    det = np.linalg.det(cd)
    scale = math.sqrt(abs(det)) * 3600.0
    parity = 1 if det < 0 else -1
    rot = (
        math.degrees(math.atan2(-cd[0, 1], cd[1, 1])) % 360.0
        if parity == 1
        else math.degrees(math.atan2(cd[0, 1], cd[1, 1])) % 360.0
    )
    return scale, rot, parity


def _catalogue_near(catalog, ra_hint: float, dec_hint: float, radius: float, min_matches: int):
    """Take the catalogue stars within ``radius`` of the hint.

    Parameters
    ----------
    catalog : Table or DataFrame
        ``ra``, ``dec`` (deg) and ``mag`` (or ``mag_vt``, ``v_mag``, ``phot_g_mean_mag``).
    ra_hint, dec_hint : float
        The pointing hint, deg.
    radius : float
        The radius, deg.
    min_matches : int
        The fewest stars that can give a solution.

    Returns
    -------
    ra, dec, mag : numpy.ndarray
        The stars near the hint.

    Raises
    ------
    PlateSolveError
        Fewer than ``min_matches`` stars lie within the radius.
    """
    cat = Table(catalog) if not isinstance(catalog, Table) else catalog
    if "mag" not in cat.colnames:
        for alt in ("mag_vt", "v_mag", "phot_g_mean_mag"):
            if alt in cat.colnames:
                cat = cat.copy(copy_data=False)
                cat["mag"] = cat[alt]
                break
    ra_c = np.asarray(cat["ra"], float)
    dec_c = np.asarray(cat["dec"], float)
    mag_c = np.asarray(cat["mag"], float)
    near = _angsep(ra_c, dec_c, ra_hint, dec_hint) <= radius
    ra_c, dec_c, mag_c = ra_c[near], dec_c[near], mag_c[near]
    if near.sum() < min_matches:
        raise PlateSolveError(
            f"only {int(near.sum())} catalogue stars within {radius:.2f} deg of "
            f"({ra_hint:.4f}, {dec_hint:.4f}): no reference coverage"
        )
    return ra_c, dec_c, mag_c


def _coarse_search(dx, dy, cxi, ceta, shape, settings: PlateSolveSettings, max_off: float):
    """Vote over a coarse grid of rotation x parity x plate scale for the best similarity transform.

    Parameters
    ----------
    dx, dy : numpy.ndarray
        The detections, px from the image centre.
    cxi, ceta : numpy.ndarray
        The catalogue stars on the tangent plane at the hint, arcsec.
    shape : tuple of int
        The image's shape, ``(ny, nx)``.
    settings : PlateSolveSettings
        The settings (``scale_arcsec``, ``scale_tolerance``, ``rotation_step_deg``, ``match_px``).
    max_off : float
        The largest offset searched, arcsec.

    Returns
    -------
    best : tuple
        ``(votes, parity, scale, rotation, offset xi, offset eta, second votes)``.
    bin_arcsec : float
        The offset cell's size, arcsec.
    """
    ny, nx = shape
    scale0 = float(settings.scale_arcsec)
    tol = settings.scale_tolerance
    nscale = max(1, int(math.ceil(tol / 0.01)) * 2 + 1) if tol > 0 else 1
    scales = scale0 * (1 + np.linspace(-tol, tol, nscale)) if nscale > 1 else np.array([scale0])
    rotations = np.arange(0.0, 360.0, settings.rotation_step_deg)
    edge = 0.5 * math.hypot(nx, ny)
    bin_arcsec = (
        max(
            3 * settings.match_px,
            edge * math.radians(settings.rotation_step_deg) * 0.75,
            edge * (scales[1] - scales[0]) / scale0 if nscale > 1 else 0,
        )
        * scale0
    )
    best = None
    for parity in (1, -1):
        for sc in scales:
            votes, ri, ox, oy, per_rot = _vote(dx, dy, cxi, ceta, sc, rotations, parity, bin_arcsec, max_off)
            if best is None or votes > best[0]:
                second = (
                    np.max(np.delete(per_rot, [ri, (ri - 1) % len(per_rot), (ri + 1) % len(per_rot)]))
                    if len(per_rot) > 3
                    else 0
                )
                best = (votes, parity, sc, rotations[ri], ox, oy, int(second))
    return best, bin_arcsec


def _fine_search(dx, dy, cxi, ceta, edge: float, settings: PlateSolveSettings, max_off: float, coarse):
    """Refine the coarse transform: rotation in 0.1 deg steps, scale within 0.6 %, smaller offset cells.

    Parameters
    ----------
    dx, dy : numpy.ndarray
        The detections, px from the image centre.
    cxi, ceta : numpy.ndarray
        The catalogue stars on the tangent plane at the hint, arcsec.
    edge : float
        Half the image's diagonal, px.
    settings : PlateSolveSettings
        The settings (``rotation_step_deg``, ``match_px``).
    max_off : float
        The largest offset searched, arcsec.
    coarse : tuple
        The coarse ``(parity, scale, rotation)``.

    Returns
    -------
    scale, rotation, offset_xi, offset_eta : float
        The refined transform (arcsec/px, deg, arcsec).
    """
    parity, sc, rot = coarse
    fine = rot + np.arange(-settings.rotation_step_deg, settings.rotation_step_deg + 1e-9, 0.1)
    fbin = max(2 * settings.match_px, edge * math.radians(0.1)) * sc
    best_f = None
    for scf in sc * (1 + np.linspace(-0.006, 0.006, 5)):
        v2, ri2, ox2, oy2, _ = _vote(dx, dy, cxi, ceta, scf, fine, parity, fbin, max_off)
        if best_f is None or v2 > best_f[0]:
            best_f = (v2, scf, fine[ri2], ox2, oy2)
    _, sc, rot, ox, oy = best_f
    return sc, rot, ox, oy


def _predict_xieta(xx, yy, xc, yc, sc, rot, parity, ox, oy):
    """Predict the tangent-plane position of pixels from the searched rotation, scale and offset.

    Parameters
    ----------
    xx, yy : array_like
        Pixel positions, px.
    xc, yc : float
        The image centre, px.
    sc, rot, parity : float
        The plate scale (arcsec/px), rotation (deg) and parity.
    ox, oy : float
        The offset, arcsec.

    Returns
    -------
    px, py : numpy.ndarray
        Predicted (xi, eta), arcsec.
    """
    th = math.radians(rot)
    ddx, ddy = np.asarray(xx) - xc, np.asarray(yy) - yc
    px = sc * (math.cos(th) * ddx * parity - math.sin(th) * ddy) + ox
    py = sc * (math.sin(th) * ddx * parity + math.cos(th) * ddy) + oy
    return px, py


def _initial_wcs(xa, ya, pxi, peta, ra_c, dec_c, ra_hint, dec_hint, max_dist, votes, min_matches):
    """Pair each detection with the nearest catalogue star to its predicted position and fit a TAN WCS.

    Parameters
    ----------
    xa, ya : numpy.ndarray
        All detections, px.
    pxi, peta : numpy.ndarray
        Their predicted tangent-plane positions, arcsec.
    ra_c, dec_c : numpy.ndarray
        The catalogue stars, deg.
    ra_hint, dec_hint : float
        The pointing hint (the tangent point), deg.
    max_dist : float
        The farthest pair, arcsec.
    votes : int
        The search's votes (for the message).
    min_matches : int
        The fewest pairs that can give a solution.

    Returns
    -------
    wcs : astropy.wcs.WCS
        The fit.

    Raises
    ------
    PlateSolveError
        Fewer than ``min_matches`` pairs.
    """
    from scipy.spatial import cKDTree

    axi, aeta = _tangent(ra_c, dec_c, ra_hint, dec_hint)
    tree = cKDTree(np.column_stack([axi, aeta]))
    d, j = tree.query(np.column_stack([pxi, peta]), distance_upper_bound=max_dist)
    ok = np.isfinite(d)
    if ok.sum() < min_matches:
        raise PlateSolveError(
            f"no consistent match: only {int(ok.sum())} detections near catalogue stars "
            f"after the search (votes {votes})"
        )
    return _fit_wcs(xa[ok], ya[ok], ra_c[j[ok]], dec_c[j[ok]], ra_hint, dec_hint, 0)


def _refit_with_rematching(wcs, xa, ya, ra_c, dec_c, shape, ra_hint, dec_hint, settings: PlateSolveSettings):
    """Re-match detections and catalogue stars (mutual nearest) with a shrinking tolerance, refitting each time.

    SIP terms are fitted from the third round on, when enough stars match.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        The initial fit.
    xa, ya : numpy.ndarray
        All detections, px.
    ra_c, dec_c : numpy.ndarray
        The catalogue stars, deg.
    shape : tuple of int
        The image's shape, ``(ny, nx)``.
    ra_hint, dec_hint : float
        The pointing hint (the fit's tangent point), deg.
    settings : PlateSolveSettings
        The settings (``match_px``, ``min_matches``, ``sip_degree``).

    Returns
    -------
    wcs : astropy.wcs.WCS
        The last fit.
    di, cj : numpy.ndarray
        The matched detections' and catalogue stars' indices.
    sip : int
        The SIP degree of the last fit.

    Raises
    ------
    PlateSolveError
        Too few catalogue stars on the frame, or too few matches.
    """
    from scipy.spatial import cKDTree

    ny, nx = shape
    tols = [8.0, 4.0, settings.match_px * 1.5, settings.match_px]
    for it, tol_px in enumerate(tols + [settings.match_px]):
        cx_pix, cy_pix = wcs.all_world2pix(ra_c, dec_c, 0)
        inside = (cx_pix > -5) & (cx_pix < nx + 4) & (cy_pix > -5) & (cy_pix < ny + 4)
        ci = np.flatnonzero(inside)
        if ci.size < settings.min_matches:
            raise PlateSolveError(f"solution leaves only {ci.size} catalogue stars on the frame")
        ctree = cKDTree(np.column_stack([cx_pix[ci], cy_pix[ci]]))
        d1, j1 = ctree.query(np.column_stack([xa, ya]), distance_upper_bound=tol_px)
        dtree = cKDTree(np.column_stack([xa, ya]))
        d2, j2 = dtree.query(np.column_stack([cx_pix[ci], cy_pix[ci]]), distance_upper_bound=tol_px)
        hit = np.isfinite(d1)
        di = np.flatnonzero(hit)
        mutual = j2[j1[hit]] == di
        di = di[mutual]
        cj = ci[j1[hit][mutual]]
        if len(di) < settings.min_matches:
            raise PlateSolveError(
                f"poor fit: only {len(di)} stars match within {tol_px:.1f} px (need >= {settings.min_matches})"
            )
        sip = settings.sip_degree if (it >= 2 and len(di) >= 3 * (settings.sip_degree + 1) ** 2) else 0
        wcs = _fit_wcs(xa[di], ya[di], ra_c[cj], dec_c[cj], ra_hint, dec_hint, sip)
    return wcs, di, cj, sip


def _clip_once(wcs, xa, ya, ra_c, dec_c, di, cj, ra_hint, dec_hint, sip: int, scale0: float, min_matches: int):
    """Clip the matches robustly once (a double star or a mismatch) and refit; give the separations.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        The fit.
    xa, ya : numpy.ndarray
        All detections, px.
    ra_c, dec_c : numpy.ndarray
        The catalogue stars, deg.
    di, cj : numpy.ndarray
        The matched detections' and catalogue stars' indices.
    ra_hint, dec_hint : float
        The pointing hint (the fit's tangent point), deg.
    sip : int
        The SIP degree of the fit.
    scale0 : float
        The plate-scale hint, arcsec/px.
    min_matches : int
        The fewest matches a clip may leave.

    Returns
    -------
    wcs : astropy.wcs.WCS
        The final fit.
    di, cj : numpy.ndarray
        The matches kept.
    sep_arcsec : numpy.ndarray
        Their separations through ``wcs``, arcsec.
    """
    rr, dd = wcs.all_pix2world(xa[di], ya[di], 0)
    sep_arcsec = _angsep(rr, dd, ra_c[cj], dec_c[cj]) * 3600.0
    clip = sep_arcsec <= max(3 * MAD_TO_SIGMA * np.median(sep_arcsec) * 1.2, 0.2 * scale0)
    if clip.sum() >= min_matches and not clip.all():
        di, cj = di[clip], cj[clip]
        wcs = _fit_wcs(xa[di], ya[di], ra_c[cj], dec_c[cj], ra_hint, dec_hint, sip)
        rr, dd = wcs.all_pix2world(xa[di], ya[di], 0)
        sep_arcsec = _angsep(rr, dd, ra_c[cj], dec_c[cj]) * 3600.0
    return wcs, di, cj, sep_arcsec


def solve_frame(
    image: np.ndarray, ra_hint: float, dec_hint: float, catalog, settings: PlateSolveSettings | None = None, **overrides
) -> PlateSolution:
    """Solve a narrow-field frame against a reference catalogue near a pointing hint.

    Parameters
    ----------
    image : 2-D array
        The frame.
    ra_hint, dec_hint : float
        Approximate field centre, deg (e.g. the header's ``RA_CENT``, ``DEC_CENT``).
    catalog : Table or DataFrame
        ``ra``, ``dec`` (deg) and ``mag`` (or ``mag_vt``) covering at least
        ``search_radius_deg`` + the field's half-diagonal around the hint
        (:func:`read_reference_cone`).
    settings : PlateSolveSettings
        Defaults unless given; keyword ``overrides`` change single settings. ``scale_arcsec``
        is required (the header's plate scale).
    **overrides
        Single settings of :class:`PlateSolveSettings` that replace those of ``settings``.

    Returns
    -------
    solution : PlateSolution
        The fitted TAN (or TAN-SIP) WCS with its provenance and the matched stars.

    Raises
    ------
    PlateSolveError
        With the reason when the frame cannot be solved.
    """
    t0 = _time.perf_counter()
    if settings is None:
        settings = PlateSolveSettings(**overrides)
    elif overrides:
        settings = PlateSolveSettings(**{**settings.__dict__, **overrides})
    if settings.scale_arcsec is None:
        raise PlateSolveError("no plate-scale hint (settings.scale_arcsec, e.g. the header's CCDSCALE)")
    image = np.asarray(image)
    if image.ndim != 2:
        raise PlateSolveError(f"image is not 2-D (shape {image.shape})")
    ny, nx = image.shape
    det = detect_sources(image, thresh=settings.detect_thresh)
    n_det = len(det)
    if n_det < settings.min_matches:
        raise PlateSolveError(
            f"only {n_det} sources detected above {settings.detect_thresh:g} sigma "
            f"(need >= {settings.min_matches}): blank, cloudy or defocused frame",
            blank=True,
        )
    scale0 = float(settings.scale_arcsec)
    half_diag_deg = 0.5 * math.hypot(nx, ny) * scale0 / 3600.0
    radius = settings.search_radius_deg + half_diag_deg * 1.05
    ra_c, dec_c, mag_c = _catalogue_near(catalog, ra_hint, dec_hint, radius, settings.min_matches)
    # catalogue density check: the search uses the brightest stars of the area; scale the count
    # so the search area holds about n_catalog x (area / field area) stars
    field_area = (nx * ny) * (scale0 / 3600.0) ** 2
    search_area = math.pi * radius**2
    n_cat = int(min(len(ra_c), max(settings.n_catalog, settings.n_catalog * search_area / field_area / 4)))
    order = np.argsort(np.nan_to_num(mag_c, nan=99.0))[:n_cat]
    cxi, ceta = _tangent(ra_c[order], dec_c[order], ra_hint, dec_hint)
    # detections: the brightest n_detections, centred on the image centre
    xc, yc = (nx - 1) / 2.0, (ny - 1) / 2.0
    nd = min(settings.n_detections, n_det)
    dx = np.asarray(det["x"][:nd], float) - xc
    dy = np.asarray(det["y"][:nd], float) - yc
    max_off = settings.search_radius_deg * 3600.0 + 4 * settings.match_px * scale0
    best, bin_arcsec = _coarse_search(dx, dy, cxi, ceta, (ny, nx), settings, max_off)
    votes, parity, sc, rot, ox, oy, second = best
    if votes < settings.min_matches:
        raise PlateSolveError(
            f"no consistent match: best rotation/offset has {votes} coincident stars "
            f"(need >= {settings.min_matches}); wrong pointing hint or plate scale, or no stars"
        )
    edge = 0.5 * math.hypot(nx, ny)
    sc, rot, ox, oy = _fine_search(dx, dy, cxi, ceta, edge, settings, max_off, (parity, sc, rot))
    # initial pairs from the similarity transform, then WCS fits with re-matching
    xa = np.asarray(det["x"], float)
    ya = np.asarray(det["y"], float)
    pxi, peta = _predict_xieta(xa, ya, xc, yc, sc, rot, parity, ox, oy)
    wcs = _initial_wcs(xa, ya, pxi, peta, ra_c, dec_c, ra_hint, dec_hint, 2.5 * bin_arcsec, votes, settings.min_matches)
    wcs, di, cj, sip = _refit_with_rematching(wcs, xa, ya, ra_c, dec_c, (ny, nx), ra_hint, dec_hint, settings)
    wcs, di, cj, sep_arcsec = _clip_once(
        wcs, xa, ya, ra_c, dec_c, di, cj, ra_hint, dec_hint, sip, scale0, settings.min_matches
    )
    rms = float(np.sqrt(np.mean(sep_arcsec**2)))
    max_rms = settings.max_rms_arcsec if settings.max_rms_arcsec is not None else scale0
    if rms > max_rms:
        raise PlateSolveError(f"poor fit: rms {rms:.2f} arcsec over {len(di)} stars exceeds {max_rms:.2f} arcsec")
    scale, rotation, par = _wcs_geometry(wcs)
    matched = Table(
        {"x": xa[di], "y": ya[di], "ra": ra_c[cj], "dec": dec_c[cj], "mag": mag_c[cj], "sep_arcsec": sep_arcsec}
    )
    return PlateSolution(
        wcs=wcs,
        solver="skylake",
        rms_arcsec=rms,
        n_stars=int(len(di)),
        n_detected=n_det,
        scale_arcsec=scale,
        rotation_deg=rotation,
        parity=par,
        elapsed_s=_time.perf_counter() - t0,
        matched=matched,
        notes={
            "votes": votes,
            "second_votes": second,
            "sip_degree": sip,
            "search_radius_deg": settings.search_radius_deg,
            "n_catalog_search": n_cat,
        },
    )


def compare_wcs(w1: WCS, w2: WCS, shape, *, n: int = 11) -> dict:
    """Compute angular differences (arcsec) between two WCS over an ``n x n`` grid of pixels spanning the image.

    Parameters
    ----------
    w1, w2 : astropy.wcs.WCS
        The two WCS.
    shape : tuple of int
        The image's shape, ``(ny, nx)``.
    n : int
        Grid points along each axis.

    Returns
    -------
    differences : dict
        ``rms``, ``max``, ``median`` of the differences, arcsec.
    """
    ny, nx = shape
    y, x = np.meshgrid(np.linspace(0, ny - 1, n), np.linspace(0, nx - 1, n), indexing="ij")
    r1, d1 = w1.all_pix2world(x.ravel(), y.ravel(), 0)
    r2, d2 = w2.all_pix2world(x.ravel(), y.ravel(), 0)
    s = _angsep(r1, d1, r2, d2) * 3600.0
    return {"rms": float(np.sqrt(np.mean(s**2))), "max": float(s.max()), "median": float(np.median(s))}


def _run_limited(cmd: list[str], timeout_s: float) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group: (exit code, stdout + stderr); exit code None when it ran past
    ``timeout_s`` of wall time and the whole group (solve-field and the engine it starts) was killed."""
    import os
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out or ""


def _solve_field_command(
    exe: str,
    xypath: str,
    shape,
    work: str,
    timeout_s: float,
    sip_degree: int,
    scale_range_arcsec,
    ra_hint,
    dec_hint,
    radius_deg: float,
):
    """Build the ``solve-field`` command line for an x/y list.

    Parameters
    ----------
    exe : str
        The ``solve-field`` executable.
    xypath : str
        The x/y list (FITS table, 1-based pixels).
    shape : tuple of int
        The image's shape, ``(ny, nx)``.
    work : str
        The directory of solve-field's files.
    timeout_s : float
        The wall-time limit, s (solve-field's CPU limit).
    sip_degree : int
        0 for a TAN solution, 2-4 for TAN-SIP.
    scale_range_arcsec : (low, high) or None
        The pixel scales searched, arcsec/px; None for any.
    ra_hint, dec_hint : float or None
        The position to search near, deg; None for a blind search.
    radius_deg : float
        The radius searched around the hint, deg.

    Returns
    -------
    cmd : list of str
        The command.
    searched : list of str
        What the search was limited to, for messages.
    """
    ny, nx = shape
    cmd = [
        exe,
        xypath,
        "--width",
        str(nx),
        "--height",
        str(ny),
        "--overwrite",
        "--no-plots",
        "--no-verify",
        "--dir",
        work,
        "--temp-dir",
        work,
        "--cpulimit",
        str(max(1, math.ceil(timeout_s))),
        "--no-remove-lines",
        "--uniformize",
        "0",
        "--crpix-center",
        "--objs",
        "60",
        "--tweak-order",
        str(sip_degree if sip_degree else 1),
    ]
    searched = []
    if scale_range_arcsec is not None:
        lo, hi = scale_range_arcsec
        cmd += ["--scale-units", "arcsecperpix", "--scale-low", f"{lo:.6g}", "--scale-high", f"{hi:.6g}"]
        searched.append(f'scales {lo:.4g}-{hi:.4g}"/px')
    if ra_hint is not None and dec_hint is not None:
        cmd += ["--ra", f"{ra_hint:.6f}", "--dec", f"{dec_hint:.6f}", "--radius", f"{radius_deg:g}"]
        searched.append(f"within {radius_deg:g} deg of ({ra_hint:.4f}, {dec_hint:.4f})")
    return cmd, searched


def _check_solve_field_run(code, out: str, wcs_path: str, timeout_s: float, elapsed: float, n_det: int, searched):
    """Raise the reason when a ``solve-field`` run gave no solution.

    Parameters
    ----------
    code : int or None
        Its exit code; None when it ran out of time and was killed.
    out : str
        Its output.
    wcs_path : str
        The WCS file it writes when it solves the field.
    timeout_s : float
        The wall-time limit, s.
    elapsed : float
        The time taken, s.
    n_det : int
        The number of sources it was given.
    searched : list of str
        What the search was limited to.

    Raises
    ------
    PlateSolveError
        It ran out of time, failed, or found no solution.
    """
    import os

    if code is None or (not os.path.exists(wcs_path) and "time limit reached" in out):
        raise PlateSolveError(
            f"astrometry.net found no solution within the time limit of {timeout_s:g} s "
            f"({n_det} sources{', ' if searched else ''}{', '.join(searched)})"
        )
    if code != 0:
        tail = out.strip().splitlines()[-2:]
        raise PlateSolveError(f"solve-field failed (exit {code}): {' | '.join(tail)}")
    if not os.path.exists(wcs_path):
        raise PlateSolveError(
            f"astrometry.net found no solution in {elapsed:.1f} s ({n_det} sources"
            f"{', ' if searched else ''}{', '.join(searched)})"
        )


def _corr_rms(corr: str) -> tuple[int, float]:
    """Read solve-field's matched stars: their count and rms separation (arcsec).

    Parameters
    ----------
    corr : str
        The ``.corr`` file (absent when nothing matched).

    Returns
    -------
    n_match : int
        The number of matched stars.
    rms : float
        Their rms separation, arcsec; NaN when there is none.
    """
    import os

    n_match, rms = 0, float("nan")
    if os.path.exists(corr):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its units ('degrees', 'none') are not FITS units
            c = Table.read(corr)
        if len(c):
            s = (
                _angsep(
                    np.asarray(c["field_ra"]),
                    np.asarray(c["field_dec"]),
                    np.asarray(c["index_ra"]),
                    np.asarray(c["index_dec"]),
                )
                * 3600.0
            )
            rms = float(np.sqrt(np.mean(s**2)))
            n_match = len(c)
    return n_match, rms


def solve_astrometry_net(
    image: np.ndarray,
    *,
    scale_arcsec: float | None = None,
    scale_tolerance: float = 0.1,
    scale_range_arcsec: tuple[float, float] | None = None,
    ra_hint: float | None = None,
    dec_hint: float | None = None,
    radius_deg: float = 2.0,
    timeout_s: float = 120.0,
    sip_degree: int = 0,
    detect_thresh: float = 5.0,
    executable: str = "solve-field",
    keep_dir: str | None = None,
) -> PlateSolution:
    """Solve with astrometry.net's ``solve-field``, on sep detections written as an x/y list.

    Needs Debian ``astrometry.net`` plus the ``astrometry-data-tycho2-*`` index packages (fields from about
    0.5 deg wide). Blind unless ``ra_hint``/``dec_hint`` are given.

    Parameters
    ----------
    image : 2-D array
        The frame.
    scale_arcsec, scale_tolerance : float
        A pixel-scale hint (arcsec/px) and the fraction searched around it; or ``scale_range_arcsec``.
    scale_range_arcsec : (low, high)
        The range of pixel scales searched (arcsec/px). Neither: any scale (slow: ~10 s on a SkyCamZ frame
        against 0.2 s with its scale).
    ra_hint, dec_hint, radius_deg : float
        Search only index stars within ``radius_deg`` of this position (deg).
    timeout_s : float
        Wall-time limit: solve-field's CPU limit, and its process group is killed past it.
    sip_degree : int
        0 for a TAN solution, 2-4 for TAN-SIP.
    detect_thresh : float
        Detection threshold of sep (x global background rms).
    executable : str
        The ``solve-field`` command (looked up on the PATH).
    keep_dir : str, optional
        A directory for solve-field's files, kept afterwards; by default a temporary one, removed.

    Returns
    -------
    solution : PlateSolution
        The WCS read from solve-field's output, with the rms and count of its matched stars.

    Raises
    ------
    PlateSolveError
        ``solve-field`` is missing, fails, runs out of time, or finds no solution.
    """
    import shutil
    import tempfile

    t0 = _time.perf_counter()
    exe = shutil.which(executable)
    if exe is None:
        raise PlateSolveError(f"{executable} not found (Debian packages astrometry.net and astrometry-data-tycho2-*)")
    image = np.asarray(image)
    ny, nx = image.shape
    det = detect_sources(image, thresh=detect_thresh)
    if len(det) < 5:
        raise PlateSolveError(
            f"only {len(det)} sources detected above {detect_thresh:g} sigma: nothing to solve", blank=True
        )
    if scale_range_arcsec is None and scale_arcsec:
        scale_range_arcsec = (scale_arcsec * (1 - scale_tolerance), scale_arcsec * (1 + scale_tolerance))
    work = tempfile.mkdtemp(prefix="skylake-anet-") if keep_dir is None else keep_dir
    try:
        xy = Table(
            {
                "X": np.asarray(det["x"], float) + 1.0,
                "Y": np.asarray(det["y"], float) + 1.0,
                "FLUX": np.asarray(det["flux"], float),
            }
        )
        xypath = f"{work}/sources.xyls"
        xy.write(xypath, format="fits", overwrite=True)
        cmd, searched = _solve_field_command(
            exe, xypath, (ny, nx), work, timeout_s, sip_degree, scale_range_arcsec, ra_hint, dec_hint, radius_deg
        )
        code, out = _run_limited(cmd, timeout_s)
        elapsed = _time.perf_counter() - t0
        wcs_path = f"{work}/sources.wcs"
        _check_solve_field_run(code, out, wcs_path, timeout_s, elapsed, len(det), searched)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(fits.getheader(wcs_path))
        n_match, rms = _corr_rms(f"{work}/sources.corr")
        scale, rotation, par = _wcs_geometry(wcs)
        return PlateSolution(
            wcs=wcs,
            solver="astrometry.net",
            rms_arcsec=rms,
            n_stars=int(n_match),
            n_detected=len(det),
            scale_arcsec=scale,
            rotation_deg=rotation,
            parity=par,
            elapsed_s=_time.perf_counter() - t0,
            notes={"command": " ".join(cmd)},
        )
    finally:
        if keep_dir is None:
            shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# ingest: a profile's [platesolve] step (skylake.tasks.frame)
#: Widest pointing uncertainty (deg) searched by skylake's solver: its cost grows with the searched area
#: (SkyCamZ: 0.4 s at 0.5 deg, 1.8 s at 1 deg, 10 s at 2 deg), astrometry.net's hardly (0.2 s at 3 deg).
SKYLAKE_MAX_RADIUS_DEG = 1.0
#: The methods recorded in a frame's ``wcs_method``.
METHODS = ("header", "hinted", "blind")
#: Cards that give a WCS its pixel scale: a header WCS without any of them is partial.
_SCALE_CARDS = ("CD1_1", "CD1_2", "CD2_1", "CD2_2", "CDELT1", "CDELT2")


def _reference_cone(source: str, mag_column: str, ra: float, dec: float, radius_deg: float) -> Table:
    """Stars within ``radius_deg`` of (ra, dec) from a Parquet file or a lake refcat (HATS collection)."""
    import os

    if os.path.isfile(source):
        return read_reference_cone(source, ra, dec, radius_deg, columns=("ra", "dec", mag_column))
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    with open(os.path.join(source, "collection.properties")) as fh:
        props = dict(line.strip().split("=", 1) for line in fh if "=" in line and not line.startswith("#"))
    main = os.path.join(source, props.get("hats_primary_table_url", "").strip() or os.path.basename(source))
    data = pads.dataset(os.path.join(main, "dataset"), format="parquet", partitioning="hive")
    if mag_column not in data.schema.names:
        raise PlateSolveError(f"refcat {source} has no column {mag_column!r} (platesolve.mag_column)")
    flt = (pads.field("dec") >= dec - radius_deg) & (pads.field("dec") <= dec + radius_deg)
    t = data.to_table(columns=["ra", "dec", mag_column], filter=flt)
    keep = _angsep(t.column("ra").to_numpy(), t.column("dec").to_numpy(), ra, dec) <= radius_deg
    mag = pc.cast(t.column(mag_column), "float64").to_numpy(zero_copy_only=False)
    return Table({"ra": t.column("ra").to_numpy()[keep], "dec": t.column("dec").to_numpy()[keep], "mag": mag[keep]})


def _solve_hinted(
    image, pointing, scale, settings: PlateSolveSettings, cfg: dict, lake_root: str | None
) -> PlateSolution:
    """A solve near ``pointing``: skylake's solver against the refcat when the scale is known and the pointing
    is within :data:`SKYLAKE_MAX_RADIUS_DEG` (or solve-field is missing), else astrometry.net with the hints."""
    import os
    import shutil

    if scale.value is None or (pointing.radius_deg > SKYLAKE_MAX_RADIUS_DEG and shutil.which("solve-field")):
        return solve_astrometry_net(
            image,
            scale_range_arcsec=(scale.low, scale.high),
            ra_hint=pointing.ra,
            dec_hint=pointing.dec,
            radius_deg=pointing.radius_deg,
            timeout_s=cfg["timeout_s"],
            sip_degree=settings.sip_degree,
            detect_thresh=settings.detect_thresh,
        )
    refcat = cfg["refcat"]
    source = refcat if os.path.isabs(refcat) else os.path.join(lake_root or "", "refcats", refcat)
    if not (os.path.isfile(source) or os.path.isfile(os.path.join(source, "collection.properties"))):
        raise PlateSolveError(
            f"the lake has no refcat {refcat!r} (platesolve.refcat); import it with `skylake refcat import`"
        )
    settings = PlateSolveSettings(
        **{**settings.__dict__, "scale_arcsec": scale.value, "search_radius_deg": pointing.radius_deg}
    )
    ny, nx = np.shape(image)
    radius = pointing.radius_deg + 0.55 * math.hypot(nx, ny) * scale.value * (1 + settings.scale_tolerance) / 3600.0
    catalog = _reference_cone(source, cfg["mag_column"], pointing.ra, pointing.dec, radius + 0.1)
    return solve_frame(image, pointing.ra, pointing.dec, catalog, settings)


def _check_solution(sol: PlateSolution, settings: PlateSolveSettings) -> None:
    """astrometry.net's solution held to skylake's acceptance: enough stars, an rms within a pixel."""
    if sol.n_stars < settings.min_matches:
        raise PlateSolveError(f"poor fit: astrometry.net matched {sol.n_stars} stars (need >= {settings.min_matches})")
    max_rms = settings.max_rms_arcsec if settings.max_rms_arcsec is not None else sol.scale_arcsec
    if math.isfinite(sol.rms_arcsec) and sol.rms_arcsec > max_rms:
        raise PlateSolveError(
            f"poor fit: rms {sol.rms_arcsec:.2f} arcsec over {sol.n_stars} stars exceeds {max_rms:.2f} arcsec"
        )


def solve_for_ingest(
    image: np.ndarray, header: fits.Header, profile, lake_root: str | None, mjd: float | None = None
) -> tuple[fits.Header | None, dict, str]:
    """Place a frame on the sky under a profile's ``[platesolve]``.

    The header's own WCS is kept when it has one (and ``distrust_header_wcs`` is false): method
    ``header``. Otherwise the frame is solved near its pointing (the first ``ra_keys``/``dec_keys`` pair
    in the header in any form :mod:`skylake.frame.pointing` reads, else the profile's fixed
    ``pointing_radec``/``pointing_altaz``): method ``hinted``; and when it has none, or that solve fails,
    blind by astrometry.net (``blind = true``): method ``blind``. Both use the plate scale the profile, the
    header or its optics give, within ``[astrometry] pixscale_range``.

    Parameters
    ----------
    image : 2-D array
        The frame.
    header : astropy.io.fits.Header
        The frame's header.
    profile : skylake.profile.Profile
        With a ``[platesolve]`` section.
    lake_root : str or None
        Where a refcat named by ``platesolve.refcat`` is.
    mjd : float, optional
        The frame's mid-exposure MJD (UTC): places ``pointing_altaz`` on the sky.

    Returns
    -------
    header : astropy.io.fits.Header or None
        The header with the solved WCS cards; None when the header's WCS is kept.
    columns : dict
        Frame columns: ``wcs_method`` and, for a solve, ``wcs_source``, ``solved_wcs``, ``astrometry_*``.
    note : str
        What a solve set aside on the way (a failed hinted solve, a header scale outside the range); "".

    Raises
    ------
    skylake.errors.FrameRejected
        The pointing or scale in the header cannot be read (the reason names the keyword and value), or
        every method tried failed (the reason names each method and why).
    """
    import shutil

    from astropy.wcs import FITSFixedWarning

    from skylake.errors import FrameRejected
    from skylake.frame.pointing import fixed_pointing, header_pointing, scale_hint

    cfg = profile.platesolve
    # a WCS without a CD matrix or CDELT is partial (astropy would give it 1 deg/px): its CRVAL is a pointing
    if not cfg["distrust_header_wcs"] and any(k in header for k in _SCALE_CARDS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                if WCS(header, relax=True).has_celestial:
                    return None, {"wcs_method": "header"}, ""
            except Exception:  # noqa: BLE001 - a malformed WCS is solved instead
                pass
    settings = platesolve_settings(profile)
    pointing = header_pointing(header, cfg["ra_keys"], cfg["dec_keys"], cfg["ra_unit"], settings.search_radius_deg)
    if pointing is None:
        pointing = fixed_pointing(cfg, mjd, profile.site)
    scale = scale_hint(header, cfg, settings.scale_arcsec, settings.scale_tolerance, profile.astrometry.pixscale_range)
    notes = [scale.note] if scale.note else []
    tried: list[tuple[str, str]] = []
    sol = method = None
    if pointing is not None:
        try:
            sol = _solve_hinted(image, pointing, scale, settings, cfg, lake_root)
            if sol.solver == "astrometry.net":
                _check_solution(sol, settings)
            method = "hinted"
        except PlateSolveError as exc:
            sol = None
            at = f' at {scale.value:.4g}"/px from {scale.source}' if scale.value is not None else ""
            tried.append((f"hinted near {pointing.source} ({pointing.ra:.4f}, {pointing.dec:.4f}){at}", exc.reason))
            if exc.blank:  # nothing to solve: a blind solve would see the same blank frame
                raise FrameRejected(f"plate solving failed (hinted): {exc.reason}") from None
    elif not cfg["blind"]:
        raise FrameRejected(
            f"plate solving needs the pointing: none of {list(zip(cfg['ra_keys'], cfg['dec_keys']))} "
            f"in the header (platesolve.ra_keys, dec_keys), no platesolve.pointing_radec or "
            f"pointing_altaz, and platesolve.blind = false"
        )
    if sol is None and cfg["blind"]:
        if not shutil.which("solve-field"):
            tried.append(
                (
                    "blind",
                    "needs astrometry.net's solve-field (Debian packages astrometry.net and "
                    "astrometry-data-tycho2-*), which is not installed",
                )
            )
        else:
            try:
                sol = solve_astrometry_net(
                    image,
                    scale_range_arcsec=(scale.low, scale.high),
                    timeout_s=cfg["timeout_s"],
                    sip_degree=settings.sip_degree,
                    detect_thresh=settings.detect_thresh,
                )
                _check_solution(sol, settings)
                method = "blind"
            except PlateSolveError as exc:
                sol = None
                tried.append(("blind", exc.reason))
    if sol is None:
        names = ", ".join(name.split(" ")[0] for name, _ in tried)
        raise FrameRejected(f"plate solving failed ({names}): " + "; ".join(f"{name}: {why}" for name, why in tried))
    notes += [f"{name} failed ({why}); solved {method}" for name, why in tried]
    solved = strip_wcs(header)
    solved.update(sol.header())
    rec = {
        "wcs_source": f"platesolve:{sol.solver}",
        "wcs_method": method,
        "solved_wcs": sol.header().tostring(sep="\n"),
        "astrometry_rms_arcsec": sol.rms_arcsec,
        "astrometry_rms_px": sol.rms_arcsec / sol.scale_arcsec,
        "astrometry_n_stars": sol.n_stars,
    }
    return solved, rec, "; ".join(notes)
