"""Exact EM with missing pixels: gmmfast vs a straightforward NumPy/SciPy loop.

One EM iteration (E-step on the observed pixels, then the M-step with
expected sufficient statistics and the conditional-covariance correction)
of a K=5 full-covariance mixture (reg_covar 0.05) on MNIST pixels in
[0, 1], 25% of each image's pixels missing (each image its own random
mask, fixed seed). The parameters are those of a short complete-data
gmmfast fit; every timed round starts from them.

* ``gmmfast``: ``model._log_prob(data, MODE_RESP)`` then
  ``model._m_step(data, resp)`` on the first --missing-em-n images (what
  ``fit`` runs per iteration: the masked E-step kernel and the masked
  M-step kernel, mask grouping done once per fit, outside the timing).
* ``numpy-loop``: what one writes without gmmfast, on the first
  --missing-em-loop-n images: for every sample and component,
  ``cho_factor`` of Sigma_oo, the log-density, the conditional mean and
  covariance with ``cho_solve``; responsibilities; then the sums.

Samples cost the same on average (same missing fraction), so the two
are compared per sample. Before gmmfast is timed, its iteration on the
loop's images is checked against the loop's result (rtol 1e-8).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import linalg
from scipy.special import logsumexp

from gmmfast import ConvergenceWarning, GaussianMixture
from gmmfast.mixture import _gaussian, _missing_em
from gmmfast.utils._threads import effective_n_threads

K = 5
REG_COVAR = 0.05
MISSING = 0.25
SEED = 0
PARAM_FIT_ITER = 3
PEDANTIC = {
    "numpy-loop": dict(rounds=1, iterations=1, warmup_rounds=0),
    "gmmfast": dict(rounds=2, iterations=1, warmup_rounds=0),
}
RTOL = 1e-8
_RESULTS: dict[
    str, dict
] = {}  # variant -> {"n": images, "median_s": ..., "min_s": ..., "state": ...}


def numpy_em_iteration(X, observed, weights, means, covariances, reg_covar):
    """One exact EM iteration, sample by sample; returns (weights, means, covariances, lower bound).

    Statistics are summed around the current means and corrected at the
    end (the new mean is mu + delta), as gmmfast does, so both keep
    float64 accuracy and can be compared tightly.
    """
    n_samples, n_features = X.shape
    n_components = len(means)
    raw_nk = np.zeros(n_components)
    s1 = np.zeros((n_components, n_features))
    s2 = np.zeros((n_components, n_features, n_features))
    total_log_likelihood = 0.0
    for x, o in zip(X, observed):
        m = ~o
        log_dens = np.empty(n_components)
        dev = np.empty((n_components, n_features))  # xhat - mu_k
        cond = []
        for k in range(n_components):
            sigma = covariances[k]
            factor = linalg.cho_factor(sigma[np.ix_(o, o)], lower=True)
            d = x[o] - means[k, o]
            gain = linalg.cho_solve(factor, sigma[np.ix_(o, m)])  # Sigma_oo^-1 Sigma_om
            log_det = 2.0 * np.log(np.diag(factor[0])).sum()
            log_dens[k] = -0.5 * (
                o.sum() * np.log(2 * np.pi) + log_det + d @ linalg.cho_solve(factor, d)
            )
            dev[k, o] = d
            dev[k, m] = gain.T @ d
            cond.append(sigma[np.ix_(m, m)] - sigma[np.ix_(m, o)] @ gain)
        weighted = np.log(weights) + log_dens
        norm = logsumexp(weighted)
        total_log_likelihood += norm
        resp = np.exp(weighted - norm)
        for k in range(n_components):
            raw_nk[k] += resp[k]
            s1[k] += resp[k] * dev[k]
            s2[k] += resp[k] * np.outer(dev[k], dev[k])
            s2[k][np.ix_(m, m)] += resp[k] * cond[k]
    nk = raw_nk + 10 * np.finfo(np.float64).eps
    new_means = (s1 + raw_nk[:, None] * means) / nk[:, None]
    new_covariances = np.empty_like(covariances)
    for k in range(n_components):
        delta = new_means[k] - means[k]
        scatter = (
            s2[k]
            - np.outer(s1[k], delta)
            - np.outer(delta, s1[k])
            + raw_nk[k] * np.outer(delta, delta)
        )
        new_covariances[k] = scatter / nk[k] + reg_covar * np.eye(n_features)
    return nk / nk.sum(), new_means, new_covariances, total_log_likelihood / n_samples


@pytest.fixture(scope="module")
def missing_problem(data, pytestconfig):
    """(X with NaN, observed mask, parameters (weights, means, covariances, precisions_cholesky))."""
    n = min(pytestconfig.getoption("--missing-em-n"), len(data.X[np.float64]))
    X = data.X[np.float64][:n]
    rng = np.random.default_rng(SEED)
    n_missing = int(round(MISSING * X.shape[1]))
    observed = np.ones(X.shape, dtype=bool)
    for row in observed:
        row[rng.choice(X.shape[1], n_missing, replace=False)] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GaussianMixture(
            K, reg_covar=REG_COVAR, max_iter=PARAM_FIT_ITER, random_state=0
        ).fit(X)
    return np.where(observed, X, np.nan), observed, model._get_parameters()


def _model(params) -> GaussianMixture:
    model = GaussianMixture(K, reg_covar=REG_COVAR)
    model._set_parameters(tuple(p.copy() for p in params))
    model.n_features_in_ = params[1].shape[1]
    return model


def _gmmfast_step(X_nan, params):
    """(target, setup): one gmmfast EM iteration on X_nan from params."""
    model = _model(params)
    data = _missing_em.prepare(X_nan, None, dtype=np.float64)

    def step() -> tuple:
        resp, log_norm = model._log_prob(data, _gaussian.MODE_RESP)
        model._m_step(data, resp)
        return model.weights_, model.means_, model.covariances_, float(log_norm.mean())

    return step, lambda: model._set_parameters(tuple(p.copy() for p in params))


def _check(got: tuple, expected: tuple) -> None:
    for name, a, b in zip(("weights", "means", "covariances", "lower_bound"), got, expected):
        b = np.asarray(b)
        np.testing.assert_allclose(
            a,
            b,
            rtol=RTOL,
            atol=RTOL * np.abs(b).max(),
            err_msg=f"gmmfast {name} differs from the NumPy loop's",
        )


def _summary(d: int) -> list[str]:
    loop, fast = _RESULTS["numpy-loop"], _RESULTS["gmmfast"]
    per_loop = loop["median_s"] / loop["n"]
    per_fast = fast["median_s"] / fast["n"]
    per_fast_min = fast["min_s"] / fast["n"]
    return [
        f"K={K} full, reg_covar={REG_COVAR}, D={d}, {MISSING:.0%} of each image's pixels missing (own random mask, seed {SEED})",
        f"numpy-loop (cho_factor/cho_solve per sample and component), {loop['n']} images: "
        f"{loop['median_s']:.3f} s = {1e3 * per_loop:.2f} ms/sample",
        f"gmmfast (masked E-step + missing-data M-step kernels, n_threads {effective_n_threads(None)}), "
        f"{fast['n']} images: median {fast['median_s']:.3f} s (min {fast['min_s']:.3f}) = "
        f"{1e3 * per_fast:.2f} ms/sample",
        f"per-sample speedup: {per_loop / per_fast:.1f}x (with gmmfast's min: {per_loop / per_fast_min:.1f}x)",
    ]


# numpy-loop first: its result on its images is the reference for gmmfast's check.
@pytest.mark.parametrize("variant", ["numpy-loop", "gmmfast"])
def test_missing_em_iteration(benchmark, report, missing_problem, pytestconfig, variant):
    X_nan, observed, params = missing_problem
    n_loop = min(pytestconfig.getoption("--missing-em-loop-n"), len(X_nan))
    if variant == "numpy-loop":
        X, obs = X_nan[:n_loop], observed[:n_loop]
        weights, means, covariances, _ = params
        target = lambda: numpy_em_iteration(X, obs, weights, means, covariances, REG_COVAR)  # noqa: E731
        setup = None
    else:
        reference = _RESULTS.get("numpy-loop", {}).get("state")
        if reference is None:  # the loop's benchmark was deselected
            weights, means, covariances, _ = params
            reference = numpy_em_iteration(
                X_nan[:n_loop], observed[:n_loop], weights, means, covariances, REG_COVAR
            )
        sub_step, sub_setup = _gmmfast_step(X_nan[:n_loop], params)
        sub_setup()
        _check(sub_step(), reference)  # the benchmark cannot time a wrong computation
        target, setup = _gmmfast_step(X_nan, params)
    benchmark.group = "missing_em_iteration"
    result = benchmark.pedantic(target, setup=setup, **PEDANTIC[variant])
    n = n_loop if variant == "numpy-loop" else len(X_nan)
    benchmark.extra_info.update(
        {"variant": variant, "n_samples": n, "n_components": K, "missing_fraction": MISSING}
    )
    if benchmark.stats is None:  # --benchmark-disable
        return
    stats = benchmark.stats.stats
    _RESULTS[variant] = {"n": n, "median_s": stats.median, "min_s": stats.min, "state": result}
    benchmark.extra_info["seconds_per_sample"] = stats.median / n
    if len(_RESULTS) == 2:
        lines = _summary(X_nan.shape[1])
        benchmark.extra_info["per_sample_speedup_vs_numpy_loop"] = (
            _RESULTS["numpy-loop"]["median_s"] / _RESULTS["numpy-loop"]["n"]
        ) / (stats.median / n)
        report.sections[
            "missing-data EM iteration: gmmfast vs NumPy/SciPy loop (no timing is asserted)"
        ] = lines
