"""Reading reference catalogues back: the list of a lake's catalogues, cone searches, and proper
motion propagation to another epoch.

Cone searches read only the partitions the cone (padded for proper motion) can touch, straight
with pyarrow, then keep the rows whose astropy ``SkyCoord.separation`` from the centre is at most
the radius, so a cone returns exactly what a brute-force astropy cut over the whole catalogue
would. For analysis at scale, open the collection with ``lsdb.open_catalog(path)`` (margin included).

Propagation is linear (:func:`propagate`): ``dec += pmdec * dt`` and ``ra += pmra * dt / cos(dec)``
with ``dt = epoch_to - epoch`` in Julian years, pm in mas/yr; it ignores parallax, radial velocity
and the curvature of the sky, which is good to ~1 mas for dt <= 30 yr and pm <= 1"/yr away from the
poles (within ~0.1 deg of a pole use a rigorous method, e.g. astropy ``SkyCoord.apply_space_motion``).
Rows without a proper motion keep their position and their own epoch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from skylake.lake import Lake, LakeView
from skylake.refcat.errors import RefcatError
from skylake.refcat.importer import REFCATS, check_name, quiet_collection_notice, read_record
from skylake.refcat.schema import HEALPIX

__all__ = [
    "MAX_PM_ARCSEC_PER_YR",
    "MAS_PER_DEG",
    "refcat_path",
    "list_refcats",
    "format_list",
    "propagate",
    "cone_search",
    "write_table",
]


#: Upper bound on stellar proper motion (Barnard's star: 10.4"/yr), to pad cones for propagation.
MAX_PM_ARCSEC_PER_YR = 11.0
MAS_PER_DEG = 3.6e6


def _lake(lake) -> LakeView:
    return lake if isinstance(lake, LakeView) else Lake.open(lake)


def refcat_path(lake, name: str) -> Path:
    """``LAKE/refcats/NAME``.

    Parameters
    ----------
    lake : skylake.lake.Lake or str
        The lake, or its path or URL.
    name : str
        The catalogue's name.

    Returns
    -------
    upath.UPath
        The catalogue's directory, for hats (on an object store, with the store's credentials).

    Raises
    ------
    RefcatError
        ``name`` is not a valid catalogue name, or the catalogue is absent (naming the catalogues there).
    """
    check_name(name)
    lake = _lake(lake)
    path = lake.store.upath(f"{REFCATS}/{name}")
    if not lake.store.exists(f"{REFCATS}/{name}/collection.properties"):
        known = [r["name"] for r in list_refcats(lake)]
        raise RefcatError(f"no refcat {name!r} in {lake.url}; it has {known or 'none'}")
    return path


def list_refcats(lake) -> list[dict]:
    """One dict per catalogue under ``LAKE/refcats``.

    Parameters
    ----------
    lake : skylake.lake.Lake or str
        The lake, or its path or URL.

    Returns
    -------
    list of dict
        By name: name, format, rows, partitions, margin_threshold_arcsec, imported_at, synthetic (from each
        import record), path, and a note (``no import record`` when there is none).
    """
    lake = _lake(lake)
    root = lake.store.upath(REFCATS)
    out = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.startswith(".") or not path.is_dir():
            continue
        rec = read_record(path)
        out.append(
            {
                "name": path.name,
                "format": rec.get("format", "?"),
                "rows": rec.get("rows"),
                "partitions": rec.get("partitions"),
                "margin_threshold_arcsec": rec.get("margin_threshold_arcsec"),
                "imported_at": rec.get("imported_at"),
                "synthetic": rec.get("synthetic", False),
                "path": str(path),
                "note": "" if rec else "no import record",
            }
        )
    return out


def format_list(rows: list[dict]) -> str:
    """The table ``skylake refcat list`` prints.

    Parameters
    ----------
    rows : list of dict
        The catalogues, as :func:`list_refcats` gives them.

    Returns
    -------
    str
        A header and one line per catalogue, or ``no reference catalogues``.
    """
    if not rows:
        return "no reference catalogues"
    head = f"{'name':20s} {'format':10s} {'rows':>12s} {'partitions':>10s} {'margin':>8s}  imported"
    lines = [head]
    for r in rows:
        margin = f'{r["margin_threshold_arcsec"]:g}"' if r["margin_threshold_arcsec"] is not None else "?"
        rows_txt = f"{r['rows']:,}" if r["rows"] is not None else "?"
        parts = str(r["partitions"]) if r["partitions"] is not None else "?"
        note = " (synthetic)" if r["synthetic"] else (f" ({r['note']})" if r["note"] else "")
        lines.append(
            f"{r['name']:20s} {r['format']:10s} {rows_txt:>12s} {parts:>10s} {margin:>8s}  "
            f"{r['imported_at'] or '?'}{note}"
        )
    return "\n".join(lines)


def propagate(table: pd.DataFrame, epoch: float) -> pd.DataFrame:
    """A copy of ``table`` (ra, dec, epoch, pmra, pmdec columns) with positions moved to ``epoch``.

    The propagation is linear (see the module's docstring); rows without a proper motion or an epoch
    keep their position and their own epoch, and a position carried over a pole comes back on the other
    side.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows with ra, dec [deg], epoch [Julian year], pmra and pmdec [mas/yr].
    epoch : float
        The Julian year to move the positions to.

    Returns
    -------
    pandas.DataFrame
        The copy, with ra (in [0, 360)), dec and epoch updated.
    """
    out = table.copy()
    pmra = out["pmra"].to_numpy(dtype=float, na_value=np.nan)
    pmdec = out["pmdec"].to_numpy(dtype=float, na_value=np.nan)
    ep = out["epoch"].to_numpy(dtype=float, na_value=np.nan)
    ra = out["ra"].to_numpy(dtype=float)
    dec = out["dec"].to_numpy(dtype=float)
    move = np.isfinite(pmra) & np.isfinite(pmdec) & np.isfinite(ep)
    dt = np.where(move, epoch - ep, 0.0)
    new_dec = dec + np.where(move, pmdec, 0.0) * dt / MAS_PER_DEG
    with np.errstate(divide="ignore", invalid="ignore"):
        dra = np.where(move, pmra, 0.0) * dt / MAS_PER_DEG / np.cos(np.radians(dec))
    new_ra = ra + np.where(np.isfinite(dra), dra, 0.0)
    over = np.abs(new_dec) > 90.0  # carried over a pole
    new_dec = np.where(over, np.sign(new_dec) * 180.0 - new_dec, new_dec)
    new_ra = np.where(over, new_ra + 180.0, new_ra)
    out["ra"] = np.mod(new_ra, 360.0)
    out["dec"] = new_dec
    out["epoch"] = np.where(move, epoch, ep)
    return out


def cone_search(
    lake,
    name: str,
    ra: float,
    dec: float,
    radius_arcsec: float,
    columns: list[str] | None = None,
    epoch: float | None = None,
) -> pd.DataFrame:
    """Rows of refcat ``name`` within ``radius_arcsec`` of (``ra``, ``dec``) [deg], nearest first.

    With ``epoch`` the positions are first propagated to it (see :func:`propagate`) and the cut
    applies to the propagated positions.

    Parameters
    ----------
    lake : skylake.lake.Lake or str
        The lake, or its path or URL.
    name : str
        The catalogue's name.
    ra : float
        The centre's RA [deg], in [0, 360).
    dec : float
        The centre's Dec [deg], in [-90, 90].
    radius_arcsec : float
        The cone's radius [arcsec], positive.
    columns : list of str or None
        Columns added to ref_id, ra, dec and epoch (default: every column).
    epoch : float or None
        The Julian year to propagate the positions to before the cut; None: positions as stored.

    Returns
    -------
    pandas.DataFrame
        The rows, sorted by separation then ref_id; a ``sep_arcsec`` column gives the separation.

    Raises
    ------
    RefcatError
        The centre is not a sky position, the radius is not positive, the catalogue is absent, or it has
        no column of ``columns``.
    """
    import hats
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from hats.io import paths as hats_paths

    if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0):
        raise RefcatError(f"cone centre ({ra}, {dec}) is not a sky position (ra in [0, 360), dec in [-90, 90])")
    if not radius_arcsec > 0:
        raise RefcatError(f"cone radius must be positive, got {radius_arcsec} arcsec")
    path = refcat_path(lake, name)
    rec = read_record(path)
    with quiet_collection_notice():
        cat = hats.read_hats(path).main_catalog
    schema_names = [n for n in cat.schema.names if n not in ("Norder", "Dir", "Npix")]
    wanted = ["ref_id", "ra", "dec", "epoch"]
    extra = [c for c in (columns or [n for n in schema_names if n != HEALPIX]) if c not in wanted]
    unknown = [c for c in extra if c not in schema_names]
    if unknown:
        raise RefcatError(f"refcat {name} has no column(s) {unknown}; it has {schema_names}")
    read_cols = wanted + extra + (["pmra", "pmdec"] if epoch is not None else [])
    read_cols = list(dict.fromkeys(c for c in read_cols if c in schema_names))

    pad = 1.0  # arcsec: slack over the MOC's own tolerance
    if epoch is not None:
        lo, hi = rec.get("epoch_min"), rec.get("epoch_max")
        span = max(abs(epoch - lo), abs(epoch - hi)) if lo is not None and hi is not None else 200.0
        pad += MAX_PM_ARCSEC_PER_YR * span
    search = min(radius_arcsec + pad, 180.0 * 3600.0)
    pixels = cat.filter_by_cone(ra, dec, search).get_healpix_pixels()
    tables = [
        pq.read_table(
            hats_paths.pixel_catalog_file(cat.catalog_base_dir, p, npix_suffix=cat.catalog_info.npix_suffix).path,
            columns=read_cols,
        )
        for p in pixels
    ]
    if tables:
        df = pa.concat_tables(tables).to_pandas()
    else:
        df = pd.DataFrame({c: pd.Series(dtype=float) for c in read_cols})
    if epoch is not None:
        df = propagate(df, float(epoch))
    centre = SkyCoord(ra * u.deg, dec * u.deg)
    sep = SkyCoord(df["ra"].to_numpy(dtype=float) * u.deg, df["dec"].to_numpy(dtype=float) * u.deg).separation(centre)
    df["sep_arcsec"] = sep.to_value(u.arcsec)
    inside = sep <= radius_arcsec * u.arcsec
    out = df.loc[inside, [*dict.fromkeys(wanted + extra), "sep_arcsec"]]
    return out.sort_values(["sep_arcsec", "ref_id"], kind="stable").reset_index(drop=True)


def write_table(df: pd.DataFrame, out: str | os.PathLike) -> Path:
    """Write a cone result as CSV or Parquet, chosen by the suffix of ``out``.

    Parameters
    ----------
    df : pandas.DataFrame
        The rows, e.g. of :func:`cone_search`.
    out : str or os.PathLike
        The file: ``.csv``, ``.parquet`` or ``.pq``.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    RefcatError
        The suffix is neither CSV nor Parquet.
    """
    out = Path(out)
    if out.suffix.lower() == ".csv":
        df.to_csv(out, index=False)
    elif out.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(out, index=False)
    else:
        raise RefcatError(f"--out {out}: use a .csv or .parquet file name")
    return out
