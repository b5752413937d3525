"""Inference with missing values: exact marginals and conditional means.

Every result is compared with a brute-force reference (tests/missing_reference.py:
scipy's multivariate normal on each row's observed sub-vector, dense
conditional means), for all covariance types and for masks that send the
missing-data kernel down each of its paths: few values missing (precision side),
many missing (observed side), about half, rows with nothing observed and
complete rows mixed in, more than 256 rows sharing one mask (several work
units per mask), and features constant within a cluster (coordinates the
kernel treats as isolated 1-d Gaussians).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from missing_reference import conditional_moments, reference_for
from numpy.testing import assert_allclose, assert_array_equal

import gmmfast
from gmmfast import GaussianMixture
from gmmfast.mixture import _gaussian
from gmmfast.mixture._missing import mask_units, split_observed, uncoupled_features, unit_batches

RTOL_LL = 1e-10  # log-likelihoods, float64
ATOL_IMPUTE = 1e-10  # imputations and responsibilities, float64
INFERENCE = ("score_samples", "predict", "predict_proba", "score", "impute")


# --------------------------------------------------------------------------
# Data and models
# --------------------------------------------------------------------------


def _clusters(seed, D, n_per=(100, 120, 140), spread=4.0):
    rng = np.random.RandomState(seed)
    X, y = [], []
    for c, n in enumerate(n_per):
        center = rng.uniform(-spread, spread, D)
        X.append(center + rng.standard_normal((n, D)) @ rng.uniform(-0.5, 1.0, (D, D)))
        y.append(np.full(n, c))
    return np.vstack(X), np.concatenate(y)


def _isolated_clusters():
    """D=10, three far-apart clusters (hard responsibilities) with constant features:
    feature 0 is 0 everywhere, feature 3 is 2 in cluster 0, features 5 and 6 are
    -1 and 4 in cluster 1. Their covariance rows are then exactly zero off the
    diagonal in the components that hold them."""
    X, y = _clusters(1, 10, spread=60.0)
    X[:, 0] = 0.0
    X[y == 0, 3] = 2.0
    X[y == 1, 5] = -1.0
    X[y == 1, 6] = 4.0
    return X, y


DATASETS = {
    "d7": lambda: _clusters(0, 7),
    "d12": lambda: _clusters(2, 12),
    "isolated": _isolated_clusters,
}


def _fit(X, covariance_type, dtype=np.float64, reg_covar=1e-3, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmmfast.ConvergenceWarning)
        return GaussianMixture(
            3,
            covariance_type=covariance_type,
            reg_covar=reg_covar,
            random_state=0,
            dtype=dtype,
            **kwargs,
        ).fit(X)


@pytest.fixture(scope="module")
def data():
    return {name: make() for name, make in DATASETS.items()}


@pytest.fixture(scope="module")
def models(data):
    """Fitted models by (dataset, covariance_type, dtype); fitted once, do not modify."""
    cache = {}

    def get(name, covariance_type, dtype=np.float64):
        key = (name, covariance_type, np.dtype(dtype).name)
        if key not in cache:
            cache[key] = _fit(data[name][0], covariance_type, dtype)
        return cache[key]

    return get


def _with_threads(gm, n_threads):
    out = copy.deepcopy(gm)
    out.n_threads = n_threads
    return out


# --------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------


def _missing_per_row(rng, n, D, counts):
    """A missing-mask with counts[i] missing entries in row i, at random places."""
    mask = np.zeros((n, D), dtype=bool)
    for i, c in enumerate(counts):
        mask[i, rng.choice(D, size=c, replace=False)] = True
    return mask


def mask_few(rng, n, D):
    """1 or 2 missing per row: the kernel's precision side."""
    return _missing_per_row(rng, n, D, rng.randint(1, 3, size=n))


def mask_many(rng, n, D):
    """All but 1 or 2 missing: the observed side."""
    return _missing_per_row(rng, n, D, D - rng.randint(1, 3, size=n))


