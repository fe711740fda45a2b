"""Difference imaging: a frame less its PSF-matched reference, and photometry of what changed.

- :mod:`~skylake.dia.kernel`: the PSF-matching kernel (Alard & Lupton's basis on numpy, spatially varying, with
  a differential background);
- :mod:`~skylake.dia.subtract`: stamps to fit on, the subtraction and the difference's noise;
- :mod:`~skylake.dia.forced`: PSF-weighted forced photometry on the difference;
- :mod:`~skylake.dia.detect`: DIA sources, both signs, with flags for what makes a bogus one.

Pure functions of arrays: the lake's references, the per-frame tasks and the DIA tables build on them.
"""

from skylake.dia.detect import DIA_FLAGS, detect_sources
from skylake.dia.forced import forced_photometry, gaussian_psf
from skylake.dia.kernel import KernelSettings, KernelSolution, fit_kernel
from skylake.dia.subtract import DiaSettings, Difference, choose_stamps, frame_variance, subtract

__all__ = [
    "KernelSettings",
    "KernelSolution",
    "fit_kernel",
    "DiaSettings",
    "Difference",
    "choose_stamps",
    "frame_variance",
    "subtract",
    "forced_photometry",
    "gaussian_psf",
    "DIA_FLAGS",
    "detect_sources",
]
