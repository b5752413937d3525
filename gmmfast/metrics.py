"""Scores for classifiers and clusterings (NumPy and SciPy only, no torch).

Every score works on the sparse contingency of the two labellings: the
distinct (label, cluster) pairs and their counts, found by sorting, so the
memory is O(n_samples) whatever the number of distinct labels (a dense
table of 100,000 labels by 50,000 clusters would be 37 GiB).

Clusters are matched to labels with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on the dense table when it
has at most :data:`DENSE_MATCHING_ENTRIES` entries, and otherwise with
SciPy's sparse bipartite matching over the co-occurring pairs only (the
same optimum). Normalised mutual information (arithmetic mean of the
entropies, as scikit-learn's default) and the adjusted Rand index are
computed from the same pairs, as scikit-learn computes them. Without
labels, :func:`mixture_scores` scores a fitted mixture by BIC, AIC and
(held-out) log-likelihood.

Labels may be ints, finite real floats, bools, strings or bytes (one kind
per labelling); complex numbers, dates, time spans and raw records have no
label order and are refused by every function the same way. Every argument
is checked first and named in the error.
"""

from __future__ import annotations

from math import log
from typing import Any

import numpy as np

from .utils._estimator import check_is_fitted

__all__ = [
    "DENSE_MATCHING_ENTRIES",
    "DENSE_TABLE_MAX_ENTRIES",
    "classification_scores",
    "cluster_mapping",
    "clustering_scores",
    "contingency",
    "mixture_scores",
]

#: The Hungarian step builds a dense (labels x clusters) table up to this many
#: entries (32 MB of float64); beyond, it matches on the sparse pairs.
DENSE_MATCHING_ENTRIES = 2**22
#: :func:`contingency` refuses a dense table larger than this (1 GiB of int64).
DENSE_TABLE_MAX_ENTRIES = 2**27


