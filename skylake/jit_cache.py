"""Numba's on-disk cache for hats' compiled pixel-tree functions: compiled once per installation, not per process.

hats aligns and filters partition trees with numba functions (``@njit`` without ``cache=True``), which compile
for ~2.3 s in every new process: every worker of a cluster and every ``skylake calibrate`` paid it on its
first cross-match plan. :func:`cache_hats_jit` turns numba's own on-disk cache on for them (what
``cache=True`` does, ``Dispatcher.enable_caching``), so a later process loads the machine code in ~0.2 s.
numba keys its cache on the source file and the CPU, so a new hats version or another machine compiles
afresh; where no cache directory is writable (the package's ``__pycache__``, else the user's cache
directory) the functions compile in each process as before.
"""

from __future__ import annotations

import logging

__all__ = ["cache_hats_jit"]

log = logging.getLogger(__name__)

_cached: int | None = None  # the functions cached in this process, once asked


def cache_hats_jit() -> int:
    """Turn numba's on-disk cache on for hats' compiled pixel-tree functions, once per process.

    Returns
    -------
    int
        The functions whose compiled code is now cached on disk (0 where no cache directory is writable).
    """
    global _cached
    if _cached is not None:
        return _cached
    from hats.pixel_tree import moc_filter, pixel_alignment
    from numba.core.registry import CPUDispatcher

    _cached = 0
    for module in (pixel_alignment, moc_filter):
        for name, func in vars(module).items():
            if not isinstance(func, CPUDispatcher):
                continue
            try:
                func.enable_caching()
            except (RuntimeError, OSError) as exc:  # numba finds no writable cache directory
                log.debug("hats' %s.%s compiles in each process: %s", module.__name__, name, exc)
                continue
            _cached += 1
    return _cached
