"""Exact EM for Gaussian mixtures on data with missing values.

A missing value is NaN in X, or False in an explicit boolean ``observed``
array. Each iteration is exact EM for the observed-data likelihood:

E-step
    Responsibilities r_nk = p(k | x_o) from the exact marginal densities
    N(x_o | mu_ko, Sigma_koo) (the missing-data E-step of :mod:`gmmfast.mixture._missing`);
    the mean of the per-sample log marginal likelihoods is the lower bound.
M-step
    Expected sufficient statistics: with xhat_nk = x_n whose missing part
    is replaced by E_k[x_m | x_o] and C_nk = Cov_k[x_m | x_o] on the (m, m)
    block,

        N_k     = sum_n r_nk (+ 10 eps, as for complete data)
        mu_k    = sum_n r_nk xhat_nk / N_k
        Sigma_k = sum_n r_nk [(xhat_nk - mu_k)(xhat_nk - mu_k)^T + C_nk] / N_k + reg_covar I

    (tied: pooled over components and divided by sum_k N_k; diag: the
    diagonal; spherical: the mean of the diagonal), the same conventions
    as :func:`gmmfast._gaussian.estimate_gaussian_parameters`, which is
    what the complete-data case runs.

Full and tied statistics come from the compiled kernel
:mod:`gmmfast._kernels._missing_mstep`; diagonal and spherical ones have a
closed form (coordinates are independent given the component, so
E_k[x_m | x_o] = mu_km and C_nk = diag(sigma^2_km) on the missing
coordinates) computed here with NumPy. Statistics are centred on the
current means and corrected afterwards, so float64 accuracy is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._kernels import _missing_mstep, check_status
from ..utils._threads import single_threaded_blas, threads_for_work
from . import _gaussian
from ._missing import (
    _UNIT_ROWS,
    mask_units,
    missing_log_prob,
    refuse_infinity,
    split_observed,
    uncoupled_features,
)
from ._stats import MASS_FLOOR, SufficientStats


@dataclass(frozen=True)
class MissingData:
    """Training samples with missing values, validated once per fit.

    ``X`` is C-contiguous of the compute dtype with 0 at missing entries,
    ``observed`` a uint8 mask (1: observed); ``order``/``unit_ptr`` group
    the samples by mask for the M-step kernel (see
    :func:`gmmfast._missing.mask_units`).
    """

    X: np.ndarray
    observed: np.ndarray
    order: np.ndarray
    unit_ptr: np.ndarray
    unit_rows: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape


def prepare(
    X: Any, observed: Any, *, dtype: type, unit_rows: int = _UNIT_ROWS
) -> MissingData | None:
    """Validate training data with missing values.

    Returns None when nothing is missing after all (``observed`` all True
    and no NaN): the caller then runs ordinary EM.

    Raises
    ------
    ValueError
        As :func:`gmmfast._missing.split_observed` (dtype, shape, a bad
        ``observed``), and for 0 features, infinity anywhere in X (even
        where ``observed`` is False), or a feature missing in every sample.
    """
    Xf, obs = split_observed(X, observed, dtype=dtype, n_features=None)
    if Xf.shape[1] == 0:
        raise ValueError("X has 0 features.")
    refuse_infinity(X)
    if obs.all():
        return None
    seen = obs.any(axis=0)
    if not seen.all():
        j = int(np.flatnonzero(~seen)[0])
        raise ValueError(
            f"feature {j} is missing in every sample, so it cannot be modelled; "
            "drop it or provide at least one observed value."
        )
    order, unit_ptr = mask_units(obs, unit_rows)
    return MissingData(Xf, obs, order, unit_ptr, int(unit_rows))


def fill_column_means(data: MissingData) -> np.ndarray:
    """X with each missing value replaced by its feature's mean over the
    samples where it is observed (for initialisation only)."""
    obs = data.observed.astype(bool)
    col_means = data.X.sum(axis=0, dtype=np.float64) / obs.sum(axis=0)
    return np.ascontiguousarray(np.where(obs, data.X, col_means.astype(data.X.dtype)))


def log_prob(
    data: MissingData,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
    *,
    mode: int,
    n_threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """E-step on the observed values: ``(out, log_norm)`` as in
    :func:`gmmfast._gaussian.estimate_log_prob`."""
    out, log_norm, _ = missing_log_prob(
        data.X,
        data.observed,
        weights,
        means,
        covariances,
        prec_chol,
        covariance_type,
        mode=mode,
        n_threads=n_threads,
    )
    return out, log_norm


def estimate_parameters(
    data: MissingData,
    resp: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    *,
    n_threads: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M-step of exact EM: ``(nk, means, covariances)`` from responsibilities.

    ``means``, ``covariances`` and ``prec_chol`` are the parameters of the
    E-step that produced ``resp``: they define the conditional means and
    covariances of the missing values.
    """
    stats = expected_statistics(
        data, resp, means, covariances, prec_chol, covariance_type, reg_covar, n_threads=n_threads
    )
    return stats.parameters(reg_covar, overwrite=True)


