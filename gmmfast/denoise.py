"""Patch-prior image denoising with a Gaussian mixture on overlapping patches.

A :class:`~gmmfast.GaussianMixture` models m x m patches of clean images
(by default with each patch's mean removed and handled separately, as
EPLL does). A noisy image y = z + n, n ~ N(0, sigma^2 I), is restored
patch by patch and the overlapping estimates are averaged back:

* ``method="map"`` (the reference method): the component with the highest
  posterior p(k | y) under the noisy-patch likelihood
  N(y | mu_k, Sigma_k + sigma^2 I), and its Wiener estimate
  mu_k + Sigma_k (Sigma_k + sigma^2 I)^-1 (y - mu_k);
* ``method="posterior_mean"``: the posterior mean, the responsibility-
  weighted mixture of every component's Wiener estimate;
* ``method="epll"``: Expected Patch Log-Likelihood by half-quadratic
  splitting (Zoran & Weiss, 2011): alternate MAP-component patch estimates
  under a noise level 1/beta with a closed-form image update, for an
  increasing schedule of beta, so each patch is restored knowing its
  neighbours' estimates.

Each per-component filter comes from one Cholesky factorisation of
Sigma_k + s^2 I per (component, noise level) and is applied to all patches
of the component at once with a matrix product (BLAS-3); responsibilities
come from the compiled E-step kernel.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from scipy import linalg

from . import _gaussian as G
from ._base import BaseEstimator, check_is_fitted
from ._io import load_npz, save_npz
from ._parallel import effective_n_threads
from ._validation import check_compute_dtype, check_random_state, check_scalar
from .mixture import GaussianMixture
from .patches import average_patches, extract_patches

METHODS = ("map", "posterior_mean", "epll")


class PatchDenoiser(BaseEstimator):
    """Denoise images under a Gaussian-mixture prior on their patches.

    Parameters
    ----------
    patch_size : int, default=8
        Side m of the square patches.
    n_components : int, default=20
        Components of the patch mixture.
    stride : int, default=1
        Step between patches, when fitting and when restoring (1 to
        ``patch_size``; every pixel is always covered).
    remove_mean : bool, default=True
        Model patches with their mean removed; the mean of a noisy patch is
        kept as its estimate (its noise is sigma / m, small next to sigma).
    reg_covar : float, default=1e-4
        Added to the covariance diagonals of the patch mixture.
    max_patches : int, default=200_000
        At most this many training patches, drawn at random.
    max_iter, tol, n_init, covariance_type, dtype, n_threads
        Passed to the :class:`~gmmfast.GaussianMixture` of patches.
    random_state : int, RandomState, Generator or None
    verbose : int, default=0
        1 reports fitting and each EPLL step.

    Attributes
    ----------
    mixture_ : GaussianMixture
        The patch prior, on vectors of ``patch_size ** 2`` pixels.
    """

    _MODEL_KIND = "PatchDenoiser"

    def __init__(
        self,
        patch_size: int = 8,
        n_components: int = 20,
        stride: int = 1,
        *,
        remove_mean: bool = True,
        covariance_type: str = "full",
        reg_covar: float = 1e-4,
        max_patches: int = 200_000,
        max_iter: int = 100,
        tol: float = 1e-3,
        n_init: int = 1,
        random_state: Any = None,
        dtype: Any = np.float64,
        n_threads: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.patch_size = patch_size
        self.n_components = n_components
        self.stride = stride
        self.remove_mean = remove_mean
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_patches = max_patches
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.dtype = dtype
        self.n_threads = n_threads
        self.verbose = verbose

    # ---------------------------------------------------------------- fitting
    def fit(self, images: Any) -> "PatchDenoiser":
        """Fit the patch mixture on clean images of shape (n, H, W) or (H, W), in [0, 1]."""
        check_scalar(self.max_patches, "max_patches", (int, np.integer), min_value=1)
        if self.covariance_type not in ("full", "diag", "spherical"):
            # tied would share one covariance among all patch clusters: not a patch prior
            raise ValueError(f"covariance_type must be 'full', 'diag' or 'spherical'; got {self.covariance_type!r}.")
        imgs = _check_images(images)
        patches = extract_patches(imgs, self.patch_size, self.stride, n_threads=self.n_threads)
        rng = check_random_state(self.random_state)
        if len(patches) > self.max_patches:
            patches = patches[np.sort(rng.choice(len(patches), self.max_patches, replace=False))]
        if self.remove_mean:
            patches = patches - patches.mean(axis=1, keepdims=True)
        self._say(f"fitting a {self.n_components}-component mixture on {len(patches)} patches of "
                  f"{self.patch_size}x{self.patch_size}")
        self.mixture_ = GaussianMixture(
            self.n_components, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
            max_iter=self.max_iter, tol=self.tol, n_init=self.n_init, random_state=rng,
            dtype=self.dtype, n_threads=self.n_threads, verbose=max(0, int(self.verbose) - 1),
        ).fit(patches)
        return self

    # -------------------------------------------------------------- inference
    def denoise(
        self,
        images: Any,
        sigma: float,
        *,
        method: str = "epll",
        betas: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Restore images corrupted by additive Gaussian noise of standard deviation ``sigma``.

        Parameters
        ----------
        images : array of shape (n, H, W) or (H, W)
            Noisy images (the same scale as the training images).
        sigma : float
            Noise standard deviation, > 0.
        method : {'map', 'posterior_mean', 'epll'}, default='epll'
        betas : sequence of float, optional
            EPLL's schedule of 1 / (noise variance of the patch step); the
            default ``[1, 4, 8, 16, 32] / sigma^2`` is Zoran & Weiss's.

        Returns
        -------
        ndarray of the input's shape, float64
        """
        check_is_fitted(self, "mixture_")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
        check_scalar(sigma, "sigma", (int, float, np.floating), min_value=0.0)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive; got {sigma}.")
        imgs = _check_images(images)
        squeeze = np.ndim(images) == 2
        if method == "epll":
            out = self._epll(imgs, float(sigma), betas)
        else:
            out = self._one_pass(imgs, float(sigma) ** 2, posterior_mean=method == "posterior_mean")
        return out[0] if squeeze else out

    def _one_pass(self, source: np.ndarray, noise_var: float, *, posterior_mean: bool) -> np.ndarray:
        """Patches of ``source`` restored under noise variance ``noise_var``, averaged into images."""
        patches = extract_patches(source, self.patch_size, self.stride, n_threads=self.n_threads)
        restored = self._restore_patches(patches, noise_var, posterior_mean=posterior_mean)
        return average_patches(restored, source.shape, self.patch_size, self.stride, n_threads=self.n_threads)

    def _restore_patches(self, patches: np.ndarray, noise_var: float, *, posterior_mean: bool) -> np.ndarray:
        gm = self.mixture_
        patches = np.asarray(patches, dtype=np.float64)
        if self.remove_mean:
            dc = patches.mean(axis=1, keepdims=True)
            centred = patches - dc
        else:
            dc, centred = 0.0, patches
        filters = self._filters(noise_var)
        resp = self._responsibilities(centred, filters)
        out = np.zeros_like(centred)
        if posterior_mean:
            for k, (mean, gain) in enumerate(zip(gm.means_, filters["gains"])):
                rows = np.flatnonzero(resp[:, k] > 0)
                if len(rows):
                    out[rows] += resp[rows, k, None] * _wiener(centred[rows], mean, gain)
        else:
            best = resp.argmax(axis=1)
            for k, (mean, gain) in enumerate(zip(gm.means_, filters["gains"])):
                rows = np.flatnonzero(best == k)
                if len(rows):
                    out[rows] = _wiener(centred[rows], mean, gain)
        return out + dc

    def _filters(self, noise_var: float) -> dict[str, Any]:
        """Per component, from one Cholesky factor of Sigma_k + s^2 I: the
        precision factor of the noisy-patch likelihood and the Wiener gain
        Sigma_k (Sigma_k + s^2 I)^-1 (stored transposed, for row vectors)."""
        cache = self.__dict__.setdefault("_filter_cache", {})
        if noise_var in cache:
            return cache[noise_var]
        gm = self.mixture_
        covs = gm._full_covariances()
        D = covs.shape[1]
        chols, gains = [], []
        for cov in covs:
            noisy = cov + noise_var * np.eye(D)
            factor = linalg.cholesky(noisy, lower=True)
            # precision factor U (U U^T = noisy^-1) as the E-step kernel takes it: U = L^-T
            chols.append(linalg.solve_triangular(factor, np.eye(D), lower=True).T)
            # (noisy^-1 Sigma)^T = Sigma noisy^-1; rows x -> x (noisy^-1 Sigma)
            gains.append(linalg.cho_solve((factor, True), cov))
        filters = {"prec_chol": np.ascontiguousarray(chols), "gains": gains}
        if len(cache) > 16:
            cache.clear()
        cache[noise_var] = filters
        return filters

    def _responsibilities(self, centred: np.ndarray, filters: dict[str, Any]) -> np.ndarray:
        gm = self.mixture_
        X = np.ascontiguousarray(centred, dtype=check_compute_dtype(self.dtype))
        resp, _ = G.estimate_log_prob(
            X, gm.weights_, gm.means_, filters["prec_chol"], "full",
            mode=G.MODE_RESP, n_threads=effective_n_threads(self.n_threads),
        )
        return resp

    def _epll(self, noisy: np.ndarray, sigma: float, betas: Sequence[float] | None) -> np.ndarray:
        """Half-quadratic splitting: for beta in the schedule, MAP-component
        patch estimates of the current image under noise variance 1/beta,
        then the image that balances fidelity (weight 1/sigma^2) and patch
        agreement (weight beta per covering patch), pixel by pixel."""
        schedule = np.asarray(betas if betas is not None else np.array([1, 4, 8, 16, 32]) / sigma**2, dtype=np.float64)
        if schedule.ndim != 1 or len(schedule) == 0 or np.any(schedule <= 0):
            raise ValueError("betas must be a non-empty sequence of positive numbers.")
        lam = 1.0 / sigma**2
        H, W = noisy.shape[1:]
        counts = _coverage_counts(H, W, self.patch_size, self.stride)
        x = noisy.copy()
        for step, beta in enumerate(schedule):
            patch_mean = self._one_pass(x, 1.0 / beta, posterior_mean=False)
            x = (lam * noisy + beta * counts * patch_mean) / (lam + beta * counts)
            self._say(f"EPLL step {step + 1}/{len(schedule)}: beta {beta:.4g}")
        return x

    def _say(self, message: str) -> None:
        if self.verbose:
            print(f"[PatchDenoiser] {message}", flush=True)

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted denoiser to ``path`` as ``.npz`` (no pickle)."""
        check_is_fitted(self, "mixture_")
        params = {name: getattr(self, name) for name in ("patch_size", "n_components", "stride", "remove_mean",
                                                          "covariance_type", "reg_covar")}
        params = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}
        gm = self.mixture_
        save_npz(path, self._MODEL_KIND, params, {
            "weights_": gm.weights_, "means_": gm.means_, "covariances_": gm.covariances_,
            "precisions_cholesky_": gm.precisions_cholesky_,
        })

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PatchDenoiser":
        """Read a denoiser written by :meth:`save`, validating every array."""
        params, arrays = load_npz(path, cls._MODEL_KIND)
        model = cls()
        try:
            model.set_params(**params)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        gm = GaussianMixture(model.n_components, covariance_type=model.covariance_type)
        gm._restore(arrays, path)
        if gm.means_.shape[1] != model.patch_size**2:
            raise ValueError(f"{path}: the mixture has {gm.means_.shape[1]} features, not patch_size^2 = {model.patch_size**2}.")
        model.mixture_ = gm
        return model


def _wiener(centred: np.ndarray, mean: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """mu + (y - mu) (noisy^-1 Sigma) for a block of patch rows: one GEMM."""
    return mean + (centred - mean) @ gain


def _coverage_counts(H: int, W: int, patch_size: int, stride: int) -> np.ndarray:
    """How many patches cover each pixel (the same for every image)."""
    from .patches import patch_positions

    counts = np.zeros((H, W))
    for r in patch_positions(H, patch_size, stride):
        for c in patch_positions(W, patch_size, stride):
            counts[r:r + patch_size, c:c + patch_size] += 1
    return counts


def _check_images(images: Any) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"images must hold real numbers; got dtype {arr.dtype}.")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"images must have shape (n, H, W) or (H, W); got {np.shape(images)}.")
    if not np.isfinite(arr).all():
        raise ValueError("images contain NaN or infinity.")
    return np.ascontiguousarray(arr, dtype=np.float64)
