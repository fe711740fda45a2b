"""``skylake masters build``: raw calibration frames -> masters in the lake (read, group, combine, store)."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from skylake.errors import FrameRejected
from skylake.lake.frames import check_night
from skylake.reduce import masters as mst
from skylake.reduce import store
from skylake.reduce.settings import reduction_settings

__all__ = ["build_masters"]

log = logging.getLogger(__name__)


def _from_lake(lake, profile, kind: str, like: mst.RawFrame, max_age_days: float) -> mst.Master | None:
    rows = store.read_table(lake, profile.name).to_pandas()
    row, _ = store.choose(
        rows,
        kind,
        mjd=like.mjd,
        instrument=like.instrument,
        binning=like.binning,
        shape=like.data.shape,
        filter=like.filter,
        max_age_days=max_age_days,
    )
    if row is None:
        return None
    return mst.Master(np.asarray(store.load_image(lake.store.location, row["path"])), row)


def build_masters(lake, paths, profile, *, kind: str | None = None, night: str | None = None) -> list[dict]:
    """Combine raw calibration frames into masters and commit them to the lake.

    Parameters
    ----------
    lake : skylake.lake.Lake
        A writable lake.
    paths : list of str
        Raw calibration frames.
    profile : skylake.profile.Profile
        The camera's profile (its ``[reduction]`` settings; defaults when it has none).
    kind : str, optional
        ``bias``, ``dark`` or ``flat`` for every file; None sorts them by their header's frame type. ``sky``:
        the files are one night's dithered science frames, reduced with the lake's masters and combined into
        a sky frame per filter (:func:`skylake.reduce.masters.build`).
    night : str, optional
        The night the masters are filed under (YYYY-MM-DD); None: the raw frames' own (their median).

    Returns
    -------
    list of dict
        The masters' rows committed (masters the lake already had are left out).

    Raises
    ------
    ValueError
        A file that cannot be read or sorted, or frames that do not belong together, named.
    NightError
        ``night`` is not a date YYYY-MM-DD.
    """
    check_night("night", night)
    settings = reduction_settings(profile)
    if kind == mst.SKY:
        return store.store(lake, _sky_frames(lake, paths, profile, settings, night))
    if kind is not None and kind not in mst.IMAGE_KINDS:
        raise ValueError(f"--kind {kind!r} must be one of {list(mst.IMAGE_KINDS) + [mst.SKY]}")
    groups: dict = defaultdict(list)
    problems = []
    for path in paths:
        try:
            frame, said_kind, said = mst.read_raw(str(path), profile, settings)
        except (FrameRejected, OSError) as exc:
            problems.append(f"{path}: {getattr(exc, 'reason', exc)}")
            continue
        k = kind or said_kind
        if k not in mst.IMAGE_KINDS:
            problems.append(
                f"{path}: {said or 'no frame type in the header'} is not a calibration frame "
                f"(give --kind, map the value in [reduction.frame_types], or build a sky frame with --kind sky)"
            )
            continue
        key = (frame.instrument, frame.binning, frame.data.shape, frame.filter if k == "flat" else "")
        groups[(k, key)].append(frame)
    if problems:
        raise ValueError("cannot build masters:\n  " + "\n  ".join(problems))
    built: list[mst.Master] = []
    for k in mst.IMAGE_KINDS:  # biases first: darks subtract them, flats both
        for (gk, _), frames in sorted(groups.items(), key=lambda item: str(item[0])):
            if gk != k:
                continue
            like = frames[len(frames) // 2]

            def nearest(wanted: str, like) -> mst.Master | None:
                mine = [m for m in built if m.row["kind"] == wanted and m.image.shape == like.data.shape]
                if mine:
                    return min(mine, key=lambda m: abs(m.row["mjd"] - like.mjd))
                return _from_lake(lake, profile, wanted, like, settings.max_age_days)

            bias = nearest("bias", like) if k in ("dark", "flat") else None
            dark = nearest("dark", like) if k == "flat" and "dark" in settings.steps else None
            made = mst.build(k, frames, profile, settings, bias=bias, dark=dark)
            own_night = night or sorted(f.night for f in frames)[len(frames) // 2]
            for m in made:
                m.row["night"] = own_night
                log.info("%s master %s from %d frames", m.row["kind"], m.master_id, len(frames))
            built.extend(made)
    return store.store(lake, built)


def _sky_frames(lake, paths, profile, settings, night: str | None) -> list[mst.Master]:
    """Sky frames (one per night and filter) from science frames reduced with the lake's masters."""
    from skylake.reduce.apply import BEFORE_SKY, apply_masters

    if mst.SKY not in settings.steps:
        raise ValueError(
            f"profile {profile.name} does not subtract a sky frame (its reduction.steps {settings.steps} have no "
            "'sky'): add it there, or the sky frame would never be used"
        )
    steps = [s for s in settings.steps if s in BEFORE_SKY]
    rows = store.read_table(lake, profile.name).to_pandas()
    groups: dict = defaultdict(list)
    used: dict = defaultdict(set)
    problems = []
    for path in paths:
        try:
            frame, said_kind, said = mst.read_raw(str(path), profile, settings)
            if said_kind in mst.IMAGE_KINDS:
                raise FrameRejected(f"{said}: a calibration frame; a sky frame is made of science frames")
            rec = {"mjd": frame.mjd, "night": frame.night, "exptime": frame.exptime}
            rec.update(instrument=frame.instrument, filter=frame.filter)
            data = np.array(frame.data, dtype=np.float32)
            where = lake.store.location
            frame.data, chosen = apply_masters(data, rec, settings, rows, frame.binning, where, steps, profile.name)
        except (FrameRejected, OSError) as exc:
            problems.append(f"{path}: {getattr(exc, 'reason', exc)}")
            continue
        key = (night or frame.night, frame.instrument, frame.binning, frame.data.shape, frame.filter)
        groups[key].append(frame)
        used[key] |= {row["master_id"] for row in chosen.values()}
    if problems:
        raise ValueError("cannot build a sky frame:\n  " + "\n  ".join(problems))
    built = []
    for key, frames in sorted(groups.items(), key=lambda item: str(item[0])):
        (m,) = mst.build(mst.SKY, frames, profile, settings)
        m.row.update(night=key[0], built_from=",".join(sorted(used[key])))
        log.info("sky frame %s of night %s, filter %s, from %d frames", m.master_id, key[0], key[4], len(frames))
        built.append(m)
    return built
