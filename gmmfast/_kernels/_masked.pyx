"""Masked (missing-data) Gaussian kernels for full and tied covariances.

For a sample with observed coordinates o and missing coordinates m, and a
component (mu, Sigma, P = Sigma^-1), this computes exactly

* the marginal log-density log N(x_o | mu_o, Sigma_oo), and
* the conditional mean of the missing part,
  E[x_m | x_o] = mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o).

Samples are grouped by mask (the caller sorts them) into *units*: at most
``chunk`` samples sharing one mask, so every factorisation is shared by
all samples of a unit. Units are gathered into *batches* of at most
``chunk`` samples, the parallel work items. Within a batch the loop runs
component by component, so Sigma_k and P_k stay in cache while every
sample of the batch uses them, and the products that do not depend on the
mask are one matrix-matrix product per (batch, component) instead of a
matrix-vector product per (sample, component). Per unit and component the
cheaper side is taken:

* **observed side** (|o| <= |m|): Cholesky of Sigma_oo, triangular solves
  of the unit's block of centred observed values; the conditional means
  are mu + Sigma a, with a = Sigma_oo^-1 d_o scattered into a zero
  vector, for the whole batch at once;
* **precision side** (|m| < |o|): only P_mm is factorised, using
  det Sigma_oo = det Sigma * det P_mm,
  d_o^T Sigma_oo^-1 d_o = d~^T P d~ - w^T P_mm^-1 w  with w = (P d~)_m,
  E[x_m | x_o] = mu_m - P_mm^-1 w,
  where d~ is x - mu with zeros at the missing coordinates and P d~ is
  one product for every precision-side sample of the batch.

``prange`` hands batches to threads (dynamic schedule: batches differ in
cost); BLAS/LAPACK run single-threaded inside (callers limit them).
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport exp, log, INFINITY, M_PI
from libc.stdlib cimport malloc, free

from scipy.linalg.cython_blas cimport dtrsm, strsm, dgemm, sgemm
from scipy.linalg.cython_lapack cimport dpotrf, spotrf, dpotrs, spotrs

from ._fpenv cimport enter_ftz, leave_ftz


# Factorisations and solves run in the samples' dtype: float32 data get
# float32 LAPACK (faster, and half the memory traffic for the gathers;
# errors ~ cond * 6e-8 relative, far below what separates classes or
# components), float64 data float64.
cdef inline int _potrf(int n, floating *a) noexcept nogil:
    cdef char lower = b'L'
    cdef int info = 0
    if floating is double:
        dpotrf(&lower, &n, a, &n, &info)
    else:
        spotrf(&lower, &n, a, &n, &info)
    return info


cdef inline void _trsm(char trans, int n, int nrhs, floating *a, floating *b) noexcept nogil:
    cdef char side = b'L', lower = b'L', diag = b'N'
    cdef floating one = 1.0
    if floating is double:
        dtrsm(&side, &lower, &trans, &diag, &n, &nrhs, &one, a, &n, b, &n)
    else:
        strsm(&side, &lower, &trans, &diag, &n, &nrhs, &one, a, &n, b, &n)


cdef inline void _sym_product(int n, int ncols, const floating *a, floating *b, floating *c) noexcept nogil:
    """c = a b for a symmetric (n, n) a stored in full: its C order is its
    column-major order, and GEMM on the full matrix beats SYMM in OpenBLAS."""
    cdef char no = b'N'
    cdef floating one = 1.0, zero = 0.0
    if floating is double:
        dgemm(&no, &no, &n, &ncols, &n, &one, <double*> a, &n, b, &n, &zero, c, &n)
    else:
        sgemm(&no, &no, &n, &ncols, &n, &one, <float*> a, &n, b, &n, &zero, c, &n)


cdef inline void _potrs(int n, floating *a, floating *b) noexcept nogil:
    cdef char lower = b'L'
    cdef int one_i = 1, info = 0
    if floating is double:
        dpotrs(&lower, &n, &one_i, a, &n, b, &n, &info)
    else:
        spotrs(&lower, &n, &one_i, a, &n, b, &n, &info)


cdef inline int _factor_block(const floating *M, Py_ssize_t D, const Py_ssize_t *idx,
                              Py_ssize_t n, floating *factor, double *log_det) noexcept nogil:
    """Cholesky factor of the symmetric block M[idx, idx] (lower, column-major,
    in ``factor``); adds its log-determinant to ``log_det``. Returns LAPACK's info.
    M is symmetric, so its rows are read for contiguous access."""
    cdef Py_ssize_t a, b
    cdef const floating *row
    cdef floating *out
    cdef int info
    for b in range(n):
        row = M + idx[b] * D
        out = factor + b * n
        for a in range(b, n):
            out[a] = row[idx[a]]
    info = _potrf(<int> n, factor)
    if info == 0:
        for a in range(n):
            log_det[0] += 2.0 * log(<double> factor[a * n + a])
    return info


cdef struct Workspace:
    Py_ssize_t *obs_idx      # (D,) observed coordinates coupled to others in component k
    Py_ssize_t *mis_idx      # (D,) missing coordinates coupled to others in component k
    Py_ssize_t *column       # (chunk,) a sample's column in its side's block
    unsigned char *prec_side # (chunk,) 1 where the sample's unit takes the precision side
    double *factor           # (D, D) Sigma_oo or P_mm, factorised in place  }
    double *dtilde           # (D, chunk) d~ (precision side); Sigma a after  } held as
    double *pd               # (D, chunk) P d~ (precision side)                } the
    double *alpha            # (D, chunk) a = Sigma_oo^-1 d_o, scattered        } samples'
    double *unit_block       # (D, chunk) one unit's d_o (observed side)        } dtype
    double *cond             # (chunk, D) running responsibility-weighted imputation
    double *run_max          # (chunk,) running max of the weighted log-densities
    double *run_sum          # (chunk,) running sum of exp(row - run_max)
    double *rows             # (chunk, K) weighted log-densities of the batch
    double *tmp              # (D,) one conditional mean


cdef Workspace *_workspace_new(Py_ssize_t D, Py_ssize_t K, Py_ssize_t chunk,
                               bint want_cond) noexcept nogil:
    """One thread's buffers, or NULL if memory is short."""
    cdef Workspace *ws = <Workspace*> malloc(sizeof(Workspace))
    if ws == NULL:
        return NULL
    ws.obs_idx = <Py_ssize_t*> malloc(D * sizeof(Py_ssize_t))
    ws.mis_idx = <Py_ssize_t*> malloc(D * sizeof(Py_ssize_t))
    ws.column = <Py_ssize_t*> malloc(chunk * sizeof(Py_ssize_t))
    ws.prec_side = <unsigned char*> malloc(chunk * sizeof(unsigned char))
    ws.factor = <double*> malloc(D * D * sizeof(double))
    ws.dtilde = <double*> malloc(D * chunk * sizeof(double))
    ws.pd = <double*> malloc(D * chunk * sizeof(double))
    ws.unit_block = <double*> malloc(D * chunk * sizeof(double))
    ws.rows = <double*> malloc(chunk * K * sizeof(double))
    ws.tmp = <double*> malloc(D * sizeof(double))
    ws.alpha = NULL
    ws.cond = NULL
    ws.run_max = NULL
    ws.run_sum = NULL
    if want_cond:
        ws.alpha = <double*> malloc(D * chunk * sizeof(double))
        ws.cond = <double*> malloc(chunk * D * sizeof(double))
        ws.run_max = <double*> malloc(chunk * sizeof(double))
        ws.run_sum = <double*> malloc(chunk * sizeof(double))
    if (ws.obs_idx == NULL or ws.mis_idx == NULL or ws.column == NULL or ws.prec_side == NULL
            or ws.factor == NULL or ws.dtilde == NULL or ws.pd == NULL or ws.unit_block == NULL
            or ws.rows == NULL or ws.tmp == NULL
            or (want_cond and (ws.alpha == NULL or ws.cond == NULL
                               or ws.run_max == NULL or ws.run_sum == NULL))):
        _workspace_free(ws)
        return NULL
    return ws


