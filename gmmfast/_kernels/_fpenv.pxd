# Flush-to-zero / denormals-are-zero for the duration of a kernel.
#
# Responsibilities such as 1e-80 and the tiny cross-covariances they
# produce become subnormal numbers once scaled or cast to float32, and
# arithmetic on subnormals is tens of times slower on common CPUs; their
# contribution is below 1e-38 relative, so kernels treat them as zero.
# The mode is per thread: each thread of a parallel region sets it on
# entry and restores its previous state on exit, so the caller's (and
# Python's) floating-point environment is unchanged afterwards.
cdef extern from *:
    """
    #if defined(__x86_64__) || defined(_M_X64) || defined(__SSE2__)
    #include <xmmintrin.h>
    static inline unsigned long long gmmfast_enter_ftz(void) {
        unsigned int old = _mm_getcsr();
        _mm_setcsr(old | 0x8040u);  /* FTZ (bit 15) | DAZ (bit 6) */
        return old;
    }
    static inline void gmmfast_leave_ftz(unsigned long long old) {
        _mm_setcsr((unsigned int) old);
    }
    #elif defined(__aarch64__)
    static inline unsigned long long gmmfast_enter_ftz(void) {
        unsigned long long old, fz;
        __asm__ __volatile__("mrs %0, fpcr" : "=r"(old));
        fz = old | (1ULL << 24);  /* FZ */
        __asm__ __volatile__("msr fpcr, %0" : : "r"(fz));
        return old;
    }
    static inline void gmmfast_leave_ftz(unsigned long long old) {
        __asm__ __volatile__("msr fpcr, %0" : : "r"(old));
    }
    #else
    static inline unsigned long long gmmfast_enter_ftz(void) { return 0; }
    static inline void gmmfast_leave_ftz(unsigned long long old) { (void) old; }
    #endif
    """
    unsigned long long enter_ftz "gmmfast_enter_ftz"() noexcept nogil
    void leave_ftz "gmmfast_leave_ftz"(unsigned long long old) noexcept nogil
