"""Synthetic clusters that are not round: where a Gaussian mixture should beat k-means.

k-means assigns each point to its nearest centre, so its clusters are the
cells of a Voronoi diagram: convex, split half-way between centres, as if
every cluster were a ball of the same size. Three ways real clusters are
not, each one generator setting of :func:`make_noncircular`:

``'anisotropic'``
    Three round blobs sheared by one linear map: tilted, elongated
    ellipses side by side (k-means cuts across them).
``'unequal'``
    A broad cluster beside two tight ones: k-means moves the boundary to
    half-way and hands the broad cluster's near side to the tight ones.
``'stripes'``
    Three long, thin, parallel stripes: k-means cuts them crosswise.

The parameters are fixed in :data:`NONCIRCULAR_SETTINGS` (and printed in
the demo's report), so that results are comparable across runs and
libraries; only the draw depends on ``random_state``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .utils._validation import check_seed

__all__ = ["NONCIRCULAR_SETTINGS", "make_noncircular"]

#: Bytes per sample of the returned X (two float64) and y (int64), and the most samples
#: drawn (8 GiB): a larger request is a typo, refused before NumPy tries to allocate it.
BYTES_PER_SAMPLE = 24
MAX_SAMPLES = 2**33 // BYTES_PER_SAMPLE

#: Generator parameters of each setting (centres, per-cluster standard
#: deviations along x and y, sample shares, and the linear map applied last).
NONCIRCULAR_SETTINGS: dict[str, dict[str, Any]] = {
    "anisotropic": {
        "centers": [[-4.0, 0.0], [0.0, 0.0], [4.0, 0.0]],
        "std": [[0.4, 3.5], [0.4, 3.5], [0.4, 3.5]],
        "shares": [1 / 3, 1 / 3, 1 / 3],
        "transform": [[1.0, 0.0], [1.2, 1.0]],
    },
    "unequal": {
        "centers": [[0.0, 0.0], [7.0, 3.5], [7.0, -3.5]],
        "std": [[2.5, 2.5], [0.3, 0.3], [0.3, 0.3]],
        "shares": [0.8, 0.1, 0.1],
        "transform": [[1.0, 0.0], [0.0, 1.0]],
    },
    "stripes": {
        "centers": [[0.0, -2.0], [0.0, 0.0], [0.0, 2.0]],
        "std": [[6.0, 0.3], [6.0, 0.3], [6.0, 0.3]],
        "shares": [1 / 3, 1 / 3, 1 / 3],
        "transform": [[1.0, 0.0], [0.0, 1.0]],
    },
}


def make_noncircular(
    kind: str, n_samples: int = 1500, *, random_state: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one of the non-round cluster settings.

    Parameters
    ----------
    kind : {'anisotropic', 'unequal', 'stripes'}
        The setting; its parameters are ``NONCIRCULAR_SETTINGS[kind]``:
        each cluster is Gaussian with its centre and per-axis standard
        deviations, drawn in proportion to its share, then every point is
        mapped by ``transform`` (``x -> transform @ x``).
    n_samples : int, default=1500
        Total number of points (at least one per cluster).
    random_state : int in [0, 2**32 - 1], numpy Generator, RandomState or None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,)
        The cluster of each point, 0, 1 or 2.

    Raises
    ------
    ValueError
        For an unknown ``kind``, an ``n_samples`` that is not an int, below
        the number of clusters or above :data:`MAX_SAMPLES`, or a bad
        ``random_state``.

    Examples
    --------
    >>> from gmmfast.synthetic import NONCIRCULAR_SETTINGS, make_noncircular
    >>> sorted(NONCIRCULAR_SETTINGS)
    ['anisotropic', 'stripes', 'unequal']
    >>> X, y = make_noncircular("stripes", 300, random_state=0)
    >>> X.shape, sorted(set(y.tolist()))
    ((300, 2), [0, 1, 2])
    """
    if not isinstance(kind, str) or kind not in NONCIRCULAR_SETTINGS:
        raise ValueError(f"kind must be one of {sorted(NONCIRCULAR_SETTINGS)}; got {kind!r}.")
    setting = NONCIRCULAR_SETTINGS[kind]
    centers = np.asarray(setting["centers"], dtype=np.float64)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise ValueError(f"n_samples must be an int; got {n_samples!r}.")
    if n_samples < len(centers):
        raise ValueError(f"n_samples must be at least {len(centers)}; got {n_samples}.")
    if n_samples > MAX_SAMPLES:
        raise ValueError(
            f"n_samples must be at most {MAX_SAMPLES} ({BYTES_PER_SAMPLE * MAX_SAMPLES / 2**30:.0f} "
            f"GiB of samples and labels); got {n_samples}."
        )
    n_samples = int(n_samples)
    rng = _generator(random_state)
    shares = np.asarray(setting["shares"], dtype=np.float64)
    counts = np.floor(shares * n_samples).astype(int)
    counts[: n_samples - counts.sum()] += 1  # the remainder, one each from the first cluster
    while (counts == 0).any():  # tiny n: every cluster keeps a point, taken from the largest
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    std = np.asarray(setting["std"], dtype=np.float64)
    X = np.vstack([c + s * rng.standard_normal((n, 2)) for c, s, n in zip(centers, std, counts)])
    X = X @ np.asarray(setting["transform"], dtype=np.float64).T
    y = np.repeat(np.arange(len(centers)), counts)
    return X, y


def _generator(random_state: Any) -> np.random.Generator:
    """A Generator from ``random_state``, checked as everywhere in gmmfast (:func:`check_seed`)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    check_seed(random_state)  # None, an int in [0, 2**32 - 1] or a RandomState; named if not
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    return np.random.default_rng(None if random_state is None else int(random_state))
