"""k-means (k-means++ seeding and Lloyd iterations) on gmmfast's own kernels.

Used to initialise EM. Squared distances come from the diagonal E-step
kernel with unit precisions (log N(x | c, I) = -0.5 (D log 2 pi + |x - c|^2)),
and centre updates from the M-step's weighted-sum kernel.
"""

from __future__ import annotations

import numpy as np

from ._gaussian import MODE_WEIGHTED_LOG_PROB, estimate_log_prob, weighted_means


def squared_distances(X: np.ndarray, centers: np.ndarray, *, n_threads: int) -> np.ndarray:
    """(n_samples, n_centers) squared Euclidean distances, float64."""
    n_centers, n_features = centers.shape
    log_prob, _ = estimate_log_prob(
        X,
        np.ones(n_centers),
        centers,
        np.ones((n_centers, n_features)),
        "diag",
        mode=MODE_WEIGHTED_LOG_PROB,
        n_threads=n_threads,
    )
    dist = -2.0 * log_prob - n_features * np.log(2.0 * np.pi)
    return np.maximum(dist, 0.0, out=dist)


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
    return X[indices].astype(np.float64), indices


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
    centers, _ = kmeans_plusplus(X, n_clusters, random_state, n_threads=n_threads)
    threshold = tol * float(np.mean(np.var(X, axis=0, dtype=np.float64)))
    labels = None
    one_hot = np.zeros((len(X), n_clusters))
    rows = np.arange(len(X))
    for _ in range(max_iter):
        dist = squared_distances(X, centers, n_threads=n_threads)
        new_labels = np.argmin(dist, axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        one_hot[:] = 0.0
        one_hot[rows, labels] = 1.0
        counts, sums = weighted_means(X, one_hot, n_threads=n_threads)
        new_centers = centers.copy()
        filled = counts > 0
        new_centers[filled] = sums[filled] / counts[filled, None]
        if not filled.all():
            far = np.argsort(dist[rows, labels])[::-1]
            for j, point in zip(np.flatnonzero(~filled), far):
                new_centers[j] = X[point]
        shift = float(((new_centers - centers) ** 2).sum())
        centers = new_centers
        if shift <= threshold:
            break
    labels = np.argmin(squared_distances(X, centers, n_threads=n_threads), axis=1)
    return labels, centers
