"""Read FITS frames: plain, gzip (``.fits.gz``), tile-compressed (``.fits.fz``) and multi-extension.

The file is read once into memory (the same bytes are hashed for the frame's identity) and every
image is converted once to native-endian float32, with BZERO/BSCALE applied, because sep needs
native byte order and FITS stores big-endian.

Hostile input is rejected with a specific reason before astropy sees it: the header structure
(printable ASCII cards, an END card, valid BITPIX/NAXIS/NAXISn) is checked by a small walker over
the raw bytes, gzip is inflated as a stream with a size limit (decompression bombs), and every size
the file declares is compared with the profile's ``max_image_mb`` before anything that large is
allocated.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from skylake.errors import FrameRejected

__all__ = ["Image", "content_hash", "file_hash", "read_bytes", "scan_structure", "read_images", "representable_max"]


_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK = 2880
_CARD = 80
_BITPIX = (8, 16, 32, 64, -32, -64)
_CHUNK = 1 << 22  # bytes inflated (and hashed) per step


@dataclass
class Image:
    """One 2-D image of a file, ready for sep.

    Attributes
    ----------
    hdu : int
        The image's HDU index in the file.
    data : numpy.ndarray
        The pixels: float32, native-endian, C-contiguous, with BZERO/BSCALE applied.
    header : astropy.io.fits.Header
        A copy of the HDU's header.
    file_max : float
        The largest value the file can store for a pixel (:func:`representable_max`); inf for floating point.
    """

    hdu: int
    data: np.ndarray  # float32, native-endian, C-contiguous
    header: fits.Header
    file_max: float = math.inf


def representable_max(header: fits.Header) -> float:
    """The largest pixel value an image HDU can store, from its BITPIX, BZERO and BSCALE.

    An integer image clips what it stores at its type's range: a frame reduced and written as scaled 16-bit
    integers cannot hold a pixel above ``BZERO + BSCALE * 32767``, whatever the camera's saturation level.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The HDU's header as in the file (before the data are scaled).

    Returns
    -------
    float
        The largest physical value, ADU; inf for a floating-point image or a header without a usable BITPIX.

    Examples
    --------
    >>> representable_max(fits.Header({"BITPIX": 16, "BZERO": 32768, "BSCALE": 1}))
    65535.0
    >>> representable_max(fits.Header({"BITPIX": -32}))
    inf
    """
    bitpix, bscale, bzero = header.get("BITPIX"), header.get("BSCALE", 1), header.get("BZERO", 0)
    if bitpix not in (8, 16, 32, 64) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (bscale, bzero)
    ):
        return math.inf
    low, high = (0, 255) if bitpix == 8 else (-(2 ** (bitpix - 1)), 2 ** (bitpix - 1) - 1)
    return float(max(bzero + bscale * low, bzero + bscale * high))


def content_hash(raw: bytes) -> str:
    """Hash a file's bytes (sha256): the content part of a frame's identity.

    Parameters
    ----------
    raw : bytes
        The file's bytes.

    Returns
    -------
    digest : str
        The hex sha256 of ``raw``.
    """
    return hashlib.sha256(raw).hexdigest()


def file_hash(path: str) -> tuple[str, int]:
    """Hash a file (sha256, as :func:`content_hash`) and measure its size, read as a stream.

    Any size is read in bounded memory.

    Parameters
    ----------
    path : str
        A local path or fsspec URL.

    Returns
    -------
    digest : str
        The hex sha256 of the file's bytes.
    size : int
        The file's size, bytes.
    """
    import fsspec

    digest, size = hashlib.sha256(), 0
    with fsspec.open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def read_bytes(path: str, max_bytes: int | None = None) -> bytes:
    """Read a file's bytes through fsspec (local paths and object-store URLs alike).

    Parameters
    ----------
    path : str
        A local path or fsspec URL.
    max_bytes : int, optional
        The largest file read; no limit when None.

    Returns
    -------
    raw : bytes
        The file's bytes.

    Raises
    ------
    FrameRejected
        The file is larger than ``max_bytes`` (nothing further is read).
    """
    import fsspec

    with fsspec.open(path, "rb") as fh:
        if max_bytes is None:
            return fh.read()
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise FrameRejected(f"file is larger than {_mb(max_bytes)} ([profile] max_image_mb)")
    return raw


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.6g} MB"


# -- the FITS structure, from the raw bytes --------------------------------------------------------
def _card_value(text: str):
    """The value of a card's value field (after ``= ``): an int, a float, a string or the raw text."""
    value = text.split("/", 1)[0].strip() if not text.lstrip().startswith("'") else text.strip()
    if value.startswith("'"):
        end = value.find("'", 1)
        return value[1:end] if end > 0 else value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def _int_key(cards: dict, key: str, index: int, low: int = 0, high: int | None = None, default=None) -> int:
    if key not in cards:
        if default is not None:
            return default
        raise FrameRejected(f"corrupt FITS header: HDU {index} has no {key} keyword")
    value = cards[key]
    if not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        raise FrameRejected(f"corrupt FITS header: HDU {index} has {key} = {value!r}, not {allowed}")
    return value


