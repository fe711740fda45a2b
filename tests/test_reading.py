"""Frames read straight from their bytes give astropy's pixels bit for bit (skylake.frame.reading).

The direct conversion (one pass over a view of the file's bytes) is taken for unscaled images, the FITS
unsigned 16-bit convention and scaled 8- and 16-bit integers; everything else is read by astropy. Each case
here is compared with ``astropy.io.fits`` + ``numpy.ascontiguousarray(..., float32)`` on the same bytes.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from conftest import SHARED_DATA, require_shared

from skylake.frame import reading

DTYPES = {8: np.uint8, 16: np.int16, 32: np.int32, -32: np.float32, -64: np.float64}
# (BITPIX, scaling cards) -> whether the direct conversion takes it
CASES = [
    (8, {}, True),
    (8, {"BZERO": 100, "BSCALE": 2.5}, True),
    (8, {"BZERO": -128}, False),  # astropy's pseudo-signed bytes
    (16, {}, True),
    (16, {"BZERO": 32768}, True),  # FITS unsigned 16-bit
    (16, {"BZERO": 17878.9011505026, "BSCALE": 0.545197148063284}, True),  # SkyCamZ's scaling
    (16, {"BSCALE": 3}, True),
    (16, {"BLANK": -5}, False),
    (16, {"BZERO": 32768, "BLANK": 7}, False),
    (32, {}, True),
    (32, {"BZERO": 2**31}, False),  # astropy scales in float64
    (-32, {}, True),
    (-32, {"BZERO": 100, "BSCALE": 2.5}, False),
    (-64, {}, True),
]


def _fits_bytes(bitpix: int, cards: dict) -> bytes:
    """A one-HDU FITS file of random pixels whose raw values are kept as written, with ``cards`` added to the
    header afterwards (so astropy does not rescale the data on writing)."""
    rng = np.random.default_rng(abs(bitpix))
    pixels = rng.normal(0, 1000, (37, 53))
    dtype = DTYPES[bitpix]
    if bitpix > 0:
        pixels = np.clip(pixels, np.iinfo(dtype).min, np.iinfo(dtype).max)
    pixels = pixels.astype(dtype)
    if bitpix < 0:
        pixels[3, 4] = np.nan
    buf = io.BytesIO()
    fits.PrimaryHDU(pixels).writeto(buf)
    raw = buf.getvalue()
    header_end = (raw.index(b"END" + b" " * 77) // 2880 + 1) * 2880
    header = fits.Header.fromstring(raw[:header_end])
    for key, value in cards.items():
        header[key] = value
    return header.tostring().encode() + raw[header_end:]


def _astropy_image(raw: bytes) -> tuple[np.ndarray, fits.Header]:
    """The pixels and header as astropy gives them (it drops BSCALE/BZERO from the header of scaled data)."""
    with fits.open(io.BytesIO(raw), memmap=False) as hdul:
        hdu = next(h for h in hdul if h.header.get("NAXIS", 0) == 2)
        return np.ascontiguousarray(hdu.data, dtype=np.dtype("=f4")), hdu.header.copy()


def _direct(raw: bytes) -> bool:
    with fits.open(io.BytesIO(raw)) as hdul:
        return reading._direct_float32(raw, hdul[0], reading.scan_structure(raw)[0]) is not None


@pytest.mark.parametrize(("bitpix", "cards", "direct"), CASES)
def test_pixels_are_astropys(bitpix, cards, direct):
    raw = _fits_bytes(bitpix, cards)
    image = reading.read_images(raw, "auto", 10**9)[0]
    assert image.data.dtype == np.dtype("=f4") and image.data.flags.c_contiguous and image.data.flags.writeable
    pixels, header = _astropy_image(raw)
    np.testing.assert_array_equal(image.data, pixels)  # NaN where NaN, every other bit equal
    assert _direct(raw) is direct
    assert list(image.header.items()) == list(header.items())


@pytest.mark.realdata
def test_real_frames_read_directly_as_astropy_reads_them():
    files = sorted(require_shared(SHARED_DATA).rglob("*.fits"))
    compared = 0
    for path in files:
        raw = path.read_bytes()
        try:
            image = reading.read_images(raw, "auto", 10**10)[0]
        except Exception:  # noqa: BLE001 - catalogue files (tables, no image) are not frames
            continue
        pixels, header = _astropy_image(raw)
        np.testing.assert_array_equal(image.data, pixels, err_msg=str(path))
        assert list(image.header.items()) == list(header.items()), path
        assert _direct(raw), path
        compared += 1
    assert compared >= 14  # at least the SkyCamZ frames
