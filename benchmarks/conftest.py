"""Shared fixtures and reporting for the gmmfast vs scikit-learn benchmarks.

Provides the command-line options, the MNIST data, the machine's GEMM
rate (the yardstick for achieved GFLOP/s) and, at the end of the session,
a summary table with the speed ratios against the project's targets.
Case-specific knowledge (flop counts, targets) lives in ``bench_mixture.py``;
this file only prints what the benchmarks recorded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from gmmfast.datasets import MNIST_MD5, load_idx_dir, load_mnist_sample
from gmmfast.utils._threads import effective_n_threads

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"
GEMM_SHAPE = (4096, 784, 784)  # (m, k, n): an MNIST-sized block times a DxD factor
GEMM_REPEATS = 10


@dataclass
class Data:
    """Benchmark samples, the same pixels in both compute dtypes."""

    X: dict[type, np.ndarray]  # {np.float64: ..., np.float32: ...}, C-contiguous
    y: np.ndarray  # digit labels of the same images
    description: str
    used_sample: bool


@dataclass
class Report:
    """What the session measured, read by :func:`pytest_terminal_summary`."""

    data: Data | None = None
    gemm: dict[type, tuple[float, float]] = field(
        default_factory=dict
    )  # (best, median) GFLOP/s per dtype
    entries: dict[tuple[str, str], dict] = field(default_factory=dict)  # (case, variant) -> record
    notes: list[str] = field(default_factory=list)  # footnotes printed under the table
    sections: dict[str, list[str]] = field(
        default_factory=dict
    )  # other comparisons: title -> lines


_REPORT = pytest.StashKey[Report]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gmmfast benchmarks")
    group.addoption(
        "--mnist-dir",
        default=None,
        help="Directory with the MNIST IDX files (default: $GMMFAST_MNIST_DIR, "
        f"else {DEFAULT_MNIST_DIR}). Falls back to the embedded 5,000-image sample.",
    )
    group.addoption(
        "--bench-n", type=int, default=10_000, help="Number of training images (default 10000)."
    )
    group.addoption(
        "--masked-n",
        type=int,
        default=100,
        help="Images with 50%% missing pixels in the masked-classification comparison (default 100).",
    )
    group.addoption(
        "--missing-em-n",
        type=int,
        default=2000,
        help="Images in gmmfast's missing-data EM iteration (default 2000).",
    )
    group.addoption(
        "--missing-em-loop-n",
        type=int,
        default=10,
        help="Images in the NumPy-loop missing-data EM iteration (default 10; ~1-4 s each).",
    )
    group.addoption(
        "--stream-batch",
        type=int,
        default=1000,
        help="Batch size of partial_fit in the stepwise-EM comparison (default 1000).",
    )
    group.addoption(
        "--stream-d50-n",
        type=int,
        default=100_000,
        help="Synthetic 50-feature samples of the stepwise-EM comparison (default 100000).",
    )
    group.addoption(
        "--bench-fit-iter",
        type=int,
        default=3,
        help="max_iter of the end-to-end fit benchmark (default 3).",
    )
    group.addoption(
        "--classifier-n",
        type=int,
        default=60_000,
        help="MNIST training images for bench_fit.py's classifier case (default all 60000).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORT] = Report()


def _load_data(config: pytest.Config) -> Data:
    """Load (once per session) the first ``--bench-n`` MNIST training images in [0, 1]."""
    report = config.stash[_REPORT]
    if report.data is not None:
        return report.data
    mnist_dir = Path(
        config.getoption("--mnist-dir") or os.environ.get("GMMFAST_MNIST_DIR") or DEFAULT_MNIST_DIR
    )
    try:
        # Checksummed, so a different dataset under MNIST's file names is rejected.
        images, labels = load_idx_dir(mnist_dir, "train", checksums=MNIST_MD5)
        source, used_sample = f"MNIST train from {mnist_dir}", False
    except FileNotFoundError:
        images, labels = load_mnist_sample(as_float=False)[:2]
        source = (
            f"EMBEDDED SAMPLE (gmmfast.datasets.load_mnist_sample, {len(images):,} images): "
            f"MNIST not found in {mnist_dir}"
        )
        used_sample = True
    n = min(config.getoption("--bench-n"), len(images))
    X64 = images.reshape(len(images), -1)[:n] / 255.0
    report.data = Data(
        X={np.float64: X64, np.float32: X64.astype(np.float32)},
        y=np.asarray(labels[:n]),
        description=f"{source}; first N={n:,} images, D={X64.shape[1]}",
        used_sample=used_sample,
    )
    return report.data


def pytest_report_header(config: pytest.Config) -> list[str]:
    data = _load_data(config)
    header = [f"gmmfast benchmarks data: {data.description}"]
    if data.used_sample:
        header.append("WARNING: timings are on the embedded sample, not the requested MNIST data")
    return header


def _gemm_gflops(dtype: type) -> tuple[float, float]:
    """Best and median GFLOP/s of numpy matmul on a ``GEMM_SHAPE`` product (after one warm-up)."""
    m, k, n = GEMM_SHAPE
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    times = []
    for _ in range(GEMM_REPEATS + 1):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    flops = 2.0 * m * k * n
    return flops / min(times[1:]) / 1e9, flops / np.median(times[1:]) / 1e9


@pytest.fixture(scope="session")
def data(pytestconfig: pytest.Config) -> Data:
    """The benchmark samples (see :func:`_load_data`)."""
    return _load_data(pytestconfig)


@pytest.fixture(scope="session")
def report(pytestconfig: pytest.Config, data: Data) -> Report:
    """The session's :class:`Report`, with the GEMM rates measured on first use."""
    report = pytestconfig.stash[_REPORT]
    if not report.gemm:
        report.gemm = {dtype: _gemm_gflops(dtype) for dtype in (np.float64, np.float32)}
    return report


