"""Held-out log-likelihood of mixtures of factor analysers against full covariances
(issue 29): K = 10 on the MNIST sample shipped with gmmfast (5,000 training and
1,000 held-out images), float32, the same reg_covar, at most 40 EM iterations.

    python benchmarks/experiments/mfa_heldout.py [--out benchmarks/results/mfa_heldout.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

from gmmfast import GaussianMixture
from gmmfast.datasets import load_mnist_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the table here (Markdown)")
    parser.add_argument("--reg-covar", type=float, default=0.05)
    args = parser.parse_args()
    X, _, T, _ = load_mnist_sample()
    rows = []
    settings = [("full", None), ("factor", 5), ("factor", 10), ("factor", 50), ("ppca", 10)]
    for kind, factors in settings:
        gm = GaussianMixture(
            10,
            covariance_type=kind,
            n_factors=factors,
            reg_covar=args.reg_covar,
            max_iter=40,
            dtype=np.float32,
            random_state=0,
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)
        seconds = time.perf_counter() - start
        rows.append((kind, factors, gm.score(T), gm.n_iter_, gm.converged_, seconds))
        print(rows[-1], flush=True)
    lines = [
        f"K = 10, float32, reg_covar = {args.reg_covar}, max_iter = 40, random_state = 0; "
        f"{platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.1f}",
        "",
        "| covariance | n_factors | held-out mean log-likelihood | EM iterations | converged | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for kind, factors, score, n_iter, converged, seconds in rows:
        lines.append(
            f"| {kind} | {factors or '-'} | {score:.1f} | {n_iter} | {converged} | {seconds:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("# Mixtures of factor analysers on the MNIST sample\n\n")
            fh.write("    python benchmarks/experiments/mfa_heldout.py --out " + args.out + "\n\n")
            fh.write(text)


if __name__ == "__main__":
    main()
