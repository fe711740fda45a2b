"""``skylake camera fit FRAME... --pipeline P``: fit an all-sky camera's model on its clearest frame.

Reads the frame as ingest does (the profile's ``[header]`` gives its time), fits the profile's ``[camera]``
model against the bright-star catalogue (``allsky.catalog``: a file, or a refcat of ``--lake``) with the
``[allsky]`` fit settings (``fit``, ``fit_vmax``, ``fit_alt_min_deg``), prints the stars used, the rms
residual in px and deg and each parameter's spread, says in one line when the header's or the profile's focal
length and pixel size disagree with the scale the stars give, draws the residual plot and writes a profile
(``--out``) that extends P with the fitted ``[camera]`` (with the fit's stars, rms and spreads): the file the
user keeps and ingests with. Given several frames (or folders), each is fitted alone and the clearest (the most
stars matched) gives the model; each other frame says its cloud fraction with that model and whether it agrees
or was too cloudy to vote (fewer than half the clearest's stars). A ``[camera]`` that gives only the lens
projection (with the profile's ``[site]``) is searched from nothing (``--search`` forces it): every zenith pixel
of the image, both parities, any rotation and scale (:mod:`skylake.allsky.search`).

``skylake camera mask LAKE --profile P`` learns the camera's foreground mask (the horizon, structures in most clear
frames, sky where predicted stars are never seen: :mod:`skylake.allsky.foreground`) from the profile's frames in
the lake (``--night``, ``--since``, ``--until`` narrow them: one period) and commits it (:mod:`skylake.allsky.masks`);
frames ingested afterwards leave its pixels out. Exit codes: 0 built (or found, built before from the same frames);
2 usage error (no such lake, profile without frames, too few clear frames).

Wired into :mod:`skylake.cli` by ``add_commands(sub)``. Exit codes of ``camera fit``: 0 fitted; 2 usage error (no
such file, a profile without ``[camera]``, no catalogue); 4 the fit failed (the reason is printed: too few stars,
no orientation found; a cloudy frame).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sys
from pathlib import Path

from skylake.errors import EXIT_NOTHING, EXIT_OK, FrameRejected, UsageError, command

__all__ = [
    "CameraCliError",
    "FRAME_PATTERNS",
    "VOTE_FRACTION",
    "read_frame",
    "FOCAL_LENGTH_KEYS",
    "PIXEL_SIZE_KEYS",
    "BINNING_KEYS",
    "SCALE_TOLERANCE",
    "scale_contradictions",
    "profile_text",
    "add_commands",
]


class CameraCliError(UsageError):
    """A usage error of ``skylake camera`` (exit 2)."""


def _errors(func):
    """:func:`skylake.errors.command`, with a frame that cannot be read a usage error naming the file."""

    @command
    @functools.wraps(func)
    def wrapper(args) -> int:
        """Run the command, a frame that cannot be read raised as a :class:`CameraCliError`.

        Parameters
        ----------
        args : argparse.Namespace
            The parsed command line (``file`` names the frame).

        Returns
        -------
        int
            The command's exit code.

        Raises
        ------
        CameraCliError
            If the frame is rejected (the file and the reason named); :func:`skylake.errors.command`
            turns it into exit code 2.
        """
        try:
            return func(args)
        except FrameRejected as exc:
            raise CameraCliError(f"{getattr(args, 'file', None) or ' '.join(args.files)}: {exc.reason}") from None

    return wrapper


def read_frame(path: str, profile):
    """The first image the profile selects from ``path`` and its frame record (time, exposure) as ingest reads them.

    Parameters
    ----------
    path : str
        The frame's file (a local path or an object-store URL).
    profile : skylake.profile.Profile
        The camera's profile (``max_image_mb``, ``hdu``, ``[header]``).

    Returns
    -------
    image : skylake.frame.reading.Image
        The image (``data``, ``header``, ``hdu``).
    rec : dict
        The frame record (``mjd`` at mid-exposure, exposure time, ...).

    Raises
    ------
    FrameRejected
        With the reason, when the file cannot be read or its header gives no usable time or exposure.
    """
    from skylake.frame import header, reading

    raw = reading.read_bytes(path, int(profile.max_image_mb * 1e6))
    image = reading.read_images(raw, profile.hdu, int(profile.max_image_mb * 1e6))[0]
    rec = header.frame_record(image.header, profile, image.file_max)
    return image, rec


#: Header keywords of the optics a camera's frames may carry (mm, um, binning), checked against the fitted scale.
FOCAL_LENGTH_KEYS = ("FOCALLEN",)
PIXEL_SIZE_KEYS = ("XPIXSZ", "PIXSZ", "PIXWIDTH", "PIXSIZE1")
BINNING_KEYS = ("XBINNING", "CCDXBIN")
#: A focal length or pixel size this far from what the fit gives is said to be wrong.
SCALE_TOLERANCE = 0.03


def scale_contradictions(header, camera: dict, model) -> list[str]:
    """One line per source of the scale that disagrees with the fitted pixels per radian.

    The sources are the profile's focal length and pixel size, and the header's FOCALLEN and pixel size
    (with or without the binning, the closer of the two); each line names the keyword or setting, its
    value and the value the fit implies.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header (:data:`FOCAL_LENGTH_KEYS`, :data:`PIXEL_SIZE_KEYS`, :data:`BINNING_KEYS`).
    camera : dict
        The profile's ``[camera]`` table.
    model : skylake.allsky.camera.CameraModel
        The fitted model (its ``f_px``).

    Returns
    -------
    list of str
        The warning lines for the sources off by more than :data:`SCALE_TOLERANCE`; empty when none is.
    """
    fitted = model.f_px
    lines = []
    if "focal_length_mm" in camera and "pixel_size_mm" in camera:
        given = float(camera["focal_length_mm"]) / float(camera["pixel_size_mm"])
        if abs(given / fitted - 1) > SCALE_TOLERANCE:
            lines.append(
                f"warning: [camera] focal_length_mm = {camera['focal_length_mm']} and pixel_size_mm = "
                f"{camera['pixel_size_mm']} give {given:.1f} px per radian, the stars {fitted:.1f} "
                f"({given / fitted:.2f}x): with that focal length the pixel size is "
                f"{float(camera['focal_length_mm']) / fitted:.5f} mm"
            )

    def first(keys):
        """The first of ``keys`` the header gives as a positive number.

        Parameters
        ----------
        keys : sequence of str
            Header keywords, in order of preference.

        Returns
        -------
        key : str or None
            The keyword, None when none qualifies.
        value : float or None
            Its value, None when none qualifies.
        """
        for k in keys:
            v = header.get(k)
            try:
                if v is not None and float(v) > 0:
                    return k, float(v)
            except (TypeError, ValueError):
                continue
        return None, None

    fkey, focal = first(FOCAL_LENGTH_KEYS)
    pkey, pixel_um = first(PIXEL_SIZE_KEYS)
    bkey, binning = first(BINNING_KEYS)
    if focal and pixel_um:
        binning = binning or 1.0
        # the pixel size with or without the binning in it (cameras write both): the closer one is checked
        ratios = [focal / (pixel_um / 1000.0) / fitted, focal / (pixel_um * binning / 1000.0) / fitted]
        ratio = min(ratios, key=lambda r: abs(r - 1))
        if abs(ratio - 1) > SCALE_TOLERANCE:
            bin_text = f", {bkey} = {binning:g}" if bkey else ""
            lines.append(
                f"warning: header {pkey} = {pixel_um:g} um{bin_text} and {fkey} = {focal:g} mm give "
                f"{fitted * ratio:.1f} px per radian, the stars {fitted:.1f} ({ratio:.2f}x): {pkey} would be "
                f"{1000 * focal / fitted:.3g} um for that {fkey}"
            )
    return lines


def profile_text(model, base: str, fit, frame: str) -> str:
    """A profile file extending ``base`` with the fitted ``[camera]`` (TOML).

    Parameters
    ----------
    model : skylake.allsky.camera.CameraModel
        The fitted model (with how it was fitted, see :meth:`skylake.allsky.fit.FitResult.fitted_model`).
    base : str
        The profile extended: a name in ``pipelines/`` or a path.
    fit : skylake.allsky.fit.FitResult
        The fit, quoted in the header comment (rms, stars).
    frame : str
        The frame fitted, named in the header comment.

    Returns
    -------
    str
        The TOML text: comment lines, ``extends`` and the ``[camera]`` table.
    """

    def value(v):
        """A TOML value of a setting.

        Parameters
        ----------
        v : str or float or int or list or tuple or dict
            The setting's value.

        Returns
        -------
        str
            The value as TOML (strings quoted, sequences as arrays, dicts as inline tables, floats
            rounded to 6 decimals).
        """
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(round(v, 6) if isinstance(v, float) else v)

    lines = [
        f"# Written by `skylake camera fit` on {dt.date.today().isoformat()} from {frame}:",
        f"# rms {fit.rms_px:.3f} px = {fit.rms_deg:.4f} deg over {fit.n_matched} stars "
        f"({fit.n_detected} detected, {fit.n_predicted} predicted, {fit.n_clipped} clipped).",
        f'extends = "{base}"',
        "",
        "[camera]",
    ]
    lines += [f"{k} = {value(v)}" for k, v in model.to_dict().items()]
    return "\n".join(lines) + "\n"


def _catalog_file(args, profile) -> str:
    """The bright-star catalogue to fit with: ``--catalog``, else the profile's (a file, or ``--lake``'s refcat)."""
    from skylake.tasks.allsky import catalog_source

    if args.catalog:
        source = os.path.abspath(args.catalog)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"no such catalogue file: {args.catalog}")
        return source
    from skylake.lake import Lake

    try:
        return catalog_source(profile, Lake.open(args.lake).store.location if args.lake else None)
    except FrameRejected as exc:
        raise CameraCliError(f"{exc.reason}; or give --lake LAKE or --catalog FILE") from None


def _fit(image, profile, site, time, source: str, settings, search: bool):
    """Fit the profile's camera on ``image`` (stars of ``source``): searched from the site alone, or from its model."""
    from skylake.allsky.camera import camera_of
    from skylake.allsky.fit import fit_camera, fit_from_site
    from skylake.tasks.allsky import bright_stars

    if search:  # from the projection and the site alone: zenith, rotation and scale searched
        return fit_from_site(
            image.data,
            profile.camera,
            site,
            time,
            bright_stars(source),
            vmax=settings.fit_vmax,
            alt_min_deg=settings.fit_alt_min_deg,
            fit=settings.fit,
        )
    model0, _ = camera_of(profile)
    return fit_camera(
        image.data,
        model0,
        site,
        time,
        bright_stars(source),
        vmax=settings.fit_vmax,
        alt_min_deg=settings.fit_alt_min_deg,
        fit=settings.fit,
    )


