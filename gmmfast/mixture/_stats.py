"""Centred sufficient statistics of the M-step, and the one way to combine them.

Every path that fits a mixture reduces its data to the same three numbers
per component before the M-step: the responsibility mass ``counts``
(sum_n r_nk), the weighted ``means`` and the ``scatter`` around those means
(sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T). In-memory EM computes them in one
go; streaming EM blends a batch's statistics into running ones; the Dask
path computes them per block and merges the blocks in a tree. They are
always held centred and in float64, and merged with the pairwise update of
Chan, Golub and LeVeque (1979)::

    n = n_a + n_b
    mu = mu_a + (n_b / n) (mu_b - mu_a)
    S = S_a + S_b + (n_a n_b / n) (mu_b - mu_a)(mu_b - mu_a)^T

never as E[x x^T] - mu mu^T, whose cancellation loses every digit of a
float32 covariance whose mean is large against its spread.

The scatter's shape follows the covariance type: (K, D, D) for ``full``,
the within-component sum (D, D) for ``tied``, the diagonals (K, D) for
``diag`` and ``spherical`` (the spherical average is taken only when the
parameters are formed).

As in scikit-learn, the mass used for means and covariances carries
``10 * eps`` (:data:`MASS_FLOOR`): a component that lost every sample gets
mean 0 and covariance ``reg_covar * I`` instead of NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MASS_FLOOR = 10 * np.finfo(np.float64).eps

_ARRAYS = ("counts", "means", "scatter")


def scatter_shape(covariance_type: str, n_components: int, n_features: int) -> tuple[int, ...]:
    """Shape of the centred scatter held for a covariance type."""
    K, D = n_components, n_features
    return {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K, D)}[covariance_type]


@dataclass(frozen=True)
class SufficientStats:
    """Centred M-step statistics of a Gaussian mixture (see the module docstring).

    Attributes
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    counts : ndarray of shape (n_components,)
        Responsibility mass of each component, sum_n r_nk (no floor added).
    means : ndarray of shape (n_components, n_features)
        sum_n r_nk x_n / (counts + MASS_FLOOR).
    scatter : ndarray
        Weighted scatter around ``means``; shape from :func:`scatter_shape`.
    """

    covariance_type: str
    counts: np.ndarray
    means: np.ndarray
    scatter: np.ndarray

    @property
    def n_components(self) -> int:
        return len(self.counts)

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def total(self) -> float:
        """Total mass: the number of samples (or their weight) summarised."""
        return float(self.counts.sum())

    def check(self) -> None:
        """Raise ``ValueError`` if the arrays disagree with each other."""
        if (
            np.ndim(self.counts) != 1
            or np.ndim(self.means) != 2
            or len(self.means) != len(self.counts)
        ):
            raise ValueError("sufficient statistics: counts and means disagree in shape")
        want = scatter_shape(self.covariance_type, *np.shape(self.means))
        if np.shape(self.scatter) != want:
            raise ValueError(
                f"sufficient statistics: scatter has shape {np.shape(self.scatter)}, "
                f"expected {want} for covariance_type={self.covariance_type!r}"
            )
        for name in _ARRAYS:
            value = getattr(self, name)
            if np.asarray(value).dtype != np.float64 or not np.all(np.isfinite(value)):
                raise ValueError(f"sufficient statistics: {name} must be finite float64")
        if np.any(self.counts < 0):
            raise ValueError("sufficient statistics: counts must be non-negative")

    # ------------------------------------------------------------ algebra
    def scaled(self, factor: float) -> "SufficientStats":
        """The statistics of the same data with every weight multiplied by ``factor``
        (means unchanged; counts and scatter scale)."""
        factor = float(factor)
        return SufficientStats(
            self.covariance_type, self.counts * factor, self.means, self.scatter * factor
        )

    def combine(self, other: "SufficientStats") -> "SufficientStats":
        """Statistics of the union of the two summarised sets (Chan et al.'s update)."""
        if other.covariance_type != self.covariance_type or other.means.shape != self.means.shape:
            raise ValueError("cannot combine statistics of different mixtures")
        n_a, n_b = self.counts, other.counts
        n = n_a + n_b
        # Sums recovered exactly from the floored means, so a merge of pieces
        # gives the means of the whole to rounding, empty components included.
        sums = self.means * (n_a + MASS_FLOOR)[:, None] + other.means * (n_b + MASS_FLOOR)[:, None]
        means = sums / (n + MASS_FLOOR)[:, None]
        delta = other.means - self.means
        with np.errstate(invalid="ignore", divide="ignore"):
            coef = np.where(n > 0, n_a * n_b / n, 0.0)
        kind = self.covariance_type
        if kind == "full":
            scatter = (
                self.scatter
                + other.scatter
                + coef[:, None, None] * (delta[:, :, None] * delta[:, None, :])
            )
        elif kind == "tied":
            scatter = self.scatter + other.scatter + (delta.T * coef) @ delta
        else:
            scatter = self.scatter + other.scatter + coef[:, None] * delta**2
        return SufficientStats(kind, n, means, scatter)

    def mix_inplace(
        self, self_weight: float, other: "SufficientStats", other_weight: float
    ) -> "SufficientStats":
        """``self_weight * self`` combined with ``other_weight * other``, written over self.

        The same statistics as ``self.scaled(self_weight).combine(other.scaled(other_weight))``
        (to rounding), without the five temporary scatter arrays those make: the
        scatter is scaled in place, ``other``'s added by one BLAS ``axpy`` and the
        rank-one corrections by ``ger``, so a K x D x D update reads and writes each
        matrix three times and allocates nothing of its size. Stepwise EM runs this
        once per batch (``blend`` is ``mix_inplace(1 - step, other, step)``).

        ``self`` must own its three arrays (a fresh :meth:`zeros`, a
        :meth:`copy`, or what a statistics kernel returned), since they are
        overwritten; ``other`` is only read. Returns ``self``.
        """
        if other.covariance_type != self.covariance_type or other.means.shape != self.means.shape:
            raise ValueError("cannot combine statistics of different mixtures")
        from scipy.linalg import blas

        a, b = float(self_weight), float(other_weight)
        n_a, n_b = self.counts * a, other.counts * b
        n = n_a + n_b
        sums = self.means * (n_a + MASS_FLOOR)[:, None] + other.means * (n_b + MASS_FLOOR)[:, None]
        means = sums / (n + MASS_FLOOR)[:, None]
        delta = other.means - self.means
        with np.errstate(invalid="ignore", divide="ignore"):
            coef = np.where(n > 0, n_a * n_b / n, 0.0)
        scatter = self.scatter
        if not (scatter.flags.c_contiguous and scatter.flags.writeable):
            raise ValueError("mix_inplace needs statistics that own C-contiguous arrays")
        scatter *= a
        if b != 0.0:
            blas.daxpy(np.ascontiguousarray(other.scatter).ravel(), scatter.ravel(), a=b)
        kind = self.covariance_type
        if kind == "full":
            for k in np.flatnonzero(coef):
                # scatter[k].T is the same symmetric matrix, Fortran-ordered: updated in place.
                blas.dger(coef[k], delta[k], delta[k], a=scatter[k].T, overwrite_a=1)
        elif kind == "tied":
            scatter += (delta.T * coef) @ delta
        else:
            scatter += coef[:, None] * delta**2
        self.counts[...] = n
        self.means[...] = means
        return self

    def copy(self) -> "SufficientStats":
        """Statistics holding their own copies of the arrays."""
        return SufficientStats(
            self.covariance_type, self.counts.copy(), self.means.copy(), self.scatter.copy()
        )

    def blend(self, other: "SufficientStats", step: float) -> "SufficientStats":
        """Stepwise-EM update ``(1 - step) * self + step * other`` (both as averages)."""
        return self.scaled(1.0 - step).combine(other.scaled(step))

    # ------------------------------------------------------------ M-step
    def parameters(
        self, reg_covar: float, *, overwrite: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(nk, means, covariances)`` of the M-step; ``nk`` includes the mass floor,
        so ``weights = nk / nk.sum()``.

        ``overwrite=True`` builds the covariances in the scatter's memory (the
        statistics must not be used afterwards): it saves a K x D x D copy.
        """
        nk = self.counts + MASS_FLOOR
        kind = self.covariance_type
        means = self.means if overwrite else self.means.copy()
        if kind in ("full", "tied"):
            covariances = self.scatter if overwrite else self.scatter.copy()
            covariances /= nk[:, None, None] if kind == "full" else nk.sum()
            diagonal = np.einsum("...ii->...i", covariances)  # a writable view
            diagonal += reg_covar
        else:
            covariances = self.scatter / nk[:, None] + reg_covar
            if kind == "spherical":
                covariances = covariances.mean(axis=1)
        return nk, means, covariances

    # ------------------------------------------------------------ storage
    def to_arrays(self, prefix: str = "stats_") -> dict[str, np.ndarray]:
        """Arrays for a model file (the covariance type is the model's)."""
        return {prefix + name: np.asarray(getattr(self, name)) for name in _ARRAYS}

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], covariance_type: str, prefix: str = "stats_"
    ) -> "SufficientStats":
        """Inverse of :meth:`to_arrays`; checked (``ValueError`` when inconsistent)."""
        try:
            values = [np.array(arrays[prefix + name], dtype=np.float64) for name in _ARRAYS]
        except KeyError as missing:
            raise ValueError(f"sufficient statistics: {missing.args[0]} is missing") from None
        stats = cls(covariance_type, *values)
        stats.check()
        return stats

    @classmethod
    def zeros(cls, covariance_type: str, n_components: int, n_features: int) -> "SufficientStats":
        """Statistics of no data: the neutral element of :meth:`combine`."""
        return cls(
            covariance_type,
            np.zeros(n_components),
            np.zeros((n_components, n_features)),
            np.zeros(scatter_shape(covariance_type, n_components, n_features)),
        )


def combine_all(pieces: list[SufficientStats]) -> SufficientStats:
    """Pairwise (tree) merge in a fixed order: the same pieces, the same bits."""
    if not pieces:
        raise ValueError("no statistics to combine")
    level = list(pieces)
    while len(level) > 1:
        merged = [a.combine(b) for a, b in zip(level[::2], level[1::2])]
        if len(level) % 2:
            merged.append(level[-1])
        level = merged
    return level[0]
