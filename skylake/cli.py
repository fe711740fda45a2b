"""The ``skylake`` command line. Run ``skylake --help`` or ``skylake COMMAND --help``.

Exit codes: one table for every command, in :mod:`skylake.errors` (and the README's "Ingest your frames").
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import sys
import threading
from typing import NoReturn

from skylake import __version__
from skylake.allsky.cli import add_commands as add_camera_commands
from skylake.calib.cli import add_commands as add_calib_commands
from skylake.dia.cli import add_commands as add_dia_commands
from skylake.ensemble.cli import add_commands as add_ensemble_commands
from skylake.errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, SkylakeError, report, report_object_store
from skylake.maps.cli import add_commands as add_maps_commands
from skylake.objects.cli import add_commands as add_objects_commands
from skylake.reduce.cli import add_commands as add_masters_commands
from skylake.refcat.cli import add_commands as add_refcat_commands
from skylake.watch.cli import add_commands as add_watch_commands

__all__ = ["LOG_LEVELS", "build_parser", "main", "run"]


log = logging.getLogger("skylake")
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def _cmd_init(args) -> int:
    from skylake.lake import Lake

    lake = Lake.init(args.lake, partition_order=args.partition_order)
    print(f"lake ready at {lake.url} (partition order {lake.config.partition_order})")
    return 0


def _cmd_ingest(args) -> int:
    from skylake.lake import Lake
    from skylake.pipeline import ingest
    from skylake.profile import load_profile
    from skylake.runtime import dask_client

    profile = load_profile(args.pipeline) if args.pipeline is not None else None  # a bad one: before any lake
    lake = Lake.init(args.lake) if args.create else Lake.open(args.lake)
    if profile is None:  # the profile the lake's frames were ingested with, else generic
        from skylake.profile_store import lake_profile

        profile = lake_profile(lake)
        print(
            f"profile {profile.name}: the one this lake's frames were ingested with (--pipeline NAME for another)"
            if profile
            else "profile generic (--pipeline NAME for your camera's)"
        )
        profile = profile or load_profile("generic")
    options = dict(
        redo=args.redo,
        keep_versions=args.keep_versions,
        batch_size=args.batch_size,
        progress=None if not args.no_progress else False,
    )
    if args.scheduler:  # the cluster the user gave (or "synchronous": this process)
        with dask_client(args.scheduler, args.workers) as client:
            report = ingest(lake, args.paths, profile, client=client, **options)
    else:  # a local cluster only when there are enough frames to process
        report = ingest(lake, args.paths, profile, cluster=lambda: dask_client(None, args.workers), **options)
    for path, reason in report.rejected:
        print(f"  rejected {path}: {reason}")
    for path, first in report.batch_duplicates:
        print(f"  {path} is the same frame as {first}: ingested once")
    for path in report.unreadable:
        print(f"  cannot list directory {path}: its files were not ingested")
    for line in report.saturation_lines():  # once a run: the profile's level and what the files can hold
        print(f"  {line}")
    for downstream in report.downstream:  # the calibrations', the ensembles', the night products' reports
        print(downstream)
    print(report.outcome())  # last: what happened to the files, by kind
    return report.exit_code


def _cmd_status(args) -> int:
    from skylake.lake import open_lake
    from skylake.status import format_status, lake_status

    status = lake_status(open_lake(args.lake, version=args.at_version))
    print(json.dumps(status, indent=1) if args.json else format_status(status))
    return 0


def _cmd_vacuum(args) -> int:
    from skylake.lake import Lake
    from skylake.lake.snapshot import format_vacuum, vacuum

    print(format_vacuum(vacuum(Lake.open(args.lake), retain_days=args.retain, dry_run=args.dry_run)))
    return 0


def _days(text: str) -> float:
    """``--retain``: a number of days >= 0."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not 0 <= days < 1e6:  # NaN and inf too
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, got {text!r}")
    return days


def _cmd_compact(args) -> int:
    from skylake.lake import Lake
    from skylake.lake.compact import compact, format_compact

    lake = Lake.open(args.lake)
    stats = compact(lake, max_rows=args.max_rows)
    print(json.dumps(stats) if args.json else format_compact(lake.url, stats))
    return 0


def _cmd_refresh(args) -> int:
    from skylake.db import refresh

    print(refresh(args.lake, url=args.db, full=args.full, events=args.events))
    return 0


def _cmd_report(args) -> int:
    from skylake.report import build_report

    print(build_report(args.lake, args.out_dir, url=args.db, refresh_first=not args.no_refresh))
    return 0


def _cmd_repair(args) -> int:
    from skylake.lake import Lake

    result = Lake.open(args.lake).repair()
    print(
        f"rolled forward commits {result['rolled_forward'] or 'none'}; "
        f"rolled back staged batches {result['rolled_back'] or 'none'}"
    )
    return 0


