"""The ``gmmfast`` command: a demo; classification, inpainting and denoising on files; benchmarks.

Run ``gmmfast --help`` (or ``python -m gmmfast --help``), and
``gmmfast COMMAND --help`` for one command. Every subcommand ends with exit
status 0, or prints one line ``gmmfast: error: ...`` and exits with status
2 on bad input (missing file, wrong keys or shapes); Ctrl-C stops with
status 130. Progress bars (tqdm, on standard error) show while fitting when
standard error is a terminal or ``--verbose`` is given.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__, _progress
from ._base import ConvergenceWarning
from ._missing import pixel_mask
from ._plotting import PLOT_HINT, pyplot
from .classifier import GMMClassifier
from .datasets import load_idx_dir, load_mnist, load_mnist_sample
from .denoise import psnr_per_image

# Keys accepted in .npz files of images and labels: the generic names, then
# the split's own (x_train / x_test ...), then the other split's; the first
# present is used.
_GENERIC_IMAGES = ("images", "x", "X", "data", "imgs", "arr_0")
_GENERIC_LABELS = ("labels", "y", "Y", "targets", "label", "arr_1")


def _split_keys(split: str, labels: bool) -> tuple[str, ...]:
    if labels:
        return (f"y_{split}", f"Y_{split}", f"{split}_labels", f"labels_{split}")
    return (f"x_{split}", f"X_{split}", f"{split}_images", f"images_{split}")


def data_keys(split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(image keys, label keys) looked for in an .npz, in order, for ``split``."""
    other = "test" if split == "train" else "train"
    return (_GENERIC_IMAGES + _split_keys(split, False) + _split_keys(other, False),
            _GENERIC_LABELS + _split_keys(split, True) + _split_keys(other, True))


IMAGE_KEYS, LABEL_KEYS = data_keys("train")  # for the help text
MASKS = ("random", "top", "left", "centre", "nan")
DENOISE_METHODS = ("map", "posterior_mean", "epll")
# Float pixels whose maximum exceeds this are taken as 0..255 and scaled to
# [0, 1] (noisy images in [0, 1] may exceed 1; no 0..255 image stays below it).
SCALE_THRESHOLD = 10.0


class UsageError(Exception):
    """Bad input from the command line: reported in one line, no traceback."""


