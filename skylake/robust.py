"""Robust statistics shared across the pipeline."""

__all__ = ["MAD_TO_SIGMA"]


#: Scale of the median absolute deviation to the standard deviation of a Gaussian (1 / Phi^-1(3/4),
#: rounded): sigma = MAD_TO_SIGMA * median(|x - median(x)|). astropy's ``mad_std`` uses the unrounded
#: 1.482602218505602; where the code uses it (skylake.calib.zeropoint) it stays.
MAD_TO_SIGMA = 1.4826
