"""``skylake calibrate``: per-frame photometric zeropoints against a reference catalogue, committed
to the lake one atomic batch of whole nights at a time (:data:`BATCH_SOURCES`).

For the frames selected (all, one night, nights since a date, or the batches an ingest just
committed), grouped by the profile that ingested them:

1. frames already calibrated with the same catalogue and settings (same ``calib_key``) are
   skipped, so re-running is a no-op; ``redo`` recalibrates them, replacing their earlier rows
   for that catalogue in the same commit;
2. their sources are cross-matched with the catalogue through lsdb (:mod:`.crossmatch`), reading
   only the sky they cover, and reduced to one-to-one pairs;
3. :mod:`.zeropoint` cuts unusable stars and fits each frame, and :mod:`.astrometry` measures the
   position residuals: pure functions of a frame's pairs, run as tasks of :data:`FIT_FRAMES_PER_TASK`
   frames on the cluster (the driver keeps only the batch-wide steps: aperture-correction fallback,
   colour correction of median zeropoints, extinction);
4. under the writer lock each touched night's extinction is fitted to all its ok zeropoints of
   this calibration (earlier ones included), frames far below the night's clear-sky line become
   ``cloudy``, and zeropoints, matches and extinction rows are staged and committed together.

A frame whose calibration fails gets a zp_status and reason (and a null zp); the rest go on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skylake.calib import astrometry, model, zeropoint
from skylake.calib.crossmatch import CalibrationError, match_frames
from skylake.calib.store import EXTINCTION, MATCHES, ZEROPOINTS, night_filter, read_table, stage_without
from skylake.lake import Lake
from skylake.lake.lake import _now
from skylake.profile import Calibration, Profile, ProfileError
from skylake.schema import conform

log = logging.getLogger(__name__)

FRAME_COLUMNS = ["frame_id", "night", "profile", "pipeline_version", "status", "reason", "path", "airmass",
                 "saturation", "exptime", "nx", "ny", "mjd", "footprint_ra", "footprint_dec", "n_sources"]
#: Sources per commit: whole nights whose frames hold up to this many (a night with more is a batch
#: alone). It bounds what the driver holds (the batch's pairs: ~0.5 GB) and makes a long recalibration
#: resumable (a re-run skips the batches committed).
BATCH_SOURCES = 2_000_000
#: Frames per fitting task on a cluster.
FIT_FRAMES_PER_TASK = 16


@dataclass
class CalibrationReport:
    """What one calibration (one profile's frames against one catalogue) did."""

    refcat: str
    profile: str
    calib_key: str = ""
    frames: int = 0  # frames selected
    skipped: int = 0  # already calibrated with the same catalogue and settings
    calibrated: int = 0  # zeropoint rows written
    matches: int = 0  # match rows written
    by_status: dict = field(default_factory=dict)
    extinction: dict = field(default_factory=dict)  # night -> {k_ext, k_ext_err, n_frames, status}
    commit: int | None = None
    plots: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)  # seconds per step: match, fit, commit, plots

    def __str__(self) -> str:
        status = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items())) or "none"
        lines = [f"calibrate {self.profile} frames against {self.refcat}: {self.calibrated} of {self.frames} frames "
                 f"calibrated ({status}), {self.skipped} already calibrated, {self.matches} matches"
                 + (f", commit v{self.commit}" if self.commit else "") + f", {self.seconds:.1f} s"]
        for night, ext in sorted(self.extinction.items(), key=lambda item: str(item[0])):
            k = (f"k = {ext['k_ext']:.3f} +- {ext['k_ext_err']:.3f} mag/airmass"
                 if ext["status"] == model.ExtStatus.OK else f"no extinction fit ({ext['reason']})")
            lines.append(f"  night {night}: {k} from {ext['n_frames']} frames")
        if self.plots:
            lines.append(f"  {len(self.plots)} checkplots in {Path(self.plots[0]).parent}")
        return "\n".join(lines)


