"""A transient's place: where the differences of the frames it was seen on say it is, together.

A transient has no object and no catalogue position: its DIA object's place is the mean of its detections. Beside a
bright star each detection is thrown by the star's imperfect subtraction (on REAL SkyCamZ frames a 10-sigma point 2
FWHM from a star was detected 0.5-2.8 px from where it was drawn, in a different direction on each frame, and the
S/N-weighted mean of six detections 0.74 px off), and there the PSF-weighted flux moves ~20 % per pixel (the star's
photons weigh the pixels toward it down). One place for all the frames, where the sum of their PSF-weighted S/N^2
peaks, is the most likely place of a point source seen on all of them.

Each frame's task measures the transient on a grid of places about its DIA object's (:func:`place_grid`: the same
places on the sky for every frame of a reference, the neighbours' fitted light taken out first); the run then sums
the S/N^2 of the frames the transient was detected on and takes every frame's forced point at the best place
(:func:`joint_places`). A run with fewer such frames than it asks for keeps the DIA object's place.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["PLACE_REACH_PX", "PLACE_STEP_PX", "grid_offsets", "place_grid", "joint_places"]

#: The places tried lie within this many of the reference's pixels of the DIA object's (east and north) ...
PLACE_REACH_PX = 1.5
#: ... this many of its pixels apart.
PLACE_STEP_PX = 0.1


def grid_offsets(pixscale: float) -> tuple[np.ndarray, np.ndarray]:
    """The places tried about a transient's DIA object: offsets east and north [arcsec], row by row.

    Parameters
    ----------
    pixscale : float
        The reference's pixel scale [arcsec/pixel].

    Returns
    -------
    east, north : numpy.ndarray
        The offsets, flattened (``n * n`` of them, ``n = 2 * PLACE_REACH_PX / PLACE_STEP_PX + 1``).

    Examples
    --------
    >>> east, north = grid_offsets(2.0)
    >>> len(east), float(east.min()), float(north.max())
    (961, -3.0, 3.0)
    """
    n = int(round(PLACE_REACH_PX / PLACE_STEP_PX))
    steps = np.arange(-n, n + 1) * PLACE_STEP_PX * float(pixscale)
    north, east = np.meshgrid(steps, steps, indexing="ij")
    return east.ravel(), north.ravel()


def place_grid(image, variance, x, y, fwhm: float, psf=None, neighbours=None) -> tuple[np.ndarray, np.ndarray]:
    """A transient's PSF-weighted flux and error at each of the places tried on one frame.

    Parameters
    ----------
    image, variance : numpy.ndarray
        The frame's difference [ADU] and its variance [ADU^2].
    x, y : numpy.ndarray
        The places on the frame [pixels] (:func:`grid_offsets` through the frame's WCS).
    fwhm : float
        The frame's PSF width [pixels].
    psf : skylake.dia.forced.EmpiricalPSF or None
        The frame's PSF (None: a Gaussian of ``fwhm``).
    neighbours : tuple of numpy.ndarray or None
        ``(x, y, flux)`` of the objects fitted beside the transient on this frame [pixels, ADU]: their light is
        taken out of the difference first, as the fit that measured them would.

    Returns
    -------
    flux, error : numpy.ndarray
        At each place [ADU] (NaN where its box leaves the chip).
    """
    from skylake.dia.forced import forced_photometry, point_template

    x, y = np.asarray(x, float), np.asarray(y, float)
    half = psf.half if psf is not None else max(3, int(np.ceil(2 * fwhm)))
    ny, nx = image.shape
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return np.full(len(x), np.nan), np.full(len(x), np.nan)
    # a cutout holding every place's box, the neighbours' light taken out
    x0 = max(int(np.floor(x[ok].min())) - half - 1, 0)
    x1 = min(int(np.ceil(x[ok].max())) + half + 2, nx)
    y0 = max(int(np.floor(y[ok].min())) - half - 1, 0)
    y1 = min(int(np.ceil(y[ok].max())) + half + 2, ny)
    cut = np.array(image[y0:y1, x0:x1], dtype=np.float64)
    for nxp, nyp, f in zip(*(neighbours if neighbours is not None else ((), (), ()))):
        if not np.isfinite(f):
            continue
        ix, iy = int(round(nxp)), int(round(nyp))
        model = f * point_template(psf, fwhm, nxp - ix, nyp - iy, half)
        a0, a1 = max(iy - half, y0), min(iy + half + 1, y1)  # the part of its box inside the cutout
        b0, b1 = max(ix - half, x0), min(ix + half + 1, x1)
        if a0 < a1 and b0 < b1:
            part = model[a0 - iy + half : a1 - iy + half, b0 - ix + half : b1 - ix + half]
            cut[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] -= part
    # the cutout holds every place's box but where the chip ends: forced_photometry gives NaN there
    return forced_photometry(cut, np.asarray(variance[y0:y1, x0:x1], float), x - x0, y - y0, fwhm, psf=psf)


def joint_places(forced: list[pa.Table], grids: list[dict], detected: dict[int, set], least: int) -> list[pa.Table]:
    """Every frame's forced points of each transient at one place: where the S/N^2 of its detections' frames
    peaks together.

    Parameters
    ----------
    forced : list of pyarrow.Table
        Each frame's forced points (schemas/dia_forced.yaml), at the DIA objects' places.
    grids : list of dict
        For the same frames: ``dia_object_id -> dict`` of the places tried (:func:`place_grid` through the
        frame's conversions): ``snr2``, ``x``, ``y``, ``dflux``, ``dflux_err``, ``mag_dia``, ``mag_dia_err``
        arrays, one value per place of :func:`grid_offsets`.
    detected : dict of int to set of int
        ``dia_object_id -> frame_id`` of the frames where this run found it (real, brighter than the reference).
    least : int
        The fewest of those frames that place a transient (:data:`~skylake.dia.points.TRANSIENT_SOURCES`).

    Returns
    -------
    list of pyarrow.Table
        The forced points, a transient's moved to its joint place where at least ``least`` of this run's frames
        detected it (the others as they were).

    Examples
    --------
    >>> joint_places([], [], {7: {1, 2}}, 2)  # no forced point: nothing to move
    []
    """
    frame_of = [int(t.column("frame_id")[0].as_py()) if t.num_rows else None for t in forced]
    best: dict[int, int] = {}
    for oid, frames in detected.items():
        maps = [g[oid]["snr2"] for g, f in zip(grids, frame_of) if f in frames and oid in g]
        if len(maps) < least:
            continue
        total = np.nansum(np.vstack(maps), axis=0)
        if np.isfinite(total).any() and np.nanmax(total) > 0:
            best[oid] = int(np.nanargmax(total))
    if not best:
        return forced
    out = []
    for table, grid in zip(forced, grids):
        ids = table.column("dia_object_id").to_numpy() if table.num_rows else np.zeros(0, np.int64)
        moved = [k for k, oid in enumerate(ids) if int(oid) in best and int(oid) in grid]
        for name in ("x", "y", "dflux", "dflux_err", "mag_dia", "mag_dia_err") if moved else ():
            values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            for k in moved:
                values[k] = grid[int(ids[k])][name][best[int(ids[k])]]
            field = table.schema.field(name)
            array = pa.array(values, field.type, from_pandas=name.startswith("mag"))  # a magnitude's NaN: null
            table = table.set_column(table.schema.get_field_index(name), field, array)
        out.append(table)
    return out
