"""``gmmfast vae``: train a convolutional VAE, reconstruct, classify and cluster in its latent space.

Registered on the main parser by :func:`add_vae_commands`, which imports
nothing heavy: torch is imported inside the commands, so ``gmmfast --help``
works without it (and ``gmmfast vae train`` without torch says how to get it
in one line).

Data files are ``.npz`` archives of images and labels (or a directory of
MNIST IDX files). Images: uint8 0..255 or floats in [0, 1], of shape
(n, 28, 28), (n, 784), (n, 28, 28, 1) or (n, 1, 28, 28). Keys, the first
present wins: images ``images, x, X, data, imgs, arr_0``, then
``x_<split>, X_<split>, <split>_images, images_<split>`` (split ``train``
for training data, ``test`` otherwise), then the other split's; labels
``labels, y, Y, targets, label, arr_1``, then ``y_<split>, Y_<split>,
<split>_labels, labels_<split>``, then the other split's. The reference
assignment's ``mnist_1_4_8_train.npz`` / ``mnist_1_4_8_test.npz`` files
(``x_train``/``y_train``, ``x_test``/``y_test``, or ``images``/``labels``)
are read as they are.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import classification_scores, clustering_scores
from ..mixture import GaussianMixture, GMMClassifier
from ..utils._atomic import npz_out_path, save_npz_atomic
from ..utils._threads import effective_n_threads
from ._common import (
    UsageError,
    bounded_int,
    library_default,
    nonnegative_float,
    nonzero_int,
    positive_float,
    positive_int,
    refuse_given,
)
from ._data import data_keys, load_image_stack

#: Seeds: what numpy's generators take (``vae sample`` adds the class index).
SEED = bounded_int(0, 2**31 - 1)
#: The files ``gmmfast vae train --figures DIR`` writes in DIR.
FIGURE_FILES = ("reconstructions.png", "samples.png", "latent_space.png", "manifold.png")
#: Bounds of the network options, as gmmfast.vae's (checked before anything is built).
LATENT_DIM_MAX, HIDDEN_UNITS_MAX, CHANNEL_MAX, N_CONVOLUTIONS_MAX = 4096, 65536, 4096, 16
_GMM_OPTIONS = ("gmm_components", "covariance_type", "reg_covar", "save_gmm")


def gmm_path(args: argparse.Namespace) -> str:
    """Where ``vae train`` saves the latent classifier: --save-gmm, or beside --save-model."""
    return args.save_gmm or str(Path(args.save_model).with_suffix("")) + "-gmm.npz"


def implied_outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Files a command writes that no output option names (option, path): ``vae train``'s
    default --save-gmm and the figures in --figures; checked against the other files."""
    if getattr(args, "vae_command", None) != "train":
        return []
    out = [] if args.save_gmm else [("--save-gmm (default)", gmm_path(args))]
    if args.figures:
        out += [("--figures", str(Path(args.figures) / name)) for name in FIGURE_FILES]
    return out


