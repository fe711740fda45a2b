"""Instrument profiles: how a camera's headers map to the standard frame record, and its
processing parameters. Profiles live in ``pipelines/*.toml`` (or YAML); a profile may
``extends = "other"`` and override only what differs. No code is needed for a new camera.

>>> p = load_profile("skycamz")
>>> p.detection.thresh, p.site.night_starts
(1.5, '17:30')
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from skylake import PIPELINE_VERSION
from skylake.paths import project_dir


class ProfileError(ValueError):
    """A profile file is missing, malformed, or names unknown settings."""


@dataclass(frozen=True)
class Site:
    name: str
    lat_deg: float
    lon_deg: float
    height_m: float
    timezone: str
    night_starts: str  # "HH:MM" local time


@dataclass(frozen=True)
class HeaderMap:
    instrument: list[str]
    filter: list[str]
    object: list[str]
    date_obs: list[str]
    mjd: list[str]
    exptime: list[str]
    airmass: list[str]
    altitude: list[str]
    azimuth: list[str]
    gain: list[str]
    saturation: list[str]
    time_reference: str  # "start" | "mid"


@dataclass(frozen=True)
class Defaults:
    instrument: str
    filter: str
    object: str
    gain: float
    saturation: float


@dataclass(frozen=True)
class Detection:
    thresh: float
    minarea: int
    back_size: int
    back_filtersize: int
    filter_kernel: str
    deblend_nthresh: int
    deblend_cont: float
    clean: bool
    clean_param: float
    pixstack: int
    sub_object_limit: int
    max_pixstack: int
    max_sub_object_limit: int


@dataclass(frozen=True)
class Photometry:
    aperture_radii: list[float]
    annulus: list[float]
    kron_factor: float
    kron_min_radius: float


@dataclass(frozen=True)
class Quality:
    min_sources: int
    max_elongation: float
    max_theta_kurtosis: float
    max_flux: float
    min_src_background: float
    max_src_background_mad: float


_SECTIONS = {
    "site": Site,
    "header": HeaderMap,
    "defaults": Defaults,
    "detection": Detection,
    "photometry": Photometry,
    "quality": Quality,
}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    hdu: str | int
    site: Site
    header: HeaderMap
    defaults: Defaults
    detection: Detection
    photometry: Photometry
    quality: Quality
    source: str  # the file it was read from

    @property
    def digest(self) -> str:
        """Short hash of every processing setting: changing any of them changes frame identity."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("source", "description")}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def pipeline_version(self) -> str:
        """The version string recorded with every frame: skylake's pipeline version and this profile's digest."""
        return f"{PIPELINE_VERSION}+{self.name}.{self.digest}"


def _read_file(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from exc
    try:
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(text) or {}
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ProfileError(f"profile {path} is not valid {path.suffix.lstrip('.')}: {exc}") from exc


def _resolve(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".toml", ".yaml", ".yml"):
        if not path.is_file():
            raise ProfileError(f"profile file {path} does not exist")
        return path
    builtin = project_dir("pipelines") / f"{name_or_path}.toml"
    if not builtin.is_file():
        known = sorted(p.stem for p in project_dir("pipelines").glob("*.toml"))
        raise ProfileError(f"unknown profile {name_or_path!r}; known profiles: {known}, or give a .toml/.yaml path")
    return builtin


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _load_dict(name_or_path: str | Path, seen: tuple = ()) -> dict:
    path = _resolve(name_or_path)
    if path in seen:
        raise ProfileError(f"profile {path} extends itself through {[str(s) for s in seen]}")
    doc = _read_file(path)
    parent = doc.pop("extends", None)
    if parent is not None:
        doc = _merge(_load_dict(parent, seen + (path,)), doc)
    doc.setdefault("_source", str(path))
    doc["_source"] = str(path)
    return doc


def _section(cls, doc: dict, section: str, source: str):
    values = doc.get(section, {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    missing = sorted(names - set(values))
    if unknown:
        raise ProfileError(f"{source}: [{section}] has unknown settings {unknown}; allowed: {sorted(names)}")
    if missing:
        raise ProfileError(f"{source}: [{section}] lacks {missing} (start from pipelines/generic.toml)")
    return cls(**values)


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a built-in profile by name (``pipelines/NAME.toml``) or a user's TOML/YAML file."""
    doc = _load_dict(name_or_path)
    source = doc.pop("_source")
    meta = doc.get("profile", {})
    unknown = sorted(set(doc) - set(_SECTIONS) - {"profile"})
    if unknown:
        raise ProfileError(f"{source}: unknown sections {unknown}; allowed: {['profile', *_SECTIONS]}")
    sections = {name: _section(cls, doc, name, source) for name, cls in _SECTIONS.items()}
    if len(sections["photometry"].aperture_radii) != 3:
        raise ProfileError(f"{source}: photometry.aperture_radii must list exactly 3 radii (flux_ap1..3), got "
                           f"{sections['photometry'].aperture_radii}")
    if sections["header"].time_reference not in ("start", "mid"):
        raise ProfileError(f"{source}: header.time_reference must be 'start' or 'mid', got "
                           f"{sections['header'].time_reference!r}")
    return Profile(name=meta.get("name", Path(source).stem), description=meta.get("description", ""),
                   hdu=meta.get("hdu", "auto"), source=source, **sections)
