"""ShiftInvariantClassifier: shift-marginalised class likelihoods on images."""

import numpy as np
import pytest
from scipy.special import logsumexp

from gmmfast import GMMClassifier, ShiftInvariantClassifier
from gmmfast.mixture import ONE_PIXEL_SHIFTS, shift_images

SHAPE = (6, 5)


@pytest.fixture(scope="module")
def data():
    """Two classes of 6 x 5 images: a vertical and a horizontal bar, jittered."""
    rng = np.random.RandomState(0)
    bars = np.zeros((2, *SHAPE))
    bars[0, :, 2] = 1.0
    bars[1, 3, :] = 1.0
    y = np.repeat([3, 7], 60)
    images = bars[(y == 7).astype(int)] + 0.1 * rng.randn(len(y), *SHAPE)
    return images.reshape(len(y), -1), y


def base():
    return GMMClassifier(2, reg_covar=0.02, random_state=0)


def manual_shift(images, dy, dx, fill):
    """np.roll, then the wrapped-around rows/columns set to fill."""
    out = np.roll(images, (dy, dx), axis=(1, 2)).astype(float)
    if dy > 0:
        out[:, :dy] = fill
    elif dy < 0:
        out[:, dy:] = fill
    if dx > 0:
        out[:, :, :dx] = fill
    elif dx < 0:
        out[:, :, dx:] = fill
    return out


@pytest.mark.parametrize("dy, dx", [(0, 0), (1, 0), (-1, 0), (0, 2), (2, -3), (-5, 4), (6, 0)])
@pytest.mark.parametrize("fill", [0.0, 0.5, np.nan])
def test_shift_images_matches_roll_with_filled_border(dy, dx, fill):
    images = np.random.RandomState(1).rand(3, *SHAPE)
    np.testing.assert_array_equal(
        shift_images(images, dy, dx, fill), manual_shift(images, dy, dx, fill)
    )


def test_shift_images_writes_into_out_and_checks_its_shape():
    images = np.random.RandomState(1).rand(3, *SHAPE)
    out = np.full((3, *SHAPE), 7.0)
    assert shift_images(images, 1, -2, 0.5, out=out) is out
    np.testing.assert_array_equal(out, manual_shift(images, 1, -2, 0.5))
    with pytest.raises(ValueError, match="out has shape"):
        shift_images(images, 1, 0, out=np.empty((2, *SHAPE)))


