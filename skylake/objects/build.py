"""``LAKE/objects/`` and ``LAKE/lightcurves/``: objects and their light curves, built incrementally.

Both are built and updated incrementally through the lake's commit log.

::

    LAKE/objects/              HATS catalog, catalog_type=object, hats_npix_suffix=/ (schemas/objects.yaml)
      hats.properties  properties  partition_info.csv  skymap.fits  point_map.fits  dataset/_common_metadata
      dataset/Norder=k/Dir=d/Npix=n/<batch>.parquet    one file per partition, rows sorted by _healpix_29
      skylake_objects.json     what the table was built with (refcat, association radius, layout), the lake
                               version it was built at (the watermark) and its object count
      skylake_frames/night=YYYY-MM-DD.parquet   frames it holds, per night: frame_id, calib (batch of the
                                                calibration used), n_det, pixels (where its detections are)
      skylake_changes/<version>.parquet         objects an update wrote or removed (CHANGES_SCHEMA), one
                                                file per commit: what ``skylake refresh`` mirrors
    LAKE/lightcurves/          HATS catalog, catalog_type=source (schemas/lightcurves.yaml): the points
      dataset/Norder=k/Dir=d/Npix=n/<batch>.parquet    appended: a file per update per partition, merged
                                                       by the exact passes and when a partition has many

An update (``build_objects``) runs under the lake's writer lock and costs what changed, not the archive:

* **what changed**: ``skylake_objects.json`` records the lake version the table was built at; the log
  entries since then list the frames and zeropoints files added or removed, so only those nights'
  frames, zeropoints and held frames (``skylake_frames/night=...``) are read and compared: frames that
  are new, recalibrated (another zeropoint batch) or gone are the work;
* **where**: the changed frames' detections are looked for only in the sources files the log added
  since the build and, for frames already held, in the partitions their detections were in (each held
  frame records its pixels at the lake's partition order); a first scan finds their pixels;
* **per partition**: each objects partition whose view (itself plus a margin band) holds a detection or
  an old point of a re-processed frame is built by :func:`skylake.objects.partition.build_partition`, on
  the dask cluster when a client is given; partitions inside one sources partition are one task that
  reads its files once (:func:`task_groups`), as many tasks as keep the workers busy. It merges the new
  points into the touched objects' rows and appends them to the light curves (an object whose points
  grew by a quarter gets its order statistics from its whole light curve; the partitions around
  recalibrated or removed frames are recomputed whole), writing its files into the commit's staging
  area and returning a small manifest. The driver commits the files, both catalogs' HATS metadata and
  the state files: one commit of the lake's log, so readers see the old tables or the new ones, never a
  mix. Untouched partition files stay as they are.

Magnitudes and which statistics are always current: schemas/objects.yaml (and :mod:`.summary`).
"""

from __future__ import annotations

import itertools
import json
import logging
import posixpath
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from hats.pixel_math import HealpixPixel
from hats.pixel_math.healpix_pixel import get_higher_order_pixels, get_lower_order_pixel
from hats.pixel_math.healpix_shim import order2nside
from hats.pixel_math.spatial_index import healpix_to_spatial_index, spatial_index_to_healpix

from skylake.calib.model import KRON, LatestPolicy, ZpStatus, latest_calibration
from skylake.errors import LakeError
from skylake.lake import Lake, LakeView, counts, hats_meta, tables
from skylake.lake.nights import UNKNOWN_NIGHT, night_dir, night_of, night_partition
from skylake.lake.parquet import parquet_bytes
from skylake.lake.tables import DETREND, ENSEMBLE, FRAMES, LIGHTCURVES, OBJECTS, SOURCES, ZEROPOINTS
from skylake.lake.versions import latest_versions
from skylake.objects.arrays import unique
from skylake.objects.associate import margin_order
from skylake.objects.files import row_counts
from skylake.objects.partition import PartitionManifest, UpdateSpec, build_partitions, detection_columns, scan_pixels
from skylake.objects.summary import DEFAULT_VARIABLE_FAP
from skylake.schema import table_schema

__all__ = [
    "STATE_FILE",
    "HELD_DIR",
    "DEFAULT_RADIUS_ARCSEC",
    "LAYOUT",
    "OLD_LAYOUTS",
    "FRAMES_SCHEMA",
    "HELD_SCHEMA",
    "CHANGES_DIR",
    "CHANGES_SCHEMA",
    "ObjectsError",
    "BuildReport",
    "read_state",
    "check_layout",
    "latest_calibrations",
    "ENSEMBLE_COLUMNS",
    "default_refcat",
    "default_variable_fap",
    "changes_rel",
    "read_held",
    "MAX_GROUP",
    "task_groups",
    "READ_COST",
    "balanced_groups",
    "build_objects",
]


log = logging.getLogger(__name__)

STATE_FILE = "skylake_objects.json"
HELD_DIR = "skylake_frames"
DEFAULT_RADIUS_ARCSEC = 3.0
#: The layout of objects this code writes (``skylake_objects.json``): 2 = statistics rows plus
#: LAKE/lightcurves; tables without it nest each light curve in its row (``lc``) and must be rebuilt.
LAYOUT = 4
#: What each older layout lacks, for the message that asks for a rebuild.
OLD_LAYOUTS = {
    None: "each light curve nested in its object's row, now in LAKE/lightcurves",
    2: "light curves without the ensemble's mag_zp, mag_epd and mag_tfa, objects without their statistics",
    3: "light curves without each point's aperture and modelled error, objects without their false-alarm probability",
}
FRAMES_SCHEMA = pa.schema([("frame_id", pa.int64()), ("calib", pa.string()), ("n_det", pa.int64())])
HELD_SCHEMA = FRAMES_SCHEMA.append(pa.field("pixels", pa.list_(pa.int64())))
CHANGES_DIR = tables.get(OBJECTS).versioned_files  # schemas/objects.yaml
#: The objects one update wrote (with their partition and ``_healpix_29``: where to read them cheaply) or
#: removed (``deleted``), so that a summary database mirrors those rows, not whole partitions.
CHANGES_SCHEMA = pa.schema(
    [
        ("object_id", pa.int64()),
        ("Norder", pa.int8()),
        ("Npix", pa.int64()),
        ("_healpix_29", pa.int64()),
        ("deleted", pa.bool_()),
    ]
)


class ObjectsError(LakeError):
    """The objects table cannot be built as asked (a usage error: exit code 2 on the command line)."""


