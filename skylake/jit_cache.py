"""Numba's on-disk cache for compiled functions (hats' and skylake's own): compiled once per installation, not per
process.

hats aligns and filters partition trees with numba functions (``@njit`` without ``cache=True``), which compile
for ~2.3 s in every new process: every worker of a cluster and every ``skylake calibrate`` paid it on its
first cross-match plan. :func:`cache_hats_jit` turns numba's own on-disk cache on for them (what
``cache=True`` does, ``Dispatcher.enable_caching``), so a later process loads the machine code in ~0.2 s.
numba keys its cache on the source file and the CPU, so a new hats version or another machine compiles
afresh; where no cache directory is writable (the package's ``__pycache__``, else the user's cache
directory) the functions compile in each process as before. skylake's own numba functions take the same path
(:func:`on_disk`): ``cache=True`` in their decorator would raise at import where no directory is writable.
"""

from __future__ import annotations

import logging

__all__ = ["cache_hats_jit", "on_disk"]

log = logging.getLogger(__name__)

_cached: int | None = None  # the functions cached in this process, once asked


def on_disk(func):
    """Turn numba's on-disk cache on for a compiled function, where a cache directory is writable.

    Parameters
    ----------
    func : numba.core.registry.CPUDispatcher
        A function compiled with ``numba.njit`` (without ``cache=True``).

    Returns
    -------
    numba.core.registry.CPUDispatcher
        ``func``, caching on disk when it can (a decorator).
    """
    _enable(func)
    return func


def _enable(func) -> bool:
    """``func.enable_caching()``; False where numba finds no writable cache directory (it compiles in each
    process then)."""
    try:
        func.enable_caching()
    except (RuntimeError, OSError) as exc:
        log.debug("%s.%s compiles in each process: %s", func.py_func.__module__, func.py_func.__qualname__, exc)
        return False
    return True


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
        for func in vars(module).values():
            if not isinstance(func, CPUDispatcher):
                continue
            _cached += _enable(func)
    return _cached
