"""Compatibility alias: :class:`GMMClassifier` now lives in :mod:`gmmfast.mixture`."""

from .mixture import GMMClassifier  # noqa: F401
