"""Frame quality gates (Skycam-SkyMine and pipe-trex; ../shared/research/seed-pipelines.md).

A frame that fails a gate keeps its row (and its sources) with a status and a reason; downstream
products select ``status == 'ok'`` frames.
"""

from __future__ import annotations

import numpy as np

from skylake.profile import Quality

__all__ = ["FIELD_MARGIN_PX", "frame_measures", "judge"]


#: Detections nearer the chip edge than this (px) or with sep flags set are not used by the gates (Skycam).
FIELD_MARGIN_PX = 10.0


def frame_measures(cols: dict[str, np.ndarray]) -> dict[str, float]:
    """Compute the per-frame statistics the gates look at, from the measured source columns.

    Clean sources are those without sep flags and farther than :data:`FIELD_MARGIN_PX` from the chip edge.

    Parameters
    ----------
    cols : dict of numpy arrays
        The frame's measured source columns (``flags``, ``edge_dist``, ``bkg``, ``bkg_local``, ``fwhm``,
        ``elongation``, ``theta``, ``flux_max``).

    Returns
    -------
    measures : dict
        ``n_clean`` (the number of clean sources), ``fwhm_median``, ``elongation_max`` and ``theta_kurtosis``
        (Fisher) of the clean sources, ``flux_max_max`` of all sources, and the median and MAD of all
        sources' background (``src_bkg_median``, ``src_bkg_mad``); NaN where there is nothing to measure.
    """
    clean = (cols["flags"] == 0) & (cols["edge_dist"] > FIELD_MARGIN_PX)
    n_clean = int(clean.sum())
    bkg = cols["bkg"] + cols["bkg_local"]
    nan = float("nan")
    return {
        "n_clean": n_clean,
        "fwhm_median": float(np.median(cols["fwhm"][clean])) if n_clean else nan,
        "elongation_max": float(np.max(cols["elongation"][clean])) if n_clean else nan,
        "theta_kurtosis": float(_kurtosis(cols["theta"][clean], fisher=True)) if n_clean > 3 else nan,
        "flux_max_max": float(np.max(cols["flux_max"])) if len(cols["flux_max"]) else nan,
        "src_bkg_median": float(np.median(bkg)) if len(bkg) else nan,
        "src_bkg_mad": float(np.median(np.abs(bkg - np.median(bkg)))) if len(bkg) else nan,
    }


def judge(measures: dict[str, float], q: Quality) -> tuple[str, str]:
    """Apply the gates.

    Parameters
    ----------
    measures : dict
        The frame's statistics (:func:`frame_measures`).
    q : skylake.profile.Quality
        The profile's quality limits.

    Returns
    -------
    status : str
        ``"ok"``, or the first failed gate's status (``few_sources``, ``trailed``, ``elongated``,
        ``too_bright``, ``bad_background``).
    reason : str
        ``""``, or every failed gate's reason, joined by ``"; "``.
    """
    failed = []
    if measures["n_clean"] < q.min_sources:
        failed.append(("few_sources", f"{measures['n_clean']} clean sources < min_sources {q.min_sources}"))
    if measures["theta_kurtosis"] > q.max_theta_kurtosis:
        failed.append(("trailed", f"theta kurtosis {measures['theta_kurtosis']:.2f} > {q.max_theta_kurtosis}"))
    if measures["elongation_max"] > q.max_elongation:
        failed.append(("elongated", f"max elongation {measures['elongation_max']:.1f} > {q.max_elongation}"))
    if measures["flux_max_max"] > q.max_flux:
        failed.append(("too_bright", f"max flux_max {measures['flux_max_max']:.3g} > {q.max_flux:.3g}"))
    if measures["src_bkg_median"] < q.min_src_background:
        failed.append(
            ("bad_background", f"median source background {measures['src_bkg_median']:.1f} < {q.min_src_background}")
        )
    if measures["src_bkg_mad"] > q.max_src_background_mad:
        failed.append(
            ("bad_background", f"source background MAD {measures['src_bkg_mad']:.1f} > {q.max_src_background_mad}")
        )
    if not failed:
        return "ok", ""
    return failed[0][0], "; ".join(reason for _, reason in failed)


def _kurtosis(values, fisher: bool = True) -> float:
    """``scipy.stats.kurtosis(values, fisher=fisher)`` (biased, in the values' float type), the same operations
    in the same order, so the same bits: scipy.stats costs ~0.6 s to import, paid by every process that
    measures a frame (each ingest command, each worker). NaN for values all (nearly) equal, as scipy."""
    a = np.asarray(values)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    mean = a.mean()
    d = a - mean
    m2 = np.mean(d**2)
    m4 = np.mean((d**2) ** 2)
    with np.errstate(all="ignore"):
        k = np.nan if m2 <= (np.finfo(m2.dtype).eps * mean) ** 2 else m4 / m2**2.0
    return k - 3 if fisher else k