# ------------------------------------------------------------------ data
def _read_arrays(path: str | Path, split: str, *, need_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw images (n, H, W) or (n, pixels) and labels from an .npz or an IDX
    directory; a channel axis of size 1 ((n, H, W, 1) or (n, 1, H, W)) is dropped."""
    image_keys, label_keys = data_keys(split)
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.is_dir():
        images, labels = load_idx_dir(path, split)
    else:
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                image_key = next((k for k in image_keys if k in keys), None)
                label_key = next((k for k in label_keys if k in keys), None)
                if image_key is None:
                    raise UsageError(f"{path}: no images; expected one of the keys {', '.join(image_keys)} (found {', '.join(keys) or 'none'})")
                images = archive[image_key]
                labels = archive[label_key] if label_key else None
        except UsageError:
            raise
        except Exception as exc:  # zip errors, pickled objects, not an npz at all
            raise UsageError(f"{path}: not a readable .npz file ({' '.join(str(exc).split())[:150]})") from None
    if need_labels and labels is None:
        raise UsageError(f"{path}: no labels; expected one of the keys {', '.join(label_keys)}")
    images = np.asarray(images)
    if images.ndim == 4 and 1 in (images.shape[1], images.shape[3]):
        images = images.reshape(images.shape[0], *[n for n in images.shape[1:] if n != 1] or [1, 1])
    if labels is not None and np.ndim(labels) == 2 and 1 in np.shape(labels):
        labels = np.asarray(labels).reshape(-1)
    if images.dtype.kind not in "biuf" or images.ndim not in (2, 3):
        raise UsageError(f"{path}: images must be a numeric array of shape (n, H, W) or (n, pixels); got {images.dtype} {images.shape}")
    if len(images) == 0 or images[0].size == 0:
        raise UsageError(f"{path}: no images (shape {images.shape})")
    if labels is not None and len(labels) != len(images):
        raise UsageError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels


def _scaled(images: np.ndarray) -> np.ndarray:
    """Integer pixels (0..255), or float pixels above ``SCALE_THRESHOLD``, divided by 255."""
    if images.dtype.kind in "biu":
        return images.astype(np.float32) / np.float32(255)
    finite = images[np.isfinite(images)]
    if finite.size and finite.max() > SCALE_THRESHOLD:
        images = images / 255.0
    return np.asarray(images, dtype=np.float32 if images.dtype == np.float32 else np.float64)


def load_images(path: str | Path, split: str, *, need_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Images as float (n, pixels) in [0, 1], and labels, from an .npz or an IDX directory.

    An IDX directory gives its ``split`` ('train' or 'test'); an .npz file
    its first image and label keys of :func:`data_keys` for that split.
    Integer pixels (0..255) are scaled to [0, 1], as are float pixels
    whose maximum is above ``SCALE_THRESHOLD``.
    """
    images, labels = _read_arrays(path, split, need_labels=need_labels)
    return _scaled(images.reshape(len(images), -1)), labels


def load_image_stack(path: str | Path, split: str, *, need_labels: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Images as float (n, H, W) scaled as in :func:`load_images`; (n, pixels)
    arrays must have a square number of pixels. Must be finite."""
    images, labels = _read_arrays(path, split, need_labels=need_labels)
    if images.ndim == 2:
        side = int(round(np.sqrt(images.shape[1])))
        if side * side != images.shape[1]:
            raise UsageError(f"{path}: images of {images.shape[1]} pixels are not square; save them as an (n, H, W) array")
        images = images.reshape(len(images), side, side)
    images = _scaled(images)
    if not np.isfinite(images).all():
        raise UsageError(f"{path}: images contain NaN or infinity")
    return images, labels


def make_observed(images: np.ndarray, mask: str, fraction: float, seed: int) -> np.ndarray:
    """Boolean ``observed`` mask (False = missing): NaN in the data, or a
    :func:`gmmfast._missing.pixel_mask` of the given kind."""
    if mask == "nan":
        return ~np.isnan(images)
    try:
        return pixel_mask(images.shape, mask, fraction, seed)
    except ValueError as exc:
        raise UsageError(f"--mask {mask} --fraction {fraction}: {exc}") from None


def _int_list(text: str) -> int | list[int]:
    """'2' -> 2, '1,2,4' -> [1, 2, 4] (argparse type)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or a comma-separated list of integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values[0] if len(values) == 1 else values


def _k_sweep(text: str) -> list[int]:
    """'none' -> [], '1,3' -> [1, 3], '4' -> [4] (argparse type)."""
    if text.strip().lower() in ("", "none"):
        return []
    values = _int_list(text)
    return values if isinstance(values, list) else [values]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _load_mnist(data_dir: str | None, download: bool) -> tuple[np.ndarray, ...]:
    """Full MNIST (train and test) from --data-dir / $GMMFAST_DATA / the cache; download errors as UsageError."""
    try:
        return load_mnist(data_dir, download=download, kind="both")
    except RuntimeError as exc:  # every mirror failed: one line per mirror in the message
        raise UsageError("; ".join(line.strip() for line in str(exc).splitlines() if line.strip())) from None
    except ValueError as exc:
        if "checksum mismatch" not in str(exc) or not data_dir:
            raise
        raise UsageError(f"{exc}; for another MNIST-like set (Fashion-MNIST, KMNIST, ...) add --no-checksum") from None


def _load_idx_set(data_dir: str) -> tuple[np.ndarray, ...]:
    """Train and test split of any MNIST-like IDX directory of 28 x 28 images, no checksums, pixels in [0, 1]."""
    arrays = []
    for split in ("train", "test"):
        images, labels = load_image_stack(data_dir, split, need_labels=True)
        if images.shape[1:] != (28, 28):
            raise UsageError(f"{data_dir}: the demo needs 28 x 28 images; the {split} images are {images.shape[1:]}")
        arrays += [images.reshape(len(images), -1), np.asarray(labels)]
    return tuple(arrays)


# -------------------------------------------------------------- classifier
def _classifier(args: argparse.Namespace) -> GMMClassifier:
    return GMMClassifier(
        args.n_components, selection=args.selection, reg_covar=args.reg_covar,
        dtype=np.float32 if args.float32 else np.float64, max_iter=args.max_iter, random_state=args.seed,
        n_threads=args.n_threads, verbose=int(args.verbose),
    )


def _load_or_fit(args: argparse.Namespace, load: Callable[[str], Any], fit: Callable[[], Any], missing: str) -> Any:
    """The model in --model (read by ``load``), or ``fit()`` on --train,
    saved to --save-model when given; ``missing`` ends the error when neither is given."""
    if args.model:
        if not Path(args.model).exists():
            raise UsageError(f"{args.model}: no such model file")
        return load(args.model)
    if not args.train:
        raise UsageError(f"give --model FILE, or --train DATA {missing}")
    model = fit()
    if args.save_model:
        model.save(args.save_model)
        print(f"saved the model to {args.save_model}")
    return model


def _model(args: argparse.Namespace, *, train_shifts: bool = False) -> Any:
    """Load --model (a GMMClassifier or a ShiftInvariantClassifier, as
    saved), or fit on --train (and save to --save-model); ``train_shifts``
    fits a ShiftInvariantClassifier on the images and their 1-pixel shifts."""
    from ._io import model_kind
    from .shifts import ShiftInvariantClassifier

    def load(path: str) -> Any:
        if model_kind(path) == ShiftInvariantClassifier._MODEL_KIND:
            return ShiftInvariantClassifier.load(path)
        return GMMClassifier.load(path)

    def fit() -> Any:
        X, y = load_images(args.train, "train", need_labels=True)
        start = time.perf_counter()
        if train_shifts:
            clf = ShiftInvariantClassifier(_classifier(args)).fit(X, y)
            what, counts = f"{len(X)} images and their {len(clf.shifts_) - 1} shifts", clf.classifier_.n_components_
        else:
            clf = _classifier(args).fit(X, y)
            what, counts = f"{len(X)} images", clf.n_components_
        print(f"fitted {len(clf.classes_)} classes, K per class {counts}, on {what} in {time.perf_counter() - start:.1f} s")
        return clf

    return _load_or_fit(args, load, fit, "to fit a model")


# ------------------------------------------------------------ subcommands
def cmd_classify(args: argparse.Namespace) -> None:
    from .shifts import ShiftInvariantClassifier

    if args.shifts == "train" and args.model:
        raise UsageError("--shifts train fits on shifted copies: give --train DATA, or --shifts test with --model")
    clf = _model(args, train_shifts=args.shifts == "train")
    if args.shifts == "test" and isinstance(clf, GMMClassifier):
        clf = ShiftInvariantClassifier.from_fitted(clf)
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
    clf = getattr(clf, "classifier_", clf)  # a shift model inpaints with its mixtures as they are
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
        _figure_inpainting(args.figure, X[:8], {"": (observed[:8], filled[:8])})


def _denoiser(args: argparse.Namespace) -> Any:
    """Load --model, or fit a PatchDenoiser on the clean images of --train (and save it)."""
    from .denoise import PatchDenoiser

    def fit() -> PatchDenoiser:
        images, _ = load_image_stack(args.train, "train")
        if args.max_train_images:
            images = images[: args.max_train_images]
        if min(images.shape[1:]) < args.patch_size:
            raise UsageError(f"{args.train}: images of {images.shape[1]}x{images.shape[2]} pixels are smaller "
                             f"than --patch-size {args.patch_size}")
        model = PatchDenoiser(
            args.patch_size, args.n_components, stride=args.stride, max_patches=args.max_patches,
            max_iter=args.max_iter, reg_covar=args.reg_covar, random_state=args.seed,
            dtype=np.float32 if args.float32 else np.float64, n_threads=args.n_threads, verbose=int(args.verbose),
        )
        start = time.perf_counter()
        model.fit(images)
        print(f"fitted a {args.n_components}-component prior on {args.patch_size}x{args.patch_size} patches "
              f"of {len(images)} images in {time.perf_counter() - start:.1f} s")
        return model

    return _load_or_fit(args, PatchDenoiser.load, fit, "(clean images) to fit a denoiser")


def blur(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Each image convolved with ``kernel``, zero outside (PatchDenoiser.deblur's observation model)."""
    from scipy import ndimage

    return ndimage.convolve(np.asarray(images, np.float64), kernel[None], mode="constant", cval=0.0)


def cmd_denoise(args: argparse.Namespace) -> None:
    from .denoise import gaussian_kernel

    images, _ = load_image_stack(args.images, "test")
    if args.limit:
        images = images[: args.limit]
    reference = None
    if args.reference:
        if args.add_noise:
            raise UsageError("--reference is for inputs that are already noisy; with --add-noise the inputs are the reference")
        reference, _ = load_image_stack(args.reference, "test")
        reference = reference[: len(images)]
        if reference.shape != images.shape:
            raise UsageError(f"{args.reference}: {reference.shape} reference images for {images.shape} inputs")
    if not args.model and min(images.shape[1:]) < args.patch_size:  # before fitting
        raise UsageError(f"{args.images}: images of {images.shape[1]}x{images.shape[2]} pixels are smaller than --patch-size {args.patch_size}")
    model = _denoiser(args)
    if args.no_clip and "clip" in model.get_params():
        model.set_params(clip=None)
    if min(images.shape[1:]) < model.patch_size:
        raise UsageError(f"{args.images}: images of {images.shape[1]}x{images.shape[2]} pixels are smaller than the model's {model.patch_size}x{model.patch_size} patches")
    kernel = gaussian_kernel(args.blur_sigma) if args.blur_sigma else None
    if args.add_noise:
        reference = images
        corrupted = reference if kernel is None else blur(reference, kernel)
        noisy = corrupted + args.sigma * np.random.default_rng(args.seed).standard_normal(reference.shape)
    else:
        noisy = images
    task = "denoised" if kernel is None else f"deblurred (Gaussian blur of {args.blur_sigma} px)"
    start = time.perf_counter()
    if kernel is None:
        restored = model.denoise(noisy, args.sigma, method=args.method)
    else:
        restored = model.deblur(noisy, kernel, args.sigma, method=args.method)
    if not args.no_clip:
        restored = np.clip(restored, 0.0, 1.0)
    height, width = images.shape[1:]
    print(f"{task} {len(images)} images of {height}x{width} (noise sigma {args.sigma}) with {args.method} "
          f"in {time.perf_counter() - start:.1f} s")
    results: dict[str, np.ndarray] = {"restored": restored.astype(np.float32)}
    if args.add_noise:
        results["noisy"] = noisy.astype(np.float32)
    if reference is not None:
        results["psnr_input"], results["psnr"] = psnr_per_image(noisy, reference), psnr_per_image(restored, reference)
        print(f"PSNR {results['psnr_input'].mean():.2f} dB (input) -> {results['psnr'].mean():.2f} dB ({args.method}), mean over images")
    if args.out:
        np.savez_compressed(args.out, **results)
        print(f"wrote {args.out}")
    if args.figure:
        rows = [] if reference is None else [("clean", reference[:8])]
        rows += [("blurred + noisy" if kernel is not None else "noisy", noisy[:8]), (args.method.replace("_", " "), restored[:8])]
        _image_grid(args.figure, rows)


# ------------------------------------------------------------------- bench
def _benchmark_suite(given: str | None) -> Path | None:
    """The pytest-benchmark suite: --benchmarks DIR, else benchmarks/ beside the package (a source checkout)."""
    if given:
        suite = Path(given)
        if not (suite / "conftest.py").is_file():
            raise UsageError(f"--benchmarks {given}: not a benchmark directory (no conftest.py)")
        return suite
    suite = Path(__file__).resolve().parents[1] / "benchmarks"
    return suite if (suite / "conftest.py").is_file() and any(suite.glob("bench_*.py")) else None


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise UsageError("gmmfast bench compares with scikit-learn, which is not installed: pip install 'gmmfast[bench]'") from None
    suite = None if args.quick else _benchmark_suite(args.benchmarks)
    if suite is not None:
        missing = [name for name in ("pytest", "pytest_benchmark") if importlib.util.find_spec(name) is None]
        if missing:
            print(f"found the benchmark suite in {suite}, but {' and '.join(missing)} is not installed "
                  "(pip install 'gmmfast[bench]'); running the quick comparison instead")
            suite = None
    if suite is None:
        _quick_bench(args)
        return 0
    command = [sys.executable, "-m", "pytest", str(suite.resolve()), "-p", "no:cacheprovider"]
    if args.data_dir:
        command += ["--mnist-dir", str(Path(args.data_dir).resolve())]
    if args.bench_n:
        command += ["--bench-n", str(args.bench_n)]
    command += [a for a in args.pytest_args if a != "--"]
    print("running the benchmark suite: " + " ".join(command[1:]), flush=True)
    # From inside the suite: `python -m` puts the working directory first on
    # sys.path, and a source root there would shadow the installed package.
    return subprocess.call(command, cwd=suite)


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

    from . import _gaussian as G
    from .mixture import GaussianMixture
    from ._parallel import effective_n_threads

    if args.data_dir:
        X = _load_mnist(args.data_dir, False)[0]
        source = f"MNIST from {args.data_dir}"
    else:
        X = load_mnist_sample()[0]
        source = "the MNIST sample shipped with gmmfast"
    n = min(args.bench_n or 5000, len(X))
    X64 = np.ascontiguousarray(X[:n], dtype=np.float64)
    K, repeats = args.n_components, args.repeats
    print(f"gmmfast {__version__} vs scikit-learn {sklearn.__version__}: {n} images of {X64.shape[1]} pixels from {source}, "
          f"K={K} full covariances; medians of {repeats} runs after a warm-up")
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"gmmfast threads {effective_n_threads(args.n_threads)}, Python {platform.python_version()}, NumPy {np.__version__}")
    reference = GaussianMixture(K, max_iter=3, random_state=0, n_threads=args.n_threads).fit(X64)
    params = (reference.weights_, reference.means_, reference.covariances_, reference.precisions_cholesky_)

    def make(variant: str):
        if variant == "sklearn":
            model = SkGaussianMixture(K, covariance_type="full")
        else:
            model = GaussianMixture(K, dtype=np.float32 if variant.endswith("f32") else np.float64, n_threads=args.n_threads)

        def restore() -> None:
            model.weights_, model.means_, model.covariances_, model.precisions_cholesky_ = (p.copy() for p in params)
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
                    resp, _ = model._estimate(data, G.MODE_RESP)
                    model._m_step(data, resp)
            seconds = _times(score, repeats) if case == "score_samples" else _times(step, repeats, restore)
            base = seconds if variant == "sklearn" else base
            rows.append((case, variant, seconds, (base[0] / seconds[0], base[1] / seconds[1])))
    print()
    print(f"{'case':<16}{'variant':<14}{'median s':>10}{'(min s)':>10}   speed-up vs scikit-learn, median (min)")
    for case, variant, (median, least), (ratio, ratio_min) in rows:
        print(f"{case:<16}{variant:<14}{median:>10.4f}{f'({least:.4f})':>10}   {ratio:.2f}x ({ratio_min:.2f}x)")
    print("speed-up = scikit-learn time / gmmfast time; the min ratio is less sensitive to other load on the machine")
    if importlib.util.find_spec("skimage") is None:
        print("\nscikit-image is not installed: no patch or denoising comparison (pip install scikit-image)")
        return
    _quick_bench_skimage(args, repeats)


def _quick_bench_skimage(args: argparse.Namespace, repeats: int) -> None:
    """Patch extraction, and denoising (time and PSNR), against scikit-image."""
    import skimage
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle
    from skimage.util import view_as_windows

    from .denoise import PatchDenoiser
    from .patches import extract_patches

    X_train, _, X_test, _ = load_mnist_sample()
    n_images = min(1000, args.bench_n or 1000)
    images = X_train[:n_images].reshape(-1, 28, 28).astype(np.float64)
    theirs = _times(lambda: np.ascontiguousarray(view_as_windows(images, (1, 8, 8)).reshape(-1, 64)), repeats)[0]
    ours = _times(lambda: extract_patches(images, 8, 1, n_threads=args.n_threads), repeats)[0]
    print(f"\npatch extraction, all 8x8 patches at stride 1 of {n_images} digits ({441 * n_images:,} patches), scikit-image {skimage.__version__}:")
    print(f"{'view_as_windows + copy':<36}{theirs:>10.4f} s")
    print(f"{'gmmfast.patches.extract_patches':<36}{ours:>10.4f} s{theirs / ours:>10.2f}x")

    sigma, n = 0.2, max(5, min(50, n_images // 20))
    clean = X_test[:n].reshape(-1, 28, 28).astype(np.float64)
    noisy = clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)
    start = time.perf_counter()
    denoiser = PatchDenoiser(8, 10, max_patches=20_000, max_iter=15, tol=1e-2, random_state=0, dtype=np.float32,
                             n_threads=args.n_threads).fit(X_train[:min(2000, 2 * n_images)].reshape(-1, 28, 28))
    fit_s = time.perf_counter() - start
    methods = {
        f"gmmfast {m}": (lambda m=m: denoiser.denoise(noisy, sigma, method=m)) for m in DENOISE_METHODS
    }
    methods["skimage TV (Chambolle, weight 0.15)"] = lambda: np.stack([denoise_tv_chambolle(im, weight=0.15) for im in noisy])
    methods["skimage non-local means"] = lambda: np.stack([
        denoise_nl_means(im, patch_size=5, patch_distance=6, h=0.8 * sigma, sigma=sigma, fast_mode=True) for im in noisy])
    print(f"\ndenoising {n} test digits with Gaussian noise sigma {sigma} (input PSNR {psnr_per_image(noisy, clean).mean():.2f} dB); "
          f"gmmfast's 10-component patch prior fitted in {fit_s:.1f} s (not included):")
    print(f"{'method':<38}{'median s':>10}{'PSNR dB':>10}")
    for name, function in methods.items():
        seconds = _times(function, repeats)[0]
        print(f"{name:<38}{seconds:>10.4f}{psnr_per_image(np.clip(function(), 0, 1), clean).mean():>10.2f}")


# -------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> None:
    demo_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    full = bool(args.data_dir or args.download)
    if args.no_checksum and not args.data_dir:
        raise UsageError("--no-checksum reads --data-dir DIR: give the directory")
    if full:
        if args.no_checksum:
            X, y, X_test, y_test = _load_idx_set(args.data_dir)
            source = f"the IDX files in {args.data_dir}"
        else:
            X, y, X_test, y_test = _load_mnist(args.data_dir, args.download)
            source = f"MNIST from {args.data_dir or 'the cache'}"
        k = args.n_components or 10
        sweep = args.k_sweep or []
    else:
        X, y, X_test, y_test = load_mnist_sample()
        source, k = "the MNIST sample shipped with gmmfast", args.n_components or 2
        sweep = [1] if args.k_sweep is None else args.k_sweep  # K=1 is cheap; more K cost a fit each
    X, X_test = X.reshape(len(X), -1), X_test.reshape(len(X_test), -1)
    print(f"data: {source}: {len(X)} training and {len(X_test)} test images")
    plt = pyplot(required=False)
    if plt is None:
        print(f"figures skipped: matplotlib is not installed ({PLOT_HINT})")
    figures: list[tuple[str, str]] = []  # (caption, file name)

    def figure(name: str, caption: str, draw) -> None:
        if plt is not None and draw(out / name):
            figures.append((caption, name))

    lines = ["# gmmfast demo", "", f"Data: {source} ({len(X)} training, {len(X_test)} test images).", ""]

    # Classification, clean and with half of the pixels missing.
    def fit(n_components: int) -> tuple[GMMClassifier, float]:
        start = time.perf_counter()
        clf = GMMClassifier(n_components, reg_covar=0.05, dtype=np.float32, random_state=0, n_threads=args.n_threads,
                            verbose=int(args.verbose)).fit(X, y)
        return clf, time.perf_counter() - start

    clf, fit_s = fit(k)
    clean = clf.score(X_test, y_test)
    print(f"classifier ({k} Gaussians per digit) fitted in {fit_s:.1f} s: test accuracy {clean:.2%}")
    n = min(len(X_test), 1000)
    observed = make_observed(X_test[:n], "random", 0.5, 0)
    start = time.perf_counter()
    filled_random, predicted = clf.impute(X_test[:n], observed, clip=(0.0, 1.0), return_predictions=True)
    missing = float(np.mean(predicted == y_test[:n]))
    missing_s = time.perf_counter() - start
    print(f"with 50% of each image's pixels missing ({n} images): accuracy {missing:.2%} ({missing_s:.1f} s, with inpainting)")
    lines += ["## Classification", "",
              f"One full-covariance mixture of {k} Gaussians per digit (reg_covar 0.05, float32), fitted in {fit_s:.1f} s.", "",
              "| test images | accuracy |", "|---|---|",
              f"| clean ({len(X_test)}) | {clean:.2%} |",
              f"| 50% of pixels missing, exact marginals ({n}) | {missing:.2%} |", ""]

    # Accuracy against K (clean test images).
    accuracy = {k: clean}
    fit_times = {k: fit_s}
    for kk in sorted(set(sweep) - {k}):
        other, fit_times[kk] = fit(kk)
        accuracy[kk] = other.score(X_test, y_test)
        print(f"  K={kk}: fitted in {fit_times[kk]:.1f} s, test accuracy {accuracy[kk]:.2%}")
    if len(accuracy) > 1:
        lines += ["Accuracy on the clean test images against K (Gaussians per digit):", "",
                  "| K | accuracy | fit s |", "|---|---|---|"]
        lines += [f"| {kk} | {accuracy[kk]:.2%} | {fit_times[kk]:.1f} |" for kk in sorted(accuracy)]
        lines.append("")
        figure("accuracy_vs_k.png", "accuracy against K", lambda path: _figure_lines(
            path, [({"clean test images": (sorted(accuracy), [100 * accuracy[kk] for kk in sorted(accuracy)])},
                    "Classification accuracy against K", "accuracy (%)")],
            "Gaussians per digit (K)", markers=True))

    # EM log-likelihood curves of the main model.
    curves = {f"digit {label}": (np.arange(1, len(e.lower_bounds_) + 1), e.lower_bounds_)
              for label, e in zip(clf.classes_.tolist(), clf.estimators_) if getattr(e, "lower_bounds_", None)}
    iterations = [len(c[1]) for c in curves.values()]
    if iterations:
        lines += [f"EM ran {min(iterations)} to {max(iterations)} iterations per digit (tol 1e-3 on the mean log-likelihood).", ""]

    # Inpainting.
    lines += ["## Inpainting", "", "MSE on the missing pixels (posterior-weighted conditional means, clipped to [0, 1]):", "",
              "| mask (50% of pixels) | gmmfast | mean imputation |", "|---|---|---|"]
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
    figure("inpainting.png", "inpainting", lambda path: _figure_inpainting(path, X_test[:8], shown))

    denoising_lines, patch_curve = _demo_denoising(args, X, X_test, figure)
    lines += denoising_lines
    # EM log-likelihood per iteration: the classifier's mixtures (gain since
    # the first iteration, as the digits' levels differ), and the patch prior.
    gains = {label: (x, np.asarray(values) - values[0]) for label, (x, values) in curves.items()}
    figure("em_curve.png", "EM log-likelihood per iteration", lambda path: _figure_lines(
        path, [(gains, f"classifier, K={k} per digit", "increase since iteration 1"),
               ({"patch prior": patch_curve}, "patch prior of the denoiser", "mean log-likelihood per patch")],
        "EM iteration", markers=True))

    total_s = time.perf_counter() - demo_start
    if figures:
        lines += ["## Figures", ""] + [f"![{caption}]({name})" for caption, name in figures] + [""]
    else:
        lines += ["## Figures", "", f"Skipped: matplotlib is not installed ({PLOT_HINT}).", ""]
    lines += [f"Run: `gmmfast demo{' --data-dir ' + args.data_dir if args.data_dir else ''}` (gmmfast {__version__}) in {total_s:.0f} s "
              f"on {os.cpu_count()} CPUs ({platform.machine()}, Python {platform.python_version()}).", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    print(f"wrote {report} ({total_s:.0f} s in all)")


def _demo_denoising(args: argparse.Namespace, X: np.ndarray, X_test: np.ndarray, figure) -> tuple[list[str], tuple]:
    """Fit a small patch prior and denoise noisy test digits: report lines (and a figure),
    and the prior's EM curve (iterations, mean log-likelihoods)."""
    from .denoise import PatchDenoiser

    sigma, n_images, n_train, n_components = 0.2, 100, 2000, 10
    side = int(round(np.sqrt(X.shape[1])))
    start = time.perf_counter()
    denoiser = PatchDenoiser(8, n_components, max_patches=20_000, max_iter=15, tol=1e-2, random_state=0,
                             dtype=np.float32, n_threads=args.n_threads, verbose=int(args.verbose))
    denoiser.fit(X[:n_train].reshape(-1, side, side))
    fit_s = time.perf_counter() - start
    clean = X_test[:n_images].reshape(-1, side, side).astype(np.float64)
    noisy = clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)
    noisy_psnr = psnr_per_image(noisy, clean).mean()
    print(f"denoising: {n_components}-component prior on 8x8 patches of {n_train} digits fitted in {fit_s:.1f} s; "
          f"{n_images} test digits with noise sigma {sigma}: PSNR {noisy_psnr:.2f} dB")
    lines = ["## Denoising", "",
             f"A mixture of {n_components} Gaussians on 8x8 patches (means removed) of {n_train} training digits, "
             f"fitted in {fit_s:.1f} s, restores {n_images} test digits with Gaussian noise of standard deviation "
             f"{sigma} (pixels in [0, 1]); PSNR averaged over the images, outputs clipped to [0, 1].", "",
             "| method | PSNR dB | s |", "|---|---|---|", f"| noisy input | {noisy_psnr:.2f} | |"]
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
    figure("denoising.png", "denoising", lambda path: _image_grid(path, rows))
    bounds = list(getattr(denoiser.mixture_, "lower_bounds_", []) or [])
    return lines, (np.arange(1, len(bounds) + 1), bounds)


# ----------------------------------------------------------------- figures
def _image_grid(path, rows: Sequence[tuple[str, np.ndarray]]) -> bool:
    """One row of images per (title, images); NaN pixels in red. False (with a note) without matplotlib."""
    plt = pyplot(required=False)
    if plt is None:
        print(f"no figure: matplotlib is not installed ({PLOT_HINT})")
        return False
    n_cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.2 * n_cols, 1.25 * len(rows)), squeeze=False)
    cmap = plt.get_cmap("gray").with_extremes(bad="tab:red")  # missing pixels in red
    for r, (title, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                image = np.asarray(images[c], dtype=np.float64)
                if image.ndim == 1:
                    side = int(round(np.sqrt(image.size)))
                    image = image.reshape(side, -1)
                ax.imshow(image, cmap=cmap, vmin=0, vmax=1)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return True


def _figure_inpainting(path, originals: np.ndarray, panels: dict[str, tuple[np.ndarray, np.ndarray]]) -> bool:
    """Original, then masked / inpainted rows for each mask in ``panels`` ({name: (observed, filled)})."""
    rows = [("original", originals)]
    for name, (obs, fill) in panels.items():
        rows += [(f"masked {name}".strip(), np.where(obs, originals, np.nan)), ("inpainted", fill)]
    return _image_grid(path, rows)


def _figure_lines(path, panels: Sequence[tuple[dict[str, tuple[Sequence[float], Sequence[float]]], str, str]],
                  xlabel: str, markers: bool = False) -> bool:
    """Line plots side by side, one per (series {label: (x, y)}, title, y label); empty panels are left out."""
    plt = pyplot(required=False)
    if plt is None:
        print(f"no figure: matplotlib is not installed ({PLOT_HINT})")
        return False
    panels = [p for p in panels if any(len(values) for _, values in p[0].values())]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    for ax, (series, title, ylabel) in zip(axes[0], panels):
        for label, (x, values) in series.items():
            ax.plot(x, values, marker="o" if markers else None, markersize=3, linewidth=1.2, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7, ncol=2)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return True


# ------------------------------------------------------------------ parser
class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, with status 2, like the other bad input."""

    def error(self, message: str):
        self.exit(2, f"gmmfast: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gmmfast",
        description="Fast Gaussian mixture models for images: classify digits (also with missing pixels), "
        "inpaint and denoise them. Start with `gmmfast demo`; `gmmfast COMMAND --help` explains each command.",
        epilog="Data: an .npz with images (keys: " + ", ".join(IMAGE_KEYS) + ") and labels (keys: "
        + ", ".join(LABEL_KEYS) + "), or a directory of IDX files (MNIST naming: train-images-idx3-ubyte[.gz], ...). "
        "Integer pixels are divided by 255. Exit status: 0 done, 2 bad input (one line on stderr), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"gmmfast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--n-threads", type=_positive_int, default=None, metavar="N", help="threads (default: all cores)")
        p.add_argument("-v", "--verbose", action="store_true",
                       help="progress bars and fitting messages even when stderr is not a terminal")

    demo = sub.add_parser("demo", help="fit, classify (also with missing pixels), inpaint and denoise MNIST; write a report",
                          description="The main job end to end: fit a classifier, classify clean and 50%-missing test "
                          "digits, inpaint masked digits, denoise noisy ones, and write report.md and PNG figures to --out. "
                          "On the MNIST sample shipped with gmmfast (under a minute on 2 cores), or on full MNIST with "
                          "--data-dir or --download (any MNIST-like IDX set with --data-dir DIR --no-checksum).")
    demo.add_argument("--data-dir", metavar="DIR", help="directory of MNIST IDX files (default: the shipped sample)")
    demo.add_argument("--no-checksum", action="store_true",
                      help="read --data-dir as any MNIST-like set of 28 x 28 images (Fashion-MNIST, KMNIST, ...) "
                      "without checking it against MNIST's checksums")
    demo.add_argument("--download", action="store_true",
                      help="use full MNIST, downloading it into the cache (~/.cache/gmmfast/mnist) if it is not found")
    demo.add_argument("--out", default="gmmfast-demo", metavar="DIR", help="directory for report.md and figures (default: gmmfast-demo)")
    demo.add_argument("--n-components", type=_positive_int, default=None,
                      help="Gaussians per digit (default 2 on the sample, 10 on full MNIST)")
    demo.add_argument("--k-sweep", type=_k_sweep, default=None, metavar="K1,K2,...",
                      help="also fit these K for the accuracy-vs-K table and figure (default 1 on the sample, none on "
                      "full MNIST; 'none' to skip; each K adds a classifier fit, e.g. 1,3,4)")
    common(demo)
    demo.set_defaults(func=cmd_demo)

    def model_options(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("model (load one, or fit one)")
        g.add_argument("--model", metavar="FILE", help="a classifier saved by --save-model (.npz)")
        g.add_argument("--train", metavar="DATA", help="training data to fit a classifier on")
        g.add_argument("--save-model", metavar="FILE", help="where to save the fitted classifier (.npz)")
        g.add_argument("--n-components", type=_int_list, default=2, metavar="K[,K...]",
                       help="Gaussians per class (default 2); a list such as 1,2,4 is searched per class (see --selection)")
        g.add_argument("--selection", choices=("bic", "heldout"), default="bic",
                       help="how K is chosen from a list: BIC, or held-out log-likelihood (default bic)")
        g.add_argument("--reg-covar", type=float, default=0.05, help="added to covariance diagonals (default 0.05)")
        g.add_argument("--max-iter", type=_positive_int, default=100, help="EM iterations at most (default 100)")
        g.add_argument("--float32", action="store_true", help="compute in float32 (faster)")
        g.add_argument("--seed", type=int, default=0, help="seed for initialisation and masks (default 0)")

    classify = sub.add_parser("classify", help="classify images, optionally with pixels removed",
                              description="Fit or load a class-conditional GMM classifier and classify --test; "
                              "prints the accuracy when --test has labels.")
    model_options(classify)
    classify.add_argument("--test", required=True, metavar="DATA", help="images to classify (IDX directory: its test split)")
    classify.add_argument("--mask", choices=MASKS, help="remove pixels before classifying (nan: NaN in the data marks them)")
    classify.add_argument("--fraction", type=float, default=0.5, help="share of pixels removed by --mask random (default 0.5)")
    classify.add_argument("--out", metavar="FILE", help="write predictions and log-probabilities (.npz)")
    classify.add_argument("--shifts", choices=("none", "test", "train"), default="none",
                          help="average each class likelihood over the image and its four 1-pixel shifts: 'test' at "
                          "classification only, 'train' also fits on the shifted copies (5x the fitting time; needs --train); "
                          "a model saved with 'train' shifts by itself (default none)")
    common(classify)
    classify.set_defaults(func=cmd_classify)

    inpaint = sub.add_parser("inpaint", help="fill in missing pixels",
                             description="Fit or load a classifier and fill the masked pixels of --images with "
                             "posterior-weighted conditional means.")
    model_options(inpaint)
    inpaint.add_argument("--images", required=True, metavar="DATA", help="images to inpaint (IDX directory: its test split)")
    inpaint.add_argument("--mask", choices=MASKS, default="random", help="which pixels are missing (default random)")
    inpaint.add_argument("--fraction", type=float, default=0.5, help="share of pixels removed by --mask random (default 0.5)")
    inpaint.add_argument("--out", metavar="FILE", help="write the filled images and the mask (.npz)")
    inpaint.add_argument("--figure", metavar="PNG", help="write original / masked / inpainted examples (.png)")
    common(inpaint)
    inpaint.set_defaults(func=cmd_inpaint)

    denoise = sub.add_parser(
        "denoise", help="denoise or deblur images with a patch-mixture prior",
        description="Fit a Gaussian-mixture prior on the patches of clean --train images (or load one with --model) "
        "and restore --images. With --add-noise the --images are clean: noise of --sigma (after a blur of --blur-sigma) "
        "is added first (seed --seed), and PSNR is reported against them; otherwise --images are taken as already "
        "noisy (float pixels in [0, 1] scale) and --reference gives clean images for PSNR.",
        epilog="Example: gmmfast denoise --train mnist/ --images mnist/ --limit 100 --add-noise --sigma 0.2 "
        "--out restored.npz --figure restored.png")
    g = denoise.add_argument_group("model (load one, or fit one)")
    g.add_argument("--model", metavar="FILE", help="a denoiser saved by --save-model (.npz)")
    g.add_argument("--train", metavar="DATA", help="clean images to fit the patch prior on (IDX directory: its train split)")
    g.add_argument("--save-model", metavar="FILE", help="where to save the fitted denoiser (.npz)")
    g.add_argument("--patch-size", type=_positive_int, default=8, help="side of the square patches (default 8)")
    g.add_argument("--n-components", type=_positive_int, default=10, help="Gaussians in the patch mixture (default 10)")
    g.add_argument("--stride", type=_positive_int, default=1, help="step between patches (default 1)")
    g.add_argument("--max-patches", type=_positive_int, default=50_000, help="training patches drawn at most (default 50000)")
    g.add_argument("--max-train-images", type=_positive_int, default=None, metavar="N", help="use the first N training images only")
    g.add_argument("--reg-covar", type=float, default=1e-4, help="added to covariance diagonals (default 1e-4)")
    g.add_argument("--max-iter", type=_positive_int, default=30, help="EM iterations at most (default 30)")
    g.add_argument("--float32", action="store_true", help="compute in float32 (faster)")
    g.add_argument("--seed", type=int, default=0, help="seed for fitting and for --add-noise (default 0)")
    denoise.add_argument("--images", required=True, metavar="DATA", help="images to restore (IDX directory: its test split)")
    denoise.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="restore the first N images only")
    denoise.add_argument("--sigma", type=_positive_float, required=True,
                         help="noise standard deviation, pixels in [0, 1] (e.g. 0.1)")
    denoise.add_argument("--blur-sigma", type=_positive_float, default=None, metavar="PX",
                         help="deblur: the images are blurred by a Gaussian of this standard deviation in pixels")
    denoise.add_argument("--method", choices=DENOISE_METHODS, default="epll",
                         help="map: each patch from its most likely component; posterior_mean: mixture-weighted; "
                         "epll: iterated whole-image estimate (default, slowest)")
    denoise.add_argument("--add-noise", action="store_true", help="--images are clean: corrupt them first")
    denoise.add_argument("--reference", metavar="DATA", help="clean versions of --images, for PSNR (without --add-noise)")
    denoise.add_argument("--no-clip", action="store_true", help="do not clip the restored pixels to [0, 1]")
    denoise.add_argument("--out", metavar="FILE", help="write restored (and noisy) images and PSNR per image (.npz)")
    denoise.add_argument("--figure", metavar="PNG", help="write clean / noisy / restored examples (.png)")
    common(denoise)
    denoise.set_defaults(func=cmd_denoise)

    bench = sub.add_parser(
        "bench", help="time gmmfast against scikit-learn (and scikit-image) on this machine",
        description="Runs the pytest-benchmark suite (benchmarks/ of a source checkout, or --benchmarks DIR) and "
        "prints its speed-ratio table; without the suite, or with --quick, a built-in comparison: "
        "score_samples and one EM iteration against scikit-learn's GaussianMixture, and patch extraction and "
        "denoising against scikit-image when it is installed. Needs scikit-learn (pip install 'gmmfast[bench]').",
        epilog="Arguments after -- go to pytest, e.g. gmmfast bench --bench-n 2000 -- -k score_samples")
    bench.add_argument("--benchmarks", metavar="DIR", help="the benchmark suite's directory (default: benchmarks/ beside the package)")
    bench.add_argument("--quick", action="store_true", help="the built-in comparison, even when the suite is there")
    bench.add_argument("--data-dir", metavar="DIR", help="directory of MNIST IDX files (default: the suite's default, or the shipped sample)")
    bench.add_argument("--bench-n", type=_positive_int, default=None, metavar="N", help="training images timed (default: suite 10000, quick 5000)")
    bench.add_argument("--n-components", type=_positive_int, default=10, help="K of the quick comparison (default 10)")
    bench.add_argument("--repeats", type=_positive_int, default=3, help="timed runs per case in the quick comparison (default 3)")
    bench.add_argument("pytest_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    common(bench)
    bench.set_defaults(func=cmd_bench)

    from ._cli_vae import add_vae_commands  # `gmmfast vae ...`; imports torch only when a command runs
    add_vae_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    verbose = bool(getattr(args, "verbose", False))
    if not verbose:
        warnings.simplefilter("ignore", ConvergenceWarning)
    try:
        with _progress.progress_bars(verbose=verbose):
            code = args.func(args)
    except (UsageError, ValueError, OSError) as exc:
        print(f"gmmfast: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gmmfast: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
