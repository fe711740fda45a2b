"""The chain ``skylake ingest`` runs: ingest the frames (:mod:`skylake.ingest`), then calibrate the nights
they fall in (:mod:`skylake.calib`), on one cluster. Each stage commits on its own; a calibration lost to
a crash is redone by ``skylake calibrate``. The stages themselves do not know about each other.
"""

from __future__ import annotations

from skylake.ingest import IngestReport, ingest_frames


def _calibrate(lake, profile, files, client, nights) -> list:
    from skylake.calib.calibrate import calibrate_ingested

    return calibrate_ingested(lake, profile, files, client, nights=nights)


def ingest(lake, paths: list[str], profile="generic", calibrate: bool = True, **kwargs) -> IngestReport:
    """Ingest ``paths`` into ``lake`` with ``profile`` (:func:`skylake.ingest.ingest_frames`, whose keyword
    arguments it takes), then, with ``calibrate``, calibrate the new frames' nights against the profile's
    reference catalogue when the lake holds it (the report's ``calibration``)."""
    return ingest_frames(lake, paths, profile, downstream=_calibrate if calibrate else None, **kwargs)
