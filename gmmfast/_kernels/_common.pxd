# Shared nogil helpers of the kernels: output modes and status codes, chunk
# bounds, row normalisation, merging of per-thread slots, gathers and
# factorisations of symmetric blocks, the observed/missing split of a mask,
# and the one work-space allocator. Kernels ``cimport`` these; none of them
# touches Python objects or raises.
from cython cimport floating
from libc.math cimport exp, log, INFINITY
from libc.stdint cimport SIZE_MAX
from libc.stdlib cimport malloc, free

from ._linalg cimport Uplo, LOWER, UPPER, NO_TRANS, potrf, syrk


cpdef enum OutputMode:
    # What the E-step kernels leave in ``out`` (see ``normalize_row``).
    WEIGHTED_LOG_PROB = 0   # log N(x | k) + log w_k
    LOG_RESP = 1            # log-responsibilities
    RESP = 2                # responsibilities


cpdef enum Status:
    # What a kernel returns; a positive value k + 1 means that a matrix of
    # component k could not be factorised (not positive definite).
    STATUS_OK = 0
    STATUS_NO_MEMORY = -1   # a work space could not be allocated
    STATUS_BAD_SHAPE = -2   # a buffer (e.g. per-thread slots) is too small
    STATUS_BAD_ARGUMENT = -3  # a value out of range (e.g. an unknown OutputMode)


cdef inline bint mode_valid(OutputMode mode) noexcept nogil:
    return mode == WEIGHTED_LOG_PROB or mode == LOG_RESP or mode == RESP


# --------------------------------------------------------------------------
# Threads and chunks
# --------------------------------------------------------------------------

cdef inline int team_size(int n_threads) noexcept nogil:
    """The number of threads a parallel region is asked for: at least 1."""
    return n_threads if n_threads > 1 else 1


cdef inline Py_ssize_t chunk_count(Py_ssize_t n, Py_ssize_t size) noexcept nogil:
    """How many chunks of ``size`` (>= 1) items cover ``n`` items."""
    return (n + size - 1) // size


cdef inline Py_ssize_t chunk_stop(Py_ssize_t start, Py_ssize_t size,
                                  Py_ssize_t n) noexcept nogil:
    """One past the last item of the chunk that begins at ``start``."""
    return start + size if start + size < n else n


cdef inline void chunk_mean(const floating[:, ::1] X, Py_ssize_t start, Py_ssize_t stop,
                            double *center) noexcept nogil:
    """The float64 mean of rows ``start`` to ``stop`` (> start) of X: the centre the
    diagonal GEMM kernels subtract, so that their products cancel relative to the
    chunk's spread, not to the data's distance from the origin."""
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t i, d
    for d in range(n_features):
        center[d] = 0.0
    for i in range(start, stop):
        for d in range(n_features):
            center[d] += X[i, d]
    for d in range(n_features):
        center[d] /= stop - start


# --------------------------------------------------------------------------
# Normalisation of a row of weighted log-densities
# --------------------------------------------------------------------------

cdef inline double normalize_row(const double *row, double *out,
                                 Py_ssize_t n_components,
                                 OutputMode mode) noexcept nogil:
    """Log-sum-exp of ``row``; ``out`` (which may be ``row``) receives the
    row as ``mode`` asks. Returns the log-sum-exp.

    A row with no finite value (no component can explain the sample) has
    log-sum-exp -inf; its responsibilities are then 0 and its
    log-responsibilities, like its weighted log-densities, -inf.
    """
    cdef Py_ssize_t k
    cdef double top = -INFINITY
    cdef double total = 0.0
    cdef double norm
    for k in range(n_components):
        if row[k] > top:
            top = row[k]
    if top == -INFINITY:
        for k in range(n_components):
            out[k] = 0.0 if mode == RESP else row[k]
        return -INFINITY
    for k in range(n_components):
        total += exp(row[k] - top)
    norm = top + log(total)
    if mode == LOG_RESP:
        for k in range(n_components):
            out[k] = row[k] - norm
    elif mode == RESP:
        for k in range(n_components):
            out[k] = exp(row[k] - norm)
    elif out != row:
        for k in range(n_components):
            out[k] = row[k]
    return norm


# --------------------------------------------------------------------------
# Per-thread float64 slots
# --------------------------------------------------------------------------

