"""Chunked readers for reference-catalogue files: Parquet, CSV (also headerless), ECSV and FITS
binary tables; text and FITS files may be gzip- or bzip2-compressed (``.gz``, ``.bz2``).

:func:`open_source` looks only at a file's header (so column checks cost nothing);
:func:`iter_chunks` then streams it as pyarrow Tables of at most about ``chunk_rows`` rows, holding
one chunk in memory at a time (Parquet: ``iter_batches``; CSV/ECSV: pyarrow's streaming CSV reader,
which also decompresses; FITS: slices of a memory-mapped table). astropy cannot memory-map a
compressed FITS file (it would read it whole), so :func:`uncompressed` first decompresses one into
the import's work folder.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import dataclasses
import gzip
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from skylake.refcat.errors import FormatMismatch, RefcatError

__all__ = [
    "NULL_TOKENS",
    "KINDS",
    "SUFFIXES",
    "COMPRESSIONS",
    "Source",
    "split_compression",
    "is_catalogue_file",
    "detect_kind",
    "open_source",
    "source_columns",
    "iter_chunks",
    "uncompressed",
]


#: Text tokens that mean "no value" in CSV/ECSV files (AAVSO writes NA, VizieR leaves fields empty).
NULL_TOKENS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "--"]
KINDS = ("parquet", "csv", "ecsv", "fits")
#: File-name endings of each kind, before any compression suffix; the one list both the reader and
#: the importer's directory scan use. ECSV is also recognised by its first line.
SUFFIXES = {
    "parquet": (".parquet", ".pq"),
    "fits": (".fits", ".fit", ".fts", ".fits.fz"),
    "ecsv": (".ecsv",),
    "csv": (".csv", ".tsv", ".txt", ".rc2", ".dat"),
}
#: Compression suffixes and their openers (pyarrow's CSV reader undoes the same ones by suffix).
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open}
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_CSV_BLOCK = 16 << 20  # bytes of text per streamed batch
_COPY_BLOCK = 16 << 20  # bytes per read while decompressing a FITS file


@dataclass
class Source:
    """A file's kind and column names, read from its header only.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    kind : str
        One of :data:`KINDS`.
    columns : list of str
        Its column names (empty for a headerless CSV).
    headerless : bool
        A CSV without a header row: names come from the variant's csv_names.
    n_fields : int
        The fields of a headerless CSV's first row.
    delimiter : str
        The field delimiter of a text file.
    skip_rows : int
        Lines before the data: CSV the names line; ECSV comment lines plus the names line.
    hdu : int or None
        FITS: index of the table HDU.
    meta : dict
        The file's metadata (Parquet schema metadata, ECSV ``meta``; FITS: ``skylake_synthetic`` from the
        ``SYNTHET`` keyword).
    """

    path: Path
    kind: str
    columns: list[str]
    headerless: bool = False  # CSV without a header row: names come from the variant's csv_names
    n_fields: int = 0
    delimiter: str = ","
    skip_rows: int = 0  # lines before the data: CSV the names line; ECSV comment lines plus the names line
    hdu: int | None = None  # FITS: index of the table HDU
    meta: dict = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        """True for files skylake.synthetic.refcat wrote.

        Parquet, ECSV and FITS say so in their metadata; a plain CSV has none, so the generator puts
        "synthetic" in its name instead.

        Returns
        -------
        bool
            Whether the file is synthetic.
        """
        if str(self.meta.get("skylake_synthetic", "")).lower() == "true":
            return True
        return self.kind == "csv" and "synthetic" in self.path.name.lower()


def split_compression(path: str | os.PathLike) -> tuple[str, str]:
    """(lower-case name without its compression suffix, that suffix or "").

    Parameters
    ----------
    path : str or os.PathLike
        A file's path.

    Returns
    -------
    name : str
        The file's lower-case name without its compression suffix.
    suffix : str
        That suffix (a key of :data:`COMPRESSIONS`), or "".
    """
    name = Path(path).name.lower()
    for suffix in COMPRESSIONS:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def is_catalogue_file(path: str | os.PathLike) -> bool:
    """Whether the name ends with a suffix :func:`detect_kind` knows (optionally compressed).

    Parameters
    ----------
    path : str or os.PathLike
        A file's path.

    Returns
    -------
    bool
        True for a suffix of :data:`SUFFIXES`.
    """
    name, _ = split_compression(path)
    return name.endswith(tuple(s for suffixes in SUFFIXES.values() for s in suffixes))


def detect_kind(path: Path) -> str:
    """``parquet``, ``csv``, ``ecsv`` or ``fits`` from the name, or ECSV by its first line.

    Parameters
    ----------
    path : pathlib.Path
        The file.

    Returns
    -------
    str
        The file's kind.

    Raises
    ------
    FormatMismatch
        The name has no known suffix and the file is not ECSV.
    """
    name, _ = split_compression(path)
    if name.endswith(SUFFIXES["parquet"]):
        return "parquet"
    if name.endswith(SUFFIXES["fits"]):
        return "fits"
    if name.endswith(SUFFIXES["ecsv"]) or _first_line(path).startswith("# %ECSV"):
        return "ecsv"
    if name.endswith(SUFFIXES["csv"]):
        return "csv"
    known = ", ".join(s for suffixes in SUFFIXES.values() for s in suffixes)
    raise FormatMismatch(
        f"{path}: cannot tell the file type from its name; use one of {known} (optionally {' or '.join(COMPRESSIONS)})"
    )


def _open_text(path: Path):
    # utf-8-sig: a byte-order mark must not become part of the first column's name
    opener = COMPRESSIONS.get(split_compression(path)[1], open)
    return opener(path, "rt", encoding="utf-8-sig", errors="replace")


def _first_line(path: Path) -> str:
    try:
        with _open_text(path) as fh:
            return fh.readline()
    except (OSError, EOFError):
        return ""


def open_source(path: str | Path) -> Source:
    """Read ``path``'s header: its kind and column names (no data is read).

    Parameters
    ----------
    path : str or pathlib.Path
        The file.

    Returns
    -------
    Source
        The file's kind, columns and how to read it.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    FormatMismatch
        Its kind cannot be told, it is a compressed Parquet file, its ECSV header does not parse or
        disagrees with its names line, or a FITS file has no table HDU.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    kind = detect_kind(path)
    if kind == "parquet":
        if split_compression(path)[1]:
            raise FormatMismatch(
                f"{path}: compressed Parquet cannot be read in row groups; decompress it first "
                "(Parquet is compressed inside already)"
            )
        schema = pq.read_schema(path)
        meta = {k.decode(): v.decode(errors="replace") for k, v in (schema.metadata or {}).items() if k != b"pandas"}
        return Source(path, kind, list(schema.names), meta=meta)
    if kind == "fits":
        return _open_fits(path)
    if kind == "ecsv":
        return _open_ecsv(path)
    return _open_csv(path)


