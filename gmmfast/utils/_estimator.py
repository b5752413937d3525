"""Estimator plumbing shared by gmmfast's estimators (scikit-learn conventions)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

_Method = TypeVar("_Method", bound=Callable[..., Any])


def restores_state_on_error(method: _Method) -> _Method:
    """A fitting method that raises an error leaves the estimator as it was before
    the call (unfitted, or the previous fit).

    The estimator's attribute dictionary is snapshotted (a shallow copy: the
    fitting code replaces arrays and nested estimators, never writes into the
    ones it holds) and put back on any ``Exception``. ``KeyboardInterrupt`` is
    not an ``Exception``: Ctrl-C keeps what the loop's interrupt handler kept
    (the last complete iteration), as documented by each ``fit``.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        before = dict(self.__dict__)
        try:
            return method(self, *args, **kwargs)
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    return wrapper  # type: ignore[return-value]


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the lower bound settled within ``tol``.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from gmmfast import ConvergenceWarning, GaussianMixture
    >>> X = np.random.RandomState(0).randn(200, 2)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = GaussianMixture(3, max_iter=1, random_state=0).fit(X)
    >>> any(issubclass(w.category, ConvergenceWarning) for w in caught)
    True
    """


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``.

    Examples
    --------
    >>> from gmmfast import GaussianMixture, NotFittedError
    >>> try:
    ...     GaussianMixture(2).predict([[0.0, 1.0]])
    ... except NotFittedError as error:
    ...     print(type(error).__name__)
    NotFittedError
    """


class BaseEstimator:
    """``get_params``/``set_params``/``repr`` from the constructor signature.

    As in scikit-learn, constructors only store their arguments, under the
    same names; validation happens in ``fit``. ``__sklearn_tags__`` lets
    scikit-learn's tools (``clone``, pipelines, ``check_estimator``) treat the
    estimators as their own without gmmfast importing scikit-learn.
    """

    # "classifier", "density_estimator" (scikit-learn's estimator types) or None
    _estimator_type: str | None = None
    # Inputs may hold NaN (missing values, exactly marginalised).
    _allow_nan = False

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's estimator tags (imported only when scikit-learn asks for them)."""
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        classifier = self._estimator_type == "classifier"
        return Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=classifier),
            classifier_tags=ClassifierTags() if classifier else None,
            input_tags=InputTags(allow_nan=self._allow_nan),
        )

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters of this estimator (and of nested estimators)."""
        params = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                for sub_name, sub_value in value.get_params().items():
                    params[f"{name}__{sub_name}"] = sub_value
            params[name] = value
        return params

    def set_params(self, **params: Any) -> "BaseEstimator":
        """Set constructor parameters; unknown names raise ``ValueError``."""
        valid = set(self._param_names())
        for name, value in params.items():
            head, _, rest = name.partition("__")
            if head not in valid:
                raise ValueError(
                    f"Invalid parameter {head!r} for {type(self).__name__}; "
                    f"valid parameters are {sorted(valid)}."
                )
            if rest:
                getattr(self, head).set_params(**{rest: value})
            else:
                setattr(self, head, value)
        return self

    def __repr__(self) -> str:
        signature = inspect.signature(type(self).__init__)
        shown = []
        for name in self._param_names():
            default = signature.parameters[name].default
            value = getattr(self, name)
            if value is default or (not hasattr(value, "shape") and _safe_equal(value, default)):
                continue
            shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _safe_equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays, odd objects: just show them
        return False


def check_is_fitted(estimator: Any, attribute: str) -> None:
    """Raise ``NotFittedError`` unless ``estimator`` has ``attribute``."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet; call "
            "fit (or load a saved model) before using it."
        )
