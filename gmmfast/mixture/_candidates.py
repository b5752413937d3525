"""Gaussian selection: EM that evaluates, for each sample, only the components that matter.

At large K almost every (sample, component) log-density of an E-step is
exponentiated into a responsibility that is zero to double precision: a
patch or a frame is explained by a handful of components. Gaussian
selection keeps, for each sample, the *candidate* components that mattered
at the last **full pass** (an exact E-step over all K components) and, in
the iterations between full passes, evaluates only those, exactly, with the
same arithmetic as the exact kernels. The M-step then streams through each
component's candidate samples only.

Why the previous pass's components, and not a cheap model or a bound
(measured in ``benchmarks/results/gaussian_selection.md``): for full
covariances the cheapest proxy that ranks components (a rank-r projection
per component) costs r/D of the exact E-step for every pair, and a bound
that proves a component negligible needs the covariance's spectrum, whose
spread in natural-image patches (three to four decades) leaves it too loose
to skip anything. EM moves its parameters slowly, so the components that
mattered one iteration matter the next: the candidate sets cost nothing to
produce and are exact where they are evaluated.

The guarantee, stated and tested:

* at a full pass a sample keeps every component whose responsibility is at
  least ``CANDIDATE_SHARE * selection_tol / K``: the mass it leaves out is
  below ``CANDIDATE_SHARE * selection_tol``;
* before each candidate iteration, an exact E-step on a fixed random 1% of
  the samples (at least 2,048; the *probe*) estimates how much responsibility
  the sets miss under the current parameters (the *skipped mass*, averaged
  over samples); above half of ``selection_tol``, the iteration is a full
  pass instead, which refreshes the sets (and at least every 64 iterations);
* when EM has converged (or reaches ``max_iter``), a final full pass at the
  fitted parameters gives the exact ``lower_bound_`` and measures the
  skipped mass of the last candidate iterations: above ``selection_tol``,
  EM goes on from fresh sets (within ``max_iter``; a warning if it runs
  out). ``selection_skipped_mass_`` reports the final measurement.

The mean log-likelihood of a candidate iteration is then a lower bound of
the exact one, below it by at most about the skipped mass.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._kernels import _candidates, check_status
from ..utils._threads import chunk_size_for, single_threaded_blas, threads_for_work
from . import _gaussian
from ._stats import SufficientStats

SELECTION_MODES = ("auto", "exact", "candidates")
# 'auto' selects from this many components on (complete in-memory data): the
# crossover measured in benchmarks/results/gaussian_selection.md (20 EM
# iterations, N = 100,000, float32: full D = 16 1.3x at K = 32, 2.1x at 64;
# diagonal D = 40 1.0x at K = 64, 1.65x at 128). Tied covariances share one
# factor, so the exact E-step is already cheap per component: never 'auto'.
AUTO_MIN_COMPONENTS = {"full": 32, "diag": 128, "spherical": 128}
# Share of ``selection_tol`` that a full pass may leave out of each sample.
CANDIDATE_SHARE = 0.01
# Each sample also keeps its N_TOP most responsible components at a full pass:
# the margin that keeps a set valid while EM moves the parameters.
N_TOP = 8
# The probe: this share of the samples (at least PROBE_MIN) gets an exact E-step
# every candidate iteration, which estimates the mass the sets miss; a full pass
# replaces the iteration when the estimate exceeds half of selection_tol, and
# comes at least every REFRESH_MAX iterations.
PROBE_SHARE = 0.01
PROBE_MIN = 2048
REFRESH_MAX = 64
# 'auto' fits select only from this many samples: below, the probe (at least
# PROBE_MIN samples) would cost a quarter or more of an exact E-step every iteration.
AUTO_MIN_SAMPLES = 4 * PROBE_MIN
# Rows of a full pass's block: its (rows, K) float64 responsibilities fit in
# this many bytes, so a full pass never holds N x K of them.
_PASS_BLOCK_BYTES = 64 * 2**20
# Samples per tile of the full-covariance kernels (one trmm or syrk each).
_TILE = 256


def check_selection(mode: Any, tol: Any) -> None:
    """Refuse an unknown ``gaussian_selection`` or a ``selection_tol`` outside (0, 0.1]."""
    if not isinstance(mode, str) or mode not in SELECTION_MODES:
        raise ValueError(f"gaussian_selection must be one of {SELECTION_MODES}; got {mode!r}.")
    if (
        isinstance(tol, bool)
        or not isinstance(tol, (int, float, np.floating))
        or not 0 < tol <= 0.1
    ):
        raise ValueError(f"selection_tol must be a number in (0, 0.1]; got {tol!r}.")


def applies(
    mode: str,
    covariance_type: str,
    n_components: int,
    *,
    complete: bool,
    n_samples: int | None = None,
) -> bool:
    """Whether a fit runs with Gaussian selection.

    'candidates' asks for it and is refused where it cannot apply (missing
    values, factor covariances); 'auto' uses it where it pays (``AUTO_MIN_COMPONENTS``, complete
    data); 'exact' never.
    """
    if mode == "exact":
        return False
    supported = covariance_type in _gaussian.COVARIANCE_TYPES
    if mode == "candidates":
        if not supported:
            raise ValueError(
                f"gaussian_selection='candidates' is not available for "
                f"covariance_type={covariance_type!r}; use 'auto' or 'exact'."
            )
        if not complete:
            raise ValueError(
                "gaussian_selection='candidates' is not available with missing values "
                "(exact EM with missing values evaluates every component); use 'auto' or 'exact'."
            )
        return True
    if n_samples is not None and n_samples < AUTO_MIN_SAMPLES:
        return False  # the probe would be a large share of every iteration
    return complete and n_components >= AUTO_MIN_COMPONENTS.get(covariance_type, np.inf)


@dataclass(frozen=True)
class CandidateSets:
    """Each sample's candidate components, by sample and by component.

    By sample (CSR): sample n's components are ``idx[ptr[n]:ptr[n + 1]]``;
    by component: component k's pairs are the CSR positions
    ``by_comp[comp_ptr[k]:comp_ptr[k + 1]]``, in sample order, and
    ``comp_rows`` holds their samples. Built only by :meth:`from_csr`,
    which validates the CSR arrays.
    """

    ptr: np.ndarray
    idx: np.ndarray
    comp_ptr: np.ndarray
    by_comp: np.ndarray
    comp_rows: np.ndarray

    @classmethod
    def from_csr(cls, ptr: np.ndarray, idx: np.ndarray, n_components: int) -> "CandidateSets":
        ptr = np.ascontiguousarray(ptr, dtype=np.int64)
        idx = np.ascontiguousarray(idx, dtype=np.int32)
        comp_ptr = np.empty(n_components + 1, dtype=np.int64)
        by_comp = np.empty(len(idx), dtype=np.int64)
        comp_rows = np.empty(len(idx), dtype=np.int64)
        check_status(
            _candidates.group_by_component(ptr, idx, comp_ptr, by_comp, comp_rows),
            "group_by_component",
        )
        return cls(ptr, idx, comp_ptr, by_comp, comp_rows)

    @property
    def n_samples(self) -> int:
        return len(self.ptr) - 1

    @property
    def n_components(self) -> int:
        return len(self.comp_ptr) - 1

    @property
    def n_pairs(self) -> int:
        return len(self.idx)

    def rows(self) -> np.ndarray:
        """The sample of each pair, in CSR order."""
        return np.repeat(np.arange(self.n_samples, dtype=np.int64), np.diff(self.ptr))


def candidate_log_prob(
    X: np.ndarray,
    sets: CandidateSets,
    weights: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
    *,
    mode: int,
    n_threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The E-step over the candidate pairs only.

    Returns ``(values, log_norm)``: ``values`` (one per pair, CSR order) as
    ``mode`` asks (weighted log-densities, log-responsibilities or
    responsibilities normalised over the sample's candidates) and
    ``log_norm`` each sample's log-sum-exp over its candidates (a lower
    bound of its log-likelihood).
    """
    n_samples, n_features = X.shape
    n_components = len(means)
    if sets.n_samples != n_samples or sets.n_components != n_components:
        raise ValueError(
            f"candidate sets of {sets.n_samples} samples x {sets.n_components} components "
            f"do not match data of {n_samples} samples and {n_components} components."
        )
    values = np.empty(sets.n_pairs)
    log_norm = np.empty(n_samples)
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(weights, dtype=np.float64))
    means = np.ascontiguousarray(means, dtype=np.float64)
    log_det = np.ascontiguousarray(
        np.broadcast_to(
            _gaussian.log_det_cholesky(prec_chol, covariance_type, n_features), (n_components,)
        ),
        dtype=np.float64,
    )
    if covariance_type in ("full", "tied"):
        factors = prec_chol if covariance_type == "full" else prec_chol[None]
        factors = np.ascontiguousarray(factors, dtype=X.dtype)
        threads = threads_for_work(n_threads, sets.n_pairs * n_features * n_features)
        with single_threaded_blas():
            check_status(
                _candidates.candidate_estep_full(
                    X,
                    means,
                    factors,
                    covariance_type == "tied",
                    log_det,
                    log_weights,
                    sets.comp_ptr,
                    sets.by_comp,
                    sets.comp_rows,
                    values,
                    _TILE,
                    threads,
                ),
                "candidate_estep_full",
            )
    else:
        prec_sqrt = _gaussian.precision_rows(prec_chol, covariance_type, n_components, n_features)
        threads = threads_for_work(n_threads, sets.n_pairs * 3.0 * n_features)
        check_status(
            _candidates.candidate_estep_diag(
                X,
                means,
                prec_sqrt,
                log_det,
                log_weights,
                sets.ptr,
                sets.idx,
                values,
                chunk_size_for(n_samples, threads),
                threads,
            ),
            "candidate_estep_diag",
        )
    threads = threads_for_work(n_threads, 20.0 * sets.n_pairs)
    check_status(
        _candidates.normalize_candidates(
            sets.ptr, values, log_norm, mode, chunk_size_for(n_samples, threads), threads
        ),
        "normalize_candidates",
    )
    return values, log_norm


