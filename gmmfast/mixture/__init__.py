"""Gaussian mixtures: the estimators and the algebra behind them.

Parameter algebra per covariance type (``_gaussian``), k-means
initialisation (``_kmeans``), missing values and exact missing-data EM
(``_missing``, ``_missing_em``), and the estimators built on them:
:class:`GaussianMixture`, :class:`GMMClassifier` (one mixture per class)
and :class:`ShiftInvariantClassifier` (class likelihoods averaged over
image translations); kinds of start for EM (``_starts``,
``_agglomerative``) and :func:`select_mixture` (the number of components
by BIC, AIC or held-out likelihood, ``_selection``).

May import :mod:`gmmfast.utils`, :mod:`gmmfast.metrics` and the compiled
kernels only; never
:mod:`gmmfast.image`, :mod:`gmmfast.vae` or :mod:`gmmfast.cli`.
"""

from ._classifier import GMMClassifier
from ._gaussian_mixture import GaussianMixture
from ._kmeans import k_means
from ._selection import MixtureSelection, select_mixture
from ._shift_invariant import ONE_PIXEL_SHIFTS, ShiftInvariantClassifier, shift_images

__all__ = [
    "GMMClassifier",
    "GaussianMixture",
    "MixtureSelection",
    "ONE_PIXEL_SHIFTS",
    "ShiftInvariantClassifier",
    "k_means",
    "select_mixture",
    "shift_images",
]
