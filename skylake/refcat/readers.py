"""Chunked readers for reference-catalogue files: Parquet, CSV (also headerless and gzipped), ECSV
and FITS binary tables.

:func:`open_source` looks only at a file's header (so column checks cost nothing);
:func:`iter_chunks` then streams it as pyarrow Tables of at most about ``chunk_rows`` rows, holding
one chunk in memory at a time (Parquet: ``iter_batches``; CSV/ECSV: pyarrow's streaming CSV reader;
FITS: slices of a memory-mapped table).
"""

from __future__ import annotations

import csv
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from skylake.refcat.errors import FormatMismatch

#: Text tokens that mean "no value" in CSV/ECSV files (AAVSO writes NA, VizieR leaves fields empty).
NULL_TOKENS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "--"]
KINDS = ("parquet", "csv", "ecsv", "fits")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_CSV_BLOCK = 16 << 20  # bytes of text per streamed batch


@dataclass
class Source:
    """A file's kind and column names, read from its header only."""

    path: Path
    kind: str
    columns: list[str]
    headerless: bool = False  # CSV without a header row: names come from the variant's csv_names
    n_fields: int = 0
    delimiter: str = ","
    skip_rows: int = 0  # ECSV: comment lines plus the names line
    hdu: int | None = None  # FITS: index of the table HDU
    meta: dict = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return str(self.meta.get("skylake_synthetic", "")).lower() == "true"


def detect_kind(path: Path) -> str:
    """``parquet``, ``csv``, ``ecsv`` or ``fits`` from the name, or ECSV by its first line."""
    name = path.name.lower()
    for suffix in (".gz", ".bz2"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".fits", ".fit", ".fts", ".fits.fz")):
        return "fits"
    if name.endswith(".ecsv") or _first_line(path).startswith("# %ECSV"):
        return "ecsv"
    if name.endswith((".csv", ".tsv", ".txt", ".rc2", ".dat")):
        return "csv"
    raise FormatMismatch(f"{path}: cannot tell the file type from its name; use .parquet, .csv, .ecsv or .fits "
                         "(optionally .gz)")


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.name.lower().endswith(".gz") else open(path, encoding="utf-8",
                                                                                 errors="replace")


def _first_line(path: Path) -> str:
    try:
        with _open_text(path) as fh:
            return fh.readline()
    except (OSError, EOFError):
        return ""


