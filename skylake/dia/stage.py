"""Difference imaging of the lake's frames (``skylake dia``): each frame less its pointing's reference, one task a
frame, its DIA sources into ``LAKE/dia_sources`` and a row of how it went into ``LAKE/dia_frames``.

A frame gets the newest reference of its profile, filter and pointing (:func:`skylake.dia.references.
reference_for`) on its own grid and in its own ADU; the frame's sky is subtracted (sep), the kernel fitted and
the difference searched (:mod:`skylake.dia.difference`, :mod:`skylake.dia.detect`). A frame the reference
stacks shares its noise, which the difference's variance takes into account. A frame that cannot be subtracted
(no reference covers it, too few stars for a kernel) gets a ``failed`` row with the reason and no DIA source;
nothing else is lost. Frames done before are left alone unless ``redo``, which replaces their rows.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skylake.dia.files import files_under, frame_row_ids, frame_rows
from skylake.dia.places import joint_places
from skylake.dia.references import read_references, reference_for, usable_frames
from skylake.lake import tables
from skylake.lake.frames import FrameSelection
from skylake.lake.tables import DIA_FORCED, DIA_FRAMES, DIA_LIGHTCURVES, DIA_OBJECTS, DIA_SOURCES
from skylake.schema import conform

__all__ = [
    "DiaReport",
    "aperture_correction",
    "frame_psf",
    "core_fwhm",
    "difference_frame",
    "run_dia",
    "dia_after",
    "NO_REFERENCE",
    "SETTINGS",
    "THRESHOLD",
    "NOISE_PLACES",
    "STAMP_SIZE",
    "cutouts",
    "noise_scale",
]

log = logging.getLogger(__name__)

#: The reason of a frame no reference covers.
NO_REFERENCE = "no reference covers this frame: build one with `skylake reference build LAKE`"
#: How frames are subtracted: faint neighbours pass the stamps' isolation (a stacked reference shows many), and
#: 1 % of the matched reference joins the noise (no kernel matches a star's core exactly), and a frame whose kernel
#: comes out narrower than 0.5 px is broadened first (a kernel cannot sharpen: skylake.dia.difference.subtract),
#: and a stamp with a 4-sigma point beside its star (a transient the kernel would fit away) is left out.
SETTINGS = {
    "neighbour_fraction": 0.1,
    "model_noise": 0.01,
    "stamp_snr": 30.0,
    "min_kernel_sigma": 0.5,
    "stamp_point_sigma": 4.0,
}
#: The DIA sources' detection threshold [sigma].
THRESHOLD = 5.0
#: Random places whose PSF-weighted fluxes measure a difference's noise (:func:`noise_scale`).
NOISE_PLACES = 2000
#: The side of a real DIA source's cutouts (reference, frame, difference) [pixels].
STAMP_SIZE = 21


@dataclass
class DiaReport:
    """What :func:`run_dia` did.

    Attributes
    ----------
    done : int
        Frames subtracted.
    failed : dict
        Reason -> how many frames failed for it (no reference is not a failure: :attr:`no_reference`).
    no_reference : int
        Frames no reference covers (their rows say so; ``skylake reference build`` makes one when the pointing
        has enough frames).
    skipped : int
        Frames done before (left alone without ``redo``).
    dia_sources : int
        DIA sources found, all signs and flags.
    unflagged : int
        Of those, without a flag.
    real : int
        Of those, real (:func:`skylake.dia.detect.is_real`).
    points : int
        DIA light-curve points measured (objects on the frames' differences).
    forced : int
        Transients' forced points measured (:func:`skylake.dia.points.transients_for`).
    dia_objects : int
        DIA objects made or changed by the frames' real DIA sources.
    references : list of str
        References built before the frames were subtracted (the ingest chain: :func:`dia_after`).
    version : int or None
        The commit (None when nothing was done).
    """

    done: int = 0
    failed: dict = field(default_factory=dict)
    no_reference: int = 0
    skipped: int = 0
    dia_sources: int = 0
    unflagged: int = 0
    real: int = 0
    points: int = 0
    forced: int = 0
    dia_objects: int = 0
    references: list = field(default_factory=list)
    version: int | None = None

    def __str__(self) -> str:
        return self.outcome()

    def outcome(self) -> str:
        """One line.

        Returns
        -------
        str
            E.g. ``dia: 12 frames subtracted, 0 failed, 2 with no reference, 0 done before; 102 DIA sources
            (82 unflagged, 8 real), 12,456 DIA light-curve points, 24 forced points of transients, 6 DIA objects made
            or changed``, and a line per reason of failure.
        """
        failed = sum(self.failed.values())
        line = (
            f"dia: {self.done} frames subtracted, {failed} failed, {self.no_reference} with no reference, "
            f"{self.skipped} done before; {self.dia_sources} DIA sources ({self.unflagged} unflagged, "
            f"{self.real} real), {self.points} DIA light-curve points, {self.forced} forced points of transients, "
            f"{self.dia_objects} DIA objects made or changed"
        )
        if self.references:
            line += f"\n  references built first: {', '.join(self.references)}"
        if self.no_reference:
            line += f"\n  {self.no_reference} not subtracted: {NO_REFERENCE}"
        for reason, n in sorted(self.failed.items()):
            line += f"\n  {n} failed: {reason}"
        return line


def _kernel_half_width(fwhm: float) -> int:
    return int(max(7, math.ceil(2.7 * fwhm)))


def difference_frame(
    lake_root: str,
    frame: dict,
    reference: dict | None,
    version: int,
    objects: pd.DataFrame | None = None,
    threshold: float = THRESHOLD,
) -> tuple[dict, pa.Table, pa.Table, pa.Table, dict]:
    """Subtract a frame's reference, find its DIA sources and measure its objects on it (a task on a worker).

    Parameters
    ----------
    lake_root : str
        The lake's location.
    frame : dict
        The frame's row (:data:`skylake.dia.references.FRAME_COLUMNS`).
    reference : dict or None
        Its reference's row (None: no reference covers it).
    version : int
        The lake version read (``built_version``).
    objects : pandas.DataFrame or None
        The reference's objects and transients with their fluxes on it (:func:`skylake.dia.points.reference_fluxes`;
        None or empty: no DIA light-curve point).
    threshold : float
        The DIA sources' detection threshold [sigma].

    Returns
    -------
    row : dict
        The frame's ``dia_frames`` row (with ``night``).
    sources : pyarrow.Table
        Its DIA sources (schemas/dia_sources.yaml; none when it failed).
    points : pyarrow.Table
        Its DIA light-curve points (schemas/dia_lightcurves.yaml; none when it failed).
    forced : pyarrow.Table
        Its transients' forced points (schemas/dia_forced.yaml; none when it failed).
    grids : dict
        Its transients' forced points at the places tried about each (:func:`skylake.dia.points.measure_points`).
    """
    row = {
        "frame_id": int(frame["frame_id"]), "reference_id": None, "status": "failed", "reason": NO_REFERENCE,
        "in_reference": False, "fwhm": frame["fwhm_median"], "mjd": frame["mjd"], "built_version": version,
        "night": frame["night"], "scale": None, "scale_error": None, "n_stamps": None, "normalised_rms": None,
        "n_dia_sources": 0, "n_unflagged": 0, "n_real": 0, "aperture_correction": None, "n_points": 0, "n_forced": 0,
        "noise_scale": None, "flux_floor": None, "scale_residual": None, "broadened": None,
        "kernel_order": None,
    }  # fmt: skip
    from skylake.dia.points import measure_points

    empty = tables.get(DIA_SOURCES).schema.empty_table()
    no_points, no_forced = (tables.get(t).schema.empty_table() for t in (DIA_LIGHTCURVES, DIA_FORCED))
    if reference is None:
        return row, empty, no_points, no_forced, {}
    row["reference_id"] = reference["reference_id"]
    try:
        diff, wcs, fwhm, share = _subtract(lake_root, frame, reference)
    except (ValueError, np.linalg.LinAlgError, OSError) as exc:  # too few stars, no overlap, a file gone: its reason
        row["reason"] = " ".join(str(exc).split())
        return row, empty, no_points, no_forced, {}
    from skylake.dia.detect import detect_sources, is_real

    fwhm = core_fwhm(diff) or fwhm
    psf = frame_psf(diff, fwhm)
    normalised_rms = diff.normalised_rms()  # against the noise propagated from the inputs
    scale = noise_scale(diff, fwhm, psf, seed=int(frame["frame_id"]))
    diff.variance *= scale**2
    matched = diff.model - diff.solution.background_image()  # the reference as subtracted, without background
    found = detect_sources(diff.image, diff.variance, fwhm, threshold, psf=psf, reference=matched)
    correction = aperture_correction(diff, fwhm, psf)
    found[["flux", "flux_err"]] *= correction
    row.update(
        status="ok", reason="", in_reference=share > 0, scale=diff.solution.scale, broadened=2.3548 * diff.broadened,
        kernel_order=diff.solution.settings.spatial_order,
        scale_error=diff.solution.scale_error, n_stamps=diff.solution.stamps_used,
        normalised_rms=normalised_rms, fwhm=fwhm, n_dia_sources=len(found), noise_scale=scale,
        n_unflagged=int((found["flags"] == 0).sum()), n_real=int(is_real(found).sum()), aperture_correction=correction,
    )  # fmt: skip
    points, forced, grids = no_points, no_forced, {}
    if objects is not None and len(objects):
        points, forced, row["flux_floor"], row["scale_residual"], grids = measure_points(
            diff, wcs, psf, fwhm, correction, objects, frame, reference
        )
        if not points.num_rows:  # transients alone: nothing to measure a floor or the scale's residual on
            row["flux_floor"] = row["scale_residual"] = None
    row["n_points"], row["n_forced"] = points.num_rows, forced.num_rows
    real = is_real(found)
    stamps = {
        f"stamp_{name}": [cutouts(image, x, y) if r else None for x, y, r in zip(found["x"], found["y"], real)]
        for name, image in (("reference", diff.model), ("frame", diff.image + diff.model), ("difference", diff.image))
    }  # fmt: skip
    return row, _sources(found.assign(**stamps), frame, reference["reference_id"], wcs), points, forced, grids


def cutouts(image: np.ndarray, x: float, y: float, size: int = STAMP_SIZE) -> np.ndarray:
    """A square cutout of ``image`` centred on the pixel of ``(x, y)``, NaN where it leaves the image.

    Parameters
    ----------
    image : numpy.ndarray
        The image.
    x, y : float
        The centre (0-based column and row) [pixels].
    size : int
        The cutout's side [pixels] (odd).

    Returns
    -------
    numpy.ndarray
        The cutout, float32, flattened row by row (``size * size`` values).
    """
    half = size // 2
    ix, iy = int(round(x)), int(round(y))
    out = np.full((size, size), np.nan, np.float32)
    ny, nx = image.shape
    y0, y1, x0, x1 = max(iy - half, 0), min(iy + half + 1, ny), max(ix - half, 0), min(ix + half + 1, nx)
    if y0 < y1 and x0 < x1:
        out[y0 - iy + half : y1 - iy + half, x0 - ix + half : x1 - ix + half] = image[y0:y1, x0:x1]
    return out.ravel()


def _frame_stars(diff) -> np.ndarray:
    """The frame's stars: the frame less its sky and the differential background (the model plus the
    difference). Not the PSF-matched reference: a reference broader than the frame is matched imperfectly."""
    return np.nan_to_num(diff.image + diff.model - diff.solution.background_image())


def noise_scale(diff, fwhm: float, psf=None, seed: int = 0, n: int = NOISE_PLACES) -> float:
    """How much the difference's noise at the PSF's scale exceeds what its variance says: the robust width of
    the PSF-weighted fluxes over their errors at random places (stars among them are few: the median absolute
    deviation ignores them).

    Pixel by pixel the SkyCamZ differences are at 0.95-0.96 of their propagated noise, but a PSF-weighted sum is
    at 1.05-1.11: the noise is correlated between neighbouring pixels (the resampled and convolved reference's),
    which a variance per pixel cannot say. The variance is scaled by this squared, as LSST's ScaleVarianceTask
    scales it from the image's own noise, but measured where the fluxes are: errors then say what the
    differences hold.

    Parameters
    ----------
    diff : skylake.dia.difference.Difference
        The difference.
    fwhm : float
        The PSF core's FWHM [pixels].
    psf : skylake.dia.forced.EmpiricalPSF or None
        The frame's PSF.
    seed : int
        Seeds the places (the frame's id: the same frame gives the same scale).
    n : int
        How many places.

    Returns
    -------
    float
        The scale (1.4826 x the median absolute deviation of flux / error); 1 with fewer than 100 places measured.
    """
    from skylake.dia.forced import forced_photometry

    ny, nx = diff.image.shape
    rng = np.random.default_rng(seed)
    edge = 3 * fwhm + 2
    x, y = rng.uniform(edge, nx - edge, n), rng.uniform(edge, ny - edge, n)
    flux, err = forced_photometry(diff.image, diff.variance, x, y, fwhm, psf=psf)
    pulls = (flux / err)[np.isfinite(flux) & np.isfinite(err) & (err > 0)]
    if len(pulls) < 100:
        return 1.0
    return float(1.4826 * np.median(np.abs(pulls - np.median(pulls))))


def core_fwhm(diff) -> float | None:
    """The FWHM of the PSF's core, from the second moments (sep) of the stars the kernel was fitted on, in the
    frame: the width of the Gaussian weights of the DIA photometry (the frames table's
    ``fwhm_median`` is a half-light measure, which a PSF's wings broaden).

    Parameters
    ----------
    diff : skylake.dia.difference.Difference
        The difference (its model and stamps).

    Returns
    -------
    float or None
        The median FWHM [pixels]; None with fewer than 5 stars measured.
    """
    import sep

    stars = np.ascontiguousarray(_frame_stars(diff), dtype=np.float64)
    found = sep.extract(stars, 50.0, err=float(np.sqrt(np.nanmedian(diff.variance[np.isfinite(diff.variance)]))))
    found = found[found["flag"] == 0]
    if not len(found) or not len(diff.stamps):
        return None
    at = np.array(diff.stamps)
    near = np.min(np.hypot(found["x"][:, None] - at[:, 0], found["y"][:, None] - at[:, 1]), axis=1) < 1.5
    if near.sum() < 5:
        return None
    return float(np.median(2.3548 * np.sqrt((found["a"][near] ** 2 + found["b"][near] ** 2) / 2)))


def frame_psf(diff, fwhm: float):
    """The frame's own PSF from the stars the kernel was fitted on, in a box of 3 FWHM half width: the DIA
    fluxes are the flux in that box, as the light curves' apertures count a star's.

    Parameters
    ----------
    diff : skylake.dia.difference.Difference
        The difference (its model and stamps).
    fwhm : float
        The PSF core's FWHM [pixels].

    Returns
    -------
    skylake.dia.forced.EmpiricalPSF or None
        The PSF; None with fewer than 5 stars (a Gaussian then stands in).
    """
    from skylake.dia.forced import empirical_psf

    return empirical_psf(_frame_stars(diff), diff.stamps, int(math.ceil(3 * fwhm)))


def aperture_correction(diff, fwhm: float, psf=None) -> float:
    """A frame's total flux of a point source over its Gaussian-weighted flux, from the stars the kernel was
    fitted on (bright: their noise hardly matters).

    A real PSF has wings a Gaussian of the frame's FWHM lacks, so the Gaussian-weighted flux of a point source is
    short of its box's by a factor this gives back (1.3 on SkyCamZ); with the frame's own PSF it is near one.

    Parameters
    ----------
    diff : skylake.dia.difference.Difference
        The difference (its model and stamps).
    fwhm : float
        The FWHM of the Gaussian weights [pixels].
    psf : skylake.dia.forced.EmpiricalPSF or None
        The frame's PSF, whose flux is the box's by construction (the correction is then near one: a check).

    Returns
    -------
    float
        The median ratio of a box sum (half width 3 FWHM) to the weighted flux; 1 with fewer than 5 stars.
    """
    from skylake.dia.forced import forced_photometry

    stars = _frame_stars(diff)
    half = int(math.ceil(3 * fwhm))
    ny, nx = stars.shape
    xs, ys, totals = [], [], []
    for x, y in diff.stamps:
        ix, iy = int(round(x)), int(round(y))
        if half <= ix < nx - half and half <= iy < ny - half:
            xs.append(x)
            ys.append(y)
            totals.append(stars[iy - half : iy + half + 1, ix - half : ix + half + 1].sum())
    if len(xs) < 5:
        return 1.0
    weighted, _ = forced_photometry(stars, np.ones_like(stars), xs, ys, fwhm, half=half, psf=psf)
    ratio = np.array(totals) / weighted
    return float(np.nanmedian(ratio[np.isfinite(ratio) & (weighted > 0)]))


def _subtract(lake_root: str, frame: dict, reference: dict):
    """The frame's difference from its reference, its WCS, its FWHM and its share of the reference."""
    from skylake.dia.difference import DiaSettings, subtract
    from skylake.dia.kernel import KernelSettings
    from skylake.dia.reference import from_fits, on_frame, sky_noise
    from skylake.lake import Lake
    from skylake.profile_store import frames_profile
    from skylake.reduce.pixels import frame_pixels

    lake = Lake.open(lake_root, catch_up=False)
    profile = frames_profile(lake, frame["profile"], frame["pipeline_version"])
    data, wcs, saturated = frame_pixels(lake_root, pd.Series(frame), profile)
    data = np.asarray(data, np.float64)
    ref = from_fits(lake.store.read_bytes(reference["path"]))
    image, variance, mask, offset = on_frame(ref, wcs, data.shape, float(frame["exptime"]))
    mask |= saturated  # (the frame's sky is subtracted below: its saturated pixels are named, not guessed)
    if mask.mean() > 0.5:
        raise ValueError(f"the reference covers {100 * (1 - mask.mean()):.0f} % of the frame; at least half needed")
    fwhm = float(frame["fwhm_median"]) if frame["fwhm_median"] and frame["fwhm_median"] > 0 else 3.0
    settings = DiaSettings(
        kernel=KernelSettings(half_width=_kernel_half_width(fwhm)), saturation=float(frame["saturation"]), **SETTINGS
    )
    sky, frame_var = sky_noise(data, float(frame["gain"]))
    share = ref.share_of(int(frame["frame_id"]))
    diff = subtract(data - sky, frame_var, image, variance, settings, mask=mask, frame_share=share, offset=offset)
    return diff, wcs, fwhm, share


def _sources(found: pd.DataFrame, frame: dict, reference_id: str, wcs) -> pa.Table:
    """DIA source rows (schemas/dia_sources.yaml) of a frame's detections."""
    from skylake.frame import astrometry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra, dec = wcs.pixel_to_world_values(found["x"].to_numpy(), found["y"].to_numpy())
    ra, dec = np.asarray(ra, float) % 360.0, np.asarray(dec, float)
    n = len(found)
    cols = {
        "_healpix_29": astrometry.healpix29(ra, dec) if n else np.empty(0, np.int64),
        "dia_source_id": frame_row_ids(int(frame["frame_id"]), n),
        "frame_id": np.full(n, int(frame["frame_id"]), np.int64),
        "reference_id": [reference_id] * n,
        "mjd": np.full(n, float(frame["mjd"])),
        "ra": ra,
        "dec": dec,
        **{c: found[c].to_numpy() for c in ("x", "y", "sign", "flux", "flux_err", "snr", "a", "b", "flags")},
        "psf_chi2": found["psf_chi2"].to_numpy(),
        "real_bogus": found["real_bogus"].to_numpy(),
        "dia_object_id": pa.nulls(n, pa.int64()),  # given with the run's other frames (_associate)
        **{
            c: pa.array(list(found[c]) if c in found else [None] * n, pa.list_(pa.float32()))
            for c in ("stamp_reference", "stamp_frame", "stamp_difference")
        },
    }
    return conform(pa.table(cols), DIA_SOURCES)


def run_dia(
    lake, selection: FrameSelection | None = None, *, redo: bool = False, runner=None, threshold: float = THRESHOLD
) -> DiaReport:
    """Difference-image a selection's frames against their references, in one commit.

    Parameters
    ----------
    lake : skylake.lake.Lake
        A writable lake.
    selection : skylake.lake.frames.FrameSelection or None
        Which frames (None: every frame).
    redo : bool
        Subtract frames done before against the same reference again (their rows and DIA sources replaced;
        a frame whose newest reference is not the one it was subtracted from is done again anyway).
    runner : skylake.runtime.Runner or None
        Where the frames' tasks run (None: in this process).
    threshold : float
        The DIA sources' detection threshold [sigma].

    Returns
    -------
    DiaReport
        What was done.
    """
    from skylake.runtime import Runner

    runner = runner or Runner(None)
    report = DiaReport()
    frames = usable_frames(lake, selection or FrameSelection())
    if not len(frames):
        return report
    nights = sorted(set(frames["night"].dropna()))
    before = tables.get(DIA_FRAMES).read(lake, columns=["frame_id", "reference_id"], nights=nights).to_pandas()
    done = set(zip(before["frame_id"], before["reference_id"].fillna("")))
    references = read_references(lake)
    had = set(before["frame_id"])
    items, again = [], []
    for frame in frames.to_dict("records"):
        ref = reference_for(references, pd.Series(frame)) if len(references) else None
        ref_id = "" if ref is None else ref["reference_id"]
        if (frame["frame_id"], ref_id) in done and not redo:  # a newer reference makes it stale
            report.skipped += 1
            continue
        if frame["frame_id"] in had:
            again.append(frame["frame_id"])
        items.append((frame, None if ref is None else ref.to_dict()))
    if not items:
        return report
    version = lake.log.latest_version()
    items = _with_objects(lake, items, runner)
    rows, found, points, forced, grids = [], [], [], [], []
    with lake.transaction(DIA_FRAMES) as tx:
        tx.runner = runner
        if again:
            _remove(tx, frames[frames["frame_id"].isin(again)], nights)
        for row, sources, measured, at_transients, places in runner.map(
            _task, items, window=max(1, 2 * runner.workers()), lake_root=lake.store.location, version=version,
            threshold=threshold,
        ):  # fmt: skip
            rows.append(row)
            found.append(sources)
            points.append(measured)
            forced.append(at_transients)
            grids.append(places)
        linkable = [objects for *_, objects in items if objects is not None]
        found, report.dia_objects = _associate(tx, frames, rows, found, again, linkable)
        if any(grids):  # each transient's points at the one place its detections' frames say together
            from skylake.dia.points import TRANSIENT_SOURCES

            forced = joint_places(forced, grids, _detected(found), TRANSIENT_SOURCES)
        _stage(tx, rows, found, points, forced)
        entry = tx.commit({"dia_frames": len(rows)})
    report.version = entry.version if entry else None
    for row, sources in zip(rows, found):
        if row["status"] == "ok":
            report.done += 1
            report.dia_sources += sources.num_rows
            report.unflagged += int(row["n_unflagged"])
            report.real += int(row["n_real"])
            report.points += int(row["n_points"])
            report.forced += int(row["n_forced"])
        elif row["reason"] == NO_REFERENCE:
            report.no_reference += 1
        else:
            report.failed[row["reason"]] = report.failed.get(row["reason"], 0) + 1
    log.info(report.outcome())
    return report


def _detected(found: list) -> dict[int, set]:
    """``dia_object_id -> frame_id`` of the frames whose real DIA sources brighter than the reference joined it."""
    out: dict[int, set] = {}
    for table in found:
        if not table.num_rows or "dia_object_id" not in table.column_names:
            continue
        seen = table.filter(pc.and_(pc.is_valid(table.column("dia_object_id")), pc.greater(table.column("sign"), 0)))
        for oid, frame_id in zip(seen.column("dia_object_id").to_pylist(), seen.column("frame_id").to_pylist()):
            out.setdefault(int(oid), set()).add(int(frame_id))
    return out


def _task(item, lake_root: str, version: int, threshold: float):
    frame, reference, objects = item
    return difference_frame(lake_root, frame, reference, version, objects, threshold)


def dia_after(lake, profile, client=None, nights=None) -> list:
    """After an ingest, with the profile's ``[dia]`` on: build the references its pointings lack, then subtract
    the nights' frames.

    A pointing gets its reference once it has ``[dia] min_frames`` usable frames (one built, never rebuilt here:
    ``skylake reference build`` makes a newer one); the nights' frames not yet subtracted against their
    pointing's newest reference are then done, those ingested before the reference existed included. A failure
    is logged, never raised: the frames are in, and ``skylake dia`` picks up what is left.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    profile : skylake.profile.Profile
        The profile of the frames just ingested.
    client : distributed.Client or None
        The ingest's cluster (None: this process).
    nights : iterable of str or None
        The nights ingested (None: every night).

    Returns
    -------
    list of DiaReport
        One report (with ``references`` built), none when ``[dia]`` is off or the step failed.
    """
    from skylake.dia.references import build_references
    from skylake.dia.settings import dia_config
    from skylake.runtime import Runner

    config = dia_config(profile)
    if not config.enabled:
        return []
    runner = Runner(client)
    nights = sorted(nights) if nights is not None else None
    selection = FrameSelection(nights=nights, pipeline_version=profile.pipeline_version)
    try:
        built = []
        if _lacking_reference(lake, selection):  # the pointings' earlier frames count too
            built = build_references(
                lake, FrameSelection(pipeline_version=profile.pipeline_version), min_frames=config.min_frames,
                max_frames=config.max_frames, runner=runner, missing_only=True,
            )  # fmt: skip
        report = run_dia(lake, selection, runner=runner, threshold=config.threshold)
    except Exception as exc:  # noqa: BLE001 - the frames are in; `skylake dia` retries
        log.error("dia after ingest failed (run `skylake dia %s`): %s: %s", lake.url, type(exc).__name__, exc)
        return []
    report.references = [r.reference_id for r in built if r.outcome == "built"]
    return [report]


def _lacking_reference(lake, selection: FrameSelection) -> bool:
    """Whether a usable frame of the selection has no reference (reading only the selection's frames)."""
    frames = usable_frames(lake, selection)
    references = read_references(lake)
    return any(reference_for(references, f) is None for _, f in frames.iterrows())


def _with_objects(lake, items: list, runner) -> list:
    """The frames' items with their reference's objects and fluxes on it (one task a reference) and the
    reference's zeropoint: what the frames' DIA light-curve points need."""
    from skylake.dia.points import objects_for, reference_zeropoint, transients_for

    used = {ref["reference_id"]: ref for _, ref in items if ref is not None}
    zps = {rid: reference_zeropoint(lake, ref) for rid, ref in used.items()}
    wanted = [(ref, _targets(objects_for(lake, ref), transients_for(lake, ref))) for ref in used.values()]
    window = max(1, runner.workers())
    measured = dict(zip(used, runner.map(_reference_task, wanted, window=window, lake_root=lake.store.location)))
    return [
        (frame, None, None)
        if ref is None
        else (frame, {**ref, "zp": zps[ref["reference_id"]]}, measured[ref["reference_id"]])
        for frame, ref in items
    ]


def _targets(objects: pd.DataFrame, transients: pd.DataFrame) -> pd.DataFrame:
    """A reference's objects and transients, one table (``dia_object_id`` null for an object).

    A DIA object made before its star had an object (``skylake dia`` before ``skylake objects build``) has no
    ``object_id`` but lies on one: it is measured as that object, not a second time as a transient."""
    from skylake.dia.objects import link

    objects = objects.assign(object_id=objects["object_id"].astype("Int64"))
    objects["dia_object_id"] = pd.array([pd.NA] * len(objects), dtype="Int64")
    if len(transients) and len(objects):
        on_object, _ = link(transients, objects)
        transients = transients[pd.isna(on_object)]
    if not len(transients):
        return objects
    transients = transients.assign(dia_object_id=transients["dia_object_id"].astype("Int64"))
    return pd.concat([objects, transients[objects.columns]], ignore_index=True)


def _reference_task(item, lake_root: str) -> pd.DataFrame:
    from skylake.dia.points import reference_fluxes
    from skylake.dia.reference import from_fits
    from skylake.lake import Lake

    reference, objects = item
    if not len(objects):
        return objects
    image = from_fits(Lake.open(lake_root, catch_up=False).store.read_bytes(reference["path"]))
    return reference_fluxes(image, objects)


def _remove(tx, frames: pd.DataFrame, nights: list) -> None:
    """Stage the removal of frames' dia_frames rows, DIA sources and DIA light-curve points (``redo``): of the
    HATS tables, only the files of the partitions the frames' footprints touch."""
    ids = pa.array(sorted(int(f) for f in frames["frame_id"]), pa.int64())

    def drop(data):
        """Which rows belong to the frames done again.

        Parameters
        ----------
        data : pyarrow.Table
            A file's rows (with ``frame_id``).

        Returns
        -------
        numpy.ndarray
            True for each row to remove.
        """
        return pc.is_in(data.column("frame_id"), value_set=ids).to_numpy(zero_copy_only=False)

    tables.get(DIA_FRAMES).remove_where(tx, drop, nights=nights)
    for table in (DIA_SOURCES, DIA_LIGHTCURVES, DIA_FORCED):
        tables.get(table).remove_where(tx, drop, files=files_under(tx.lake, table, frames))


def _associate(tx, frames: pd.DataFrame, rows: list, found: list, again: list, linkable: list) -> tuple[list, int]:
    """Give the frames' real DIA sources their DIA objects and stage the DIA objects they touch, rebuilt from
    all their sources (:mod:`skylake.dia.objects`); return the frames' DIA sources with ``dia_object_id`` and
    how many DIA objects were staged.

    Only the partitions the frames' footprints touch are read. A frame done again (``again``) takes its old
    sources out of their DIA objects (one left with none is removed)."""
    from skylake.dia.detect import is_real
    from skylake.dia.objects import aggregate, associate, match_radius, object_rows
    from skylake.lake.parquet import value_set

    lake = tx.lake
    if not any(s.num_rows for s in found) and not again:
        return found, 0
    touched_frames = frames[frames["frame_id"].isin({int(r["frame_id"]) for r in rows} | set(again))]
    columns = ["dia_object_id", "frame_id", "ra", "dec", "mjd", "sign", "snr"]

    object_files = files_under(lake, DIA_OBJECTS, touched_frames)
    existing = frame_rows(lake, DIA_OBJECTS, touched_frames)
    old = frame_rows(lake, DIA_SOURCES, touched_frames, columns)
    old = old.loc[old["dia_object_id"].notna(), columns]
    redone = old["frame_id"].isin(again)
    affected = set(old.loc[redone, "dia_object_id"].astype(np.int64))
    old = old[~redone]
    keep = ["dia_source_id", *columns, "flags", "real_bogus"]
    new = pa.concat_tables(found).select(keep).to_pandas() if found else pd.DataFrame(columns=keep)
    fwhm = {int(r["frame_id"]): r["fwhm"] for r in rows}
    pixscale = frames.set_index("frame_id")["pixscale"]
    new["radius"] = match_radius(new["frame_id"].map(fwhm).astype(float), new["frame_id"].map(pixscale).astype(float))
    real = is_real(new) if len(new) else np.zeros(0, bool)
    ids = associate(new[real], existing)
    new["dia_object_id"] = pd.array([pd.NA] * len(new), dtype="Int64")
    new.loc[real, "dia_object_id"] = ids
    touched = affected | {int(i) for i in ids}
    staged = 0
    if touched:
        old = old[old["dia_object_id"].isin(touched)]
        old = old.assign(radius=old["dia_object_id"].map(existing.set_index("dia_object_id")["radius"]))
        members = pd.concat([old, new.loc[real, [*columns, "radius"]]], ignore_index=True)
        objects = pd.concat([o[["object_id", "ra", "dec"]] for o in linkable if len(o)], ignore_index=True) if any(
            len(o) for o in linkable) else pd.DataFrame(columns=["object_id", "ra", "dec"])  # fmt: skip
        objects = objects[objects["object_id"].notna()].astype({"object_id": "int64"})  # not the transients measured
        ids_in = value_set(sorted(touched))
        tables.get(DIA_OBJECTS).remove_where(
            tx, lambda data: pc.is_in(data.column("dia_object_id"), value_set=ids_in).to_numpy(zero_copy_only=False),
            files=object_files,
        )  # fmt: skip
        rebuilt = object_rows(aggregate(members), objects.drop_duplicates("object_id"))
        if rebuilt.num_rows:
            tx.stage_healpix(DIA_OBJECTS, rebuilt)
        staged = rebuilt.num_rows
    by_frame = dict(tuple(new.groupby("frame_id"))) if len(new) else {}
    out = []
    for row, sources in zip(rows, found):
        mine = by_frame.get(int(row["frame_id"]))
        if mine is None or not sources.num_rows:
            out.append(sources)
            continue
        object_ids = pa.array(mine.set_index("dia_source_id").loc[sources.column("dia_source_id").to_numpy(),
                                                                    "dia_object_id"], pa.int64())  # fmt: skip
        out.append(sources.set_column(sources.schema.get_field_index("dia_object_id"), "dia_object_id", object_ids))
    return out, staged


def _stage(tx, rows: list, found: list, points: list, forced: list) -> None:
    """Stage the frames' dia_frames rows, their DIA sources, their DIA light-curve points and their transients'
    forced points."""
    table = pd.DataFrame(rows)
    nights = table.pop("night").tolist()
    tables.get(DIA_FRAMES).stage(tx, conform(pa.Table.from_pandas(table, preserve_index=False), DIA_FRAMES), nights)
    sources = pa.concat_tables([s for s in found if s.num_rows]) if any(s.num_rows for s in found) else None
    if sources is not None:
        tx.stage_healpix(DIA_SOURCES, sources)
    for table, pieces in ((DIA_LIGHTCURVES, points), (DIA_FORCED, forced)):
        measured = [p for p in pieces if p.num_rows]
        if measured:
            tx.stage_healpix(table, pa.concat_tables(measured))
