"""The ensemble stage's settings (a profile's ``[ensemble]`` beside :class:`~skylake.ensemble.solve.EnsembleSettings`).

A leaf module: profiles validate these without importing the stage.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EPD_PARAMS", "EnsembleOptions"]

#: Parameters EPD can regress on (``[ensemble] epd_params``).
EPD_PARAMS = ("x", "y", "fwhm", "bkg", "airmass", "hour_angle")


@dataclass(frozen=True)
class EnsembleOptions:
    """The stage's own settings of a profile's ``[ensemble]`` (beside :class:`EnsembleSettings`).

    Attributes
    ----------
    enabled : bool
        Solve this profile's nights at all.
    match_radius_px : float
        Detections on different frames within this many pixels (at the field's median scale) are one star.
    saturation_fraction : float
        Points whose raw peak reaches this fraction of the frame's saturation take no part (non-linear).
    detrend : bool
        Fit EPD and TFA.
    epd_params : sequence of str
        Parameters of EPD, from :data:`EPD_PARAMS` (stored as a tuple).
    detrend_min_points : int
        Stars with fewer points in the night are not detrended.
    detrend_window : int
        Running-median window (points) of the signal reconstruction; 0 for plain EPD/TFA.
    detrend_alpha : float
        Significance a star's trend must reach to be removed (F-test).
    max_templates : int
        TFA template stars at most.
    read_noise_adu : float
        The camera's read noise, ADU per pixel (the camera-facts curve of the noise diagram; 0: unknown).
    telescope_diameter_m : float
        The telescope's aperture, m: the noise model's scintillation term (0: unknown, no scintillation).
    scintillation_factor : float
        The factor on Young's scintillation where the night's airmasses cannot fit it (Osborn et al. 2015's
        median over major sites: 1.5).
    best_aperture : bool
        Each star's light curve uses the flux of least modelled noise (else always ``[calibration] flux``).
    variable_fap : float
        Objects whose false-alarm probability of variability (chi2 of their points with the modelled errors) is
        below this are flagged ``variable`` (LAKE/objects; the profile of most frames, at the first build).

    Raises
    ------
    ValueError
        When an EPD parameter is unknown, a flag is not a bool, or a number is out of its allowed range.
    """

    enabled: bool = True
    match_radius_px: float = 1.5
    saturation_fraction: float = 0.9
    detrend: bool = True
    epd_params: tuple = ("x", "y", "fwhm", "bkg", "airmass")
    detrend_min_points: int = 20
    detrend_window: int = 15
    detrend_alpha: float = 1e-3
    max_templates: int = 200
    read_noise_adu: float = 0.0
    telescope_diameter_m: float = 0.0
    scintillation_factor: float = 1.5
    best_aperture: bool = True
    variable_fap: float = 1e-3

    def __post_init__(self):
        object.__setattr__(self, "epd_params", tuple(self.epd_params))
        bad = [p for p in self.epd_params if p not in EPD_PARAMS]
        if bad:
            raise ValueError(f"ensemble.epd_params: unknown {bad}; allowed: {list(EPD_PARAMS)}")
        for name in ("enabled", "detrend", "best_aperture"):  # not a table
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ensemble.{name} must be true or false, got {getattr(self, name)!r}")
        for name, lo, hi in (
            ("match_radius_px", 0.1, 50.0),
            ("saturation_fraction", 0.1, 10.0),
            ("detrend_alpha", 1e-12, 1.0),
            ("read_noise_adu", 0.0, 1e5),
            ("telescope_diameter_m", 0.0, 50.0),
            ("scintillation_factor", 0.0, 20.0),
            ("variable_fap", 1e-300, 0.5),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"ensemble.{name} must be a number in [{lo}, {hi}], got {v!r}")
        for name, lo, hi in (
            ("detrend_min_points", 5, 10**9),
            ("detrend_window", 0, 10**6),
            ("max_templates", 0, 10**6),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"ensemble.{name} must be an integer in [{lo}, {hi}], got {v!r}")
