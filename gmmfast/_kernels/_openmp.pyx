"""OpenMP helpers: how many threads the kernels may use."""
cimport openmp


def max_threads():
    """Threads an OpenMP region would get now.

    This follows ``OMP_NUM_THREADS`` and threadpoolctl's OpenMP limits,
    since threadpoolctl sets them through the same runtime.
    """
    return openmp.omp_get_max_threads()


def openmp_enabled():
    """Whether the kernels were compiled with OpenMP."""
    return True
