"""The all-sky step of a frame task: a frame of a profile with a ``[camera]`` model, processed by
:func:`skylake.allsky.pipeline.process_frame` into source rows, a frame record, streak rows and map rows.

::

    header record (time, exposure)  ->  process_frame (camera model, bright stars, [allsky])
        -> forced rows (catalogue stars) and/or detected rows (sep), placed by the camera model:
           alt/az, RA/Dec, _healpix_29; provenance: measure, position_from, frame's camera_model
        -> frame columns: cloud fraction, the model's offsets (or refit), zeropoint, zenith sky, streak count
        -> streak rows (endpoints, width, brightness), sources on a streak flagged ON_STREAK
        -> per-frame transparency / sky-brightness HEALPix maps (horizon, equatorial) for LAKE/maps

The bright-star catalogue is read once per worker process (:func:`bright_stars`). Nothing here writes
to the lake: :mod:`skylake.allsky.store` stages the extra tables at commit.
"""

from __future__ import annotations

import functools
import json
import math
import os

import numpy as np
import pandas as pd

from skylake.allsky.camera import camera_of
from skylake.allsky.pipeline import allsky_settings
from skylake.errors import FrameRejected
from skylake.lake.tables import MAPS, SOURCES, STREAKS
from skylake.schema import table_schema

__all__ = [
    "CAMERA_MOVED",
    "ON_STREAK",
    "FORCED_NOT_SEEN",
    "FORCED_SHIFT",
    "FORCED_ANNULUS",
    "APER_HASMASKED",
    "SATURATED",
    "catalog_source",
    "bright_stars",
    "wcs_provenance",
    "process_allsky",
    "reflag_streaks",
]


#: Source flag bits of schemas/sources.yaml set here.
ON_STREAK, FORCED_NOT_SEEN, FORCED_SHIFT, FORCED_ANNULUS = 512, 1024, 2048, 4096
APER_HASMASKED, SATURATED = 32, 256
#: A frame's quality status: the camera moved (skylake.allsky.check) and could not be refitted, so its positions,
#: forced photometry and maps are off (its sources are kept, as with every quality status).
CAMERA_MOVED = "camera_moved"


# -- the catalogue ------------------------------------------------------------------------------------
def catalog_source(profile, lake_root: str | None) -> str:
    """Locate the profile's bright stars: a file (``allsky.catalog`` is a path) or the lake's refcat directory.

    Parameters
    ----------
    profile : skylake.profile.Profile
        An all-sky profile; its ``allsky.catalog`` is an absolute file path or the name of a refcat.
    lake_root : str or None
        The lake's location, where a named refcat is looked for.

    Returns
    -------
    path : str
        The catalogue file, or the refcat's directory in the lake.

    Raises
    ------
    FrameRejected
        ``allsky.catalog`` names a refcat but no lake was given, or the lake has no such refcat.
    """
    spec = profile.allsky["catalog"]
    if os.path.isabs(spec) and os.path.isfile(spec):
        return spec
    if lake_root is None:
        raise FrameRejected(f"allsky.catalog = {spec!r} names a refcat, but no lake was given to read it from")
    path = os.path.join(lake_root, "refcats", spec)
    if not os.path.isfile(os.path.join(path, "collection.properties")):
        raise FrameRejected(
            f"no bright-star catalogue: the lake has no refcat {spec!r} (allsky.catalog); import it "
            f"with `skylake refcat import LAKE {spec} --format hipparcos FILE` first"
        )
    return path


