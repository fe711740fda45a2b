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

#: FITS column -> (map column, unit)
#: N_STARS comes first: it is set (0 or more) in every pixel with a row, and healpy's partial maps keep
#: the pixels the first column sees
FIELDS = {"N_STARS": ("n_stars", ""), "ZP": ("zp_median", "mag"), "TRANSP": ("transparency", ""),
          "SKY_MAG": ("sky_mag", "mag/arcsec2"), "DRA": ("dra_arcsec", "arcsec"), "DDEC": ("ddec_arcsec", "arcsec")}
PARTIAL_ABOVE_NSIDE = 64  # coarser maps are written full-sky (12 * 64**2 = 49152 pixels at most)
PNG_FIELDS = {"transparency": ("TRANSP", "transparency", 0.0, 1.1), "sky": ("SKY_MAG", "mag/arcsec$^2$", None, None)}


def _what(row: dict) -> str:
    """The selection of a map in a file name: the night, the frame, or the range of nights."""
    if row["scope"] == "frame":
        return f"frame{int(row['frame_id'])}"
    return row["night_min"] if row["scope"] == "night" else f"{row['night_min']}_{row['night_max']}"


def map_stem(row: dict) -> str:
    """File stem of a map's exports, e.g. ``map-night-2026-03-01-skycamz-equatorial-nside8-3f2a9c01``: the
    selection, the camera's profile, the frame and nside, and the head of the map_id, so that two maps
    (other profiles, catalogues or settings) never write the same file."""
    profile = re.sub(r"[^A-Za-z0-9_.]+", "_", str(row["profile"]))
    return f"map-{row['scope']}-{_what(row)}-{profile}-{row['frame_of']}-nside{row['nside']}-{row['map_id'][:8]}"


def full_maps(pixels: pd.DataFrame, nside: int) -> dict[str, np.ndarray]:
    """Full-sphere NESTED arrays (UNSEEN where empty or null) of each FITS field of one map's rows."""
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
    """Write one map (its pixel rows and index row) as a HEALPix FITS binary table."""
    import healpy as hp

    nside = int(row["nside"])
    maps = full_maps(pixels, nside)
    extra = [("MAPID", row["map_id"], "skylake map id (LAKE/maps/_index)"),
             ("FRAMEOF", row["frame_of"], "equatorial (RA,Dec) or horizon (az N->E, alt)"),
             ("SCOPE", row["scope"], "night | frame | range"),
             ("NIGHTMIN", str(row["night_min"]), "first observing night"),
             ("NIGHTMAX", str(row["night_max"]), "last observing night"),
             ("MJDMIN", float(row["mjd_min"]), "[d] earliest mid-exposure MJD"),
             ("MJDMAX", float(row["mjd_max"]), "[d] latest mid-exposure MJD"),
             ("REFCAT", str(row["refcat"]), "reference catalogue"),
             ("ZPCLEAR", str(row["zp_clear"]), "clear-sky zeropoint (auto: extinction fit)")]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hp.write_map(str(path), list(maps.values()), nest=True, coord="C" if row["frame_of"] == "equatorial" else None,
                 column_names=list(maps), column_units=[u for _, u in FIELDS.values()], dtype=np.float64,
                 partial=nside > PARTIAL_ABOVE_NSIDE, extra_header=extra, overwrite=True)
    return path


def write_png(pixels: pd.DataFrame, row: dict, path: str | os.PathLike, quantity: str = "transparency") -> Path:
    """Mollweide view of one quantity (``transparency`` or ``sky``); a map covering under 1 % of the sky
    also gets a gnomonic zoom onto its pixels beside it."""
    import healpy as hp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    field, unit, lo, hi = PNG_FIELDS[quantity]
    nside = int(row["nside"])
    m = full_maps(pixels, nside)[field]
    seen = m != hp.UNSEEN
    small = seen.sum() and seen.mean() < 0.01
    fig = plt.figure(figsize=(12 if small else 8, 5))
    title = f"{quantity}, {row['scope']} {_what(row)}, {row['profile']} {row['frame_of']} nside {row['nside']}"
    with warnings.catch_warnings():  # healpy warns that it keeps our figure's size: that is the point
        warnings.filterwarnings("ignore", message="Ignoring specified arguments", category=UserWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        hp.mollview(m, nest=True, fig=fig.number, sub=(1, 2, 1) if small else None, title=title, unit=unit,
                    min=lo, max=hi, cmap="viridis" if quantity == "transparency" else "magma_r", badcolor="lightgrey")
        hp.graticule(dpar=30, dmer=30, alpha=0.3)
        if small:
            lon, lat = hp.pix2ang(nside, np.flatnonzero(seen), nest=True, lonlat=True)
            lon0 = float(np.degrees(np.angle(np.mean(np.exp(1j * np.radians(lon))))))
            span = max(np.ptp(lat), np.ptp(((lon - lon0 + 180) % 360 - 180) * np.cos(np.radians(lat.mean())))) + 2 * hp.nside2resol(nside, arcmin=True) / 60
            hp.gnomview(m, nest=True, rot=(lon0, float(np.mean(lat))), fig=fig.number, sub=(1, 2, 2), title="zoom",
                        unit=unit, min=lo, max=hi, reso=span * 60 / 200, xsize=200,
                        cmap="viridis" if quantity == "transparency" else "magma_r", badcolor="lightgrey", notext=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def export_maps(pixels: pd.DataFrame, index: pd.DataFrame, out_dir: str | os.PathLike,
                pngs: tuple[str, ...] = ("transparency", "sky")) -> list[Path]:
    """FITS and PNGs of every map in ``index`` (pixel rows from ``pixels``) into ``out_dir``."""
    out, written = Path(out_dir), []
    by_map = dict(tuple(pixels.groupby("map_id")))
    for row in index.to_dict("records"):
        rows = by_map.get(row["map_id"], pixels.iloc[:0])
        stem = map_stem(row)
        written.append(write_fits(rows, row, out / f"{stem}.fits"))
        for q in pngs:
            written.append(write_png(rows, row, out / f"{stem}-{q}.png", q))
    return written
