"""Gaussian-mixture parameter algebra on top of the kernels.

This is the one place that knows how each covariance type is stored:
estimators (the mixture, the classifier, the denoiser) call these
functions, and these call the kernels. All parameters are float64; only
the samples and the triangular factors handed to BLAS take the compute
dtype.

Parameter shapes follow scikit-learn (K components, D features):

=========== =============== =========================
type        covariances     precisions_cholesky
=========== =============== =========================
full        (K, D, D)       (K, D, D), upper-triangular
tied        (D, D)          (D, D), upper-triangular
diag        (K, D)          (K, D)
spherical   (K,)            (K,)
=========== =============== =========================
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from .._kernels import _estep, _mstep, check_status
from ..utils._threads import chunk_size_for, single_threaded_blas, threads_for_work
from ._stats import MASS_FLOOR, SufficientStats

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

MODE_WEIGHTED_LOG_PROB = _estep.MODE_WEIGHTED_LOG_PROB
MODE_LOG_RESP = _estep.MODE_LOG_RESP
MODE_RESP = _estep.MODE_RESP


class FactorizationError(ValueError):
    """A covariance matrix is not positive definite, even with ``reg_covar``."""


def _factorization_message(what: str, reg_covar: float | None) -> str:
    reg = "" if reg_covar is None else f" (reg_covar={reg_covar:g})"
    return (
        f"The covariance of {what} is not positive definite{reg}, so it cannot "
        "be Cholesky-factorised. Increase reg_covar, reduce n_components, or "
        "scale the data; collapsed or constant features are the usual cause."
    )


def precision_cholesky_from_covariances(
    covariances: np.ndarray,
    covariance_type: str,
    reg_covar: float | None = None,
    *,
    n_threads: int = 1,
) -> np.ndarray:
    """Cholesky factors of the precisions, computed from covariances.

    Full and tied factors come from the kernel (one component per thread,
    LAPACK single-threaded); a covariance that is not positive definite
    raises :class:`FactorizationError` naming ``reg_covar``.
    """
    if covariance_type in ("full", "tied"):
        factors = np.array(
            covariances if covariance_type == "full" else covariances[None],
            dtype=np.float64,
            order="C",
        )
        info = np.zeros(len(factors), dtype=np.intc)
        n_features = factors.shape[1]
        n_threads = threads_for_work(min(n_threads, len(factors)), len(factors) * n_features**3 / 3)
        with single_threaded_blas():
            check_status(_mstep.precision_cholesky(factors, info, n_threads), "precision_cholesky")
        failed = np.flatnonzero(info != 0)
        if len(failed):
            what = "the tied covariance" if covariance_type == "tied" else f"component {failed[0]}"
            raise FactorizationError(_factorization_message(what, reg_covar))
        return factors if covariance_type == "full" else factors[0]
    if np.any(~(covariances > 0)):
        bad = int(np.argmax(~(covariances > 0).reshape(len(covariances), -1).all(axis=-1)))
        raise FactorizationError(_factorization_message(f"component {bad}", reg_covar))
    return 1.0 / np.sqrt(covariances)


def precision_cholesky_from_precisions(
    precisions: np.ndarray, covariance_type: str, name: str = "precisions"
) -> np.ndarray:
    """Upper factor U of each precision P = U U^T, computed from P itself.

    Reversing rows and columns turns P into J P J = L L^T, and then
    U = J L J is upper-triangular with U U^T = P. One batched Cholesky
    both checks every precision and factorises it; a precision that is not
    positive definite raises ``ValueError`` naming ``name[k]``.
    """
    if covariance_type not in ("full", "tied"):
        if np.any(~(precisions > 0)):
            raise ValueError(f"{name} must be positive.")
        return np.sqrt(precisions)
    mats = precisions if covariance_type == "full" else precisions[None]
    try:
        lower = np.linalg.cholesky(mats[:, ::-1, ::-1])
    except np.linalg.LinAlgError:
        for k, m in enumerate(mats):  # name the first failure
            if lapack.dpotrf(np.ascontiguousarray(m), lower=1)[1] != 0:
                what = name if covariance_type == "tied" else f"{name}[{k}]"
                raise ValueError(f"{what} is not positive definite.") from None
        raise ValueError(f"{name} is not positive definite.") from None
    factors = np.ascontiguousarray(lower[:, ::-1, ::-1])
    return factors if covariance_type == "full" else factors[0]


def covariances_from_precision_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Covariances Sigma = (U U^T)^-1 from precision factors, by LAPACK ``potri``.

    With L = J U J (lower), J P J = L L^T, whose inverse J Sigma J ``potri``
    computes from L alone (no general inverse, a third of a GEMM's work).
    """
    if covariance_type not in ("full", "tied"):
        return 1.0 / prec_chol**2
    factors = prec_chol if covariance_type == "full" else prec_chol[None]
    covs = np.empty(factors.shape)
    for k, u in enumerate(factors):
        # In Fortran order, the C-order J U J reads as its transpose, an upper
        # factor R with R^T R = L L^T: potri(R, lower=0) inverts exactly that.
        flipped = np.array(u[::-1, ::-1], order="C")  # a copy: potri overwrites it
        inverse, info = lapack.dpotri(flipped.T, lower=0, overwrite_c=1)
        if info != 0:
            raise FactorizationError(_factorization_message(f"component {k}", None))
        upper = np.triu(inverse)
        upper += np.triu(inverse, 1).T
        covs[k] = upper[::-1, ::-1]
    return covs if covariance_type == "full" else covs[0]


