"""Measure and draw the real all-sky frames: ``python -m skylake.allsky DATA_DIR --out DIR``.

``DATA_DIR`` holds the IceAct and CTA frames and ``hipparcos.fits.gz`` (``../shared/data/allsky``).
Fits both cameras from their published models, measures the cloud fractions, maps and sky
brightness, writes the PNGs to ``--out`` and prints a JSON summary. Nothing else is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _fit_iceact(data: Path, hip, summary: dict, out: Path):
    """Fit IceAct on its clear frame from the published model, then with the tilt; ``(clear frame, model, site)``."""
    from skylake.allsky.camera import CameraModel, Site
    from skylake.allsky.fit import fit_camera
    from skylake.allsky.io import read_allsky_frame
    from skylake.allsky.plots import plot_fit_residuals

    # the published model (rotation 87 deg clockwise = -87)
    ice_site = Site(-89.99, -63.45, 2801.0)
    clear = read_allsky_frame(data / "iceact_20170503_starry.fits")
    published = CameraModel("equidistant", 1.45, 0.0075, x0=326.5, y0=250.0, rotation_deg=-87.0)
    t0 = time.perf_counter()
    fit = fit_camera(clear.data, published, ice_site, clear.time, hip, vmax=4.5, alt_min_deg=20.0)
    fit_t = fit_camera(
        clear.data,
        fit.model,
        ice_site,
        clear.time,
        hip,
        vmax=4.5,
        alt_min_deg=20.0,
        fit=("x0", "y0", "rotation_deg", "focal_length_mm", "k1", "tilt"),
    )
    summary["iceact_fit"] = {**fit.summary(), "seconds": round(time.perf_counter() - t0, 2)}
    summary["iceact_fit_tilt"] = {
        **fit_t.summary(),
        "tilt_deg": fit_t.model.tilt_deg,
        "tilt_az_deg": fit_t.model.tilt_az_deg,
        "zenith_pixel": [float(v) for v in fit_t.model.altaz_to_pixel(90.0, 0.0)],
    }
    plot_fit_residuals(fit_t, out / "iceact_fit_residuals.png", image=clear.data)
    return clear, fit_t.model, ice_site


def _plot_iceact_frame(r, fr, name: str, s, ice, ice_site, out: Path) -> None:
    """Draw one processed IceAct frame: its stars, transparency maps and sky brightness."""
    from skylake.allsky.plots import (
        CONVENTION,
        plot_sky_brightness,
        plot_sky_brightness_map,
        plot_stars,
        plot_transparency,
    )

    sel = (r.stars["mag"] <= 4.0) & (r.stars["alt"] >= 20.0)
    when = fr.time.isot[:19]
    plot_stars(
        fr.data,
        ice,
        r.stars[sel],
        out / f"iceact_{name}_stars.png",
        seen=r.stars["seen"][sel],
        title=f"IceAct {when} UTC: V < 4 stars above 20°, cloud fraction {r.cloud_fraction:.2f}\n{CONVENTION}",
    )
    plot_transparency(
        r.transparency_horizon,
        s.nside,
        out / f"iceact_{name}_transparency_horizon.png",
        title=f"IceAct {when}: transparency, horizon pixels\n{CONVENTION}",
    )
    plot_transparency(
        r.transparency_equatorial,
        s.nside,
        out / f"iceact_{name}_transparency_equatorial.png",
        frame="equatorial",
        site=ice_site,
        time=fr.time,
        title=f"IceAct {when}: transparency, equatorial pixels\n{CONVENTION}",
    )
    plot_sky_brightness(
        r.sky_image,
        ice,
        out / f"iceact_{name}_sky.png",
        title=f"IceAct {when}: sky brightness (zp {r.zeropoint:.2f})\n{CONVENTION}",
    )
    plot_sky_brightness_map(
        r.sky_horizon,
        s.nside,
        out / f"iceact_{name}_sky_healpix.png",
        title=f"IceAct {when}: sky brightness, horizon pixels\n{CONVENTION}",
    )


def _process_iceact(data: Path, hip, clear, ice, ice_site, summary: dict, out: Path) -> None:
    """Process and draw the IceAct clear frame, then the cloudy one with the clear frame's zeropoint."""
    from skylake.allsky.io import read_allsky_frame
    from skylake.allsky.pipeline import AllSkySettings, process_frame

    settings = AllSkySettings(saturation_adu=60000.0, bias_adu="corners")
    for name, path, zp in (
        ("clear", "iceact_20170503_starry.fits", None),
        ("cloudy", "iceact_20170611_cloudy.fits", "clear"),
    ):
        fr = clear if name == "clear" else read_allsky_frame(data / path)
        s = (
            settings
            if zp is None
            else AllSkySettings(
                saturation_adu=60000.0, bias_adu="corners", zp_clear=summary["iceact_clear"]["zeropoint"]
            )
        )
        r = process_frame(fr.data, fr.time, fr.exptime_s, ice, ice_site, hip, s)
        summary[f"iceact_{name}"] = r.summary()
        _plot_iceact_frame(r, fr, name, s, ice, ice_site, out)


