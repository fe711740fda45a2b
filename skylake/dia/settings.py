"""A profile's ``[dia]`` table: difference imaging in the ``skylake ingest`` chain, validated at construction.

A leaf module: profiles validate the section without importing the kernel or sep. With the section present,
``skylake ingest`` builds a reference for each pointing that has none once it has ``min_frames`` usable frames,
then subtracts the ingested nights' frames (:func:`skylake.dia.stage.dia_after`); without it, difference imaging
runs only on request (``skylake reference build``, ``skylake dia``).

>>> DiaConfig.from_dict({"min_frames": 6})
DiaConfig(enabled=True, min_frames=6, max_frames=10, threshold=5.0)
>>> DiaConfig.from_dict({"min_frames": 2})
Traceback (most recent call last):
...
ValueError: dia.min_frames = 2: a reference needs at least 3 frames (a clipped mean of fewer cannot reject anything)
"""

from __future__ import annotations

from dataclasses import dataclass

from skylake.profile import register_section, settings_from_table

__all__ = ["DiaConfig", "dia_config"]


@dataclass(frozen=True)
class DiaConfig:
    """Validated settings (a profile's ``[dia]`` table).

    Attributes
    ----------
    enabled : bool
        Run difference imaging after each ingest (true when the section is present; false turns it off again).
    min_frames : int
        A pointing gets its reference once it has this many usable frames (ok, with a WCS and a FWHM).
    max_frames : int
        The reference stacks at most this many, the sharpest.
    threshold : float
        The DIA sources' detection threshold on the difference [sigma of its noise].
    """

    enabled: bool = True
    min_frames: int = 5
    max_frames: int = 10
    threshold: float = 5.0

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise TypeError(f"dia.enabled = {self.enabled!r} must be true or false")
        for name in ("min_frames", "max_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"dia.{name} = {value!r} must be a whole number of frames")
        if self.min_frames < 3:
            raise ValueError(
                f"dia.min_frames = {self.min_frames}: a reference needs at least 3 frames (a clipped mean of fewer "
                "cannot reject anything)"
            )
        if self.max_frames < self.min_frames:
            raise ValueError(f"dia.max_frames = {self.max_frames} is below dia.min_frames = {self.min_frames}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float):
            raise TypeError(f"dia.threshold = {self.threshold!r} must be a number of sigma")
        if not 3.0 <= self.threshold <= 100.0:
            raise ValueError(
                f"dia.threshold = {self.threshold}: must be within 3-100 sigma (below 3, noise peaks are most of "
                "what is found)"
            )

    @classmethod
    def from_dict(cls, d: dict) -> DiaConfig:
        """Settings from a profile's ``[dia]`` table.

        Parameters
        ----------
        d : dict
            The table (missing keys take their defaults).

        Returns
        -------
        DiaConfig
            The validated settings.

        Raises
        ------
        ValueError, TypeError
            An unknown key or a bad value, named.
        """
        return settings_from_table(cls, d, "dia")


def dia_config(profile) -> DiaConfig:
    """A profile's ``[dia]`` settings.

    Parameters
    ----------
    profile : skylake.profile.Profile
        The profile.

    Returns
    -------
    DiaConfig
        Its settings; ``enabled`` false when the profile has no ``[dia]`` section.
    """
    if profile.dia is None:
        return DiaConfig(enabled=False)
    return DiaConfig.from_dict(profile.dia)


register_section("dia", DiaConfig.from_dict)
