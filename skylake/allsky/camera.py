"""Fisheye camera model: lens projection, zenith pixel, rotation, parity, distortion, site.

The model maps a sky direction of zenith angle ``theta = 90 deg - alt`` and azimuth ``az`` to a
pixel ``(x, y)``:

* radius on the sensor ``r_mm = R(theta) * (1 + k1 theta^2 + k2 theta^4)`` (``theta`` in rad),
  with the lens projection ``R``:

  ==================  =================================  ===============================
  ``projection``      ``R(theta)``                       note
  ==================  =================================  ===============================
  ``equidistant``     ``f theta``                        "f-theta" fisheye (IceAct)
  ``equisolid``       ``2 f sin(theta / 2)``             equal-area fisheye (CTA)
  ``stereographic``   ``2 f tan(theta / 2)``             conformal
  ``orthographic``    ``f sin(theta)``
  ``gnomonic``        ``f tan(theta)``                   rectilinear; theta < 90 deg
  ``polynomial``      ``f (theta + sum_i p_i theta^i)``  ``poly = (p2, p3, ...)``, i >= 2
  ==================  =================================  ===============================

* radius in pixels ``r = r_mm / pixel_size_mm``;
* image position angle ``psi = parity * az + rotation`` (degrees; see :mod:`skylake.allsky`),
  ``x = x0 - r sin(psi)``, ``y = y0 - r cos(psi)``.

So with ``rotation = 0`` and ``parity = +1`` North is up (towards row 0) and East is left, as the
sky is seen from below; ``rotation`` turns the picture counter-clockwise on a display with row 0 at
the top. Only ``f / pixel_size`` matters geometrically; both are kept because the published
camera data give them separately.

Sky <-> horizon goes through astropy (ICRS <-> AltAz at the :class:`Site` and an
:class:`astropy.time.Time`), with refraction from the site's pressure (standard atmosphere at the
site's height unless given). IERS tables are never downloaded (no network); the bundled ones are
used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from skylake import iers
from skylake.profile import ProfileError, register_section

__all__ = ["CameraModel", "Site", "PROJECTIONS", "ARCSEC2_PER_SR", "angular_separation_deg", "TO_FIT", "camera_of"]

PROJECTIONS = ("equidistant", "equisolid", "stereographic", "orthographic", "gnomonic", "polynomial")
ARCSEC2_PER_SR = (180.0 / math.pi * 3600.0) ** 2

_ALIASES = {
    "equisolid_angle": "equisolid",
    "equal_area": "equisolid",
    "f-theta": "equidistant",
    "linear": "equidistant",
    "rectilinear": "gnomonic",
    "gnomonical": "gnomonic",
    "tan": "gnomonic",
}


def _finite(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


@dataclass(frozen=True)
class Site:
    """Where the camera stands.

    The values are checked on construction (a ``ValueError`` names the first one out of range).

    Attributes
    ----------
    lat_deg, lon_deg : float
        Geodetic latitude (-90..90) and longitude (East positive), deg.
    height_m : float
        Height above the ellipsoid, m.
    pressure_hpa : float or None
        Air pressure for refraction, hPa; ``None`` = standard atmosphere at ``height_m``
        (``1013.25 exp(-h / 8434 m)``); 0 switches refraction off.
    temperature_c : float
        Air temperature for refraction, deg C.
    relative_humidity : float
        Relative humidity for refraction, 0..1.
    wavelength_um : float
        Effective wavelength for refraction, micron (0.55 = V).
    """

    lat_deg: float
    lon_deg: float
    height_m: float = 0.0
    pressure_hpa: float | None = None
    temperature_c: float = 0.0
    relative_humidity: float = 0.0
    wavelength_um: float = 0.55

    def __post_init__(self):
        lat = _finite("lat_deg", self.lat_deg)
        if not -90.0 <= lat <= 90.0:
            raise ValueError(f"lat_deg must be in [-90, 90], got {self.lat_deg!r}")
        lon = _finite("lon_deg", self.lon_deg)
        if not -360.0 <= lon <= 360.0:
            raise ValueError(f"lon_deg must be in [-360, 360], got {self.lon_deg!r}")
        h = _finite("height_m", self.height_m)
        if not -500.0 <= h <= 10000.0:
            raise ValueError(f"height_m must be in [-500, 10000] m, got {self.height_m!r}")
        if self.pressure_hpa is not None:
            p = _finite("pressure_hpa", self.pressure_hpa)
            if not 0.0 <= p <= 1100.0:
                raise ValueError(f"pressure_hpa must be in [0, 1100] (or None), got {self.pressure_hpa!r}")
        t = _finite("temperature_c", self.temperature_c)
        if not -100.0 <= t <= 60.0:
            raise ValueError(f"temperature_c must be in [-100, 60], got {self.temperature_c!r}")
        rh = _finite("relative_humidity", self.relative_humidity)
        if not 0.0 <= rh <= 1.0:
            raise ValueError(f"relative_humidity must be in [0, 1], got {self.relative_humidity!r}")
        wl = _finite("wavelength_um", self.wavelength_um)
        if not 0.2 <= wl <= 30.0:
            raise ValueError(f"wavelength_um must be in [0.2, 30], got {self.wavelength_um!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Site:
        """Build from a mapping (a profile's ``[camera.site]`` table); unknown keys are refused.

        Parameters
        ----------
        d : Mapping
            The settings, keyed by the field names.

        Returns
        -------
        Site
            The validated site.

        Raises
        ------
        ValueError
            If ``d`` is not a mapping, has unknown keys or a value out of range.
        """
        return _from_dict(cls, d)

    def to_dict(self) -> dict:
        """Plain settings, the inverse of :meth:`from_dict`.

        Returns
        -------
        dict
            Every field by name.
        """
        return asdict(self)

    @property
    def pressure(self) -> float:
        """Pressure used for refraction, hPa.

        Returns
        -------
        float
            ``pressure_hpa`` when given, else the standard atmosphere at ``height_m``:
            ``1013.25 exp(-h / 8434 m)``.
        """
        if self.pressure_hpa is not None:
            return float(self.pressure_hpa)
        return 1013.25 * math.exp(-self.height_m / 8434.0)

    @property
    def location(self):
        """The site as an :class:`astropy.coordinates.EarthLocation`.

        Returns
        -------
        astropy.coordinates.EarthLocation
            The geodetic position (longitude, latitude, height).
        """
        import astropy.units as u
        from astropy.coordinates import EarthLocation

        return EarthLocation.from_geodetic(
            lon=self.lon_deg * u.deg, lat=self.lat_deg * u.deg, height=self.height_m * u.m
        )

    def altaz_frame(self, time):
        """The :class:`astropy.coordinates.AltAz` frame at ``time`` (a Time or anything Time takes).

        Parameters
        ----------
        time : astropy.time.Time or str or float
            The time; anything else than a Time is read as UTC.

        Returns
        -------
        astropy.coordinates.AltAz
            The frame at the site, with the pressure, temperature, humidity and wavelength for
            refraction.
        """
        import astropy.units as u
        from astropy.coordinates import AltAz
        from astropy.time import Time

        t = time if isinstance(time, Time) else Time(time, scale="utc")
        return AltAz(
            obstime=t,
            location=self.location,
            pressure=self.pressure * u.hPa,
            temperature=self.temperature_c * u.deg_C,
            relative_humidity=self.relative_humidity,
            obswl=self.wavelength_um * u.micron,
        )

    def radec_to_altaz(self, ra_deg, dec_deg, time) -> tuple[np.ndarray, np.ndarray]:
        """Apparent (refracted) altitude and azimuth (deg, az N through E) of ICRS positions.

        IERS tables are not downloaded (the bundled ones are used).

        Parameters
        ----------
        ra_deg, dec_deg : float or array_like
            ICRS right ascension and declination, deg.
        time : astropy.time.Time or str or float
            The time (see :meth:`altaz_frame`).

        Returns
        -------
        alt : numpy.ndarray
            Apparent altitude, deg (at least 1-D).
        az : numpy.ndarray
            Azimuth, deg, North through East in [0, 360).
        """
        import astropy.units as u
        from astropy.coordinates import SkyCoord

        ra = np.atleast_1d(np.asarray(ra_deg, dtype=float))
        dec = np.atleast_1d(np.asarray(dec_deg, dtype=float))
        if ra.size == 0:
            return np.zeros(0), np.zeros(0)
        with iers.offline():  # also silences refraction-near-horizon notices
            aa = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").transform_to(self.altaz_frame(time))
        return np.asarray(aa.alt.deg), np.mod(np.asarray(aa.az.deg), 360.0)

    def altaz_to_radec(self, alt_deg, az_deg, time) -> tuple[np.ndarray, np.ndarray]:
        """ICRS RA, Dec (deg) of apparent (refracted) altitude/azimuth directions (deg).

        Parameters
        ----------
        alt_deg, az_deg : float or array_like
            Apparent altitude and azimuth (North through East), deg.
        time : astropy.time.Time or str or float
            The time (see :meth:`altaz_frame`).

        Returns
        -------
        ra : numpy.ndarray
            Right ascension, deg in [0, 360) (at least 1-D).
        dec : numpy.ndarray
            Declination, deg.
        """
        import astropy.units as u
        from astropy.coordinates import ICRS, SkyCoord

        alt = np.atleast_1d(np.asarray(alt_deg, dtype=float))
        az = np.atleast_1d(np.asarray(az_deg, dtype=float))
        if alt.size == 0:
            return np.zeros(0), np.zeros(0)
        with iers.offline():
            c = SkyCoord(alt=alt * u.deg, az=az * u.deg, frame=self.altaz_frame(time)).transform_to(ICRS())
        return np.mod(np.asarray(c.ra.deg), 360.0), np.asarray(c.dec.deg)


#: What a ``[camera]`` table may leave out for ``skylake camera fit`` to find (the projection is required).
TO_FIT = ("focal_length_mm", "pixel_size_mm", "x0", "y0")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _from_dict(cls, d: Mapping[str, Any]):
    if not isinstance(d, Mapping):
        raise ValueError(f"{cls.__name__} settings must be a table/mapping, got {type(d).__name__}")
    names = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s) {unknown}; known: {sorted(names)}")
    kwargs = dict(d)
    if "poly" in kwargs and kwargs["poly"] is not None:
        kwargs["poly"] = tuple(kwargs["poly"])
    return cls(**kwargs)


@dataclass(frozen=True)
class CameraModel:
    """A fisheye (or any radially symmetric) camera looking at the zenith.

    The values are checked on construction (a ``ValueError`` names the first one that is invalid),
    and the mapping r(theta) must increase up to ``theta_max_deg``.

    Attributes
    ----------
    projection : str
        One of :data:`PROJECTIONS` (aliases: ``equisolid_angle``, ``f-theta``, ``rectilinear``, ...).
    focal_length_mm : float
        Focal length, mm (> 0).
    pixel_size_mm : float
        Pixel pitch on the sensor, mm (> 0), e.g. 0.0075 for 7.5 um.
    x0, y0 : float
        Zenith pixel, 0-based, ``x`` = column, ``y`` = row.
    rotation_deg : float
        Image position angle of North (azimuth 0), deg, counter-clockwise from image up on a
        display with row 0 at the top (see the module docstring); normalised to [-180, 180).
    parity : int
        The image's parity. +1: azimuth increases counter-clockwise on that display (sky seen
        from below, unmirrored); -1: mirrored image.
    k1, k2 : float
        Radial distortion: ``r -> r (1 + k1 theta^2 + k2 theta^4)``, theta in rad (dimensionless).
    poly : tuple of float
        For ``projection = "polynomial"``: ``(p2, p3, ...)`` in ``R = f (theta + p2 theta^2 + ...)``.
    theta_max_deg : float
        Largest angle from the optical axis the lens maps, deg (90 = horizon for an untilted
        camera; < 90 for gnomonic; more for fisheyes wider than a hemisphere). r(theta) must
        increase up to it.
    tilt_deg, tilt_az_deg : float
        The optical axis points ``tilt_deg`` away from the zenith towards azimuth ``tilt_az_deg``
        (deg). With a tilt, ``(x0, y0)`` is the optical axis pixel and theta, the radial
        mapping's angle, is measured from the axis; the zenith pixel is
        ``altaz_to_pixel(90, 0)``. Default 0 (axis = zenith).
    fit_n_stars, fit_rms_px, fit_sigma : int, float, dict
        How the model was fitted (``skylake camera fit``): stars used, rms residual (px) and the 1-sigma
        spread of each fitted parameter (from the least-squares Jacobian, scaled by the residuals); 0, NaN
        and {} for a model that was not fitted. They do not change the mapping.
    """

    projection: str
    focal_length_mm: float
    pixel_size_mm: float
    x0: float
    y0: float
    rotation_deg: float = 0.0
    parity: int = 1
    k1: float = 0.0
    k2: float = 0.0
    poly: tuple = ()
    theta_max_deg: float = 90.0
    tilt_deg: float = 0.0
    tilt_az_deg: float = 0.0
    fit_n_stars: int = field(default=0, compare=False)
    fit_rms_px: float = field(default=math.nan, compare=False)
    fit_sigma: dict = field(default_factory=dict, compare=False, hash=False)
    _table: Any = field(default=None, init=False, repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    def __post_init__(self):
        proj = str(self.projection).strip().lower()
        proj = _ALIASES.get(proj, proj)
        if proj not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {self.projection!r}")
        object.__setattr__(self, "projection", proj)
        f = _finite("focal_length_mm", self.focal_length_mm)
        if not 0.0 < f <= 1000.0:
            raise ValueError(f"focal_length_mm must be in (0, 1000] mm, got {self.focal_length_mm!r}")
        p = _finite("pixel_size_mm", self.pixel_size_mm)
        if not 0.0 < p <= 1.0:
            raise ValueError(f"pixel_size_mm must be in (0, 1] mm (e.g. 0.0075 for 7.5 um), got {self.pixel_size_mm!r}")
        for name in ("x0", "y0", "rotation_deg", "k1", "k2", "tilt_deg", "tilt_az_deg"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        # angles normalised: rotation to [-180, 180), tilt azimuth to [0, 360)
        object.__setattr__(self, "rotation_deg", (self.rotation_deg + 180.0) % 360.0 - 180.0)
        object.__setattr__(self, "tilt_az_deg", self.tilt_az_deg % 360.0)
        for name in ("focal_length_mm", "pixel_size_mm"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        if self.parity not in (1, -1):
            raise ValueError(f"parity must be +1 (sky seen from below) or -1 (mirrored), got {self.parity!r}")
        object.__setattr__(self, "parity", int(self.parity))
        poly = tuple(_finite(f"poly[{i}]", c) for i, c in enumerate(self.poly or ()))
        if poly and proj != "polynomial":
            raise ValueError(f"poly={poly!r} is only used with projection='polynomial', not {proj!r}")
        object.__setattr__(self, "poly", poly)
        tmax = _finite("theta_max_deg", self.theta_max_deg)
        limit = 89.0 if proj == "gnomonic" else 179.0 if proj != "orthographic" else 90.0
        if proj == "stereographic":
            limit = 170.0
        if not 1.0 <= tmax <= limit:
            raise ValueError(f"theta_max_deg must be in [1, {limit}] for a {proj} lens, got {self.theta_max_deg!r}")
        object.__setattr__(self, "theta_max_deg", tmax)
        if not 0.0 <= self.tilt_deg <= 45.0:
            raise ValueError(f"tilt_deg must be in [0, 45] deg, got {self.tilt_deg!r}")
        # r(theta) must increase strictly on [0, theta_max] (else pixel -> sky is ambiguous).
        th = np.linspace(0.0, math.radians(tmax), 2049)
        dr = self._drdtheta_px(th)
        if not np.all(dr[:-1] > 0):
            bad = math.degrees(th[np.argmax(dr[:-1] <= 0)])
            raise ValueError(
                f"r(theta) stops increasing at theta = {bad:.1f} deg < theta_max_deg = {tmax}: "
                f"distortion k1={self.k1}, k2={self.k2}, poly={poly} is too large for a {proj} lens"
            )
        r = self._r_px(th)
        object.__setattr__(self, "_table", (th, r))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CameraModel:
        """Build and validate from a mapping (a profile's ``[camera]`` table); unknown keys are refused.

        Parameters
        ----------
        d : Mapping
            The settings, keyed by the field names (``poly`` may be a list).

        Returns
        -------
        CameraModel
            The validated model.

        Raises
        ------
        ValueError
            If ``d`` is not a mapping, has unknown keys or an invalid value.
        """
        return _from_dict(cls, d)

    @classmethod
    def missing(cls, d: Mapping[str, Any]) -> list[str]:
        """The geometry a ``[camera]`` table leaves to ``skylake camera fit`` (:data:`TO_FIT`).

        An observer may give only the lens projection, with the site; such a table is checked by
        :meth:`check_partial` and the frames cannot be placed until the fit fills it in.

        Parameters
        ----------
        d : Mapping
            A (possibly partial) ``[camera]`` table.

        Returns
        -------
        list of str
            The names of :data:`TO_FIT` that ``d`` does not give.
        """
        return [k for k in TO_FIT if k not in d]

    @classmethod
    def check_partial(cls, d: Mapping[str, Any]) -> None:
        """Validate the values a (possibly partial) ``[camera]`` table gives (placeholders for the rest).

        Parameters
        ----------
        d : Mapping
            A (possibly partial) ``[camera]`` table.

        Raises
        ------
        ValueError
            If a value it gives is invalid, or a key is unknown.
        """
        placeholder = {"focal_length_mm": 1.0, "pixel_size_mm": 0.001, "x0": 0.0, "y0": 0.0}
        d = dict(d)
        if "focal_length_mm" in d and "pixel_size_mm" not in d:
            placeholder["pixel_size_mm"] = (
                min(1.0, max(1e-6, float(d["focal_length_mm"]) / 1000.0)) if _is_number(d["focal_length_mm"]) else 0.001
            )
        cls.from_dict({**placeholder, **d})

    def to_dict(self) -> dict:
        """Plain settings (JSON/TOML-friendly), the inverse of :meth:`from_dict`.

        Returns
        -------
        dict
            The init fields by name (tuples as lists); the ``fit_*`` fields only for a fitted model.
        """
        out = {}
        for name, f in self.__dataclass_fields__.items():
            if f.init:
                v = getattr(self, name)
                if name.startswith("fit_") and (v == 0 or v == {} or (isinstance(v, float) and math.isnan(v))):
                    continue  # not fitted: nothing to say
                out[name] = list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, dict) else v
        return out

    def replace(self, **changes) -> CameraModel:
        """A copy with some parameters changed (validated again).

        Parameters
        ----------
        **changes
            New values of fields, by name.

        Returns
        -------
        CameraModel
            The new model.
        """
        return replace(self, **changes)

    # ------------------------------------------------------------------ radial mapping
    @property
    def f_px(self) -> float:
        """Focal length in pixels.

        Returns
        -------
        float
            ``focal_length_mm / pixel_size_mm``.
        """
        return self.focal_length_mm / self.pixel_size_mm

    def _ideal(self, th):
        p = self.projection
        if p == "equidistant":
            return th, np.ones_like(th)
        if p == "equisolid":
            return 2.0 * np.sin(th / 2.0), np.cos(th / 2.0)
        if p == "stereographic":
            return 2.0 * np.tan(th / 2.0), 1.0 / np.cos(th / 2.0) ** 2
        if p == "orthographic":
            return np.sin(th), np.cos(th)
        if p == "gnomonic":
            return np.tan(th), 1.0 / np.cos(th) ** 2
        g = th.copy()
        dg = np.ones_like(th)
        for i, c in enumerate(self.poly, start=2):
            g = g + c * th**i
            dg = dg + i * c * th ** (i - 1)
        return g, dg

    def _r_px(self, th):
        g, _ = self._ideal(th)
        return self.f_px * g * (1.0 + self.k1 * th**2 + self.k2 * th**4)

    def _drdtheta_px(self, th):
        g, dg = self._ideal(th)
        d = 1.0 + self.k1 * th**2 + self.k2 * th**4
        dd = 2.0 * self.k1 * th + 4.0 * self.k2 * th**3
        return self.f_px * (dg * d + g * dd)

    def _closed_inverse(self, r):
        """theta (rad) of the undistorted projection, or None for the polynomial lens."""
        u = r / self.f_px
        p = self.projection
        with np.errstate(invalid="ignore"):
            if p == "equidistant":
                return u
            if p == "equisolid":
                return 2.0 * np.arcsin(np.clip(u / 2.0, 0, 1))
            if p == "stereographic":
                return 2.0 * np.arctan(u / 2.0)
            if p == "orthographic":
                return np.arcsin(np.clip(u, 0, 1))
            if p == "gnomonic":
                return np.arctan(u)
        return None

    def r_of_theta(self, theta_deg) -> np.ndarray:
        """Distance from the zenith pixel, px, of zenith angle(s) ``theta_deg`` (deg).

        Parameters
        ----------
        theta_deg : float or array_like
            Angle(s) from the optical axis (the zenith for an untilted camera), deg.

        Returns
        -------
        numpy.ndarray
            The distance(s), px, distortion included.
        """
        th = np.radians(np.asarray(theta_deg, dtype=float))
        return self._r_px(th)

    def theta_of_r(self, r_px) -> np.ndarray:
        """Zenith angle, deg, of distance(s) ``r_px`` from the zenith pixel; NaN beyond ``theta_max_deg``.

        Parameters
        ----------
        r_px : float or array_like
            Distance(s) from the zenith (optical axis) pixel, px.

        Returns
        -------
        numpy.ndarray
            The angle(s) from the axis, deg; NaN for negative distances and beyond ``theta_max_deg``.
        """
        r = np.asarray(r_px, dtype=float)
        th_tab, r_tab = self._table
        closed = self._closed_inverse(r) if (self.k1 == 0.0 and self.k2 == 0.0) else None
        if closed is not None:
            th = closed
        else:
            th = np.interp(r, r_tab, th_tab)
            for _ in range(3):  # Newton polish of the tabulated inverse (machine precision)
                th = th - (self._r_px(th) - r) / self._drdtheta_px(th)
        th = np.where((r < 0) | (r > r_tab[-1] * (1 + 1e-12)), np.nan, th)
        return np.degrees(th)

    def plate_scale(self, theta_deg) -> np.ndarray:
        """Radial plate scale dr/dtheta at zenith angle ``theta_deg``, px per deg.

        Parameters
        ----------
        theta_deg : float or array_like
            Angle(s) from the optical axis, deg.

        Returns
        -------
        numpy.ndarray
            The plate scale, px per deg.
        """
        return self._drdtheta_px(np.radians(np.asarray(theta_deg, dtype=float))) * math.pi / 180.0

    @property
    def horizon_radius_px(self) -> float:
        """Distance of the horizon (theta = 90 deg, or ``theta_max_deg`` if smaller) from the zenith, px.

        Returns
        -------
        float
            The radius, px.
        """
        return float(self.r_of_theta(min(90.0, self.theta_max_deg)))

    # ------------------------------------------------------------------ pixel <-> alt/az
    def _tilt(self, alt, az, inverse: bool):
        """Rotate directions between the horizon frame and the camera frame (axis -> zenith)."""
        if self.tilt_deg == 0.0:
            return alt, az
        a, z = np.radians(alt), np.radians(az)
        e, n, u = np.cos(a) * np.sin(z), np.cos(a) * np.cos(z), np.sin(a)
        p = math.radians(self.tilt_az_deg)
        t = math.radians(self.tilt_deg) * (-1.0 if inverse else 1.0)
        cp, sp, ct, st = math.cos(p), math.sin(p), math.cos(t), math.sin(t)
        e1, n1 = e * cp - n * sp, n * cp + e * sp  # azimuth - tilt_az
        n2, u2 = n1 * ct - u * st, n1 * st + u * ct  # tip the axis to the zenith
        e3, n3 = e1 * cp + n2 * sp, n2 * cp - e1 * sp  # azimuth + tilt_az
        return np.degrees(np.arcsin(np.clip(u2, -1, 1))), np.mod(np.degrees(np.arctan2(e3, n3)), 360.0)

    def altaz_to_pixel(self, alt_deg, az_deg) -> tuple[np.ndarray, np.ndarray]:
        """Pixel ``(x, y)`` (0-based, x = column) of directions ``alt_deg``, ``az_deg`` (deg, az N->E).

        Directions more than ``theta_max_deg`` from the optical axis give NaN.

        Parameters
        ----------
        alt_deg, az_deg : float or array_like
            Altitude and azimuth (North through East), deg.

        Returns
        -------
        x, y : numpy.ndarray
            Column and row, px (NaN outside the lens field).
        """
        alt = np.asarray(alt_deg, dtype=float)
        az = np.asarray(az_deg, dtype=float)
        alt, az = self._tilt(alt, az, inverse=False)
        theta = 90.0 - alt
        th = np.radians(theta)
        r = self._r_px(th)
        r = np.where((theta < 0) | (theta > self.theta_max_deg), np.nan, r)
        psi = np.radians(self.parity * az + self.rotation_deg)
        return self.x0 - r * np.sin(psi), self.y0 - r * np.cos(psi)

    def pixel_to_altaz(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Altitude and azimuth (deg, az N->E in [0, 360)) of pixel positions; NaN outside the lens field.

        Parameters
        ----------
        x, y : float or array_like
            Column and row, px (0-based).

        Returns
        -------
        alt, az : numpy.ndarray
            Altitude and azimuth (North through East, in [0, 360)), deg.
        """
        dx = np.asarray(x, dtype=float) - self.x0
        dy = np.asarray(y, dtype=float) - self.y0
        r = np.hypot(dx, dy)
        theta = self.theta_of_r(r)
        psi = np.degrees(np.arctan2(-dx, -dy))
        az = np.mod(self.parity * (psi - self.rotation_deg), 360.0)
        return self._tilt(90.0 - theta, az, inverse=True)

    def pixel_grid_altaz(self, shape) -> tuple[np.ndarray, np.ndarray]:
        """Alt, az (deg) of every pixel centre of an image of ``shape = (ny, nx)``.

        Parameters
        ----------
        shape : tuple of int
            The image shape ``(ny, nx)``.

        Returns
        -------
        alt, az : numpy.ndarray
            Altitude and azimuth of every pixel, deg, arrays of ``shape`` (NaN outside the lens field).
        """
        ny, nx = int(shape[0]), int(shape[1])
        y, x = np.mgrid[0:ny, 0:nx]
        return self.pixel_to_altaz(x, y)

    def sky_mask(self, shape, alt_min_deg: float = 0.0) -> np.ndarray:
        """Boolean image: True where a pixel sees the sky above ``alt_min_deg`` (deg).

        Parameters
        ----------
        shape : tuple of int
            The image shape ``(ny, nx)``.
        alt_min_deg : float, default 0.0
            Lowest altitude counted as sky, deg.

        Returns
        -------
        numpy.ndarray
            Boolean array of ``shape``.
        """
        ny, nx = int(shape[0]), int(shape[1])
        if self.tilt_deg == 0.0:  # a circle: no need for every pixel's direction
            theta = 90.0 - alt_min_deg
            rmax = float(self.r_of_theta(min(theta, self.theta_max_deg))) if theta >= 0 else -1.0
            y, x = np.ogrid[0:ny, 0:nx]
            return (x - self.x0) ** 2 + (y - self.y0) ** 2 <= rmax**2
        alt, _ = self.pixel_grid_altaz((ny, nx))
        return np.isfinite(alt) & (alt >= alt_min_deg)

    # ------------------------------------------------------------------ solid angle
    def solid_angle(self, x, y, unit: str = "sr") -> np.ndarray:
        """Solid angle of a 1 x 1 px area at pixel position(s) ``(x, y)``.

        ``sin(theta) / (r dr/dtheta)`` sr per px^2 (1 / f_px^2 at the zenith), from the model alone.

        Parameters
        ----------
        x, y : float or array_like
            Column and row, px (0-based).
        unit : {"sr", "arcsec2"}, default "sr"
            The unit of the result.

        Returns
        -------
        numpy.ndarray
            Solid angle per pixel in ``unit``; NaN outside the lens field.

        Raises
        ------
        ValueError
            If ``unit`` is neither "sr" nor "arcsec2".
        """
        if unit not in ("sr", "arcsec2"):
            raise ValueError(f"unit must be 'sr' or 'arcsec2', got {unit!r}")
        dx = np.asarray(x, dtype=float) - self.x0
        dy = np.asarray(y, dtype=float) - self.y0
        r = np.hypot(dx, dy)
        th = np.radians(self.theta_of_r(r))
        drdt = self._drdtheta_px(th)
        small = th < 1e-6
        safe_th = np.where(small, 1.0, th)
        omega = np.where(
            small, 1.0 / self._drdtheta_px(np.zeros_like(th)) ** 2, np.sin(safe_th) / (self._r_px(safe_th) * drdt)
        )
        return omega * ARCSEC2_PER_SR if unit == "arcsec2" else omega

    def solid_angle_map(self, shape, unit: str = "sr") -> np.ndarray:
        """:meth:`solid_angle` of every pixel of an image of ``shape = (ny, nx)``.

        Parameters
        ----------
        shape : tuple of int
            The image shape ``(ny, nx)``.
        unit : {"sr", "arcsec2"}, default "sr"
            The unit of the result.

        Returns
        -------
        numpy.ndarray
            Solid angle of every pixel in ``unit``, an array of ``shape`` (NaN outside the lens field).
        """
        ny, nx = int(shape[0]), int(shape[1])
        y, x = np.mgrid[0:ny, 0:nx]
        return self.solid_angle(x, y, unit=unit)

    # ------------------------------------------------------------------ pixel <-> RA/Dec
    def radec_to_pixel(self, ra_deg, dec_deg, site: Site, time) -> tuple[np.ndarray, np.ndarray]:
        """Pixel ``(x, y)`` of ICRS positions (deg) at ``site`` and ``time`` (refraction included).

        Parameters
        ----------
        ra_deg, dec_deg : float or array_like
            ICRS right ascension and declination, deg.
        site : Site
            Where the camera stands.
        time : astropy.time.Time or str or float
            The time (see :meth:`Site.altaz_frame`).

        Returns
        -------
        x, y : numpy.ndarray
            Column and row, px (NaN outside the lens field).
        """
        alt, az = site.radec_to_altaz(ra_deg, dec_deg, time)
        return self.altaz_to_pixel(alt, az)

    def pixel_to_radec(self, x, y, site: Site, time) -> tuple[np.ndarray, np.ndarray]:
        """ICRS RA, Dec (deg) of pixel positions at ``site`` and ``time``; NaN outside the lens field.

        Parameters
        ----------
        x, y : float or array_like
            Column and row, px (0-based).
        site : Site
            Where the camera stands.
        time : astropy.time.Time or str or float
            The time (see :meth:`Site.altaz_frame`).

        Returns
        -------
        ra, dec : numpy.ndarray
            Right ascension and declination, deg (at least 1-D).
        """
        alt, az = self.pixel_to_altaz(np.atleast_1d(x), np.atleast_1d(y))
        ok = np.isfinite(alt)
        ra = np.full(alt.shape, np.nan)
        dec = np.full(alt.shape, np.nan)
        if ok.any():
            ra[ok], dec[ok] = site.altaz_to_radec(alt[ok], az[ok], time)
        return ra, dec


def angular_separation_deg(alt1, az1, alt2, az2) -> np.ndarray:
    """Great-circle distance (deg) between two sets of (alt, az) or (dec, ra) directions (deg).

    Parameters
    ----------
    alt1, az1 : float or array_like
        The first directions: altitude (or declination) and azimuth (or right ascension), deg.
    alt2, az2 : float or array_like
        The second directions, deg (broadcast against the first).

    Returns
    -------
    numpy.ndarray
        The angular distance, deg.
    """
    a1, a2 = np.radians(alt1), np.radians(alt2)
    daz = np.radians(np.asarray(az2) - np.asarray(az1))
    s = np.hypot(np.cos(a2) * np.sin(daz), np.cos(a1) * np.sin(a2) - np.sin(a1) * np.cos(a2) * np.cos(daz))
    c = np.sin(a1) * np.sin(a2) + np.cos(a1) * np.cos(a2) * np.cos(daz)
    return np.degrees(np.arctan2(s, c))


def camera_of(profile) -> tuple[CameraModel, Site]:
    """A profile's ``[camera]`` model and its site (the profile's ``[site]``).

    Parameters
    ----------
    profile : skylake.profile.Profile
        The profile.

    Returns
    -------
    model : CameraModel
        The camera's lens model.
    site : Site
        The profile's site.

    Raises
    ------
    ValueError
        The profile has no ``[camera]`` section.
    skylake.profile.ProfileError
        The ``[camera]`` gives only part of the model (it must be fitted first: ``skylake camera fit``).
    """
    if profile.camera is None:
        raise ValueError(f"profile {profile.name!r} has no [camera] section")
    missing = CameraModel.missing(profile.camera)
    if missing:
        raise ProfileError(
            f"profile {profile.name!r} ({profile.source}): its [camera] gives no {', '.join(missing)}: fit "
            f"the model on a clear frame first: skylake camera fit FRAME --pipeline {profile.source} "
            f"--out mycam.toml, then use mycam.toml"
        )
    site = profile.site
    return CameraModel.from_dict(profile.camera), Site(site.lat_deg, site.lon_deg, site.height_m)


register_section("camera", CameraModel.check_partial)
