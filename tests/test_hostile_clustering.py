"""Hostile and careless input on the clustering API: metrics, k-means, starts, selection, synthetic.

Each test is a rule applied to the whole surface (issue 25): sparse O(n)
contingency, no overflow/underflow/cancellation in k-means distances,
every argument checked up front and named, inputs never modified, clear
errors for bad numbers of clusters, and the degenerate data that must
still work.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

import gmmfast.metrics as gm
from gmmfast import GaussianMixture, select_mixture
from gmmfast.metrics import (
    classification_scores,
    cluster_mapping,
    clustering_scores,
    contingency,
    mixture_scores,
)
from gmmfast.mixture import GMMClassifier, k_means
from gmmfast.mixture._agglomerative import agglomerative_labels
from gmmfast.mixture._kmeans import kmeans, kmeans_plusplus
from gmmfast.mixture._starts import initial_parameters
from gmmfast.synthetic import make_noncircular

BASE = np.random.RandomState(0).randn(200, 2)
BASE32 = BASE.astype(np.float32)


def _random_labels(seed: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    n = rng.randint(1, 400)
    y = rng.randint(0, rng.randint(1, 40), n)
    c = np.where(rng.rand(n) < 0.6, y, rng.randint(0, rng.randint(1, 40), n))
    if kind == "negative":
        return y - 20, c * -3
    if kind == "float":
        return y * 0.5, c + 0.25
    if kind == "string":
        return np.array([f"c{v}" for v in y]), np.array([f"k{v}" for v in c], dtype=object)
    if kind == "bool":
        return y % 2 == 0, c % 2 == 1
    return y, c


def _hungarian_accuracy(y, c) -> float:
    """The dense reference: Hungarian on the full table."""
    _, yi = np.unique(y, return_inverse=True)
    _, ci = np.unique(c, return_inverse=True)
    table = np.zeros((yi.max() + 1, ci.max() + 1))
    np.add.at(table, (yi, ci), 1)
    r, k = linear_sum_assignment(table, maximize=True)
    return table[r, k].sum() / len(y)


# --------------------------------------------- rule 1: sparse contingency
@pytest.mark.parametrize("kind", ["int", "negative", "float", "string", "bool"])
@pytest.mark.parametrize("dense_budget", [gm.DENSE_MATCHING_ENTRIES, 0])
def test_scores_equal_scikit_learn_on_random_labels(kind, dense_budget, monkeypatch):
    """NMI and ARI equal scikit-learn's to 1e-10; the accuracy equals the dense Hungarian's,
    also through the per-component and sparse matchings (budget 0)."""
    monkeypatch.setattr(gm, "DENSE_MATCHING_ENTRIES", dense_budget)
    for seed in range(25):
        y, c = _random_labels(seed, kind)
        s = clustering_scores(y, c)
        assert abs(s["nmi"] - skm.normalized_mutual_info_score(y, c)) < 1e-10
        assert abs(s["ari"] - skm.adjusted_rand_score(y, c)) < 1e-10
        assert s["accuracy"] == pytest.approx(_hungarian_accuracy(y, c), abs=1e-12)
        mapping = cluster_mapping(y, c)
        assert set(mapping) == set(np.unique(c).tolist())
        # the one-to-one part of the mapping reaches the Hungarian optimum
        matched = {}
        for cid, label in mapping.items():
            matched.setdefault(label, []).append(cid)
        hits = 0
        for label, cids in matched.items():
            hits += max(np.sum((c == cid) & (y == label)) for cid in cids)
        assert hits / len(y) == pytest.approx(s["accuracy"], abs=1e-12)


@pytest.mark.parametrize("kind", ["int", "string"])
def test_classification_scores_equal_scikit_learn(kind):
    for seed in range(10):
        y, c = _random_labels(seed, kind)
        if kind == "string":
            c = np.array([v.replace("k", "c") for v in c])
        s = classification_scores(y, c)
        p, r, f, _ = skm.precision_recall_fscore_support(y, c, average="macro", zero_division=0)
        assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((p, r, f), abs=1e-12)
        assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, c), abs=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: (np.arange(n), np.arange(n) // 2),  # the example: 37 GiB dense
        lambda n: (np.arange(n), np.arange(n)[::-1].copy()),  # all singletons
        lambda n: (np.arange(n), np.zeros(n, dtype=np.int64)),  # one cluster
        lambda n: (np.arange(n) % 3, np.arange(n)),
    ],
)
@pytest.mark.parametrize(
    "score", [clustering_scores, cluster_mapping, classification_scores], ids=lambda f: f.__name__
)
def test_many_distinct_labels_run_in_bounded_memory(make, score):
    """100,000 distinct labels: well under 240 bytes per sample (the dense table: 37 GiB)."""
    n = 100_000
    y, c = make(n)
    score(y[:10], c[:10])  # imports outside the measurement
    tracemalloc.start()
    try:
        result = score(y, c)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 240 * n, f"peak {peak / 2**20:.1f} MiB"
    if score is clustering_scores:
        assert abs(result["nmi"] - skm.normalized_mutual_info_score(y, c)) < 1e-10
        assert abs(result["ari"] - skm.adjusted_rand_score(y, c)) < 1e-10
        assert result["accuracy"] == pytest.approx(_sparse_reference_accuracy(y, c))


def _sparse_reference_accuracy(y, c) -> float:
    """The optimum when every component has one label or one cluster (the cases above)."""
    cells, counts = np.unique(np.stack([y, c]), axis=1, return_counts=True)
    by_cluster = len(np.unique(c)) <= len(np.unique(y))
    best: dict = {}
    for (label, cid), count in zip(cells.T.tolist(), counts.tolist()):
        key = cid if by_cluster else label
        best[key] = max(best.get(key, 0), count)
    return sum(best.values()) / len(y)


def test_dense_contingency_is_bounded_and_sparse_is_offered():
    y, c = np.arange(100_000), np.arange(100_000) // 2
    with pytest.raises(ValueError, match="sparse=True"):
        contingency(y, c)
    table, classes, clusters = contingency(y, c, sparse=True)
    assert table.shape == (100_000, 50_000) and table.nnz == 100_000 and table.sum() == 100_000
    dense, _, _ = contingency([0, 0, 1], ["a", "b", "b"])
    np.testing.assert_array_equal(dense, [[1, 1], [0, 1]])
    with pytest.raises(ValueError, match="sparse must be"):
        contingency([0], [0], sparse="yes")


# -------------------------------- rule 2: no overflow, underflow or cancellation
# Powers of two: the scaled data are exact, so every result must be the base data's.
POWERS = [2**66, 2**-100, 2**600]  # float32 squares overflow, underflow; float64 inertia overflows


def _scaled(power: float, dtype) -> np.ndarray:
    return BASE32.astype(dtype) * dtype(power)  # exact: a power of two times float32 values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("power", POWERS, ids=lambda p: f"2**{round(math.log2(p))}")
def test_k_means_is_exact_under_scaling_or_refuses(power, dtype):
    if dtype == np.float32 and power == 2**600:
        pytest.skip("not a float32 number")
    X = _scaled(power, dtype)
    ref_centers, ref_labels, ref_inertia = k_means(BASE32.astype(dtype), 3, random_state=0)
    with np.errstate(over="ignore"):
        true = ref_inertia * np.float64(power) ** 2
    if not np.isfinite(true):  # float64 data whose inertia float64 cannot hold
        with pytest.raises(ValueError, match="beyond float64's range"):
            k_means(X, 3, random_state=0)
        return
    centers, labels, inertia = k_means(X, 3, random_state=0)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(centers, ref_centers * power, rtol=1e-6)
    assert inertia == pytest.approx(true, rel=1e-6) and inertia > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset, spread", [(1e6, 10.0), (-3e7, 100.0), (1e4, 1e-2)])
def test_k_means_inertia_of_offset_data_is_right(offset, spread, dtype):
    """Data far from the origin: the inertia is the true one of the returned clustering,
    and as good as the same data's clustering near the origin."""
    X = (BASE * spread + offset).astype(dtype)
    centers, labels, inertia = k_means(X, 3, random_state=0)
    X64 = X.astype(np.float64)
    true = ((X64 - centers[labels]) ** 2).sum()
    assert inertia == pytest.approx(true, rel=1e-4)
    _, _, near = k_means(X64 - X64.mean(axis=0), 3, random_state=0)
    assert inertia <= 1.05 * near


