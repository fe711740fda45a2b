"""From raw frames to reduced ones: calibration masters in the lake and their use at ingest.

==================  ==========================================================================
``settings``        a profile's ``[reduction]`` table, validated (a leaf module)
``frame_types``     a header's frame type (bias, dark, flat, light) from IMAGETYP and friends
``masters``         combining raw calibration frames into masters with ccdproc (pure functions)
``store``           masters in the lake: FITS images under ``LAKE/master_frames/``, rows in ``masters``
``apply``           reducing one science frame with the masters nearest in time (ingest calls it)
==================  ==========================================================================
"""
