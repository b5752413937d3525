"""Missing values: masks, mask groups and the missing-data E-step.

A missing value is NaN in X, or False in an explicit boolean ``observed``
array of X's shape. Rows that are complete go to the ordinary E-step
kernel; incomplete rows are grouped by mask so each factorisation of a
marginal covariance is shared by every row with that mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._kernels import _missing_estep, check_status
from ..utils._threads import single_threaded_blas, threads_for_work
from ..utils._validation import check_array, check_matrix, masked_count
from . import _gaussian

_UNIT_ROWS = 256  # most rows per missing-data work unit (bounds per-thread memory)


def split_observed(
    X: Any,
    observed: Any,
    *,
    dtype: type,
    n_features: int | None,
    name: str = "X",
    estimator: str | None = None,
):
    """Validate X with missing values; return ``(X_filled, observed)``.

    ``X_filled`` is C-contiguous of ``dtype`` with missing entries set to
    0 (they are never used), ``observed`` a C-contiguous uint8 mask. The
    input is never modified.
    """
    # A masked entry of a NumPy masked array is a missing value: its value is never read.
    unmasked = np.ma.getmaskarray(X) if isinstance(X, np.ma.MaskedArray) else None
    arr = check_matrix(np.ma.getdata(X), name=name, n_features=n_features, estimator=estimator)
    if observed is None:
        mask = ~np.isnan(arr) if arr.dtype.kind == "f" else np.ones(arr.shape, dtype=bool)
        if unmasked is not None:
            mask &= ~unmasked
    else:
        mask = np.asarray(observed)
        if mask.dtype != bool:
            raise ValueError(f"observed must be a boolean array; got dtype {mask.dtype}.")
        if mask.shape != arr.shape:
            raise ValueError(f"observed has shape {mask.shape}, but {name} has shape {arr.shape}.")
        if unmasked is not None:
            mask = mask & ~unmasked
        if arr.dtype.kind == "f" and np.isnan(arr[mask]).any():
            raise ValueError(f"{name} has NaN at positions that observed marks as observed.")
    filled = np.where(mask, arr, 0).astype(dtype, order="C")
    if not np.isfinite(filled).all():
        raise ValueError(f"{name} contains infinity.")
    return filled, np.ascontiguousarray(mask, dtype=np.uint8)


def mask_units(observed: np.ndarray, unit_rows: int = _UNIT_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Order rows so equal masks are adjacent, and cut them into work units.

    Returns ``order`` (row indices) and ``unit_ptr`` such that unit u is
    ``order[unit_ptr[u]:unit_ptr[u + 1]]``: one mask, at most ``unit_rows`` rows.
    """
    packed = np.packbits(observed.astype(bool), axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1])))[:, 0]
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable").astype(np.intp)
    bounds = []
    start = 0
    for count in counts:
        bounds.extend(range(start, start + count, unit_rows))
        start += count
    bounds.append(start)
    return order, np.asarray(bounds, dtype=np.intp)


