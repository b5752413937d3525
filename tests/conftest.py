"""Shared fixtures for the gmmfast test suite.

Datasets are small and generated from fixed seeds. The ``sklearn_pair``
fixture fits scikit-learn and gmmfast from the *same* initial parameters,
so tests can compare them attribute by attribute.
"""

from __future__ import annotations

import os

# Must be set before gmmfast loads libgomp. With the default (spinning)
# wait policy, every OpenMP barrier busy-waits for a thread the OS has
# descheduled when the 2 cores are shared with other processes, which
# made parts of this suite 10-100x slower on a loaded CI box. Passive
# waiting changes timings only, never results. An explicit setting in
# the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import gmmfast

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="session", autouse=True)
def _single_threaded_blas():
    """Keep BLAS (used by scipy/numpy/sklearn outside the kernels) on one thread.

    On a 2-core CI box a multi-threaded BLAS competing with OpenMP threads
    (or with another process) spins and makes small factorisations 50x
    slower. gmmfast's own kernels already run BLAS single-threaded, and
    no test compares results across BLAS thread counts, so this only
    affects speed.
    """
    with threadpool_limits(1, user_api="blas"):
        yield


# --------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A named test dataset: samples, true labels, number of components."""

    name: str
    X: np.ndarray
    y: np.ndarray
    n_components: int

    @property
    def scales(self) -> np.ndarray:
        """Per-feature standard deviation, used for scale-aware comparisons."""
        return self.X.std(axis=0)


def _blobs(rng, centers, n_per, cov_factors=None):
    X, y = [], []
    for k, c in enumerate(centers):
        z = rng.standard_normal((n_per, len(c)))
        if cov_factors is not None:
            z = z @ cov_factors[k]
        X.append(np.asarray(c) + z)
        y.append(np.full(n_per, k))
    X, y = np.vstack(X), np.concatenate(y)
    perm = rng.permutation(len(X))
    return X[perm], y[perm]


def make_separated_blobs(seed: int = 0, n_per: int = 80) -> Dataset:
    """Three well-separated isotropic 2-d blobs."""
    rng = np.random.RandomState(seed)
    X, y = _blobs(rng, [(0.0, 0.0), (12.0, 0.0), (0.0, 12.0)], n_per)
    return Dataset("separated", X, y, 3)


def make_anisotropic_blobs(seed: int = 1, n_per: int = 100) -> Dataset:
    """Three correlated (sheared) 3-d blobs, overlapping a little."""
    rng = np.random.RandomState(seed)
    factors = [
        np.array([[1.0, 0.8, 0.0], [0.0, 0.5, 0.3], [0.0, 0.0, 0.4]]),
        np.array([[0.6, -0.5, 0.2], [0.0, 1.2, 0.0], [0.0, 0.3, 0.5]]),
        np.array([[0.5, 0.0, 0.0], [0.4, 0.7, 0.0], [0.2, -0.3, 1.0]]),
    ]
    X, y = _blobs(rng, [(0.0, 0.0, 0.0), (4.0, 1.0, -2.0), (-3.0, 4.0, 2.0)], n_per, factors)
    return Dataset("anisotropic", X, y, 3)


def make_scaled_features(seed: int = 2, n_per: int = 80) -> Dataset:
    """Two blobs in 3-d whose features have scales 1e-3, 1 and 1e3."""
    rng = np.random.RandomState(seed)
    X, y = _blobs(rng, [(0.0, 0.0, 0.0), (5.0, -4.0, 3.0)], n_per)
    X = X * np.array([1e-3, 1.0, 1e3]) + np.array([0.01, -2.0, 500.0])
    return Dataset("scaled", X, y, 2)


def make_one_feature(seed: int = 3, n_per: int = 100) -> Dataset:
    """Two 1-d clusters with different spreads."""
    rng = np.random.RandomState(seed)
    X = np.r_[rng.normal(-2.0, 0.5, n_per), rng.normal(3.0, 1.5, n_per)][:, None]
    y = np.repeat([0, 1], n_per)
    return Dataset("one_feature", X, y, 2)


def make_single_component(seed: int = 4, n: int = 150) -> Dataset:
    """One correlated 2-d Gaussian, fitted with K=1."""
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, 2)) @ np.array([[2.0, 0.5], [0.0, 0.7]]) + np.array([1.0, -1.0])
    return Dataset("single_component", X, np.zeros(n, dtype=int), 1)


DATASET_MAKERS = {
    "separated": make_separated_blobs,
    "anisotropic": make_anisotropic_blobs,
    "scaled": make_scaled_features,
    "one_feature": make_one_feature,
    "single_component": make_single_component,
}


@pytest.fixture(scope="session")
def datasets() -> dict[str, Dataset]:
    """All named datasets (treat as read-only; copy before modifying)."""
    return {name: maker() for name, maker in DATASET_MAKERS.items()}


@pytest.fixture
def blobs() -> Dataset:
    """A fresh copy of the well-separated blobs (safe to modify)."""
    return make_separated_blobs()


@pytest.fixture(scope="session")
def mnist_sample():
    """The embedded MNIST sample: (X_train, y_train, X_test, y_test)."""
    from gmmfast.datasets import load_mnist_sample

    return load_mnist_sample()


# --------------------------------------------------------------------------
# Models initialised identically in scikit-learn and gmmfast
# --------------------------------------------------------------------------


def sklearn_initial_parameters(X, n_components, covariance_type, seed=0):
    """Initial (weights, means, precisions) from a 2-iteration sklearn fit."""
    from sklearn.mixture import GaussianMixture as SkGM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SkGM(
            n_components, covariance_type=covariance_type, max_iter=2, tol=0.0, random_state=seed
        ).fit(X)
    return {
        "weights_init": sk.weights_.copy(),
        "means_init": sk.means_.copy(),
        "precisions_init": sk.precisions_.copy(),
    }


def fit_pair(X, n_components, covariance_type, init, **kwargs):
    """Fit sklearn's and gmmfast's GaussianMixture from the same ``init``."""
    from sklearn.mixture import GaussianMixture as SkGM

    params = dict(n_components=n_components, covariance_type=covariance_type, **init, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # either may warn about convergence
        sk = SkGM(**params).fit(X)
        gm = gmmfast.GaussianMixture(**params).fit(X)
    return sk, gm


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def _sklearn_pairs(datasets):
    cache = {}

    def get(covariance_type):
        if covariance_type not in cache:
            data = datasets["anisotropic"]
            init = sklearn_initial_parameters(data.X, data.n_components, covariance_type)
            cache[covariance_type] = fit_pair(data.X, data.n_components, covariance_type, init)
        return cache[covariance_type]

    return get


@pytest.fixture
def sklearn_pair(_sklearn_pairs, covariance_type, datasets):
    """(sklearn model, gmmfast model, X) fitted from identical initial parameters.

    Both fitted once per covariance type and shared: do not modify them.
    """
    sk, gm = _sklearn_pairs(covariance_type)
    return sk, gm, datasets["anisotropic"].X
