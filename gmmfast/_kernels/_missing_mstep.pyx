"""Missing-data M-step kernel: expected sufficient statistics with missing values.

For a sample with observed coordinates o and missing coordinates m, a
component k (mu, Sigma, P = Sigma^-1) and the sample's responsibility r,
exact EM replaces the sample by

* xhat: x with its missing part replaced by the conditional mean
  E_k[x_m | x_o] = mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o), and
* C = Cov_k[x_m | x_o] = Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om = (P_mm)^-1
  on the (m, m) block (zeros elsewhere),

and this kernel accumulates, per component,

    R_k  = sum_n r_nk
    s1_k = sum_n r_nk (xhat_nk - mu_k)
    S2_k = sum_n r_nk [(xhat_nk - mu_k)(xhat_nk - mu_k)^T + C_nk]

*centred on the current mean* mu_k (tied: S2 pooled over components), so
the caller obtains the new mean and the scatter around it with a small
correction instead of the cancellation of E[xx^T] - mu mu^T.

Samples come grouped by mask (``order``/``unit_ptr`` from
``gmmfast._missing.mask_units``): all samples of a unit share one mask, so
one factorisation per (unit, component) serves all of them (tied: one
per unit). Per unit the cheaper side is taken (flop estimates):

* **observed side**: Cholesky L of Sigma_oo, V = L^-1 Sigma_om,
  C = Sigma_mm - V^T V, and E[x_m | x_o] - mu_m = V^T L^-1 (x_o - mu_o);
* **precision side** (few values missing): only P_mm is factorised and
  inverted (``potrf`` + ``potri``), C = P_mm^-1, and
  E[x_m | x_o] - mu_m = -C P_mo (x_o - mu_o).

A coordinate j that is *isolated* in a component (row j of Sigma zero off
the diagonal: on images, a pixel constant in the component's data, with
variance reg_covar) is independent of the others: where missing, its
conditional mean is mu_j and its conditional variance Sigma_jj, and it
influences no other coordinate. Such coordinates are left out of every
factorisation, which is exact and, on images with blank borders, cheaper
(about 1.3x on MNIST with 25% of the pixels missing).

Columns sqrt(r) (xhat - mu) are buffered per thread and added to the
thread's scatter by one ``syrk`` per buffer, so units of a single sample
still run at BLAS-3 speed. Units go to threads round-robin (static
schedule, chunk 1): which thread sums which units, and in which order,
depends only on the number of threads; per-thread float64 accumulators
are merged in thread order. All arithmetic is float64 (float32 samples
are converted on reading). BLAS/LAPACK run single-threaded inside the
parallel region (callers limit them).

The kernel returns a status (see ``_common``) and raises nothing; the
factorisation side is chosen per unit by a flop estimate, and
``_missing_mstep_full_forced_side`` (for tests) forces one side.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport sqrt
from libc.string cimport memset

from ._common cimport (
    STATUS_OK, STATUS_NO_MEMORY, STATUS_BAD_SHAPE,
    team_size, merge_slots, merge_symmetric_slots,
    gather_lower, gather_cross, factor_block, split_coordinates, units_valid, first_failure,
    Arena, arena_take, arena_new, arena_free,
)
from ._fpenv cimport enter_ftz, leave_ftz
from ._linalg cimport (
    gemm, symm, syrk, trsm, potri, LEFT, LOWER, NO_TRANS, TRANS, NON_UNIT,
)
from ._omp cimport omp_get_thread_num


cdef enum FactorSide:
    CHEAPER_SIDE = 0     # per unit, the side with the smaller flop estimate
    OBSERVED_SIDE = 1    # always factorise Sigma_oo
    PRECISION_SIDE = 2   # P_mm wherever values are both observed and missing


cdef struct Workspace:
    Py_ssize_t *obs_idx      # (n_features,) observed coordinates of the unit's mask
    Py_ssize_t *mis_idx      # (n_features,) missing coordinates
    Py_ssize_t *cobs         # (n_features,) observed and not isolated in the current factor
    Py_ssize_t *cmis         # (n_features,) missing and not isolated
    Py_ssize_t *imis         # (n_features,) missing and isolated
    double *factor           # (n_features, n_features) L of Sigma_oo, or P_mm^-1 (precision side)
    double *cross            # (o * m) V = L^-1 Sigma_om (o x m) or P_mo (m x o)
    double *cond             # (n_features, n_features) C = Sigma_mm - V^T V (observed side)
    double *dev              # (n_features, chunk) x_o - mu_o per sample, then L^-1 of it
    double *work             # (n_features, chunk) P_mo (x_o - mu_o) (precision side)
    double *dev_m            # (n_features, chunk) E[x_m | x_o] - mu_m per sample
    double *buf              # (n_features, cap) columns sqrt(r) (xhat - mu) awaiting syrk
    Py_ssize_t n_buf
    Py_ssize_t cap


cdef void *_layout(Arena *arena, const Py_ssize_t *dims) noexcept nogil:
    """One thread's work space; ``dims`` = (n_features, chunk). See
    ``arena_new``."""
    cdef Py_ssize_t n_features = dims[0], chunk = dims[1]
    cdef Py_ssize_t half = n_features // 2
    cdef Workspace measuring
    cdef Workspace *ws = <Workspace*> arena_take(arena, 1, sizeof(Workspace))
    if ws == NULL:
        ws = &measuring   # the measuring pass: these pointers are discarded
    ws.cap = chunk if chunk > 64 else 64
    ws.n_buf = 0
    ws.obs_idx = <Py_ssize_t*> arena_take(arena, n_features, sizeof(Py_ssize_t))
    ws.mis_idx = <Py_ssize_t*> arena_take(arena, n_features, sizeof(Py_ssize_t))
    ws.cobs = <Py_ssize_t*> arena_take(arena, n_features, sizeof(Py_ssize_t))
    ws.cmis = <Py_ssize_t*> arena_take(arena, n_features, sizeof(Py_ssize_t))
    ws.imis = <Py_ssize_t*> arena_take(arena, n_features, sizeof(Py_ssize_t))
    ws.factor = <double*> arena_take(arena, n_features * n_features, sizeof(double))
    ws.cross = <double*> arena_take(arena, half * (n_features - half) + 1, sizeof(double))
    ws.cond = <double*> arena_take(arena, n_features * n_features, sizeof(double))
    ws.dev = <double*> arena_take(arena, n_features * chunk, sizeof(double))
    ws.work = <double*> arena_take(arena, n_features * chunk, sizeof(double))
    ws.dev_m = <double*> arena_take(arena, n_features * chunk, sizeof(double))
    ws.buf = <double*> arena_take(arena, n_features * ws.cap, sizeof(double))
    return ws


cdef void _flush(Workspace *ws, double *acc, Py_ssize_t n_features) noexcept nogil:
    """acc += buf buf^T (lower triangle, column-major), then empty the buffer."""
    cdef int dim = <int> n_features
    if ws.n_buf == 0:
        return
    syrk(LOWER, NO_TRANS, dim, <int> ws.n_buf, 1.0, ws.buf, dim, 1.0, acc, dim)
    ws.n_buf = 0


cdef double *_conditional_cov(const double *S, const double *P, Py_ssize_t n_features,
                              const Py_ssize_t *obs, Py_ssize_t n_obs,
                              const Py_ssize_t *mis, Py_ssize_t n_mis,
                              bint precision_side, Workspace *ws,
                              int *info) noexcept nogil:
    """Factorise one side and return C (n_mis x n_mis, lower, column-major)
    for the coordinates ``obs`` (observed) and ``mis`` (missing).

    Observed side: ws.factor = L (Sigma_oo = L L^T), ws.cross = V = L^-1 Sigma_om,
    C in ws.cond. Precision side: ws.cross = P_mo, C = P_mm^-1 in ws.factor.
    ``info`` receives LAPACK's status (non-zero: not positive definite).
    """
    cdef int io = <int> n_obs, im = <int> n_mis
    info[0] = 0
    if precision_side:
        info[0] = factor_block(P, n_features, mis, n_mis, False, ws.factor, NULL)
        if info[0] != 0:
            return NULL
        info[0] = potri(LOWER, im, ws.factor, im)
        if info[0] != 0:
            return NULL
        gather_cross(P, n_features, mis, n_mis, obs, n_obs, ws.cross)
        return ws.factor
    gather_lower(S, n_features, mis, n_mis, False, ws.cond)
    if n_obs > 0:
        info[0] = factor_block(S, n_features, obs, n_obs, False, ws.factor, NULL)
        if info[0] != 0:
            return NULL
        gather_cross(S, n_features, obs, n_obs, mis, n_mis, ws.cross)
        trsm(LEFT, LOWER, NO_TRANS, NON_UNIT, io, im, 1.0, ws.factor, io, ws.cross, io)
        syrk(LOWER, TRANS, im, io, -1.0, ws.cross, io, 1.0, ws.cond, im)
    return ws.cond


cdef void _add_cond(double *acc, const double *C, double weight, Py_ssize_t n_features,
                    Py_ssize_t n_mis, const Py_ssize_t *mis, const double *S,
                    Py_ssize_t n_iso, const Py_ssize_t *iso) noexcept nogil:
    """acc[m, m] += weight * C (lower triangles, column-major) for the coupled
    missing coordinates ``mis``, and acc[j, j] += weight * S[j, j] for the
    isolated missing coordinates ``iso``."""
    cdef Py_ssize_t a, b, j
    cdef double *col
    for b in range(n_mis):
        col = acc + mis[b] * n_features
        for a in range(b, n_mis):
            col[mis[a]] += weight * C[b * n_mis + a]
    for a in range(n_iso):
        j = iso[a]
        acc[j * n_features + j] += weight * S[j * n_features + j]


cdef int _unit(const floating[:, ::1] X, const unsigned char[:, ::1] observed,
               const Py_ssize_t[::1] order, Py_ssize_t start, Py_ssize_t stop,
               const double[:, ::1] resp, const double[:, ::1] means,
               const double[:, :, ::1] covariances,
               const double[:, :, ::1] precisions,
               const unsigned char[:, ::1] isolated, bint tied,
               Py_ssize_t k0, Py_ssize_t k1, FactorSide side, Workspace *ws,
               double *acc, double *s1, double *nk) noexcept nogil:
    """Add the statistics of samples order[start:stop] (one mask) for
    components k0..k1-1 to this thread's ``acc`` (n_features x n_features),
    ``s1`` (n_components x n_features) and ``nk`` (n_components,). Full
    covariances are called with one component, tied with all of them (one
    factorisation shared).

    Returns 0, or k + 1 if a block of component k could not be factorised.
    """
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t s = stop - start
    cdef Py_ssize_t first = order[start]
    cdef Py_ssize_t n_obs = 0, n_mis = 0, n_cobs = 0, n_cmis = 0, n_imis = 0
    cdef Py_ssize_t i, j, a, k, n, f = 0
    cdef bint precision_side = False, ready = False
    cdef double rsum, total = 0.0, r, w, v, no, nm, cost_obs, cost_prec
    cdef const double *mu
    cdef const unsigned char *iso
    cdef double *C = NULL
    cdef double *col
    cdef double *s1k
    cdef double *dm
    cdef int io = 0, im = 0, ns = <int> s, info = 0

    split_coordinates(&observed[first, 0], NULL, n_features,
                      ws.obs_idx, &n_obs, ws.mis_idx, &n_mis)
    if n_mis == 0:
        ready = True  # complete samples: xhat = x, C = 0, nothing to factorise

    for k in range(k0, k1):
        rsum = 0.0
        for i in range(s):
            rsum += resp[order[start + i], k]
        if rsum == 0.0:
            continue  # exact: the unit contributes nothing to component k
        mu = &means[k, 0]
        if not ready:
            f = 0 if tied else k
            # Coupled coordinates of this covariance; isolated ones need no algebra.
            iso = &isolated[f, 0]
            split_coordinates(&observed[first, 0], iso, n_features,
                              ws.cobs, &n_cobs, ws.cmis, &n_cmis)
            n_imis = 0
            for a in range(n_mis):
                j = ws.mis_idx[a]
                if iso[j]:
                    ws.imis[n_imis] = j
                    n_imis += 1
            io = <int> n_cobs
            im = <int> n_cmis
            # Flops per (unit, component) of each side, beyond what both share.
            no = <double> n_cobs
            nm = <double> n_cmis
            cost_obs = no * no * no / 3.0 + no * no * nm + nm * nm * no + s * no * no
            cost_prec = nm * nm * nm + 2.0 * s * nm * nm
            if side == OBSERVED_SIDE:
                cost_prec = cost_obs + 1.0
            elif side == PRECISION_SIDE:
                cost_prec = 0.0
            precision_side = n_cobs > 0 and n_cmis > 0 and cost_prec < cost_obs
            if n_cmis > 0:
                C = _conditional_cov(&covariances[f, 0, 0], &precisions[f, 0, 0], n_features,
                                     ws.cobs, n_cobs, ws.cmis, n_cmis,
                                     precision_side, ws, &info)
                if info != 0:
                    return <int> k + 1
            ready = tied  # a tied factorisation serves every component
        if n_cmis > 0:
            # dev_m[:, i] = E_k[x_m | x_o] - mu_m (coupled m) for every sample.
            if n_cobs == 0:
                for a in range(n_cmis * s):
                    ws.dev_m[a] = 0.0
            else:
                for i in range(s):
                    n = order[start + i]
                    col = ws.dev + i * n_cobs
                    for a in range(n_cobs):
                        col[a] = <double> X[n, ws.cobs[a]] - mu[ws.cobs[a]]
                if precision_side:
                    gemm(NO_TRANS, NO_TRANS, im, ns, io, 1.0, ws.cross, im, ws.dev, io,
                         0.0, ws.work, im)
                    symm(LEFT, LOWER, im, ns, -1.0, C, im, ws.work, im, 0.0, ws.dev_m, im)
                else:
                    trsm(LEFT, LOWER, NO_TRANS, NON_UNIT, io, ns, 1.0, ws.factor, io,
                         ws.dev, io)
                    gemm(TRANS, NO_TRANS, im, ns, io, 1.0, ws.cross, io, ws.dev, io,
                         0.0, ws.dev_m, im)
        s1k = s1 + k * n_features
        for i in range(s):
            n = order[start + i]
            r = resp[n, k]
            if r == 0.0:
                continue
            if ws.n_buf == ws.cap:
                _flush(ws, acc, n_features)
            w = sqrt(r)
            col = ws.buf + ws.n_buf * n_features
            ws.n_buf += 1
            for a in range(n_obs):
                j = ws.obs_idx[a]
                v = <double> X[n, j] - mu[j]
                col[j] = w * v
                s1k[j] += r * v
            dm = ws.dev_m + i * n_cmis
            for a in range(n_cmis):
                j = ws.cmis[a]
                v = dm[a]
                col[j] = w * v
                s1k[j] += r * v
            for a in range(n_imis):
                col[ws.imis[a]] = 0.0  # xhat_j = mu_j
        nk[k] += rsum
        if tied:
            total += rsum
        elif n_mis > 0:
            _add_cond(acc, C, rsum, n_features, n_cmis, ws.cmis, &covariances[f, 0, 0],
                      n_imis, ws.imis)
    if tied and total != 0.0 and n_mis > 0:
        _add_cond(acc, C, total, n_features, n_cmis, ws.cmis, &covariances[0, 0, 0],
                  n_imis, ws.imis)
    return 0


cdef int _statistics(const floating[:, ::1] X,
                     const unsigned char[:, ::1] observed,
                     const Py_ssize_t[::1] order,
                     const Py_ssize_t[::1] unit_ptr,
                     const double[:, ::1] resp,
                     const double[:, ::1] means,
                     const double[:, :, ::1] covariances,
                     const double[:, :, ::1] precisions,
                     const unsigned char[:, ::1] isolated, bint tied,
                     double[::1] nk, double[:, ::1] s1, double[:, :, ::1] s2,
                     Py_ssize_t chunk, int n_threads, FactorSide side):
    """``missing_mstep_full`` with the factorisation side as a parameter."""
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t n_units = unit_ptr.shape[0] - 1
    cdef Py_ssize_t n_factors = 1 if tied else n_components
    cdef Py_ssize_t n_passes = 1 if tied else n_components
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t n_slots = n_team
    cdef Py_ssize_t p, u, k0, k1
    cdef Py_ssize_t dims[2]
    cdef Workspace *ws = NULL
    cdef int tid = 0
    cdef int failed = 0
    cdef unsigned long long fp_state = 0

    if (observed.shape[0] != n_samples or observed.shape[1] != n_features
            or order.shape[0] != n_samples or n_units < 0 or chunk < 1
            or resp.shape[0] != n_samples or resp.shape[1] != n_components
            or means.shape[1] != n_features
            or covariances.shape[0] < n_factors or covariances.shape[1] != n_features
            or covariances.shape[2] != n_features
            or precisions.shape[0] < n_factors or precisions.shape[1] != n_features
            or precisions.shape[2] != n_features
            or isolated.shape[0] < n_factors or isolated.shape[1] != n_features
            or nk.shape[0] != n_components
            or s1.shape[0] != n_components or s1.shape[1] != n_features
            or s2.shape[0] != n_passes or s2.shape[1] != n_features
            or s2.shape[2] != n_features):
        return STATUS_BAD_SHAPE
    if n_units > 0 and not units_valid(&order[0], n_samples, &unit_ptr[0], n_units, chunk):
        return STATUS_BAD_SHAPE
    if n_features == 0 or n_components == 0:
        return STATUS_OK
    # Per-thread slots: exactly one per thread of the team below.
    cdef double[:, :, ::1] thread_acc = np.empty((n_slots, n_features, n_features))
    cdef double[:, :, ::1] thread_s1 = np.zeros((n_slots, n_components, n_features))
    cdef double[:, ::1] thread_nk = np.zeros((n_slots, n_components))
    cdef int[::1] status = np.zeros(max(n_units, 1), dtype=np.intc)
    dims[0] = n_features
    dims[1] = chunk

    for p in range(n_passes):
        # Full: one pass per component, so a thread holds one D x D sum.
        k0 = 0 if tied else p
        k1 = n_components if tied else p + 1
        memset(&thread_acc[0, 0, 0], 0, n_slots * n_features * n_features * sizeof(double))
        with nogil, parallel(num_threads=n_team):
            fp_state = enter_ftz()
            tid = omp_get_thread_num()
            ws = <Workspace*> arena_new(_layout, dims)
            for u in prange(n_units, schedule='static', chunksize=1):
                if ws == NULL:
                    status[u] = STATUS_NO_MEMORY
                else:
                    status[u] = _unit(X, observed, order, unit_ptr[u], unit_ptr[u + 1],
                                      resp, means, covariances, precisions, isolated, tied,
                                      k0, k1, side, ws, &thread_acc[tid, 0, 0],
                                      &thread_s1[tid, 0, 0], &thread_nk[tid, 0])
            if ws != NULL:
                _flush(ws, &thread_acc[tid, 0, 0], n_features)
            arena_free(ws)
            leave_ftz(fp_state)
        failed = first_failure(&status[0], n_units)
        if failed != STATUS_OK:
            return failed
        # Merge in thread order; syrk filled the column-major lower triangles.
        merge_symmetric_slots(&thread_acc[0, 0, 0], n_slots, n_features, LOWER,
                              &s2[p, 0, 0])
    merge_slots(&thread_nk[0, 0], n_slots, n_components, &nk[0])
    merge_slots(&thread_s1[0, 0, 0], n_slots, n_components * n_features, &s1[0, 0])
    return STATUS_OK


def missing_mstep_full(const floating[:, ::1] X,
                      const unsigned char[:, ::1] observed,
                      const Py_ssize_t[::1] order,
                      const Py_ssize_t[::1] unit_ptr,
                      const double[:, ::1] resp,
                      const double[:, ::1] means,
                      const double[:, :, ::1] covariances,
                      const double[:, :, ::1] precisions,
                      const unsigned char[:, ::1] isolated, bint tied,
                      double[::1] nk, double[:, ::1] s1, double[:, :, ::1] s2,
                      Py_ssize_t chunk, int n_threads):
    """Expected sufficient statistics of exact EM with missing values.

    Parameters
    ----------
    X : (n_samples, n_features) float32/float64; missing entries must be
        finite (any value), they are never read.
    observed : (n_samples, n_features) uint8, 1 where observed.
    order, unit_ptr : mask units, as from ``gmmfast._missing.mask_units``:
        unit u is ``order[unit_ptr[u]:unit_ptr[u+1]]``, one mask, at most
        ``chunk`` samples.
    resp : (n_samples, n_components) responsibilities (from the missing-data E-step).
    means : (n_components, n_features) current means (the centre of the statistics).
    covariances, precisions : (n_components or 1, n_features, n_features)
        current Sigma_k and Sigma_k^-1.
    isolated : (n_components or 1, n_features) uint8, 1 where row j of
        Sigma_k is zero off the diagonal (see the module docstring; all
        zeros is always correct).
    tied : bool, use factor 0 for every component and pool the scatter.
    nk : (n_components,) out, sum_n r_nk.
    s1 : (n_components, n_features) out, sum_n r_nk (xhat_nk - mu_k).
    s2 : (n_components, n_features, n_features), or (1, n_features,
        n_features) when tied, out (both triangles):
        sum_n r_nk [(xhat_nk - mu_k)(xhat_nk - mu_k)^T + C_nk]
        (tied: also summed over k).
    chunk : int, the most samples in a unit.
    n_threads : int

    Returns
    -------
    status : int
        0; k + 1 when a block of component k (tied: of the tied
        covariance) could not be factorised, the outputs are then
        undefined; ``STATUS_NO_MEMORY``; or ``STATUS_BAD_SHAPE``.
    """
    return _statistics(X, observed, order, unit_ptr, resp, means, covariances,
                       precisions, isolated, tied, nk, s1, s2, chunk, n_threads,
                       CHEAPER_SIDE)


def _missing_mstep_full_forced_side(const floating[:, ::1] X,
                                   const unsigned char[:, ::1] observed,
                                   const Py_ssize_t[::1] order,
                                   const Py_ssize_t[::1] unit_ptr,
                                   const double[:, ::1] resp,
                                   const double[:, ::1] means,
                                   const double[:, :, ::1] covariances,
                                   const double[:, :, ::1] precisions,
                                   const unsigned char[:, ::1] isolated, bint tied,
                                   double[::1] nk, double[:, ::1] s1, double[:, :, ::1] s2,
                                   Py_ssize_t chunk, int n_threads, int side):
    """``missing_mstep_full`` with the factorisation side forced, for tests.

    ``side``: 0, the cheaper side per unit (as ``missing_mstep_full``); 1,
    always the observed side (Sigma_oo); 2, the precision side (P_mm)
    wherever values are both observed and missing.
    """
    if side not in (CHEAPER_SIDE, OBSERVED_SIDE, PRECISION_SIDE):
        raise ValueError(f"side must be 0, 1 or 2; got {side}")
    return _statistics(X, observed, order, unit_ptr, resp, means, covariances,
                       precisions, isolated, tied, nk, s1, s2, chunk, n_threads,
                       <FactorSide> side)
