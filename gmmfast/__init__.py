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
from ._version import __version__
from .image import PatchDenoiser
from .mixture import GaussianMixture, GMMClassifier, ShiftInvariantClassifier
from .utils._estimator import ConvergenceWarning, NotFittedError

__all__ = [
    "ConvergenceWarning",
    "GMMClassifier",
    "GaussianMixture",
    "NotFittedError",
    "PatchDenoiser",
    "ShiftInvariantClassifier",
    "__version__",
]
