"""Loaders for MNIST and other datasets stored in the IDX format.

The IDX format (LeCun et al.) is a tiny binary container: a 4-byte magic
number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the raw array data in C order.  Only the unsigned-byte
type (``0x08``) is supported, which covers MNIST, Fashion-MNIST, KMNIST
and EMNIST.

Three entry points are provided:

* :func:`read_idx` and :func:`load_idx_dir` read IDX files from disk with
  strict structural checks and no checksum (any MNIST-like dataset);
* :func:`load_mnist` finds, optionally downloads (with pooch, the
  ``download`` extra, imported only then), and checksums the four original
  MNIST files;
* :func:`load_mnist_sample` returns a small stratified MNIST subset shipped
  inside the package, for examples and tests that must run offline.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import math
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "load_idx_dir",
    "load_mnist",
    "load_mnist_sample",
    "read_idx",
]

#: MD5 of the *decompressed* content of the original MNIST files, keyed by
#: file stem.  Hashing the decompressed bytes means a recompressed copy
#: (different gzip level or timestamp) is still recognised as genuine.
MNIST_MD5: Mapping[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

#: Public mirrors of the four gzipped MNIST files, tried in order.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

_IDX_UINT8 = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_KIND_PREFIX = {"train": "train", "test": "t10k"}
_DOWNLOAD_TIMEOUT_S = 60.0
_DOWNLOAD_RETRIES = 2  # further attempts per mirror after a transient failure (pooch)
_CHUNK_BYTES = 1 << 16
_DOWNLOAD_HINT = "pip install 'gmmfast[download]' (or pip install pooch)"

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------


def read_idx(path: PathLike, *, md5: str | None = None) -> np.ndarray:
    """Read one IDX file, plain or gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike
        File to read.  Compression is detected from the content, not from
        the file name.
    md5 : str, optional
        Expected MD5 hex digest of the decompressed bytes.  When given, a
        mismatch raises :class:`ValueError`.

    Returns
    -------
    numpy.ndarray
        A writable ``uint8`` array whose shape is given by the IDX header,
        e.g. ``(n, 28, 28)`` for MNIST images and ``(n,)`` for labels.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file is not a valid uint8 IDX file (bad magic number,
        unsupported type, truncated or oversized payload, corrupt gzip
        stream) or its checksum does not match `md5`.  The message names
        the file.

    Examples
    --------
    An IDX file is a 4-byte magic number, the big-endian dimensions, the bytes:

    >>> import struct
    >>> from gmmfast.datasets import read_idx
    >>> with open("tiny-idx1-ubyte", "wb") as f:
    ...     _ = f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes([7, 2, 1]))
    >>> read_idx("tiny-idx1-ubyte")
    array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    data = _read_decompressed(path)
    # Structure first: "truncated" is a more useful diagnosis than a bad MD5.
    shape, offset = _parse_idx_header(path, data)
    if md5 is not None:
        _check_md5(path, data, md5)
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape).copy()


