"""Input validation: bad data, bad hyper-parameters, layouts, and no side effects."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from numpy.testing import assert_array_equal

import gmmfast
from gmmfast import GaussianMixture


@pytest.fixture(scope="module")
def fitted(datasets):
    """A small fitted model and its 2-feature training data."""
    X = datasets["separated"].X
    return GaussianMixture(3, random_state=0).fit(X), X


INFERENCE_METHODS = ("predict", "predict_proba", "score_samples", "score")


def _with(X, row, col, value):
    X = np.array(X, dtype=np.float64)
    X[row, col] = value
    return X


# --------------------------------------------------------------------------
# Bad samples
# --------------------------------------------------------------------------

BAD_X = [
    pytest.param(lambda X: _with(X, 3, 1, np.nan), "NaN", id="nan"),
    pytest.param(lambda X: _with(X, 0, 0, np.inf), "infinity", id="inf"),
    pytest.param(lambda X: _with(X, -1, 1, -np.inf), "infinity", id="-inf"),
    pytest.param(lambda X: X[:, 0], "2-dimensional", id="1d"),
    pytest.param(lambda X: X[:, :, None], "2-dimensional", id="3d"),
    pytest.param(lambda X: X.astype(object), "real numbers|dtype", id="object"),
    pytest.param(lambda X: X.astype(str), "real numbers|dtype", id="string"),
    pytest.param(lambda X: X.astype(complex), "real numbers|dtype", id="complex"),
    pytest.param(
        lambda X: X.astype(np.float32).astype(object), "real numbers|dtype", id="object32"
    ),
]


# In fit, NaN means "missing" too (exact EM; see test_missing_em.py).
BAD_X_FIT = [p for p in BAD_X if p.id != "nan"]


@pytest.mark.parametrize("make_bad, match", BAD_X_FIT)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_rejects_bad_samples(datasets, make_bad, match, dtype):
    """fit raises a ValueError naming the problem (infinity, dimensions, dtype)."""
    X = make_bad(datasets["separated"].X)
    with pytest.raises(ValueError, match=match):
        GaussianMixture(3, dtype=dtype).fit(X)


# At inference NaN means "missing" (marginalised exactly; see test_missing.py),
# so every other bad input must still be rejected.
BAD_X_INFERENCE = [p for p in BAD_X if p.id != "nan"]


@pytest.mark.parametrize("make_bad, match", BAD_X_INFERENCE)
@pytest.mark.parametrize("method", INFERENCE_METHODS)
def test_inference_rejects_bad_samples(fitted, make_bad, match, method):
    """predict/predict_proba/score_samples/score reject infinities, bad shapes and dtypes."""
    gm, X = fitted
    with pytest.raises(ValueError, match=match):
        getattr(gm, method)(make_bad(X))


@pytest.mark.parametrize("method", INFERENCE_METHODS)
def test_inference_marginalises_nan(fitted, method):
    """A NaN at inference is a missing value: the result equals that of the
    model marginalised onto the observed feature."""
    gm, X = fitted
    Xn = _with(X, 3, 1, np.nan)
    out = np.asarray(getattr(gm, method)(Xn))
    marginal = GaussianMixture(3)
    marginal.weights_ = gm.weights_
    marginal.means_ = gm.means_[:, :1]
    marginal.covariances_ = gm.covariances_[:, :1, :1]
    marginal.precisions_cholesky_ = 1.0 / np.sqrt(marginal.covariances_)
    marginal.n_features_in_ = 1
    expected_row = np.asarray(getattr(marginal, method)(X[3:4, :1]))
    if method == "score":
        rest = gm.score_samples(np.delete(X, 3, axis=0))
        expected = (rest.sum() + marginal.score_samples(X[3:4, :1])[0]) / len(X)
        np.testing.assert_allclose(out, expected, rtol=1e-12)
    else:
        np.testing.assert_allclose(out[3], expected_row[0], rtol=1e-10, atol=1e-12)
        complete = np.asarray(getattr(gm, method)(np.delete(X, 3, axis=0)))
        np.testing.assert_allclose(np.delete(out, 3, axis=0), complete, rtol=1e-12, atol=1e-14)


def test_nan_in_float32_fit_runs_missing_data_em(datasets):
    """A NaN in float32 input (float32 model) is a missing value: the fit runs exact
    EM, exactly as with an observed mask marking that entry."""
    X = datasets["separated"].X.astype(np.float32)
    X[5, 0] = np.nan
    gm = GaussianMixture(2, dtype=np.float32, random_state=0).fit(X)
    observed = ~np.isnan(X)
    ref = GaussianMixture(2, dtype=np.float32, random_state=0).fit(
        np.nan_to_num(X), observed=observed
    )
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.isfinite(getattr(gm, name)).all(), name
        assert_array_equal(getattr(gm, name), getattr(ref, name), err_msg=name)
    assert gm.lower_bound_ == ref.lower_bound_
    assert np.isfinite(gm.score_samples(X)).all()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_values_overflowing_float32_are_rejected(datasets):
    """Finite float64 values beyond float32's range become inf for a float32 model: rejected."""
    X = _with(datasets["separated"].X, 0, 0, 1e300)
    with pytest.raises(ValueError, match="infinity"):
        GaussianMixture(2, dtype=np.float32).fit(X)


