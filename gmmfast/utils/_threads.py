"""The thread policy: how many OpenMP threads a kernel gets, and BLAS kept to one
thread while kernels run.

* ``n_threads=None`` means the CPUs this process may actually use: its CPU
  affinity mask and its cgroup CPU quota (a container limited to 2 CPUs on a
  64-core host gets 2), further capped by OpenMP's own limit
  (``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits``). A negative value
  counts back from the usable CPUs (-1: all of them, -2: all but one). The
  count is resolved once per public call (:func:`effective_n_threads`).
* Kernels call BLAS from inside OpenMP regions, so BLAS must run on one
  thread there. :func:`single_threaded_blas` sets that limit once around a
  whole public call (a ``fit``, a ``predict``): nested uses only count, and
  concurrent calls from several Python threads share one limit, set by the
  first to enter and lifted by the last to leave, under a lock.
* A build without OpenMP (``-Dopenmp=disabled``) runs the same kernels on one
  thread; the first call that asks for threads says so once.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import os
import threading
import warnings
from typing import Any, Callable, Iterator, TypeVar

from threadpoolctl import ThreadpoolController

from .._kernels import _openmp

__all__ = [
    "chunk_size_for",
    "effective_n_threads",
    "limits_blas",
    "single_threaded_blas",
    "threads_for_work",
    "usable_cpus",
]

# A thread's share of one kernel call must outweigh starting and joining a
# parallel region: microseconds on an idle machine, but up to a scheduler
# time slice (milliseconds) when other processes hold the cores, since the
# region ends only when its slowest thread gets a CPU. About 1 ms of work.
MIN_FLOPS_PER_THREAD = 4e6

_F = TypeVar("_F", bound=Callable[..., Any])


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by the cgroup CPU quota, None if unlimited or unknown.

    cgroup v2: ``cpu.max`` of this process's own cgroup (its path from
    ``/proc/self/cgroup``), then of the mount's root (inside a container the
    root is the container's cgroup); cgroup v1: ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``.
    """
    candidates = []
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    own = line.strip()[3:].lstrip("/")
                    if own:
                        candidates.append(os.path.join("/sys/fs/cgroup", own, "cpu.max"))
    except OSError:
        pass
    candidates.append("/sys/fs/cgroup/cpu.max")
    for path in candidates:
        try:
            with open(path) as f:
                quota, period = f.read().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        except (OSError, ValueError):
            continue
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by its cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


_warned_serial = False


def effective_n_threads(n_threads: Any) -> int:
    """The number of OpenMP threads a kernel call will use.

    Parameters
    ----------
    n_threads : int or None
        None: the usable CPUs (see the module docstring), no more than an
        OpenMP region would get now; a positive int: that many (at most the
        usable CPUs: more threads than CPUs only wait for each other, so a
        larger value is capped with a warning); a negative int: counted back
        from the usable CPUs (-1 all of them), at least 1.

    Raises
    ------
    ValueError
        For 0, a bool, or anything that is not an integer.
    """
    global _warned_serial
    if n_threads is not None and (
        isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral)
    ):
        raise ValueError(f"n_threads must be an integer or None; got {n_threads!r}.")
    cpus = usable_cpus()
    if n_threads is None:
        n = min(cpus, max(1, int(_openmp.max_threads())))
    else:
        n_threads = int(n_threads)
        if n_threads == 0:
            raise ValueError("n_threads must be a non-zero integer or None; got 0.")
        if n_threads < 0:
            n = max(1, cpus + 1 + n_threads)
        elif n_threads > cpus:
            warnings.warn(
                f"n_threads={n_threads} is more than the {cpus} CPUs this process may use; "
                f"using {cpus}.",
                RuntimeWarning,
                stacklevel=3,
            )
            n = cpus
        else:
            n = n_threads
    if not _openmp.openmp_enabled():
        if n > 1 and not _warned_serial:
            _warned_serial = True
            warnings.warn(
                "gmmfast was built without OpenMP: its kernels run on one thread.",
                RuntimeWarning,
                stacklevel=3,
            )
        return 1
    return n


_blas_lock = threading.Lock()
_blas_depth = 0
_blas_limiter: Any = None
_controller: ThreadpoolController | None = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the body with BLAS limited to one thread (see the module docstring).

    Re-entrant and thread-safe: the limit is set when the first caller
    enters and the original limits restored when the last one leaves. The
    count is taken before the limit is set and given back in ``finally``,
    so a Ctrl-C while entering or leaving cannot leave the count wrong (only
    the single store of the new limiter is unprotected, as any Python code is).
    """
    global _blas_depth, _blas_limiter, _controller
    entered = False
    try:
        with _blas_lock:
            _blas_depth += 1
            entered = True
            if _blas_depth == 1:
                if _controller is None:
                    _controller = ThreadpoolController()
                _blas_limiter = _controller.limit(limits=1, user_api="blas")
        yield
    finally:
        if entered:
            with _blas_lock:
                _blas_depth -= 1
                if _blas_depth == 0 and _blas_limiter is not None:
                    limiter, _blas_limiter = _blas_limiter, None
                    limiter.restore_original_limits()


def limits_blas(method: _F) -> _F:
    """Decorator for public methods: BLAS on one thread for the whole call."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with single_threaded_blas():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def threads_for_work(n_threads: int, flops: float) -> int:
    """Threads for one kernel call of about ``flops`` floating-point operations:
    at most ``n_threads`` (the resolved policy), and no more than the work can
    keep busy; 1 for small problems, which never pay for threads they cannot use."""
    return int(max(1, min(int(n_threads), flops // MIN_FLOPS_PER_THREAD)))


def chunk_size_for(n_samples: int, n_threads: int) -> int:
    """Rows per kernel chunk.

    Large enough for BLAS-3 to run near its peak (about 1024 rows for
    image-sized feature counts), small enough that every thread gets work.
    """
    per_thread = -(-n_samples // max(n_threads, 1))
    return int(min(1024, max(64, per_thread)))
