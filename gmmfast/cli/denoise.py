"""``gmmfast denoise``: denoise or deblur images with a patch-mixture prior."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from ..image import PatchDenoiser, blur, gaussian_kernel, psnr_per_image
from ..image._denoiser import METHODS as DENOISE_METHODS
from ..utils._atomic import npz_out_path, save_npz_atomic
from ._common import (
    UsageError,
    add_common_options,
    bounded_int,
    library_default,
    load_or_fit,
    nonnegative_float,
    positive_float,
    positive_int,
    refuse_given,
)
from ._data import load_image_stack
from ._figures import image_grid


def _denoiser(args: argparse.Namespace) -> Any:
    """Load --model, or fit a PatchDenoiser on the clean images of --train (and save it)."""

    def fit() -> PatchDenoiser:
        images, _ = load_image_stack(args.train, "train")
        if args.max_train_images:
            images = images[: args.max_train_images]
        if min(images.shape[1:]) < args.patch_size:
            raise UsageError(
                f"{args.train}: images of {images.shape[1]}x{images.shape[2]} pixels are smaller "
                f"than --patch-size {args.patch_size}"
            )
        model = PatchDenoiser(
            args.patch_size,
            args.n_components,
            stride=args.stride,
            max_patches=args.max_patches,
            max_iter=args.max_iter,
            tol=args.tol,
            reg_covar=args.reg_covar,
            random_state=args.seed,
            dtype=np.float32 if args.float32 else np.float64,
            n_threads=args.n_threads,
            verbose=int(args.verbose),
        )
        start = time.perf_counter()
        model.fit(images)
        print(
            f"fitted a {args.n_components}-component prior on {args.patch_size}x{args.patch_size} patches "
            f"of {len(images)} images in {time.perf_counter() - start:.1f} s"
        )
        return model

    return load_or_fit(args, PatchDenoiser.load, fit, "(clean images) to fit a denoiser")


#: The options of fitting a denoiser (refused with --model, which loads one).
FIT_OPTIONS = (
    "patch_size",
    "n_components",
    "stride",
    "max_patches",
    "max_train_images",
    "reg_covar",
    "max_iter",
    "tol",
    "float32",
    "save_model",
)


def check(args: argparse.Namespace) -> None:
    """One source of the model, and only the options that apply, before any work."""
    if args.model and args.train:
        raise UsageError("give --model FILE or --train DATA (to fit a denoiser), not both")
    if args.model:
        refuse_given(
            args,
            FIT_OPTIONS,
            "applies to fitting a denoiser with --train, not to one loaded with --model",
        )
        if not args.add_noise:
            refuse_given(
                args, ("seed",), "seeds fitting with --train or --add-noise; neither is used"
            )
    if args.reference and args.add_noise:
        raise UsageError(
            "--reference is for inputs that are already noisy; with --add-noise the inputs are the reference"
        )


def run(args: argparse.Namespace) -> None:
    if args.out:  # the name written and printed, settled before any work (a directory is refused)
        args.out = npz_out_path(args.out, note=print)
    images, _ = load_image_stack(args.images, "test")
    if args.limit:
        images = images[: args.limit]
    reference = None
    if args.reference:
        if args.add_noise:
            raise UsageError(
                "--reference is for inputs that are already noisy; with --add-noise the inputs are the reference"
            )
        reference, _ = load_image_stack(args.reference, "test")
        if args.limit:  # --limit takes the first images of both
            reference = reference[: args.limit]
        # One clean image per input, in order: a PSNR against other images means nothing.
        if len(reference) != len(images):
            raise UsageError(
                f"--reference {args.reference} holds {len(reference)} images but --images "
                f"{args.images} holds {len(images)}"
                + (f" (both cut to --limit {args.limit})" if args.limit else "")
                + "; give one clean image per input"
            )
        if reference.shape != images.shape:
            raise UsageError(
                f"{args.reference}: reference images of {reference.shape[1]}x{reference.shape[2]} "
                f"pixels for inputs of {images.shape[1]}x{images.shape[2]}"
            )
    if not args.model and min(images.shape[1:]) < args.patch_size:  # before fitting
        raise UsageError(
            f"{args.images}: images of {images.shape[1]}x{images.shape[2]} pixels are smaller than --patch-size {args.patch_size}"
        )
    model = _denoiser(args)
    if args.no_clip and "clip" in model.get_params():
        model.set_params(clip=None)
    if min(images.shape[1:]) < model.patch_size:
        raise UsageError(
            f"{args.images}: images of {images.shape[1]}x{images.shape[2]} pixels are smaller than the model's {model.patch_size}x{model.patch_size} patches"
        )
    kernel = gaussian_kernel(args.blur_sigma) if args.blur_sigma else None
    if args.add_noise:
        reference = images
        corrupted = reference if kernel is None else blur(reference, kernel)
        noisy = corrupted + args.sigma * np.random.default_rng(args.seed).standard_normal(
            reference.shape
        )
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
    print(
        f"{task} {len(images)} images of {height}x{width} (noise sigma {args.sigma}) with {args.method} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    results: dict[str, np.ndarray] = {"restored": restored.astype(np.float32)}
    if args.add_noise:
        results["noisy"] = noisy.astype(np.float32)
    if reference is not None:
        results["psnr_input"], results["psnr"] = (
            psnr_per_image(noisy, reference),
            psnr_per_image(restored, reference),
        )
        print(
            f"PSNR {results['psnr_input'].mean():.2f} dB (input) -> {results['psnr'].mean():.2f} dB ({args.method}), mean over images"
        )
    if args.out:
        save_npz_atomic(args.out, compressed=True, **results)
        print(f"wrote {args.out}")
    if args.figure:
        rows = [] if reference is None else [("clean", reference[:8])]
        rows += [
            ("blurred + noisy" if kernel is not None else "noisy", noisy[:8]),
            (args.method.replace("_", " "), restored[:8]),
        ]
        image_grid(args.figure, rows)


def _default(name: str) -> Any:
    """PatchDenoiser's default of ``name``: the command's fitting options share it."""
    return library_default(PatchDenoiser, name)


def add_parser(sub: Any) -> None:
    """Register the command on the ``gmmfast`` subparsers ``sub``."""
    denoise = sub.add_parser(
        "denoise",
        help="denoise or deblur images with a patch-mixture prior",
        description="Fit a Gaussian-mixture prior on the patches of clean --train images (or load one with --model) "
        "and restore --images. With --add-noise the --images are clean: noise of --sigma (after a blur of --blur-sigma) "
        "is added first (seed --seed), and PSNR is reported against them; otherwise --images are taken as already "
        "noisy (float pixels in [0, 1] scale) and --reference gives clean images for PSNR.",
        epilog="Example: gmmfast denoise --train mnist/ --images mnist/ --limit 100 --add-noise --sigma 0.2 "
        "--out restored.npz --figure restored.png",
    )
    g = denoise.add_argument_group("model (load one, or fit one)")
    g.add_argument("--model", metavar="FILE", help="a denoiser saved by --save-model (.npz)")
    g.add_argument(
        "--train",
        metavar="DATA",
        help="clean images to fit the patch prior on (IDX directory: its train split)",
    )
    g.add_argument("--save-model", metavar="FILE", help="where to save the fitted denoiser (.npz)")
    # The fitting options take their defaults from PatchDenoiser (measured there: see its
    # docstring and benchmarks/results/defaults.md); tests/test_defaults.py checks them.
    g.add_argument(
        "--patch-size",
        type=positive_int,
        default=_default("patch_size"),
        help="side of the square patches (default %(default)s)",
    )
    g.add_argument(
        "--n-components",
        type=positive_int,
        default=_default("n_components"),
        help="Gaussians in the patch mixture (default %(default)s)",
    )
    g.add_argument(
        "--stride",
        type=positive_int,
        default=_default("stride"),
        help="step between patches (default %(default)s)",
    )
    g.add_argument(
        "--max-patches",
        type=positive_int,
        default=_default("max_patches"),
        help="training patches drawn at most (default %(default)s)",
    )
    g.add_argument(
        "--max-train-images",
        type=positive_int,
        default=None,
        metavar="N",
        help="use the first N training images only",
    )
    g.add_argument(
        "--reg-covar",
        type=nonnegative_float,
        default=_default("reg_covar"),
        help="added to covariance diagonals (default %(default)s)",
    )
    g.add_argument(
        "--max-iter",
        type=positive_int,
        default=_default("max_iter"),
        help="EM iterations at most (default %(default)s)",
    )
    g.add_argument(
        "--tol",
        type=nonnegative_float,
        default=_default("tol"),
        help="EM stops when the mean log-likelihood per patch gains less than this "
        "(default %(default)s)",
    )
    g.add_argument(
        "--float32", action="store_true", help="compute in float32 (faster; default float64)"
    )
    g.add_argument(
        "--seed",
        type=bounded_int(0, 2**32 - 1),
        default=0,
        help="seed for fitting and for --add-noise (default 0: a run repeats exactly; the "
        "library's random_state=None draws a fresh seed)",
    )
    denoise.add_argument(
        "--images",
        required=True,
        metavar="DATA",
        help="images to restore (IDX directory: its test split)",
    )
    denoise.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="restore the first N images only",
    )
    denoise.add_argument(
        "--sigma",
        type=positive_float,
        required=True,
        help="noise standard deviation, pixels in [0, 1] (e.g. 0.1)",
    )
    denoise.add_argument(
        "--blur-sigma",
        type=positive_float,
        default=None,
        metavar="PX",
        help="deblur: the images are blurred by a Gaussian of this standard deviation in pixels",
    )
    denoise.add_argument(
        "--method",
        choices=DENOISE_METHODS,
        default=library_default(PatchDenoiser.denoise, "method"),
        help="map: each patch from its most likely component; posterior_mean: mixture-weighted; "
        "epll: iterated whole-image estimate (default, slowest)",
    )
    denoise.add_argument(
        "--add-noise", action="store_true", help="--images are clean: corrupt them first"
    )
    denoise.add_argument(
        "--reference",
        metavar="DATA",
        help="clean versions of --images, for PSNR (without --add-noise)",
    )
    denoise.add_argument(
        "--no-clip", action="store_true", help="do not clip the restored pixels to [0, 1]"
    )
    denoise.add_argument(
        "--out", metavar="FILE", help="write restored (and noisy) images and PSNR per image (.npz)"
    )
    denoise.add_argument(
        "--figure", metavar="PNG", help="write clean / noisy / restored examples (.png)"
    )
    add_common_options(denoise)
    denoise.set_defaults(func=run, check=check)
