"""k-means (k-means++ seeding and Lloyd iterations) on gmmfast's own kernels.

Used to initialise EM. Distances come from the k-means kernel
(:mod:`gmmfast._kernels._kmeans`): |x|^2 - 2 x.c + |c|^2 with the cross
terms from one GEMM per chunk, in the samples' dtype. A Lloyd iteration is
one pass over the data that assigns every sample and accumulates the new
centres' counts and sums in the same sweep.

The expansion is only as good as the working dtype allows. Squares must
neither overflow nor underflow it (float32 overflows from 1.8e19,
underflows below 1e-19), and data far from the origin compared with its
extent loses the distances to cancellation (float32 data around 1e6 with a
spread of 10: |x|^2 is 1e12, its rounding error 1e5, the distances 1e2).
So k-means runs on ``(X - shift) * 2**e`` (:func:`prepared`): a shift
towards the data's centre where the offset would cost more than a sixth of
the dtype's bits, and a power of two that brings the largest norm near 1
where it lies outside :data:`SAFE_NORMS`. Both are exact (the shift only
on features where Sterbenz's lemma makes the subtraction exact) and
k-means is equivariant to them, so the labels are those of the data as
given, with the accuracy of data near the origin; the centres and the
inertia are mapped back in float64. Ordinary data is used as it is.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np

from .._kernels import _kmeans, check_status
from ..utils._threads import (
    chunk_size_for,
    effective_n_threads,
    single_threaded_blas,
    threads_for_work,
)
from ..utils._validation import check_array, check_scalar, check_seed

#: The largest sample norm for which k-means runs on the data unscaled; outside,
#: on the data times a power of two (squares within 2**-80 .. 2**80 fit float32).
SAFE_NORMS = (2.0**-40, 2.0**40)
#: Shift the data when its offset exceeds its extent by more than this (an offset
#: ratio r costs about 2 log2(r) bits of the distances: a sixth of the mantissa).
OFFSET_RATIOS = {np.dtype(np.float32): 2.0**4, np.dtype(np.float64): 2.0**9}


def frame(X: np.ndarray) -> tuple[np.ndarray | None, int]:
    """``(shift, e)`` of :func:`prepared` (shift None: none; two reductions, no copy).

    The shift is the per-feature midrange in X's dtype, on features whose
    values lie within a factor of two of it (so ``x - shift`` is exact),
    and only when the offset is large against the extent.
    """
    if X.size == 0:
        return None, 0
    lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return None, 0
    mid, half = 0.5 * lo + 0.5 * hi, 0.5 * hi - 0.5 * lo
    shift = None
    ratio = OFFSET_RATIOS.get(X.dtype, OFFSET_RATIOS[np.dtype(np.float64)])
    if np.abs(mid).max() > ratio * half.max():
        shift = np.where(np.abs(mid) >= 2.0 * half, mid, 0.0).astype(X.dtype)
        lo, hi = lo - shift, hi - shift  # the shifted extremes, exactly
    peak = max(float(np.abs(lo).max()), float(np.abs(hi).max()))
    if peak == 0.0:
        return shift, 0
    root_d = np.sqrt(X.shape[1])  # peak * root_d bounds the norms
    if SAFE_NORMS[0] <= peak <= SAFE_NORMS[1] / root_d:
        return shift, 0
    return shift, -(int(np.frexp(peak)[1]) + int(np.ceil(np.log2(root_d))))


def prepared(X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``(Xp, shift, e)`` with ``Xp = (X - shift) * 2**e`` exactly; X itself when neither
    applies (see the module docstring).

    The power of two is applied in steps of at most 2**100, each a float32
    normal, so that factors float32 (or float64) cannot hold still scale
    exactly.
    """
    shift, exponent = frame(X)
    if shift is None and exponent == 0:
        return X, None, 0
    out = np.array(X, order="C", copy=True)
    if shift is not None:
        out -= shift
    left = exponent
    while left:
        step = max(-100, min(100, left))
        out *= X.dtype.type(np.ldexp(1.0, step))
        left -= step
    return out, shift, exponent


def to_frame(centers: np.ndarray, shift: np.ndarray | None, exponent: int) -> np.ndarray:
    """Centres (float64) of the data as given, in :func:`prepared`'s frame."""
    if shift is not None:
        centers = centers - shift
    return np.ldexp(centers, exponent)


def from_frame(centers: np.ndarray, shift: np.ndarray | None, exponent: int) -> np.ndarray:
    """Centres found in :func:`prepared`'s frame, back in the data's (float64)."""
    centers = np.ldexp(centers, -exponent)
    return centers if shift is None else centers + shift


