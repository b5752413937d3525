"""Gaussian selection at scale (issue 27): the acceptance rows, in one process.

Rows (each variant from the same initial parameters, ``tol=0``):

* ``patches``: 8 x 8 mean-removed patches, K = 200 full, float32, every patch of
  the training images below (a random ``--patches`` of them), ``--iters`` EM
  iterations, exact vs ``gaussian_selection="candidates"``; scikit-learn on a
  ``--sklearn-n`` subsample (it holds N x K float64 arrays and runs in float64),
  its time per iteration scaled by N (said so in the table).
* ``ubm``: K = 1024 diagonal, D = 60, ``--frames`` synthetic frames drawn from a
  known 1024-component diagonal mixture, float32 and float64; scikit-learn on
  a ``--sklearn-n`` subsample (its per-iteration cost from fits of 1 and 3
  iterations, ``init_params="random_from_data"``), scaled by N.
* ``inference``: ``score_samples`` of the fitted patch prior on the patches.
* ``steady`` (``--rows steady``): the cost of one exact iteration, one full pass
  and one candidate iteration from a start already fitted for ``--iters`` exact
  iterations (the regime of a long fit).

Training images (scikit-image's ``data``, in grayscale): those of
``natural_denoising.TRAIN``; ``camera`` and ``chelsea`` (the test and
validation images of the denoising experiments) are never used.

    python benchmarks/experiments/gaussian_selection.py            # full scale
    python benchmarks/experiments/gaussian_selection.py --patches 200000 --frames 100000 --iters 10

Peak resident memory of a selection fit is measured in a child process
(``--memory-only`` runs just that fit and prints its peak RSS).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine  # noqa: E402
from natural_denoising import TRAIN, gray_image  # noqa: E402

from gmmfast import GaussianMixture  # noqa: E402

NAME = "gaussian_selection"


def natural_patches(n: int, seed: int) -> np.ndarray:
    """``n`` random 8 x 8 mean-removed patches (float32) of the training images."""
    pieces = [
        sliding_window_view(gray_image(name).astype(np.float32), (8, 8)).reshape(-1, 64)
        for name in TRAIN
    ]
    sizes = np.array([len(p) for p in pieces])
    take = np.random.default_rng(seed).permutation(sizes.sum())[:n]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    out = np.empty((len(take), 64), dtype=np.float32)
    for i, piece in enumerate(pieces):
        mask = (take >= offsets[i]) & (take < offsets[i + 1])
        out[mask] = piece[take[mask] - offsets[i]]
    out -= out.mean(axis=1, keepdims=True)
    return out


def ubm_frames(n: int, seed: int, k: int = 1024, d: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 2.0
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    weights = rng.dirichlet(np.full(k, 5.0))
    z = rng.choice(k, size=n, p=weights)
    return centres[z] + rng.normal(size=(n, d)) * scales[z]


def patch_start(X: np.ndarray, seed: int) -> GaussianMixture:
    """The patch rows' common start: 2 exact EM iterations (k-means initialisation)
    of K = 200 on the first 50,000 patches."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(
            200,
            max_iter=2,
            init_params="kmeans",
            random_state=seed,
            dtype=np.float32,
            reg_covar=1e-5,
            gaussian_selection="exact",
        ).fit(X[:50_000])


def timed_fit(X, mode: str, start, iters: int, **kw):
    model = GaussianMixture(
        gaussian_selection=mode,
        max_iter=iters,
        tol=0,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        **kw,
    )
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    return model, time.perf_counter() - t


def sklearn_iteration(X, start, covariance_type: str, reg_covar: float) -> float:
    """scikit-learn's cost of one further EM iteration: fits of 1 and 3 iterations."""
    from sklearn.mixture import GaussianMixture as Sk

    times = []
    for iters in (1, 3):
        sk = Sk(
            len(start.weights_),
            covariance_type=covariance_type,
            max_iter=iters,
            tol=0,
            reg_covar=reg_covar,
            init_params="random_from_data",
            weights_init=start.weights_,
            means_init=start.means_,
            precisions_init=start.precisions_,
        )
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk.fit(X)
        times.append(time.perf_counter() - t)
    return (times[1] - times[0]) / 2


def patch_row(args) -> dict:
    X = natural_patches(args.patches, args.seed)
    start = patch_start(X, args.seed)
    row = {"n": len(X), "K": 200, "D": 64, "iters": args.iters, "dtype": "float32"}
    fits = {}
    for mode in ("exact", "candidates"):
        model, seconds = timed_fit(
            X, mode, start, args.iters, n_components=200, reg_covar=1e-5, dtype=np.float32
        )
        fits[mode] = model
        row[mode] = {
            "seconds": seconds,
            "per_iter": seconds / args.iters,
            "final_ll": float(model.score(X)),
            "lower_bound": float(model.lower_bound_),
            "skipped_mass": model.selection_skipped_mass_,
        }
        print(mode, row[mode], flush=True)
    row["speedup"] = row["exact"]["seconds"] / row["candidates"]["seconds"]
    row["ll_rel_diff"] = abs(row["candidates"]["final_ll"] - row["exact"]["final_ll"]) / abs(
        row["exact"]["final_ll"]
    )
    sub = X[: args.sklearn_n].astype(np.float64)
    row["sklearn_per_iter_subsample"] = sklearn_iteration(sub, start, "full", 1e-5)
    row["sklearn_n"] = len(sub)
    row["sklearn_per_iter_scaled"] = row["sklearn_per_iter_subsample"] * len(X) / len(sub)
    for mode, model in fits.items():
        t = time.perf_counter()
        model.set_params(gaussian_selection=mode).score_samples(X)
        row[f"score_samples_{mode}_seconds"] = time.perf_counter() - t
    print("patches", row, flush=True)
    return row


