"""The ``gmmfast`` command: a demo, and classification and inpainting on files.

Run ``gmmfast --help`` (or ``python -m gmmfast --help``). Every subcommand
ends with exit status 0, or prints one line ``gmmfast: error: ...`` and
exits with status 2 on bad input (missing file, wrong keys or shapes).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from ._base import ConvergenceWarning
from ._missing import pixel_mask
from .classifier import GMMClassifier
from .datasets import load_idx_dir, load_mnist, load_mnist_sample

# Keys accepted in .npz files of images and labels (the first present is used).
IMAGE_KEYS = ("images", "x", "X", "data", "x_train", "x_test", "X_train", "X_test")
LABEL_KEYS = ("labels", "y", "Y", "targets", "y_train", "y_test")
MASKS = ("random", "top", "left", "centre", "nan")


class UsageError(Exception):
    """Bad input from the command line: reported in one line, no traceback."""


# ------------------------------------------------------------------ data
def load_images(path: str | Path, split: str, *, need_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Images as float (n, pixels) in [0, 1], and labels, from an .npz or an IDX directory.

    An IDX directory gives its ``split`` ('train' or 'test'); an .npz file
    its first image key of ``IMAGE_KEYS`` and label key of ``LABEL_KEYS``.
    Integer pixels (0..255) are scaled to [0, 1].
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.is_dir():
        images, labels = load_idx_dir(path, split)
    else:
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                image_key = next((k for k in IMAGE_KEYS if k in keys), None)
                label_key = next((k for k in LABEL_KEYS if k in keys), None)
                if image_key is None:
                    raise UsageError(f"{path}: no images; expected one of the keys {', '.join(IMAGE_KEYS)} (found {', '.join(keys) or 'none'})")
                images = archive[image_key]
                labels = archive[label_key] if label_key else None
        except UsageError:
            raise
        except Exception as exc:  # zip errors, pickled objects, not an npz at all
            raise UsageError(f"{path}: not a readable .npz file ({exc})") from None
    if need_labels and labels is None:
        raise UsageError(f"{path}: no labels; expected one of the keys {', '.join(LABEL_KEYS)}")
    images = np.asarray(images)
    if images.dtype.kind not in "biuf" or images.ndim not in (2, 3):
        raise UsageError(f"{path}: images must be a numeric array of shape (n, H, W) or (n, pixels); got {images.dtype} {images.shape}")
    if labels is not None and len(labels) != len(images):
        raise UsageError(f"{path}: {len(images)} images but {len(labels)} labels")
    flat = images.reshape(len(images), -1)
    if flat.dtype.kind in "biu" or np.nanmax(flat) > 1.0:
        flat = flat.astype(np.float32) / 255.0
    return np.asarray(flat, dtype=np.float32 if flat.dtype == np.float32 else np.float64), labels


def make_observed(images: np.ndarray, mask: str, fraction: float, seed: int) -> np.ndarray:
    """Boolean ``observed`` mask (False = missing): NaN in the data, or a
    :func:`gmmfast._missing.pixel_mask` of the given kind."""
    if mask == "nan":
        return ~np.isnan(images)
    try:
        return pixel_mask(images.shape, mask, fraction, seed)
    except ValueError as exc:
        raise UsageError(f"--mask {mask} --fraction {fraction}: {exc}") from None


def _classifier(args: argparse.Namespace) -> GMMClassifier:
    return GMMClassifier(
        args.n_components, reg_covar=args.reg_covar, dtype=np.float32 if args.float32 else np.float64,
        max_iter=args.max_iter, random_state=args.seed, n_threads=args.n_threads, verbose=int(args.verbose),
    )


def _model(args: argparse.Namespace) -> GMMClassifier:
    """Load --model, or fit on --train (and save to --save-model)."""
    if args.model:
        if not Path(args.model).exists():
            raise UsageError(f"{args.model}: no such model file")
        return GMMClassifier.load(args.model)
    if not args.train:
        raise UsageError("give --model FILE, or --train DATA to fit a model")
    X, y = load_images(args.train, "train", need_labels=True)
    start = time.perf_counter()
    clf = _classifier(args).fit(X, y)
    print(f"fitted {len(clf.classes_)} classes, K per class {clf.n_components_}, on {len(X)} images in {time.perf_counter() - start:.1f} s")
    if args.save_model:
        clf.save(args.save_model)
        print(f"saved the model to {args.save_model}")
    return clf


# ------------------------------------------------------------ subcommands
def cmd_classify(args: argparse.Namespace) -> None:
    clf = _model(args)
    X, y = load_images(args.test, "test", need_labels=False)
    observed = make_observed(X, args.mask, args.fraction, args.seed) if args.mask else None
    start = time.perf_counter()
    log_proba = clf.predict_log_proba(X, observed=observed)
    predicted = clf.classes_[log_proba.argmax(axis=1)]
    what = "" if observed is None else f" with {1 - observed.mean():.0%} of pixels missing"
    print(f"classified {len(X)} images{what} in {time.perf_counter() - start:.1f} s")
    if y is not None:
        print(f"accuracy {np.mean(predicted == y):.2%}")
    if args.out:
        np.savez_compressed(args.out, predictions=predicted, log_proba=log_proba, classes=clf.classes_)
        print(f"wrote {args.out}")


def cmd_inpaint(args: argparse.Namespace) -> None:
    clf = _model(args)
    X, _ = load_images(args.images, "test", need_labels=False)
    observed = make_observed(X, args.mask, args.fraction, args.seed)
    start = time.perf_counter()
    filled = clf.impute(X, observed=observed, clip=(0.0, 1.0))
    print(f"inpainted {len(X)} images ({1 - observed.mean():.0%} of pixels missing) in {time.perf_counter() - start:.1f} s")
    if args.mask != "nan" and np.isfinite(X).all():
        print(f"MSE on the missing pixels {np.mean((filled - X)[~observed] ** 2):.5f}")
    if args.out:
        np.savez_compressed(args.out, filled=filled, observed=observed)
        print(f"wrote {args.out}")
    if args.figure:
        _figure_inpainting(args.figure, X[:8], observed[:8], filled[:8])


def cmd_demo(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.data_dir:
        X, y, X_test, y_test = load_mnist(args.data_dir, kind="both")
        source, k = f"MNIST from {args.data_dir}", 10
    else:
        X, y, X_test, y_test = load_mnist_sample()
        source, k = "the MNIST sample shipped with gmmfast", 2
    X, X_test = X.reshape(len(X), -1), X_test.reshape(len(X_test), -1)
    print(f"data: {source}: {len(X)} training and {len(X_test)} test images")
    lines = ["# gmmfast demo", "", f"Data: {source} ({len(X)} training, {len(X_test)} test images).", ""]

    start = time.perf_counter()
    clf = GMMClassifier(k, reg_covar=0.05, dtype=np.float32, random_state=0, n_threads=args.n_threads,
                        verbose=int(args.verbose)).fit(X, y)
    fit_s = time.perf_counter() - start
    clean = clf.score(X_test, y_test)
    print(f"classifier ({k} Gaussians per digit) fitted in {fit_s:.1f} s: test accuracy {clean:.2%}")
    n = min(len(X_test), 1000)
    observed = make_observed(X_test[:n], "random", 0.5, 0)
    start = time.perf_counter()
    missing = clf.score(X_test[:n], y_test[:n], observed=observed)
    missing_s = time.perf_counter() - start
    print(f"with 50% of each image's pixels missing ({n} images): accuracy {missing:.2%} ({missing_s:.1f} s)")
    lines += ["## Classification", "",
              f"One full-covariance mixture of {k} Gaussians per digit (reg_covar 0.05, float32), fitted in {fit_s:.1f} s.", "",
              "| test images | accuracy |", "|---|---|",
              f"| clean ({len(X_test)}) | {clean:.2%} |",
              f"| 50% of pixels missing, exact marginals ({n}) | {missing:.2%} |", ""]

    lines += ["## Inpainting", "", "MSE on the missing pixels (posterior-weighted conditional means, clipped to [0, 1]):", "",
              "| mask | gmmfast | mean imputation |", "|---|---|---|"]
    pixel_mean = X.mean(axis=0)
    shown = {}
    for mask in ("random", "top", "left", "centre"):
        obs = make_observed(X_test[:n], mask, 0.5, 1)
        filled = clf.impute(X_test[:n], observed=obs, clip=(0.0, 1.0))
        mse = np.mean((filled - X_test[:n])[~obs] ** 2)
        base = np.mean((pixel_mean[None] - X_test[:n])[~obs] ** 2)
        print(f"inpainting, {mask} mask: MSE {mse:.4f} (mean imputation {base:.4f})")
        lines.append(f"| {mask} | {mse:.4f} | {base:.4f} |")
        shown[mask] = (obs[:8], filled[:8])
    figure = out / "inpainting.png"
    if _figure_inpainting(figure, X_test[:8], *shown["random"], extra=shown):
        lines += ["", f"![inpainting]({figure.name})"]
    lines += ["", "Denoising and deblurring with a patch prior are not in this release yet.", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    print(f"wrote {report}")


def _figure_inpainting(path, originals, observed, filled, extra=None) -> bool:
    """Original / masked / inpainted rows; False (with a note) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no figure: matplotlib is not installed (pip install 'gmmfast[plot]')")
        return False
    side = int(round(np.sqrt(originals.shape[1])))
    panels = extra or {"": (observed, filled)}
    fig, axes = plt.subplots(1 + 2 * len(panels), len(originals), figsize=(1.2 * len(originals), 1.25 * (1 + 2 * len(panels))),
                             squeeze=False)
    cmap = plt.get_cmap("gray").with_extremes(bad="tab:red")  # missing pixels in red
    rows = [("original", originals)]
    for name, (obs, fill) in panels.items():
        rows += [(f"masked {name}".strip(), np.where(obs, originals, np.nan)), ("inpainted", fill)]
    for r, (title, images) in enumerate(rows):
        for c, image in enumerate(images):
            ax = axes[r, c]
            ax.imshow(image.reshape(side, -1), cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return True


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmmfast",
        description="Fast Gaussian mixture models for images: classify and inpaint digits with missing pixels.",
        epilog="Data: an .npz with images (keys: " + ", ".join(IMAGE_KEYS) + ") and labels (keys: "
        + ", ".join(LABEL_KEYS) + "), or a directory of IDX files (MNIST naming).",
    )
    parser.add_argument("--version", action="version", version=f"gmmfast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--n-threads", type=int, default=None, help="threads (default: all cores)")
        p.add_argument("-v", "--verbose", action="store_true", help="show fitting progress")

    demo = sub.add_parser("demo", help="fit, classify (also with missing pixels) and inpaint MNIST; write a report",
                          description="The main job end to end, on the MNIST sample shipped with gmmfast "
                          "(under a minute on 2 cores) or on full MNIST with --data-dir.")
    demo.add_argument("--data-dir", help="directory of MNIST IDX files (default: the shipped sample)")
    demo.add_argument("--out", default="gmmfast-demo", help="directory for report.md and figures (default: gmmfast-demo)")
    common(demo)
    demo.set_defaults(func=cmd_demo)

    def model_options(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("model (load one, or fit one)")
        g.add_argument("--model", help="a classifier saved by --save-model (.npz)")
        g.add_argument("--train", help="training data to fit a classifier on")
        g.add_argument("--save-model", help="where to save the fitted classifier (.npz)")
        g.add_argument("--n-components", type=int, default=2, help="Gaussians per class (default 2)")
        g.add_argument("--reg-covar", type=float, default=0.05, help="added to covariance diagonals (default 0.05)")
        g.add_argument("--max-iter", type=int, default=100, help="EM iterations at most (default 100)")
        g.add_argument("--float32", action="store_true", help="compute in float32 (faster)")
        g.add_argument("--seed", type=int, default=0, help="seed for initialisation and masks (default 0)")

    classify = sub.add_parser("classify", help="classify images, optionally with pixels removed",
                              description="Fit or load a class-conditional GMM classifier and classify --test; "
                              "prints the accuracy when --test has labels.")
    model_options(classify)
    classify.add_argument("--test", required=True, help="images to classify (IDX directory: its test split)")
    classify.add_argument("--mask", choices=MASKS, help="remove pixels before classifying (nan: NaN in the data marks them)")
    classify.add_argument("--fraction", type=float, default=0.5, help="share of pixels removed by --mask random (default 0.5)")
    classify.add_argument("--out", help="write predictions and log-probabilities (.npz)")
    common(classify)
    classify.set_defaults(func=cmd_classify)

    inpaint = sub.add_parser("inpaint", help="fill in missing pixels",
                             description="Fit or load a classifier and fill the masked pixels of --images with "
                             "posterior-weighted conditional means.")
    model_options(inpaint)
    inpaint.add_argument("--images", required=True, help="images to inpaint (IDX directory: its test split)")
    inpaint.add_argument("--mask", choices=MASKS, default="random", help="which pixels are missing (default random)")
    inpaint.add_argument("--fraction", type=float, default=0.5, help="share of pixels removed by --mask random (default 0.5)")
    inpaint.add_argument("--out", help="write the filled images and the mask (.npz)")
    inpaint.add_argument("--figure", help="write original / masked / inpainted examples (.png)")
    common(inpaint)
    inpaint.set_defaults(func=cmd_inpaint)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        warnings.simplefilter("ignore", ConvergenceWarning)
    try:
        args.func(args)
    except (UsageError, ValueError, OSError) as exc:
        print(f"gmmfast: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gmmfast: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