def _starts(X: np.ndarray, kind: str):
    rs = np.random.RandomState(0)
    if kind == "kmeans++":
        return kmeans_plusplus(X, 3, rs, n_threads=1)[1]
    if kind == "kmeans":
        return kmeans(X, 3, rs, n_threads=1)[0]
    if kind == "agglomerative":
        return agglomerative_labels(X, 3, "full", rs, n_threads=1)
    return initial_parameters(X, kind, 3, "diag", 0.0, rs, n_threads=1)[1]  # means


@pytest.mark.parametrize(
    "kind", ["kmeans++", "kmeans", "agglomerative", "k-means++-broad", "random_from_data-broad"]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("power", [2**66, 2**-100], ids=["2**66", "2**-100"])
def test_every_start_is_exact_under_scaling(kind, dtype, power):
    X = _scaled(power, dtype)
    ref, got = _starts(BASE32.astype(dtype), kind), _starts(X, kind)
    if got.dtype.kind == "f":  # means: scaled back
        np.testing.assert_allclose(got, ref * power, rtol=1e-6)
    else:  # labels or chosen rows
        np.testing.assert_array_equal(got, ref)


def test_select_mixture_on_huge_float32_data():
    """float32 data at 1e20 (squares overflow float32): the selection is the base data's."""
    X = (BASE32 * np.float32(2**66)).astype(np.float32)
    ref = select_mixture(BASE32, [1, 2, 3], random_state=0, n_init=2)
    got = select_mixture(X, [1, 2, 3], random_state=0, n_init=2)
    assert got.best_params_ == ref.best_params_
    assert all(np.isfinite(r["bic"]) for r in got.results_)


# ---------------------------------- rule 3: misuse named, up front
LABEL_MISUSE = [
    (None, [1, 2], "y_true is None"),
    ([1, 2], None, "is None"),
    ([1, 2, 3], [1, 2], "3 labels but"),
    (np.zeros((3, 2)), np.zeros(3), "1-dimensional"),
    (np.zeros((3, 1)), np.zeros(3), "ravel"),
    ([1.0, np.nan, 2.0], [1, 2, 3], "NaN or infinity"),
    ([1.0, np.inf, 2.0], [1, 2, 3], "NaN or infinity"),
    (np.array(["a", 1, "b"], dtype=object), [1, 2, 3], "mixes strings and numbers"),
    (np.array(["a", None, "b"], dtype=object), [1, 2, 3], "contains None"),
    (np.array([1, {}, 2], dtype=object), [1, 2, 3], "numbers or strings"),
    ([], [], "empty"),
    (3, 3, "1-dimensional"),
    ("abc", "abc", "got a str"),
    ([[1], [1, 2]], [1, 2], "1-d array-like"),
]


@pytest.mark.parametrize("y, c, message", LABEL_MISUSE)
@pytest.mark.parametrize(
    "score",
    [clustering_scores, cluster_mapping, classification_scores, contingency],
    ids=lambda f: f.__name__,
)
def test_bad_labels_are_named(score, y, c, message):
    with pytest.raises(ValueError, match=message):
        score(y, c)


def test_string_labels_score_as_their_codes():
    y = np.array(["cat", "dog", "dog", "cat", "bird", "bird"])
    c = np.array([2, 0, 0, 2, 1, 0])
    codes = np.unique(y, return_inverse=True)[1]
    assert clustering_scores(y, c) == clustering_scores(codes, c)
    assert cluster_mapping(y, c) == {0: "dog", 1: "bird", 2: "cat"}
    with pytest.raises(ValueError, match="holds strings but y_pred holds numbers"):
        classification_scores(y, c)


_X = BASE[:60, :2]
_MODEL = GaussianMixture(2, random_state=0).fit(_X)


@pytest.mark.parametrize(
    "model, X, heldout, message",
    [
        (GMMClassifier(n_components=1).fit(_X, _X[:, 0] > 0), _X, None, "classifier GMMClassifier"),
        (object(), _X, None, "fitted mixture"),
        (GaussianMixture, _X, None, "the class GaussianMixture"),
        (None, _X, None, "fitted mixture"),
        (GaussianMixture(2), _X, None, "not fitted"),
        (_MODEL, _X[:, :1], None, "X has 1 features"),
        (_MODEL, _X, _X[:, :1], "X_heldout has 1 features"),
        (_MODEL, None, None, "X is None"),
        (_MODEL, _X[:, 0], None, "X must be 2-dimensional"),
        (_MODEL, _X[:0], None, "X has 0 samples"),
        (_MODEL, _X, _X[:0], "X_heldout has 0 samples"),
    ],
)
def test_mixture_scores_misuse_is_named(model, X, heldout, message):
    with pytest.raises(ValueError, match=message):
        mixture_scores(model, X, heldout)


SEED_CALLS = {
    "k_means": lambda rs: k_means(_X, 2, random_state=rs),
    "select_mixture": lambda rs: select_mixture(_X, [1, 2], random_state=rs, max_iter=5),
    "make_noncircular": lambda rs: make_noncircular("stripes", 30, random_state=rs),
}


@pytest.mark.parametrize("call", sorted(SEED_CALLS))
@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "0", True, [0]])
def test_bad_random_state_is_named(call, seed):
    with pytest.raises(ValueError, match="random_state must be"):
        SEED_CALLS[call](seed)


