"""The package's architecture, checked from its source: no import cycle, and each
subpackage imports only the layers below it.

Read with ``ast`` from the installed package's files (module-level and
function-level imports alike), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import gmmfast

PACKAGE_DIR = Path(gmmfast.__file__).resolve().parent

# What a subpackage must never import (docs/contributing.md's table says the same).
FORBIDDEN = {
    "gmmfast.utils": (
        "gmmfast.mixture",
        "gmmfast.image",
        "gmmfast.vae",
        "gmmfast.cli",
        "gmmfast.metrics",
    ),
    "gmmfast.mixture": ("gmmfast.image", "gmmfast.vae", "gmmfast.cli"),
    "gmmfast.metrics": ("gmmfast.mixture", "gmmfast.image", "gmmfast.vae", "gmmfast.cli"),
    "gmmfast.image": ("gmmfast.vae", "gmmfast.cli"),
    "gmmfast.vae": ("gmmfast.image", "gmmfast.cli"),
    "gmmfast.datasets": ("gmmfast.mixture", "gmmfast.image", "gmmfast.vae", "gmmfast.cli"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """module -> the gmmfast modules (and packages) it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                # `from pkg import mod` imports the module; `from mod import name` the module itself
                names = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            else:
                continue
            for target in names:
                if not target.startswith("gmmfast"):
                    continue
                # Importing a.b.c runs the package a.b first, unless a.b is one of the
                # importer's own packages (already running); naming that package
                # itself (`from . import name` of an __init__) is a real cycle.
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    own_ancestor = name.startswith(prefix + ".")
                    if (
                        prefix in modules
                        and prefix != name
                        and (prefix == target or not own_ancestor)
                    ):
                        targets.add(prefix)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert _cycles(import_graph()) == []


def test_cycle_detector_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_module_importing_its_own_package_is_a_cycle():
    """`from . import name` in a submodule re-enters the package's __init__ (a cycle);
    `from .sibling import name` does not."""
    graph = import_graph()
    assert "gmmfast.mixture" not in graph["gmmfast.mixture._gaussian"]
    assert "gmmfast.mixture._stats" in graph["gmmfast.mixture._gaussian"]
    assert "gmmfast.mixture" in graph["gmmfast.image._denoiser"]  # another package's __init__ runs


def _reachable(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """module -> every gmmfast module its imports load, directly or through others."""
    closure = {}
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(graph.get(module, ()))
        closure[start] = seen
    return closure


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_what_lies_below(layer):
    """Through any chain of imports."""
    bad = [
        f"{module} imports {target}"
        for module, targets in _reachable(import_graph()).items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in FORBIDDEN[layer])
    ]
    assert bad == []


def test_nothing_outside_the_command_line_imports_it():
    bad = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if not module.startswith("gmmfast.cli")
        and module not in ("gmmfast.__main__", "gmmfast._console")
        for target in targets
        if target.startswith("gmmfast.cli")
    ]
    assert bad == []


def test_every_module_imports():
    for name in sorted(set(_modules()) - {"gmmfast.__main__"}):
        if name.startswith("gmmfast.vae"):
            pytest.importorskip("torch")
        importlib.import_module(name)


def test_public_names_import_as_before():
    """The README's and the guide's names, from their one home each."""
    from gmmfast import (  # noqa: F401
        ConvergenceWarning,
        GaussianMixture,
        GMMClassifier,
        NotFittedError,
        PatchDenoiser,
        ShiftInvariantClassifier,
        __version__,
    )
    from gmmfast.datasets import load_idx_dir, load_mnist, load_mnist_sample, read_idx  # noqa: F401
    from gmmfast.image import average_patches, extract_patches, select_patch_prior  # noqa: F401
    from gmmfast.mixture import GMMClassifier as mixture_classifier
    from gmmfast.mixture import ShiftInvariantClassifier as mixture_shifts

    assert mixture_classifier is GMMClassifier and mixture_shifts is ShiftInvariantClassifier
    import gmmfast

    assert (
        gmmfast.mixture.GaussianMixture is GaussianMixture
    )  # subpackages as attributes, as before


def _is_alias_module(tree: ast.Module) -> bool:
    """A module whose only statements (besides its docstring and ``__all__``) import."""
    body = [
        node
        for node in tree.body
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        and not (
            isinstance(node, ast.Assign)
            and all(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        )
    ]
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


def test_no_alias_module_is_left():
    """One home per name: no module (other than a package's __init__) only re-exports
    another's names, and the removed compatibility modules stay removed."""
    aliases = [
        name
        for name, path in _modules().items()
        if path.name != "__init__.py" and _is_alias_module(ast.parse(path.read_text(), str(path)))
    ]
    assert aliases == []
    for removed in ("classifier", "denoise", "patches", "shifts"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"gmmfast.{removed}")
        assert not hasattr(gmmfast, removed)


def test_alias_detector_finds_an_alias():
    alias = ast.parse('"""Alias."""\nfrom .image import blur  # noqa: F401\n__all__ = ["blur"]\n')
    real = ast.parse('"""Real."""\nimport numpy as np\n\ndef f():\n    return np.zeros(1)\n')
    assert _is_alias_module(alias) and not _is_alias_module(real)


def test_import_gmmfast_imports_no_optional_dependency():
    code = (
        "import sys, gmmfast, gmmfast.cli, gmmfast.datasets; gmmfast.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'dask', 'distributed', 'matplotlib', 'sklearn', "
        "'pooch', 'requests', 'umap', 'numba') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    ).stdout.strip()
    assert out == "[]"
