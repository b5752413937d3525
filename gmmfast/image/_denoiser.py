"""Patch-prior image denoising and deblurring with a Gaussian mixture on overlapping patches.

A :class:`~gmmfast.GaussianMixture` models m x m patches of clean images
(optionally with each patch's mean removed and handled separately, as
EPLL does). An image is observed as y = W z + n, n ~ N(0, sigma^2 I), with
W the identity (:meth:`PatchDenoiser.denoise`) or a blur
(:meth:`PatchDenoiser.deblur`), and restored by one of three methods:

* ``method="map"`` (the reference method): every overlapping patch is
  restored on its own: the component with the highest posterior p(k | y)
  under the observed-patch likelihood N(y | W mu_k, W Sigma_k W^T + s^2 I),
  and its Wiener estimate mu_k + Sigma_k W^T (W Sigma_k W^T + s^2 I)^-1
  (y - W mu_k); the overlapping estimates are averaged into the image;
* ``method="posterior_mean"``: the same, with the posterior mean of each
  patch, the responsibility-weighted mixture of every component's Wiener
  estimate;
* ``method="epll"``: Expected Patch Log-Likelihood (Zoran & Weiss, 2011)
  by half-quadratic splitting over the whole image: alternate a patch step
  (every patch of the current image restored under noise variance 1/beta)
  with an image step that balances the data term against agreement with
  the patch estimates, for an increasing schedule of beta. The image step
  is closed-form for denoising and a conjugate-gradient solve with the
  image-wide blur for deblurring, so EPLL treats the blur globally rather
  than patch by patch.

Each per-component filter comes from one Cholesky factorisation of
W Sigma_k W^T + s^2 I per (component, noise level, blur), is cached, and is
applied to all patches of the component at once with a matrix product
(BLAS-3); responsibilities come from the compiled E-step kernel, and
patches are extracted and averaged by the compiled kernels of
:mod:`gmmfast.image`, a chunk of images at a time into reused buffers.

:func:`select_patch_prior` searches patch sizes, numbers of components and
strides by held-out PSNR; :func:`estimate_noise_sigma` estimates the noise
level when it is not known (``sigma=None``).
"""

from __future__ import annotations

import numbers
import os
import time
from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import linalg

from ..mixture import _candidates, _gaussian
from ..mixture._gaussian_mixture import GaussianMixture, _parameter_members
from ..mixture._gaussian_mixture import _expected_members as _mixture_members
from ..utils import _progress
from ..utils._estimator import BaseEstimator, check_is_fitted, restores_state_on_error
from ..utils._model_files import load_npz, save_npz
from ..utils._threads import effective_n_threads, limits_blas
from ..utils._validation import check_clip, check_compute_dtype, check_random_state, check_scalar
from ._blur import blur, blur_matrix, check_blur_boundary, solve_deblur_step
from ._checks import (
    check_images,
    check_intensity_range,
    check_kernel,
    check_positive_sequence,
    to_input_dtype,
)
from ._patches import average_patches, extract_patches, patch_positions
from .metrics import estimate_noise_sigma

__all__ = ["PatchDenoiser"]

METHODS = ("map", "posterior_mean", "epll")
EPLL_INITS = ("noisy", "map", "posterior_mean")
PATCH_STEPS = ("map", "posterior_mean")
# Posterior-mean patch estimates skip a component in a block of patches whose
# responsibilities for it are all below this: its Wiener estimates would
# change them by less than RESP_FLOOR times their size.
RESP_FLOOR = 1e-10
# Patches restored per chunk: the patch buffers (a few MB) stay in the caches.
CHUNK_PATCHES = 16384


