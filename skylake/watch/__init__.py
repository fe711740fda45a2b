"""Watch mode: follow a camera's output directories and keep the lake up to date (``skylake watch``).

:mod:`~skylake.watch.arrivals` decides which files are complete and new; :mod:`~skylake.watch.watcher`
runs the batches; :mod:`~skylake.watch.cli` is the command.
"""

_EXPORTS = {
    "Arrival": "arrivals",
    "Arrivals": "arrivals",
    "BatchResult": "watcher",
    "WatchSettings": "watcher",
    "Watcher": "watcher",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Import lazily: ``skylake --help`` should not pay for numpy, pandas and the lake."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"skylake.watch.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'skylake.watch' has no attribute {name!r}")
