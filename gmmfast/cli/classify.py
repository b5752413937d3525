"""``gmmfast classify``: fit or load a class-conditional GMM classifier and classify images."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from ..mixture import GMMClassifier, ShiftInvariantClassifier
from ..utils._atomic import npz_out_path, save_npz_atomic
from ._common import (
    UsageError,
    add_common_options,
    bounded_int,
    fraction,
    int_list,
    library_default,
    load_or_fit,
    nonnegative_float,
    positive_int,
    refuse_given,
)
from ._data import MASKS, load_images, make_observed


def _new_classifier(args: argparse.Namespace) -> GMMClassifier:
    return GMMClassifier(
        args.n_components,
        selection=args.selection,
        reg_covar=args.reg_covar,
        dtype=np.float32 if args.float32 else np.float64,
        max_iter=args.max_iter,
        random_state=args.seed,
        n_threads=args.n_threads,
        verbose=int(args.verbose),
    )


def load_or_fit_classifier(args: argparse.Namespace, *, train_shifts: bool = False) -> Any:
    """Load --model (a GMMClassifier or a ShiftInvariantClassifier, as
    saved), or fit on --train (and save to --save-model); ``train_shifts``
    fits a ShiftInvariantClassifier on the images and their 1-pixel shifts."""
    from ..utils._model_files import model_kind

    def load(path: str) -> Any:
        if model_kind(path) == ShiftInvariantClassifier._MODEL_KIND:
            return ShiftInvariantClassifier.load(path)
        return GMMClassifier.load(path)

    def fit() -> Any:
        X, y = load_images(args.train, "train", need_labels=True)
        start = time.perf_counter()
        if train_shifts:
            clf = ShiftInvariantClassifier(_new_classifier(args)).fit(X, y)
            what, counts = (
                f"{len(X)} images and their {len(clf.shifts_) - 1} shifts",
                clf.classifier_.n_components_,
            )
        else:
            clf = _new_classifier(args).fit(X, y)
            what, counts = f"{len(X)} images", clf.n_components_
        print(
            f"fitted {len(clf.classes_)} classes, K per class {counts}, on {what} in {time.perf_counter() - start:.1f} s"
        )
        return clf

    return load_or_fit(args, load, fit, "to fit a model")


#: The options of fitting a classifier (refused with --model, which loads one).
FIT_OPTIONS = ("n_components", "selection", "reg_covar", "max_iter", "float32", "save_model")


def check_model_options(args: argparse.Namespace) -> None:
    """classify and inpaint: one source of the model, only the options that apply to it."""
    if args.model and args.train:
        raise UsageError("give --model FILE or --train DATA (to fit a model), not both")
    if args.model:
        refuse_given(
            args,
            FIT_OPTIONS,
            "applies to fitting a model with --train, not to one loaded with --model",
        )
    elif not isinstance(args.n_components, list):
        refuse_given(
            args,
            ("selection",),
            "chooses K from a list of --n-components (such as 1,2,4); one K was given",
        )
    if args.mask != "random":
        refuse_given(args, ("fraction",), "is the share of pixels removed by --mask random")
        if args.model:
            refuse_given(
                args, ("seed",), "seeds fitting with --train or --mask random; neither is used"
            )


def check(args: argparse.Namespace) -> None:
    check_model_options(args)
    if args.shifts == "train" and args.model:
        raise UsageError(
            "--shifts train fits on shifted copies: give --train DATA, or --shifts test with --model"
        )


def run(args: argparse.Namespace) -> None:
    if args.out:  # the name written and printed, settled before any work (a directory is refused)
        args.out = npz_out_path(args.out, note=print)
    clf = load_or_fit_classifier(args, train_shifts=args.shifts == "train")
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
        save_npz_atomic(
            args.out,
            compressed=True,
            predictions=predicted,
            log_proba=log_proba,
            classes=clf.classes_,
        )
        print(f"wrote {args.out}")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options of a classifier to load (--model) or fit (--train)."""
    g = p.add_argument_group("model (load one, or fit one)")
    g.add_argument("--model", metavar="FILE", help="a classifier saved by --save-model (.npz)")
    g.add_argument("--train", metavar="DATA", help="training data to fit a classifier on")
    g.add_argument(
        "--save-model", metavar="FILE", help="where to save the fitted classifier (.npz)"
    )
    # Three defaults differ from GMMClassifier's, for images, each measured on MNIST
    # (benchmarks/results/defaults.md); tests/test_defaults.py lists them with the reasons.
    g.add_argument(
        "--n-components",
        type=int_list,
        default=2,
        metavar="K[,K...]",
        help="Gaussians per class (default 2: two per digit classify MNIST better than one, for "
        "twice the fitting time; the library's GMMClassifier defaults to 1); a list such as 1,2,4 "
        "is searched per class (see --selection)",
    )
    g.add_argument(
        "--selection",
        choices=("bic", "heldout"),
        default="heldout",
        help="how K is chosen from a list: heldout, by held-out log-likelihood (default), or bic "
        "(the library's default; on MNIST pixels it picks K = 1 for every digit and classifies "
        "worse)",
    )
    g.add_argument(
        "--reg-covar",
        type=nonnegative_float,
        default=0.05,
        help="added to covariance diagonals (default 0.05, measured on MNIST for pixels in [0, 1]; "
        "the library's 1e-6 assumes no data scale)",
    )
    g.add_argument(
        "--max-iter",
        type=positive_int,
        default=library_default(GMMClassifier, "max_iter"),
        help="EM iterations at most (default %(default)s)",
    )
    g.add_argument(
        "--float32", action="store_true", help="compute in float32 (faster; default float64)"
    )
    g.add_argument(
        "--seed",
        type=bounded_int(0, 2**32 - 1),
        default=0,
        help="seed for initialisation and masks (default 0: a run repeats exactly; the "
        "library's random_state=None draws a fresh seed)",
    )


def add_parser(sub: Any) -> None:
    """Register the command on the ``gmmfast`` subparsers ``sub``."""
    classify = sub.add_parser(
        "classify",
        help="classify images, optionally with pixels removed",
        description="Fit or load a class-conditional GMM classifier and classify --test; "
        "prints the accuracy when --test has labels.",
    )
    add_model_options(classify)
    classify.add_argument(
        "--test",
        required=True,
        metavar="DATA",
        help="images to classify (IDX directory: its test split)",
    )
    classify.add_argument(
        "--mask",
        choices=MASKS,
        help="remove pixels before classifying (nan: NaN in the data marks them)",
    )
    classify.add_argument(
        "--fraction",
        type=fraction,
        default=0.5,
        help="share of pixels removed by --mask random (default 0.5)",
    )
    classify.add_argument(
        "--out", metavar="FILE", help="write predictions and log-probabilities (.npz)"
    )
    classify.add_argument(
        "--shifts",
        choices=("none", "test", "train"),
        default="none",
        help="average each class likelihood over the image and its four 1-pixel shifts: 'test' at "
        "classification only, 'train' also fits on the shifted copies (5x the fitting time; needs --train); "
        "a model saved with 'train' shifts by itself (default none)",
    )
    add_common_options(classify)
    classify.set_defaults(func=run, check=check)
