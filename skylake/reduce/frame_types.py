"""A frame's type (bias, dark, flat or light) from its header, as the profile's ``[reduction.frame_types]`` maps it."""

from __future__ import annotations

__all__ = ["KINDS", "COADD_KEY", "FRAMES_KEY", "frame_type"]

#: The frame types a header can name.
KINDS = ("bias", "dark", "flat", "light")
#: Header keywords of a skylake coadd (skylake.reduce.coadd): it is one, and the frame ids it stacks.
COADD_KEY, FRAMES_KEY = "SLCOADD", "SLFRAMES"


def frame_type(header, frame_types: dict) -> tuple[str | None, str]:
    """The frame type a header declares.

    Parameters
    ----------
    header : astropy.io.fits.Header or dict
        The frame's header.
    frame_types : dict
        ``keys`` (header keywords to look at, first present wins) and, per kind of :data:`KINDS`, the
        values that mean it (compared case-blind, spaces and underscores alike).

    Returns
    -------
    kind : str or None
        One of :data:`KINDS`; None when no key is present or its value is none of the known ones.
    said : str
        What the header said (``"IMAGETYP = 'Bias Frame'"``), "" when no key is present.

    Examples
    --------
    >>> from skylake.reduce.settings import DEFAULT_FRAME_TYPES
    >>> frame_type({"IMAGETYP": "Dark Frame"}, DEFAULT_FRAME_TYPES)
    ('dark', "IMAGETYP = 'Dark Frame'")
    >>> frame_type({"IMAGETYP": "focus"}, DEFAULT_FRAME_TYPES)
    (None, "IMAGETYP = 'focus'")
    """
    for key in frame_types.get("keys", ()):
        if key in header:
            value = str(header[key]).strip()
            said = f"{key} = {value!r}"
            wanted = _norm(value)
            for kind in KINDS:
                if any(_norm(v) == wanted for v in frame_types.get(kind, ())):
                    return kind, said
            return None, said
    return None, ""


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())
