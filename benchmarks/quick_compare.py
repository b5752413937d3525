"""Quick comparison of gmmfast with scikit-learn (and scikit-image) without pytest.

Run from a source checkout: ``python benchmarks/quick_compare.py [--data-dir DIR] [--bench-n N]``,
or ``gmmfast bench --quick``. It calls private methods of both libraries (one bare EM
step each), which is why it lives with the benchmarks and not in the package.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time

import numpy as np

from gmmfast import __version__
from gmmfast.datasets import load_mnist, load_mnist_sample


def _times(function, repeats: int, setup=None) -> tuple[float, float]:
    """Median and minimum wall time of ``function()`` over ``repeats`` runs, after one warm-up."""
    times = []
    for run in range(repeats + 1):
        if setup is not None:
            setup()
        start = time.perf_counter()
        function()
        if run:
            times.append(time.perf_counter() - start)
    return float(np.median(times)), float(np.min(times))


def _quick_bench(args: argparse.Namespace) -> None:
    """gmmfast vs scikit-learn (and scikit-image) timings on this machine, without pytest."""
    import sklearn
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    from gmmfast import GaussianMixture
    from gmmfast.mixture import _gaussian
    from gmmfast.utils._threads import effective_n_threads

    if args.data_dir:
        X = load_mnist(args.data_dir, kind="both")[0]
        source = f"MNIST from {args.data_dir}"
    else:
        X = load_mnist_sample()[0]
        source = "the MNIST sample shipped with gmmfast"
    n = min(args.bench_n or 5000, len(X))
    X64 = np.ascontiguousarray(X[:n], dtype=np.float64)
    K, repeats = args.n_components, args.repeats
    print(
        f"gmmfast {__version__} vs scikit-learn {sklearn.__version__}: {n} images of {X64.shape[1]} pixels from {source}, "
        f"K={K} full covariances; medians of {repeats} runs after a warm-up"
    )
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"gmmfast threads {effective_n_threads(args.n_threads)}, Python {platform.python_version()}, NumPy {np.__version__}"
    )
    reference = GaussianMixture(K, max_iter=3, random_state=0, n_threads=args.n_threads).fit(X64)
    params = (
        reference.weights_,
        reference.means_,
        reference.covariances_,
        reference.precisions_cholesky_,
    )

    def make(variant: str):
        if variant == "sklearn":
            model = SkGaussianMixture(K, covariance_type="full")
        else:
            model = GaussianMixture(
                K,
                dtype=np.float32 if variant.endswith("f32") else np.float64,
                n_threads=args.n_threads,
            )

        def restore() -> None:
            model.weights_, model.means_, model.covariances_, model.precisions_cholesky_ = (
                p.copy() for p in params
            )
            model.n_features_in_ = X64.shape[1]

        restore()
        return model, restore

    rows = []
    for case in ("score_samples", "em_iteration"):
        base = None
        for variant in ("sklearn", "gmmfast-f64", "gmmfast-f32"):
            model, restore = make(variant)
            if variant == "sklearn":
                data = X64
                score = lambda: model.score_samples(data)  # noqa: E731

                def step(model=model, data=data) -> None:
                    _, log_resp = model._e_step(data)
                    model._m_step(data, log_resp)
            else:
                data = X64.astype(np.float32) if variant.endswith("f32") else X64
                score = lambda: model.score_samples(data)  # noqa: E731

                def step(model=model, data=data) -> None:
                    resp, _ = model._estimate(data, _gaussian.MODE_RESP)
                    model._m_step(data, resp)

            seconds = (
                _times(score, repeats)
                if case == "score_samples"
                else _times(step, repeats, restore)
            )
            base = seconds if variant == "sklearn" else base
            rows.append((case, variant, seconds, (base[0] / seconds[0], base[1] / seconds[1])))
    print()
    print(
        f"{'case':<16}{'variant':<14}{'median s':>10}{'(min s)':>10}   speed-up vs scikit-learn, median (min)"
    )
    for case, variant, (median, least), (ratio, ratio_min) in rows:
        print(
            f"{case:<16}{variant:<14}{median:>10.4f}{f'({least:.4f})':>10}   {ratio:.2f}x ({ratio_min:.2f}x)"
        )
    print(
        "speed-up = scikit-learn time / gmmfast time; the min ratio is less sensitive to other load on the machine"
    )
    if importlib.util.find_spec("skimage") is None:
        print(
            "\nscikit-image is not installed: no patch or denoising comparison (pip install scikit-image)"
        )
        return
    _quick_bench_skimage(args, repeats)


def _quick_bench_skimage(args: argparse.Namespace, repeats: int) -> None:
    """Patch extraction, and denoising (time and PSNR), against scikit-image."""
    import skimage
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle
    from skimage.util import view_as_windows

    from gmmfast import PatchDenoiser
    from gmmfast.image import extract_patches, psnr_per_image

    X_train, _, X_test, _ = load_mnist_sample()
    n_images = min(1000, args.bench_n or 1000)
    images = X_train[:n_images].reshape(-1, 28, 28).astype(np.float64)
    theirs = _times(
        lambda: np.ascontiguousarray(view_as_windows(images, (1, 8, 8)).reshape(-1, 64)), repeats
    )[0]
    ours = _times(lambda: extract_patches(images, 8, 1, n_threads=args.n_threads), repeats)[0]
    print(
        f"\npatch extraction, all 8x8 patches at stride 1 of {n_images} digits ({441 * n_images:,} patches), scikit-image {skimage.__version__}:"
    )
    print(f"{'view_as_windows + copy':<36}{theirs:>10.4f} s")
    print(f"{'gmmfast.patches.extract_patches':<36}{ours:>10.4f} s{theirs / ours:>10.2f}x")

    sigma, n = 0.2, max(5, min(50, n_images // 20))
    clean = X_test[:n].reshape(-1, 28, 28).astype(np.float64)
    noisy = clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)
    start = time.perf_counter()
    denoiser = PatchDenoiser(
        8,
        10,
        max_patches=20_000,
        max_iter=15,
        tol=1e-2,
        random_state=0,
        dtype=np.float32,
        n_threads=args.n_threads,
    ).fit(X_train[: min(2000, 2 * n_images)].reshape(-1, 28, 28))
    fit_s = time.perf_counter() - start
    methods = {
        f"gmmfast {m}": (lambda m=m: denoiser.denoise(noisy, sigma, method=m))
        for m in ("map", "posterior_mean", "epll")
    }
    methods["skimage TV (Chambolle, weight 0.15)"] = lambda: np.stack(
        [denoise_tv_chambolle(im, weight=0.15) for im in noisy]
    )
    methods["skimage non-local means"] = lambda: np.stack(
        [
            denoise_nl_means(
                im, patch_size=5, patch_distance=6, h=0.8 * sigma, sigma=sigma, fast_mode=True
            )
            for im in noisy
        ]
    )
    print(
        f"\ndenoising {n} test digits with Gaussian noise sigma {sigma} (input PSNR {psnr_per_image(noisy, clean).mean():.2f} dB); "
        f"gmmfast's 10-component patch prior fitted in {fit_s:.1f} s (not included):"
    )
    print(f"{'method':<38}{'median s':>10}{'PSNR dB':>10}")
    for name, function in methods.items():
        seconds = _times(function, repeats)[0]
        print(
            f"{name:<38}{seconds:>10.4f}{psnr_per_image(np.clip(function(), 0, 1), clean).mean():>10.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="directory of MNIST IDX files (default: the sample shipped with gmmfast)"
    )
    parser.add_argument(
        "--bench-n", type=int, default=None, help="training images timed (default 5000)"
    )
    parser.add_argument("--n-components", type=int, default=10, help="K (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (default 3)")
    parser.add_argument(
        "--n-threads", type=int, default=None, help="gmmfast threads (default: all usable CPUs)"
    )
    args = parser.parse_args(argv)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print(
            "quick_compare: scikit-learn is not installed: pip install 'gmmfast[bench]'",
            file=sys.stderr,
        )
        return 2
    _quick_bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