def _scale_given(camera: dict, header) -> bool:
    """Whether a focal length or pixel size is known (the profile's or the header's): the stars give only their
    ratio, so without one the millimetres printed are those of an assumed pixel."""
    if "focal_length_mm" in camera or "pixel_size_mm" in camera:
        return True
    return any(header.get(k) for k in (*FOCAL_LENGTH_KEYS, *PIXEL_SIZE_KEYS))


def _print_fit(args, fit, settings, search: bool, missing, scale_given: bool = True) -> None:
    """Print the stars used, the rms residual and the fitted model with its parameters' spread."""
    m = fit.model
    optics = (
        f"f = {m.focal_length_mm:.5f} mm at {1000 * m.pixel_size_mm:.2f} um pixels"
        if scale_given
        else f"f = {m.focal_length_mm:.5f} mm only if the pixels are {1000 * m.pixel_size_mm:.2f} um: the stars "
        "give the ratio, and neither the profile nor the header gives a focal length or pixel size"
    )
    print(
        f"{args.file}: {fit.n_matched} stars of V < {settings.fit_vmax:g} above {settings.fit_alt_min_deg:g} deg "
        f"used ({fit.n_detected} detected, {fit.n_predicted} predicted, {fit.n_clipped} clipped)"
        + (
            "; zenith, rotation and scale searched ("
            + ("--search" if args.search else "the profile gives no " + ", ".join(missing))
            + ")"
            if search
            else ""
        )
    )
    print(f"rms residual {fit.rms_px:.3f} px = {fit.rms_deg:.4f} deg ({3600 * fit.rms_deg:.0f} arcsec)")
    spread = fit.sigma
    print(
        f"model: {m.projection}, {m.f_px:.3f} px per radian ({optics}), "
        f"zenith x0 = {m.x0:.3f} +- {spread.get('x0', float('nan')):.3f}, "
        f"y0 = {m.y0:.3f} +- {spread.get('y0', float('nan')):.3f} px, rotation {m.rotation_deg:.3f} +- "
        f"{spread.get('rotation_deg', float('nan')):.3f} deg, parity {m.parity:+d}, k1 = {m.k1:.5f}"
        + (f", tilt {m.tilt_deg:.3f} deg towards {m.tilt_az_deg:.1f}" if m.tilt_deg else "")
    )


