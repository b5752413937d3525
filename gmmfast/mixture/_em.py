"""The EM driver: one loop for every way gmmfast fits a mixture.

The in-memory fit (complete data, or exact EM with missing values) and the
fit on a Dask array differ only in where the data are and how one pass over
them is made. Everything else is here, once: the warm-start checks, the
``n_init`` initialisations, the iterations with their convergence test,
progress bar and ``verbose`` lines, Ctrl-C keeping the last complete
iteration, and the choice of the best initialisation.

A fitting path supplies two callables:

``initialize(init_index)``
    Put initial parameters on the estimator (initialisation ``init_index``
    of ``n_init``: :func:`gmmfast.mixture._starts.start_kind` decides its kind).
``em_pass()``
    One EM iteration at the estimator's current parameters: E-step over all
    the data, M-step, the new parameters set on the estimator (all at once,
    so an interrupt never leaves a half-updated model), and the mean
    log-likelihood of the data under the parameters of the E-step returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..utils import _progress


@dataclass
class Outcome:
    """The best initialisation of a fit, as :meth:`GaussianMixture._keep_best` installs it."""

    lower_bound: float
    params: tuple[np.ndarray, ...]
    n_iter: int
    lower_bounds: list[float]
    converged: bool

    def as_tuple(self) -> tuple:
        return (self.lower_bound, self.params, self.n_iter, self.lower_bounds, self.converged)


def starts_afresh(estimator: Any, n_components: int, n_features: int) -> bool:
    """Whether this fit initialises (False: ``warm_start`` continues a fitted model,
    checked to match the data's width and ``n_components``)."""
    if not (estimator.warm_start and hasattr(estimator, "converged_")):
        return True
    try:
        estimator._check_fitted()
    except ValueError as exc:
        raise ValueError(
            f"{exc} With warm_start=True, fit continues from the fitted "
            "parameters: set warm_start=False to fit afresh."
        ) from None
    if estimator.means_.shape != (int(n_components), n_features):
        raise ValueError(
            f"warm_start continues from the fitted {estimator.means_.shape[0]} components of "
            f"{estimator.means_.shape[1]} features, but the data have {n_features} features and "
            f"n_components={n_components}; set warm_start=False to fit afresh."
        )
    return False


def run(
    estimator: Any,
    *,
    afresh: bool,
    initialize: Callable[[int], None],
    em_pass: Callable[[], float],
    confirm: Callable[[], tuple[float, bool]] | None = None,
) -> Outcome:
    """Run ``n_init`` initialisations (one when continuing a warm start) of at most
    ``max_iter`` EM iterations each; return the best by final lower bound.

    Convergence: the change of the mean log-likelihood between two iterations
    is below ``tol`` (scikit-learn's test). On Ctrl-C the estimator keeps the
    last complete iteration, marked unconverged, and the interrupt propagates.

    ``confirm`` (Gaussian selection) is called when an initialisation has
    converged or reached ``max_iter``: it returns the exact mean
    log-likelihood of the current parameters, which becomes the lower bound,
    and whether the approximate iterations are accepted; if not, EM goes on
    (within ``max_iter``).
    """
    n_init = int(estimator.n_init) if afresh else 1
    max_iter = int(estimator.max_iter)
    best: Outcome | None = None
    last = {"completed": 0, "lower_bound": -np.inf, "lower_bounds": []}  # what Ctrl-C keeps

    def keep_last_iteration() -> str:
        # A usable model on Ctrl-C: the last completed iteration, marked unconverged.
        if hasattr(estimator, "means_"):
            estimator.converged_ = False
            estimator.n_iter_ = last["completed"]
            estimator.lower_bound_ = last["lower_bound"]
            estimator.lower_bounds_ = last["lower_bounds"]
        return "EM interrupted; the model holds the last completed iteration."

    with _progress.asked(estimator.verbose), _progress.on_interrupt(keep_last_iteration):
        for init in range(n_init):
            estimator._print(1, f"Initialization {init}")
            start = time.perf_counter()
            if afresh:
                initialize(init)
            # A warm start compares its first iteration with the fit's lower bound, the
            # log-likelihood before that fit's last M-step. With ``confirm`` the lower
            # bound is the exact log-likelihood of the fitted parameters, which the
            # first E-step recomputes: comparing them would end EM after one iteration.
            lower_bound = -np.inf if afresh or confirm is not None else estimator.lower_bound_
            lower_bounds: list[float] = []
            last.update(completed=0, lower_bound=lower_bound, lower_bounds=lower_bounds)
            converged = False
            n_iter = 0
            desc = f"EM K={estimator.n_components}" + (
                f" init {init + 1}/{n_init}" if n_init > 1 else ""
            )
            with _progress.bar(total=max_iter, desc=desc, unit="iter", leave=False) as progress:
                for n_iter in range(1, max_iter + 1):
                    previous = lower_bound
                    lower_bound = float(em_pass())
                    lower_bounds.append(lower_bound)
                    last.update(completed=n_iter, lower_bound=lower_bound)
                    change = lower_bound - previous
                    progress.set_postfix_str(
                        f"ll {lower_bound:.6g}" + (f", change {change:.2e}" if n_iter > 1 else ""),
                        refresh=False,
                    )
                    progress.update(1)
                    if n_iter % int(estimator.verbose_interval) == 0:
                        estimator._print(
                            1,
                            f"  Iteration {n_iter}",
                            f"\t time lapse {time.perf_counter() - start:.5f}s"
                            f"\t ll change {change:.5f}",
                        )
                    converged = abs(change) < estimator.tol
                    if confirm is not None and (converged or n_iter == max_iter):
                        lower_bound, accepted = confirm()
                        last.update(lower_bound=lower_bound)
                        if not accepted and n_iter < max_iter:
                            converged = False
                            continue
                    if converged:
                        break
            if max_iter > 0:
                state = "converged" if converged else "did not converge"
                estimator._print(
                    1,
                    f"Initialization {state}.",
                    f" time lapse {time.perf_counter() - start:.5f}s"
                    f"\t lower bound {lower_bound:.5f}",
                )
            if best is None or lower_bound > best.lower_bound:
                best = Outcome(
                    lower_bound, estimator._get_parameters(), n_iter, lower_bounds, converged
                )
    assert best is not None  # n_init >= 1 is checked with the parameters
    return best
