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


def check_images(images: Any) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"images must hold real numbers; got dtype {arr.dtype}.")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"images must have shape (n, H, W) or (H, W); got {np.shape(images)}.")
    if arr.size == 0:
        raise ValueError(f"images must not be empty; got shape {np.shape(images)}.")
    if not np.isfinite(arr).all():
        raise ValueError("images contain NaN or infinity.")
    return np.ascontiguousarray(arr, dtype=np.float64)
