"""Persistence: GaussianMixture.save / GaussianMixture.load (.npz, no pickle)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from numpy.testing import assert_allclose, assert_array_equal

from gmmfast import GaussianMixture
from gmmfast.mixture import _gaussian
from gmmfast.utils._model_files import FORMAT_VERSION, save_npz

ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_")
#: What a file holds: one covariance representation (the factor is derived on load).
STORED = ("weights_", "means_", "covariances_")


@pytest.fixture(scope="module")
def io_data(datasets):
    return datasets["anisotropic"].X


@pytest.fixture(scope="module")
def fitted_models(io_data):
    """One fitted model per (covariance_type, dtype)."""
    models = {}
    for ct in COVARIANCE_TYPES:
        for dtype in (np.float64, np.float32):
            models[ct, dtype] = GaussianMixture(
                3, covariance_type=ct, dtype=dtype, random_state=0, n_threads=2
            ).fit(io_data)
    return models


def _read_raw(path):
    """The arrays of a saved file, and its decoded JSON header."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    return meta, arrays


def _write_raw(path, meta, arrays, **extra):
    """Write a hand-made model file (np.savez keeps its default allow_pickle=True)."""
    with open(path, "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(meta)), **arrays, **extra)


def _save_legacy(gm, path):
    """The file ``save`` wrote before the factor was derived on load: both, in float64."""
    params = gm._saved_params() | {"n_components": len(gm.weights_)}
    arrays = {name: np.asarray(getattr(gm, name), dtype=np.float64) for name in ARRAYS}
    arrays |= {
        "converged_": np.array(bool(gm.converged_)),
        "n_iter_": np.array(int(gm.n_iter_)),
        "lower_bound_": np.array(float(gm.lower_bound_)),
    }
    save_npz(path, "GaussianMixture", params, arrays)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_is_exact(tmp_path, fitted_models, io_data, covariance_type):
    """A saved and reloaded float64 model predicts exactly as the original."""
    dtype = np.float64
    gm = fitted_models[covariance_type, dtype]
    path = tmp_path / "model.npz"
    gm.save(path)
    loaded = GaussianMixture.load(path)
    assert type(loaded) is GaussianMixture
    for name in ARRAYS:
        assert_array_equal(getattr(loaded, name), getattr(gm, name), err_msg=name)
        assert getattr(loaded, name).dtype == np.float64
    assert loaded.covariance_type == covariance_type
    assert loaded.n_components == 3
    assert loaded.n_features_in_ == io_data.shape[1]
    assert np.dtype(loaded.dtype) == np.dtype(dtype)
    assert loaded.converged_ == gm.converged_
    assert loaded.n_iter_ == gm.n_iter_
    assert loaded.lower_bound_ == gm.lower_bound_
    X = np.vstack([io_data, io_data[:10] + 3.0])
    assert_array_equal(loaded.score_samples(X), gm.score_samples(X))
    assert_array_equal(loaded.predict_proba(X), gm.predict_proba(X))
    assert_array_equal(loaded.predict(X), gm.predict(X))
    assert_array_equal(loaded.precisions_, gm.precisions_)
    with np.load(path) as archive:  # one covariance representation, in float64
        assert "precisions_cholesky_" not in archive.files
        assert all(archive[name].dtype == np.float64 for name in STORED)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_round_trip_rounds_to_float32(tmp_path, fitted_models, io_data, covariance_type):
    """A float32 model's file holds its means and precision factors in float32 (what its
    kernels compute with): the loaded model holds exactly those values (in float64) and the
    covariances they imply; it scores as the original to float32 rounding and predicts the
    same components, also with missing values. Saving the loaded model again changes nothing."""
    gm = fitted_models[covariance_type, np.float32]
    path = tmp_path / "model.npz"
    gm.save(path)
    with np.load(path) as archive:
        assert "covariances_" not in archive.files
        assert archive["means_"].dtype == archive["precisions_cholesky_"].dtype == np.float32
        assert archive["weights_"].dtype == np.float64
    loaded = GaussianMixture.load(path)
    assert np.dtype(loaded.dtype) == np.float32
    for name in ARRAYS:
        assert getattr(loaded, name).dtype == np.float64, name
    assert_array_equal(loaded.weights_, gm.weights_)
    assert_array_equal(loaded.means_, gm.means_.astype(np.float32).astype(np.float64))
    factor = gm.precisions_cholesky_.astype(np.float32).astype(np.float64)
    assert_array_equal(loaded.precisions_cholesky_, factor)
    implied = _gaussian.covariances_from_precision_cholesky(factor, covariance_type)
    assert_array_equal(loaded.covariances_, implied)
    assert_allclose(loaded.covariances_, gm.covariances_, rtol=1e-4, atol=1e-12)
    X = np.vstack([io_data, io_data[:10] + 3.0])
    assert_allclose(loaded.score_samples(X), gm.score_samples(X), rtol=1e-5)
    assert_allclose(loaded.predict_proba(X), gm.predict_proba(X), atol=1e-5)
    assert_array_equal(loaded.predict(X), gm.predict(X))
    holes = X.copy()
    holes[::2, 0] = np.nan  # the missing-data kernels use the implied covariances
    assert_allclose(loaded.score_samples(holes), gm.score_samples(holes), rtol=1e-5)
    assert_array_equal(loaded.predict(holes), gm.predict(holes))
    loaded.save(tmp_path / "again.npz")
    again = GaussianMixture.load(tmp_path / "again.npz")
    for name in ARRAYS:
        assert_array_equal(getattr(again, name), getattr(loaded, name), err_msg=name)
    assert_array_equal(again.score_samples(X), loaded.score_samples(X))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_legacy_file_loads_exactly(tmp_path, fitted_models, io_data, covariance_type, dtype):
    """A file of the older format (covariances and factors, both float64) loads the model as it
    was, float32 models included, with the factor checked against the covariances."""
    gm = fitted_models[covariance_type, dtype]
    path = tmp_path / "legacy.npz"
    _save_legacy(gm, path)
    loaded = GaussianMixture.load(path)
    for name in ARRAYS:
        assert_array_equal(getattr(loaded, name), getattr(gm, name), err_msg=name)
    X = np.vstack([io_data, io_data[:10] + 3.0])
    assert_array_equal(loaded.score_samples(X), gm.score_samples(X))
    assert_array_equal(loaded.predict(X), gm.predict(X))
    meta, arrays = _read_raw(path)  # the factor is still checked: one of another model fails
    arrays["precisions_cholesky_"] = arrays["precisions_cholesky_"] * 0.5
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="disagrees"):
        GaussianMixture.load(path)


