"""Survey photometry as HEALPix-partitioned Parquet (HATS) tables: the skylake package.

Frames go in through :func:`skylake.pipeline.ingest` (ingest, then calibration); the lake on disk is
described in :mod:`skylake.lake`, its tables in :mod:`skylake.lake.tables`; table schemas live in the
repository's ``schemas/`` directory.
"""

import atexit
import gc

__all__ = ["PIPELINE_VERSION"]

__version__ = "0.1.0"

#: Bumped whenever a change alters what processing a frame produces; part of every frame's identity.
PIPELINE_VERSION = "3"  # 3: exact circular apertures (sep subpix=0); masked-pixel flags from bad pixels only

# Arrow's dataset scanners left for the final teardown can abort the interpreter at exit ("terminate called
# without an active exception", apache/arrow#34314): collect them while Arrow is still alive.
atexit.register(gc.collect)
