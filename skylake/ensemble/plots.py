"""The noise diagram: each object's scatter in one night against its magnitude, for each light-curve version.

Over it the diagram draws the night's noise model (LAKE/noise, :mod:`.noise`), the same numbers the light curves'
errors are made of: each object's expected rms is that of its points' ``mag_err``, and the model's terms (the
photon error scaled, the scintillation, the floor, a frame's own extra noise) are split out of it point by point,
then binned in magnitude like the measured rms. The legend names each fitted term and its value.

``skylake plot noise LAKE --out noise.png [--night N] [--profile P] [--min-points K]`` draws it from what the
lake holds: the night's frames of one camera (a profile) that an ensemble solved, their unflagged light-curve
points (LAKE/lightcurves, only the partitions under the frames' footprints), and prints the table of each
magnitude bin: stars, rms, median ``mag_err``, the pulls' robust width and the median chi2/dof.
"""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from skylake.ensemble.noise import VERSIONS, object_scatter, young_scintillation
from skylake.errors import LakeError
from skylake.lake.frames import check_night

log = logging.getLogger(__name__)

__all__ = ["NoiseDiagram", "noise_diagram", "noise_points", "plot_noise", "NothingToPlot", "TERMS"]

#: The model's terms the diagram splits out: (column of the per-object table, legend label).
TERMS = (("phot", "photons"), ("scint", "scintillation"), ("floor", "floor"), ("frame", "frame's own"))


class NothingToPlot(LakeError):
    """No night, frame or light curve to draw (exit 4, as the other commands that find nothing)."""

    exit_code = 4


@dataclass
class NoiseDiagram:
    """What a noise diagram shows: the objects' scatter, the model and where it was drawn.

    Attributes
    ----------
    night, profile : str
        The night and the camera.
    frames : int
        The frames whose points the diagram uses (those an ensemble solved).
    frames_night : int
        The camera's ok frames that night.
    objects : DataFrame
        Per object: ``n``, ``mean_mag``, ``rms_<version>``, ``expected`` (the model's rms of its points),
        the terms of :data:`TERMS` (rms of each over its points), ``chi2_dof``.
    points : DataFrame
        The unflagged points used, with their ``pull``.
    model : DataFrame
        The night's LAKE/noise rows of the camera.
    missing : dict
        Version -> why it is not drawn.
    path : Path or None
        The PNG, when drawn.
    bins : DataFrame
        Per magnitude bin: stars, median rms per version, median ``mag_err``, the pulls' robust width, median
        chi2/dof, the model's median rms and its terms'.
    """

    night: str
    profile: str
    frames: int
    frames_night: int
    objects: pd.DataFrame
    points: pd.DataFrame
    model: pd.DataFrame
    missing: dict = field(default_factory=dict)
    path: Path | None = None
    bins: pd.DataFrame = field(default=None)

    def summary(self) -> str:
        """The table of the magnitude bins (mmag), one line per bin of at least 5 objects.

        Returns
        -------
        str
            A header line and a line per bin: stars, rms of each version, median mag_err, pull width, median
            chi2/dof and the model's rms; or a note that there is no such bin.
        """
        if self.bins is None or self.bins.empty:
            return "no magnitude bin with 5 objects"
        cols = " ".join(f"{c:>8}" for c, _ in VERSIONS)
        lines = [f"{'mag':>7} {'stars':>5} {cols} {'mag_err':>8} {'pulls':>6} {'chi2':>6} {'model':>7}  (mmag)"]
        for idx, r in self.bins.iterrows():
            vals = " ".join(f"{1000 * r[f'rms_{c}']:8.1f}" for c, _ in VERSIONS)
            lines.append(
                f"{idx:>7} {int(r['n']):5d} {vals} {1000 * r['mag_err']:8.1f} {r['pull_width']:6.2f} "
                f"{r['chi2_dof']:6.2f} {1000 * r['expected']:7.1f}"
            )
        for version, why in self.missing.items():
            lines.append(f"{version}: not drawn: {why}")
        return "\n".join(lines)

    def legend_terms(self) -> list[str]:
        """The model's fitted terms in words, one line per flux the light curves use.

        Returns
        -------
        list of str
            E.g. ``"flux_ap1, 1830 stars: photons x0.96, scintillation 3.8 mmag (1.50 x Young, fixed: ...),
            floor 6.6 mmag"``.
        """
        out = []
        used = self.model[self.model["n_chosen"] > 0].sort_values("n_chosen", ascending=False)
        for _, r in used.iterrows():
            if r["diameter_m"] > 0:
                how = "fitted" if r["scint_fitted"] else "fixed: airmasses too alike to fit"
                scint = f"scintillation {1000 * r['scint_mag']:.1f} mmag ({r['scint_factor']:.2f} x Young, {how})"
            else:
                scint = "no scintillation (diameter unknown)"
            out.append(
                f"{r['flux']}, {int(r['n_chosen'])} stars: photons x{r['phot_scale']:.2f}"
                + (f" (x(err/{1000 * r['phot_ref']:.0f} mmag)^{r['phot_slope']:.2f})" if r["phot_slope"] else "")
                + f", {scint}, "
                f"floor {1000 * r['floor_mag']:.1f} mmag"
            )
        return out


