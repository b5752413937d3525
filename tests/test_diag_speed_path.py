"""The BLAS-3 diagonal/spherical path (issue 27): ``estep_diag_gemm`` and
``weighted_diag_stats`` against NumPy formulas, against the term-by-term
kernels they replace from ``DIAG_GEMM_MIN_COMPONENTS`` components on, and
whole fits against the previous path and scikit-learn.

Tolerances follow tests/test_kernels.py: float64 results to 1e-12 relative
to their scale; float32 E-step products run in float32 (unit roundoff 6e-8)
on float64-centred samples, so 1e-5 relative to the scale; the M-step
statistics accumulate in float64 whatever the samples' dtype (1e-12).
Model-level comparisons use tests/test_mixture_threads.py's 1e-10 (float64)
and 1e-5 (float32), and scikit-learn agreement tests/test_mixture_sklearn.py's
1e-6.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import gmmfast
from gmmfast import GaussianMixture
from gmmfast._kernels import _estep, _mstep
from gmmfast._kernels._openmp import openmp_enabled
from gmmfast.mixture import _gaussian

LOG_2PI = np.log(2 * np.pi)
N, D, K = 103, 5, 9  # 103 is prime: no chunk size below it divides it
CHUNKS = [1, 10, 64, N, 500]
THREADS = [1, 2, 3]


def _rtol(dtype):
    return 1e-12 if dtype == np.float64 else 1e-5


def _problem(dtype, seed=0, offset=3.0):
    rng = np.random.RandomState(seed)
    X = (offset + 2.0 * rng.standard_normal((N, D))).astype(dtype)
    means = offset + 2.0 * rng.standard_normal((K, D))
    prec_sqrt = rng.uniform(0.3, 2.0, size=(K, D))
    log_weights = np.log(rng.dirichlet(np.ones(K)))
    return X, means, prec_sqrt, log_weights


def _weighted(X, means, prec_sqrt, log_weights):
    """Reference weighted log-densities, term by term in float64."""
    Xf = X.astype(np.float64)
    out = np.empty((len(X), len(means)))
    for k in range(len(means)):
        sq = (((Xf - means[k]) * prec_sqrt[k]) ** 2).sum(axis=1)
        out[:, k] = -0.5 * (X.shape[1] * LOG_2PI + sq) + np.log(prec_sqrt[k]).sum() + log_weights[k]
    return out


def _run(kernel, X, means, prec_sqrt, log_weights, mode, chunk, n_threads):
    out = np.full((len(X), len(means)), np.nan)
    log_norm = np.full(len(X), np.nan)
    status = kernel(
        X,
        means,
        prec_sqrt,
        np.log(prec_sqrt).sum(axis=1),
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


# --------------------------------------------------------------------------
# E-step kernel
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_estep_diag_gemm_matches_numpy(dtype, mode, chunk, n_threads):
    """Weighted log-densities, log-responsibilities and responsibilities of the GEMM form."""
    X, means, prec_sqrt, log_weights = _problem(dtype)
    weighted = _weighted(X, means, prec_sqrt, log_weights)
    out, log_norm = _run(
        _estep.estep_diag_gemm, X, means, prec_sqrt, log_weights, mode, chunk, n_threads
    )
    ref_out, ref_norm = _expected(weighted, mode)
    rtol, scale = _rtol(dtype), np.abs(weighted).max()
    assert_allclose(log_norm, ref_norm, rtol=rtol, atol=rtol * scale)
    if mode == 2:
        assert_allclose(out, ref_out, rtol=rtol * 10, atol=rtol * 10)
        assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
    else:
        assert_allclose(out, ref_out, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_estep_diag_gemm_does_not_depend_on_threads(dtype):
    """For a given chunk size, every thread count gives identical bits."""
    X, means, prec_sqrt, log_weights = _problem(dtype, seed=5)
    for chunk in (7, 64):
        ref = _run(_estep.estep_diag_gemm, X, means, prec_sqrt, log_weights, 2, chunk, 1)
        for n_threads in (2, 3):
            got = _run(
                _estep.estep_diag_gemm, X, means, prec_sqrt, log_weights, 2, chunk, n_threads
            )
            assert_array_equal(got[0], ref[0])
            assert_array_equal(got[1], ref[1])


def test_estep_diag_gemm_is_centred():
    """Data 1e6 from the origin with unit spread: expanding around 0 (as scikit-learn does)
    would lose about 1e12 * eps ~ 1e-4 of each squared distance; centring on the chunk
    keeps the float64 result at 1e-12 of its scale."""
    X, means, prec_sqrt, log_weights = _problem(np.float64, seed=1, offset=1e6)
    weighted = _weighted(X, means, prec_sqrt, log_weights)
    out, log_norm = _run(_estep.estep_diag_gemm, X, means, prec_sqrt, log_weights, 0, 16, 2)
    scale = np.abs(weighted).max()
    assert_allclose(out, weighted, rtol=1e-12, atol=1e-12 * scale)
    assert_allclose(log_norm, logsumexp(weighted, axis=1), rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_estep_diag_gemm_far_rows_are_exact(dtype):
    """Rows whose GEMM terms could overflow the compute dtype (1e200 in float64, 1e30 in
    float32) are computed term by term in float64: the same values as ``estep_diag``, a
    row that overflows even there gets log_norm -inf and zero responsibilities, and the
    other rows are unaffected."""
    X, means, prec_sqrt, log_weights = _problem(dtype)
    X = X.copy()
    X[7] = 1e200 if dtype == np.float64 else 1e30
    X[20, 0] = -1e150 if dtype == np.float64 else -3e20
    for mode in (0, 1, 2):
        got = _run(_estep.estep_diag_gemm, X, means, prec_sqrt, log_weights, mode, 10, 2)
        old = _run(_estep.estep_diag, X, means, prec_sqrt, log_weights, mode, 10, 2)
        assert not np.isnan(got[0]).any()
        for row in (7, 20):
            assert_array_equal(got[0][row], old[0][row])
            assert_array_equal(got[1][row], old[1][row])
        if dtype == np.float64:
            assert got[1][7] == -np.inf
        rtol = _rtol(dtype)
        scale = np.abs(old[0][np.isfinite(old[0])]).max() if mode != 2 else 1.0
        assert_allclose(got[0], old[0], rtol=rtol * 10, atol=rtol * 10 * scale)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_estep_diag_gemm_minus_inf_weights(mode):
    """All weights zero: log_norm -inf and (mode 2) zeros, no NaN; one zero weight:
    that component's responsibility is exactly 0."""
    X, means, prec_sqrt, _ = _problem(np.float64)
    out, log_norm = _run(
        _estep.estep_diag_gemm, X, means, prec_sqrt, np.full(K, -np.inf), mode, 16, 2
    )
    assert np.all(log_norm == -np.inf) and not np.isnan(out).any()
    assert np.all(out == 0.0) if mode == 2 else np.all(out == -np.inf)
    log_weights = np.log(np.full(K, 1.0 / K))
    log_weights[3] = -np.inf
    out, log_norm = _run(_estep.estep_diag_gemm, X, means, prec_sqrt, log_weights, mode, 16, 2)
    assert np.isfinite(log_norm).all()
    assert np.all(out[:, 3] == (0.0 if mode == 2 else -np.inf))


