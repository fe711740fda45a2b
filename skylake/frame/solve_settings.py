"""The plate solver's settings (a profile's ``[platesolve]``), validated at construction.

A leaf module: profiles validate these without importing the solver (:mod:`skylake.frame.platesolve`).
"""

from __future__ import annotations

from dataclasses import dataclass

from skylake.profile import PLATESOLVE_KEYS, register_section, settings_from_table

__all__ = ["PlateSolveSettings", "platesolve_settings"]


@dataclass
class PlateSolveSettings:
    """Validated settings (a profile's ``[platesolve]`` table).

    Each value is checked when the settings are constructed.

    Attributes
    ----------
    scale_arcsec : float or None
        Pixel-scale hint, arcsec/px (e.g. the header's CCDSCALE); None needs ``scale_header_key``.
    scale_tolerance : float
        Fractional range searched around the scale hint.
    search_radius_deg : float
        How far the true field centre may be from the pointing hint, deg.
    rotation_step_deg : float
        Coarse rotation grid step, deg.
    n_detections : int
        Brightest detections used for the search.
    n_catalog : int
        Brightest catalogue stars (per search area) used for the search.
    detect_thresh : float
        Detection threshold of sep, x global background rms.
    match_px : float
        Final matching tolerance, px.
    sip_degree : int
        0 for TAN, 2-4 for TAN-SIP.
    min_matches : int
        Fewest pairs accepted (below: "no consistent match").
    max_rms_arcsec : float or None
        Largest rms accepted; None = 1 px.
    """

    scale_arcsec: float | None = None
    scale_tolerance: float = 0.02
    search_radius_deg: float = 0.5
    rotation_step_deg: float = 1.0
    n_detections: int = 40
    n_catalog: int = 150
    detect_thresh: float = 5.0
    match_px: float = 2.0
    sip_degree: int = 0
    min_matches: int = 8
    max_rms_arcsec: float | None = None

    def __post_init__(self):
        def num(name, lo, hi, allow_none=False):
            """Check that setting ``name`` is a number within ``[lo, hi]``.

            Parameters
            ----------
            name : str
                The setting (an attribute of the settings).
            lo, hi : float
                The smallest and largest value allowed.
            allow_none : bool
                Whether None is accepted as well.

            Raises
            ------
            ValueError
                The value is not a number or is outside the range; the message names the setting.
            """
            v = getattr(self, name)
            if v is None and allow_none:
                return
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"platesolve.{name} must be a number, got {v!r}") from None
            if not (lo <= fv <= hi):
                raise ValueError(f"platesolve.{name} must be in [{lo}, {hi}], got {v!r}")

        num("scale_arcsec", 0.01, 3600, allow_none=True)
        num("scale_tolerance", 0.0, 0.5)
        num("search_radius_deg", 0.0, 30.0)
        num("rotation_step_deg", 0.1, 10.0)
        num("n_detections", 5, 1000)
        num("n_catalog", 5, 5000)
        num("detect_thresh", 1.0, 1000)
        num("match_px", 0.2, 50)
        num("min_matches", 3, 10000)
        num("max_rms_arcsec", 0.0, 3600, allow_none=True)
        if self.sip_degree not in (0, 2, 3, 4):
            raise ValueError(f"platesolve.sip_degree must be 0 (TAN) or 2-4 (TAN-SIP), got {self.sip_degree!r}")

    @classmethod
    def from_dict(cls, d) -> PlateSolveSettings:
        """Build the settings from a mapping (a profile's ``[platesolve]`` table).

        Parameters
        ----------
        d : mapping
            Setting names and values; absent settings take their defaults.

        Returns
        -------
        settings : PlateSolveSettings
            The validated settings.

        Raises
        ------
        ValueError
            A key is not a known setting (the known ones are listed), or a value is invalid.
        """
        return settings_from_table(cls, d, "platesolve")


def platesolve_settings(profile) -> PlateSolveSettings:
    """A profile's ``[platesolve]`` solver settings.

    Parameters
    ----------
    profile : skylake.profile.Profile
        The profile.

    Returns
    -------
    PlateSolveSettings
        The settings, less the keys the profile reads itself (``PLATESOLVE_KEYS``; defaults when absent).
    """
    return PlateSolveSettings.from_dict(
        {k: v for k, v in (profile.platesolve or {}).items() if k not in PLATESOLVE_KEYS}
    )


def _check(table: dict) -> None:
    """The check of a profile's ``[platesolve]`` solver keys (:func:`skylake.profile.register_section`)."""
    unknown = sorted(set(table) - set(PlateSolveSettings.__dataclass_fields__))
    if unknown:
        raise ValueError(
            f"has unknown settings {unknown}; allowed: "
            f"{sorted([*PLATESOLVE_KEYS, *PlateSolveSettings.__dataclass_fields__])}"
        )
    PlateSolveSettings.from_dict(table)


register_section("platesolve", _check)
