"""``python -m gmmfast``: the same as the ``gmmfast`` command."""
import sys

from .cli import main

sys.exit(main())
