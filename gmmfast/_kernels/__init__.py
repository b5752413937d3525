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
# or more, so the microseconds of waking a sleeping thread do not show.
# The runtime reads the variable once, when it is loaded by the first kernel
# module below; gmmfast then removes it again, so that child processes and
# runtimes loaded later (torch's, for example) keep their own defaults. A
# value the user set is left alone, and a runtime another library loaded
# earlier keeps its own setting.
_SET_WAIT_POLICY = "OMP_WAIT_POLICY" not in os.environ
if _SET_WAIT_POLICY:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
try:
    from . import _estep, _kmeans, _missing_estep, _missing_mstep, _mstep, _openmp, _patches  # noqa: E402, F401
    from ._common import Status  # noqa: E402
finally:
    if _SET_WAIT_POLICY:
        os.environ.pop("OMP_WAIT_POLICY", None)

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