@pytest.mark.parametrize("call", sorted(SEED_CALLS))
@pytest.mark.parametrize(
    "seed", [None, 0, 2**32 - 1, np.int64(3), np.random.RandomState(0), np.random.default_rng(0)]
)
def test_good_random_state_is_accepted(call, seed):
    SEED_CALLS[call](seed)


# ------------------------- rule 4: inputs never modified; bad numbers of clusters
def _layouts():
    X = np.ascontiguousarray(BASE[:80] * 3 + 1)
    return {
        "float64 C": X,
        "float32 C": X.astype(np.float32),
        "float64 F": np.asfortranarray(X),
        "float32 F": np.asfortranarray(X.astype(np.float32)),
        "strided": np.repeat(X, 2, axis=1)[:, ::2],
        "huge float32": np.asfortranarray(X.astype(np.float32) * np.float32(1e20)),
        "offset float32": (X * 10 + 1e6).astype(np.float32),
    }


CALLS_ON_X = {
    "k_means": lambda X: k_means(X, 3, random_state=0),
    "select_mixture": lambda X: select_mixture(X, [1, 2], random_state=0, max_iter=5),
    "mixture_scores": lambda X: mixture_scores(GaussianMixture(2, random_state=0).fit(X), X, X),
    "kmeans++": lambda X: kmeans_plusplus(
        np.ascontiguousarray(X), 3, np.random.RandomState(0), n_threads=1
    ),
    "agglomerative": lambda X: agglomerative_labels(
        np.ascontiguousarray(X), 3, "full", np.random.RandomState(0), n_threads=1
    ),
}


