"""Shared kernel helpers (see ``_common.pxd``) and what Python needs of them.

Python sees the two enums declared in ``_common.pxd``:

* ``OutputMode``: what the E-step kernels leave in ``out``
  (``WEIGHTED_LOG_PROB``, ``LOG_RESP``, ``RESP``);
* ``Status``: what kernels return (``STATUS_OK`` 0, ``STATUS_NO_MEMORY``,
  ``STATUS_BAD_SHAPE``, ``STATUS_BAD_ARGUMENT``; a positive k + 1 names a component whose matrix
  could not be factorised).

The ``_..._wrapper`` functions call one helper each, for tests.
"""
import numpy as np

from ._linalg cimport LOWER, UPPER


def _normalize_rows_wrapper(const double[:, ::1] rows, double[:, ::1] out,
                            double[::1] log_norm, OutputMode mode):
    """``normalize_row`` on every row of ``rows`` into ``out``."""
    cdef Py_ssize_t i
    if not mode_valid(mode):
        return STATUS_BAD_ARGUMENT
    if out.shape[0] < rows.shape[0] or out.shape[1] < rows.shape[1] or log_norm.shape[0] < rows.shape[0]:
        return STATUS_BAD_SHAPE
    with nogil:
        for i in range(rows.shape[0]):
            log_norm[i] = normalize_row(&rows[i, 0], &out[i, 0], rows.shape[1], mode)
    return STATUS_OK


def _merge_symmetric_slots_wrapper(const double[:, :, ::1] slots, bint lower,
                                   double[:, ::1] out):
    """``merge_symmetric_slots`` of (n_slots, n, n) slots into (n, n) ``out``."""
    cdef Py_ssize_t n = slots.shape[1]
    if slots.shape[2] != n or out.shape[0] != n or out.shape[1] != n:
        return STATUS_BAD_SHAPE
    if n == 0:
        return STATUS_OK
    merge_symmetric_slots(&slots[0, 0, 0], slots.shape[0], n, LOWER if lower else UPPER, &out[0, 0])
    return STATUS_OK
