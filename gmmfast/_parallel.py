"""Thread control: OpenMP threads for the kernels, one BLAS thread inside them."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from threadpoolctl import ThreadpoolController

from ._kernels import _openmp

_controller: ThreadpoolController | None = None


def effective_n_threads(n_threads: int | None) -> int:
    """Number of OpenMP threads the kernels will use.

    ``None`` means whatever an OpenMP region would get now, which follows
    ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits``. A negative
    value counts back from the number of CPUs (-1: all of them).
    """
    if n_threads is None:
        return max(1, int(_openmp.max_threads()))
    n_threads = int(n_threads)
    if n_threads == 0:
        raise ValueError("n_threads must be a non-zero integer or None; got 0.")
    if n_threads < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_threads)
    return n_threads


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the body with BLAS limited to one thread.

    Kernels call BLAS from inside OpenMP regions; a multi-threaded BLAS
    there would start threads inside threads.
    """
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield


def chunk_size_for(n_samples: int, n_threads: int) -> int:
    """Rows per kernel chunk.

    Large enough for BLAS-3 to run near its peak (about 1024 rows for
    image-sized feature counts), small enough that every thread gets work.
    """
    per_thread = -(-n_samples // max(n_threads, 1))
    return int(min(1024, max(64, per_thread)))