def test_factor_not_derived_from_covariances_is_kept(tmp_path, io_data):
    """A model whose factor is not the one its covariances give (max_iter=0 from
    precisions_init: the covariances are derived from the factor) is written with both, so it
    still round-trips bit for bit."""
    precisions = np.array([np.diag([1.0, 2.0, 3.0]) + 0.1] * 2)
    gm = GaussianMixture(
        2, max_iter=0, precisions_init=precisions, random_state=0, n_threads=1
    ).fit(io_data)
    derived = _gaussian.precision_cholesky_from_covariances(gm.covariances_, "full")
    assert not np.array_equal(derived, gm.precisions_cholesky_)  # the case at hand
    gm.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as archive:
        assert "precisions_cholesky_" in archive.files
    loaded = GaussianMixture.load(tmp_path / "m.npz")
    for name in ARRAYS:
        assert_array_equal(getattr(loaded, name), getattr(gm, name), err_msg=name)


def test_round_trip_keeps_hyper_parameters(tmp_path, io_data):
    """Constructor parameters (except *_init arrays) survive the round trip."""
    gm = GaussianMixture(
        2,
        covariance_type="diag",
        tol=1e-4,
        reg_covar=1e-5,
        max_iter=50,
        n_init=2,
        init_params="k-means++",
        random_state=7,
        verbose_interval=5,
        n_threads=1,
        means_init=np.zeros((2, 3)),
    ).fit(io_data)
    gm.save(tmp_path / "m.npz")
    loaded = GaussianMixture.load(tmp_path / "m.npz")
    expected = gm.get_params()
    got = loaded.get_params()
    for name in (
        "n_components",
        "covariance_type",
        "tol",
        "reg_covar",
        "max_iter",
        "n_init",
        "init_params",
        "random_state",
        "verbose_interval",
        "n_threads",
        "warm_start",
    ):
        assert got[name] == expected[name], name
    assert got["means_init"] is None  # initial guesses are not part of a fitted model


