"""The README's command blocks work as written.

Each fenced ``bash`` or ``python`` block of README.md is taken in order. A block
that needs the network (a ``pip install``) says so on the line before it::

    <!-- readme-test: network -->

Those are checked lightly here (each command is one this test knows, the extras
it installs exist, the PyTorch pin and the order of the test commands are the
ones .ci/run uses, the commands they then run answer ``--help``); CI runs them
for real when it installs exactly as the README says. Every other block runs
here: the python blocks together, in order, in a fresh directory, in a
subprocess of this interpreter; bash blocks under ``bash -euo pipefail``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKERS = ("network",)  # what a block may declare it needs

pytestmark = pytest.mark.skipif(not README.exists(), reason="no README.md beside tests/")


def blocks(text: str) -> list[tuple[str, str, str | None]]:
    """(language, code, marker) of every fenced block, in order."""
    found = []
    pattern = re.compile(
        r"(?:<!--\s*readme-test:\s*(?P<marker>[\w-]+)\s*-->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```",
        re.S | re.M,
    )
    for m in pattern.finditer(text):
        found.append((m["lang"], m["code"], m["marker"]))
    return found


def _readme_blocks():
    return blocks(README.read_text())


def test_block_parser():
    text = (
        "a\n<!-- readme-test: network -->\n```bash\npip install x\n```\n```python\nprint(1)\n```\n"
    )
    assert blocks(text) == [("bash", "pip install x\n", "network"), ("python", "print(1)\n", None)]


def test_readme_is_a_landing_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines"
    found = _readme_blocks()
    assert found, "no command block"
    for lang, _, marker in found:
        assert lang in ("bash", "python"), f"a ```{lang} block: only bash and python are tested"
        assert marker in (None, *MARKERS), f"unknown marker {marker!r}"
    # The first block is the fresh clone's install-and-run-the-main-job.
    lang, code, _ = found[0]
    assert lang == "bash" and 'pip install ".[plot]"' in code and "gmmfast demo" in code


def test_pip_install_gmmfast_is_marked_unpublished():
    text = README.read_text()
    for lang, code, _ in _readme_blocks():
        for line in code.splitlines():
            if re.match(r"\s*pip install gmmfast\b", line):
                assert "NOT YET PUBLISHED" in line
    assert text.index("pip install gmmfast ") > text.index("## Two commands for a fresh clone")


def _extras() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(pyproject["project"]["optional-dependencies"])


def _ci_torch_pin() -> str | None:
    ci = ROOT / ".ci" / "run"
    if not ci.exists():
        return None
    m = re.search(r"pip install --quiet (torch==[\w.+]+)", ci.read_text())
    return m[1] if m else None


def _check_command(command: str) -> None:
    """One command of a network block: known, and what it names exists."""
    words = shlex.split(command.split("#")[0])
    if not words:
        return
    if words[:3] == ["python3", "-m", "venv"] or words[:1] in (["."], ["source"]):
        return
    if words[:2] == ["pip", "install"]:
        for spec in words[2:]:
            if spec.startswith("-"):
                continue
            m = re.fullmatch(r"\.(?:\[(?P<extras>[\w,-]+)\])?", spec)
            if m:
                missing = set((m["extras"] or "").split(",")) - {""} - _extras()
                assert not missing, f"pip install {spec}: no extra {missing} in pyproject.toml"
            elif spec.startswith("torch"):
                pin = _ci_torch_pin()
                assert pin is None or spec == pin, f"README installs {spec}, .ci/run {pin}"
            else:
                assert spec == "gmmfast", f"pip install {spec}: not a command this test knows"
        return
    if words[0] == "gmmfast":
        run = [sys.executable, "-m", "gmmfast", *words[1:], "--help"]
        # Away from the source tree: `python -m` puts the working directory first on the path.
        out = subprocess.run(
            run, capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir()
        )
        assert out.returncode == 0, f"{command!r} --help: {out.stderr}"
        return
    if words[0] == "pytest":
        assert (ROOT / "tests").is_dir()
        return
    if words[0] == "sphinx-build":
        assert (ROOT / words[-2] / "conf.py").exists(), command
        return
    raise AssertionError(f"a command this test does not know: {command!r}")


def test_network_blocks_name_what_exists():
    checked = 0
    for lang, code, marker in _readme_blocks():
        if marker != "network":
            continue
        assert lang == "bash"
        for line in code.splitlines():
            for command in line.split("&&"):
                _check_command(command.strip())
                checked += 1
    assert checked >= 6


def test_readme_test_commands_are_what_ci_runs():
    """CI installs exactly as the README says: the torch pin, then the test extras, then pytest."""
    ci = ROOT / ".ci" / "run"
    if not ci.exists():
        pytest.skip(".ci/ is not part of the sdist")
    readme = next(c for lang, c, _ in _readme_blocks() if '".[test]"' in c)
    order = ["pip install torch==", 'pip install ".[test]"', "pytest"]
    positions = [readme.index(step) for step in order]
    assert positions == sorted(positions)
    ci_text = ci.read_text()
    ci_steps = ["pip install --quiet torch==", 'pip install --quiet ".[test]"', "\npytest\n"]
    ci_positions = [ci_text.index(step) for step in ci_steps]
    assert ci_positions == sorted(ci_positions)


def test_blocks_without_network_run(tmp_path):
    """The python blocks in order, as one script, in an empty directory; then bash blocks."""
    runnable = [(lang, code) for lang, code, marker in _readme_blocks() if marker is None]
    python = "\n".join(code for lang, code in runnable if lang == "python")
    assert python, "the README has no python block to run"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, "-c", python],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for lang, code in runnable:
        if lang == "bash":
            bin_dir = os.path.dirname(sys.executable)
            env_bash = {**env, "PATH": bin_dir + os.pathsep + env["PATH"]}
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", code],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=180,
                env=env_bash,
            )
            assert done.returncode == 0, (code, done.stderr[-3000:])