@pytest.mark.filterwarnings(
    "ignore::RuntimeWarning"
)  # numpy overflow/invalid in the float64 sum check
def test_huge_finite_values_are_not_mistaken_for_infinity():
    """Finite values whose float64 sum overflows are accepted by the input check."""
    from gmmfast.utils._validation import check_array

    X = np.full((4, 2), 1e308)
    out = check_array(X)
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match="NaN"):
        check_array(np.array([[1e308, np.nan], [1e308, 1.0]]))
    with pytest.raises(ValueError, match="infinity"):
        check_array(np.array([[np.inf, -np.inf], [1.0, 1.0]]))


def test_check_array_returns_read_only_view_or_copy():
    """check_array never hands back a writable alias of the caller's array."""
    from gmmfast.utils._validation import check_array

    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    out = check_array(X)
    assert out.flags.c_contiguous and out.dtype == np.float64
    assert not (np.shares_memory(out, X) and out.flags.writeable)
    out32 = check_array(X, dtype=np.float32)
    assert out32.dtype == np.float32 and not np.shares_memory(out32, X)
    assert X.flags.writeable  # the caller's array is left writable


@pytest.mark.parametrize("n_samples", [1, 2])
def test_fewer_samples_than_components(datasets, n_samples):
    """n_samples < n_components raises a ValueError mentioning both."""
    X = datasets["separated"].X[:n_samples]
    with pytest.raises(ValueError, match="n_samples") as excinfo:
        GaussianMixture(3).fit(X)
    assert "n_components" in str(excinfo.value)


def test_zero_samples_and_zero_features(datasets):
    """Empty inputs are rejected with a ValueError."""
    with pytest.raises(ValueError):
        GaussianMixture(1).fit(np.empty((0, 2)))
    with pytest.raises(ValueError, match="feature"):
        GaussianMixture(1).fit(np.empty((10, 0)))


@pytest.mark.parametrize("method", INFERENCE_METHODS)
@pytest.mark.parametrize("n_features", [1, 3])
def test_wrong_n_features_at_inference(fitted, method, n_features):
    """Inference on a different number of features names the mismatch."""
    gm, X = fitted
    bad = np.ones((4, n_features))
    with pytest.raises(ValueError, match="features"):
        getattr(gm, method)(bad)


@pytest.mark.parametrize("method", INFERENCE_METHODS + ("sample", "bic", "aic"))
def test_not_fitted_error(datasets, method):
    """Using a model before fit raises gmmfast.NotFittedError (a ValueError and AttributeError)."""
    gm = GaussianMixture(2)
    args = () if method == "sample" else (datasets["separated"].X,)
    with pytest.raises(gmmfast.NotFittedError, match="not fitted"):
        getattr(gm, method)(*args)
    assert issubclass(gmmfast.NotFittedError, ValueError)
    assert issubclass(gmmfast.NotFittedError, AttributeError)


def test_not_fitted_error_for_precisions_and_save(tmp_path):
    """precisions_ and save also need a fitted model."""
    gm = GaussianMixture(2)
    with pytest.raises(gmmfast.NotFittedError):
        gm.precisions_
    with pytest.raises(gmmfast.NotFittedError):
        gm.save(tmp_path / "model.npz")
    assert not (tmp_path / "model.npz").exists()


# --------------------------------------------------------------------------
# Bad hyper-parameters
# --------------------------------------------------------------------------

K, D = 3, 2

