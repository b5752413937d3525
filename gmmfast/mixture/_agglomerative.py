"""Model-based agglomeration of k-means micro-clusters: a start for EM that finds elongated clusters.

mclust starts EM from a model-based hierarchical clustering (Banfield and
Raftery, 1993; Fraley, 1998): begin with tiny groups and repeatedly merge
the pair whose union loses the least classification likelihood under a
Gaussian model, i.e. the smallest increase of
``n log det(S)`` (``S`` the group's maximum-likelihood covariance). Unlike
k-means (Ward's criterion, which only knows round groups), this criterion
happily chains small groups along a thin, long cluster.

Here the tiny groups are k-means micro-clusters (centres from a few Lloyd
passes on a sample, every sample then assigned to its nearest) (``10 * K`` of them, at
most 500, and fewer in more dimensions so that
the O(M^2) determinants stay within :data:`MERGE_FLOP_BUDGET`; never fewer
than K), which keeps the merging at O(M^2) small determinants
whatever the number of samples. A micro-cluster with few points has a
singular covariance, so every ``S`` gets a ridge of 1% of the data's
variance shrunk to the size of one micro-cluster (a weak prior, as mclust's
conjugate prior does). Beyond :data:`FULL_CRITERION_MAX_FEATURES` features
the criterion uses diagonal covariances (O(D) per pair instead of O(D^3)).

The merges reuse the centred statistics' exact union
(:meth:`SufficientStats.combine`'s Chan-Golub-LeVeque formula).
"""

from __future__ import annotations

import numpy as np

from ._kmeans import kmeans, nearest_centers, prepared

#: Micro-clusters per component.
MICRO_CLUSTERS_PER_COMPONENT = 10
#: The micro-clusters' k-means: a sample of this many rows per micro-cluster (at least
#: MIN_MICRO_SAMPLE), and this many Lloyd passes.
MICRO_SAMPLE_PER_CLUSTER = 50
MIN_MICRO_SAMPLE = 10_000
MICRO_LLOYD_ITERATIONS = 10
#: At most this many micro-clusters (M x M pairwise costs; M merges, each an argmin over them).
MAX_MICRO_CLUSTERS = 500
#: Flops the pair costs may take (about a second): fewer micro-clusters in more dimensions.
MERGE_FLOP_BUDGET = 2e9
#: Above this many features the merge criterion uses diagonal covariances.
FULL_CRITERION_MAX_FEATURES = 64
#: The ridge: this fraction of the data's variance at one micro-cluster's scale.
RIDGE_FRACTION = 1e-2


def agglomerative_labels(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    random_state: np.random.RandomState,
    *,
    n_threads: int,
) -> np.ndarray:
    """Labels in ``range(n_components)`` from merging k-means micro-clusters.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    n_components : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        'full' and 'tied' merge by ``log det`` of full covariances (diagonal
        beyond :data:`FULL_CRITERION_MAX_FEATURES` features), 'diag' by the
        diagonal, 'spherical' by the mean variance.
    random_state : RandomState
        Seeds the micro-clusters' k-means.
    n_threads : int
    """
    # Shifted and scaled exactly: the merge order is unchanged, no distance overflows or cancels.
    X = prepared(X)[0]
    n_samples, n_features = X.shape
    K = int(n_components)
    shape = covariance_type
    if covariance_type in ("full", "tied") and n_features > FULL_CRITERION_MAX_FEATURES:
        shape = "diag"
    if shape == "tied":
        shape = "full"
    wanted = MICRO_CLUSTERS_PER_COMPONENT * K
    # The merging evaluates about 1.5 M^2 pair costs: keep them within the budget.
    per_pair = n_features**3 / 3.0 + n_features**2 if shape == "full" else 4.0 * n_features
    affordable = int(np.sqrt(MERGE_FLOP_BUDGET / per_pair))
    n_micro = min(n_samples, max(min(wanted, MAX_MICRO_CLUSTERS, affordable), K))
    micro = _micro_clusters(X, n_micro, random_state, n_threads=n_threads)
    counts, means, scatter = _micro_statistics(X, micro, n_micro, shape)
    occupied = counts > 0  # k-means may leave a centre without samples
    counts, means, scatter = counts[occupied], means[occupied], scatter[occupied]
    relabel = np.full(n_micro, -1)
    relabel[occupied] = np.arange(occupied.sum())
    variance = np.var(X, axis=0, dtype=np.float64)
    # Constant features would give log(0): they get a floor far below any real spread.
    variance = np.maximum(variance, 1e-12 * max(float(variance.max()), np.finfo(np.float64).tiny))
    ridge = RIDGE_FRACTION * variance / max(len(counts), 1) ** (2.0 / n_features)
    groups = _merge(counts, means, scatter, shape, ridge, K)
    return groups[relabel[micro]]


