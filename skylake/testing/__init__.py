"""Generators of SYNTHETIC lakes and hostile files, used only by the tests and benchmarks (nothing in the
pipeline imports them):

- :mod:`~skylake.testing.detections`: detections of known stars committed straight into a lake (no images);
- :mod:`~skylake.testing.summary_rows`: frame, zeropoint, extinction and map rows of whole nights, for the
  summary database and the scale benchmark;
- :mod:`~skylake.testing.hostile_files`: every way a frame file can be broken, each with its rejection.

The synthetic *frames* with known truth (:mod:`skylake.synthetic`) stay in the package: ``skylake demo``
makes its night with them.
"""
