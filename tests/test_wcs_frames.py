"""A header WCS in Galactic, ecliptic or old-equinox coordinates places sources in ICRS (issue 22: a GLON-TAN
frame was stored with l, b as RA, Dec, 120 deg off and in the wrong partitions). A real SkyCamZ frame's WCS is
re-expressed in each frame (a TAN WCS fitted to the original's pixel-to-sky map, converted by astropy): its
sources land where the original's do, within 0.1"."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import FK4, BarycentricMeanEcliptic, Galactic, SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from astropy.wcs.utils import fit_wcs_from_points

from skylake.frame.platesolve import strip_wcs
from skylake.profile import load_profile
from skylake.tasks.frame import process_file

pytestmark = pytest.mark.realdata


def _reexpressed(path, tmp_path, frame, ctype, extra=None):
    """The frame with a TAN WCS in ``frame`` that maps its pixels where the original does."""
    with fits.open(path) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data
    w = WCS(header)
    ny, nx = data.shape
    yy, xx = np.meshgrid(np.linspace(0, ny - 1, 15), np.linspace(0, nx - 1, 15), indexing="ij")
    sky = w.pixel_to_world(xx.ravel(), yy.ravel()).transform_to(frame)
    lon, lat = sky.spherical.lon.deg, sky.spherical.lat.deg
    fitted = fit_wcs_from_points((xx.ravel(), yy.ravel()), SkyCoord(lon, lat, unit="deg"), projection="TAN")
    new = strip_wcs(header)
    cards = fitted.to_header()
    for key in (
        "WCSAXES",
        "CRPIX1",
        "CRPIX2",
        "PC1_1",
        "PC1_2",
        "PC2_1",
        "PC2_2",
        "CDELT1",
        "CDELT2",
        "CRVAL1",
        "CRVAL2",
        "CUNIT1",
        "CUNIT2",
    ):
        if key in cards:
            new[key] = cards[key]
    new["CTYPE1"], new["CTYPE2"] = ctype
    for key in ("RADESYS", "EQUINOX"):
        new.remove(key, ignore_missing=True)
    for key, value in (extra or {}).items():
        new[key] = value
    out = tmp_path / f"{ctype[0][:4].strip('-')}.fits"
    fits.PrimaryHDU(data=data, header=new).writeto(out)
    return out


@pytest.mark.parametrize("name", ["galactic", "ecliptic", "fk4"])
def test_a_wcs_in_another_frame_places_sources_in_icrs(skycamz_files, tmp_path, name):
    profile = load_profile("skycamz")
    frames = {
        "galactic": (Galactic(), ("GLON-TAN", "GLAT-TAN"), None),
        "ecliptic": (
            BarycentricMeanEcliptic(equinox=Time(2000.0, format="jyear")),
            ("ELON-TAN", "ELAT-TAN"),
            {"EQUINOX": 2000.0},
        ),
        "fk4": (
            FK4(equinox=Time(1950.0, format="jyear"), obstime=Time(1950.0, format="jyear")),
            ("RA---TAN", "DEC--TAN"),
            {"RADESYS": "FK4", "EQUINOX": 1950.0},
        ),
    }
    frame, ctype, extra = frames[name]
    (original,) = process_file(str(skycamz_files[0]), profile)
    (copy,) = process_file(str(_reexpressed(skycamz_files[0], tmp_path, frame, ctype, extra)), profile)
    assert copy.record["status"] == "ok", copy.record["reason"]
    a, b = original.sources, copy.sources
    np.testing.assert_array_equal(a["x"], b["x"])  # the same detections
    sep = SkyCoord(a["ra"], a["dec"], unit="deg").separation(SkyCoord(b["ra"], b["dec"], unit="deg")).arcsec
    assert np.max(sep) < 0.1, np.max(sep)
    assert abs(copy.record["ra_center"] - original.record["ra_center"]) < 1e-4
    assert np.mean((a["_healpix_29"] >> 48) == (b["_healpix_29"] >> 48)) > 0.99  # the same order-5 partitions


def test_a_wcs_in_a_frame_skylake_does_not_convert_is_rejected_naming_it(skycamz_files, tmp_path):
    with fits.open(skycamz_files[0]) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data
    header["CTYPE1"], header["CTYPE2"] = "HLON-TAN", "HLAT-TAN"
    fits.PrimaryHDU(data=data, header=header).writeto(tmp_path / "helio.fits")
    (result,) = process_file(str(tmp_path / "helio.fits"), load_profile("skycamz"))
    assert result.record["status"] == "rejected"
    assert "'HLON-TAN'/'HLAT-TAN'" in result.record["reason"]
