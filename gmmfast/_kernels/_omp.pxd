# OpenMP as an optional build dependency.
#
# Kernels take the OpenMP routines they need from here, never from
# ``cimport openmp`` (which includes <omp.h> unconditionally). Built with
# OpenMP (the compiler defines _OPENMP) these are the runtime's; built
# without it (``-Dopenmp=disabled``, e.g. a macOS wheel without libomp),
# Cython's ``prange``/``parallel`` blocks compile to plain serial loops and
# these report a team of one thread, so the same kernels run on one thread.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define GMMFAST_OPENMP_ENABLED 1
    #else
    #define GMMFAST_OPENMP_ENABLED 0
    static inline int gmmfast_omp_get_thread_num(void) { return 0; }
    static inline int gmmfast_omp_get_max_threads(void) { return 1; }
    #define omp_get_thread_num gmmfast_omp_get_thread_num
    #define omp_get_max_threads gmmfast_omp_get_max_threads
    #endif
    """
    bint OPENMP_ENABLED "GMMFAST_OPENMP_ENABLED"
    int omp_get_thread_num() noexcept nogil
    int omp_get_max_threads() noexcept nogil