def ubm_row(args) -> dict:
    X = ubm_frames(args.frames, args.seed)
    rng = np.random.default_rng(args.seed)
    means = X[rng.choice(len(X), 1024, replace=False)]
    start = SimpleNamespace(
        weights_=np.full(1024, 1 / 1024),
        means_=means,
        precisions_=np.broadcast_to(1.0 / X.var(axis=0), (1024, 60)).copy(),
    )
    row = {"n": len(X), "K": 1024, "D": 60, "iters": args.iters}
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        for mode in ("exact", "candidates"):
            model, seconds = timed_fit(
                X,
                mode,
                start,
                args.iters,
                n_components=1024,
                covariance_type="diag",
                dtype=dtype,
            )
            row[f"{mode}_{name}"] = {
                "seconds": seconds,
                "per_iter": seconds / args.iters,
                "final_ll": float(model.score(X)),
                "skipped_mass": model.selection_skipped_mass_,
            }
            print(mode, name, row[f"{mode}_{name}"], flush=True)
    sub = X[: args.sklearn_n]
    row["sklearn_n"] = len(sub)
    row["sklearn_per_iter_subsample"] = sklearn_iteration(sub, start, "diag", 1e-6)
    row["sklearn_per_iter_scaled"] = row["sklearn_per_iter_subsample"] * len(X) / len(sub)
    print("ubm", row, flush=True)
    return row


def steady_row(args) -> dict:
    """The cost of each kind of iteration on the patch data, from a start fitted for
    ``--iters`` exact iterations (the regime of a long fit): one exact EM iteration,
    one full pass with its M-step, one candidate iteration (probe included)."""
    from gmmfast.mixture import _candidates

    X = natural_patches(args.patches, args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = patch_start(X, args.seed)
        start, _ = timed_fit(
            X, "exact", start, args.iters, n_components=200, reg_covar=1e-5, dtype=np.float32
        )
    row = {"n": len(X), "start_iters": args.iters}
    one = dict(n_components=200, reg_covar=1e-5, dtype=np.float32)
    _, row["exact_iteration"] = timed_fit(X, "exact", start, 1, **one)
    model = GaussianMixture(gaussian_selection="candidates", **one)
    model.fit(X[:1000])  # an instance with parameters to set
    model.weights_, model.means_ = start.weights_, start.means_
    model.covariances_, model.precisions_cholesky_ = start.covariances_, start.precisions_cholesky_
    em = _candidates.SelectiveEM(model, X)
    t = time.perf_counter()
    em.em_pass()  # the first pass: a full pass and its M-step
    row["full_pass_iteration"] = time.perf_counter() - t
    times = []
    for _ in range(3):
        t = time.perf_counter()
        em.em_pass()
        times.append(time.perf_counter() - t)
    row["candidate_iterations"] = times
    row["passes"] = [kind for kind, _ in em.history]
    row["pairs_per_sample"] = em.sets.n_pairs / em.sets.n_samples
    print("steady", row, flush=True)
    return row


def memory_only(args) -> None:
    """Peak RSS of a selection fit, in a process that holds only the patches
    (read from ``--data``, written by the parent, so that extracting them leaves no
    earlier peak) and the fit."""
    X = np.load(args.data)
    start = patch_start(X, args.seed)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timed_fit(X, "candidates", start, 3, n_components=200, reg_covar=1e-5, dtype=np.float32)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "data_mb": X.nbytes / 2**20,
                "rss_before_fit_mb": before / 1024,
                "peak_rss_mb": peak / 1024,
                "dense_float64_resp_mb": len(X) * 200 * 8 / 2**20,
            }
        )
    )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=2_000_000)
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--sklearn-n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default="patches,ubm,memory")  # and "steady"
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--data", help="with --memory-only: the patches, a .npy file")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args()
    if args.memory_only:
        memory_only(args)
        return
    results = {"machine": machine(), "command": " ".join(sys.argv), "train_images": TRAIN}
    path = Path(args.out) / f"{NAME}.json"
    rows = args.rows.split(",")
    if "memory" in rows:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "patches.npy"
            np.save(data, natural_patches(args.patches, args.seed))
            out = subprocess.run(
                [sys.executable, __file__, "--memory-only", "--data", str(data)],
                capture_output=True,
                text=True,
                check=True,
            )
        results["memory"] = json.loads(out.stdout.strip().splitlines()[-1])
        print("memory", results["memory"], flush=True)
        path.write_text(json.dumps(results, indent=1, default=str))
    if "patches" in rows:
        results["patches"] = patch_row(args)
        path.write_text(json.dumps(results, indent=1, default=str))
    if "ubm" in rows:
        results["ubm"] = ubm_row(args)
        path.write_text(json.dumps(results, indent=1, default=str))
    if "steady" in rows:
        results["steady"] = steady_row(args)
        path.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