@dataclass
class _HduLayout:
    index: int
    data_start: int
    data_bytes: int  # as the header declares them (without padding)
    image_bytes: int  # the image once decompressed: ZNAXISn for tile-compressed HDUs, else the data


def scan_structure(raw: bytes) -> list[_HduLayout]:
    """Walk the HDUs of FITS ``raw`` and check what astropy would misreport or choke on.

    Trailing bytes that are not an extension are ignored (as astropy does).

    Parameters
    ----------
    raw : bytes
        The (uncompressed) FITS file's bytes.

    Returns
    -------
    layout : list of _HduLayout
        Each HDU's data location and declared sizes (the data, and the image once decompressed).

    Raises
    ------
    FrameRejected
        Naming the HDU and card, for a header that holds control characters, has no END card, or whose
        BITPIX, NAXIS or NAXISn (or a tile-compressed image's ZBITPIX, ZNAXIS, ZNAXISn) are not what the FITS
        standard allows.
    """
    hdus: list[_HduLayout] = []
    pos = 0
    while pos < len(raw):
        index = len(hdus)
        cards: dict = {}
        end = None
        for start in range(pos, len(raw), _CARD):
            card = raw[start : start + _CARD]
            if any(b < 0x20 or b > 0x7E for b in card[:8]):
                raise FrameRejected(
                    f"corrupt FITS header: HDU {index} card {(start - pos) // _CARD + 1} (byte "
                    f"{start}) is not a header card: its keyword is not ASCII text"
                )
            key = card[:8].decode("ascii").rstrip()
            control = next((b for b in card if b < 0x20 or b == 0x7F), None)
            if control is not None:
                raise FrameRejected(
                    f"corrupt FITS header: HDU {index} card {key!r} holds the control byte "
                    f"0x{control:02x} (FITS headers are printable ASCII)"
                )
            if key == "END":
                end = start
                break
            if card[8:10] == b"= " and key not in cards:
                cards[key] = _card_value(card[10:].decode("latin-1"))
        if end is None:
            raise FrameRejected(
                f"corrupt FITS header: HDU {index} has no END card before the end of the file "
                "(truncated or overwritten header)"
            )
        data_start = pos + math.ceil((end - pos + _CARD) / _BLOCK) * _BLOCK
        bitpix = cards.get("BITPIX")
        if not isinstance(bitpix, int) or bitpix not in _BITPIX:
            raise FrameRejected(f"corrupt FITS header: HDU {index} has BITPIX = {bitpix!r}, not one of {_BITPIX}")
        naxis = _int_key(cards, "NAXIS", index, 0, 999)
        shape = [_int_key(cards, f"NAXIS{k}", index) for k in range(1, naxis + 1)]
        pcount = _int_key(cards, "PCOUNT", index, default=0)
        gcount = _int_key(cards, "GCOUNT", index, 1, default=1)
        data_bytes = abs(bitpix) // 8 * gcount * (pcount + math.prod(shape)) if naxis else 0
        image_bytes = data_bytes
        if cards.get("ZIMAGE") is True or cards.get("ZIMAGE") == "T":
            zbitpix = cards.get("ZBITPIX")
            znaxis = _int_key(cards, "ZNAXIS", index, 0, 999)
            zshape = [_int_key(cards, f"ZNAXIS{k}", index) for k in range(1, znaxis + 1)]
            if zbitpix not in _BITPIX:
                raise FrameRejected(f"corrupt FITS header: HDU {index} has ZBITPIX = {zbitpix!r}, not one of {_BITPIX}")
            image_bytes = abs(zbitpix) // 8 * math.prod(zshape)
        hdus.append(_HduLayout(index, data_start, data_bytes, image_bytes))
        pos = data_start + math.ceil(data_bytes / _BLOCK) * _BLOCK
        if raw[pos : pos + 8] != b"XTENSION":
            break
    return hdus