cdef inline void syrk_accumulate(floating *buf, Py_ssize_t n_rows, Py_ssize_t n_features,
                                 floating *scratch, double *acc) noexcept nogil:
    """acc += B^T B for the ``n_rows`` rows gathered in ``buf`` (one ``syrk``;
    float32 rows go through a float32 ``scratch`` of D x D and join the float64
    sum). Only the C-order lower triangle of ``acc`` (column-major: the upper
    one) is updated."""
    cdef int dim = <int> n_features
    cdef Py_ssize_t j, d
    if floating is double:
        syrk(UPPER, NO_TRANS, dim, <int> n_rows, 1.0, buf, dim, 1.0, acc, dim)
    else:
        syrk(UPPER, NO_TRANS, dim, <int> n_rows, <float> 1.0, buf, dim,
             <float> 0.0, scratch, dim)
        for j in range(n_features):
            for d in range(j + 1):
                acc[j * n_features + d] += scratch[j * n_features + d]


cdef inline void merge_slots(const double *slots, Py_ssize_t n_slots,
                             Py_ssize_t size, double *out) noexcept nogil:
    """out[i] = sum_t slots[t * size + i], summed in slot order (so the
    result depends on the number of slots, never on scheduling)."""
    cdef Py_ssize_t i, t
    cdef double total
    for i in range(size):
        total = 0.0
        for t in range(n_slots):
            total += slots[t * size + i]
        out[i] = total


cdef inline void merge_symmetric_slots(const double *slots, Py_ssize_t n_slots,
                                       Py_ssize_t n, Uplo stored,
                                       double *out) noexcept nogil:
    """out (n, n), both triangles <- the sum over the (n, n) slots, in slot
    order, of their ``stored`` triangle (column-major, as BLAS wrote it:
    LOWER is the C-order upper triangle)."""
    cdef Py_ssize_t i, j, t, at, size = n * n
    cdef double total
    for i in range(n):
        for j in range(i + 1):
            at = j * n + i if stored == LOWER else i * n + j
            total = 0.0
            for t in range(n_slots):
                total += slots[t * size + at]
            out[i * n + j] = total
            out[j * n + i] = total


# --------------------------------------------------------------------------
# Symmetric blocks
# --------------------------------------------------------------------------

cdef inline void gather_lower(const floating *matrix, Py_ssize_t n_features,
                              const Py_ssize_t *idx, Py_ssize_t n, bint by_rows,
                              floating *block) noexcept nogil:
    """The lower triangle (column-major, leading dimension n) of ``block``
    <- matrix[idx, idx] for a symmetric C-ordered ``matrix``.

    Column b of the block is read from row idx[b] of the matrix when
    ``by_rows`` (its symmetric image), else from column idx[b]. Which is
    faster depends on the kernel's loop around it (measured on MNIST: rows
    for the masked E-step, 5% faster at 50% missing; columns for the masked
    M-step, whose other gathers keep those lines in cache)."""
    cdef Py_ssize_t a, b
    cdef const floating *line
    cdef floating *col
    if by_rows:
        for b in range(n):
            line = matrix + idx[b] * n_features
            col = block + b * n
            for a in range(b, n):
                col[a] = line[idx[a]]
    else:
        for b in range(n):
            line = matrix + idx[b]
            col = block + b * n
            for a in range(b, n):
                col[a] = line[idx[a] * n_features]


cdef inline void gather_cross(const floating *matrix, Py_ssize_t n_features,
                              const Py_ssize_t *rows, Py_ssize_t n_rows,
                              const Py_ssize_t *cols, Py_ssize_t n_cols,
                              floating *block) noexcept nogil:
    """``block`` (n_rows, n_cols), column-major <- matrix[rows, cols] for a
    C-ordered ``matrix``.

    Column b of the block reads one element from each of the rows
    ``rows``; consecutive columns mostly fall in the same cache lines of
    those rows, so the lines are loaded about once per 8 columns. (Reading
    row ``cols[b]`` of a symmetric matrix at the positions ``rows`` instead
    touches almost every line of that row when ``rows`` is a large, spread
    subset, e.g. the missing pixels: measured 13% slower masked M-step.)"""
    cdef Py_ssize_t a, b
    cdef const floating *column
    cdef floating *col
    for b in range(n_cols):
        column = matrix + cols[b]
        col = block + b * n_rows
        for a in range(n_rows):
            col[a] = column[rows[a] * n_features]


cdef inline int factor_block(const floating *matrix, Py_ssize_t n_features,
                             const Py_ssize_t *idx, Py_ssize_t n, bint by_rows,
                             floating *factor, double *log_det) noexcept nogil:
    """Cholesky factor L of the symmetric block matrix[idx, idx] (lower
    triangle, column-major, in ``factor``; gathered as ``gather_lower``
    with ``by_rows``). When ``log_det`` is not NULL, adds log det of the
    block to it. Returns LAPACK's info."""
    cdef Py_ssize_t a
    cdef int info
    gather_lower(matrix, n_features, idx, n, by_rows, factor)
    info = potrf(LOWER, <int> n, factor, <int> n)
    if info == 0 and log_det != NULL:
        for a in range(n):
            log_det[0] += 2.0 * log(<double> factor[a * n + a])
    return info


