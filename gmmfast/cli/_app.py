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

import numpy as np

from .._version import __version__
from ..utils import _progress
from ..utils._atomic import npz_out_path
from ..utils._estimator import ConvergenceWarning
from ..utils._interrupt import interrupted_by_user
from ..utils._threads import effective_n_threads
from . import bench, classify, demo, denoise, inpaint, vae
from ._common import UsageError, check_distinct_files, check_output, record_given_options
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
        epilog="Data: an .npz with images (keys: "
        + ", ".join(image_keys)
        + ") and labels (keys: "
        + ", ".join(label_keys)
        + "), or a directory of IDX files (MNIST naming: train-images-idx3-ubyte[.gz], ...). "
        "Integer pixels are divided by 255. Exit status: 0 done, 2 bad input, 1 a failed computation or an "
        "unexpected error (one line on stderr; --debug for the traceback), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"gmmfast {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an unexpected error"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    vae.add_parser(sub)  # `gmmfast vae ...`; imports torch only when a command runs
    record_given_options(parser)  # which options were typed: see _common.refuse_given
    return parser


# Output options of the commands: checked before any work starts, so a run
# never trains for an hour to fail on a missing directory.
_OUTPUTS = {
    "save_model": "--save-model",
    "save_gmm": "--save-gmm",
    "out": "--out",
    "figure": "--figure",
    "figures": "--figures",
}
_DIRECTORY_OUTPUTS = {("demo", "out"), ("train", "figures")}


# Input options: no output may be one of these files.
_INPUTS = {
    "train": "--train",
    "test": "--test",
    "model": "--model",
    "gmm": "--gmm",
    "images": "--images",
    "reference": "--reference",
}


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output writable, no two outputs one file, no output an input; then the
    command's own checks of its options (``args.check``): all before any work."""
    command = getattr(args, "vae_command", None) or args.command
    written: list[tuple[str, str]] = []
    for attribute, option in _OUTPUTS.items():
        value = getattr(args, attribute, None)
        if value is None:
            continue
        directory = (command, attribute) in _DIRECTORY_OUTPUTS
        check_output(value, option, directory=directory)
        if attribute == "out" and not directory:
            value = npz_out_path(value)  # the name the command writes
        if not directory:
            written.append((option, value))
    written += vae.implied_outputs(args)
    inputs = [
        (option, str(getattr(args, attribute)))
        for attribute, option in _INPUTS.items()
        if getattr(args, attribute, None)
    ]
    check_distinct_files(written, inputs)
    check = getattr(args, "check", None)
    if check is not None:
        check(args)
    _resolve_threads(args)


def _resolve_threads(args: argparse.Namespace) -> None:
    """``--n-threads`` resolved once, as the library does (a count above the usable CPUs
    capped with a warning, a negative one counted back, at least 1): one warning line,
    where every fit of the command would otherwise repeat it."""
    if getattr(args, "n_threads", None) is not None:
        args.n_threads = effective_n_threads(args.n_threads)


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"gmmfast: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    0: done; 2: bad input (a usage error, an unreadable or invalid file, a
    parameter out of range); 1: the computation failed (a diverging fit, too
    little memory) or an unexpected error, which asks for a report; 130:
    interrupted. Each failure is one line on standard error; ``--debug``
    shows the traceback of an unexpected error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    verbose = bool(getattr(args, "verbose", False))
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings
        if not verbose:
            warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            _check_outputs(args)
            with _progress.progress_bars(verbose=verbose):
                code = args.func(args)
        except BaseException as exc:
            return _failure(exc, args)
    return int(code or 0)


def _failure(exc: BaseException, args: argparse.Namespace) -> int:
    """One line on standard error for a failed command, and its exit status."""
    if interrupted_by_user(exc):  # Ctrl-C, also where an interrupted import wrapped it
        print("gmmfast: interrupted", file=sys.stderr)
        return 130
    if isinstance(exc, (UsageError, ValueError, OSError)):
        print(f"gmmfast: error: {_progress.one_line(exc)}", file=sys.stderr)
        return 2
    if isinstance(exc, (ArithmeticError, MemoryError, np.linalg.LinAlgError)):
        what = "out of memory" if isinstance(exc, MemoryError) else "the computation failed"
        print(f"gmmfast: error: {what}: {_progress.one_line(exc)}", file=sys.stderr)
        return 1
    if not isinstance(exc, Exception) or args.debug:
        raise exc  # SystemExit and the like; --debug shows the traceback
    print(
        f"gmmfast: internal error: {type(exc).__name__}: {_progress.one_line(exc)} (please report it to "
        f"gmmfast's developers with the command line, gmmfast {__version__}; --debug shows the "
        "traceback)",
        file=sys.stderr,
    )
    return 1
