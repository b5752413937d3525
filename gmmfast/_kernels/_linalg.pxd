# The one typed BLAS/LAPACK layer of the kernels.
#
# Every kernel calls BLAS and LAPACK through these wrappers and nothing
# else: they take named flags instead of character codes, are fused over
# float32/float64 (``floating``), and call SciPy's ``cython_blas`` /
# ``cython_lapack`` (so nothing links a BLAS of its own and the process has
# a single BLAS, which threadpoolctl limits around the kernels).
#
# Matrices are column-major, as in BLAS. A C-ordered (n_rows, n_features)
# block of samples is, to BLAS, an (n_features, n_rows) matrix whose
# columns are the samples; a C-ordered symmetric matrix is its own
# column-major form, and the C-order lower triangle of a square matrix is
# its column-major upper triangle.
#
# LAPACK routines return LAPACK's ``info`` (0: success; > 0: the leading
# minor of that order is not positive definite, or a zero pivot).
from cython cimport floating
from scipy.linalg.cython_blas cimport (
    dgemm, sgemm, dsymm, ssymm, dsyrk, ssyrk, dtrmm, strmm, dtrsm, strsm,
)
from scipy.linalg.cython_lapack cimport (
    dpotrf, spotrf, dpotri, spotri, dpotrs, spotrs, dtrtri, strtri,
)


# The flags' values are the character codes BLAS reads.
cdef enum Uplo:
    LOWER = 76      # 'L': the lower triangle (column-major) is referenced
    UPPER = 85      # 'U'

cdef enum Trans:
    NO_TRANS = 78   # 'N': op(A) = A
    TRANS = 84      # 'T': op(A) = A^T

cdef enum Side:
    LEFT = 76       # 'L': op(A) B
    RIGHT = 82      # 'R': B op(A)

cdef enum Diag:
    NON_UNIT = 78   # 'N': the diagonal of the triangular matrix is read
    UNIT = 85       # 'U': it is taken as ones


cdef inline void gemm(Trans transa, Trans transb, int m, int n, int k,
                      floating alpha, const floating *a, int lda,
                      const floating *b, int ldb, floating beta,
                      floating *c, int ldc) noexcept nogil:
    """c <- alpha op(a) op(b) + beta c, op(a) (m, k), op(b) (k, n)."""
    cdef char ta = <char> transa
    cdef char tb = <char> transb
    if floating is double:
        dgemm(&ta, &tb, &m, &n, &k, &alpha, <double*> a, &lda,
              <double*> b, &ldb, &beta, c, &ldc)
    else:
        sgemm(&ta, &tb, &m, &n, &k, &alpha, <float*> a, &lda,
              <float*> b, &ldb, &beta, c, &ldc)


cdef inline void symm(Side side, Uplo uplo, int m, int n, floating alpha,
                      const floating *a, int lda, const floating *b, int ldb,
                      floating beta, floating *c, int ldc) noexcept nogil:
    """c <- alpha a b + beta c (LEFT) or alpha b a + beta c (RIGHT), a
    symmetric, only its ``uplo`` triangle read; c is (m, n)."""
    cdef char sd = <char> side
    cdef char ul = <char> uplo
    if floating is double:
        dsymm(&sd, &ul, &m, &n, &alpha, <double*> a, &lda, <double*> b, &ldb,
              &beta, c, &ldc)
    else:
        ssymm(&sd, &ul, &m, &n, &alpha, <float*> a, &lda, <float*> b, &ldb,
              &beta, c, &ldc)


cdef inline void syrk(Uplo uplo, Trans trans, int n, int k, floating alpha,
                      const floating *a, int lda, floating beta,
                      floating *c, int ldc) noexcept nogil:
    """c <- alpha a a^T + beta c (NO_TRANS, a (n, k)) or alpha a^T a + beta c
    (TRANS, a (k, n)); only the ``uplo`` triangle of c is written."""
    cdef char ul = <char> uplo
    cdef char tr = <char> trans
    if floating is double:
        dsyrk(&ul, &tr, &n, &k, &alpha, <double*> a, &lda, &beta, c, &ldc)
    else:
        ssyrk(&ul, &tr, &n, &k, &alpha, <float*> a, &lda, &beta, c, &ldc)


cdef inline void trmm(Side side, Uplo uplo, Trans transa, Diag diag,
                      int m, int n, floating alpha, const floating *a, int lda,
                      floating *b, int ldb) noexcept nogil:
    """b <- alpha op(a) b (LEFT) or alpha b op(a) (RIGHT), a triangular;
    b is (m, n)."""
    cdef char sd = <char> side
    cdef char ul = <char> uplo
    cdef char ta = <char> transa
    cdef char dg = <char> diag
    if floating is double:
        dtrmm(&sd, &ul, &ta, &dg, &m, &n, &alpha, <double*> a, &lda, b, &ldb)
    else:
        strmm(&sd, &ul, &ta, &dg, &m, &n, &alpha, <float*> a, &lda, b, &ldb)


cdef inline void trsm(Side side, Uplo uplo, Trans transa, Diag diag,
                      int m, int n, floating alpha, const floating *a, int lda,
                      floating *b, int ldb) noexcept nogil:
    """b <- alpha op(a)^-1 b (LEFT) or alpha b op(a)^-1 (RIGHT), a
    triangular; b is (m, n)."""
    cdef char sd = <char> side
    cdef char ul = <char> uplo
    cdef char ta = <char> transa
    cdef char dg = <char> diag
    if floating is double:
        dtrsm(&sd, &ul, &ta, &dg, &m, &n, &alpha, <double*> a, &lda, b, &ldb)
    else:
        strsm(&sd, &ul, &ta, &dg, &m, &n, &alpha, <float*> a, &lda, b, &ldb)


cdef inline int potrf(Uplo uplo, int n, floating *a, int lda) noexcept nogil:
    """Cholesky factor of the symmetric a, in place in its ``uplo`` triangle
    (LOWER: a = L L^T). Returns LAPACK's info."""
    cdef char ul = <char> uplo
    cdef int info = 0
    if floating is double:
        dpotrf(&ul, &n, a, &lda, &info)
    else:
        spotrf(&ul, &n, a, &lda, &info)
    return info


cdef inline int potri(Uplo uplo, int n, floating *a, int lda) noexcept nogil:
    """Inverse of a symmetric positive-definite matrix from its ``potrf``
    factor, in place in the same triangle. Returns LAPACK's info."""
    cdef char ul = <char> uplo
    cdef int info = 0
    if floating is double:
        dpotri(&ul, &n, a, &lda, &info)
    else:
        spotri(&ul, &n, a, &lda, &info)
    return info


cdef inline int potrs(Uplo uplo, int n, int nrhs, const floating *a, int lda,
                      floating *b, int ldb) noexcept nogil:
    """b <- A^-1 b from the ``potrf`` factor of A in a. Returns LAPACK's info."""
    cdef char ul = <char> uplo
    cdef int info = 0
    if floating is double:
        dpotrs(&ul, &n, &nrhs, <double*> a, &lda, b, &ldb, &info)
    else:
        spotrs(&ul, &n, &nrhs, <float*> a, &lda, b, &ldb, &info)
    return info


cdef inline int trtri(Uplo uplo, Diag diag, int n, floating *a,
                      int lda) noexcept nogil:
    """Inverse of a triangular matrix, in place. Returns LAPACK's info."""
    cdef char ul = <char> uplo
    cdef char dg = <char> diag
    cdef int info = 0
    if floating is double:
        dtrtri(&ul, &dg, &n, a, &lda, &info)
    else:
        strtri(&ul, &dg, &n, a, &lda, &info)
    return info