class PatchDenoiser(BaseEstimator):
    """Denoise and deblur images under a Gaussian-mixture prior on their patches.

    Images are float arrays of shape (n, H, W) or (H, W), values in [0, 1]
    (any scale works if training and test images share it; set ``clip``
    accordingly).

    Parameters
    ----------
    patch_size : int, default=8
        Side m of the square patches.
    n_components : int, default=50
        Components of the patch mixture. Measured on 200 held-out MNIST
        digits (noise sigma 0.2, 8 x 8 patches, 50,000 training patches;
        EPLL PSNR, fit on 2 loaded cores): K=10 23.47 dB (13 s), 20 23.94
        dB (43 s), 50 24.40 dB (45 s), 100 24.67 dB (80 s); 50 takes most
        of the gain within a minute of fitting; raise it for quality
        (``benchmarks/results/defaults.md``).
    stride : int, default=1
        Step between patches when restoring (1 to ``patch_size``; every
        pixel is always covered). Smaller is better and slower: stride s
        restores about (m / s)^2 patches per pixel.
    remove_mean : bool, default=True
        Model patches with their mean removed (as EPLL does); the mean of
        an observed patch is kept as its estimate (its noise is sigma / m).
        ``False`` models raw patches, better where absolute intensity is
        informative (MNIST's black background).
    covariance_type : {'full', 'diag', 'spherical'}, default='full'
    reg_covar : float, default=1e-4
        Added to the covariance diagonals of the patch mixture.
    max_patches : int, default=50_000
        At most this many training patches, drawn at random among all the
        patches of the training images (only those are extracted). On MNIST
        four times as many (200,000) gained 0.03 dB at K=50 (0.00 at K=20)
        for 4.7 times the fitting time.
    max_iter : int, default=100
        EM iterations at most for the patch mixture.
    tol : float, default=1e-2
        EM of the patch mixture stops when the mean log-likelihood per patch
        (about 108 nats for 8 x 8 MNIST patches) gains less than ``tol``.
        On MNIST (K=10, 50,000 patches) 1e-2 is reached after 39 EM
        iterations (61 on the shipped sample; 34 to 55 for K=20 to 100 on up
        to 200,000 patches), 1e-3 only after 104, and the PSNR of the two
        differs by under 0.01 dB.
    n_init, dtype, n_threads
        Passed to the :class:`~gmmfast.GaussianMixture` of patches, as are
        ``max_iter`` and ``tol``; ``dtype`` is also the compute dtype of
        responsibilities and Wiener filters.
    epll_betas : sequence of float, default=(16, 32, 64, 128)
        EPLL's schedule of patch-step precisions, in units of 1 / sigma^2:
        step t restores the patches of the current image under noise
        variance sigma^2 / epll_betas[t]. Zoran & Weiss use (1, 4, 8, 16,
        32) from the noisy image; starting from the one-pass estimate, whose
        error is already well below sigma, the schedule starts higher.
    epll_fidelity : float, default=4.0
        Weight of the data term of the EPLL image step, lambda =
        epll_fidelity / sigma^2, against beta per covering patch (up to
        patch_size^2 patches cover a pixel). 1 is the plain MAP objective;
        Zoran & Weiss use patch_size^2, which matters for deblurring.
    epll_patch_step : {'map', 'posterior_mean'}, default='map'
        Patch estimate inside EPLL: the MAP component's Wiener estimate
        (Zoran & Weiss) or the posterior mean.
    epll_init : {'noisy', 'map', 'posterior_mean'}, default='map'
        EPLL's starting image: the observation (Zoran & Weiss), or the
        one-pass estimate of that method (for deblurring, the per-patch
        deblurred image).

    The EPLL defaults were chosen by validation PSNR on held-out MNIST
    digits (sigma 0.1-0.3, with and without blur) and on a natural image
    (``benchmarks/experiments``); tune them for other data, e.g. with the
    candidates listed there.
    cg_iter : int, default=50
        Conjugate-gradient iterations per EPLL step when deblurring.
    blur_boundary : str, default='reflect'
        How the per-patch blur matrix of ``deblur`` with 'map' and
        'posterior_mean' (and of EPLL's one-pass start) treats the pixels
        just outside a patch, which the blur mixes in but the patch does
        not hold (:func:`blur_matrix`'s ``mode``): 'reflect' mirrors the
        patch, so a constant patch stays constant (validated best on
        MNIST); 'constant' takes them as zero.
    clip : tuple of two floats or None, default=(0.0, 1.0)
        Range the restored images are clipped to (the pixel range of the
        training images); ``None`` leaves them unclipped.
    random_state : int, RandomState, Generator or None
    verbose : int, default=0
        1 reports fitting, chunks of each pass and each EPLL step; 2 also
        the EM iterations of the mixture.
    gaussian_selection : {'auto', 'exact', 'candidates'}, default='auto'
        Gaussian selection, for the prior's fit (see
        :class:`~gmmfast.GaussianMixture`) and for EPLL: with 'candidates',
        the first pass over an image's patches evaluates every component and
        keeps each patch's candidates (as a fit's full pass does), and the
        later EPLL steps evaluate only those, for the MAP component and the
        posterior mean alike. 'auto': 'candidates' from 32 components on.
    selection_tol : float, default=1e-3
        As in :class:`~gmmfast.GaussianMixture`; a patch keeps the components
        whose responsibility is at least ``0.01 * selection_tol / K`` at the
        first pass, and its 8 most responsible ones.

    Attributes
    ----------
    mixture_ : GaussianMixture
        The patch prior, on vectors of ``patch_size ** 2`` pixels.

    Examples
    --------
    >>> dn = PatchDenoiser(patch_size=8, n_components=50).fit(clean)       # doctest: +SKIP
    >>> restored = dn.denoise(noisy, sigma=0.2, method="epll")             # doctest: +SKIP
    >>> sharp = dn.deblur(blurred, gaussian_kernel(1.0), 0.05)             # doctest: +SKIP
    """

    _MODEL_KIND = "PatchDenoiser"
    _SAVED_PARAMS = (
        "patch_size",
        "n_components",
        "stride",
        "gaussian_selection",
        "selection_tol",
        "remove_mean",
        "covariance_type",
        "reg_covar",
        "epll_betas",
        "epll_fidelity",
        "epll_patch_step",
        "epll_init",
        "cg_iter",
        "blur_boundary",
        "clip",
        "dtype",
    )

    def __init__(
        self,
        patch_size: int = 8,
        n_components: int = 50,
        stride: int = 1,
        *,
        remove_mean: bool = True,
        covariance_type: str = "full",
        reg_covar: float = 1e-4,
        max_patches: int = 50_000,
        max_iter: int = 100,
        tol: float = 1e-2,
        n_init: int = 1,
        epll_betas: Sequence[float] = (16.0, 32.0, 64.0, 128.0),
        epll_fidelity: float = 4.0,
        epll_patch_step: str = "map",
        epll_init: str = "map",
        cg_iter: int = 50,
        blur_boundary: str = "reflect",
        clip: tuple[float, float] | None = (0.0, 1.0),
        random_state: Any = None,
        dtype: Any = np.float64,
        n_threads: int | None = None,
        verbose: int = 0,
        gaussian_selection: str = "auto",
        selection_tol: float = 1e-3,
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
        self.epll_betas = epll_betas
        self.epll_fidelity = epll_fidelity
        self.epll_patch_step = epll_patch_step
        self.epll_init = epll_init
        self.cg_iter = cg_iter
        self.blur_boundary = blur_boundary
        self.clip = clip
        self.random_state = random_state
        self.dtype = dtype
        self.n_threads = n_threads
        self.verbose = verbose
        self.gaussian_selection = gaussian_selection
        self.selection_tol = selection_tol

    # ---------------------------------------------------------------- fitting
    @restores_state_on_error
    @limits_blas
    @_progress.shows_progress
    def fit(self, images: Any, y: Any = None) -> "PatchDenoiser":
        """Fit the patch mixture on clean images.

        Parameters
        ----------
        images : array of shape (n, H, W) or (H, W), or a list of 2-d arrays
            Clean training images; a list may hold images of different
            sizes (e.g. natural photographs).
        y : ignored

        At most ``max_patches`` patches (at positions of stride ``stride``)
        are drawn uniformly at random among all the patches of all the
        images, and only those are extracted, so a large training set costs
        no more memory than its images.
        """
        check_scalar(self.max_patches, "max_patches", numbers.Integral, min_value=1)
        if self.clip is not None:
            check_clip(self.clip)
        if self.covariance_type not in ("full", "diag", "spherical"):
            # tied would share one covariance among all patch clusters: not a patch prior
            raise ValueError(
                f"covariance_type must be 'full', 'diag' or 'spherical'; got {self.covariance_type!r}."
            )
        check_scalar(self.cg_iter, "cg_iter", numbers.Integral, min_value=1)
        check_blur_boundary(self.blur_boundary)
        if (
            isinstance(images, (list, tuple))
            and len(images)
            and all(np.ndim(im) == 2 for im in images)
        ):
            groups = [check_images(im) for im in images]
        else:
            groups = [check_images(images)]
        for group in groups:
            check_intensity_range(group, self.clip)
        rng = check_random_state(self.random_state)
        patches, n_total = _sample_patches(
            groups, self.patch_size, self.stride, self.max_patches, rng, self.n_threads
        )
        m = self.patch_size
        if self.remove_mean:
            patches = patches - patches.mean(axis=1, keepdims=True)
        self._say(
            f"fitting a {self.n_components}-component mixture on {len(patches):,} patches of {m}x{m} "
            f"(of {n_total:,})"
        )
        start = time.perf_counter()
        self.mixture_ = GaussianMixture(
            self.n_components,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            tol=self.tol,
            n_init=self.n_init,
            random_state=rng,
            dtype=self.dtype,
            n_threads=self.n_threads,
            verbose=max(0, int(self.verbose) - 1),
            gaussian_selection=self.gaussian_selection,
            selection_tol=self.selection_tol,
        ).fit(patches)
        self._filter_cache = {}
        self._fitted_with = {"patch_size": self.patch_size, "remove_mean": bool(self.remove_mean)}
        self._say(
            f"fitted in {time.perf_counter() - start:.1f} s, {self.mixture_.n_iter_} EM iterations"
        )
        return self

    # -------------------------------------------------------------- inference
    @limits_blas
    @_progress.shows_progress
    def denoise(
        self,
        images: Any,
        sigma: float | None = None,
        *,
        method: str = "epll",
        betas: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Restore images corrupted by additive Gaussian noise of standard deviation ``sigma``.

        Parameters
        ----------
        images : array of shape (n, H, W) or (H, W)
            Noisy images (the same scale as the training images).
        sigma : float or None, default=None
            Noise standard deviation, > 0. ``None`` estimates it from the
            images with :func:`estimate_noise_sigma` (one value for the
            batch: denoise separately images whose noise levels differ).
        method : {'map', 'posterior_mean', 'epll'}, default='epll'
        betas : sequence of float, optional
            EPLL's schedule of patch-step precisions 1 / (noise variance),
            in absolute units; overrides ``epll_betas / sigma^2``.

        Returns
        -------
        ndarray of the input's shape, clipped to ``clip``
            float64 for float images; for uint8/uint16 images, the input's
            dtype (rounded), see below.

        Notes
        -----
        Unsigned integer images are scaled as their dtype implies (uint8 by
        1/255, uint16 by 1/65535), restored on that [0, 1] scale, where
        ``sigma`` is given too (sigma 0.1 of a uint8 image is 25.5 grey
        levels), and returned in their dtype. Signed integer and boolean
        images are refused (no implied intensity range).
        """
        self._check_fitted()
        _check_method(method)
        imgs = check_images(images)
        check_intensity_range(imgs, self.clip)
        sigma = self._resolve_sigma(sigma, imgs)
        if method == "epll":
            out = self._epll(imgs, sigma, betas)
        else:
            out = self._one_pass(imgs, sigma**2, posterior_mean=method == "posterior_mean")
        out = to_input_dtype(self._clip(out), np.asarray(images).dtype)
        return out[0] if np.ndim(images) == 2 else out

    @limits_blas
    @_progress.shows_progress
    def deblur(
        self,
        images: Any,
        kernel: Any,
        sigma: float | None = None,
        *,
        method: str = "epll",
        betas: Sequence[float] | None = None,
        cg_iter: int | None = None,
    ) -> np.ndarray:
        """Restore images blurred by ``kernel`` and corrupted by Gaussian noise.

        The observation model is y = k * x + n: a 2-d convolution with zero
        padding outside the image (``scipy.ndimage.convolve`` with
        ``mode='constant'``, :func:`blur`), then noise of standard deviation
        ``sigma``.

        Parameters
        ----------
        images : array of shape (n, H, W) or (H, W)
        kernel : 2-d array
            The blur kernel (e.g. :func:`gaussian_kernel`), odd sides.
        sigma : float or None, default=None
            Noise standard deviation, > 0; ``None`` estimates it with
            :func:`estimate_noise_sigma` (the finest diagonal wavelet band
            of a blurred image is nearly all noise).
        method : {'map', 'posterior_mean', 'epll'}, default='epll'
            'map' and 'posterior_mean' restore each patch from its own
            pixels with W the blur restricted to the patch
            (:func:`blur_matrix` with ``blur_boundary``: the blur mixing in
            pixels from outside the patch is modelled only approximately;
            the reference method). 'epll' treats the blur over the whole
            image: each step solves
            (lambda K^T K + beta C) x = lambda K^T y + beta sum_p P_p^T z_p
            by conjugate gradients, K the image blur, C the patch coverage
            counts, z_p the patch estimates.
        betas : sequence of float, optional
            Absolute EPLL schedule (default ``epll_betas / sigma^2``).
        cg_iter : int, optional
            Conjugate-gradient iterations per EPLL step (default ``cg_iter``).

        Returns
        -------
        ndarray of the input's shape, clipped to ``clip``
            float64 for float images; uint8/uint16 images come back in their
            dtype, restored on their [0, 1] scale as in :meth:`denoise`.
        """
        self._check_fitted()
        _check_method(method)
        k = check_kernel(kernel)
        cg_iter = self.cg_iter if cg_iter is None else cg_iter
        check_scalar(cg_iter, "cg_iter", numbers.Integral, min_value=1)
        imgs = check_images(images)
        check_intensity_range(imgs, self.clip)
        sigma = self._resolve_sigma(sigma, imgs)
        if method == "epll":
            out = self._epll(imgs, sigma, betas, kernel=k, cg_iter=int(cg_iter))
        else:
            W = blur_matrix(k, self.patch_size, self.blur_boundary)
            out = self._one_pass(imgs, sigma**2, posterior_mean=method == "posterior_mean", blur=W)
        out = to_input_dtype(self._clip(out), np.asarray(images).dtype)
        return out[0] if np.ndim(images) == 2 else out

    # ------------------------------------------------------------ internals
    def _check_fitted(self) -> None:
        """A fitted prior that still matches ``patch_size`` and ``remove_mean``: changing
        either with ``set_params`` after ``fit`` would apply the prior to patches it was
        not trained on (wrong sizes, or means it never saw)."""
        check_is_fitted(self, "mixture_")
        fitted = getattr(self, "_fitted_with", None) or {
            "patch_size": int(round(np.sqrt(self.mixture_.n_features_in_))),
            "remove_mean": bool(self.remove_mean),
        }
        for name, value in fitted.items():
            current = getattr(self, name)
            if (bool(current) if name == "remove_mean" else current) != value:
                raise ValueError(
                    f"PatchDenoiser: {name}={current!r}, but the prior was fitted with {name}={value!r}; "
                    "call fit again (or set it back)."
                )

    def _resolve_sigma(self, sigma: Any, imgs: np.ndarray) -> float:
        if sigma is None:
            sigma = estimate_noise_sigma(imgs)
            self._say(f"estimated noise sigma {sigma:.4g}")
            if not sigma > 0:
                raise ValueError("the estimated noise sigma is 0 (noise-free images?); pass sigma.")
            return float(sigma)
        check_scalar(sigma, "sigma", numbers.Real, min_value=0.0, include_min=False)
        with np.errstate(
            over="ignore", divide="ignore"
        ):  # the overflow is the error below, not a warning
            variance = np.float64(sigma) ** 2
            inverse = 1.0 / variance if variance > 0 else np.inf
        if not (np.isfinite(variance) and np.isfinite(inverse)):
            # the restoration divides by sigma**2: 1e300 overflowed inside the computation
            raise ValueError(f"sigma must be between 1e-150 and 1e150; got {sigma}.")
        return float(sigma)

    def _clip(self, out: np.ndarray) -> np.ndarray:
        if self.clip is None:
            return out
        lo, hi = check_clip(self.clip)
        return np.clip(out, lo, hi, out=out)

    def _compute_dtype(self) -> type:
        return check_compute_dtype(self.dtype)

    def _one_pass(
        self,
        source: np.ndarray,
        noise_var: float,
        *,
        posterior_mean: bool,
        blur: np.ndarray | None = None,
        candidates: dict | None = None,
    ) -> np.ndarray:
        """Every patch of ``source`` restored under noise variance ``noise_var``
        (and the patch blur matrix ``blur``, if any), averaged into images.

        Runs a chunk of images at a time (about ``CHUNK_PATCHES`` patches),
        extracting into one reused buffer. ``candidates`` (Gaussian selection
        across EPLL's steps) holds each chunk's candidate components: a chunk
        without them gets them from this pass, one with them evaluates only those."""
        m, s = self.patch_size, self.stride
        n, H, W = source.shape
        per_image = len(patch_positions(H, m, s)) * len(patch_positions(W, m, s))
        chunk = max(1, CHUNK_PATCHES // per_image)
        dt = self._compute_dtype()
        src = np.ascontiguousarray(source, dtype=dt)
        filters = self._filters(noise_var, blur)
        out = np.empty((n, H, W))
        buf = None
        for start in range(0, n, chunk):
            block = src[start : start + chunk]
            if buf is None or len(buf) != len(block) * per_image:
                buf = np.empty((len(block) * per_image, m * m), dtype=dt)
            patches = extract_patches(block, m, s, out=buf, n_threads=self.n_threads)
            restored = self._restore_patches(
                patches, filters, posterior_mean=posterior_mean, candidates=candidates, key=start
            )
            out[start : start + len(block)] = average_patches(
                restored, block.shape, m, s, n_threads=self.n_threads
            )
        return out

    def _restore_patches(
        self,
        patches: np.ndarray,
        filters: dict[str, Any],
        *,
        posterior_mean: bool,
        candidates: dict | None = None,
        key: int = 0,
    ) -> np.ndarray:
        """Restored patches (rows of ``patches``, which may be overwritten)."""
        if self.remove_mean:
            dc = patches.mean(axis=1, keepdims=True)
            patches -= dc
        scores = self._patch_scores(patches, filters, posterior_mean, candidates, key)
        gains, offsets = filters["gains"], filters["offsets"]
        if posterior_mean:
            out = _posterior_mean_estimates(patches, scores, gains, offsets)
        else:
            out = np.empty_like(patches)
            best = scores.argmax(axis=1)
            order = np.argsort(best, kind="stable")
            bounds = np.searchsorted(best[order], np.arange(len(gains) + 1))
            for k in range(len(gains)):
                rows = order[bounds[k] : bounds[k + 1]]
                if len(rows):
                    est = patches[rows] @ gains[k]
                    est += offsets[k]
                    out[rows] = est
        if self.remove_mean:
            out += dc
        return out

    def _patch_scores(
        self,
        patches: np.ndarray,
        filters: dict[str, Any],
        posterior_mean: bool,
        candidates: dict | None,
        key: int,
    ) -> np.ndarray:
        """(n, K) responsibilities (``posterior_mean``) or weighted log-likelihoods of
        the patches. With ``candidates``, a chunk seen before evaluates only its
        candidate components (the others get responsibility 0, log-likelihood
        -inf); a new chunk evaluates all and keeps its candidates."""
        gm = self.mixture_
        mode = _gaussian.MODE_RESP if posterior_mean else _gaussian.MODE_WEIGHTED_LOG_PROB
        params = (gm.weights_, filters["observed_means"], filters["prec_chol"], "full")
        n_threads = effective_n_threads(self.n_threads)
        sets = None if candidates is None else candidates.get(key)
        if sets is not None and sets.n_samples == len(patches):
            values, _ = _candidates.candidate_log_prob(
                patches, sets, *params, mode=mode, n_threads=n_threads
            )
            return _candidates.to_dense(sets, values, 0.0 if posterior_mean else -np.inf)
        scores, log_norm = _gaussian.estimate_log_prob(
            patches, *params, mode=mode, n_threads=n_threads
        )
        if candidates is not None:
            resp = scores if posterior_mean else np.exp(scores - log_norm[:, None])
            candidates[key] = _candidates.sets_from_responsibilities(
                resp,
                _candidates.CANDIDATE_SHARE * float(self.selection_tol) / len(gm.weights_),
                _candidates.N_TOP,
                n_threads,
            )
        return scores

    def _selects_in_epll(self) -> bool:
        """Whether EPLL's steps evaluate only each patch's candidate components."""
        _candidates.check_selection(self.gaussian_selection, self.selection_tol)
        return _candidates.applies(
            self.gaussian_selection, "full", len(self.mixture_.weights_), complete=True
        )

    def _filters(self, noise_var: float, blur: np.ndarray | None = None) -> dict[str, Any]:
        """Per component, for patches observed as y = W z + n (W = ``blur``,
        or the identity), from one Cholesky factor L of
        S_k = W Sigma_k W^T + s^2 I: the precision factor L^-T of the
        likelihood N(y | W mu_k, S_k), the observed means W mu_k, the Wiener
        gain G_k = S_k^-1 W Sigma_k and offset mu_k - (W mu_k) G_k, so that
        a row y gives E[z | y, k] = y G_k + offset_k. Cached per
        (noise variance, blur, dtype)."""
        dt = self._compute_dtype()
        key = (float(noise_var), None if blur is None else blur.tobytes(), dt)
        cache = self.__dict__.setdefault("_filter_cache", {})
        if key in cache:
            return cache[key]
        gm = self.mixture_
        covs = _gaussian.full_covariances(gm)
        D = covs.shape[1]
        W = np.eye(D) if blur is None else blur
        observed_means = gm.means_ @ W.T
        chols, gains, offsets = [], [], []
        for cov, mean, observed_mean in zip(covs, gm.means_, observed_means):
            observed_cov = W @ cov @ W.T + noise_var * np.eye(D)
            factor = linalg.cholesky(observed_cov, lower=True)
            # the E-step kernel's precision factor U (U U^T = S^-1) is L^-T
            chols.append(linalg.solve_triangular(factor, np.eye(D), lower=True).T)
            gain = linalg.cho_solve((factor, True), W @ cov)
            gains.append(_flush_subnormal(gain, dt))
            offsets.append(_flush_subnormal(mean - observed_mean @ gain, dt))
        filters = {
            "prec_chol": np.ascontiguousarray(chols),
            "gains": np.ascontiguousarray(gains),
            "offsets": np.ascontiguousarray(offsets),
            "observed_means": observed_means,
        }
        if len(cache) > 32:
            cache.clear()
        cache[key] = filters
        return filters

    def _epll(
        self,
        noisy: np.ndarray,
        sigma: float,
        betas: Sequence[float] | None,
        kernel: np.ndarray | None = None,
        cg_iter: int = 50,
    ) -> np.ndarray:
        """Half-quadratic splitting: for beta in the schedule, patch estimates
        of the current image under noise variance 1/beta, then the image
        minimising lambda ||K x - y||^2 + beta sum_p ||P_p x - z_p||^2
        (K = I: pixel by pixel; else conjugate gradients)."""
        if betas is None:
            schedule = check_positive_sequence(self.epll_betas, "epll_betas") / sigma**2
        else:
            schedule = check_positive_sequence(betas, "betas")
        check_scalar(
            self.epll_fidelity, "epll_fidelity", numbers.Real, min_value=0.0, include_min=False
        )
        if self.epll_patch_step not in PATCH_STEPS:
            raise ValueError(
                f"epll_patch_step must be one of {PATCH_STEPS}; got {self.epll_patch_step!r}."
            )
        if self.epll_init not in EPLL_INITS:
            raise ValueError(f"epll_init must be one of {EPLL_INITS}; got {self.epll_init!r}.")
        lam = float(self.epll_fidelity) / sigma**2
        H, W = noisy.shape[1:]
        counts = _coverage_counts(H, W, self.patch_size, self.stride)
        blur_W = (
            None if kernel is None else blur_matrix(kernel, self.patch_size, self.blur_boundary)
        )
        # Gaussian selection: the first pass over the patches evaluates every
        # component and keeps each patch's candidates (at the highest noise level,
        # where posteriors are widest); the later steps evaluate only those.
        candidates = {} if self._selects_in_epll() else None
        if self.epll_init == "noisy":
            x = noisy.copy()
        else:
            x = self._one_pass(
                noisy,
                sigma**2,
                posterior_mean=self.epll_init == "posterior_mean",
                blur=blur_W,
                candidates=candidates,
            )
        if kernel is not None:
            Kty = blur(noisy, kernel, adjoint=True)
        pm = self.epll_patch_step == "posterior_mean"
        with _progress.bar(total=len(schedule), desc="EPLL", unit="step", leave=False) as progress:
            for step, beta in enumerate(schedule):
                start = time.perf_counter()
                patch_mean = self._one_pass(x, 1.0 / beta, posterior_mean=pm, candidates=candidates)
                if kernel is None:
                    x = (lam * noisy + beta * counts * patch_mean) / (lam + beta * counts)
                else:
                    x = solve_deblur_step(Kty, kernel, lam, beta, counts, patch_mean, x, cg_iter)
                progress.update(1)
                self._say(
                    f"EPLL step {step + 1}/{len(schedule)}: beta sigma^2 = {beta * sigma**2:.4g}, "
                    f"{time.perf_counter() - start:.2f} s"
                )
        return x

    def _say(self, message: str) -> None:
        _progress.say(self.verbose, f"[PatchDenoiser] {message}")

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted denoiser to ``path`` as ``.npz`` (no pickle)."""
        self._check_fitted()
        params = {}
        for name in self._SAVED_PARAMS:
            v = getattr(self, name)
            if name == "dtype":
                v = np.dtype(check_compute_dtype(v)).name
            elif name in ("epll_betas", "clip") and v is not None:
                v = [float(b) for b in v]
            elif isinstance(v, np.generic):
                v = v.item()
            params[name] = v
        gm = self.mixture_
        # what the fitted prior holds, whatever set_params has changed since
        params["n_components"] = len(gm.weights_)
        params["covariance_type"] = gm.covariance_type
        save_npz(
            path,
            self._MODEL_KIND,
            params,
            # float32 when the prior was fitted, and is used, in float32 (see GaussianMixture.save)
            _parameter_members(gm, float32=params["dtype"] == "float32"),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PatchDenoiser":
        """Read a denoiser written by :meth:`save`, validating every array."""
        params, arrays = load_npz(path, cls._MODEL_KIND, _expected_members)
        model = cls()
        try:
            model.set_params(**params)
            _check_saved_params(model)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        if isinstance(model.dtype, str):
            model.dtype = np.dtype(model.dtype).type
        if model.clip is not None:
            model.clip = tuple(model.clip)
        if isinstance(model.epll_betas, list):
            model.epll_betas = tuple(model.epll_betas)
        gm = GaussianMixture(  # the dtype fit gives it: a re-save keeps the file's format
            model.n_components, covariance_type=model.covariance_type, dtype=model.dtype
        )
        gm._restore(arrays, path)
        if gm.means_.shape[1] != model.patch_size**2:
            raise ValueError(
                f"{path}: the mixture has {gm.means_.shape[1]} features, not patch_size^2 = {model.patch_size**2}."
            )
        model.mixture_ = gm
        model._fitted_with = {
            "patch_size": model.patch_size,
            "remove_mean": bool(model.remove_mean),
        }
        return model


def _expected_members(
    params: dict[str, Any], headers: dict[str, tuple[np.dtype, tuple[int, ...]]]
) -> dict[str, tuple[int, ...]]:
    """The members of a denoiser file: its patch mixture's four parameter arrays (see ``load_npz``)."""
    shapes = _mixture_members(params, headers)
    return {
        name: shapes[name]
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_")
    }


def _check_saved_params(model: "PatchDenoiser") -> None:
    """A loaded denoiser's parameters, checked for type and range before use (``ValueError``)."""
    for name in ("patch_size", "n_components", "stride", "cg_iter", "max_patches", "n_init"):
        check_scalar(getattr(model, name), name, numbers.Integral, min_value=1)
    check_scalar(model.max_iter, "max_iter", numbers.Integral, min_value=0)
    if not isinstance(model.verbose, int):  # bool included
        raise ValueError(f"verbose must be an integer; got {model.verbose!r}.")
    check_scalar(model.reg_covar, "reg_covar", numbers.Real, min_value=0.0)
    check_scalar(model.tol, "tol", numbers.Real, min_value=0.0)
    if model.n_threads is not None and (
        isinstance(model.n_threads, bool)
        or not isinstance(model.n_threads, int)
        or model.n_threads == 0
    ):
        raise ValueError(f"n_threads must be a non-zero integer or None; got {model.n_threads!r}.")
    if not (
        model.random_state is None
        or (isinstance(model.random_state, int) and 0 <= model.random_state < 2**32)
    ):
        raise ValueError(
            f"random_state must be None or a seed in [0, 2**32); got {model.random_state!r}."
        )
    check_scalar(
        model.epll_fidelity, "epll_fidelity", numbers.Real, min_value=0.0, include_min=False
    )
    if model.covariance_type not in ("full", "diag", "spherical"):
        raise ValueError(
            f"covariance_type must be 'full', 'diag' or 'spherical'; got {model.covariance_type!r}."
        )
    _candidates.check_selection(model.gaussian_selection, model.selection_tol)
    if model.epll_patch_step not in PATCH_STEPS:
        raise ValueError(
            f"epll_patch_step must be one of {PATCH_STEPS}; got {model.epll_patch_step!r}."
        )
    if model.epll_init not in EPLL_INITS:
        raise ValueError(f"epll_init must be one of {EPLL_INITS}; got {model.epll_init!r}.")
    if not isinstance(model.blur_boundary, str):
        raise ValueError(f"blur_boundary must be a string; got {model.blur_boundary!r}.")
    if not isinstance(model.remove_mean, bool):
        raise ValueError(f"remove_mean must be true or false; got {model.remove_mean!r}.")
    if model.epll_betas is not None:
        if not isinstance(model.epll_betas, list):
            raise ValueError(
                f"epll_betas must be a list of positive numbers; got {model.epll_betas!r}."
            )
        check_positive_sequence(model.epll_betas, "epll_betas")
    if model.clip is not None and not (
        isinstance(model.clip, list)
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in model.clip)
    ):
        raise ValueError(f"clip must be None or [low, high]; got {model.clip!r}.")
    check_clip(model.clip)
    check_compute_dtype(model.dtype)


def _sample_patches(
    groups: list[np.ndarray],
    m: int,
    stride: int,
    max_patches: int,
    rng: np.random.RandomState,
    n_threads: int | None,
) -> tuple[np.ndarray, int]:
    """At most ``max_patches`` patches drawn uniformly without replacement among
    all the stride-``stride`` patches of every image of every group (a group
    is an (n, H, W) batch); returns them and the number of candidates."""
    layout = []
    for imgs in groups:
        rows = patch_positions(imgs.shape[1], m, stride)
        cols = patch_positions(imgs.shape[2], m, stride)
        layout.append((rows, cols, len(imgs) * len(rows) * len(cols)))
    sizes = np.array([n for _, _, n in layout])
    n_total = int(sizes.sum())
    if n_total <= max_patches:
        return np.vstack(
            [extract_patches(imgs, m, stride, n_threads=n_threads) for imgs in groups]
        ), n_total
    flat = np.sort(rng.choice(n_total, max_patches, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    parts = []
    for g, (imgs, (rows, cols, _)) in enumerate(zip(groups, layout)):
        idx = flat[(flat >= starts[g]) & (flat < starts[g + 1])] - starts[g]
        if not len(idx):
            continue
        img, rest = np.divmod(idx, len(rows) * len(cols))
        a, b = np.divmod(rest, len(cols))
        windows = sliding_window_view(imgs, (m, m), axis=(1, 2))
        parts.append(np.ascontiguousarray(windows[img, rows[a], cols[b]]).reshape(len(idx), m * m))
    return np.vstack(parts), n_total


def _flush_subnormal(a: np.ndarray, dtype: type) -> np.ndarray:
    """``a`` in ``dtype``, C-contiguous, with values below the smallest normal
    number set to 0. Gains of near-degenerate components hold such values
    once cast to float32, and a GEMM with subnormal operands runs several
    times slower (measured: 4.5x with a few thousand in a (64, 3136) block)."""
    out = np.ascontiguousarray(a, dtype=dtype)
    out[np.abs(out) < np.finfo(dtype).tiny] = 0
    return out


def _posterior_mean_estimates(
    patches: np.ndarray, resp: np.ndarray, gains: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """sum_k resp[:, k] (patches G_k + offset_k), a block of rows at a time:
    one GEMM of the block with the gains of the components that matter in
    it side by side ((D, K' D)), then, per row, the responsibility-weighted
    sum of its K' estimates (a batched (1, K') x (K', D) product) plus
    resp @ offsets. Components whose responsibilities in the block are all
    below ``RESP_FLOOR`` are left out (their share of every estimate is
    below that fraction)."""
    n, D = patches.shape
    out = np.empty_like(patches)
    block = 128  # the (block, K' D) product stays in the caches: 4x faster than 1024 rows
    for start in range(0, n, block):
        stop = min(start + block, n)
        r = resp[start:stop]
        active = np.flatnonzero((r > RESP_FLOOR).any(axis=0))
        ra = r[:, active].astype(patches.dtype)
        G = gains[active].transpose(1, 0, 2).reshape(D, len(active) * D)
        est = (patches[start:stop] @ G).reshape(stop - start, len(active), D)
        out[start:stop] = np.matmul(ra[:, None, :], est)[:, 0]
        out[start:stop] += ra @ offsets[active]
    return out


def _check_method(method: Any) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")


def _coverage_counts(H: int, W: int, patch_size: int, stride: int) -> np.ndarray:
    """How many patches cover each pixel (the same for every image)."""
    rows = patch_positions(H, patch_size, stride)
    cols = patch_positions(W, patch_size, stride)
    cover_r = np.zeros(H)
    cover_c = np.zeros(W)
    for r in rows:
        cover_r[r : r + patch_size] += 1
    for c in cols:
        cover_c[c : c + patch_size] += 1
    return np.outer(cover_r, cover_c)
