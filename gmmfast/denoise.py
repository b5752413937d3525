"""Compatibility alias of :mod:`gmmfast.image` (the patch-prior denoiser and its helpers)."""

from .image import (  # noqa: F401
    PatchDenoiser,
    blur,
    blur_matrix,
    estimate_noise_sigma,
    gaussian_kernel,
    psnr,
    psnr_per_image,
    select_patch_prior,
)
