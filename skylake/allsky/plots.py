"""Pictures an all-sky observer expects: zenith-centred polar maps, drawn as seen from below.

Every polar plot has the zenith in the centre, the horizon on the rim, North up and East to the
LEFT (the sky as seen lying on your back with your head to the North; matplotlib polar axes with
``theta_zero_location = "N"`` and counter-clockwise azimuth); the radius is the zenith angle, the
rings are labelled in altitude. Titles say so. Figures are 8 x 8 in at 100 dpi (800 px) with
fonts that stay readable at that size; every function writes a PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "plot_transparency",
    "STAR_COUNTS",
    "plot_sky_brightness",
    "plot_sky_brightness_map",
    "plot_stars",
    "plot_fit_residuals",
    "plot_model_offsets",
    "plot_foreground_mask",
    "CONVENTION",
]

CONVENTION = "N up, E left (seen from below); centre = zenith"
#: What a transparency map's numbers are.
STAR_COUNTS = "numbers: stars seen / stars a clear sky shows"
_FONT = {"font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "xtick.labelsize": 12, "ytick.labelsize": 12}


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _polar_axes(fig, rect=None, alt_min_deg: float = 0.0):
    ax = fig.add_subplot(111, projection="polar") if rect is None else fig.add_axes(rect, projection="polar")
    ax.set_theta_zero_location("N")
    ax.set_theta_direction(1)  # counter-clockwise: East to the left of North
    ax.set_rlim(0, 90.0 - alt_min_deg)
    rings = [r for r in (30, 60, 90) if r <= 90.0 - alt_min_deg]
    import matplotlib.patheffects as pe

    _, labels = ax.set_rgrids(rings, labels=[f"alt {90 - r:g}°" for r in rings], angle=112.5, color="k", fontsize=11)
    for lab in labels:
        lab.set_path_effects([pe.withStroke(linewidth=3, foreground="w")])
    ax.set_thetagrids([0, 45, 90, 135, 180, 225, 270, 315], labels=["N", "NE", "E", "SE", "S", "SW", "W", "NW"])
    ax.grid(True, color="0.6", lw=0.6, alpha=0.7)
    return ax


def _finish(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _healpix_patches(nside: int, pixels, frame: str, site=None, time=None):
    """Polygons (az rad, zenith angle deg) of NESTED HEALPix pixels in horizon or equatorial frame
    (one astropy transform for all the vertices)."""
    import healpy as hp

    pixels = np.asarray(pixels, np.int64)
    if pixels.size == 0:
        return []
    b = np.asarray(hp.boundaries(nside, pixels, step=4, nest=True)).reshape(len(pixels), 3, -1)  # (n, 3, 16)
    vec = np.transpose(b, (0, 2, 1)).reshape(-1, 3)
    lon, lat = hp.vec2ang(vec, lonlat=True)
    if frame == "equatorial":
        alt, az = site.radec_to_altaz(lon, lat, time)
    else:
        alt, az = lat, lon
    nv = b.shape[2]
    alt = np.asarray(alt).reshape(len(pixels), nv)
    az = np.asarray(az).reshape(len(pixels), nv)
    return [(np.radians(az[i]), 90.0 - alt[i]) for i in range(len(pixels))]


def _draw_healpix(ax, nside, table, column, frame, cmap, vmin, vmax, site=None, time=None, alt_min_deg=0.0, polys=None):
    from matplotlib.collections import PolyCollection

    if polys is None:
        polys = _healpix_patches(nside, table["pixel"], frame, site, time)
    verts = []
    vals = []
    for (th, r), v in zip(polys, np.asarray(table[column], float)):
        if not np.isfinite(v) or np.all(r > 90.0 - alt_min_deg):
            continue
        # unwrap azimuth so a pixel across North is not drawn around the whole circle
        th = np.unwrap(th)
        r = np.clip(r, 0, 90.0 - alt_min_deg)
        verts.append(np.column_stack([th, r]))
        vals.append(v)
    pc = PolyCollection(verts, array=np.asarray(vals), cmap=cmap, edgecolors="face", linewidths=0.3)
    pc.set_clim(vmin, vmax)
    ax.add_collection(pc)
    return pc


def _span(values, vmin=None, vmax=None, limits=(-np.inf, np.inf), clip_pct: float = 0.0):
    """Colour range: the data's min and max (or the ``clip_pct`` and ``100 - clip_pct``
    percentiles, for images with a few outlying pixels), kept within ``limits``; also the colour
    bar's ``extend`` ("neither", "min", "max", "both") when data fall outside the range."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not v.size:
        return 0.0, 1.0, "neither"
    dlo, dhi = np.percentile(v, [clip_pct, 100 - clip_pct]) if clip_pct else (v.min(), v.max())
    lo = max(float(dlo), limits[0]) if vmin is None else vmin
    hi = min(float(dhi), limits[1]) if vmax is None else vmax
    if hi <= lo:
        hi = lo + 1e-3
    below, above = bool((v < lo).any()), bool((v > hi).any())
    extend = "both" if below and above else "min" if below else "max" if above else "neither"
    return lo, hi, extend


