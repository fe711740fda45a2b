"""The photometric model shared by calibration, maps, objects and the summary database.

Which flux is calibrated and how it becomes an instrumental magnitude, how a zeropoint relates reference and
instrumental magnitudes, the status and reject vocabularies, and which calibration of a frame is its
latest.

A profile's ``[calibration] flux`` names the source flux (``flux_auto``, SExtractor's MAG_AUTO, or one
of the apertures ``flux_ap1..3``). Its instrumental magnitude is::

    inst_mag = -2.5 log10(flux / exptime) - apcor

with ``apcor = 0`` for the Kron flux. An aperture misses the light outside it, so its magnitudes are
brought to the Kron total by ``apcor``, the median of ``-2.5 log10(flux_apN / flux_auto)`` over the
frame's clean calibration stars (unflagged, unblended, unsaturated, away from the edge, S/N of the
Kron flux at least :data:`APCOR_MIN_SNR`): a zeropoint from an aperture is then on the same scale as
one from the Kron flux, while each star's magnitude keeps the aperture's robustness to neighbours.

A frame's calibration (schemas/zeropoints.yaml) relates the two scales::

    ref_mag - inst_mag = zp + color_term * colour

so ``zp`` is the reference magnitude of a colour-0 source giving 1 ADU/s. :func:`pair_zeropoint`
solves it for one star, :func:`calibrated_mag` for a magnitude (colour 0 when unknown).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import pandas as pd

from skylake.profile import CALIBRATION_FLUXES

__all__ = [
    "FLUXES",
    "KRON",
    "MAG_PER_RELATIVE_FLUX",
    "APCOR_MIN_STARS",
    "APCOR_MIN_SNR",
    "ZpStatus",
    "ExtStatus",
    "REJECTS",
    "ASTRO_EXCLUDE",
    "STAR_REJECTS",
    "instrumental_mag",
    "instrumental_mag_err",
    "aperture_corrections",
    "own_aperture_corrections",
    "apcor_fallback",
    "calibrated_flux_mags",
    "colour_offset",
    "pair_zeropoint",
    "calibrated_mag",
    "LatestPolicy",
    "latest_calibration",
]


#: Source fluxes a calibration can use (columns of LAKE/sources, each with a ``_err``).
FLUXES = CALIBRATION_FLUXES  # the sources' Kron flux and three circles (the profile's [calibration] flux takes one)
KRON = "flux_auto"
#: 2.5 / ln(10): the magnitude error of a flux with relative error 1.
MAG_PER_RELATIVE_FLUX = 1.0857362
#: Clean stars needed for a frame's own aperture correction (else the run's median is used).
APCOR_MIN_STARS = 3
#: Signal-to-noise of the Kron flux a star needs to set the aperture correction.
APCOR_MIN_SNR = 20.0


class ZpStatus(enum.StrEnum):
    """``zp_status`` of a zeropoints row: a str, so members equal and are written as their values."""

    OK = "ok"
    TOO_FEW_STARS = "too_few_stars"
    NO_REFERENCE_OVERLAP = "no_reference_overlap"
    HIGH_SCATTER = "high_scatter"
    CLOUDY = "cloudy"
    FRAME_REJECTED = "frame_rejected"


class ExtStatus(enum.StrEnum):
    """``ext_status`` of an extinction row (schemas/extinction.yaml)."""

    OK = "ok"
    TOO_FEW_FRAMES = "too_few_frames"
    SMALL_AIRMASS_RANGE = "small_airmass_range"
    IMPLAUSIBLE_K = "implausible_k"


#: Per-pair reject reasons of LAKE/matches ("" = used), in the order they are tested: a pair gets the
#: first that applies (the star cuts of :func:`skylake.calib.zeropoint.select_stars`, then the fit's).
REJECTS = (
    "saturated",
    "flagged",
    "edge",
    "blended",
    "too_bright",
    "too_faint",
    "ref_flagged",
    "no_color",
    "color_range",
    "clipped",
)
#: Cuts that make a source's own measurement (centroid, flux) unreliable: such pairs stay out of the
#: astrometric residuals (calibration and maps) and of the aperture correction.
ASTRO_EXCLUDE = ("saturated", "flagged", "edge", "blended")
#: Pairs whose star is a zeropoint sample of the maps: used in the fit, or clipped from it (clipping
#: is what a patchy cloud does).
STAR_REJECTS = ("", "clipped")


def instrumental_mag(flux, exptime) -> np.ndarray:
    """Instrumental magnitude ``-2.5 log10(flux / exptime)`` [mag]; NaN where the flux is not positive.

    Parameters
    ----------
    flux : array-like
        The fluxes [ADU].
    exptime : array-like or float
        The exposure times [s].

    Returns
    -------
    numpy.ndarray
        The instrumental magnitudes [mag].
    """
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, -2.5 * np.log10(flux / np.asarray(exptime, dtype=np.float64)), np.nan)


def instrumental_mag_err(flux, flux_err) -> np.ndarray:
    """Magnitude error of ``flux`` with error ``flux_err`` [mag]; NaN where the flux is not positive.

    Parameters
    ----------
    flux : array-like
        The fluxes [ADU].
    flux_err : array-like
        Their errors [ADU].

    Returns
    -------
    numpy.ndarray
        The magnitude errors, :data:`MAG_PER_RELATIVE_FLUX` times the relative flux error [mag].
    """
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, MAG_PER_RELATIVE_FLUX * np.asarray(flux_err, dtype=np.float64) / flux, np.nan)


def aperture_corrections(pairs: pd.DataFrame, flux: str, clean: np.ndarray) -> pd.Series:
    """Each frame's ``apcor`` [mag] for aperture ``flux``.

    Its own (:func:`own_aperture_corrections`), or, for a frame with too few stars, the median of the frames
    that have enough (:func:`apcor_fallback`; NaN when none has).

    Parameters
    ----------
    pairs : pandas.DataFrame
        The frames' pairs, with ``frame_id``, ``flux_auto``, ``flux_auto_err`` and ``flux``.
    flux : str
        The flux calibrated (one of :data:`FLUXES`).
    clean : numpy.ndarray
        Per pair, whether its star is clean enough for the aperture correction (boolean).

    Returns
    -------
    pandas.Series
        The corrections [mag], indexed by frame_id; 0 everywhere for the Kron flux.
    """
    frames = pd.Index(pd.unique(pairs["frame_id"]), name="frame_id")
    if flux == KRON:
        return pd.Series(0.0, index=frames)
    own = own_aperture_corrections(pairs, flux, clean)
    return own.reindex(frames).fillna(apcor_fallback(own))


def own_aperture_corrections(pairs: pd.DataFrame, flux: str, clean: np.ndarray) -> pd.Series:
    """Each frame's own aperture correction, from its clean stars.

    The median of ``-2.5 log10(flux / flux_auto)`` over each frame's ``clean`` pairs with a Kron S/N of
    at least :data:`APCOR_MIN_SNR`, for the frames with :data:`APCOR_MIN_STARS` such stars (the others are
    left out). A function of each frame's own pairs, so frames can be taken apart.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The frames' pairs, with ``frame_id``, ``flux_auto``, ``flux_auto_err`` and ``flux``.
    flux : str
        The aperture flux (one of :data:`FLUXES`).
    clean : numpy.ndarray
        Per pair, whether its star is clean enough for the aperture correction (boolean).

    Returns
    -------
    pandas.Series
        The corrections [mag], indexed by frame_id.
    """
    auto = pairs[KRON].to_numpy(np.float64)
    ap = pairs[flux].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = auto / pairs[f"{KRON}_err"].to_numpy(np.float64)
        delta = -2.5 * np.log10(ap / auto)
    use = np.asarray(clean, bool) & (auto > 0) & (ap > 0) & (snr >= APCOR_MIN_SNR) & np.isfinite(delta)
    by_frame = pd.Series(delta[use]).groupby(pairs["frame_id"].to_numpy()[use])
    return by_frame.median()[by_frame.size() >= APCOR_MIN_STARS]


def apcor_fallback(own: pd.Series) -> float:
    """The aperture correction of a frame without its own: the median of the frames' ``own`` (NaN without).

    Parameters
    ----------
    own : pandas.Series
        The frames' own corrections (:func:`own_aperture_corrections`) [mag].

    Returns
    -------
    float
        Their median [mag], NaN when there is none.
    """
    return float(own.median()) if len(own) else np.nan


def calibrated_flux_mags(pairs: pd.DataFrame, exptime: np.ndarray, flux: str, apcor: np.ndarray):
    """Instrumental magnitudes and errors of ``pairs`` in ``flux`` with each row's ``exptime`` and ``apcor``.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pairs, with ``flux`` and ``<flux>_err``.
    exptime : numpy.ndarray
        Each row's exposure time [s].
    flux : str
        The flux calibrated (one of :data:`FLUXES`).
    apcor : numpy.ndarray
        Each row's aperture correction [mag].

    Returns
    -------
    inst_mag : numpy.ndarray
        The instrumental magnitudes, aperture-corrected [mag].
    inst_mag_err : numpy.ndarray
        Their errors [mag].
    """
    return (
        instrumental_mag(pairs[flux], exptime) - np.asarray(apcor, np.float64),
        instrumental_mag_err(pairs[flux], pairs[f"{flux}_err"]),
    )


def colour_offset(colour, color_term) -> np.ndarray:
    """The colour term's part of a magnitude, ``color_term * colour`` [mag].

    0 without a colour term (``color_term`` 0 or NaN, whatever the colour); NaN for an unknown colour under a
    colour term.

    Parameters
    ----------
    colour : array-like
        The colours [mag].
    color_term : array-like or float
        The colour terms.

    Returns
    -------
    numpy.ndarray
        The offsets [mag].
    """
    ct = np.asarray(color_term, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where((ct == 0) | np.isnan(ct), 0.0, ct * np.asarray(colour, dtype=np.float64))


def pair_zeropoint(ref_mag, inst_mag, colour=0.0, color_term=0.0) -> np.ndarray:
    """The zeropoint one star gives, ``ref_mag - inst_mag - color_term * colour`` [mag].

    The calibration model solved for one pair. NaN for a star of unknown colour under a colour term:
    it cannot be brought to colour 0 (see :func:`colour_offset`).

    Parameters
    ----------
    ref_mag : array-like
        The reference magnitudes [mag].
    inst_mag : array-like
        The instrumental magnitudes [mag].
    colour : array-like or float, optional
        The colours [mag].
    color_term : array-like or float, optional
        The colour terms.

    Returns
    -------
    numpy.ndarray
        The zeropoints [mag].
    """
    return (
        np.asarray(ref_mag, dtype=np.float64)
        - np.asarray(inst_mag, dtype=np.float64)
        - colour_offset(colour, color_term)
    )


def calibrated_mag(inst_mag, zp, colour=None, color_term=None) -> np.ndarray:
    """Calibrated magnitude ``inst_mag + zp + color_term * colour`` [mag] (schemas/zeropoints.yaml).

    An unknown colour (NaN) counts as colour 0, as ``zp`` is defined, and an unknown colour term as
    none. Without ``colour`` or ``color_term``, ``inst_mag + zp``; NaN where either is.

    Parameters
    ----------
    inst_mag : array-like
        The instrumental magnitudes [mag].
    zp : array-like or float
        The zeropoints [mag].
    colour : array-like, optional
        The colours [mag].
    color_term : array-like or float, optional
        The colour terms.

    Returns
    -------
    numpy.ndarray
        The calibrated magnitudes [mag].
    """
    mag = np.asarray(inst_mag, dtype=np.float64) + np.asarray(zp, dtype=np.float64)
    if colour is None or color_term is None:
        return mag
    return mag + colour_offset(np.nan_to_num(np.asarray(colour, dtype=np.float64)), color_term)


@dataclass(frozen=True)
class LatestPolicy:
    """Which zeropoints row is a frame's calibration (see :func:`latest_calibration`).

    Attributes
    ----------
    refcat : str or None
        Only rows of this reference catalogue; None: rows of every catalogue compete.
    ok_only : bool
        Only rows whose ``zp_status`` is ok (a frame without one has no calibration).
    order : tuple of str
        Columns ordering the rows: a frame's latest is its last in this order (ties: the row read later).
    """

    refcat: str | None = None
    ok_only: bool = False
    order: tuple[str, ...] = ("calibrated_at",)


def latest_calibration(zeropoints: pd.DataFrame, policy: LatestPolicy) -> pd.DataFrame:
    """Each frame's latest calibration.

    The one row per ``frame_id`` of ``zeropoints`` (rows of LAKE/zeropoints) that ``policy`` picks.

    The rows are those of ``policy.refcat`` (every catalogue when None), and only the ok ones with
    ``policy.ok_only``; a frame's latest is its last in ``policy.order`` (a stable sort: on a tie, the
    row that came later in ``zeropoints``; a null sorts last, so it is the latest). The policies in use:

    * objects (:func:`skylake.objects.build.latest_calibrations`) and maps
      (:func:`skylake.maps.build.compute_maps`): ``refcat`` = the build's catalogue, any status, latest
      ``calibrated_at``: ``LatestPolicy(refcat=name)``. A recalibration that failed (say ``cloudy``)
      hides an earlier ok one: the frame then has no zeropoint;
    * night summaries (:func:`skylake.db.mirror.night_summary`): any catalogue, ok rows only, latest
      ``calibrated_at``: ``LatestPolicy(ok_only=True)``. A frame counts as calibrated when any
      catalogue calibrated it ok, with the zeropoint of the one that did so last;
    * a frame's checkplot (:func:`skylake.calib.calibrate.plot_zeropoint`): ``LatestPolicy(refcat=name)``,
      any catalogue without one.

    Parameters
    ----------
    zeropoints : pandas.DataFrame
        Rows with ``frame_id``, the ``policy.order`` columns, ``refcat`` when ``policy.refcat`` is set
        and ``zp_status`` with ``policy.ok_only``.
    policy : LatestPolicy
        The rule.

    Returns
    -------
    pandas.DataFrame
        The rows picked, with their index, in ``frame_id`` order.
    """
    rows = zeropoints
    if policy.refcat is not None:
        rows = rows[rows["refcat"] == policy.refcat]
    if policy.ok_only:
        rows = rows[rows["zp_status"] == ZpStatus.OK]
    return rows.sort_values(["frame_id", *policy.order], kind="stable").drop_duplicates("frame_id", keep="last")
