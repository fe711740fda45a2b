"""Instrument profiles: how a camera's headers map to the standard frame record, and its processing parameters.

Profiles live in ``pipelines/*.toml`` (or YAML); a profile may ``extends = "other"`` and override only
what differs. No code is needed for a new camera.

Every value is checked when the profile is loaded: a bad one is a :class:`ProfileError` that lists
every problem (key, value and what is allowed), never a frame processed with a silently wrong setting.

``extends`` names a built-in profile (``pipelines/NAME.toml``, a bare name). A user's profile file may
also extend another user's file given as a ``.toml``/``.yaml`` path, relative to the extending file;
built-in profiles extend built-in names only. Settings that list header keywords accept a single
string as a one-keyword list (``exptime = "EXPOSURE"`` is ``["EXPOSURE"]``).

>>> p = load_profile("skycamz")
>>> p.detection.thresh, p.site.night_starts
(1.5, '17:30')
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from skylake import PIPELINE_VERSION
from skylake.errors import SkylakeError
from skylake.paths import project_dir

__all__ = [
    "OPTIONAL_SECTIONS",
    "CALIBRATION_FLUXES",
    "register_section",
    "settings_from_table",
    "ALLSKY_KEYS",
    "ALLSKY_SOURCES",
    "PLATESOLVE_KEYS",
    "NOT_PROFILES",
    "ProfileError",
    "TIME_SCALES",
    "TIME_SCALE_ALIASES",
    "Site",
    "HeaderMap",
    "Defaults",
    "Detection",
    "Photometry",
    "Astrometry",
    "Quality",
    "Calibration",
    "Maps",
    "Profile",
    "load_profile",
    "profile_to_dict",
    "profile_from_dict",
]


#: Sections a profile may leave out (None when absent).
OPTIONAL_SECTIONS = ("camera", "allsky", "platesolve", "ensemble", "reduction", "dia")  # not a table
#: The fluxes a camera can be calibrated in (``[calibration] flux``): the sources' Kron flux and the three circles.
CALIBRATION_FLUXES = ("flux_auto", "flux_ap1", "flux_ap2", "flux_ap3")

#: The checks of the optional sections whose settings a stage owns, by section: ``check(table)`` raises
#: ValueError or TypeError naming the offending value. Each stage registers its own when its settings module is
#: imported (:func:`register_section`); :mod:`skylake.sections` imports every one.
_SECTION_CHECKS: dict[str, object] = {}


def register_section(name: str, check) -> None:
    """Register the check of an optional section's settings, owned by a stage.

    The profile loader runs it on the section's table at load, so that a bad value is a problem naming it, never
    a frame's failure. The profile knows the section by name only: the stage that owns its settings registers
    them (the profile never imports a stage).

    Parameters
    ----------
    name : str
        The section (one of :data:`OPTIONAL_SECTIONS`).
    check : callable
        ``check(table)`` with the section's table (less the keys the profile reads itself); raises ValueError or
        TypeError naming the offending value.

    Raises
    ------
    ValueError
        When ``name`` is not an optional section.
    """
    if name not in OPTIONAL_SECTIONS:
        raise ValueError(f"no optional profile section {name!r}; the sections are {list(OPTIONAL_SECTIONS)}")
    _SECTION_CHECKS[name] = check


def settings_from_table(cls, table: dict, section: str):
    """A stage's settings (a dataclass validated at construction) from its profile table, unknown keys refused.

    Parameters
    ----------
    cls : type
        The settings' dataclass.
    table : dict
        The profile's table (missing keys take their defaults).
    section : str
        The section's name, for the message.

    Returns
    -------
    object
        ``cls(**table)``.

    Raises
    ------
    ValueError
        A key that is no field of ``cls`` (the known ones listed), or what ``cls`` raises for a bad value.
    """
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ValueError(f"unknown {section} setting(s) {unknown}; known: {known}")
    return cls(**table)


def _check_section(name: str, table: dict, problems: list[str]) -> None:
    """Run the check a stage registered for section ``name`` (none yet: the stage checks it when it reads it)."""
    check = _SECTION_CHECKS.get(name)
    if check is None:
        return
    try:
        check(table)
    except (ValueError, TypeError) as exc:
        problems.append(f"[{name}] {exc}")


#: ``[allsky]`` keys read by ingest itself, beside :class:`skylake.allsky.pipeline.AllSkySettings`:
#: the bright-star catalogue (a refcat name in the lake, or a FITS/Parquet file) and which source rows
#: a frame gets.
ALLSKY_KEYS = {"catalog": "hipparcos", "sources": "forced"}
ALLSKY_SOURCES = ("forced", "detected", "both")
#: ``[platesolve]`` keys read by ingest, beside :class:`skylake.frame.platesolve.PlateSolveSettings`: the
#: reference stars (a refcat name in the lake, or a Parquet file) and their magnitude column; the header
#: keywords of the pointing (paired: ``ra_keys[i]`` with ``dec_keys[i]``; numbers or sexagesimal strings,
#: :mod:`skylake.frame.pointing`) and the unit of RA values that do not write one; a fixed pointing for
#: frames whose header has none (RA/Dec or alt/az, deg) and its radius; the plate scale's keywords
#: (arcsec/px) or the optics' (focal length mm, pixel size um, binning, whether the pixel size includes
#: the binning); whether to solve blind with astrometry.net when the pointing is missing or its solve
#: fails, the time limit of an astrometry.net solve (s); and whether to solve frames whose header has a
#: WCS too. pipelines/generic.toml documents each.
PLATESOLVE_KEYS = {
    "refcat": "",
    "mag_column": "mag_VT",
    "ra_keys": ["RA_CENT", "RA_DEG", "RA", "OBJCTRA", "TELRA", "RA_OBJ", "CRVAL1"],
    "dec_keys": ["DEC_CENT", "DEC_DEG", "DEC", "OBJCTDEC", "TELDEC", "DEC_OBJ", "CRVAL2"],
    "ra_unit": "auto",
    "pointing_radec": [],
    "pointing_altaz": [],
    "pointing_radius_deg": 2.0,
    "scale_keys": ["CCDSCALE", "PIXSCALE", "SECPIX"],
    "focal_length_keys": ["FOCALLEN"],
    "pixel_size_keys": ["XPIXSZ", "PIXSZ"],
    "binning_keys": ["XBINNING", "CCDXBIN"],
    "pixel_size_binned": True,
    "blind": True,
    "timeout_s": 60.0,
    "distrust_header_wcs": False,
}

#: Files in pipelines/ that are not instrument profiles.
NOT_PROFILES = {"refcats"}


class ProfileError(SkylakeError, ValueError):
    """A profile file is missing, malformed, names unknown settings or holds values that cannot work.

    ``problems`` lists one message per problem (also joined in the exception's text).

    Parameters
    ----------
    message : str
        The exception's text.
    problems : list of str or None
        One message per problem (None: the message is the only problem).

    Attributes
    ----------
    problems : list of str
        One message per problem.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


#: Time scales a header's times may be in (FITS TIMESYS values); each is converted to UTC with astropy.
#: GPS is TAI - 19 s; the others are astropy scales (aliases: GMT/UT = UTC, TDT/ET = TT, IAT = TAI).
TIME_SCALES = ("utc", "tai", "tt", "tdb", "tcg", "tcb", "ut1", "gps")
TIME_SCALE_ALIASES = {
    "gmt": "utc",
    "ut": "utc",
    "utc": "utc",
    "tdt": "tt",
    "et": "tt",
    "iat": "tai",
    **{s: s for s in TIME_SCALES},
}


@dataclass(frozen=True)
class Site:
    """Where the camera is (``[site]``): used for the observing night and airmass.

    Attributes
    ----------
    name : str
        The site's name (``unknown`` in the generic profile: no site given).
    lat_deg : float
        Latitude (deg).
    lon_deg : float
        Longitude (deg).
    height_m : float
        Height (m).
    timezone : str
        IANA time zone name (zoneinfo), e.g. ``Atlantic/Canary``.
    night_starts : str
        Local time "HH:MM" at which an observing night begins; the night is named by its evening date.
    """

    name: str
    lat_deg: float
    lon_deg: float
    height_m: float
    timezone: str
    night_starts: str  # "HH:MM" local time


@dataclass(frozen=True)
class HeaderMap:
    """Header keywords of each standard field (first present wins); pipelines/generic.toml documents them.

    Each list of keywords may be given as a single string in a profile (a one-keyword list).

    Attributes
    ----------
    instrument : list of str
        The instrument's keywords.
    filter : list of str
        The filter's keywords.
    object : list of str
        The object's keywords.
    date_avg : list of str
        ISO date and time of mid-exposure (DATE-AVG): mid by definition.
    mjd_avg : list of str
        MJD of mid-exposure (MJD-AVG): mid by definition.
    mjd : list of str
        MJD.
    date_obs : list of str
        ISO date and time, or a date alone completed by ``time_obs``.
    time_obs : list of str
        Time of day "HH:MM:SS[.s]" for a date-only ``date_obs``.
    jd : list of str
        Julian date.
    time_keys : list of str
        Keywords whose values, joined by a space, ``time_format`` parses.
    time_format : str
        The strptime format of the joined ``time_keys`` values ("" when ``time_keys`` is empty).
    time_reference : str
        "start", "mid" or "end": the moment of the exposure those times mark.
    time_scale : str
        The times' scale when the header does not say (TIMESYS): one of :data:`TIME_SCALES`.
    timesys : list of str
        Keywords naming the header's time scale (FITS TIMESYS).
    exptime : list of str
        The exposure time's keywords (s).
    airmass : list of str
        The airmass's keywords.
    altitude : list of str
        The altitude's keywords.
    azimuth : list of str
        The azimuth's keywords.
    gain : list of str
        The gain's keywords (e-/ADU).
    saturation : list of str
        The saturation level's keywords (ADU of the raw pixels).
    """

    instrument: list[str]
    filter: list[str]
    object: list[str]
    date_avg: list[str]  # ISO date and time of mid-exposure (DATE-AVG): mid by definition
    mjd_avg: list[str]  # MJD of mid-exposure (MJD-AVG): mid by definition
    mjd: list[str]
    date_obs: list[str]  # ISO date and time, or a date alone completed by time_obs
    time_obs: list[str]  # time of day "HH:MM:SS[.s]" for a date-only date_obs
    jd: list[str]
    time_keys: list[str]  # keywords whose values, joined by a space, time_format parses
    time_format: str  # strptime format of the joined time_keys values ("" when time_keys is empty)
    time_reference: str  # "start" | "mid" | "end": the moment of the exposure those times mark
    time_scale: str  # the times' scale when the header does not say (TIMESYS): one of TIME_SCALES
    timesys: list[str]  # keywords naming the header's time scale (FITS TIMESYS)
    exptime: list[str]
    airmass: list[str]
    altitude: list[str]
    azimuth: list[str]
    gain: list[str]
    saturation: list[str]


@dataclass(frozen=True)
class Defaults:
    """Values used when the header has none for a field (``[defaults]``).

    Attributes
    ----------
    instrument : str
        The instrument.
    filter : str
        The filter.
    object : str
        The object.
    exptime : float
        Exposure time (s) when the header has none; 0 = none (the frame is rejected).
    gain : float
        Gain (e-/ADU).
    saturation : float
        Saturation level (ADU).
    saturation_source : str
        "header" (the header's value, else ``saturation``) or "profile" (always ``saturation``).
    """

    instrument: str
    filter: str
    object: str
    exptime: float  # s, when the header has none; 0 = none (the frame is rejected)
    gain: float
    saturation: float
    saturation_source: str  # "header" (the header's value, else `saturation`) | "profile" (always `saturation`)


@dataclass(frozen=True)
class Detection:
    """Source detection with sep, with SExtractor's defaults (``[detection]``).

    Attributes
    ----------
    thresh : float
        Detection threshold, in units of the global background rms.
    minarea : int
        Least number of pixels of a source (px).
    back_size : int
        Background mesh size (px).
    back_filtersize : int
        Background filter size (meshes).
    filter_kernel : str
        "default" (SExtractor's default.conv) or "none".
    deblend_nthresh : int
        Deblending thresholds.
    deblend_cont : float
        Deblending contrast.
    clean : bool
        Clean spurious detections.
    clean_param : float
        The cleaning parameter.
    pixstack : int
        sep's starting pixel stack.
    sub_object_limit : int
        sep's starting sub-object limit.
    max_pixstack : int
        The most the pixel stack is raised to when exceeded.
    max_sub_object_limit : int
        The most the sub-object limit is raised to when exceeded.
    """

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
    """Aperture and Kron photometry (``[photometry]``).

    Attributes
    ----------
    aperture_radii : list of float
        Three aperture radii (px): flux_ap1..3.
    annulus : list of float
        Inner and outer radius of the local background annulus (px).
    kron_factor : float
        The Kron ellipse's scale is max(kron_factor * r_kron, kron_min_radius) (SExtractor PHOT_AUTOPARAMS).
    kron_min_radius : float
        The least scale of the Kron ellipse, and its scale when r_kron cannot be measured.
    """

    aperture_radii: list[float]
    annulus: list[float]
    kron_factor: float
    kron_min_radius: float


@dataclass(frozen=True)
class Astrometry:
    """Sanity of the header WCS (``[astrometry]``): a frame whose WCS fails it is rejected with the reason.

    Attributes
    ----------
    pixscale_range : list of float
        [low, high] arcsec/px a frame's WCS must give on both axes.
    """

    pixscale_range: list[float]  # [low, high] arcsec/px a frame's WCS must give on both axes


@dataclass(frozen=True)
class Quality:
    """Frame quality limits (``[quality]``): a frame failing one keeps its row with a status and a reason.

    Infinite limits are no limits.

    Attributes
    ----------
    min_sources : int
        Fewer clean sources: few_sources.
    max_elongation : float
        A clean source more elongated: elongated.
    max_theta_kurtosis : float
        A larger kurtosis (Fisher) of the clean sources' position angles: trailed (round stars give -1.2).
    max_flux : float
        A source's peak (flux_max) above this: too_bright.
    min_src_background : float
        A lower median background at the sources: bad_background.
    max_src_background_mad : float
        A larger MAD of the background at the sources: bad_background.
    """

    min_sources: int
    max_elongation: float
    max_theta_kurtosis: float
    max_flux: float
    min_src_background: float
    max_src_background_mad: float


@dataclass(frozen=True)
class Calibration:
    """Photometric calibration against a reference catalogue (``skylake calibrate``).

    pipelines/generic.toml documents each setting. Magnitudes in mag, distances in arcsec or pixels as
    named.

    Attributes
    ----------
    refcat : str
        LAKE/refcats/NAME used by ingest and by calibrate without --refcat; "" = none.
    flux : str
        The source flux calibrated: flux_auto (Kron) or flux_ap1..3 (apertures, corrected to the Kron total).
    band : str
        The reference band: the catalogue's mag_<band>.
    color : list of str
        [] or [b1, b2]: colour = mag_<b1> - mag_<b2>.
    color_range : list of float
        Stars used in the colour fit have a colour inside [lo, hi].
    match_radius_arcsec : float
        The radius within which a source matches a reference star.
    min_stars : int
        Fewer usable stars after the cuts and the clipping: too_few_stars.
    clip_sigma : float
        Outlier clipping of the fit, in robust sigmas.
    clip_max_residual : float
        Later passes of the fit also drop residuals above this.
    mag_limits : list of float
        [bright, faint] reference magnitudes of usable stars.
    max_inst_mag_err : float
        Too faint above this instrumental error.
    edge_distance_px : float
        Closer to the chip edge: edge.
    flags_mask : int
        Source flags that reject a star.
    blend_flags : int
        Source flags that mean "blended" (sep OBJ_MERGED).
    ref_flags_mask : int
        Reference-catalogue flags (schemas/refcat.yaml flag_bits) that reject a star.
    blend_delta_mag : float
        A second reference star within the radius and brighter than mag + this: blended.
    saturation_fraction : float
        Peak + background above this fraction of the frame's saturation: saturated.
    max_scatter : float
        Robust scatter above this: high_scatter.
    max_zp_variation : float
        Zeropoint change across the frame (plane fit of residuals) above this: cloudy.
    max_zp_drop : float
        Zeropoint below the night's clear-sky model by more than this: cloudy.
    min_airmass_range : float
        An extinction term is fitted for a night whose ok frames span this much airmass.
    min_extinction_frames : int
        ... and number at least this many (the least ok frames of a night for an extinction fit).
    """

    refcat: str  # LAKE/refcats/NAME used by ingest and by calibrate without --refcat; "" = none
    flux: str  # source flux calibrated: flux_auto (Kron) or flux_ap1..3 (apertures, corrected to the Kron total)
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
        """Short hash of the settings: part of a calibration's identity.

        Returns
        -------
        str
            The first 12 hex digits of the SHA-256 of the settings as sorted JSON.
        """
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def color_name(self) -> str:
        """The colour's name.

        Returns
        -------
        str
            ``b1-b2`` for ``color = [b1, b2]``, "" without a colour term.
        """
        return f"{self.color[0]}-{self.color[1]}" if self.color else ""


@dataclass(frozen=True)
class Maps:
    """HEALPix maps (``skylake maps``; pipelines/generic.toml documents each setting).

    Attributes
    ----------
    nside : int
        HEALPix nside (a power of two; the all-sky pipeline uses 8).
    zp_clear : float or str
        Clear-sky reference zeropoint [mag for 1 ADU/s], or "auto" (the night's extinction fit).
    min_stars : int
        Transparency and zeropoint are null in pixels with fewer star measurements.
    """

    nside: int  # HEALPix nside (a power of two; the all-sky pipeline uses 8)
    zp_clear: float | str  # clear-sky reference zeropoint [mag for 1 ADU/s], or "auto" (the night's extinction fit)
    min_stars: int  # transparency and zeropoint are null in pixels with fewer star measurements


_SECTIONS = {
    "site": Site,
    "header": HeaderMap,
    "defaults": Defaults,
    "detection": Detection,
    "photometry": Photometry,
    "astrometry": Astrometry,
    "quality": Quality,
    "calibration": Calibration,
    "maps": Maps,
}


@dataclass(frozen=True)
class Profile:
    """An instrument profile, validated: every setting of a camera (:func:`load_profile`).

    Attributes
    ----------
    name : str
        The profile's name.
    description : str
        What camera it is for.
    hdu : str or int
        Which HDU holds the image: "auto", "all", an HDU index or an EXTNAME.
    max_image_mb : float
        Larger images (decompressed) are rejected before they fill a worker's memory.
    site : Site
        ``[site]``.
    header : HeaderMap
        ``[header]``.
    defaults : Defaults
        ``[defaults]``.
    detection : Detection
        ``[detection]``.
    photometry : Photometry
        ``[photometry]``.
    astrometry : Astrometry
        ``[astrometry]``.
    quality : Quality
        ``[quality]``.
    calibration : Calibration
        ``[calibration]``.
    maps : Maps
        ``[maps]``.
    source : str
        The file it was read from.
    camera : dict or None
        An all-sky camera's ``[camera]`` model (None when absent; :func:`skylake.allsky.camera.camera_of`).
    allsky : dict or None
        An all-sky camera's ``[allsky]`` settings (None when absent;
        :func:`skylake.allsky.pipeline.allsky_settings`).
    platesolve : dict or None
        A narrow-field camera's ``[platesolve]`` (None when absent;
        :func:`skylake.frame.solve_settings.platesolve_settings`).
    ensemble : dict or None
        ``[ensemble]``: the relative calibration and detrending of each night (skylake.ensemble; defaults when
        absent).
    reduction : dict or None
        ``[reduction]``: what a raw frame of this camera needs (masters, bad pixels, cosmic rays; skylake.reduce).
    dia : dict or None
        ``[dia]``: difference imaging after each ingest (skylake.dia.settings; none when absent).
    """

    name: str
    description: str
    hdu: str | int
    max_image_mb: float  # larger images (decompressed) are rejected before they fill a worker's memory
    site: Site
    header: HeaderMap
    defaults: Defaults
    detection: Detection
    photometry: Photometry
    astrometry: Astrometry
    quality: Quality
    calibration: Calibration
    maps: Maps
    source: str  # the file it was read from
    #: Optional sections (None when absent): an all-sky camera's ``[camera]`` model and ``[allsky]``
    #: settings, a narrow-field camera's ``[platesolve]``; kept as validated plain tables, which the stages
    #: that own them read into their settings.
    camera: dict | None = None
    allsky: dict | None = None
    platesolve: dict | None = None
    #: ``[ensemble]``: the relative calibration and detrending of each night (skylake.ensemble; defaults when
    #: absent).
    ensemble: dict | None = None
    #: ``[reduction]``: what a raw frame of this camera needs (masters, bad pixels, cosmic rays; skylake.reduce).
    reduction: dict | None = None
    #: ``[dia]``: difference imaging after each ingest (skylake.dia.settings; none when absent).
    dia: dict | None = None

    @functools.cached_property  # asked for every frame; a profile is not changed once loaded
    def digest(self) -> str:
        """Short hash of every processing setting: changing any of them changes frame identity.

        Calibration settings are not processing settings (they have their own digest). Absent
        optional sections leave it as it was before they existed.

        Returns
        -------
        str
            The first 12 hex digits of the SHA-256 of the settings as sorted JSON (without the source, the
            description, ``[calibration]``, ``[maps]``, ``[ensemble]`` and ``[dia]``: downstream of the frames).
        """
        settings = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("source", "description", "calibration", "maps", "ensemble", "dia")  # not a table
            and not (k in OPTIONAL_SECTIONS and v is None)
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def pipeline_version(self) -> str:
        """The version string recorded with every frame: skylake's pipeline version and this profile's digest.

        Returns
        -------
        str
            ``PIPELINE_VERSION+NAME.DIGEST``.
        """
        return f"{PIPELINE_VERSION}+{self.name}.{self.digest}"

    @property
    def is_allsky(self) -> bool:
        """An all-sky camera: pixels map to the sky through ``[camera]``, not a header WCS.

        Returns
        -------
        bool
            Whether the profile has a ``[camera]`` section.
        """
        return self.camera is not None


def _read_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from exc
    try:
        doc = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ProfileError(f"profile {path} is not valid {path.suffix.lstrip('.')}: {exc}") from exc
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise ProfileError(f"profile {path} must be a table of sections, not a {type(doc).__name__}")
    return doc


#: A built-in profile's name: pipelines/NAME.toml (no path separators, no "..").
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_PROFILE_SUFFIXES = (".toml", ".yaml", ".yml")


def _builtin(name: str) -> Path:
    known = sorted(p.stem for p in project_dir("pipelines").glob("*.toml") if p.stem not in NOT_PROFILES)
    path = project_dir("pipelines") / f"{name}.toml"
    if not _PROFILE_NAME.fullmatch(name) or ".." in name or not path.is_file():
        raise ProfileError(f"unknown profile {name!r}; known profiles: {known}, or give a .toml/.yaml path")
    return path


def _resolve(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """The file of a profile given by name (built-in) or by a .toml/.yaml path (relative to
    ``relative_to``, the directory of the file that extends it, when given)."""
    if not isinstance(name_or_path, (str, Path)):
        raise ProfileError(f"a profile is named by a string, not {name_or_path!r}")
    path = Path(name_or_path)
    if path.suffix in _PROFILE_SUFFIXES:
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        if not path.is_file():
            raise ProfileError(f"profile file {path} does not exist")
        return path
    return _builtin(str(name_or_path))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


#: Settings that may name a file, read relative to the profile file that sets them.
_FILE_SUFFIXES = (".fits", ".fit", ".gz", ".parquet")


def _is_file_setting(value) -> bool:
    return isinstance(value, str) and Path(value).suffix.lower() in _FILE_SUFFIXES


def _anchor_paths(doc: dict, directory: Path) -> None:
    """A relative file named in ``doc`` (``allsky.catalog``, ``platesolve.refcat``) made absolute against the
    directory of the profile file that names it, so a profile extending it from elsewhere finds the same file."""
    for section, key in (("allsky", "catalog"), ("platesolve", "refcat")):
        table = doc.get(section)
        if isinstance(table, dict) and _is_file_setting(table.get(key)) and not Path(table[key]).is_absolute():
            table[key] = str(directory / table[key])


def _load_dict(name_or_path: str | Path, seen: tuple = (), relative_to: Path | None = None) -> dict:
    path = _resolve(name_or_path, relative_to).resolve()
    if path in seen:
        raise ProfileError(f"profile {path} extends itself through {[str(s) for s in seen]}")
    doc = _read_file(path)
    _anchor_paths(doc, path.parent)
    parent = doc.pop("extends", None)
    if parent is not None:
        builtin = path.parent == project_dir("pipelines").resolve()
        if not isinstance(parent, str) or not parent:
            raise ProfileError(f'{path}: extends = {parent!r} must name a profile (e.g. "generic")')
        if Path(parent).suffix in _PROFILE_SUFFIXES:
            if builtin:  # built-in profiles stay inside pipelines/
                raise ProfileError(f"{path}: extends = {parent!r}: a built-in profile extends built-in names only")
        elif not _PROFILE_NAME.fullmatch(parent) or ".." in parent:
            raise ProfileError(
                f"{path}: extends = {parent!r} is neither a built-in profile name (letters, digits, "
                f"_ . + -) nor a .toml/.yaml file"
            )
        doc = _merge(_load_dict(parent, seen + (path,), relative_to=path.parent), doc)
    doc["_source"] = str(path)
    return doc


# -- validation ------------------------------------------------------------------------------------
# Each checker takes a value and returns (normalised value, problem); the problem completes
# "section.key = value ..." and says what is allowed.


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _number(lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False, inf=False, what="a number"):
    kind = "an integer" if integer else what
    bounds = []
    if lo is not None:
        bounds.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        bounds.append(f"{'<' if hi_open else '<='} {hi}")
    allowed = f"must be {kind}" + (f" {' and '.join(bounds)}" if bounds else "")

    def check(value):
        """Check a number against the kind and bounds.

        Parameters
        ----------
        value : object
            The setting's value.

        Returns
        -------
        value : object
            The value, or None when it cannot work.
        problem : str or None
            What is allowed, or None when the value is.
        """
        ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else _is_number(value)
        if ok and not inf and not math.isfinite(value):
            ok = False
        if ok and lo is not None:
            ok = value > lo if lo_open else value >= lo
        if ok and hi is not None:
            ok = value < hi if hi_open else value <= hi
        return (value if ok else None), (None if ok else allowed)

    return check


def _text(nonempty=False, pattern=None, allowed="a string"):
    def check(value):
        """Check a printable string (non-empty, matching the pattern, when asked).

        Parameters
        ----------
        value : object
            The setting's value.

        Returns
        -------
        value : object
            The value, or None when it cannot work.
        problem : str or None
            What is allowed, or None when the value is.
        """
        ok = isinstance(value, str) and (value.strip() or not nonempty) and value.isprintable()
        if ok and pattern is not None:
            ok = bool(pattern.fullmatch(value))
        return (value if ok else None), (None if ok else f"must be {allowed}")

    return check


def _choice(*options):
    def check(value):
        """Check a string that must be one of the options.

        Parameters
        ----------
        value : object
            The setting's value.

        Returns
        -------
        value : object
            The value, or None when it cannot work.
        problem : str or None
            What is allowed, or None when the value is.
        """
        ok = isinstance(value, str) and value in options
        return (value if ok else None), (None if ok else f"must be one of {list(options)}")

    return check


def _bool(value):
    ok = isinstance(value, bool)
    return (value if ok else None), (None if ok else "must be true or false")


#: A header keyword: standard (8 characters) or a HIERARCH name, printable ASCII without '='.
_KEYWORD = re.compile(r"[!-<>-~]([ -<>-~]{0,68}[!-<>-~])?")


def _keywords(value):
    """A list of header keywords; a single string is a one-keyword list."""
    if isinstance(value, str):
        value = [value]
    ok = isinstance(value, list) and all(isinstance(k, str) and _KEYWORD.fullmatch(k) for k in value)
    return (list(value) if ok else None), (
        None if ok else 'must be a list of header keywords, e.g. ["EXPTIME", "EXPOSURE"] (printable ASCII, no "=")'
    )


def _numbers(n=None, positive=False, increasing=False, what="numbers"):
    def check(value):
        """Check a non-empty list of finite numbers (of the length, positive and increasing, when asked).

        Parameters
        ----------
        value : object
            The setting's value.

        Returns
        -------
        value : list or None
            A copy of the list, or None when it cannot work.
        problem : str or None
            What is allowed, or None when the value is.
        """
        ok = (
            isinstance(value, list)
            and (n is None or len(value) == n)
            and len(value) > 0
            and all(_is_number(v) and math.isfinite(v) and (v > 0 or not positive) for v in value)
            and (not increasing or all(a < b for a, b in zip(value, value[1:])))
        )
        return (list(value) if ok else None), (None if ok else f"must be {what}")

    return check


def _night_starts(value):
    m = re.fullmatch(r"(\d\d):(\d\d)", value) if isinstance(value, str) else None
    ok = bool(m) and int(m.group(1)) < 24 and int(m.group(2)) < 60
    return (value if ok else None), (None if ok else 'must be a local time "HH:MM" from "00:00" to "23:59"')


def _timezone(value):
    try:
        ZoneInfo(value)
        return value, None
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return None, 'must be an IANA time zone name, e.g. "UTC" or "Atlantic/Canary"'


def _time_format(value):
    """A strptime format that gives a date and a time of day (checked on a round trip)."""
    if value == "":
        return value, None
    allowed = 'must be "" or a strptime format giving the date and the time of day, e.g. "%Y-%m-%d %H:%M:%S"'
    if not isinstance(value, str) or "%" not in value:
        return None, allowed
    ref = dt.datetime(2001, 2, 3, 16, 5, 6, 789000)
    try:
        back = dt.datetime.strptime(ref.strftime(value), value)
    except ValueError as exc:
        return None, f"{allowed} ({exc})"
    if (back.year, back.month, back.day, back.hour, back.minute) != (2001, 2, 3, 16, 5):
        return None, f"{allowed}; it does not give the date and the hour and minute (a time of day)"
    return value, None


def _time_scale(value):
    ok = isinstance(value, str) and value.lower() in TIME_SCALE_ALIASES
    return (TIME_SCALE_ALIASES[value.lower()] if ok else None), (
        None if ok else f"must be a time scale: one of {list(TIME_SCALES)}"
    )


def _hdu(value):
    ok = (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10000) or (
        isinstance(value, str) and value.strip() != "" and value.isprintable()
    )
    return (value if ok else None), (None if ok else 'must be "auto", "all", an HDU index >= 0 or an EXTNAME')


_POSITIVE = _number(0, lo_open=True)
_LIMIT = _number(inf=True)  # a quality limit: any number, +-inf for none

_CHECKS = {
    "profile": {
        "name": _text(pattern=_PROFILE_NAME, allowed="a profile name (letters, digits, _ . + -)"),
        "description": lambda v: (v, None) if isinstance(v, str) else (None, "must be a string"),
        "hdu": _hdu,
        "max_image_mb": _number(0, lo_open=True, what="a size in MB"),
    },
    "site": {
        "name": _text(nonempty=True, allowed="a non-empty string"),
        "lat_deg": _number(-90, 90),
        "lon_deg": _number(-180, 360),
        "height_m": _number(-500, 10000),
        "timezone": _timezone,
        "night_starts": _night_starts,
    },
    "header": {
        **{
            key: _keywords
            for key in (
                "instrument",
                "filter",
                "object",
                "date_avg",
                "mjd_avg",
                "mjd",
                "date_obs",
                "time_obs",
                "jd",
                "time_keys",
                "timesys",
                "exptime",
                "airmass",
                "altitude",
                "azimuth",
                "gain",
                "saturation",
            )
        },
        "time_format": _time_format,
        "time_reference": _choice("start", "mid", "end"),
        "time_scale": _time_scale,
    },
    "defaults": {
        "instrument": _text(),
        "filter": _text(),
        "object": _text(),
        "exptime": _number(0, 86400, what="an exposure time in s (0 = none)"),
        "gain": _number(0, lo_open=True, what="a gain in e-/ADU"),
        "saturation": _number(0, lo_open=True, what="a level in ADU"),
        "saturation_source": _choice("header", "profile"),
    },
    "detection": {
        "thresh": _POSITIVE,
        "minarea": _number(1, integer=True),
        "back_size": _number(1, integer=True),  # 0 divides by zero inside sep (SIGFPE)
        "back_filtersize": _number(1, integer=True),
        "filter_kernel": _choice("default", "none"),
        "deblend_nthresh": _number(1, 1024, integer=True),
        "deblend_cont": _number(0, 1),
        "clean": _bool,
        "clean_param": _POSITIVE,
        "pixstack": _number(1, 2**31 - 1, integer=True),
        "sub_object_limit": _number(1, 2**31 - 1, integer=True),
        "max_pixstack": _number(1, 2**31 - 1, integer=True),
        "max_sub_object_limit": _number(1, 2**31 - 1, integer=True),
    },
    "photometry": {
        "aperture_radii": _numbers(3, positive=True, what="exactly 3 radii (flux_ap1..3), each a number of px > 0"),
        "annulus": _numbers(2, positive=True, increasing=True, what="[inner, outer] px with 0 < inner < outer"),
        "kron_factor": _POSITIVE,
        "kron_min_radius": _POSITIVE,
    },
    "astrometry": {
        "pixscale_range": _numbers(2, positive=True, increasing=True, what="[low, high] arcsec/px with 0 < low < high"),
    },
    "quality": {
        "min_sources": _number(0, integer=True),
        "max_elongation": _number(1, inf=True),
        "max_theta_kurtosis": _LIMIT,
        "max_flux": _LIMIT,
        "min_src_background": _LIMIT,
        "max_src_background_mad": _LIMIT,
    },
}


def _section(cls, doc: dict, section: str, problems: list[str]):
    """The section's dataclass from ``doc`` (None when it cannot be built); problems are added to ``problems``."""
    values = doc.get(section, {})
    if not isinstance(values, dict):
        problems.append(f"[{section}] must be a table of settings, not {values!r}")
        return None
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(names))
    missing = sorted(set(names) - set(values))
    if unknown:
        problems.append(f"[{section}] has unknown settings {unknown}; allowed: {sorted(names)}")
    if missing:
        problems.append(f"[{section}] lacks {missing} (start from pipelines/generic.toml)")
        return None
    out = {}
    for name in names:
        check = _CHECKS.get(section, {}).get(name)
        if check is None:  # [calibration] and [maps] are checked as a whole below
            out[name] = values[name]
            continue
        value, problem = check(values[name])
        if problem:
            problems.append(f"{section}.{name} = {values[name]!r} {problem}")
        out[name] = value
    return cls(**out)


def _check_relations(sections: dict, problems: list[str]) -> None:
    """Checks that involve two settings."""
    det, hm = sections["detection"], sections["header"]
    if det is not None:
        for start, limit in (("pixstack", "max_pixstack"), ("sub_object_limit", "max_sub_object_limit")):
            a, b = getattr(det, start), getattr(det, limit)
            if a is not None and b is not None and b < a:
                problems.append(f"detection.{limit} = {b!r} must be >= detection.{start} = {a!r}")
    if hm is not None and hm.time_keys and not hm.time_format:
        problems.append(f"header.time_format = '' must give the strptime format of header.time_keys = {hm.time_keys!r}")


def _check_calibration(cal: Calibration, problems: list[str]) -> None:
    """Add a message to ``problems`` for each [calibration] value that cannot work."""

    def bad(key, why):
        """Add the problem of one setting: ``calibration.KEY = VALUE WHY``.

        Parameters
        ----------
        key : str
            The setting.
        why : str
            What is allowed.
        """
        problems.append(f"calibration.{key} = {getattr(cal, key)!r} {why}")

    if not isinstance(cal.refcat, str):
        bad("refcat", 'must be a catalogue name, or "" for none')
    if cal.flux not in CALIBRATION_FLUXES:
        bad("flux", f"must be one of {list(CALIBRATION_FLUXES)}")
    if not isinstance(cal.band, str) or not cal.band:
        bad("band", "must name a reference band (the catalogue's mag_<band>)")
    if (
        not isinstance(cal.color, list)
        or len(cal.color) not in (0, 2)
        or not all(isinstance(b, str) for b in cal.color)
    ):
        bad("color", 'must be [] (no colour term) or two band names, e.g. ["B", "V"]')
    for key in ("color_range", "mag_limits"):
        pair = getattr(cal, key)
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(v, (int, float)) for v in pair)
            and pair[0] < pair[1]
        ):
            bad(key, "must be [low, high] with low < high")
    positive = (
        "match_radius_arcsec",
        "clip_sigma",
        "clip_max_residual",
        "max_inst_mag_err",
        "blend_delta_mag",
        "max_scatter",
        "max_zp_variation",
        "max_zp_drop",
    )
    for key in positive:
        value = getattr(cal, key)
        if not isinstance(value, (int, float)) or not value > 0:
            bad(key, "must be a positive number")
    if not (_is_number(cal.saturation_fraction) and 0 < cal.saturation_fraction <= 1):
        bad("saturation_fraction", "must be in (0, 1]")
    for key in ("edge_distance_px", "min_airmass_range"):
        if not isinstance(getattr(cal, key), (int, float)) or getattr(cal, key) < 0:
            bad(key, "must be a number >= 0")
    for key, low in (
        ("min_stars", 2),
        ("min_extinction_frames", 2),
        ("flags_mask", 0),
        ("blend_flags", 0),
        ("ref_flags_mask", 0),
    ):
        value = getattr(cal, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            bad(key, f"must be an integer >= {low}")


def _check_maps(maps: Maps, problems: list[str]) -> None:
    """Add a message to ``problems`` for each [maps] value that cannot work."""

    def bad(key, why):
        """Add the problem of one setting: ``maps.KEY = VALUE WHY``.

        Parameters
        ----------
        key : str
            The setting.
        why : str
            What is allowed.
        """
        problems.append(f"maps.{key} = {getattr(maps, key)!r} {why}")

    n = maps.nside
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 2**29 or n & (n - 1):
        bad("nside", "must be a power of two from 1 to 2**29 (e.g. 8)")
    z = maps.zp_clear
    if not (z == "auto" or (isinstance(z, (int, float)) and not isinstance(z, bool) and -100 < z < 100)):
        bad("zp_clear", 'must be a zeropoint in mag (a number) or "auto"')
    if not isinstance(maps.min_stars, int) or isinstance(maps.min_stars, bool) or maps.min_stars < 1:
        bad("min_stars", "must be an integer >= 1")


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a built-in profile by name (``pipelines/NAME.toml``) or a user's TOML/YAML file.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        A built-in profile's name, or the path of a ``.toml``/``.yaml``/``.yml`` file.

    Returns
    -------
    Profile
        The profile, its ``extends`` chain merged and every value checked.

    Raises
    ------
    ProfileError
        The profile cannot be found or read, or any of its values cannot work; the message lists
        every problem, each naming the key, its value and what is allowed.
    """
    doc = _load_dict(name_or_path)
    return _profile(doc, doc.pop("_source"))


def _profile(doc: dict, source: str) -> Profile:
    """Validate the merged settings ``doc`` of a profile read from ``source`` into a :class:`Profile`."""
    problems: list[str] = []
    meta = doc.get("profile", {})
    if not isinstance(meta, dict):
        problems.append(f"[profile] must be a table of settings, not {meta!r}")
        meta = {}
    unknown = sorted(set(doc) - set(_SECTIONS) - {"profile", *OPTIONAL_SECTIONS})
    if unknown:
        problems.append(f"unknown sections {unknown}; allowed: {['profile', *_SECTIONS, *OPTIONAL_SECTIONS]}")
    unknown = sorted(set(meta) - set(_CHECKS["profile"]))
    if unknown:
        problems.append(f"[profile] has unknown settings {unknown}; allowed: {sorted(_CHECKS['profile'])}")
    settings = {
        "name": meta.get("name", Path(source).stem),
        "description": meta.get("description", ""),
        "hdu": meta.get("hdu", "auto"),
        "max_image_mb": meta.get("max_image_mb", 512.0),
    }
    for key, check in _CHECKS["profile"].items():
        settings[key], problem = check(settings[key])
        if problem:
            problems.append(f"profile.{key} = {meta.get(key)!r} {problem}")
    sections = {name: _section(cls, doc, name, problems) for name, cls in _SECTIONS.items()}
    _check_relations(sections, problems)
    if sections["calibration"] is not None:
        _check_calibration(sections["calibration"], problems)
    if sections["maps"] is not None:
        _check_maps(sections["maps"], problems)
    optional = _optional_sections(doc, sections, source, problems)
    if problems:
        listing = problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n  " + "\n  ".join(problems)
        raise ProfileError(f"{source}: {listing}", problems)
    return Profile(source=source, **settings, **sections, **optional)


def _optional_sections(doc: dict, sections: dict, source: str, problems: list[str]) -> dict:
    """``[camera]``, ``[allsky]`` and ``[platesolve]`` as validated plain tables (None when absent): each
    is built once into its object here, so a bad value is a problem naming it, never a frame's failure."""
    out = {}
    for name in OPTIONAL_SECTIONS:
        value = doc.get(name)
        if value is not None and not isinstance(value, dict):
            problems.append(f"[{name}] must be a table of settings, not {value!r}")
            value = None
        out[name] = None if value is None else dict(value)
    camera, allsky, platesolve = out["camera"], out["allsky"], out["platesolve"]
    if out["ensemble"] is not None:
        _check_section("ensemble", out["ensemble"], problems)  # not a table
    if out["dia"] is not None:
        _check_section("dia", out["dia"], problems)
    if out["reduction"] is not None:
        _check_section("reduction", out["reduction"], problems)
        if camera is not None:  # the all-sky path measures on its own: it would judge saturation on reduced pixels
            problems.append(
                "[reduction] is for cameras placed by a WCS (masters are not applied to all-sky frames yet); an "
                'all-sky camera ([camera]) sets its dark level with allsky.bias_adu (a number or "corners"): '
                "remove [reduction]"
            )
    if allsky is not None and camera is None:
        problems.append("[allsky] needs a [camera] section (the lens model that maps pixels to the sky)")
    if camera is not None:
        if "site" in camera:
            problems.append(
                "camera.site: the camera's site is the profile's [site] (lat_deg, lon_deg, height_m); "
                "remove [camera.site]"
            )
        elif "projection" not in camera:
            problems.append(
                "[camera] needs at least the lens projection (equidistant, equisolid, stereographic, "
                "orthographic, gnomonic or polynomial); `skylake camera fit` finds the rest"
            )
        else:
            _check_section("camera", camera, problems)  # what it leaves out, `skylake camera fit` finds
        site = sections.get("site")
        if site is not None and site.name == "unknown":
            problems.append(
                "[camera] needs the profile's [site] (name, lat_deg, lon_deg, height_m): alt/az and "
                "RA/Dec of an all-sky camera depend on where it is"
            )
        out["allsky"] = allsky = {**ALLSKY_KEYS, **(allsky or {})}
    if allsky is not None:
        allsky = {**ALLSKY_KEYS, **allsky}
        catalog = allsky["catalog"]
        if not isinstance(catalog, str) or not catalog.strip():
            problems.append(
                f'allsky.catalog = {catalog!r} must name a refcat in the lake (e.g. "hipparcos") or a '
                f"FITS/Parquet file of bright stars (ra, dec, v_mag)"
            )
        elif (
            _is_file_setting(catalog)  # made absolute by _anchor_paths
            and not Path(catalog).is_file()
            and not source.endswith(".json")  # a lake's stored copy keeps the path
        ):
            problems.append(f"allsky.catalog = {catalog!r}: no such file")
        if allsky["sources"] not in ALLSKY_SOURCES:
            problems.append(f"allsky.sources = {allsky['sources']!r} must be one of {list(ALLSKY_SOURCES)}")
        _check_section("allsky", {k: v for k, v in allsky.items() if k not in ALLSKY_KEYS}, problems)
    if platesolve is not None:
        if camera is not None:
            problems.append("[platesolve] and [camera] exclude each other: an all-sky camera is placed by its model")
        out["platesolve"] = platesolve = {**PLATESOLVE_KEYS, **platesolve}
        refcat = platesolve["refcat"]
        if not isinstance(refcat, str) or not refcat:
            problems.append(
                f"platesolve.refcat = {refcat!r} must name the refcat in the lake the solver matches "
                f'against (e.g. "tycho2") or a Parquet file (ra, dec and mag_column)'
            )
        elif _is_file_setting(refcat) and not Path(refcat).is_file() and not source.endswith(".json"):
            problems.append(f"platesolve.refcat = {refcat!r}: no such file")
        _check_platesolve(platesolve, sections.get("site"), problems)
        _check_section("platesolve", {k: v for k, v in platesolve.items() if k not in PLATESOLVE_KEYS}, problems)
    return out


def _pair(lo0, hi0, lo1, hi1, what):
    """[] (none) or two numbers within the bounds."""

    def check(value):
        """Check [] or two numbers, the first in [lo0, hi0] and the second in [lo1, hi1].

        Parameters
        ----------
        value : object
            The setting's value.

        Returns
        -------
        value : list or None
            A copy of the list, or None when it cannot work.
        problem : str or None
            What is allowed, or None when the value is.
        """
        ok = value == [] or (
            isinstance(value, list)
            and len(value) == 2
            and all(_is_number(v) for v in value)
            and lo0 <= value[0] <= hi0
            and lo1 <= value[1] <= hi1
        )
        return (list(value) if ok else None), (None if ok else f"must be [] (none) or {what}")

    return check


_PLATESOLVE_CHECKS = {
    **{
        key: _keywords
        for key in ("ra_keys", "dec_keys", "scale_keys", "focal_length_keys", "pixel_size_keys", "binning_keys")
    },
    "mag_column": _text(nonempty=True, allowed='a column name, e.g. "mag_VT"'),
    "ra_unit": _choice("auto", "hours", "degrees"),
    "pointing_radec": _pair(0, 360, -90, 90, "[ra, dec] in degrees (0 <= ra <= 360, -90 <= dec <= 90)"),
    "pointing_altaz": _pair(0, 90, 0, 360, "[alt, az] in degrees (0 <= alt <= 90, azimuth 0-360 north through east)"),
    "pointing_radius_deg": _number(0, 90, lo_open=True, what="a radius in deg"),
    "pixel_size_binned": _bool,
    "blind": _bool,
    "timeout_s": _number(0, 3600, lo_open=True, what="a time limit in s"),
    "distrust_header_wcs": _bool,
}


def _check_platesolve(platesolve: dict, site: Site | None, problems: list[str]) -> None:
    """Add a message to ``problems`` for each ingest-level ``[platesolve]`` value (:data:`PLATESOLVE_KEYS`)
    that cannot work; keyword lists are normalised in place."""
    for key, check in _PLATESOLVE_CHECKS.items():
        value, problem = check(platesolve[key])
        if problem:
            problems.append(f"platesolve.{key} = {platesolve[key]!r} {problem}")
        elif key.endswith("_keys"):
            platesolve[key] = value
    ra_keys, dec_keys = platesolve["ra_keys"], platesolve["dec_keys"]
    if isinstance(ra_keys, list) and isinstance(dec_keys, list) and len(ra_keys) != len(dec_keys):
        problems.append(
            f"platesolve.ra_keys = {ra_keys!r} and platesolve.dec_keys = {dec_keys!r} must pair up "
            f"(ra_keys[i] with dec_keys[i]): give as many of each"
        )
    if platesolve["pointing_radec"] and platesolve["pointing_altaz"]:
        problems.append(
            f"platesolve.pointing_radec = {platesolve['pointing_radec']!r} and platesolve.pointing_altaz "
            f"= {platesolve['pointing_altaz']!r}: give one fixed pointing, not both"
        )
    if platesolve["pointing_altaz"] and site is not None and site.name == "unknown":
        problems.append(
            f"platesolve.pointing_altaz = {platesolve['pointing_altaz']!r} needs the profile's [site] "
            f"(name, lat_deg, lon_deg, height_m): alt/az is placed on the sky from where the camera is"
        )


def profile_to_dict(profile: Profile) -> dict:
    """Every setting of ``profile`` as plain data (the form stored in a lake at ingest).

    Parameters
    ----------
    profile : Profile
        The profile.

    Returns
    -------
    dict
        A table per section, ``profile`` holding name, description, hdu and max_image_mb; without the source
        and the absent optional sections.
    """
    doc = asdict(profile)
    meta = {key: doc.pop(key) for key in ("name", "description", "hdu", "max_image_mb")}
    doc.pop("source")
    for name in OPTIONAL_SECTIONS:
        if doc.get(name) is None:
            doc.pop(name, None)
    return {"profile": meta, **doc}


def profile_from_dict(doc: dict, source: str) -> Profile:
    """A profile from :func:`profile_to_dict`'s form, validated as a file would be.

    Parameters
    ----------
    doc : dict
        The profile in :func:`profile_to_dict`'s form.
    source : str
        What names the profile in messages (its ``source``).

    Returns
    -------
    Profile
        The profile.

    Raises
    ------
    ProfileError
        Any of its values cannot work; the message lists every problem.
    """
    return _profile({k: (dict(v) if isinstance(v, dict) else v) for k, v in doc.items() if k != "_source"}, source)
