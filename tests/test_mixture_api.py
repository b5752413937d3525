"""scikit-learn API conventions: params, clone, repr, fit_predict, sample, criteria, verbose."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.mixture import GaussianMixture as SkGM

import gmmfast
from gmmfast import GaussianMixture

SKLEARN_PARAMS = {
    "n_components",
    "covariance_type",
    "tol",
    "reg_covar",
    "max_iter",
    "n_init",
    "init_params",
    "weights_init",
    "means_init",
    "precisions_init",
    "random_state",
    "warm_start",
    "verbose",
    "verbose_interval",
}


# partial_fit's step sizes and averaging (tests/test_partial_fit.py).
STREAM_DEFAULTS = {"learning_decay": 0.6, "learning_offset": 0.0, "averaging": None}


def test_get_params_has_sklearn_params_plus_dtype_threads_floor_and_stream():
    """get_params exposes sklearn's parameters (same defaults, but init_params: 'diverse',
    which is 'kmeans' at n_init=1) plus dtype, n_threads, resp_floor, n_factors (the
    factor types'), Gaussian selection's two and partial_fit's step parameters."""
    params = GaussianMixture().get_params()
    extra = {"dtype", "n_threads", "resp_floor", "n_factors"}
    extra |= {"gaussian_selection", "selection_tol"}
    assert set(params) == SKLEARN_PARAMS | extra | set(STREAM_DEFAULTS)
    assert params["gaussian_selection"] == "auto" and params["selection_tol"] == 1e-3
    assert params["n_factors"] is None
    sk_defaults = SkGM().get_params()
    for name in SKLEARN_PARAMS - {"init_params"}:
        assert params[name] == sk_defaults[name], name
    assert params["init_params"] == "diverse" and sk_defaults["init_params"] == "kmeans"
    assert params["dtype"] is np.float64
    assert params["n_threads"] is None
    assert params["resp_floor"] == 1e-12


def test_set_params_round_trip():
    """set_params changes parameters, returns self, and get_params reflects it."""
    gm = GaussianMixture()
    assert gm.set_params(n_components=4, covariance_type="diag", dtype=np.float32) is gm
    params = gm.get_params()
    assert params["n_components"] == 4
    assert params["covariance_type"] == "diag"
    assert params["dtype"] is np.float32
    assert gm.n_components == 4


def test_clone_gives_unfitted_equal_copy(datasets):
    """sklearn.base.clone copies parameters (not fitted state) of a fitted model."""
    means = np.zeros((2, 2))
    gm = GaussianMixture(
        2, covariance_type="tied", dtype=np.float32, n_threads=1, means_init=means, random_state=3
    ).fit(datasets["separated"].X)
    copy = clone(gm)
    assert type(copy) is GaussianMixture
    assert copy is not gm
    assert not hasattr(copy, "means_")
    p1, p2 = gm.get_params(), copy.get_params()
    assert p1.keys() == p2.keys()
    for name in p1:
        if isinstance(p1[name], np.ndarray):
            assert_array_equal(p1[name], p2[name])
        else:
            assert p1[name] == p2[name], name


def test_fit_returns_self(blobs):
    """fit returns the estimator itself."""
    gm = GaussianMixture(3, random_state=0)
    assert gm.fit(blobs.X) is gm


def test_repr_shows_non_default_parameters():
    """repr is GaussianMixture(...) with exactly the non-default parameters."""
    assert repr(GaussianMixture()) == "GaussianMixture()"
    text = repr(GaussianMixture(3, covariance_type="diag", n_threads=2))
    assert text.startswith("GaussianMixture(") and text.endswith(")")
    assert "n_components=3" in text
    assert "covariance_type='diag'" in text
    assert "n_threads=2" in text
    assert "tol=" not in text and "max_iter=" not in text
    assert "float32" in repr(GaussianMixture(dtype=np.float32))
    repr(GaussianMixture(means_init=np.zeros((1, 2))))  # arrays must not break repr


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "random"])
def test_fit_predict_equals_fit_then_predict(datasets, covariance_type, init_params):
    """fit_predict(X) == fit(X).predict(X) for the same random_state, even unconverged."""
    X = datasets["anisotropic"].X
    for max_iter in (1, 100):
        kw = dict(
            n_components=3,
            covariance_type=covariance_type,
            init_params=init_params,
            max_iter=max_iter,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
            labels = GaussianMixture(**kw).fit_predict(X)
            fitted = GaussianMixture(**kw).fit(X)
        assert labels.shape == (len(X),)
        assert_array_equal(labels, fitted.predict(X))


def test_predict_is_argmax_of_predict_proba(sklearn_pair):
    """predict picks the most probable component; predict_proba rows sum to 1."""
    _, gm, X = sklearn_pair
    proba = gm.predict_proba(X)
    assert proba.shape == (len(X), gm.n_components)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(proba >= 0)
    assert_array_equal(gm.predict(X), proba.argmax(axis=1))
    assert gm.predict(X).dtype.kind in "iu"


def test_score_is_mean_of_score_samples(sklearn_pair):
    """score(X) is the mean of score_samples(X), a Python float."""
    _, gm, X = sklearn_pair
    assert isinstance(gm.score(X), float)
    assert_allclose(gm.score(X), gm.score_samples(X).mean(), rtol=1e-14)
    assert gm.score_samples(X).shape == (len(X),)


def _model_moments(gm):
    """Mixture mean and covariance (law of total covariance)."""
    K, D = gm.means_.shape
    covs = {
        "full": lambda c: c,
        "tied": lambda c: np.broadcast_to(c, (K, D, D)),
        "diag": lambda c: np.stack([np.diag(v) for v in c]),
        "spherical": lambda c: np.stack([v * np.eye(D) for v in c]),
    }[gm.covariance_type](gm.covariances_)
    mean = gm.weights_ @ gm.means_
    centred = gm.means_ - mean
    cov = np.einsum("k,kij->ij", gm.weights_, covs) + np.einsum(
        "k,ki,kj->ij", gm.weights_, centred, centred
    )
    return mean, cov, covs


@pytest.fixture
def seeded_model(sklearn_pair):
    """A copy of the fitted gmmfast model of ``sklearn_pair`` with random_state=0."""
    _, fitted, X = sklearn_pair
    gm = clone(fitted).set_params(random_state=0)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "n_features_in_"):
        setattr(gm, name, getattr(fitted, name))
    return gm, X


