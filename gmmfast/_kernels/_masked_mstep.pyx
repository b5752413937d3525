"""Masked M-step kernel: expected sufficient statistics with missing values.

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
  inverted (``dpotrf`` + ``dpotri``), C = P_mm^-1, and
  E[x_m | x_o] - mu_m = -C P_mo (x_o - mu_o).

A coordinate j that is *isolated* in a component (row j of Sigma zero off
the diagonal: on images, a pixel constant in the component's data, with
variance reg_covar) is independent of the others: where missing, its
conditional mean is mu_j and its conditional variance Sigma_jj, and it
influences no other coordinate. Such coordinates are left out of every
factorisation, which is exact and, on images with blank borders, cheaper
(about 1.3x on MNIST with 25% of the pixels missing).

Columns sqrt(r) (xhat - mu) are buffered per thread and added to the
thread's scatter by one ``dsyrk`` per buffer, so units of a single sample
still run at BLAS-3 speed. Units go to threads round-robin (static
schedule, chunk 1): which thread sums which units, and in which order,
depends only on the number of threads; per-thread float64 accumulators
are merged in thread order. All arithmetic is float64 (float32 samples
are converted on reading). BLAS/LAPACK run single-threaded inside the
parallel region (callers limit them).
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport sqrt
from libc.stdlib cimport malloc, free
from libc.string cimport memset
cimport openmp

from scipy.linalg.cython_blas cimport dtrsm, dgemm, dsyrk, dsymm
from scipy.linalg.cython_lapack cimport dpotrf, dpotri

from ._fpenv cimport enter_ftz, leave_ftz


cdef struct Workspace:
    Py_ssize_t *obs_idx      # (D,) observed coordinates of the unit's mask
    Py_ssize_t *mis_idx      # (D,) missing coordinates
    Py_ssize_t *cobs         # (D,) observed and not isolated in the current factor
    Py_ssize_t *cmis         # (D,) missing and not isolated
    Py_ssize_t *imis         # (D,) missing and isolated
    double *factor           # (D, D) L of Sigma_oo, or P_mm^-1 (precision side)
    double *cross            # (o * m) V = L^-1 Sigma_om (o x m) or P_mo (m x o)
    double *cond             # (D, D) C = Sigma_mm - V^T V (observed side)
    double *dev              # (D, chunk) x_o - mu_o per sample, then L^-1 of it
    double *work             # (D, chunk) P_mo (x_o - mu_o) (precision side)
    double *dev_m            # (D, chunk) E[x_m | x_o] - mu_m per sample
    double *buf              # (D, cap) columns sqrt(r) (xhat - mu) awaiting dsyrk
    Py_ssize_t n_buf
    Py_ssize_t cap


cdef Workspace *_workspace_new(Py_ssize_t D, Py_ssize_t chunk) noexcept nogil:
    """One thread's buffers, or NULL if memory is short."""
    cdef Workspace *ws = <Workspace*> malloc(sizeof(Workspace))
    cdef Py_ssize_t half = D // 2
    if ws == NULL:
        return NULL
    ws.cap = chunk if chunk > 64 else 64
    ws.n_buf = 0
    ws.obs_idx = <Py_ssize_t*> malloc(D * sizeof(Py_ssize_t))
    ws.mis_idx = <Py_ssize_t*> malloc(D * sizeof(Py_ssize_t))
    ws.cobs = <Py_ssize_t*> malloc(D * sizeof(Py_ssize_t))
    ws.cmis = <Py_ssize_t*> malloc(D * sizeof(Py_ssize_t))
    ws.imis = <Py_ssize_t*> malloc(D * sizeof(Py_ssize_t))
    ws.factor = <double*> malloc(D * D * sizeof(double))
    ws.cross = <double*> malloc((half * (D - half) + 1) * sizeof(double))
    ws.cond = <double*> malloc(D * D * sizeof(double))
    ws.dev = <double*> malloc(D * chunk * sizeof(double))
    ws.work = <double*> malloc(D * chunk * sizeof(double))
    ws.dev_m = <double*> malloc(D * chunk * sizeof(double))
    ws.buf = <double*> malloc(D * ws.cap * sizeof(double))
    if (ws.obs_idx == NULL or ws.mis_idx == NULL or ws.cobs == NULL
            or ws.cmis == NULL or ws.imis == NULL or ws.factor == NULL
            or ws.cross == NULL or ws.cond == NULL or ws.dev == NULL
            or ws.work == NULL or ws.dev_m == NULL or ws.buf == NULL):
        _workspace_free(ws)
        return NULL
    return ws


