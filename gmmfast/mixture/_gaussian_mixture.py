"""Gaussian mixture model fitted by EM, compatible with scikit-learn's."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from scipy.linalg import lapack, solve_triangular

from ..utils import _progress
from ..utils._estimator import (
    BaseEstimator,
    ConvergenceWarning,
    check_is_fitted,
    restores_state_on_error,
)
from ..utils._model_files import load_npz, require, save_npz
from ..utils._threads import effective_n_threads, limits_blas, single_threaded_blas
from ..utils._validation import (
    check_array,
    check_clip,
    check_compute_dtype,
    check_flag,
    check_random_state,
    check_scalar,
    check_seed,
    check_verbose,
)
from . import _candidates, _dask, _em, _factor, _gaussian, _missing_em, _online, _starts
from ._missing import conditional_samples, has_nan, missing_log_prob, split_observed
from ._stats import SufficientStats

#: Largest array ``sample`` returns (8 GiB): more is a typo, not a plan.
MAX_SAMPLE_BYTES = 2**33

#: Most initialisations a fit accepts (each is a whole EM run; more is a typo, not a plan).
MAX_N_INIT = 10_000

#: Every covariance type: the dense ones and the low-rank-plus-diagonal ones (_factor).
COVARIANCE_TYPES = _gaussian.COVARIANCE_TYPES + _factor.FACTOR_TYPES

_NOT_YET = "not yet supported for covariance_type={!r} (a mixture of factor analysers)"

INIT_PARAMS = ("diverse", "kmeans", "agglomerative", "k-means++", "random", "random_from_data")


class GaussianMixture(BaseEstimator):
    """Gaussian mixture model fitted by expectation-maximisation.

    A drop-in for :class:`sklearn.mixture.GaussianMixture` (same parameters,
    attributes and methods; given the same initial parameters it reaches
    the same fitted parameters), computed by compiled, multi-threaded
    kernels, in float64 or float32.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical', 'factor', 'ppca'}, default='full'
        Form of each component's covariance. 'factor' is a mixture of
        factor analysers, W_k W_k^T + Psi_k with W_k of shape (D, l) and
        Psi_k diagonal (Ghahramani and Hinton 1996); 'ppca' its isotropic
        case W_k W_k^T + sigma_k^2 I (mixture of probabilistic PCA, Tipping
        and Bishop 1999). Both need ``n_factors``, cost O(D l) per sample
        and component, and never form a D x D matrix (see
        :mod:`gmmfast.mixture._factor`); missing values, ``partial_fit``,
        Dask arrays, ``precisions_init`` and ``save`` are not yet supported
        for them.
    n_factors : int or None, default=None
        Latent factors l of each component (1 <= l < n_features): required
        for 'factor' and 'ppca', ignored by the other types.
    tol : float, default=1e-3
        EM stops when the mean log-likelihood gains less than ``tol``.
    reg_covar : float, default=1e-6
        Added to covariance diagonals, so they stay positive definite
        (constant features, collapsed components).
    max_iter : int, default=100
        EM iterations per initialisation.
    n_init : int, default=1
        Initialisations to try; the one with the best lower bound is kept.
    init_params : {'diverse', 'kmeans', 'agglomerative', 'k-means++', 'random', 'random_from_data'}, default='diverse'
        How each initialisation starts. 'diverse' rotates through several
        kinds of start over the ``n_init`` initialisations: k-means, then
        model-based agglomeration of k-means micro-clusters (mclust's
        start, which finds elongated clusters k-means cuts across), then
        k-means++ seeds and random samples each carrying the data's
        covariance; the most likely result is kept. Its first start is
        k-means, so with ``n_init=1`` it fits exactly as 'kmeans' (the kind
        of start scikit-learn's default uses). The others are single kinds: gmmfast's own
        k-means (k-means++ seeding then Lloyd iterations), the
        agglomeration alone, k-means++ seeds alone, random
        responsibilities, or random samples as centres.
    weights_init : array of shape (n_components,), optional
    means_init : array of shape (n_components, n_features), optional
    precisions_init : array, optional
        Initial precisions (inverse covariances), shaped as ``covariances_``.
    random_state : int, RandomState, Generator or None, default=None
    warm_start : bool, default=False
        Start each ``fit`` from the previous solution (``n_init`` is then 1).
    verbose : int, default=0
        1 prints each initialisation and every ``verbose_interval``-th
        iteration; 2 adds timings and lower-bound changes.
    verbose_interval : int, default=10
    learning_decay : float, default=0.6
        Stepwise EM (:meth:`partial_fit`): the step size of step t is
        ``eta_t = (t + learning_offset) ** -learning_decay``; in (0.5, 1].
        1 with ``learning_offset=0`` weights every batch equally.
    learning_offset : float, default=0.0
        t0 >= 0 in the step size above; larger values take smaller steps
        (a model continued from ``fit`` or from a large first batch keeps
        more of it).
    averaging : int or None, default=None
        Polyak-Ruppert averaging in :meth:`partial_fit`: from step
        ``averaging`` on, the reported parameters are the M-step of the
        running statistics averaged over the steps since then (the E-steps
        still use the latest iterate). None: no averaging.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Compute precision of the kernels. Parameters are always stored in
        float64; with float32, samples and triangular factors are float32
        while sums, scatter matrices and factorisations stay float64.
    n_threads : int or None, default=None
        OpenMP threads; None uses what OpenMP would use (all cores, or the
        limit set by ``OMP_NUM_THREADS``/threadpoolctl).
    resp_floor : float, default=1e-12
        In the M-step, a responsibility below ``resp_floor * N_k / N``
        (N_k the component's total responsibility, N the number of
        samples) counts as zero. This removes at most a fraction
        ``resp_floor`` of each component's mass, far below the rounding of
        the statistics that EM accumulates, and skips the scatter work of
        samples that do not belong to a component: with well separated
        components (images, embeddings) most of the M-step. 0 gives exact
        EM, bit for bit the computation of the responsibilities as they are.
    gaussian_selection : {'auto', 'exact', 'candidates'}, default='auto'
        Gaussian selection for large mixtures (see the user guide, "Large
        mixtures"). 'candidates': each sample's E-steps evaluate only the
        components that mattered for it at the last full pass (an exact
        E-step over all components, repeated at an interval that adapts to
        the measured skipped mass), and the M-step streams through each
        component's candidate samples; a final full pass makes
        ``lower_bound_`` exact. 'exact': every component for every sample,
        every iteration (bit for bit the results without selection).
        'auto': 'candidates' where it pays (from 32 full or 128 diagonal or
        spherical components and 8,192 samples, complete data), else 'exact'.
    selection_tol : float, default=1e-3
        Gaussian selection's tolerance: the mean responsibility mass per
        sample that the candidate iterations may leave out, measured at
        every full pass (a full pass itself leaves out at most 1% of it).
        A fit whose final measurement exceeds it goes on from fresh
        candidates.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical.
    precisions_ : ndarray
        Inverse covariances, same shapes (computed from the factors on access).
    precisions_cholesky_ : ndarray
        Upper-triangular U with precision = U U^T (full, tied), or
        1 / sqrt(variances) (diag, spherical). Not available for 'factor'
        and 'ppca'; their ``covariances_`` and ``precisions_`` (K, D, D) are
        formed on request, up to 4096 features.
    factor_loadings_ : ndarray of shape (n_components, n_features, n_factors)
        'factor' and 'ppca' only: the loadings W_k (unique up to a rotation).
    noise_variance_ : ndarray of shape (n_components, n_features)
        'factor' and 'ppca' only: the diagonal of Psi_k (for 'ppca' each
        row is constant, sigma_k^2).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood of the training data at the last E-step of the
        best initialisation (with missing values: of the observed values).
    lower_bounds_ : list of float
        Lower bound at every iteration of the best initialisation.
    n_features_in_ : int
    n_batches_seen_ : int
        Batches passed to :meth:`partial_fit` in the current stream.
    n_samples_seen_ : int
        Samples in those batches.
    selection_skipped_mass_ : float or None
        With Gaussian selection, the mean responsibility mass per sample
        that the last candidate iterations missed, measured by the final
        full pass (at most ``selection_tol`` unless a warning said
        otherwise); None when the fit evaluated every component.

    Notes
    -----
    A component that loses all its samples is kept, not re-seeded: as in
    scikit-learn its weight becomes about 1e-15 times the others, its
    mean zero and its covariance ``reg_covar * I``, so no NaN appears.
    Scatter matrices are computed around the new means, which matches
    scikit-learn's results and is more accurate in float32.

    Missing values (NaN, or False in an ``observed`` mask) are allowed
    everywhere: :meth:`fit` runs exact EM for the observed-data likelihood
    (see its Notes), and inference marginalises them exactly.

    Fitting can be interrupted with Ctrl-C between iterations: the model
    keeps the last completed iteration's parameters, ``converged_`` is
    False, and the KeyboardInterrupt propagates.

    Examples
    --------
    >>> import numpy as np
    >>> from gmmfast import GaussianMixture
    >>> X = np.r_[np.random.RandomState(0).randn(100, 2), np.random.RandomState(1).randn(100, 2) + 5]
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> gm.means_.round(0).tolist() in ([[0.0, 0.0], [5.0, 5.0]], [[5.0, 5.0], [0.0, 0.0]])
    True
    """

    _MODEL_KIND = "GaussianMixture"
    _estimator_type = "density_estimator"
    _allow_nan = True  # missing values are marginalised exactly

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        n_factors: int | None = None,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "diverse",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        learning_decay: float = 0.6,
        learning_offset: float = 0.0,
        averaging: int | None = None,
        dtype: Any = np.float64,
        n_threads: int | None = None,
        resp_floor: float = 1e-12,
        gaussian_selection: str = "auto",
        selection_tol: float = 1e-3,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.n_factors = n_factors
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.averaging = averaging
        self.dtype = dtype
        self.n_threads = n_threads
        self.resp_floor = resp_floor
        self.gaussian_selection = gaussian_selection
        self.selection_tol = selection_tol

    # ------------------------------------------------------------------ checks
    def _check_parameters(self, n_features: int) -> dict[str, np.ndarray | None]:
        """Check the hyper-parameters; return the checked ``*_init`` arrays in
        float64 (``precisions_init`` as its Cholesky factors, computed once)."""
        check_scalar(self.n_components, "n_components", (int, np.integer), min_value=1)
        if (
            not isinstance(self.covariance_type, str)
            or self.covariance_type not in COVARIANCE_TYPES
        ):
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}; got {self.covariance_type!r}."
            )
        factor = _factor.is_factor_type(self.covariance_type)
        if factor:  # n_features 0: the parameters of a file, checked before any data
            _factor.check_n_factors(self.n_factors, n_features or None, self.covariance_type)
            if self.precisions_init is not None:
                raise ValueError(f"precisions_init is {_NOT_YET.format(self.covariance_type)}.")
        check_scalar(self.tol, "tol", (int, float, np.floating), min_value=0.0)
        check_scalar(self.reg_covar, "reg_covar", (int, float, np.floating), min_value=0.0)
        check_scalar(self.max_iter, "max_iter", (int, np.integer), min_value=0)
        # Each initialisation is a whole EM run: beyond MAX_N_INIT a fit would not end.
        check_scalar(self.n_init, "n_init", (int, np.integer), min_value=1, max_value=MAX_N_INIT)
        check_scalar(self.verbose_interval, "verbose_interval", (int, np.integer), min_value=1)
        check_flag(self.warm_start, "warm_start")
        check_verbose(self.verbose)
        check_seed(self.random_state)
        check_scalar(
            self.resp_floor, "resp_floor", (int, float, np.floating), min_value=0.0, max_value=1e-3
        )
        _candidates.check_selection(self.gaussian_selection, self.selection_tol)
        if self.init_params not in INIT_PARAMS:
            raise ValueError(f"init_params must be one of {INIT_PARAMS}; got {self.init_params!r}.")
        check_compute_dtype(self.dtype)
        effective_n_threads(self.n_threads)
        _online.check_parameters(self)
        K, D = int(self.n_components), n_features
        checked: dict[str, np.ndarray | None] = dict.fromkeys(("weights", "means", "prec_chol"))
        if self.weights_init is not None:
            w = self._check_init_array(self.weights_init, "weights_init", (K,))
            if np.any(w < 0) or np.any(w > 1) or not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
                raise ValueError(
                    "weights_init must be non-negative, at most 1, and sum to 1; "
                    f"got sum {w.sum():.6g}."
                )
            checked["weights"] = w
        if self.means_init is not None:
            checked["means"] = self._check_init_array(self.means_init, "means_init", (K, D))
        if self.precisions_init is not None and not factor:
            shape = _gaussian.covariance_shape(self.covariance_type, K, D)
            p = self._check_init_array(self.precisions_init, "precisions_init", shape)
            if self.covariance_type in ("full", "tied"):
                # As numpy.allclose(m, m.T), one matrix at a time (no K x D x D temporaries).
                for m in p if self.covariance_type == "full" else p[None]:
                    if np.any(np.abs(m - m.T) > 1e-8 + 1e-5 * np.abs(m.T)):
                        raise ValueError("precisions_init must be symmetric.")
            # One batched Cholesky: the positive-definiteness check and the factors.
            checked["prec_chol"] = _gaussian.precision_cholesky_from_precisions(
                p, self.covariance_type, "precisions_init"
            )
        return checked

    @staticmethod
    def _check_init_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}.")
        arr = arr.astype(np.float64)
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}; got {arr.shape}.")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity.")
        return arr

    def _check_fitted(self) -> None:
        """A fitted model whose arrays agree with ``covariance_type`` and with each
        other: the kernels index them by these shapes, so a parameter changed with
        ``set_params`` after ``fit`` (or a warm start on other data) must be caught here.
        """
        check_is_fitted(self, "means_")
        covariance_type = self.covariance_type
        if not isinstance(covariance_type, str) or covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}."
            )
        means = self.means_
        fitted_type = getattr(self, "_fitted_covariance_type", covariance_type)
        consistent = np.ndim(means) == 2 and fitted_type == covariance_type
        if consistent and _factor.is_factor_type(covariance_type):
            K, D = means.shape
            loadings = self.__dict__.get("factor_loadings_")
            consistent = (
                np.shape(self.weights_) == (K,)
                and np.ndim(loadings) == 3
                and np.shape(loadings)[:2] == (K, D)
                and np.shape(self.__dict__.get("noise_variance_")) == (K, D)
                and getattr(self, "n_features_in_", D) == D
            )
        elif consistent:
            K, D = means.shape
            shape = _gaussian.covariance_shape(covariance_type, K, D)
            consistent = (
                np.shape(self.weights_) == (K,)
                and np.shape(self.covariances_) == shape
                and np.shape(self.precisions_cholesky_) == shape
                and getattr(self, "n_features_in_", D) == D
            )
        if not consistent:
            raise ValueError(
                f"{type(self).__name__}: the fitted parameters ({fitted_type!r} covariances, means of shape "
                f"{np.shape(means)}) do not match covariance_type={covariance_type!r}; a parameter was "
                "changed after fit: call fit again (or set it back)."
            )

    def _validate_X(self, X: Any) -> np.ndarray:
        """Check X for inference: fitted model, matching feature count."""
        self._check_fitted()
        return check_array(
            X,
            dtype=check_compute_dtype(self.dtype),
            n_features=self.n_features_in_,
            estimator=type(self).__name__,
        )

    # ----------------------------------------------------------- kernel glue
    def _n_threads(self) -> int:
        return effective_n_threads(self.n_threads)

    def _estimate(self, X: np.ndarray, mode: int) -> tuple[np.ndarray, np.ndarray]:
        if _factor.is_factor_type(self.covariance_type):
            return _factor.estimate_log_prob(
                X,
                self.weights_,
                self.means_,
                self.factor_loadings_,
                self.noise_variance_,
                mode=_FACTOR_MODES[mode],
                n_threads=self._n_threads(),
            )
        return _gaussian.estimate_log_prob(
            X,
            self.weights_,
            self.means_,
            self.precisions_cholesky_,
            self.covariance_type,
            mode=mode,
            n_threads=self._n_threads(),
        )

    def _log_prob(
        self, data: np.ndarray | _missing_em.MissingData, mode: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """E-step on training data: complete (an array) or with missing values."""
        if isinstance(data, _missing_em.MissingData):
            return _missing_em.log_prob(
                data,
                self.weights_,
                self.means_,
                self.covariances_,
                self.precisions_cholesky_,
                self.covariance_type,
                mode=mode,
                n_threads=self._n_threads(),
            )
        return self._estimate(data, mode)

    def _m_step(self, X: np.ndarray | _missing_em.MissingData, resp: np.ndarray) -> None:
        if isinstance(X, _missing_em.MissingData):
            # Exact EM: expected statistics at the current (E-step) parameters.
            nk, means, covariances = _missing_em.estimate_parameters(
                X,
                resp,
                self.means_,
                self.covariances_,
                self.precisions_cholesky_,
                self.covariance_type,
                float(self.reg_covar),
                n_threads=self._n_threads(),
            )
        else:
            nk, means, covariances = _gaussian.estimate_gaussian_parameters(
                X, resp, float(self.reg_covar), self.covariance_type, n_threads=self._n_threads()
            )
        self._set_m_step(nk, means, covariances)

    def _m_step_from_statistics(self, stats: SufficientStats) -> None:
        """M-step from centred statistics (Gaussian selection's candidate pairs)."""
        self._set_m_step(*stats.parameters(float(self.reg_covar), overwrite=True))

    def _set_m_step(self, nk: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> None:
        prec_chol = _gaussian.precision_cholesky_from_covariances(
            covariances, self.covariance_type, float(self.reg_covar), n_threads=self._n_threads()
        )
        # Assign together, so an interrupt never leaves a half-updated model.
        self.weights_, self.means_ = nk / nk.sum(), means
        self.covariances_, self.precisions_cholesky_ = covariances, prec_chol

    def _initialize(
        self,
        X: np.ndarray,
        random_state: np.random.RandomState,
        checked: dict[str, np.ndarray | None],
        init_index: int = 0,
    ) -> None:
        """Initial parameters: the checked ``*_init`` arrays where given, the
        start of ``init_params`` (of initialisation ``init_index``) for the rest."""
        n_samples = len(X)
        if _factor.is_factor_type(self.covariance_type):
            nk, means, loadings, noise = _factor.initial_parameters(
                X,
                _starts.start_kind(self.init_params, init_index),
                int(self.n_components),
                int(self.n_factors),
                float(self.reg_covar),
                random_state,
                n_threads=self._n_threads(),
            )
            weights = nk / n_samples if checked["weights"] is None else checked["weights"].copy()
            means = means if checked["means"] is None else checked["means"].copy()
            self._set_parameters((weights, means, loadings, noise))
            return
        weights, means, prec_chol = checked["weights"], checked["means"], checked["prec_chol"]
        if weights is None or means is None or prec_chol is None:
            nk, fitted_means, covariances = _starts.initial_parameters(
                X,
                _starts.start_kind(self.init_params, init_index),
                int(self.n_components),
                self.covariance_type,
                float(self.reg_covar),
                random_state,
                n_threads=self._n_threads(),
            )
            weights = nk / n_samples if weights is None else weights
            means = fitted_means if means is None else means
        if prec_chol is None:
            prec_chol = _gaussian.precision_cholesky_from_covariances(
                covariances,
                self.covariance_type,
                float(self.reg_covar),
                n_threads=self._n_threads(),
            )
        else:
            covariances = _gaussian.covariances_from_precision_cholesky(
                prec_chol, self.covariance_type
            )
        # Copies: the checked arrays serve every initialisation of n_init.
        self.weights_, self.means_ = weights.copy(), means.copy()
        self.covariances_, self.precisions_cholesky_ = covariances, prec_chol.copy()

    def _get_parameters(self) -> tuple[np.ndarray, ...]:
        if _factor.is_factor_type(self.covariance_type):
            return (self.weights_, self.means_, self.factor_loadings_, self.noise_variance_)
        return (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _set_parameters(self, params: tuple[np.ndarray, ...]) -> None:
        # A factor model holds W and Psi, the others their dense forms: drop the other
        # kind (a refit after set_params(covariance_type=...)), so that neither is stale.
        factor = _factor.is_factor_type(self.covariance_type)
        stale = _DENSE_NAMES if factor else _FACTOR_NAMES
        for name in stale:
            self.__dict__.pop(name, None)
        names = _FACTOR_NAMES if factor else _DENSE_NAMES
        self.weights_, self.means_ = params[:2]
        setattr(self, names[0], params[2])
        setattr(self, names[1], params[3])

    def __getattr__(self, name: str) -> Any:
        """A factor model's dense attributes, formed on request (only reached when
        ordinary lookup fails: the dense types hold them as plain attributes)."""
        attribute = getattr(type(self), name, None)
        if isinstance(attribute, property):  # its AttributeError (NotFittedError) led here
            return attribute.fget(self)
        state = self.__dict__
        if name in _DENSE_NAMES and "factor_loadings_" in state:
            if name == "precisions_cholesky_":
                raise _factor.DenseUnavailableError(
                    "precisions_cholesky_ is not available for covariance_type="
                    f"{self.covariance_type!r}: the model holds factor_loadings_ and "
                    "noise_variance_ (covariance W W^T + diag(noise_variance_)); precisions_ "
                    "is formed on request."
                )
            return _factor.dense_covariances(state["factor_loadings_"], state["noise_variance_"])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # --------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any = None, *, observed: Any = None) -> "GaussianMixture":
        """Estimate the parameters by EM, exact EM when values are missing.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples. NaN marks a missing value. A
            ``dask.array.Array`` is fitted where its blocks are, one pass
            over them per iteration, on the active ``dask.distributed``
            client or Dask's default scheduler (see
            :mod:`gmmfast.mixture._dask`; ``observed`` is then not supported).
        y : ignored
        observed : bool array of X's shape, optional
            Alternative to NaN: False marks a missing value (X's value
            there is ignored, but must not be infinite).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For invalid samples or parameters: infinity anywhere in X, a
            feature missing in every sample, fewer samples than
            components, or an ``observed`` that is not a boolean array of
            X's shape.
        gmmfast._gaussian.FactorizationError
            A covariance (or a block of it) is not positive definite even
            with ``reg_covar``.

        Notes
        -----
        Without missing values (no NaN, and ``observed`` None or all True)
        this is ordinary EM, the same computation as for any complete X.

        With missing values, EM maximises the likelihood of the observed
        values, marginalising the missing ones exactly (no imputation):

        * E-step: r_nk = p(k | x_o) from the exact marginal densities
          N(x_o | mu_ko, Sigma_koo); ``lower_bound_`` is the mean of the
          per-sample log marginal likelihoods, which EM never decreases.
        * M-step: expected sufficient statistics. With xhat_nk the sample
          whose missing part is replaced by its conditional mean
          E_k[x_m | x_o] = mu_km + Sigma_kmo Sigma_koo^-1 (x_o - mu_ko),
          and C_nk = Cov_k[x_m | x_o] = Sigma_kmm - Sigma_kmo Sigma_koo^-1
          Sigma_kom on the missing block (zero elsewhere),
          N_k = sum_n r_nk, mu_k = sum_n r_nk xhat_nk / N_k and
          Sigma_k = sum_n r_nk [(xhat_nk - mu_k)(xhat_nk - mu_k)^T + C_nk] / N_k
          + reg_covar I (tied: pooled over components; diag: its diagonal;
          spherical: the mean of the diagonal). The correction C_nk is
          what distinguishes exact EM from EM on imputed data, which
          underestimates covariances.

        Samples sharing a mask share each factorisation; per mask the
        kernel factorises either Sigma_oo or, when few values are
        missing, the smaller precision block P_mm = (Sigma^-1)_mm.
        A sample with no observed value is allowed: its responsibilities
        are the weights and it contributes mu_k and Sigma_k.

        Initialisation with missing values: ``init_params`` runs on a copy
        of X in which each missing value is replaced by the mean of its
        feature over the samples where it is observed; ``weights_init``,
        ``means_init`` and ``precisions_init`` are used as given.
        """
        self._fit(X, observed, labels=False)
        return self

    def fit_predict(self, X: Any, y: Any = None, *, observed: Any = None) -> np.ndarray:
        """Fit by EM, then return the most likely component of each sample.

        The labels come from a final E-step, so they equal
        ``fit(X).predict(X)`` (with missing values: ``predict(X, observed)``,
        which marginalises them).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing value (see :meth:`fit`).
        y : ignored
        observed : bool array of X's shape, optional
            Alternative to NaN: False marks a missing value.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self._fit(X, observed, labels=True)

    @restores_state_on_error
    @limits_blas
    def _fit(self, X: Any, observed: Any, *, labels: bool) -> np.ndarray | None:
        """EM; with ``labels``, a final E-step at the fitted parameters gives each
        sample's component (``fit`` alone skips it: nothing it returns needs it)."""
        factor = _factor.is_factor_type(self.covariance_type)
        if factor:
            self._refuse_for_factor(X, observed)
        if _dask.is_dask_array(X):  # EM one pass per iteration on the blocks (mixture/_dask.py)
            return _dask.fit(self, X, observed, labels=labels)
        data = self._fit_data(X, observed)
        n_samples, n_features = data.shape
        checked = self._check_parameters(n_features)
        if n_samples < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components; got n_samples={n_samples} and "
                f"n_components={self.n_components}."
            )
        afresh = _em.starts_afresh(self, self.n_components, n_features)
        if factor and not afresh and self.factor_loadings_.shape[2] != self.n_factors:
            raise ValueError(
                f"warm_start continues from the fitted {self.factor_loadings_.shape[2]} factors, "
                f"but n_factors={self.n_factors}; set warm_start=False to fit afresh."
            )
        self.n_features_in_ = n_features
        random_state = check_random_state(self.random_state)
        init_X = self._init_data(data) if afresh else None

        selective = None
        if _candidates.applies(
            self.gaussian_selection,
            self.covariance_type,
            int(self.n_components),
            complete=not isinstance(data, _missing_em.MissingData),
            n_samples=n_samples,
        ):
            selective = _candidates.SelectiveEM(self, data)

        def initialize(init: int) -> None:
            self._initialize(init_X, random_state, checked, init)
            if selective is not None:
                selective.restart()

        def em_pass() -> float:
            if selective is not None:
                return selective.em_pass()
            if factor:  # one pass: E-step reduced to statistics chunk by chunk, then M-step
                params = self._get_parameters()
                stats = _factor.e_step_statistics(data, *params, n_threads=self._n_threads())
                nk, *rest = _factor.m_step(
                    stats, *params[1:], float(self.reg_covar), self.covariance_type
                )
                self._set_parameters((nk / nk.sum(), *rest))
                return stats.log_likelihood / n_samples
            resp, log_norm = self._log_prob(data, _gaussian.MODE_RESP)
            _gaussian.floor_responsibilities(resp, float(self.resp_floor))
            self._m_step(data, resp)
            return float(np.mean(log_norm))

        best = _em.run(
            self,
            afresh=afresh,
            initialize=initialize,
            em_pass=em_pass,
            confirm=None if selective is None else selective.confirm,
        )
        self._keep_best(best)
        self.selection_skipped_mass_ = (
            None if selective is None else selective.skipped_mass_of(best.lower_bound)
        )
        if not labels:
            return None
        # Labels from a final E-step, consistent with predict().
        weighted, _ = self._log_prob(data, _gaussian.MODE_WEIGHTED_LOG_PROB)
        return weighted.argmax(axis=1)

    def _keep_best(self, best: _em.Outcome) -> None:
        """Install the best initialisation, warning if it did not converge (every fit
        path ends here, in memory or on Dask)."""
        lower_bound, params, n_iter, lower_bounds, converged = best.as_tuple()
        if not converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
            )
        self._set_parameters(params)
        self.converged_ = converged
        self.n_iter_ = n_iter
        self.lower_bound_ = lower_bound
        self.lower_bounds_ = lower_bounds
        self._fitted_covariance_type = self.covariance_type

    def _refuse_for_factor(self, X: Any, observed: Any = None, what: str | None = None) -> None:
        """What a factor model does not do yet: missing values, Dask arrays (``what``: another)."""
        if not _factor.is_factor_type(self.covariance_type):
            return
        if what is None and _dask.is_dask_array(X):
            what = "Fitting or scoring a Dask array"
        if what is None and (observed is not None or has_nan(X)):
            what = "Missing values (NaN, or an observed mask)"
        if what is not None:
            raise ValueError(f"{what} is {_NOT_YET.format(self.covariance_type)}.")

    def _fit_data(self, X: Any, observed: Any) -> np.ndarray | _missing_em.MissingData:
        """Validated training data: an array when complete (ordinary EM),
        else :class:`gmmfast._missing_em.MissingData` (exact EM)."""
        dtype = check_compute_dtype(self.dtype)
        if observed is None and not has_nan(X):
            data = check_array(X, dtype=dtype)
        else:
            data = _missing_em.prepare(X, observed, dtype=dtype)
            data = check_array(X, dtype=dtype) if data is None else data
        _gaussian.check_data_scale(data.X if isinstance(data, _missing_em.MissingData) else data)
        return data

    def _init_data(self, data: np.ndarray | _missing_em.MissingData) -> np.ndarray:
        """Samples for init_params: missing values filled with column means."""
        return (
            _missing_em.fill_column_means(data)
            if isinstance(data, _missing_em.MissingData)
            else data
        )

    def _print(self, level: int, message: str, detail: str = "") -> None:
        _progress.say(self.verbose, message + (detail if self.verbose >= 2 else ""), level)

    @restores_state_on_error
    @limits_blas
    def partial_fit(self, X: Any, y: Any = None, *, observed: Any = None) -> "GaussianMixture":
        """One step of stepwise (online) EM on a batch of samples.

        For data that arrive in batches, or are read once from a file too
        large for batch EM to pass over at every iteration. Each call runs
        the E-step on the batch at the current parameters, blends the
        batch's sufficient statistics into running ones,
        ``s <- (1 - eta_t) s + eta_t s_batch`` with
        ``eta_t = (t + learning_offset) ** -learning_decay``, and takes the
        M-step from them (Cappé and Moulines 2009; Liang and Klein 2009).
        The statistics are kept centred and in float64, as averages per
        sample. Parameters are valid after every call (covariances positive
        definite with ``reg_covar``, weights on the simplex), and a call that
        raises leaves the model as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The batch (a slice of a memory-mapped array is fine; it is read,
            never written). NaN marks a missing value: the step then uses the
            exact expected statistics of missing-data EM (see :meth:`fit`), and
            a feature may be missing in every sample of a batch.
        y : ignored
        observed : bool array of X's shape, optional
            Alternative to NaN: False marks a missing value.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Invalid samples or parameters; a feature count other than the
            model's; a first batch with fewer samples than ``n_components``
            (unless all ``*_init`` parameters are given); samples that no
            component explains (density 0 under every component).

        Notes
        -----
        The first call initialises the mixture from the first batch as
        :meth:`fit` would (``weights_init``/``means_init``/``precisions_init``
        where given, else ``init_params`` on the batch; with missing values,
        on the batch with each missing value replaced by its feature's
        mean), so a first batch much larger than ``n_components`` helps.
        The running statistics of a new model start empty, so the first
        step keeps that batch's statistics alone whatever ``eta_1`` is: one
        call on all the data is exactly one batch EM iteration from the
        initial parameters.

        ``n_batches_seen_`` and ``n_samples_seen_`` count the calls and
        samples; ``n_iter_`` is the step t of the last call; ``lower_bound_``
        the batch's mean log-likelihood at the parameters before the call;
        ``converged_`` is False (stepwise EM does not test convergence).

        With ``fit`` (``warm_start`` only matters to ``fit``):

        * ``partial_fit`` after ``fit`` (or on a model loaded from a file
          written after ``fit``) continues from the fitted parameters: the
          statistics whose M-step gives them, with mass 1, count as step 1,
          and the next call is step 2. Raise ``learning_offset`` to keep
          more of the fitted model.
        * ``fit`` after ``partial_fit`` ends the stream: with
          ``warm_start=True`` EM starts from the stream's parameters, else
          afresh; a later ``partial_fit`` continues from the fitted
          parameters as above.

        :meth:`save` keeps the running statistics (and the Polyak-Ruppert
        average, see ``averaging``), so ``load`` then ``partial_fit`` gives
        what the uninterrupted stream gives, bit for bit.
        """
        self._refuse_for_factor(X, observed, "partial_fit")
        return _online.partial_fit(self, _dask.in_memory(X), observed)

    # ------------------------------------------------------------- inference
    @limits_blas
    def _inference(
        self, X: Any, observed: Any, mode: int, *, impute: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """E-step for inference; missing values are marginalised exactly.

        A value is missing where X is NaN, or where ``observed`` is False.
        Returns ``(out, log_norm, imputed)`` as :func:`gmmfast._missing.missing_log_prob`.
        """
        self._check_fitted()
        self._refuse_for_factor(X, observed)
        dtype = check_compute_dtype(self.dtype)
        if observed is None and not has_nan(X):
            Xc = check_array(
                X, dtype=dtype, n_features=self.n_features_in_, estimator=type(self).__name__
            )
            out, log_norm = self._estimate(Xc, mode)
            return out, log_norm, (Xc.astype(np.float64) if impute else None)
        Xf, obs = split_observed(
            X, observed, dtype=dtype, n_features=self.n_features_in_, estimator=type(self).__name__
        )
        return missing_log_prob(
            Xf,
            obs,
            self.weights_,
            self.means_,
            self.covariances_,
            self.precisions_cholesky_,
            self.covariance_type,
            mode=mode,
            n_threads=self._n_threads(),
            impute=impute,
            cache=self.__dict__.setdefault("_missing_cache", {}),
        )

    def score_samples(self, X: Any, observed: Any = None) -> np.ndarray:
        """Log-likelihood of each sample, shape (n_samples,).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing value; the likelihood of a sample with
            missing values is the exact marginal of its observed values.
        observed : bool array of X's shape, optional
            Alternative to NaN: False marks a missing value (X's value
            there is ignored).
        """
        self._refuse_for_factor(X, observed)
        if _dask.is_dask_array(X):  # a lazy Dask array, block by block
            return _dask.inference(self, X, "score_samples", observed)
        return self._inference(X, observed, _gaussian.MODE_WEIGHTED_LOG_PROB)[1]

    def score(self, X: Any, y: Any = None, observed: Any = None) -> float:
        """Mean log-likelihood of the samples (missing values marginalised)."""
        self._refuse_for_factor(X, observed)
        if _dask.is_dask_array(X):  # one pass, whatever the chunk sizes; 0 samples refused
            return _dask.mean_score(self, X, observed)[0]
        return float(self.score_samples(X, observed).mean())

    def predict(self, X: Any, observed: Any = None) -> np.ndarray:
        """Most likely component of each sample (missing values marginalised).

        Raises ``ValueError`` for a sample whose density is 0 under every component.
        """
        self._refuse_for_factor(X, observed)
        if _dask.is_dask_array(X):  # a lazy Dask array, block by block
            return _dask.inference(self, X, "predict", observed)
        weighted, log_norm, _ = self._inference(X, observed, _gaussian.MODE_WEIGHTED_LOG_PROB)
        _gaussian.check_explained(log_norm)
        return weighted.argmax(axis=1)

    def predict_proba(self, X: Any, observed: Any = None) -> np.ndarray:
        """Posterior probability of each component, shape (n_samples, n_components).

        Missing values (NaN, or False in ``observed``) are marginalised.

        Raises
        ------
        ValueError
            For a sample whose density underflows to 0 under every component
            (its posterior is undefined): values far outside the fitted data.
        """
        self._refuse_for_factor(X, observed)
        if _dask.is_dask_array(X):  # a lazy Dask array, block by block
            return _dask.inference(self, X, "predict_proba", observed)
        resp, log_norm, _ = self._inference(X, observed, _gaussian.MODE_RESP)
        _gaussian.check_explained(log_norm)
        return resp

    def impute(
        self,
        X: Any,
        observed: Any = None,
        *,
        method: str = "mean",
        clip: tuple[float, float] | None = None,
        random_state: Any = None,
    ) -> np.ndarray:
        """Fill in missing values from the mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing value.
        observed : bool array of X's shape, optional
            Alternative to NaN: False marks a missing value.
        method : {'mean', 'sample'}, default='mean'
            'mean': the posterior mean E[x_m | x_o] = sum_k p(k | x_o)
            E_k[x_m | x_o], with p(k | x_o) from the exact marginal
            likelihoods (the least-squares optimal fill). 'sample': a draw
            from p(x_m | x_o): a component from p(k | x_o), then a draw from
            that component's Gaussian conditional.
        clip : (low, high), optional
            Clip the filled values (only those) to a valid range, e.g.
            (0, 1) for pixels.
        random_state : int, RandomState, Generator or None
            For ``method='sample'``.

        Returns
        -------
        ndarray of shape (n_samples, n_features), float64
            A copy of X with every missing value filled; observed values
            are unchanged.
        """
        if method not in ("mean", "sample"):
            raise ValueError(f"method must be 'mean' or 'sample'; got {method!r}.")
        clip = check_clip(clip)
        X = _dask.in_memory(X)  # a Dask array computed, masked entries missing
        if method == "mean":
            _, _, filled = self._inference(X, observed, _gaussian.MODE_RESP, impute=True)
        else:
            resp, _, _ = self._inference(X, observed, _gaussian.MODE_RESP)
        # Observed values in float64, as given (a float32 model computes on
        # rounded copies; those must not leak into the returned array).
        Xf, obs = split_observed(
            X,
            observed,
            dtype=np.float64,
            n_features=self.n_features_in_,
            estimator=type(self).__name__,
        )
        obs = obs.astype(bool)
        if method == "mean":
            filled[obs] = Xf[obs]
        else:
            rng = check_random_state(random_state)
            cumulative = np.cumsum(resp, axis=1)
            draws = rng.uniform(size=(len(resp), 1)) * cumulative[:, -1:]
            components = np.minimum((cumulative < draws).sum(axis=1), resp.shape[1] - 1)
            filled = conditional_samples(
                Xf,
                obs,
                components,
                self.means_,
                _gaussian.full_covariances(self),
                rng,
            )
        if clip is not None:
            filled[~obs] = np.clip(filled[~obs], clip[0], clip[1])
        return filled

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture.

        Uses ``random_state`` as scikit-learn does (a fresh generator from
        the parameter, so an int seed gives repeatable draws).

        Returns
        -------
        X : (n_samples, n_features) float64
        y : (n_samples,) int, the component of each sample
        """
        self._check_fitted()
        # The draws are float64 (n_samples, n_features): at most MAX_SAMPLE_BYTES of them.
        most = max(1, MAX_SAMPLE_BYTES // (8 * self.means_.shape[1]))
        check_scalar(n_samples, "n_samples", (int, np.integer), min_value=1, max_value=most)
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        D = self.means_.shape[1]
        draws = []
        for k, count in enumerate(counts):
            if _factor.is_factor_type(self.covariance_type):
                draws.append(
                    _factor.sample(
                        rng,
                        count,
                        self.means_[k],
                        self.factor_loadings_[k],
                        self.noise_variance_[k],
                    )
                )
                continue
            z = rng.standard_normal(size=(count, D))
            if self.covariance_type in ("full", "tied"):
                u = (
                    self.precisions_cholesky_[k]
                    if self.covariance_type == "full"
                    else self.precisions_cholesky_
                )
                # x = mu + U^-T z has covariance U^-T U^-1 = Sigma.
                draws.append(self.means_[k] + solve_triangular(u, z.T, trans="T", lower=False).T)
            else:
                scale = 1.0 / np.broadcast_to(self.precisions_cholesky_[k], (D,))
                draws.append(self.means_[k] + z * scale)
        X = np.vstack(draws)
        y = np.repeat(np.arange(len(counts)), counts)
        return X, y

    @property
    def precisions_(self) -> np.ndarray:
        self._check_fitted()
        if _factor.is_factor_type(self.covariance_type):  # Woodbury, up to 4096 features
            return _factor.dense_precisions(self.factor_loadings_, self.noise_variance_)
        return _gaussian.precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)

    def _n_parameters(self) -> int:
        self._check_fitted()
        if _factor.is_factor_type(self.covariance_type):  # W counted up to its rotation
            K, D, q = self.factor_loadings_.shape
            return _factor.n_parameters(K, D, q, self.covariance_type)
        return _gaussian.n_parameters(len(self.means_), self.means_.shape[1], self.covariance_type)

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on X (lower is better)."""
        self._refuse_for_factor(X)
        score, n = _dask.score_and_count(self, X)  # a Dask array: one pass
        return -2 * score * n + self._n_parameters() * np.log(n)

    def aic(self, X: Any) -> float:
        """Akaike information criterion on X (lower is better)."""
        self._refuse_for_factor(X)
        score, n = _dask.score_and_count(self, X)  # a Dask array: one pass
        return -2 * score * n + 2 * self._n_parameters()

    # ----------------------------------------------------------- persistence
    def _saved_params(self) -> dict[str, Any]:
        params = {}
        for name, value in self.get_params(deep=False).items():
            if name in ("weights_init", "means_init", "precisions_init"):
                continue  # initial guesses are not part of a fitted model
            if name == "dtype":
                value = np.dtype(value).name
            elif name == "random_state" and not isinstance(value, (int, type(None))):
                value = None
            elif isinstance(value, np.generic):
                value = value.item()
            params[name] = value
        return params

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to ``path`` as ``.npz`` (no pickle).

        The file holds one covariance representation per mixture. A
        float64 model stores ``covariances_``; :meth:`load` derives
        ``precisions_cholesky_`` from them with the function ``fit`` uses,
        so the model round-trips bit for bit. A float32 model
        (``dtype=np.float32``) stores ``means_`` and ``precisions_cholesky_``
        rounded to float32, as its kernels round them anyway: the loaded
        model holds those rounded values (in float64) and the covariances
        they imply. (Rounding the covariances instead would move the
        precisions by up to cond(Sigma) times float32's epsilon.) A model
        with :meth:`partial_fit` running statistics keeps float64
        ``covariances_``, so that the stream resumes bit for bit after
        :meth:`load`.

        Sizes, ``GaussianMixture(10, max_iter=2)`` fitted on the 60,000
        MNIST training images (784 pixels, full covariances): 98.4 MB
        before (covariances and factors, float64), 49.2 MB now in float64,
        24.6 MB with ``dtype=np.float32``, whose rounding changed
        ``score_samples`` of the 6,000 shipped sample images by at most
        1.6e-6 relative (the float32 kernels differ from float64 by 1.3e-4
        on the same parameters) and no ``predict`` label. Saving derives
        what load will (0.3 to 1.5 s at that size) to check that the file
        reproduces the model; a float64 model whose factor is not its
        covariances' own (set by hand, or ``max_iter=0`` from
        ``precisions_init``) is written with both, in the older format.
        """
        self._check_fitted()  # a parameter changed after fit would write an unloadable file
        if _factor.is_factor_type(self.covariance_type):
            raise ValueError(
                f"Cannot save to {path}: save is {_NOT_YET.format(self.covariance_type)}."
            )
        try:
            params = self._saved_params()
        except TypeError as exc:  # np.dtype of a bad dtype parameter
            raise ValueError(f"Cannot save to {path}: dtype: {exc}.") from None
        params["n_components"] = len(self.weights_)  # what the arrays hold
        probe = type(self)()  # the parameters as load will check them, before anything is written
        try:
            probe.set_params(**params)
        except ValueError as exc:
            raise ValueError(f"Cannot save to {path}: {exc}") from None
        _check_saved_params(probe, f"Cannot save to {path}")
        save_npz(
            path,
            self._MODEL_KIND,
            params,
            {
                **_parameter_members(self),
                "converged_": np.array(bool(getattr(self, "converged_", False))),
                "n_iter_": np.array(int(getattr(self, "n_iter_", 0))),
                "lower_bound_": np.array(float(getattr(self, "lower_bound_", np.nan))),
                **_online.state_arrays(self),  # running statistics of partial_fit
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GaussianMixture":
        """Read a model written by :meth:`save`, validating every array.

        The missing representation is derived: ``precisions_cholesky_``
        from a float64 model's ``covariances_``, the covariances from a
        float32 model's float32 factor (see :meth:`save`). Files written
        before, which hold both in float64, load too: their factor is
        checked against the covariances.

        Raises
        ------
        ValueError
            Missing keys, wrong shapes or dtypes (float32 only in a float32
            model's file, for the factor alone), non-finite values, weights that are
            not a distribution, factors that are not valid Cholesky factors
            (triangular with a positive diagonal), covariances that are not
            symmetric positive definite or disagree with the factors, a
            float64 factor without covariances,
            parameters of the wrong type, unknown members, object arrays,
            or a file out of bounds (see :mod:`gmmfast.utils._model_files`).
        """
        params, arrays = load_npz(path, cls._MODEL_KIND, _expected_members)
        model = cls()
        try:
            model.set_params(**params)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        _check_saved_params(model, path)
        model._restore(arrays, path)
        return model

    def _restore(self, arrays: dict[str, np.ndarray], path: Any) -> None:
        if self.covariance_type not in _gaussian.COVARIANCE_TYPES:
            raise ValueError(f"{path}: unknown covariance_type {self.covariance_type!r}.")
        if "means_" not in arrays or arrays["means_"].ndim != 2:
            raise ValueError(f"{path}: missing or malformed array 'means_'.")
        K, D = arrays["means_"].shape
        cov_shape = _gaussian.covariance_shape(self.covariance_type, K, D)
        weights = require(arrays, "weights_", (K,), path)
        means = require(arrays, "means_", (K, D), path)
        if "covariances_" in arrays or "precisions_cholesky_" not in arrays:
            covariances = require(arrays, "covariances_", cov_shape, path)
        if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, atol=1e-6):
            raise ValueError(f"{path}: weights_ must be non-negative and sum to 1.")
        if (
            isinstance(self.n_components, (int, np.integer))
            and not isinstance(self.n_components, bool)
            and self.n_components != K
        ):
            raise ValueError(
                f"{path}: n_components is {self.n_components} but the arrays hold {K} components."
            )
        if "covariances_" not in arrays:  # a float32 model's file: the factor its kernels use
            prec_chol = require(arrays, "precisions_cholesky_", cov_shape, path)
            _check_factor(prec_chol, self.covariance_type, path)
            covariances = _covariances_of(prec_chol, self.covariance_type, path)
        elif "precisions_cholesky_" in arrays:  # an older file: one checked against the other
            prec_chol = require(arrays, "precisions_cholesky_", cov_shape, path)
            _check_factor(prec_chol, self.covariance_type, path)
            _check_covariances(covariances, prec_chol, self.covariance_type, path)
        else:
            prec_chol = _factor_of(covariances, self.covariance_type, self._n_threads(), path)
        self.weights_ = weights
        self.means_ = means
        self.covariances_ = covariances
        self.precisions_cholesky_ = prec_chol
        self.n_features_in_ = D
        self.converged_ = bool(_fit_scalar(arrays, "converged_", "b", False, path))
        self.n_iter_ = int(_fit_scalar(arrays, "n_iter_", "biu", 0, path))
        self.lower_bound_ = float(_fit_scalar(arrays, "lower_bound_", "biuf", np.nan, path))
        self._fitted_covariance_type = self.covariance_type
        _online.restore_state(self, arrays, path)


_DENSE_NAMES = ("covariances_", "precisions_cholesky_")
_FACTOR_NAMES = ("factor_loadings_", "noise_variance_")
_FACTOR_MODES = {
    _gaussian.MODE_WEIGHTED_LOG_PROB: "weighted",
    _gaussian.MODE_LOG_RESP: "log_resp",
    _gaussian.MODE_RESP: "resp",
}


def _fit_scalar(
    arrays: dict[str, np.ndarray], name: str, kinds: str, default: Any, path: Any
) -> Any:
    """A fit result saved as a 0-d array (``default`` where an older file lacks it), checked for its type."""
    if name not in arrays:
        return default
    value = arrays[name]
    if value.shape != () or value.dtype.kind not in kinds or (kinds == "biu" and value < 0):
        raise ValueError(
            f"{path}: malformed array {name!r} (dtype {value.dtype}, shape {value.shape})."
        )
    return value[()]


def _check_factor(prec_chol: np.ndarray, covariance_type: str, path: Any) -> None:
    """A precision factor must be upper-triangular with a positive diagonal."""
    if covariance_type in ("full", "tied"):
        factors = prec_chol if covariance_type == "full" else prec_chol[None]
        for k, u in enumerate(factors):
            if np.any(np.tril(u, -1) != 0):
                raise ValueError(f"{path}: precisions_cholesky_[{k}] is not upper-triangular.")
            if not np.all(np.diag(u) > 0):
                raise ValueError(
                    f"{path}: precisions_cholesky_[{k}] has a non-positive diagonal, so its "
                    "precision is not positive definite."
                )
    elif not np.all(prec_chol > 0):
        raise ValueError(
            f"{path}: precisions_cholesky_ must be positive (positive-definite precisions)."
        )


#: How far ``U^T L`` may be from the identity (on probe vectors), where U is
#: a stored precision factor and L the Cholesky factor of the stored
#: covariance. ``fit`` computes U = L^-T from the same covariance, so they
#: agree to rounding, which grows with the conditioning: measured on MNIST
#: mixtures, 3e-13 (well conditioned) to 3e-3 (cond(L) ~ 1e9), about
#: D * eps * kappa with kappa = max(diag L) / min(diag L); the tolerance
#: is 1e4 times that, at least 1e-6, at most 0.1. Factors of another model
#: are off by O(1) (a covariance scaled by 2: 0.41).
_FACTOR_TOLERANCE = (1e-6, 0.1)
_N_PROBES = 8


def _check_covariances(
    covariances: np.ndarray, prec_chol: np.ndarray, covariance_type: str, path: Any
) -> None:
    """Covariances must be symmetric positive definite and agree with the precision factors.

    Complete rows are scored with ``precisions_cholesky_`` and incomplete
    ones with (sub-blocks of) ``covariances_``: a file in which they
    disagree would score the two kinds of rows with different models.

    Positive definiteness is a Cholesky factorisation (LAPACK, one thread,
    as in ``fit``); agreement is checked on random probe vectors V,
    ``|U^T L V - V| <= tol |V|`` per column, O(D^2) per component instead
    of a D^3 product. The probes are drawn afresh at each load, so a
    forged discrepancy cannot be hidden in their null space.
    """
    if covariance_type in ("full", "tied"):
        covs = covariances if covariance_type == "full" else covariances[None]
        factors = prec_chol if covariance_type == "full" else prec_chol[None]
        probes = np.random.default_rng().standard_normal((covs.shape[-1], _N_PROBES))
        norms = np.linalg.norm(probes, axis=0)
        for k, (cov, u) in enumerate(zip(covs, factors)):
            name = f"covariances_[{k}]" if covariance_type == "full" else "covariances_"
            _check_symmetric(cov, name, path)
            with single_threaded_blas():
                lower, info = lapack.dpotrf(cov, lower=1, clean=1)
                if info != 0:
                    raise ValueError(f"{path}: {name} is not positive definite.")
                diag = np.diag(lower)
                if not (np.all(np.isfinite(lower)) and diag.min() > 0):
                    raise ValueError(f"{path}: {name} is not positive definite.")
                residual = u.T @ (lower @ probes) - probes
            kappa = diag.max() / diag.min()
            eps = np.finfo(np.float64).eps
            tol = min(max(1e4 * len(u) * eps * kappa, _FACTOR_TOLERANCE[0]), _FACTOR_TOLERANCE[1])
            if not (np.linalg.norm(residual, axis=0) <= tol * norms).all():
                raise ValueError(
                    f"{path}: precisions_cholesky_ disagrees with {name} "
                    "(U U^T Sigma is not the identity)."
                )
    else:
        if not np.all(covariances > 0):
            raise ValueError(f"{path}: covariances_ must be positive.")
        if np.abs(prec_chol * np.sqrt(covariances) - 1.0).max(initial=0.0) > _FACTOR_TOLERANCE[0]:
            raise ValueError(
                f"{path}: precisions_cholesky_ disagrees with covariances_ (U^2 Sigma is not 1)."
            )


def _check_symmetric(cov: np.ndarray, name: str, path: Any) -> None:
    """A covariance matrix must be symmetric (to rounding: 1e-10 of its largest variance)."""
    scale = max(float(np.abs(np.diag(cov)).max(initial=0.0)), np.finfo(np.float64).tiny)
    if np.abs(cov - cov.T).max(initial=0.0) > 1e-10 * scale:
        raise ValueError(f"{path}: {name} is not symmetric.")


def _factor_of(
    covariances: np.ndarray, covariance_type: str, n_threads: int, path: Any
) -> np.ndarray:
    """``precisions_cholesky_`` of a file's covariances, computed as ``fit`` computes it.

    The factorisation reads one triangle of each matrix, while the
    missing-data kernels read blocks of both: symmetry is checked first.
    Positive definiteness is the factorisation itself.
    """
    if covariance_type in ("full", "tied"):
        covs = covariances if covariance_type == "full" else covariances[None]
        for k, cov in enumerate(covs):
            _check_symmetric(
                cov, f"covariances_[{k}]" if covariance_type == "full" else "covariances_", path
            )
    try:
        prec_chol = _gaussian.precision_cholesky_from_covariances(
            covariances, covariance_type, n_threads=n_threads
        )
    except ValueError:  # FactorizationError, whose advice (raise reg_covar) is for fit
        raise ValueError(
            f"{path}: {_first_indefinite(covariances, covariance_type)} is not positive definite."
        ) from None
    if not np.isfinite(prec_chol).all():
        raise ValueError(f"{path}: covariances_ give a non-finite precision factor.")
    _check_factor(prec_chol, covariance_type, path)
    return prec_chol


def _covariances_of(prec_chol: np.ndarray, covariance_type: str, path: Any) -> np.ndarray:
    """``covariances_`` of a (checked: triangular, positive diagonal) factor from a file."""
    try:
        with np.errstate(over="ignore"):  # out of range: refused below
            covariances = _gaussian.covariances_from_precision_cholesky(prec_chol, covariance_type)
    except ValueError:  # FactorizationError: a singular factor
        covariances = np.full(1, np.nan)
    if not np.isfinite(covariances).all():
        raise ValueError(
            f"{path}: precisions_cholesky_ gives covariances out of float64's range (singular)."
        )
    return covariances


def _first_indefinite(covariances: np.ndarray, covariance_type: str) -> str:
    """The name of the first covariance that is not positive definite (for a message)."""
    if covariance_type == "full":
        with single_threaded_blas():
            for k, cov in enumerate(covariances):
                if lapack.dpotrf(cov, lower=1)[1] != 0:
                    return f"covariances_[{k}]"
    elif covariance_type != "tied":
        positive = (covariances > 0).reshape(len(covariances), -1).all(axis=-1)
        return f"covariances_[{int(np.argmin(positive))}]"
    return "covariances_"


def _derived_factor(model: GaussianMixture, covariances: np.ndarray) -> np.ndarray | None:
    """The factor :meth:`GaussianMixture.load` will derive from ``covariances`` (None: none)."""
    if not np.isfinite(covariances).all():
        return None
    try:
        factor = _gaussian.precision_cholesky_from_covariances(
            np.asarray(covariances, dtype=np.float64),
            model.covariance_type,
            n_threads=model._n_threads(),
        )
    except ValueError:  # not positive definite
        return None
    return factor if np.isfinite(factor).all() else None


def _loads_as_factor(factor: np.ndarray, covariance_type: str) -> bool:
    """Whether a float32 factor passes what load checks (finite, positive diagonal, finite
    covariances): float32's range is narrower than float64's."""
    if not np.isfinite(factor).all():
        return False
    try:
        _check_factor(factor, covariance_type, "")
        _covariances_of(factor.astype(np.float64), covariance_type, "")
    except ValueError:
        return False
    return True


def _parameter_members(
    model: GaussianMixture, prefix: str = "", *, float32: bool = True
) -> dict[str, np.ndarray]:
    """A mixture's parameters as its file stores them: ``weights_``, ``means_`` and one
    covariance representation.

    A float32 model (``float32`` allows it: a model embedding the mixture
    passes its own dtype's verdict) without a ``partial_fit`` stream stores
    ``means_`` and ``precisions_cholesky_`` in float32: the factor its
    kernels compute with, rounded as they round it. Rounding covariances
    instead would move the precisions by up to cond(Sigma) times float32's
    epsilon: 0.8% of the log-likelihood on MNIST models. A stream (whose
    resumption after load is bit for bit), or a factor out of float32's
    range, keeps float64 ``covariances_``, with ``precisions_cholesky_``
    beside them when it is not the factor load derives (the older format):
    what load gives is always the model, or its float32 rounding.
    """
    members = {"weights_": np.asarray(model.weights_, dtype=np.float64)}
    if (
        float32
        and check_compute_dtype(model.dtype) is np.float32
        and _online.current_state(model) is None
    ):
        with np.errstate(over="ignore", under="ignore"):  # out of range: refused below
            means = np.asarray(model.means_, dtype=np.float32)
            factor = np.asarray(model.precisions_cholesky_, dtype=np.float32)
        if np.isfinite(means).all() and _loads_as_factor(factor, model.covariance_type):
            members["means_"], members["precisions_cholesky_"] = means, factor
            return {prefix + name: value for name, value in members.items()}
    members["means_"] = np.asarray(model.means_, dtype=np.float64)
    members["covariances_"] = np.asarray(model.covariances_, dtype=np.float64)
    derived = _derived_factor(model, members["covariances_"])
    if derived is None or not np.array_equal(derived, model.precisions_cholesky_):
        members["precisions_cholesky_"] = np.asarray(model.precisions_cholesky_, dtype=np.float64)
    return {prefix + name: value for name, value in members.items()}


def _check_representation(
    params: dict[str, Any], headers: dict[str, tuple[np.dtype, tuple[int, ...]]], prefix: str
) -> None:
    """What :func:`_parameter_members` writes, checked from the headers: float64
    ``covariances_`` (older files: and a float64 ``precisions_cholesky_``), or, in the file of
    a float32 model without stream members, a float32 ``precisions_cholesky_`` alone (and
    ``means_`` in float32). ``weights_`` are float64."""
    try:
        model_float32 = check_compute_dtype(params.get("dtype", "float64")) is np.float32
    except (ValueError, TypeError):
        model_float32 = False  # the parameter check reports the dtype itself
    streaming = any(name.startswith(("stream_", prefix + "stream_")) for name in headers)
    factor_only = (
        prefix + "covariances_" not in headers and prefix + "precisions_cholesky_" in headers
    )
    if factor_only and not (model_float32 and not streaming):
        raise ValueError(
            f"{prefix}precisions_cholesky_ without {prefix}covariances_: only the file of a "
            "float32 model without stream members holds the factor alone (in float32); "
            "other files hold the covariances (older files, the factor beside them)."
        )
    allowed = {name: (8,) for name in ("weights_", "means_", "covariances_")}
    allowed["precisions_cholesky_"] = (4,) if factor_only else (8,)
    if factor_only:
        allowed["means_"] = (4, 8)
    for name, sizes in allowed.items():
        dtype = headers.get(prefix + name, (np.dtype(np.float64),))[0]
        if dtype.kind != "f" or dtype.itemsize not in sizes:
            raise ValueError(
                f"array {prefix + name!r} has dtype {dtype}; model parameters are float64, but "
                "for precisions_cholesky_ (float32) and means_ (float32 or float64) in the file "
                "of a float32 model that holds no covariances_ and no stream members."
            )


def _expected_members(
    params: dict[str, Any], headers: dict[str, tuple[np.dtype, tuple[int, ...]]], prefix: str = ""
) -> dict[str, tuple[int, ...]]:
    """The members of a GaussianMixture file and their shapes, from its header and the declared
    shape of ``means_`` (``load_npz`` refuses any other member, or another shape, before reading)."""
    covariance_type = params.get("covariance_type", "full")
    if _factor.is_factor_type(covariance_type):
        raise ValueError(f"model files are {_NOT_YET.format(covariance_type)}.")
    if covariance_type not in _gaussian.COVARIANCE_TYPES:
        raise ValueError(f"unknown covariance_type {covariance_type!r}.")
    means = headers.get(prefix + "means_")
    if means is None or len(means[1]) != 2 or min(means[1]) < 1:
        raise ValueError(f"missing or malformed array {prefix + 'means_'!r}.")
    K, D = means[1]
    cov_shape = _gaussian.covariance_shape(covariance_type, K, D)
    _check_representation(params, headers, prefix)
    shapes = {
        "weights_": (K,),
        "means_": (K, D),
        "covariances_": cov_shape,
        "precisions_cholesky_": cov_shape,
    }
    if not prefix:
        shapes.update({"converged_": (), "n_iter_": (), "lower_bound_": ()})
    shapes.update(_online.expected_members(covariance_type, K, D))  # partial_fit's, optional
    return {prefix + name: shape for name, shape in shapes.items()}


def _check_saved_params(model: GaussianMixture, path: Any) -> None:
    """A loaded model's constructor parameters, checked as ``fit`` checks them (``ValueError`` naming the file).

    ``n_threads`` is checked for its type only: a count above this
    machine's CPUs is capped when the model runs, not an error in a file.
    """
    n_threads = model.n_threads
    if n_threads is not None and (
        isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads == 0
    ):
        raise ValueError(
            f"{path}: n_threads must be a non-zero integer or None; got {n_threads!r}."
        )
    if not (
        model.random_state is None
        or (isinstance(model.random_state, int) and 0 <= model.random_state < 2**32)
    ):
        raise ValueError(
            f"{path}: random_state must be None or a seed in [0, 2**32); got {model.random_state!r}."
        )
    for name in ("warm_start",):
        if not isinstance(getattr(model, name), bool):
            raise ValueError(f"{path}: {name} must be true or false; got {getattr(model, name)!r}.")
    if not isinstance(model.verbose, int):  # bool included (verbose=True)
        raise ValueError(f"{path}: verbose must be an integer; got {model.verbose!r}.")
    for name in ("weights_init", "means_init", "precisions_init"):
        if getattr(model, name) is not None:
            raise ValueError(f"{path}: {name} is not part of a model file.")
    model.n_threads = (
        None  # checked above; None keeps _check_parameters from warning about the CPU count
    )
    try:
        model._check_parameters(0)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    finally:
        model.n_threads = n_threads