def calib_key(refcat: str, record: dict, cal: Calibration) -> str:
    """Identity of a calibration: the catalogue (name and import) and every [calibration] setting
    except the default catalogue name."""
    settings = {k: v for k, v in asdict(cal).items() if k != "refcat"}
    ident = {"refcat": refcat, "imported_at": record.get("imported_at"), "rows": record.get("rows"),
             "files": [f.get("sha256") for f in record.get("source_files", [])], "settings": settings}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def select_frames(lake: Lake, night: str | None = None, since: str | None = None,
                  batch_ids: list[str] | None = None, paths: list[str] | None = None,
                  pipeline_version: str | None = None, nights=None) -> pd.DataFrame:
    """Frames of one ``night``, of the nights from ``since`` on, of ingest ``batch_ids``, or of the files
    ``paths`` processed as ``pipeline_version`` (default all); ``nights`` (None for unknown) limits the
    partitions read (ingest knows its frames' nights)."""
    for name, value in (("night", night), ("since", since)):
        if value is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise CalibrationError(f"--{name} must be a date YYYY-MM-DD, got {value!r}")
    flt = None
    if night is not None:
        flt = pc.field("night") == night
    elif since is not None:
        flt = pc.field("night") >= since
    for column, values in (("batch_id", batch_ids), ("path", paths),
                           ("pipeline_version", None if pipeline_version is None else [pipeline_version])):
        if values is not None:
            b = pc.field(column).isin(pa.array(list(values), pa.string()))
            flt = b if flt is None else flt & b
    if nights is not None:
        flt = night_filter(nights) if flt is None else flt & night_filter(nights)
    return lake.read_frames(columns=FRAME_COLUMNS, filter=flt).to_pandas()


def calibrate(lake: Lake | str | os.PathLike, refcat: str | None = None, profile: Profile | str | None = None,
              night: str | None = None, since: str | None = None, batch_ids: list[str] | None = None,
              redo: bool = False, client=None, plots: str | os.PathLike | None = None,
              cluster=None, paths: list[str] | None = None,
              pipeline_version: str | None = None, nights=None) -> list[CalibrationReport]:
    """Calibrate the selected frames (see :func:`select_frames`); one report per profile calibrated.

    ``refcat`` overrides the catalogue the profiles name; ``profile`` overrides the profile frames
    were ingested with (needed for frames of a profile file that is not in pipelines/). ``client``
    is a dask distributed Client for the cross-match (None: dask's current scheduler); ``cluster``
    instead, a callable returning a context manager that yields one, entered only when there is
    something to match (so a no-op run starts no cluster). ``plots``: a directory for one
    checkplot PNG per calibrated frame.
    """
    lake = Lake.open(lake) if isinstance(lake, (str, os.PathLike)) else lake
    lake.check_writable()
    frames = select_frames(lake, night, since, batch_ids, paths, pipeline_version, nights)
    reports = []
    with contextlib.ExitStack() as stack:
        def scheduler():
            """Enter the cluster on first use; then make the client dask's scheduler."""
            nonlocal client, cluster
            if client is None and cluster is not None:
                client, cluster = stack.enter_context(cluster()), None
            return dask_scheduler(client)

        for (name, version), group in frames.groupby(["profile", "pipeline_version"], sort=True, dropna=False):
            report = _calibrate_profile(lake, name, version, group, profile, refcat, redo, plots, scheduler)
            if report is not None:
                reports.append(report)
    return reports


def _calibrate_profile(lake: Lake, name: str, version: str, group: pd.DataFrame, profile, refcat: str | None,
                       redo: bool, plots, scheduler) -> CalibrationReport | None:
    """Calibrate the frames of one profile and pipeline version, with the profile stored at their ingest
    (or ``profile``); None (with a warning) when no profile or catalogue is known."""
    from skylake.lake.profiles import frames_profile

    try:
        prof = frames_profile(lake, name, version, profile)
    except ProfileError as exc:
        log.warning("frames of profile %r not calibrated: %s (pass the profile file with --pipeline)", name, exc)
        return None
    cat = refcat or prof.calibration.refcat
    if not cat:
        log.warning("profile %s names no reference catalogue ([calibration] refcat); %d frames not calibrated "
                    "(pass --refcat NAME)", prof.name, len(group))
        return None
    return calibrate_frames(lake, group, prof, cat, redo=redo, plots=plots, scheduler=scheduler)



