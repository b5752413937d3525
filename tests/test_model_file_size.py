"""Model files hold one covariance representation per mixture, in the model's dtype.

A K = 10 full-covariance mixture of MNIST images was a 98 MB file (covariances and
precision factors, both float64). Now a float64 model stores its covariances alone
(the factor is derived on load, as fit derives it: bit for bit) and a float32 model
its factor alone, in float32 (a quarter of the old size). Files of the older format
still load. Measured here on the shipped MNIST sample (784 pixels).
"""

from __future__ import annotations

import copy
import os
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from gmmfast import GaussianMixture, GMMClassifier
from gmmfast.datasets import load_mnist_sample
from gmmfast.utils._model_files import save_npz

ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


@pytest.fixture(scope="module")
def mnist():
    X, y, T, t = load_mnist_sample()
    return X[:2000], y[:2000], T, t


@pytest.fixture(scope="module")
def mixtures(mnist):
    """K = 10 full-covariance mixtures of 2,000 MNIST images, float64 and float32."""
    X = mnist[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=2: not converged, on purpose (speed)
        return {
            dtype: GaussianMixture(10, max_iter=2, dtype=dtype, random_state=0, n_threads=2).fit(X)
            for dtype in (np.float64, np.float32)
        }


def _save_legacy(gm, path):
    """What save wrote before: covariances and factors, everything float64."""
    params = gm._saved_params() | {"n_components": len(gm.weights_)}
    arrays = {name: np.asarray(getattr(gm, name), dtype=np.float64) for name in ARRAYS}
    arrays |= {
        "converged_": np.array(bool(gm.converged_)),
        "n_iter_": np.array(int(gm.n_iter_)),
        "lower_bound_": np.array(float(gm.lower_bound_)),
    }
    save_npz(path, "GaussianMixture", params, arrays)


def _members(path):
    with np.load(path) as archive:
        return {name: archive[name].dtype for name in archive.files}


def test_float64_model_round_trips_bit_for_bit(mixtures, mnist, tmp_path):
    """All four parameter arrays, score_samples, predict_proba and predict, exactly; the file
    holds the covariances alone."""
    gm = mixtures[np.float64]
    gm.save(tmp_path / "m.npz")
    members = _members(tmp_path / "m.npz")
    assert "precisions_cholesky_" not in members and members["covariances_"] == np.float64
    loaded = GaussianMixture.load(tmp_path / "m.npz")
    for name in ARRAYS:
        assert_array_equal(getattr(loaded, name), getattr(gm, name), err_msg=name)
    T = mnist[2]
    assert_array_equal(loaded.score_samples(T), gm.score_samples(T))
    assert_array_equal(loaded.predict_proba(T), gm.predict_proba(T))
    assert_array_equal(loaded.predict(T), gm.predict(T))


def test_file_sizes(mixtures, tmp_path):
    """A float64 file is half the older two-member size, a float32 file a quarter."""
    sizes = {}
    for dtype, gm in mixtures.items():
        _save_legacy(gm, tmp_path / "legacy.npz")
        gm.save(tmp_path / "new.npz")
        legacy, new = (os.path.getsize(tmp_path / n) for n in ("legacy.npz", "new.npz"))
        sizes[np.dtype(dtype).name] = (legacy, new)
    legacy64, new64 = sizes["float64"]
    legacy32, new32 = sizes["float32"]
    assert legacy64 == legacy32 > 49_000_000  # 10 x 784 x 784 x 8 bytes, twice
    assert 0.49 < new64 / legacy64 < 0.51, sizes
    assert 0.245 < new32 / legacy32 < 0.255, sizes
    print("file sizes (bytes), older format -> now:", sizes)


def test_float32_rounding_changes_scores_by_float32_noise(mixtures, mnist, tmp_path):
    """The float32 file rounds the factor the kernels use anyway: scores move by about what
    float32 arithmetic does (measured 2e-6 relative here), no predicted label changes."""
    gm = mixtures[np.float32]
    gm.save(tmp_path / "m.npz")
    members = _members(tmp_path / "m.npz")
    assert "covariances_" not in members
    assert members["precisions_cholesky_"] == members["means_"] == np.float32
    loaded = GaussianMixture.load(tmp_path / "m.npz")
    T = mnist[2]
    before, after = gm.score_samples(T), loaded.score_samples(T)
    change = np.max(np.abs(after - before) / np.abs(before))
    assert change < 2e-5, change
    assert_array_equal(loaded.predict(T), gm.predict(T))
    # With missing values the kernels use the covariances the factor implies, which float32
    # moves by cond(Sigma) times its epsilon (1e6 here): so does float32 arithmetic itself,
    # measured as the float32 model against the same parameters computed in float64.
    holes = T[:200].astype(np.float64)
    holes[:, ::2] = np.nan
    in_float64 = copy.deepcopy(gm).set_params(dtype=np.float64).score_samples(holes)
    before, after = gm.score_samples(holes), loaded.score_samples(holes)
    change_missing = np.max(np.abs(after - before) / np.abs(before))
    float32_noise = np.max(np.abs(before - in_float64) / np.abs(in_float64))
    assert change_missing < 4 * float32_noise, (change_missing, float32_noise)
    assert_array_equal(loaded.predict(holes), gm.predict(holes))
    print(
        f"float32 file: max relative change of score_samples {change:.2g} "
        f"({change_missing:.2g} with half the pixels missing, where float32 itself: "
        f"{float32_noise:.2g})"
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_legacy_files_load(mixtures, mnist, tmp_path, dtype):
    """Files of the older format (both members, float64) load the model exactly."""
    gm = mixtures[dtype]
    _save_legacy(gm, tmp_path / "legacy.npz")
    loaded = GaussianMixture.load(tmp_path / "legacy.npz")
    for name in ARRAYS:
        assert_array_equal(getattr(loaded, name), getattr(gm, name), err_msg=name)
    assert_array_equal(loaded.score_samples(mnist[2]), gm.score_samples(mnist[2]))


def test_float32_classifier_file(mnist, tmp_path):
    """A float32 classifier stores each class's factor alone in float32 (a quarter of the older
    file) and predicts the same labels after load; its older-format file loads exactly."""
    X, y, T, _ = mnist
    clf = GMMClassifier(1, reg_covar=0.05, dtype=np.float32, random_state=0, n_threads=2)
    clf.fit(X, y)
    clf.save(tmp_path / "c.npz")
    members = _members(tmp_path / "c.npz")
    assert not any(name.endswith("covariances_") for name in members)
    assert members["class0.precisions_cholesky_"] == np.float32
    loaded = GMMClassifier.load(tmp_path / "c.npz")
    assert_array_equal(loaded.predict(T), clf.predict(T))
    params, arrays = clf._state()
    for c, est in enumerate(clf.estimators_):
        arrays |= {f"class{c}.{n}": np.asarray(getattr(est, n), np.float64) for n in ARRAYS}
    save_npz(tmp_path / "legacy.npz", "GMMClassifier", params, arrays)
    ratio = os.path.getsize(tmp_path / "c.npz") / os.path.getsize(tmp_path / "legacy.npz")
    assert 0.245 < ratio < 0.255, ratio
    legacy = GMMClassifier.load(tmp_path / "legacy.npz")
    for est, ref in zip(legacy.estimators_, clf.estimators_):
        for name in ARRAYS:
            assert_array_equal(getattr(est, name), getattr(ref, name), err_msg=name)
    assert_array_equal(legacy.predict_proba(T), clf.predict_proba(T))


def test_float32_classifier_stream_resumes_bit_for_bit(tmp_path):
    """A float32 classifier in a partial_fit stream keeps float64 parameters in its file (the
    classes the stream has not stepped since fit included), so the stream resumes exactly."""
    rng = np.random.RandomState(0)
    X = np.vstack([rng.randn(60, 5), rng.randn(60, 5) + 3, rng.randn(60, 5) - 3])
    y = np.repeat([0, 1, 2], 60)
    order = rng.permutation(len(X))
    X, y = X[order], y[order]

    def model():
        return GMMClassifier(2, dtype=np.float32, random_state=0, n_threads=1).fit(X[:90], y[:90])

    straight, half = model(), model()
    for clf in (straight, half):
        clf.partial_fit(X[90:120][y[90:120] != 2], y[90:120][y[90:120] != 2])  # class 2 not stepped
    half.save(tmp_path / "s.npz")
    members = _members(tmp_path / "s.npz")
    parameters = {n: d for n, d in members.items() if n.split(".")[-1] in ARRAYS}
    assert len(parameters) == 9 and all(d == np.float64 for d in parameters.values()), members
    resumed = GMMClassifier.load(tmp_path / "s.npz")
    for clf in (straight, resumed):
        clf.partial_fit(X[120:], y[120:])
    for est, ref in zip(resumed.estimators_, straight.estimators_):
        for name in ARRAYS:
            assert_array_equal(getattr(est, name), getattr(ref, name), err_msg=name)
