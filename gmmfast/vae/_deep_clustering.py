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

import math
import os
import time
import warnings
from typing import Any

import numpy as np
import torch

from ..mixture._gaussian_mixture import GaussianMixture, _parameter_members
from ..mixture._gaussian_mixture import _check_saved_params as _check_mixture_params
from ..mixture._gaussian_mixture import _expected_members as _mixture_members
from ..utils._estimator import check_is_fitted, restores_state_on_error
from ..utils._model_files import load_npz, require, save_npz
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
from ._model_files import (
    CONFIG_BOUNDS,
    _bounded_int,
    _fit_results,
    _history,
    _restore_fit_results,
    _saved_config,
    module_arrays,
    module_from_arrays,
    module_shapes,
)
from ._nets import MLPAutoencoder, squared_error

MANIFOLDS = ("umap", None)
#: Member prefixes and names in a model file.
_NET, _MIXTURE, _CODES = "autoencoder.", "mixture.", "manifold.training_codes"


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
    manifold_ : ManifoldTransform or None
        UMAP's fitted state as plain arrays (the training codes and their
        embedding) and the transform :meth:`predict` uses, before and after
        :meth:`save`. The ``umap.UMAP`` object itself is not kept.
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

    :meth:`save` writes the whole fitted pipeline to one ``.npz`` of plain
    arrays and :meth:`load` reads it without pickle: the autoencoder's
    weights, the mixture, and the UMAP step as its fitted arrays with a
    transform computed from them (:class:`ManifoldTransform`), rather than a
    network trained to reproduce the embedding. Measured on MNIST, labels of
    held-out test images (``n_threads=1``, a loaded 2-core machine):

    * a fit on 20,000 training images (20 epochs; accuracy 0.954 on them):
      the arrays' transform gave the same labels as umap-learn's
      ``transform`` (what :meth:`predict` used before) on 99.05 % of 2,000
      test images, and 99.55 % with the same exact neighbours, which is
      umap's own agreement between two of its ``transform_seed`` (99.6 %);
      umap's ``transform`` agreed with itself on 99.7 % when given the images
      100 at a time. Placing each image at the weighted mean of its
      neighbours' places, without umap's optimisation, agreed on 92.6 %.
    * a fit on 5,000 sample images (10 epochs): 97.9 % (umap with itself in
      batches of 100: 98.6 %); a 10-256-256-10 network trained on the
      training codes and their embedding (20 epochs, 77 s) agreed on 27 %
      (30 % on the training images themselves): its median error, 0.10, is
      over a quarter of the embedding's median spread, 0.37 (UMAP packs the
      clusters, ``min_dist=0``).
    * the loaded model's labels equal the in-memory model's (100 %; its
      places are bit for bit the same with the same ``n_threads``), and the
      training images predict ``labels_``.

    Cost: the file holds the network's weights (13.3 MB for the default
    784-500-500-2000-10 autoencoder, float32) and 88 bytes per training
    image at the defaults (its code, its place and its label; 5.3 MB for
    60,000 images): 15.1 MB for the 20,000-image fit, written in 0.02 s and
    read in 0.03 s. Predicting 2,000 images took 0.88 s (umap's
    ``transform``: 1.6 s once numba had compiled it; its first call in a
    process took 195 s on the 5,000-image fit, compiling), needs neither
    umap nor numba, and places each image independently of the others in
    the call.

    Examples
    --------
    >>> from gmmfast.datasets import load_mnist_sample
    >>> from gmmfast.vae import DeepClustering
    >>> X, y, _, _ = load_mnist_sample()
    >>> model = DeepClustering(epochs=20, random_state=0).fit(X)  # doctest: +SKIP
    >>> from gmmfast.metrics import clustering_scores
    >>> clustering_scores(y, model.labels_)                       # doctest: +SKIP
    >>> model.save("clusters.npz")                                # doctest: +SKIP
    >>> DeepClustering.load("clusters.npz").predict(X[:5])        # doctest: +SKIP
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

    _MODEL_KIND = "DeepClustering"

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
            fitted = umap.UMAP(
                n_components=self._manifold_size(),
                n_neighbors=int(self.n_neighbors),
                min_dist=0.0,
                random_state=seed,
                verbose=int(self.verbose) >= 1,  # its stages and a bar of its epochs
            )
            with warnings.catch_warnings():
                # A seeded UMAP runs on one thread, and says so each time.
                warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
                codes = np.ascontiguousarray(fitted.fit_transform(codes), dtype=np.float64)
            # Its fitted state as plain arrays: what predict uses, before and after save.
            self.manifold_ = ManifoldTransform.from_umap(fitted)
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
        """Images in the clustering space (UMAP's, or the autoencoder's without it).

        Each image is placed on its own (the others in the call do not move
        it): see :class:`ManifoldTransform`. A training image is placed
        where the fit put it.
        """
        check_is_fitted(self, "mixture_")
        codes = self.encode(images)
        if self.manifold_ is None:
            return codes
        return self.manifold_.transform(codes, n_threads=self.n_threads)

    def predict(self, images: Any) -> np.ndarray:
        """Cluster of new images (placed next to their training neighbours, then assigned).

        The same labels before :meth:`save` and after :meth:`load`; the
        training images get ``labels_``.
        """
        codes = self.transform(images)
        return self.mixture_.predict(codes)

    def predict_proba(self, images: Any) -> np.ndarray:
        """Responsibilities of the clusters for new images."""
        codes = self.transform(images)
        return self.mixture_.predict_proba(codes)

    # ------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted pipeline to ``path``: one ``.npz`` of plain arrays (no pickle).

        The autoencoder's weights (float32, as trained), the mixture's
        parameters (as :meth:`GaussianMixture.save` writes them), UMAP's
        fitted state (:class:`ManifoldTransform`: the training codes and
        embedding, and its parameters), ``embedding_`` and ``labels_``, with a
        JSON header holding the configuration, training history and
        timings. The write is atomic. Read it back with :meth:`load`.
        """
        check_is_fitted(self, "mixture_")
        net = self.autoencoder_
        widths = [layer.out_features for layer in net.encoder if isinstance(layer, torch.nn.Linear)]
        config = _saved_config(self, ("device", "n_threads"))
        config["hidden_sizes"], config["embedding_size"] = widths[:-1], widths[-1]  # the network's
        mixture = self.mixture_
        lower_bound = float(getattr(mixture, "lower_bound_", np.nan))
        params = {
            "config": config,
            "image_shape": [int(side) for side in self.image_shape_],
            "n_samples": len(self.labels_),
            "history": self.history_,
            "fitted": _fit_results(self),
            "timings": self.timings_,
            "mixture": {**mixture._saved_params(), "n_components": len(mixture.weights_)},
            "mixture_fitted": {
                "converged_": bool(getattr(mixture, "converged_", False)),
                "n_iter_": int(getattr(mixture, "n_iter_", 0)),
                "lower_bound_": lower_bound if math.isfinite(lower_bound) else None,
            },
            "manifold": None if self.manifold_ is None else self.manifold_.params(),
        }
        embedding = np.asarray(self.embedding_, dtype=np.float64)
        single = embedding.astype(np.float32)
        arrays = {
            **module_arrays(net, _NET),
            **_parameter_members(mixture, _MIXTURE),
            # float32 where that is exact (UMAP's and the network's outputs are float32)
            "embedding_": single if np.array_equal(single, embedding) else embedding,
            "labels_": np.asarray(self.labels_, dtype=np.int64),
        }
        if self.manifold_ is not None:
            arrays[_CODES] = self.manifold_.training_codes
        save_npz(path, self._MODEL_KIND, params, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> "DeepClustering":
        """Read a pipeline written by :meth:`save`, validating it; it predicts as the saved one did.

        Every member's dtype and shape is checked against what the header's
        configuration implies before any array is read (see
        :func:`gmmfast.utils._model_files.load_npz`); nothing is unpickled.
        Predicting needs neither ``umap-learn`` nor numba
        (:class:`ManifoldTransform` is numpy and scipy).

        Parameters
        ----------
        path : str or os.PathLike
        device : str or None
            Where to put the autoencoder (None: CUDA when available, else the CPU).

        Raises
        ------
        FileNotFoundError, ValueError
            A missing file; a file that is not a gmmfast DeepClustering
            model, or whose configuration, shapes, dtypes or values (NaN,
            labels out of range, a bad mixture) are wrong. The message
            names the file and the field.
        """
        checked: dict[str, Any] = {}
        params, arrays = load_npz(
            path, cls._MODEL_KIND, lambda p, headers: _expected_members(cls, p, headers, checked)
        )
        model: DeepClustering = checked["model"]
        n, K, D = checked["n_samples"], checked["n_clusters"], checked["n_features"]
        hidden, size = checked["hidden"], int(model.embedding_size)
        n_pixels = math.prod(checked["image_shape"])
        net = module_from_arrays(lambda: MLPAutoencoder(n_pixels, hidden, size), arrays, _NET, path)
        model.device = device
        model.device_ = model._device()
        model.autoencoder_ = net.to(model.device_).eval()
        model.image_shape_ = checked["image_shape"]
        model.mixture_ = _mixture_from_file(params, arrays, K, D, path)
        model.embedding_ = require(arrays, "embedding_", (n, D), path)
        if "labels_" not in arrays:
            raise ValueError(f"{path}: missing array 'labels_'.")
        labels = arrays["labels_"]
        if labels.size and (labels.min() < 0 or labels.max() >= K):
            raise ValueError(f"{path}: array 'labels_' holds labels outside 0..{K - 1}.")
        model.labels_ = labels.astype(np.int64)
        model.manifold_ = None
        if params.get("manifold") is not None:
            codes = require(arrays, _CODES, (n, size), path).astype(np.float32)
            model.manifold_ = ManifoldTransform(
                codes, model.embedding_.astype(np.float32), **checked["manifold"]
            )
        model.history_ = _history(params.get("history", {}), path)
        _restore_fit_results(model, params, path)
        model.timings_ = _timings(params.get("timings", {}), path)
        return model


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


# ---------------------------------------------------------------- the manifold step from arrays
#: Optimisation epochs of a new point: umap-learn's own for up to 10,000 new
#: points (it drops to 30 beyond, which made a label depend on the batch).
TRANSFORM_EPOCHS = 100
#: New points placed per call of the layout (they do not interact: memory only).
_CHUNK = 8192


class ManifoldTransform:
    """UMAP's fitted state as plain arrays, and its ``transform`` computed from them.

    umap-learn's fitted ``UMAP`` holds a nearest-neighbour index
    (pynndescent) and numba-compiled functions, which only pickle can store.
    Its ``transform`` needs far less: the training points (here the
    autoencoder's codes), their embedding, and a few numbers. This class
    keeps exactly those and places new points as umap-learn's ``transform``
    does, in numpy and scipy (no umap, no numba, nothing to compile): the
    ``n_neighbors`` nearest training codes, their fuzzy membership strengths
    (umap's ``smooth_knn_dist`` and ``compute_membership_strengths``), a
    start at the strength-weighted mean of the neighbours' places, then
    ``n_epochs`` epochs of umap's layout updates against the fixed training
    embedding (``optimize_layout_euclidean`` with ``move_other=False``:
    attraction along each edge at its sampling rate, ``negative_sample_rate``
    repulsions from random training points, steps clipped to 4, the rate
    falling linearly from a quarter of the fit's).

    The departures from umap's ``transform`` make a point's place a function
    of that point alone. umap's is not: on a 5,000-image fit, 1.4 % of 1,000
    held-out images changed cluster when transformed 100 at a time rather
    than all at once, and any change in the last bit of a code reseeded its
    random draws. Here:

    * exact neighbours (a k-d tree), where umap queries its approximate
      index from 4,096 training points on;
    * strengths scaled by 1, their largest possible value, where umap scales
      them by the batch's largest (the sampling rate of every edge, and the
      cut of weak edges, depended on the other points), and ``sigma``'s
      floor taken from the point's own mean distance, not the batch's;
    * :data:`TRANSFORM_EPOCHS` epochs whatever the batch (umap: 100, or 30
      above 10,000 points);
    * random draws from a hash of ``transform_seed`` and the point's nearest
      training point (umap seeds them with the bits of the start position);
    * float64 arithmetic.

    A new point whose code equals a training code exactly is placed where
    the fit placed that training point (umap does so only when given the
    whole training array back), so the training images predict ``labels_``.

    Parameters
    ----------
    training_codes : ndarray of shape (n_samples, n_features), float32
    embedding : ndarray of shape (n_samples, n_components), float32
    n_neighbors : int
    a, b : float
        The embedding's similarity curve, fitted by UMAP from ``min_dist``.
    repulsion_strength : float
    negative_sample_rate : int
    learning_rate : float
        The fit's; the transform starts at a quarter of it, as umap's does.
    local_connectivity : float
    transform_seed : int
    n_epochs : int, default=TRANSFORM_EPOCHS
    """

    _PARAMS = (
        "n_neighbors",
        "a",
        "b",
        "repulsion_strength",
        "negative_sample_rate",
        "learning_rate",
        "local_connectivity",
        "transform_seed",
        "n_epochs",
    )

    def __init__(
        self,
        training_codes: np.ndarray,
        embedding: np.ndarray,
        *,
        n_neighbors: int,
        a: float,
        b: float,
        repulsion_strength: float,
        negative_sample_rate: int,
        learning_rate: float,
        local_connectivity: float,
        transform_seed: int,
        n_epochs: int = TRANSFORM_EPOCHS,
    ) -> None:
        self.training_codes = np.ascontiguousarray(training_codes, dtype=np.float32)
        self.embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        self.n_neighbors = int(n_neighbors)
        self.a, self.b = float(a), float(b)
        self.repulsion_strength = float(repulsion_strength)
        self.negative_sample_rate = int(negative_sample_rate)
        self.learning_rate = float(learning_rate)
        self.local_connectivity = float(local_connectivity)
        self.transform_seed = int(transform_seed)
        self.n_epochs = int(n_epochs)
        self._tree: Any = None

    @classmethod
    def from_umap(cls, fitted: Any) -> "ManifoldTransform":
        """The arrays and parameters of a fitted ``umap.UMAP`` (Euclidean, not densMAP)."""
        return cls(
            fitted._raw_data,
            fitted.embedding_,
            n_neighbors=fitted._n_neighbors,
            a=fitted._a,
            b=fitted._b,
            repulsion_strength=fitted.repulsion_strength,
            negative_sample_rate=fitted.negative_sample_rate,
            learning_rate=fitted._initial_alpha,
            local_connectivity=fitted.local_connectivity,
            transform_seed=fitted.transform_seed,
        )

    def params(self) -> dict[str, Any]:
        """The parameters as plain values (a model file's header)."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def transform(self, codes: np.ndarray, *, n_threads: int | None = None) -> np.ndarray:
        """Place new codes in the embedding: float64 (n, n_components).

        ``n_threads`` is the neighbour search's (None: all cores); the
        result does not depend on it, nor on the other rows of ``codes``.
        """
        codes = np.asarray(codes, dtype=np.float32)
        out = np.empty((len(codes), self.embedding.shape[1]))
        if self._tree is None and len(codes):
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.training_codes.astype(np.float64))
        for start in range(0, len(codes), _CHUNK):
            out[start : start + _CHUNK] = self._place(
                codes[start : start + _CHUNK], -1 if n_threads is None else int(n_threads)
            )
        return out

    def _place(self, codes: np.ndarray, workers: int) -> np.ndarray:
        n, k = len(codes), self.n_neighbors
        dist, index = self._tree.query(codes.astype(np.float64), k=k, workers=workers)
        dist, index = np.reshape(dist, (n, k)), np.reshape(index, (n, k)).astype(np.int64)
        strengths = _membership_strengths(dist, self.local_connectivity)
        total = strengths.sum(1, keepdims=True)  # > 0 but where every exp underflows
        weights = np.where(total > 0, strengths / np.where(total > 0, total, 1.0), 1.0 / k)
        places = np.einsum("nk,nkd->nd", weights, self.embedding[index].astype(np.float64))
        self._optimise(places, index, strengths)
        same = dist[:, 0] == 0  # a training code: where the fit put it
        places[same] = self.embedding[index[same, 0]]
        return places

    def _optimise(self, places: np.ndarray, index: np.ndarray, strengths: np.ndarray) -> None:
        """umap's layout epochs for new points against the fixed embedding, in place.

        The same updates as umap-learn's ``optimize_layout_euclidean`` with
        ``move_other=False`` (attraction along each edge, ``negative_sample_rate``
        repulsions from random training points, steps clipped to 4, the rate
        falling linearly from a quarter of the fit's), vectorised over the
        points; each point's random draws come from a hash of
        ``transform_seed`` and its nearest training point, so that they do
        not depend on the other points, nor on the last bits of its code.
        """
        fixed = self.embedding.astype(np.float64)
        targets = fixed[index]  # (n, k, d): each point's neighbours' places
        a, b, gamma, epochs = self.a, self.b, self.repulsion_strength, self.n_epochs
        with np.errstate(divide="ignore"):
            per_sample = np.where(strengths >= 1.0 / epochs, 1.0 / strengths, np.inf)
        rate = self.negative_sample_rate
        per_negative = per_sample / max(rate, 1)
        next_sample, next_negative = per_sample.copy(), per_negative.copy()
        seeds = _mix(np.uint64(self.transform_seed) ^ index[:, 0].astype(np.uint64))
        n_fixed = np.uint64(len(fixed))
        alpha = self.learning_rate / 4.0
        for epoch in range(epochs):
            for j in range(index.shape[1]):
                due = next_sample[:, j] <= epoch
                rows = slice(None) if due.all() else np.flatnonzero(due)
                if isinstance(rows, np.ndarray) and not len(rows):
                    continue
                here = places[rows]
                diff = here - targets[rows, j]
                d2 = np.einsum("nd,nd->n", diff, diff)
                with np.errstate(divide="ignore", invalid="ignore"):
                    pull = np.where(d2 > 0, -2.0 * a * b * d2 ** (b - 1.0) / (a * d2**b + 1.0), 0)
                here += np.clip(pull[:, None] * diff, -4.0, 4.0) * alpha
                next_sample[rows, j] += per_sample[rows, j]
                draws = ((epoch - next_negative[rows, j]) / per_negative[rows, j]).astype(np.int64)
                n_draws = int(draws.max(initial=0)) if rate else 0
                if n_draws:
                    keys = np.arange(n_draws, dtype=np.uint64) + np.uint64(
                        (epoch * 1_000_003 + j) * 1_009
                    )
                    others = (_mix(seeds[rows][:, None] ^ keys) % n_fixed).astype(np.int64)
                for p in range(n_draws):
                    live = draws > p
                    every = live.all()
                    part = here if every else here[live]
                    diff = part - fixed[others[:, p] if every else others[live, p]]
                    d2 = np.einsum("nd,nd->n", diff, diff)
                    push = np.where(
                        d2 > 0, 2.0 * gamma * b / ((0.001 + d2) * (a * d2**b + 1.0)), 0.0
                    )
                    part += np.clip(push[:, None] * diff, -4.0, 4.0) * alpha
                    if not every:
                        here[live] = part
                next_negative[rows, j] += draws * per_negative[rows, j]
                if not isinstance(rows, slice):
                    places[rows] = here
            alpha = self.learning_rate / 4.0 * (1.0 - epoch / epochs)  # umap's schedule


def _membership_strengths(dist: np.ndarray, local_connectivity: float) -> np.ndarray:
    """umap's fuzzy membership of each new point's neighbours, per row: float64 (n, k).

    ``smooth_knn_dist`` (a transform's local connectivity is the fit's
    minus one, so ``rho`` is 0 by default) and ``compute_membership_strengths``,
    vectorised; the lower bound on ``sigma`` uses the row's mean distance
    where umap's uses the batch's.
    """
    n, k = dist.shape
    connectivity = max(0.0, local_connectivity - 1.0)
    whole, fraction = int(math.floor(connectivity)), connectivity - math.floor(connectivity)
    rho = np.zeros(n)
    positive = np.where(dist > 0, dist, np.inf)
    ranked = np.sort(positive, axis=1)
    count = (dist > 0).sum(1)
    if whole > 0:
        low = ranked[:, min(whole, k) - 1]
        high = ranked[:, min(whole, k - 1)]
        rho = np.where(count >= connectivity, low, rho)
        if fraction > 1e-5:
            rho = np.where(count > whole, rho + fraction * (high - low), rho)
    else:
        rho = np.where(count >= connectivity, fraction * np.where(count > 0, ranked[:, 0], 0), rho)
    rho = np.where((count < connectivity) & (count > 0), np.where(dist > 0, dist, 0).max(1), rho)
    rho = np.where(np.isfinite(rho), rho, 0.0)
    target = math.log2(k)
    lo, hi, mid = np.zeros(n), np.full(n, np.inf), np.ones(n)
    shifted = dist[:, 1:] - rho[:, None]  # umap leaves the nearest out of this sum
    done = np.zeros(n, dtype=bool)
    for _ in range(64):
        with np.errstate(over="ignore"):
            psum = np.where(shifted > 0, np.exp(-(shifted / mid[:, None])), 1.0).sum(1)
        done |= np.abs(psum - target) < 1e-5
        above = ~done & (psum > target)
        below = ~done & ~(psum > target)
        hi = np.where(above, mid, hi)
        lo = np.where(below, mid, lo)
        mid = np.where(
            above | (below & np.isfinite(hi)), (lo + hi) / 2, np.where(below, mid * 2, mid)
        )
    sigma = np.maximum(mid, 1e-3 * dist.mean(1))
    with np.errstate(divide="ignore", invalid="ignore"):
        strengths = np.exp(-((dist - rho[:, None]) / sigma[:, None]))
    return np.where((dist - rho[:, None] <= 0) | (sigma[:, None] == 0), 1.0, strengths)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 in, uint64 out): a counter-based random number per entry."""
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


# ------------------------------------------------------------------ model files
def _expected_members(
    cls: type, params: dict[str, Any], headers: dict[str, Any], checked: dict[str, Any]
) -> dict[str, tuple[int, ...]]:
    """The members of a DeepClustering file, their shapes and dtypes, from its header alone.

    Checks the configuration (bounds first, as :meth:`ConvVAE.load` does),
    builds the autoencoder on the meta device for its weights' shapes, and
    stores what it checked in ``checked`` for :meth:`DeepClustering.load`.
    """
    for key in ("config", "mixture", "mixture_fitted"):
        if not isinstance(params.get(key), dict):
            raise ValueError(f"missing or malformed header field {key!r}.")
    config = dict(params["config"])
    shape = params.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 2):
        raise ValueError("missing or malformed header field 'image_shape'.")
    image_shape = tuple(
        _bounded_int(side, "image_shape", CONFIG_BOUNDS["image_side"], "header") for side in shape
    )
    n = _bounded_int(params.get("n_samples"), "n_samples", 2**31 - 1, "header")
    model = cls()
    try:
        if isinstance(config.get("hidden_sizes"), list):
            config["hidden_sizes"] = tuple(config["hidden_sizes"])
        model.set_params(**config)
        model.device, model.n_threads = None, None  # this machine's, not the file's
        hidden = model._check_params()
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"bad configuration: {exc}") from None
    size = int(model.embedding_size)
    n_pixels = math.prod(image_shape)
    shapes = module_shapes(lambda: MLPAutoencoder(n_pixels, hidden, size), _NET)
    manifold = params.get("manifold")
    if (manifold is None) != (model.manifold is None):
        raise ValueError(
            f"the header's manifold step ({manifold!r}) disagrees with manifold={model.manifold!r}."
        )
    K = int(model.n_clusters)
    D = size if manifold is None else model._manifold_size()
    shapes.update(_mixture_members(params["mixture"], headers, _MIXTURE))
    means = headers[_MIXTURE + "means_"][1]
    if tuple(means) != (K, D):
        raise ValueError(
            f"array {_MIXTURE + 'means_'!r} has shape {tuple(means)}, expected {(K, D)} "
            f"(n_clusters={K}, a {D}-dimensional clustering space)."
        )
    shapes["embedding_"] = (n, D)
    shapes["labels_"] = (n,)
    kinds = {name: ("float", "f") for name in shapes if name.startswith(_NET)}
    kinds.update({"embedding_": ("float", "f"), "labels_": ("integer", "iu")})
    if manifold is not None:
        checked["manifold"] = _manifold_params(manifold, n)
        shapes[_CODES] = (n, size)
        kinds[_CODES] = ("float", "f")
    for name, (what, allowed) in kinds.items():
        if name in headers and headers[name][0].kind not in allowed:
            raise ValueError(f"array {name!r} has dtype {headers[name][0]}, expected {what}.")
    checked.update(
        model=model,
        hidden=hidden,
        image_shape=image_shape,
        n_samples=n,
        n_clusters=K,
        n_features=D,
    )
    return shapes


def _manifold_params(params: Any, n: int) -> dict[str, Any]:
    """The header's UMAP parameters, each of its type and in range (work is bounded by them)."""
    if not isinstance(params, dict) or set(params) != set(ManifoldTransform._PARAMS):
        raise ValueError(
            f"malformed header field 'manifold': expected the keys {list(ManifoldTransform._PARAMS)}."
        )
    out = {
        "n_neighbors": _bounded_int(params["n_neighbors"], "manifold.n_neighbors", n, "header"),
        "negative_sample_rate": _bounded_int(
            params["negative_sample_rate"], "manifold.negative_sample_rate", 1000, "header"
        ),
        "n_epochs": _bounded_int(params["n_epochs"], "manifold.n_epochs", 10000, "header"),
    }
    seed = params["transform_seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(
            f"bad header field 'manifold.transform_seed': must be an integer in [0, 2**32); "
            f"got {seed!r}."
        )
    out["transform_seed"] = seed
    for name, low, positive in (
        ("a", 0.0, True),
        ("b", 0.0, True),
        ("learning_rate", 0.0, True),
        ("repulsion_strength", 0.0, False),
        ("local_connectivity", 0.0, False),
    ):
        value = params[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < low
            or (positive and value == low)
        ):
            raise ValueError(
                f"bad header field 'manifold.{name}': must be a finite number "
                f"{'>' if positive else '>='} {low}; got {value!r}."
            )
        out[name] = float(value)
    return out


def _mixture_from_file(
    params: dict[str, Any], arrays: dict[str, np.ndarray], K: int, D: int, path: Any
) -> GaussianMixture:
    """The fitted mixture, checked as :meth:`GaussianMixture.load` checks its own file."""
    mixture = GaussianMixture()
    try:
        mixture.set_params(**params["mixture"])
    except ValueError as exc:
        raise ValueError(f"{path} (mixture): {exc}") from None
    _check_mixture_params(mixture, f"{path} (mixture)")
    members = {
        name[len(_MIXTURE) :]: value for name, value in arrays.items() if name.startswith(_MIXTURE)
    }
    mixture._restore(members, f"{path} (mixture)")
    fitted = params["mixture_fitted"]
    converged, n_iter, bound = (
        fitted.get(name) for name in ("converged_", "n_iter_", "lower_bound_")
    )
    if (
        not isinstance(converged, bool)
        or isinstance(n_iter, bool)
        or not isinstance(n_iter, int)
        or n_iter < 0
        or not (bound is None or (isinstance(bound, (int, float)) and not isinstance(bound, bool)))
    ):
        raise ValueError(f"{path}: malformed header field 'mixture_fitted'.")
    mixture.converged_, mixture.n_iter_ = converged, n_iter
    mixture.lower_bound_ = np.nan if bound is None else float(bound)
    return mixture


def _timings(timings: Any, path: Any) -> dict[str, dict[str, float]]:
    """The fit's ``timings_`` from a header: stage -> {wall_seconds, cpu_seconds}."""
    if not isinstance(timings, dict):
        raise ValueError(f"{path}: malformed header field 'timings'.")
    out = {}
    for stage, entry in timings.items():
        if not isinstance(entry, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry.values()
        ):
            raise ValueError(f"{path}: malformed header field 'timings.{stage}'.")
        out[str(stage)] = {str(key): float(value) for key, value in entry.items()}
    return out
