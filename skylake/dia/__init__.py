"""Difference imaging: a frame less its PSF-matched reference, and photometry of what changed.

- :mod:`~skylake.dia.kernel`: the PSF-matching kernel (Alard & Lupton's basis on numpy, spatially varying, with
  a differential background);
- :mod:`~skylake.dia.difference`: stamps to fit on, the subtraction and the difference's noise;
- :mod:`~skylake.dia.forced`: PSF-weighted forced photometry on the difference;
- :mod:`~skylake.dia.detect`: DIA sources, both signs, with flags for what makes a bogus one;
- :mod:`~skylake.dia.reference`: a stacked reference with its noise and mask; :mod:`~skylake.dia.references`
  and :mod:`~skylake.dia.stage` keep references and differences in the lake (`skylake reference build`,
  `skylake dia`).

The kernels are pure functions of arrays; the stage and the references build on them.
"""

import importlib

#: Where each name of the package lives (imported on first use: ``skylake dia --help`` loads no numpy).
_HOMES = {
    "KernelSettings": "kernel",
    "KernelSolution": "kernel",
    "fit_kernel": "kernel",
    "DiaSettings": "difference",
    "Difference": "difference",
    "choose_stamps": "difference",
    "frame_variance": "difference",
    "subtract": "difference",
    "forced_photometry": "forced",
    "joint_forced_photometry": "forced",
    "gaussian_psf": "forced",
    "DIA_FLAGS": "detect",
    "detect_sources": "detect",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"skylake.dia.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'skylake.dia' has no attribute {name!r}")


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
    "joint_forced_photometry",
    "gaussian_psf",
    "DIA_FLAGS",
    "detect_sources",
]
