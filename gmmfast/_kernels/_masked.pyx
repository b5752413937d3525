"""Masked (missing-data) Gaussian kernels for full and tied covariances.

For a sample with observed coordinates o and missing coordinates m, and a
component (mu, Sigma, P = Sigma^-1), this computes exactly

* the marginal log-density log N(x_o | mu_o, Sigma_oo), and
* the conditional mean of the missing part,
  E[x_m | x_o] = mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o).

Samples are grouped by mask (the caller sorts them), and a work unit is a
slice of at most ``chunk`` samples of one group, so every factorisation is
shared by all samples of the unit. Per unit and component the cheaper side
is taken:

* **observed side** (|o| <= |m|): Cholesky of Sigma_oo, triangular solves
  of the whole block of centred observed values;
* **precision side** (|m| < |o|): only P_mm is factorised, using
  det Sigma_oo = det Sigma * det P_mm,
  d_o^T Sigma_oo^-1 d_o = d~^T P d~ - w^T P_mm^-1 w  with w = (P d~)_m,
  E[x_m | x_o] = mu_m - P_mm^-1 w,
  where d~ is x - mu with zeros at the missing coordinates.

``prange`` hands units to threads (dynamic schedule: units differ in
cost); BLAS/LAPACK run single-threaded inside (callers limit them).
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport exp, log, INFINITY, M_PI
from libc.stdlib cimport malloc, free

from scipy.linalg.cython_blas cimport dtrsm, dgemm, dsymm
from scipy.linalg.cython_lapack cimport dpotrf, dpotrs

from ._fpenv cimport enter_ftz, leave_ftz


cdef struct Workspace:
    Py_ssize_t *obs_idx      # (D,)
    Py_ssize_t *mis_idx      # (D,)
    double *factor           # (D, D) Sigma_oo or P_mm, factorised in place
    double *block            # (D, chunk) centred values, one column per sample
    double *work             # (D, chunk) P d~ (precision side) / solves
    double *cond             # (K, chunk, D) conditional means per component
    double *rows             # (chunk, K) weighted log-densities of the unit


cdef Workspace *_workspace_new(Py_ssize_t D, Py_ssize_t K, Py_ssize_t chunk,
                               bint want_cond) noexcept nogil:
    """One thread's buffers, or NULL if memory is short."""
    cdef Workspace *ws = <Workspace*> malloc(sizeof(Workspace))
    if ws == NULL:
        return NULL
    ws.obs_idx = <Py_ssize_t*> malloc(D * sizeof(Py_ssize_t))
    ws.mis_idx = <Py_ssize_t*> malloc(D * sizeof(Py_ssize_t))
    ws.factor = <double*> malloc(D * D * sizeof(double))
    ws.block = <double*> malloc(D * chunk * sizeof(double))
    ws.work = <double*> malloc(D * chunk * sizeof(double))
    ws.rows = <double*> malloc(chunk * K * sizeof(double))
    ws.cond = NULL
    if want_cond:
        ws.cond = <double*> malloc(K * chunk * D * sizeof(double))
    if (ws.obs_idx == NULL or ws.mis_idx == NULL or ws.factor == NULL
            or ws.block == NULL or ws.work == NULL or ws.rows == NULL
            or (want_cond and ws.cond == NULL)):
        _workspace_free(ws)
        return NULL
    return ws


cdef void _workspace_free(Workspace *ws) noexcept nogil:
    if ws == NULL:
        return
    free(ws.obs_idx)
    free(ws.mis_idx)
    free(ws.factor)
    free(ws.block)
    free(ws.work)
    free(ws.rows)
    free(ws.cond)
    free(ws)


