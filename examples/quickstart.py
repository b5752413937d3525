"""
Quickstart: Gaussian mixtures on MNIST digits
=============================================

Runs on the MNIST sample shipped inside gmmfast (5,000 training and 1,000
test images); ``--data-dir DIR`` uses a directory of MNIST IDX files
instead (the full 60,000 / 10,000 split)::

    python examples/quickstart.py [--data-dir ../shared/data/mnist]

It fits (1) an unsupervised 10-component mixture and measures how well
its clusters match the digits, and (2) one mixture per digit, used as a
Bayes classifier (GMMClassifier), which (3) also classifies and inpaints
images with half of their pixels missing. With matplotlib installed, the
figure shows test digits, the same digits with half of their pixels gone, and
the classifier's inpainting.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gmmfast import GaussianMixture, GMMClassifier
from gmmfast.datasets import load_mnist, load_mnist_sample


def main() -> None:
    parser = argparse.ArgumentParser(description="Quickstart: Gaussian mixtures on MNIST digits")
    parser.add_argument("--data-dir", help="directory of MNIST IDX files (default: shipped sample)")
    parser.add_argument(
        "--components", type=int, default=2, help="components per digit (default 2)"
    )
    args = parser.parse_args()

    if args.data_dir:
        X_train, y_train, X_test, y_test = load_mnist(args.data_dir, kind="both")
    else:
        X_train, y_train, X_test, y_test = load_mnist_sample()
    print(
        f"MNIST: {len(X_train)} training and {len(X_test)} test images, {X_train.shape[1]} pixels"
    )

    # (1) Unsupervised: cluster the digits, float32 compute.
    start = time.perf_counter()
    gm = GaussianMixture(
        n_components=10, dtype=np.float32, reg_covar=0.05, max_iter=30, random_state=0
    )
    clusters = gm.fit_predict(X_train)
    purity = sum(np.bincount(y_train[clusters == k]).max() for k in np.unique(clusters)) / len(
        y_train
    )
    print(
        f"10-component mixture: {time.perf_counter() - start:.1f} s, {gm.n_iter_} EM iterations, "
        f"test log-likelihood {gm.score(X_test):.1f} per image, cluster purity {purity:.1%}"
    )

    # (2) Supervised: one mixture per digit, Bayes' rule (GMMClassifier).
    start = time.perf_counter()
    clf = GMMClassifier(args.components, dtype=np.float32, reg_covar=0.05, random_state=0).fit(
        X_train, y_train
    )
    print(
        f"class-conditional mixtures ({args.components} per digit): "
        f"{time.perf_counter() - start:.1f} s, test accuracy {clf.score(X_test, y_test):.2%}"
    )

    # (3) Half of every test image's pixels missing: classify from the
    # pixels that remain (exact marginals), then inpaint the rest.
    n = min(len(X_test), 300)
    rng = np.random.default_rng(0)
    observed = rng.random((n, X_test.shape[1])) >= 0.5
    start = time.perf_counter()
    accuracy = clf.score(X_test[:n], y_test[:n], observed=observed)
    filled = clf.impute(X_test[:n], observed=observed, clip=(0.0, 1.0))
    mse = np.mean((filled - X_test[:n])[~observed] ** 2)
    mean_fill = np.mean((X_train.mean(axis=0) - X_test[:n])[~observed] ** 2)
    print(
        f"50% of pixels missing ({n} test images): accuracy {accuracy:.2%}; inpainting MSE {mse:.4f} "
        f"(mean imputation {mean_fill:.4f}); {time.perf_counter() - start:.1f} s"
    )

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no figure: pip install matplotlib")
        return
    shown = 8
    masked = np.where(observed[:shown], X_test[:shown], 0.5)  # missing pixels in grey
    fig, axes = plt.subplots(3, shown, figsize=(1.3 * shown, 4.2))
    for row, (title, images) in enumerate(
        [("test digit", X_test), ("half missing", masked), ("inpainted", filled)]
    ):
        for col in range(shown):
            axes[row, col].imshow(images[col].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            axes[row, col].set_axis_off()
        axes[row, 0].set_title(title, fontsize=9, loc="left")
    fig.tight_layout()


if __name__ == "__main__":
    main()
