"""Brute-force reference for inference with missing values (shared by the tests).

Independent of gmmfast's kernels: every marginal density comes from
``scipy.stats.multivariate_normal`` on the observed sub-vector, every
conditional mean from a dense solve, mu_m + S_mo S_oo^-1 (x_o - mu_o), and
responsibilities from the marginals. Rows are grouped by mask only so that
one scipy call serves all rows of a mask; each row's result is its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal


def full_covariances(gm) -> np.ndarray:
    """(K, D, D) covariance matrices of a fitted GaussianMixture, any covariance type."""
    K, D = gm.means_.shape
    cov = np.asarray(gm.covariances_, dtype=np.float64)
    if gm.covariance_type == "full":
        return cov.copy()
    if gm.covariance_type == "tied":
        return np.repeat(cov[None], K, axis=0)
    if gm.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(D) * c for c in cov])


@dataclass
class Reference:
    weighted: np.ndarray  # (N, K) log w_k + log N(x_o | mu_ko, S_koo)
    log_norm: np.ndarray  # (N,) log p(x_o)
    resp: np.ndarray  # (N, K) p(k | x_o)
    cond: np.ndarray  # (N, K, D) x with missing entries replaced by E_k[x_m | x_o]
    imputed: np.ndarray  # (N, D) sum_k p(k | x_o) E_k[x_m | x_o] at missing entries


def masks_of(X, observed=None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return ~np.isnan(X) if observed is None else np.asarray(observed, dtype=bool)


def reference(weights, means, covariances, X, observed=None) -> Reference:
    """Exact marginal log-densities and conditional means of a mixture."""
    X = np.asarray(X, dtype=np.float64)
    obs = masks_of(X, observed)
    N, D = X.shape
    K = len(means)
    weighted = np.empty((N, K))
    cond = np.repeat(np.where(obs, X, 0.0)[:, None, :], K, axis=1)
    unique, inverse = np.unique(obs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(weights, dtype=np.float64))
    for g, o in enumerate(unique):
        rows = np.flatnonzero(inverse == g)
        m = ~o
        for k in range(K):
            mu, S = means[k], covariances[k]
            if o.any():
                x_o = X[np.ix_(rows, o)]
                lp = np.atleast_1d(multivariate_normal(mu[o], S[np.ix_(o, o)]).logpdf(x_o))
            else:
                lp = np.zeros(len(rows))
            weighted[rows, k] = log_w[k] + lp
            if m.any():
                if o.any():
                    solved = np.linalg.solve(S[np.ix_(o, o)], (x_o - mu[o]).T)
                    cond[np.ix_(rows, [k], m)] = (mu[m] + (S[np.ix_(m, o)] @ solved).T)[:, None, :]
                else:
                    cond[np.ix_(rows, [k], m)] = mu[m]
    log_norm = logsumexp(weighted, axis=1)
    resp = np.exp(weighted - log_norm[:, None])
    imputed = np.einsum("nk,nkd->nd", resp, cond)
    imputed[obs] = X[obs]
    return Reference(weighted, log_norm, resp, cond, imputed)


def reference_for(gm, X, observed=None) -> Reference:
    return reference(gm.weights_, gm.means_, full_covariances(gm), X, observed)


def conditional_moments(gm, x, o):
    """Mean and covariance of p(x_m | x_o) under the whole mixture for one row,
    and the row's Reference (responsibilities, per-component conditional means)."""
    covs = full_covariances(gm)
    ref = reference_for(gm, x[None], o[None])
    m = ~o
    mean = ref.imputed[0, m]
    second = np.zeros((m.sum(), m.sum()))
    for k in range(len(gm.means_)):
        S = covs[k]
        if o.any():
            c = S[np.ix_(m, m)] - S[np.ix_(m, o)] @ np.linalg.solve(
                S[np.ix_(o, o)], S[np.ix_(o, m)]
            )
        else:
            c = S[np.ix_(m, m)]
        e = ref.cond[0, k, m]
        second += ref.resp[0, k] * (c + np.outer(e, e))
    return mean, second - np.outer(mean, mean), ref