def _pick_night(lake, night: str | None, profile: str | None) -> tuple[str, str, pd.DataFrame]:
    cols = [
        "frame_id",
        "night",
        "profile",
        "status",
        "mjd",
        "exptime",
        "airmass",
        "footprint_ra",
        "footprint_dec",
        "wcs_source",
    ]
    flt = pc.field("status") == "ok"
    if night is not None:
        flt = flt & (pc.field("night") == night)
    frames = lake.read_frames(columns=cols, filter=flt).to_pandas()
    frames = frames[frames["wcs_source"].fillna("") != "camera"]
    if profile is not None:
        frames = frames[frames["profile"] == profile]
    if frames.empty:
        where = (f" on night {night}" if night else "") + (f" of profile {profile}" if profile else "")
        raise NothingToPlot(f"no ok frame placed by a WCS{where} in {lake.url}")
    if night is None:
        night = str(frames["night"].dropna().max())
        frames = frames[frames["night"] == night]
    if profile is None:
        counts = frames["profile"].value_counts()
        profile = str(counts.index[0])
        if len(counts) > 1:
            log.warning(
                "night %s has frames of %d profiles; drawing %s (--profile picks another)", night, len(counts), profile
            )
        frames = frames[frames["profile"] == profile]
    return night, profile, frames.reset_index(drop=True)


def noise_points(lake, frames: pd.DataFrame) -> pd.DataFrame:
    """The light-curve points of ``frames`` (only the partitions under their footprints are read).

    Parameters
    ----------
    lake : Lake
        The lake whose LAKE/lightcurves is read.
    frames : DataFrame
        Frame rows with ``frame_id`` and the footprint columns (``footprint_ra``, ``footprint_dec``).

    Returns
    -------
    DataFrame
        ``object_id``, ``frame_id``, ``mjd``, the magnitudes of :data:`VERSIONS`, ``mag_err``, ``mag_err_phot``,
        ``aperture`` and ``flags`` of the frames' points; empty when the lake has no light curves or the frames
        no footprint.
    """
    import lsdb

    from skylake.calib.crossmatch import footprint_moc
    from skylake.jit_cache import cache_hats_jit
    from skylake.lake.tables import LIGHTCURVES, get

    cache_hats_jit()  # the MOC filter's numba code from disk
    moc = footprint_moc(frames, 10.0)
    cols = ["object_id", "frame_id", "mjd", *[c for c, _ in VERSIONS], "mag_err", "mag_err_phot", "aperture", "flags"]
    path = Path(lake.path(get(LIGHTCURVES).location))
    if moc is None or not (path / "hats.properties").exists():
        return pd.DataFrame({c: [] for c in cols})
    cat = lsdb.open_catalog(
        path,
        search_filter=lsdb.MOCSearch(moc, fine=False),
        columns=cols,
        filters=[("frame_id", "in", [int(f) for f in frames["frame_id"]])],
        error_empty_filter=False,
    )
    import dask

    with dask.config.set(scheduler="synchronous"):
        return pd.DataFrame(cat.compute(progress_bar=False)).reset_index(drop=True)