@pytest.mark.parametrize("layout", sorted(_layouts()))
@pytest.mark.parametrize("call", sorted(CALLS_ON_X))
def test_X_is_never_modified(call, layout):
    X = _layouts()[layout]
    if call == "mixture_scores" and layout == "huge float32":
        pytest.skip("a float32 fit of 1e20 data is refused by the mixture")
    before, flags = (
        X.copy(order="K"),
        (X.flags.c_contiguous, X.flags.f_contiguous, X.flags.writeable),
    )
    CALLS_ON_X[call](X)
    np.testing.assert_array_equal(X, before)
    assert X.dtype == before.dtype
    assert (X.flags.c_contiguous, X.flags.f_contiguous, X.flags.writeable) == flags


@pytest.mark.parametrize("kind", ["int", "float", "string", "bool"])
@pytest.mark.parametrize(
    "score",
    [clustering_scores, cluster_mapping, classification_scores, contingency],
    ids=lambda f: f.__name__,
)
def test_labels_are_never_modified(score, kind):
    y, c = _random_labels(3, kind)
    if score is classification_scores:
        c = y[::-1].copy()
    y_before, c_before = y.copy(), c.copy()
    score(y, c)
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_array_equal(c, c_before)


BAD_COUNTS = [
    (0, ">= 1|positive|at least"),
    (-2, ">= 1|positive|at least"),
    (True, "positive int|must be"),
    (2.5, "positive int|must be"),
    (3.0, "positive int|must be"),
    ("3", "positive int|must be"),
    (None, "positive int|must be"),
    (10**30, "more than|fewer than|at most"),
    (81, "more than|fewer than|at least"),
]


