"""Compatibility alias: patch extraction and averaging now live in :mod:`gmmfast.image`."""

from .image import average_patches, extract_patches, patch_positions  # noqa: F401
