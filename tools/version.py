#!/usr/bin/env python3
"""Print gmmfast's version, read from gmmfast/_version.py (its one source).

meson.build calls this for ``project(version: ...)``; pyproject.toml declares
the version dynamic, so meson-python takes it from meson.
"""

import re
from pathlib import Path

text = (Path(__file__).resolve().parents[1] / "gmmfast" / "_version.py").read_text()
print(re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1))
