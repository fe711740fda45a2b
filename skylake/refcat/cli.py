"""``skylake refcat ...``: import, list and cone-search reference catalogues.

Wired into :mod:`skylake.cli` by ``add_commands(sub)``. Each sub-command's ``func`` takes the parsed
``args`` and returns the exit code: 0 success, 2 usage error (bad format or columns, existing NAME
without --overwrite, unknown catalogue, no such file), 1 unexpected failure (left to propagate).
"""

from __future__ import annotations

from skylake.errors import command

__all__ = ["add_commands"]


@command
def _cmd_import(args) -> int:
    import contextlib

    from skylake.refcat.importer import import_refcat

    with contextlib.ExitStack() as stack:
        client = None  # import_refcat starts a LocalCluster itself, after checking the files
        if args.scheduler:  # as ingest and calibrate: an unreachable scheduler is a usage error (exit 2)
            from skylake.runtime import dask_client

            client = stack.enter_context(dask_client(args.scheduler, args.workers))
        report = import_refcat(
            args.lake,
            args.name,
            args.files,
            args.format,
            columns_map=args.columns_map,
            overwrite=args.overwrite,
            margin_arcsec=args.margin_arcsec,
            pixel_threshold=args.pixel_threshold,
            highest_order=args.highest_order,
            client=client,
            workers=args.workers,
            progress=False if args.no_progress else None,  # bars only on a terminal
            create=args.create,
        )
    print(report)
    return 0


@command
def _cmd_list(args) -> int:
    import json

    from skylake.refcat.query import format_list, list_refcats

    rows = list_refcats(args.lake)
    print(json.dumps(rows, indent=1) if args.json else format_list(rows))
    return 0


@command
def _cmd_cone(args) -> int:
    import numpy as np
    import pandas as pd

    from skylake.refcat.query import cone_search, write_table

    columns = [c for item in args.columns for c in item.split(",") if c] if args.columns else None
    df = cone_search(args.lake, args.name, args.ra, args.dec, args.radius_arcsec, columns=columns, epoch=args.epoch)
    if args.out:
        path = write_table(df, args.out)
        print(f"{len(df)} rows -> {path}")
    else:
        shown = df.copy()
        for col in shown.columns:  # float32 magnitudes print as stored (20.075, not 20.075001)
            if shown[col].dtype == np.float32:
                shown[col] = [float(str(v)) for v in shown[col].to_numpy()]
        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(shown.to_string(max_rows=args.max_rows) if len(df) else "no rows in the cone")
        print(f"({len(df)} rows)")
    return 0


def _format_names() -> list[str] | None:
    """Format names for --format's choices, read cheaply from pipelines/refcats.toml (None if unreadable:
    the import then reports what is wrong with the file)."""
    import tomllib

    from skylake.paths import project_dir
    from skylake.refcat import GENERIC, MAPS_FILE

    try:
        with open(project_dir("pipelines") / MAPS_FILE, "rb") as fh:
            return [*tomllib.load(fh), GENERIC]
    except (OSError, tomllib.TOMLDecodeError):
        return None


def add_commands(subparsers) -> None:
    """Add ``refcat`` with sub-commands ``import``, ``list`` and ``cone`` to an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The subparsers object of the ``skylake`` command line (what ``add_subparsers`` returns).
    """
    from skylake.refcat import DEFAULT_HIGHEST_ORDER, DEFAULT_PIXEL_THRESHOLD

    parser = subparsers.add_parser(
        "refcat",
        help="reference catalogues (APASS, PS1, refcat2, Gaia, Tycho-2, ...)",
        description="Reference catalogues as HATS collections under LAKE/refcats/.",
    )
    sub = parser.add_subparsers(dest="refcat_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser(
        "import",
        help="import a catalogue from its native files",
        description="Read CSV, ECSV, FITS or Parquet files in the format's native column names "
        "(maps in pipelines/refcats.toml), drop rows with missing or impossible "
        "coordinates (counted), and write LAKE/refcats/NAME as a HATS collection "
        "with a margin cache.",
    )
    p.add_argument("lake", help="lake directory")
    p.add_argument("name", help="catalogue name (letters, digits, '.', '_', '-')")
    p.add_argument("files", nargs="+", metavar="FILE", help="input files, directories or globs")
    formats = _format_names()
    p.add_argument("--format", required=True, choices=formats, help="the files' catalogue format")
    p.add_argument(
        "--columns-map",
        default=None,
        metavar="FILE",
        help="column map (TOML/YAML with a [columns] table) for --format generic",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing catalogue NAME")
    p.add_argument(
        "--margin-arcsec",
        type=float,
        default=None,
        help="margin cache width (default 10; at least the match_radius_arcsec of the profiles calibrated against it)",
    )
    p.add_argument(
        "--pixel-threshold",
        type=int,
        default=DEFAULT_PIXEL_THRESHOLD,
        help=f"maximum rows per partition (default {DEFAULT_PIXEL_THRESHOLD})",
    )
    p.add_argument(
        "--highest-order",
        type=int,
        default=DEFAULT_HIGHEST_ORDER,
        help=f"highest HEALPix order of a partition (default {DEFAULT_HIGHEST_ORDER})",
    )
    p.add_argument("--scheduler", default=None, help="dask scheduler address of an existing cluster")
    p.add_argument("--workers", type=int, default=None, help="workers of the local cluster (default: cores)")
    p.add_argument("--create", action="store_true", help="create the lake if it does not exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("list", help="the lake's reference catalogues")
    p.add_argument("lake", help="lake directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "cone",
        help="rows within a radius of a position",
        description="Print (or write) the rows within RADIUS_ARCSEC of (RA, DEC), nearest first. "
        "--epoch propagates positions linearly with the proper motions first.",
    )
    p.add_argument("lake", help="lake directory")
    p.add_argument("name", help="catalogue name")
    p.add_argument("ra", type=float, help="centre RA [deg]")
    p.add_argument("dec", type=float, help="centre Dec [deg]")
    p.add_argument("radius_arcsec", type=float, metavar="RADIUS_ARCSEC", help="radius [arcsec]")
    p.add_argument(
        "--columns",
        nargs="+",
        default=None,
        help="columns to show besides ref_id, ra, dec, epoch (space or comma separated; default all)",
    )
    p.add_argument("--epoch", type=float, default=None, help="Julian year to propagate positions to")
    p.add_argument("--out", default=None, metavar="FILE", help="write FILE.csv or FILE.parquet instead of printing")
    p.add_argument("--max-rows", type=int, default=50, help="rows to print at most (default 50)")
    p.set_defaults(func=_cmd_cone)
