"""Initialisation: init_params, random_state, n_init and warm_start."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, make_separated_blobs
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.metrics import adjusted_rand_score

import gmmfast
from gmmfast import GaussianMixture

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


def _fit_quietly(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        return model.fit(X)


def _six_blobs(seed=0):
    """Six blobs for four components: inits land in different local optima."""
    rng = np.random.RandomState(seed)
    centers = np.array([[0, 0], [6, 0], [0, 6], [6, 6], [3, 3], [12, 0]], dtype=float)
    X = np.vstack([c + 0.7 * rng.standard_normal((40, 2)) for c in centers])
    return X[rng.permutation(len(X))]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_every_init_gives_finite_fit(blobs, init_params, covariance_type):
    """Each init_params value gives a finite, normalised model."""
    gm = _fit_quietly(
        GaussianMixture(
            3, covariance_type=covariance_type, init_params=init_params, random_state=0
        ),
        blobs.X,
    )
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.isfinite(getattr(gm, name)).all(), name
    assert_allclose(gm.weights_.sum(), 1.0, rtol=1e-12)
    assert np.isfinite(gm.lower_bound_)
    assert np.isfinite(gm.score_samples(blobs.X)).all()
    assert gm.n_iter_ >= 1


@pytest.mark.parametrize("seed", range(5))
def test_kmeans_init_recovers_separated_clusters(seed):
    """On clearly separated blobs the k-means initialisation alone finds the true clusters."""
    data = make_separated_blobs(seed=seed)
    init_only = GaussianMixture(3, init_params="kmeans", max_iter=0, random_state=seed).fit(data.X)
    assert adjusted_rand_score(data.y, init_only.predict(data.X)) == 1.0
    fitted = GaussianMixture(3, init_params="kmeans", random_state=seed).fit(data.X)
    assert adjusted_rand_score(data.y, fitted.predict(data.X)) == 1.0
    # The fitted means are the blob centres (each blob has 80 unit-variance points).
    true_means = np.stack([data.X[data.y == k].mean(axis=0) for k in range(3)])
    order = [int(np.argmin(((fitted.means_ - m) ** 2).sum(axis=1))) for m in true_means]
    assert_allclose(fitted.means_[order], true_means, atol=1e-6)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_random_state_makes_fits_repeatable(init_params):
    """The same int seed (or an identically seeded RandomState) gives identical fits."""
    X = _six_blobs()
    a = _fit_quietly(GaussianMixture(4, init_params=init_params, random_state=7, n_init=2), X)
    b = _fit_quietly(GaussianMixture(4, init_params=init_params, random_state=7, n_init=2), X)
    c = _fit_quietly(
        GaussianMixture(
            4, init_params=init_params, random_state=np.random.RandomState(7), n_init=2
        ),
        X,
    )
    for other in (b, c):
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            assert_array_equal(getattr(a, name), getattr(other, name), err_msg=name)
        assert a.lower_bound_ == other.lower_bound_
        assert a.n_iter_ == other.n_iter_


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_random_state_is_used(init_params):
    """Different seeds give different initialisations (random_state is not ignored)."""
    X = _six_blobs()
    inits = [
        GaussianMixture(4, init_params=init_params, max_iter=0, random_state=s).fit(X).means_
        for s in range(4)
    ]
    assert any(not np.allclose(inits[0], m) for m in inits[1:])


def test_n_init_keeps_best_lower_bound():
    """n_init runs draw from one stream; the kept run is the one with the best lower bound."""
    X = _six_blobs()
    n_init = 6
    # The same initialisations, one fit at a time, from a shared RandomState.
    shared = np.random.RandomState(3)
    singles = [
        _fit_quietly(GaussianMixture(4, init_params="random_from_data", random_state=shared), X)
        for _ in range(n_init)
    ]
    bounds = np.array([m.lower_bound_ for m in singles])
    assert np.ptp(bounds) > 1e-3, "the initialisations should reach different optima"

    best = _fit_quietly(
        GaussianMixture(4, init_params="random_from_data", n_init=n_init, random_state=3), X
    )
    expected = singles[int(np.argmax(bounds))]
    assert best.lower_bound_ == bounds.max()
    assert best.lower_bounds_[-1] == best.lower_bound_
    assert best.n_iter_ == expected.n_iter_
    assert best.converged_ == expected.converged_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_allclose(
            getattr(best, name), getattr(expected, name), rtol=1e-12, atol=1e-14, err_msg=name
        )
    # And never worse than its own first initialisation alone.
    first = _fit_quietly(GaussianMixture(4, init_params="random_from_data", random_state=3), X)
    assert first.lower_bound_ == bounds[0]
    assert best.lower_bound_ >= first.lower_bound_


def test_warm_start_continues_previous_solution():
    """Two warm-started fits of 4 iterations equal one fit of 8 iterations."""
    X = _six_blobs()
    kw = dict(n_components=4, init_params="random_from_data", tol=0.0, random_state=0)
    long_fit = _fit_quietly(GaussianMixture(max_iter=8, **kw), X)
    assert not long_fit.converged_

    warm = GaussianMixture(max_iter=4, warm_start=True, **kw)
    _fit_quietly(warm, X)
    first_means = warm.means_.copy()
    _fit_quietly(warm, X)
    assert np.abs(first_means - warm.means_).max() > 1e-3, "second fit should have moved on"
    assert warm.n_iter_ == 4
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_allclose(
            getattr(warm, name), getattr(long_fit, name), rtol=1e-12, atol=1e-14, err_msg=name
        )
    assert_allclose(warm.lower_bounds_, long_fit.lower_bounds_[4:], rtol=1e-12)
    assert_allclose(warm.lower_bound_, long_fit.lower_bound_, rtol=1e-12)


def test_warm_start_ignores_n_init_and_reinit_without_it():
    """warm_start's second fit does a single continuation; warm_start=False restarts."""
    X = _six_blobs()
    kw = dict(n_components=4, init_params="k-means++", max_iter=3, tol=0.0, random_state=0)
    cold = GaussianMixture(**kw)
    _fit_quietly(cold, X)
    means_1 = cold.means_.copy()
    _fit_quietly(cold, X)
    assert_array_equal(cold.means_, means_1)  # re-initialised from the same seed

    warm = GaussianMixture(warm_start=True, n_init=3, **kw)
    _fit_quietly(warm, X)
    bound_1 = warm.lower_bound_
    _fit_quietly(warm, X)
    assert len(warm.lower_bounds_) == 3  # one continuation of max_iter iterations
    assert warm.lower_bound_ >= bound_1 - 1e-12  # EM never decreases the likelihood