@contextlib.contextmanager
def dask_scheduler(client):
    """Context making ``client`` dask's scheduler (lsdb computes on it) and giving it (the fits run on
    it too); gives None and changes nothing for None."""
    if client is None:
        yield None
        return
    import dask

    with dask.config.set(scheduler=client):
        yield client


def night_batches(frames: pd.DataFrame, max_sources: int) -> list[pd.DataFrame]:
    """``frames`` cut into batches of whole nights (a night's extinction is fitted once, from all its
    frames) holding at most ``max_sources`` sources (``n_sources``; a frame without counts as 1); a
    night with more is a batch alone."""
    weight = frames["n_sources"].fillna(0).clip(lower=1) if "n_sources" in frames else pd.Series(1, frames.index)
    batches, current, n = [], [], 0
    for _, night in frames.groupby(frames["night"].fillna(""), sort=True):
        size = int(weight[night.index].sum())
        if current and n + size > max_sources:
            batches.append(pd.concat(current))
            current, n = [], 0
        current.append(night)
        n += size
    if current:
        batches.append(pd.concat(current))
    return batches


def fit_frames_task(item: tuple[pd.DataFrame, pd.DataFrame], cal: Calibration, use_color: bool):
    """One task's frames (``item`` = their pairs, their frame rows): each frame's zeropoint fit
    (:func:`zeropoint.fit_frames`) and astrometric residuals. Pure: nothing is read or written."""
    pairs, frames = item
    zps, rejects = zeropoint.fit_frames(pairs, frames, cal, use_color)
    by_id = frames.set_index("frame_id")
    judged = pairs.assign(reject=rejects.to_numpy(dtype=object))
    astro = pd.DataFrame([{"frame_id": fid, **_astro(g, by_id.loc[fid])} for fid, g in judged.groupby("frame_id")],
                         columns=["frame_id", *astrometry.COLUMNS])
    return zps, rejects, astro


def _fit(pairs: pd.DataFrame, frames: pd.DataFrame, cal: Calibration, use_color: bool, client):
    """Zeropoints (before the batch's colour correction), each pair's reject reason and astrometric
    residuals of ``frames``: :data:`FIT_FRAMES_PER_TASK` frames per task on ``client`` (None: here)."""
    from skylake.runtime import Runner

    ids = frames["frame_id"].to_numpy()
    groups = [ids[i:i + FIT_FRAMES_PER_TASK] for i in range(0, len(ids), FIT_FRAMES_PER_TASK)] or [ids]
    by_frame = pairs.groupby("frame_id").indices
    none = np.zeros(0, np.int64)
    items = [(pairs.iloc[np.concatenate([by_frame.get(f, none) for f in g] or [none])],
              frames[frames["frame_id"].isin(g)]) for g in groups]
    out = list(Runner(client).map(fit_frames_task, items, window=len(items), cal=cal, use_color=use_color))
    zps = pd.concat([o[0] for o in out]).sort_index()
    rejects = pd.concat([o[1] for o in out]).reindex(pairs.index)
    astro = pd.concat([o[2] for o in out], ignore_index=True)
    return zps, rejects, astro


