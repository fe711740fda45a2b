"""Image quality across the detector, a frame product (``schemas/psf_grid.yaml``).

``run`` is pure: a frame's record and measured sources in, the table's rows of that frame out (without
``frame_id``, given at commit). It runs in the frame's task; ingest commits its rows with the frame.

>>> import numpy as np
>>> x = np.array([100.0, 1500.0, 2900.0]); y = np.array([100.0, 1500.0, 2900.0])
>>> cols = {"x": x, "y": y, "fwhm": np.array([2.0, 3.0, 4.0]), "elongation": np.ones(3),
...         "flags": np.zeros(3, int), "edge_dist": np.full(3, 50.0), "bkg": np.full(3, 100.0),
...         "bkg_local": np.zeros(3)}
>>> rows = run({"nx": 3000, "ny": 3000, "fwhm_median": 3.0}, cols)
>>> rows.num_rows, [round(r, 3) for r in rows.column("fwhm_ratio").to_pylist()[::4]]
(9, [0.667, 1.0, 1.333])
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from skylake.frame.quality import FIELD_MARGIN_PX
from skylake.lake import tables

__all__ = ["GRID", "run"]


#: Cells along each axis.
GRID = 3


def run(record: dict, sources: dict[str, np.ndarray]) -> pa.Table:
    """Measure the ``GRID x GRID`` cells of one frame.

    Every cell has a row (NaN medians when it has no clean star). Clean stars are unflagged, farther than
    :data:`skylake.frame.quality.FIELD_MARGIN_PX` from the edge and with a finite FWHM.

    Parameters
    ----------
    record : dict
        The frame's row of LAKE/frames (``nx``, ``ny``, ``fwhm_median``).
    sources : dict of numpy arrays
        The frame's source columns (``x``, ``y``, ``fwhm``, ``elongation``, ``flags``, ``edge_dist``,
        ``bkg``, ``bkg_local``).

    Returns
    -------
    rows : pyarrow.Table
        One row per cell, in the schema of ``schemas/psf_grid.yaml`` less ``frame_id``: the cell's indices
        and centre, its clean stars' count and median FWHM, FWHM ratio to the frame's median, elongation
        and background. Empty when the record has no size or there are no sources.
    """
    schema = pa.schema([f for f in tables.of_stage(__name__).schema if f.name != "frame_id"])
    nx, ny = record.get("nx"), record.get("ny")
    if not nx or not ny or not sources:
        return schema.empty_table()
    clean = (sources["flags"] == 0) & (sources["edge_dist"] > FIELD_MARGIN_PX) & np.isfinite(sources["fwhm"])
    x, y = sources["x"][clean], sources["y"][clean]
    ix = np.clip((x / nx * GRID).astype(int), 0, GRID - 1)
    iy = np.clip((y / ny * GRID).astype(int), 0, GRID - 1)
    cell = iy * GRID + ix
    fwhm, elong = sources["fwhm"][clean], sources["elongation"][clean]
    bkg = (sources["bkg"] + sources["bkg_local"])[clean]
    frame_fwhm = record.get("fwhm_median") or np.nan
    rows = {name: [] for name in schema.names}
    for c in range(GRID * GRID):
        here = cell == c
        n = int(here.sum())
        med = float(np.median(fwhm[here])) if n else np.nan
        rows["ix"].append(c % GRID)
        rows["iy"].append(c // GRID)
        rows["x_center"].append((c % GRID + 0.5) * nx / GRID - 0.5)
        rows["y_center"].append((c // GRID + 0.5) * ny / GRID - 0.5)
        rows["n_stars"].append(n)
        rows["fwhm_median"].append(med)
        rows["fwhm_ratio"].append(med / frame_fwhm)
        rows["elongation_median"].append(float(np.median(elong[here])) if n else np.nan)
        rows["bkg_median"].append(float(np.median(bkg[here])) if n else np.nan)
    return pa.table(rows, schema=schema)
