"""Compatibility alias: :class:`ShiftInvariantClassifier` and image shifts now live in :mod:`gmmfast.mixture`."""

from .mixture._shift_invariant import ONE_PIXEL_SHIFTS, ShiftInvariantClassifier, shift_images  # noqa: F401
