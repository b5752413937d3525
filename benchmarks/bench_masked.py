"""Masked (missing-pixel) kernel vs a straightforward NumPy/SciPy loop.

The peer is what one writes without gmmfast: for every sample and every
component, gather Sigma_oo with ``np.ix_``, ``scipy.linalg.cho_factor`` it,
``cho_solve`` for the quadratic form, and take the log-determinant from the
factor's diagonal; then a log-sum-exp over components. gmmfast's
``score_samples`` on the same NaN-masked images runs the compiled masked
kernel. Both give the same log-likelihoods (checked before timing), the
ratio of their times is printed at the end of the session.

Data: MNIST training pixels (the first --bench-n), a K=5 full-covariance
mixture (reg_covar 0.05) fitted on them, and --masked-n images, each with
its own random 50% of pixels missing.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from scipy import linalg
from scipy.special import logsumexp

from gmmfast import ConvergenceWarning, GaussianMixture

K = 5
MISSING = 0.5
_TIMES: dict[str, float] = {}


def naive_score_samples(model: GaussianMixture, X: np.ndarray) -> np.ndarray:
    """Per-sample, per-component cho_factor/cho_solve: the straightforward way."""
    out = np.empty(len(X))
    log_w = np.log(model.weights_)
    for n, x in enumerate(X):
        o = ~np.isnan(x)
        rows = np.empty(len(model.means_))
        for k, (mu, cov) in enumerate(zip(model.means_, model.covariances_)):
            factor = linalg.cho_factor(cov[np.ix_(o, o)], lower=True)
            d = x[o] - mu[o]
            quad = d @ linalg.cho_solve(factor, d)
            log_det = 2.0 * np.log(np.diag(factor[0])).sum()
            rows[k] = log_w[k] - 0.5 * (o.sum() * np.log(2 * np.pi) + log_det + quad)
        out[n] = logsumexp(rows)
    return out


@pytest.fixture(scope="module")
def masked_problem(data, request):
    X = data.X[np.float64]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GaussianMixture(K, reg_covar=0.05, max_iter=10, random_state=0).fit(X)
    n = request.config.getoption("--masked-n")
    rng = np.random.default_rng(0)
    Xm = X[-n:].astype(np.float64, copy=True)
    Xm[rng.random(Xm.shape) < MISSING] = np.nan
    return model, Xm


@pytest.mark.parametrize("variant", ["numpy-loop", "gmmfast"])
def test_masked_score_samples(benchmark, masked_problem, variant, report):
    model, Xm = masked_problem
    benchmark.group = "masked_score_samples"
    if variant == "gmmfast":
        target = lambda: model.score_samples(Xm)  # noqa: E731
        # the benchmark cannot time a wrong computation
        np.testing.assert_allclose(model.score_samples(Xm[:5]), naive_score_samples(model, Xm[:5]), rtol=1e-9)
    else:
        target = lambda: naive_score_samples(model, Xm)  # noqa: E731
    benchmark.pedantic(target, rounds=3, iterations=1, warmup_rounds=0)
    _TIMES[variant] = benchmark.stats.stats.median
    if len(_TIMES) == 2:
        ratio = _TIMES["numpy-loop"] / _TIMES["gmmfast"]
        benchmark.extra_info["speedup_vs_numpy_loop"] = ratio
        n, d = Xm.shape
        report.sections["masked kernel vs NumPy/SciPy loop (no timing is asserted)"] = [
            f"{n} images x {K} components, D={d}, {MISSING:.0%} of each image's pixels missing (own random mask)",
            f"numpy-loop (cho_factor/cho_solve per sample and component): {_TIMES['numpy-loop']:.3f} s",
            f"gmmfast score_samples (masked kernel): {_TIMES['gmmfast']:.3f} s",
            f"speedup: {ratio:.2f}x (issue target >= 10x)",
            f"per (sample, component): numpy {1e3 * _TIMES['numpy-loop'] / (n * K):.3f} ms, "
            f"gmmfast {1e3 * _TIMES['gmmfast'] / (n * K):.3f} ms",
        ]
