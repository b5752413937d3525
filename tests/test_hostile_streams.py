"""Hostile and careless input, round two (in memory): masked arrays, streams
(``partial_fit`` and the stream state of model files), integer images, and fits
that fail.

Each rule is tested across the estimators and methods it covers:

* a masked entry of a NumPy masked array is a missing value: methods that
  marginalise missing values give what NaN at the masked entries gives, every
  other check refuses the masked array (the value under a mask is never data);
* a batch that observes nothing is refused by ``partial_fit`` (it would start
  a mixture from nothing), and given ``*_init`` serve a first batch of any size;
* every saved stream field is checked on load against the others and against
  the saved parameters, with the file and the field named;
* unsigned integer images are scaled as their dtype implies and restored
  images come back in it; signed integer and boolean images are refused;
* a fit that fails with an error leaves the estimator as it was.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from gmmfast import GaussianMixture, GMMClassifier, PatchDenoiser
from gmmfast.image import (
    blur,
    blur_matrix,
    estimate_noise_sigma,
    gaussian_kernel,
    psnr,
    psnr_per_image,
)
from gmmfast.mixture import k_means


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of tiny fits
        yield


def _data(n=300, d=3, seed=0):
    rng = np.random.RandomState(seed)
    X = np.concatenate([rng.randn(n // 2, d), rng.randn(n - n // 2, d) + 4.0])
    y = np.repeat([0, 1], [n // 2, n - n // 2])
    mask = rng.rand(n, d) < 0.15
    mask[:, 0] &= rng.rand(n) < 0.5  # not every row masked in feature 0
    return X, y, mask


def _masked_and_nan(X, mask, fill=1e6):
    """The masked array (with a absurd value under the mask: it must never be read)
    and the NaN array that must give the same results."""
    data = X.copy()
    data[mask] = fill
    with_nan = X.copy()
    with_nan[mask] = np.nan
    return np.ma.masked_array(data, mask=mask), with_nan


# ------------------------------------------------------------- masked arrays
MIXTURE_METHODS = ["predict", "predict_proba", "score_samples", "score", "impute", "bic"]


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_masked_fit_is_missing_data_em(covariance_type):
    X, _, mask = _data()
    Xm, Xn = _masked_and_nan(X, mask)
    a = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(Xm)
    b = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(Xn)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    labels = GaussianMixture(2, random_state=0).fit_predict(Xm)
    np.testing.assert_array_equal(labels, GaussianMixture(2, random_state=0).fit_predict(Xn))


@pytest.mark.parametrize("method", MIXTURE_METHODS)
def test_masked_inference_marginalises(method):
    X, _, mask = _data()
    gm = GaussianMixture(2, random_state=0).fit(X)
    Xm, Xn = _masked_and_nan(X, mask)
    got, want = getattr(gm, method)(Xm), getattr(gm, method)(Xn)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if method == "impute":
        assert not isinstance(got, np.ma.MaskedArray)
        assert np.isfinite(got).all() and np.abs(got).max() < 100


def test_masked_partial_fit_and_observed_combine():
    X, _, mask = _data()
    Xm, Xn = _masked_and_nan(X, mask)
    a = GaussianMixture(2, random_state=0).partial_fit(Xm[:150]).partial_fit(Xm[150:])
    b = GaussianMixture(2, random_state=0).partial_fit(Xn[:150]).partial_fit(Xn[150:])
    np.testing.assert_array_equal(a.means_, b.means_)
    # observed and a mask together: missing where either says so
    extra = np.zeros_like(mask)
    extra[::7, 1] = True
    c = GaussianMixture(2, random_state=0).fit(Xm, observed=~extra)
    Xboth = Xn.copy()
    Xboth[extra] = np.nan
    d = GaussianMixture(2, random_state=0).fit(Xboth)
    np.testing.assert_allclose(c.means_, d.means_, rtol=1e-12)


@pytest.mark.parametrize("method", ["fit", "partial_fit", "predict", "predict_proba", "score"])
def test_masked_classifier(method):
    X, y, mask = _data()
    Xm, Xn = _masked_and_nan(X, mask)
    if method in ("fit", "partial_fit"):
        kw = {"classes": [0, 1]} if method == "partial_fit" else {}
        a = getattr(GMMClassifier(1, random_state=0), method)(Xm, y, **kw)
        b = getattr(GMMClassifier(1, random_state=0), method)(Xn, y, **kw)
        for ea, eb in zip(a.estimators_, b.estimators_):
            np.testing.assert_array_equal(ea.means_, eb.means_)
        return
    clf = GMMClassifier(1, random_state=0).fit(X, y)
    args = (y,) if method == "score" else ()
    np.testing.assert_allclose(getattr(clf, method)(Xm, *args), getattr(clf, method)(Xn, *args))


def test_masked_integer_array_is_missing_data():
    X, _, mask = _data()
    Xi = np.rint(X * 10).astype(np.int64)
    a = GaussianMixture(2, random_state=0).fit(np.ma.masked_array(Xi, mask=mask))
    Xn = Xi.astype(np.float64)
    Xn[mask] = np.nan
    b = GaussianMixture(2, random_state=0).fit(Xn)
    np.testing.assert_array_equal(a.means_, b.means_)


def test_masked_infinity_under_the_mask_is_never_read():
    X, _, mask = _data()
    Xm, Xn = _masked_and_nan(X, mask, fill=np.inf)
    a = GaussianMixture(2, random_state=0).fit(Xm)
    b = GaussianMixture(2, random_state=0).fit(Xn)
    np.testing.assert_array_equal(a.means_, b.means_)
    with pytest.raises(ValueError, match="infinity"):  # an unmasked infinity still is an error
        bad = Xm.copy()
        bad[0, 0] = np.inf
        bad.mask[0, 0] = False
        GaussianMixture(2).fit(bad)


def test_masked_without_masked_entries_is_plain_data():
    X, _, _ = _data()
    a = GaussianMixture(2, random_state=0).fit(np.ma.masked_array(X, mask=False))
    b = GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    k_means(np.ma.masked_array(X, mask=False), 2, random_state=0)


def _masked_images():
    rng = np.random.RandomState(0)
    return np.ma.masked_array(rng.rand(16, 16), mask=rng.rand(16, 16) < 0.1)


REFUSING_MASKED = {
    "k_means": lambda Xm: k_means(Xm, 2, random_state=0),
    "PatchDenoiser.fit": lambda Xm: PatchDenoiser(patch_size=4, n_components=2).fit(
        _masked_images()
    ),
    "estimate_noise_sigma": lambda Xm: estimate_noise_sigma(_masked_images()),
    "blur": lambda Xm: blur(_masked_images(), gaussian_kernel(1.0)),
}


@pytest.mark.parametrize("name", sorted(REFUSING_MASKED))
def test_masked_arrays_refused_where_data_must_be_complete(name):
    X, _, mask = _data()
    Xm, _ = _masked_and_nan(X, mask)
    with pytest.raises(ValueError, match="masked array"):
        REFUSING_MASKED[name](Xm)


def test_masked_refusal_names_the_argument():
    X, _, mask = _data()
    Xm, _ = _masked_and_nan(X, mask)
    with pytest.raises(ValueError, match=r"X is a masked array with \d+ masked entries"):
        k_means(Xm, 2)
    imgs = np.ma.masked_array(np.zeros((8, 8)), mask=np.eye(8, dtype=bool))
    with pytest.raises(ValueError, match="images is a masked array"):
        estimate_noise_sigma(imgs)


# ------------------------------------------------------------------ streams
def _all_missing(n=10, d=3):
    return np.full((n, d), np.nan)


@pytest.mark.parametrize(
    "batch",
    [
        _all_missing(),
        np.ma.masked_array(np.ones((10, 3)), mask=True),
    ],
    ids=["nan", "masked"],
)
def test_partial_fit_refuses_a_batch_that_observes_nothing(batch):
    gm = GaussianMixture(2)
    with pytest.raises(ValueError, match="no observed value"):
        gm.partial_fit(batch)
    assert not hasattr(gm, "means_")  # still unfitted
    X, y, _ = _data()
    gm.partial_fit(X)
    before = gm.means_.copy()
    with pytest.raises(ValueError, match="no observed value"):
        gm.partial_fit(batch)
    np.testing.assert_array_equal(gm.means_, before)
    assert gm.n_batches_seen_ == 1
    clf = GMMClassifier(2)
    with pytest.raises(ValueError, match="no observed value"):
        clf.partial_fit(batch, np.arange(10) % 2, classes=[0, 1])
    assert not hasattr(clf, "classes_")


def test_classifier_class_waits_for_observed_rows():
    """A class whose rows so far observe nothing is held back, not started from nothing;
    the classifier then predicts from the classes that have a mixture."""
    X, y, _ = _data()
    Xb = X.copy()
    Xb[y == 1] = np.nan  # class 1 observes nothing in the first batch
    clf = GMMClassifier(2, random_state=0).partial_fit(Xb, y, classes=[0, 1])
    assert hasattr(clf.estimators_[0], "means_") and not hasattr(clf.estimators_[1], "means_")
    clf.partial_fit(X, y)  # class 1's real rows start it
    assert hasattr(clf.estimators_[1], "means_")
    assert (clf.predict(X) == y).mean() > 0.95


def test_partial_fit_with_every_init_takes_any_batch_size():
    X, _, _ = _data()
    inits = dict(
        weights_init=[0.5, 0.5],
        means_init=[[0.0] * 3, [4.0] * 3],
        precisions_init=np.array([np.eye(3)] * 2),
    )
    gm = GaussianMixture(2, **inits).partial_fit(X[:1])
    assert gm.n_batches_seen_ == 1 and gm.means_.shape == (2, 3)
    gm.partial_fit(X[1:])
    assert gm.n_iter_ == 2
    # the same for the classifier's mixtures
    gm_nan = GaussianMixture(2, **inits).partial_fit(np.array([[np.nan, 1.0, np.nan]]))
    assert np.isfinite(gm_nan.means_).all()
    with pytest.raises(ValueError, match="fewer than n_components"):
        GaussianMixture(2).partial_fit(X[:1])


def _stream(tmp_path, *, averaging=None, covariance_type="full", dtype=np.float64):
    X, _, mask = _data(400)
    X = X.copy()
    X[mask] = np.nan
    gm = GaussianMixture(
        2, covariance_type=covariance_type, averaging=averaging, random_state=0, dtype=dtype
    )
    for lo in range(0, 400, 100):
        gm.partial_fit(X[lo : lo + 100])
    path = tmp_path / "stream.npz"
    gm.save(path)
    return gm, path


def _tamper(path, out, change):
    with np.load(path, allow_pickle=False) as f:
        members = {name: f[name] for name in f.files}
    change(members)
    with open(out, "wb") as fh:
        np.savez(fh, **members)
    return out


def _set(name, value):
    def change(members):
        members[name] = np.asarray(value, dtype=members[name].dtype)

    return change


def _scale(name, factor):
    def change(members):
        members[name] = members[name] * factor

    return change


def _not_psd(members):
    s = members["stream_stats_scatter"].copy()
    s[0] = -np.eye(s.shape[-1]) * abs(s[0]).max()
    members["stream_stats_scatter"] = s


def _asymmetric(members):
    s = members["stream_stats_scatter"].copy()
    s[0, 0, 1] += 1.0
    members["stream_stats_scatter"] = s


def _shift_means(members):
    members["stream_stats_means"] = members["stream_stats_means"] + 0.5


TAMPERED = {
    "step 2**62": (_set("stream_counters", [2**62, 4, 400, 0]), "stream_counters"),
    "counters 2**62 all": (_set("stream_counters", [2**62, 2**62, 2**62, 0]), "stream_counters"),
    "batches above step": (_set("stream_counters", [4, 5, 400, 0]), "stream_counters"),
    "n_averaged without averaging": (_set("stream_counters", [4, 4, 400, 2]), "average"),
    "counts all zero": (_scale("stream_stats_counts", 0.0), "stream_stats_counts"),
    "counts 1e308": (_set("stream_stats_counts", [1e308, 1e308]), "stream_stats_counts"),
    "scatter not PSD": (_not_psd, "stream_stats_scatter"),
    "scatter asymmetric": (_asymmetric, "stream_stats_scatter"),
    "statistics moved": (_shift_means, "M-step"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_stream_state_is_refused_naming_file_and_field(tmp_path, case):
    _, path = _stream(tmp_path)
    change, field = TAMPERED[case]
    bad = _tamper(path, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError) as info:
        GaussianMixture.load(bad)
    message = str(info.value)
    assert "bad.npz" in message
    assert field in message, message


@pytest.mark.parametrize("averaging", [1, 3])
def test_tampered_averaged_counter_is_refused(tmp_path, averaging):
    gm, path = _stream(tmp_path, averaging=averaging)
    counters = np.load(path)["stream_counters"].copy()
    counters[3] += 1  # n_averaged above what the step and averaging give
    bad = _tamper(path, tmp_path / "bad.npz", _set("stream_counters", counters))
    with pytest.raises(ValueError, match="steps averaged"):
        GaussianMixture.load(bad)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("averaging", [None, 2])
def test_genuine_streams_still_load_and_resume(tmp_path, covariance_type, dtype, averaging):
    gm, path = _stream(tmp_path, averaging=averaging, covariance_type=covariance_type, dtype=dtype)
    again = GaussianMixture.load(path)
    X, _, _ = _data(100, seed=5)
    np.testing.assert_array_equal(gm.partial_fit(X).means_, again.partial_fit(X).means_)


def test_classifier_pending_rows_that_would_have_started_are_refused(tmp_path):
    X, y, _ = _data()
    clf = GMMClassifier(2, init_size=50, random_state=0)
    clf.partial_fit(X[:40], y[:40], classes=[0, 1])  # class 0's rows held back (40 < 50)
    path = tmp_path / "clf.npz"
    clf.save(path)
    GMMClassifier.load(path)

    def grow(members):
        members["class0.stream_pending"] = np.concatenate([members["class0.stream_pending"]] * 2)

    with pytest.raises(ValueError, match="class0.stream_pending"):
        GMMClassifier.load(_tamper(path, tmp_path / "bad.npz", grow))


# --------------------------------------------------------------- integer images
@pytest.fixture(scope="module")
def prior():
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[:48, :48]
    train = [np.clip(0.5 + 0.3 * np.sin(xx / (3 + i)) * np.cos(yy / 5), 0, 1) for i in range(3)]
    train = [t + 0.01 * rng.randn(*t.shape) for t in train]
    return PatchDenoiser(patch_size=4, n_components=3, max_iter=20, random_state=0).fit(
        [np.clip(t, 0, 1) for t in train]
    )


def _noisy_photo(dtype):
    rng = np.random.RandomState(1)
    yy, xx = np.mgrid[:32, :32]
    clean = np.clip(0.5 + 0.3 * np.sin(xx / 4.0) * np.cos(yy / 6.0), 0, 1)
    noisy = np.clip(clean + 0.08 * rng.randn(*clean.shape), 0, 1)
    top = np.iinfo(dtype).max
    return clean, np.rint(noisy * top).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("method", ["denoise", "deblur"])
@pytest.mark.parametrize("how", ["map", "epll"])
def test_unsigned_images_are_scaled_and_returned_in_their_dtype(prior, dtype, method, how):
    clean, noisy = _noisy_photo(dtype)
    top = np.iinfo(dtype).max
    as_float = noisy / top
    args = (gaussian_kernel(0.6),) if method == "deblur" else ()
    got = getattr(prior, method)(noisy, *args, 0.08, method=how)
    want = getattr(prior, method)(as_float, *args, 0.08, method=how)
    assert got.dtype == dtype and got.shape == noisy.shape
    np.testing.assert_array_equal(got, np.rint(want * top).astype(dtype))
    assert 0 < got.max() <= top and got.min() < top  # not a white image
    assert psnr(clean, got) > psnr(clean, noisy)  # a restoration, not a no-op
    batch = getattr(prior, method)(noisy[None], *args, 0.08, method=how)
    assert batch.dtype == dtype and batch.shape == (1, *noisy.shape)


def test_training_and_noise_estimates_read_integer_images_on_the_same_scale(prior):
    clean, noisy = _noisy_photo(np.uint8)
    assert estimate_noise_sigma(noisy) == pytest.approx(estimate_noise_sigma(noisy / 255.0))
    a = PatchDenoiser(patch_size=4, n_components=2, max_iter=5, random_state=0).fit(noisy)
    b = PatchDenoiser(patch_size=4, n_components=2, max_iter=5, random_state=0).fit(noisy / 255.0)
    np.testing.assert_allclose(a.mixture_.means_, b.mixture_.means_)
    assert blur(noisy, gaussian_kernel(1.0)).dtype == np.uint8
    np.testing.assert_allclose(
        blur(noisy, gaussian_kernel(1.0)) / 255.0,
        blur(noisy / 255.0, gaussian_kernel(1.0)),
        atol=0.5 / 255 + 1e-12,
    )


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, bool])
@pytest.mark.parametrize(
    "call",
    ["denoise", "fit", "estimate_noise_sigma", "blur", "psnr"],
)
def test_images_without_an_intensity_range_are_refused(prior, dtype, call):
    img = (np.arange(256).reshape(16, 16) % 2).astype(dtype)
    calls = {
        "denoise": lambda: prior.denoise(img, 0.1),
        "fit": lambda: PatchDenoiser(patch_size=4, n_components=2).fit(img),
        "estimate_noise_sigma": lambda: estimate_noise_sigma(img),
        "blur": lambda: blur(img, gaussian_kernel(1.0)),
        "psnr": lambda: psnr(img, np.zeros((16, 16))),
    }
    with pytest.raises(ValueError, match="boolean|signed integer"):
        calls[call]()


def test_psnr_reads_integer_images_by_their_dtype():
    clean, noisy = _noisy_photo(np.uint8)
    assert psnr(clean, noisy) == pytest.approx(psnr(clean, noisy / 255.0))
    assert psnr(noisy, noisy / 255.0) == np.inf
    with pytest.raises(ValueError, match="leave data_range"):
        psnr(noisy, noisy, data_range=255)
    assert psnr_per_image(clean[None] * 2, noisy[None] / 255.0 * 2, data_range=2.0)[0] == (
        pytest.approx(psnr(clean, noisy))
    )
    with pytest.raises(ValueError, match="data_range"):
        psnr(clean, clean, data_range=-1)


def test_inputs_are_never_modified(prior):
    _, noisy = _noisy_photo(np.uint8)
    copy = noisy.copy()
    prior.denoise(noisy, 0.08, method="map")
    np.testing.assert_array_equal(noisy, copy)
    X, _, mask = _data()
    Xm, _ = _masked_and_nan(X, mask)
    data_before, mask_before = Xm.data.copy(), Xm.mask.copy()
    GaussianMixture(2, random_state=0).fit(Xm).predict(Xm)
    np.testing.assert_array_equal(Xm.data, data_before)
    np.testing.assert_array_equal(Xm.mask, mask_before)


# ---------------------------------------------------------- fits that fail
def _attributes(est):
    return {k: v for k, v in vars(est).items()}


def _same_state(before, after):
    assert before.keys() == after.keys(), set(before) ^ set(after)
    for name, value in before.items():
        other = after[name]
        if isinstance(value, np.ndarray):
            assert other is value or np.array_equal(value, other), name
        else:
            assert other is value or other == value or name.startswith("_"), name


def _bad_data(kind, X):
    if kind == "infinity":
        bad = X.copy()
        bad[5, 1] = np.inf
        return bad
    if kind == "all missing":
        return np.full_like(X, np.nan)
    if kind == "bad parameter":
        return X
    raise AssertionError(kind)


ESTIMATORS = {
    "GaussianMixture": lambda: GaussianMixture(2, random_state=0),
    "GaussianMixture warm": lambda: GaussianMixture(2, random_state=0, warm_start=True),
    "GMMClassifier": lambda: GMMClassifier(2, random_state=0),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("kind", ["infinity", "all missing", "bad parameter"])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_failed_fit_leaves_the_estimator_as_it_was(name, kind, method):
    X, y, _ = _data()
    est = ESTIMATORS[name]()
    supervised = name == "GMMClassifier"
    extra = {"classes": [0, 1]} if (supervised and method == "partial_fit") else {}
    bad = _bad_data(kind, X)

    def fails():
        if kind == "bad parameter":
            est.set_params(reg_covar=-1.0)
        try:
            with pytest.raises(ValueError):
                args = (bad, y) if supervised else (bad,)
                getattr(est, method)(*args, **extra)
        finally:
            est.set_params(reg_covar=1e-6)

    fresh = _attributes(est)
    fails()
    _same_state(fresh, _attributes(est))  # still unfitted
    getattr(est, method)(*((X, y) if supervised else (X,)), **extra)
    fitted = _attributes(est)
    prediction = est.predict(X)
    fails()
    _same_state(fitted, _attributes(est))  # the previous fit, untouched
    np.testing.assert_array_equal(est.predict(X), prediction)


def test_fit_failing_after_initialisation_restores_the_previous_fit():
    """A factorisation that fails mid-EM (after the parameters were replaced once)."""
    X, _, _ = _data()
    gm = GaussianMixture(2, random_state=0).fit(X)
    fitted = _attributes(gm)
    degenerate = np.zeros((50, 3))
    degenerate[:, 0] = np.random.RandomState(0).randn(50)
    gm.set_params(reg_covar=0.0)
    with pytest.raises(ValueError):
        gm.fit(degenerate)
    gm.set_params(reg_covar=fitted["reg_covar"])
    _same_state(fitted, _attributes(gm))


def test_failed_denoiser_fit_keeps_the_prior(prior):
    dn = PatchDenoiser(patch_size=4, n_components=3, max_iter=5, random_state=0)
    rng = np.random.RandomState(0)
    dn.fit(rng.rand(2, 16, 16))
    fitted = _attributes(dn)
    with pytest.raises(ValueError):
        dn.fit(np.full((2, 16, 16), np.nan))
    with pytest.raises(ValueError):
        dn.fit(np.zeros((2, 16, 16), dtype=np.int32))
    _same_state(fitted, _attributes(dn))


def test_saved_stream_counters_json_untouched(tmp_path):
    """The stream members are plain arrays next to the JSON header: tampering with one
    never needs (nor passes) a pickle."""
    _, path = _stream(tmp_path)
    with np.load(path, allow_pickle=False) as f:
        assert f["stream_counters"].dtype == np.int64
        json.loads(str(f["__meta__"]))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"sigma_px": 1e9}, "sigma_px"),
        ({"sigma_px": float("inf")}, "sigma_px"),
        ({"sigma_px": 1.0, "radius": 10**9}, "radius"),
        ({"sigma_px": 1.0, "radius": -1}, "radius"),
        ({"sigma_px": 1.0, "radius": 2.5}, "radius"),
    ],
)
def test_gaussian_kernel_sizes_are_bounded(kwargs, name):
    """A typo in the blur width is refused before a gigabyte array is allocated."""
    with pytest.raises(ValueError, match=name):
        gaussian_kernel(**kwargs)
    assert gaussian_kernel(1.0, 3).shape == (7, 7)


@pytest.mark.parametrize("sigma", [1e300, 1e-300])
@pytest.mark.parametrize("method", ["map", "epll"])
def test_sigma_whose_square_overflows_is_refused(prior, sigma, method):
    """The restoration divides by sigma**2: refused naming sigma, not an OverflowError."""
    with pytest.raises(ValueError, match="sigma"):
        prior.denoise(np.full((1, 16, 16), 0.5), sigma, method=method)


# ------------------------------------------------- parameters and shapes, all estimators
PARAMETER_CASES = {
    "random_state=-1": {"random_state": -1},
    "random_state=2**64": {"random_state": 2**64},
    "random_state='0'": {"random_state": "0"},
}


def _fit_any(name, **params):
    X, y, _ = _data()
    if name == "GaussianMixture":
        return GaussianMixture(2, **params).fit(X)
    if name == "GMMClassifier":
        return GMMClassifier(1, **params).fit(X, y)
    rng = np.random.RandomState(0)
    return PatchDenoiser(patch_size=4, n_components=2, max_iter=2, **params).fit(rng.rand(16, 16))


@pytest.mark.parametrize("name", ["GaussianMixture", "GMMClassifier", "PatchDenoiser"])
@pytest.mark.parametrize("case", sorted(PARAMETER_CASES))
def test_bad_seeds_are_named_by_every_estimator(name, case):
    with pytest.raises(ValueError, match="random_state must be None, an int in"):
        _fit_any(name, **PARAMETER_CASES[case])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"warm_start": "yes"}, "warm_start must be True or False"),
        ({"warm_start": 2}, "warm_start must be True or False"),
        ({"verbose": "loud"}, "verbose must be an integer >= 0"),
        ({"verbose": -1}, "verbose must be an integer >= 0"),
        ({"n_init": 10**30}, "n_init must be <= 10000"),
    ],
)
def test_mixture_parameters_of_the_wrong_kind_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        _fit_any("GaussianMixture", **params)
    GaussianMixture(2, warm_start=np.bool_(False), verbose=True).set_params(verbose=0)


@pytest.mark.parametrize(
    "call",
    [
        lambda X: GaussianMixture(2).fit(X),
        lambda X: GaussianMixture(2).partial_fit(X),
        lambda X: GMMClassifier(1).fit(X, [0, 1, 1]),
        lambda X: k_means(X, 1),
    ],
    ids=["fit", "partial_fit", "GMMClassifier.fit", "k_means"],
)
def test_ragged_input_is_named(call):
    with pytest.raises(ValueError, match="X is ragged"):
        call([[1.0, 2.0], [1.0, 2.0, 3.0], [0.0]])


def test_sample_is_bounded_by_memory():
    gm = _fit_any("GaussianMixture")
    with pytest.raises(ValueError, match="n_samples must be <="):
        gm.sample(10**12)
    assert gm.sample(5)[0].shape == (5, 3)


# ------------------------------------------------- float images of another scale
@pytest.mark.parametrize(
    "scale, offset", [(255.0, 0.0), (-255.0, 0.0), (1.0, 100.0), (65535.0, 0.0)]
)
@pytest.mark.parametrize("method", ["denoise", "deblur", "fit"])
def test_float_images_far_outside_the_range_are_refused(prior, scale, offset, method):
    """A [0, 1] prior on 0-255 floats gave a white image without a word."""
    rng = np.random.RandomState(0)
    img = rng.rand(16, 16) * scale + offset
    with pytest.raises(ValueError, match=r"far outside the denoiser's range clip=\(0, 1\)"):
        if method == "fit":
            PatchDenoiser(patch_size=4, n_components=2).fit(img)
        elif method == "deblur":
            prior.deblur(img, gaussian_kernel(0.6), 0.1)
        else:
            prior.denoise(img, 0.1)
    # clip=None opts out: any range is restored, nothing refused
    free = PatchDenoiser(patch_size=4, n_components=2, max_iter=3, clip=None, random_state=0)
    assert free.fit(img).denoise(img, 0.1 * abs(scale), method="map").shape == img.shape


def test_noisy_images_leaving_the_range_a_little_are_accepted(prior):
    rng = np.random.RandomState(0)
    clean = rng.rand(32, 32)
    for sigma in (0.1, 0.3, 0.5):
        noisy = clean + sigma * rng.randn(32, 32)  # values well beyond [0, 1]
        assert prior.denoise(noisy, sigma, method="map").shape == noisy.shape


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: blur_matrix(gaussian_kernel(1.0), 4, "bogus"), "mode must be one of"),
        (lambda: blur_matrix(gaussian_kernel(1.0), 0), "patch_size must be in"),
        (lambda: blur_matrix(gaussian_kernel(1.0), 4.5), "patch_size must be an integer"),
        (lambda: blur_matrix([[1.0, 2.0]], 4), "odd sides"),
        (lambda: psnr(np.zeros((0, 4)), np.zeros((0, 4))), "empty"),
        (lambda: psnr(np.full((4, 4), np.nan), np.zeros((4, 4))), "clean contains NaN"),
        (lambda: psnr(np.zeros((4, 4)), np.full((4, 4), np.inf)), "restored contains NaN"),
        (
            lambda: PatchDenoiser(blur_boundary="bogus").fit(np.random.rand(16, 16)),
            "blur_boundary must be one of",
        ),
        (lambda: PatchDenoiser(cg_iter=0).fit(np.random.rand(16, 16)), "cg_iter must be >= 1"),
    ],
    ids=[
        "mode",
        "patch 0",
        "patch float",
        "kernel",
        "psnr empty",
        "psnr nan",
        "psnr inf",
        "boundary",
        "cg_iter",
    ],
)
def test_image_helpers_name_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------- partial_fit's classes: a list or an array
def _once(values):
    yield from values


@pytest.mark.parametrize(
    "classes, message",
    [
        (_once([0, 1]), "got a generator, which can be read only once: pass a list"),
        (iter([0, 1]), "got a list_iterator, which can be read only once: pass a list"),
        ({0, 1}, "got set"),
        ({0: "a", 1: "b"}, "got dict"),
        ("01", "got str"),
        (3, "got int"),
        (np.array(3), "classes must be 1-dimensional"),
        ([[0, 1]], "classes must be 1-dimensional"),
        ([0, None], "classes contains None"),
        ([0.0, np.nan], "classes contains NaN"),
    ],
)
@pytest.mark.parametrize("fitted", [False, True])
def test_partial_fit_classes_must_be_a_list_or_array(classes, message, fitted):
    X = np.random.RandomState(0).randn(40, 2)
    y = np.arange(40) % 2
    clf = GMMClassifier(2, random_state=0, n_threads=1)
    if fitted:
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=message):
        clf.partial_fit(X, y, classes=classes)


@pytest.mark.parametrize("classes", [[0, 1], (1, 0), range(2), np.array([1, 0])])
def test_partial_fit_classes_sequences_are_taken(classes):
    X = np.random.RandomState(0).randn(40, 2)
    y = np.arange(40) % 2
    clf = GMMClassifier(2, random_state=0, n_threads=1).partial_fit(X, y, classes=classes)
    assert clf.classes_.tolist() == [0, 1]
    clf.partial_fit(X, y, classes=classes)  # the same classes again


def test_vae_sample_is_bounded_by_memory():
    pytest.importorskip("torch")
    from gmmfast.datasets import load_mnist_sample
    from gmmfast.vae import ConvVAE

    X = load_mnist_sample()[0][:200]
    vae = ConvVAE(latent_dim=2, architecture="dense", epochs=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match="n_samples must be <="):
        vae.sample(10**9)
    assert vae.sample(3).shape == (3, 28, 28)
