"""Mixtures of factor analysers: covariance_type='factor' (MFA) and 'ppca' (MPPCA).

Oracles: the Woodbury log-likelihood against a dense scipy evaluation, K = 1
MFA against scikit-learn's FactorAnalysis, K = 1 MPPCA against the closed-form
PPCA (scikit-learn's PCA). Then float32 at D = 784, the noise floor, the
parameter checks and what is not supported yet.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from gmmfast import GaussianMixture
from gmmfast.datasets import load_mnist_sample
from gmmfast.mixture import _factor

FACTOR_TYPES = ("factor", "ppca")


def factor_data(n: int = 2000, D: int = 10, q: int = 3, seed: int = 0) -> np.ndarray:
    """Samples of one factor analyser: q strong factors, heteroscedastic noise, offset mean."""
    rng = np.random.RandomState(seed)
    loadings = rng.randn(D, q) * 2
    noise_sd = rng.uniform(0.3, 1.0, D)
    return rng.randn(n, q) @ loadings.T + rng.randn(n, D) * noise_sd + rng.randn(D) * 3


def clusters(n: int = 300, D: int = 8, q: int = 2, K: int = 3, seed: int = 0) -> np.ndarray:
    """K well separated factor-analyser clusters."""
    rng = np.random.RandomState(seed)
    return np.vstack([factor_data(n, D, q, seed + 1 + k) + 40 * rng.randn(D) for k in range(K)])


def random_parameters(K: int, D: int, q: int, seed: int):
    rng = np.random.RandomState(seed)
    weights = rng.dirichlet(np.ones(K))
    means = rng.randn(K, D)
    loadings = rng.randn(K, D, q)
    noise = rng.uniform(0.05, 2.0, (K, D))
    return weights, means, loadings, noise


def with_parameters(covariance_type, weights, means, loadings, noise, **params):
    """A factor model holding the given parameters (fitted for one iteration, then replaced)."""
    K, D, q = loadings.shape
    X = np.random.RandomState(0).randn(5 * K + D, D)
    gm = GaussianMixture(K, covariance_type=covariance_type, n_factors=q, max_iter=1, **params)
    with pytest.warns(Warning):  # one iteration does not converge
        gm.fit(X)
    gm.weights_, gm.means_ = weights, means
    gm.factor_loadings_, gm.noise_variance_ = loadings, noise
    return gm


# ------------------------------------------------------------------ oracles
def test_woodbury_log_likelihood_equals_dense_scipy():
    """score_samples and the per-component densities through Woodbury and the
    determinant lemma equal scipy's dense evaluation to 1e-10 (float64, K = 3)."""
    K, D, q = 3, 15, 4
    params = random_parameters(K, D, q, seed=1)
    weights, means, loadings, noise = params
    X = np.random.RandomState(2).randn(200, D) * 2
    covs = loadings @ loadings.transpose(0, 2, 1) + np.stack([np.diag(p) for p in noise])
    dense = np.stack(
        [multivariate_normal(means[k], covs[k]).logpdf(X) + np.log(weights[k]) for k in range(K)],
        axis=1,
    )
    weighted, _ = _factor.estimate_log_prob(X, *params, mode="weighted", n_threads=1)
    np.testing.assert_allclose(weighted, dense, rtol=1e-10)
    gm = with_parameters("factor", *params)
    top = dense.max(axis=1)
    expected = top + np.log(np.exp(dense - top[:, None]).sum(axis=1))
    np.testing.assert_allclose(gm.score_samples(X), expected, rtol=1e-10)
    np.testing.assert_allclose(gm.covariances_, covs, rtol=1e-12)
    np.testing.assert_allclose(
        np.einsum("kij,kjl->kil", gm.precisions_, covs),
        np.broadcast_to(np.eye(D), covs.shape),
        atol=1e-9,
    )
    resp = gm.predict_proba(X)
    np.testing.assert_allclose(resp, np.exp(dense - expected[:, None]), rtol=1e-9, atol=1e-14)


