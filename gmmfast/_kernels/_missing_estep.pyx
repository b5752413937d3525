"""Missing-data Gaussian kernels for full and tied covariances.

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

from ._common cimport (
    OutputMode, STATUS_OK, STATUS_NO_MEMORY, STATUS_BAD_SHAPE, STATUS_BAD_ARGUMENT,
    mode_valid, team_size, normalize_row, factor_block, split_coordinates, units_valid, first_failure,
    Arena, arena_take, arena_new, arena_free,
)
from ._fpenv cimport enter_ftz, leave_ftz
from ._linalg cimport (
    gemm, trsm, potrs, LEFT, LOWER, NO_TRANS, TRANS, NON_UNIT,
)

# Factorisations and solves run in the samples' dtype: float32 data get
# float32 LAPACK (faster, and half the memory traffic for the gathers;
# errors ~ cond * 6e-8 relative, far below what separates classes or
# components), float64 data float64.


cdef inline void _sym_product(int n, int n_cols, const floating *a, floating *b,
                              floating *c) noexcept nogil:
    """c = a b for a symmetric (n, n) a stored in full: its C order is its
    column-major order, and GEMM on the full matrix beats SYMM in OpenBLAS."""
    gemm(NO_TRANS, NO_TRANS, n, n_cols, n, <floating> 1.0, a, n, b, n,
         <floating> 0.0, c, n)


cdef struct Workspace:
    Py_ssize_t *obs_idx      # (n_features,) observed coordinates coupled to others in component k
    Py_ssize_t *mis_idx      # (n_features,) missing coordinates coupled to others in component k
    Py_ssize_t *column       # (chunk,) a sample's column in its side's block
    unsigned char *prec_side # (chunk,) 1 where the sample's unit takes the precision side
    double *factor           # (n_features, n_features) Sigma_oo or P_mm, factorised  } held as
    double *dtilde           # (n_features, chunk) d~ (precision side); Sigma a after  } the
    double *pd               # (n_features, chunk) P d~ (precision side)                } samples'
    double *alpha            # (n_features, chunk) a = Sigma_oo^-1 d_o, scattered       } dtype
    double *unit_block       # (n_features, chunk) one unit's d_o (observed side)       }
    double *cond             # (chunk, n_features) running responsibility-weighted imputation
    double *run_max          # (chunk,) running max of the weighted log-densities
    double *run_sum          # (chunk,) running sum of exp(row - run_max)
    double *rows             # (chunk, n_components) weighted log-densities of the batch
    double *tmp              # (n_features,) one conditional mean


cdef void *_layout(Arena *arena, const Py_ssize_t *dims) noexcept nogil:
    """One thread's work space; ``dims`` = (n_features, n_components, chunk,
    want_cond). See ``arena_new``."""
    cdef Py_ssize_t n_features = dims[0], n_components = dims[1], chunk = dims[2]
    cdef bint want_cond = dims[3] != 0
    cdef Workspace measuring
    cdef Workspace *ws = <Workspace*> arena_take(arena, 1, sizeof(Workspace))
    if ws == NULL:
        ws = &measuring   # the measuring pass: these pointers are discarded
    ws.obs_idx = <Py_ssize_t*> arena_take(arena, n_features, sizeof(Py_ssize_t))
    ws.mis_idx = <Py_ssize_t*> arena_take(arena, n_features, sizeof(Py_ssize_t))
    ws.column = <Py_ssize_t*> arena_take(arena, chunk, sizeof(Py_ssize_t))
    ws.prec_side = <unsigned char*> arena_take(arena, chunk, sizeof(unsigned char))
    ws.factor = <double*> arena_take(arena, n_features * n_features, sizeof(double))
    ws.dtilde = <double*> arena_take(arena, n_features * chunk, sizeof(double))
    ws.pd = <double*> arena_take(arena, n_features * chunk, sizeof(double))
    ws.unit_block = <double*> arena_take(arena, n_features * chunk, sizeof(double))
    ws.rows = <double*> arena_take(arena, chunk * n_components, sizeof(double))
    ws.tmp = <double*> arena_take(arena, n_features, sizeof(double))
    ws.alpha = NULL
    ws.cond = NULL
    ws.run_max = NULL
    ws.run_sum = NULL
    if want_cond:
        ws.alpha = <double*> arena_take(arena, n_features * chunk, sizeof(double))
        ws.cond = <double*> arena_take(arena, chunk * n_features, sizeof(double))
        ws.run_max = <double*> arena_take(arena, chunk, sizeof(double))
        ws.run_sum = <double*> arena_take(arena, chunk, sizeof(double))
    return ws


cdef inline void _accumulate(Workspace *ws, Py_ssize_t i, Py_ssize_t n_features,
                             double v, const double *cond_k) noexcept nogil:
    """Add component value v (log weight) and its conditional mean cond_k
    (length n_features, only missing entries used by the caller) to sample
    i's running responsibility-weighted mean, rescaling as the running max
    grows."""
    cdef double scale, w
    cdef Py_ssize_t j
    cdef double *acc = ws.cond + i * n_features
    if v == -INFINITY:
        return
    if v > ws.run_max[i]:
        scale = exp(ws.run_max[i] - v) if ws.run_max[i] > -INFINITY else 0.0
        for j in range(n_features):
            acc[j] *= scale
        ws.run_sum[i] *= scale
        ws.run_max[i] = v
    w = exp(v - ws.run_max[i])
    ws.run_sum[i] += w
    for j in range(n_features):
        acc[j] += w * cond_k[j]


cdef int _batch(const floating[:, ::1] X, const unsigned char[:, ::1] observed,
                const Py_ssize_t[::1] order, const Py_ssize_t[::1] unit_ptr,
                Py_ssize_t u_first, Py_ssize_t u_stop,
                const double[:, ::1] means, const floating[:, :, ::1] covariances,
                const floating[:, :, ::1] precisions, const unsigned char[:, ::1] isolated,
                bint tied, const double[::1] log_det_prec, const double[::1] log_weights,
                double[:, ::1] out, double[::1] log_norm, OutputMode mode,
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
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t start = unit_ptr[u_first]
    cdef Py_ssize_t s = unit_ptr[u_stop] - start
    cdef Py_ssize_t n_obs, n_mis, n_obs_all, n_prec, n_osd
    cdef Py_ssize_t i, i0, j, a, k, n, f, u, su, first, c
    cdef double q, v, log_det_marg, log_det_iso, log_det_full, d
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
    cdef int io, im, ns, info = 0, dim = <int> n_features
    cdef double log_2pi = log(2.0 * M_PI)

    if want_cond:
        for i in range(s):
            ws.run_max[i] = -INFINITY
            ws.run_sum[i] = 0.0
            for j in range(n_features):
                ws.cond[i * n_features + j] = 0.0

    for k in range(n_components):
        mu = &means[k, 0]
        f = 0 if tied else k
        S = &covariances[f, 0, 0]
        P = &precisions[f, 0, 0]

        # Pass 1: each unit's side, and each sample's column in its side's block.
        n_prec = 0
        n_osd = 0
        for u in range(u_first, u_stop):
            split_coordinates(&observed[order[unit_ptr[u]], 0], &isolated[f, 0], n_features,
                              ws.obs_idx, &n_obs, ws.mis_idx, &n_mis)
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
                    col = dtilde + ws.column[i] * n_features
                    for j in range(n_features):
                        col[j] = <floating> (X[n, j] - mu[j]) if observed[n, j] else 0.0
            _sym_product(dim, <int> n_prec, P, dtilde, pd)
        if want_cond and n_osd > 0:
            for j in range(n_osd * n_features):
                alpha[j] = 0.0

        # Pass 2: one factorisation per unit.
        for u in range(u_first, u_stop):
            i0 = unit_ptr[u] - start
            su = unit_ptr[u + 1] - unit_ptr[u]
            first = order[unit_ptr[u]]
            split_coordinates(&observed[first, 0], &isolated[f, 0], n_features,
                              ws.obs_idx, &n_obs, ws.mis_idx, &n_mis)
            n_obs_all = 0
            log_det_iso = 0.0
            log_det_full = -2.0 * log_det_prec[k]   # log det Sigma
            for j in range(n_features):
                if observed[first, j]:
                    n_obs_all += 1
                    if isolated[f, j]:
                        log_det_iso += log(<double> S[j * n_features + j])
                elif isolated[f, j]:
                    log_det_full += log(<double> P[j * n_features + j])
            io = <int> n_obs
            im = <int> n_mis
            ns = <int> su

            if not ws.prec_side[i0]:
                # Observed side: factor the coupled Sigma_oo.
                log_det_marg = log_det_iso
                if n_obs > 0:
                    info = factor_block(S, n_features, ws.obs_idx, n_obs, True, factor, &log_det_marg)
                    if info != 0:
                        return <int> k + 1
                    for i in range(su):
                        n = order[unit_ptr[u] + i]
                        col = unit_block + i * n_obs
                        for a in range(n_obs):
                            col[a] = <floating> (X[n, ws.obs_idx[a]] - mu[ws.obs_idx[a]])
                    # y = L^-1 d_o: squared norms give the quadratic forms.
                    trsm(LEFT, LOWER, NO_TRANS, NON_UNIT, io, ns, <floating> 1.0,
                         factor, io, unit_block, io)
                for i in range(su):
                    n = order[unit_ptr[u] + i]
                    q = 0.0
                    col = unit_block + i * n_obs
                    for a in range(n_obs):
                        q += col[a] * col[a]
                    for j in range(n_features):
                        if isolated[f, j] and observed[n, j]:
                            d = X[n, j] - mu[j]
                            q += d * d / S[j * n_features + j]
                    ws.rows[(i0 + i) * n_components + k] = (
                        -0.5 * (n_obs_all * log_2pi + log_det_marg + q) + log_weights[k])
                if want_cond and n_obs > 0:
                    # a = Sigma_oo^-1 d_o = L^-T y, scattered (zeros elsewhere).
                    trsm(LEFT, LOWER, TRANS, NON_UNIT, io, ns, <floating> 1.0,
                         factor, io, unit_block, io)
                    for i in range(su):
                        col = unit_block + i * n_obs
                        wcol = alpha + ws.column[i0 + i] * n_features
                        for a in range(n_obs):
                            wcol[ws.obs_idx[a]] = col[a]
            else:
                # Precision side. Isolated rows of P are diagonal, so their
                # missing entries of P d~ are 0 and keep E = mu_j.
                log_det_marg = log_det_full
                if n_mis > 0:
                    info = factor_block(P, n_features, ws.mis_idx, n_mis, True, factor, &log_det_marg)
                    if info != 0:
                        return <int> k + 1
                for i in range(su):
                    c = ws.column[i0 + i]
                    col = dtilde + c * n_features
                    wcol = pd + c * n_features
                    q = 0.0
                    for j in range(n_features):
                        q += col[j] * wcol[j]   # zeros where missing
                    if n_mis > 0:
                        # w = (P d~)_m, solved in place in the unit buffer
                        for a in range(n_mis):
                            unit_block[a] = wcol[ws.mis_idx[a]]
                        potrs(LOWER, im, 1, factor, im, unit_block, im)
                        for a in range(n_mis):
                            q -= wcol[ws.mis_idx[a]] * unit_block[a]
                    v = -0.5 * (n_obs_all * log_2pi + log_det_marg + q) + log_weights[k]
                    ws.rows[(i0 + i) * n_components + k] = v
                    if want_cond:
                        for j in range(n_features):
                            cmean[j] = mu[j]
                        for a in range(n_mis):
                            cmean[ws.mis_idx[a]] = mu[ws.mis_idx[a]] - unit_block[a]
                        _accumulate(ws, i0 + i, n_features, v, cmean)

        if want_cond and n_osd > 0:
            # Observed side: E[x_m | x_o] = mu_m + (Sigma a)_m for the whole
            # batch in one product (d~ is free again; isolated missing
            # coordinates get (Sigma a)_j = 0, i.e. mu_j).
            _sym_product(dim, <int> n_osd, S, alpha, dtilde)
            for i in range(s):
                if not ws.prec_side[i]:
                    col = dtilde + ws.column[i] * n_features
                    for j in range(n_features):
                        cmean[j] = mu[j] + col[j]
                    _accumulate(ws, i, n_features, ws.rows[i * n_components + k], cmean)

    # Log-sum-exp per sample; imputation weights by responsibilities.
    for i in range(s):
        n = order[start + i]
        log_norm[n] = normalize_row(&ws.rows[i * n_components], &out[n, 0],
                                    n_components, mode)
        if want_cond:
            for j in range(n_features):
                if observed[n, j]:
                    imputed[n, j] = X[n, j]
                elif ws.run_sum[i] > 0.0:
                    imputed[n, j] = ws.cond[i * n_features + j] / ws.run_sum[i]
                else:
                    # every component has zero weight: fall back on the plain average
                    imputed[n, j] = 0.0
                    for k in range(n_components):
                        imputed[n, j] += means[k, j] / n_components
    return 0


def missing_estep_full(const floating[:, ::1] X,
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
                      double[:, ::1] out, double[::1] log_norm, OutputMode mode,
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
    means : (n_components, n_features) float64; covariances, precisions :
        (n_components or 1, n_features, n_features) in X's dtype.
    isolated : (n_components or 1, n_features) uint8, 1 where row j of the covariance is zero
        off the diagonal (that coordinate is independent of the others).
    tied : bool, use factor 0 for every component.
    log_det_prec : (n_components,) log det U = -0.5 log det Sigma_k.
    log_weights : (n_components,)
    out, log_norm, mode : as in ``gmmfast._kernels._estep``.
    imputed : (n_samples, n_features) float64 or None. When given, receives
        x with each missing entry replaced by the responsibility-weighted
        conditional mean sum_k p(k | x_o) E_k[x_m | x_o].
    chunk : int, the most samples in a unit or a batch.
    n_threads : int

    Returns
    -------
    status : int
        0; k + 1 when a marginal covariance of component k could not be
        factorised (increase reg_covar); ``STATUS_NO_MEMORY``;
        ``STATUS_BAD_SHAPE`` (e.g. a batch of more than ``chunk`` samples);
        or ``STATUS_BAD_ARGUMENT`` (an unknown mode).
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t n_factors = 1 if tied else n_components
    cdef Py_ssize_t n_units = unit_ptr.shape[0] - 1
    cdef Py_ssize_t n_batches = batch_ptr.shape[0] - 1
    cdef Py_ssize_t bt
    cdef bint want_cond = imputed is not None
    cdef double[:, ::1] imputed_view = imputed if want_cond else None
    cdef Py_ssize_t dims[4]
    cdef Workspace *ws = NULL
    cdef unsigned long long fp_state = 0

    if (observed.shape[0] != n_samples or observed.shape[1] != n_features
            or order.shape[0] != n_samples or n_units < 0 or n_batches < 0 or chunk < 1
            or means.shape[1] != n_features
            or covariances.shape[0] < n_factors or covariances.shape[1] != n_features
            or covariances.shape[2] != n_features
            or precisions.shape[0] < n_factors or precisions.shape[1] != n_features
            or precisions.shape[2] != n_features
            or isolated.shape[0] < n_factors or isolated.shape[1] != n_features
            or log_det_prec.shape[0] < n_components or log_weights.shape[0] < n_components
            or out.shape[0] != n_samples or out.shape[1] != n_components
            or log_norm.shape[0] != n_samples
            or (want_cond and (imputed_view.shape[0] != n_samples
                               or imputed_view.shape[1] != n_features))):
        return STATUS_BAD_SHAPE
    if not mode_valid(mode):
        return STATUS_BAD_ARGUMENT
    if n_units > 0 and not units_valid(&order[0], n_samples, &unit_ptr[0], n_units, chunk):
        return STATUS_BAD_SHAPE
    for bt in range(n_batches):
        if (batch_ptr[bt] < 0 or batch_ptr[bt + 1] > n_units or batch_ptr[bt + 1] < batch_ptr[bt]
                or unit_ptr[batch_ptr[bt + 1]] - unit_ptr[batch_ptr[bt]] > chunk):
            return STATUS_BAD_SHAPE
    if n_batches <= 0:
        return STATUS_OK
    cdef int[::1] status = np.zeros(n_batches, dtype=np.intc)
    dims[0] = n_features
    dims[1] = n_components
    dims[2] = chunk
    dims[3] = want_cond

    with nogil, parallel(num_threads=team_size(n_threads)):
        fp_state = enter_ftz()
        ws = <Workspace*> arena_new(_layout, dims)
        for bt in prange(n_batches, schedule='dynamic'):
            if ws == NULL:
                status[bt] = STATUS_NO_MEMORY
            else:
                status[bt] = _batch(X, observed, order, unit_ptr, batch_ptr[bt], batch_ptr[bt + 1],
                                    means, covariances, precisions, isolated, tied,
                                    log_det_prec, log_weights, out, log_norm, mode,
                                    imputed_view, want_cond, ws)
        arena_free(ws)
        leave_ftz(fp_state)
    return first_failure(&status[0], n_batches) if n_batches > 0 else STATUS_OK
