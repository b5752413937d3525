"""Blur operators: Gaussian kernels, zero-padded convolution of images and
of single patches, and the conjugate-gradient image step of EPLL deblurring."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..utils._validation import check_scalar
from ._checks import check_images, check_kernel, to_input_dtype

#: Largest kernel radius (a 2049 x 2049 kernel, 34 MB): beyond, a typo would allocate gigabytes.
MAX_KERNEL_RADIUS = 1024


def gaussian_kernel(sigma_px: float = 1.0, radius: int | None = None) -> np.ndarray:
    """A normalised 2-d Gaussian blur kernel of standard deviation ``sigma_px`` pixels
    (radius ``ceil(3 sigma)`` by default).

    Examples
    --------
    >>> from gmmfast.image import gaussian_kernel
    >>> k = gaussian_kernel(1.0)
    >>> k.shape, round(float(k.sum()), 6)
    ((7, 7), 1.0)
    """
    if not 0 < sigma_px <= MAX_KERNEL_RADIUS / 3:
        raise ValueError(
            f"sigma_px must be positive and at most {MAX_KERNEL_RADIUS / 3:g}; got {sigma_px}."
        )
    if radius is not None:
        check_scalar(radius, "radius", (int, np.integer), min_value=0, max_value=MAX_KERNEL_RADIUS)
    r = int(np.ceil(3 * sigma_px)) if radius is None else int(radius)
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma_px) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


#: Largest patch side of :func:`blur_matrix`: it convolves D = m * m unit patches, D**2
#: floats (m = 64: 134 MB).
MAX_BLUR_PATCH = 64

#: The boundary modes of ``scipy.ndimage.convolve`` that :func:`blur_matrix` takes.
BLUR_BOUNDARIES = ("constant", "reflect", "nearest", "mirror", "wrap")


def check_blur_boundary(mode: Any, name: str = "blur_boundary") -> str:
    """One of :data:`BLUR_BOUNDARIES` (``ValueError`` naming ``name`` otherwise)."""
    if not isinstance(mode, str) or mode not in BLUR_BOUNDARIES:
        raise ValueError(f"{name} must be one of {BLUR_BOUNDARIES}; got {mode!r}.")
    return mode


def blur_matrix(kernel: np.ndarray, patch_size: int, mode: str = "constant") -> np.ndarray:
    """The (m*m, m*m) matrix of convolving an m x m patch with ``kernel``
    (column j: the blurred j-th unit patch), the pixels outside the patch
    given by ``mode`` of ``scipy.ndimage.convolve``: ``'constant'`` (zero),
    ``'reflect'``, ``'nearest'``, ``'mirror'``, ``'wrap'``.

    Examples
    --------
    >>> from gmmfast.image import blur_matrix, gaussian_kernel
    >>> W = blur_matrix(gaussian_kernel(1.0), 8, mode="reflect")  # acts on 8 x 8 patches
    >>> W.shape
    (64, 64)
    """
    from scipy.ndimage import convolve

    k = check_kernel(kernel)
    check_blur_boundary(mode, "mode")
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)):
        raise ValueError(f"patch_size must be an integer; got {patch_size!r}.")
    if not 1 <= patch_size <= MAX_BLUR_PATCH:
        raise ValueError(f"patch_size must be in [1, {MAX_BLUR_PATCH}]; got {patch_size}.")
    D = int(patch_size) * int(patch_size)
    units = np.eye(D).reshape(D, patch_size, patch_size)
    return convolve(units, k[None], mode=mode).reshape(D, D).T


def blur(images: Any, kernel: Any, adjoint: bool = False) -> np.ndarray:
    """K x (or K^T x) for an image or a batch: 2-d convolution with zero
    padding (``scipy.ndimage.convolve``, ``mode='constant'``), the
    observation model of :meth:`PatchDenoiser.deblur`. The adjoint of a
    zero-padded convolution is the zero-padded correlation.

    Float images give float64; uint8/uint16 images are scaled as their dtype
    implies, blurred, and returned in their dtype (rounded), as
    :meth:`PatchDenoiser.deblur` reads them.

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast.image import blur, gaussian_kernel
    >>> image = np.zeros((9, 9))
    >>> image[4, 4] = 1.0
    >>> out = blur(image, gaussian_kernel(1.0))
    >>> round(float(out.sum()), 6), bool(out[4, 4] < 1)  # mass kept, spread out
    (1.0, True)
    """
    from scipy.ndimage import convolve, correlate

    batch = check_images(images)
    k = check_kernel(kernel)
    op = correlate if adjoint else convolve
    out = to_input_dtype(op(batch, k[None], mode="constant"), np.asarray(images).dtype)
    return out[0] if np.ndim(images) == 2 else out


def solve_deblur_step(Kty, kernel, lam, beta, counts, patch_mean, x0, cg_iter):
    """Solve (lam K^T K + beta C) x = lam K^T y + beta C p by conjugate gradients,
    C the coverage counts and p the average of the patch estimates. The
    operator is block-diagonal over images; CG runs on the whole batch with
    the batch's residual norm (a Jacobi preconditioner 1 / (lam + beta C)
    bounds the condition number by about 1 + lam / (beta C))."""
    from scipy.sparse.linalg import LinearOperator, cg

    shape = Kty.shape
    size = int(np.prod(shape))
    diag = np.broadcast_to(lam * np.sum(kernel**2) + beta * counts, shape).ravel()

    def apply(v):
        v = v.reshape(shape)
        return (lam * blur(blur(v, kernel), kernel, adjoint=True) + beta * counts * v).ravel()

    rhs = (lam * Kty + beta * counts * patch_mean).ravel()
    operator = LinearOperator((size, size), matvec=apply, dtype=np.float64)
    precond = LinearOperator((size, size), matvec=lambda v: v / diag, dtype=np.float64)
    x, _ = cg(operator, rhs, x0=x0.ravel(), maxiter=cg_iter, rtol=1e-6, M=precond)
    return x.reshape(shape)
