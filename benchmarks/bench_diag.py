"""Diagonal covariances at large K: gmmfast vs scikit-learn per EM iteration (issue 27).

K = 256 diagonal components, D = 40 features, N = 100,000 samples drawn from
a known 256-component diagonal mixture. Every model starts from the same
``weights_init``, ``means_init`` (random samples, as scikit-learn's
``init_params="random_from_data"``) and ``precisions_init`` (the data's
inverse variances); scikit-learn is given ``init_params="random_from_data"``
so that it runs no k-means. Each variant's ``fit`` is timed with
``max_iter=1`` and ``max_iter=4`` (``tol=0``): the cost of each further EM
iteration is (t4 - t1) / 3, which leaves out what a fit does once
(validation, initialisation, scikit-learn's final E-step).

Variants: ``sklearn`` (float64), ``gmmfast-f64``, ``gmmfast-f32``, and
``previous-f64``/``previous-f32`` (gmmfast with the term-by-term diagonal
kernels it used at every K before issue 27), in one process, medians (and mins) of 3 rounds after a warm-up round. Before a
gmmfast variant is timed its 4-iteration fit is compared with
scikit-learn's, so the benchmark cannot time a wrong computation.

The work of an iteration is four GEMMs of N x D by D x K: the E-step's
sum_d P_kd x_d^2 and sum_d P_kd mu_kd x_d, the M-step's sum_n r_nk x_n and
sum_n r_nk x_n^2, 8 N D K flops; the report gives the rate this achieves
against the machine's GEMM rate, and the time of each part of gmmfast's
iteration (E-step with its log-sum-exp, responsibility floor, M-step).

    python -m pytest benchmarks/bench_diag.py --benchmark-json=diag.json
"""

from __future__ import annotations

import os
import platform
import time
import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from gmmfast import GaussianMixture
from gmmfast.mixture import _gaussian
from gmmfast.utils._threads import effective_n_threads, single_threaded_blas

K, D, N = 256, 40, 100_000
ITERS = (1, 4)
PEDANTIC = dict(rounds=3, iterations=1, warmup_rounds=1)
VARIANTS = {
    "sklearn": np.float64,
    "gmmfast-f64": np.float64,
    "gmmfast-f32": np.float32,
    # The term-by-term kernels that ran every K before issue 27 (still used below
    # DIAG_GEMM_MIN_COMPONENTS), forced at K = 256: the speed-up in the same process.
    "previous-f64": np.float64,
    "previous-f32": np.float32,
}
# Allowed difference from scikit-learn after 4 iterations, relative to each
# output's largest magnitude (as bench_mixture.py).
RTOL = {np.float64: 1e-8, np.float32: 1e-3}
TARGET = {"gmmfast-f64": 3.0}  # issue 27; float32 must beat float64
FLOPS_PER_ITER = 8.0 * N * D * K
SECTION = "diagonal K=256, D=40, N=100,000: time per further EM iteration"


def _cpu() -> str:
    """CPU model and its AVX flags, from /proc/cpuinfo (as lscpu reports them)."""
    model, flags = platform.processor() or "unknown CPU", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = sorted(
                        x for x in line.split(":", 1)[1].split() if "avx" in x or x == "fma"
                    )
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs; {' '.join(flags) or 'no AVX flags'}"


@pytest.fixture(scope="module")
def problem() -> dict:
    """Samples of a known K-component diagonal mixture and the shared initial parameters."""
    rng = np.random.default_rng(0)
    means = rng.standard_normal((K, D))
    variances = rng.uniform(0.5, 1.5, size=(K, D))
    labels = rng.choice(K, size=N, p=rng.dirichlet(np.full(K, 5.0)))
    X = means[labels] + rng.standard_normal((N, D)) * np.sqrt(variances[labels])
    init = {
        "weights_init": np.full(K, 1.0 / K),
        "means_init": X[rng.choice(N, K, replace=False)],
        "precisions_init": np.tile(1.0 / X.var(axis=0), (K, 1)),
    }
    return {"X": {np.float64: X, np.float32: X.astype(np.float32)}, "init": init}