def precisions_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precisions P = U U^T."""
    if covariance_type == "full":
        return np.matmul(prec_chol, np.swapaxes(prec_chol, 1, 2))
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


def log_det_cholesky(prec_chol: np.ndarray, covariance_type: str, n_features: int) -> np.ndarray:
    """log det(U) = 0.5 log det(precision): per component for full/diag/spherical, one value for tied."""
    if covariance_type == "full":
        return np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    if covariance_type == "tied":
        return np.log(np.diag(prec_chol)).sum()
    if covariance_type == "diag":
        return np.log(prec_chol).sum(axis=1)
    return n_features * np.log(prec_chol)


def estimate_log_prob(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
    *,
    mode: int,
    n_threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the E-step kernel.

    Returns ``(out, log_norm)``: ``out`` (n_samples, K) holds weighted
    log-densities, log-responsibilities or responsibilities according to
    ``mode``; ``log_norm`` (n_samples,) the per-sample log-likelihood.
    ``X`` must already be validated (C-contiguous, compute dtype).
    """
    n_samples, n_features = X.shape
    n_components = len(means)
    out = np.empty((n_samples, n_components), dtype=np.float64)
    log_norm = np.empty(n_samples, dtype=np.float64)
    log_det = np.broadcast_to(
        log_det_cholesky(prec_chol, covariance_type, n_features), (n_components,)
    ).astype(np.float64)
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(weights, dtype=np.float64))
    means = np.ascontiguousarray(means, dtype=np.float64)
    per_sample = n_features * n_features if covariance_type in ("full", "tied") else 3 * n_features
    n_threads = threads_for_work(n_threads, n_samples * n_components * per_sample)
    chunk = chunk_size_for(n_samples, n_threads)
    if covariance_type in ("full", "tied") and full_uses_stacked(
        n_components, n_features, covariance_type
    ):
        factors64 = np.ascontiguousarray(
            prec_chol if covariance_type == "full" else prec_chol[None], dtype=np.float64
        )
        # S = [U_1 ... U_K], (D, K D): stacked[:, k D:(k + 1) D] = U_k.
        stacked = np.ascontiguousarray(
            factors64.transpose(1, 0, 2).reshape(n_features, -1), dtype=X.dtype
        )
        n_threads = threads_for_work(n_threads, n_samples * n_features * stacked.shape[1] * 2)
        with single_threaded_blas():
            status = _estep.estep_full_stacked(
                X,
                means,
                stacked,
                factors64,
                covariance_type == "tied",
                log_det,
                log_weights,
                out,
                log_norm,
                mode,
                STACKED_CHUNK,
                n_threads,
            )
        if status != _estep.STACKED_UNSAFE:
            check_status(status, "estep_full_stacked")
            return out, log_norm
    if covariance_type in ("full", "tied"):
        factors = prec_chol if covariance_type == "full" else prec_chol[None]
        factors = np.ascontiguousarray(factors, dtype=X.dtype)
        with single_threaded_blas():
            check_status(
                _estep.estep_full(
                    X,
                    means,
                    factors,
                    covariance_type == "tied",
                    log_det,
                    log_weights,
                    out,
                    log_norm,
                    mode,
                    chunk,
                    n_threads,
                ),
                "estep_full",
            )
    else:
        prec_sqrt = precision_rows(prec_chol, covariance_type, n_components, n_features)
        if diag_uses_gemm(n_components, n_features):
            n_threads = threads_for_work(n_threads, n_samples * n_components * 4 * n_features)
            with single_threaded_blas():
                check_status(
                    _estep.estep_diag_gemm(
                        X,
                        means,
                        prec_sqrt,
                        log_det,
                        log_weights,
                        out,
                        log_norm,
                        mode,
                        _diag_estep_chunk(n_components),
                        n_threads,
                    ),
                    "estep_diag_gemm",
                )
        else:
            check_status(
                _estep.estep_diag(
                    X, means, prec_sqrt, log_det, log_weights, out, log_norm, mode, chunk, n_threads
                ),
                "estep_diag",
            )
    return out, log_norm