def calibrate_frames(lake: Lake, frames: pd.DataFrame, prof: Profile, refcat: str, redo: bool = False,
                     plots: str | os.PathLike | None = None, scheduler=lambda: dask_scheduler(None),
                     batch_sources: int = BATCH_SOURCES) -> CalibrationReport:
    """Calibrate ``frames`` (rows of LAKE/frames, :data:`FRAME_COLUMNS`) of profile ``prof`` against
    ``refcat`` and commit the result, one commit per batch of whole nights of at most ``batch_sources``
    sources (see the module docstring). ``scheduler()`` gives the context the cross-match computes in
    and the client (or None) the fits run on."""
    from skylake.refcat.query import refcat_path
    from skylake.refcat.importer import read_record

    t0 = time.monotonic()
    cal = prof.calibration
    path = refcat_path(lake, refcat)
    key = calib_key(refcat, read_record(path), cal)
    report = CalibrationReport(refcat=refcat, profile=prof.name, calib_key=key, frames=len(frames))
    done = set(read_table(lake, ZEROPOINTS, ["frame_id", "calib_key"], refcat=refcat, nights=frames["night"])
               .query("calib_key == @key")["frame_id"])
    todo = frames if redo else frames[~frames["frame_id"].isin(done)]
    report.skipped = len(frames) - len(todo)
    if plots is not None and report.skipped:  # frames calibrated before: their checkplots from the lake
        report.plots += _plot_stored(lake, frames.loc[frames["frame_id"].isin(done), "frame_id"], refcat, key, plots)
    report.timings = dict.fromkeys(("setup", "match", "fit", "commit", "plots"), 0.0)
    report.timings["setup"] = time.monotonic() - t0
    for batch in night_batches(todo, batch_sources):
        _calibrate_batch(lake, batch, prof, refcat, path, key, redo, plots, scheduler, report)
    report.seconds = time.monotonic() - t0
    log.info("%s; timings [s]: %s", str(report).splitlines()[0], {k: round(v, 2) for k, v in report.timings.items()})
    return report


@dataclass
class _BatchOutputs:
    """What one batch's calibration made, before the commit: zeropoint rows per frame (with ``night``)
    and the pairs with their ``reject`` reasons (the matches rows come from them)."""

    rows: pd.DataFrame
    pairs: pd.DataFrame


def _calibrate_batch(lake: Lake, todo: pd.DataFrame, prof: Profile, refcat: str, path: Path, key: str, redo: bool,
                     plots, scheduler, report: CalibrationReport) -> None:
    """Calibrate one batch of whole nights (:func:`night_batches`) in the stage's steps: the pairs of its
    frames (the cross-match: the inputs), the fits (run), the commit and the checkplots of what was
    committed; adds to ``report``."""
    cal = prof.calibration
    t1 = time.monotonic()
    live = todo[todo["status"] != "rejected"]
    fluxes = () if cal.flux == model.KRON else (model.KRON, f"{model.KRON}_err", cal.flux, f"{cal.flux}_err")
    with scheduler() as client:
        # lsdb reads the partitions on the workers, each in its own working directory.
        pairs = match_frames(lake.store.location, live, path, cal.band, cal.color, cal.match_radius_arcsec, fluxes)
        t2 = time.monotonic()
        out = _run_batch(pairs, todo, live, prof, refcat, key, client)
    t3 = time.monotonic()
    committed = _commit_batch(lake, out, todo, cal, refcat, key, redo, report)
    t4 = time.monotonic()
    if committed is not None and plots is not None:
        _checkplots(*committed, plots, report)
    for step, seconds in (("match", t2 - t1), ("fit", t3 - t2), ("commit", t4 - t3),
                          ("plots", time.monotonic() - t4)):
        report.timings[step] += seconds


def _run_batch(pairs: pd.DataFrame, todo: pd.DataFrame, live: pd.DataFrame, prof: Profile, refcat: str, key: str,
               client) -> _BatchOutputs:
    """The fits of one batch (per-frame tasks on ``client`` when given) and the batch-wide steps:
    aperture corrections, colour correction of median zeropoints, the zeropoint rows."""
    cal = prof.calibration
    pairs, apcor = _calibrated_flux(pairs, live, cal)
    use_color = bool(cal.color) and bool(np.isfinite(pairs["ref_color"].to_numpy(float)).any())
    zps, rejects, astro = _fit(pairs, live, cal, use_color, client)
    zps = zeropoint.colour_correct(zps, pairs, rejects, cal, use_color)
    zps = zps.assign(apcor=apcor.reindex(zps.index))
    pairs = pairs.assign(reject=rejects.to_numpy(dtype=object))
    return _BatchOutputs(_zeropoint_rows(todo, zps, astro.set_index("frame_id"), refcat, key, prof), pairs)


