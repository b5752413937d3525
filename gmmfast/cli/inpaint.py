"""``gmmfast inpaint``: fill missing pixels with posterior-weighted conditional means."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from ..utils._atomic import npz_out_path, save_npz_atomic
from ._common import (
    add_common_options,
    fraction,
)
from ._data import MASKS, load_images, make_observed
from ._figures import figure_inpainting
from .classify import add_model_options, check_model_options, load_or_fit_classifier


def run(args: argparse.Namespace) -> None:
    if args.out:  # the name written and printed, settled before any work (a directory is refused)
        args.out = npz_out_path(args.out, note=print)
    clf = load_or_fit_classifier(args)
    clf = getattr(clf, "classifier_", clf)  # a shift model inpaints with its mixtures as they are
    X, _ = load_images(args.images, "test", need_labels=False)
    observed = make_observed(X, args.mask, args.fraction, args.seed)
    start = time.perf_counter()
    filled = clf.impute(X, observed=observed, clip=(0.0, 1.0))
    print(
        f"inpainted {len(X)} images ({1 - observed.mean():.0%} of pixels missing) in {time.perf_counter() - start:.1f} s"
    )
    if args.mask != "nan" and np.isfinite(X).all():
        print(f"MSE on the missing pixels {np.mean((filled - X)[~observed] ** 2):.5f}")
    if args.out:
        save_npz_atomic(args.out, compressed=True, filled=filled, observed=observed)
        print(f"wrote {args.out}")
    if args.figure:
        figure_inpainting(args.figure, X[:8], {"": (observed[:8], filled[:8])})


def add_parser(sub: Any) -> None:
    """Register the command on the ``gmmfast`` subparsers ``sub``."""
    inpaint = sub.add_parser(
        "inpaint",
        help="fill in missing pixels",
        description="Fit or load a classifier and fill the masked pixels of --images with "
        "posterior-weighted conditional means.",
    )
    add_model_options(inpaint)
    inpaint.add_argument(
        "--images",
        required=True,
        metavar="DATA",
        help="images to inpaint (IDX directory: its test split)",
    )
    inpaint.add_argument(
        "--mask", choices=MASKS, default="random", help="which pixels are missing (default random)"
    )
    inpaint.add_argument(
        "--fraction",
        type=fraction,
        default=0.5,
        help="share of pixels removed by --mask random (default 0.5)",
    )
    inpaint.add_argument(
        "--out", metavar="FILE", help="write the filled images and the mask (.npz)"
    )
    inpaint.add_argument(
        "--figure", metavar="PNG", help="write original / masked / inpainted examples (.png)"
    )
    add_common_options(inpaint)
    inpaint.set_defaults(func=run, check=check_model_options)