cdef void _workspace_free(Workspace *ws) noexcept nogil:
    if ws == NULL:
        return
    free(ws.obs_idx)
    free(ws.mis_idx)
    free(ws.column)
    free(ws.prec_side)
    free(ws.factor)
    free(ws.dtilde)
    free(ws.pd)
    free(ws.alpha)
    free(ws.unit_block)
    free(ws.rows)
    free(ws.tmp)
    free(ws.cond)
    free(ws.run_max)
    free(ws.run_sum)
    free(ws)


cdef inline void _accumulate(Workspace *ws, Py_ssize_t i, Py_ssize_t D, double v,
                             const double *cond_k) noexcept nogil:
    """Add component value v (log weight) and its conditional mean cond_k
    (length D, only missing entries used by the caller) to sample i's running
    responsibility-weighted mean, rescaling as the running max grows."""
    cdef double scale, w
    cdef Py_ssize_t j
    cdef double *acc = ws.cond + i * D
    if v == -INFINITY:
        return
    if v > ws.run_max[i]:
        scale = exp(ws.run_max[i] - v) if ws.run_max[i] > -INFINITY else 0.0
        for j in range(D):
            acc[j] *= scale
        ws.run_sum[i] *= scale
        ws.run_max[i] = v
    w = exp(v - ws.run_max[i])
    ws.run_sum[i] += w
    for j in range(D):
        acc[j] += w * cond_k[j]


