"""GMMClassifier: one GaussianMixture per class and Bayes' rule.

Predictions are checked against a Bayes rule computed by hand from
independently fitted GaussianMixtures (same seeds); imputation against a
brute-force sum over classes and components (tests/missing_reference.py).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from missing_reference import reference_for
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp

import gmmfast
from gmmfast import GaussianMixture, GMMClassifier

SEED = 7
N_PER_CLASS = (60, 90, 120)


def _make_data(seed=0, D=4):
    """Three classes of unequal size, each a two-cluster blob, overlapping a little."""
    rng = np.random.RandomState(seed)
    X, y = [], []
    for c, n in enumerate(N_PER_CLASS):
        centre = np.zeros(D)
        centre[c % D] = 3.0
        for half in range(2):
            offset = rng.uniform(-1.0, 1.0, D)
            X.append(
                centre + offset + rng.standard_normal((n // 2, D)) @ rng.uniform(-0.4, 0.8, (D, D))
            )
            y.append(np.full(n // 2, c))
    X, y = np.vstack(X), np.concatenate(y)
    perm = rng.permutation(len(X))
    return X[perm], y[perm]


@pytest.fixture(scope="module")
def data():
    X, y = _make_data()
    rng = np.random.RandomState(1)
    T = X[rng.randint(len(X), size=120)] + 0.5 * rng.standard_normal((120, X.shape[1]))
    return X, y, T


@pytest.fixture(scope="module")
def fitted(data):
    """GMMClassifier(2) per covariance type; do not modify."""
    X, y, _ = data
    cache = {}

    def get(covariance_type):
        if covariance_type not in cache:
            cache[covariance_type] = _clf(2, covariance_type=covariance_type).fit(X, y)
        return cache[covariance_type]

    return get


def _clf(n_components=2, **kwargs):
    kwargs.setdefault("random_state", SEED)
    kwargs.setdefault("reg_covar", 1e-4)
    return GMMClassifier(n_components, **kwargs)


def _with_missing(T, seed=0, frac=0.4):
    rng = np.random.RandomState(seed)
    missing = rng.uniform(size=T.shape) < frac
    missing[0] = True  # nothing observed
    missing[1] = False  # complete
    out = T.copy()
    out[missing] = np.nan
    return out, missing


def _class_seeds(n_classes, random_state=SEED):
    return np.random.RandomState(random_state).randint(np.iinfo(np.int32).max, size=n_classes)


def _independent_mixtures(
    X, y, n_components, covariance_type="full", reg_covar=1e-4, random_state=SEED, **kw
):
    """Each class's GaussianMixture fitted by hand, seeded as the classifier seeds it."""
    classes = np.unique(y)
    seeds = _class_seeds(len(classes), random_state)
    ks = (
        n_components
        if isinstance(n_components, dict)
        else {c: n_components for c in classes.tolist()}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        return [
            GaussianMixture(
                ks[c],
                covariance_type=covariance_type,
                reg_covar=reg_covar,
                random_state=int(s),
                **kw,
            ).fit(X[y == c])
            for c, s in zip(classes.tolist(), seeds)
        ]


def _bayes_log_joint(mixtures, log_prior, T):
    """log p(x_o, c) for every class: each class's own marginal likelihood plus its log prior."""
    return np.column_stack([gm.score_samples(T) for gm in mixtures]) + log_prior


def _assert_same_mixture(a, b, rtol=1e-12):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-14, err_msg=name)


