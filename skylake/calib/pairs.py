"""A calibration batch's source-reference pairs stay on the workers, from the cross-match to the matches files.

::

    count tasks (workers)  per sources partition, its sources per frame (one column read, several partitions a
                           task; a few integers to the driver)
    driver                 the frame groups: each frame's home is the partition holding most of its sources
                           (:func:`home_groups`)
    cross-match (workers)  per sources partition holding frames of the batch: each source its nearest star
                           (:func:`match_split`); the rows of the partition's main group (most of its sources)
                           are the task's result, each other group's rows go to a file (:func:`piece_path`)
    group task (worker)    one frame group's rows: the results of its home partitions and the files the other
                           partitions wrote for it: each (frame, star) its nearest source (the one-to-one step,
                           exact: a group holds whole frames); the pairs stay there; returns whether a star has
                           a colour and each frame's own aperture correction
    driver                 the batch-wide steps from those: fit colours?, the aperture-correction fallback
    fit task (worker)      where the group's pairs are: calibrated flux, each frame's zeropoint fit and
                           astrometric residuals; the pairs keep their reject reasons there; returns a row per
                           frame and the median colour of its stars
    driver                 colour correction of median zeropoints, the zeropoint rows; under the writer lock
                           the nights' extinction and cloudy frames: the final zeropoints
    writer task (worker)   the nights it owns, from the groups holding them, with the final zeropoints (a
                           small table the driver sends): matches rows, one file per night staged in the
                           commit's staging area; returns (path, rows, bytes) per file
    commit (driver)        records the files (:meth:`~skylake.lake.lake.Transaction.add_staged`)

So the driver holds a few numbers per frame, never a pair, and a batch still writes one matches file per
night. A frame group is the frames of one home partition in (night, frame_id) order, up to
:data:`GROUP_SOURCES` sources: its task runs where that partition's pairs are, starts as soon as the
partitions holding its frames are matched, and only the pairs of frames away from their home partition go
through files (in the batch's piece directory, :func:`skylake.lake.pieces.piece_run`). A match task takes
consecutive partitions keeping the same group, up to :data:`MATCH_TASK_SOURCES` sources (:func:`match_tasks`),
whatever the groups they hold: the frames of one field observed all night are several groups, each in every
partition of the field, and a split task and a slice task per group and partition (futures of one result's
parts) were most of a batch's tasks, each ~1-2 ms of the scheduler's CPU. On a cluster the held pairs
are futures (a task given them runs where they are; a worker that dies loses nothing the scheduler cannot
recompute from the cross-match and the files), in this process DataFrames: the same functions run either way
(:class:`skylake.runtime.Runner`), with the same results.
"""

from __future__ import annotations

import operator

import numpy as np
import pandas as pd
import pyarrow as pa

from skylake.calib import astrometry, crossmatch, model, pixel_match, zeropoint
from skylake.lake.nights import night_dir, night_partition, night_partitions
from skylake.lake.staging import StagingArea
from skylake.lake.tables import MATCHES
from skylake.profile import Calibration
from skylake.runtime import Runner
from skylake.schema import conform

__all__ = [
    "GROUP_SOURCES",
    "MATCH_TASK_SOURCES",
    "ZP_COLUMNS",
    "home_groups",
    "frames_split",
    "split_plan",
    "piece_path",
    "match_split",
    "load_piece",
    "match_tasks",
    "matched_groups",
    "group_pairs",
    "fit_group",
    "residuals",
    "match_rows",
    "write_matches",
    "BatchPairs",
    "writer_plans",
]


#: Sources per frame group at most (a group holds at least one frame): one task's one-to-one step and fits, its
#: memory (~300 bytes a pair). Groups follow the partitions (:func:`home_groups`), so they are few whatever the
#: frames' size and a batch's tasks stay few (~0.2 ms of the driver's CPU each).
GROUP_SOURCES = 250_000
#: Sources a match task reads at most (:func:`matched_groups`): consecutive partitions whose rows go mostly to one
#: group are matched by one task up to this many (a larger partition is a task alone). A task costs the scheduler
#: ~1-2 ms and the driver ~1 ms, a source's match ~5 us: ~1 s of work a task, and still tens of tasks a batch.
MATCH_TASK_SOURCES = 200_000
#: Columns of the final zeropoints a writer task needs per frame.
ZP_COLUMNS = ["frame_id", "night", "zp", "color_term", "zp_err"]