def _cmd_demo(args) -> int:
    if args.allsky:
        from skylake.allsky.demo import run_allsky_demo

        return run_allsky_demo(args.out if args.out != "skylake-demo" else "skylake-demo-allsky")
    from skylake.demo import run_demo

    return run_demo(args.out, n_frames=args.frames, workers=args.workers)


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of the ``skylake`` command line, with every sub-command.

    Every (sub)command also accepts ``--log-level`` after its name.

    Kept long: one flat list of argparse declarations, read top to bottom as ``skylake --help`` lists them.

    Returns
    -------
    argparse.ArgumentParser
        The parser; each sub-command sets ``func``, the function that runs it.
    """
    parser = argparse.ArgumentParser(prog="skylake", description="Survey photometry as HEALPix-partitioned Parquet.")
    parser.add_argument("--version", action="version", version=f"skylake {__version__}")
    parser.add_argument("--log-level", default="WARNING", choices=LOG_LEVELS, help="logging level (default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create a lake")
    p.add_argument("lake", help="lake directory")
    p.add_argument(
        "--partition-order",
        type=int,
        default=5,
        help="HEALPix order of new partitions (default 5; coarser for a batch whose frames would "
        "each span more than 16 of them, e.g. an all-sky camera)",
    )
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser(
        "ingest",
        help="ingest FITS frames",
        description="Ingest FITS frames. Exit codes: 0 all ingested (or nothing new), "
        "3 some frames rejected, 4 nothing ingested.",
    )
    p.add_argument("lake", help="lake directory")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, directories (searched recursively) or globs")
    p.add_argument(
        "--pipeline",
        default=None,
        help="instrument profile: a name in pipelines/ or a .toml/.yaml (default: the one the lake's frames were "
        "ingested with, else generic)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="dask scheduler address of an existing cluster, or 'synchronous' to run in this process",
    )
    p.add_argument("--workers", type=int, default=None, help="workers of the local cluster (default: cores)")
    versions = p.add_mutually_exclusive_group()
    versions.add_argument(
        "--redo",
        action="store_true",
        help="reprocess files already in the lake (any profile or version), replacing their rows "
        "(sources, calibrations, matches) in the same commit",
    )
    versions.add_argument(
        "--keep-versions",
        action="store_true",
        help="ingest files the lake holds under another profile or pipeline version as a new "
        "version beside the old (light curves and maps use the latest); without this or "
        "--redo such files are refused (exit 2)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="frames per commit (default 64, or 32 a worker on a cluster of more than 2 workers)",
    )
    p.add_argument("--create", action="store_true", help="create the lake if it does not exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser(
        "status",
        help="what the lake holds (now, or at a past version)",
        description="What the lake holds: frames by status and reason, rows, partitions, files, "
        "the last commit. With --version N: as it was at commit N, counted from that "
        "version's files. Exit codes: 0 done; 2 not a lake, or version N is not kept "
        "(the message names the versions kept).",
    )
    p.add_argument("lake")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--version",
        dest="at_version",
        type=int,
        default=None,
        metavar="N",
        help="the lake as it was at commit N (time travel; `skylake vacuum` decides how far back)",
    )
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("compact", help="merge each partition's batch files into one (answers unchanged)")
    p.add_argument("lake")
    p.add_argument("--max-rows", type=int, default=5_000_000, help="split partitions above this many rows")
    p.add_argument("--json", action="store_true", help="print the counts as JSON (for scripts)")
    p.set_defaults(func=_cmd_compact)

    p = sub.add_parser(
        "vacuum",
        help="delete removed files that no kept version needs",
        description="Files a commit removes (compaction, --redo, a recalibration) are kept under "
        "LAKE/_skylake/removed/ so older versions stay readable (Lake.open(url, "
        "version=N), status --version N). vacuum keeps every version committed within "
        "--retain days, and the one live at the cut-off, deletes the removed files no "
        "kept version needs and the staging files of uncommitted batches, and prints "
        "what it removed. Takes the writer lock. Exit codes: 0 done (also with nothing "
        "to remove); 2 not a lake, a read-only lake, or a bad --retain.",
    )
    p.add_argument("lake")
    p.add_argument(
        "--retain",
        type=_days,
        default=7.0,
        metavar="DAYS",
        help="keep the versions of the last DAYS days (default 7; 0: only the latest)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.set_defaults(func=_cmd_vacuum)

    p = sub.add_parser("repair", help="finish or undo an interrupted commit")
    p.add_argument("lake")
    p.set_defaults(func=_cmd_repair)

    p = sub.add_parser(
        "refresh",
        help="mirror the lake's summaries into the summary database (incremental)",
        description="Mirror frames, zeropoints, nightly summaries, the throughput trends, the "
        "objects' variability statistics, the maps index and commits into the summary "
        "database: only the nights, objects partitions and maps touched since the last "
        "refresh are recomputed. Safe to run from cron; a database outage leaves the "
        "lake untouched (exit 5).",
    )
    p.add_argument("lake")
    p.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: $SKYLAKE_DB_URL, else "
        "SQLite in the lake); keep passwords in ~/.pgpass or the environment",
    )
    p.add_argument("--full", action="store_true", help="rebuild every row instead of catching up")
    p.add_argument(
        "--events",
        default=None,
        metavar="CSV",
        help="maintenance events (columns date,instrument,kind,note) replacing those stored; the "
        "throughput trends start a new segment at each",
    )
    p.set_defaults(func=_cmd_refresh)

    p = sub.add_parser(
        "report",
        help="write a static HTML report (trends, nights, checkplots)",
        description="Refresh the summary database, then write OUT_DIR/index.html and a page per "
        "instrument and filter; it opens from disk without a server.",
    )
    p.add_argument("lake")
    p.add_argument("out_dir")
    p.add_argument("--db", default=None, metavar="URL", help="summary database (as for refresh)")
    p.add_argument("--no-refresh", action="store_true", help="report the database as it is")
    p.set_defaults(func=_cmd_report)

    add_refcat_commands(sub)
    plots = add_calib_commands(sub)
    add_ensemble_commands(sub, plots)
    add_objects_commands(sub)
    add_maps_commands(sub)
    add_camera_commands(sub)
    add_masters_commands(sub)
    add_dia_commands(sub)
    add_watch_commands(sub)

    p = sub.add_parser(
        "demo",
        help="generate a synthetic night and run the whole job on it",
        description="Generate a synthetic night of frames (stars with known fluxes, a cloud, "
        "variables), then import its reference catalogue, ingest, calibrate, map, build "
        "light curves, refresh the summary database and write the report, checking each "
        "product against the injected truth. The last line is 'demo: PASS' (exit 0) or "
        "'demo: FAIL: <check> <measured> vs <expected>' (exit 1).",
    )
    p.add_argument("--out", default="skylake-demo", help="directory for the frames, the lake and the report")
    p.add_argument("--frames", type=int, default=12, help="frames in the night (default 12)")
    p.add_argument("--workers", type=int, default=None, help="local dask workers (default: cores)")
    p.add_argument(
        "--allsky",
        action="store_true",
        help="instead: an all-sky camera's SYNTHETIC night (fisheye, a cloud, a streak): camera fit, "
        "ingest, checks and the report's polar plots (--out default skylake-demo-allsky)",
    )
    p.set_defaults(func=_cmd_demo)
    _log_level_everywhere(sub)
    return parser


def _log_level_everywhere(subparsers) -> None:
    """Accept --log-level after any (sub)command too, as users type it; before the command still works."""
    for parser in set(subparsers.choices.values()):
        if not any("--log-level" in a.option_strings for a in parser._actions):
            parser.add_argument(
                "--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS, help="logging level (default WARNING)"
            )
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _log_level_everywhere(action)


def main(argv: list[str] | None = None) -> int:
    """Run the ``skylake`` command line.

    The log level applies to skylake's loggers; dask.distributed's stay at WARNING unless it is DEBUG. A
    :class:`~skylake.errors.SkylakeError`, a missing file or an S3 client's error is printed as one line
    (``skylake: error: ...``); any other error is raised again, with its traceback.

    Parameters
    ----------
    argv : list of str or None
        The arguments (None: those of the process, ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code (the table in :mod:`skylake.errors`): 130 when interrupted (Ctrl-C).
    """
    args = build_parser().parse_args(argv)
    import skylake.sections  # noqa: F401 - every stage's profile section registered: profiles are checked whole

    level = getattr(logging, args.log_level)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # dask.distributed logs every worker start/stop at INFO; keep it quiet unless debugging.
    for name in (
        "distributed",
        "distributed.scheduler",
        "distributed.nanny",
        "distributed.core",
        "distributed.worker",
        "distributed.http.proxy",
        "distributed.batched",
    ):
        logging.getLogger(name).setLevel(max(level, logging.WARNING if level > logging.DEBUG else level))
    try:
        return args.func(args)
    except (SkylakeError, FileNotFoundError) as exc:  # the class says the exit code (skylake.errors)
        return report(exc)
    except KeyboardInterrupt:
        print("skylake: interrupted; the lake is consistent, re-run to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader stopped reading (| head): end quietly, as a Unix tool on SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the exit's flush writes nowhere)
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # an S3 endpoint or credential problem: one line; anything else a traceback
        return report_object_store(exc)


def run() -> NoReturn:
    """The ``skylake`` console command (and ``python -m skylake.cli``): :func:`main`, then end the process.

    The process ends as a normal exit would up to the interpreter's own teardown: non-daemon threads joined,
    ``atexit`` handlers run (dask clusters closed, temporary directories removed), output flushed. The teardown
    that follows is skipped: it destroys the native thread pools of Arrow (and the libraries on it) while a
    worker may still be alive, which aborts a finished, successful command one run in a few dozen ("terminate
    called without an active exception", exit -6; apache/arrow#34314). Programs that embed skylake call
    :func:`main`, which returns.
    """
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        code = exc.code
    if not isinstance(code, int):  # sys.exit's rules: None is success, anything else is printed
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    # what the interpreter's exit does first, in its order: thread pools told to finish (threading's own exit
    # hooks) and non-daemon threads joined, then the atexit handlers
    threading._shutdown()
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