# --------------------------------------------------------------------------
# Bayes' rule
# --------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_predictions_equal_hand_computed_bayes_rule(data, fitted, covariance_type):
    """Independently fitted mixtures (same seeds) equal estimators_, and predict,
    predict_log_proba, predict_proba, score_samples follow Bayes' rule to 1e-10."""
    X, y, T = data
    clf = fitted(covariance_type)
    mixtures = _independent_mixtures(X, y, 2, covariance_type)
    for own, est in zip(mixtures, clf.estimators_):
        _assert_same_mixture(own, est)
    counts = np.bincount(y)
    log_prior = np.log(counts / counts.sum())
    assert_allclose(clf.class_log_prior_, log_prior, rtol=1e-14)
    joint = _bayes_log_joint(mixtures, log_prior, T)
    log_post = joint - logsumexp(joint, axis=1, keepdims=True)
    assert_allclose(clf.predict_log_proba(T), log_post, rtol=1e-10, atol=1e-10)
    assert_array_equal(clf.predict(T), clf.classes_[joint.argmax(axis=1)])
    assert_allclose(clf.score_samples(T), logsumexp(joint, axis=1), rtol=1e-10)
    # Also from the fitted estimators_ themselves.
    joint2 = _bayes_log_joint(clf.estimators_, clf.class_log_prior_, T)
    assert_array_equal(clf.predict(T), clf.classes_[joint2.argmax(axis=1)])
    proba = clf.predict_proba(T)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(proba, np.exp(clf.predict_log_proba(T)), rtol=1e-12, atol=0)
    assert proba.shape == (len(T), 3) and (proba >= 0).all()
    assert clf.score(X, y) == np.mean(clf.predict(X) == y)
    assert clf.score(X, y) > 0.8


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fitted_attributes(data, fitted, covariance_type):
    X, y, _ = data
    clf = fitted(covariance_type)
    assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.n_components_ == {0: 2, 1: 2, 2: 2}
    assert clf.selection_scores_ == {}
    assert clf.n_features_in_ == X.shape[1]
    assert all(
        e.covariance_type == covariance_type and e.n_components == 2 for e in clf.estimators_
    )


def test_tied_is_stacked_into_a_joint_full_mixture(fitted):
    """Each class has its own tied covariance: the joint mixture is 'full' with
    every component of class c carrying class c's tied covariance and factor."""
    clf = fitted("tied")
    joint = clf._joint_mixture()
    assert joint["covariance_type"] == "full"
    assert_array_equal(joint["owner"], [0, 0, 1, 1, 2, 2])
    for j, c in enumerate(joint["owner"]):
        est = clf.estimators_[c]
        assert_array_equal(joint["covariances"][j], est.covariances_)
        assert_array_equal(joint["prec_chol"][j], est.precisions_cholesky_)
    weights = np.concatenate(
        [np.exp(lp) * e.weights_ for lp, e in zip(clf.class_log_prior_, clf.estimators_)]
    )
    assert_allclose(joint["weights"], weights, rtol=1e-15)
    assert_allclose(joint["weights"].sum(), 1.0, rtol=1e-12)


# --------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(np.array(["cat", "dog", "emu"]), id="str"),
        pytest.param(np.array([-5, 3, 17]), id="noncontiguous-int"),
        pytest.param(np.array([-7, -2, -1]), id="negative-int"),
        pytest.param(np.array([-1.5, 0.25, 2.0]), id="float"),
        pytest.param(np.array(["b", "a", "c"], dtype=object), id="object-str"),
    ],
)
def test_labels_round_trip(data, names):
    """Any label values: classes_ is sorted, predict returns those labels,
    and the model equals the one fitted with integer labels."""
    X, y, T = data
    labels = names[y]
    clf = _clf(2).fit(X, labels)
    order = np.argsort(names.astype(str) if names.dtype == object else names)
    assert_array_equal(clf.classes_, names[order])
    base = _clf(2).fit(X, order.argsort()[y])  # same class order as integer labels
    assert_array_equal(clf.predict(T), clf.classes_[base.predict(T)])
    assert_allclose(clf.predict_proba(T), base.predict_proba(T), rtol=1e-12)
    assert set(clf.predict(X).tolist()) <= set(names.tolist())
    assert clf.score(X, labels) == base.score(X, order.argsort()[y])
    assert set(clf.n_components_) == set(names.tolist())
    assert_array_equal(_clf(2).fit(X, labels.tolist()).predict(T), clf.predict(T))


# --------------------------------------------------------------------------
# Priors
# --------------------------------------------------------------------------


def test_learned_and_uniform_priors(data):
    X, y, T = data
    learned = _clf(1).fit(X, y)
    assert_allclose(
        np.exp(learned.class_log_prior_), np.array(N_PER_CLASS) / sum(N_PER_CLASS), rtol=1e-14
    )
    uniform = _clf(1, priors="uniform").fit(X, y)
    assert_allclose(np.exp(uniform.class_log_prior_), 1 / 3, rtol=1e-14)
    # Same mixtures; only the priors differ, by a constant shift per class.
    shift = uniform.predict_log_proba(T) - learned.predict_log_proba(T)
    shift -= shift[:, :1]
    expected = uniform.class_log_prior_ - learned.class_log_prior_
    assert_allclose(shift, np.broadcast_to(expected - expected[0], shift.shape), atol=1e-10)


