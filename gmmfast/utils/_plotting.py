"""matplotlib (the ``plot`` extra), imported only when a figure is drawn, on the Agg backend."""

from __future__ import annotations

from typing import Any

PLOT_HINT = "pip install 'gmmfast[plot]'"


def pyplot(required: bool = True) -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display).

    Without matplotlib: ImportError naming the extra, or None when not
    ``required`` (callers that skip their figures and say so).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        if not required:
            return None
        raise ImportError(f"figures need matplotlib: {PLOT_HINT}") from exc
    return plt
