"""The ``gmmfast`` command line: one module per command.

``demo`` (the main job and its report), ``classify``, ``inpaint``,
``denoise``, ``bench`` (runs the benchmark suite of a source checkout) and
``vae``; ``_data`` reads image files, ``_figures`` draws, ``_common`` holds
the argument types, and ``_app`` builds the parser and is the one error
boundary (:func:`main`).

May import everything else in gmmfast; nothing in gmmfast imports it.
"""

from ._app import build_parser, main
from ._common import UsageError
from ._data import data_keys, load_image_stack, load_images, make_observed

__all__ = [
    "UsageError",
    "build_parser",
    "data_keys",
    "load_image_stack",
    "load_images",
    "main",
    "make_observed",
]
