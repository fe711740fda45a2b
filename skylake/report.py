"""``skylake report LAKE OUT_DIR``: a static HTML site of the summary database that opens from disk.

``OUT_DIR/index.html`` lists every instrument and filter (nights, frames, photometric nights, the
current throughput trend) and the most variable objects, and links one page per instrument and
filter with the throughput trend plot (airmass-corrected nightly envelopes, the fitted segments,
maintenance events), the colour-term trend, the nightly photometric fraction, the transparency and
sky-brightness maps of the latest mapped night of its camera, the latest subtracted night's DIA objects with
their cutouts (reference, frame, difference), a zeropoint checkplot of the latest calibrated frame and the
nightly table. Images are PNGs in ``OUT_DIR/img/``, linked relatively; no server, no
JavaScript.
The summary database is refreshed first (incremental), so the report shows the lake as it is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from skylake.calib.model import ZpStatus
from skylake.db import refresh
from skylake.db.connect import connect, db_url, mask_url
from skylake.db.mirror import first_line
from skylake.db.models import table
from skylake.errors import DbError, ForeignLakeError
from skylake.lake import Lake, LakeView
from skylake.lake.tables import FRAMES, MAPS, OBJECTS, ZEROPOINTS

__all__ = ["TABLE_NIGHTS", "TABLE_OBJECTS", "VARIABLE_MIN_N", "MJD_UNIX_EPOCH", "CSS", "Report", "slug", "build_report"]


log = logging.getLogger(__name__)

#: Nights listed in a page's table (the most recent).
TABLE_NIGHTS = 120
#: Objects listed in the index's table of the most variable (by their false-alarm probability, then chi2/dof, with
#: at least VARIABLE_MIN_N points).
TABLE_OBJECTS, VARIABLE_MIN_N = 20, 5
MJD_UNIX_EPOCH = 40587.0

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; margin: 0.5em 0; }
.scroll { overflow-x: auto; max-width: 100%; }  /* wide tables scroll instead of overflowing the page */
.muted { color: #777; }
"""


@dataclass
class Report:
    """What :func:`build_report` wrote.

    Attributes
    ----------
    index : pathlib.Path
        ``OUT_DIR/index.html``.
    pages : list of pathlib.Path
        The page of each instrument and filter.
    images : list of pathlib.Path
        The PNGs the pages link.
    """

    index: Path
    pages: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        return f"report: {self.index} ({len(self.pages)} pages, {len(self.images)} images)"


def slug(instrument: str, filt: str) -> str:
    """A file name for an instrument and filter.

    Readable characters are kept, anything else replaced, and a short hash added so different names never
    share a page (header strings can hold anything).

    Parameters
    ----------
    instrument : str
        The instrument (empty or None: ``unknown``).
    filt : str
        The filter (empty or None: ``none``).

    Returns
    -------
    str
        ``INSTRUMENT_FILTER`` (at most 60 characters, runs of other characters than letters, digits and
        ``._-`` as ``_``), then ``_`` and 8 hex digits of a hash of both names.
    """
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{instrument or 'unknown'}_{filt or 'none'}")[:60]
    digest = hashlib.sha256(f"{instrument}\x00{filt}".encode()).hexdigest()[:8]
    return f"{base}_{digest}"


def _mjd_to_datetime(mjd):
    return [dt.datetime.fromtimestamp((m - MJD_UNIX_EPOCH) * 86400.0, dt.UTC) for m in np.atleast_1d(mjd)]


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n{body}\n"
        f'<p class="muted">skylake report, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC</p>\n'
        "</body></html>\n"
    )