@dataclass
class BuildReport:
    """What one ``build_objects`` did.

    Attributes
    ----------
    refcat : str
        The reference catalogue of the table ("" for none).
    radius_arcsec : float
        The association radius [arcsec].
    frames_added : int
        Frames new to the table.
    frames_updated : int
        Frames recalibrated since the last build.
    frames_removed : int
        Frames gone from the lake since the last build.
    detections : int
        Detections associated in this update.
    objects : int
        Objects in the table after it.
    objects_new : int
        Objects this update created.
    partitions_rewritten : int
        Objects partitions it wrote again.
    partitions_exact : int
        Of those, the ones recomputed from whole light curves (frames recalibrated or gone).
    objects_exact : int
        Objects whose order statistics were recomputed (``summary.REFRESH_GROWTH``).
    partitions : int
        Objects partitions after it.
    points : int
        Light-curve points in LAKE/lightcurves after it.
    commit : int or None
        The version it committed; None when the table was already up to date.
    seconds : float
        Its wall-clock time [s].
    timings : dict
        Seconds spent per step (``plan``, ``scan``, ...).
    read : dict
        What the update read: frames rows and nights (driver), sources files, objects rows and light-curve
        points and files (tasks).
    """

    refcat: str
    radius_arcsec: float
    frames_added: int = 0
    frames_updated: int = 0  # recalibrated since the last build
    frames_removed: int = 0
    detections: int = 0  # detections associated in this update
    objects: int = 0  # objects in the table after it
    objects_new: int = 0
    partitions_rewritten: int = 0
    partitions_exact: int = 0  # of those, recomputed from whole light curves (frames recalibrated or gone)
    objects_exact: int = 0  # objects whose order statistics were recomputed (summary.REFRESH_GROWTH)
    partitions: int = 0
    points: int = 0  # light-curve points in LAKE/lightcurves after it
    commit: int | None = None
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    #: what the update read: frames rows and nights (driver), sources files, objects rows and light-curve
    #: points and files (tasks)
    read: dict = field(default_factory=dict)

    def __str__(self) -> str:
        if self.commit is None:
            return f"objects up to date ({self.objects} objects in {self.partitions} partitions)"
        whole = f" ({self.partitions_exact} from whole light curves)" if self.partitions_exact else ""
        return (
            f"objects: {self.frames_added} frames added, {self.frames_updated} recalibrated, {self.frames_removed} "
            f"removed; {self.detections} detections associated, {self.objects_new} new objects, "
            f"{self.objects} in all; {self.partitions_rewritten} of {self.partitions} partitions rewritten{whole}, "
            f"{self.objects_exact} objects' median/MAD/Stetson J recomputed from their light curves; "
            f'{self.points} light-curve points (radius {self.radius_arcsec:g}", refcat {self.refcat or "none"}), '
            f"commit v{self.commit}, {self.seconds:.1f} s"
        )


def _lake(lake) -> Lake:
    return lake if isinstance(lake, LakeView) else Lake.open(lake)


# -- state ------------------------------------------------------------------------------------------
def read_state(lake: Lake) -> dict:
    """The build settings and watermark (``skylake_objects.json``; empty when never built).

    Parameters
    ----------
    lake : Lake
        The lake.

    Returns
    -------
    dict
        ``refcat``, ``radius_arcsec``, ``layout``, ``version`` (the lake version the table was built at) and
        ``objects`` (its object count); empty when the table was never built.
    """
    if not lake.store.exists(f"{OBJECTS}/{STATE_FILE}"):
        return {}
    return json.loads(lake.store.read_bytes(f"{OBJECTS}/{STATE_FILE}"))


def check_layout(state: dict) -> None:
    """Refuse a table of an older layout (:data:`OLD_LAYOUTS`), with what to do.

    Parameters
    ----------
    state : dict
        The table's build state (:func:`read_state`; empty when never built).

    Raises
    ------
    ObjectsError
        The table was built with another layout than :data:`LAYOUT` (rebuild it).
    """
    if state and state.get("layout") != LAYOUT:
        what = OLD_LAYOUTS.get(state.get("layout"), f"layout {state.get('layout')!r}")
        raise ObjectsError(
            f"LAKE/objects was built by an older skylake ({what}); rebuild it once: "
            "skylake objects build LAKE --rebuild "
            "(nothing else in the lake changes)"
        )


def latest_calibrations(lake: Lake, refcat: str, nights=None) -> pd.DataFrame:
    """Each frame's latest calibration against ``refcat``, whatever its status.

    As :func:`~skylake.calib.model.latest_calibration` picks it: frame_id, calib (its batch), calib_key, zp,
    zp_err (zp null unless zp_status is ok); of the frames of ``nights`` (partition names) when given.

    Parameters
    ----------
    lake : Lake
        The lake.
    refcat : str
        The reference catalogue.
    nights : list of str, optional
        Night partitions to read (default: every night).

    Returns
    -------
    pandas.DataFrame
        One row per frame: frame_id, calib, calib_key, zp, zp_err [mag], flux, apcor and color_term, with
        the frame's ensemble terms (LAKE/ensemble, NaN where there are none) and ``calib`` extended by the
        ensemble's batch.
    """
    cols = [
        "frame_id",
        "refcat",
        "calib_key",
        "zp",
        "zp_err",
        "zp_status",
        "flux",
        "apcor",
        "color_term",
        "batch_id",
        "calibrated_at",
    ]
    zps = lake.read_night_table(
        ZEROPOINTS, columns=cols, filter=pc.field("refcat") == refcat, nights=nights
    ).to_pandas()
    zps = latest_calibration(zps, LatestPolicy(refcat=refcat))
    zps.loc[zps["zp_status"] != ZpStatus.OK, "zp"] = np.nan
    zps["flux"] = zps["flux"].fillna(KRON)  # calibrations written before the flux setting: Kron
    zps = zps.rename(columns={"batch_id": "calib"})[
        ["frame_id", "calib", "calib_key", "zp", "zp_err", "flux", "apcor", "color_term"]
    ]
    return _with_ensemble(lake, zps, refcat, nights)


#: Columns of an ensemble row the light curves use (skylake.ensemble.stage.point_corrections).
ENSEMBLE_COLUMNS = [
    "frame_id",
    "calib_batch",
    "status",
    "spatial_order",
    "zp_offset",
    "c_u",
    "c_v",
    "c_uu",
    "c_uv",
    "c_vv",
    "terms_cov",
    "color_term",
    "batch_id",
    "computed_at",
]


def _with_ensemble(lake: Lake, zps: pd.DataFrame, refcat: str, nights) -> pd.DataFrame:
    """Each frame's calibration with its ensemble terms (LAKE/ensemble: the latest ok row made from the same
    zeropoint row), and ``calib`` extended by the ensemble's batch: a frame solved again is recalibrated."""
    ens = lake.read_night_table(
        ENSEMBLE, columns=ENSEMBLE_COLUMNS + ["refcat"], filter=pc.field("refcat") == refcat, nights=nights
    ).to_pandas()
    ens = ens[ens["status"] == "ok"].sort_values("computed_at", kind="stable").drop_duplicates("frame_id", keep="last")
    out = zps.merge(
        ens.drop(columns=["refcat", "computed_at", "status"]).rename(
            columns={"batch_id": "ens_batch", "color_term": "ens_color_term"}
        ),
        on="frame_id",
        how="left",
    )
    same = out["calib_batch"].astype(object).eq(out["calib"])
    for c in [
        "spatial_order",
        "zp_offset",
        "c_u",
        "c_v",
        "c_uu",
        "c_uv",
        "c_vv",
        "terms_cov",
        "ens_color_term",
        "ens_batch",
    ]:
        out[c] = out[c].where(same)
    out["calib"] = np.where(same, out["calib"].astype(str) + "+" + out["ens_batch"].astype(str), out["calib"])
    return out.drop(columns=["calib_batch"])