def home_groups(frames: pd.DataFrame, counts: list, max_sources: int = GROUP_SOURCES) -> pd.Series:
    """Each frame's group: the frames whose sources lie mostly in one partition (their home), split every
    ``max_sources`` sources.

    A frame's home is the partition holding most of its sources (ties: the first); a group's task then runs
    where its home partition's pairs are, and only the pairs a frame has elsewhere move. Within a home,
    frames are taken in (night, frame_id) order; frames with no source in any partition form a group of
    their own (their fits still give them rows).

    Parameters
    ----------
    frames : pandas.DataFrame
        The batch's rows of LAKE/frames, with ``frame_id`` and ``night``.
    counts : list of tuple of numpy.ndarray
        Per partition, its frames and their sources there
        (:func:`~skylake.calib.pixel_match.count_partition`).
    max_sources : int, optional
        The sources a group holds at most (a group holds at least one frame).

    Returns
    -------
    pandas.Series
        The group numbers (0, 1, ...), indexed by frame_id, for every frame of ``frames``.
    """
    batch = frames["frame_id"].to_numpy(np.int64)
    ids = np.concatenate([np.asarray(c[0], np.int64) for c in counts]) if counts else np.zeros(0, np.int64)
    n = np.concatenate([np.asarray(c[1], np.int64) for c in counts]) if counts else np.zeros(0, np.int64)
    part = np.repeat(np.arange(len(counts)), [len(c[0]) for c in counts]) if counts else np.zeros(0, np.int64)
    mine = np.isin(ids, batch)
    ids, n, part = ids[mine], n[mine], part[mine]
    order = np.lexsort((part, -n, ids))  # per frame: most sources first, then the first partition
    ids, n, part = ids[order], n[order], part[order]
    first = np.r_[True, ids[1:] != ids[:-1]] if ids.size else np.zeros(0, bool)
    total = np.add.reduceat(n, np.flatnonzero(first)) if ids.size else np.zeros(0, np.int64)
    home = pd.Series(part[first], index=ids[first])
    sources = pd.Series(total, index=ids[first])
    table = pd.DataFrame(
        {
            "frame_id": batch,
            "night": frames["night"].fillna("").astype(str).to_numpy(),
            "home": home.reindex(batch).fillna(-1).to_numpy(np.int64),
            "sources": sources.reindex(batch).fillna(0).to_numpy(np.int64),
        }
    ).sort_values(["home", "night", "frame_id"], kind="stable")
    groups, group, held, last = np.zeros(len(table), np.int64), -1, 0, None
    for k, (h, w) in enumerate(zip(table["home"].to_numpy(), table["sources"].to_numpy())):
        if h != last or (held and held + w > max_sources):
            group, held, last = group + 1, 0, h
        groups[k], held = group, held + w
    return pd.Series(groups, index=pd.Index(table["frame_id"].to_numpy(), name="frame_id"))


# -- worker side ------------------------------------------------------------------------------------
def frames_split(part: pd.DataFrame, groups: list[list[int]]) -> tuple[pd.DataFrame, ...]:
    """The rows of each list of frames of a partition, in one pass over it.

    One sort of the rows by their group, so a partition holding many groups' frames costs the same as one
    holding a single group's (slicing it once per group read it whole each time); none when the rows are
    already in group order (rows of frames in order, say): each group's rows are
    then a slice.

    Parameters
    ----------
    part : pandas.DataFrame
        A partition's candidate pairs.
    groups : list of list of int
        The frames of each group (disjoint); rows of frames in none are left out.

    Returns
    -------
    tuple of pandas.DataFrame
        Each group's rows, in the partition's order.
    """
    frame = part["frame_id"].to_numpy(np.int64)
    keys = np.concatenate([np.asarray(g, np.int64) for g in groups]) if groups else np.zeros(0, np.int64)
    which = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    order = np.argsort(keys, kind="stable")
    keys, which = keys[order], which[order]
    at = np.clip(np.searchsorted(keys, frame), 0, max(len(keys) - 1, 0))
    code = np.where(keys[at] == frame, which[at], len(groups)) if len(keys) else np.full(len(frame), len(groups))
    if not len(code) or (code[1:] >= code[:-1]).all():  # rows already in group order: slices
        bounds = np.searchsorted(code, np.arange(len(groups) + 1))
        return tuple(part.iloc[bounds[k] : bounds[k + 1]] for k in range(len(groups)))
    rows = np.argsort(code, kind="stable")
    bounds = np.searchsorted(code[rows], np.arange(len(groups) + 1))
    return tuple(part.iloc[rows[bounds[k] : bounds[k + 1]]] for k in range(len(groups)))


