"""Reading the files one version of the lake names, wherever they are now.

A commit's files are the log's (:func:`skylake.lake.history.files_at`). Each is live in its table, or, once a
later commit removed it, retained under ``_skylake/removed/<v>/``. Reading those files, and not what a listing
of the table's folders finds, is how a snapshot (``open_lake(url, version=N)``) reads exactly commit N, and how
a live reader on a store with no directories to swap (S3) never sees a publish in progress: there a merged file
is copied in beside the files it replaces before they are moved out, so a listing could count rows twice.
"""

from __future__ import annotations

import posixpath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from skylake.lake import history
from skylake.lake.log import CommitLog
from skylake.lake.nights import UNKNOWN_NIGHT, night_dir
from skylake.lake.storage import Storage

__all__ = ["HATS_PARTS", "NIGHT_PARTS", "partition_expression", "of_nights", "dataset_of", "locate_published"]

#: The partition fields of a HATS catalogue's paths, and of a night table's.
HATS_PARTS = (("Norder", pa.int8()), ("Dir", pa.int64()), ("Npix", pa.int64()))
NIGHT_PARTS = (("night", pa.string()),)
_ALWAYS = pc.scalar(True)  # the partition expression of a file outside any key=value directory


def partition_expression(rel: str, fields) -> pc.Expression:
    """The partition expression of a table-relative file path, from its ``key=value`` directories.

    Parameters
    ----------
    rel : str
        The path, relative to its table (``night=2026-01-01/x.parquet``).
    fields : sequence of (str, pyarrow.DataType)
        The partition fields.

    Returns
    -------
    pyarrow.compute.Expression
        The fields' values (``night=unknown``: a null night, as the live readers' ``null_fallback``); true for
        a path outside any such directory.
    """
    values = dict(seg.split("=", 1) for seg in posixpath.dirname(rel).split("/") if "=" in seg)
    expr = None
    for name, typ in fields:
        if name not in values:
            continue
        value = values[name]
        term = (
            pc.field(name).is_null()
            if name == "night" and value == UNKNOWN_NIGHT
            else pc.field(name) == pa.scalar(value).cast(typ)
        )
        expr = term if expr is None else expr & term
    return _ALWAYS if expr is None else expr


def of_nights(rels: list[str], nights) -> list[str]:
    """The files of a night table that lie in some nights' partitions.

    Parameters
    ----------
    rels : list of str
        Paths relative to the table (``night=2026-01-01/x.parquet``).
    nights : iterable or None
        The nights (an element None or NaN: the unknown night); None keeps every file.

    Returns
    -------
    list of str
        Those of ``rels`` in the nights' partitions, in their order.
    """
    if nights is None:
        return list(rels)
    parts = {night_dir(n) for n in nights}
    return [r for r in rels if posixpath.dirname(r) in parts]


def dataset_of(store: Storage, rels: list[str], stored: list[str], schema: pa.Schema, fields) -> pads.Dataset:
    """A dataset of named files, with the partition values their table-relative paths give.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    rels : list of str
        The files' paths relative to their table (for the partition values).
    stored : list of str
        Where each is stored now, lake-relative.
    schema : pyarrow.Schema
        The table's schema with the partition fields.
    fields : sequence of (str, pyarrow.DataType)
        The partition fields.

    Returns
    -------
    pyarrow.dataset.Dataset
        The rows (none, with the schema, for no files). A file under a folder whose name starts with ``_`` or
        ``.`` is another table's (``maps/_index/``), as pyarrow's own listing leaves it out.
    """
    keep = [i for i, r in enumerate(rels) if not any(seg.startswith(("_", ".")) for seg in r.split("/"))]
    rels, stored = [rels[i] for i in keep], [stored[i] for i in keep]
    if not rels:
        return pads.dataset(schema.empty_table())
    return pads.FileSystemDataset.from_paths(
        [store.full(s) for s in stored],
        schema=schema,
        format=pads.ParquetFileFormat(),
        filesystem=store.arrow_filesystem(),
        partitions=[partition_expression(r, fields) for r in rels],
    )


def locate_published(store: Storage, log: CommitLog, table: str) -> dict[str, str]:
    """The data files of one table at the published version, each where it is stored now.

    The table's folder is listed once; a file of the version that a commit being published has moved out is
    looked for in that commit's retained area.

    Parameters
    ----------
    store : Storage
        The lake's storage.
    log : CommitLog
        The lake's commit log.
    table : str
        The table (its folder in the lake).

    Returns
    -------
    dict of str to str
        Each file's path relative to the table to where it is stored (lake-relative).

    Raises
    ------
    FileNotFoundError
        A file is neither live nor retained: the next commit finished publishing meanwhile (look again).
    """
    version = log.published_version()
    prefix = f"{table}/"
    files = [rel for rel in history.files_at(store, log, version) if rel.startswith(prefix)]
    if not files:
        return {}
    live = set(store.walk_all(table))
    where = {}
    later = None
    for rel in files:
        if rel in live:
            where[rel[len(prefix) :]] = rel
            continue
        later = later if later is not None else range(version + 1, log.latest_version() + 1)
        kept = next((p for p in (history.removed_path(v, rel) for v in later) if store.exists(p)), None)
        if kept is None:
            raise FileNotFoundError(store.full(rel))
        where[rel[len(prefix) :]] = kept
    return where