@pytest.fixture(scope="module")
def timings(report) -> dict:
    """(variant, max_iter) -> (median, min) seconds; the module's summary at teardown."""
    found: dict = {}
    load = os.getloadavg()
    yield found
    lines = report.sections.setdefault(SECTION, [])
    lines.append(f"CPU: {_cpu()}")
    lines.append(
        f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start, "
        "{:.2f} {:.2f} {:.2f} at the end".format(*os.getloadavg())
    )
    (dbest, _), (sbest, _) = report.gemm[np.float64], report.gemm[np.float32]
    lines.append(
        f"machine GEMM rate (numpy matmul, best of 10): dgemm {dbest:.1f}, sgemm {sbest:.1f} GFLOP/s; "
        f"gmmfast runs {effective_n_threads(None)} threads"
    )
    per_iter = {}
    for variant in VARIANTS:
        if all((variant, m) in found for m in ITERS):
            (med1, min1), (med4, min4) = found[variant, 1], found[variant, 4]
            per_iter[variant] = ((med4 - med1) / 3, (min4 - min1) / 3)
    fmt = "{:<12} {:>9} {:>9} {:>11} {:>9} {:>7} {:>17}"
    lines.append(
        fmt.format("variant", "fit(1) s", "fit(4) s", "s/iter", "GFLOP/s", "% GEMM", "vs sklearn")
    )
    sk = per_iter.get("sklearn")
    for variant, (median, fastest) in per_iter.items():
        rate = FLOPS_PER_ITER / median / 1e9
        gemm = sbest if VARIANTS[variant] == np.float32 else dbest
        ratio = (
            ""
            if sk is None or variant == "sklearn"
            else f"{sk[0] / median:.2f}x ({sk[1] / fastest:.2f}x)"
        )
        lines.append(
            fmt.format(
                variant,
                f"{found[variant, 1][0]:.3f}",
                f"{found[variant, 4][0]:.3f}",
                f"{median:.4f}",
                f"{rate:.1f}",
                f"{100 * rate / gemm:.0f}%",
                ratio,
            )
        )
    lines.append(
        "s/iter = (median fit(4) - median fit(1)) / 3; in brackets the ratio from the min times. "
        "GFLOP/s counts 8 N D K per iteration (four N x D by D x K GEMMs); % GEMM against dgemm "
        "(sgemm for gmmfast-f32)."
    )


def _estimator(variant: str, max_iter: int, init: dict):
    common = dict(covariance_type="diag", max_iter=max_iter, tol=0.0, random_state=0, **init)
    if variant == "sklearn":
        return SkGaussianMixture(K, init_params="random_from_data", **common)
    return GaussianMixture(K, dtype=VARIANTS[variant], **common)


def _fit(variant: str, max_iter: int, problem: dict):
    X = problem["X"][VARIANTS[variant]]
    threshold = 10**9 if variant.startswith("previous") else _gaussian.DIAG_GEMM_MIN_COMPONENTS

    def run():
        with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
            warnings.simplefilter("ignore")  # tol=0: never converges, on purpose
            patch.setattr(_gaussian, "DIAG_GEMM_MIN_COMPONENTS", threshold)
            return _estimator(variant, max_iter, problem["init"]).fit(X)

    return run


@pytest.fixture(scope="module")
def reference(problem) -> SkGaussianMixture:
    return _fit("sklearn", max(ITERS), problem)()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("max_iter", ITERS)
def test_diag_fit(benchmark, report, timings, problem, reference, max_iter, variant):
    run = _fit(variant, max_iter, problem)
    if variant != "sklearn" and max_iter == max(ITERS):
        got, rtol = run(), RTOL[VARIANTS[variant]]
        for name in ("weights_", "means_", "covariances_"):
            ref = getattr(reference, name)
            np.testing.assert_allclose(
                getattr(got, name), ref, rtol=rtol, atol=rtol * np.abs(ref).max(), err_msg=name
            )
        np.testing.assert_allclose(got.lower_bound_, reference.lower_bound_, rtol=rtol)
    benchmark.group = f"diag fit, max_iter={max_iter}"
    model = benchmark.pedantic(run, **PEDANTIC)
    assert model.n_iter_ == max_iter
    if benchmark.stats is not None:
        stats = benchmark.stats.stats
        timings[variant, max_iter] = (stats.median, stats.min)
        benchmark.extra_info.update(variant=variant, max_iter=max_iter, n=N, d=D, k=K)


