"""Reference catalogues (APASS, Pan-STARRS1, ATLAS-refcat2, Gaia, Tycho-2, Hipparcos, BSC5, or any
catalogue through a user column map) as HATS collections under ``LAKE/refcats/NAME/``.

- :mod:`~skylake.refcat.formats`: the per-format column maps (``pipelines/refcats.toml``);
- :mod:`~skylake.refcat.readers`: chunked CSV/ECSV/FITS/Parquet readers;
- :mod:`~skylake.refcat.normalise`: native chunk -> ``schemas/refcat.yaml`` rows, bad coordinates counted;
- :mod:`~skylake.refcat.partition`: sorted shards -> HATS partitions and margin cache (hats' alignment);
- :mod:`~skylake.refcat.importer`: the import from files to collection, its record, the atomic swap;
- :mod:`~skylake.refcat.query`: list, cone search, proper-motion propagation;
- :mod:`~skylake.synthetic.refcat`: large synthetic APASS/PS1-format catalogues for tests and benchmarks;
- :mod:`~skylake.refcat.cli`: ``skylake refcat import|list|cone``.

>>> from skylake.refcat import import_refcat, cone_search           # doctest: +SKIP
>>> import_refcat("LAKE", "tycho2", ["tycho2_vt.parquet"], "tycho2")  # doctest: +SKIP
>>> cone_search("LAKE", "tycho2", 256.17, 12.79, 3600)               # doctest: +SKIP
"""

#: Defaults of an import (used by the importer and the CLI; kept here so the CLI loads nothing heavy).
DEFAULT_MARGIN_ARCSEC = 10.0  # arcsec: wider than any cross-match radius skylake uses by default
DEFAULT_PIXEL_THRESHOLD = 1_000_000  # rows per partition: ~100-150 MB in memory for a 20-column catalogue
DEFAULT_HIGHEST_ORDER = 8  # the rows' histogram grows 4x per order; order 8 pixels are 13.7'
MAPS_FILE = "refcats.toml"  # in pipelines/: the column maps of the built-in formats
GENERIC = "generic"  # the format that takes a user's column map

_EXPORTS = {
    "import_refcat": "importer",
    "ImportReport": "importer",
    "default_margin_arcsec": "importer",
    "read_record": "importer",
    "list_refcats": "query",
    "cone_search": "query",
    "propagate": "query",
    "refcat_path": "query",
    "get_format": "formats",
    "load_column_map": "formats",
    "format_names": "formats",
    "RefcatError": "errors",
    "FormatMismatch": "errors",
    "ColumnMapError": "errors",
}
__all__ = [
    *_EXPORTS,
    "DEFAULT_MARGIN_ARCSEC",
    "DEFAULT_PIXEL_THRESHOLD",
    "DEFAULT_HIGHEST_ORDER",
    "GENERIC",
    "MAPS_FILE",
]


def __getattr__(name: str):
    """Import the public API lazily: ``skylake --help`` should not pay for pyarrow, hats and astropy."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"skylake.refcat.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'skylake.refcat' has no attribute {name!r}")
