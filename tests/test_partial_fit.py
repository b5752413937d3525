"""Stepwise (online) EM: GaussianMixture.partial_fit and GMMClassifier.partial_fit."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, sklearn_initial_parameters

from gmmfast import ConvergenceWarning, GaussianMixture, GMMClassifier
from gmmfast.mixture import _online
from gmmfast.mixture._gaussian import precision_cholesky_from_covariances, sufficient_statistics
from gmmfast.mixture._stats import MASS_FLOOR

PARAMS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def _assert_params_close(a, b, rtol=1e-10):
    for name in PARAMS:
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max(), err_msg=name)


def _assert_params_equal(a, b):
    for name in PARAMS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _assert_valid(gm):
    """Weights on the simplex, finite means, positive-definite covariances."""
    w = gm.weights_
    assert np.all(w >= 0) and abs(w.sum() - 1.0) < 1e-12
    assert np.isfinite(gm.means_).all()
    cov = gm.covariances_
    assert np.isfinite(cov).all()
    if gm.covariance_type in ("full", "tied"):
        mats = cov if gm.covariance_type == "full" else cov[None]
        assert np.allclose(mats, np.swapaxes(mats, 1, 2))
        np.linalg.cholesky(mats)  # raises unless positive definite
    else:
        assert np.all(cov > 0)


def _one_iteration_fit(X, n_components, covariance_type, init, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(
            n_components, covariance_type=covariance_type, max_iter=1, **init, **kwargs
        ).fit(X)


@pytest.fixture
def tmp_model():
    with tempfile.TemporaryDirectory() as folder:
        yield os.path.join(folder, "model.npz")


def _with_nan(X, fraction=0.2, seed=0):
    rng = np.random.default_rng(seed)
    X = X.copy()
    mask = rng.random(X.shape) < fraction
    mask[mask.all(axis=1), 0] = False  # every row keeps a value
    X[mask] = np.nan
    return X


# ------------------------------------------------------------ exactness
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("missing", [False, True])
def test_one_call_on_all_data_is_one_em_iteration(datasets, covariance_type, missing):
    data = datasets["anisotropic"]
    X = _with_nan(data.X) if missing else data.X
    init = sklearn_initial_parameters(data.X, data.n_components, covariance_type)
    batch = _one_iteration_fit(X, data.n_components, covariance_type, init, reg_covar=1e-4)
    # Any step size: the statistics of a new model start empty, so eta_1 does not matter.
    for decay, offset in [(0.6, 0.0), (1.0, 0.0), (0.7, 10.0)]:
        stream = GaussianMixture(
            data.n_components,
            covariance_type=covariance_type,
            reg_covar=1e-4,
            learning_decay=decay,
            learning_offset=offset,
            **init,
        ).partial_fit(X)
        _assert_params_close(stream, batch)
        assert stream.n_iter_ == 1 and stream.n_batches_seen_ == 1
        assert stream.n_samples_seen_ == len(X)
        assert stream.lower_bound_ == pytest.approx(batch.lower_bound_, rel=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_second_step_blends_the_statistics(datasets, covariance_type):
    """eta_t = 1/t: after two batches the parameters are the M-step of the two
    batches' averages weighted 1/2 each (responsibilities of the second batch
    at the first step's parameters), computed here by hand."""
    data = datasets["anisotropic"]
    X, K, reg = data.X, data.n_components, 1e-3
    A, B = X[:120], X[120:]
    init = sklearn_initial_parameters(X, K, covariance_type)
    gm = GaussianMixture(
        K,
        covariance_type=covariance_type,
        reg_covar=reg,
        learning_decay=1.0,
        learning_offset=0.0,
        **init,
    )
    start = GaussianMixture(K, covariance_type=covariance_type, reg_covar=reg, max_iter=0, **init)
    resp_a = start.fit(A).predict_proba(A)  # max_iter=0: the initial parameters
    gm.partial_fit(A)
    resp_b = gm.predict_proba(B)
    gm.partial_fit(B)
    assert gm.n_iter_ == 2

    # Reference: one weighted M-step over A and B, weights 1/(2|A|) and 1/(2|B|).
    Z = np.vstack([A, B])
    resp = np.vstack([resp_a / (2 * len(A)), resp_b / (2 * len(B))])
    nk = resp.sum(axis=0) + MASS_FLOOR
    means = resp.T @ Z / nk[:, None]
    full = np.stack([(resp[:, k, None] * (Z - means[k])).T @ (Z - means[k]) for k in range(K)])
    D = X.shape[1]
    if covariance_type == "full":
        cov = full / nk[:, None, None] + reg * np.eye(D)
    elif covariance_type == "tied":
        cov = full.sum(axis=0) / nk.sum() + reg * np.eye(D)
    elif covariance_type == "diag":
        cov = np.diagonal(full, axis1=1, axis2=2) / nk[:, None] + reg
    else:
        cov = (np.diagonal(full, axis1=1, axis2=2) / nk[:, None] + reg).mean(axis=1)
    np.testing.assert_allclose(gm.weights_, nk / nk.sum(), rtol=1e-10)
    np.testing.assert_allclose(gm.means_, means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gm.covariances_, cov, rtol=1e-10)


