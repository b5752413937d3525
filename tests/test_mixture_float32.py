"""float32 compute (dtype=np.float32) on MNIST-sized data and small data.

Tolerances. float32 has a unit roundoff of 6e-8. The E-step of a float32
model differs from float64 only by float32 rounding of the centred
samples and of the triangular product, a relative error of order
sqrt(D) * 6e-8 ~ 2e-6 for D = 784 on each squared distance, so on the
*same parameters* the log-likelihood must agree to 1e-5 relative. A whole
float32 *fit* also rounds its scatter sums in float32 and the rounding
feeds back through 20 EM iterations on near-singular 784-d covariances
(blank pixels have variance reg_covar = 1e-6), so there we only ask for
1e-3 relative agreement of the mean log-likelihood (three significant
digits), the precision the float32 mode is meant to deliver.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, sklearn_initial_parameters
from numpy.testing import assert_allclose, assert_array_equal

import gmmfast
from gmmfast import GaussianMixture

N_MNIST = 3000
K_MNIST = 10


@pytest.fixture(scope="module")
def mnist_X(mnist_sample):
    X = mnist_sample[0][:N_MNIST]
    assert X.dtype == np.float32 and X.shape == (N_MNIST, 784)
    return X


@pytest.fixture(scope="module")
def mnist_kmeans_float32(mnist_X):
    """The reference float32 fit (k-means init), with the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = GaussianMixture(
            n_components=K_MNIST,
            covariance_type="full",
            dtype=np.float32,
            max_iter=20,
            random_state=0,
        ).fit(mnist_X)
    return gm, caught


@pytest.fixture(scope="module")
def mnist_label_init(mnist_sample):
    """Initial parameters from the digit labels: class weights, means, regularised precisions."""
    X, y = mnist_sample[0][:N_MNIST].astype(np.float64), mnist_sample[1][:N_MNIST]
    weights = np.bincount(y, minlength=K_MNIST) / len(y)
    means = np.stack([X[y == k].mean(axis=0) for k in range(K_MNIST)])
    precisions = np.stack(
        [np.linalg.inv(np.cov(X[y == k].T) + 0.01 * np.eye(X.shape[1])) for k in range(K_MNIST)]
    )
    precisions = 0.5 * (precisions + precisions.transpose(0, 2, 1))
    return {"weights_init": weights, "means_init": means, "precisions_init": precisions}


@pytest.fixture(scope="module")
def mnist_same_init_pair(mnist_X, mnist_label_init):
    """float32 and float64 fits from identical initial parameters, with their score_samples."""
    models = {}
    for dtype in (np.float32, np.float64):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
            gm = GaussianMixture(
                K_MNIST,
                covariance_type="full",
                dtype=dtype,
                max_iter=20,
                random_state=0,
                **mnist_label_init,
            ).fit(mnist_X)
        models[dtype] = (gm, gm.score_samples(mnist_X))
    return models[np.float32], models[np.float64]


def test_mnist_float32_full_fit_is_clean_and_finite(mnist_kmeans_float32, mnist_X):
    """The 784-d float32 fit (130 always-blank pixels) raises nothing and is finite."""
    assert (mnist_X.max(axis=0) == 0).sum() > 50, "the sample should have blank pixels"
    gm, caught = mnist_kmeans_float32
    unexpected = [w for w in caught if not issubclass(w.category, gmmfast.ConvergenceWarning)]
    assert not unexpected, [str(w.message) for w in unexpected]
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        value = getattr(gm, name)
        assert value.dtype == np.float64, name
        assert np.isfinite(value).all(), name
    assert gm.means_.shape == (K_MNIST, 784)
    assert gm.covariances_.shape == (K_MNIST, 784, 784)
    assert_allclose(gm.weights_.sum(), 1.0, rtol=1e-12)
    assert np.isfinite(gm.lower_bound_) and 1 <= gm.n_iter_ <= 20
    # Covariances are symmetric positive definite, factors upper-triangular.
    assert_allclose(gm.covariances_, gm.covariances_.transpose(0, 2, 1), rtol=0, atol=0)
    assert np.all(np.tril(gm.precisions_cholesky_, -1) == 0)
    assert np.all(np.diagonal(gm.precisions_cholesky_, axis1=1, axis2=2) > 0)