def _micro_clusters(
    X: np.ndarray, n_micro: int, random_state: np.random.RandomState, *, n_threads: int
) -> np.ndarray:
    """Labels of small local groups: k-means centres from a sample, every sample to its nearest.

    The groups need to be small and local, not a converged k-means: so the
    centres come from a few Lloyd passes on a sample of at most
    ``max(MICRO_SAMPLE_PER_CLUSTER * n_micro, MIN_MICRO_SAMPLE)`` rows, and
    all samples are then assigned in one pass.
    """
    size = min(len(X), max(MICRO_SAMPLE_PER_CLUSTER * n_micro, MIN_MICRO_SAMPLE))
    sample = X
    if size < len(X):
        sample = X[np.sort(random_state.choice(len(X), size=size, replace=False))]
    labels, centers = kmeans(
        sample, n_micro, random_state, n_threads=n_threads, max_iter=MICRO_LLOYD_ITERATIONS
    )
    if sample is X:
        return labels
    labels, _, _, _ = nearest_centers(X, centers, n_threads=n_threads)
    return labels.astype(np.intp)


def _micro_statistics(
    X: np.ndarray, labels: np.ndarray, n_groups: int, shape: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts, means and centred scatter (D x D for 'full', D otherwise) per group.

    One group at a time (its rows in float64), so the extra memory is one
    group's rows, not copies of all of ``X``.
    """
    n_features = X.shape[1]
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_groups + 1))
    counts = np.diff(bounds).astype(np.float64)
    means = np.zeros((n_groups, n_features))
    if shape == "full":
        scatter = np.zeros((n_groups, n_features, n_features))
    else:
        scatter = np.zeros((n_groups, n_features))
    for g in np.flatnonzero(counts):
        rows = np.asarray(X[order[bounds[g] : bounds[g + 1]]], dtype=np.float64)
        means[g] = rows.mean(axis=0)
        rows -= means[g]
        scatter[g] = rows.T @ rows if shape == "full" else np.einsum("ij,ij->j", rows, rows)
    return counts, means, scatter


def _cost(counts: np.ndarray, scatter: np.ndarray, shape: str, ridge: np.ndarray) -> np.ndarray:
    """``n log det(S + ridge)`` of groups (vectorised over the first axis)."""
    n = counts.reshape(-1)
    if shape == "full":
        cov = scatter / n[:, None, None]
        cov = cov + np.diag(ridge)
        return n * np.linalg.slogdet(cov)[1]
    var = scatter / n[:, None] + ridge
    if shape == "spherical":
        return n * var.shape[1] * np.log(var.mean(axis=1))
    return n * np.log(var).sum(axis=1)


def _union(
    na: float,
    ma: np.ndarray,
    sa: np.ndarray,
    nb: np.ndarray,
    mb: np.ndarray,
    sb: np.ndarray,
    shape: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact statistics of group a joined with each group b (centred pieces)."""
    n = na + nb
    delta = mb - ma
    mean = ma + delta * (nb / n)[:, None]
    factor = na * nb / n
    if shape == "full":
        scatter = sa + sb + factor[:, None, None] * delta[:, :, None] * delta[:, None, :]
    else:
        scatter = sa + sb + factor[:, None] * delta**2
    return n, mean, scatter


def _merge(
    counts: np.ndarray,
    means: np.ndarray,
    scatter: np.ndarray,
    shape: str,
    ridge: np.ndarray,
    n_components: int,
) -> np.ndarray:
    """Greedy model-based agglomeration to ``n_components`` groups; the group of each input."""
    M = len(counts)
    alone = _cost(counts, scatter, shape, ridge)
    # delta[a, b] for a < b: the cost of merging a and b; inf elsewhere and for merged-away groups.
    delta = np.full((M, M), np.inf)
    for a in range(M - 1):
        delta[a, a + 1 :] = _merge_costs(
            a, np.arange(a + 1, M), counts, means, scatter, alone, shape, ridge
        )
    owner = np.arange(M)  # the surviving group each input now belongs to
    alive = np.ones(M, dtype=bool)
    for _ in range(M - min(n_components, M)):
        a, b = np.unravel_index(np.argmin(delta), delta.shape)
        n, mean, joined = _union(
            counts[a], means[a], scatter[a], counts[[b]], means[[b]], scatter[[b]], shape
        )
        counts[a], means[a], scatter[a] = n[0], mean[0], joined[0]
        alone[a] = _cost(counts[a : a + 1], scatter[a : a + 1], shape, ridge)[0]
        alive[b] = False
        owner[owner == b] = a
        delta[b, :] = np.inf
        delta[:, b] = np.inf
        others = np.flatnonzero(alive)
        others = others[others != a]
        if len(others):
            costs = _merge_costs(a, others, counts, means, scatter, alone, shape, ridge)
            lower, upper = others < a, others > a
            delta[others[lower], a] = costs[lower]
            delta[a, others[upper]] = costs[upper]
    survivors = np.flatnonzero(alive)
    index = np.full(M, -1)
    index[survivors] = np.arange(len(survivors))
    return index[owner]


def _merge_costs(
    a: int,
    others: np.ndarray,
    counts: np.ndarray,
    means: np.ndarray,
    scatter: np.ndarray,
    alone: np.ndarray,
    shape: str,
    ridge: np.ndarray,
) -> np.ndarray:
    n, _, joined = _union(
        counts[a], means[a], scatter[a], counts[others], means[others], scatter[others], shape
    )
    return _cost(n, joined, shape, ridge) - alone[a] - alone[others]