def _open_csv(path: Path) -> Source:
    line = _first_line(path).rstrip("\r\n")
    tsv = split_compression(path)[0].endswith(".tsv")
    delimiter = "\t" if tsv or ("\t" in line and "," not in line) else ","
    tokens = [t.strip().strip('"') for t in line.split(delimiter)]
    numeric = sum(bool(_NUMBER.match(t)) for t in tokens if t)
    if tokens and numeric * 2 >= len(tokens):  # a data row, not names
        return Source(path, "csv", [], headerless=True, n_fields=len(tokens), delimiter=delimiter)
    names = next(csv.reader([line], delimiter=delimiter))
    # The reader is given these stripped names and skips the header row, so the names the column
    # check saw are the names the data is read under ("radeg, raerr" -> "raerr", not " raerr").
    return Source(path, "csv", [n.strip() for n in names], delimiter=delimiter, skip_rows=1)


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
    """The column names of ``source``; a headerless CSV takes ``csv_names`` when the counts agree.

    Parameters
    ----------
    source : Source
        The file.
    csv_names : tuple of str
        The column names of a headerless CSV.

    Returns
    -------
    list of str
        The names (empty for a headerless CSV whose field count differs from ``csv_names``).
    """
    if source.headerless:
        return list(csv_names) if len(csv_names) == source.n_fields else []
    return source.columns