def _inflate(raw: bytes, max_bytes: int) -> bytes:
    """Decompress gzip ``raw`` as a stream, rejecting more than ``max_bytes`` of output (a bomb) and,
    from the first chunk, a primary header that declares more."""
    chunks, total = [], 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            while chunk := stream.read(_CHUNK):
                if not chunks and chunk.startswith(b"SIMPLE  ="):
                    _check_declared(chunk, max_bytes, partial=True)
                total += len(chunk)
                if total > max_bytes:
                    raise FrameRejected(
                        f"gzip stream inflates to more than {_mb(max_bytes)} ([profile] "
                        "max_image_mb): a decompression bomb or a larger frame than allowed"
                    )
                chunks.append(chunk)
    except EOFError as exc:
        raise FrameRejected(f"truncated gzip stream: {exc}") from exc
    except (OSError, zlib.error) as exc:  # BadGzipFile, CRC mismatch; zlib: a corrupt deflate block
        kind = "zlib.error" if isinstance(exc, zlib.error) else type(exc).__name__
        raise FrameRejected(f"corrupt gzip stream ({kind}: {exc})") from exc
    return b"".join(chunks)


def _check_declared(raw: bytes, max_bytes: int, partial: bool = False) -> list[_HduLayout]:
    """Reject a file whose HDUs declare more image bytes than ``max_bytes``. With ``partial`` (the start
    of a stream), only a primary header complete in ``raw`` is looked at."""
    try:
        layout = scan_structure(raw)
    except FrameRejected:
        if partial:
            return []  # judged again on the whole file
        raise
    for hdu in layout[:1] if partial else layout:
        if hdu.image_bytes > max_bytes:
            raise FrameRejected(
                f"HDU {hdu.index} declares an image of {_mb(hdu.image_bytes)}, more than "
                f"{_mb(max_bytes)} ([profile] max_image_mb)"
            )
    return layout


def _image_hdus(hdul: fits.HDUList) -> list[int]:
    out = []
    for i, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.header.get("NAXIS", 0) > 0:
            out.append(i)
    return out


def _pick_hdus(hdul: fits.HDUList, selector) -> list[int]:
    images = _image_hdus(hdul)
    if selector in ("auto", "all") and not images:
        kinds = ", ".join(f"{type(h).__name__} NAXIS={h.header.get('NAXIS', 0)}" for h in hdul)
        raise FrameRejected(f"no image data: no HDU has NAXIS > 0 ({kinds})")
    if selector == "auto":
        return images[:1]
    if selector == "all":
        return images
    if isinstance(selector, int):
        if selector >= len(hdul):
            raise FrameRejected(f"profile asks for HDU {selector} but the file has {len(hdul)} HDUs")
        return [selector]
    for i, hdu in enumerate(hdul):
        if hdu.name == str(selector).upper():
            return [i]
    raise FrameRejected(f"profile asks for HDU {selector!r} but the file has {[h.name for h in hdul]}")


def _check_complete(layout: list[_HduLayout], index: int, size: int):
    """Reject a file that ends before HDU ``index``'s data does (astropy only fails on access)."""
    if index >= len(layout):
        return
    need = layout[index].data_start + layout[index].data_bytes
    if need > size:
        raise FrameRejected(f"truncated file: HDU {index} needs {need} bytes, the file has {size}")


#: BITPIX -> the big-endian dtype of an uncompressed HDU's raw data.
_RAW_DTYPE = {8: ">u1", 16: ">i2", 32: ">i4", -32: ">f4", -64: ">f8"}


def _direct_float32(raw: bytes, hdu, layout: _HduLayout | None) -> np.ndarray | None:
    """The image as native float32 straight from the file's bytes, bit for bit astropy's values; None where
    astropy must read it (tile compression, BLANK, pseudo-signed bytes, scaled 32- and 64-bit integers).

    astropy copies the data out of the file, scales it in another array, and the result was converted again
    to native float32: three passes over the largest array of a frame (51 of 63 ms on a 4096x4096 frame).
    Here the conversion reads a view of the bytes. The operations are astropy's own, in the same order and
    precision: unscaled pixels and the FITS unsigned 16-bit convention (BZERO = 32768) are exact in
    float32, and scaled 8- and 16-bit integers are multiplied by BSCALE and offset by BZERO in float32, as
    astropy does (``ImageHDU._scale_data``).
    """
    header = hdu.header
    bitpix, bscale, bzero = header.get("BITPIX"), header.get("BSCALE", 1), header.get("BZERO", 0)
    if (
        layout is None
        or isinstance(hdu, fits.CompImageHDU)
        or bitpix not in _RAW_DTYPE
        or "BLANK" in header
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (bscale, bzero))
        or layout.data_bytes != abs(bitpix) // 8 * header["NAXIS1"] * header["NAXIS2"]
    ):
        return None
    unsigned16 = bitpix == 16 and bscale == 1 and bzero == 32768
    scaled = (bscale, bzero) != (1, 0)
    if scaled and not unsigned16 and (bitpix not in (8, 16) or (bitpix == 8 and bscale == 1 and bzero == -128)):
        return None
    pixels = np.frombuffer(
        raw, dtype=_RAW_DTYPE[bitpix], count=layout.data_bytes * 8 // abs(bitpix), offset=layout.data_start
    ).reshape(header["NAXIS2"], header["NAXIS1"])
    out = np.empty(pixels.shape, dtype=np.float32)
    if unsigned16:
        np.add(pixels, np.float32(32768), out=out, dtype=np.float32)
        return out
    out[...] = pixels
    if bscale != 1:
        np.multiply(out, bscale, out)
    if bzero != 0:
        out += bzero
    if scaled:  # the header as astropy leaves it once it has scaled the data (_update_header_scale_info)
        for key in ("BSCALE", "BZERO"):
            if key in header:
                del header[key]
                header.append()  # a blank card in its place: the header keeps its size
        header["BITPIX"] = -32
    return out


