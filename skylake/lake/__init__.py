"""The lake on disk: storage, the commit log, transactions, snapshots and the table registry.

It knows files, partitions and commits, never what a product means: product packages (``frame``,
``calib``, ``objects``, ``maps``, ``allsky``, ``ensemble``, ``db``) import it, never the reverse
(tests/test_imports.py checks). Modules:

- :mod:`~skylake.lake.storage`: one backend class per kind of store (local disk, S3, read-only fsspec), chosen by
  the URL's scheme, with atomic put-if-absent, replace and a writer lock;
- :mod:`~skylake.lake.log`: the commit log's entries and file actions, batch names;
- :mod:`~skylake.lake.transaction`: staging files and the commit point;
- :mod:`~skylake.lake.lake`: opening, reading, publishing and recovering a lake;
- :mod:`~skylake.lake.snapshot`, :mod:`~skylake.lake.history` and :mod:`~skylake.lake.pinned`: time travel,
  vacuum, and reading the files a version names;
- :mod:`~skylake.lake.tables` (from ``schemas/``), :mod:`~skylake.lake.nights`, :mod:`~skylake.lake.hats_meta`:
  the registry and the two partitionings (nights, HEALPix);
- :mod:`~skylake.lake.parquet`, :mod:`~skylake.lake.pieces`, :mod:`~skylake.lake.frame_index`,
  :mod:`~skylake.lake.counts`, :mod:`~skylake.lake.compact`: files, workers' pieces, indexes, totals.
"""

from skylake.lake.lake import Lake, LakeConfig, LakeView
from skylake.lake.snapshot import Snapshot, open_lake
from skylake.lake.transaction import Transaction

__all__ = ["Lake", "LakeConfig", "LakeView", "Snapshot", "Transaction", "open_lake"]