@functools.lru_cache(maxsize=2)
def bright_stars(source: str):
    """Read the bright-star catalogue: a Hipparcos FITS/Parquet file or a lake refcat.

    Cached per process (the two most recent sources).

    Parameters
    ----------
    source : str
        A catalogue file, or a lake refcat's directory (HATS collection: its ``mag_V`` is read).

    Returns
    -------
    stars : astropy.table.Table
        ``ra``, ``dec`` (deg), ``v_mag`` and ``ref_id``; a refcat's stars without a finite ``mag_V`` or
        position are left out.

    Raises
    ------
    FrameRejected
        The refcat has no ``mag_V`` column (the all-sky pipeline measures V).
    """
    from astropy.table import Table

    if os.path.isfile(source):
        if source.endswith(".parquet"):
            t = Table.from_pandas(pd.read_parquet(source))
        else:
            from skylake.allsky.catalog import read_hipparcos

            t = read_hipparcos(source)
        ids = t["HIP"] if "HIP" in t.colnames else t["ref_id"] if "ref_id" in t.colnames else np.arange(len(t))
        return Table(
            {
                "ra": np.asarray(t["ra"], float),
                "dec": np.asarray(t["dec"], float),
                "v_mag": np.asarray(t["v_mag"], float),
                "ref_id": np.asarray(ids, np.int64),
            }
        )
    import pyarrow.dataset as pads

    with open(os.path.join(source, "collection.properties")) as fh:
        props = dict(line.strip().split("=", 1) for line in fh if "=" in line and not line.startswith("#"))
    main = os.path.join(source, props.get("hats_primary_table_url", "").strip() or os.path.basename(source))
    data = pads.dataset(os.path.join(main, "dataset"), format="parquet", partitioning="hive")
    names = data.schema.names
    if "mag_V" not in names:
        raise FrameRejected(f"refcat {source} has no mag_V column (the all-sky pipeline measures V)")
    t = data.to_table(columns=["ref_id", "ra", "dec", "mag_V"]).to_pandas()
    t = t[np.isfinite(t["mag_V"]) & np.isfinite(t["ra"]) & np.isfinite(t["dec"])]
    return Table(
        {
            "ra": t["ra"].to_numpy(float),
            "dec": t["dec"].to_numpy(float),
            "v_mag": t["mag_V"].to_numpy(float),
            "ref_id": t["ref_id"].to_numpy(np.int64),
        }
    )


# -- one frame -----------------------------------------------------------------------------------------
def _empty_columns(n: int) -> dict:
    """Every sources column (less the ids) for ``n`` rows: NaN, 0 or null, to be filled."""
    import pyarrow as pa

    cols = {}
    for f in table_schema(SOURCES):
        if f.name in ("source_id", "frame_id"):
            continue
        if pa.types.is_floating(f.type):
            cols[f.name] = np.full(n, np.nan)
        elif f.name == "ref_id":
            cols[f.name] = [None] * n
        elif str(f.type) == "string":
            cols[f.name] = np.full(n, "", dtype=object)
        else:
            cols[f.name] = np.zeros(n, np.int64)
    return cols


def wcs_provenance(cols: dict, position_from: str) -> dict:
    """Add the all-sky columns of detections placed by a WCS (header or solved): no alt/az, detected.

    Parameters
    ----------
    cols : dict
        The frame's source columns (with ``ra``); updated in place.
    position_from : str
        What placed the sources (e.g. ``"wcs"``, ``"platesolve"``), for every row's ``position_from``.

    Returns
    -------
    cols : dict
        ``cols`` with NaN ``alt``, ``az`` and ``ref_mag``, ``measure`` = ``"detected"``, ``position_from``
        and null ``ref_id``.
    """
    n = len(cols["ra"])
    cols.update(
        alt=np.full(n, np.nan),
        az=np.full(n, np.nan),
        measure=np.full(n, "detected", dtype=object),
        position_from=np.full(n, position_from, dtype=object),
        ref_id=[None] * n,
        ref_mag=np.full(n, np.nan),
    )
    return cols


