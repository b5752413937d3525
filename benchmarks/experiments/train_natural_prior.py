"""Fit a natural-image patch prior (issue 28): 8 x 8 mean-removed patches of the
photographs scikit-image ships, K = 200 full covariances, Gaussian selection,
resumable.

Training images (grayscale): ``natural_denoising.TRAIN`` (coins, moon, page, text,
astronaut, coffee, brick, grass, gravel, rocket, clock, cell, immunohistochemistry,
hubble_deep_field); ``camera`` and ``chelsea`` are never used (the denoising
experiments test and validate on them). Held-out patches: 50,000 patches of the
training images not drawn for training (a disjoint random split of all patches).

EM runs in rounds of ``--round`` iterations (``warm_start``); after each round the
model is written atomically to ``--model`` (a gmmfast ``.npz``) with a JSON log
beside it (per round: iterations, mean training log-likelihood, held-out
log-likelihood, seconds, skipped mass). Run the same command again to resume from
the last round written.

    python benchmarks/experiments/train_natural_prior.py --model prior_k200.npz
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parent))
from natural_denoising import TRAIN, gray_image  # noqa: E402

from gmmfast import GaussianMixture  # noqa: E402
from gmmfast.utils._atomic import atomic_write  # noqa: E402


def split_patches(n_train: int, n_heldout: int, patch: int, seed: int):
    """Disjoint random training and held-out sets of mean-removed patches (float32)."""
    pieces = [
        sliding_window_view(gray_image(name).astype(np.float32), (patch, patch)).reshape(
            -1, patch * patch
        )
        for name in TRAIN
    ]
    everything = np.concatenate(pieces)
    order = np.random.default_rng(seed).permutation(len(everything))
    n_train = min(n_train, len(everything) - n_heldout)
    train = everything[order[:n_train]]
    heldout = everything[order[n_train : n_train + n_heldout]]
    for part in (train, heldout):
        part -= part.mean(axis=1, keepdims=True)
    return np.ascontiguousarray(train), np.ascontiguousarray(heldout), len(everything)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the .npz written after each round")
    parser.add_argument("--patches", type=int, default=2_000_000)
    parser.add_argument("--heldout", type=int, default=50_000)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--components", type=int, default=200)
    parser.add_argument("--reg-covar", type=float, default=1e-5)
    # Each round's fit begins and ends with a full pass (Gaussian selection): long rounds.
    parser.add_argument("--round", type=int, default=10, help="EM iterations per round")
    parser.add_argument("--max-iter", type=int, default=100, help="EM iterations in all")
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model_path = Path(args.model)
    log_path = model_path.with_suffix(".json")
    train, heldout, n_all = split_patches(args.patches, args.heldout, args.patch_size, args.seed)
    log = (
        json.loads(log_path.read_text())
        if log_path.exists()
        else {
            "command": " ".join(sys.argv),
            "train_images": TRAIN,
            "n_train": len(train),
            "n_heldout": len(heldout),
            "n_patches_available": n_all,
            "rounds": [],
        }
    )
    done = sum(r["iterations"] for r in log["rounds"])
    if model_path.exists():
        model = GaussianMixture.load(model_path)
        model.set_params(warm_start=True)
    else:
        model = GaussianMixture(
            args.components,
            reg_covar=args.reg_covar,
            dtype=np.float32,
            random_state=args.seed,
            init_params="kmeans",
            tol=args.tol,
            warm_start=True,
        )
    while done < args.max_iter:
        iters = min(args.round, args.max_iter - done)
        model.set_params(max_iter=iters, tol=args.tol)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(train)
        seconds = time.perf_counter() - start
        done += model.n_iter_
        entry = {
            "iterations": int(model.n_iter_),
            "total_iterations": done,
            "seconds": seconds,
            "train_ll": float(model.lower_bound_),
            "heldout_ll": float(model.score(heldout)),
            "skipped_mass": model.selection_skipped_mass_,
            "converged": bool(model.converged_),
        }
        log["rounds"].append(entry)
        model.save(model_path)
        with atomic_write(log_path) as f:
            f.write(json.dumps(log, indent=1).encode())
        print(json.dumps(entry), flush=True)
        if model.converged_:
            break


if __name__ == "__main__":
    main()
