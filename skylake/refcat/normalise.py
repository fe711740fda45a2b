"""Turn chunks of a native catalogue into the refcat schema, and write them as temporary shards.

:func:`normalise_chunk` evaluates a :class:`~skylake.refcat.formats.Variant` on one Arrow table
(vectorised pyarrow compute), drops rows whose coordinates are missing or impossible, counts them by
reason and adds the HATS spatial index ``_healpix_29``; :func:`normalise_file` streams a whole file
through it into shards of at most ``rows_per_shard`` rows, so memory stays at about a shard whatever
the file's size. A shard is an uncompressed Arrow IPC file of one record batch, its rows sorted by
``_healpix_29``, without the columns that hold no value in it: the partitioner
(:mod:`skylake.refcat.partition`) memory-maps it and takes any partition's rows as a slice, so the
shards are written once and read once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skylake.refcat.errors import FormatMismatch
from skylake.refcat.formats import Condition, Format, Spec, Variant
from skylake.refcat.readers import Source, iter_chunks, source_columns, uncompressed
from skylake.refcat.schema import HEALPIX, flag_bits

__all__ = [
    "MAG_PER_SNR",
    "DROP_REASONS",
    "RA_WRAP_TOLERANCE_DEG",
    "SHARD_SUFFIX",
    "KEPT_COLUMNS",
    "ChunkCounts",
    "evaluate_condition",
    "evaluate_spec",
    "normalise_chunk",
    "wrap_ra",
    "ShardWriter",
    "FileResult",
    "normalise_file",
]


#: 2.5 / ln(10): a flux signal-to-noise ratio S/N gives a magnitude error of MAG_PER_SNR / S/N.
MAG_PER_SNR = 2.5 / math.log(10.0)
#: Reasons a row is dropped, in the order they are tested.
DROP_REASONS = ("missing_coordinates", "dec_out_of_range", "ra_out_of_range")
#: RA this close outside [0, 360) deg is rounding of a legal value (360.0, -1e-13) and is wrapped,
#: not dropped; 1e-9 deg = 3.6 micro-arcsec, far below any catalogue's precision.
RA_WRAP_TOLERANCE_DEG = 1e-9
#: Shards live minutes and are read as slices of a memory map: Arrow IPC, uncompressed.
SHARD_SUFFIX = ".arrow"
#: Columns a shard keeps even when they hold no value (the partitioner sorts and counts by them).
KEPT_COLUMNS = (HEALPIX, "ref_id", "ra", "dec")


@dataclass
class ChunkCounts:
    """Row counts of a chunk, a file or an import, and the range of epochs kept.

    Attributes
    ----------
    rows_read : int
        Native rows read.
    rows_kept : int
        Rows written (with legal coordinates).
    dropped : dict of str to int
        Rows dropped per reason of :data:`DROP_REASONS`.
    epoch_min, epoch_max : float or None
        The earliest and latest epoch of the rows kept (None: no row kept).
    """

    rows_read: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    epoch_min: float | None = None
    epoch_max: float | None = None

    def add(self, other: ChunkCounts) -> None:
        """Add the counts of ``other`` to these, and widen the epoch range to cover its own.

        Parameters
        ----------
        other : ChunkCounts
            The counts to add.
        """
        self.rows_read += other.rows_read
        self.rows_kept += other.rows_kept
        for k, v in other.dropped.items():
            self.dropped[k] = self.dropped.get(k, 0) + v
        for attr, fn in (("epoch_min", min), ("epoch_max", max)):
            a, b = getattr(self, attr), getattr(other, attr)
            setattr(self, attr, b if a is None else a if b is None else fn(a, b))


# -- evaluating specs ---------------------------------------------------------------------------------
def _null_like(n: int, typ: pa.DataType) -> pa.Array:
    return pa.nulls(n, type=typ)


def _column(table: pa.Table, name: str, typ: pa.DataType | None, optional: bool) -> pa.Array | None:
    if name not in table.column_names:
        if optional:
            return None
        raise FormatMismatch(f"column {name!r} is missing")  # match() prevents this
    arr = table.column(name).combine_chunks()
    if typ is not None and arr.type != typ:
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            arr = pc.cast(arr, pa.string())
        else:
            if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
                arr = pc.if_else(pc.equal(pc.utf8_trim_whitespace(arr), ""), None, arr)
            try:
                arr = pc.cast(arr, typ)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise FormatMismatch(f"column {name!r} ({arr.type}) cannot be read as {typ}: {exc}") from None
    return arr


def _finite(arr: pa.Array) -> pa.Array:
    """Float NaN/inf -> null."""
    if pa.types.is_floating(arr.type):
        return pc.if_else(pc.is_finite(arr), arr, pa.scalar(None, arr.type))
    return arr


def _sexagesimal(arr: pa.Array, hours: bool) -> pa.Array:
    """'hh mm ss.s' / 'hh:mm:ss.s' / '12h05m09s' (or '-dd mm ss') strings -> degrees, parsed by
    astropy's Angle (which gets '-00 30 00' right); null, empty and unparseable strings -> null."""
    from astropy import units as u
    from astropy.coordinates import Angle

    text = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
    present = pc.fill_null(pc.not_equal(text, ""), False).to_numpy(zero_copy_only=False)
    strings = text.filter(pa.array(present)).to_numpy(zero_copy_only=False).astype(str)
    unit = u.hourangle if hours else u.deg
    out = np.full(len(arr), np.nan)
    try:
        out[present] = Angle(strings, unit=unit).deg
    except ValueError:  # one bad string fails the whole array: parse one by one to null only it
        out[present] = [_angle_or_nan(t, unit) for t in strings]
    return pa.array(out, mask=np.isnan(out))


