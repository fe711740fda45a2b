"""The frame index: "is this file already in the lake, and as which frame?" in O(batch), not O(lake).

Ingest asks it of every file before processing and again of every batch inside its commit. Reading the
whole frames table for that made each batch cost time growing with the archive (3 s per frame on 3e5
frame rows). The index holds the frames table's identity columns (``schemas/frame_index.yaml``) in
:data:`N_BUCKETS` buckets under ``LAKE/_skylake/frame_index/bucket=XYZ/``, chosen by a hash of the
frame's content hash (of its ``frame_key`` when it has none: a file rejected by its path). A look-up
reads the buckets of the files asked about, one small file each.

The index is a table of the lake like any other: :class:`~skylake.lake.lake.Transaction` keeps it, so
every writer of frame rows keeps it in step in the same commit (``stage_nights`` adds rows,
``Table.remove_where`` on the frames table drops them), each touched bucket rewritten whole (its directory
swapped atomically at publish). A lake made before the index existed has no :data:`READY` marker; its
index is built once from the frames table by :func:`ensure` (one commit), and until then look-ups read
the frames table as before.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skylake.lake.storage import read_listed
from skylake.lake.tables import FRAME_INDEX, get
from skylake.schema import table_schema

__all__ = [
    "INDEX",
    "READY",
    "BUCKET_CHARS",
    "N_BUCKETS",
    "COLUMNS",
    "bucket_of",
    "bucket_dir",
    "ready",
    "rows_for",
    "buckets_of",
    "read_buckets",
    "lookup",
    "lookup_results",
    "MIN_BUCKETS_PER_TASK",
    "stage_changes",
    "rewrite_buckets",
    "ensure",
]


log = logging.getLogger(__name__)

#: The index's table name (lake-relative directory).
INDEX = get(FRAME_INDEX).location
#: Present (published with a commit) once the index holds every frame row.
READY = f"{INDEX}/READY"
#: Hex characters of the bucket name: 16**3 = 4096 buckets, ~250 frames each at 10^6 frames.
BUCKET_CHARS = 3
N_BUCKETS = 16**BUCKET_CHARS
COLUMNS = table_schema(FRAME_INDEX).names


def bucket_of(content_hash: str | None, frame_key: str) -> str:
    """The bucket of a frame.

    Parameters
    ----------
    content_hash : str or None
        The frame's content hash (None or '': it has none).
    frame_key : str
        Its frame_key, used when it has no content hash.

    Returns
    -------
    str
        The bucket's name: :data:`BUCKET_CHARS` hex characters.
    """
    key = content_hash or frame_key
    return hashlib.sha1(key.encode()).hexdigest()[:BUCKET_CHARS]


def bucket_dir(bucket: str) -> str:
    """The bucket's directory.

    Parameters
    ----------
    bucket : str
        The bucket's name.

    Returns
    -------
    str
        ``bucket=<name>``, relative to :data:`INDEX`.
    """
    return f"bucket={bucket}"


def ready(lake) -> bool:
    """Whether a lake's index holds every frame row (its :data:`READY` marker is published).

    Parameters
    ----------
    lake : Lake
        The lake.

    Returns
    -------
    bool
        True once the index is ready; until then look-ups read the frames table.
    """
    return lake.store.exists(READY)


def rows_for(frames: pa.Table, nights: list[str]) -> pa.Table:
    """Index rows of frame rows.

    Parameters
    ----------
    frames : pyarrow.Table
        The frame rows (without ``night``).
    nights : list of str
        Each row's night partition name.

    Returns
    -------
    pyarrow.Table
        The index rows, in the index's schema.
    """
    cols = {name: frames.column(name) for name in COLUMNS if name != "night"}
    cols["night"] = pa.array(nights, type=pa.string())
    return pa.table(cols).select(COLUMNS).cast(table_schema(FRAME_INDEX))


def buckets_of(rows: pa.Table) -> np.ndarray:
    """The bucket of each index row (:func:`bucket_of`).

    Parameters
    ----------
    rows : pyarrow.Table
        Rows with ``content_hash`` and ``frame_key``.

    Returns
    -------
    numpy.ndarray
        The buckets' names (object array of str), one per row.
    """
    hashes, keys = rows.column("content_hash").to_pylist(), rows.column("frame_key").to_pylist()
    return np.array([bucket_of(h, k) for h, k in zip(hashes, keys)], dtype=object)


def _bucket_files(store, bucket: str) -> list[tuple[str, pa.Table]]:
    """The published files of ``bucket`` (one, after any commit), relative to :data:`INDEX`, and their rows.

    Read without the lock (an ingest's lookups): listed again when another writer's commit replaced a file
    just listed (:func:`~skylake.lake.storage.read_listed`).
    """
    rel = bucket_dir(bucket)

    def read() -> list[tuple[str, pa.Table]]:
        """List the bucket and read its files.

        Returns
        -------
        list of tuple
            (path relative to the index, rows) of each file.
        """
        if not store.exists(f"{INDEX}/{rel}"):
            return []
        return [
            (f"{rel}/{name}", store.read_parquet(f"{INDEX}/{rel}/{name}", schema=table_schema(FRAME_INDEX)))
            for name in store.listdir(f"{INDEX}/{rel}")
            if name.endswith(".parquet") and not name.startswith(".")
        ]

    return read_listed(read)


def read_buckets(lake, buckets) -> pa.Table:
    """Every index row of some buckets.

    Parameters
    ----------
    lake : Lake
        The lake.
    buckets : iterable of str
        The buckets' names.

    Returns
    -------
    pyarrow.Table
        The rows of their published files.
    """
    pieces = [data for b in sorted(set(buckets)) for _, data in _bucket_files(lake.store, b)]
    return pa.concat_tables(pieces) if pieces else table_schema(FRAME_INDEX).empty_table()


def lookup(lake, hashes=(), keys=()) -> pa.Table:
    """Index rows (every version, rejected ones included) of some content hashes and frame keys.

    Pass each frame's key with its hash: a key is looked for in its hash's bucket, or in its own when the
    hash is empty. Reads only those buckets once the index is ready.

    Parameters
    ----------
    lake : Lake
        The lake.
    hashes : iterable of str
        Content hashes (empty ones are ignored).
    keys : iterable of str
        Frame keys.

    Returns
    -------
    pyarrow.Table
        The rows whose ``content_hash`` is in ``hashes`` or whose ``frame_key`` is in ``keys``.
    """
    hashes = [h for h in hashes if h]
    keys = list(keys)
    if not hashes and not keys:
        return table_schema(FRAME_INDEX).empty_table()
    if ready(lake):
        buckets = {bucket_of(h, "") for h in hashes} | {bucket_of(None, k) for k in keys}
        rows = read_buckets(lake, buckets)
    else:
        rows = _from_frames(lake)
    mask = pc.or_(
        pc.is_in(rows.column("content_hash"), value_set=pa.array(hashes, pa.string())),
        pc.is_in(rows.column("frame_key"), value_set=pa.array(keys, pa.string())),
    )
    return rows.filter(mask)


def lookup_results(lake, records) -> pa.Table:
    """Index rows of the frame records' files.

    Parameters
    ----------
    lake : Lake
        The lake.
    records : iterable of dict
        Frame records, with ``content_hash`` and ``frame_key``.

    Returns
    -------
    pyarrow.Table
        Every version of each file with a hash (its keys all live in its hash's bucket), and the rows of
        the path-identified keys of those without.
    """
    hashes = {r["content_hash"] for r in records if r["content_hash"]}
    keys = {r["frame_key"] for r in records if not r["content_hash"]}
    return lookup(lake, hashes, keys)


def _from_frames(lake) -> pa.Table:
    """The index rebuilt from the frames table (a lake made before the index, or in tests)."""
    frames = lake.read_frames(columns=[c for c in COLUMNS if c != "night"] + ["night"])
    from skylake.lake.nights import night_partition

    nights = [night_partition(n) for n in frames.column("night").to_pylist()]
    return rows_for(frames.drop_columns(["night"]), nights)


def _split(rows: pa.Table) -> dict[str, pa.Table]:
    """``rows`` grouped by bucket."""
    if rows.num_rows == 0:
        return {}
    buckets = np.array([int(b, 16) for b in buckets_of(rows)])
    order = np.argsort(buckets, kind="stable")
    rows, buckets = rows.take(order), buckets[order]
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    ends = np.r_[starts[1:], len(buckets)]
    return {f"{buckets[a]:0{BUCKET_CHARS}x}": rows.slice(a, b - a) for a, b in zip(starts, ends)}


#: Buckets per rewrite task at least: below, a task's overhead outweighs the work.
MIN_BUCKETS_PER_TASK = 8


def stage_changes(tx, added: list[pa.Table], dropped_ids: set[int], dropped_buckets: set[str]) -> None:
    """Rewrite, in a transaction, each bucket gaining rows or losing frame ids.

    Each such bucket's live files are removed and one new file staged with its rows after the change. The
    buckets are shared among the transaction's workers (``tx.runner``), each rewriting its own
    (:func:`rewrite_buckets`).

    Parameters
    ----------
    tx : Transaction
        The transaction.
    added : list of pyarrow.Table
        Index rows added.
    dropped_ids : set of int
        Frame ids whose rows are dropped.
    dropped_buckets : set of str
        The buckets holding the dropped rows.
    """
    from skylake.runtime import Runner

    rows = pa.concat_tables(added) if added else table_schema(FRAME_INDEX).empty_table()
    of_row = buckets_of(rows)
    buckets = sorted(set(of_row) | set(dropped_buckets))
    if not buckets:
        return
    tx.rows_stay(INDEX)  # a frame's entry stays in its bucket: buckets are published one by one
    runner = tx.runner or Runner(None)
    n = max(1, min(runner.workers(), len(buckets) // MIN_BUCKETS_PER_TASK))
    # a task gets its rows as one compact table: a pickled slice carries its parent's whole buffers (224
    # one-row slices of a batch's rows were 3.7 MB and 0.15 s of the driver's pickling). Bucket k goes to
    # task k % n, found by a dict: np.isin on strings took 9 s for 250,000 rows
    task_of = {b: k % n for k, b in enumerate(buckets)}
    task = np.fromiter((task_of[b] for b in of_row), dtype=np.int64, count=len(of_row))
    chunks = [(buckets[k::n], rows.filter(pa.array(task == k)).combine_chunks()) for k in range(n)]
    for actions in runner.map(
        rewrite_buckets,
        chunks,
        window=n,
        priority=10,
        lake_root=tx.lake.store.location,
        batch_id=tx.batch_id,
        dropped_ids=sorted(dropped_ids),
    ):
        for kind, rel, rows, nbytes in actions:
            if kind == "remove":
                tx.remove(INDEX, rel, rows)
            else:
                tx.add_staged(INDEX, rel, rows, nbytes)


def rewrite_buckets(
    item: tuple[list[str], pa.Table], lake_root: str, batch_id: str, dropped_ids: list[int]
) -> list[tuple[str, str, int, int]]:
    """A task: rewrite some buckets, as one file per bucket staged in a batch.

    Parameters
    ----------
    item : tuple of (list of str, pyarrow.Table)
        The buckets, and the index rows they gain (each goes to its own bucket).
    lake_root : str
        The lake's location (:attr:`Storage.location`).
    batch_id : str
        The batch staging the files.
    dropped_ids : list of int
        Frame ids whose rows are dropped.

    Returns
    -------
    list of tuple of (str, str, int, int)
        The file actions: ``("remove", rel, rows, 0)`` for each live file, ``("add", rel, rows, bytes)``
        for each new one (``rel`` relative to :data:`INDEX`).
    """
    from skylake.lake.log import staging_path
    from skylake.lake.parquet import parquet_bytes
    from skylake.lake.storage import open_storage

    store = open_storage(lake_root)
    buckets, added = item
    new = _split(added)
    drop = pa.array(dropped_ids, type=pa.int64())
    actions = []
    for b in buckets:
        pieces = []
        for rel, data in _bucket_files(store, b):
            actions.append(("remove", rel, data.num_rows, 0))
            pieces.append(data.filter(pc.invert(pc.is_in(data.column("frame_id"), value_set=drop))))
        if b in new:
            pieces.append(new[b])
        rows = pa.concat_tables(pieces) if pieces else table_schema(FRAME_INDEX).empty_table()
        if rows.num_rows:
            rel = f"{bucket_dir(b)}/{batch_id}.parquet"
            blob = parquet_bytes(rows)
            store.write_bytes(staging_path(batch_id, f"{INDEX}/{rel}"), blob)
            actions.append(("add", rel, rows.num_rows, len(blob)))
    return actions


def ensure(lake) -> bool:
    """Build the index of a lake that has none (one commit reading the frames table once).

    Parameters
    ----------
    lake : Lake
        The lake.

    Returns
    -------
    bool
        True when it built one.
    """
    if ready(lake):
        return False
    with lake.transaction("frame-index") as tx:
        if ready(lake):  # another writer built it meanwhile
            return False
        rows = _from_frames(lake)
        store = lake.store
        if store.exists(INDEX):  # partial buckets written before the index was ready: replaced whole
            for rel in store.walk_files(INDEX, ".parquet"):
                tx.remove(INDEX, posixpath.relpath(rel, INDEX), 0)
        for b, piece in _split(rows).items():
            tx.stage(INDEX, f"{bucket_dir(b)}/{tx.batch_id}.parquet", piece)
        tx.stage_file(READY, b"frame index complete\n")
        tx.commit(summary={"frame_index_rows": rows.num_rows})
    log.info("lake %s: built the frame index (%d frame rows)", lake.url, rows.num_rows)
    return True
