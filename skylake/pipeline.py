"""The chain ``skylake ingest`` runs: ingest the frames, then the stages downstream, on one cluster.

It ingests the frames (:mod:`skylake.ingest`), then calibrates the nights they fall in
(:mod:`skylake.calib`) and builds the registry's night products of those nights
(:mod:`skylake.night_products`: the ensembles of :mod:`skylake.ensemble`, and the maps of :mod:`skylake.maps` a
night already has), and with a profile's ``[dia]`` subtracts each frame's reference (:mod:`skylake.dia`), on
one cluster. Each stage commits on its own; a calibration lost to a crash is redone by
``skylake calibrate``. The stages themselves do not know about each other.

Every stage has the same shape: a config (its profile section), the selection of its inputs (reading only
what changed), a run of pure functions returning schema-conforming tables (dask tasks on a cluster), and
one commit of the lake's log. Where each step lives:

=============  ==========================  ==============================  =============================
stage          inputs                      run (pure, per task)            commit
=============  ==========================  ==============================  =============================
ingest         ``ingest._plan`` (frame     ``tasks.frame.process_file``   ``ingest.commit_batch``
               index: what is new)         and each frame product's
                                           ``run(record, sources)``
calibrate      ``calib.pairs.BatchPairs.   ``calib.pairs.fit_group``       ``calib.calibrate.
               match`` (held by the        where the pairs are;            _commit_batch``; its
               workers per frame group)    ``calib.calibrate._run_batch``  writers, ``calib.pairs.
                                           (batch-wide steps)              write_matches``
maps           ``maps.build._map_inputs``  ``write_samples``,              ``maps.store.store_maps``
                                           ``reduce_pixels``
ensemble       ``night_products.night_plan``  ``ensemble.stage.solve_field``  ``ensemble.stage._commit``
               (nights whose frames or     (per night and field: solve,
               zeropoints changed),        EPD, TFA)
               ``ensemble.stage._eligible``
objects        ``objects.build._plan``,    ``objects.build.                ``objects.build._commit``
               ``_select_partitions``      build_partition``
dia            ``dia.stage.run_dia`` (the  ``dia.stage.difference_frame``  ``dia.stage._stage``
               frames not subtracted       (per frame: subtract, detect,
               against their reference)    measure the objects)
refresh        the log since the           ``night_summary``, trends       one database transaction
               database's watermark
=============  ==========================  ==============================  =============================

Tables are named and stored through :mod:`skylake.lake.tables`; the photometric rules the stages share
(the latest calibration of a frame, statuses, zeropoint arithmetic) are in :mod:`skylake.calib.model`.
"""

from __future__ import annotations

from skylake.ingest import DownstreamReports, IngestReport, ingest_frames

__all__ = ["downstream", "ingest"]


def downstream(lake, profile, files, client, nights) -> list:
    """Run the stages after an ingest: calibrate, build the night products (the ensembles among them), subtract.

    Calibrate the ingested frames ``files`` (those not yet calibrated), build their nights' night products
    (:func:`skylake.night_products.night_products_after`: the ensembles, the maps a night has, each only where
    missing or stale); with the profile's ``[dia]``, build the references its pointings lack and subtract the
    nights' frames. A stage's failure is logged, never raised.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    profile : skylake.profile.Profile
        The profile the frames were ingested with.
    files : list of str
        The files ingested.
    client : distributed.Client or None
        The ingest's cluster (None: this process).
    nights : iterable of str or None
        The frames' nights; limits what is read (None: unknown).

    Returns
    -------
    skylake.ingest.DownstreamReports
        The stages' reports: the calibrations', the night products' (the ensembles'), the differences'.
    """
    from skylake.calib.calibrate import calibrate_ingested
    from skylake.dia.stage import dia_after
    from skylake.night_products import night_products_after

    reports = DownstreamReports(calibrations=calibrate_ingested(lake, profile, files, client, nights=nights))
    reports.night_products = night_products_after(lake, client, nights=nights)
    reports.dia = dia_after(lake, profile, client, nights=nights)  # with the profile's [dia] on
    return reports


def ingest(lake, paths: list[str], profile="generic", *, calibrate: bool = True, **kwargs) -> IngestReport:
    """Ingest ``paths`` into ``lake`` with ``profile``, then, with ``calibrate``, run the stages downstream.

    The ingest is :func:`skylake.ingest.ingest_frames`, whose keyword arguments it takes. With
    ``calibrate``, the new frames' nights are calibrated against the profile's reference catalogue when the
    lake holds it, and their night products (the ensembles among them) follow (:func:`downstream`).

    Parameters
    ----------
    lake : skylake.lake.Lake or str
        The lake, or its location.
    paths : list of str
        Files, directories (searched recursively) and glob patterns.
    profile : skylake.profile.Profile or str
        The instrument profile, or its name or file.
    calibrate : bool
        Run the stages downstream of the ingest.
    **kwargs
        Keyword arguments of :func:`skylake.ingest.ingest_frames` (``client``, ``redo``, ...).

    Returns
    -------
    skylake.ingest.IngestReport
        What the ingest did; the stages' reports are its ``downstream``.
    """
    return ingest_frames(lake, paths, profile, downstream=downstream if calibrate else None, **kwargs)