def split_plan(counts: list, group_of: pd.Series) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """What each partition's match task does with its pairs: the frames of the batch it holds, their groups, and
    the group it keeps (the one holding most of its sources).

    Parameters
    ----------
    counts : list of tuple of numpy.ndarray
        Per partition, its frames and their sources there
        (:func:`~skylake.calib.pixel_match.count_partition`).
    group_of : pandas.Series
        Each frame's group, indexed by frame_id (:func:`home_groups`); frames not in it are left out.

    Returns
    -------
    list of tuple of (numpy.ndarray, numpy.ndarray, int)
        Per partition: its frames (int64), each frame's group (int64), the kept group (-1: no frame of the
        batch, nothing to match).
    """
    out = []
    for ids, n in counts:
        ids, n = np.asarray(ids, np.int64), np.asarray(n, np.int64)
        groups = group_of.reindex(ids).to_numpy()
        mine = ~pd.isna(groups)
        ids, n, groups = ids[mine], n[mine], groups[mine].astype(np.int64)
        if not ids.size:
            out.append((ids, groups, -1))
            continue
        held = np.bincount(groups, weights=n)
        out.append((ids, groups, int(np.argmax(held))))  # ties: the first group
    return out


def piece_path(prefix: str, group: int) -> str:
    """The file of the pairs a match task hands group ``group`` (:func:`match_split`).

    Parameters
    ----------
    prefix : str
        The match task's prefix, in the batch's piece directory.
    group : int
        The frame group.

    Returns
    -------
    str
        The file's path, relative to the storage root.
    """
    return f"{prefix}-g{group}.pkl"