def _angle_or_nan(text: str, unit) -> float:
    from astropy.coordinates import Angle

    try:
        return float(Angle(text, unit=unit).deg)
    except ValueError:
        return np.nan


def evaluate_condition(cond: Condition, table: pa.Table) -> pa.Array:
    """Boolean per row; null and absent optional columns give False.

    Parameters
    ----------
    cond : skylake.refcat.formats.Condition
        The test.
    table : pyarrow.Table
        Native rows.

    Returns
    -------
    pyarrow.Array
        Whether each row passes the test.

    Raises
    ------
    FormatMismatch
        The column cannot be read as the condition needs.
    """
    n = table.num_rows
    typ = cond.read_types()[cond.col]
    arr = _column(table, cond.col, typ, cond.optional)
    if arr is None:
        return pa.array(np.zeros(n, dtype=bool))
    if cond.mask is not None:
        arr = pc.bit_wise_and(arr, pa.scalar(cond.mask, pa.int64()))
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = pc.utf8_trim_whitespace(arr)
    if cond.op == "valid":
        ok = pc.is_valid(arr)
        if pa.types.is_floating(arr.type):
            ok = pc.and_(ok, pc.invert(pc.is_nan(arr)))
        elif pa.types.is_string(arr.type):
            ok = pc.and_(ok, pc.not_equal(arr, ""))
        return pc.fill_null(ok, False)
    value = cond.value
    if pa.types.is_integer(arr.type) and isinstance(value, float) and not value.is_integer():
        arr = pc.cast(arr, pa.float64())
    fn = {
        "eq": pc.equal,
        "ne": pc.not_equal,
        "gt": pc.greater,
        "ge": pc.greater_equal,
        "lt": pc.less,
        "le": pc.less_equal,
    }[cond.op]
    return pc.fill_null(fn(arr, pa.scalar(value).cast(arr.type)), False)


