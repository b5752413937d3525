"""Build ``gmmfast/data/mnist_sample.npz``, the MNIST subset shipped in the package.

The sample is stratified: a fixed number of images per digit, drawn without
replacement with a fixed seed, then shuffled so that slicing it does not
give a single class.  Images and labels are stored as uint8 with
``np.savez_compressed``.

Usage::

    python tools/make_mnist_sample.py [MNIST_DIR] [--output PATH]

``MNIST_DIR`` defaults to ``../shared/data/mnist`` relative to the repository
root and must hold the four original MNIST IDX files (their MD5 is checked).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"
DEFAULT_OUTPUT = REPO_ROOT / "gmmfast" / "data" / "mnist_sample.npz"
SEED = 20240601
MAX_BYTES = 2_000_000


def import_datasets() -> ModuleType:
    """Import ``gmmfast/datasets.py`` by path.

    Importing ``gmmfast`` itself would need the compiled extensions, which a
    source checkout does not have; the loader is pure Python.
    """
    path = REPO_ROOT / "gmmfast" / "datasets.py"
    spec = importlib.util.spec_from_file_location("gmmfast_datasets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stratified_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Pick `per_class` random indices of each label, in shuffled order."""
    picks = [
        rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
        for c in np.unique(labels)
    ]
    return rng.permutation(np.concatenate(picks))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mnist_dir", nargs="?", type=Path, default=DEFAULT_MNIST_DIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=SEED)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the sample and return a process exit status."""
    args = parse_args(argv)
    datasets = import_datasets()
    X_train, y_train, X_test, y_test = datasets.load_mnist(
        args.mnist_dir, kind="both", as_float=False
    )
    rng = np.random.default_rng(args.seed)
    train = stratified_indices(y_train, args.train_per_class, rng)
    test = stratified_indices(y_test, args.test_per_class, rng)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        X_train=X_train[train],
        y_train=y_train[train].astype(np.uint8),
        X_test=X_test[test],
        y_test=y_test[test].astype(np.uint8),
    )
    size = args.output.stat().st_size
    print(f"wrote {args.output}: {len(train)} train + {len(test)} test images, {size:,} bytes")
    if size > MAX_BYTES:
        message = f"error: sample exceeds {MAX_BYTES:,} bytes; lower --train-per-class"
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
