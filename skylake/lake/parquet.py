"""How the lake writes a Parquet file: zstd, column statistics, one buffer (stored by ``Storage``)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["BATCH_ZSTD_LEVEL", "parquet_bytes"]

#: zstd level for batch files: level 3 writes ~7x faster than hats' default 15 for ~3 % more disk.
BATCH_ZSTD_LEVEL = 3


def parquet_bytes(table: pa.Table, zstd_level: int = BATCH_ZSTD_LEVEL, row_group_size: int | None = None) -> bytes:
    """A table as the bytes of one Parquet file, with column statistics (for pruning by readers).

    Parameters
    ----------
    table : pyarrow.Table
        The rows to write.
    zstd_level : int
        The zstd compression level.
    row_group_size : int or None
        Rows per row group (None: pyarrow's default).

    Returns
    -------
    bytes
        The file's content.
    """
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=zstd_level,
        write_statistics=True,
        row_group_size=row_group_size,
    )
    return sink.getvalue()
