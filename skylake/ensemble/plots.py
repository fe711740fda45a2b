"""The noise diagram: each object's scatter in one night against its magnitude, for each light-curve version.

The diagram shows with it the noise the photons, the sky, the read-out and the atmosphere should give
(:mod:`.noise`).

``skylake plot noise LAKE --out noise.png [--night N] [--profile P]`` draws it from what the lake holds:
the night's frames (one camera: a profile), their light-curve points (LAKE/lightcurves, only the partitions
under the frames' footprints) and the expected curve from the frames' median zeropoint, exposure, sky,
gain and airmass and the profile's aperture, read noise and telescope diameter (``[ensemble]``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from skylake.ensemble.noise import VERSIONS, NoiseModel, object_scatter
from skylake.errors import LakeError

log = logging.getLogger(__name__)

__all__ = ["NoiseDiagram", "noise_diagram", "noise_points", "plot_noise", "NothingToPlot"]


class NothingToPlot(LakeError):
    """No night, frame or light curve to draw (exit 4, as the other commands that find nothing)."""

    exit_code = 4


@dataclass
class NoiseDiagram:
    """What a noise diagram shows: the objects' scatter, the expected noise and where it was drawn."""

    night: str
    profile: str
    frames: int
    objects: pd.DataFrame  # object_scatter(): n, mean_mag, rms_<version>
    model: NoiseModel | None
    path: Path | None = None
    bins: pd.DataFrame = field(default=None)  # per magnitude bin: median rms per version and the expected noise

    def summary(self) -> str:
        """One line per magnitude bin: the median rms of each version and the expected noise, mmag.

        Returns
        -------
        str
            A header line and a line per bin of at least 5 objects, or a note that there is no such bin.
        """
        if self.bins is None or self.bins.empty:
            return "no magnitude bin with 5 objects"
        lines = [f"{'mag':>9} {'n':>4} " + " ".join(f"{c:>9}" for c, _ in VERSIONS) + f" {'expected':>9}  (mmag)"]
        for idx, row in self.bins.iterrows():
            vals = " ".join(f"{1000 * row[f'rms_{c}']:9.1f}" for c, _ in VERSIONS)
            lines.append(f"{idx:>9} {int(row['n']):4d} {vals} {1000 * row['expected']:9.1f}")
        return "\n".join(lines)


