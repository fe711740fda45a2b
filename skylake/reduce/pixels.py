"""A stored frame's pixels again, as ingest saw them: for the stages that work on images (coadds, references,
difference imaging) after the frame's row is in the lake."""

from __future__ import annotations

import numpy as np

__all__ = ["PIXEL_COLUMNS", "frame_pixels"]

#: The frame columns :func:`frame_pixels` reads (with the profile's name and version, which it is given).
PIXEL_COLUMNS = ["frame_id", "path", "hdu", "profile", "pipeline_version", "saturation", "wcs_source", "solved_wcs"]


def frame_pixels(lake_root: str, row, profile, wcs: bool = True):
    """The frame's image (reduced as at ingest), its celestial WCS (the plate solution when it was solved) and
    its raw saturated pixels.

    Parameters
    ----------
    lake_root : str
        The lake's location (masters for the reduction are read from it).
    row : namedtuple or pandas.Series
        The frame's row (``path``, ``hdu``, ``wcs_source``, ``solved_wcs``, ``saturation``).
    profile : skylake.profile.Profile
        The profile it was ingested with.
    wcs : bool, default True
        Read its WCS (False for a frame the camera model places: an all-sky frame has none).

    Returns
    -------
    data : numpy.ndarray
        The image [ADU].
    wcs : astropy.wcs.WCS or None
        Its celestial WCS (None without ``wcs``).
    saturated : numpy.ndarray
        Pixels at or above the frame's saturation level before reduction.
    """
    from astropy.io import fits

    from skylake.frame import astrometry, header, reading

    image = next(
        im
        for im in reading.read_images(reading.read_bytes(row.path), profile.hdu, int(profile.max_image_mb * 1e6))
        if im.hdu == row.hdu
    )
    if row.wcs_source and str(row.wcs_source).startswith("platesolve") and row.solved_wcs:
        image.header.update(fits.Header.fromstring(row.solved_wcs, sep="\n"))
    saturated = image.data >= np.float32(row.saturation)
    if profile.reduction is not None:
        from skylake.reduce.apply import reduce_frame

        rec = header.frame_record(image.header, profile, image.file_max)
        done = reduce_frame(image, rec, profile, lake_root)
        saturated = done.saturated if done.saturated is not None else saturated
    return image.data, astrometry.celestial_wcs(image.header) if wcs else None, saturated