def mask_half(rng, n, D):
    """About half missing (exactly D // 2 or D // 2 + 1): where the two sides meet."""
    return _missing_per_row(rng, n, D, D // 2 + rng.randint(0, 2, size=n))


def mask_mixed(rng, n, D):
    """Random fractions, including rows with nothing observed and complete rows."""
    frac = rng.choice([0.0, 0.2, 0.5, 0.8, 1.0], size=(n, 1))
    mask = rng.uniform(size=(n, D)) < frac
    mask[0] = True  # nothing observed
    mask[1] = False  # complete
    mask[2, :] = True
    mask[3, :] = False
    return mask


def mask_shared(rng, n, D):
    """Few masks, each shared by many rows: 600 rows (3 work units) with one mask,
    300 with another, 290 with a third, and some complete rows."""
    a, b, c = np.zeros(D, bool), np.zeros(D, bool), np.zeros(D, bool)
    a[[1, D - 2]] = True  # precision side
    b[2:] = True  # observed side
    c[: D // 2] = True
    rows = [a] * 600 + [b] * 300 + [c] * 290 + [np.zeros(D, bool)] * 10
    mask = np.array(rows)
    return mask[rng.permutation(len(mask))]


MASKS = {
    "few": mask_few,
    "many": mask_many,
    "half": mask_half,
    "mixed": mask_mixed,
    "shared": mask_shared,
}


def _test_rows(X, scenario, seed=0):
    """Test samples (training rows with noise) and their missing-mask."""
    rng = np.random.RandomState(seed)
    n = 1200 if scenario == "shared" else 150
    T = X[rng.randint(len(X), size=n)] + 0.3 * rng.standard_normal((n, X.shape[1]))
    missing = MASKS[scenario](rng, n, X.shape[1])
    T_nan = T.copy()
    T_nan[missing] = np.nan
    return T_nan, missing


# --------------------------------------------------------------------------
# Against the brute-force reference
# --------------------------------------------------------------------------


def _check_against_reference(gm, T, ref, rtol_ll, atol):
    scale = np.abs(ref.log_norm).max()
    assert_allclose(gm.score_samples(T), ref.log_norm, rtol=rtol_ll, atol=rtol_ll * 1e-2)
    assert_allclose(gm.score(T), ref.log_norm.mean(), rtol=rtol_ll, atol=rtol_ll * scale)
    assert_allclose(gm.predict_proba(T), ref.resp, rtol=0, atol=atol)
    top2 = np.sort(ref.weighted, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-6  # skip near-ties
    assert_array_equal(gm.predict(T)[clear], ref.weighted.argmax(axis=1)[clear])
    imputed = gm.impute(T)
    assert imputed.dtype == np.float64
    assert_allclose(imputed, ref.imputed, rtol=0, atol=atol)


@pytest.mark.parametrize("scenario", MASKS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_matches_brute_force(data, models, dataset, covariance_type, scenario):
    """score_samples, score, predict_proba, predict and impute equal the reference
    (log-likelihoods to 1e-10 relative, imputations to 1e-10 absolute)."""
    gm = models(dataset, covariance_type)
    T, missing = _test_rows(data[dataset][0], scenario)
    assert missing.any(axis=1).sum() > len(T) // 2
    ref = reference_for(gm, T)
    _check_against_reference(gm, T, ref, RTOL_LL, ATOL_IMPUTE)


RTOL_FLOAT32 = 2e-4  # relative to max(|value|, 1); measured errors are below 3e-5


@pytest.mark.parametrize("scenario", ["few", "mixed", "shared"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dataset", ["d7", "isolated"])
def test_float32_models_match_brute_force(data, models, dataset, covariance_type, scenario):
    """A float32 model rounds samples to float32 and may factorise in float32;
    against the reference on the rounded samples (with the model's float64
    parameters) it agrees to float32 accuracy."""
    gm = models(dataset, covariance_type, np.float32)
    T, missing = _test_rows(data[dataset][0], scenario)
    ref = reference_for(gm, T.astype(np.float32).astype(np.float64))
    got = gm.score_samples(T)
    err = np.abs(got - ref.log_norm) / np.maximum(np.abs(ref.log_norm), 1)
    assert err.max() < RTOL_FLOAT32, err.max()
    assert_allclose(gm.score(T), ref.log_norm.mean(), rtol=RTOL_FLOAT32)
    assert_allclose(gm.predict_proba(T), ref.resp, atol=RTOL_FLOAT32)
    assert (gm.predict(T) == ref.weighted.argmax(axis=1)).mean() > 0.99
    filled = gm.impute(T)
    assert_allclose(
        filled[missing], ref.imputed[missing], atol=RTOL_FLOAT32 * np.abs(ref.imputed).max()
    )
    # Observed values are returned exactly as given, not rounded to float32.
    assert_array_equal(filled[~missing], T[~missing])


def test_mask_units_cut_masks_into_bounded_units():
    """Rows are grouped by mask; each unit has one mask and at most unit_rows rows."""
    rng = np.random.RandomState(0)
    missing = mask_shared(rng, 0, 9)
    observed = (~missing).astype(np.uint8)
    order, unit_ptr = mask_units(observed)
    assert sorted(order.tolist()) == list(range(len(observed)))
    sizes = np.diff(unit_ptr)
    assert sizes.max() <= 256 and sizes.min() >= 1
    for u in range(len(sizes)):
        unit = observed[order[unit_ptr[u] : unit_ptr[u + 1]]]
        assert (unit == unit[0]).all()
    # 600 rows -> 3 units, 300 -> 2, 290 -> 2, 10 -> 1
    assert sorted(sizes.tolist()) == sorted([256, 256, 88, 256, 44, 256, 34, 10])
    small_order, small_ptr = mask_units(observed, unit_rows=7)
    assert np.diff(small_ptr).max() == 7


def test_unit_batches_cover_units_in_order_within_bounds():
    """Batches are runs of whole units, in order, none above max_rows rows,
    and several per thread when there are enough rows."""
    rng = np.random.RandomState(1)
    sizes = rng.randint(1, 40, size=300)
    unit_ptr = np.concatenate([[0], np.cumsum(sizes)])
    for n_threads, max_rows in ((1, 256), (2, 256), (4, 64), (2, 39)):
        batch_ptr = unit_batches(unit_ptr, n_threads, max_rows)
        assert batch_ptr[0] == 0 and batch_ptr[-1] == len(sizes)
        assert np.all(np.diff(batch_ptr) >= 1)
        rows = np.add.reduceat(sizes, batch_ptr[:-1])
        assert rows.max() <= max_rows
        assert len(rows) >= 4 * n_threads
    # One big unit per batch when units are as large as a batch may be.
    big = np.arange(0, 5 * 256 + 1, 256)
    assert_array_equal(unit_batches(big, 2), np.arange(6))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batching_does_not_change_results(dtype):
    """The kernel gives the same values whatever the batches: one unit per
    batch, or units with different masks (both sides, isolated coordinates)
    sharing a batch."""
    from gmmfast._kernels import _missing_estep
    from gmmfast.mixture._missing import _kernel_parameters

    X, _ = _isolated_clusters()
    gm = _fit(X, "full", dtype=dtype)
    rng = np.random.RandomState(5)
    X = X[::3].astype(dtype)
    observed = np.ascontiguousarray(
        rng.rand(*X.shape) < rng.choice([0.2, 0.5, 0.9], size=(len(X), 1)), dtype=np.uint8
    )
    observed[:30] = observed[0]  # one mask shared by 30 rows
    order, unit_ptr = mask_units(observed, unit_rows=16)
    covs, precisions, isolated = _kernel_parameters(
        gm.covariances_, gm.precisions_cholesky_, "full", X.dtype, None
    )
    assert isolated.any()
    log_det = _gaussian.log_det_cholesky(gm.precisions_cholesky_, "full", X.shape[1]).astype(
        np.float64
    )
    results = []
    for batch_ptr in (
        np.arange(len(unit_ptr)),
        unit_batches(unit_ptr, 1, 64),
        unit_batches(unit_ptr, 3, 40),
    ):
        out = np.empty((len(X), len(gm.means_)))
        log_norm = np.empty(len(X))
        imputed = np.empty(X.shape)
        failed = _missing_estep.missing_estep_full(
            np.ascontiguousarray(X * observed),
            observed,
            order,
            unit_ptr,
            batch_ptr,
            gm.means_.astype(np.float64),
            covs,
            precisions,
            isolated,
            False,
            log_det,
            np.log(gm.weights_.astype(np.float64)),
            out,
            log_norm,
            0,
            imputed,
            64,
            2,
        )
        assert failed == 0
        results.append((out, log_norm, imputed))
    for out, log_norm, imputed in results[1:]:
        assert_allclose(out, results[0][0], rtol=1e-12 if dtype == np.float64 else 1e-5)
        assert_allclose(log_norm, results[0][1], rtol=1e-12 if dtype == np.float64 else 1e-5)
        assert_allclose(
            imputed, results[0][2], rtol=1e-12 if dtype == np.float64 else 1e-4, atol=1e-12
        )


# --------------------------------------------------------------------------
# Isolated (uncoupled) coordinates
# --------------------------------------------------------------------------


def test_uncoupled_features_on_constructed_covariances():
    """A coordinate is isolated in component k iff its covariance row is exactly
    zero off the diagonal."""
    a = np.array(
        [[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.5, 0.0], [0.0, 0.5, 1.0, 0.0], [0.0, 0.0, 0.0, 3.0]]
    )
    b = np.array(
        [
            [1.0, 1e-300, 0.0, 0.0],
            [1e-300, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.2],
            [0.0, 0.0, 0.2, 1.0],
        ]
    )
    got = uncoupled_features(np.stack([a, b]))
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    assert_array_equal(got, [[1, 0, 0, 1], [0, 0, 0, 0]])
    assert_array_equal(uncoupled_features(np.eye(3)[None] * 2), [[1, 1, 1]])


def _component_of_cluster(gm, X, y):
    return [
        int(np.argmin(((gm.means_ - X[y == c].mean(axis=0)) ** 2).sum(axis=1))) for c in range(3)
    ]


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_constant_features_are_isolated(data, models, covariance_type):
    """Features constant within a cluster have covariance rows exactly zero off
    the diagonal after a fit, and uncoupled_features finds exactly those."""
    X, y = data["isolated"]
    gm = models("isolated", covariance_type)
    covs = gm.covariances_ if covariance_type == "full" else gm.covariances_[None]
    expected = np.zeros(covs.shape[:2], dtype=np.uint8)
    expected[:, 0] = 1  # constant everywhere
    if covariance_type == "full":
        comp = _component_of_cluster(gm, X, y)
        assert sorted(comp) == [0, 1, 2]
        expected[comp[0], 3] = 1
        expected[comp[1], [5, 6]] = 1
    assert_array_equal(uncoupled_features(covs), expected)


def _set_params(gm, weights, means, covariances, covariance_type):
    gm.weights_ = np.asarray(weights, dtype=np.float64)
    gm.means_ = np.asarray(means, dtype=np.float64)
    gm.covariances_ = np.asarray(covariances, dtype=np.float64)
    gm.precisions_cholesky_ = _gaussian.precision_cholesky_from_covariances(
        gm.covariances_, covariance_type
    )
    gm.n_features_in_ = gm.means_.shape[1]
    return gm


def _constructed_isolated_model(covariance_type="full", seed=0, D=8, K=3):
    """Hand-made model: in each component some coordinates are isolated
    (different ones per component), the rest strongly correlated."""
    rng = np.random.RandomState(seed)
    covs = []
    for k in range(K):
        A = rng.standard_normal((D, D))
        S = A @ A.T / D + 0.1 * np.eye(D)
        iso = rng.choice(D, size=k + 2, replace=False)
        S[iso, :] = 0.0
        S[:, iso] = 0.0
        S[iso, iso] = rng.uniform(0.1, 3.0, size=len(iso))
        covs.append(S)
    covs = np.stack(covs)
    if covariance_type == "tied":
        covs = covs[0]
    gm = GaussianMixture(K, covariance_type=covariance_type)
    return _set_params(
        gm, rng.dirichlet(np.ones(K) * 3), rng.uniform(-2, 2, (K, D)), covs, covariance_type
    )


@pytest.mark.parametrize("scenario", MASKS)
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_constructed_isolated_coordinates_match_brute_force(covariance_type, scenario):
    """Isolated coordinates, observed or missing, on either side of the kernel."""
    gm = _constructed_isolated_model(covariance_type)
    covs = gm.covariances_ if covariance_type == "full" else gm.covariances_[None]
    assert uncoupled_features(covs).sum(axis=1).min() >= 2
    X = 1.5 * np.random.RandomState(1).standard_normal((400, 8))
    T, _ = _test_rows(X, scenario, seed=3)
    _check_against_reference(gm, T, reference_for(gm, T), RTOL_LL, ATOL_IMPUTE)


@pytest.mark.parametrize("scenario", ["few", "many", "mixed"])
def test_full_model_with_diagonal_covariances_equals_diag_model(scenario):
    """Every coordinate isolated (full covariances that are diagonal): the
    masked full kernel factorises nothing and must equal the diag model."""
    rng = np.random.RandomState(5)
    K, D = 3, 6
    weights, means = rng.dirichlet(np.ones(K)), rng.uniform(-3, 3, (K, D))
    variances = rng.uniform(0.2, 2.0, (K, D))
    full = _set_params(
        GaussianMixture(K), weights, means, np.stack([np.diag(v) for v in variances]), "full"
    )
    diag = _set_params(
        GaussianMixture(K, covariance_type="diag"), weights, means, variances, "diag"
    )
    assert uncoupled_features(full.covariances_).all()
    T, _ = _test_rows(rng.standard_normal((50, D)) * 2, scenario)
    assert_allclose(full.score_samples(T), diag.score_samples(T), rtol=RTOL_LL)
    assert_allclose(full.predict_proba(T), diag.predict_proba(T), atol=ATOL_IMPUTE)
    assert_allclose(full.impute(T), diag.impute(T), atol=ATOL_IMPUTE)


# --------------------------------------------------------------------------
# observed= masks, validation, side effects
# --------------------------------------------------------------------------


def _call(gm, method, X, observed=None):
    return getattr(gm, method)(X, observed=observed)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_observed_mask_equals_nan(data, models, covariance_type):
    """observed=mask (with arbitrary values at the missing places) gives exactly
    the results of NaN at those places, for every method."""
    gm = models("d7", covariance_type)
    T, missing = _test_rows(data["d7"][0], "mixed")
    garbage = np.where(missing, np.random.RandomState(0).uniform(-1e6, 1e6, T.shape), T)
    garbage[0, 0] = np.nan  # NaN at a position the mask calls missing is fine
    assert missing[0, 0]
    for method in INFERENCE:
        assert_array_equal(
            _call(gm, method, garbage, ~missing), _call(gm, method, T), err_msg=method
        )
    a = gm.impute(garbage, ~missing, method="sample", random_state=3)
    b = gm.impute(T, method="sample", random_state=3)
    assert_array_equal(a, b)
    # An all-True mask on complete data is the ordinary path.
    X = data["d7"][0][:20]
    assert_array_equal(gm.score_samples(X, np.ones(X.shape, bool)), gm.score_samples(X))


@pytest.mark.parametrize("method", INFERENCE)
def test_nan_at_observed_position_raises(models, method):
    gm = models("d7", "full")
    X = np.random.RandomState(0).standard_normal((5, 7))
    X[1, 2] = np.nan
    observed = np.ones(X.shape, bool)
    with pytest.raises(ValueError, match="NaN"):
        _call(gm, method, X, observed)


@pytest.mark.parametrize(
    "make_mask, match",
    [
        pytest.param(lambda X: np.ones(X.shape[::-1], bool), "shape", id="transposed"),
        pytest.param(lambda X: np.ones(X.shape[1], bool), "shape", id="1d"),
        pytest.param(lambda X: np.ones((len(X) + 1, X.shape[1]), bool), "shape", id="rows"),
        pytest.param(lambda X: np.ones(X.shape, int), "boolean", id="int"),
        pytest.param(lambda X: np.ones(X.shape, np.float64), "boolean", id="float"),
        pytest.param(lambda X: np.ones(X.shape, np.uint8), "boolean", id="uint8"),
    ],
)
@pytest.mark.parametrize("method", INFERENCE)
def test_bad_observed_mask_raises(models, make_mask, match, method):
    gm = models("d7", "full")
    X = np.random.RandomState(0).standard_normal((6, 7))
    with pytest.raises(ValueError, match=match):
        _call(gm, method, X, make_mask(X))


@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("method", INFERENCE)
def test_infinity_raises(models, method, value):
    """Infinity at an observed position raises, with NaN elsewhere or with a mask."""
    gm = models("d7", "diag")
    X = np.random.RandomState(0).standard_normal((6, 7))
    X[0, 1] = np.nan
    X[3, 4] = value
    with pytest.raises(ValueError, match="infinity"):
        _call(gm, method, X)
    X[0, 1] = 0.0
    observed = np.ones(X.shape, bool)
    observed[0, 1] = False
    with pytest.raises(ValueError, match="infinity"):
        _call(gm, method, X, observed)


def test_wrong_feature_count_raises(models):
    gm = models("d7", "full")
    X = np.full((3, 6), np.nan)
    for method in INFERENCE:
        with pytest.raises(ValueError, match="features"):
            _call(gm, method, X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_input_never_modified(data, models, covariance_type, dtype):
    gm = models("d7", covariance_type, dtype)
    T, missing = _test_rows(data["d7"][0], "mixed")
    for X in (T, T.astype(np.float32), np.asfortranarray(T)):
        before = X.copy()
        obs = ~missing
        obs_before = obs.copy()
        for method in INFERENCE:
            _call(gm, method, X)
            _call(gm, method, np.where(missing, 7.0, X), obs)
        gm.impute(X, method="sample", random_state=0, clip=(-1, 1))
        gm.impute(X, clip=(-1, 1))
        assert_array_equal(X, before)
        assert_array_equal(obs, obs_before)


def test_split_observed_contract():
    X = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan]])
    filled, obs = split_observed(X, None, dtype=np.float32, n_features=3)
    assert filled.dtype == np.float32 and filled.flags.c_contiguous
    assert obs.dtype == np.uint8 and obs.flags.c_contiguous
    assert_array_equal(obs, [[1, 0, 1], [0, 0, 0]])
    assert_array_equal(filled, [[1, 0, 3], [0, 0, 0]])
    # Integers have no NaN: all observed.
    filled, obs = split_observed(
        np.arange(6).reshape(2, 3), None, dtype=np.float64, n_features=None
    )
    assert obs.all()


# --------------------------------------------------------------------------
# impute: sampling and clipping
# --------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_sample_keeps_observed_and_is_repeatable(data, models, covariance_type):
    gm = models("d7", covariance_type)
    T, missing = _test_rows(data["d7"][0], "mixed")
    a = gm.impute(T, method="sample", random_state=0)
    assert np.isfinite(a).all()
    assert_array_equal(a[~missing], T[~missing])
    assert_array_equal(a, gm.impute(T, method="sample", random_state=0))
    assert_array_equal(a, gm.impute(T, method="sample", random_state=np.random.RandomState(0)))
    b = gm.impute(T, method="sample", random_state=1)
    assert not np.array_equal(a[missing], b[missing])
    assert_array_equal(b[~missing], T[~missing])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_sample_mean_approaches_conditional_mean(models, covariance_type):
    """For one row, repeated 4000 times: the draws' mean is within 5 standard
    errors of the conditional mean E[x_m | x_o] (coordinate-wise), and their
    variance near the mixture's conditional variance. Two rows: one with
    nothing observed (draws from the whole mixture: components chosen by
    weight), one whose posterior is split between two components."""
    gm = models("d7", covariance_type)
    D = gm.means_.shape[1]
    # A row halfway between two components, observed on 2 features.
    o = np.zeros(D, bool)
    o[[0, 3]] = True
    mid = np.zeros(D)
    mid[o] = 0.5 * (gm.means_[0, o] + gm.means_[1, o])
    rows = [(np.zeros(D), np.zeros(D, bool)), (mid, o)]
    n = 4000
    for x, obs in rows:
        mean, cov, ref = conditional_moments(gm, x, obs)
        resp = ref.resp[0]
        assert resp.max() < 0.9  # the posterior is split between components
        se = np.sqrt(np.diag(cov) / n)
        # The test has power: sampling only the most likely component's
        # conditional would miss the mean by more than 10 standard errors.
        assert np.abs(ref.cond[0, resp.argmax(), ~obs] - mean).max() > 10 * se.max()
        X = np.where(obs, x, np.nan)[None].repeat(n, axis=0)
        draws = gm.impute(X, method="sample", random_state=0)[:, ~obs]
        assert np.all(np.abs(draws.mean(axis=0) - mean) < 5 * se), (draws.mean(axis=0) - mean) / se
        assert_allclose(draws.var(axis=0), np.diag(cov), rtol=0.15)


def test_impute_sample_with_more_than_256_components():
    """Rows sharing a mask but drawn from components k and k + 256 use their own
    components' conditionals (component ids are not truncated to a byte)."""
    K = 300
    gm = GaussianMixture(K, covariance_type="diag")
    means = np.c_[np.arange(K) * 100.0, np.arange(K) * 1.0]
    _set_params(gm, np.full(K, 1.0 / K), means, np.full((K, 2), 1e-4), "diag")
    X = np.array([[100.0, np.nan], [25700.0, np.nan], [29900.0, np.nan]])
    assert_array_equal(gm.predict(X), [1, 257, 299])
    filled = gm.impute(X, method="sample", random_state=0)
    assert_allclose(filled[:, 1], [1.0, 257.0, 299.0], atol=0.1)
    full = _set_params(
        GaussianMixture(K),
        np.full(K, 1.0 / K),
        means,
        np.stack([np.diag([1e-4, 1e-4])] * K),
        "full",
    )
    assert_allclose(
        full.impute(X, method="sample", random_state=0)[:, 1], [1.0, 257.0, 299.0], atol=0.1
    )


@pytest.mark.parametrize("method", ["mean", "sample"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_clip_changes_only_filled_values(data, models, covariance_type, method):
    gm = models("d7", covariance_type)
    T, missing = _test_rows(data["d7"][0], "mixed")
    low, high = -1.0, 1.0
    assert (np.abs(T[~missing]) > 1).any()  # observed values outside the range exist
    plain = gm.impute(T, method=method, random_state=0)
    clipped = gm.impute(T, method=method, random_state=0, clip=(low, high))
    assert_array_equal(clipped[~missing], T[~missing])
    assert_array_equal(clipped[missing], np.clip(plain[missing], low, high))
    assert (plain[missing] != clipped[missing]).any()


@pytest.mark.parametrize("bad", [(1.0, 0.0), (0.0,), (0.0, 1.0, 2.0)])
def test_bad_clip_and_method_raise(models, bad):
    gm = models("d7", "full")
    X = np.full((2, 7), np.nan)
    with pytest.raises(ValueError, match="clip"):
        gm.impute(X, clip=bad)
    with pytest.raises(ValueError, match="method"):
        gm.impute(X, method="median")


def test_impute_without_missing_values_is_a_float64_copy(data, models):
    gm = models("d7", "full")
    X = data["d7"][0][:10]
    for method in ("mean", "sample"):
        out = gm.impute(X, method=method, random_state=0)
        assert out.dtype == np.float64 and not np.shares_memory(out, X)
        assert_array_equal(out, X)


# --------------------------------------------------------------------------
# Threads, pure-NaN columns
# --------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_and_two_threads_agree(data, models, covariance_type):
    """Several work units per mask and many masks: 1 and 2 threads agree to 1e-10."""
    gm = models("d12", covariance_type)
    T1, _ = _test_rows(data["d12"][0], "shared")
    T2, _ = _test_rows(data["d12"][0], "mixed", seed=1)
    T = np.vstack([T1, T2])
    one, two = _with_threads(gm, 1), _with_threads(gm, 2)
    assert_allclose(one.score_samples(T), two.score_samples(T), rtol=1e-10)
    assert_allclose(one.predict_proba(T), two.predict_proba(T), atol=1e-10)
    assert_allclose(one.impute(T), two.impute(T), atol=1e-10)
    assert_array_equal(
        one.impute(T, method="sample", random_state=0),
        two.impute(T, method="sample", random_state=0),
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_pure_nan_column(data, models, covariance_type):
    """A feature missing in every test row is fine at inference: it is
    marginalised in every row and filled in every row."""
    gm = models("d7", covariance_type)
    T, _ = _test_rows(data["d7"][0], "few")
    T[:, 4] = np.nan
    ref = reference_for(gm, T)
    assert_allclose(gm.score_samples(T), ref.log_norm, rtol=RTOL_LL)
    filled = gm.impute(T)
    assert np.isfinite(filled[:, 4]).all()
    assert_allclose(filled, ref.imputed, rtol=0, atol=ATOL_IMPUTE)


# --------------------------------------------------------------------------
# Property: marginal of the observed features
# --------------------------------------------------------------------------


def _small_model(covariance_type):
    rng = np.random.RandomState(11)
    K, D = 2, 4
    A = rng.standard_normal((K, D, D))
    full = A @ np.swapaxes(A, 1, 2) / D + 0.3 * np.eye(D)
    covs = {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(0.3, 2.0, (K, D)),
        "spherical": rng.uniform(0.3, 2.0, K),
    }[covariance_type]
    gm = GaussianMixture(K, covariance_type=covariance_type)
    return _set_params(gm, [0.35, 0.65], rng.uniform(-2, 2, (K, D)), covs, covariance_type)


SMALL_MODELS = {ct: _small_model(ct) for ct in COVARIANCE_TYPES}


def _restricted(gm, o):
    """The same mixture on the observed features only."""
    ct = gm.covariance_type
    cov = gm.covariances_
    sub = {
        "full": lambda: cov[:, o][:, :, o],
        "tied": lambda: cov[np.ix_(o, o)],
        "diag": lambda: cov[:, o],
        "spherical": lambda: cov,
    }[ct]()
    return _set_params(
        GaussianMixture(len(gm.means_), covariance_type=ct), gm.weights_, gm.means_[:, o], sub, ct
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    observed=arrays(bool, st.tuples(st.integers(1, 6), st.just(4))),
    values=arrays(
        np.float64, (6, 4), elements=st.floats(-6, 6, allow_nan=False, allow_infinity=False)
    ),
)
def test_property_marginal_of_observed_features(covariance_type, observed, values):
    """score_samples with missing values equals, row by row, the score of the
    model restricted to that row's observed features (0 if none), and
    predict_proba the restricted model's posteriors (the weights if none)."""
    gm = SMALL_MODELS[covariance_type]
    X = np.where(observed, values[: len(observed)], np.nan)
    got = gm.score_samples(X)
    proba = gm.predict_proba(X)
    for i, o in enumerate(observed):
        if not o.any():
            assert abs(got[i]) < 1e-12
            assert_allclose(proba[i], gm.weights_, atol=1e-12)
            continue
        sub = _restricted(gm, o)
        row = values[i : i + 1, o]
        assert_allclose(got[i], sub.score_samples(row)[0], rtol=1e-10, atol=1e-12)
        assert_allclose(proba[i], sub.predict_proba(row)[0], atol=1e-10)


def test_cached_kernel_parameters_follow_new_parameters():
    """The masked path caches precisions per model; assigning new parameter
    arrays (as set_params-free users do) must not reuse stale ones."""
    rng = np.random.RandomState(3)
    X = rng.randn(200, 6) @ rng.randn(6, 6)
    first = GaussianMixture(2, random_state=0).fit(X)
    other = GaussianMixture(2, random_state=1).fit(X * 2.0 + 1.0)
    Xm = X[:20].copy()
    Xm[rng.rand(*Xm.shape) < 0.4] = np.nan
    first.score_samples(Xm)  # fills the cache
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        setattr(first, name, getattr(other, name))
    np.testing.assert_allclose(first.score_samples(Xm), other.score_samples(Xm), rtol=1e-12)


def test_conditional_means_with_many_features_observed_side():
    """D = 1300 with about a third of the values observed (the observed side,
    where Sigma_mo is largest): imputations equal the closed form. Guards the
    per-thread buffers, which must not assume D is small next to the unit size."""
    rng = np.random.RandomState(11)
    D = 1300
    A = rng.randn(D, 60)
    cov = (A @ A.T / 60 + 0.5 * np.eye(D))[None]
    mean = rng.randn(1, D)
    gm = _set_params(GaussianMixture(1), np.ones(1), mean, cov, "full")
    X = mean + rng.randn(3, 60) @ A.T / np.sqrt(60)
    observed = rng.rand(*X.shape) < 0.35
    filled = gm.impute(X, observed=observed)
    for row, (x, o) in enumerate(zip(X, observed)):
        m = ~o
        expected = mean[0, m] + cov[0][np.ix_(m, o)] @ np.linalg.solve(
            cov[0][np.ix_(o, o)], x[o] - mean[0, o]
        )
        assert_allclose(filled[row, m], expected, rtol=1e-8, atol=1e-8)
