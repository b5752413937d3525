"""gmmfast: fast Gaussian mixture models for images.

Compiled (Cython, OpenMP, BLAS) kernels behind scikit-learn-style
estimators. The core needs only numpy, scipy and threadpoolctl; PyTorch
(for the VAE) and matplotlib (for figures) are optional.
"""
from ._base import ConvergenceWarning, NotFittedError
from .classifier import GMMClassifier
from .denoise import PatchDenoiser
from .mixture import GaussianMixture
from .shifts import ShiftInvariantClassifier

__version__ = "0.1.0"

__all__ = ["ConvergenceWarning", "GMMClassifier", "GaussianMixture", "NotFittedError", "PatchDenoiser", "ShiftInvariantClassifier", "__version__"]
