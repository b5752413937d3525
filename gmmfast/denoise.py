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

    def _one_pass(self, source: np.ndarray, noise_var: float, *, posterior_mean: bool,
                  blur: np.ndarray | None = None) -> np.ndarray:
        """Patches of ``source`` restored under noise variance ``noise_var``
        (and the patch blur matrix ``blur``, if any), averaged into images."""
        patches = extract_patches(source, self.patch_size, self.stride, n_threads=self.n_threads)
        restored = self._restore_patches(patches, noise_var, posterior_mean=posterior_mean, blur=blur)
        return average_patches(restored, source.shape, self.patch_size, self.stride, n_threads=self.n_threads)

    def _restore_patches(self, patches: np.ndarray, noise_var: float, *, posterior_mean: bool,
                         blur: np.ndarray | None = None) -> np.ndarray:
        gm = self.mixture_
        patches = np.asarray(patches, dtype=np.float64)
        if self.remove_mean:
            dc = patches.mean(axis=1, keepdims=True)
            centred = patches - dc
        else:
            dc, centred = 0.0, patches
        filters = self._filters(noise_var, blur)
        resp = self._responsibilities(centred, filters)
        out = np.zeros_like(centred)
        parts = zip(gm.means_, filters["observed_means"], filters["gains"])
        if posterior_mean:
            for k, (mean, observed_mean, gain) in enumerate(parts):
                rows = np.flatnonzero(resp[:, k] > 0)
                if len(rows):
                    out[rows] += resp[rows, k, None] * _wiener(centred[rows], mean, observed_mean, gain)
        else:
            best = resp.argmax(axis=1)
            for k, (mean, observed_mean, gain) in enumerate(parts):
                rows = np.flatnonzero(best == k)
                if len(rows):
                    out[rows] = _wiener(centred[rows], mean, observed_mean, gain)
        return out + dc

    def _filters(self, noise_var: float, blur: np.ndarray | None = None) -> dict[str, Any]:
        """Per component, for patches observed as y = W z + n (W = ``blur``,
        or the identity), from one Cholesky factor of S_k = W Sigma_k W^T + s^2 I:
        the precision factor of the likelihood N(y | W mu_k, S_k), the
        observed means W mu_k, and the Wiener gain S_k^-1 W Sigma_k, so that
        a row y gives E[z | y, k] = mu_k + (y - W mu_k) gain."""
        key = (noise_var, None if blur is None else blur.tobytes())
        cache = self.__dict__.setdefault("_filter_cache", {})
        if key in cache:
            return cache[key]
        gm = self.mixture_
        covs = gm._full_covariances()
        D = covs.shape[1]
        W = np.eye(D) if blur is None else blur
        chols, gains = [], []
        for cov in covs:
            observed_cov = W @ cov @ W.T + noise_var * np.eye(D)
            factor = linalg.cholesky(observed_cov, lower=True)
            # the E-step kernel's precision factor U (U U^T = S^-1) is L^-T
            chols.append(linalg.solve_triangular(factor, np.eye(D), lower=True).T)
            gains.append(linalg.cho_solve((factor, True), W @ cov))
        filters = {"prec_chol": np.ascontiguousarray(chols), "gains": gains,
                   "observed_means": gm.means_ @ W.T}
        if len(cache) > 16:
            cache.clear()
        cache[key] = filters
        return filters

    def _responsibilities(self, centred: np.ndarray, filters: dict[str, Any]) -> np.ndarray:
        gm = self.mixture_
        X = np.ascontiguousarray(centred, dtype=check_compute_dtype(self.dtype))
        resp, _ = G.estimate_log_prob(
            X, gm.weights_, filters["observed_means"], filters["prec_chol"], "full",
            mode=G.MODE_RESP, n_threads=effective_n_threads(self.n_threads),
        )
        return resp

    def deblur(
        self,
        images: Any,
        kernel: Any,
        sigma: float,
        *,
        method: str = "epll",
        betas: Sequence[float] | None = None,
        cg_iter: int = 50,
    ) -> np.ndarray:
        """Restore images blurred by ``kernel`` and corrupted by Gaussian noise.

        The observation model is y = k * x + n: a 2-d convolution with zero
        padding outside the image (``scipy.ndimage.convolve`` with
        ``mode='constant'``), then noise of standard deviation ``sigma``.

        Parameters
        ----------
        images : array of shape (n, H, W) or (H, W)
        kernel : 2-d array
            The blur kernel (e.g. :func:`gaussian_kernel`), odd sides.
        sigma : float
            Noise standard deviation, > 0.
        method : {'map', 'posterior_mean', 'epll'}, default='epll'
            'map' and 'posterior_mean' restore each patch from its own
            pixels with W the blur restricted to the patch (the reference
            method; blur from outside the patch is ignored). 'epll' treats
            the blur over the whole image: each step solves
            (K^T K / sigma^2 + beta C) x = K^T y / sigma^2 + beta sum_p P_p^T z_p
            by conjugate gradients (C the patch coverage counts).
        betas : sequence of float, optional
            EPLL schedule (default ``[1, 4, 8, 16, 32] / sigma^2``).
        cg_iter : int, default=50
            Conjugate-gradient iterations per EPLL step.

        Returns
        -------
        ndarray of the input's shape, float64
        """
        check_is_fitted(self, "mixture_")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
        if not (np.isscalar(sigma) and np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number; got {sigma!r}.")
        k = _check_kernel(kernel)
        check_scalar(cg_iter, "cg_iter", (int, np.integer), min_value=1)
        imgs = _check_images(images)
        squeeze = np.ndim(images) == 2
        if method == "epll":
            out = self._epll(imgs, float(sigma), betas, kernel=k, cg_iter=int(cg_iter))
        else:
            W = blur_matrix(k, self.patch_size)
            out = self._one_pass(imgs, float(sigma) ** 2, posterior_mean=method == "posterior_mean", blur=W)
        return out[0] if squeeze else out

    def _epll(self, noisy: np.ndarray, sigma: float, betas: Sequence[float] | None,
              kernel: np.ndarray | None = None, cg_iter: int = 50) -> np.ndarray:
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
            if kernel is None:
                x = (lam * noisy + beta * counts * patch_mean) / (lam + beta * counts)
            else:
                x = _solve_deblur_step(noisy, kernel, lam, beta, counts, patch_mean, x, cg_iter)
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


def _wiener(centred: np.ndarray, mean: np.ndarray, observed_mean: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """mu + (y - W mu) gain for a block of patch rows: one GEMM."""
    return mean + (centred - observed_mean) @ gain


def gaussian_kernel(sigma_px: float = 1.0, radius: int | None = None) -> np.ndarray:
    """A normalised 2-d Gaussian blur kernel of standard deviation ``sigma_px`` pixels
    (radius ``ceil(3 sigma)`` by default)."""
    if not sigma_px > 0:
        raise ValueError(f"sigma_px must be positive; got {sigma_px}.")
    r = int(np.ceil(3 * sigma_px)) if radius is None else int(radius)
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma_px) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


def blur_matrix(kernel: np.ndarray, patch_size: int) -> np.ndarray:
    """The (m*m, m*m) matrix of convolving an m x m patch with ``kernel``,
    zero outside the patch (column j: the blurred j-th unit patch)."""
    from scipy.ndimage import convolve

    D = patch_size * patch_size
    W = np.empty((D, D))
    for j in range(D):
        unit = np.zeros(D)
        unit[j] = 1.0
        W[:, j] = convolve(unit.reshape(patch_size, patch_size), kernel, mode="constant").ravel()
    return W


def _blur(images: np.ndarray, kernel: np.ndarray, adjoint: bool = False) -> np.ndarray:
    """K x (or K^T x) for a batch, zero padding; the adjoint of a zero-padded
    convolution is the zero-padded correlation."""
    from scipy.ndimage import convolve, correlate

    op = correlate if adjoint else convolve
    return np.stack([op(img, kernel, mode="constant") for img in images])


def _solve_deblur_step(y, kernel, lam, beta, counts, patch_mean, x0, cg_iter):
    """Solve (lam K^T K + beta C) x = lam K^T y + beta C p by conjugate gradients,
    C the coverage counts and p the average of the patch estimates."""
    from scipy.sparse.linalg import LinearOperator, cg

    shape = y.shape
    size = int(np.prod(shape))

    def apply(v):
        v = v.reshape(shape)
        return (lam * _blur(_blur(v, kernel), kernel, adjoint=True) + beta * counts * v).ravel()

    rhs = (lam * _blur(y, kernel, adjoint=True) + beta * counts * patch_mean).ravel()
    operator = LinearOperator((size, size), matvec=apply, dtype=np.float64)
    x, _ = cg(operator, rhs, x0=x0.ravel(), maxiter=cg_iter, rtol=1e-6)
    return x.reshape(shape)


def _check_kernel(kernel: Any) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float64) if np.asarray(kernel).dtype.kind in "biuf" else None
    if k is None or k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError("kernel must be a 2-d numeric array with odd sides.")
    if not np.isfinite(k).all():
        raise ValueError("kernel contains NaN or infinity.")
    return k


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
