"""Deep clustering on a CPU: a dense autoencoder, an optional UMAP step, and a Gaussian mixture.

Why this design (N2D's recipe: McConville et al., 2020): a clustering
mixture wants a low-dimensional space where clusters are compact and
roughly Gaussian. An autoencoder alone gives a space that keeps what
reconstructs pixels well (stroke thickness, slant), in which digits form
curved, touching sheets: a mixture on it is wrong about a tenth of the time.
UMAP then flattens the autoencoder's embedding into as many dimensions as
clusters, keeping each sample's neighbourhood; there the digits are
separate, compact blobs and a full-covariance mixture finds them. Unlike
VaDE/DEC, nothing is trained jointly with the clustering, so there is no
collapse to fight and no pretraining recipe to reproduce, and the dense
network trains in seconds per epoch on a CPU, where the convolutional VAE
takes minutes.

Nothing here looks at labels: the epoch kept is the one with the lowest
reconstruction error on held-out images, the mixture's initialisation is
the one with the highest likelihood (``gmm_n_init`` diverse starts), and the
remaining settings are N2D's published ones (not tuned on any labels here).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch

from ..mixture._gaussian_mixture import GaussianMixture
from ..utils._estimator import check_is_fitted, restores_state_on_error
from ..utils._progress import say
from ..utils._validation import check_scalar
from ._engine import (
    MIN_TRAIN_IMAGES,
    _seed,
    _seeded,
    _threads,
    _TorchEstimator,
    check_images,
    check_network_size,
    check_size,
    int_sequence,
)
from ._model_files import CONFIG_BOUNDS
from ._nets import MLPAutoencoder, squared_error

MANIFOLDS = ("umap", None)


class DeepClustering(_TorchEstimator):
    """Cluster images: autoencoder embedding, then UMAP, then a Gaussian mixture.

    ``fit`` trains a dense autoencoder on the images (squared error, Adam,
    the epoch with the lowest held-out reconstruction error kept), embeds
    every image, maps the embeddings to ``manifold_size`` dimensions with
    UMAP (``manifold='umap'``, the ``umap`` extra) and fits a
    :class:`~gmmfast.GaussianMixture` with ``n_clusters`` components there;
    ``labels_`` are its most likely components. ``manifold=None`` fits the
    mixture on the autoencoder's embedding directly (no extra needed, less
    accurate).

    Parameters
    ----------
    n_clusters : int, default=10
    hidden_sizes : tuple of int, default=(500, 500, 2000)
        Encoder layer widths (the decoder mirrors them): DEC, VaDE and N2D's
        network; ``()`` makes a linear autoencoder.
    embedding_size : int, default=10
        Autoencoder bottleneck.
    manifold : {'umap', None}, default='umap'
    manifold_size : int, optional
        UMAP's output dimension; None uses ``n_clusters`` (N2D). Unused
        without a manifold step.
    n_neighbors : int, default=20
        UMAP's neighbourhood size (N2D); its ``min_dist`` is 0 (packed
        clusters, which is what a clustering wants).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    gmm_n_init : int, default=10
        Initialisations of the mixture (``init_params='diverse'``); the most
        likely is kept.
    learning_rate : float, default=1e-3
    batch_size : int, default=256
    epochs : int, default=50
        The training budget; the epoch kept is chosen by held-out
        reconstruction error.
    validation_fraction : float, default=0.1
        Images held out for that choice (they are still clustered).
    lr_factor, lr_patience, patience, rotation, flip, input_noise
        As in :class:`ConvVAE` (defaults 0.5, 5, 10, 0, False, 0).
    device : str or None, default=None
    n_threads : int or None, default=None
        Threads of torch and of the mixture; None leaves torch's setting
        and gives the mixture all cores.
    random_state : int, RandomState or None, default=None
        Seeds training, UMAP (which then runs on one thread) and the mixture.
    verbose : int, default=0

    Attributes
    ----------
    autoencoder_ : torch.nn.Module
    manifold_ : umap.UMAP or None
        The fitted UMAP model (kept in memory for :meth:`predict`).
    mixture_ : GaussianMixture
        The mixture fitted in the clustering space.
    embedding_ : ndarray of shape (n_samples, manifold_size or embedding_size)
        The training images in the clustering space.
    labels_ : ndarray of shape (n_samples,)
    timings_ : dict
        Wall and process CPU seconds of ``training``, ``embedding``,
        ``manifold``, ``mixture`` and ``total`` (CPU time sums all threads).
    history_, best_epoch_, best_val_loss_, n_epochs_, seconds_per_epoch_, interrupted_, n_train_, n_val_, device_, image_shape_
        As in :class:`ConvVAE`.

    Notes
    -----
    Ctrl-C during training keeps the autoencoder's best epoch so far
    (``autoencoder_``, :meth:`encode`, ``interrupted_``) and stops the fit
    with ``KeyboardInterrupt``: no clustering is made from a cut-short
    training. Ctrl-C in the UMAP or mixture step propagates as usual.

    The model is not saved to a file: UMAP's fitted state is made of Python
    objects that only pickle can store, and gmmfast never unpickles. Keep
    ``labels_``, or save ``mixture_`` (:meth:`GaussianMixture.save`) with
    the embedding you need.

    Examples
    --------
    >>> from gmmfast.datasets import load_mnist_sample
    >>> from gmmfast.vae import DeepClustering
    >>> X, y, _, _ = load_mnist_sample()
    >>> model = DeepClustering(epochs=20, random_state=0).fit(X)  # doctest: +SKIP
    >>> from gmmfast.metrics import clustering_scores
    >>> clustering_scores(y, model.labels_)                       # doctest: +SKIP
    """

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        hidden_sizes: tuple[int, ...] = (500, 500, 2000),
        embedding_size: int = 10,
        manifold: str | None = "umap",
        manifold_size: int | None = None,
        n_neighbors: int = 20,
        covariance_type: str = "full",
        gmm_n_init: int = 10,
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        epochs: int = 50,
        validation_fraction: float = 0.1,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        patience: int = 10,
        rotation: float = 0.0,
        flip: bool = False,
        input_noise: float = 0.0,
        device: str | None = None,
        n_threads: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.hidden_sizes = hidden_sizes
        self.embedding_size = embedding_size
        self.manifold = manifold
        self.manifold_size = manifold_size
        self.n_neighbors = n_neighbors
        self.covariance_type = covariance_type
        self.gmm_n_init = gmm_n_init
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
    def _check_params(self) -> tuple[int, ...]:
        """Validate the parameters; return ``hidden_sizes``, read once, as a tuple.

        Network sizes are bounded before anything is built: each of
        ``hidden_sizes`` up to 65536 (at most 16 layers), ``embedding_size``
        and ``manifold_size`` up to 4096, ``n_clusters`` up to 10000; ``fit``
        then bounds the whole network for the image size
        (:data:`~gmmfast.vae._engine.MAX_PARAMETERS`, about 2 GB to train).
        """
        check_size(self.n_clusters, "n_clusters", CONFIG_BOUNDS["n_clusters"])
        hidden = int_sequence(
            self.hidden_sizes,
            "hidden_sizes",
            upper=CONFIG_BOUNDS["hidden_units"],
            max_len=CONFIG_BOUNDS["n_dense_layers"],
            allow_empty=True,
        )
        check_size(self.embedding_size, "embedding_size", CONFIG_BOUNDS["latent_dim"])
        if self.manifold not in MANIFOLDS:
            raise ValueError(f"manifold must be 'umap' or None; got {self.manifold!r}.")
        if self.manifold_size is not None:
            check_size(self.manifold_size, "manifold_size", CONFIG_BOUNDS["latent_dim"])
        check_scalar(self.n_neighbors, "n_neighbors", (int, np.integer), min_value=2)
        if self.covariance_type not in ("full", "tied", "diag", "spherical"):
            raise ValueError(
                "covariance_type must be 'full', 'tied', 'diag' or 'spherical'; "
                f"got {self.covariance_type!r}."
            )
        check_scalar(self.gmm_n_init, "gmm_n_init", (int, np.integer), min_value=1)
        self._check_training_params()
        return hidden

    def _manifold_size(self) -> int:
        return int(self.n_clusters if self.manifold_size is None else self.manifold_size)

    # ----------------------------------------------------------- fitting
    @restores_state_on_error
    def fit(self, images: Any, y: Any = None, *, validation_images: Any = None) -> "DeepClustering":
        """Train the autoencoder, embed the images, and cluster them.

        Parameters
        ----------
        images : array-like of shape (n, H, W) or (n, H * W)
            Pixels in [0, 1]. Not modified.
        y : ignored
            Never used: the clustering is unsupervised.
        validation_images : array-like, optional
            Images to choose the epoch on, instead of holding out
            ``validation_fraction`` of ``images``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Bad parameters or images, too few images, or a network over the
            size budget (checked before anything is allocated). A fit that
            raises leaves the model as it was (unfitted, or the previous fit).
        """
        hidden = self._check_params()
        umap = _import_umap() if self.manifold == "umap" else None
        X = check_images(
            images, min_images=2 if validation_images is not None else MIN_TRAIN_IMAGES
        )
        if len(X) <= max(self.n_clusters, self.n_neighbors if umap else 0):
            raise ValueError(
                f"images: {len(X)} image(s) for {self.n_clusters} clusters"
                + (f" and n_neighbors={self.n_neighbors}" if umap else "")
                + "; give more images."
            )
        n_pixels = X.shape[1] * X.shape[2]

        def build() -> MLPAutoencoder:
            return MLPAutoencoder(n_pixels, hidden, int(self.embedding_size))

        check_network_size(
            build,
            tuple(X.shape[1:]),
            max(1, min(int(self.batch_size), len(X))),
            f"hidden_sizes={hidden}, embedding_size={self.embedding_size}",
        )
        seed = _seed(self.random_state)
        device = self._device()
        X_train, X_val = self._split(X, validation_images, seed)
        timings: dict[str, dict[str, float]] = {}
        start = _clock()
        with _threads(self.n_threads), _seeded(seed, device):
            net = build().to(device)
            self.autoencoder_, self.image_shape_, self.device_ = net, tuple(X.shape[1:]), device
            stage = _clock()
            self._train(
                net,
                lambda x, t: squared_error(net(x), t),
                X_train,
                X_val,
                int(self.epochs),
                seed,
                device,
                "autoencoder",
            )
            timings["training"] = _since(stage)
        if self.interrupted_:
            # Ctrl-C: the autoencoder keeps its best epoch (encode works), but the
            # user asked to stop: no minute of UMAP and mixture after it. A previous
            # fit's clustering belongs to another autoencoder: dropped, not mixed in.
            for name in ("manifold_", "mixture_", "labels_", "embedding_"):
                self.__dict__.pop(name, None)
            self.timings_ = timings
            raise KeyboardInterrupt
        stage = _clock()
        codes = self.encode(X)
        timings["embedding"] = _since(stage)
        self.manifold_ = None
        if umap is not None:
            stage = _clock()
            say(self.verbose, f"UMAP: {codes.shape[1]} -> {self._manifold_size()} dimensions")
            self.manifold_ = umap.UMAP(
                n_components=self._manifold_size(),
                n_neighbors=int(self.n_neighbors),
                min_dist=0.0,
                random_state=seed,
            )
            with warnings.catch_warnings():
                # A seeded UMAP runs on one thread, and says so each time.
                warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
                codes = np.ascontiguousarray(self.manifold_.fit_transform(codes), dtype=np.float64)
            timings["manifold"] = _since(stage)
        stage = _clock()
        self.mixture_ = GaussianMixture(
            int(self.n_clusters),
            covariance_type=self.covariance_type,
            n_init=int(self.gmm_n_init),
            init_params="diverse",
            random_state=seed,
            n_threads=self.n_threads,
            verbose=max(int(self.verbose) - 1, 0),
        )
        self.labels_ = self.mixture_.fit_predict(codes)
        timings["mixture"] = _since(stage)
        timings["total"] = _since(start)
        self.embedding_ = codes
        self.timings_ = timings
        return self

    def fit_predict(self, images: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """:meth:`fit`, then return ``labels_``."""
        return self.fit(images, **fit_params).labels_

    # -------------------------------------------------------- inference
    @torch.no_grad()
    def encode(self, images: Any, *, batch_size: int = 1024) -> np.ndarray:
        """The autoencoder's embedding: float64 (n, embedding_size)."""
        check_is_fitted(self, "autoencoder_")
        X = check_images(images, image_shape=self.image_shape_)
        net = self.autoencoder_.eval()
        parts = []
        with _threads(self.n_threads):
            for b in range(0, len(X), batch_size):
                batch = torch.from_numpy(X[b : b + batch_size]).to(self.device_)
                parts.append(net.encode(batch).double().cpu().numpy())
        if not parts:
            return np.zeros((0, int(self.embedding_size)))
        return np.ascontiguousarray(np.concatenate(parts))

    def transform(self, images: Any) -> np.ndarray:
        """Images in the clustering space (UMAP's, or the autoencoder's without it)."""
        check_is_fitted(self, "mixture_")
        codes = self.encode(images)
        if self.manifold_ is None or len(codes) == 0:
            return codes if self.manifold_ is None else np.zeros((0, self._manifold_size()))
        return np.ascontiguousarray(self.manifold_.transform(codes), dtype=np.float64)

    def predict(self, images: Any) -> np.ndarray:
        """Cluster of new images (UMAP places them next to their training neighbours)."""
        codes = self.transform(images)
        return self.mixture_.predict(codes)

    def predict_proba(self, images: Any) -> np.ndarray:
        """Responsibilities of the clusters for new images."""
        codes = self.transform(images)
        return self.mixture_.predict_proba(codes)


def _import_umap():
    try:
        import umap
    except ImportError as exc:
        raise ImportError(
            "manifold='umap' needs umap-learn; install it with pip install 'gmmfast[umap]' "
            "(or pass manifold=None)."
        ) from exc
    return umap


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = _clock()
    return {"wall_seconds": wall - start[0], "cpu_seconds": cpu - start[1]}