cdef inline void _split(const unsigned char[:, ::1] observed, Py_ssize_t row,
                        const unsigned char[:, ::1] isolated, Py_ssize_t f,
                        Workspace *ws, Py_ssize_t *n_obs, Py_ssize_t *n_mis) noexcept nogil:
    """Coupled observed / missing coordinates of ``row``'s mask for factor f."""
    cdef Py_ssize_t j, no = 0, nm = 0
    for j in range(observed.shape[1]):
        if isolated[f, j]:
            continue
        if observed[row, j]:
            ws.obs_idx[no] = j
            no += 1
        else:
            ws.mis_idx[nm] = j
            nm += 1
    n_obs[0] = no
    n_mis[0] = nm


cdef int _batch(const floating[:, ::1] X, const unsigned char[:, ::1] observed,
                const Py_ssize_t[::1] order, const Py_ssize_t[::1] unit_ptr,
                Py_ssize_t u_first, Py_ssize_t u_stop,
                const double[:, ::1] means, const floating[:, :, ::1] covariances,
                const floating[:, :, ::1] precisions, const unsigned char[:, ::1] isolated,
                bint tied, const double[::1] log_det_prec, const double[::1] log_weights,
                double[:, ::1] out, double[::1] log_norm, int mode,
                double[:, ::1] imputed, bint want_cond,
                Workspace *ws) noexcept nogil:
    """One batch: units u_first .. u_stop - 1 (samples order[start:stop]).

    Coordinates that component k leaves uncoupled (``isolated[k, j]``: row j
    of Sigma_k is zero off the diagonal, e.g. a feature constant in the
    component's data) are exact 1-d Gaussians and never enter a
    factorisation; only the coupled coordinates are factorised.

    Returns 0, or k + 1 if the observed block of component k could not be
    factorised.
    """
    cdef Py_ssize_t D = X.shape[1]
    cdef Py_ssize_t K = means.shape[0]
    cdef Py_ssize_t start = unit_ptr[u_first]
    cdef Py_ssize_t s = unit_ptr[u_stop] - start
    cdef Py_ssize_t n_obs, n_mis, n_obs_all, n_prec, n_osd
    cdef Py_ssize_t i, i0, j, a, b, k, n, f, u, su, first, c
    cdef double q, v, log_det_marg, log_det_iso, log_det_full, top, total, norm, d
    cdef const double *mu
    cdef const floating *S
    cdef const floating *P
    cdef floating *col
    cdef floating *wcol
    cdef floating *factor = <floating*> ws.factor
    cdef floating *dtilde = <floating*> ws.dtilde
    cdef floating *pd = <floating*> ws.pd
    cdef floating *alpha = <floating*> ws.alpha
    cdef floating *unit_block = <floating*> ws.unit_block
    cdef double *cmean = ws.tmp
    cdef int io, im, ns, info = 0, ld_d = <int> D
    cdef double log_2pi = log(2.0 * M_PI)

    if want_cond:
        for i in range(s):
            ws.run_max[i] = -INFINITY
            ws.run_sum[i] = 0.0
            for j in range(D):
                ws.cond[i * D + j] = 0.0

    for k in range(K):
        mu = &means[k, 0]
        f = 0 if tied else k
        S = &covariances[f, 0, 0]
        P = &precisions[f, 0, 0]

        # Pass 1: each unit's side, and each sample's column in its side's block.
        n_prec = 0
        n_osd = 0
        for u in range(u_first, u_stop):
            _split(observed, order[unit_ptr[u]], isolated, f, ws, &n_obs, &n_mis)
            for i in range(unit_ptr[u] - start, unit_ptr[u + 1] - start):
                ws.prec_side[i] = n_mis < n_obs
                if n_mis < n_obs:
                    ws.column[i] = n_prec
                    n_prec += 1
                else:
                    ws.column[i] = n_osd
                    n_osd += 1
        if n_prec > 0:
            # d~ = x - mu with zeros where missing, then P d~ for all
            # precision-side samples in one product.
            for i in range(s):
                if ws.prec_side[i]:
                    n = order[start + i]
                    col = dtilde + ws.column[i] * D
                    for j in range(D):
                        col[j] = <floating> (X[n, j] - mu[j]) if observed[n, j] else 0.0
            _sym_product(ld_d, <int> n_prec, P, dtilde, pd)
        if want_cond and n_osd > 0:
            for j in range(n_osd * D):
                alpha[j] = 0.0

        # Pass 2: one factorisation per unit.
        for u in range(u_first, u_stop):
            i0 = unit_ptr[u] - start
            su = unit_ptr[u + 1] - unit_ptr[u]
            first = order[unit_ptr[u]]
            _split(observed, first, isolated, f, ws, &n_obs, &n_mis)
            n_obs_all = 0
            log_det_iso = 0.0
            log_det_full = -2.0 * log_det_prec[k]   # log det Sigma
            for j in range(D):
                if observed[first, j]:
                    n_obs_all += 1
                    if isolated[f, j]:
                        log_det_iso += log(<double> S[j * D + j])
                elif isolated[f, j]:
                    log_det_full += log(<double> P[j * D + j])
            io = <int> n_obs
            im = <int> n_mis
            ns = <int> su

            if not ws.prec_side[i0]:
                # Observed side: factor the coupled Sigma_oo (column-major,
                # lower; Sigma is symmetric, so read it row-wise).
                log_det_marg = log_det_iso
                if n_obs > 0:
                    info = _factor_block(S, D, ws.obs_idx, n_obs, factor, &log_det_marg)
                    if info != 0:
                        return <int> k + 1
                    for i in range(su):
                        n = order[unit_ptr[u] + i]
                        col = unit_block + i * n_obs
                        for a in range(n_obs):
                            col[a] = <floating> (X[n, ws.obs_idx[a]] - mu[ws.obs_idx[a]])
                    # y = L^-1 d_o: squared norms give the quadratic forms.
                    _trsm(c'N', io, ns, factor, unit_block)
                for i in range(su):
                    n = order[unit_ptr[u] + i]
                    q = 0.0
                    col = unit_block + i * n_obs
                    for a in range(n_obs):
                        q += col[a] * col[a]
                    for j in range(D):
                        if isolated[f, j] and observed[n, j]:
                            d = X[n, j] - mu[j]
                            q += d * d / S[j * D + j]
                    ws.rows[(i0 + i) * K + k] = (-0.5 * (n_obs_all * log_2pi + log_det_marg + q)
                                                 + log_weights[k])
                if want_cond and n_obs > 0:
                    # a = Sigma_oo^-1 d_o = L^-T y, scattered (zeros elsewhere).
                    _trsm(c'T', io, ns, factor, unit_block)
                    for i in range(su):
                        col = unit_block + i * n_obs
                        wcol = alpha + ws.column[i0 + i] * D
                        for a in range(n_obs):
                            wcol[ws.obs_idx[a]] = col[a]
            else:
                # Precision side. Isolated rows of P are diagonal, so their
                # missing entries of P d~ are 0 and keep E = mu_j.
                log_det_marg = log_det_full
                if n_mis > 0:
                    info = _factor_block(P, D, ws.mis_idx, n_mis, factor, &log_det_marg)
                    if info != 0:
                        return <int> k + 1
                for i in range(su):
                    c = ws.column[i0 + i]
                    col = dtilde + c * D
                    wcol = pd + c * D
                    q = 0.0
                    for j in range(D):
                        q += col[j] * wcol[j]   # zeros where missing
                    if n_mis > 0:
                        # w = (P d~)_m, solved in place in the unit buffer
                        for a in range(n_mis):
                            unit_block[a] = wcol[ws.mis_idx[a]]
                        _potrs(im, factor, unit_block)
                        for a in range(n_mis):
                            q -= wcol[ws.mis_idx[a]] * unit_block[a]
                    v = -0.5 * (n_obs_all * log_2pi + log_det_marg + q) + log_weights[k]
                    ws.rows[(i0 + i) * K + k] = v
                    if want_cond:
                        for j in range(D):
                            cmean[j] = mu[j]
                        for a in range(n_mis):
                            cmean[ws.mis_idx[a]] = mu[ws.mis_idx[a]] - unit_block[a]
                        _accumulate(ws, i0 + i, D, v, cmean)

        if want_cond and n_osd > 0:
            # Observed side: E[x_m | x_o] = mu_m + (Sigma a)_m for the whole
            # batch in one product (d~ is free again; isolated missing
            # coordinates get (Sigma a)_j = 0, i.e. mu_j).
            _sym_product(ld_d, <int> n_osd, S, alpha, dtilde)
            for i in range(s):
                if not ws.prec_side[i]:
                    col = dtilde + ws.column[i] * D
                    for j in range(D):
                        cmean[j] = mu[j] + col[j]
                    _accumulate(ws, i, D, ws.rows[i * K + k], cmean)

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
                if observed[n, j]:
                    imputed[n, j] = X[n, j]
                elif ws.run_sum[i] > 0.0:
                    imputed[n, j] = ws.cond[i * D + j] / ws.run_sum[i]
                else:
                    # every component has zero weight: fall back on the plain average
                    imputed[n, j] = 0.0
                    for k in range(K):
                        imputed[n, j] += means[k, j] / K
    return 0


