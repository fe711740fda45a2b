"""``skylake calibrate`` and ``skylake plot zeropoint``.

Wired into :mod:`skylake.cli` by ``add_commands(sub)``. Exit codes of ``calibrate``: 0 every frame
calibrated got zp_status ok (or there was nothing to do), 3 some frames got another status (their
rows say why), 2 usage error (no such lake, refcat, band or night format; radius wider than the
catalogue's margin), 1 unexpected failure.
"""

from __future__ import annotations

from skylake.errors import EXIT_OK, EXIT_PARTIAL, command

__all__ = ["DEFAULT_PLOTS", "add_commands"]


DEFAULT_PLOTS = "zeropoint-plots"


@command
def _cmd_calibrate(args) -> int:
    from skylake.calib.calibrate import calibrate, since_date
    from skylake.calib.model import ZpStatus
    from skylake.runtime import dask_client

    reports = calibrate(
        args.lake,
        refcat=args.refcat,
        profile=args.pipeline,
        night=args.night,
        since=since_date(args.since) if args.since else None,
        redo=args.redo,
        plots=args.plots,
        cluster=lambda: dask_client(args.scheduler, args.workers),
    )
    if not reports:
        print("nothing calibrated: no frames selected, or no profile names a reference catalogue (use --refcat)")
    for report in reports:
        print(report)
    if len(reports) > 1:  # the last line counts every profile's frames
        ok = sum(r.by_status.get(ZpStatus.OK, 0) + r.skipped_ok for r in reports)
        print(f"{ok} of {sum(r.frames for r in reports)} frames calibrated ok, over {len(reports)} profiles")
    not_ok = sum(n for r in reports for s, n in r.by_status.items() if s != ZpStatus.OK)
    return EXIT_PARTIAL if not_ok else EXIT_OK


@command
def _cmd_plot_zeropoint(args) -> int:
    from skylake.calib.calibrate import plot_zeropoint

    print(plot_zeropoint(args.lake, args.frame_id, refcat=args.refcat, out=args.out))
    return 0


def add_commands(subparsers):
    """Add ``calibrate`` and ``plot zeropoint`` to an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The subparsers of the ``skylake`` parser (``parser.add_subparsers()``).

    Returns
    -------
    argparse._SubParsersAction
        The ``plot`` group's subparsers (other packages add their plots to it).
    """
    p = subparsers.add_parser(
        "calibrate",
        help="photometric zeropoints against a reference catalogue",
        description="Cross-match the frames' sources with a reference catalogue (a k-d tree per HATS partition, "
        "its margin included; one-to-one pairs), fit each "
        "frame's zeropoint (with a colour term where the catalogue has the colour), fit each night's "
        "extinction, measure astrometric residuals, and commit LAKE/zeropoints, LAKE/matches and "
        "LAKE/extinction, one commit per batch of whole nights (up to 2 million sources; 1 million a worker with more "
        "than two workers). Frames already "
        "calibrated with the same catalogue and settings are skipped. Exit codes: 0 all ok, 3 some frames "
        "not ok (see zp_status), 2 usage error.",
    )
    p.add_argument("lake", help="lake directory")
    p.add_argument(
        "--refcat",
        default=None,
        metavar="NAME",
        help="reference catalogue in LAKE/refcats (default: each profile's [calibration] refcat)",
    )
    p.add_argument(
        "--pipeline",
        default=None,
        help="profile whose [calibration] settings to use (default: the profile that ingested each frame)",
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument("--night", default=None, metavar="YYYY-MM-DD", help="only this observing night")
    when.add_argument(
        "--since", default=None, metavar="DATE", help="only nights from DATE (YYYY-MM-DD, or Nd for N days ago) on"
    )
    p.add_argument(
        "--redo",
        action="store_true",
        help="recalibrate frames already calibrated, replacing their rows for this catalogue",
    )
    p.add_argument(
        "--plots",
        nargs="?",
        const=DEFAULT_PLOTS,
        default=None,
        metavar="DIR",
        help=f"write a checkplot PNG per frame into DIR (default {DEFAULT_PLOTS}/)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="dask scheduler address of an existing cluster, or 'synchronous' to run in this process",
    )
    p.add_argument("--workers", type=int, default=None, help="workers of the local cluster (default: cores)")
    p.set_defaults(func=_cmd_calibrate)

    p = subparsers.add_parser("plot", help="checkplots of what the lake holds")
    sub = p.add_subparsers(dest="plot_command", required=True, metavar="PLOT")
    q = sub.add_parser(
        "zeropoint",
        help="a frame's calibration checkplot (PNG)",
        description="Instrumental vs reference magnitude with the fit, residuals vs colour, "
        "astrometric residual quiver, residuals vs position, for one frame.",
    )
    q.add_argument("lake", help="lake directory")
    q.add_argument("frame_id", type=int, help="frame id (LAKE/frames)")
    q.add_argument("--refcat", default=None, metavar="NAME", help="which catalogue's calibration (default: latest)")
    q.add_argument("--out", default=None, metavar="PNG", help="output file (default zeropoint-FRAME-REFCAT.png)")
    q.set_defaults(func=_cmd_plot_zeropoint)
    return sub
