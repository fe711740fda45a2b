"""The reference-catalogue schema, read from ``schemas/refcat.yaml``.

A catalogue's columns are the fixed ones of that file plus ``mag_<band>`` and ``err_<band>`` for the
bands its format provides, in the file's band order:

>>> refcat_schema(["V", "B"]).names[-4:]
['mag_B', 'err_B', 'mag_V', 'err_V']
"""

from __future__ import annotations

import functools

import pyarrow as pa
import yaml

from skylake.lake.tables import REFCAT
from skylake.paths import project_dir
from skylake.schema import table_spec

__all__ = ["NAME", "HEALPIX", "band_names", "flag_bits", "core_schema", "band_fields", "sort_bands", "refcat_schema"]


NAME = REFCAT
HEALPIX = "_healpix_29"


@functools.cache
def _doc() -> dict:
    with open(project_dir("schemas") / f"{NAME}.yaml") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: start-up


@functools.cache
def band_names() -> tuple[str, ...]:
    """Standard band names, in schema order (U, B, V, ..., J, H, K).

    Returns
    -------
    tuple of str
        The names of the ``bands`` of ``schemas/refcat.yaml``.
    """
    return tuple(b["name"] for b in _doc()["bands"])


@functools.cache
def flag_bits() -> dict[str, int]:
    """Quality flag name -> bit value of the ``flags`` column.

    Returns
    -------
    dict of str to int
        Each flag of ``schemas/refcat.yaml``'s ``flag_bits`` and its bit value.
    """
    return {f["name"]: int(f["bit"]) for f in _doc()["flag_bits"]}


def core_schema(with_healpix: bool = False) -> pa.Schema:
    """The fixed columns (without ``_healpix_29``, which the import adds, unless asked).

    Parameters
    ----------
    with_healpix : bool
        Keep the ``_healpix_29`` column.

    Returns
    -------
    pyarrow.Schema
        The fixed columns of ``schemas/refcat.yaml``.
    """
    schema = table_spec(NAME).schema
    return schema if with_healpix else schema.remove(schema.get_field_index(HEALPIX))


def band_fields(band: str, system: str = "") -> list[pa.Field]:
    """The ``mag_<band>`` and ``err_<band>`` fields of one band.

    Parameters
    ----------
    band : str
        A standard band name (:func:`band_names`).
    system : str
        The band's photometric system, for the fields' descriptions (default: the band's name).

    Returns
    -------
    list of pyarrow.Field
        The band's columns, with unit and description metadata.

    Raises
    ------
    ValueError
        ``band`` is not a standard band.
    """
    if band not in band_names():
        raise ValueError(f"unknown band {band!r}; schemas/{NAME}.yaml knows {list(band_names())}")
    fields = []
    for col in _doc()["band_columns"]:
        meta = {
            "unit": col.get("unit", ""),
            "description": col.get("description", "").format(band=band, system=system or band),
        }
        fields.append(pa.field(col["name"].format(band=band), pa.type_for_alias(col["type"]), metadata=meta))
    return fields


def sort_bands(bands) -> list[str]:
    """``bands`` in schema order.

    Parameters
    ----------
    bands : iterable of str
        Band names, in any order (repeats are dropped).

    Returns
    -------
    list of str
        The bands in schema order.

    Raises
    ------
    ValueError
        Naming any unknown band.
    """
    order = {b: i for i, b in enumerate(band_names())}
    unknown = [b for b in bands if b not in order]
    if unknown:
        raise ValueError(f"unknown band(s) {unknown}; schemas/{NAME}.yaml knows {list(band_names())}")
    return sorted(set(bands), key=order.__getitem__)


def refcat_schema(bands, systems: dict[str, str] | None = None, with_healpix: bool = False) -> pa.Schema:
    """Schema of a catalogue holding ``bands`` (any order; written in schema order).

    Parameters
    ----------
    bands : iterable of str
        The catalogue's bands.
    systems : dict of str to str or None
        Photometric system per band, for the columns' descriptions.
    with_healpix : bool
        Include the ``_healpix_29`` column.

    Returns
    -------
    pyarrow.Schema
        The fixed columns, then ``mag_<band>`` and ``err_<band>`` of each band.

    Raises
    ------
    ValueError
        A band is unknown.
    """
    fields = list(core_schema(with_healpix))
    for band in sort_bands(bands):
        fields.extend(band_fields(band, (systems or {}).get(band, "")))
    return pa.schema(fields)
