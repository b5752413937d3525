"""Clustering with a mixture when the number of clusters is unknown: choose it without labels.

:func:`select_mixture` fits a :class:`GaussianMixture` for each candidate
number of components (and covariance type) and keeps the best by a
criterion that needs no labels:

* ``'bic'`` (default) or ``'aic'``: the fit's log-likelihood on all the
  data penalised by its number of free parameters (Schwarz, 1978; Akaike,
  1974); the lowest wins. BIC is consistent for the number of components of
  a mixture and is mclust's choice.
* ``'heldout'``: the mean log-likelihood of samples held out of the fit;
  the highest wins, and the winner is refitted on all the data. Nothing is
  assumed about the penalty, at the price of fewer samples per fit.

Scores with labels, where they exist, are in :mod:`gmmfast.metrics`
(:func:`~gmmfast.metrics.clustering_scores`: accuracy after Hungarian
matching, NMI, ARI).
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics import mixture_scores
from ..utils import _progress
from ..utils._validation import check_array, check_compute_dtype, check_scalar, check_seed
from ._gaussian_mixture import GaussianMixture

CRITERIA = ("bic", "aic", "heldout")
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@dataclass
class MixtureSelection:
    """What :func:`select_mixture` found.

    Attributes
    ----------
    best_estimator_ : GaussianMixture
        The chosen mixture, fitted on all the data.
    best_params_ : dict
        Its ``n_components`` and ``covariance_type``.
    criterion : str
    results_ : list of dict
        One row per candidate, in the order fitted: ``n_components``,
        ``covariance_type``, ``bic``, ``aic``, ``log_likelihood`` (mean per
        sample on the data it was fitted on), ``heldout_log_likelihood``
        (``'heldout'`` only), ``n_parameters``, ``converged``, ``n_iter``,
        ``seconds``.

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast import select_mixture
    >>> rng = np.random.RandomState(0)
    >>> X = np.r_[rng.randn(300, 2), rng.randn(300, 2) + 6]
    >>> selection = select_mixture(X, range(1, 4), random_state=0)
    >>> selection.best_params_
    {'n_components': 2, 'covariance_type': 'full'}
    >>> len(selection.results_), selection.table().splitlines()[0].split(' | ')[:2]
    (3, ['| K', 'covariance'])
    """

    best_estimator_: GaussianMixture
    best_params_: dict[str, Any]
    criterion: str
    results_: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> str:
        """The results as a Markdown table."""
        heldout = self.criterion == "heldout"
        lines = [
            "| K | covariance | BIC | AIC | mean log-likelihood"
            + (" | held-out log-likelihood" if heldout else "")
            + " | parameters | converged |",
            "|---|---|---|---|---" + ("|---" if heldout else "") + "|---|---|",
        ]
        best = self.best_params_
        for row in self.results_:
            mark = (
                " (chosen)"
                if (row["n_components"], row["covariance_type"])
                == (best["n_components"], best["covariance_type"])
                else ""
            )
            lines.append(
                f"| {row['n_components']}{mark} | {row['covariance_type']} | {row['bic']:.1f} | "
                f"{row['aic']:.1f} | {row['log_likelihood']:.4f}"
                + (f" | {row['heldout_log_likelihood']:.4f}" if heldout else "")
                + f" | {row['n_parameters']} | {row['converged']} |"
            )
        return "\n".join(lines)


def select_mixture(
    X: Any,
    n_components: Iterable[int] = range(1, 11),
    *,
    covariance_types: Iterable[str] | str = ("full",),
    criterion: str = "bic",
    validation_fraction: float = 0.2,
    random_state: Any = None,
    **mixture_params: Any,
) -> MixtureSelection:
    """Fit a Gaussian mixture per candidate and keep the best by a label-free criterion.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Complete samples (no NaN).
    n_components : iterable of int, default=range(1, 11)
        Candidate numbers of components; candidates with more components
        than (training) samples are skipped, with one ``UserWarning`` naming
        them (none left: ``ValueError``).
    covariance_types : str or iterable of str, default=('full',)
        Candidate covariance types.
    criterion : {'bic', 'aic', 'heldout'}, default='bic'
        See the module docstring.
    validation_fraction : float, default=0.2
        Share of the samples held out for ``'heldout'`` (a random split
        from ``random_state``); in (0, 1), checked whatever the criterion.
    random_state : int, RandomState, Generator or None, default=None
        Seeds the split and every fit (the same seed for each candidate, so
        that candidates differ only in what is being chosen).
    **mixture_params
        Passed to every :class:`GaussianMixture` (``n_init``, ``reg_covar``,
        ``max_iter``, ``dtype``, ...).

    Returns
    -------
    MixtureSelection

    Raises
    ------
    ValueError
        An unknown criterion or covariance type, no candidate, a candidate
        that is not a positive int, more than :data:`MAX_CANDIDATES` from an
        iterator, an unknown or bad mixture parameter (or one that fixes the
        number of components), a ``validation_fraction`` outside (0, 1)
        (whatever the criterion), a bad ``random_state``, ``X`` that is not a
        complete 2-d numeric array (NaN, infinity), or too few samples for
        every candidate. Everything is checked before the first fit.

    Examples
    --------
    >>> from gmmfast.mixture import select_mixture
    >>> from gmmfast.synthetic import make_noncircular
    >>> X, _ = make_noncircular("anisotropic", random_state=0)
    >>> selection = select_mixture(X, range(1, 7), n_init=3, random_state=0)
    >>> selection.best_params_["n_components"]
    3
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}.")
    types = _covariance_types(covariance_types)
    _check_mixture_params(mixture_params)
    X = _check_X(X, mixture_params.get("dtype", np.float64))
    GaussianMixture(1, covariance_type=types[0], **mixture_params)._check_parameters(X.shape[1])
    seed = int(check_seed(random_state).randint(np.iinfo(np.int32).max))
    # Checked whatever the criterion: a bad value is a mistake even where it is unused.
    check_scalar(
        validation_fraction,
        "validation_fraction",
        (int, float, np.integer, np.floating),
        min_value=0,
        include_min=False,
    )
    if not validation_fraction < 1:  # NaN too
        raise ValueError(f"validation_fraction must be < 1; got {validation_fraction!r}.")
    train, val = X, None
    if criterion == "heldout":
        order = np.random.RandomState(seed).permutation(len(X))
        n_val = max(1, int(round(validation_fraction * len(X))))
        train, val = X[order[n_val:]], X[order[:n_val]]
    candidates, skipped = _candidates(n_components, len(train))
    if skipped:
        warnings.warn(
            f"n_components: skipped {skipped}: more components than the {len(train)} "
            "training sample(s).",
            UserWarning,
            stacklevel=2,
        )
    results: list[dict[str, Any]] = []
    fitted: dict[tuple[int, str], GaussianMixture] = {}
    grid = [(k, t) for t in types for k in candidates]
    with _progress.bar(grid, desc="mixture selection", unit="fit", leave=False) as search:
        for k, kind in search:
            start = time.perf_counter()
            model = GaussianMixture(
                k, covariance_type=kind, random_state=seed, **mixture_params
            ).fit(train)
            row = {
                "n_components": k,
                "covariance_type": kind,
                **mixture_scores(model, train, val),
                "converged": bool(model.converged_),
                "n_iter": int(model.n_iter_),
            }
            row["seconds"] = time.perf_counter() - start
            results.append(row)
            fitted[(k, kind)] = model
            search.set_postfix_str(f"K={k} {kind}", refresh=False)
    if criterion == "heldout":
        best = max(results, key=lambda r: r["heldout_log_likelihood"])
    else:
        best = min(results, key=lambda r: r[criterion])
    key = (best["n_components"], best["covariance_type"])
    model = fitted[key]
    if criterion == "heldout":
        model = GaussianMixture(
            key[0], covariance_type=key[1], random_state=seed, **mixture_params
        ).fit(X)
    return MixtureSelection(
        best_estimator_=model,
        best_params_={"n_components": key[0], "covariance_type": key[1]},
        criterion=criterion,
        results_=results,
    )