def load_data(
    path: str | Path, split: str, *, need_labels: bool, digits: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Images as float32 (n, H, W) in [0, 1] and labels (or None) from an .npz or IDX directory.

    ``digits`` keeps only the images with those labels. Raises
    :class:`~gmmfast.cli.UsageError` with a one-line message for anything wrong.
    """
    images, labels = load_image_stack(path, split, need_labels=need_labels)
    if digits and labels is None:
        raise UsageError(
            f"{path}: --digits needs labels; none of the keys {', '.join(data_keys(split)[1])} is there"
        )
    if images.min() < 0 or images.max() > 1:
        raise UsageError(
            f"{path}: pixel values from {images.min():.3g} to {images.max():.3g}; expected 0..255 or [0, 1]"
        )
    images = images.astype(np.float32, copy=False)
    if digits:
        keep = np.isin(labels, digits)
        if not keep.any():
            raise UsageError(f"{path}: no images of the digits {' '.join(map(str, digits))}")
        images, labels = images[keep], labels[keep]
    return images, labels


def _vae_plots():
    """gmmfast.vae's figure module, imported when a figure is drawn (importing gmmfast.vae imports torch)."""
    from ..vae import _plots

    return _plots


def _torch():
    try:
        from .. import vae
    except ImportError as exc:
        raise UsageError(f"{exc}") from None
    return vae


def _threads(args: argparse.Namespace) -> None:
    if getattr(args, "n_threads", None):
        import torch

        torch.set_num_threads(effective_n_threads(args.n_threads))  # -1 etc. as for the GMM kernels


def _load_vae(path: str, device: str | None):
    vae = _torch()
    if not Path(path).exists():
        raise UsageError(f"{path}: no such model file")
    return vae.ConvVAE.load(path, device=device)


def _fit_classifier(Z: np.ndarray, y: np.ndarray, args: argparse.Namespace):
    return GMMClassifier(
        args.gmm_components,
        covariance_type=args.covariance_type,
        reg_covar=args.reg_covar,
        random_state=args.seed,
        n_threads=args.n_threads,
    ).fit(Z, y)


def _report(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    s = classification_scores(y, predicted)
    print(
        f"accuracy {s['accuracy']:.2%}; macro precision {s['precision']:.2%}, recall {s['recall']:.2%}, "
        f"F1 {s['f1']:.2%} ({len(y)} images)"
    )
    return s


def _cluster_report(Z: np.ndarray, y: np.ndarray, seed: int, n_threads: int | None) -> None:
    k = len(np.unique(y))
    clusters = GaussianMixture(
        k, covariance_type="full", n_init=5, random_state=seed, n_threads=n_threads
    ).fit_predict(Z)
    s = clustering_scores(y, clusters)
    print(
        f"unsupervised GMM (K = {k}) on the latents: clustering accuracy {s['accuracy']:.2%}, "
        f"NMI {s['nmi']:.3f}, ARI {s['ari']:.3f}"
    )


# ------------------------------------------------------------ commands
def check_train(args: argparse.Namespace) -> None:
    """``vae train``'s options that need no data: refused when they do not apply."""
    if args.architecture == "dense":
        refuse_given(
            args,
            ("hidden_units", "channels"),
            "applies to --architecture conv; the dense network does not use it",
        )
    if len(args.channels) > N_CONVOLUTIONS_MAX:
        raise UsageError(
            f"--channels: {len(args.channels)} values; at most {N_CONVOLUTIONS_MAX} convolutions"
        )


def _check_labels_for_gmm(args: argparse.Namespace, y: np.ndarray | None, what: str) -> None:
    """Before any training: the latent classifier can be fitted on these labels."""
    if y is None:
        refuse_given(
            args,
            (*_GMM_OPTIONS, "test"),
            f"needs labels in {what}, which has none: no latent GMM classifier is fitted",
        )
        return
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise UsageError(
            f"{what}: images of one class ({classes.tolist()}); the latent GMM classifier needs at "
            "least 2 (see --digits)"
        )
    if counts.min() < args.gmm_components:
        raise UsageError(
            f"--gmm-components {args.gmm_components}: class {classes[counts.argmin()].item()!r} of {what} "
            f"has only {counts.min()} image(s); give fewer components per class or more images"
        )


def cmd_train(args: argparse.Namespace) -> None:
    vae = _torch()
    _threads(args)
    X, y = load_data(args.train, "train", need_labels=False, digits=args.digits)
    _check_labels_for_gmm(args, y, args.train)
    X_test = y_test = None
    if args.test:  # read now: a bad test file fails before the training, not after
        X_test, y_test = load_data(args.test, "test", need_labels=True, digits=args.digits)
        if X_test.shape[1:] != X.shape[1:]:
            raise UsageError(
                f"{args.test}: images of {X_test.shape[1]} x {X_test.shape[2]}; the training "
                f"images are {X.shape[1]} x {X.shape[2]}"
            )
    model = vae.ConvVAE(
        args.latent_dim,
        architecture=args.architecture,
        channels=tuple(args.channels),
        hidden_units=args.hidden_units,
        beta=args.beta,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        rotation=args.rotation,
        flip=args.flip,
        input_noise=args.input_noise,
        device=args.device,
        random_state=args.seed,
        verbose=int(args.verbose),
    )
    try:
        model._device()
    except ValueError as exc:
        raise UsageError(f"--device: {exc}") from None
    try:  # every parameter and the network's size, before anything is allocated
        model._check_network(tuple(X.shape[1:]), model._check_params(), len(X))
    except ValueError as exc:
        options = (
            "--latent-dim"
            if args.architecture == "dense"
            else "--channels, --hidden-units, --latent-dim"
        )
        raise UsageError(f"{options}: {exc}") from None
    print(
        f"training a VAE (latent size {args.latent_dim}) on {len(X)} images, at most {args.epochs} epochs"
    )
    start = time.perf_counter()
    model.fit(X)
    if model.interrupted_:
        # Ctrl-C: ConvVAE.fit kept the best epoch, but the command was asked for a
        # finished training run, so nothing is saved as if it were one.
        raise KeyboardInterrupt
    took = time.perf_counter() - start
    print(
        f"trained {model.n_epochs_} epochs in {took:.1f} s ({model.seconds_per_epoch_:.1f} s per epoch on "
        f"{model.device_}); best validation loss {model.best_val_loss_:.2f} at epoch {model.best_epoch_}"
    )
    model.save(args.save_model)
    print(f"saved the VAE to {args.save_model}")
    clf = None
    if y is None:
        print("no labels in the training data: no latent GMM classifier fitted")
    else:
        Z = model.encode(X)
        clf = _fit_classifier(Z, y, args)
        print(
            f"latent GMM classifier ({args.gmm_components} Gaussian(s) per class): training accuracy "
            f"{clf.score(Z, y):.2%}"
        )
        clf.save(gmm_path(args))
        print(f"saved the latent GMM classifier to {gmm_path(args)}")
    if clf is not None and X_test is not None:
        _report(y_test, clf.predict(model.encode(X_test)))
    if args.figures:
        _figures(Path(args.figures), model, X, y, clf)


def _figures(out: Path, model, X: np.ndarray, y: np.ndarray | None, clf) -> None:
    try:
        _vae_plots().pyplot()
    except ImportError as exc:
        print(f"no figures: {exc}")
        return
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _vae_plots().plot_reconstructions(
            out / "reconstructions.png", X[:12], model.reconstruct(X[:12])
        )
    ]
    written.append(
        _vae_plots().plot_images(
            out / "samples.png",
            [model.sample(12, random_state=r) for r in range(3)],
            ["prior"] * 3,
            "decoded samples from N(0, I)",
        )
    )
    if y is not None:
        written.append(
            _vae_plots().plot_latent_space(
                out / "latent_space.png",
                model.encode(X),
                y,
                clf,
                "latent means by class, latent GMM classifier ellipses",
            )
        )
    if model.latent_dim == 2:
        written.append(_vae_plots().plot_manifold(out / "manifold.png", model))
    print("wrote " + ", ".join(written))


def cmd_reconstruct(args: argparse.Namespace) -> None:
    _threads(args)
    if args.out:  # the name written and printed, settled before any work (a directory is refused)
        args.out = npz_out_path(args.out, note=print)
    model = _load_vae(args.model, args.device)
    X, y = load_data(args.images, "test", need_labels=False, digits=args.digits)
    start = time.perf_counter()
    Z = model.encode(X)
    R = model.decode(Z)
    print(
        f"reconstructed {len(X)} images in {time.perf_counter() - start:.1f} s; mean squared error "
        f"{np.mean((R - X) ** 2):.5f} per pixel"
    )
    arrays: dict[str, Any] = {"reconstructions": R, "latents": Z}
    if y is not None:
        arrays["labels"] = y
    save_npz_atomic(args.out, compressed=True, **arrays)
    print(f"wrote {args.out} (keys: {', '.join(arrays)})")
    if args.figure:
        try:
            print(f"wrote {_vae_plots().plot_reconstructions(args.figure, X[:12], R[:12])}")
        except ImportError as exc:
            print(f"no figure: {exc}")


def check_classify(args: argparse.Namespace) -> None:
    """``vae classify``: one source of the classifier, and only its options."""
    if args.gmm and args.train:
        raise UsageError("give --gmm FILE or --train DATA (to fit a classifier), not both")
    if args.gmm:
        refuse_given(
            args,
            _GMM_OPTIONS,
            "applies to fitting a classifier with --train, not to one loaded with --gmm",
        )
        if not args.cluster:
            refuse_given(
                args, ("seed",), "seeds fitting with --train or --cluster; neither is asked for"
            )
    elif not args.train:
        raise UsageError("give --gmm FILE (saved by gmmfast vae train), or --train DATA to fit one")


def cmd_classify(args: argparse.Namespace) -> None:
    _threads(args)
    if args.out:  # the name written and printed, settled before any work (a directory is refused)
        args.out = npz_out_path(args.out, note=print)
    model = _load_vae(args.model, args.device)
    X, y = load_data(args.test, "test", need_labels=False, digits=args.digits)
    if args.cluster and y is None:
        raise UsageError(f"--cluster scores the clustering against labels; {args.test} has none")
    if args.gmm:
        if not Path(args.gmm).exists():
            raise UsageError(f"{args.gmm}: no such model file")
        clf = GMMClassifier.load(args.gmm)
        if clf.n_features_in_ != model.latent_dim:
            raise UsageError(
                f"{args.gmm}: the classifier has {clf.n_features_in_} features, the VAE's latent "
                f"space {model.latent_dim} dimensions"
            )
    else:
        X_train, y_train = load_data(args.train, "train", need_labels=True, digits=args.digits)
        _check_labels_for_gmm(args, y_train, args.train)
        clf = _fit_classifier(model.encode(X_train), y_train, args)
        print(f"fitted a latent GMM classifier on {len(X_train)} images")
        if args.save_gmm:
            clf.save(args.save_gmm)
            print(f"saved it to {args.save_gmm}")
    Z = model.encode(X)
    log_proba = clf.predict_log_proba(Z)
    predicted = clf.classes_[log_proba.argmax(axis=1)]
    print(f"classified {len(X)} images")
    if y is not None:
        _report(y, predicted)
        if args.cluster:
            _cluster_report(Z, y, args.seed, args.n_threads)
    if args.out:
        save_npz_atomic(
            args.out,
            compressed=True,
            predictions=predicted,
            log_proba=log_proba,
            classes=clf.classes_,
            latents=Z,
        )
        print(f"wrote {args.out}")


def cmd_sample(args: argparse.Namespace) -> None:
    _threads(args)
    if args.out:  # the name written and printed, settled before any work (a directory is refused)
        args.out = npz_out_path(args.out, note=print)
    model = _load_vae(args.model, args.device)
    gmm = None
    if args.gmm:
        if not Path(args.gmm).exists():
            raise UsageError(f"{args.gmm}: no such model file")
        gmm = GMMClassifier.load(args.gmm)
        labels = gmm.classes_.tolist()
        images = np.concatenate(
            [
                model.sample(args.n, gmm=gmm, component=c, random_state=args.seed + i)
                for i, c in enumerate(labels)
            ]
        )
        sample_labels = np.repeat(labels, args.n)
    else:
        images, sample_labels = model.sample(args.n, random_state=args.seed), None
    arrays = {"images": images} | ({"labels": sample_labels} if sample_labels is not None else {})
    save_npz_atomic(args.out, compressed=True, **arrays)
    print(f"wrote {len(images)} generated images to {args.out}")
    if args.figure:
        rows = [images[i * args.n : (i + 1) * args.n] for i in range(len(images) // args.n)]
        titles = [f"class {c}" for c in gmm.classes_.tolist()] if gmm is not None else ["prior"]
        try:
            print(
                f"wrote {_vae_plots().plot_images(args.figure, rows, titles, 'generated digits')}"
            )
        except ImportError as exc:
            print(f"no figure: {exc}")


# -------------------------------------------------------------- parser
def add_parser(sub: Any) -> None:
    """Add ``gmmfast vae {train,reconstruct,classify,sample}`` to the subparsers ``sub``."""
    keys = data_keys("train")
    vae = sub.add_parser(
        "vae",
        help="convolutional VAE: train, reconstruct, classify in latent space (needs torch)",
        description="A convolutional VAE (PyTorch; pip install 'gmmfast[vae]') whose latent means feed "
        "gmmfast's Gaussian mixtures.",
        epilog="Data: an .npz of images (uint8 or [0, 1]; keys "
        + ", ".join(keys[0][:6])
        + ", x_train/x_test, ...) "
        "and labels (keys "
        + ", ".join(keys[1][:6])
        + ", y_train/y_test, ...), or a directory of MNIST IDX files.",
    )
    vsub = vae.add_subparsers(dest="vae_command", required=True, metavar="VAE_COMMAND")

    def common(p: argparse.ArgumentParser, *, digits: bool = True, seed: bool = True) -> None:
        # Only the options a command uses: --digits reads data, --seed draws something.
        if digits:
            p.add_argument(
                "--digits",
                type=int,
                nargs="+",
                help="keep only images of these labels (e.g. 1 4 8)",
            )
        p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
        p.add_argument(
            "--n-threads",
            type=nonzero_int,
            default=None,
            help="torch CPU threads (default: torch's; -1 all usable CPUs)",
        )
        if seed:
            p.add_argument(
                "--seed",
                type=SEED,
                default=0,
                help="seed (default 0: a run repeats; the library's random_state=None draws a fresh one)",
            )
        p.add_argument(
            "-v", "--verbose", action="store_true", help="progress bar and a line per epoch"
        )

    def gmm_options(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("latent GMM classifier")
        g.add_argument(
            "--gmm-components",
            type=bounded_int(1, 10_000),
            default=library_default(GMMClassifier, "n_components"),
            help="Gaussians per class (default %(default)s)",
        )
        g.add_argument(
            "--covariance-type",
            default=library_default(GMMClassifier, "covariance_type"),
            choices=("full", "tied", "diag", "spherical"),
            help="(default %(default)s)",
        )
        g.add_argument(
            "--reg-covar",
            type=nonnegative_float,
            default=library_default(GMMClassifier, "reg_covar"),
            help="added to covariance diagonals (default %(default)s)",
        )
        g.add_argument("--save-gmm", help="where to save the latent GMM classifier (.npz)")

    train = vsub.add_parser(
        "train",
        help="train a VAE; fit and save a latent GMM classifier when there are labels",
        description="Train a ConvVAE on --train, save it (--save-model), fit a class-conditional "
        "GMM on the latent means and save it (--save-gmm); with --test, print the test accuracy "
        "and macro precision, recall and F1.",
    )
    train.add_argument("--train", required=True, help="training images (.npz or IDX directory)")
    train.add_argument("--test", help="test images with labels to evaluate on")
    train.add_argument("--save-model", default="vae.pt", help="VAE model file (default vae.pt)")
    train.add_argument(
        "--latent-dim",
        type=bounded_int(1, LATENT_DIM_MAX),
        default=2,
        help=f"latent size (default 2, at most {LATENT_DIM_MAX})",
    )
    train.add_argument(
        "--architecture",
        choices=("conv", "dense"),
        default="conv",
        help="conv: the reference convolutional VAE (default); dense: the DEC/VaDE "
        "784-500-500-2000 network, several times faster per epoch on a CPU",
    )
    # The network and training options repeat ConvVAE's defaults as literals (reading
    # them would import torch for `gmmfast --help`); tests/test_defaults.py compares them.
    train.add_argument(
        "--epochs",
        type=positive_int,
        default=100,
        help="most epochs (default 100; early stopping after --patience usually ends sooner)",
    )
    train.add_argument(
        "--patience",
        type=positive_int,
        default=15,
        help="early-stopping patience in epochs (default 15)",
    )
    train.add_argument("--batch-size", type=positive_int, default=128)
    train.add_argument("--learning-rate", type=positive_float, default=1e-3)
    train.add_argument(
        "--beta", type=nonnegative_float, default=0.5, help="weight of the KL term (default 0.5)"
    )
    train.add_argument(
        "--channels",
        type=bounded_int(1, CHANNEL_MAX),
        nargs="+",
        default=[32, 64, 128, 128, 256],
        help="encoder channels, one value per convolution (default 32 64 128 128 256; conv only)",
    )
    train.add_argument(
        "--hidden-units",
        type=bounded_int(1, HIDDEN_UNITS_MAX),
        default=512,
        help="dense layer width (default 512; conv only)",
    )
    train.add_argument(
        "--rotation",
        type=nonnegative_float,
        default=0.0,
        help="augmentation: rotations up to this many degrees",
    )
    train.add_argument("--flip", action="store_true", help="augmentation: random horizontal flips")
    train.add_argument(
        "--input-noise",
        type=nonnegative_float,
        default=0.0,
        help="std of Gaussian noise on the encoder's input",
    )
    train.add_argument(
        "--figures", help="directory for latent-space, reconstruction, sample and manifold figures"
    )
    gmm_options(train)
    common(train)
    train.set_defaults(func=cmd_train, check=check_train)

    rec = vsub.add_parser(
        "reconstruct", help="encode and decode images; write the reconstructions (.npz)"
    )
    rec.add_argument("--model", required=True, help="VAE model file from gmmfast vae train")
    rec.add_argument(
        "--images", required=True, help="images (.npz or IDX directory: its test split)"
    )
    rec.add_argument(
        "--out", required=True, help="output .npz (keys reconstructions, latents, labels)"
    )
    rec.add_argument("--figure", help="originals above reconstructions (.png)")
    common(rec, seed=False)
    rec.set_defaults(func=cmd_reconstruct)

    cls = vsub.add_parser(
        "classify",
        help="classify images with a latent GMM classifier",
        description="Encode --test with the VAE and classify the latent means with --gmm (or one "
        "fitted on --train); prints accuracy and macro precision, recall and F1.",
    )
    cls.add_argument("--model", required=True, help="VAE model file")
    cls.add_argument("--gmm", help="latent GMM classifier (.npz from gmmfast vae train)")
    cls.add_argument(
        "--train", help="fit the latent GMM classifier on these labelled images instead"
    )
    cls.add_argument(
        "--test", required=True, help="images to classify (IDX directory: its test split)"
    )
    cls.add_argument(
        "--cluster",
        action="store_true",
        help="also cluster the test latents with a GMM (K = number of classes, no labels used) "
        "and print Hungarian-matched accuracy, NMI and ARI",
    )
    cls.add_argument("--out", help="write predictions, log-probabilities and latents (.npz)")
    gmm_options(cls)
    common(cls)
    cls.set_defaults(func=cmd_classify, check=check_classify)

    smp = vsub.add_parser(
        "sample", help="generate images from the prior or from each class's latent GMM"
    )
    smp.add_argument("--model", required=True, help="VAE model file")
    smp.add_argument(
        "--gmm", help="latent GMM classifier: N images per class instead of N from the prior"
    )
    smp.add_argument(
        "-n",
        type=bounded_int(1, 100_000),
        default=10,
        help="images (per class with --gmm; default 10, one row of the figure, where the library's "
        "ConvVAE.sample draws 1; at most 100000)",
    )
    smp.add_argument("--out", required=True, help="output .npz (keys images, labels)")
    smp.add_argument("--figure", help="the generated images (.png)")
    common(smp, digits=False)
    smp.set_defaults(func=cmd_sample)
