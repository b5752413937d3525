"""What every command shares: the usage error, argument types, common options, load-or-fit."""

from __future__ import annotations

import argparse
import inspect
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np


class UsageError(Exception):
    """Bad input from the command line: reported in one line, no traceback."""


def library_default(estimator: Callable[..., Any], name: str) -> Any:
    """The default of parameter ``name`` of ``estimator`` (a class or a method).

    An option that mirrors a library parameter takes its default from here, so
    the command and the library cannot drift apart (``tests/test_defaults.py``
    checks every such option, and lists the deliberate exceptions).
    """
    default = inspect.signature(estimator).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{estimator.__qualname__}'s {name} has no default")
    return default


def int_list(text: str) -> int | list[int]:
    """'2' -> 2, '1,2,4' -> [1, 2, 4] (argparse type); an empty item ('1,,2', '2,') is refused."""
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise argparse.ArgumentTypeError(
            f"empty item in {text!r}: expected an integer or a comma-separated list of integers"
        )
    try:
        values = [int(v) for v in items]
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


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A share in [0, 1) (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
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
    if path is None:
        return
    if not str(path).strip():
        raise UsageError(f"{what}: an empty name; give a file name")
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


# ------------------------------------------------- options the user gave
# argparse fills in defaults without a trace; these record which options
# were typed, so an option that does not apply can be refused rather than
# silently ignored (only when given: a default never applies by accident).
_GIVEN = "_given_options"


def record_given_options(parser: argparse.ArgumentParser) -> None:
    """Make every optional action of ``parser`` and its subparsers record, when used,
    its dest and long option name (read back with :func:`given_options`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                record_given_options(sub)
        elif action.option_strings and not isinstance(
            action, (argparse._HelpAction, argparse._VersionAction)
        ):
            action.__class__ = _recording(type(action))


_RECORDING: dict[type, type] = {}


def _recording(cls: type) -> type:
    if getattr(cls, "_records_given", False):
        return cls
    if cls not in _RECORDING:

        def __call__(self, parser, namespace, values, option_string=None):  # noqa: N807
            vars(namespace).setdefault(_GIVEN, {})[self.dest] = self.option_strings[-1]
            cls.__call__(self, parser, namespace, values, option_string)

        _RECORDING[cls] = type(cls.__name__, (cls,), {"__call__": __call__, "_records_given": True})
    return _RECORDING[cls]


def given_options(args: argparse.Namespace) -> dict[str, str]:
    """{dest: option name} of the options given on the command line."""
    return dict(getattr(args, _GIVEN, {}))


def refuse_given(args: argparse.Namespace, dests: Iterable[str], reason: str) -> None:
    """A ``UsageError`` naming the first of ``dests`` the user gave: it ``reason``."""
    given = given_options(args)
    for dest in dests:
        if dest in given:
            raise UsageError(f"{given[dest]} {reason}")


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same resolved path (symlinks, ./ and ..),
    or, for existing files, the same inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_distinct_files(
    outputs: Sequence[tuple[str, str]], inputs: Sequence[tuple[str, str]]
) -> None:
    """Refuse, before any work, two outputs that are one file, or an output that is an input.

    ``outputs`` and ``inputs`` are (option, path) pairs, outputs with the
    names that will really be written (``.npz`` added, defaults filled in).
    """
    for i, (option, path) in enumerate(outputs):
        for other, other_path in outputs[:i]:
            if _same_file(path, other_path):
                raise UsageError(
                    f"{option} {path} and {other} {other_path} are the same file; the second "
                    "would overwrite the first: give each output its own name"
                )
        for other, other_path in inputs:
            if os.path.isfile(other_path) and _same_file(path, other_path):
                raise UsageError(
                    f"{option} {path} is the input {other} {other_path}; writing it would "
                    "destroy the input: give the output another name"
                )
