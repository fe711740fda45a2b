"""``skylake objects build`` and ``skylake lightcurve``.

Wired into :mod:`skylake.cli` by ``add_commands(sub)``. Exit codes (:mod:`skylake.errors`): 0 success,
2 usage error (no such lake, a setting that needs ``--rebuild``, a bad cone), 4 ``lightcurve`` found no
object in the cone, 1 unexpected failure.
"""

from __future__ import annotations

from skylake.errors import EXIT_NOTHING, command

__all__ = ["add_commands"]


@command
def _cmd_build(args) -> int:
    from skylake.objects.build import build_objects

    options = dict(refcat=args.refcat, radius_arcsec=args.radius, rebuild=args.rebuild)
    if args.scheduler or args.workers:  # each touched partition a task on that cluster (as ingest takes it)
        from skylake.runtime import dask_client

        with dask_client(args.scheduler, args.workers) as client:
            print(build_objects(args.lake, client=client, **options))
    else:
        print(build_objects(args.lake, **options))
    return 0


@command
def _cmd_lightcurve(args) -> int:
    import numpy as np

    from skylake.objects.query import dia_light_curve, light_curve, plot_light_curve, transient_light_curve

    points = light_curve(args.lake, args.ra, args.dec, args.radius)
    dia = dia_light_curve(args.lake, args.ra, args.dec, args.radius)
    transients = transient_light_curve(args.lake, args.ra, args.dec, args.radius)
    if points.empty and dia.empty and transients.empty:
        print(
            f"no object within {args.radius:g} arcsec of ({args.ra}, {args.dec}); "
            "is LAKE/objects built (skylake objects build)?"
        )
        return EXIT_NOTHING
    objects = points.drop_duplicates("object_id")
    print(f"{len(objects)} objects within {args.radius:g} arcsec, {len(points)} points")
    for row in objects.itertuples():
        ref = f"ref:{row.refcat}:{row.ref_id}" if row.refcat else "cluster"
        print(
            f'  {row.object_id:>20d} {ref:>28s} sep {row.sep_arcsec:5.2f}" n {row.n:4d} '
            f"{row.stats_mag} {row.mean_mag:7.3f} std {row.std_mag:.3f} chi2/dof {row.chi2_dof:.2f} "
            f"FAP {row.fap:.2g}{' VARIABLE' if row.variable else ''} J {row.stetson_j:.2f}"
        )
    for oid, lc in dia.groupby("object_id", sort=False):
        weights = lc["dflux_err"] ** -2.0
        mean = float(np.average(lc["dflux"], weights=weights))
        chi2 = float(np.sum((lc["dflux"] - mean) ** 2 * weights) / max(1, len(lc) - 1))
        print(
            f"  {oid:>20d} DIA: {len(lc)} points, ref_flux {lc['ref_flux'].iloc[0]:.1f} ADU/s, "
            f"dflux {mean:+.1f} ADU/s mean, chi2/dof {chi2:.2f}"
            + ("" if oid in set(objects["object_id"]) else " (a catalogue star with no object: a blend)")
        )
    for oid, lc in transients.groupby("dia_object_id", sort=False):
        snr = lc["dflux"] / lc["dflux_err"]
        print(
            f'  {oid:>20d} transient (DIA object) sep {lc["sep_arcsec"].iloc[0]:5.2f}": {len(lc)} forced points, '
            f"{int((snr > 5).sum())} above 5 sigma, peak dflux {lc['dflux'].max():+.1f} ADU/s at MJD "
            f"{lc['mjd'].iloc[int(np.argmax(lc['dflux'].to_numpy()))]:.5f}"
        )
    if args.dia_out and not dia.empty:
        _write(dia, args.dia_out)
        print(f"DIA points written to {args.dia_out}")
    if args.transients_out and not transients.empty:
        _write(transients, args.transients_out)
        print(f"transients' forced points written to {args.transients_out}")
    if args.out:
        _write(points, args.out)
        print(f"points written to {args.out}")
    if args.plot and points.empty:
        print("no plot: no aperture light curve here (write the DIA points with --dia-out)")
    elif args.plot:
        print(f"plot written to {plot_light_curve(points, args.plot, dia=dia)}")
    return 0


def _write(points, path) -> None:
    if str(path).endswith(".parquet"):
        points.to_parquet(path, index=False)
    else:
        points.to_csv(path, index=False)


def add_commands(subparsers) -> None:
    """Add ``objects build`` and ``lightcurve`` to an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level sub-commands of the ``skylake`` command line.
    """
    p = subparsers.add_parser(
        "objects",  # not a table
        help="objects and light curves (LAKE/objects, LAKE/lightcurves)",
    )
    sub = p.add_subparsers(dest="objects_command", required=True, metavar="ACTION")
    q = sub.add_parser(
        "build",
        help="associate detections into objects, update LAKE/objects and LAKE/lightcurves",
        description="Associate the detections of frames new or recalibrated since the last build into objects "
        "(reference stars by their match, others clustered within --radius), merge them into the "
        "statistics of the objects they touch (LAKE/objects), append them to the light curves "
        "(LAKE/lightcurves), and commit them as one batch. Costs the new frames, not the archive's "
        "history. Idempotent.",
    )
    q.add_argument("lake", help="lake directory")
    q.add_argument(
        "--refcat",
        default=None,
        metavar="NAME",
        help="catalogue giving reference ids and calibrated mags (default: the one most frames use)",
    )
    q.add_argument(
        "--radius",
        type=float,
        default=None,
        metavar="ARCSEC",
        help="association radius in arcsec (default 3; fixed at the first build)",
    )
    q.add_argument("--rebuild", action="store_true", help="rebuild the whole table (to change --refcat or --radius)")
    q.add_argument(
        "--scheduler",
        default=None,
        help="dask scheduler address: each touched partition is a task there (default: this process)",
    )
    q.add_argument("--workers", type=int, default=None, help="start a local cluster of this many workers for the build")
    q.set_defaults(func=_cmd_build)

    p = subparsers.add_parser(
        "lightcurve",
        help="light curves of the objects near a position",
        description="Cone search on LAKE/objects (pixel-pruned): print the objects within --radius of RA, Dec with "
        "their statistics, their DIA light curves and the transients there (LAKE/dia_forced); write their points "
        "(LAKE/lightcurves; CSV, or Parquet for a .parquet name) and a PNG. Exit code 4 when nothing is there.",
    )
    p.add_argument("lake", help="lake directory")
    p.add_argument("--ra", type=float, required=True, help="right ascension [deg]")
    p.add_argument("--dec", type=float, required=True, help="declination [deg]")
    p.add_argument("--radius", type=float, default=5.0, metavar="ARCSEC", help="cone radius in arcsec (default 5)")
    p.add_argument("--out", default=None, metavar="FILE", help="write the points to FILE (.csv or .parquet)")
    p.add_argument("--plot", default=None, metavar="PNG", help="plot the light curves to PNG (with the DIA ones)")
    p.add_argument(
        "--dia-out", default=None, metavar="FILE", help="write the DIA points (LAKE/dia_lightcurves) to FILE"
    )
    p.add_argument(
        "--transients-out",
        default=None,
        metavar="FILE",
        help="write the transients' forced points (LAKE/dia_forced) to FILE",
    )
    p.set_defaults(func=_cmd_lightcurve)