def default_refcat(lake: Lake) -> str:
    """The catalogue with the most zeropoint rows ("" when there is none).

    From the lake's running counts (:mod:`skylake.lake.counts`), else from the zeropoints table.

    Parameters
    ----------
    lake : Lake
        The lake.

    Returns
    -------
    str
        The catalogue's name, "" when there is none.
    """
    totals = counts.read(lake)
    if totals is not None:
        rows = {name: sum(c["rows_by_status"].values()) for name, c in totals.get("calibrations", {}).items()}
        rows = {name: n for name, n in rows.items() if n > 0}
        return max(sorted(rows), key=rows.get) if rows else ""
    refcats = lake.read_night_table(ZEROPOINTS, columns=["refcat"]).column("refcat").to_pandas()
    return str(refcats.value_counts().idxmax()) if len(refcats) else ""


# -- planning: what changed since the table was built ------------------------------------------------
def _held_rel(night: str) -> str:
    return f"{OBJECTS}/{HELD_DIR}/{night_dir(night)}.parquet"


def changes_rel(version: int) -> str:
    """Lake-relative path of the changes file (:data:`CHANGES_SCHEMA`) of the objects commit ``version``.

    Parameters
    ----------
    version : int
        The commit's version.

    Returns
    -------
    str
        ``objects/skylake_changes/<version>.parquet``, relative to the lake.
    """
    return f"{OBJECTS}/{CHANGES_DIR}/{version}.parquet"


def _changes_table(manifests: list[PartitionManifest]) -> pa.Table:
    """:data:`CHANGES_SCHEMA` rows of an update's dirty partitions: the objects they wrote again, and the
    objects they no longer hold that no partition wrote (gone: merged, or their points removed)."""
    dirty = [m for m in manifests if m.dirty]
    written = [(m.key, m.written) for m in dirty]
    ids = np.concatenate([w[0] for _, w in written] + [np.empty(0, np.int64)])
    gone = np.setdiff1d(np.concatenate([m.gone for m in dirty] + [np.empty(0, np.int64)]), ids)
    order = np.concatenate([np.full(len(w[0]), k[0], np.int8) for k, w in written] + [np.empty(0, np.int8)])
    npix = np.concatenate([np.full(len(w[0]), k[1], np.int64) for k, w in written] + [np.empty(0, np.int64)])
    h29 = np.concatenate([w[1] for _, w in written] + [np.empty(0, np.int64)])
    return pa.table(
        {
            "object_id": np.r_[ids, gone].astype(np.int64),
            "Norder": pa.array(np.r_[order, np.zeros(len(gone), np.int8)], pa.int8()),
            "Npix": np.r_[npix, np.zeros(len(gone), np.int64)],
            "_healpix_29": np.r_[h29, np.zeros(len(gone), np.int64)],
            "deleted": np.r_[np.zeros(len(ids), bool), np.ones(len(gone), bool)],
        },
        schema=CHANGES_SCHEMA,
    )


def read_held(lake: Lake, nights=None) -> pd.DataFrame:
    """Held frames (:data:`HELD_SCHEMA` plus ``night``) of ``nights`` (partition names), or of every night.

    Parameters
    ----------
    lake : Lake
        The lake.
    nights : list of str, optional
        Night partitions to read (default: every night the table holds frames of).

    Returns
    -------
    pandas.DataFrame
        One row per held frame: frame_id, calib, n_det, pixels and night.
    """
    if nights is None:
        names = lake.store.listdir(f"{OBJECTS}/{HELD_DIR}") if lake.store.exists(f"{OBJECTS}/{HELD_DIR}") else []
        nights = [n.removesuffix(".parquet") for n in map(night_of, names) if n is not None]
    parts = [
        lake.read_parquet(_held_rel(n), schema=HELD_SCHEMA).to_pandas().assign(night=n)
        for n in sorted(nights)
        if lake.store.exists(_held_rel(n))
    ]
    if not parts:
        return HELD_SCHEMA.empty_table().to_pandas().assign(night=pd.Series([], dtype=object))
    return pd.concat(parts, ignore_index=True)


@dataclass
class _Plan:
    """The work of one update, found by the driver (all of it proportional to what changed)."""

    nights: list | None  # night partitions whose frames/zeropoints changed since the build (None: every night)
    frames: pd.DataFrame  # changed frames with their calibration, exptime and night
    changed: pd.DataFrame
    gone: pd.DataFrame
    held: pd.DataFrame  # held rows of ``nights``
    redone: np.ndarray  # rows of ``held`` whose frames are re-associated or gone
    source_files: list[str] | None  # lake-relative sources files that may hold changed frames (None: all)
    read: dict = field(default_factory=dict)


def _log_changes(lake: Lake, since: int, until: int) -> tuple[set, set, set]:
    """Night partitions of frames/zeropoints files added or removed by commits ``since+1..until``, the
    sources files and the frames files they added: the log says what changed, no table is scanned."""
    nights, sources, frames = set(), set(), set()
    for version in range(since + 1, until + 1):
        entry = lake.log.read(version)
        for action in entry.adds + entry.removes:
            if action.table in (FRAMES, ZEROPOINTS, ENSEMBLE, DETREND):
                nights.add(night_of(action.path))
        sources |= {a.lake_path for a in entry.adds if a.table == SOURCES}
        frames |= {a.path for a in entry.adds if a.table == FRAMES}
    return nights, sources, frames


def _read_frames(lake: Lake, nights: list[str], added: set, columns: list[str]) -> pd.DataFrame:
    """Frame rows of ``nights`` (partition names), file by file; ``recent``: the file is one of ``added``."""
    parts = []
    for rel in lake.live_files(FRAMES, [None if n == UNKNOWN_NIGHT else n for n in nights]):
        data = lake.read_parquet(f"{FRAMES}/{rel}", schema=table_schema(FRAMES), columns=columns).to_pandas()
        parts.append(data.assign(night=night_of(rel), recent=rel in added))
    if not parts:
        return pd.DataFrame({c: [] for c in [*columns, "night", "recent"]})
    return pd.concat(parts, ignore_index=True)


