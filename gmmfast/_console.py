"""The ``gmmfast`` console script's entry point.

It imports nothing but the command line itself, inside a handler, so that
Ctrl-C while numpy and the kernels are still loading ends with the same
one line and status 130 as Ctrl-C later on, never with a traceback.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("gmmfast: interrupted", file=sys.stderr)
        return 130
    return cli_main()
