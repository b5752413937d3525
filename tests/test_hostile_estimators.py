"""Hostile and careless use of the estimators: parameter changes after fit,
warm starts on other data, absurd thread counts, data at the edge of float
range, labels and options that make no sense.

Cases that once crashed the interpreter (a kernel reading outside its
arrays) run in a child process, so a regression shows as a failed test with
the child's exit signal rather than a dead test run.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmmfast import GaussianMixture, GMMClassifier, PatchDenoiser
from gmmfast.mixture._shift_invariant import shift_images

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def run_isolated(code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter (away from the source tree); it prints one JSON
    line of results. A crash (a signal, an abort) fails the calling test with its status."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tempfile.gettempdir(),
    )
    assert proc.returncode == 0, f"child exited with {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------- changes after fit
def test_parameter_changes_after_fit_never_crash_and_never_score_with_the_wrong_model():
    """Every covariance_type change after fit (and n_components, D = 300 so a wrong
    shape would read far outside an array): a clear ValueError, or the right answer
    once the parameter is set back."""
    outcomes = run_isolated("""
        import itertools, json, warnings
        import numpy as np
        from gmmfast import GaussianMixture
        warnings.simplefilter("ignore")
        rng = np.random.RandomState(0)
        X = rng.standard_normal((400, 300))
        types = ("full", "tied", "diag", "spherical")
        out = {}
        for before, after in itertools.product(types, types):
            gm = GaussianMixture(3, covariance_type=before, max_iter=2, reg_covar=1e-2, random_state=0).fit(X)
            reference = gm.score_samples(X[:20])
            gm.set_params(covariance_type=after)
            results = []
            for call in (lambda: gm.score_samples(X[:20]), lambda: gm.predict(X[:20]),
                         lambda: gm.predict_proba(X[:20]), lambda: gm.sample(3), lambda: gm.bic(X[:20]),
                         lambda: gm.score_samples(np.where(np.arange(300) < 150, X[:20], np.nan))):
                try:
                    call()
                    results.append("ok")
                except ValueError as exc:
                    results.append("changed after fit" if "changed after fit" in str(exc) else str(exc))
            gm.set_params(covariance_type=before)
            same = bool(np.array_equal(gm.score_samples(X[:20]), reference))
            out[f"{before}->{after}"] = [results, same]
        gm = GaussianMixture(3, max_iter=2, random_state=0).fit(X)
        gm.set_params(n_components=5)
        out["n_components"] = [gm.score_samples(X[:5]).shape[0], None]
        print(json.dumps(out))
    """)
    for case, (results, same) in outcomes.items():
        if case == "n_components":
            assert results == 5  # the fitted components are used, as in scikit-learn
            continue
        before, after = case.split("->")
        expected = "ok" if before == after else "changed after fit"
        assert results == [expected] * 6, case
        assert same, case


@pytest.mark.parametrize("n_features", [3, 64, 3000])
def test_warm_start_on_data_of_another_width_is_refused(n_features):
    result = run_isolated(f"""
        import json, warnings
        import numpy as np
        from gmmfast import GaussianMixture
        warnings.simplefilter("ignore")
        rng = np.random.RandomState(0)
        gm = GaussianMixture(1, warm_start=True, max_iter=3).fit(rng.standard_normal((50, 1)))
        try:
            gm.fit(rng.standard_normal((50, {n_features})))
            print(json.dumps("fitted"))
        except ValueError as exc:
            print(json.dumps(str(exc)))
    """)
    assert "warm_start" in result and f"{n_features} features" in result


def test_warm_start_after_a_covariance_type_change_is_refused():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((100, 4))
    gm = GaussianMixture(2, warm_start=True, max_iter=3, covariance_type="diag").fit(X)
    gm.set_params(covariance_type="full")
    with pytest.raises(ValueError, match="warm_start"):
        gm.fit(X)
    gm.set_params(warm_start=False)
    assert gm.fit(X).covariances_.shape == (2, 4, 4)


# ----------------------------------------------------------------- threads
@pytest.mark.parametrize("n_threads", [1.7, "1", True, 0, None.__class__])
def test_n_threads_must_be_an_integer(n_threads):
    with pytest.raises(ValueError, match="n_threads"):
        GaussianMixture(2, n_threads=n_threads).fit(
            np.random.RandomState(0).standard_normal((20, 2))
        )


@pytest.mark.parametrize("n_threads", [5_000, 100_000, 2**40])
def test_absurd_thread_counts_are_capped_not_fatal(n_threads):
    result = run_isolated(f"""
        import json, warnings
        import numpy as np
        from gmmfast import GaussianMixture
        X = np.random.RandomState(0).standard_normal((500, 8))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gm = GaussianMixture(3, n_threads={n_threads}, random_state=0, max_iter=5).fit(X)
            score = gm.score(X)
        reference = GaussianMixture(3, n_threads=1, random_state=0, max_iter=5).fit(X).score(X)
        print(json.dumps([score, reference, [str(w.message) for w in caught]]))
    """)
    score, reference, messages = result
    assert abs(score - reference) < 1e-9 * abs(reference)
    assert any("more than the" in m for m in messages)


# --------------------------------------------------------- numeric edges
@pytest.mark.parametrize(
    "scale, dtype", [(1e155, np.float64), (1e200, np.float64), (1e30, np.float32)]
)
def test_data_whose_squares_overflow_ask_to_rescale(scale, dtype):
    X = np.random.RandomState(0).standard_normal((200, 5)) * scale
    with pytest.raises(ValueError, match="rescale"):
        GaussianMixture(2, dtype=dtype).fit(X)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exponent=st.integers(-30, 300), rows=st.integers(1, 6))
def test_posteriors_always_sum_to_one_or_are_refused(exponent, rows):
    rng = np.random.RandomState(0)
    gm = _fitted_small()
    X = rng.standard_normal((rows, 3)) * 10.0**exponent
    try:
        proba = gm.predict_proba(X)
    except ValueError as exc:
        assert "density is 0 under every component" in str(exc)
        return
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


_SMALL = {}


def _fitted_small() -> GaussianMixture:
    if "gm" not in _SMALL:
        X = np.random.RandomState(1).standard_normal((300, 3))
        _SMALL["gm"] = GaussianMixture(3, random_state=0).fit(X)
    return _SMALL["gm"]


def test_classifier_probabilities_refuse_unexplained_rows():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((200, 3))
    clf = GMMClassifier(1, random_state=0).fit(X, np.arange(200) % 2)
    with pytest.raises(ValueError, match="density is 0"):
        clf.predict_proba(X[:2] * 1e200)
    proba = clf.predict_proba(X[:5] * 1e3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


# ------------------------------------------------------ labels and options
@pytest.mark.parametrize(
    "labels",
    [
        np.array([0, None] * 50, dtype=object),
        np.array([0.0, np.nan] * 50),
        np.array([1, float("nan")] * 50, dtype=object),
    ],
)
def test_missing_labels_are_refused(labels):
    X = np.random.RandomState(0).standard_normal((100, 2))
    with pytest.raises(ValueError, match="None|NaN"):
        GMMClassifier(1).fit(X, labels)


@pytest.mark.parametrize("clip", [(1, 0), (0, 0), (0, np.nan), ("a", "b"), (0,), 5])
def test_patch_denoiser_refuses_a_clip_range_that_is_not_one(clip):
    images = np.random.RandomState(0).random((4, 10, 10))
    with pytest.raises(ValueError, match="clip"):
        PatchDenoiser(4, 2, clip=clip, max_iter=2).fit(images)


def test_shift_images_refuses_to_shift_in_place():
    images = np.random.RandomState(0).random((3, 6, 6))
    keep = images.copy()
    with pytest.raises(ValueError, match="shares memory"):
        shift_images(images, 0, 1, out=images)
    with pytest.raises(ValueError, match="shares memory"):
        shift_images(images, 1, 0, out=images[::-1])
    np.testing.assert_array_equal(images, keep)


# ----------------------------------------------------------------- Ctrl-C
@pytest.mark.parametrize("stage", ["kmeans", "first factorisation"])
def test_ctrl_c_during_a_refit_is_a_keyboard_interrupt(stage, monkeypatch):
    """Interrupted before the first EM iteration of a second fit: KeyboardInterrupt
    (once an UnboundLocalError from the handler), the model left as the first fit made it."""
    import gmmfast.mixture._gaussian_mixture as module
    import gmmfast.mixture._starts as starts

    X = np.random.RandomState(0).standard_normal((300, 4))
    gm = GaussianMixture(3, random_state=0).fit(X)
    fitted = gm.means_.copy()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if stage == "kmeans":
        monkeypatch.setattr(starts, "kmeans", interrupt)  # the k-means start
    else:
        monkeypatch.setattr(module._gaussian, "precision_cholesky_from_covariances", interrupt)
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    monkeypatch.undo()
    assert gm.means_.shape == fitted.shape


# ----------------------------------------------------- property: any input
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 6),
    k=st.integers(1, 4),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    dtype=st.sampled_from([np.float32, np.float64]),
    nan_fraction=st.sampled_from([0.0, 0.2, 0.6]),
    seed=st.integers(0, 2**16),
)
def test_fit_and_predict_give_a_result_or_a_clear_error(
    n, d, k, covariance_type, dtype, nan_fraction, seed
):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, d))
    X[rng.random_sample(X.shape) < nan_fraction] = np.nan
    gm = GaussianMixture(
        k, covariance_type=covariance_type, dtype=dtype, max_iter=5, reg_covar=1e-3, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            gm.fit(X)
        except ValueError as exc:
            assert str(exc)  # a message, never an empty error
            return
        proba = gm.predict_proba(X)
    assert proba.shape == (n, k) and np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(np.isfinite(gm.score_samples(X)))


def test_inputs_are_never_modified_by_any_estimator():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((120, 4))
    X[::7, 1] = np.nan
    y = np.arange(120) % 3
    keep_X, keep_y = X.copy(), y.copy()
    for covariance_type, model in itertools.product(COVARIANCE_TYPES, ("mixture", "classifier")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if model == "mixture":
                gm = GaussianMixture(2, covariance_type=covariance_type, max_iter=3).fit(X)
                gm.predict_proba(X), gm.impute(X)
            else:
                clf = GMMClassifier(1, covariance_type=covariance_type, max_iter=3).fit(X, y)
                clf.predict_proba(X), clf.impute(X)
        np.testing.assert_array_equal(X, keep_X)
        np.testing.assert_array_equal(y, keep_y)


@pytest.mark.parametrize("change", [{"patch_size": 3}, {"patch_size": 6}, {"remove_mean": False}])
def test_patch_denoiser_refuses_a_prior_changed_after_fit(change, tmp_path):
    images = np.random.RandomState(0).random((6, 12, 12))
    denoiser = PatchDenoiser(4, 2, max_iter=3, random_state=0).fit(images)
    reference = denoiser.denoise(images[:2], 0.1, method="map")
    denoiser.set_params(**change)
    name = next(iter(change))
    for call in (
        lambda: denoiser.denoise(images[:2], 0.1, method="map"),
        lambda: denoiser.deblur(images[:2], np.ones((3, 3)) / 9, 0.1, method="map"),
        lambda: denoiser.save(tmp_path / "d.npz"),
    ):
        with pytest.raises(ValueError, match=f"{name}=.*fitted with"):
            call()
    denoiser.set_params(**{name: {"patch_size": 4, "remove_mean": True}[name]})
    np.testing.assert_array_equal(denoiser.denoise(images[:2], 0.1, method="map"), reference)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    n_components=st.integers(1, 4),
    dtype=st.sampled_from([np.float32, np.float64]),
    nan_fraction=st.sampled_from([0.0, 0.3]),
)
def test_classifier_parameter_changes_after_fit_keep_the_fitted_model(
    covariance_type, n_components, dtype, nan_fraction
):
    """GMMClassifier predicts with the mixtures it fitted, whatever its parameters say now."""
    clf = _fitted_classifier()
    X = _CLASSIFIER["X"].copy()
    X[np.random.RandomState(1).random_sample(X.shape) < nan_fraction] = np.nan
    reference = clf.predict_proba(X)
    changed = GMMClassifier(**clf.get_params()).set_params(
        covariance_type=covariance_type, n_components=n_components, dtype=dtype
    )
    changed.__dict__.update(
        {k: v for k, v in clf.__dict__.items() if k.endswith("_") or k.startswith("_")}
    )
    # dtype is a compute setting and may change: float32 arithmetic moves probabilities by ~1e-6
    rtol, atol = (1e-4, 1e-6) if dtype == np.float32 else (1e-9, 1e-12)
    np.testing.assert_allclose(changed.predict_proba(X), reference, rtol=rtol, atol=atol)


_CLASSIFIER = {}


def _fitted_classifier() -> GMMClassifier:
    if "clf" not in _CLASSIFIER:
        rng = np.random.RandomState(0)
        _CLASSIFIER["X"] = rng.standard_normal((90, 4))
        _CLASSIFIER["clf"] = GMMClassifier(2, max_iter=5, random_state=0).fit(
            _CLASSIFIER["X"], np.arange(90) % 3
        )
    return _CLASSIFIER["clf"]


def test_a_loaded_model_also_refuses_a_covariance_type_change(tmp_path):
    """diag with K == D has the shape of tied: only the fitted type tells them apart."""
    X = np.random.RandomState(0).standard_normal((200, 3))
    GaussianMixture(3, covariance_type="diag", random_state=0).fit(X).save(tmp_path / "diag.npz")
    loaded = GaussianMixture.load(tmp_path / "diag.npz")
    loaded.set_params(covariance_type="tied")
    with pytest.raises(ValueError, match="changed after fit"):
        loaded.score(X)


def test_save_after_a_parameter_change_writes_a_file_that_loads(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((200, 3))
    gm = GaussianMixture(2, random_state=0).fit(X)
    gm.set_params(n_components=5)
    gm.save(tmp_path / "gm.npz")
    np.testing.assert_array_equal(
        GaussianMixture.load(tmp_path / "gm.npz").score_samples(X), gm.score_samples(X)
    )
    gm.set_params(covariance_type="diag")
    with pytest.raises(ValueError, match="changed after fit"):
        gm.save(tmp_path / "refused.npz")
    assert not (tmp_path / "refused.npz").exists()
    images = rng.random((6, 12, 12))
    denoiser = PatchDenoiser(4, 2, max_iter=3, random_state=0).fit(images)
    denoiser.set_params(covariance_type="diag", n_components=7)
    denoiser.save(tmp_path / "d.npz")
    reloaded = PatchDenoiser.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(
        reloaded.denoise(images[:2], 0.1, method="map"),
        denoiser.denoise(images[:2], 0.1, method="map"),
    )


def test_a_model_too_large_to_load_is_not_saved(tmp_path, monkeypatch):
    import gmmfast.utils._model_files as model_files

    gm = GaussianMixture(2, random_state=0).fit(np.random.RandomState(0).standard_normal((50, 3)))
    monkeypatch.setattr(model_files, "MAX_TOTAL_BYTES", 100)
    with pytest.raises(ValueError, match="could not be read back"):
        gm.save(tmp_path / "big.npz")
    assert not (tmp_path / "big.npz").exists()


# ------------------------------------------------ X None, named by every method
_XN = np.random.RandomState(3).randn(60, 3)
_YN = (_XN[:, 0] > 0).astype(int)
_CLASSIFIER_CALLS = {
    "fit": lambda clf: clf.fit(None, _YN),
    "partial_fit (first)": lambda clf: GMMClassifier(2).partial_fit(None, _YN, classes=[0, 1]),
    "partial_fit (fitted)": lambda clf: clf.partial_fit(None, _YN),
    "predict": lambda clf: clf.predict(None),
    "predict_proba": lambda clf: clf.predict_proba(None),
    "predict_log_proba": lambda clf: clf.predict_log_proba(None),
    "predict_joint_log_proba": lambda clf: clf.predict_joint_log_proba(None),
    "score_samples": lambda clf: clf.score_samples(None),
    "score": lambda clf: clf.score(None, _YN),
    "impute": lambda clf: clf.impute(None),
}


@pytest.mark.parametrize("method", list(_CLASSIFIER_CALLS))
def test_classifier_methods_name_X_none(method):
    clf = GMMClassifier(2, random_state=0, n_threads=1).fit(_XN, _YN)
    before = clf.predict_proba(_XN)
    with pytest.raises(ValueError, match=r"^X is None; pass the samples"):
        _CLASSIFIER_CALLS[method](clf)
    np.testing.assert_array_equal(clf.predict_proba(_XN), before)  # the model kept


_MIXTURE_METHODS = [
    "fit",
    "partial_fit",
    "fit_predict",
    "predict",
    "predict_proba",
    "score_samples",
    "score",
    "bic",
    "aic",
    "impute",
]


@pytest.mark.parametrize(
    "method, fitted",
    [(m, True) for m in _MIXTURE_METHODS] + [(m, False) for m in _MIXTURE_METHODS[:3]],
)
def test_mixture_methods_name_X_when_none(method, fitted):
    """GaussianMixture's own message comes from its array check (issue 25 report:
    it names X, though not as None)."""
    gm = GaussianMixture(2, random_state=0, n_threads=1)
    if fitted:
        gm.fit(_XN)
    with pytest.raises(ValueError, match=r"^X (is None|must hold real numbers)"):
        getattr(gm, method)(None)


# ----------------------------------------- the deep estimators: flags, architectures, devices
def _images():
    return np.random.RandomState(0).rand(64, 8, 8)


def _dense_vae(**params):
    from gmmfast.vae import ConvVAE

    return ConvVAE(2, architecture="dense", dense_sizes=(16,), epochs=1, random_state=0, **params)


def _deep(name, **params):
    pytest.importorskip("torch")
    from gmmfast.vae import ConvVAE, DeepClustering, VaDE

    if name == "ConvVAE":
        return ConvVAE(2, epochs=1, random_state=0, **params)
    if name == "VaDE":
        return VaDE(_dense_vae(), 2, epochs=1, random_state=0, **params)
    return DeepClustering(
        2, hidden_sizes=(16,), embedding_size=2, manifold=None, epochs=1, random_state=0, **params
    )


_FLAGS = [
    ("ConvVAE", "flip"),
    ("VaDE", "flip"),
    ("VaDE", "learn_weights"),
    ("DeepClustering", "flip"),
]


@pytest.mark.parametrize("value", ["no", "False", 1, 0, None, np.array([True])])
@pytest.mark.parametrize("name, flag", _FLAGS)
def test_deep_estimator_flags_must_be_bools(name, flag, value):
    """'no' would read as true: every boolean parameter is checked to be a bool at fit."""
    est = _deep(name, **{flag: value})
    with pytest.raises(ValueError, match=rf"^{flag} must be True or False"):
        est.fit(_images())
    assert not hasattr(est, "history_")


@pytest.mark.parametrize("value", [False, np.False_, np.True_])
@pytest.mark.parametrize("name, flag", [f for f in _FLAGS if f[0] != "ConvVAE"])
def test_deep_estimator_flags_take_python_and_numpy_bools(name, flag, value):
    _deep(name, **{flag: value}).fit(_images())


def test_encode_return_log_sigma_must_be_a_bool():
    vae = _dense_vae().fit(_images())
    with pytest.raises(ValueError, match="^return_log_sigma must be True or False"):
        vae.encode(_images(), return_log_sigma="no")
    assert len(vae.encode(_images(), return_log_sigma=np.True_)) == 2


@pytest.mark.parametrize(
    "architecture, param, value",
    [
        ("dense", "channels", (8, 16)),
        ("dense", "strides", (1, 2, 1, 2, 1)),
        ("dense", "hidden_units", 100),
        ("dense", "dropout", 0.0),
        ("conv", "dense_sizes", (10,)),
    ],
)
def test_parameters_of_the_other_architecture_are_refused(architecture, param, value):
    """The command refuses --channels with --architecture dense; the library does too."""
    pytest.importorskip("torch")
    from gmmfast.vae import ConvVAE

    vae = ConvVAE(2, architecture=architecture, epochs=1, **{param: value})
    with pytest.raises(ValueError, match=rf"^{param}=.* applies to architecture=") as info:
        vae.fit(_images())
    assert f"architecture={architecture!r} does not use it" in str(info.value)
    assert not hasattr(vae, "network_")


def test_defaults_of_the_other_architecture_spelled_out_are_accepted():
    pytest.importorskip("torch")
    import inspect

    from gmmfast.vae import ConvVAE
    from gmmfast.vae._conv_vae import _DEFAULTS

    signature = inspect.signature(ConvVAE.__init__).parameters
    assert {name: signature[name].default for name in _DEFAULTS} == _DEFAULTS
    _dense_vae(channels=[32, 64, 128, 128, 256], hidden_units=512, dropout=0.2).fit(_images())


@pytest.mark.parametrize("device", ["meta", "cpu:1", 3, ["cpu"], "cuda:99", "tpu"])
def test_vae_devices_are_cpu_cuda_or_mps(device):
    vae = _deep("ConvVAE", device=device)
    with pytest.raises(ValueError, match="device"):
        vae.fit(_images())