def kept_pairs(
    resp: np.ndarray, threshold: float, n_top: int, n_threads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of dense responsibilities, the components a full pass keeps: those
    at least ``threshold`` and the ``n_top`` most responsible (a row of zeros, a
    sample no component explains, keeps all). Returns ``(counts, idx, values)``,
    the pairs row by row in component order."""
    rows = len(resp)
    cut = np.empty(rows)
    counts = np.empty(rows, dtype=np.int64)
    check_status(
        _candidates.row_cuts(resp, float(threshold), int(n_top), cut, counts, n_threads),
        "row_cuts",
    )
    ptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    idx = np.empty(ptr[-1], dtype=np.int32)
    values = np.empty(ptr[-1])
    check_status(_candidates.gather_kept(resp, cut, ptr, idx, values, n_threads), "gather_kept")
    return counts, idx, values


def sets_from_responsibilities(
    resp: np.ndarray, threshold: float, n_top: int, n_threads: int
) -> CandidateSets:
    """The candidate sets that dense responsibilities ``resp`` (n, K) imply."""
    counts, idx, _ = kept_pairs(resp, threshold, n_top, n_threads)
    return CandidateSets.from_csr(np.r_[0, np.cumsum(counts)], idx, resp.shape[1])


def to_dense(sets: CandidateSets, values: np.ndarray, fill: float) -> np.ndarray:
    """(n, K) array with ``values`` at the candidate pairs and ``fill`` elsewhere."""
    out = np.full((sets.n_samples, sets.n_components), fill)
    out[sets.rows(), sets.idx] = values
    return out


@dataclass
class FullPass:
    """What an exact E-step over all components leaves for Gaussian selection."""

    sets: CandidateSets
    resp: np.ndarray  # responsibilities of the kept pairs, CSR order
    log_norm: np.ndarray  # exact per-sample log-likelihoods
    skipped_mass: float | None  # mean mass the previous sets missed (None: no previous sets)


def full_pass(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
    *,
    threshold: float,
    n_top: int = 0,
    previous: CandidateSets | None,
    n_threads: int,
) -> FullPass:
    """Exact E-step over all K components, block by block (never N x K at once):
    keep each sample's components with responsibility >= ``threshold``, and its
    ``n_top`` most responsible ones, and measure the mass that ``previous`` sets
    leave out under these parameters. A sample that no component explains (its
    density underflows everywhere) keeps every component."""
    n_samples = len(X)
    n_components = len(means)
    n_top = min(int(n_top), n_components)
    block = max(1024, _PASS_BLOCK_BYTES // (8 * max(n_components, 1)))
    counts = np.zeros(n_samples + 1, dtype=np.int64)
    kept_idx: list[np.ndarray] = []
    kept_resp: list[np.ndarray] = []
    log_norm = np.empty(n_samples)
    missed = 0.0
    explained = 0
    prev_rows = previous.rows() if previous is not None else None
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        resp, log_norm[start:stop] = _gaussian.estimate_log_prob(
            X[start:stop],
            weights,
            means,
            prec_chol,
            covariance_type,
            mode=_gaussian.MODE_RESP,
            n_threads=n_threads,
        )
        kept, block_idx, block_resp = kept_pairs(resp, threshold, n_top, n_threads)
        counts[start + 1 : stop + 1] = kept
        kept_idx.append(block_idx)
        kept_resp.append(block_resp)
        if previous is not None:
            lo, hi = previous.ptr[start], previous.ptr[stop]
            local = prev_rows[lo:hi] - start
            covered = np.bincount(
                local, weights=resp[local, previous.idx[lo:hi]], minlength=stop - start
            )
            finite = np.isfinite(log_norm[start:stop])
            missed += float(np.clip(1.0 - covered[finite], 0.0, 1.0).sum())
            explained += int(finite.sum())
    ptr = np.cumsum(counts)
    sets = CandidateSets.from_csr(ptr, np.concatenate(kept_idx), n_components)
    skipped = None if previous is None else missed / max(explained, 1)
    return FullPass(sets, np.concatenate(kept_resp), log_norm, skipped)


def floor_candidate_responsibilities(
    resp: np.ndarray, sets: CandidateSets, resp_floor: float
) -> np.ndarray:
    """:func:`gmmfast.mixture._gaussian.floor_responsibilities` on the pairs: zero,
    in place, every ``r_nk < resp_floor * N_k / N``. Returns ``resp``."""
    n_samples = sets.n_samples
    if resp_floor > 0 and n_samples:
        mass = np.bincount(sets.idx, weights=resp, minlength=sets.n_components)
        np.putmask(resp, resp < (mass * (resp_floor / n_samples))[sets.idx], 0.0)
    return resp


def candidate_statistics(
    X: np.ndarray, sets: CandidateSets, resp: np.ndarray, covariance_type: str, *, n_threads: int
) -> SufficientStats:
    """Centred M-step statistics from the responsibilities of the candidate pairs:
    each component streams through its own samples only (one component per thread)."""
    n_samples, n_features = X.shape
    n_components = sets.n_components
    if sets.n_samples != n_samples or len(resp) != sets.n_pairs:
        raise ValueError("candidate responsibilities do not match the candidate sets.")
    full = covariance_type in ("full", "tied")
    counts = np.empty(n_components)
    means = np.empty((n_components, n_features))
    scatter = np.empty(
        (n_components, n_features, n_features) if full else (n_components, n_features)
    )
    per_pair = n_features * n_features if full else 3.0 * n_features
    threads = threads_for_work(min(n_threads, max(n_components, 1)), sets.n_pairs * per_pair)
    with single_threaded_blas():
        check_status(
            _candidates.candidate_statistics(
                X,
                np.ascontiguousarray(resp, dtype=np.float64),
                sets.comp_ptr,
                sets.by_comp,
                sets.comp_rows,
                counts,
                means,
                scatter,
                full,
                _TILE,
                threads,
            ),
            "candidate_statistics",
        )
    if covariance_type == "tied":
        scatter = scatter.sum(axis=0)
    return SufficientStats(covariance_type, counts, means, scatter)


def probe_skipped_mass(
    X_probe: np.ndarray,
    probe: np.ndarray,
    sets: CandidateSets,
    params: tuple,
    *,
    n_threads: int,
) -> float:
    """The mean responsibility mass that the candidate sets of the ``probe`` rows
    miss under ``params`` (an exact E-step on those rows, ``X_probe``)."""
    resp, log_norm = _gaussian.estimate_log_prob(
        X_probe, *params, mode=_gaussian.MODE_RESP, n_threads=n_threads
    )
    counts = np.diff(sets.ptr)[probe]
    total = int(counts.sum())
    local = np.repeat(np.arange(len(probe)), counts)
    first = np.cumsum(counts) - counts
    positions = np.arange(total) - np.repeat(first, counts) + np.repeat(sets.ptr[probe], counts)
    covered = np.bincount(local, weights=resp[local, sets.idx[positions]], minlength=len(probe))
    finite = np.isfinite(log_norm)
    if not finite.any():
        return 0.0
    return float(np.clip(1.0 - covered[finite], 0.0, 1.0).mean())


class SelectiveEM:
    """The EM passes of a fit with Gaussian selection (see the module docstring).

    ``em_pass`` is one iteration (a full pass when the sets are due for a
    refresh, else a candidate pass) and ``confirm`` the final full pass;
    both plug into :func:`gmmfast.mixture._em.run`.
    """

    def __init__(self, estimator: Any, X: np.ndarray) -> None:
        self.estimator = estimator
        self.X = X
        self.tol = float(estimator.selection_tol)
        n_probe = min(len(X), max(PROBE_MIN, int(np.ceil(PROBE_SHARE * len(X)))))
        # A fixed seed: the probe steers only when full passes happen.
        self.probe = np.sort(np.random.default_rng(0).choice(len(X), n_probe, replace=False))
        self.X_probe = np.ascontiguousarray(X[self.probe])
        self.confirmed: list[tuple[float, float]] = []  # (lower bound, skipped mass) per confirm
        self.restart()

    def restart(self) -> None:
        """Forget the sets: a new initialisation starts with a full pass."""
        self.sets: CandidateSets | None = None
        self.since_full = 0
        self.skipped_mass: float | None = None
        self.history: list[tuple[str, float | None]] = []  # (pass, skipped mass) per iteration

    def _params(self) -> tuple:
        est = self.estimator
        return est.weights_, est.means_, est.precisions_cholesky_, est.covariance_type

    def _full_pass(self) -> FullPass:
        n_components = int(self.estimator.n_components)
        result = full_pass(
            self.X,
            *self._params(),
            threshold=CANDIDATE_SHARE * self.tol / n_components,
            n_top=N_TOP,
            previous=self.sets,
            n_threads=self.estimator._n_threads(),
        )
        if result.skipped_mass is not None:
            self.skipped_mass = result.skipped_mass
        self.sets = result.sets
        self.since_full = 0
        return result

    def em_pass(self) -> float:
        est = self.estimator
        estimate = None
        if self.sets is not None and self.since_full < REFRESH_MAX:
            estimate = probe_skipped_mass(
                self.X_probe, self.probe, self.sets, self._params(), n_threads=est._n_threads()
            )
        if estimate is None or estimate > 0.5 * self.tol:
            result = self._full_pass()
            resp, log_norm = result.resp, result.log_norm
            self.history.append(("full", result.skipped_mass))
        else:
            self.history.append(("candidates", estimate))
            resp, log_norm = candidate_log_prob(
                self.X,
                self.sets,
                est.weights_,
                est.means_,
                est.precisions_cholesky_,
                est.covariance_type,
                mode=_gaussian.MODE_RESP,
                n_threads=est._n_threads(),
            )
        self.since_full += 1
        floor_candidate_responsibilities(resp, self.sets, float(est.resp_floor))
        stats = candidate_statistics(
            self.X, self.sets, resp, est.covariance_type, n_threads=est._n_threads()
        )
        est._m_step_from_statistics(stats)
        return float(np.mean(log_norm))

    def confirm(self) -> tuple[float, bool]:
        """Final full pass: the exact mean log-likelihood of the current parameters,
        and whether the last candidate iterations missed at most ``selection_tol``."""
        result = self._full_pass()
        skipped = 0.0 if result.skipped_mass is None else result.skipped_mass
        self.skipped_mass = skipped
        lower_bound = float(np.mean(result.log_norm))
        self.confirmed.append((lower_bound, skipped))
        return lower_bound, skipped <= self.tol

    def skipped_mass_of(self, lower_bound: float) -> float | None:
        """The skipped mass measured for the initialisation that ended at ``lower_bound``
        (warning if it exceeds ``selection_tol``: max_iter ended EM before it was met)."""
        skipped = next((m for lb, m in reversed(self.confirmed) if lb == lower_bound), None)
        if skipped is not None and skipped > self.tol:
            warnings.warn(
                f"Gaussian selection: the last candidate iterations missed a mean "
                f"responsibility mass of {skipped:.3g} per sample, above "
                f"selection_tol={self.tol:g}, and max_iter ended the fit; increase max_iter, "
                "or use gaussian_selection='exact'.",
                RuntimeWarning,
                stacklevel=4,
            )
        return skipped