def test_single_unshifted_translation_is_the_plain_classifier(data):
    X, y = data
    plain = base().fit(X, y)
    model = ShiftInvariantClassifier(base(), shifts=[(0, 0)], image_shape=SHAPE).fit(X, y)
    np.testing.assert_allclose(
        model.predict_joint_log_proba(X), plain.predict_joint_log_proba(X), rtol=1e-12
    )
    np.testing.assert_allclose(
        model.predict_log_proba(X), plain.predict_log_proba(X), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_array_equal(model.predict(X), plain.predict(X))


def test_joint_is_the_average_over_shifted_images(data):
    X, y = data
    model = ShiftInvariantClassifier(base(), image_shape=SHAPE, augment=False).fit(X, y)
    images = X.reshape(-1, *SHAPE)
    per_shift = [
        model.classifier_.predict_joint_log_proba(
            manual_shift(images, dy, dx, 0.0).reshape(len(X), -1)
        )
        for dy, dx in ONE_PIXEL_SHIFTS
    ]
    expected = logsumexp(per_shift, axis=0) - np.log(5)
    np.testing.assert_allclose(model.predict_joint_log_proba(X), expected, rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        model.predict_log_proba(X), expected - logsumexp(expected, axis=1, keepdims=True)
    )


def test_augment_trains_on_every_shifted_copy(data):
    X, y = data
    shifts = [(0, 0), (1, 0), (0, -1)]
    model = ShiftInvariantClassifier(base(), image_shape=SHAPE, shifts=shifts).fit(X, y)
    images = X.reshape(-1, *SHAPE)
    X_aug = np.concatenate(
        [manual_shift(images, dy, dx, 0.0).reshape(len(X), -1) for dy, dx in shifts]
    )
    reference = base().fit(X_aug, np.tile(y, 3))
    for ours, theirs in zip(model.classifier_.estimators_, reference.estimators_):
        np.testing.assert_allclose(ours.means_, theirs.means_, rtol=1e-12)
        np.testing.assert_allclose(ours.covariances_, theirs.covariances_, rtol=1e-12)
    assert (
        model.classes_.tolist() == [3, 7]
        and model.image_shape_ == SHAPE
        and model.n_features_in_ == 30
    )


def test_shift_invariance_helps_on_shifted_test_images(data):
    X, y = data
    shifted = manual_shift(X.reshape(-1, *SHAPE), 0, 1, 0.0).reshape(len(X), -1)
    plain = base().fit(X, y)
    model = ShiftInvariantClassifier(base(), image_shape=SHAPE).fit(X, y)
    assert model.score(shifted, y) == 1.0
    assert plain.score(shifted, y) < 0.9


def test_missing_pixels_move_with_the_image(data):
    X, y = data
    model = ShiftInvariantClassifier(base(), image_shape=SHAPE, augment=False).fit(X, y)
    rng = np.random.RandomState(2)
    observed = rng.rand(*X.shape) > 0.4
    X_nan = np.where(observed, X, np.nan)
    before = X_nan.copy()
    joint = model.predict_joint_log_proba(X_nan)
    np.testing.assert_array_equal(X_nan, before)  # input untouched
    np.testing.assert_allclose(
        model.predict_joint_log_proba(X, observed=observed), joint, rtol=1e-12
    )
    images = X_nan.reshape(-1, *SHAPE)
    per_shift = [
        model.classifier_.predict_joint_log_proba(
            manual_shift(images, dy, dx, 0.0).reshape(len(X), -1)
        )
        for dy, dx in ONE_PIXEL_SHIFTS
    ]
    np.testing.assert_allclose(joint, logsumexp(per_shift, axis=0) - np.log(5), rtol=1e-10)


def test_nan_fill_marginalises_the_border(data):
    X, y = data
    model = ShiftInvariantClassifier(base(), image_shape=SHAPE, augment=False, fill=np.nan).fit(
        X, y
    )
    images = X.reshape(-1, *SHAPE)
    per_shift = [
        model.classifier_.predict_joint_log_proba(
            manual_shift(images, dy, dx, np.nan).reshape(len(X), -1)
        )
        for dy, dx in ONE_PIXEL_SHIFTS
    ]
    np.testing.assert_allclose(
        model.predict_joint_log_proba(X), logsumexp(per_shift, axis=0) - np.log(5), rtol=1e-10
    )


def test_augmented_fit_with_missing_pixels_runs_missing_data_em(data):
    X, y = data
    X_nan = X.copy()
    X_nan[::7, ::3] = np.nan
    model = ShiftInvariantClassifier(base(), image_shape=SHAPE, shifts=[(0, 0), (1, 0)]).fit(
        X_nan, y
    )
    assert model.score(X, y) == 1.0


def test_augmented_fit_with_missing_pixels_and_missing_border_is_em_on_the_shifted_copies(data):
    """Missing pixels move with each copy, the shifted-in border is missing too (fill NaN)."""
    X, y = data
    X_nan = X.copy()
    X_nan[::5, ::4] = np.nan
    shifts = [(0, 0), (-1, 0), (0, 1)]
    model = ShiftInvariantClassifier(base(), image_shape=SHAPE, shifts=shifts, fill=np.nan).fit(
        X_nan, y
    )
    images = X_nan.reshape(-1, *SHAPE)
    X_aug = np.concatenate(
        [manual_shift(images, dy, dx, np.nan).reshape(len(X), -1) for dy, dx in shifts]
    )
    reference = base().fit(X_aug, np.tile(y, len(shifts)))
    for ours, theirs in zip(model.classifier_.estimators_, reference.estimators_):
        np.testing.assert_allclose(ours.means_, theirs.means_, rtol=1e-10)
        np.testing.assert_allclose(ours.covariances_, theirs.covariances_, rtol=1e-10)


def test_square_images_by_default_and_save_load(data, tmp_path):
    X, y = data
    square = np.pad(X.reshape(-1, *SHAPE), ((0, 0), (0, 0), (0, 1))).reshape(len(X), 36)
    model = ShiftInvariantClassifier(base(), shifts=[(0, 0), (0, 1)], fill=np.nan).fit(square, y)
    assert model.image_shape_ == (6, 6)
    model.save(tmp_path / "m.npz")
    loaded = ShiftInvariantClassifier.load(tmp_path / "m.npz")
    np.testing.assert_allclose(
        loaded.predict_joint_log_proba(square), model.predict_joint_log_proba(square), rtol=1e-12
    )
    assert (
        loaded.shifts_.tolist() == [[0, 0], [0, 1]]
        and np.isnan(loaded.fill)
        and loaded.image_shape_ == (6, 6)
    )
    with pytest.raises(ValueError, match="holds a 'ShiftInvariantClassifier' model"):
        GMMClassifier.load(tmp_path / "m.npz")
    model.classifier_.save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="expected 'ShiftInvariantClassifier'"):
        ShiftInvariantClassifier.load(tmp_path / "plain.npz")


