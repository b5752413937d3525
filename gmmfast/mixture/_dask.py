"""EM on Dask arrays: one pass over the blocks per iteration, on any Dask scheduler.

:class:`~gmmfast.GaussianMixture` hands a ``dask.array.Array`` to this
module (it recognises one without importing Dask, see
:func:`is_dask_array`). Dask and distributed are imported here, lazily:
``import gmmfast`` imports neither.

How an iteration runs
---------------------
The array is rechunked to one chunk along the features (the samples may be
chunked any way, unevenly, down to one sample per chunk). For each block,
one task on the worker that holds the block runs the same kernels as the
in-memory fit: the E-step (:func:`gmmfast.mixture._gaussian.estimate_log_prob`,
or the exact missing-data E-step when the block has NaN), the
responsibility floor, and the block's centred sufficient statistics
(:class:`gmmfast.mixture._stats.SufficientStats`, accumulated in float64
whatever the block's dtype). The block returns those statistics, the sum of
its samples' log-likelihoods and its sample count; the statistics are merged
in a tree of tasks (fan-in :data:`FAN_IN`, Chan-Golub-LeVeque pairwise
updates in a fixed order: the same chunking gives the same bits whatever
the scheduling), and only the merged K x D x D statistics reach the client,
which runs the M-step and the Cholesky factorisations. The new parameters
go to the workers once per iteration: broadcast to every worker with
``Client.scatter(..., broadcast=True)`` on a distributed cluster, or one
key of the graph that every block task reads on the local schedulers
(weights, means and precision factors; the covariances too only when some
block has missing values, whose E-step needs them).

Each fit starts with one survey pass (samples, NaN, infinity, per-feature
observed means, spread and extremes): the in-memory fit's data checks and
the column means that fill missing values for initialisation.

:class:`~gmmfast.GMMClassifier` brings only the labels to the client; each
class's mixture is fitted by this EM on its rows of the blocks (a lazy
selection), so each class makes its own passes.

Input
-----
Each block is checked on its worker, before any use, against what the
array declares (a NumPy array of its chunk's rows, the array's width and
dtype): a block that is not raises a ``ValueError`` naming the block, what
was declared and what was found. A masked Dask array (its ``_meta`` a
``np.ma.MaskedArray``) has its masked entries read as missing values (NaN,
after a cast to float), as a NumPy masked array in memory. Empty blocks are
valid and give empty outputs; unknown chunk sizes (``nan``, after boolean
indexing) work: a fit learns them from its first pass (the classifier
counts them in one more pass). ``score``, ``bic`` and ``aic`` count the
samples in their one pass and refuse an array with none.

Scheduler: the active ``dask.distributed`` client when there is one
(``Client(LocalCluster(...))``, ``Client("tcp://scheduler:8786")``), else
Dask's default scheduler (threads). A KeyboardInterrupt while the client
waits cancels the pass's futures before it propagates; clean-up never hides
the error that stopped the pass, and a client closed under a fit gives a
``RuntimeError`` that says so (chained to the original).

The responsibility floor (``resp_floor``) is applied per block, with the
block's own N_k / N: each block keeps all but a fraction ``resp_floor`` of
each component's mass, so the whole does too; the parameters differ from
the in-memory fit's (which floors with the totals) by about ``resp_floor``
relatively, far below the 1e-10 to which the two agree.

Initialisation without the data on the client
---------------------------------------------
``init_params='kmeans'``: k-means (k-means++ seeding with local trials,
then Lloyd to convergence) on a uniform random sample of
``min(N, max(SAMPLE_PER_COMPONENT * K, MIN_SAMPLE))`` rows gathered to the
client, then at most :data:`LLOYD_PASSES` Lloyd passes over the full data
on the cluster (each pass also computes the sufficient statistics of the
hard assignment, so the last pass gives the initial parameters without a
further pass). We chose seeding on a sample over k-means||: k-means||
needs several passes over the data (O(log N) rounds, each a pass) before
its own reclustering, while a uniform sample of thousands of rows already
holds about SAMPLE_PER_COMPONENT rows per component, so only components
below ~1/SAMPLE_PER_COMPONENT of the data can be missed; the full-data
Lloyd passes then correct the centres. Out of core, each pass costs as
much as an EM iteration, so passes are what to save.

``'k-means++'`` seeds on the same sample; ``'random_from_data'`` draws K
rows uniformly from all N; ``'random'`` draws each block's random
responsibilities on its worker from a seed per block (drawn from
``random_state``), so the result depends on the chunking. Missing values
are filled with their feature's observed mean for initialisation, as in
memory. ``'diverse'`` (the default) rotates its kinds of start over
``n_init`` as in memory: its k-means start is the one above; its
agglomerative and broad starts (and ``'agglomerative'``) are computed on
the same uniform sample (they shape the start; EM then runs on all N).
"""

