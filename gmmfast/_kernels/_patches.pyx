"""Overlapping-patch kernels: extraction of all m x m patches from a batch
of images, and averaging of (optionally weighted) patches back into images.

Conventions (shared with ``gmmfast.patches``, which computes the positions):

* ``rows`` / ``cols`` are the top-left corners of the patches along each
  axis, increasing, each in ``[0, L - m]``.
* Patch order is image-major, then row position, then column position:
  patch ``(i, a, b)`` (image ``i``, ``rows[a]``, ``cols[b]``) is row
  ``(i * n_rows + a) * n_cols + b`` of the patch matrix. Pixels within a
  patch are row-major, so ``patches[p, u * m + v]`` is pixel
  ``(rows[a] + u, cols[b] + v)`` of image ``i``.

Each image's patches are a contiguous block of rows, so averaging runs one
image per thread iteration with no write races; extraction splits finer,
over (image, row position) pairs. Nothing is allocated and the GIL is not
held inside the parallel loops; callers provide outputs and workspaces.
Kernels check their arguments' shapes (and the patch positions) before
any loop and return a status (see ``_common``); they raise nothing.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport NAN
from libc.string cimport memcpy

from ._common cimport STATUS_OK, STATUS_BAD_SHAPE, team_size
from ._fpenv cimport enter_ftz, leave_ftz
from ._omp cimport omp_get_thread_num


cdef bint _positions_fit(const Py_ssize_t[::1] positions, Py_ssize_t m,
                         Py_ssize_t length) noexcept nogil:
    """Every corner in ``positions`` leaves room for a patch of size m."""
    cdef Py_ssize_t a
    for a in range(positions.shape[0]):
        if positions[a] < 0 or positions[a] + m > length:
            return False
    return True


cdef inline void _patch_row(const floating *src, Py_ssize_t W,
                            const Py_ssize_t *cols, Py_ssize_t n_cols,
                            floating *dst, Py_ssize_t m) noexcept nogil:
    """The ``n_cols`` patches whose top-left corners are ``src + cols[b]``
    (``src`` the first pixel of their top row, ``W`` the image row length),
    copied one after the other into ``dst``: the output is written
    sequentially, ``m * m`` values per patch.

    Patch rows are short (``m`` values), so the cost is the overhead of
    each small copy, not its bytes: for the common patch sizes the copy
    length is a compile-time constant and ``memcpy`` becomes a few vector
    moves, with no loop bookkeeping."""
    cdef Py_ssize_t b, u
    cdef const floating *s
    if m == 8:
        for b in range(n_cols):
            s = src + cols[b]
            for u in range(8):
                memcpy(dst + 8 * u, s + u * W, 8 * sizeof(floating))
            dst += 64
    elif m == 4:
        for b in range(n_cols):
            s = src + cols[b]
            for u in range(4):
                memcpy(dst + 4 * u, s + u * W, 4 * sizeof(floating))
            dst += 16
    elif m == 16:
        for b in range(n_cols):
            s = src + cols[b]
            for u in range(16):
                memcpy(dst + 16 * u, s + u * W, 16 * sizeof(floating))
            dst += 256
    else:
        for b in range(n_cols):
            s = src + cols[b]
            for u in range(m):
                memcpy(dst + m * u, s + u * W, m * sizeof(floating))
            dst += m * m


def extract_patches(const floating[:, :, ::1] images,
                    const Py_ssize_t[::1] rows, const Py_ssize_t[::1] cols,
                    Py_ssize_t patch_size, floating[:, ::1] out,
                    int n_threads):
    """Copy every patch at the given positions into ``out``.

    One parallel iteration per (image, row position): the ``n_cols``
    patches of that row of positions, a contiguous block of ``out``
    written front to back. The work is a memory copy; for outputs larger
    than the caches its speed is set by memory bandwidth (and, for a
    freshly allocated ``out``, by the operating system zeroing the new
    pages on first touch), which is why callers may pass a reused ``out``.

    Parameters
    ----------
    images : (n_images, H, W) float32 or float64, C-contiguous
    rows, cols : (n_rows,), (n_cols,) intp
        Patch corners along each axis, in ``[0, H - m]`` / ``[0, W - m]``.
    patch_size : int
        ``m``.
    out : (n_images * n_rows * n_cols, m * m), dtype of images, written
    n_threads : int

    Returns
    -------
    status : int
        0, or ``STATUS_BAD_SHAPE`` (``out``'s shape, or a patch position
        outside the images).
    """
    cdef Py_ssize_t n_images = images.shape[0]
    cdef Py_ssize_t W = images.shape[2]
    cdef Py_ssize_t HW = images.shape[1] * W
    cdef Py_ssize_t n_rows = rows.shape[0]
    cdef Py_ssize_t n_cols = cols.shape[0]
    cdef Py_ssize_t m = patch_size
    cdef Py_ssize_t block = n_cols * m * m  # values per (image, row position)
    cdef Py_ssize_t t, i, a
    cdef const floating *src
    cdef floating *dst

    if (m < 1 or out.shape[0] != n_images * n_rows * n_cols or out.shape[1] != m * m
            or not _positions_fit(rows, m, images.shape[1])
            or not _positions_fit(cols, m, W)):
        return STATUS_BAD_SHAPE
    if n_images == 0 or n_rows == 0 or n_cols == 0 or HW == 0:
        return STATUS_OK
    src = &images[0, 0, 0]
    dst = &out[0, 0]
    # A pure copy: no arithmetic, so the floating-point mode is irrelevant.
    with nogil:
        for t in prange(n_images * n_rows, schedule='static',
                        num_threads=n_threads):
            i = t // n_rows
            a = t - i * n_rows
            _patch_row(src + i * HW + rows[a] * W, W, &cols[0], n_cols,
                       dst + t * block, m)
    return STATUS_OK


cdef void _average_image(const floating[:, ::1] patches, const double *w,
                         const Py_ssize_t[::1] rows,
                         const Py_ssize_t[::1] cols, Py_ssize_t m,
                         Py_ssize_t first, Py_ssize_t W,
                         double *sums, double *wsums) noexcept nogil:
    """Add one image's patches (rows ``first...``) into ``sums``, and their
    weights into ``wsums`` when ``w`` is not NULL."""
    cdef Py_ssize_t n_rows = rows.shape[0]
    cdef Py_ssize_t n_cols = cols.shape[0]
    cdef Py_ssize_t a, b, u, v, p
    cdef const floating *src
    cdef double *dst
    cdef double *wdst
    cdef double wp

    p = first
    for a in range(n_rows):
        for b in range(n_cols):
            src = &patches[p, 0]
            if w == NULL:
                for u in range(m):
                    dst = sums + (rows[a] + u) * W + cols[b]
                    for v in range(m):
                        dst[v] += src[u * m + v]
            else:
                # Patches of weight 0 are not skipped: a NaN or infinity
                # in one must still reach the sums (see ``average_patches``).
                wp = w[p]
                for u in range(m):
                    dst = sums + (rows[a] + u) * W + cols[b]
                    wdst = wsums + (rows[a] + u) * W + cols[b]
                    for v in range(m):
                        dst[v] += wp * src[u * m + v]
                        wdst[v] += wp
            p += 1


def average_patches(const floating[:, ::1] patches, const double[::1] weights,
                    const Py_ssize_t[::1] rows, const Py_ssize_t[::1] cols,
                    Py_ssize_t patch_size, floating[:, :, ::1] out,
                    double[:, ::1] work, unsigned char[::1] uncovered,
                    int n_threads):
    """Average overlapping patches back into images.

    ``out[i, y, x]`` is the mean of the values that the patches of image
    ``i`` hold for pixel ``(y, x)``, or their weighted mean
    ``sum_p w_p v_p / sum_p w_p`` when ``weights`` is given. Sums are
    accumulated in float64 per image, then divided and cast to the dtype
    of ``out``. Runs with flush-to-zero (see ``_fpenv.pxd``).

    ``patches`` need not be checked for NaN and infinity beforehand (a
    full pass over the largest array): every value, weight 0 or not,
    enters the sums, so a non-finite patch value makes some output pixel
    non-finite, and the caller checks the (much smaller) output instead.

    Parameters
    ----------
    patches : (n_images * n_rows * n_cols, m * m) float32 or float64
        In the order documented in the module docstring.
    weights : (n_patches,) float64 or None
        Non-negative and finite (not checked here).
    rows, cols : (n_rows,), (n_cols,) intp
        Patch corners; without weights every pixel must be covered.
    patch_size : int
    out : (n_images, H, W), dtype of patches, written
    work : (n_threads, 2 * H * W) float64
        Per-thread accumulators (without weights, the second half of row 0
        holds the coverage counts shared by every image).
    uncovered : (n_images,) uint8, written
        1 where some pixel of the image has total weight 0 (its output
        pixel is NaN), else 0. Always 0 without weights when the
        positions cover every pixel.
    n_threads : int

    Returns
    -------
    status : int
        0, or ``STATUS_BAD_SHAPE`` (``work`` has fewer rows than
        ``n_threads`` or rows shorter than ``2 * H * W``, another argument's
        shape, or a patch position outside the images).
    """
    cdef Py_ssize_t n_images = out.shape[0]
    cdef Py_ssize_t H = out.shape[1]
    cdef Py_ssize_t W = out.shape[2]
    cdef Py_ssize_t HW = H * W
    cdef Py_ssize_t n_rows = rows.shape[0]
    cdef Py_ssize_t n_cols = cols.shape[0]
    cdef Py_ssize_t per_image = n_rows * n_cols
    cdef Py_ssize_t m = patch_size
    cdef int n_team = team_size(n_threads)
    cdef Py_ssize_t i, j, a, b, u, v
    cdef int tid = 0
    cdef bint has_weights = weights is not None
    cdef const double *w = NULL
    cdef double *sums
    cdef double *wsums
    cdef double *counts = NULL
    cdef double den
    cdef unsigned char bad
    cdef floating *o
    cdef unsigned long long fp_state = 0

    if (m < 1 or patches.shape[0] != n_images * per_image or patches.shape[1] != m * m
            or (has_weights and weights.shape[0] != patches.shape[0])
            or work.shape[0] < n_team or work.shape[1] < 2 * HW
            or uncovered.shape[0] != n_images
            or not _positions_fit(rows, m, H) or not _positions_fit(cols, m, W)):
        return STATUS_BAD_SHAPE
    if n_images == 0 or HW == 0:
        return STATUS_OK
    if has_weights:
        w = &weights[0]
    with nogil:
        if not has_weights:
            # Coverage counts are the same for every image: computed once,
            # in the second half of thread 0's workspace (exact integers).
            counts = &work[0, HW]
            for j in range(HW):
                counts[j] = 0.0
            for a in range(n_rows):
                for b in range(n_cols):
                    for u in range(m):
                        for v in range(m):
                            counts[(rows[a] + u) * W + cols[b] + v] += 1.0
        with parallel(num_threads=n_team):
            fp_state = enter_ftz()
            tid = omp_get_thread_num()
            for i in prange(n_images, schedule='static'):
                sums = &work[tid, 0]
                wsums = &work[tid, HW]
                for j in range(HW):
                    sums[j] = 0.0
                if has_weights:
                    for j in range(HW):
                        wsums[j] = 0.0
                else:
                    wsums = counts
                _average_image(patches, w, rows, cols, m, i * per_image,
                               W, sums, wsums)
                o = &out[i, 0, 0]
                bad = 0
                for j in range(HW):
                    den = wsums[j]
                    if den > 0.0:
                        o[j] = <floating> (sums[j] / den)
                    else:
                        o[j] = <floating> NAN
                        bad = 1
                uncovered[i] = bad
            leave_ftz(fp_state)
    return STATUS_OK