# From this many components on, the diagonal and spherical kernels run as
# GEMMs per chunk (``estep_diag_gemm``, ``weighted_diag_stats``) instead of
# term by term. Below it the term-by-term kernels are as fast (K = 4) or
# faster (K = 2: 1.5x on the E-step), measured in
# benchmarks/results/diag_speed.md, and keep their float64 products, in which
# float32 samples are used exactly; from K = 8 the GEMMs are 1.6x (E-step)
# and 2.9x (M-step) faster, and the gap grows with K.
DIAG_GEMM_MIN_COMPONENTS = 8
# Rows of an E-step chunk: its (rows, K) float64 block of log-densities is
# normalised while it is still in the core's cache (about 256 KiB; at K = 256,
# 32 to 1024 rows measured the same within the machine's noise).
_DIAG_ESTEP_BLOCK = 32768
# Rows of an M-step chunk: the reduction dimension of its GEMM.
DIAG_MSTEP_CHUNK = 1024


# Covariance types whose E-step runs as one GEMM per chunk against the stacked
# factors (``estep_full_stacked``). Tied covariances share one factor: one D x D
# product per sample instead of K, 1.7x (D = 64) to 2.6x (D = 784) faster at
# K = 10. For full covariances the GEMM does twice the trmm's flops, and on the
# reference machine (OpenBLAS, AVX-512) it measured 0.5x-1.05x of one trmm per
# component (benchmarks/results/low_d_estep.md), so they keep the trmm.
STACKED_TYPES = ("tied",)
# Rows of a stacked E-step chunk: fixed, so that results (which depend on each
# chunk's centre) never depend on the number of threads.
STACKED_CHUNK = 256


def full_uses_stacked(n_components: int, n_features: int, covariance_type: str) -> bool:
    """Whether the full/tied E-step of a K-component model runs as one GEMM per chunk."""
    return covariance_type in STACKED_TYPES and n_features > 0 and n_components > 1


def diag_uses_gemm(n_components: int, n_features: int) -> bool:
    """Whether the diagonal/spherical E- and M-steps of a K-component model run as GEMMs."""
    return n_components >= DIAG_GEMM_MIN_COMPONENTS and n_features > 0