def plot_transparency(
    table,
    nside: int,
    path,
    *,
    frame: str = "horizon",
    site=None,
    time=None,
    title: str | None = None,
    column: str = "transparency",
    alt_min_deg: float = 0.0,
    vmin: float | None = None,
    vmax: float | None = None,
):
    """Polar map of a HEALPix transparency table (:func:`skylake.allsky.maps.transparency_map`).

    ``frame="equatorial"`` tables are drawn at their alt/az at ``time`` (needs ``site``, ``time``).
    The colour bar spans the data within the physical range [0, 1.5] (arrows mark values beyond;
    ``vmin``/``vmax`` override). Pixels are annotated with their star counts when there are fewer than 150
    of them: stars seen / stars a clear sky shows (a pixel reading ``0/n`` is 0: no star seen).

    Parameters
    ----------
    table : astropy.table.Table
        The map: ``pixel`` (NESTED), ``column`` (and ``n_stars``, ``n_seen`` for the annotations).
    nside : int
        HEALPix resolution of the map.
    path : str or pathlib.Path
        The PNG written (its directory is created).
    frame : {"horizon", "equatorial"}
        The map's coordinate frame.
    site : skylake.allsky.camera.Site, optional
        Where the camera stands; needed for the equatorial frame.
    time : astropy.time.Time or str, optional
        The frame's time; needed for the equatorial frame.
    title : str, optional
        The plot's title (default: names the map, its resolution and the orientation).
    column : str, default "transparency"
        The column drawn.
    alt_min_deg : float, default 0.0
        Lowest altitude drawn, deg.
    vmin, vmax : float, optional
        Colour bar range.

    Returns
    -------
    pathlib.Path
        The PNG's path.
    """
    plt = _mpl()
    with plt.rc_context(_FONT):
        fig = plt.figure(figsize=(8, 8))
        ax = _polar_axes(fig, [0.06, 0.08, 0.74, 0.78], alt_min_deg)
        lo, hi, extend = _span(table[column], vmin, vmax, limits=(0.0, 1.5))
        polys = _healpix_patches(nside, table["pixel"], frame, site, time)
        pc = _draw_healpix(ax, nside, table, column, frame, "viridis", lo, hi, site, time, alt_min_deg, polys=polys)
        if len(table) < 150 and "n_stars" in table.colnames:
            for (th, r), label in zip(polys, _star_counts(table), strict=True):
                x, y = r * np.cos(th), r * np.sin(th)
                rc, tc = np.hypot(x.mean(), y.mean()), np.arctan2(y.mean(), x.mean())
                if rc <= 90 - alt_min_deg:
                    ax.text(tc, rc, label, ha="center", va="center", fontsize=8, color="w")
        cax = fig.add_axes([0.84, 0.15, 0.03, 0.64])
        cb = fig.colorbar(pc, cax=cax, extend=extend)
        cb.set_label(f"{column} (1 = clear sky)")
        ax.set_title(
            title or f"Transparency, HEALPix nside {nside} ({frame} frame)\n{CONVENTION}; {STAR_COUNTS}", pad=28
        )
        return _finish(fig, path)


def _star_counts(table) -> list[str]:
    """Each pixel's annotation: ``seen/stars`` (``stars`` alone for a map without ``n_seen``)."""
    n = np.asarray(table["n_stars"], int)
    seen = np.asarray(table["n_seen"], float) if "n_seen" in table.colnames else np.full(len(n), np.nan)
    return [f"{int(s)}/{k}" if np.isfinite(s) else str(k) for s, k in zip(seen, n, strict=True)]


