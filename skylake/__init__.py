"""skylake: survey photometry as HEALPix-partitioned Parquet (HATS) tables.

Frames go in through :func:`skylake.ingest.ingest`; the lake on disk is described in
:mod:`skylake.lake`; table schemas live in the repository's ``schemas/`` directory.
"""

__version__ = "0.1.0"

#: Bumped whenever a change alters what processing a frame produces; part of every frame's identity.
PIPELINE_VERSION = "2"
