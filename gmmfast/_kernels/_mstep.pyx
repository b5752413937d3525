"""M-step kernels: responsibility-weighted sufficient statistics.

Each thread accumulates into its own float64 slot of a caller-provided
per-thread array (indexed by ``omp_get_thread_num()``); slots are summed
in a fixed order after the parallel loop, so a result depends only on
the number of threads, never on scheduling. A kernel checks that the
array has a slot for each of its ``n_threads`` threads before any thread
starts, and returns ``STATUS_BAD_SHAPE`` otherwise. The full scatter,
when there are at least as many components as threads, gives each
component to one thread instead (one parallel region, sums in sample
order, independent of the number of threads).

Samples whose responsibility for a component is exactly zero contribute
nothing to that component's statistics and are skipped. The estimator
zeroes negligible responsibilities first (``resp_floor``), so on images
most (sample, component) pairs cost nothing here.

Kernels return a ``Status`` (see ``_common``); they raise nothing.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport sqrt
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from ._common cimport (
    STATUS_OK, STATUS_NO_MEMORY, STATUS_BAD_SHAPE,
    team_size, chunk_count, chunk_stop, chunk_mean, merge_symmetric_slots, syrk_accumulate,
)
from ._fpenv cimport enter_ftz, leave_ftz
from ._linalg cimport gemm, syrk, potrf, trtri, LOWER, UPPER, NO_TRANS, TRANS, NON_UNIT
from ._omp cimport omp_get_thread_num


cdef void _sums_chunk(const floating[:, ::1] X, const double[:, ::1] resp,
                      double *nk, double *sums,
                      Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = resp.shape[1]
    cdef Py_ssize_t n, k, d
    cdef double r
    cdef const floating *x
    cdef double *s
    for n in range(start, stop):
        x = &X[n, 0]
        for k in range(n_components):
            r = resp[n, k]
            if r == 0.0:
                continue
            nk[k] += r
            s = sums + k * n_features
            for d in range(n_features):
                s[d] += r * x[d]


def weighted_sums(const floating[:, ::1] X, const double[:, ::1] resp,
                  double[:, ::1] thread_nk, double[:, :, ::1] thread_sums,
                  Py_ssize_t chunk_size, int n_threads):
    """Per-thread ``sum_n r_nk`` and ``sum_n r_nk x_n``.

    ``thread_nk`` (n_threads, n_components) and ``thread_sums``
    (n_threads, n_components, n_features) must be zero on entry; the
    caller sums them over axis 0. Returns a ``Status``.
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = resp.shape[1]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t n_chunks, c, start, stop
    cdef int tid = 0
    cdef unsigned long long fp_state = 0
    if (resp.shape[0] != n_samples or chunk_size < 1
            or thread_nk.shape[0] < n_team or thread_nk.shape[1] != n_components
            or thread_sums.shape[0] < n_team or thread_sums.shape[1] != n_components
            or thread_sums.shape[2] != n_features):
        return STATUS_BAD_SHAPE
    if n_samples == 0 or n_components == 0 or n_features == 0:
        return STATUS_OK
    n_chunks = chunk_count(n_samples, chunk_size)
    with nogil, parallel(num_threads=n_team):
        fp_state = enter_ftz()
        tid = omp_get_thread_num()
        for c in prange(n_chunks, schedule='static'):
            start = c * chunk_size
            stop = chunk_stop(start, chunk_size, n_samples)
            _sums_chunk(X, resp, &thread_nk[tid, 0], &thread_sums[tid, 0, 0],
                        start, stop)
        leave_ftz(fp_state)
    return STATUS_OK