def _polar_grid_image(image, model, alt_min_deg=0.0, dzen=0.25, daz=0.5):
    from scipy.ndimage import map_coordinates

    zen = np.arange(0.0, 90.0 - alt_min_deg + dzen, dzen)
    az = np.arange(0.0, 360.0 + daz, daz)
    Z, A = np.meshgrid(zen, az, indexing="ij")
    x, y = model.altaz_to_pixel(90.0 - Z, A)
    ok = np.isfinite(x) & (x >= 0) & (x <= image.shape[1] - 1) & (y >= 0) & (y <= image.shape[0] - 1)
    vals = np.full(Z.shape, np.nan)
    img = np.asarray(image, float)
    vals[ok] = map_coordinates(img, [y[ok], x[ok]], order=1, mode="nearest")
    return np.radians(az), zen, vals


def plot_sky_brightness(
    sb_image,
    model,
    path,
    *,
    title: str | None = None,
    alt_min_deg: float = 0.0,
    vmin: float | None = None,
    vmax: float | None = None,
):
    """Polar picture of a per-pixel sky-brightness image (mag/arcsec^2).

    The image comes from :func:`skylake.allsky.maps.sky_brightness_image`; brighter sky is lighter;
    the colour bar spans the data's 0.5-99.5 percentiles (arrows mark the few pixels beyond).

    Parameters
    ----------
    sb_image : numpy.ndarray
        Sky brightness per pixel, mag/arcsec^2.
    model : skylake.allsky.camera.CameraModel
        The camera model, to re-project the image.
    path : str or pathlib.Path
        The PNG written (its directory is created).
    title : str, optional
        The plot's title (default: "Sky brightness" and the orientation).
    alt_min_deg : float, default 0.0
        Lowest altitude drawn, deg.
    vmin, vmax : float, optional
        Colour bar range, mag/arcsec^2.

    Returns
    -------
    pathlib.Path
        The PNG's path.
    """
    plt = _mpl()
    th, zen, vals = _polar_grid_image(sb_image, model, alt_min_deg)
    with plt.rc_context(_FONT):
        fig = plt.figure(figsize=(8, 8))
        ax = _polar_axes(fig, [0.06, 0.08, 0.74, 0.78], alt_min_deg)
        lo, hi, extend = _span(vals, vmin, vmax, clip_pct=0.5)
        T, R = np.meshgrid(th, zen)
        mesh = ax.pcolormesh(T, R, vals, cmap="cividis_r", vmin=lo, vmax=hi, shading="auto")
        cax = fig.add_axes([0.84, 0.15, 0.03, 0.64])
        cb = fig.colorbar(mesh, cax=cax, extend=extend)
        cb.set_label("sky brightness (mag/arcsec²)")
        cb.ax.invert_yaxis()  # brighter (smaller mag) at the top
        ax.set_title(title or f"Sky brightness\n{CONVENTION}", pad=28)
        ax.set_rlim(0, 90.0 - alt_min_deg)
        return _finish(fig, path)


def plot_sky_brightness_map(
    table,
    nside: int,
    path,
    *,
    frame: str = "horizon",
    site=None,
    time=None,
    title: str | None = None,
    alt_min_deg: float = 0.0,
):
    """Polar map of a HEALPix sky-brightness table (:func:`skylake.allsky.maps.sky_brightness_map`).

    Parameters
    ----------
    table : astropy.table.Table
        The map: ``pixel`` (NESTED) and ``sky_mag``.
    nside : int
        HEALPix resolution of the map.
    path : str or pathlib.Path
        The PNG written (its directory is created).
    frame : {"horizon", "equatorial"}
        The map's coordinate frame.
    site : skylake.allsky.camera.Site, optional
        Where the camera stands; needed for the equatorial frame.
    time : astropy.time.Time or str, optional
        The frame's time; needed for the equatorial frame.
    title : str, optional
        The plot's title (default: names the map, its resolution and the orientation).
    alt_min_deg : float, default 0.0
        Lowest altitude drawn, deg.

    Returns
    -------
    pathlib.Path
        The PNG's path.
    """
    plt = _mpl()
    with plt.rc_context(_FONT):
        fig = plt.figure(figsize=(8, 8))
        ax = _polar_axes(fig, [0.06, 0.08, 0.74, 0.78], alt_min_deg)
        lo, hi, _ = _span(table["sky_mag"])
        pc = _draw_healpix(ax, nside, table, "sky_mag", frame, "cividis_r", lo, hi, site, time, alt_min_deg)
        cax = fig.add_axes([0.84, 0.15, 0.03, 0.64])
        cb = fig.colorbar(pc, cax=cax)
        cb.set_label("sky brightness (mag/arcsec²)")
        cb.ax.invert_yaxis()
        ax.set_title(title or f"Sky brightness, HEALPix nside {nside} ({frame})\n{CONVENTION}", pad=28)
        return _finish(fig, path)


