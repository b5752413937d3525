"""Recognising Ctrl-C, also where another exception wraps it (standard library only,
so the command's entry point can use it before anything heavy is imported)."""

from __future__ import annotations


def interrupted_by_user(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a KeyboardInterrupt or was raised while handling one.

    An extension module interrupted while it initialises turns Ctrl-C into
    ``ImportError: initialization failed`` (SciPy's HiGHS does), with the
    KeyboardInterrupt only in the exception's chain.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