@pytest.mark.parametrize("name", ["model.npz", "model", "model.bin", "model.v1.gmm"])
@pytest.mark.parametrize("as_str", [True, False])
def test_file_name_is_exactly_the_given_path(tmp_path, fitted_models, name, as_str):
    """save writes exactly at ``path`` (no suffix appended); load reads it back."""
    gm = fitted_models["full", np.float64]
    path = tmp_path / name
    gm.save(str(path) if as_str else path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert zipfile.is_zipfile(path)
    loaded = GaussianMixture.load(str(path) if as_str else path)
    assert_array_equal(loaded.means_, gm.means_)


def test_save_overwrites_existing_file(tmp_path, fitted_models):
    """Saving over an existing file replaces it."""
    path = tmp_path / "model.npz"
    fitted_models["full", np.float64].save(path)
    fitted_models["diag", np.float64].save(path)
    assert GaussianMixture.load(path).covariance_type == "diag"


def test_file_has_versioned_json_header_and_numeric_arrays(tmp_path, fitted_models):
    """The header names the format, version and kind; every entry loads without pickle."""
    path = tmp_path / "model.npz"
    fitted_models["tied", np.float32].save(path)
    meta, arrays = _read_raw(path)
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["kind"] == "GaussianMixture"
    assert meta["params"]["covariance_type"] == "tied"
    assert meta["params"]["dtype"] == "float32"
    stored = {"weights_", "means_", "precisions_cholesky_"}  # a float32 model's: the factor
    assert set(arrays) == stored | {"converged_", "n_iter_", "lower_bound_"}
    for name in stored:
        assert arrays[name].dtype.kind in "biuf", name


# --------------------------------------------------------------------------
# Invalid files
# --------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path, fitted_models):
    """Factory: save a fitted model and return (path, meta, arrays) to corrupt."""

    def make(covariance_type="full", legacy=False):
        """``legacy``: the older format (with ``precisions_cholesky_``), on purpose."""
        path = tmp_path / f"{covariance_type}.npz"
        gm = fitted_models[covariance_type, np.float64]
        (_save_legacy if legacy else GaussianMixture.save)(gm, path)
        meta, arrays = _read_raw(path)
        assert ("precisions_cholesky_" in arrays) == legacy
        return path, meta, arrays

    return make


@pytest.mark.parametrize("legacy", [False, True], ids=["file", "legacy-file"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("missing", STORED)
def test_missing_array_is_rejected(saved, covariance_type, missing, legacy):
    """A file without one of the parameter arrays raises ValueError naming it (a legacy file
    without its covariances holds a factor alone: refused too)."""
    path, meta, arrays = saved(covariance_type, legacy)
    del arrays[missing]
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match=missing):
        GaussianMixture.load(path)


def test_missing_header_is_rejected(saved):
    """A plain npz of the right arrays but without the header is not a model file."""
    path, _, arrays = saved()
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="__meta__|not a gmmfast"):
        GaussianMixture.load(path)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("name", ARRAYS)
def test_wrong_shape_is_rejected(saved, covariance_type, name):
    """An array with an extra leading row (or a wrong rank) raises ValueError."""
    path, meta, arrays = saved(covariance_type, legacy=name == "precisions_cholesky_")
    arrays[name] = np.concatenate([arrays[name], arrays[name][:1]])
    if name == "weights_":
        arrays[name] = arrays[name] / arrays[name].sum()
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="shape|malformed"):
        GaussianMixture.load(path)


def test_scalar_means_is_rejected(saved):
    """means_ of the wrong rank raises ValueError."""
    path, meta, arrays = saved()
    arrays["means_"] = arrays["means_"].ravel()
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="means_"):
        GaussianMixture.load(path)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_negative_factor_diagonal_is_rejected(saved, covariance_type):
    """A Cholesky factor with a negative diagonal entry (not positive definite) is rejected."""
    path, meta, arrays = saved(covariance_type, legacy=True)
    u = arrays["precisions_cholesky_"]
    if covariance_type == "full":
        u[1, 2, 2] = -abs(u[1, 2, 2])
    else:
        u[0, 0] = -abs(u[0, 0])
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="positive|diagonal"):
        GaussianMixture.load(path)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_zero_factor_diagonal_is_rejected(saved, covariance_type):
    """A singular factor (zero on the diagonal) is rejected."""
    path, meta, arrays = saved(covariance_type, legacy=True)
    u = arrays["precisions_cholesky_"]
    if covariance_type == "full":
        u[0, 1, 1] = 0.0
    else:
        u[1, 1] = 0.0
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="positive|diagonal"):
        GaussianMixture.load(path)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_non_triangular_factor_is_rejected(saved, covariance_type):
    """A factor with entries below the diagonal is not an upper Cholesky factor: rejected."""
    path, meta, arrays = saved(covariance_type, legacy=True)
    u = arrays["precisions_cholesky_"]
    if covariance_type == "full":
        u[2, 2, 0] = 0.25
    else:
        u[1, 0] = 0.25
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="triangular"):
        GaussianMixture.load(path)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
