"""What every experiment runner shares: MNIST location, masks, machine notes, result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from gmmfast.datasets import load_mnist
from gmmfast.mixture._missing import pixel_mask
from gmmfast.utils._threads import effective_n_threads

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--mnist-dir",
        default=os.environ.get("GMMFAST_MNIST_DIR", str(DEFAULT_MNIST_DIR)),
        help="directory with the four MNIST IDX files (default: $GMMFAST_MNIST_DIR, else ../shared/data/mnist)",
    )
    parser.add_argument(
        "--out", default=str(RESULTS_DIR), help="where the JSON and Markdown results go"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for masks and initialisations")
    parser.add_argument(
        "--n-threads", type=int, default=None, help="threads for gmmfast (default: all cores)"
    )
    return parser


def load_full_mnist(mnist_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """60,000 training and 10,000 test images as float32 rows in [0, 1]."""
    X, y, X_test, y_test = load_mnist(mnist_dir, kind="both")
    return (
        X.reshape(len(X), -1),
        y.astype(np.int64),
        X_test.reshape(len(X_test), -1),
        y_test.astype(np.int64),
    )


def random_missing(shape: tuple[int, int], fraction: float, seed: int) -> np.ndarray:
    """Boolean ``observed`` mask: each image its own random set of exactly
    ``round(fraction * D)`` missing pixels, from a fixed seed (the CLI's masks)."""
    return pixel_mask(shape, "random", fraction, seed)


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "gmmfast_threads": effective_n_threads(None),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def write_results(out_dir: str, name: str, payload: dict[str, Any], markdown: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(f"wrote {out / (name + '.json')} and {out / (name + '.md')}")


class Timer:
    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
