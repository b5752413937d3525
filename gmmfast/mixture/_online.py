"""Stepwise (online) EM: ``partial_fit`` of :class:`GaussianMixture` and :class:`GMMClassifier`.

The algorithm (Cappé and Moulines 2009, "Online EM for latent data models";
Liang and Klein 2009, "Online EM for unsupervised models") keeps running
sufficient statistics ``s`` (:class:`~gmmfast.mixture._stats.SufficientStats`:
responsibility mass, means and the scatter around them, centred and in
float64, stored as averages per sample) and, for each batch B at step t:

1. E-step on B at the current parameters (exact marginals when values are
   missing);
2. the batch's (expected) statistics ``s_B``, divided by ``|B|``, blended in:
   ``s <- (1 - eta_t) s + eta_t s_B`` with ``eta_t = (t + t0)^(-alpha)``
   (``learning_offset`` t0 >= 0, ``learning_decay`` alpha in (0.5, 1]);
3. M-step from ``s`` with ``reg_covar``: the parameters are valid after
   every step (covariances positive definite, weights on the simplex).

Where the statistics start:

* a new model: empty (mass 0). The first batch initialises the parameters
  (``*_init`` if given, else ``init_params`` on the batch) and its step
  keeps that batch's statistics alone, whatever eta_1 is (blending into
  mass 0 changes the mass, not the parameters). So a first call on all the
  data is exactly one batch EM iteration from the initial parameters; after
  t steps the statistics are the batches' weighted average with weights
  proportional to ``eta_i prod_{j>i} (1 - eta_j)``.
* a fitted model with no running statistics (after ``fit``, or loaded from
  a file written after ``fit``): the statistics whose M-step gives the
  fitted parameters, with mass 1, count as step 1, so the first
  ``partial_fit`` call takes step 2 (``eta_2``): the fitted model is one
  summary among the batches rather than discarded by the first one.

Polyak-Ruppert averaging (``averaging=n``): from step n on, the reported
parameters are the M-step of the running statistics averaged over steps
n, n + 1, ... (Cappé and Moulines' averaged estimator), while the E-steps
keep using the current iterate, M(s_t).

The running state lives in the estimator's ``_stream`` attribute and is
tied to the parameter arrays it produced: ``fit``, ``load``, or parameters
set by hand replace those arrays, and the next ``partial_fit`` then starts
a stream from whatever parameters the model holds. ``save`` writes the
state (``stream_*`` members of the model file), so that ``load`` followed
by ``partial_fit`` gives bit for bit what the uninterrupted run gives.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..utils import _progress
from ..utils._estimator import NotFittedError
from ..utils._model_files import require
from ..utils._validation import check_array, check_compute_dtype, check_random_state, check_scalar
from . import _gaussian, _missing_em
from ._labels import check_classes, check_samples_given
from ._missing import _UNIT_ROWS, has_nan, mask_units, refuse_infinity, split_observed
from ._stats import SufficientStats, scatter_shape

#: Members of a model file that hold a stream's state (each behind the model's prefix).
COUNTERS = "stream_counters"  # (step, batches, samples, steps averaged), int64
STATS_PREFIX = "stream_stats_"
AVERAGE_PREFIX = "stream_average_"
#: Classifier-wide members.
CLASS_COUNT = "class_count_"
CLASSIFIER_COUNTERS = "stream_classifier_counters"  # (batches, samples)
SEEDS = "stream_seeds"
PENDING = "stream_pending"  # member name after the class prefix: rows held back


@dataclass(frozen=True)
class StreamState:
    """Where a mixture's stepwise EM stands (replaced, never modified, at each step).

    ``stats`` are the running statistics s_t after step ``step``;
    ``average`` their Polyak-Ruppert average over ``n_averaged`` steps (None
    without averaging or before it starts); ``iterate`` the parameters
    M(s_t) that the next E-step uses when the model reports the averaged
    ones (else None: the model's own parameters are the iterate);
    ``marker`` the model's ``means_`` array and a copy of its ``weights_``
    when the state was made, to recognise parameters changed by anything else.
    """

    stats: SufficientStats
    step: int
    n_batches: int
    n_samples: int
    average: SufficientStats | None = None
    n_averaged: int = 0
    iterate: tuple[np.ndarray, ...] | None = None
    marker: tuple[Any, np.ndarray] = field(default=(None, np.empty(0)))


# ------------------------------------------------------------------ parameters
def check_parameters(model: Any) -> None:
    """Check ``learning_decay``, ``learning_offset`` and ``averaging`` (``ValueError``)."""
    decay = model.learning_decay
    check_scalar(
        decay, "learning_decay", (int, float, np.floating), min_value=0.5, include_min=False
    )
    if decay > 1:
        raise ValueError(f"learning_decay must be in (0.5, 1]; got {decay!r}.")
    check_scalar(model.learning_offset, "learning_offset", (int, float, np.floating), min_value=0.0)
    if model.averaging is not None:
        check_scalar(model.averaging, "averaging", (int, np.integer), min_value=1)


def step_size(step: int, learning_offset: float, learning_decay: float) -> float:
    """``eta_t = (t + t0)^(-alpha)``, at most 1."""
    return min(1.0, float(step + learning_offset) ** -float(learning_decay))


# ----------------------------------------------------------------- the mixture
def current_state(model: Any) -> StreamState | None:
    """The model's stream state, or None when its parameters are not the ones the
    state produced (a new model, or ``fit``/``load``/hand-set parameters since)."""
    state = model.__dict__.get("_stream")
    if state is None or not hasattr(model, "means_"):
        return None
    means, weights = state.marker
    if model.means_ is not means or not np.array_equal(model.weights_, weights):
        return None
    return state


def implied_statistics(
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str,
    reg_covar: float,
) -> SufficientStats:
    """Statistics of mass 1 whose M-step (with ``reg_covar``) gives these parameters."""
    K, D = means.shape
    counts = np.array(weights, dtype=np.float64)
    if covariance_type == "full":
        scatter = (covariances - reg_covar * np.eye(D)) * counts[:, None, None]
    elif covariance_type == "tied":
        scatter = (covariances - reg_covar * np.eye(D)) * counts.sum()
    elif covariance_type == "diag":
        scatter = (covariances - reg_covar) * counts[:, None]
    else:
        scatter = np.repeat(((covariances - reg_covar) * counts)[:, None], D, axis=1)
    return SufficientStats(
        covariance_type,
        counts,
        np.array(means, dtype=np.float64),
        np.ascontiguousarray(scatter, dtype=np.float64),
    )


def batch_data(
    model: Any, X: Any, observed: Any, n_features: int | None
) -> np.ndarray | _missing_em.MissingData:
    """A validated batch: the compute-dtype array when complete, else
    :class:`~gmmfast.mixture._missing_em.MissingData`.

    Unlike ``fit``, a feature may be missing in every sample of a batch: the
    running statistics carry what earlier batches said about it, and the
    expected statistics fill it from the current parameters.
    """
    dtype = check_compute_dtype(model.dtype)
    name = type(model).__name__
    if observed is None and not has_nan(X):
        data = check_array(X, dtype=dtype, n_features=n_features, estimator=name)
        _gaussian.check_data_scale(data)
        return data
    Xf, obs = split_observed(X, observed, dtype=dtype, n_features=n_features, estimator=name)
    refuse_infinity(X)
    _gaussian.check_data_scale(Xf)
    if obs.all():
        return Xf
    if not obs.any():
        # Nothing to learn from: a step on it would only pull the statistics
        # towards the current parameters (and a first step has none to pull to).
        raise ValueError(
            f"X has no observed value (all {obs.size} entries are NaN, masked or marked "
            "unobserved): a batch must observe at least one value."
        )
    order, unit_ptr = mask_units(obs, _UNIT_ROWS)
    return _missing_em.MissingData(Xf, obs, order, unit_ptr, _UNIT_ROWS)


def _init_samples(data: np.ndarray | _missing_em.MissingData) -> np.ndarray:
    """Samples for ``init_params``: missing values filled with their feature's mean
    over the batch, 0 for a feature the batch never observes."""
    if not isinstance(data, _missing_em.MissingData):
        return data
    obs = data.observed.astype(bool)
    seen = obs.sum(axis=0)
    col_means = data.X.sum(axis=0, dtype=np.float64) / np.maximum(seen, 1)
    return np.ascontiguousarray(np.where(obs, data.X, col_means.astype(data.X.dtype)))


def _parameters(
    stats: SufficientStats, covariance_type: str, reg_covar: float, n_threads: int
) -> tuple[np.ndarray, ...]:
    """``(weights, means, covariances, precisions_cholesky)``: the M-step of ``stats``."""
    nk, means, covariances = stats.parameters(reg_covar)
    prec_chol = _gaussian.precision_cholesky_from_covariances(
        covariances, covariance_type, reg_covar, n_threads=n_threads
    )
    return nk / nk.sum(), means, covariances, prec_chol


def partial_fit(model: Any, X: Any, observed: Any = None) -> Any:
    """One step of stepwise EM on the batch X (see the module docstring).

    Nothing of the model changes unless the whole step succeeds.
    """
    start = time.perf_counter()
    fitted = hasattr(model, "means_")
    data = batch_data(
        model, X, observed, getattr(model, "n_features_in_", None) if fitted else None
    )
    n_samples, n_features = data.shape
    if fitted:  # the *_init guesses serve the first call only: not checked again at every batch
        checked = copy.copy(model)
        checked.weights_init = checked.means_init = checked.precisions_init = None
        checked._check_parameters(n_features)
    else:
        model._check_parameters(n_features)
    K, cov_type, reg = int(model.n_components), model.covariance_type, float(model.reg_covar)
    n_threads = model._n_threads()
    state = current_state(model)
    if fitted:
        try:
            model._check_fitted()
        except ValueError as exc:
            raise ValueError(
                f"{exc} partial_fit continues from the fitted parameters; call fit to start afresh."
            ) from None
        if model.means_.shape != (K, n_features):
            raise ValueError(
                f"partial_fit continues from the fitted {model.means_.shape[0]} components, but "
                f"n_components={model.n_components}; set it back, or call fit to start afresh."
            )
        if state is None:  # continue a fitted model: its parameters are step 1
            params = model._get_parameters()
            stats = implied_statistics(params[0], params[1], params[2], cov_type, reg)
            state = StreamState(stats, step=1, n_batches=0, n_samples=0)
        else:
            params = state.iterate if state.iterate is not None else model._get_parameters()
    else:
        params = _initial_parameters(model, data, K)
        state = StreamState(
            SufficientStats.zeros(cov_type, K, n_features), step=0, n_batches=0, n_samples=0
        )

    weights, means, covariances, prec_chol = params
    batch, log_norm = _missing_em.em_statistics(
        data,
        weights,
        means,
        covariances,
        prec_chol,
        cov_type,
        reg,
        float(model.resp_floor),
        n_threads=n_threads,
    )
    _gaussian.check_explained(log_norm)

    step = state.step + 1
    eta = step_size(step, model.learning_offset, model.learning_decay)
    # s <- (1 - eta) s + eta s_B / |B|, written over the batch's own (fresh) arrays,
    # so that the running statistics are untouched until the step has succeeded.
    stats = batch.mix_inplace(eta / n_samples, state.stats, 1.0 - eta)
    iterate = _parameters(stats, cov_type, reg, n_threads)

    average, n_averaged, public = None, 0, iterate
    if model.averaging is not None and step >= int(model.averaging):
        if state.average is None:
            average, n_averaged = stats.copy(), 1
        else:
            n_averaged = state.n_averaged + 1
            average = stats.copy().mix_inplace(
                1.0 / n_averaged, state.average, 1.0 - 1.0 / n_averaged
            )
        public = _parameters(average, cov_type, reg, n_threads)

    lower_bound = float(np.mean(log_norm))
    model._set_parameters(public)
    model.n_features_in_ = n_features
    model._fitted_covariance_type = cov_type
    model.converged_ = False
    model.n_iter_ = step
    model.lower_bound_ = lower_bound
    model.__dict__.pop("lower_bounds_", None)  # fit's per-iteration list, not this stream's
    model.n_batches_seen_ = state.n_batches + 1
    model.n_samples_seen_ = state.n_samples + n_samples
    model._stream = StreamState(
        stats,
        step,
        model.n_batches_seen_,
        model.n_samples_seen_,
        average,
        n_averaged,
        iterate if average is not None else None,
        (model.means_, model.weights_.copy()),
    )
    if model.n_batches_seen_ % int(model.verbose_interval) == 0 or model.n_batches_seen_ == 1:
        model._print(
            1,
            f"partial_fit batch {model.n_batches_seen_}: {n_samples} samples "
            f"({model.n_samples_seen_} in all), step {step}, eta {eta:.4g}, "
            f"batch log-likelihood {lower_bound:.5f}",
            f"\t time {time.perf_counter() - start:.4f}s",
        )
    return model


def _initial_parameters(
    model: Any, data: np.ndarray | _missing_em.MissingData, n_components: int
) -> tuple[np.ndarray, ...]:
    """Initial parameters from the first batch, as ``fit`` makes them (``*_init``, else
    ``init_params`` on the batch); the model is left as it was."""
    user_all = (
        model.weights_init is not None
        and model.means_init is not None
        and model.precisions_init is not None
    )
    scratch = copy.copy(model)
    scratch.__dict__.pop("_stream", None)
    if user_all:  # the given parameters, whatever the batch's size (even one sample)
        checked = scratch._check_parameters(data.shape[1])
        scratch._initialize(_init_samples(data), check_random_state(None), checked)
        return scratch._get_parameters()
    if len(data.X if isinstance(data, _missing_em.MissingData) else data) < n_components:
        raise ValueError(
            f"The first batch has {data.shape[0]} samples, fewer than n_components="
            f"{n_components}: partial_fit initialises the mixture from it (init_params="
            f"{model.init_params!r}). Pass a larger first batch (much larger than "
            "n_components is best), or all of weights_init, means_init and precisions_init."
        )
    # fit with max_iter=0 initialises and stops; on a copy, so that the model changes only
    # once the whole first step has succeeded.
    scratch.set_params(max_iter=0, n_init=1, warm_start=False, verbose=0)
    with _progress.progress_bars(False):  # no empty EM bar inside the caller's
        scratch.fit(_init_samples(data))
    return scratch._get_parameters()


# ----------------------------------------------------------- model files
def state_arrays(model: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """The stream members of a model file (none when the model has no stream state)."""
    state = current_state(model)
    if state is None:
        return {}
    arrays = {
        prefix + COUNTERS: np.array(
            [state.step, state.n_batches, state.n_samples, state.n_averaged], dtype=np.int64
        )
    }
    arrays.update(state.stats.to_arrays(prefix + STATS_PREFIX))
    if state.average is not None:
        arrays.update(state.average.to_arrays(prefix + AVERAGE_PREFIX))
    return arrays


def expected_members(
    covariance_type: str, n_components: int, n_features: int, prefix: str = ""
) -> dict[str, tuple[int, ...]]:
    """Shapes of the stream members a mixture's file may hold (all optional)."""
    K, D = n_components, n_features
    stats = {"counts": (K,), "means": (K, D), "scatter": scatter_shape(covariance_type, K, D)}
    shapes = {prefix + COUNTERS: (4,)}
    for head in (STATS_PREFIX, AVERAGE_PREFIX):
        shapes.update({prefix + head + name: shape for name, shape in stats.items()})
    return shapes


def restore_state(model: Any, arrays: dict[str, np.ndarray], path: Any) -> None:
    """Rebuild the stream state of a just-restored mixture from its file's members
    (``ValueError`` naming the file when they are incomplete or inconsistent)."""
    model.__dict__.pop("_stream", None)
    present = sorted(
        name
        for name in arrays
        if name == COUNTERS or name.startswith(("stream_stats_", "stream_av"))
    )
    if not present:
        return
    if COUNTERS not in arrays:
        raise ValueError(f"{path}: stream members {present} without {COUNTERS!r}.")
    counters = arrays[COUNTERS]
    if counters.dtype.kind not in "iu" or counters.shape != (4,) or np.any(counters < 0):
        raise ValueError(f"{path}: malformed array {COUNTERS!r}.")
    step, n_batches, n_samples, n_averaged = (int(v) for v in counters)
    # A stream's step is its batch count, plus 1 when it continued a fitted model (whose
    # parameters count as step 1); every batch holds a sample; counts beyond 2**53 are
    # not a stream that ran (nor exact in the float64 statistics).
    if (
        step < 1
        or step - n_batches not in (0, 1)
        or n_samples < n_batches
        or n_samples > _MAX_STREAM_SAMPLES
    ):
        raise ValueError(
            f"{path}: {COUNTERS!r} is inconsistent (step {step}, {n_batches} batches, "
            f"{n_samples} samples): a stream's step is its number of batches (plus 1 when it "
            f"continued a fitted model), at most {_MAX_STREAM_SAMPLES} samples."
        )
    if model.averaging is not None:
        # Steps taken are the last n_batches (step 1 of a continued fit is its parameters,
        # never averaged); of those, the ones from step `averaging` on are averaged.
        expected = min(n_batches, max(0, step - int(model.averaging) + 1))
        if n_averaged != expected:
            raise ValueError(
                f"{path}: {COUNTERS!r} says {n_averaged} steps averaged, but averaging="
                f"{model.averaging} from step {step} ({n_batches} batches) means {expected}."
            )
    cov_type, reg = model.covariance_type, float(model.reg_covar)
    K, D = model.means_.shape
    try:
        stats = SufficientStats.from_arrays(arrays, cov_type, STATS_PREFIX)
        average = (
            SufficientStats.from_arrays(arrays, cov_type, AVERAGE_PREFIX)
            if any(name.startswith(AVERAGE_PREFIX) for name in arrays)
            else None
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    for prefix, what in ((STATS_PREFIX, stats), (AVERAGE_PREFIX, average)):
        if what is not None:
            _check_saved_stats(what, prefix, (K, D), path)
    if (average is None) != (n_averaged == 0) or (average is not None and model.averaging is None):
        raise ValueError(
            f"{path}: the Polyak-Ruppert average ({n_averaged} steps) disagrees with "
            f"averaging={model.averaging!r}."
        )
    iterate = None
    try:
        iterate = _parameters(stats, cov_type, reg, model._n_threads())
        public = iterate if average is None else _parameters(average, cov_type, reg, 1)
    except (ValueError, np.linalg.LinAlgError) as exc:  # FactorizationError is a ValueError
        raise ValueError(f"{path}: the stream statistics give no valid mixture: {exc}") from None
    # The saved parameters are the M-step of the saved statistics: anything else is a
    # file whose statistics were changed (the stream would jump or freeze on its next step).
    for name, saved, derived in zip(("weights_", "means_"), model._get_parameters(), public):
        scale = max(1.0, float(np.max(np.abs(derived))))
        if not np.allclose(saved, derived, rtol=1e-5, atol=1e-6 * scale):
            raise ValueError(
                f"{path}: {name} is not the M-step of the saved stream statistics "
                f"({STATS_PREFIX if average is None else AVERAGE_PREFIX}*): the file's "
                "statistics or parameters were changed."
            )
    if average is None:  # the model's own parameters are the E-step's
        iterate = None
    model.n_batches_seen_, model.n_samples_seen_ = n_batches, n_samples
    model._stream = StreamState(
        stats,
        step,
        n_batches,
        n_samples,
        average,
        n_averaged,
        iterate,
        (model.means_, model.weights_.copy()),
    )


#: Most samples a saved stream may count (float64 counts are exact up to 2**53).
_MAX_STREAM_SAMPLES = 2**53


def _check_saved_stats(
    stats: SufficientStats, prefix: str, means_shape: tuple[int, int], path: Any
) -> None:
    """Saved running statistics are averages per sample: counts sum to a mass in (0, 1]
    (``(1 - eta) s + eta s_B`` keeps it there), and each scatter is symmetric positive
    semi-definite, as a sum of outer products is (``ValueError`` naming the member)."""
    if stats.means.shape != means_shape:
        raise ValueError(
            f"{path}: {prefix}means has shape {stats.means.shape}; the model's means_ "
            f"{means_shape}."
        )
    mass = float(stats.counts.sum())
    if not 0.0 < mass <= 1.0 + 1e-9:
        raise ValueError(
            f"{path}: {prefix}counts sum to {mass:.6g}; running statistics are averages per "
            "sample, with counts summing to a mass in (0, 1]."
        )
    scatter = stats.scatter
    if stats.covariance_type in ("diag", "spherical"):
        if np.any(scatter < 0):
            raise ValueError(f"{path}: {prefix}scatter has negative variances.")
        return
    mats = scatter.reshape(-1, *scatter.shape[-2:])
    top = float(np.max(np.abs(mats))) if mats.size else 0.0
    if not np.allclose(mats, np.swapaxes(mats, -1, -2), rtol=0.0, atol=1e-9 * max(top, 1e-300)):
        raise ValueError(f"{path}: {prefix}scatter is not symmetric.")
    # Positive semi-definite up to rounding: a Cholesky factorisation after a shift of
    # 1e-9 of the largest entry (a scatter of data has no negative eigenvalue).
    shift = 1e-9 * max(top, 1e-300) * np.eye(mats.shape[-1])
    try:
        np.linalg.cholesky(mats + shift)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"{path}: {prefix}scatter is not positive semi-definite (no data gives it)."
        ) from None


# ------------------------------------------------------------ the classifier
@dataclass(frozen=True)
class ClassifierStream:
    """A classifier's stream: rows held back per class (``pending``: class index to
    rows, NaN where missing) until the class has enough to start its mixture, the
    per-class seeds, and the counters. ``marker`` is the ``estimators_`` list it
    belongs to (``fit`` and ``load`` make a new one)."""

    pending: dict[int, np.ndarray]
    seeds: np.ndarray
    n_batches: int
    n_samples: int
    marker: Any


def classifier_state(clf: Any) -> ClassifierStream | None:
    state = clf.__dict__.get("_stream")
    if state is None or getattr(clf, "estimators_", None) is not state.marker:
        return None
    return state


def _class_indices(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of each label in the sorted ``classes`` (``ValueError`` for a label not there)."""
    try:
        index = np.searchsorted(classes, labels)
        clipped = np.minimum(index, len(classes) - 1)
        known = classes[clipped] == labels
    except (TypeError, ValueError):  # labels of another kind (text against numbers)
        known = clipped = None
    known = np.asarray(known)
    if known.shape != labels.shape:
        known = np.zeros(len(labels), dtype=bool)
    if not known.all():
        unknown = np.unique(labels[~known])[:10]
        raise ValueError(
            f"y holds label(s) {unknown.tolist()} that are not in classes "
            f"{classes.tolist()[:20]} given on the first call to partial_fit."
        )
    return clipped


def classifier_partial_fit(
    clf: Any,
    X: Any,
    y: Any,
    classes: Any,
    observed: Any,
    *,
    check_labels: Callable[[Any, int], np.ndarray],
    key: Callable[[Any], Any],
    shared_params: tuple[str, ...],
) -> Any:
    """One stepwise-EM step of every class present in the batch (see GMMClassifier.partial_fit).

    ``check_labels``, ``key`` and ``shared_params`` are the classifier module's
    label check, label-to-key conversion and the parameters each class's mixture
    takes from the classifier (passed in: that module imports this one).
    """
    _check_labels, _key = check_labels, key
    check_samples_given(X)
    clf._check_parameters()
    name = type(clf).__name__
    started = hasattr(clf, "classes_")
    dtype = check_compute_dtype(clf.dtype)
    n_features = clf.n_features_in_ if started else None
    if observed is not None or has_nan(X):
        Xc, obs = split_observed(X, observed, dtype=dtype, n_features=n_features, estimator=name)
        obs = obs.astype(bool)
        if obs.all():
            obs = None
    else:
        Xc, obs = check_array(X, dtype=dtype, n_features=n_features, estimator=name), None
    if obs is not None and not obs.any():
        raise ValueError(
            f"X has no observed value (all {obs.size} entries are NaN, masked or marked "
            "unobserved): a batch must observe at least one value."
        )
    if y is None:
        raise ValueError(f"{name} requires y to be passed, but the target y is None.")
    labels = _check_labels(y, len(Xc))

    if started:
        if classes is not None:
            given = check_classes(classes)
            if given.shape != clf.classes_.shape or not np.all(given == clf.classes_):
                raise ValueError(
                    f"classes={given.tolist()} differs from the classes {clf.classes_.tolist()} "
                    "of the first call to partial_fit (or of fit)."
                )
        class_labels = clf.classes_
    else:
        if classes is None:
            raise ValueError(
                "classes must be passed on the first call to partial_fit: every label the "
                "stream may hold (a batch need not contain them all)."
            )
        class_labels = check_classes(classes)
        if len(class_labels) < 2:
            raise ValueError(f"classes must hold at least 2 labels; got {class_labels.tolist()}.")
    y_index = _class_indices(labels, class_labels)

    specs = clf._component_specs(class_labels)
    if any(len(spec) != 1 for spec in specs):
        raise ValueError(
            "partial_fit needs one n_components per class (an int, or a mapping of labels to "
            f"ints); got {clf.n_components!r}: K is selected among candidates by fit only."
        )
    ks = [spec[0] for spec in specs]
    state = classifier_state(clf)
    if state is not None:
        estimators, pending = list(clf.estimators_), dict(state.pending)
        counts = clf.class_count_.copy()
        seeds, n_batches, n_samples = state.seeds, state.n_batches, state.n_samples
    else:
        seeds = check_random_state(clf.random_state).randint(
            np.iinfo(np.int32).max, size=len(class_labels)
        )
        n_batches = n_samples = 0
        pending = {}
        if started:  # continue what fit (or load) made
            if getattr(clf, "class_count_", None) is None:
                if clf.priors is None:
                    raise ValueError(
                        "This classifier has no class counts (a model file written before they "
                        "were stored), so partial_fit cannot update its learned priors; fit it "
                        "again, or set priors."
                    )
                counts = np.zeros(len(class_labels))
            else:
                counts = np.array(clf.class_count_, dtype=np.float64)
            estimators = list(clf.estimators_)
            for c, est in enumerate(estimators):
                if est.means_.shape[0] != ks[c]:
                    raise ValueError(
                        f"class {class_labels[c]!r} was fitted with {est.means_.shape[0]} "
                        f"components but n_components gives {ks[c]}; set it back, or call fit."
                    )
        else:
            counts = np.zeros(len(class_labels))
            estimators = [clf._mixture(k, int(seed)) for k, seed in zip(ks, seeds)]

    # Each class present steps its own mixture, on a copy: committed only if all succeed.
    started_now = []
    for c in np.unique(y_index).tolist():
        rows = np.flatnonzero(y_index == c)
        est = copy.copy(estimators[c])
        if hasattr(est, "means_"):
            if obs is not None and not obs[rows].any():
                continue  # this class's rows observe nothing: no step (they still count)
            est.set_params(**_shared_params(clf, shared_params))
            est.partial_fit(Xc[rows], observed=None if obs is None else obs[rows])
        else:
            held = Xc[rows] if obs is None else np.where(obs[rows], Xc[rows], np.nan)
            if c in pending:
                held = np.concatenate([pending[c], held])
            if not ready_to_start(held, init_rows(clf, ks[c])):
                pending[c] = np.array(held)
                continue
            est.set_params(**_shared_params(clf, shared_params))
            est.partial_fit(held)
            pending.pop(c, None)
            started_now.append(class_labels[c])
        estimators[c] = est
    counts += np.bincount(y_index, minlength=len(class_labels))

    clf.classes_ = class_labels
    clf.estimators_ = estimators
    clf.n_components_ = {_key(label): k for label, k in zip(class_labels.tolist(), ks)}
    clf.selection_scores_ = {}
    clf.class_count_ = counts
    clf.class_log_prior_ = (
        _log_counts(counts) if clf.priors is None else clf._log_prior(class_labels, None)
    )
    clf.n_features_in_ = Xc.shape[1]
    clf.n_batches_seen_ = n_batches + 1
    clf.n_samples_seen_ = n_samples + len(Xc)
    clf._stream = ClassifierStream(
        pending, seeds, clf.n_batches_seen_, clf.n_samples_seen_, estimators
    )
    clf._joint = None
    if started_now:
        clf._print(f"partial_fit: started the mixtures of class(es) {started_now}")
    if int(clf.verbose) >= 2:
        clf._print(
            f"partial_fit batch {clf.n_batches_seen_}: {len(Xc)} samples, "
            f"{len(pending)} class(es) waiting for their first n_components samples"
        )
    return clf


def check_init_size(clf: Any) -> None:
    """``init_size``: None or an int >= 1 (``ValueError``)."""
    if clf.init_size is not None:
        check_scalar(clf.init_size, "init_size", (int, np.integer), min_value=1)


def ready_to_start(held: np.ndarray, n_rows: int) -> bool:
    """A class's mixture starts from its held rows (NaN where missing) once there are
    ``n_rows`` of them and they observe at least one value (a batch that observes
    nothing is refused: its first step would start the mixture from nothing)."""
    return len(held) >= n_rows and not bool(np.isnan(held).all())


def init_rows(clf: Any, n_components: int) -> int:
    """Rows of a class gathered before its mixture starts: ``init_size``, and at
    least ``n_components`` (the fewest its initialisation takes)."""
    return max(int(n_components), int(clf.init_size or 0))


def _shared_params(clf: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """What each class's mixture takes from the classifier now (parameters may change between calls)."""
    shared = {name: getattr(clf, name) for name in names}
    shared["verbose"] = max(0, int(clf.verbose) - 1)
    return shared


def _log_counts(counts: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(counts / counts.sum())


def modelled(clf: Any) -> list[int]:
    """Indices of the classes whose mixture exists (partial_fit may still be
    waiting for a class's first samples)."""
    return [c for c, est in enumerate(clf.estimators_) if hasattr(est, "means_")]


def joint_log_prior(clf: Any, classes: list[int]) -> np.ndarray:
    """Class log-priors for prediction: ``class_log_prior_``, renormalised over the
    classes that have a mixture when some do not yet (the others get -inf)."""
    log_prior = np.asarray(clf.class_log_prior_, dtype=np.float64)
    if not classes:
        raise NotFittedError(
            f"This {type(clf).__name__} has no class mixture yet: partial_fit starts a class's "
            "mixture once it has seen n_components samples of it."
        )
    if len(classes) == len(log_prior):
        return log_prior
    kept = log_prior[classes]
    top = kept.max()
    if not np.isfinite(top):
        raise ValueError("every class that has a mixture has prior probability 0.")
    out = np.full(len(log_prior), -np.inf)
    out[classes] = kept - (top + np.log(np.exp(kept - top).sum()))
    return out


def classifier_arrays(clf: Any) -> dict[str, np.ndarray]:
    """Classifier-wide stream members: class counts, counters, seeds, rows held back."""
    arrays: dict[str, np.ndarray] = {}
    if getattr(clf, "class_count_", None) is not None:
        arrays[CLASS_COUNT] = np.asarray(clf.class_count_, dtype=np.float64)
    state = classifier_state(clf)
    if state is not None:
        arrays[CLASSIFIER_COUNTERS] = np.array([state.n_batches, state.n_samples], dtype=np.int64)
        arrays[SEEDS] = np.asarray(state.seeds, dtype=np.int64)
        empty = np.empty((0, clf.n_features_in_), dtype=check_compute_dtype(clf.dtype))
        for c, est in enumerate(clf.estimators_):
            if not hasattr(est, "means_"):  # its rows so far (none for a class not seen yet)
                arrays[f"class{c}.{PENDING}"] = state.pending.get(c, empty)
    for c, est in enumerate(clf.estimators_):
        if hasattr(est, "means_"):
            arrays.update(state_arrays(est, f"class{c}."))
    return arrays


def classifier_members(
    headers: dict[str, tuple[np.dtype, tuple[int, ...]]], n_classes: int
) -> dict[str, tuple[int, ...]]:
    """Shapes of the classifier-wide stream members (the per-class mixture's own come
    with its members). Rows held back must have the classes' feature count; their
    number is checked against the class's threshold once read (``restore_classifier``),
    and bounded before reading by the file's total size, as every member is."""
    shapes = {CLASS_COUNT: (n_classes,), CLASSIFIER_COUNTERS: (2,), SEEDS: (n_classes,)}
    widths = {
        header[1][1]
        for name, header in headers.items()
        if name.endswith(".means_") and len(header[1]) == 2
    }
    for c in range(n_classes):
        name = f"class{c}.{PENDING}"
        if name in headers:
            shape = headers[name][1]
            if len(shape) != 2 or f"class{c}.means_" in headers or shape[1] < 1:
                raise ValueError(f"malformed or unexpected array {name!r}.")
            if widths and shape[1] not in widths:  # the mixtures' own disagreements: theirs
                raise ValueError(
                    f"{name!r} holds rows of {shape[1]} features; the classes' means have "
                    f"{sorted(widths)}."
                )
            widths.add(shape[1])
            shapes[name] = tuple(shape)
    return shapes


def pending_classes(headers: dict[str, Any], n_classes: int) -> set[int]:
    """Classes of a classifier file that hold rows instead of a mixture."""
    return {c for c in range(n_classes) if f"class{c}.{PENDING}" in headers}


def restore_classifier(clf: Any, arrays: dict[str, np.ndarray], path: Any) -> None:
    """Class counts and stream state of a just-restored classifier (``ValueError`` naming the file)."""
    n_classes = len(clf.classes_)
    clf.class_count_ = None
    clf.__dict__.pop("_stream", None)
    if clf.priors is not None:  # as fit and partial_fit would take them
        try:
            clf._log_prior(clf.classes_, None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None
    if CLASS_COUNT in arrays:
        counts = require(arrays, CLASS_COUNT, (n_classes,), path)
        if np.any(counts < 0):
            raise ValueError(f"{path}: {CLASS_COUNT} must be non-negative.")
        clf.class_count_ = counts
    pending = {
        c: arrays[f"class{c}.{PENDING}"]
        for c in range(n_classes)
        if f"class{c}.{PENDING}" in arrays
    }
    held = {c: rows for c, rows in pending.items() if len(rows)}
    if CLASSIFIER_COUNTERS not in arrays:
        if pending or SEEDS in arrays:
            raise ValueError(f"{path}: stream members without {CLASSIFIER_COUNTERS!r}.")
        return
    counters, seeds = arrays[CLASSIFIER_COUNTERS], arrays.get(SEEDS)
    if counters.dtype.kind not in "iu" or np.any(counters < 0) or counters[1] < counters[0]:
        raise ValueError(f"{path}: malformed array {CLASSIFIER_COUNTERS!r}.")
    if (
        seeds is None
        or seeds.dtype.kind not in "iu"
        or np.any(seeds < 0)
        or np.any(seeds >= np.iinfo(np.int32).max)
    ):
        raise ValueError(f"{path}: missing or malformed array {SEEDS!r}.")
    if clf.class_count_ is None:
        raise ValueError(f"{path}: stream members without {CLASS_COUNT!r}.")
    D = clf.n_features_in_
    for c, rows in pending.items():
        k = init_rows(clf, clf.estimators_[c].n_components)
        if rows.dtype != check_compute_dtype(clf.dtype) or rows.shape[1] != D:
            raise ValueError(
                f"{path}: {f'class{c}.{PENDING}'!r} must hold rows of {D} "
                f"{np.dtype(check_compute_dtype(clf.dtype)).name} features."
            )
        if np.isinf(rows).any():
            raise ValueError(f"{path}: {f'class{c}.{PENDING}'!r} contains infinity.")
        if ready_to_start(rows, k):  # partial_fit would have started this class's mixture
            raise ValueError(
                f"{path}: {f'class{c}.{PENDING}'!r} holds {len(rows)} rows with observed values, "
                f"enough to start the class's mixture (at {k}); a stream never saves that."
            )
        clf.estimators_[c].set_params(random_state=int(seeds[c]))
    clf._stream = ClassifierStream(
        held, seeds.astype(np.int64), int(counters[0]), int(counters[1]), clf.estimators_
    )
    clf.n_batches_seen_, clf.n_samples_seen_ = int(counters[0]), int(counters[1])