def test_explicit_priors_move_decisions_toward_the_favoured_class(data):
    X, y, _ = data
    # Points on the segment between classes 0 and 1, where decisions are close.
    t = np.linspace(0.0, 1.0, 201)[:, None]
    T = (1 - t) * X[y == 0].mean(axis=0) + t * X[y == 1].mean(axis=0)
    base = _clf(1, priors="uniform").fit(X, y)
    favoured = _clf(1, priors=[0.8, 0.1, 0.1]).fit(X, y)
    disfavoured = _clf(1, priors=[0.02, 0.49, 0.49]).fit(X, y)
    n_base = np.sum(base.predict(T) == 0)
    n_fav = np.sum(favoured.predict(T) == 0)
    n_dis = np.sum(disfavoured.predict(T) == 0)
    assert n_dis < n_base < n_fav
    # No sample moves away from class 0 when its prior grows.
    assert np.all(favoured.predict(T)[base.predict(T) == 0] == 0)
    assert np.all(favoured.predict_proba(T)[:, 0] >= base.predict_proba(T)[:, 0] - 1e-12)
    # Exactly Bayes' rule with those priors.
    joint = _bayes_log_joint(base.estimators_, np.log([0.8, 0.1, 0.1]), T)
    assert_allclose(
        favoured.predict_log_proba(T), joint - logsumexp(joint, axis=1, keepdims=True), atol=1e-10
    )


def test_zero_prior_class_is_never_predicted(data):
    X, y, T = data
    clf = _clf(1, priors=[0.5, 0.0, 0.5]).fit(X, y)
    assert not np.any(clf.predict(T) == 1)
    assert_array_equal(clf.predict_proba(T)[:, 1], 0.0)
    assert clf.predict_log_proba(T)[:, 1].max() == -np.inf


@pytest.mark.parametrize(
    "priors",
    [
        pytest.param([0.5, 0.5], id="too-few"),
        pytest.param([0.25, 0.25, 0.25, 0.25], id="too-many"),
        pytest.param([0.6, 0.6, -0.2], id="negative"),
        pytest.param([0.3, 0.3, 0.3], id="sum"),
        pytest.param([np.nan, 0.5, 0.5], id="nan"),
        pytest.param([[0.2, 0.3, 0.5]], id="2d"),
        pytest.param("balanced", id="string"),
    ],
)
def test_bad_priors_raise(data, priors):
    X, y, _ = data
    with pytest.raises(ValueError, match="priors"):
        _clf(1, priors=priors).fit(X, y)


# --------------------------------------------------------------------------
# n_components: int, mapping, candidates
# --------------------------------------------------------------------------


def test_mapping_gives_each_class_its_k(data):
    X, y, T = data
    spec = {0: 1, 1: 2, 2: 3}
    clf = _clf(spec).fit(X, y)
    assert clf.n_components_ == spec
    assert [e.n_components for e in clf.estimators_] == [1, 2, 3]
    assert [len(e.means_) for e in clf.estimators_] == [1, 2, 3]
    for own, est in zip(_independent_mixtures(X, y, spec), clf.estimators_):
        _assert_same_mixture(own, est)
    # With string labels, and numpy keys.
    names = np.array(["x", "y", "z"])
    clf = _clf({np.str_("x"): 3, "y": 1, "z": 2}).fit(X, names[y])
    assert clf.n_components_ == {"x": 3, "y": 1, "z": 2}


def test_mapping_with_missing_or_extra_classes_raises(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="no entry"):
        _clf({0: 1, 1: 2}).fit(X, y)
    with pytest.raises(ValueError, match="not in y"):
        _clf({0: 1, 1: 2, 2: 1, 5: 2}).fit(X, y)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", [], [1, 0], [1, 2.5], True, None])
def test_bad_n_components_raise(data, bad):
    X, y, _ = data
    with pytest.raises(ValueError, match="n_components"):
        _clf(bad).fit(X, y)


def test_bic_selection_picks_lowest_bic(data):
    X, y, _ = data
    candidates = [1, 2, 3]
    clf = _clf(candidates).fit(X, y)
    seeds = _class_seeds(3)
    for c, label in enumerate(clf.classes_.tolist()):
        scores = clf.selection_scores_[label]
        assert sorted(scores) == candidates
        assert clf.n_components_[label] == min(scores, key=scores.get)
        Xc = X[y == label]
        for k in candidates:
            own = GaussianMixture(k, reg_covar=1e-4, random_state=int(seeds[c])).fit(Xc)
            assert_allclose(scores[k], own.bic(Xc), rtol=1e-10)
        chosen = GaussianMixture(
            clf.n_components_[label], reg_covar=1e-4, random_state=int(seeds[c])
        ).fit(Xc)
        _assert_same_mixture(chosen, clf.estimators_[c])
    # The data has two clusters per class: BIC does not pick K=1 for all of them.
    assert any(k > 1 for k in clf.n_components_.values())


