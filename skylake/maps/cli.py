"""``skylake maps``: HEALPix maps of zeropoint, transparency, sky brightness and astrometry.

Wired into :mod:`skylake.cli` by ``add_commands(sub)``. Exit codes: 0 maps made (or listed), 4 nothing
to map (no calibrated frame in the selection), 2 usage error (no such lake, frame, bad nside or date,
horizon maps without a site), 1 unexpected failure.
"""

from __future__ import annotations

from skylake.errors import EXIT_NOTHING, EXIT_OK, command

__all__ = ["DEFAULT_OUT", "add_commands"]


DEFAULT_OUT = "skylake-maps"


@command
def _cmd_maps(args) -> int:
    from skylake.lake import Lake

    lake = Lake.open(args.lake)
    if args.list:
        from skylake.maps.store import read_index

        index = read_index(lake)
        cols = [
            "map_id",
            "scope",
            "night_min",
            "night_max",
            "frame_id",
            "nside",
            "frame_of",
            "n_pixels",
            "n_stars",
            "path",
        ]
        index = index.astype({"frame_id": "Int64", "nside": "Int64", "n_pixels": "Int64", "n_stars": "Int64"})
        print(index[cols].to_string(index=False) if len(index) else "no maps in the lake")
        return EXIT_OK
    import contextlib

    from skylake.maps import make_maps

    frames_of = ("equatorial", "horizon") if args.frame_of == "both" else (args.frame_of,)
    with contextlib.ExitStack() as stack:
        client = None
        if args.scheduler:  # each group of frames' samples a task on that cluster
            from skylake.runtime import dask_client

            client = stack.enter_context(dask_client(args.scheduler))
        maps, index, version, paths = make_maps(
            lake,
            out_dir=None if args.no_export else args.out,
            night=args.night,
            frame_id=args.frame,
            since=args.since,
            until=args.until,
            per_frame=args.per_frame,
            nside=args.nside,
            frames_of=frames_of,
            refcat=args.refcat,
            profile=args.pipeline,
            client=client,
            samples=False,
        )
    if index.empty:
        print("nothing to map: no calibrated frame in the selection (run skylake calibrate first)")
        return EXIT_NOTHING
    from skylake.lake.tables import MAPS

    print(f"{len(index)} maps ({len(maps.pixels)} pixel rows) committed as v{version} to {lake.store.uri(MAPS)}")
    for row in index.to_dict("records"):
        pix = maps.pixels[maps.pixels["map_id"] == row["map_id"]]
        t = pix["transparency"].dropna()
        print(
            f"  {row['map_id']} {row['scope']} {row['frame_id'] if row['scope'] == 'frame' else row['night_min']} "
            f"{row['frame_of']} nside {row['nside']}: {row['n_pixels']} pixels, {row['n_stars']} stars"
            + (f", transparency {t.min():.2f}..{t.max():.2f}" if len(t) else "")
        )
    if paths:
        print(f"  {len(paths)} files (FITS, PNG) in {paths[0].parent}")
    return EXIT_OK


def add_commands(subparsers) -> None:
    """Add ``maps`` to an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level sub-commands.
    """
    p = subparsers.add_parser(
        "maps",  # not a table
        help="HEALPix maps: zeropoint, transparency, sky brightness, astrometric residuals",
        description="Per HEALPix pixel: the median zeropoint of the calibrated stars, their count, the "
        "transparency 10**(-0.4 (zp_clear - zp)) against the profile's clear-sky reference "
        "([maps] zp_clear), the sky brightness (mag/arcsec2) under the sources and the astrometric "
        "residuals, in equatorial and horizon (alt/az at the site) coordinates. Maps are committed "
        "to LAKE/maps (one row per pixel; LAKE/maps/_index lists them) and exported as HEALPix "
        "FITS and Mollweide PNGs. Default: one map per night. A night's maps made here are kept "
        "current by the ingest chain: when the night's frames, zeropoints or sources change, its next "
        "run makes the same maps again (not those made with --pipeline). Exit codes: 0 ok, 4 nothing "
        "to map, 2 usage error.",
    )
    p.add_argument("lake", help="lake directory")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--night", default=None, metavar="YYYY-MM-DD", help="one observing night")
    when.add_argument("--frame", type=int, default=None, metavar="ID", help="one frame (frame_id)")
    when.add_argument("--since", default=None, metavar="YYYY-MM-DD", help="one map over the nights from this one")
    p.add_argument("--until", default=None, metavar="YYYY-MM-DD", help="... up to this night (one map over the range)")
    p.add_argument("--per-frame", action="store_true", help="one map per frame of the selection")
    p.add_argument("--nside", type=int, default=None, help="HEALPix nside (default: the profile's [maps] nside, 8)")
    p.add_argument(
        "--frame-of",
        default="both",
        choices=["equatorial", "horizon", "both"],
        help="coordinates of the map (default both)",
    )
    p.add_argument("--refcat", default=None, metavar="NAME", help="calibration catalogue (default: the profile's)")
    p.add_argument("--pipeline", default=None, help="profile for [site] and [maps] (default: the frames' own)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"FITS and PNG exports (default {DEFAULT_OUT}/)")
    p.add_argument("--no-export", action="store_true", help="only commit the maps to the lake")
    p.add_argument("--list", action="store_true", help="list the maps in the lake and exit")
    p.add_argument(
        "--scheduler", default=None, help="dask scheduler address: the samples of each group of frames are a task there"
    )
    p.set_defaults(func=_cmd_maps)
