"""The documentation site's sources agree with the package.

The API pages (docs/api/<module>.rst) list each public module's names in
autosummary directives: every name of ``__all__`` appears, none is extra, and
each object has one home (one generated page), the module that defines it. The
site itself is built by CI (``sphinx-build -W``, .ci/run), not here.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PUBLIC_MODULES = (
    "gmmfast",
    "gmmfast.mixture",
    "gmmfast.image",
    "gmmfast.vae",
    "gmmfast.metrics",
    "gmmfast.datasets",
    "gmmfast.synthetic",
)

pytestmark = pytest.mark.skipif(not DOCS.is_dir(), reason="no docs/ beside tests/")


def autosummary_entries(text: str) -> list[tuple[str, bool]]:
    """(entry, has its own page) of every autosummary directive in an rst text."""
    entries = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == ".. autosummary::":
            toctree = False
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
                item = lines[i].strip()
                if item.startswith(":toctree:"):
                    toctree = True
                elif item and not item.startswith(":"):
                    entries.append((item.lstrip("~"), toctree))
                i += 1
        else:
            i += 1
    return entries


def test_entry_parser():
    text = (
        ".. autosummary::\n   :toctree: generated/\n\n   A\n   b\n\nText\n\n"
        ".. autosummary::\n\n   ~x.y.C\n"
    )
    assert autosummary_entries(text) == [("A", True), ("b", True), ("x.y.C", False)]


def _module(name: str):
    if name == "gmmfast.vae":
        pytest.importorskip("torch")
    return importlib.import_module(name)


def _public(module) -> set[str]:
    return {n for n in module.__all__ if not (n.startswith("__") and n.endswith("__"))}


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_api_page_lists_every_public_name_once(name):
    module = _module(name)
    page = DOCS / "api" / f"{name}.rst"
    assert page.exists(), f"no API page {page.relative_to(ROOT)}"
    text = page.read_text()
    assert f".. automodule:: {name}\n" in text
    entries = autosummary_entries(text)
    listed = [entry.rsplit(".", 1)[-1] for entry, _ in entries]
    assert sorted(listed) == sorted(set(listed)), "a name listed twice"
    missing, extra = _public(module) - set(listed), set(listed) - _public(module)
    assert not missing and not extra, f"missing {sorted(missing)}, extra {sorted(extra)}"
    for entry, own_page in entries:
        short = entry.rsplit(".", 1)[-1]
        if own_page:
            assert "." not in entry, f"{entry}: listed with its page under its short name"
        else:  # documented in its home module: the same object, listed there with a page
            home, _, _ = entry.rpartition(".")
            assert home in PUBLIC_MODULES and home != name, entry
            assert getattr(_module(home), short) is getattr(module, short), entry
            assert (short, True) in autosummary_entries(
                (DOCS / "api" / f"{home}.rst").read_text()
            ), f"{entry} has no page in {home}"


def test_one_page_per_object():
    """No object documented twice (two homes for one name)."""
    pages: dict[int, list[str]] = {}
    for name in PUBLIC_MODULES:
        if name == "gmmfast.vae" and importlib.util.find_spec("torch") is None:
            continue
        module = _module(name)
        for entry, own_page in autosummary_entries((DOCS / "api" / f"{name}.rst").read_text()):
            if own_page:
                obj = getattr(module, entry)
                if isinstance(obj, (int, float, str, tuple, dict)):  # constants: by name
                    continue
                pages.setdefault(id(obj), []).append(f"{name}.{entry}")
    twice = [homes for homes in pages.values() if len(homes) > 1]
    assert twice == []


def test_api_index_lists_every_module_page():
    index = (DOCS / "api" / "index.rst").read_text()
    for name in PUBLIC_MODULES:
        assert re.search(rf"^   {re.escape(name)}$", index, re.M), name


def test_guide_toctree_pages_exist():
    index = (DOCS / "guide" / "index.rst").read_text()
    pages = re.findall(r"^   (\w+)$", index, re.M)
    assert len(pages) >= 9
    for page in pages:
        assert (DOCS / "guide" / f"{page}.md").exists() or (DOCS / "guide" / f"{page}.rst").exists()


def test_examples_are_gallery_scripts_of_public_api():
    """sphinx-gallery needs an rst title in each docstring; examples import public API only."""
    examples = sorted((ROOT / "examples").glob("*.py")) if (ROOT / "examples").is_dir() else []
    if not examples:
        pytest.skip("examples/ is not part of the sdist")
    for path in examples:
        tree = ast.parse(path.read_text(), str(path))
        doc = ast.get_docstring(tree) or ""
        lines = doc.strip().splitlines()
        assert len(lines) > 2 and set(lines[1]) == {"="} and len(lines[1]) >= len(lines[0]), path
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in names:
                if target.startswith("gmmfast"):
                    assert not any(part.startswith("_") for part in target.split(".")), (
                        f"{path.name} imports the private {target}"
                    )