cdef void _workspace_free(Workspace *ws) noexcept nogil:
    if ws == NULL:
        return
    free(ws.obs_idx)
    free(ws.mis_idx)
    free(ws.cobs)
    free(ws.cmis)
    free(ws.imis)
    free(ws.factor)
    free(ws.cross)
    free(ws.cond)
    free(ws.dev)
    free(ws.work)
    free(ws.dev_m)
    free(ws.buf)
    free(ws)


cdef void _flush(Workspace *ws, double *acc, Py_ssize_t D) noexcept nogil:
    """acc += buf buf^T (lower triangle, column-major), then empty the buffer."""
    cdef char L = b'L', N = b'N'
    cdef int d = <int> D, nb = <int> ws.n_buf
    cdef double one = 1.0
    if ws.n_buf == 0:
        return
    dsyrk(&L, &N, &d, &nb, &one, ws.buf, &d, &one, acc, &d)
    ws.n_buf = 0


cdef double *_conditional_cov(const double *S, const double *P, Py_ssize_t D,
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
    cdef Py_ssize_t a, b
    cdef int io = <int> n_obs, im = <int> n_mis
    cdef char L = b'L', N = b'N', T = b'T'
    cdef double one = 1.0, minus_one = -1.0
    info[0] = 0
    if precision_side:
        for b in range(n_mis):
            for a in range(b, n_mis):
                ws.factor[b * n_mis + a] = P[mis[a] * D + mis[b]]
        dpotrf(&L, &im, ws.factor, &im, info)
        if info[0] != 0:
            return NULL
        dpotri(&L, &im, ws.factor, &im, info)
        if info[0] != 0:
            return NULL
        for b in range(n_obs):
            for a in range(n_mis):
                ws.cross[b * n_mis + a] = P[mis[a] * D + obs[b]]
        return ws.factor
    for b in range(n_mis):
        for a in range(b, n_mis):
            ws.cond[b * n_mis + a] = S[mis[a] * D + mis[b]]
    if n_obs > 0:
        for b in range(n_obs):
            for a in range(b, n_obs):
                ws.factor[b * n_obs + a] = S[obs[a] * D + obs[b]]
        dpotrf(&L, &io, ws.factor, &io, info)
        if info[0] != 0:
            return NULL
        for b in range(n_mis):
            for a in range(n_obs):
                ws.cross[b * n_obs + a] = S[obs[a] * D + mis[b]]
        dtrsm(&L, &L, &N, &N, &io, &im, &one, ws.factor, &io, ws.cross, &io)
        dsyrk(&L, &T, &im, &io, &minus_one, ws.cross, &io, &one, ws.cond, &im)
    return ws.cond


cdef void _add_cond(double *acc, const double *C, double weight, Py_ssize_t D,
                    Py_ssize_t n_mis, const Py_ssize_t *mis, const double *S,
                    Py_ssize_t n_iso, const Py_ssize_t *iso) noexcept nogil:
    """acc[m, m] += weight * C (lower triangles, column-major) for the coupled
    missing coordinates ``mis``, and acc[j, j] += weight * S[j, j] for the
    isolated missing coordinates ``iso``."""
    cdef Py_ssize_t a, b, j
    cdef double *col
    for b in range(n_mis):
        col = acc + mis[b] * D
        for a in range(b, n_mis):
            col[mis[a]] += weight * C[b * n_mis + a]
    for a in range(n_iso):
        j = iso[a]
        acc[j * D + j] += weight * S[j * D + j]


cdef int _unit(const floating[:, ::1] X, const unsigned char[:, ::1] observed,
               const Py_ssize_t[::1] order, Py_ssize_t start, Py_ssize_t stop,
               const double[:, ::1] resp, const double[:, ::1] means,
               const double[:, :, ::1] covariances,
               const double[:, :, ::1] precisions,
               const unsigned char[:, ::1] isolated, bint tied,
               Py_ssize_t k0, Py_ssize_t k1, int side, Workspace *ws,
               double *acc, double *s1, double *nk) noexcept nogil:
    """Add the statistics of samples order[start:stop] (one mask) for
    components k0..k1-1 to this thread's ``acc`` (D x D), ``s1`` (K x D)
    and ``nk`` (K,). Full covariances are called with one component, tied
    with all of them (one factorisation shared).

    Returns 0, or k + 1 if a block of component k could not be factorised.
    """
    cdef Py_ssize_t D = X.shape[1]
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
    cdef char L = b'L', N = b'N', T = b'T'
    cdef double one = 1.0, zero = 0.0, minus_one = -1.0

    for j in range(D):
        if observed[first, j]:
            ws.obs_idx[n_obs] = j
            n_obs += 1
        else:
            ws.mis_idx[n_mis] = j
            n_mis += 1
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
            n_cobs = 0
            n_cmis = 0
            n_imis = 0
            for a in range(n_obs):
                j = ws.obs_idx[a]
                if not iso[j]:
                    ws.cobs[n_cobs] = j
                    n_cobs += 1
            for a in range(n_mis):
                j = ws.mis_idx[a]
                if iso[j]:
                    ws.imis[n_imis] = j
                    n_imis += 1
                else:
                    ws.cmis[n_cmis] = j
                    n_cmis += 1
            io = <int> n_cobs
            im = <int> n_cmis
            # Flops per (unit, component) of each side, beyond what both share.
            no = <double> n_cobs
            nm = <double> n_cmis
            cost_obs = no * no * no / 3.0 + no * no * nm + nm * nm * no + s * no * no
            cost_prec = nm * nm * nm + 2.0 * s * nm * nm
            if side != 0:
                cost_prec = 0.0 if side == 2 else cost_obs + 1.0
            precision_side = n_cobs > 0 and n_cmis > 0 and cost_prec < cost_obs
            if n_cmis > 0:
                C = _conditional_cov(&covariances[f, 0, 0], &precisions[f, 0, 0], D,
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
                    dgemm(&N, &N, &im, &ns, &io, &one, ws.cross, &im, ws.dev, &io,
                          &zero, ws.work, &im)
                    dsymm(&L, &L, &im, &ns, &minus_one, C, &im, ws.work, &im,
                          &zero, ws.dev_m, &im)
                else:
                    dtrsm(&L, &L, &N, &N, &io, &ns, &one, ws.factor, &io,
                          ws.dev, &io)
                    dgemm(&T, &N, &im, &ns, &io, &one, ws.cross, &io, ws.dev, &io,
                          &zero, ws.dev_m, &im)
        s1k = s1 + k * D
        for i in range(s):
            n = order[start + i]
            r = resp[n, k]
            if r == 0.0:
                continue
            if ws.n_buf == ws.cap:
                _flush(ws, acc, D)
            w = sqrt(r)
            col = ws.buf + ws.n_buf * D
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
            _add_cond(acc, C, rsum, D, n_cmis, ws.cmis, &covariances[f, 0, 0],
                      n_imis, ws.imis)
    if tied and total != 0.0 and n_mis > 0:
        _add_cond(acc, C, total, D, n_cmis, ws.cmis, &covariances[0, 0, 0],
                  n_imis, ws.imis)
    return 0


def masked_mstep_full(const floating[:, ::1] X,
                      const unsigned char[:, ::1] observed,
                      const Py_ssize_t[::1] order,
                      const Py_ssize_t[::1] unit_ptr,
                      const double[:, ::1] resp,
                      const double[:, ::1] means,
                      const double[:, :, ::1] covariances,
                      const double[:, :, ::1] precisions,
                      const unsigned char[:, ::1] isolated, bint tied,
                      double[::1] nk, double[:, ::1] s1, double[:, :, ::1] s2,
                      Py_ssize_t chunk, int n_threads, int side=0):
    """Expected sufficient statistics of exact EM with missing values.

    Parameters
    ----------
    X : (n_samples, n_features) float32/float64; missing entries must be
        finite (any value), they are never read.
    observed : (n_samples, n_features) uint8, 1 where observed.
    order, unit_ptr : mask units, as from ``gmmfast._missing.mask_units``:
        unit u is ``order[unit_ptr[u]:unit_ptr[u+1]]``, one mask, at most
        ``chunk`` samples.
    resp : (n_samples, K) responsibilities (from the masked E-step).
    means : (K, D) current means (the centre of the statistics).
    covariances, precisions : (K or 1, D, D) current Sigma_k and Sigma_k^-1.
    isolated : (K or 1, D) uint8, 1 where row j of Sigma_k is zero off the
        diagonal (see the module docstring; all zeros is always correct).
    tied : bool, use factor 0 for every component and pool the scatter.
    nk : (K,) out, sum_n r_nk.
    s1 : (K, D) out, sum_n r_nk (xhat_nk - mu_k).
    s2 : (K, D, D), or (1, D, D) when tied, out (both triangles):
        sum_n r_nk [(xhat_nk - mu_k)(xhat_nk - mu_k)^T + C_nk]
        (tied: also summed over k).
    chunk : int, the most samples in a unit.
    n_threads : int
    side : int
        0: the cheaper side per unit; 1: always the observed side; 2: the
        precision side wherever values are both observed and missing
        (for tests).

    Returns
    -------
    failed : int
        0, or k + 1 when a block of component k (tied: of the tied
        covariance) could not be factorised; the outputs are then undefined.
    """
    cdef Py_ssize_t n_units = unit_ptr.shape[0] - 1
    cdef Py_ssize_t D = X.shape[1]
    cdef Py_ssize_t K = means.shape[0]
    cdef Py_ssize_t n_slots = max(n_threads, 1)
    cdef Py_ssize_t n_passes = 1 if tied else K
    cdef Py_ssize_t p, u, t, i, j, k, k0, k1
    cdef double[:, :, ::1] thread_acc = np.empty((n_slots, D, D))
    cdef double[:, :, ::1] thread_s1 = np.zeros((n_slots, K, D))
    cdef double[:, ::1] thread_nk = np.zeros((n_slots, K))
    cdef int[::1] status = np.zeros(max(n_units, 1), dtype=np.intc)
    cdef Workspace *ws = NULL
    cdef int tid = 0
    cdef double total
    cdef unsigned long long fp_state = 0

    for p in range(n_passes):
        # Full: one pass per component, so a thread holds one D x D sum.
        k0 = 0 if tied else p
        k1 = K if tied else p + 1
        memset(&thread_acc[0, 0, 0], 0, n_slots * D * D * sizeof(double))
        with nogil, parallel(num_threads=n_threads):
            fp_state = enter_ftz()
            tid = openmp.omp_get_thread_num()
            ws = _workspace_new(D, chunk)
            for u in prange(n_units, schedule='static', chunksize=1):
                if ws == NULL:
                    status[u] = -1
                else:
                    status[u] = _unit(X, observed, order, unit_ptr[u], unit_ptr[u + 1],
                                      resp, means, covariances, precisions, isolated, tied,
                                      k0, k1, side, ws, &thread_acc[tid, 0, 0],
                                      &thread_s1[tid, 0, 0], &thread_nk[tid, 0])
            if ws != NULL:
                _flush(ws, &thread_acc[tid, 0, 0], D)
            _workspace_free(ws)
            leave_ftz(fp_state)
        for u in range(n_units):
            if status[u] < 0:
                raise MemoryError("masked M-step kernel: could not allocate its work space")
        for u in range(n_units):
            if status[u] > 0:
                return status[u]
        # Merge in thread order; the column-major lower triangle is
        # thread_acc[t, j, i] for i >= j in C indexing.
        for i in range(D):
            for j in range(i + 1):
                total = 0.0
                for t in range(n_slots):
                    total += thread_acc[t, j, i]
                s2[p, i, j] = total
                s2[p, j, i] = total
    for k in range(K):
        total = 0.0
        for t in range(n_slots):
            total += thread_nk[t, k]
        nk[k] = total
        for j in range(D):
            total = 0.0
            for t in range(n_slots):
                total += thread_s1[t, k, j]
            s1[k, j] = total
    return 0