def _cpu_seconds(call, rounds: int = 3) -> float:
    """Median CPU time of the calling thread over ``rounds`` calls: on a shared
    machine it counts this work only, however long other processes hold the cores."""
    times = []
    for _ in range(rounds):
        start = time.thread_time()
        call()
        times.append(time.thread_time() - start)
    return float(np.median(times))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_diag_parts(report, problem, dtype):
    """Where gmmfast's iteration goes, on ONE thread (CPU time of the calling thread,
    which runs a one-thread OpenMP team): E-step (GEMM, log-sum-exp, responsibilities),
    responsibility floor, M-step statistics; against NumPy's single-threaded GEMMs of
    the same shapes (the E-step's [y^2, y] (N x 2D) @ (2D x K) in X's dtype, the
    M-step's (2D + 1) x N @ N x K in float64)."""
    X = problem["X"][dtype]
    name = "gmmfast-" + ("f64" if dtype == np.float64 else "f32")
    model = _estimator(name, 1, problem["init"])
    model.fit(X)
    args = (model.weights_, model.means_, model.precisions_cholesky_, "diag")
    resp = np.empty((N, K))

    def estep() -> None:
        resp[...] = _gaussian.estimate_log_prob(X, *args, mode=_gaussian.MODE_RESP, n_threads=1)[0]

    with single_threaded_blas():
        estep()
        parts = {
            "E-step": _cpu_seconds(
                lambda: _gaussian.estimate_log_prob(X, *args, mode=_gaussian.MODE_RESP, n_threads=1)
            ),
            "floor": _cpu_seconds(
                lambda: _gaussian.floor_responsibilities(resp.copy(), float(model.resp_floor))
            ),
        }
        copy = _cpu_seconds(resp.copy)
        parts["floor"] = max(parts["floor"] - copy, 0.0)  # without the copy it needs
        _gaussian.floor_responsibilities(resp, float(model.resp_floor))
        parts["M-step"] = _cpu_seconds(
            lambda: _gaussian.sufficient_statistics(X, resp, "diag", n_threads=1)
        )
        rng = np.random.default_rng(1)
        rows = rng.standard_normal((N, 2 * D)).astype(dtype)
        stacked = rng.standard_normal((2 * D, K)).astype(dtype)
        stats_rows = rng.standard_normal((2 * D + 1, N))
        gemms = {
            "E-step": _cpu_seconds(lambda: rows @ stacked),
            "M-step": _cpu_seconds(lambda: stats_rows @ resp),
        }
    lines = report.sections.setdefault(SECTION, [])
    text = "; ".join(
        f"{part} {seconds:.3f} s"
        + (f" (its GEMM alone {gemms[part]:.3f} s)" if part in gemms else "")
        for part, seconds in parts.items()
    )
    lines.append(f"{name}, one thread, CPU s: {text}; sum {sum(parts.values()):.3f} s")


@pytest.mark.parametrize("n_components", [2, 4, 8, 16])
@pytest.mark.parametrize("n_features", [2, 10, 40])
def test_diag_small_k(report, n_components, n_features):
    """The term-by-term kernels against the GEMM ones at small K (why the GEMMs start at
    ``DIAG_GEMM_MIN_COMPONENTS``): one thread, CPU time, 20,000 float64 samples."""
    from gmmfast._kernels import _estep, _mstep

    rng = np.random.default_rng(0)
    n = 20_000
    X = rng.standard_normal((n, n_features))
    means, prec = X[:n_components].copy(), np.ones((n_components, n_features))
    log_det, log_w = np.zeros(n_components), np.full(n_components, -np.log(n_components))
    out, log_norm = np.empty((n, n_components)), np.empty(n)
    chunk = _gaussian._diag_estep_chunk(n_components)
    with single_threaded_blas():
        old_e = _cpu_seconds(
            lambda: _estep.estep_diag(X, means, prec, log_det, log_w, out, log_norm, 2, 1024, 1), 7
        )
        new_e = _cpu_seconds(
            lambda: _estep.estep_diag_gemm(
                X, means, prec, log_det, log_w, out, log_norm, 2, chunk, 1
            ),
            7,
        )
        resp = out.copy()
        slots = [np.zeros((1, n_components, n_features)) for _ in range(3)]

        def old_m() -> None:
            nk, sums = np.zeros((1, n_components)), slots[0]
            _mstep.weighted_sums(X, resp, nk, sums, 1024, 1)
            _mstep.weighted_diag_scatter(X, resp, means, slots[1], 1024, 1)

        def new_m() -> None:
            _mstep.weighted_diag_stats(
                X, resp, np.zeros((1, n_components)), slots[0] * 0, slots[1] * 0, 1024, 1
            )

        old_ms, new_ms = _cpu_seconds(old_m, 7), _cpu_seconds(new_m, 7)
    report.sections.setdefault(
        "diagonal kernels at small K (one thread, CPU ms, N=20,000)", []
    ).append(
        f"D={n_features:3d} K={n_components:3d}: E-step term by term {1e3 * old_e:6.2f}, GEMM "
        f"{1e3 * new_e:6.2f}; M-step term by term {1e3 * old_ms:6.2f}, GEMM {1e3 * new_ms:6.2f}"
    )