def _plot_trend(nights, model, events, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True, gridspec_kw={"height_ratios": [3, 1.5, 1]})
    # nights whose frames were all rejected before a time was read have no MJD: nothing to plot
    nights = [r for r in nights if r.mjd_first is not None and np.isfinite(r.mjd_first)]
    mid = np.array([(r.mjd_first + r.mjd_last) / 2 for r in nights])
    when = _mjd_to_datetime(mid) if len(mid) else []
    env = np.array([r.zp_airmass1_max if r.zp_airmass1_max is not None else np.nan for r in nights])
    phot = np.array([bool(r.photometric) for r in nights])
    ax = axes[0]
    if len(nights):
        ax.plot([w for w, p in zip(when, phot) if p], env[phot], "o", ms=3, color="tab:blue", label="photometric night")
        ax.plot([w for w, p in zip(when, phot) if not p], env[~phot], "o", ms=3, color="0.7", label="other night")
    for seg in model:
        t = np.array([seg.start_mjd, seg.end_mjd])
        zp = seg.zp_start + seg.slope_mag_per_year * (t - seg.start_mjd) / 365.25
        ax.plot(
            _mjd_to_datetime(t),
            zp,
            "-",
            color="tab:red",
            lw=2,
            label=f"{seg.slope_mag_per_year:+.3f} mag/yr" if seg.slope_mag_per_year is not None else None,
        )
    for ev in events:
        for a in axes:
            a.axvline(dt.datetime.combine(ev.event_date, dt.time(), dt.UTC), color="tab:green", ls="--", lw=1)
    ax.set_ylabel("zeropoint at airmass 1 [mag]")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    ct = np.array([r.color_term_median if r.color_term_median is not None else np.nan for r in nights])
    axes[1].plot(when, ct, "o", ms=3, color="tab:purple")
    axes[1].set_ylabel("colour term")
    frac = np.array([r.photometric_fraction if r.photometric_fraction is not None else np.nan for r in nights])
    axes[2].plot(when, frac, "s", ms=3, color="tab:orange")
    axes[2].set_ylim(-0.05, 1.05)
    axes[2].set_ylabel("photometric\nfraction")
    axes[2].set_xlabel("date (UTC)")
    if len(when):  # the nights' span, at least a week (matplotlib would show years around a lone night)
        pad = max(dt.timedelta(days=3.5), (max(when) - min(when)) * 0.03)
        axes[2].set_xlim(min(when) - pad, max(when) + pad)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _nights_table(nights) -> str:
    cols = [
        "night",
        "n_frames",
        "n_ok",
        "n_rejected",
        "n_quality",
        "n_calibrated",
        "zp_median",
        "zp_scatter",
        "zp_airmass1_max",
        "k_ext",
        "photometric_fraction",
        "photometric",
        "bkg_median",
        "fwhm_median",
    ]
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = []
    for r in sorted(nights, key=lambda r: r.night, reverse=True)[:TABLE_NIGHTS]:
        rows.append("<tr>" + "".join(f"<td>{_fmt(getattr(r, c))}</td>" for c in cols) + "</tr>")
    return f"<div class=scroll><table><tr>{head}</tr>\n" + "\n".join(rows) + "</table></div>"


def _maps_section(lake: Lake, maps, out: Path, rendered: dict) -> tuple[str, list[Path]]:
    """Transparency and sky-brightness PNGs of ``maps`` (summary-database rows of one night), rendered
    once per map into ``out/img`` (``rendered`` caches them across pages), and their HTML."""
    from skylake.maps.export import map_stem, write_png
    from skylake.maps.store import read_maps

    todo = [m.map_id for m in maps if m.map_id not in rendered]
    pixels = read_maps(lake, todo) if todo else None
    html_parts, images = [], []
    for m in maps:
        row = m._asdict()
        if m.map_id not in rendered:
            mine = pixels[pixels["map_id"] == m.map_id]
            rendered[m.map_id] = [
                write_png(mine, row, out / "img" / f"{map_stem(row)}-{q}.png", q) for q in ("transparency", "sky")
            ]
        for png in rendered[m.map_id]:
            images.append(png)
            html_parts.append(f'<img src="img/{png.name}" alt="{html.escape(png.stem)}">')
    return "\n".join(html_parts), images


