"""Kernel timings of two gmmfast builds, before and after a change, on the same machine.

Each build runs in its own processes, alternating (before, after, after, before,
...), so drifts of the machine's speed fall on both; per case it prints the
median and the minimum of all rounds. Example (the build of an older commit
installed with ``pip install --no-build-isolation --no-deps --target DIR .``,
run by an interpreter in which gmmfast is not otherwise installed)::

    python benchmarks/tools/ab_kernels.py --before-python /path/venv-base/bin/python \\
        --before-path DIR --after-python .venv/bin/python --processes 4 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_MNIST = HERE.parents[2] / "shared" / "data" / "mnist"


def run(python: str, path: str | None, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path
    command = [
        python,
        str(HERE / "kernel_case.py"),
        "--mnist-dir",
        args.mnist_dir,
        "--rounds",
        str(args.rounds),
        "--cases",
        args.cases,
        "--n",
        str(args.n),
    ]
    out = subprocess.run(
        command, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    line = [row for row in out.stdout.splitlines() if row.startswith("JSON")]
    if not line:
        sys.exit(f"{python} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[0][4:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-python", required=True)
    parser.add_argument("--before-path", default=None, help="PYTHONPATH for the before build")
    parser.add_argument("--after-python", default=sys.executable)
    parser.add_argument("--after-path", default=None)
    parser.add_argument("--processes", type=int, default=4, help="processes per build (default 4)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed rounds per process (default 3)"
    )
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--cases", default="score,em,missing_em,masked,patches")
    parser.add_argument(
        "--mnist-dir", default=os.environ.get("GMMFAST_MNIST_DIR", str(DEFAULT_MNIST))
    )
    args = parser.parse_args()
    builds = {
        "before": (args.before_python, args.before_path),
        "after": (args.after_python, args.after_path),
    }
    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    files = {}
    for i in range(args.processes):
        for who in ("before", "after") if i % 2 == 0 else ("after", "before"):
            result = run(*builds[who], args)
            files[who] = result["file"]
            for case, values in result["res"].items():
                times[who].setdefault(case, []).extend(values)
    print(f"before: {files['before']}\nafter:  {files['after']}")
    print(
        f"{'case':28s} {'before median':>13s} {'after median':>12s} {'ratio':>6s} {'before min':>10s} "
        f"{'after min':>9s}   ms, {args.processes} alternating processes x {args.rounds} rounds"
    )
    for case in times["before"]:
        b = np.array(times["before"][case]) * 1e3
        a = np.array(times["after"].get(case, [np.nan])) * 1e3
        print(
            f"{case:28s} {np.median(b):13.2f} {np.median(a):12.2f} {np.median(a) / np.median(b):6.2f} "
            f"{b.min():10.2f} {a.min():9.2f}"
        )


if __name__ == "__main__":
    main()
