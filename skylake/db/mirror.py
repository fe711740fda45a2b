"""``skylake refresh``: mirror the lake's summaries into the summary database, incrementally.

A refresh reads the commit log from the database's watermark (the last lake version it mirrored) to
the lake's published version, collects what those commits touched (nights of the frame and
calibration tables, partitions of LAKE/objects, map index files), recomputes only those summaries
from the lake, and writes rows and the new watermark **in one database transaction**:

* the lake is only read, so a database outage leaves it untouched;
* a refresh that dies (killed connection, crash) commits nothing, and the next one starts from the
  old watermark and converges;
* rows of a touched night (or map, or object) are deleted and re-inserted, so repeating a refresh
  never duplicates; of LAKE/objects, only the objects an update wrote or removed (its changes file,
  :func:`skylake.objects.build.changes_rel`) are mirrored, and the partitions of a commit without one
  (a rebuild, a table made before the changes files) are replaced whole;
* overlapping runs take turns (a Postgres advisory lock; SQLite's BEGIN IMMEDIATE), and the second
  finds the watermark already advanced;
* the database records which lake it mirrors (``refresh_state.lake_id``, the lake's
  :attr:`~skylake.lake.Lake.lake_id`) and refuses another lake (:class:`ForeignLakeError`, exit 2)
  unless ``full`` rebuilds it for that lake. A database from before lake ids adopts the first lake
  refreshed into it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import sqlalchemy as sa

from skylake import trends
from skylake.calib.model import ExtStatus, LatestPolicy, latest_calibration
from skylake.db import products
from skylake.db.connect import DbError, connect, db_url, mask, mask_url
from skylake.db.migrate import migrate
from skylake.db.models import table
from skylake.errors import ForeignLakeError, LakeError
from skylake.lake import Lake, tables
from skylake.lake.hats_meta import pixel_dir
from skylake.lake.nights import UNKNOWN_NIGHT, night_dir
from skylake.lake.storage import read_listed
from skylake.lake.tables import EXTINCTION, FRAMES, MAPS, OBJECTS, ZEROPOINTS
from skylake.maps.store import INDEX_DIR, INDEX_SCHEMA
from skylake.robust import MAD_TO_SIGMA
from skylake.schema import table_schema

__all__ = [
    "NIGHT_TABLES",
    "ADVISORY_LOCK_KEY",
    "NIGHTS_PER_STEP",
    "ROWS_PER_INSERT",
    "NIGHT_FRAME_COLUMNS",
    "RefreshReport",
    "first_line",
    "night_summary",
    "refresh",
]


log = logging.getLogger(__name__)

#: Lake tables partitioned by night that the database mirrors (summary table name = lake table name).
NIGHT_TABLES = (FRAMES, ZEROPOINTS, EXTINCTION)
#: Nights read and mirrored at a time, and lake rows made SQL records at a time: a first refresh of a decade's
#: archive (10^7 frame rows, 10^7 objects) read whole needed over 20 GB.
NIGHTS_PER_STEP = 32
ROWS_PER_INSERT = 20_000
#: pg_advisory_xact_lock key of refreshes ("skylake" in ASCII).
ADVISORY_LOCK_KEY = 0x736B796C616B65
#: Columns night_summary reads.
NIGHT_FRAME_COLUMNS = [
    "frame_id",
    "night",
    "instrument",
    "filter",
    "status",
    "n_sources",
    "mjd",
    "bkg_median",
    "fwhm_median",
    "n_streaks",
    "cloud_fraction",
]


@dataclass
class RefreshReport:
    """What a refresh did.

    Attributes
    ----------
    db : str
        The database URL, password masked.
    from_version : int
        The lake version the database had mirrored before (its watermark; 0: none).
    to_version : int
        The lake version it mirrors now (the lake's published version).
    nights_recomputed : list of str or None
        The nights whose rows were replaced (None: the unknown night).
    partitions_recomputed : list of tuple of (int, int)
        (Norder, Npix) of the LAKE/objects partitions replaced whole.
    objects_mirrored : int
        Objects deleted or re-read one by one (from the objects updates' changes files).
    rows : dict of str to int
        Rows written per table.
    migrations : list of int
        The schema migrations applied.
    seconds : float
        How long the refresh took.
    """

    db: str  # the database URL, password masked
    from_version: int
    to_version: int
    nights_recomputed: list[str | None] = field(default_factory=list)
    partitions_recomputed: list[tuple[int, int]] = field(default_factory=list)  # (Norder, Npix) replaced whole
    objects_mirrored: int = 0  # objects deleted or re-read one by one (from the objects updates' changes files)
    rows: dict[str, int] = field(default_factory=dict)  # rows written per table
    migrations: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.to_version == self.from_version:
            made = ", ".join(f"{n} {t}" for t, n in self.rows.items() if n)
            return f"{self.db}: up to date at lake version {self.to_version}" + (f" (mirrored {made})" if made else "")
        rows = ", ".join(f"{n} {t}" for t, n in self.rows.items())
        return (
            f"{self.db}: mirrored lake versions {self.from_version + 1}..{self.to_version}, "
            f"{len(self.nights_recomputed)} nights, {len(self.partitions_recomputed)} objects partitions and "
            f"{self.objects_mirrored} changed objects recomputed ({rows}) in {self.seconds:.1f} s"
        )


def first_line(exc: BaseException, url: str) -> str:
    """The driver's first line of ``exc`` (not SQLAlchemy's wrapping), secrets masked.

    Parameters
    ----------
    exc : BaseException
        The error; a SQLAlchemy error's ``orig`` (the driver's error) is used when it has one.
    url : str
        The database URL, whose secrets are masked.

    Returns
    -------
    str
        The first line of the error's text, or its type's name when it has none.
    """
    text = str(getattr(exc, "orig", None) or exc).strip()
    return mask(text.splitlines()[0] if text else type(exc).__name__, url)


def _nights_of(entries) -> set[str | None]:
    """Nights of the mirrored night tables the commits touched."""
    return set().union(*(tables.get(name).touched(entries) for name in NIGHT_TABLES))


def _object_partitions_of(entries) -> set[tuple[int, int]]:
    """(Norder, Npix) of every LAKE/objects partition the commits added files to or removed files from."""
    return tables.get(OBJECTS).touched(entries)


def _object_changes_of(lake: Lake, entries, whole: bool) -> tuple[set[tuple[int, int]], pa.Table]:
    """What the commits changed in LAKE/objects: the partitions to replace whole (those of commits without a
    changes file, or of every commit when ``whole``), and the latest change of each object the other
    commits wrote or removed (:data:`~skylake.objects.build.CHANGES_SCHEMA` rows, one per object)."""
    updates = [e for e in entries if any(a.table == OBJECTS for a in [*e.adds, *e.removes])]
    if not updates:
        return set(), pa.table({"object_id": pa.array([], pa.int64())})
    from skylake.objects.build import CHANGES_SCHEMA, changes_rel  # hats: imported only when objects changed

    partitions, changes = set(), [CHANGES_SCHEMA.empty_table()]
    for entry in updates:
        # a commit without a changes file (a rebuild), or whose file vacuum deleted: its partitions whole
        try:
            if whole or changes_rel(entry.version) not in entry.metadata:
                raise FileNotFoundError
            blob = lake.store.read_bytes(changes_rel(entry.version))
        except FileNotFoundError:
            partitions |= _object_partitions_of([entry])
            continue
        changes.append(pq.read_table(pa.BufferReader(blob), schema=CHANGES_SCHEMA))
    data = pa.concat_tables(changes)
    _, last = np.unique(data.column("object_id").to_numpy()[::-1], return_index=True)  # later commits win
    return partitions, data.take(np.sort(data.num_rows - 1 - last))


def _map_index_files_of(entries) -> list[str]:
    """Map index files (relative to LAKE/maps) the commits added, live or not (:func:`_replace_maps` reads the
    live ones). A map made again is re-added in the commit that removes its old row, so these files hold every map
    that changed."""
    added = [a.path for e in entries for a in e.adds if a.table == MAPS and a.path.startswith(f"{INDEX_DIR}/")]
    return list(dict.fromkeys(added))


def _sql_rows(data: pa.Table, columns) -> list[dict]:
    """Records for an INSERT: NaN -> NULL, night strings -> dates."""
    data = data.select(list(columns))
    for i, f in enumerate(data.schema):
        if pa.types.is_floating(f.type):  # NaN is a value to Arrow, NULL to SQL aggregates
            col = data.column(i)
            data = data.set_column(i, f, pc.if_else(pc.is_nan(col), pa.scalar(None, f.type), col))
    rows = data.to_pylist()
    if "night" in data.column_names:
        for rec in rows:
            if rec["night"] is not None:
                rec["night"] = dt.date.fromisoformat(rec["night"])
    return rows


def _where_nights(t: sa.Table, nights):
    named = [dt.date.fromisoformat(n) for n in nights if n is not None]
    cond = t.c.night.in_(named) if named else sa.false()
    if None in nights:
        cond = sa.or_(cond, t.c.night.is_(None))
    return cond


def _latest_zeropoints(zeropoints: pa.Table) -> dict:
    """{frame_id: (zp, airmass, color_term)} of each frame's latest ok calibration of any catalogue
    (:func:`skylake.calib.model.latest_calibration`)."""
    if not zeropoints.num_rows:
        return {}
    values = ["zp", "airmass", "color_term"]
    rows = zeropoints.select(["frame_id", "zp_status", "calibrated_at", *values]).to_pandas()
    rows = latest_calibration(rows, LatestPolicy(ok_only=True))
    return dict(zip(rows["frame_id"].tolist(), zip(*(rows[v].tolist() for v in values))))


def _latest_extinction(extinction: pa.Table) -> dict:
    """{night: k_ext} of each night's latest ok extinction fit (by calibrated_at) of any catalogue."""
    if not extinction.num_rows:
        return {}
    ok = extinction.filter(pc.equal(extinction.column("ext_status"), ExtStatus.OK.value)).sort_by("calibrated_at")
    return dict(zip(ok.column("night").to_pylist(), ok.column("k_ext").to_pylist()))


