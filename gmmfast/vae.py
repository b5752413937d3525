"""Convolutional VAE whose latent means feed gmmfast's Gaussian mixtures.

Needs PyTorch (``pip install 'gmmfast[vae]'``); ``import gmmfast`` does not.

* :class:`ConvVAE` -- the reference projects' convolutional VAE with any
  latent size: ``fit`` on images in [0, 1], then ``encode`` (latent means as
  a C-contiguous float64 array that :class:`~gmmfast.GaussianMixture` and
  :class:`~gmmfast.GMMClassifier` take directly), ``decode``,
  ``reconstruct``, ``sample`` (from the prior, a latent
  :class:`~gmmfast.GaussianMixture` or one of its components, or a class of
  a latent :class:`~gmmfast.GMMClassifier`), ``save`` and ``load``.
* :class:`VaDE` -- a VAE with a learnable Gaussian-mixture prior in latent
  space, trained jointly (Jiang et al., 2017) from a pretrained
  :class:`ConvVAE` and a diagonal :class:`~gmmfast.GaussianMixture` fitted on
  its latents; clusters by ``argmax_c q(c | x)``.
* :func:`cluster_mapping`, :func:`clustering_scores`,
  :func:`classification_scores` -- Hungarian matching of clusters to labels,
  accuracy, NMI, ARI, macro precision/recall/F1.

Model files are ``torch.save`` dictionaries of tensors and plain values
(format name and version, model kind, configuration, state dict, training
history), read back with ``torch.load(..., weights_only=True)``: nothing is
ever unpickled beyond tensors and builtin containers.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as _exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "gmmfast.vae needs PyTorch; install it with pip install 'gmmfast[vae]' "
        "(or pip install torch)."
    ) from _exc

from ._base import BaseEstimator, check_is_fitted
from ._progress import bar, progress_bars
from ._gaussian import full_covariances
from ._vae_metrics import classification_scores, cluster_mapping, clustering_scores
from ._vae_nets import GMMPrior, VAENet, add_noise, augment, feature_shape, gaussian_kl, reconstruction_loss
from ._validation import check_array, check_random_state, check_scalar
from .mixture import GaussianMixture

__all__ = [
    "ConvVAE",
    "VaDE",
    "check_images",
    "classification_scores",
    "cluster_mapping",
    "clustering_scores",
]

FORMAT_NAME = "gmmfast-torch"
FORMAT_VERSION = 1
MIN_TRAIN_IMAGES = 10


# ---------------------------------------------------------------- helpers
def check_images(images: Any, *, name: str = "images", image_shape: tuple[int, int] | None = None,
                 min_images: int = 1) -> np.ndarray:
    """Validate images with pixels in [0, 1]; return a float32 (n, H, W) copy.

    Parameters
    ----------
    images : array-like of shape (n, H, W), (n, 1, H, W) or (n, H * W)
        Square images when flat.
    name : str
        Named in error messages.
    image_shape : (H, W), optional
        Required shape (a fitted model's).
    min_images : int
        Fewest images accepted.

    Raises
    ------
    ValueError
        Non-numeric data, a wrong shape, too few images, NaN or infinity,
        or values outside [0, 1].
    """
    arr = np.asarray(images)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric; got an array of dtype {arr.dtype}.")
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        n, d = arr.shape
        if image_shape is not None and d == image_shape[0] * image_shape[1]:
            arr = arr.reshape(n, *image_shape)
        else:
            side = math.isqrt(d)
            if side * side != d or d == 0:
                raise ValueError(f"{name} of shape {arr.shape}: {d} pixels per row is not a square image; "
                                 "pass images as (n, H, W).")
            arr = arr.reshape(n, side, side)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (n, H, W) or (n, H * W); got shape {arr.shape}.")
    if image_shape is not None and tuple(arr.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{name} are {arr.shape[1]} x {arr.shape[2]} images; the model was fitted on "
                         f"{image_shape[0]} x {image_shape[1]}.")
    if len(arr) < min_images:
        raise ValueError(f"{name}: {len(arr)} image(s) given, at least {min_images} needed.")
    out = np.array(arr, dtype=np.float32, order="C")  # always a copy: inputs are never modified
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contain NaN or infinity.")
    if out.size and (out.min() < 0.0 or out.max() > 1.0):
        raise ValueError(f"{name} must have pixel values in [0, 1]; found values from {out.min():g} to "
                         f"{out.max():g} (divide 0..255 pixels by 255).")
    return out


def _seed(random_state: Any) -> int:
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@contextlib.contextmanager
def _threads(n_threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count for the duration of a call."""
    if n_threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run with torch's generators seeded, leaving the caller's RNG state as it was."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _plain(value: Any) -> Any:
    """Constructor parameters as plain Python values for a model file."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _write_model(path: str | os.PathLike, kind: str, config: dict, state: dict, extra: dict) -> None:
    from . import __version__

    payload = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": kind, "gmmfast_version": __version__,
        "config": config, "state_dict": {k: v.detach().cpu().clone() for k, v in state.items()},
    }
    payload.update(extra)
    torch.save(payload, path)


def _read_model(path: str | os.PathLike, kind: str) -> dict:
    """Load and check the envelope of a model file written by ``_write_model``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if names and all(name.endswith(".npy") and "/" not in name for name in names):
            raise ValueError(f"{path}: an .npz archive (a GMM model?), not a gmmfast VAE model file "
                             "(those are written by ConvVAE.save and gmmfast vae train).")
    except zipfile.BadZipFile:
        pass  # torch.load says what it is not
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, a pickle of other objects, truncated...
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a gmmfast VAE model file ({first}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a gmmfast VAE model file.")
    version = payload.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version!r} is not supported by this gmmfast "
                         f"(reads versions 1 to {FORMAT_VERSION}).")
    if payload.get("kind") != kind:
        raise ValueError(f"{path}: holds a {payload.get('kind')!r} model, expected {kind!r}.")
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise ValueError(f"{path}: missing or malformed {key!r}.")
    for name, tensor in payload["state_dict"].items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{path}: state dict entry {name!r} is not a tensor.")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{path}: state dict entry {name!r} contains NaN or infinity.")
    return payload


