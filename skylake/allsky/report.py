"""The all-sky part of a camera's report page: zenith-centred polar plots of its latest mapped frame
(transparency, sky brightness, catalogue stars seen and missed) and a table of its latest frames
(cloud fraction, zeropoint, zenith sky, streaks). Read from the lake (frames, LAKE/maps frame maps,
forced source rows), drawn by :mod:`skylake.allsky.plots`.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

from skylake.allsky.pipeline import allsky_settings

__all__ = ["TABLE_FRAMES", "FRAME_COLUMNS", "allsky_frames", "allsky_section"]


#: All-sky frames listed in the page's table (the most recent).
TABLE_FRAMES = 30
FRAME_COLUMNS = [
    "frame_id",
    "path",
    "date_obs",
    "status",
    "cloud_fraction",
    "n_stars_seen",
    "n_stars_expected",
    "allsky_zeropoint",
    "sky_mag_zenith",
    "n_streaks",
    "astrometry_rms_px",
    "camera_shift_px",
    "camera_rotation_deg",
]


def allsky_frames(lake):
    """Frames placed by a camera model (``wcs_source = 'camera'``), with instrument, filter and mjd.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.

    Returns
    -------
    pandas.DataFrame
        One row per frame: instrument, filter, mjd, profile, pipeline version, extract note and
        :data:`FRAME_COLUMNS`.
    """
    flt = pads.field("wcs_source") == "camera"
    cols = ["instrument", "filter", "mjd", "profile", "pipeline_version", "extract_note", *FRAME_COLUMNS]
    return lake.read_frames(columns=cols, filter=flt).to_pandas()


def _fmt(v, digits=3):
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "&ndash;"
    return f"{v:.{digits}f}" if isinstance(v, float) else html.escape(str(v))


def _plain(v) -> str:
    """A number for a picture's title (no HTML entity): two decimals, or "unknown"."""
    v = float(v) if v is not None else float("nan")
    return f"{v:.2f}" if np.isfinite(v) else "unknown"


def _map_plots(lake, mine, img: Path, stem: str, fid: int, when: str) -> tuple:
    """Transparency and sky-brightness plots of a frame's horizon maps (``mine``, rows of the map index).

    Returns ``(nside, pngs)``: the maps' nside (None without maps) and the PNGs drawn.
    """
    from astropy.table import Table

    from skylake.allsky.plots import CONVENTION, STAR_COUNTS, plot_sky_brightness_map, plot_transparency
    from skylake.maps.store import read_maps

    pngs = []
    if not len(mine):
        return None, pngs
    nside = int(mine["nside"].iloc[0])
    pix = Table.from_pandas(
        read_maps(lake, mine["map_id"].tolist())[
            ["pixel", "lon", "lat", "n_stars", "n_seen", "transparency", "sky_mag"]
        ]
    )
    tr = pix[np.isfinite(np.asarray(pix["transparency"], float))]
    sky = pix[np.isfinite(np.asarray(pix["sky_mag"], float))]
    if len(tr):
        pngs.append(
            plot_transparency(
                tr,
                nside,
                img / f"{stem}_allsky_{fid}_transparency.png",
                title=f"Transparency, frame {fid} ({when} UTC)\n{CONVENTION}\n{STAR_COUNTS}",
            )
        )
    if len(sky):
        pngs.append(
            plot_sky_brightness_map(
                sky,
                nside,
                img / f"{stem}_allsky_{fid}_sky.png",
                title=f"Sky brightness, frame {fid} ({when} UTC)\n{CONVENTION}",
            )
        )
    return nside, pngs


def _settings_of(lake, frame):
    """The ``[allsky]`` settings of the profile that ingested ``frame`` (None when the lake does not hold it)."""
    from skylake.profile import ProfileError
    from skylake.profile_store import frames_profile

    try:
        prof = frames_profile(lake, frame["profile"], frame["pipeline_version"])
    except ProfileError:
        return None
    return allsky_settings(prof) if prof.is_allsky else None


def _cloud_stars_limits(lake, frame) -> tuple[float, float]:
    """The stars the cloud fraction counts, as the frame's profile says: ``(vmax, alt_min_deg)``."""
    cfg = _settings_of(lake, frame)  # None: a lake without the profile stored: the camera project's defaults
    return (cfg.cloud_vmax, cfg.cloud_alt_min_deg) if cfg is not None else (4.0, 20.0)


