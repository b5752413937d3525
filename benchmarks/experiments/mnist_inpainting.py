"""Inpainting MNIST digits with the class-conditional GMM.

For each mask type (random 50% of the pixels, top half, left half, a
centred 14 x 14 square) the missing pixels of test images are filled with

* the mean of the training images at that pixel (mean imputation),
* the conditional mean under one full-covariance Gaussian per class (K = 1),
* the conditional mean under the K-component classifier (--k),

each weighted by the class posterior computed from the exact marginal
likelihood of the observed pixels, and the MSE is taken over the missing
pixels only. A figure shows original / masked / inpainted digits.

    python benchmarks/experiments/mnist_inpainting.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, base_parser, load_full_mnist, machine, random_missing, write_results  # noqa: E402

from gmmfast import ConvergenceWarning, GMMClassifier  # noqa: E402
from gmmfast.mixture._missing import pixel_mask  # noqa: E402

SIDE = 28


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10, help="components per class of the best model")
    parser.add_argument("--reg", type=float, default=0.03)
    parser.add_argument(
        "--n-test", type=int, default=1000, help="test images inpainted per mask type"
    )
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--figure", default=None, help="PNG path (default: <out>/inpainting.png)")
    parser.add_argument(
        "--models",
        default=None,
        metavar="DIR",
        help="load DIR/gmm_classifier_k{K}.npz (from mnist_classifier.py --save-models) instead of fitting",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)

    X, y, X_test, y_test = load_full_mnist(args.mnist_dir)
    X_test = X_test[: args.n_test]
    masks = {"random_50%": random_missing(X_test.shape, 0.5, args.seed)}
    for name, kind in (("top_half", "top"), ("left_half", "left"), ("centre_14x14", "centre")):
        masks[name] = pixel_mask(X_test.shape, kind)
    pixel_mean = X.mean(axis=0, dtype=np.float64)

    models = {}
    for k in sorted({1, args.k}):
        saved = Path(args.models) / f"gmm_classifier_k{k}.npz" if args.models else None
        with Timer() as t:
            if saved is not None and saved.exists():
                models[f"K={k}"] = GMMClassifier.load(saved)
            else:
                models[f"K={k}"] = GMMClassifier(
                    k,
                    reg_covar=args.reg,
                    dtype=np.float32,
                    max_iter=args.max_iter,
                    random_state=args.seed,
                    n_threads=args.n_threads,
                ).fit(X, y)
        how = f"loaded {saved}" if saved is not None and saved.exists() else "fitted"
        print(f"K={k}: {how} in {t.seconds:.0f} s", flush=True)

    results = {
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "mse": {},
        "models": {
            label: {"reg_covar": m.reg_covar, "n_components": m.n_components_}
            for label, m in models.items()
        },
    }
    examples = {}
    for name, observed in masks.items():
        missing = ~observed
        row = {"mean_imputation": float(np.mean((pixel_mean[None, :] - X_test)[missing] ** 2))}
        for label, model in models.items():
            with Timer() as t:
                filled = model.impute(X_test, observed=observed, clip=(0.0, 1.0))
            row[label] = float(np.mean((filled - X_test)[missing] ** 2))
            row[f"{label} seconds"] = t.seconds
            examples[(name, label)] = filled[:6]
        results["mse"][name] = row
        print(name, row, flush=True)

    write_results(args.out, "mnist_inpainting", results, markdown(results, sorted(models)))
    figure = args.figure or str(Path(args.out) / "inpainting.png")
    draw(figure, X_test[:6], masks, examples, f"K={args.k}")


def markdown(results, labels) -> str:
    s = results["settings"]
    lines = [
        "# Inpainting MNIST test digits (MSE on the missing pixels)",
        "",
        f"First {s['n_test']} test images, class-conditional GMMs (float32; reg_covar "
        + ", ".join(f"{label}: {m['reg_covar']}" for label, m in results["models"].items())
        + ") trained on "
        "all 60,000 training images; fill = posterior-weighted conditional mean, clipped to [0, 1]. "
        "Command: `python benchmarks/experiments/mnist_inpainting.py`.",
        "",
        "| mask | mean imputation | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for name, row in results["mse"].items():
        lines.append(
            f"| {name} | {row['mean_imputation']:.4f} | "
            + " | ".join(f"{row[label]:.4f}" for label in labels)
            + " |"
        )
    return "\n".join(lines) + "\n"


def draw(path, originals, masks, examples, best) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figure (pip install gmmfast[plot])")
        return
    names = list(masks)
    fig, axes = plt.subplots(
        3 * len(names), len(originals), figsize=(1.3 * len(originals), 1.35 * 3 * len(names))
    )
    for r, name in enumerate(names):
        shown = np.where(masks[name][: len(originals)], originals, np.nan)
        for c in range(len(originals)):
            for j, (img, title) in enumerate(
                (
                    (originals[c], "original"),
                    (shown[c], f"masked: {name}"),
                    (examples[(name, best)][c], f"inpainted ({best})"),
                )
            ):
                ax = axes[3 * r + j, c]
                cmap = plt.get_cmap("gray").with_extremes(bad="tab:red")
                ax.imshow(img.reshape(SIDE, SIDE), cmap=cmap, vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(title, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
