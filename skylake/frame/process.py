"""Process one file into frame records and source columns: the unit of work of a dask task.

``process_file`` never raises for a bad frame: every problem becomes a record with
``status='rejected'`` and a reason, so one corrupt file never stops a batch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from skylake.errors import FrameRejected
from skylake.frame import astrometry, extract, header, quality, reading
from skylake.profile import Profile

log = logging.getLogger(__name__)

#: source_id = frame_id * SOURCES_PER_FRAME + detection number.
SOURCES_PER_FRAME = 2**20


@dataclass
class FrameResult:
    """What one frame (one HDU of one file) produced, before ids are allocated at commit."""

    record: dict  # frames columns, less frame_id, batch_id, ingested_at
    sources: dict[str, np.ndarray] = field(default_factory=dict)  # sources columns, less source_id, frame_id

    @property
    def frame_key(self) -> str:
        return self.record["frame_key"]

    @property
    def n_sources(self) -> int:
        return int(self.record["n_sources"])


def frame_key(content_hash: str, hdu: int, profile: Profile) -> str:
    """A frame's identity: its bytes, which HDU, and the exact processing (profile + pipeline version)."""
    return hashlib.sha256(f"{content_hash}|{hdu}|{profile.pipeline_version}".encode()).hexdigest()


def _base_record(path: str, raw_hash: str, size: int, hdu: int, profile: Profile) -> dict:
    return {
        "frame_key": frame_key(raw_hash, hdu, profile),
        "path": path,
        "hdu": hdu,
        "content_hash": raw_hash,
        "file_size": size,
        "profile": profile.name,
        "pipeline_version": profile.pipeline_version,
        "status": "rejected",
        "reason": "",
        "extract_note": "",
        "n_sources": 0,
        "night": None,
    }


def _process_image(image: reading.Image, rec: dict, profile: Profile) -> dict[str, np.ndarray]:
    rec.update(header.frame_record(image.header, profile))
    wcs = astrometry.celestial_wcs(image.header)
    ny, nx = image.data.shape
    rec.update(nx=nx, ny=ny, **astrometry.footprint(wcs, nx, ny))
    if rec["airmass"] is None and rec["altitude"] is None and profile.site.name != "unknown":
        rec["airmass"], rec["altitude"], rec["azimuth"] = header.airmass_from_pointing(
            rec["ra_center"], rec["dec_center"], rec["mjd"], profile.site)
    ext = extract.extract(image.data, profile.detection)
    rec.update(bkg_median=ext.globalback, bkg_rms=ext.globalrms, extract_note=ext.note)
    if len(ext.objects) >= SOURCES_PER_FRAME:
        raise FrameRejected(f"{len(ext.objects)} detections exceed the {SOURCES_PER_FRAME} a frame can hold")
    cols = extract.measure(image.data, ext, profile.photometry, gain=rec["gain"])
    ra, dec = astrometry.pixel_to_sky(wcs, cols["x"], cols["y"])
    good = np.isfinite(ra) & np.isfinite(dec)
    if not good.all():
        rec["extract_note"] = "; ".join(filter(None, [rec["extract_note"],
                                                      f"{int((~good).sum())} detections off the WCS dropped"]))
        cols = {k: v[good] for k, v in cols.items()}
        ra, dec = ra[good], dec[good]
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = cols["flux_auto"]
        cols["inst_mag"] = np.where(flux > 0, -2.5 * np.log10(flux / rec["exptime"]), np.nan)
        cols["inst_mag_err"] = np.where(flux > 0, 1.0857362 * cols["flux_auto_err"] / flux, np.nan)
    cols.update(ra=ra, dec=dec, _healpix_29=astrometry.healpix29(ra, dec), mjd=np.full(len(ra), rec["mjd"]))
    measures = quality.frame_measures(cols)
    rec["status"], rec["reason"] = quality.judge(measures, profile.quality)
    rec.update({k: v for k, v in measures.items() if k != "n_clean"})
    rec["n_sources"] = len(ra)
    return cols


def process_file(path: str, profile: Profile, raw: bytes | None = None,
                 known_hash: str | None = None) -> list[FrameResult]:
    """Read, extract, measure and place on the sky every image the profile selects from ``path``.

    ``known_hash`` is the file's sha256 when the caller has just computed it (saves a second pass).
    Returns one :class:`FrameResult` per image (one for a file that cannot be read at all).
    """
    t0 = time.perf_counter()
    try:
        raw = reading.read_bytes(path) if raw is None else raw
    except OSError as exc:
        rec = _base_record(path, "", 0, 0, profile)
        rec["frame_key"] = hashlib.sha256(f"unreadable|{path}|{profile.pipeline_version}".encode()).hexdigest()
        rec["reason"] = f"cannot read file: {exc}"
        return [FrameResult(rec)]
    raw_hash, size = known_hash or reading.content_hash(raw), len(raw)
    try:
        images = reading.read_images(raw, profile.hdu)
    except FrameRejected as exc:
        rec = _base_record(path, raw_hash, size, 0, profile)
        rec["reason"] = exc.reason
        return [FrameResult(rec)]
    del raw
    results = []
    for image in images:
        rec = _base_record(path, raw_hash, size, image.hdu, profile)
        try:
            cols = _process_image(image, rec, profile)
        except FrameRejected as exc:
            rec.update(status="rejected", reason=exc.reason, n_sources=0)
            cols = {}
        except Exception as exc:  # an unexpected failure must not stop the batch; record it loudly
            log.exception("unexpected error processing %s HDU %d", path, image.hdu)
            rec.update(status="rejected", reason=f"internal error: {type(exc).__name__}: {exc}", n_sources=0)
            cols = {}
        rec["processing_s"] = time.perf_counter() - t0
        results.append(FrameResult(rec, cols))
    return results