def _plan(lake: Lake, tx, state: dict, refcat: str, rebuild: bool) -> _Plan:
    """Frames new, recalibrated or gone since the build at ``state['version']``: only the nights whose
    frames or zeropoints files the log lists since then are read (every night without a watermark)."""
    latest = tx.version - 1  # the published version
    since = state.get("version")
    read = {"frames_rows": 0, "nights": 0}
    cols = ["frame_id", "n_sources", "content_hash", "hdu", "exptime", "nx", "ny", "coadd_of"]
    if since is None:
        nights, sources_added = None, set()
        frames = lake.read_frames(columns=cols + ["night"]).to_pandas().assign(recent=False)
    else:
        nights, sources_added, frames_added = _log_changes(lake, since, latest)
        nights = sorted(nights)
        read["nights"] = len(nights)
        frames = _read_frames(lake, nights, frames_added, cols)
    read["frames_rows"] = len(frames)
    frames = latest_versions(frames)
    # points come from single frames: a coadd's photons are its frames' again (its deeper detections make none)
    frames = frames[(frames["n_sources"] > 0) & frames["coadd_of"].isna()].drop(columns="coadd_of")
    frames = frames.assign(night=[night_partition(n) for n in frames["night"]])
    if refcat and nights != []:
        calibs = latest_calibrations(lake, refcat, nights)
    else:
        calibs = pd.DataFrame(
            {
                "frame_id": np.empty(0, np.int64),
                "calib": [],
                "calib_key": [],
                "zp": [],
                "zp_err": [],
                "flux": [],
                "apcor": [],
                "color_term": [],
            }
        )
    if rebuild:
        held = read_held(lake, [])
    elif nights is None:
        held = read_held(lake)
    else:
        held = read_held(lake, nights)
    now = frames[["frame_id"]].merge(calibs[["frame_id", "calib"]], on="frame_id", how="left")
    now["calib"] = now["calib"].astype(object).fillna("")  # no calibration at all: a float column of NaN
    both = now.merge(held[["frame_id", "calib"]], on="frame_id", how="outer", suffixes=("", "_held"), indicator=True)
    changed = both[
        (both["_merge"] == "left_only") | ((both["_merge"] == "both") & (both["calib"] != both["calib_held"]))
    ]
    gone = both[both["_merge"] == "right_only"]
    redone = (held["frame_id"].isin(changed["frame_id"]) | held["frame_id"].isin(gone["frame_id"])).to_numpy()
    info = frames[["frame_id", "exptime", "nx", "ny", "night", "recent"]].merge(
        calibs.drop(columns="calib"), on="frame_id", how="left"
    )
    info = info[info["frame_id"].isin(changed["frame_id"])].reset_index(drop=True)
    # sources: files the log added since the build hold new frames; a re-associated frame's are where its
    # detections were (the held pixels); anything else (no watermark, no pixels) means every file
    files = None
    if nights is not None:
        new = changed["_merge"] == "left_only"
        stale_pix = held.loc[redone & held["frame_id"].isin(changed["frame_id"]).to_numpy(), "pixels"]
        if info.loc[info["frame_id"].isin(changed.loc[new, "frame_id"]), "recent"].all() and not stale_pix.isna().any():
            files = {f for f in sources_added if lake.store.exists(f)}
            pix = np.unique(np.concatenate([np.asarray(p, np.int64) for p in stale_pix] + [np.empty(0, np.int64)]))
            if len(pix):
                files |= set(
                    _sources_files_over(lake, tx.published_partitions(SOURCES), pix, lake.config.partition_order)
                )
            files = sorted(files)
    return _Plan(nights, info, changed, gone, held, redone, files, read)


def _sources_files_over(lake: Lake, partitions, pixels: np.ndarray, order: int) -> list[str]:
    """Live sources files of the partitions overlapping ``pixels`` (at ``order``)."""
    out = []
    for part in partitions:
        if part.order <= order:
            hit = np.isin(get_lower_order_pixel(order, pixels, order - part.order), part.pixel).any()
        else:
            hit = np.isin(get_lower_order_pixel(part.order, part.pixel, part.order - order), pixels)
        if hit:
            out += lake.store.walk_files(f"{SOURCES}/{hats_meta.pixel_dir(part.order, part.pixel)}", ".parquet")
    return out


# -- building -------------------------------------------------------------------------------------------
def _neighbour_tasks(mpix: np.ndarray, m_order: int, partitions, order: int, nb: np.ndarray) -> np.ndarray:
    """Keys (order << 40 | pixel) of the partitions whose view (the partition and its margin at
    ``m_order``) holds each of ``mpix``: its own, and those of its eight neighbours (``nb``, as healpy's
    ``get_all_neighbours`` gives them: -1 for none)."""
    if not len(mpix):
        return np.empty(0, np.int64)
    nb = nb.ravel()
    allpix = unique(np.concatenate((mpix, nb[nb >= 0])))
    o, p = hats_meta.assign_pixels(healpix_to_spatial_index(m_order, allpix), partitions, order)
    return unique(o * (1 << 40) + p)


#: Partitions one task builds at most (its detections are held while it builds them all).
MAX_GROUP = 16


