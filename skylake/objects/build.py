"""``LAKE/objects/``: the objects table, built and updated incrementally through the lake's commit log.

::

    LAKE/objects/              HATS catalog, catalog_type=object, hats_npix_suffix=/
      hats.properties  properties  partition_info.csv  skymap.fits  point_map.fits  dataset/_common_metadata
      dataset/Norder=k/Dir=d/Npix=n/<batch>.parquet    one file per partition, rows sorted by _healpix_29
      skylake_objects.json     what the table was built with (refcat, association radius)
      skylake_objects.json     also the lake version it was built at (the watermark) and its object count
      skylake_frames/night=YYYY-MM-DD.parquet   frames it holds, per night: frame_id, calib (batch of the
                                                calibration used), n_det, pixels (where its detections are)
      skylake_changes/<version>.parquet         objects an update wrote or removed (CHANGES_SCHEMA), one
                                                file per commit: what ``skylake refresh`` mirrors

An update (``build_objects``) runs under the lake's writer lock and costs what changed, not the archive:

* **what changed**: ``skylake_objects.json`` records the lake version the table was built at; the log
  entries since then list the frames and zeropoints files added or removed, so only those nights'
  frames, zeropoints and held frames (``skylake_frames/night=...``) are read and compared: frames that
  are new, recalibrated (another zeropoint batch) or gone are the work;
* **where**: the changed frames' detections are looked for only in the sources files the log added
  since the build and, for frames already held, in the partitions their detections were in (each held
  frame records its pixels at the lake's partition order); a first scan finds their pixels;
* **per partition**: each objects partition whose view (itself plus a margin one pixel of
  :func:`~skylake.objects.associate.margin_order` wide, at least 4 association radii) holds a
  detection or an old point of a re-processed frame is one task (:func:`build_partition`, on the dask
  cluster when a client is given): it reads its own file, the margin's rows of its neighbours and the
  detections in its view, associates (:mod:`.associate`), and writes the objects whose mean position
  it holds (so an object on an edge is seen whole from both sides and owned by exactly one) into the
  commit's staging area, returning a small manifest. The driver commits the files, the HATS metadata
  (skymap updated by the tasks' histograms) and the state files: one commit of the lake's log, so
  readers see the old table or the new one, never a mix. Untouched partition files stay as they are.

Magnitudes: see schemas/objects.yaml (matched calibrated mag, else inst_mag + zp, else null).
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hats.pixel_math import HealpixPixel
from hats.pixel_math.healpix_pixel import get_lower_order_pixel
from hats.pixel_math.healpix_shim import order2nside
from hats.pixel_math.spatial_index import compute_spatial_index, healpix_to_spatial_index, spatial_index_to_healpix

from skylake.calib.model import KRON, LatestPolicy, ZpStatus, calibrated_flux_mags, calibrated_mag, latest_calibration
from skylake.errors import LakeError
from skylake.frame.extract import SATURATED
from hats.pixel_math import get_margin

from skylake.lake import Lake, counts, hats_meta
from skylake.lake.lake import UNKNOWN_NIGHT, night_partition, parquet_bytes
from skylake.lake.tables import FRAMES, MATCHES, OBJECTS, SOURCES, ZEROPOINTS, night_dir, night_of
from skylake.lake.log import staging_path
from skylake.lake.versions import latest_versions
from skylake.objects.associate import (associate, chord_to_arcsec, margin_order, mean_positions, ref_object_ids,
                                       unit_vectors, vector_to_radec)
from skylake.objects.stats import light_curve_stats
from skylake.runtime import release_memory
from skylake.schema import table_schema

log = logging.getLogger(__name__)

STATE_FILE = "skylake_objects.json"
FRAMES_FILE = "skylake_frames.parquet"  # the held frames of tables built before the watermark (read once)
HELD_DIR = "skylake_frames"
DEFAULT_RADIUS_ARCSEC = 3.0
#: Objects per Parquet row group: small enough that a cone search decodes little beyond its rows.
ROW_GROUP = 2000
DETECTION_COLUMNS = ["source_id", "frame_id", "ra", "dec", "_healpix_29", "mjd", "inst_mag", "inst_mag_err", "flags"]
LC_FIELDS = [f.name for f in table_schema(OBJECTS).field("lc").type]
FRAMES_SCHEMA = pa.schema([("frame_id", pa.int64()), ("calib", pa.string()), ("n_det", pa.int64())])
HELD_SCHEMA = FRAMES_SCHEMA.append(pa.field("pixels", pa.list_(pa.int64())))
CHANGES_DIR = "skylake_changes"
#: The objects one update wrote (with their partition and ``_healpix_29``: where to read them cheaply) or
#: removed (``deleted``), so that a summary database mirrors those rows, not whole partitions.
CHANGES_SCHEMA = pa.schema([("object_id", pa.int64()), ("Norder", pa.int8()), ("Npix", pa.int64()),
                            ("_healpix_29", pa.int64()), ("deleted", pa.bool_())])


class ObjectsError(LakeError):
    """The objects table cannot be built as asked (a usage error: exit code 2 on the command line)."""


@dataclass
class BuildReport:
    """What one ``build_objects`` did."""

    refcat: str
    radius_arcsec: float
    frames_added: int = 0
    frames_updated: int = 0  # recalibrated since the last build
    frames_removed: int = 0
    detections: int = 0  # detections associated in this update
    objects: int = 0  # objects in the table after it
    objects_new: int = 0
    partitions_rewritten: int = 0
    partitions: int = 0
    commit: int | None = None
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    #: what the update read: frames rows and nights (driver), sources files and objects rows (tasks)
    read: dict = field(default_factory=dict)

    def __str__(self) -> str:
        if self.commit is None:
            return f"objects up to date ({self.objects} objects in {self.partitions} partitions)"
        return (f"objects: {self.frames_added} frames added, {self.frames_updated} recalibrated, {self.frames_removed} "
                f"removed; {self.detections} detections associated, {self.objects_new} new objects, "
                f"{self.objects} in all; {self.partitions_rewritten} of {self.partitions} partitions rewritten "
                f"(radius {self.radius_arcsec:g}\", refcat {self.refcat or 'none'}), commit v{self.commit}, "
                f"{self.seconds:.1f} s")


def _lake(lake) -> Lake:
    return lake if isinstance(lake, Lake) else Lake.open(lake)


# -- state ------------------------------------------------------------------------------------------
def read_state(lake: Lake) -> tuple[dict, pd.DataFrame | None]:
    """The build settings (empty when never built) and, for a table built before the watermark, the
    frames it holds (None otherwise: they are in ``skylake_frames/``, read per night by :func:`read_held`)."""
    if not lake.store.exists(f"{OBJECTS}/{STATE_FILE}"):
        return {}, None
    state = json.loads(lake.store.read_bytes(f"{OBJECTS}/{STATE_FILE}"))
    if "version" in state:
        return state, None
    return state, pq.read_table(lake.path(f"{OBJECTS}/{FRAMES_FILE}"), schema=FRAMES_SCHEMA).to_pandas()


def latest_calibrations(lake: Lake, refcat: str, nights=None) -> pd.DataFrame:
    """Each frame's latest calibration against ``refcat`` (:func:`~skylake.calib.model.latest_calibration`,
    whatever its status): frame_id, calib (its batch), calib_key, zp, zp_err (zp null unless zp_status
    is ok); of the frames of ``nights`` (partition names) when given."""
    cols = ["frame_id", "refcat", "calib_key", "zp", "zp_err", "zp_status", "flux", "apcor", "batch_id",
            "calibrated_at"]
    zps = lake.read_night_table(ZEROPOINTS, columns=cols, filter=pc.field("refcat") == refcat, nights=nights).to_pandas()
    zps = latest_calibration(zps, LatestPolicy(refcat=refcat))
    zps.loc[zps["zp_status"] != ZpStatus.OK, "zp"] = np.nan
    zps["flux"] = zps["flux"].fillna(KRON)  # calibrations written before the flux setting: Kron
    return zps.rename(columns={"batch_id": "calib"})[["frame_id", "calib", "calib_key", "zp", "zp_err", "flux",
                                                      "apcor"]]


def default_refcat(lake: Lake) -> str:
    """The catalogue with the most zeropoint rows ("" when there is none): from the lake's running counts
    (:mod:`skylake.lake.counts`), else from the zeropoints table."""
    totals = counts.read(lake)
    if totals is not None:
        rows = {name: sum(c["rows_by_status"].values()) for name, c in totals.get("calibrations", {}).items()}
        rows = {name: n for name, n in rows.items() if n > 0}
        return max(sorted(rows), key=rows.get) if rows else ""
    refcats = lake.read_night_table(ZEROPOINTS, columns=["refcat"]).column("refcat").to_pandas()
    return str(refcats.value_counts().idxmax()) if len(refcats) else ""


# -- reading ------------------------------------------------------------------------------------------
def read_detections(lake: Lake, files: list[str], frames: pd.DataFrame, refcat: str, keep=None) -> pd.DataFrame:
    """Sources of ``frames`` (frame_id, exptime, night and their calibration: calib_key, zp, zp_err, flux,
    apcor; NaN when uncalibrated) in the sources ``files`` (lake-relative), with their light-curve
    magnitudes and reference match; ``keep(h29)`` (a mask) limits them to a region.

    ``mag``: the match's calibrated mag in the frame's calibration, else ``inst_mag + zp`` (colour 0)
    where the frame has an ok zeropoint, else NaN. ``ref_object``: the reference star's object id (0
    when unmatched)."""
    cal = frames[frames["calib_key"].notna()] if "calib_key" in frames else frames.iloc[0:0]
    apertures = sorted(set(cal["flux"].dropna()) - {KRON}) if "flux" in cal else []
    extra = [c for f in apertures for c in (f, f"{f}_err")]
    ids = pa.array(frames["frame_id"].to_numpy(np.int64))
    det = (_sources_dataset(lake, files).to_table(columns=DETECTION_COLUMNS + extra, filter=pc.field("frame_id").isin(ids))
           if files else table_schema(SOURCES).empty_table().select(DETECTION_COLUMNS + extra))
    if keep is not None:
        det = det.filter(pa.array(keep(det.column("_healpix_29").to_numpy())))
    det = det.to_pandas()
    if apertures:  # frames calibrated in an aperture: their instrumental magnitudes in it (calib.model)
        det = det.merge(frames[["frame_id", "exptime"]], on="frame_id", how="left").merge(
            cal[["frame_id", "flux", "apcor"]], on="frame_id", how="left")
        for f in apertures:
            rows = (det["flux"] == f).to_numpy()
            mag, err = calibrated_flux_mags(det[rows], det.loc[rows, "exptime"].to_numpy(float), f,
                                            det.loc[rows, "apcor"].to_numpy(float))
            det.loc[rows, "inst_mag"], det.loc[rows, "inst_mag_err"] = mag, err
        det = det.drop(columns=[*extra, "exptime", "flux", "apcor"])
    det = det.merge(cal[["frame_id", "zp", "zp_err"]], on="frame_id", how="left")
    det["ref_id"] = pd.array([pd.NA] * len(det), dtype="Int64")
    det["ref_object"] = np.zeros(len(det), dtype=np.int64)
    mag = calibrated_mag(det["inst_mag"].to_numpy(np.float64, na_value=np.nan),  # colour unknown here: 0
                         det["zp"].to_numpy(np.float64, na_value=np.nan))
    err = np.hypot(det["inst_mag_err"].astype(np.float64), det["zp_err"].astype(np.float64)).to_numpy(
        np.float64, na_value=np.nan, copy=True)
    present = cal[cal["frame_id"].isin(det["frame_id"].unique())]
    if refcat and len(present):  # matches of the frames here, from their nights only
        here = pa.array(present["frame_id"].to_numpy(np.int64))
        flt = (pc.field("refcat") == refcat) & pc.field("frame_id").isin(here)
        cols = ["source_id", "frame_id", "calib_key", "ref_id", "mag", "mag_err"]
        matches = lake.read_night_table(MATCHES, columns=cols, filter=flt, nights=sorted(set(present["night"]))).to_pandas()
        matches = matches.merge(present[["frame_id", "calib_key"]], on=["frame_id", "calib_key"])
        at = pd.Index(det["source_id"]).get_indexer(matches["source_id"])
        matches = matches[at >= 0]
        at = at[at >= 0]
        det.loc[at, "ref_id"] = matches["ref_id"].to_numpy()
        det.loc[at, "ref_object"] = ref_object_ids(refcat, matches["ref_id"].to_numpy(np.int64))
        m = matches["mag"].to_numpy(np.float64, na_value=np.nan)
        mag[at] = np.where(np.isfinite(m), m, mag[at])
        err[at] = np.where(np.isfinite(m), matches["mag_err"].to_numpy(np.float64, na_value=np.nan), err[at])
    det["mag"], det["mag_err"] = mag, err
    return det.drop(columns=["zp", "zp_err"])


def objects_dataset(lake: Lake, files: list[str] | None = None):
    """The objects table as a pyarrow dataset (``Norder``/``Dir``/``Npix`` from the paths); ``files``
    (lake-relative) restricts it."""
    import pyarrow.dataset as pads

    lake = _lake(lake)
    partitioning = pads.partitioning(pa.schema([("Norder", pa.int8()), ("Dir", pa.int64()), ("Npix", pa.int64())]),
                                     flavor="hive")
    schema = table_schema(OBJECTS)
    for name, typ in (("Norder", pa.int8()), ("Dir", pa.int64()), ("Npix", pa.int64())):
        schema = schema.append(pa.field(name, typ))
    source = [lake.path(f) for f in files] if files is not None else lake.path(f"{OBJECTS}/dataset")
    return pads.dataset(source, format="parquet", partitioning=partitioning, schema=schema,
                        partition_base_dir=lake.path(f"{OBJECTS}/dataset"),
                        filesystem=lake.store.fs if not lake.store.is_local else None)


def _flatten(table: pa.Table) -> pd.DataFrame:
    """One row per light-curve point of an objects table: its lc fields plus object_id, refcat, ref_id."""
    lc = table.column("lc").combine_chunks()  # a struct of equal-length lists
    parent = pc.list_parent_indices(lc.field(0)).to_numpy()
    flat = pd.DataFrame({name: lc.field(name).flatten().to_numpy(zero_copy_only=False) for name in LC_FIELDS})
    flat["object_id"] = table.column("object_id").to_numpy()[parent]
    flat["ref_id"] = table.column("ref_id").to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get).array.take(parent)
    flat["refcat"] = table.column("refcat").to_numpy(zero_copy_only=False)[parent]
    return flat


# -- summarising ----------------------------------------------------------------------------------------
def summarise(flat: pd.DataFrame, refcat: str) -> pa.Table:
    """One objects row per ``object_id`` of ``flat`` (light-curve points with object_id and ref_id):
    mean position, statistics and the nested light curve in time order; sorted by ``_healpix_29``.

    ``refcat`` is the build's catalogue: every reference object (object_id < 0) comes from it, and its
    ``ref_id`` is the first one among its points, wherever that is (an unmatched detection attached
    to it has none, and may be the earliest). An empty ``flat`` gives an empty table."""
    if flat.empty:
        return table_schema(OBJECTS).empty_table()
    flat = flat.sort_values(["object_id", "mjd", "source_id"], kind="stable", ignore_index=True)
    oid = flat["object_id"].to_numpy(np.int64)
    uniq, first, inv = np.unique(oid, return_index=True, return_inverse=True)
    n_obj = len(uniq)
    xyz = unit_vectors(flat["ra"].to_numpy(), flat["dec"].to_numpy())
    _, centre = mean_positions(inv, xyz)
    ra, dec = vector_to_radec(centre)
    dist2 = chord_to_arcsec(np.linalg.norm(xyz - centre[inv], axis=1)) ** 2
    mag = flat["mag"].to_numpy(np.float64, na_value=np.nan)
    cal = np.isfinite(mag)
    n_cal = np.bincount(inv, cal, n_obj).astype(np.int32)
    use_cal = (n_cal > 0)[inv]
    m = np.where(use_cal, mag, flat["inst_mag"].to_numpy(np.float64, na_value=np.nan))
    e = np.where(use_cal, flat["mag_err"].to_numpy(np.float64, na_value=np.nan),
                 flat["inst_mag_err"].to_numpy(np.float64, na_value=np.nan))
    mjd = flat["mjd"].to_numpy(np.float64)
    # saturated detections stay in the light curve (flagged) but not in the statistics: their fluxes are
    # lower limits, and a constant bright star would otherwise rank as variable
    saturated = (flat["flags"].to_numpy(np.int64) & SATURATED) != 0
    stats = light_curve_stats(inv, mjd, np.where(saturated, np.nan, m), e, n_obj)
    counts = np.bincount(inv, minlength=n_obj)
    last = np.r_[first[1:], len(oid)] - 1
    ref_all = flat["ref_id"].astype("Int64").array  # ids beyond 2**53: never through float
    has_ref = np.flatnonzero(~ref_all.isna())
    with_ref, at = np.unique(inv[has_ref], return_index=True)  # first point with a ref_id, per object
    pick = first.copy()
    pick[with_ref] = has_ref[at]
    ref_id = ref_all.take(pick)
    refcat = np.where(uniq < 0, refcat, "").astype(object)
    h29 = np.asarray(compute_spatial_index(ra, dec), dtype=np.int64)
    lc_type = table_schema(OBJECTS).field("lc").type
    offsets = pa.array(np.r_[first, len(oid)].astype(np.int32))
    lc = pa.StructArray.from_arrays(
        [pa.ListArray.from_arrays(offsets, pa.array(flat[f.name].to_numpy(), f.type.value_type, from_pandas=True),
                                  type=f.type) for f in lc_type], fields=list(lc_type))
    cols = {
        "_healpix_29": h29, "object_id": uniq, "refcat": pa.array(refcat, pa.string()),
        "ref_id": pa.array(ref_id, pa.int64()),
        "ra": ra, "dec": dec, "pos_rms_arcsec": np.sqrt(np.bincount(inv, dist2, n_obj) / counts).astype(np.float32),
        "n_det": counts.astype(np.int32), "n_cal": n_cal,
        "stats_mag": pa.array(np.where(n_cal > 0, "mag", "inst_mag").astype(object), pa.string()),
        **stats, "first_mjd": mjd[first], "last_mjd": mjd[last],
        "lc": lc,
    }
    schema = table_schema(OBJECTS)
    table = pa.table({f.name: pa.array(cols[f.name], f.type) if not isinstance(cols[f.name], pa.Array)
                      else cols[f.name] for f in schema}, schema=schema)
    return table.take(np.lexsort((uniq, h29)))


# -- planning: what changed since the table was built ------------------------------------------------
def _held_rel(night: str) -> str:
    return f"{OBJECTS}/{HELD_DIR}/{night_dir(night)}.parquet"


def changes_rel(version: int) -> str:
    """Lake-relative path of the changes file (:data:`CHANGES_SCHEMA`) of the objects commit ``version``."""
    return f"{OBJECTS}/{CHANGES_DIR}/{version}.parquet"


def _changes_table(manifests) -> pa.Table:
    """:data:`CHANGES_SCHEMA` rows of an update's dirty partitions: the objects they wrote again, and the
    objects they no longer hold that no partition wrote (gone: merged, or their points removed)."""
    dirty = [m for m in manifests if m["dirty"]]
    written = [(m["key"], m["written"]) for m in dirty]
    ids = np.concatenate([w[0] for _, w in written] + [np.empty(0, np.int64)])
    gone = np.setdiff1d(np.concatenate([m["gone"] for m in dirty] + [np.empty(0, np.int64)]), ids)
    order = np.concatenate([np.full(len(w[0]), k[0], np.int8) for k, w in written] + [np.empty(0, np.int8)])
    npix = np.concatenate([np.full(len(w[0]), k[1], np.int64) for k, w in written] + [np.empty(0, np.int64)])
    h29 = np.concatenate([w[1] for _, w in written] + [np.empty(0, np.int64)])
    return pa.table({"object_id": np.r_[ids, gone].astype(np.int64),
                     "Norder": pa.array(np.r_[order, np.zeros(len(gone), np.int8)], pa.int8()),
                     "Npix": np.r_[npix, np.zeros(len(gone), np.int64)],
                     "_healpix_29": np.r_[h29, np.zeros(len(gone), np.int64)],
                     "deleted": np.r_[np.zeros(len(ids), bool), np.ones(len(gone), bool)]}, schema=CHANGES_SCHEMA)


def read_held(lake: Lake, nights=None) -> pd.DataFrame:
    """Held frames (:data:`HELD_SCHEMA` plus ``night``) of ``nights`` (partition names), or of every night."""
    if nights is None:
        names = lake.store.listdir(f"{OBJECTS}/{HELD_DIR}") if lake.store.exists(f"{OBJECTS}/{HELD_DIR}") else []
        nights = [n.removesuffix(".parquet") for n in map(night_of, names) if n is not None]
    parts = [pq.read_table(lake.path(_held_rel(n)), schema=HELD_SCHEMA).to_pandas().assign(night=n)
             for n in sorted(nights) if lake.store.exists(_held_rel(n))]
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
            if action.table in (FRAMES, ZEROPOINTS):
                nights.add(night_of(action.path))
        sources |= {a.lake_path for a in entry.adds if a.table == SOURCES}
        frames |= {a.path for a in entry.adds if a.table == FRAMES}
    return nights, sources, frames


def _read_frames(lake: Lake, nights: list[str], added: set, columns: list[str]) -> pd.DataFrame:
    """Frame rows of ``nights`` (partition names), file by file; ``recent``: the file is one of ``added``."""
    parts = []
    for rel in lake.live_files(FRAMES, [None if n == UNKNOWN_NIGHT else n for n in nights]):
        data = pq.read_table(lake.path(f"{FRAMES}/{rel}"), schema=table_schema(FRAMES), columns=columns).to_pandas()
        parts.append(data.assign(night=night_of(rel), recent=rel in added))
    if not parts:
        return pd.DataFrame({c: [] for c in [*columns, "night", "recent"]})
    return pd.concat(parts, ignore_index=True)


def _plan(lake: Lake, tx, state: dict, legacy: pd.DataFrame | None, refcat: str, rebuild: bool) -> _Plan:
    """Frames new, recalibrated or gone since the build at ``state['version']``: only the nights whose
    frames or zeropoints files the log lists since then are read (every night without a watermark)."""
    latest = tx.base.version if tx.base else 0
    since = state.get("version")
    read = {"frames_rows": 0, "nights": 0}
    cols = ["frame_id", "n_sources", "content_hash", "hdu", "exptime"]
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
    frames = frames[frames["n_sources"] > 0]
    frames = frames.assign(night=[night_partition(n) for n in frames["night"]])
    if refcat and nights != []:
        calibs = latest_calibrations(lake, refcat, nights)
    else:
        calibs = pd.DataFrame({"frame_id": np.empty(0, np.int64), "calib": [], "calib_key": [], "zp": [],
                               "zp_err": [], "flux": [], "apcor": []})
    if rebuild:
        held = read_held(lake, [])
    elif legacy is not None:  # nights of the frames still there (a gone one's is not needed)
        held = legacy.assign(night=legacy["frame_id"].map(frames.set_index("frame_id")["night"]), pixels=None)
    elif nights is None:
        held = read_held(lake)
    else:
        held = read_held(lake, nights)
    now = frames[["frame_id"]].merge(calibs[["frame_id", "calib"]], on="frame_id", how="left").fillna({"calib": ""})
    both = now.merge(held[["frame_id", "calib"]], on="frame_id", how="outer", suffixes=("", "_held"), indicator=True)
    changed = both[(both["_merge"] == "left_only") | ((both["_merge"] == "both") & (both["calib"] != both["calib_held"]))]
    gone = both[both["_merge"] == "right_only"]
    redone = (held["frame_id"].isin(changed["frame_id"]) | held["frame_id"].isin(gone["frame_id"])).to_numpy()
    info = frames[["frame_id", "exptime", "night", "recent"]].merge(
        calibs.drop(columns="calib"), on="frame_id", how="left")
    info = info[info["frame_id"].isin(changed["frame_id"])].reset_index(drop=True)
    # sources: files the log added since the build hold new frames; a re-associated frame's are where its
    # detections were (the held pixels); anything else (no watermark, no pixels) means every file
    files = None
    if nights is not None:
        new = changed["_merge"] == "left_only"
        stale_pix = held.loc[redone & held["frame_id"].isin(changed["frame_id"]).to_numpy(), "pixels"]
        if info.loc[info["frame_id"].isin(changed.loc[new, "frame_id"]), "recent"].all() and \
                not stale_pix.isna().any():
            files = {f for f in sources_added if lake.store.exists(f)}
            pix = np.unique(np.concatenate([np.asarray(p, np.int64) for p in stale_pix] + [np.empty(0, np.int64)]))
            if len(pix):
                files |= set(_sources_files_over(lake, tx.partitions, pix, lake.config.partition_order))
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


# -- per-partition work (a dask task each, or in this process) ---------------------------------------
def _open(url: str) -> Lake:
    lake = Lake.open(url, catch_up=False)  # the driver holds the writer lock: read exactly what is on disk
    lake.auto_catch_up = False
    return lake


def scan_pixels(url: str, files: list[str], frame_ids: np.ndarray, m_order: int) -> np.ndarray:
    """Pixels at ``m_order`` holding detections of ``frame_ids`` in ``files`` (where the update's work lies)."""
    lake = _open(url)
    if not files:
        return np.empty(0, np.int64)
    data = _sources_dataset(lake, files).to_table(
        columns=["_healpix_29"], filter=pc.field("frame_id").isin(pa.array(np.asarray(frame_ids, np.int64))))
    return np.unique(spatial_index_to_healpix(data.column("_healpix_29").to_numpy(), target_order=m_order))


def _sources_dataset(lake: Lake, files: list[str]):
    import pyarrow.dataset as pads

    return pads.dataset([lake.path(f) for f in files], format="parquet", schema=table_schema(SOURCES))


def _ranges(pixels: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, merged ``_healpix_29`` ranges [lo, hi) of ``pixels`` at ``order``."""
    pixels = np.unique(np.asarray(pixels, np.int64))
    if not len(pixels):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    brk = np.flatnonzero(np.diff(pixels) != 1) + 1
    lo, hi = pixels[np.r_[0, brk]], pixels[np.r_[brk - 1, len(pixels) - 1]] + 1
    return healpix_to_spatial_index(order, lo), healpix_to_spatial_index(order, hi)


def read_ranges(path: str, lo: np.ndarray, hi: np.ndarray, columns: list[str] | None = None,
                 filesystem=None) -> pa.Table:
    """Rows of an objects file (sorted by ``_healpix_29``) within the ranges: only the row groups whose
    statistics overlap them are read (only ``columns``, which must include ``_healpix_29``, when given)."""
    pf = pq.ParquetFile(path, filesystem=filesystem)
    col = pf.schema_arrow.get_field_index("_healpix_29")
    groups = []
    for g in range(pf.metadata.num_row_groups):
        st = pf.metadata.row_group(g).column(col).statistics
        k = np.searchsorted(hi, st.min, side="right")
        if k < len(lo) and lo[k] <= st.max:
            groups.append(g)
    schema = table_schema(OBJECTS)
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    if not groups:
        return schema.empty_table()
    data = pf.read_row_groups(groups, columns=columns).cast(schema)
    h = data.column("_healpix_29").to_numpy()
    k = np.searchsorted(hi, h, side="right")
    return data.filter(pa.array((k < len(lo)) & (lo[np.minimum(k, len(lo) - 1)] <= h)))


def _sparse_hist(h29: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.unique(spatial_index_to_healpix(np.asarray(h29, np.int64), target_order=hats_meta.SKYMAP_ORDER),
                     return_counts=True)


def build_partition(spec: dict, key: tuple[int, int], files: list[str]) -> dict:
    """Recompute objects partition ``key`` (order, pixel) of an update and stage its file; returns a small
    manifest for the driver's commit.

    The partition sees the update's detections (from ``files``) and the objects (with their light curves)
    in it and in a margin around it one pixel of ``spec['m_order']`` wide (at least ``MARGIN_RADII``
    association radii): objects on its edges are associated whole, from both sides alike, and each object
    is owned by the one partition holding its mean position (``assign_pixels``), which writes it.
    """
    lake = _open(spec["url"])
    order, pixel = key
    m_order, lake_order = spec["m_order"], spec["order"]
    band = np.asarray(get_margin(order, pixel, m_order - order), np.int64)
    blo, bhi = _ranges(band, m_order)
    clo, chi = _ranges([pixel], order)
    lo, hi = np.concatenate((clo, blo)), np.concatenate((chi, bhi))
    by = np.argsort(lo)
    lo, hi = lo[by], hi[by]

    def within(h, a, b):
        k = np.searchsorted(b, h, side="right")
        return (k < len(a)) & (a[np.minimum(k, len(a) - 1)] <= h)

    frames: pd.DataFrame = spec["frames"]
    det = read_detections(lake, files, frames, spec["refcat"], lambda h: within(h, lo, hi))
    core = spatial_index_to_healpix(det["_healpix_29"].to_numpy(np.int64), target_order=order) == pixel
    partitions = [HealpixPixel(o, p) for o, p in spec["partitions"]]
    # old objects: this partition's files whole, the margin's rows of its neighbours
    own_files = [] if spec["rebuild"] else _partition_files(lake, HealpixPixel(order, pixel))
    old = [pq.read_table(lake.path(f), schema=table_schema(OBJECTS)) for f in own_files]
    removed = [(posixpath.relpath(f, OBJECTS), t.num_rows) for f, t in zip(own_files, old)]
    n_objects_read = sum(t.num_rows for t in old)
    own_ids = np.concatenate([t.column("object_id").to_numpy() for t in old] + [np.empty(0, np.int64)])
    hist_old = _sparse_hist(np.concatenate([t.column("_healpix_29").to_numpy() for t in old] +
                                           [np.empty(0, np.int64)]))
    if len(band) and partitions:
        orders, pixels = hats_meta.assign_pixels(healpix_to_spatial_index(m_order, band), partitions, lake_order)
        for o, p in sorted(set(zip(orders.tolist(), pixels.tolist())) - {key}):
            if HealpixPixel(o, p) in partitions:
                for f in _partition_files(lake, HealpixPixel(o, p)):
                    old.append(read_ranges(lake.path(f), blo, bhi))
                    n_objects_read += old[-1].num_rows
    old_tab = pa.concat_tables(old) if old else table_schema(OBJECTS).empty_table()
    pos = pd.DataFrame({c: old_tab.column(c).to_numpy() for c in ("object_id", "_healpix_29", "ra", "dec")})
    old_ids = old_tab.column("object_id").to_numpy()
    stale = np.asarray(spec["stale"], np.int64)
    touched = np.empty(0, np.int64)
    dropped = 0
    if old_tab.num_rows and len(stale):  # objects with points of re-processed frames: those points go first
        lc_frames = old_tab.column("lc").combine_chunks().field("frame_id")
        hit = np.isin(lc_frames.flatten().to_numpy(), stale)
        holders = old_ids[pc.list_parent_indices(lc_frames).to_numpy()[hit]]
        touched = np.unique(holders)
        dropped = int(np.isin(holders, own_ids).sum())
        pos = _without_points(pos, _flatten(old_tab.filter(pa.array(np.isin(old_ids, touched)))),
                              set(stale.tolist()))
    ids = associate(det["source_id"].to_numpy(), det["frame_id"].to_numpy(), det["ra"].to_numpy(),
                    det["dec"].to_numpy(), det["_healpix_29"].to_numpy(), det["ref_object"].to_numpy(),
                    pos["object_id"].to_numpy(), pos["ra"].to_numpy(), pos["dec"].to_numpy(), spec["radius"],
                    lake_order)
    refcat = spec["refcat"]
    new_flat = det.assign(object_id=ids, refcat=np.where(det["ref_object"] == ids, refcat, ""),
                          ref_id=det["ref_id"].where(det["ref_object"] == ids).astype("Int64"))
    new_flat = new_flat[LC_FIELDS + ["object_id", "refcat", "ref_id"]]
    touched = np.union1d(touched, ids)
    # the objects the update touched are summarised again from their points; the partition's others stay
    # as they are (summarise is deterministic: the same rows), so the cost is the change's
    redo = np.isin(old_ids, touched)
    parts = [new_flat]
    if redo.any():
        old_flat = _flatten(old_tab.filter(pa.array(redo)))
        parts.append(old_flat[~old_flat["frame_id"].isin(stale)] if len(stale) else old_flat)
    table = summarise(pd.concat(parts, ignore_index=True), refcat)
    h29 = table.column("_healpix_29").to_numpy()
    orders, pixels = hats_meta.assign_pixels(h29, partitions, lake_order)
    mine = (orders == order) & (pixels == pixel)
    written = table.filter(pa.array(mine))  # the objects this update summarised again, owned here
    owned = pa.concat_tables([old_tab.filter(pa.array(np.isin(old_ids, own_ids) & ~redo)), written])
    owned = owned.take(np.lexsort((owned.column("object_id").to_numpy(), owned.column("_healpix_29").to_numpy())))
    owned_ids = owned.column("object_id").to_numpy()
    out = {"key": key, "dirty": bool(np.isin(owned_ids, touched).any() or not np.isin(own_ids, owned_ids).all()),
           "rows": owned.num_rows, "path": None, "removed": removed, "hist_old": hist_old,
           "hist_new": _sparse_hist(owned.column("_healpix_29").to_numpy()), "dropped": dropped,
           "objects_new": int((~np.isin(owned_ids, pos["object_id"].to_numpy())).sum()),
           "detections": int(core.sum()), "objects_read": n_objects_read,
           "homes": sorted(set(zip(orders[~mine].tolist(), pixels[~mine].tolist()))),
           "written": (written.column("object_id").to_numpy(), written.column("_healpix_29").to_numpy()),
           "gone": np.setdiff1d(own_ids, owned_ids),
           "sources_files": len(files)}
    # per changed frame: its detections here and their pixels at the lake's order (where its points are)
    fp = pd.DataFrame({"frame_id": det.loc[core, "frame_id"].to_numpy(np.int64),
                       "pixel": spatial_index_to_healpix(det.loc[core, "_healpix_29"].to_numpy(np.int64),
                                                         target_order=lake_order)})
    out["frame_pixels"] = fp.groupby(["frame_id", "pixel"]).size().rename("n").reset_index()
    if out["dirty"] and owned.num_rows:
        rel = f"{hats_meta.pixel_dir(order, pixel)}/{spec['batch_id']}.parquet"
        lake.store.write_bytes(staging_path(spec["batch_id"], f"{OBJECTS}/{rel}"),
                               parquet_bytes(owned, row_group_size=ROW_GROUP))
        out["path"] = rel
    del det, old, old_tab, parts, table, owned, written
    release_memory()  # a worker's RSS is what its task holds, not what earlier tasks freed
    return out


# -- building -------------------------------------------------------------------------------------------
def _partition_files(lake: Lake, pixel: HealpixPixel) -> list[str]:
    base = f"{OBJECTS}/{hats_meta.pixel_dir(pixel.order, pixel.pixel)}"
    return lake.store.walk_files(base, ".parquet")


def _without_points(pos: pd.DataFrame, old: pd.DataFrame | None, stale: set) -> pd.DataFrame:
    """Object positions after the points of ``stale`` frames are removed from ``old`` (the light-curve
    points of the loaded partitions): objects left without points are dropped, the others move to the
    mean of what remains."""
    if old is None or old.empty:
        return pos
    remaining = old[~old["frame_id"].isin(stale)]
    affected = pos["object_id"].isin(old["object_id"].unique())
    uniq, centre = mean_positions(remaining["object_id"].to_numpy(np.int64),
                                  unit_vectors(remaining["ra"].to_numpy(), remaining["dec"].to_numpy()))
    ra, dec = vector_to_radec(centre) if len(uniq) else (np.empty(0), np.empty(0))
    moved = pos[affected].drop_duplicates("object_id").set_index("object_id").reindex(uniq)
    moved = moved.assign(ra=ra, dec=dec, _healpix_29=np.asarray(compute_spatial_index(ra, dec), np.int64)
                         if len(uniq) else np.empty(0, np.int64)).reset_index()
    return pd.concat([pos[~affected], moved[pos.columns]], ignore_index=True)


def _neighbour_tasks(mpix: np.ndarray, m_order: int, partitions, order: int) -> np.ndarray:
    """Keys (order << 40 | pixel) of the partitions whose view (the partition and its margin at
    ``m_order``) holds each of ``mpix``: its own, and those of its eight neighbours."""
    import healpy as hp

    if not len(mpix):
        return np.empty(0, np.int64)
    nb = hp.get_all_neighbours(order2nside(m_order), mpix, nest=True).ravel()
    allpix = np.unique(np.concatenate((mpix, nb[nb >= 0])))
    o, p = hats_meta.assign_pixels(healpix_to_spatial_index(m_order, allpix), partitions, order)
    return np.unique(o * (1 << 40) + p)


def _run(client, func, *iterables, shared=None):
    """``func(shared, *args)`` for each args of ``iterables``: dask tasks on ``client``, else in this process."""
    items = list(zip(*iterables))
    if client is None:
        return [func(shared, *args) for args in items]
    shared_f = client.scatter([shared], broadcast=True)[0]
    futures = [client.submit(func, shared_f, *args, pure=False) for args in items]
    return client.gather(futures)


def _scan(spec, files):
    return scan_pixels(spec["url"], files, spec["ids"], spec["m_order"])


@dataclass(frozen=True)
class _Settings:
    """What an update runs with: the table's (or the first build's) catalogue and radius."""

    state: dict  # the table's build state (empty for a first build or a rebuild)
    legacy: pd.DataFrame | None
    refcat: str
    radius: float
    order: int  # the lake's partition order
    m_order: int  # order of the margins: their pixels are at least the radius wide
    rebuild: bool


def _settings(lake: Lake, refcat: str | None, radius_arcsec: float | None, rebuild: bool) -> _Settings:
    """The stage's config: the arguments checked against the table's build state."""
    state, legacy = read_state(lake)
    if rebuild:
        state, legacy = {}, None
    for name, value in (("refcat", refcat), ("radius_arcsec", radius_arcsec)):
        if state and value is not None and value != state[name]:
            raise ObjectsError(f"LAKE/objects was built with {name}={state[name]!r}, not {value!r}; "
                               "rebuild it to change that (skylake objects build --rebuild)")
    refcat = state.get("refcat", refcat if refcat is not None else default_refcat(lake))
    radius = float(state.get("radius_arcsec", radius_arcsec or DEFAULT_RADIUS_ARCSEC))
    if not radius > 0:
        raise ObjectsError(f"the association radius must be positive, got {radius} arcsec")
    order = lake.config.partition_order
    return _Settings(state, legacy, refcat, radius, order, margin_order(order, radius), rebuild)


def build_objects(lake, refcat: str | None = None, radius_arcsec: float | None = None,
                  rebuild: bool = False, client=None) -> BuildReport:
    """Bring ``LAKE/objects`` up to date with the lake's frames and calibrations (see the module docstring).

    ``refcat``: catalogue whose matches give reference ids and calibrated magnitudes (default: the one
    the table was built with, else the one most frames are calibrated against); ``radius_arcsec``
    [arcsec]: association radius (default 3"). Changing either needs ``rebuild=True`` (a full rebuild).
    ``client``: a ``distributed.Client`` to run each touched partition as a task on (default: in this
    process, one partition at a time).

    The stage's steps: :func:`_settings` (config), :func:`_plan` and :func:`_select_partitions` (what
    changed, and the partitions it reaches), :func:`build_partition` per partition (the tasks, each
    writing its partition's file) and :func:`_commit` (the HATS metadata, held frames and log entry).
    """
    started = time.perf_counter()
    lake = _lake(lake)
    lake.check_writable()
    with lake.transaction(OBJECTS) as tx:
        cfg = _settings(lake, refcat, radius_arcsec, rebuild)
        report = BuildReport(refcat=cfg.refcat, radius_arcsec=cfg.radius)
        t0 = time.perf_counter()
        plan = _plan(lake, tx, cfg.state, cfg.legacy, cfg.refcat, rebuild)
        if cfg.state and not cfg.refcat:
            available = default_refcat(lake)
            if available:  # built before any calibration: an update would stay uncalibrated, silently
                log.warning("LAKE/objects was built without a reference catalogue, but frames are now calibrated "
                            "against %r: its light curves stay uncalibrated until it is rebuilt (skylake objects "
                            "build --rebuild)", available)
        report.frames_added = int((plan.changed["_merge"] == "left_only").sum())
        report.frames_updated = len(plan.changed) - report.frames_added
        report.frames_removed = len(plan.gone)
        report.read = dict(plan.read)
        partitions = [] if rebuild else hats_meta.read_partitions(lake.store, OBJECTS)
        if rebuild:  # every file goes; the table is made again from all frames
            for path in lake.store.walk_files(f"{OBJECTS}/dataset", ".parquet"):
                tx.remove(OBJECTS, posixpath.relpath(path, OBJECTS), pq.ParquetFile(lake.path(path)).metadata.num_rows)
        if plan.changed.empty and plan.gone.empty and not rebuild:
            report.objects = int(cfg.state.get("objects", hats_meta.read_skymap(lake.store, OBJECTS).sum()))  # not a table
            report.partitions = len(partitions)
            return report
        report.timings["plan"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        task_files = _select_partitions(lake, client, cfg, plan, partitions, report)
        keys = sorted(task_files)
        report.timings["scan"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        spec = {"url": lake.store.location, "batch_id": tx.batch_id, "refcat": cfg.refcat, "radius": cfg.radius,
                "order": cfg.order, "m_order": cfg.m_order, "partitions": [(p.order, p.pixel) for p in partitions],
                "rebuild": rebuild, "frames": plan.frames.drop(columns=["recent"]),
                "stale": plan.held.loc[plan.redone, "frame_id"].to_numpy(np.int64)}
        manifests = _run(client, build_partition, [(k >> 40, k & ((1 << 40) - 1)) for k in keys],
                         [sorted(task_files[k]) for k in keys], shared=spec)
        report.timings["partitions"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        entry = _commit(tx, lake, cfg, plan, partitions, manifests, report)
        report.commit = entry.version if entry else None
        report.timings["commit"] = time.perf_counter() - t0
    report.seconds = time.perf_counter() - started
    log.info("%s", report)
    return report


def _select_partitions(lake: Lake, client, cfg: _Settings, plan: _Plan, partitions, report: BuildReport
                       ) -> dict[int, set]:
    """The partitions an update recomputes (keys ``order << 40 | pixel``) and the sources files each
    reads: where the changed frames' detections are (their margins included), and where re-associated or
    gone frames' old points are (their held pixels; every partition when unknown)."""
    files = plan.source_files if plan.source_files is not None else lake.live_files(SOURCES)
    files = [f if f.startswith(f"{SOURCES}/") else f"{SOURCES}/{f}" for f in files]
    report.read["sources_files"] = len(files)
    by_dir: dict[str, list[str]] = {}
    for f in files:
        by_dir.setdefault(posixpath.dirname(f), []).append(f)
    dirs = sorted(by_dir)
    ids = plan.frames["frame_id"].to_numpy(np.int64)
    scanned = _run(client, _scan, [by_dir[d] for d in dirs],
                   shared={"url": lake.store.location, "ids": ids, "m_order": cfg.m_order}) if len(ids) else []
    task_files: dict[int, set] = {}
    for d, mpix in zip(dirs, scanned):
        for k in _neighbour_tasks(mpix, cfg.m_order, partitions, cfg.order).tolist():
            task_files.setdefault(k, set()).update(by_dir[d])
    stale_rows = plan.held[plan.redone]
    if len(stale_rows) and (stale_rows["pixels"].isna().any() if "pixels" in stale_rows else True):
        for p in partitions:  # where their points are is not recorded: look everywhere
            task_files.setdefault(p.order * (1 << 40) + p.pixel, set())
    elif len(stale_rows):
        import healpy as hp

        pix = np.unique(np.concatenate([np.asarray(p, np.int64) for p in stale_rows["pixels"]]))
        nb = hp.get_all_neighbours(order2nside(cfg.order), pix, nest=True).ravel()
        allpix = np.unique(np.concatenate((pix, nb[nb >= 0])))
        o, p = hats_meta.assign_pixels(healpix_to_spatial_index(cfg.order, allpix), partitions, cfg.order)
        for k in np.unique(o * (1 << 40) + p).tolist():
            task_files.setdefault(k, set())
    return task_files


def _commit(tx, lake: Lake, cfg: _Settings, plan: _Plan, partitions, manifests: list[dict], report: BuildReport):
    """Commit what the partition tasks wrote: their files, the HATS metadata, the held frames of the nights
    read, the objects changed (for refresh) and the build state. Returns the log entry."""
    refcat, radius, rebuild, legacy = cfg.refcat, cfg.radius, cfg.rebuild, cfg.legacy
    changed, held, redone = plan.changed, plan.held, plan.redone
    # every updated object's home partition ran (it lies beside the detections that moved it): else it
    # would be dropped by the task that saw it and written by none
    orphans = {tuple(h) for m in manifests for h in m["homes"]} - {tuple(m["key"]) for m in manifests}
    if orphans:
        raise LakeError(f"objects: partitions {sorted(orphans)} own updated objects but were not recomputed; "
                        "nothing was committed (rebuild with skylake objects build --rebuild)")
    expected = int(held.loc[redone, "n_det"].sum())
    dropped = sum(m["dropped"] for m in manifests)
    if dropped != expected and not rebuild:
        log.warning("objects: %d of %d old points of re-processed frames found where their frames were",
                    dropped, expected)
    skymap = (hats_meta.empty_skymap() if rebuild
              else hats_meta.read_skymap(lake.store, OBJECTS))
    final = set(partitions)
    for m in manifests:
        report.detections += m["detections"]
        report.read["objects_rows"] = report.read.get("objects_rows", 0) + m["objects_read"]
        if not m["dirty"]:
            continue
        pixel = HealpixPixel(*m["key"])
        report.partitions_rewritten += 1
        report.objects_new += m["objects_new"]
        for rel, rows in m["removed"]:
            tx.remove(OBJECTS, rel, rows)
        np.subtract.at(skymap, m["hist_old"][0], m["hist_old"][1])
        np.add.at(skymap, m["hist_new"][0], m["hist_new"][1])
        if m["path"]:
            tx.add_staged(OBJECTS, m["path"], m["rows"])
            final.add(pixel)
        else:
            final.discard(pixel)
    final = sorted(final)
    report.objects, report.partitions = int(skymap.sum()), len(final)
    out = staging_path(tx.batch_id, OBJECTS)
    names = hats_meta.write_metadata(lake.store, out, final, report.objects, skymap, table_schema(OBJECTS),
                                     catalog=OBJECTS, catalog_type="object", id_column="object_id")
    # the held frames: rows of the nights read, less the redone ones, plus the changed frames
    fp = pd.concat([m["frame_pixels"] for m in manifests] + [pd.DataFrame(
        {"frame_id": np.empty(0, np.int64), "pixel": np.empty(0, np.int64), "n": np.empty(0, np.int64)})])
    fp = fp.groupby("frame_id").agg(n_det=("n", "sum"), pixels=("pixel", lambda s: sorted(set(s.tolist()))))
    new_rows = changed[["frame_id", "calib"]].merge(plan.frames[["frame_id", "night"]], on="frame_id", how="left")
    new_rows["n_det"] = fp["n_det"].reindex(new_rows["frame_id"]).fillna(0).to_numpy(np.int64)
    new_rows["pixels"] = [list(p) if isinstance(p, list) else [] for p in
                          fp["pixels"].reindex(new_rows["frame_id"]).tolist()]
    new_held = pd.concat([held[~redone], new_rows], ignore_index=True)
    if legacy is not None or plan.nights is None:  # every night is written; nights left empty too
        nights = set(read_held(lake)["night"]) if legacy is None else set()
        nights |= set(new_held["night"].dropna())
    else:
        nights = set(plan.nights)
    for night in sorted(nights):
        rows = new_held[new_held["night"] == night].sort_values("frame_id")
        tx.stage_file(_held_rel(night), parquet_bytes(pa.Table.from_pandas(
            rows[HELD_SCHEMA.names], schema=HELD_SCHEMA, preserve_index=False)))
    version = (tx.base.version if tx.base else 0) + 1  # this commit's: the next update starts after it
    if not rebuild:  # a rebuild replaces every partition: a refresh mirrors those whole
        tx.stage_file(changes_rel(version), parquet_bytes(_changes_table(manifests)))
    lake.store.write_bytes(f"{out}/{STATE_FILE}", json.dumps(
        {"refcat": refcat, "radius_arcsec": radius, "version": version, "objects": report.objects}).encode())
    tx.metadata += [f"{OBJECTS}/{n}" for n in [*names, STATE_FILE]]
    entry = tx.commit(summary={"objects": asdict(report)})
    return entry
