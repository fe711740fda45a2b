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


@dataclass(frozen=True)
class Calibration:
    """Photometric calibration against a reference catalogue (``skylake calibrate``; pipelines/generic.toml
    documents each setting). Magnitudes in mag, distances in arcsec or pixels as named."""

    refcat: str  # LAKE/refcats/NAME used by ingest and by calibrate without --refcat; "" = none
    band: str  # reference band: the catalogue's mag_<band>
    color: list[str]  # [] or [b1, b2]: colour = mag_<b1> - mag_<b2>
    color_range: list[float]  # stars used in the colour fit have a colour inside [lo, hi]
    match_radius_arcsec: float
    min_stars: int
    clip_sigma: float
    clip_max_residual: float
    mag_limits: list[float]  # [bright, faint] reference magnitudes of usable stars
    max_inst_mag_err: float  # too faint above this instrumental error
    edge_distance_px: float
    flags_mask: int  # source flags that reject a star
    blend_flags: int  # source flags that mean "blended" (sep OBJ_MERGED)
    ref_flags_mask: int  # reference-catalogue flags (schemas/refcat.yaml flag_bits) that reject a star
    blend_delta_mag: float  # a second reference star within the radius and brighter than mag + this: blended
    saturation_fraction: float  # peak + background above this fraction of the frame's saturation: saturated
    max_scatter: float  # robust scatter above this: high_scatter
    max_zp_variation: float  # zeropoint change across the frame (plane fit of residuals) above this: cloudy
    max_zp_drop: float  # zeropoint below the night's clear-sky model by more than this: cloudy
    min_airmass_range: float  # an extinction term is fitted for a night whose ok frames span this much
    min_extinction_frames: int

    @property
    def digest(self) -> str:
        """Short hash of the settings: part of a calibration's identity."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def color_name(self) -> str:
        return f"{self.color[0]}-{self.color[1]}" if self.color else ""


@dataclass(frozen=True)
class Maps:
    """HEALPix maps (``skylake maps``; pipelines/generic.toml documents each setting)."""

    nside: int  # HEALPix nside (a power of two; the all-sky pipeline uses 8)
    zp_clear: float | str  # clear-sky reference zeropoint [mag for 1 ADU/s], or "auto" (the night's extinction fit)
    min_stars: int  # transparency and zeropoint are null in pixels with fewer star measurements


_SECTIONS = {
    "site": Site,
    "header": HeaderMap,
    "defaults": Defaults,
    "detection": Detection,
    "photometry": Photometry,
    "quality": Quality,
    "calibration": Calibration,
    "maps": Maps,
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
    calibration: Calibration
    maps: Maps
    source: str  # the file it was read from

    @property
    def digest(self) -> str:
        """Short hash of every processing setting: changing any of them changes frame identity.
        Calibration settings are not processing settings (they have their own digest)."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("source", "description", "calibration",
                                                                          "maps")}
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


def _check_calibration(cal: Calibration, source: str) -> None:
    """Raise ProfileError naming the first [calibration] value that cannot work."""
    def bad(key, why):
        raise ProfileError(f"{source}: calibration.{key} = {getattr(cal, key)!r} {why}")

    if not isinstance(cal.refcat, str):
        bad("refcat", 'must be a catalogue name, or "" for none')
    if not isinstance(cal.band, str) or not cal.band:
        bad("band", "must name a reference band (the catalogue's mag_<band>)")
    if not isinstance(cal.color, list) or len(cal.color) not in (0, 2) or not all(isinstance(b, str) for b in cal.color):
        bad("color", 'must be [] (no colour term) or two band names, e.g. ["B", "V"]')
    for key in ("color_range", "mag_limits"):
        pair = getattr(cal, key)
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)
                and pair[0] < pair[1]):
            bad(key, "must be [low, high] with low < high")
    positive = ("match_radius_arcsec", "clip_sigma", "clip_max_residual", "max_inst_mag_err", "blend_delta_mag",
                "max_scatter", "max_zp_variation", "max_zp_drop")
    for key in positive:
        value = getattr(cal, key)
        if not isinstance(value, (int, float)) or not value > 0:
            bad(key, "must be a positive number")
    if not 0 < cal.saturation_fraction <= 1:
        bad("saturation_fraction", "must be in (0, 1]")
    for key in ("edge_distance_px", "min_airmass_range"):
        if not isinstance(getattr(cal, key), (int, float)) or getattr(cal, key) < 0:
            bad(key, "must be a number >= 0")
    for key, low in (("min_stars", 2), ("min_extinction_frames", 2), ("flags_mask", 0), ("blend_flags", 0),
                       ("ref_flags_mask", 0)):
        value = getattr(cal, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            bad(key, f"must be an integer >= {low}")


def _check_maps(maps: Maps, source: str) -> None:
    """Raise ProfileError naming the first [maps] value that cannot work."""
    def bad(key, why):
        raise ProfileError(f"{source}: maps.{key} = {getattr(maps, key)!r} {why}")

    n = maps.nside
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 2**29 or n & (n - 1):
        bad("nside", "must be a power of two from 1 to 2**29 (e.g. 8)")
    z = maps.zp_clear
    if not (z == "auto" or (isinstance(z, (int, float)) and not isinstance(z, bool) and -100 < z < 100)):
        bad("zp_clear", 'must be a zeropoint in mag (a number) or "auto"')
    if not isinstance(maps.min_stars, int) or isinstance(maps.min_stars, bool) or maps.min_stars < 1:
        bad("min_stars", "must be an integer >= 1")


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
    _check_calibration(sections["calibration"], source)
    _check_maps(sections["maps"], source)
    return Profile(name=meta.get("name", Path(source).stem), description=meta.get("description", ""),
                   hdu=meta.get("hdu", "auto"), source=source, **sections)
