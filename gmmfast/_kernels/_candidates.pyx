"""Gaussian selection kernels: E- and M-steps over each sample's candidate components.

The (sample, component) pairs that are evaluated are held twice:

* by sample (CSR): sample n's candidates are ``idx[ptr[n]:ptr[n + 1]]``, and
  ``values`` (one float64 per pair) follows the same order;
* by component: component k's pairs are the CSR positions
  ``by_comp[comp_ptr[k]:comp_ptr[k + 1]]``, in sample order, and
  ``comp_rows[j]`` is the sample of position ``by_comp[j]``.

The E-step of full (and tied) covariances runs by component, so that a
component's samples are gathered into a tile and whitened by one ``trmm``
(BLAS-3, as the exact kernel does a chunk); the diagonal E-step runs by
sample (three flops a feature per pair, no BLAS). The M-step runs by
component: each component's counts, mean and scatter are one thread's
work, summed in sample order, so results never depend on the number of
threads.

``group_by_component`` builds the by-component order from the CSR arrays
and validates them as it goes (the sets are built once per full pass); the
E- and M-step kernels then check the sizes they are handed against each
other and against the data. Kernels return a ``Status``.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport log, sqrt, M_PI, INFINITY
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from ._common cimport (
    OutputMode, STATUS_OK, STATUS_NO_MEMORY, STATUS_BAD_SHAPE, STATUS_BAD_ARGUMENT,
    mode_valid, team_size, chunk_count, chunk_stop, normalize_row, merge_symmetric_slots,
    syrk_accumulate,
)
from ._fpenv cimport enter_ftz, leave_ftz
from ._linalg cimport trmm, LEFT, LOWER, UPPER, NO_TRANS, NON_UNIT
from ._omp cimport omp_get_thread_num

# As _stats.MASS_FLOOR: the mass a mean is divided by carries 10 eps.
cdef double _MASS_FLOOR = 10.0 * 2.220446049250313e-16


def group_by_component(const int64_t[::1] ptr, const int32_t[::1] idx,
                       int64_t[::1] comp_ptr, int64_t[::1] by_comp, int64_t[::1] comp_rows):
    """The by-component order of the CSR pairs (``ptr``, ``idx``), by a counting
    sort (stable: each component's pairs stay in sample order).

    Checks the CSR arrays as it reads them: ``STATUS_BAD_SHAPE`` if the
    lengths disagree, ``STATUS_BAD_ARGUMENT`` if ``ptr`` does not run from 0
    to the number of pairs without decreasing or an index is outside
    ``[0, len(comp_ptr) - 1)``; the outputs are then unspecified.
    """
    cdef Py_ssize_t n_samples = ptr.shape[0] - 1
    cdef Py_ssize_t n_components = comp_ptr.shape[0] - 1
    cdef Py_ssize_t nnz = idx.shape[0]
    if n_samples < 0 or n_components < 0 or by_comp.shape[0] != nnz or comp_rows.shape[0] != nnz:
        return STATUS_BAD_SHAPE
    cdef int status
    with nogil:
        status = _group(ptr, idx, comp_ptr, by_comp, comp_rows, n_samples, n_components)
    return status


cdef int _group(const int64_t[::1] ptr, const int32_t[::1] idx, int64_t[::1] comp_ptr,
                int64_t[::1] by_comp, int64_t[::1] comp_rows, Py_ssize_t n_samples,
                Py_ssize_t n_components) noexcept nogil:
    cdef Py_ssize_t nnz = idx.shape[0]
    cdef Py_ssize_t n, j, k, at
    if ptr[0] != 0 or ptr[n_samples] != nnz:
        return STATUS_BAD_ARGUMENT
    for k in range(n_components + 1):
        comp_ptr[k] = 0
    for n in range(n_samples):
        if ptr[n + 1] < ptr[n]:
            return STATUS_BAD_ARGUMENT
        for j in range(ptr[n], ptr[n + 1]):
            if idx[j] < 0 or idx[j] >= n_components:
                return STATUS_BAD_ARGUMENT
            comp_ptr[idx[j] + 1] += 1
    for k in range(n_components):
        comp_ptr[k + 1] += comp_ptr[k]
    # comp_ptr[k] now counts up as component k's pairs are placed, then is
    # shifted back to its start.
    for n in range(n_samples):
        for j in range(ptr[n], ptr[n + 1]):
            at = comp_ptr[idx[j]]
            by_comp[at] = j
            comp_rows[at] = n
            comp_ptr[idx[j]] = at + 1
    for k in range(n_components, 0, -1):
        comp_ptr[k] = comp_ptr[k - 1]
    comp_ptr[0] = 0
    return STATUS_OK


cdef void _full_component(const floating[:, ::1] X, const double *mu,
                          const floating *factor, double constant,
                          const int64_t *by_comp, const int64_t *rows,
                          Py_ssize_t count, Py_ssize_t tile,
                          double *values, floating *buf) noexcept nogil:
    """values[by_comp[j]] = -0.5 ||U^T (x_rows[j] - mu)||^2 + constant for the
    component's ``count`` pairs, a tile of samples per ``trmm``."""
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t t, first, i, d, rows_in_tile
    cdef const floating *x
    cdef floating *b
    cdef double sq, v
    for t in range(chunk_count(count, tile)):
        first = t * tile
        rows_in_tile = chunk_stop(first, tile, count) - first
        for i in range(rows_in_tile):
            x = &X[rows[first + i], 0]
            b = buf + i * n_features
            for d in range(n_features):
                b[d] = <floating> (x[d] - mu[d])
        # As the exact kernel: columns b of the tile, b <- U^T b.
        trmm(LEFT, LOWER, NO_TRANS, NON_UNIT, <int> n_features, <int> rows_in_tile,
             <floating> 1.0, factor, <int> n_features, buf, <int> n_features)
        for i in range(rows_in_tile):
            b = buf + i * n_features
            sq = 0.0
            for d in range(n_features):
                v = b[d]
                sq += v * v
            values[by_comp[first + i]] = -0.5 * sq + constant


def candidate_estep_full(const floating[:, ::1] X, const double[:, ::1] means,
                         const floating[:, :, ::1] prec_chol, bint tied,
                         const double[::1] log_det, const double[::1] log_weights,
                         const int64_t[::1] comp_ptr, const int64_t[::1] by_comp,
                         const int64_t[::1] comp_rows, double[::1] values,
                         Py_ssize_t tile, int n_threads):
    """Weighted log-densities of every candidate pair, full or tied covariances.

    ``values[p]`` (CSR order) receives log N(x_n | mu_k, Sigma_k) + log w_k
    for pair position p. ``prec_chol`` holds the upper factors U_k (one when
    ``tied``) in the dtype of X. Components are handed to threads
    dynamically; each thread owns a tile buffer of ``tile`` samples.
    """
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t nnz = values.shape[0]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t k
    cdef double log_2pi_d = n_features * log(2.0 * M_PI)
    if (means.shape[1] != n_features or log_det.shape[0] < n_components
            or log_weights.shape[0] < n_components or comp_ptr.shape[0] != n_components + 1
            or by_comp.shape[0] != nnz or comp_rows.shape[0] != nnz or tile < 1
            or prec_chol.shape[0] < (1 if tied else n_components)
            or prec_chol.shape[1] != n_features or prec_chol.shape[2] != n_features):
        return STATUS_BAD_SHAPE
    if nnz == 0:
        return STATUS_OK
    if comp_ptr[0] != 0 or comp_ptr[n_components] != nnz:
        return STATUS_BAD_ARGUMENT
    cdef int[::1] thread_status = np.zeros(n_team, dtype=np.intc)
    cdef floating *buf = NULL
    cdef int tid = 0
    cdef unsigned long long fp_state = 0
    with nogil, parallel(num_threads=n_team):
        fp_state = enter_ftz()
        tid = omp_get_thread_num()
        buf = <floating*> malloc(tile * n_features * sizeof(floating))
        if buf == NULL:
            thread_status[tid] = STATUS_NO_MEMORY
        for k in prange(n_components, schedule='dynamic'):
            if buf != NULL and comp_ptr[k + 1] > comp_ptr[k]:
                _full_component(X, &means[k, 0], &prec_chol[0 if tied else k, 0, 0],
                                -0.5 * log_2pi_d + log_det[k] + log_weights[k],
                                &by_comp[comp_ptr[k]], &comp_rows[comp_ptr[k]],
                                comp_ptr[k + 1] - comp_ptr[k], tile, &values[0], buf)
        free(buf)
        leave_ftz(fp_state)
    for tid in range(n_team):
        if thread_status[tid] != STATUS_OK:
            return thread_status[tid]
    return STATUS_OK


cdef inline double _diag_distance(const floating *x, const double *mu, const double *prec_sqrt,
                                  Py_ssize_t n_features) noexcept nogil:
    """sum_d ((x_d - mu_d) p_d)^2, the diagonal Mahalanobis distance."""
    cdef Py_ssize_t d
    cdef double v, sq = 0.0
    for d in range(n_features):
        v = (x[d] - mu[d]) * prec_sqrt[d]
        sq += v * v
    return sq


def candidate_estep_diag(const floating[:, ::1] X, const double[:, ::1] means,
                         const double[:, ::1] prec_sqrt, const double[::1] log_det,
                         const double[::1] log_weights, const int64_t[::1] ptr,
                         const int32_t[::1] idx, double[::1] values,
                         Py_ssize_t chunk_size, int n_threads):
    """Weighted log-densities of every candidate pair, diagonal covariances
    (spherical ones broadcast to a row per component): by sample, in chunks
    of ``chunk_size`` samples handed to threads dynamically."""
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t nnz = values.shape[0]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t c, n, j, k, start, stop
    cdef double log_2pi_d = n_features * log(2.0 * M_PI)
    cdef unsigned long long fp_state = 0
    if (means.shape[1] != n_features or prec_sqrt.shape[0] < n_components
            or prec_sqrt.shape[1] != n_features or log_det.shape[0] < n_components
            or log_weights.shape[0] < n_components or ptr.shape[0] != n_samples + 1
            or idx.shape[0] != nnz or chunk_size < 1):
        return STATUS_BAD_SHAPE
    if n_samples == 0:
        return STATUS_OK
    if ptr[0] != 0 or ptr[n_samples] != nnz:
        return STATUS_BAD_ARGUMENT
    with nogil, parallel(num_threads=n_team):
        fp_state = enter_ftz()
        for c in prange(chunk_count(n_samples, chunk_size), schedule='dynamic'):
            start = c * chunk_size
            stop = chunk_stop(start, chunk_size, n_samples)
            for n in range(start, stop):
                for j in range(ptr[n], ptr[n + 1]):
                    k = idx[j]
                    values[j] = (-0.5 * (log_2pi_d + _diag_distance(&X[n, 0], &means[k, 0],
                                                                    &prec_sqrt[k, 0], n_features))
                                 + log_det[k] + log_weights[k])
        leave_ftz(fp_state)
    return STATUS_OK


def normalize_candidates(const int64_t[::1] ptr, double[::1] values, double[::1] log_norm,
                         OutputMode mode, Py_ssize_t chunk_size, int n_threads):
    """Per sample, ``log_norm[n]`` = log-sum-exp of its candidates' values, and the
    values turned into what ``mode`` asks (as the exact kernels' rows)."""
    cdef Py_ssize_t n_samples = log_norm.shape[0]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t c, n, start, stop
    if ptr.shape[0] != n_samples + 1 or chunk_size < 1:
        return STATUS_BAD_SHAPE
    if not mode_valid(mode):
        return STATUS_BAD_ARGUMENT
    if n_samples == 0:
        return STATUS_OK
    if ptr[0] != 0 or ptr[n_samples] != values.shape[0]:
        return STATUS_BAD_ARGUMENT
    with nogil:
        for c in prange(chunk_count(n_samples, chunk_size), schedule='static',
                        num_threads=n_team):
            start = c * chunk_size
            stop = chunk_stop(start, chunk_size, n_samples)
            for n in range(start, stop):
                if ptr[n + 1] > ptr[n]:
                    log_norm[n] = normalize_row(&values[ptr[n]], &values[ptr[n]],
                                                ptr[n + 1] - ptr[n], mode)
                else:
                    log_norm[n] = -INFINITY
    return STATUS_OK


cdef void _component_mean(const floating[:, ::1] X, const double *resp,
                          const int64_t *by_comp, const int64_t *rows, Py_ssize_t count,
                          double *count_out, double *mean) noexcept nogil:
    """count_out = sum r, mean = sum r x / (count + MASS_FLOOR) over the pairs, in float64."""
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t j, d
    cdef double w, total = 0.0
    cdef const floating *x
    memset(mean, 0, n_features * sizeof(double))
    for j in range(count):
        w = resp[by_comp[j]]
        if w == 0.0:
            continue
        total += w
        x = &X[rows[j], 0]
        for d in range(n_features):
            mean[d] += w * x[d]
    count_out[0] = total
    for d in range(n_features):
        mean[d] /= total + _MASS_FLOOR


cdef void _full_component_scatter(const floating[:, ::1] X, const double *resp,
                                  const int64_t *by_comp, const int64_t *rows,
                                  Py_ssize_t count, const double *mu, Py_ssize_t tile,
                                  floating *buf, floating *scratch,
                                  double *out) noexcept nogil:
    """out = sum r (x - mu)(x - mu)^T over the pairs (both triangles): rows
    gathered centred and scaled by sqrt(r), a ``syrk`` per tile."""
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t j, d, filled = 0
    cdef double w
    cdef const floating *x
    cdef floating *b
    memset(out, 0, n_features * n_features * sizeof(double))
    for j in range(count):
        w = resp[by_comp[j]]
        if w == 0.0:
            continue
        w = sqrt(w)
        x = &X[rows[j], 0]
        b = buf + filled * n_features
        for d in range(n_features):
            b[d] = <floating> ((x[d] - mu[d]) * w)
        filled += 1
        if filled == tile:
            syrk_accumulate(buf, filled, n_features, scratch, out)
            filled = 0
    if filled > 0:
        syrk_accumulate(buf, filled, n_features, scratch, out)
    merge_symmetric_slots(out, 1, n_features, UPPER, out)


cdef void _diag_component_scatter(const floating[:, ::1] X, const double *resp,
                                  const int64_t *by_comp, const int64_t *rows,
                                  Py_ssize_t count, const double *mu,
                                  double *out) noexcept nogil:
    """out[d] = sum r (x_d - mu_d)^2 over the pairs."""
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t j, d
    cdef double w, v
    cdef const floating *x
    memset(out, 0, n_features * sizeof(double))
    for j in range(count):
        w = resp[by_comp[j]]
        if w == 0.0:
            continue
        x = &X[rows[j], 0]
        for d in range(n_features):
            v = x[d] - mu[d]
            out[d] += w * v * v


def candidate_statistics(const floating[:, ::1] X, const double[::1] resp,
                         const int64_t[::1] comp_ptr, const int64_t[::1] by_comp,
                         const int64_t[::1] comp_rows, double[::1] counts,
                         double[:, ::1] means, scatter, bint full,
                         Py_ssize_t tile, int n_threads):
    """Centred statistics of each component from its candidate pairs.

    ``resp`` holds the responsibilities in CSR order (zeros are skipped).
    ``counts[k]`` = sum r, ``means[k]`` = sum r x / (counts + 10 eps) and the
    scatter around that mean: ``scatter`` (K, D, D) float64 when ``full``,
    else (K, D) float64 (its diagonal). One component per thread.
    """
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_components = counts.shape[0]
    cdef Py_ssize_t nnz = resp.shape[0]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t k
    cdef double[:, :, ::1] full_out
    cdef double[:, ::1] diag_out
    cdef double *full_ptr = NULL
    cdef double *diag_ptr = NULL
    if full:
        full_out = scatter
        if (full_out.shape[0] != n_components or full_out.shape[1] != n_features
                or full_out.shape[2] != n_features):
            return STATUS_BAD_SHAPE
        if n_components and n_features:
            full_ptr = &full_out[0, 0, 0]
    else:
        diag_out = scatter
        if diag_out.shape[0] != n_components or diag_out.shape[1] != n_features:
            return STATUS_BAD_SHAPE
        if n_components and n_features:
            diag_ptr = &diag_out[0, 0]
    if (comp_ptr.shape[0] != n_components + 1 or by_comp.shape[0] != nnz
            or comp_rows.shape[0] != nnz or means.shape[0] != n_components
            or means.shape[1] != n_features or tile < 1):
        return STATUS_BAD_SHAPE
    if comp_ptr[0] != 0 or comp_ptr[n_components] != nnz:
        return STATUS_BAD_ARGUMENT
    if n_components == 0 or n_features == 0:
        return STATUS_OK
    cdef Py_ssize_t per_thread = tile * n_features + (n_features * n_features if floating is float else 0)
    cdef int[::1] thread_status = np.zeros(n_team, dtype=np.intc)
    cdef floating *buf = NULL
    cdef int tid = 0
    cdef unsigned long long fp_state = 0
    cdef Py_ssize_t first, count
    cdef const double *r = &resp[0] if nnz else NULL
    with nogil, parallel(num_threads=n_team):
        fp_state = enter_ftz()
        tid = omp_get_thread_num()
        buf = NULL
        if full:
            buf = <floating*> malloc(per_thread * sizeof(floating))
            if buf == NULL:
                thread_status[tid] = STATUS_NO_MEMORY
        for k in prange(n_components, schedule='dynamic'):
            first = comp_ptr[k]
            count = comp_ptr[k + 1] - first
            if count == 0:
                counts[k] = 0.0
                memset(&means[k, 0], 0, n_features * sizeof(double))
                if full:
                    memset(full_ptr + k * n_features * n_features, 0,
                           n_features * n_features * sizeof(double))
                else:
                    memset(diag_ptr + k * n_features, 0, n_features * sizeof(double))
                continue
            _component_mean(X, r, &by_comp[first], &comp_rows[first], count,
                            &counts[k], &means[k, 0])
            if full:
                if buf != NULL:
                    _full_component_scatter(X, r, &by_comp[first], &comp_rows[first], count,
                                            &means[k, 0], tile, buf, buf + tile * n_features,
                                            full_ptr + k * n_features * n_features)
            else:
                _diag_component_scatter(X, r, &by_comp[first], &comp_rows[first], count,
                                        &means[k, 0], diag_ptr + k * n_features)
        free(buf)
        leave_ftz(fp_state)
    for tid in range(n_team):
        if thread_status[tid] != STATUS_OK:
            return thread_status[tid]
    return STATUS_OK


cdef double _row_cut(const double *row, Py_ssize_t n_components, double threshold,
                     Py_ssize_t n_top, double *top) noexcept nogil:
    """The smallest value a kept entry of ``row`` may have: ``threshold``, or the
    ``n_top``-th largest positive entry if that is smaller (``top``: n_top scratch
    doubles). A row with no positive entry (a sample no component explains)
    keeps every component: its cut is 0."""
    cdef Py_ssize_t k, i, filled = 0
    cdef double v
    # ``top`` holds the largest positive values seen so far, in decreasing order.
    for k in range(n_components):
        v = row[k]
        if not v > 0.0:
            continue
        if filled < n_top:
            i = filled
            filled += 1
        elif v > top[n_top - 1]:
            i = n_top - 1
        else:
            continue
        while i > 0 and top[i - 1] < v:
            top[i] = top[i - 1]
            i -= 1
        top[i] = v
    if filled == 0:
        return 0.0 if n_top > 0 or threshold <= 0.0 else threshold
    v = top[filled - 1]
    return v if v < threshold else threshold


def row_cuts(const double[:, ::1] resp, double threshold, Py_ssize_t n_top,
             double[::1] cut, int64_t[::1] counts, int n_threads):
    """Per row of ``resp``, the cut (``threshold``, lowered to the row's
    ``n_top``-th largest value where that is smaller) and how many entries
    reach it: the candidates a full pass keeps. Returns a ``Status``."""
    cdef Py_ssize_t n_rows = resp.shape[0]
    cdef Py_ssize_t n_components = resp.shape[1]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t n, k, c
    cdef double *top = NULL
    cdef int tid = 0
    cdef int[::1] thread_status = np.zeros(n_team, dtype=np.intc)
    if cut.shape[0] != n_rows or counts.shape[0] != n_rows or n_top < 0:
        return STATUS_BAD_SHAPE
    if n_top > n_components:
        n_top = n_components
    if n_rows == 0 or n_components == 0:
        counts[:] = 0
        return STATUS_OK
    with nogil, parallel(num_threads=n_team):
        tid = omp_get_thread_num()
        top = <double*> malloc((n_top if n_top > 0 else 1) * sizeof(double))
        if top == NULL:
            thread_status[tid] = STATUS_NO_MEMORY
        for n in prange(n_rows, schedule='static'):
            if top != NULL:
                cut[n] = _row_cut(&resp[n, 0], n_components, threshold, n_top, top)
                counts[n] = _count_at_least(&resp[n, 0], n_components, cut[n])
        free(top)
    for tid in range(n_team):
        if thread_status[tid] != STATUS_OK:
            return thread_status[tid]
    return STATUS_OK


cdef inline Py_ssize_t _count_at_least(const double *row, Py_ssize_t n,
                                       double cut) noexcept nogil:
    cdef Py_ssize_t k, count = 0
    for k in range(n):
        if row[k] >= cut:
            count += 1
    return count


def gather_kept(const double[:, ::1] resp, const double[::1] cut, const int64_t[::1] ptr,
                int32_t[::1] idx, double[::1] values, int n_threads):
    """Write each row's entries that reach its cut, in component order, at
    ``idx[ptr[n]:ptr[n + 1]]`` (components) and ``values`` (responsibilities);
    ``ptr`` must come from the counts of :func:`row_cuts` with the same cuts."""
    cdef Py_ssize_t n_rows = resp.shape[0]
    cdef Py_ssize_t n_components = resp.shape[1]
    cdef Py_ssize_t nnz = idx.shape[0]
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t n, k, at
    if (cut.shape[0] != n_rows or ptr.shape[0] != n_rows + 1 or values.shape[0] != nnz):
        return STATUS_BAD_SHAPE
    if n_rows == 0:
        return STATUS_OK
    if ptr[n_rows] - ptr[0] > nnz or ptr[0] < 0:
        return STATUS_BAD_ARGUMENT
    with nogil:
        for n in prange(n_rows, schedule='static', num_threads=n_team):
            _gather_row(&resp[n, 0], n_components, cut[n], ptr[n], ptr[n + 1], &idx[0],
                        &values[0])
    return STATUS_OK


cdef inline void _gather_row(const double *row, Py_ssize_t n_components, double cut,
                             Py_ssize_t first, Py_ssize_t stop, int32_t *idx,
                             double *values) noexcept nogil:
    cdef Py_ssize_t k, at = first
    for k in range(n_components):
        if row[k] >= cut and at < stop:
            idx[at] = <int32_t> k
            values[at] = row[k]
            at += 1
