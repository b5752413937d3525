"""Compiled kernels (Cython, nogil, OpenMP, BLAS from SciPy).

Nothing here knows about estimators: every function takes validated,
C-contiguous arrays and writes into caller-provided outputs. Kernels raise
nothing from their compiled loops: they return a status (see
``_common.Status``), which :func:`check_status` turns into an exception.
"""

import os

# Idle OpenMP threads sleep instead of spinning (libgomp spins for a while by
# default): a spinning thread takes the CPU that another process, or this
# process's own next region, needs, and a kernel call here is milliseconds
# or more, so the microseconds of waking a sleeping thread do not show. Set
# before the first kernel module loads the OpenMP runtime; a value the user
# set wins, and a runtime already loaded by another library keeps its own.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._common import Status  # noqa: E402

_NO_MEMORY = int(Status.STATUS_NO_MEMORY)
_BAD_SHAPE = int(Status.STATUS_BAD_SHAPE)
_BAD_ARGUMENT = int(Status.STATUS_BAD_ARGUMENT)


def check_status(status, kernel):
    """Raise for a kernel's failure status; return a factorisation failure.

    ``STATUS_NO_MEMORY`` raises :class:`MemoryError`, ``STATUS_BAD_SHAPE``
    and ``STATUS_BAD_ARGUMENT`` :class:`ValueError`, all naming ``kernel``.
    A positive status (k + 1: a matrix of component k could not be
    factorised) is returned for the caller to raise with its own context,
    like 0 (success).
    """
    if status == 0:  # the common case first: some kernels take microseconds
        return 0
    status = int(status)
    if status == _NO_MEMORY:
        raise MemoryError(f"{kernel}: could not allocate its work space")
    if status == _BAD_SHAPE:
        raise ValueError(
            f"{kernel}: an argument has the wrong shape (e.g. fewer per-thread "
            "slots than n_threads, or a chunk size below 1)"
        )
    if status == _BAD_ARGUMENT:
        raise ValueError(f"{kernel}: an argument is out of range (e.g. an unknown output mode)")
    if status < 0:
        raise RuntimeError(f"{kernel}: failed with status {status}")
    return status
