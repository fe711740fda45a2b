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

NAME = REFCAT
HEALPIX = "_healpix_29"


@functools.cache
def _doc() -> dict:
    with open(project_dir("schemas") / f"{NAME}.yaml") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: start-up


@functools.cache
def band_names() -> tuple[str, ...]:
    """Standard band names, in schema order (U, B, V, ..., J, H, K)."""
    return tuple(b["name"] for b in _doc()["bands"])


@functools.cache
def flag_bits() -> dict[str, int]:
    """Quality flag name -> bit value of the ``flags`` column."""
    return {f["name"]: int(f["bit"]) for f in _doc()["flag_bits"]}


def core_schema(with_healpix: bool = False) -> pa.Schema:
    """The fixed columns (without ``_healpix_29``, which hats-import adds, unless asked)."""
    schema = table_spec(NAME).schema
    return schema if with_healpix else schema.remove(schema.get_field_index(HEALPIX))


def band_fields(band: str, system: str = "") -> list[pa.Field]:
    """The ``mag_<band>`` and ``err_<band>`` fields of one band."""
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
    """``bands`` in schema order; raises ``ValueError`` naming any unknown band."""
    order = {b: i for i, b in enumerate(band_names())}
    unknown = [b for b in bands if b not in order]
    if unknown:
        raise ValueError(f"unknown band(s) {unknown}; schemas/{NAME}.yaml knows {list(band_names())}")
    return sorted(set(bands), key=order.__getitem__)


def refcat_schema(bands, systems: dict[str, str] | None = None, with_healpix: bool = False) -> pa.Schema:
    """Schema of a catalogue holding ``bands`` (any order; written in schema order)."""
    fields = list(core_schema(with_healpix))
    for band in sort_bands(bands):
        fields.extend(band_fields(band, (systems or {}).get(band, "")))
    return pa.schema(fields)