BAD_PARAMS = [
    pytest.param({"reg_covar": -1e-3}, "reg_covar", id="negative-reg_covar"),
    pytest.param({"covariance_type": "banana"}, "covariance_type", id="covariance_type"),
    pytest.param({"covariance_type": "Full"}, "covariance_type", id="covariance_type-case"),
    pytest.param({"n_components": 0}, "n_components", id="n_components-0"),
    pytest.param({"n_components": -2}, "n_components", id="n_components-neg"),
    pytest.param({"n_components": 2.0}, "n_components", id="n_components-float"),
    pytest.param({"init_params": "kmeans++"}, "init_params", id="init_params"),
    pytest.param({"dtype": np.int32}, "dtype", id="dtype-int"),
    pytest.param({"dtype": np.float16}, "dtype", id="dtype-float16"),
    pytest.param({"dtype": "complex128"}, "dtype", id="dtype-complex"),
    pytest.param({"dtype": "nonsense"}, "dtype", id="dtype-str"),
    pytest.param({"tol": -1.0}, "tol", id="tol"),
    pytest.param({"max_iter": -1}, "max_iter", id="max_iter"),
    pytest.param({"max_iter": 1.5}, "max_iter", id="max_iter-float"),
    pytest.param({"n_init": 0}, "n_init", id="n_init"),
    pytest.param({"n_threads": 0}, "n_threads", id="n_threads"),
    pytest.param({"random_state": "seed"}, "random_state", id="random_state"),
    pytest.param(
        {"weights_init": np.ones(K + 1) / (K + 1)}, "weights_init", id="weights_init-shape"
    ),
    pytest.param(
        {"weights_init": np.array([0.5, 0.5, 0.5])}, "weights_init", id="weights_init-sum"
    ),
    pytest.param(
        {"weights_init": np.array([1.2, -0.1, -0.1])}, "weights_init", id="weights_init-neg"
    ),
    pytest.param({"means_init": np.zeros((K, D + 1))}, "means_init", id="means_init-shape"),
    pytest.param({"means_init": np.zeros(K * D)}, "means_init", id="means_init-1d"),
    pytest.param({"means_init": np.full((K, D), np.nan)}, "means_init", id="means_init-nan"),
    pytest.param({"means_init": np.full((K, D), "a")}, "means_init", id="means_init-str"),
    pytest.param(
        {"precisions_init": np.stack([np.eye(D)] * (K + 1))},
        "precisions_init",
        id="precisions_init-shape-full",
    ),
    pytest.param(
        {"precisions_init": np.eye(D)}, "precisions_init", id="precisions_init-2d-for-full"
    ),
    pytest.param(
        {"precisions_init": np.stack([np.array([[1.0, 2.0], [0.0, 1.0]])] * K)},
        "precisions_init",
        id="precisions_init-asymmetric",
    ),
    pytest.param(
        {"precisions_init": np.stack([np.array([[1.0, 2.0], [2.0, 1.0]])] * K)},
        "precisions_init",
        id="precisions_init-indefinite",
    ),
    pytest.param(
        {"covariance_type": "tied", "precisions_init": np.stack([np.eye(D)] * K)},
        "precisions_init",
        id="precisions_init-shape-tied",
    ),
    pytest.param(
        {"covariance_type": "diag", "precisions_init": np.ones((K, D + 1))},
        "precisions_init",
        id="precisions_init-shape-diag",
    ),
    pytest.param(
        {"covariance_type": "diag", "precisions_init": -np.ones((K, D))},
        "precisions_init",
        id="precisions_init-negative-diag",
    ),
    pytest.param(
        {"covariance_type": "spherical", "precisions_init": np.ones((K, D))},
        "precisions_init",
        id="precisions_init-shape-spherical",
    ),
    pytest.param(
        {"covariance_type": "spherical", "precisions_init": np.zeros(K)},
        "precisions_init",
        id="precisions_init-zero-spherical",
    ),
]


@pytest.mark.parametrize("params, match", BAD_PARAMS)
def test_bad_hyper_parameters_raise_at_fit(datasets, params, match):
    """Bad hyper-parameters are stored by __init__ and rejected by fit, naming the parameter."""
    gm = GaussianMixture(**{"n_components": K, **params})  # must not raise
    with pytest.raises(ValueError, match=match):
        gm.fit(datasets["separated"].X)
    assert not hasattr(gm, "means_"), "a failed fit must not leave a half-fitted model"


def test_set_params_rejects_unknown_parameter():
    """set_params with an unknown name raises ValueError."""
    with pytest.raises(ValueError, match="n_component"):
        GaussianMixture().set_params(n_component=3)


# --------------------------------------------------------------------------
# Layouts and dtypes of X
# --------------------------------------------------------------------------