def _stars_plot(lake, frame, fid: int, vmax: float, alt_min: float, img: Path, stem: str) -> list:
    """The plot of the frame's forced catalogue stars of ``mag <= vmax`` above ``alt_min``, seen and missed.

    Returns the PNG in a list, [] when the frame has no such stars.
    """
    from astropy.table import Table

    from skylake.allsky.plots import CONVENTION, plot_stars
    from skylake.tasks.allsky import FORCED_NOT_SEEN

    src = lake.read_sources(
        columns=["alt", "az", "ref_mag", "flags", "measure"],
        filter=(pads.field("frame_id") == fid)
        & (pads.field("measure") == "forced")
        & (pads.field("ref_mag") <= vmax)
        & (pads.field("alt") >= alt_min),
    ).to_pandas()
    if not len(src):
        return []
    stars = Table(
        {
            "alt": src["alt"].to_numpy(float),
            "az": src["az"].to_numpy(float),
            "mag": src["ref_mag"].to_numpy(float),
        }
    )
    seen = (src["flags"].to_numpy() & FORCED_NOT_SEEN) == 0
    return [
        plot_stars(
            None,
            None,
            stars,
            img / f"{stem}_allsky_{fid}_stars.png",
            seen=seen,
            title=f"Catalogue stars, frame {fid}: cloud fraction {_plain(frame['cloud_fraction'])}\n{CONVENTION}",
        )
    ]


def _latest_frame(lake, frame, index, out: Path, stem: str) -> tuple[list[str], list[Path]]:
    """HTML and PNGs of the latest frame: its maps (when it has them) and its catalogue stars."""
    fid = int(frame["frame_id"])
    when = html.escape(str(frame["date_obs"])[:19])
    img = out / "img"
    nside, pngs = _map_plots(lake, index[index["frame_id"] == fid], img, stem, fid, when)
    vmax, alt_min = _cloud_stars_limits(lake, frame)
    pngs += _stars_plot(lake, frame, fid, vmax, alt_min, img, stem)
    note = str(frame.get("extract_note") or "")
    maps_text = (
        f"transparency (1 = the clear sky of the zeropoint; 0 where none of the pixel's stars a clear sky "
        f"shows is seen; numbers: stars seen / stars expected) and sky brightness [mag/arcsec&sup2;] per "
        f"HEALPix pixel (nside {nside}), and "
        if nside
        else f"{html.escape(note if note.startswith('no maps') else 'no maps')}; "
    )
    parts = [
        f"<p class=muted>The latest frame ({fid}, {when} UTC), zenith at the centre, north up, east left "
        f"(seen from below): {maps_text}the catalogue stars measured by forced photometry (green: seen, "
        f"red: not seen: the stars of V &le; {vmax:g} above {alt_min:g}&deg; the cloud fraction "
        f"counts).</p>"
    ]
    parts += [f'<img src="img/{Path(p).name}" alt="{html.escape(Path(p).stem)}" width="49%">' for p in pngs]
    return parts, [Path(p) for p in pngs]