def _concat(pieces: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of several partitions in one DataFrame (the empty ones left out: their columns may lack a dtype)."""
    rows = [p for p in pieces if len(p)]
    if len(rows) > 1:
        return pd.concat(rows, ignore_index=True)
    return rows[0] if rows else pieces[0]


def match_split(
    parts: list[tuple],
    spec: pixel_match.MatchSpec,
    keep: int,
    root: str,
    prefix: str,
) -> pd.DataFrame:
    """A match task: the pairs of one or more partitions (:func:`~skylake.calib.pixel_match.match_partition`), split
    by frame group.

    The rows of group ``keep`` are the result (kept where it is made, for that group's task, which then runs
    there); each other group's rows are written to its file (:func:`piece_path`), even when empty, for that group's
    task to read (pickled, without fsync: read back within minutes). Re-running it (a worker died) rewrites the
    same files, each replaced in one step.

    Parameters
    ----------
    parts : list of tuple
        Per partition: its :class:`~skylake.calib.pixel_match.PartitionTask`, the batch's frames in it and each
        one's group (numpy arrays, :func:`split_plan`).
    spec : skylake.calib.pixel_match.MatchSpec
        The cross-match's settings.
    keep : int
        The group whose rows are returned.
    root : str
        The storage root of the pieces (the lake's location).
    prefix : str
        The task's prefix of the pieces' paths, relative to ``root``.

    Returns
    -------
    pandas.DataFrame
        The rows of group ``keep``'s frames.
    """
    import pickle
    import uuid

    from skylake.lake.storage import open_storage

    by_group: dict[int, list] = {}
    for task, frame_ids, groups in parts:
        part = pixel_match.match_partition(task, spec)
        names = np.unique(groups)
        by_group.setdefault(keep, [part.iloc[:0]])
        for g, piece in zip(names.tolist(), frames_split(part, [frame_ids[groups == g] for g in names])):
            by_group.setdefault(g, []).append(piece)
    store = None
    for g, pieces in sorted(by_group.items()):
        if g == keep:
            continue
        store = store or open_storage(root)
        rel = piece_path(prefix, g)
        tmp = f"{rel}.{uuid.uuid4().hex[:8]}.tmp"
        store.write_bytes(tmp, pickle.dumps(_concat(pieces), protocol=pickle.HIGHEST_PROTOCOL), fsync=False)
        store.replace(tmp, rel)
    return _concat(by_group[keep])


def load_piece(piece, root: str | None) -> pd.DataFrame:
    """A group's rows of one partition: held (a DataFrame) or a file a match task wrote (:func:`match_split`).

    Parameters
    ----------
    piece : pandas.DataFrame or str
        The rows, or the path of their file relative to ``root``.
    root : str or None
        The storage root of the files.

    Returns
    -------
    pandas.DataFrame
        The rows.
    """
    if isinstance(piece, pd.DataFrame):
        return piece
    import pickle

    from skylake.lake.storage import open_storage

    return pickle.loads(open_storage(root).read_bytes(piece))


def match_tasks(tasks: list, counts: list, plan: list, max_sources: int = MATCH_TASK_SOURCES) -> list[tuple[int, list]]:
    """The match tasks: consecutive partitions keeping the same group, up to ``max_sources`` sources a task.

    Parameters
    ----------
    tasks : list of skylake.calib.pixel_match.PartitionTask
        The partitions.
    counts : list of tuple of numpy.ndarray
        Per partition, its frames and their sources there.
    plan : list of tuple
        Per partition, :func:`split_plan`'s frames, groups and kept group.
    max_sources : int, optional
        The sources a task reads at most (a larger partition is a task alone).

    Returns
    -------
    list of tuple of (int, list)
        Per task: the group it keeps and its partitions (:func:`match_split`'s ``parts``); partitions without
        frames of the batch are left out.
    """
    out: list[tuple[int, list]] = []
    held = 0
    for task, (_, n), (ids, groups, keep) in zip(tasks, counts, plan):
        if keep < 0:
            continue
        size = int(np.asarray(n, np.int64).sum())
        if not out or out[-1][0] != keep or held + size > max_sources:
            out.append((keep, []))
            held = 0
        out[-1][1].append((task, ids, groups))
        held += size
    return out


def matched_groups(
    runner: Runner,
    tasks: list,
    spec: pixel_match.MatchSpec,
    frames: pd.DataFrame,
    root: str,
    run: str,
    start,
) -> pd.Series:
    """Run the cross-match of a batch's frames and hand each frame group its pairs, where they are.

    The count tasks go first (one column each, :data:`~skylake.calib.pixel_match.COUNT_TASK` partitions a
    task) and the frames are grouped (:func:`home_groups`); then each match task (:func:`match_split`), of
    consecutive partitions whose rows go mostly to one group, up to :data:`MATCH_TASK_SOURCES` sources
    (:func:`match_tasks`), keeps that group's rows and writes each other group's to a file in ``run``. So a
    partition costs no task of its own whatever the groups it holds (a split and a slice per group and partition
    were a task each), and only the rows of frames away from their home partition go through files. ``start`` is
    called for each group as soon as the tasks that wrote its files are done (the held results among its pieces
    are waited for by the task given them).

    Parameters
    ----------
    runner : skylake.runtime.Runner
        Where the tasks run.
    tasks : list of skylake.calib.pixel_match.PartitionTask
        The cross-match's partitions (:func:`~skylake.calib.pixel_match.plan`).
    spec : skylake.calib.pixel_match.MatchSpec or None
        The cross-match's settings (None without partitions).
    frames : pandas.DataFrame
        The batch's rows of LAKE/frames, with ``frame_id`` and ``night``.
    root : str
        The storage root of ``run`` (the lake's location).
    run : str
        A directory for the pieces, relative to ``root`` (:func:`skylake.lake.pieces.piece_run`), alive until the
        groups' pairs are no longer needed.
    start : callable
        ``start(group_of, group, pieces)``: each frame's group (:func:`home_groups`), a group and its pieces,
        each held (a result of :meth:`Runner.submit`) or a file's path (:func:`load_piece`).

    Returns
    -------
    pandas.Series
        Each frame's group, by frame_id (:func:`home_groups`).
    """
    chunks = [tasks[k : k + pixel_match.COUNT_TASK] for k in range(0, len(tasks), pixel_match.COUNT_TASK)]
    counted = [runner.submit(pixel_match.count_partitions, chunk, spec, priority=10) for chunk in chunks]
    counts = [c for chunk in runner.gather(counted) for c in chunk]  # a count task counts several partitions
    group_of = home_groups(frames, counts, GROUP_SOURCES)
    n_groups = int(group_of.max()) + 1 if len(group_of) else 1
    held: list[list] = [[] for _ in range(n_groups)]
    files: list[list[tuple[int, str]]] = [[] for _ in range(n_groups)]  # (match task, path)
    waiting: dict[int, set[int]] = {}  # match task -> the groups waiting for its files
    futures = {}
    for k, (keep, parts) in enumerate(match_tasks(tasks, counts, split_plan(counts, group_of), MATCH_TASK_SOURCES)):
        prefix = f"{run}/m{k}"
        futures[k] = runner.submit(match_split, parts, spec, keep, root, prefix)
        held[keep].append(futures[k])
        for g in sorted({int(g) for _, _, groups in parts for g in np.unique(groups)} - {keep}):
            files[g].append((k, piece_path(prefix, g)))
            waiting.setdefault(k, set()).add(g)
    missing = [{k for k, _ in files[g]} for g in range(n_groups)]

    def ready(g):
        """Hand group ``g`` its pieces: the held results it keeps, then the files written for it.

        Parameters
        ----------
        g : int
            The group.
        """
        start(group_of, g, held[g] + [rel for _, rel in files[g]])

    for g in range(n_groups):
        if not missing[g]:
            ready(g)
    for k in runner.as_completed([futures[k] for k in waiting], list(waiting)):
        for g in sorted(waiting[k]):
            missing[g].discard(k)
            if not missing[g]:
                ready(g)
    return group_of


def group_pairs(
    slices: list, frames: pd.DataFrame, cal: Calibration, extra_columns: tuple[str, ...], root: str | None = None
) -> tuple[pd.DataFrame, dict]:
    """A group task: the one-to-one pairs of its frames from their partitions' ``slices``, and a summary.

    Parameters
    ----------
    slices : list of pandas.DataFrame or str
        The group's rows of every partition holding them, or the files holding them (:func:`load_piece`).
    frames : pandas.DataFrame
        The group's rows of LAKE/frames, with ``frame_id`` and ``saturation``.
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.
    extra_columns : tuple of str
        Further source columns (other fluxes).
    root : str, optional
        The storage root of the files among ``slices``.

    Returns
    -------
    pairs : pandas.DataFrame
        The one-to-one pairs (:func:`~skylake.calib.crossmatch.one_to_one_pairs`).
    summary : dict
        ``has_color`` (a star has a colour) and ``apcor``, the frames' own aperture corrections
        (:func:`~skylake.calib.model.own_aperture_corrections`, from the pairs the star cuts keep for their
        photometry; None for the Kron flux), ``matched`` the frames with pairs.
    """
    pairs = crossmatch.one_to_one_pairs([load_piece(p, root) for p in slices], extra_columns)
    summary = {
        "has_color": bool(np.isfinite(pairs["ref_color"].to_numpy(float)).any()),
        "apcor": None,
        "matched": np.unique(pairs["frame_id"].to_numpy(np.int64)),
    }
    if cal.flux != model.KRON:
        sat = pairs["frame_id"].map(frames.set_index("frame_id")["saturation"]).to_numpy(float)
        clean = ~np.isin(zeropoint.select_stars(pairs, cal, sat), model.ASTRO_EXCLUDE)
        summary["apcor"] = model.own_aperture_corrections(pairs, cal.flux, clean)
    return pairs, summary


def fit_group(
    group: tuple[pd.DataFrame, dict], frames: pd.DataFrame, cal: Calibration, use_color: bool, apcor: pd.Series
) -> tuple[pd.DataFrame, tuple]:
    """A fit task, where the group's pairs are: calibrated magnitudes, zeropoint fits and astrometric residuals.

    Their magnitudes in the calibrated flux with each frame's ``apcor`` (:mod:`.model`; unchanged for the Kron
    flux), each frame's zeropoint fit (:func:`~skylake.calib.zeropoint.fit_frames`) and astrometric residuals.

    Parameters
    ----------
    group : tuple of (pandas.DataFrame, dict)
        What :func:`group_pairs` made.
    frames : pandas.DataFrame
        The group's rows of LAKE/frames, with ``frame_id``, ``exptime``, ``nx``, ``ny`` and ``saturation``.
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.
    use_color : bool
        Fit colour terms.
    apcor : pandas.Series
        Each frame's aperture correction [mag], by frame_id.

    Returns
    -------
    pairs : pandas.DataFrame
        The pairs with their ``reject`` reasons (kept on the worker).
    small : tuple
        The zeropoints (before the batch's colour correction, by frame_id), the residuals and the median
        colour of each frame's used stars.
    """
    pairs = group[0]
    by_id = frames.set_index("frame_id")
    if cal.flux != model.KRON:
        frame = pairs["frame_id"]
        mag, err = model.calibrated_flux_mags(
            pairs, frame.map(by_id["exptime"]).to_numpy(float), cal.flux, frame.map(apcor).to_numpy(float)
        )
        pairs = pairs.assign(inst_mag=mag, inst_mag_err=err)
    zps, rejects = zeropoint.fit_frames(pairs, frames, cal, use_color)
    pairs = pairs.assign(reject=rejects.to_numpy(dtype=object))
    astro = pd.DataFrame(
        [{"frame_id": fid, **residuals(g, by_id.loc[fid])} for fid, g in pairs.groupby("frame_id")],
        columns=["frame_id", *astrometry.COLUMNS],
    )
    used = pairs["reject"] == ""
    colour = pairs.loc[used, "ref_color"].groupby(pairs.loc[used, "frame_id"]).median()
    return pairs, (zps, astro, colour)


def residuals(pairs: pd.DataFrame, frame: pd.Series) -> dict:
    """Astrometric residuals of one frame's good pairs.

    Never the :data:`~skylake.calib.model.ASTRO_EXCLUDE` ones, whose centroids are unreliable; with fewer
    than 4 the trends are NaN.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The frame's pairs, with ``reject``.
    frame : pandas.Series
        The frame's row of LAKE/frames, with ``nx`` and ``ny``.

    Returns
    -------
    dict
        The ``astro_*`` columns (:func:`~skylake.calib.astrometry.residual_stats`).
    """
    p = pairs[~pairs["reject"].isin(model.ASTRO_EXCLUDE)]
    dra, ddec = astrometry.offsets_arcsec(p["ra"], p["dec"], p["ra_ref"], p["dec_ref"])
    return astrometry.residual_stats(dra, ddec, p["x"], p["y"], p["ra_ref"], p["dec_ref"], frame["nx"], frame["ny"])


def match_rows(pairs: pd.DataFrame, zps: pd.DataFrame, refcat: str, key: str) -> pd.DataFrame:
    """Pairs in schemas/matches.yaml layout with calibrated magnitudes from the frames' final ``zps``.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The frames' pairs, with their ``reject`` reasons.
    zps : pandas.DataFrame
        The frames' final zeropoints (:data:`ZP_COLUMNS`; ``zp`` null unless the frame is ok).
    refcat : str
        The reference catalogue.
    key : str
        The calibration's ``calib_key``.

    Returns
    -------
    pandas.DataFrame
        The matches rows.
    """
    zp = zps.set_index("frame_id")
    fid = pairs["frame_id"]
    dra, ddec = astrometry.offsets_arcsec(pairs["ra"], pairs["dec"], pairs["ra_ref"], pairs["dec_ref"])
    mag = model.calibrated_mag(
        pairs["inst_mag"].to_numpy(float),
        fid.map(zp["zp"]).to_numpy(float),
        pairs["ref_color"].to_numpy(float),
        fid.map(zp["color_term"]).to_numpy(float),
    )
    mag_err = np.hypot(pairs["inst_mag_err"].to_numpy(float), fid.map(zp["zp_err"]).to_numpy(float))
    reject = pairs["reject"].to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "source_id": pairs["source_id"].astype(np.int64),
            "frame_id": fid.astype(np.int64),
            "refcat": refcat,
            "calib_key": key,
            "ref_id": pairs["ref_id"].astype(np.int64),
            "sep_arcsec": pairs["sep_arcsec"],
            "dra_arcsec": dra,
            "ddec_arcsec": ddec,
            "x": pairs["x"],
            "y": pairs["y"],
            "ref_mag": pairs["ref_mag"],
            "ref_mag_err": pairs["ref_mag_err"],
            "ref_color": pairs["ref_color"],
            "inst_mag": pairs["inst_mag"],
            "inst_mag_err": pairs["inst_mag_err"],
            "used": reject == "",
            "reject": reject,
            "mag": np.where(np.isfinite(mag), mag, np.nan),
            "mag_err": np.where(np.isfinite(mag), mag_err, np.nan),
        }
    )


def write_matches(
    item: tuple[str, list, pd.DataFrame], area: StagingArea, refcat: str, calib_key: str
) -> list[tuple[str, int, int]]:
    """A writer task: stage the matches rows of its nights' frames in a batch's staging area.

    One file per night, rows in (frame_id, ref_id) order. Re-running it (a worker died) rewrites the same files.

    Parameters
    ----------
    item : tuple of (str, list, pandas.DataFrame)
        A label, what :func:`fit_group` made of the groups holding its nights, the final zeropoints of its
        nights' frames (:data:`ZP_COLUMNS`).
    area : skylake.lake.staging.StagingArea
        The batch's staging area.
    refcat : str
        The reference catalogue.
    calib_key : str
        The calibration's ``calib_key``.

    Returns
    -------
    list of tuple of (str, int, int)
        (path in the table, rows, bytes) per file.
    """
    from skylake.lake.parquet import parquet_bytes
    from skylake.lake.storage import open_storage

    _, groups, zps = item
    ids = zps["frame_id"].to_numpy(np.int64)
    parts = [g[np.isin(g["frame_id"].to_numpy(np.int64), ids)] for g, _ in groups]
    parts = [p for p in parts if len(p)]
    if not parts:
        return []
    rows = match_rows(pd.concat(parts, ignore_index=True), zps, refcat, calib_key)
    table = conform(pa.Table.from_pandas(rows, preserve_index=False), MATCHES)
    nights = night_partitions(rows["frame_id"].map(zps.set_index("frame_id")["night"]))
    store, out = open_storage(area.lake_root), []
    for night in sorted(set(nights)):
        data = table.take(np.flatnonzero(nights == night))
        rel = f"{night_dir(night)}/{area.batch_id}.parquet"
        out.append((rel, data.num_rows, area.write_bytes(MATCHES, rel, parquet_bytes(data), store)))
    return out


# -- driver side ------------------------------------------------------------------------------------
def _held_and_small(runner: Runner, func, *args, **kwargs) -> tuple:
    """``func``'s (large, small) result held where it was made, and its small part (to gather)."""
    both = runner.submit(func, *args, **kwargs)
    return both, runner.submit(operator.getitem, both, 1)


class BatchPairs:
    """One batch's pairs as the workers hold them: a result per frame group (see the module docstring).

    Made by :meth:`match`; :meth:`fit` replaces each group's pairs with the judged ones; :meth:`write` stages
    the matches rows. The driver only ever gathers the tasks' small results.

    Parameters
    ----------
    runner : skylake.runtime.Runner
        Where the tasks run.
    frames : pandas.DataFrame
        The batch's live rows of LAKE/frames.
    cal : skylake.profile.Calibration
        The profile's ``[calibration]`` settings.
    group_of : pandas.Series
        Each frame's group, by frame_id (:func:`home_groups`).
    """

    def __init__(self, runner: Runner, frames: pd.DataFrame, cal: Calibration, group_of: pd.Series):
        self.runner, self.frames, self.cal = runner, frames, cal
        self.group_of = group_of
        self.n_groups = int(self.group_of.max()) + 1 if len(self.group_of) else 1  # one (empty) without frames
        self._group = frames["frame_id"].map(self.group_of).to_numpy()
        self.held: list = []  # each group's (pairs, summary): futures on a cluster, tuples here
        self.summaries: list[dict] = []

    def _frames_of(self, group: int) -> pd.DataFrame:
        return self.frames[self._group == group]

    @classmethod
    def match(
        cls,
        runner: Runner,
        lake_path: str,
        frames: pd.DataFrame,
        refcat_path,
        cal: Calibration,
        extra_columns: tuple[str, ...] = (),
        run: str = "",
    ) -> BatchPairs:
        """Cross-match ``frames`` with the catalogue and reduce each frame group to one-to-one pairs.

        The frames are grouped by the partition holding most of their sources (:func:`matched_groups`); the
        workers match each sources partition, keep its home group's rows and write the others' to files in
        ``run``; each group is reduced to one-to-one pairs where its home partition's rows are.

        Parameters
        ----------
        runner : skylake.runtime.Runner
            Where the tasks run.
        lake_path : str
            The lake's location (a local path or ``s3://`` URL).
        frames : pandas.DataFrame
            Live rows of LAKE/frames.
        refcat_path : pathlib.Path or skylake.calib.crossmatch.OpenRefcat
            The reference catalogue's collection, or that collection open.
        cal : skylake.profile.Calibration
            The profile's ``[calibration]`` settings.
        extra_columns : tuple of str, optional
            Further source columns (other fluxes).
        run : str, optional
            A directory of the lake for the rows that go to another group's task (:func:`matched_groups`), alive
            while the batch's pairs are.

        Returns
        -------
        BatchPairs
            The batch's pairs, held by the workers.
        """
        tasks, spec = crossmatch.candidate_plan(
            lake_path, frames, refcat_path, cal.band, cal.color, cal.match_radius_arcsec, extra_columns, runner
        )
        made: dict[int, tuple] = {}
        codes: list = []

        def start(group_of: pd.Series, g: int, pieces: list):
            """Submit group ``g``'s task (:func:`group_pairs`), its pieces ready.

            Parameters
            ----------
            group_of : pandas.Series
                Each frame's group.
            g : int
                The group.
            pieces : list
                Its pieces (:func:`load_piece`).
            """
            if not codes:
                codes.append(frames["frame_id"].map(group_of).to_numpy())
            mine = frames[codes[0] == g]
            made[g] = _held_and_small(runner, group_pairs, pieces, mine, cal, extra_columns, root=lake_path)

        group_of = matched_groups(runner, tasks, spec, frames, lake_path, run, start)
        batch = cls(runner, frames, cal, group_of)
        batch.held = [made[g][0] for g in range(batch.n_groups)]
        batch.summaries = runner.gather([made[g][1] for g in range(batch.n_groups)])
        return batch

    @property
    def has_color(self) -> bool:
        """Whether any pair's star has a colour (a colour fit is possible).

        Returns
        -------
        bool
            True when a colour fit is possible.
        """
        return any(s["has_color"] for s in self.summaries)

    def aperture_corrections(self) -> pd.Series:
        """Each frame's ``apcor`` [mag]: its own, else the batch's fallback for a frame with pairs.

        Returns
        -------
        pandas.Series
            The corrections [mag], indexed by frame_id: the fallback is
            :func:`~skylake.calib.model.apcor_fallback`; NaN without pairs; 0 for the Kron flux.
        """
        index = pd.Index(self.frames["frame_id"], name="frame_id")
        if self.cal.flux == model.KRON:
            return pd.Series(0.0, index=index)
        own = [s["apcor"] for s in self.summaries if len(s["apcor"])]
        own = pd.concat(own) if own else pd.Series(dtype=float)
        matched = np.concatenate([s["matched"] for s in self.summaries])
        return own.reindex(matched).fillna(model.apcor_fallback(own)).reindex(index)

    def fit(self, use_color: bool, apcor: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
        """Fit every frame where its group's pairs are (:func:`fit_group`).

        Parameters
        ----------
        use_color : bool
            Fit colour terms.
        apcor : pandas.Series
            Each frame's aperture correction [mag], by frame_id (:meth:`aperture_corrections`).

        Returns
        -------
        zeropoints : pandas.DataFrame
            The zeropoints by frame_id (before the colour correction).
        astro : pandas.DataFrame
            The astrometric residuals.
        colour : pandas.Series
            Each frame's median colour of its used stars [mag].
        """
        made = [
            _held_and_small(
                self.runner, fit_group, self.held[g], frames, self.cal, use_color, apcor.reindex(frames["frame_id"])
            )
            for g, frames in ((g, self._frames_of(g)) for g in range(self.n_groups))
        ]
        self.held = [h for h, _ in made]
        out = self.runner.gather([s for _, s in made])
        zps = pd.concat([o[0] for o in out]).sort_index()
        astro = pd.concat([o[1] for o in out], ignore_index=True)
        colours = [o[2] for o in out if len(o[2])]
        return zps, astro, pd.concat(colours) if colours else pd.Series(dtype=float)

    def write(self, tx, zps: pd.DataFrame, refcat: str, key: str) -> int:
        """Writer tasks stage the matches rows of the frames of ``zps`` (their final zeropoints) in ``tx``.

        One file per night, each night written by one task; ``tx`` records the files.

        Parameters
        ----------
        tx : skylake.lake.transaction.Transaction
            The open transaction.
        zps : pandas.DataFrame
            The frames' final zeropoints.
        refcat : str
            The reference catalogue.
        key : str
            The calibration's ``calib_key``.

        Returns
        -------
        int
            The rows staged.
        """
        plans = writer_plans(zps, self.group_of, self.runner.workers())
        items = [(label, [self.held[g] for g in groups], rows) for label, groups, rows in plans]
        files = []
        for staged in self.runner.map(
            write_matches,
            items,
            window=len(items),
            priority=10,
            area=tx.area,
            refcat=refcat,
            calib_key=key,
        ):  # (not key=: submit's own)
            files += staged
        for rel, rows, nbytes in sorted(files):
            tx.add_staged(MATCHES, rel, rows, nbytes)
        return sum(rows for _, rows, _ in files)


def writer_plans(zps: pd.DataFrame, group_of: pd.Series, n_writers: int) -> list[tuple[str, list[int], pd.DataFrame]]:
    """Share the nights of the frames with pairs (``zp_n_matched``) of ``zps`` among at most ``n_writers`` tasks.

    Consecutive nights of about equal pairs each, so a task reads few groups and each night is one task's
    (one file).

    Parameters
    ----------
    zps : pandas.DataFrame
        The frames' final zeropoints, with ``zp_n_matched``.
    group_of : pandas.Series
        Each frame's group, by frame_id (:func:`home_groups`).
    n_writers : int
        The most writer tasks.

    Returns
    -------
    list of tuple of (str, list of int, pandas.DataFrame)
        Per task: a label, its groups, its frames' :data:`ZP_COLUMNS`.
    """
    zps = zps[zps["zp_n_matched"].fillna(0) > 0]
    if zps.empty:
        return []
    night = zps["night"].map(night_partition)
    per_night = zps["zp_n_matched"].groupby(night.to_numpy()).sum().sort_index()
    weight = per_night.to_numpy(float)
    n = max(1, min(n_writers, len(per_night)))
    middle = np.cumsum(weight) - weight / 2
    owner = np.minimum((middle * n / weight.sum()).astype(int), n - 1)
    plans = []
    for k in range(n):
        nights = per_night.index[owner == k]
        if not len(nights):
            continue
        rows = zps[night.isin(nights).to_numpy()]
        groups = sorted(set(group_of.reindex(rows["frame_id"]).astype(int).tolist()))
        label = f"matches of night {nights[0]}" + (f" to {nights[-1]}" if len(nights) > 1 else "")
        plans.append((label, groups, rows[ZP_COLUMNS].reset_index(drop=True)))
    return plans
