"""A night's maps as a night product (:mod:`skylake.night_products`; ``schemas/maps.yaml``).

``skylake maps`` makes maps on request; the night maps it makes (``scope`` night) carry the lake version their
inputs were read at (``built_version``). From then on the night products' hook keeps them current: a later
commit that changes the night's frames, zeropoints, extinction, matches or sources (``ingest --redo``, a
recalibration) makes them stale, and the ingest chain's next run over the night makes them again with the
settings they were made with (profile, nside, coordinates, catalogue, clear-sky reference: their index rows), in
one commit that replaces them; a night whose frames are all gone loses them. Maps made with another profile's
settings (``--pipeline``) or by the watcher (which makes them again on its own schedule) are not kept current.
The chain does not make maps of nights that have none (``new_nights: request``); asked for a new night
(``build_night_products(..., products=["maps"])``), this makes the profile's default maps.
Frame and range maps are not night products (their ``built_version`` is null).
"""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa

from skylake.lake import Lake
from skylake.lake.nights import night_partition
from skylake.maps.build import FRAMES_OF, compute_maps
from skylake.maps.store import read_index, stage_without_maps, store_maps

__all__ = ["built", "build", "drop", "KEY"]

#: What a night map is made with: its rebuild makes exactly the maps of these that the night had.
KEY = ["profile", "nside", "frame_of", "refcat", "zp_clear", "min_stars"]

log = logging.getLogger(__name__)


def _night_maps(lake: Lake, nights) -> pd.DataFrame:
    """The stored index rows of the night maps of ``nights`` (None: every night)."""
    index = read_index(lake, nights)
    if index.empty or "built_version" not in index:
        return index.iloc[:0]
    return index[index["scope"].eq("night") & index["built_version"].notna()]


def built(lake: Lake, nights) -> pa.Table:
    """The night and ``built_version`` of each night map of ``nights``.

    Parameters
    ----------
    lake : Lake
        The lake.
    nights : iterable or None
        Only these nights (None: every night).

    Returns
    -------
    pyarrow.Table
        ``night`` (the map's night) and ``built_version``, one row per map.
    """
    index = _night_maps(lake, nights)
    return pa.table(
        {
            "night": pa.array(index["night_min"].tolist(), pa.string()),
            "built_version": pa.array(index["built_version"].astype("Int64").tolist(), pa.int64()),
        }
    )


def build(lake: Lake, nights: list, *, runner, version: int) -> tuple[set, list[str]]:
    """Make the night maps of ``nights`` again, each with the settings it was made with, one commit a night.

    A night without night maps (asked for on request) gets the profile's default ones.

    Parameters
    ----------
    lake : Lake
        The lake, writable.
    nights : list
        The nights (None: the unknown night, which has no maps).
    runner : skylake.runtime.Runner
        Where the sample and reduce tasks run.
    version : int
        The lake version the inputs are read at (stored as ``built_version``).

    Returns
    -------
    written : set
        The nights that got maps.
    lines : list of str
        One line per night made, for the report.
    """
    written, lines = set(), []
    for night in nights:
        if night is None:
            continue
        old = _night_maps(lake, [night_partition(night)])
        old = old[old["night_min"] == night]
        settings = {(None, None)} if old.empty else set(zip(old["nside"].astype(int), old["refcat"]))
        parts = []
        for nside, refcat in sorted(settings, key=str):
            frames_of = FRAMES_OF
            if not old.empty:
                frames_of = tuple(sorted(set(old.loc[(old["nside"] == nside) & (old["refcat"] == refcat), "frame_of"])))
            parts.append(
                compute_maps(
                    lake,
                    night=night,
                    nside=nside,
                    refcat=refcat,
                    frames_of=frames_of,
                    client=runner.client,
                    samples=False,
                )
            )
        made = type(parts[0])(
            *(pd.concat([getattr(p, f) for p in parts], ignore_index=True) for f in ("pixels", "index"))
        )
        if len(old) and len(made.index):  # only the maps the night had (not another profile's defaults)
            keep = made.index[KEY].apply(tuple, axis=1).isin(set(old[KEY].apply(tuple, axis=1)))
            made = type(made)(made.pixels[made.pixels["map_id"].isin(made.index.loc[keep, "map_id"])], made.index[keep])
        index, _ = store_maps(lake, made, version=version, replacing=old)
        if len(index):
            written.add(night)
        lines.append(f"maps of {night}: {len(index)} night maps made again ({len(old)} before)")
    for line in lines:
        log.info(line)
    return written, lines


def drop(tx, lake: Lake, nights: list) -> None:
    """Stage the removal of the night maps of ``nights`` (their frames are gone).

    Parameters
    ----------
    tx : skylake.lake.transaction.Transaction
        The hook's transaction.
    lake : Lake
        The lake.
    nights : list
        The nights.
    """
    old = _night_maps(lake, [night_partition(n) for n in nights])
    if len(old):
        stage_without_maps(tx, lake, old)
