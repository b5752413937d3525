"""Image restoration with Gaussian-mixture patch priors.

Overlapping-patch extraction and averaging (compiled kernels),
:class:`PatchDenoiser` (MAP component, posterior mean and EPLL denoising
and deblurring), the search for a prior (:func:`select_patch_prior`), blur
operators, and image metrics (PSNR, noise level).

May import :mod:`gmmfast.mixture`, :mod:`gmmfast.utils` and the kernels;
never :mod:`gmmfast.vae` or :mod:`gmmfast.cli`.
"""

from ._blur import blur, blur_matrix, gaussian_kernel
from ._denoiser import PatchDenoiser
from ._patches import average_patches, extract_patches, patch_positions
from ._prior_selection import select_patch_prior
from .metrics import estimate_noise_sigma, psnr, psnr_per_image

__all__ = [
    "PatchDenoiser",
    "average_patches",
    "blur",
    "blur_matrix",
    "estimate_noise_sigma",
    "extract_patches",
    "gaussian_kernel",
    "patch_positions",
    "psnr",
    "psnr_per_image",
    "select_patch_prior",
]
