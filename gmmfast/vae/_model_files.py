"""VAE model files: torch.save dictionaries of tensors and plain values, read with weights_only=True."""

from __future__ import annotations

import os
import reprlib
import struct
import zipfile
import zlib
from typing import Any

import numpy as np
import torch
from torch import nn

from ..utils._atomic import atomic_write
from ..utils._estimator import BaseEstimator
from ..utils._progress import one_line

FORMAT_NAME = "gmmfast-torch"


FORMAT_VERSION = 1


def _plain(value: Any) -> Any:
    """Constructor parameters as plain Python values for a model file."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _write_model(
    path: str | os.PathLike, kind: str, config: dict, state: dict, extra: dict
) -> None:
    from .._version import __version__

    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "gmmfast_version": __version__,
        "config": config,
        "state_dict": {k: v.detach().cpu().clone() for k, v in state.items()},
    }
    payload.update(extra)
    with atomic_write(path) as fh:  # torch.save in place would truncate the old model first
        torch.save(payload, fh)


def _read_model(path: str | os.PathLike, kind: str) -> dict:
    """Load and check the envelope of a model file written by ``_write_model``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file.")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a model file.")
    _check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, a pickle of other objects, truncated...
        if "Weights only load failed" in str(exc):
            first = "it holds objects other than tensors and plain values; such files are never unpickled"
        else:
            first = (
                str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            )
        raise ValueError(f"{path}: not a gmmfast VAE model file ({first}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a gmmfast VAE model file.")
    version = payload.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {version!r} is not supported by this gmmfast "
            f"(reads versions 1 to {FORMAT_VERSION})."
        )
    if payload.get("kind") != kind:
        raise ValueError(f"{path}: holds a {payload.get('kind')!r} model, expected {kind!r}.")
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise ValueError(f"{path}: missing or malformed {key!r}.")
    for name, tensor in payload["state_dict"].items():
        if not isinstance(name, str):
            raise ValueError(f"{path}: state dict key {reprlib.repr(name)} is not a string.")
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{path}: state dict entry {name!r} is not a tensor.")
        if not tensor.is_floating_point():
            raise ValueError(
                f"{path}: state dict entry {name!r} has dtype {tensor.dtype}, not a real float."
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{path}: state dict entry {name!r} contains NaN or infinity.")
    return payload


#: Bounds on what a VAE model file may hold, checked before torch reads it:
#: members, the pickle's size, and how much a member may expand (torch
#: writes members uncompressed; anything deflated beyond this is a bomb).
MAX_MEMBERS = 4096
MAX_PICKLE_BYTES = 16 << 20
MAX_EXPANSION = 50
_SMALL_MEMBER = 1 << 20
#: Bounds on a configuration read from a file, checked before any network
#: is built (the network itself is then sized against the file's tensors).
CONFIG_BOUNDS = {
    "latent_dim": 4096,
    "hidden_units": 65536,
    "channel": 4096,
    "n_convolutions": 16,
    "image_side": 4096,
    "n_clusters": 10000,
    "n_dense_layers": 16,
}


def _check_archive(path: str | os.PathLike) -> None:
    """Bound a torch model file (a zip archive) before ``torch.load`` decompresses or allocates anything.

    ``torch.load`` reads every record whole; a deflated record of zeros
    expands a thousandfold, and the pickle itself is parsed in memory.
    """
    size = os.path.getsize(path)
    try:
        if not zipfile.is_zipfile(
            path
        ):  # torch's legacy format sizes storages from its pickle, before reading
            raise ValueError(
                f"{path}: not a gmmfast VAE model file (not a zip archive, as torch.save writes)."
            )
        read_end = getattr(
            zipfile, "_EndRecData", None
        )  # private: skipped where absent (infolist is bounded below)
        with open(path, "rb") as fh:
            end = read_end(fh) if read_end is not None else None
        if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:
            raise ValueError(
                f"{path}: {end[zipfile._ECD_ENTRIES_TOTAL]} members, more than a VAE model file has."
            )
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except ValueError as exc:
        if str(path) in str(exc):  # ours
            raise
        raise ValueError(f"{path}: not a readable VAE model file ({one_line(exc, 120)}).") from None
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        struct.error,
        NotImplementedError,
        RuntimeError,
        OverflowError,
    ) as exc:
        raise ValueError(f"{path}: not a readable VAE model file ({one_line(exc, 120)}).") from None
    if len(infos) > MAX_MEMBERS:
        raise ValueError(f"{path}: {len(infos)} members, more than a VAE model file has.")
    names = [info.filename for info in infos]
    if names and all(name.endswith(".npy") and "/" not in name for name in names):
        raise ValueError(
            f"{path}: an .npz archive (a GMM model?), not a gmmfast VAE model file "
            "(those are written by ConvVAE.save and gmmfast vae train)."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicated members (corrupt or forged).")
    for info in infos:
        if info.header_offset + info.compress_size > size:
            raise ValueError(
                f"{path}: member {info.filename!r} claims more bytes than the file holds (truncated?)."
            )
        if info.file_size > MAX_EXPANSION * info.compress_size + _SMALL_MEMBER:
            raise ValueError(
                f"{path}: member {info.filename!r} would decompress from {info.compress_size} to "
                f"{info.file_size} bytes (a zip bomb?)."
            )
        if info.filename.endswith(".pkl") and info.file_size > MAX_PICKLE_BYTES:
            raise ValueError(
                f"{path}: its pickle {info.filename!r} is {info.file_size} bytes, over the "
                f"{MAX_PICKLE_BYTES}-byte limit of a model file's."
            )
    _check_crcs(path)


def _check_crcs(path: str | os.PathLike) -> None:
    """Read every member through ``zipfile``, which checks its CRC-32 (1 MiB at a time).

    ``torch.load`` does not check them: a flipped bit in a weight would load
    silently as another model. Sizes were bounded by :func:`_check_archive`.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as fh:
                    while fh.read(1 << 20):
                        pass
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        struct.error,
        NotImplementedError,
        RuntimeError,
        OverflowError,
        zlib.error,
        ValueError,
    ) as exc:
        raise ValueError(f"{path}: corrupt VAE model file ({one_line(exc, 120)}).") from None


def _bounded_int(value: Any, name: str, upper: int, path: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not 1 <= value <= upper
    ):
        raise ValueError(
            f"{path}: bad configuration: {name} must be an integer in 1..{upper}; got {reprlib.repr(value)}."
        )
    return int(value)


def _check_config(config: Any, image_shape: Any, path: Any) -> dict:
    """A VAE configuration from a file, checked for keys, types and bounds before any network is built.

    A file claiming ``hidden_units=100000`` would otherwise make ``load``
    allocate GBs of weights before finding they do not match the file's.
    """
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise ValueError(f"{path}: missing or malformed 'config'.")
    if not (isinstance(image_shape, list) and len(image_shape) == 2):
        raise ValueError(f"{path}: missing or malformed 'image_shape'.")
    for side in image_shape:
        _bounded_int(side, "image_shape", CONFIG_BOUNDS["image_side"], path)
    _bounded_int(config.get("latent_dim", 2), "latent_dim", CONFIG_BOUNDS["latent_dim"], path)
    _bounded_int(
        config.get("hidden_units", 512), "hidden_units", CONFIG_BOUNDS["hidden_units"], path
    )
    channels = config.get("channels", (32, 64, 128, 128, 256))
    if (
        not isinstance(channels, (list, tuple))
        or not 1 <= len(channels) <= CONFIG_BOUNDS["n_convolutions"]
    ):
        raise ValueError(
            f"{path}: bad configuration: channels must be a list of 1 to "
            f"{CONFIG_BOUNDS['n_convolutions']} integers; got {reprlib.repr(channels)}."
        )
    for c in channels:
        _bounded_int(c, "channels", CONFIG_BOUNDS["channel"], path)
    strides = config.get("strides")
    if strides is not None and (
        not isinstance(strides, (list, tuple))
        or len(strides) != len(channels)
        or not all(type(s) is int and s in (1, 2) for s in strides)
    ):
        raise ValueError(
            f"{path}: bad configuration: strides must be None or 1 or 2 per convolution; "
            f"got {reprlib.repr(strides)}."
        )
    architecture = config.get("architecture", "conv")  # files from before the option: conv
    if architecture not in ("conv", "dense"):
        raise ValueError(
            f"{path}: bad configuration: architecture must be 'conv' or 'dense'; "
            f"got {reprlib.repr(architecture)}."
        )
    sizes = config.get("dense_sizes", (500, 500, 2000))
    if (
        not isinstance(sizes, (list, tuple))
        or not 1 <= len(sizes) <= CONFIG_BOUNDS["n_dense_layers"]
    ):
        raise ValueError(
            f"{path}: bad configuration: dense_sizes must be a list of 1 to "
            f"{CONFIG_BOUNDS['n_dense_layers']} integers; got {reprlib.repr(sizes)}."
        )
    for size in sizes:
        _bounded_int(size, "dense_sizes", CONFIG_BOUNDS["hidden_units"], path)
    dropout = config.get("dropout", 0.2)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(
            f"{path}: bad configuration: dropout must be a number in [0, 1); got {dropout!r}."
        )
    return config


def _build_checked(build: Any, state: dict, path: Any) -> nn.Module:
    """``build()`` the network, first on the meta device (no memory): its parameter
    names and shapes must be the file's, so the real one is no larger than the file's tensors."""
    try:
        with torch.device("meta"):
            skeleton = build()
    except (RuntimeError, OverflowError) as exc:
        raise ValueError(f"{path}: bad configuration ({one_line(exc, 200)}).") from None
    wanted = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    given = {name: tuple(t.shape) for name, t in state.items()}
    if wanted != given:
        missing = sorted(set(wanted) - set(given))[:3]
        extra = sorted(set(given) - set(wanted))[:3]
        wrong = [name for name in wanted if name in given and wanted[name] != given[name]][:3]
        detail = "; ".join(
            part
            for part in (
                f"missing {missing}" if missing else "",
                f"unexpected {extra}" if extra else "",
                ", ".join(f"{n} is {given[n]}, the configuration needs {wanted[n]}" for n in wrong),
            )
            if part
        )
        raise ValueError(
            f"{path}: the weights do not match the saved configuration ({detail[:300]})."
        )
    return build()


def _load_state(module: nn.Module, state: dict, path: Any) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = one_line(exc, 300)
        raise ValueError(
            f"{path}: the weights do not match the saved configuration ({detail})."
        ) from None


def _history(history: Any, path: Any) -> dict[str, list[float]]:
    if not isinstance(history, dict):
        raise ValueError(f"{path}: malformed 'history'.")
    out = {}
    for key, values in history.items():
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            raise ValueError(f"{path}: malformed history entry {key!r}.")
        out[str(key)] = [float(v) for v in values]
    return out


_FIT_RESULTS = (
    "history_",
    "best_epoch_",
    "best_val_loss_",
    "n_epochs_",
    "seconds_per_epoch_",
    "interrupted_",
    "n_train_",
    "n_val_",
)


def _saved_config(model: BaseEstimator, exclude: tuple[str, ...]) -> dict[str, Any]:
    """Constructor parameters as plain values for a model file (a RandomState is not saved)."""
    config = {
        name: _plain(value)
        for name, value in model.get_params(deep=False).items()
        if name not in exclude
    }
    if not isinstance(config["random_state"], (int, type(None))):
        config["random_state"] = None
    return config


def _fit_results(model: Any) -> dict[str, Any]:
    """The ``_FIT_RESULTS`` attributes but the history, as plain values."""
    return {name: _plain(getattr(model, name)) for name in _FIT_RESULTS if name != "history_"}


def _restore_fit_results(model: Any, payload: dict, path: Any) -> None:
    """Set what :func:`_fit_results` saved (None where a file lacks it)."""
    fitted = payload.get("fitted", {})
    if not isinstance(fitted, dict):
        raise ValueError(f"{path}: malformed 'fitted'.")
    for name in _FIT_RESULTS:
        if name != "history_":
            value = fitted.get(name)
            if value is not None and not isinstance(value, (bool, int, float)):
                raise ValueError(
                    f"{path}: malformed 'fitted' entry {name!r} ({type(value).__name__})."
                )
            setattr(model, name, value)


# ---------------------------------------------------------------------------
# A torch module inside a gmmfast .npz model file (DeepClustering's format):
# its state dict as plain float arrays named PREFIX + parameter name, the
# shapes checked against a skeleton built on the meta device before a byte is read.


def module_arrays(module: nn.Module, prefix: str) -> dict[str, np.ndarray]:
    """A module's state dict as float32 numpy arrays keyed ``prefix + name`` (for ``save_npz``)."""
    return {
        prefix + name: tensor.detach().cpu().numpy().astype(np.float32, copy=True)
        for name, tensor in module.state_dict().items()
    }


def module_shapes(build: Any, prefix: str) -> dict[str, tuple[int, ...]]:
    """The shape of every array of ``build()``'s state dict, keyed ``prefix + name``.

    The module is built on the meta device: nothing is allocated, so a
    file's header cannot make this expensive (its sizes are bounded first).
    """
    with torch.device("meta"):
        skeleton = build()
    return {prefix + name: tuple(t.shape) for name, t in skeleton.state_dict().items()}


def module_from_arrays(
    build: Any, arrays: dict[str, np.ndarray], prefix: str, path: Any
) -> nn.Module:
    """``build()`` the module and load the ``prefix`` arrays into it, each checked finite."""
    state = {}
    for key, value in arrays.items():
        if not key.startswith(prefix):
            continue
        if value.dtype.kind != "f":
            raise ValueError(f"{path}: array {key!r} has dtype {value.dtype}, not a real float.")
        if not np.isfinite(value).all():
            raise ValueError(f"{path}: array {key!r} contains NaN or infinity.")
        state[key[len(prefix) :]] = torch.from_numpy(np.ascontiguousarray(value, np.float32))
    module = _build_checked(build, state, path)
    _load_state(module, state, path)
    return module