def open_source(path: str | Path) -> Source:
    """Read ``path``'s header: its kind and column names (no data is read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    kind = detect_kind(path)
    if kind == "parquet":
        schema = pq.read_schema(path)
        meta = {k.decode(): v.decode(errors="replace") for k, v in (schema.metadata or {}).items()
                if k != b"pandas"}
        return Source(path, kind, list(schema.names), meta=meta)
    if kind == "fits":
        return _open_fits(path)
    if kind == "ecsv":
        return _open_ecsv(path)
    return _open_csv(path)


def _open_csv(path: Path) -> Source:
    line = _first_line(path).rstrip("\r\n")
    delimiter = "\t" if path.name.lower().endswith((".tsv", ".tsv.gz")) or ("\t" in line and "," not in line) else ","
    tokens = [t.strip().strip('"') for t in line.split(delimiter)]
    numeric = sum(bool(_NUMBER.match(t)) for t in tokens if t)
    if tokens and numeric * 2 >= len(tokens):  # a data row, not names
        return Source(path, "csv", [], headerless=True, n_fields=len(tokens), delimiter=delimiter)
    names = next(csv.reader([line], delimiter=delimiter))
    return Source(path, "csv", [n.strip() for n in names], delimiter=delimiter)


def _open_ecsv(path: Path) -> Source:
    from astropy.table import meta as ecsv_meta

    header: list[str] = []
    with _open_text(path) as fh:
        for line in fh:
            if not line.startswith("#"):
                names_line = line
                break
            header.append(line[2:].rstrip("\n") if line.startswith("# ") else line[1:].rstrip("\n"))
        else:
            names_line = ""
    body = [h for h in header if not h.startswith("%ECSV")]
    try:
        doc = ecsv_meta.get_header_from_yaml(body)
    except Exception as exc:  # astropy raises its own YamlParseError
        raise FormatMismatch(f"{path}: cannot parse the ECSV header: {exc}") from None
    delimiter = doc.get("delimiter", " ")
    names = [c["name"] for c in doc["datatype"]]
    read_names = next(csv.reader([names_line], delimiter=delimiter)) if names_line.strip() else names
    if read_names != names:
        raise FormatMismatch(f"{path}: ECSV names line {read_names} differs from its header {names}")
    meta = {str(k): str(v) for k, v in (doc.get("meta") or {}).items()}
    return Source(path, "ecsv", names, delimiter=delimiter, skip_rows=len(header) + 1, meta=meta)


def _open_fits(path: Path) -> Source:
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        for idx, hdu in enumerate(hdul):
            if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                meta = {"skylake_synthetic": str(hdu.header.get("SYNTHET", ""))}
                return Source(path, "fits", list(hdu.columns.names), hdu=idx, meta=meta)
    raise FormatMismatch(f"{path}: no table HDU (BINTABLE or TABLE) in this FITS file")


def source_columns(source: Source, csv_names: tuple[str, ...] = ()) -> list[str]:
    """The column names of ``source``; a headerless CSV takes ``csv_names`` when the counts agree."""
    if source.headerless:
        return list(csv_names) if len(csv_names) == source.n_fields else []
    return source.columns


def iter_chunks(source: Source, types: dict[str, pa.DataType | None], chunk_rows: int = 500_000,
                csv_names: tuple[str, ...] = (), row_groups=None) -> Iterator[pa.Table]:
    """Stream the columns ``types`` (name -> type, None = as stored) of ``source`` as Tables
    (of a Parquet file, only the ``row_groups`` given, if any).

    Text columns with type None are read as strings; binary files keep their stored types (the
    normaliser casts). Columns absent from the file are simply not returned.
    """
    present = [c for c in types if c in set(source_columns(source, csv_names))]
    if source.kind == "parquet":
        pf = pq.ParquetFile(source.path)
        groups = list(row_groups) if row_groups is not None else None
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=present, row_groups=groups):
            yield pa.Table.from_batches([batch])
    elif source.kind in ("csv", "ecsv"):
        yield from _iter_text(source, {c: types[c] for c in present}, csv_names)
    elif source.kind == "fits":
        yield from _iter_fits(source, present, chunk_rows)
    else:  # pragma: no cover - detect_kind guards this
        raise ValueError(f"unknown kind {source.kind!r}")


def _iter_text(source: Source, types: dict[str, pa.DataType | None], csv_names) -> Iterator[pa.Table]:
    column_names = None
    if source.headerless:
        column_names = list(csv_names)
    elif source.kind == "ecsv":
        column_names = source.columns
    read = pacsv.ReadOptions(block_size=_CSV_BLOCK, column_names=column_names, skip_rows=source.skip_rows)
    parse = pacsv.ParseOptions(delimiter=source.delimiter)
    convert = pacsv.ConvertOptions(column_types={c: (t or pa.string()) for c, t in types.items()},
                                   include_columns=list(types), null_values=NULL_TOKENS,
                                   strings_can_be_null=True, quoted_strings_can_be_null=True)
    try:
        reader = pacsv.open_csv(source.path, read_options=read, parse_options=parse, convert_options=convert)
        for batch in reader:
            yield pa.Table.from_batches([batch])
    except pa.ArrowInvalid as exc:
        raise FormatMismatch(f"{source.path}: cannot parse as {source.kind.upper()}: {exc}") from None


def _iter_fits(source: Source, columns: list[str], chunk_rows: int) -> Iterator[pa.Table]:
    from astropy.io import fits

    with fits.open(source.path, memmap=True) as hdul:
        hdu = hdul[source.hdu]
        n = hdu.header.get("NAXIS2", 0)
        fcols = {c.name: c for c in hdu.columns}
        for start in range(0, n, chunk_rows):
            rows = hdu.data[start:start + chunk_rows]
            arrays = {}
            for name in columns:
                values = np.asarray(rows.field(name))
                mask = None
                tnull = fcols[name].null
                if tnull is not None and values.dtype.kind in "iu":
                    mask = values == tnull
                if values.dtype.kind == "S":
                    values = np.char.strip(np.char.decode(values, "ascii", errors="replace"))
                if values.dtype.byteorder == ">":
                    values = values.astype(values.dtype.newbyteorder("="))
                arrays[name] = pa.array(values, mask=mask)
            yield pa.table(arrays)


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """A whole (small) file as one Table with its native names; for tests and inspection."""
    source = open_source(path)
    types = {c: None for c in (columns or source.columns)}
    chunks = list(iter_chunks(source, types))
    return pa.concat_tables(chunks) if chunks else pa.table({})
