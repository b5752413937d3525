"""E-step kernels: per-sample, per-component Gaussian log-densities and
responsibilities.

Work is split into fixed-size chunks of samples; ``prange`` hands chunks
to threads, each thread owns a chunk buffer, and BLAS-3 (``trmm``) runs
inside a chunk. Callers must keep BLAS single-threaded around these
calls (see ``gmmfast._parallel``) so threads never oversubscribe.

Every kernel writes ``out[n, k] = log N(x_n | mu_k, Sigma_k) + log w_k``
and ``log_norm[n] = logsumexp_k out[n, k]``. With ``mode`` (an
``OutputMode``, see ``_common``):

* ``WEIGHTED_LOG_PROB`` (0): ``out`` keeps the weighted log-densities;
* ``LOG_RESP`` (1): ``out`` becomes log-responsibilities;
* ``RESP`` (2): ``out`` becomes responsibilities.

Kernels return a ``Status`` (0, or ``STATUS_NO_MEMORY`` /
``STATUS_BAD_SHAPE``); they raise nothing.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport exp, log, M_PI, INFINITY
from libc.stdlib cimport malloc, free

from ._common cimport (
    OutputMode, LOG_RESP, RESP, STATUS_OK, STATUS_NO_MEMORY, STATUS_BAD_SHAPE,
    STATUS_BAD_ARGUMENT, mode_valid, team_size, chunk_count, chunk_stop, chunk_mean,
    normalize_row,
)

from ._fpenv cimport enter_ftz, leave_ftz
from ._linalg cimport gemm, trmm, LEFT, LOWER, NO_TRANS, TRANS, NON_UNIT
from ._omp cimport omp_get_thread_num

# The modes under their historical names (Python callers use these).
MODE_WEIGHTED_LOG_PROB = OutputMode.WEIGHTED_LOG_PROB
MODE_LOG_RESP = OutputMode.LOG_RESP
MODE_RESP = OutputMode.RESP


cdef int _check_shapes(Py_ssize_t n_samples, Py_ssize_t n_features,
                       Py_ssize_t n_components, Py_ssize_t means_features,
                       Py_ssize_t n_log_det, Py_ssize_t n_log_weights,
                       Py_ssize_t out_rows, Py_ssize_t out_cols,
                       Py_ssize_t n_log_norm, Py_ssize_t chunk_size) noexcept nogil:
    if (means_features != n_features or n_log_det < n_components
            or n_log_weights < n_components or out_rows != n_samples
            or out_cols != n_components or n_log_norm != n_samples or chunk_size < 1):
        return STATUS_BAD_SHAPE
    return STATUS_OK


cdef void _full_chunk(const floating[:, ::1] X, const double[:, ::1] means,
                      const floating[:, :, ::1] prec_chol, bint tied,
                      const double[::1] log_det, const double[::1] log_weights,
                      double[:, ::1] out, double[::1] log_norm, OutputMode mode,
                      Py_ssize_t start, Py_ssize_t stop,
                      floating *buf) noexcept nogil:
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t rows = stop - start
    cdef Py_ssize_t i, d, k
    cdef const floating *x
    cdef const double *mu
    cdef floating *b
    cdef double sq, v
    cdef double log_2pi_d = n_features * log(2.0 * M_PI)

    for k in range(n_components):
        mu = &means[k, 0]
        # Centre while copying, so the triangular product sees x - mu
        # directly (no cancellation between x U and mu U).
        for i in range(rows):
            x = &X[start + i, 0]
            b = buf + i * n_features
            for d in range(n_features):
                b[d] = <floating> (x[d] - mu[d])
        # Each sample is a column b of the block; the C-ordered upper U is,
        # column-major, the lower U^T: b <- U^T b, i.e. row x <- x U.
        trmm(LEFT, LOWER, NO_TRANS, NON_UNIT, <int> n_features, <int> rows,
             <floating> 1.0, &prec_chol[0 if tied else k, 0, 0], <int> n_features,
             buf, <int> n_features)
        for i in range(rows):
            b = buf + i * n_features
            sq = 0.0
            for d in range(n_features):
                v = b[d]
                sq += v * v
            out[start + i, k] = (-0.5 * (log_2pi_d + sq) + log_det[k]
                                 + log_weights[k])
    for i in range(start, stop):
        log_norm[i] = normalize_row(&out[i, 0], &out[i, 0], n_components, mode)


def estep_full(const floating[:, ::1] X, const double[:, ::1] means,
               const floating[:, :, ::1] prec_chol, bint tied,
               const double[::1] log_det, const double[::1] log_weights,
               double[:, ::1] out, double[::1] log_norm, OutputMode mode,
               Py_ssize_t chunk_size, int n_threads):
    """Weighted log-densities for full (or tied) covariances.

    Parameters
    ----------
    X : (n_samples, n_features) float32 or float64, C-contiguous
    means : (n_components, n_features) float64
    prec_chol : (n_factors, n_features, n_features), dtype of X
        Upper-triangular Cholesky factors U_k of the precisions
        (precision = U U^T). ``n_factors`` is 1 when ``tied``.
    tied : bool
        Use ``prec_chol[0]`` for every component.
    log_det : (n_components,) float64
        ``sum(log(diag(U_k)))``.
    log_weights : (n_components,) float64
    out : (n_samples, n_components) float64, written
    log_norm : (n_samples,) float64, written
    mode : OutputMode
        See the module docstring.
    chunk_size : int
        Samples per chunk (per BLAS call).
    n_threads : int

    Returns
    -------
    status : int
        0, ``STATUS_NO_MEMORY``, ``STATUS_BAD_SHAPE`` or
        ``STATUS_BAD_ARGUMENT`` (an unknown mode).
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t n_chunks, c, start, stop
    cdef int status = _check_shapes(n_samples, n_features, n_components, means.shape[1],
                                    log_det.shape[0], log_weights.shape[0],
                                    out.shape[0], out.shape[1], log_norm.shape[0], chunk_size)
    if status == STATUS_OK and (prec_chol.shape[0] < (1 if tied else n_components)
                                or prec_chol.shape[1] != n_features
                                or prec_chol.shape[2] != n_features):
        status = STATUS_BAD_SHAPE
    if status == STATUS_OK and not mode_valid(mode):
        status = STATUS_BAD_ARGUMENT
    if status != STATUS_OK or n_samples == 0:
        return status
    # Per-thread chunk buffers, and each thread's allocation status.
    cdef int[::1] thread_status = np.zeros(n_team, dtype=np.intc)
    cdef floating *buf = NULL
    cdef int tid = 0
    cdef unsigned long long fp_state = 0
    n_chunks = chunk_count(n_samples, chunk_size)
    with nogil, parallel(num_threads=n_team):
        fp_state = enter_ftz()
        tid = omp_get_thread_num()
        buf = <floating*> malloc(chunk_size * n_features * sizeof(floating))
        if buf == NULL:
            thread_status[tid] = STATUS_NO_MEMORY
        for c in prange(n_chunks, schedule='dynamic'):
            if buf != NULL:
                start = c * chunk_size
                stop = chunk_stop(start, chunk_size, n_samples)
                _full_chunk(X, means, prec_chol, tied, log_det, log_weights,
                            out, log_norm, mode, start, stop, buf)
        free(buf)
        leave_ftz(fp_state)
    for tid in range(n_team):
        if thread_status[tid] != STATUS_OK:
            return thread_status[tid]
    return STATUS_OK