def _forced_rows(stars, exptime: float, seen_all: np.ndarray) -> dict:
    from skylake.allsky.photometry import FLAG_ANNULUS, FLAG_EDGE, FLAG_SATURATED, FLAG_SHIFT

    n = len(stars)
    cols = _empty_columns(n)
    x = np.asarray(stars["x"], float)
    y = np.asarray(stars["y"], float)
    xp, yp = np.asarray(stars["x_pred"], float), np.asarray(stars["y_pred"], float)
    flux = np.asarray(stars["flux"], float)
    err = np.asarray(stars["flux_err"], float)
    flag = np.asarray(stars["flag"], np.int64)
    out = np.zeros(n, np.int64)
    out |= np.where(flag & FLAG_EDGE, APER_HASMASKED, 0)
    out |= np.where(flag & FLAG_SATURATED, SATURATED, 0)
    out |= np.where(flag & FLAG_SHIFT, FORCED_SHIFT, 0)
    out |= np.where(flag & FLAG_ANNULUS, FORCED_ANNULUS, 0)
    out |= np.where(seen_all, 0, FORCED_NOT_SEEN)
    with np.errstate(divide="ignore", invalid="ignore"):
        cols.update(
            x=np.where(np.isfinite(x), x, xp),
            y=np.where(np.isfinite(y), y, yp),
            ra=np.asarray(stars["ra"], float),
            dec=np.asarray(stars["dec"], float),
            alt=np.asarray(stars["alt"], float),
            az=np.asarray(stars["az"], float),
            flux_ap1=flux,
            flux_ap1_err=err,
            bkg=np.asarray(stars["bkg"], float),
            inst_mag=np.where(flux > 0, -2.5 * np.log10(flux / exptime), np.nan),
            inst_mag_err=np.where(flux > 0, 1.0857362 * err / flux, np.nan),
            flags=out,
            measure=np.full(n, "forced", dtype=object),
            ref_id=[int(v) for v in stars["ref_id"]],
            ref_mag=np.asarray(stars["mag"], float),
        )
    return cols


def _detected_rows(image, rec: dict, profile, model, site, time) -> dict:
    from skylake.frame import extract

    ext = extract.extract(
        image, profile.detection, saturation=rec["saturation"], saturation_from="profile [defaults] saturation"
    )
    cols = extract.measure(image, ext, profile.photometry, gain=rec["gain"])
    alt, az = model.pixel_to_altaz(cols["x"], cols["y"])
    on_sky = np.isfinite(alt) & (alt >= 0)
    cols = {k: v[on_sky] for k, v in cols.items()}
    alt, az = alt[on_sky], az[on_sky]
    ra, dec = site.altaz_to_radec(alt, az, time)
    n = len(ra)
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = cols["flux_auto"]
        cols["inst_mag"] = np.where(flux > 0, -2.5 * np.log10(flux / rec["exptime"]), np.nan)
        cols["inst_mag_err"] = np.where(flux > 0, 1.0857362 * cols["flux_auto_err"] / flux, np.nan)
    cols.update(
        ra=np.asarray(ra, float),
        dec=np.asarray(dec, float),
        alt=alt,
        az=az,
        measure=np.full(n, "detected", dtype=object),
        ref_id=[None] * n,
        ref_mag=np.full(n, np.nan),
    )
    rec.update(bkg_median=ext.globalback, bkg_rms=ext.globalrms, extract_note=ext.note)
    return cols


