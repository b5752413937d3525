"""The version of gmmfast, written here and nowhere else.

meson.build reads it (tools/version.py) for the build and the wheel's
metadata; ``gmmfast.__version__`` imports it.
"""

__version__ = "0.1.0"
