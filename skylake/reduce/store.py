"""Masters in the lake: their images as FITS files under ``LAKE/master_frames/``, their rows in ``masters``.

An image's file is named by its content (``<master_id>.fits``), so it is written once and never changes;
the row that makes it a master is committed with it in one transaction. Choosing a master for a frame is a
pure function of the table's rows (:func:`choose`).
"""

from __future__ import annotations

import functools
import io

import numpy as np
import pyarrow as pa

from skylake.lake import tables
from skylake.reduce.masters import BY_FILTER, SKY, Master

__all__ = ["IMAGES_DIR", "store", "read_table", "choose", "load_image", "image_path"]

#: Where the masters' images live, relative to the lake.
IMAGES_DIR = "master_frames"


def image_path(master_id: str) -> str:
    """A master's image file, relative to the lake.

    Parameters
    ----------
    master_id : str
        The master.

    Returns
    -------
    str
        ``master_frames/<master_id>.fits``.
    """
    return f"{IMAGES_DIR}/{master_id}.fits"


def _fits_bytes(master: Master) -> bytes:
    from astropy.io import fits

    row = master.row
    header = fits.Header()
    for key, col in (("MASTERID", "master_id"), ("MKIND", "kind"), ("INSTRUME", "instrument"), ("FILTER", "filter")):
        header[key] = str(row[col])
    header["BINNING"] = row["binning"]
    header["NCOMBINE"] = int(row["n_frames"])
    header["MJD-MID"] = float(row["mjd"])
    header["EXPTIME"] = float(row["exptime"])
    header["BUNIT"] = {"bias": "adu", "dark": "adu/s", "flat": ""}.get(row["kind"], "")
    buffer = io.BytesIO()
    fits.PrimaryHDU(master.image, header=header).writeto(buffer)
    return buffer.getvalue()


def store(lake, masters: list[Master]) -> list[dict]:
    """Commit masters (images and rows) to the lake in one transaction; ones already there are skipped.

    Parameters
    ----------
    lake : skylake.lake.Lake
        A writable lake.
    masters : list of Master
        Built by :func:`skylake.reduce.masters.build`, each row with its ``night``.

    Returns
    -------
    list of dict
        The rows committed (with ``path`` and ``batch_id``); ones the lake already had are left out.
    """
    have = set(read_table(lake).column("master_id").to_pylist())
    new = [m for m in masters if m.master_id not in have]
    if not new:
        return []
    schema = tables.get(tables.MASTERS).schema
    with lake.transaction(tables.MASTERS) as tx:
        rows = []
        for m in new:
            tx.stage_file(image_path(m.master_id), _fits_bytes(m))
            rows.append({**m.row, "path": image_path(m.master_id), "batch_id": tx.batch_id})
        tx.stage_nights(tables.MASTERS, pa.Table.from_pylist(rows, schema=schema), [m.row["night"] for m in new])
        tx.commit({"masters": [m.master_id for m in new]})
    return rows


def read_table(lake, profile: str | None = None) -> pa.Table:
    """The masters table (with ``night``), of one profile when given.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    profile : str, optional
        Only this profile's masters.

    Returns
    -------
    pyarrow.Table
        Its rows.
    """
    import pyarrow.compute as pc

    return lake.read_night_table(tables.MASTERS, filter=None if profile is None else pc.field("profile") == profile)


def choose(
    rows, kind: str, *, mjd: float, instrument: str, binning: str, shape, filter: str, max_age_days: float, profile=""
):
    """The master of ``kind`` for a frame: same instrument, binning and shape (and filter for flats, sky frames and
    dead-pixel masks), nearest in time within ``max_age_days``.

    Parameters
    ----------
    rows : pandas.DataFrame
        The masters table's rows (:func:`read_table`).
    kind : str
        The kind wanted.
    mjd : float
        The frame's mid-exposure MJD.
    instrument, binning : str
        The frame's.
    shape : tuple of int
        The frame's (ny, nx) after trimming.
    filter : str
        The frame's.
    max_age_days : float
        Largest time between the master and the frame.
    profile : str, optional
        The profile whose masters ``rows`` are (named in the reason when there is none).

    Returns
    -------
    row : dict or None
        The master's row (None when there is none).
    why : str
        Why there is none ("" when there is one).
    """
    of = f" of profile {profile}" if profile else ""  # masters belong to the profile they were built with
    build = (
        "build it from the night's science frames: skylake masters build LAKE FRAMES --kind sky, then ingest them "
        "again with --redo"
        if kind == SKY
        else "build one: skylake masters build"
    )
    if rows is None or not len(rows):
        return None, f"no {kind} master{of} in the lake ({build})"
    ny, nx = shape
    cand = rows[(rows["kind"] == kind) & (rows["instrument"] == instrument)]
    if not len(cand):
        return None, f"no {kind} master{of} for instrument {instrument!r} in the lake ({build})"
    alike = cand[(cand["binning"] == binning) & (cand["nx"] == nx) & (cand["ny"] == ny)]
    if not len(alike):
        modes = sorted({f"{r.binning} {r.nx}x{r.ny}" for r in cand.itertuples()})
        return None, f"no {kind} master for binning {binning} and {nx}x{ny} pixels (the lake has {modes})"
    if kind in BY_FILTER:
        alike = alike[alike["filter"] == filter]
        if not len(alike):
            return None, f"no {kind} master for filter {filter!r}"
    age = (alike["mjd"] - mjd).abs()
    best = int(np.argmin(age.to_numpy()))
    if age.iloc[best] > max_age_days:
        return None, (
            f"the nearest {kind} master ({alike['master_id'].iloc[best]}) is {age.iloc[best]:.1f} days from the "
            f"frame, more than reduction.max_age_days = {max_age_days:g}"
        )
    return alike.iloc[best].to_dict(), ""


@functools.lru_cache(maxsize=16)
def load_image(lake_root: str, rel: str) -> np.ndarray:
    """A master's image, cached per process (its file never changes: it is named by its content).

    Parameters
    ----------
    lake_root : str
        The lake's location.
    rel : str
        The image's path relative to the lake (the row's ``path``).

    Returns
    -------
    numpy.ndarray
        The image as native float32 (read-only).
    """
    import fsspec
    from astropy.io import fits

    with fsspec.open(f"{lake_root.rstrip('/')}/{rel}", "rb") as fh:
        data = fits.getdata(io.BytesIO(fh.read()))
    image = np.ascontiguousarray(data, dtype=np.float32)
    image.flags.writeable = False
    return image