# ------------------------------------------------------------------ labels
def _labels(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-d, non-empty array of finite, comparable labels."""
    if values is None:
        raise ValueError(f"{name} is None; pass a 1-d array-like of labels.")
    if hasattr(values, "tocsr") or hasattr(values, "toarray"):
        raise ValueError(f"{name} is a sparse matrix; pass a 1-d array-like of labels.")
    if isinstance(values, (str, bytes, dict, set, frozenset)):
        raise ValueError(
            f"{name} must be a 1-d array-like of labels; got a {type(values).__name__}."
        )
    # A masked label is missing: reading the value under the mask would be wrong.
    if np.ma.is_masked(values):
        raise ValueError(f"{name} has masked entries; every sample needs a label.")
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged nested sequences
        raise ValueError(f"{name} must be a 1-d array-like of labels: {exc}") from None
    if arr.ndim != 1:
        hint = " (a column: use .ravel())" if arr.ndim == 2 and arr.shape[1:] == (1,) else ""
        raise ValueError(f"{name} must be 1-dimensional; got shape {arr.shape}{hint}.")
    if len(arr) == 0:
        raise ValueError(f"{name} is empty: at least one label is needed.")
    if arr.dtype.kind == "O":
        _check_objects(arr, name)
    elif arr.dtype.kind not in _ORDERED_KINDS:
        # Complex numbers, dates and raw records have no label order that every
        # score shares: refused here, the same way by every function.
        raise ValueError(
            f"{name} must hold numbers or strings (real numbers, bools, text or bytes); "
            f"got dtype {arr.dtype} ({_KIND_NAMES.get(arr.dtype.kind, 'unsupported')} labels "
            "have no order)."
        )
    elif arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; labels must be finite.")
    return arr


#: dtype kinds with an order every score shares: bool, ints, real floats, text, bytes.
_ORDERED_KINDS = "biufUS"
_KIND_NAMES = {"c": "complex", "M": "datetime", "m": "timedelta", "V": "raw (void)"}
_PLURAL = {"string": "strings", "bytes": "bytes", "number": "numbers"}


def _check_objects(arr: np.ndarray, name: str) -> None:
    kinds = set()
    for value in arr:
        if value is None:
            raise ValueError(f"{name} contains None; every sample needs a label.")
        if isinstance(value, (str, np.str_)):
            kinds.add("string")
        elif isinstance(value, (bytes, np.bytes_)):
            kinds.add("bytes")
        elif isinstance(
            value, (bool, int, float, np.integer, np.floating, np.bool_)
        ) and not isinstance(value, np.timedelta64):  # a NumPy integer subclass
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{name} contains NaN or infinity; labels must be finite.")
            kinds.add("number")
        else:
            raise ValueError(
                f"{name} must hold numbers or strings; got a {type(value).__name__} ({value!r})."
            )
    if len(kinds) > 1:
        a, b = [_PLURAL[k] for k in _PLURAL if k in kinds][:2]
        raise ValueError(f"{name} mixes {a} and {b}; use one type of label.")


def _kind(arr: np.ndarray) -> str:
    """``"string"``, ``"bytes"`` or ``"number"``: labels of two kinds cannot be compared."""
    if arr.dtype.kind == "U" or (arr.dtype.kind == "O" and isinstance(arr[0], str)):
        return "string"
    if arr.dtype.kind == "S" or (arr.dtype.kind == "O" and isinstance(arr[0], bytes)):
        return "bytes"
    return "number"


def _pair(y_true: Any, y_pred: Any, pred_name: str) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, pred_name)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but {pred_name} has {len(y_pred)}.")
    return y_true, y_pred


def _codes(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct labels and each sample's index into them."""
    uniques, inverse = np.unique(arr, return_inverse=True)
    return uniques, inverse.reshape(-1)


# ------------------------------------------------------------- contingency
def _sparse_contingency(
    y_true: np.ndarray, clusters: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, counts, classes, cluster_ids)``: the non-zero cells, sorted by row.

    One sort of the samples' (label, cluster) codes: O(n_samples) memory.
    """
    classes, ti = _codes(y_true)
    cluster_ids, ci = _codes(clusters)
    key = ti.astype(np.int64) * len(cluster_ids) + ci
    del ti, ci
    cells, counts = np.unique(key, return_counts=True)
    rows, cols = np.divmod(cells, len(cluster_ids))
    return rows, cols, counts, classes, cluster_ids


def contingency(
    y_true: Any, clusters: Any, *, sparse: bool = False
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Counts ``table[i, j]`` of samples with label ``classes[i]`` in cluster ``cluster_ids[j]``.

    Parameters
    ----------
    y_true, clusters : array-like of shape (n_samples,)
    sparse : bool, default=False
        Return a ``scipy.sparse.csr_array`` (O(n_samples) memory) instead
        of a dense array.

    Returns
    -------
    table : ndarray or csr_array of shape (n_classes, n_clusters), int64
    classes, cluster_ids : ndarray
        The sorted distinct labels and cluster ids.

    Raises
    ------
    ValueError
        Bad labels, or a dense table of more than
        :data:`DENSE_TABLE_MAX_ENTRIES` entries (use ``sparse=True``).

    Examples
    --------
    >>> from gmmfast.metrics import contingency
    >>> table, classes, cluster_ids = contingency(["a", "a", "b", "b"], [1, 1, 1, 0])
    >>> table
    array([[0, 2],
           [1, 1]])
    >>> classes.tolist(), cluster_ids.tolist()
    (['a', 'b'], [0, 1])
    >>> contingency(["a", "a", "b", "b"], [1, 1, 1, 0], sparse=True)[0].nnz  # O(n) memory
    3
    """
    if not isinstance(sparse, (bool, np.bool_)):
        raise ValueError(f"sparse must be True or False; got {sparse!r}.")
    y_true, clusters = _pair(y_true, clusters, "clusters")
    rows, cols, counts, classes, cluster_ids = _sparse_contingency(y_true, clusters)
    shape = (len(classes), len(cluster_ids))
    if sparse:
        from scipy.sparse import csr_array

        return csr_array((counts, (rows, cols)), shape=shape), classes, cluster_ids
    if shape[0] * shape[1] > DENSE_TABLE_MAX_ENTRIES:
        raise ValueError(
            f"the dense contingency table of {shape[0]} labels by {shape[1]} clusters would "
            f"take {8 * shape[0] * shape[1] / 2**30:.1f} GiB; use contingency(..., sparse=True)."
        )
    table = np.zeros(shape, dtype=np.int64)
    table[rows, cols] = counts
    return table, classes, cluster_ids


# ---------------------------------------------------------------- matching
def _matching(
    rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one-to-one (row, col) pairs of largest total count, and their counts.

    Only pairs that share samples are returned: a row or column the optimum
    can only match at zero is left unmatched.
    """
    if shape[0] * shape[1] <= DENSE_MATCHING_ENTRIES:
        r, c, weights = _dense_matching(rows, cols, counts, shape)
    else:
        r, c, weights = _matching_by_component(rows, cols, counts, shape)
    keep = weights > 0
    return r[keep], c[keep], weights[keep]


def _dense_matching(
    rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.optimize import linear_sum_assignment  # slow to import: only when used

    table = np.zeros(shape)
    table[rows, cols] = counts
    r, c = linear_sum_assignment(table, maximize=True)
    return r, c, table[r, c].astype(np.int64)


def _matching_by_component(
    rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matching solved per connected component of the label-cluster graph.

    Labels and clusters that never share a sample cannot be matched with
    profit, so the optimum is the union of the components' optima. A
    component with a single label or a single cluster (the common case of
    many small clusters) takes its largest cell; the others are small
    dense problems, or sparse ones when too big.
    """
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import connected_components

    n_rows, n_cols = shape
    nodes = n_rows + n_cols
    graph = csr_array((np.ones(len(rows), np.int8), (rows, n_rows + cols)), shape=(nodes, nodes))
    n_comp, comp = connected_components(graph, directed=False)
    del graph
    edge_comp = comp[rows]
    star = (np.bincount(comp[:n_rows], minlength=n_comp) == 1) | (
        np.bincount(comp[n_rows:], minlength=n_comp) == 1
    )
    # Star components: the largest cell (smallest row, then column, on a tie).
    order = np.lexsort((cols, rows, -counts, edge_comp))
    order = order[star[edge_comp[order]]]
    first = np.ones(len(order), dtype=bool)
    first[1:] = edge_comp[order][1:] != edge_comp[order][:-1]
    best = order[first]
    parts = [(rows[best], cols[best], counts[best].astype(np.int64))]
    # The other components, one at a time (each has >= 2 labels and >= 2 clusters).
    order = np.argsort(edge_comp, kind="stable")
    order = order[~star[edge_comp[order]]]
    bounds = np.flatnonzero(np.diff(edge_comp[order])) + 1
    for edges in np.split(order, bounds) if len(order) else []:
        row_ids, r_local = np.unique(rows[edges], return_inverse=True)
        col_ids, c_local = np.unique(cols[edges], return_inverse=True)
        local = (len(row_ids), len(col_ids))
        solve = (
            _dense_matching if local[0] * local[1] <= DENSE_MATCHING_ENTRIES else _sparse_matching
        )
        r, c, w = solve(r_local, c_local, counts[edges], local)
        parts.append((row_ids[r], col_ids[c], w))
    return tuple(np.concatenate(p) for p in zip(*parts))


def _sparse_matching(
    rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-weight matching on the non-zero cells only (O(cells) memory).

    SciPy's sparse solver needs a matching that covers every row: each row
    gets a private dummy column of weight below ``1 / n_rows``, so that the
    dummies together weigh less than one sample and never beat a real cell.
    """
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    flipped = shape[0] > shape[1]
    if flipped:  # the solver covers the smaller side
        rows, cols, shape = cols, rows, (shape[1], shape[0])
    n_rows, n_cols = shape
    dummy = 0.5 / (n_rows + 1)
    graph = csr_array(
        (
            np.concatenate([counts.astype(np.float64), np.full(n_rows, dummy)]),
            (
                np.concatenate([rows, np.arange(n_rows)]),
                np.concatenate([cols, n_cols + np.arange(n_rows)]),
            ),
        ),
        shape=(n_rows, n_cols + n_rows),
    )
    r, c = min_weight_full_bipartite_matching(graph, maximize=True)
    real = c < n_cols
    r, c = r[real], c[real]
    order = np.lexsort((cols, rows))  # look the matched cells' counts up
    position = np.searchsorted(rows[order] * n_cols + cols[order], r * n_cols + c)
    weights = counts[order][position].astype(np.int64)
    return (c, r, weights) if flipped else (r, c, weights)


def cluster_mapping(y_true: Any, clusters: Any) -> dict[Any, Any]:
    """The one-to-one cluster -> label assignment that maximises agreement.

    The Hungarian algorithm on the contingency table. Clusters left without
    a label that they share samples with (more clusters than labels, or a
    label taken by a better cluster) are mapped to the label most of their
    samples carry (the smallest such label on a tie).

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
    y_true, clusters = _pair(y_true, clusters, "clusters")
    rows, cols, counts, classes, cluster_ids = _sparse_contingency(y_true, clusters)
    r, c, _ = _matching(rows, cols, counts, (len(classes), len(cluster_ids)))
    # Each cluster's majority label: the first cell of each column by (-count, row).
    order = np.lexsort((rows, -counts, cols))
    first = np.ones(len(order), dtype=bool)
    first[1:] = cols[order][1:] != cols[order][:-1]
    majority = np.empty(len(cluster_ids), dtype=np.intp)
    majority[cols[order][first]] = rows[order][first]
    majority[c] = r
    return {_item(cid): _item(classes[majority[j]]) for j, cid in enumerate(cluster_ids)}


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ------------------------------------------------------------------ scores
def clustering_scores(y_true: Any, clusters: Any) -> dict[str, float]:
    """Accuracy after Hungarian matching, NMI and ARI of a clustering.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels (ints, finite floats, bools or strings).
    clusters : array-like of shape (n_samples,)
        Cluster ids (any labels; need not match ``y_true``'s).

    Returns
    -------
    dict
        ``accuracy`` (share of samples whose matched cluster label is
        right), ``nmi`` (normalised mutual information, arithmetic mean
        normalisation) and ``ari`` (adjusted Rand index), equal to
        scikit-learn's ``normalized_mutual_info_score`` and
        ``adjusted_rand_score``.

    Raises
    ------
    ValueError
        Labels that are None, empty, not 1-d, of different lengths, NaN or
        of mixed types.

    Examples
    --------
    Clusters are matched to labels (Hungarian), whatever their numbering:

    >>> from gmmfast.metrics import clustering_scores
    >>> scores = clustering_scores([0, 0, 1, 1, 2, 2], [5, 5, 3, 3, 3, 9])
    >>> round(scores["accuracy"], 4), round(scores["ari"], 4)
    (0.8333, 0.4444)
    """
    y_true, clusters = _pair(y_true, clusters, "clusters")
    rows, cols, counts, classes, cluster_ids = _sparse_contingency(y_true, clusters)
    _, _, matched = _matching(rows, cols, counts, (len(classes), len(cluster_ids)))
    n = len(y_true)
    a = np.bincount(rows, weights=counts, minlength=len(classes)).astype(np.int64)
    b = np.bincount(cols, weights=counts, minlength=len(cluster_ids)).astype(np.int64)
    return {
        "accuracy": float(matched.sum() / n),
        "nmi": _nmi(rows, cols, counts, a, b),
        "ari": _ari(counts, a, b, n),
    }


def _entropy(sizes: np.ndarray) -> float:
    if len(sizes) == 1:
        return 0.0
    p = sizes.astype(np.float64)
    total = p.sum()
    return float(-np.sum((p / total) * (np.log(p) - log(total))))


def _nmi(
    rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray
) -> float:
    """scikit-learn's ``normalized_mutual_info_score`` (arithmetic), from the non-zero cells."""
    if len(a) == len(b) == 1:  # neither labelling splits the data: a perfect match
        return 1.0
    if len(a) == 1 or len(b) == 1:
        return 0.0
    n = float(counts.sum())
    nij = counts.astype(np.float64)
    p = nij / n
    outer = a[rows].astype(np.float64) * b[cols].astype(np.float64)
    mi = p * (np.log(nij) - log(n)) + p * (-np.log(outer) + log(n) + log(n))
    mi = np.where(np.abs(mi) < np.finfo(np.float64).eps, 0.0, mi)
    mi = float(np.clip(mi.sum(), 0.0, None))
    if mi == 0.0:
        return 0.0
    return float(mi / (0.5 * (_entropy(a) + _entropy(b))))


def _ari(counts: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> float:
    """scikit-learn's ``adjusted_rand_score``: the pair confusion in exact integers."""
    # int64 holds every sum of squares below n = 2**31; beyond, Python ints.
    exact = (lambda v: v.astype(np.int64)) if n < 2**31 else (lambda v: v.astype(object))
    squares = int(np.sum(exact(counts) ** 2))
    sum_a, sum_b = int(np.sum(exact(a) ** 2)), int(np.sum(exact(b) ** 2))
    tp = squares - n
    fp = sum_b - squares
    fn = sum_a - squares
    tn = n * n - fp - fn - squares
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def classification_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1.

    Averages are over the labels in ``y_true`` and ``y_pred`` together; a
    label never predicted has precision 0 (scikit-learn's
    ``zero_division=0``).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Labels of one type (numbers, strings or bytes).

    Returns
    -------
    dict
        ``accuracy``, ``precision``, ``recall``, ``f1``.

    Examples
    --------
    >>> from gmmfast.metrics import classification_scores
    >>> scores = classification_scores([0, 1, 1, 2], [0, 1, 2, 2])
    >>> scores["accuracy"]
    0.75
    """
    y_true, y_pred = _pair(y_true, y_pred, "y_pred")
    if _kind(y_true) != _kind(y_pred):
        raise ValueError(
            f"y_true holds {_PLURAL[_kind(y_true)]} but y_pred holds {_PLURAL[_kind(y_pred)]}; "
            "labels must be of one type."
        )
    labels, codes = _codes(np.concatenate([y_true.astype(object), y_pred.astype(object)]))
    true_codes, pred_codes = codes[: len(y_true)], codes[len(y_true) :]
    hit = true_codes == pred_codes
    tp = np.bincount(true_codes[hit], minlength=len(labels)).astype(np.float64)
    predicted = np.bincount(pred_codes, minlength=len(labels)).astype(np.float64)
    actual = np.bincount(true_codes, minlength=len(labels)).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    return {
        "accuracy": float(np.mean(hit)),
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "f1": float(np.mean(f1)),
    }


# -------------------------------------------------------- without labels
_MIXTURE_METHODS = ("bic", "aic", "score", "_n_parameters")


def _check_samples(model: Any, X: Any, name: str) -> None:
    """``X`` is a (n_samples >= 1, model.n_features_in_) matrix; the model checks values."""
    if X is None:
        raise ValueError(f"{name} is None; pass the samples (n_samples, n_features).")
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):
        raise ValueError(f"{name} is a sparse matrix; pass dense samples (X.toarray()).")
    shape = np.shape(X)  # a Dask array is not computed
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be 2-dimensional (n_samples, n_features); got shape {shape}."
        )
    if shape[0] == 0:
        raise ValueError(f"{name} has 0 samples; at least 1 is needed.")
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and shape[1] != expected:
        raise ValueError(
            f"{name} has {shape[1]} features, but the {type(model).__name__} was fitted "
            f"on {expected}."
        )


def _name(obj: Any) -> str:
    return f"the class {obj.__name__}" if isinstance(obj, type) else type(obj).__name__


def mixture_scores(model: Any, X: Any, X_heldout: Any = None) -> dict[str, float]:
    """Label-free scores of a fitted mixture: how well it explains the data.

    Parameters
    ----------
    model : fitted GaussianMixture (or any fitted density estimator with
        ``bic``, ``aic``, ``score`` and ``_n_parameters``; not a classifier)
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

    Raises
    ------
    ValueError
        ``model`` is not a mixture (a classifier, or another object), or
        ``X``/``X_heldout`` is missing, not 2-d, empty or of another width
        than the model's.
    NotFittedError
        ``model`` is not fitted (a ``ValueError`` too).

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast import GaussianMixture
    >>> from gmmfast.metrics import mixture_scores
    >>> rng = np.random.RandomState(0)
    >>> X = np.r_[rng.randn(200, 2), rng.randn(200, 2) + 5]
    >>> gm = GaussianMixture(2, random_state=0).fit(X[::2])
    >>> scores = mixture_scores(gm, X[::2], X_heldout=X[1::2])
    >>> sorted(scores)[:3]
    ['aic', 'bic', 'heldout_log_likelihood']
    >>> bool(scores["bic"] == gm.bic(X[::2]))
    True
    """
    if getattr(model, "_estimator_type", None) == "classifier":
        raise ValueError(
            f"model must be a fitted mixture (a density model such as GaussianMixture); got "
            f"the classifier {type(model).__name__}: score it with classification_scores."
        )
    missing = [m for m in _MIXTURE_METHODS if not callable(getattr(model, m, None))]
    if isinstance(model, type) or missing:
        raise ValueError(
            "model must be a fitted mixture (a density model such as GaussianMixture, with "
            f"{', '.join(_MIXTURE_METHODS)}); got {_name(model)}."
        )
    check_is_fitted(model, "means_")
    _check_samples(model, X, "X")
    if X_heldout is not None:
        _check_samples(model, X_heldout, "X_heldout")
    scores = {
        "bic": float(model.bic(X)),
        "aic": float(model.aic(X)),
        "log_likelihood": float(model.score(X)),
        "n_parameters": int(model._n_parameters()),
    }
    if X_heldout is not None:
        scores["heldout_log_likelihood"] = float(model.score(X_heldout))
    return scores