def _centers_for(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres in X's dtype and their squared norms (float64, of the cast values)."""
    cast = np.ascontiguousarray(centers, dtype=X.dtype)
    return cast, np.einsum("kd,kd->k", cast, cast, dtype=np.float64)


def _threads(X: np.ndarray, n_centers: int, n_threads: int) -> tuple[int, int]:
    n_threads = threads_for_work(n_threads, 2.0 * X.shape[0] * n_centers * max(X.shape[1], 1))
    return n_threads, chunk_size_for(len(X), n_threads)


def squared_distances(X: np.ndarray, centers: np.ndarray, *, n_threads: int) -> np.ndarray:
    """(n_samples, n_centers) squared Euclidean distances, float64."""
    out = np.empty((len(X), len(centers)))
    _assign(X, centers, n_threads=n_threads, all_distances=out, accumulate=False)
    return out


def nearest_centers(
    X: np.ndarray, centers: np.ndarray, *, n_threads: int, accumulate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(labels, distances, counts, sums)``: each sample's nearest centre and its
    squared distance; with ``accumulate``, the per-cluster count and float64 sum of
    the samples assigned to it (else None)."""
    return _assign(X, centers, n_threads=n_threads, all_distances=None, accumulate=accumulate)


def _assign(X, centers, *, n_threads, all_distances, accumulate):
    cast, norms = _centers_for(X, centers)
    n_samples, n_features = X.shape
    labels = np.empty(n_samples, dtype=np.intc)
    distances = np.empty(n_samples)
    if all_distances is None:
        all_distances = np.empty((0, len(cast)))
    n_threads, chunk = _threads(X, len(cast), n_threads)
    slots = max(1, n_threads) if accumulate else 0
    counts = np.zeros((slots, len(cast)))
    sums = np.zeros((slots, len(cast), n_features))
    with single_threaded_blas():
        check_status(
            _kmeans.nearest_centers(
                X,
                cast,
                norms,
                labels,
                distances,
                all_distances,
                counts,
                sums,
                accumulate,
                chunk,
                n_threads,
            ),
            "nearest_centers",
        )
    if not accumulate:
        return labels, distances, None, None
    return labels, distances, counts.sum(axis=0), sums.sum(axis=0)


def kmeans_plusplus(
    X: np.ndarray, n_clusters: int, random_state: np.random.RandomState, *, n_threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, with local trials).

    Each new centre is the best, by resulting potential, of
    ``2 + log(k)`` candidates drawn with probability proportional to the
    squared distance to the nearest chosen centre.

    Returns
    -------
    centers : (n_clusters, n_features) float64
    indices : (n_clusters,) int, rows of X used as centres
    """
    original = X
    X = prepared(X)[0]  # the potentials neither overflow nor cancel
    n_samples = len(X)
    n_trials = 2 + int(np.log(n_clusters))
    indices = np.empty(n_clusters, dtype=np.intp)
    indices[0] = random_state.randint(n_samples)
    closest = squared_distances(X, X[indices[:1]].astype(np.float64), n_threads=n_threads)[:, 0]
    potential = closest.sum()
    for c in range(1, n_clusters):
        if potential > 0:
            draws = random_state.uniform(size=n_trials) * potential
            candidates = np.searchsorted(np.cumsum(closest), draws)
            np.clip(candidates, None, n_samples - 1, out=candidates)
        else:  # every point sits on a centre: any choice is as good
            candidates = random_state.randint(n_samples, size=n_trials)
        cand_dist = squared_distances(X, X[candidates].astype(np.float64), n_threads=n_threads)
        np.minimum(cand_dist, closest[:, None], out=cand_dist)
        potentials = cand_dist.sum(axis=0)
        best = int(np.argmin(potentials))
        indices[c] = candidates[best]
        closest = cand_dist[:, best]
        potential = potentials[best]
    return original[indices].astype(np.float64), indices


def kmeans(
    X: np.ndarray,
    n_clusters: int,
    random_state: np.random.RandomState,
    *,
    n_threads: int,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm from a k-means++ seeding.

    Stops when no label changes or the centres move by less than ``tol``
    times the mean per-feature variance (squared shift, summed). An empty
    cluster is moved onto the point farthest from its centre.

    Returns
    -------
    labels : (n_samples,) int
    centers : (n_clusters, n_features) float64
    """
    X, shift, exponent = prepared(X)  # the distances neither overflow nor cancel
    labels, centers = _lloyd(
        X, n_clusters, random_state, n_threads=n_threads, max_iter=max_iter, tol=tol
    )
    return labels, from_frame(centers, shift, exponent)


def _lloyd(X, n_clusters, random_state, *, n_threads, max_iter, tol):
    centers, _ = kmeans_plusplus(X, n_clusters, random_state, n_threads=n_threads)
    threshold = tol * float(np.mean(np.var(X, axis=0, dtype=np.float64)))
    previous = None
    for _ in range(max_iter):
        labels, distances, counts, sums = nearest_centers(
            X, centers, n_threads=n_threads, accumulate=True
        )
        if previous is not None and np.array_equal(labels, previous):
            return labels.astype(np.intp), centers  # the labels of these very centres
        previous = labels
        new_centers = centers.copy()
        filled = counts > 0
        new_centers[filled] = sums[filled] / counts[filled, None]
        if not filled.all():
            far = np.argsort(distances)[::-1]
            for j, point in zip(np.flatnonzero(~filled), far):
                new_centers[j] = X[point]
        shift = float(((new_centers - centers) ** 2).sum())
        centers = new_centers
        if shift <= threshold:
            break
    labels = nearest_centers(X, centers, n_threads=n_threads)[0]
    return labels.astype(np.intp), centers


def k_means(
    X: Any,
    n_clusters: int,
    *,
    random_state: Any = None,
    n_threads: int | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means clustering (k-means++ seeding, then Lloyd's algorithm) on gmmfast's kernels.

    The k-means that starts :class:`GaussianMixture`, for comparisons and
    quick clusterings: round clusters split half-way between centres.
    Returns in scikit-learn's ``k_means`` order.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Complete samples (float32 stays float32).
    n_clusters : int
    random_state : int, RandomState, Generator or None, default=None
    n_threads : int or None, default=None
        OpenMP threads (None: all cores, sized to the work).
    max_iter : int, default=300
        Most Lloyd iterations.
    tol : float, default=1e-4
        Stop when the centres move (squared, summed) by less than ``tol``
        times the mean per-feature variance; Lloyd also stops when no
        label changes. 0 runs until then or ``max_iter``.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float64
    labels : ndarray of shape (n_samples,)
    inertia : float
        Sum of squared distances of the samples to their centre.

    Raises
    ------
    ValueError
        Bad ``X`` (NaN, not 2-d, fewer samples than clusters) or parameters.

    Warns
    -----
    UserWarning
        When fewer distinct clusters than ``n_clusters`` are found (fewer
        distinct points than clusters): some centres then have no samples.

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast.mixture import k_means
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> centers, labels, inertia = k_means(X, 2, random_state=0)
    >>> bool(labels[0] == labels[1] != labels[2] == labels[3]), round(inertia, 4)
    (True, 0.01)
    """
    _check_count(n_clusters, "n_clusters")
    _check_count(max_iter, "max_iter")
    check_scalar(tol, "tol", (int, float, np.integer, np.floating), min_value=0)
    random_state = check_seed(random_state)
    threads = effective_n_threads(n_threads)
    dtype = np.float32 if getattr(X, "dtype", None) == np.float32 else np.float64
    X = check_array(X, dtype=dtype)
    if n_clusters > len(X):
        raise ValueError(
            f"n_clusters={n_clusters} is more than the {len(X)} sample(s) of X; at least "
            f"{n_clusters} samples are needed."
        )
    labels, centers = kmeans(
        X, int(n_clusters), random_state, n_threads=threads, max_iter=int(max_iter), tol=float(tol)
    )
    inertia = _inertia(X, centers, n_threads=threads)
    found = len(np.unique(labels))
    if found < n_clusters:
        warnings.warn(
            f"k_means found {found} distinct clusters, fewer than n_clusters={n_clusters}: "
            "the data have fewer distinct points; some centres have no samples.",
            UserWarning,
            stacklevel=2,
        )
    return centers, labels, inertia


def _check_count(value: Any, name: str) -> None:
    """A positive int of any size (check_scalar's finiteness test fails on ints beyond int64)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive int; got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value!r}.")


def _inertia(X: np.ndarray, centers: np.ndarray, *, n_threads: int) -> float:
    """Sum of squared distances to the nearest centre, computed in :func:`prepared`'s frame.

    Raises ``ValueError`` when the true value is beyond float64's range (float64
    data above about 1e154 or below 1e-154): never inf, NaN or a flushed 0.
    """
    Xp, shift, exponent = prepared(X)
    _, distances, _, _ = nearest_centers(
        Xp, to_frame(centers, shift, exponent), n_threads=n_threads
    )
    total = float(distances.sum(dtype=np.float64))
    with np.errstate(over="ignore", under="ignore"):  # checked below
        inertia = float(np.ldexp(total, -2 * exponent))
    if not np.isfinite(inertia) or (total > 0 and inertia < np.finfo(np.float64).tiny):
        raise ValueError(
            f"the inertia of X, about 2**{int(np.frexp(total)[1]) - 2 * exponent}, is beyond "
            "float64's range (X's values are too large or too small to square); rescale X "
            "(k-means is unchanged by multiplying X by a constant)."
        )
    return inertia