def test_sample_shapes_and_labels(seeded_model):
    """sample(n) returns (n, D) floats and (n,) component labels, sorted by component."""
    gm, X = seeded_model
    for n in (1, 7, 100):
        Xs, ys = gm.sample(n)
        assert Xs.shape == (n, X.shape[1]) and ys.shape == (n,)
        assert Xs.dtype == np.float64 and ys.dtype.kind in "iu"
        assert np.all((ys >= 0) & (ys < gm.n_components))
        assert np.all(np.diff(ys) >= 0)
    with pytest.raises(ValueError):
        gm.sample(0)


def test_sample_moments_match_model(seeded_model):
    """A large draw has the model's weights, per-component means/covariances and overall moments."""
    gm, _ = seeded_model
    n = 60_000
    Xs, ys = gm.sample(n)
    mean, cov, comp_covs = _model_moments(gm)
    scale = np.sqrt(np.diag(cov))
    # Monte-Carlo errors are ~ 1/sqrt(n) = 0.004 in units of the spread; allow 5x or more.
    assert_allclose(np.bincount(ys, minlength=gm.n_components) / n, gm.weights_, atol=0.01)
    assert_allclose(Xs.mean(axis=0) / scale, mean / scale, atol=0.02)
    assert_allclose(np.cov(Xs.T) / np.outer(scale, scale), cov / np.outer(scale, scale), atol=0.03)
    for k in range(gm.n_components):
        Xk = Xs[ys == k]
        sk = np.sqrt(np.diag(comp_covs[k]))
        assert_allclose(Xk.mean(axis=0) / sk, gm.means_[k] / sk, atol=0.05)
        assert_allclose(np.cov(Xk.T) / np.outer(sk, sk), comp_covs[k] / np.outer(sk, sk), atol=0.06)


def test_sample_is_repeatable_with_int_random_state(seeded_model):
    """With an int random_state, sample draws the same values each call (as sklearn)."""
    gm, _ = seeded_model
    a, ya = gm.sample(50)
    b, yb = gm.sample(50)
    assert_array_equal(a, b)
    assert_array_equal(ya, yb)
    c, _ = gm.set_params(random_state=4).sample(50)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bic_aic_formula(sklearn_pair, covariance_type):
    """bic/aic follow -2 n score + k log n / 2k, with sklearn's parameter count."""
    sk, gm, X = sklearn_pair
    n, D = X.shape
    K = gm.n_components
    cov_params = {
        "full": K * D * (D + 1) / 2,
        "tied": D * (D + 1) / 2,
        "diag": K * D,
        "spherical": K,
    }[covariance_type]
    n_params = int(cov_params + K * D + K - 1)
    assert n_params == sk._n_parameters()
    loglik = gm.score_samples(X).sum()
    assert_allclose(gm.bic(X), -2 * loglik + n_params * np.log(n), rtol=1e-12)
    assert_allclose(gm.aic(X), -2 * loglik + 2 * n_params, rtol=1e-12)
    assert_allclose(gm.bic(X), sk.bic(X), rtol=1e-6)
    assert_allclose(gm.aic(X), sk.aic(X), rtol=1e-6)


def test_bic_prefers_true_number_of_components(datasets):
    """On three separated blobs, BIC is lowest at K=3."""
    X = datasets["separated"].X
    bics = [GaussianMixture(k, random_state=0).fit(X).bic(X) for k in (1, 2, 3, 4)]
    assert int(np.argmin(bics)) == 2