cdef int _unit(const floating[:, ::1] X, const unsigned char[:, ::1] observed,
               const Py_ssize_t[::1] order, Py_ssize_t start, Py_ssize_t stop,
               const double[:, ::1] means, const double[:, :, ::1] covariances,
               const double[:, :, ::1] precisions, bint tied,
               const double[::1] log_det_prec, const double[::1] log_weights,
               double[:, ::1] out, double[::1] log_norm, int mode,
               double[:, ::1] imputed, bint want_cond,
               Workspace *ws) noexcept nogil:
    """One work unit: samples order[start:stop], all with the same mask.

    Returns 0, or k + 1 if the observed block of component k could not be
    factorised.
    """
    cdef Py_ssize_t D = X.shape[1]
    cdef Py_ssize_t K = means.shape[0]
    cdef Py_ssize_t s = stop - start
    cdef Py_ssize_t first = order[start]
    cdef Py_ssize_t n_obs = 0, n_mis = 0
    cdef Py_ssize_t i, j, a, b, k, n, f
    cdef double q, v, log_det_marg, top, total, norm, r
    cdef const double *mu
    cdef const double *S
    cdef double *col
    cdef double *wcol
    cdef double *cnd
    cdef int io, im, ns, info = 0, ld_d = <int> D, one_i = 1
    cdef char L = b'L', N = b'N', T = b'T', side_l = b'L'
    cdef double one = 1.0, zero = 0.0
    cdef double log_2pi = log(2.0 * M_PI)

    for j in range(D):
        if observed[first, j]:
            ws.obs_idx[n_obs] = j
            n_obs += 1
        else:
            ws.mis_idx[n_mis] = j
            n_mis += 1
    io = <int> n_obs
    im = <int> n_mis
    ns = <int> s

    for k in range(K):
        mu = &means[k, 0]
        f = 0 if tied else k
        if n_obs == 0:
            # Nothing observed: the marginal is the empty product.
            for i in range(s):
                ws.rows[i * K + k] = log_weights[k]
                if want_cond:
                    for j in range(D):
                        ws.cond[(k * s + i) * D + j] = mu[j]
            continue
        if n_obs <= n_mis:
            # Observed side: factor Sigma_oo (column-major, lower).
            S = &covariances[f, 0, 0]
            for b in range(n_obs):
                for a in range(n_obs):
                    ws.factor[b * n_obs + a] = S[ws.obs_idx[a] * D + ws.obs_idx[b]]
            dpotrf(&L, &io, ws.factor, &io, &info)
            if info != 0:
                return <int> k + 1
            log_det_marg = 0.0
            for a in range(n_obs):
                log_det_marg += 2.0 * log(ws.factor[a * n_obs + a])
            # block[:, i] = x_o - mu_o, leading dimension n_obs
            for i in range(s):
                n = order[start + i]
                col = ws.block + i * n_obs
                for a in range(n_obs):
                    col[a] = X[n, ws.obs_idx[a]] - mu[ws.obs_idx[a]]
            # y = L^-1 d_o: squared norms give the quadratic forms.
            dtrsm(&side_l, &L, &N, &N, &io, &ns, &one, ws.factor, &io,
                  ws.block, &io)
            for i in range(s):
                col = ws.block + i * n_obs
                q = 0.0
                for a in range(n_obs):
                    q += col[a] * col[a]
                ws.rows[i * K + k] = (-0.5 * (n_obs * log_2pi + log_det_marg + q)
                                      + log_weights[k])
            if want_cond:
                # Sigma_oo^-1 d_o = L^-T y, then mu_m + Sigma_mo (that).
                dtrsm(&side_l, &L, &T, &N, &io, &ns, &one, ws.factor, &io,
                      ws.block, &io)
                if n_mis > 0:
                    # work (n_mis x n_obs) = Sigma_mo, column-major
                    for b in range(n_obs):
                        for a in range(n_mis):
                            ws.work[b * n_mis + a] = S[ws.mis_idx[a] * D + ws.obs_idx[b]]
                for i in range(s):
                    n = order[start + i]
                    cnd = ws.cond + (k * s + i) * D
                    for j in range(D):
                        cnd[j] = X[n, j]
                    col = ws.block + i * n_obs
                    for a in range(n_mis):
                        v = mu[ws.mis_idx[a]]
                        for b in range(n_obs):
                            v += ws.work[b * n_mis + a] * col[b]
                        cnd[ws.mis_idx[a]] = v
        else:
            # Precision side: d~ = x - mu with zeros where missing.
            for i in range(s):
                n = order[start + i]
                col = ws.block + i * D
                for j in range(D):
                    col[j] = 0.0
                for a in range(n_obs):
                    col[ws.obs_idx[a]] = X[n, ws.obs_idx[a]] - mu[ws.obs_idx[a]]
            # work = P d~ (P symmetric; its C-order storage is column-major too)
            dsymm(&side_l, &L, &ld_d, &ns, &one, <double*> &precisions[f, 0, 0],
                  &ld_d, ws.block, &ld_d, &zero, ws.work, &ld_d)
            log_det_marg = -2.0 * log_det_prec[k]   # log det Sigma
            if n_mis > 0:
                for b in range(n_mis):
                    for a in range(n_mis):
                        ws.factor[b * n_mis + a] = precisions[f, ws.mis_idx[a], ws.mis_idx[b]]
                dpotrf(&L, &im, ws.factor, &im, &info)
                if info != 0:
                    return <int> k + 1
                for a in range(n_mis):
                    log_det_marg += 2.0 * log(ws.factor[a * n_mis + a])
            for i in range(s):
                col = ws.block + i * D
                wcol = ws.work + i * D
                q = 0.0
                for a in range(n_obs):
                    j = ws.obs_idx[a]
                    q += col[j] * wcol[j]
                if n_mis > 0:
                    # reuse the head of col for w = (P d~)_m, solve in place
                    for a in range(n_mis):
                        col[a] = wcol[ws.mis_idx[a]]
                    dpotrs(&L, &im, &one_i, ws.factor, &im, col, &im, &info)
                    for a in range(n_mis):
                        q -= wcol[ws.mis_idx[a]] * col[a]
                ws.rows[i * K + k] = (-0.5 * (n_obs * log_2pi + log_det_marg + q)
                                      + log_weights[k])
                if want_cond:
                    n = order[start + i]
                    cnd = ws.cond + (k * s + i) * D
                    for j in range(D):
                        cnd[j] = X[n, j]
                    for a in range(n_mis):
                        cnd[ws.mis_idx[a]] = mu[ws.mis_idx[a]] - col[a]

    # Log-sum-exp per sample; imputation weights by responsibilities.
    for i in range(s):
        n = order[start + i]
        top = -INFINITY
        for k in range(K):
            if ws.rows[i * K + k] > top:
                top = ws.rows[i * K + k]
        total = 0.0
        if top > -INFINITY:
            for k in range(K):
                total += exp(ws.rows[i * K + k] - top)
            norm = top + log(total)
        else:
            norm = -INFINITY
        log_norm[n] = norm
        for k in range(K):
            v = ws.rows[i * K + k]
            if mode == 1:
                out[n, k] = v - norm
            elif mode == 2:
                out[n, k] = exp(v - norm) if norm > -INFINITY else 0.0
            else:
                out[n, k] = v
        if want_cond:
            for j in range(D):
                imputed[n, j] = X[n, j] if observed[n, j] else 0.0
            for k in range(K):
                r = exp(ws.rows[i * K + k] - norm) if norm > -INFINITY else 1.0 / K
                if r == 0.0:
                    continue
                cnd = ws.cond + (k * s + i) * D
                for a in range(n_mis):
                    imputed[n, ws.mis_idx[a]] += r * cnd[ws.mis_idx[a]]
    return 0


