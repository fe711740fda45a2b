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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from skylake.lake import Lake
from skylake.lake.lake import NULL_PARTITION, Transaction, _now
from skylake.schema import conform, table_schema

MAPS, INDEX_SCHEMA = "maps", "maps_index"
INDEX_DIR = "_index"


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


def _rewrite_without(tx: Transaction, rels: list[str], schema_name: str, gone_ids: set[str]) -> int:
    """Rewrite each live file in ``rels`` (relative to LAKE/maps) holding rows of ``gone_ids`` without them."""
    dropped = 0
    for k, rel in enumerate(rels):
        data = pq.read_table(tx.lake.path(f"{MAPS}/{rel}"), schema=table_schema(schema_name))
        gone = np.isin(data.column("map_id").to_numpy(zero_copy_only=False), list(gone_ids))
        if not gone.any():
            continue
        dropped += int(gone.sum())
        tx.remove(MAPS, rel, data.num_rows)
        if not gone.all():
            tx.stage(MAPS, f"{posixpath.dirname(rel)}/{tx.batch_id}-rewrite{k}.parquet", data.filter(pa.array(~gone)))
    return dropped


def store_maps(lake: Lake, maps) -> tuple[pd.DataFrame, int | None]:
    """Commit a :class:`skylake.maps.build.MapSet` (replacing maps with the same ids). Returns the index
    rows as stored (with path, batch_id, created_at) and the commit version (None if nothing to store)."""
    if maps.index.empty:
        return maps.index, None
    with lake.transaction("maps") as tx:
        ids = set(maps.index["map_id"])
        live = sorted(lake.live_files(MAPS))
        index_files = [r for r in live if r.startswith(f"{INDEX_DIR}/")]
        pixel_files = [r for r in live if not r.startswith(f"{INDEX_DIR}/")]
        _rewrite_without(tx, index_files, INDEX_SCHEMA, ids)
        _rewrite_without(tx, pixel_files, MAPS, ids)
        nights = maps.pixels["night"].fillna(NULL_PARTITION)
        pixels = conform(pa.Table.from_pandas(maps.pixels.drop(columns="night"), preserve_index=False), MAPS)
        tx.stage_nights(MAPS, pixels, nights.tolist())
        index = maps.index.assign(
            path=[f"{MAPS}/night={n if isinstance(n, str) else NULL_PARTITION}/{tx.batch_id}.parquet"
                  for n in maps.index["night_min"]],
            batch_id=tx.batch_id, created_at=_now())
        tx.stage(MAPS, f"{INDEX_DIR}/{tx.batch_id}.parquet",
                 conform(pa.Table.from_pandas(index, preserve_index=False), INDEX_SCHEMA))
        entry = tx.commit(summary={"maps": len(index), "pixels": len(maps.pixels)})
    return index, entry.version if entry else None
