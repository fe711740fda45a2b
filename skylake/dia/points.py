"""DIA light-curve points: forced photometry on each frame's difference at every object of its reference's
footprint, into ``LAKE/dia_lightcurves`` (schemas/dia_lightcurves.yaml).

Every object gets a point in every frame it falls on, detected there or not: the difference holds only what
changed, so a variable's change is measured free of its neighbours' light whatever the seeing, and a faint or
blended star's light curve has no gaps where the extraction lost it. The object's flux on the reference
(:func:`reference_fluxes`, once a reference) turns the change into a magnitude.

Units: ADU/s on the reference's photometric scale (its sharpest frame's): a frame's difference is in the frame's
ADU, the reference matched to it by a kernel whose sum is the frames' flux ratio, so a change of ``d`` ADU/s on
the reference's scale is ``d * scale * exptime`` ADU on the frame.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa

from skylake.dia.files import frame_row_ids
from skylake.lake.tables import DIA_FORCED, DIA_LIGHTCURVES, ZEROPOINTS
from skylake.schema import conform

__all__ = [
    "POINT_FLAGS",
    "FLOOR_SNR",
    "FLOOR_MIN",
    "FLOOR_MAX",
    "CATALOGUE_SNR",
    "objects_for",
    "transients_for",
    "TRANSIENT_SOURCES",
    "reference_fluxes",
    "reference_zeropoint",
    "measure_points",
    "flux_floor",
    "scale_residual",
    "SCALE_SNR",
    "SCALE_MIN",
]

#: DIA point flags.
POINT_FLAGS = {"masked": 1}
#: A catalogue star with no object is measured when it shows on the reference at this S/N or more.
CATALOGUE_SNR = 5.0
#: A DIA object with no object is a transient measured on every frame when it has this many real DIA sources
#: (one detection alone is as often a cosmic ray or a hot pixel the cuts let through).
TRANSIENT_SOURCES = 2
#: Objects above this S/N on a frame measure its flux floor (:func:`flux_floor`) ...
FLOOR_SNR = 50.0
#: ... when there are this many of them.
FLOOR_MIN = 20
#: The largest floor (a frame whose bright objects scatter more is not helped by one).
FLOOR_MAX = 0.5
#: Objects this bright on the reference (its S/N) measure what the kernel's flux scale left (:func:`scale_residual`)
#: ...
SCALE_SNR = 100.0
#: ... when there are this many of them.
SCALE_MIN = 10


def objects_for(lake, reference: dict) -> pd.DataFrame:
    """What a reference's frames are measured at: the lake's objects over its footprint, and the stars of the
    objects' reference catalogue there, at the catalogue's positions.

    A blend the extraction never split (a variable 1-2 FWHM from brighter stars) has no object of its own, but
    the catalogue knows it: its points are filed under the id its object will have (``ref_object_ids``), so
    they join the objects table once it has one. A catalogue star the reference does not show (S/N under
    :data:`CATALOGUE_SNR` on it) is left out by :func:`reference_fluxes`.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    reference : dict
        The reference's row (schemas/references.yaml).

    Returns
    -------
    pandas.DataFrame
        ``object_id``, ``_healpix_29``, ``ra``, ``dec`` and ``from_catalogue`` (a catalogue star with no object
        yet); empty when the lake has no objects yet.
    """
    from skylake.frame.astrometry import healpix29
    from skylake.objects.associate import ref_object_ids
    from skylake.objects.build import read_state
    from skylake.objects.query import cone_objects
    from skylake.refcat.query import cone_search

    columns = ["object_id", "_healpix_29", "ra", "dec"]
    state = read_state(lake)
    if not state:  # never built
        empty = {c: pd.Series(dtype="float64" if c in ("ra", "dec") else "int64") for c in columns}
        return pd.DataFrame(empty).assign(from_catalogue=pd.Series(dtype=bool))
    radius = 1.05 * 0.5 * math.hypot(reference["nx"], reference["ny"]) * reference["pixscale"]  # [arcsec]
    centre = (reference["ra_center"], reference["dec_center"])
    found = cone_objects(lake, *centre, radius, columns).select(columns).to_pandas().assign(from_catalogue=False)
    refcat = state.get("refcat") or ""
    if not refcat or refcat == "none":
        return found
    epoch = 2000.0 + (0.5 * (reference["mjd_min"] + reference["mjd_max"]) - 51544.5) / 365.25
    stars = cone_search(lake, refcat, *centre, radius, columns=[], epoch=epoch)
    ids = ref_object_ids(refcat, stars["ref_id"].to_numpy())
    ra, dec = stars["ra"].to_numpy(float), stars["dec"].to_numpy(float)
    catalogue = pd.DataFrame({"object_id": ids, "_healpix_29": healpix29(ra, dec), "ra": ra, "dec": dec})
    known = found["object_id"].isin(ids)
    # a catalogue star's own position (not the mean of detections a neighbour may have pulled); where it has an
    # object, filed under the object's position as its other points are
    placed = catalogue.merge(
        found.loc[known, ["object_id", "_healpix_29"]], on="object_id", how="left", suffixes=("", "_obj")
    )
    placed["_healpix_29"] = placed["_healpix_29_obj"].fillna(placed["_healpix_29"]).astype(np.int64)
    placed = placed.drop(columns="_healpix_29_obj").assign(from_catalogue=~placed["object_id"].isin(found["object_id"]))
    return pd.concat([found[~known], placed], ignore_index=True)


def transients_for(lake, reference: dict) -> pd.DataFrame:
    """The transients over a reference's footprint: its DIA objects of :data:`TRANSIENT_SOURCES` or more real DIA
    sources with no object (``object_id`` null), at their position (their sources' S/N-weighted mean).

    Measured on every frame, detected there or not, a transient's points give its light curve before, during and
    after what the detection threshold saw, at one place: a detection beside a bright star lands 0.5-2.8 px from
    the source (SkyCamZ), the mean of several 0.74 px; the run moves the points to where its frames say together
    (:mod:`skylake.dia.places`), 0.16 px.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    reference : dict
        The reference's row (schemas/references.yaml).

    Returns
    -------
    pandas.DataFrame
        ``object_id`` (null), ``dia_object_id``, ``_healpix_29``, ``ra``, ``dec``, ``radius`` (its association
        radius [arcsec]) and ``from_catalogue`` (False); empty when the lake has none.
    """
    from skylake.dia.files import frame_rows
    from skylake.lake.tables import DIA_OBJECTS

    columns = ["dia_object_id", "_healpix_29", "ra", "dec", "radius", "n_sources", "object_id"]
    footprint = pd.DataFrame([{k: reference[k] for k in ("ra_center", "dec_center", "nx", "ny", "pixscale")}])
    rows = frame_rows(lake, DIA_OBJECTS, footprint, columns)
    rows = rows[rows["object_id"].isna() & (rows["n_sources"] >= TRANSIENT_SOURCES)]
    return pd.DataFrame(
        {
            "object_id": pd.array([pd.NA] * len(rows), dtype="Int64"),
            "dia_object_id": rows["dia_object_id"].to_numpy(np.int64),
            "_healpix_29": rows["_healpix_29"].to_numpy(np.int64),
            "ra": rows["ra"].to_numpy(float),
            "dec": rows["dec"].to_numpy(float),
            "radius": rows["radius"].to_numpy(float),
            "from_catalogue": np.zeros(len(rows), bool),
        }
    )


def reference_zeropoint(lake, reference: dict) -> float | None:
    """The zeropoint of the reference's photometric scale: its grid frame's (the newest ok calibration).

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    reference : dict
        The reference's row (with ``night``).

    Returns
    -------
    float or None
        Magnitude of 1 ADU/s on the reference's scale; None when the grid frame is not calibrated.
    """
    import pyarrow.compute as pc

    from skylake.lake import tables

    rows = (
        tables.get(ZEROPOINTS)
        .read(
            lake,
            columns=["frame_id", "zp", "zp_status"],
            filter=pc.field("frame_id") == int(reference["grid_frame_id"]),
            nights=[reference.get("night")],
        )
        .to_pandas()
    )
    ok = rows[(rows["zp_status"] == "ok") & rows["zp"].notna()]
    return float(ok["zp"].iloc[-1]) if len(ok) else None


def reference_fluxes(reference, objects: pd.DataFrame) -> pd.DataFrame:
    """The objects' PSF fluxes on a reference image, with its own PSF (from its bright stars), neighbours closer
    than 2 FWHM fitted together (:func:`skylake.dia.forced.joint_forced_photometry`): a blend's share of light.

    Parameters
    ----------
    reference : skylake.dia.reference.ReferenceImage
        The reference.
    objects : pandas.DataFrame
        ``ra``, ``dec`` [deg] (and any other columns, kept).

    Returns
    -------
    pandas.DataFrame
        The objects on the reference's unmasked part, with ``ref_flux`` and ``ref_flux_err`` [ADU/s].
    """
    from skylake.dia.difference import DiaSettings, choose_stamps
    from skylake.dia.forced import empirical_psf, joint_forced_photometry

    if not len(objects):
        return objects.assign(ref_flux=np.empty(0), ref_flux_err=np.empty(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = reference.wcs.world_to_pixel_values(objects["ra"].to_numpy(), objects["dec"].to_numpy())
    fwhm = float(reference.fwhm) if np.isfinite(reference.fwhm) and reference.fwhm > 0 else 3.0
    image = np.where(reference.mask, 0.0, reference.image)
    stamps = choose_stamps(image, image, DiaSettings(), mask=reference.mask)
    psf = empirical_psf(image, stamps, int(math.ceil(3 * fwhm)))
    flux, err = joint_forced_photometry(image, reference.variance, x, y, fwhm, psf=psf)
    found = objects.assign(ref_flux=flux, ref_flux_err=err)
    keep = np.isfinite(flux) & np.isfinite(err)
    if "from_catalogue" in found:  # a catalogue star the reference does not show is no light curve
        keep &= ~found["from_catalogue"].to_numpy(bool) | (flux > CATALOGUE_SNR * err)
    return found[keep].reset_index(drop=True)


def measure_points(diff, wcs, psf, fwhm: float, correction: float, objects: pd.DataFrame, frame: dict,
                   reference: dict) -> tuple[pa.Table, pa.Table, float | None, float, dict]:  # fmt: skip
    """One frame's DIA light-curve points: the forced flux change at each object and transient on it, fitted
    together where they are neighbours.

    Parameters
    ----------
    diff : skylake.dia.difference.Difference
        The frame's difference.
    wcs : astropy.wcs.WCS
        The frame's WCS.
    psf : skylake.dia.forced.EmpiricalPSF or None
        The frame's PSF (None: a Gaussian of ``fwhm``).
    fwhm : float
        The PSF core's FWHM [pixels].
    correction : float
        The frame's aperture correction (:func:`skylake.dia.stage.aperture_correction`).
    objects : pandas.DataFrame
        The reference's objects and transients (:func:`objects_for`, :func:`transients_for`: ``dia_object_id``
        set for a transient) with their fluxes on it (:func:`reference_fluxes`).
    frame : dict
        The frame's row (``frame_id``, ``mjd``, ``exptime``).
    reference : dict
        The reference's row, with ``zp`` (:func:`reference_zeropoint`, or None).

    Returns
    -------
    points : pyarrow.Table
        Rows of schemas/dia_lightcurves.yaml, one per object whose PSF box lies on the frame.
    forced : pyarrow.Table
        Rows of schemas/dia_forced.yaml, one per transient (``objects`` with a ``dia_object_id``) on the frame.
    floor : float or None
        The frame's flux floor (:func:`flux_floor`), in the points' errors.
    residual : float
        What the kernel's flux scale left, taken out of the points (:func:`scale_residual`).
    grids : dict
        ``dia_object_id -> dict`` for each transient on the frame: its forced point at each place of
        :func:`skylake.dia.places.grid_offsets` about it (``snr2``, ``x``, ``y``, ``dflux``, ``dflux_err``,
        ``mag_dia``, ``mag_dia_err``), for :func:`skylake.dia.places.joint_places`.
    """
    from scipy.ndimage import maximum_filter

    from skylake.dia.forced import joint_forced_photometry

    if not len(objects):
        return _table({}, DIA_LIGHTCURVES, "", "", []), _table({}, DIA_FORCED, "", "", []), None, 0.0, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = (np.asarray(v, float) for v in wcs.world_to_pixel_values(objects["ra"], objects["dec"]))
    half = psf.half if psf is not None else max(3, int(math.ceil(2 * fwhm)))
    ny, nx = diff.image.shape
    ix, iy = np.round(x), np.round(y)
    on = (ix >= half) & (ix < nx - half) & (iy >= half) & (iy < ny - half)
    # neighbours fitted together: a variable's change stays its own, not its blended neighbours'
    flux, err = joint_forced_photometry(diff.image, diff.variance, x[on], y[on], fwhm, psf=psf)
    good = np.isfinite(flux) & np.isfinite(err)
    rows = objects[on][good]
    x, y, ix, iy, flux, err = x[on][good], y[on][good], ix[on][good], iy[on][good], flux[good], err[good]
    per_adu = 1.0 / (diff.solution.scale * float(frame["exptime"]))  # frame ADU -> ADU/s on the reference's scale
    ref_flux = rows["ref_flux"].to_numpy()
    dflux, dflux_err = _changed(flux, err, ref_flux, correction * per_adu, diff.solution)
    bad = ~(np.isfinite(diff.variance) & (diff.variance > 0))
    masked = maximum_filter(bad.astype(np.uint8), size=2 * half + 1)[iy.astype(int), ix.astype(int)] > 0
    bright = ~masked & (ref_flux > SCALE_SNR * rows["ref_flux_err"].to_numpy())
    residual, residual_err = scale_residual(dflux[bright], ref_flux[bright])
    dflux = dflux - residual * ref_flux
    dflux_err = np.hypot(dflux_err, residual_err * ref_flux)
    floor = flux_floor(dflux, dflux_err, ref_flux + dflux)
    zp = reference.get("zp")
    dflux_err, mag, mag_err = _finished(dflux, dflux_err, ref_flux, floor, zp)
    n = len(rows)
    cols = {
        "_healpix_29": rows["_healpix_29"].to_numpy(np.int64),
        "id": frame_row_ids(int(frame["frame_id"]), n),
        "frame_id": np.full(n, int(frame["frame_id"]), np.int64),
        "reference_id": np.array([reference["reference_id"]] * n, dtype=object),
        "mjd": np.full(n, float(frame["mjd"])),
        "x": x,
        "y": y,
        "dflux": dflux,
        "dflux_err": dflux_err,
        "ref_flux": ref_flux,
        "ref_flux_err": rows["ref_flux_err"].to_numpy(float),
        "mag_dia": mag,
        "mag_dia_err": mag_err,
        "flags": np.where(masked, POINT_FLAGS["masked"], 0).astype(np.int32),
    }
    transient = rows["dia_object_id"].notna().to_numpy() if "dia_object_id" in rows else np.zeros(n, bool)
    of_objects = {k: v[~transient] for k, v in cols.items()}
    points = _table(of_objects, DIA_LIGHTCURVES, "dia_point_id", "object_id", rows["object_id"][~transient])
    of_transients = {k: v[transient] for k, v in cols.items()}
    forced = _table(of_transients, DIA_FORCED, "dia_forced_id", "dia_object_id", rows["dia_object_id"][transient])

    def _converted(flux, err, ref):
        """A frame's fluxes [ADU] at places as a transient's forced points (the rows' steps above)."""
        d, e = _changed(flux, err, ref, correction * per_adu, diff.solution)
        d, e = d - residual * ref, np.hypot(e, residual_err * ref)
        return (d, *_finished(d, e, ref, floor, zp))

    grids = _transient_grids(diff, wcs, psf, fwhm, half, rows, x, y, flux, transient, reference, _converted)
    return points, forced, floor, residual, grids


def _changed(flux, err, ref_flux, to_reference: float, solution):
    """Fluxes and errors on a frame [ADU] as changes on the reference's scale [ADU/s], the errors with the kernel
    sum's: it scales the whole reference, so its error moves the difference by ref_flux times it."""
    return flux * to_reference, np.hypot(err * to_reference, ref_flux * solution.scale_error / solution.scale)


def _finished(dflux, dflux_err, ref_flux, floor, zp):
    """The errors with the frame's flux floor, and the magnitudes (NaN where the frame is not calibrated or the
    flux is not positive)."""
    total = ref_flux + dflux
    dflux_err = np.hypot(dflux_err, (floor or 0.0) * np.abs(total))
    with np.errstate(invalid="ignore", divide="ignore"):
        calibrated = (zp is not None) & (total > 0)
        mag = np.where(calibrated, -2.5 * np.log10(np.where(total > 0, total, 1.0)) + (zp or 0.0), np.nan)
        mag_err = np.where(calibrated, 1.0857362 * dflux_err / total, np.nan)
    return dflux_err, mag, mag_err


def _transient_grids(diff, wcs, psf, fwhm, half, rows, x, y, flux, transient, reference, converted) -> dict:
    """Each transient on a frame measured at the places tried about its DIA object (:mod:`skylake.dia.places`),
    its fitted neighbours' light taken out: ``dia_object_id -> dict`` of arrays (``snr2``, ``x``, ``y``, and the
    forced point's ``dflux``, ``dflux_err``, ``mag_dia``, ``mag_dia_err`` through ``converted``)."""
    from skylake.dia.places import grid_offsets, place_grid

    grids = {}
    east, north = grid_offsets(float(reference["pixscale"]))
    for k in np.flatnonzero(transient):
        ra0, dec0 = float(rows["ra"].iloc[k]), float(rows["dec"].iloc[k])
        ras, decs = ra0 + east / 3600.0 / math.cos(math.radians(dec0)), dec0 + north / 3600.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gx, gy = (np.asarray(v, float) for v in wcs.world_to_pixel_values(ras, decs))
        near = np.hypot(x - x[k], y - y[k]) < 2 * half + 2
        near[k] = False
        gflux, gerr = place_grid(diff.image, diff.variance, gx, gy, fwhm, psf, (x[near], y[near], flux[near]))
        dflux, dflux_err, mag, mag_err = converted(gflux, gerr, np.full(len(gx), rows["ref_flux"].iloc[k]))
        with np.errstate(invalid="ignore", divide="ignore"):
            snr2 = (gflux / gerr) ** 2
        grids[int(rows["dia_object_id"].iloc[k])] = dict(
            snr2=snr2, x=gx, y=gy, dflux=dflux, dflux_err=dflux_err, mag_dia=mag, mag_dia_err=mag_err
        )
    return grids


def scale_residual(dflux: np.ndarray, ref_flux: np.ndarray) -> tuple[float, float]:
    """What the kernel's flux scale left in a frame's difference: its bright objects' median ``dflux / ref_flux``.

    The kernel's sum scales the reference onto the frame; where it is off by a fraction, every star leaves that
    fraction of its reference flux in the difference (about 1 % on a synthetic crowded field, changing with the
    seeing), and a faint star beside bright ones gets theirs too. Most objects are constant: their median says
    it, and ``dflux - residual * ref_flux`` takes it out of every point (each object's own: its neighbours' PSFs
    are fitted with its own, on the reference and on the difference).

    Parameters
    ----------
    dflux : numpy.ndarray
        The bright objects' flux changes [ADU/s].
    ref_flux : numpy.ndarray
        Their fluxes on the reference [ADU/s].

    Returns
    -------
    residual : float
        The median ``dflux / ref_flux`` (0 with fewer than :data:`SCALE_MIN` objects).
    error : float
        Its error (the robust scatter over the square root of their number; 0 with none).
    """
    ratio = dflux / ref_flux
    ratio = ratio[np.isfinite(ratio)]
    if len(ratio) < SCALE_MIN:
        return 0.0, 0.0
    middle = float(np.median(ratio))
    return middle, float(1.2533 * 1.4826 * np.median(np.abs(ratio - middle)) / np.sqrt(len(ratio)))


def flux_floor(dflux: np.ndarray, dflux_err: np.ndarray, flux: np.ndarray) -> float | None:
    """The fraction of each object's flux that, added in quadrature to its error, makes a frame's bright objects
    scatter as their errors say.

    A bright star's change on a difference is short of zero by more than its photons allow: the kernel matches
    its PSF imperfectly, and the atmosphere twinkles (scintillation: 0.3-0.4 % in a 10 s SkyCamZ frame). Both
    scale with its flux; a frame's bright objects measure them together, as the ensemble's noise model measures
    the aperture light curves' floor. Variables among them are few: the median absolute deviation ignores them.

    Parameters
    ----------
    dflux, dflux_err : numpy.ndarray
        The objects' flux changes and errors.
    flux : numpy.ndarray
        Their fluxes (the reference's plus the change).

    Returns
    -------
    float or None
        The fraction (0 when the bright objects scatter within their errors already); None with fewer than
        :data:`FLOOR_MIN` objects above :data:`FLOOR_SNR`.
    """
    ok = np.isfinite(dflux) & np.isfinite(dflux_err) & (dflux_err > 0) & np.isfinite(flux)
    bright = ok & (flux > FLOOR_SNR * np.where(ok, dflux_err, np.inf))
    if bright.sum() < FLOOR_MIN:
        return None
    d, e, f = dflux[bright], dflux_err[bright], flux[bright]

    def width(floor: float) -> float:
        """The robust width of the pulls with a floor.

        Parameters
        ----------
        floor : float
            The fraction of the flux added to the errors.

        Returns
        -------
        float
            1.4826 x the median absolute deviation of the pulls.
        """
        pulls = d / np.sqrt(e**2 + (floor * f) ** 2)
        return float(1.4826 * np.median(np.abs(pulls - np.median(pulls))))

    lo, hi = 0.0, FLOOR_MAX
    if width(lo) <= 1.0:
        return 0.0
    if width(hi) > 1.0:
        return hi
    for _ in range(40):  # bisection: the width falls as the floor grows
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if width(mid) > 1.0 else (lo, mid)
    return 0.5 * (lo + hi)


def _table(cols: dict, table: str, id_name: str, target: str, target_ids) -> pa.Table:
    """The rows of ``table`` (``dia_lightcurves`` or ``dia_forced``): ``cols`` with their id and target columns."""
    from skylake.lake import tables

    if not len(target_ids):
        return tables.get(table).schema.empty_table()
    named = {(id_name if k == "id" else k): v for k, v in cols.items()}
    for k in ("mag_dia", "mag_dia_err"):  # null, not NaN, where there is none (the schemas say so; SQL's IS NULL)
        named[k] = pa.array(named[k], pa.float32(), from_pandas=True)
    return conform({**named, target: np.asarray(target_ids, np.int64)}, table)