def _diag_estep_chunk(n_components: int) -> int:
    """Rows per chunk of ``estep_diag_gemm``: fixed by K alone, so that the
    result (which depends on each chunk's centre) never depends on the
    number of threads."""
    return int(min(1024, max(32, _DIAG_ESTEP_BLOCK // max(n_components, 1))))


def precision_rows(
    prec_chol: np.ndarray, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """The (K, D) float64 square-root precisions the diagonal kernels take (a spherical
    component's value repeated along its row)."""
    return np.ascontiguousarray(
        np.broadcast_to(
            prec_chol[:, None] if covariance_type == "spherical" else prec_chol,
            (n_components, n_features),
        ),
        dtype=np.float64,
    )


def weighted_means(
    X: np.ndarray, resp: np.ndarray, *, n_threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """``nk = sum_n r_nk`` (without regularisation) and ``sum_n r_nk x_n`` in float64."""
    n_components = resp.shape[1]
    n_threads = threads_for_work(n_threads, 2.0 * len(X) * n_components * X.shape[1])
    n_slots = max(1, n_threads)
    thread_nk = np.zeros((n_slots, n_components))
    thread_sums = np.zeros((n_slots, n_components, X.shape[1]))
    check_status(
        _mstep.weighted_sums(
            X,
            np.ascontiguousarray(resp, dtype=np.float64),
            thread_nk,
            thread_sums,
            chunk_size_for(len(X), n_threads),
            n_threads,
        ),
        "weighted_sums",
    )
    return thread_nk.sum(axis=0), thread_sums.sum(axis=0)


def sufficient_statistics(
    X: np.ndarray, resp: np.ndarray, covariance_type: str, *, n_threads: int
) -> SufficientStats:
    """Centred M-step statistics of ``X`` under responsibilities ``resp``.

    Scatter matrices are computed around the new means (not as
    E[xx^T] - mu mu^T), which keeps float32 inputs accurate; float32 samples
    accumulate in float64. Responsibilities that are exactly zero cost
    nothing: the scatter kernel gathers, per component, only the samples
    that contribute.
    """
    resp = np.ascontiguousarray(resp, dtype=np.float64)
    n_samples, n_features = X.shape
    n_components = resp.shape[1]
    if covariance_type in ("diag", "spherical") and diag_uses_gemm(n_components, n_features):
        return _diag_statistics_gemm(X, resp, covariance_type, n_threads=n_threads)
    raw_nk, sums = weighted_means(X, resp, n_threads=n_threads)
    means = sums / (raw_nk + MASS_FLOOR)[:, None]
    per_sample = n_features * n_features if covariance_type in ("full", "tied") else 3 * n_features
    n_threads = threads_for_work(n_threads, n_samples * n_components * per_sample)
    n_slots = max(1, n_threads)
    chunk = chunk_size_for(n_samples, n_threads)
    if covariance_type in ("full", "tied"):
        scatter = np.empty((n_components, n_features, n_features))
        thread_acc = np.empty((n_slots, n_features, n_features))
        with single_threaded_blas():
            check_status(
                _mstep.weighted_full_scatter(X, resp, means, scatter, thread_acc, chunk, n_threads),
                "weighted_full_scatter",
            )
        if covariance_type == "tied":
            scatter = scatter.sum(axis=0)
    else:
        thread_acc = np.zeros((n_slots, n_components, n_features))
        check_status(
            _mstep.weighted_diag_scatter(X, resp, means, thread_acc, chunk, n_threads),
            "weighted_diag_scatter",
        )
        scatter = thread_acc.sum(axis=0)
    return SufficientStats(covariance_type, raw_nk, means, scatter)


def _diag_statistics_gemm(
    X: np.ndarray, resp: np.ndarray, covariance_type: str, *, n_threads: int
) -> SufficientStats:
    """``sufficient_statistics`` for diag/spherical by ``weighted_diag_stats``: centred
    per chunk, joined by Chan et al.'s update chunk by chunk and then slot by slot."""
    n_samples, n_features = X.shape
    n_components = resp.shape[1]
    n_threads = threads_for_work(n_threads, n_samples * n_components * (4.0 * n_features + 2))
    n_slots = max(1, n_threads)
    counts = np.zeros((n_slots, n_components))
    slot_means = np.zeros((n_slots, n_components, n_features))
    slot_scatter = np.zeros((n_slots, n_components, n_features))
    with single_threaded_blas():
        check_status(
            _mstep.weighted_diag_stats(
                X, resp, counts, slot_means, slot_scatter, DIAG_MSTEP_CHUNK, n_threads
            ),
            "weighted_diag_stats",
        )
    total, mean, scatter = counts[0], slot_means[0], slot_scatter[0]
    for n_b, mean_b, scatter_b in zip(counts[1:], slot_means[1:], slot_scatter[1:]):
        n = total + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(n > 0, n_b / n, 0.0)
        delta = mean_b - mean
        scatter = scatter + scatter_b + (total * share)[:, None] * delta**2
        mean = mean + share[:, None] * delta
        total = n
    # The statistics hold the means with the mass floor (``sums / (n + MASS_FLOOR)``,
    # as every other path) and the scatter around those.
    means = mean * (total / (total + MASS_FLOOR))[:, None]
    scatter = scatter + total[:, None] * (mean - means) ** 2
    return SufficientStats(covariance_type, total, means, scatter)


def floor_responsibilities(resp: np.ndarray, resp_floor: float) -> np.ndarray:
    """Zero, in place, every ``r_nk < resp_floor * N_k / N`` (N_k = sum_n r_nk).

    The entries removed from component k sum to less than
    ``resp_floor * N_k``, so each component keeps all but a fraction
    ``resp_floor`` of its mass. Rows are normalised, so a sample's largest
    responsibility is at least 1/K and survives any floor below 1/K:
    every sample keeps contributing somewhere, however improbable it is.
    Returns ``resp``.
    """
    n_samples = len(resp)
    if resp_floor > 0 and n_samples:
        threshold = resp.sum(axis=0) * (resp_floor / n_samples)
        np.putmask(resp, resp < threshold, 0.0)
    return resp


def estimate_gaussian_parameters(
    X: np.ndarray, resp: np.ndarray, reg_covar: float, covariance_type: str, *, n_threads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M-step: ``(nk, means, covariances)`` from responsibilities.

    As in scikit-learn, ``nk`` carries ``10 * eps`` so that a component
    that lost all its samples keeps a finite mean (zero) and a covariance
    of ``reg_covar * I``, instead of producing NaN (see
    :mod:`gmmfast.mixture._stats`).
    """
    stats = sufficient_statistics(X, resp, covariance_type, n_threads=n_threads)
    return stats.parameters(reg_covar, overwrite=True)


def logsumexp(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    """log(sum(exp(a))) along ``axis`` without overflow (scipy.special's would
    cost a fifth of a second of import for this one line of arithmetic).

    A slice of -inf gives -inf, and so does an empty one (the log of an empty
    sum); +inf gives +inf; NaN propagates.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0 or (axis is not None and a.shape[axis] == 0):
        shape = () if axis is None else np.delete(a.shape, axis)
        return np.full(shape, -np.inf)
    top = np.max(a, axis=axis, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True)) + top
    return out.reshape(()) if axis is None else np.squeeze(out, axis=axis)


def check_data_scale(X: np.ndarray, name: str = "X") -> None:
    """Refuse samples whose spread would overflow the EM arithmetic.

    Scatter matrices sum squared deviations: in float64 over all samples,
    in float32 over a kernel chunk (up to 1,024 rows) before joining the
    float64 sum. Deviations beyond those bounds would turn covariances into
    infinity and the fit into garbage (a lower bound of -inf), so the fit
    stops with a clear error instead. ``X`` is the validated compute array
    (0 at missing entries, which only widens the span by the origin).
    """
    if X.size == 0:
        return
    lo = X.min(axis=0).astype(np.float64)
    hi = X.max(axis=0).astype(np.float64)
    span = float(np.max(hi - lo))
    n_samples, n_features = X.shape
    if X.dtype == np.float32:
        limit = np.sqrt(np.finfo(np.float32).max / 1024.0) / 10.0
    else:
        limit = np.sqrt(np.finfo(np.float64).max / (float(n_samples) * n_features)) / 10.0
    if not span <= limit:
        raise ValueError(
            f"{name} spans {span:.3g} in one feature: its squared deviations overflow "
            f"{X.dtype} arithmetic (at most {limit:.3g}); rescale {name} (for example divide it by "
            "its standard deviation)."
        )


def check_explained(log_norm: np.ndarray, name: str = "X") -> None:
    """Refuse posteriors of samples that no component explains: where the
    density underflows to 0 under every component, p(k | x) is 0/0 and a
    row of probabilities would not sum to one."""
    lost = np.flatnonzero(~(log_norm > -np.inf))
    if len(lost):
        raise ValueError(
            f"{name} has {len(lost)} sample(s) (first: row {lost[0]}) whose density is 0 under every "
            "component, so their posterior probabilities are undefined: values far outside the fitted "
            "data (check their scale)."
        )


def missing_data_flops(n_components: int, n_units: int, n_samples: int, n_features: int) -> float:
    """Work of one missing-data kernel call: a factorisation per (mask unit, component)
    and the products of every sample (what ``threads_for_work`` weighs)."""
    return n_components * (n_units * n_features**3 / 3 + n_samples * n_features**2)


def covariance_shape(covariance_type: str, n_components: int, n_features: int) -> tuple[int, ...]:
    """Shape of ``covariances_`` (and ``precisions_cholesky_``) for a covariance type."""
    K, D = n_components, n_features
    return {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[covariance_type]


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Free parameters of the mixture (for BIC/AIC)."""
    if covariance_type == "full":
        cov_params = n_components * n_features * (n_features + 1) / 2.0
    elif covariance_type == "tied":
        cov_params = n_features * (n_features + 1) / 2.0
    elif covariance_type == "diag":
        cov_params = n_components * n_features
    else:
        cov_params = n_components
    return int(cov_params + n_components * n_features + n_components - 1)


def full_covariances(mixture) -> np.ndarray:
    """(K, D, D) covariances of a fitted mixture whatever its ``covariance_type``
    (a gmmfast or scikit-learn mixture, or anything with ``means_`` and ``covariances_``)."""
    K, D = np.shape(mixture.means_)
    cov = np.asarray(mixture.covariances_)
    kind = getattr(mixture, "covariance_type", "full")
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (K, D, D))
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(D, dtype=cov.dtype) * c for c in cov])
