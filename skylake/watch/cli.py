"""``skylake watch LAKE DIR... --pipeline P``: ingest frames as the camera writes them.

Wired into :mod:`skylake.cli` by ``add_commands(sub)``. Exit codes: 0 stopped on request (SIGTERM,
SIGINT) after the batch in hand, or ``--once`` done; 2 usage error (no such lake or directory, a bad
setting); 1 unexpected failure.
"""

from __future__ import annotations

import contextlib
import signal
import sys

from skylake.errors import UsageError, command

__all__ = ["add_commands"]


@command
def _cmd_watch(args) -> int:
    from skylake.runtime import dask_client
    from skylake.watch.watcher import Watcher, WatchSettings

    try:
        settings = WatchSettings(
            stable_seconds=args.stable,
            marker=args.marker,
            poll_seconds=args.poll,
            batch_frames=args.batch_frames,
            latency_seconds=args.latency,
            events=not args.no_events,
            objects=not args.no_objects,
            maps=not args.no_maps,
            refresh=not args.no_refresh,
            maps_seconds=args.maps_every,
            db_url=args.db,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with contextlib.ExitStack() as stack:
        client, cluster = None, None
        if args.scheduler or args.workers:  # one cluster for the watcher's life
            client = stack.enter_context(dask_client(args.scheduler, args.workers))
        else:  # this process; a local cluster only for a batch large enough to want one
            cluster = lambda: dask_client(None, None)  # noqa: E731
        watcher = Watcher(args.lake, args.dirs, args.pipeline, settings, client=client, cluster=cluster)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: watcher.stop())

        def say(line: str) -> None:
            print(line, flush=True)

        code = watcher.run(once=args.once, say=say)
    sys.stdout.flush()
    return code


def add_commands(sub) -> None:
    """Add ``watch`` to the ``skylake`` command line.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The top-level sub-commands.
    """
    p = sub.add_parser(
        "watch",
        help="follow directories and ingest frames as they arrive",
        description="Follow DIRs (recursively; filesystem events, with polling for what events miss) and, "
        "in small batches, ingest each complete new frame, calibrate it, update its night's products, the "
        "objects and light curves, the night's maps and the summary database. Restart-safe: files the lake "
        "holds are not taken again. SIGTERM or Ctrl-C stops after the batch in hand (exit 0). Exit codes: 0 "
        "stopped on request or --once done, 2 usage error, 1 unexpected failure.",
    )
    p.add_argument("lake", help="lake directory")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="directories the camera writes to")
    p.add_argument("--pipeline", required=True, help="instrument profile: a name in pipelines/ or a .toml")
    p.add_argument(
        "--stable", type=float, default=5.0, help="a file is complete once unchanged this many seconds (default 5)"
    )
    p.add_argument("--marker", default=None, help="instead, complete once NAME<MARKER> exists beside it (e.g. .done)")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between looks at the directories (default 5)")
    p.add_argument("--batch-frames", type=int, default=64, help="most frames per batch (default 64)")
    p.add_argument("--latency", type=float, default=120.0, help="target seconds from arrival to products (default 120)")
    p.add_argument("--no-events", action="store_true", help="poll only (network filesystems)")
    p.add_argument("--no-objects", action="store_true", help="do not update objects and light curves")
    p.add_argument("--no-maps", action="store_true", help="do not rebuild the batch's night maps")
    p.add_argument(
        "--maps-every",
        type=float,
        default=300.0,
        help="rebuild a night's maps at most every this many seconds, and on stop (default 300; 0: every batch)",
    )
    p.add_argument("--no-refresh", action="store_true", help="do not refresh the summary database")
    p.add_argument("--db", default=None, help="summary database URL (default: as `skylake refresh`)")
    p.add_argument("--once", action="store_true", help="ingest what is complete now, then exit (for cron)")
    p.add_argument("--scheduler", default=None, help="dask scheduler address of an existing cluster")
    p.add_argument("--workers", type=int, default=None, help="start a local cluster of this many workers")
    p.set_defaults(func=_cmd_watch)
