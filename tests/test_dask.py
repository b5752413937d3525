"""EM on Dask arrays (gmmfast.mixture._dask) against the in-memory fit.

Run on Dask's threaded scheduler and on a real ``LocalCluster`` of two
worker processes on 127.0.0.1 (started and closed by this module). From
the same initial parameters the fitted parameters equal the in-memory
ones to 1e-10 (float64) or the float32 tolerance, whatever the chunking.
The fault tests kill one worker process of this module's own cluster (by
PID) mid-fit, and interrupt the client with Ctrl-C.

Marked ``dask``: deselect with ``-m "not dask"``; skipped without dask/distributed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest

from gmmfast import ConvergenceWarning, GaussianMixture

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.dask, pytest.mark.filterwarnings("ignore::gmmfast.ConvergenceWarning")]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
CHUNKINGS = {
    "even": 100,
    "uneven": (1, 149, 37, 263, 150),  # a chunk of one sample
}


@pytest.fixture(scope="module")
def cluster():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    try:
        yield cluster
    finally:
        cluster.close(timeout=20)


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False, timeout=30) as client:
        client.wait_for_workers(2, timeout=30)
        yield client


@pytest.fixture(params=["threads", "cluster"])
def scheduler(request):
    """Runs the test body on Dask's threaded scheduler or on the LocalCluster."""
    if request.param == "threads":
        yield None
    else:
        client = request.getfixturevalue("client")
        with client.as_current():
            yield client