@pytest.mark.parametrize("bad", [-1.0, 0.0])
def test_non_positive_diag_factor_is_rejected(saved, covariance_type, bad):
    """Diagonal/spherical precision factors must be positive."""
    path, meta, arrays = saved(covariance_type, legacy=True)
    arrays["precisions_cholesky_"].flat[1] = bad
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture.load(path)


@pytest.mark.parametrize("name", ARRAYS)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_are_rejected(saved, name, value):
    """NaN or infinity in any parameter array raises ValueError."""
    path, meta, arrays = saved("diag", legacy=name == "precisions_cholesky_")
    arrays[name].flat[0] = value
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="NaN|infinity|finite"):
        GaussianMixture.load(path)


@pytest.mark.parametrize("weights", [[0.5, 0.4, 0.3], [0.2, 0.2, 0.2], [1.2, -0.1, -0.1]])
def test_weights_not_a_distribution_are_rejected(saved, weights):
    """Weights that do not sum to 1, or are negative, raise ValueError."""
    path, meta, arrays = saved()
    arrays["weights_"] = np.array(weights)
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="weights_"):
        GaussianMixture.load(path)


@pytest.mark.parametrize("name", ["weights_", "means_", "extra"])
def test_object_array_is_rejected_without_unpickling(saved, name):
    """A pickled object array (np.savez's default allows it) raises ValueError, never unpickles."""
    path, meta, arrays = saved()
    payload = np.empty(3, dtype=object)
    payload[:] = [1, "two", {"three": 3}]
    if name == "extra":
        extra = {"extra": payload}
    else:
        arrays[name] = arrays[name].astype(object)
        extra = {}
    _write_raw(path, meta, arrays, **extra)
    with pytest.raises(ValueError, match="object"):
        GaussianMixture.load(path)


def test_object_header_is_rejected(saved):
    """A header stored as a pickled object array is rejected."""
    path, meta, arrays = saved()
    header = np.empty((), dtype=object)
    header[()] = json.dumps(meta)
    with open(path, "wb") as fh:
        np.savez(fh, __meta__=header, **arrays)
    with pytest.raises(ValueError, match="object"):
        GaussianMixture.load(path)


NOT_NPZ = {
    "text": b"this is not a model\n",
    "empty": b"",
    "random-bytes": bytes(range(256)) * 4,
    "truncated-zip": b"PK\x03\x04" + b"\x00" * 40,
    "pickle": b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.",
}


@pytest.mark.parametrize("kind", sorted(NOT_NPZ))
def test_file_that_is_not_npz_is_rejected(tmp_path, kind):
    """Arbitrary bytes, an empty file, a broken zip or a pickle raise ValueError."""
    path = tmp_path / "model.npz"
    path.write_bytes(NOT_NPZ[kind])
    with pytest.raises(ValueError):
        GaussianMixture.load(path)


def test_npy_file_is_rejected(tmp_path, fitted_models):
    """A .npy file (one array, not an npz archive) raises ValueError."""
    path = tmp_path / "means.npy"
    np.save(path, fitted_models["full", np.float64].means_)
    with pytest.raises(ValueError):
        GaussianMixture.load(path)


def test_zip_that_is_not_a_model_is_rejected(tmp_path):
    """A valid zip archive holding other files raises ValueError."""
    path = tmp_path / "model.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError):
        GaussianMixture.load(path)


def test_missing_file_raises_file_not_found(tmp_path):
    """A path that does not exist raises FileNotFoundError (an OSError), not a ValueError."""
    with pytest.raises(FileNotFoundError):
        GaussianMixture.load(tmp_path / "nope.npz")


