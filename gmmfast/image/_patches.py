"""Overlapping image patches: extraction and averaging.

The building blocks of patch-prior image restoration: cut every image of
a batch into all its overlapping ``m x m`` patches, process the patches
(for instance, denoise each one under a Gaussian mixture prior), and put
them back by averaging, at every pixel, the values the patches covering
it hold.

Patch positions
---------------
Along an axis of length ``L``, patches of size ``m`` start at
``range(0, L - m + 1, stride)``, plus ``L - m`` when that is not already
the last position (see :func:`patch_positions`). The extra position makes
the last patch touch the far border, so for every stride
``1 <= stride <= patch_size`` every pixel is covered by at least one
patch, and :func:`average_patches` inverts :func:`extract_patches`
exactly (up to rounding). Strides larger than the patch size would leave
gaps and are rejected.

Patch order
-----------
Rows of the patch matrix are image-major, then by row position, then by
column position; the ``m * m`` pixels of a patch are row-major. For
images of shape ``(n, H, W)`` with ``R = len(patch_positions(H, m, s))``
and ``C = len(patch_positions(W, m, s))`` row and column positions, patch
``(i, a, b)`` is row ``(i * R + a) * C + b``, and each image owns a
contiguous block of ``R * C`` rows.

Both operations run in compiled, multi-threaded kernels
(``gmmfast._kernels._patches``). float32 inputs stay float32; any other
real dtype is computed in float64. Inputs are never modified.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._kernels import _patches, check_status
from ..utils._threads import effective_n_threads
from ..utils._validation import _check_finite, check_array, check_scalar

__all__ = ["patch_positions", "extract_patches", "average_patches"]


def patch_positions(length: int, patch_size: int, stride: int) -> np.ndarray:
    """Start indices of the patches along one axis.

    Parameters
    ----------
    length : int
        Length ``L`` of the axis (image height or width), at least 1.
    patch_size : int
        Patch size ``m`` along the axis, ``1 <= m <= L``.
    stride : int
        Step ``s`` between consecutive patches, ``1 <= s <= m``.

    Returns
    -------
    positions : ndarray of shape (n_positions,), dtype intp
        ``range(0, L - m + 1, s)``, followed by ``L - m`` when the range
        does not already end there. Increasing; the first is 0 and the
        last ``L - m``, so the patches cover every index of the axis.

    Raises
    ------
    ValueError
        If an argument is not an integer or is out of range.

    Examples
    --------
    >>> patch_positions(10, 4, 3)
    array([0, 3, 6])
    >>> patch_positions(10, 4, 4)
    array([0, 4, 6])
    """
    check_scalar(length, "length", numbers.Integral, min_value=1)
    _check_patch_size(patch_size, int(length))
    _check_stride(stride, int(patch_size))
    return _positions(int(length), int(patch_size), int(stride))


def extract_patches(
    images: Any,
    patch_size: int,
    stride: int = 1,
    *,
    out: np.ndarray | None = None,
    n_threads: int | None = None,
) -> np.ndarray:
    """All overlapping ``patch_size x patch_size`` patches of a batch of images.

    Parameters
    ----------
    images : array-like of shape (n_images, H, W) or (H, W)
        Real-valued, finite images; a 2-d array is one image.
    patch_size : int
        Side ``m`` of the square patches, ``1 <= m <= min(H, W)``.
    stride : int, default=1
        Step between patch positions along each axis,
        ``1 <= stride <= patch_size``. The last patch along each axis is
        aligned with the border even when the stride does not divide
        ``L - m`` (see :func:`patch_positions`).
    out : ndarray, optional
        Where to write the patches: a writeable, C-contiguous array of the
        result's shape and dtype (float32 for float32 images, float64
        otherwise) that does not share memory with ``images``. Returned.
        Extraction is a memory copy, so for large outputs most of the time
        of a call without ``out`` goes to the operating system mapping and
        zeroing the new array's pages; reusing one buffer across calls (for
        instance over chunks of a large batch) avoids that cost.
    n_threads : int or None, default=None
        OpenMP threads. ``None`` uses what an OpenMP region would get
        (``OMP_NUM_THREADS``, threadpoolctl limits); negative values count
        back from the number of CPUs.

    Returns
    -------
    patches : ndarray of shape (n_patches, patch_size * patch_size)
        C-contiguous, float32 for float32 images and float64 otherwise, in
        the order described in the module docstring;
        ``n_patches = n_images * len(patch_positions(H, m, stride))
        * len(patch_positions(W, m, stride))``. ``out`` when given.

    Raises
    ------
    ValueError
        For non-numeric, non-finite or wrongly shaped images, a patch
        size or stride out of range, or an unusable ``out``.

    See Also
    --------
    average_patches : The inverse operation.
    patch_positions : Where the patches start.

    Examples
    --------
    >>> image = np.arange(16.0).reshape(4, 4)
    >>> extract_patches(image, 2, 2)
    array([[ 0.,  1.,  4.,  5.],
           [ 2.,  3.,  6.,  7.],
           [ 8.,  9., 12., 13.],
           [10., 11., 14., 15.]])
    """
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim != 3:
        raise ValueError(
            "images must be an array of shape (n_images, H, W), or (H, W) for one "
            f"image; got an array with {arr.ndim} dimension(s) and shape {arr.shape}."
        )
    n_images, height, width = arr.shape
    if height == 0 or width == 0:
        raise ValueError(
            f"images must have at least one pixel; got images of shape {arr.shape[1:]}."
        )
    flat = arr.reshape(n_images, height * width)
    arr = check_array(flat, dtype=_compute_dtype(arr), name="images").reshape(arr.shape)
    m = _check_patch_size(patch_size, min(height, width))
    s = _check_stride(stride, m)
    rows, cols = _positions(height, m, s), _positions(width, m, s)
    shape = (n_images * len(rows) * len(cols), m * m)
    if out is None:
        out = np.empty(shape, dtype=arr.dtype)
    else:
        _check_out(out, shape, arr)
    status = _patches.extract_patches(arr, rows, cols, m, out, effective_n_threads(n_threads))
    check_status(status, "extract_patches")
    return out


def average_patches(
    patches: Any,
    image_shape: tuple[int, int] | tuple[int, int, int],
    patch_size: int,
    stride: int = 1,
    *,
    weights: Any = None,
    n_threads: int | None = None,
) -> np.ndarray:
    """Images from their overlapping patches, averaged where patches overlap.

    Every pixel becomes the mean of the values that the patches covering
    it hold for it, or, with ``weights``, their weighted mean
    ``sum_p w_p v_p / sum_p w_p``. Sums are accumulated in float64.
    ``average_patches(extract_patches(X, m, s), X.shape, m, s)`` returns
    ``X`` (as float32 or float64) up to rounding.

    The kernel runs with flush-to-zero (as all gmmfast kernels): values
    and products below the smallest normal number of their dtype
    (about 2.2e-308 in float64, 1.2e-38 in float32) are treated as zero.

    Parameters
    ----------
    patches : array-like of shape (n_patches, patch_size * patch_size)
        Real-valued, finite patches in the order of :func:`extract_patches`
        (see the module docstring).
    image_shape : tuple of int
        ``(H, W)``, the number of images then following from
        ``n_patches``, or ``(n_images, H, W)``.
    patch_size : int
        Side ``m`` of the patches, ``1 <= m <= min(H, W)``.
    stride : int, default=1
        The stride the patches were extracted with,
        ``1 <= stride <= patch_size``.
    weights : array-like of shape (n_patches,), default=None
        Non-negative finite weights, one per patch. Every pixel of every
        image must be covered by at least one patch of positive weight.
        ``None`` weighs all patches equally (plain average).
    n_threads : int or None, default=None
        OpenMP threads, as in :func:`extract_patches`.

    Returns
    -------
    images : ndarray of shape (n_images, H, W)
        float32 for float32 patches, float64 otherwise.

    Raises
    ------
    ValueError
        For non-numeric or non-finite patches or weights, negative
        weights, a pixel whose patches all have weight 0, shapes that do
        not match ``image_shape``, or a patch size or stride out of range.

    See Also
    --------
    extract_patches : The inverse operation.

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast.image import average_patches, extract_patches
    >>> image = np.arange(16.0).reshape(4, 4)
    >>> patches = extract_patches(image, 2, 1)  # every 2 x 2 patch, overlapping
    >>> np.allclose(average_patches(patches, (4, 4), 2, 1), image)
    True
    """
    n_images, height, width = _check_image_shape(image_shape)
    m = _check_patch_size(patch_size, min(height, width))
    s = _check_stride(stride, m)
    rows, cols = _positions(height, m, s), _positions(width, m, s)
    per_image = len(rows) * len(cols)

    arr = np.asarray(patches)
    if arr.ndim != 2:
        raise ValueError(
            "patches must be 2-dimensional (n_patches, patch_size * patch_size); got an "
            f"array with {arr.ndim} dimension(s) and shape {arr.shape}."
        )
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"patches must hold real numbers; got an array of dtype {arr.dtype}.")
    if arr.shape[0] == 0:
        raise ValueError("patches has 0 patches; at least one image's worth needed.")
    # NaN and infinity are looked for in the output, not in this (largest)
    # array: see the end of this function.
    patches = np.ascontiguousarray(arr, dtype=_compute_dtype(arr))
    n_patches, n_pixels = patches.shape
    if n_pixels != m * m:
        raise ValueError(
            f"patches have {n_pixels} values each, but patch_size={m} needs {m * m} ({m} x {m})."
        )
    if n_images is None:
        if n_patches % per_image:
            raise ValueError(
                f"{n_patches} patches cannot come from images of shape ({height}, {width}): "
                f"with patch_size={m} and stride={s} each image has {per_image} patches, "
                f"and {n_patches} is not a multiple of {per_image}."
            )
        n_images = n_patches // per_image
    elif n_patches != n_images * per_image:
        raise ValueError(
            f"got {n_patches} patches, but {n_images} image(s) of shape ({height}, {width}) "
            f"with patch_size={m} and stride={s} have {n_images * per_image} "
            f"({per_image} per image)."
        )

    w = None if weights is None else _check_weights(weights, n_patches)
    # No more threads than images: each thread owns one row of ``work``.
    n_threads = min(effective_n_threads(n_threads), n_images)
    # Per-thread float64 accumulators: sums, and weight sums (or, without
    # weights, the coverage counts shared by every image).
    work = np.empty((n_threads, 2 * height * width))
    out = np.empty((n_images, height, width), dtype=patches.dtype)
    uncovered = np.zeros(n_images, dtype=np.uint8)
    status = _patches.average_patches(patches, w, rows, cols, m, out, work, uncovered, n_threads)
    check_status(status, "average_patches")
    finite = np.isfinite(out).all()
    if not finite:
        # Every patch value enters the sums (weight 0 or not), so a NaN or
        # infinity among the patches shows in the output; name it.
        with np.errstate(over="ignore"):  # finite values may overflow the check's sum
            _check_finite(patches, "patches")
    if uncovered.any():
        bad = np.flatnonzero(uncovered)
        raise ValueError(
            f"{len(bad)} image(s) (the first is image {bad[0]}) have pixels whose "
            "covering patches all have weight 0; every pixel needs a patch of "
            "positive weight."
        )
    if not finite:
        raise ValueError(
            "the weighted sums of the patches overflowed float64; scale the patches "
            "or the weights down."
        )
    return out


# --------------------------------------------------------------------------
# Checks and helpers
# --------------------------------------------------------------------------


def _positions(length: int, patch_size: int, stride: int) -> np.ndarray:
    last = length - patch_size
    pos = np.arange(0, last + 1, stride, dtype=np.intp)
    if pos[-1] != last:
        pos = np.append(pos, np.intp(last))
    return pos


def _compute_dtype(arr: np.ndarray) -> type:
    return np.float32 if arr.dtype == np.float32 else np.float64


def _check_patch_size(patch_size: Any, max_size: int) -> int:
    check_scalar(patch_size, "patch_size", numbers.Integral, min_value=1)
    if patch_size > max_size:
        raise ValueError(
            f"patch_size must be at most the smaller image side, {max_size}; got {patch_size}."
        )
    return int(patch_size)


def _check_stride(stride: Any, patch_size: int) -> int:
    check_scalar(stride, "stride", numbers.Integral, min_value=1)
    if stride > patch_size:
        raise ValueError(
            f"stride must be at most patch_size={patch_size} (a larger stride leaves "
            f"pixels that no patch covers); got {stride}."
        )
    return int(stride)


def _check_image_shape(image_shape: Any) -> tuple[int | None, int, int]:
    try:
        shape = tuple(image_shape)
    except TypeError:
        shape = None
    if (
        shape is None
        or len(shape) not in (2, 3)
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shape)
    ):
        raise ValueError(
            f"image_shape must be a tuple of ints, (H, W) or (n_images, H, W); got {image_shape!r}."
        )
    shape = tuple(int(v) for v in shape)
    if len(shape) == 3 and shape[0] < 1:
        raise ValueError(f"image_shape must have at least one image; got {image_shape!r}.")
    if shape[-1] < 1 or shape[-2] < 1:
        raise ValueError(f"image_shape must have H >= 1 and W >= 1; got {image_shape!r}.")
    if len(shape) == 2:
        return None, shape[0], shape[1]
    return shape


def _check_out(out: Any, shape: tuple[int, int], images: np.ndarray) -> None:
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a NumPy array; got {type(out).__name__}.")
    if out.shape != shape or out.dtype != images.dtype:
        raise ValueError(
            f"out must have shape {shape} and dtype {images.dtype} for these images, "
            f"patch size and stride; got shape {out.shape} and dtype {out.dtype}."
        )
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable.")
    if np.may_share_memory(out, images):
        raise ValueError("out must not share memory with images.")


def _check_weights(weights: Any, n_patches: int) -> np.ndarray:
    arr = np.asarray(weights)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"weights must hold real numbers; got an array of dtype {arr.dtype}.")
    if arr.shape != (n_patches,):
        raise ValueError(
            f"weights must have shape ({n_patches},), one per patch; got shape {arr.shape}."
        )
    w = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError("weights must be finite; got NaN or infinity.")
    if (w < 0).any():
        raise ValueError(f"weights must be non-negative; got a minimum of {w.min()!r}.")
    return w