def test_verbose_2_prints_iteration_lines(datasets, capsys):
    """verbose=2 prints the initialisation, each iteration with timings/changes, and the end."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        GaussianMixture(3, verbose=2, verbose_interval=1, max_iter=5, tol=0.0, random_state=0).fit(
            datasets["anisotropic"].X
        )
    out = capsys.readouterr().out
    assert "Initialization 0" in out
    iteration_lines = [line for line in out.splitlines() if re.search(r"Iteration \d+", line)]
    assert len(iteration_lines) == 5
    assert all("time lapse" in line and "ll change" in line for line in iteration_lines)
    assert "did not converge" in out


def test_verbose_0_is_silent_and_interval_respected(datasets, capsys):
    """verbose=0 prints nothing; verbose=1 prints every verbose_interval-th iteration."""
    X = datasets["anisotropic"].X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        GaussianMixture(3, max_iter=6, tol=0.0, random_state=0).fit(X)
        assert capsys.readouterr().out == ""
        GaussianMixture(3, verbose=1, verbose_interval=3, max_iter=6, tol=0.0, random_state=0).fit(
            X
        )
    out = capsys.readouterr().out
    assert re.findall(r"Iteration (\d+)", out) == ["3", "6"]
    assert "time lapse" not in out


def test_convergence_warning_when_max_iter_too_small(datasets):
    """max_iter too small: gmmfast.ConvergenceWarning, converged_ False, n_iter_ == max_iter."""
    with pytest.warns(gmmfast.ConvergenceWarning, match="converge"):
        gm = GaussianMixture(3, max_iter=2, tol=1e-12, random_state=0).fit(
            datasets["anisotropic"].X
        )
    assert gm.converged_ is False
    assert gm.n_iter_ == 2
    assert len(gm.lower_bounds_) == 2


def test_no_convergence_warning_when_converged(datasets):
    """A converged fit emits no ConvergenceWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", gmmfast.ConvergenceWarning)
        gm = GaussianMixture(3, random_state=0).fit(datasets["separated"].X)
    assert gm.converged_ is True
    assert gm.n_iter_ < gm.max_iter


def test_lower_bounds_increase(datasets, covariance_type):
    """EM never decreases the lower bound (up to rounding), and lower_bound_ is the last one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        gm = GaussianMixture(
            3,
            covariance_type=covariance_type,
            init_params="random",
            tol=0.0,
            max_iter=40,
            random_state=1,
        ).fit(datasets["anisotropic"].X)
    bounds = np.asarray(gm.lower_bounds_)
    assert len(bounds) == gm.n_iter_
    assert np.all(np.diff(bounds) >= -1e-10 * np.abs(bounds[1:]))
    assert gm.lower_bound_ == bounds[-1]


def test_precisions_property_matches_inverse_covariances(sklearn_pair, covariance_type):
    """precisions_ is the inverse of covariances_ (and matches sklearn's)."""
    sk, gm, _ = sklearn_pair
    cov = gm.covariances_
    inv = np.linalg.inv(cov) if covariance_type in ("full", "tied") else 1.0 / cov
    assert_allclose(gm.precisions_, inv, rtol=1e-8, atol=1e-10 * np.abs(inv).max())
    assert_allclose(gm.precisions_, sk.precisions_, rtol=1e-6, atol=1e-9 * np.abs(inv).max())


def test_fitted_attributes_exist(sklearn_pair):
    """All sklearn fitted attributes are present with sklearn's shapes and types."""
    sk, gm, X = sklearn_pair
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(gm, name).shape == getattr(sk, name).shape, name
    assert gm.n_features_in_ == X.shape[1]
    assert isinstance(gm.converged_, bool)
    assert isinstance(gm.n_iter_, int)
    assert isinstance(gm.lower_bound_, float)


def test_keyboard_interrupt_keeps_last_completed_iteration(monkeypatch):
    """Documented Ctrl-C behaviour: the interrupt propagates and the model holds the
    parameters of the last completed iteration (here 3), marked unconverged."""
    rng = np.random.RandomState(0)
    X = np.vstack(
        [c + 0.7 * rng.standard_normal((40, 2)) for c in ([0, 0], [6, 0], [0, 6], [6, 6])]
    )
    kw = dict(n_components=3, init_params="random_from_data", tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        three = GaussianMixture(max_iter=3, **kw).fit(X)

    original = GaussianMixture._estimate
    calls = {"n": 0}

    def interrupt_fourth_e_step(self, Xc, mode):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, Xc, mode)

    monkeypatch.setattr(GaussianMixture, "_estimate", interrupt_fourth_e_step)
    gm = GaussianMixture(max_iter=10, **kw)
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gm.fit(X)
    monkeypatch.undo()
    assert gm.converged_ is False
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_array_equal(getattr(gm, name), getattr(three, name), err_msg=name)
    assert gm.lower_bound_ == three.lower_bound_
    assert gm.lower_bounds_ == three.lower_bounds_
    assert gm.n_iter_ == three.n_iter_ == 3
    assert_array_equal(gm.predict(X), three.predict(X))
