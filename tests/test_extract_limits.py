"""sep's process-wide limits: overflowing frames are retried with raised limits, not lost."""

from __future__ import annotations

import pytest
from conftest import SKYCAMZ, require_shared

from skylake.profile import load_profile
from skylake.tasks.frame import process_file

pytestmark = pytest.mark.realdata


def _profile(tmp_path, detection: str):
    path = tmp_path / "tight.toml"
    path.write_text(f'extends = "skycamz"\n[profile]\nname = "tight"\n[detection]\n{detection}\n')
    return load_profile(path)


@pytest.fixture(scope="module")
def frame():
    return str(require_shared(SKYCAMZ) / "z_e_20130610_222_1_1_1.fits")


@pytest.fixture(scope="module")
def reference(frame):
    (result,) = process_file(frame, load_profile("skycamz"))
    # the note of the file's level (skylake.frame.header.saturation_level), nothing of sep's limits
    assert result.record["status"] == "ok" and result.record["extract_note"].startswith("saturation 50000 ADU")
    assert ";" not in result.record["extract_note"]
    return result


def test_pixel_buffer_full_is_retried_with_a_larger_stack(tmp_path, frame, reference):
    (result,) = process_file(frame, _profile(tmp_path, "pixstack = 300"))
    assert "pixel stack raised" in result.record["extract_note"]
    assert result.n_sources == reference.n_sources  # nothing lost


def test_deblend_overflow_is_retried_with_a_larger_sub_object_limit(tmp_path, frame, reference):
    (result,) = process_file(frame, _profile(tmp_path, "sub_object_limit = 1"))
    assert "sub-object limit raised" in result.record["extract_note"]
    assert result.n_sources == reference.n_sources


def test_what_cannot_be_saved_is_recorded(tmp_path, frame, reference):
    (result,) = process_file(frame, _profile(tmp_path, "sub_object_limit = 1\nmax_sub_object_limit = 1"))
    assert "deblending switched off" in result.record["extract_note"]
    assert result.record["status"] == "ok" and 0 < result.n_sources <= reference.n_sources
    (result,) = process_file(frame, _profile(tmp_path, "pixstack = 30\nmax_pixstack = 30"))
    assert result.record["status"] == "rejected" and "pixel buffer full" in result.record["reason"]


def test_sep_limits_are_left_as_found(tmp_path, frame):
    import sep

    before = sep.get_extract_pixstack(), sep.get_sub_object_limit()
    process_file(frame, _profile(tmp_path, "pixstack = 300\nsub_object_limit = 1"))
    assert (sep.get_extract_pixstack(), sep.get_sub_object_limit()) == before
