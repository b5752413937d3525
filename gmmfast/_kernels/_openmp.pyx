"""OpenMP helpers: whether the kernels were built with OpenMP, and how many
threads they may use."""
from ._omp cimport OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    """True when the kernels were built with OpenMP; without it they run on
    one thread (``prange`` loops are plain loops)."""
    return bool(OPENMP_ENABLED)


def max_threads():
    """Threads an OpenMP region would get now (1 without OpenMP).

    This follows ``OMP_NUM_THREADS`` and threadpoolctl's OpenMP limits,
    since threadpoolctl sets them through the same runtime.
    """
    return omp_get_max_threads()