def plot_stars(
    image,
    model,
    stars,
    path,
    *,
    seen=None,
    title: str | None = None,
    alt_min_deg: float = 0.0,
    label_mag: float | None = None,
):
    """The frame re-projected to a polar picture with the catalogue stars marked.

    Marker size grows with brightness.

    Parameters
    ----------
    image : numpy.ndarray or None
        The frame; None draws the stars on a dark disc (the lake keeps the measurements, not the pixels).
    model : skylake.allsky.camera.CameraModel or None
        The camera model, to re-project the image (unused when ``image`` is None).
    stars : astropy.table.Table
        The stars: ``alt``, ``az`` (deg, predicted) and ``mag`` (``HIP`` for the labels).
    path : str or pathlib.Path
        The PNG written (its directory is created).
    seen : array_like of bool, optional
        Whether each star is seen: seen stars are drawn as green circles and missed ones as red crosses
        (default: all as cyan circles).
    title : str, optional
        The plot's title.
    alt_min_deg : float, default 0.0
        Lowest altitude drawn, deg.
    label_mag : float, optional
        Stars at least this bright are labelled with their HIP number (when ``stars`` has ``HIP``).

    Returns
    -------
    pathlib.Path
        The PNG's path.
    """
    plt = _mpl()
    with plt.rc_context(_FONT):
        fig = plt.figure(figsize=(8, 8))
        ax = _polar_axes(fig, [0.06, 0.06, 0.86, 0.8], alt_min_deg)
        if image is not None:
            th, zen, vals = _polar_grid_image(image, model, alt_min_deg)
            fin = vals[np.isfinite(vals)]
            lo, hi = np.percentile(fin, [1, 99.7]) if fin.size else (0, 1)
            if fin.size and hi <= lo:  # a nearly empty frame: stretch to its maximum
                hi = float(fin.max()) if fin.max() > lo else lo + 1.0
            T, R = np.meshgrid(th, zen)
            ax.pcolormesh(T, R, vals, cmap="gray", vmin=lo, vmax=hi, shading="auto")
        else:
            ax.set_facecolor("0.15")
        alt = np.asarray(stars["alt"], float)
        az = np.asarray(stars["az"], float)
        mag = np.asarray(stars["mag"], float)
        size = np.clip(60 * 10 ** (-0.4 * (mag - 2.0)), 8, 150)
        rr = 90.0 - alt
        inside = rr <= 90.0 - alt_min_deg
        if seen is None:
            ax.scatter(np.radians(az[inside]), rr[inside], s=size[inside], facecolors="none", edgecolors="c", lw=1)
        else:
            seen = np.asarray(seen, bool)
            a = inside & seen
            b = inside & ~seen
            ax.scatter(
                np.radians(az[a]),
                rr[a],
                s=size[a],
                facecolors="none",
                edgecolors="lime",
                lw=1.2,
                label=f"seen ({int(a.sum())})",
            )
            ax.scatter(
                np.radians(az[b]),
                rr[b],
                s=size[b] * 0.8,
                marker="x",
                color="red",
                lw=1.2,
                label=f"not seen ({int(b.sum())})",
            )
            ax.legend(loc="lower left", bbox_to_anchor=(-0.05, -0.07), framealpha=0.9, fontsize=11)
        if label_mag is not None and "HIP" in stars.colnames:
            for t_, r_, m_, h_ in zip(np.radians(az), rr, mag, stars["HIP"]):
                if m_ <= label_mag and r_ <= 90 - alt_min_deg:
                    ax.text(t_, r_ + 2.5, f"HIP {int(h_)}", color="y", fontsize=8)
        ax.set_rlim(0, 90.0 - alt_min_deg)
        ax.set_title(title or f"Catalogue stars on the frame\n{CONVENTION}", pad=28)
        return _finish(fig, path)


