"""Peak resident memory of one ``fit``, gmmfast against scikit-learn, each in a fresh process.

A child process loads the first N MNIST training images (float64 in [0, 1],
what a user passes), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``),
fits a K-component full-covariance mixture from given initial parameters
(``max_iter`` iterations, ``tol=0``), and reports its peak resident memory
(``VmHWM``) and the rise above the resident memory it had before ``fit``::

    python benchmarks/tools/peak_memory.py                  # N=10000, K=10, 3 iterations
    python benchmarks/tools/peak_memory.py --n 20000 --max-iter 5

Linux only (``/proc``). Also imported by ``benchmarks/bench_fit.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("sklearn", "gmmfast-f64", "gmmfast-f32")
DEFAULT_MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(variant: str, n: int, k: int, max_iter: int, mnist_dir: str) -> dict:
    import warnings

    import numpy as np

    from gmmfast import GaussianMixture
    from gmmfast.datasets import MNIST_MD5, load_idx_dir

    images, _ = load_idx_dir(mnist_dir, "train", checksums=MNIST_MD5)
    X = images.reshape(len(images), -1)[:n] / 255.0
    del images
    # Initial parameters: a deterministic spread of the data (both libraries get the same).
    rng = np.random.RandomState(0)
    means = X[rng.choice(len(X), k, replace=False)]
    precisions = np.stack([np.eye(X.shape[1]) / 0.1] * k)  # reg_covar-sized covariances
    init = dict(weights_init=np.full(k, 1.0 / k), means_init=means, precisions_init=precisions)
    if variant == "sklearn":
        from sklearn.mixture import GaussianMixture as Model

        kwargs = {}
    else:
        Model = GaussianMixture
        kwargs = {"dtype": np.float32 if variant == "gmmfast-f32" else np.float64}
    model = Model(k, reg_covar=0.1, max_iter=max_iter, tol=0.0, **init, **kwargs)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    return {
        "variant": variant,
        "n_samples": n,
        "n_features": X.shape[1],
        "n_components": k,
        "max_iter": max_iter,
        "fit_s": seconds,
        "rss_before_fit_mib": before / 1024,
        "peak_rss_mib": peak / 1024,
        "fit_rise_mib": (peak - before) / 1024,
        "lower_bound": float(model.lower_bound_),
    }


def measure(variant: str, *, n: int, k: int, max_iter: int, mnist_dir: str) -> dict:
    """Run one fit in a fresh process and return its memory record."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            variant,
            f"--n={n}",
            f"--k={k}",
            f"--max-iter={max_iter}",
            f"--mnist-dir={mnist_dir}",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument(
        "--mnist-dir", default=os.environ.get("GMMFAST_MNIST_DIR", str(DEFAULT_MNIST_DIR))
    )
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.n, args.k, args.max_iter, args.mnist_dir)))
        return
    for variant in VARIANTS:
        r = measure(variant, n=args.n, k=args.k, max_iter=args.max_iter, mnist_dir=args.mnist_dir)
        print(
            f"{variant:<12} peak RSS {r['peak_rss_mib']:8.1f} MiB, rise during fit "
            f"{r['fit_rise_mib']:8.1f} MiB (data and imports {r['rss_before_fit_mib']:.1f} MiB), "
            f"fit {r['fit_s']:.2f} s in a fresh process",
            flush=True,
        )


if __name__ == "__main__":
    main()