def _load_state(module: nn.Module, state: dict, path: Any) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(f"{path}: the weights do not match the saved configuration ({detail}).") from None


def _history(history: Any, path: Any) -> dict[str, list[float]]:
    if not isinstance(history, dict):
        raise ValueError(f"{path}: malformed 'history'.")
    out = {}
    for key, values in history.items():
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            raise ValueError(f"{path}: malformed history entry {key!r}.")
        out[str(key)] = [float(v) for v in values]
    return out


# ------------------------------------------------------- training engine
_FIT_RESULTS = ("history_", "best_epoch_", "best_val_loss_", "n_epochs_", "seconds_per_epoch_",
                "interrupted_", "n_train_", "n_val_")


class _TorchEstimator(BaseEstimator):
    """Training schedule shared by ConvVAE and VaDE: Adam, ReduceLROnPlateau,
    early stopping on the validation loss, best weights kept, seeded."""

    def _check_training_params(self, min_epochs: int = 1) -> None:
        check_scalar(self.learning_rate, "learning_rate", (int, float), min_value=0, include_min=False)
        check_scalar(self.batch_size, "batch_size", (int, np.integer), min_value=1)
        check_scalar(self.epochs, "epochs", (int, np.integer), min_value=min_epochs)
        check_scalar(self.validation_fraction, "validation_fraction", (int, float), min_value=0, include_min=False)
        if self.validation_fraction >= 1:
            raise ValueError(f"validation_fraction must be < 1; got {self.validation_fraction!r}.")
        check_scalar(self.lr_factor, "lr_factor", (int, float), min_value=0, include_min=False)
        if self.lr_factor >= 1:
            raise ValueError(f"lr_factor must be < 1; got {self.lr_factor!r}.")
        check_scalar(self.lr_patience, "lr_patience", (int, np.integer), min_value=0)
        check_scalar(self.patience, "patience", (int, np.integer), min_value=1)
        check_scalar(self.rotation, "rotation", (int, float), min_value=0)
        check_scalar(self.input_noise, "input_noise", (int, float), min_value=0)
        if not isinstance(self.flip, (bool, np.bool_)):
            raise ValueError(f"flip must be True or False; got {self.flip!r}.")
        if self.n_threads is not None:
            check_scalar(self.n_threads, "n_threads", (int, np.integer), min_value=1)
        self._device()

    def _device(self) -> torch.device:
        if self.device is None or self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must be None, 'auto', 'cpu' or 'cuda[:i]'; got {self.device!r}.") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} asked for, but CUDA is not available.")
        return device

    def _split(self, X: np.ndarray, validation_images: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if validation_images is not None:
            X_val = check_images(validation_images, name="validation_images", image_shape=X.shape[1:])
            return X, X_val
        if len(X) < MIN_TRAIN_IMAGES:
            raise ValueError(f"images: {len(X)} image(s) given; at least {MIN_TRAIN_IMAGES} are needed to "
                             "train with a validation split.")
        n_val = max(1, int(round(self.validation_fraction * len(X))))
        order = np.random.RandomState(seed).permutation(len(X))
        return X[order[n_val:]], X[order[:n_val]]

    def _train(self, module: nn.Module, batch_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               X_train: np.ndarray, X_val: np.ndarray, epochs: int, seed: int, device: torch.device,
               label: str) -> None:
        """Fit ``module`` by minimising the mean of ``batch_loss(input, target)``
        (per-image losses); sets the ``_FIT_RESULTS`` attributes."""
        train = torch.from_numpy(X_train)[:, None]
        val = torch.from_numpy(X_val)[:, None]
        optimizer = torch.optim.Adam(module.parameters(), lr=float(self.learning_rate))
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=float(self.lr_factor), patience=int(self.lr_patience))
        history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "learning_rate": [], "seconds": []}
        best, best_state, best_epoch, wait = math.inf, None, 0, 0
        n_batches = math.ceil(len(train) / self.batch_size)
        interrupted = False
        epoch = 0
        verbose = bool(self.verbose)
        try:
            for epoch in range(1, epochs + 1):
                start = time.perf_counter()
                module.train()
                order = torch.randperm(len(train))
                total = 0.0
                with progress_bars(enabled=verbose), bar(total=n_batches, desc=f"{label} epoch {epoch}/{epochs}",
                                                         unit="batch", leave=False, mininterval=1.0) as epoch_bar:
                    for b in range(n_batches):
                        x = train[order[b * self.batch_size:(b + 1) * self.batch_size]].to(device)
                        target = augment(x, float(self.rotation), bool(self.flip))
                        loss = batch_loss(add_noise(target, float(self.input_noise)), target).mean()
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        value = float(loss.detach())
                        if not math.isfinite(value):
                            raise FloatingPointError(
                                f"the training loss became {value} at epoch {epoch}; lower learning_rate.")
                        total += value * len(x)
                        epoch_bar.update(1)
                        epoch_bar.set_postfix(loss=f"{value:.2f}", refresh=False)
                val_loss = self._evaluate(module, batch_loss, val, seed, device)
                scheduler.step(val_loss)
                seconds = time.perf_counter() - start
                history["train_loss"].append(total / len(train))
                history["val_loss"].append(val_loss)
                history["learning_rate"].append(float(optimizer.param_groups[0]["lr"]))
                history["seconds"].append(seconds)
                improved = val_loss < best
                if improved:
                    best, best_epoch, wait = val_loss, epoch, 0
                    best_state = copy.deepcopy(module.state_dict())
                else:
                    wait += 1
                if verbose:
                    print(f"{label} epoch {epoch}/{epochs}: train loss {total / len(train):.3f}, validation loss "
                          f"{val_loss:.3f}{' (best)' if improved else ''}, lr {history['learning_rate'][-1]:.2g}, "
                          f"{seconds:.1f} s", flush=True)
                if wait >= self.patience:
                    if verbose:
                        print(f"{label}: early stop after epoch {epoch}: no better validation loss in "
                              f"{self.patience} epochs; keeping epoch {best_epoch}", flush=True)
                    break
        except KeyboardInterrupt:
            interrupted = True
            kept = (f"keeping the best model so far (epoch {best_epoch}, validation loss {best:.3f})"
                    if best_state is not None else "no epoch finished: the weights are partly trained")
            print(f"\n{label}: training interrupted during epoch {epoch}; {kept}", file=sys.stderr, flush=True)
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.best_val_loss_ = best
        self.n_epochs_ = len(history["val_loss"])
        self.seconds_per_epoch_ = float(np.mean(history["seconds"])) if history["seconds"] else float("nan")
        self.interrupted_ = interrupted
        self.n_train_, self.n_val_ = len(X_train), len(X_val)

    @torch.no_grad()
    def _evaluate(self, module: nn.Module, batch_loss, val: torch.Tensor, seed: int, device: torch.device) -> float:
        """Mean per-image loss on the validation images, eval mode, with the same
        latent noise every epoch (and the training RNG stream left untouched)."""
        module.eval()
        total = 0.0
        with _seeded(seed + 1, device):
            for b in range(0, len(val), 1024):
                x = val[b:b + 1024].to(device)
                total += float(batch_loss(x, x).sum())
        return total / len(val)