def evaluate_spec(spec: Spec, table: pa.Table, typ: pa.DataType) -> pa.Array:
    """The values of one target column (of type ``typ``) for every row of ``table``.

    NaN and infinite values become null; a ``derive`` spec gives nulls (filled in after the coordinates
    are known).

    Parameters
    ----------
    spec : skylake.refcat.formats.Spec
        How the column is computed.
    table : pyarrow.Table
        Native rows.
    typ : pyarrow.DataType
        The target column's type.

    Returns
    -------
    pyarrow.Array
        The values, of type ``typ``.

    Raises
    ------
    FormatMismatch
        A native column cannot be read as the spec needs, or the values cannot be stored as ``typ``.
    """
    n = table.num_rows
    if spec.kind == "col":
        read_type = spec.read_types(typ)[spec.col]
        arr = _column(table, spec.col, read_type, spec.optional)
        if arr is None:
            return _null_like(n, typ)
        if spec.null:
            sentinels = pa.array(spec.null).cast(arr.type)
            arr = pc.if_else(pc.is_in(arr, value_set=sentinels), pa.scalar(None, arr.type), arr)
        if spec.convert == "mjd_to_jyear":
            arr = pc.add(pc.divide(pc.subtract(arr, 51544.5), 365.25), 2000.0)
        elif spec.convert == "snr_to_mag_err":
            arr = pc.if_else(pc.greater(arr, 0), pc.divide(MAG_PER_SNR, arr), pa.scalar(None, arr.type))
        elif spec.convert in ("hms_string", "dms_string"):
            arr = _sexagesimal(arr, hours=spec.convert == "hms_string")
        if spec.scale is not None:
            arr = pc.multiply(pc.cast(arr, pa.float64()), spec.scale)
        if spec.offset is not None:
            arr = pc.add(pc.cast(arr, pa.float64()), spec.offset)
    elif spec.kind == "const":
        arr = pa.array(np.full(n, spec.value)) if n else pa.array([], type=typ)
    elif spec.kind == "coalesce":
        arr = pc.coalesce(*[_finite(pc.cast(evaluate_spec(p, table, typ), typ)) for p in spec.parts])
    elif spec.kind == "sum":
        arr = evaluate_spec(spec.parts[0], table, pa.float64())
        for part in spec.parts[1:]:
            arr = pc.add(arr, evaluate_spec(part, table, pa.float64()))
    elif spec.kind in ("hms", "dms"):
        cols = spec.cols if spec.kind == "hms" else spec.cols[1:]
        d, m, s = (
            pc.fill_null(_column(table, c, pa.float64(), False), np.nan)
            if i
            else _column(table, c, pa.float64(), False)
            for i, c in enumerate(cols)
        )
        arr = pc.add(pc.add(d, pc.divide(m, 60.0)), pc.divide(s, 3600.0))
        if spec.kind == "hms":
            arr = pc.multiply(arr, 15.0)
        else:
            sign = pc.utf8_trim_whitespace(_column(table, spec.cols[0], pa.string(), False))
            arr = pc.if_else(pc.fill_null(pc.equal(sign, "-"), False), pc.negate(arr), arr)
    elif spec.kind == "tycho_id":
        t1, t2, t3 = (_column(table, c, pa.int64(), False) for c in spec.cols)
        arr = pc.add(pc.add(pc.multiply(t1, 1_000_000), pc.multiply(t2, 10)), t3)
    elif spec.kind == "derive":
        return _null_like(n, typ)  # filled in after the coordinates are known
    else:  # pragma: no cover - the parser guards this
        raise ValueError(f"unknown spec kind {spec.kind!r}")
    if spec.where is not None:
        arr = pc.if_else(evaluate_condition(spec.where, table), arr, pa.scalar(None, arr.type))
    arr = _finite(arr)
    try:
        return pc.cast(arr, typ)
    except pa.ArrowInvalid as exc:
        raise FormatMismatch(f"values cannot be stored as {typ}: {exc}") from None


def normalise_chunk(table: pa.Table, variant: Variant, schema: pa.Schema) -> tuple[pa.Table, ChunkCounts]:
    """One chunk of native rows -> rows of ``schema`` (without bad coordinates) and the counts.

    RA within :data:`RA_WRAP_TOLERANCE_DEG` outside [0, 360) is wrapped (:func:`wrap_ra`); rows with
    missing coordinates, Dec outside [-90, 90] or RA out of range are dropped and counted per reason. A
    derived ``ref_id`` is the HEALPix order-29 index of the position.

    Parameters
    ----------
    table : pyarrow.Table
        Native rows.
    variant : skylake.refcat.formats.Variant
        The column map that reads them.
    schema : pyarrow.Schema
        The catalogue's schema, with or without ``_healpix_29`` (computed from the position when
        present).

    Returns
    -------
    rows : pyarrow.Table
        The rows kept, with the quality flags set.
    counts : ChunkCounts
        Rows read, kept and dropped, and the epoch range of those kept.

    Raises
    ------
    FormatMismatch
        A native column cannot be read as the map needs, or values cannot be stored in their column.
    """
    from hats.pixel_math.spatial_index import compute_spatial_index

    n = table.num_rows
    counts = ChunkCounts(rows_read=n)
    out: dict[str, pa.Array] = {}
    for fld in schema:
        if fld.name in ("flags", HEALPIX):
            continue
        spec = variant.columns.get(fld.name)
        out[fld.name] = evaluate_spec(spec, table, fld.type) if spec is not None else _null_like(n, fld.type)
    flags = np.zeros(n, dtype=np.int32)
    for name, conds in variant.flags.items():
        hit = np.zeros(n, dtype=bool)
        for cond in conds:
            hit |= evaluate_condition(cond, table).to_numpy(zero_copy_only=False)
        flags[hit] |= flag_bits()[name]
    out["flags"] = pa.array(flags)

    ra, dec = out["ra"], out["dec"]
    missing = pc.fill_null(pc.or_(pc.is_null(ra), pc.is_null(dec)), True).to_numpy(zero_copy_only=False)
    ra_np, ra_ok = wrap_ra(ra.to_numpy(zero_copy_only=False))
    out["ra"] = pa.array(ra_np, type=schema.field("ra").type, mask=missing)
    dec_np = dec.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        bad_dec = ~missing & (np.abs(dec_np) > 90.0)
    bad_ra = ~missing & ~bad_dec & ~ra_ok
    counts.dropped = {
        "missing_coordinates": int(missing.sum()),
        "dec_out_of_range": int(bad_dec.sum()),
        "ra_out_of_range": int(bad_ra.sum()),
    }
    keep = ~(missing | bad_dec | bad_ra)
    with_index = HEALPIX in schema.names
    if with_index:
        out[HEALPIX] = _null_like(n, schema.field(HEALPIX).type)
    result = pa.table({f.name: out[f.name] for f in schema}, schema=schema)
    if not keep.all():
        result = result.filter(pa.array(keep))
    counts.rows_kept = result.num_rows
    derived = variant.columns["ref_id"].kind == "derive"
    if (derived or with_index) and result.num_rows:
        index = pa.array(compute_spatial_index(result["ra"].to_numpy(), result["dec"].to_numpy()))
        if derived:
            result = result.set_column(schema.get_field_index("ref_id"), schema.field("ref_id"), index)
        if with_index:
            result = result.set_column(schema.get_field_index(HEALPIX), schema.field(HEALPIX), index)
    if result.num_rows:
        mm = pc.min_max(result["epoch"])
        counts.epoch_min, counts.epoch_max = mm["min"].as_py(), mm["max"].as_py()
    return result, counts