cdef void _diag_chunk(const floating[:, ::1] X, const double[:, ::1] resp,
                      const double[:, ::1] means, double *acc,
                      Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = resp.shape[1]
    cdef Py_ssize_t n, k, d
    cdef double r, v
    cdef const floating *x
    cdef const double *mu
    cdef double *a
    for n in range(start, stop):
        x = &X[n, 0]
        for k in range(n_components):
            r = resp[n, k]
            if r == 0.0:
                continue
            mu = &means[k, 0]
            a = acc + k * n_features
            for d in range(n_features):
                v = x[d] - mu[d]
                a[d] += r * v * v


def weighted_diag_scatter(const floating[:, ::1] X, const double[:, ::1] resp,
                          const double[:, ::1] means,
                          double[:, :, ::1] thread_acc,
                          Py_ssize_t chunk_size, int n_threads):
    """Per-thread ``sum_n r_nk (x_n - mu_k)**2`` (elementwise).

    ``thread_acc`` (n_threads, n_components, n_features) must be zero on
    entry; the caller sums it over axis 0. Returns a ``Status``.
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = resp.shape[1]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t n_chunks, c, start, stop
    cdef int tid = 0
    cdef unsigned long long fp_state = 0
    if (resp.shape[0] != n_samples or chunk_size < 1
            or means.shape[0] < n_components or means.shape[1] != n_features
            or thread_acc.shape[0] < n_team or thread_acc.shape[1] != n_components
            or thread_acc.shape[2] != n_features):
        return STATUS_BAD_SHAPE
    if n_samples == 0 or n_components == 0 or n_features == 0:
        return STATUS_OK
    n_chunks = chunk_count(n_samples, chunk_size)
    with nogil, parallel(num_threads=n_team):
        fp_state = enter_ftz()
        tid = omp_get_thread_num()
        for c in prange(n_chunks, schedule='static'):
            start = c * chunk_size
            stop = chunk_stop(start, chunk_size, n_samples)
            _diag_chunk(X, resp, means, &thread_acc[tid, 0, 0], start, stop)
        leave_ftz(fp_state)
    return STATUS_OK


cdef void _full_chunk(const floating[:, ::1] X, const double[:, ::1] resp,
                      const double *mu, Py_ssize_t k,
                      const Py_ssize_t *rows, Py_ssize_t n_rows,
                      floating *buf, floating *scratch,
                      double *acc) noexcept nogil:
    """Add sum_i r_i (x_i - mu)(x_i - mu)^T over ``rows`` to ``acc``.

    The rows are gathered, centred and scaled by sqrt(r) into ``buf``, so
    one ``syrk`` does the whole chunk. Only the C-order lower triangle of
    ``acc`` (column-major: the upper one) is updated.
    """
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t i, d
    cdef double w
    cdef const floating *x
    cdef floating *b
    for i in range(n_rows):
        x = &X[rows[i], 0]
        w = sqrt(resp[rows[i], k])
        b = buf + i * n_features
        for d in range(n_features):
            b[d] = <floating> ((x[d] - mu[d]) * w)
    syrk_accumulate(buf, n_rows, n_features, scratch, acc)


cdef void _component_scatter(const floating[:, ::1] X, const double[:, ::1] resp,
                             const double *mu, Py_ssize_t k, Py_ssize_t chunk_size,
                             floating *buf, floating *scratch,
                             double *out) noexcept nogil:
    """out = sum_n r_nk (x_n - mu)(x_n - mu)^T, both triangles, by one thread.

    Samples with r_nk = 0 are skipped; the others are gathered, centred and
    scaled by sqrt(r_nk) into ``buf`` in index order and flushed by ``syrk``
    every ``chunk_size`` rows, so the sum's order depends on nothing but
    the data.
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n, d, count = 0
    cdef double w
    cdef const floating *x
    cdef floating *b
    memset(out, 0, n_features * n_features * sizeof(double))
    for n in range(n_samples):
        if resp[n, k] == 0.0:
            continue
        w = sqrt(resp[n, k])
        x = &X[n, 0]
        b = buf + count * n_features
        for d in range(n_features):
            b[d] = <floating> ((x[d] - mu[d]) * w)
        count += 1
        if count == chunk_size:
            syrk_accumulate(buf, count, n_features, scratch, out)
            count = 0
    if count > 0:
        syrk_accumulate(buf, count, n_features, scratch, out)
    # syrk filled the column-major upper (C-order lower) triangle; mirror it.
    merge_symmetric_slots(out, 1, n_features, UPPER, out)


def weighted_full_scatter(const floating[:, ::1] X, const double[:, ::1] resp,
                          const double[:, ::1] means, double[:, :, ::1] out,
                          double[:, :, ::1] thread_acc,
                          Py_ssize_t chunk_size, int n_threads):
    """``out[k] = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T`` for every k.

    With at least as many components as threads, each component is one
    thread's work (one parallel region for the whole call, components
    handed out dynamically, and each sum independent of the thread
    count); with fewer, the samples of each component are split into
    chunks over the threads, whose per-thread sums (``thread_acc``,
    (n_threads, n_features, n_features) float64 work space, its content on
    entry ignored) are merged in a fixed order. ``out`` is written in full
    (both triangles). Returns a ``Status``.
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = resp.shape[1]
    cdef Py_ssize_t n_slots = thread_acc.shape[0]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t k, n, c, n_active, n_chunks, first, count, per_thread
    cdef Py_ssize_t *active = NULL
    cdef floating *buffers = NULL
    cdef floating *buf = NULL
    cdef floating *scratch = NULL
    cdef int tid = 0
    cdef unsigned long long fp_state = 0

    if (resp.shape[0] != n_samples or chunk_size < 1
            or means.shape[0] < n_components or means.shape[1] != n_features
            or out.shape[0] < n_components or out.shape[1] != n_features
            or out.shape[2] != n_features
            or n_slots < n_team or thread_acc.shape[1] != n_features
            or thread_acc.shape[2] != n_features):
        return STATUS_BAD_SHAPE
    if n_features == 0 or n_components == 0:
        return STATUS_OK
    # Every thread's chunk buffer (and, for float32, its chunk scatter),
    # checked before any thread runs.
    per_thread = chunk_size * n_features
    if floating is float:
        per_thread += n_features * n_features
    buffers = <floating*> malloc(n_team * per_thread * sizeof(floating))
    if buffers == NULL:
        return STATUS_NO_MEMORY
    if n_components >= n_team:
        with nogil, parallel(num_threads=n_team):
            fp_state = enter_ftz()
            tid = omp_get_thread_num()
            buf = buffers + tid * per_thread
            scratch = buf + chunk_size * n_features
            for k in prange(n_components, schedule='dynamic'):
                _component_scatter(X, resp, &means[k, 0], k, chunk_size, buf, scratch,
                                   &out[k, 0, 0])
            leave_ftz(fp_state)
        free(buffers)
        return STATUS_OK
    active = <Py_ssize_t*> malloc(max(n_samples, 1) * sizeof(Py_ssize_t))
    if active == NULL:
        free(buffers)
        return STATUS_NO_MEMORY
    with nogil:
        for k in range(n_components):
            # Samples that contribute to component k, in index order.
            n_active = 0
            for n in range(n_samples):
                if resp[n, k] != 0.0:
                    active[n_active] = n
                    n_active += 1
            memset(&thread_acc[0, 0, 0], 0,
                   n_slots * n_features * n_features * sizeof(double))
            n_chunks = chunk_count(n_active, chunk_size)
            with parallel(num_threads=n_team):
                fp_state = enter_ftz()
                tid = omp_get_thread_num()
                buf = buffers + tid * per_thread
                scratch = buf + chunk_size * n_features
                for c in prange(n_chunks, schedule='static'):
                    first = c * chunk_size
                    count = chunk_stop(first, chunk_size, n_active) - first
                    _full_chunk(X, resp, &means[k, 0], k, active + first,
                                count, buf, scratch, &thread_acc[tid, 0, 0])
                leave_ftz(fp_state)
            # syrk filled the column-major upper (C-order lower) triangles.
            merge_symmetric_slots(&thread_acc[0, 0, 0], n_slots, n_features,
                                  UPPER, &out[k, 0, 0])
        free(active)
        free(buffers)
    return STATUS_OK


cdef int _precision_factor(double *a, Py_ssize_t n_features) noexcept nogil:
    """In place: covariance (C order) -> U = L^-T, upper-triangular in C order.

    Column-major, the buffer holds the same symmetric matrix; ``potrf``
    leaves L in its lower triangle and ``trtri`` turns that into L^-1,
    which read back in C order is L^-T. Returns LAPACK's info (0: success;
    > 0: not positive definite).
    """
    cdef int n = <int> n_features
    cdef int info
    cdef Py_ssize_t i, j
    info = potrf(LOWER, n, a, n)
    if info != 0:
        return info
    info = trtri(LOWER, NON_UNIT, n, a, n)
    if info != 0:
        return info
    # Clear what is left of the covariance below the diagonal (C order).
    for i in range(n_features):
        for j in range(i):
            a[i * n_features + j] = 0.0
    return 0


def precision_cholesky(double[:, :, ::1] factors, int[::1] info, int n_threads):
    """Replace each covariance ``factors[k]`` by its precision factor U_k.

    U_k is upper-triangular with U_k U_k^T = inv(Sigma_k), obtained from the
    Cholesky factor of Sigma_k by a triangular inversion (no general
    inverse). Components are factorised in parallel, one per thread, with
    single-threaded LAPACK. ``info[k]`` receives LAPACK's status; a
    non-zero value means Sigma_k is not positive definite and
    ``factors[k]`` is then undefined.

    Returns 0, ``STATUS_BAD_SHAPE``, or k + 1 for the first component k
    that could not be factorised.
    """
    cdef Py_ssize_t n_components = factors.shape[0]
    cdef Py_ssize_t n_features = factors.shape[1]
    cdef Py_ssize_t k
    cdef unsigned long long fp_state = 0
    if factors.shape[2] != n_features or info.shape[0] < n_components:
        return STATUS_BAD_SHAPE
    if n_components == 0 or n_features == 0:
        return STATUS_OK
    with nogil, parallel(num_threads=team_size(n_threads)):
        fp_state = enter_ftz()
        for k in prange(n_components, schedule='dynamic'):
            info[k] = _precision_factor(&factors[k, 0, 0], n_features)
        leave_ftz(fp_state)
    for k in range(n_components):
        if info[k] != 0:
            return <int> k + 1
    return STATUS_OK


# --------------------------------------------------------------------------
# Diagonal statistics as BLAS-3, centred per chunk
# --------------------------------------------------------------------------
#
# A chunk's rows, centred on the chunk's mean c (y = x - c, in float64
# whatever X's dtype), are stacked as [1, y, y^2] (rows x (2D + 1)); one
# GEMM with the chunk's responsibilities gives every component's
# (sum r, sum r y, sum r y^2). The chunk's centred statistics follow:
#
#   n = sum r,   mean = c + (sum r y) / n,   S = sum r y^2 - (sum r y)^2 / n,
#
# whose cancellation is relative to the chunk's spread about c, not to the
# data's distance from the origin. They join the thread's running
# statistics by the update of Chan, Golub and LeVeque, chunk by chunk in
# index order, so nothing is ever formed as E[x^2] - mu^2 of the whole data.


cdef void _diag_stats_chunk(const floating[:, ::1] X, const double[:, ::1] resp,
                            Py_ssize_t start, Py_ssize_t stop,
                            double *rows_buf, double *sums, double *center,
                            double *counts, double *means, double *scatter) noexcept nogil:
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = resp.shape[1]
    cdef Py_ssize_t width = 2 * n_features + 1
    cdef Py_ssize_t rows = stop - start
    cdef Py_ssize_t i, d, k
    cdef const floating *x
    cdef double *z
    cdef const double *s
    cdef double *m
    cdef double *acc
    cdef double y, n_b, n_a, n, first, within, delta, share, cross
    chunk_mean(X, start, stop, center)
    for i in range(rows):
        x = &X[start + i, 0]
        z = rows_buf + i * width
        z[0] = 1.0
        for d in range(n_features):
            y = x[d] - center[d]
            z[1 + d] = y
            z[1 + n_features + d] = y * y
    # sums (K, 2D + 1), C order = column-major (2D + 1) x K: Z^T R, with
    # Z column-major (2D + 1) x rows and the chunk of resp column-major K x rows.
    gemm(NO_TRANS, TRANS, <int> width, <int> n_components, <int> rows,
         1.0, rows_buf, <int> width, &resp[start, 0], <int> n_components,
         0.0, sums, <int> width)
    for k in range(n_components):
        s = sums + k * width
        n_b = s[0]
        if not n_b > 0.0:
            continue
        n_a = counts[k]
        n = n_a + n_b
        share = n_b / n
        cross = n_a * share
        m = means + k * n_features
        acc = scatter + k * n_features
        for d in range(n_features):
            first = s[1 + d] / n_b
            within = s[1 + n_features + d] - first * s[1 + d]
            if within < 0.0:  # rounding; a sum of squares is never negative
                within = 0.0
            if n_a > 0.0:
                delta = (center[d] + first) - m[d]
                m[d] += delta * share
                acc[d] += within + cross * delta * delta
            else:
                m[d] = center[d] + first
                acc[d] = within
        counts[k] = n


def weighted_diag_stats(const floating[:, ::1] X, const double[:, ::1] resp,
                        double[:, ::1] thread_counts, double[:, :, ::1] thread_means,
                        double[:, :, ::1] thread_scatter,
                        Py_ssize_t chunk_size, int n_threads):
    """Per-thread centred diagonal statistics: for each thread slot t,
    ``thread_counts[t, k] = sum r_nk``, ``thread_means[t, k]`` the
    weighted mean and ``thread_scatter[t, k] = sum r_nk (x_n - mean)**2``
    (elementwise) over the chunks that thread summed (see the comment
    above; one GEMM per chunk, float64 whatever X's dtype).

    The three arrays must be zero on entry; the caller merges the slots,
    in slot order, by the same update. Threads take contiguous runs of
    chunks (static schedule), so the result depends on ``chunk_size`` and
    ``n_threads``, never on scheduling. Callers must keep BLAS
    single-threaded. Returns a ``Status``.
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = resp.shape[1]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t width = 2 * n_features + 1
    cdef Py_ssize_t rows_max
    cdef Py_ssize_t n_chunks, c, start, stop
    cdef double *buf = NULL
    cdef int tid = 0
    cdef unsigned long long fp_state = 0
    if (resp.shape[0] != n_samples or chunk_size < 1
            or thread_counts.shape[0] < n_team or thread_counts.shape[1] != n_components
            or thread_means.shape[0] < n_team or thread_means.shape[1] != n_components
            or thread_means.shape[2] != n_features
            or thread_scatter.shape[0] < n_team or thread_scatter.shape[1] != n_components
            or thread_scatter.shape[2] != n_features):
        return STATUS_BAD_SHAPE
    if n_samples == 0 or n_components == 0 or n_features == 0:
        return STATUS_OK
    rows_max = min(chunk_size, n_samples)
    cdef int[::1] thread_status = np.zeros(n_team, dtype=np.intc)
    n_chunks = chunk_count(n_samples, chunk_size)
    with nogil, parallel(num_threads=n_team):
        fp_state = enter_ftz()
        tid = omp_get_thread_num()
        # The chunk's stacked rows, the GEMM's sums and the centre.
        buf = <double*> malloc((rows_max * width + n_components * width + n_features)
                               * sizeof(double))
        if buf == NULL:
            thread_status[tid] = STATUS_NO_MEMORY
        for c in prange(n_chunks, schedule='static'):
            if buf != NULL:
                start = c * chunk_size
                stop = chunk_stop(start, chunk_size, n_samples)
                _diag_stats_chunk(X, resp, start, stop, buf, buf + rows_max * width,
                                  buf + rows_max * width + n_components * width,
                                  &thread_counts[tid, 0], &thread_means[tid, 0, 0],
                                  &thread_scatter[tid, 0, 0])
        free(buf)
        leave_ftz(fp_state)
    for tid in range(n_team):
        if thread_status[tid] != STATUS_OK:
            return thread_status[tid]
    return STATUS_OK

