"""The photometric model's shared rules (skylake.calib.model): a pair's zeropoint and the magnitude
from a zeropoint, the status and reject vocabularies against the schemas, and which calibration of a
frame is its latest under each policy (objects and maps, the summary database), on a small hand-made
zeropoints table. No lake."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from skylake.calib.model import (
    ASTRO_EXCLUDE,
    REJECTS,
    STAR_REJECTS,
    ExtStatus,
    LatestPolicy,
    ZpStatus,
    calibrated_mag,
    colour_offset,
    latest_calibration,
    pair_zeropoint,
)
from skylake.db.mirror import _latest_zeropoints
from skylake.schema import table_schema

T0 = pd.Timestamp("2024-03-01T00:00", tz="UTC")


def _zeropoints() -> pd.DataFrame:
    """Rows of four frames, two catalogues, several calibrations each, not in frame order. The index
    label of each row is what the policies' expectations name."""
    hour = pd.Timedelta(hours=1)
    rows = [  # frame_id, refcat, calib_key, zp_status, zp, calibrated_at
        (4, "gaia", "g1", "ok", 22.0, T0),
        (1, "gaia", "g1", "ok", 20.0, T0 + 1 * hour),
        (1, "gaia", "g2", "cloudy", np.nan, T0 + 3 * hour),  # a later recalibration that failed
        (1, "tycho2", "t1", "ok", 20.5, T0 + 2 * hour),
        (2, "gaia", "g1", "ok", 21.0, T0 + 5 * hour),
        (2, "gaia", "g2", "ok", 21.1, T0 + 5 * hour),  # same time as the row above: the later row wins
        (2, "tycho2", "t1", "ok", 21.5, T0 + 4 * hour),
        (3, "tycho2", "t1", "too_few_stars", np.nan, T0 + 6 * hour),
        (4, "gaia", "g2", "frame_rejected", np.nan, pd.NaT),  # no time: sorts last, so the latest
    ]
    df = pd.DataFrame(rows, columns=["frame_id", "refcat", "calib_key", "zp_status", "zp", "calibrated_at"])
    return df.assign(airmass=1.0 + df.index / 10.0, color_term=0.05)


@pytest.mark.parametrize(
    "policy, rows",
    [
        # objects and maps: the build's catalogue, whatever the status
        (LatestPolicy(refcat="gaia"), [2, 5, 8]),
        (LatestPolicy(refcat="tycho2"), [3, 6, 7]),
        # night summaries: ok rows of any catalogue
        (LatestPolicy(ok_only=True), [3, 5, 0]),
        # the checkplot of a frame without --refcat: any row of any catalogue
        (LatestPolicy(), [2, 5, 7, 8]),
        (LatestPolicy(refcat="gaia", ok_only=True), [1, 5, 0]),
    ],
)
def test_latest_calibration_policies(policy, rows):
    zps = _zeropoints()
    got = latest_calibration(zps, policy)
    assert got.index.tolist() == rows
    assert got["frame_id"].is_monotonic_increasing  # one row per frame, in frame order
    pd.testing.assert_frame_equal(got, zps.loc[rows])


def test_latest_calibration_orders_by_the_policy_columns():
    zps = _zeropoints().assign(batch=[9, 1, 0, 5, 2, 1, 0, 0, 3])
    got = latest_calibration(zps, LatestPolicy(refcat="gaia", order=("batch",)))
    assert got.index.tolist() == [1, 4, 0]


def test_latest_calibration_of_nothing():
    zps = _zeropoints()
    assert latest_calibration(zps, LatestPolicy(refcat="sdss")).empty
    assert latest_calibration(zps.iloc[:0], LatestPolicy(ok_only=True)).empty


def test_night_summaries_take_the_latest_ok_row_of_any_catalogue():
    """db.mirror's (zp, airmass, color_term) per frame, from the lake's Arrow rows."""
    zps = _zeropoints()
    table = pa.Table.from_pandas(zps, preserve_index=False)
    airmass = zps["airmass"]
    assert _latest_zeropoints(table) == {
        1: (20.5, airmass[3], 0.05),
        2: (21.1, airmass[5], 0.05),
        4: (22.0, airmass[0], 0.05),
    }
    assert _latest_zeropoints(table.slice(0, 0)) == {}


