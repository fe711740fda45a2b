"""Column maps: how each reference-catalogue format's native columns become the refcat schema.

The maps live in ``pipelines/refcats.toml`` (its header documents the spec language); a user's map
for ``--format generic`` is a TOML or YAML file with one ``[columns]`` table (and optionally
``[flags]``, ``description``, ``systems``, ``csv_names``). This module parses and validates them into
:class:`Format` / :class:`Variant` objects; :mod:`skylake.refcat.normalise` evaluates them.

>>> get_format("tycho2").match(["ra", "dec", "mag_vt"]).label
'tycho2.decoded'
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import yaml

from skylake.paths import project_dir
from skylake.refcat import GENERIC, MAPS_FILE
from skylake.refcat.errors import ColumnMapError, FormatMismatch
from skylake.refcat.schema import core_schema, flag_bits, refcat_schema, sort_bands

__all__ = [
    "REQUIRED_TARGETS",
    "OPS",
    "CONVERTERS",
    "INT",
    "FLOAT",
    "STRING",
    "BOOL",
    "Condition",
    "Spec",
    "Variant",
    "Format",
    "load_formats",
    "format_names",
    "load_column_map",
    "get_format",
]


REQUIRED_TARGETS = ("ra", "dec", "epoch")
OPS = ("eq", "ne", "gt", "ge", "lt", "le", "valid")
CONVERTERS = ("mjd_to_jyear", "snr_to_mag_err", "hms_string", "dms_string")
#: Read types of source columns: None means "whatever the file holds" (text files: string).
INT, FLOAT, STRING, BOOL = pa.int64(), pa.float64(), pa.string(), pa.bool_()


@dataclass(frozen=True)
class Condition:
    """A per-row test on one native column (for ``flags`` and ``where``).

    Attributes
    ----------
    col : str
        The native column.
    op : str
        The test, one of :data:`OPS` (``valid``: the value is present).
    value : object
        The value compared with.
    mask : int or None
        A bit mask the column's integers are ANDed with before the test.
    optional : bool
        The column may be absent from a file (the test is then False).
    """

    col: str
    op: str
    value: object = None
    mask: int | None = None
    optional: bool = False

    def read_types(self) -> dict[str, pa.DataType | None]:
        """The native column this condition reads, with the type to read it as.

        Returns
        -------
        dict of str to pyarrow.DataType or None
            ``{col: type}``: integers with a mask, as stored (None) for ``valid``, else by the value's type
            (bool, string, or float for numbers).
        """
        if self.mask is not None:
            return {self.col: INT}
        if self.op == "valid":
            return {self.col: None}
        if isinstance(self.value, bool):
            return {self.col: BOOL}
        if isinstance(self.value, str):
            return {self.col: STRING}
        return {self.col: FLOAT}


@dataclass(frozen=True)
class Spec:
    """How one target column is computed (see the header of pipelines/refcats.toml).

    Attributes
    ----------
    kind : str
        One of ``col``, ``const``, ``coalesce``, ``sum``, ``hms``, ``dms``, ``tycho_id``, ``derive``.
    col : str or None
        The native column (``col``).
    optional : bool
        The column may be absent from a file (the target is then null).
    null : tuple
        Sentinel values that mean null.
    convert : str or None
        A conversion, one of :data:`CONVERTERS`.
    scale : float or None
        A factor the values are multiplied by.
    offset : float or None
        A number added to the values (after ``scale``).
    value : object
        The constant (``const``), or ``healpix29`` (``derive``).
    parts : tuple of Spec
        The specs combined (``coalesce``: the first valid value of them; ``sum``: their sum).
    cols : tuple of str
        The native columns of ``hms`` (hours, minutes, seconds), ``dms`` (sign, degrees, minutes, seconds)
        and ``tycho_id`` (its three numbers).
    where : Condition or None
        The values are kept where it holds, null elsewhere.
    """

    kind: str  # col | const | coalesce | sum | hms | dms | tycho_id | derive
    col: str | None = None
    optional: bool = False
    null: tuple = ()
    convert: str | None = None
    scale: float | None = None
    offset: float | None = None
    value: object = None
    parts: tuple[Spec, ...] = ()
    cols: tuple[str, ...] = ()
    where: Condition | None = None

    def read_types(self, target_type: pa.DataType) -> dict[str, pa.DataType | None]:
        """Native columns this spec reads, with the type to read each as.

        Parameters
        ----------
        target_type : pyarrow.DataType
            The target column's type.

        Returns
        -------
        dict of str to pyarrow.DataType or None
            The type to read each column as; None: as the file holds it (the uses disagree; each casts).
        """
        out: dict[str, pa.DataType | None] = {}
        if self.kind == "col":
            if self.convert in ("hms_string", "dms_string"):
                out[self.col] = STRING
            else:
                out[self.col] = INT if pa.types.is_integer(target_type) and self.scale is None else FLOAT
        elif self.kind in ("coalesce", "sum"):
            for part in self.parts:
                _merge_types(out, part.read_types(target_type))
        elif self.kind == "hms":
            out.update({c: FLOAT for c in self.cols})
        elif self.kind == "dms":
            out.update({self.cols[0]: STRING, **{c: FLOAT for c in self.cols[1:]}})
        elif self.kind == "tycho_id":
            out.update({c: INT for c in self.cols})
        if self.where is not None:
            _merge_types(out, self.where.read_types())
        return out

    def required_columns(self) -> set[str]:
        """Native columns that must be present for this spec to apply.

        Returns
        -------
        set of str
            The columns read, except optional ones.
        """
        if self.kind == "col":
            req = set() if self.optional else {self.col}
        elif self.kind in ("coalesce", "sum"):
            req = set().union(*(p.required_columns() for p in self.parts))
        elif self.kind in ("hms", "dms", "tycho_id"):
            req = set(self.cols)
        else:
            req = set()
        if self.where is not None and not self.where.optional:
            req.add(self.where.col)
        return req


def _merge_types(into: dict, new: dict) -> None:
    for col, typ in new.items():
        if col in into and into[col] != typ:
            into[col] = None  # read as the file has it; each use casts
        else:
            into.setdefault(col, typ)


@dataclass(frozen=True)
class Variant:
    """One distribution of a format (its native column names).

    Attributes
    ----------
    format : str
        The format's name.
    name : str
        The variant's name.
    description : str
        What the variant is.
    columns : dict of str to Spec
        How each target column is computed.
    flags : dict of str to tuple of Condition
        The conditions of each quality flag (any of them sets it).
    csv_names : tuple of str
        The column names of a headerless CSV file of this variant.
    """

    format: str
    name: str
    description: str
    columns: dict[str, Spec]
    flags: dict[str, tuple[Condition, ...]] = field(default_factory=dict)
    csv_names: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The variant's name qualified by its format's.

        Returns
        -------
        str
            ``format.name``, e.g. ``tycho2.decoded``.
        """
        return f"{self.format}.{self.name}"

    def required_columns(self) -> list[str]:
        """Native columns a file must have for this variant to read it.

        Returns
        -------
        list of str
            The required columns of every target column and flag, sorted.
        """
        req = set().union(*(spec.required_columns() for spec in self.columns.values()))
        for conds in self.flags.values():
            req |= {c.col for c in conds if not c.optional}
        return sorted(req)

    def read_types(self, target_types: dict[str, pa.DataType], available) -> dict[str, pa.DataType | None]:
        """Native columns to read from a file holding ``available`` columns, with their read types.

        Parameters
        ----------
        target_types : dict of str to pyarrow.DataType
            The type of each target column.
        available : iterable of str
            The file's columns.

        Returns
        -------
        dict of str to pyarrow.DataType or None
            The type to read each column as (None: as the file holds it); absent columns are left out.
        """
        out: dict[str, pa.DataType | None] = {}
        for target, spec in self.columns.items():
            _merge_types(out, spec.read_types(target_types[target]))
        for conds in self.flags.values():
            for cond in conds:
                _merge_types(out, cond.read_types())
        avail = set(available)
        return {c: t for c, t in out.items() if c in avail}


