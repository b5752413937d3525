"""The ``gmmfast`` console script's entry point.

It imports nothing but the command line itself (and a standard-library
helper), inside a handler, so that Ctrl-C while numpy and the kernels are
still loading ends with the same one line and status 130 as Ctrl-C later
on, never with a traceback, even where an extension module's interrupted
initialisation turns Ctrl-C into an ImportError.
"""

from __future__ import annotations

import sys

from .utils._interrupt import interrupted_by_user


def main() -> int:
    try:
        from .cli import main as cli_main
    except BaseException as exc:
        if not interrupted_by_user(exc):
            raise
        print("gmmfast: interrupted", file=sys.stderr)
        return 130
    return cli_main()
