"""OpenMP threading: results do not depend on the thread count; limits are honoured."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from numpy.testing import assert_allclose, assert_array_equal
from threadpoolctl import threadpool_limits

import gmmfast
from gmmfast import GaussianMixture
from gmmfast.utils._threads import effective_n_threads, usable_cpus

PARAMS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


@pytest.fixture(scope="module")
def thread_data():
    """1500 samples in 4-d: enough rows that 1, 2 and 3 threads use different chunkings."""
    rng = np.random.RandomState(0)
    centers = rng.uniform(-4, 4, size=(4, 4))
    X = np.vstack(
        [c + rng.standard_normal((375, 4)) @ rng.uniform(0.3, 1.0, (4, 4)) for c in centers]
    )
    return X[rng.permutation(len(X))]


def _fit(X, n_threads, covariance_type, dtype=np.float64):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        return GaussianMixture(
            4,
            covariance_type=covariance_type,
            dtype=dtype,
            max_iter=30,
            tol=1e-6,
            random_state=0,
            n_threads=n_threads,
        ).fit(X)


def _assert_close_models(a, b, X, rtol):
    for name in PARAMS:
        ref = getattr(b, name)
        assert_allclose(
            getattr(a, name), ref, rtol=rtol, atol=rtol * np.abs(ref).max(), err_msg=name
        )
    assert a.n_iter_ == b.n_iter_
    assert_allclose(a.lower_bound_, b.lower_bound_, rtol=rtol)
    ref = b.score_samples(X)
    assert_allclose(a.score_samples(X), ref, rtol=rtol, atol=rtol * np.abs(ref).max())


@pytest.fixture(scope="module")
def two_thread_fits(thread_data):
    return {ct: _fit(thread_data, 2, ct) for ct in COVARIANCE_TYPES}


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_and_two_threads_agree(thread_data, two_thread_fits, covariance_type):
    """n_threads=1 and n_threads=2 give the same model and score_samples to 1e-10."""
    one = _fit(thread_data, 1, covariance_type)
    two = two_thread_fits[covariance_type]
    assert one.n_iter_ > 2
    _assert_close_models(one, two, thread_data, 1e-10)
    assert_array_equal(one.predict(thread_data), two.predict(thread_data))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_and_two_threads_agree_float32(thread_data, covariance_type):
    """float32 fits with 1 and 2 threads agree to float32 rounding (1e-5 relative).

    Per-chunk float32 scatter sums depend on the chunking, hence on the
    thread count, so only float32-level agreement can be asked for.
    """
    one = _fit(thread_data, 1, covariance_type, np.float32)
    two = _fit(thread_data, 2, covariance_type, np.float32)
    _assert_close_models(one, two, thread_data, 1e-5)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_more_threads_than_cores_agree(thread_data, two_thread_fits, covariance_type):
    """Oversubscribed (n_threads=5) and n_threads=-1 fits agree with 2 threads to 1e-10."""
    for n_threads in (5, -1):
        _assert_close_models(
            _fit(thread_data, n_threads, covariance_type),
            two_thread_fits[covariance_type],
            thread_data,
            1e-10,
        )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fixed_thread_count_is_bitwise_deterministic(thread_data, covariance_type, dtype):
    """With a given thread count, repeated fits are identical bit for bit."""
    a = _fit(thread_data, 2, covariance_type, dtype)
    b = _fit(thread_data, 2, covariance_type, dtype)
    for name in PARAMS:
        assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert_array_equal(a.score_samples(thread_data), b.score_samples(thread_data))


def test_threadpool_limits_is_honoured(thread_data, two_thread_fits):
    """threadpool_limits(1, 'openmp') reaches the kernels; results equal the 2-thread ones."""
    outside = effective_n_threads(None)
    with threadpool_limits(1, user_api="openmp"):
        assert effective_n_threads(None) == 1
        limited = {ct: _fit(thread_data, None, ct) for ct in COVARIANCE_TYPES}
        scores = {ct: limited[ct].score_samples(thread_data) for ct in COVARIANCE_TYPES}
        assert effective_n_threads(None) == 1
    assert effective_n_threads(None) == outside
    for ct in COVARIANCE_TYPES:
        _assert_close_models(limited[ct], two_thread_fits[ct], thread_data, 1e-10)
        ref = two_thread_fits[ct].score_samples(thread_data)
        assert_allclose(scores[ct], ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


def test_effective_n_threads_values():
    """None: the usable CPUs (within OpenMP's limit); positive values are kept up to the usable
    CPUs and capped above them with a warning; negatives count back from the usable CPUs. A
    build without OpenMP runs everything on one thread."""
    from gmmfast._kernels import _openmp

    cpus = usable_cpus()
    threads = (lambda n: n) if _openmp.openmp_enabled() else (lambda n: 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "gmmfast was built without OpenMP")
        assert effective_n_threads(1) == 1
        assert effective_n_threads(cpus) == threads(cpus)
        with pytest.warns(RuntimeWarning, match="more than the"):
            assert effective_n_threads(cpus + 1) == threads(cpus)
        assert effective_n_threads(-1) == threads(cpus)
        assert effective_n_threads(-cpus - 5) == 1
        assert 1 <= effective_n_threads(None) <= cpus
    for bad in (0, 1.7, "1", True, 2**40 + 0.5):
        with pytest.raises(ValueError, match="n_threads"):
            effective_n_threads(bad)


def test_usable_cpus_follows_the_affinity_mask():
    """usable_cpus() counts the CPUs the process may run on, not the machine's."""
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    assert usable_cpus() <= len(os.sched_getaffinity(0))
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from gmmfast.utils._threads import usable_cpus, effective_n_threads; "
        "print(usable_cpus(), effective_n_threads(None), effective_n_threads(-1))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    ).stdout.split()  # away from the source tree
    assert out == ["1", "1", "1"]


def test_concurrent_calls_leave_the_blas_limit_as_it_was():
    """Several Python threads scoring with one model share one BLAS limit; the last to
    leave restores the original limits (no thread can leave BLAS held at one thread)."""
    from threadpoolctl import threadpool_info

    def blas_threads():
        return sorted(
            info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"
        )

    before = blas_threads()
    rng = np.random.RandomState(0)
    X = rng.standard_normal((3000, 20))
    gm = GaussianMixture(3, max_iter=5, random_state=0).fit(X)
    expected = gm.score_samples(X)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(gm.score_samples(X))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 80
    for result in results:
        assert_array_equal(result, expected)
    assert blas_threads() == before


def test_kernel_calls_take_only_the_threads_their_work_can_keep_busy():
    """Small problems run on one thread (a parallel region would cost more than the work);
    large ones on all the threads the policy allows."""
    from gmmfast.utils._threads import MIN_FLOPS_PER_THREAD, threads_for_work

    assert threads_for_work(8, 100 * 5 * 5 * 3) == 1
    assert threads_for_work(8, 0) == 1
    assert threads_for_work(2, 10 * MIN_FLOPS_PER_THREAD) == 2
    assert threads_for_work(8, 3.5 * MIN_FLOPS_PER_THREAD) == 3


def test_small_problems_give_the_one_thread_result_exactly():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((100, 5))
    one = GaussianMixture(3, random_state=0, n_threads=1).fit(X)
    default = GaussianMixture(3, random_state=0).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_array_equal(getattr(default, name), getattr(one, name), err_msg=name)


def test_idle_openmp_threads_sleep_unless_the_user_says_otherwise():
    """The kernels' OpenMP runtime is loaded with OMP_WAIT_POLICY=PASSIVE, and the variable
    is gone again afterwards (children and other runtimes keep their defaults); a value
    the user set is left as it was."""
    code = "import os, gmmfast._kernels as k; print(k._SET_WAIT_POLICY, os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    assert run.stdout.split() == ["True", "None"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    assert run.stdout.split() == ["False", "ACTIVE"]


def test_ctrl_c_while_limiting_blas_leaves_nothing_held(monkeypatch):
    """Interrupted while the limit is being set, or inside the body: the count returns to 0
    and BLAS keeps (or gets back) its original thread counts."""
    from threadpoolctl import threadpool_info

    import gmmfast.utils._threads as threads

    def blas():
        return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    before = blas()
    with pytest.raises(KeyboardInterrupt):
        with threads.single_threaded_blas():
            raise KeyboardInterrupt
    assert threads._blas_depth == 0 and threads._blas_limiter is None and blas() == before

    class Interrupting:
        def limit(self, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr(threads, "_controller", Interrupting())
    with pytest.raises(KeyboardInterrupt):
        with threads.single_threaded_blas():
            pass  # pragma: no cover - never entered
    assert threads._blas_depth == 0 and threads._blas_limiter is None and blas() == before
