"""VAE model files: torch.save dictionaries of tensors and plain values, read with weights_only=True."""
from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np
import torch
from torch import nn

from ..utils._estimator import BaseEstimator

FORMAT_NAME = "gmmfast-torch"


FORMAT_VERSION = 1


def _plain(value: Any) -> Any:
    """Constructor parameters as plain Python values for a model file."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _write_model(path: str | os.PathLike, kind: str, config: dict, state: dict, extra: dict) -> None:
    from .._version import __version__

    payload = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": kind, "gmmfast_version": __version__,
        "config": config, "state_dict": {k: v.detach().cpu().clone() for k, v in state.items()},
    }
    payload.update(extra)
    torch.save(payload, path)


def _read_model(path: str | os.PathLike, kind: str) -> dict:
    """Load and check the envelope of a model file written by ``_write_model``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if names and all(name.endswith(".npy") and "/" not in name for name in names):
            raise ValueError(f"{path}: an .npz archive (a GMM model?), not a gmmfast VAE model file "
                             "(those are written by ConvVAE.save and gmmfast vae train).")
    except zipfile.BadZipFile:
        pass  # torch.load says what it is not
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, a pickle of other objects, truncated...
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a gmmfast VAE model file ({first}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a gmmfast VAE model file.")
    version = payload.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version!r} is not supported by this gmmfast "
                         f"(reads versions 1 to {FORMAT_VERSION}).")
    if payload.get("kind") != kind:
        raise ValueError(f"{path}: holds a {payload.get('kind')!r} model, expected {kind!r}.")
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise ValueError(f"{path}: missing or malformed {key!r}.")
    for name, tensor in payload["state_dict"].items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{path}: state dict entry {name!r} is not a tensor.")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{path}: state dict entry {name!r} contains NaN or infinity.")
    return payload


def _load_state(module: nn.Module, state: dict, path: Any) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(f"{path}: the weights do not match the saved configuration ({detail}).") from None


def _history(history: Any, path: Any) -> dict[str, list[float]]:
    if not isinstance(history, dict):
        raise ValueError(f"{path}: malformed 'history'.")
    out = {}
    for key, values in history.items():
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            raise ValueError(f"{path}: malformed history entry {key!r}.")
        out[str(key)] = [float(v) for v in values]
    return out


_FIT_RESULTS = ("history_", "best_epoch_", "best_val_loss_", "n_epochs_", "seconds_per_epoch_",
                "interrupted_", "n_train_", "n_val_")


def _saved_config(model: BaseEstimator, exclude: tuple[str, ...]) -> dict[str, Any]:
    """Constructor parameters as plain values for a model file (a RandomState is not saved)."""
    config = {name: _plain(value) for name, value in model.get_params(deep=False).items() if name not in exclude}
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
            setattr(model, name, fitted.get(name))
