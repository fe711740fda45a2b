"""The report's difference-imaging section: the latest subtracted night of a camera, its DIA objects and stamps.

For an instrument and filter (a page of ``skylake report``): how that night's frames subtracted, the DIA
objects its real DIA sources (:func:`skylake.dia.detect.is_real`) belong to, and a picture of the brightest
ones' cutouts as `skylake dia` kept them: the reference as subtracted (on the frame's grid, PSF-matched), the
frame and the difference, side by side.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from skylake.lake import tables
from skylake.lake.tables import DIA_FRAMES, DIA_OBJECTS, DIA_SOURCES

__all__ = ["STAMP_ROWS", "dia_section", "night_dia_sources", "plot_stamps"]

log = logging.getLogger(__name__)

#: DIA objects whose cutouts the section draws (the brightest of the night, one source each).
STAMP_ROWS = 6


def night_dia_sources(lake, instrument: str, filt: str) -> tuple[str | None, pd.DataFrame, pd.DataFrame]:
    """The latest night of a camera's subtracted frames, its DIA frames' rows and its real DIA sources.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    instrument, filt : str
        The camera ("" for none).

    Returns
    -------
    night : str or None
        The night (None: no frame of the camera was subtracted).
    frames : pandas.DataFrame
        Its ``dia_frames`` rows with the frames' columns.
    sources : pandas.DataFrame
        Its real DIA sources (schemas/dia_sources.yaml) with their frame's ``mjd``.
    """
    from skylake.dia.files import frame_rows
    from skylake.dia.references import usable_frames
    from skylake.lake.frames import FrameSelection

    empty = pd.DataFrame()
    done = tables.get(DIA_FRAMES).read(lake, columns=["frame_id", "status", "reason", "n_real", "night"]).to_pandas()
    if not len(done):
        return None, empty, empty
    camera = lake.read_frames(columns=["frame_id", "instrument", "filter"]).to_pandas()
    camera = camera[(camera["instrument"].fillna("") == instrument) & (camera["filter"].fillna("") == filt)]
    mine = done[done["frame_id"].isin(camera["frame_id"]) & done["night"].notna()]
    if not len(mine):
        return None, empty, empty
    night = max(mine["night"])
    mine = mine[mine["night"] == night]
    frames = usable_frames(lake, FrameSelection(night=night))
    merged = mine.merge(frames.drop(columns=["status", "night"]), on="frame_id")
    ok = merged[merged["status"] == "ok"]
    sources = frame_rows(lake, DIA_SOURCES, ok) if len(ok) else empty
    if len(sources):
        sources = sources[sources["frame_id"].isin(ok["frame_id"]) & sources["dia_object_id"].notna()]
    return night, merged, sources


def plot_stamps(sources: pd.DataFrame, kinds: dict, path: Path) -> Path:
    """Draw real DIA sources' cutouts: a row each, the reference as subtracted, the frame and the difference.

    Parameters
    ----------
    sources : pandas.DataFrame
        DIA sources with their cutouts (``stamp_reference``, ``stamp_frame``, ``stamp_difference``), ``snr``,
        ``flux_err``, ``dia_object_id`` and ``mjd``.
    kinds : dict
        DIA object id -> what it is ("transient", "on object N").
    path : pathlib.Path
        The PNG to write.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(sources)
    fig, axes = plt.subplots(n, 3, figsize=(8, 2.45 * n + 0.5), squeeze=False, layout="constrained")
    for row, (_, s) in zip(axes, sources.iterrows()):
        size = int(round(np.sqrt(len(s["stamp_frame"]))))
        ref, frame, diff = (np.asarray(s[c], float).reshape(size, size) for c in
                            ("stamp_reference", "stamp_frame", "stamp_difference"))  # fmt: skip
        finite = frame[np.isfinite(frame)]
        lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
        reach = 5.0 * float(s["flux_err"]) / size if np.isfinite(s["flux_err"]) else np.nanmax(np.abs(diff))
        reach = max(reach, float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0)
        for ax, image, title, (vmin, vmax), cmap in (
            (row[0], ref, "reference, PSF-matched", (lo, hi), "gray"),
            (row[1], frame, "frame", (lo, hi), "gray"),
            (row[2], diff, "difference", (-reach, reach), "RdBu_r"),
        ):
            shown = ax.imshow(image, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=10)
            fig.colorbar(shown, ax=ax, shrink=0.8, label="ADU")
        kind = kinds.get(int(s["dia_object_id"]), "")
        row[0].set_ylabel(f"{int(s['dia_object_id'])}\n{kind}\nS/N {s['snr']:.1f}, MJD {s['mjd']:.4f}", fontsize=9)
    fig.suptitle(f"Real DIA sources: {size}x{size}-pixel cutouts, brightest first", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _objects_table(objects: pd.DataFrame, tonight: pd.Series) -> str:
    """The night's DIA objects as an HTML table."""
    head = ("<tr><th>DIA object</th><th>RA [deg]</th><th>Dec [deg]</th><th>sources tonight</th><th>all sources</th>"
            "<th>brighter / fainter</th><th>peak S/N</th><th>what</th></tr>")  # fmt: skip
    rows = "".join(
        f"<tr><td>{i}</td><td>{o['ra']:.5f}</td><td>{o['dec']:.5f}</td><td>{int(tonight.get(i, 0))}</td>"
        f"<td>{int(o['n_sources'])}</td><td>{int(o['n_positive'])} / {int(o['n_negative'])}</td>"
        f"<td>{o['peak_snr']:.1f}</td><td class=text>{html.escape(_kind(o))}</td></tr>"
        for i, o in objects.iterrows()
    )
    return f"<div class=scroll><table>{head}{rows}</table></div>"


def _kind(o: pd.Series) -> str:
    if pd.isna(o["object_id"]):
        return "transient"
    return f'on object {int(o["object_id"])} ({o["object_separation"]:.1f}")'


def dia_section(lake, instrument: str, filt: str, out: Path, name: str) -> tuple[str, list[Path]]:
    """The difference-imaging section of a camera's report page, and its picture.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    instrument, filt : str
        The camera.
    out : pathlib.Path
        The report's folder (the picture goes under ``out/img``).
    name : str
        The page's name (the picture's prefix).

    Returns
    -------
    tuple of (str, list of pathlib.Path)
        The section's HTML ("" when no frame of the camera was subtracted) and its pictures.
    """
    from skylake.dia.files import frame_rows

    night, frames, sources = night_dia_sources(lake, instrument, filt)
    if night is None:
        return "", []
    ok = frames["status"] == "ok"
    failed = frames.loc[~ok, "reason"].value_counts()
    lines = [
        f"<h2>Difference imaging of {html.escape(night)}</h2>",
        "<p class=muted>Each frame less its pointing's reference, PSF-matched (skylake dia). Real DIA sources: no "
        "flag and residuals a point source can leave (real_bogus &ge; 0.01); they make the DIA objects, a transient "
        "where no object or catalogue star lies.</p>",
        f"<p>{int(ok.sum())} of {len(frames)} frames subtracted, {len(sources)} real DIA sources "
        f"({_fmt_range(frames.loc[ok, 'n_real'])} per frame).</p>",
    ]
    lines += [f"<p class=muted>{n} not subtracted: {html.escape(str(reason))}</p>" for reason, n in failed.items()]
    if not len(sources):
        return "\n".join(lines), []
    objects = frame_rows(lake, DIA_OBJECTS, frames[ok])
    objects = objects[objects["dia_object_id"].isin(set(sources["dia_object_id"].astype("int64")))]
    objects = objects.set_index("dia_object_id").sort_values("peak_snr", ascending=False)
    tonight = sources.groupby(sources["dia_object_id"].astype("int64")).size()
    kinds = {int(i): _kind(o) for i, o in objects.iterrows()}
    best = sources.sort_values("snr", ascending=False).drop_duplicates("dia_object_id").head(STAMP_ROWS)
    png = plot_stamps(best, kinds, out / "img" / f"{name}_dia_stamps.png")
    lines.append(f'<img src="img/{png.name}" alt="cutouts of the real DIA sources of {html.escape(night)}">')
    lines.append(f"<h3>DIA objects with sources on {html.escape(night)} ({len(objects)})</h3>")
    lines.append(_objects_table(objects, tonight))
    return "\n".join(lines), [png]


def _fmt_range(values: pd.Series) -> str:
    values = values.dropna().astype(int)
    if not len(values):
        return "none"
    return f"{values.min()}-{values.max()}" if values.min() != values.max() else str(values.min())
