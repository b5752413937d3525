"""The ``gmmfast`` command's parser and its one error boundary.

Every command module registers itself with ``add_parser(sub)`` and runs
through ``run(args)``; :func:`main` is the only place that turns exceptions
into exit statuses: bad input is one line on standard error and status 2,
Ctrl-C status 130, and nothing else reaches the user as a traceback.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

from .._version import __version__
from ..utils import _progress
from ..utils._estimator import ConvergenceWarning
from . import bench, classify, demo, denoise, inpaint, vae
from ._common import UsageError
from ._data import data_keys

COMMANDS = (demo, classify, inpaint, denoise, bench)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, with status 2, like the other bad input."""

    def error(self, message: str):
        self.exit(2, f"gmmfast: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``gmmfast`` argument parser with every command registered."""
    image_keys, label_keys = data_keys("train")
    parser = _Parser(
        prog="gmmfast",
        description="Fast Gaussian mixture models for images: classify digits (also with missing pixels), "
        "inpaint and denoise them. Start with `gmmfast demo`; `gmmfast COMMAND --help` explains each command.",
        epilog="Data: an .npz with images (keys: " + ", ".join(image_keys) + ") and labels (keys: "
        + ", ".join(label_keys) + "), or a directory of IDX files (MNIST naming: train-images-idx3-ubyte[.gz], ...). "
        "Integer pixels are divided by 255. Exit status: 0 done, 2 bad input (one line on stderr), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"gmmfast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    vae.add_parser(sub)  # `gmmfast vae ...`; imports torch only when a command runs
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    verbose = bool(getattr(args, "verbose", False))
    if not verbose:
        warnings.simplefilter("ignore", ConvergenceWarning)
    try:
        with _progress.progress_bars(verbose=verbose):
            code = args.func(args)
    except (UsageError, ValueError, OSError) as exc:
        print(f"gmmfast: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gmmfast: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