@pytest.mark.parametrize(
    "change, match",
    [
        ({"kind": "BayesianGaussianMixture"}, "kind|BayesianGaussianMixture"),
        ({"kind": None}, "None|kind"),
        ({"format": "sklearn"}, "not a gmmfast"),
        ({"format_version": FORMAT_VERSION + 1}, "version"),
        ({"format_version": 99}, "version"),
        ({"format_version": 0}, "version"),
        ({"format_version": "1"}, "version"),
        ({"format_version": None}, "version"),
    ],
)
def test_bad_header_is_rejected(saved, change, match):
    """A wrong kind, a foreign format or an unsupported (e.g. future) version raises ValueError."""
    path, meta, arrays = saved()
    meta.update(change)
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match=match):
        GaussianMixture.load(path)


def test_header_that_is_not_json_is_rejected(saved):
    """A header that is not JSON raises ValueError."""
    path, _, arrays = saved()
    with open(path, "wb") as fh:
        np.savez(fh, __meta__=np.array("{not json"), **arrays)
    with pytest.raises(ValueError):
        GaussianMixture.load(path)


@pytest.mark.parametrize(
    "params",
    [{"covariance_type": "banana"}, {"no_such_param": 1}, {"covariance_type": "diag"}],
    ids=["unknown-covariance_type", "unknown-param", "inconsistent-covariance_type"],
)
def test_bad_params_in_header_are_rejected(saved, params):
    """Unknown parameters, or a covariance_type inconsistent with the arrays, raise ValueError."""
    path, meta, arrays = saved("full")
    meta["params"].update(params)
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError):
        GaussianMixture.load(path)


# --------------------------------------------------------------------------
# One covariance representation, in the model's dtype
# --------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_factor_alone_is_refused(saved, covariance_type):
    """A file with precisions_cholesky_ but no covariances_ is refused before any array is read,
    with a message that says what a model file holds."""
    path, meta, arrays = saved(covariance_type, legacy=True)
    del arrays["covariances_"]
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="precisions_cholesky_ without covariances_") as info:
        GaussianMixture.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_covariances_not_positive_definite_are_rejected(saved, covariance_type):
    """Without a factor in the file, the derivation itself refuses an indefinite covariance."""
    path, meta, arrays = saved(covariance_type)
    cov = arrays["covariances_"]
    first = cov[1] if covariance_type == "full" else cov
    first[0, 1] = first[1, 0] = 2.0 * np.sqrt(first[0, 0] * first[1, 1])  # |rho| = 2
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="not positive definite") as info:
        GaussianMixture.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_asymmetric_covariances_are_rejected(saved, covariance_type):
    """The derivation reads one triangle, the missing-data kernels both: asymmetry is refused."""
    path, meta, arrays = saved(covariance_type)
    cov = arrays["covariances_"]
    (cov[0] if covariance_type == "full" else cov)[0, 1] += 0.01
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match="not symmetric"):
        GaussianMixture.load(path)


def _as(name, dtype):
    def change(arrays):
        arrays[name] = arrays[name].astype(dtype)

    return change


def _factor_alone(dtype):
    def change(arrays):
        arrays["precisions_cholesky_"] = _gaussian.precision_cholesky_from_covariances(
            arrays.pop("covariances_"), "full"
        ).astype(dtype)

    return change


@pytest.mark.parametrize(
    "model_dtype, file_format, change, match",
    [
        ("float64", "file", _as("covariances_", np.float32), "'covariances_' has dtype"),
        ("float64", "file", _as("means_", np.float32), "'means_' has dtype"),
        ("float64", "file", _factor_alone(np.float32), "without covariances_"),
        ("float64", "file", _factor_alone(np.float64), "without covariances_"),
        ("float32", "file", _as("weights_", np.float32), "'weights_' has dtype"),
        ("float32", "file", _as("precisions_cholesky_", np.float64), "'precisions_cholesky_' has"),
        ("float32", "file", _as("precisions_cholesky_", np.float16), "'precisions_cholesky_' has"),
        ("float32", "file", _as("means_", np.int64), "'means_' has dtype"),
        ("float32", "file", _as("means_", np.float16), "'means_' has dtype"),
        ("float32", "legacy", _as("covariances_", np.float32), "'covariances_' has dtype"),
        ("float32", "legacy", _as("precisions_cholesky_", np.float32), "'precisions_cholesky_'"),
        ("float32", "legacy", _as("means_", np.float32), "'means_' has dtype"),
        ("float32", "stream", _as("covariances_", np.float32), "'covariances_' has dtype"),
        ("float32", "stream", _factor_alone(np.float32), "without covariances_"),
    ],
    ids=[
        "float32-covariances-of-a-float64-model",
        "float32-means-of-a-float64-model",
        "float32-factor-alone-of-a-float64-model",
        "float64-factor-alone-of-a-float64-model",
        "float32-weights",
        "float64-factor-alone",
        "float16-factor",
        "integer-means",
        "float16-means",
        "legacy-float32-covariances",
        "legacy-float32-factor",
        "legacy-float32-means",
        "stream-float32-covariances",
        "stream-float32-factor-alone",
    ],
)
def test_member_dtypes_are_checked_before_reading(
    tmp_path, io_data, model_dtype, file_format, change, match
):
    """Parameters are float64, but for the file of a float32 model without a stream, which
    holds its factor alone in float32 (and its means in float32): what save writes. Anything
    else is refused from the members' headers, naming the member and the file."""
    gm = GaussianMixture(3, dtype=np.dtype(model_dtype).type, random_state=0, n_threads=1)
    if file_format == "stream":
        gm.partial_fit(io_data)
    else:
        gm.fit(io_data)
    path = tmp_path / "m.npz"
    (_save_legacy if file_format == "legacy" else GaussianMixture.save)(gm, path)
    meta, arrays = _read_raw(path)
    assert ("stream_counters" in arrays) == (file_format == "stream")
    change(arrays)
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match=match) as info:
        GaussianMixture.load(path)
    assert str(path) in str(info.value)


