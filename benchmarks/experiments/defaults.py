"""Measurements behind the defaults the ``gmmfast`` command shares with the library.

Each stage writes ``benchmarks/results/defaults_<stage>[_<tag>].json``;
``benchmarks/results/defaults.md`` quotes them with the commands.

* ``em``: how many EM iterations the denoiser's patch mixture needs. One
  fit of ``PatchDenoiser(8, --k, max_patches=--max-patches)`` (float64,
  seed 0) run on, with ``warm_start``, through the ``--checkpoints``; at
  each, the mean log-likelihood per patch, its last gain, and the PSNR of
  EPLL and MAP on ``--n-val`` held-out digits with noise sigma 0.2. The
  mixture is exactly the one ``PatchDenoiser.fit`` makes (same patches,
  same random state); only its EM is continued in stages.
* ``denoiser``: validation PSNR (sigma 0.2) and fit time for one K and
  number of training patches, with the library's max_iter and tol.
* ``selection``: ``GMMClassifier`` on ``--per-class`` training images of
  each digit, K chosen per class from ``--candidates`` by BIC, AIC
  (computed from the BIC scores: AIC = BIC - p log n + 2 p) and held-out
  log-likelihood, and fixed K for reference; test accuracy of each.

Data: ``--data sample`` is the MNIST sample shipped with gmmfast (5,000
training images: the last ``--n-val`` of them are the validation digits);
``--data mnist`` full MNIST from ``--mnist-dir`` (fits on the first 59,000
training images, validates on the next ``--n-val``).

    python benchmarks/experiments/defaults.py em --data mnist
    python benchmarks/experiments/defaults.py denoiser --data mnist --k 20
    python benchmarks/experiments/defaults.py selection --per-class 500
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, base_parser, machine  # noqa: E402

from gmmfast import ConvergenceWarning, GaussianMixture, GMMClassifier  # noqa: E402
from gmmfast.datasets import load_mnist, load_mnist_sample  # noqa: E402
from gmmfast.image import PatchDenoiser, psnr_per_image  # noqa: E402
from gmmfast.image._checks import check_images  # noqa: E402
from gmmfast.image._denoiser import _sample_patches  # noqa: E402
from gmmfast.utils._validation import check_random_state  # noqa: E402

SIDE = 28
SIGMA = 0.2
FIT_IMAGES = 59_000  # full MNIST: fit on these, validate on the next --n-val


def _digits(data: str, mnist_dir: str, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Training digits and held-out validation digits, (n, 28, 28) float64 in [0, 1]."""
    if data == "sample":
        X = load_mnist_sample()[0].reshape(-1, SIDE, SIDE).astype(np.float64)
        return X[:-n_val], X[-n_val:]
    X = load_mnist(mnist_dir, kind="train")[0].reshape(-1, SIDE, SIDE).astype(np.float64)
    return X[:FIT_IMAGES], X[FIT_IMAGES : FIT_IMAGES + n_val]


def _noisy(clean: np.ndarray, seed: int) -> np.ndarray:
    return clean + SIGMA * np.random.default_rng(seed).standard_normal(clean.shape)


def _psnr(dn: PatchDenoiser, clean: np.ndarray, noisy: np.ndarray, method: str) -> float:
    return float(psnr_per_image(dn.denoise(noisy, SIGMA, method=method), clean).mean())