def test_mnist_float32_outputs_are_float64(mnist_kmeans_float32, mnist_sample):
    """Inference on the float32 model returns float64 arrays, finite on unseen digits."""
    gm, _ = mnist_kmeans_float32
    X_test = mnist_sample[2][:200]
    scores = gm.score_samples(X_test)
    proba = gm.predict_proba(X_test)
    assert scores.dtype == np.float64 and proba.dtype == np.float64
    assert np.isfinite(scores).all() and np.isfinite(proba).all()
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-10)
    assert isinstance(gm.score(X_test), float)
    assert gm.predict(X_test).shape == (200,)


def test_mnist_float32_kernel_matches_float64_on_same_parameters(mnist_kmeans_float32, mnist_X):
    """On identical parameters, float32 score_samples agree with float64 to 1e-5 relative."""
    gm32, _ = mnist_kmeans_float32
    gm64 = GaussianMixture(K_MNIST, covariance_type="full", dtype=np.float64)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "n_features_in_"):
        setattr(gm64, name, getattr(gm32, name))
    X = mnist_X[:500]
    s32, s64 = gm32.score_samples(X), gm64.score_samples(X)
    scale = np.abs(s64).mean()
    assert_allclose(s32, s64, rtol=1e-5, atol=1e-5 * scale)


def test_mnist_float32_fit_close_to_float64_fit(mnist_same_init_pair, mnist_X):
    """From the same initial parameters, float32 and float64 fits agree to 1e-3 relative."""
    (gm32, s32), (gm64, s64) = mnist_same_init_pair
    assert gm64.n_iter_ > 1
    assert_allclose(gm32.lower_bound_, gm64.lower_bound_, rtol=1e-3)
    assert_allclose(s32.mean(), s64.mean(), rtol=1e-3)
    scale = np.abs(s64).mean()
    assert_allclose(s32, s64, rtol=1e-3, atol=1e-3 * scale)
    assert_allclose(gm32.weights_, gm64.weights_, rtol=1e-3, atol=1e-6)
    assert_allclose(gm32.means_, gm64.means_, rtol=0, atol=1e-3)  # pixels lie in [0, 1]
    assert (gm32.predict(mnist_X) == gm64.predict(mnist_X)).mean() > 0.99


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_small_float32_fit_close_to_float64_fit(datasets, covariance_type):
    """On small, well-conditioned data float32 fits match float64 fits to 1e-4 relative.

    The data rounded to float32 moves by 6e-8 relative; a well-conditioned
    EM fit amplifies that by far less than the 1e3 this tolerance allows.
    """
    data = datasets["anisotropic"]
    init = sklearn_initial_parameters(data.X, data.n_components, covariance_type)
    fits = {}
    for dtype in (np.float32, np.float64):
        fits[dtype] = GaussianMixture(
            data.n_components, covariance_type=covariance_type, dtype=dtype, tol=1e-8, **init
        ).fit(data.X)
    a, b = fits[np.float32], fits[np.float64]
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(a, name).dtype == np.float64
        assert_allclose(
            getattr(a, name),
            getattr(b, name),
            rtol=1e-4,
            atol=1e-4 * np.abs(getattr(b, name)).max(),
            err_msg=name,
        )
    assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-5)
    assert_allclose(a.score_samples(data.X), b.score_samples(data.X), rtol=1e-4, atol=1e-4)
    assert_array_equal(a.predict(data.X), b.predict(data.X))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_model_accepts_float64_and_int_input(blobs, covariance_type):
    """A float32 model rounds any input to float32 the same way."""
    gm = GaussianMixture(3, covariance_type=covariance_type, dtype=np.float32, random_state=0)
    X = np.round(blobs.X)
    gm.fit(X)
    ref = gm.score_samples(X.astype(np.float32))
    assert ref.dtype == np.float64
    assert_array_equal(gm.score_samples(X), ref)
    assert_array_equal(gm.score_samples(X.astype(np.int64)), ref)
