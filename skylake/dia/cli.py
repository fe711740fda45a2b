"""``skylake reference build`` and ``skylake dia``: references for difference imaging, and the differences.

Wired into :mod:`skylake.cli` by ``add_commands(sub)``. Exit codes: 0 references built or frames subtracted
(frames no reference covers are named, not failures: a pointing with too few frames has none), 4 nothing new (every
pointing has its reference already or too few frames; every frame was done before or has no reference), 3 some
frames could not be subtracted (their reasons printed; the others are in), 2 usage error (no such lake, a night
that is no date), 1 unexpected failure.
"""

from __future__ import annotations

import contextlib

from skylake.errors import EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL, command

__all__ = ["add_commands"]


def _selection(args):
    from skylake.lake.frames import FrameSelection

    return FrameSelection(night=args.night, since=args.since, until=args.until)


@contextlib.contextmanager
def _runner(scheduler):
    from skylake.runtime import Runner, dask_client

    if not scheduler:
        yield Runner(None)
        return
    with dask_client(scheduler) as client:
        yield Runner(client)


@command
def _cmd_reference_build(args) -> int:
    from skylake.dia.references import build_references
    from skylake.lake import Lake

    lake = Lake.open(args.lake)
    with _runner(args.scheduler) as runner:
        results = build_references(
            lake, _selection(args), min_frames=args.min_frames, max_frames=args.max_frames, runner=runner
        )
    for r in results:
        what = f"{r.outcome} {r.reference_id}" if r.reference_id else f"skipped: {r.reason}"
        print(f"  {r.field}: {len(r.frame_ids)} frames, {what}")
    built = sum(r.outcome == "built" for r in results)
    print(f"{built} references built in {lake.url}" if results else "no usable frame: nothing to stack")
    return EXIT_OK if built else EXIT_NOTHING


@command
def _cmd_dia(args) -> int:
    from skylake.dia.stage import run_dia
    from skylake.lake import Lake

    lake = Lake.open(args.lake)
    with _runner(args.scheduler) as runner:
        report = run_dia(lake, _selection(args), redo=args.redo, runner=runner)
    print(report.outcome())
    if report.failed:
        return EXIT_PARTIAL
    return EXIT_OK if report.done else EXIT_NOTHING


def _narrowing(p) -> None:
    p.add_argument("lake")
    p.add_argument("--night", default=None, help="only this night's frames (YYYY-MM-DD)")
    p.add_argument("--since", default=None, help="only frames of this night or later (YYYY-MM-DD)")
    p.add_argument("--until", default=None, help="only frames of this night or earlier (YYYY-MM-DD)")
    p.add_argument("--scheduler", default=None, help="dask scheduler address (default: this process)")


def add_commands(sub) -> None:
    """Add ``reference build`` and ``dia`` to the ``skylake`` command line.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The top-level sub-commands.
    """
    p = sub.add_parser(
        "reference",
        help="reference images for difference imaging",
        description="References: per profile, filter and pointing, the sharpest frames stacked on the "
        "sharpest one's grid, with their noise and mask, stored in the lake (LAKE/references).",
    )
    rsub = p.add_subparsers(dest="reference_command", required=True, metavar="ACTION")
    b = rsub.add_parser(
        "build",
        help="stack each pointing's sharpest frames into a reference",
        description="For every pointing (profile, instrument, filter) with enough ok frames with a WCS, stack "
        "the sharpest (sky subtracted, scaled to one photometric scale, resampled as reproject does, a clipped "
        "mean) into a reference with its variance and mask. Building again from the same frames finds the "
        "reference; other frames make a new one beside it, which `skylake dia` then uses.",
    )
    _narrowing(b)
    b.add_argument("--min-frames", type=int, default=5, help="pointings with fewer frames get none (default 5)")
    b.add_argument("--max-frames", type=int, default=10, help="stack at most this many, the sharpest (default 10)")
    b.set_defaults(func=_cmd_reference_build)

    d = sub.add_parser(
        "dia",
        help="subtract each frame's reference and find what changed (DIA sources)",
        description="Each frame less its pointing's newest reference, PSF-matched (Alard-Lupton kernel, "
        "spatially varying, with a differential background); the DIA sources found on the difference (both "
        "signs, flagged, scored real or bogus, the real ones with cutouts) go to LAKE/dia_sources, the real ones "
        "associated across frames to LAKE/dia_objects, every object's flux change to LAKE/dia_lightcurves "
        "and every transient's (a DIA object of 2 or more real DIA sources and no object) to LAKE/dia_forced "
        "(HATS), a row per frame to LAKE/dia_frames. A frame that cannot be subtracted gets a row with its "
        "reason. A transient found tonight is measured on tonight's earlier frames by --redo.",
    )
    _narrowing(d)
    d.add_argument("--redo", action="store_true", help="subtract frames done before again (their rows replaced)")
    d.set_defaults(func=_cmd_dia)
