"""Maps against the exact truth of a synthetic night (:class:`skylake.synthetic.DemoTruth`), for the demo
and the tests.

* transparency: per pixel, ``10**(-0.4 median(cloud_mag))`` over the same star measurements the map
  used (the cloud's true extinction of each star; with ``zp_clear = "auto"`` the map removes the
  airmass term, so this is what it must give), and the cloud model at the pixel centre (frame maps);
* sky brightness: per pixel, the median over the map's sky samples of the frame's true
  ``zp_eff - 2.5 log10(sky_adu / exptime / pixscale**2)``, i.e. the injected sky calibrated with the
  injected (airmass-extincted) zeropoint, the convention of the map's measured zeropoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skylake.lake import Lake

__all__ = ["transparency_vs_truth", "sky_vs_truth"]


def _frame_truth(lake: Lake, truth) -> pd.DataFrame:
    frames = lake.read_frames(columns=["frame_id", "path"]).to_pandas()
    return frames.merge(truth.frames, on="path")


def transparency_vs_truth(lake: Lake, maps, truth) -> pd.DataFrame:
    """One row per (map_id, pixel) with a measured transparency, beside the truth.

    Parameters
    ----------
    lake : Lake
        The lake the maps were made from.
    maps : skylake.maps.build.MapSet
        The maps, with their star samples (``samples=True``).
    truth : skylake.synthetic.DemoTruth
        The synthetic night's truth.

    Returns
    -------
    pandas.DataFrame
        Columns map_id, frame_of, pixel, lon, lat [deg], n_stars, ``transparency``, ``truth`` (same stars)
        and, for frame maps, ``model`` (the cloud at the pixel centre; NaN for other maps and horizon maps).
    """
    ft = _frame_truth(lake, truth)
    det = truth.detections[["path", "star_id", "cloud_mag"]].merge(ft[["path", "frame_id"]], on="path")
    s = maps.stars.merge(det.rename(columns={"star_id": "ref_id"}), on=["frame_id", "ref_id"], how="left")
    t = s.groupby(["map_id", "pixel"])["cloud_mag"].median().rename("cloud_median").reset_index()
    px = maps.pixels.dropna(subset=["transparency"]).merge(t, on=["map_id", "pixel"], how="left")
    px["truth"] = 10.0 ** (-0.4 * px["cloud_median"])
    idx = maps.index.merge(
        ft[["frame_id", "cloud_ra", "cloud_dec", "cloud_radius_deg", "cloud_depth_mag"]], on="frame_id", how="left"
    )
    px = px.merge(idx[["map_id", "cloud_ra", "cloud_dec", "cloud_radius_deg", "cloud_depth_mag"]], on="map_id")
    eq = px["frame_of"] == "equatorial"
    r1, d1, r2, d2 = (np.radians(px[c].to_numpy(float)) for c in ("lon", "lat", "cloud_ra", "cloud_dec"))
    sep = np.degrees(np.arccos(np.clip(np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(r1 - r2), -1, 1)))
    cloud = px["cloud_depth_mag"].to_numpy(float) * np.exp(-0.5 * (sep / px["cloud_radius_deg"].to_numpy(float)) ** 2)
    cloud = np.where(px["cloud_depth_mag"].to_numpy(float) == 0, 0.0, cloud)
    px["model"] = np.where(eq, 10.0 ** (-0.4 * cloud), np.nan)
    return px[["map_id", "frame_of", "pixel", "lon", "lat", "n_stars", "transparency", "truth", "model"]]


def sky_vs_truth(lake: Lake, maps, truth) -> pd.DataFrame:
    """One row per (map_id, pixel) with a sky brightness: ``sky_mag`` and ``truth`` (mag/arcsec^2).

    Parameters
    ----------
    lake : Lake
        The lake the maps were made from.
    maps : skylake.maps.build.MapSet
        The maps, with their sky samples (``samples=True``).
    truth : skylake.synthetic.DemoTruth
        The synthetic night's truth.

    Returns
    -------
    pandas.DataFrame
        Columns map_id, frame_of, pixel, n_sky, ``sky_mag`` and ``truth`` [mag/arcsec2].
    """
    ft = _frame_truth(lake, truth)
    scale = float(truth.meta["pixscale_arcsec"])
    ft["sky_true"] = ft["zp_eff"] - 2.5 * np.log10(ft["sky_adu"] / ft["exptime"] / scale**2)
    s = maps.sky.merge(ft[["frame_id", "sky_true"]], on="frame_id")
    t = s.groupby(["map_id", "pixel"])["sky_true"].median().rename("truth").reset_index()
    px = maps.pixels.dropna(subset=["sky_mag"]).merge(t, on=["map_id", "pixel"])
    return px[["map_id", "frame_of", "pixel", "n_sky", "sky_mag", "truth"]]
