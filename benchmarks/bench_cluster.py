"""Clustering paths: k-means, choosing K by BIC, and the cost of diverse starts.

Cases (tables printed at the end of the session; no timing is asserted)
----------------------------------------------------------------------
kmeans
    ``gmmfast.mixture.k_means`` against scikit-learn's ``KMeans(n_init=1,
    algorithm='lloyd')``, both k-means++ seeded and stopped after exactly
    ``max_iter=20`` Lloyd iterations (``tol=0`` in both; the data below
    take more than 20 to converge, which scikit-learn's ``n_iter_``
    confirms in each run: gmmfast's k_means does not report its count), on the benchmark's MNIST images (K=10) and on
    100,000 x 32 uniform samples (K=16). GFLOP/s counts the 20 iterations'
    2 N K D distance flops, against the machine's GEMM rate.
select_k
    Choosing K by BIC among 1..8 on 10,000 points of the 'stripes' setting:
    ``select_mixture(X, range(1, 9))`` against the scikit-learn loop that
    fits ``GaussianMixture(k)`` and calls ``bic`` for each k.
diverse_starts
    ``GaussianMixture(16, n_init=4)`` on 100,000 x 32 blobs with the default
    diverse starts against four k-means starts: what the agglomerative and
    broad starts cost, and the lower bound each reaches.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from gmmfast import GaussianMixture, select_mixture
from gmmfast.mixture import k_means
from gmmfast.synthetic import make_noncircular

LLOYD_ITERATIONS = 20
ONCE = dict(rounds=3, iterations=1, warmup_rounds=1)


def _section(report, title: str, line: str) -> None:
    report.sections.setdefault(title, []).append(line)


def _uniform(n: int, d: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, d))


@pytest.fixture(scope="module")
def times() -> dict:
    return {}


# ------------------------------------------------------------------ kmeans
@pytest.mark.parametrize("variant", ["sklearn", "gmmfast"])
@pytest.mark.parametrize("problem", ["mnist K=10", "uniform 100000x32 K=16"])
def test_kmeans(benchmark, report, data, times, problem, variant):
    if problem.startswith("mnist"):
        X, K = data.X[np.float64], 10
    else:
        X, K = _uniform(100_000, 32), 16

    def run():
        if variant == "sklearn":
            model = KMeans(K, n_init=1, max_iter=LLOYD_ITERATIONS, tol=0.0, random_state=0)
            return model.fit(X).n_iter_
        k_means(X, K, random_state=0, max_iter=LLOYD_ITERATIONS, tol=0.0)
        return LLOYD_ITERATIONS

    benchmark.group = f"kmeans {problem}"
    n_iter = benchmark.pedantic(run, **ONCE)
    if benchmark.stats is None:
        return
    median = benchmark.stats.stats.median
    flops = 2.0 * X.shape[0] * K * X.shape[1] * n_iter
    gemm = report.gemm[np.float64][0]
    entry = times.setdefault(("kmeans", problem), {})
    entry[variant] = median
    benchmark.extra_info.update(case="kmeans", lloyd_iterations=n_iter, gflops=flops / median / 1e9)
    if len(entry) == 2:
        speedup = entry["sklearn"] / entry["gmmfast"]
        benchmark.extra_info["speedup_vs_sklearn"] = speedup
        _section(
            report,
            f"k-means, {LLOYD_ITERATIONS} Lloyd iterations after k-means++ (median s; GFLOP/s of "
            f"2NKD per iteration against dgemm {gemm:.1f})",
            f"{problem:<24} sklearn {entry['sklearn']:8.3f}  gmmfast {entry['gmmfast']:8.3f}  "
            f"speedup {speedup:5.2f}x  gmmfast {flops / entry['gmmfast'] / 1e9:6.1f} GFLOP/s "
            f"({100 * flops / entry['gmmfast'] / 1e9 / gemm:.0f}% of GEMM)",
        )


# ---------------------------------------------------------------- select_k
@pytest.mark.parametrize("variant", ["sklearn loop", "select_mixture"])
def test_select_k(benchmark, report, times, variant):
    X, _ = make_noncircular("stripes", 10_000, random_state=0)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if variant == "select_mixture":
                return select_mixture(X, range(1, 9), random_state=0).best_params_["n_components"]
            bics = {k: SkGaussianMixture(k, random_state=0).fit(X).bic(X) for k in range(1, 9)}
            return min(bics, key=bics.get)

    benchmark.group = "select K by BIC"
    chosen = benchmark.pedantic(run, **ONCE)
    if benchmark.stats is None:
        return
    entry = times.setdefault(("select_k",), {})
    entry[variant] = (benchmark.stats.stats.median, chosen)
    benchmark.extra_info.update(case="select_k", chosen_k=chosen)
    if len(entry) == 2:
        speedup = entry["sklearn loop"][0] / entry["select_mixture"][0]
        benchmark.extra_info["speedup_vs_sklearn"] = speedup
        _section(
            report,
            "choosing K by BIC, K = 1..8, 10,000 x 2 stripes (n_init=1; median s)",
            f"sklearn loop {entry['sklearn loop'][0]:.3f} s (K={entry['sklearn loop'][1]})  "
            f"select_mixture {entry['select_mixture'][0]:.3f} s (K={entry['select_mixture'][1]})  "
            f"speedup {speedup:.2f}x (one start each: both cut the stripes; n_init=5 with "
            "gmmfast's diverse starts finds them)",
        )


# ----------------------------------------------------------- diverse_starts
@pytest.mark.parametrize("init_params", ["kmeans", "diverse"])
def test_diverse_starts(benchmark, report, times, init_params):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (16, 32))
    X = centres[rng.integers(16, size=100_000)] + rng.standard_normal((100_000, 32))

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return GaussianMixture(16, n_init=4, init_params=init_params, random_state=0).fit(X)

    benchmark.group = "diverse starts"
    model = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    if benchmark.stats is None:
        return
    entry = times.setdefault(("diverse",), {})
    entry[init_params] = (benchmark.stats.stats.median, model.lower_bound_)
    benchmark.extra_info.update(case="diverse_starts", lower_bound=model.lower_bound_)
    if len(entry) == 2:
        (tk, lk), (td, ld) = entry["kmeans"], entry["diverse"]
        _section(
            report,
            "GaussianMixture(16, n_init=4) on 100,000 x 32 blobs: diverse starts against "
            "four k-means starts",
            f"kmeans x4 {tk:.2f} s (lower bound {lk:.6f})  diverse {td:.2f} s (lower bound "
            f"{ld:.6f})  time ratio diverse / kmeans {td / tk:.2f}",
        )