def test_estep_diag_gemm_checks_shapes():
    X, means, prec_sqrt, log_weights = _problem(np.float64)
    out, log_norm = np.empty((N, K)), np.empty(N)
    args = (np.log(prec_sqrt).sum(axis=1), log_weights, out, log_norm)
    assert _estep.estep_diag_gemm(X, means, prec_sqrt[:, :2].copy(), *args, 2, 10, 2) == -2
    assert _estep.estep_diag_gemm(X, means, prec_sqrt, *args, 7, 10, 2) == -3
    assert _estep.estep_diag_gemm(X, means, prec_sqrt, *args, 2, 0, 2) == -2


# --------------------------------------------------------------------------
# M-step kernel
# --------------------------------------------------------------------------


def _responsibilities(seed, n=N, k=K, zero_component=None):
    rng = np.random.RandomState(seed)
    resp = rng.dirichlet(np.full(k, 0.3), size=n)
    resp[resp < 1e-3] = 0.0  # floored entries, as the estimator leaves them
    if zero_component is not None:
        resp[:, zero_component] = 0.0
    return resp


def _stats(X, resp, chunk, n_threads):
    slots = max(n_threads, 1)
    counts = np.zeros((slots, resp.shape[1]))
    means = np.zeros((slots, resp.shape[1], X.shape[1]))
    scatter = np.zeros_like(means)
    assert _mstep.weighted_diag_stats(X, resp, counts, means, scatter, chunk, n_threads) == 0
    return counts, means, scatter


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_weighted_diag_stats_matches_numpy(dtype, chunk, n_threads):
    """Each slot's counts, weighted means and centred scatter equal the formulas over
    the samples of that slot's chunks (contiguous runs), accumulated in float64."""
    X, *_ = _problem(dtype)
    resp = _responsibilities(0, zero_component=2)
    counts, means, scatter = _stats(X, resp, chunk, n_threads)
    n_chunks = -(-N // chunk)
    Xf = X.astype(np.float64)
    total = 0
    # The team that ran: one thread in the serial build (no OpenMP), whatever n_threads.
    team = n_threads if openmp_enabled() else 1
    assert not counts[team:].any()  # slots beyond the team stay zero
    for t in range(team):
        # OpenMP's static schedule: contiguous runs, the first n_chunks % T one longer.
        q, r = divmod(n_chunks, team)
        first = t * q + min(t, r)
        last = first + q + (t < r)
        rows = slice(first * chunk, min(last * chunk, N))
        R, x = resp[rows], Xf[rows]
        n = R.sum(axis=0)
        assert_allclose(counts[t], n, rtol=1e-12)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = np.where(n[:, None] > 0, R.T @ x / n[:, None], 0.0)
        s = np.stack([(R[:, k, None] * (x - mu[k]) ** 2).sum(axis=0) for k in range(K)])
        assert_allclose(means[t], mu, rtol=1e-12, atol=1e-12 * np.abs(Xf).max())
        assert_allclose(scatter[t], s, rtol=1e-12, atol=1e-12 * np.abs(s).max())
        total += n.sum()
    assert_allclose(total, resp.sum(), rtol=1e-12)
    assert np.all(counts[:, 2] == 0) and np.all(means[:, 2] == 0) and np.all(scatter[:, 2] == 0)


def test_sufficient_statistics_gemm_equals_term_by_term(monkeypatch):
    """``sufficient_statistics`` for diag and spherical: the GEMM path (chunks centred,
    joined by Chan et al.'s update) equals the two-pass term-by-term kernels to 1e-12,
    empty components included (mean 0, scatter 0)."""
    rng = np.random.RandomState(3)
    X = 5.0 + rng.standard_normal((2500, 6))
    resp = _responsibilities(4, n=2500, k=12, zero_component=5)
    for covariance_type in ("diag", "spherical"):
        new = _gaussian.sufficient_statistics(X, resp, covariance_type, n_threads=2)
        with monkeypatch.context() as m:
            m.setattr(_gaussian, "DIAG_GEMM_MIN_COMPONENTS", 10**9)
            old = _gaussian.sufficient_statistics(X, resp, covariance_type, n_threads=2)
        for name in ("counts", "means", "scatter"):
            ref = getattr(old, name)
            assert_allclose(getattr(new, name), ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
        assert new.counts[5] == 0 and np.all(new.means[5] == 0) and np.all(new.scatter[5] == 0)
        new.check()


def test_weighted_diag_stats_is_centred():
    """Samples 1e6 from the origin with unit spread: E[x^2] - mu^2 would keep about 4 of
    16 digits of each variance; the centred chunks keep them to 1e-9."""
    rng = np.random.RandomState(2)
    X = 1e6 + rng.standard_normal((3000, 4))
    resp = _responsibilities(1, n=3000, k=10)
    stats = _gaussian.sufficient_statistics(X, resp, "diag", n_threads=2)
    mu = resp.T @ X / resp.sum(axis=0)[:, None]
    expected = np.stack([(resp[:, k, None] * (X - mu[k]) ** 2).sum(axis=0) for k in range(10)])
    assert_allclose(stats.scatter, expected, rtol=1e-9)


def test_weighted_diag_stats_checks_shapes():
    X, *_ = _problem(np.float64)
    resp = _responsibilities(0)
    counts, means, scatter = np.zeros((1, K)), np.zeros((1, K, D)), np.zeros((1, K, D))
    assert _mstep.weighted_diag_stats(X, resp, counts, means, scatter, 10, 2) == -2
    assert _mstep.weighted_diag_stats(X, resp[:-1], counts, means, scatter, 10, 1) == -2
    assert _mstep.weighted_diag_stats(X, resp, counts, means, scatter, 0, 1) == -2


# --------------------------------------------------------------------------
# Whole fits
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs():
    """12 overlapping diagonal blobs in 6-d (K = 12 >= DIAG_GEMM_MIN_COMPONENTS)."""
    rng = np.random.RandomState(0)
    centres = rng.uniform(-3, 3, size=(12, 6))
    scales = rng.uniform(0.4, 1.2, size=(12, 6))
    labels = rng.randint(12, size=3000)
    X = centres[labels] + rng.standard_normal((3000, 6)) * scales[labels]
    init = {
        "weights_init": np.full(12, 1 / 12),
        "means_init": X[rng.choice(3000, 12, replace=False)],
    }
    return X, init


def _fit(X, covariance_type, dtype, init, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        return GaussianMixture(
            12,
            covariance_type=covariance_type,
            dtype=dtype,
            max_iter=15,
            tol=0,
            random_state=0,
            **init,
            **kwargs,
        ).fit(X)


def _assert_same_model(a, b, X, rtol):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        ref = getattr(b, name)
        assert_allclose(
            getattr(a, name), ref, rtol=rtol, atol=rtol * np.abs(ref).max(), err_msg=name
        )
    assert_allclose(a.lower_bound_, b.lower_bound_, rtol=rtol)
    ref = b.score_samples(X)
    assert_allclose(a.score_samples(X), ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=rtol)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_fit_equals_term_by_term_path(blobs, monkeypatch, covariance_type, dtype):
    """15 EM iterations on the GEMM path give the model of the term-by-term kernels (the
    previous implementation): 1e-10 in float64, 1e-5 in float32 (whose E-step products
    are float32 on the new path and float64 on the old)."""
    X, init = blobs
    new = _fit(X, covariance_type, dtype, init)
    with monkeypatch.context() as m:
        m.setattr(_gaussian, "DIAG_GEMM_MIN_COMPONENTS", 10**9)
        old = _fit(X, covariance_type, dtype, init)
    _assert_same_model(new, old, X, 1e-10 if dtype == np.float64 else 1e-5)


def test_large_k_uses_the_gemm_kernels(blobs, monkeypatch):
    """From DIAG_GEMM_MIN_COMPONENTS on, fit, score_samples and predict_proba never call
    the term-by-term kernels (and below it they do)."""
    X, init = blobs
    assert _gaussian.DIAG_GEMM_MIN_COMPONENTS <= 12

    def refuse(*args, **kwargs):
        raise AssertionError("term-by-term kernel called")

    with monkeypatch.context() as m:
        for name in ("estep_diag",):
            m.setattr(_estep, name, refuse)
        m.setattr(_mstep, "weighted_sums", refuse)
        m.setattr(_mstep, "weighted_diag_scatter", refuse)
        gm = _fit(X, "diag", np.float64, init)
        gm.score_samples(X)
        gm.predict_proba(X)
        with pytest.raises(AssertionError, match="term-by-term"):
            GaussianMixture(_gaussian.DIAG_GEMM_MIN_COMPONENTS - 1, covariance_type="diag").fit(X)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_fit_agrees_with_sklearn(blobs, covariance_type):
    """The same fit in scikit-learn (same initial parameters, 15 iterations) to 1e-6."""
    X, init = blobs
    precisions = np.tile(1.0 / X.var(axis=0), (12, 1))
    if covariance_type == "spherical":
        precisions = precisions.mean(axis=1)
    init = dict(init, precisions_init=precisions)
    gm = _fit(X, covariance_type, np.float64, init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SkGaussianMixture(
            12,
            covariance_type=covariance_type,
            init_params="random_from_data",
            max_iter=15,
            tol=0,
            random_state=0,
            **init,
        ).fit(X)
    for name in ("weights_", "means_", "covariances_"):
        ref = getattr(sk, name)
        assert_allclose(getattr(gm, name), ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    assert_allclose(gm.lower_bound_, sk.lower_bound_, rtol=1e-6)
    assert_allclose(gm.score_samples(X), sk.score_samples(X), rtol=1e-6)
    assert_allclose(gm.predict_proba(X), sk.predict_proba(X), rtol=1e-6, atol=1e-9)


def test_threads_agree(blobs):
    """n_threads=1 and 2 agree to 1e-10 (the E-step's chunks do not depend on the thread
    count; the M-step's slots do, by rounding)."""
    X, init = blobs
    one = _fit(X, "diag", np.float64, init, n_threads=1)
    two = _fit(X, "diag", np.float64, init, n_threads=2)
    _assert_same_model(one, two, X, 1e-10)


def test_estep_diag_gemm_small_responsibilities_are_accurate():
    """Responsibilities spread over 720 nats (the range of the kernel's own exp, down to
    DBL_MIN) match exp(w - logsumexp(w)) to 1e-12 relative, each one, however small; below
    DBL_MIN they are 0 (as under the kernels' flush-to-zero mode)."""
    rng = np.random.RandomState(0)
    X = rng.standard_normal((200, 3))
    means = 0.1 * rng.standard_normal((64, 3))
    prec_sqrt = np.ones((64, 3))
    log_weights = -np.linspace(0.0, 720.0, 64)
    out, log_norm = _run(_estep.estep_diag_gemm, X, means, prec_sqrt, log_weights, 2, 32, 2)
    weighted = _weighted(X, means, prec_sqrt, log_weights)
    expected = np.exp(weighted - logsumexp(weighted, axis=1)[:, None])
    normal = expected > np.finfo(np.float64).tiny
    assert_allclose(out[normal], expected[normal], rtol=1e-12, atol=0)
    assert np.all(out[expected < np.finfo(np.float64).tiny / 2] == 0.0)
    assert_allclose(log_norm, logsumexp(weighted, axis=1), rtol=1e-12)
