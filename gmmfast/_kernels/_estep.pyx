"""E-step kernels: per-sample, per-component Gaussian log-densities and
responsibilities.

Work is split into fixed-size chunks of samples; ``prange`` hands chunks
to threads, each thread owns a chunk buffer, and BLAS-3 (``trmm``) runs
inside a chunk. Callers must keep BLAS single-threaded around these
calls (see ``gmmfast._parallel``) so threads never oversubscribe.

Every kernel writes ``out[n, k] = log N(x_n | mu_k, Sigma_k) + log w_k``
and ``log_norm[n] = logsumexp_k out[n, k]``. With ``mode``:

* ``MODE_WEIGHTED_LOG_PROB`` (0): ``out`` keeps the weighted log-densities;
* ``MODE_LOG_RESP`` (1): ``out`` becomes log-responsibilities;
* ``MODE_RESP`` (2): ``out`` becomes responsibilities.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport exp, log, INFINITY, M_PI
from libc.stdlib cimport malloc, free

from ._fpenv cimport enter_ftz, leave_ftz
from ._blas cimport trmm_lower_left

MODE_WEIGHTED_LOG_PROB = 0
MODE_LOG_RESP = 1
MODE_RESP = 2


cdef inline void _normalize_row(double *row, double *log_norm,
                                Py_ssize_t n_components,
                                int mode) noexcept nogil:
    """Log-sum-exp of one row of weighted log-densities, then normalise."""
    cdef Py_ssize_t k
    cdef double top = -INFINITY
    cdef double total = 0.0
    cdef double norm
    for k in range(n_components):
        if row[k] > top:
            top = row[k]
    if top == -INFINITY:
        # No component can explain the sample: its density is 0.
        log_norm[0] = -INFINITY
        if mode == 2:
            for k in range(n_components):
                row[k] = 0.0
        return
    for k in range(n_components):
        total += exp(row[k] - top)
    norm = top + log(total)
    log_norm[0] = norm
    if mode == 1:
        for k in range(n_components):
            row[k] -= norm
    elif mode == 2:
        for k in range(n_components):
            row[k] = exp(row[k] - norm)


cdef void _full_chunk(const floating[:, ::1] X, const double[:, ::1] means,
                      const floating[:, :, ::1] prec_chol, bint tied,
                      const double[::1] log_det, const double[::1] log_weights,
                      double[:, ::1] out, double[::1] log_norm, int mode,
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
        trmm_lower_left(<int> n_features, <int> rows,
                        &prec_chol[0 if tied else k, 0, 0], buf)
        for i in range(rows):
            b = buf + i * n_features
            sq = 0.0
            for d in range(n_features):
                v = b[d]
                sq += v * v
            out[start + i, k] = (-0.5 * (log_2pi_d + sq) + log_det[k]
                                 + log_weights[k])
    for i in range(start, stop):
        _normalize_row(&out[i, 0], &log_norm[i], n_components, mode)


def estep_full(const floating[:, ::1] X, const double[:, ::1] means,
               const floating[:, :, ::1] prec_chol, bint tied,
               const double[::1] log_det, const double[::1] log_weights,
               double[:, ::1] out, double[::1] log_norm, int mode,
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
    mode : int
        See the module docstring.
    chunk_size : int
        Samples per chunk (per BLAS call).
    n_threads : int
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_chunks = (n_samples + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, start, stop
    cdef floating *buf

    cdef unsigned long long fp_state = 0
    with nogil, parallel(num_threads=n_threads):
        fp_state = enter_ftz()
        buf = <floating*> malloc(chunk_size * n_features * sizeof(floating))
        for c in prange(n_chunks, schedule='static'):
            start = c * chunk_size
            stop = min(start + chunk_size, n_samples)
            _full_chunk(X, means, prec_chol, tied, log_det, log_weights,
                        out, log_norm, mode, start, stop, buf)
        free(buf)
        leave_ftz(fp_state)


cdef void _diag_chunk(const floating[:, ::1] X, const double[:, ::1] means,
                      const double[:, ::1] prec_sqrt,
                      const double[::1] log_det, const double[::1] log_weights,
                      double[:, ::1] out, double[::1] log_norm, int mode,
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
        _normalize_row(&out[n, 0], &log_norm[n], n_components, mode)


def estep_diag(const floating[:, ::1] X, const double[:, ::1] means,
               const double[:, ::1] prec_sqrt,
               const double[::1] log_det, const double[::1] log_weights,
               double[:, ::1] out, double[::1] log_norm, int mode,
               Py_ssize_t chunk_size, int n_threads):
    """Weighted log-densities for diagonal (or spherical) covariances.

    ``prec_sqrt[k, d]`` is ``1 / sqrt(var_kd)``; spherical models pass
    one value repeated along ``d``. Other arguments as ``estep_full``.
    The squared distances accumulate in float64 whatever X's dtype.
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_chunks = (n_samples + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, start, stop

    cdef unsigned long long fp_state = 0
    with nogil, parallel(num_threads=n_threads):
        fp_state = enter_ftz()
        for c in prange(n_chunks, schedule='static'):
            start = c * chunk_size
            stop = min(start + chunk_size, n_samples)
            _diag_chunk(X, means, prec_sqrt, log_det, log_weights,
                        out, log_norm, mode, start, stop)
        leave_ftz(fp_state)