cdef void _diag_chunk(const floating[:, ::1] X, const double[:, ::1] means,
                      const double[:, ::1] prec_sqrt,
                      const double[::1] log_det, const double[::1] log_weights,
                      double[:, ::1] out, double[::1] log_norm, OutputMode mode,
                      Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t n
    # One sample at a time, term by term in float64 (``_diag_row``, shared with
    # the GEMM kernel's exact fallback).
    for n in range(start, stop):
        _diag_row(&X[n, 0], n_features, means, prec_sqrt, log_det, log_weights, &out[n, 0])
        log_norm[n] = normalize_row(&out[n, 0], &out[n, 0], n_components, mode)


def estep_diag(const floating[:, ::1] X, const double[:, ::1] means,
               const double[:, ::1] prec_sqrt,
               const double[::1] log_det, const double[::1] log_weights,
               double[:, ::1] out, double[::1] log_norm, OutputMode mode,
               Py_ssize_t chunk_size, int n_threads):
    """Weighted log-densities for diagonal (or spherical) covariances.

    ``prec_sqrt[k, d]`` is ``1 / sqrt(var_kd)``; spherical models pass
    one value repeated along ``d``. Other arguments and the returned
    status as ``estep_full``. The squared distances accumulate in float64
    whatever X's dtype.
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t n_chunks, c, start, stop
    cdef int status = _check_shapes(n_samples, X.shape[1], n_components, means.shape[1],
                                    log_det.shape[0], log_weights.shape[0],
                                    out.shape[0], out.shape[1], log_norm.shape[0], chunk_size)
    if status == STATUS_OK and (prec_sqrt.shape[0] < n_components
                                or prec_sqrt.shape[1] != X.shape[1]):
        status = STATUS_BAD_SHAPE
    if status == STATUS_OK and not mode_valid(mode):
        status = STATUS_BAD_ARGUMENT
    if status != STATUS_OK or n_samples == 0:
        return status
    cdef unsigned long long fp_state = 0
    n_chunks = chunk_count(n_samples, chunk_size)
    with nogil, parallel(num_threads=team_size(n_threads)):
        fp_state = enter_ftz()
        for c in prange(n_chunks, schedule='dynamic'):
            start = c * chunk_size
            stop = chunk_stop(start, chunk_size, n_samples)
            _diag_chunk(X, means, prec_sqrt, log_det, log_weights,
                        out, log_norm, mode, start, stop)
        leave_ftz(fp_state)
    return STATUS_OK


# --------------------------------------------------------------------------
# Diagonal covariances as BLAS-3: two products of the chunk against stacked
# per-component matrices, fused with the normalisation
# --------------------------------------------------------------------------
#
# With y = x - c for a reference point c (the chunk's mean of x), and
# P_kd = 1 / var_kd,
#
#   sum_d P_kd (x_d - mu_kd)^2 = sum_d P_kd y_d^2 - 2 sum_d P_kd (mu_kd - c_d) y_d
#                                + sum_d P_kd (mu_kd - c_d)^2,
#
# so the chunk's weighted log-densities are [y^2, y] (rows x 2D) times the
# stacked [-P/2; P (mu - c)] (2D x K), one GEMM, plus a per-component
# constant. Centring on the chunk's mean keeps the cancellation between the
# three terms relative to the spread of the chunk, not to the distance of
# the data from the origin (sklearn expands around 0). A row whose terms
# could overflow the GEMM's dtype (far outliers, float32) is computed by
# the scalar loop of ``_diag_chunk`` instead, exactly.

# Rows with sum_d max_k(P_kd) y_d^2 above this are computed exactly: every
# GEMM term and partial sum then stays finite in the compute dtype.
cdef double _SAFE_F32 = 1e30
cdef double _SAFE_F64 = 1e290


# exp of a row's entries relative to its maximum, vectorised: at K = 256
# the E-step computes 25.6 M exps, which libm does one by one. x <= 0 is
# reduced as x = k ln2 + r (Cody-Waite, |r| <= ln2 / 2), exp(r) is its
# Taylor series to degree 13 (truncation 4e-18 relative, below an ulp), and
# 2^k is built in the exponent bits: branch-free, so the compiler evaluates
# two at once (SSE2), or four in the copy GCC builds for AVX2 CPUs (the same
# operations in the same order: C11 mode contracts nothing into FMAs). Below log(DBL_MIN) the result would be
# subnormal, which the kernels' flush-to-zero mode makes 0: it is 0 here.
# GCC vectorises the selects only without -ftrapping-math (they would
# otherwise be branches); that changes no value, only which floating-point
# exception flags a NaN or a comparison may raise, and no kernel reads them.
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC push_options
    #pragma GCC optimize ("no-trapping-math")
    #endif
    #if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 \
        && defined(__x86_64__) && defined(__linux__)
    /* A second copy for AVX2 CPUs (four at once), chosen at load time. */
    __attribute__((target_clones("arch=x86-64-v3", "default")))
    #endif
    static void gmmfast_exp_shifted(double *dst, const double *src, Py_ssize_t n,
                                    double top) {
        const double log_dbl_min = -708.3964185322641;
        const double shift = 6755399441055744.0;  /* 1.5 * 2^52: rounds to an integer */
        Py_ssize_t i;
        for (i = 0; i < n; i++) {
            double x = src[i] - top;
            double y = x < log_dbl_min ? log_dbl_min : x;
            double kd = y * 1.4426950408889634 + shift;
            double r, p, scale, e;
            uint64_t bits;
            memcpy(&bits, &kd, sizeof bits);  /* low bits: k = round(y / ln2) */
            kd -= shift;
            r = (y - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
            p = 1.6059043836821614e-10;                 /* 1/13! */
            p = p * r + 2.0876756987868099e-09;         /* 1/12! */
            p = p * r + 2.5052108385441720e-08;
            p = p * r + 2.7557319223985888e-07;
            p = p * r + 2.7557319223985893e-06;
            p = p * r + 2.4801587301587302e-05;
            p = p * r + 1.9841269841269841e-04;
            p = p * r + 1.3888888888888889e-03;
            p = p * r + 8.3333333333333332e-03;
            p = p * r + 4.1666666666666664e-02;
            p = p * r + 1.6666666666666666e-01;
            p = p * r + 0.5;
            p = p * r + 1.0;
            p = p * r + 1.0;
            bits = (bits + 1023) << 52;  /* 2^k, k in [-1022, 0] */
            memcpy(&scale, &bits, sizeof scale);
            e = p * scale;
            dst[i] = x < log_dbl_min ? 0.0 : e;
        }
    }
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC pop_options
    #endif
    """
    void exp_shifted "gmmfast_exp_shifted"(double *dst, const double *src, Py_ssize_t n,
                                            double top) noexcept nogil


cdef struct _DiagGemmWork:
    void *stacked      # (K, 2D) floating: row k = [-P_k / 2, P_k (mu_k - c)]
    void *rows         # (chunk, 2D) floating: row i = [y_i^2, y_i]
    void *products     # (chunk, K) floating (float32 only; float64 uses ``out``)
    double *constant   # (K,) the per-component constant
    double *scratch    # (K,) a row's exps (modes other than RESP)
    double *center     # (D,) c
    unsigned char *exact  # (chunk,) rows computed by the scalar loop


cdef bint _diag_gemm_chunk(const floating[:, ::1] X, const double[:, ::1] means,
                           const double[:, ::1] prec_sqrt, const double[::1] precision_max,
                           const double[::1] log_det, const double[::1] log_weights,
                           double[:, ::1] out, double[::1] log_norm, OutputMode mode,
                           Py_ssize_t start, Py_ssize_t stop,
                           _DiagGemmWork *work) noexcept nogil:
    """One chunk; False if it must go to ``_diag_chunk`` (a component's
    stacked row is not safely representable for this chunk's centre)."""
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t two_d = 2 * n_features
    cdef Py_ssize_t rows = stop - start
    cdef Py_ssize_t i, d, k
    cdef floating *stacked = <floating*> work.stacked
    cdef floating *zrows = <floating*> work.rows
    cdef floating *products
    cdef floating *w
    cdef floating *z
    cdef double *row
    cdef double *center = work.center
    cdef double *constant = work.constant
    cdef const floating *x
    cdef const double *mu
    cdef const double *p
    cdef double y, v, prec, bound, sq, top, total, scale, norm
    cdef double log_2pi_d = n_features * log(2.0 * M_PI)
    cdef double safe = _SAFE_F64 if floating is double else _SAFE_F32

    chunk_mean(X, start, stop, center)
    # The centre-dependent half of the stacked matrix, and the constants.
    for k in range(n_components):
        mu = &means[k, 0]
        p = &prec_sqrt[k, 0]
        w = stacked + k * two_d + n_features
        sq = 0.0
        for d in range(n_features):
            prec = p[d] * p[d]
            v = mu[d] - center[d]
            w[d] = <floating> (prec * v)
            sq += prec * v * v
        if not sq <= safe:
            return False
        constant[k] = -0.5 * (log_2pi_d + sq) + log_det[k] + log_weights[k]
    for i in range(rows):
        x = &X[start + i, 0]
        z = zrows + i * two_d
        bound = 0.0
        for d in range(n_features):
            y = x[d] - center[d]
            z[d] = <floating> (y * y)
            z[n_features + d] = <floating> y
            bound += precision_max[d] * y * y
        work.exact[i] = not bound <= safe
    # products (rows, K) = zrows (rows, 2D) @ stacked^T (2D, K). Column-major,
    # the C-ordered products are a K x rows matrix C = A^T B, with A the
    # stacked rows read as 2D x K and B the chunk's rows read as 2D x rows.
    if floating is double:
        products = <floating*> &out[start, 0]
    else:
        products = <floating*> work.products
    gemm(TRANS, NO_TRANS, <int> n_components, <int> rows, <int> two_d,
         <floating> 1.0, stacked, <int> two_d, zrows, <int> two_d,
         <floating> 0.0, products, <int> n_components)
    for i in range(rows):
        row = &out[start + i, 0]
        if work.exact[i]:
            _diag_row(&X[start + i, 0], n_features, means, prec_sqrt, log_det,
                      log_weights, row)
            log_norm[start + i] = normalize_row(row, row, n_components, mode)
            continue
        z = products + i * n_components
        for k in range(n_components):
            row[k] = <double> z[k] + constant[k]
        top = -INFINITY
        for k in range(n_components):
            if row[k] > top:
                top = row[k]
        if top == -INFINITY:
            # No component explains the row (as ``normalize_row``).
            if mode == RESP:
                for k in range(n_components):
                    row[k] = 0.0
            log_norm[start + i] = -INFINITY
            continue
        if mode == RESP:
            # exp once per entry: e_k / sum e is the responsibility.
            exp_shifted(row, row, n_components, top)
            total = _sum(row, n_components)
            scale = 1.0 / total
            for k in range(n_components):
                row[k] *= scale
            log_norm[start + i] = top + log(total)
        else:
            exp_shifted(work.scratch, row, n_components, top)
            total = _sum(work.scratch, n_components)
            norm = top + log(total)
            log_norm[start + i] = norm
            if mode == LOG_RESP:
                for k in range(n_components):
                    row[k] -= norm
    return True


cdef inline double _sum(const double *a, Py_ssize_t n) noexcept nogil:
    """sum(a) over four interleaved partial sums (a sequential sum waits
    for each addition: four times slower at K = 256)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t k = 0
    while k + 4 <= n:
        s0 += a[k]
        s1 += a[k + 1]
        s2 += a[k + 2]
        s3 += a[k + 3]
        k += 4
    while k < n:
        s0 += a[k]
        k += 1
    return (s0 + s1) + (s2 + s3)


cdef inline void _diag_row(const floating *x, Py_ssize_t n_features,
                           const double[:, ::1] means, const double[:, ::1] prec_sqrt,
                           const double[::1] log_det, const double[::1] log_weights,
                           double *row) noexcept nogil:
    """Weighted log-densities of one sample, term by term in float64 (as
    ``_diag_chunk``)."""
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t d, k
    cdef const double *mu
    cdef const double *p
    cdef double sq, v
    cdef double log_2pi_d = n_features * log(2.0 * M_PI)
    for k in range(n_components):
        mu = &means[k, 0]
        p = &prec_sqrt[k, 0]
        sq = 0.0
        for d in range(n_features):
            v = (x[d] - mu[d]) * p[d]
            sq += v * v
        row[k] = -0.5 * (log_2pi_d + sq) + log_det[k] + log_weights[k]


def estep_diag_gemm(const floating[:, ::1] X, const double[:, ::1] means,
                    const double[:, ::1] prec_sqrt,
                    const double[::1] log_det, const double[::1] log_weights,
                    double[:, ::1] out, double[::1] log_norm, OutputMode mode,
                    Py_ssize_t chunk_size, int n_threads):
    """``estep_diag`` as one GEMM per chunk (see the comment above).

    Same arguments, outputs and status as ``estep_diag``. The products run
    in X's dtype (float32 samples: float32 GEMM on float64-centred
    values), so a weighted log-density carries a rounding error of about
    ``D * eps * sum_d P_kd (x_d - c_d)^2`` (eps of X's dtype, c the chunk's
    mean) rather than ``estep_diag``'s float64 one; the normalisation is
    in float64. Callers must keep BLAS single-threaded. A chunk's result
    depends on the rows it holds (through c), so on ``chunk_size``, never
    on ``n_threads`` or scheduling.
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t n_chunks, c, start, stop, k, d
    cdef int status = _check_shapes(n_samples, n_features, n_components, means.shape[1],
                                    log_det.shape[0], log_weights.shape[0],
                                    out.shape[0], out.shape[1], log_norm.shape[0], chunk_size)
    if status == STATUS_OK and (prec_sqrt.shape[0] < n_components
                                or prec_sqrt.shape[1] != n_features):
        status = STATUS_BAD_SHAPE
    if status == STATUS_OK and not mode_valid(mode):
        status = STATUS_BAD_ARGUMENT
    if status != STATUS_OK or n_samples == 0:
        return status
    if n_features == 0 or n_components == 0:
        # Nothing for a GEMM to do (and BLAS refuses leading dimension 0).
        return estep_diag(X, means, prec_sqrt, log_det, log_weights, out, log_norm,
                          mode, chunk_size, n_threads)
    cdef double[::1] precision_max = np.max(np.square(prec_sqrt[:n_components]), axis=0)
    cdef int[::1] thread_status = np.zeros(n_team, dtype=np.intc)
    cdef Py_ssize_t two_d = 2 * n_features
    cdef Py_ssize_t rows_max = min(chunk_size, n_samples)
    cdef size_t item = sizeof(floating)
    cdef size_t n_stacked = n_components * two_d
    cdef size_t n_rows = rows_max * two_d
    cdef size_t n_products = rows_max * n_components if floating is float else 0
    cdef size_t head = (sizeof(_DiagGemmWork) + 63) & ~(<size_t> 63)
    cdef char *block = NULL
    cdef _DiagGemmWork *work = NULL
    cdef floating *w
    cdef int tid = 0
    cdef unsigned long long fp_state = 0
    n_chunks = chunk_count(n_samples, chunk_size)
    with nogil, parallel(num_threads=n_team):
        fp_state = enter_ftz()
        tid = omp_get_thread_num()
        # One block per thread: the work-space struct, then its buffers, each
        # a multiple of 8 bytes long, so every buffer is aligned for its type.
        block = <char*> malloc(head + (2 * n_components + n_features) * sizeof(double)
                               + (n_stacked + n_rows + n_products) * item + rows_max)
        if block == NULL:
            thread_status[tid] = STATUS_NO_MEMORY
        else:
            work = <_DiagGemmWork*> block
            work.constant = <double*> (block + head)
            work.scratch = work.constant + n_components
            work.center = work.scratch + n_components
            work.stacked = <void*> (work.center + n_features)
            work.rows = <void*> ((<floating*> work.stacked) + n_stacked)
            work.products = <void*> ((<floating*> work.rows) + n_rows)
            work.exact = <unsigned char*> ((<floating*> work.products) + n_products)
            # The centre-free half of the stacked matrix, once per thread.
            w = <floating*> work.stacked
            for k in range(n_components):
                for d in range(n_features):
                    w[k * two_d + d] = <floating> (-0.5 * prec_sqrt[k, d] * prec_sqrt[k, d])
        for c in prange(n_chunks, schedule='dynamic'):
            if block != NULL:
                start = c * chunk_size
                stop = chunk_stop(start, chunk_size, n_samples)
                if not _diag_gemm_chunk(X, means, prec_sqrt, precision_max, log_det,
                                        log_weights, out, log_norm, mode, start, stop,
                                        work):
                    _diag_chunk(X, means, prec_sqrt, log_det, log_weights,
                                out, log_norm, mode, start, stop)
        free(block)
        leave_ftz(fp_state)
    for tid in range(n_team):
        if thread_status[tid] != STATUS_OK:
            return thread_status[tid]
    return STATUS_OK


