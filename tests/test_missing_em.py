"""Exact EM with missing values: GaussianMixture.fit on X with NaN (or an ``observed`` mask).

The reference is a brute-force NumPy/SciPy EM that loops over samples and
components: Cholesky of each Sigma_oo, the conditional mean
mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o) and covariance
Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om of every sample, responsibilities
from the exact marginal likelihoods, then the expected-statistics M-step
with the scatter taken around the new means (two passes). gmmfast uses
shared factorisations per mask, the precision side P_mm where few values
are missing, and statistics centred on the current means, so agreement
to 1e-10 checks both the algebra and its accuracy.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
from conftest import COVARIANCE_TYPES
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp

import gmmfast
from gmmfast import GaussianMixture
from gmmfast._kernels import _missing_mstep
from gmmfast.mixture import _gaussian, _missing_em
from gmmfast.mixture._missing import uncoupled_features

N, D, K = 200, 5, 3
REG = 1e-4
PARAMS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


# --------------------------------------------------------------------------
# Data and the brute-force reference
# --------------------------------------------------------------------------


def _with_missing(X, rng, fraction):
    Xn = X.copy()
    Xn[rng.uniform(size=X.shape) < fraction] = np.nan
    return Xn


@pytest.fixture(scope="module")
def problem():
    """(X with NaN, complete X, true centres): 30% missing at random, 4 rows
    with nothing observed, and two blocks of rows sharing a mask (many values
    missing: observed side; one missing: precision side)."""
    rng = np.random.RandomState(0)
    centers = rng.uniform(-3, 3, (K, D))
    X = np.vstack(
        [
            c
            + rng.standard_normal((N // K + 1, D)) @ rng.uniform(-0.6, 0.6, (D, D))
            + 0.5 * rng.standard_normal((N // K + 1, D))
            for c in centers
        ]
    )[:N]
    X = X[rng.permutation(N)]
    Xn = _with_missing(X, rng, 0.3)
    Xn[:4] = np.nan
    Xn[10:30] = X[10:30]
    Xn[10:30, [0, 2, 3]] = np.nan
    Xn[30:50] = X[30:50]
    Xn[30:50, 4] = np.nan
    assert (~np.isnan(Xn)).any(axis=0).all()
    return Xn, X, centers


def _initial(covariance_type, centers, seed=1):
    """weights, means, covariances (in covariances_ layout) and precisions."""
    rng = np.random.RandomState(seed)
    weights = np.array([0.3, 0.3, 0.4])
    means = centers + 0.3 * rng.standard_normal(centers.shape)
    if covariance_type == "full":
        a = rng.uniform(-0.3, 0.3, (K, D, D))
        cov = np.eye(D) * np.arange(1.0, K + 1)[:, None, None] + a @ a.transpose(0, 2, 1)
    elif covariance_type == "tied":
        a = rng.uniform(-0.3, 0.3, (D, D))
        cov = 1.5 * np.eye(D) + a @ a.T
    elif covariance_type == "diag":
        cov = rng.uniform(0.5, 2.0, (K, D))
    else:
        cov = np.array([0.8, 1.2, 2.0])
    prec = np.linalg.inv(cov) if covariance_type in ("full", "tied") else 1.0 / cov
    return weights, means, cov, prec


def _full(cov, covariance_type):
    """(K, D, D) matrices from any covariances_ layout."""
    cov = np.asarray(cov, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        return np.broadcast_to(cov, (K, D, D))
    return np.broadcast_to(cov.reshape(K, -1), (K, D))[:, :, None] * np.eye(D)


def reference_em(X, weights, means, cov, covariance_type, n_iter, reg_covar=REG):
    """Brute-force exact EM; returns [(weights, means, covariances, lower_bound)] per iteration."""
    history = []
    n_samples, n_features = X.shape
    for _ in range(n_iter):
        sigma = _full(cov, covariance_type)
        log_dens = np.zeros((n_samples, K))
        xhat = np.empty((n_samples, K, n_features))
        cond = np.zeros((n_samples, K, n_features, n_features))
        for n in range(n_samples):
            o = ~np.isnan(X[n])
            m = ~o
            for k in range(K):
                mu, s = means[k], sigma[k]
                xhat[n, k] = X[n]
                if not o.any():
                    xhat[n, k] = mu
                    cond[n, k] = s
                    continue
                chol = np.linalg.cholesky(s[np.ix_(o, o)])
                d = X[n, o] - mu[o]
                z = sla.solve_triangular(chol, d, lower=True)
                log_dens[n, k] = -0.5 * (
                    o.sum() * np.log(2 * np.pi) + 2 * np.log(np.diag(chol)).sum() + z @ z
                )
                if m.any():
                    a = sla.cho_solve((chol, True), s[np.ix_(o, m)])  # Sigma_oo^-1 Sigma_om
                    xhat[n, k, m] = mu[m] + a.T @ d
                    cond[n, k][np.ix_(m, m)] = s[np.ix_(m, m)] - s[np.ix_(m, o)] @ a
        weighted = log_dens + np.log(weights)
        log_norm = logsumexp(weighted, axis=1)
        resp = np.exp(weighted - log_norm[:, None])
        nk = resp.sum(axis=0) + 10 * np.finfo(np.float64).eps
        means = np.einsum("nk,nkd->kd", resp, xhat) / nk[:, None]
        dev = xhat - means[None]
        scatter = np.einsum("nk,nkd,nke->kde", resp, dev, dev) + np.einsum(
            "nk,nkde->kde", resp, cond
        )
        if covariance_type == "full":
            cov = scatter / nk[:, None, None] + reg_covar * np.eye(n_features)
        elif covariance_type == "tied":
            cov = scatter.sum(axis=0) / nk.sum() + reg_covar * np.eye(n_features)
        else:
            cov = np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None] + reg_covar
            if covariance_type == "spherical":
                cov = cov.mean(axis=1)
        weights = nk / nk.sum()
        history.append((weights, means, cov, float(log_norm.mean())))
    return history


@pytest.fixture(scope="module")
def references(problem):
    Xn, _, centers = problem
    cache = {}

    def get(covariance_type):
        if covariance_type not in cache:
            w, m, c, _ = _initial(covariance_type, centers)
            cache[covariance_type] = reference_em(Xn, w, m, c, covariance_type, 5)
        return cache[covariance_type]

    return get


def _fit(X, covariance_type, centers, max_iter, observed=None, **kwargs):
    w, m, _, p = _initial(covariance_type, centers)
    params = dict(
        covariance_type=covariance_type,
        max_iter=max_iter,
        tol=0.0,
        reg_covar=REG,
        weights_init=w,
        means_init=m,
        precisions_init=p,
    )
    params.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        return GaussianMixture(K, **params).fit(X, observed=observed)


@contextlib.contextmanager
def _forced_side(side):
    """Within the block, the missing-data M-step factorises on ``side`` (0: the
    cheaper one per unit, 1: Sigma_oo, 2: P_mm) through the kernel's test entry
    point; the block must call the kernel at least once."""
    calls = []

    def forced(*args):
        calls.append(side)
        return _missing_mstep._missing_mstep_full_forced_side(*args, side)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_missing_em._missing_mstep, "missing_mstep_full", forced)
        yield
    assert calls, "the missing-data M-step kernel was not called"


def _close(got, expected, rtol, err_msg=""):
    expected = np.asarray(expected, dtype=np.float64)
    assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max(), err_msg=err_msg)


# --------------------------------------------------------------------------
# Complete data: exactly the ordinary path
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_all_true_observed_is_ordinary_em_exactly(datasets, covariance_type, dtype):
    """fit/fit_predict with observed all True give bitwise the results of plain fit."""
    X = datasets["anisotropic"].X
    kw = dict(covariance_type=covariance_type, dtype=dtype, random_state=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        ref = GaussianMixture(3, **kw)
        ref_labels = ref.fit_predict(X)
        got = GaussianMixture(3, **kw)
        labels = got.fit_predict(X, observed=np.ones(X.shape, dtype=bool))
        again = GaussianMixture(3, **kw).fit(X, observed=np.ones(X.shape, dtype=bool))
    for name in PARAMS:
        assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
        assert_array_equal(getattr(again, name), getattr(ref, name), err_msg=name)
    assert got.lower_bounds_ == ref.lower_bounds_
    assert got.n_iter_ == ref.n_iter_
    assert_array_equal(labels, ref_labels)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_masked_m_step_on_complete_data_equals_ordinary_m_step(datasets, covariance_type):
    """The missing-data M-step with nothing missing reproduces the ordinary M-step."""
    X = datasets["anisotropic"].X
    gm = GaussianMixture(3, covariance_type=covariance_type, max_iter=3, tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        gm.fit(X)
    resp, _ = gm._estimate(X, _gaussian.MODE_RESP)
    observed = np.ones(X.shape, dtype=np.uint8)
    order, unit_ptr = _missing_em.mask_units(observed, 64)
    data = _missing_em.MissingData(np.ascontiguousarray(X), observed, order, unit_ptr, 64)
    got = _missing_em.estimate_parameters(
        data,
        resp,
        gm.means_,
        gm.covariances_,
        gm.precisions_cholesky_,
        covariance_type,
        REG,
        n_threads=2,
    )
    expected = _gaussian.estimate_gaussian_parameters(X, resp, REG, covariance_type, n_threads=2)
    for name, a, b in zip(("nk", "means", "covariances"), got, expected):
        _close(a, b, 1e-12, name)


# --------------------------------------------------------------------------
# Against the brute-force reference
# --------------------------------------------------------------------------


@pytest.mark.parametrize("max_iter", [1, 5])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_matches_brute_force_reference(problem, references, covariance_type, max_iter):
    """One and five EM iterations from the same start agree with the reference to 1e-10."""
    Xn, _, centers = problem
    history = references(covariance_type)[:max_iter]
    gm = _fit(Xn, covariance_type, centers, max_iter, n_threads=2)
    weights, means, cov, _ = history[-1]
    _close(gm.weights_, weights, 1e-10, "weights_")
    _close(gm.means_, means, 1e-10, "means_")
    _close(gm.covariances_, cov, 1e-10, "covariances_")
    assert gm.n_iter_ == max_iter
    _close(gm.lower_bounds_, [h[3] for h in history], 1e-10, "lower_bounds_")
    assert gm.lower_bound_ == gm.lower_bounds_[-1]


@pytest.mark.parametrize("unit_rows", [3, 256])
@pytest.mark.parametrize("side", [1, 2])
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_both_factorisation_sides_match_reference(
    problem, references, covariance_type, side, unit_rows
):
    """Forcing the Sigma_oo side or the P_mm side, with tiny or large mask units
    (units split, buffers flushed), gives the reference M-step to 1e-10."""
    Xn, _, centers = problem
    gm = _fit(Xn, covariance_type, centers, 0)  # the initial parameters only
    data = _missing_em.prepare(Xn, None, dtype=np.float64, unit_rows=unit_rows)
    resp, _ = gm._log_prob(data, _gaussian.MODE_RESP)
    with _forced_side(side):
        nk, means, cov = _missing_em.estimate_parameters(
            data,
            resp,
            gm.means_,
            gm.covariances_,
            gm.precisions_cholesky_,
            covariance_type,
            REG,
            n_threads=2,
        )
    weights, ref_means, ref_cov, _ = references(covariance_type)[0]
    _close(nk / nk.sum(), weights, 1e-10, "weights")
    _close(means, ref_means, 1e-10, "means")
    _close(cov, ref_cov, 1e-10, "covariances")


@pytest.mark.parametrize("side", [0, 1, 2])
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_isolated_features_match_reference(problem, covariance_type, side):
    """Features uncorrelated with all others (as constant pixels are) are left out of
    the factorisations: still the reference M-step to 1e-10."""
    Xn, _, centers = problem
    weights, means, cov, _ = _initial(covariance_type, centers)
    cov = cov.copy()
    isolate = {0: [1], 2: [1, 3]} if covariance_type == "full" else {0: [1, 3]}
    for k, features in isolate.items():
        c = cov[k] if covariance_type == "full" else cov
        for j in features:
            diagonal = c[j, j]
            c[j, :] = c[:, j] = 0.0
            c[j, j] = diagonal
    gm = GaussianMixture(
        K,
        covariance_type=covariance_type,
        max_iter=0,
        reg_covar=REG,
        weights_init=weights,
        means_init=means,
        precisions_init=np.linalg.inv(cov),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        gm.fit(Xn)
    full = gm.covariances_ if covariance_type == "full" else gm.covariances_[None]
    assert uncoupled_features(full).sum() == sum(map(len, isolate.values()))
    data = _missing_em.prepare(Xn, None, dtype=np.float64)
    resp, _ = gm._log_prob(data, _gaussian.MODE_RESP)
    with _forced_side(side):
        nk, new_means, new_cov = _missing_em.estimate_parameters(
            data,
            resp,
            gm.means_,
            gm.covariances_,
            gm.precisions_cholesky_,
            covariance_type,
            REG,
            n_threads=2,
        )
    ref_weights, ref_means, ref_cov, _ = reference_em(Xn, weights, means, cov, covariance_type, 1)[
        0
    ]
    _close(nk / nk.sum(), ref_weights, 1e-10, "weights")
    _close(new_means, ref_means, 1e-10, "means")
    _close(new_cov, ref_cov, 1e-10, "covariances")


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_compute_matches_reference(problem, references, covariance_type):
    """float32 compute (samples rounded to float32, statistics in float64) agrees to 1e-5."""
    Xn, _, centers = problem
    gm = _fit(Xn.astype(np.float32), covariance_type, centers, 5, dtype=np.float32)
    weights, means, cov, lower_bound = references(covariance_type)[-1]
    _close(gm.weights_, weights, 1e-5, "weights_")
    _close(gm.means_, means, 1e-5, "means_")
    _close(gm.covariances_, cov, 1e-5, "covariances_")
    assert_allclose(gm.lower_bound_, lower_bound, rtol=1e-5)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_lower_bound_never_decreases(problem, covariance_type):
    """The observed-data log-likelihood is non-decreasing over 40 iterations."""
    Xn, _, _ = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        gm = GaussianMixture(
            K,
            covariance_type=covariance_type,
            init_params="random",
            tol=0.0,
            max_iter=40,
            random_state=1,
        ).fit(Xn)
    bounds = np.asarray(gm.lower_bounds_)
    assert len(bounds) == gm.n_iter_ == 40
    assert np.all(np.diff(bounds) >= -1e-10 * np.abs(bounds[1:]))
    assert bounds[-1] > bounds[0]
    assert gm.lower_bound_ == bounds[-1]
    assert_allclose(gm.score(Xn), gm.lower_bound_, rtol=1e-3)


# --------------------------------------------------------------------------
# Statistical behaviour
# --------------------------------------------------------------------------


def test_recovers_mixture_better_than_mean_imputation():
    """On a known 3-component 6-d mixture with 30% missing, exact EM estimates the
    means and covariances better than EM on mean-imputed data."""
    rng = np.random.RandomState(42)
    d, n_per = 6, 500
    true_means = np.array(
        [[0.0] * d, [5.0, 5.0, 0.0, 0.0, 5.0, 0.0], [0.0, 5.0, 5.0, 5.0, 0.0, 5.0]]
    )
    factors = [
        np.tril(rng.uniform(-0.8, 0.8, (d, d)), -1) + np.diag(rng.uniform(0.6, 1.4, d))
        for _ in range(3)
    ]
    true_covs = np.stack([f @ f.T for f in factors])
    X = np.vstack([rng.multivariate_normal(m, c, n_per) for m, c in zip(true_means, true_covs)])
    Xn = _with_missing(X, rng, 0.3)
    imputed = np.where(np.isnan(Xn), np.nanmean(Xn, axis=0), Xn)
    kw = dict(n_components=3, covariance_type="full", tol=1e-8, max_iter=300, random_state=0)

    def errors(gm):
        best = min(
            itertools.permutations(range(3)),
            key=lambda p: np.linalg.norm(gm.means_[list(p)] - true_means),
        )
        p = list(best)
        return (
            np.linalg.norm(gm.means_[p] - true_means),
            np.linalg.norm(gm.covariances_[p] - true_covs),
        )

    exact = errors(GaussianMixture(**kw).fit(Xn))
    naive = errors(GaussianMixture(**kw).fit(imputed))
    assert exact[0] < 0.5 * naive[0], (exact, naive)
    assert exact[1] < 0.5 * naive[1], (exact, naive)
    assert exact[0] < 0.5 and exact[1] < 2.0, exact


# --------------------------------------------------------------------------
# Threads, determinism, inputs, observed mask, initialisation, loop behaviour
# --------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_and_two_threads_agree(problem, covariance_type):
    """n_threads=1 and 2 agree to 1e-10; a fixed thread count is bitwise repeatable."""
    Xn, _, _ = problem
    kw = dict(covariance_type=covariance_type, max_iter=15, tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        one = GaussianMixture(K, n_threads=1, **kw).fit(Xn)
        two = GaussianMixture(K, n_threads=2, **kw).fit(Xn)
        two_again = GaussianMixture(K, n_threads=2, **kw).fit(Xn)
    for name in PARAMS:
        _close(getattr(one, name), getattr(two, name), 1e-10, name)
        assert_array_equal(getattr(two, name), getattr(two_again, name), err_msg=name)
    _close(one.lower_bounds_, two.lower_bounds_, 1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["C", "F", "float32"])
def test_inputs_are_never_modified(problem, layout, dtype):
    """fit and fit_predict leave X (with NaN) and observed untouched, values and flags."""
    Xn, _, centers = problem
    X = {"C": Xn.copy(), "F": np.asfortranarray(Xn), "float32": Xn.astype(np.float32)}[layout]
    observed = ~np.isnan(X)
    copies = (X.copy(), observed.copy())
    flags = (X.flags.writeable, X.flags.c_contiguous, X.flags.f_contiguous)
    _fit(X, "full", centers, 2, dtype=dtype)
    _fit(np.where(observed, X, 0), "tied", centers, 2, dtype=dtype, observed=observed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        GaussianMixture(K, max_iter=2, random_state=0, dtype=dtype).fit_predict(X)
    assert_array_equal(X, copies[0])
    assert_array_equal(observed, copies[1])
    assert X.dtype == copies[0].dtype
    assert (X.flags.writeable, X.flags.c_contiguous, X.flags.f_contiguous) == flags


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_observed_mask_equals_nan(problem, covariance_type):
    """observed=False entries (whatever X holds there) give exactly the NaN results."""
    Xn, _, centers = problem
    observed = ~np.isnan(Xn)
    garbage = np.where(observed, Xn, 1e6)
    a = GaussianMixture(K, covariance_type=covariance_type, max_iter=5, random_state=0)
    b = GaussianMixture(K, covariance_type=covariance_type, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        labels_a = a.fit_predict(Xn)
        labels_b = b.fit_predict(garbage, observed=observed)
    for name in PARAMS:
        assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.lower_bounds_ == b.lower_bounds_
    assert_array_equal(labels_a, labels_b)
    assert_array_equal(labels_a, a.predict(Xn))  # labels from a final masked E-step


def test_initialisation_uses_column_mean_filled_copy(problem):
    """init_params run on X with missing values filled by observed column means."""
    Xn, _, _ = problem
    filled = np.where(np.isnan(Xn), np.nanmean(Xn, axis=0), Xn)
    for init_params in ("kmeans", "random"):
        kw = dict(init_params=init_params, max_iter=0, random_state=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
            got = GaussianMixture(K, **kw).fit(Xn)
            ref = GaussianMixture(K, **kw).fit(filled)
        for name in PARAMS:
            _close(getattr(got, name), getattr(ref, name), 1e-12, name)


def test_all_missing_rows_take_prior_responsibilities(problem):
    """A row with nothing observed gets r = weights and score 0 marginal (log 1)."""
    Xn, _, centers = problem
    gm = _fit(Xn, "full", centers, 3)
    proba = gm.predict_proba(Xn[:4])
    assert_allclose(proba, np.broadcast_to(gm.weights_, proba.shape), rtol=1e-12)
    assert_allclose(gm.score_samples(Xn[:4]), 0.0, atol=1e-12)


def test_verbose_and_warm_start_with_missing_values(problem, capsys):
    """The shared EM loop prints progress and warm-starts with missing values too."""
    Xn, _, _ = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        gm = GaussianMixture(
            K, verbose=2, verbose_interval=1, max_iter=3, tol=0.0, random_state=0, warm_start=True
        ).fit(Xn)
        out = capsys.readouterr().out
        assert len([line for line in out.splitlines() if "Iteration" in line]) == 3
        assert "ll change" in out
        first = gm.lower_bound_
        gm.fit(Xn)
    assert gm.lower_bounds_[0] >= first - 1e-10 * abs(first)


def test_keyboard_interrupt_keeps_last_completed_iteration(problem, monkeypatch):
    """Ctrl-C during a missing-data fit: the model holds the last completed iteration."""
    Xn, _, centers = problem
    three = _fit(Xn, "full", centers, 3)
    original = _missing_em.estimate_parameters
    calls = {"n": 0}

    def interrupt_fourth_m_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    w, m, _, p = _initial("full", centers)
    gm = GaussianMixture(
        K, max_iter=10, tol=0.0, reg_covar=REG, weights_init=w, means_init=m, precisions_init=p
    )
    monkeypatch.setattr(_missing_em, "estimate_parameters", interrupt_fourth_m_step)
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gm.fit(Xn)
    monkeypatch.undo()
    assert gm.converged_ is False
    assert gm.n_iter_ == 3
    for name in PARAMS:
        assert_array_equal(getattr(gm, name), getattr(three, name), err_msg=name)


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def test_feature_missing_everywhere_is_rejected(problem):
    Xn = problem[0].copy()
    Xn[:, 2] = np.nan
    with pytest.raises(ValueError, match="feature 2 is missing in every sample"):
        GaussianMixture(K).fit(Xn)
    observed = np.ones(Xn.shape, dtype=bool)
    observed[:, 4] = False
    with pytest.raises(ValueError, match="feature 4 is missing in every sample"):
        GaussianMixture(K).fit(np.nan_to_num(Xn), observed=observed)


def test_fewer_samples_than_components_is_rejected(problem):
    with pytest.raises(ValueError, match="n_samples") as excinfo:
        GaussianMixture(3).fit(np.array([[1.0, np.nan], [2.0, 3.0]]))
    assert "n_components" in str(excinfo.value)


@pytest.mark.parametrize("where", ["observed", "masked"])
def test_infinity_is_rejected_anywhere(problem, where):
    """inf is an error, also where observed marks the value missing."""
    Xn = problem[0].copy()
    observed = ~np.isnan(Xn)
    X = np.where(observed, Xn, 0.0)
    row, col = np.argwhere(observed if where == "observed" else ~observed)[7]
    X[row, col] = -np.inf
    Xn[row, col] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        GaussianMixture(K).fit(X, observed=observed)
    if where == "observed":
        with pytest.raises(ValueError, match="infinity"):
            GaussianMixture(K).fit(Xn)


@pytest.mark.parametrize(
    "make_observed, match",
    [
        pytest.param(lambda o: o.astype(np.uint8), "boolean", id="uint8"),
        pytest.param(lambda o: o.astype(float), "boolean", id="float"),
        pytest.param(lambda o: o[:, :-1], "shape", id="columns"),
        pytest.param(lambda o: o[:-1], "shape", id="rows"),
        pytest.param(lambda o: o.T, "shape", id="transposed"),
    ],
)
def test_bad_observed_is_rejected(problem, make_observed, match):
    Xn = problem[0]
    observed = ~np.isnan(Xn)
    with pytest.raises(ValueError, match=match):
        GaussianMixture(K).fit(np.nan_to_num(Xn), observed=make_observed(observed))
    with pytest.raises(ValueError, match=match):
        GaussianMixture(K).fit_predict(np.nan_to_num(Xn), observed=make_observed(observed))


def test_nan_marked_observed_is_rejected(problem):
    Xn = problem[0]
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixture(K).fit(Xn, observed=np.ones(Xn.shape, dtype=bool))


def test_factorisation_failure_names_reg_covar(problem):
    """A block that cannot be factorised raises FactorizationError naming reg_covar."""
    Xn, _, _ = problem
    data = _missing_em.prepare(Xn, None, dtype=np.float64)
    resp = np.full((N, K), 1.0 / K)
    coupled = np.stack([np.eye(D) + 0.1] * K)
    # side 1 factorises Sigma_oo (here negative definite), side 2 P_mm (here 0).
    for side, cov, chol in ((1, -coupled, coupled), (2, coupled, 0 * coupled)):
        with (
            _forced_side(side),
            pytest.raises(_gaussian.FactorizationError, match=r"reg_covar=0\.001"),
        ):
            _missing_em.estimate_parameters(
                data, resp, np.zeros((K, D)), cov, chol, "full", 1e-3, n_threads=2
            )