def wrap_ra(ra: np.ndarray, tol: float = RA_WRAP_TOLERANCE_DEG) -> tuple[np.ndarray, np.ndarray]:
    """RA wrapped into [0, 360), and whether each value was legal.

    Values within ``tol`` deg outside [0, 360) are rounding and wrap (360.0 -> 0.0); non-finite or truly
    out-of-range ones are not legal.

    Parameters
    ----------
    ra : numpy.ndarray
        RA [deg].
    tol : float
        How far outside [0, 360) a value is still rounding [deg].

    Returns
    -------
    wrapped : numpy.ndarray
        The legal values wrapped into [0, 360); the others unchanged.
    ok : numpy.ndarray
        Whether each value was legal.
    """
    with np.errstate(invalid="ignore"):
        ok = (ra >= -tol) & (ra < 360.0 + tol)
        wrapped = np.mod(ra, 360.0)
    wrapped[wrapped >= 360.0] = 0.0  # np.mod(-1e-17, 360) rounds to 360.0
    return np.where(ok, wrapped, ra), ok


# -- shards ----------------------------------------------------------------------------------------------
class ShardWriter:
    """Shards ``<prefix>-NNNN.arrow`` of at most ``rows_per_shard`` rows each, sorted by ``_healpix_29``,
    and the rows per HEALPix pixel at ``histogram_order``.

    Parameters
    ----------
    directory : pathlib.Path
        Where the files are written.
    prefix : str
        The start of their names.
    schema : pyarrow.Schema
        The rows' schema, with ``_healpix_29``.
    rows_per_shard : int
        Rows per file at most (the rows are held until a shard is full, to sort them).
    histogram_order : int
        The HEALPix order of :attr:`histogram`.

    Attributes
    ----------
    paths : list of pathlib.Path
        The files written so far, in order.
    """

    def __init__(self, directory: Path, prefix: str, schema: pa.Schema, rows_per_shard: int, histogram_order: int):
        self.directory, self.prefix, self.schema = Path(directory), prefix, schema
        self.rows_per_shard = int(rows_per_shard)
        self.histogram_order = int(histogram_order)
        self.paths: list[Path] = []
        self._held: list[pa.Table] = []
        self._rows = 0
        self._pixels: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []

    def write(self, table: pa.Table) -> None:
        """Add rows; a shard is written whenever ``rows_per_shard`` rows are held.

        Parameters
        ----------
        table : pyarrow.Table
            Rows of the writer's schema.
        """
        while table.num_rows:
            take = min(table.num_rows, self.rows_per_shard - self._rows)
            self._held.append(table.slice(0, take))
            self._rows += take
            table = table.slice(take)
            if self._rows >= self.rows_per_shard:
                self._flush()

    def _flush(self) -> None:
        from hats.pixel_math.spatial_index import spatial_index_to_healpix

        if not self._rows:
            return
        rows = pa.concat_tables(self._held)
        self._held, self._rows = [], 0
        # a column with no value in the shard (a band or proper motion the catalogue lacks) is not
        # stored: the partitioner adds it back as nulls, so it is neither sorted, written nor read
        rows = rows.select([n for n in rows.column_names if n in KEPT_COLUMNS or rows[n].null_count < rows.num_rows])
        index = rows[HEALPIX].to_numpy()
        order = np.argsort(index, kind="stable")
        rows, index = rows.take(order).combine_chunks(), index[order]
        path = self.directory / f"{self.prefix}-{len(self.paths):04d}{SHARD_SUFFIX}"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
            writer.write_table(rows, max_chunksize=max(1, rows.num_rows))  # one batch: slices are zero-copy
        self.paths.append(path)
        pixels = spatial_index_to_healpix(index, target_order=self.histogram_order)
        starts = np.flatnonzero(np.r_[True, pixels[1:] != pixels[:-1]])  # sorted: runs of one pixel
        self._pixels.append(pixels[starts])
        self._counts.append(np.diff(np.r_[starts, pixels.size]))

    def close(self) -> None:
        """Write the rows still held as a last, shorter shard."""
        self._flush()

    @property
    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """The pixels at ``histogram_order`` holding rows written so far, and their rows.

        Returns
        -------
        pixels : numpy.ndarray
            Pixels (NESTED, int64, ascending, each once).
        counts : numpy.ndarray
            Rows in each (int64).
        """
        if not self._pixels:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        pixels, inverse = np.unique(np.concatenate(self._pixels), return_inverse=True)
        return pixels, np.bincount(inverse, weights=np.concatenate(self._counts)).astype(np.int64)