def em_statistics(
    data: np.ndarray | MissingData,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    resp_floor: float,
    *,
    n_threads: int,
) -> tuple[SufficientStats, np.ndarray]:
    """One E-step's statistics: ``(stats, log_norm)`` of a batch or block under the
    given parameters, complete data by the ordinary kernels, missing values by the
    exact ones, with the M-step's responsibility floor applied in between (what
    ``fit`` does per iteration; the streaming and Dask paths call this)."""
    if isinstance(data, MissingData):
        resp, log_norm = log_prob(
            data,
            weights,
            means,
            covariances,
            prec_chol,
            covariance_type,
            mode=_gaussian.MODE_RESP,
            n_threads=n_threads,
        )
        _gaussian.floor_responsibilities(resp, resp_floor)
        stats = expected_statistics(
            data,
            resp,
            means,
            covariances,
            prec_chol,
            covariance_type,
            reg_covar,
            n_threads=n_threads,
        )
    else:
        resp, log_norm = _gaussian.estimate_log_prob(
            data,
            weights,
            means,
            prec_chol,
            covariance_type,
            mode=_gaussian.MODE_RESP,
            n_threads=n_threads,
        )
        _gaussian.floor_responsibilities(resp, resp_floor)
        stats = _gaussian.sufficient_statistics(data, resp, covariance_type, n_threads=n_threads)
    return stats, log_norm


def expected_statistics(
    data: MissingData,
    resp: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    *,
    n_threads: int,
) -> SufficientStats:
    """Expected centred statistics of exact EM (see :mod:`._stats`).

    The kernels return moments around the E-step's means ``mu``:
    ``s1 = sum_n r (xhat - mu)`` and ``S2 = sum_n r [(xhat - mu)(xhat - mu)^T + C]``
    with C the conditional covariance of the missing values; here they are
    moved to the new means ``mu + delta``.
    """
    resp = np.ascontiguousarray(resp, dtype=np.float64)
    means = np.ascontiguousarray(means, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        raw_nk, s1, s2 = _full_statistics(
            data, resp, means, covariances, prec_chol, covariance_type, reg_covar, n_threads
        )
    else:
        raw_nk, s1, s2 = _diag_statistics(data, resp, means, covariances, covariance_type)
    # sum_n r xhat = s1 + R mu, so the new mean is mu + delta with
    new_means = (s1 + raw_nk[:, None] * means) / (raw_nk + MASS_FLOOR)[:, None]
    delta = new_means - means
    if covariance_type in ("full", "tied"):
        # Around the new means: S2 - s1 delta^T - delta s1^T + R delta delta^T.
        cross = s1[:, :, None] * delta[:, None, :]
        outer = raw_nk[:, None, None] * delta[:, :, None] * delta[:, None, :]
        correction = outer - cross - np.swapaxes(cross, 1, 2)
        if covariance_type == "full":
            scatter = s2 + correction
            scatter = 0.5 * (scatter + np.swapaxes(scatter, 1, 2))
        else:
            scatter = s2[0] + correction.sum(axis=0)
            scatter = 0.5 * (scatter + scatter.T)
    else:
        scatter = s2 - 2.0 * delta * s1 + raw_nk[:, None] * delta**2
    return SufficientStats(covariance_type, raw_nk, new_means, scatter)


def _full_statistics(
    data, resp, means, covariances, prec_chol, covariance_type, reg_covar, n_threads
):
    """``(R, s1, S2)`` of the kernel (see :mod:`gmmfast._kernels._missing_mstep`)."""
    tied = covariance_type == "tied"
    n_components, n_features = means.shape
    precisions = _gaussian.precisions_from_cholesky(prec_chol, covariance_type)
    covs = np.ascontiguousarray(covariances[None] if tied else covariances, dtype=np.float64)
    precisions = np.ascontiguousarray(precisions[None] if tied else precisions, dtype=np.float64)
    raw_nk = np.zeros(n_components)
    s1 = np.zeros((n_components, n_features))
    s2 = np.empty((1 if tied else n_components, n_features, n_features))
    n_units = len(data.unit_ptr) - 1
    flops = _gaussian.missing_data_flops(n_components, n_units, len(data.X), n_features)
    n_threads = threads_for_work(n_threads, flops)
    with single_threaded_blas():
        failed = check_status(
            _missing_mstep.missing_mstep_full(
                data.X,
                data.observed,
                data.order,
                data.unit_ptr,
                resp,
                means,
                covs,
                precisions,
                uncoupled_features(covs),
                tied,
                raw_nk,
                s1,
                s2,
                data.unit_rows,
                n_threads,
            ),
            "missing-data M-step kernel",
        )
    if failed:
        what = "the tied covariance" if tied else f"component {failed - 1}"
        raise _gaussian.FactorizationError(
            _gaussian._factorization_message(
                f"{what} restricted to the observed features of a sample", reg_covar
            )
        )
    return raw_nk, s1, s2


def _diag_statistics(data, resp, means, covariances, covariance_type):
    """``(R, s1, s2)`` in closed form: s2 is the diagonal of S2, shape (K, D)."""
    n_components, n_features = means.shape
    variances = np.broadcast_to(
        covariances[:, None] if covariance_type == "spherical" else covariances,
        (n_components, n_features),
    )
    observed = data.observed.astype(bool)
    X = data.X.astype(np.float64)
    raw_nk = resp.sum(axis=0)
    # sum_n r_nk [d missing in n]: each such value adds C = sigma^2_kd.
    missing_mass = resp.T @ (~observed).astype(np.float64)
    s1 = np.empty((n_components, n_features))
    s2 = np.empty((n_components, n_features))
    for k in range(n_components):
        dev = np.where(observed, X - means[k], 0.0)  # xhat - mu_k: 0 where missing
        s1[k] = resp[:, k] @ dev
        s2[k] = resp[:, k] @ (dev * dev)
    s2 += missing_mass * variances
    return raw_nk, s1, s2