def _to_float32(hdu, index: int, max_bytes: int, raw: bytes = b"", layout: _HduLayout | None = None) -> np.ndarray:
    header = hdu.header
    naxis = header.get("NAXIS", 0)
    if naxis != 2:
        shape = tuple(header.get(f"NAXIS{k}", 0) for k in range(1, naxis + 1))
        raise FrameRejected(f"HDU {index} is not a 2-D image: NAXIS={naxis}, shape {shape}")
    expected = header.get("NAXIS1", 0) * header.get("NAXIS2", 0)
    if expected * 4 > max_bytes:
        raise FrameRejected(
            f"HDU {index}: a {header.get('NAXIS1')} x {header.get('NAXIS2')} image needs "
            f"{_mb(expected * 4)} as float32, more than {_mb(max_bytes)} ([profile] max_image_mb)"
        )
    direct = _direct_float32(raw, hdu, layout) if raw else None
    if direct is not None:
        return direct
    try:
        data = hdu.data
    except Exception as exc:  # noqa: BLE001 - astropy and its codecs raise many kinds (CfitsioException, ...)
        what = "decompress the tile-compressed image" if isinstance(hdu, fits.CompImageHDU) else "read the image data"
        raise FrameRejected(f"HDU {index}: cannot {what} ({type(exc).__name__}: {exc})") from exc
    if data is None or data.size == 0:
        raise FrameRejected(f"HDU {index}: empty image")
    if data.size != expected:
        raise FrameRejected(f"HDU {index}: truncated, {data.size} of {expected} pixels present")
    # One conversion: scaled ints or big-endian floats become native float32 here and only here.
    try:
        return np.ascontiguousarray(data, dtype=np.dtype("=f4"))
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a BSCALE/BZERO that is not a number
        raise FrameRejected(f"HDU {index}: cannot scale the image to float32 ({type(exc).__name__}: {exc})") from exc


def read_images(raw: bytes, hdu_selector="auto", max_bytes: int = 512 * 10**6) -> list[Image]:
    """Parse FITS bytes and return the selected 2-D images.

    Parameters
    ----------
    raw : bytes
        The file's bytes (gzip-compressed or not).
    hdu_selector : str or int
        ``"auto"`` (the first image HDU), ``"all"``, an HDU index or an EXTNAME.
    max_bytes : int
        Largest inflated file, declared image and float32 image accepted.

    Returns
    -------
    images : list of Image
        The selected 2-D images, as native-endian float32 with their headers.

    Raises
    ------
    FrameRejected
        Empty, non-FITS, corrupt, truncated or oversized input, and images that are not 2-D, each
        with a specific reason.
    """
    if len(raw) == 0:
        raise FrameRejected("empty file (0 bytes)")
    if raw[:2] == _GZIP_MAGIC:
        raw = _inflate(raw, max_bytes)
        if len(raw) == 0:
            raise FrameRejected("empty file (a gzip stream of 0 bytes)")
    if not raw.startswith(b"SIMPLE  ="):
        preview = raw[:20].decode("ascii", "replace").encode("unicode_escape").decode()
        raise FrameRejected(f"not a FITS file (starts with {preview!r}, not 'SIMPLE  =')")
    layout = _check_declared(raw, max_bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            hdul = fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False, output_verify="ignore")
        except Exception as exc:  # noqa: BLE001 - astropy raises OSError, ValueError, VerifyError, ...
            raise FrameRejected(f"corrupt FITS header: {type(exc).__name__}: {exc}") from exc
        with hdul:
            indices = _pick_hdus(hdul, hdu_selector)
            for i in indices:
                _check_complete(layout, i, len(raw))
            where = {hdu.index: hdu for hdu in layout}
            images = []
            for i in indices:
                file_max = representable_max(hdul[i].header)  # before scaling rewrites BITPIX
                data = _to_float32(hdul[i], i, max_bytes, raw, where.get(i))
                images.append(Image(hdu=i, data=data, header=hdul[i].header.copy(), file_max=file_max))
            return images
