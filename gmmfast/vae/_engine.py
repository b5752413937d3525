"""The training engine shared by ConvVAE and VaDE: image checks, seeding, torch threads, and the
Adam / ReduceLROnPlateau / early-stopping loop that keeps the best weights."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..utils._estimator import BaseEstimator
from ..utils._progress import asked, bar, on_interrupt, write
from ..utils._validation import check_random_state, check_scalar
from ._nets import (
    add_noise,
    augment,
)

MIN_TRAIN_IMAGES = 10

#: Budget of a network's size, checked before any of it is allocated.
#: Weights: at most 100 million parameters (400 MB of float32); training
#: holds about five copies of them (weights, gradients, Adam's two moments,
#: the best epoch's), so about 2 GB.
MAX_PARAMETERS = 100_000_000
#: Activations of one training batch: at most 2**28 floats (1 GiB) over the
#: network's layers, counted for ``min(batch_size, training images)`` images;
#: the backward pass about doubles it.
MAX_ACTIVATIONS = 1 << 28


def int_sequence(
    value: Any, name: str, *, upper: int, max_len: int, allow_empty: bool = False
) -> tuple[int, ...]:
    """A sequence parameter of positive ints, read exactly once, as a tuple.

    Generators, iterators and sets are refused: a generator is empty once
    read (a second ``fit`` or ``clone`` would build another network) and a
    set has no order. Each value must lie in 1..``upper``, the length in
    0 (if ``allow_empty``) or 1..``max_len``.
    """
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        if isinstance(value, Iterator):
            got = f"a {type(value).__name__}, which can be read only once; pass tuple(...) instead"
        else:
            got = f"{value!r}"
        raise ValueError(f"{name} must be a tuple or list of positive ints; got {got}.")
    items = tuple(value)  # materialised once: this tuple is what is used
    low = 0 if allow_empty else 1
    if not low <= len(items) <= max_len:
        raise ValueError(
            f"{name} must hold {low} to {max_len} values; got {len(items)} ({value!r})."
        )
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be a tuple or list of positive ints; got {value!r}.")
        if not 1 <= v <= upper:
            raise ValueError(f"{name} values must be integers in 1..{upper}; got {int(v)}.")
    return tuple(int(v) for v in items)


#: The torch device types the estimators train on (``device``).
DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_bool(value: Any, name: str) -> None:
    """A flag: ``True`` or ``False`` (NumPy's bool too); ``'no'`` or ``1`` would read as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}.")


def check_size(value: Any, name: str, upper: int) -> None:
    """A network size: an int in 1..``upper``."""
    check_scalar(value, name, (int, np.integer), min_value=1, max_value=upper)


def check_network_size(
    build: Callable[[], nn.Module],
    image_shape: tuple[int, int],
    batch_images: int,
    what: str,
) -> None:
    """Refuse a network over :data:`MAX_PARAMETERS` or :data:`MAX_ACTIVATIONS`.

    ``build()`` runs on torch's meta device (shapes only, no memory), and a
    forward pass of one meta image counts the floats every layer outputs.
    ``what`` names the parameters that size the network, for the message.

    Raises
    ------
    ValueError
        Naming the parameters, the count and the bound.
    """
    h, w = image_shape
    with torch.device("meta"):
        net = build()
        n_params = sum(p.numel() for p in net.parameters())
        if n_params > MAX_PARAMETERS:
            raise ValueError(
                f"{what} make a network of {n_params:,} parameters for {h} x {w} images, over "
                f"the limit of {MAX_PARAMETERS:,} (about 2 GB to train); choose smaller sizes."
            )
        floats = [0]

        def count(module: nn.Module, inputs: Any, output: Any) -> None:
            outputs = output if isinstance(output, tuple) else (output,)
            floats[0] += sum(t.numel() for t in outputs if isinstance(t, torch.Tensor))

        leaves = [m for m in net.modules() if not list(m.children())]
        hooks = [m.register_forward_hook(count) for m in leaves]
        try:
            net(torch.empty(1, 1, h, w))
        finally:
            for hook in hooks:
                hook.remove()
    if floats[0] * batch_images > MAX_ACTIVATIONS:
        raise ValueError(
            f"{what} make {floats[0]:,} activations per {h} x {w} image, "
            f"{floats[0] * batch_images:,} for a batch of {batch_images}, over the limit of "
            f"{MAX_ACTIVATIONS:,} (1 GiB); lower batch_size or the network's sizes."
        )


def check_images(
    images: Any,
    *,
    name: str = "images",
    image_shape: tuple[int, int] | None = None,
    min_images: int = 1,
) -> np.ndarray:
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

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast.vae import check_images
    >>> check_images(np.zeros((2, 784))).shape  # flat square images become (n, H, W)
    (2, 28, 28)
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
                raise ValueError(
                    f"{name} of shape {arr.shape}: {d} pixels per row is not a square image; "
                    "pass images as (n, H, W)."
                )
            arr = arr.reshape(n, side, side)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (n, H, W) or (n, H * W); got shape {arr.shape}.")
    if image_shape is not None and tuple(arr.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"{name} are {arr.shape[1]} x {arr.shape[2]} images; the model was fitted on "
            f"{image_shape[0]} x {image_shape[1]}."
        )
    if len(arr) < min_images:
        raise ValueError(f"{name}: {len(arr)} image(s) given, at least {min_images} needed.")
    out = np.array(arr, dtype=np.float32, order="C")  # always a copy: inputs are never modified
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contain NaN or infinity.")
    if out.size and (out.min() < 0.0 or out.max() > 1.0):
        raise ValueError(
            f"{name} must have pixel values in [0, 1]; found values from {out.min():g} to "
            f"{out.max():g} (divide 0..255 pixels by 255)."
        )
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


class _TorchEstimator(BaseEstimator):
    """Training schedule shared by ConvVAE and VaDE: Adam, ReduceLROnPlateau,
    early stopping on the validation loss, best weights kept, seeded."""

    def _check_training_params(self, min_epochs: int = 1) -> None:
        check_scalar(
            self.learning_rate, "learning_rate", (int, float), min_value=0, include_min=False
        )
        check_scalar(self.batch_size, "batch_size", (int, np.integer), min_value=1)
        check_scalar(self.epochs, "epochs", (int, np.integer), min_value=min_epochs)
        check_scalar(
            self.validation_fraction,
            "validation_fraction",
            (int, float),
            min_value=0,
            include_min=False,
        )
        if self.validation_fraction >= 1:
            raise ValueError(f"validation_fraction must be < 1; got {self.validation_fraction!r}.")
        check_scalar(self.lr_factor, "lr_factor", (int, float), min_value=0, include_min=False)
        if self.lr_factor >= 1:
            raise ValueError(f"lr_factor must be < 1; got {self.lr_factor!r}.")
        check_scalar(self.lr_patience, "lr_patience", (int, np.integer), min_value=0)
        check_scalar(self.patience, "patience", (int, np.integer), min_value=1)
        check_scalar(self.rotation, "rotation", (int, float), min_value=0)
        check_scalar(self.input_noise, "input_noise", (int, float), min_value=0)
        check_bool(self.flip, "flip")
        if self.n_threads is not None:
            check_scalar(self.n_threads, "n_threads", (int, np.integer), min_value=1)
        self._device()

    def _device(self) -> torch.device:
        if self.device is None or self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        wrong = f"device must be None, 'auto', 'cpu', 'cuda[:i]' or 'mps'; got {self.device!r}."
        if not isinstance(self.device, (str, torch.device)):
            raise ValueError(wrong)
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(wrong) from exc
        # Other torch devices ('meta', 'xla', ...) hold no data to train on or to return.
        if device.type not in DEVICE_TYPES:
            raise ValueError(wrong)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} asked for, but CUDA is not available.")
        if device.type == "cuda" and device.index is not None:
            if device.index >= torch.cuda.device_count():
                raise ValueError(
                    f"device {self.device!r} asked for, but this machine has "
                    f"{torch.cuda.device_count()} CUDA device(s)."
                )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {self.device!r} asked for, but MPS is not available.")
        if device.type == "cpu" and device.index not in (None, 0):
            raise ValueError(wrong)
        return device

    def _split(
        self, X: np.ndarray, validation_images: Any, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if validation_images is not None:
            X_val = check_images(
                validation_images, name="validation_images", image_shape=X.shape[1:]
            )
            return X, X_val
        if len(X) < MIN_TRAIN_IMAGES:
            raise ValueError(
                f"images: {len(X)} image(s) given; at least {MIN_TRAIN_IMAGES} are needed to "
                "train with a validation split."
            )
        n_val = max(1, int(round(self.validation_fraction * len(X))))
        order = np.random.RandomState(seed).permutation(len(X))
        return X[order[n_val:]], X[order[:n_val]]

    def _train(
        self,
        module: nn.Module,
        batch_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        X_train: np.ndarray,
        X_val: np.ndarray,
        epochs: int,
        seed: int,
        device: torch.device,
        label: str,
    ) -> None:
        """Fit ``module`` by minimising the mean of ``batch_loss(input, target)``
        (per-image losses); sets the ``_FIT_RESULTS`` attributes."""
        train = torch.from_numpy(X_train)[:, None]
        val = torch.from_numpy(X_val)[:, None]
        optimizer = torch.optim.Adam(module.parameters(), lr=float(self.learning_rate))
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=float(self.lr_factor), patience=int(self.lr_patience)
        )
        history: dict[str, list[float]] = {
            "train_loss": [],
            "val_loss": [],
            "learning_rate": [],
            "seconds": [],
        }
        best, best_state, best_epoch, wait = math.inf, None, 0, 0
        n_batches = math.ceil(len(train) / self.batch_size)
        state = {"epoch": 0, "interrupted": False}
        verbose = bool(self.verbose)

        def keep_best_epoch() -> str:
            state["interrupted"] = True
            kept = (
                f"keeping the best model so far (epoch {best_epoch}, validation loss {best:.3f})"
                if best_state is not None
                else "no epoch finished: the weights are partly trained"
            )
            return f"{label}: training interrupted during epoch {state['epoch']}; {kept}"

        with on_interrupt(keep_best_epoch, propagate=False):
            for epoch in range(1, epochs + 1):
                state["epoch"] = epoch
                start = time.perf_counter()
                module.train()
                order = torch.randperm(len(train))
                total = 0.0
                with (
                    asked(verbose),
                    bar(
                        total=n_batches,
                        desc=f"{label} epoch {epoch}/{epochs}",
                        unit="batch",
                        leave=False,
                        mininterval=1.0,
                    ) as epoch_bar,
                ):
                    for b in range(n_batches):
                        x = train[order[b * self.batch_size : (b + 1) * self.batch_size]].to(device)
                        target = augment(x, float(self.rotation), bool(self.flip))
                        loss = batch_loss(add_noise(target, float(self.input_noise)), target).mean()
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        value = float(loss.detach())
                        if not math.isfinite(value):
                            raise FloatingPointError(
                                f"the training loss became {value} at epoch {epoch}; lower learning_rate."
                            )
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
                    write(
                        f"{label} epoch {epoch}/{epochs}: train loss {total / len(train):.3f}, validation loss "
                        f"{val_loss:.3f}{' (best)' if improved else ''}, lr {history['learning_rate'][-1]:.2g}, "
                        f"{seconds:.1f} s"
                    )
                if wait >= self.patience:
                    if verbose:
                        write(
                            f"{label}: early stop after epoch {epoch}: no better validation loss in "
                            f"{self.patience} epochs; keeping epoch {best_epoch}"
                        )
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.best_val_loss_ = best
        self.n_epochs_ = len(history["val_loss"])
        self.seconds_per_epoch_ = (
            float(np.mean(history["seconds"])) if history["seconds"] else float("nan")
        )
        self.interrupted_ = state["interrupted"]
        self.n_train_, self.n_val_ = len(X_train), len(X_val)

    @torch.no_grad()
    def _evaluate(
        self, module: nn.Module, batch_loss, val: torch.Tensor, seed: int, device: torch.device
    ) -> float:
        """Mean per-image loss on the validation images, eval mode, with the same
        latent noise every epoch (and the training RNG stream left untouched)."""
        module.eval()
        total = 0.0
        with _seeded(seed + 1, device):
            for b in range(0, len(val), 1024):
                x = val[b : b + 1024].to(device)
                total += float(batch_loss(x, x).sum())
        return total / len(val)
