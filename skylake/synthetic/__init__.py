"""SYNTHETIC data with exactly known truth: the generators of frames, nights, cameras, catalogues and bad files.

Every generator lives here, used by ``skylake demo``, the tests and the benchmarks (no runtime module imports
it: tests/test_imports.py checks).

=================  ========================================================================
``frames``         star catalogue, TAN WCS, rendered image, FITS writer
``night``          the demo night (weather, twilight, variables) and its reference catalogue
``bad_files``      broken files a pipeline must reject with a reason
``hostile_files``  files built to break readers (huge headers, odd HDUs, names)
``pointing_forms`` one frame with its pointing written in every header form
``series``         a long series of one field for the ensemble and detrending tests
``detections``     detections written straight into a lake (objects tests and benchmark)
``summary_rows``   summary-table rows at archive scale (refresh benchmark)
``refcat``         reference catalogues (APASS-like shards)
``allsky``         all-sky fisheye frames (camera model, clouds, streaks)
``allsky_night``   a synthetic all-sky night
``foreground``     an all-sky camera's foreground painted on frames (bodies, lit edges, trails), a later sky
``raw``            raw frames with bias, dark, flat, hot and dead pixels, cosmic rays
``dither``         dithered frames of one field (coadds)
=================  ========================================================================

Everything is deterministic from an integer ``seed`` so that
the same call always produces byte-identical pixel data.  It serves three
purposes:

* ``skylake demo``: :func:`write_demo_night` writes a realistic night of
  frames (one tracked field, changing airmass and sky, a passing cloud,
  a few variable stars) into a directory that is then ingested like real
  data.
* tests that need exact expectations: :func:`render_frame` puts stars of
  known total flux at known pixel positions, :func:`tan_wcs_header` gives a
  known astrometric solution, and :func:`write_bad_files` produces the usual
  kinds of broken input a pipeline must quarantine rather than crash on.
* benchmarks: :func:`render_frame` is vectorised (stamp rendering with
  ``np.add.at`` into a padded canvas, noise drawn in row blocks) so a
  4096 x 4096 frame with ~8000 stars renders in well under two seconds.

Conventions used throughout:

* pixel coordinates are 0-based, numpy convention: ``x`` is the column index,
  ``y`` the row index, and the *centre* of pixel ``(row j, column i)`` is at
  ``(x=i, y=j)``.  FITS ``CRPIX`` is 1-based, so FITS pixel ``p`` is numpy
  coordinate ``p - 1`` (astropy's ``*_values`` WCS methods use the 0-based
  convention, matching these modules);
* ``shape`` is always ``(ny, nx)`` like a numpy array;
* fluxes and sky levels are in ADU integrated over the exposure, gains in
  e-/ADU, angles in degrees unless a name says otherwise (``_arcsec``,
  ``_px``, ``_s``, ``_d`` for days).
"""

from skylake.synthetic.bad_files import BAD_FILE_NAMES, write_bad_files
from skylake.synthetic.frames import ZP_TRUE_DEFAULT, make_sky_catalog, render_frame, tan_wcs_header, write_frame
from skylake.synthetic.night import DemoTruth, write_demo_night, write_reference_catalog

__all__ = [
    "BAD_FILE_NAMES",
    "DemoTruth",
    "ZP_TRUE_DEFAULT",
    "make_sky_catalog",
    "render_frame",
    "tan_wcs_header",
    "write_bad_files",
    "write_demo_night",
    "write_frame",
    "write_reference_catalog",
]
