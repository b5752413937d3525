"""Atomic file writes: the target is either the old file or the complete new one.

Every file gmmfast writes (model files, the commands' ``--out`` archives,
reports and figures) goes through :func:`atomic_write`. Writing in place
(``open(path, "wb")``, ``np.savez(path)``, ``torch.save(obj, path)``)
truncates the old file first, so a full disk, a file-size limit, an
exception from the serialiser or a Ctrl-C part-way leaves a broken file
where a good one was. Instead the bytes go to a temporary file in the
target's own directory (same file system, so the final rename is atomic;
named ``.NAME.XXXX.tmp``, hidden and recognisable), which is flushed and
``fsync``-ed before ``os.replace`` puts it in place; the directory is then
synced (best effort) so the rename itself survives a crash. On any
exception, ``KeyboardInterrupt`` included, the temporary file is removed
and the old file is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any


def _umask() -> int:
    """The process's umask: read from /proc where it can be (setting it to read it, the only
    portable way, briefly changes it for every thread)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable; best effort (not every OS or file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Yield a binary file object whose contents replace ``path`` when the block succeeds.

    ``path`` is written exactly as given (no suffix added). A directory, or
    a missing parent directory, raises ``OSError`` (``IsADirectoryError``,
    ``FileNotFoundError``) before anything is written. The new file gets
    the permissions a plain ``open(path, "wb")`` would give it (the
    existing file's mode when it is replaced), not ``mkstemp``'s 0600.
    """
    target = os.fspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f"{target}: is a directory, not a file to write.")
    if os.path.islink(
        target
    ):  # write through a link, as open() does, rather than replace the link itself
        target = os.path.realpath(target)
    directory, name = os.path.split(os.path.abspath(target))
    if not os.path.isdir(directory):  # name the user's path, not mkstemp's temporary name
        raise FileNotFoundError(f"{target}: no such directory {directory}.")
    try:
        mode = os.stat(target).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except (
        BaseException
    ):  # KeyboardInterrupt, SystemExit and a full disk alike: leave no partial file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def npz_out_path(path: str | os.PathLike, note: Callable[[str], Any] | None = None) -> str:
    """The path an ``.npz`` output is written to: ``path``, with ``.npz`` added when it lacks it.

    ``np.savez(path)`` silently appends ``.npz`` to a name without it, so a
    command that printed the name it was given reported a file that does
    not exist; callers write to (and print) exactly what this returns.
    ``note`` (e.g. ``print``) is told when the suffix is added.

    Raises
    ------
    IsADirectoryError
        If ``path`` (or ``path.npz``) is an existing directory.
    """
    text = os.fspath(path)
    if os.path.isdir(text):
        raise IsADirectoryError(
            f"{text}: is a directory; --out takes a file name (such as {os.path.join(text, 'out.npz')})."
        )
    if not text.endswith(".npz"):
        text += ".npz"
        if os.path.isdir(text):
            raise IsADirectoryError(f"{text}: is a directory, not a file to write.")
        if note is not None:
            note(f"{os.fspath(path)} has no .npz suffix: writing {text}")
    return text


def save_npz_atomic(path: str | os.PathLike, *, compressed: bool = False, **arrays) -> None:
    """``np.savez`` / ``np.savez_compressed`` to exactly ``path``, atomically (see :func:`atomic_write`)."""
    import numpy as np

    with atomic_write(path) as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)


def savefig_atomic(fig, path: str | os.PathLike, **kwargs) -> None:
    """``fig.savefig`` to exactly ``path``, atomically; the format comes from the suffix (PNG without one).

    Given a name, matplotlib writes in place (and appends ``.png`` to a
    name without a suffix); given a file object it writes what it is told.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    with atomic_write(path) as fh:
        fig.savefig(fh, format=suffix or "png", **kwargs)
