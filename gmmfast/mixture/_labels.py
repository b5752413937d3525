"""Class labels: the one check every classifier path (in memory, streams, Dask) applies."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np


def check_labels(y: Any, n_samples: int, name: str = "y") -> np.ndarray:
    """``y`` as a 1-d array of ``n_samples`` numbers or strings (``ValueError`` naming
    ``name`` and what is wrong: shape, length, NaN, None, or values of no sortable kind)."""
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional; got shape {labels.shape}.")
    if len(labels) != n_samples:
        raise ValueError(f"{name} has {len(labels)} labels but X has {n_samples} samples.")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    if labels.dtype.kind == "O":
        if any(v is None for v in labels):
            raise ValueError(f"{name} contains None; every sample needs a class label.")
        try:
            labels = (
                labels.astype(str)
                if all(isinstance(v, str) for v in labels)
                else labels.astype(np.float64)
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must hold numbers or strings.") from exc
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            raise ValueError(f"{name} contains NaN or infinity.")
    if labels.dtype.kind not in "biufU":
        raise ValueError(f"{name} must hold numbers or strings; got dtype {labels.dtype}.")
    return labels


def check_classes(classes: Any) -> np.ndarray:
    """``partial_fit``'s ``classes``: a list or array of labels, as sorted distinct labels.

    Generators, iterators and sets are refused, as the vae parameters refuse
    them: a generator is empty once read, and a set has no order to report.
    """
    if (
        isinstance(classes, (str, bytes, Mapping, Iterator))
        or not hasattr(classes, "__len__")
        or not hasattr(classes, "__getitem__")
    ):
        got = (
            f"a {type(classes).__name__}, which can be read only once"
            if isinstance(classes, Iterator)
            else f"{type(classes).__name__} {classes!r:.60}"
        )
        raise ValueError(
            f"classes must be a list or array of every class label; got {got}: pass a list."
        )
    n_labels = len(classes) if np.ndim(classes) else 0  # a 0-d array: refused as not 1-d
    return np.unique(check_labels(classes, n_labels, "classes"))


def check_samples_given(X: Any, name: str = "X") -> None:
    """``X`` is not None: named here, before any array conversion hides the mistake."""
    if X is None:
        raise ValueError(
            f"{name} is None; pass the samples as an array of shape (n_samples, n_features)."
        )
