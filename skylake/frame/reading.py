"""Read FITS frames: plain, gzip (``.fits.gz``), tile-compressed (``.fits.fz``) and multi-extension.

The file is read once into memory (the same bytes are hashed for the frame's identity) and every
image is converted once to native-endian float32, with BZERO/BSCALE applied, because sep needs
native byte order and FITS stores big-endian.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from skylake.errors import FrameRejected

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Image:
    """One 2-D image of a file, ready for sep."""

    hdu: int
    data: np.ndarray  # float32, native-endian, C-contiguous
    header: fits.Header


def content_hash(raw: bytes) -> str:
    """sha256 of a file's bytes: the content part of a frame's identity."""
    return hashlib.sha256(raw).hexdigest()


def read_bytes(path: str) -> bytes:
    """Read a file's bytes through fsspec (local paths and object-store URLs alike)."""
    import fsspec

    with fsspec.open(path, "rb") as fh:
        return fh.read()


def _image_hdus(hdul: fits.HDUList) -> list[int]:
    out = []
    for i, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.header.get("NAXIS", 0) > 0:
            out.append(i)
    return out


def _pick_hdus(hdul: fits.HDUList, selector) -> list[int]:
    images = _image_hdus(hdul)
    if selector == "auto":
        if not images:
            raise FrameRejected("no image data: no HDU has NAXIS > 0")
        return images[:1]
    if selector == "all":
        if not images:
            raise FrameRejected("no image data: no HDU has NAXIS > 0")
        return images
    if isinstance(selector, int):
        if selector >= len(hdul):
            raise FrameRejected(f"profile asks for HDU {selector} but the file has {len(hdul)} HDUs")
        return [selector]
    for i, hdu in enumerate(hdul):
        if hdu.name == str(selector).upper():
            return [i]
    raise FrameRejected(f"profile asks for HDU {selector!r} but the file has {[h.name for h in hdul]}")


def _check_complete(hdul: fits.HDUList, index: int, size: int):
    """Reject a file that ends before HDU ``index``'s data does (astropy only fails on access)."""
    hdu = hdul[index]
    if isinstance(hdu, fits.CompImageHDU):
        return
    header = hdu.header
    nbytes = abs(header.get("BITPIX", 8)) // 8
    for k in range(1, header.get("NAXIS", 0) + 1):
        nbytes *= header.get(f"NAXIS{k}", 0)
    need = hdul.fileinfo(index)["datLoc"] + nbytes
    if need > size:
        raise FrameRejected(f"truncated file: HDU {index} needs {need} bytes, the file has {size}")


def _to_float32(hdu, index: int) -> np.ndarray:
    header = hdu.header
    naxis = header.get("NAXIS", 0)
    if naxis != 2:
        shape = tuple(header.get(f"NAXIS{k}", 0) for k in range(1, naxis + 1))
        raise FrameRejected(f"HDU {index} is not a 2-D image: NAXIS={naxis}, shape {shape}")
    try:
        data = hdu.data
    except (OSError, ValueError, TypeError, EOFError) as exc:
        raise FrameRejected(f"HDU {index}: cannot read the image data ({type(exc).__name__}: {exc})") from exc
    if data is None or data.size == 0:
        raise FrameRejected(f"HDU {index}: empty image")
    expected = header.get("NAXIS1", 0) * header.get("NAXIS2", 0)
    if data.size != expected:
        raise FrameRejected(f"HDU {index}: truncated, {data.size} of {expected} pixels present")
    # One conversion: scaled ints or big-endian floats become native float32 here and only here.
    return np.ascontiguousarray(data, dtype=np.dtype("=f4"))


def read_images(raw: bytes, hdu_selector="auto") -> list[Image]:
    """Parse FITS bytes and return the selected 2-D images.

    Raises :class:`FrameRejected` with a reason for empty, non-FITS, corrupt or truncated input and
    for images that are not 2-D.
    """
    if len(raw) == 0:
        raise FrameRejected("empty file (0 bytes)")
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise FrameRejected(f"corrupt gzip stream: {exc}") from exc
    if not raw.startswith(b"SIMPLE  ="):
        preview = raw[:20].decode("ascii", "replace").encode("unicode_escape").decode()
        raise FrameRejected(f"not a FITS file (starts with {preview!r}, not 'SIMPLE  =')")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            hdul = fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False, output_verify="ignore")
        except Exception as exc:  # astropy raises OSError, ValueError, VerifyError, ... on corrupt headers
            raise FrameRejected(f"corrupt FITS header: {type(exc).__name__}: {exc}") from exc
        with hdul:
            indices = _pick_hdus(hdul, hdu_selector)
            for i in indices:
                _check_complete(hdul, i, len(raw))
            return [Image(hdu=i, data=_to_float32(hdul[i], i), header=hdul[i].header.copy()) for i in indices]
