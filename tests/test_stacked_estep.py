"""The low-K x D E-step of full and tied covariances as one GEMM per chunk (issue 30):
``estep_full_stacked`` against NumPy formulas and against the per-component
``estep_full`` it replaces where the stacked width is small, and whole fits
against scikit-learn.

Tolerances as tests/test_diag_speed_path.py: float64 results to 1e-12 relative
to their scale, float32 products (on float64-centred rows) to 1e-5.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from gmmfast import GaussianMixture
from gmmfast._kernels import _estep
from gmmfast.mixture import _gaussian

LOG_2PI = np.log(2 * np.pi)
N, D, K = 211, 6, 5  # 211 is prime: no chunk size below it divides it


def _rtol(dtype):
    return 1e-12 if dtype == np.float64 else 1e-5


def _problem(dtype, tied=False, seed=0, offset=3.0):
    rng = np.random.RandomState(seed)
    X = (offset + 2.0 * rng.standard_normal((N, D))).astype(dtype)
    means = offset + 2.0 * rng.standard_normal((K, D))
    factors = []
    for _ in range(1 if tied else K):
        a = rng.standard_normal((D, D))
        precision = a @ a.T + D * np.eye(D)
        # Upper U with U U^T = precision, as gmmfast stores it.
        factors.append(_gaussian.precision_cholesky_from_precisions(precision[None], "full")[0])
    factors = np.array(factors)
    log_weights = np.log(rng.dirichlet(np.ones(K)))
    return X, means, factors, log_weights


def _weighted(X, means, factors, log_weights):
    """Reference weighted log-densities: z = (x - mu) U in float64."""
    out = np.empty((len(X), len(means)))
    for k in range(len(means)):
        u = factors[0 if len(factors) == 1 else k]
        z = (X.astype(np.float64) - means[k]) @ u
        out[:, k] = -0.5 * (X.shape[1] * LOG_2PI + (z**2).sum(1)) + np.log(np.diag(u)).sum()
        out[:, k] += log_weights[k]
    return out


def _run(X, means, factors, log_weights, mode, chunk, n_threads):
    tied = len(factors) == 1 and len(means) > 1
    log_det = np.broadcast_to(np.log(np.diagonal(factors, axis1=1, axis2=2)).sum(1), (K,)).copy()
    stacked = np.ascontiguousarray(factors.transpose(1, 0, 2).reshape(D, -1), dtype=X.dtype)
    out = np.full((len(X), len(means)), np.nan)
    log_norm = np.full(len(X), np.nan)
    status = _estep.estep_full_stacked(
        X,
        means,
        stacked,
        factors,
        tied,
        log_det,
        log_weights,
        out,
        log_norm,
        mode,
        chunk,
        n_threads,
    )
    assert status == 0
    return out, log_norm


def _expected(weighted, mode):
    log_norm = logsumexp(weighted, axis=1)
    if mode == 0:
        return weighted, log_norm
    if mode == 1:
        return weighted - log_norm[:, None], log_norm
    return np.exp(weighted - log_norm[:, None]), log_norm


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 10, 64, N, 500])
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("tied", [False, True], ids=["full", "tied"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_stacked_estep_matches_numpy(dtype, tied, mode, chunk, n_threads):
    X, means, factors, log_weights = _problem(dtype, tied)
    weighted = _weighted(X, means, factors, log_weights)
    out, log_norm = _run(X, means, factors, log_weights, mode, chunk, n_threads)
    ref_out, ref_norm = _expected(weighted, mode)
    rtol, scale = _rtol(dtype), np.abs(weighted).max()
    assert_allclose(log_norm, ref_norm, rtol=rtol, atol=rtol * scale)
    if mode == 2:
        assert_allclose(out, ref_out, rtol=rtol * 10, atol=rtol * 10)
        assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
    else:
        assert_allclose(out, ref_out, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_stacked_estep_does_not_depend_on_threads(dtype):
    X, means, factors, log_weights = _problem(dtype, seed=5)
    for chunk in (7, 64):
        ref = _run(X, means, factors, log_weights, 2, chunk, 1)
        for n_threads in (2, 3):
            got = _run(X, means, factors, log_weights, 2, chunk, n_threads)
            assert_array_equal(got[0], ref[0])
            assert_array_equal(got[1], ref[1])


def test_stacked_estep_is_centred():
    """Data 1e6 from the origin with unit spread: the chunk centre keeps float64
    results at 1e-12 of their scale (expanding around 0 would lose about 1e-4)."""
    X, means, factors, log_weights = _problem(np.float64, seed=1, offset=1e6)
    weighted = _weighted(X, means, factors, log_weights)
    out, _ = _run(X, means, factors, log_weights, 0, 16, 2)
    assert_allclose(out, weighted, rtol=1e-12, atol=1e-12 * np.abs(weighted).max())


@pytest.mark.parametrize("tied", [False, True], ids=["full", "tied"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_stacked_and_per_component_kernels_agree(dtype, tied):
    """``estimate_log_prob`` through the stacked kernel and through ``estep_full``."""
    X, means, factors, log_weights = _problem(dtype, tied, seed=2)
    kind = "tied" if tied else "full"
    prec = factors[0] if tied else factors
    weights = np.exp(log_weights)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_gaussian, "STACKED_TYPES", ("full", "tied"))
        assert _gaussian.full_uses_stacked(K, D, kind)
        stacked = _gaussian.estimate_log_prob(X, weights, means, prec, kind, mode=1, n_threads=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_gaussian, "STACKED_TYPES", ())
        assert not _gaussian.full_uses_stacked(K, D, kind)
        trmm = _gaussian.estimate_log_prob(X, weights, means, prec, kind, mode=1, n_threads=2)
    scale = np.abs(trmm[0]).max()
    assert_allclose(stacked[0], trmm[0], rtol=0, atol=_rtol(dtype) * scale)
    assert_allclose(stacked[1], trmm[1], rtol=0, atol=_rtol(dtype) * np.abs(trmm[1]).max())


def test_stacked_kernel_refuses_bad_shapes():
    X, means, factors, log_weights = _problem(np.float64)
    log_det = np.zeros(K)
    out, log_norm = np.empty((N, K)), np.empty(N)
    wrong = np.zeros((D, K * D - 1))
    status = _estep.estep_full_stacked(
        X, means, wrong, factors, False, log_det, log_weights, out, log_norm, 0, 16, 1
    )
    assert status == -2  # STATUS_BAD_SHAPE


def test_offsets_beyond_float32_fall_back_to_the_per_component_kernel():
    """A mean so far from the samples that (mu - c) U overflows float32: the stacked
    kernel declines and ``estimate_log_prob`` runs ``estep_full`` instead."""
    X, means, factors, log_weights = _problem(np.float32, tied=True, seed=3)
    means = means.copy()
    means[0] = 1e20
    weights = np.exp(log_weights)
    assert _gaussian.full_uses_stacked(K, D, "tied")
    got = _gaussian.estimate_log_prob(X, weights, means, factors[0], "tied", mode=0, n_threads=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_gaussian, "STACKED_TYPES", ())
        ref = _gaussian.estimate_log_prob(
            X, weights, means, factors[0], "tied", mode=0, n_threads=1
        )
    assert_array_equal(got[0], ref[0])


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_low_d_fit_agrees_with_sklearn(covariance_type):
    rng = np.random.default_rng(0)
    X = np.r_[
        rng.normal(size=(400, 4)), rng.normal(size=(400, 4)) + 4, rng.normal(size=(300, 4)) - 4
    ]
    kw = dict(n_components=3, covariance_type=covariance_type, max_iter=20, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = GaussianMixture(init_params="kmeans", **kw).fit(X)
        sk = SkGaussianMixture(
            weights_init=ours.weights_,
            means_init=ours.means_,
            precisions_init=ours.precisions_,
            **kw,
        )
        ours2 = GaussianMixture(
            weights_init=ours.weights_,
            means_init=ours.means_,
            precisions_init=ours.precisions_,
            **kw,
        ).fit(X)
        sk.fit(X)
    assert_allclose(ours2.means_, sk.means_, rtol=1e-6, atol=1e-6)
    assert_allclose(ours2.covariances_, sk.covariances_, rtol=1e-6, atol=1e-6)
    assert_allclose(ours2.lower_bound_, sk.lower_bound_, rtol=1e-6)