def test_pair_zeropoint():
    # ref - inst - color_term * colour; exact binary fractions so every expectation is exact
    assert pair_zeropoint(15.0, -5.0).tolist() == 20.0
    assert pair_zeropoint(15.0, -5.0, 0.5, 0.25).tolist() == 19.875
    got = pair_zeropoint(
        [15.0, 15.0, 15.0, 15.0, np.nan],
        [-5.0] * 5,
        [np.nan, np.nan, np.nan, -1.0, 0.5],
        [0.0, np.nan, 0.25, 0.25, 0.25],
    )
    # no colour term: the colour is not needed; a colour term and no colour: no zeropoint
    np.testing.assert_array_equal(got, [20.0, 20.0, np.nan, 20.25, np.nan])


def test_calibrated_mag():
    assert calibrated_mag(-5.0, 20.0).tolist() == 15.0
    assert calibrated_mag(-5.0, 20.0, 0.5, 0.25).tolist() == 15.125
    got = calibrated_mag(
        [-5.0] * 5, [20.0, 20.0, 20.0, np.nan, 20.0], [np.nan, 0.5, 0.5, 0.5, -1.0], [0.25, np.nan, 0.0, 0.25, 0.25]
    )
    # unknown colour: colour 0 (as zp is defined); unknown colour term: none; no zp: no magnitude
    np.testing.assert_array_equal(got, [15.0, 15.0, 15.0, np.nan, 14.75])


def test_magnitude_of_a_star_at_its_own_zeropoint_is_its_reference_magnitude():
    rng = np.random.default_rng(3)
    ref, inst, colour = rng.uniform(8, 14, 50), rng.uniform(-12, -6, 50), rng.uniform(-0.3, 1.8, 50)
    zp = pair_zeropoint(ref, inst, colour, 0.12)
    np.testing.assert_allclose(calibrated_mag(inst, zp, colour, 0.12), ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(colour_offset(colour, 0.0), 0.0)


def _vocabulary(table: str, column: str) -> set[str]:
    """The values a schemas/TABLE.yaml column's description lists (``a | b (note) | c``)."""
    text = table_schema(table).field(column).metadata[b"description"].decode()
    return {re.findall(r"[a-z_]+", part.split(":")[-1])[0] for part in text.split("|")}


def test_vocabularies_are_the_schemas():
    assert {s.value for s in ZpStatus} == _vocabulary("zeropoints", "zp_status")
    assert {s.value for s in ExtStatus} == _vocabulary("extinction", "ext_status")
    assert set(REJECTS) == _vocabulary("matches", "reject")
    assert set(ASTRO_EXCLUDE) <= set(REJECTS) and set(STAR_REJECTS) <= {"", *REJECTS}


def test_statuses_are_strings():
    assert ZpStatus.OK == "ok" and f"{ZpStatus.CLOUDY}" == "cloudy" and str(ExtStatus.IMPLAUSIBLE_K) == "implausible_k"
    assert (pd.Series(["ok", "cloudy"]) == ZpStatus.OK).tolist() == [True, False]
    written = pa.Table.from_pandas(pd.DataFrame({"zp_status": [ZpStatus.OK, ZpStatus.FRAME_REJECTED]}))
    assert written.column("zp_status").to_pylist() == ["ok", "frame_rejected"]
    assert type(written.column("zp_status").to_pylist()[0]) is str


@pytest.mark.parametrize("fit", ["color_fit", "clipped_median"])
def test_zeropoint_errors_have_unit_pulls(fit):
    """zp_err is the zeropoint's error: over 2000 SYNTHETIC frames of 60 stars (0.02 mag noise, 3 of them
    outliers, colours 0-1.5, a 0.05 colour term), (zp_fit - zp_true) / zp_err has unit width (to 5 %; an
    estimated error makes it a t-like 1.02). A formula that lost a factor (sqrt(n), the median's 1.2533, the
    intercept's colour lever arm), or took the scatter of the clipped stars only (1.08), fails here."""
    from skylake.calib.zeropoint import clipped_median, color_fit

    rng = np.random.default_rng(8)
    pulls = []
    for _ in range(2000):
        colour = rng.uniform(0, 1.5, 60)
        dm = 21.0 + (0.05 * colour if fit == "color_fit" else 0) + rng.normal(0, 0.02, 60)
        dm[:3] += rng.normal(0, 0.5, 3)
        res = color_fit(dm, colour, 3.0, 0.5) if fit == "color_fit" else clipped_median(dm, 3.0)
        pulls.append((res.zp - 21.0) / res.zp_err)
    width = np.std(pulls)
    assert 0.97 < width < 1.05, width
