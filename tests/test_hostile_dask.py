"""Hostile and careless Dask input (issue 25): each rule applied to every method
that takes a Dask array, GaussianMixture's and GMMClassifier's.

Rules (see gmmfast/mixture/_dask.py):

1. A masked Dask array's masked entries are missing values: every method
   gives what it gives in memory with NaN at those entries.
2. Each block is checked on its worker against the declared rows, width and
   dtype before use: a lying block is a ValueError naming the block.
3. Empty blocks are valid input and give empty outputs; unknown chunk sizes
   work; zero samples in all is refused where a result needs samples.
4. Clean-up never hides the error; a client closed during a fit says so.
5. A fit that fails with an error leaves the estimator as it was.
6. Other hostile input (dimensions, dtypes, infinity, huge declared shapes)
   gives a clear ValueError.

Most tests run on Dask's synchronous scheduler; the closed-client tests use a
LocalCluster of two worker processes on 127.0.0.1, shared by this module.
"""

from __future__ import annotations

import copy
import threading
import time

import numpy as np
import pytest

from gmmfast import GaussianMixture, GMMClassifier
from gmmfast.mixture import _dask

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
from test_dask import client, cluster  # noqa: E402,F401  (the module-scoped LocalCluster)

pytestmark = [
    pytest.mark.dask,
    pytest.mark.filterwarnings("ignore::gmmfast.ConvergenceWarning"),
]

GM_METHODS = (
    "fit",
    "fit_predict",
    "predict",
    "predict_proba",
    "score_samples",
    "score",
    "bic",
    "aic",
    "impute",
    "partial_fit",
)
CLF_METHODS = (
    "fit",
    "predict",
    "predict_proba",
    "predict_log_proba",
    "predict_joint_log_proba",
    "score_samples",
    "score",
    "impute",
    "partial_fit",
)
CASES = [("gm", m) for m in GM_METHODS] + [("clf", m) for m in CLF_METHODS]
CASE_IDS = [f"{kind}-{method}" for kind, method in CASES]


@pytest.fixture(autouse=True)
def _sync_scheduler(request):
    """The synchronous scheduler, except where a test runs on the cluster."""
    if "client" in request.fixturenames:
        yield
        return
    with dask.config.set(scheduler="sync"):
        yield


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    y = rng.randint(2, size=n)
    X = rng.randn(n, 3) + 4.0 * y[:, None] * np.array([1.0, 1.0, 0.0])
    return X, y


X, Y = _data()
# Explicit initial parameters: the Dask and in-memory fits start from the same point.
_REF = GaussianMixture(2, random_state=0, max_iter=2).fit(X)
GM_PARAMS = dict(
    weights_init=_REF.weights_,
    means_init=_REF.means_,
    precisions_init=_REF.precisions_,
    tol=0.0,
    max_iter=10,
)
# random_from_data draws the same rows in memory and on Dask.
CLF_PARAMS = dict(n_components=2, init_params="random_from_data", random_state=0, max_iter=10)


@pytest.fixture(scope="module")
def fitted():
    return {
        "gm": GaussianMixture(2, random_state=0).fit(X),
        "clf": GMMClassifier(n_components=2, random_state=0).fit(X, Y),
    }


def _compute(value):
    if _dask.is_dask_array(value):
        value = value.compute()
    return value


def _params(est) -> np.ndarray:
    models = est.estimators_ if hasattr(est, "estimators_") else [est]
    return np.concatenate(
        [np.r_[m.weights_, m.means_.ravel(), m.covariances_.ravel()] for m in models]
    )