# --------------------------------------------------------------- validity
def _adversarial_batches(X, y, rng):
    """A first batch of every cluster, then single samples, one-cluster batches sorted
    by cluster, duplicated points and a two-sample batch."""
    order = np.argsort(y, kind="stable")
    yield X[rng.permutation(len(X))[:30]]
    for i in order[:5]:
        yield X[i : i + 1]
    for k in np.unique(y):
        yield X[y == k]
    yield np.repeat(X[:1], 7, axis=0)  # zero spread
    yield X[order[-2:]]
    yield X[order[:40]]  # sorted by cluster: one cluster only


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("averaging", [None, 3])
def test_parameters_stay_valid_on_adversarial_batches(datasets, covariance_type, averaging):
    data = datasets["anisotropic"]
    gm = GaussianMixture(
        data.n_components, covariance_type=covariance_type, random_state=0, averaging=averaging
    )
    for n, batch in enumerate(_adversarial_batches(data.X, data.y, np.random.default_rng(0))):
        gm.partial_fit(batch)
        _assert_valid(gm)
        assert gm.n_batches_seen_ == gm.n_iter_ == n + 1
    # Still a usable model of the data (the adversarial start may leave it in a worse
    # local optimum than batch EM's, but not a degenerate one).
    assert np.isfinite(gm.score(data.X))
    for _ in range(3):
        for lo in range(0, len(data.X), 50):
            gm.partial_fit(data.X[lo : lo + 50])
            _assert_valid(gm)
    reference = GaussianMixture(data.n_components, covariance_type=covariance_type, random_state=0)
    assert gm.score(data.X) > reference.fit(data.X).score(data.X) - 1.0


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_scaled_features_stay_accurate_in_float32(datasets, covariance_type):
    # Features of scale 1e-3 and 1e3 with offsets: centred statistics keep float32 usable.
    data = datasets["scaled"]
    ref = GaussianMixture(2, covariance_type=covariance_type, random_state=0)
    f32 = GaussianMixture(2, covariance_type=covariance_type, random_state=0, dtype=np.float32)
    for lo in range(0, len(data.X), 40):
        ref.partial_fit(data.X[lo : lo + 40])
        f32.partial_fit(data.X[lo : lo + 40])
        _assert_valid(f32)
    np.testing.assert_allclose(f32.means_, ref.means_, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------- missing values
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_nan_batches(datasets, covariance_type):
    data = datasets["anisotropic"]
    X = _with_nan(data.X, fraction=0.3)
    gm = GaussianMixture(data.n_components, covariance_type=covariance_type, random_state=0)
    masked = GaussianMixture(data.n_components, covariance_type=covariance_type, random_state=0)
    observed = ~np.isnan(X)
    filled = np.where(observed, X, 123.0)  # values where observed is False are ignored
    for lo in range(0, len(X), 60):
        gm.partial_fit(X[lo : lo + 60])
        masked.partial_fit(filled[lo : lo + 60], observed=observed[lo : lo + 60])
        _assert_valid(gm)
    _assert_params_equal(gm, masked)
    # A batch in which the first feature is missing everywhere, and one of one sample.
    batch = X[:20].copy()
    batch[:, 0] = np.nan
    gm.partial_fit(batch)
    gm.partial_fit(X[-1:])
    _assert_valid(gm)
    assert gm.score(data.X) > -10


def test_nan_first_batch_with_an_unobserved_feature(datasets):
    X = datasets["anisotropic"].X.copy()
    X[:50, 2] = np.nan  # the first batch never observes feature 2
    gm = GaussianMixture(3, random_state=0).partial_fit(X[:50])
    _assert_valid(gm)
    gm.partial_fit(X[50:])
    _assert_valid(gm)
    assert abs(gm.means_[:, 2]).max() > 0.5  # learned from the second batch


# ------------------------------------------------------------- model files
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("averaging", [None, 2])
@pytest.mark.parametrize("missing", [False, True])
def test_save_load_mid_stream_resumes_identically(
    datasets, tmp_model, covariance_type, averaging, missing
):
    data = datasets["anisotropic"]
    X = _with_nan(data.X) if missing else data.X
    batches = [X[lo : lo + 40] for lo in range(0, len(X), 40)]

    def model():
        return GaussianMixture(
            3,
            covariance_type=covariance_type,
            random_state=0,
            averaging=averaging,
            learning_offset=1.5,
        )

    straight = model()
    for batch in batches:
        straight.partial_fit(batch)
    half = model()
    for batch in batches[:4]:
        half.partial_fit(batch)
    half.save(tmp_model)
    resumed = GaussianMixture.load(tmp_model)
    assert resumed.n_batches_seen_ == 4 and resumed.n_iter_ == 4
    for batch in batches[4:]:
        resumed.partial_fit(batch)
    _assert_params_equal(resumed, straight)
    assert resumed.n_samples_seen_ == straight.n_samples_seen_ == len(X)
    assert resumed.lower_bound_ == straight.lower_bound_


def test_fitted_model_file_has_no_stream(datasets, tmp_model):
    data = datasets["anisotropic"]
    gm = GaussianMixture(3, random_state=0).fit(data.X)
    gm.save(tmp_model)
    loaded = GaussianMixture.load(tmp_model)
    assert not hasattr(loaded, "n_batches_seen_")
    loaded.partial_fit(data.X[:30])
    assert loaded.n_iter_ == 2 and loaded.n_batches_seen_ == 1


def test_forged_stream_members_are_refused(datasets, tmp_model):
    data = datasets["anisotropic"]
    gm = GaussianMixture(3, random_state=0).partial_fit(data.X[:100])
    gm.save(tmp_model)
    with np.load(tmp_model) as archive:
        members = dict(archive)
    cases = {
        "no counters": lambda m: m.pop("stream_counters"),
        "negative counts": lambda m: m.__setitem__(
            "stream_stats_counts", -np.abs(m["stream_stats_counts"])
        ),
        "step 0": lambda m: m.__setitem__("stream_counters", np.array([0, 0, 0, 0])),
        "NaN scatter": lambda m: m["stream_stats_scatter"].__setitem__((0, 0, 0), np.nan),
        "average without averaging": lambda m: m.update(
            {"stream_average_" + k: m["stream_stats_" + k] for k in ("counts", "means", "scatter")}
        ),
        "float counters": lambda m: m.__setitem__("stream_counters", np.array([1.0, 1, 100, 0])),
    }
    for what, forge in cases.items():
        forged = {k: v.copy() for k, v in members.items()}
        forge(forged)
        np.savez(tmp_model, **forged)
        with pytest.raises(ValueError, match="model.npz"):
            GaussianMixture.load(tmp_model)


# ------------------------------------------------------------------ errors
def test_bad_input_raises_and_leaves_the_model_unchanged(datasets):
    X = datasets["anisotropic"].X
    with pytest.raises(ValueError, match="fewer than n_components"):
        GaussianMixture(3).partial_fit(X[:2])
    gm = GaussianMixture(3, random_state=0).partial_fit(X[:100])
    before = {name: getattr(gm, name) for name in PARAMS + ("n_iter_", "n_batches_seen_")}
    state = gm._stream
    bad = {
        "features": X[:10, :2],
        "infinity": np.where(np.arange(30)[:, None] == 3, np.inf, X[:30]),
        "0 samples": X[:0],
        "1-d": X[0],
        "text": np.array([["a", "b", "c"]]),
        "far away": X[:5] + 1e200,
    }
    messages = {
        "features": "3 features",
        "infinity": "infinity",
        "0 samples": "0 sample",
        "1-d": "2-dimensional",
        "text": "real numbers",
        "far away": "spans|density is 0",
    }
    for what, batch in bad.items():
        with pytest.raises(ValueError, match=messages[what]):
            gm.partial_fit(batch)
        for name, value in before.items():
            assert getattr(gm, name) is value, (what, name)
        assert gm._stream is state
    with pytest.raises(ValueError, match="infinity"):  # infinity where observed is False
        gm.partial_fit(
            np.where(np.eye(3, dtype=bool), np.inf, X[:3]), observed=~np.eye(3, dtype=bool)
        )
    # Parameters changed between calls.
    for params, match in [
        ({"learning_decay": 0.5}, "learning_decay"),
        ({"learning_decay": 1.5}, "learning_decay"),
        ({"learning_decay": "fast"}, "learning_decay"),
        ({"learning_offset": -1.0}, "learning_offset"),
        ({"averaging": 0}, "averaging"),
        ({"averaging": 2.5}, "averaging"),
        ({"n_components": 4}, "n_components"),
        ({"covariance_type": "diag"}, "covariance_type"),
    ]:
        gm.set_params(**params)
        with pytest.raises(ValueError, match=match):
            gm.partial_fit(X[:20])
        gm.set_params(
            learning_decay=0.6,
            learning_offset=0.0,
            averaging=None,
            n_components=3,
            covariance_type="full",
        )
    gm.partial_fit(X[:20])
    assert gm.n_iter_ == 2


def test_inputs_are_not_modified(datasets):
    X = _with_nan(datasets["anisotropic"].X)
    copy = X.copy()
    X.flags.writeable = False
    gm = GaussianMixture(3, random_state=0)
    gm.partial_fit(X[:100])
    gm.partial_fit(X[100:])
    observed = ~np.isnan(copy)
    observed.flags.writeable = False
    gm.partial_fit(np.nan_to_num(copy), observed=observed)
    np.testing.assert_array_equal(X, copy)
    y = datasets["anisotropic"].y.copy()
    y.flags.writeable = False
    clf = GMMClassifier(2, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    np.testing.assert_array_equal(X, copy)


# ------------------------------------------------------------ step sizes
def test_step_sizes():
    assert _online.step_size(1, 0.0, 0.6) == 1.0
    assert _online.step_size(4, 0.0, 1.0) == 0.25
    assert _online.step_size(2, 8.0, 0.5) == pytest.approx(10**-0.5)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_averaging_reports_the_averaged_statistics(datasets, covariance_type):
    """With averaging the E-steps still use the iterate: the running statistics are
    those of the unaveraged stream, and the reported parameters are the M-step of
    their average over the steps from ``averaging`` on."""
    X = datasets["anisotropic"].X
    batches = [X[lo : lo + 30] for lo in range(0, len(X), 30)]
    plain = GaussianMixture(3, covariance_type=covariance_type, random_state=0)
    averaged = GaussianMixture(3, covariance_type=covariance_type, random_state=0, averaging=4)
    history = []
    for batch in batches:
        plain.partial_fit(batch)
        averaged.partial_fit(batch)
        history.append(plain._stream.stats)
        _assert_valid(averaged)
    for name in ("counts", "means", "scatter"):
        np.testing.assert_array_equal(
            getattr(averaged._stream.stats, name), getattr(plain._stream.stats, name)
        )
    mean = history[3].copy()
    for m, stats in enumerate(history[4:], start=2):
        mean = stats.copy().mix_inplace(1.0 / m, mean, 1.0 - 1.0 / m)
    nk, means, cov = mean.parameters(averaged.reg_covar)
    np.testing.assert_allclose(averaged.weights_, nk / nk.sum(), rtol=1e-12)
    np.testing.assert_allclose(averaged.means_, means, rtol=1e-12)
    np.testing.assert_allclose(averaged.covariances_, cov, rtol=1e-12)
    np.testing.assert_allclose(
        averaged.precisions_cholesky_,
        precision_cholesky_from_covariances(cov, covariance_type),
        rtol=1e-10,
    )
    # Before step `averaging` the reported parameters are the iterate's.
    late = GaussianMixture(3, covariance_type=covariance_type, random_state=0, averaging=100)
    for batch in batches:
        late.partial_fit(batch)
    _assert_params_equal(late, plain)


# ------------------------------------------------------- fit and partial_fit
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_partial_fit_after_fit_continues_the_fitted_model(datasets, covariance_type):
    X = datasets["anisotropic"].X
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    fitted = {name: getattr(gm, name).copy() for name in PARAMS}
    # A tiny step (huge learning_offset) keeps the fitted parameters.
    gm.set_params(learning_offset=1e15).partial_fit(X[:5])
    assert gm.n_iter_ == 2 and gm.n_batches_seen_ == 1 and gm.n_samples_seen_ == 5
    for name, value in fitted.items():
        np.testing.assert_allclose(getattr(gm, name), value, rtol=1e-6, atol=1e-9)
    # learning_decay 1: eta_2 = 1/2, half the fitted model's statistics, half the batch's.
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0, learning_decay=1.0)
    gm.fit(X)
    reg = gm.reg_covar
    implied = _online.implied_statistics(
        gm.weights_, gm.means_, gm.covariances_, covariance_type, reg
    )
    nk, means, cov = implied.parameters(reg)  # its M-step gives the fitted parameters back
    np.testing.assert_allclose(nk / nk.sum(), gm.weights_, rtol=1e-12)
    np.testing.assert_allclose(means, gm.means_, rtol=1e-12)
    np.testing.assert_allclose(cov, gm.covariances_, rtol=1e-10)
    batch = sufficient_statistics(X[:60], gm.predict_proba(X[:60]), covariance_type, n_threads=1)
    nk, means, cov = implied.blend(batch.scaled(1 / 60), 0.5).parameters(reg)
    gm.partial_fit(X[:60])
    assert gm.n_iter_ == 2
    np.testing.assert_allclose(gm.weights_, nk / nk.sum(), rtol=1e-10)
    np.testing.assert_allclose(gm.means_, means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gm.covariances_, cov, rtol=1e-10)
    _assert_valid(gm)


def test_fit_after_partial_fit(datasets):
    X = datasets["anisotropic"].X
    stream = GaussianMixture(3, random_state=0, max_iter=1)
    for lo in range(0, len(X), 100):
        stream.partial_fit(X[lo : lo + 100])
    params = {
        "weights_init": stream.weights_.copy(),
        "means_init": stream.means_.copy(),
        "precisions_init": stream.precisions_.copy(),
    }
    # warm_start: EM continues from the stream's parameters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        stream.set_params(warm_start=True).fit(X)
    _assert_params_close(stream, _one_iteration_fit(X, 3, "full", params))
    # The stream ended: partial_fit continues the fitted model as a new stream.
    stream.partial_fit(X[:50])
    assert stream.n_batches_seen_ == 1 and stream.n_iter_ == 2
    # Without warm_start, fit starts afresh (as if partial_fit had never run).
    fresh = GaussianMixture(3, random_state=0).fit(X)
    stream.set_params(warm_start=False, max_iter=100).fit(X)
    _assert_params_equal(stream, fresh)


def test_parameters_set_by_hand_start_a_new_stream(datasets):
    X = datasets["anisotropic"].X
    gm = GaussianMixture(3, random_state=0).partial_fit(X[:100]).partial_fit(X[100:200])
    assert gm.n_iter_ == 2
    gm.means_ = gm.means_ + 0.0  # a new array: the running statistics no longer match
    gm.partial_fit(X[200:])
    assert gm.n_iter_ == 2 and gm.n_batches_seen_ == 1


def test_verbose_output(datasets, capsys):
    X = datasets["anisotropic"].X
    gm = GaussianMixture(3, random_state=0, verbose=2, verbose_interval=2)
    for lo in range(0, 200, 50):
        gm.partial_fit(X[lo : lo + 50])
    out = capsys.readouterr().out
    assert "partial_fit batch 1:" in out and "partial_fit batch 2:" in out
    assert "partial_fit batch 3:" not in out and "eta" in out and "time" in out


# ------------------------------------------------------------- classifier
def _class_batches(X, y, size):
    return [(X[lo : lo + size], y[lo : lo + size]) for lo in range(0, len(X), size)]


def test_classifier_steps_each_class_mixture_on_its_rows(datasets):
    data = datasets["anisotropic"]
    X, y = data.X, np.array(["a", "b", "c"])[data.y]
    clf = GMMClassifier(2, random_state=0, learning_offset=2.0)
    mixtures = {}
    seeds = np.random.RandomState(0).randint(np.iinfo(np.int32).max, size=3)
    for label, seed in zip("abc", seeds):
        mixtures[label] = GaussianMixture(2, random_state=int(seed), learning_offset=2.0)
    for Xb, yb in _class_batches(X, y, 60):
        assert clf.partial_fit(Xb, yb, classes=["c", "a", "b", "a"]) is clf
        for label in np.unique(yb):
            mixtures[label].partial_fit(Xb[yb == label])
    assert clf.classes_.tolist() == ["a", "b", "c"]
    for label, est in zip("abc", clf.estimators_):
        _assert_params_equal(est, mixtures[label])
    counts = np.array([(y == label).sum() for label in "abc"], dtype=float)
    np.testing.assert_array_equal(clf.class_count_, counts)
    np.testing.assert_allclose(np.exp(clf.class_log_prior_), counts / counts.sum(), rtol=1e-15)
    assert clf.n_batches_seen_ == 5 and clf.n_samples_seen_ == len(X)
    assert clf.n_components_ == {"a": 2, "b": 2, "c": 2}
    assert clf.score(X, y) > 0.95


def test_classifier_batch_of_one_class_leaves_the_others_untouched(datasets):
    data = datasets["anisotropic"]
    X, y = data.X, data.y
    clf = GMMClassifier(2, random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    before = [{name: getattr(e, name) for name in PARAMS} for e in clf.estimators_]
    clf.partial_fit(X[y == 1][:7], y[y == 1][:7])
    for c in (0, 2):
        for name, value in before[c].items():
            assert getattr(clf.estimators_[c], name) is value
    assert clf.estimators_[1].means_ is not before[1]["means_"]
    assert clf.class_count_[1] == (y == 1).sum() + 7


def test_classifier_class_first_seen_with_few_samples_is_held_back(datasets, tmp_model):
    data = datasets["anisotropic"]
    X, y = data.X, data.y
    order = np.argsort(y, kind="stable")
    X, y = X[order], y[order]  # sorted by class: adversarial
    clf = GMMClassifier(3, random_state=0, covariance_type="diag")
    clf.partial_fit(X[:1], y[:1], classes=[0, 1, 2])  # one sample of class 0
    with pytest.raises(ValueError, match="no class mixture yet"):
        clf.predict(X[:1])
    clf.partial_fit(X[1:3], y[1:3])
    assert hasattr(clf.estimators_[0], "means_")  # 3 samples: its mixture started
    first1 = np.flatnonzero(y == 1)[0]
    clf.partial_fit(X[first1 : first1 + 2], y[first1 : first1 + 2])  # 2 of class 1: held
    assert not hasattr(clf.estimators_[1], "means_")
    assert clf.class_count_.tolist() == [3, 2, 0]
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(proba[:, 1:], 0.0)  # classes without a mixture: never
    assert (clf.predict(X) == 0).all()
    # Saved with the held-back rows: resumes identically.
    clf.save(tmp_model)
    loaded = GMMClassifier.load(tmp_model)
    rest = np.r_[3:first1, first1 + 2 : len(X)]  # every row not fed yet, still sorted
    batches = _class_batches(X[rest], y[rest], 17)
    for Xb, yb in batches:
        clf.partial_fit(Xb, yb)
        loaded.partial_fit(Xb, yb)
    for a, b in zip(clf.estimators_, loaded.estimators_):
        _assert_params_equal(a, b)
    np.testing.assert_array_equal(clf.predict_proba(X), loaded.predict_proba(X))
    assert clf.score(X, y) > 0.95
    for est in clf.estimators_:
        _assert_valid(est)


def test_classifier_nan_batches_and_save_load(datasets, tmp_model):
    data = datasets["anisotropic"]
    X, y = _with_nan(data.X, 0.3), data.y
    clf = GMMClassifier(2, random_state=0, averaging=2)
    batches = _class_batches(X, y, 40)
    for Xb, yb in batches[:3]:
        clf.partial_fit(Xb, yb, classes=[0, 1, 2])
    clf.save(tmp_model)
    loaded = GMMClassifier.load(tmp_model)
    assert loaded.averaging == 2 and loaded.n_batches_seen_ == 3
    for Xb, yb in batches[3:]:
        clf.partial_fit(Xb, yb)
        loaded.partial_fit(Xb, yb)
    for a, b in zip(clf.estimators_, loaded.estimators_):
        _assert_params_equal(a, b)
        _assert_valid(a)
    assert clf.score(X, y) > 0.9


def test_classifier_partial_fit_after_fit(datasets):
    data = datasets["anisotropic"]
    X, y = data.X, data.y
    clf = GMMClassifier(2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.class_count_, np.bincount(y))
    clf.partial_fit(X[:30], y[:30])  # classes optional: fit named them
    assert clf.n_batches_seen_ == 1
    assert all(e.n_iter_ == 2 for e, c in zip(clf.estimators_, range(3)) if c in y[:30])
    np.testing.assert_array_equal(
        clf.class_count_, np.bincount(y) + np.bincount(y[:30], minlength=3)
    )
    clf.fit(X, y)  # starts afresh
    assert not hasattr(clf.estimators_[0], "n_batches_seen_")


def test_classifier_priors(datasets):
    data = datasets["anisotropic"]
    clf = GMMClassifier(1, priors="uniform").partial_fit(data.X, data.y, classes=[0, 1, 2])
    np.testing.assert_allclose(clf.class_log_prior_, np.log(np.full(3, 1 / 3)))
    clf = GMMClassifier(1, priors=[0.2, 0.3, 0.5]).partial_fit(data.X, data.y, classes=[0, 1, 2])
    np.testing.assert_allclose(np.exp(clf.class_log_prior_), [0.2, 0.3, 0.5])


def test_classifier_errors(datasets):
    data = datasets["anisotropic"]
    X, y = data.X, data.y
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        GMMClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match=r"label\(s\) \[2\] that are not in classes"):
        GMMClassifier().partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="not in classes"):
        GMMClassifier().partial_fit(X, np.array(["x"] * len(X)), classes=[0, 1, 2])
    with pytest.raises(ValueError, match="at least 2 labels"):
        GMMClassifier().partial_fit(X[y == 0], y[y == 0], classes=[0])
    with pytest.raises(ValueError, match="one n_components per class"):
        GMMClassifier([1, 2]).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="requires y"):
        GMMClassifier().partial_fit(X, None, classes=[0, 1, 2])
    clf = GMMClassifier(2, random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    state = (clf.estimators_, clf.class_count_, clf._stream)
    with pytest.raises(ValueError, match="differs from the classes"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="3 features"):
        clf.partial_fit(X[:, :2], y)
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X[:2], [0, 5])
    with pytest.raises(ValueError, match="labels but X has"):
        clf.partial_fit(X[:2], [0])
    with pytest.raises(ValueError, match="spans|density is 0"):
        clf.partial_fit(X[:3] + 1e200, y[:3])
    assert (clf.estimators_, clf.class_count_, clf._stream) == state


