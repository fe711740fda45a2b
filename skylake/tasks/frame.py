"""Process one file into frame records and source columns: the unit of work of a dask task.

``process_file`` never raises for a bad file: reading and every per-frame step run inside one guard,
and every problem becomes a record with ``status='rejected'`` and a specific reason, so one corrupt
file never stops a batch. Expected problems (:class:`FrameRejected`) are not logged (the ingest report
lists them); an unexpected failure is logged as one WARNING line, with its traceback only at DEBUG.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field

import numpy as np

from skylake.errors import FrameRejected
from skylake.frame import astrometry, extract, header, quality, reading
from skylake.lake import tables
from skylake.paths import stored_path
from skylake.profile import Profile

__all__ = [
    "SOURCES_PER_FRAME",
    "FrameResult",
    "frame_key",
    "rejected_result",
    "process_file",
    "night_from_path",
    "frame_night",
]


log = logging.getLogger(__name__)

#: source_id = frame_id * SOURCES_PER_FRAME + detection number.
SOURCES_PER_FRAME = 2**20


@dataclass
class FrameResult:
    """What one frame (one HDU of one file) produced, before ids are allocated at commit.

    Attributes
    ----------
    record : dict
        The frames columns, less ``frame_id``, ``batch_id``, ``ingested_at``.
    sources : dict of numpy arrays
        The sources columns, less ``source_id``, ``frame_id``.
    piece : str or None
        Where a frame task wrote ``sources`` (lake-relative; :mod:`skylake.lake.pieces`), then emptied.
    pixels : object
        The piece's rows per pixel at the lake's partition order.
    piece_bytes : int
        The piece's size, bytes.
    extras : dict
        Small per-frame tables committed beside the frame row (all-sky frames: ``streaks`` and ``maps``
        rows, :mod:`skylake.tasks.allsky`; staged by :mod:`skylake.allsky.store`), and frame products.
    """

    record: dict  # frames columns, less frame_id, batch_id, ingested_at
    sources: dict[str, np.ndarray] = field(default_factory=dict)  # sources columns, less source_id, frame_id
    #: Where a frame task wrote ``sources`` (lake-relative; :mod:`skylake.lake.pieces`), then emptied, and
    #: their rows per pixel at the lake's partition order.
    piece: str | None = None
    pixels: object = None
    piece_bytes: int = 0
    #: Small per-frame tables committed beside the frame row (all-sky frames: ``streaks`` and ``maps``
    #: rows, :mod:`skylake.tasks.allsky`; staged by :mod:`skylake.allsky.store`).
    extras: dict = field(default_factory=dict)

    @property
    def frame_key(self) -> str:
        """The frame's identity (:func:`frame_key`).

        Returns
        -------
        key : str
            The record's ``frame_key``.
        """
        return self.record["frame_key"]

    @property
    def n_sources(self) -> int:
        """The number of the frame's sources.

        Returns
        -------
        n : int
            The record's ``n_sources``.
        """
        return int(self.record["n_sources"])


def frame_key(content_hash: str, hdu: int, profile: Profile) -> str:
    """Compute a frame's identity: its bytes, which HDU, and the exact processing (profile + pipeline version).

    Parameters
    ----------
    content_hash : str
        The sha256 of the file's bytes.
    hdu : int
        The image's HDU index.
    profile : Profile
        The profile (its ``pipeline_version``).

    Returns
    -------
    key : str
        The hex sha256 of the three.
    """
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


def _path_record(kind: str, path: str, profile: Profile, reason: str) -> dict:
    """A rejected record identified by its path (its bytes could not be read, or its name not stored),
    so that the file fixed or renamed is tried again."""
    rec = _base_record(path, "", 0, 0, profile)
    rec["frame_key"] = hashlib.sha256(f"{kind}|{path}|{profile.pipeline_version}".encode()).hexdigest()
    rec["reason"] = reason
    return rec


def rejected_result(path: str, profile: Profile, kind: str, reason: str) -> FrameResult:
    """Make a rejected frame for a file that could not be processed at all (e.g. its worker died).

    The frame is identified by its path and ``kind``, so a later ingest tries it again.

    Parameters
    ----------
    path : str
        The file's path (stored with undecodable bytes escaped).
    profile : Profile
        The instrument profile.
    kind : str
        What happened, part of the frame's identity.
    reason : str
        The frame's rejection reason.

    Returns
    -------
    result : FrameResult
        The rejected frame, without sources.
    """
    return FrameResult(_path_record(kind, stored_path(path), profile, reason))


def _unexpected(exc: BaseException, where: str) -> str:
    """The reason for a failure no check foresaw; logged once, the traceback only at DEBUG."""
    if isinstance(exc, MemoryError):
        reason = "out of memory processing this file (MemoryError)"
    else:
        reason = f"internal error: {type(exc).__name__}: {exc}"
    log.warning("%s rejected: %s", where, reason)
    log.debug("traceback of the failure on %s", where, exc_info=exc)
    return reason


def _process_image(
    image: reading.Image, rec: dict, profile: Profile, lake_root: str | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    from skylake.reduce.apply import check_frame_type
    from skylake.reduce.frame_types import COADD_KEY, FRAMES_KEY

    check_frame_type(image.header, profile)
    rec.update(header.frame_record(image.header, profile, image.file_max))
    saturation_from = rec.pop("saturation_from")
    saturation_note = rec.pop("saturation_note")
    reduced = None
    if image.header.get(COADD_KEY):  # a coadd (skylake.reduce.coadd): made from reduced frames
        rec["coadd_of"] = str(image.header.get(FRAMES_KEY, ""))
    elif profile.reduction is not None:  # raw frames: masters, bad pixels, cosmic rays (skylake.reduce)
        from skylake.reduce.apply import reduce_frame

        reduced = reduce_frame(image, rec, profile, lake_root)
    if profile.is_allsky:  # placed by the [camera] model, never by a header WCS
        from skylake.tasks.allsky import catalog_source, process_allsky

        return process_allsky(image, rec, profile, catalog_source(profile, lake_root), lake_root)
    position_from, solve_note = "wcs", ""
    if profile.platesolve is not None:  # frames without a (trusted) WCS are solved, or rejected with the reason
        from skylake.frame.platesolve import solve_for_ingest

        solved, provenance, solve_note = solve_for_ingest(image.data, image.header, profile, lake_root, rec["mjd"])
        rec.update(provenance)
        if solved is not None:
            image.header, position_from = solved, "platesolve"
    wcs = astrometry.celestial_wcs(image.header)
    rec.setdefault("wcs_source", "header")
    rec.setdefault("wcs_method", "header")
    ny, nx = image.data.shape
    astrometry.check_wcs(wcs, image.header, nx, ny, profile.astrometry)
    rec.update(nx=nx, ny=ny, **astrometry.footprint(wcs, nx, ny))
    if rec["airmass"] is None and rec["altitude"] is None and profile.site.name != "unknown":
        rec["airmass"], rec["altitude"], rec["azimuth"] = header.airmass_from_pointing(
            rec["ra_center"], rec["dec_center"], rec["mjd"], profile.site
        )
    ext = extract.extract(
        image.data,
        profile.detection,
        saturation=rec["saturation"],
        saturation_from=saturation_from,
        saturated=reduced.saturated if reduced is not None else None,
    )
    rec.update(
        bkg_median=ext.globalback,
        bkg_rms=ext.globalrms,
        extract_note="; ".join(filter(None, [saturation_note, solve_note, ext.note])),
    )
    if len(ext.objects) >= SOURCES_PER_FRAME:
        raise FrameRejected(f"{len(ext.objects)} detections exceed the {SOURCES_PER_FRAME} a frame can hold")
    cols = extract.measure(image.data, ext, profile.photometry, gain=rec["gain"])
    if reduced is not None and reduced.cosmics is not None:
        from skylake.reduce.apply import cosmic_ray_flags

        hit = cosmic_ray_flags(reduced.cosmics, cols["x"], cols["y"], max(profile.photometry.aperture_radii))
        cols["flags"] = cols["flags"] | np.where(hit, extract.COSMIC_RAY, 0).astype(np.int32)
    ra, dec = astrometry.pixel_to_sky(wcs, cols["x"], cols["y"])
    good = np.isfinite(ra) & np.isfinite(dec)
    if not good.all():
        rec["extract_note"] = "; ".join(
            filter(None, [rec["extract_note"], f"{int((~good).sum())} detections off the WCS dropped"])
        )
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
    from skylake.tasks.allsky import wcs_provenance

    return wcs_provenance(cols, position_from), {}


def _frame_products(rec: dict, cols: dict[str, np.ndarray]) -> dict:
    """The rows of every frame product (a schema with ``stage:``, :mod:`skylake.lake.tables`) for this
    frame, checked against the product's schema (less ``frame_id``). A product that raises, or returns
    rows that do not fit its schema, leaves the frame and its sources as they are: the frame's
    ``extract_note`` names the product and the error, and ``ingest --redo`` makes its rows once fixed."""
    import pyarrow as pa

    out = {}
    for table in tables.frame_products():
        schema = pa.schema([f for f in table.schema if f.name != "frame_id"])
        try:
            rows = table.stage_module().run(rec, cols)
            if not isinstance(rows, pa.Table):
                raise TypeError(f"run returned {type(rows).__name__}, not a pyarrow Table")
            if sorted(rows.column_names) != sorted(schema.names):
                raise ValueError(
                    f"columns {sorted(rows.column_names)} do not fit schemas/{table.name}.yaml "
                    f"(less frame_id): {sorted(schema.names)}"
                )
            out[table.name] = rows.select(schema.names).cast(schema)
        except Exception as exc:  # noqa: BLE001 - a diagnostic's failure must not cost the frame
            note = f"frame product {table.name} ({table.producer}) failed: {type(exc).__name__}: {exc}"
            log.warning("%s: %s", rec.get("path"), note)
            rec["extract_note"] = "; ".join(filter(None, [rec.get("extract_note"), note]))
    return out


def process_file(
    path: str, profile: Profile, raw: bytes | None = None, known_hash: str | None = None, lake_root: str | None = None
) -> list[FrameResult]:
    """Read, extract, measure and place on the sky every image the profile selects from ``path``.

    Parameters
    ----------
    path : str
        A local path or fsspec URL.
    profile : Profile
        The instrument profile.
    raw : bytes, optional
        The file's bytes, when the caller has them.
    known_hash : str, optional
        The file's sha256 when the caller has just computed it (saves a second pass).
    lake_root : str, optional
        The lake's location, where an all-sky profile's bright-star refcat is read.

    Returns
    -------
    list of FrameResult
        One per image (one rejected record for a file that cannot be read at all). Never raises for
        anything about the file.
    """
    t0 = time.perf_counter()
    shown = stored_path(path)
    try:
        results = _process_file(path, shown, profile, raw, known_hash, lake_root)
    except Exception as exc:  # noqa: BLE001 - the one guard: one file must never stop a batch
        results = [FrameResult(_path_record("failed", shown, profile, _unexpected(exc, shown)))]
    for result in results:
        result.record.setdefault("processing_s", time.perf_counter() - t0)
    return results


def _process_file(
    path: str, shown: str, profile: Profile, raw: bytes | None, known_hash: str | None, lake_root: str | None = None
) -> list[FrameResult]:
    if shown != path:
        return [
            FrameResult(
                _path_record(
                    "name",
                    shown,
                    profile,
                    f"file name is not valid UTF-8 (stored here with the bytes backslash-"
                    f"escaped: {shown!r}); rename the file to ingest it",
                )
            )
        ]
    max_bytes = int(profile.max_image_mb * 1e6)
    try:
        raw = reading.read_bytes(path, max_bytes) if raw is None else raw
    except OSError as exc:
        return [FrameResult(_path_record("unreadable", path, profile, f"cannot read file: {exc}"))]
    except FrameRejected as exc:  # too large to read: identified by a hash streamed from the file
        raw_hash, size = reading.file_hash(path)
        rec = _base_record(path, raw_hash, size, 0, profile)
        rec["reason"] = exc.reason
        return [FrameResult(rec)]
    raw_hash, size = known_hash or reading.content_hash(raw), len(raw)
    try:
        images = reading.read_images(raw, profile.hdu, max_bytes)
    except FrameRejected as exc:
        rec = _base_record(path, raw_hash, size, 0, profile)
        rec["reason"] = exc.reason
        return [FrameResult(rec)]
    except Exception as exc:  # noqa: BLE001 - a failure while reading no check foresaw
        rec = _base_record(path, raw_hash, size, 0, profile)
        rec["reason"] = _unexpected(exc, path)
        return [FrameResult(rec)]
    del raw
    results = []
    t0 = time.perf_counter()
    for image in images:
        rec = _base_record(path, raw_hash, size, image.hdu, profile)
        extras: dict = {}
        try:
            cols, extras = _process_image(image, rec, profile, lake_root)
            extras.update(_frame_products(rec, cols))
        except FrameRejected as exc:
            rec.update(status="rejected", reason=exc.reason, n_sources=0)
            cols = {}
        except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the file or the batch
            rec.update(status="rejected", reason=_unexpected(exc, f"{path} HDU {image.hdu}"), n_sources=0)
            cols = {}
        rec.pop("saturation_from", None)
        rec.pop("saturation_note", None)
        rec["processing_s"] = time.perf_counter() - t0
        results.append(FrameResult(rec, cols, extras=extras if rec["status"] != "rejected" else {}))
    return results


# -- the night of a frame row ---------------------------------------------------------------------
_NAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)-?([01]\d)-?([0-3]\d)(?!\d)")


def night_from_path(path: str) -> str | None:
    """Find the night a file's name (or, failing that, its nearest directory) gives.

    E.g. ``z_e_20130610_210`` or ``2013-06-10/``. Used only for frames rejected before any time was read, so
    that they land in a real night's partition.

    Parameters
    ----------
    path : str
        The file's path.

    Returns
    -------
    night : str or None
        The date, ``YYYY-MM-DD``; None when no part of the path holds a valid date.
    """
    for part in reversed(str(path).replace("\\", "/").split("/")):
        for m in _NAME_DATE.finditer(part):
            try:
                return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
            except ValueError:
                continue
    return None


def frame_night(record: dict) -> str | None:
    """Give a frame row's night: from its time when known, else from its path (rejected frames only).

    Parameters
    ----------
    record : dict
        The frame row (``night``, ``path``).

    Returns
    -------
    night : str or None
        The night, ``YYYY-MM-DD``; None when neither gives one.
    """
    return record.get("night") or night_from_path(record.get("path") or "")