def _data(n: int = 600, seed: int = 0, dtype=np.float64) -> np.ndarray:
    rng = np.random.RandomState(seed)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [-3.0, 3.0, 2.0]])
    X = np.vstack([rng.randn(n // 3, 3) @ rng.randn(3, 3) * 0.7 + c for c in centres])
    return X[rng.permutation(len(X))].astype(dtype)


def _init(X: np.ndarray, covariance_type: str) -> dict:
    """Initial parameters from a short in-memory fit (the same for both fits)."""
    ref = GaussianMixture(3, covariance_type=covariance_type, random_state=0, max_iter=2).fit(X)
    return {
        "weights_init": ref.weights_,
        "means_init": ref.means_,
        "precisions_init": ref.precisions_,
    }


def _assert_same(a: GaussianMixture, b: GaussianMixture, rtol: float) -> None:
    assert a.n_iter_ == b.n_iter_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        x, y = getattr(a, name), getattr(b, name)
        scale = np.abs(x).max()
        np.testing.assert_allclose(y, x, rtol=0, atol=rtol * scale, err_msg=name)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=rtol)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("chunking", sorted(CHUNKINGS))
def test_fit_equals_in_memory(scheduler, covariance_type, chunking):
    X = _data()
    init = _init(X, covariance_type)
    params = dict(covariance_type=covariance_type, tol=0.0, max_iter=12, **init)
    memory = GaussianMixture(3, **params).fit(X)
    Xd = da.from_array(X, chunks=(CHUNKINGS[chunking], (2, 1)))  # rechunked along features
    dask_fit = GaussianMixture(3, **params).fit(Xd)
    _assert_same(memory, dask_fit, 1e-10)
    assert dask_fit.n_features_in_ == 3 and dask_fit.converged_ is False


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_float32_equals_in_memory(scheduler, covariance_type):
    X = _data(dtype=np.float32)
    init = _init(X.astype(np.float64), covariance_type)
    params = dict(covariance_type=covariance_type, tol=0.0, max_iter=10, dtype=np.float32, **init)
    memory = GaussianMixture(3, **params).fit(X)
    dask_fit = GaussianMixture(3, **params).fit(da.from_array(X, chunks=((1, 99, 250, 250), 3)))
    # The in-memory float32 tolerance (tests/test_mixture_float32.py compares float32 to float64 at 1e-4).
    _assert_same(memory, dask_fit, 1e-5)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_missing_values_equal_in_memory(scheduler, covariance_type):
    X = _data(seed=1)
    rng = np.random.RandomState(2)
    X[rng.uniform(size=X.shape) < 0.15] = np.nan
    X[:5] = np.nan  # rows with nothing observed
    X[5:40, 1] = np.nan  # a feature missing in a whole chunk
    X_before = X.copy()
    init = _init(np.where(np.isnan(X), np.nanmean(X, axis=0), X), covariance_type)
    params = dict(covariance_type=covariance_type, tol=0.0, max_iter=8, **init)
    memory = GaussianMixture(3, **params).fit(X)
    dask_fit = GaussianMixture(3, **params).fit(da.from_array(X, chunks=((40, 1, 259, 300), 3)))
    _assert_same(memory, dask_fit, 1e-10)
    np.testing.assert_array_equal(X, X_before)  # input not modified


def test_inference_is_lazy_and_equal(scheduler):
    X = _data()
    gm = GaussianMixture(3, random_state=0).fit(X)
    Xd = da.from_array(X, chunks=((1, 299, 300), 3))
    proba, labels, scores = gm.predict_proba(Xd), gm.predict(Xd), gm.score_samples(Xd)
    for lazy in (proba, labels, scores):
        assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(proba.compute(), gm.predict_proba(X), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(labels.compute(), gm.predict(X))
    np.testing.assert_allclose(scores.compute(), gm.score_samples(X), rtol=1e-12)
    for method in ("score", "bic", "aic"):
        value = getattr(gm, method)(Xd)
        assert isinstance(value, float)
        assert value == pytest.approx(getattr(gm, method)(X), rel=1e-12)
    # Missing values are marginalised block by block, as in memory.
    Xn = X.copy()
    Xn[::7, 0] = np.nan
    np.testing.assert_allclose(
        gm.score_samples(da.from_array(Xn, chunks=50)).compute(), gm.score_samples(Xn), rtol=1e-12
    )


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_initialisations(scheduler, init_params):
    X = _data()
    Xd = da.from_array(X, chunks=150)
    a = GaussianMixture(3, init_params=init_params, random_state=0).fit(Xd)
    b = GaussianMixture(3, init_params=init_params, random_state=0).fit(Xd)
    _assert_same(a, b, 0.0)  # repeatable from a seed
    memory = GaussianMixture(3, init_params=init_params, random_state=0, n_init=3).fit(X)
    assert a.lower_bound_ > memory.lower_bound_ - 0.05
    labels = GaussianMixture(3, init_params=init_params, random_state=0).fit_predict(Xd)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), a.predict(X))


def test_n_init_warm_start_and_errors():
    X = _data()
    Xd = da.from_array(X, chunks=200)
    one = GaussianMixture(3, random_state=1, n_init=1).fit(Xd)
    three = GaussianMixture(3, random_state=1, n_init=3).fit(Xd)
    assert three.lower_bound_ >= one.lower_bound_ - 1e-12
    warm = GaussianMixture(3, random_state=1, max_iter=3, tol=0.0, warm_start=True)
    warm.fit(Xd)
    warm.fit(Xd)
    cold = GaussianMixture(3, random_state=1, max_iter=6, tol=0.0).fit(Xd)
    _assert_same_params(warm, cold, 1e-10)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(5).fit(da.from_array(X[:4], chunks=2))
    with pytest.raises(ValueError, match="infinity"):
        Xi = X.copy()
        Xi[3, 1] = np.inf
        GaussianMixture(3).fit(da.from_array(Xi, chunks=100))
    with pytest.raises(ValueError, match="missing in every sample"):
        Xm = X.copy()
        Xm[:, 2] = np.nan
        GaussianMixture(3).fit(da.from_array(Xm, chunks=100))
    with pytest.raises(ValueError, match="observed is not supported"):
        GaussianMixture(3).fit(Xd, observed=np.ones(X.shape, bool))
    with pytest.raises(ValueError, match="2 features"):
        one.predict(da.from_array(X[:, :2], chunks=100))
    # Unknown chunk sizes (boolean indexing): the survey pass counts each block's samples.
    filtered = GaussianMixture(3, random_state=1).fit(Xd[Xd[:, 0] > 0])
    _assert_same(
        GaussianMixture(3, random_state=1).fit(da.from_array(X[X[:, 0] > 0], chunks=200)),
        filtered,
        1e-10,
    )


def _assert_same_params(a, b, rtol):
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-14)


