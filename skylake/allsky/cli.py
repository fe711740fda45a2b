"""``skylake camera fit FILE --pipeline P``: fit an all-sky camera's model on a clear frame.

Reads the frame as ingest does (the profile's ``[header]`` gives its time), fits the profile's ``[camera]``
model against the bright-star catalogue (``allsky.catalog``: a file, or a refcat of ``--lake``) with the
``[allsky]`` fit settings (``fit``, ``fit_vmax``, ``fit_alt_min_deg``), prints the rms residual in px and
deg and the stars used, draws the residual plot and writes a profile (``--out``) that extends P with the
fitted ``[camera]``: the file the user keeps and ingests with.

Wired into :mod:`skylake.cli` by ``add_commands(sub)``. Exit codes: 0 fitted; 2 usage error (no such file,
a profile without ``[camera]``, no catalogue); 4 the fit failed (the reason is printed: too few stars,
no orientation found; a cloudy frame).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sys
from pathlib import Path

from skylake.errors import EXIT_NOTHING, EXIT_OK, FrameRejected, UsageError, command


class CameraCliError(UsageError):
    """A usage error of ``skylake camera`` (exit 2)."""


def _errors(func):
    """:func:`skylake.errors.command`, with a frame that cannot be read a usage error naming the file."""

    @command
    @functools.wraps(func)
    def wrapper(args) -> int:
        try:
            return func(args)
        except FrameRejected as exc:
            raise CameraCliError(f"{args.file}: {exc.reason}") from None

    return wrapper


def read_frame(path: str, profile):
    """The first image the profile selects from ``path`` and its frame record (time, exposure) as ingest
    reads them. Raises :class:`FrameRejected` with the reason."""
    from skylake.frame import header, reading

    raw = reading.read_bytes(path, int(profile.max_image_mb * 1e6))
    image = reading.read_images(raw, profile.hdu, int(profile.max_image_mb * 1e6))[0]
    rec = header.frame_record(image.header, profile)
    return image, rec


def profile_text(model, base: str, fit, frame: str) -> str:
    """A profile file extending ``base`` with the fitted ``[camera]`` (TOML)."""
    def value(v):
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(round(v, 6) if isinstance(v, float) else v)

    lines = [f"# Written by `skylake camera fit` on {dt.date.today().isoformat()} from {frame}:",
             f"# rms {fit.rms_px:.3f} px = {fit.rms_deg:.4f} deg over {fit.n_matched} stars "
             f"({fit.n_detected} detected, {fit.n_predicted} predicted, {fit.n_clipped} clipped).",
             f'extends = "{base}"', "", "[camera]"]
    lines += [f"{k} = {value(v)}" for k, v in model.to_dict().items()]
    return "\n".join(lines) + "\n"


@_errors
def _cmd_camera_fit(args) -> int:
    from skylake.allsky.fit import CameraFitError, fit_camera, plot_fit_residuals
    from skylake.frame.allsky import bright_stars, catalog_source
    from skylake.profile import load_profile

    profile = load_profile(args.pipeline)
    if not profile.is_allsky:
        raise CameraCliError(f"profile {profile.name!r} ({profile.source}) has no [camera] section to fit")
    if not os.path.isfile(args.file):
        raise FileNotFoundError(f"no such file: {args.file}")
    if args.catalog:
        source = os.path.abspath(args.catalog)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"no such catalogue file: {args.catalog}")
    else:
        from skylake.errors import FrameRejected
        from skylake.lake import Lake

        try:
            source = catalog_source(profile, Lake.open(args.lake).store.location if args.lake else None)
        except FrameRejected as exc:
            raise CameraCliError(f"{exc.reason}; or give --lake LAKE or --catalog FILE") from None
    model0, site = profile.camera_model()
    settings = profile.allsky_settings()
    image, rec = read_frame(args.file, profile)
    from astropy.time import Time

    time = Time(rec["mjd"], format="mjd", scale="utc")
    try:
        fit = fit_camera(image.data, model0, site, time, bright_stars(source), vmax=settings.fit_vmax,
                         alt_min_deg=settings.fit_alt_min_deg, fit=settings.fit)
    except CameraFitError as exc:
        print(f"camera fit failed on {args.file}: {exc.reason}", file=sys.stderr)
        return EXIT_NOTHING
    m = fit.model
    print(f"{args.file}: {fit.n_matched} stars of V < {settings.fit_vmax:g} above {settings.fit_alt_min_deg:g} deg "
          f"used ({fit.n_detected} detected, {fit.n_predicted} predicted, {fit.n_clipped} clipped)")
    print(f"rms residual {fit.rms_px:.3f} px = {fit.rms_deg:.4f} deg ({3600 * fit.rms_deg:.0f} arcsec)")
    print(f"model: {m.projection} f = {m.focal_length_mm:.5f} mm, x0 = {m.x0:.3f}, y0 = {m.y0:.3f} px, "
          f"rotation {m.rotation_deg:.3f} deg, parity {m.parity:+d}, k1 = {m.k1:.5f}"
          + (f", tilt {m.tilt_deg:.3f} deg towards {m.tilt_az_deg:.1f}" if m.tilt_deg else ""))
    plot = Path(args.plot)
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_fit_residuals(fit, plot, image=image.data,
                       title=f"{Path(args.file).name}: camera fit, rms {fit.rms_px:.2f} px over {fit.n_matched} stars")
    print(f"residual plot: {plot}")
    if args.out:
        base = profile.name if Path(profile.source).parent.name == "pipelines" and \
            Path(profile.source).stem == profile.name else str(Path(profile.source).resolve())
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(profile_text(m, base, fit, args.file))
        load_profile(out)  # what it wrote loads
        print(f"profile: {out} (ingest with --pipeline {out})")
    return EXIT_OK


def add_commands(sub) -> None:
    p = sub.add_parser("camera", help="all-sky camera models (fit)")
    csub = p.add_subparsers(dest="camera_command", required=True, metavar="COMMAND")
    f = csub.add_parser("fit", help="fit a profile's [camera] model on a clear frame",
                        description=__doc__.split("\n\n")[1].replace("\n", " ")
                        + " Exit codes: 0 fitted; 2 usage error; 4 the fit failed (reason printed).")
    f.add_argument("file", help="a clear frame of the camera (FITS)")
    f.add_argument("--pipeline", required=True, help="the camera's profile (name in pipelines/ or .toml/.yaml) "
                                                     "with [camera] (the starting model) and [allsky]")
    f.add_argument("--out", default=None, metavar="PROFILE.toml",
                   help="write a profile extending --pipeline with the fitted [camera]")
    f.add_argument("--plot", default="camera-fit.png", metavar="PNG", help="residual plot (default camera-fit.png)")
    f.add_argument("--lake", default=None, help="lake whose refcat allsky.catalog names (when it is not a file)")
    f.add_argument("--catalog", default=None, metavar="FILE",
                   help="bright-star file (Hipparcos FITS/Parquet: ra, dec, v_mag) instead of allsky.catalog")
    f.set_defaults(func=_cmd_camera_fit)
