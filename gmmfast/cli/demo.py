"""``gmmfast demo``: the main job end to end on MNIST, written up as report.md and figures."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..datasets import load_mnist_sample
from ..image import PatchDenoiser, psnr_per_image
from ..image._denoiser import METHODS as DENOISE_METHODS
from ..mixture import GMMClassifier
from ..utils._atomic import atomic_write
from ..utils._plotting import PLOT_HINT, pyplot
from ._clustering_demo import clustering_section
from ._common import (
    UsageError,
    add_common_options,
    k_sweep,
    positive_int,
)
from ._data import (
    load_idx_set,
    load_mnist_or_usage_error,
    make_observed,
)
from ._figures import figure_inpainting, figure_lines, image_grid


def check(args: argparse.Namespace) -> None:
    """Options that do not go together, refused before --out is created."""
    if args.no_checksum and not args.data_dir:
        raise UsageError("--no-checksum reads --data-dir DIR: give the directory")
    if args.no_checksum and args.download:
        raise UsageError(
            "--download fetches MNIST with its checksums; --no-checksum reads --data-dir as it is"
        )


def run(args: argparse.Namespace) -> None:
    demo_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    full = bool(args.data_dir or args.download)
    if full:
        if args.no_checksum:
            X, y, X_test, y_test = load_idx_set(args.data_dir)
            source = f"the IDX files in {args.data_dir}"
        else:
            X, y, X_test, y_test = load_mnist_or_usage_error(args.data_dir, args.download)
            source = f"MNIST from {args.data_dir or 'the cache'}"
        k = args.n_components or 10
        sweep = args.k_sweep or []
    else:
        X, y, X_test, y_test = load_mnist_sample()
        source, k = "the MNIST sample shipped with gmmfast", args.n_components or 2
        sweep = (
            [1] if args.k_sweep is None else args.k_sweep
        )  # K=1 is cheap; more K cost a fit each
    X, X_test = X.reshape(len(X), -1), X_test.reshape(len(X_test), -1)
    print(f"data: {source}: {len(X)} training and {len(X_test)} test images")
    plt = pyplot(required=False)
    if plt is None:
        print(f"figures skipped: matplotlib is not installed ({PLOT_HINT})")
    figures: list[tuple[str, str]] = []  # (caption, file name)

    def figure(name: str, caption: str, draw) -> None:
        if plt is not None and draw(out / name):
            figures.append((caption, name))

    lines = [
        "# gmmfast demo",
        "",
        f"Data: {source} ({len(X)} training, {len(X_test)} test images).",
        "",
    ]

    # Classification, clean and with half of the pixels missing.
    def fit(n_components: int) -> tuple[GMMClassifier, float]:
        start = time.perf_counter()
        clf = GMMClassifier(
            n_components,
            reg_covar=0.05,
            dtype=np.float32,
            random_state=0,
            n_threads=args.n_threads,
            verbose=int(args.verbose),
        ).fit(X, y)
        return clf, time.perf_counter() - start

    clf, fit_s = fit(k)
    clean = clf.score(X_test, y_test)
    print(
        f"classifier ({k} Gaussians per digit) fitted in {fit_s:.1f} s: test accuracy {clean:.2%}"
    )
    n = min(len(X_test), 1000)
    observed = make_observed(X_test[:n], "random", 0.5, 0)
    start = time.perf_counter()
    filled_random, predicted = clf.impute(
        X_test[:n], observed, clip=(0.0, 1.0), return_predictions=True
    )
    missing = float(np.mean(predicted == y_test[:n]))
    missing_s = time.perf_counter() - start
    print(
        f"with 50% of each image's pixels missing ({n} images): accuracy {missing:.2%} ({missing_s:.1f} s, with inpainting)"
    )
    lines += [
        "## Classification",
        "",
        f"One full-covariance mixture of {k} Gaussians per digit (reg_covar 0.05, float32), fitted in {fit_s:.1f} s.",
        "",
        "| test images | accuracy |",
        "|---|---|",
        f"| clean ({len(X_test)}) | {clean:.2%} |",
        f"| 50% of pixels missing, exact marginals ({n}) | {missing:.2%} |",
        "",
    ]

    # Accuracy against K (clean test images).
    accuracy = {k: clean}
    fit_times = {k: fit_s}
    for kk in sorted(set(sweep) - {k}):
        other, fit_times[kk] = fit(kk)
        accuracy[kk] = other.score(X_test, y_test)
        print(f"  K={kk}: fitted in {fit_times[kk]:.1f} s, test accuracy {accuracy[kk]:.2%}")
    if len(accuracy) > 1:
        lines += [
            "Accuracy on the clean test images against K (Gaussians per digit):",
            "",
            "| K | accuracy | fit s |",
            "|---|---|---|",
        ]
        lines += [f"| {kk} | {accuracy[kk]:.2%} | {fit_times[kk]:.1f} |" for kk in sorted(accuracy)]
        lines.append("")
        figure(
            "accuracy_vs_k.png",
            "accuracy against K",
            lambda path: figure_lines(
                path,
                [
                    (
                        {
                            "clean test images": (
                                sorted(accuracy),
                                [100 * accuracy[kk] for kk in sorted(accuracy)],
                            )
                        },
                        "Classification accuracy against K",
                        "accuracy (%)",
                    )
                ],
                "Gaussians per digit (K)",
                markers=True,
            ),
        )

    # EM log-likelihood curves of the main model.
    curves = {
        f"digit {label}": (np.arange(1, len(e.lower_bounds_) + 1), e.lower_bounds_)
        for label, e in zip(clf.classes_.tolist(), clf.estimators_)
        if getattr(e, "lower_bounds_", None)
    }
    iterations = [len(c[1]) for c in curves.values()]
    if iterations:
        lines += [
            f"EM ran {min(iterations)} to {max(iterations)} iterations per digit (tol 1e-3 on the mean log-likelihood).",
            "",
        ]

    # Inpainting.
    lines += [
        "## Inpainting",
        "",
        "MSE on the missing pixels (posterior-weighted conditional means, clipped to [0, 1]):",
        "",
        "| mask (50% of pixels) | gmmfast | mean imputation |",
        "|---|---|---|",
    ]
    pixel_mean = X.mean(axis=0)
    shown = {}
    for mask in ("random", "top", "left", "centre"):
        if mask == "random":
            obs, filled = observed, filled_random
        else:
            obs = make_observed(X_test[:n], mask, 0.5, 1)
            filled = clf.impute(X_test[:n], observed=obs, clip=(0.0, 1.0))
        mse = np.mean((filled - X_test[:n])[~obs] ** 2)
        base = np.mean((pixel_mean[None] - X_test[:n])[~obs] ** 2)
        print(f"inpainting, {mask} mask: MSE {mse:.4f} (mean imputation {base:.4f})")
        lines.append(f"| {mask} | {mse:.4f} | {base:.4f} |")
        shown[mask] = (obs[:8], filled[:8])
    lines.append("")
    figure("inpainting.png", "inpainting", lambda path: figure_inpainting(path, X_test[:8], shown))

    denoising_lines, patch_curve = _demo_denoising(args, X, X_test, figure)
    lines += denoising_lines
    lines += clustering_section(figure, n_threads=args.n_threads)
    # EM log-likelihood per iteration: the classifier's mixtures (gain since
    # the first iteration, as the digits' levels differ), and the patch prior.
    gains = {label: (x, np.asarray(values) - values[0]) for label, (x, values) in curves.items()}
    figure(
        "em_curve.png",
        "EM log-likelihood per iteration",
        lambda path: figure_lines(
            path,
            [
                (gains, f"classifier, K={k} per digit", "increase since iteration 1"),
                (
                    {"patch prior": patch_curve},
                    "patch prior of the denoiser",
                    "mean log-likelihood per patch",
                ),
            ],
            "EM iteration",
            markers=True,
        ),
    )

    total_s = time.perf_counter() - demo_start
    if figures:
        lines += ["## Figures", ""] + [f"![{caption}]({name})" for caption, name in figures] + [""]
    else:
        lines += ["## Figures", "", f"Skipped: matplotlib is not installed ({PLOT_HINT}).", ""]
    lines += [
        f"Run: `gmmfast demo{' --data-dir ' + args.data_dir if args.data_dir else ''}` (gmmfast {__version__}) in {total_s:.0f} s "
        f"on {os.cpu_count()} CPUs ({platform.machine()}, Python {platform.python_version()}).",
        "",
    ]
    report = out / "report.md"
    with atomic_write(report) as fh:  # the previous report survives a failed or interrupted write
        fh.write("\n".join(lines).encode("utf-8"))
    print(f"wrote {report} ({total_s:.0f} s in all)")


def _demo_denoising(
    args: argparse.Namespace, X: np.ndarray, X_test: np.ndarray, figure
) -> tuple[list[str], tuple]:
    """Fit a small patch prior and denoise noisy test digits: report lines (and a figure),
    and the prior's EM curve (iterations, mean log-likelihoods)."""
    sigma, n_images, n_train, n_components = 0.2, 100, 2000, 10
    side = int(round(np.sqrt(X.shape[1])))
    start = time.perf_counter()
    denoiser = PatchDenoiser(
        8,
        n_components,
        max_patches=20_000,
        max_iter=15,
        tol=1e-2,
        random_state=0,
        dtype=np.float32,
        n_threads=args.n_threads,
        verbose=int(args.verbose),
    )
    denoiser.fit(X[:n_train].reshape(-1, side, side))
    fit_s = time.perf_counter() - start
    clean = X_test[:n_images].reshape(-1, side, side).astype(np.float64)
    noisy = clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)
    noisy_psnr = psnr_per_image(noisy, clean).mean()
    print(
        f"denoising: {n_components}-component prior on 8x8 patches of {n_train} digits fitted in {fit_s:.1f} s; "
        f"{n_images} test digits with noise sigma {sigma}: PSNR {noisy_psnr:.2f} dB"
    )
    lines = [
        "## Denoising",
        "",
        f"A mixture of {n_components} Gaussians on 8x8 patches (means removed) of {n_train} training digits, "
        f"fitted in {fit_s:.1f} s, restores {n_images} test digits with Gaussian noise of standard deviation "
        f"{sigma} (pixels in [0, 1]); PSNR averaged over the images, outputs clipped to [0, 1].",
        "",
        "| method | PSNR dB | s |",
        "|---|---|---|",
        f"| noisy input | {noisy_psnr:.2f} | |",
    ]
    rows = [("clean", clean[:8]), ("noisy", noisy[:8])]
    for method in DENOISE_METHODS:
        start = time.perf_counter()
        restored = np.clip(denoiser.denoise(noisy, sigma, method=method), 0.0, 1.0)
        seconds = time.perf_counter() - start
        value = psnr_per_image(restored, clean).mean()
        print(f"  {method}: PSNR {value:.2f} dB ({seconds:.1f} s)")
        lines.append(f"| {method.replace('_', ' ')} | {value:.2f} | {seconds:.1f} |")
        rows.append((method.replace("_", " "), restored[:8]))
    lines.append("")
    figure("denoising.png", "denoising", lambda path: image_grid(path, rows))
    bounds = list(getattr(denoiser.mixture_, "lower_bounds_", []) or [])
    return lines, (np.arange(1, len(bounds) + 1), bounds)