def test_bic_selection_skips_candidates_larger_than_the_class(data):
    X, y, _ = data
    clf = _clf([1, 2, 100]).fit(X, y)  # class 0 has 60 samples
    assert 100 not in clf.selection_scores_[0]
    assert 100 in clf.selection_scores_[2]


def test_heldout_selection_picks_max_heldout_score(data):
    X, y, T = data
    clf = _clf([1, 2, 4], selection="heldout", validation_fraction=0.25).fit(X, y)
    seeds = _class_seeds(3)
    for c, label in enumerate(clf.classes_.tolist()):
        scores = clf.selection_scores_[label]
        assert sorted(scores) == [1, 2, 4]
        assert clf.n_components_[label] == max(scores, key=scores.get)
        # Refitted on all of the class's data.
        own = GaussianMixture(
            clf.n_components_[label], reg_covar=1e-4, random_state=int(seeds[c])
        ).fit(X[y == label])
        _assert_same_mixture(own, clf.estimators_[c])
    with pytest.raises(ValueError, match="selection"):
        _clf([1, 2], selection="aic").fit(X, y)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="validation_fraction"):
            _clf([1, 2], selection="heldout", validation_fraction=bad).fit(X, y)


def test_class_with_fewer_samples_than_k_raises_naming_it(data):
    X, y, _ = data
    labels = np.array(["common", "usual", "frequent"])[y].astype(object)
    labels[:2] = "rare"
    with pytest.raises(ValueError, match="rare"):
        _clf(3).fit(X, labels)
    with pytest.raises(ValueError, match="rare"):
        _clf({"common": 1, "usual": 1, "frequent": 1, "rare": [3, 4]}).fit(X, labels)


