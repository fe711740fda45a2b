"""SYNTHETIC bad input: files that look like frames and must each be rejected with a reason."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from skylake.synthetic.frames import _clean_header

__all__ = ["BAD_FILE_NAMES", "write_bad_files"]


# Bad inputs
# ---------------------------------------------------------------------------

#: File names written by :func:`write_bad_files`, in a stable order.
BAD_FILE_NAMES = (
    "bad_truncated.fits",
    "bad_not_fits.fits",
    "bad_empty.fits",
    "bad_no_wcs.fits",
    "bad_all_nan.fits",
    "bad_cube.fits",
    "bad_header_only.fits",
    "bad_corrupt_header.fits",
)

_WCS_KEY = re.compile(
    r"^(WCSAXES[A-Z]?|CTYPE\d[A-Z]?|CRVAL\d[A-Z]?|CRPIX\d[A-Z]?|CDELT\d[A-Z]?|CUNIT\d[A-Z]?|"
    r"CROTA\d|CD\d_\d[A-Z]?|PC\d_\d[A-Z]?|PV\d_\d+[A-Z]?|PS\d_\d+[A-Z]?|RADESYS[A-Z]?|RADECSYS|"
    r"EQUINOX[A-Z]?|EPOCH|LONPOLE[A-Z]?|LATPOLE[A-Z]?|WCSNAME[A-Z]?|"
    r"A_ORDER|B_ORDER|AP_ORDER|BP_ORDER|A_\d+_\d+|B_\d+_\d+|AP_\d+_\d+|BP_\d+_\d+|A_DMAX|B_DMAX)$"
)


def _hdu_bytes(hdu: fits.PrimaryHDU) -> bytes:
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def write_bad_files(out_dir, good_frame_path) -> dict[str, str]:
    """Write typical broken inputs next to each other and describe them.

    All files are derived from the valid frame ``good_frame_path`` (any
    format :func:`write_frame` writes; its first image HDU is used), so
    apart from the one defect they look like real frames.  Files written
    (see :data:`BAD_FILE_NAMES`):

    ``bad_truncated.fits``
        the good frame as plain FITS, cut off in the middle of the data
        unit (not on a 2880-byte boundary): the header parses, reading the
        data fails.
    ``bad_not_fits.fits``
        a text file with a .fits name.
    ``bad_empty.fits``
        0 bytes.
    ``bad_no_wcs.fits``
        valid image with every WCS keyword (CTYPE, CRVAL, CRPIX, CD, ...,
        RADESYS, EQUINOX) removed.
    ``bad_all_nan.fits``
        float32 image (BITPIX=-32) of the frame's shape, every pixel NaN,
        with the valid header and WCS.
    ``bad_cube.fits``
        3-D data (3, ny, nx) (NAXIS=3) carrying the frame's 2-D WCS
        keywords (WCSAXES=2).
    ``bad_header_only.fits``
        primary header with all of the frame's keywords but NAXIS=0, no data.
    ``bad_corrupt_header.fits``
        the good frame with the header from byte 400 (after SIMPLE, BITPIX,
        NAXIS, NAXIS1, NAXIS2) to the end of the header unit overwritten by
        non-ASCII garbage (END card destroyed): astropy cannot parse it.

    Parameters
    ----------
    out_dir : str or Path
        Where the files go (created).
    good_frame_path : str or Path
        The valid frame they are derived from.

    Returns
    -------
    dict of str to str
        ``{file name: short description}``; the files are in ``out_dir``.

    Raises
    ------
    FileNotFoundError
        When ``good_frame_path`` is not a file.
    ValueError
        When ``good_frame_path`` has no 2-D image HDU.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    good = Path(good_frame_path)
    if not good.is_file():
        raise FileNotFoundError(f"good_frame_path does not exist or is not a file: {str(good_frame_path)!r}")
    with fits.open(good) as hdul:
        img_hdu = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim == 2), None)
        if img_hdu is None:
            raise ValueError(f"good_frame_path {str(good_frame_path)!r} has no 2-D image HDU")
        data = np.array(img_hdu.data)
        header = _clean_header(img_hdu.header)
    ny, nx = data.shape
    rng = np.random.default_rng(12345)
    desc: dict[str, str] = {}

    def _put(name: str, payload: bytes, what: str) -> None:
        (out / name).write_bytes(payload)
        desc[name] = what

    # A plain-FITS rendition of the good frame (16-bit when the source was).
    if data.dtype.kind in "ui" and data.min() >= 0 and data.max() <= 65535:
        plain = _hdu_bytes(fits.PrimaryHDU(data.astype(np.uint16), header))
    else:
        plain = _hdu_bytes(fits.PrimaryHDU(data.astype(np.float32), header))
    # Locate the end of the header: the first 2880-byte block boundary after 'END'.
    end_card = next(i for i in range(0, len(plain), 80) if plain[i : i + 80].rstrip() == b"END")
    hdr_len = ((end_card // 2880) + 1) * 2880
    data_len = len(plain) - hdr_len
    cut = hdr_len + data_len // 2 + 123  # mid-data, deliberately unaligned
    _put(
        "bad_truncated.fits",
        plain[:cut],
        f"truncated: {cut} of {len(plain)} bytes, cut in the middle of the data unit",
    )

    _put(
        "bad_not_fits.fits",
        b"This is not a FITS file.\nIt is plain text that happens to have a .fits name.\n" * 20,
        "not FITS: plain text with a .fits name",
    )
    _put("bad_empty.fits", b"", "empty: 0-byte file")

    no_wcs = header.copy()
    for key in [k for k in no_wcs if _WCS_KEY.match(k)]:
        del no_wcs[key]
    _put(
        "bad_no_wcs.fits",
        _hdu_bytes(fits.PrimaryHDU(data, no_wcs)),
        "no WCS: image without CTYPE/CRVAL/CRPIX/CD keywords",
    )

    nan_img = np.full((ny, nx), np.nan, dtype=np.float32)
    _put(
        "bad_all_nan.fits",
        _hdu_bytes(fits.PrimaryHDU(nan_img, header)),
        "all NaN: float32 image with valid WCS, every pixel NaN",
    )

    cube = np.stack([data, data, data])
    _put(
        "bad_cube.fits",
        _hdu_bytes(fits.PrimaryHDU(cube, header)),
        f"3-D cube: NAXIS=3 data of shape {cube.shape} with a 2-D WCS",
    )

    _put("bad_header_only.fits", _hdu_bytes(fits.PrimaryHDU(None, header)), "no data: primary header only, NAXIS=0")

    corrupt = bytearray(plain)
    # Garbage from card 6 (SIMPLE..NAXIS2 stay readable) to the end of the
    # header, so the END card is gone whatever the header's length.
    corrupt[400:hdr_len] = rng.integers(128, 256, hdr_len - 400, dtype=np.uint8).tobytes()
    _put(
        "bad_corrupt_header.fits",
        bytes(corrupt),
        "corrupt header: non-ASCII garbage in the header block, END card missing",
    )
    return desc