def _read_decompressed(path: Path) -> bytes:
    """Return the file content, gunzipped if it starts with the gzip magic."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        # gzip reports truncation as EOFError and bad data as OSError/zlib.error.
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def _check_md5(path: Path, data: bytes, expected: str) -> None:
    """Raise ValueError if the MD5 of `data` differs from `expected`."""
    actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if actual != expected:
        raise ValueError(
            f"{path}: checksum mismatch (MD5 of decompressed content is {actual}, "
            f"expected {expected}); the file is corrupt or modified, delete it "
            "and re-download it"
        )


def _parse_idx_header(path: Path, data: bytes) -> tuple[tuple[int, ...], int]:
    """Validate an IDX header against the payload size.

    Returns the array shape and the byte offset of the payload.
    """
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(data)} bytes)")
    zero, dtype_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or ndim == 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number 0x{data[:4].hex()})")
    if dtype_code != _IDX_UINT8:
        raise ValueError(f"{path}: unsupported IDX data type 0x{dtype_code:02x} (only 0x08, uint8)")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    expected = offset + math.prod(shape)
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX file {problem}: header shape {shape} needs {expected} "
            f"bytes, found {len(data)}"
        )
    return shape, offset


# --------------------------------------------------------------------------
# Directories of IDX files
# --------------------------------------------------------------------------


def load_idx_dir(
    data_dir: PathLike,
    kind: str = "train",
    *,
    checksums: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load the images and labels of an MNIST-like dataset from a directory.

    The files are looked up with the MNIST naming scheme, which
    Fashion-MNIST and KMNIST share: ``{prefix}-images-idx3-ubyte`` and
    ``{prefix}-labels-idx1-ubyte``, with ``prefix`` ``train`` or ``t10k``.
    The dotted variants (``train-images.idx3-ubyte``) and ``.gz`` versions
    of all names are also accepted; an uncompressed file is preferred.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Directory holding the IDX files.
    kind : {"train", "test"}, default="train"
        Which split to load.
    checksums : mapping of str to str, optional
        Expected MD5 of the decompressed content keyed by file stem (the
        hyphenated name without ``.gz``, e.g. ``"train-images-idx3-ubyte"``).
        Files whose stem is absent are only checked structurally.  By
        default nothing is checksummed, since other datasets reuse the
        MNIST file names.

    Returns
    -------
    images : numpy.ndarray of uint8, shape (n, h, w)
        The images, ``(n, 28, 28)`` for MNIST.
    labels : numpy.ndarray of uint8, shape (n,)
        The class labels.

    Raises
    ------
    FileNotFoundError
        If `data_dir` or one of the two files is missing.
    ValueError
        If `kind` is invalid, a file is not valid IDX, fails its checksum,
        has the wrong number of dimensions, or the image and label counts
        differ.

    Examples
    --------
    A directory of MNIST-named IDX files (here written from the shipped sample):

    >>> import os, struct
    >>> from gmmfast.datasets import load_idx_dir, load_mnist_sample
    >>> images, labels, _, _ = load_mnist_sample(as_float=False)
    >>> os.makedirs("digits", exist_ok=True)
    >>> with open("digits/train-images-idx3-ubyte", "wb") as f:
    ...     _ = f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, len(images), 28, 28) + images.tobytes())
    >>> with open("digits/train-labels-idx1-ubyte", "wb") as f:
    ...     _ = f.write(struct.pack(">BBBBI", 0, 0, 8, 1, len(labels)) + bytes(labels.tolist()))
    >>> X, y = load_idx_dir("digits", "train")
    >>> X.shape, y.shape
    ((5000, 28, 28), (5000,))
    """
    image_path, label_path = _find_split(Path(data_dir), kind)
    checksums = checksums or {}
    images = read_idx(image_path, md5=checksums.get(_stem(image_path)))
    labels = read_idx(label_path, md5=checksums.get(_stem(label_path)))
    if images.ndim != 3:
        raise ValueError(f"{image_path}: expected 3-d images, got shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{label_path}: expected 1-d labels, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{image_path} holds {images.shape[0]} images but {label_path} "
            f"holds {labels.shape[0]} labels"
        )
    return images, labels


def _split_stems(kind: str) -> tuple[str, str]:
    """Return the canonical image and label file stems of a split."""
    if kind not in _KIND_PREFIX:
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    prefix = _KIND_PREFIX[kind]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find_split(data_dir: Path, kind: str) -> tuple[Path, Path]:
    """Locate the image and label files of `kind` in `data_dir`."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    image_stem, label_stem = _split_stems(kind)
    image_path = _find_file(data_dir, image_stem)
    label_path = _find_file(data_dir, label_stem)
    if image_path is None or label_path is None:
        missing = [s for s, p in ((image_stem, image_path), (label_stem, label_path)) if p is None]
        raise FileNotFoundError(
            f"{data_dir} has no {' or '.join(missing)} file "
            "(plain, .gz, or with a dot before 'idx')"
        )
    return image_path, label_path


def _find_file(data_dir: Path, stem: str) -> Path | None:
    """Return the first existing spelling of `stem` in `data_dir`, if any."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, dotted, f"{stem}.gz", f"{dotted}.gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def _stem(path: Path) -> str:
    """Canonical stem of an IDX file name: no ``.gz``, dots as hyphens."""
    return path.name.removesuffix(".gz").replace(".", "-")


# --------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------


