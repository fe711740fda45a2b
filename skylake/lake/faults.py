"""Fault injection for the crash tests: ``SKYLAKE_FAULT=point[@n]`` SIGKILLs the process the n-th
time (default 1st) it passes ``point``. Points are named where :func:`point` is called."""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["point"]


_seen: Counter = Counter()


def point(name: str) -> None:
    """Kill this process here when ``SKYLAKE_FAULT`` names this point (``NAME`` or ``NAME@N``: its N-th visit).

    Parameters
    ----------
    name : str
        The fault point's name (e.g. ``mid_publish``).
    """
    spec = os.environ.get("SKYLAKE_FAULT")
    if not spec:
        return
    target, _, nth = spec.partition("@")
    if target != name:
        return
    _seen[name] += 1
    if _seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