@pytest.mark.parametrize("value, message", BAD_COUNTS)
@pytest.mark.parametrize("call", ["k_means", "select_mixture", "make_noncircular"])
def test_bad_number_of_clusters_is_named(call, value, message):
    X = BASE[:80]
    if call == "k_means":
        f, name = lambda: k_means(X, value, random_state=0), "n_clusters"
    elif call == "select_mixture":
        f, name = lambda: select_mixture(X, value, random_state=0), "n_components"
    else:
        if value == 81:
            value = 2  # make_noncircular's bound is below: three clusters
        f, name = lambda: make_noncircular("stripes", value, random_state=0), "n_samples"
    with pytest.raises(ValueError, match=message) as info:
        f()
    assert name in str(info.value)


@pytest.mark.parametrize(
    "candidates, message",
    [
        (range(0, 10**15), "positive ints; got 0"),
        (range(10**15, 10**16), "the smallest is 1000000000000000"),
        (range(-5, 3), "positive ints; got -5"),
        (range(3, 3), "no candidate"),
        (iter(int, 1), "more than 100000 candidates"),  # endless: 0, 0, 0, ...
        ([2, 2.0], "positive ints"),
    ],
)
def test_select_mixture_huge_and_odd_candidate_lists(candidates, message):
    with pytest.raises(ValueError, match=message):
        select_mixture(BASE[:30], candidates, random_state=0)