def night_summary(frames: pa.Table, zeropoints: pa.Table, extinction: pa.Table) -> list[dict]:
    """The ``nights`` rows (one per night, instrument and filter) as records for an INSERT.

    The latest ok calibration of each frame and the latest ok extinction fit of each night, of any
    catalogue, are used. Frames without a night are left out.

    Parameters
    ----------
    frames : pyarrow.Table
        Rows of LAKE/frames with at least the columns :data:`NIGHT_FRAME_COLUMNS`.
    zeropoints : pyarrow.Table
        Rows of LAKE/zeropoints with frame_id, zp, airmass, color_term, zp_status and calibrated_at.
    extinction : pyarrow.Table
        Rows of LAKE/extinction with night, k_ext, ext_status and calibrated_at.

    Returns
    -------
    list of dict
        One record per (night, instrument, filter), sorted, with the columns of the ``nights`` summary
        table.
    """
    col = {c: frames.column(c).to_numpy(zero_copy_only=False) for c in NIGHT_FRAME_COLUMNS}
    zp_of = _latest_zeropoints(zeropoints)
    k_of = _latest_extinction(extinction)
    cal = np.array([zp_of.get(f, (None, None, None)) for f in col["frame_id"].tolist()], dtype=float).reshape(-1, 3)
    status = col["status"]
    mjd, bkg, fwhm = (np.asarray(col[c], dtype=float) for c in ("mjd", "bkg_median", "fwhm_median"))
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(col["night"], col["instrument"], col["filter"])):
        if key[0] is not None:
            groups.setdefault((key[0], key[1] or "", key[2] or ""), []).append(i)
    now = dt.datetime.now(dt.UTC)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN medians become NULL
        for (night, instrument, filt), idx in sorted(groups.items()):
            idx = np.asarray(idx)
            st = status[idx]
            zp, airmass, color_term = cal[idx].T
            has = np.isfinite(zp)
            zp, airmass, color_term = zp[has], airmass[has], color_term[has]
            n_ok = int(np.sum(st == "ok"))
            k_ext = k_of.get(night)
            k_ext = trends.DEFAULT_K_EXT if k_ext is None else k_ext
            zp1 = trends.airmass_corrected(zp, airmass, k_ext)
            fraction = trends.photometric_fraction(zp1, n_ok)
            photometric = trends.is_photometric(fraction, len(zp))
            cloud = np.asarray(col["cloud_fraction"][idx], dtype=float)[st == "ok"]
            if not len(zp) and np.isfinite(cloud).any():  # an all-sky camera: the sky it saw says it
                fraction = trends.clear_fraction(cloud, n_ok)
                photometric = trends.is_photometric(fraction, int(np.isfinite(cloud).sum()), min_frames=1)
            rec = {
                "night": dt.date.fromisoformat(night),
                "instrument": instrument,
                "filter": filt,
                "n_frames": len(idx),
                "n_ok": n_ok,
                "n_rejected": int(np.sum(st == "rejected")),
                "n_quality": int(np.sum((st != "ok") & (st != "rejected"))),
                "n_sources": int(np.sum(col["n_sources"][idx])),
                "mjd_first": _num(np.nanmin(mjd[idx])),
                "mjd_last": _num(np.nanmax(mjd[idx])),
                "bkg_median": _num(np.nanmedian(bkg[idx])),
                "fwhm_median": _num(np.nanmedian(fwhm[idx])),
                "n_calibrated": len(zp),
                "zp_median": None,
                "zp_scatter": None,
                "zp_max": None,
                "photometric_fraction": fraction,
                "refreshed_at": now,
                "k_ext": float(k_ext),
                "zp_airmass1_max": trends.night_envelope(zp1),
                "color_term_median": _num(np.nanmedian(color_term)) if len(zp) else None,
                "photometric": photometric,
                "n_streak_frames": int(np.sum(np.nan_to_num(np.asarray(col["n_streaks"][idx], dtype=float)) > 0)),
                "cloud_fraction_median": _num(np.nanmedian(np.asarray(col["cloud_fraction"][idx], dtype=float))),
            }
            if len(zp):
                med = float(np.median(zp))
                rec.update(
                    zp_median=med,
                    zp_scatter=float(MAD_TO_SIGMA * np.median(np.abs(zp - med))),
                    zp_max=float(np.percentile(zp, trends.ENVELOPE_PERCENTILE)),
                )
            rows.append(rec)
    return rows