def _noise_section(lake: Lake, profiles: list[str], out: Path, name: str) -> tuple[str, list[Path]]:
    """The noise diagram of each camera's latest night with light curves (skylake.ensemble.plots), with its
    table of median rms per magnitude bin; nothing for a camera without light curves."""
    from skylake.ensemble.noise import VERSIONS
    from skylake.ensemble.plots import NothingToPlot, noise_diagram

    parts, images = [], []
    for k, profile in enumerate(profiles):
        png = out / "img" / f"{name}_noise{'' if k == 0 else f'_{k}'}.png"
        try:
            d = noise_diagram(lake, profile=profile, out=png)
        except NothingToPlot:
            continue
        except Exception as exc:  # a plot must not stop the report; say why it is missing
            log.warning("no noise diagram for %s: %s", profile, exc)
            parts.append(f'<p class="muted">No noise diagram for {html.escape(profile)}: {html.escape(str(exc))}</p>')
            continue
        images.append(png)
        head = "".join(f"<th>{html.escape(label)} [mmag]</th>" for _, label in VERSIONS)
        rows = "".join(
            f"<tr><td>{html.escape(str(idx))}</td><td>{int(r['n'])}</td>"
            + "".join(f"<td>{_fmt(1000 * r[f'rms_{c}'], 1)}</td>" for c, _ in VERSIONS)
            + f"<td>{_fmt(1000 * r['expected'], 1)}</td><td>{_fmt(r['pull_width'], 2)}</td>"
            + f"<td>{_fmt(r['chi2_dof'], 2)}</td></tr>"
            for idx, r in d.bins.iterrows()
        )
        terms = "".join(f"<li>{html.escape(t)}</li>" for t in d.legend_terms())
        parts.append(
            f"<h2>Noise diagram of {html.escape(d.night)} ({html.escape(profile)})</h2>\n"
            f"<p class=muted>Each object's rms over the night against its magnitude: per-frame "
            f"zeropoints, the ensemble and the ensemble after EPD and TFA (skylake ensemble), with the "
            f"night's fitted noise model (LAKE/noise), which the light curves' errors are made of: "
            f"photons (scaled), scintillation and a floor.</p>\n"
            f'<img src="img/{png.name}" alt="noise diagram of {html.escape(d.night)}">\n'
            + (f"<ul class=muted>{terms}</ul>\n" if terms else "")
            + f"<div class=scroll><table><tr><th>mag</th><th>objects</th>{head}<th>model [mmag]</th>"
            f"<th>pull width</th><th>chi2/dof</th></tr>{rows}</table></div>"
        )
    return "\n".join(parts), images


def _dia_section(lake: Lake, instrument: str, filt: str, out: Path, name: str) -> tuple[str, list[Path]]:
    """The camera's latest subtracted night (skylake.dia.report); a failure says why it is missing."""
    from skylake.dia.report import dia_section

    try:
        return dia_section(lake, instrument, filt, out, name)
    except Exception as exc:  # a section must not stop the report; say why it is missing
        log.warning("no difference-imaging section for %s/%s: %s", instrument, filt, exc)
        return f'<p class="muted">No difference-imaging section: {html.escape(str(exc))}</p>', []


def _variables_table(objects) -> str:
    cols = [
        "object_id",
        "variable",
        "fap",
        "chi2_dof",
        "median_mag",
        "std_mag",
        "n",
        "refcat",
        "ref_id",
        "ra",
        "dec",
        "n_exact",
        "stetson_j",
        "amplitude_clip",
        "first_mjd",
        "last_mjd",
    ]
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = [
        "<tr>" + "".join(f"<td>{_fmt(getattr(r, c), 5 if c in ('ra', 'dec') else 3)}</td>" for c in cols) + "</tr>"
        for r in objects
    ]
    return f"<div class=scroll><table><tr>{head}</tr>\n" + "\n".join(rows) + "</table></div>"


