"""``skylake ensemble`` and ``skylake plot noise``.

Wired into :mod:`skylake.cli` by ``add_commands(sub, plots)``. Exit codes of ``ensemble``: 0 every eligible frame
of the nights solved got status ok, or is in a field with too few frames to solve (or there was nothing to do),
3 some frames got another status (too few stars: their rows say why), 4 no frame could enter a solve (none ok with
a calibration), 2 usage error, 1 unexpected failure.
``plot noise``: 0 drawn, 4 nothing to draw (no such night, no light curves), 2 usage error.
"""

from __future__ import annotations

from skylake.errors import EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL, command

__all__ = ["ensemble_outcome", "add_commands"]


@command
def _cmd_ensemble(args) -> int:
    import contextlib

    from skylake.calib.calibrate import since_date
    from skylake.ensemble.stage import ensemble

    with contextlib.ExitStack() as stack:
        client = None
        if args.scheduler or args.workers:
            from skylake.runtime import dask_client

            client = stack.enter_context(dask_client(args.scheduler, args.workers))
        reports = ensemble(
            args.lake,
            night=args.night,
            since=since_date(args.since) if args.since else None,
            redo=args.redo,
            client=client,
            profile=args.pipeline,
        )
    for report in reports:
        print(report)
    ok = sum(r.by_status.get("ok", 0) for r in reports)
    # a field with too few frames to solve is what the night holds, not a failure (ingest exits 0 for it too)
    other = sum(n for r in reports for s, n in r.by_status.items() if s not in ("ok", "too_few_frames"))
    left = sum(sum(r.not_eligible.values()) for r in reports)
    skipped = sum(r.skipped_nights for r in reports)
    print(ensemble_outcome(reports))
    if ok == 0 and other == 0 and skipped == 0:
        return EXIT_NOTHING if left else EXIT_OK
    return EXIT_PARTIAL if other else EXIT_OK


@command
def _cmd_plot_noise(args) -> int:
    from skylake.ensemble.plots import noise_diagram

    diagram = noise_diagram(args.lake, night=args.night, profile=args.profile, out=args.out, min_points=args.min_points)
    print(diagram.summary())
    for line in diagram.legend_terms():
        print(f"model {line}")
    print(
        f"noise diagram of night {diagram.night} ({diagram.profile}, {diagram.frames} frames solved together of "
        f"{diagram.frames_night}, {len(diagram.objects)} objects): {diagram.path}"
    )
    return EXIT_OK


def ensemble_outcome(reports) -> str:
    """The command's last line: frames solved of those selected, the others by why.

    Parameters
    ----------
    reports : list of EnsembleReport
        The reports of :func:`skylake.ensemble.stage.ensemble`, one per profile.

    Returns
    -------
    str
        ``"N of M frames solved"``, followed by the frames not solved counted by status and by why they were
        left out, and the number of nights already solved (skipped), when there are any.
    """
    from collections import Counter

    ok = sum(r.by_status.get("ok", 0) for r in reports)
    others = sum((Counter({k: v for k, v in r.by_status.items() if k != "ok"}) for r in reports), Counter())
    left = sum((Counter(r.not_eligible) for r in reports), Counter())
    total = ok + sum(others.values()) + sum(left.values())
    parts = [f"{n} {k}" for k, n in sorted(others.items())] + [f"{n} {k}" for k, n in sorted(left.items())]
    skipped = sum(r.skipped_nights for r in reports)
    return (
        f"{ok} of {total} frames solved"
        + (": " + ", ".join(parts) if parts else "")
        + (f"; {skipped} nights already solved" if skipped else "")
    )


def add_commands(subparsers, plots) -> None:
    """Add ``ensemble`` to an argparse subparsers object and ``noise`` to the ``plot`` group's.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level subparsers object, which gets the ``ensemble`` command.
    plots : argparse._SubParsersAction
        The subparsers object of the ``plot`` group, which gets the ``noise`` command.
    """
    p = subparsers.add_parser(
        "ensemble",  # not a table
        help="relative calibration and detrending of each night (after calibrate)",
        description="For each night and field, solve every frame's relative zeropoint and spatial terms and "
        "every star's mean magnitude from all the stars the frames share (weighted, clipped, anchored "
        "to the catalogue zeropoints), then detrend each star (EPD, TFA); commit LAKE/ensemble and "
        "LAKE/detrend. Light curves (skylake objects build) use them. Nights solved since their frames "
        "and zeropoints last changed are skipped (--redo solves them again, with other --pipeline settings "
        "too). Exit codes: 0 all ok, 3 some frames not "
        "solved (too few stars), 4 no frame eligible, 2 usage error.",
    )
    p.add_argument("lake", help="lake directory")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--night", default=None, metavar="YYYY-MM-DD", help="only this observing night")
    when.add_argument(
        "--since", default=None, metavar="DATE", help="only nights from DATE (YYYY-MM-DD, or Nd for N days ago) on"
    )
    p.add_argument("--redo", action="store_true", help="solve again nights already solved")
    p.add_argument(
        "--pipeline",
        default=None,
        help="profile whose [ensemble] settings to use (default: the profile that ingested each frame)",
    )
    p.add_argument("--scheduler", default=None, help="dask scheduler address of an existing cluster")
    p.add_argument("--workers", type=int, default=None, help="start a local cluster of this many workers")
    p.set_defaults(func=_cmd_ensemble)

    q = plots.add_parser(
        "noise",
        help="the noise diagram of a night (PNG)",
        description="Each object's rms in one night against its mean magnitude, for the "
        "per-frame-zeropoint, ensemble and detrended light curves, with the night's fitted noise "
        "model (LAKE/noise: photons, scintillation, the floor) drawn over it; prints per magnitude bin "
        "the stars, their rms, median mag_err, the pulls' robust width and chi2/dof (unflagged points). "
        "Exit codes: 0 drawn, 4 nothing to draw, 2 usage error.",
    )
    q.add_argument("lake", help="lake directory")
    q.add_argument("--night", default=None, metavar="YYYY-MM-DD", help="the night (default: the latest)")
    q.add_argument("--profile", default=None, help="the camera's profile (default: the one with most frames)")
    q.add_argument("--out", default="noise.png", metavar="PNG", help="output file (default noise.png)")
    q.add_argument(
        "--min-points",
        type=int,
        default=None,
        metavar="K",
        help="unflagged points an object needs (default: half the frames solved together, at least 5)",
    )
    q.set_defaults(func=_cmd_plot_noise)
