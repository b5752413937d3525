"""Degenerate data: empty components, constant features, singular covariances."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, fit_pair
from numpy.testing import assert_allclose
from sklearn.metrics import adjusted_rand_score

import gmmfast
from gmmfast import GaussianMixture

FAR = 1e4


def _assert_no_nan(gm, X):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        value = getattr(gm, name)
        assert not np.isnan(value).any(), name
        assert np.isfinite(value).all(), name
    assert np.isfinite(gm.precisions_).all()
    assert np.isfinite(gm.score_samples(X)).all()
    proba = gm.predict_proba(X)
    assert not np.isnan(proba).any()
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.isfinite(gm.lower_bound_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_component_far_from_data_yields_no_nan(blobs, covariance_type):
    """A component with a mean far from every sample loses them all without any NaN."""
    means = np.array([[0.0, 0.0], [12.0, 0.0], [FAR, FAR]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no 0/0 or log(0) on the way
        gm = GaussianMixture(3, covariance_type=covariance_type, means_init=means, random_state=0)
        gm.fit(blobs.X)
    _assert_no_nan(gm, blobs.X)
    # The far component ends up (nearly) weightless, the others share the data.
    assert gm.weights_[2] < 1e-10
    assert_allclose(gm.weights_.sum(), 1.0, rtol=1e-12)
    assert np.all(gm.predict(blobs.X) != 2)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_empty_component_matches_sklearn(blobs, covariance_type):
    """Fully specified init with an empty component: same fitted model as sklearn."""
    K, D = 3, 2
    init = {
        "weights_init": np.full(K, 1.0 / K),
        "means_init": np.array([[0.0, 0.0], [6.0, 6.0], [FAR, -FAR]]),
        "precisions_init": {
            "full": np.stack([np.eye(D)] * K),
            "tied": np.eye(D),
            "diag": np.ones((K, D)),
            "spherical": np.ones(K),
        }[covariance_type],
    }
    sk, gm = fit_pair(blobs.X, K, covariance_type, init)
    _assert_no_nan(gm, blobs.X)
    assert gm.n_iter_ == sk.n_iter_
    # An emptied component's parameters are ~0 and reg_covar-sized: compare absolutely.
    assert_allclose(gm.weights_, sk.weights_, rtol=1e-6, atol=1e-15)
    assert_allclose(gm.means_, sk.means_, rtol=1e-6, atol=1e-9)
    assert_allclose(gm.covariances_, sk.covariances_, rtol=1e-6, atol=1e-9)
    assert_allclose(gm.score_samples(blobs.X), sk.score_samples(blobs.X), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("value", [0.0, 5.0])
def test_constant_feature_with_default_reg_covar(blobs, covariance_type, value):
    """A constant feature is fine with the default reg_covar (its variance becomes reg_covar)."""
    X = np.c_[blobs.X, np.full(len(blobs.X), value)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    _assert_no_nan(gm, X)
    assert_allclose(gm.means_[:, 2], value, rtol=1e-12, atol=1e-12)
    if covariance_type == "full":
        assert_allclose(gm.covariances_[:, 2, 2], gm.reg_covar, rtol=1e-6)
    elif covariance_type == "tied":
        assert_allclose(gm.covariances_[2, 2], gm.reg_covar, rtol=1e-6)
    elif covariance_type == "diag":
        assert_allclose(gm.covariances_[:, 2], gm.reg_covar, rtol=1e-6)
    # The informative features still separate the blobs.
    assert adjusted_rand_score(blobs.y, gm.predict(X)) == 1.0


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
@pytest.mark.parametrize("value", [0.0, 5.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_constant_feature_without_reg_covar_raises(blobs, covariance_type, value, dtype):
    """reg_covar=0 and a constant feature: ValueError that points at reg_covar."""
    X = np.c_[blobs.X, np.full(len(blobs.X), value)]
    gm = GaussianMixture(
        3, covariance_type=covariance_type, reg_covar=0.0, dtype=dtype, random_state=0
    )
    with pytest.raises(ValueError, match="reg_covar"):
        gm.fit(X)


def test_collapsed_components_on_repeated_points(covariance_type):
    """Three distinct points repeated, three components: each collapses, nothing breaks."""
    X = np.repeat(np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]]), 20, axis=0)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    _assert_no_nan(gm, X)
    assert sorted(np.bincount(gm.predict(X), minlength=3)) == [20, 20, 20]
    if covariance_type in ("diag", "spherical"):
        assert_allclose(gm.covariances_, gm.reg_covar, rtol=1e-6)
    elif covariance_type == "full":
        assert_allclose(
            gm.covariances_,
            np.broadcast_to(gm.reg_covar * np.eye(2), (3, 2, 2)),
            rtol=1e-6,
            atol=1e-15,
        )


def test_more_components_than_distinct_points_is_finite():
    """Five components on two distinct points: empty components stay finite."""
    X = np.repeat(np.array([[1.0, 2.0], [4.0, -1.0]]), 10, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        gm = GaussianMixture(5, init_params="random", random_state=0).fit(X)
    _assert_no_nan(gm, X)
