"""Scores for classifiers and clusterings (NumPy and SciPy only, no torch).

Clusters are matched to labels with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on the contingency table;
normalised mutual information (arithmetic mean of the entropies, as
scikit-learn's default) and the adjusted Rand index are computed from the
same table. Without labels, :func:`mixture_scores` scores a fitted
mixture by BIC, AIC and (held-out) log-likelihood.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "classification_scores",
    "cluster_mapping",
    "clustering_scores",
    "contingency",
    "mixture_scores",
]


def _labels(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional; got shape {arr.shape}.")
    if len(arr) == 0:
        raise ValueError(f"{name} is empty.")
    return arr


def _pair(y_true: Any, y_pred: Any, pred_name: str) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, pred_name)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but {pred_name} has {len(y_pred)}.")
    return y_true, y_pred


def contingency(y_true: Any, clusters: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts ``table[i, j]`` of samples with label ``classes[i]`` in cluster ``cluster_ids[j]``.

    Returns
    -------
    table : ndarray of shape (n_classes, n_clusters), int64
    classes, cluster_ids : ndarray
        The sorted distinct labels and cluster ids.
    """
    y_true, clusters = _pair(y_true, clusters, "clusters")
    classes, ti = np.unique(y_true, return_inverse=True)
    cluster_ids, ci = np.unique(clusters, return_inverse=True)
    table = np.zeros((len(classes), len(cluster_ids)), dtype=np.int64)
    np.add.at(table, (ti, ci), 1)
    return table, classes, cluster_ids


def cluster_mapping(y_true: Any, clusters: Any) -> dict[Any, Any]:
    """The one-to-one cluster -> label assignment that maximises agreement.

    The Hungarian algorithm on the contingency table. With more clusters
    than labels, the clusters left over are mapped to the label most of
    their samples carry.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    clusters : array-like of shape (n_samples,)

    Returns
    -------
    dict
        ``{cluster id: label}`` for every cluster id present.

    Examples
    --------
    >>> cluster_mapping([0, 0, 1, 1, 2], [2, 2, 0, 0, 1])
    {0: 1, 1: 2, 2: 0}
    """
    table, classes, cluster_ids = contingency(y_true, clusters)
    from scipy.optimize import linear_sum_assignment  # slow to import: only when used

    rows, cols = linear_sum_assignment(-table.T)  # rows: clusters, cols: classes
    mapping = {_item(cluster_ids[r]): _item(classes[c]) for r, c in zip(rows, cols)}
    for j, cid in enumerate(cluster_ids):
        mapping.setdefault(_item(cid), _item(classes[np.argmax(table[:, j])]))
    return mapping


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def clustering_scores(y_true: Any, clusters: Any) -> dict[str, float]:
    """Accuracy after Hungarian matching, NMI and ARI of a clustering.

    Returns
    -------
    dict
        ``accuracy`` (share of samples whose matched cluster label is
        right), ``nmi`` (normalised mutual information, arithmetic mean
        normalisation) and ``ari`` (adjusted Rand index).
    """
    table, classes, cluster_ids = contingency(y_true, clusters)
    n = table.sum()
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-table)
    accuracy = table[rows, cols].sum() / n
    return {"accuracy": float(accuracy), "nmi": _nmi(table), "ari": _ari(table)}


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _nmi(table: np.ndarray) -> float:
    n = table.sum()
    a, b = table.sum(1), table.sum(0)
    nz = table > 0
    pij = table[nz] / n
    mi = float((pij * (np.log(table[nz] * n) - np.log(np.outer(a, b)[nz]))).sum())
    ha, hb = _entropy(a), _entropy(b)
    if ha == 0.0 and hb == 0.0:
        return 1.0
    denom = 0.5 * (ha + hb)
    return float(max(mi, 0.0) / denom) if denom > 0 else 0.0


def _ari(table: np.ndarray) -> float:
    def pairs(x):
        x = np.asarray(x, dtype=np.float64)
        return (x * (x - 1) / 2).sum()

    n = table.sum()
    sum_ij, sum_a, sum_b = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = sum_a * sum_b / (n * (n - 1) / 2) if n > 1 else 0.0
    maximum = 0.5 * (sum_a + sum_b)
    if maximum == expected:  # one cluster and one class, or all singletons
        return 1.0
    return float((sum_ij - expected) / (maximum - expected))


def classification_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1.

    Averages are over the labels in ``y_true`` and ``y_pred`` together; a
    label never predicted has precision 0 (scikit-learn's
    ``zero_division=0``).

    Returns
    -------
    dict
        ``accuracy``, ``precision``, ``recall``, ``f1``.
    """
    y_true, y_pred = _pair(y_true, y_pred, "y_pred")
    labels = np.unique(np.concatenate([y_true, y_pred]))
    precision, recall, f1 = [], [], []
    for label in labels:
        tp = np.sum((y_pred == label) & (y_true == label))
        predicted, actual = np.sum(y_pred == label), np.sum(y_true == label)
        p = tp / predicted if predicted else 0.0
        r = tp / actual if actual else 0.0
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "f1": float(np.mean(f1)),
    }


def mixture_scores(model: Any, X: Any, X_heldout: Any = None) -> dict[str, float]:
    """Label-free scores of a fitted mixture: how well it explains the data.

    Parameters
    ----------
    model : fitted GaussianMixture (or any estimator with ``bic``, ``aic``,
        ``score`` and ``_n_parameters``)
    X : array-like of shape (n_samples, n_features)
        The data it was fitted on (BIC and AIC are defined there).
    X_heldout : array-like, optional
        Samples kept out of the fit.

    Returns
    -------
    dict
        ``bic`` and ``aic`` (lower is better), ``log_likelihood`` (mean per
        sample on ``X``), ``n_parameters``, and ``heldout_log_likelihood``
        (mean per sample on ``X_heldout``, higher is better) when given.
    """
    scores = {
        "bic": float(model.bic(X)),
        "aic": float(model.aic(X)),
        "log_likelihood": float(model.score(X)),
        "n_parameters": int(model._n_parameters()),
    }
    if X_heldout is not None:
        scores["heldout_log_likelihood"] = float(model.score(X_heldout))
    return scores