def _night_model(lake, night: str, profile: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The night's LAKE/noise rows of ``profile`` and its ok LAKE/ensemble rows (frame, field)."""
    from skylake.lake.nights import night_partition
    from skylake.lake.tables import ENSEMBLE, NOISE

    nights = [night_partition(night)]
    noise = lake.read_night_table(NOISE, filter=pc.field("profile") == profile, nights=nights).to_pandas()
    ens = lake.read_night_table(ENSEMBLE, columns=["frame_id", "field", "status", "ens_key"], nights=nights).to_pandas()
    ens = ens[(ens["status"] == "ok") & ens["ens_key"].isin(set(noise["ens_key"]))]
    return noise, ens.drop_duplicates("frame_id", keep="last")


def _terms(points: pd.DataFrame, noise: pd.DataFrame, frames: pd.DataFrame, height_m: float) -> pd.DataFrame:
    """``points`` with each model term's variance (:data:`TERMS`, ``v_<term>``) from its field's row of its flux;
    ``v_frame`` is what ``mag_err`` holds beyond the night's terms (its frame cell's own extra noise)."""
    rows = noise.set_index(["field", "flux"])
    key = pd.MultiIndex.from_arrays([points["field"].to_numpy(), points["aperture"].astype(object).to_numpy()])
    at = rows.index.get_indexer(key)
    have = at >= 0

    def of_row(name: str) -> np.ndarray:
        """Each point's value of ``name`` in its noise row (NaN where it has none).

        Parameters
        ----------
        name : str
            A column of LAKE/noise.

        Returns
        -------
        numpy.ndarray
            A value per point.
        """
        return np.where(have, rows[name].to_numpy(float)[np.maximum(at, 0)], np.nan)

    fr = frames.set_index("frame_id").loc[points["frame_id"]]
    young = young_scintillation(
        of_row("diameter_m"), fr["exptime"].to_numpy(float), fr["airmass"].to_numpy(float), height_m
    )
    p = points["mag_err_phot"].to_numpy(float)
    v_phot = (of_row("phot_scale") * (p / of_row("phot_ref")) ** of_row("phot_slope") * p) ** 2
    v_scint = (of_row("scint_factor") * young) ** 2
    v_floor = of_row("floor_mag") ** 2
    # what mag_err holds beyond them: its cell's own extra noise (and the ensemble correction's error)
    rest = points["mag_err"].to_numpy(float) ** 2 - v_phot - v_scint - v_floor
    return points.assign(v_phot=v_phot, v_scint=v_scint, v_floor=v_floor, v_frame=np.maximum(rest, 0.0))


def _pulls(points: pd.DataFrame) -> pd.DataFrame:
    """``points`` with ``pull`` (about each object's weighted mean) and per object ``chi2_dof``."""
    w = 1.0 / points["mag_err"].to_numpy(float) ** 2
    g = points.assign(_w=w, _wm=w * points["mag"].to_numpy(float)).groupby("object_id")
    mean = g["_wm"].transform("sum") / g["_w"].transform("sum")
    pull = (points["mag"] - mean) / points["mag_err"]
    return points.assign(pull=pull.astype(float))


def noise_diagram(
    lake, night: str | None = None, profile: str | None = None, out=None, min_points: int | None = None
) -> NoiseDiagram:
    """The noise diagram of one night and camera (see the module docstring); drawn to ``out`` (PNG) when given.

    Parameters
    ----------
    lake : Lake or str or os.PathLike
        The lake, or its location.
    night : str, optional
        The night (YYYY-MM-DD); default the latest night with an ok frame placed by a WCS.
    profile : str, optional
        The camera's profile; default the one with most frames that night.
    out : str or Path, optional
        The PNG to draw; default none (only the numbers).
    min_points : int, optional
        Unflagged points an object needs (default: half the frames used, at least 5).

    Returns
    -------
    NoiseDiagram
        The objects' scatter, the model, the magnitude bins and the path of the PNG when drawn.

    Raises
    ------
    NightError
        ``night`` is not a date YYYY-MM-DD.
    NothingToPlot
        When no ok frame placed by a WCS matches ``night`` and ``profile``, or the night has no light-curve
        points.
    """
    from skylake.lake import Lake, LakeView
    from skylake.profile_store import frames_profile

    check_night("night", night)
    lake = Lake.open(lake) if not isinstance(lake, LakeView) else lake
    night, name, frames = _pick_night(lake, night, profile)
    versions = lake.read_frames(columns=["frame_id", "pipeline_version"]).to_pandas().set_index("frame_id")
    prof = frames_profile(lake, name, str(versions.loc[frames["frame_id"].iloc[0], "pipeline_version"]))
    noise, ens = _night_model(lake, night, name)
    used = frames[frames["frame_id"].isin(ens["frame_id"])] if len(ens) else frames
    points = noise_points(lake, used)
    if points.empty:
        raise NothingToPlot(
            f"night {night} ({name}) has no light-curve points: run `skylake objects build {lake.url}` first"
        )
    points = points[(points["flags"] == 0) & points["mag"].notna() & (points["mag_err"] > 0)]
    points = points.merge(ens[["frame_id", "field"]], on="frame_id", how="left")
    need = min_points if min_points is not None else max(5, int(np.ceil(0.5 * len(used))))
    points = points[points.groupby("object_id")["mag"].transform("count") >= need]
    points = _pulls(_terms(points, noise, frames, float(prof.site.height_m)))
    objects = object_scatter(points, need)
    g = points.groupby("object_id")
    objects["expected"] = np.sqrt(g["mag_err"].apply(lambda e: np.mean(e.to_numpy(float) ** 2)))
    for term, _ in TERMS:
        objects[term] = np.sqrt(g[f"v_{term}"].mean())
    objects["chi2_dof"] = g["pull"].apply(lambda p: float(np.sum(p**2)) / max(len(p) - 1, 1))
    objects["mag_err"] = g["mag_err"].median()
    missing = {}
    for col, label in VERSIONS:
        if not objects[f"rms_{col}"].notna().any():
            missing[label] = _why_missing(col, len(used), prof)
    diagram = NoiseDiagram(
        night=night,
        profile=name,
        frames=int(points["frame_id"].nunique()),
        frames_night=len(frames),
        objects=objects,
        points=points,
        model=noise,
        missing=missing,
    )
    diagram.bins = _bins(objects, points)
    if out is not None:
        diagram.path = plot_noise(diagram, out, band=prof.calibration.band)
    return diagram


def _why_missing(column: str, n_frames: int, prof) -> str:
    if column in ("mag_epd", "mag_tfa"):
        from skylake.ensemble.stage import settings_of

        options, _ = settings_of(prof)
        if not options.detrend:
            return "detrending is off ([ensemble] detrend = false)"
        if n_frames < options.detrend_min_points:
            return (
                f"{n_frames} points a star at most; EPD and TFA need [ensemble] detrend_min_points = "
                f"{options.detrend_min_points}"
            )
        return "no star was detrended"
    return "no point has it (no calibration or no ensemble)"


def _bins(objects: pd.DataFrame, points: pd.DataFrame, width: float = 1.0) -> pd.DataFrame:
    if objects.empty:
        return pd.DataFrame()
    lo = np.floor(objects["mean_mag"].min())
    edges = np.arange(lo, objects["mean_mag"].max() + width, width)
    cut = pd.cut(objects["mean_mag"], edges)
    cols = [f"rms_{c}" for c, _ in VERSIONS] + ["expected", "mag_err", "chi2_dof"] + [t for t, _ in TERMS]
    bins = objects.groupby(cut, observed=True)[cols].median()
    bins["n"] = objects.groupby(cut, observed=True).size()
    at = pd.Series(cut.to_numpy(), index=objects.index)
    pull_bin = points["object_id"].map(at)
    bins["pull_width"] = points.groupby(pull_bin.astype(object), observed=True)["pull"].agg(_robust_width)
    bins.index = [f"{iv.left:.0f}-{iv.right:.0f}" for iv in bins.index]
    return bins[bins["n"] >= 5]


def _robust_width(x) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size < 4:
        return float("nan")
    q75, q25 = np.percentile(x, [75, 25])
    return float((q75 - q25) / 1.349)


def plot_noise(diagram: NoiseDiagram, path, band: str = "") -> Path:
    """Draw ``diagram`` to ``path`` (PNG, 1000 x 760 px).

    The plot shows rms against mean magnitude, a colour per version, the fitted model and its terms over it
    (binned medians of the objects' own, as the measured rms), and the fitted values under the axes.

    Parameters
    ----------
    diagram : NoiseDiagram
        What to draw.
    path : str or Path
        The PNG file (its directory is created).
    band : str
        The band of the magnitudes, for the axis label (empty: none).

    Returns
    -------
    Path
        The file written.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    obj = diagram.objects
    text = diagram.legend_terms() or ["no noise model for this night (skylake ensemble LAKE)"]
    # each flux's line wrapped to the figure's width (monospace), the axes raised above them
    text = [wrapped for line in text for wrapped in textwrap.wrap(line, 112, subsequent_indent="    ")]
    fig, ax = plt.subplots(figsize=(10, 7.6))
    fig.subplots_adjust(left=0.09, right=0.97, bottom=min(0.45, 0.12 + 0.0185 * (len(text) + 1)), top=0.92)
    colours = {"mag_zp": "0.65", "mag": "tab:blue", "mag_tfa": "tab:orange"}
    sizes = {"mag_zp": 10, "mag": 12, "mag_tfa": 6}
    for col, label in VERSIONS:
        y = obj[f"rms_{col}"].to_numpy(float)
        ok = np.isfinite(y) & (y > 0)
        if ok.any():
            med = np.nanmedian(y[ok])
            ax.scatter(
                obj["mean_mag"].to_numpy(float)[ok],
                y[ok],
                s=sizes[col],
                c=colours[col],
                alpha=0.8,
                label=f"{label} (median {1000 * med:.1f} mmag, {int(ok.sum())} objects)",
            )
        else:
            ax.plot([], [], " ", label=f"{label}: not drawn: {diagram.missing.get(label, 'no points')}")
    b = diagram.bins
    if b is not None and len(b):
        x = np.array([float(i.split("-")[0]) + 0.5 for i in b.index])
        ax.plot(x, b["expected"], "k-", lw=2.2, marker="o", ms=4, label="fitted noise model: total")
        styles = {"phot": ("k--", "star, sky and read-out photons"), "scint": ("g-.", "scintillation"),
                  "floor": ("m:", "floor"), "frame": ("c:", "a frame cell's own (cloud)")}  # fmt: skip
        for term, _ in TERMS:
            y = b[term].to_numpy(float)
            y = np.where(y > 1e-4, y, np.nan)  # a term below 0.1 mmag is not drawn (a log axis)
            if np.isfinite(y).any():
                fmt, label = styles[term]
                ax.plot(x, y, fmt, lw=1.3, label=f"model: {label}")
    ax.set_yscale("log")
    measured = np.concatenate([obj[f"rms_{c}"].to_numpy(float) for c, _ in VERSIONS])
    measured = measured[np.isfinite(measured) & (measured > 0)]
    if measured.size:
        ax.set_ylim(max(1e-4, np.percentile(measured, 0.5) / 3), np.max(measured) * 2)
    ax.set_xlabel(f"mean magnitude{f' ({band})' if band else ''} [mag]", fontsize=12)
    ax.set_ylabel("rms of the night's points [mag]", fontsize=12)
    ax.set_title(
        f"Noise diagram: night {diagram.night}, {diagram.profile}: {diagram.frames} frames solved together "
        f"(of {diagram.frames_night}), {len(obj)} objects",
        fontsize=12,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8.5, loc="upper left")
    fig.text(
        0.09, 0.03, "Fitted model, per flux used:\n" + "\n".join(text), fontsize=8.5, va="bottom", family="monospace"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
