"""Whole fits, as a user calls them: gmmfast against scikit-learn in the same run.

Cases (each prints its table at the end of the session; no timing is asserted)
-----------------------------------------------------------------------------
fit_defaults
    ``fit(X)`` with default settings to convergence (k-means initialisation,
    ``tol=1e-3``, ``random_state=0``) on the benchmark's MNIST images, K=10,
    full, ``reg_covar=0.1``: time, iterations and final lower bound of each
    library (gmmfast in float64 and float32).
small_problems
    The clustering most users do: 100 x 5 (K=3), 1,000 x 2 (K=3),
    10,000 x 2 (K=5), 100,000 x 32 (K=16), full, default settings. gmmfast
    with its default threads, with ``n_threads=1``, and scikit-learn, on an
    idle machine and with two busy-looping processes started by the
    benchmark (one per core of this 2-core machine), killed by their PID at
    the end.
classifier_mnist
    ``GMMClassifier(n_components=10, dtype=float32).fit`` on the MNIST
    training images (``--classifier-n``, default all 60,000) against ten
    scikit-learn mixtures fitted one per class (float64), same settings;
    test accuracy of both.
peak_memory
    Peak resident memory of ``fit`` (all ``*_init`` given, 3 iterations) in a
    fresh process per library (``tools/peak_memory.py``); the timed value is
    that fresh process's fit, first-call costs included.

The per-iteration comparison from identical parameters is ``bench_mixture.py``'s
``fit_per_iter`` (``--bench-fit-iter``, default 3).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from gmmfast import GaussianMixture, GMMClassifier
from gmmfast.datasets import MNIST_MD5, load_idx_dir

sys.path.insert(0, str(Path(__file__).parent / "tools"))
import peak_memory  # noqa: E402

REG_COVAR = 0.1
ONCE = dict(rounds=1, iterations=1, warmup_rounds=0)
SMALL = ((100, 5, 3), (1_000, 2, 3), (10_000, 2, 5), (100_000, 32, 16))
SMALL_VARIANTS = ("default threads", "n_threads=1", "sklearn")
LOADS = ("idle", "loaded")


def _fit_quietly(model, X, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # either library may warn about convergence
        return model.fit(X, *args)


def _section(report, title: str, line: str) -> None:
    report.sections.setdefault(title, []).append(line)


# ----------------------------------------------------------- fit_defaults
FIT_VARIANTS = {"sklearn": np.float64, "gmmfast-f64": np.float64, "gmmfast-f32": np.float32}


@pytest.fixture(scope="module")
def default_fits() -> dict:
    return {}


@pytest.mark.parametrize("variant", FIT_VARIANTS)
def test_fit_defaults(benchmark, report, data, default_fits, variant):
    dtype = FIT_VARIANTS[variant]
    X = data.X[np.float64]  # what a user passes; gmmfast-f32 converts it itself

    def fit():
        if variant == "sklearn":
            model = SkGaussianMixture(10, reg_covar=REG_COVAR, random_state=0)
        else:
            model = GaussianMixture(10, reg_covar=REG_COVAR, random_state=0, dtype=dtype)
        return _fit_quietly(model, X)

    benchmark.group = "fit_defaults"
    model = benchmark.pedantic(fit, **ONCE)
    seconds = benchmark.stats.stats.median if benchmark.stats else float("nan")
    record = {"s": seconds, "lower_bound": model.lower_bound_, "n_iter": model.n_iter_}
    default_fits[variant] = record
    benchmark.extra_info.update(case="fit_defaults", variant=variant, **record)
    sk = default_fits.get("sklearn")
    line = (
        f"{variant:<12} {seconds:8.2f} s  {model.n_iter_:3d} iterations  "
        f"lower bound {model.lower_bound_:.8g}"
    )
    if sk is not None and variant != "sklearn":
        ratio = sk["s"] / seconds
        rel = (model.lower_bound_ - sk["lower_bound"]) / abs(sk["lower_bound"])
        benchmark.extra_info.update(speedup_vs_sklearn=ratio, lower_bound_rel_vs_sklearn=rel)
        line += f"  speedup {ratio:.2f}x, lower bound {rel:+.2e} relative to sklearn's"
    _section(
        report,
        f"fit with defaults to convergence ({data.description}; K=10, full, reg_covar={REG_COVAR})",
        line,
    )


# ----------------------------------------------------------- small problems
def _blobs(n: int, d: int, k: int) -> np.ndarray:
    rng = np.random.RandomState(0)
    centres = np.repeat(rng.randn(k, d) * 4, -(-n // k), axis=0)[:n]
    return rng.randn(n, d) + centres


def _interleaved(X: np.ndarray, k: int, fits: int) -> tuple[float, float]:
    """Median seconds of default-thread and one-thread fits run alternately (ABBA
    order), so that both see the same machine: sub-millisecond fits timed one
    variant after the other differ by drift (frequency, caches) more than by threads."""
    import time

    times: dict[int | None, list[float]] = {None: [], 1: []}
    for i in range(fits):
        for threads in (None, 1) if i % 2 == 0 else (1, None):
            start = time.perf_counter()
            _fit_quietly(GaussianMixture(k, random_state=0, n_threads=threads), X)
            times[threads].append(time.perf_counter() - start)
    return float(np.median(times[None])), float(np.median(times[1]))


@pytest.fixture(params=LOADS)
def load(request):
    """``loaded``: two busy-looping processes (both cores) for the duration of one
    test, killed by their PID when it ends (a module-wide load would also slow the
    cases that follow)."""
    busy = []
    if request.param == "loaded":
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield request.param
    for process in busy:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def small_times() -> dict:
    return {}


@pytest.mark.parametrize("variant", SMALL_VARIANTS)
@pytest.mark.parametrize("problem", SMALL, ids=lambda p: "x".join(map(str, p)))
def test_small_problems(benchmark, report, load, small_times, problem, variant):
    n, d, k = problem
    X = _blobs(n, d, k)

    def fit():
        if variant == "sklearn":
            return _fit_quietly(SkGaussianMixture(k, random_state=0), X)
        threads = None if variant == "default threads" else 1
        return _fit_quietly(GaussianMixture(k, random_state=0, n_threads=threads), X)

    benchmark.group = f"small {load} {n}x{d} K={k}"
    rounds = 1 if n >= 100_000 else 7
    model = benchmark.pedantic(fit, rounds=rounds, iterations=1, warmup_rounds=1)
    if benchmark.stats is None:
        return
    median = benchmark.stats.stats.median
    times = small_times.setdefault((load, problem), {})
    times[variant] = median
    benchmark.extra_info.update(
        case="small_problems", load=load, variant=variant, lower_bound=model.lower_bound_
    )
    if len(times) == len(SMALL_VARIANTS):
        # The thread ratio from alternating fits (see _interleaved), not from the
        # benchmarks above, which ran one variant after the other.
        default, one = _interleaved(X, k, 3 if n >= 100_000 else 21)
        threads_ratio = default / one
        speedup = times["sklearn"] / times["default threads"]
        benchmark.extra_info.update(
            default_over_one_thread=threads_ratio,
            interleaved_default_s=default,
            interleaved_one_thread_s=one,
            speedup_vs_sklearn=speedup,
        )
        _section(
            report,
            "small problems (median ms; default/1 thread from alternating fits, target <= 1.1; "
            "speedup = sklearn / default)",
            f"{load:<6} {n:>7} x {d:<2} K={k:<2}  default {1e3 * times['default threads']:9.2f}  "
            f"1 thread {1e3 * times['n_threads=1']:9.2f}  sklearn {1e3 * times['sklearn']:9.2f}  "
            f"alternating {1e3 * default:.2f} / {1e3 * one:.2f}: default/1 thread "
            f"{threads_ratio:.2f}  speedup {speedup:.2f}x",
        )


# ----------------------------------------------------------- classifier
@pytest.fixture(scope="module")
def mnist_full(pytestconfig):
    directory = (
        pytestconfig.getoption("--mnist-dir")
        or os.environ.get("GMMFAST_MNIST_DIR")
        or str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist")
    )
    try:
        train = load_idx_dir(directory, "train", checksums=MNIST_MD5)
        test = load_idx_dir(directory, "test", checksums=MNIST_MD5)
    except FileNotFoundError:
        pytest.skip(f"MNIST not found in {directory}")
    n = pytestconfig.getoption("--classifier-n")
    flat = [(x.reshape(len(x), -1) / 255.0, y) for x, y in (train, test)]
    (X, y), (Xt, yt) = flat
    return X[:n], y[:n], Xt, yt, directory


@pytest.fixture(scope="module")
def classifier_times() -> dict:
    return {}


@pytest.mark.parametrize("variant", ["sklearn x10", "gmmfast-f32"])
def test_classifier_mnist(benchmark, report, mnist_full, classifier_times, variant):
    X, y, Xt, yt, _ = mnist_full
    classes = np.unique(y)

    def fit():
        if variant == "gmmfast-f32":
            clf = GMMClassifier(10, reg_covar=REG_COVAR, dtype=np.float32, random_state=0)
            return _fit_quietly(clf, X, y)
        return [
            _fit_quietly(SkGaussianMixture(10, reg_covar=REG_COVAR, random_state=0), X[y == c])
            for c in classes
        ]

    benchmark.group = "classifier_mnist"
    fitted = benchmark.pedantic(fit, **ONCE)
    if variant == "gmmfast-f32":
        accuracy = float(np.mean(fitted.predict(Xt) == yt))
    else:
        priors = np.log(np.bincount(y) / len(y))
        scores = np.stack([m.score_samples(Xt) for m in fitted], axis=1) + priors
        accuracy = float(np.mean(classes[scores.argmax(axis=1)] == yt))
    seconds = benchmark.stats.stats.median if benchmark.stats else float("nan")
    classifier_times[variant] = seconds
    benchmark.extra_info.update(case="classifier_mnist", variant=variant, accuracy=accuracy)
    line = f"{variant:<12} fit {seconds:8.1f} s  test accuracy {100 * accuracy:.2f}%"
    if variant != "sklearn x10" and "sklearn x10" in classifier_times:
        ratio = classifier_times["sklearn x10"] / seconds
        benchmark.extra_info["speedup_vs_sklearn"] = ratio
        line += f"  speedup {ratio:.2f}x"
    _section(
        report,
        f"GMMClassifier on {len(X):,} MNIST images (K=10 per class, full, reg_covar={REG_COVAR}) "
        "vs ten scikit-learn mixtures",
        line,
    )


# ----------------------------------------------------------- peak memory
@pytest.mark.parametrize("variant", peak_memory.VARIANTS)
def test_peak_memory(benchmark, report, mnist_full, variant):
    directory = mnist_full[4]
    n = min(10_000, len(mnist_full[0]))
    record = benchmark.pedantic(
        peak_memory.measure,
        args=(variant,),
        kwargs=dict(n=n, k=10, max_iter=3, mnist_dir=directory),
        **ONCE,
    )
    benchmark.group = "peak_memory"
    benchmark.extra_info.update(case="peak_memory", **record)
    _section(
        report,
        f"peak resident memory of fit (fresh process, MNIST N={n}, K=10, full, 3 iterations)",
        f"{variant:<12} peak {record['peak_rss_mib']:7.1f} MiB, rise during fit "
        f"{record['fit_rise_mib']:7.1f} MiB, fit {record['fit_s']:.2f} s",
    )