def plot_model_offsets(frames, path, *, title: str | None = None, moved_px: float | None = None):
    """The camera model's offsets on each frame over time (:mod:`skylake.allsky.check`), moved frames in red.

    Parameters
    ----------
    frames : pandas.DataFrame
        The camera's frames: ``mjd``, ``astrometry_rms_px``, ``camera_shift_px``, ``camera_rotation_deg`` and
        ``extract_note`` (a frame whose note says "camera moved" is drawn in red) and ``status`` (a frame of
        status ``camera_moved`` was not refitted: black).
    path : str or pathlib.Path
        The PNG written (its directory is created).
    title : str, optional
        The figure's title.
    moved_px : float, optional
        The profile's ``moved_px``, drawn as a dashed line on the shift panel.

    Returns
    -------
    pathlib.Path
        The PNG's path.
    """
    from astropy.time import Time

    plt = _mpl()
    when = Time(np.asarray(frames["mjd"], float), format="mjd").to_datetime()
    moved = frames["extract_note"].fillna("").str.contains("camera moved").to_numpy()
    lost = (frames["status"] == "camera_moved").to_numpy() if "status" in frames else np.zeros(len(frames), bool)
    kinds = (
        (~moved & ~lost, "o", "tab:blue", "model fits"),
        (moved & ~lost, "s", "tab:red", "camera moved, refitted"),
        (lost, "x", "k", "camera moved, not refitted (status camera_moved)"),
    )
    panels = (
        ("astrometry_rms_px", "model rms [px]"),
        ("camera_shift_px", "shift [px]"),
        ("camera_rotation_deg", "turn [deg]"),
    )
    with plt.rc_context(_FONT):
        fig, axes = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True)
        for ax, (column, label) in zip(axes, panels, strict=True):
            v = np.asarray(frames[column], float)
            for sel, marker, colour, name in kinds:
                if sel.any():
                    ax.plot(when[sel], v[sel], marker, ms=6, color=colour, label=name)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        if moved_px is not None:
            axes[1].axhline(moved_px, ls="--", color="0.4", lw=1)
            axes[1].annotate(
                f"moved_px = {moved_px:g}", (0.99, moved_px), xycoords=("axes fraction", "data"), ha="right",
                va="bottom", fontsize=10, color="0.3",
            )  # fmt: skip
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=10, frameon=False)
        axes[-1].set_xlabel("frame time [UTC]")
        fig.autofmt_xdate()
        fig.suptitle(title or "Camera model on each frame: bright stars' centroid - prediction")
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        return _finish(fig, path)