def build_report(
    lake: Lake | str, out_dir: str | Path, url: str | None = None, refresh_first: bool = True, checkplots: bool = True
) -> Report:
    """Write the static site of ``lake``'s summary database into ``out_dir``.

    Parameters
    ----------
    lake : skylake.lake.Lake or str
        The lake, or its location.
    out_dir : str or pathlib.Path
        Where the site goes (created if needed; images in ``OUT_DIR/img``).
    url : str or None
        The summary database's URL (None: $SKYLAKE_DB_URL, else SQLite in the lake).
    refresh_first : bool
        Refresh the summary database first (incremental); otherwise report it as it is.
    checkplots : bool
        Add the zeropoint checkplot of each page's latest calibrated frame.

    Returns
    -------
    Report
        The files written.

    Raises
    ------
    skylake.errors.DbError
        The summary database cannot be read.
    skylake.errors.ForeignLakeError
        The summary database mirrors another lake.
    """
    lake = Lake.open(lake) if not isinstance(lake, LakeView) else lake
    if refresh_first:
        refresh(lake, url)
    else:
        lake.catch_up()
    url = db_url(lake, url)
    engine = connect(url)
    try:
        rows = _read_summary(engine, lake)
    except sa.exc.SQLAlchemyError as exc:
        raise DbError(f"report: cannot read the summary database {mask_url(url)}: {first_line(exc, url)}") from None
    out = Path(out_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    return _write_report(lake, out, rows, checkplots)


def _read_summary(engine, lake: Lake) -> dict:
    """Everything the report shows, read from the summary database in one connection; refuses a
    database that mirrors another lake."""
    nights_t, model_t, events_t, zp_t, maps_t, objects_t, frames_t = (
        table(n) for n in ("nights", "trend_model", "maintenance_events", ZEROPOINTS, MAPS, OBJECTS, FRAMES)
    )
    with engine.connect() as conn:
        # SELECT *: a database not yet migrated to lake ids (schema 3) has no lake_id column
        row = conn.execute(sa.text("SELECT * FROM refresh_state WHERE id = 1")).mappings().first() or {}
        if row.get("lake_id") and lake.lake_id and row["lake_id"] != lake.lake_id:
            raise ForeignLakeError(
                f"report: {mask_url(engine.url)} mirrors another lake ({row.get('lake_url')}, "
                f"lake id {row['lake_id']}), not {lake.url} (lake id {lake.lake_id}); give this "
                "lake's database with --db"
            )
        nights = conn.execute(sa.select(nights_t).order_by(nights_t.c.night)).all()
        model = conn.execute(sa.select(model_t).order_by(model_t.c.segment)).all()
        events = conn.execute(sa.select(events_t).order_by(events_t.c.event_date)).all()
        latest_zp = conn.execute(
            sa.select(zp_t.c.frame_id, zp_t.c.refcat, frames_t.c.instrument, frames_t.c.filter)
            .join(frames_t, frames_t.c.frame_id == zp_t.c.frame_id)
            .where(zp_t.c.zp_status == ZpStatus.OK.value)
            .order_by(zp_t.c.mjd)
        ).all()
        night_maps = conn.execute(
            sa.select(maps_t).where(maps_t.c.scope == "night").order_by(maps_t.c.night_min, maps_t.c.frame_of)
        ).all()
        cameras = conn.execute(sa.select(frames_t.c.instrument, frames_t.c.filter, frames_t.c.profile).distinct()).all()
        variables = conn.execute(
            sa.select(objects_t)
            .where(objects_t.c.n >= VARIABLE_MIN_N)
            .where(objects_t.c.fap.is_not(None))
            .order_by(objects_t.c.fap.asc(), objects_t.c.chi2_dof.desc())
            .limit(TABLE_OBJECTS)
        ).all()
        n_objects = conn.execute(sa.select(sa.func.count()).select_from(objects_t)).scalar()
    return {
        "nights": nights,
        "model": model,
        "events": events,
        "latest_zp": latest_zp,
        "night_maps": night_maps,
        "cameras": cameras,
        "variables": variables,
        "n_objects": n_objects,
    }


def _instrument_page(
    lake: Lake,
    out: Path,
    rows: dict,
    instrument: str,
    filt: str,
    allsky,
    rendered: dict,
    checkplots: bool,
    report: Report,
) -> str:
    """Write the page of one instrument and filter (its pictures added to ``report``); return its index row.

    Parameters
    ----------
    lake : Lake
        The lake.
    out : pathlib.Path
        The report's folder.
    rows : dict
        The summary database's rows, by name (:func:`write_report`).
    instrument, filt : str
        The instrument and filter.
    allsky : pandas.DataFrame
        The lake's all-sky frames (:func:`skylake.allsky.report.allsky_frames`).
    rendered : dict
        Map pictures already drawn, shared between pages.
    checkplots : bool
        Draw the latest calibration's check plot.
    report : Report
        The report being written.

    Returns
    -------
    str
        The page's row of the index table (HTML).
    """
    name = slug(instrument, filt)
    mine = [r for r in rows["nights"] if (r.instrument, r.filter) == (instrument, filt)]
    segs = [m for m in rows["model"] if (m.instrument, m.filter) == (instrument, filt)]
    evs = [e for e in rows["events"] if e.instrument in ("", instrument)]
    title = f"{instrument or 'unknown instrument'} / {filt or 'no filter'}"
    body = ['<p><a href="index.html">&larr; all instruments</a></p>']
    if len(allsky):  # this camera's all-sky frames (the lake may hold other instruments' too)
        allsky = allsky[(allsky["instrument"].fillna("") == instrument) & (allsky["filter"].fillna("") == filt)]
    if len(allsky):  # an all-sky camera: its polar plots first (it has no throughput trend without calibration)
        from skylake.allsky.report import allsky_section

        section, images = allsky_section(lake, allsky, out, name)
        report.images += images
        body += [section] if section else []
    if any(r.n_calibrated for r in mine) or segs:
        trend_png = _plot_trend(mine, segs, evs, out / "img" / f"{name}_trend.png", title)
        report.images.append(trend_png)
        body.append(
            f'<h2>Throughput</h2>\n<img src="img/{trend_png.name}" alt="throughput trend of {html.escape(title)}">'
        )
    elif len(allsky):  # an all-sky camera is not calibrated against a catalogue: its section above is its trend
        body.append(
            '<h2>Throughput</h2>\n<p class="muted">An all-sky camera is measured frame by frame against its '
            "bright-star catalogue (the all-sky section above: cloud fraction, transparency, sky brightness); "
            "its nights' photometric status comes from their cloud fractions. A throughput trend comes from "
            "narrow-field frames calibrated with <code>skylake calibrate LAKE --refcat NAME</code>.</p>"
        )
    else:  # empty axes say nothing: say why there is no trend
        body.append(
            '<h2>Throughput</h2>\n<p class="muted">No calibrated frames yet, so no throughput trend: '
            "calibrate against a reference catalogue (<code>skylake calibrate LAKE --refcat NAME</code>, NAME one of "
            "<code>skylake refcat list LAKE</code>).</p>"
        )
    body += [_segments_table(segs)] if segs else []
    profiles = {c.profile for c in rows["cameras"] if (c.instrument or "", c.filter or "") == (instrument, filt)}
    mapped = [m for m in rows["night_maps"] if m.profile in profiles]
    if mapped:
        last = mapped[-1].night_min
        section, images = _maps_section(lake, [m for m in mapped if m.night_min == last], out, rendered)
        report.images += images
        body.append(
            f"<h2>Maps of {html.escape(last)}</h2>\n"
            f"<p class=muted>Transparency against the clear-sky zeropoint and sky brightness "
            f"[mag/arcsec&sup2;] per HEALPix pixel (skylake maps).</p>\n{section}"
        )
    section, images = _noise_section(lake, sorted(profiles), out, name)
    report.images += images
    body += [section] if section else []
    section, images = _dia_section(lake, instrument, filt, out, name)
    report.images += images
    body += [section] if section else []
    frames_here = [z for z in rows["latest_zp"] if (z.instrument or "", z.filter or "") == (instrument, filt)]
    if checkplots and frames_here:
        body.append(_checkplot_section(lake, frames_here[-1], out, name, report))
    body.append(f"<h2>Nights (latest {min(len(mine), TABLE_NIGHTS)} of {len(mine)})</h2>\n" + _nights_table(mine))
    page = out / f"{name}.html"
    page.write_text(_page(title, "\n".join(body)))
    report.pages.append(page)
    slope = segs[-1].slope_mag_per_year if segs else None
    return (
        f'<tr><td class=text><a href="{name}.html">{html.escape(title)}</a></td><td>{len(mine)}</td>'
        f"<td>{sum(r.n_frames for r in mine)}</td><td>{sum(bool(r.photometric) for r in mine)}</td>"
        f"<td>{_fmt(mine[-1].night)}</td><td>{_fmt(slope)}</td></tr>"
    )


def _segments_table(segs: list) -> str:
    """The throughput model's segments as an HTML table.

    Parameters
    ----------
    segs : list
        The segments' rows (summary database).

    Returns
    -------
    str
        The table.
    """
    return (
        "<div class=scroll><table><tr><th>segment</th><th>from</th><th>start event</th><th>nights</th>"
        "<th>zp at start</th><th>mag/yr</th><th>rms</th><th>colour term</th></tr>"
        + "".join(
            f"<tr><td>{s.segment}</td><td>{_mjd_to_datetime(s.start_mjd)[0]:%Y-%m-%d}</td>"
            f"<td class=text>{_fmt(s.start_event)}</td><td>{s.n_nights}</td><td>{_fmt(s.zp_start)}</td>"
            f"<td>{_fmt(s.slope_mag_per_year)}</td><td>{_fmt(s.rms)}</td>"
            f"<td>{_fmt(s.color_term_median)}</td></tr>"
            for s in segs
        )
        + "</table></div>"
    )


def _checkplot_section(lake: Lake, latest, out: Path, name: str, report: Report) -> str:
    """The latest calibration's check plot (added to ``report``), or a line saying why there is none.

    Parameters
    ----------
    lake : Lake
        The lake.
    latest : row
        The latest calibrated frame's zeropoint row (summary database).
    out : pathlib.Path
        The report's folder.
    name : str
        The page's name (the picture's prefix).
    report : Report
        The report being written.

    Returns
    -------
    str
        The section (HTML).
    """
    from skylake.calib.calibrate import plot_zeropoint

    try:
        png = plot_zeropoint(
            lake, latest.frame_id, refcat=latest.refcat, out=out / "img" / f"{name}_checkplot_{latest.frame_id}.png"
        )
    except Exception as exc:  # a checkplot must not stop the report; say why it is missing
        log.warning("no checkplot for frame %s: %s", latest.frame_id, exc)
        return f'<p class="muted">No checkplot for frame {latest.frame_id}: {html.escape(str(exc))}</p>'
    report.images.append(Path(png))
    return (
        f"<h2>Latest calibration (frame {latest.frame_id})</h2>\n"
        f'<img src="img/{Path(png).name}" alt="zeropoint checkplot of frame {latest.frame_id}">'
    )


def _index_body(index_rows: list[str], variables: list, n_objects: int) -> str:
    """The index page's body: a row per instrument and filter, then the most variable objects.

    Parameters
    ----------
    index_rows : list of str
        The pages' rows (:func:`_instrument_page`).
    variables : list
        The most variable objects' rows.
    n_objects : int
        The objects in all.

    Returns
    -------
    str
        The body (HTML).
    """
    body = (
        "<div class=scroll><table><tr><th>instrument / filter</th><th>nights</th><th>frames</th>"
        "<th>photometric nights</th>"
        "<th>last night</th><th>current trend [mag/yr]</th></tr>\n" + "\n".join(index_rows) + "</table></div>"
        if index_rows
        else "<p>The lake has no frames with a night yet.</p>"
    )
    if variables:
        body += (
            f"\n<h2>Most variable objects</h2>\n<p class=muted>The {len(variables)} of {n_objects} objects with "
            f"the smallest false-alarm probability (fap: the chance that a constant star with these errors, "
            f"which the night's noise model gives, has a chi2 this large; ties by chi2/dof) among those with "
            f"at least {VARIABLE_MIN_N} points; variable: fap below the profile's [ensemble] variable_fap "
            f"(skylake objects build; light curves: skylake lightcurve). n, std, chi2/dof and fap count every "
            f"unflagged point; the median, Stetson J and clipped amplitude were computed when there were "
            f"n_exact of them (recomputed once an object's points grow by a quarter).</p>\n"
            + _variables_table(variables)
        )
    return body


def _write_report(lake: Lake, out: Path, rows: dict, checkplots: bool) -> Report:
    """Write one page per instrument and filter, then the index; the pictures go under ``out/img``.

    Parameters
    ----------
    lake : Lake
        The lake.
    out : pathlib.Path
        The report's folder.
    rows : dict
        What the summary database holds (:func:`write_report`'s query results, by name).
    checkplots : bool
        Draw the latest calibration's check plot on each page.

    Returns
    -------
    Report
        The pages and pictures written.
    """
    from skylake.allsky.report import allsky_frames

    report = Report(index=out / "index.html")
    rendered: dict[str, list[Path]] = {}
    allsky = allsky_frames(lake)
    index_rows = [
        _instrument_page(lake, out, rows, instrument, filt, allsky, rendered, checkplots, report)
        for instrument, filt in sorted({(r.instrument, r.filter) for r in rows["nights"]})
    ]
    body = _index_body(index_rows, rows["variables"], rows["n_objects"])
    report.index.write_text(_page(f"skylake: {lake.url}", body))
    log.info("%s", report)
    return report
