"""``gmmfast bench``: run the pytest-benchmark suite against scikit-learn and scikit-image."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._common import (
    UsageError,
    add_common_options,
    positive_int,
    refuse_given,
)


def _benchmark_suite(given: str | None) -> Path | None:
    """The pytest-benchmark suite: --benchmarks DIR, else benchmarks/ beside the package (a source checkout)."""
    if given:
        suite = Path(given)
        if not (suite / "conftest.py").is_file():
            raise UsageError(f"--benchmarks {given}: not a benchmark directory (no conftest.py)")
        return suite
    suite = Path(__file__).resolve().parents[2] / "benchmarks"
    return suite if (suite / "conftest.py").is_file() and any(suite.glob("bench_*.py")) else None


def check(args: argparse.Namespace) -> None:
    """Options of the quick comparison only with --quick, pytest's only without it."""
    if args.quick:
        if [a for a in args.pytest_args if a != "--"]:
            raise UsageError(
                f"arguments after -- ({' '.join(args.pytest_args)}) go to pytest, which --quick does not run"
            )
    else:
        refuse_given(
            args,
            ("n_components", "repeats", "n_threads"),
            "applies to --quick; the benchmark suite sets its own",
        )


def run(args: argparse.Namespace) -> int:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise UsageError(
            "gmmfast bench compares with scikit-learn, which is not installed: pip install 'gmmfast[bench]'"
        ) from None
    # The options first (the suite's scripts would print a traceback for a bad one).
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise UsageError(f"--data-dir {args.data_dir}: not a directory of MNIST IDX files")
    suite = _benchmark_suite(args.benchmarks)
    if suite is None:
        raise UsageError(
            "the benchmarks live in gmmfast's source repository (benchmarks/): run gmmfast bench from a "
            "source checkout, or give --benchmarks DIR"
        )
    if args.quick:
        command = [
            sys.executable,
            str((suite / "quick_compare.py").resolve()),
            "--n-components",
            str(args.n_components),
            "--repeats",
            str(args.repeats),
        ]
        if args.n_threads is not None:
            command += ["--n-threads", str(args.n_threads)]
        if args.data_dir:
            command += ["--data-dir", str(Path(args.data_dir).resolve())]
    else:
        missing = [
            name
            for name in ("pytest", "pytest_benchmark")
            if importlib.util.find_spec(name) is None
        ]
        if missing:
            raise UsageError(
                f"the benchmark suite needs {' and '.join(missing)}: pip install 'gmmfast[bench]' "
                "(or gmmfast bench --quick)"
            )
        command = [sys.executable, "-m", "pytest", str(suite.resolve()), "-p", "no:cacheprovider"]
        if args.data_dir:
            command += ["--mnist-dir", str(Path(args.data_dir).resolve())]
    if args.bench_n:
        command += ["--bench-n", str(args.bench_n)]
    if not args.quick:
        command += [a for a in args.pytest_args if a != "--"]
    what = "the quick comparison" if args.quick else "the benchmark suite"
    print(f"running {what}: " + " ".join(command[1:]), flush=True)
    # From inside the suite: `python -m` puts the working directory first on
    # sys.path, and a source root there would shadow the installed package.
    return subprocess.call(command, cwd=suite)


def add_parser(sub: Any) -> None:
    """Register the command on the ``gmmfast`` subparsers ``sub``."""
    bench = sub.add_parser(
        "bench",
        help="time gmmfast against scikit-learn (and scikit-image) on this machine",
        description="Runs the pytest-benchmark suite (benchmarks/ of a source checkout, or --benchmarks DIR) and "
        "prints its speed-ratio table; with --quick, the suite's quick_compare.py instead (no pytest): "
        "score_samples and one EM iteration against scikit-learn's GaussianMixture, and patch extraction and "
        "denoising against scikit-image when it is installed. Needs scikit-learn (pip install 'gmmfast[bench]') "
        "and a source checkout (the benchmarks are not installed with the package).",
        epilog="Arguments after -- go to pytest, e.g. gmmfast bench --bench-n 2000 -- -k score_samples",
    )
    bench.add_argument(
        "--benchmarks",
        metavar="DIR",
        help="the benchmark suite's directory (default: benchmarks/ beside the package)",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="run the suite's quick comparison script instead of pytest",
    )
    bench.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory of MNIST IDX files (default: the suite's default, or the shipped sample)",
    )
    bench.add_argument(
        "--bench-n",
        type=positive_int,
        default=None,
        metavar="N",
        help="training images timed (default: suite 10000, quick 5000)",
    )
    bench.add_argument(
        "--n-components",
        type=positive_int,
        default=10,
        help="K of the quick comparison (default 10)",
    )
    bench.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        help="timed runs per case in the quick comparison (default 3)",
    )
    bench.add_argument("pytest_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    add_common_options(bench)
    bench.set_defaults(func=run, check=check)