@dataclass(frozen=True)
class Format:
    """A reference-catalogue format: its bands and the variants it can read.

    Attributes
    ----------
    name : str
        The format's name.
    description : str
        What the format is.
    bands : tuple of str
        Its bands, in schema order.
    systems : dict of str to str
        The photometric system of a band, where given.
    variants : tuple of Variant
        The variants, in the order they are tried.
    """

    name: str
    description: str
    bands: tuple[str, ...]
    systems: dict[str, str]
    variants: tuple[Variant, ...]

    def schema(self, with_healpix: bool = False) -> pa.Schema:
        """The schema of a catalogue of this format.

        Parameters
        ----------
        with_healpix : bool
            Include the ``_healpix_29`` column.

        Returns
        -------
        pyarrow.Schema
            The fixed columns plus those of the format's bands.
        """
        return refcat_schema(self.bands, self.systems, with_healpix=with_healpix)

    def match(self, columns, path: str = "file") -> Variant:
        """The first variant whose required columns are all in ``columns``.

        Parameters
        ----------
        columns : iterable of str
            A file's column names.
        path : str
            The file, for the error message.

        Returns
        -------
        Variant
            The variant that reads the file.

        Raises
        ------
        FormatMismatch
            No variant fits, listing, per variant, the expected and the missing names.
        """
        have = set(columns)
        for variant in self.variants:
            if not set(variant.required_columns()) - have:
                return variant
        lines = [f"{path}: columns do not fit format {self.name!r}; it has {sorted(have)}"]
        for variant in self.variants:
            req = variant.required_columns()
            lines.append(
                f"  variant {variant.name!r} ({variant.description.splitlines()[0]}) expects {req}; "
                f"missing {[c for c in req if c not in have]}"
            )
        raise FormatMismatch("\n".join(lines))


