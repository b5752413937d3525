"""Shift-invariant classification of images with a class-conditional GMM.

A digit written one pixel higher is the same digit, but a full-covariance
Gaussian in pixel space sees a different point. :class:`ShiftInvariantClassifier`
makes the shift a latent variable of the generative model: the class
likelihood is the average over a small set of translations T_s,

    p(x | c) = (1 / S) * sum_s p(T_s x | c),

each term computed by the wrapped :class:`~gmmfast.GMMClassifier` (so
missing pixels are still marginalised exactly, the mask moving with the
image). Optionally the classifier is also trained on the shifted copies
(``augment=True``), so each class's mixture sees the same translations it
is asked to explain.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..utils._estimator import BaseEstimator, check_is_fitted, restores_state_on_error
from ..utils._model_files import load_npz, save_npz
from ..utils._threads import limits_blas
from ..utils._validation import check_compute_dtype
from . import _gaussian
from ._classifier import GMMClassifier
from ._classifier import _expected_members as _classifier_members
from ._labels import check_labels
from ._missing import check_possibly_missing

#: No shift and the four one-pixel shifts (down, up, right, left).
ONE_PIXEL_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift_images(
    images: np.ndarray, dy: int, dx: int, fill: float = 0.0, out: np.ndarray | None = None
) -> np.ndarray:
    """Translate a stack of images by ``dy`` rows and ``dx`` columns.

    Parameters
    ----------
    images : ndarray of shape (n, H, W)
    dy, dx : int
        Positive moves content down / right. Pixels shifted in from outside
        take ``fill`` (NaN marks them missing).
    fill : float, default=0.0
    out : ndarray of shape (n, H, W), optional
        Where to write the result (e.g. a slice of a larger training set);
        it must not overlap ``images``.

    Returns
    -------
    ndarray of shape (n, H, W): ``out`` when given, else a new array of the
    input's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast.mixture import shift_images
    >>> image = np.arange(9.0).reshape(1, 3, 3)
    >>> shift_images(image, 1, 0)[0]  # down one row; the new top row is the fill
    array([[0., 0., 0.],
           [0., 1., 2.],
           [3., 4., 5.]])
    """
    if not isinstance(images, np.ndarray) or images.ndim != 3:
        raise ValueError(
            f"images must be an array of shape (n, H, W); got {type(images).__name__} of shape "
            f"{np.shape(images)}."
        )
    for name, value in (("dy", dy), ("dx", dx)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer; got {value!r}.")
    n, height, width = images.shape
    if out is None:
        out = np.full_like(images, fill)
    else:
        if out.shape != images.shape:
            raise ValueError(f"out has shape {out.shape}; the images have shape {images.shape}.")
        if np.shares_memory(out, images):
            raise ValueError(
                "out shares memory with the images: shifting in place would overwrite "
                "pixels before they are read; pass a separate array."
            )
        out[...] = fill
    if abs(dy) >= height or abs(dx) >= width:
        return out
    rows_to, rows_from = _span(dy, height)
    cols_to, cols_from = _span(dx, width)
    out[:, rows_to, cols_to] = images[:, rows_from, cols_from]
    return out


def _span(step: int, size: int) -> tuple[slice, slice]:
    """(destination, source) slices of a 1-d shift by ``step``."""
    if step >= 0:
        return slice(step, size), slice(0, size - step)
    return slice(0, size + step), slice(-step, size)


class ShiftInvariantClassifier(BaseEstimator):
    """Class-conditional GMM classifier whose likelihood averages over image shifts.

    Parameters
    ----------
    classifier : GMMClassifier or None, default=None
        The (unfitted) classifier to train; None uses ``GMMClassifier()``.
        It is cloned, never fitted in place.
    image_shape : (int, int) or None, default=None
        Height and width of the images, whose pixels are the features in
        row-major order. None takes square images.
    shifts : sequence of (int, int), default=ONE_PIXEL_SHIFTS
        The translations (rows, columns) averaged over, with equal prior
        weight; they should include (0, 0).
    augment : bool, default=True
        Also train on every image shifted by every translation in
        ``shifts`` (S times the data and fitting time).
    fill : float, default=0.0
        Value of the pixels shifted in from outside the image (the
        background of the data). NaN treats them as missing, marginalised
        exactly (slower: every shifted image then takes the missing-data path).

    Attributes
    ----------
    classifier_ : GMMClassifier
        The fitted classifier.
    classes_ : ndarray of shape (n_classes,)
    image_shape_ : tuple of int
    shifts_ : ndarray of shape (n_shifts, 2)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast import GMMClassifier
    >>> from gmmfast import ShiftInvariantClassifier
    >>> rng = np.random.RandomState(0)
    >>> bars = np.zeros((2, 6, 6)); bars[0, :, 2] = 1; bars[1, 2, :] = 1
    >>> y = np.repeat([0, 1], 40)
    >>> X = (bars[y] + 0.05 * rng.randn(80, 6, 6)).reshape(80, 36)
    >>> clf = ShiftInvariantClassifier(GMMClassifier(reg_covar=0.01, random_state=0)).fit(X, y)
    >>> clf.predict(np.roll(bars, 1, axis=2).reshape(2, 36)).tolist()
    [0, 1]
    """

    _MODEL_KIND = "ShiftInvariantClassifier"
    _estimator_type = "classifier"
    _allow_nan = True  # missing values are marginalised exactly

    def __init__(
        self,
        classifier: GMMClassifier | None = None,
        *,
        image_shape: tuple[int, int] | None = None,
        shifts: Sequence[tuple[int, int]] = ONE_PIXEL_SHIFTS,
        augment: bool = True,
        fill: float = 0.0,
    ) -> None:
        self.classifier = classifier
        self.image_shape = image_shape
        self.shifts = shifts
        self.augment = augment
        self.fill = fill

    # ------------------------------------------------------------ checks
    def _check_parameters(self, n_features: int) -> tuple[tuple[int, int], np.ndarray]:
        if self.image_shape is None:
            side = math.isqrt(n_features)
            if side * side != n_features:
                raise ValueError(
                    f"{n_features} features are not a square image; give image_shape=(height, width)."
                )
            shape = (side, side)
        else:
            shape = tuple(int(v) for v in self.image_shape)
            if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] != n_features:
                raise ValueError(
                    f"image_shape {self.image_shape!r} does not hold {n_features} features."
                )
        shifts = np.asarray(self.shifts)
        if (
            shifts.ndim != 2
            or shifts.shape[1] != 2
            or len(shifts) == 0
            or shifts.dtype.kind not in "iu"
        ):
            raise ValueError(
                f"shifts must be a non-empty sequence of (rows, columns) integer pairs; got {self.shifts!r}."
            )
        if len({tuple(s) for s in shifts.tolist()}) != len(shifts):
            raise ValueError(f"shifts has repeated translations: {self.shifts!r}.")
        if np.any(np.abs(shifts) >= np.array(shape)):
            raise ValueError(f"shifts {self.shifts!r} move images of shape {shape} out of view.")
        if not isinstance(self.fill, (int, float, np.floating, np.integer)) or np.isinf(self.fill):
            raise ValueError(f"fill must be a finite number or NaN; got {self.fill!r}.")
        return shape, shifts.astype(np.int64)

    def _shifted(
        self,
        filled: np.ndarray,
        observed: np.ndarray | None,
        shape: tuple[int, int],
        dy: int,
        dx: int,
        out: np.ndarray | None = None,
    ):
        """One translation of validated data: (X, observed mask or None).

        ``observed`` is None for complete data; then no mask is built unless
        the shifted-in border is itself missing (``fill`` NaN). The images go
        to ``out`` (rows of filled's shape) when given."""
        n = len(filled)
        border_missing = bool(np.isnan(self.fill))
        images = shift_images(
            filled.reshape(n, *shape),
            dy,
            dx,
            0.0 if border_missing else float(self.fill),
            out=None if out is None else out.reshape(n, *shape),
        )
        if observed is None and (not border_missing or (dy, dx) == (0, 0)):
            return images.reshape(n, -1), None
        source = (
            np.ones((n, *shape), dtype=bool)
            if observed is None
            else observed.reshape(n, *shape).astype(bool, copy=False)
        )
        mask = shift_images(source, dy, dx, not border_missing).reshape(n, -1)
        return images.reshape(n, -1), (None if mask.all() else mask)

    # ------------------------------------------------------------ fitting
    @restores_state_on_error
    @limits_blas
    def fit(self, X: Any, y: Any, *, observed: Any = None) -> "ShiftInvariantClassifier":
        """Fit the classifier on the images (and, with ``augment``, their shifts).

        Parameters
        ----------
        X : array-like of shape (n_samples, height * width)
            Images as rows; NaN marks a missing pixel.
        y : array-like of shape (n_samples,)
        observed : bool array-like of X's shape, optional
            Alternative to NaN: False marks a missing pixel.

        Returns
        -------
        self
        """
        if self.classifier is not None and not isinstance(self.classifier, GMMClassifier):
            raise ValueError(
                f"classifier must be a GMMClassifier or None; got {type(self.classifier).__name__}."
            )
        dtype = check_compute_dtype(
            np.float64 if self.classifier is None else self.classifier.dtype
        )
        filled, mask = check_possibly_missing(X, observed, dtype=dtype, n_features=None)
        labels = check_labels(y, len(filled))
        shape, shifts = self._check_parameters(filled.shape[1])
        base = GMMClassifier() if self.classifier is None else self.classifier
        classifier = type(base)(**base.get_params())
        if self.augment:
            # each translation written straight into its rows of the training set: no second copy of it
            n = len(filled)
            X_fit = np.empty((len(shifts) * n, filled.shape[1]), dtype=filled.dtype)
            observed_fit = None
            for i, (dy, dx) in enumerate(shifts):
                rows = slice(i * n, (i + 1) * n)
                _, shifted_mask = self._shifted(
                    filled, mask, shape, int(dy), int(dx), out=X_fit[rows]
                )
                if shifted_mask is not None:
                    if observed_fit is None:
                        observed_fit = np.ones(X_fit.shape, dtype=bool)
                    observed_fit[rows] = shifted_mask
            labels_fit = np.tile(labels, len(shifts))
        else:
            X_fit, observed_fit, labels_fit = (
                filled,
                (None if mask is None else mask.astype(bool)),
                labels,
            )
        classifier.fit(X_fit, labels_fit, observed=observed_fit)
        self.classifier_ = classifier
        self.classes_ = classifier.classes_
        self.image_shape_ = shape
        self.shifts_ = shifts
        self.n_features_in_ = filled.shape[1]
        return self

    @classmethod
    def from_fitted(
        cls,
        classifier: GMMClassifier,
        *,
        image_shape: tuple[int, int] | None = None,
        shifts: Sequence[tuple[int, int]] = ONE_PIXEL_SHIFTS,
        fill: float = 0.0,
    ) -> "ShiftInvariantClassifier":
        """Marginalise over ``shifts`` at prediction time with an already
        fitted classifier (as ``augment=False``, without refitting)."""
        if not isinstance(classifier, GMMClassifier):
            raise ValueError(
                f"classifier must be a GMMClassifier; got {type(classifier).__name__}."
            )
        check_is_fitted(classifier, "estimators_")
        model = cls(classifier, image_shape=image_shape, shifts=shifts, augment=False, fill=fill)
        model.image_shape_, model.shifts_ = model._check_parameters(classifier.n_features_in_)
        model.classifier_ = classifier
        model.classes_ = classifier.classes_
        model.n_features_in_ = classifier.n_features_in_
        return model

    # ------------------------------------------------------------ inference
    @limits_blas
    def predict_joint_log_proba(self, X: Any, observed: Any = None) -> np.ndarray:
        """log p(x_o, c) with the shift marginalised, shape (n_samples, n_classes)."""
        check_is_fitted(self, "classifier_")
        clf = self.classifier_
        filled, mask = check_possibly_missing(
            X,
            observed,
            dtype=check_compute_dtype(clf.dtype),
            n_features=self.n_features_in_,
            estimator=type(self).__name__,
        )
        # the shifted copies are already checked: straight to the classifier's kernels
        per_shift = np.stack(
            [
                clf._class_log_joint(
                    clf._joint_component_log_prob(
                        *self._shifted(filled, mask, self.image_shape_, int(dy), int(dx))
                    )[0]
                )
                for dy, dx in self.shifts_
            ]
        )
        return _gaussian.logsumexp(per_shift, axis=0) - np.log(len(self.shifts_))

    def predict_log_proba(self, X: Any, observed: Any = None) -> np.ndarray:
        """Log posterior class probabilities, shape (n_samples, n_classes)."""
        joint = self.predict_joint_log_proba(X, observed)
        log_norm = _gaussian.logsumexp(joint, axis=1)
        _gaussian.check_explained(log_norm)
        return joint - log_norm[:, None]

    def predict_proba(self, X: Any, observed: Any = None) -> np.ndarray:
        """Posterior class probabilities, shape (n_samples, n_classes)."""
        return np.exp(self.predict_log_proba(X, observed))

    def predict(self, X: Any, observed: Any = None) -> np.ndarray:
        """Most probable class of each image (labels from ``classes_``)."""
        return self.classes_[self.predict_log_proba(X, observed).argmax(axis=1)]

    def score(self, X: Any, y: Any, observed: Any = None) -> float:
        """Accuracy of ``predict(X)`` against ``y``."""
        labels = check_labels(y, len(np.asarray(X)))
        return float(np.mean(self.predict(X, observed) == labels))

    # ------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to ``path`` as ``.npz`` (no pickle)."""
        check_is_fitted(self, "classifier_")
        base_params, arrays = self.classifier_._state()
        params = {
            "classifier": base_params,
            "image_shape": list(self.image_shape_),
            "shifts": self.shifts_.tolist(),
            "augment": bool(self.augment),
            "fill": None if np.isnan(self.fill) else float(self.fill),
        }
        save_npz(path, self._MODEL_KIND, params, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ShiftInvariantClassifier":
        """Read a model written by :meth:`save`, validating every array."""
        params, arrays = load_npz(path, cls._MODEL_KIND, _expected_members)
        if not isinstance(params.get("classifier"), dict):
            raise ValueError(
                f"{path}: malformed ShiftInvariantClassifier parameters (no classifier)."
            )
        base = GMMClassifier._from_state(dict(params["classifier"]), arrays, path)
        try:
            fill = float("nan") if params["fill"] is None else float(params["fill"])
            model = cls.from_fitted(
                base,
                image_shape=tuple(params["image_shape"]),
                shifts=[tuple(s) for s in params["shifts"]],
                fill=fill,
            )
        except (KeyError, TypeError, OverflowError) as exc:
            raise ValueError(
                f"{path}: malformed ShiftInvariantClassifier parameters ({exc})."
            ) from None
        except ValueError as exc:
            raise ValueError(
                f"{path}: malformed ShiftInvariantClassifier parameters: {exc}"
            ) from None
        model.augment = bool(params.get("augment", False))  # how it was trained
        return model


def _expected_members(
    params: dict[str, Any], headers: dict[str, tuple[np.dtype, tuple[int, ...]]]
) -> dict[str, tuple[int, ...]]:
    """The members of a shift-invariant model file: its classifier's (see ``load_npz``)."""
    base = params.get("classifier")
    if not isinstance(base, dict):
        raise ValueError("malformed ShiftInvariantClassifier parameters (no classifier).")
    return _classifier_members(base, headers)