def test_k1_mfa_equals_factor_analysis():
    """K = 1 MFA: EM from the default start converges to scikit-learn's FactorAnalysis
    log-likelihood within 1e-6 relative, and FactorAnalysis's solution is a fixed point."""
    FactorAnalysis = pytest.importorskip("sklearn.decomposition").FactorAnalysis
    X = factor_data()
    fa = FactorAnalysis(n_components=3, tol=1e-12, max_iter=100_000).fit(X)
    reference = fa.score(X)
    gm = GaussianMixture(
        1, covariance_type="factor", n_factors=3, tol=1e-12, max_iter=5000, reg_covar=0.0
    )
    gm.fit(X)
    assert gm.converged_
    assert abs(gm.score(X) - reference) <= 1e-6 * abs(reference)
    # The same covariance (W is unique up to a rotation), to the slower convergence of
    # parameters (the likelihood is flat, quadratically, around its maximum).
    np.testing.assert_allclose(gm.noise_variance_[0], fa.noise_variance_, rtol=1e-3)
    np.testing.assert_allclose(gm.covariances_[0], fa.get_covariance(), rtol=1e-3, atol=1e-4)
    # Fixed point: one EM iteration from FactorAnalysis's parameters keeps them.
    fixed = GaussianMixture(
        1,
        covariance_type="factor",
        n_factors=3,
        warm_start=True,
        max_iter=1,
        tol=0.0,
        reg_covar=0.0,
    )
    with pytest.warns(Warning):
        fixed.fit(X)
    fixed.means_ = fa.mean_[None].copy()
    fixed.factor_loadings_ = fa.components_.T[None].copy()
    fixed.noise_variance_ = fa.noise_variance_[None].copy()
    with pytest.warns(Warning):
        fixed.fit(X)
    assert abs(fixed.lower_bound_ - reference) <= 1e-9 * abs(reference)
    np.testing.assert_allclose(fixed.covariances_[0], fa.get_covariance(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fixed.means_[0], fa.mean_, rtol=0, atol=1e-9)


def test_k1_ppca_equals_closed_form_pca():
    """K = 1 MPPCA equals PCA(n_components=q).score within 1e-6 relative. The MLE divides
    by n where PCA divides by n - 1: its covariance is exactly (n - 1) / n PCA's."""
    PCA = pytest.importorskip("sklearn.decomposition").PCA
    X = factor_data(n=3000, D=12, q=4, seed=3)
    n = len(X)
    pca = PCA(n_components=4).fit(X)
    gm = GaussianMixture(
        1, covariance_type="ppca", n_factors=4, tol=1e-12, max_iter=200, reg_covar=0.0
    ).fit(X)
    assert gm.converged_
    reference = pca.score(X)
    assert abs(gm.score(X) - reference) <= 1e-6 * abs(reference)
    np.testing.assert_allclose(
        gm.covariances_[0], pca.get_covariance() * (n - 1) / n, rtol=1e-8, atol=1e-10
    )
    assert np.ptp(gm.noise_variance_[0]) == 0
    # The MLE scores at least as well as PCA's unbiased covariance on its training data.
    assert gm.score(X) >= reference - 1e-12


@pytest.mark.filterwarnings("ignore:Best performing initialization did not converge")
@pytest.mark.parametrize("covariance_type", FACTOR_TYPES)
def test_em_never_decreases_the_likelihood_and_separates_clusters(covariance_type):
    X = clusters()
    gm = GaussianMixture(
        3, covariance_type=covariance_type, n_factors=2, tol=1e-10, max_iter=300, random_state=0
    ).fit(X)
    bounds = np.array(gm.lower_bounds_)
    assert np.all(np.diff(bounds) >= -1e-10 * np.abs(bounds[1:]))
    labels = gm.predict(X)
    truth = np.repeat(np.arange(3), 300)
    # Each true cluster is one predicted component, and the three are distinct.
    assert all(len(np.unique(labels[truth == k])) == 1 for k in range(3))
    assert len(np.unique(labels)) == 3
    np.testing.assert_allclose(gm.predict_proba(X).sum(axis=1), 1.0)
    assert gm.fit_predict(X).shape == (len(X),)
    assert np.isclose(gm.score(X), gm.score_samples(X).mean())


def test_m_step_from_statistics_is_the_em_update_of_dense_scatter():
    """The M-step without the D x D scatter equals the textbook EM update computed with
    it (Ghahramani and Hinton's joint regression on [z; 1]), K = 2."""
    K, D, q = 2, 7, 2
    weights, means, loadings, noise = random_parameters(K, D, q, seed=5)
    X = np.random.RandomState(6).randn(400, D) * 1.5
    stats = _factor.e_step_statistics(X, weights, means, loadings, noise, n_threads=1)
    nk, new_means, new_loadings, new_noise = _factor.m_step(
        stats, means, loadings, noise, 1e-6, "factor"
    )
    resp, _ = _factor.estimate_log_prob(
        X, weights, means, loadings, noise, mode="resp", n_threads=1
    )
    for k in range(K):
        r = resp[:, k]
        W, psi = loadings[k], noise[k]
        M = np.eye(q) + W.T @ (W / psi[:, None])
        beta = np.linalg.solve(M, W.T / psi)  # E[z|x] = beta (x - mu)
        Ez = (X - means[k]) @ beta.T
        Ezt = np.column_stack([Ez, np.ones(len(X))])
        Ezz = np.zeros((q + 1, q + 1))
        Ezz[:q, :q] = r.sum() * np.linalg.inv(M)
        Ezz += (Ezt * r[:, None]).T @ Ezt
        Wt = np.linalg.solve(Ezz, Ezt.T @ (X * r[:, None])).T
        psi_new = np.diag((X * r[:, None]).T @ X - Wt @ ((Ezt * r[:, None]).T @ X)) / r.sum()
        np.testing.assert_allclose(nk[k], r.sum(), rtol=1e-12)
        np.testing.assert_allclose(new_loadings[k], Wt[:, :q], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(new_means[k], Wt[:, q], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(new_noise[k], psi_new + 1e-6, rtol=1e-8)


# ------------------------------------------------------- float32, degenerate data
def test_float32_at_784_features_is_finite_and_close_to_float64():
    """MNIST (D = 784): a float32 fit gives finite log-likelihoods (per-component densities
    are far below float64's smallest number: they stay in log space), equal to a float64
    evaluation of the same parameters."""
    X, _, X_test, _ = load_mnist_sample()
    X, X_test = X[:1500], X_test[:300]
    gm = GaussianMixture(
        3, covariance_type="factor", n_factors=5, max_iter=4, random_state=0, dtype=np.float32
    )
    with pytest.warns(Warning):  # 4 iterations
        gm.fit(X)
    scores = gm.score_samples(X_test)
    assert np.all(np.isfinite(scores))
    assert np.all(np.isfinite(gm.lower_bounds_))
    assert gm.lower_bounds_[-1] > gm.lower_bounds_[0]
    as64 = copy.deepcopy(gm).set_params(dtype=np.float64)
    np.testing.assert_allclose(
        scores, as64.score_samples(X_test.astype(np.float64)), rtol=1e-10, atol=1e-8
    )
    # Constant border pixels keep a positive noise variance: the floor.
    constant = np.ptp(X, axis=0) == 0
    assert constant.any()
    assert np.all(gm.noise_variance_ >= gm.reg_covar)


@pytest.mark.parametrize("covariance_type", FACTOR_TYPES)
def test_constant_features_keep_noise_at_the_floor(covariance_type):
    X = clusters(K=2)
    X[:, [0, 3]] = 5.0  # constant features
    gm = GaussianMixture(
        2,
        covariance_type=covariance_type,
        n_factors=2,
        reg_covar=1e-4,
        max_iter=50,
        random_state=0,
    ).fit(X)
    assert np.all(gm.noise_variance_ >= 1e-4)
    if covariance_type == "factor":
        np.testing.assert_allclose(gm.noise_variance_[:, [0, 3]], 1e-4, rtol=1e-6)
        np.testing.assert_allclose(gm.factor_loadings_[:, [0, 3]], 0.0, atol=1e-6)
    assert np.all(np.isfinite(gm.score_samples(X)))


def test_threads_do_not_change_results():
    X = clusters(n=2000, K=2)
    fits = [
        GaussianMixture(
            2,
            covariance_type="factor",
            n_factors=2,
            max_iter=5,
            tol=0.0,
            random_state=0,
            n_threads=n,
        )
        for n in (1, 2)
    ]
    for gm in fits:
        with pytest.warns(Warning):
            gm.fit(X)
    np.testing.assert_array_equal(fits[0].factor_loadings_, fits[1].factor_loadings_)
    np.testing.assert_array_equal(fits[0].lower_bounds_, fits[1].lower_bounds_)


# ------------------------------------------------------------------ attributes
def test_fitted_attributes_and_dense_forms():
    X = clusters(K=2, D=6)
    gm = GaussianMixture(2, covariance_type="ppca", n_factors=2, random_state=0).fit(X)
    assert gm.factor_loadings_.shape == (2, 6, 2)
    assert gm.noise_variance_.shape == (2, 6)
    assert np.all(np.ptp(gm.noise_variance_, axis=1) == 0)  # sigma_k^2 in every row
    W, psi = gm.factor_loadings_, gm.noise_variance_
    np.testing.assert_allclose(
        gm.covariances_, W @ W.transpose(0, 2, 1) + np.stack([np.diag(p) for p in psi])
    )
    with pytest.raises(ValueError, match="precisions_cholesky_ is not available.*'ppca'"):
        gm.precisions_cholesky_
    assert not hasattr(gm, "precisions_cholesky_")
    assert not hasattr(GaussianMixture(2, covariance_type="factor"), "covariances_")


def test_dense_covariances_refused_beyond_4096_features():
    rng = np.random.RandomState(0)
    X = rng.randn(12, 4100)
    gm = GaussianMixture(1, covariance_type="factor", n_factors=2, max_iter=2)
    with pytest.warns(Warning):
        gm.fit(X)  # the initial PCA takes the randomised path beyond 1024 features
    assert np.all(np.isfinite(gm.score_samples(X)))
    for name in ("covariances_", "precisions_"):
        with pytest.raises(ValueError, match="4096 features"):
            getattr(gm, name)


@pytest.mark.parametrize("covariance_type, noise", [("factor", 6), ("ppca", 1)])
def test_n_parameters_count_loadings_up_to_rotation(covariance_type, noise):
    X = clusters(K=2, D=6)
    gm = GaussianMixture(2, covariance_type=covariance_type, n_factors=2, random_state=0).fit(X)
    D, q = 6, 2
    per_component = D * q - q * (q - 1) // 2 + noise + D
    assert gm._n_parameters() == 2 * per_component + 1
    n = len(X)
    assert np.isclose(gm.bic(X), -2 * gm.score(X) * n + gm._n_parameters() * np.log(n))
    assert np.isclose(gm.aic(X), -2 * gm.score(X) * n + 2 * gm._n_parameters())


def test_sample_has_the_model_covariance():
    X = factor_data(n=1000, D=5, q=2)
    gm = GaussianMixture(1, covariance_type="factor", n_factors=2, random_state=0).fit(X)
    draws, labels = gm.sample(40_000)
    assert draws.shape == (40_000, 5) and np.all(labels == 0)
    np.testing.assert_allclose(np.cov(draws.T), gm.covariances_[0], rtol=0.05, atol=0.05)
    np.testing.assert_allclose(draws.mean(axis=0), gm.means_[0], atol=0.1)


# ------------------------------------------------------------------ parameters
@pytest.mark.parametrize("covariance_type", FACTOR_TYPES)
@pytest.mark.parametrize(
    "n_factors, message",
    [
        (None, "n_factors is required"),
        (0, "at least 1"),
        (-2, "at least 1"),
        (6, "smaller than the number of features"),
        (7, "smaller than the number of features"),
        (2.0, "must be an integer"),
        (2.5, "must be an integer"),
        ("2", "must be an integer"),
        (True, "must be an integer"),
    ],
)
def test_bad_n_factors_refused_at_fit(covariance_type, n_factors, message):
    gm = GaussianMixture(2, covariance_type=covariance_type, n_factors=n_factors)
    with pytest.raises(ValueError, match=message):
        gm.fit(clusters(K=2, D=6))


@pytest.mark.parametrize("n_factors", [None, 0, 2.5, "x", 100])
def test_n_factors_ignored_by_other_types(n_factors):
    X = clusters(K=2, D=6)
    plain = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    other = GaussianMixture(2, covariance_type="diag", random_state=0, n_factors=n_factors).fit(X)
    np.testing.assert_array_equal(plain.means_, other.means_)
    np.testing.assert_array_equal(plain.covariances_, other.covariances_)
    assert not hasattr(other, "factor_loadings_")


def test_get_params_set_params_clone_pickle():
    clone = pytest.importorskip("sklearn.base").clone
    gm = GaussianMixture(2, covariance_type="factor", n_factors=3)
    assert gm.get_params()["n_factors"] == 3
    assert "n_factors=3" in repr(gm)
    copy_ = clone(gm)
    assert copy_.get_params() == gm.get_params()
    assert copy_.set_params(n_factors=4, covariance_type="ppca").n_factors == 4
    X = clusters(K=2, D=6)
    gm.fit(X)
    again = pickle.loads(pickle.dumps(gm))
    np.testing.assert_array_equal(again.score_samples(X), gm.score_samples(X))


def test_changing_the_type_after_fit():
    X = clusters(K=2, D=6)
    gm = GaussianMixture(2, covariance_type="factor", n_factors=2, random_state=0).fit(X)
    gm.set_params(covariance_type="full")
    with pytest.raises(ValueError, match="changed after fit"):
        gm.predict(X)
    gm.fit(X)  # a dense fit drops the factor attributes
    assert not hasattr(gm, "factor_loadings_") and gm.covariances_.shape == (2, 6, 6)
    gm.set_params(covariance_type="ppca", n_factors=1).fit(X)
    assert "covariances_" not in vars(gm) and gm.factor_loadings_.shape == (2, 6, 1)
    assert gm.covariances_.shape == (2, 6, 6)  # formed from W and Psi
    gm.set_params(n_factors=2, warm_start=True)
    with pytest.raises(ValueError, match="fitted 1 factors, but n_factors=2"):
        gm.fit(X)


def test_unsupported_for_now_refused_clearly(tmp_path):
    X = clusters(K=2, D=6)
    gm = GaussianMixture(2, covariance_type="factor", n_factors=2, random_state=0)
    missing = X.copy()
    missing[0, 0] = np.nan
    with pytest.raises(ValueError, match="Missing values .* not yet supported.*'factor'"):
        gm.fit(missing)
    with pytest.raises(ValueError, match="partial_fit is not yet supported"):
        gm.partial_fit(X)
    with pytest.raises(ValueError, match="precisions_init is not yet supported"):
        GaussianMixture(
            2, covariance_type="ppca", n_factors=2, precisions_init=np.ones((2, 6))
        ).fit(X)
    gm.fit(X)
    with pytest.raises(ValueError, match="Missing values .* not yet supported"):
        gm.score_samples(missing)
    with pytest.raises(ValueError, match="Missing values .* not yet supported"):
        gm.predict(X, observed=np.ones(X.shape, dtype=bool))
    with pytest.raises(ValueError, match="save is not yet supported"):
        gm.save(tmp_path / "model.npz")
    assert not (tmp_path / "model.npz").exists()
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="Dask array is not yet supported"):
        GaussianMixture(2, covariance_type="factor", n_factors=2).fit(da.from_array(X))
    with pytest.raises(ValueError, match="Dask array is not yet supported"):
        gm.score(da.from_array(X))
