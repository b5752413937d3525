"""How gmmfast talks to the user: progress bars, verbose lines, notices, and Ctrl-C.

Every estimator goes through this module, never through a bare ``print``:
:func:`bar` for progress, :func:`write` for ``verbose`` lines (standard
output), :func:`notice` for what the user must know even when not verbose
(standard error), and :func:`on_interrupt`, the one place where Ctrl-C is
handled. tqdm is imported here and nowhere else.

Progress bars are tqdm bars when asked for (an estimator's ``verbose >= 1``,
or the command on a terminal or with ``--verbose``), and, outside the command,
on a terminal for work that lasts more than :data:`AUTO_DELAY` seconds;
silent otherwise (in a notebook, a log file, a test run).

The estimators (EM iterations in :class:`gmmfast.GaussianMixture`, classes
and K searches in :class:`gmmfast.GMMClassifier`) open their bars with
:func:`bar`. Without tqdm installed, inside ``progress_bars(False)``, or
outside any :func:`progress_bars` block when standard error is not a
terminal, :func:`bar` returns a no-op object (the ``verbose`` lines are
scikit-learn's, unchanged). The ``gmmfast`` command turns the bars on for its whole run
when standard error is a terminal or ``--verbose`` is given::

    from gmmfast.utils._progress import progress_bars

    with progress_bars(verbose=True):      # or progress_bars() : only on a terminal
        GMMClassifier(2).fit(X, y)         # a bar per class, one per EM run

Bars write to standard error; messages printed through :func:`write`
(the estimators' ``verbose`` lines) go to standard output above the bars.
A bar is closed when its ``with`` block ends, also on ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
from typing import Any, Callable, Iterable, Iterator

try:  # optional at run time: a missing tqdm only means no bars
    from tqdm import tqdm as _tqdm
except ImportError:  # pragma: no cover - exercised by monkeypatching _tqdm
    _tqdm = None

__all__ = [
    "active",
    "asked",
    "shows_progress",
    "bar",
    "notice",
    "one_line",
    "on_interrupt",
    "progress_bars",
    "say",
    "wanted",
    "write",
]

# Whether bars are shown in the current context (set by progress_bars); None: automatic
# (a terminal), the default of a library call outside any progress_bars block.
_ENABLED: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "gmmfast_progress", default=None
)

#: Seconds before an automatic bar appears: work shorter than this stays silent.
AUTO_DELAY = 2.0


def available() -> bool:
    """Whether tqdm can be imported."""
    return _tqdm is not None


def wanted(verbose: bool = False, stream: Any = None) -> bool:
    """Whether bars should be shown: tqdm is installed, and ``verbose`` is
    true or ``stream`` (default: standard error) is a terminal."""
    if not available():
        return False
    if verbose:
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def active() -> bool:
    """Whether :func:`bar` shows bars here: inside an enabled :func:`progress_bars`,
    or, outside any, when standard error is a terminal (automatic bars, shown only
    for work longer than :data:`AUTO_DELAY` seconds)."""
    enabled = _ENABLED.get()
    if enabled is None:
        return wanted()
    return enabled and available()


def shows_progress(method: Callable) -> Callable:
    """Decorate an estimator method whose work may be long: its bars show when the
    estimator's ``verbose`` asks for them (see :func:`asked`)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with asked(getattr(self, "verbose", 0)):
            return method(self, *args, **kwargs)

    return wrapper


def asked(verbose: Any) -> contextlib.AbstractContextManager:
    """Bars on for an estimator's work when its ``verbose`` is 1 or more (scikit-learn's
    way of asking for output), else the caller's setting: wrap a ``fit`` in it."""
    if int(verbose or 0) >= 1:
        return progress_bars(True)
    return contextlib.nullcontext()


@contextlib.contextmanager
def progress_bars(enabled: bool | None = None, *, verbose: bool = False) -> Iterator[bool]:
    """Show progress bars inside the block.

    ``enabled=None`` decides with :func:`wanted` (a terminal, or
    ``verbose``); True or False forces it (True still needs tqdm).
    Yields whether bars are on.
    """
    on = wanted(verbose) if enabled is None else (bool(enabled) and available())
    token = _ENABLED.set(on)
    try:
        yield on
    finally:
        _ENABLED.reset(token)


class NullBar:
    """The no-op stand-in for a tqdm bar: same methods, does nothing."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None) -> None:
        self.iterable = iterable
        self.total = total
        self.n = 0

    def __iter__(self) -> Iterator:
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self) -> "NullBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    leave: bool = True,
    **kwargs: Any,
) -> Any:
    """A tqdm bar on standard error when :func:`active`, else a :class:`NullBar`.

    Use it as a context manager (``with bar(total=n) as b: ... b.update()``)
    or wrap an iterable. ``leave=False`` for inner bars, which disappear
    when done.
    """
    if not active():
        return NullBar(iterable, total)
    if _ENABLED.get() is None:  # automatic: only work that lasts shows a bar
        kwargs.setdefault("delay", AUTO_DELAY)
    return _tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        file=sys.stderr,
        dynamic_ncols=True,
        **kwargs,
    )


def write(message: str) -> None:
    """Print a line to standard output without tearing the open bars."""
    if active():
        _tqdm.write(message, file=sys.stdout)
        sys.stdout.flush()
    else:
        print(message, flush=True)


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An exception's message on one line (whitespace collapsed), at most ``limit``
    characters, or its type's name when it has no message: for error lines that
    quote what went wrong inside a library."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def say(verbose: Any, message: str, level: int = 1) -> None:
    """An estimator's ``verbose`` line: :func:`write` it when ``verbose >= level``."""
    if int(verbose or 0) >= level:
        write(message)


def notice(message: str) -> None:
    """Print a line to standard error without tearing the open bars."""
    if active():
        _tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def on_interrupt(keep: Callable[[], str], *, propagate: bool = True) -> Iterator[None]:
    """The one handler of Ctrl-C in gmmfast's long loops.

    On ``KeyboardInterrupt`` inside the block, ``keep()`` puts the estimator
    in a consistent state (the last completed iteration, the best epoch) and
    returns a sentence saying what it kept, which is printed with
    :func:`notice`. With ``propagate`` (estimators whose ``fit`` documents
    that the interrupt propagates) the ``KeyboardInterrupt`` is then
    re-raised; without it the caller carries on with what was kept and
    must record that it was interrupted.
    """
    try:
        yield
    except KeyboardInterrupt:
        notice(keep())
        if propagate:
            raise