# -- parsing -----------------------------------------------------------------------------------------
def _parse_condition(raw, where: str) -> Condition:
    if not isinstance(raw, dict) or "col" not in raw:
        raise ColumnMapError(f"{where}: a condition must be a table with 'col' and 'op', got {raw!r}")
    unknown = set(raw) - {"col", "op", "value", "mask", "optional"}
    if unknown:
        raise ColumnMapError(f"{where}: unknown condition key(s) {sorted(unknown)}")
    op = raw.get("op", "valid")
    if op not in OPS:
        raise ColumnMapError(f"{where}: op {op!r} is not one of {list(OPS)}")
    if op != "valid" and "value" not in raw:
        raise ColumnMapError(f"{where}: op {op!r} needs a 'value'")
    mask = raw.get("mask")
    if mask is not None and not isinstance(mask, int):
        raise ColumnMapError(f"{where}: mask must be an integer, got {mask!r}")
    return Condition(
        col=str(raw["col"]), op=op, value=raw.get("value"), mask=mask, optional=bool(raw.get("optional", False))
    )


_SPEC_KEYS = {
    "col",
    "optional",
    "null",
    "convert",
    "scale",
    "offset",
    "const",
    "coalesce",
    "sum",
    "hms",
    "dms",
    "tycho_id",
    "derive",
    "where",
}


