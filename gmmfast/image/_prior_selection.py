"""Choosing a patch prior: patch size, number of components and stride by held-out PSNR."""

from __future__ import annotations

import numbers
import time
from typing import Any, Sequence

import numpy as np

from ..utils import _progress
from ..utils._validation import check_scalar
from ._blur import blur
from ._checks import check_images, check_kernel
from ._denoiser import PatchDenoiser, _check_method
from .metrics import psnr


def select_patch_prior(
    train_images: Any,
    val_images: Any,
    sigma: float,
    *,
    patch_sizes: Sequence[int] = (8,),
    n_components: Sequence[int] = (20,),
    strides: Sequence[int] = (1,),
    method: str = "map",
    kernel: Any = None,
    random_state: int = 0,
    verbose: int = 0,
    **params: Any,
) -> tuple[PatchDenoiser, list[dict[str, Any]]]:
    """Choose patch size, number of components and stride by held-out PSNR.

    For every (patch size m, K), a :class:`PatchDenoiser` is fitted on
    ``train_images``; the validation images are corrupted once (blurred by
    ``kernel`` if given, then Gaussian noise of standard deviation
    ``sigma`` from ``random_state``), restored with ``method`` at every
    stride, and scored by their mean PSNR (:func:`psnr`) against the clean
    validation images. The prior is fitted once per (m, K): the stride only
    changes how densely patches are restored (and where training patches
    are drawn from, which with ``max_patches`` subsampling is immaterial),
    so each stride reuses the fit of the smallest one.

    Parameters
    ----------
    train_images, val_images : arrays of shape (n, H, W)
        Clean images; validation images must not be training images.
    sigma : float
        Noise level of the validation corruption (and of the restoration).
    patch_sizes, n_components, strides : sequences of int
        The grid. Strides larger than a patch size are skipped for it.
    method : {'map', 'posterior_mean', 'epll'}, default='map'
        Restoration scored (EPLL is several times slower than one pass).
    kernel : 2-d array, optional
        Blur kernel: score :meth:`PatchDenoiser.deblur` instead of
        :meth:`PatchDenoiser.denoise`.
    random_state : int, default=0
        Seed of the validation noise and of every fit.
    verbose : int, default=0
        1 prints each candidate's PSNR and times.
    **params
        Other :class:`PatchDenoiser` parameters (``remove_mean``,
        ``reg_covar``, ``max_patches``, ``dtype``, ...), shared by all
        candidates.

    Returns
    -------
    best : PatchDenoiser
        The fitted candidate with the highest validation PSNR (its
        ``stride`` set to the best stride).
    table : list of dict
        One row per candidate: ``patch_size``, ``n_components``,
        ``stride``, ``psnr``, ``fit_s``, ``restore_s``, in grid order.

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast.image import select_patch_prior
    >>> yy, xx = np.mgrid[:24, :24]
    >>> images = np.stack([0.5 + 0.3 * np.sin((xx + s) / 3.0) for s in range(6)])
    >>> best, table = select_patch_prior(
    ...     images[:4], images[4:], sigma=0.1, patch_sizes=(4,), n_components=(2, 4),
    ...     max_iter=5)
    >>> len(table), best.patch_size
    (2, 4)
    """
    _check_method(method)
    check_scalar(sigma, "sigma", numbers.Real, min_value=0.0, include_min=False)
    train = check_images(train_images)
    val = check_images(val_images)
    k = None if kernel is None else check_kernel(kernel)
    rng = np.random.default_rng(random_state)
    observed = val if k is None else blur(val, k)
    observed = observed + sigma * rng.standard_normal(val.shape)
    grid = [(int(m), int(K)) for m in patch_sizes for K in n_components]
    if not grid or not len(strides):
        raise ValueError("patch_sizes, n_components and strides must be non-empty.")
    table, best, best_score = [], None, -np.inf
    for m, K in grid:
        usable = sorted({int(s) for s in strides if 1 <= int(s) <= m})
        if not usable:
            continue
        start = time.perf_counter()
        model = PatchDenoiser(
            m, K, stride=usable[0], random_state=random_state, verbose=max(0, verbose - 1), **params
        ).fit(train)
        fit_s = time.perf_counter() - start
        for s in usable:
            model.stride = s
            start = time.perf_counter()
            if k is None:
                restored = model.denoise(observed, sigma, method=method)
            else:
                restored = model.deblur(observed, k, sigma, method=method)
            row = {
                "patch_size": m,
                "n_components": K,
                "stride": s,
                "psnr": psnr(val, restored),
                "fit_s": fit_s,
                "restore_s": time.perf_counter() - start,
            }
            table.append(row)
            _progress.say(
                verbose,
                f"[select_patch_prior] m={m} K={K} stride={s}: PSNR {row['psnr']:.3f} dB "
                f"(fit {fit_s:.1f} s, restore {row['restore_s']:.1f} s)",
            )
            if row["psnr"] > best_score:
                best_score = row["psnr"]
                best = (model, s)
    if best is None:
        raise ValueError(
            "no stride is usable with any patch size (need 1 <= stride <= patch_size)."
        )
    model, s = best
    model.stride = s
    return model, table