def _run(kind: str, method: str, Xin, y: np.ndarray, fitted: dict):
    """``method`` of a ``kind`` estimator on Xin, as NumPy: fitted parameters for the fits."""
    if kind == "gm":
        if method in ("fit", "fit_predict"):
            est = GaussianMixture(2, **GM_PARAMS)
            labels = _compute(getattr(est, method)(Xin))
            return _params(est) if method == "fit" else labels
        if method == "partial_fit":
            return _params(GaussianMixture(2, random_state=0).partial_fit(Xin))
        return _compute(getattr(fitted["gm"], method)(Xin))
    if method == "fit":
        return _params(GMMClassifier(**CLF_PARAMS).fit(Xin, y))
    if method == "partial_fit":
        est = GMMClassifier(n_components=2, random_state=0, init_size=2)
        return _params(est.partial_fit(Xin, y, classes=[0, 1]))
    if method == "score":
        return fitted["clf"].score(Xin, y)
    return _compute(getattr(fitted["clf"], method)(Xin))


def _assert_same(a, b) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype.kind == b.dtype.kind
    if a.dtype.kind == "f":
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_array_equal(b, a)


# ------------------------------------------------------------------ 1. masked arrays
MASK = np.random.RandomState(1).uniform(size=X.shape) < 0.1


def _with_nan(A: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = A.astype(np.float64)
    out[mask] = np.nan
    return out


@pytest.mark.parametrize(("kind", "method"), CASES, ids=CASE_IDS)
def test_masked_entries_are_missing_values(fitted, kind, method):
    """A masked Dask array gives what the in-memory method gives with NaN at the
    masked entries (whatever the values under the mask: here 1e6 and infinity)."""
    hidden = np.where(MASK, 1e6, X)
    hidden[np.argmax(MASK[:, 0]), 0] = np.inf  # a masked value is never read
    Xm = da.ma.masked_array(da.from_array(hidden, chunks=100), mask=MASK)
    expected = _run(kind, method, _with_nan(X, MASK), Y, fitted)
    _assert_same(expected, _run(kind, method, Xm, Y, fitted))


@pytest.mark.parametrize("method", ["fit", "predict"])
def test_masked_integer_array(fitted, method):
    """Integers are cast to float before the masked entries become NaN."""
    Xi = np.round(X * 10).astype(np.int64)
    Xm = da.ma.masked_array(da.from_array(Xi, chunks=(100, 2)), mask=MASK)
    _assert_same(
        _run("gm", method, _with_nan(Xi, MASK), Y, fitted), _run("gm", method, Xm, Y, fitted)
    )


# ------------------------------------------------------------------ 2. lying blocks
def _liar(lie):
    """An array declared (300, 3) float64 in chunks of 100 whose block 1 is ``lie(block)``."""

    def block(b, block_id=None):
        return lie(b) if block_id[0] == 1 else b

    return da.from_array(X, chunks=100).map_blocks(block, dtype=X.dtype, meta=np.empty((0, 0)))


LIES = {
    "wider": (lambda b: np.hstack([b, b]), r"shape \(100, 6\).*declare \(100, 3\)"),
    "more-rows": (lambda b: np.vstack([b, b[:5]]), r"shape \(105, 3\).*declare \(100, 3\)"),
    "complex": (lambda b: b + 1j, "dtype complex128, but the array declares dtype float64"),
    "float32": (lambda b: b.astype(np.float32), "dtype float32, but the array declares"),
    "text": (lambda b: b.astype(str), "dtype <U32, but the array declares dtype float64"),
    "list": (lambda b: b.tolist(), "is a list, not a NumPy array"),
}


@pytest.mark.parametrize("lie", sorted(LIES))
@pytest.mark.parametrize(("kind", "method"), CASES, ids=CASE_IDS)
def test_lying_block_is_refused(fitted, kind, method, lie):
    transform, found = LIES[lie]
    with pytest.raises(ValueError, match=r"Dask block \(1, 0\) .*" + found):
        _run(kind, method, _liar(transform), Y, fitted)


def test_lying_block_along_features_is_named():
    """The check runs before the rechunk along the features: the block index is the user's."""
    Xd = da.from_array(X, chunks=(100, (2, 1)))

    def block(b, block_id=None):
        return np.hstack([b, b]) if block_id == (2, 1) else b

    liar = Xd.map_blocks(block, dtype=X.dtype, meta=np.empty((0, 0)))
    with pytest.raises(ValueError, match=r"Dask block \(2, 1\) has shape \(100, 2\)"):
        GaussianMixture(2).fit(liar)


def test_lying_block_on_a_cluster(client):  # noqa: F811
    """The error raised on the worker reaches the client as it is."""
    with client.as_current():
        with pytest.raises(ValueError, match=r"Dask block \(1, 0\) has shape \(100, 6\)"):
            GaussianMixture(2).fit(_liar(LIES["wider"][0]))


def test_huge_declared_shape_without_the_data():
    """10^12 rows declared, 10 in the one block: refused at the first pass, quickly."""
    graph = {("huge", 0, 0): np.zeros((10, 3))}
    Xh = da.Array(graph, "huge", chunks=((10**12,), (3,)), dtype=np.float64)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"Dask block \(0, 0\) has shape \(10, 3\)"):
        GaussianMixture(2).fit(Xh)
    with pytest.raises(ValueError, match=r"Dask block \(0, 0\)"):
        GaussianMixture(2, random_state=0).fit(X).predict(Xh).compute()
    assert time.perf_counter() - start < 10


