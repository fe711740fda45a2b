"""One all-sky frame end to end, for the per-frame ingest stage: settings and a pure function.

:func:`process_frame` takes the image, its mid-exposure time and exposure, the camera model and
site (a profile's ``[camera]``), a bright-star catalogue and :class:`AllSkySettings` (a profile's
``[allsky]``), and returns an :class:`AllSkyResult`: the (optionally refitted) model, forced
photometry of the catalogue stars, cloud fraction, zeropoint, transparency and sky-brightness
HEALPix maps (horizon and equatorial), the per-pixel sky-brightness image and the trails found.
Nothing is written; the caller stores the tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table

from skylake.allsky.camera import CameraModel, Site
from skylake.profile import ALLSKY_KEYS, register_section, settings_from_table

__all__ = [
    "AllSkySettings",
    "AllSkyResult",
    "process_frame",
    "measure_stars",
    "camera_from_profile",
    "dark_level",
    "allsky_settings",
]


@dataclass(frozen=True)
class AllSkySettings:
    """Processing settings of an all-sky camera (a profile's ``[allsky]`` table).

    Units are in the names: deg, px, mag. The values are checked on construction (a ``ValueError``
    names the first one out of range).

    Attributes
    ----------
    refit : bool
        Refit the camera model on every frame (``fit_camera`` from the profile's model); when it
        fails (cloudy frame) the profile's model is used and the reason is noted.
    check_model : bool
        Without ``refit`` (and with a ``recentroid_px``), check the profile's model on every frame from its
        bright stars' centroids (:mod:`skylake.allsky.check`): the frame's ``astrometry_rms_px``, shift and
        turn; a camera that moved is refitted from the model (its shift and turn only: the lens is the same;
        the frame's note says so), or the frame gets the status ``camera_moved``.
    moved_px : float
        The camera moved when the fitted shift and turn displace a bright star by this much, px.
    fit : tuple of str
        Parameters refitted.
    fit_vmax, fit_alt_min_deg : float
        Stars used by the fit.
    vmax, alt_min_deg : float
        Stars measured by forced photometry.
    aperture_px, annulus_inner_px, annulus_outer_px, recentroid_px : float
        Forced photometry geometry.
    saturation_adu : float or None
        Pixel level flagging saturated stars.
    neighbour_dmag, min_isolation_deg : float
        A star with a catalogue neighbour at most ``neighbour_dmag`` fainter within
        ``min_isolation_deg`` is not used for zeropoints and transparency (0: no such cut).
    psf_sigma_px, max_blend : float
        Catalogue neighbours' light in a star's aperture (Gaussian PSF of ``psf_sigma_px``) is
        part of its expected flux; a star whose neighbours add more than ``max_blend`` of its
        light is not used for zeropoints and transparency.
    zp_percentile : float
        Percentile of the stars' zeropoints taken as the clear-sky value when ``zp_clear`` is
        absent (75: the upper part, robust to some cloud and to the stars' scatter).
    cloud_vmax, cloud_alt_min_deg, cloud_snr, cloud_offset_deg : float
        Cloud fraction: stars counted and what counts as seen.
    nside : int
        HEALPix resolution of the maps (NESTED).
    min_stars : int
        Fewest stars per transparency pixel (1: every pixel with a star a clear sky shows has a value).
    transparency_snr : float
        A star counts in the transparency maps when a clear sky would show it at this S/N on the frame's
        noise (twice ``cloud_snr`` by default: a star dimmed by half is still seen, so one not seen is clouded).
    zp_clear : float or None
        Clear-sky zeropoint, mag for 1 ADU/s above the atmosphere; None = measured on this frame
        (the ``zp_percentile`` of the stars, so a partly cloudy frame still gives about the clear
        value).
    extinction : float
        Extinction, mag per airmass.
    sky_mesh_px : int
        sep background mesh of the sky-brightness image.
    bias_adu : float or "corners"
        Pedestal subtracted before sky brightness; "corners" = 1st percentile of the pixels beyond
        the lens circle.
    detect_streaks : bool
        Look for satellite and aircraft trails (``streaks``).
    streak_mesh_px : int
        Background mesh of the streak finder, px (small: a fisheye's sky changes fast).
    streak_alt_min_deg : float
        Below this altitude no trail is looked for: the rim's gradients, the horizon's obstructions and
        the lens' edge reflections are no trails.
    streak_max_side_contrast : float
        A detection whose two sides differ by more than this fraction of the brighter (the sky above the
        pedestal, in strips along its whole length) is the lit edge of a structure (a telescope's tube, a
        building), not a trail (:func:`skylake.frame.streaks.side_contrast`; 1 keeps them).
    pivot_turn_deg : float
        Two detections of the camera within a night, an end of one on the other (within
        ``static_tolerance_px``), turned by at most this and of lengths within a factor 2, are one structure
        slewing about its foot (a telescope's lit tube) or standing (a building's edge), not two trails
        (:func:`skylake.frame.streaks.same_pivot`); 0 does not look.
    static_tolerance_px : float
        A detection within this distance, at both ends, of one on an earlier frame of the camera is the same
        pixels: an artefact of the optics (LAKE/static_artefacts), not a trail.
    mask_max_cloud : float
        The camera's foreground mask (:mod:`skylake.allsky.foreground`, ``skylake camera mask``) is learned from
        frames with at most this cloud fraction.
    mask_min_frames : int
        At least this many of them (lit structures are looked for from 3 frames spanning 2 h on: by then the
        Milky Way has turned away).
    mask_max_frames : int
        At most this many frames of the selection are read, spread evenly in time (a month of frames is not
        held at once).
    mask_dark, mask_bright : float
        A pixel whose sky, the median over those frames of each one's ratio to its smooth sky, is below
        ``mask_dark`` or above ``mask_bright`` is a structure (open sky lies within 0.8-1.5 on the real IceAct
        frame, its out-of-focus mast at 0.7-0.8, not masked; a dark dome at 0.1-0.3).
    mask_cell_px, mask_min_expected : int
        Cells of this side where ``mask_min_expected`` or more catalogue stars the cloud fraction counts were
        predicted over those frames and none was seen are masked (a foreground that looks like sky).
    mask_alt_min_deg : float
        Below this altitude is horizon, masked (0: outside the lens circle).
    mask_grow_px : int
        Structures are grown by this many px (their blurred edge).
    """

    refit: bool = False
    check_model: bool = True
    moved_px: float = 1.0
    fit: tuple = ("x0", "y0", "rotation_deg", "focal_length_mm", "k1")
    fit_vmax: float = 4.5
    fit_alt_min_deg: float = 20.0
    vmax: float = 6.0
    alt_min_deg: float = 10.0
    aperture_px: float = 2.5
    annulus_inner_px: float = 5.0
    annulus_outer_px: float = 9.0
    recentroid_px: float = 2.0
    saturation_adu: float | None = None
    neighbour_dmag: float = 1.0
    min_isolation_deg: float = 0.0
    psf_sigma_px: float = 1.0
    max_blend: float = 0.5
    zp_percentile: float = 75.0
    cloud_vmax: float = 4.0
    cloud_alt_min_deg: float = 20.0
    cloud_snr: float = 5.0
    cloud_offset_deg: float = 0.25
    nside: int = 8
    min_stars: int = 1
    transparency_snr: float = 10.0
    zp_clear: float | None = None
    extinction: float = 0.15
    sky_mesh_px: int = 16
    bias_adu: Any = 0.0
    detect_streaks: bool = True
    streak_mesh_px: int = 16
    streak_alt_min_deg: float = 10.0
    streak_max_side_contrast: float = 0.3
    pivot_turn_deg: float = 20.0
    static_tolerance_px: float = 3.0
    mask_max_cloud: float = 0.5
    mask_min_frames: int = 3
    mask_max_frames: int = 60
    mask_dark: float = 0.6
    mask_bright: float = 2.0
    mask_cell_px: int = 16
    mask_min_expected: int = 4
    mask_alt_min_deg: float = 0.0
    mask_grow_px: int = 2

    def __post_init__(self):
        from skylake.allsky.fit import FITTABLE

        object.__setattr__(self, "fit", tuple(self.fit))
        bad = [p for p in self.fit if p not in FITTABLE]
        if bad:
            raise ValueError(f"allsky.fit has unknown parameter(s) {bad}; fittable: {FITTABLE}")
        ranges = {
            "fit_vmax": (-2, 12),
            "fit_alt_min_deg": (0, 89),
            "vmax": (-2, 12),
            "alt_min_deg": (0, 89),
            "aperture_px": (0.5, 50),
            "annulus_inner_px": (0.5, 100),
            "annulus_outer_px": (1, 200),
            "recentroid_px": (0, 20),
            "neighbour_dmag": (0, 10),
            "min_isolation_deg": (0, 30),
            "psf_sigma_px": (0.2, 50),
            "max_blend": (0, 100),
            "zp_percentile": (1, 100),
            "cloud_vmax": (-2, 12),
            "cloud_alt_min_deg": (0, 89),
            "cloud_snr": (0, 1000),
            "cloud_offset_deg": (0.001, 10),
            "moved_px": (0.05, 100),
            "min_stars": (1, 1000),
            "transparency_snr": (1, 1000),
            "extinction": (0, 5),
            "sky_mesh_px": (4, 1024),
            "streak_mesh_px": (8, 1024),
            "streak_alt_min_deg": (0, 89),
            "streak_max_side_contrast": (0, 1),
            "pivot_turn_deg": (0, 90),
            "static_tolerance_px": (0.5, 50),
            "mask_max_cloud": (0, 1),
            "mask_min_frames": (1, 100000),
            "mask_max_frames": (1, 100000),
            "mask_dark": (0, 1),
            "mask_bright": (1, 1000),
            "mask_cell_px": (2, 1024),
            "mask_min_expected": (1, 100000),
            "mask_alt_min_deg": (-10, 89),
            "mask_grow_px": (0, 100),
        }
        for name, (lo, hi) in ranges.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
                raise ValueError(f"allsky.{name} must be a number in [{lo}, {hi}], got {v!r}")
        if not (self.aperture_px < self.annulus_inner_px < self.annulus_outer_px):
            raise ValueError(
                f"allsky needs aperture_px < annulus_inner_px < annulus_outer_px, got "
                f"{self.aperture_px}, {self.annulus_inner_px}, {self.annulus_outer_px}"
            )
        if self.nside < 1 or self.nside > 1024 or self.nside & (self.nside - 1):
            raise ValueError(f"allsky.nside must be a power of 2 up to 1024, got {self.nside!r}")
        for name in ("zp_clear", "saturation_adu"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ValueError(f"allsky.{name} must be a number or absent, got {v!r}")
        if not (
            self.bias_adu == "corners"
            or (isinstance(self.bias_adu, (int, float)) and not isinstance(self.bias_adu, bool))
        ):
            raise ValueError(f"allsky.bias_adu must be a number (ADU) or 'corners', got {self.bias_adu!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AllSkySettings:
        """Build and validate from a mapping (a profile's ``[allsky]`` table); unknown keys are refused.

        Parameters
        ----------
        d : Mapping
            The settings, keyed by the field names.

        Returns
        -------
        AllSkySettings
            The validated settings.

        Raises
        ------
        ValueError
            If ``d`` has unknown keys or a value out of range.
        """
        return settings_from_table(cls, d, "allsky")


def allsky_settings(profile) -> AllSkySettings:
    """A profile's ``[allsky]`` processing settings.

    Parameters
    ----------
    profile : skylake.profile.Profile
        The profile.

    Returns
    -------
    AllSkySettings
        The settings, the keys the profile reads itself (``ALLSKY_KEYS``) left out (defaults when absent).
    """
    return AllSkySettings.from_dict({k: v for k, v in (profile.allsky or {}).items() if k not in ALLSKY_KEYS})


register_section("allsky", AllSkySettings.from_dict)


def camera_from_profile(section: Mapping[str, Any]) -> tuple[CameraModel, Site]:
    """Split a profile's ``[camera]`` table into the model and the site (its ``site`` sub-table).

    Parameters
    ----------
    section : Mapping
        The profile's ``[camera]`` table, with a ``site`` sub-table.

    Returns
    -------
    model : CameraModel
        The camera model.
    site : Site
        The site.

    Raises
    ------
    ValueError
        If the table has no ``site`` sub-table, or a setting is unknown or invalid.
    """
    if "site" not in section:
        raise ValueError("the [camera] table needs a [camera.site] table (lat_deg, lon_deg, height_m)")
    d = dict(section)
    site = Site.from_dict(d.pop("site"))
    return CameraModel.from_dict(d), site


def dark_level(image: np.ndarray, model: CameraModel, *, margin: float = 1.1, percentile: float = 1.0) -> float:
    """Pedestal estimate from the pixels beyond the lens circle (``margin`` x the horizon radius).

    Parameters
    ----------
    image : numpy.ndarray
        The frame, 2-D, ADU.
    model : CameraModel
        Gives the zenith pixel and the horizon radius.
    margin : float, default 1.1
        Pixels farther than this times the horizon radius from ``(x0, y0)`` are used.
    percentile : float, default 1.0
        Percentile of those (finite) pixels taken.

    Returns
    -------
    float
        The pedestal, ADU; 0 when there are 100 such pixels or fewer (a frame cut inside the circle).
    """
    ny, nx = np.shape(image)
    y, x = np.mgrid[0:ny, 0:nx]
    outside = np.hypot(x - model.x0, y - model.y0) > margin * model.horizon_radius_px
    v = np.asarray(image, float)[outside]
    v = v[np.isfinite(v)]
    return float(np.percentile(v, percentile)) if v.size > 100 else 0.0


@dataclass
class AllSkyResult:
    """Products of one frame (see :func:`process_frame`).

    Attributes
    ----------
    model : CameraModel
        The model used: the refitted one, or the profile's.
    fit : skylake.allsky.fit.FitResult or None
        The refit (``AllSkySettings.refit``, or of a camera that moved), None when there was none or it failed.
    check : skylake.allsky.check.ModelCheck or None
        The stored model's offsets on the frame and whether the camera moved (None with ``refit``).
    stars : astropy.table.Table
        Forced photometry of the catalogue stars, with ``seen`` (and the transparency columns when
        there is a zeropoint).
    cloud_fraction : float
        Fraction of the counted stars not seen (NaN when none is expected, or when :attr:`camera_lost`).
    n_seen, n_expected : int
        Stars seen and expected for the cloud fraction.
    zeropoint : float
        Zeropoint used, mag for 1 ADU/s above the atmosphere (NaN when none could be measured).
    zeropoint_source : str
        Where the zeropoint came from (the profile, the frame, or why there is none).
    transparency_horizon, transparency_equatorial : astropy.table.Table
        Transparency HEALPix maps (empty without a zeropoint).
    sky_image : numpy.ndarray
        Sky brightness per pixel, mag/arcsec^2 (NaN without a zeropoint).
    sky_horizon, sky_equatorial : astropy.table.Table
        Sky-brightness HEALPix maps (empty without a zeropoint).
    streaks : astropy.table.Table
        The trails found (known static artefacts left out).
    notes : dict
        Remarks: why the refit failed, the bias subtracted, artefacts left out.
    """

    model: CameraModel
    fit: Any
    check: Any
    stars: Table
    cloud_fraction: float
    n_seen: int
    n_expected: int
    zeropoint: float
    zeropoint_source: str
    transparency_horizon: Table
    transparency_equatorial: Table
    sky_image: np.ndarray
    sky_horizon: Table
    sky_equatorial: Table
    streaks: Table
    notes: dict = field(default_factory=dict)

    @property
    def camera_lost(self) -> bool:
        """Whether the camera moved and its model could not be refitted (no cloud fraction, zeropoint or maps).

        Returns
        -------
        bool
            The check found a move and the refit from the stored model failed.
        """
        return self.check is not None and self.check.moved and self.fit is None

    def summary(self) -> dict:
        """Scalars for the frame row.

        Returns
        -------
        dict
            Cloud fraction, star counts, zeropoint and its source, the median sky brightness near the
            zenith, the number of streaks and, with a refit, its summary as ``fit_<name>``.
        """
        out = {
            "cloud_fraction": self.cloud_fraction,
            "n_seen": self.n_seen,
            "n_expected": self.n_expected,
            "zeropoint": self.zeropoint,
            "zeropoint_source": self.zeropoint_source,
            "sky_mag_zenith": self._zenith_sky(),
            "n_streaks": len(self.streaks),
        }
        if self.fit is not None:
            out.update({f"fit_{k}": v for k, v in self.fit.summary().items()})
        return out

    def _zenith_sky(self) -> float:
        v = self.sky_image[self._zenith_box()]
        v = v[np.isfinite(v)]
        return float(np.median(v)) if v.size else float("nan")

    def _zenith_box(self):
        zx, zy = self.model.altaz_to_pixel(90.0, 0.0)
        r = max(2, int(0.05 * self.model.horizon_radius_px))
        yi, xi = int(round(float(zy))), int(round(float(zx)))
        return slice(max(0, yi - r), yi + r + 1), slice(max(0, xi - r), xi + r + 1)


#: What a refit after a move frees: the chip's shift and turn (the lens' focal length and distortion stay).
_MOVE = ("x0", "y0", "rotation_deg")


def _refit(image, model, site, time, catalog, s: AllSkySettings, mag_column, mask, notes: dict, moved=False) -> tuple:
    """The frame's refit (``s.refit``, or ``moved``: the camera moved) and the model to use: ``(fit, model)``.

    A failed fit gives ``(None, model)`` and its reason in ``notes["fit"]``.
    """
    from skylake.allsky.fit import CameraFitError, fit_camera

    fit = None
    if s.refit or moved:
        try:
            fit = fit_camera(
                image,
                model,
                site,
                time,
                catalog,
                vmax=s.fit_vmax,
                alt_min_deg=s.fit_alt_min_deg,
                mag_column=mag_column,
                fit=_MOVE if moved else s.fit,  # a camera that moved keeps its lens: only where it points changes
                mask=mask,
                search=False,
            )
            model = fit.model
        except CameraFitError as exc:
            notes["fit"] = f"profile model used: {exc.reason}"
    return fit, model


def measure_stars(image, model, site, time, catalog, s: AllSkySettings, mag_column="v_mag", mask=None) -> tuple:
    """Forced photometry of the catalogue stars and the cloud fraction, as a frame's processing does them.

    Parameters
    ----------
    image : numpy.ndarray
        The frame, 2-D, ADU.
    model : CameraModel
        The camera model placing the stars.
    site : Site
        The camera's site.
    time : astropy.time.Time
        Mid-exposure, UTC.
    catalog : astropy.table.Table
        Bright stars (``ra``, ``dec``, ``mag_column``).
    s : AllSkySettings
        The photometry's and the cloud fraction's settings.
    mag_column : str, default "v_mag"
        The catalogue's magnitude column.
    mask : numpy.ndarray of bool, optional
        True on obstructions.

    Returns
    -------
    stars : astropy.table.Table
        The forced photometry with ``seen`` (stars the cloud fraction counts, seen) and ``detected`` (every
        star seen: the maps').
    cf : dict
        :func:`skylake.allsky.photometry.cloud_fraction`'s result.
    """
    from skylake.allsky.photometry import cloud_fraction, photometer_catalog

    stars = photometer_catalog(
        image,
        model,
        site,
        time,
        catalog,
        vmax=s.vmax,
        alt_min_deg=s.alt_min_deg,
        mag_column=mag_column,
        mask=mask,
        neighbour_dmag=s.neighbour_dmag,
        psf_sigma_px=s.psf_sigma_px,
        r_ap=s.aperture_px,
        r_in=s.annulus_inner_px,
        r_out=s.annulus_outer_px,
        recentroid_px=s.recentroid_px,
        saturation=s.saturation_adu,
    )
    seen = {"model": model, "snr_min": s.cloud_snr, "max_offset_deg": s.cloud_offset_deg}
    cf = cloud_fraction(stars, alt_min_deg=s.cloud_alt_min_deg, vmax=s.cloud_vmax, **seen)
    stars["seen"] = cf["seen"]
    # every star, not only those the cloud fraction counts: for the maps
    stars["detected"] = cloud_fraction(stars, alt_min_deg=-90.0, vmax=99.0, use_flagged=True, **seen)["seen"]
    return stars, cf


def _check(stars: Table, model: CameraModel, s: AllSkySettings):
    """The stored model's offsets on this frame (:func:`skylake.allsky.check.check_model`)."""
    from skylake.allsky.check import check_model

    return check_model(
        stars, model, vmax=s.fit_vmax, alt_min_deg=s.fit_alt_min_deg, snr_min=s.cloud_snr, moved_px=s.moved_px
    )


def _moved_by(check, stored: CameraModel, refit: CameraModel, stars: Table, s: AllSkySettings):
    """The check with the move the refit found (:func:`skylake.allsky.check.refitted_move`)."""
    from skylake.allsky.check import refitted_move

    bright = (np.asarray(stars["mag"], float) <= s.fit_vmax) & (np.asarray(stars["alt"], float) >= s.fit_alt_min_deg)
    return refitted_move(check, stored, refit, stars[bright])


def _zeropoint(stars: Table, exptime_s: float, s: AllSkySettings) -> tuple[float, str]:
    """The zeropoint, from the profile or the frame's stars, and where it came from (NaN and why when none)."""
    from skylake.allsky.maps import clear_zeropoint

    if s.zp_clear is not None:
        return float(s.zp_clear), "profile"
    try:
        zp, n = clear_zeropoint(
            stars,
            exptime_s=exptime_s,
            extinction=s.extinction,
            percentile=s.zp_percentile,
            min_isolation_deg=s.min_isolation_deg,
            max_blend=s.max_blend,
        )
    except ValueError as exc:
        return float("nan"), f"none: {exc}"
    return zp, f"frame ({s.zp_percentile:g}th percentile of {n} stars)"


def _transparency(stars: Table, zp: float, exptime_s: float, s: AllSkySettings) -> tuple:
    """The stars with their transparency and its horizon and equatorial maps: ``(stars, t_hor, t_equ)``."""
    from skylake.allsky.maps import star_transparency, transparency_map

    if not math.isfinite(zp):
        empty = Table()
        return stars, empty, empty
    tr = star_transparency(
        stars,
        zp_clear=zp,
        exptime_s=exptime_s,
        extinction=s.extinction,
        min_expected_snr=s.transparency_snr,
        min_isolation_deg=s.min_isolation_deg,
        max_blend=s.max_blend,
    )
    t_hor = transparency_map(tr, nside=s.nside, frame="horizon", min_stars=s.min_stars)
    t_equ = transparency_map(tr, nside=s.nside, frame="equatorial", min_stars=s.min_stars)
    return tr, t_hor, t_equ


def _sky_brightness(image, model, site, time, zp, exptime_s, mask, bias, s: AllSkySettings) -> tuple:
    """The sky-brightness image and its horizon and equatorial maps (NaN and empty without a zeropoint)."""
    from skylake.allsky.maps import sky_brightness_image, sky_brightness_map

    if not math.isfinite(zp):
        empty = Table()
        return np.full(np.shape(image), np.nan), empty, empty
    sky = sky_brightness_image(
        image, model, zeropoint=zp, exptime_s=exptime_s, mask=mask, bias=bias, mesh_px=s.sky_mesh_px
    )
    s_hor = sky_brightness_map(sky, model, nside=s.nside, frame="horizon")
    s_equ = sky_brightness_map(sky, model, nside=s.nside, frame="equatorial", site=site, time=time)
    return sky, s_hor, s_equ


def _streaks(
    image, model, mask, s: AllSkySettings, known_artefacts, notes: dict, bias: float = 0.0, mjd: float | None = None
) -> Table:
    """The trails on the sky (``s.detect_streaks``), those on known static artefacts left out (and noted)."""
    from skylake.frame.streaks import detect_streaks

    if not s.detect_streaks:
        return Table()
    ny, nx = np.shape(image)
    away = ~model.sky_mask((ny, nx), alt_min_deg=s.streak_alt_min_deg)
    away[:3], away[-3:], away[:, :3], away[:, -3:] = True, True, True, True  # the image's own edge
    streaks = detect_streaks(
        image,
        away | (mask if mask is not None else False),
        mesh_px=s.streak_mesh_px,
        pedestal=bias,
        max_side_contrast=s.streak_max_side_contrast,
    )
    if len(streaks) and known_artefacts is not None and len(known_artefacts):
        from skylake.frame.static_artefacts import PIVOT_WINDOW_D
        from skylake.frame.streaks import same_pivot, same_pixels

        def artefact(r, a) -> bool:
            """On the artefact's pixels; or turned about its foot when it was seen within a night of this frame."""
            recent = mjd is not None and abs(mjd - float(a.get("last_mjd", np.nan))) <= PIVOT_WINDOW_D
            return same_pixels(r, a, s.static_tolerance_px) or (
                recent and same_pivot(r, a, s.static_tolerance_px, s.pivot_turn_deg)
            )

        static = [any(artefact(r, a) for a in known_artefacts) for r in streaks]
        notes["static_artefacts"] = f"{sum(static)} detections at the pixels of known artefacts left out"
        streaks = streaks[~np.asarray(static, bool)]
    return streaks


def process_frame(
    image: np.ndarray,
    time,
    exptime_s: float,
    model: CameraModel,
    site: Site,
    catalog,
    settings: AllSkySettings | None = None,
    *,
    mask: np.ndarray | None = None,
    mag_column: str = "v_mag",
    known_artefacts=None,
) -> AllSkyResult:
    """Process one all-sky frame (pure: arrays and tables in, arrays and tables out).

    Parameters
    ----------
    image : numpy.ndarray
        The frame, 2-D, ADU.
    time : astropy.time.Time
        Mid-exposure, UTC.
    exptime_s : float
        Exposure time, s (> 0).
    model : CameraModel
        The camera model (profile ``[camera]``).
    site : Site
        The camera's site (profile ``[camera]``).
    catalog : astropy.table.Table
        Bright stars: ``ra``, ``dec`` (deg), ``mag_column`` (the whole catalogue, so that
        neighbours fainter than ``vmax`` are known).
    settings : AllSkySettings, optional
        The profile's ``[allsky]`` (default: ``AllSkySettings()``).
    mask : numpy.ndarray of bool, optional
        True on obstructions (not sky).
    mag_column : str, default "v_mag"
        The catalogue's magnitude column (when it has no ``mag`` column).
    known_artefacts : sequence of mappings, optional
        The camera's static artefacts (``x1``, ``y1``, ``x2``, ``y2``: LAKE/static_artefacts): detections on
        their pixels are left out of the streaks.

    Returns
    -------
    AllSkyResult
        The frame's products; nothing is written.

    Raises
    ------
    ValueError
        If ``exptime_s`` is not positive.
    """
    s = settings or AllSkySettings()
    if not exptime_s or exptime_s <= 0:
        raise ValueError(f"exptime_s must be > 0, got {exptime_s!r}")
    notes: dict = {}
    fit, model = _refit(image, model, site, time, catalog, s, mag_column, mask, notes)
    stars, cf = measure_stars(image, model, site, time, catalog, s, mag_column, mask)
    check = None
    if not s.refit and s.check_model and s.recentroid_px > 0:  # without a re-centroid the stars cannot tell
        check = _check(stars, model, s)
        if check.moved:  # refit from the stored model, then measure again with the new one
            stored = model
            fit, model = _refit(image, model, site, time, catalog, s, mag_column, mask, notes, moved=True)
            if fit is not None:
                check = _moved_by(check, stored, model, stars, s)
                stars, cf = measure_stars(image, model, site, time, catalog, s, mag_column, mask)
        notes["camera"] = check.describe() + (
            f"; refitted: rms {fit.rms_px:.2f} px over {fit.n_matched} stars" if check.moved and fit else ""
        )
    if check is not None and check.moved and fit is None:  # stars missed by the model, not by clouds
        cf = {**cf, "cloud_fraction": float("nan")}
        zp, zp_src = float("nan"), "none: the camera moved and the model could not be refitted"
    else:
        zp, zp_src = _zeropoint(stars, exptime_s, s)
    stars, t_hor, t_equ = _transparency(stars, zp, exptime_s, s)
    bias = dark_level(image, model) if s.bias_adu == "corners" else float(s.bias_adu)
    notes["bias_adu"] = bias
    sky, s_hor, s_equ = _sky_brightness(image, model, site, time, zp, exptime_s, mask, bias, s)
    streaks = _streaks(image, model, mask, s, known_artefacts, notes, bias, float(time.mjd))
    return AllSkyResult(
        model=model,
        fit=fit,
        check=check,
        stars=stars,
        cloud_fraction=cf["cloud_fraction"],
        n_seen=cf["n_seen"],
        n_expected=cf["n_expected"],
        zeropoint=zp,
        zeropoint_source=zp_src,
        transparency_horizon=t_hor,
        transparency_equatorial=t_equ,
        sky_image=sky,
        sky_horizon=s_hor,
        sky_equatorial=s_equ,
        streaks=streaks,
        notes=notes,
    )
