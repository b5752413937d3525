"""The M-step's responsibility floor: bounded, and invisible in the fitted parameters."""

import warnings

import numpy as np
import pytest

from gmmfast import GaussianMixture
from gmmfast.datasets import load_mnist_sample
from gmmfast.mixture._gaussian import floor_responsibilities


def test_floor_drops_a_bounded_mass_and_keeps_each_samples_largest():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((500, 6)) * 15  # very peaked rows
    resp = np.exp(logits - logits.max(axis=1, keepdims=True))
    resp /= resp.sum(axis=1, keepdims=True)
    original = resp.copy()
    floor = 1e-6
    out = floor_responsibilities(resp, floor)
    assert out is resp  # in place
    dropped = original * (resp == 0)
    assert dropped.any()
    np.testing.assert_array_less(dropped.sum(axis=0), floor * original.sum(axis=0) + 1e-300)
    rows = np.arange(len(resp))
    np.testing.assert_array_equal(resp[rows, original.argmax(axis=1)], original.max(axis=1))
    kept = resp != 0
    np.testing.assert_array_equal(resp[kept], original[kept])  # survivors unchanged


def test_floor_zero_changes_nothing():
    resp = np.full((4, 2), 0.5)
    resp[0] = [1.0, 1e-300]
    before = resp.copy()
    floor_responsibilities(resp, 0.0)
    np.testing.assert_array_equal(resp, before)


@pytest.fixture(scope="module")
def digits():
    X = load_mnist_sample()[0][:1500]
    return X.reshape(len(X), -1).astype(np.float64)


def _init(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = GaussianMixture(8, reg_covar=0.1, max_iter=2, random_state=0).fit(X)
    return dict(weights_init=g.weights_, means_init=g.means_, precisions_init=g.precisions_)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_floored_and_exact_fits_agree_where_the_floor_bites(digits, covariance_type):
    """On digits most responsibilities are below the floor (checked), yet the
    fitted parameters agree with exact EM to 1e-10 of their scale."""
    init = _init(digits)
    if covariance_type == "diag":
        init["precisions_init"] = np.diagonal(init["precisions_init"], axis1=1, axis2=2).copy()
    kw = dict(reg_covar=0.1, max_iter=4, tol=0, covariance_type=covariance_type, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = GaussianMixture(8, resp_floor=0.0, **kw).fit(digits)
        floored = GaussianMixture(8, **kw).fit(digits)
    resp = exact.predict_proba(digits)
    below = resp < floored.resp_floor * resp.sum(axis=0) / len(resp)
    assert below.mean() > 0.5, "the floor should have something to drop here"
    for name in ("weights_", "means_", "covariances_"):
        a, b = getattr(exact, name), getattr(floored, name)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-10 * np.abs(a).max(), err_msg=name)
    assert abs(exact.lower_bound_ - floored.lower_bound_) <= 1e-10 * abs(exact.lower_bound_)


def test_a_sample_far_from_every_component_still_counts():
    """Its densities underflow in absolute terms, but responsibilities are
    normalised per sample, so its largest survives the floor and it moves a mean."""
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(200, 2), rng.randn(200, 2) + 8, [[1e3, -1e3]]]
    kw = dict(
        max_iter=1,
        tol=0,
        random_state=0,
        weights_init=[0.5, 0.5],
        means_init=[[0.0, 0.0], [8.0, 8.0]],
        precisions_init=np.stack([np.eye(2)] * 2),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        floored = GaussianMixture(2, resp_floor=1e-3, **kw).fit(X)
        exact = GaussianMixture(2, resp_floor=0.0, **kw).fit(X)
        without = GaussianMixture(2, resp_floor=0.0, **kw).fit(X[:-1])
    np.testing.assert_allclose(floored.means_, exact.means_, rtol=1e-12)
    assert np.abs(floored.means_ - without.means_).max() > 1.0  # the outlier pulled a mean
    assert np.isfinite(floored.covariances_).all()


@pytest.mark.parametrize("bad", [-1e-9, 0.01, float("nan"), "1e-12", True])
def test_resp_floor_is_checked(bad):
    with pytest.raises(ValueError, match="resp_floor"):
        GaussianMixture(resp_floor=bad).fit(np.random.RandomState(0).randn(20, 2))