def test_select_mixture_descending_huge_range_is_clipped_not_materialised():
    with pytest.warns(UserWarning, match="skipped 999999999999988 candidates from 13 to 10{15}"):
        selection = select_mixture(BASE[:12], range(10**15, 0, -1), random_state=0, max_iter=3)
    assert [r["n_components"] for r in selection.results_] == list(range(1, 13))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"foo": 1}, "unknown GaussianMixture parameter"),
        ({"means_init": [[0, 0]]}, "means_init fixes the number"),
        ({"n_init": 0}, "n_init"),
        ({"dtype": "int8"}, "dtype"),
        ({"covariance_type": "diag"}, "chosen by select_mixture"),
    ],
)
def test_select_mixture_checks_mixture_parameters_before_fitting(params, message, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("a fit started before the parameters were checked")

    monkeypatch.setattr(GaussianMixture, "fit", no_fit)
    with pytest.raises(ValueError, match=message):
        select_mixture(BASE[:30], [1, 2], **params)


# -------------------------------------------- rule 5: degenerate data
@pytest.mark.parametrize(
    "X, message",
    [
        (np.where(BASE > 2, np.nan, BASE), "NaN"),
        (np.where(BASE > 2, np.inf, BASE), "infinity"),
        (BASE[:, 0], "2-dimensional"),
        (np.empty((0, 2)), "0 sample"),
        (np.empty((5, 0)), "0 feature"),
        ([["a", "b"]], "real numbers"),
        (None, "X is None"),
    ],
)
@pytest.mark.parametrize("call", ["k_means", "select_mixture"])
def test_bad_X_is_named(call, X, message):
    f = (lambda: k_means(X, 1)) if call == "k_means" else (lambda: select_mixture(X, [1]))
    with pytest.raises(ValueError, match=message):
        f()


@pytest.mark.parametrize(
    "name, X, K",
    [
        ("one sample", BASE[:1], 1),
        ("constant", np.full((40, 3), 7.5), 1),
        ("duplicates", np.repeat(BASE[:4], 25, axis=0), 4),
        ("K = n", BASE[:15], 15),
        ("one feature", BASE[:, :1], 3),
        ("integers", (BASE * 100).astype(np.int64), 3),
        ("booleans", BASE > 0, 2),
    ],
)
def test_degenerate_data_cluster_exactly(name, X, K):
    centers, labels, inertia = k_means(X, K, random_state=0, max_iter=10**18)
    X64 = np.asarray(X, dtype=np.float64)
    assert inertia == pytest.approx(((X64 - centers[labels]) ** 2).sum(), abs=1e-9)
    assert np.isfinite(centers).all() and labels.shape == (len(X64),)
    if name in ("one sample", "constant", "duplicates", "K = n"):
        assert inertia == pytest.approx(0.0, abs=1e-9)
    selection = select_mixture(X, [1, 2], random_state=0, max_iter=20)
    assert selection.best_params_["n_components"] in (1, 2)


def test_too_few_distinct_points_warns_not_fails():
    with pytest.warns(UserWarning, match="distinct clusters"):
        _, labels, inertia = k_means(np.full((10, 2), 3.0), 3, random_state=0)
    assert inertia == 0.0 and len(labels) == 10


@pytest.mark.parametrize("n_samples", [3, 4, np.int64(10)])
def test_make_noncircular_small_and_numpy_ints(n_samples):
    X, y = make_noncircular("unequal", n_samples, random_state=np.int64(1))
    assert X.shape == (int(n_samples), 2) and set(np.unique(y)) == {0, 1, 2}


@pytest.mark.parametrize("kind", [["stripes"], None, 3, "Stripes"])
def test_make_noncircular_bad_kind(kind):
    with pytest.raises(ValueError, match="kind must be one of"):
        make_noncircular(kind)


@pytest.mark.parametrize(
    "fn", [gm.clustering_scores, gm.classification_scores, gm.cluster_mapping, gm.contingency]
)
@pytest.mark.parametrize("which", ["first", "second"])
def test_masked_labels_are_refused(fn, which):
    """A masked label is missing; the value under the mask must not be scored."""
    y = np.repeat([0, 1, 2], 10)
    masked = np.ma.masked_array(y, mask=np.arange(30) == 3)
    args = (masked, y) if which == "first" else (y, masked)
    with pytest.raises(ValueError, match="masked"):
        fn(*args)
    plain = np.ma.masked_array(y)  # no entry masked: plain labels
    assert np.isfinite(list(gm.clustering_scores(plain, y).values())).all()


# ------------------------------- labels of no order: refused the same way everywhere
_UNORDERED = {
    "complex": (np.array([1 + 1j, 2, 3, 3]), "complex"),
    "complex objects": (np.array([1 + 1j, 2, 3, 3], dtype=object), "got a complex"),
    "NumPy complex objects": (np.array([np.complex64(1j), 2, 3, 3], dtype=object), "complex"),
    "datetime": (np.array(["2020-01-01", "2020-01-02"] * 2, dtype="M8[D]"), "datetime"),
    "timedelta": (np.array([1, 2, 3, 3], dtype="m8[s]"), "timedelta"),
    "timedelta objects": (
        np.array([np.timedelta64(v) for v in (1, 2, 3, 3)], dtype=object),
        "timedelta64",
    ),
    "date objects": (
        np.array([__import__("datetime").date(2020, 1, d) for d in (1, 2, 3, 3)]),
        "got a date",
    ),
    "void": (np.zeros(4, dtype="V4"), "void"),
    "bytes and strings": (
        np.array([b"a", "a", b"b", "b"], dtype=object),
        "mixes strings and bytes",
    ),
    "bytes and numbers": (np.array([b"a", 1, b"b", 2], dtype=object), "mixes bytes and numbers"),
}


@pytest.mark.parametrize("case", list(_UNORDERED))
@pytest.mark.parametrize("which", ["first", "second"])
@pytest.mark.parametrize(
    "score",
    [clustering_scores, cluster_mapping, classification_scores, contingency],
    ids=lambda f: f.__name__,
)
def test_labels_of_no_order_are_refused_by_every_metric(score, which, case):
    """One rule in _labels for all four functions: no Python '<' error from inside."""
    labels, message = _UNORDERED[case]
    other = np.array([0, 1, 1, 0])
    args = (labels, other) if which == "first" else (other, labels)
    name = (
        "y_true"
        if which == "first"
        else {"classification_scores": "y_pred"}.get(score.__name__, "clusters")
    )
    with pytest.raises(ValueError, match=message) as info:
        score(*args)
    assert str(info.value).startswith(name)


@pytest.mark.parametrize(
    "score",
    [clustering_scores, cluster_mapping, classification_scores, contingency],
    ids=lambda f: f.__name__,
)
def test_bytes_labels_score_as_strings_do(score):
    y = np.array([b"cat", b"dog", b"dog", b"cat", b"bird"])
    c = np.array([b"k2", b"k0", b"k0", b"k2", b"k1"])
    as_text = score(
        y.astype(str), c.astype(str) if score is not classification_scores else y.astype(str)
    )
    as_bytes = score(y, c if score is not classification_scores else y)
    if score is contingency:
        np.testing.assert_array_equal(as_text[0], as_bytes[0])
    elif score is cluster_mapping:
        assert list(as_text.values()) == [v.decode() for v in as_bytes.values()]
    else:
        assert as_text == as_bytes


def test_classification_scores_refuses_bytes_against_strings():
    with pytest.raises(ValueError, match="y_true holds bytes but y_pred holds strings"):
        classification_scores(np.array([b"a", b"b"]), np.array(["a", "b"]))


# ----------------------------- select_mixture: every parameter, and skipped candidates
@pytest.mark.parametrize("criterion", ["bic", "aic", "heldout"])
@pytest.mark.parametrize("fraction", [-0.1, 0, 1, 1.5, float("nan"), "0.2", True, None])
def test_validation_fraction_is_checked_whatever_the_criterion(criterion, fraction, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("a fit started before validation_fraction was checked")

    monkeypatch.setattr(GaussianMixture, "fit", no_fit)
    with pytest.raises(ValueError, match="validation_fraction"):
        select_mixture(BASE[:30], [1, 2], criterion=criterion, validation_fraction=fraction)


@pytest.mark.parametrize(
    "candidates, kept, message",
    [
        ([1, 2, 3, 4, 5], [1, 2, 3], r"skipped candidates 4, 5: more components than the 3"),
        ([5, 2], [2], r"skipped candidate 5: more components than the 3"),
        (range(1, 10**12), [1, 2, 3], r"skipped 999999999996 candidates from 4 to 999999999999"),
    ],
)
def test_candidates_above_the_sample_count_are_skipped_with_one_warning(candidates, kept, message):
    with pytest.warns(UserWarning, match=message) as record:
        selection = select_mixture(BASE[:3], candidates, random_state=0, max_iter=5)
    assert [r["n_components"] for r in selection.results_] == kept
    assert sum("skipped" in str(w.message) for w in record) == 1


def test_no_warning_when_every_candidate_fits(recwarn):
    select_mixture(BASE[:30], [1, 2], random_state=0, max_iter=5)
    assert not [w for w in recwarn if "skipped" in str(w.message)]


@pytest.mark.parametrize("candidates", [[4, 5], range(4, 9)])
def test_no_candidate_left_is_refused(candidates):
    with pytest.raises(ValueError, match="fewer than every candidate n_components"):
        select_mixture(BASE[:3], candidates, random_state=0)
