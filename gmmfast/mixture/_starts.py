"""Kinds of start for EM, and the rotation through them that ``init_params='diverse'`` makes.

Why several kinds: EM climbs to the nearest local maximum, so ``n_init``
copies of one kind of start tend to land in the same trap. The classic one
is k-means' answer on elongated clusters: on parallel stripes, k-means cuts
across them (it only knows round clusters), and EM started from that cut
stays there. The rotation therefore adds starts that do not share k-means'
bias: mclust's model-based agglomeration (here of k-means micro-clusters,
:mod:`gmmfast.mixture._agglomerative`), which chains small groups along
thin clusters, and seeds that carry the whole data's covariance instead of
a point mass ("broad" seeds: k-means++ and random samples), from which EM
can grow components in any direction. The best lower bound picks among
them, as for any ``n_init``.

The first start of the rotation is plain k-means, so ``n_init=1`` fits
exactly as ``init_params='kmeans'`` (the kind of start scikit-learn uses).
"""

from __future__ import annotations

import numpy as np

from . import _gaussian
from ._agglomerative import agglomerative_labels
from ._kmeans import kmeans, kmeans_plusplus

#: ``init_params='diverse'``: initialisation i uses ``DIVERSE_STARTS[i % 4]``.
DIVERSE_STARTS = ("kmeans", "agglomerative", "k-means++-broad", "random_from_data-broad")

#: Kinds of start that are the M-step of initial responsibilities.
RESPONSIBILITY_STARTS = ("kmeans", "k-means++", "random", "random_from_data", "agglomerative")


def start_kind(init_params: str, init_index: int) -> str:
    """The kind of start of initialisation ``init_index`` (0-based)."""
    if init_params == "diverse":
        return DIVERSE_STARTS[init_index % len(DIVERSE_STARTS)]
    return init_params


def initial_parameters(
    X: np.ndarray,
    kind: str,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    random_state: np.random.RandomState,
    *,
    n_threads: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nk, means, covariances)`` of one start of the given kind.

    ``nk`` sums to ``len(X)`` (weights are ``nk / len(X)``). Responsibility
    starts (:data:`RESPONSIBILITY_STARTS`) take the M-step of their
    responsibilities; broad starts (``'k-means++-broad'``,
    ``'random_from_data-broad'``) put equal weights and the data's own
    covariance (in the model's ``covariance_type``) on every seed.
    """
    if kind in RESPONSIBILITY_STARTS:
        resp = initial_responsibilities(
            X, kind, n_components, covariance_type, random_state, n_threads=n_threads
        )
        return _gaussian.estimate_gaussian_parameters(
            X, resp, reg_covar, covariance_type, n_threads=n_threads
        )
    if kind == "k-means++-broad":
        means, _ = kmeans_plusplus(X, n_components, random_state, n_threads=n_threads)
    elif kind == "random_from_data-broad":
        means = X[random_state.choice(len(X), size=n_components, replace=False)]
    else:
        raise ValueError(f"unknown kind of start {kind!r}.")
    _, _, spread = _data_covariance(X, covariance_type, reg_covar, n_threads=n_threads)
    covariances = spread if covariance_type == "tied" else np.repeat(spread, n_components, axis=0)
    nk = np.full(n_components, len(X) / n_components)
    return nk, np.array(means, dtype=np.float64), covariances


def initial_responsibilities(
    X: np.ndarray,
    kind: str,
    n_components: int,
    covariance_type: str,
    random_state: np.random.RandomState,
    *,
    n_threads: int,
) -> np.ndarray:
    """Responsibilities (n_samples, n_components) of a responsibility start."""
    n_samples, K = len(X), int(n_components)
    if kind == "random":
        resp = random_state.uniform(size=(n_samples, K))
        resp /= resp.sum(axis=1, keepdims=True)
        return resp
    resp = np.zeros((n_samples, K))
    if kind == "kmeans":
        labels, _ = kmeans(X, K, random_state, n_threads=n_threads)
        resp[np.arange(n_samples), labels] = 1.0
    elif kind == "agglomerative":
        labels = agglomerative_labels(X, K, covariance_type, random_state, n_threads=n_threads)
        resp[np.arange(n_samples), labels] = 1.0
    elif kind == "k-means++":
        _, indices = kmeans_plusplus(X, K, random_state, n_threads=n_threads)
        resp[indices, np.arange(K)] = 1.0
    elif kind == "random_from_data":
        indices = random_state.choice(n_samples, size=K, replace=False)
        resp[indices, np.arange(K)] = 1.0
    else:
        raise ValueError(f"unknown kind of start {kind!r}.")
    return resp


def _data_covariance(
    X: np.ndarray, covariance_type: str, reg_covar: float, *, n_threads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one-component fit ``(nk, mean, covariance)`` of ``X`` in ``covariance_type``'s shape."""
    return _gaussian.estimate_gaussian_parameters(
        X, np.ones((len(X), 1)), reg_covar, covariance_type, n_threads=n_threads
    )
