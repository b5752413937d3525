"""Model files: ``.npz`` archives read with ``allow_pickle=False``, bounded before decompression.

Every file carries a JSON header (``__meta__``, a unicode array) with the
format name and version, the model kind and its constructor parameters;
the rest are plain numeric arrays. Nothing is ever unpickled.

Writing is atomic (:mod:`._atomic`): a failed or interrupted save leaves
the previous file in place.

Reading is bounded: a model file is untrusted input, and an ``.npz`` is a
zip archive whose members may decompress to far more than the file's size
(a few MB of deflated zeros are GBs), or whose ``.npy`` headers may
declare arrays of 10^11 elements that numpy allocates before reading a
byte. :func:`load_npz` therefore looks at the archive's directory and at
each member's ``.npy`` header only (a few hundred bytes of each) and
refuses, before any array body is decompressed:

* duplicated or non-``.npy`` member names, and members the model kind does
  not have (the caller's ``expected`` function lists them, with the shape
  each must have given the header's parameters and the other members'
  declared shapes: the whole file is then bounded by what the model it
  claims to be needs);
* object, complex, byte-string or structured dtypes;
* a declared size (header + shape x itemsize) that differs from the zip
  member's uncompressed size, or a member whose compressed size does not
  fit in the file;
* members that decompress more than :data:`MAX_EXPANSION` times (real
  model parameters barely compress; zeros do);
* a JSON header over :data:`MAX_META_BYTES`, nested deeper than
  :data:`MAX_META_DEPTH`, with fields other than the format's, or holding
  anything but plain JSON values (no NaN, integers below 2^53);
* more than :data:`MAX_MEMBERS` members, :data:`MAX_TOTAL_BYTES` in all,
  or labels longer than :data:`MAX_LABEL_CHARS` characters.

Every problem is a ``ValueError`` that names the file (and the member),
never a ``MemoryError``, ``RecursionError``, ``TypeError`` or
``OverflowError``.
"""

from __future__ import annotations

import json
import math
import os
import re
import reprlib
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ._atomic import atomic_write
from ._progress import one_line

FORMAT_NAME = "gmmfast"
FORMAT_VERSION = 1
_META_KEY = "__meta__"
_META_FIELDS = {"format", "format_version", "kind", "gmmfast_version", "params"}

#: A member may decompress to at most this many times its compressed size
#: (plus :data:`_SMALL_MEMBER` bytes, so that small arrays of zeros pass).
#: gmmfast writes members uncompressed (ratio 1); a re-compressed model's
#: float parameters compress by 2-3x at most (structural zeros of
#: triangular factors, dead pixels), while deflate reaches ~1000x on zeros.
MAX_EXPANSION = 50
_SMALL_MEMBER = 1 << 20
#: The JSON header: at most this many bytes (as stored, UCS-4) and this nesting depth.
MAX_META_BYTES = 4 << 20
MAX_META_DEPTH = 16
#: At most this many members (a classifier has 4 per class and 3 more).
MAX_MEMBERS = 1 << 16
#: At most this many bytes of arrays in all (a 784-pixel, 100-component
#: full-covariance mixture is 0.5 GB: its covariances, K D^2 8 bytes; files
#: written before the factors were derived on load hold both, 1 GB), also
#: refused at save so no file is written that cannot be read back, and
#: text labels of at most
#: :data:`MAX_LABEL_CHARS` characters: sizes beyond are implausible for a
#: model file, whatever the rest of the file says.
MAX_TOTAL_BYTES = 8 << 30
MAX_LABEL_CHARS = 1024
#: Integers in the JSON header: below 2^53 in magnitude (exact as floats, fit in int64).
_MAX_JSON_INT = 1 << 53
_NPY_VERSIONS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
_ALLOWED_KINDS = "biufU"  # bool, integers, floats, unicode labels
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
    TypeError,
    KeyError,
    IndexError,
    SyntaxError,
    RecursionError,
)

#: What :func:`load_npz`'s ``expected`` gets and returns: the header's
#: ``params`` and each member's declared ``(dtype, shape)``; it returns the
#: exact shape of every member the file may hold (a member it leaves out is
#: refused as unknown; one it lists but the file lacks is left for the
#: caller to report as missing), or raises ``ValueError``.
Expected = Callable[
    [dict[str, Any], dict[str, tuple[np.dtype, tuple[int, ...]]]], dict[str, tuple[int, ...]]
]