#: At most this many candidates are read from an iterator (an endless one is refused).
MAX_CANDIDATES = 100_000
#: Parameters of GaussianMixture that fix the number of components: not for a search.
FIXED_K_PARAMS = ("weights_init", "means_init", "precisions_init")


def _covariance_types(covariance_types: Any) -> list[str]:
    message = f"covariance_types must name some of {COVARIANCE_TYPES}; got {covariance_types!r}."
    if isinstance(covariance_types, str):
        covariance_types = [covariance_types]
    try:
        types = list(itertools.islice(covariance_types, len(COVARIANCE_TYPES) * 4 + 1))
    except TypeError:
        raise ValueError(message) from None
    if not types or any(not isinstance(t, str) or t not in COVARIANCE_TYPES for t in types):
        raise ValueError(message)
    return list(dict.fromkeys(types))  # each once, in the order given


def _check_mixture_params(mixture_params: dict[str, Any]) -> None:
    for name in ("n_components", "covariance_type", "random_state"):
        if name in mixture_params:
            raise ValueError(f"{name} is chosen by select_mixture; do not pass it.")
    for name in FIXED_K_PARAMS:
        if mixture_params.get(name) is not None:
            raise ValueError(
                f"{name} fixes the number of components, which select_mixture chooses; "
                "do not pass it."
            )
    known = GaussianMixture().get_params()
    unknown = sorted(set(mixture_params) - set(known))
    if unknown:
        raise ValueError(
            f"unknown GaussianMixture parameter(s) {', '.join(map(repr, unknown))} passed "
            f"to select_mixture; the parameters are {', '.join(sorted(known))}."
        )