def plot_foreground_mask(image, bits, path, *, layers, title: str | None = None):
    """A frame with its camera's foreground mask drawn over it, each component in its colour.

    Parameters
    ----------
    image : numpy.ndarray
        The frame, ADU.
    bits : numpy.ndarray of uint8
        The mask (:mod:`skylake.allsky.foreground`).
    path : str or pathlib.Path
        The PNG written (its directory is created).
    layers : sequence of (int, str)
        Each component's bit and label, the horizon first (the others are drawn where it is not).
    title : str, optional
        The figure's title.

    Returns
    -------
    pathlib.Path
        The PNG's path.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = _mpl()
    data = np.asarray(image, float)
    bits = np.asarray(bits, np.uint8)
    horizon = layers[0][0]
    sky = (bits & horizon) == 0
    lo, hi = np.nanpercentile(data[sky], [1, 99.5]) if sky.any() else np.nanpercentile(data, [1, 99.5])
    colours = (("0.25", 0.55), ("tab:orange", 0.55), ("magenta", 0.45), ("tab:cyan", 0.45))
    with plt.rc_context(_FONT):
        fig, ax = plt.subplots(figsize=(8, 7.2))
        ax.imshow(data, cmap="gray", vmin=lo, vmax=hi, origin="upper", interpolation="nearest")
        handles = []
        for (bit, name), (colour, alpha) in zip(layers, colours):
            on = (bits & bit) > 0
            if bit != horizon:
                on &= sky
            if on.any():
                ax.imshow(np.where(on, 1.0, np.nan), cmap=ListedColormap([colour]), alpha=alpha, origin="upper",
                          interpolation="nearest")  # fmt: skip
                handles.append(Patch(color=colour, alpha=alpha, label=f"{name}: {100 * on.mean():.1f} % of pixels"))
        ax.set_xlabel("x [px]")
        ax.set_ylabel("y [px]")
        ax.set_title(title or "Foreground mask")
        fig.legend(handles=handles, loc="lower center", fontsize=10, frameon=False)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        return _finish(fig, path)


def plot_fit_residuals(result, path, *, image=None, title: str | None = None, arrow_gain: float | None = None):
    """Residuals of a camera fit (:class:`skylake.allsky.fit.FitResult`).

    Arrows (detected - predicted, magnified) over the image, residual vs zenith angle, and radial /
    tangential residual vs azimuth.

    Parameters
    ----------
    result : skylake.allsky.fit.FitResult
        The fit.
    path : str or pathlib.Path
        The PNG written (its directory is created).
    image : numpy.ndarray, optional
        The frame, drawn under the arrows.
    title : str, optional
        The figure's title (default: the stars, rms and model).
    arrow_gain : float, optional
        Magnification of the arrows (default: from the 90th percentile of the residuals and the width).

    Returns
    -------
    pathlib.Path
        The PNG's path.
    """
    plt = _mpl()
    t = result.matched
    m = result.model
    dx = np.asarray(t["dx"], float)
    dy = np.asarray(t["dy"], float)
    xp = np.asarray(t["x_pred"], float)
    yp = np.asarray(t["y_pred"], float)
    zen = 90.0 - np.asarray(t["alt"], float)
    az = np.asarray(t["az"], float)
    rx, ry = xp - m.x0, yp - m.y0
    rn = np.hypot(rx, ry)
    rn = np.where(rn > 0, rn, 1.0)
    d_rad = (dx * rx + dy * ry) / rn
    d_tan = (-dx * ry + dy * rx) / rn
    width = image.shape[1] if image is not None else 2 * m.horizon_radius_px
    gain = arrow_gain or max(5.0, round(0.035 * width / max(np.percentile(np.hypot(dx, dy), 90), 1e-3)))
    with plt.rc_context(_FONT):
        fig = plt.figure(figsize=(8, 9.6))
        ax0 = fig.add_axes([0.12, 0.42, 0.84, 0.46])
        if image is not None:
            img = np.asarray(image, float)
            lo, hi = np.nanpercentile(img, [1, 99.5])
            ax0.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="upper")
        ax0.quiver(xp, yp, dx * gain, dy * gain, angles="xy", scale_units="xy", scale=1, color="orange", width=0.004)
        zx, zy = m.altaz_to_pixel(90.0, 0.0)
        ax0.plot(zx, zy, "c+", ms=14, mew=2, label="zenith")
        ax0.legend(loc="lower right", fontsize=10)
        ax0.set_xlabel("x (column, px)")
        ax0.set_ylabel("y (row, px)")
        ax0.set_title(f"residuals (detected - model) magnified x{gain:.0f}", fontsize=12)
        ax1 = fig.add_axes([0.12, 0.07, 0.36, 0.25])
        ax1.scatter(zen, np.hypot(dx, dy), s=12, c="k")
        ax1.axhline(result.rms_px, color="r", lw=1.2, label=f"rms {result.rms_px:.2f} px")
        ax1.set_xlabel("zenith angle (deg)")
        ax1.set_ylabel("|residual| (px)")
        ax1.legend(loc="upper left", fontsize=10)
        ax2 = fig.add_axes([0.6, 0.07, 0.36, 0.25])
        ax2.scatter(az, d_rad, s=12, c="tab:blue", label="radial")
        ax2.scatter(az, d_tan, s=12, c="tab:orange", marker="s", label="tangential")
        ax2.axhline(0, color="0.5", lw=0.8)
        ax2.set_xlim(0, 360)
        ax2.set_xticks([0, 90, 180, 270, 360])
        ax2.set_xlabel("azimuth (deg, N through E)")
        ax2.set_ylabel("residual (px)")
        ax2.legend(loc="upper right", fontsize=9, ncol=2)
        tilt = f", tilt {m.tilt_deg:.2f}° to az {m.tilt_az_deg:.0f}°" if m.tilt_deg else ""
        fig.suptitle(
            title
            or (
                f"Camera fit: {result.n_matched} stars, rms {result.rms_px:.2f} px = "
                f"{result.rms_deg:.3f}°\n{m.projection} f = {m.focal_length_mm:.4f} mm, "
                f"axis ({m.x0:.1f}, {m.y0:.1f}), rotation {m.rotation_deg:.2f}°{tilt}"
            ),
            fontsize=12.5,
            y=0.985,
        )
        return _finish(fig, path)