@dataclass
class FileResult:
    """What normalising one input file produced.

    Attributes
    ----------
    path : str
        The input file.
    variant : str
        The label of the variant that read it.
    counts : ChunkCounts
        Its rows read, kept and dropped.
    shards : list of str
        The shards written (sorted Arrow IPC files, see :class:`ShardWriter`).
    histogram : tuple of numpy.ndarray
        The pixels at the histogram's order holding rows, and their rows (:attr:`ShardWriter.histogram`).
    """

    path: str
    variant: str
    counts: ChunkCounts
    shards: list[str]
    histogram: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0, np.int64), np.zeros(0, np.int64))
    )


def normalise_file(
    source: Source,
    variant: Variant,
    fmt: Format,
    shard_dir: str | os.PathLike,
    prefix: str,
    chunk_rows: int = 500_000,
    rows_per_shard: int = 1_000_000,
    row_groups: tuple[int, ...] | None = None,
    histogram_order: int = 8,
) -> FileResult:
    """Stream ``source`` through ``variant`` into shards ``<prefix>-NNNN.parquet`` under ``shard_dir``.

    Runs on a dask worker. A compressed FITS file is decompressed into ``shard_dir`` first.

    Parameters
    ----------
    source : skylake.refcat.readers.Source
        The input file.
    variant : skylake.refcat.formats.Variant
        The variant of ``fmt`` that reads it.
    fmt : skylake.refcat.formats.Format
        The format, whose schema the shards have.
    shard_dir : str or os.PathLike
        Where the shards are written.
    prefix : str
        The start of the shards' names.
    chunk_rows : int
        Rows per chunk read (see :func:`~skylake.refcat.readers.iter_chunks`).
    rows_per_shard : int
        Rows per shard at most.
    row_groups : tuple of int or None
        Only these row groups of a Parquet file, if given.
    histogram_order : int
        The HEALPix order of the rows' histogram (the highest order a partition may have).

    Returns
    -------
    FileResult
        The counts, the shards and the histogram.

    Raises
    ------
    FormatMismatch
        The file cannot be read as the variant needs (naming the file and the variant).
    """
    schema = fmt.schema(with_healpix=True)
    target_types = {f.name: f.type for f in schema if f.name != HEALPIX}
    types = variant.read_types(target_types, source_columns(source, variant.csv_names))
    writer = ShardWriter(Path(shard_dir), prefix, schema, rows_per_shard, histogram_order)
    total = ChunkCounts()
    try:
        with uncompressed(source, shard_dir) as readable:  # a .fits.gz is decompressed next to the shards
            for chunk in iter_chunks(readable, types, chunk_rows, variant.csv_names, row_groups):
                try:
                    result, counts = normalise_chunk(chunk, variant, schema)
                except FormatMismatch as exc:
                    raise FormatMismatch(f"{source.path} (format {variant.label}): {exc}") from None
                total.add(counts)
                if result.num_rows:
                    writer.write(result)
    finally:
        writer.close()
    return FileResult(
        path=str(source.path),
        variant=variant.label,
        counts=total,
        shards=[str(p) for p in writer.paths],
        histogram=writer.histogram,
    )
