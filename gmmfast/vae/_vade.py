"""VaDE: a VAE with a Gaussian-mixture prior in latent space, trained jointly (Jiang et al., 2017)."""

from __future__ import annotations

import copy
import math
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ..mixture._gaussian_mixture import GaussianMixture
from ..utils._estimator import check_is_fitted, restores_state_on_error
from ..utils._progress import say
from ..utils._validation import check_random_state, check_scalar
from ._conv_vae import ConvVAE, _draw_latents
from ._engine import (
    MAX_ACTIVATIONS,
    MIN_TRAIN_IMAGES,
    _seed,
    _seeded,
    _threads,
    _TorchEstimator,
    check_bool,
    check_images,
    check_size,
)
from ._model_files import (
    CONFIG_BOUNDS,
    _fit_results,
    _history,
    _read_model,
    _restore_fit_results,
    _saved_config,
    _write_model,
)
from ._nets import (
    DenseVAENet,
    GMMPrior,
    VAENet,
    reconstruction_loss,
)


class _VaDEModule(nn.Module):
    def __init__(self, net: VAENet | DenseVAENet, prior: GMMPrior) -> None:
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
        training and validation split. Either architecture: a
        ``ConvVAE(architecture='dense')`` is the original VaDE's network and
        trains far faster on the CPU.
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

    Examples
    --------
    A few seconds of training on the shipped MNIST sample (real use: tens of
    epochs on all the digits, see the user guide):

    >>> from gmmfast.datasets import load_mnist_sample
    >>> from gmmfast.vae import ConvVAE, VaDE
    >>> X, y, X_test, y_test = load_mnist_sample()
    >>> vae = ConvVAE(latent_dim=4, architecture="dense", epochs=1, random_state=0)
    >>> model = VaDE(vae, n_clusters=3, epochs=1, gmm_n_init=1, random_state=0)
    >>> model = model.fit(X[:600])
    >>> model.predict(X_test[:5]).shape, model.means_.shape
    ((5,), (3, 4))
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
            raise ValueError(
                "VaDE needs vae=ConvVAE(...): a pretrained one, or one for fit to pretrain; "
                f"got {self.vae!r}."
            )
        check_size(self.n_clusters, "n_clusters", CONFIG_BOUNDS["n_clusters"])
        if not hasattr(self.vae, "network_"):  # to be pretrained: its parameters checked now
            self.vae._check_params()
        if self.beta is not None:
            check_scalar(self.beta, "beta", (int, float), min_value=0)
        check_scalar(self.gmm_n_init, "gmm_n_init", (int, np.integer), min_value=1)
        check_scalar(
            self.gmm_reg_covar, "gmm_reg_covar", (int, float), min_value=0, include_min=False
        )
        check_bool(self.learn_weights, "learn_weights")
        self._check_training_params(min_epochs=0)

    @restores_state_on_error
    def fit(
        self,
        images: Any,
        y: Any = None,
        *,
        epochs: int | None = None,
        validation_images: Any = None,
    ) -> "VaDE":
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

        Raises
        ------
        ValueError
            Bad parameters or images, images of another size than the
            pretrained VAE's, or a network or prior over the size budget
            (``n_clusters`` up to 10000; the VAE's sizes as in
            :meth:`ConvVAE.fit`; ``n_clusters * latent_dim`` floats per image
            of a batch within :data:`~gmmfast.vae._engine.MAX_ACTIVATIONS`),
            all checked before any training. A fit that raises leaves the
            model as it was (unfitted, or the previous fit).
        """
        self._check_params()
        epochs = self.epochs if epochs is None else epochs
        check_scalar(epochs, "epochs", (int, np.integer), min_value=0)
        X = check_images(images, min_images=max(self.n_clusters, MIN_TRAIN_IMAGES))
        pretrained = hasattr(self.vae, "network_")
        if pretrained and tuple(self.vae.image_shape_) != tuple(X.shape[1:]):
            raise ValueError(
                f"images are {X.shape[1]} x {X.shape[2]}; the VAE was fitted on "
                f"{self.vae.image_shape_[0]} x {self.vae.image_shape_[1]} images."
            )
        if not pretrained:
            self.vae._check_network(tuple(X.shape[1:]), self.vae._check_params(), len(X))
        # The prior's KL makes a few (batch, n_clusters, latent_dim) tensors.
        batch = max(1, min(int(self.batch_size), len(X)))
        prior_floats = 4 * batch * int(self.n_clusters) * int(self.vae.latent_dim)
        if prior_floats > MAX_ACTIVATIONS:
            raise ValueError(
                f"n_clusters={self.n_clusters} with latent_dim={self.vae.latent_dim} and a batch of "
                f"{batch} make {prior_floats:,} floats in the prior's KL, over the limit of "
                f"{MAX_ACTIVATIONS:,} (1 GiB); lower n_clusters, latent_dim or batch_size."
            )
        seed = _seed(self.random_state)
        device = self._device()
        vae = copy.deepcopy(self.vae)
        # One split for pretraining and joint training: the images that pick
        # the best epoch are never trained on.
        X_train, X_val = self._split(X, validation_images, seed)
        if not pretrained:
            say(self.verbose, "VaDE: pretraining the VAE")
            vae.fit(X_train, validation_images=X_val)
        vae.device, vae.n_threads = self.device, self.n_threads
        vae.network_, vae.device_ = vae.network_.to(device), device
        Z, log_sigma = vae.encode(X_train, return_log_sigma=True)
        gm = GaussianMixture(
            int(self.n_clusters),
            covariance_type="diag",
            n_init=int(self.gmm_n_init),
            reg_covar=float(self.gmm_reg_covar),
            random_state=seed,
            max_iter=300,
            n_threads=self.n_threads,
        ).fit(Z)
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
                self.history_ = {
                    "train_loss": [],
                    "val_loss": [],
                    "learning_rate": [],
                    "seconds": [],
                }
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

    def sample(
        self, n_samples: int = 1, *, component: int | None = None, random_state: Any = None
    ) -> np.ndarray:
        """New images from the learned prior, or from its cluster ``component``; (n, H, W) float32."""
        self._check_fitted()
        check_scalar(n_samples, "n_samples", (int, np.integer), min_value=1)
        rng = check_random_state(random_state)
        return self.decode(
            _draw_latents(rng, n_samples, self.means_.shape[1], self.mixture_, component)
        )

    # ------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model (VAE weights and configuration, prior, history) to ``path``."""
        self._check_fitted()
        config = _saved_config(self, ("vae", "device", "n_threads"))
        state = {f"vae.{k}": v for k, v in self.vae_.network_.state_dict().items()}
        state.update(
            {
                "prior.weights": torch.from_numpy(self.weights_),
                "prior.means": torch.from_numpy(self.means_),
                "prior.variances": torch.from_numpy(self.variances_),
            }
        )
        init = self.init_mixture_
        state.update(
            {
                "init.weights": torch.from_numpy(init.weights_),
                "init.means": torch.from_numpy(init.means_),
                "init.variances": torch.from_numpy(init.covariances_),
            }
        )
        _write_model(
            path,
            self._MODEL_KIND,
            config,
            state,
            {
                "vae_config": self.vae_._config(),
                "image_shape": list(self.vae_.image_shape_),
                "vae_history": self.vae_.history_,
                "vae_fitted": self.vae_._fitted_info(),
                "history": self.history_,
                "fitted": _fit_results(self),
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> "VaDE":
        """Read a model written by :meth:`save`, validating it (see :meth:`ConvVAE.load`)."""
        payload = _read_model(path, cls._MODEL_KIND)
        state = payload["state_dict"]
        vae_payload = {
            "config": payload.get("vae_config"),
            "image_shape": payload.get("image_shape"),
            "state_dict": {k[4:]: v for k, v in state.items() if k.startswith("vae.")},
            "history": payload.get("vae_history", {}),
            "fitted": payload.get("vae_fitted", {}),
        }
        if not isinstance(vae_payload["config"], dict):
            raise ValueError(f"{path}: missing or malformed 'vae_config'.")
        config = payload["config"]
        if not all(isinstance(key, str) for key in config):
            raise ValueError(f"{path}: malformed 'config'.")
        n_clusters = config.get("n_clusters", 10)
        if (
            isinstance(n_clusters, bool)
            or not isinstance(n_clusters, int)
            or not 1 <= n_clusters <= CONFIG_BOUNDS["n_clusters"]
        ):
            raise ValueError(
                f"{path}: bad configuration: n_clusters must be an integer in "
                f"1..{CONFIG_BOUNDS['n_clusters']}; got {n_clusters!r}."
            )
        known = {
            f"{prefix}.{name}"
            for prefix in ("prior", "init")
            for name in ("weights", "means", "variances")
        }
        unknown = [k for k in state if not k.startswith("vae.") and k not in known]
        if unknown:
            raise ValueError(f"{path}: unknown state dict entries {unknown[:3]}.")
        vae = ConvVAE._from_payload(vae_payload, path, device)
        model = cls()
        try:
            model.set_params(**config)
            model.vae, model.device = None, device
            model._check_params_no_vae()
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"{path}: bad configuration: {exc}") from None
        K, d = int(model.n_clusters), int(vae.latent_dim)
        arrays = {}
        for name, shape in (("weights", (K,)), ("means", (K, d)), ("variances", (K, d))):
            for prefix in ("prior", "init"):
                key = f"{prefix}.{name}"
                if key not in state or tuple(state[key].shape) != shape:
                    raise ValueError(
                        f"{path}: missing or malformed {key!r} (expected shape {shape})."
                    )
                arrays[key] = state[key].double().numpy()
        model.vae_ = vae
        model.weights_, model.means_, model.variances_ = (
            arrays[f"prior.{n}"] for n in ("weights", "means", "variances")
        )
        model.mixture_ = _diag_mixture(model.weights_, model.means_, model.variances_, path)
        model.init_mixture_ = _diag_mixture(
            arrays["init.weights"], arrays["init.means"], arrays["init.variances"], path
        )
        model.history_ = _history(payload.get("history", {}), path)
        _restore_fit_results(model, payload, path)
        return model

    def _check_params_no_vae(self) -> None:
        vae, self.vae = self.vae, ConvVAE()
        try:
            self._check_params()
        finally:
            self.vae = vae


def _diag_mixture(
    weights: np.ndarray, means: np.ndarray, variances: np.ndarray, path: Any
) -> GaussianMixture:
    """A fitted diagonal :class:`~gmmfast.GaussianMixture` with these parameters (validated)."""
    weights = np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum()
    variances = np.asarray(variances, dtype=np.float64)
    if not (np.isfinite(variances).all() and (variances > 0).all()):
        raise ValueError(f"{path}: variances must be positive and finite.")
    gm = GaussianMixture(len(weights), covariance_type="diag")
    gm._restore(
        {
            "weights_": weights,
            "means_": np.asarray(means, dtype=np.float64),
            "covariances_": variances,
            "precisions_cholesky_": 1.0 / np.sqrt(variances),
        },
        path,
    )
    return gm
