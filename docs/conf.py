"""Sphinx configuration of gmmfast's documentation site.

Build: ``pip install ".[docs]"`` then ``sphinx-build -W --keep-going docs docs/_build/html``
(warnings are errors; CI runs it after the tests, see .ci/run).
"""

from __future__ import annotations

import os
import warnings

import gmmfast

project = "gmmfast"
author = "gmmfast developers"
copyright = "2026, gmmfast developers"
version = release = gmmfast.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",  # the docstrings are numpydoc, as NumPy's, SciPy's and scikit-learn's
    "sphinx_gallery.gen_gallery",
    # Markdown pages: CHANGELOG.md is included as it is, and the guide's tables are
    # the same GitHub tables as benchmarks/results/*.md
    "myst_parser",
    "sphinx_design",  # the landing page's cards, as on numpy.org/doc
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
templates_path = ["_templates"]

# API reference: one generated page per public name (docs/api/*.rst list them;
# tests/test_docs.py checks those lists against each module's __all__).
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters section already gives the types
autodoc_default_options = {"inherited-members": False}
numpydoc_show_class_members = False  # the autosummary class template lists methods
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
}
# CI has no network: intersphinx inventories are fetched only when asked for.
if not os.environ.get("GMMFAST_DOCS_INTERSPHINX"):
    intersphinx_mapping = {}

# The gallery: examples/*.py executed at build time (each well under a minute on the
# shipped MNIST sample or synthetic data), their figures captured from matplotlib.
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",  # execute every example
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "abort_on_example_error": True,
    # "Examples using X" under each API page (the minigallery in the templates)
    "doc_module": ("gmmfast",),
    "backreferences_dir": "api/generated/backreferences",
}
warnings.filterwarnings("ignore", category=UserWarning, message="Matplotlib is currently using agg")

# pydata-sphinx-theme: the theme of NumPy, SciPy, pandas, scikit-image and dask-ml, so
# the layout (top navigation, left section tree, right "on this page") is the one
# gmmfast's users already know from the libraries they use it with.
html_theme = "pydata_sphinx_theme"
html_title = f"gmmfast {release}"
html_static_path = ["_static"]
html_css_files = ["gmmfast.css"]
html_theme_options = {
    "github_url": "https://github.com/gmmfast/gmmfast",
    "navbar_align": "left",
    "header_links_before_dropdown": 8,  # every top-level page in the bar, no "More" menu
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# Single pages have no section tree: no empty left sidebar beside them.
html_sidebars = {
    page: [] for page in ("index", "install", "benchmarks", "changelog", "citing", "contributing")
}
html_show_sourcelink = False
