"""Input checks at the public boundary.

Arrays are checked here once and leave as C-contiguous arrays of the
compute dtype; kernels trust what they receive.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def check_compute_dtype(dtype: Any) -> type:
    """Resolve the ``dtype`` parameter to ``np.float32`` or ``np.float64``."""
    try:
        resolved = np.dtype(dtype).type
    except TypeError:
        resolved = None
    if resolved not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64; got {dtype!r}.")
    return resolved


def check_matrix(
    X: Any,
    *,
    name: str = "X",
    min_samples: int = 1,
    n_features: int | None = None,
    estimator: str | None = None,
) -> np.ndarray:
    """``X`` as a 2-d array of real numbers (not converted, not checked for
    NaN): the checks every sample matrix passes, with or without missing values.

    ``estimator`` names the fitted model in the message for a wrong number of
    features. Raises ``TypeError`` for sparse input and ``ValueError`` for
    anything else that is not a real (n_samples, n_features) array.
    """
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):  # scipy.sparse matrices and arrays
        raise TypeError(
            f"{name} is a sparse matrix: sparse input is not supported (full covariances "
            "need dense samples); convert it with X.toarray()."
        )
    if X is None:
        raise ValueError(f"{name} is None; pass the samples, an array (n_samples, n_features).")
    n_masked = masked_count(X)
    if n_masked:
        raise ValueError(
            f"{name} is a masked array with {n_masked} masked entries, and this operation needs "
            "complete data (gmmfast never reads the values under a mask as data); fill them "
            f"({name}.filled(value)) or use a method that accepts missing values."
        )
    try:
        arr = np.asarray(np.ma.getdata(X))
    except ValueError:  # NumPy's "inhomogeneous shape" of a ragged list
        raise ValueError(
            f"{name} is ragged (rows of different lengths): it must be a 2-d array "
            "(n_samples, n_features)."
        ) from None
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} must hold real numbers.")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers; got an array of dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-dimensional (n_samples, n_features); got an array "
            f"with {arr.ndim} dimension(s) and shape {arr.shape}. Reshape your data: "
            "a single sample with X.reshape(1, -1), images with X.reshape(len(X), -1)."
        )
    if arr.shape[0] < min_samples:
        raise ValueError(f"{name} has {arr.shape[0]} sample(s); at least {min_samples} needed.")
    if arr.shape[1] == 0:
        raise ValueError(
            f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required."
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features, but {estimator or 'the model'} is expecting "
            f"{n_features} features as input (the number it was fitted with)."
        )
    return arr


def masked_count(X: Any) -> int:
    """Number of masked entries of a NumPy masked array (0 for anything else).

    One rule for masked arrays everywhere: a masked entry is a missing value.
    Methods that marginalise missing values treat it as NaN; every other
    check refuses it, so the value under the mask is never used as data.
    """
    if not isinstance(X, np.ma.MaskedArray):
        return 0
    return int(np.count_nonzero(np.ma.getmaskarray(X)))


def check_array(
    X: Any,
    *,
    dtype: type = np.float64,
    name: str = "X",
    min_samples: int = 1,
    n_features: int | None = None,
    estimator: str | None = None,
) -> np.ndarray:
    """Validate a 2-d numeric sample matrix and return it C-contiguous.

    Integer, boolean, F-ordered and strided inputs are accepted and
    converted; the input itself is never written to (a copy is made when
    the dtype or layout differ, otherwise the result is a read-only view).

    Raises
    ------
    TypeError
        For sparse input.
    ValueError
        For non-numeric dtypes, a wrong number of dimensions, too few
        samples, a wrong number of features, NaN or infinity.
    """
    arr = check_matrix(
        X, name=name, min_samples=min_samples, n_features=n_features, estimator=estimator
    )
    out = np.ascontiguousarray(arr, dtype=dtype)
    if out is arr or np.shares_memory(out, arr):
        out = out.view()
        out.flags.writeable = False
    _check_finite(out, name)
    return out


def _check_finite(arr: np.ndarray, name: str) -> None:
    # One reduction is cheap next to the kernels; locate the culprit only
    # when it fails.
    if np.isfinite(arr.sum(dtype=np.float64)):
        return
    if not np.isfinite(arr).all():
        if np.isnan(arr).any():
            raise ValueError(
                f"{name} contains NaN, and this operation needs complete data; "
                "remove or impute the missing values."
            )
        raise ValueError(f"{name} contains infinity.")
    # The float64 sum overflowed but every value is finite: fine.


def check_random_state(seed: Any) -> np.random.RandomState:
    """Turn ``None``, an int, a RandomState or a Generator into a RandomState."""
    if seed is None:
        return np.random.RandomState()
    if isinstance(seed, np.random.RandomState):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.RandomState(seed.integers(0, 2**32 - 1, dtype=np.uint64))
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if 0 <= int(seed) <= 2**32 - 1:  # what RandomState takes
            return np.random.RandomState(int(seed))
    raise ValueError(
        "random_state must be None, an int in [0, 2**32 - 1], a numpy RandomState or "
        f"Generator; got {seed!r}."
    )


def check_scalar(
    value: Any,
    name: str,
    kind: type | tuple[type, ...],
    *,
    min_value: float | None = None,
    include_min: bool = True,
    max_value: float | None = None,
) -> None:
    """Check a scalar hyper-parameter's type and bounds (both inclusive unless
    ``include_min=False``)."""
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{name} must be of type {_kind_name(kind)}; got {value!r}.")
    if min_value is not None:
        bad = value < min_value if include_min else value <= min_value
        if bad:
            op = ">=" if include_min else ">"
            raise ValueError(f"{name} must be {op} {min_value}; got {value!r}.")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}; got {value!r}.")
    # An int is finite (and np.isfinite cannot take one beyond int64).
    if not isinstance(value, numbers.Integral) and isinstance(value, numbers.Real):
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite; got {value!r}.")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def check_clip(clip: Any, name: str = "clip") -> tuple[float, float] | None:
    """``None``, or ``(low, high)`` as floats with ``low < high``; either bound may be
    infinite (clipping one side only), neither NaN. The one rule for every ``clip``."""
    if clip is None:
        return None
    try:
        low, high = (float(v) for v in clip)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be None or a pair (low, high) of numbers; got {clip!r}."
        ) from None
    if not low < high:  # also false when either is NaN
        raise ValueError(
            f"{name} must be a pair (low, high) of numbers, neither NaN, with low < high; got {clip!r}."
        )
    return low, high


def check_seed(random_state: Any, name: str = "random_state") -> np.random.RandomState:
    """:func:`check_random_state` with scikit-learn's rule for ints and the argument named.

    An int seed must lie in ``[0, 2**32 - 1]`` (what ``RandomState`` accepts;
    scikit-learn's ``check_random_state`` passes it on and NumPy's message
    names no argument); bools, floats, strings and other objects are refused.
    """
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= int(random_state) <= 2**32 - 1:
            raise ValueError(
                f"{name} must be None, an int in [0, 2**32 - 1], a numpy RandomState or "
                f"Generator; got {random_state!r}."
            )
    elif random_state is not None and not isinstance(
        random_state, (np.random.RandomState, np.random.Generator)
    ):
        raise ValueError(
            f"{name} must be None, an int in [0, 2**32 - 1], a numpy RandomState or "
            f"Generator; got {random_state!r}."
        )
    return check_random_state(random_state)


def check_flag(value: Any, name: str) -> bool:
    """A boolean parameter: True or False (NumPy's bools too), never a truthy stand-in
    such as ``'no'`` or ``2``, which would silently mean True."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def check_verbose(value: Any, name: str = "verbose") -> int:
    """``verbose``: an int >= 0 (a bool counts as 0 or 1, scikit-learn's habit)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value!r}.")
    return int(value)
