"""ConvVAE: the reference convolutional VAE, whose latent means feed gmmfast's mixtures."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch

from ..mixture._gaussian import full_covariances
from ..utils._estimator import check_is_fitted, restores_state_on_error
from ..utils._validation import check_array, check_random_state, check_scalar
from ._engine import (
    MIN_TRAIN_IMAGES,
    _seed,
    _seeded,
    _threads,
    _TorchEstimator,
    check_bool,
    check_images,
    check_network_size,
    check_size,
    int_sequence,
)
from ._model_files import (
    CONFIG_BOUNDS,
    _build_checked,
    _check_config,
    _fit_results,
    _history,
    _load_state,
    _read_model,
    _restore_fit_results,
    _saved_config,
    _write_model,
)
from ._nets import (
    DenseVAENet,
    VAENet,
    feature_shape,
    gaussian_kl,
    reconstruction_loss,
)

#: Parameters each architecture alone uses (the other refuses them away from their defaults).
_ARCHITECTURE_ONLY = {
    "conv": ("channels", "strides", "hidden_units", "dropout"),
    "dense": ("dense_sizes",),
}
#: Their constructor defaults, as _check_params reads them (sequences as tuples).
_DEFAULTS = {
    "dense_sizes": (500, 500, 2000),
    "channels": (32, 64, 128, 128, 256),
    "strides": None,
    "hidden_units": 512,
    "dropout": 0.2,
}

#: The networks ConvVAE builds (``architecture``).
ARCHITECTURES = ("conv", "dense")


#: Largest array ``sample`` returns (8 GiB, as GaussianMixture.sample): more is a typo.
MAX_SAMPLE_BYTES = 2**33


class ConvVAE(_TorchEstimator):
    """Variational autoencoder for images with pixels in [0, 1], convolutional or dense.

    The default is the reference convolutional architecture: convolutions of 32, 64, 128,
    128 and 256 channels (3 x 3, ReLU, stride 2 at the second and fourth),
    a 512-unit dense layer to the latent mean and log standard deviation,
    a decoder mirroring it with transposed convolutions, dropout 0.2 after
    the dense layers. The loss per image is the binary cross-entropy summed
    over pixels plus ``beta`` times KL(q(z | x) || N(0, I)).

    ``architecture='dense'`` is the much faster dense VAE of DEC and VaDE
    (Xie et al., 2016; Jiang et al., 2017): the flattened image through
    dense layers of ``dense_sizes`` units (500, 500, 2000 by default; ReLU)
    to the latent mean and log standard deviation, and a decoder mirroring
    them to pixel logits, without dropout (``channels``, ``strides``,
    ``hidden_units`` and ``dropout`` are then unused). On MNIST it trains
    an epoch about ten times faster on the CPU than the convolutional one.

    Training: Adam, the learning rate halved (``lr_factor``) after
    ``lr_patience`` epochs without a better validation loss, early stopping
    after ``patience`` such epochs, a ``validation_fraction`` of the images
    held out, and the weights of the best validation epoch kept. Ctrl-C
    stops training and keeps the best weights so far. Seeded runs on the
    CPU are repeatable (same thread count).

    Parameters
    ----------
    latent_dim : int, default=2
    architecture : {'conv', 'dense'}, default='conv'
        The convolutional reference network, or the dense DEC / VaDE one.
    dense_sizes : sequence of int, default=(500, 500, 2000)
        Widths of the dense architecture's hidden layers, input side first
        (the decoder mirrors them). ``architecture='dense'`` only: ``fit``
        refuses a value other than the default with ``architecture='conv'``.
    channels : sequence of int, default=(32, 64, 128, 128, 256)
        Output channels of the encoder's convolutions (the decoder mirrors them).
    strides : sequence of {1, 2} or None, default=None
        Stride of each convolution; every stride-2 layer needs even image
        sides. None alternates 1, 2, 1, 2, ... over ``channels`` (the
        reference (1, 2, 1, 2, 1) for five convolutions).
    hidden_units : int, default=512
        Width of the dense layer between convolutions and latent space.
    dropout : float, default=0.2
        ``channels``, ``strides``, ``hidden_units`` and ``dropout`` are
        ``architecture='conv'`` only: ``fit`` refuses a value other than the
        default with ``architecture='dense'`` (a setting that would be
        silently ignored, as the command refuses its options).
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
        architecture: str = "conv",
        dense_sizes: tuple[int, ...] = (500, 500, 2000),
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
        self.architecture = architecture
        self.dense_sizes = dense_sizes
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
    def _check_params(self, *, loading: bool = False) -> dict[str, tuple[int, ...]]:
        """Validate the parameters; return the sequence parameters, each read once, as tuples.

        Parameters of the other architecture must keep their defaults
        (except when ``loading`` a saved model).

        Network sizes are bounded before anything is built: ``latent_dim``
        up to 4096, ``hidden_units`` and each of ``dense_sizes`` up to
        65536, each of ``channels`` up to 4096, at most 16 convolutions or
        dense layers; ``fit`` then bounds the whole network for the image
        size (:data:`~gmmfast.vae._engine.MAX_PARAMETERS`, about 2 GB to train).
        """
        check_size(self.latent_dim, "latent_dim", CONFIG_BOUNDS["latent_dim"])
        check_size(self.hidden_units, "hidden_units", CONFIG_BOUNDS["hidden_units"])
        check_scalar(self.dropout, "dropout", (int, float), min_value=0)
        if self.dropout >= 1:
            raise ValueError(f"dropout must be < 1; got {self.dropout!r}.")
        check_scalar(self.beta, "beta", (int, float), min_value=0)
        if not isinstance(self.architecture, str) or self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}; got {self.architecture!r}."
            )
        dense_sizes = int_sequence(
            self.dense_sizes,
            "dense_sizes",
            upper=CONFIG_BOUNDS["hidden_units"],
            max_len=CONFIG_BOUNDS["n_dense_layers"],
        )
        channels = int_sequence(
            self.channels,
            "channels",
            upper=CONFIG_BOUNDS["channel"],
            max_len=CONFIG_BOUNDS["n_convolutions"],
        )
        if self.strides is None:
            strides = tuple(1 + i % 2 for i in range(len(channels)))
        else:
            strides = int_sequence(
                self.strides, "strides", upper=2, max_len=CONFIG_BOUNDS["n_convolutions"]
            )
            if len(strides) != len(channels):
                raise ValueError(
                    f"strides must give 1 or 2 for each of the {len(channels)} convolutions; "
                    f"got {self.strides!r}."
                )
        self._check_training_params()
        spec = {"dense_sizes": dense_sizes, "channels": channels, "strides": strides}
        if not loading:
            self._check_architecture_params(spec)
        return spec

    def _check_architecture_params(self, spec: dict[str, tuple[int, ...]]) -> None:
        """Refuse a parameter of the other architecture set away from its default: it
        would be silently ignored. (Files saved before this check still load.)"""
        given = {
            "dense_sizes": spec["dense_sizes"],
            "channels": spec["channels"],
            "strides": None if self.strides is None else spec["strides"],
            "hidden_units": self.hidden_units,
            "dropout": self.dropout,
        }
        unused = [
            name
            for name in _ARCHITECTURE_ONLY["conv" if self.architecture == "dense" else "dense"]
            if given[name] != _DEFAULTS[name]
        ]
        if unused:
            other = "conv" if self.architecture == "dense" else "dense"
            raise ValueError(
                f"{', '.join(f'{n}={getattr(self, n)!r}' for n in unused)} "
                f"{'applies' if len(unused) == 1 else 'apply'} to architecture={other!r} only; "
                f"architecture={self.architecture!r} does not use "
                f"{'it' if len(unused) == 1 else 'them'}: leave {'it' if len(unused) == 1 else 'them'} "
                "at the default or change the architecture."
            )

    def _build(
        self, image_shape: tuple[int, int], spec: dict[str, tuple[int, ...]] | None = None
    ) -> VAENet | DenseVAENet:
        spec = self._check_params() if spec is None else spec
        if self.architecture == "dense":
            return DenseVAENet(image_shape, list(spec["dense_sizes"]), int(self.latent_dim))
        return VAENet(
            image_shape,
            list(spec["channels"]),
            list(spec["strides"]),
            int(self.hidden_units),
            int(self.latent_dim),
            float(self.dropout),
        )

    def _check_network(
        self, image_shape: tuple[int, int], spec: dict[str, tuple[int, ...]], n_train: int
    ) -> None:
        """The network for ``image_shape`` within the size budget (built on the meta device)."""
        if self.architecture == "conv":  # the image size fits the strides
            feature_shape(image_shape, spec["channels"], spec["strides"])
        what = (
            f"dense_sizes={spec['dense_sizes']}, latent_dim={self.latent_dim}"
            if self.architecture == "dense"
            else f"channels={spec['channels']}, hidden_units={self.hidden_units}, "
            f"latent_dim={self.latent_dim}"
        )
        check_network_size(
            lambda: self._build(image_shape, spec),
            image_shape,
            max(1, min(int(self.batch_size), n_train)),
            what,
        )

    def _loss(
        self, net: VAENet | DenseVAENet
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        beta = float(self.beta)

        def batch_loss(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            logits, mu, log_sigma, _ = net(inputs)
            return reconstruction_loss(logits, target) + beta * gaussian_kl(mu, log_sigma)

        return batch_loss

    # ----------------------------------------------------------- fitting
    @restores_state_on_error
    def fit(
        self,
        images: Any,
        y: Any = None,
        *,
        epochs: int | None = None,
        validation_images: Any = None,
    ) -> "ConvVAE":
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

        Raises
        ------
        ValueError
            Bad parameters or images, or a network over the size budget
            (checked before anything is allocated). A fit that raises leaves
            the model as it was (unfitted, or the previous fit).
        """
        spec = self._check_params()
        epochs = self.epochs if epochs is None else epochs
        check_scalar(epochs, "epochs", (int, np.integer), min_value=1)
        X = check_images(
            images, min_images=2 if validation_images is not None else MIN_TRAIN_IMAGES
        )
        self._check_network(tuple(X.shape[1:]), spec, len(X))  # before anything is allocated
        seed = _seed(self.random_state)
        device = self._device()
        X_train, X_val = self._split(X, validation_images, seed)
        with _threads(self.n_threads), _seeded(seed, device):
            net = self._build(X.shape[1:], spec).to(device)
            self.network_, self.image_shape_, self.device_ = net, tuple(X.shape[1:]), device
            self._train(net, self._loss(net), X_train, X_val, int(epochs), seed, device, "VAE")
        return self

    # -------------------------------------------------------- inference
    def _check_fitted(self) -> None:
        check_is_fitted(self, "network_")

    @torch.no_grad()
    def encode(
        self, images: Any, *, return_log_sigma: bool = False, batch_size: int = 1024
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
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
        check_bool(return_log_sigma, "return_log_sigma")  # 'no' would return a pair
        X = check_images(images, image_shape=self.image_shape_)
        net = self.network_.eval()
        mus, sigmas = [], []
        with _threads(self.n_threads):
            for b in range(0, len(X), batch_size):
                mu, log_sigma = net.encoder(
                    torch.from_numpy(X[b : b + batch_size])[:, None].to(self.device_)
                )
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
                logits = net.decoder(
                    torch.from_numpy(np.array(Z[b : b + batch_size])).to(self.device_)
                )
                out.append(torch.sigmoid(logits)[:, 0].cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def reconstruct(self, images: Any) -> np.ndarray:
        """Decoded latent means of ``images``, float32, in the input's shape ((n, H, W) or (n, H * W))."""
        self._check_fitted()
        shape = np.shape(images)
        out = self.decode(self.encode(images))
        return out.reshape(len(out), -1) if len(shape) == 2 else out

    def sample(
        self,
        n_samples: int = 1,
        *,
        gmm: Any = None,
        component: Any = None,
        random_state: Any = None,
    ) -> np.ndarray:
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
        # The images are float32 (n_samples, H, W): at most MAX_SAMPLE_BYTES of them.
        height, width = self.image_shape_
        most = max(1, MAX_SAMPLE_BYTES // (4 * height * width))
        check_scalar(n_samples, "n_samples", (int, np.integer), min_value=1, max_value=most)
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
        _write_model(
            path,
            self._MODEL_KIND,
            self._config(),
            self.network_.state_dict(),
            {
                "image_shape": list(self.image_shape_),
                "history": self.history_,
                "fitted": self._fitted_info(),
            },
        )

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
        shape = payload.get("image_shape")
        config = dict(
            _check_config(payload.get("config"), shape, path)
        )  # bounds first: nothing built yet
        try:
            for key in ("channels", "strides", "dense_sizes"):
                if isinstance(config.get(key), list):
                    config[key] = tuple(config[key])
            model.set_params(**config)
            model.device = device
            spec = model._check_params(loading=True)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"{path}: bad configuration: {exc}") from None
        try:
            net = _build_checked(
                lambda: model._build(tuple(shape), spec), payload["state_dict"], path
            )
        except ValueError as exc:
            raise ValueError(exc if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
        _load_state(net, payload["state_dict"], path)
        model.device_ = model._device()
        model.network_ = net.to(model.device_).eval()
        model.image_shape_ = tuple(shape)
        model.history_ = _history(payload.get("history", {}), path)
        _restore_fit_results(model, payload, path)
        return model


def _draw_latents(
    rng: np.random.RandomState, n: int, d: int, gmm: Any, component: Any
) -> np.ndarray:
    """Latent points from N(0, I), a fitted mixture or one of its components, or a classifier's class."""
    if gmm is None:
        if component is not None:
            raise ValueError(
                "component needs gmm: a GaussianMixture or GMMClassifier fitted on the latents."
            )
        return rng.standard_normal((n, d))
    if hasattr(gmm, "estimators_") and hasattr(gmm, "classes_"):  # GMMClassifier
        if component is None:
            raise ValueError("sampling from a GMMClassifier needs component=<class label>.")
        matches = np.flatnonzero(np.asarray(gmm.classes_) == component)
        if len(matches) != 1:
            raise ValueError(
                f"component {component!r} is not one of the classifier's classes "
                f"{np.asarray(gmm.classes_).tolist()}."
            )
        gmm, component = gmm.estimators_[int(matches[0])], None
    if not hasattr(gmm, "means_"):
        raise ValueError("gmm must be a fitted GaussianMixture or GMMClassifier.")
    means = np.asarray(gmm.means_, dtype=np.float64)
    if means.shape[1] != d:
        raise ValueError(f"gmm has {means.shape[1]} features; the latent space has {d} dimensions.")
    covs = full_covariances(gmm)
    if component is None:
        counts = rng.multinomial(n, np.asarray(gmm.weights_, dtype=np.float64))
        parts = [
            rng.multivariate_normal(means[k], covs[k], size=c) for k, c in enumerate(counts) if c
        ]
        Z = np.concatenate(parts)
        return Z[rng.permutation(n)]
    if not isinstance(component, (int, np.integer)) or not 0 <= component < len(means):
        raise ValueError(f"component must be an index in 0..{len(means) - 1}; got {component!r}.")
    return rng.multivariate_normal(means[component], covs[component], size=n)