# --------------------------------------------------------------------- faults
def _lazy_data(n_blocks: int, rows: int, n_features: int, seed: int):
    """Data built on the workers from a seeded generator, so lost blocks can be recomputed."""

    def block(block_id=None):
        rng = np.random.RandomState(seed + block_id[0])
        shift = 3.0 * (rng.randint(3, size=(rows, 1)) - 1)
        return rng.randn(rows, n_features) + shift

    return da.map_blocks(
        block, chunks=((rows,) * n_blocks, (n_features,)), dtype=np.float64, meta=np.empty((0, 0))
    )


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_killed_worker_does_not_change_the_fit(client):
    Xd = _lazy_data(n_blocks=16, rows=2000, n_features=12, seed=5)
    params = dict(covariance_type="full", tol=0.0, max_iter=25, random_state=0)
    with client.as_current():
        reference = GaussianMixture(3, **params).fit(Xd)
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        killed = {}

        def kill_during_fit():
            # Once the fit's tasks run, kill one worker process we started (its nanny restarts it).
            if _wait_until(lambda: any(client.processing().values()), 30):
                time.sleep(0.3)
                os.kill(victim, signal.SIGKILL)
                killed["at"] = time.monotonic()

        killer = threading.Thread(target=kill_during_fit, daemon=True)
        killer.start()
        disturbed = GaussianMixture(3, **params).fit(Xd)
        finished = time.monotonic()
        killer.join(10)
    assert "at" in killed and killed["at"] < finished, "the worker was not killed during the fit"
    assert victim not in client.run(os.getpid).values()
    _assert_same(reference, disturbed, 0.0)  # same graph, same reduction tree: the same bits


@pytest.fixture
def ctrl_c_raises():
    """KeyboardInterrupt on SIGINT for the test, even where the runner was started with
    SIGINT ignored (in the background by a non-interactive shell: nohup ... &)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_keeps_last_iteration_and_cancels(client, ctrl_c_raises):
    Xd = _lazy_data(n_blocks=16, rows=2000, n_features=12, seed=7)
    params = dict(
        covariance_type="full", tol=0.0, max_iter=500, random_state=0, init_params="k-means++"
    )
    gm = GaussianMixture(3, **params)
    with client.as_current():

        def interrupt_during_fit():
            # After the first complete EM iteration, whatever the machine's load: the
            # initialisation sets means_, and each M-step installs a new means_ array.
            if not _wait_until(lambda: hasattr(gm, "means_"), 60):
                return
            initial = gm.means_
            if _wait_until(lambda: gm.means_ is not initial, 60):
                time.sleep(0.2)
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered to the main thread

        threading.Thread(target=interrupt_during_fit, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            gm.fit(Xd)
        # Nothing of the fit keeps running on the cluster.
        assert _wait_until(lambda: not any(client.processing().values()), 10)
        # Interrupted after some iterations (the initialisation is one pass): the model
        # holds the last complete iteration, never a half-updated one.
        assert gm.converged_ is False and gm.n_iter_ >= 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            complete = GaussianMixture(3, **{**params, "max_iter": gm.n_iter_}).fit(Xd)
        _assert_same_params(gm, complete, 0.0)
        assert gm.lower_bounds_ == complete.lower_bounds_


# --------------------------------------------------------------------- classifier
def test_classifier_equals_in_memory(scheduler):
    from gmmfast import GMMClassifier

    X = _data(n=900, seed=3)
    y = (X[:, 0] > 0.5).astype(int) + 2 * (X[:, 1] > 2.0)
    X[::11, 2] = np.nan
    # random_from_data draws the same rows in memory and on Dask: the same initial parameters.
    params = dict(n_components=2, init_params="random_from_data", random_state=0, max_iter=20)
    memory = GMMClassifier(**params).fit(X, y)
    Xd = da.from_array(X, chunks=((1, 199, 300, 400), 3))
    fitted = GMMClassifier(**params).fit(Xd, da.from_array(y, chunks=300))
    for a, b in zip(memory.estimators_, fitted.estimators_):
        _assert_same(a, b, 1e-10)
    labels = fitted.predict(Xd)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), memory.predict(X))
    np.testing.assert_allclose(
        fitted.predict_proba(Xd).compute(), memory.predict_proba(X), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(fitted.score_samples(Xd).compute(), memory.score_samples(X))
    assert fitted.score(Xd, y) == pytest.approx(memory.score(X, y))


def test_diverse_starts_on_dask_find_stripes():
    """init_params='diverse' on a Dask array: agglomerative and broad starts come from the
    in-memory sample, k-means from the blocks; the most likely start wins, as in memory."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    X = np.vstack([np.c_[rng.normal(0, 6, 500), rng.normal(c, 0.3, 500)] for c in (-2, 0, 2)])
    y = np.repeat([0, 1, 2], 500)
    dX = da.from_array(X, chunks=(400, 2))
    kmeans_only = GaussianMixture(3, init_params="kmeans", n_init=4, random_state=0).fit(dX)
    diverse = GaussianMixture(3, n_init=4, random_state=0).fit(dX)
    assert adjusted_rand_score(y, kmeans_only.predict(X)) < 0.6
    assert adjusted_rand_score(y, diverse.predict(X)) > 0.99
