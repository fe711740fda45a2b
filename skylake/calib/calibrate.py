"""``skylake calibrate``: per-frame photometric zeropoints against a reference catalogue.

The zeropoints are committed to the lake one atomic batch of whole nights at a time (:data:`BATCH_SOURCES`).

For the frames selected (all, one night, nights since a date, or the batches an ingest just
committed), grouped by the profile that ingested them:

1. frames already calibrated with the same catalogue and settings (same ``calib_key``) are
   skipped, so re-running is a no-op; ``redo`` recalibrates them, replacing their earlier rows
   for that catalogue in the same commit;
2. their sources are cross-matched with the catalogue partition by partition (:mod:`.pixel_match`: a
   k-d tree per reference partition and its margin), reading only the sky they cover, and reduced to
   one-to-one pairs per group of frames, where the pairs stay (on the workers, :mod:`.pairs`);
3. :mod:`.zeropoint` cuts unusable stars and fits each frame, and :mod:`.astrometry` measures the
   position residuals: pure functions of a frame's pairs, run as a task per group of frames (those
   whose pairs lie mostly in one sources partition, :func:`~skylake.calib.pairs.home_groups`) where
   its pairs are; the driver keeps only the batch-wide steps, from the tasks' per-frame results:
   aperture-correction fallback, colour correction of median zeropoints, extinction;
4. under the writer lock each touched night's extinction is fitted to all its ok zeropoints of
   this calibration (earlier ones included), frames far below the night's clear-sky line become
   ``cloudy``, and zeropoints and extinction rows are staged and committed together with the
   matches rows, which writer tasks compute from the pairs they hold and the final zeropoints and
   stage themselves (one file per night).

A frame whose calibration fails gets a zp_status and reason (and a null zp); the rest go on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
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

from skylake.calib import model, zeropoint
from skylake.calib.crossmatch import CalibrationError, OpenRefcat, open_refcat
from skylake.calib.pairs import BatchPairs
from skylake.calib.store import EXTINCTION, MATCHES, ZEROPOINTS, night_filter, read_table, rows_of
from skylake.lake import Lake, pieces, tables
from skylake.lake import frames as lake_frames
from skylake.lake.frames import FrameSelection
from skylake.lake.log import utc_now as _now
from skylake.lake.nights import night_partition
from skylake.profile import Calibration, Profile, ProfileError
from skylake.schema import conform

__all__ = [
    "FRAME_COLUMNS",
    "BATCH_SOURCES",
    "BATCH_SOURCES_PER_WORKER",
    "sources_per_batch",
    "CalibrationReport",
    "calib_key",
    "select_frames",
    "calibrate",
    "dask_scheduler",
    "night_batches",
    "calibrate_frames",
    "plot_name",
    "calibrate_ingested",
    "since_date",
    "plot_zeropoint",
]


log = logging.getLogger(__name__)

FRAME_COLUMNS = [
    "frame_id",
    "night",
    "profile",
    "pipeline_version",
    "status",
    "reason",
    "path",
    "airmass",
    "saturation",
    "exptime",
    "nx",
    "ny",
    "mjd",
    "footprint_ra",
    "footprint_dec",
    "n_sources",
]
#: Sources per commit: whole nights whose frames hold up to this many (a night with more is a batch
#: alone); on a cluster of more than two workers, :data:`BATCH_SOURCES_PER_WORKER` times its workers
#: (:func:`sources_per_batch`). It bounds what the workers hold at once (the batch's pairs: ~0.25 GB per
#: million sources, spread over them; the driver holds a few numbers per frame) and makes a long
#: recalibration resumable (a re-run skips the batches committed).
BATCH_SOURCES = 2_000_000
#: Sources per commit per worker, on a cluster of more than two (:func:`sources_per_batch`).
BATCH_SOURCES_PER_WORKER = 1_000_000


def sources_per_batch(workers: int) -> int:
    """Sources per commit when none is asked for: :data:`BATCH_SOURCES`, or :data:`BATCH_SOURCES_PER_WORKER`
    a worker on a larger cluster.

    A batch costs the driver and the scheduler a fixed ~75 ms of CPU (the commit, the reads of the touched
    nights, a few rounds of tasks) and its wall time a few round trips, against ~3 us of the workers' CPU a
    source (``benchmarks/driver_cpu.py``, 4k frames): 2 M sources are ~6 s of work, a tenth of a second of 50
    workers', so a fixed batch would leave a large cluster waiting on its driver. A worker holds about the same
    share of a batch's pairs on any cluster.

    Parameters
    ----------
    workers : int
        The cluster's workers (1: this process).

    Returns
    -------
    int
        Sources per commit.

    Examples
    --------
    >>> [sources_per_batch(n) for n in (1, 2, 4, 50)]
    [2000000, 2000000, 4000000, 50000000]
    """
    return max(BATCH_SOURCES, BATCH_SOURCES_PER_WORKER * workers)


@dataclass
class CalibrationReport:
    """What one calibration (one profile's frames against one catalogue) did.

    Attributes
    ----------
    refcat : str
        The reference catalogue.
    profile : str
        The profile whose frames were calibrated.
    calib_key : str
        The calibration's identity (:func:`calib_key`).
    frames : int
        Frames selected.
    skipped : int
        Frames already calibrated with the same catalogue and settings.
    calibrated : int
        Zeropoint rows written.
    matches : int
        Match rows written.
    by_status : dict
        The frames calibrated, by zp_status.
    reasons : dict
        The reasons of the frames calibrated with a status other than ok, by status (frame_rejected: the
        ingest's).
    skipped_ok : int
        Of the frames already calibrated, those whose calibration is ok.
    skipped_status : dict
        The frames already calibrated, by status.
    skipped_reasons : dict
        Their reasons, by status.
    extinction : dict
        Night to ``{k_ext, k_ext_err, n_frames, status, reason}``.
    commit : int or None
        The lake version of the last commit (None: nothing was committed).
    plots : list of str
        The checkplots written.
    seconds : float
        How long the calibration took [s].
    timings : dict
        Seconds per step: setup, match, fit, commit, plots [s].
    """

    refcat: str
    profile: str
    calib_key: str = ""
    frames: int = 0  # frames selected
    skipped: int = 0  # already calibrated with the same catalogue and settings
    calibrated: int = 0  # zeropoint rows written
    matches: int = 0  # match rows written
    by_status: dict = field(default_factory=dict)
    #: the reasons of the frames calibrated with a status other than ok, by status (frame_rejected: the ingest's)
    reasons: dict = field(default_factory=dict)
    skipped_ok: int = 0  # of the frames already calibrated, those whose calibration is ok
    skipped_status: dict = field(default_factory=dict)  # the frames already calibrated, by status ...
    skipped_reasons: dict = field(default_factory=dict)  # ... and their reasons
    extinction: dict = field(default_factory=dict)  # night -> {k_ext, k_ext_err, n_frames, status}
    commit: int | None = None
    plots: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)  # seconds per step: match, fit, commit, plots

    def outcome(self) -> str:
        """One line counting the frames by outcome.

        Returns
        -------
        str
            E.g. ``0 of 10 frames calibrated ok: 10 were rejected at ingest (10 header OBJCTRA = ... is not a
            number)``; never "N of N" when none was calibrated.
        """
        from skylake.errors import count_kinds

        ok = self.by_status.get(model.ZpStatus.OK, 0) + self.skipped_ok
        statuses = Counter(self.by_status) + Counter(self.skipped_status)
        parts = []
        for status, n in sorted(statuses.items()):
            if status == model.ZpStatus.OK:
                continue
            kinds = count_kinds(self.reasons.get(status, []) + self.skipped_reasons.get(status, []))
            if status == model.ZpStatus.FRAME_REJECTED:
                parts.append(f"{n} {'was' if n == 1 else 'were'} rejected at ingest ({kinds})")
            else:
                parts.append(f"{n} {status}" + (f" ({kinds})" if kinds else ""))
        return (
            f"{ok} of {self.frames} frames of {self.profile} calibrated ok against {self.refcat}"
            + (f" ({self.skipped_ok} of them earlier)" if self.skipped_ok else "")
            + (": " + "; ".join(parts) if parts else "")
        )

    def __str__(self) -> str:
        lines = [
            f"calibrate {self.profile} frames against {self.refcat}: {self.calibrated} zeropoint rows written, "
            f"{self.skipped} frames already calibrated, {self.matches} matches"
            + (f", commit v{self.commit}" if self.commit else "")
            + f", {self.seconds:.1f} s"
        ]
        for night, ext in sorted(self.extinction.items(), key=lambda item: str(item[0])):
            k = (
                f"k = {ext['k_ext']:.3f} +- {ext['k_ext_err']:.3f} mag/airmass"
                if ext["status"] == model.ExtStatus.OK
                else f"no extinction fit ({ext['reason']})"
            )
            lines.append(f"  night {night}: {k} from {ext['n_frames']} frames")
        if self.plots:
            lines.append(f"  {len(self.plots)} checkplots in {Path(self.plots[0]).parent}")
        lines.append(self.outcome())
        return "\n".join(lines)


def calib_key(refcat: str, record: dict, cal: Calibration) -> str:
    """Identity of a calibration: the catalogue and the settings.

    The catalogue (name and import) and every [calibration] setting except the default catalogue name.

    Parameters
    ----------
    refcat : str
        The reference catalogue's name.
    record : dict
        The catalogue's import record (``imported_at``, ``rows``, ``source_files``).
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.

    Returns
    -------
    str
        16 hex digits of a SHA-256 of them.
    """
    settings = {k: v for k, v in asdict(cal).items() if k != "refcat"}
    ident = {
        "refcat": refcat,
        "imported_at": record.get("imported_at"),
        "rows": record.get("rows"),
        "files": [f.get("sha256") for f in record.get("source_files", [])],
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def select_frames(
    lake: Lake,
    night: str | None = None,
    since: str | None = None,
    batch_ids: list[str] | None = None,
    paths: list[str] | None = None,
    pipeline_version: str | None = None,
    nights=None,
) -> pd.DataFrame:
    """Frames of one night, of the nights from a date on, of ingest batches, or of files (default all).

    Frames of one ``night``, of the nights from ``since`` on, of ingest ``batch_ids``, or of the files
    ``paths`` processed as ``pipeline_version``; ``nights`` limits the partitions read.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    night : str, optional
        Only this night (YYYY-MM-DD).
    since : str, optional
        Only the nights from this one on (YYYY-MM-DD).
    batch_ids : list of str, optional
        Only the frames of these ingest batches.
    paths : list of str, optional
        Only the frames of these files.
    pipeline_version : str, optional
        Only the frames processed as this pipeline version.
    nights : iterable of str, optional
        Limits the partitions read (ingest knows its frames' nights); None for unknown.

    Returns
    -------
    pandas.DataFrame
        The frames' rows of LAKE/frames, :data:`FRAME_COLUMNS`.

    Raises
    ------
    NightError
        ``night`` or ``since`` is not a date YYYY-MM-DD.
    """
    selection = FrameSelection(
        night=night,
        since=None if night is not None else since,
        nights=nights,
        batch_ids=batch_ids,
        paths=paths,
        pipeline_version=pipeline_version,
    )
    return lake_frames.select_frames(lake, selection, FRAME_COLUMNS)


def calibrate(
    lake: Lake | str | os.PathLike,
    *,
    refcat: str | None = None,
    profile: Profile | str | None = None,
    night: str | None = None,
    since: str | None = None,
    batch_ids: list[str] | None = None,
    redo: bool = False,
    client=None,
    plots: str | os.PathLike | None = None,
    cluster=None,
    paths: list[str] | None = None,
    pipeline_version: str | None = None,
    nights=None,
) -> list[CalibrationReport]:
    """Calibrate the selected frames (see :func:`select_frames`); one report per profile calibrated.

    ``refcat`` overrides the catalogue the profiles name; ``profile`` overrides the profile frames
    were ingested with (needed for frames of a profile file that is not in pipelines/). ``client``
    is a dask distributed Client for the cross-match and the tasks on the pairs (None: this process);
    ``cluster`` instead, a callable returning a context manager that yields one, entered only when
    there is something to match (so a no-op run starts no cluster). ``plots``: a directory for one
    checkplot PNG per calibrated frame.

    Parameters
    ----------
    lake : skylake.lake.Lake or str or os.PathLike
        The lake, or where it is.
    refcat : str, optional
        Overrides the catalogue the profiles name.
    profile : skylake.profile.Profile or str, optional
        Overrides the profile frames were ingested with.
    night : str, optional
        Only this night (YYYY-MM-DD).
    since : str, optional
        Only the nights from this one on (YYYY-MM-DD).
    batch_ids : list of str, optional
        Only the frames of these ingest batches.
    redo : bool, optional
        Recalibrate frames already calibrated, replacing their rows for the catalogue.
    client : distributed.Client, optional
        Where the cross-match and the tasks on the pairs run (None: this process).
    plots : str or os.PathLike, optional
        A directory for one checkplot PNG per calibrated frame.
    cluster : callable, optional
        Returns a context manager yielding a client, entered only when there is something to match.
    paths : list of str, optional
        Only the frames of these files.
    pipeline_version : str, optional
        Only the frames processed as this pipeline version.
    nights : iterable of str, optional
        Limits the partitions read; None for unknown.

    Returns
    -------
    list of CalibrationReport
        One report per profile calibrated.

    Raises
    ------
    CalibrationError
        ``night`` or ``since`` is not a date, or a catalogue cannot calibrate the frames (no such band, a
        margin narrower than the match radius).
    skylake.errors.LakeError
        This process cannot write the lake.
    """
    lake = Lake.open(lake) if isinstance(lake, (str, os.PathLike)) else lake
    lake.check_writable()
    frames = select_frames(lake, night, since, batch_ids, paths, pipeline_version, nights)
    reports = []
    with contextlib.ExitStack() as stack:

        def scheduler():
            """Enter the cluster on first use; then give its client (the tasks are handed to it).

            Returns
            -------
            contextlib.nullcontext
                A context giving the client (None: this process).
            """
            nonlocal client, cluster
            if client is None and cluster is not None:
                client, cluster = stack.enter_context(cluster()), None
            return contextlib.nullcontext(client)

        for (name, version), group in frames.groupby(["profile", "pipeline_version"], sort=True, dropna=False):
            report = _calibrate_profile(lake, name, version, group, profile, refcat, redo, plots, scheduler)
            if report is not None:
                reports.append(report)
    return reports


def _calibrate_profile(
    lake: Lake, name: str, version: str, group: pd.DataFrame, profile, refcat: str | None, redo: bool, plots, scheduler
) -> CalibrationReport | None:
    """Calibrate the frames of one profile and pipeline version, with the profile stored at their ingest
    (or ``profile``); None (with a warning) when no profile or catalogue is known."""
    from skylake.profile_store import frames_profile

    try:
        prof = frames_profile(lake, name, version, profile)
    except ProfileError as exc:
        log.warning("frames of profile %r not calibrated: %s (pass the profile file with --pipeline)", name, exc)
        return None
    cat = refcat or prof.calibration.refcat
    if not cat:
        log.warning(
            "profile %s names no reference catalogue ([calibration] refcat); %d frames not calibrated "
            "(pass --refcat NAME)",
            prof.name,
            len(group),
        )
        return None
    return calibrate_frames(lake, group, prof, cat, redo=redo, plots=plots, scheduler=scheduler)


@contextlib.contextmanager
def dask_scheduler(client):
    """Context making ``client`` dask's scheduler and giving it; gives None and changes nothing for None.

    For :func:`~skylake.calib.crossmatch.match_frames`, which computes on dask's current scheduler. A
    calibration hands its tasks to its client instead: a client in dask's config would be pickled with it
    by a LocalCluster's nanny restarting a dead worker, which then fails to start.

    Parameters
    ----------
    client : distributed.Client or None
        The client.

    Yields
    ------
    distributed.Client or None
        The client, dask's scheduler while the context lasts.
    """
    if client is None:
        yield None
        return
    import dask

    with dask.config.set(scheduler=client):
        yield client


def night_batches(frames: pd.DataFrame, max_sources: int) -> list[pd.DataFrame]:
    """``frames`` cut into batches of whole nights holding at most ``max_sources`` sources.

    Whole nights, as a night's extinction is fitted once, from all its frames; a night with more sources is a
    batch alone.

    Parameters
    ----------
    frames : pandas.DataFrame
        Rows of LAKE/frames with ``night`` and ``n_sources`` (a frame without counts as 1).
    max_sources : int
        The sources a batch holds at most.

    Returns
    -------
    list of pandas.DataFrame
        The batches, in night order.
    """
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


def calibrate_frames(
    lake: Lake,
    frames: pd.DataFrame,
    prof: Profile,
    refcat: str,
    redo: bool = False,
    plots: str | os.PathLike | None = None,
    scheduler=lambda: contextlib.nullcontext(None),
    batch_sources: int | None = None,
) -> CalibrationReport:
    """Calibrate ``frames`` of profile ``prof`` against ``refcat`` and commit the result.

    One commit per batch of whole nights of at most ``batch_sources`` sources (see the module docstring).

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    frames : pandas.DataFrame
        Rows of LAKE/frames, :data:`FRAME_COLUMNS`.
    prof : skylake.profile.Profile
        The profile whose ``[calibration]`` settings apply.
    refcat : str
        The reference catalogue.
    redo : bool, optional
        Recalibrate frames already calibrated, replacing their rows for the catalogue.
    plots : str or os.PathLike, optional
        A directory for one checkplot PNG per calibrated frame.
    scheduler : callable, optional
        ``scheduler()`` gives a context yielding the dask client the batch's tasks run on (None: this
        process).
    batch_sources : int, optional
        The sources a batch holds at most (None: :func:`sources_per_batch` of the cluster's workers).

    Returns
    -------
    CalibrationReport
        What the calibration did.

    Raises
    ------
    ValueError
        ``batch_sources`` below 1.
    """
    from skylake.refcat.importer import read_record
    from skylake.refcat.query import refcat_path

    if batch_sources is not None and batch_sources < 1:
        raise ValueError(f"batch_sources={batch_sources!r}: a batch holds at least 1 source")
    t0 = time.monotonic()
    cal = prof.calibration
    path = refcat_path(lake, refcat)
    key = calib_key(refcat, read_record(path), cal)
    report = CalibrationReport(refcat=refcat, profile=prof.name, calib_key=key, frames=len(frames))
    earlier = read_table(
        lake, ZEROPOINTS, ["frame_id", "calib_key", "zp_status", "zp_reason"], refcat=refcat, nights=frames["night"]
    ).query("calib_key == @key")
    done = set(earlier["frame_id"])
    todo = frames if redo else frames[~frames["frame_id"].isin(done)]
    report.skipped = len(frames) - len(todo)
    if not redo:
        before = earlier[earlier["frame_id"].isin(frames["frame_id"])].drop_duplicates("frame_id", keep="last")
        report.skipped_ok = int((before["zp_status"] == model.ZpStatus.OK).sum())
        report.skipped_status = dict(Counter(before["zp_status"]))
        for status, reason in zip(before["zp_status"], before["zp_reason"].fillna("")):
            if status != model.ZpStatus.OK:
                report.skipped_reasons.setdefault(status, []).append(reason.removeprefix("frame rejected at ingest: "))
    if plots is not None and report.skipped:  # frames calibrated before: their checkplots from the lake
        again = frames[frames["frame_id"].isin(done)]
        report.plots += _plot_stored(lake, again["frame_id"], refcat, key, plots, nights=again["night"])
    report.timings = dict.fromkeys(("setup", "match", "fit", "commit", "plots"), 0.0)
    batches = []
    if len(todo):
        if batch_sources is None:  # sized to the cluster (the first batch would start it anyway)
            from skylake.runtime import Runner

            with scheduler() as client:
                workers = Runner(client).workers()
            batch_sources = sources_per_batch(workers)
            log.info("batches of up to %d sources (%d workers)", batch_sources, workers)
        batches = night_batches(todo, batch_sources)
    report.timings["setup"] = time.monotonic() - t0  # a cluster started here included
    opened = open_refcat(path) if batches else None  # read once for every batch
    for batch in batches:
        _calibrate_batch(lake, batch, prof, refcat, opened, key, redo, plots, scheduler, report)
    report.seconds = time.monotonic() - t0
    log.info("%s; timings [s]: %s", str(report).splitlines()[0], {k: round(v, 2) for k, v in report.timings.items()})
    return report


@dataclass
class _BatchOutputs:
    """What one batch's calibration made, before the commit: zeropoint rows per frame (with ``night``)
    and the pairs with their ``reject`` reasons, held by the workers (the matches rows come from them)."""

    rows: pd.DataFrame
    pairs: BatchPairs


def _calibrate_batch(
    lake: Lake,
    todo: pd.DataFrame,
    prof: Profile,
    refcat: str,
    path: OpenRefcat,
    key: str,
    redo: bool,
    plots,
    scheduler,
    report: CalibrationReport,
) -> None:
    """Calibrate one batch of whole nights (:func:`night_batches`) in the stage's steps: the pairs of its
    frames (the cross-match: the inputs, held by the workers), the fits (run), the commit and the checkplots
    of what was committed; adds to ``report``."""
    from skylake.runtime import Runner

    cal = prof.calibration
    t1 = time.monotonic()
    live = todo[todo["status"] != "rejected"]
    fluxes = () if cal.flux == model.KRON else (model.KRON, f"{model.KRON}_err", cal.flux, f"{cal.flux}_err")

    def match_and_fit() -> tuple[_BatchOutputs, float]:
        """Cross-match the batch's frames and fit them, where the pairs are.

        Returns
        -------
        outputs : _BatchOutputs
            The zeropoint rows and the pairs held by the workers.
        matched : float
            When the cross-match was done (:func:`time.monotonic`) [s].
        """
        pairs = BatchPairs.match(runner, lake.store.location, live, path, cal, fluxes, run=run)
        matched = time.monotonic()
        return _run_batch(pairs, todo, prof, refcat, key), matched

    # the rows a group takes from another's partition go through files in the run's piece directory
    with scheduler() as client, pieces.piece_run(lake.store) as run:
        runner = Runner(client)
        out, t2 = runner.again_if_died(match_and_fit, f"calibrating {len(todo)} frames of {_nights_of(todo)}")
        t3 = time.monotonic()
        committed = _commit_batch(lake, out, todo, cal, refcat, key, redo, report)
        del out  # the workers free the pairs
    t4 = time.monotonic()
    if committed is not None and plots is not None:
        report.plots += _plot_stored(lake, committed["frame_id"], refcat, key, plots, nights=committed["night"])
    for step, seconds in (("match", t2 - t1), ("fit", t3 - t2), ("commit", t4 - t3), ("plots", time.monotonic() - t4)):
        report.timings[step] += seconds


def _nights_of(frames: pd.DataFrame) -> str:
    """The nights of ``frames``, for a message."""
    nights = sorted(set(frames["night"].map(night_partition)))
    return f"night {nights[0]}" + (f" to {nights[-1]}" if len(nights) > 1 else "") if nights else "no night"


def _run_batch(pairs: BatchPairs, todo: pd.DataFrame, prof: Profile, refcat: str, key: str) -> _BatchOutputs:
    """The fits of one batch (where its pairs are) and the batch-wide steps, from the tasks' per-frame
    results: aperture-correction fallback, colour correction of median zeropoints, the zeropoint rows."""
    cal = prof.calibration
    use_color = bool(cal.color) and pairs.has_color
    apcor = pairs.aperture_corrections()
    zps, astro, colour = pairs.fit(use_color, apcor)
    if use_color:
        zps = zeropoint.colour_correct_medians(zps, colour, cal)
    zps = zps.assign(apcor=apcor.reindex(zps.index))
    return _BatchOutputs(_zeropoint_rows(todo, zps, astro.set_index("frame_id"), refcat, key, prof), pairs)


def _commit_batch(
    lake: Lake,
    out: _BatchOutputs,
    todo: pd.DataFrame,
    cal: Calibration,
    refcat: str,
    key: str,
    redo: bool,
    report: CalibrationReport,
) -> pd.DataFrame | None:
    """Under the writer lock: keep the rows of frames still in the lake and not calibrated meanwhile, refit
    the touched nights' extinction (:func:`_nights`) and commit zeropoints, matches (staged by writer tasks
    where the pairs are) and extinction in one commit. Returns the zeropoint rows committed (None when
    nothing was)."""
    with lake.transaction("calibrate") as tx:
        # under the lock: another calibration or an ingest --redo may have committed meanwhile
        # only the batch's nights: their extinction is refitted from their zeropoints
        rows = out.rows
        nights = list(rows["night"])
        earlier = read_table(
            lake,
            ZEROPOINTS,
            ["frame_id", "night", "calib_key", "zp", "airmass", "zp_status"],
            refcat=refcat,
            nights=nights,
        )
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
            # only the frames' nights; matches, the largest table, rewritten by tasks on the workers
            tables.get(ZEROPOINTS).remove_where(tx, lambda t: rows_of(t, refcat, ids), nights=set(rows["night"]))
            tables.get(MATCHES).remove_where(
                tx,
                functools.partial(rows_of, refcat=refcat, frame_ids=ids),
                set(rows["night"]),
                runner=out.pairs.runner,
            )
        rows, extinction = _nights(rows, earlier, key, refcat, cal, redo, alive)
        # the touched nights' extinction is refitted: its earlier row goes, and with --redo those of the
        # calibrations replaced (never another calibration's, e.g. another profile's just committed)
        tables.get(EXTINCTION).remove_where(
            tx, lambda t: rows_of(t, refcat, keys=keys), nights=set(extinction["night"])
        )
        now = _now()
        rows = rows.assign(batch_id=tx.batch_id, calibrated_at=now)
        tx.stage_nights(
            ZEROPOINTS,
            conform(pa.Table.from_pandas(rows.drop(columns="night"), preserve_index=False), ZEROPOINTS),
            rows["night"].tolist(),
        )
        matches = out.pairs.write(tx, rows, refcat, key)  # writer tasks, with the final zeropoints
        ext = extinction.assign(batch_id=tx.batch_id, calibrated_at=now)
        tx.stage_nights(
            EXTINCTION,
            conform(pa.Table.from_pandas(ext.drop(columns="night"), preserve_index=False), EXTINCTION),
            ext["night"].tolist(),
        )
        entry = tx.commit(summary={"calibrate": refcat, "calib_key": key, "frames": len(rows), "redo": redo})
    report.calibrated += len(rows)
    report.matches += matches
    report.commit = entry.version
    report.by_status = dict(Counter(report.by_status) + Counter(rows["zp_status"]))
    for status, reason in zip(rows["zp_status"], rows["zp_reason"].fillna("")):
        if status != model.ZpStatus.OK:
            # a frame rejected at ingest: its ingest reason (zp_reason repeats it after this prefix)
            report.reasons.setdefault(status, []).append(reason.removeprefix("frame rejected at ingest: "))
    report.extinction.update(
        {
            r.night: {
                "k_ext": r.k_ext,
                "k_ext_err": r.k_ext_err,
                "n_frames": r.n_frames,
                "status": r.ext_status,
                "reason": r.ext_reason,
            }
            for r in extinction.itertuples()
        }
    )
    return rows


def _plot_stored(lake: Lake, frame_ids, refcat: str, key: str, out, nights=None) -> list[str]:
    """Checkplots of calibration ``key`` of ``frame_ids`` (of ``nights``, when known: only those are read)
    as the lake holds it, into ``out``."""
    from skylake.calib.plots import checkplot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    zps = read_table(lake, ZEROPOINTS, refcat=refcat, frame_ids=list(frame_ids), nights=nights)
    zps = zps[zps["calib_key"] == key]
    matches = read_table(lake, MATCHES, refcat=refcat, frame_ids=list(frame_ids), nights=nights)
    matches = matches[matches["calib_key"] == key]
    by_frame = dict(tuple(matches.groupby("frame_id")))
    return [
        str(checkplot(row, by_frame[row["frame_id"]], out / plot_name(row)))
        for row in zps.to_dict("records")
        if row["frame_id"] in by_frame
    ]


def plot_name(row: dict) -> str:
    """The file name of a frame's checkplot.

    Parameters
    ----------
    row : dict
        The frame's zeropoints row, with ``frame_id`` and ``refcat``.

    Returns
    -------
    str
        ``zeropoint-FRAME-REFCAT.png``.
    """
    return f"zeropoint-{row['frame_id']}-{row['refcat']}.png"


def _zeropoint_rows(
    frames: pd.DataFrame, zps: pd.DataFrame, astro: pd.DataFrame, refcat: str, key: str, prof: Profile
) -> pd.DataFrame:
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
    return rows.assign(
        refcat=refcat, calib_key=key, profile=prof.name, band=prof.calibration.band, flux=prof.calibration.flux
    )


def _nights(
    rows: pd.DataFrame, earlier: pd.DataFrame, key: str, refcat: str, cal: Calibration, redo: bool, alive: set
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit each touched night's extinction to its ok zeropoints of this calibration (the ``earlier``
    rows of the lake's zeropoints included, but only of frames still ``alive``: an ingest --redo gives
    frames new ids), mark the new frames far below the clear-sky line cloudy, and set ``zp`` (null
    unless ok). Returns the rows and one extinction row per night."""
    earlier = earlier[
        (earlier["calib_key"] == key)
        & (earlier["zp_status"] == model.ZpStatus.OK)
        & earlier["frame_id"].isin(alive)
        & ~earlier["frame_id"].isin(rows["frame_id"] if redo else [])
    ]
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
        rows.loc[idx, "zp_reason"] = [
            f"zeropoint {z:.3f} is {m - z:.3f} mag below the night's clear-sky "
            f"{m:.3f} > max_zp_drop {cal.max_zp_drop:g} (cloud)"
            for z, m in zip(rows.loc[idx, "zp_fit"], clear)
        ]
        ext_rows.append(
            {
                "night": night or None,
                "refcat": refcat,
                "calib_key": key,
                "k_ext": ext.k_ext,
                "k_ext_err": ext.k_ext_err,
                "zp_airmass0": ext.zp_airmass0,
                "scatter": ext.scatter,
                "n_frames": ext.n_frames,
                "airmass_min": ext.airmass_min,
                "airmass_max": ext.airmass_max,
                "ext_status": ext.status,
                "ext_reason": ext.reason,
            }
        )
    rows["zp"] = np.where(rows["zp_status"] == model.ZpStatus.OK, rows["zp_fit"], np.nan)
    columns = [
        "night",
        "refcat",
        "calib_key",
        "k_ext",
        "k_ext_err",
        "zp_airmass0",
        "scatter",
        "n_frames",
        "airmass_min",
        "airmass_max",
        "ext_status",
        "ext_reason",
    ]
    return rows, pd.DataFrame(ext_rows, columns=columns)


def calibrate_ingested(
    lake: Lake, profile: Profile, paths: list[str], client=None, nights=None
) -> list[CalibrationReport]:
    """After an ingest: calibrate the frames of ``paths`` processed with ``profile`` that are not yet calibrated.

    Those just committed, and those a killed run committed and never calibrated, when the profile names a
    catalogue the lake holds (otherwise log why not). A failure is logged, never raised: the frames are
    ingested, and the next ``skylake calibrate`` picks up what is left.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    profile : skylake.profile.Profile
        The profile the frames were ingested with.
    paths : list of str
        The files ingested.
    client : distributed.Client, optional
        Where the tasks run (None: this process).
    nights : iterable of str, optional
        The frames' nights, when the ingest knows them: limits what is read to those partitions.

    Returns
    -------
    list of CalibrationReport
        One report per calibration that did something (empty when none ran or it failed).
    """
    from skylake.refcat.importer import REFCATS

    name = profile.calibration.refcat
    if not name or not paths:
        return []
    if not lake.store.exists(f"{REFCATS}/{name}/collection.properties"):
        log.warning(
            "profile %s calibrates against refcat %r, which is not in %s: frames not calibrated (import it "
            "with `skylake refcat import`, then run `skylake calibrate`)",
            profile.name,
            name,
            lake.url,
        )
        return []
    try:
        reports = calibrate(
            lake, profile=profile, paths=paths, pipeline_version=profile.pipeline_version, client=client, nights=nights
        )
    except Exception as exc:  # noqa: BLE001 - the ingest succeeded; calibration is retried by `calibrate`
        log.error(
            "calibration after ingest failed (run `skylake calibrate %s`): %s: %s", lake.url, type(exc).__name__, exc
        )
        return []
    reports = [r for r in reports if r.calibrated or r.frames > r.skipped]
    for report in reports:
        log.info("%s", report)
    return reports


def since_date(value: str) -> str:
    """``--since`` as a night name: YYYY-MM-DD, or a relative ``Nd`` (N nights ago, UTC).

    Parameters
    ----------
    value : str
        The option's value.

    Returns
    -------
    str
        The night (YYYY-MM-DD); any other value unchanged.
    """
    m = re.fullmatch(r"(\d+)d", value)
    if m:
        return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=int(m.group(1)))).isoformat()
    return value


def plot_zeropoint(
    lake: Lake | str | os.PathLike, frame_id: int, refcat: str | None = None, out: str | os.PathLike | None = None
) -> Path:
    """Write the checkplot of ``frame_id``'s latest calibration (against ``refcat`` if given) to ``out``.

    Parameters
    ----------
    lake : skylake.lake.Lake or str or os.PathLike
        The lake, or where it is.
    frame_id : int
        The frame (LAKE/frames).
    refcat : str, optional
        The calibration against this catalogue (None: the latest of any).
    out : str or os.PathLike, optional
        The PNG to write (default ``zeropoint-FRAME-REFCAT.png`` in the working directory).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    CalibrationError
        The frame has no calibration (against ``refcat``).
    """
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