def _commit_batch(lake: Lake, out: _BatchOutputs, todo: pd.DataFrame, cal: Calibration, refcat: str, key: str,
                  redo: bool, report: CalibrationReport) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Under the writer lock: keep the rows of frames still in the lake and not calibrated meanwhile, refit
    the touched nights' extinction (:func:`_nights`) and commit zeropoints, matches and extinction in one
    commit. Returns the zeropoint and matches rows committed (None when nothing was)."""
    with lake.transaction("calibrate") as tx:
        # under the lock: another calibration or an ingest --redo may have committed meanwhile
        # only the batch's nights: their extinction is refitted from their zeropoints
        rows = out.rows
        nights = list(rows["night"])
        earlier = read_table(lake, ZEROPOINTS, ["frame_id", "night", "calib_key", "zp", "airmass", "zp_status"],
                             refcat=refcat, nights=nights)
        now_done = set(earlier.loc[earlier["calib_key"] == key, "frame_id"])
        alive = set(lake.read_frames(columns=["frame_id"], filter=night_filter(nights)).column("frame_id").to_pylist())
        keep = rows["frame_id"].isin(alive) & (redo | ~rows["frame_id"].isin(now_done))
        rows = rows[keep].reset_index(drop=True)
        if rows.empty:
            report.skipped += len(todo)
            return None
        ids = set(rows["frame_id"])
        keys = {key}
        if redo:  # explicit: the frames' earlier rows for this catalogue go, listed in this commit
            keys |= set(earlier.loc[earlier["frame_id"].isin(ids), "calib_key"])  # the calibrations replaced
            for table in (ZEROPOINTS, MATCHES):  # only the frames' nights: matches is the largest table
                stage_without(tx, table, lambda t: _rows_of(t, refcat, ids), nights=set(rows["night"]))
        rows, extinction = _nights(rows, earlier, key, refcat, cal, redo, alive)
        # the touched nights' extinction is refitted: its earlier row goes, and with --redo those of the
        # calibrations replaced (never another calibration's, e.g. another profile's just committed)
        stage_without(tx, EXTINCTION, lambda t: _rows_of(t, refcat, keys=keys),
                      nights=set(extinction["night"]))
        matches = _match_rows(out.pairs[out.pairs["frame_id"].isin(ids)], rows, refcat, key)
        now = _now()
        rows = rows.assign(batch_id=tx.batch_id, calibrated_at=now)
        nights = rows.set_index("frame_id")["night"]
        tx.stage_nights(ZEROPOINTS, conform(pa.Table.from_pandas(rows.drop(columns="night"), preserve_index=False),
                                            ZEROPOINTS), rows["night"].tolist())
        if len(matches):
            tx.stage_nights(MATCHES, conform(pa.Table.from_pandas(matches, preserve_index=False), MATCHES),
                            matches["frame_id"].map(nights).tolist())
        ext = extinction.assign(batch_id=tx.batch_id, calibrated_at=now)
        tx.stage_nights(EXTINCTION, conform(pa.Table.from_pandas(ext.drop(columns="night"), preserve_index=False),
                                            EXTINCTION), ext["night"].tolist())
        entry = tx.commit(summary={"calibrate": refcat, "calib_key": key, "frames": len(rows), "redo": redo})
    report.calibrated += len(rows)
    report.matches += len(matches)
    report.commit = entry.version
    report.by_status = dict(Counter(report.by_status) + Counter(rows["zp_status"]))
    report.extinction.update({r.night: {"k_ext": r.k_ext, "k_ext_err": r.k_ext_err, "n_frames": r.n_frames,
                                        "status": r.ext_status, "reason": r.ext_reason}
                              for r in extinction.itertuples()})
    return rows, matches


def _checkplots(rows: pd.DataFrame, matches: pd.DataFrame, plots, report: CalibrationReport) -> None:
    """A checkplot per frame just committed that has matches."""
    from skylake.calib.plots import checkplot

    out = Path(plots)
    out.mkdir(parents=True, exist_ok=True)
    by_frame = dict(tuple(matches.groupby("frame_id")))
    for row in rows.to_dict("records"):
        if row["frame_id"] in by_frame:
            report.plots.append(str(checkplot(row, by_frame[row["frame_id"]], out / plot_name(row))))


def _calibrated_flux(pairs: pd.DataFrame, frames: pd.DataFrame, cal: Calibration) -> tuple[pd.DataFrame, pd.Series]:
    """Pairs with ``inst_mag``/``inst_mag_err`` of the calibrated flux (:mod:`.model`), and each frame's
    aperture correction (0 for the Kron flux). The correction comes from the pairs the star cuts keep
    for their photometry (not saturated, flagged, blended or at the edge)."""
    if cal.flux == model.KRON:
        return pairs, pd.Series(0.0, index=pd.Index(frames["frame_id"], name="frame_id"))
    by_id = frames.set_index("frame_id")
    frame = pairs["frame_id"]
    reasons = zeropoint.select_stars(pairs, cal, frame.map(by_id["saturation"]).to_numpy(float))
    clean = ~np.isin(reasons, model.ASTRO_EXCLUDE)
    apcor = model.aperture_corrections(pairs, cal.flux, clean).reindex(by_id.index)
    mag, err = model.calibrated_flux_mags(pairs, frame.map(by_id["exptime"]).to_numpy(float), cal.flux,
                                          frame.map(apcor).to_numpy(float))
    return pairs.assign(inst_mag=mag, inst_mag_err=err), apcor


def _plot_stored(lake: Lake, frame_ids, refcat: str, key: str, out) -> list[str]:
    """Checkplots of calibration ``key`` of ``frame_ids`` as the lake holds it, into ``out``."""
    from skylake.calib.plots import checkplot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    zps = read_table(lake, ZEROPOINTS, refcat=refcat, frame_ids=list(frame_ids)).query("calib_key == @key")
    matches = read_table(lake, MATCHES, refcat=refcat, frame_ids=list(frame_ids)).query("calib_key == @key")
    by_frame = dict(tuple(matches.groupby("frame_id")))
    return [str(checkplot(row, by_frame[row["frame_id"]], out / plot_name(row)))
            for row in zps.to_dict("records") if row["frame_id"] in by_frame]


def plot_name(row: dict) -> str:
    return f"zeropoint-{row['frame_id']}-{row['refcat']}.png"


def _rows_of(table: pa.Table, refcat: str, frame_ids: set | None = None, keys: set | None = None) -> np.ndarray:
    """Rows of ``table`` of ``refcat`` and (if given) ``frame_ids`` / one of the calib ``keys``."""
    mask = table.column("refcat").to_numpy(zero_copy_only=False) == refcat
    if frame_ids is not None:
        mask &= np.isin(table.column("frame_id").to_numpy(), np.fromiter(frame_ids, np.int64))
    if keys is not None:
        mask &= np.isin(table.column("calib_key").to_numpy(zero_copy_only=False), list(keys))
    return mask


def _astro(pairs: pd.DataFrame, frame: pd.Series) -> dict:
    """Astrometric residuals of one frame's good pairs (never the :data:`~skylake.calib.model.ASTRO_EXCLUDE`
    ones, whose centroids are unreliable; with fewer than 4 the trends are NaN)."""
    p = pairs[~pairs["reject"].isin(model.ASTRO_EXCLUDE)]
    dra, ddec = astrometry.offsets_arcsec(p["ra"], p["dec"], p["ra_ref"], p["dec_ref"])
    return astrometry.residual_stats(dra, ddec, p["x"], p["y"], p["ra_ref"], p["dec_ref"], frame["nx"], frame["ny"])


def _zeropoint_rows(frames: pd.DataFrame, zps: pd.DataFrame, astro: pd.DataFrame, refcat: str, key: str,
                    prof: Profile) -> pd.DataFrame:
    """One row per frame in schemas/zeropoints.yaml order (plus ``night``); rejected frames get
    ``frame_rejected``."""
    rows = frames[["frame_id", "night", "airmass", "mjd", "status", "reason"]].set_index("frame_id")
    rows = rows.join(zps, how="left").join(astro, how="left")
    rejected = rows["status"] == "rejected"
    rows.loc[rejected, "zp_status"] = model.ZpStatus.FRAME_REJECTED
    rows.loc[rejected, "zp_reason"] = "frame rejected at ingest: " + rows.loc[rejected, "reason"].fillna("")
    rows.loc[rejected, "zp_method"] = "none"
    rows["zp_n"] = rows["zp_n"].fillna(0)
    rows["zp_n_matched"] = rows["zp_n_matched"].fillna(0)
    rows["astro_n"] = rows["astro_n"].fillna(0)
    rows["color"] = rows["color"].fillna("")
    rows = rows.drop(columns=["status", "reason"]).reset_index()
    return rows.assign(refcat=refcat, calib_key=key, profile=prof.name, band=prof.calibration.band,
                       flux=prof.calibration.flux)


def _nights(rows: pd.DataFrame, earlier: pd.DataFrame, key: str, refcat: str, cal: Calibration, redo: bool,
            alive: set) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit each touched night's extinction to its ok zeropoints of this calibration (the ``earlier``
    rows of the lake's zeropoints included, but only of frames still ``alive``: an ingest --redo gives
    frames new ids), mark the new frames far below the clear-sky line cloudy, and set ``zp`` (null
    unless ok). Returns the rows and one extinction row per night."""
    earlier = earlier[(earlier["calib_key"] == key) & (earlier["zp_status"] == model.ZpStatus.OK)
                      & earlier["frame_id"].isin(alive) & ~earlier["frame_id"].isin(rows["frame_id"] if redo else [])]
    rows = rows.copy()
    ext_rows = []
    # a frame rejected at ingest has no zeropoint: it neither joins nor makes a night's extinction fit
    live = rows[rows["zp_status"] != model.ZpStatus.FRAME_REJECTED]
    for night, group in live.groupby(live["night"].fillna(""), sort=True):
        ok = group["zp_status"] == model.ZpStatus.OK
        prior = earlier[earlier["night"].fillna("") == night]
        zp = np.concatenate([prior["zp"].to_numpy(float), group.loc[ok, "zp_fit"].to_numpy(float)])
        airmass = np.concatenate([prior["airmass"].to_numpy(float), group.loc[ok, "airmass"].to_numpy(float)])
        ext = zeropoint.fit_extinction(zp, airmass, cal)
        cloudy = zeropoint.mark_cloudy(group["zp_fit"].to_numpy(float), group["airmass"].to_numpy(float), ext, cal)
        cloudy &= ok.to_numpy()
        idx = group.index[cloudy]
        clear = ext.model(group.loc[idx, "airmass"].to_numpy(float))
        rows.loc[idx, "zp_status"] = model.ZpStatus.CLOUDY
        rows.loc[idx, "zp_reason"] = [f"zeropoint {z:.3f} is {m - z:.3f} mag below the night's clear-sky "
                                      f"{m:.3f} > max_zp_drop {cal.max_zp_drop:g} (cloud)"
                                      for z, m in zip(rows.loc[idx, "zp_fit"], clear)]
        ext_rows.append({"night": night or None, "refcat": refcat, "calib_key": key, "k_ext": ext.k_ext,
                         "k_ext_err": ext.k_ext_err, "zp_airmass0": ext.zp_airmass0, "scatter": ext.scatter,
                         "n_frames": ext.n_frames, "airmass_min": ext.airmass_min, "airmass_max": ext.airmass_max,
                         "ext_status": ext.status, "ext_reason": ext.reason})
    rows["zp"] = np.where(rows["zp_status"] == model.ZpStatus.OK, rows["zp_fit"], np.nan)
    columns = ["night", "refcat", "calib_key", "k_ext", "k_ext_err", "zp_airmass0", "scatter", "n_frames",
               "airmass_min", "airmass_max", "ext_status", "ext_reason"]
    return rows, pd.DataFrame(ext_rows, columns=columns)


