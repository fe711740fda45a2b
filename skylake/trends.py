"""Long-term throughput trends, as LCO's longtermphotzp does them, as pure functions on small per-night tables.

The method is LCO's longtermphotzp (../shared/research/seed-pipelines.md §4).

1. Each ok zeropoint is corrected to airmass 1 with the night's fitted extinction (else DEFAULT_K_EXT):
   ``zp1 = zp + k_ext * (airmass - 1)`` (zp = zp_airmass0 - k_ext * airmass, see schemas/extinction.yaml).
2. A night's throughput is the upper envelope of its zp1 (90th percentile: clouds only remove light,
   so the clearest frames measure the telescope). The night is photometric when at least
   PHOTOMETRIC_MIN_FRACTION of its ok frames lie within PHOTOMETRIC_TOLERANCE of the envelope.
3. Maintenance events (mirror cleanings, given as data) cut time into segments; in each, a robust
   line through the photometric nights' envelopes gives the throughput and its trend in mag/yr, and
   a line through their median colour terms the colour-term trend.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skylake.robust import MAD_TO_SIGMA

__all__ = [
    "DEFAULT_K_EXT",
    "PHOTOMETRIC_TOLERANCE",
    "PHOTOMETRIC_MIN_FRACTION",
    "PHOTOMETRIC_MIN_FRAMES",
    "ENVELOPE_PERCENTILE",
    "DAYS_PER_YEAR",
    "MJD_UNIX_EPOCH",
    "airmass_corrected",
    "night_envelope",
    "photometric_fraction",
    "is_photometric",
    "clear_fraction",
    "CLEAR_CLOUD_FRACTION",
    "robust_line",
    "Event",
    "read_events",
    "fit_segments",
]


#: Extinction [mag/airmass] when a night has no fit of its own (typical of V at a good site).
DEFAULT_K_EXT = 0.15
#: An ok zeropoint within this of the night's envelope counts as photometric [mag].
PHOTOMETRIC_TOLERANCE = 0.1
#: A night is photometric when this fraction of its ok frames is within the tolerance ...
PHOTOMETRIC_MIN_FRACTION = 0.8
#: ... and at least this many frames have a zeropoint.
PHOTOMETRIC_MIN_FRAMES = 3
#: An all-sky frame whose cloud fraction is at most this saw a clear sky (a night of such frames is photometric).
CLEAR_CLOUD_FRACTION = 0.1
#: Envelope percentile of the night's airmass-corrected zeropoints.
ENVELOPE_PERCENTILE = 90.0
DAYS_PER_YEAR = 365.25
MJD_UNIX_EPOCH = 40587.0


def airmass_corrected(zp, airmass, k_ext):
    """Zeropoints corrected to airmass 1 [mag]; frames without an airmass keep their zeropoint.

    ``zp1 = zp + k_ext * (airmass - 1)``.

    Parameters
    ----------
    zp : array_like
        The frames' zeropoints [mag].
    airmass : array_like
        The frames' airmasses (NaN: unknown).
    k_ext : float or array_like
        The extinction [mag/airmass].

    Returns
    -------
    numpy.ndarray
        The zeropoints at airmass 1 [mag].
    """
    zp, airmass = np.asarray(zp, dtype=float), np.asarray(airmass, dtype=float)
    return np.where(np.isfinite(airmass), zp + k_ext * (airmass - 1.0), zp)


def night_envelope(zp1) -> float | None:
    """Upper envelope of a night's airmass-corrected zeropoints (None without any).

    Parameters
    ----------
    zp1 : array_like
        The night's airmass-corrected zeropoints [mag]; those not finite are left out.

    Returns
    -------
    float or None
        Their :data:`ENVELOPE_PERCENTILE` percentile [mag], or None without any finite one.
    """
    zp1 = np.asarray(zp1, dtype=float)
    zp1 = zp1[np.isfinite(zp1)]
    return float(np.percentile(zp1, ENVELOPE_PERCENTILE)) if len(zp1) else None


def photometric_fraction(zp1, n_ok: int) -> float | None:
    """Fraction of the night's ok frames whose zp1 is within PHOTOMETRIC_TOLERANCE of the envelope.

    Parameters
    ----------
    zp1 : array_like
        The night's airmass-corrected zeropoints [mag].
    n_ok : int
        The night's ok frames (the fraction's denominator; at least 1 is used).

    Returns
    -------
    float or None
        The fraction, or None when the night has no envelope.
    """
    envelope = night_envelope(zp1)
    if envelope is None:
        return None
    zp1 = np.asarray(zp1, dtype=float)
    return float(np.sum(zp1 >= envelope - PHOTOMETRIC_TOLERANCE) / max(n_ok, 1))


def is_photometric(fraction: float | None, n_calibrated: int, min_frames: int = PHOTOMETRIC_MIN_FRAMES) -> bool:
    """Whether a night is photometric.

    Parameters
    ----------
    fraction : float or None
        The night's :func:`photometric_fraction`.
    n_calibrated : int
        The night's frames with a zeropoint (or, for an all-sky camera, with a cloud fraction).
    min_frames : int, default PHOTOMETRIC_MIN_FRAMES
        The fewest such frames (1 for all-sky frames: each sees the whole sky).

    Returns
    -------
    bool
        The fraction is at least :data:`PHOTOMETRIC_MIN_FRACTION` and at least ``min_frames`` frames have a
        zeropoint.
    """
    return fraction is not None and fraction >= PHOTOMETRIC_MIN_FRACTION and n_calibrated >= min_frames


def clear_fraction(cloud_fractions, n_ok: int) -> float | None:
    """Fraction of the night's ok frames that saw a clear sky: an all-sky camera's photometric fraction.

    An all-sky frame sees the whole sky, so its cloud fraction says at once whether the sky was clear; a
    night is then photometric (:func:`is_photometric`, counting the frames with a cloud fraction) without a
    catalogue calibration.

    Parameters
    ----------
    cloud_fractions : array_like
        The night's ok frames' cloud fractions (NaN: none measured).
    n_ok : int
        The night's ok frames (the fraction's denominator; at least 1 is used).

    Returns
    -------
    float or None
        The fraction of frames with a cloud fraction at most :data:`CLEAR_CLOUD_FRACTION`, or None when no
        frame has a cloud fraction.
    """
    cf = np.asarray(cloud_fractions, dtype=float)
    cf = cf[np.isfinite(cf)]
    if not len(cf):
        return None
    return float(np.sum(cf <= CLEAR_CLOUD_FRACTION) / max(n_ok, 1))


def robust_line(t, y, clip: float = 3.0, iterations: int = 3) -> tuple[float, float, float, np.ndarray]:
    """Least-squares line ``y = a + b t`` with ``clip``-sigma rejection (sigma from the MAD), repeated.

    With one point (or a single ``t``), b = 0 and a is the median; with none, NaNs. The clipping stops
    when the kept points no longer change or fewer than two would be kept; sigma is at least 1e-3.

    Parameters
    ----------
    t : array_like
        The abscissae; points where ``t`` or ``y`` is not finite are left out.
    y : array_like
        The ordinates.
    clip : float
        Points further from the line than this many sigmas are rejected.
    iterations : int
        The most fits.

    Returns
    -------
    a : float
        The intercept.
    b : float
        The slope.
    rms : float
        The rms of the kept points about the line.
    keep : numpy.ndarray
        Mask of the kept points.
    """
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(t) & np.isfinite(y)
    if keep.sum() == 0:
        return np.nan, np.nan, np.nan, keep
    if keep.sum() == 1 or np.ptp(t[keep]) == 0:
        a = float(np.median(y[keep]))
        return a, 0.0, float(np.std(y[keep])), keep
    a = b = np.nan
    for _ in range(iterations):
        b, a = np.polyfit(t[keep], y[keep], 1)
        resid = y - (a + b * t)
        sigma = MAD_TO_SIGMA * np.median(np.abs(resid[keep] - np.median(resid[keep])))
        new = np.isfinite(resid) & (np.abs(resid) <= clip * max(sigma, 1e-3))
        if new.sum() < 2 or np.array_equal(new, keep):
            break
        keep = new
    resid = y[keep] - (a + b * t[keep])
    return float(a), float(b), float(np.sqrt(np.mean(resid**2))), keep


@dataclass(frozen=True)
class Event:
    """A maintenance event: ``instrument`` '' applies to every instrument.

    Attributes
    ----------
    instrument : str
        The instrument ('' for every instrument).
    date : datetime.date
        The day of the event.
    kind : str
        What was done, e.g. ``mirror_cleaning``.
    note : str
        A free note.
    """

    instrument: str
    date: dt.date
    kind: str
    note: str = ""

    @property
    def mjd(self) -> float:
        """The MJD of the event: the start (00:00 UTC) of its date.

        Returns
        -------
        float
            The MJD.
        """
        return dt.datetime.combine(self.date, dt.time()).replace(tzinfo=dt.UTC).timestamp() / 86400.0 + MJD_UNIX_EPOCH


def read_events(path: str | Path) -> list[Event]:
    """Maintenance events from a CSV file with header ``date,instrument,kind,note``.

    The date is YYYY-MM-DD; the instrument is empty for all. The columns date and kind are required.

    Parameters
    ----------
    path : str or pathlib.Path
        The CSV file.

    Returns
    -------
    list of Event
        The events, in the file's order.

    Raises
    ------
    ValueError
        Naming the file, line and bad value (a missing column, a date that is not YYYY-MM-DD, an empty
        kind).
    """
    events = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"date", "kind"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: events file needs columns date,instrument,kind,note; missing {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                date = dt.date.fromisoformat((row["date"] or "").strip())
            except ValueError:
                raise ValueError(f"{path}:{line}: date {row['date']!r} is not YYYY-MM-DD") from None
            kind = (row.get("kind") or "").strip()
            if not kind:
                raise ValueError(f"{path}:{line}: an event needs a kind (e.g. mirror_cleaning)")
            events.append(Event((row.get("instrument") or "").strip(), date, kind, (row.get("note") or "").strip()))
    return events


def fit_segments(night_mjd, envelope, color_term, photometric, events: list[Event]) -> list[dict]:
    """Trend segments of one instrument and filter.

    ``night_mjd``, ``envelope`` (zp_airmass1_max), ``color_term`` (median per night) and
    ``photometric`` (bool) are per-night arrays; ``events`` are this instrument's. Each event starts a
    segment; the lines are fitted to the photometric nights with an envelope (:func:`robust_line`).

    Parameters
    ----------
    night_mjd : array_like
        The nights' MJDs.
    envelope : array_like
        The nights' envelopes (zp_airmass1_max) [mag].
    color_term : array_like
        The nights' median colour terms.
    photometric : array_like of bool
        Whether each night is photometric.
    events : list of Event
        This instrument's maintenance events.

    Returns
    -------
    list of dict
        One dict per segment holding at least one photometric night: segment, start_mjd (the event's, or
        the first such night's), end_mjd (the next event's, or the last such night's), start_event,
        n_nights, zp_start, slope_mag_per_year, rms, color_term_median, color_term_slope_per_year.
    """
    mjd = np.asarray(night_mjd, dtype=float)
    env = np.asarray(envelope, dtype=float)
    ct = np.asarray(color_term, dtype=float)
    phot = np.asarray(photometric, dtype=bool) & np.isfinite(env)
    if not len(mjd):
        return []
    cuts = sorted(events, key=lambda e: e.mjd)
    edges = [(-np.inf, None)] + [(e.mjd, e) for e in cuts] + [(np.inf, None)]
    out = []
    for (start, event), (end, _) in zip(edges[:-1], edges[1:]):
        inside = phot & (mjd >= start) & (mjd < end)
        if not inside.any():
            continue
        t0 = start if np.isfinite(start) else float(mjd[inside].min())
        years = (mjd[inside] - t0) / DAYS_PER_YEAR
        a, b, rms, _ = robust_line(years, env[inside])
        cts = ct[inside]
        ca, cb, _, _ = robust_line(years, cts) if np.isfinite(cts).sum() >= 2 else (np.nan, np.nan, np.nan, None)
        out.append(
            {
                "segment": len(out),
                "start_mjd": t0,
                "end_mjd": float(end) if np.isfinite(end) else float(mjd[inside].max()),
                "start_event": f"{event.date} {event.kind}" if event else "",
                "n_nights": int(inside.sum()),
                "zp_start": a,
                "slope_mag_per_year": b,
                "rms": rms,
                "color_term_median": float(np.nanmedian(cts)) if np.isfinite(cts).any() else None,
                "color_term_slope_per_year": None if not np.isfinite(cb) else float(cb),
            }
        )
    return out