def stage_em(args) -> dict:
    train, val = _digits(args.data, args.mnist_dir, args.n_val)
    noisy = _noisy(val, args.seed)
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    params = dict(max_patches=args.max_patches, random_state=args.seed, n_threads=args.n_threads)
    # The denoiser's own patches and random state, as PatchDenoiser.fit draws them.
    rng = check_random_state(args.seed)
    patches, n_total = _sample_patches(
        [check_images(train)], 8, 1, args.max_patches, rng, args.n_threads
    )
    patches = patches - patches.mean(axis=1, keepdims=True)  # remove_mean=True
    dn = PatchDenoiser(8, args.k, max_iter=1, **params).fit(train[:10])  # the fitted shell
    gm = GaussianMixture(
        args.k,
        reg_covar=dn.reg_covar,
        max_iter=checkpoints[0],
        tol=0.0,
        random_state=rng,
        n_threads=args.n_threads,
    )
    rows, bounds, done, seconds = [], [], 0, 0.0
    for stop in checkpoints:
        gm.set_params(max_iter=stop - done, warm_start=done > 0)
        with Timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(patches)
        seconds += t.seconds
        bounds += list(gm.lower_bounds_)
        done = stop
        dn.mixture_, dn._filter_cache = copy.deepcopy(gm), {}
        row = {
            "iterations": done,
            "fit_seconds": round(seconds, 1),
            "mean_log_likelihood": bounds[-1],
            "last_gain": bounds[-1] - bounds[-2],
            "psnr_epll": _psnr(dn, val, noisy, "epll"),
            "psnr_map": _psnr(dn, val, noisy, "map"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    gains = np.diff(bounds)
    first_below = {
        str(tol): (int(np.argmax(gains < tol)) + 2 if (gains < tol).any() else None)
        for tol in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)
    }
    return {
        "setting": f"PatchDenoiser(8, {args.k}, max_patches={args.max_patches}), float64, seed {args.seed}",
        "data": args.data,
        "patches_drawn_from": n_total,
        "n_val": len(val),
        "checkpoints": rows,
        "lower_bounds": bounds,
        "iterations_until_gain_below": first_below,
    }


def stage_denoiser(args) -> dict:
    train, val = _digits(args.data, args.mnist_dir, args.n_val)
    noisy = _noisy(val, args.seed)
    dn = PatchDenoiser(
        8, args.k, max_patches=args.max_patches, random_state=args.seed, n_threads=args.n_threads
    )
    if args.max_iter:
        dn.set_params(max_iter=args.max_iter)
    if args.tol is not None:
        dn.set_params(tol=args.tol)
    with Timer() as t, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        dn.fit(train)
    result = {
        "setting": f"PatchDenoiser(8, {args.k}, max_patches={args.max_patches}, max_iter={dn.max_iter}, "
        f"tol={dn.tol}), float64, seed {args.seed}",
        "data": args.data,
        "k": args.k,
        "max_patches": args.max_patches,
        "fit_seconds": round(t.seconds, 1),
        "n_iter": int(dn.mixture_.n_iter_),
        "converged": bool(dn.mixture_.converged_)
        and not any(issubclass(w.category, ConvergenceWarning) for w in caught),
        "n_val": len(val),
    }
    for method in ("map", "posterior_mean", "epll"):
        with Timer() as t:
            result[f"psnr_{method}"] = _psnr(dn, val, noisy, method)
        result[f"{method}_seconds"] = round(t.seconds, 1)
    result["psnr_noisy"] = float(psnr_per_image(np.clip(noisy, 0, 1), val).mean())
    print(json.dumps(result), flush=True)
    return result


def _n_parameters(k: int, d: int) -> int:
    return k * d + k * d * (d + 1) // 2 + k - 1  # full covariances


def stage_selection(args) -> dict:
    X, y, X_test, y_test = load_mnist(args.mnist_dir, kind="both")
    X, X_test = X.reshape(len(X), -1), X_test.reshape(len(X_test), -1)[: args.n_test]
    y, y_test = y.astype(int), y_test.astype(int)[: args.n_test]
    rng = np.random.default_rng(args.seed)
    keep = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), args.per_class, replace=False) for c in range(10)]
    )
    X, y = X[keep], y[keep]
    candidates = [int(k) for k in args.candidates.split(",")]
    base = dict(reg_covar=0.05, dtype=np.float32, random_state=args.seed, n_threads=args.n_threads)
    rows = {}

    def run(name: str, **params) -> GMMClassifier:
        with Timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = GMMClassifier(**{**base, **params}).fit(X, y)
        rows[name] = {
            "k_per_class": {int(c): int(k) for c, k in clf.n_components_.items()},
            "test_accuracy": float(clf.score(X_test, y_test)),
            "fit_seconds": round(t.seconds, 1),
            "n_iter": [int(n) for n in clf.n_iter_],
            "max_iter": clf.max_iter,
        }
        print(name, json.dumps(rows[name]), flush=True)
        return clf

    bic = run("bic", n_components=candidates, selection="bic")
    d = X.shape[1]
    aic_scores, aic_pick = {}, {}
    for c, scores in bic.selection_scores_.items():
        n = int(np.sum(y == c))
        aic_scores[int(c)] = {
            int(k): float(b - _n_parameters(k, d) * math.log(n) + 2 * _n_parameters(k, d))
            for k, b in scores.items()
        }
        aic_pick[c] = min(aic_scores[int(c)], key=aic_scores[int(c)].get)
    run("aic", n_components=aic_pick)
    heldout = run("heldout", n_components=candidates, selection="heldout")
    for k in candidates:
        run(f"K={k}", n_components=k)
    run("K=1, reg_covar 1e-6 (the library's)", n_components=1, reg_covar=1e-6)
    return {
        "setting": f"GMMClassifier(reg_covar=0.05, float32, seed {args.seed}); {args.per_class} training "
        f"images per digit (seed {args.seed}), first {len(X_test)} test images",
        "candidates": candidates,
        "bic_scores": {
            int(c): {int(k): float(v) for k, v in s.items()}
            for c, s in bic.selection_scores_.items()
        },
        "aic_scores": aic_scores,
        "heldout_scores": {
            int(c): {int(k): float(v) for k, v in s.items()}
            for c, s in heldout.selection_scores_.items()
        },
        "runs": rows,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("em", "denoiser", "selection"))
    parser.add_argument("--data", choices=("sample", "mnist"), default="mnist")
    parser.add_argument("--n-val", type=int, default=200, help="held-out validation digits")
    parser.add_argument("--k", type=int, default=10, help="denoiser components")
    parser.add_argument("--max-patches", type=int, default=50_000)
    parser.add_argument("--checkpoints", default="10,20,30,50,100,150,200")
    parser.add_argument(
        "--max-iter", type=int, default=None, help="denoiser: default the library's"
    )
    parser.add_argument("--tol", type=float, default=None, help="denoiser: default the library's")
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--candidates", default="1,2,5")
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--tag", default="", help="suffix of the result file")
    args = parser.parse_args()
    start = time.perf_counter()
    result = {
        "stage_em": stage_em,
        "stage_denoiser": stage_denoiser,
        "stage_selection": stage_selection,
    }[f"stage_{args.stage}"](args)
    result["command"] = "python benchmarks/experiments/defaults.py " + " ".join(sys.argv[1:])
    result["machine"] = machine()
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["load_average_1min_at_end"] = os.getloadavg()[0]
    out = Path(args.out) / f"defaults_{args.stage}{'_' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