def task_groups(keys: list[int], task_files: dict[int, set], slots: int = 1) -> list[list[int]]:
    """The partitions an update builds, grouped into tasks that read the same sources files once.

    Objects partitions finer than the sources partition they lie in (order 5 in sources of order 3) all
    read its files: they are one task (:func:`~skylake.objects.partition.build_partitions`). A partition
    is grouped by its ancestor at the coarsest order of the sources partitions it reads (itself when
    those are as fine or finer, or when it reads none). A group is split into consecutive pieces of at
    most :data:`MAX_GROUP` partitions, and of fewer when that leaves fewer tasks than twice ``slots``.

    Parameters
    ----------
    keys : list of int
        The partitions (``order << 40 | pixel``), sorted.
    task_files : dict
        Each partition's sources files (lake-relative, ``sources/dataset/Norder=k/...``).
    slots : int, optional
        The tasks that run at once (the cluster's worker threads; 1 in this process).

    Returns
    -------
    list of list of int
        The keys of each task, in the order of ``keys``.
    """
    order_of: dict[str, int] = {}  # per sources directory, parsed once
    for f in set().union(*task_files.values()):
        d = posixpath.dirname(f)
        if d not in order_of:
            pixel = hats_meta.pixel_of(posixpath.relpath(f, SOURCES))
            order_of[d] = pixel.order if pixel else 29
    groups: dict[tuple[int, int], list[int]] = {}
    for k in keys:
        order, pixel = k >> 40, k & ((1 << 40) - 1)
        at = min([order, *(order_of[posixpath.dirname(f)] for f in task_files[k])])
        groups.setdefault((at, pixel >> (2 * (order - at))), []).append(k)
    size = max(1, min(MAX_GROUP, -(-len(keys) // (2 * max(1, slots)))))
    return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]


#: What a task's reading of its sources files costs, as a fraction of its detections' work: decoding a row
#: (~70 ns) against associating and summarising a detection (~1 us), both per detection of the group.
READ_COST = 0.1


def balanced_groups(groups: list[list[int]], sizes: dict[int, int], slots: int) -> list[list[int]]:
    """``groups`` with some split in two, where that shortens the longest worker's share of the work.

    The tasks run largest first, each on the first free worker thread (:func:`_run`); with a few large
    groups (a sources partition each) on two workers, one worker may be left with two of them while the
    other waits at the end. A group is split into two consecutive pieces when that lowers the busiest
    thread's load, as that order of running gives it, by more than 2 %: a task's work is its partitions'
    detections (``sizes``), and each piece also reads its group's files (:data:`READ_COST` of the group's
    detections). Up to four splits, the best first.

    Parameters
    ----------
    groups : list of list of int
        The tasks' partition keys (:func:`task_groups`).
    sizes : dict
        The detections each partition holds (its own, from the scan).
    slots : int
        The tasks that run at once.

    Returns
    -------
    list of list of int
        The groups, some split (each piece in its group's order).
    """
    read = {}  # per partition: its group's reading cost, paid by each piece
    for group in groups:
        cost = READ_COST * sum(sizes.get(k, 0) for k in group)
        read.update(dict.fromkeys(group, cost))

    def cost(piece: list[int]) -> float:
        """A piece's work: its partitions' detections, and the reading of its group's files.

        Parameters
        ----------
        piece : list of int
            Partition keys of one group.

        Returns
        -------
        float
            Its cost (in detections).
        """
        return sum(sizes.get(k, 0) for k in piece) + read[piece[0]]

    def longest(costs: list[float]) -> float:
        """The busiest thread's load when tasks of ``costs`` run largest first on the first free thread.

        Parameters
        ----------
        costs : list of float
            Each task's cost.

        Returns
        -------
        float
            The largest load.
        """
        loads = [0.0] * max(1, slots)
        for c in sorted(costs, reverse=True):
            loads[loads.index(min(loads))] += c
        return max(loads)

    pieces = [list(g) for g in groups if g]
    costs = [cost(p) for p in pieces]
    best = longest(costs)
    for _ in range(4):
        found = None
        for i, piece in enumerate(pieces):
            for j in range(1, len(piece)):
                load = longest(costs[:i] + [cost(piece[:j]), cost(piece[j:])] + costs[i + 1 :])
                if load < 0.98 * best and (found is None or load < found[0]):
                    found = (load, i, j)
        if found is None:
            break
        best, i, j = found
        pieces[i : i + 1] = [pieces[i][:j], pieces[i][j:]]
        costs[i : i + 1] = [cost(pieces[i]), cost(pieces[i + 1])]
    return pieces


def _slots(client) -> int:
    """Tasks that run at once on ``client`` (its workers' threads; 1 in this process)."""
    if client is None:
        return 1
    return max(1, sum(client.nthreads().values()))


def _run(client, func, *iterables, shared=None, in_turn: bool = False):
    """``func(shared, *args)`` for each args of ``iterables``: dask tasks on ``client``, else in this process.

    ``in_turn``: a task is sent when a worker thread is free, in the order given (the largest first, the
    small ones filling the workers' ends); otherwise all at once. Tasks that depend on futures (the scan's
    border strips) are placed on a worker when sent, and dask placed two of three large ones on one.
    """
    items = list(zip(*iterables))
    if client is None:
        return [func(shared, *args) for args in items]
    shared_f = client.scatter([shared], broadcast=True)[0]
    if not in_turn:
        return client.gather([client.submit(func, shared_f, *args, pure=False) for args in items])
    from distributed import as_completed

    futures = {}
    waiting = iter(enumerate(items))
    for i, args in itertools.islice(waiting, _slots(client)):
        futures[client.submit(func, shared_f, *args, pure=False)] = i
    results = [None] * len(items)
    done = as_completed(list(futures))
    for future in done:
        results[futures.pop(future)] = future.result()
        for i, args in itertools.islice(waiting, 1):
            nxt = client.submit(func, shared_f, *args, pure=False)
            futures[nxt] = i
            done.add(nxt)
    return results


def _scan(spec, files) -> tuple[np.ndarray, dict, dict]:
    """The keys of the partitions whose views hold detections of the spec's frames in ``files`` (a task, the
    files of one sources partition), the detections each of them holds (``key: n``, its own, not its
    margin's: what its task's work grows with), and these files' detections in the sources partition's
    border, one margin pixel wide (``file: table``): all that tasks outside it need of it (their views reach
    into it by one margin pixel at most), so they need not read its files whole."""
    import healpy as hp

    m_order = spec["m_order"]
    home = hats_meta.pixel_of(posixpath.relpath(files[0], SOURCES))  # None: not a partition, no border
    mpix, counts, per_file = scan_pixels(spec["url"], files, spec["ids"], m_order, spec["columns"] if home else None)
    nb = hp.get_all_neighbours(order2nside(m_order), mpix, nest=True) if len(mpix) else np.empty((8, 0), np.int64)
    partitions = [HealpixPixel(o, p) for o, p in spec["partitions"]]
    keys = _neighbour_tasks(mpix, m_order, partitions, spec["order"], nb)
    o, p = hats_meta.assign_pixels(healpix_to_spatial_index(m_order, mpix), partitions, spec["order"])
    own, at = np.unique(o * (1 << 40) + p, return_inverse=True)
    sizes = dict(zip(own.tolist(), np.bincount(at, counts, len(own)).astype(np.int64).tolist()))
    if home is None or not len(mpix):
        return keys, sizes, {}
    # the border: pixels of the partition with a neighbour outside it
    near = np.where(nb >= 0, nb, np.repeat(mpix[None, :], 8, axis=0))
    parent = spatial_index_to_healpix(healpix_to_spatial_index(m_order, near), target_order=home.order)
    border = mpix[(parent != home.pixel).any(axis=0)]
    strips = {}
    for f, table in zip(files, per_file):
        at = spatial_index_to_healpix(table.column("_healpix_29").to_numpy(), target_order=m_order)
        strips[f] = table.filter(pa.array(np.isin(at, border)))
    return keys, sizes, strips


@dataclass(frozen=True)
class _Settings:
    """What an update runs with: the table's (or the first build's) catalogue and radius."""

    state: dict  # the table's build state (empty for a first build or a rebuild)
    refcat: str
    radius: float
    variable_fap: float  # objects with a false-alarm probability below this are variable
    order: int  # the lake's partition order
    m_order: int  # order of the margins: their pixels are at least the radius wide
    rebuild: bool


def _settings(lake: Lake, refcat: str | None, radius_arcsec: float | None, rebuild: bool) -> _Settings:
    """The stage's config: the arguments checked against the table's build state."""
    state = {} if rebuild else read_state(lake)
    check_layout(state)
    for name, value in (("refcat", refcat), ("radius_arcsec", radius_arcsec)):
        if state and value is not None and value != state[name]:
            raise ObjectsError(
                f"LAKE/objects was built with {name}={state[name]!r}, not {value!r}; "
                "rebuild it to change that (skylake objects build --rebuild)"
            )
    # the defaults only when the state has none: each reads the lake (default_variable_fap every frame row's
    # profile: 3.2 s of each update of a 10^5-frame lake, 7 s at 10^7, when dict.get evaluated it every time)
    if "refcat" in state:
        refcat = state["refcat"]
    elif refcat is None:
        refcat = default_refcat(lake)
    radius = float(state.get("radius_arcsec", radius_arcsec or DEFAULT_RADIUS_ARCSEC))
    if not radius > 0:
        raise ObjectsError(f"the association radius must be positive, got {radius} arcsec")
    order = lake.config.partition_order
    fap = float(state["variable_fap"] if "variable_fap" in state else default_variable_fap(lake))
    return _Settings(state, refcat, radius, fap, order, margin_order(order, radius), rebuild)


def default_variable_fap(lake: Lake) -> float:
    """The ``[ensemble] variable_fap`` of the profile most frames were ingested with (the default without one).

    Parameters
    ----------
    lake : Lake
        The lake.

    Returns
    -------
    float
        The threshold below which an object's false-alarm probability flags it ``variable``.
    """
    from skylake.ensemble.stage import settings_of
    from skylake.profile import ProfileError
    from skylake.profile_store import frames_profile

    frames = lake.read_frames(columns=["profile", "pipeline_version"]).to_pandas().dropna()
    counts = frames.value_counts()
    if counts.empty:
        return DEFAULT_VARIABLE_FAP
    name, version = counts.index[0]
    try:
        return float(settings_of(frames_profile(lake, name, version))[0].variable_fap)
    except (ProfileError, ValueError):  # a profile that cannot be loaded: the default
        return DEFAULT_VARIABLE_FAP


def build_objects(
    lake, *, refcat: str | None = None, radius_arcsec: float | None = None, rebuild: bool = False, client=None
) -> BuildReport:
    """Bring ``LAKE/objects`` up to date with the lake's frames and calibrations (see the module docstring).

    The stage's steps: :func:`_settings` (config), :func:`_plan` and :func:`_select_partitions` (what
    changed, and the partitions it reaches), :func:`build_partition` per partition (the tasks, each
    writing its partition's file; those reading the same sources files are one task, :func:`task_groups`)
    and :func:`_commit` (the HATS metadata, held frames and log entry).

    Parameters
    ----------
    lake : Lake or str
        The lake (opened if a path or URL).
    refcat : str, optional
        Catalogue whose matches give reference ids and calibrated magnitudes (default: the one the table
        was built with, else the one most frames are calibrated against).
    radius_arcsec : float, optional
        Association radius [arcsec] (default 3"). Changing it or ``refcat`` needs ``rebuild=True``.
    rebuild : bool, optional
        Rebuild the whole table (a full rebuild).
    client : distributed.Client, optional
        A dask client to run each touched partition as a task on (default: in this process, one partition
        at a time).

    Returns
    -------
    BuildReport
        What the update did (``commit`` None when the table was already up to date).

    Raises
    ------
    ObjectsError
        ``refcat`` or ``radius_arcsec`` differs from the table's without ``rebuild``, the radius is not
        positive, or the table is of an older layout (:func:`check_layout`).
    LakeError
        The lake cannot be written, or the partitions disagree on which objects they own (nothing is
        committed).
    """
    started = time.perf_counter()
    lake = _lake(lake)
    lake.check_writable()
    with lake.transaction(OBJECTS) as tx:
        cfg = _settings(lake, refcat, radius_arcsec, rebuild)
        report = BuildReport(refcat=cfg.refcat, radius_arcsec=cfg.radius)
        t0 = time.perf_counter()
        plan = _plan(lake, tx, cfg.state, cfg.refcat, rebuild)
        if cfg.state and not cfg.refcat:
            available = default_refcat(lake)
            if available:  # built before any calibration: an update would stay uncalibrated, silently
                log.warning(
                    "LAKE/objects was built without a reference catalogue, but frames are now calibrated "
                    "against %r: its light curves stay uncalibrated until it is rebuilt (skylake objects "
                    "build --rebuild)",
                    available,
                )
        report.frames_added = int((plan.changed["_merge"] == "left_only").sum())
        report.frames_updated = len(plan.changed) - report.frames_added
        report.frames_removed = len(plan.gone)
        report.read = dict(plan.read)
        partitions = [] if rebuild else hats_meta.read_partitions(lake.store, OBJECTS)
        if rebuild:  # every file goes; the tables are made again from all frames
            for table in (OBJECTS, LIGHTCURVES):
                paths = lake.store.walk_files(f"{table}/dataset", ".parquet")
                for path, rows in zip(paths, row_counts(lake, paths)):
                    tx.remove(table, posixpath.relpath(path, table), rows)
        if plan.changed.empty and plan.gone.empty and not rebuild:
            state = cfg.state.get("objects")  # not a table: the objects count of the build's state
            report.objects = int(state if state is not None else hats_meta.read_skymap(lake.store, OBJECTS).sum())
            report.partitions = len(partitions)
            return report
        report.timings["plan"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        point_partitions = [] if rebuild else hats_meta.read_partitions(lake.store, LIGHTCURVES)
        task_files, exact, strips, sizes = _select_partitions(
            lake, client, cfg, plan, partitions, point_partitions, report
        )
        keys = sorted(task_files)
        report.timings["scan"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        spec = UpdateSpec(
            url=lake.store.location,
            area=tx.area,
            refcat=cfg.refcat,
            radius=cfg.radius,
            order=cfg.order,
            m_order=cfg.m_order,
            partitions=[(p.order, p.pixel) for p in partitions],
            point_partitions=[(p.order, p.pixel) for p in point_partitions],
            rebuild=rebuild,
            frames=plan.frames.drop(columns=["recent"]),
            stale=plan.held.loc[plan.redone, "frame_id"].to_numpy(np.int64),
            exact=exact,
            variable_fap=cfg.variable_fap,
        )
        groups = task_groups(keys, task_files, _slots(client))
        if client is not None:  # pieces that even out the workers' ends (each piece reads its files again)
            groups = balanced_groups(groups, sizes, _slots(client))
        # the largest first: the small ones fill the workers' ends (the manifests are sorted by key after)
        size = [sum(sizes.get(k, 0) for k in group) for group in groups]
        groups = [groups[i] for i in np.argsort(size, kind="stable")[::-1]]
        group_keys = [[(k >> 40, k & ((1 << 40) - 1)) for k in group] for group in groups]
        group_files = [sorted(set().union(*(task_files[k] for k in group))) for group in groups]
        # of the sources partitions around a task's, only their borders (which the scan kept)
        around = [[strips[d] for d in sorted(_outside(f, k)) if d in strips] for f, k in zip(group_files, group_keys)]
        done = _run(client, build_partitions, group_keys, group_files, around, shared=spec, in_turn=True)
        manifests = sorted((m for ms in done for m in ms), key=lambda m: m.key)
        report.timings["partitions"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        entry = _commit(tx, lake, cfg, plan, manifests, report)
        report.commit = entry.version if entry else None
        report.timings["commit"] = time.perf_counter() - t0
    report.seconds = time.perf_counter() - started
    log.info("%s", report)
    return report


def _select_partitions(
    lake: Lake, client, cfg: _Settings, plan: _Plan, partitions, point_partitions, report: BuildReport
) -> tuple[dict[int, set], set | None, dict, dict]:
    """The partitions an update recomputes (keys ``order << 40 | pixel``) with the sources files each
    reads: where the changed frames' detections are (their margins included), and where re-associated or
    gone frames' old points are (their held pixels and the partitions around them: their objects', which
    hold the points, may be across an edge; every partition when unknown). Also the keys of the latter
    as ``(order, pixel)``: the tasks that recompute exactly (None: all); per sources directory its
    border's detections (:func:`_scan`; futures on a cluster); and per partition the detections it holds."""
    files = plan.source_files if plan.source_files is not None else lake.live_files(SOURCES)
    files = [f if f.startswith(f"{SOURCES}/") else f"{SOURCES}/{f}" for f in files]
    report.read["sources_files"] = len(files)
    by_dir: dict[str, list[str]] = {}
    for f in files:
        by_dir.setdefault(posixpath.dirname(f), []).append(f)
    dirs = sorted(by_dir)
    ids = plan.frames["frame_id"].to_numpy(np.int64)
    shared = {
        "url": lake.store.location,
        "ids": ids,
        "m_order": cfg.m_order,
        "partitions": [(p.order, p.pixel) for p in partitions],
        "order": cfg.order,
        "columns": detection_columns(plan.frames),
    }
    weights = _dir_rows(lake, dirs) if client is not None and len(ids) else None
    found, strips = _run_scan(client, [by_dir[d] for d in dirs], shared, weights) if len(ids) else ([], [])
    task_files: dict[int, set] = {}
    sizes: dict[int, int] = {}
    for d, (keys, held) in zip(dirs, found):  # (each scan task found its partitions: the driver adds them up)
        for k in keys.tolist():
            task_files.setdefault(k, set()).update(by_dir[d])
        for k, n in held.items():
            sizes[k] = sizes.get(k, 0) + n
    stale_rows = plan.held[plan.redone]
    everywhere = sorted(set(partitions) | set(point_partitions))  # a partition may hold points, no object
    exact: set | None = set()
    if len(stale_rows) and (stale_rows["pixels"].isna().any() if "pixels" in stale_rows else True):
        for p in everywhere:  # where their points are is not recorded: look everywhere
            task_files.setdefault(p.order * (1 << 40) + p.pixel, set())
        exact = None
    elif len(stale_rows):
        import healpy as hp

        pix = np.unique(np.concatenate([np.asarray(p, np.int64) for p in stale_rows["pixels"]]))
        nb = hp.get_all_neighbours(order2nside(cfg.order), pix, nest=True).ravel()
        allpix = np.unique(np.concatenate((pix, nb[nb >= 0])))
        o, p = hats_meta.assign_pixels(healpix_to_spatial_index(cfg.order, allpix), everywhere, cfg.order)
        for k in np.unique(o * (1 << 40) + p).tolist():
            task_files.setdefault(k, set())
            exact.add((k >> 40, k & ((1 << 40) - 1)))
    return task_files, exact, dict(zip(dirs, strips)), sizes


def _run_scan(client, file_lists: list[list[str]], shared: dict, weights=None) -> tuple[list, list]:
    """:func:`_scan` of each list of files: the keys and sizes it found, and its border strips, which stay
    on the workers (futures) for the partition tasks that need them. On a cluster each is sent when a
    worker thread is free, the heaviest first (``weights``: an estimate of each list's rows): dask's queue
    hands a worker two tasks at once, and had one worker scan three of the four large ones."""
    if client is None:
        scanned = [_scan(shared, files) for files in file_lists]
        return [s[:2] for s in scanned], [s[2] for s in scanned]
    import operator

    from distributed import as_completed

    shared_f = client.scatter([shared], broadcast=True)[0]
    order = np.argsort(-np.asarray(weights if weights is not None else [0] * len(file_lists)), kind="stable")
    waiting = iter(order.tolist())
    futures = [None] * len(file_lists)
    for i in itertools.islice(waiting, _slots(client)):
        futures[i] = client.submit(_scan, shared_f, file_lists[i], pure=False)
    running = as_completed([f for f in futures if f is not None])
    for _ in running:
        for i in itertools.islice(waiting, 1):
            futures[i] = client.submit(_scan, shared_f, file_lists[i], pure=False)
            running.add(futures[i])
    found = client.gather([client.submit(operator.itemgetter(0, 1), f) for f in futures])
    return found, [client.submit(operator.itemgetter(2), f) for f in futures]


def _dir_rows(lake: Lake, dirs: list[str]) -> list[int]:
    """The rows of each sources directory's partition, from the sources' skymap (0 for a directory that is not
    a partition, or one finer than the skymap): what its scan decodes, for the order of the scans."""
    skymap = hats_meta.read_skymap(lake.store, SOURCES)
    out = []
    for d in dirs:
        pixel = hats_meta.pixel_of(posixpath.relpath(f"{d}/x.parquet", SOURCES))
        if pixel is None or pixel.order > hats_meta.SKYMAP_ORDER or not len(skymap):
            out.append(0)
            continue
        inside = get_higher_order_pixels(pixel.order, pixel.pixel, hats_meta.SKYMAP_ORDER - pixel.order)
        out.append(int(skymap[inside].sum()))
    return out


def _outside(files: list[str], keys: list[tuple[int, int]]) -> set[str]:
    """The sources directories of ``files`` that hold none of the partitions ``keys`` nor lie inside one: a
    task of ``keys`` needs of them only their border's detections (:func:`_scan`)."""
    pixels = [HealpixPixel(o, p) for o, p in keys]
    out = set()
    for d in {posixpath.dirname(f) for f in files}:
        home = hats_meta.pixel_of(posixpath.relpath(f"{d}/x.parquet", SOURCES))
        if home is not None and all(_disjoint(home, p) for p in pixels):
            out.add(d)
    return out


def _disjoint(a: HealpixPixel, b: HealpixPixel) -> bool:
    """Whether two HEALPix pixels share no area (neither holds the other)."""
    coarse, fine = (a, b) if a.order <= b.order else (b, a)
    return int(get_lower_order_pixel(fine.order, fine.pixel, fine.order - coarse.order)) != coarse.pixel


def _check_owners(manifests: list[PartitionManifest]) -> None:
    """Every object is written by at most one partition, and one that leaves its partition (its position
    moved across the edge) by the one it moved to.

    A task writes the objects it owns; it names its own objects that now belong to a neighbour
    (``leaving``). An object written twice, or leaving and written by none, would be duplicated or lost,
    so nothing is committed then. (A task also computes objects of its margin from what it sees of
    them; those it does not own are its neighbours' to write, whose views hold them whole.)"""
    orphans = {tuple(h) for m in manifests for h in m.homes} - {tuple(m.key) for m in manifests}
    if orphans:
        raise LakeError(
            f"objects: partitions {sorted(orphans)} own updated objects but were not recomputed; "
            "nothing was committed (rebuild with skylake objects build --rebuild)"
        )
    written = np.concatenate([m.written[0] for m in manifests] + [np.empty(0, np.int64)])
    uniq, times = np.unique(written, return_counts=True)
    lost = np.setdiff1d(np.concatenate([m.leaving for m in manifests] + [np.empty(0, np.int64)]), uniq)
    if (times > 1).any() or len(lost):
        raise LakeError(
            f"objects: {int((times > 1).sum())} objects written by two partitions and {len(lost)} by none "
            f"(e.g. {(uniq[times > 1].tolist() + lost.tolist())[:5]}); nothing was committed (rebuild "
            "with skylake objects build --rebuild)"
        )


def _commit_points(
    tx, lake: Lake, manifests: list[PartitionManifest], report: BuildReport, rebuild: bool, moved: bool
) -> None:
    """Stage the LAKE/lightcurves side of the commit: the tasks' files, the files they merged away and what
    they do to the catalog's partitions and skymap (a rebuild's: of its own files alone, the others are
    removed), which the commit writes as its HATS metadata. Appended and
    merged points stay in their partition directory, so its directories are published one by one;
    points filed again under another partition (``moved``: a rebuild, recalibrated or removed frames,
    whose objects may have moved) need the whole table swapped at once (:meth:`Transaction._swaps`)."""
    points = [(m.key, m.points) for m in manifests]
    if not any(p.path or p.removed for _, p in points) and not rebuild:
        report.points = int(hats_meta.read_skymap(lake.store, LIGHTCURVES).sum())
        return
    change = tx.catalog(LIGHTCURVES, fresh=rebuild)  # the commit writes its HATS metadata
    for key, p in points:
        for rel, rows in p.removed:
            tx.remove(LIGHTCURVES, rel, rows)
        if p.path:
            tx.add_staged(LIGHTCURVES, p.path, p.rows)
        change.add_counts(*p.hist_old, sign=-1)
        change.add_counts(*p.hist_new)
        if p.files:
            change.add_partition(HealpixPixel(*key))
        else:
            change.drop_partition(HealpixPixel(*key))
    if moved:
        tx.rows_may_move(LIGHTCURVES)
    else:
        tx.rows_stay(LIGHTCURVES)
    report.points = int(change.skymap(lake.store).sum())


def _commit(tx, lake: Lake, cfg: _Settings, plan: _Plan, manifests: list[PartitionManifest], report: BuildReport):
    """Commit what the partition tasks wrote: their files, what they do to both catalogs (the transaction's
    collectors, from which it writes their HATS metadata), the held frames of the nights read, the objects
    changed (for refresh) and the build state. Returns the log entry."""
    refcat, radius, rebuild, variable_fap = cfg.refcat, cfg.radius, cfg.rebuild, cfg.variable_fap
    changed, held, redone = plan.changed, plan.held, plan.redone
    _check_owners(manifests)
    expected = int(held.loc[redone, "n_det"].sum())
    dropped = sum(m.dropped for m in manifests)
    if dropped != expected and not rebuild:
        log.warning(
            "objects: %d of %d old points of re-processed frames found where their frames were", dropped, expected
        )
    change = tx.catalog(OBJECTS, fresh=rebuild)  # the commit writes its HATS metadata
    for m in manifests:
        report.detections += m.detections
        for k in ("objects_rows", "points_rows", "points_files"):
            report.read.setdefault(k, 0)
        report.read["objects_rows"] += m.objects_read
        report.read["points_rows"] += m.points_read
        report.read["points_files"] += m.point_files_read
        report.partitions_exact += m.exact and m.dirty
        report.objects_exact += m.refreshed
        if not m.dirty:
            continue
        pixel = HealpixPixel(*m.key)
        report.partitions_rewritten += 1
        report.objects_new += m.objects_new
        for rel, rows in m.removed:
            tx.remove(OBJECTS, rel, rows)
        change.add_counts(*m.hist_old, sign=-1)
        change.add_counts(*m.hist_new)
        if m.path:
            tx.add_staged(OBJECTS, m.path, m.rows)
            change.add_partition(pixel)
        else:
            change.drop_partition(pixel)
    final = change.partitions(lake.store)
    report.objects, report.partitions = int(change.skymap(lake.store).sum()), len(final)
    _commit_points(tx, lake, manifests, report, rebuild, rebuild or bool(redone.any()))
    tx.rows_may_move(OBJECTS)  # an object may move to another partition, leaving one that only loses it
    # the held frames: rows of the nights read, less the redone ones, plus the changed frames
    fp = pd.concat(
        [m.frame_pixels for m in manifests]
        + [
            pd.DataFrame(
                {"frame_id": np.empty(0, np.int64), "pixel": np.empty(0, np.int64), "n": np.empty(0, np.int64)}
            )
        ]
    )
    fp = fp.groupby("frame_id").agg(n_det=("n", "sum"), pixels=("pixel", lambda s: sorted(set(s.tolist()))))
    new_rows = changed[["frame_id", "calib"]].merge(plan.frames[["frame_id", "night"]], on="frame_id", how="left")
    new_rows["n_det"] = fp["n_det"].reindex(new_rows["frame_id"]).fillna(0).to_numpy(np.int64)
    new_rows["pixels"] = [
        list(p) if isinstance(p, list) else [] for p in fp["pixels"].reindex(new_rows["frame_id"]).tolist()
    ]
    new_held = pd.concat([held[~redone], new_rows], ignore_index=True)
    if plan.nights is None:  # every night is written; nights left empty too
        nights = set(read_held(lake)["night"]) | set(new_held["night"].dropna())
    else:
        nights = set(plan.nights)
    for night in sorted(nights):
        rows = new_held[new_held["night"] == night].sort_values("frame_id")
        tx.stage_file(
            _held_rel(night),
            parquet_bytes(pa.Table.from_pandas(rows[HELD_SCHEMA.names], schema=HELD_SCHEMA, preserve_index=False)),
        )
    version = tx.version  # this commit's: the next update starts after it
    if not rebuild:  # a rebuild replaces every partition: a refresh mirrors those whole
        tx.stage_file(changes_rel(version), parquet_bytes(_changes_table(manifests)))
    tx.stage_file(
        f"{OBJECTS}/{STATE_FILE}",
        json.dumps(
            {
                "refcat": refcat,
                "radius_arcsec": radius,
                "variable_fap": variable_fap,
                "layout": LAYOUT,
                "version": version,
                "objects": report.objects,
            }
        ).encode(),
    )
    entry = tx.commit(summary={"objects": asdict(report)})
    return entry
