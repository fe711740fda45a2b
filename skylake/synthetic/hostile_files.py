"""Hostile input files: every way a frame file can be broken, each with the rejection it must get.

:func:`write_hostile_files` derives each file from one valid frame (a real one in the tests), so
that apart from its one defect it looks like a real frame. Every file's bytes differ from every
other's (and from the good frame's), so none is a duplicate of another. Used by
``tests/test_hostile_files.py``; handy to check a new reader or profile by hand::

    from skylake.synthetic.hostile_files import write_hostile_files
    expected = write_hostile_files("/tmp/hostile", "frame.fits")   # {file name: reason fragment}
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ["write_hostile_files", "NON_UTF8_NAME"]

#: A file name that is not valid UTF-8 (bytes 0xff 0xfe), as os.listdir returns it (surrogateescape).
NON_UTF8_NAME = os.fsdecode(b"bad_name_\xff\xfe.fits")

_CARD = 80
_BLOCK = 2880


def _bytes(data, header) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(data, header).writeto(buf, output_verify="silentfix")
    return buf.getvalue()


def _patch(raw: bytes, key: str, card: str) -> bytes:
    """Replace the first header card of ``key`` (in any header) by ``card`` verbatim (no checks)."""
    for start in range(0, len(raw), _CARD):
        if raw[start : start + 8].decode("latin-1").rstrip() == key:
            text = card.ljust(_CARD).encode("latin-1")
            assert len(text) == _CARD, card
            return raw[:start] + text + raw[start + _CARD :]
    raise KeyError(key)


def _header_length(raw: bytes) -> int:
    end = next(i for i in range(0, len(raw), _CARD) if raw[i : i + 8] == b"END     ")
    return (end // _BLOCK + 1) * _BLOCK


def _gzip_members(first: bytes, filler: int, total: int) -> bytes:
    """gzip of ``first`` followed by ``total`` zero bytes, written as repeated members of ``filler``
    zeros: a ~1000:1 bomb made in milliseconds."""
    zeros = gzip.compress(b"\0" * filler, compresslevel=9)
    return gzip.compress(first) + zeros * (total // filler)


def write_hostile_files(out_dir, good_frame_path) -> dict[str, str]:
    """Write one file per kind of hostile input into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Directory to write into (created).
    good_frame_path : path
        A valid 2-D frame with a celestial WCS, DATE-OBS/MJD, EXPTIME (a SkyCamZ frame in the tests:
        its header also has UTSTART, ALTITUDE, ...). Its image becomes float32.

    Returns
    -------
    dict
        ``{file name: fragment of the reason its rejection must give}`` (with the ``skycamz``
        profile: saturation 50000 ADU, pixel scale 3.2-4.0"/px, ``max_image_mb`` 512). The name
        :data:`NON_UTF8_NAME` is stored in the lake with its bytes backslash-escaped.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with fits.open(good_frame_path) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float32)
        header = hdul[0].header.copy()
    for key in ("BZERO", "BSCALE", "BLANK"):
        header.remove(key, ignore_missing=True)
    ny, nx = data.shape
    made: dict[str, str] = {}

    def put(name: str, payload: bytes, reason: str) -> None:
        """Write ``payload`` to ``out_dir/name`` and record the reason its rejection must give.

        Parameters
        ----------
        name : str
            The file's name.
        payload : bytes
            Its content.
        reason : str
            A fragment of the reason its rejection must give.
        """
        (out / name).write_bytes(payload)
        made[name] = reason

    def variant(name: str, reason: str, drop=(), image="frame", **cards) -> None:
        """Write the good frame with keywords dropped or set, and another image.

        Parameters
        ----------
        name : str
            The file's name (also written in a HISTORY card, so that its bytes are unique).
        reason : str
            A fragment of the reason its rejection must give.
        drop : sequence of str
            Keywords removed.
        image : ndarray or None or str
            The image (``None`` for none); a string (the default) keeps the good frame's.
        **cards : dict
            Keywords set (DATE_OBS stands for DATE-OBS).
        """
        h = header.copy()
        for key in drop:
            h.remove(key, ignore_missing=True)
        for key, value in cards.items():
            h["DATE-OBS" if key == "DATE_OBS" else key] = value
        h["HISTORY"] = f"hostile test file: {name}"  # unique bytes per file
        put(name, _bytes(data if isinstance(image, str) else image, h), reason)

    def tagged(name: str) -> bytes:
        """The good frame as FITS bytes, with a HISTORY card naming ``name`` (unique bytes per file).

        Parameters
        ----------
        name : str
            The name written in the HISTORY card.

        Returns
        -------
        bytes
            The FITS file's content.
        """
        h = header.copy()
        h["HISTORY"] = f"hostile test file: {name}"
        return _bytes(data, h)

    # -- the container ----------------------------------------------------------------------------
    put("empty.fits", b"", "empty file (0 bytes)")
    put("not_fits.fits", b"Just text with a .fits name.\n" * 40, "not a FITS file")
    plain = tagged("truncated_data.fits")
    hlen = _header_length(plain)
    put("truncated_data.fits", plain[: hlen + (len(plain) - hlen) // 2 + 77], "truncated file: HDU 0 needs")
    put("truncated_header.fits", tagged("truncated_header.fits")[:1000], "no END card before the end of the file")
    garbage = bytearray(tagged("corrupt_header.fits"))
    garbage[400:hlen] = np.random.default_rng(1).integers(128, 256, hlen - 400, dtype=np.uint8).tobytes()
    put("corrupt_header.fits", bytes(garbage), "is not a header card")

    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header, compression_type="RICE_1")]).writeto(buf)
    fz = bytearray(buf.getvalue())
    heap = len(fz) // 2
    fz[heap : heap + 4000] = np.random.default_rng(2).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    put("corrupt_tiles.fits.fz", bytes(fz), "cannot decompress the tile-compressed image")
    fz_bomb = _patch(
        _patch(buf.getvalue(), "ZNAXIS1", "ZNAXIS1 =               100000"), "ZNAXIS2", "ZNAXIS2 =               100000"
    )
    put("bomb_tiles.fits.fz", fz_bomb, "HDU 1 declares an image of 40000 MB")

    gz = bytearray(gzip.compress(tagged("corrupt_deflate.fits.gz")))
    gz[10] = 0xFF  # the first deflate block header: invalid block type
    put("corrupt_deflate.fits.gz", bytes(gz), "corrupt gzip stream (zlib.error")
    gz = gzip.compress(tagged("truncated.fits.gz"))
    put("truncated.fits.gz", gz[: len(gz) // 2], "truncated gzip stream")
    # 1 GiB of image behind a ~1 MB file: the header declares it ...
    big = fits.Header({"SIMPLE": True, "BITPIX": -32, "NAXIS": 2, "NAXIS1": 16384, "NAXIS2": 16384})
    big_header = big.tostring().encode("ascii")
    put("bomb_declared.fits.gz", _gzip_members(big_header, 1 << 24, 1 << 30), "declares an image of 1073.74 MB")
    # ... or a small header with a gigabyte of zeros after it: only the inflated size gives it away
    put(
        "bomb_trailing.fits.gz",
        _gzip_members(tagged("bomb_trailing.fits.gz"), 1 << 24, 1 << 30),
        "gzip stream inflates to more than 512 MB",
    )
    put(
        "huge_declared.fits",
        _patch(
            _patch(tagged("huge_declared.fits"), "NAXIS1", "NAXIS1  =               100000"),
            "NAXIS2",
            "NAXIS2  =               100000",
        ),
        "HDU 0 declares an image of 40000 MB",
    )

    # -- the header structure ---------------------------------------------------------------------
    put(
        "nul_in_header.fits",
        _patch(tagged("nul_in_header.fits"), "INSTRUME", "INSTRUME= 'Sky\x00CamZ'"),
        "card 'INSTRUME' holds the control byte 0x00",
    )
    put(
        "escape_in_header.fits",
        _patch(tagged("escape_in_header.fits"), "OBSTYPE", "OBSTYPE = 'EXP\x1b[2J'"),
        "card 'OBSTYPE' holds the control byte 0x1b",
    )
    put(
        "bitpix_12.fits",
        _patch(tagged("bitpix_12.fits"), "BITPIX", "BITPIX  =                   12"),
        "BITPIX = 12, not one of (8, 16, 32, 64, -32, -64)",
    )
    put(
        "naxis1_abc.fits",
        _patch(tagged("naxis1_abc.fits"), "NAXIS1", "NAXIS1  = 'abc'"),
        "NAXIS1 = 'abc', not an integer >= 0",
    )
    put(
        "naxis2_negative.fits",
        _patch(tagged("naxis2_negative.fits"), "NAXIS2", "NAXIS2  =                   -5"),
        "NAXIS2 = -5, not an integer >= 0",
    )
    variant("cube.fits", "not a 2-D image: NAXIS=3", image=np.stack([data, data]))
    variant("one_dim.fits", "not a 2-D image: NAXIS=1", image=data[0].copy())
    variant("header_only.fits", "no image data: no HDU has NAXIS > 0 (PrimaryHDU NAXIS=0)", image=None)
    buf = io.BytesIO()
    fits.HDUList(
        [
            fits.PrimaryHDU(header=fits.Header({"HISTORY": "table only"})),
            fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.arange(5.0))]),
        ]
    ).writeto(buf)
    put("table_only.fits", buf.getvalue(), "no image data: no HDU has NAXIS > 0 (PrimaryHDU NAXIS=0, BinTableHDU")

    # -- the pixels ---------------------------------------------------------------------------------
    variant("all_nan.fits", "every pixel is NaN", image=np.full_like(data, np.nan))
    variant("constant.fits", "image has no noise: every pixel is 1234", image=np.full_like(data, 1234.0))

    # -- the WCS ------------------------------------------------------------------------------------
    variant(
        "no_wcs.fits",
        "no celestial WCS",
        drop=[
            k
            for k in header
            if k[:5] in ("CTYPE", "CRVAL", "CRPIX", "CUNIT") or k[:2] == "CD" or k in ("WCSAXES", "LONPOLE", "LATPOLE")
        ],
    )
    put(
        "crval_nan.fits",
        _patch(tagged("crval_nan.fits"), "CRVAL1", "CRVAL1  =                  NaN"),
        "WCS CRVAL1 = 'NaN' is not a finite number",
    )
    variant("crval_dec_100.fits", "invalid WCS in header: InvalidTransformError", CRVAL2=100.0)
    variant("cd_zero.fits", "is singular (rank 0)", CD1_1=0.0, CD1_2=0.0, CD2_1=0.0, CD2_2=0.0)
    variant("cd_rank1.fits", "is singular (rank 1)", CD2_1=header["CD1_1"], CD2_2=header["CD1_2"])
    variant(
        "pixscale_x10.fits",
        "is outside the profile's [astrometry] pixscale_range [3.2, 4.0]",
        **{k: header[k] * 10 for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2")},
    )
    variant("bad_projection.fits", "invalid WCS in header", CTYPE1="RA---XYZ", CTYPE2="DEC--XYZ")

    # -- exposure -----------------------------------------------------------------------------------
    variant("exptime_zero.fits", "EXPTIME = 0.0: the exposure time must be > 0", EXPTIME=0.0)
    variant("exptime_negative.fits", "EXPTIME = -10.0: the exposure time must be > 0", EXPTIME=-10.0)
    variant("exptime_garbage.fits", "EXPTIME = 'ten seconds' (exposure time) is not a number", EXPTIME="ten seconds")
    variant("exptime_huge.fits", "at most 86400 s", EXPTIME=1.0e9)
    variant("exptime_missing.fits", "no exposure time in the header", drop=["EXPTIME"])

    # -- time ---------------------------------------------------------------------------------------
    no_time = ["MJD", "DATE-OBS", "UTSTART", "DATE"]
    variant(
        "date_only.fits",
        "DATE-OBS '2013-06-10' has no time of day; map the time keyword with [header] time_obs",
        drop=no_time,
        DATE_OBS="2013-06-10",
    )
    variant(
        "date_1850.fits",
        "DATE-OBS = '1850-06-10T23:45:16' is outside the years 1901-2100",
        drop=no_time,
        DATE_OBS="1850-06-10T23:45:16",
    )
    variant(
        "date_9999.fits",
        "DATE-OBS = '9999-06-10T23:45:16' is outside the years 1901-2100",
        drop=no_time,
        DATE_OBS="9999-06-10T23:45:16",
    )
    variant("mjd_overflow.fits", "MJD = '1e300' is outside the years 1901-2100", MJD="1e300")
    variant("mjd_garbage.fits", "MJD = 'soon' (observation time) is not a number", MJD="soon")
    variant("date_garbage.fits", "DATE-OBS = 'yesterday' is not a date", drop=no_time, DATE_OBS="yesterday")
    variant("date_feb30.fits", "day is out of range for month", drop=no_time, DATE_OBS="2013-02-30T10:00:00")
    variant(
        "time_of_day_bad.fits",
        "has no valid time of day (25:61:00)",
        drop=no_time,
        DATE_OBS="2013-06-10",
        UTSTART="25:61:00",
    )
    variant("no_time.fits", "no observation time in the header", drop=no_time)
    variant("timesys_local.fits", "TIMESYS = 'LOCAL' is not a time scale", TIMESYS="LOCAL")

    # -- detector -----------------------------------------------------------------------------------
    variant("saturate_below_background.fits", "is at or below the frame's background", SATURATE=10.0)
    variant("saturate_negative.fits", "SATURATE = -1.0: the saturation level must be > 0", SATURATE=-1.0)
    variant("gain_zero.fits", "GAIN = 0.0: the gain must be > 0", GAIN=0.0)
    variant("gain_garbage.fits", "GAIN = 'x' (gain) is not a number", GAIN="x")
    variant("airmass_garbage.fits", "AIRMASS = 'high' (airmass) is not a number", AIRMASS="high")

    # -- the name -----------------------------------------------------------------------------------
    put(NON_UTF8_NAME, tagged("non-UTF-8 name"), "file name is not valid UTF-8")
    return made