def _parse_spec(raw, where: str) -> Spec:
    if isinstance(raw, str):
        return Spec(kind="col", col=raw)
    if not isinstance(raw, dict):
        raise ColumnMapError(f"{where}: expected a column name or a table, got {raw!r}")
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise ColumnMapError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_SPEC_KEYS)}")
    cond = _parse_condition(raw["where"], f"{where}.where") if "where" in raw else None
    kinds = [k for k in ("col", "const", "coalesce", "sum", "hms", "dms", "tycho_id", "derive") if k in raw]
    if len(kinds) != 1:
        raise ColumnMapError(
            f"{where}: give exactly one of col/const/coalesce/sum/hms/dms/tycho_id/derive, got {kinds or 'none'}"
        )
    kind = kinds[0]
    if kind == "col":
        convert = raw.get("convert")
        if convert is not None and convert not in CONVERTERS:
            raise ColumnMapError(f"{where}: convert {convert!r} is not one of {list(CONVERTERS)}")
        null = raw.get("null", [])
        if not isinstance(null, list):
            raise ColumnMapError(f"{where}: null must be a list of values, got {null!r}")
        for key in ("scale", "offset"):
            if key in raw and not isinstance(raw[key], (int, float)):
                raise ColumnMapError(f"{where}: {key} must be a number, got {raw[key]!r}")
        return Spec(
            kind="col",
            col=str(raw["col"]),
            optional=bool(raw.get("optional", False)),
            null=tuple(null),
            convert=convert,
            scale=raw.get("scale"),
            offset=raw.get("offset"),
            where=cond,
        )
    if kind == "const":
        return Spec(kind="const", value=raw["const"], where=cond)
    if kind in ("coalesce", "sum"):
        items = raw[kind]
        if not isinstance(items, list) or not items:
            raise ColumnMapError(f"{where}: {kind} needs a non-empty list of specs")
        parts = tuple(_parse_spec(item, f"{where}.{kind}[{i}]") for i, item in enumerate(items))
        return Spec(kind=kind, parts=parts, where=cond)
    if kind == "derive":
        if raw["derive"] != "healpix29":
            raise ColumnMapError(f"{where}: derive supports only 'healpix29', got {raw['derive']!r}")
        return Spec(kind="derive", value="healpix29")
    n = {"hms": 3, "dms": 4, "tycho_id": 3}[kind]
    cols = raw[kind]
    if not isinstance(cols, list) or len(cols) != n or not all(isinstance(c, str) for c in cols):
        raise ColumnMapError(f"{where}: {kind} needs a list of {n} column names, got {cols!r}")
    return Spec(kind=kind, cols=tuple(cols), where=cond)


def _parse_variant(fmt: str, name: str, doc: dict, bands: set[str] | None, source: str) -> Variant:
    where = f"{source} [{fmt}.{name}]" if fmt != GENERIC else source
    columns_raw = doc.get("columns")
    if not isinstance(columns_raw, dict) or not columns_raw:
        raise ColumnMapError(f"{where}: needs a [columns] table mapping target columns to native ones")
    core = set(core_schema().names) - {"flags"}
    columns: dict[str, Spec] = {}
    for target, raw in columns_raw.items():
        if target.startswith(("mag_", "err_")):
            band = target[4:]
            if bands is not None and band not in bands:
                raise ColumnMapError(f"{where}: {target} is not a band of format {fmt!r} (bands {sorted(bands)})")
            try:
                sort_bands([band])
            except ValueError as exc:
                raise ColumnMapError(f"{where}: {target}: {exc}") from None
        elif target not in core:
            raise ColumnMapError(
                f"{where}: unknown target column {target!r}; targets are {sorted(core)} and mag_<band>/err_<band>"
            )
        spec = _parse_spec(raw, f"{where} columns.{target}")
        if spec.kind == "derive" and target != "ref_id":
            raise ColumnMapError(f"{where}: derive is only for ref_id, not {target}")
        columns[target] = spec
    missing = [t for t in REQUIRED_TARGETS if t not in columns]
    if missing:
        raise ColumnMapError(f"{where}: must map {missing} (e.g. epoch = {{const = 2000.0}} for J2000 positions)")
    columns.setdefault("ref_id", Spec(kind="derive", value="healpix29"))
    flags: dict[str, tuple[Condition, ...]] = {}
    known_flags = flag_bits()
    for flag, raw in (doc.get("flags") or {}).items():
        if flag not in known_flags:
            raise ColumnMapError(f"{where}: unknown flag {flag!r}; schemas/refcat.yaml defines {sorted(known_flags)}")
        items = raw if isinstance(raw, list) else [raw]
        flags[flag] = tuple(_parse_condition(c, f"{where} flags.{flag}") for c in items)
    csv_names = tuple(doc.get("csv_names", ()))
    return Variant(
        format=fmt,
        name=name,
        description=str(doc.get("description", name)).strip(),
        columns=columns,
        flags=flags,
        csv_names=csv_names,
    )


