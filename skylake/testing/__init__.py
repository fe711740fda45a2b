"""Helpers the tests and benchmarks share to compare what skylake wrote (:mod:`~skylake.testing.compare`).

The generators of synthetic frames, nights, lakes and hostile files are in :mod:`skylake.synthetic`.
"""