def masked_estep_full(const floating[:, ::1] X,
                      const unsigned char[:, ::1] observed,
                      const Py_ssize_t[::1] order,
                      const Py_ssize_t[::1] unit_ptr,
                      const double[:, ::1] means,
                      const double[:, :, ::1] covariances,
                      const double[:, :, ::1] precisions, bint tied,
                      const double[::1] log_det_prec,
                      const double[::1] log_weights,
                      double[:, ::1] out, double[::1] log_norm, int mode,
                      double[:, ::1] imputed, Py_ssize_t chunk,
                      int n_threads):
    """Marginal weighted log-densities (and imputations) with missing values.

    Parameters
    ----------
    X : (n_samples, n_features) float32/float64; missing entries must be
        finite (any value), they are never read.
    observed : (n_samples, n_features) uint8, 1 where observed.
    order : (n_samples,) sample indices sorted so that samples with the
        same mask are contiguous.
    unit_ptr : (n_units + 1,) unit u is ``order[unit_ptr[u]:unit_ptr[u+1]]``;
        all its samples share one mask and there are at most ``chunk``.
    means : (K, D); covariances, precisions : (K or 1, D, D) float64.
    tied : bool, use factor 0 for every component.
    log_det_prec : (K,) log det U = -0.5 log det Sigma_k.
    log_weights : (K,)
    out, log_norm, mode : as in ``gmmfast._kernels._estep``.
    imputed : (n_samples, n_features) float64 or None. When given, receives
        x with each missing entry replaced by the responsibility-weighted
        conditional mean sum_k p(k | x_o) E_k[x_m | x_o].
    chunk : int, the most samples in a unit.
    n_threads : int

    Returns
    -------
    failed : int
        0, or k + 1 when a marginal covariance of component k could not be
        factorised (increase reg_covar).
    """
    cdef Py_ssize_t n_units = unit_ptr.shape[0] - 1
    cdef Py_ssize_t D = X.shape[1]
    cdef Py_ssize_t K = means.shape[0]
    cdef Py_ssize_t u
    cdef bint want_cond = imputed is not None
    cdef double[:, ::1] imputed_view = imputed if want_cond else None
    cdef int[::1] status = np.zeros(max(n_units, 1), dtype=np.intc)
    cdef Workspace *ws = NULL
    cdef unsigned long long fp_state = 0

    with nogil, parallel(num_threads=n_threads):
        fp_state = enter_ftz()
        ws = _workspace_new(D, K, chunk, want_cond)
        for u in prange(n_units, schedule='dynamic'):
            if ws == NULL:
                status[u] = -1
            else:
                status[u] = _unit(X, observed, order, unit_ptr[u], unit_ptr[u + 1],
                                  means, covariances, precisions, tied,
                                  log_det_prec, log_weights, out, log_norm, mode,
                                  imputed_view, want_cond, ws)
        _workspace_free(ws)
        leave_ftz(fp_state)
    for u in range(n_units):
        if status[u] < 0:
            raise MemoryError("masked kernel: could not allocate its work space")
    for u in range(n_units):
        if status[u] > 0:
            return status[u]
    return 0
