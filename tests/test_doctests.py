"""Every public name has an example, and every docstring example runs.

The public names are the ``__all__`` of the modules the API reference
documents. A class or function needs an ``Examples`` section in its docstring;
a constant needs to appear in an example of its module. The examples of each
public object (methods included) run as doctests here, so CI runs them with
the rest of the suite; long ones (training a network) are marked
``# doctest: +SKIP`` and say so.
"""

from __future__ import annotations

import doctest
import importlib
import inspect

import numpy as np
import pytest

PUBLIC_MODULES = (
    "gmmfast",
    "gmmfast.mixture",
    "gmmfast.image",
    "gmmfast.vae",
    "gmmfast.metrics",
    "gmmfast.datasets",
    "gmmfast.synthetic",
)


def _module(name: str):
    if name == "gmmfast.vae":
        pytest.importorskip("torch")
    return importlib.import_module(name)


def _public(module_name: str) -> dict[str, object]:
    module = _module(module_name)
    return {name: getattr(module, name) for name in module.__all__}


def _documented(obj: object) -> bool:
    return inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj)


def _home(obj: object) -> str:
    return getattr(obj, "__module__", "") or ""


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_an_example(module_name):
    module = _module(module_name)
    missing = []
    examples = " ".join(
        (inspect.getdoc(obj) or "")
        for obj in [module, *_public(module_name).values()]
        if _documented(obj) or obj is module
    )
    for name, obj in _public(module_name).items():
        if _documented(obj):
            if "Examples\n--------" not in (inspect.getdoc(obj) or ""):
                missing.append(name)
        elif ">>> " not in examples or name not in examples:  # a constant: used in an example
            missing.append(name)
    assert not missing, f"{module_name}: no example for {missing}"


def _doctests() -> list[tuple[str, doctest.DocTest]]:
    finder = doctest.DocTestFinder(recurse=True, exclude_empty=True)
    seen: set[int] = set()
    tests = []
    for module_name in PUBLIC_MODULES:
        if module_name == "gmmfast.vae":
            try:
                import torch  # noqa: F401
            except ImportError:
                continue
        for name, obj in _public(module_name).items():
            if not _documented(obj) or id(obj) in seen or not _home(obj).startswith("gmmfast"):
                continue
            seen.add(id(obj))
            for test in finder.find(obj, name=f"{_home(obj)}.{name}"):
                if test.examples:
                    tests.append((test.name, test))
    return sorted(tests, key=lambda item: item[0])


DOCTESTS = _doctests()


@pytest.mark.parametrize("test", [t for _, t in DOCTESTS], ids=[n for n, _ in DOCTESTS])
def test_docstring_examples_run(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    test.globs = {"np": np, **test.globs}
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    output: list[str] = []
    result = runner.run(test, out=output.append)
    assert result.failed == 0, "".join(output)