from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..utils._estimator import check_is_fitted
from ..utils._threads import effective_n_threads, single_threaded_blas
from ..utils._validation import check_compute_dtype, check_random_state
from . import _em, _gaussian, _missing_em, _starts
from ._kmeans import kmeans, kmeans_plusplus, nearest_centers, prepared, to_frame
from ._labels import check_labels
from ._missing import _UNIT_ROWS, mask_units, split_observed
from ._stats import SufficientStats, combine_all

#: Rows per component in the initialisation sample (and at least MIN_SAMPLE rows).
SAMPLE_PER_COMPONENT = 100
MIN_SAMPLE = 10_000
#: Most full-data Lloyd passes after k-means on the sample.
LLOYD_PASSES = 10
#: Starts computed on the blocks; the other kinds of start use the in-memory sample.
BLOCKWISE_STARTS = ("kmeans", "k-means++", "random", "random_from_data")
#: Results merged by one task of the reduction tree.
FAN_IN = 8
#: Up to this many samples, random rows are drawn as in memory (a permutation of all of them).
EXACT_CHOICE = 1_000_000


def is_dask_array(X: Any) -> bool:
    """True for a ``dask.array.Array`` (checked without importing Dask)."""
    return (
        type(X).__module__.split(".")[0] == "dask"
        and hasattr(X, "dask")
        and hasattr(X, "chunks")
        and hasattr(X, "ndim")
    )