def _match_rows(pairs: pd.DataFrame, rows: pd.DataFrame, refcat: str, key: str) -> pd.DataFrame:
    """Pairs in schemas/matches.yaml layout with calibrated magnitudes (null unless the frame is ok)."""
    zp = rows.set_index("frame_id")
    fid = pairs["frame_id"]
    dra, ddec = astrometry.offsets_arcsec(pairs["ra"], pairs["dec"], pairs["ra_ref"], pairs["dec_ref"])
    mag = model.calibrated_mag(pairs["inst_mag"].to_numpy(float), fid.map(zp["zp"]).to_numpy(float),
                               pairs["ref_color"].to_numpy(float), fid.map(zp["color_term"]).to_numpy(float))
    mag_err = np.hypot(pairs["inst_mag_err"].to_numpy(float), fid.map(zp["zp_err"]).to_numpy(float))
    reject = pairs["reject"].to_numpy(dtype=object)
    return pd.DataFrame({
        "source_id": pairs["source_id"].astype(np.int64), "frame_id": fid.astype(np.int64), "refcat": refcat,
        "calib_key": key, "ref_id": pairs["ref_id"].astype(np.int64), "sep_arcsec": pairs["sep_arcsec"],
        "dra_arcsec": dra, "ddec_arcsec": ddec, "x": pairs["x"], "y": pairs["y"], "ref_mag": pairs["ref_mag"],
        "ref_mag_err": pairs["ref_mag_err"], "ref_color": pairs["ref_color"], "inst_mag": pairs["inst_mag"],
        "inst_mag_err": pairs["inst_mag_err"], "used": reject == "", "reject": reject,
        "mag": np.where(np.isfinite(mag), mag, np.nan), "mag_err": np.where(np.isfinite(mag), mag_err, np.nan)})