def load_mnist(
    data_dir: PathLike | None = None,
    download: bool = False,
    kind: str = "train",
    *,
    as_float: bool = True,
    mirrors: Sequence[str] | None = None,
    cache_dir: PathLike | None = None,
) -> tuple[np.ndarray, ...]:
    """Load the MNIST handwritten digits, checking the files' MD5.

    Directories are searched in this order, and the first one holding all
    the files of the requested split(s) is used:

    1. `data_dir` if given, otherwise the ``$GMMFAST_DATA`` environment
       variable if set;
    2. the cache directory: `cache_dir` if given, otherwise
       ``$XDG_CACHE_HOME/gmmfast/mnist`` or ``~/.cache/gmmfast/mnist``.

    If no directory has the files and `download` is true, the missing
    ``.gz`` files are fetched into the cache directory with pooch (the
    ``download`` extra: ``pip install 'gmmfast[download]'``), each from the
    first mirror that serves a copy whose decompressed bytes have the known
    MD5; transient network failures are retried.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory with the MNIST IDX files (plain or ``.gz``).
    download : bool, default=False
        Download the files into the cache directory if they are not found.
    kind : {"train", "test", "both"}, default="train"
        Which split(s) to return.
    as_float : bool, default=True
        Return images as float32 rows scaled to [0, 1] of shape (n, 784)
        rather than the raw uint8 array of shape (n, 28, 28).
    mirrors : sequence of str, optional
        Base URLs to download from, tried in order.  Defaults to
        :data:`MNIST_MIRRORS`.
    cache_dir : str or os.PathLike, optional
        Cache directory to search and download into.

    Returns
    -------
    tuple of numpy.ndarray
        ``(X, y)`` for ``kind="train"`` or ``"test"``, and
        ``(X_train, y_train, X_test, y_test)`` for ``kind="both"``.
        Labels are int64.

    Raises
    ------
    FileNotFoundError
        If the files are in none of the searched directories and `download`
        is false.
    ValueError
        If a file is corrupt, fails its checksum, or `kind` is invalid.
    RuntimeError
        If a file could not be downloaded from any mirror.
    ImportError
        If a download is needed and pooch is not installed.

    Examples
    --------
    With the four MNIST files in a directory (their MD5 sums, :data:`MNIST_MD5`,
    are checked), or downloaded from :data:`MNIST_MIRRORS` into the cache with
    ``download=True``:

    >>> from gmmfast.datasets import MNIST_MD5, load_mnist
    >>> sorted(MNIST_MD5)[0]
    't10k-images-idx3-ubyte'
    >>> X, y, X_test, y_test = load_mnist("path/to/mnist", kind="both")  # doctest: +SKIP
    >>> X.shape, X_test.shape                                             # doctest: +SKIP
    ((60000, 784), (10000, 784))
    """
    kinds = _kinds(kind)
    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    search = [*_user_dirs(data_dir), cache]
    found = next((d for d in search if _has_splits(d, kinds)), None)
    if found is None:
        if not download:
            raise FileNotFoundError(
                "MNIST files not found in "
                + ", ".join(map(str, search))
                + "; pass download=True to fetch them"
            )
        _download_missing(cache, kinds, MNIST_MIRRORS if mirrors is None else mirrors)
        found = cache
    arrays: list[np.ndarray] = []
    for k in kinds:
        images, labels = load_idx_dir(found, k, checksums=MNIST_MD5)
        arrays += [_to_features(images, as_float), labels.astype(np.int64)]
    return tuple(arrays)


def _kinds(kind: str) -> tuple[str, ...]:
    """Expand `kind` into the list of splits to load."""
    if kind == "both":
        return ("train", "test")
    if kind in _KIND_PREFIX:
        return (kind,)
    raise ValueError(f"kind must be 'train', 'test' or 'both', got {kind!r}")


def _user_dirs(data_dir: PathLike | None) -> list[Path]:
    """Return the user-chosen directory: the argument, else ``$GMMFAST_DATA``."""
    if data_dir is not None:
        return [Path(data_dir)]
    env = os.environ.get("GMMFAST_DATA")
    return [Path(env)] if env else []