# --------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------

cdef inline void split_coordinates(const unsigned char *observed,
                                   const unsigned char *skip,
                                   Py_ssize_t n_features,
                                   Py_ssize_t *obs, Py_ssize_t *n_obs,
                                   Py_ssize_t *mis, Py_ssize_t *n_mis) noexcept nogil:
    """The observed (``observed[j]`` set) and missing coordinates of one
    mask, in increasing order, leaving out those where ``skip`` (if not
    NULL) is set."""
    cdef Py_ssize_t j, n_o = 0, n_m = 0
    for j in range(n_features):
        if skip != NULL and skip[j]:
            continue
        if observed[j]:
            obs[n_o] = j
            n_o += 1
        else:
            mis[n_m] = j
            n_m += 1
    n_obs[0] = n_o
    n_mis[0] = n_m


cdef inline int first_failure(const int *status, Py_ssize_t n) noexcept nogil:
    """The status of a parallel loop's items, reduced in a fixed order: an
    allocation or shape failure (negative) first, then the first failed
    factorisation (k + 1), else ``STATUS_OK``."""
    cdef Py_ssize_t i
    for i in range(n):
        if status[i] < 0:
            return status[i]
    for i in range(n):
        if status[i] > 0:
            return status[i]
    return STATUS_OK


cdef inline bint units_valid(const Py_ssize_t *order, Py_ssize_t n_samples,
                             const Py_ssize_t *unit_ptr, Py_ssize_t n_units,
                             Py_ssize_t max_rows) noexcept nogil:
    """Mask units fit the samples: ``order`` holds sample indices, and unit u,
    ``order[unit_ptr[u]:unit_ptr[u + 1]]``, has 1 to ``max_rows`` of them."""
    cdef Py_ssize_t i, u
    for i in range(n_samples):
        if order[i] < 0 or order[i] >= n_samples:
            return False
    for u in range(n_units):
        if (unit_ptr[u] < 0 or unit_ptr[u + 1] > n_samples or unit_ptr[u + 1] <= unit_ptr[u]
                or unit_ptr[u + 1] - unit_ptr[u] > max_rows):
            return False
    return True


# --------------------------------------------------------------------------
# Work space: one checked allocation, carved into named buffers
# --------------------------------------------------------------------------
#
# A kernel describes its work space once, in a *layout* function that takes
# every buffer from an arena in a fixed order (the work-space struct itself
# first) and returns the struct. ``arena_new`` runs the layout twice: a
# measuring pass with no memory (every take returns NULL and only adds up
# sizes; the layout then fills a struct on its own stack, discarded), then,
# after a single checked malloc, the pass that hands out the memory. The
# result is one block, released by ``arena_free``.

cdef struct Arena:
    char *base        # NULL during the measuring pass
    size_t used       # bytes taken so far
    bint overflow     # a size did not fit in size_t


ctypedef void *(*ArenaLayout)(Arena *arena, const Py_ssize_t *dims) noexcept nogil


cdef inline void *arena_take(Arena *arena, size_t count,
                             size_t item_size) noexcept nogil:
    """Room for ``count`` items, 64-byte aligned within the block (NULL in
    the measuring pass)."""
    cdef size_t at = (arena.used + 63) & ~(<size_t> 63)
    if at < arena.used or (item_size != 0 and count > (SIZE_MAX - at) // item_size):
        arena.overflow = True
        return NULL
    arena.used = at + count * item_size
    if arena.base == NULL:
        return NULL
    return arena.base + at


cdef inline void *arena_new(ArenaLayout layout, const Py_ssize_t *dims) noexcept nogil:
    """The work space ``layout`` describes for ``dims``, in one malloc, or
    NULL if memory is short."""
    cdef Arena arena
    arena.base = NULL
    arena.used = 0
    arena.overflow = False
    layout(&arena, dims)
    if arena.overflow:
        return NULL
    arena.base = <char*> malloc(arena.used if arena.used > 0 else 1)
    if arena.base == NULL:
        return NULL
    arena.used = 0
    return layout(&arena, dims)


cdef inline void arena_free(void *workspace) noexcept nogil:
    """Release a work space from ``arena_new`` (NULL is ignored)."""
    free(workspace)