# --------------------------------------------------------------------------
# Full and tied covariances at low K x D: one GEMM per chunk
# --------------------------------------------------------------------------
# With the factors side by side, S = [U_1 ... U_K] (D x K D), a chunk's
# whitened rows for every component are one GEMM, (X - c) S, minus the
# per-component offsets (mu_k - c) U_k (float64, once per chunk), c the
# chunk's mean: K trmm calls on D x D blocks become one product whose inner
# kernel runs at GEMM speed, and the centring copy per component goes. Tied
# covariances need S = U alone: D^2 + K D per sample instead of K D^2.
# The products cancel relative to the chunk's spread around c, as the
# diagonal GEMM kernel's do.

# What estep_full_stacked returns when an offset is too large for X's dtype:
# the caller then runs estep_full (one trmm per component on x - mu).
cdef int _STACKED_UNSAFE = -10
STACKED_UNSAFE = _STACKED_UNSAFE

cdef bint _full_stacked_chunk(const floating[:, ::1] X, const double[:, ::1] means,
                              const floating[:, ::1] stacked,
                              const double[:, :, ::1] factors, bint tied,
                              const double[::1] log_det, const double[::1] log_weights,
                              double[:, ::1] out, double[::1] log_norm, OutputMode mode,
                              Py_ssize_t start, Py_ssize_t stop,
                              floating *ybuf, floating *pbuf, double *offsets,
                              double *center) noexcept nogil:
    """One chunk; False if an offset is not safely representable (the chunk
    then goes to ``_full_chunk``)."""
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t width = stacked.shape[1]
    cdef Py_ssize_t rows = stop - start
    cdef Py_ssize_t i, j, d, k
    cdef const double *u
    cdef const floating *x
    cdef floating *y
    cdef const floating *q
    cdef double *o
    cdef double *row
    cdef double v, sq
    cdef double log_2pi_d = n_features * log(2.0 * M_PI)
    cdef double safe = _SAFE_F64 if floating is double else _SAFE_F32

    chunk_mean(X, start, stop, center)
    for k in range(n_components):
        # o_k = (mu_k - c) U_k, a row vector times the upper factor.
        u = &factors[0 if tied else k, 0, 0]
        o = offsets + k * n_features
        for j in range(n_features):
            o[j] = 0.0
        for i in range(n_features):
            v = means[k, i] - center[i]
            for j in range(i, n_features):
                o[j] += v * u[i * n_features + j]
        sq = 0.0
        for j in range(n_features):
            sq += o[j] * o[j]
        if not sq <= safe:
            return False
    for i in range(rows):
        x = &X[start + i, 0]
        y = ybuf + i * n_features
        for d in range(n_features):
            y[d] = <floating> (x[d] - center[d])
    # Column-major, S is the width x D matrix S^T and the chunk the D x rows
    # matrix Y^T: S^T Y^T is the C-ordered (rows, width) product.
    gemm(NO_TRANS, NO_TRANS, <int> width, <int> rows, <int> n_features,
         <floating> 1.0, &stacked[0, 0], <int> width, ybuf, <int> n_features,
         <floating> 0.0, pbuf, <int> width)
    for i in range(rows):
        row = &out[start + i, 0]
        for k in range(n_components):
            q = pbuf + i * width + (0 if tied else k * n_features)
            o = offsets + k * n_features
            sq = 0.0
            for d in range(n_features):
                v = <double> q[d] - o[d]
                sq += v * v
            row[k] = -0.5 * (log_2pi_d + sq) + log_det[k] + log_weights[k]
        log_norm[start + i] = normalize_row(row, row, n_components, mode)
    return True