def masked_estep_full(const floating[:, ::1] X,
                      const unsigned char[:, ::1] observed,
                      const Py_ssize_t[::1] order,
                      const Py_ssize_t[::1] unit_ptr,
                      const Py_ssize_t[::1] batch_ptr,
                      const double[:, ::1] means,
                      const floating[:, :, ::1] covariances,
                      const floating[:, :, ::1] precisions,
                      const unsigned char[:, ::1] isolated, bint tied,
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
    batch_ptr : (n_batches + 1,) batch b is units ``batch_ptr[b]`` to
        ``batch_ptr[b + 1] - 1``, at most ``chunk`` samples in all.
    means : (K, D) float64; covariances, precisions : (K or 1, D, D) in
        X's dtype.
    isolated : (K or 1, D) uint8, 1 where row j of the covariance is zero
        off the diagonal (that coordinate is independent of the others).
    tied : bool, use factor 0 for every component.
    log_det_prec : (K,) log det U = -0.5 log det Sigma_k.
    log_weights : (K,)
    out, log_norm, mode : as in ``gmmfast._kernels._estep``.
    imputed : (n_samples, n_features) float64 or None. When given, receives
        x with each missing entry replaced by the responsibility-weighted
        conditional mean sum_k p(k | x_o) E_k[x_m | x_o].
    chunk : int, the most samples in a unit or a batch.
    n_threads : int

    Returns
    -------
    failed : int
        0, or k + 1 when a marginal covariance of component k could not be
        factorised (increase reg_covar).
    """
    cdef Py_ssize_t n_batches = batch_ptr.shape[0] - 1
    cdef Py_ssize_t D = X.shape[1]
    cdef Py_ssize_t K = means.shape[0]
    cdef Py_ssize_t bt
    cdef bint want_cond = imputed is not None
    cdef double[:, ::1] imputed_view = imputed if want_cond else None
    cdef int[::1] status = np.zeros(max(n_batches, 1), dtype=np.intc)
    cdef Workspace *ws = NULL
    cdef unsigned long long fp_state = 0

    for bt in range(n_batches):
        if unit_ptr[batch_ptr[bt + 1]] - unit_ptr[batch_ptr[bt]] > chunk:
            raise ValueError(f"masked kernel: batch {bt} has more than chunk={chunk} samples")

    with nogil, parallel(num_threads=n_threads):
        fp_state = enter_ftz()
        ws = _workspace_new(D, K, chunk, want_cond)
        for bt in prange(n_batches, schedule='dynamic'):
            if ws == NULL:
                status[bt] = -1
            else:
                status[bt] = _batch(X, observed, order, unit_ptr, batch_ptr[bt], batch_ptr[bt + 1],
                                    means, covariances, precisions, isolated, tied,
                                    log_det_prec, log_weights, out, log_norm, mode,
                                    imputed_view, want_cond, ws)
        _workspace_free(ws)
        leave_ftz(fp_state)
    for bt in range(n_batches):
        if status[bt] < 0:
            raise MemoryError("masked kernel: could not allocate its work space")
    for bt in range(n_batches):
        if status[bt] > 0:
            return status[bt]
    return 0