def _num(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _read_lake_nights(lake: Lake, name: str, nights, columns: list[str] | None = None) -> pa.Table:
    """``columns`` (default: those mirrored) of lake table ``name`` in the partitions of ``nights`` only
    (listing just those directories: an incremental refresh must not grow with the lake's nights)."""
    cols = columns or [c.name for c in table(name).columns]
    schema = table_schema(name).append(pa.field("night", pa.string()))

    def read() -> pa.Table:
        """List the nights' files and read them (again, by :func:`read_listed`, when a commit replaced one).

        Returns
        -------
        pyarrow.Table
            The rows.
        """
        files = []
        for night in sorted(nights, key=lambda n: n or ""):
            part = f"{name}/{night_dir(night)}"
            files += [
                lake.store.full(f"{part}/{f}")
                for f in lake.store.listdir(part)
                if f.endswith(".parquet") and not f.startswith(".")
            ]
        if not files:
            return schema.empty_table().select(cols)
        partitioning = pads.HivePartitioning(pa.schema([("night", pa.string())]), null_fallback=UNKNOWN_NIGHT)
        dataset = pads.dataset(
            files,
            format="parquet",
            schema=schema,
            partitioning=partitioning,
            partition_base_dir=lake.store.full(name),
            filesystem=lake.store.arrow_fs,
        )
        return dataset.to_table(columns=cols)

    return read_listed(read)


def _insert(conn, t: sa.Table, data: pa.Table) -> int:
    """Insert the rows of lake table ``data`` into ``t``, :data:`ROWS_PER_INSERT` records at a time."""
    columns = [c.name for c in t.columns]
    for start in range(0, data.num_rows, ROWS_PER_INSERT):
        conn.execute(t.insert(), _sql_rows(data.slice(start, ROWS_PER_INSERT), columns))
    return data.num_rows


def _replace(conn, name: str | sa.Table, data: pa.Table | list[dict], nights) -> int:
    """Delete ``name``'s rows of ``nights`` and insert ``data`` (a lake table or ready records)."""
    t = name if isinstance(name, sa.Table) else table(name)
    conn.execute(t.delete().where(_where_nights(t, nights)))
    if not isinstance(data, list):
        return _insert(conn, t, data)
    if data:
        conn.execute(t.insert(), data)
    return len(data)


def _partition_files(lake: Lake, order: int, pixel: int) -> list[str]:
    """Live data files (lake-relative) of LAKE/objects partition (order, pixel)."""
    rel = f"{OBJECTS}/{pixel_dir(order, pixel)}"
    return [f"{rel}/{f}" for f in lake.store.listdir(rel) if f.endswith(".parquet") and not f.startswith(".")]


def _read_partition(lake: Lake, order: int, pixel: int, columns: list[str]) -> pa.Table | None:
    """``columns`` of LAKE/objects partition (order, pixel), listed and read (None: no file)."""
    from skylake.objects.files import objects_dataset  # hats: imported only when objects changed

    files = _partition_files(lake, order, pixel)
    return objects_dataset(lake, files).to_table(columns=columns) if files else None


def _read_object_ranges(lake: Lake, order: int, pixel: int, h29: np.ndarray, columns: list[str]) -> list[pa.Table]:
    """``columns`` (and ``_healpix_29``) of the rows of ``h29`` in each file of LAKE/objects partition (order,
    pixel), listed and read (only the row groups holding them)."""
    from skylake.objects.files import read_ranges  # hats: imported only when objects changed

    cols = ["_healpix_29", *columns]
    fs = lake.store.arrow_fs
    return [read_ranges(lake.path(f), h29, h29 + 1, cols, filesystem=fs) for f in _partition_files(lake, order, pixel)]


def _with_partition(data: pa.Table, order: int, pixel: int) -> pa.Table:
    """Rows of partition (order, pixel) with the ``objects`` summary table's ``norder`` and ``npix``."""
    data = data.append_column("norder", pa.array(np.full(data.num_rows, order, np.int32)))
    return data.append_column("npix", pa.array(np.full(data.num_rows, pixel, np.int64)))


def _object_rows(t: sa.Table, data: pa.Table, order: int, pixel: int) -> list[dict]:
    """Records of the ``objects`` summary table from rows of partition (order, pixel)."""
    return _sql_rows(_with_partition(data, order, pixel), [c.name for c in t.columns])


def _replace_objects(conn, lake: Lake, partitions: set[tuple[int, int]], changes: pa.Table) -> int:
    """Mirror LAKE/objects as the lake holds it now: ``partitions`` whole (their rows deleted and read
    again), and each object of ``changes`` (its latest change, :func:`_object_changes_of`) deleted and,
    unless removed, read again from its partition (only the row groups holding it)."""
    t = table(OBJECTS)
    columns = [c.name for c in t.columns if c.name not in ("norder", "npix")]
    ids = changes.column("object_id").to_numpy()
    for i in range(0, len(ids), 1000):  # bound the IN list
        conn.execute(t.delete().where(t.c.object_id.in_(ids[i : i + 1000].tolist())))
    written = 0
    for order, pixel in sorted(partitions):  # a partition at a time: a whole lake's objects do not fit in memory
        conn.execute(t.delete().where((t.c.norder == order) & (t.c.npix == pixel)))
        data = read_listed(functools.partial(_read_partition, lake, order, pixel, columns))
        if data is not None:
            written += _insert(conn, t, _with_partition(data, order, pixel))
    rows = []
    if len(ids):
        live = changes.filter(pc.invert(changes.column("deleted"))).to_pandas()
        for (order, pixel), group in live.groupby(["Norder", "Npix"]):
            if (int(order), int(pixel)) in partitions:  # read whole above
                continue
            h29 = np.unique(group["_healpix_29"].to_numpy(np.int64))
            want = pa.array(group["object_id"].to_numpy(np.int64))
            read = functools.partial(_read_object_ranges, lake, int(order), int(pixel), h29, columns)
            for data in read_listed(read):
                rows += _object_rows(t, data.filter(pc.is_in(data.column("object_id"), want)), int(order), int(pixel))
    if rows:
        conn.execute(t.insert(), rows)
    return written + len(rows)


def _replace_maps(conn, lake: Lake, index_files: list[str]) -> int:
    """Upsert the map index rows of those of ``index_files`` (relative to LAKE/maps) still live (a map made again
    meanwhile: its row is in a later commit's file, for the next refresh)."""

    def read() -> pa.Table | None:
        """Read the files still live (again, by :func:`read_listed`, when a commit replaced one meanwhile).

        Returns
        -------
        pyarrow.Table or None
            The index rows; None when no file is live.
        """
        live = [lake.path(f"{MAPS}/{f}") for f in index_files if lake.store.exists(f"{MAPS}/{f}")]
        if not live:
            return None
        schema = table_schema(INDEX_SCHEMA)
        return pads.dataset(live, format="parquet", schema=schema, filesystem=lake.store.arrow_fs).to_table()

    data = read_listed(read)
    if data is None:
        return 0
    t = table(MAPS)
    rows = _sql_rows(data, [c.name for c in t.columns])
    ids = sorted({r["map_id"] for r in rows})
    for i in range(0, len(ids), 1000):  # bound the IN list
        conn.execute(t.delete().where(t.c.map_id.in_(ids[i : i + 1000])))
    latest = {r["map_id"]: r for r in sorted(rows, key=lambda r: r["created_at"])}  # a map made twice: the last
    if latest:
        conn.execute(t.insert(), list(latest.values()))
    return len(latest)


def _batch_rows(entries) -> list[dict]:
    rows = []
    for e in entries:
        nights = sorted(n or "" for n in _nights_of([e]))
        rows.append(
            {
                "version": e.version,
                "batch_id": e.batch_id,
                "operation": e.operation,
                "committed_at": dt.datetime.fromisoformat(e.committed_at),
                "files_added": len(e.adds),
                "files_removed": len(e.removes),
                "rows_added": sum(a.rows for a in e.adds),
                "nights": ",".join(nights),
            }
        )
    return rows


def _replace_events(conn, events) -> int:
    t = table("maintenance_events")
    conn.execute(t.delete())
    rows = [{"instrument": e.instrument, "event_date": e.date, "kind": e.kind, "note": e.note} for e in events]
    if rows:
        conn.execute(t.insert(), rows)
    return len(rows)


def _all_pairs(conn) -> set[tuple[str, str]]:
    t = table("nights")
    return {tuple(r) for r in conn.execute(sa.select(t.c.instrument, t.c.filter).distinct())}


def _refit_trends(conn, pairs) -> int:
    """Refit the trend model of each (instrument, filter) in ``pairs`` from the mirrored nights."""
    nights, model, ev = table("nights"), table("trend_model"), table("maintenance_events")
    all_events = [
        trends.Event(*r) for r in conn.execute(sa.select(ev.c.instrument, ev.c.event_date, ev.c.kind, ev.c.note))
    ]
    now = dt.datetime.now(dt.UTC)
    written = 0
    for instrument, filt in sorted(pairs):
        conn.execute(model.delete().where((model.c.instrument == instrument) & (model.c.filter == filt)))
        rows = conn.execute(
            sa.select(
                (nights.c.mjd_first + nights.c.mjd_last) / 2,
                nights.c.zp_airmass1_max,
                nights.c.color_term_median,
                nights.c.photometric,
            ).where((nights.c.instrument == instrument) & (nights.c.filter == filt))
        ).all()
        if not rows:
            continue
        mjd, env, ct, phot = (np.array([r[i] for r in rows], dtype=float if i < 3 else bool) for i in range(4))
        segments = trends.fit_segments(mjd, env, ct, phot, [e for e in all_events if e.instrument in ("", instrument)])
        if segments:
            conn.execute(
                model.insert(),
                [
                    {
                        "instrument": instrument,
                        "filter": filt,
                        "refreshed_at": now,
                        **{k: _num(v) if isinstance(v, float) else v for k, v in seg.items()},
                    }
                    for seg in segments
                ],
            )
            written += len(segments)
    return written


def _watermark(conn, lake: Lake, db: str, full: bool) -> int:
    """The lake version the database has mirrored (0: none); refuses a database of another lake (unless
    ``full``), and lets this lake claim one made before lake ids."""
    state = table("refresh_state")
    row = conn.execute(
        sa.select(state.c.lake_version, state.c.lake_id, state.c.lake_url).where(state.c.id == 1)
    ).first()
    lake_id = lake.lake_id
    if row and row.lake_id and lake_id and row.lake_id != lake_id and not full:
        raise ForeignLakeError(
            f"{db} mirrors another lake ({row.lake_url}, lake id {row.lake_id}), not {lake.url} "
            f"(lake id {lake_id}); give this lake its own database with --db, or rebuild this one "
            "for it with `skylake refresh --full`"
        )
    if row and lake_id and not row.lake_id:  # a database from before lake ids: this lake claims it
        conn.execute(state.update().where(state.c.id == 1).values(lake_id=lake_id, lake_url=lake.url))
    return (row.lake_version if row else 0) or 0


def _mirror_nights(conn, lake: Lake, nights, report: RefreshReport, hook) -> set:
    """Replace the ``frames``, ``zeropoints`` and ``nights`` rows of ``nights``, :data:`NIGHTS_PER_STEP` nights
    at a time; returns the (instrument, filter) pairs of those nights (their trends are refitted)."""
    pairs = set()
    ordered = sorted(nights, key=lambda n: (n is None, n or ""))
    for start in range(0, max(len(ordered), 1), NIGHTS_PER_STEP):  # no nights: one empty step (the hook)
        step = ordered[start : start + NIGHTS_PER_STEP]
        frames = _read_lake_nights(lake, FRAMES, step)
        zeropoints = _read_lake_nights(lake, ZEROPOINTS, step)
        for name, data in ((FRAMES, frames), (ZEROPOINTS, zeropoints)):
            report.rows[name] = report.rows.get(name, 0) + _replace(conn, name, data, step)
        if hook and not start:
            hook("frames_written", conn)
        extinction = _read_lake_nights(lake, EXTINCTION, step, ["night", "k_ext", "ext_status", "calibrated_at"])
        summary = night_summary(frames, zeropoints, extinction)
        report.rows["nights"] = report.rows.get("nights", 0) + _replace(conn, "nights", summary, step)
        pairs |= {(r["instrument"], r["filter"]) for r in summary}
    return pairs


def _load_events(events):
    """The maintenance events to store: ``events`` read when it is a CSV path, else as given.

    Parameters
    ----------
    events : str or os.PathLike or list of skylake.trends.Event or None
        A CSV path, the events, or None (the stored events are kept).

    Returns
    -------
    list of skylake.trends.Event or None
        The events.

    Raises
    ------
    LakeError
        The events file cannot be read.
    """
    if isinstance(events, (str, os.PathLike)):
        try:
            return trends.read_events(events)
        except (OSError, ValueError) as exc:
            raise LakeError(f"cannot read maintenance events: {exc}") from None
    return events


def _mirror_products(conn, lake: Lake, entries, product_tables: dict, created: set, report: RefreshReport) -> None:
    """Replace the rows of the nights the commits touched in the mirrored product tables (all of a new one).

    Parameters
    ----------
    conn : sqlalchemy.engine.Connection
        The refresh's transaction.
    lake : skylake.lake.Lake
        The lake.
    entries : list
        The commit log entries mirrored.
    product_tables : dict of str to sqlalchemy.Table
        The product tables of the database, by name (:func:`skylake.db.products.ensure`).
    created : set of str
        Product tables created by this refresh: every night of theirs is mirrored.
    report : RefreshReport
        Gets the rows written per table.
    """
    for t in tables.mirrored_products():  # mirrored as they are (mirror: true in their schema)
        changed = products.all_nights(lake, t) if t.name in created else t.touched(entries)
        sql_t = product_tables[t.name]
        ordered = sorted(changed, key=lambda n: (n is None, n or ""))
        for start in range(0, len(ordered), NIGHTS_PER_STEP):
            step = ordered[start : start + NIGHTS_PER_STEP]
            rows = _read_lake_nights(lake, t.name, step, [c.name for c in sql_t.columns])
            report.rows[t.name] = report.rows.get(t.name, 0) + _replace(conn, sql_t, rows, step)


def _mirror_objects(conn, lake: Lake, entries, whole: bool, report: RefreshReport) -> set[tuple[int, int]]:
    """Replace the ``objects`` rows the commits wrote or removed (of whole partitions when ``whole``).

    Parameters
    ----------
    conn : sqlalchemy.engine.Connection
        The refresh's transaction.
    lake : skylake.lake.Lake
        The lake.
    entries : list
        The commit log entries mirrored.
    whole : bool
        Read every touched partition whole.
    report : RefreshReport
        Gets the partitions, the objects and the rows written.

    Returns
    -------
    set of tuple of int
        The (order, pixel) partitions touched.
    """
    partitions, object_changes = _object_changes_of(lake, entries, whole=whole)
    report.partitions_recomputed = sorted(partitions)
    report.objects_mirrored = object_changes.num_rows
    report.rows[OBJECTS] = _replace_objects(conn, lake, partitions, object_changes)
    return partitions


def _record_refresh(
    conn,
    lake: Lake,
    lake_id: str | None,
    entries,
    watermark: int,
    published: int,
    n_nights: int,
    n_partitions: int,
    report: RefreshReport,
) -> None:
    """Record the mirrored commits (``ingest_batches``) and the new watermark (``refresh_state``).

    Parameters
    ----------
    conn : sqlalchemy.engine.Connection
        The refresh's transaction.
    lake : skylake.lake.Lake
        The lake.
    lake_id : str or None
        The lake's id.
    entries : list
        The commit log entries mirrored.
    watermark : int
        The lake version mirrored before (later batches are replaced).
    published : int
        The lake version now mirrored.
    n_nights, n_partitions : int
        Nights and object partitions recomputed.
    report : RefreshReport
        Gets the batches written; its ``maps`` rows are recorded.
    """
    batches = table("ingest_batches")
    conn.execute(batches.delete().where(batches.c.version > watermark))
    if entries:  # --events on an up-to-date database mirrors no commit
        conn.execute(batches.insert(), _batch_rows(entries))
    report.rows["ingest_batches"] = len(entries)
    state = table("refresh_state")
    conn.execute(state.delete())
    conn.execute(
        state.insert(),
        [
            {
                "id": 1,
                "lake_version": published,
                "nights_recomputed": n_nights,
                "partitions_recomputed": n_partitions,
                "maps_mirrored": report.rows[MAPS],
                "refreshed_at": dt.datetime.now(dt.UTC),
                "lake_id": lake_id,
                "lake_url": lake.url,
            }
        ],
    )


def refresh(lake: Lake | str, url: str | None = None, *, full: bool = False, events=None, hook=None) -> RefreshReport:
    """Bring the summary database of ``lake`` up to date with the lake's published commits.

    Everything is written in one database transaction; the lake is never written.

    Parameters
    ----------
    lake : skylake.lake.Lake or str
        The lake, or its path or URL.
    url : str or None
        SQLAlchemy URL (default: $SKYLAKE_DB_URL, else SQLite inside the lake).
    full : bool
        Forget the watermark and rebuild every row (also of a database that mirrors another lake).
    events : str or os.PathLike or list of skylake.trends.Event or None
        Maintenance events (a CSV path or a list of :class:`skylake.trends.Event`) replacing those stored;
        every trend is refitted when given. None: the stored events are kept.
    hook : callable or None
        ``hook(step, connection)`` is called between steps (for progress reporting and fault-injection
        tests).

    Returns
    -------
    RefreshReport
        What the refresh did.

    Raises
    ------
    DbError
        The database cannot be used (nothing was written; :class:`DbUrlError` for a URL that cannot be
        used), or it has mirrored a later lake version than the lake's.
    ForeignLakeError
        The database mirrors another lake and ``full`` is not given.
    LakeError
        The events file cannot be read.
    """
    t0 = time.monotonic()
    lake = Lake.open(lake) if not isinstance(lake, Lake) else lake
    lake.catch_up()  # a publish a killed writer left is finished first: never mirror half a commit
    lake_id = lake.lake_id
    events = _load_events(events)
    url = db_url(lake, url)
    engine = connect(url)
    report = RefreshReport(db=mask_url(url), from_version=0, to_version=0)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            report.migrations = migrate(conn)
            watermark = _watermark(conn, lake, report.db, full)
            if full:
                for name in (FRAMES, ZEROPOINTS, "nights", "ingest_batches", "trend_model", OBJECTS, MAPS):
                    conn.execute(table(name).delete())
                watermark = 0
            product_tables, created = products.ensure(conn, drop=full)
            published = lake.log.published_version()
            if published < watermark:
                raise DbError(
                    f"{report.db} has mirrored lake version {watermark} but {lake.url} is at version "
                    f"{published}: is this database another lake's? (refresh --full rebuilds it)"
                )
            report.from_version, report.to_version = watermark, published
            if published == watermark and events is None and not created:
                return report
            entries = [lake.log.read(v) for v in range(watermark + 1, published + 1)]
            nights = _nights_of(entries)
            report.nights_recomputed = sorted(nights, key=lambda n: (n is None, n or ""))
            if hook:
                hook("read_log", conn)
            pairs = _mirror_nights(conn, lake, nights, report, hook)
            if events is not None:
                report.rows["maintenance_events"] = _replace_events(conn, events)
                pairs |= _all_pairs(conn)
            report.rows["trend_model"] = _refit_trends(conn, pairs)
            _mirror_products(conn, lake, entries, product_tables, created, report)
            # from version 0 (a new or --full database) every partition is read whole: cheaper than by object
            partitions = _mirror_objects(conn, lake, entries, watermark == 0, report)
            report.rows[MAPS] = _replace_maps(conn, lake, _map_index_files_of(entries))
            _record_refresh(conn, lake, lake_id, entries, watermark, published, len(nights), len(partitions), report)
            if hook:
                hook("before_commit", conn)
    except sa.exc.SQLAlchemyError as exc:
        raise DbError(
            f"refresh of {report.db} failed, nothing was written (the lake is untouched; the next refresh "
            f"catches up): {first_line(exc, url)}"
        ) from None
    report.seconds = time.monotonic() - t0
    log.info("%s", report)
    return report
