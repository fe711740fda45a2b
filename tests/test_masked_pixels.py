"""Only sources whose apertures touch a bad (NaN/inf) pixel carry APER_HASMASKED (32) (issue 22: one NaN pixel
anywhere set it on ~57 % of a frame's sources, far from the pixel, and calibration then failed with
too_few_stars). A real SkyCamZ frame with a NaN border (as after registration) and a NaN pixel on one star."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from skylake.profile import load_profile
from skylake.tasks.frame import process_file

pytestmark = pytest.mark.realdata

BORDER = 6  # px of NaN around the frame
HASMASKED, ALLMASKED = 32, 64


@pytest.fixture(scope="module")
def frames(skycamz_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("masked")
    profile = load_profile("skycamz")
    (clean,) = process_file(str(skycamz_files[0]), profile)
    with fits.open(skycamz_files[0]) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data.astype(np.float32)
    bad = np.zeros(data.shape, bool)
    bad[:BORDER], bad[-BORDER:], bad[:, :BORDER], bad[:, -BORDER:] = True, True, True, True
    s = clean.sources
    inner = (s["edge_dist"] > 40) & ((s["flags"] & 0xFF) == 0)
    star = np.flatnonzero(inner)[np.argmax(s["flux_auto"][inner])]
    bad[int(round(s["y"][star])), int(round(s["x"][star]))] = True
    data[bad] = np.nan
    fits.PrimaryHDU(data=data, header=header).writeto(root / "nan.fits")
    (masked,) = process_file(str(root / "nan.fits"), profile)
    return clean, masked, bad, profile


def test_a_frame_without_bad_pixels_flags_none(frames):
    clean, _, _, _ = frames
    assert not np.any(clean.sources["flags"] & (HASMASKED | ALLMASKED))


def test_only_sources_whose_apertures_touch_a_bad_pixel_are_flagged(frames):
    _, masked, bad, profile = frames
    s = masked.sources
    flagged = (s["flags"] & HASMASKED) != 0
    yy, xx = np.nonzero(bad)
    from scipy.spatial import cKDTree

    nearest, _ = cKDTree(np.column_stack([xx, yy])).query(np.column_stack([s["x"], s["y"]]))
    reach = np.maximum(max(profile.photometry.aperture_radii), s["kron_radius"] * s["a"])
    half_diagonal = np.sqrt(0.5)
    # a bad pixel wholly inside the largest aperture: flagged; none within reach of the apertures: not
    assert np.all(flagged[nearest < max(profile.photometry.aperture_radii) - half_diagonal])
    assert not np.any(flagged[nearest > reach + half_diagonal])
    # they are few: those near the border and the star with the bad pixel, not half the frame
    assert 0 < flagged.mean() < 0.1, flagged.mean()
    assert np.all((s["edge_dist"][flagged] < BORDER + reach[flagged] + 1) | (nearest[flagged] < reach[flagged] + 1))


def test_the_flag_does_not_cost_the_calibration_its_stars(frames):
    clean, masked, _, _ = frames
    usable = lambda s: np.sum((s["flags"] & 254) == 0)  # noqa: E731 - calibration's default flags_mask
    assert usable(masked.sources) > 0.85 * usable(clean.sources)
