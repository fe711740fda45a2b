"""``LAKE/objects/``: the objects table, built and updated incrementally through the lake's commit log.

::

    LAKE/objects/              HATS catalog, catalog_type=object, hats_npix_suffix=/
      hats.properties  properties  partition_info.csv  skymap.fits  point_map.fits  dataset/_common_metadata
      dataset/Norder=k/Dir=d/Npix=n/<batch>.parquet    one file per partition, rows sorted by _healpix_29
      skylake_objects.json     what the table was built with (refcat, association radius)
      skylake_frames.parquet   frames it holds: frame_id, calib (batch of the calibration used), n_det

An update (``build_objects``) runs under the lake's writer lock and compares the frames table and
each frame's latest calibration with ``skylake_frames.parquet``: frames that are new, recalibrated
(another zeropoint batch) or gone are the work. Their detections are associated
(:mod:`.associate`), and only the partitions holding objects they touch are read, recomputed
(positions, :mod:`.stats`, light curves) and rewritten; every other partition file stays as it is.
The rewritten partitions, the HATS metadata and the two state files are one commit of the lake's
log, so readers see the old table or the new one, never a mix.

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
from hats.pixel_math.spatial_index import compute_spatial_index
from scipy.spatial import cKDTree

from skylake.calib.model import KRON, calibrated_flux_mags
from skylake.errors import LakeError
from skylake.frame.extract import SATURATED
from skylake.lake import Lake, hats_meta
from skylake.lake.lake import parquet_bytes
from skylake.lake.log import staging_path
from skylake.lake.versions import latest_versions
from skylake.objects.associate import (associate, chord, chord_to_arcsec, mean_positions, ref_object_ids,
                                       unit_vectors, vector_to_radec)
from skylake.objects.stats import light_curve_stats
from skylake.schema import table_schema

log = logging.getLogger(__name__)

OBJECTS = hats_meta.OBJECTS
STATE_FILE = "skylake_objects.json"
FRAMES_FILE = "skylake_frames.parquet"
DEFAULT_RADIUS_ARCSEC = 3.0
#: Objects per Parquet row group: small enough that a cone search decodes little beyond its rows.
ROW_GROUP = 2000
#: Old detections of a recalibrated frame are looked for in objects within this many radii.
SEARCH_RADII = 4.0
DETECTION_COLUMNS = ["source_id", "frame_id", "ra", "dec", "_healpix_29", "mjd", "inst_mag", "inst_mag_err", "flags"]
LC_FIELDS = [f.name for f in table_schema(OBJECTS).field("lc").type]
FRAMES_SCHEMA = pa.schema([("frame_id", pa.int64()), ("calib", pa.string()), ("n_det", pa.int64())])


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
def read_state(lake: Lake) -> tuple[dict, pd.DataFrame]:
    """The build settings and the frames the objects table holds (empty when never built)."""
    if not lake.store.exists(f"{OBJECTS}/{STATE_FILE}"):
        return {}, FRAMES_SCHEMA.empty_table().to_pandas()
    state = json.loads(lake.store.read_bytes(f"{OBJECTS}/{STATE_FILE}"))
    return state, pq.read_table(lake.path(f"{OBJECTS}/{FRAMES_FILE}"), schema=FRAMES_SCHEMA).to_pandas()


def latest_calibrations(lake: Lake, refcat: str) -> pd.DataFrame:
    """Each frame's latest calibration against ``refcat``: frame_id, calib (its batch), calib_key, zp, zp_err
    (zp null unless zp_status is ok)."""
    cols = ["frame_id", "calib_key", "zp", "zp_err", "zp_status", "flux", "apcor", "batch_id", "calibrated_at"]
    zps = lake.read_night_table("zeropoints", columns=cols, filter=pc.field("refcat") == refcat).to_pandas()
    zps = zps.sort_values(["frame_id", "calibrated_at"]).drop_duplicates("frame_id", keep="last")
    zps.loc[zps["zp_status"] != "ok", "zp"] = np.nan
    zps["flux"] = zps["flux"].fillna(KRON)  # calibrations written before the flux setting: Kron
    return zps.rename(columns={"batch_id": "calib"})[["frame_id", "calib", "calib_key", "zp", "zp_err", "flux",
                                                      "apcor"]]


def default_refcat(lake: Lake) -> str:
    """The catalogue most frames are calibrated against ("" when none is)."""
    refcats = lake.read_night_table("zeropoints", columns=["refcat"]).column("refcat").to_pandas()
    return str(refcats.value_counts().idxmax()) if len(refcats) else ""


# -- reading ------------------------------------------------------------------------------------------
def read_detections(lake: Lake, frame_ids: np.ndarray, calibs: pd.DataFrame, refcat: str) -> pd.DataFrame:
    """Sources of ``frame_ids`` with their light-curve magnitudes and reference match.

    ``mag``: the match's calibrated mag in the frame's calibration (``calibs``), else ``inst_mag + zp``
    (colour 0) where the frame has an ok zeropoint, else NaN. ``ref_object``: the reference star's object
    id (0 when unmatched)."""
    ids = pa.array(np.asarray(frame_ids, dtype=np.int64))
    cal = calibs[calibs["frame_id"].isin(frame_ids)]
    apertures = sorted(set(cal["flux"]) - {KRON}) if "flux" in cal else []
    extra = [c for f in apertures for c in (f, f"{f}_err")]
    det = lake.read_sources(columns=DETECTION_COLUMNS + extra, filter=pc.field("frame_id").isin(ids)).to_pandas()
    if apertures:  # frames calibrated in an aperture: their instrumental magnitudes in it (calib.model)
        exptime = lake.read_frames(columns=["frame_id", "exptime"], filter=pc.field("frame_id").isin(ids)).to_pandas()
        det = det.merge(exptime, on="frame_id", how="left").merge(cal[["frame_id", "flux", "apcor"]], on="frame_id",
                                                                  how="left")
        for f in apertures:
            rows = (det["flux"] == f).to_numpy()
            mag, err = calibrated_flux_mags(det[rows], det.loc[rows, "exptime"].to_numpy(float), f,
                                            det.loc[rows, "apcor"].to_numpy(float))
            det.loc[rows, "inst_mag"], det.loc[rows, "inst_mag_err"] = mag, err
        det = det.drop(columns=[*extra, "exptime", "flux", "apcor"])
    det = det.merge(cal[["frame_id", "zp", "zp_err"]], on="frame_id", how="left")
    det["ref_id"] = pd.array([pd.NA] * len(det), dtype="Int64")
    det["ref_object"] = np.zeros(len(det), dtype=np.int64)
    mag = (det["inst_mag"].astype(np.float64) + det["zp"]).to_numpy(np.float64, na_value=np.nan, copy=True)
    err = np.hypot(det["inst_mag_err"].astype(np.float64), det["zp_err"].astype(np.float64)).to_numpy(
        np.float64, na_value=np.nan, copy=True)
    if refcat:
        flt = (pc.field("refcat") == refcat) & pc.field("frame_id").isin(ids)
        cols = ["source_id", "frame_id", "calib_key", "ref_id", "mag", "mag_err"]
        matches = lake.read_night_table("matches", columns=cols, filter=flt).to_pandas()
        matches = matches.merge(cal[["frame_id", "calib_key"]], on=["frame_id", "calib_key"])
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


def read_positions(lake: Lake) -> pd.DataFrame:
    """object_id, ra, dec and partition (Norder, Npix) of every object in the table."""
    cols = ["object_id", "_healpix_29", "ra", "dec", "Norder", "Npix"]
    if not hats_meta.read_partitions(lake.store, OBJECTS):
        return pd.DataFrame({c: np.empty(0, np.float64 if c in ("ra", "dec") else np.int64) for c in cols})
    return objects_dataset(lake).to_table(columns=cols).to_pandas()


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


# -- building -------------------------------------------------------------------------------------------
def _partition_files(lake: Lake, pixel: HealpixPixel) -> list[str]:
    base = f"{OBJECTS}/{hats_meta.pixel_dir(pixel.order, pixel.pixel)}"
    return lake.store.walk_files(base, ".parquet")


def _old_candidates(det: pd.DataFrame, pos: pd.DataFrame, radius_arcsec: float) -> set:
    """Partitions of objects near detections of re-processed frames: where their old points are."""
    if pos.empty or det.empty:
        return set()
    tree = cKDTree(unit_vectors(pos["ra"], pos["dec"]))
    d, k = tree.query(unit_vectors(det["ra"], det["dec"]), k=min(8, len(pos)),
                      distance_upper_bound=chord(SEARCH_RADII * radius_arcsec))
    k = np.asarray(k)[np.isfinite(d)]
    return set(zip(pos["Norder"].to_numpy()[k].tolist(), pos["Npix"].to_numpy()[k].tolist()))


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
    moved = pos[affected].set_index("object_id").reindex(uniq)
    moved = moved.assign(ra=ra, dec=dec, _healpix_29=np.asarray(compute_spatial_index(ra, dec), np.int64)
                         if len(uniq) else np.empty(0, np.int64)).reset_index()
    return pd.concat([pos[~affected], moved[pos.columns]], ignore_index=True)


def build_objects(lake, refcat: str | None = None, radius_arcsec: float | None = None,
                  rebuild: bool = False) -> BuildReport:
    """Bring ``LAKE/objects`` up to date with the lake's frames and calibrations (see the module docstring).

    ``refcat``: catalogue whose matches give reference ids and calibrated magnitudes (default: the one
    the table was built with, else the one most frames are calibrated against); ``radius_arcsec``
    [arcsec]: association radius (default 3"). Changing either needs ``rebuild=True`` (a full rebuild).
    """
    started = time.perf_counter()
    lake = _lake(lake)
    lake.check_writable()
    with lake.transaction(OBJECTS) as tx:
        state, held = read_state(lake)
        if rebuild:
            state, held = {}, held.iloc[0:0]
        for name, value in (("refcat", refcat), ("radius_arcsec", radius_arcsec)):
            if state and value is not None and value != state[name]:
                raise ObjectsError(f"LAKE/objects was built with {name}={state[name]!r}, not {value!r}; "
                                   "rebuild it to change that (skylake objects build --rebuild)")
        refcat = state.get("refcat", refcat if refcat is not None else default_refcat(lake))
        if state and not refcat:
            available = default_refcat(lake)
            if available:  # built before any calibration: an update would stay uncalibrated, silently
                log.warning("LAKE/objects was built without a reference catalogue, but frames are now calibrated "
                            "against %r: its light curves stay uncalibrated until it is rebuilt (skylake objects "
                            "build --rebuild)", available)
        radius = float(state.get("radius_arcsec", radius_arcsec or DEFAULT_RADIUS_ARCSEC))
        if not radius > 0:
            raise ObjectsError(f"the association radius must be positive, got {radius} arcsec")
        report = BuildReport(refcat=refcat, radius_arcsec=radius)
        order = lake.config.partition_order
        frames = latest_versions(lake.read_frames(columns=["frame_id", "n_sources", "content_hash", "hdu"]).to_pandas())
        frames = frames[frames["n_sources"] > 0][["frame_id", "n_sources"]]
        calibs = latest_calibrations(lake, refcat) if refcat else pd.DataFrame(
            {"frame_id": np.empty(0, np.int64), "calib": [], "calib_key": [], "zp": [], "zp_err": []})
        now = frames[["frame_id"]].merge(calibs[["frame_id", "calib"]], on="frame_id", how="left").fillna({"calib": ""})
        both = now.merge(held, on="frame_id", how="outer", suffixes=("", "_held"), indicator=True)
        changed = both[(both["_merge"] == "left_only") | ((both["_merge"] == "both") & (both["calib"] != both["calib_held"]))]
        gone = both[both["_merge"] == "right_only"]
        redone = held["frame_id"].isin(changed["frame_id"]) | held["frame_id"].isin(gone["frame_id"])
        report.frames_added = int((changed["_merge"] == "left_only").sum())
        report.frames_updated = len(changed) - report.frames_added
        report.frames_removed = len(gone)
        pos = read_positions(lake)
        partitions = hats_meta.read_partitions(lake.store, OBJECTS)
        if rebuild:  # every file goes; the table is made again from all frames
            for path in lake.store.walk_files(f"{OBJECTS}/dataset", ".parquet"):
                tx.remove(OBJECTS, posixpath.relpath(path, OBJECTS), pq.ParquetFile(lake.path(path)).metadata.num_rows)
            pos, partitions = pos.iloc[0:0], []
        if changed.empty and gone.empty:
            report.objects, report.partitions = len(pos), len(partitions)
            return report
        t0 = time.perf_counter()
        det = read_detections(lake, changed["frame_id"].to_numpy(np.int64), calibs, refcat)
        report.detections = len(det)
        report.timings["read"] = time.perf_counter() - t0

        # partitions to load: objects the new detections attach to, old points to drop, new objects' homes
        t0 = time.perf_counter()
        need = set()
        stale = set(held.loc[redone, "frame_id"].tolist())
        if not gone.empty:
            need = {(p.order, p.pixel) for p in partitions}  # their sources may be gone: look everywhere
        elif stale:
            need = _old_candidates(det[det["frame_id"].isin(stale)], pos, radius)
        loaded: dict[tuple, list[tuple[str, int]]] = {}
        old_parts: list[pd.DataFrame] = []

        def load(keys):
            for key in sorted(set(keys) - set(loaded)):
                loaded[key] = []
                for path in _partition_files(lake, HealpixPixel(*key)):
                    data = pq.read_table(lake.path(path), schema=table_schema(OBJECTS))
                    loaded[key].append((path, data.num_rows))
                    old_parts.append(_flatten(data))

        if stale:  # the re-processed frames' old points go first: the new detections then associate with
            # what remains (an object made only of such points is gone), as a build from scratch would
            load(need)
            pos = _without_points(pos, pd.concat(old_parts, ignore_index=True) if old_parts else None, stale)
        ids = associate(det["source_id"].to_numpy(), det["frame_id"].to_numpy(), det["ra"].to_numpy(),
                        det["dec"].to_numpy(), det["_healpix_29"].to_numpy(), det["ref_object"].to_numpy(),
                        pos["object_id"].to_numpy(), pos["ra"].to_numpy(), pos["dec"].to_numpy(), radius, order)
        det["object_id"] = ids
        report.timings["associate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        known = pos["object_id"].isin(ids)
        need |= set(zip(pos.loc[known, "Norder"].tolist(), pos.loc[known, "Npix"].tolist()))
        new_flat = det.assign(refcat=np.where(det["ref_object"] == ids, refcat, ""),
                              ref_id=det["ref_id"].where(det["ref_object"] == ids).astype("Int64"))
        new_flat = new_flat[LC_FIELDS + ["object_id", "refcat", "ref_id"]]
        report.objects_new = int(len(np.setdiff1d(np.unique(ids), pos["object_id"].to_numpy())))
        existing = {(p.order, p.pixel) for p in partitions}
        while True:
            load(need)
            old = pd.concat(old_parts, ignore_index=True) if old_parts else new_flat.iloc[0:0]
            dropped = int(old["frame_id"].isin(stale).sum())
            expected = int(held.loc[redone, "n_det"].sum())
            if dropped != expected and need != existing:
                log.warning("objects: %d of %d old points of re-processed frames found near them; reading every "
                            "partition", dropped, expected)
                need = set(existing)
                continue
            old = old[~old["frame_id"].isin(stale)]
            # an object's reference identity comes from any of its points (summarise): old ones carry it
            table = summarise(pd.concat([old, new_flat], ignore_index=True), refcat)
            orders, pixels = hats_meta.assign_pixels(table.column("_healpix_29").to_numpy(), partitions, order)
            homes = set(zip(orders.tolist(), pixels.tolist()))
            extra = (homes & existing) - set(loaded)
            if not extra:
                break
            need |= extra  # an object moved into (or a new one landed in) a partition not read yet
        report.timings["summarise"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        for key, files in loaded.items():
            for path, rows in files:
                tx.remove(OBJECTS, posixpath.relpath(path, OBJECTS), rows)
        keys = orders * (1 << 40) + pixels
        by_key = np.argsort(keys, kind="stable")  # keeps the _healpix_29 order within a partition
        keys_sorted = keys[by_key]
        starts = np.flatnonzero(np.r_[True, keys_sorted[1:] != keys_sorted[:-1]])
        for s, e in zip(starts, np.r_[starts[1:], len(keys_sorted)]):
            k = int(keys_sorted[s])
            pixel = HealpixPixel(k >> 40, k & ((1 << 40) - 1))
            tx.stage(OBJECTS, f"{hats_meta.pixel_dir(pixel.order, pixel.pixel)}/{tx.batch_id}.parquet",
                     table.take(by_key[s:e]), row_group_size=ROW_GROUP)
        homes_px = {HealpixPixel(o, p) for o, p in homes}
        final = sorted((set(partitions) - {HealpixPixel(*k) for k in loaded}) | homes_px)
        pos_keys = pos["Norder"].to_numpy(np.int64) * (1 << 40) + pos["Npix"].to_numpy(np.int64)
        kept = ~np.isin(pos_keys, np.array([o * (1 << 40) + p for o, p in loaded], dtype=np.int64))
        h29_all = np.concatenate((pos["_healpix_29"].to_numpy(np.int64)[kept], table.column("_healpix_29").to_numpy()))
        report.objects, report.partitions = len(h29_all), len(final)
        report.partitions_rewritten = len(set(loaded) | homes)
        out = staging_path(tx.batch_id, OBJECTS)
        names = hats_meta.write_metadata(lake.store, out, final, len(h29_all), hats_meta.skymap_histogram(h29_all),
                                         table_schema(OBJECTS), catalog=OBJECTS, catalog_type="object",
                                         id_column="object_id")
        new_held = pd.concat([held[~redone], changed[["frame_id", "calib"]].assign(
            n_det=det.groupby("frame_id").size().reindex(changed["frame_id"]).fillna(0).to_numpy(np.int64))])
        lake.store.write_bytes(f"{out}/{FRAMES_FILE}", parquet_bytes(pa.Table.from_pandas(
            new_held.sort_values("frame_id"), schema=FRAMES_SCHEMA, preserve_index=False)))
        lake.store.write_bytes(f"{out}/{STATE_FILE}", json.dumps({"refcat": refcat, "radius_arcsec": radius}).encode())
        tx.metadata += [f"{OBJECTS}/{n}" for n in [*names, FRAMES_FILE, STATE_FILE]]
        entry = tx.commit(summary={"objects": asdict(report)})
        report.commit = entry.version if entry else None
        report.timings["commit"] = time.perf_counter() - t0
    report.seconds = time.perf_counter() - started
    log.info("%s", report)
    return report

