"""Polar pictures of the real IceAct frames: written, 800 px, and oriented as the title says."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA, require_shared
from matplotlib.image import imread

from skylake.allsky.camera import CameraModel, Site
from skylake.allsky.catalog import read_hipparcos
from skylake.allsky.io import read_allsky_frame
from skylake.allsky.maps import (
    clear_zeropoint,
    sky_brightness_image,
    sky_brightness_map,
    star_transparency,
    transparency_map,
)
from skylake.allsky.photometry import cloud_fraction, photometer_catalog
from skylake.allsky.plots import CONVENTION, plot_sky_brightness, plot_sky_brightness_map, plot_stars, plot_transparency

ALLSKY = SHARED_DATA / "allsky"
ICEACT = CameraModel(
    "equidistant",
    1.44629,
    0.0075,
    x0=325.518,
    y0=251.668,
    rotation_deg=-86.792,
    k1=0.00119,
    tilt_deg=0.687,
    tilt_az_deg=239.15,
)
SITE = Site(-89.99, -63.45, 2801)


@pytest.mark.realdata
def test_polar_pictures_of_the_real_iceact_frames(tmp_path):
    hip = read_hipparcos(require_shared(ALLSKY / "hipparcos.fits.gz"))
    clear = read_allsky_frame(require_shared(ALLSKY / "iceact_20170503_starry.fits"))
    st = photometer_catalog(clear.data, ICEACT, SITE, clear.time, hip, vmax=6.0, alt_min_deg=10, saturation=60000)
    zp, _ = clear_zeropoint(st, exptime_s=clear.exptime_s, extinction=0.15)
    sel = (st["mag"] <= 4) & (st["alt"] >= 20)
    cf = cloud_fraction(st, model=ICEACT)
    paths = [plot_stars(clear.data, ICEACT, st[sel], tmp_path / "stars.png", seen=cf["seen"][sel])]
    tr = star_transparency(st, zp_clear=zp, exptime_s=clear.exptime_s, extinction=0.15)
    paths.append(plot_transparency(transparency_map(tr, nside=8), 8, tmp_path / "transp_hor.png"))
    paths.append(
        plot_transparency(
            transparency_map(tr, nside=8, frame="equatorial"),
            8,
            tmp_path / "transp_equ.png",
            frame="equatorial",
            site=SITE,
            time=clear.time,
        )
    )
    sb = sky_brightness_image(clear.data, ICEACT, zeropoint=zp, exptime_s=clear.exptime_s, bias=1199.0)
    paths.append(plot_sky_brightness(sb, ICEACT, tmp_path / "sky.png"))
    paths.append(plot_sky_brightness_map(sky_brightness_map(sb, ICEACT, nside=8), 8, tmp_path / "sky_hp.png"))
    for p in paths:
        img = imread(p)
        assert img.shape[:2] == (800, 800), p
        assert img[..., :3].std() > 0.05, p  # not blank
    assert "N up, E left" in CONVENTION


def test_polar_orientation_is_north_up_east_left(tmp_path):
    """A bright spot at azimuth 90 deg (East) must be drawn left of the centre, one at 0 (North)
    above it: checked on the rendered pixels."""
    m = CameraModel("equidistant", 1.45, 0.0075, 350.0, 350.0, rotation_deg=33.0, parity=-1)
    img = np.zeros((700, 700))
    for alt, az in ((45, 0), (45, 90)):
        x, y = m.altaz_to_pixel(alt, az)
        img[
            int(round(float(y))) - 3 : int(round(float(y))) + 4, int(round(float(x))) - 3 : int(round(float(x))) + 4
        ] = 1.0
    from astropy.table import Table

    p = plot_stars(img, m, Table({"alt": [], "az": [], "mag": []}), tmp_path / "o.png")
    rgb = imread(p)[..., :3].mean(axis=2)
    # polar axes in rect [0.06, 0.06, 0.86, 0.8] of an 800 px figure: a 640 px circle centred at
    # x = 48 + 688 / 2 = 392, y = 800 - (48 + 320) = 432 (from the top); altitude 45 deg is
    # halfway to the rim (160 px)
    cx, cy, r = 392, 432, 160

    def spot(x, y):
        return rgb[y - 4 : y + 5, x - 4 : x + 5].mean()

    assert spot(cx, cy - r) > 0.5 and spot(cx, cy + r) < 0.2  # North up, not down
    assert spot(cx - r, cy) > 0.5 and spot(cx + r, cy) < 0.2  # East left, not right