def _pick_night(lake, night: str | None, profile: str | None) -> tuple[str, str, pd.DataFrame]:
    cols = [
        "frame_id",
        "night",
        "profile",
        "status",
        "mjd",
        "exptime",
        "airmass",
        "bkg_median",
        "gain",
        "nx",
        "ny",
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
        ``object_id``, ``frame_id``, ``mjd``, ``mag``, ``mag_err``, ``mag_zp``, ``mag_epd``, ``mag_tfa`` and
        ``flags`` of the frames' points; empty when the lake has no light curves or the frames no footprint.
    """
    import lsdb

    from skylake.calib.crossmatch import footprint_moc
    from skylake.jit_cache import cache_hats_jit
    from skylake.lake.tables import LIGHTCURVES, get

    cache_hats_jit()  # the MOC filter's numba code from disk
    moc = footprint_moc(frames, 10.0)
    cols = ["object_id", "frame_id", "mjd", "mag", "mag_err", "mag_zp", "mag_epd", "mag_tfa", "flags"]
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


def _model(lake, frames: pd.DataFrame, profile) -> NoiseModel | None:
    """The expected noise of the night's median frame (None without a calibration to give magnitudes)."""
    from skylake.calib.model import KRON, LatestPolicy, latest_calibration
    from skylake.ensemble.stage import settings_of
    from skylake.lake.tables import ZEROPOINTS

    zps = lake.read_night_table(
        ZEROPOINTS,
        columns=["frame_id", "refcat", "zp", "apcor", "zp_status", "calibrated_at"],
        nights=sorted(set(frames["night"])),
    ).to_pandas()
    zps = zps[zps["frame_id"].isin(frames["frame_id"])]
    if zps.empty:
        return None
    zps = latest_calibration(zps, LatestPolicy(refcat=profile.calibration.refcat or None))
    # the light in the aperture: a calibrated aperture magnitude had the aperture correction taken off
    zp_ap = zps["zp"].to_numpy(float) - np.nan_to_num(zps["apcor"].to_numpy(float))
    zp = float(np.nanmedian(zp_ap)) if np.isfinite(zp_ap).any() else np.nan
    if not np.isfinite(zp):
        return None
    options, _ = settings_of(profile)
    phot = profile.photometry
    flux = profile.calibration.flux
    if flux == KRON:  # a Gaussian star's Kron aperture: about 1.33 FWHM in radius (SExtractor's 2.5 r_kron)
        fwhm = float(
            np.nanmedian(
                lake.read_frames(columns=["frame_id", "fwhm_median"])
                .to_pandas()
                .set_index("frame_id")
                .loc[frames["frame_id"], "fwhm_median"]
            )
        )
        radius = max(1.33 * fwhm, phot.kron_min_radius)
    else:
        radius = phot.aperture_radii[int(flux[-1]) - 1]
    n_ann = np.pi * (phot.annulus[1] ** 2 - phot.annulus[0] ** 2) if flux != KRON else np.inf
    gain = float(np.nanmedian(frames["gain"].to_numpy(float)))
    return NoiseModel(
        zp=zp,
        exptime=float(np.nanmedian(frames["exptime"])),
        sky_adu=float(np.nanmedian(frames["bkg_median"])),
        gain=gain,
        read_noise_e=float(options.read_noise_adu) * gain,
        n_pix=float(np.pi * radius**2),
        n_ann=float(n_ann),
        airmass=float(np.nanmedian(frames["airmass"])),
        diameter_m=float(options.telescope_diameter_m),
        height_m=float(profile.site.height_m),
    )


def noise_diagram(
    lake, night: str | None = None, profile: str | None = None, out=None, min_fraction: float = 0.5
) -> NoiseDiagram:
    """The noise diagram of one night and camera (see the module docstring); drawn to ``out`` (PNG) when given.

    Objects on fewer than ``min_fraction`` of the night's frames (and fewer than 5) are left out.

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
    min_fraction : float
        Fraction of the night's frames an object must be on (at least 5 points in any case).

    Returns
    -------
    NoiseDiagram
        The objects' scatter, the expected noise (None without a calibration), the magnitude bins and the
        path of the PNG when drawn.

    Raises
    ------
    NothingToPlot
        When no ok frame placed by a WCS matches ``night`` and ``profile``, or the night has no light-curve
        points.
    """
    from skylake.lake import Lake
    from skylake.profile_store import frames_profile

    lake = Lake.open(lake) if not isinstance(lake, Lake) else lake
    night, name, frames = _pick_night(lake, night, profile)
    versions = lake.read_frames(columns=["frame_id", "pipeline_version"]).to_pandas().set_index("frame_id")
    prof = frames_profile(lake, name, str(versions.loc[frames["frame_id"].iloc[0], "pipeline_version"]))
    points = noise_points(lake, frames)
    if points.empty:
        raise NothingToPlot(
            f"night {night} ({name}) has no light-curve points: run `skylake objects build {lake.url}` first"
        )
    objects = object_scatter(points, max(5, int(np.ceil(min_fraction * len(frames)))))
    model = _model(lake, frames, prof)
    diagram = NoiseDiagram(night=night, profile=name, frames=len(frames), objects=objects, model=model)
    diagram.bins = _bins(objects, model)
    if out is not None:
        diagram.path = plot_noise(diagram, out, band=prof.calibration.band)
    return diagram


def _bins(objects: pd.DataFrame, model: NoiseModel | None, width: float = 1.0) -> pd.DataFrame:
    if objects.empty:
        return pd.DataFrame()
    lo = np.floor(objects["mean_mag"].min())
    edges = np.arange(lo, objects["mean_mag"].max() + width, width)
    cut = pd.cut(objects["mean_mag"], edges)
    cols = [f"rms_{c}" for c, _ in VERSIONS]
    bins = objects.groupby(cut, observed=True)[cols].median()
    bins["n"] = objects.groupby(cut, observed=True).size()
    centres = np.array([iv.mid for iv in bins.index])
    bins["expected"] = model.total(centres) if model is not None else np.nan
    bins.index = [f"{iv.left:.0f}-{iv.right:.0f}" for iv in bins.index]
    return bins[bins["n"] >= 5]


def plot_noise(diagram: NoiseDiagram, path, band: str = "") -> Path:
    """Draw ``diagram`` to ``path`` (PNG, 1000 x 700 px).

    The plot shows rms against mean magnitude, a colour per version, the expected noise and its parts over it.

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
    fig, ax = plt.subplots(figsize=(10, 7))
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.1, top=0.9)
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
    m = diagram.model
    if m is not None and len(obj):
        grid = np.linspace(obj["mean_mag"].min() - 0.2, obj["mean_mag"].max() + 0.2, 200)
        ax.plot(grid, m.total(grid), "k-", lw=2, label="expected: total")
        ax.plot(grid, m.photon(grid), "k--", lw=1, label="star's photons")
        ax.plot(grid, m.background(grid), "k:", lw=1, label="sky + read noise in the aperture")
        scint = m.scintillation()
        if scint > 0:
            ax.axhline(
                scint,
                color="tab:green",
                ls="-.",
                lw=1,
                label=f"scintillation ({100 * m.diameter_m:.0f} cm, airmass {m.airmass:.2f})",
            )
        else:
            ax.plot([], [], " ", label="scintillation: telescope diameter unknown ([ensemble] telescope_diameter_m)")
    ax.set_yscale("log")
    ax.set_xlabel(f"mean magnitude{f' ({band})' if band else ''} [mag]", fontsize=12)
    ax.set_ylabel("rms of the night's points [mag]", fontsize=12)
    ax.set_title(
        f"Noise diagram: night {diagram.night}, {diagram.profile}: {diagram.frames} frames, {len(obj)} objects",
        fontsize=13,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
