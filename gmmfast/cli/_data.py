"""Reading images and labels for the commands: .npz archives and IDX directories, scaled to [0, 1]."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..datasets import load_idx_dir, load_mnist
from ..mixture._missing import pixel_mask
from ..utils._progress import one_line
from ._common import UsageError

_GENERIC_IMAGES = ("images", "x", "X", "data", "imgs", "arr_0")


_GENERIC_LABELS = ("labels", "y", "Y", "targets", "label", "arr_1")


def _split_keys(split: str, labels: bool) -> tuple[str, ...]:
    if labels:
        return (f"y_{split}", f"Y_{split}", f"{split}_labels", f"labels_{split}")
    return (f"x_{split}", f"X_{split}", f"{split}_images", f"images_{split}")


def data_keys(split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(image keys, label keys) looked for in an .npz, in order, for ``split``."""
    other = "test" if split == "train" else "train"
    return (
        _GENERIC_IMAGES + _split_keys(split, False) + _split_keys(other, False),
        _GENERIC_LABELS + _split_keys(split, True) + _split_keys(other, True),
    )


MASKS = ("random", "top", "left", "centre", "nan")


SCALE_THRESHOLD = 10.0


def _read_arrays(
    path: str | Path, split: str, *, need_labels: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw images (n, H, W) or (n, pixels) and labels from an .npz or an IDX
    directory; a channel axis of size 1 ((n, H, W, 1) or (n, 1, H, W)) is dropped."""
    image_keys, label_keys = data_keys(split)
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.is_dir():
        images, labels = load_idx_dir(path, split)
    else:
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                image_key = next((k for k in image_keys if k in keys), None)
                label_key = next((k for k in label_keys if k in keys), None)
                if image_key is None:
                    raise UsageError(
                        f"{path}: no images; expected one of the keys {', '.join(image_keys)} (found {', '.join(keys) or 'none'})"
                    )
                images = archive[image_key]
                labels = archive[label_key] if label_key else None
        except (UsageError, MemoryError):  # too little memory is not a bad file
            raise
        except Exception as exc:  # zip errors, pickled objects, not an npz at all
            raise UsageError(f"{path}: not a readable .npz file ({one_line(exc, 150)})") from None
    if need_labels and labels is None:
        raise UsageError(f"{path}: no labels; expected one of the keys {', '.join(label_keys)}")
    images = np.asarray(images)
    if images.ndim == 4 and 1 in (images.shape[1], images.shape[3]):
        images = images.reshape(images.shape[0], *[n for n in images.shape[1:] if n != 1] or [1, 1])
    if labels is not None and np.ndim(labels) == 2 and 1 in np.shape(labels):
        labels = np.asarray(labels).reshape(-1)
    if images.dtype.kind not in "biuf" or images.ndim not in (2, 3):
        raise UsageError(
            f"{path}: images must be a numeric array of shape (n, H, W) or (n, pixels); got {images.dtype} {images.shape}"
        )
    if len(images) == 0 or images[0].size == 0:
        raise UsageError(f"{path}: no images (shape {images.shape})")
    if labels is not None and len(labels) != len(images):
        raise UsageError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels


def _scaled(images: np.ndarray, path: str | Path = "images") -> np.ndarray:
    """Integer pixels (0..255), or float pixels above ``SCALE_THRESHOLD``, divided by 255.

    Integer pixels outside 0..255 are not 8-bit images: refused (a
    ``UsageError``), rather than scaled into a range no model was trained on.
    """
    if images.dtype.kind == "b":  # a binary image: True is the full intensity
        return images.astype(np.float32)
    if images.dtype.kind in "iu":
        if images.size and (images.min() < 0 or images.max() > 255):
            raise UsageError(
                f"{path}: integer pixel values from {images.min()} to {images.max()}; "
                "expected 0..255 (or floats in [0, 1])"
            )
        return images.astype(np.float32) / np.float32(255)
    finite = images[np.isfinite(images)]
    if finite.size and finite.max() > SCALE_THRESHOLD:
        images = images / 255.0
    return np.asarray(images, dtype=np.float32 if images.dtype == np.float32 else np.float64)


def load_images(
    path: str | Path, split: str, *, need_labels: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Images as float (n, pixels) in [0, 1], and labels, from an .npz or an IDX directory.

    An IDX directory gives its ``split`` ('train' or 'test'); an .npz file
    its first image and label keys of :func:`data_keys` for that split.
    Integer pixels (0..255) are scaled to [0, 1], as are float pixels
    whose maximum is above ``SCALE_THRESHOLD``.
    """
    images, labels = _read_arrays(path, split, need_labels=need_labels)
    scaled = _scaled(images.reshape(len(images), -1), path)
    finite = scaled[np.isfinite(scaled)]
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        warnings.warn(
            f"{path}: pixel values from {finite.min():.3g} to {finite.max():.3g} after scaling lie "
            "outside [0, 1], the range of the models' training images",
            RuntimeWarning,
            stacklevel=2,
        )
    return scaled, labels


def load_image_stack(
    path: str | Path, split: str, *, need_labels: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Images as float (n, H, W) scaled as in :func:`load_images`; (n, pixels)
    arrays must have a square number of pixels. Must be finite."""
    images, labels = _read_arrays(path, split, need_labels=need_labels)
    if images.ndim == 2:
        side = int(round(np.sqrt(images.shape[1])))
        if side * side != images.shape[1]:
            raise UsageError(
                f"{path}: images of {images.shape[1]} pixels are not square; save them as an (n, H, W) array"
            )
        images = images.reshape(len(images), side, side)
    images = _scaled(images, path)
    if not np.isfinite(images).all():
        raise UsageError(f"{path}: images contain NaN or infinity")
    return images, labels


def make_observed(images: np.ndarray, mask: str, fraction: float, seed: int) -> np.ndarray:
    """Boolean ``observed`` mask (False = missing): NaN in the data, or a
    :func:`gmmfast._missing.pixel_mask` of the given kind."""
    if mask == "nan":
        return ~np.isnan(images)
    try:
        return pixel_mask(images.shape, mask, fraction, seed)
    except ValueError as exc:
        raise UsageError(f"--mask {mask} --fraction {fraction}: {exc}") from None


def load_mnist_or_usage_error(data_dir: str | None, download: bool) -> tuple[np.ndarray, ...]:
    """Full MNIST (train and test) from --data-dir / $GMMFAST_DATA / the cache; download errors as UsageError."""
    try:
        return load_mnist(data_dir, download=download, kind="both")
    except ImportError as exc:  # --download without pooch: the message names the extra
        raise UsageError(f"--download: {exc}") from None
    except RuntimeError as exc:  # every mirror failed: one line per mirror in the message
        raise UsageError(
            "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        ) from None
    except ValueError as exc:
        if "checksum mismatch" not in str(exc) or not data_dir:
            raise
        raise UsageError(
            f"{exc}; for another MNIST-like set (Fashion-MNIST, KMNIST, ...) add --no-checksum"
        ) from None


def load_idx_set(data_dir: str) -> tuple[np.ndarray, ...]:
    """Train and test split of any MNIST-like IDX directory of 28 x 28 images, no checksums, pixels in [0, 1]."""
    arrays = []
    for split in ("train", "test"):
        images, labels = load_image_stack(data_dir, split, need_labels=True)
        if images.shape[1:] != (28, 28):
            raise UsageError(
                f"{data_dir}: the demo needs 28 x 28 images; the {split} images are {images.shape[1:]}"
            )
        arrays += [images.reshape(len(images), -1), np.asarray(labels)]
    return tuple(arrays)
