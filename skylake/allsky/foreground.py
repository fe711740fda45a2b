"""A camera's foreground mask, learned from its clear frames: what of the image is never sky.

An all-sky camera sits among domes, masts, cables and telescopes. Their pixels hold no star, so the cloud fraction
counts the stars behind them as clouded, the maps draw cloud where a mast stands and the streak finder takes a lit
edge for a trail. The seed pipelines draw the mask by hand (allsky_camera's fixed mask; meteor networks keep one per
camera). Here it is learned from the camera's own frames, three ways, each a bit of the stored mask image:

* :data:`HORIZON` (1): below ``allsky.mask_alt_min_deg`` (by default the horizon: outside the lens circle);
* :data:`STRUCTURE` (2): pixels whose sky, the median over the clear frames of each frame's ratio to its smooth sky
  (:func:`sky_ratio`, the catalogue stars' pixels left out), is darker than ``allsky.mask_dark`` or brighter than
  ``allsky.mask_bright`` (bright only from :data:`MIN_FRAMES_BRIGHT` frames spanning :data:`MIN_SPAN_BRIGHT_H`: the
  Milky Way must have turned away). A structure present in most frames stays in the median; a cloud, the Moon or
  a telescope that slews does not. Cleaned of specks (a cable thinner than 2 px is not kept);
* :data:`UNSEEN` (4): cells of ``allsky.mask_cell_px`` where, over the clear frames, ``allsky.mask_min_expected``
  or more catalogue stars bright enough for the cloud fraction were predicted and none was seen: a foreground
  that looks like sky (a lit wall, a net) still hides the stars.

The mask is grown by ``allsky.mask_grow_px`` (the blurred edge of a structure). :func:`learn_mask` is pure (frames
in, mask out); :mod:`skylake.allsky.masks` keeps the masks in the lake, one per camera and period.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from skylake.robust import MAD_TO_SIGMA

__all__ = [
    "HORIZON",
    "STRUCTURE",
    "UNSEEN",
    "COMPONENTS",
    "MIN_FRAMES_BRIGHT",
    "MIN_SPAN_BRIGHT_H",
    "ForegroundMask",
    "sky_ratio",
    "structure_pixels",
    "unseen_cells",
    "learn_mask",
    "mask_to_fits",
    "mask_from_fits",
    "MASK_DIR",
    "lake_mask",
]

#: Bits of the stored mask image: why a pixel is masked.
HORIZON, STRUCTURE, UNSEEN = 1, 2, 4
#: The components by name, for the tables and the report.
COMPONENTS = {"horizon": HORIZON, "structure": STRUCTURE, "unseen": UNSEEN}
#: Bright structures are looked for from this many frames on (the median of fewer keeps the stars' wings) ...
MIN_FRAMES_BRIGHT = 3
#: ... spanning this many hours (the sky's glow, the Milky Way, must have turned away).
MIN_SPAN_BRIGHT_H = 2.0
#: Where the lake keeps the mask images, relative to the lake (LAKE/camera_masks has their rows).
MASK_DIR = "camera_masks_images"
#: Radial bins of the smooth sky, px.
_RING_PX = 2.0
#: The smallest structure kept, px (single hot or dark pixels are no foreground).
_MIN_AREA_PX = 12


@dataclass
class ForegroundMask:
    """A camera's learned foreground mask.

    Attributes
    ----------
    bits : numpy.ndarray of uint8
        Per pixel, the components that mask it (:data:`HORIZON`, :data:`STRUCTURE`, :data:`UNSEEN`); 0 is sky.
    n_frames : int
        The clear frames it was learned from.
    notes : dict
        What was measured: the pixels of each component, the star visits counted.
    """

    bits: np.ndarray
    n_frames: int
    notes: dict = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        """True where the image is not sky (any component).

        Returns
        -------
        numpy.ndarray of bool
            The mask, the frames' shape.
        """
        return self.bits > 0

    def fraction(self, component: int | None = None, within: np.ndarray | None = None) -> float:
        """The fraction of pixels masked (by one component, or any).

        Parameters
        ----------
        component : int, optional
            One of :data:`HORIZON`, :data:`STRUCTURE`, :data:`UNSEEN` (default: any).
        within : numpy.ndarray of bool, optional
            Count only these pixels (default: all).

        Returns
        -------
        float
            Masked pixels over pixels counted (0 when none are counted).
        """
        m = self.mask if component is None else (self.bits & component) > 0
        if within is not None:
            m = m[within]
        return float(m.mean()) if m.size else 0.0


def sky_ratio(image: np.ndarray, model, bias: float, alt_min_deg: float = 0.0) -> np.ndarray:
    """The frame over its smooth sky: ~1 on open sky, ~0 on a dark structure, > 1 on stars and lit ones.

    The smooth sky is the median of each ring about the optical axis (the fisheye's vignetting and the airglow's
    rise towards the horizon) times a robust quadratic in x and y fitted to the ratio (a gradient from the Moon or
    a town). A structure covering less than half a ring leaves its ring's median alone.

    Parameters
    ----------
    image : numpy.ndarray
        The frame, 2-D, ADU.
    model : skylake.allsky.camera.CameraModel
        The camera model (its optical axis and horizon).
    bias : float
        The pedestal, ADU (:func:`skylake.allsky.pipeline.dark_level`).
    alt_min_deg : float, default 0
        Pixels below this altitude are NaN.

    Returns
    -------
    numpy.ndarray
        The ratio, NaN off the sky or where a ring has no sky above the pedestal.
    """
    data = np.asarray(image, float) - bias
    ny, nx = data.shape
    sky = model.sky_mask((ny, nx), alt_min_deg=alt_min_deg) & np.isfinite(data)
    y, x = np.mgrid[0:ny, 0:nx]
    ring = (np.hypot(x - model.x0, y - model.y0) / _RING_PX).astype(int)
    labels = np.where(sky, ring + 1, 0)
    n = int(labels.max())
    prof = np.asarray(ndimage.median(data, labels, index=np.arange(1, n + 1)), float) if n else np.zeros(0)
    prof = np.where(prof > 0, prof, np.nan)
    ratio = np.full((ny, nx), np.nan)
    ratio[sky] = data[sky] / prof[ring[sky]]
    # the large-scale gradient: a robust quadratic over a coarse grid (medians of 16 px boxes)
    step = 16
    cy, cx = np.meshgrid(
        [(j + min(j + step, ny)) / 2 for j in range(0, ny, step)],
        [(i + min(i + step, nx)) / 2 for i in range(0, nx, step)],
        indexing="ij",
    )  # each box's centre, the last row and column of boxes cut by the frame's edge
    boxes = np.array(
        [[np.nanmedian(ratio[j : j + step, i : i + step]) if np.isfinite(ratio[j : j + step, i : i + step]).any()
          else np.nan for i in range(0, nx, step)] for j in range(0, ny, step)]
    )  # fmt: skip
    good = np.isfinite(boxes)
    if good.sum() >= 12:
        u, v = (cx[good] - model.x0) / model.horizon_radius_px, (cy[good] - model.y0) / model.horizon_radius_px
        design = np.column_stack([np.ones_like(u), u, v, u * u, u * v, v * v])
        keep = np.ones(len(u), bool)
        for _ in range(5):  # structures and the Milky Way are outliers of a smooth gradient
            coef, *_ = np.linalg.lstsq(design[keep], boxes[good][keep], rcond=None)
            resid = boxes[good] - design @ coef
            mad = np.median(np.abs(resid[keep])) * MAD_TO_SIGMA or 1e-3
            keep = np.abs(resid) < 3 * mad
        U, V = (x - model.x0) / model.horizon_radius_px, (y - model.y0) / model.horizon_radius_px
        smooth = coef[0] + coef[1] * U + coef[2] * V + coef[3] * U * U + coef[4] * U * V + coef[5] * V * V
        ratio = ratio / np.where(smooth > 0.2, smooth, np.nan)
    return ratio


def _without_stars(ratio: np.ndarray, stars, radius: float) -> np.ndarray:
    """The ratio with the pixels around the catalogue stars' predicted positions set to NaN (a star near the pole
    stays in place all night: it is sky, not a structure)."""
    if not len(stars):
        return ratio
    ny, nx = ratio.shape
    x, y = np.asarray(stars["x_pred"], float), np.asarray(stars["y_pred"], float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > -radius) & (y > -radius) & (x < nx + radius) & (y < ny + radius)
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = dx * dx + dy * dy <= radius * radius
    xi = (np.round(x[ok]).astype(int)[:, None] + dx[disc][None, :]).ravel()
    yi = (np.round(y[ok]).astype(int)[:, None] + dy[disc][None, :]).ravel()
    inside = (xi >= 0) & (yi >= 0) & (xi < nx) & (yi < ny)
    out = ratio.copy()
    out[yi[inside], xi[inside]] = np.nan
    return out


def structure_pixels(ratios, dark: float, bright: float) -> np.ndarray:
    """The pixels that are darker or brighter than the sky in most frames (the median of their ratios).

    Parameters
    ----------
    ratios : sequence of numpy.ndarray
        Each frame's :func:`sky_ratio`.
    dark : float
        A pixel whose median ratio is below this is a dark structure.
    bright : float
        Above this, a lit one (looked for from :data:`MIN_FRAMES_BRIGHT` frames on; ``inf``: not looked for).

    Returns
    -------
    numpy.ndarray of bool
        The structures' pixels, cleaned of single pixels (smaller than a few px).
    """
    stack = np.stack([np.asarray(r, np.float32) for r in ratios])  # float32: a night's frames held at once
    with warnings.catch_warnings():  # off the sky every frame is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(stack, axis=0) if len(stack) > 1 else stack[0]
    found = np.isfinite(med) & (med < dark)
    if len(stack) >= MIN_FRAMES_BRIGHT and np.isfinite(bright):
        found |= np.isfinite(med) & (med > bright)
    found = ndimage.binary_opening(found, structure=np.ones((2, 2), bool))
    labels, n = ndimage.label(found)
    if n:
        area = ndimage.sum(found, labels, index=np.arange(1, n + 1))
        found = np.isin(labels, 1 + np.flatnonzero(area >= _MIN_AREA_PX))
    return found


def unseen_cells(stars, shape, cell_px: int, min_expected: int) -> tuple[np.ndarray, dict]:
    """Cells where stars were predicted on the clear frames and none was seen.

    Parameters
    ----------
    stars : sequence of astropy.table.Table
        Each clear frame's stars the cloud fraction counts (``x``, ``y`` and ``seen``).
    shape : tuple of int
        The frames' shape.
    cell_px : int
        The cells' side, px.
    min_expected : int
        A cell is judged from this many star visits on.

    Returns
    -------
    unseen : numpy.ndarray of bool
        The cells' pixels, the frames' shape.
    counts : dict
        ``expected`` and ``seen`` per cell (2-D arrays).
    """
    ny, nx = shape
    gy, gx = -(-ny // cell_px), -(-nx // cell_px)
    expected = np.zeros((gy, gx), int)
    seen = np.zeros((gy, gx), int)
    for t in stars:
        if not len(t):
            continue
        x, y = np.asarray(t["x"], float), np.asarray(t["y"], float)
        inside = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (y >= 0) & (x < nx) & (y < ny)
        j, i = (y[inside] // cell_px).astype(int), (x[inside] // cell_px).astype(int)
        np.add.at(expected, (j, i), 1)
        np.add.at(seen, (j, i), np.asarray(t["seen"], bool)[inside].astype(int))
    bad = (expected >= min_expected) & (seen == 0)
    unseen = np.kron(bad, np.ones((cell_px, cell_px), bool))[:ny, :nx]
    return unseen, {"expected": expected, "seen": seen}


def learn_mask(frames, model, site, catalog, settings, mag_column: str = "v_mag") -> ForegroundMask:
    """Learn a camera's foreground mask from its clear frames (pure: frames in, mask out).

    Parameters
    ----------
    frames : iterable of (numpy.ndarray, astropy.time.Time)
        The frames (ADU) and their mid-exposure times, all of one camera and shape; frames whose cloud fraction
        exceeds ``settings.mask_max_cloud`` are left out.
    model : skylake.allsky.camera.CameraModel
        The camera model.
    site : skylake.allsky.camera.Site
        The camera's site.
    catalog : astropy.table.Table
        Bright stars (``ra``, ``dec``, ``mag_column``).
    settings : skylake.allsky.pipeline.AllSkySettings
        The ``mask_*`` settings, and the photometry's.
    mag_column : str, default "v_mag"
        The catalogue's magnitude column.

    Returns
    -------
    ForegroundMask
        The mask; ``notes`` say how many frames were left out as cloudy.

    Raises
    ------
    ValueError
        No frame given, frames of different shapes, or fewer than ``settings.mask_min_frames`` clear frames.
    """
    from skylake.allsky.pipeline import dark_level, measure_stars

    s = settings
    ratios, stars, shape, cloudy, cfs, times = [], [], None, 0, [], []
    for image, time in frames:
        image = np.asarray(image, float)
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise ValueError(f"frames of one camera must share a shape: {image.shape} after {shape}")
        st, cf = measure_stars(image, model, site, time, catalog, s, mag_column)
        if not np.isfinite(cf["cloud_fraction"]) or cf["cloud_fraction"] > s.mask_max_cloud:
            cloudy += 1
            continue
        cfs.append(cf["cloud_fraction"])
        times.append(time)
        stars.append(st[np.asarray(cf["counted"], bool)])  # the stars the cloud fraction counts, as it counts them
        bias = dark_level(image, model) if s.bias_adu == "corners" else float(s.bias_adu)
        ratio = sky_ratio(image, model, bias, alt_min_deg=s.mask_alt_min_deg).astype(np.float32)
        ratios.append(_without_stars(ratio, st, radius=max(3.0, 3.0 * s.psf_sigma_px)))
    if shape is None:
        raise ValueError("no frame to learn a mask from")
    if len(ratios) < s.mask_min_frames:
        raise ValueError(
            f"{len(ratios)} clear frames (cloud fraction <= allsky.mask_max_cloud = {s.mask_max_cloud:g}) of "
            f"{len(ratios) + cloudy}; allsky.mask_min_frames = {s.mask_min_frames} needed"
        )
    horizon = ~model.sky_mask(shape, alt_min_deg=s.mask_alt_min_deg)
    span_h = float((max(times) - min(times)).to_value("hour")) if len(times) > 1 else 0.0
    bright = s.mask_bright if span_h >= MIN_SPAN_BRIGHT_H else np.inf  # a short span keeps the sky's glow in place
    structure = structure_pixels(ratios, s.mask_dark, bright) & ~horizon
    unseen, counts = unseen_cells(stars, shape, int(s.mask_cell_px), int(s.mask_min_expected))
    unseen &= ~horizon
    if s.mask_grow_px > 0:
        grow = ndimage.generate_binary_structure(2, 1)
        structure = ndimage.binary_dilation(structure, grow, iterations=int(s.mask_grow_px)) & ~horizon
    bits = (horizon * HORIZON | structure * STRUCTURE | unseen * UNSEEN).astype(np.uint8)
    notes = {
        "frames_cloudy": cloudy,
        "cloud_fraction_median": float(np.median(cfs)),
        "span_h": span_h,
        "star_visits": int(counts["expected"].sum()),
        "cells_unseen": int(((counts["expected"] >= s.mask_min_expected) & (counts["seen"] == 0)).sum()),
    }
    return ForegroundMask(bits=bits, n_frames=len(ratios), notes=notes)


def mask_to_fits(mask: ForegroundMask, header: dict | None = None) -> bytes:
    """The mask as a FITS file (uint8 bits, the components named in the header).

    Parameters
    ----------
    mask : ForegroundMask
        The mask.
    header : dict, optional
        More header cards (the camera, the period).

    Returns
    -------
    bytes
        The FITS file.
    """
    from astropy.io import fits

    hdu = fits.PrimaryHDU(mask.bits.astype(np.uint8))
    hdu.header["NFRAMES"] = (mask.n_frames, "clear frames the mask was learned from")
    for name, bit in COMPONENTS.items():
        hdu.header[f"BIT{bit}"] = (name, "mask component")
    for k, v in (header or {}).items():
        hdu.header[k] = v
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def mask_from_fits(data: bytes) -> ForegroundMask:
    """Read a mask written by :func:`mask_to_fits`.

    Parameters
    ----------
    data : bytes
        The FITS file.

    Returns
    -------
    ForegroundMask
        The mask.
    """
    from astropy.io import fits

    with fits.open(io.BytesIO(data)) as hdul:
        return ForegroundMask(bits=np.asarray(hdul[0].data, np.uint8), n_frames=int(hdul[0].header.get("NFRAMES", 0)))


@functools.lru_cache(maxsize=8)
def _read_mask(lake_root: str, path: str) -> np.ndarray:
    from skylake.lake import Lake

    return mask_from_fits(Lake.open(lake_root, catch_up=False).store.read_bytes(path)).bits


def lake_mask(lake_root: str | None, profile: str, mjd: float, shape) -> tuple[np.ndarray | None, str]:
    """The mask a frame uses: its profile's newest whose period began at or before the frame.

    Parameters
    ----------
    lake_root : str or None
        The lake's location; None (or empty) when there is no lake.
    profile : str
        The frame's profile.
    mjd : float
        The frame's mid-exposure MJD.
    shape : tuple of int
        The frame's (ny, nx): the newest mask of that shape is used (the note says when none is).

    Returns
    -------
    mask : numpy.ndarray of bool or None
        True where the image is not sky; None when the lake has no mask for the frame.
    note : str
        Which mask was used, or why none was (empty when the lake has none).
    """
    if not lake_root:
        return None, ""
    import pyarrow.compute as pc

    from skylake.lake import Lake
    from skylake.lake.tables import CAMERA_MASKS, get

    lake = Lake.open(lake_root, catch_up=False)
    if not lake.store.exists(get(CAMERA_MASKS).location):  # (local or object store alike)
        return None, ""
    rows = get(CAMERA_MASKS).read(
        lake, columns=["mask_id", "valid_from", "created_at", "nx", "ny", "path"],
        filter=(pc.field("profile") == profile) & (pc.field("valid_from") <= float(mjd)),
    ).to_pandas()  # fmt: skip
    if not len(rows):
        return None, ""
    rows = rows.sort_values(["valid_from", "created_at"])
    fits_frame = rows[(rows["ny"] == shape[0]) & (rows["nx"] == shape[1])]
    if not len(fits_frame):
        row = rows.iloc[-1]
        return None, f"mask {row['mask_id']} is {row['nx']}x{row['ny']}, the frame {shape[1]}x{shape[0]}: not used"
    row = fits_frame.iloc[-1]
    try:
        bits = _read_mask(lake_root, row["path"])
    except Exception as exc:  # a lost or damaged mask file: the frame goes on without it, and says so
        return None, f"mask {row['mask_id']} cannot be read ({type(exc).__name__}): not used"
    return bits > 0, f"mask {row['mask_id']}"
