"""gmmfast: fast Gaussian mixture models for images.

Compiled (Cython, OpenMP, BLAS) kernels behind scikit-learn-style
estimators. The core needs only numpy, scipy, threadpoolctl and tqdm;
PyTorch (for :mod:`gmmfast.vae`), matplotlib (figures) and Dask are
optional, and ``import gmmfast`` imports none of them.

Subpackages: :mod:`gmmfast.mixture` (Gaussian mixtures and classifiers),
:mod:`gmmfast.image` (patch priors, denoising, image metrics),
:mod:`gmmfast.vae` (needs PyTorch), :mod:`gmmfast.cli` (the ``gmmfast``
command), :mod:`gmmfast.metrics` (clustering and classification scores),
:mod:`gmmfast.datasets` (MNIST and IDX readers).
"""
# The one place the version is written: meson.build reads it from here
# (tools/version.py), and pyproject.toml takes it from meson.
__version__ = "0.1.0"

from .image import PatchDenoiser  # noqa: E402
from .mixture import GaussianMixture, GMMClassifier, ShiftInvariantClassifier  # noqa: E402
from .utils._estimator import ConvergenceWarning, NotFittedError  # noqa: E402

__all__ = [
    "ConvergenceWarning",
    "GMMClassifier",
    "GaussianMixture",
    "NotFittedError",
    "PatchDenoiser",
    "ShiftInvariantClassifier",
    "__version__",
]