def test_get_set_params_and_unfitted_classifier_untouched(data):
    X, y = data
    template = base()
    model = ShiftInvariantClassifier(template, image_shape=SHAPE, augment=False)
    assert model.get_params()["augment"] is False
    model.set_params(augment=True).fit(X, y)
    assert not hasattr(template, "estimators_") and model.classifier_ is not template


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_shape=(5, 5)), "does not hold 30 features"),
        (dict(image_shape=None), "not a square image"),
        (dict(image_shape=SHAPE, shifts=[(0, 0), (0, 0)]), "repeated"),
        (dict(image_shape=SHAPE, shifts=[(0, 5)]), "out of view"),
        (dict(image_shape=SHAPE, shifts=[(0.5, 0)]), "integer pairs"),
        (dict(image_shape=SHAPE, shifts=[]), "integer pairs"),
        (dict(image_shape=SHAPE, fill=np.inf), "fill must be"),
        (dict(classifier="gmm", image_shape=SHAPE), "must be a GMMClassifier"),
    ],
)
def test_bad_parameters(data, kwargs, message):
    X, y = data
    with pytest.raises(ValueError, match=message):
        ShiftInvariantClassifier(**{"classifier": base(), **kwargs}).fit(X, y)


def test_bad_input(data):
    X, y = data
    model = ShiftInvariantClassifier(base(), image_shape=SHAPE, augment=False).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :-1])
    with pytest.raises(ValueError, match="infinity"):
        model.predict(np.where(X > 1.05, np.inf, X))
    with pytest.raises(ValueError, match="labels but X has"):
        ShiftInvariantClassifier(base(), image_shape=SHAPE).fit(X, y[:-1])


def test_from_fitted_marginalises_without_refitting(data):
    X, y = data
    plain = base().fit(X, y)
    wrapped = ShiftInvariantClassifier.from_fitted(plain, image_shape=SHAPE)
    fitted = ShiftInvariantClassifier(base(), image_shape=SHAPE, augment=False).fit(X, y)
    assert wrapped.classifier_ is plain and wrapped.augment is False
    np.testing.assert_allclose(
        wrapped.predict_joint_log_proba(X), fitted.predict_joint_log_proba(X), rtol=1e-12
    )
    with pytest.raises(ValueError, match="not fitted|fit"):
        ShiftInvariantClassifier.from_fitted(base())
    with pytest.raises(ValueError, match="does not hold"):
        ShiftInvariantClassifier.from_fitted(plain, image_shape=(3, 3))


def test_load_rejects_bad_parameter_values(data, tmp_path):
    from gmmfast.utils._model_files import load_npz, save_npz

    X, y = data
    ShiftInvariantClassifier(base(), image_shape=SHAPE, augment=False).fit(X, y).save(
        tmp_path / "m.npz"
    )
    params, arrays = load_npz(tmp_path / "m.npz", "ShiftInvariantClassifier")
    for change, message in [
        ({"shifts": [[0, 9]]}, "out of view"),
        ({"image_shape": [2, 2]}, "does not hold"),
        ({"classifier": None}, "no classifier"),
        ({"fill": "x"}, "parameters: could not convert"),
        ({"shifts": 3}, r"parameters \("),
    ]:
        save_npz(tmp_path / "bad.npz", "ShiftInvariantClassifier", {**params, **change}, arrays)
        with pytest.raises(ValueError, match=message):
            ShiftInvariantClassifier.load(tmp_path / "bad.npz")