def unit_batches(unit_ptr: np.ndarray, n_threads: int, max_rows: int = _UNIT_ROWS) -> np.ndarray:
    """Group consecutive mask units into batches, the missing-data kernel's parallel work items.

    A batch holds at most ``max_rows`` rows, and about a quarter of a
    thread's share of them, so every thread gets several batches (load
    balance) while each batch still amortises reading a component's
    covariance over many rows. Returns ``batch_ptr``: batch b is units
    ``batch_ptr[b]`` to ``batch_ptr[b + 1] - 1``.
    """
    sizes = np.diff(unit_ptr)
    target = int(np.clip(-(-int(sizes.sum()) // (4 * max(int(n_threads), 1))), 1, max_rows))
    bounds = [0]
    rows = 0
    for u, size in enumerate(sizes.tolist()):
        if rows and rows + size > target:
            bounds.append(u)
            rows = 0
        rows += size
    bounds.append(len(sizes))
    return np.asarray(bounds, dtype=np.intp)


def missing_log_prob(
    X: np.ndarray,
    observed: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
    *,
    mode: int,
    n_threads: int,
    impute: bool = False,
    cache: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """E-step on the observed coordinates only (exact marginals).

    Returns ``(out, log_norm, imputed)`` where ``out``/``log_norm`` are as
    in :func:`gmmfast._gaussian.estimate_log_prob` and ``imputed`` (when
    ``impute``) is X with missing entries replaced by the responsibility-
    weighted conditional means (float64). ``cache``, a dict the caller
    keeps with its parameters, saves the precisions and uncoupled
    coordinates between calls (valid while ``prec_chol`` is the same object).
    """
    n_samples, n_features = X.shape
    n_components = len(means)
    complete = observed.all(axis=1)
    out = np.empty((n_samples, n_components))
    log_norm = np.empty(n_samples)
    imputed = X.astype(np.float64) if impute else None
    if complete.any():
        rows = np.flatnonzero(complete)
        out[rows], log_norm[rows] = _gaussian.estimate_log_prob(
            np.ascontiguousarray(X[rows]),
            weights,
            means,
            prec_chol,
            covariance_type,
            mode=mode,
            n_threads=n_threads,
        )
    rows = np.flatnonzero(~complete)
    if len(rows) == 0:
        return out, log_norm, imputed
    sub_X = np.ascontiguousarray(X[rows])
    sub_obs = np.ascontiguousarray(observed[rows])
    if covariance_type in ("full", "tied"):
        sub_out, sub_norm, sub_imp = _missing_full(
            sub_X,
            sub_obs,
            weights,
            means,
            covariances,
            prec_chol,
            covariance_type,
            mode=mode,
            n_threads=n_threads,
            impute=impute,
            cache=cache,
        )
    else:
        sub_out, sub_norm, sub_imp = _missing_diag(
            sub_X, sub_obs, weights, means, prec_chol, covariance_type, mode=mode, impute=impute
        )
    out[rows], log_norm[rows] = sub_out, sub_norm
    if impute:
        imputed[rows] = sub_imp
    return out, log_norm, imputed


def _missing_full(
    X,
    observed,
    weights,
    means,
    covariances,
    prec_chol,
    covariance_type,
    *,
    mode,
    n_threads,
    impute,
    cache=None,
):
    n_samples, n_features = X.shape
    tied = covariance_type == "tied"
    covs, precisions, isolated = _kernel_parameters(
        covariances, prec_chol, covariance_type, X.dtype, cache
    )
    log_det = np.broadcast_to(
        _gaussian.log_det_cholesky(prec_chol, covariance_type, n_features), (len(means),)
    ).astype(np.float64)
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(weights, dtype=np.float64))
    order, unit_ptr = mask_units(observed)
    n_units = len(unit_ptr) - 1
    flops = _gaussian.missing_data_flops(len(means), n_units, n_samples, n_features)
    n_threads = threads_for_work(n_threads, flops)
    batch_ptr = unit_batches(unit_ptr, n_threads)
    out = np.empty((n_samples, len(means)))
    log_norm = np.empty(n_samples)
    imputed = np.empty((n_samples, n_features)) if impute else None
    with single_threaded_blas():
        failed = check_status(
            _missing_estep.missing_estep_full(
                X,
                observed,
                order,
                unit_ptr,
                batch_ptr,
                np.ascontiguousarray(means, dtype=np.float64),
                covs,
                precisions,
                isolated,
                tied,
                log_det,
                log_weights,
                out,
                log_norm,
                mode,
                imputed,
                _UNIT_ROWS,
                n_threads,
            ),
            "missing-data kernel",
        )
    if failed:
        raise _gaussian.FactorizationError(
            f"The covariance of component {failed - 1} restricted to the observed "
            "pixels is not positive definite. Increase reg_covar."
        )
    return out, log_norm, imputed


def _kernel_parameters(covariances, prec_chol, covariance_type, dtype, cache):
    """Covariances and precisions as (K or 1, D, D) arrays in the samples'
    dtype, and the uncoupled coordinates, from ``cache`` when it was filled
    for these very parameter arrays."""
    source = (covariances, prec_chol)
    if (
        cache is not None
        and "source" in cache
        and cache["dtype"] == dtype
        and all(a is b for a, b in zip(cache["source"], source))
    ):
        return cache["covariances"], cache["precisions"], cache["isolated"]
    covs = covariances[None] if covariance_type == "tied" else covariances
    precisions = _gaussian.precisions_from_cholesky(prec_chol, covariance_type)
    precisions = precisions[None] if covariance_type == "tied" else precisions
    precisions = np.ascontiguousarray(precisions, dtype=dtype)
    isolated = uncoupled_features(covs)
    covs = np.ascontiguousarray(covs, dtype=dtype)
    if cache is not None:
        cache.update(
            source=source, dtype=dtype, covariances=covs, precisions=precisions, isolated=isolated
        )
    return covs, precisions, isolated


def uncoupled_features(covariances: np.ndarray) -> np.ndarray:
    """(K, D) uint8: 1 where row j of covariance k is exactly zero off the diagonal.

    Such a coordinate is independent of the others in that component (a
    feature constant in the component's data has only ``reg_covar`` as its
    variance): the missing-data kernel treats it as a 1-d Gaussian and leaves it
    out of every factorisation, which is exact and, on images with blank
    borders, much cheaper.
    """
    nonzero = np.count_nonzero(covariances, axis=2)
    diagonal = np.diagonal(covariances, axis1=1, axis2=2) != 0
    return np.ascontiguousarray(nonzero == diagonal.astype(np.intp), dtype=np.uint8)


def _missing_diag(X, observed, weights, means, prec_chol, covariance_type, *, mode, impute):
    """Diagonal covariances factorise over coordinates: drop the missing ones."""
    n_samples, n_features = X.shape
    prec = (
        np.broadcast_to(
            prec_chol[:, None] if covariance_type == "spherical" else prec_chol,
            (len(means), n_features),
        )
        ** 2
    )
    obs = observed.astype(np.float64)
    x = X.astype(np.float64) * obs
    # sum_d o_d (x_d - mu_d)^2 p_d, expanded into three matrix products
    quad = (x * x) @ prec.T - 2.0 * x @ (means * prec).T + obs @ (means**2 * prec).T
    log_det = obs @ np.log(prec).T * 0.5
    weighted = -0.5 * (obs.sum(axis=1, keepdims=True) * np.log(2 * np.pi) + quad) + log_det
    with np.errstate(divide="ignore"):
        weighted += np.log(np.asarray(weights, dtype=np.float64))
    top = weighted.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_norm = (top + np.log(np.exp(weighted - top).sum(axis=1, keepdims=True)))[:, 0]
        resp = np.exp(weighted - log_norm[:, None])
    imputed = None
    if impute:
        # Coordinates are independent given the component: E[x_m | x_o, k] = mu_km.
        imputed = np.where(observed.astype(bool), X, resp @ means)
    if mode == _gaussian.MODE_LOG_RESP:
        return weighted - log_norm[:, None], log_norm, imputed
    if mode == _gaussian.MODE_RESP:
        return resp, log_norm, imputed
    return weighted, log_norm, imputed


MASK_KINDS = ("random", "top", "left", "centre")


def pixel_mask(
    shape: tuple[int, int], kind: str, fraction: float = 0.5, seed: int = 0
) -> np.ndarray:
    """Boolean ``observed`` mask (False = missing) of shape (n, pixels) for square images.

    'random': each image loses exactly ``round(fraction * pixels)`` pixels,
    its own random set (from ``seed``); 'top' / 'left': the top or left
    half of every image; 'centre': a centred square of half the side (14 x 14
    on MNIST's 28 x 28).
    """
    n, d = shape
    if kind == "random":
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"fraction must lie in [0, 1); got {fraction}")
        ranks = np.random.default_rng(seed).random((n, d)).argsort(axis=1)
        return ranks >= int(round(fraction * d))
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind must be one of {MASK_KINDS}; got {kind!r}")
    side = int(round(np.sqrt(d)))
    if side * side != d:
        raise ValueError(f"a {kind!r} mask needs square images; {d} pixels is not a square")
    grid = np.ones((side, side), dtype=bool)
    half, quarter = side // 2, side // 4
    if kind == "top":
        grid[:half] = False
    elif kind == "left":
        grid[:, :half] = False
    else:
        grid[quarter : quarter + half, quarter : quarter + half] = False
    return np.broadcast_to(grid.ravel(), (n, d)).copy()


def check_possibly_missing(
    X: Any, observed: Any, *, dtype: type, n_features: int | None, estimator: str | None = None
):
    """Validate X that may have missing values: ``(X, None)`` for complete
    data (no mask is built), else ``split_observed``'s ``(X_filled, observed)``."""
    if observed is None and not has_nan(X):
        return check_array(X, dtype=dtype, n_features=n_features, estimator=estimator), None
    return split_observed(X, observed, dtype=dtype, n_features=n_features, estimator=estimator)


def refuse_infinity(X: Any) -> None:
    """Infinity is refused anywhere in training data, also where ``observed`` is False
    (a value there is a corrupted one, not a missing one); a masked entry of a masked
    array is a missing value whose value is never read."""
    arr = np.ma.getdata(X) if isinstance(X, np.ma.MaskedArray) else np.asarray(X)
    if arr.dtype.kind != "f":
        return
    inf = np.isinf(arr)
    if isinstance(X, np.ma.MaskedArray):
        inf &= ~np.ma.getmaskarray(X)
    if inf.any():
        raise ValueError("X contains infinity.")


def has_nan(X: Any) -> bool:
    """True if X has a missing value: a NaN, or a masked entry of a masked array
    (cheap test before validation)."""
    if masked_count(X):
        return True
    try:
        arr = np.asarray(np.ma.getdata(X))
    except ValueError:  # ragged: the validation that follows names it
        return False
    return arr.dtype.kind == "f" and bool(np.isnan(arr.sum()) and np.isnan(arr).any())


def conditional_samples(
    X: np.ndarray,
    observed: np.ndarray,
    components: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    rng: np.random.RandomState,
) -> np.ndarray:
    """Draw x_m ~ N(E_k[x_m | x_o], Cov_k[x_m | x_o]) for each row's component k.

    Rows sharing a mask and a component share one factorisation (a loop
    over those groups, not over rows).
    """
    filled = X.astype(np.float64, copy=True)
    incomplete = ~observed.all(axis=1)
    if not incomplete.any():
        return filled
    rows = np.flatnonzero(incomplete)
    packed = np.packbits(observed[rows], axis=1)
    # The component's 8 bytes (a uint8 cast would merge components k and k + 256).
    comp_bytes = components[rows].astype(np.int64)[:, None].view(np.uint8)
    keys = np.concatenate([packed, comp_bytes], axis=1)
    keys = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1])))[:, 0]
    _, inverse = np.unique(keys, return_inverse=True)
    for group in range(inverse.max() + 1):
        members = rows[inverse == group]
        o = observed[members[0]]
        m = ~o
        k = components[members[0]]
        cov = covariances[k]
        mu = means[k]
        if o.any():
            chol_oo = np.linalg.cholesky(cov[np.ix_(o, o)])
            solved = np.linalg.solve(chol_oo, (X[np.ix_(members, o)] - mu[o]).T)  # L^-1 d_o
            cross = np.linalg.solve(chol_oo, cov[np.ix_(o, m)])  # L^-1 Sigma_om
            cond_mean = mu[m] + (cross.T @ solved).T
            cond_cov = cov[np.ix_(m, m)] - cross.T @ cross
        else:
            cond_mean = np.broadcast_to(mu[m], (len(members), m.sum()))
            cond_cov = cov[np.ix_(m, m)]
        cond_cov = 0.5 * (cond_cov + cond_cov.T)
        chol = np.linalg.cholesky(cond_cov)
        noise = rng.standard_normal(size=(len(members), m.sum()))
        filled[np.ix_(members, m)] = cond_mean + noise @ chol.T
    return filled