def _concat(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    out = {}
    for k in parts[0]:
        vals = [p[k] for p in parts]
        out[k] = sum((list(v) for v in vals), []) if isinstance(vals[0], list) else np.concatenate(vals)
    return out


def _map_rows(result, nside: int) -> pd.DataFrame:
    """The frame's transparency and sky-brightness maps as rows of schemas/maps.yaml (less ``map_id``; one
    ``frame_of`` per map), merged per pixel."""
    out = []
    for frame_of, tr, sky in (
        ("horizon", result.transparency_horizon, result.sky_horizon),
        ("equatorial", result.transparency_equatorial, result.sky_equatorial),
    ):
        t = tr.to_pandas() if len(tr.colnames) else pd.DataFrame(columns=["pixel", "lon", "lat"])
        s = sky.to_pandas() if len(sky.colnames) else pd.DataFrame(columns=["pixel", "lon", "lat"])
        t = t.rename(columns={"transparency_err": "dzp_scatter"})
        s = s.rename(columns={"n_pix": "n_sky", "sky_mag_rms": "sky_mag_scatter"})
        m = pd.merge(t, s, on="pixel", how="outer", suffixes=("", "_s"))
        if m.empty:
            continue
        for c in ("lon", "lat"):
            m[c] = m[c].astype(float).fillna(m.get(f"{c}_s")) if f"{c}_s" in m else m[c]
        m = m.drop(columns=[c for c in m.columns if c.endswith("_s")])
        m["frame_of"] = frame_of
        out.append(m)
    if not out:
        return pd.DataFrame()
    m = pd.concat(out, ignore_index=True)
    schema = table_schema(MAPS)
    for name in schema.names:
        if name not in m:
            m[name] = np.nan
    m["nside"] = nside
    m["n_frames"] = 1
    m["zp_clear_median"] = result.zeropoint
    for c in ("n_stars", "n_seen", "map_flags", "n_sky", "n_astro"):
        m[c] = pd.to_numeric(m[c]).fillna(0).astype(np.int64)
    # transparency_err is an error of the median, not a zeropoint scatter: kept out of dzp_scatter
    m["dzp_scatter"] = np.nan
    return m[[n for n in schema.names if n != "map_id"]]


def _check_zenith(model, nx: int, ny: int) -> None:
    """Reject a frame on which the camera model's zenith does not fall (another camera's, or a wrong model)."""
    zx, zy = model.altaz_to_pixel(90.0, 0.0)
    if not (0 <= float(zx) < nx and 0 <= float(zy) < ny):
        raise FrameRejected(
            f"the camera model's zenith ({float(zx):.1f}, {float(zy):.1f}) lies outside this "
            f"{nx}x{ny} frame: not this camera's frame, or a wrong [camera] model"
        )


def _frame_columns(rec: dict, res, site, time, nx: int, ny: int) -> None:
    """Fill ``rec`` in place with the frame columns of the result ``res`` (and its notes in ``extract_note``)."""
    model = res.model
    rec.update(
        nx=nx,
        ny=ny,
        wcs_source="camera",
        camera_model=json.dumps(model.to_dict(), sort_keys=True),
        cloud_fraction=res.cloud_fraction,
        n_stars_expected=res.n_expected,
        n_stars_seen=res.n_seen,
        allsky_zeropoint=res.zeropoint,
        sky_mag_zenith=res.summary()["sky_mag_zenith"],
        n_streaks=len(res.streaks),
        altitude=90.0,
        azimuth=0.0,
        airmass=1.0,
    )
    ra_c, dec_c = site.altaz_to_radec(np.array([90.0]), np.array([0.0]), time)
    rec.update(ra_center=float(ra_c[0]), dec_center=float(dec_c[0]), pixscale=float(3600.0 / model.plate_scale(0.0)))
    if res.check is not None:
        rec.update(camera_shift_px=math.hypot(res.check.shift_x_px, res.check.shift_y_px))
        rec.update(camera_rotation_deg=res.check.rotation_deg)
    if res.fit is not None:
        rec.update(
            astrometry_rms_px=res.fit.rms_px,
            astrometry_rms_arcsec=3600.0 * res.fit.rms_deg,
            astrometry_n_stars=res.fit.n_matched,
        )
    elif res.check is not None and res.check.n_stars:  # the profile's model, as the frame's stars see it
        rec.update(
            astrometry_rms_px=res.check.rms_px,
            astrometry_rms_arcsec=res.check.rms_px * rec["pixscale"],
            astrometry_n_stars=res.check.n_stars,
        )
    notes = [f"{k}: {v}" for k, v in res.notes.items() if k != "bias_adu"]
    if not math.isfinite(res.zeropoint):
        notes.append(f"no maps: zeropoint {res.zeropoint_source}")
    if notes:
        rec["extract_note"] = "; ".join(filter(None, [rec.get("extract_note", ""), *notes]))


def _source_columns(res, rec: dict, profile, settings, data, site, time) -> dict:
    """The source columns: forced and/or detected rows (``allsky.sources``) placed by the camera model."""
    from skylake.frame import astrometry

    model = res.model
    ny, nx = data.shape
    parts = []
    choice = profile.allsky["sources"]
    if choice in ("forced", "both") and len(res.stars):
        stars = res.stars[np.isfinite(np.asarray(res.stars["x_pred"], float))]
        seen = np.asarray(res.stars["detected"])[np.isfinite(np.asarray(res.stars["x_pred"], float))]
        parts.append(_forced_rows(stars, rec["exptime"], seen))
    if choice in ("detected", "both"):
        parts.append(_detected_rows(data, rec, profile, model, site, time))
    cols = _concat(parts) if parts else _empty_columns(0)
    n = len(cols["ra"])
    cols["position_from"] = np.full(n, "camera", dtype=object)
    cols["mjd"] = np.full(n, rec["mjd"])
    cols["edge_dist"] = (
        np.minimum.reduce([cols["x"], cols["y"], nx - 1 - cols["x"], ny - 1 - cols["y"]]) if n else np.zeros(0)
    )
    cols["_healpix_29"] = astrometry.healpix29(cols["ra"], cols["dec"])
    return cols


def _streak_rows(res, cols: dict, mjd: float, site, time) -> pd.DataFrame:
    """The frame's streak rows (ends on the sky, sources and catalogue stars on each); flags ``cols`` ON_STREAK."""
    from skylake.frame.streaks import flag_on_streaks

    model = res.model
    n = len(cols["ra"])
    streaks = res.streaks.to_pandas() if len(res.streaks) else pd.DataFrame()
    if not len(streaks):
        return streaks
    on = np.zeros(n, bool)
    counts = []
    for i in range(len(res.streaks)):
        hit = flag_on_streaks(cols["x"], cols["y"], res.streaks[i : i + 1]) if n else np.zeros(0, bool)
        counts.append(int(hit.sum()))
        on |= hit
    cols["flags"] = np.asarray(cols["flags"], np.int64) | np.where(on, ON_STREAK, 0)
    ra1, dec1 = model.pixel_to_radec(streaks["x1"].to_numpy(), streaks["y1"].to_numpy(), site, time)
    ra2, dec2 = model.pixel_to_radec(streaks["x2"].to_numpy(), streaks["y2"].to_numpy(), site, time)
    xs = np.asarray(res.stars["x_pred"], float) if len(res.stars) else np.zeros(0)
    ys = np.asarray(res.stars["y_pred"], float) if len(res.stars) else np.zeros(0)
    okp = np.isfinite(xs) & np.isfinite(ys)
    stars_on = [
        int(flag_on_streaks(xs[okp], ys[okp], res.streaks[i : i + 1], margin_px=0.0).sum())
        for i in range(len(res.streaks))
    ]
    return streaks.assign(
        streak=np.arange(len(streaks)),
        mjd=mjd,
        ra1=ra1,
        dec1=dec1,
        ra2=ra2,
        dec2=dec2,
        n_sources=counts,
        n_stars_on=stars_on,
    )


def process_allsky(image, rec: dict, profile, catalog_path: str, lake_root: str | None = None) -> tuple[dict, dict]:
    """Process one all-sky frame whose header record ``rec`` is read.

    Parameters
    ----------
    image : skylake.frame.reading.Image
        The frame (its ``data``).
    rec : dict
        The frame's record from its header (``mjd``, ``exptime``, ``saturation``, ``gain``, ...); filled in
        place with the frame columns (size, camera model, cloud fraction, zeropoint, zenith sky, streak
        count, centre, astrometry, status).
    profile : skylake.profile.Profile
        An all-sky profile with a ``[camera]`` model and ``[allsky]`` settings.
    catalog_path : str
        The bright-star catalogue (:func:`catalog_source`).
    lake_root : str, optional
        The lake's location, where the camera's known static artefacts are read.

    Returns
    -------
    cols : dict
        The source columns: forced and/or detected rows (as ``allsky.sources`` chooses) placed by the camera
        model, with ``position_from`` = ``"camera"``, ``mjd``, ``edge_dist`` and ``_healpix_29``; sources on a
        streak are flagged ON_STREAK.
    extras : dict
        The per-frame tables by name: ``streaks`` (DataFrame of schemas/streaks.yaml less the ids) and
        ``maps`` (map pixel rows of schemas/maps.yaml less ``map_id``, with the ``[allsky]`` nside).

    Raises
    ------
    FrameRejected
        With the reason when the frame cannot be processed (the camera model's zenith lies outside the
        frame, or the all-sky processing fails).
    """
    from astropy.time import Time

    from skylake.allsky.pipeline import process_frame

    model, site = camera_of(profile)
    settings = allsky_settings(profile)
    data = np.asarray(image.data, float)
    ny, nx = data.shape
    _check_zenith(model, nx, ny)
    time = Time(rec["mjd"], format="mjd", scale="utc")
    catalog = bright_stars(catalog_path)
    try:
        from skylake.allsky.foreground import lake_mask
        from skylake.frame.static_artefacts import known

        mask, mask_note = lake_mask(lake_root, profile.name, rec["mjd"], data.shape)
        res = process_frame(
            data, time, rec["exptime"], model, site, catalog, settings, mask=mask,
            known_artefacts=known(lake_root, profile.name),
        )  # fmt: skip
    except ValueError as exc:
        raise FrameRejected(f"all-sky processing failed: {exc}") from None
    _frame_columns(rec, res, site, time, nx, ny)
    cols = _source_columns(res, rec, profile, settings, data, site, time)
    streaks = _streak_rows(res, cols, rec["mjd"], site, time)
    rec["n_sources"] = len(cols["ra"])
    rec["status"], rec["reason"] = "ok", ""
    if res.camera_lost:  # positions and photometry are off (process_frame made no cloud fraction or maps)
        rec["status"], rec["reason"] = CAMERA_MOVED, f"{res.check.describe()}; {res.notes.get('fit', 'not refitted')}"
    if mask_note:
        rec["extract_note"] = "; ".join(filter(None, [rec.get("extract_note", ""), f"foreground {mask_note}"]))
    if not math.isfinite(res.cloud_fraction):
        rec["extract_note"] = "; ".join(
            filter(None, [rec.get("extract_note", ""), "no catalogue star expected: cloud fraction unknown"])
        )
    return cols, {STREAKS: streaks, MAPS: _map_rows(res, settings.nside)}


def reflag_streaks(trails: dict, frame_id: int, rows):
    """Set ON_STREAK again on a frame's sources from the frame's real trails alone.

    This applies when ``trails`` has the frame: the commit found some of the frame task's detections to be
    static artefacts. Other frames' rows are returned as they are.

    Parameters
    ----------
    trails : dict
        Frame id -> Table of the frame's real trails (``x1``, ``y1``, ``x2``, ``y2``, ``width``).
    frame_id : int
        The frame the rows belong to.
    rows : pyarrow.Table
        The frame's sources (``x``, ``y``, ``flags``).

    Returns
    -------
    rows : pyarrow.Table
        ``rows`` with the ON_STREAK bit of ``flags`` set from ``trails[frame_id]`` only, or ``rows``
        unchanged when ``trails`` does not have the frame.
    """
    import pyarrow as pa

    from skylake.frame.streaks import flag_on_streaks

    if frame_id not in trails:
        return rows
    on = flag_on_streaks(rows.column("x").to_numpy(), rows.column("y").to_numpy(), trails[frame_id])
    flags = (rows.column("flags").to_numpy() & ~ON_STREAK) | np.where(on, ON_STREAK, 0)
    return rows.set_column(rows.schema.get_field_index("flags"), "flags", pa.array(flags.astype(np.int32)))
