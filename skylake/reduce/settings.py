"""A profile's ``[reduction]`` table, validated at construction.

A leaf module: profiles validate it without importing ccdproc or astroscrappy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skylake.profile import register_section, settings_from_table

__all__ = ["STEPS", "ReductionSettings", "DEFAULT_FRAME_TYPES", "reduction_settings"]

#: The reduction steps, in the order they are applied.
STEPS = ("overscan", "bias", "dark", "flat", "sky", "badpix", "cosmics")

#: Header values of each frame type as MaxIm DL, N.I.N.A., SGP, ACP and IRAF write them (compared case-blind).
DEFAULT_FRAME_TYPES = {
    "keys": ["IMAGETYP", "FRAMETYP", "OBSTYPE"],
    "bias": ["Bias Frame", "Bias", "Zero"],
    "dark": ["Dark Frame", "Dark"],
    "flat": ["Flat Field", "Flat Frame", "Flat", "Sky Flat", "SkyFlat", "Dome Flat", "DomeFlat", "Twilight Flat"],
    "light": ["Light Frame", "Light", "Object", "Science"],
}


@dataclass
class ReductionSettings:
    """Validated settings (a profile's ``[reduction]`` table).

    Attributes
    ----------
    steps : list of str
        What a raw frame of this camera needs, from :data:`STEPS` (applied in that order).
    overscan : str
        The overscan region as a FITS section (``"[1025:1056, 1:1024]"``); "" = none.
    trim : str
        The part of the chip kept after overscan subtraction, a FITS section; "" = all of it.
    max_age_days : float
        A master further than this in time from a frame is not used for it.
    other_night : str
        A master built on another night than the frame's: ``"flag"`` (used, and named in the frame's
        ``reduction`` note) or ``"reject"`` (the frame is rejected with the reason).
    missing : str
        A frame with no usable master for a step: ``"reject"`` (with the reason) or ``"flag"`` (ingested
        without that step, named in its ``reduction`` note).
    combine : str
        How raw calibration frames are combined: ``"median"`` or ``"mean"`` (both after sigma clipping).
    clip_sigma : float
        Sigma of the clipping (ccdproc's ``sigma_clip``, median centre, MAD-based deviation).
    hot_sigma : float
        A dark-current rate this many robust sigma above the median marks a hot pixel.
    dead_low, dead_high : float
        A normalised flat outside ``[dead_low, dead_high]`` marks a dead (or non-linear) pixel.
    read_noise : float
        Read noise [ADU] when no bias master gives it (the cosmic-ray finder needs it).
    cosmics_sigclip : float
        The Laplacian detection limit of astroscrappy (``sigclip``).
    cosmics_objlim : float
        The contrast limit of astroscrappy between a cosmic ray and a star (``objlim``).
    sky_sigma : float
        Building a sky frame: pixels this many sigma from a frame's sigma-clipped median (sources) are masked.
    sky_grow : int
        ... and so are the pixels within this many pixels of them (the sources' wings).
    sky_box : int
        Holes no frame fills are filled with the median of the sky frame in boxes of this many pixels.
    sky_min_frames : int
        Fewest dithered frames a sky frame is built from.
    frame_types : dict
        Header keys and values of each frame type (:data:`DEFAULT_FRAME_TYPES` overrides).
    """

    steps: list = field(default_factory=list)
    overscan: str = ""
    trim: str = ""
    max_age_days: float = 30.0
    other_night: str = "flag"
    missing: str = "reject"
    combine: str = "median"
    clip_sigma: float = 3.0
    hot_sigma: float = 8.0
    dead_low: float = 0.5
    dead_high: float = 1.5
    read_noise: float = 5.0
    cosmics_sigclip: float = 6.0
    cosmics_objlim: float = 5.0
    sky_sigma: float = 4.0
    sky_grow: int = 2
    sky_box: int = 32
    sky_min_frames: int = 5
    frame_types: dict = field(default_factory=dict)

    def __post_init__(self):
        steps = list(self.steps)
        unknown = [s for s in steps if s not in STEPS]
        if unknown:
            raise ValueError(f"reduction.steps = {self.steps!r}: unknown {unknown}; known: {list(STEPS)}")
        if len(set(steps)) != len(steps):
            raise ValueError(f"reduction.steps = {self.steps!r} names a step twice")
        if "dark" in steps and "bias" not in steps:
            raise ValueError(
                f"reduction.steps = {self.steps!r}: 'dark' needs 'bias' (darks are scaled by exposure time, "
                f"which would scale a bias level left in them too)"
            )
        if "overscan" in steps and not self.overscan.strip():
            raise ValueError("reduction.steps has 'overscan' but reduction.overscan gives no region")
        self.steps = [s for s in STEPS if s in steps]
        for name, allowed in (("other_night", ("flag", "reject")), ("missing", ("flag", "reject"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"reduction.{name} = {getattr(self, name)!r} must be one of {list(allowed)}")
        if self.combine not in ("median", "mean"):
            raise ValueError(f"reduction.combine = {self.combine!r} must be 'median' or 'mean'")
        for name, lo, hi in (
            ("max_age_days", 0.0, 1e5),
            ("clip_sigma", 1.0, 100.0),
            ("hot_sigma", 1.0, 1e4),
            ("dead_low", 0.0, 1.0),
            ("dead_high", 1.0, 100.0),
            ("read_noise", 0.0, 1e4),
            ("cosmics_sigclip", 1.0, 100.0),
            ("cosmics_objlim", 0.1, 100.0),
            ("sky_sigma", 1.0, 100.0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ValueError(f"reduction.{name} = {value!r} must be a number in [{lo}, {hi}]")
        for name, lo, hi in (("sky_grow", 0, 100), ("sky_box", 4, 4096), ("sky_min_frames", 2, 10000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"reduction.{name} = {value!r} must be a whole number in [{lo}, {hi}]")
        types = dict(DEFAULT_FRAME_TYPES)
        for key, values in (self.frame_types or {}).items():
            if key not in DEFAULT_FRAME_TYPES:
                raise ValueError(f"reduction.frame_types.{key}: unknown frame type; known: {list(DEFAULT_FRAME_TYPES)}")
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"reduction.frame_types.{key} = {values!r} must be a list of strings")
            types[key] = values
        self.frame_types = types

    @classmethod
    def from_dict(cls, d: dict) -> ReductionSettings:
        """Settings from a profile's ``[reduction]`` table.

        Parameters
        ----------
        d : dict
            The table.

        Returns
        -------
        ReductionSettings
            The validated settings.

        Raises
        ------
        ValueError
            An unknown key or a bad value, named.
        """
        return settings_from_table(cls, d, "reduction")


def reduction_settings(profile) -> ReductionSettings:
    """A profile's ``[reduction]`` settings.

    Parameters
    ----------
    profile : skylake.profile.Profile
        The profile.

    Returns
    -------
    ReductionSettings
        The settings (defaults when absent).
    """
    return ReductionSettings.from_dict(profile.reduction or {})


register_section("reduction", ReductionSettings.from_dict)