def _write_profile(args, profile, fit) -> None:
    """Write ``--out``: a profile extending the fitted one with the fitted ``[camera]`` (checked to load)."""
    from skylake.profile import load_profile

    base = (
        profile.name
        if Path(profile.source).parent.name == "pipelines" and Path(profile.source).stem == profile.name
        else str(Path(profile.source).resolve())
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(profile_text(fit.fitted_model(), base, fit, args.file))
    load_profile(out)  # what it wrote loads
    print(f"profile: {out} (ingest with --pipeline {out})")


#: Frame files a folder given to ``camera fit`` is searched for.
FRAME_PATTERNS = ("*.fits", "*.fit", "*.fts", "*.fits.gz", "*.fit.gz")
#: A frame whose stars matched fewer than this fraction of the clearest frame's is too cloudy to vote.
VOTE_FRACTION = 0.5


def _frame_files(paths: list[str]) -> list[str]:
    """The frames named: files as given, folders searched (not recursively) for :data:`FRAME_PATTERNS`."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted({str(f) for pattern in FRAME_PATTERNS for f in Path(p).glob(pattern)})
            if not found:
                raise FileNotFoundError(f"no frames ({', '.join(FRAME_PATTERNS)}) in folder {p}")
            out += found
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file: {p}")
    return out


def _fit_each(files, profile, site, source, settings, search: bool) -> list[tuple]:
    """Each frame's fit: ``(file, image, time, fit or None, why not)`` (image and time None: not read)."""
    from astropy.time import Time

    from skylake.allsky.fit import CameraFitError

    tried = []
    for file in files:
        try:
            image, rec = read_frame(file, profile)
        except FrameRejected as exc:  # one unreadable frame of a night does not stop the others
            if len(files) == 1:
                raise CameraCliError(f"{file}: {exc.reason}") from None
            tried.append((file, None, None, None, f"cannot be read: {exc.reason}"))
            continue
        time = Time(rec["mjd"], format="mjd", scale="utc")
        try:
            fit = _fit(image, profile, site, time, source, settings, search)
        except CameraFitError as exc:
            tried.append((file, image, time, None, exc.reason))
        else:
            tried.append((file, image, time, fit, ""))
    return tried


def _cloud_with(model, image, time, site, source, settings) -> float:
    """A frame's cloud fraction with ``model``: how much of its sky the stars say is clouded."""
    import numpy as np

    from skylake.allsky.pipeline import measure_stars
    from skylake.tasks.allsky import bright_stars

    _, cf = measure_stars(np.asarray(image.data, float), model, site, time, bright_stars(source), settings)
    return cf["cloud_fraction"]


def _the_vote(tried, site, source, settings) -> tuple | None:
    """The clearest frame's ``(file, image, time, fit, "")`` (the most stars matched), each frame's part said in
    one line; None when none fits."""
    fitted = [t for t in tried if t[3] is not None]
    if not fitted:
        return None
    best = max(fitted, key=lambda t: (t[3].n_matched, -t[3].rms_px))
    model, n_best = best[3].model, best[3].n_matched
    if len(tried) > 1:
        for file, image, time, fit, why in tried:
            if file == best[0]:
                print(f"{file}: the clearest ({fit.n_matched} stars, rms {fit.rms_px:.2f} px): its fit is the model")
                continue
            if image is None:
                print(f"{file}: {why}")
                continue
            cloud = _cloud_with(model, image, time, site, source, settings)
            if fit is None or fit.n_matched < VOTE_FRACTION * n_best:
                alone = f"alone: {why}" if fit is None else f"{fit.n_matched} stars matched alone"
                print(f"{file}: too cloudy to vote (cloud fraction {cloud:.2f} with the model; {alone})")
            else:
                d = _zenith_distance(fit.model, model)
                print(
                    f"{file}: agrees (cloud fraction {cloud:.2f} with the model; {fit.n_matched} stars, rms "
                    f"{fit.rms_px:.2f} px, zenith {d:.2f} px from the model's)"
                )
    return best


def _zenith_distance(a, b) -> float:
    """How far apart two models put the zenith, px."""
    import math

    xa, ya = a.altaz_to_pixel(90.0, 0.0)
    xb, yb = b.altaz_to_pixel(90.0, 0.0)
    return math.hypot(float(xa) - float(xb), float(ya) - float(yb))


@_errors
def _cmd_camera_fit(args) -> int:
    from skylake.allsky.camera import CameraModel, Site
    from skylake.allsky.fit import plot_fit_residuals
    from skylake.allsky.pipeline import allsky_settings
    from skylake.profile import load_profile

    profile = load_profile(args.pipeline)
    if not profile.is_allsky:
        raise CameraCliError(
            f"profile {profile.name!r} ({profile.source}) has no [camera] section to fit (give at "
            f'least its projection, e.g. [camera] projection = "equidistant", and its [site])'
        )
    files = _frame_files(args.files)
    source = _catalog_file(args, profile)
    missing = CameraModel.missing(profile.camera)
    site = Site(profile.site.lat_deg, profile.site.lon_deg, profile.site.height_m)
    settings = allsky_settings(profile)
    search = args.search or bool(missing)
    tried = _fit_each(files, profile, site, source, settings, search)
    best = _the_vote(tried, site, source, settings)
    if best is None:
        for file, *_, why in tried:
            print(f"camera fit failed on {file}: {why}", file=sys.stderr)
        return EXIT_NOTHING
    file, image, _, fit, _ = best
    args.file = file
    _print_fit(args, fit, settings, search, missing, scale_given=_scale_given(profile.camera, image.header))
    for line in scale_contradictions(image.header, profile.camera, fit.model):
        print(line)
    plot = Path(args.plot)
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_fit_residuals(
        fit,
        plot,
        image=image.data,
        title=f"{Path(file).name}: camera fit, rms {fit.rms_px:.2f} px over {fit.n_matched} stars",
    )
    print(f"residual plot: {plot}")
    if args.out:
        _write_profile(args, profile, fit)
    return EXIT_OK


@command
def _cmd_camera_mask(args) -> int:
    from skylake.allsky.masks import build_mask
    from skylake.lake import Lake
    from skylake.lake.frames import FrameSelection

    lake = Lake.open(args.lake)
    try:
        result = build_mask(lake, args.profile, FrameSelection(night=args.night, since=args.since, until=args.until))
    except ValueError as exc:
        raise CameraCliError(str(exc)) from None
    r = result.row
    print(
        f"camera mask {result.mask_id} of {args.profile} ({result.outcome}): {r['n_frames']} clear frames "
        f"({r['n_cloudy']} left out as cloudy), {100 * r['masked_fraction']:.1f} % of the sky masked "
        f"(structures {100 * r['structure_fraction']:.1f} %, stars never seen {100 * r['unseen_fraction']:.1f} %); "
        f"frames ingested from MJD {r['valid_from']:.5f} on use it"
    )
    return EXIT_OK


def add_commands(sub) -> None:
    """Add ``skylake camera fit`` and ``skylake camera mask`` to the command line.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The sub-parsers of :mod:`skylake.cli`'s parser.
    """
    p = sub.add_parser("camera", help="all-sky camera models (fit) and foreground masks (mask)")
    csub = p.add_subparsers(dest="camera_command", required=True, metavar="COMMAND")
    f = csub.add_parser(
        "fit",
        help="fit a profile's [camera] model on a clear frame",
        description=__doc__.split("\n\n")[1].replace("\n", " ")
        + " Exit codes: 0 fitted; 2 usage error; 4 the fit failed (reason printed).",
    )
    f.add_argument(
        "files",
        nargs="+",
        metavar="FRAME",
        help="frames of the camera (FITS files, or folders of them): each is fitted alone and the clearest "
        "(most stars matched) gives the model; the others say whether they agree or were too cloudy to vote",
    )
    f.add_argument(
        "--pipeline",
        required=True,
        help="the camera's profile (name in pipelines/ or .toml/.yaml) with [camera] (the starting model) and [allsky]",
    )
    f.add_argument(
        "--out",
        default=None,
        metavar="PROFILE.toml",
        help="write a profile extending --pipeline with the fitted [camera]",
    )
    f.add_argument("--plot", default="camera-fit.png", metavar="PNG", help="residual plot (default camera-fit.png)")
    f.add_argument("--lake", default=None, help="lake whose refcat allsky.catalog names (when it is not a file)")
    f.add_argument(
        "--catalog",
        default=None,
        metavar="FILE",
        help="bright-star file (Hipparcos FITS/Parquet: ra, dec, v_mag) instead of allsky.catalog",
    )
    f.add_argument(
        "--search",
        action="store_true",
        help="search the zenith pixel (anywhere in the image), rotation, parity and scale (any) from the "
        "site alone, ignoring the profile's starting values (automatic when [camera] gives only "
        "the projection)",
    )
    f.set_defaults(func=_cmd_camera_fit)
    m = csub.add_parser(
        "mask",
        help="learn an all-sky camera's foreground mask from its clear frames in a lake",
        description=__doc__.split("\n\n")[2].replace("\n", " "),
    )
    m.add_argument("lake", help="the lake holding the camera's frames")
    m.add_argument("--profile", required=True, help="the camera's profile name (as its frames were ingested)")
    m.add_argument("--night", default=None, metavar="YYYY-MM-DD", help="only this night's frames")
    m.add_argument("--since", default=None, metavar="YYYY-MM-DD", help="first night of the period")
    m.add_argument("--until", default=None, metavar="YYYY-MM-DD", help="last night of the period")
    m.set_defaults(func=_cmd_camera_mask)