def add_parser(sub: Any) -> None:
    """Register the command on the ``gmmfast`` subparsers ``sub``."""
    demo = sub.add_parser(
        "demo",
        help="fit, classify (also with missing pixels), inpaint and denoise MNIST, cluster non-round clusters; write a report",
        description="The main job end to end: fit a classifier, classify clean and 50%-missing test "
        "digits, inpaint masked digits, denoise noisy ones, cluster non-round synthetic clusters (a "
        "full-covariance mixture against k-means, K chosen by BIC), and write report.md and PNG figures to --out. "
        "On the MNIST sample shipped with gmmfast (under a minute on 2 cores), or on full MNIST with "
        "--data-dir or --download (any MNIST-like IDX set with --data-dir DIR --no-checksum).",
    )
    demo.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory of MNIST IDX files (default: the shipped sample)",
    )
    demo.add_argument(
        "--no-checksum",
        action="store_true",
        help="read --data-dir as any MNIST-like set of 28 x 28 images (Fashion-MNIST, KMNIST, ...) "
        "without checking it against MNIST's checksums",
    )
    demo.add_argument(
        "--download",
        action="store_true",
        help="use full MNIST, downloading it into the cache (~/.cache/gmmfast/mnist) if it is not "
        "found (needs pooch: pip install 'gmmfast[download]')",
    )
    demo.add_argument(
        "--out",
        default="gmmfast-demo",
        metavar="DIR",
        help="directory for report.md and figures (default: gmmfast-demo)",
    )
    demo.add_argument(
        "--n-components",
        type=positive_int,
        default=None,
        help="Gaussians per digit (default 2 on the sample, 10 on full MNIST: the demo sizes its "
        "model to its data, where the library's GMMClassifier defaults to 1)",
    )
    demo.add_argument(
        "--k-sweep",
        type=k_sweep,
        default=None,
        metavar="K1,K2,...",
        help="also fit these K for the accuracy-vs-K table and figure (default 1 on the sample, none on "
        "full MNIST; 'none' to skip; each K adds a classifier fit, e.g. 1,3,4)",
    )
    add_common_options(demo)
    demo.set_defaults(func=run, check=check)
