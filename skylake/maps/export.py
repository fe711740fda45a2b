"""Exports of a stored map: a HEALPix FITS file that ``healpy.read_map`` reads, and Mollweide PNGs.

The FITS file holds one column per quantity (NESTED ordering, ``healpy.UNSEEN`` where the map has no
value): ``N_STARS``, ``ZP`` (mag), ``TRANSP``, ``SKY_MAG`` (mag/arcsec^2), ``DRA``, ``DDEC`` (arcsec),
as the MDM all-sky pipeline's ZP/N_ZP/TRANSP extensions. Maps finer than nside 64 are written as
partial (cut-sky) maps, which ``healpy.read_map`` expands to the full sphere. Read one with::

    import healpy as hp
    transparency = hp.read_map("map.fits", field="TRANSP", nest=True)     # or field=2
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "FIELDS",
    "PARTIAL_ABOVE_NSIDE",
    "PNG_FIELDS",
    "map_stem",
    "full_maps",
    "write_fits",
    "write_png",
    "export_maps",
]


#: FITS column -> (map column, unit)
#: N_STARS comes first: it is set (0 or more) in every pixel with a row, and healpy's partial maps keep
#: the pixels the first column sees
FIELDS = {
    "N_STARS": ("n_stars", ""),
    "ZP": ("zp_median", "mag"),
    "TRANSP": ("transparency", ""),
    "SKY_MAG": ("sky_mag", "mag/arcsec2"),
    "DRA": ("dra_arcsec", "arcsec"),
    "DDEC": ("ddec_arcsec", "arcsec"),
}
PARTIAL_ABOVE_NSIDE = 64  # coarser maps are written full-sky (12 * 64**2 = 49152 pixels at most)
PNG_FIELDS = {"transparency": ("TRANSP", "transparency", 0.0, 1.1), "sky": ("SKY_MAG", "mag/arcsec$^2$", None, None)}


def _what(row: dict) -> str:
    """The selection of a map in a file name: the night, the frame, or the range of nights."""
    if row["scope"] == "frame":
        return f"frame{int(row['frame_id'])}"
    return row["night_min"] if row["scope"] == "night" else f"{row['night_min']}_{row['night_max']}"


def map_stem(row: dict) -> str:
    """File stem of a map's exports, e.g. ``map-night-2026-03-01-skycamz-equatorial-nside8-3f2a9c01``.

    The selection, the camera's profile, the frame and nside, and the head of the map_id, so that two maps
    (other profiles, catalogues or settings) never write the same file.

    Parameters
    ----------
    row : dict
        The map's index row.

    Returns
    -------
    str
        The stem.
    """
    profile = re.sub(r"[^A-Za-z0-9_.]+", "_", str(row["profile"]))
    return f"map-{row['scope']}-{_what(row)}-{profile}-{row['frame_of']}-nside{row['nside']}-{row['map_id'][:8]}"


def full_maps(pixels: pd.DataFrame, nside: int) -> dict[str, np.ndarray]:
    """Full-sphere NESTED arrays (UNSEEN where empty or null) of each FITS field of one map's rows.

    Parameters
    ----------
    pixels : pandas.DataFrame
        The map's pixel rows.
    nside : int
        The map's HEALPix nside.

    Returns
    -------
    dict of str to numpy.ndarray
        One array (float64, ``12 * nside**2`` pixels) per FITS column of :data:`FIELDS`.
    """
    import healpy as hp

    out = {}
    pix = pixels["pixel"].to_numpy(np.int64)
    for name, (col, _) in FIELDS.items():
        m = np.full(hp.nside2npix(nside), hp.UNSEEN, dtype=np.float64)
        v = pixels[col].to_numpy(float)
        ok = np.isfinite(v)
        m[pix[ok]] = v[ok]
        out[name] = m
    return out


def write_fits(pixels: pd.DataFrame, row: dict, path: str | os.PathLike) -> Path:
    """Write one map (its pixel rows and index row) as a HEALPix FITS binary table.

    Parameters
    ----------
    pixels : pandas.DataFrame
        The map's pixel rows.
    row : dict
        The map's index row.
    path : str or os.PathLike
        The file (its directory is made; a file there is overwritten).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    import healpy as hp

    nside = int(row["nside"])
    maps = full_maps(pixels, nside)
    extra = [
        ("MAPID", row["map_id"], "skylake map id (LAKE/maps/_index)"),
        ("FRAMEOF", row["frame_of"], "equatorial (RA,Dec) or horizon (az N->E, alt)"),
        ("SCOPE", row["scope"], "night | frame | range"),
        ("NIGHTMIN", str(row["night_min"]), "first observing night"),
        ("NIGHTMAX", str(row["night_max"]), "last observing night"),
        ("MJDMIN", float(row["mjd_min"]), "[d] earliest mid-exposure MJD"),
        ("MJDMAX", float(row["mjd_max"]), "[d] latest mid-exposure MJD"),
        ("REFCAT", str(row["refcat"]), "reference catalogue"),
        ("ZPCLEAR", str(row["zp_clear"]), "clear-sky zeropoint (auto: extinction fit)"),
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hp.write_map(
        str(path),
        list(maps.values()),
        nest=True,
        coord="C" if row["frame_of"] == "equatorial" else None,
        column_names=list(maps),
        column_units=[u for _, u in FIELDS.values()],
        dtype=np.float64,
        partial=nside > PARTIAL_ABOVE_NSIDE,
        extra_header=extra,
        overwrite=True,
    )
    return path


def _colour_range(values: np.ndarray, lo, hi) -> tuple[float, float]:
    """Colour limits that span the data (1st-99th percentile), within the quantity's bounds if it has any."""
    if not values.size:
        return (0.0, 1.0) if lo is None else (lo, hi)
    vmin, vmax = (float(v) for v in np.percentile(values, [1, 99]))
    if lo is not None:
        vmin, vmax = max(vmin, lo), min(vmax, hi)
    if not vmax > vmin:
        pad = max(abs(vmin) * 0.01, 0.01)
        vmin, vmax = vmin - pad, vmax + pad
    return vmin, vmax


def _zoom(ax, m: np.ndarray, seen: np.ndarray, nside: int, frame_of: str, vmin: float, vmax: float, cmap: str):
    """The map's pixels as polygons on plain lon/lat axes (RA/Dec, or azimuth/altitude), labelled in degrees."""
    import healpy as hp
    from matplotlib.collections import PolyCollection

    pix = np.flatnonzero(seen)
    corners = hp.boundaries(nside, pix, step=1, nest=True)  # (n, 3, 4) unit vectors
    lon, lat = hp.vec2ang(np.moveaxis(corners, 1, 2).reshape(-1, 3), lonlat=True)
    lon, lat = lon.reshape(-1, 4), lat.reshape(-1, 4)
    centre = float(np.degrees(np.angle(np.mean(np.exp(1j * np.radians(lon[:, 0]))))))
    lon = centre + (lon - centre + 180.0) % 360.0 - 180.0  # continuous across 0/360
    polys = PolyCollection(np.stack([lon, lat], axis=-1), array=m[pix], cmap=cmap, edgecolors="face", linewidths=0.2)
    polys.set_clim(vmin, vmax)
    ax.add_collection(polys)
    ax.set_xlim(lon.max() + 0.02 * np.ptp(lon), lon.min() - 0.02 * np.ptp(lon))  # east to the left, as on the sky
    ax.set_ylim(lat.min() - 0.02 * np.ptp(lat), lat.max() + 0.02 * np.ptp(lat))
    ax.set_aspect(1.0 / max(np.cos(np.radians(np.mean(lat))), 0.05))
    names = ("RA [deg]", "Dec [deg]") if frame_of == "equatorial" else ("azimuth [deg] (N through E)", "altitude [deg]")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_facecolor("lightgrey")
    return polys


def write_png(pixels: pd.DataFrame, row: dict, path: str | os.PathLike, quantity: str = "transparency") -> Path:
    """Mollweide view of one quantity (``transparency`` or ``sky``) with a colour bar spanning the data.

    A map covering under 1 % of the sky also gets a zoom onto its pixels beside it, on RA/Dec (or
    azimuth/altitude) axes in degrees.

    Parameters
    ----------
    pixels : pandas.DataFrame
        The map's pixel rows.
    row : dict
        The map's index row.
    path : str or os.PathLike
        The PNG file (its directory is made).
    quantity : {'transparency', 'sky'}, optional
        The quantity drawn: the transparency, or the sky brightness [mag/arcsec2].

    Returns
    -------
    pathlib.Path
        The file written.
    """
    import healpy as hp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    field, unit, lo, hi = PNG_FIELDS[quantity]
    nside = int(row["nside"])
    m = full_maps(pixels, nside)[field]
    seen = m != hp.UNSEEN
    small = seen.sum() and seen.mean() < 0.01
    vmin, vmax = _colour_range(m[seen], lo, hi)
    cmap = "viridis" if quantity == "transparency" else "magma_r"
    fig = plt.figure(figsize=(12 if small else 8, 5.4))
    what = (
        f"frame {int(row['frame_id'])}"
        if row["scope"] == "frame"
        else f"night {row['night_min']}"
        if row["scope"] == "night"
        else f"nights {row['night_min']} to {row['night_max']}"
    )
    fig.suptitle(
        f"{quantity}: {what}, profile {row['profile']}, {row['frame_of']} HEALPix nside {row['nside']}", fontsize=12
    )
    with warnings.catch_warnings():  # healpy warns that it keeps our figure's size: that is the point
        warnings.filterwarnings("ignore", message="Ignoring specified arguments", category=UserWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        hp.mollview(
            m,
            nest=True,
            fig=fig.number,
            sub=(1, 2, 1) if small else None,
            title="whole sky",
            unit=unit,
            min=vmin,
            max=vmax,
            cmap=cmap,
            badcolor="lightgrey",
        )
        hp.graticule(dpar=30, dmer=30, alpha=0.3)
        if small:  # too small to see at this scale: circle where it is
            lon, lat = hp.pix2ang(nside, np.flatnonzero(seen), nest=True, lonlat=True)
            hp.projscatter(
                float(np.median(lon)),
                float(np.median(lat)),
                lonlat=True,
                s=200,
                facecolors="none",
                edgecolors="red",
                linewidths=1.5,
            )
    if small:
        ax = fig.add_axes([0.56, 0.14, 0.36, 0.68])
        polys = _zoom(ax, m, seen, nside, row["frame_of"], vmin, vmax, cmap)
        ax.set_title(f"zoom: {int(seen.sum())} pixels", fontsize=10)
        fig.colorbar(
            polys,
            ax=ax,
            fraction=0.05,
            pad=0.03,
            label="transparency" if quantity == "transparency" else f"sky brightness [{unit}]",
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def export_maps(
    pixels: pd.DataFrame,
    index: pd.DataFrame,
    out_dir: str | os.PathLike,
    pngs: tuple[str, ...] = ("transparency", "sky"),
) -> list[Path]:
    """FITS and PNGs of every map in ``index`` (pixel rows from ``pixels``) into ``out_dir``.

    Parameters
    ----------
    pixels : pandas.DataFrame
        The maps' pixel rows.
    index : pandas.DataFrame
        The maps' index rows, as stored.
    out_dir : str or os.PathLike
        The directory the files are written to (made if need be).
    pngs : tuple of str, optional
        The quantities drawn as PNGs (:func:`write_png`).

    Returns
    -------
    list of pathlib.Path
        The files written: per map, its FITS file, then its PNGs.
    """
    out, written = Path(out_dir), []
    by_map = dict(tuple(pixels.groupby("map_id")))
    for row in index.to_dict("records"):
        rows = by_map.get(row["map_id"], pixels.iloc[:0])
        stem = map_stem(row)
        written.append(write_fits(rows, row, out / f"{stem}.fits"))
        for q in pngs:
            written.append(write_png(rows, row, out / f"{stem}-{q}.png", q))
    return written