def test_float32_model_with_a_stream_keeps_float64(tmp_path, io_data):
    """partial_fit's resumption after load is bit for bit: a float32 model with running
    statistics stores float64 parameters (and no factor), and resumes exactly."""
    straight = GaussianMixture(3, dtype=np.float32, random_state=0, n_threads=1)
    half = GaussianMixture(3, dtype=np.float32, random_state=0, n_threads=1)
    for gm in (straight, half):
        gm.partial_fit(io_data[:150])
    half.save(tmp_path / "m.npz")
    _, arrays = _read_raw(tmp_path / "m.npz")
    assert "precisions_cholesky_" not in arrays
    assert all(arrays[name].dtype == np.float64 for name in STORED)
    resumed = GaussianMixture.load(tmp_path / "m.npz")
    for gm in (straight, resumed):
        gm.partial_fit(io_data[150:])
    for name in ARRAYS:
        assert_array_equal(getattr(resumed, name), getattr(straight, name), err_msg=name)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_factor_beyond_float32_range_keeps_float64(tmp_path, io_data, covariance_type):
    """A float32 model whose factor does not fit in float32 (variances of 1e-80: a factor of
    1e40) is written in float64: a model never saves a file it cannot load."""
    gm = GaussianMixture(
        2, covariance_type=covariance_type, dtype=np.float32, random_state=0, n_threads=1
    ).fit(io_data)
    gm.means_ = gm.means_ * 1e-40
    gm.covariances_ = gm.covariances_ * 1e-80
    gm.precisions_cholesky_ = _gaussian.precision_cholesky_from_covariances(
        gm.covariances_, covariance_type
    )
    gm.save(tmp_path / "m.npz")
    _, arrays = _read_raw(tmp_path / "m.npz")
    assert arrays["covariances_"].dtype == np.float64
    loaded = GaussianMixture.load(tmp_path / "m.npz")
    for name in ARRAYS:
        assert_array_equal(getattr(loaded, name), getattr(gm, name), err_msg=name)


@pytest.mark.parametrize(
    "tamper, match",
    [
        (lambda u: u.__setitem__((1, 2, 0), 0.25), "triangular"),
        (lambda u: u.__setitem__((1, 2, 2), -abs(u[1, 2, 2])), "diagonal"),
        (lambda u: u.__setitem__((0, 1, 1), 0.0), "diagonal"),
        (lambda u: u.__setitem__((0, 0, 1), np.nan), "NaN"),
    ],
    ids=["not-triangular", "negative-diagonal", "zero-diagonal", "NaN"],
)
def test_float32_factor_is_checked(tmp_path, fitted_models, tamper, match):
    """A float32 model's factor (alone in its file) is checked as an older file's is."""
    path = tmp_path / "m.npz"
    fitted_models["full", np.float32].save(path)
    meta, arrays = _read_raw(path)
    tamper(arrays["precisions_cholesky_"])
    _write_raw(path, meta, arrays)
    with pytest.raises(ValueError, match=match) as info:
        GaussianMixture.load(path)
    assert str(path) in str(info.value)
