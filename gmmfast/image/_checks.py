"""Input checks shared by the image modules."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_positive_sequence(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if (
        arr is None
        or arr.ndim != 1
        or len(arr) == 0
        or not np.all(np.isfinite(arr))
        or np.any(arr <= 0)
    ):
        raise ValueError(
            f"{name} must be a non-empty sequence of positive numbers; got {values!r}."
        )
    return arr


def check_kernel(kernel: Any) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float64) if np.asarray(kernel).dtype.kind in "biuf" else None
    if k is None or k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError("kernel must be a 2-d numeric array with odd sides.")
    if not np.isfinite(k).all():
        raise ValueError("kernel contains NaN or infinity.")
    return k


def check_images(images: Any, name: str = "images") -> np.ndarray:
    """Images as a C-contiguous float64 batch (n, H, W), intensities on gmmfast's scale.

    Float images are taken as they are (the denoiser's defaults, e.g. ``clip``,
    assume [0, 1]). Unsigned integer images are scaled as their dtype implies,
    scikit-image's convention: uint8 by 1/255, uint16 by 1/65535 (so 255 is 1.0).
    Signed integers and booleans have no such range and are refused with the
    reason (an int64 array is what a Python list of numbers becomes).
    """
    if isinstance(images, np.ma.MaskedArray) and np.ma.getmaskarray(images).any():
        raise ValueError(
            f"{name} is a masked array with masked pixels: restoration needs every pixel "
            "(to fill missing pixels, see GMMClassifier.impute / GaussianMixture.impute)."
        )
    arr = np.asarray(np.ma.getdata(images))
    top = intensity_range(arr.dtype, name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must have shape (n, H, W) or (H, W); got {np.shape(images)}. "
            "Colour images are not supported: denoise each channel, or convert to grey."
        )
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {np.shape(images)}.")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if top != 1.0:
        out = out / top  # a new array: the input is never written
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contain NaN or infinity.")
    return out


def intensity_range(dtype: np.dtype, name: str = "images") -> float:
    """The value that images of ``dtype`` divide by to reach gmmfast's intensity scale
    (divided, not multiplied by a reciprocal: 255 / 255 is exactly 1)."""
    kind = np.dtype(dtype).kind
    if kind == "u":
        return float(np.iinfo(dtype).max)
    if kind == "f":
        return 1.0
    if kind == "b":
        raise ValueError(
            f"{name} are boolean: a restoration needs intensities; convert them to float "
            "(e.g. images.astype(float))."
        )
    if kind == "i":
        raise ValueError(
            f"{name} have the signed integer dtype {np.dtype(dtype)}, which implies no "
            "intensity range (uint8 means 0-255, uint16 0-65535; a Python list of numbers "
            "becomes int64): pass uint8/uint16 images, or float images scaled to [0, 1] "
            "(e.g. images / 255)."
        )
    raise ValueError(f"{name} must hold real numbers; got dtype {np.dtype(dtype)}.")


def to_input_dtype(restored: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Restored float images back in the input's dtype: unsigned integer images are
    rescaled, rounded and clipped to their dtype's range; float images stay float64."""
    if np.dtype(dtype).kind != "u":
        return restored
    top = float(np.iinfo(dtype).max)
    return np.clip(np.rint(restored * top), 0.0, top).astype(dtype)


def check_intensity_range(images: np.ndarray, clip: Any, name: str = "images") -> None:
    """Float images far outside the denoiser's intensity range are refused.

    A prior of intensities in ``clip`` (default [0, 1]) applied to images of
    another scale (0-255 floats, say) gives a white or black image without a
    word. Noisy images legitimately leave the range a little, so the test is
    robust: the 1st and 99th percentiles must lie within two ranges' widths of
    it. ``clip=None`` opts out (the caller restores any range).
    """
    if clip is None:
        return
    low, high = (float(v) for v in clip)
    width = high - low
    if not np.isfinite(width):
        return
    q_low, q_high = np.percentile(images, [1.0, 99.0])
    if q_high > high + 2.0 * width or q_low < low - 2.0 * width:
        raise ValueError(
            f"{name} hold intensities from {q_low:.4g} to {q_high:.4g} (1st and 99th "
            f"percentiles), far outside the denoiser's range clip=({low:g}, {high:g}): scale "
            "them to it (e.g. images / 255 for 8-bit values, or pass uint8 images), or set "
            "clip=None to restore images of any range."
        )