def _default_cache_dir() -> Path:
    """Return ``$XDG_CACHE_HOME/gmmfast/mnist``, falling back to ``~/.cache``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "gmmfast" / "mnist"


def _has_splits(data_dir: Path, kinds: Sequence[str]) -> bool:
    """Whether `data_dir` holds image and label files for every split."""
    return all(_find_file(data_dir, stem) is not None for k in kinds for stem in _split_stems(k))


def _to_features(images: np.ndarray, as_float: bool) -> np.ndarray:
    """Flatten and scale images to float32 in [0, 1] if requested."""
    if not as_float:
        return images
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


# --------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------


def _download_missing(cache: Path, kinds: Sequence[str], mirrors: Sequence[str]) -> None:
    """Fetch the gzipped files of `kinds` that `cache` lacks."""
    pooch = _import_pooch()
    cache.mkdir(parents=True, exist_ok=True)
    for k in kinds:
        for stem in _split_stems(k):
            if _find_file(cache, stem) is None:
                _download_verified(pooch, cache, stem, mirrors)


def _import_pooch():
    """pooch (the ``download`` extra), imported only when a file is downloaded."""
    try:
        import pooch
    except ImportError as exc:
        raise ImportError(f"downloading MNIST needs pooch: {_DOWNLOAD_HINT}") from exc
    return pooch


def _download_verified(pooch, cache: Path, stem: str, mirrors: Sequence[str]) -> Path:
    """Download ``{stem}.gz`` from the first mirror serving a valid copy.

    pooch fetches each file (retrying transient failures: refused or
    dropped connections, time-outs, 5xx answers) into a staging directory
    inside `cache`; the copy is renamed to its final name only once its
    structure and the MD5 of its decompressed bytes are verified, so the
    cache never holds a partial or corrupt file under the real name. A
    mirror that serves a corrupt copy or answers 404 is not retried: the
    next mirror is tried.
    """
    name = f"{stem}.gz"
    errors = []
    with _quiet_pooch(pooch), tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as stage:
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            fetcher = pooch.Pooch(
                path=stage,
                base_url="",
                registry={name: None},  # verified below, on the decompressed bytes
                urls={name: url},
                retry_if_failed=_DOWNLOAD_RETRIES,
            )
            try:
                fetched = Path(fetcher.fetch(name, downloader=_Downloader(pooch, name)))
                read_idx(fetched, md5=MNIST_MD5.get(stem))
                return fetched.replace(cache / name)
            except (OSError, ValueError) as exc:
                # Network failures (requests' exceptions are OSErrors) and corrupt
                # downloads alike: try the next mirror.
                errors.append(f"  {url}: {_describe(exc)}")
                (Path(stage) / name).unlink(missing_ok=True)
    raise RuntimeError(f"could not download a valid {name} from any mirror:\n" + "\n".join(errors))


class _NotOnMirror(OSError):
    """An HTTP answer that asking again will not change (404, 403, ...): not retried.

    pooch retries on :class:`requests.RequestException`; this is not one.
    """


class _Downloader:
    """pooch's HTTP downloader, with gmmfast's progress bar and no retry of a 4xx answer.

    The bar is a :func:`gmmfast.utils._progress.bar` (so it shows where the
    estimators' bars show: the ``gmmfast`` command on a terminal or with
    ``--verbose``; a library call stays silent), a new one per attempt.
    """

    def __init__(self, pooch, name: str) -> None:
        self._pooch = pooch
        self._name = name

    def __call__(self, url: str, output_file, pooch_instance) -> None:
        import requests

        from .utils import _progress

        progress = None
        if _progress.active():
            progress = _ByteBar(
                _progress.bar(desc=self._name, unit="B", unit_scale=True, leave=False)
            )
        http = self._pooch.HTTPDownloader(
            progressbar=progress or False, timeout=_DOWNLOAD_TIMEOUT_S, chunk_size=_CHUNK_BYTES
        )
        try:
            http(url, output_file, pooch_instance)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                raise _NotOnMirror(str(exc)) from exc
            raise
        finally:
            if progress is not None:
                progress.close()


class _ByteBar:
    """A tqdm bar as pooch drives a custom one (``total`` set, ``update``, ``reset``,
    ``close``), always true (pooch tests ``if progressbar:``; a tqdm bar with no
    total yet refuses ``bool``)."""

    def __init__(self, bar) -> None:
        self._bar = bar

    def __bool__(self) -> bool:
        return True

    @property
    def total(self):
        return self._bar.total

    @total.setter
    def total(self, value) -> None:
        self._bar.total = value or None  # 0: the server sent no length
        self._bar.refresh()

    def update(self, n: int) -> None:
        self._bar.update(n)

    def reset(self) -> None:
        self._bar.reset(total=self._bar.total)

    def close(self) -> None:
        self._bar.close()


def _describe(exc: BaseException) -> str:
    """A download failure in a few words: for a refused or failed connection, the
    operating system's reason rather than requests' and urllib3's wrappers."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = str(reason if reason is not None else exc)
    return re.sub(r"^<[^>]*>: ", "", text)


@contextlib.contextmanager
def _quiet_pooch(pooch) -> Iterator[None]:
    """Hold pooch's log lines ("Downloading file ...", "Will attempt again ...") while
    gmmfast downloads: gmmfast reports through its progress bar and its errors."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------
# Embedded sample
# --------------------------------------------------------------------------


def load_mnist_sample(as_float: bool = True) -> tuple[np.ndarray, ...]:
    """Load the small MNIST subset shipped with the package.

    The sample is a stratified random subset of MNIST: 5,000 training
    images (500 per digit) and 1,000 test images (100 per digit), drawn
    with a fixed seed by ``tools/make_mnist_sample.py``.  It needs no
    download and works from an installed wheel.

    Parameters
    ----------
    as_float : bool, default=True
        Return images as float32 rows scaled to [0, 1] of shape (n, 784)
        rather than the raw uint8 array of shape (n, 28, 28).

    Returns
    -------
    X_train, y_train, X_test, y_test : numpy.ndarray
        Images and int64 labels of the training and test subsets.

    Examples
    --------
    >>> from gmmfast.datasets import load_mnist_sample
    >>> X, y, X_test, y_test = load_mnist_sample()
    >>> X.shape, X.dtype, float(X.max()), y_test.shape
    ((5000, 784), dtype('float32'), 1.0, (1000,))
    """
    resource = resources.files("gmmfast").joinpath("data/mnist_sample.npz")
    with resource.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
        return (
            _to_features(npz["X_train"], as_float),
            npz["y_train"].astype(np.int64),
            _to_features(npz["X_test"], as_float),
            npz["y_test"].astype(np.int64),
        )