def _frames_table(frames, settings=None) -> str:
    """The table of the latest :data:`TABLE_FRAMES` frames, newest first, with its heading (and, when the
    profile's ``settings`` give ``zp_clear``, a line saying the zeropoint is that setting, not a measure)."""
    head = "".join(f"<th>{c}</th>" for c in FRAME_COLUMNS)
    rows = []
    for r in frames.iloc[::-1][:TABLE_FRAMES].itertuples():
        cells = [
            f"<td class=text>{_fmt(getattr(r, c))}</td>"
            if c in ("path", "date_obs", "status")
            else f"<td>{_fmt(getattr(r, c))}</td>"
            for c in FRAME_COLUMNS
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    n_streak_frames = int((frames["n_streaks"].fillna(0) > 0).sum())
    return (
        f"<h3>All-sky frames (latest {min(len(frames), TABLE_FRAMES)} of {len(frames)}; {n_streak_frames} "
        f"with streaks)</h3>\n{_zeropoint_note(settings)}<div class=scroll><table><tr>{head}</tr>\n"
        + "\n".join(rows)
        + "</table></div>"
    )


def _zeropoint_note(settings) -> str:
    """What ``allsky_zeropoint`` is: a setting copied (``zp_clear``) or measured on each frame."""
    if settings is None:
        return ""
    if settings.zp_clear is not None:
        return (
            f"<p class=muted>allsky_zeropoint is the profile's <code>zp_clear = {settings.zp_clear:g}</code>: a "
            "setting the transparency maps are relative to, not a measure of these frames.</p>\n"
        )
    return (
        f"<p class=muted>allsky_zeropoint is measured on each frame: the {settings.zp_percentile:g}th percentile of "
        "its stars' zeropoints.</p>\n"
    )


def allsky_section(lake, frames, out: Path, stem: str) -> tuple[str, list[Path]]:
    """HTML and PNGs (in ``out/img``) for the all-sky ``frames`` of one camera page.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake (frame maps, forced source rows, stored profiles).
    frames : pandas.DataFrame or None
        The camera's all-sky frames (rows of :func:`allsky_frames`).
    out : pathlib.Path
        The report's directory; the PNGs go to ``out/img``.
    stem : str
        Prefix of the PNG names (the camera page's).

    Returns
    -------
    html : str
        The section's HTML; "" when there are no frames.
    images : list of pathlib.Path
        The PNGs drawn; [] when there are no frames.
    """
    from skylake.maps.store import read_index

    if frames is None or frames.empty:
        return "", []
    frames = frames.sort_values("mjd")
    index = read_index(lake)
    index = index[
        (index["scope"] == "frame") & (index["frame_of"] == "horizon") & index["frame_id"].isin(frames["frame_id"])
    ]
    parts = ["<h2>All-sky camera</h2>"]
    images: list[Path] = []
    ok = frames[frames["status"] != "rejected"]
    if len(ok):
        # the latest frame whose model fits (else the latest kept); its maps when it has them (a frame
        # without a zeropoint has none)
        good = ok[ok["status"] == "ok"]
        latest, images = _latest_frame(lake, (good if len(good) else ok).iloc[-1], index, out, stem)
        parts += latest
    offsets = _offsets_plot(lake, ok, out / "img", stem)
    if offsets is not None:
        images.append(offsets)
        parts.append(
            "<h3>Camera model on each frame</h3>\n<p class=muted>The bright stars' centroids against the "
            "profile's model: its rms, and the shift and turn of the chip they give. A frame where the camera "
            "moved is refitted from the model (red); one that cannot be is kept with the status camera_moved.</p>"
            f'<img src="img/{offsets.name}" alt="camera model offsets" width="70%">'
        )
    mask_html, mask_png = _mask_section(lake, ok if len(ok) else frames, out / "img", stem)
    parts.append(mask_html)
    images += mask_png
    parts.append(_frames_table(frames, _settings_of(lake, frames.iloc[-1])))
    return "\n".join(parts), images


def _mask_section(lake, frames, img: Path, stem: str) -> tuple[str, list[Path]]:
    """The camera's newest foreground mask drawn over its latest frame, or how to build one."""
    from skylake.allsky.foreground import HORIZON, STRUCTURE, UNSEEN, mask_from_fits
    from skylake.allsky.masks import read_masks
    from skylake.allsky.plots import plot_foreground_mask
    from skylake.lake.frames import FrameSelection, select_frames
    from skylake.profile_store import frames_profile
    from skylake.reduce.pixels import PIXEL_COLUMNS, frame_pixels

    layers = (
        (HORIZON, "horizon (below allsky.mask_alt_min_deg)"),
        (STRUCTURE, "structure (darker or brighter than the sky on most clear frames)"),
        (UNSEEN, "stars predicted and never seen"),
    )
    latest = frames.iloc[-1]
    name = str(latest["profile"])
    head = "<h3>Foreground mask</h3>\n"
    masks = read_masks(lake, name)
    if not len(masks):
        return (
            f"{head}<p class=muted>No foreground mask yet: <code>skylake camera mask LAKE --profile "
            f"{html.escape(name)}</code> learns one from the camera's clear frames (the horizon, structures in "
            "most frames, sky where catalogue stars are never seen); frames ingested afterwards leave it out.</p>",
            [],
        )
    m = masks.iloc[-1]
    mid = html.escape(m["mask_id"])
    bits = mask_from_fits(lake.store.read_bytes(m["path"])).bits
    row = select_frames(lake, FrameSelection(frame_id=int(latest["frame_id"])), PIXEL_COLUMNS).iloc[-1]
    try:
        image, _, _ = frame_pixels(lake.store.location, row, frames_profile(lake, name, latest["pipeline_version"]),
                                   wcs=False)  # fmt: skip
    except Exception as exc:  # the frame's file moved: say so, the rest of the page stands
        return (
            f"{head}<p class=muted>mask {mid}: the latest frame cannot be read ({html.escape(str(exc))}).</p>",
            [],
        )
    if np.shape(image) != bits.shape:
        return (
            f"{head}<p class=muted>mask {mid} is {m['nx']}x{m['ny']}, the latest frame is not.</p>",
            [],
        )
    png = plot_foreground_mask(
        image, bits, img / f"{stem}_allsky_mask.png", layers=layers,
        title=f"Foreground mask {m['mask_id'][:8]} over frame {int(latest['frame_id'])}",
    )  # fmt: skip
    text = (
        f"{head}<p class=muted>Mask {mid}, learned from {int(m['n_frames'])} clear frames "
        f"({int(m['n_cloudy'])} left out as cloudy): {100 * m['masked_fraction']:.1f} % of the sky above the horizon "
        f"masked (structures {100 * m['structure_fraction']:.1f} %, stars never seen "
        f"{100 * m['unseen_fraction']:.1f} %). Frames ingested after it leave it out of their cloud fraction, "
        "photometry, maps and trails.</p>"
        f'<img src="img/{png.name}" alt="foreground mask" width="70%">'
    )
    return text, [png]


def _offsets_plot(lake, frames, img: Path, stem: str) -> Path | None:
    """The model's offsets over the frames (None when no frame was checked)."""
    from skylake.allsky.plots import plot_model_offsets

    checked = frames[frames["camera_shift_px"].notna()]
    if checked.empty:
        return None
    cfg = _settings_of(lake, checked.iloc[-1])
    moved_px = cfg.moved_px if cfg is not None else None
    return plot_model_offsets(checked, img / f"{stem}_allsky_offsets.png", moved_px=moved_px)
