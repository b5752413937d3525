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
from libc.math cimport log, M_PI
from libc.stdlib cimport malloc, free

from ._common cimport (
    OutputMode, STATUS_OK, STATUS_NO_MEMORY, STATUS_BAD_SHAPE, STATUS_BAD_ARGUMENT,
    mode_valid, team_size, chunk_count, chunk_stop, normalize_row,
)

from ._fpenv cimport enter_ftz, leave_ftz
from ._linalg cimport trmm, LEFT, LOWER, NO_TRANS, NON_UNIT
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
    cdef Py_ssize_t n, d, k
    cdef const floating *x
    cdef const double *mu
    cdef const double *p
    cdef double sq, v
    cdef double log_2pi_d = n_features * log(2.0 * M_PI)

    for n in range(start, stop):
        x = &X[n, 0]
        for k in range(n_components):
            mu = &means[k, 0]
            p = &prec_sqrt[k, 0]
            sq = 0.0
            for d in range(n_features):
                v = (x[d] - mu[d]) * p[d]
                sq += v * v
            out[n, k] = -0.5 * (log_2pi_d + sq) + log_det[k] + log_weights[k]
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