def calibrate_ingested(lake: Lake, profile: Profile, paths: list[str], client=None,
                       nights=None) -> list[CalibrationReport]:
    """After an ingest: calibrate the frames of ``paths`` processed with ``profile`` that are not yet
    calibrated (those just committed, and those a killed run committed and never calibrated) when the
    profile names a catalogue the lake holds (otherwise log why not). A failure is logged, never
    raised: the frames are ingested, and the next ``skylake calibrate`` picks up what is left. ``nights``
    (the frames' nights, when the ingest knows them) limits what is read to those partitions."""
    from skylake.refcat.importer import REFCATS

    name = profile.calibration.refcat
    if not name or not paths:
        return []
    if not Path(lake.path(f"{REFCATS}/{name}/collection.properties")).is_file():
        log.warning("profile %s calibrates against refcat %r, which is not in %s: frames not calibrated (import it "
                    "with `skylake refcat import`, then run `skylake calibrate`)", profile.name, name, lake.url)
        return []
    try:
        reports = calibrate(lake, profile=profile, paths=paths, pipeline_version=profile.pipeline_version,
                            client=client, nights=nights)
    except Exception as exc:  # noqa: BLE001 - the ingest succeeded; calibration is retried by `calibrate`
        log.error("calibration after ingest failed (run `skylake calibrate %s`): %s: %s", lake.url,
                  type(exc).__name__, exc)
        return []
    reports = [r for r in reports if r.calibrated or r.frames > r.skipped]
    for report in reports:
        log.info("%s", report)
    return reports