def test_random_rows_of_a_huge_array_in_little_memory():
    """Random rows among 10^12 without a permutation of all of them (8 TB);
    up to EXACT_CHOICE samples the draws of the in-memory fit."""
    indices = _dask._uniform_indices(np.random.RandomState(0), 10**12, 10_000)
    assert len(np.unique(indices)) == 10_000 and 0 <= indices.min() and indices.max() < 10**12
    assert not np.all(np.diff(indices) > 0)  # in random order (the initial means' order)
    np.testing.assert_array_equal(
        _dask._uniform_indices(np.random.RandomState(3), 5000, 7),
        np.random.RandomState(3).choice(5000, size=7, replace=False),
    )
    # Most of the population drawn: still exact and distinct.
    assert len(np.unique(_dask._uniform_indices(np.random.RandomState(0), 3 * 10**6, 10**6))) == (
        10**6
    )


# ------------------------------------------------------------------ 3. empty blocks, unknown sizes
@pytest.mark.parametrize(("kind", "method"), CASES, ids=CASE_IDS)
def test_empty_blocks_are_valid_input(fitted, kind, method):
    Xe = da.from_array(X, chunks=((100, 0, 0, 200), 3))
    _assert_same(_run(kind, method, X, Y, fitted), _run(kind, method, Xe, Y, fitted))


