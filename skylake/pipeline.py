"""The chain ``skylake ingest`` runs: ingest the frames (:mod:`skylake.ingest`), then calibrate the nights
they fall in (:mod:`skylake.calib`), solve their ensembles (:mod:`skylake.ensemble`) and build the
registry's night products (:mod:`skylake.night_products`), on one cluster. Each stage commits on its own; a
calibration lost to a crash is redone by ``skylake calibrate``. The stages themselves do not know about each other.

Every stage has the same shape: a config (its profile section), the selection of its inputs (reading only
what changed), a run of pure functions returning schema-conforming tables (dask tasks on a cluster), and
one commit of the lake's log. Where each step lives:

=============  ==========================  ==============================  =============================
stage          inputs                      run (pure, per task)            commit
=============  ==========================  ==============================  =============================
ingest         ``ingest._plan`` (frame     ``frame.process.process_file``  ``ingest.commit_batch``
               index: what is new)         and each frame product's
                                           ``run(record, sources)``
calibrate      ``calib.pairs.BatchPairs.   ``calib.pairs.fit_group``       ``calib.calibrate.
               match`` (held by the        where the pairs are;            _commit_batch``; its
               workers per frame group)    ``calib.calibrate._run_batch``  writers, ``calib.pairs.
                                           (batch-wide steps)              write_matches``
maps           ``maps.build._map_inputs``  ``write_samples``,              ``maps.store.store_maps``
                                           ``reduce_pixels``
ensemble       ``ensemble.stage._eligible``  ``ensemble.stage.solve_field``  ``ensemble.stage._commit``
               (nights whose frames or     (per night and field: solve,
               zeropoints changed)         EPD, TFA)
objects        ``objects.build._plan``,    ``objects.build.                ``objects.build._commit``
               ``_select_partitions``      build_partition``
refresh        the log since the           ``night_summary``, trends       one database transaction
               database's watermark
=============  ==========================  ==============================  =============================

Tables are named and stored through :mod:`skylake.lake.tables`; the photometric rules the stages share
(the latest calibration of a frame, statuses, zeropoint arithmetic) are in :mod:`skylake.calib.model`.
"""

from __future__ import annotations

from skylake.ingest import IngestReport, ingest_frames


def downstream(lake, profile, files, client, nights) -> list:
    """Calibrate the ingested frames ``files`` (those not yet calibrated), solve their nights' ensembles and
    build their night products, each only where missing: the stages' reports. ``nights`` (None: unknown)
    limits what is read."""
    from skylake.calib.calibrate import calibrate_ingested
    from skylake.ensemble.stage import ensemble_calibrated
    from skylake.night_products import night_products_after

    reports = calibrate_ingested(lake, profile, files, client, nights=nights)
    if reports:
        reports += ensemble_calibrated(lake, profile, client, nights=nights)
    return reports + night_products_after(lake, client, nights=nights)


def ingest(lake, paths: list[str], profile="generic", *, calibrate: bool = True, **kwargs) -> IngestReport:
    """Ingest ``paths`` into ``lake`` with ``profile`` (:func:`skylake.ingest.ingest_frames`, whose keyword
    arguments it takes), then, with ``calibrate``, calibrate the new frames' nights against the profile's
    reference catalogue when the lake holds it (the report's ``calibration``)."""
    return ingest_frames(lake, paths, profile, downstream=downstream if calibrate else None, **kwargs)