# ------------------------------------------------------------------ scheduler
def _client() -> Any:
    """The default ``distributed`` client, or None (distributed not imported or no client)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


class _Runner:
    """Computes graphs on the active client (cancelling on interrupt) or Dask's default scheduler.

    Clean-up never hides what went wrong: a failure to cancel is suppressed
    (the original error propagates), and an error while the client is closed
    becomes one that says so, chained to the original.
    """

    def __init__(self) -> None:
        self.client = _client()

    def share(self, value: Any) -> Any:
        """``value`` as one object every task of the next graph reads: broadcast to
        the workers on a cluster, one graph key otherwise."""
        import dask

        if self.client is None:
            return dask.delayed(value, traverse=False)
        try:
            return self.client.scatter(value, broadcast=True, hash=False)
        except Exception as exc:
            self._raise_if_closed(exc)
            raise

    def compute(self, obj: Any) -> Any:
        """The value of a delayed object; on a cluster, a KeyboardInterrupt (or any
        failure) while waiting cancels the pass's tasks before propagating.

        Shared parameters are released when the last reference to their future
        goes (with the pass's graph), never cancelled: they may still be wanted.
        """
        import dask

        if self.client is None:
            return dask.compute(obj)[0]
        future = None
        try:
            future = self.client.compute(obj)
            return future.result()
        except BaseException as exc:
            if future is not None:
                # The cancel fails on a closed client; what stopped the pass is what matters.
                with contextlib.suppress(Exception):
                    self.client.cancel(future, force=True)
            if isinstance(exc, Exception):
                self._raise_if_closed(exc)
            raise

    def _raise_if_closed(self, exc: Exception) -> None:
        if getattr(self.client, "status", None) in ("closing", "closed"):
            raise RuntimeError(
                "The Dask client was closed while gmmfast was computing on it (for example by "
                "client.close() from another thread); the computation did not complete and a "
                "fit leaves the estimator as it was."
            ) from exc


def _task_threads(n_threads: int | None) -> int:
    """OpenMP threads of one block task: ``n_threads`` if given; else, on a
    distributed worker, the threads its environment allows (its nanny sets
    OMP_NUM_THREADS to 1 per worker thread); on the local threaded
    scheduler, which already runs one task per core, 1."""
    if n_threads is not None:
        return effective_n_threads(n_threads)
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:
            return 1
        per_thread = effective_n_threads(None) // max(1, worker.state.nthreads)
        return max(1, per_thread)
    return 1


# ------------------------------------------------------------------ blocks
@dataclass(frozen=True)
class _Params:
    """Parameters sent to the workers once per iteration."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray | None  # None when no block has missing values
    prec_chol: np.ndarray


@dataclass(frozen=True)
class _Config:
    dtype: Any
    covariance_type: str
    reg_covar: float
    resp_floor: float
    n_threads: int | None


def _block_data(block: Any, dtype: Any) -> np.ndarray | _missing_em.MissingData:
    """A block as the kernels take it: an array, or MissingData when it has NaN
    (a feature may be missing in every sample of a block)."""
    arr = np.asarray(block)
    # min() propagates NaN: a SIMD pass, without isnan's temporary (a tenth of a block's EM time).
    if arr.dtype.kind == "f" and arr.size and np.isnan(arr.min()):
        Xf, obs = split_observed(arr, None, dtype=dtype, n_features=None)
        order, unit_ptr = mask_units(obs, _UNIT_ROWS)
        return _missing_em.MissingData(Xf, obs, order, unit_ptr, _UNIT_ROWS)
    return np.ascontiguousarray(arr, dtype=dtype)


def _filled(block: Any, dtype: Any, column_means: np.ndarray) -> np.ndarray:
    """A block with each NaN replaced by its feature's observed mean (initialisation)."""
    arr = np.asarray(block)
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        arr = np.where(np.isnan(arr), column_means.astype(dtype), arr)
    return np.ascontiguousarray(arr, dtype=dtype)


@dataclass
class _Survey:
    """Per-column summary of the data, from the first pass of a fit."""

    n_samples: int
    has_nan: bool
    has_inf: bool
    observed: np.ndarray  # observed values per feature
    means: np.ndarray  # observed mean per feature
    m2: np.ndarray  # sum of squared deviations per feature (observed values)
    low: np.ndarray  # min/max of the compute-dtype values, 0 at missing entries
    high: np.ndarray
    block_rows: tuple = ()  # samples of each block, in order (sizes of unknown chunks)


def _survey_block(block: Any, dtype: Any) -> _Survey:
    arr = np.asarray(block)
    n, d = arr.shape
    if n == 0:
        empty = np.zeros(d)
        return _Survey(0, False, False, empty, empty, empty, empty + np.inf, empty - np.inf, (0,))
    cast = np.asarray(arr, dtype=dtype)
    nan = np.isnan(cast) if arr.dtype.kind == "f" else None
    if nan is not None and nan.any():
        cast = np.where(nan, 0, cast).astype(dtype, copy=False)  # 0 at missing, as in memory
        observed = (n - nan.sum(axis=0)).astype(np.float64)
    else:
        nan = None
        observed = np.full(d, float(n))
    low = cast.min(axis=0).astype(np.float64)  # infinity shows in the extremes
    high = cast.max(axis=0).astype(np.float64)
    has_inf = bool(np.isinf(low).any() or np.isinf(high).any())
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        means = np.where(observed > 0, cast.sum(axis=0, dtype=np.float64) / observed, 0.0)
        dev = cast - means.astype(dtype)  # for the spread only: the compute dtype will do
        if nan is not None:
            dev[nan] = 0
        m2 = np.einsum("ij,ij->j", dev, dev, dtype=np.float64)
    return _Survey(n, nan is not None, has_inf, observed, means, m2, low, high, (n,))


def _merge_surveys(*parts: _Survey) -> _Survey:
    out = parts[0]
    for b in parts[1:]:
        a = out
        n = a.observed + b.observed
        delta = b.means - a.means
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(n > 0, a.means + delta * b.observed / n, 0.0)
            m2 = a.m2 + b.m2 + np.where(n > 0, delta**2 * a.observed * b.observed / n, 0.0)
        out = _Survey(
            a.n_samples + b.n_samples,
            a.has_nan or b.has_nan,
            a.has_inf or b.has_inf,
            n,
            means,
            m2,
            np.minimum(a.low, b.low),
            np.maximum(a.high, b.high),
            a.block_rows + b.block_rows,
        )
    return out


_Result = tuple  # (SufficientStats | None, float, int): statistics, sum of log-likelihoods, samples


def _em_block(block: Any, params: _Params, config: _Config) -> _Result:
    """E-step, floor and sufficient statistics of one block, on its worker."""
    data = _block_data(block, config.dtype)
    n = data.shape[0]
    if n == 0:
        return None, 0.0, 0
    kind = config.covariance_type
    n_threads = _task_threads(config.n_threads)
    with single_threaded_blas():
        stats, log_norm = _missing_em.em_statistics(
            data,
            params.weights,
            params.means,
            params.covariances,
            params.prec_chol,
            kind,
            config.reg_covar,
            config.resp_floor,
            n_threads=n_threads,
        )
    return stats, float(np.sum(log_norm)), n


def _lloyd_block(
    block: Any, centers: np.ndarray, config: _Config, column_means: np.ndarray
) -> _Result:
    """A Lloyd pass on one block: the sufficient statistics of the hard assignment
    to ``centers`` (their means are the next centres), and the block's inertia."""
    X = _filled(block, config.dtype, column_means)
    if len(X) == 0:
        return None, 0.0, 0
    n_threads = _task_threads(config.n_threads)
    # Distances in the block's exact frame (shifted, times a power of two) where the
    # squares would over/underflow or an offset would cancel them: the same labels.
    Xp, shift, exponent = prepared(X)
    labels, distances, _, _ = nearest_centers(
        Xp, to_frame(centers, shift, exponent), n_threads=n_threads
    )
    resp = np.zeros((len(X), len(centers)))
    resp[np.arange(len(X)), labels] = 1.0
    with single_threaded_blas():
        stats = _gaussian.sufficient_statistics(
            X, resp, config.covariance_type, n_threads=n_threads
        )
    return stats, float(np.ldexp(distances.sum(), -2 * exponent)), len(X)


def _random_block(
    block: Any, seed: int, n_components: int, config: _Config, column_means: np.ndarray
) -> _Result:
    """Statistics of uniform random responsibilities drawn on the block's worker."""
    X = _filled(block, config.dtype, column_means)
    if len(X) == 0:
        return None, 0.0, 0
    resp = np.random.RandomState(seed).uniform(size=(len(X), n_components))
    resp /= resp.sum(axis=1, keepdims=True)
    with single_threaded_blas():
        stats = _gaussian.sufficient_statistics(
            X, resp, config.covariance_type, n_threads=_task_threads(config.n_threads)
        )
    return stats, 0.0, len(X)


def _merge_results(*parts: _Result) -> _Result:
    """Merge block results in their fixed order (empty blocks skipped)."""
    stats = [p[0] for p in parts if p[0] is not None]
    merged = combine_all(stats) if stats else None
    return merged, float(sum(p[1] for p in parts)), int(sum(p[2] for p in parts))


def _tree(leaves: list, merge: Any) -> Any:
    """A reduction tree of delayed ``merge`` calls, FAN_IN leaves per task, in a fixed order."""
    import dask

    merge = dask.delayed(merge)
    level = list(leaves)
    while len(level) > 1:
        level = [merge(*level[i : i + FAN_IN]) for i in range(0, len(level), FAN_IN)]
    return level[0]


def _pass(X: Any, func: Any, *args: Any) -> Any:
    """One delayed task per block, ``func(block, *args)``, merged in a tree."""
    import dask

    task = dask.delayed(func)
    blocks = X.to_delayed().ravel()
    leaves = [task(b, *args) for b in blocks]
    return _tree(leaves, _merge_results)


# ------------------------------------------------------------------ input
def as_samples_array(X: Any, n_features: int | None = None, estimator: str | None = None) -> Any:
    """Check a Dask array of samples from its metadata; return it with every block
    checked on its worker (:func:`_checked_block`) and one chunk along the features.

    The samples may have unknown chunk sizes (``nan``, as after boolean
    indexing): inference works on them as they are; a fit learns the sizes
    from its first pass. A masked Dask array (``_meta`` a ``np.ma.MaskedArray``)
    comes out as floats with NaN at its masked entries: missing values.
    """
    where = f" ({estimator})" if estimator else ""
    if X.ndim != 2:
        hint = " Reshape it: a single feature with X.reshape(-1, 1)." if X.ndim == 1 else ""
        raise ValueError(
            f"Expected a 2D Dask array of shape (n_samples, n_features); got {X.ndim} "
            f"dimensions (shape {X.shape}){where}.{hint}"
        )
    if np.isnan(X.shape[1]):
        raise ValueError(
            "The Dask array has an unknown number of features (shape "
            f"{X.shape}); call X.compute_chunk_sizes() first."
        )
    if X.dtype.kind == "c":
        raise ValueError(
            f"Complex data not supported: X must hold real numbers; got dtype {X.dtype}{where}."
        )
    if X.dtype.kind not in "biuf":
        raise ValueError(f"X must be numeric; got dtype {X.dtype}{where}.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but {estimator or 'the model'} was fitted "
            f"with {n_features} features."
        )
    if X.shape[1] == 0:
        raise ValueError("X has 0 features.")
    masked = isinstance(getattr(X, "_meta", None), np.ma.MaskedArray)
    out_dtype = X.dtype if X.dtype.kind == "f" or not masked else np.dtype(np.float64)
    X = X.map_blocks(
        _checked_block, X.dtype, dtype=out_dtype, meta=np.empty((0, 0), dtype=out_dtype)
    )
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return X


def _checked_block(block: Any, declared: np.dtype, block_info: Any = None) -> np.ndarray:
    """A block as its array's metadata declare it (else a ValueError naming the block),
    with masked entries as NaN. Runs on the block's worker, before any use."""
    index, shape = "?", None
    if block_info is not None:
        index = tuple(block_info[0]["chunk-location"])
        shape = tuple(block_info[None]["chunk-shape"])
    what = f"Dask block {index}"
    if not isinstance(block, np.ndarray):
        raise ValueError(
            f"{what} is a {type(block).__name__}, not a NumPy array: only NumPy blocks are supported."
        )
    if shape is not None and (
        block.ndim != 2
        or block.shape[1] != shape[1]
        or (not np.isnan(shape[0]) and block.shape[0] != shape[0])
    ):
        raise ValueError(
            f"{what} has shape {block.shape}, but the array's chunks declare {shape}: the block "
            "is not what the array's metadata say (check how the blocks are built, e.g. the "
            "chunks given to map_blocks)."
        )
    if block.dtype != declared:
        raise ValueError(
            f"{what} has dtype {block.dtype}, but the array declares dtype {declared}: the block "
            "is not what the array's metadata say (check how the blocks are built, e.g. the "
            "dtype given to map_blocks)."
        )
    if isinstance(block, np.ma.MaskedArray):
        return _masked_as_missing(block)
    return block


def _masked_as_missing(block: np.ma.MaskedArray) -> np.ndarray:
    """Masked entries as NaN (missing values), after a cast to float; a copy."""
    data = np.ma.getdata(block)
    out = np.array(data, dtype=data.dtype if data.dtype.kind == "f" else np.float64)
    out[np.ma.getmaskarray(block)] = np.nan
    return out


def _with_rows(X: Any, block_rows: tuple) -> Any:
    """X with its (unknown) row chunks set to the sizes its blocks were found to have."""
    import dask.array as da

    return da.Array(X.dask, X.name, chunks=(tuple(block_rows), X.chunks[1]), meta=X._meta)


def _known_rows(X: Any, runner: _Runner) -> Any:
    """X with known row chunks: counted in one pass over the blocks when unknown."""
    if not any(np.isnan(c) for c in X.chunks[0]):
        return X
    import dask

    counts = dask.delayed(tuple)([dask.delayed(len)(b) for b in _blocks(X)])
    return _with_rows(X, runner.compute(counts))


def in_memory(X: Any) -> Any:
    """``X``, or a Dask array computed to a NumPy array (blocks checked, masked entries
    NaN): for the methods that work on the data in memory (``partial_fit``, ``impute``)."""
    if not is_dask_array(X):
        return X
    return np.asarray(_Runner().compute(as_samples_array(X)))


def _uniform_indices(random_state: np.random.RandomState, n: int, size: int) -> np.ndarray:
    """``size`` distinct indices below ``n``, a uniform random subset in random order,
    in O(size) memory (``choice(n, replace=False)`` permutes all ``n``: 8 GB for 10^9
    samples). Up to :data:`EXACT_CHOICE` samples, the draws of the in-memory fit."""
    if n <= max(EXACT_CHOICE, 2 * size):
        return random_state.choice(n, size=size, replace=False)
    # Enough draws with replacement that they almost always hold `size` distinct values
    # (expected n (1 - exp(-draws / n))); their distinct values are an exchangeable set,
    # so a random `size` of them is a uniform subset.
    draws = int(-n * np.log1p(-size / n) * 1.02) + 64
    while True:
        values = np.sort(random_state.randint(0, n, size=draws, dtype=np.int64))
        distinct = values[np.r_[True, values[1:] != values[:-1]]]  # np.unique hashes: slower
        if len(distinct) >= size:
            return distinct[random_state.permutation(len(distinct))[:size]]


def _check_survey(survey: _Survey, dtype: Any) -> None:
    """The in-memory fit's data checks, from the survey."""
    if survey.has_inf:
        raise ValueError("X contains infinity.")
    if survey.n_samples and (survey.observed == 0).any():
        j = int(np.flatnonzero(survey.observed == 0)[0])
        raise ValueError(
            f"feature {j} is missing in every sample, so it cannot be modelled; "
            "drop it or provide at least one observed value."
        )
    if not survey.n_samples:
        return
    # As gmmfast.mixture._gaussian.check_data_scale, from the per-feature extremes.
    span = float(np.max(survey.high - survey.low))
    n_features = len(survey.low)
    if np.dtype(dtype) == np.float32:
        limit = np.sqrt(np.finfo(np.float32).max / 1024.0) / 10.0
    else:
        limit = np.sqrt(np.finfo(np.float64).max / (float(survey.n_samples) * n_features)) / 10.0
    if not span <= limit:
        raise ValueError(
            f"X spans {span:.3g} in one feature: its squared deviations overflow "
            f"{np.dtype(dtype)} arithmetic (at most {limit:.3g}); rescale X (for example divide it by "
            "its standard deviation)."
        )


# ------------------------------------------------------------------ fit
def _check_n_samples(n_samples: float, K: int, shape: tuple) -> None:
    if n_samples == 0:
        raise ValueError(
            f"X has 0 samples (a Dask array of shape {shape}); fit needs at least "
            f"n_components={K} samples."
        )
    if n_samples < K:
        raise ValueError(
            f"Expected n_samples >= n_components; got n_samples={int(n_samples)} and "
            f"n_components={K}."
        )


def fit(estimator: Any, X: Any, observed: Any, *, labels: bool) -> Any:
    """:meth:`GaussianMixture.fit` (``labels`` False: returns None) or
    :meth:`~GaussianMixture.fit_predict` (a lazy Dask array of labels) on a Dask array.

    A fit that fails with an error leaves the estimator as it was before the
    call: ``GaussianMixture._fit`` restores it (``restores_state_on_error``).
    """
    if observed is not None:
        raise ValueError(
            "observed is not supported with a Dask array: mark missing values with NaN "
            "(or mask them: da.ma.masked_array)."
        )
    X = as_samples_array(X)
    runner = _Runner()
    dtype = check_compute_dtype(estimator.dtype)
    n_features = X.shape[1]
    checked = estimator._check_parameters(n_features)
    K = int(estimator.n_components)
    if not np.isnan(X.shape[0]):  # refused before any pass
        _check_n_samples(X.shape[0], K, X.shape)
    survey = runner.compute(_tree([_delayed_survey(b, dtype) for b in _blocks(X)], _merge_surveys))
    if np.isnan(X.shape[0]):  # unknown chunk sizes: the survey counted each block
        X = _with_rows(X, survey.block_rows)
        _check_n_samples(survey.n_samples, K, X.shape)
    _check_survey(survey, dtype)
    afresh = _em.starts_afresh(estimator, K, n_features)
    estimator.n_features_in_ = n_features
    config = _Config(
        dtype,
        estimator.covariance_type,
        float(estimator.reg_covar),
        float(estimator.resp_floor),
        estimator.n_threads,
    )
    n_threads = estimator._n_threads()
    random_state = check_random_state(estimator.random_state)

    def initialize(init: int) -> None:
        _initialize(estimator, X, runner, survey, config, checked, random_state, init)

    def em_pass() -> float:
        # One pass over the blocks: E-step and statistics where the blocks are, merged
        # in a tree; the M-step and factorisations here.
        weights, means, covariances, prec_chol = estimator._get_parameters()
        # Complete blocks need only the factors: not sending the covariances
        # halves what a full-covariance broadcast carries.
        params = _Params(weights, means, covariances if survey.has_nan else None, prec_chol)
        shared = runner.share(params)
        stats, total_ll, count = runner.compute(_pass(X, _em_block, shared, config))
        del shared  # released on the workers with the pass's graph
        nk, means, covariances = stats.parameters(config.reg_covar, overwrite=True)
        prec_chol = _gaussian.precision_cholesky_from_covariances(
            covariances, config.covariance_type, config.reg_covar, n_threads=n_threads
        )
        # Assigned together: an interrupt never leaves a half-updated model.
        estimator._set_parameters((nk / nk.sum(), means, covariances, prec_chol))
        return total_ll / count

    best = _em.run(estimator, afresh=afresh, initialize=initialize, em_pass=em_pass)
    estimator._keep_best(best)
    if not labels:
        return None
    return inference(estimator, X, "predict")


def _blocks(X: Any) -> list:
    return list(X.to_delayed().ravel())


def _delayed_survey(block: Any, dtype: Any) -> Any:
    import dask

    return dask.delayed(_survey_block)(block, dtype)


def _sample_rows(X: Any, indices: np.ndarray, runner: _Runner) -> np.ndarray:
    """Rows ``indices`` of X, in that order, gathered to the client (only those rows travel)."""
    order = np.argsort(indices)
    rows = runner.compute(X[np.sort(indices)])
    out = np.empty_like(rows)
    out[order] = rows
    return out


def _initialize(
    estimator: Any,
    X: Any,
    runner: _Runner,
    survey: _Survey,
    config: _Config,
    checked: dict,
    random_state: np.random.RandomState,
    init_index: int = 0,
) -> None:
    """Initial parameters as :meth:`GaussianMixture._initialize`, without the data on the client.

    k-means, k-means++, random and random_from_data starts work on the
    blocks as described in the module docstring; the other kinds of start
    (agglomeration, broad seeds) are computed on the uniform sample of
    ``max(100 K, 10,000)`` rows that k-means starts from.
    """
    n_samples = survey.n_samples
    n_threads = estimator._n_threads()
    kind = config.covariance_type
    weights, means, prec_chol = checked["weights"], checked["means"], checked["prec_chol"]
    covariances = None
    if weights is None or means is None or prec_chol is None:
        start = _starts.start_kind(estimator.init_params, init_index)
        if start in BLOCKWISE_STARTS:
            stats = _initial_statistics(estimator, X, runner, survey, config, random_state, start)
            nk, fitted_means, covariances = stats.parameters(config.reg_covar, overwrite=True)
        else:
            sample = _initial_sample(estimator, X, runner, survey, config, random_state)
            nk, fitted_means, covariances = _starts.initial_parameters(
                sample,
                start,
                int(estimator.n_components),
                kind,
                config.reg_covar,
                random_state,
                n_threads=n_threads,
            )
            nk = nk * (n_samples / len(sample))
        weights = nk / n_samples if weights is None else weights
        means = fitted_means if means is None else means
    if prec_chol is None:
        prec_chol = _gaussian.precision_cholesky_from_covariances(
            covariances, kind, config.reg_covar, n_threads=n_threads
        )
    else:
        covariances = _gaussian.covariances_from_precision_cholesky(prec_chol, kind)
    estimator._set_parameters((weights.copy(), means.copy(), covariances, prec_chol.copy()))


def _initial_statistics(
    estimator: Any,
    X: Any,
    runner: _Runner,
    survey: _Survey,
    config: _Config,
    random_state: np.random.RandomState,
    init: str,
) -> SufficientStats:
    """Sufficient statistics of the initial responsibilities of start ``init``."""
    n_samples = survey.n_samples
    K = int(estimator.n_components)
    n_threads = estimator._n_threads()
    kind = config.covariance_type
    column_means = survey.means

    def fill(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        return np.where(np.isnan(rows), column_means, rows)

    def seeds_only(centers: np.ndarray) -> SufficientStats:
        # Responsibility 1 on one sample per component: means at the seeds, no scatter.
        zeros = SufficientStats.zeros(kind, K, centers.shape[1])
        return SufficientStats(
            kind, np.ones(K), np.asarray(centers, dtype=np.float64), zeros.scatter
        )

    if init == "random_from_data":
        indices = _uniform_indices(random_state, n_samples, K)
        return seeds_only(fill(_sample_rows(X, indices, runner)))
    if init == "random":
        seeds = random_state.randint(np.iinfo(np.int32).max, size=X.numblocks[0])
        import dask

        task = dask.delayed(_random_block)
        leaves = [task(b, int(s), K, config, column_means) for b, s in zip(_blocks(X), seeds)]
        return runner.compute(_tree(leaves, _merge_results))[0]
    sample = _initial_sample(estimator, X, runner, survey, config, random_state)
    if init == "k-means++":
        centers, _ = kmeans_plusplus(sample, K, random_state, n_threads=n_threads)
        return seeds_only(centers)
    # kmeans: k-means on the sample, then Lloyd passes over all the data.
    _, centers = kmeans(sample, K, random_state, n_threads=n_threads)
    threshold = 1e-4 * float(np.mean(survey.m2 / max(n_samples, 1)))
    stats = None
    for _ in range(LLOYD_PASSES):
        stats, _, _ = runner.compute(_pass(X, _lloyd_block, centers, config, column_means))
        filled = stats.counts > 0
        new_centers = centers.copy()
        new_centers[filled] = stats.means[filled]  # an empty cluster keeps its centre
        shift = float(((new_centers - centers) ** 2).sum())
        centers = new_centers
        if shift <= threshold:
            break
    return stats


def _initial_sample(
    estimator: Any,
    X: Any,
    runner: _Runner,
    survey: _Survey,
    config: _Config,
    random_state: np.random.RandomState,
) -> np.ndarray:
    """A uniform sample of ``max(100 K, 10,000)`` rows on the client, NaN filled with column means."""
    n_samples = survey.n_samples
    size = min(n_samples, max(SAMPLE_PER_COMPONENT * int(estimator.n_components), MIN_SAMPLE))
    indices = np.sort(_uniform_indices(random_state, n_samples, size))
    rows = np.asarray(runner.compute(X[indices]), dtype=np.float64)
    rows = np.where(np.isnan(rows), survey.means, rows)
    return np.ascontiguousarray(rows, dtype=config.dtype)


# ------------------------------------------------------------------ classifier
def classifier_data(X: Any, y: Any, observed: Any) -> tuple[Any, None, np.ndarray]:
    """``(X, None, labels)`` for :meth:`GMMClassifier.fit` on a Dask array.

    The labels (one value per sample, a Dask array or array-like) come to
    the client; the samples stay in their blocks: each class's rows are a
    lazy selection (``X[rows]``), and its mixture is fitted on them by the
    Dask EM of this module, missing values (NaN, masked entries) included.
    Each class's fit makes its own passes over the blocks; unknown chunk
    sizes cost one more pass, to count each block's samples.
    """
    if observed is not None:
        raise ValueError(
            "observed is not supported with a Dask array: mark missing values with NaN "
            "(or mask them: da.ma.masked_array)."
        )
    runner = _Runner()
    X = _known_rows(as_samples_array(X), runner)
    if y is not None and is_dask_array(y):
        y = runner.compute(y)
    return X, None, y


# ------------------------------------------------------------------ inference
def _inference_block(block: Any, model: Any, method: str, empty: np.ndarray) -> np.ndarray:
    if len(block) == 0:  # an empty block is valid input: its output is empty too
        return empty.copy()
    est = copy.copy(model)
    est.n_threads = _task_threads(model.n_threads)
    return getattr(est, method)(np.asarray(block))


def inference(estimator: Any, X: Any, method: str, observed: Any = None) -> Any:
    """``predict``, ``predict_proba``, ``score_samples`` (or the classifier's
    ``predict_log_proba``, ``predict_joint_log_proba``) of a Dask array: a lazy
    Dask array computed block by block (the fitted model is one key of the graph).

    Empty blocks give empty blocks; unknown chunk sizes stay unknown."""
    import dask

    if observed is not None:
        raise ValueError(
            "observed is not supported with a Dask array: mark missing values with NaN "
            "(or mask them: da.ma.masked_array)."
        )
    if hasattr(estimator, "classes_") or hasattr(type(estimator), "predict_joint_log_proba"):
        check_is_fitted(estimator, "estimators_")  # GMMClassifier
        n_columns = len(estimator.classes_)
        labels_dtype = estimator.classes_.dtype
    else:
        estimator._check_fitted()
        n_columns = len(estimator.weights_)
        labels_dtype = np.dtype(np.intp)
    X = as_samples_array(X, estimator.n_features_in_, type(estimator).__name__)
    model = copy.copy(estimator)
    model.__dict__.pop("_missing_cache", None)
    if "_joint" in model.__dict__:  # the classifier's joint mixture, with its own cache
        model._joint = None
    model = dask.delayed(model, traverse=False)
    if method in ("predict_proba", "predict_log_proba", "predict_joint_log_proba"):
        empty = np.empty((0, n_columns))
        return X.map_blocks(
            _inference_block,
            model,
            method,
            empty,
            dtype=np.float64,
            chunks=(X.chunks[0], (n_columns,)),
        )
    dtype = labels_dtype if method == "predict" else np.float64
    empty = np.empty(0, dtype=dtype)
    return X.map_blocks(_inference_block, model, method, empty, dtype=dtype, drop_axis=1)


def _count(block: np.ndarray) -> np.ndarray:
    return np.array([len(block)], dtype=np.float64)


def mean_score(estimator: Any, X: Any, observed: Any = None) -> tuple[float, int]:
    """``(mean log-likelihood, n_samples)`` of a Dask array in one pass, for
    :meth:`~GaussianMixture.score`, ``bic`` and ``aic`` (whatever its chunk sizes)."""
    import dask.array as da

    scores = inference(estimator, X, "score_samples", observed)
    counts = scores.map_blocks(_count, chunks=((1,) * scores.numblocks[0],), dtype=np.float64)
    total, n = _Runner().compute(da.stack([scores.sum(), counts.sum()]))
    if n == 0:
        raise ValueError(
            f"X has 0 samples (a Dask array of shape {X.shape}): the mean log-likelihood "
            "of no samples is undefined."
        )
    return float(total / n), int(n)


def score_and_count(estimator: Any, X: Any) -> tuple[float, float]:
    """``(score(X), n_samples)`` for ``bic`` and ``aic``: a Dask array in one pass
    (its size counted, so unknown chunk sizes work), anything else as given."""
    if is_dask_array(X):
        return mean_score(estimator, X)
    return estimator.score(X), np.shape(X)[0]


def accuracy(estimator: Any, X: Any, y: Any, observed: Any = None) -> float:
    """:meth:`GMMClassifier.score` of a Dask array: the predictions (one label per
    sample) come to the client and are compared with ``y``."""
    runner = _Runner()
    if is_dask_array(y):
        y = runner.compute(y)
    if not np.isnan(X.shape[0]):  # a wrong y is refused before any pass
        check_labels(y, int(X.shape[0]))
    predicted = np.asarray(runner.compute(inference(estimator, X, "predict", observed)))
    labels = check_labels(y, len(predicted))
    if len(predicted) == 0:
        raise ValueError(
            f"X has 0 samples (a Dask array of shape {X.shape}): the accuracy of no "
            "predictions is undefined."
        )
    return float(np.mean(predicted == labels))
