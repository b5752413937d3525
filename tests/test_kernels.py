"""Compiled kernels against plain NumPy formulas.

``_estep.estep_full`` / ``estep_diag`` and ``_mstep.weighted_sums`` /
``weighted_diag_scatter`` / ``weighted_full_scatter`` are called directly
on random data, for float32 and float64 samples, chunk sizes smaller
than / not dividing / larger than n_samples, and 1, 2 or 3 threads.

Tolerances: float64 kernels are checked to 1e-12 relative. In float32
the centred samples (and, for full covariances, the triangular products
and per-chunk scatter sums) are rounded to float32 (unit roundoff 6e-8),
so those results are checked to 1e-5 relative to their scale; where the
kernels only read float32 samples and compute in float64 the reference
uses the same float32 values and the check stays at 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp

from gmmfast._kernels import _estep, _mstep

MODES = {"weighted": 0, "log_resp": 1, "resp": 2}
LOG_2PI = np.log(2 * np.pi)
N, D, K = 103, 5, 4  # 103 is prime: no chunk size below it divides it
CHUNKS = [1, 10, 64, N, 500]
THREADS = [1, 2, 3]


def test_mode_constants():
    """The mode numbers documented in the module."""
    assert (_estep.MODE_WEIGHTED_LOG_PROB, _estep.MODE_LOG_RESP, _estep.MODE_RESP) == (0, 1, 2)


def _rtol(dtype, exact_in_float64=False):
    return 1e-12 if (dtype == np.float64 or exact_in_float64) else 1e-5


def _random_upper_factors(rng, n_factors, dim):
    """Upper-triangular factors with positive diagonals (precision = U U^T)."""
    u = np.triu(rng.uniform(-0.5, 0.5, size=(n_factors, dim, dim)), 1)
    idx = np.arange(dim)
    u[:, idx, idx] = rng.uniform(0.5, 2.0, size=(n_factors, dim))
    return u


def _problem(dtype, seed=0):
    rng = np.random.RandomState(seed)
    X = (3.0 + 2.0 * rng.standard_normal((N, D))).astype(dtype)
    means = 3.0 + 2.0 * rng.standard_normal((K, D))
    log_weights = np.log(rng.dirichlet(np.ones(K)))
    return rng, X, means, log_weights


def _reference_output(weighted, mode):
    log_norm = logsumexp(weighted, axis=1)
    if mode == 0:
        return weighted, log_norm
    if mode == 1:
        return weighted - log_norm[:, None], log_norm
    return np.exp(weighted - log_norm[:, None]), log_norm


def _run_estep_full(X, means, factors, tied, log_det, log_weights, mode, chunk, n_threads):
    out = np.full((len(X), len(means)), np.nan)
    log_norm = np.full(len(X), np.nan)
    _estep.estep_full(
        X,
        means,
        np.ascontiguousarray(factors, dtype=X.dtype),
        tied,
        log_det,
        log_weights,
        out,
        log_norm,
        mode,
        chunk,
        n_threads,
    )
    return out, log_norm


def _run_estep_diag(X, means, prec_sqrt, log_det, log_weights, mode, chunk, n_threads):
    out = np.full((len(X), len(means)), np.nan)
    log_norm = np.full(len(X), np.nan)
    _estep.estep_diag(
        X, means, prec_sqrt, log_det, log_weights, out, log_norm, mode, chunk, n_threads
    )
    return out, log_norm


def _assert_estep(out, log_norm, weighted, mode, rtol):
    ref_out, ref_norm = _reference_output(weighted, mode)
    scale = np.abs(weighted).max()
    assert_allclose(log_norm, ref_norm, rtol=rtol, atol=rtol * scale)
    if mode == 2:
        assert_allclose(out, ref_out, rtol=rtol * 10, atol=rtol * 10)
        assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
    else:
        assert_allclose(out, ref_out, rtol=rtol, atol=rtol * scale)


# --------------------------------------------------------------------------
# E-step
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("mode", sorted(MODES.values()))
@pytest.mark.parametrize("tied", [False, True], ids=["full", "tied"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_estep_full_matches_numpy(dtype, tied, mode, chunk, n_threads):
    """estep_full: log N(x | mu_k, (U_k U_k^T)^-1) + log w_k, log-sum-exp, normalisation."""
    rng, X, means, log_weights = _problem(dtype)
    factors = _random_upper_factors(rng, 1 if tied else K, D)
    log_det = np.log(np.diagonal(factors, axis1=1, axis2=2)).sum(axis=1)
    log_det = np.broadcast_to(log_det, (K,)).copy()
    Xf = X.astype(np.float64)
    weighted = np.empty((N, K))
    for k in range(K):
        y = (Xf - means[k]) @ factors[0 if tied else k]
        weighted[:, k] = -0.5 * (D * LOG_2PI + (y**2).sum(axis=1)) + log_det[k] + log_weights[k]
    out, log_norm = _run_estep_full(
        X, means, factors, tied, log_det, log_weights, mode, chunk, n_threads
    )
    _assert_estep(out, log_norm, weighted, mode, _rtol(dtype))


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("mode", sorted(MODES.values()))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_estep_diag_matches_numpy(dtype, mode, chunk, n_threads):
    """estep_diag: diagonal Gaussian log-densities; float32 samples are used exactly."""
    rng, X, means, log_weights = _problem(dtype)
    prec_sqrt = rng.uniform(0.3, 2.0, size=(K, D))
    log_det = np.log(prec_sqrt).sum(axis=1)
    Xf = X.astype(np.float64)
    weighted = np.empty((N, K))
    for k in range(K):
        sq = (((Xf - means[k]) * prec_sqrt[k]) ** 2).sum(axis=1)
        weighted[:, k] = -0.5 * (D * LOG_2PI + sq) + log_det[k] + log_weights[k]
    out, log_norm = _run_estep_diag(
        X, means, prec_sqrt, log_det, log_weights, mode, chunk, n_threads
    )
    _assert_estep(out, log_norm, weighted, mode, _rtol(dtype, exact_in_float64=True))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_estep_diag_does_not_depend_on_chunks_or_threads(dtype):
    """Rows are computed independently: every chunking/thread count gives identical bits."""
    rng, X, means, log_weights = _problem(dtype, seed=5)
    prec = rng.uniform(0.3, 2.0, size=(K, D))
    log_det = np.log(prec).sum(axis=1)
    ref = _run_estep_diag(X, means, prec, log_det, log_weights, 2, N, 1)
    for chunk, n_threads in [(1, 2), (7, 3), (64, 2)]:
        got = _run_estep_diag(X, means, prec, log_det, log_weights, 2, chunk, n_threads)
        assert_array_equal(got[0], ref[0])
        assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("mode", sorted(MODES.values()))
@pytest.mark.parametrize("kernel", ["full", "diag"])
def test_estep_all_weights_minus_inf(kernel, mode):
    """log_weights all -inf: log_norm is -inf for every row, and mode 2 gives zeros, not NaN."""
    rng, X, means, _ = _problem(np.float64)
    log_weights = np.full(K, -np.inf)
    if kernel == "full":
        factors = _random_upper_factors(rng, K, D)
        log_det = np.log(np.diagonal(factors, axis1=1, axis2=2)).sum(axis=1)
        out, log_norm = _run_estep_full(X, means, factors, False, log_det, log_weights, mode, 16, 2)
    else:
        prec = rng.uniform(0.3, 2.0, size=(K, D))
        out, log_norm = _run_estep_diag(
            X, means, prec, np.log(prec).sum(axis=1), log_weights, mode, 16, 2
        )
    assert np.all(log_norm == -np.inf)
    assert not np.isnan(out).any()
    if mode == 2:
        assert np.all(out == 0.0)
    else:
        assert np.all(out == -np.inf)


@pytest.mark.parametrize("kernel", ["full", "diag"])
def test_estep_one_impossible_row(kernel):
    """A row whose squared distance overflows gets log_norm -inf, zero responsibilities, no NaN;
    other rows are unaffected."""
    rng, X, means, log_weights = _problem(np.float64)
    X = X.copy()
    X[7] = 1e200  # (x - mu)^2 overflows to inf for every component
    if kernel == "full":
        factors = _random_upper_factors(rng, K, D)
        log_det = np.log(np.diagonal(factors, axis1=1, axis2=2)).sum(axis=1)

        def run(mode):
            return _run_estep_full(X, means, factors, False, log_det, log_weights, mode, 10, 2)
    else:
        prec = rng.uniform(0.3, 2.0, size=(K, D))

        def run(mode):
            return _run_estep_diag(
                X, means, prec, np.log(prec).sum(axis=1), log_weights, mode, 10, 2
            )

    w, norm0 = run(0)
    r, norm2 = run(2)
    lr, norm1 = run(1)
    for norm in (norm0, norm1, norm2):
        assert norm[7] == -np.inf
        assert np.isfinite(np.delete(norm, 7)).all()
    assert np.all(w[7] == -np.inf)
    assert np.all(r[7] == 0.0)
    assert not np.isnan(r).any() and not np.isnan(lr).any()
    assert_allclose(np.delete(r, 7, axis=0).sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(np.exp(np.delete(lr, 7, axis=0)), np.delete(r, 7, axis=0), rtol=1e-12)


def test_estep_partially_zero_weights():
    """A zero-weight component gets responsibility exactly 0 and log-resp -inf, no NaN."""
    rng, X, means, log_weights = _problem(np.float64)
    log_weights = log_weights.copy()
    log_weights[1] = -np.inf
    prec = rng.uniform(0.3, 2.0, size=(K, D))
    r, norm = _run_estep_diag(X, means, prec, np.log(prec).sum(axis=1), log_weights, 2, 10, 2)
    lr, _ = _run_estep_diag(X, means, prec, np.log(prec).sum(axis=1), log_weights, 1, 10, 2)
    assert np.all(r[:, 1] == 0.0) and np.all(lr[:, 1] == -np.inf)
    assert np.isfinite(norm).all()
    assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)


# --------------------------------------------------------------------------
# M-step
# --------------------------------------------------------------------------


def _responsibilities(rng, kind):
    """Soft responsibilities, optionally with exact zeros (and a component with none)."""
    r = rng.dirichlet(np.ones(K), size=N)
    if kind == "sparse":
        r[rng.uniform(size=(N, K)) < 0.5] = 0.0
        r[:, 2] = 0.0  # an empty component
        r[r.sum(axis=1) == 0, 0] = 1.0
        r /= r.sum(axis=1, keepdims=True)
    elif kind == "hard":
        r = np.zeros((N, K))
        r[np.arange(N), rng.randint(0, K - 1, size=N)] = 1.0  # component K-1 is empty
    return np.ascontiguousarray(r)


RESP_KINDS = ["soft", "sparse", "hard"]


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("resp_kind", RESP_KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_weighted_sums_matches_numpy(dtype, resp_kind, chunk, n_threads):
    """weighted_sums: per-thread slots sum to resp.sum(0) and resp.T @ X."""
    rng, X, _, _ = _problem(dtype)
    resp = _responsibilities(rng, resp_kind)
    nk = np.zeros((n_threads, K))
    sums = np.zeros((n_threads, K, D))
    _mstep.weighted_sums(X, resp, nk, sums, chunk, n_threads)
    Xf = X.astype(np.float64)
    assert_allclose(nk.sum(axis=0), resp.sum(axis=0), rtol=1e-12, atol=1e-12)
    assert_allclose(sums.sum(axis=0), resp.T @ Xf, rtol=1e-12, atol=1e-10)
    if resp_kind != "soft":
        empty = resp.sum(axis=0) == 0
        assert np.all(nk[:, empty] == 0) and np.all(sums[:, empty] == 0)


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("resp_kind", RESP_KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_weighted_diag_scatter_matches_numpy(dtype, resp_kind, chunk, n_threads):
    """weighted_diag_scatter: sum_n r_nk (x_n - mu_k)^2, accumulated in float64."""
    rng, X, means, _ = _problem(dtype)
    resp = _responsibilities(rng, resp_kind)
    acc = np.zeros((n_threads, K, D))
    _mstep.weighted_diag_scatter(X, resp, means, acc, chunk, n_threads)
    Xf = X.astype(np.float64)
    ref = np.stack([resp[:, k] @ (Xf - means[k]) ** 2 for k in range(K)])
    assert_allclose(acc.sum(axis=0), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("resp_kind", RESP_KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_weighted_full_scatter_matches_numpy(dtype, resp_kind, chunk, n_threads):
    """weighted_full_scatter: sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T, both triangles written."""
    rng, X, means, _ = _problem(dtype)
    resp = _responsibilities(rng, resp_kind)
    out = np.full((K, D, D), np.nan)
    thread_acc = np.full((n_threads, D, D), 123.0)  # content on entry must be ignored
    _mstep.weighted_full_scatter(X, resp, means, out, thread_acc, chunk, n_threads)
    Xf = X.astype(np.float64)
    ref = np.stack([(resp[:, k, None] * (Xf - means[k])).T @ (Xf - means[k]) for k in range(K)])
    rtol = _rtol(dtype)
    assert_allclose(out, ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    assert_array_equal(out, out.transpose(0, 2, 1))
    if resp_kind != "soft":
        empty = resp.sum(axis=0) == 0
        assert np.all(out[empty] == 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_zero_responsibility_rows_are_skipped(dtype):
    """Rows with r_nk == 0 are skipped for component k: even infinite values add nothing
    (0 * inf would be NaN if they were not skipped)."""
    rng, X, means, _ = _problem(dtype)
    X = X.copy()
    resp = _responsibilities(rng, "hard")
    far = np.flatnonzero(resp[:, 0] == 0)[:5]
    X[far] = np.inf
    keep = resp[:, 0] > 0
    nk = np.zeros((2, K))
    sums = np.zeros((2, K, D))
    _mstep.weighted_sums(X, resp, nk, sums, 10, 2)
    Xk = X[keep].astype(np.float64)
    assert_allclose(sums.sum(axis=0)[0], Xk.sum(axis=0), rtol=1e-12)
    acc = np.zeros((2, K, D))
    _mstep.weighted_diag_scatter(X, resp, means, acc, 10, 2)
    assert_allclose(acc.sum(axis=0)[0], ((Xk - means[0]) ** 2).sum(axis=0), rtol=1e-12)
    out = np.empty((K, D, D))
    _mstep.weighted_full_scatter(X, resp, means, out, np.empty((2, D, D)), 10, 2)
    ref = (Xk - means[0]).T @ (Xk - means[0])
    assert_allclose(out[0], ref, rtol=_rtol(dtype), atol=_rtol(dtype) * np.abs(ref).max())


@pytest.mark.parametrize("n_threads", [1, 2])
def test_mstep_thread_slots_merge_deterministically(n_threads):
    """Same inputs and thread count: identical results on every call."""
    rng, X, means, _ = _problem(np.float64, seed=9)
    resp = _responsibilities(rng, "soft")
    results = []
    for _ in range(3):
        out = np.empty((K, D, D))
        _mstep.weighted_full_scatter(X, resp, means, out, np.empty((n_threads, D, D)), 7, n_threads)
        acc = np.zeros((n_threads, K, D))
        _mstep.weighted_diag_scatter(X, resp, means, acc, 7, n_threads)
        results.append((out, acc.sum(axis=0)))
    for out, acc in results[1:]:
        assert_array_equal(out, results[0][0])
        assert_array_equal(acc, results[0][1])


def test_kernels_leave_floating_point_environment_unchanged():
    """After the kernels run, subnormal numbers still work in the calling thread."""
    rng, X, means, log_weights = _problem(np.float64)
    prec = rng.uniform(0.3, 2.0, size=(K, D))
    _run_estep_diag(X, means, prec, np.log(prec).sum(axis=1), log_weights, 2, 10, 2)
    factors = _random_upper_factors(rng, K, D)
    _run_estep_full(X, means, factors, False, np.zeros(K), log_weights, 2, 10, 2)
    _mstep.weighted_full_scatter(
        X, _responsibilities(rng, "soft"), means, np.empty((K, D, D)), np.empty((2, D, D)), 10, 2
    )
    tiny = np.array([np.finfo(np.float64).tiny])
    assert (tiny / 4)[0] > 0.0  # no flush-to-zero left behind
    assert (np.array([5e-324]) * 1.0)[0] > 0.0  # no denormals-are-zero


# --------------------------------------------------------------------------
# Shared helpers, statuses, OpenMP
# --------------------------------------------------------------------------


def test_output_mode_enum():
    """The modes are one named enum, equal to the documented numbers."""
    from gmmfast._kernels._common import OutputMode

    assert _estep.MODE_WEIGHTED_LOG_PROB is OutputMode.WEIGHTED_LOG_PROB
    assert _estep.MODE_LOG_RESP is OutputMode.LOG_RESP
    assert _estep.MODE_RESP is OutputMode.RESP
    assert [
        int(m) for m in (OutputMode.WEIGHTED_LOG_PROB, OutputMode.LOG_RESP, OutputMode.RESP)
    ] == [0, 1, 2]


@pytest.mark.parametrize("mode", sorted(MODES.values()))
def test_normalize_row_helper(mode):
    """The shared row normalisation (E-step and masked E-step) against logsumexp,
    with a row of only -inf (log_norm -inf; responsibilities 0, otherwise -inf)."""
    from gmmfast._kernels import _common

    rng = np.random.RandomState(3)
    rows = rng.normal(scale=30.0, size=(6, K))
    rows[2, 1] = -np.inf
    rows[4] = -np.inf
    out = np.full_like(rows, np.nan)
    log_norm = np.full(len(rows), np.nan)
    assert _common._normalize_rows_wrapper(rows, out, log_norm, mode) == 0
    finite = np.arange(len(rows)) != 4
    ref_out, ref_norm = _reference_output(rows[finite], mode)
    assert_allclose(log_norm[finite], ref_norm, rtol=1e-12)
    assert_allclose(out[finite], ref_out, rtol=1e-12, atol=1e-300)
    assert log_norm[4] == -np.inf
    assert np.all(out[4] == (0.0 if mode == 2 else -np.inf))


@pytest.mark.parametrize("lower", [False, True])
def test_merge_symmetric_slots_helper(lower):
    """Per-thread slots are summed in slot order from the stored (column-major)
    triangle, and the result is mirrored; the other triangle is never read."""
    from gmmfast._kernels import _common

    rng = np.random.RandomState(4)
    n_slots, n = 3, 6
    slots = rng.standard_normal((n_slots, n, n))
    # Column-major lower = C-order upper (j >= i); column-major upper = C-order lower.
    stored = np.triu(np.ones((n, n), bool)) if lower else np.tril(np.ones((n, n), bool))
    slots[:, ~stored] = np.nan
    out = np.full((n, n), np.nan)
    assert _common._merge_symmetric_slots_wrapper(slots, lower, out) == 0
    total = slots[0] + slots[1] + slots[2]
    ref = np.where(stored, total, total.T)
    assert_array_equal(out, ref)
    assert_array_equal(out, out.T)


def test_too_few_thread_slots_is_a_status_not_a_crash():
    """Per-thread buffers are checked against n_threads before any thread runs:
    the kernel returns STATUS_BAD_SHAPE and writes nothing; check_status raises."""
    from gmmfast._kernels import check_status
    from gmmfast._kernels._common import Status

    rng, X, means, _ = _problem(np.float64)
    resp = _responsibilities(rng, "soft")
    bad = int(Status.STATUS_BAD_SHAPE)
    nk, sums = np.zeros((2, K)), np.zeros((2, K, D))
    assert _mstep.weighted_sums(X, resp, nk, sums, 10, 3) == bad
    assert not nk.any() and not sums.any()
    acc = np.zeros((1, K, D))
    assert _mstep.weighted_diag_scatter(X, resp, means, acc, 10, 2) == bad
    assert not acc.any()
    out = np.full((K, D, D), np.nan)
    assert _mstep.weighted_full_scatter(X, resp, means, out, np.empty((2, D, D)), 10, 4) == bad
    assert np.isnan(out).all()
    assert (
        _mstep.weighted_sums(X, resp, np.zeros((2, K)), np.zeros((2, K, D)), 0, 2) == bad
    )  # chunk 0
    with pytest.raises(ValueError, match="weighted_sums: .*per-thread"):
        check_status(_mstep.weighted_sums(X, resp, nk, sums, 10, 3), "weighted_sums")
    with pytest.raises(MemoryError, match="k: could not allocate"):
        check_status(int(Status.STATUS_NO_MEMORY), "k")
    assert check_status(3, "k") == 3  # a factorisation failure is the caller's to raise
    out, log_norm = np.full((N, K), np.nan), np.full(N, np.nan)
    assert _estep.estep_diag(
        X, means, np.ones((K, D)), np.zeros(K), np.zeros(K), out, log_norm, 7, 10, 2
    ) == int(Status.STATUS_BAD_ARGUMENT)  # no mode 7
    assert np.isnan(out).all() and np.isnan(log_norm).all()
    # Enough slots: the same call succeeds.
    assert _mstep.weighted_sums(X, resp, nk, sums, 10, 2) == 0
    assert_allclose(nk.sum(axis=0), resp.sum(axis=0), rtol=1e-12)


def test_kernels_return_ok_status():
    """Every kernel returns 0 on success."""
    rng, X, means, log_weights = _problem(np.float64)
    factors = _random_upper_factors(rng, K, D)
    out, log_norm = np.empty((N, K)), np.empty(N)
    assert (
        _estep.estep_full(
            X,
            means,
            factors,
            False,
            np.zeros(K),
            log_weights,
            out,
            log_norm,
            _estep.MODE_RESP,
            10,
            2,
        )
        == 0
    )
    assert (
        _estep.estep_diag(
            X,
            means,
            np.ones((K, D)),
            np.zeros(K),
            log_weights,
            out,
            log_norm,
            _estep.MODE_RESP,
            10,
            2,
        )
        == 0
    )
    covs = np.stack([np.eye(D) * (k + 1.0) for k in range(K)])
    info = np.zeros(K, dtype=np.intc)
    assert _mstep.precision_cholesky(covs, info, 2) == 0
    covs[2, 0, 0] = -1.0
    assert _mstep.precision_cholesky(covs, info, 2) == 3  # k + 1 of the failed component
    assert info[2] != 0


def test_openmp_helpers():
    """openmp_enabled() says how the kernels were built; without OpenMP a region has one thread."""
    from gmmfast._kernels import _openmp

    assert isinstance(_openmp.openmp_enabled(), bool)
    assert _openmp.max_threads() >= 1
    if not _openmp.openmp_enabled():
        assert _openmp.max_threads() == 1