def _parse_format(name: str, doc: dict, source: str) -> Format:
    bands = doc.get("bands")
    if not isinstance(bands, list) or not bands:
        raise ColumnMapError(f"{source} [{name}]: needs bands = [...]")
    try:
        bands = tuple(sort_bands(bands))
    except ValueError as exc:
        raise ColumnMapError(f"{source} [{name}]: {exc}") from None
    variants = tuple(
        _parse_variant(name, key, sub, set(bands), source)
        for key, sub in doc.items()
        if isinstance(sub, dict) and "columns" in sub
    )
    if not variants:
        raise ColumnMapError(f"{source} [{name}]: defines no variant ([{name}.NAME.columns])")
    return Format(
        name=name,
        description=str(doc.get("description", name)),
        bands=bands,
        systems=dict(doc.get("systems", {})),
        variants=variants,
    )


@functools.cache
def load_formats() -> dict[str, Format]:
    """Every built-in format of ``pipelines/refcats.toml``, by name.

    Returns
    -------
    dict of str to Format
        The formats (parsed once per process).

    Raises
    ------
    ColumnMapError
        The file defines a malformed format.
    """
    path = project_dir("pipelines") / MAPS_FILE
    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    return {name: _parse_format(name, sub, f"pipelines/{MAPS_FILE}") for name, sub in doc.items()}


def format_names() -> list[str]:
    """Built-in format names plus ``generic``.

    Returns
    -------
    list of str
        The names, ``generic`` last.
    """
    return [*load_formats(), GENERIC]


def load_column_map(path: str | Path) -> Format:
    """A user's column map (``--format generic --columns-map FILE``, TOML or YAML) as a one-variant format.

    Parameters
    ----------
    path : str or pathlib.Path
        The map: YAML for a ``.yaml`` or ``.yml`` file, else TOML.

    Returns
    -------
    Format
        The ``generic`` format, with the bands the map's ``mag_``/``err_`` targets name and one variant
        named after the file.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ColumnMapError
        The file cannot be parsed or the map is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"column map {path} does not exist")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            doc = yaml.safe_load(path.read_text())
        else:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ColumnMapError(f"{path}: cannot parse the column map: {exc}") from None
    if not isinstance(doc, dict):
        raise ColumnMapError(f"{path}: expected a table with [columns], got {type(doc).__name__}")
    variant = _parse_variant(GENERIC, path.stem, doc, None, str(path))
    bands = sort_bands({t[4:] for t in variant.columns if t.startswith(("mag_", "err_"))})
    return Format(
        name=GENERIC,
        description=str(doc.get("description", f"column map {path.name}")),
        bands=tuple(bands),
        systems=dict(doc.get("systems", {})),
        variants=(variant,),
    )


def get_format(name: str, columns_map: str | Path | None = None) -> Format:
    """The format ``name``; ``generic`` needs ``columns_map`` (and only it takes one).

    Parameters
    ----------
    name : str
        A built-in format's name, or ``generic``.
    columns_map : str or pathlib.Path or None
        The user's column map of the ``generic`` format.

    Returns
    -------
    Format
        The format.

    Raises
    ------
    ColumnMapError
        ``generic`` without a column map, a column map with another format, an unknown format, or a
        malformed map.
    FileNotFoundError
        The column map does not exist.
    """
    if name == GENERIC:
        if columns_map is None:
            raise ColumnMapError("--format generic needs --columns-map FILE (a TOML/YAML [columns] table)")
        return load_column_map(columns_map)
    if columns_map is not None:
        raise ColumnMapError(
            f"--columns-map is for --format generic; format {name!r} has its map in pipelines/{MAPS_FILE}"
        )
    formats = load_formats()
    if name not in formats:
        raise ColumnMapError(f"unknown format {name!r}; known: {format_names()}")
    return formats[name]