def _layouts(X):
    """Equivalent versions of X (exactly representable values) in other layouts/dtypes."""
    big = np.zeros((2 * X.shape[0], 3 * X.shape[1]))
    big[::2, ::3] = X
    return {
        "C": np.ascontiguousarray(X),
        "F": np.asfortranarray(X),
        "strided": big[::2, ::3],
        "reversed": np.ascontiguousarray(X[::-1])[::-1],
        "int64": X.astype(np.int64),
        "int32": X.astype(np.int32),
        "uint8": X.astype(np.uint8),
        "list": X.tolist(),
    }


@pytest.fixture(scope="module")
def integer_blobs(datasets):
    """Blobs rounded to non-negative integers, so every dtype holds them exactly."""
    X = np.round(datasets["separated"].X * 3.0) + 40.0
    assert X.min() >= 0 and X.max() < 256
    return X


@pytest.mark.parametrize("layout", ["F", "strided", "reversed", "int64", "int32", "uint8", "list"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_layouts_give_identical_results(integer_blobs, layout, covariance_type):
    """F-ordered, strided, reversed-view, integer and list inputs equal the C float64 results."""
    X = integer_blobs
    variant = _layouts(X)[layout]
    if layout == "strided":
        assert not variant.flags.c_contiguous and not variant.flags.f_contiguous
    kw = dict(n_components=3, covariance_type=covariance_type, random_state=0, n_threads=2)
    ref = GaussianMixture(**kw).fit(X)
    got = GaussianMixture(**kw).fit(variant)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    assert got.lower_bound_ == ref.lower_bound_
    assert_array_equal(ref.score_samples(variant), ref.score_samples(X))
    assert_array_equal(ref.predict_proba(variant), ref.predict_proba(X))
    assert_array_equal(ref.predict(variant), ref.predict(X))


# --------------------------------------------------------------------------
# Inputs are never modified
# --------------------------------------------------------------------------


def _input_variants(X):
    big = np.zeros((2 * X.shape[0], 3 * X.shape[1]))
    big[::2, ::3] = X
    return {
        "C64": np.ascontiguousarray(X),
        "F64": np.asfortranarray(X),
        "strided64": big[::2, ::3],
        "C32": X.astype(np.float32),
        "F32": np.asfortranarray(X.astype(np.float32)),
        "int64": np.round(X * 10).astype(np.int64),
        "int32": np.round(X * 10).astype(np.int32),
    }


@pytest.mark.parametrize("variant", ["C64", "F64", "strided64", "C32", "F32", "int64", "int32"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_inputs_are_never_modified(datasets, variant, dtype, covariance_type):
    """fit, fit_predict and all inference methods leave X (values and flags) untouched."""
    X = _input_variants(datasets["separated"].X)[variant]
    before = X.copy()
    flags = (X.flags.writeable, X.flags.c_contiguous, X.flags.f_contiguous)
    init = {
        "means_init": np.array([[0.0, 0.0], [12.0, 0.0], [0.0, 12.0]])
        * (10 if "int" in variant else 1)
    }
    gm = GaussianMixture(3, covariance_type=covariance_type, dtype=dtype, random_state=0, **init)
    gm.fit(X)
    gm.fit_predict(X)
    for method in INFERENCE_METHODS + ("bic", "aic"):
        getattr(gm, method)(X)
    assert X.dtype == before.dtype
    assert_array_equal(X, before)
    assert (X.flags.writeable, X.flags.c_contiguous, X.flags.f_contiguous) == flags


def test_init_arrays_are_never_modified(datasets):
    """weights_init/means_init/precisions_init are copied, not written to or aliased."""
    X = datasets["separated"].X
    init = {
        "weights_init": np.full(3, 1 / 3),
        "means_init": np.array([[0.0, 0.0], [12.0, 0.0], [0.0, 12.0]]),
        "precisions_init": np.stack([np.eye(2)] * 3),
    }
    copies = {k: v.copy() for k, v in init.items()}
    gm = GaussianMixture(3, **init).fit(X)
    for k in init:
        assert_array_equal(init[k], copies[k], err_msg=k)
    assert not np.shares_memory(gm.means_, init["means_init"])
    assert not np.shares_memory(gm.weights_, init["weights_init"])


def test_fitted_model_does_not_alias_training_data(datasets):
    """Modifying X after fit does not change the model."""
    X = datasets["separated"].X.copy()
    gm = GaussianMixture(3, random_state=0).fit(X)
    means = gm.means_.copy()
    X[:] = 0.0
    assert_array_equal(gm.means_, means)
