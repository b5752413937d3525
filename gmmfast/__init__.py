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

The estimators are imported on first use (PEP 562), so ``import gmmfast``
itself is cheap: the ``gmmfast`` command can answer Ctrl-C from its first
instant with a one-line message.

Examples
--------
>>> import gmmfast
>>> isinstance(gmmfast.__version__, str)
True
>>> from gmmfast import GaussianMixture
>>> from gmmfast.datasets import load_mnist_sample
>>> X, y, X_test, y_test = load_mnist_sample()
>>> gm = GaussianMixture(3, covariance_type="diag", random_state=0).fit(X[:500])
>>> gm.predict(X_test[:5]).shape
(5,)
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# public name -> the module that defines it
_PUBLIC = {
    "ConvergenceWarning": "gmmfast.utils._estimator",
    "NotFittedError": "gmmfast.utils._estimator",
    "GaussianMixture": "gmmfast.mixture",
    "GMMClassifier": "gmmfast.mixture",
    "ShiftInvariantClassifier": "gmmfast.mixture",
    "PatchDenoiser": "gmmfast.image",
    "select_mixture": "gmmfast.mixture",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


# subpackages and modules reachable as attributes (``gmmfast.mixture.GaussianMixture``
# after a plain ``import gmmfast``), as when the package imported them eagerly
_SUBMODULES = (
    "cli",
    "datasets",
    "image",
    "metrics",
    "mixture",
    "synthetic",
    "utils",
    "vae",
)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"gmmfast.{name}")
    else:
        raise AttributeError(f"module 'gmmfast' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | set(_SUBMODULES))
