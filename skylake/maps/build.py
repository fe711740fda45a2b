"""Build HEALPix maps from what calibration left in the lake.

For the frames selected (one night, one frame, a range of nights, or every night), grouped by the
profile that ingested them:

1. each frame's latest zeropoint row of the catalogue (the profile's ``[calibration] refcat`` or
   ``refcat``), its matches, the night's extinction row, and the frame's sources (for their
   ``_healpix_29``, position and background) are read: only the selected nights' directories, and
   only the sources partitions a frame can reach (a disc past its footprint's corners; every file
   when a frame has no footprint, or when fewer sources than its ``n_sources`` are found there);
2. each matched star becomes a zeropoint sample ``ref_mag - inst_mag - color_term * ref_color``
   (stars used in the fit or clipped from it: clipping is what a patchy cloud does) with its
   clear-sky reference ``zp_clear`` (see :func:`clear_sky_zeropoints`); each source a sky-brightness
   sample; each well-measured pair an astrometric residual sample;
3. samples get the pixel of every requested frame (equatorial: a shift of ``_healpix_29``; horizon:
   alt/az from the profile's site at the frame's time) and :func:`skylake.maps.aggregate.aggregate_pixels`
   reduces them per (map, pixel).

Steps 1 (sources and matches) to 3 (pixels) run per group of :data:`FRAMES_PER_TASK` frames
(:func:`write_samples`), which writes its samples to a run directory on the lake's store split by
pixel group (:func:`pixel_groups`); the reduce (medians per pixel, :func:`reduce_pixels`) runs per
pixel group over the files of that group. Both are dask tasks when a client is given, else run one at
a time in this process: a task holds its frames' samples or its pixel group's, never the night's, and
the driver only the pixel rows (and, when asked, the samples).

The result is a :class:`MapSet`: pixel rows (schemas/maps.yaml), one index row per map
(schemas/maps_index.yaml) and the star samples (for checks against truth).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skylake.calib.model import ASTRO_EXCLUDE, STAR_REJECTS, LatestPolicy, latest_calibration, pair_zeropoint
from skylake.horizon import altaz
from skylake.lake import Lake
from skylake.lake import frames as lake_frames
from skylake.lake.frames import FrameSelection
from skylake.lake.parquet import value_set
from skylake.lake.tables import SOURCES
from skylake.lake.versions import latest_versions
from skylake.maps.aggregate import (
    KEYS,
    MapsError,
    aggregate_pixels,
    airmass,
    equatorial_pixels,
    horizon_pixels,
    nside_order,
    pixel_centres,
    sky_brightness,
)
from skylake.profile import Profile, ProfileError
from skylake.runtime import release_memory

__all__ = [
    "FRAMES_OF",
    "ENVELOPE_PERCENTILE",
    "FRAME_COLUMNS",
    "FRAMES_PER_TASK",
    "REDUCE_ORDER",
    "SAMPLE_COLUMNS",
    "MapSet",
    "select_frames",
    "clear_sky_zeropoints",
    "map_id",
    "compute_maps",
    "read_frames_rows",
    "SampleSpec",
    "map_samples",
    "write_samples",
    "reduce_pixels",
    "pixel_groups",
]


log = logging.getLogger(__name__)

FRAMES_OF = ("equatorial", "horizon")
ENVELOPE_PERCENTILE = 95.0  # zp_clear "auto" on a night without an extinction row
FRAME_COLUMNS = [
    "frame_id",
    "night",
    "profile",
    "pipeline_version",
    "content_hash",
    "hdu",
    "status",
    "mjd",
    "exptime",
    "airmass",
    "pixscale",
    "n_sources",
    "ra_center",
    "dec_center",
    "footprint_ra",
    "footprint_dec",
]
#: Frames per task of a map's sample computation (each task reads its frames' sources and matches).
FRAMES_PER_TASK = 16
#: HEALPix order of the pixel groups the samples are reduced in (a task each): at nside 2**REDUCE_ORDER or
#: below a group is one pixel; above, a reduce task holds the samples of 4**(order - REDUCE_ORDER) pixels
REDUCE_ORDER = 3
#: the columns of the samples written per pixel group (:func:`write_samples`), as the reduce reads them
SAMPLE_COLUMNS = {
    "stars": KEYS + ["frame_id", "zp", "zp_clear", "ref_id"],
    "sky": KEYS + ["frame_id", "sky_mag"],
    "astro": KEYS + ["dra_arcsec", "ddec_arcsec", "sep_arcsec"],
}


@dataclass
class MapSet:
    """Maps computed by :func:`compute_maps`, not yet stored.

    Attributes
    ----------
    pixels : pandas.DataFrame
        One row per pixel per map: schemas/maps.yaml columns plus night (the partition).
    index : pandas.DataFrame
        One row per map: schemas/maps_index.yaml columns except path, batch_id, created_at.
    stars : pandas.DataFrame
        With ``samples=True``, the star samples: map_id, pixel, frame_id, ref_id, zp, zp_clear [mag].
    sky : pandas.DataFrame
        With ``samples=True``, the sky samples: map_id, pixel, frame_id, sky_mag [mag/arcsec2].
    """

    pixels: pd.DataFrame  # schemas/maps.yaml columns plus night (the partition)
    index: pd.DataFrame  # schemas/maps_index.yaml columns except path, batch_id, created_at
    stars: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # (with samples=True) star samples: map_id, pixel, frame_id, ref_id, zp, zp_clear
    sky: pd.DataFrame = field(default_factory=pd.DataFrame)  # sky samples: map_id, pixel, frame_id, sky_mag


def select_frames(
    lake: Lake,
    night: str | None = None,
    frame_id: int | None = None,
    since: str | None = None,
    until: str | None = None,
) -> pd.DataFrame:
    """Frames (not rejected) of one night, one frame, nights in [since, until], or all.

    Parameters
    ----------
    lake : Lake
        The lake.
    night : str, optional
        One observing night (YYYY-MM-DD).
    frame_id : int, optional
        One frame.
    since : str, optional
        The first night (YYYY-MM-DD) of a range; open-ended without it.
    until : str, optional
        The last night (YYYY-MM-DD) of a range; open-ended without it.

    Returns
    -------
    pandas.DataFrame
        The latest version of each frame selected, with :data:`FRAME_COLUMNS`.

    Raises
    ------
    NightError
        A date that is not YYYY-MM-DD.
    MapsError
        More than one of ``night``, ``frame_id`` and the range, or a frame not in the lake (or rejected at
        ingest).
    """
    selection = FrameSelection(night=night, since=since, until=until, frame_id=frame_id, usable=True)
    if sum(v is not None for v in (night, frame_id)) + (since is not None or until is not None) > 1:
        raise MapsError("choose one of --night, --frame, --since/--until")
    frames = latest_versions(lake_frames.select_frames(lake, selection, FRAME_COLUMNS))
    if frame_id is not None and frames.empty:
        raise MapsError(f"frame {frame_id} is not in the lake (or was rejected at ingest)")
    return frames


def _site_known(prof: Profile) -> bool:
    s = prof.site
    return not (s.name == "unknown" and s.lat_deg == 0 and s.lon_deg == 0)


def clear_sky_zeropoints(
    zp_clear, night: np.ndarray, calib_key: np.ndarray, x: np.ndarray, extinction: pd.DataFrame, zps: pd.DataFrame
) -> np.ndarray:
    """Clear-sky reference zeropoint (mag) of each sample at airmass ``x`` on its night.

    A number ``zp_clear``: that fixed zeropoint (MDM all-sky style: transparency then includes the airmass
    extinction). ``"auto"``: the night's extinction line of the same calibration, ``zp_airmass0 -
    k_ext * airmass``, so transparency is 1 on a clear night at any airmass; when the night had no
    extinction fit (k_ext null) its row's ``zp_airmass0`` is the clipped median zeropoint of its ok
    frames; when the night has no extinction row at all, the upper envelope: the 95th percentile of
    its frames' fitted zeropoints (``zps``: night, calib_key, zp_fit).

    Parameters
    ----------
    zp_clear : float or str
        A fixed clear-sky zeropoint [mag], or ``"auto"``.
    night : numpy.ndarray
        Each sample's night.
    calib_key : numpy.ndarray
        Each sample's calibration key.
    x : numpy.ndarray
        Each sample's airmass.
    extinction : pandas.DataFrame
        The nights' extinction rows: night, calib_key, k_ext [mag/airmass], zp_airmass0 [mag] (the last row
        of a night and calibration key counts).
    zps : pandas.DataFrame
        The frames' zeropoints: night, calib_key, zp_fit [mag].

    Returns
    -------
    numpy.ndarray
        The clear-sky zeropoint of each sample [mag]; NaN where the night has neither an extinction row nor
        a fitted zeropoint.
    """
    n = len(night)
    if zp_clear != "auto":
        return np.full(n, float(zp_clear))
    key = pd.DataFrame({"night": np.asarray(night, object), "calib_key": np.asarray(calib_key, object)})
    ext = extinction.drop_duplicates(["night", "calib_key"], keep="last")[
        ["night", "calib_key", "k_ext", "zp_airmass0"]
    ]
    env = (
        zps.groupby(["night", "calib_key"])["zp_fit"]
        .quantile(ENVELOPE_PERCENTILE / 100)
        .rename("envelope")
        .reset_index()
    )
    got = key.merge(ext, on=["night", "calib_key"], how="left").merge(env, on=["night", "calib_key"], how="left")
    k = got["k_ext"].to_numpy(float)
    ref = got["zp_airmass0"].to_numpy(float) - np.where(np.isfinite(k), k, 0.0) * np.asarray(x, float)
    return np.where(np.isfinite(ref), ref, got["envelope"].to_numpy(float))


def map_id(
    scope: str, selection: dict, nside: int, frame_of: str, profile: str, refcat: str, zp_clear, min_stars: int
) -> str:
    """Identity of a map: making the same map again replaces it.

    Parameters
    ----------
    scope : str
        The map's scope: ``night``, ``frame`` or ``range``.
    selection : dict
        What it covers: ``{"night": ...}``, ``{"frame_id": ...}`` or ``{"since": ..., "until": ...}``.
    nside : int
        The HEALPix nside.
    frame_of : str
        The coordinates: ``equatorial`` or ``horizon``.
    profile : str
        The profile's name.
    refcat : str
        The calibration catalogue.
    zp_clear : float or str
        The clear-sky zeropoint setting ([mag], or ``"auto"``).
    min_stars : int
        The fewest star samples that give a pixel a zeropoint.

    Returns
    -------
    str
        The first 16 hex digits of the SHA-256 of them all.
    """
    ident = {
        "scope": scope,
        "selection": selection,
        "nside": nside,
        "frame_of": frame_of,
        "profile": profile,
        "refcat": refcat,
        "zp_clear": zp_clear,
        "min_stars": min_stars,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def compute_maps(
    lake: Lake,
    *,
    night: str | None = None,
    frame_id: int | None = None,
    since: str | None = None,
    until: str | None = None,
    per_frame: bool = False,
    nside: int | None = None,
    frames_of: tuple[str, ...] = FRAMES_OF,
    refcat: str | None = None,
    profile: Profile | str | None = None,
    client=None,
    samples: bool = True,
) -> MapSet:
    """Compute the maps of the selection (see module docstring).

    One map per night (default, and with ``night``), per frame (``frame_id``, or ``per_frame``), or one over
    ``since``..``until``; each per profile and coordinates (``frames_of``).

    Only the selected nights' directories of frames, zeropoints, extinction and matches are read, and
    the sources of the partitions the frames cover. The samples are computed per group of
    :data:`FRAMES_PER_TASK` frames and written to the lake's store, then reduced per pixel group
    (:data:`REDUCE_ORDER`): tasks on ``client`` (a ``distributed.Client``) when given, else one at a time
    here. Frames of a profile that cannot be found, or that names no reference catalogue, are left out with
    a warning.

    Parameters
    ----------
    lake : Lake
        The lake.
    night : str, optional
        One observing night (YYYY-MM-DD).
    frame_id : int, optional
        One frame.
    since : str, optional
        The first night (YYYY-MM-DD) of one map over a range of nights.
    until : str, optional
        The last night (YYYY-MM-DD) of one map over a range of nights.
    per_frame : bool, optional
        One map per frame of the selection.
    nside : int, optional
        The HEALPix nside (default: the profile's ``[maps] nside``).
    frames_of : tuple of str, optional
        The coordinates: ``equatorial``, ``horizon`` or both (default; then a profile without a ``[site]``
        gets equatorial maps only, with a warning).
    refcat : str, optional
        The calibration catalogue (default: the profile's ``[calibration] refcat``).
    profile : Profile or str, optional
        The profile (or its name or file) for ``[site]`` and ``[maps]``, the command's ``--pipeline``
        (default: the frames' own, as stored at ingest).
    client : distributed.Client, optional
        Where the sample and reduce tasks run (default: one at a time in this process).
    samples : bool, optional
        Also return the star and sky samples (:class:`MapSet`; for checks against truth, they are as many as
        the selection's stars and sources); without, neither a task nor this process holds more than a
        group's.

    Returns
    -------
    MapSet
        The maps (empty when no frame of the selection could be mapped).

    Raises
    ------
    MapsError
        A bad ``frames_of``, ``nside``, date or selection, a frame not in the lake, or horizon maps asked
        for (``frames_of`` not both) of a profile without a ``[site]``.
    """
    bad = [f for f in frames_of if f not in FRAMES_OF]
    if bad or not frames_of:
        raise MapsError(f"frame-of must be among {list(FRAMES_OF)}, got {list(frames_of)}")
    if nside is not None:
        nside_order(nside)
    frames = select_frames(lake, night, frame_id, since, until)
    scope = "frame" if (frame_id is not None or per_frame) else ("range" if (since or until) else "night")
    parts = []
    from skylake.profile_store import frames_profile

    for name, group in frames.groupby("profile", sort=True, dropna=False):
        try:  # a profile's stored settings: those of its latest pipeline version among the frames
            version = group.sort_values("frame_id")["pipeline_version"].iloc[-1]
            prof = frames_profile(lake, name, version, profile)
        except ProfileError as exc:
            log.warning("frames of profile %r not mapped: %s (pass the profile file with --pipeline)", name, exc)
            continue
        cat = refcat or prof.calibration.refcat
        if not cat:
            log.warning(
                "profile %s names no reference catalogue; its %d frames are not mapped (pass --refcat)",
                prof.name,
                len(group),
            )
            continue
        parts.append(
            _profile_maps(
                lake,
                group,
                prof,
                cat,
                scope,
                {"since": since, "until": until},
                nside or prof.maps.nside,
                frames_of,
                explicit=frames_of != FRAMES_OF,
                client=client,
                samples=samples,
            )
        )
    if not parts:
        return MapSet(pixels=pd.DataFrame(), index=pd.DataFrame())
    return MapSet(
        *(pd.concat([getattr(p, f) for p in parts], ignore_index=True) for f in ("pixels", "index", "stars", "sky"))
    )


def _frame_partitions(lake: Lake, frames: pd.DataFrame) -> list[str] | None:
    """Live sources files of the partitions each frame can have sources in: a disc around its centre
    reaching past its corners (HEALPix query through healpy, per partition order); None when a frame's
    footprint is unknown (every file)."""
    import healpy as hp
    from hats.pixel_math.healpix_shim import order2nside

    from skylake.lake import hats_meta

    partitions = hats_meta.read_partitions(lake.store, SOURCES)
    if not partitions:
        return []
    orders = sorted({p.order for p in partitions})
    hit: set = set()
    for row in frames.itertuples():
        fra, fdec = row.footprint_ra, row.footprint_dec
        if fra is None or fdec is None or len(fra) == 0 or not np.isfinite([row.ra_center, row.dec_center]).all():
            return None
        centre = hp.ang2vec(row.ra_center, row.dec_center, lonlat=True)
        corners = hp.ang2vec(np.asarray(fra, float), np.asarray(fdec, float), lonlat=True)
        radius = float(np.arccos(np.clip(corners @ centre, -1, 1)).max()) * 1.05 + np.radians(0.05)
        for order in orders:
            hit |= {
                (order, int(p))
                for p in hp.query_disc(order2nside(order), centre, min(radius, np.pi), inclusive=True, nest=True)
            }
    files = []
    for p in partitions:
        if (p.order, p.pixel) in hit:
            files += lake.store.walk_files(f"sources/{hats_meta.pixel_dir(p.order, p.pixel)}", ".parquet")
    return files


def read_frames_rows(lake: Lake, paths: list[str], columns: list[str], frame_ids: pa.Array) -> pa.Table:
    """``columns`` of the rows of ``frame_ids`` in the sources files ``paths`` (lake-relative), a file at a time.

    Only the row groups whose ``frame_id`` statistics reach the ids are read. A dataset over the files
    would hold every file's footer at once, and a partition has a file per batch: on a 25-night lake a
    task's 1025 files cost +127 MB that way, +3 MB this one.

    Parameters
    ----------
    lake : Lake
        The lake.
    paths : list of str
        The sources files, lake-relative.
    columns : list of str
        Columns of the source table, ``frame_id`` among them.
    frame_ids : pyarrow.Array
        The frames.

    Returns
    -------
    pyarrow.Table
        The rows, with the source table's types.
    """

    from skylake.schema import table_schema

    schema = pa.schema([table_schema(SOURCES).field(c) for c in columns])
    lo, hi = pc.min(frame_ids).as_py(), pc.max(frame_ids).as_py()
    parts = []
    for rel in paths:
        pf = lake.parquet_file(rel)
        col = pf.schema_arrow.get_field_index("frame_id")
        groups = []
        for g in range(pf.metadata.num_row_groups):
            st = pf.metadata.row_group(g).column(col).statistics
            if st is None or not st.has_min_max or (st.min <= hi and st.max >= lo):
                groups.append(g)
        if groups:
            rows = pf.read_row_groups(groups, columns=columns)
            parts.append(rows.filter(pc.is_in(rows.column("frame_id"), value_set=frame_ids)).cast(schema))
        del pf
    return pa.concat_tables(parts) if parts else schema.empty_table()


@dataclass(frozen=True, eq=False)
class SampleSpec:
    """What every task of one profile's maps shares (sent to the workers once).

    Attributes
    ----------
    url : str
        The lake (its path or URL).
    refcat : str
        The reference catalogue of the calibrations used.
    frames : pandas.DataFrame
        The frames, with their calibration.
    ext : pandas.DataFrame
        The extinction rows of their nights.
    zp_clear : float or None
        The profile's clear-sky zeropoint [mag] (``[maps] zp_clear``).
    frames_of : tuple of str
        The coordinates of the maps (equatorial, horizon).
    scope : str
        What the maps cover (``frame`` or ``night``).
    nside : int
        The maps' HEALPix nside.
    site : tuple of float or None
        Latitude [deg], longitude [deg], height [m]; None without a site.
    run : str
        The run directory on the lake's store where the samples are written per pixel group.
    min_stars : int
        Stars a pixel needs for a value.
    samples : bool
        Whether :func:`reduce_pixels` also returns the samples.
    """

    url: str
    refcat: str
    frames: pd.DataFrame
    ext: pd.DataFrame
    zp_clear: float | None
    frames_of: tuple
    scope: str
    nside: int
    site: tuple | None
    run: str
    min_stars: int
    samples: bool


def _frame_sources(
    lake: Lake, frames: pd.DataFrame, frame_ids: np.ndarray, files: list[str] | None, site: tuple | None
) -> pd.DataFrame:
    """The sources of some frames with their frame's facts, altitude, azimuth and airmass.

    Parameters
    ----------
    lake : Lake
        The lake.
    frames : pandas.DataFrame
        The frames' rows.
    frame_ids : numpy.ndarray
        The frames.
    files : list of str or None
        The sources files to read (as for :func:`map_samples`).
    site : tuple or None
        The site for :func:`altaz` (None: every star of a frame at the frame's airmass).

    Returns
    -------
    pandas.DataFrame
        One row per source.
    """
    ids = value_set(frame_ids)
    cols = ["source_id", "frame_id", "_healpix_29", "ra", "dec", "bkg"]

    def read(paths):
        """The sources rows of the frames, from some files or from the whole table.

        Parameters
        ----------
        paths : list of str or None
            The sources files (lake-relative; None: every one).

        Returns
        -------
        pyarrow.Table
            The frames' sources.
        """
        if paths is None:
            return lake.read_sources(columns=cols, filter=pc.field("frame_id").isin(ids))
        return read_frames_rows(lake, paths, cols, ids)

    sources = read(files).to_pandas()
    if files is not None:  # a frame whose sources lie outside the partitions its footprint covers: read all
        found = sources.groupby("frame_id").size().reindex(frames["frame_id"]).fillna(0).to_numpy()
        if (found < frames["n_sources"].fillna(0).to_numpy()).any():
            sources = read(None).to_pandas()
    sources = sources.merge(
        frames[["frame_id", "night", "mjd", "exptime", "pixscale", "airmass", "calib_key", "zp_sky"]], on="frame_id"
    )
    if site is not None:
        sources["alt"], sources["az"] = altaz(sources["ra"], sources["dec"], sources["mjd"], *site)
        sources["x_air"] = airmass(sources["alt"])
    else:  # no site: every star of a frame at the frame's airmass
        sources["alt"] = sources["az"] = np.nan
        sources["x_air"] = sources["airmass"].astype(float)
    return sources


def _frame_matches(
    lake: Lake, refcat: str, frames: pd.DataFrame, frame_ids: np.ndarray, sources: pd.DataFrame
) -> pd.DataFrame:
    """The catalogue matches of some frames, with their frame's colour term and their source's columns.

    Parameters
    ----------
    lake : Lake
        The lake.
    refcat : str
        The reference catalogue.
    frames : pandas.DataFrame
        The frames' rows.
    frame_ids : numpy.ndarray
        The frames.
    sources : pandas.DataFrame
        Their sources (:func:`_frame_sources`).

    Returns
    -------
    pandas.DataFrame
        One row per match.
    """
    from skylake.calib.store import MATCHES, read_table

    matches = read_table(
        lake,
        MATCHES,
        [
            "source_id",
            "frame_id",
            "calib_key",
            "ref_id",
            "ref_mag",
            "inst_mag",
            "ref_color",
            "reject",
            "dra_arcsec",
            "ddec_arcsec",
            "sep_arcsec",
        ],
        refcat=refcat,
        frame_ids=frame_ids,
        nights=sorted(set(frames["night"]), key=str),
    )
    matches = matches.merge(frames[["frame_id", "calib_key", "color_term"]], on=["frame_id", "calib_key"])
    return matches.merge(sources.drop(columns=["frame_id", "calib_key"]), on="source_id")


def _star_samples(spec: SampleSpec, matches: pd.DataFrame) -> pd.DataFrame:
    """The star samples: matched stars with their zeropoint and the clear-sky zeropoint at their airmass.

    Parameters
    ----------
    spec : SampleSpec
        What every task of the profile's maps shares (``ext``, ``frames``, ``zp_clear``).
    matches : pandas.DataFrame
        The frames' matches (:func:`_frame_matches`).

    Returns
    -------
    pandas.DataFrame
        The stars with both zeropoints finite.
    """
    stars = matches[matches["reject"].isin(STAR_REJECTS)].copy()
    # a star of unknown colour under a colour term gives no sample (NaN, dropped below)
    stars["zp"] = pair_zeropoint(
        stars["ref_mag"].to_numpy(float),
        stars["inst_mag"].to_numpy(float),
        stars["ref_color"].to_numpy(float),
        stars["color_term"].to_numpy(float),
    )
    stars["zp_clear"] = clear_sky_zeropoints(
        spec.zp_clear,
        stars["night"].to_numpy(object),
        stars["calib_key"].to_numpy(object),
        stars["x_air"].to_numpy(float),
        spec.ext,
        spec.frames,
    )
    return stars[np.isfinite(stars["zp"]) & np.isfinite(stars["zp_clear"])]


def _map_keys(df: pd.DataFrame, scope: str) -> np.ndarray:
    """The map key of each sample: its frame, its night, or ``range``.

    Parameters
    ----------
    df : pandas.DataFrame
        Samples, with ``frame_id`` and ``night``.
    scope : str
        ``frame``, ``night`` or another scope (one map of the whole range).

    Returns
    -------
    numpy.ndarray
        The key of each sample (str).
    """
    if scope == "frame":
        return df["frame_id"].to_numpy(np.int64).astype(str)
    if scope == "night":
        return df["night"].to_numpy(object).astype(str)
    return np.full(len(df), "range")


def _map_pixels(df: pd.DataFrame, frame_of: str, nside: int) -> np.ndarray:
    """The map pixel of each sample: equatorial, or horizon (-1 where the altitude is not known).

    Parameters
    ----------
    df : pandas.DataFrame
        Samples, with ``_healpix_29``, ``alt`` and ``az``.
    frame_of : str
        ``equatorial`` or the horizon frame.
    nside : int
        The maps' HEALPix nside.

    Returns
    -------
    numpy.ndarray
        The pixel of each sample.
    """
    if frame_of == "equatorial":
        return equatorial_pixels(df["_healpix_29"].to_numpy(np.int64), nside)
    ok = np.isfinite(df["alt"].to_numpy(float))
    return np.where(
        ok,
        horizon_pixels(np.nan_to_num(df["az"].to_numpy(float)), np.nan_to_num(df["alt"].to_numpy(float)), nside),
        -1,
    )


def map_samples(spec: SampleSpec, frame_ids: np.ndarray, files: list[str] | None) -> dict:
    """The star, sky and astrometric samples of some frames of one profile's maps (module docstring, steps 1-3).

    A frame found with fewer sources than ``n_sources`` in ``files`` is read again from every file.

    Parameters
    ----------
    spec : SampleSpec
        What every task of the profile's maps shares.
    frame_ids : numpy.ndarray
        The frames.
    files : list of str or None
        The sources files to read (lake-relative, through :func:`read_frames_rows`; None: every one).

    Returns
    -------
    dict
        ``{frame_of: (stars, sky, astro)}``: three pandas.DataFrame of samples with their map key and pixel.
    """
    lake = Lake.open(spec.url, catch_up=False)
    lake.auto_catch_up = False
    frames = spec.frames[spec.frames["frame_id"].isin(frame_ids)]
    sources = _frame_sources(lake, frames, frame_ids, files, spec.site)
    matches = _frame_matches(lake, spec.refcat, frames, frame_ids, sources)
    stars = _star_samples(spec, matches)
    sky = sources.assign(
        sky_mag=sky_brightness(sources["zp_sky"], sources["bkg"], sources["exptime"], sources["pixscale"])
    )
    sky = sky[np.isfinite(sky["sky_mag"])]
    astro = matches[~matches["reject"].isin(ASTRO_EXCLUDE)]
    scope, nside = spec.scope, spec.nside

    out = {}
    cols = ["map_key", "frame_id", "night", "mjd", "calib_key"]
    for frame_of in spec.frames_of:
        s = stars.assign(map_key=_map_keys(stars, scope), pixel=_map_pixels(stars, frame_of, nside))
        k = sky.assign(map_key=_map_keys(sky, scope), pixel=_map_pixels(sky, frame_of, nside))
        a = astro.assign(map_key=_map_keys(astro, scope), pixel=_map_pixels(astro, frame_of, nside))
        s, k, a = s[s["pixel"] >= 0], k[k["pixel"] >= 0], a[a["pixel"] >= 0]
        out[frame_of] = (
            s[list(dict.fromkeys(KEYS + cols + ["zp", "zp_clear", "ref_id"]))],
            k[list(dict.fromkeys(KEYS + cols + ["sky_mag"]))],
            a[KEYS + ["dra_arcsec", "ddec_arcsec", "sep_arcsec"]],
        )
    del sources, matches, stars, sky, astro
    release_memory()  # a worker's RSS is what its task holds, not what earlier tasks freed
    return out


def write_samples(spec: SampleSpec, task: int, frame_ids: np.ndarray, files: list[str] | None) -> dict:
    """:func:`map_samples` of some frames, written to the run directory ``spec.run``.

    One file per map frame, pixel group of :func:`pixel_groups` and kind:
    ``<frame_of>/<group>/<task>-<kind>.parquet``, so that no task and not the driver holds more than a share
    of the samples.

    Parameters
    ----------
    spec : SampleSpec
        What every task of the profile's maps shares (``run``: where the samples go).
    task : int
        The task's number (in its files' names).
    frame_ids : numpy.ndarray
        The frames.
    files : list of str or None
        The sources files to read (as for :func:`map_samples`).

    Returns
    -------
    dict
        What the index needs, ``frames`` (a pandas.DataFrame: per map frame, map key and frame: night, mjd,
        calib_key, star and sky sample counts), and the groups written, ``groups`` (a list of
        ``(frame_of, group)``).
    """
    from skylake.lake.parquet import parquet_bytes
    from skylake.lake.pieces import PIECE_ZSTD_LEVEL

    store = Lake.open(spec.url, catch_up=False).store
    per_frame, groups = [], []
    cols = ["map_key", "frame_id", "night", "mjd", "calib_key"]
    for frame_of, (s, k, a) in map_samples(spec, frame_ids, files).items():
        both = pd.concat([s[cols].assign(n_stars=1, n_sky=0), k[cols].assign(n_stars=0, n_sky=1)])
        per_frame.append(
            both.groupby(["map_key", "frame_id"], sort=False)
            .agg(
                night=("night", "first"),
                mjd=("mjd", "first"),
                calib_key=("calib_key", "first"),
                n_stars=("n_stars", "sum"),
                n_sky=("n_sky", "sum"),
            )
            .reset_index()
            .assign(frame_of=frame_of)
        )
        kinds = {
            "stars": s[SAMPLE_COLUMNS["stars"]],
            "sky": k[SAMPLE_COLUMNS["sky"]],
            "astro": a[SAMPLE_COLUMNS["astro"]],
        }
        of = {kind: pixel_groups(df["pixel"].to_numpy(np.int64), spec.nside) for kind, df in kinds.items()}
        for g in np.union1d(of["stars"], of["sky"]):  # a pixel with astrometry only is not mapped
            groups.append((frame_of, int(g)))
            for kind, df in kinds.items():
                rows = pa.Table.from_pandas(df[of[kind] == g], preserve_index=False)
                store.write_bytes(
                    f"{spec.run}/{frame_of}/{g}/{task}-{kind}.parquet",
                    parquet_bytes(rows, PIECE_ZSTD_LEVEL),
                    fsync=False,
                )
    return {"frames": pd.concat(per_frame, ignore_index=True) if per_frame else pd.DataFrame(), "groups": groups}


def reduce_pixels(spec: SampleSpec, frame_of: str, group: int) -> tuple:
    """:func:`~skylake.maps.aggregate.aggregate_pixels` of one pixel group's samples (every task's files of it).

    Parameters
    ----------
    spec : SampleSpec
        What every task of the profile's maps shares (``run``: where the samples are).
    frame_of : str
        The map frame: ``equatorial`` or ``horizon``.
    group : int
        The pixel group (:func:`pixel_groups`).

    Returns
    -------
    frame_of : str
        The map frame.
    pixels : pandas.DataFrame
        The pixel rows.
    stars : pandas.DataFrame or None
        The star samples, only with ``spec.samples``.
    sky : pandas.DataFrame or None
        The sky samples, only with ``spec.samples``.
    """

    store = Lake.open(spec.url, catch_up=False).store
    base = f"{spec.run}/{frame_of}/{group}"
    names = sorted(store.listdir(base))
    s, k, a = (
        pd.concat(
            [store.read_parquet(f"{base}/{n}").to_pandas() for n in names if n.endswith(f"-{kind}.parquet")],
            ignore_index=True,
        )
        for kind in SAMPLE_COLUMNS
    )
    agg = aggregate_pixels(s, k, a, spec.min_stars)
    del a
    release_memory()
    return (frame_of, agg) + ((s, k) if spec.samples else (None, None))


def pixel_groups(pixel: np.ndarray, nside: int) -> np.ndarray:
    """The reduce group of each NESTED pixel at ``nside``.

    Its parent at :data:`REDUCE_ORDER` (the pixel itself at lower orders).

    Parameters
    ----------
    pixel : numpy.ndarray
        NESTED pixels.
    nside : int
        Their HEALPix nside.

    Returns
    -------
    numpy.ndarray
        The group of each pixel.

    Raises
    ------
    MapsError
        ``nside`` is not a power of two from 1 to 2**29.
    """
    from hats.pixel_math.healpix_pixel import get_lower_order_pixel

    order = nside_order(nside)
    return get_lower_order_pixel(order, np.asarray(pixel, np.int64), max(order - REDUCE_ORDER, 0))


def _run(client, func, shared, *iterables) -> list:
    """``func(shared, *args)`` per args: tasks on ``client`` (``shared`` sent once), else in this process."""
    items = list(zip(*iterables))
    if client is None:
        return [func(shared, *args) for args in items]
    shared_f = client.scatter([shared], broadcast=True, hash=False)[0]  # own key: a spec sent again must not share it
    return client.gather([client.submit(func, shared_f, *args, pure=False) for args in items])


def _profile_maps(
    lake: Lake,
    frames: pd.DataFrame,
    prof: Profile,
    refcat: str,
    scope: str,
    rng: dict,
    nside: int,
    frames_of,
    explicit: bool,
    client=None,
    samples: bool = True,
) -> MapSet:
    """Maps of one profile's frames against one catalogue, in the stage's steps: the frames' calibration
    (:func:`_map_inputs`), the sample and reduce tasks (:func:`_map_tasks`) and the pixel rows and index
    (:func:`_assemble`)."""
    empty = MapSet(pixels=pd.DataFrame(), index=pd.DataFrame())
    frames, ext = _map_inputs(lake, frames, prof, refcat)
    if frames.empty:
        log.warning("no frame of profile %s is calibrated against %s: nothing to map", prof.name, refcat)
        return empty
    site = _site_known(prof)
    if "horizon" in frames_of and not site:
        if explicit:
            raise MapsError(f"profile {prof.name} has no [site] (lat_deg, lon_deg) for horizon maps")
        log.warning("profile %s has no [site]: equatorial maps only", prof.name)
        frames_of = tuple(f for f in frames_of if f != "horizon")
    written, reduced = _map_tasks(lake, frames, ext, prof, refcat, scope, nside, frames_of, site, client, samples)
    return _assemble(written, reduced, prof, refcat, scope, rng, nside, frames_of, samples) or empty


def _map_inputs(lake: Lake, frames: pd.DataFrame, prof: Profile, refcat: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frames with their latest calibration against ``refcat`` (frames without one dropped), colour
    term, clear-sky and sky zeropoints; and the nights' extinction rows."""
    from skylake.calib.store import EXTINCTION, ZEROPOINTS, read_table

    settings = prof.maps
    ids = frames["frame_id"].to_numpy(np.int64)
    nights = sorted(set(frames["night"].tolist()), key=str)
    zps = read_table(
        lake,
        ZEROPOINTS,
        ["frame_id", "refcat", "calib_key", "zp", "zp_fit", "zp_status", "color_term", "calibrated_at"],
        refcat=refcat,
        frame_ids=ids,
        nights=nights,
    )
    zps = latest_calibration(zps, LatestPolicy(refcat=refcat))  # whatever its status: zp is null unless ok
    frames = frames.merge(zps.drop(columns=["refcat", "calibrated_at"]), on="frame_id", how="inner")
    if frames.empty:
        return frames, pd.DataFrame()
    # colour term: the frame's, else the night's median (a frame without a fit), else none
    night_ct = frames.groupby("night")["color_term"].transform("median")
    frames["color_term"] = frames["color_term"].fillna(night_ct).fillna(0.0)
    ext = read_table(
        lake, EXTINCTION, ["night", "calib_key", "k_ext", "zp_airmass0", "calibrated_at"], refcat=refcat, nights=nights
    )
    ext = ext.sort_values("calibrated_at", kind="stable")
    frames["zp_clear_frame"] = clear_sky_zeropoints(
        settings.zp_clear,
        frames["night"].to_numpy(object),
        frames["calib_key"].to_numpy(object),
        frames["airmass"].to_numpy(float),
        ext,
        frames,
    )
    # the sky is calibrated with the frame's measured zeropoint; a frame without one (cloudy, too few
    # stars) with its clear-sky reference: a cloud dims the stars, not the camera's response to the sky
    frames["zp_sky"] = frames["zp"].where(frames["zp"].notna(), frames["zp_clear_frame"])
    return frames, ext


def _map_tasks(
    lake: Lake,
    frames: pd.DataFrame,
    ext: pd.DataFrame,
    prof: Profile,
    refcat: str,
    scope: str,
    nside: int,
    frames_of,
    site: bool,
    client,
    samples: bool,
) -> tuple[list, list]:
    """The samples of each group of frames written to the lake's store (:func:`write_samples`), then reduced
    per pixel group (:func:`reduce_pixels`): tasks on ``client`` when given."""
    settings = prof.maps
    # samples per group of frames (a task each on a cluster), reduced per pixel below
    frames = frames.sort_values("frame_id", ignore_index=True)
    groups = [frames.iloc[k : k + FRAMES_PER_TASK] for k in range(0, len(frames), FRAMES_PER_TASK)]
    from skylake.lake.pieces import piece_run

    with piece_run(lake.store) as run:  # the samples, on the lake's store (the workers see it), per pixel group
        spec = SampleSpec(
            url=lake.store.location,
            refcat=refcat,
            frames=frames.drop(columns=["footprint_ra", "footprint_dec"]),
            ext=ext,
            zp_clear=settings.zp_clear,
            frames_of=frames_of,
            scope=scope,
            nside=nside,
            site=(prof.site.lat_deg, prof.site.lon_deg, prof.site.height_m) if site else None,
            run=run,
            min_stars=settings.min_stars,
            samples=samples,
        )
        written = _run(
            client,
            write_samples,
            spec,
            range(len(groups)),
            [g["frame_id"].to_numpy(np.int64) for g in groups],
            [_frame_partitions(lake, g) for g in groups],
        )
        todo = sorted({g for w in written for g in w["groups"]})
        reduced = _run(client, reduce_pixels, spec, [f for f, _ in todo], [g for _, g in todo])
    return written, reduced


def _assemble(
    written: list,
    reduced: list,
    prof: Profile,
    refcat: str,
    scope: str,
    rng: dict,
    nside: int,
    frames_of,
    samples: bool,
) -> MapSet | None:
    """The pixel rows and one index row per map from the tasks' results (None without any map)."""
    settings = prof.maps
    pixel_parts, index_rows, star_parts, sky_parts = [], [], [], []
    per_frame = pd.concat([w["frames"] for w in written], ignore_index=True)
    for frame_of in frames_of:
        mine = [r for r in reduced if r[0] == frame_of]
        if not mine:
            continue
        agg = pd.concat([r[1] for r in mine], ignore_index=True).sort_values(KEYS, kind="stable", ignore_index=True)
        pf = per_frame[per_frame["frame_of"] == frame_of]
        n_pixels = agg.groupby("map_key").size()
        ids_of = {}
        for mk, g in pf.groupby("map_key", sort=True):
            nights = sorted(g["night"].dropna().unique())
            if scope == "frame":
                selection = {"frame_id": int(mk)}
            elif scope == "night":
                selection = {"night": mk}
            else:
                selection = dict(rng)
            mid = map_id(scope, selection, nside, frame_of, prof.name, refcat, settings.zp_clear, settings.min_stars)
            ids_of[mk] = mid
            index_rows.append(
                {
                    "map_id": mid,
                    "scope": scope,
                    "night_min": nights[0] if nights else None,
                    "night_max": nights[-1] if nights else None,
                    "frame_id": int(mk) if scope == "frame" else None,
                    "n_frames": int(g["frame_id"].nunique()),
                    "mjd_min": float(g["mjd"].min()),
                    "mjd_max": float(g["mjd"].max()),
                    "nside": int(nside),
                    "frame_of": frame_of,
                    "profile": prof.name,
                    "refcat": refcat,
                    "calib_keys": ",".join(sorted(g["calib_key"].unique())),  # one per frame: the frame's
                    "zp_clear": str(settings.zp_clear),
                    "min_stars": int(settings.min_stars),
                    "n_pixels": int(n_pixels.get(mk, 0)),
                    "n_stars": int(g["n_stars"].sum()),
                    "n_sky": int(g["n_sky"].sum()),
                }
            )
        agg["map_id"] = agg["map_key"].map(ids_of)
        agg["night"] = agg["map_key"].map(
            {mk: r["night_min"] for mk, r in zip(ids_of, index_rows[len(index_rows) - len(ids_of) :])}
        )
        agg["nside"], agg["frame_of"] = np.int32(nside), frame_of
        agg["lon"], agg["lat"] = pixel_centres(agg["pixel"].to_numpy(np.int64), nside)
        agg["built_version"] = np.nan  # stamped when stored (a night map)
        pixel_parts.append(agg.drop(columns="map_key"))
        if samples:
            s = pd.concat([r[2] for r in mine], ignore_index=True)
            k = pd.concat([r[3] for r in mine], ignore_index=True)
            star_parts.append(
                s.assign(map_id=s["map_key"].map(ids_of))[["map_id", "pixel", "frame_id", "ref_id", "zp", "zp_clear"]]
            )
            sky_parts.append(k.assign(map_id=k["map_key"].map(ids_of))[["map_id", "pixel", "frame_id", "sky_mag"]])
    if not index_rows:
        return None
    return MapSet(
        pixels=pd.concat(pixel_parts, ignore_index=True),
        index=pd.DataFrame(index_rows),
        stars=pd.concat(star_parts, ignore_index=True) if samples else pd.DataFrame(),
        sky=pd.concat(sky_parts, ignore_index=True) if samples else pd.DataFrame(),
    )
