"""Small clustering problems: gmmfast with its default threads, with one thread, and scikit-learn.

The fits alternate (default, one thread, ...) so both see the same machine;
``--load N`` starts N busy-looping processes for the duration (the "another
CPU-bound process on both cores" case) and stops them at the end. Prints the
median time of each and the ratio default / one thread (at most about 1
means threads are never a cost)::

    python benchmarks/tools/small_problems.py            # idle machine
    python benchmarks/tools/small_problems.py --load 2   # both cores busy
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings

import numpy as np

from gmmfast import GaussianMixture

PROBLEMS = ((100, 5, 3), (1000, 2, 3), (10000, 2, 5), (100000, 32, 16))


def blobs(n: int, d: int, k: int, rng: np.random.RandomState) -> np.ndarray:
    centres = np.repeat(rng.randn(k, d) * 4, -(-n // k), axis=0)[:n]
    return rng.randn(n, d) + centres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--load", type=int, default=0, help="busy-looping processes to run alongside"
    )
    parser.add_argument(
        "--fits", type=int, default=15, help="fits of each kind per problem (default 15)"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    try:
        from sklearn.mixture import GaussianMixture as SkGaussianMixture
    except ImportError:
        SkGaussianMixture = None
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        rng = np.random.RandomState(0)
        for n, d, k in PROBLEMS:
            X = blobs(n, d, k, rng)
            fits = args.fits if n <= 10000 else 1
            times = {"default": [], "1 thread": [], "scikit-learn": []}
            bounds = {}
            for i in range(fits):
                order = ("default", "1 thread") if i % 2 == 0 else ("1 thread", "default")
                for label in order + (("scikit-learn",) if SkGaussianMixture else ()):
                    if label == "scikit-learn":
                        model = SkGaussianMixture(k, random_state=0)
                    else:
                        model = GaussianMixture(
                            k, random_state=0, n_threads=None if label == "default" else 1
                        )
                    start = time.perf_counter()
                    model.fit(X)
                    times[label].append(time.perf_counter() - start)
                    bounds[label] = model.lower_bound_
            median = {label: np.median(t) * 1e3 for label, t in times.items() if t}
            line = (
                f"{n} x {d}, K = {k}: default {median['default']:.2f} ms, 1 thread {median['1 thread']:.2f} ms "
                f"(ratio {median['default'] / median['1 thread']:.2f})"
            )
            if "scikit-learn" in median:
                line += (
                    f", scikit-learn {median['scikit-learn']:.2f} ms; lower bounds "
                    f"{bounds['default']:.6f} / {bounds['scikit-learn']:.6f}"
                )
            print(line, flush=True)
    finally:
        for process in busy:
            process.kill()


if __name__ == "__main__":
    main()
