"""What every command shares: the usage error, argument types, common options, load-or-fit."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np


class UsageError(Exception):
    """Bad input from the command line: reported in one line, no traceback."""


def int_list(text: str) -> int | list[int]:
    """'2' -> 2, '1,2,4' -> [1, 2, 4] (argparse type)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or a comma-separated list of integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values[0] if len(values) == 1 else values


def k_sweep(text: str) -> list[int]:
    """'none' -> [], '1,3' -> [1, 3], '4' -> [4] (argparse type)."""
    if text.strip().lower() in ("", "none"):
        return []
    values = int_list(text)
    return values if isinstance(values, list) else [values]


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def load_or_fit(
    args: argparse.Namespace, load: Callable[[str], Any], fit: Callable[[], Any], missing: str
) -> Any:
    """The model in --model (read by ``load``), or ``fit()`` on --train,
    saved to --save-model when given; ``missing`` ends the error when neither is given."""
    if args.model:
        if not Path(args.model).exists():
            raise UsageError(f"{args.model}: no such model file")
        return load(args.model)
    if not args.train:
        raise UsageError(f"give --model FILE, or --train DATA {missing}")
    model = fit()
    if args.save_model:
        model.save(args.save_model)
        print(f"saved the model to {args.save_model}")
    return model


def nonzero_int(text: str) -> int:
    """An integer other than 0 (thread counts: negatives count back from the CPUs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value == 0:
        raise argparse.ArgumentTypeError("expected a non-zero integer (-1: all usable CPUs), got 0")
    return value


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {low} to {high}, got {value}"
            )
        return value

    return parse


def check_output(path: str | None, what: str, *, directory: bool = False) -> None:
    """Fail before any long work if ``path`` cannot be written: its folder must exist
    and be writable, and a file output must not name a directory."""
    if not path:
        return
    target = Path(path)
    if directory:
        if target.exists() and not target.is_dir():
            raise UsageError(f"{what} {path}: exists and is not a directory")
        parent = target if target.exists() else target.parent
    else:
        if target.is_dir():
            raise UsageError(f"{what} {path}: is a directory; give a file name")
        parent = target.parent
    parent = parent if str(parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{what} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: the directory {parent} is not writable")


def add_common_options(p: argparse.ArgumentParser) -> None:
    """--n-threads and --verbose, on every command."""
    p.add_argument(
        "--n-threads",
        type=nonzero_int,
        default=None,
        metavar="N",
        help="threads (default: the CPUs this process may use; -1 all of them, -2 all but one)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="progress bars and fitting messages even when stderr is not a terminal",
    )
