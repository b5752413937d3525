"""``python -m gmmfast``: the same as the ``gmmfast`` command."""

import sys

from ._console import main

sys.exit(main())
