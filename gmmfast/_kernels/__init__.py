"""Compiled kernels (Cython, nogil, OpenMP, BLAS from SciPy).

Nothing here knows about estimators: every function takes validated,
C-contiguous arrays and writes into caller-provided outputs.
"""