def test_bad_y_raises(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="at least 2 classes"):
        _clf(1).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="labels"):
        _clf(1).fit(X, y[:-1])
    with pytest.raises(ValueError, match="1-dimensional"):
        _clf(1).fit(X, y[:, None])
    with pytest.raises(ValueError, match="NaN"):
        _clf(1).fit(X, np.where(np.arange(len(y)) == 3, np.nan, y.astype(float)))
    with pytest.raises(ValueError, match="numbers or strings"):
        _clf(1).fit(X, np.array([1, "a"] * (len(X) // 2), dtype=object))


def test_not_fitted_raises(data):
    with pytest.raises(gmmfast.NotFittedError):
        _clf(1).predict(data[2])


# --------------------------------------------------------------------------
# Missing values
# --------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_predict_with_nan_is_bayes_rule_with_marginals(data, fitted, covariance_type):
    """With NaN: each class's marginal likelihood (its GaussianMixture's
    score_samples on the NaN data) plus its log prior, argmax."""
    _, _, T = data
    clf = fitted(covariance_type)
    Tn, missing = _with_missing(T)
    joint = _bayes_log_joint(clf.estimators_, clf.class_log_prior_, Tn)
    log_post = joint - logsumexp(joint, axis=1, keepdims=True)
    assert_allclose(clf.predict_log_proba(Tn), log_post, rtol=1e-10, atol=1e-10)
    assert_array_equal(clf.predict(Tn), clf.classes_[joint.argmax(axis=1)])
    assert_allclose(clf.score_samples(Tn), logsumexp(joint, axis=1), rtol=1e-10, atol=1e-12)
    # Nothing observed: the posterior is the prior.
    assert_allclose(clf.predict_proba(Tn[:1])[0], np.exp(clf.class_log_prior_), rtol=1e-12)
    # An observed= mask is the same as NaN.
    garbage = np.where(missing, 123.0, T)
    assert_array_equal(clf.predict_log_proba(garbage, observed=~missing), clf.predict_log_proba(Tn))
    assert_array_equal(clf.predict(garbage, observed=~missing), clf.predict(Tn))
    y_true = clf.predict(T)
    assert clf.score(garbage, y_true, observed=~missing) == np.mean(clf.predict(Tn) == y_true)


def test_fit_with_missing_values_fits_each_class_by_missing_data_em(data):
    """fit with NaN: each class's mixture is GaussianMixture.fit on that class's
    rows (same seed, missing-data EM); an observed= mask gives the same model;
    BIC candidates are scored on the marginal likelihood of the NaN data."""
    X, y, T = data
    Xn, missing = _with_missing(X, seed=3, frac=0.2)
    Xn[1], missing[1] = X[1], False
    clf = _clf(2).fit(Xn, y)
    for own, est in zip(_independent_mixtures(Xn, y, 2), clf.estimators_):
        _assert_same_mixture(own, est)
    masked = _clf(2).fit(np.where(missing, 5.0, X), y, observed=~missing)
    assert_array_equal(masked.predict_log_proba(T), clf.predict_log_proba(T))
    selected = _clf([1, 2]).fit(Xn, y)
    seeds = _class_seeds(3)
    for c in range(3):
        for k in (1, 2):
            own = GaussianMixture(k, reg_covar=1e-4, random_state=int(seeds[c])).fit(Xn[y == c])
            assert_allclose(selected.selection_scores_[c][k], own.bic(Xn[y == c]), rtol=1e-10)


def _brute_force_posterior_impute(clf, Tn):
    """sum over classes c and components k of p(c, k | x_o) E[x_m | x_o, c, k]."""
    refs = [reference_for(est, Tn) for est in clf.estimators_]
    log_joint = np.concatenate(
        [lp + r.weighted for lp, r in zip(clf.class_log_prior_, refs)], axis=1
    )
    post = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
    cond = np.concatenate([r.cond for r in refs], axis=1)
    out = np.einsum("nj,njd->nd", post, cond)
    observed = ~np.isnan(Tn)
    out[observed] = Tn[observed]
    return out


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_posterior_equals_brute_force(data, fitted, covariance_type):
    _, _, T = data
    clf = fitted(covariance_type)
    Tn, missing = _with_missing(T, frac=0.5)
    expected = _brute_force_posterior_impute(clf, Tn)
    got = clf.impute(Tn)
    assert got.dtype == np.float64
    assert_allclose(got, expected, rtol=0, atol=1e-10)
    assert_array_equal(got[~missing], T[~missing])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_predicted_equals_predicted_class_mixture(data, fitted, covariance_type):
    _, _, T = data
    clf = fitted(covariance_type)
    Tn, missing = _with_missing(T, frac=0.5)
    got = clf.impute(Tn, weighting="predicted")
    predicted = clf.predict_log_proba(Tn).argmax(axis=1)
    for i in range(len(Tn)):
        expected = clf.estimators_[predicted[i]].impute(Tn[i : i + 1])[0]
        assert_allclose(got[i], expected, rtol=0, atol=1e-10)
    assert_array_equal(got[~missing], T[~missing])


@pytest.mark.parametrize("weighting", ["posterior", "predicted"])
@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_impute_sample_and_clip(data, fitted, covariance_type, weighting):
    _, _, T = data
    clf = fitted(covariance_type)
    Tn, missing = _with_missing(T, frac=0.5)
    a = clf.impute(Tn, weighting=weighting, method="sample", random_state=0)
    assert np.isfinite(a).all()
    assert_array_equal(a[~missing], T[~missing])
    assert_array_equal(a, clf.impute(Tn, weighting=weighting, method="sample", random_state=0))
    assert not np.array_equal(
        a, clf.impute(Tn, weighting=weighting, method="sample", random_state=1)
    )
    for method in ("mean", "sample"):
        plain = clf.impute(Tn, weighting=weighting, method=method, random_state=0)
        clipped = clf.impute(
            Tn, weighting=weighting, method=method, random_state=0, clip=(0.0, 1.0)
        )
        assert_array_equal(clipped[~missing], T[~missing])
        assert_array_equal(clipped[missing], np.clip(plain[missing], 0.0, 1.0))
    with pytest.raises(ValueError, match="weighting"):
        clf.impute(Tn, weighting="prior")
    with pytest.raises(ValueError, match="method"):
        clf.impute(Tn, method="median")
    with pytest.raises(ValueError, match="clip"):
        clf.impute(Tn, clip=(1.0, 0.0))


@pytest.mark.parametrize("weighting", ["posterior", "predicted"])
@pytest.mark.parametrize("method", ["mean", "sample"])
def test_impute_return_predictions_equals_predict(data, fitted, weighting, method):
    """return_predictions=True gives predict's labels and the same fills."""
    _, _, T = data
    clf = fitted("full")
    Tn, _ = _with_missing(T, frac=0.5)
    filled, predicted = clf.impute(
        Tn,
        weighting=weighting,
        method=method,
        random_state=0,
        clip=(0.0, 1.0),
        return_predictions=True,
    )
    assert_array_equal(predicted, clf.predict(Tn))
    assert_array_equal(
        filled, clf.impute(Tn, weighting=weighting, method=method, random_state=0, clip=(0.0, 1.0))
    )


def test_impute_sample_predicted_draws_only_from_the_predicted_class():
    """Two far-apart classes: a row observed near class 1 gets its missing
    value from class 1's conditional, whatever the seed."""
    rng = np.random.RandomState(0)
    X = np.r_[rng.standard_normal((80, 2)), rng.standard_normal((80, 2)) + [50.0, 100.0]]
    y = np.repeat([0, 1], 80)
    clf = _clf(1).fit(X, y)
    row = np.array([[50.0, np.nan]] * 50)
    for weighting in ("posterior", "predicted"):
        draws = clf.impute(row, weighting=weighting, method="sample", random_state=3)[:, 1]
        assert np.all(np.abs(draws - 100.0) < 6.0)


def test_float32_classifier_keeps_observed_values_exactly(data):
    X, y, T = data
    clf = _clf(2, dtype=np.float32).fit(X, y)
    Tn, missing = _with_missing(T)
    for weighting in ("posterior", "predicted"):
        for method in ("mean", "sample"):
            out = clf.impute(Tn, weighting=weighting, method=method, random_state=0)
            assert out.dtype == np.float64
            assert_array_equal(out[~missing], T[~missing])
    ref = clf.impute(Tn.astype(np.float32).astype(np.float64))
    assert_allclose(clf.impute(Tn)[missing], ref[missing], atol=1e-5)


def test_input_never_modified(data, fitted):
    _, _, T = data
    clf = fitted("full")
    Tn, missing = _with_missing(T)
    before, obs = Tn.copy(), ~missing
    for method in ("predict", "predict_proba", "predict_log_proba", "score_samples", "impute"):
        getattr(clf, method)(Tn)
        getattr(clf, method)(np.where(missing, 0.0, T), observed=obs)
    clf.impute(Tn, method="sample", random_state=0, clip=(0, 1))
    clf.impute(Tn, weighting="predicted", clip=(0, 1))
    assert_array_equal(Tn, before)
    assert_array_equal(obs, ~missing)


def test_inference_validation(data, fitted):
    _, _, T = data
    clf = fitted("full")
    bad = T.copy()
    bad[2, 1] = np.inf
    for method in ("predict", "predict_proba", "score_samples", "impute"):
        with pytest.raises(ValueError, match="infinity"):
            getattr(clf, method)(bad)
        with pytest.raises(ValueError, match="features"):
            getattr(clf, method)(T[:, :3])
        with pytest.raises(ValueError, match="shape"):
            getattr(clf, method)(T, observed=np.ones((len(T), 3), bool))
        with pytest.raises(ValueError, match="boolean"):
            getattr(clf, method)(T, observed=np.ones(T.shape, int))
        with pytest.raises(ValueError, match="NaN"):
            getattr(clf, method)(
                np.where(np.arange(T.size).reshape(T.shape) == 5, np.nan, T),
                observed=np.ones(T.shape, bool),
            )


# --------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------


@pytest.mark.parametrize("labels", ["int", "str", "float"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_save_load_round_trip(tmp_path, data, covariance_type, labels):
    X, y, T = data
    names = {
        "int": np.array([-3, 0, 9]),
        "str": np.array(["ant", "bee", "cow"]),
        "float": np.array([0.5, 1.5, 2.5]),
    }[labels]
    clf = _clf(
        {names[0].item(): 1, names[1].item(): 2, names[2].item(): 3},
        covariance_type=covariance_type,
        priors=[0.2, 0.3, 0.5],
    ).fit(X, names[y])
    path = tmp_path / "clf.npz"
    clf.save(path)
    loaded = GMMClassifier.load(path)
    assert_array_equal(loaded.classes_, clf.classes_)
    assert loaded.classes_.dtype == clf.classes_.dtype
    assert loaded.n_components_ == clf.n_components_
    assert loaded.covariance_type == covariance_type
    assert_array_equal(loaded.class_log_prior_, clf.class_log_prior_)
    Tn, _ = _with_missing(T)
    for Z in (T, Tn):
        assert_array_equal(loaded.predict(Z), clf.predict(Z))
        assert_array_equal(loaded.predict_log_proba(Z), clf.predict_log_proba(Z))
        assert_array_equal(loaded.score_samples(Z), clf.score_samples(Z))
    assert_array_equal(loaded.impute(Tn), clf.impute(Tn))
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[name].dtype.kind != "O" for name in archive.files)


def test_save_with_numpy_scalar_parameters(tmp_path, data):
    """Parameters given as numpy scalars (e.g. from a parameter grid) are saved as JSON."""
    X, y, T = data
    clf = _clf(1, max_iter=np.int64(50), reg_covar=np.float32(1e-3), tol=np.float64(1e-4)).fit(X, y)
    clf.save(tmp_path / "m.npz")
    loaded = GMMClassifier.load(tmp_path / "m.npz")
    assert loaded.max_iter == 50 and loaded.tol == 1e-4
    assert_array_equal(loaded.predict(T), clf.predict(T))


def _archive(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _corrupt(tmp_path, source, change, name="bad.npz"):
    arrays = _archive(source)
    change(arrays)
    out = tmp_path / name
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out


def _set(name, value):
    def change(arrays):
        arrays[name] = value

    return change


def _drop(name):
    def change(arrays):
        del arrays[name]

    return change


def _params(**updates):
    def change(arrays):
        meta = json.loads(str(arrays["__meta__"]))
        meta["params"].update(updates)
        arrays["__meta__"] = np.array(json.dumps(meta))

    return change


def _fewer_features(c):
    """Class c's arrays consistently cut to 3 features (the others keep 4)."""

    def change(arrays):
        arrays[f"class{c}.means_"] = arrays[f"class{c}.means_"][:, :3]
        for name in ("covariances_", "precisions_cholesky_"):  # the factor: older files only
            if f"class{c}.{name}" in arrays:
                arrays[f"class{c}.{name}"] = arrays[f"class{c}.{name}"][:, :3, :3]

    return change


def _meta(**updates):
    def change(arrays):
        meta = json.loads(str(arrays["__meta__"]))
        meta.update(updates)
        arrays["__meta__"] = np.array(json.dumps(meta))

    return change


CORRUPTIONS = [
    pytest.param(_drop("classes_"), "classes_", id="no-classes"),
    pytest.param(_drop("class_log_prior_"), "class_log_prior_", id="no-prior"),
    pytest.param(_drop("n_components_"), "n_components_", id="no-n_components"),
    pytest.param(_drop("class1.means_"), "means_", id="no-means"),
    pytest.param(_drop("class2.covariances_"), "covariances_", id="no-covariances"),
    pytest.param(
        _set("class0.weights_", np.array([0.5, 0.5, 0.0])), "weights_", id="weights-shape"
    ),
    pytest.param(_set("class1.means_", np.zeros((2, 3))), "covariances_", id="means-features"),
    pytest.param(_fewer_features(1), "disagree", id="class-features"),
    pytest.param(
        _set("class_log_prior_", np.log([0.5, 0.5, 0.5])), "class_log_prior_", id="prior-sum"
    ),
    pytest.param(
        _set("class_log_prior_", np.log([0.5, 0.5])), "class_log_prior_", id="prior-shape"
    ),
    pytest.param(
        _set("class_log_prior_", np.array([np.nan, 0.0, 0.0])), "class_log_prior_", id="prior-nan"
    ),
    pytest.param(_set("n_components_", np.array([1, 2])), "n_components_", id="counts-shape"),
    pytest.param(_set("n_components_", np.array([1, 1, 3])), "components", id="counts-mismatch"),
    pytest.param(_set("classes_", np.array(["a", "b"])), "class_log_prior_", id="classes-length"),
    pytest.param(_set("classes_", np.array([[0, 1, 2]])), "classes_", id="classes-2d"),
    pytest.param(
        _set("classes_", np.array([0, "a", 2], dtype=object)), "object", id="object-classes"
    ),
    pytest.param(
        _set("class0.means_", np.array([[1.0, 2.0, 3.0, 4.0]], dtype=object)),
        "object",
        id="object-means",
    ),
    pytest.param(_set("class0.covariances_", np.full((1, 4, 4), np.nan)), "NaN", id="nan-cov"),
    pytest.param(_meta(kind="GaussianMixture"), "GaussianMixture", id="wrong-kind"),
    pytest.param(_params(covariance_type="banana"), "covariance_type", id="bad-covariance-type"),
    pytest.param(_params(covariance_type="diag"), "shape", id="other-covariance-type"),
    pytest.param(_params(no_such_param=1), "no_such_param", id="unknown-param"),
]


@pytest.mark.parametrize("change, match", CORRUPTIONS)
def test_corrupted_files_raise(tmp_path, data, change, match):
    X, y, _ = data
    source = tmp_path / "good.npz"
    _clf({0: 1, 1: 2, 2: 3}).fit(X, y).save(source)
    GMMClassifier.load(source)  # the original is fine
    with pytest.raises(ValueError, match=match):
        GMMClassifier.load(_corrupt(tmp_path, source, change))


def test_gaussian_mixture_file_is_not_a_classifier(tmp_path, data):
    X, y, _ = data
    GaussianMixture(2, random_state=0).fit(X).save(tmp_path / "gm.npz")
    with pytest.raises(ValueError, match="GMMClassifier"):
        GMMClassifier.load(tmp_path / "gm.npz")


# --------------------------------------------------------------------------
# Parameters and scikit-learn
# --------------------------------------------------------------------------


def test_get_params_set_params_and_reconstruction(data):
    X, y, T = data
    clf = _clf([1, 2], covariance_type="diag", priors="uniform", selection="heldout", tol=1e-4)
    params = clf.get_params()
    assert params["n_components"] == [1, 2] and params["covariance_type"] == "diag"
    assert params["priors"] == "uniform" and params["selection"] == "heldout"
    clf.fit(X, y)
    again = GMMClassifier(**clf.get_params()).fit(X, y)
    assert_array_equal(again.predict_log_proba(T), clf.predict_log_proba(T))
    assert again.n_components_ == clf.n_components_
    assert clf.set_params(covariance_type="spherical", priors=None) is clf
    assert clf.get_params()["covariance_type"] == "spherical"
    clf.fit(X, y)
    assert all(e.covariance_type == "spherical" for e in clf.estimators_)
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(no_such_parameter=1)
    assert "GMMClassifier(" in repr(clf)


def test_set_params_after_fit_does_not_change_the_fitted_model(tmp_path, data):
    """Inference and save use the fitted mixtures' covariance type, not a
    parameter changed after fit (until the next fit)."""
    X, y, T = data
    ref = _clf(2, covariance_type="tied").fit(X, y)
    clf = _clf(2, covariance_type="tied").fit(X, y).set_params(covariance_type="diag")
    assert_array_equal(clf.predict_log_proba(T), ref.predict_log_proba(T))
    clf.save(tmp_path / "m.npz")
    loaded = GMMClassifier.load(tmp_path / "m.npz")
    assert loaded.covariance_type == "tied"
    assert_array_equal(loaded.predict_log_proba(T), ref.predict_log_proba(T))


def test_sklearn_clone_and_cross_val_score(data):
    from sklearn.base import clone, is_classifier
    from sklearn.model_selection import cross_val_score

    X, y, _ = data
    clf = _clf({0: 1, 1: 2, 2: [1, 2]}, priors="uniform")
    assert is_classifier(clf)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and copy is not clf
    scores = cross_val_score(_clf(2), X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.75)
    names = np.array(["p", "q", "r"])
    scores = cross_val_score(_clf(1, covariance_type="diag"), X, names[y], cv=3)
    assert np.all(scores > 0.75)


# --------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------


def test_mnist_sample_smoke(mnist_sample):
    """K=1 full covariances, reg_covar=0.05, float32: accurate on clean test
    images, and still accurate with half of each image's pixels missing."""
    X_train, y_train, X_test, y_test = mnist_sample
    clf = GMMClassifier(1, reg_covar=0.05, dtype=np.float32, random_state=0).fit(X_train, y_train)
    assert_array_equal(clf.classes_, np.arange(10))
    assert clf.score(X_test, y_test) > 0.9
    rng = np.random.RandomState(0)
    T = X_test[:100].copy()
    missing = rng.uniform(size=T.shape) < 0.5
    T[missing] = np.nan
    assert clf.score(T, y_test[:100]) > 0.85
    filled = clf.impute(T, clip=(0.0, 1.0))
    assert filled.min() >= 0.0 and filled.max() <= 1.0
    assert_array_equal(filled[~missing], X_test[:100][~missing])
    # Better than filling with the mean image.
    err = np.abs(filled - X_test[:100])[missing].mean()
    baseline = np.abs(X_train.mean(axis=0) - X_test[:100])[missing].mean()
    assert err < 0.6 * baseline