def _check_X(X: Any, dtype: Any) -> np.ndarray:
    """X as a complete 2-d array of the fits' dtype (a read-only view or a copy)."""
    return check_array(X, dtype=check_compute_dtype(dtype))


def _skipped(first: int, last: int, count: int, listed: list[int]) -> str:
    """The skipped candidates in words, without listing a huge range."""
    if count <= 10:
        return f"candidate{'s' if count > 1 else ''} {', '.join(map(str, listed))}"
    return f"{count} candidates from {first} to {last}"


def _candidates(n_components: Any, n_train: int) -> tuple[list[int], str]:
    """The sorted distinct candidates up to ``n_train``, and the larger ones, skipped,
    in words ('' when none is).

    A ``range`` is clipped arithmetically (``range(1, 10**12)`` is never
    materialised); another iterable is read to at most :data:`MAX_CANDIDATES`.
    """
    if isinstance(n_components, (int, np.integer)) and not isinstance(n_components, bool):
        n_components = [n_components]
    if isinstance(n_components, range):
        if len(n_components) == 0:
            raise ValueError("n_components: no candidate given.")
        ascending = n_components if n_components.step > 0 else n_components[::-1]
        if ascending[0] < 1:
            raise ValueError(
                f"n_components candidates must be positive ints; got {ascending[0]!r}."
            )
        if ascending[0] > n_train:
            raise ValueError(
                f"{n_train} training sample(s): fewer than every candidate n_components "
                f"(the smallest is {ascending[0]})."
            )
        n_kept = (n_train - ascending[0]) // ascending.step + 1
        rest = ascending[n_kept:]
        skipped = _skipped(rest[0], rest[-1], len(rest), list(rest[:10])) if len(rest) else ""
        return list(ascending[:n_kept]), skipped
    if isinstance(n_components, (str, bytes, dict)):
        raise ValueError(
            f"n_components candidates must be positive ints; got the {type(n_components).__name__} "
            f"{n_components!r}."
        )
    try:
        values = list(itertools.islice(n_components, MAX_CANDIDATES + 1))
    except TypeError:
        raise ValueError(
            f"n_components must be an int or an iterable of ints; got {n_components!r}."
        ) from None
    if not values:
        raise ValueError("n_components: no candidate given.")
    if len(values) > MAX_CANDIDATES:
        raise ValueError(
            f"n_components gives more than {MAX_CANDIDATES} candidates (an endless iterator?); "
            "pass a range or a list."
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"n_components candidates must be positive ints; got {v!r}.")
    candidates = sorted({int(v) for v in values})
    kept = [k for k in candidates if k <= n_train]
    if not kept:
        raise ValueError(
            f"{n_train} training sample(s): fewer than every candidate n_components "
            f"(the smallest is {candidates[0]})."
        )
    rest = candidates[len(kept) :]
    return kept, (_skipped(rest[0], rest[-1], len(rest), rest) if rest else "")
