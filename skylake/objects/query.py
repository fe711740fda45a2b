"""Light curves by coordinate: cone searches that read only what the cone touches.

The searches run on ``LAKE/objects`` and ``LAKE/lightcurves``, in four steps:

1. the cone's HEALPix pixels (``healpy.query_disc``, inclusive) at the order whose pixels are about
   the radius across; 2. the partitions (``partition_info.csv``) holding those pixels; 3. in their
   files only the row groups whose ``_healpix_29`` range meets the cone's (rows are sorted by it, so
   pyarrow's statistics prune the rest: a light curve costs a few row groups, whatever the lake's
   size); 4. the exact cut on the angular distance from the centre. The objects found, then their
   points: those in a cone wider by the objects' spread (an object's points lie around it), with their
   object_id.

``lsdb.open_catalog("LAKE/objects").cone_search(...)`` answers the same, at dask's fixed cost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from hats.pixel_math.healpix_pixel import get_lower_order_pixel
from hats.pixel_math.healpix_shim import order2nside
from hats.pixel_math.spatial_index import healpix_to_spatial_index

from skylake.frame.extract import SATURATED as SATURATED_FLAG
from skylake.lake import tables
from skylake.lake.parquet import value_set
from skylake.lake.storage import read_listed
from skylake.lake.tables import DIA_FORCED, DIA_LIGHTCURVES, LIGHTCURVES, OBJECTS, ZEROPOINTS
from skylake.objects.build import ObjectsError, check_layout, read_state
from skylake.objects.files import _lake, catalog_dataset, data_files, partitions_of
from skylake.sphere import chord_to_arcsec, unit_vectors

__all__ = [
    "DEFAULT_RADIUS_ARCSEC",
    "SUMMARY",
    "cone_pixels",
    "cone_objects",
    "cone_partitions",
    "light_curve",
    "dia_light_curve",
    "transient_light_curve",
    "plot_light_curve",
]


DEFAULT_RADIUS_ARCSEC = 5.0

#: Object columns repeated on every point of ``light_curve``'s answer.
SUMMARY = [
    "object_id",
    "refcat",
    "ref_id",
    "ra",
    "dec",
    "sep_arcsec",
    "n",
    "mean_mag",
    "std_mag",
    "chi2_dof",
    "fap",
    "variable",
    "stetson_j",
    "n_exact",
    "amplitude",
    "stats_mag",
]


def cone_pixels(ra: float, dec: float, radius_arcsec: float) -> tuple[int, np.ndarray]:
    """An order about the radius across and the NESTED pixels at it that the cone touches.

    Parameters
    ----------
    ra, dec : float
        The cone's centre [deg].
    radius_arcsec : float
        The cone's radius [arcsec], in (0, 108000].

    Returns
    -------
    order : int
        The deepest order whose pixels are at least the radius across.
    pixels : numpy.ndarray
        The NESTED pixels at ``order`` the cone touches (inclusive, int64).

    Raises
    ------
    ObjectsError
        The centre is not finite or ``|dec| > 90``, or the radius is out of range.
    """
    import healpy as hp

    if not (np.isfinite(ra) and -90.0 <= dec <= 90.0):
        raise ObjectsError(f"bad cone centre ra={ra!r}, dec={dec!r} (deg; |dec| <= 90)")
    if not 0 < radius_arcsec <= 3600 * 30:
        raise ObjectsError(f"the cone radius must be in (0, 108000] arcsec, got {radius_arcsec!r}")
    # order k pixels are ~ 58.6 deg / 2**k across; take the deepest order with pixels >= the radius
    order = int(np.clip(np.floor(np.log2(58.6 * 3600.0 / radius_arcsec)), 0, 29))
    vec = unit_vectors([ra], [dec])[0]
    pixels = hp.query_disc(order2nside(order), vec, np.radians(radius_arcsec / 3600.0), inclusive=True, nest=True)
    return order, np.asarray(pixels, dtype=np.int64)


def cone_partitions(lake, table: str, ra: float, dec: float, radius_arcsec: float) -> list:
    """The partitions of a HATS table that a cone touches.

    Parameters
    ----------
    lake : Lake
        The lake, or a snapshot of it (its version's partitions).
    table : str
        The table.
    ra, dec : float
        The cone's centre [deg].
    radius_arcsec : float
        Its radius [arcsec] (:func:`cone_pixels`).

    Returns
    -------
    list of hats.pixel_math.HealpixPixel
        The partitions.
    """
    order, pixels = cone_pixels(ra, dec, radius_arcsec)
    hit = []
    for p in partitions_of(lake, table):
        if p.order <= order:
            inside = np.isin(p.pixel, get_lower_order_pixel(order, pixels, order - p.order))
        else:
            inside = np.isin(get_lower_order_pixel(p.order, p.pixel, p.order - order), pixels)
        if inside:
            hit.append(p)
    return hit


def _in_pixels(lake, table: str, ra: float, dec: float, radius_arcsec: float, columns=None) -> pa.Table:
    """Rows of ``table`` whose ``_healpix_29`` lies in the cone's pixels (:func:`cone_pixels`): only the
    partitions holding them, and in their files the row groups whose statistics reach them."""
    order, pixels = cone_pixels(ra, dec, radius_arcsec)
    h29 = pc.field("_healpix_29")
    flt = None
    starts, ends = healpix_to_spatial_index(order, pixels), healpix_to_spatial_index(order, pixels + 1)
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        rng = (h29 >= lo) & (h29 < hi)
        flt = rng if flt is None else flt | rng

    def read() -> pa.Table:
        """List the cone's files and read them (again, by :func:`read_listed`, when an update replaced one).

        Returns
        -------
        pyarrow.Table
            The rows in the cone's pixels.
        """
        files = data_files(lake, table, cone_partitions(lake, table, ra, dec, radius_arcsec))
        dataset = catalog_dataset(lake, table, files)
        if not files:
            return dataset.schema.empty_table() if columns is None else dataset.schema.empty_table().select(columns)
        return dataset.to_table(columns=columns, filter=flt)

    return read_listed(read)


def cone_objects(
    lake, ra: float, dec: float, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC, columns: list[str] | None = None
) -> pa.Table:
    """Objects rows (all columns, or ``columns``) within ``radius_arcsec`` of (ra, dec), nearest first.

    Parameters
    ----------
    lake : Lake or str
        The lake or a snapshot of it (opened if a path or URL).
    ra, dec : float
        The cone's centre [deg].
    radius_arcsec : float, optional
        The cone's radius [arcsec].
    columns : list of str, optional
        The objects columns to read (default: all); ``ra`` and ``dec`` are always read.

    Returns
    -------
    pyarrow.Table
        The objects rows with ``sep_arcsec`` (their separation from the centre [arcsec]), nearest first.

    Raises
    ------
    ObjectsError
        A bad cone (:func:`cone_pixels`), or a table of an older layout.
    """
    lake = _lake(lake)
    check_layout(read_state(lake))
    if columns is not None:
        columns = list(dict.fromkeys(["ra", "dec", *columns]))
    rows = _in_pixels(lake, OBJECTS, ra, dec, radius_arcsec, columns)
    sep = chord_to_arcsec(
        np.linalg.norm(
            unit_vectors(rows.column("ra").to_numpy(), rows.column("dec").to_numpy()) - unit_vectors([ra], [dec]),
            axis=1,
        )
    )
    keep = np.flatnonzero(sep <= radius_arcsec)
    keep = keep[np.argsort(sep[keep], kind="stable")]
    return rows.take(keep).append_column("sep_arcsec", pa.array(sep[keep]))


def light_curve(lake, ra: float, dec: float, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC) -> pd.DataFrame:
    """The light curves of the objects within ``radius_arcsec`` of (ra, dec).

    Parameters
    ----------
    lake : Lake or str
        The lake or a snapshot of it (opened if a path or URL).
    ra, dec : float
        The cone's centre [deg].
    radius_arcsec : float, optional
        The cone's radius [arcsec].

    Returns
    -------
    pandas.DataFrame
        One row per point (mjd, mag, mag_err, inst_mag, inst_mag_err, ra/dec of the detection as
        ``det_ra``/``det_dec`` [deg], frame_id, source_id, flags) with its object's id, position,
        separation and statistics (:data:`SUMMARY`), and the reference ``band`` of the calibrated
        magnitudes; nearest object first, points in time order. Empty when nothing is there.

    Raises
    ------
    ObjectsError
        A bad cone (:func:`cone_pixels`), or a table of an older layout.
    """
    lake = _lake(lake)
    table = cone_objects(lake, ra, dec, radius_arcsec)
    objects = table.select(SUMMARY).to_pandas()
    # points are filed under their object's position when they were added (``_healpix_29``), from which
    # later points move it by less than the association radius
    spread = 2.0 * float(read_state(lake).get("radius_arcsec", 3.0))
    points = _in_pixels(lake, LIGHTCURVES, ra, dec, radius_arcsec + spread).to_pandas()
    points = points[points["object_id"].isin(objects["object_id"])].drop(
        columns=["_healpix_29", "ref_id", "Norder", "Dir", "Npix"]
    )
    flat = points.rename(columns={"ra": "det_ra", "dec": "det_dec"})
    out = _nearest_first(flat.merge(objects, on="object_id", how="left", sort=False), objects["object_id"])
    out["band"] = _band(_lake(lake), out)
    return out[SUMMARY + [c for c in out.columns if c not in SUMMARY]]


def dia_light_curve(lake, ra: float, dec: float, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC) -> pd.DataFrame:
    """The DIA light curves (LAKE/dia_lightcurves, ``skylake dia``) within ``radius_arcsec``: of the objects there,
    and of the catalogue stars there that have no object (a blend the extraction never split: ``skylake dia``
    measures them under the id their object will have).

    Parameters
    ----------
    lake : Lake or str
        The lake or a snapshot of it (opened if a path or URL).
    ra, dec : float
        The cone's centre [deg].
    radius_arcsec : float, optional
        The cone's radius [arcsec].

    Returns
    -------
    pandas.DataFrame
        One row per DIA point (schemas/dia_lightcurves.yaml without ``_healpix_29``), nearest first, points in time
        order; empty when ``skylake dia`` measured none of them.

    Raises
    ------
    ObjectsError
        A bad cone (:func:`cone_pixels`), or a table of an older layout.
    """

    lake = _lake(lake)
    columns = [c for c in tables.get(DIA_LIGHTCURVES).schema.names if c != "_healpix_29"]
    if not partitions_of(lake, DIA_LIGHTCURVES):
        return pd.DataFrame({c: [] for c in columns})
    objects = cone_objects(lake, ra, dec, radius_arcsec, columns=["object_id"]).to_pandas()
    spread = 2.0 * float(read_state(lake).get("radius_arcsec", 3.0)) if len(objects) else 0.0
    found = _in_pixels(lake, DIA_LIGHTCURVES, ra, dec, radius_arcsec + spread, ["_healpix_29", *columns]).to_pandas()
    # a point is filed under its object's position: a catalogue star with no object is found by its own
    sep = _filed_separation(found, ra, dec)
    found = found.assign(_sep=sep)[found["object_id"].isin(objects["object_id"]) | (sep <= radius_arcsec)]
    order = found.groupby("object_id")["_sep"].min().sort_values(kind="stable")
    return _nearest_first(found.drop(columns=["_healpix_29", "_sep"]), pd.Series(order.index))


def transient_light_curve(lake, ra: float, dec: float, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC) -> pd.DataFrame:
    """The forced points of the transients within ``radius_arcsec`` (LAKE/dia_forced, ``skylake dia``): DIA
    objects with no object, measured on every frame of their reference's footprint at their own place.

    Parameters
    ----------
    lake : Lake or str
        The lake or a snapshot of it (opened if a path or URL).
    ra, dec : float
        The cone's centre [deg].
    radius_arcsec : float, optional
        The cone's radius [arcsec].

    Returns
    -------
    pandas.DataFrame
        One row per forced point (schemas/dia_forced.yaml without ``_healpix_29``) with ``sep_arcsec`` (the
        transient's distance from the centre: its points' nearest), nearest transient first, points in time
        order; empty when there is none.

    Raises
    ------
    ObjectsError
        A bad cone (:func:`cone_pixels`).
    """

    lake = _lake(lake)
    columns = [c for c in tables.get(DIA_FORCED).schema.names if c != "_healpix_29"]
    if not partitions_of(lake, DIA_FORCED):
        return pd.DataFrame({c: [] for c in [*columns, "sep_arcsec"]})
    found = _in_pixels(lake, DIA_FORCED, ra, dec, radius_arcsec, ["_healpix_29", *columns]).to_pandas()
    sep = _filed_separation(found, ra, dec)
    # a point is filed under its transient's place when it was measured (the mean moves as detections come):
    # each transient's nearest, for the cone and the order
    found = found.drop(columns="_healpix_29").assign(
        sep_arcsec=pd.Series(sep, index=found.index).groupby(found["dia_object_id"]).transform("min")
    )
    found = found[found["sep_arcsec"] <= radius_arcsec]
    return found.sort_values(["sep_arcsec", "dia_object_id", "mjd"], kind="stable").reset_index(drop=True)


def _filed_separation(points: pd.DataFrame, ra: float, dec: float) -> np.ndarray:
    """Each point's distance [arcsec] from (ra, dec) by where it is filed (its ``_healpix_29`` at order 29)."""
    import healpy as hp

    lon, lat = hp.pix2ang(2**29, points["_healpix_29"].to_numpy(np.int64), nest=True, lonlat=True)
    return chord_to_arcsec(np.linalg.norm(unit_vectors(lon, lat) - unit_vectors([ra], [dec]), axis=1))


def _nearest_first(points: pd.DataFrame, order: pd.Series) -> pd.DataFrame:
    """Points by their object in ``order`` (the cone's objects, nearest first), each in time order."""
    rank = pd.Series(np.arange(len(order)), index=order.to_numpy())
    points = points.assign(_rank=rank.reindex(points["object_id"]).to_numpy())
    return points.sort_values(["_rank", "mjd"], kind="stable").drop(columns="_rank").reset_index(drop=True)


def _band(lake, points: pd.DataFrame) -> str:
    """The reference band of the points' calibrated magnitudes ("" when none is calibrated)."""
    refcats = points["refcat"].dropna().unique() if "refcat" in points else []
    if points.empty or not points["mag"].notna().any():
        return ""
    ids = value_set(points["frame_id"].unique())
    flt = pc.field("frame_id").isin(ids)
    if len(refcats):
        flt &= pc.field("refcat").isin(pa.array([r for r in refcats if r], pa.string()))
    bands = lake.read_night_table(ZEROPOINTS, columns=["band"], filter=flt).column("band").to_pandas()
    return str(bands.mode().iloc[0]) if len(bands) else ""


def plot_light_curve(points: pd.DataFrame, path, max_objects: int = 6, dia: pd.DataFrame | None = None) -> str:
    """PNG of magnitude against MJD, one panel per object (the nearest ``max_objects``).

    Calibrated mag where there is one, else instrumental; the DIA light curve beside it where there is one (its
    ``mag_dia`` on a calibrated panel, else its instrumental magnitude shifted to the aperture points' median).

    Parameters
    ----------
    points : pandas.DataFrame
        Light-curve points as :func:`light_curve` returns them.
    path : str or os.PathLike
        The PNG file to write.
    max_objects : int, optional
        The most objects (panels) to plot.
    dia : pandas.DataFrame or None
        DIA points as :func:`dia_light_curve` returns them.

    Returns
    -------
    str
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = list(dict.fromkeys(points["object_id"]))[:max_objects]
    fig, axes = plt.subplots(len(ids), 1, figsize=(8, 2.6 * len(ids)), squeeze=False, sharex=True)
    for ax, oid in zip(axes[:, 0], ids):
        lc = points[points["object_id"] == oid]
        use = lc["stats_mag"].iloc[0]
        err = "mag_err" if use == "mag" else "inst_mag_err"
        ax.errorbar(lc["mjd"], lc[use], yerr=lc[err], fmt="o", ms=3, capsize=0, label="aperture")
        _plot_dia(ax, lc[use], None if dia is None else dia[dia["object_id"] == oid], calibrated=use == "mag")
        ax.invert_yaxis()
        ref = f" ref:{lc['refcat'].iloc[0]}:{lc['ref_id'].iloc[0]}" if lc["refcat"].iloc[0] else ""
        n, n_exact = lc["n"].iloc[0], lc["n_exact"].iloc[0]
        of = f" (of {n_exact} points)" if n_exact < n else ""  # order statistics not yet recomputed
        ax.set_title(
            f'object {oid}{ref}  sep {lc["sep_arcsec"].iloc[0]:.1f}"  n {n}  '
            f"std {lc['std_mag'].iloc[0]:.3f}  chi2/dof {lc['chi2_dof'].iloc[0]:.1f}  "
            f"FAP {lc['fap'].iloc[0]:.2g}{' VARIABLE' if lc['variable'].iloc[0] else ''}  "
            f"J {lc['stetson_j'].iloc[0]:.2f}{of}",
            fontsize=8,
        )
        band = lc["band"].iloc[0] if "band" in lc and lc["band"].iloc[0] else ""
        ax.set_ylabel(
            f"{band} [mag]" if use == "mag" and band else "calibrated [mag]" if use == "mag" else "instrumental [mag]"
        )
        flagged = (lc["flags"].to_numpy() & SATURATED_FLAG) != 0 if "flags" in lc else np.zeros(len(lc), bool)
        if flagged.any():  # saturated points stay in the light curve, marked (they are out of the statistics)
            ax.plot(lc["mjd"][flagged], lc[use][flagged], "x", color="tab:red", ms=7, label="saturated")
        if len(ax.get_legend_handles_labels()[0]) > 1:
            ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("MJD (mid-exposure, UTC) [d]")
    axes[-1, 0].ticklabel_format(axis="x", useOffset=False, style="plain")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def _plot_dia(ax, aperture: pd.Series, dia: pd.DataFrame | None, calibrated: bool) -> None:
    """An object's DIA points on its panel: ``mag_dia`` beside calibrated aperture magnitudes, else the
    instrumental DIA magnitude shifted to the aperture points' median (the two scales differ by a zeropoint)."""
    if dia is None or dia.empty:
        return
    flux = dia["ref_flux"] + dia["dflux"]
    good = flux > 0
    if calibrated and dia["mag_dia"].notna().any():
        mag, label = dia["mag_dia"], "DIA"
    else:
        inst = -2.5 * np.log10(flux.where(good))
        mag, label = inst + (np.nanmedian(aperture) - np.nanmedian(inst)), "DIA (shifted to the aperture median)"
    err = 1.0857362 * dia["dflux_err"] / flux.where(good)
    ax.errorbar(dia["mjd"], mag, yerr=err, fmt="s", ms=3, capsize=0, color="tab:orange", alpha=0.8, label=label)
