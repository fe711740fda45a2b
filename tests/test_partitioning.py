"""Partitions that fit the camera: a wide-field frame gets coarser new partitions so that a batch writes a
few files, not hundreds; a narrow-field camera keeps the lake's order. SYNTHETIC positions and frames."""

from __future__ import annotations

import numpy as np
import pytest
from hats.pixel_math.spatial_index import compute_spatial_index

from skylake.lake import Lake
from skylake.lake.hats_meta import MAX_PARTITIONS_PER_FRAME, order_for_frames
from skylake.pipeline import ingest
from skylake.status import lake_status
from skylake.synthetic import ZP_TRUE_DEFAULT, write_demo_night


def cap(ra0: float, dec0: float, radius_deg: float, n: int, rng) -> np.ndarray:
    """``_healpix_29`` of ``n`` random points within ``radius_deg`` of (ra0, dec0)."""
    cos_r = np.cos(np.radians(radius_deg))
    z = rng.uniform(cos_r, 1.0, n)  # uniform on the cap around the pole, then rotated to (ra0, dec0)
    phi = rng.uniform(0, 2 * np.pi, n)
    x, y = np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi)
    t = np.radians(90.0 - dec0)
    x, z = x * np.cos(t) + z * np.sin(t), -x * np.sin(t) + z * np.cos(t)
    ra = (np.degrees(np.arctan2(y, x)) + ra0) % 360.0
    dec = np.degrees(np.arcsin(np.clip(z, -1, 1)))
    return np.asarray(compute_spatial_index(ra, dec), dtype=np.int64)


@pytest.mark.parametrize("radius_deg, expected", [(0.5, 5), (1.0, 5), (50.0, 1)])
def test_order_follows_the_field(radius_deg, expected):
    rng = np.random.default_rng(1)
    h29 = np.concatenate([cap(150.0 + 2 * k, 20.0, radius_deg, 3000, rng) for k in range(3)])
    frames = np.repeat(np.arange(3), 3000)
    order = order_for_frames(h29, frames, 5)
    assert order == expected
    # the rule: at that order no frame spans more than the limit, one order finer some frame does
    for f in range(3):
        assert len(np.unique(h29[frames == f] >> 2 * (29 - order))) <= MAX_PARTITIONS_PER_FRAME
    if order < 5:
        assert (
            max(len(np.unique(h29[frames == f] >> 2 * (29 - order - 1))) for f in range(3)) > MAX_PARTITIONS_PER_FRAME
        )


def test_three_all_sky_sized_frames_write_a_few_tens_of_files(tmp_path):
    # 1024 x 1024 pixels of 350" (100 degrees across); zeropoint lowered so the sky stays under saturation
    write_demo_night(
        tmp_path / "frames",
        n_frames=3,
        shape=(1024, 1024),
        pixscale_arcsec=350.0,
        n_stars=3000,
        seed=3,
        cloud=False,
        n_variables=0,
        mag_range=(1.0, 6.5),
        dec0_deg=40.0,
        zp_true=ZP_TRUE_DEFAULT - 9.7,
    )
    lake = Lake.init(tmp_path / "lake")
    report = ingest(lake, [str(tmp_path / "frames")], "demo", progress=False)
    assert report.ingested == 3 and report.sources > 3000
    status = lake_status(lake)
    # at the lake's order 5 the same frames wrote 882 files (measured before this rule)
    assert status["source_files"] == status["partitions"] <= 30
    assert lake.read_sources(columns=["source_id"]).num_rows == report.sources