def _cta(data: Path, hip, summary: dict, out: Path) -> None:
    """Fit the CTA camera on its overcast frame, process it and draw its fit and stars."""
    from skylake.allsky.camera import CameraModel, Site
    from skylake.allsky.fit import fit_camera
    from skylake.allsky.io import read_allsky_frame
    from skylake.allsky.pipeline import AllSkySettings, process_frame
    from skylake.allsky.plots import CONVENTION, plot_fit_residuals, plot_stars

    # the overcast frame still shows ~9 bright stars: enough for zenith, rotation and scale
    cta_site = Site(28.76187, -17.890777, 2200.0)
    cta_fr = read_allsky_frame(data / "cta_lapalma_20151220_cloudy.fits.gz")
    start = CameraModel("equisolid", 4.44, 15.15 / 2048, x0=847.5, y0=849.5, rotation_deg=-2.75)
    cfit = fit_camera(
        cta_fr.data,
        start,
        cta_site,
        cta_fr.time,
        hip,
        vmax=4.5,
        min_stars=6,
        search=False,
        fit=("x0", "y0", "rotation_deg", "focal_length_mm"),
    )
    cta = cfit.model
    disc = float(np.sqrt(np.isfinite(cta_fr.data).sum() / np.pi))
    summary["cta_fit"] = {
        **cfit.summary(),
        "effective_pixel_um": 1000 * cta.pixel_size_mm * 4.44 / cta.focal_length_mm,
        "horizon_radius_px": cta.horizon_radius_px,
        "illuminated_disc_radius_px": disc,
    }
    plot_fit_residuals(cfit, out / "cta_fit_residuals.png", image=cta_fr.data)
    r = process_frame(cta_fr.data, cta_fr.time, 1.0, cta, cta_site, hip, AllSkySettings())
    summary["cta_overcast"] = r.summary()
    sel = (r.stars["mag"] <= 4.0) & (r.stars["alt"] >= 20.0)
    plot_stars(
        cta_fr.data,
        cta,
        r.stars[sel],
        out / "cta_overcast_stars.png",
        seen=r.stars["seen"][sel],
        title=f"CTA La Palma {cta_fr.time.isot[:19]} UTC: cloud fraction {r.cloud_fraction:.2f}\n{CONVENTION}",
    )


def main(argv=None) -> int:
    """Fit, measure and draw the real IceAct and CTA all-sky frames.

    Fits the IceAct camera on its clear frame from the published model (then again with the tilt and
    ``k1``), processes its clear and cloudy frames, fits the CTA camera on its overcast frame, draws the
    PNGs into ``--out`` and prints a JSON summary on stdout.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (``DATA_DIR [--out DIR]``); None reads ``sys.argv``.

    Returns
    -------
    int
        The exit code: 0.
    """
    ap = argparse.ArgumentParser(prog="python -m skylake.allsky", description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="directory with the IceAct/CTA frames and hipparcos.fits.gz")
    ap.add_argument("--out", type=Path, default=Path("allsky-png"), help="directory for the PNGs")
    args = ap.parse_args(argv)

    from skylake.allsky.catalog import read_hipparcos

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    hip = read_hipparcos(args.data / "hipparcos.fits.gz")
    summary: dict = {}
    clear, ice, ice_site = _fit_iceact(args.data, hip, summary, out)
    _process_iceact(args.data, hip, clear, ice, ice_site, summary, out)
    _cta(args.data, hip, summary, out)
    json.dump(summary, sys.stdout, indent=1, default=float)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