def iter_chunks(
    source: Source,
    types: dict[str, pa.DataType | None],
    chunk_rows: int = 500_000,
    csv_names: tuple[str, ...] = (),
    row_groups=None,
) -> Iterator[pa.Table]:
    """Stream the columns ``types`` of ``source`` as Tables.

    Text columns with type None are read as strings; binary files keep their stored types (the
    normaliser casts). Columns absent from the file are simply not returned.

    Parameters
    ----------
    source : Source
        The file (a compressed FITS file through :func:`uncompressed`).
    types : dict of str to pyarrow.DataType or None
        The columns to read, name -> type (None = as stored).
    chunk_rows : int
        Rows per Table at most, of Parquet and FITS files (text files are streamed in blocks of 16 MB).
    csv_names : tuple of str
        The column names of a headerless CSV.
    row_groups : iterable of int or None
        Of a Parquet file, only the row groups given, if any.

    Yields
    ------
    pyarrow.Table
        The next chunk.

    Raises
    ------
    FormatMismatch
        A text file does not parse.
    RefcatError
        A compressed FITS file is given directly.
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
    column_names = list(csv_names) if source.headerless else source.columns
    read = pacsv.ReadOptions(block_size=_CSV_BLOCK, column_names=column_names, skip_rows=source.skip_rows)
    parse = pacsv.ParseOptions(delimiter=source.delimiter)
    convert = pacsv.ConvertOptions(
        column_types={c: (t or pa.string()) for c, t in types.items()},
        include_columns=list(types),
        null_values=NULL_TOKENS,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    try:
        reader = pacsv.open_csv(source.path, read_options=read, parse_options=parse, convert_options=convert)
        for batch in reader:
            yield pa.Table.from_batches([batch])
    except pa.ArrowInvalid as exc:
        raise FormatMismatch(f"{source.path}: cannot parse as {source.kind.upper()}: {exc}") from None


@contextlib.contextmanager
def uncompressed(source: Source, work_dir: str | os.PathLike) -> Iterator[Source]:
    """``source`` itself, or for a compressed FITS file a Source on a decompressed copy in ``work_dir``.

    The copy is removed on exit: astropy memory-maps only uncompressed files and would read a .fits.gz
    whole into memory. Text files need nothing: pyarrow's CSV reader decompresses as it streams.

    Parameters
    ----------
    source : Source
        The file.
    work_dir : str or os.PathLike
        Where a decompressed copy is written.

    Yields
    ------
    Source
        ``source``, or the same on the decompressed copy.
    """
    compression = split_compression(source.path)[1]
    if source.kind != "fits" or not compression:
        yield source
        return
    fd, tmp = tempfile.mkstemp(prefix=".uncompressed-", suffix=".fits", dir=work_dir)
    try:
        with os.fdopen(fd, "wb") as out, COMPRESSIONS[compression](source.path, "rb") as src:
            shutil.copyfileobj(src, out, _COPY_BLOCK)
        yield dataclasses.replace(source, path=Path(tmp))
    finally:
        os.unlink(tmp)


def _iter_fits(source: Source, columns: list[str], chunk_rows: int) -> Iterator[pa.Table]:
    from astropy.io import fits

    if split_compression(source.path)[1]:
        raise RefcatError(
            f"{source.path}: a compressed FITS file cannot be memory-mapped; read it through readers.uncompressed()"
        )
    with fits.open(source.path, memmap=True) as hdul:
        hdu = hdul[source.hdu]
        n = hdu.header.get("NAXIS2", 0)
        fcols = {c.name: c for c in hdu.columns}
        for start in range(0, n, chunk_rows):
            rows = hdu.data[start : start + chunk_rows]
            yield pa.table({name: _fits_column(rows, fcols[name]) for name in columns})


def _fits_column(rows, column) -> pa.Array:
    """One column of a FITS_rec slice: scaled values (TSCAL/TZERO applied), null where the stored
    value equals TNULL. TNULL is a stored value, so it is compared before scaling."""
    values = np.asarray(rows.field(column.name))
    mask = None
    if column.null is not None:
        raw = np.recarray.field(rows, column.name)  # the stored integers, unscaled
        if raw.dtype.kind in "iu":
            mask = raw == int(column.null)
    if values.dtype.kind == "S":
        values = np.char.strip(np.char.decode(values, "ascii", errors="replace"))
    if values.dtype.byteorder == ">":
        values = values.astype(values.dtype.newbyteorder("="))
    return pa.array(values, mask=mask)
