"""Class labels: the one check every classifier path (in memory, streams, Dask) applies."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_labels(y: Any, n_samples: int) -> np.ndarray:
    """``y`` as a 1-d array of ``n_samples`` numbers or strings (``ValueError`` naming
    what is wrong: shape, length, NaN, None, or values of no sortable kind)."""
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-dimensional; got shape {labels.shape}.")
    if len(labels) != n_samples:
        raise ValueError(f"y has {len(labels)} labels but X has {n_samples} samples.")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError("y contains NaN or infinity.")
    if labels.dtype.kind == "O":
        if any(v is None for v in labels):
            raise ValueError("y contains None; every sample needs a class label.")
        try:
            labels = (
                labels.astype(str)
                if all(isinstance(v, str) for v in labels)
                else labels.astype(np.float64)
            )
        except (TypeError, ValueError) as exc:
            raise ValueError("y must hold numbers or strings.") from exc
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            raise ValueError("y contains NaN or infinity.")
    if labels.dtype.kind not in "biufU":
        raise ValueError(f"y must hold numbers or strings; got dtype {labels.dtype}.")
    return labels