# ------------------------------------------------------------------- VAE
class ConvVAE(_TorchEstimator):
    """Convolutional variational autoencoder for images with pixels in [0, 1].

    The default is the reference architecture: convolutions of 32, 64, 128,
    128 and 256 channels (3 x 3, ReLU, stride 2 at the second and fourth),
    a 512-unit dense layer to the latent mean and log standard deviation,
    a decoder mirroring it with transposed convolutions, dropout 0.2 after
    the dense layers. The loss per image is the binary cross-entropy summed
    over pixels plus ``beta`` times KL(q(z | x) || N(0, I)).

    Training: Adam, the learning rate halved (``lr_factor``) after
    ``lr_patience`` epochs without a better validation loss, early stopping
    after ``patience`` such epochs, a ``validation_fraction`` of the images
    held out, and the weights of the best validation epoch kept. Ctrl-C
    stops training and keeps the best weights so far. Seeded runs on the
    CPU are repeatable (same thread count).

    Parameters
    ----------
    latent_dim : int, default=2
    channels : sequence of int, default=(32, 64, 128, 128, 256)
        Output channels of the encoder's convolutions (the decoder mirrors them).
    strides : sequence of {1, 2} or None, default=None
        Stride of each convolution; every stride-2 layer needs even image
        sides. None alternates 1, 2, 1, 2, ... over ``channels`` (the
        reference (1, 2, 1, 2, 1) for five convolutions).
    hidden_units : int, default=512
        Width of the dense layer between convolutions and latent space.
    dropout : float, default=0.2
    beta : float, default=0.5
        Weight of the KL term.
    learning_rate : float, default=1e-3
    batch_size : int, default=128
    epochs : int, default=100
        Most epochs (early stopping usually ends sooner); ``fit(epochs=...)`` overrides.
    validation_fraction : float, default=0.2
    lr_factor : float, default=0.5
    lr_patience : int, default=5
    patience : int, default=15
        Epochs without a better validation loss before training stops.
    rotation : float, default=0.0
        Augmentation: random rotations of up to this many degrees.
    flip : bool, default=False
        Augmentation: random horizontal flips of half of the images.
    input_noise : float, default=0.0
        Standard deviation of Gaussian noise added to the encoder's input
        (clipped to [0, 1]); the target stays the clean image.
    device : str or None, default=None
        None (or 'auto'): CUDA when available, else the CPU.
    n_threads : int or None, default=None
        torch CPU threads while fitting and predicting (None: torch's setting).
    random_state : int, RandomState, Generator or None, default=None
    verbose : int, default=0
        1: a progress bar per epoch (tqdm when installed) and one line per epoch.

    Attributes
    ----------
    network_ : torch.nn.Module
        The encoder (``network_.encoder``) and decoder (``network_.decoder``).
    image_shape_ : tuple of int
        (H, W) of the training images.
    history_ : dict of lists
        Per epoch: ``train_loss``, ``val_loss`` (per image), ``learning_rate``, ``seconds``.
    best_epoch_ : int
        The epoch whose weights were kept (1-based; 0 if interrupted before any finished).
    best_val_loss_ : float
    n_epochs_ : int
        Epochs run.
    seconds_per_epoch_ : float
        Mean wall time of an epoch, validation included.
    interrupted_ : bool
        True if training was stopped with Ctrl-C.
    n_train_, n_val_ : int
        Training and validation images.
    device_ : torch.device

    Examples
    --------
    >>> from gmmfast import GMMClassifier
    >>> from gmmfast.datasets import load_mnist_sample
    >>> from gmmfast.vae import ConvVAE
    >>> X, y, X_test, y_test = load_mnist_sample()
    >>> vae = ConvVAE(latent_dim=2, epochs=1, random_state=0).fit(X[:300])  # doctest: +SKIP
    >>> Z = vae.encode(X)                                                   # doctest: +SKIP
    >>> clf = GMMClassifier(n_components=1).fit(Z, y)                       # doctest: +SKIP
    """

    _MODEL_KIND = "ConvVAE"

    def __init__(
        self,
        latent_dim: int = 2,
        *,
        channels: tuple[int, ...] = (32, 64, 128, 128, 256),
        strides: tuple[int, ...] | None = None,
        hidden_units: int = 512,
        dropout: float = 0.2,
        beta: float = 0.5,
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        epochs: int = 100,
        validation_fraction: float = 0.2,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        patience: int = 15,
        rotation: float = 0.0,
        flip: bool = False,
        input_noise: float = 0.0,
        device: str | None = None,
        n_threads: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.latent_dim = latent_dim
        self.channels = channels
        self.strides = strides
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.beta = beta
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.validation_fraction = validation_fraction
        self.lr_factor = lr_factor
        self.lr_patience = lr_patience
        self.patience = patience
        self.rotation = rotation
        self.flip = flip
        self.input_noise = input_noise
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ checks
    def _check_params(self) -> None:
        check_scalar(self.latent_dim, "latent_dim", (int, np.integer), min_value=1)
        check_scalar(self.hidden_units, "hidden_units", (int, np.integer), min_value=1)
        check_scalar(self.dropout, "dropout", (int, float), min_value=0)
        if self.dropout >= 1:
            raise ValueError(f"dropout must be < 1; got {self.dropout!r}.")
        check_scalar(self.beta, "beta", (int, float), min_value=0)
        channels = list(self.channels)
        if not channels or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c > 0
                                   for c in channels):
            raise ValueError(f"channels must be a non-empty sequence of positive ints; got {self.channels!r}.")
        strides = self._strides()
        if len(strides) != len(channels) or not all(s in (1, 2) and not isinstance(s, bool) for s in strides):
            raise ValueError(f"strides must give 1 or 2 for each of the {len(channels)} convolutions; "
                             f"got {self.strides!r}.")
        self._check_training_params()

    def _strides(self) -> list:
        """The strides in use: as given, or 1, 2, 1, 2, ... over the convolutions."""
        if self.strides is None:
            return [1 + i % 2 for i in range(len(self.channels))]
        return list(self.strides)

    def _build(self, image_shape: tuple[int, int]) -> VAENet:
        return VAENet(image_shape, [int(c) for c in self.channels], [int(s) for s in self._strides()],
                      int(self.hidden_units), int(self.latent_dim), float(self.dropout))

    def _loss(self, net: VAENet) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        beta = float(self.beta)

        def batch_loss(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            logits, mu, log_sigma, _ = net(inputs)
            return reconstruction_loss(logits, target) + beta * gaussian_kl(mu, log_sigma)

        return batch_loss

    # ----------------------------------------------------------- fitting
    def fit(self, images: Any, y: Any = None, *, epochs: int | None = None,
            validation_images: Any = None) -> "ConvVAE":
        """Train the VAE.

        Parameters
        ----------
        images : array-like of shape (n, H, W) or (n, H * W)
            Pixels in [0, 1]. Not modified.
        y : ignored
        epochs : int, optional
            Overrides the ``epochs`` parameter for this call.
        validation_images : array-like, optional
            Images to select the best epoch on, instead of holding out
            ``validation_fraction`` of ``images``.

        Returns
        -------
        self
        """
        self._check_params()
        epochs = self.epochs if epochs is None else epochs
        check_scalar(epochs, "epochs", (int, np.integer), min_value=1)
        X = check_images(images, min_images=2 if validation_images is not None else MIN_TRAIN_IMAGES)
        feature_shape(X.shape[1:], self.channels, self._strides())  # image size fits the strides
        seed = _seed(self.random_state)
        device = self._device()
        X_train, X_val = self._split(X, validation_images, seed)
        with _threads(self.n_threads), _seeded(seed, device):
            net = self._build(X.shape[1:]).to(device)
            self.network_, self.image_shape_, self.device_ = net, tuple(X.shape[1:]), device
            self._train(net, self._loss(net), X_train, X_val, int(epochs), seed, device, "VAE")
        return self

    # -------------------------------------------------------- inference
    def _check_fitted(self) -> None:
        check_is_fitted(self, "network_")

    @torch.no_grad()
    def encode(self, images: Any, *, return_log_sigma: bool = False,
               batch_size: int = 1024) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Latent means of ``images``: a C-contiguous float64 (n, latent_dim) array.

        Parameters
        ----------
        images : array-like of shape (n, H, W) or (n, H * W)
        return_log_sigma : bool, default=False
            Also return the log standard deviations of q(z | x).
        batch_size : int, default=1024

        Returns
        -------
        mu : ndarray of shape (n, latent_dim), float64
        log_sigma : ndarray of shape (n, latent_dim), float64 (if asked for)
        """
        self._check_fitted()
        X = check_images(images, image_shape=self.image_shape_)
        net = self.network_.eval()
        mus, sigmas = [], []
        with _threads(self.n_threads):
            for b in range(0, len(X), batch_size):
                mu, log_sigma = net.encoder(torch.from_numpy(X[b:b + batch_size])[:, None].to(self.device_))
                mus.append(mu.double().cpu().numpy())
                sigmas.append(log_sigma.double().cpu().numpy())
        empty = np.zeros((0, self.latent_dim))
        mu = np.ascontiguousarray(np.concatenate(mus) if mus else empty)
        if return_log_sigma:
            return mu, np.ascontiguousarray(np.concatenate(sigmas) if sigmas else empty)
        return mu

    @torch.no_grad()
    def decode(self, latents: Any, *, batch_size: int = 1024) -> np.ndarray:
        """Images (n, H, W), float32 in [0, 1], decoded from latent points (n, latent_dim)."""
        self._check_fitted()
        Z = check_array(latents, dtype=np.float32, name="latents", n_features=int(self.latent_dim))
        net = self.network_.eval()
        out = []
        with _threads(self.n_threads):
            for b in range(0, len(Z), batch_size):
                logits = net.decoder(torch.from_numpy(np.array(Z[b:b + batch_size])).to(self.device_))
                out.append(torch.sigmoid(logits)[:, 0].cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def reconstruct(self, images: Any) -> np.ndarray:
        """Decoded latent means of ``images``, float32, in the input's shape ((n, H, W) or (n, H * W))."""
        self._check_fitted()
        shape = np.shape(images)
        out = self.decode(self.encode(images))
        return out.reshape(len(out), -1) if len(shape) == 2 else out

    def sample(self, n_samples: int = 1, *, gmm: Any = None, component: Any = None,
               random_state: Any = None) -> np.ndarray:
        """New images decoded from random latent points.

        Parameters
        ----------
        n_samples : int, default=1
        gmm : GaussianMixture or GMMClassifier fitted on this VAE's latents, optional
            None draws from the prior N(0, I). A GaussianMixture draws from
            the mixture, or from its component ``component`` (an index). A
            GMMClassifier draws from the mixture of class ``component`` (a label).
        component : int or label, optional
        random_state : int, RandomState, Generator or None

        Returns
        -------
        ndarray of shape (n_samples, H, W), float32 in [0, 1]
        """
        self._check_fitted()
        check_scalar(n_samples, "n_samples", (int, np.integer), min_value=1)
        rng = check_random_state(random_state)
        Z = _draw_latents(rng, n_samples, int(self.latent_dim), gmm, component)
        return self.decode(Z)

    # ------------------------------------------------------ persistence
    def _config(self) -> dict[str, Any]:
        return _saved_config(self, ("device", "n_threads"))

    def _fitted_info(self) -> dict[str, Any]:
        return _fit_results(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model (weights, configuration, training history) to ``path``.

        Read it back with :meth:`load`; the file holds tensors and plain
        values only (``torch.load(..., weights_only=True)``).
        """
        self._check_fitted()
        _write_model(path, self._MODEL_KIND, self._config(), self.network_.state_dict(), {
            "image_shape": list(self.image_shape_), "history": self.history_, "fitted": self._fitted_info()})

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> "ConvVAE":
        """Read a model written by :meth:`save`, validating it.

        Parameters
        ----------
        path : str or os.PathLike
        device : str or None
            Where to put the weights (None: CUDA when available, else the CPU).

        Raises
        ------
        FileNotFoundError, ValueError
            A missing file; a file that is not a gmmfast ConvVAE model, has
            a newer format version, a bad configuration, or weights that do
            not match it.
        """
        payload = _read_model(path, cls._MODEL_KIND)
        return cls._from_payload(payload, path, device)

    @classmethod
    def _from_payload(cls, payload: dict, path: Any, device: str | None) -> "ConvVAE":
        model = cls()
        try:
            config = dict(payload["config"])
            for key in ("channels", "strides"):
                if isinstance(config.get(key), list):
                    config[key] = tuple(config[key])
            model.set_params(**config)
            model.device = device
            model._check_params()
        except ValueError as exc:
            raise ValueError(f"{path}: bad configuration: {exc}") from None
        shape = payload.get("image_shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and s > 0 for s in shape)):
            raise ValueError(f"{path}: missing or malformed 'image_shape'.")
        try:
            net = model._build(tuple(shape))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        _load_state(net, payload["state_dict"], path)
        model.device_ = model._device()
        model.network_ = net.to(model.device_).eval()
        model.image_shape_ = tuple(shape)
        model.history_ = _history(payload.get("history", {}), path)
        _restore_fit_results(model, payload, path)
        return model


def _saved_config(model: BaseEstimator, exclude: tuple[str, ...]) -> dict[str, Any]:
    """Constructor parameters as plain values for a model file (a RandomState is not saved)."""
    config = {name: _plain(value) for name, value in model.get_params(deep=False).items() if name not in exclude}
    if not isinstance(config["random_state"], (int, type(None))):
        config["random_state"] = None
    return config


def _fit_results(model: Any) -> dict[str, Any]:
    """The ``_FIT_RESULTS`` attributes but the history, as plain values."""
    return {name: _plain(getattr(model, name)) for name in _FIT_RESULTS if name != "history_"}


def _restore_fit_results(model: Any, payload: dict, path: Any) -> None:
    """Set what :func:`_fit_results` saved (None where a file lacks it)."""
    fitted = payload.get("fitted", {})
    if not isinstance(fitted, dict):
        raise ValueError(f"{path}: malformed 'fitted'.")
    for name in _FIT_RESULTS:
        if name != "history_":
            setattr(model, name, fitted.get(name))


def _draw_latents(rng: np.random.RandomState, n: int, d: int, gmm: Any, component: Any) -> np.ndarray:
    """Latent points from N(0, I), a fitted mixture or one of its components, or a classifier's class."""
    if gmm is None:
        if component is not None:
            raise ValueError("component needs gmm: a GaussianMixture or GMMClassifier fitted on the latents.")
        return rng.standard_normal((n, d))
    if hasattr(gmm, "estimators_") and hasattr(gmm, "classes_"):  # GMMClassifier
        if component is None:
            raise ValueError("sampling from a GMMClassifier needs component=<class label>.")
        matches = np.flatnonzero(np.asarray(gmm.classes_) == component)
        if len(matches) != 1:
            raise ValueError(f"component {component!r} is not one of the classifier's classes "
                             f"{np.asarray(gmm.classes_).tolist()}.")
        gmm, component = gmm.estimators_[int(matches[0])], None
    if not hasattr(gmm, "means_"):
        raise ValueError("gmm must be a fitted GaussianMixture or GMMClassifier.")
    means = np.asarray(gmm.means_, dtype=np.float64)
    if means.shape[1] != d:
        raise ValueError(f"gmm has {means.shape[1]} features; the latent space has {d} dimensions.")
    covs = full_covariances(gmm)
    if component is None:
        counts = rng.multinomial(n, np.asarray(gmm.weights_, dtype=np.float64))
        parts = [rng.multivariate_normal(means[k], covs[k], size=c) for k, c in enumerate(counts) if c]
        Z = np.concatenate(parts)
        return Z[rng.permutation(n)]
    if not isinstance(component, (int, np.integer)) or not 0 <= component < len(means):
        raise ValueError(f"component must be an index in 0..{len(means) - 1}; got {component!r}.")
    return rng.multivariate_normal(means[component], covs[component], size=n)


# ------------------------------------------------------------------ VaDE
class _VaDEModule(nn.Module):
    def __init__(self, net: VAENet, prior: GMMPrior) -> None:
        super().__init__()
        self.vae = net
        self.prior = prior


class VaDE(_TorchEstimator):
    """Variational deep embedding: a VAE with a learnable Gaussian-mixture prior.

    The prior p(c) = pi_c, p(z | c) = N(mu_c, diag(var_c)) lives in the
    latent space and is trained jointly with the encoder and decoder
    (Jiang et al., 2017), starting from a pretrained :class:`ConvVAE` and a
    :class:`~gmmfast.GaussianMixture` (``covariance_type='diag'``) fitted on
    its latent means; each component's starting variances add the mean
    posterior variance of its members, so that the prior describes the
    sampled latents (and unused latent dimensions do not start with a
    near-zero variance). The loss per image is the binary cross-entropy plus
    ``beta`` times KL(q(z, c | x) || p(z, c)) with q(c | x) = p(c | z).
    A cluster is predicted as ``argmax_c q(c | x)``, evaluated at the latent
    mean. Training follows :class:`ConvVAE` (Adam, ReduceLROnPlateau, early
    stopping, best validation epoch kept, Ctrl-C keeps the best so far).

    Parameters
    ----------
    vae : ConvVAE
        A fitted ConvVAE to start from (copied, never modified), or an
        unfitted one, which ``fit`` first trains (a copy) on the same
        training and validation split.
    n_clusters : int, default=10
    beta : float or None, default=None
        Weight of the KL term; None uses the VAE's ``beta``.
    learning_rate : float, default=5e-4
    batch_size, epochs, validation_fraction, lr_factor, lr_patience, patience, rotation, flip, input_noise
        As in :class:`ConvVAE` (``epochs`` default 50).
    gmm_n_init : int, default=5
        Initialisations of the GaussianMixture that starts the prior.
    gmm_reg_covar : float, default=1e-4
        Its ``reg_covar``.
    learn_weights : bool, default=True
        Learn pi; False keeps the initial mixture's weights.
    device, n_threads, random_state, verbose
        As in :class:`ConvVAE`.

    Attributes
    ----------
    vae_ : ConvVAE
        The jointly trained encoder and decoder.
    weights_ : ndarray of shape (n_clusters,)
    means_ : ndarray of shape (n_clusters, latent_dim)
    variances_ : ndarray of shape (n_clusters, latent_dim)
    init_mixture_ : GaussianMixture
        The mixture fitted on the pretrained latents (the starting prior).
    mixture_ : GaussianMixture
        The learned prior as a fitted diagonal GaussianMixture.
    history_, best_epoch_, best_val_loss_, n_epochs_, seconds_per_epoch_, interrupted_, n_train_, n_val_
        As in :class:`ConvVAE`, for the joint training.
    """

    _MODEL_KIND = "VaDE"

    def __init__(
        self,
        vae: ConvVAE | None = None,
        n_clusters: int = 10,
        *,
        beta: float | None = None,
        learning_rate: float = 5e-4,
        batch_size: int = 128,
        epochs: int = 50,
        validation_fraction: float = 0.2,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        patience: int = 15,
        rotation: float = 0.0,
        flip: bool = False,
        input_noise: float = 0.0,
        gmm_n_init: int = 5,
        gmm_reg_covar: float = 1e-4,
        learn_weights: bool = True,
        device: str | None = None,
        n_threads: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.vae = vae
        self.n_clusters = n_clusters
        self.beta = beta
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.validation_fraction = validation_fraction
        self.lr_factor = lr_factor
        self.lr_patience = lr_patience
        self.patience = patience
        self.rotation = rotation
        self.flip = flip
        self.input_noise = input_noise
        self.gmm_n_init = gmm_n_init
        self.gmm_reg_covar = gmm_reg_covar
        self.learn_weights = learn_weights
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self) -> None:
        if not isinstance(self.vae, ConvVAE):
            raise ValueError("VaDE needs vae=ConvVAE(...): a pretrained one, or one for fit to pretrain; "
                             f"got {self.vae!r}.")
        check_scalar(self.n_clusters, "n_clusters", (int, np.integer), min_value=1)
        if self.beta is not None:
            check_scalar(self.beta, "beta", (int, float), min_value=0)
        check_scalar(self.gmm_n_init, "gmm_n_init", (int, np.integer), min_value=1)
        check_scalar(self.gmm_reg_covar, "gmm_reg_covar", (int, float), min_value=0, include_min=False)
        self._check_training_params(min_epochs=0)

    def fit(self, images: Any, y: Any = None, *, epochs: int | None = None,
            validation_images: Any = None) -> "VaDE":
        """Initialise the prior from a GMM on the pretrained latents, then train jointly.

        Parameters
        ----------
        images : array-like of shape (n, H, W) or (n, H * W)
            Pixels in [0, 1]. Not modified.
        y : ignored
        epochs : int, optional
            Overrides ``epochs`` for this call (0 keeps the initial prior and the pretrained VAE).
        validation_images : array-like, optional

        Returns
        -------
        self
        """
        self._check_params()
        epochs = self.epochs if epochs is None else epochs
        check_scalar(epochs, "epochs", (int, np.integer), min_value=0)
        X = check_images(images, min_images=max(self.n_clusters, MIN_TRAIN_IMAGES))
        seed = _seed(self.random_state)
        device = self._device()
        vae = copy.deepcopy(self.vae)
        # One split for pretraining and joint training: the images that pick
        # the best epoch are never trained on.
        X_train, X_val = self._split(X, validation_images, seed)
        if not hasattr(vae, "network_"):
            if self.verbose:
                print("VaDE: pretraining the VAE", flush=True)
            vae.fit(X_train, validation_images=X_val)
        if tuple(vae.image_shape_) != tuple(X.shape[1:]):
            raise ValueError(f"images are {X.shape[1]} x {X.shape[2]}; the VAE was fitted on "
                             f"{vae.image_shape_[0]} x {vae.image_shape_[1]} images.")
        vae.device, vae.n_threads = self.device, self.n_threads
        vae.network_, vae.device_ = vae.network_.to(device), device
        Z, log_sigma = vae.encode(X_train, return_log_sigma=True)
        gm = GaussianMixture(int(self.n_clusters), covariance_type="diag", n_init=int(self.gmm_n_init),
                             reg_covar=float(self.gmm_reg_covar), random_state=seed, max_iter=300,
                             n_threads=self.n_threads).fit(Z)
        self.init_mixture_ = gm
        # The prior models z ~ q(z | x), not only its mean: each component's variance
        # gets the mean posterior variance of its members (law of total variance).
        # Without it, a latent dimension the VAE leaves unused (means ~ 0,
        # sigma ~ 1) starts with a variance of reg_covar and a huge KL.
        resp = gm.predict_proba(Z)
        posterior_var = (resp.T @ np.exp(2.0 * log_sigma)) / np.maximum(resp.sum(0), 1e-12)[:, None]
        variances = gm.covariances_ + posterior_var
        beta = float(vae.beta if self.beta is None else self.beta)
        with _threads(self.n_threads), _seeded(seed, device):
            prior = GMMPrior(gm.weights_, gm.means_, variances).to(device)
            prior.logits.requires_grad_(bool(self.learn_weights))
            module = _VaDEModule(vae.network_, prior)

            def batch_loss(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                logits, mu, log_sigma, z = module.vae(inputs)
                kl, _ = module.prior.kl(mu, log_sigma, z)
                return reconstruction_loss(logits, target) + beta * kl

            if epochs > 0:
                self._train(module, batch_loss, X_train, X_val, int(epochs), seed, device, "VaDE")
            else:
                self.history_ = {"train_loss": [], "val_loss": [], "learning_rate": [], "seconds": []}
                self.best_epoch_, self.best_val_loss_, self.n_epochs_ = 0, math.inf, 0
                self.seconds_per_epoch_, self.interrupted_ = float("nan"), False
                self.n_train_, self.n_val_ = len(X_train), len(X_val)
        module.eval()
        self.vae_ = vae
        self._set_prior(prior)
        return self

    def _set_prior(self, prior: GMMPrior) -> None:
        with torch.no_grad():
            self.weights_ = torch.softmax(prior.logits, 0).double().cpu().numpy()
            self.means_ = prior.means.double().cpu().numpy()
            self.variances_ = prior.log_vars.exp().double().cpu().numpy()
        self.mixture_ = _diag_mixture(self.weights_, self.means_, self.variances_, "VaDE prior")

    # -------------------------------------------------------- inference
    def _check_fitted(self) -> None:
        check_is_fitted(self, "vae_")

    def encode(self, images: Any, **kwargs: Any) -> np.ndarray:
        """Latent means, as :meth:`ConvVAE.encode` of the jointly trained VAE."""
        self._check_fitted()
        return self.vae_.encode(images, **kwargs)

    def decode(self, latents: Any) -> np.ndarray:
        """Images decoded from latent points, as :meth:`ConvVAE.decode`."""
        self._check_fitted()
        return self.vae_.decode(latents)

    def reconstruct(self, images: Any) -> np.ndarray:
        """Decoded latent means, as :meth:`ConvVAE.reconstruct`."""
        self._check_fitted()
        return self.vae_.reconstruct(images)

    def predict_proba(self, images: Any) -> np.ndarray:
        """q(c | x) = p(c | z) at the latent mean, shape (n, n_clusters)."""
        self._check_fitted()
        return self.mixture_.predict_proba(self.encode(images))

    def predict(self, images: Any) -> np.ndarray:
        """The cluster of each image, ``argmax_c q(c | x)``."""
        return np.argmax(self.predict_proba(images), axis=1)

    def sample(self, n_samples: int = 1, *, component: int | None = None, random_state: Any = None) -> np.ndarray:
        """New images from the learned prior, or from its cluster ``component``; (n, H, W) float32."""
        self._check_fitted()
        check_scalar(n_samples, "n_samples", (int, np.integer), min_value=1)
        rng = check_random_state(random_state)
        return self.decode(_draw_latents(rng, n_samples, self.means_.shape[1], self.mixture_, component))

    # ------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model (VAE weights and configuration, prior, history) to ``path``."""
        self._check_fitted()
        config = _saved_config(self, ("vae", "device", "n_threads"))
        state = {f"vae.{k}": v for k, v in self.vae_.network_.state_dict().items()}
        state.update({"prior.weights": torch.from_numpy(self.weights_), "prior.means": torch.from_numpy(self.means_),
                      "prior.variances": torch.from_numpy(self.variances_)})
        init = self.init_mixture_
        state.update({"init.weights": torch.from_numpy(init.weights_), "init.means": torch.from_numpy(init.means_),
                      "init.variances": torch.from_numpy(init.covariances_)})
        _write_model(path, self._MODEL_KIND, config, state, {
            "vae_config": self.vae_._config(), "image_shape": list(self.vae_.image_shape_),
            "vae_history": self.vae_.history_, "vae_fitted": self.vae_._fitted_info(),
            "history": self.history_,
            "fitted": _fit_results(self),
        })

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> "VaDE":
        """Read a model written by :meth:`save`, validating it (see :meth:`ConvVAE.load`)."""
        payload = _read_model(path, cls._MODEL_KIND)
        state = payload["state_dict"]
        vae_payload = {"config": payload.get("vae_config"), "image_shape": payload.get("image_shape"),
                       "state_dict": {k[4:]: v for k, v in state.items() if k.startswith("vae.")},
                       "history": payload.get("vae_history", {}), "fitted": payload.get("vae_fitted", {})}
        if not isinstance(vae_payload["config"], dict):
            raise ValueError(f"{path}: missing or malformed 'vae_config'.")
        vae = ConvVAE._from_payload(vae_payload, path, device)
        model = cls()
        try:
            model.set_params(**payload["config"])
            model.vae, model.device = None, device
            model._check_params_no_vae()
        except ValueError as exc:
            raise ValueError(f"{path}: bad configuration: {exc}") from None
        K, d = int(model.n_clusters), int(vae.latent_dim)
        arrays = {}
        for name, shape in (("weights", (K,)), ("means", (K, d)), ("variances", (K, d))):
            for prefix in ("prior", "init"):
                key = f"{prefix}.{name}"
                if key not in state or tuple(state[key].shape) != shape:
                    raise ValueError(f"{path}: missing or malformed {key!r} (expected shape {shape}).")
                arrays[key] = state[key].double().numpy()
        model.vae_ = vae
        model.weights_, model.means_, model.variances_ = (arrays[f"prior.{n}"] for n in ("weights", "means", "variances"))
        model.mixture_ = _diag_mixture(model.weights_, model.means_, model.variances_, path)
        model.init_mixture_ = _diag_mixture(arrays["init.weights"], arrays["init.means"], arrays["init.variances"], path)
        model.history_ = _history(payload.get("history", {}), path)
        _restore_fit_results(model, payload, path)
        return model

    def _check_params_no_vae(self) -> None:
        vae, self.vae = self.vae, ConvVAE()
        try:
            self._check_params()
        finally:
            self.vae = vae


def _diag_mixture(weights: np.ndarray, means: np.ndarray, variances: np.ndarray, path: Any) -> GaussianMixture:
    """A fitted diagonal :class:`~gmmfast.GaussianMixture` with these parameters (validated)."""
    weights = np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum()
    variances = np.asarray(variances, dtype=np.float64)
    if not (np.isfinite(variances).all() and (variances > 0).all()):
        raise ValueError(f"{path}: variances must be positive and finite.")
    gm = GaussianMixture(len(weights), covariance_type="diag")
    gm._restore({"weights_": weights, "means_": np.asarray(means, dtype=np.float64), "covariances_": variances,
                 "precisions_cholesky_": 1.0 / np.sqrt(variances)}, path)
    return gm
