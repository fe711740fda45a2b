"""Reference catalogues (APASS, Pan-STARRS1, ATLAS-refcat2, Gaia, Tycho-2, Hipparcos, BSC5, or any
catalogue through a user column map) as HATS collections under ``LAKE/refcats/NAME/``.

- :mod:`~skylake.refcat.formats`: the per-format column maps (``pipelines/refcats.toml``);
- :mod:`~skylake.refcat.readers`: chunked CSV/ECSV/FITS/Parquet readers;
- :mod:`~skylake.refcat.normalise`: native chunk -> ``schemas/refcat.yaml`` rows, bad coordinates counted;
- :mod:`~skylake.refcat.importer`: shards -> hats-import collection + margin cache, atomic swap;
- :mod:`~skylake.refcat.query`: list, cone search, proper-motion propagation;
- :mod:`~skylake.refcat.synthetic`: large synthetic APASS/PS1-format catalogues for tests and benchmarks;
- :mod:`~skylake.refcat.cli`: ``skylake refcat import|list|cone``.

>>> from skylake.refcat import import_refcat, cone_search           # doctest: +SKIP
>>> import_refcat("LAKE", "tycho2", ["tycho2_vt.parquet"], "tycho2")  # doctest: +SKIP
>>> cone_search("LAKE", "tycho2", 256.17, 12.79, 3600)               # doctest: +SKIP
"""

from skylake.refcat.errors import ColumnMapError, FormatMismatch, RefcatError
from skylake.refcat.formats import format_names, get_format, load_column_map
from skylake.refcat.importer import ImportReport, default_margin_arcsec, import_refcat, read_record
from skylake.refcat.query import cone_search, list_refcats, propagate, refcat_path

__all__ = ["import_refcat", "ImportReport", "list_refcats", "cone_search", "propagate", "refcat_path",
           "read_record", "default_margin_arcsec", "get_format", "load_column_map", "format_names",
           "RefcatError", "FormatMismatch", "ColumnMapError"]
