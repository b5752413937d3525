"""Model files: ``.npz`` archives read with ``allow_pickle=False``.

Every file carries a JSON header (``__meta__``, a unicode array) with the
format name and version, the model kind and its constructor parameters;
the rest are plain numeric arrays. Nothing is ever unpickled.
"""
from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

FORMAT_NAME = "gmmfast"
FORMAT_VERSION = 1
_META_KEY = "__meta__"


def save_npz(path: str | os.PathLike, kind: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write a model file at exactly ``path`` (no suffix is appended)."""
    from .._version import __version__

    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "gmmfast_version": __version__,
        "params": params,
    }
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in payload.items():
        if value.dtype.kind not in "biufU":  # numbers and unicode labels: never objects
            raise ValueError(f"Cannot save {name!r}: dtype {value.dtype} is neither numeric nor text.")
    with open(path, "wb") as fh:
        np.savez(fh, **{_META_KEY: np.array(json.dumps(meta))}, **payload)


def model_kind(path: str | os.PathLike) -> str | None:
    """The model kind recorded in a gmmfast model file, or None if it has none."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _META_KEY not in archive.files:
                return None
            meta = json.loads(str(archive[_META_KEY]))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):
        return None
    return meta.get("kind") if isinstance(meta, dict) else None


def load_npz(path: str | os.PathLike, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a model file written by ``save_npz``; returns ``(params, arrays)``.

    Raises
    ------
    ValueError
        If the file is not a gmmfast model of this ``kind``, was written by
        a newer format version, or holds object arrays.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a .npz model file (not a zip archive; .npy and other formats are not model files).")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _META_KEY not in archive.files:
                raise ValueError(f"{path}: not a gmmfast model file (no {_META_KEY} entry).")
            meta = json.loads(str(archive[_META_KEY]))
            arrays = {name: archive[name] for name in archive.files if name != _META_KEY}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable .npz model file ({exc}).") from exc
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise ValueError(
                f"{path}: holds an object array; gmmfast model files contain "
                "numeric arrays only and are never unpickled."
            ) from exc
        raise
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a gmmfast model file.")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"{path}: format version {version!r} is not supported by this gmmfast "
            f"(reads versions 1 to {FORMAT_VERSION})."
        )
    if meta.get("kind") != kind:
        raise ValueError(f"{path}: holds a {meta.get('kind')!r} model, expected {kind!r}.")
    return dict(meta.get("params", {})), arrays


def require(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...], path: Any) -> np.ndarray:
    """Fetch ``arrays[name]`` as finite float64 of ``shape`` or raise ``ValueError``."""
    if name not in arrays:
        raise ValueError(f"{path}: missing array {name!r}.")
    value = arrays[name]
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{path}: array {name!r} has non-numeric dtype {value.dtype}.")
    if value.shape != tuple(shape):
        raise ValueError(f"{path}: array {name!r} has shape {value.shape}, expected {tuple(shape)}.")
    value = value.astype(np.float64)
    if not np.isfinite(value).all():
        raise ValueError(f"{path}: array {name!r} contains NaN or infinity.")
    return value