def since_date(value: str) -> str:
    """``--since`` as a night name: YYYY-MM-DD, or a relative ``Nd`` (N nights ago, UTC)."""
    m = re.fullmatch(r"(\d+)d", value)
    if m:
        return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=int(m.group(1)))).isoformat()
    return value


def plot_zeropoint(lake: Lake | str | os.PathLike, frame_id: int, refcat: str | None = None,
                   out: str | os.PathLike | None = None) -> Path:
    """Write the checkplot of ``frame_id``'s latest calibration (against ``refcat`` if given) to ``out``
    (default ``zeropoint-FRAME-REFCAT.png`` in the working directory)."""
    from skylake.calib.plots import checkplot

    lake = Lake.open(lake) if isinstance(lake, (str, os.PathLike)) else lake
    zps = read_table(lake, ZEROPOINTS, refcat=refcat, frame_ids=[frame_id])
    if zps.empty:
        where = f" against {refcat}" if refcat else ""
        raise CalibrationError(f"frame {frame_id} has no calibration{where} in {lake.url}; run `skylake calibrate`")
    row = model.latest_calibration(zps, model.LatestPolicy(refcat=refcat)).iloc[-1].to_dict()
    matches = read_table(lake, MATCHES, refcat=row["refcat"], frame_ids=[frame_id])
    matches = matches[matches["calib_key"] == row["calib_key"]]
    return checkplot(row, matches, Path(out) if out else Path(plot_name(row)))
