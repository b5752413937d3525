"""k-means kernels: nearest centres by one GEMM per chunk, and Lloyd's sums.

Squared distances are |x|^2 - 2 x.c + |c|^2: the cross terms of a chunk of
samples against every centre come from one GEMM into a per-thread buffer
(in the samples' dtype, as scikit-learn's Lloyd does), the norms are
float64. ``nearest_centers`` fuses the arg-min and, for a Lloyd step, the
per-cluster counts and sums of the assigned samples into per-thread float64
slots that the caller adds up in a fixed order: one pass over the data per
iteration, no (n_samples, n_clusters) array.

Kernels return a ``Status`` (see ``_common``); they raise nothing.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free

from ._common cimport STATUS_OK, STATUS_NO_MEMORY, STATUS_BAD_SHAPE, team_size, chunk_count, chunk_stop
from ._fpenv cimport enter_ftz, leave_ftz
from ._linalg cimport gemm, TRANS, NO_TRANS
from ._omp cimport omp_get_thread_num


cdef void _cross_terms(const floating[:, ::1] X, const floating[:, ::1] centers,
                       Py_ssize_t start, Py_ssize_t rows, floating *buf) noexcept nogil:
    """buf[i * K + k] = x_(start + i) . c_k for the chunk's rows (one GEMM).

    Column-major, the C-order centres are C^T (D x K) and the chunk X^T
    (D x rows); C X^T (K x rows) read back in C order is rows x K.
    """
    cdef int n_features = <int> X.shape[1]
    cdef int n_centers = <int> centers.shape[0]
    gemm(TRANS, NO_TRANS, n_centers, <int> rows, n_features, <floating> 1.0,
         &centers[0, 0], n_features, &X[start, 0], n_features, <floating> 0.0,
         buf, n_centers)


cdef inline double _squared_norm(const floating *x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t d
    cdef double total = 0.0
    for d in range(n):
        total += <double> x[d] * x[d]
    return total


def nearest_centers(const floating[:, ::1] X, const floating[:, ::1] centers,
                    const double[::1] center_norms, int[::1] labels,
                    double[::1] distances, double[:, ::1] all_distances,
                    double[:, ::1] thread_counts, double[:, :, ::1] thread_sums,
                    bint accumulate, Py_ssize_t chunk_size, int n_threads):
    """Nearest centre of every sample, and optionally every distance and Lloyd's sums.

    ``labels[n]`` receives the index of the nearest centre (the first on a
    tie), ``distances[n]`` the squared distance to it; all squared
    distances are clipped at 0 and ``center_norms[k]`` is |c_k|^2.
    ``all_distances`` (n_samples, K) receives every squared distance, or
    has no rows to skip that. With ``accumulate``, ``thread_counts``
    (n_threads, K) and ``thread_sums`` (n_threads, K, D), zero on entry,
    receive each thread's per-cluster count and sum of samples; the caller
    sums them over axis 0. Without, they are not touched (and may have no
    rows). Returns a ``Status``.
    """
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_centers = centers.shape[0]
    cdef bint keep_all = all_distances.shape[0] > 0
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t n_chunks, c, start, stop, i, k, d, best
    cdef floating *buffers = NULL
    cdef floating *buf = NULL
    cdef const floating *x
    cdef double *s
    cdef double x_norm, dist, best_dist
    cdef int tid = 0
    cdef unsigned long long fp_state = 0
    if (centers.shape[1] != n_features or center_norms.shape[0] != n_centers
            or chunk_size < 1 or labels.shape[0] != n_samples
            or distances.shape[0] != n_samples
            or (keep_all and (all_distances.shape[0] != n_samples
                              or all_distances.shape[1] != n_centers))):
        return STATUS_BAD_SHAPE
    if accumulate and (thread_counts.shape[0] < n_team or thread_counts.shape[1] != n_centers
                       or thread_sums.shape[0] < n_team or thread_sums.shape[1] != n_centers
                       or thread_sums.shape[2] != n_features):
        return STATUS_BAD_SHAPE
    if n_samples == 0:
        return STATUS_OK
    if n_centers == 0:
        return STATUS_BAD_SHAPE
    buffers = <floating*> malloc(n_team * chunk_size * n_centers * sizeof(floating))
    if buffers == NULL:
        return STATUS_NO_MEMORY
    n_chunks = chunk_count(n_samples, chunk_size)
    with nogil, parallel(num_threads=n_team):
        fp_state = enter_ftz()
        tid = omp_get_thread_num()
        buf = buffers + tid * chunk_size * n_centers
        for c in prange(n_chunks, schedule='static'):
            start = c * chunk_size
            stop = chunk_stop(start, chunk_size, n_samples)
            if n_features > 0:
                _cross_terms(X, centers, start, stop - start, buf)
            for i in range(stop - start):
                x = &X[start + i, 0]
                x_norm = _squared_norm(x, n_features)
                best = 0
                best_dist = 0.0
                for k in range(n_centers):
                    dist = x_norm + center_norms[k]
                    if n_features > 0:
                        dist = dist - 2.0 * buf[i * n_centers + k]
                    if dist < 0.0:
                        dist = 0.0
                    if keep_all:
                        all_distances[start + i, k] = dist
                    if k == 0 or dist < best_dist:
                        best = k
                        best_dist = dist
                labels[start + i] = <int> best
                distances[start + i] = best_dist
                if accumulate:
                    thread_counts[tid, best] += 1.0
                    s = &thread_sums[tid, best, 0]
                    for d in range(n_features):
                        s[d] += x[d]
        leave_ftz(fp_state)
    free(buffers)
    return STATUS_OK
