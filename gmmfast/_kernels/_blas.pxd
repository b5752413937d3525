# Fused-type wrappers over scipy.linalg.cython_blas, row-major friendly.
#
# Kernels store a chunk of samples as a C-ordered (n_rows, n_features)
# block. To BLAS (column-major) that block is an (n_features, n_rows)
# matrix whose columns are samples, which is the orientation the
# wrappers below are written for.
from cython cimport floating
from scipy.linalg.cython_blas cimport dtrmm, strmm, dsyrk, ssyrk


cdef inline void trmm_lower_left(int n_features, int n_rows,
                                 const floating *factor,
                                 floating *block) noexcept nogil:
    """block[i, :] <- block[i, :] @ U for an upper-triangular C-ordered U.

    Column-major, the C-ordered U is the lower-triangular U^T, and each
    sample is a column b, so the product is b <- U^T b.
    """
    cdef char side = b'L'
    cdef char uplo = b'L'
    cdef char trans = b'N'
    cdef char diag = b'N'
    cdef floating one = 1.0
    if floating is double:
        dtrmm(&side, &uplo, &trans, &diag, &n_features, &n_rows, &one,
              <double*> factor, &n_features, block, &n_features)
    else:
        strmm(&side, &uplo, &trans, &diag, &n_features, &n_rows, &one,
              <float*> factor, &n_features, block, &n_features)


cdef inline void syrk_rows(int n_features, int n_rows, const floating *block,
                           floating beta, floating *scatter) noexcept nogil:
    """scatter <- beta * scatter + sum_i block[i, :]^T block[i, :].

    Only one triangle is written: in the C-ordered view of `scatter`, the
    lower one (scatter[j, i] for i <= j).
    """
    cdef char uplo = b'U'
    cdef char trans = b'N'
    cdef floating one = 1.0
    if floating is double:
        dsyrk(&uplo, &trans, &n_features, &n_rows, &one, <double*> block,
              &n_features, &beta, scatter, &n_features)
    else:
        ssyrk(&uplo, &trans, &n_features, &n_rows, &one, <float*> block,
              &n_features, &beta, scatter, &n_features)