def estep_full_stacked(const floating[:, ::1] X, const double[:, ::1] means,
                       const floating[:, ::1] stacked, const double[:, :, ::1] factors,
                       bint tied, const double[::1] log_det, const double[::1] log_weights,
                       double[:, ::1] out, double[::1] log_norm, OutputMode mode,
                       Py_ssize_t chunk_size, int n_threads):
    """``estep_full`` as one GEMM per chunk (see the comment above).

    ``stacked`` (D, K D) holds the upper factors side by side in X's dtype
    (``stacked[:, k D:(k + 1) D] = U_k``; (D, D) when ``tied``), ``factors``
    the same factors in float64 (K, D, D) (one when ``tied``). Same outputs
    and status as ``estep_full``, and ``STACKED_UNSAFE`` when an offset
    (mu_k - c) U_k overflows X's dtype (the outputs are then incomplete). A chunk's result depends on its rows
    (through their mean), so on ``chunk_size``, never on ``n_threads``.
    Callers must keep BLAS single-threaded.
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t width = stacked.shape[1]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t n_chunks, c, start, stop
    cdef int status = _check_shapes(n_samples, n_features, n_components, means.shape[1],
                                    log_det.shape[0], log_weights.shape[0],
                                    out.shape[0], out.shape[1], log_norm.shape[0], chunk_size)
    if status == STATUS_OK and (
            factors.shape[0] < (1 if tied else n_components)
            or factors.shape[1] != n_features or factors.shape[2] != n_features
            or stacked.shape[0] != n_features
            or width != (n_features if tied else n_components * n_features)):
        status = STATUS_BAD_SHAPE
    if status == STATUS_OK and not mode_valid(mode):
        status = STATUS_BAD_ARGUMENT
    if status != STATUS_OK or n_samples == 0:
        return status
    if n_features == 0 or n_components == 0:
        return STATUS_BAD_SHAPE  # the caller sends these to estep_full
    cdef Py_ssize_t rows_max = min(chunk_size, n_samples)
    cdef int[::1] thread_status = np.zeros(n_team, dtype=np.intc)
    cdef char *block = NULL
    cdef floating *ybuf
    cdef floating *pbuf
    cdef double *offsets
    cdef double *center
    cdef int tid = 0
    cdef unsigned long long fp_state = 0
    n_chunks = chunk_count(n_samples, chunk_size)
    with nogil, parallel(num_threads=n_team):
        fp_state = enter_ftz()
        tid = omp_get_thread_num()
        block = <char*> malloc((n_components * n_features + n_features) * sizeof(double)
                               + (rows_max * n_features + rows_max * width) * sizeof(floating))
        if block == NULL:
            thread_status[tid] = STATUS_NO_MEMORY
        else:
            offsets = <double*> block
            center = offsets + n_components * n_features
            ybuf = <floating*> (center + n_features)
            pbuf = ybuf + rows_max * n_features
        for c in prange(n_chunks, schedule='dynamic'):
            if block != NULL:
                start = c * chunk_size
                stop = chunk_stop(start, chunk_size, n_samples)
                if not _full_stacked_chunk(X, means, stacked, factors, tied, log_det,
                                           log_weights, out, log_norm, mode, start, stop,
                                           ybuf, pbuf, offsets, center):
                    thread_status[tid] = _STACKED_UNSAFE
        free(block)
        leave_ftz(fp_state)
    for tid in range(n_team):
        if thread_status[tid] != STATUS_OK:
            return thread_status[tid]
    return STATUS_OK
