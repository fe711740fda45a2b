"""Checkplots of one frame's calibration (matplotlib, Agg backend: no display needed).

One PNG with six panels: instrumental against reference magnitude with the fitted zeropoint,
residuals against colour with the colour term, the astrometric residuals as a quiver over the chip,
and the photometric residuals against x, y and radius from the chip centre. Used stars are dark,
cut or clipped ones light grey; residual axes span the stars used, and points beyond them sit on
the edge as triangles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from skylake.calib.model import calibrated_mag

__all__ = ["QUIVER_SCALE_PX_PER_ARCSEC", "checkplot"]


QUIVER_SCALE_PX_PER_ARCSEC = 20.0  # arrows 20x longer than the residual in pixels-per-arcsec terms


def checkplot(zp: dict, matches: pd.DataFrame, path: str | Path) -> Path:
    """Write the checkplot of one frame.

    Parameters
    ----------
    zp : dict
        The frame's zeropoints row (schemas/zeropoints.yaml).
    matches : pandas.DataFrame
        Its rows of LAKE/matches.
    path : str or pathlib.Path
        The PNG to write.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    used = matches["used"].to_numpy(bool)
    inst, ref = matches["inst_mag"].to_numpy(float), matches["ref_mag"].to_numpy(float)
    colour = matches["ref_color"].to_numpy(float)
    x, y = matches["x"].to_numpy(float), matches["y"].to_numpy(float)
    fit = zp.get("zp_fit")
    fit = float(fit) if fit is not None and np.isfinite(fit) else np.nan
    ct = zp.get("color_term")
    ct = float(ct) if ct is not None and np.isfinite(ct) else 0.0
    resid = ref - calibrated_mag(inst, fit, colour, ct)  # unknown colour: colour 0, as zp is defined

    # a fixed layout: constrained_layout draws the figure twice (half the time of a plot)
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.07, top=0.88, wspace=0.28, hspace=0.3)
    styles = ((~used, dict(s=10, c="0.7", label="cut or clipped")), (used, dict(s=12, c="k", label="used")))

    _zeropoint_panel(axes[0, 0], ref, inst, fit, styles, zp.get("band", ""))
    # residual axes are scaled to the stars used: clipped outliers sit on the edge as triangles
    lo, hi = _residual_limits(resid[used], zp.get("zp_scatter"))
    _colour_panel(axes[0, 1], ref - inst - fit, colour, ct, used, styles, zp)
    _astrometry_panel(axes[0, 2], matches, x, y, zp.get("astro_median_sep_arcsec"))
    _position_panels(axes[1], x, y, resid, lo, hi, styles)

    fig.suptitle(
        f"frame {zp.get('frame_id')} vs {zp.get('refcat')}: {zp.get('zp_status')} zp {_fmt(zp.get('zp'))} "
        f"+- {_fmt(zp.get('zp_err'))}, scatter {_fmt(zp.get('zp_scatter'))}, n {zp.get('zp_n')}"
        + (f"\n{zp['zp_reason']}" if zp.get("zp_reason") else ""),
        fontsize=11,
    )
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _zeropoint_panel(ax, ref, inst, fit, styles, band) -> None:
    """Instrumental against reference magnitude, with the fitted zeropoint's line.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    ref, inst : numpy.ndarray
        Reference and instrumental magnitudes.
    fit : float
        The fitted zeropoint (NaN: no line).
    styles : tuple
        ``(selection, scatter keywords)`` of the cut and the used stars.
    band : str
        The reference band (in the axis label).
    """
    for sel, kw in styles:
        ax.scatter(ref[sel], inst[sel], **kw)
    if np.isfinite(fit) and np.isfinite(ref).any():
        grid = np.linspace(np.nanmin(ref), np.nanmax(ref), 2)
        ax.plot(grid, grid - fit, "r-", label=f"zp {fit:.3f}")
    ax.set(xlabel=f"reference {band} [mag]", ylabel="instrumental [mag]", title="instrumental vs reference")
    ax.invert_xaxis(), ax.invert_yaxis(), ax.legend(fontsize=8)