def test_stream_parameter_defaults():
    for estimator in (GaussianMixture(), GMMClassifier()):
        params = estimator.get_params()
        assert params["learning_decay"] == 0.6
        assert params["learning_offset"] == 0.0
        assert params["averaging"] is None


def test_classifier_init_size(datasets, tmp_model):
    data = datasets["anisotropic"]
    X, y = data.X, data.y
    clf = GMMClassifier(2, random_state=0, init_size=40)
    clf.partial_fit(X[:60], y[:60], classes=[0, 1, 2])  # about 20 of each class: all held
    assert not any(hasattr(e, "means_") for e in clf.estimators_)
    clf.save(tmp_model)
    loaded = GMMClassifier.load(tmp_model)
    assert loaded.init_size == 40
    for model in (clf, loaded):
        model.partial_fit(X[60:150], y[60:150])
    for c, (a, b) in enumerate(zip(clf.estimators_, loaded.estimators_)):
        assert hasattr(a, "means_") == (np.sum(y[:150] == c) >= 40)
        if hasattr(a, "means_"):
            _assert_params_equal(a, b)
    for bad in (0, 2.5, "all"):
        with pytest.raises(ValueError, match="init_size"):
            GMMClassifier(init_size=bad).partial_fit(X, y, classes=[0, 1, 2])


