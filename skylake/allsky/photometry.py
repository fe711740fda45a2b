"""Forced aperture photometry of catalogue stars at predicted positions, and the cloud fraction.

:func:`forced_photometry` measures every predicted star whether or not it is there (as the MDM
all-sky pipeline does with the Bright Star Catalogue): a flux-weighted re-centroid within a few
px of the prediction, a circular aperture, and the median of a local annulus as background. The
flux error combines the annulus scatter in the aperture, the uncertainty of the annulus median
and (with a gain) Poisson noise.

:func:`cloud_fraction` counts which catalogue stars above an altitude limit are *seen*
(S/N above a threshold and the centroid within a tolerance of the prediction) and returns
``1 - seen / expected``: the quantity the IceAct/CTA project reports for its cameras (stars of
V < 4 above 20 deg altitude, matched within 0.25 deg).

Pixels 0-based, x = column; fluxes in ADU integrated over the exposure.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.table import Table

from skylake.allsky.camera import CameraModel
from skylake.robust import MAD_TO_SIGMA

__all__ = [
    "forced_photometry",
    "photometer_catalog",
    "cloud_fraction",
    "FLAG_EDGE",
    "FLAG_SHIFT",
    "FLAG_ANNULUS",
    "FLAG_SATURATED",
    "FLAG_BAD",
]

#: The aperture touches a masked/NaN pixel or the image edge.
FLAG_EDGE = 1
#: The re-centroid hit the allowed shift (kept at the limit).
FLAG_SHIFT = 2
#: Fewer than 8 usable annulus pixels (background unreliable).
FLAG_ANNULUS = 4
#: A pixel within the aperture is at or above the saturation level.
FLAG_SATURATED = 8
#: Flags that make a flux unusable for photometry (edge/mask, saturation).
FLAG_BAD = FLAG_EDGE | FLAG_SATURATED


def _row_median(a: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN (NaN for an all-NaN row); a sort, much faster than
    ``np.nanmedian`` along an axis."""
    n = np.isfinite(a).sum(axis=1)
    srt = np.sort(np.where(np.isfinite(a), a, np.inf), axis=1)
    lo = np.clip((n - 1) // 2, 0, a.shape[1] - 1)
    hi = np.clip(n // 2, 0, a.shape[1] - 1)
    rows = np.arange(a.shape[0])
    med = 0.5 * (srt[rows, lo] + srt[rows, hi])
    return np.where(n > 0, med, np.nan)


def _cutouts(pad_img: np.ndarray, R: int, cx, cy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square cutouts, ``2R + 1`` px wide, of the image padded by ``R`` (NaN) around ``cx``, ``cy``.

    Returns ``(cut, gx, gy)``: the cutouts (NaN off the image and on bad pixels) and each cutout pixel's
    offset from its centre in x and y, px.
    """
    ny, nx = pad_img.shape[0] - 2 * R, pad_img.shape[1] - 2 * R
    k = np.arange(-R, R + 1)
    ix = np.clip(np.round(cx).astype(int), -R, nx + R - 1)
    iy = np.clip(np.round(cy).astype(int), -R, ny + R - 1)
    rows = iy[:, None] + R + k[None, :]
    cols = ix[:, None] + R + k[None, :]
    rows = np.clip(rows, 0, pad_img.shape[0] - 1)
    cols = np.clip(cols, 0, pad_img.shape[1] - 1)
    cut = pad_img[rows[:, :, None], cols[:, None, :]]
    gx = (ix[:, None] + k[None, :])[:, None, :] - cx[:, None, None]
    gy = (iy[:, None] + k[None, :])[:, :, None] - cy[:, None, None]
    return cut, gx, gy


def _annulus(pad_img: np.ndarray, R: int, cx, cy, r_in: float, r_out: float) -> tuple:
    """Background of the annulus around each position: ``(mode, std, nann)``.

    The annulus pixels' 3-sigma clipped mode (``2.5 median - 1.5 mean``, the median when the distribution
    is too skewed) and standard deviation after clipping, ADU per px, and the usable pixels before clipping.
    """
    n = len(cx)
    cut, gx, gy = _cutouts(pad_img, R, cx, cy)
    r2 = gx**2 + gy**2
    ann = np.where((r2 >= r_in**2) & (r2 <= r_out**2), cut, np.nan).reshape(n, -1)
    nann = np.isfinite(ann).sum(axis=1)
    if not n:
        return np.zeros(0), np.zeros(0), nann
    # SExtractor-style: clip at +-3 sigma around the median (3 passes), then the mode
    # estimate 2.5 median - 1.5 mean unless the distribution is too skewed (then the median).
    # Unresolved faint stars in the annulus bias a plain median upwards.
    for _ in range(3):
        med = _row_median(ann)
        sig = MAD_TO_SIGMA * _row_median(np.abs(ann - med[:, None]))
        ann = np.where(np.abs(ann - med[:, None]) <= 3.0 * np.maximum(sig, 1e-30)[:, None], ann, np.nan)
    med = _row_median(ann)
    cnt = np.isfinite(ann).sum(axis=1)
    mean = np.where(cnt > 0, np.nansum(ann, axis=1) / np.maximum(cnt, 1), np.nan)
    var = np.where(cnt > 0, np.nansum((ann - mean[:, None]) ** 2, axis=1) / np.maximum(cnt, 1), np.nan)
    std = np.sqrt(var)
    mode = np.where(np.abs(mean - med) < 0.3 * np.maximum(std, 1e-30), 2.5 * med - 1.5 * mean, med)
    return mode, std, nann


def _recentroid(pad_img, R, cx, cy, bkg, recentroid_px, max_shift, iterations) -> tuple:
    """Windowed centroids from ``cx``, ``cy``, kept within ``max_shift`` of them: ``(x, y, over)``.

    ``over`` is True where the last iteration hit the shift limit.
    """
    x_c, y_c = cx.copy(), cy.copy()
    for _ in range(iterations):
        # windowed centroid (SExtractor's XWIN iteration): Gaussian window of sigma
        # recentroid_px / 2, step 2 x the weighted mean offset; unbiased for a symmetric PSF
        cut, gx, gy = _cutouts(pad_img, R, x_c, y_c)
        sw2 = (recentroid_px / 2.0) ** 2
        r2w = gx**2 + gy**2
        win = np.where(r2w <= (2.0 * recentroid_px) ** 2, np.exp(-0.5 * r2w / sw2), 0.0)
        w = np.clip(np.nan_to_num(cut - np.nan_to_num(bkg)[:, None, None], nan=0.0), 0, None) * win
        sw = w.sum(axis=(1, 2))
        ok = sw > 0
        dxc = np.where(ok, 2.0 * (w * gx).sum(axis=(1, 2)) / np.where(ok, sw, 1), 0.0)
        dyc = np.where(ok, 2.0 * (w * gy).sum(axis=(1, 2)) / np.where(ok, sw, 1), 0.0)
        x_n, y_n = x_c + dxc, y_c + dyc
        sx, sy = x_n - cx, y_n - cy
        s = np.hypot(sx, sy)
        over = s > max_shift
        scale = np.where(over, max_shift / np.maximum(s, 1e-12), 1.0)
        x_n, y_n = cx + sx * scale, cy + sy * scale
        done = np.hypot(x_n - x_c, y_n - y_c) < 0.01
        x_c, y_c = x_n, y_n
        if done.all():
            break
    return x_c, y_c, over


def _aperture_sums(img, bad, x_c, y_c, r_ap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums and effective areas of the apertures (sep, subpixel 5): ``(raw, area, edge)``.

    ``edge`` is True where the aperture touches a bad pixel or the image edge.
    """
    import sep

    ny, nx = img.shape
    # aperture sums with exact-ish pixel overlap (sep, subpixel 5), NaN/masked pixels flagged
    data = np.ascontiguousarray(np.where(bad, 0.0, img))
    raw, _, sflag = sep.sum_circle(data, x_c, y_c, r_ap, mask=bad, subpix=5)
    # the aperture's effective area: same pixels and sub-sampling as the sum (exact background
    # subtraction however the circle is pixelated, and masked pixels left out)
    area, _, _ = sep.sum_circle(np.ones_like(data), x_c, y_c, r_ap, mask=bad, subpix=5)
    edge = (sflag & sep.APER_HASMASKED) != 0
    edge |= (x_c - r_ap < -0.5) | (x_c + r_ap > nx - 0.5) | (y_c - r_ap < -0.5) | (y_c + r_ap > ny - 0.5)
    return raw, area, edge


def forced_photometry(
    image: np.ndarray,
    x,
    y,
    *,
    r_ap: float = 2.5,
    r_in: float = 5.0,
    r_out: float = 9.0,
    recentroid_px: float = 2.0,
    max_shift_px: float | None = None,
    gain: float | None = None,
    mask: np.ndarray | None = None,
    iterations: int = 5,
    saturation: float | None = None,
) -> Table:
    """Aperture photometry at given positions with local re-centroiding and annulus background.

    Parameters
    ----------
    image : numpy.ndarray
        The frame, 2-D, ADU (NaN where there is no data).
    x, y : array_like
        Predicted positions, px (0-based, x = column).
    r_ap : float, default 2.5
        Aperture radius, px.
    r_in, r_out : float
        Background annulus radii, px: 3-sigma clipped mode (``2.5 median - 1.5 mean``) of the
        annulus pixels, robust to the unresolved faint stars of a wide-field image.
    recentroid_px : float, default 2.0
        Centroiding scale, px: a Gaussian window of sigma ``recentroid_px / 2`` (SExtractor's
        windowed centroid); 0 measures at the predicted position.
    max_shift_px : float, optional
        Largest accepted distance of the centroid from the prediction (default ``recentroid_px``);
        beyond it the centroid is kept at the limit and :data:`FLAG_SHIFT` is set.
    gain : float, optional
        Gain, e-/ADU, for the Poisson term of the error.
    mask : numpy.ndarray of bool, optional
        True for pixels not to use.
    iterations : int, default 5
        Re-centroiding iterations.
    saturation : float, optional
        Pixel level (ADU) at or above which a star is flagged :data:`FLAG_SATURATED`.

    Returns
    -------
    astropy.table.Table
        ``x_pred``, ``y_pred``, ``x``, ``y`` (px, measured), ``shift_px``, ``flux``, ``flux_err``
        (ADU), ``snr``, ``bkg`` (ADU per px), ``bkg_rms`` (ADU per px), ``flag``.

    Raises
    ------
    ValueError
        If not ``0 < r_ap < r_in < r_out``, ``recentroid_px`` is negative or the image is not 2-D.
    """
    if not (0 < r_ap < r_in < r_out):
        raise ValueError(f"need 0 < r_ap < r_in < r_out, got r_ap={r_ap}, r_in={r_in}, r_out={r_out}")
    if recentroid_px < 0:
        raise ValueError(f"recentroid_px must be >= 0, got {recentroid_px}")
    max_shift = recentroid_px if max_shift_px is None else float(max_shift_px)
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    bad = ~np.isfinite(img)
    if mask is not None:
        bad = bad | np.asarray(mask, bool)
    xp = np.atleast_1d(np.asarray(x, float))
    yp = np.atleast_1d(np.asarray(y, float))
    n = len(xp)
    R = int(np.ceil(r_out + max_shift)) + 1
    pad_img = np.pad(np.where(bad, np.nan, img), R, constant_values=np.nan)
    finite = np.isfinite(xp) & np.isfinite(yp)
    cx = np.where(finite, xp, -10.0 * R)
    cy = np.where(finite, yp, -10.0 * R)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices for stars off the image
        bkg, bkg_rms, n_ann = _annulus(pad_img, R, cx, cy, r_in, r_out)
        flag = np.zeros(n, dtype=np.int32)
        if recentroid_px > 0 and n:
            x_c, y_c, over = _recentroid(pad_img, R, cx, cy, bkg, recentroid_px, max_shift, iterations)
            flag |= np.where(over, FLAG_SHIFT, 0).astype(np.int32)
            bkg, bkg_rms, n_ann = _annulus(pad_img, R, x_c, y_c, r_in, r_out)
        else:
            x_c, y_c = cx, cy
    raw, area, edge = _aperture_sums(img, bad, x_c, y_c, r_ap)
    flag |= np.where(edge, FLAG_EDGE, 0).astype(np.int32)
    flag |= np.where(n_ann < 8, FLAG_ANNULUS, 0).astype(np.int32)
    if saturation is not None and n:
        cut, gx, gy = _cutouts(pad_img, R, np.where(finite, x_c, -10.0 * R), np.where(finite, y_c, -10.0 * R))
        inap = (gx**2 + gy**2) <= (r_ap + 0.5) ** 2
        peak = np.nanmax(np.where(inap, cut, -np.inf).reshape(n, -1), axis=1)
        flag |= np.where(peak >= saturation, FLAG_SATURATED, 0).astype(np.int32)
    bkg0 = np.nan_to_num(bkg)
    flux = raw - bkg0 * area
    var = area * bkg_rms**2 + area**2 * bkg_rms**2 * (np.pi / 2) / np.maximum(n_ann, 1)
    if gain:
        var = var + np.clip(flux, 0, None) / gain
    err = np.sqrt(var)
    flux = np.where(finite & (n_ann > 0), flux, np.nan)
    err = np.where(finite & (n_ann > 0), err, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = flux / err
    return Table(
        {
            "x_pred": xp,
            "y_pred": yp,
            "x": np.where(finite, x_c, np.nan),
            "y": np.where(finite, y_c, np.nan),
            "shift_px": np.where(finite, np.hypot(x_c - cx, y_c - cy), np.nan),
            "flux": flux,
            "flux_err": err,
            "snr": snr,
            "bkg": bkg,
            "bkg_rms": bkg_rms,
            "flag": flag,
        }
    )


def cloud_fraction(
    stars: Table,
    *,
    model: CameraModel | None = None,
    alt_min_deg: float = 20.0,
    vmax: float = 4.0,
    snr_min: float = 5.0,
    max_offset_deg: float = 0.25,
    max_offset_px: float | None = None,
    use_flagged: bool = False,
) -> dict:
    """Fraction of the expected catalogue stars that are *not* seen.

    Parameters
    ----------
    stars : astropy.table.Table
        Forced photometry of predicted stars with ``alt`` (deg), ``mag`` and the columns of
        :func:`forced_photometry` (``snr``, ``shift_px``, ``flag``, ``x_pred``, ``y_pred``).
    model : CameraModel, optional
        Converts ``max_offset_deg`` to px at each star (radial plate scale); needed unless
        ``max_offset_px`` is given.
    alt_min_deg, vmax : float
        Stars counted: ``alt >= alt_min_deg`` and ``mag <= vmax``.
    snr_min : float, default 5.0
        A star is seen when its S/N is at least this ...
    max_offset_deg, max_offset_px : float
        ... and its centroid lies within this distance of the prediction (deg, or px when
        ``max_offset_px`` is given).
    use_flagged : bool, default False
        Count stars whose aperture touches masked pixels or the edge (flag 1); by default they are
        left out of both numbers (obstructed, not clouded).

    Returns
    -------
    dict
        ``cloud_fraction`` (NaN when no star is expected), ``n_seen``, ``n_expected`` and the
        boolean column ``seen`` (per row of ``stars``, False for rows not counted) and ``counted`` (the rows
        counted).

    Raises
    ------
    ValueError
        If neither ``model`` nor ``max_offset_px`` is given.
    """
    alt = np.asarray(stars["alt"], float)
    mag = np.asarray(stars["mag"], float)
    counted = (alt >= alt_min_deg) & (mag <= vmax) & np.isfinite(np.asarray(stars["x_pred"], float))
    if not use_flagged:
        counted &= (np.asarray(stars["flag"]) & FLAG_EDGE) == 0
    if max_offset_px is not None:
        tol = np.full(len(stars), float(max_offset_px))
    else:
        if model is None:
            raise ValueError(
                "cloud_fraction needs the camera model (or max_offset_px) to turn "
                f"max_offset_deg={max_offset_deg} into pixels"
            )
        tol = max_offset_deg * model.plate_scale(90.0 - alt)
    snr = np.asarray(stars["snr"], float)
    shift = np.asarray(stars["shift_px"], float)
    seen = counted & (np.nan_to_num(snr, nan=-1) >= snr_min) & (np.nan_to_num(shift, nan=np.inf) <= tol)
    n_exp = int(counted.sum())
    n_seen = int(seen.sum())
    return {
        "cloud_fraction": (1.0 - n_seen / n_exp) if n_exp else float("nan"),
        "n_seen": n_seen,
        "n_expected": n_exp,
        "seen": seen,
        "counted": counted,
    }


def photometer_catalog(
    image: np.ndarray,
    model: CameraModel,
    site,
    time,
    catalog,
    *,
    vmax: float = 6.0,
    alt_min_deg: float = 10.0,
    mag_column: str = "v_mag",
    edge_px: float = 2.0,
    mask: np.ndarray | None = None,
    neighbour_dmag: float = 1.0,
    psf_sigma_px: float = 1.0,
    **phot_kwargs,
) -> Table:
    """Predict the catalogue's stars on a frame and measure them (:func:`forced_photometry`).

    Parameters
    ----------
    image : numpy.ndarray
        The frame, 2-D, ADU (NaN where there is no data).
    model : CameraModel
        The camera model.
    site : skylake.allsky.camera.Site
        Where the camera stands.
    time : astropy.time.Time or str
        Mid-exposure time, UTC.
    catalog : astropy.table.Table or pandas.DataFrame
        ``ra``, ``dec`` (deg) and ``mag_column`` (the whole catalogue: fainter neighbours matter for
        blending).
    vmax : float, default 6.0
        Faintest magnitude measured.
    alt_min_deg : float, default 10.0
        Lowest altitude measured, deg.
    mag_column : str, default "v_mag"
        The catalogue's magnitude column (when it has no ``mag`` column).
    edge_px : float, default 2.0
        Stars predicted closer than this to the image edge are left out, px.
    mask : numpy.ndarray of bool, optional
        True for pixels not to use.
    neighbour_dmag : float, default 1.0
        Neighbours counted in ``isolation_deg`` are at most this much fainter.
    psf_sigma_px : float, default 1.0
        Gaussian PSF sigma for the ``blend`` column, px.
    **phot_kwargs
        Passed to :func:`forced_photometry` (``r_ap`` also sets the aperture of ``blend``).

    Returns
    -------
    astropy.table.Table
        The visible stars (:func:`skylake.allsky.catalog.visible_stars`: catalogue columns,
        ``mag``, ``alt``, ``az``, ``isolation_deg``, ``blend`` for the aperture and ``psf_sigma_px``)
        joined with the photometry columns (``x``, ``y`` are the measured centroids, ``x_pred``,
        ``y_pred`` the predictions), brightest first.
    """
    from skylake.allsky.catalog import visible_stars

    stars = visible_stars(
        catalog,
        model,
        site,
        time,
        np.shape(image),
        vmax=vmax,
        alt_min_deg=alt_min_deg,
        edge_px=edge_px,
        mag_column=mag_column,
        neighbour_dmag=neighbour_dmag,
        aperture_px=phot_kwargs.get("r_ap", 2.5),
        psf_sigma_px=psf_sigma_px,
    )
    phot = forced_photometry(image, stars["x"], stars["y"], mask=mask, **phot_kwargs)
    stars.remove_columns(["x", "y"])
    for c in phot.colnames:
        stars[c] = phot[c]
    return stars
