"""Full and tied covariances at low K x D: the E-step as one GEMM per chunk (issue 30).

Cases: N = 1,000,000, D = 50, K = 3 (the out-of-core case of issue 30) and
N = 100,000, D = 32, K = 16, full covariances, and N = 100,000, D = 64, K = 10 tied,
samples of a known mixture. Variants, in one process: ``sklearn`` (float64),
``stacked-f64`` / ``stacked-f32`` (the stacked-factor GEMM E-step, forced for every
type), ``trmm-f64`` / ``trmm-f32`` (one ``trmm`` per component, forced). gmmfast's
default is the stacked kernel for tied covariances and the trmm for full ones
(``_gaussian.STACKED_TYPES``), chosen from these figures. Every model starts from the same
``*_init``; scikit-learn runs ``init_params="random_from_data"`` (no k-means). The
cost of a further EM iteration is (t(max_iter=4) - t(max_iter=1)) / 3, medians of 3
rounds. Before a gmmfast variant is timed its 4-iteration fit is compared with
scikit-learn's (1e-6 float64, 1e-3 float32).

    python -m pytest benchmarks/bench_low_d.py
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from gmmfast import GaussianMixture
from gmmfast.mixture import _gaussian

CASES = {
    "full N=1M D=50 K=3": (1_000_000, 50, 3, "full"),
    "full N=100k D=32 K=16": (100_000, 32, 16, "full"),
    "tied N=100k D=64 K=10": (100_000, 64, 10, "tied"),
}
ITERS = (1, 4)
PEDANTIC = dict(rounds=3, iterations=1, warmup_rounds=1)
VARIANTS = {
    "sklearn": np.float64,
    "stacked-f64": np.float64,
    "stacked-f32": np.float32,
    "trmm-f64": np.float64,
    "trmm-f32": np.float32,
}
RTOL = {np.float64: 1e-6, np.float32: 1e-3}
SECTION = "full covariances at low K x D: time per further EM iteration"


@pytest.fixture(scope="module")
def problems() -> dict:
    out = {}
    for name, (n, d, k, kind) in CASES.items():
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(k, d)) * 3
        X = centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))
        init = {
            "weights_init": np.full(k, 1.0 / k),
            "means_init": X[rng.choice(n, k, replace=False)],
            "precisions_init": np.tile(np.linalg.inv(np.cov(X.T)), (k, 1, 1)),
        }
        if kind == "tied":
            init["precisions_init"] = init["precisions_init"][0]
        out[name] = {
            np.float64: X,
            np.float32: X.astype(np.float32),
            "init": init,
            "k": k,
            "kind": kind,
        }
    return out


@pytest.fixture(scope="module")
def timings(report):
    found: dict = {}
    load = os.getloadavg()
    yield found
    lines = report.sections.setdefault(SECTION, [])
    lines.append(f"load average {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    (dbest, _), (sbest, _) = report.gemm[np.float64], report.gemm[np.float32]
    for case, (n, d, k, kind) in CASES.items():
        per_iter = {
            v: (found[case, v, 4] - found[case, v, 1]) / 3
            for v in VARIANTS
            if (case, v, 1) in found and (case, v, 4) in found
        }
        sk = per_iter.get("sklearn")
        for variant, seconds in per_iter.items():
            # E-step whitening (the trmm's count; tied: one product per sample).
            flops = 2.0 * n * d * d * (1 if kind == "tied" else k)
            rate = flops / seconds / 1e9
            gemm = sbest if VARIANTS[variant] == np.float32 else dbest
            ratio = "" if sk is None or variant == "sklearn" else f", {sk / seconds:.2f}x sklearn"
            trmm = per_iter.get("trmm-" + variant.split("-")[-1])
            vs = (
                f", {trmm / seconds:.2f}x the trmm kernel"
                if variant.startswith("stacked") and trmm
                else ""
            )
            lines.append(
                f"{case} {variant}: {seconds:.4f} s/iter ({rate:.1f} GFLOP/s of the whitening, "
                f"{100 * rate / gemm:.0f}% of GEMM){ratio}{vs}"
            )


def _run(case, variant, max_iter, problems):
    problem = problems[case]
    dtype = VARIANTS[variant]
    X = problem[dtype]
    common = dict(covariance_type=problem["kind"], max_iter=max_iter, tol=0.0, **problem["init"])
    types = () if variant.startswith("trmm") else ("full", "tied")

    def run():
        with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
            warnings.simplefilter("ignore")
            patch.setattr(_gaussian, "STACKED_TYPES", types)
            if variant == "sklearn":
                return SkGaussianMixture(
                    problem["k"], init_params="random_from_data", **common
                ).fit(X)
            return GaussianMixture(problem["k"], dtype=dtype, **common).fit(X)

    return run


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("max_iter", ITERS)
@pytest.mark.parametrize("case", CASES)
def test_low_d_fit(benchmark, timings, problems, case, max_iter, variant):
    run = _run(case, variant, max_iter, problems)
    if variant != "sklearn" and max_iter == max(ITERS):
        ref = _run(case, "sklearn", max_iter, problems)()
        got, rtol = run(), RTOL[VARIANTS[variant]]
        for name in ("weights_", "means_", "covariances_"):
            want = getattr(ref, name)
            np.testing.assert_allclose(
                getattr(got, name), want, rtol=rtol, atol=rtol * np.abs(want).max(), err_msg=name
            )
    benchmark.group = f"low-D full, {case}, max_iter={max_iter}"
    benchmark.pedantic(run, **PEDANTIC)
    timings[case, variant, max_iter] = benchmark.stats.stats.median
