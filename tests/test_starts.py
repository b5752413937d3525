"""Kinds of start for EM: init_params='diverse' (the default) and 'agglomerative'."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from gmmfast import GaussianMixture
from gmmfast.mixture import _starts
from gmmfast.mixture._agglomerative import agglomerative_labels

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def stripes(seed: int, x_std: float = 6.0, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Three parallel horizontal stripes: x ~ N(0, x_std), y ~ N(-2 | 0 | 2, 0.3)."""
    rng = np.random.default_rng(seed)
    X = np.vstack([np.c_[rng.normal(0, x_std, n), rng.normal(c, 0.3, n)] for c in (-2, 0, 2)])
    return X, np.repeat([0, 1, 2], n)


def test_rotation_of_kinds():
    kinds = [_starts.start_kind("diverse", i) for i in range(6)]
    assert kinds[:4] == list(_starts.DIVERSE_STARTS)
    assert kinds[4:] == kinds[:2]
    assert kinds[0] == "kmeans"
    assert _starts.start_kind("k-means++", 3) == "k-means++"


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_diverse_with_one_init_is_kmeans(covariance_type):
    """n_init=1 fits exactly as init_params='kmeans' (scikit-learn's default start)."""
    X, _ = stripes(0, n=200)
    kw = dict(n_components=3, covariance_type=covariance_type, random_state=3)
    a = GaussianMixture(init_params="diverse", **kw).fit(X)
    b = GaussianMixture(init_params="kmeans", **kw).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert GaussianMixture().init_params == "diverse"


@pytest.mark.parametrize("seed", range(5))
def test_diverse_finds_stripes_where_kmeans_start_is_trapped(seed):
    """The trap the rotation exists for: k-means' start cuts across the stripes."""
    X, y = stripes(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trapped = GaussianMixture(3, init_params="kmeans", n_init=5, random_state=seed).fit(X)
        diverse = GaussianMixture(3, n_init=5, random_state=seed).fit(X)
    assert adjusted_rand_score(y, trapped.predict(X)) < 0.6
    assert adjusted_rand_score(y, diverse.predict(X)) > 0.99
    assert diverse.lower_bound_ > trapped.lower_bound_


@pytest.mark.parametrize("seed", range(3))
def test_agglomerative_start_alone_finds_stripes(seed):
    X, y = stripes(seed, x_std=4.0)
    model = GaussianMixture(3, init_params="agglomerative", random_state=seed).fit(X)
    assert adjusted_rand_score(y, model.predict(X)) > 0.99


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_features", [1, 3, 80])
def test_agglomerative_labels_cover_every_component(covariance_type, n_features):
    """Every component gets samples, for each merge criterion (diagonal beyond 64 features)."""
    rng = np.random.default_rng(1)
    centres = 10.0 * np.arange(4)[:, None] * np.ones(n_features)  # 10 apart on every feature
    X = rng.normal(size=(300, n_features)) + np.repeat(centres, 75, 0)
    labels = agglomerative_labels(X, 4, covariance_type, np.random.RandomState(0), n_threads=1)
    assert labels.shape == (300,)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    y = np.repeat(np.arange(4), 75)
    assert adjusted_rand_score(y, labels) > 0.95


def test_agglomerative_with_fewer_samples_than_micro_clusters():
    """Fewer samples than 10 K micro-clusters: each sample starts as its own group."""
    X = np.arange(24, dtype=float).reshape(12, 2) ** 1.5
    labels = agglomerative_labels(X, 3, "full", np.random.RandomState(0), n_threads=1)
    assert set(np.unique(labels)) == {0, 1, 2}


def test_agglomerative_with_duplicate_points():
    """k-means micro-clusters left empty by duplicates are dropped, not merged as NaN."""
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0]]), 40, axis=0)
    labels = agglomerative_labels(X, 3, "full", np.random.RandomState(0), n_threads=1)
    assert adjusted_rand_score(np.repeat([0, 1, 2], 40), labels) == 1.0


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("kind", _starts.DIVERSE_STARTS[1:])
def test_each_start_gives_valid_parameters(covariance_type, kind):
    X, _ = stripes(2, n=100)
    nk, means, covariances = _starts.initial_parameters(
        X, kind, 3, covariance_type, 1e-6, np.random.RandomState(0), n_threads=1
    )
    assert nk.shape == (3,) and np.isclose(nk.sum(), len(X), rtol=1e-6)
    assert means.shape == (3, 2) and np.isfinite(means).all()
    expected = {"full": (3, 2, 2), "tied": (2, 2), "diag": (3, 2), "spherical": (3,)}
    assert covariances.shape == expected[covariance_type]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["agglomerative", "diverse"])
def test_fits_from_the_new_starts(covariance_type, init_params):
    X, _ = stripes(2, n=100)
    model = GaussianMixture(
        3, covariance_type=covariance_type, init_params=init_params, n_init=4, random_state=0
    ).fit(X)
    assert np.isfinite(model.lower_bound_) and np.isclose(model.weights_.sum(), 1.0)


def test_broad_start_carries_the_data_covariance():
    X, _ = stripes(0, n=100)
    _, _, covariances = _starts.initial_parameters(
        X, "random_from_data-broad", 3, "full", 0.0, np.random.RandomState(0), n_threads=1
    )
    expected = np.cov(X.T, bias=True)
    for cov in covariances:
        np.testing.assert_allclose(cov, expected, rtol=1e-10)


def test_diverse_input_not_modified_and_reproducible():
    X, _ = stripes(4, n=100)
    copy = X.copy()
    a = GaussianMixture(3, n_init=4, random_state=7).fit(X)
    b = GaussianMixture(3, n_init=4, random_state=7).fit(X)
    np.testing.assert_array_equal(X, copy)
    np.testing.assert_array_equal(a.means_, b.means_)


def test_unknown_init_params_named():
    with pytest.raises(ValueError, match="init_params"):
        GaussianMixture(init_params="whitened").fit(np.zeros((10, 2)) + np.arange(10)[:, None])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_agglomerative_with_a_constant_feature_and_identical_points(covariance_type):
    """Zero variance (a constant feature, or all points equal) merges finitely."""
    X, y = stripes(0, n=100)
    X = np.c_[X, np.full(len(X), 3.0)]
    labels = agglomerative_labels(X, 3, covariance_type, np.random.RandomState(0), n_threads=1)
    assert set(np.unique(labels)) == {0, 1, 2}
    same = np.ones((50, 2))
    labels = agglomerative_labels(same, 2, covariance_type, np.random.RandomState(0), n_threads=1)
    assert labels.shape == (50,) and set(np.unique(labels)) <= {0, 1}
    model = GaussianMixture(3, covariance_type=covariance_type, n_init=2, random_state=0).fit(X)
    assert np.isfinite(model.lower_bound_)
