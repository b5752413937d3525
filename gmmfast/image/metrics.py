"""Image quality and noise measures: PSNR, and the noise level of an image batch.

Used by the denoiser, the command line and the experiment runners alike,
so every reported PSNR is computed the same way. Imports numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import check_images, intensity_range

__all__ = ["estimate_noise_sigma", "psnr", "psnr_per_image"]

# Gaussian MAD to standard deviation: 1 / Phi^-1(3/4).
MAD_TO_SIGMA = 1.0 / 0.6744897501960817


def estimate_noise_sigma(images: Any) -> float:
    """Standard deviation of additive white Gaussian noise, from the images alone.

    The robust estimator of Donoho & Johnstone (1994): the median absolute
    value of the finest diagonal wavelet coefficients divided by 0.6745
    (the MAD of a standard normal). With the orthonormal Haar wavelet the
    coefficient of a 2 x 2 block ``[[a, b], [c, d]]`` is
    ``(a - b - c + d) / 2``, which maps white noise of variance sigma^2 to
    sigma^2 and cancels constant and linear intensity, so in smooth or flat
    regions it is noise alone; the median ignores the minority of
    coefficients on edges and texture. All images of the batch are pooled
    (one noise level). Edges bias the estimate upwards a little, and
    clipping of the noisy values biases it downwards.

    Parameters
    ----------
    images : array of shape (n, H, W) or (H, W), H and W at least 2

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast.image import estimate_noise_sigma
    >>> rng = np.random.RandomState(0)
    >>> noisy = 0.5 + 0.1 * rng.randn(256, 256)
    >>> round(estimate_noise_sigma(noisy), 2)
    0.1
    """
    imgs = check_images(images)
    H, W = imgs.shape[1] // 2 * 2, imgs.shape[2] // 2 * 2
    if H == 0 or W == 0:
        raise ValueError("images must be at least 2 x 2 to estimate the noise.")
    x = imgs[:, :H, :W]
    hh = (x[:, 0::2, 0::2] - x[:, 0::2, 1::2] - x[:, 1::2, 0::2] + x[:, 1::2, 1::2]) / 2.0
    return float(np.median(np.abs(hh)) * MAD_TO_SIGMA)


def psnr_per_image(clean: Any, restored: Any, data_range: float | None = None) -> np.ndarray:
    """Peak signal-to-noise ratio of each image, in dB: 10 log10(data_range^2 / MSE).

    ``clean`` and ``restored`` have the same shape, (n, H, W) or
    (n, pixels): the first axis indexes images. Identical images give ``inf``.

    Intensities are on gmmfast's scale: float images as they are, uint8/uint16
    images scaled as their dtype implies (255 -> 1.0), so a uint8 image and its
    float restoration compare directly. ``data_range`` (default 1.0) is the
    range of float images; with an integer image it must be left at its default
    (its range is its dtype's, already mapped to 1.0).

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast.image import psnr_per_image
    >>> clean = np.zeros((2, 8, 8))
    >>> restored = clean + np.array([0.1, 0.01])[:, None, None]
    >>> psnr_per_image(clean, restored).round(1)
    array([20., 40.])
    """
    a = _intensities(clean, "clean", data_range)
    b = _intensities(restored, "restored", data_range)
    if a.shape != b.shape:
        raise ValueError(f"clean and restored shapes differ: {a.shape} and {b.shape}.")
    if a.ndim < 2:
        raise ValueError(f"expected images along the first axis, got shape {a.shape}.")
    if a.size == 0:
        raise ValueError(f"clean and restored are empty (shape {a.shape}): no PSNR to compute.")
    for name, arr in (("clean", a), ("restored", b)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity: no PSNR to compute.")
    peak = 1.0 if data_range is None else float(data_range)
    if not (np.isfinite(peak) and peak > 0):
        raise ValueError(f"data_range must be a positive number; got {data_range!r}.")
    mse = np.mean((a - b) ** 2, axis=tuple(range(1, a.ndim)))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(peak**2 / mse)


def psnr(clean: Any, restored: Any, data_range: float | None = None) -> float:
    """Mean over images of :func:`psnr_per_image`, in dB; a 2-d array is one image.

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast.image import psnr
    >>> clean = np.full((8, 8), 0.5)
    >>> round(psnr(clean, clean + 0.1), 1)
    20.0
    >>> psnr(np.full((8, 8), 255, dtype=np.uint8), np.ones((8, 8)))  # uint8: 255 is 1.0
    inf
    """
    a = _intensities(clean, "clean", data_range)
    b = _intensities(restored, "restored", data_range)
    if a.ndim == 2:
        a, b = a[None], b[None]
    return float(np.mean(psnr_per_image(a, b, data_range)))


def _intensities(images: Any, name: str, data_range: float | None) -> np.ndarray:
    arr = np.asarray(images)
    top = intensity_range(arr.dtype, name)
    if top != 1.0 and data_range is not None:
        raise ValueError(
            f"{name} has the integer dtype {arr.dtype}, whose range is mapped to [0, 1] "
            f"(as everywhere in gmmfast.image); leave data_range at its default (got {data_range!r})."
        )
    return arr.astype(np.float64) / top