@pytest.mark.parametrize(("kind", "method"), CASES, ids=CASE_IDS)
def test_unknown_chunk_sizes(fitted, kind, method):
    """Boolean indexing leaves unknown (nan) chunk sizes, and empty blocks."""
    Xd = da.from_array(X, chunks=50)
    keep = (Xd[:, 2] > -0.5) & ((da.arange(300, chunks=50) // 50) != 2)  # block 2 empties
    Xf = Xd[keep]
    assert np.isnan(Xf.shape[0])
    k = keep.compute()
    _assert_same(_run(kind, method, X[k], Y[k], fitted), _run(kind, method, Xf, Y[k], fitted))


EMPTY_OUTPUT = {
    "predict": (0,),
    "fit_predict": None,
    "predict_proba": (0, 2),
    "predict_log_proba": (0, 2),
    "predict_joint_log_proba": (0, 2),
    "score_samples": (0,),
}
ZERO_SAMPLE_ERRORS = {
    ("gm", "fit"): "X has 0 samples",
    ("gm", "fit_predict"): "X has 0 samples",
    ("gm", "score"): "X has 0 samples",
    ("gm", "bic"): "X has 0 samples",
    ("gm", "aic"): "X has 0 samples",
    ("clf", "score"): "X has 0 samples",
    ("clf", "fit"): "at least 2 classes",
    ("gm", "impute"): "0 sample",
    ("clf", "impute"): "0 sample",
    ("gm", "partial_fit"): "0 sample",
    ("clf", "partial_fit"): "0 sample",
}


@pytest.mark.parametrize("unknown", [False, True], ids=["known", "unknown-sizes"])
@pytest.mark.parametrize(("kind", "method"), CASES, ids=CASE_IDS)
def test_zero_samples_in_all(fitted, kind, method, unknown):
    """No sample at all: empty outputs where each sample has one, else a clear error."""
    Xd = da.from_array(X, chunks=100)
    Xz = Xd[Xd[:, 0] > 1e9] if unknown else Xd[:0]
    if (kind, method) in ZERO_SAMPLE_ERRORS:
        with pytest.raises(ValueError, match=ZERO_SAMPLE_ERRORS[kind, method]):
            _run(kind, method, Xz, Y[:0], fitted)
        return
    out = _run(kind, method, Xz, Y[:0], fitted)
    assert out.shape == EMPTY_OUTPUT[method]


# ------------------------------------------------------------------ 4. clean-up and closed clients
class _FailingFuture:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self):
        raise self.exc


class _FakeClient:
    """A client whose pass fails with ``exc`` and whose cancel fails too."""

    def __init__(self, exc: BaseException, status: str = "running") -> None:
        self.exc, self.status, self.cancelled = exc, status, 0

    def compute(self, obj):
        return _FailingFuture(self.exc)

    def cancel(self, future, force=False):
        self.cancelled += 1
        raise distributed.client.ClosedClientError("Can't send cancel-keys message.")


@pytest.mark.parametrize("exc", [ValueError("the real cause"), KeyboardInterrupt()])
def test_cleanup_never_masks_the_error(exc):
    runner = _dask._Runner()
    runner.client = _FakeClient(exc)
    with pytest.raises(type(exc)) as info:
        runner.compute(da.ones(3).sum())
    assert info.value is exc and runner.client.cancelled == 1


@pytest.mark.parametrize("estimator", ["gm", "clf"])
def test_client_closed_during_fit(cluster, estimator):  # noqa: F811
    """client.close() from another thread: a clear error, chained to the original,
    and the estimator as it was (unfitted)."""
    data = da.from_array(np.vstack([X] * 20), chunks=500)
    labels = np.tile(Y, 20)
    if estimator == "gm":
        est = GaussianMixture(3, max_iter=10_000, tol=0.0, init_params="k-means++")
    else:
        est = GMMClassifier(n_components=3, max_iter=10_000, tol=0.0, init_params="k-means++")
    with distributed.Client(cluster, set_as_default=False, timeout=30) as client:  # noqa: F811
        started = threading.Event()

        def close_during_fit():
            # Once the fit's tasks run on the cluster, close the client under it.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(client.processing().values()):
                time.sleep(0.02)
            time.sleep(0.5)
            started.set()
            client.close()

        closer = threading.Thread(target=close_during_fit, daemon=True)
        with client.as_current():
            closer.start()
            with pytest.raises(RuntimeError, match="Dask client was closed") as info:
                est.fit(data, labels) if estimator == "clf" else est.fit(data)
        closer.join(30)
    assert started.is_set()
    assert info.value.__cause__ is not None  # the original error, chained
    assert "cancel-keys" not in str(info.value)
    assert not hasattr(est, "means_") and not hasattr(est, "estimators_")
    assert not hasattr(est, "n_features_in_")


# ------------------------------------------------------------------ 5. failed fits change nothing
def _failing_after(calls: int):
    """An honest array whose blocks fail after ``calls`` block computations (mid-EM)."""
    count = {"n": 0}
    lock = threading.Lock()

    def block(b):
        with lock:
            count["n"] += 1
            if count["n"] > calls:
                raise OSError("the storage went away")
        return b

    return da.from_array(X, chunks=100).map_blocks(block, dtype=X.dtype, meta=np.empty((0, 0)))


def _state(est) -> dict:
    return copy.deepcopy({k: v for k, v in vars(est).items() if not k.startswith("_")})


def _assert_state(before: dict, est) -> None:
    after = _state(est)
    assert sorted(after) == sorted(before)
    for name, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(after[name], value, err_msg=name)
        elif isinstance(value, list) and value and isinstance(value[0], GaussianMixture):
            for a, b in zip(value, after[name]):
                np.testing.assert_array_equal(a.means_, b.means_)
        elif name != "estimators_":
            assert repr(after[name]) == repr(value), name


FAILURES = {
    "lying-block": (lambda: _liar(LIES["wider"][0]), ValueError),
    "mid-em": (lambda: _failing_after(12), OSError),  # survey: 3 blocks, then EM passes
}


@pytest.mark.parametrize("warm_start", [False, True])
@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("estimator", ["gm", "clf"])
def test_failed_fit_leaves_the_estimator_as_it_was(estimator, failure, warm_start):
    make, error = FAILURES[failure]
    if estimator == "gm":
        est = GaussianMixture(2, **{**GM_PARAMS, "warm_start": warm_start})
        fit = est.fit
    else:
        est = GMMClassifier(n_components=2, random_state=0, tol=0.0, max_iter=8)
        fit = lambda data: est.fit(data, Y)  # noqa: E731
    # Unfitted: still unfitted.
    with pytest.raises(error):
        fit(make())
    assert not hasattr(est, "means_") and not hasattr(est, "n_features_in_")
    # Fitted: the previous fit, intact and working.
    fit(da.from_array(X, chunks=100))
    before, predicted = _state(est), est.predict(X)
    with pytest.raises(error):
        fit(make())
    _assert_state(before, est)
    np.testing.assert_array_equal(est.predict(X), predicted)
    np.testing.assert_array_equal(est.predict(da.from_array(X, chunks=100)).compute(), predicted)


# ------------------------------------------------------------------ 6. other hostile input
@pytest.mark.parametrize(("kind", "method"), CASES, ids=CASE_IDS)
def test_infinity_in_a_block(fitted, kind, method):
    Xi = X.copy()
    Xi[150, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        _run(kind, method, da.from_array(Xi, chunks=100), Y, fitted)


HOSTILE = {
    "1-d": (lambda Xd: Xd[:, 0], r"got 1 dimensions .*X.reshape\(-1, 1\)"),
    "3-d": (lambda Xd: Xd[:, :, None], "got 3 dimensions"),
    "object": (lambda Xd: Xd.astype(object), "must be numeric; got dtype object"),
    "text": (lambda Xd: Xd.astype(str), "must be numeric"),
    "complex": (lambda Xd: Xd.astype(complex), "Complex data not supported"),
    "unknown-width": (
        lambda Xd: da.Array(Xd.dask, Xd.name, chunks=(Xd.chunks[0], (np.nan,)), dtype=float),
        "unknown number of features",
    ),
    "no-features": (lambda Xd: Xd[:, :0], "0 features"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize(("kind", "method"), CASES, ids=CASE_IDS)
def test_hostile_arrays_are_refused(fitted, kind, method, case):
    transform, message = HOSTILE[case]
    with pytest.raises(ValueError, match=message):
        _run(kind, method, transform(da.from_array(X, chunks=100)), Y, fitted)


def test_observed_with_a_dask_array_names_the_alternatives(fitted):
    with pytest.raises(ValueError, match="observed is not supported.*masked_array"):
        fitted["gm"].predict(da.from_array(X, chunks=100), observed=~MASK)


def test_a_dask_dataframe_is_fitted_as_its_values():
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    df = dd.from_pandas(pd.DataFrame(X), npartitions=3)
    a = GaussianMixture(2, **GM_PARAMS).fit(df)
    b = GaussianMixture(2, **GM_PARAMS).fit(X)
    _assert_same(_params(b), _params(a))