def test_forged_classifier_stream_members_are_refused(datasets, tmp_model):
    data = datasets["anisotropic"]
    X, y = data.X, data.y
    clf = GMMClassifier(3, random_state=0).partial_fit(X[:60], y[:60], classes=[0, 1, 2, 7])
    clf.save(tmp_model)  # class 7: never seen, held back with no rows
    with np.load(tmp_model) as archive:
        members = dict(archive)
    assert members["class3.stream_pending"].shape == (0, 3)
    cases = {
        "too many rows": lambda m: m.__setitem__("class3.stream_pending", np.zeros((3, 3))),
        "wrong width": lambda m: m.__setitem__("class3.stream_pending", np.zeros((1, 4))),
        "pending and a mixture": lambda m: m.__setitem__("class0.stream_pending", np.zeros((1, 3))),
        "negative counts": lambda m: m.__setitem__("class_count_", -m["class_count_"]),
        "seeds missing": lambda m: m.pop("stream_seeds"),
        "counters missing": lambda m: m.pop("stream_classifier_counters"),
    }
    for what, forge in cases.items():
        forged = {k: v.copy() for k, v in members.items()}
        forge(forged)
        np.savez(tmp_model, **forged)
        with pytest.raises(ValueError, match="model.npz"):
            GMMClassifier.load(tmp_model)
