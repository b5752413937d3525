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

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics import mixture_scores
from ..utils import _progress
from ..utils._validation import check_random_state, check_scalar
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
        than (training) samples are skipped.
    covariance_types : str or iterable of str, default=('full',)
        Candidate covariance types.
    criterion : {'bic', 'aic', 'heldout'}, default='bic'
        See the module docstring.
    validation_fraction : float, default=0.2
        Share of the samples held out for ``'heldout'`` (a random split
        from ``random_state``).
    random_state : int, RandomState or None, default=None
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
        that is not a positive int, NaN in ``X``, or too few samples for
        every candidate.

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
    if isinstance(n_components, range) and n_components.step > 0:
        # Candidates above the number of samples are skipped anyway: never materialise
        # range(1, 10**12).
        n_rows = len(X) if hasattr(X, "__len__") else 0
        n_components = n_components[: max(n_rows + 1, 1)]
    candidates = _candidates(n_components)
    types = [covariance_types] if isinstance(covariance_types, str) else list(covariance_types)
    if not types or any(t not in COVARIANCE_TYPES for t in types):
        raise ValueError(
            f"covariance_types must name some of {COVARIANCE_TYPES}; got {covariance_types!r}."
        )
    for name in ("n_components", "covariance_type", "random_state"):
        if name in mixture_params:
            raise ValueError(f"{name} is chosen by select_mixture; do not pass it.")
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-d (n_samples, n_features); got shape {X.shape}.")
    if X.dtype.kind in "fc" and np.isnan(X).any():
        raise ValueError("X contains NaN: select_mixture scores complete samples only.")
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    train, val = X, None
    if criterion == "heldout":
        check_scalar(
            validation_fraction, "validation_fraction", (int, float), min_value=0, include_min=False
        )
        if validation_fraction >= 1:
            raise ValueError(f"validation_fraction must be < 1; got {validation_fraction!r}.")
        order = np.random.RandomState(seed).permutation(len(X))
        n_val = max(1, int(round(validation_fraction * len(X))))
        train, val = X[order[n_val:]], X[order[:n_val]]
    results: list[dict[str, Any]] = []
    fitted: dict[tuple[int, str], GaussianMixture] = {}
    grid = [(k, t) for t in types for k in candidates if k <= len(train)]
    if not grid:
        raise ValueError(
            f"{len(train)} training sample(s): fewer than every candidate n_components "
            f"{candidates}."
        )
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


def _candidates(n_components: Iterable[int]) -> list[int]:
    if isinstance(n_components, (int, np.integer)) and not isinstance(n_components, bool):
        n_components = [n_components]
    try:
        values = list(n_components)
    except TypeError:
        raise ValueError(
            f"n_components must be an int or an iterable of ints; got {n_components!r}."
        ) from None
    if not values:
        raise ValueError("n_components: no candidate given.")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"n_components candidates must be positive ints; got {v!r}.")
    return sorted({int(v) for v in values})
