"""Agreement with scikit-learn's GaussianMixture, used as the oracle.

Given identical initial parameters, EM is deterministic, so gmmfast and
scikit-learn must reach the same fitted model up to float64 rounding
(checked here at 1e-6 relative). Comparisons are scale-aware: arrays are
divided by the per-feature scale of the data before an absolute
tolerance is applied, so features of scale 1e-3 are checked as tightly
as features of scale 1e3.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, DATASET_MAKERS, fit_pair, sklearn_initial_parameters
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.linalg import solve_triangular
from sklearn.mixture import GaussianMixture as SkGM

import gmmfast

RTOL = 1e-6
ATOL_NORMALISED = 1e-9  # on arrays of order 1 once divided by the feature scales


def normalised_parameters(model, scales):
    """Fitted parameters divided by the feature scales (dimensionless).

    With S = diag(scales): means / s, covariances S^-1 C S^-1, and
    precision factors S U (since (S U)(S U)^T = S P S is the precision of
    the scaled data). Spherical parameters mix all features and are
    compared as they are.
    """
    ct = model.covariance_type
    s = np.asarray(scales, dtype=np.float64)
    out = {"weights_": model.weights_, "means_": model.means_ / s}
    cov, prec = model.covariances_, model.precisions_cholesky_
    if ct == "full":
        out["covariances_"] = cov / np.outer(s, s)[None]
        out["precisions_cholesky_"] = prec * s[None, :, None]
    elif ct == "tied":
        out["covariances_"] = cov / np.outer(s, s)
        out["precisions_cholesky_"] = prec * s[:, None]
    elif ct == "diag":
        out["covariances_"] = cov / s**2
        out["precisions_cholesky_"] = prec * s
    else:
        out["covariances_"] = cov
        out["precisions_cholesky_"] = prec
    return out


def loglik_atol(X):
    """Absolute tolerance for log-likelihoods: tiny next to their natural scale."""
    scales = X.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    return 1e-9 * X.shape[1] * (1.0 + np.abs(np.log(scales)).max())


def assert_same_fit(sk, gm, X, scales):
    """Every fitted attribute and inference method of ``gm`` matches ``sk``."""
    assert gm.n_iter_ == sk.n_iter_
    assert gm.converged_ == sk.converged_
    ll_atol = loglik_atol(X)
    assert_allclose(gm.lower_bound_, sk.lower_bound_, rtol=RTOL, atol=ll_atol)
    assert_allclose(gm.lower_bounds_, sk.lower_bounds_, rtol=RTOL, atol=ll_atol)

    ours, theirs = normalised_parameters(gm, scales), normalised_parameters(sk, scales)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(gm, name).shape == getattr(sk, name).shape, name
        assert getattr(gm, name).dtype == np.float64, name
        assert_allclose(ours[name], theirs[name], rtol=RTOL, atol=ATOL_NORMALISED, err_msg=name)
    assert_allclose(
        gm.precisions_,
        sk.precisions_,
        rtol=RTOL,
        atol=ATOL_NORMALISED * np.abs(sk.precisions_).max(),
    )

    assert_allclose(gm.score_samples(X), sk.score_samples(X), rtol=RTOL, atol=ll_atol)
    assert_allclose(gm.score(X), sk.score(X), rtol=RTOL, atol=ll_atol)
    assert_allclose(gm.predict_proba(X), sk.predict_proba(X), rtol=RTOL, atol=1e-9)
    assert_array_equal(gm.predict(X), sk.predict(X))
    n = len(X)
    assert_allclose(gm.bic(X), sk.bic(X), rtol=RTOL, atol=2 * n * ll_atol)
    assert_allclose(gm.aic(X), sk.aic(X), rtol=RTOL, atol=2 * n * ll_atol)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dataset", sorted(DATASET_MAKERS))
def test_fit_matches_sklearn_from_same_init(datasets, dataset, covariance_type):
    """From sklearn-provided initial parameters, the whole fitted model matches sklearn."""
    data = datasets[dataset]
    init = sklearn_initial_parameters(data.X, data.n_components, covariance_type)
    sk, gm = fit_pair(data.X, data.n_components, covariance_type, init)
    assert gm.n_iter_ > 1, "EM should have had something to do"
    assert_same_fit(sk, gm, data.X, data.scales)


def _hand_made_init(data, covariance_type):
    """Uniform weights, true-label means of half the data, unit-scale precisions."""
    K = data.n_components
    half = data.X[::2], data.y[::2]
    means = np.stack([half[0][half[1] == k].mean(axis=0) for k in range(K)])
    inv_var = 1.0 / data.X.var(axis=0)
    precisions = {
        "full": np.stack([np.diag(inv_var)] * K),
        "tied": np.diag(inv_var),
        "diag": np.tile(inv_var, (K, 1)),
        "spherical": np.full(K, inv_var.mean()),
    }[covariance_type]
    return {"weights_init": np.full(K, 1.0 / K), "means_init": means, "precisions_init": precisions}


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dataset", ["anisotropic", "scaled"])
def test_fit_matches_sklearn_from_hand_made_init(datasets, dataset, covariance_type):
    """From hand-constructed initial parameters, the fitted model matches sklearn."""
    data = datasets[dataset]
    init = _hand_made_init(data, covariance_type)
    sk, gm = fit_pair(data.X, data.n_components, covariance_type, init, tol=1e-6)
    assert_same_fit(sk, gm, data.X, data.scales)


def full_covariances(covariances, covariance_type, n_components, n_features):
    """Any covariance representation as a (K, D, D) stack."""
    if covariance_type == "full":
        return covariances
    if covariance_type == "tied":
        return np.broadcast_to(covariances, (n_components, n_features, n_features))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in covariances])
    return np.stack([c * np.eye(n_features) for c in covariances])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_full_covariances_expands_every_type_for_gmmfast_and_sklearn_mixtures(
    datasets, covariance_type
):
    """The (K, D, D) stack used for sampling, imputation and plotting, on both libraries' models."""
    from gmmfast.mixture._gaussian import full_covariances as expand

    data = datasets["anisotropic"]
    init = sklearn_initial_parameters(data.X, data.n_components, covariance_type)
    sk, gm = fit_pair(data.X, data.n_components, covariance_type, init, max_iter=5)
    K, D = data.n_components, data.X.shape[1]
    for model in (sk, gm):
        got = expand(model)
        assert got.shape == (K, D, D)
        assert_allclose(
            got, full_covariances(model.covariances_, covariance_type, K, D), rtol=0, atol=0
        )


