"""The IERS tables of astropy (Earth orientation: UT1 - UTC, polar motion), never downloaded.

Two policies, each a context so no module changes astropy's settings for the rest of the process:

* :func:`offline`: positions (alt/az of a pointing, a star, a map pixel). The bundled tables are used,
  and past their predictions astropy's degraded (sub-arcsecond) accuracy is accepted silently.
* :func:`strict`: a time given in UT1 by a header. Past the bundled predictions the conversion raises,
  so the frame is rejected instead of given a guessed time.
"""

from __future__ import annotations

import contextlib
import warnings

__all__ = ["offline", "strict"]


@contextlib.contextmanager
def offline():
    """Use the bundled IERS tables for positions, accepting their degraded accuracy silently.

    Nothing is downloaded; past the tables' predictions astropy's degraded (sub-arcsecond) accuracy is
    accepted and its warnings are ignored inside the context.

    Yields
    ------
    None
        Inside the context, astropy's IERS settings are these.
    """
    from astropy.utils import iers

    with (
        iers.conf.set_temp("auto_download", False),
        iers.conf.set_temp("auto_max_age", None),
        iers.conf.set_temp("iers_degraded_accuracy", "warn"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # degraded-accuracy notices
        yield


@contextlib.contextmanager
def strict():
    """Use the bundled IERS tables for a time given in UT1, raising past their predictions.

    Nothing is downloaded (with ``auto_max_age`` 30 days); past the bundled predictions the conversion
    raises (``iers_degraded_accuracy`` is ``"error"``), so the frame is rejected instead of given a guessed
    time.

    Yields
    ------
    None
        Inside the context, astropy's IERS settings are these.
    """
    from astropy.utils import iers

    with (
        iers.conf.set_temp("auto_download", False),
        iers.conf.set_temp("auto_max_age", 30.0),
        iers.conf.set_temp("iers_degraded_accuracy", "error"),
    ):
        yield
