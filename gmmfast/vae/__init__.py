"""Convolutional VAE whose latent means feed gmmfast's Gaussian mixtures.

Needs PyTorch (``pip install 'gmmfast[vae]'``); ``import gmmfast`` does not.

* :class:`ConvVAE` -- the reference projects' convolutional VAE with any
  latent size: ``fit`` on images in [0, 1], then ``encode`` (latent means as
  a C-contiguous float64 array that :class:`~gmmfast.GaussianMixture` and
  :class:`~gmmfast.GMMClassifier` take directly), ``decode``,
  ``reconstruct``, ``sample`` (from the prior, a latent
  :class:`~gmmfast.GaussianMixture` or one of its components, or a class of
  a latent :class:`~gmmfast.GMMClassifier`), ``save`` and ``load``.
* :class:`VaDE` -- a VAE with a learnable Gaussian-mixture prior in latent
  space, trained jointly (Jiang et al., 2017) from a pretrained
  :class:`ConvVAE` and a diagonal :class:`~gmmfast.GaussianMixture` fitted on
  its latents; clusters by ``argmax_c q(c | x)``.
* :class:`DeepClustering` -- clustering on a CPU: a dense autoencoder
  (DEC/VaDE/N2D's 784-500-500-2000-10 network, seconds per epoch), UMAP
  (the ``umap`` extra) and a :class:`~gmmfast.GaussianMixture`; nothing in
  it looks at labels.
* :func:`cluster_mapping`, :func:`clustering_scores`,
  :func:`classification_scores` -- re-exported from :mod:`gmmfast.metrics`,
  where these general clustering scores live.

Model files of :class:`ConvVAE` and :class:`VaDE` are ``torch.save``
dictionaries of tensors and plain values (format name and version, model
kind, configuration, state dict, training history), read back with
``torch.load(..., weights_only=True)``: nothing is ever unpickled beyond
tensors and builtin containers. :class:`DeepClustering` saves to gmmfast's
``.npz`` format (weights, mixture, and UMAP's fitted state as plain arrays),
read with ``allow_pickle=False``.

Layout: ``_nets`` (torch modules and losses), ``_engine`` (the training loop
shared by the models), ``_conv_vae``, ``_vade``, ``_deep_clustering``, ``_model_files``, ``_plots``
(latent-space figures). May import :mod:`gmmfast.mixture`,
:mod:`gmmfast.metrics` and :mod:`gmmfast.utils`; never :mod:`gmmfast.image`
or :mod:`gmmfast.cli`.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "gmmfast.vae needs PyTorch; install it with pip install 'gmmfast[vae]' "
        "(or pip install torch)."
    ) from _exc

from ..metrics import classification_scores, cluster_mapping, clustering_scores
from ._conv_vae import ConvVAE
from ._deep_clustering import DeepClustering
from ._engine import check_images
from ._vade import VaDE

__all__ = [
    "ConvVAE",
    "DeepClustering",
    "VaDE",
    "check_images",
    "classification_scores",
    "cluster_mapping",
    "clustering_scores",
]