def reference_log_density(X, weights, means, covariances, covariance_type):
    """log sum_k w_k N(x | mu_k, Sigma_k) with scipy.stats (an independent oracle)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    K, D = means.shape
    covs = full_covariances(covariances, covariance_type, K, D)
    logp = np.column_stack(
        [
            np.log(weights[k]) + multivariate_normal(means[k], covs[k]).logpdf(X).reshape(-1)
            for k in range(K)
        ]
    )
    return logsumexp(logp, axis=1)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_max_iter_zero_keeps_initial_parameters(datasets, covariance_type):
    """max_iter=0 returns exactly the initial parameters (sklearn's way to inspect inits).

    (sklearn 1.9 itself crashes here when all three *_init are given, so the
    oracle is scipy.stats on the initial parameters.)
    """
    data = datasets["anisotropic"]
    init = sklearn_initial_parameters(data.X, data.n_components, covariance_type)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # max_iter=0 must not warn about convergence
        gm = gmmfast.GaussianMixture(
            data.n_components, covariance_type=covariance_type, max_iter=0, **init
        ).fit(data.X)
    assert gm.n_iter_ == 0
    assert gm.converged_ is False
    assert_array_equal(gm.weights_, init["weights_init"])
    assert_array_equal(gm.means_, init["means_init"])
    prec = init["precisions_init"]
    assert_allclose(gm.precisions_, prec, rtol=1e-10, atol=1e-12 * np.abs(prec).max())
    expected_cov = {
        "full": lambda p: np.linalg.inv(p),
        "tied": lambda p: np.linalg.inv(p),
        "diag": lambda p: 1.0 / p,
        "spherical": lambda p: 1.0 / p,
    }[covariance_type](prec)
    assert_allclose(
        gm.covariances_, expected_cov, rtol=1e-9, atol=1e-12 * np.abs(expected_cov).max()
    )
    expected = reference_log_density(
        data.X, init["weights_init"], init["means_init"], expected_cov, covariance_type
    )
    assert_allclose(gm.score_samples(data.X), expected, rtol=RTOL, atol=loglik_atol(data.X))


def copy_sklearn_parameters(sk):
    """A gmmfast model carrying exactly the fitted parameters of ``sk``."""
    gm = gmmfast.GaussianMixture(sk.n_components, covariance_type=sk.covariance_type)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "n_features_in_"):
        setattr(gm, name, getattr(sk, name))
    return gm


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dataset", sorted(DATASET_MAKERS))
def test_inference_on_sklearn_parameters(datasets, dataset, covariance_type):
    """score_samples & co. on parameters copied from a fitted sklearn model match sklearn."""
    data = datasets[dataset]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SkGM(data.n_components, covariance_type=covariance_type, random_state=0).fit(data.X)
    gm = copy_sklearn_parameters(sk)
    # Training points plus points off the data (far tails stress the kernels).
    rng = np.random.RandomState(0)
    X = np.vstack(
        [data.X, data.X[:20] + 5 * data.scales * rng.standard_normal((20, data.X.shape[1]))]
    )
    atol = loglik_atol(data.X)
    assert_allclose(gm.score_samples(X), sk.score_samples(X), rtol=RTOL, atol=atol)
    assert_allclose(gm.predict_proba(X), sk.predict_proba(X), rtol=RTOL, atol=1e-9)
    assert_array_equal(gm.predict(X), sk.predict(X))
    assert_allclose(gm.score(X), sk.score(X), rtol=RTOL, atol=atol)
    assert_allclose(gm.bic(X), sk.bic(X), rtol=RTOL, atol=2 * len(X) * atol)
    assert_allclose(gm.aic(X), sk.aic(X), rtol=RTOL, atol=2 * len(X) * atol)
    assert_allclose(
        gm.precisions_, sk.precisions_, rtol=1e-12, atol=1e-14 * np.abs(sk.precisions_).max()
    )


def _random_spd(rng, dim, scale):
    a = rng.standard_normal((dim, dim))
    return scale**2 * (a @ a.T / dim + 0.2 * np.eye(dim))


def _random_model_pair(seed, n_components, n_features, covariance_type, scale, offset):
    """sklearn and gmmfast models sharing random (but valid) parameters."""
    rng = np.random.RandomState(seed)
    K, D = n_components, n_features
    weights = rng.dirichlet(np.ones(K))
    means = offset + scale * 2.0 * rng.standard_normal((K, D))
    if covariance_type == "full":
        cov = np.stack([_random_spd(rng, D, scale) for _ in range(K)])
    elif covariance_type == "tied":
        cov = _random_spd(rng, D, scale)
    elif covariance_type == "diag":
        cov = scale**2 * rng.uniform(0.1, 2.0, size=(K, D))
    else:
        cov = scale**2 * rng.uniform(0.1, 2.0, size=K)
    if covariance_type in ("full", "tied"):
        mats = cov if covariance_type == "full" else cov[None]
        factors = np.stack(
            [solve_triangular(np.linalg.cholesky(c), np.eye(D), lower=True).T for c in mats]
        )
        prec_chol = factors if covariance_type == "full" else factors[0]
    else:
        prec_chol = 1.0 / np.sqrt(cov)
    sk = SkGM(K, covariance_type=covariance_type)
    gm = gmmfast.GaussianMixture(K, covariance_type=covariance_type)
    for model in (sk, gm):
        model.weights_, model.means_, model.covariances_ = weights, means, cov
        model.precisions_cholesky_ = prec_chol
        model.n_features_in_ = D
    return sk, gm


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n_samples=st.integers(1, 70),
    n_features=st.integers(1, 6),
    n_components=st.integers(1, 5),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    log10_scale=st.floats(-3, 3),
    offset_in_scales=st.floats(-100, 100),
)
def test_score_samples_and_predict_proba_match_sklearn_random(
    seed, n_samples, n_features, n_components, covariance_type, log10_scale, offset_in_scales
):
    """Random shapes, scales and offsets: score_samples/predict_proba/predict match sklearn."""
    scale = 10.0**log10_scale
    offset = offset_in_scales * scale
    sk, gm = _random_model_pair(seed, n_components, n_features, covariance_type, scale, offset)
    rng = np.random.RandomState(seed + 1)
    X = offset + scale * 3.0 * rng.standard_normal((n_samples, n_features))

    ref = sk.score_samples(X)
    atol = 1e-9 * n_features * (1.0 + abs(np.log(scale)))
    assert_allclose(gm.score_samples(X), ref, rtol=RTOL, atol=atol)
    proba = gm.predict_proba(X)
    assert_allclose(proba, sk.predict_proba(X), rtol=RTOL, atol=1e-9)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    # Labels must agree wherever the top two components are not tied.
    weighted = sk._estimate_weighted_log_prob(X)
    top2 = np.sort(weighted, axis=1)[:, -2:] if n_components > 1 else None
    clear = np.ones(n_samples, bool) if top2 is None else (top2[:, 1] - top2[:, 0]) > 1e-8
    assert_array_equal(gm.predict(X)[clear], sk.predict(X)[clear])


@pytest.mark.parametrize(
    "init_params, covariance_type",
    [("random", ct) for ct in COVARIANCE_TYPES]
    + [("random_from_data", ct) for ct in ("full", "diag", "spherical")],
)
def test_random_inits_match_sklearn_for_same_random_state(datasets, init_params, covariance_type):
    """'random' and 'random_from_data' draw from random_state exactly as sklearn does, so
    with the same seed (and n_init=2) the whole fit matches sklearn.

    ('random_from_data' with 'tied' is left out: from one-hot responsibilities
    on only K rows sklearn's tied formula X^T X - sum_k n_k mu_k mu_k^T, which
    assumes rows summing to 1, gives a different initial covariance.)
    """
    data = datasets["anisotropic"]
    sk, gm = fit_pair(
        data.X,
        data.n_components,
        covariance_type,
        {},
        init_params=init_params,
        random_state=0,
        n_init=2,
    )
    assert_same_fit(sk, gm, data.X, data.scales)
