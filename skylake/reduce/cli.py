"""``skylake masters``: build calibration masters from raw frames, and list them; ``skylake coadd``: stack a night.

Wired into :mod:`skylake.cli` by ``add_commands(sub)``. Exit codes: 0 masters built (or listed) or coadds made,
4 nothing new (every master was already in the lake, or no pointing with two frames), 2 usage error (no such
lake, a file that is not a calibration frame, frames that do not belong together), 1 unexpected failure.
"""

from __future__ import annotations

from skylake.errors import EXIT_NOTHING, EXIT_OK, UsageError, command

__all__ = ["LIST_COLUMNS", "add_commands"]


LIST_COLUMNS = [
    "master_id",
    "kind",
    "night",
    "instrument",
    "filter",
    "binning",
    "nx",
    "ny",
    "n_frames",
    "level",
    "noise",
]


@command
def _cmd_masters_build(args) -> int:
    from skylake.lake import Lake
    from skylake.profile import load_profile
    from skylake.reduce.build import build_masters

    profile = load_profile(args.pipeline)
    lake = Lake.open(args.lake)
    try:
        rows = build_masters(lake, args.paths, profile, kind=args.kind, night=args.night)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for row in rows:
        extra = f", {row['n_bad']} bad pixels" if row["kind"] in ("hotpix", "deadpix") else ""
        print(f"  {row['master_id']}: {row['kind']} from {row['n_frames']} frames (night {row['night']}{extra})")
    print(f"{len(rows)} masters stored in {lake.url}" if rows else "nothing new: the lake has these masters")
    return EXIT_OK if rows else EXIT_NOTHING


@command
def _cmd_masters_list(args) -> int:
    from skylake.lake import Lake
    from skylake.reduce.store import read_table

    rows = read_table(Lake.open(args.lake)).to_pandas()
    if not len(rows):
        print("no masters in the lake")
        return EXIT_OK
    print(rows.sort_values(["night", "kind"])[LIST_COLUMNS].to_string(index=False))
    return EXIT_OK


@command
def _cmd_coadd(args) -> int:
    import contextlib

    from skylake.lake import Lake
    from skylake.reduce.coadd import coadd_night

    lake = Lake.open(args.lake)
    with contextlib.ExitStack() as stack:
        client = None
        if args.scheduler:
            from skylake.runtime import dask_client

            client = stack.enter_context(dask_client(args.scheduler))
        try:
            results = coadd_night(lake, args.night, field=args.field, method=args.method, client=client)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    frames = lake.read_frames(columns=["frame_id", "path", "status", "n_sources", "coadd_of"]).to_pandas()
    made = 0
    for r in results:
        if not r.rel:
            print(f"  {r.field}: {r.reason}")
            continue
        row = frames[frames["path"] == lake.path(r.rel)]
        got = f"frame {int(row['frame_id'].iloc[0])}, {row['status'].iloc[0]}, {int(row['n_sources'].iloc[0])} sources"
        print(f"  {r.field}: {len(r.frame_ids)} frames -> {r.rel} ({got})")
        made += 1
    print(f"{made} coadds of night {args.night}")
    return EXIT_OK if made else EXIT_NOTHING


def add_commands(sub) -> None:
    """Add ``masters build`` and ``masters list`` to the ``skylake`` command line.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The top-level sub-commands.
    """
    p = sub.add_parser(
        "masters",  # not a table: the command's name (the registry imports pyarrow, too heavy for --help)
        help="calibration masters (bias, dark, flat, bad pixels, sky frames) from raw frames",
        description="Combine raw calibration frames into masters stored in the lake; ingest of a camera "
        "whose profile has a [reduction] section uses the masters nearest in time.",
    )
    msub = p.add_subparsers(dest="masters_command", required=True, metavar="ACTION")
    b = msub.add_parser(
        "build",
        help="combine raw bias, dark or flat frames (or a night's science frames: --kind sky) into masters",
        description="Sigma-clipped combination (ccdproc) of raw calibration frames: a bias, a dark-current "
        "rate (darks need a bias master: built in the same run or in the lake), a normalised flat per "
        "filter, and the hot- and dead-pixel masks darks and flats show. Without --kind each file's "
        "frame type comes from its header (IMAGETYP). --kind sky builds PRIME's sky frame from a night's "
        "dithered science frames (reduced with the lake's masters, sources masked, median-combined), one "
        "per night and filter, for profiles whose reduction.steps has 'sky'.",
    )
    b.add_argument("lake")
    b.add_argument("paths", nargs="+", metavar="PATH", help="raw calibration frames (science frames with --kind sky)")
    b.add_argument("--pipeline", required=True, help="the camera's profile (name or .toml file)")
    b.add_argument("--kind", choices=["bias", "dark", "flat", "sky"], default=None, help="every file is of this kind")
    b.add_argument("--night", default=None, help="file the masters under this night (YYYY-MM-DD)")
    b.set_defaults(func=_cmd_masters_build)
    lst = msub.add_parser("list", help="list the lake's masters")
    lst.add_argument("lake")
    lst.set_defaults(func=_cmd_masters_list)

    c = sub.add_parser(
        "coadd",
        help="stack a night's frames of each pointing into a coadd, ingested as one more frame",
        description="Reproject a night's ok frames of one pointing onto the first frame's grid (reproject), "
        "combine them (weighted mean or median), store the coadd under LAKE/coadds/ and ingest it: it is "
        "calibrated, mapped and joins light curves like any frame; its row's coadd_of lists its frames.",
    )
    c.add_argument("lake")
    c.add_argument("--night", required=True, help="the night (YYYY-MM-DD)")
    c.add_argument("--field", default=None, help="only frames whose OBJECT is this")
    c.add_argument("--method", choices=["mean", "median"], default="mean", help="combination (default mean)")
    c.add_argument("--scheduler", default=None, help="dask scheduler address for the coadds' ingest")
    c.set_defaults(func=_cmd_coadd)
