"""Rewrite docs/api/<module>.rst from each public module's ``__all__``.

    python docs/update_api_pages.py

Run it after adding or removing a public name (tests/test_docs.py fails until the
pages agree with ``__all__``), then review the diff: the pages are committed.
Each object gets one generated page, in the module that defines it; a name that
a module re-exports from another public module is listed there with a link.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

MODULES = {
    "gmmfast": "gmmfast: the top-level names",
    "gmmfast.mixture": "gmmfast.mixture: Gaussian mixtures and classifiers",
    "gmmfast.image": "gmmfast.image: patch priors, restoration, image metrics",
    "gmmfast.vae": "gmmfast.vae: VAE latents and deep clustering",
    "gmmfast.metrics": "gmmfast.metrics: clustering and classification scores",
    "gmmfast.datasets": "gmmfast.datasets: MNIST and IDX files",
    "gmmfast.synthetic": "gmmfast.synthetic: synthetic clustering data",
}


def home(module: str, name: str, obj: object) -> str:
    """The public module that defines obj (module itself unless it re-exports)."""
    defined_in = getattr(obj, "__module__", None) or ""
    for other in list(MODULES)[1:]:
        if other != module and (defined_in == other or defined_in.startswith(other + ".")):
            if name in importlib.import_module(other).__all__:
                return other
    return module


def page(module_name: str, title: str) -> str:
    module = importlib.import_module(module_name)
    own: dict[str, list[str]] = {"Classes": [], "Functions": [], "Constants": []}
    elsewhere = []
    for name in module.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(module, name)
        where = home(module_name, name, obj)
        if where != module_name:
            elsewhere.append(f"{where}.{name}")
        elif inspect.isclass(obj):
            own["Classes"].append(name)
        elif callable(obj):
            own["Functions"].append(name)
        else:
            own["Constants"].append(name)
    out = [f".. _api-{module_name}:", "", title, "=" * len(title), ""]
    out += [f".. automodule:: {module_name}", "   :no-members:", ""]
    out += [f".. currentmodule:: {module_name}", ""]
    for group in ("Classes", "Functions", "Constants"):
        if own[group]:
            # the page comes from docs/_templates/autosummary/<kind>.rst
            out += [group, "-" * len(group), "", ".. autosummary::", "   :toctree: generated/"]
            out += [""] + [f"   {n}" for n in own[group]] + [""]
    if elsewhere:
        heading = "Also importable from here"
        out += [heading, "-" * len(heading), ""]
        out += [f"These names are importable from :mod:`{module_name}` as well; each is"]
        out += ["documented once, in its own module.", "", ".. currentmodule:: None", ""]
        out += [".. autosummary::", ""] + [f"   ~{n}" for n in elsewhere] + [""]
    return "\n".join(out)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent / "api"
    for name, title in MODULES.items():
        (here / f"{name}.rst").write_text(page(name, title))
        print(f"wrote {here / name}.rst")
