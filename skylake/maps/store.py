"""Where maps live in the lake, and writing and reading them.

::

    LAKE/maps/night=YYYY-MM-DD/<batch>.parquet   one row per pixel per map (schemas/maps.yaml)
    LAKE/maps/_index/<batch>.parquet             one row per map (schemas/maps_index.yaml)

Both are written through :meth:`skylake.lake.Lake.transaction` as one commit per ``skylake maps`` run.
A map made again (same ``map_id``) replaces the old one in that commit: files holding its pixel or
index rows are rewritten without them (the log lists the removals). The ``_index`` directory's
leading underscore keeps it out of the pixel dataset (pyarrow and DuckDB's hive readers skip it).
"""

from __future__ import annotations

import posixpath

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from skylake.lake import Lake
from skylake.lake.lake import UNKNOWN_NIGHT, _now
from skylake.lake.tables import MAPS, MAPS_INDEX, get, night_dir
from skylake.schema import conform, table_schema

INDEX_SCHEMA = MAPS_INDEX
INDEX_DIR = posixpath.relpath(get(MAPS_INDEX).location, get(MAPS).location)  # "_index"


def read_maps(lake: Lake, map_ids=None, columns: list[str] | None = None) -> pd.DataFrame:
    """Pixel rows (``night`` from the partition), optionally of some maps."""
    flt = None
    if map_ids is not None:
        flt = pads.field("map_id").isin(pa.array([str(m) for m in map_ids], pa.string()))
    return lake.read_night_table(MAPS, columns=columns, filter=flt).to_pandas()


def read_index(lake: Lake) -> pd.DataFrame:
    """One row per map in the lake (schemas/maps_index.yaml)."""
    schema = table_schema(INDEX_SCHEMA)
    rel = f"{MAPS}/{INDEX_DIR}"
    if not lake.store.exists(rel):
        return schema.empty_table().to_pandas()
    return pads.dataset(lake.path(rel), format="parquet", schema=schema).to_table().to_pandas()


def store_maps(lake: Lake, maps) -> tuple[pd.DataFrame, int | None]:
    """Commit a :class:`skylake.maps.build.MapSet` (replacing maps with the same ids). Returns the index
    rows as stored (with path, batch_id, created_at) and the commit version (None if nothing to store)."""
    if maps.index.empty:
        return maps.index, None
    with lake.transaction(MAPS) as tx:
        ids = pa.array(sorted(set(maps.index["map_id"])), pa.string())
        old = read_index(lake)
        old = old[old["map_id"].isin(ids.to_pylist())]
        if len(old):  # maps made again: their rows go, in this commit; only their nights' files are read
            def drop(data):
                return pc.is_in(data.column("map_id"), value_set=ids).to_numpy(zero_copy_only=False)

            old_dirs = {posixpath.dirname(p.removeprefix(f"{MAPS}/")) for p in old["path"]}
            live = sorted(lake.live_files(MAPS))
            tx.rewrite_without(MAPS, [r for r in live if r.startswith(f"{INDEX_DIR}/")], drop, INDEX_SCHEMA)
            tx.rewrite_without(MAPS, [r for r in live if posixpath.dirname(r) in old_dirs], drop)
        nights = maps.pixels["night"].fillna(UNKNOWN_NIGHT)
        pixels = conform(pa.Table.from_pandas(maps.pixels.drop(columns="night"), preserve_index=False), MAPS)
        tx.stage_nights(MAPS, pixels, nights.tolist())
        index = maps.index.assign(
            path=[f"{MAPS}/{night_dir(n)}/{tx.batch_id}.parquet"
                  for n in maps.index["night_min"]],
            batch_id=tx.batch_id, created_at=_now())
        tx.stage(MAPS, f"{INDEX_DIR}/{tx.batch_id}.parquet",
                 conform(pa.Table.from_pandas(index, preserve_index=False), INDEX_SCHEMA))
        entry = tx.commit(summary={"maps": len(index), "pixels": len(maps.pixels)})
    return index, entry.version if entry else None
