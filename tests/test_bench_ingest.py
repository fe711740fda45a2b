"""benchmarks/ingest.py's baselines do the work they are named for, on a REAL SkyCamZ frame: bare sep finds the
detections skylake finds, the second baseline (sep + skylake's measurements) finds and measures the same objects
as an ingest, and the frame copies that make its 56-frame set are new frames with the same pixels."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import REPO

from skylake.frame.reading import content_hash
from skylake.profile import load_profile
from skylake.tasks.frame import process_file


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_ingest", REPO / "benchmarks" / "ingest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_baselines_detect_what_ingest_stores(bench, skycamz_files):
    profile = load_profile("skycamz")
    path = str(skycamz_files[0])
    [result] = process_file(path, profile)
    assert result.record["status"] == "ok"
    stored = result.record["n_sources"]
    assert stored > 1000  # a real star field
    # the same detection settings: the same objects (skylake drops none on this frame's WCS)
    assert bench.bare_sep_frame(path, profile) == stored
    assert bench.kernel_frame(path, profile) == stored


@pytest.fixture(scope="module")
def demo_frame(tmp_path_factory) -> str:
    """A SYNTHETIC demo frame, whose header gives a gain and a saturation level other than the profile's."""
    from skylake.synthetic import write_demo_night

    out = tmp_path_factory.mktemp("demo")
    write_demo_night(out, n_frames=1, shape=(1024, 1024), n_stars=900, seed=3)
    return str(sorted(out.glob("*.fits"))[0])


@pytest.mark.parametrize("which", ["skycamz", "demo"])
def test_kernel_measures_the_stored_columns(bench, which, skycamz_files, demo_frame, monkeypatch):
    """The second baseline runs skylake's extract and measure with the settings ingest uses (the header's gain
    and saturation level included): every column they make is the ingest's, to the last bit."""
    from skylake.frame import extract

    profile = load_profile(which)
    path = str(skycamz_files[0]) if which == "skycamz" else demo_frame
    if which == "demo":  # the case that tells a header's levels from the profile's
        header = fits.getheader(path)
        assert (header["GAIN"], header["SATURATE"]) != (profile.defaults.gain, profile.defaults.saturation)
    calls = []
    measure = extract.measure
    monkeypatch.setattr(extract, "measure", lambda *a, **k: calls.append(measure(*a, **k)) or calls[-1])
    bench.kernel_frame(path, profile)
    process_file(path, profile)
    kernel, ingest = calls  # ingest adds its own columns to its dict later (sky positions, magnitudes)
    assert set(kernel) <= set(ingest) and len(kernel) >= 20
    for name in kernel:
        np.testing.assert_array_equal(kernel[name], ingest[name], err_msg=name)
    # the demo's stars clip; SkyCamZ's V 4.9 star is clipped at what its file can hold
    assert (ingest["flags"] & extract.SATURATED).any()


def test_copies_are_new_frames_with_the_same_pixels(skycamz_files, tmp_path):
    from skylake.synthetic.frames import distinct_copies

    real = [str(p) for p in skycamz_files[:2]]
    copies = distinct_copies(real, tmp_path, 3)
    assert [Path(p).name for p in copies[3:]] == [f"{skycamz_files[1].stem}_copy{k}.fits" for k in range(3)]
    assert len({content_hash(Path(p).read_bytes()) for p in copies + real}) == 8  # every one a new frame
    with fits.open(real[1]) as original, fits.open(copies[4]) as copy:
        np.testing.assert_array_equal(original[0].data, copy[0].data)
        assert copy[0].header["SKYLCOPY"] == "copy-1"