def _threads_line() -> str:
    """Thread counts of gmmfast and of every loaded BLAS/OpenMP runtime (oversubscription shows here)."""
    pools = ", ".join(
        f"{Path(info['filepath']).name} {info['num_threads']}" for info in threadpool_info()
    )
    return f"threads: gmmfast n_threads {effective_n_threads(None)}; runtimes: {pools}"


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    report = config.stash[_REPORT]
    write = terminalreporter.write_line
    for title, lines in report.sections.items():
        terminalreporter.write_sep("=", title)
        for line in lines:
            write(line)
    if not report.entries:
        return
    terminalreporter.write_sep("=", "gmmfast vs scikit-learn (medians; no timing is asserted)")
    write(f"data: {report.data.description}")
    write(_threads_line())
    m, k, n = GEMM_SHAPE
    (dbest, dmed), (sbest, smed) = report.gemm[np.float64], report.gemm[np.float32]
    write(
        f"machine GEMM, numpy matmul {m}x{k} @ {k}x{n}, best (median) of {GEMM_REPEATS}: "
        f"dgemm {dbest:.1f} ({dmed:.1f}) GFLOP/s, sgemm {sbest:.1f} ({smed:.1f}) GFLOP/s"
    )
    columns = (
        "case",
        "variant",
        "median s",
        "(min s)",
        "GFLOP/s",
        "% GEMM",
        "flops",
        "speedup",
        "target",
        "",
    )
    fmt = "{:<14} {:<12} {:>9} {:>9} {:>8} {:>7} {:>5} {:>16} {:>7} {}"
    write(fmt.format(*columns))
    for (case, variant), e in report.entries.items():
        speedup, target = e.get("speedup_vs_sklearn"), e.get("target_speedup")
        write(
            fmt.format(
                case,
                variant,
                f"{e['median_s']:.4f}",
                f"({e['min_s']:.4f})",
                f"{e['gflops']:.1f}",
                f"{100 * e['gflops'] / e['gemm_gflops']:.0f}%",
                e["flop_count"],
                "" if speedup is None else f"{speedup:.2f}x ({e['speedup_vs_sklearn_min']:.2f}x)",
                "" if target is None else f">={target}x",
                ""
                if target is None or speedup is None
                else ("PASS" if speedup >= target else "BELOW"),
            )
        )
    for line in report.notes:
        write(line)
    if report.data.used_sample:
        write("WARNING: MNIST was not found; these timings are on the EMBEDDED 5,000-image sample.")
