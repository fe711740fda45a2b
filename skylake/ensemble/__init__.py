"""The ensemble stage: relative calibration (ensemble photometry) and detrending of each night's light curves."""