def save_npz(
    path: str | os.PathLike, kind: str, params: dict[str, Any], arrays: dict[str, np.ndarray]
) -> None:
    """Write a model file at exactly ``path`` (no suffix is appended), atomically.

    The members are stored uncompressed (``np.savez``): loading is then one
    copy per array, and any member that expands on decompression is, by
    construction, not one gmmfast wrote.
    """
    from .._version import __version__

    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "gmmfast_version": __version__,
        "params": params,
    }
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    total = sum(value.nbytes for value in payload.values())
    if total > MAX_TOTAL_BYTES:
        raise ValueError(
            f"{path}: the model's arrays take {total} bytes, over the {MAX_TOTAL_BYTES}-byte bound "
            "that loading enforces; such a file could not be read back."
        )
    for name, value in payload.items():
        if value.dtype.kind not in _ALLOWED_KINDS:  # numbers and unicode labels: never objects
            raise ValueError(
                f"Cannot save {name!r}: dtype {value.dtype} is neither numeric nor text."
            )
    try:
        check_json_values(
            meta
        )  # what the loader would refuse (a NaN, a huge integer) is refused here
        text = json.dumps(meta)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"Cannot save to {path}: the parameters are not plain JSON values ({exc})."
        ) from None
    with atomic_write(path) as fh:
        np.savez(fh, **{_META_KEY: np.array(text)}, **payload)


def model_kind(path: str | os.PathLike) -> str | None:
    """The model kind recorded in a gmmfast model file, or None if it has none (or is unreadable).

    Reads the JSON header only, with the same bounds as :func:`load_npz`.
    """
    try:
        with _Archive(path) as archive:
            meta = archive.meta()
    except (ValueError, OSError):
        return None
    kind = meta.get("kind")
    return kind if isinstance(kind, str) else None