def _colour_panel(ax, dm, colour, ct, used, styles, zp: dict) -> None:
    """Residuals from the zeropoint against colour, with the colour term's line (a note without colours).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    dm : numpy.ndarray
        ``ref - inst - zp`` of each star.
    colour : numpy.ndarray
        Each star's catalogue colour.
    ct : float
        The colour term.
    used : numpy.ndarray
        The stars used in the fit.
    styles : tuple
        ``(selection, scatter keywords)`` of the cut and the used stars.
    zp : dict
        The frame's zeropoints row (``zp_scatter``, ``color``).
    """
    if np.isfinite(colour).any():
        lo_c, hi_c = _residual_limits(dm[used], zp.get("zp_scatter"))
        for sel, kw in styles:
            _clipped_scatter(ax, colour[sel], dm[sel], lo_c, hi_c, **kw)
        ax.set_ylim(lo_c, hi_c)
        cgrid = np.linspace(np.nanmin(colour), np.nanmax(colour), 2)
        ax.plot(cgrid, ct * cgrid, "r-", label=f"colour term {ct:.3f}")
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5, 0.5, "no colour in the catalogue:\nclipped median", ha="center", va="center", transform=ax.transAxes
        )
    ax.set(xlabel=f"colour {zp.get('color') or ''} [mag]", ylabel="ref - inst - zp [mag]", title="residual vs colour")


def _astrometry_panel(ax, matches: pd.DataFrame, x, y, median_sep) -> None:
    """The astrometric residuals as a quiver over the chip.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    matches : pandas.DataFrame
        The frame's matches (``dra_arcsec``, ``ddec_arcsec``).
    x, y : numpy.ndarray
        The stars' chip positions, px.
    median_sep : float or None
        The median separation, arcsec (in the title).
    """
    q = ax.quiver(
        x,
        y,
        matches["dra_arcsec"].to_numpy(float),
        matches["ddec_arcsec"].to_numpy(float),
        angles="xy",
        scale_units="xy",
        scale=1.0 / QUIVER_SCALE_PX_PER_ARCSEC,
        color="C0",
        width=0.004,
    )
    ax.quiverkey(q, 0.75, 0.04, 2.0, '2" (RA, Dec)', labelpos="E", coordinates="axes")
    ax.set(
        xlabel="x [px]",
        ylabel="y [px]",
        aspect="equal",
        title=f'astrometric residuals (median {_fmt(median_sep)}")',
    )


def _position_panels(axes, x, y, resid, lo, hi, styles) -> None:
    """The photometric residuals against x, y and the radius from the stars' centre.

    Parameters
    ----------
    axes : sequence of matplotlib.axes.Axes
        The three panels.
    x, y : numpy.ndarray
        The stars' chip positions, px.
    resid : numpy.ndarray
        The stars' photometric residuals, mag.
    lo, hi : float
        The residual axis' limits.
    styles : tuple
        ``(selection, scatter keywords)`` of the cut and the used stars.
    """
    cx, cy = np.nanmedian(x) if x.size else 0.0, np.nanmedian(y) if y.size else 0.0
    for ax, coord, label in (
        (axes[0], x, "x [px]"),
        (axes[1], y, "y [px]"),
        (axes[2], np.hypot(x - cx, y - cy), "radius from the stars' centre [px]"),
    ):
        for sel, kw in styles:
            _clipped_scatter(ax, coord[sel], resid[sel], lo, hi, **kw)
        ax.axhline(0.0, color="r")
        ax.set(xlabel=label, ylabel="photometric residual [mag]", ylim=(lo, hi))
    axes[0].set_title("residual vs position")


def _residual_limits(used: np.ndarray, scatter) -> tuple[float, float]:
    """Y limits holding every star used in the fit with a margin (at least 5 robust sigmas about 0)."""
    used = used[np.isfinite(used)]
    sig = float(scatter) if scatter is not None and np.isfinite(scatter) else 0.1
    if not used.size:
        return -1.0, 1.0
    lo, hi = min(float(used.min()), -5 * sig), max(float(used.max()), 5 * sig)
    pad = 0.1 * (hi - lo) + 0.01
    return lo - pad, hi + pad


def _clipped_scatter(ax, x, y, lo, hi, **kw):
    """Scatter ``y`` against ``x``; points beyond [lo, hi] drawn at the edge as triangles pointing out."""
    inside = (y >= lo) & (y <= hi)
    ax.scatter(x[inside], y[inside], **kw)
    kw = {**kw, "label": None}
    for beyond, edge, marker in ((y > hi, hi, "^"), (y < lo, lo, "v")):
        if beyond.any():
            ax.scatter(x[beyond], np.full(beyond.sum(), edge), marker=marker, **kw)


def _fmt(value) -> str:
    return f"{value:.3f}" if value is not None and np.isfinite(value) else "-"