def load_npz(
    path: str | os.PathLike, kind: str, expected: Expected | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a model file written by ``save_npz``; returns ``(params, arrays)``.

    Parameters
    ----------
    path : str or os.PathLike
    kind : str
        The model kind the file must hold.
    expected : callable, optional
        ``expected(params, headers) -> {member: shape}`` (see
        :data:`Expected`): the members the file may hold and their exact
        shapes. Without it every numeric member is read (still within the
        size and expansion bounds).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a gmmfast model of this ``kind``, was written by
        a newer format version, holds object arrays, unknown members or
        members of the wrong shape, or is corrupt, truncated or out of
        bounds (see the module docstring). The message names the file.
    """
    with _Archive(path) as archive:
        meta = archive.meta()
        if meta.get("kind") != kind:
            raise ValueError(f"{path}: holds a {meta.get('kind')!r} model, expected {kind!r}.")
        params = meta.get("params", {})
        if not isinstance(params, dict):
            raise ValueError(f"{path}: malformed header: 'params' is not a mapping.")
        headers = {
            name: (dtype, shape)
            for name, (dtype, shape, _) in archive.headers.items()
            if name != _META_KEY
        }
        if expected is not None:
            try:
                shapes = expected(params, headers)
            except ValueError as exc:
                raise ValueError(exc if str(path) in str(exc) else f"{path}: {exc}") from None
            except (TypeError, KeyError, IndexError, OverflowError) as exc:
                raise ValueError(
                    f"{path}: malformed model file ({type(exc).__name__}: {exc})."
                ) from None
            for name, (_, shape) in headers.items():
                if name not in shapes:
                    raise ValueError(
                        f"{path}: unknown member {name!r} (not part of a {kind} model file)."
                    )
                if tuple(shape) != tuple(shapes[name]):
                    raise ValueError(
                        f"{path}: array {name!r} has shape {tuple(shape)}, expected {tuple(shapes[name])}."
                    )
        arrays = {name: archive.read(name) for name in headers}
    return dict(params), arrays


def require(
    arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...], path: Any
) -> np.ndarray:
    """Fetch ``arrays[name]`` as finite float64 of ``shape`` or raise ``ValueError``."""
    if name not in arrays:
        raise ValueError(f"{path}: missing array {name!r}.")
    value = arrays[name]
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{path}: array {name!r} has non-numeric dtype {value.dtype}.")
    if value.shape != tuple(shape):
        raise ValueError(
            f"{path}: array {name!r} has shape {value.shape}, expected {tuple(shape)}."
        )
    value = value.astype(np.float64)
    if not np.isfinite(value).all():
        raise ValueError(f"{path}: array {name!r} contains NaN or infinity.")
    return value


def json_depth_ok(text: str, max_depth: int = MAX_META_DEPTH) -> bool:
    """Whether the JSON ``text`` nests arrays and objects at most ``max_depth`` deep (strings skipped).

    Checked before ``json.loads``, whose recursive parser would otherwise
    end a deeply nested header in ``RecursionError``.
    """
    depth = 0
    for token in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif char in "]}":
            depth -= 1
    return True


def check_json_values(value: Any, where: str = "header") -> None:
    """Refuse anything but plain JSON values: string keys, integers below 2^53, floats but NaN.

    A header's huge integer reaches numpy or ``range`` as an
    ``OverflowError``; a NaN passes every range check. Infinities
    (``Infinity``, ``1e999``) are left to each parameter's own check
    (``check_scalar`` wants finite numbers; a clip bound may be infinite).
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string.")
            check_json_values(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_json_values(item, f"{where}[{i}]")
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if abs(value) >= _MAX_JSON_INT:
            raise ValueError(
                f"{where}: integer of {len(str(abs(value)))} digits is out of range (at most 2^53)."
            )
    elif isinstance(value, float):
        if math.isnan(value):  # infinities are allowed: clip=(0, inf) is a valid parameter
            raise ValueError(f"{where}: NaN is not a number a model file may hold.")
    else:
        raise ValueError(f"{where}: {type(value).__name__} is not a JSON value.")


class _Archive:
    """An ``.npz`` opened for bounded reading: directory and ``.npy`` headers checked on open.

    ``headers`` maps each member's key (its name without ``.npy``) to
    ``(dtype, shape, ZipInfo)``; :meth:`meta` reads the JSON header and
    :meth:`read` one array, each only after its declared size was checked.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path
        # os.path and zipfile take an int as a file descriptor, and zipfile closes it.
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"path must be a file path (str or os.PathLike); got {path!r}.")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such model file.")
        if os.path.isdir(path):
            raise ValueError(f"{path}: is a directory, not a model file.")
        try:
            self.size = os.path.getsize(path)
            if not zipfile.is_zipfile(path):
                raise ValueError(
                    f"{path}: not a .npz model file (not a zip archive; .npy and other formats "
                    "are not model files)."
                )
            self._check_member_count()
            self.zip = zipfile.ZipFile(path)
        except ValueError as exc:
            if str(path) in str(exc):  # ours
                raise
            raise ValueError(
                f"{path}: not a readable .npz model file ({one_line(exc, 150)})."
            ) from None
        except _READ_ERRORS as exc:
            raise ValueError(
                f"{path}: not a readable .npz model file ({one_line(exc, 150)})."
            ) from None
        try:
            self.headers = self._read_headers()
        except BaseException:
            self.zip.close()
            raise

    def __enter__(self) -> "_Archive":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.zip.close()

    def _check_member_count(self) -> None:
        """Refuse archives with absurdly many members before ``ZipFile`` builds an object for each."""
        read_end = getattr(
            zipfile, "_EndRecData", None
        )  # private, but there since Python 2; else ZipFile counts
        if read_end is None:
            return
        with open(self.path, "rb") as fh:
            end = read_end(fh)  # the end-of-central-directory record (what ZipFile reads first)
        if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:
            raise ValueError(
                f"{self.path}: {end[zipfile._ECD_ENTRIES_TOTAL]} members; a model file has at most {MAX_MEMBERS}."
            )

    def _read_headers(self) -> dict[str, tuple[np.dtype, tuple[int, ...], zipfile.ZipInfo]]:
        path = self.path
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ValueError(
                f"{path}: {len(infos)} members; a model file has at most {MAX_MEMBERS}."
            )
        headers: dict[str, tuple[np.dtype, tuple[int, ...], zipfile.ZipInfo]] = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or "/" in name or name.startswith("."):
                raise ValueError(
                    f"{path}: member {name!r} is not an array of a model file (.npz members are NAME.npy)."
                )
            key = name[:-4]
            if key in headers:
                raise ValueError(f"{path}: member {key!r} appears twice.")
            if info.flag_bits & 0x1:
                raise ValueError(f"{path}: member {key!r} is encrypted.")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValueError(f"{path}: member {key!r} uses an unsupported compression method.")
            if info.header_offset + info.compress_size > self.size:
                raise ValueError(
                    f"{path}: member {key!r} claims {info.compress_size} compressed bytes, more than "
                    "the file holds (truncated or corrupt)."
                )
            if info.file_size > MAX_EXPANSION * info.compress_size + _SMALL_MEMBER:
                raise ValueError(
                    f"{path}: member {key!r} would decompress from {info.compress_size} to "
                    f"{info.file_size} bytes, out of proportion for model parameters (a zip bomb?)."
                )
            dtype, shape, header_len = self._npy_header(info, key)
            if (
                dtype.hasobject
                or dtype.kind not in _ALLOWED_KINDS
                or dtype.fields is not None
                or dtype.subdtype
            ):
                what = "an object array (pickled data)" if dtype.hasobject else f"dtype {dtype}"
                raise ValueError(
                    f"{path}: member {key!r} holds {what}; gmmfast model files contain numeric "
                    "arrays (and text labels) only and are never unpickled."
                )
            if any(not isinstance(d, int) or d < 0 for d in shape):
                raise ValueError(f"{path}: member {key!r} declares an invalid shape {shape!r}.")
            declared = header_len + math.prod(shape) * dtype.itemsize
            if declared != info.file_size:
                raise ValueError(
                    f"{path}: member {key!r} declares shape {shape} of {dtype} ({declared} bytes with "
                    f"its header) but holds {info.file_size} bytes (corrupt or forged)."
                )
            if dtype.kind == "U" and key != _META_KEY and dtype.itemsize > 4 * MAX_LABEL_CHARS:
                raise ValueError(
                    f"{path}: member {key!r} holds strings of {dtype.itemsize // 4} characters, "
                    f"over the {MAX_LABEL_CHARS}-character limit of a label."
                )
            headers[key] = (dtype, tuple(shape), info)
        total = sum(info.file_size for _, _, info in headers.values())
        if total > MAX_TOTAL_BYTES:
            raise ValueError(
                f"{path}: declares {total} bytes of arrays, over the {MAX_TOTAL_BYTES}-byte "
                "limit of a model file."
            )
        return headers

    def _npy_header(self, info: zipfile.ZipInfo, key: str) -> tuple[np.dtype, tuple[int, ...], int]:
        """The dtype, shape and header length of a member, reading its ``.npy`` header only."""
        try:
            with self.zip.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version not in _NPY_VERSIONS:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, fortran_order, dtype = _NPY_VERSIONS[version](fh, max_header_size=10000)
                header_len = fh.tell()
        except _READ_ERRORS + (ValueError,) as exc:
            raise ValueError(
                f"{self.path}: member {key!r} is not a readable .npy array ({one_line(exc, 150)})."
            ) from None
        if not isinstance(shape, tuple) or not isinstance(dtype, np.dtype):
            raise ValueError(f"{self.path}: member {key!r} has a malformed .npy header.")
        return dtype, shape, header_len

    def read(self, key: str) -> np.ndarray:
        """One array, whose declared size was checked against the member's (bounded decompression)."""
        dtype, shape, info = self.headers[key]
        try:
            with self.zip.open(info) as fh:
                array = np.lib.format.read_array(fh, allow_pickle=False, max_header_size=10000)
                if fh.read(1):
                    raise ValueError("trailing bytes after the array")
        except _READ_ERRORS + (ValueError,) as exc:
            raise ValueError(
                f"{self.path}: member {key!r} is corrupt or truncated ({one_line(exc, 150)})."
            ) from None
        if (
            array.dtype != dtype or array.shape != shape
        ):  # the zip's local header told another story
            raise ValueError(
                f"{self.path}: member {key!r} is corrupt (its header changed while reading)."
            )
        return array

    def meta(self) -> dict[str, Any]:
        """The JSON header, checked for size, nesting, value types, format and version."""
        path = self.path
        if _META_KEY not in self.headers:
            raise ValueError(f"{path}: not a gmmfast model file (no {_META_KEY} entry).")
        dtype, shape, info = self.headers[_META_KEY]
        if dtype.kind != "U" or shape != ():
            raise ValueError(
                f"{path}: malformed {_META_KEY} entry (dtype {dtype}, shape {shape}; expected one string)."
            )
        if info.file_size > MAX_META_BYTES:
            raise ValueError(
                f"{path}: the {_META_KEY} header is {info.file_size} bytes, over the "
                f"{MAX_META_BYTES}-byte limit of a model file's header."
            )
        text = str(self.read(_META_KEY))
        if not json_depth_ok(text):
            raise ValueError(
                f"{path}: the {_META_KEY} header nests deeper than {MAX_META_DEPTH} levels."
            )
        try:
            meta = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError(
                f"{path}: the {_META_KEY} header is not valid JSON ({one_line(exc, 150)})."
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ValueError(f"{path}: not a gmmfast model file.")
        try:
            check_json_values(meta)
        except ValueError as exc:
            raise ValueError(f"{path}: malformed {_META_KEY} {exc}") from None
        version = meta.get("format_version")
        if (
            not isinstance(version, int)
            or isinstance(version, bool)
            or version > FORMAT_VERSION
            or version < 1
        ):
            raise ValueError(
                f"{path}: format version {version!r} is not supported by this gmmfast "
                f"(reads versions 1 to {FORMAT_VERSION})."
            )
        unknown = sorted(
            set(meta) - _META_FIELDS
        )  # after the version: a newer format may add fields
        if unknown:
            raise ValueError(f"{path}: unknown {_META_KEY} field(s) {reprlib.repr(unknown)}.")
        return meta
